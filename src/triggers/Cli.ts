/**
 * The `kaiwa-jobs` command line: list, run, status, migrate, preview and serve. Like the HTTP server, it only
 * ever calls the runner. Exit codes follow Exit codes (docs/runbook.md): 0 every due recipient handled; 1 a fatal error or
 * recipients left unsent; 2 bad configuration or usage, with a message naming the variable or flag (never its
 * value). The Fly mains in scripts/ are this CLI's `run` with the job fixed.
 */
import { constants as fsConstants } from "node:fs"
import * as fs from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"
// Deep imports: the package root also loads the Redis client, `ws` and undici.
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as NodeServices from "@effect/platform-node/NodeServices"
import { Cause, Clock, Config, Console, Context, Effect, Exit, Layer, Option, Redacted, Schema } from "effect"
import { Argument, CliError, Command, Flag } from "effect/cli"
import { InvalidConfig, isDatabaseUrl, JobSettings, JobsConfig, LiveJobs } from "../config/Config.ts"
import { problemsOf } from "../config/Setting.ts"
import { Database, DatabaseError, describeSqlCause, failureOf, pgLayer } from "../database/Database.ts"
import { leave } from "../mail/Unsubscribe.ts"
import * as Doctor from "../operator/Doctor.ts"
import { Pauses } from "../ledger/Pauses.ts"
import type { AppTables } from "../database/App.ts"
import type { Preferences } from "../ledger/Preferences.ts"
import type { EmbeddedPostgresError } from "../local/EmbeddedPostgres.ts"
import type { Mailer } from "../mail/Mailer.ts"
import type { Telemetry } from "../telemetry/Telemetry.ts"
import { describeFailure, runJob } from "../job/Job.ts"
import type * as Job from "../job/Job.ts"
import { findJob, Jobs } from "../jobs/index.ts"
import * as Layers from "../job/Layers.ts"
import * as Logging from "../telemetry/Logging.ts"
import { migrate as migrateLibrary } from "../migrations/index.ts"
import { describeHealth } from "../delivery/DeliveryHealth.ts"
import { futureRowsNow, jobStatuses } from "../operator/Status.ts"

/** Where `--local` runs and the demo keep their embedded database (git-ignored). */
export const LOCAL_DIR = ".kaiwa-local/postgres"

/** A command finished with a non-zero exit code it has already explained. */
export class ExitWith extends Schema.TaggedError<ExitWith>()("ExitWith", {
  code: Schema.Int,
  message: Schema.String
}) {}

/** Bad usage of a flag or argument; exits 2. */
export class UsageError extends Schema.TaggedError<UsageError>()("UsageError", {
  message: Schema.String
}) {}

const dryRunFlag = Flag.Boolean("dry-run").pipe(
  Flag.withDescription("Compute and print every email; write nothing, send nothing"),
  Flag.withDefault(false)
)
const nowFlag = Flag.String("now").pipe(
  Flag.withDescription("Run as of this ISO-8601 instant, e.g. 2026-03-10T09:00:00Z"),
  Flag.optional
)
const localFlag = Flag.Boolean("local").pipe(
  Flag.withDescription(`Use the embedded PostgreSQL in ${LOCAL_DIR} and the console mailer`),
  Flag.withDefault(false)
)
const jsonFlag = Flag.Boolean("json").pipe(Flag.withDescription("Print JSON"), Flag.withDefault(false))

const ISO_INSTANT = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2})(\.\d{1,9})?)?(?:Z|([+-])(\d{2}):?(\d{2}))$/

/**
 * A full ISO-8601 instant with a time zone, read strictly: every field must exist on the calendar, so
 * `2026-02-30T09:00:00Z` is refused instead of silently becoming March 2 (as `Date.parse` would have it).
 */
