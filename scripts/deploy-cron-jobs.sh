#!/usr/bin/env bash
# Creates or updates the Fly scheduled Machines that run kaiwa-jobs' jobs, one machine per job.
#
# Idempotent: a job whose machine (found by name) exists gets `fly machine update` (new image, command, schedule,
# restart policy, memory); a job without one gets `fly machine run`; nothing is ever created twice, so running it
# after every `fly deploy` is the normal way to move the cron machines to the new image (`fly deploy` leaves
# machines made by `fly machine run` on their old image). Two machines with the same job name stop it before any
# change: it names them and does not guess which one to keep.
#
# The job list comes from the project's own CLI (`kaiwa-jobs list --json`), so a new job needs no edit here.
# Every machine is scheduled `hourly`: Fly's schedules are only hourly/daily/weekly/monthly on a fuzzy cycle (there
# is no set time of day), so each run decides for itself who is due, and re-runs are safe. `--restart no`: Fly would
# otherwise restart a scheduled machine that exits non-zero up to 10 times in 5 minutes; exit 1 means "a re-run
# finishes the rest safely", and the next hourly run is that re-run.
#
# Configuration reaches cron machines through app secrets only (`fly secrets set ...`): fly.toml's [env] is applied
# to machines that `fly deploy` manages, not to these.
#
# Usage: scripts/deploy-cron-jobs.sh [--app APP] [--image IMAGE] [--region REGION] [--dry-run]
#   --app APP        the Fly app (default: $FLY_APP)
#   --image IMAGE    the image to run (default: the image of the app's newest complete release, read from
#                    `fly releases --json`, i.e. what the last successful `fly deploy` shipped)
#   --region REGION  region for machines created now (default: primary_region from this repo's fly.toml);
#                    existing machines stay where they are
#   --dry-run        read the current state and print the commands that would change it, change nothing
# Environment: FLY_APP; KAIWA_JOBS_CLI (default "node dist/cli.js", run from the repo root: `npm run build` first);
#   FLYCTL (default "fly"); KAIWA_CRON_MEMORY (MB, default 512).
# Exit codes: 0 done; 1 a flyctl or CLI call failed, or duplicate machines; 2 bad usage or configuration.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

APP="${FLY_APP:-}"
IMAGE=""
REGION=""
DRY_RUN=0
FLY="${FLYCTL:-fly}"
CLI="${KAIWA_JOBS_CLI:-node dist/cli.js}"
MEMORY="${KAIWA_CRON_MEMORY:-512}"

usage() {
  cat << 'USAGE'
Usage: scripts/deploy-cron-jobs.sh [--app APP] [--image IMAGE] [--region REGION] [--dry-run]
  --app APP        the Fly app (default: $FLY_APP)
  --image IMAGE    the image to run (default: the image of the app's newest complete release)
  --region REGION  region for machines created now (default: primary_region in fly.toml)
  --dry-run        read the current state, print the commands that would change it, change nothing
Environment: FLY_APP, KAIWA_JOBS_CLI (default "node dist/cli.js"), FLYCTL (default "fly"),
  KAIWA_CRON_MEMORY (MB, default 512).
USAGE
}
die() { echo "deploy-cron-jobs: $1" >&2; exit "${2:-1}"; }

while (($# > 0)); do
  case "$1" in
    --app) [[ $# -ge 2 ]] || die "--app needs a value" 2; APP="$2"; shift 2 ;;
    --app=*) APP="${1#*=}"; shift ;;
    --image) [[ $# -ge 2 ]] || die "--image needs a value" 2; IMAGE="$2"; shift 2 ;;
    --image=*) IMAGE="${1#*=}"; shift ;;
    --region) [[ $# -ge 2 ]] || die "--region needs a value" 2; REGION="$2"; shift 2 ;;
    --region=*) REGION="${1#*=}"; shift ;;
    --dry-run) DRY_RUN=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" 2 ;;
  esac
done

[[ -n "$APP" ]] || die "no Fly app: pass --app APP or set FLY_APP" 2
[[ "$MEMORY" =~ ^[0-9]+$ ]] || die "KAIWA_CRON_MEMORY must be a number of megabytes" 2
command -v "$FLY" > /dev/null || die "flyctl not found (looked for '$FLY'; set FLYCTL to its path)" 2
command -v node > /dev/null || die "node not found: it is needed to read JSON" 2

if [[ -z "$REGION" && -f "$ROOT/fly.toml" ]]; then
  REGION="$(sed -n 's/^primary_region *= *["'\'']\([a-z0-9]*\)["'\''].*/\1/p' "$ROOT/fly.toml" | head -n 1)"
fi

# JSON is read with node (already needed by the CLI) rather than jq. One helper, several modes; it prints
# tab-separated lines for bash to read.
read -r -d '' JSON_HELPER << 'JS' || true
const fs = require("node:fs")
const [mode, file, ...rest] = process.argv.slice(1)
const fail = (message, code) => { console.error("deploy-cron-jobs: " + message); process.exit(code) }
let data
try { data = JSON.parse(fs.readFileSync(file, "utf8")) } catch (e) { fail(`${mode}: not JSON (${e.message})`, 1) }
if (data === null) data = [] // flyctl prints null for an empty list
if (!Array.isArray(data)) fail(`${mode}: expected a JSON array`, 1)
// Words that mean the same whether passed one by one (`fly machine run IMAGE word...`) or as one string that
// flyctl splits (`fly machine update --command "word word"`), and that flyctl cannot mistake for its own flags.
const safeWord = /^[A-Za-z0-9_@%+=:,.\/][A-Za-z0-9_@%+=:,.\/-]*$/
const live = (m) => m && typeof m === "object" && !["destroyed", "destroying"].includes(m.state)
switch (mode) {
  case "jobs": { // name, machine name, schedule, command
    if (data.length === 0) fail("the CLI listed no jobs", 1)
    const seen = new Set()
    for (const j of data) {
      const where = `job ${JSON.stringify(j && j.name)}`
      if (!j || typeof j.name !== "string" || !/^[a-z0-9][a-z0-9-]*$/.test(j.name)) fail(`${where}: bad name`, 1)
      if (typeof j.machineName !== "string" || !/^[a-z0-9][a-z0-9-]*$/.test(j.machineName)) fail(`${where}: bad machineName`, 1)
      if (seen.has(j.machineName)) fail(`${where}: machineName ${j.machineName} is used by two jobs`, 1)
      seen.add(j.machineName)
      if (!["hourly", "daily", "weekly", "monthly"].includes(j.schedule)) fail(`${where}: schedule must be hourly, daily, weekly or monthly`, 1)
      if (!Array.isArray(j.command) || j.command.length === 0 || !j.command.every((w) => typeof w === "string" && safeWord.test(w)))
        fail(`${where}: command must be a non-empty array of plain words`, 1)
      console.log([j.name, j.machineName, j.schedule, j.command.join(" ")].join("\t"))
    }
    break
  }
  case "named": { // the live machines called rest[0]: id, state, image
    for (const m of data.filter(live).filter((m) => m.name === rest[0]))
      console.log([m.id, m.state || "?", (m.config && m.config.image) || "?"].join("\t"))
    break
  }
  case "orphans": { // live cron-* machines that no job claims: id, name, state
    const claimed = new Set(rest)
    for (const m of data.filter(live))
      if (typeof m.name === "string" && m.name.startsWith("cron-") && !claimed.has(m.name)) console.log([m.id, m.name, m.state || "?"].join("\t"))
    break
  }
  case "release-image": { // the image of the newest release that completed (a failed deploy's image is skipped)
    const done = data.filter((r) => r && r.Status === "complete" && typeof r.ImageRef === "string" && r.ImageRef !== "")
    done.sort((a, b) => (b.Version || 0) - (a.Version || 0))
    if (done.length > 0) console.log(done[0].ImageRef)
    break
  }
  default: fail(`unknown mode ${mode}`, 2)
}
JS
json() { node -e "$JSON_HELPER" -- "$@"; }

# Prints a command so that it can be pasted into a shell.
show() {
  local out="" w
  for w in "$@"; do
    if [[ "$w" =~ ^[A-Za-z0-9_@%+=:,./-]+$ ]]; then out+=" $w"; else out+=" '${w//\'/\'\\\'\'}'"; fi
  done
  printf '%s\n' "${out# }"
}
# Runs a command that changes something; with --dry-run only prints it.
change() {
  if ((DRY_RUN)); then
    printf '  would run: %s\n' "$(show "$@")"
  else
    printf '  running: %s\n' "$(show "$@")"
    "$@"
  fi
}

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

((DRY_RUN)) && echo "Dry run: reading the current state, changing nothing."

# 1. The jobs, from the CLI (word-split on purpose: KAIWA_JOBS_CLI is a command line such as "node dist/cli.js").
read -r -a cli_words <<< "$CLI"
(cd "$ROOT" && "${cli_words[@]}" list --json) > "$TMP/jobs.json" || die "'$CLI list --json' failed (did you run npm run build?)"
json jobs "$TMP/jobs.json" > "$TMP/jobs.tsv"

# 2. The app's machines.
"$FLY" machines list --app "$APP" --json > "$TMP/machines.json" || die "'$FLY machines list --app $APP --json' failed"

# 3. The image.
if [[ -z "$IMAGE" ]]; then
  "$FLY" releases --app "$APP" --json > "$TMP/releases.json" || die "'$FLY releases --app $APP --json' failed"
  IMAGE="$(json release-image "$TMP/releases.json")"
  [[ -n "$IMAGE" ]] || die "app $APP has no complete release to take an image from: run 'fly deploy' first, or pass --image" 2
  echo "Image: $IMAGE (newest complete release of $APP)"
else
  echo "Image: $IMAGE"
fi

# 4. Plan every job before touching anything, so that a duplicate stops the whole deploy, not half of it.
plan=()
duplicates=""
claimed=()
while IFS=$'\t' read -r name machine schedule command; do
  claimed+=("$machine")
  json named "$TMP/machines.json" "$machine" > "$TMP/named.tsv"
  count="$(wc -l < "$TMP/named.tsv" | tr -d ' ')"
  if ((count > 1)); then
    duplicates+="  $machine (job $name): $(cut -f1 "$TMP/named.tsv" | paste -sd' ' -)"$'\n'
  elif ((count == 1)); then
    IFS=$'\t' read -r id state old_image < "$TMP/named.tsv"
    plan+=("update"$'\t'"$name"$'\t'"$machine"$'\t'"$schedule"$'\t'"$command"$'\t'"$id"$'\t'"$state"$'\t'"$old_image")
  else
    plan+=("create"$'\t'"$name"$'\t'"$machine"$'\t'"$schedule"$'\t'"$command")
  fi
done < "$TMP/jobs.tsv"

if [[ -n "$duplicates" ]]; then
  printf 'deploy-cron-jobs: more than one machine has the name of a job; nothing was changed.\n%s' "$duplicates" >&2
  echo "Keep one of each (inspect with '$FLY machine status ID --app $APP', remove the others with '$FLY machine destroy ID --app $APP'), then run this again." >&2
  exit 1
fi

# 5. Apply.
created=0
updated=0
for entry in "${plan[@]}"; do
  IFS=$'\t' read -r action name machine schedule command id state old_image <<< "$entry"
  read -r -a cmd_words <<< "$command"
  if [[ "$action" == "create" ]]; then
    echo "Job $name: no machine $machine, creating it ($schedule, runs: $command)."
    region_flags=()
    [[ -n "$REGION" ]] && region_flags=(--region "$REGION")
    change "$FLY" machine run "$IMAGE" "${cmd_words[@]}" \
      --app "$APP" --name "$machine" --schedule "$schedule" --restart no --vm-memory "$MEMORY" ${region_flags[@]+"${region_flags[@]}"}
    created=$((created + 1))
  else
    echo "Job $name: machine $machine ($id, $state) exists, updating it (image $old_image -> $IMAGE)."
    if [[ "$state" == "started" ]]; then
      echo "  note: it is running a job now; the update restarts it (the delivery ledger makes that safe)."
    fi
    # --skip-start: without it the update would start the machine, i.e. run the job right now.
    change "$FLY" machine update "$id" \
      --app "$APP" --image "$IMAGE" --command "$command" --schedule "$schedule" --restart no --vm-memory "$MEMORY" \
      --skip-start --yes
    updated=$((updated + 1))
  fi
done

# 6. Machines that look like cron jobs but belong to no job (say, the seed's cron-daily-reminders) would keep running
# their old command: say so, and leave the decision to a person.
json orphans "$TMP/machines.json" "${claimed[@]}" > "$TMP/orphans.tsv"
if [[ -s "$TMP/orphans.tsv" ]]; then
  echo "Warning: these cron-* machines belong to no job and were left alone (remove with '$FLY machine destroy ID --app $APP'):"
  while IFS=$'\t' read -r id name state; do echo "  $name ($id, $state)"; done < "$TMP/orphans.tsv"
fi

if ((DRY_RUN)); then
  echo "Dry run: would create $created and update $updated machine(s) in $APP; nothing was changed."
else
  echo "Done: created $created, updated $updated machine(s) in $APP."
fi