export const parseIsoInstant = (s: string): Date | undefined => {
  const m = ISO_INSTANT.exec(s)
  if (m === null) return undefined
  const field = (i: number) => Number(m[i] ?? 0)
  const [year, month, day, hour, minute, second] = [field(1), field(2), field(3), field(4), field(5), field(6)]
  const [offsetHours, offsetMinutes] = [field(9), field(10)]
  const daysInMonth = [31, isLeap(year) ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][month - 1] ?? 0
  if (month < 1 || month > 12 || day < 1 || day > daysInMonth || hour > 23 || minute > 59 || second > 59) return undefined
  if (offsetHours > 23 || offsetMinutes > 59) return undefined
  const utc = new Date(0)
  utc.setUTCFullYear(year, month - 1, day)
  utc.setUTCHours(hour, minute, second, Math.floor(Number(`0${m[7] ?? ""}`) * 1000))
  const offset = (m[8] === "-" ? -1 : 1) * (offsetHours * 60 + offsetMinutes) * 60_000
  return new Date(utc.getTime() - offset)
}

const isLeap = (year: number) => (year % 4 === 0 && year % 100 !== 0) || year % 400 === 0

/** Parses `--now`; anything but a full ISO-8601 instant that exists on the calendar is a usage error. */
export const parseNow = (raw: Option.Option<string>) =>
  Option.match(raw, {
    onNone: () => Effect.succeed(undefined),
    onSome: (s) => {
      const at = parseIsoInstant(s)
      return at === undefined
        ? Effect.fail(new UsageError({ message: `--now must be an ISO-8601 instant with a time zone that exists on the calendar, e.g. 2026-03-10T09:00:00Z` }))
        : Effect.succeed(at)
    }
  })

/**
 * How far ahead of the real clock a live `--now` may be (clock skew between machines, a run prepared a moment
 * early). Further ahead, a live run would write run and ledger rows dated in the future: the cross-job cap would
 * hold everyone until then and `status` would take the run for the latest success. Dry runs may look ahead.
 */
export const MAX_LIVE_NOW_AHEAD_MS = 5 * 60_000

/** Refuses a live `--now` too far ahead of the real clock (exit 2). */
const checkNowAhead = (now: Date | undefined, options: { readonly dryRun: boolean; readonly local: boolean }) =>
  Effect.gen(function*() {
    if (now === undefined || options.dryRun || options.local) return
    const real = yield* Clock.currentTimeMillis
    if (now.getTime() - real > MAX_LIVE_NOW_AHEAD_MS) {
      return yield* new UsageError({
        message: `--now is ${Math.round((now.getTime() - real) / 60_000)} minute(s) ahead of the clock; a live run may be ` +
          `at most ${MAX_LIVE_NOW_AHEAD_MS / 60_000} minutes ahead (it would record emails and runs dated in the ` +
          "future, which hold the cross-job cap until then). Use --dry-run to look ahead"
      })
    }
  })

const findJobOrFail = (name: string) =>
  Effect.flatMap(Jobs, (jobs) =>
    Effect.fromNullishOr(findJob(jobs, name)).pipe(
      Effect.mapError(() => new UsageError({ message: `unknown job "${name}"; jobs: ${jobs.map((j) => j.name).join(", ")}` }))
    ))

/** The services a mode stack provides. */
type ModeServices = Database | AppTables | Pauses | Preferences | Mailer | JobsConfig | Telemetry
type ModeError = DatabaseError | InvalidConfig | EmbeddedPostgresError | Config.ConfigError

/**
 * The mode stacks the commands run in (docs/architecture.md). Production uses `Layers`; a test provides its own (the
 * in-memory mailer on its test database) to run the real commands in process.
 */
export const Stacks = Context.Reference<{
  readonly live: Layer.Layer<ModeServices, ModeError>
  readonly dryRun: Layer.Layer<ModeServices, ModeError>
  readonly local: (dataDir: string) => Layer.Layer<ModeServices, ModeError>
}>("kaiwa-jobs/Cli/Stacks", { defaultValue: () => ({ live: Layers.live, dryRun: Layers.dryRun, local: Layers.local }) })

/** The mode stack for a run. */
const stackFor = (options: { readonly dryRun: boolean; readonly local: boolean }) =>
  // --local reads (and, unless --dry-run, writes) the local demo database; a dry run writes nothing either way.
  Effect.map(Stacks, (stacks) => options.local ? stacks.local(LOCAL_DIR) : options.dryRun ? stacks.dryRun : stacks.live)

const list = Command.make("list", { json: jsonFlag }, ({ json }) =>
  Effect.flatMap(Jobs, (jobs) =>
    Console.log(
      json
        // What the deploy script reads: one Fly machine per job, named cron-<job>, running `command`.
        ? JSON.stringify(jobs.map((j) => ({
          name: j.name,
          title: j.title,
          description: j.description,
          schedule: j.schedule,
          machineName: `cron-${j.name}`,
          command: j.command
        })))
        : jobs.map((j) => `${j.name.padEnd(20)} ${j.schedule.padEnd(7)} ${j.title}: ${j.description}`).join("\n")
    ))).pipe(Command.withDescription("List the jobs"))

/**
 * What a command that runs `running` insists on live: what those jobs need (FOUNDER_NAME only for the founder
 * sequence). Every job's own settings are checked with the shared ones by every command (`main`), so one message
 * (exit 2) lists every problem before any database or mailer; the job's are read again just before it runs
 * (`checkSettings`), from the command's own configuration.
 */
const forJobs = (running: ReadonlyArray<Job.Any>) => Effect.provideService(LiveJobs, running.map((j) => j.name))

/** Runs one job in the mode the flags pick; fails with ExitWith when the run did not handle everyone. */
export const runCommand = (name: string, options: { readonly dryRun: boolean; readonly local: boolean; readonly now: Option.Option<string> }) =>
  Effect.gen(function*() {
    const job = yield* findJobOrFail(name)
    const now = yield* parseNow(options.now)
    yield* checkNowAhead(now, options)
    const stack = yield* stackFor({ dryRun: options.dryRun, local: options.local })
    const report = yield* Effect.andThen(job.checkSettings, runJob(job, { dryRun: options.dryRun, trigger: "cli", asOf: now })).pipe(
      Effect.provide(Layers.clockFor(now)),
      Effect.provide(stack),
      forJobs([job])
    )
    if (report.exitCode !== 0) {
      return yield* new ExitWith({ code: report.exitCode, message: report.error ?? report.outcome })
    }
  })

const run = Command.make(
  "run",
  {
    job: Argument.String("job").pipe(Argument.withDescription("A job's name, as `kaiwa-jobs list` shows it")),
    dryRun: dryRunFlag,
    now: nowFlag,
    local: localFlag
  },
  ({ dryRun, job, local, now }) => runCommand(job, { dryRun, local, now })
).pipe(Command.withDescription("Run one job once (live unless --dry-run or --local)"))

const status = Command.make("status", { json: jsonFlag, local: localFlag }, ({ json, local }) =>
  Effect.gen(function*() {
    const stacks = yield* Stacks
    const stack: Layer.Layer<Database, ModeError> = local ? stacks.local(LOCAL_DIR) : databaseOnly
    const [statuses, future] = yield* Effect.all([jobStatuses, futureRowsNow]).pipe(Effect.provide(stack))
    if (json) {
      yield* Console.log(JSON.stringify(
        statuses.map((s) => ({ ...s, futureRows: future.filter((f) => f.job === s.job).map((f) => f.description) })),
        null,
        2
      ))
    } else {
      for (const s of statuses) {
        const last = s.lastRun
        yield* Console.log(
          `${s.overdue ? "OVERDUE" : s.atRisk ? "AT RISK" : s.paused !== null ? "PAUSED " : "ok     "} ${s.job.padEnd(20)} ` +
            (last === null
              ? "never ran"
              : `last run ${last.startedAt} ${last.outcome}` + (last.error ? ` (${last.error})` : "") +
                ` | last success ${s.lastSuccessAt ?? "never"} | overdue after ${s.overdueAfterMinutes} min`)
        )
        if (s.paused !== null) {
          yield* Console.log(`        paused by ${s.paused.by} since ${s.paused.at}${s.paused.reason ? `: ${s.paused.reason}` : ""} (kaiwa-jobs resume ${s.job})`)
        }
        if (last?.stats) yield* Console.log(`        stats ${JSON.stringify(last.stats)}`)
        yield* Console.log(`        ${s.atRisk ? "AT RISK " : ""}delivery ${describeHealth(s.delivery)}`)
      }
      for (const f of future) yield* Console.log(`FUTURE  ${f.description}`)
      if (future.length > 0) {
        yield* Console.log(
          "        rows dated in the future (a run with --now ahead of the clock) hold the cross-job cap until then; " +
            "delete them once checked"
        )
      }
    }
    const overdue = statuses.filter((s) => s.overdue).map((s) => s.job)
    const atRisk = statuses.filter((s) => s.atRisk).map((s) => s.job)
    const problems = [
      ...(overdue.length > 0 ? [`overdue: ${overdue.join(", ")}`] : []),
      ...(atRisk.length > 0 ? [`at risk: ${atRisk.join(", ")}`] : []),
      ...(future.length > 0 ? [`rows dated in the future: ${[...new Set(future.map((f) => f.job))].join(", ")}`] : [])
    ]
    if (problems.length > 0) return yield* new ExitWith({ code: 1, message: problems.join("; ") })
  })).pipe(Command.withDescription("Show each job's last run and 7-day delivery; exits 1 when any job is overdue or at risk"))

// Status and migrate need only the database, not a mailer: DATABASE_URL is required, nothing else.
const databaseOnly = Layer.unwrap(Effect.gen(function*() {
  const config = yield* JobsConfig
  if (Option.isNone(config.databaseUrl)) {
    return yield* new InvalidConfig({
      variable: "DATABASE_URL",
      message: "DATABASE_URL is required (or pass --local for the embedded database)"
    })
  }
  return Database.layer
})).pipe(Layer.provideMerge(JobsConfig.layer))

const migrate = Command.make("migrate", { local: localFlag }, ({ local }) =>
  Effect.gen(function*() {
    const ran = yield* migrateLibrary.pipe(
      Effect.provide(local ? Layers.local(LOCAL_DIR) : databaseOnly),
      Effect.mapError((e) => e._tag === "SqlError" || e._tag === "MigrationError" ? new DatabaseError({ reason: failureOf(e), message: `migrations failed: ${describeSqlCause(e)}` }) : e)
    )
    yield* Console.log(ran.length === 0 ? "kaiwa_jobs schema is up to date" : `applied: ${ran.map(([id, n]) => `${id}_${n}`).join(", ")}`)
  })).pipe(Command.withDescription("Apply the kaiwa_jobs migrations (Fly's release_command)"))

/**
 * Writes the preview files into `out` without ever following a symbolic link or replacing a file unless `force`:
 * `--out` is often a shared or checked-out folder, and a planted link (`.preview/founder-day1.html -> ~/.bashrc`)
 * must not turn a preview into a write anywhere else. The folder itself may not be a link either; its parents are
 * the operator's own path. Every target is checked before the first write, and each file is then opened with
 * O_NOFOLLOW (and O_EXCL unless `force`), so a link planted between the check and the write is refused too.
 */
export const writePreviewFiles = (out: string, files: ReadonlyArray<{ readonly name: string; readonly content: string }>, force: boolean) =>
  Effect.gen(function*() {
    if (out.trim() === "") return yield* new UsageError({ message: "--out needs a folder (it was empty)" })
    const dir = path.resolve(out)
    const refuse = (message: string) => new UsageError({ message: `preview --out: ${message}` })
    const stat = (p: string) =>
      Effect.promise(() => fs.lstat(p).then((s) => s, (e: NodeJS.ErrnoException) => e.code === "ENOENT" ? undefined : Promise.reject(e)))
    const dirStat = yield* stat(dir)
    if (dirStat?.isSymbolicLink()) return yield* refuse(`${dir} is a symbolic link; refusing to follow it`)
    if (dirStat !== undefined && !dirStat.isDirectory()) return yield* refuse(`${dir} exists and is not a folder`)
    if (dirStat === undefined) yield* Effect.promise(() => fs.mkdir(dir, { recursive: true }))
    const targets = files.map((f) => ({ ...f, file: path.join(dir, f.name) }))
    const problems: Array<string> = []
    for (const t of targets) {
      const s = yield* stat(t.file)
      if (s?.isSymbolicLink()) problems.push(`${t.file} is a symbolic link (never followed, even with --force)`)
      else if (s !== undefined && !s.isFile()) problems.push(`${t.file} exists and is not a file`)
      else if (s !== undefined && !force) problems.push(`${t.file} exists (pass --force to overwrite)`)
    }
    if (problems.length > 0) return yield* refuse(problems.join("; "))
    const { O_CREAT, O_EXCL, O_NOFOLLOW, O_TRUNC, O_WRONLY } = fsConstants
    const flags = O_WRONLY | O_CREAT | O_NOFOLLOW | (force ? O_TRUNC : O_EXCL)
    for (const t of targets) {
      yield* Effect.tryPromise({
        try: () => fs.writeFile(t.file, t.content, { flag: flags, mode: 0o644 }),
        catch: (e) => {
          const code = (e as NodeJS.ErrnoException).code
          return code === "EEXIST" || code === "ELOOP"
            ? refuse(`${t.file} appeared while writing (${code === "ELOOP" ? "a symbolic link" : "a file"}); nothing overwritten`)
            : refuse(`cannot write ${t.file}: ${code ?? "unknown error"}`)
        }
      })
    }
    return targets.filter((t) => t.name.endsWith(".html")).map((t) => t.file)
  })

const preview = Command.make(
  "preview",
  {
    job: Argument.String("job"),
    out: Flag.String("out").pipe(Flag.withDescription("Folder for the HTML files"), Flag.withDefault(".preview")),
    force: Flag.Boolean("force").pipe(Flag.withDescription("Overwrite files a previous preview wrote"), Flag.withDefault(false))
  },
  ({ force, job, out }) =>
    Effect.gen(function*() {
      const found = yield* findJobOrFail(job)
      // The job's own samples through its real render path (unsubscribe link, headers, template check), with
      // the configured settings (development defaults when unset).
      const config = yield* JobsConfig
      const variants = yield* found.preview(config)
      const written = yield* writePreviewFiles(
        out,
        variants.flatMap((v) => [
          { name: `${v.name}.html`, content: v.email.html },
          { name: `${v.name}.txt`, content: `From: ${v.email.from}\nSubject: ${v.email.subject}\n\n${v.email.text}` }
        ]),
        force
      )
      yield* Console.log(`${written.length} variant(s) of ${found.name}:\n${written.map((f) => `  ${f}`).join("\n")}`)
    }).pipe(Effect.provide(JobsConfig.layer))
).pipe(Command.withDescription("Render every template variant of a job to HTML files for a person to look at"))

const unsubscribe = Command.make(
  "unsubscribe",
  {
    user: Flag.String("user").pipe(Flag.withDescription("The user's id (users.id)"), Flag.optional),
    email: Flag.String("email").pipe(Flag.withDescription("An address, whoever it belongs to"), Flag.optional),
    list: Flag.String("list").pipe(
      Flag.withDescription("The list to stop: a job's name, or all (default: every list)"),
      Flag.withDefault("all")
    ),
    local: localFlag
  },
  ({ email, list, local, user }) =>
    Effect.gen(function*() {
      if (Option.isNone(user) && Option.isNone(email)) {
        return yield* new UsageError({ message: "unsubscribe needs --user ID or --email ADDRESS" })
      }
      if (list !== "all") yield* findJobOrFail(list)
      const added = yield* leave({
        userId: Option.getOrNull(user),
        email: Option.getOrNull(email),
        list: list === "all" ? "*" : list,
        source: "cli"
      })
      yield* Console.log(added ? `suppressed (${list})` : `already suppressed (${list})`)
    }).pipe(Effect.provide(local ? Layers.local(LOCAL_DIR) : databaseOnly))
).pipe(Command.withDescription("Record an unsubscribe by hand (a request that arrived by email, say)"))

/** `serve` exits this long after SIGINT or SIGTERM at the latest, whatever state its database is in. */
export const SERVE_EXIT_DEADLINE_MS = 4_500

/**
 * The last word on `serve`'s shutdown: once a signal arrives, the process exits (130, as after any signal)
 * SERVE_EXIT_DEADLINE_MS later if the orderly shutdown has not ended it by then. The orderly one fits in that
 * time (Http.GRACEFUL_SHUTDOWN, then the stack's bounded finalizers); this is for a finalizer that waits on a
 * database that does not answer (a wedged server, a network partition). A run it cuts short is left `running`
 * in the history (reported abandoned after an hour) and its ledger rows are taken over by the next run.
 * Process-wide signal listeners, removed when the server ends: Node calls them beside Effect's own handlers.
 */
const exitDeadline = Effect.acquireRelease(
  Effect.sync(() => {
    const arm = () => setTimeout(() => process.exit(130), SERVE_EXIT_DEADLINE_MS).unref()
    process.once("SIGINT", arm)
    process.once("SIGTERM", arm)
    return arm
  }),
  (arm) =>
    Effect.sync(() => {
      process.removeListener("SIGINT", arm)
      process.removeListener("SIGTERM", arm)
    })
)

// The HTTP server and its routes are imported only by `serve`. `--local` binds loopback unless HOST
// says otherwise: the demo's server is for the person at the laptop.
const serve = Command.make("serve", { local: localFlag }, ({ local }) =>
  Effect.flatMap(Effect.all([Stacks, Effect.promise(() => import("./Http.ts"))]), ([stacks, Http]) =>
    Effect.andThen(
      exitDeadline,
      Layer.launch(Http.layerServerOn(local ? "127.0.0.1" : undefined).pipe(
        Layer.provide(local ? stacks.local(LOCAL_DIR) : stacks.live)
      ))
    ).pipe(Effect.scoped))).pipe(
    Command.withDescription("Serve /api/cron/*, /health, /unsubscribe, /preferences, /webhooks/resend and /console on PORT (default 8080)")
  )

/** A Fly main: `run <job>` with the job fixed, the same flags, the same exit codes. */
export const jobMain = (name: string) =>
  Command.make(name, { dryRun: dryRunFlag, now: nowFlag, local: localFlag }, ({ dryRun, local, now }) =>
    runCommand(name, { dryRun, local, now })).pipe(Command.withDescription(`Run ${name} once (live unless --dry-run or --local)`))

const doctor = Command.make("doctor", { json: jsonFlag, local: localFlag }, ({ json, local }) =>
  Effect.gen(function*() {
    const settings = yield* Doctor.settingsChecks
    // The database is checked whatever the other settings say: doctor lists every problem at once.
    const url = yield* Config.option(Config.Redacted("DATABASE_URL")).pipe(Effect.orElseSucceed(() => Option.none()))
    const database = local
      ? yield* Doctor.databaseChecks.pipe(Effect.provide(Layers.local(LOCAL_DIR)), Effect.catchCause((cause) => Effect.succeed(Doctor.unreachable(Cause.squash(cause)))))
      : Option.isNone(url)
      ? Doctor.notChecked("DATABASE_URL is not set (or pass --local for the local demo database)")
      : !isDatabaseUrl(Redacted.value(url.value))
      ? Doctor.notChecked("DATABASE_URL is not a PostgreSQL URL (postgres://user:password@host:5432/database)")
      : yield* Doctor.databaseChecks.pipe(Effect.provide(pgLayer(url.value)), Effect.catchCause((cause) => Effect.succeed(Doctor.unreachable(Cause.squash(cause)))))
    const checks = [...settings, ...database.checks]
    const report: Doctor.Report = { ok: checks.every((c) => c.status !== "fail"), shape: database.shape, checks }
    yield* Console.log(json ? JSON.stringify(report, null, 2) : Doctor.format(report))
    if (!report.ok) return yield* new ExitWith({ code: 1, message: "doctor found problems that block the jobs" })
  })).pipe(Command.withDescription("Check the database and the settings before a deploy; exits 1 when anything blocks a job"))

const whyCommand = Command.make(
  "why",
  {
    who: Argument.String("email-or-user-id").pipe(Argument.withDescription("A learner's address or users.id")),
    now: nowFlag,
    json: jsonFlag,
    local: localFlag
  },
  ({ json, local, now, who }) =>
    Effect.gen(function*() {
      const at = yield* parseNow(now)
      const Why = yield* Effect.promise(() => import("../operator/Why.ts"))
      const asOf = at ?? new Date(yield* Clock.currentTimeMillis)
      const report = yield* Why.why(who, asOf).pipe(
        Effect.catchTag("UnknownLearner", (e) => Effect.fail(new UsageError({ message: e.message })))
      )
      yield* Console.log(json ? JSON.stringify(report, null, 2) : Why.format(report))
    }).pipe(Effect.provide(local ? Layers.local(LOCAL_DIR) : databaseOnly))
).pipe(Command.withDescription("Why a learner got (or did not get) each job's email at an instant, and their timeline"))

/** Who is at the keyboard, for the pause's record: the OS user and host. */
const operator = () => {
  try {
    return `${os.userInfo().username}@${os.hostname()}`
  } catch {
    return `cli@${os.hostname()}`
  }
}

const pause = Command.make(
  "pause",
  {
    job: Argument.String("job"),
    reason: Flag.String("reason").pipe(Flag.withDescription("Why, for whoever reads status next"), Flag.optional),
    local: localFlag
  },
  ({ job, local, reason }) =>
    // The job's name first: a typo is named before any database is needed.
    Effect.flatMap(findJobOrFail(job), (found) =>
    Effect.gen(function*() {
      const pauses = yield* Pauses
      const now = new Date(yield* Clock.currentTimeMillis)
      const p = yield* pauses.pause({ job: found.name, by: operator(), reason: Option.getOrNull(reason), now })
      yield* Console.log(`${found.name} paused by ${p.pausedBy} at ${p.pausedAt.toISOString()}${p.reason ? ` (${p.reason})` : ""}: every trigger's runs send nothing until kaiwa-jobs resume ${found.name}`)
    }).pipe(Effect.provide(local ? Layers.local(LOCAL_DIR) : databaseOnly)))
).pipe(Command.withDescription("Pause a job: every trigger's runs record themselves as paused and send nothing"))

const resume = Command.make("resume", { job: Argument.String("job"), local: localFlag }, ({ job, local }) =>
  Effect.flatMap(findJobOrFail(job), (found) => Effect.gen(function*() {
    const resumed = yield* Effect.flatMap(Pauses, (p) => p.resume(found.name))
    yield* Console.log(resumed ? `${found.name} resumed: the next run sends what is due, pending emails first` : `${found.name} was not paused`)
  }).pipe(Effect.provide(local ? Layers.local(LOCAL_DIR) : databaseOnly)))).pipe(
    Command.withDescription("Resume a paused job")
  )

const sendTest = Command.make(
  "send-test",
  {
    job: Argument.String("job"),
    to: Flag.String("to").pipe(Flag.withDescription("The only address the test email goes to")),
    as: Flag.String("as").pipe(Flag.withDescription("Render for this learner's real data now (address or users.id)"), Flag.optional),
    sample: Flag.String("sample").pipe(Flag.withDescription("Render this sample (as `preview` names it)"), Flag.optional),
    now: nowFlag,
    local: localFlag
  },
  ({ as, job, local, now, sample, to }) =>
    Effect.gen(function*() {
      const found = yield* findJobOrFail(job)
      const at = yield* parseNow(now)
      const SendTest = yield* Effect.promise(() => import("../operator/SendTest.ts"))
      const stack = yield* stackFor({ dryRun: false, local })
      const sent = yield* Effect.gen(function*() {
        yield* found.checkSettings
        const asOf = at ?? new Date(yield* Clock.currentTimeMillis)
        return yield* SendTest.sendTest({ job: found, to, as: Option.getOrUndefined(as), sample: Option.getOrUndefined(sample), asOf })
      }).pipe(
        Effect.provide(stack),
        forJobs([found]),
        Effect.catchTag("SendTestError", (e) => Effect.fail(new UsageError({ message: e.message })))
      )
      yield* Console.log(
        `sent "${sent.subject}" to ${sent.to} (provider id ${sent.providerId ?? "none"})\n  data: ${sent.source}\n` +
          "  tagged test=true; not on the ledger, not counted in the cap or the delivery health; its links never act for a real learner"
      )
    })
).pipe(Command.withDescription("Send one [test] copy of a job's email to an address: a learner's real data or a sample"))

const consoleLink = Command.make(
  "console-link",
  {
    minutes: Flag.Int("minutes").pipe(Flag.withDescription("How long the link stays valid"), Flag.withDefault(15))
  },
  ({ minutes }) =>
    Effect.gen(function*() {
      const config = yield* JobsConfig
      if (Option.isNone(config.consoleSecret)) {
        return yield* new InvalidConfig({
          variable: "CONSOLE_SECRET",
          message: "CONSOLE_SECRET is not set: the console is off (set it to 32 characters or more on the server and here)"
        })
      }
      if (minutes < 1 || minutes > 24 * 60) return yield* new UsageError({ message: "--minutes must be between 1 and 1440" })
      const Auth = yield* Effect.promise(() => import("../pages/ConsoleAuth.ts"))
      const token = Auth.makeLinkToken(config.consoleSecret.value, { now: yield* Clock.currentTimeMillis, minutes, by: operator() })
      yield* Console.log(Auth.linkUrl(config.appUrl, token))
      yield* Console.error(`(signs in once, within ${minutes} minute(s); the session then lasts ${Auth.SESSION_HOURS} hours)`)
    }).pipe(Effect.provide(JobsConfig.layer))
).pipe(Command.withDescription("Print a one-time sign-in link to the web console (/console)"))

/** Every subcommand of `kaiwa-jobs`. */
export const commands = [list, run, status, migrate, preview, unsubscribe, doctor, whyCommand, pause, resume, sendTest, consoleLink, serve] as const

/** The `kaiwa-jobs` command with every subcommand. */
export const root = Command.make("kaiwa-jobs").pipe(
  Command.withDescription("Typed scheduled jobs for Kaiwa: run, preview and serve the registered email jobs"),
  Command.withSubcommands([...commands])
)

/** The parse errors of effect/cli that are bad usage (exit 2); the parser has printed them already. */
const USAGE_ERRORS: ReadonlySet<string> = new Set([
  "MissingOption",
  "MissingArgument",
  "InvalidValue",
  "UnrecognizedOption",
  "DuplicateOption",
  "UnknownSubcommand"
])

const configurationError = (message: string) => Console.error(`kaiwa-jobs: configuration error: ${message}`).pipe(Effect.as(2))

/** Maps any failure to an exit code by its tag, printing a one-line explanation without secrets. */
export const exitCodeFor = (cause: Cause.Cause<unknown>): Effect.Effect<number> => {
  const error = Cause.squash(cause)
  if (error instanceof ExitWith) return Effect.succeed(error.code)
  if (error instanceof InvalidConfig) return configurationError(error.message)
  // A setting read straight through effect Config: the variables come from the error's structure.
  if (error instanceof Config.ConfigError) return configurationError(problemsOf(error).map((p) => `${p.variable} ${p.problem}`).join("; "))
  if (error instanceof UsageError) return Console.error(`kaiwa-jobs: ${error.message}`).pipe(Effect.as(2))
  if (CliError.isCliError(error)) {
    if (error._tag === "ShowHelp") return Effect.succeed(error.errors.length === 0 ? 0 : 2)
    if (USAGE_ERRORS.has(error._tag)) return Effect.succeed(2)
  }
  return Console.error(`kaiwa-jobs: ${describeFailure(cause)}`).pipe(Effect.as(1))
}

const withJobSettings = <A, E, R>(self: Effect.Effect<A, E, R>) =>
  Effect.flatMap(Jobs, (jobs) => Effect.provideService(self, JobSettings, jobs.map((j) => j.settings)))

/** Runs the CLI on `argv` (without node and script) to an exit code. */
export const main = <Name extends string, Input, E, R>(
  root: Command.Command<Name, Input, any, E, R>,
  argv: ReadonlyArray<string>
): Effect.Effect<number> =>
  Command.runWith(root, { version: "0.1.0" })(argv).pipe(
    Effect.as(0),
    // Every job's own settings are part of the configuration every command checks (all machines share it).
    withJobSettings,
    // Every failure becomes an exit code here; only interruption (a signal) passes through, as a cause.
    Effect.catchCause((cause) => Cause.hasInterruptsOnly(cause) ? Effect.interrupt : exitCodeFor(cause)),
    Effect.provide(Layer.mergeAll(NodeServices.layer, Logging.layer))
  ) as Effect.Effect<number>

/** Runs a main to completion and exits with its code (130 after SIGINT/SIGTERM). */
export const runMain = (program: Effect.Effect<number, never, never>) =>
  NodeRuntime.runMain(program, {
    disableErrorReporting: true,
    teardown: (exit, onExit) =>
      onExit(Exit.isSuccess(exit) ? exit.value as number : Cause.hasInterruptsOnly(exit.cause) ? 130 : 1)
  })

