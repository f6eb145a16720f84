/**
 * scripts/deploy-cron-jobs.sh against a fake `fly` (a small executable on PATH that records every call and keeps the
 * app's machines in a JSON file) and a fake `kaiwa-jobs list --json`, so it runs without Fly.io and without a build;
 * plus static checks of the Dockerfile and fly.toml, since no Docker engine or Fly account is at hand.
 */
import { execFileSync, spawnSync } from "node:child_process"
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, assert, describe, it } from "@effect/vitest"
import { MAX_OPEN_CONNECTIONS } from "../../src/triggers/Http.ts"
import { registry } from "../../src/jobs/index.ts"

const root = join(import.meta.dirname, "..", "..")
const script = join(root, "scripts", "deploy-cron-jobs.sh")

interface FakeMachine {
  id: string
  name: string
  state: string
  region: string
  config: {
    image: string
    schedule?: string
    init: { cmd?: ReadonlyArray<string> }
    restart?: { policy: string }
    guest?: { memory_mb: number }
  }
}
interface FakeState {
  machines: Array<FakeMachine>
  releases: ReadonlyArray<{ Version: number; Status: string; ImageRef: string }>
}

const releasedImage = "registry.fly.io/kaiwa:deployment-2"
const jobs = [
  {
    name: "practice-reminders",
    title: "Daily practice reminders",
    description: "Reminds learners who have not practised today.",
    schedule: "hourly",
    main: "dist/send-reminders.js",
    machineName: "cron-practice-reminders",
    command: ["node", "dist/send-reminders.js"]
  },
  {
    name: "founder-emails",
    title: "Founder email sequence",
    description: "Day 1, 2 and 3 emails from the founder.",
    schedule: "hourly",
    main: "dist/send-founder-emails.js",
    machineName: "cron-founder-emails",
    command: ["node", "dist/send-founder-emails.js"]
  }
]

// The fake flyctl accepts only the flags the script is meant to use (as documented for flyctl), so a typo or an
// invented flag such as --schedule-time fails the way the real one would.
const fakeFly = `const fs = require("node:fs")
const args = process.argv.slice(2)
fs.appendFileSync(process.env.FAKE_FLY_LOG, JSON.stringify(args) + "\\n")
const state = JSON.parse(fs.readFileSync(process.env.FAKE_FLY_STATE, "utf8"))
const save = () => fs.writeFileSync(process.env.FAKE_FLY_STATE, JSON.stringify(state, null, 2))
const die = (m) => { console.error("Error: " + m); process.exit(1) }
const parse = (rest, valued, bools) => {
  const flags = {}, positional = []
  for (let i = 0; i < rest.length; i++) {
    const a = rest[i]
    if (!a.startsWith("--")) { positional.push(a); continue }
    const name = a.slice(2)
    if (bools.includes(name)) flags[name] = true
    else if (valued.includes(name)) { if (i + 1 >= rest.length) die("flag needs an argument: " + a); flags[name] = rest[++i] }
    else die("unknown flag: " + a)
  }
  return { flags, positional }
}
const [group, verb, ...rest] = args
const schedules = ["hourly", "daily", "weekly", "monthly"]
if ((group === "machines" || group === "machine") && verb === "list") {
  const { flags } = parse(rest, ["app"], ["json"])
  if (!flags.json || !flags.app) die("expected --app and --json")
  console.log(JSON.stringify(state.machines.length ? state.machines : null))
} else if (group === "releases") {
  const { flags } = parse([verb, ...rest].filter((a) => a !== undefined), ["app"], ["json", "image"])
  if (!flags.json || !flags.app) die("expected --app and --json")
  console.log(JSON.stringify(state.releases))
} else if (group === "image" && verb === "show") {
  parse(rest, ["app"], ["json"])
  const [registry, rest2] = state.releases[0].ImageRef.split("/")
  const [repository, tag] = rest2.split(":")
  console.log(JSON.stringify([{ MachineID: "web1", Registry: registry, Repository: repository, Tag: tag, Version: "N/A", Digest: "sha256:0" }]))
} else if (group === "machine" && verb === "run") {
  const { flags, positional } = parse(rest, ["app", "name", "schedule", "restart", "vm-memory", "region", "metadata"], ["detach"])
  if (!flags.app || !flags.name) die("expected --app and --name")
  if (flags.schedule && !schedules.includes(flags.schedule)) die("bad schedule " + flags.schedule)
  if (flags.restart && !["no", "always", "on-failure"].includes(flags.restart)) die("bad restart " + flags.restart)
  const [image, ...cmd] = positional
  if (!image) die("requires at least 1 arg")
  const id = (state.machines.length + 1).toString(16).padStart(14, "e")
  state.machines.push({ id, name: flags.name, state: "stopped", region: flags.region || "nearest",
    config: { image, schedule: flags.schedule, init: { cmd }, restart: { policy: flags.restart || "always" },
      guest: { memory_mb: Number(flags["vm-memory"] || 256) } } })
  save()
  console.log("Success! A Machine has been successfully launched in app " + flags.app + "\\n Machine ID: " + id)
} else if (group === "machine" && verb === "update") {
  const { flags, positional } = parse(rest, ["app", "image", "command", "schedule", "restart", "vm-memory"], ["yes", "skip-start", "detach"])
  const m = state.machines.find((m) => m.id === positional[0])
  if (!m) die("machine not found: " + positional[0])
  if (!flags.yes) die("would prompt for confirmation")
  if (flags.schedule && !schedules.includes(flags.schedule)) die("bad schedule " + flags.schedule)
  if (flags.image) m.config.image = flags.image
  if (flags.command) m.config.init.cmd = flags.command.split(" ")
  if (flags.schedule) m.config.schedule = flags.schedule
  if (flags.restart) m.config.restart = { policy: flags.restart }
  if (flags["vm-memory"]) m.config.guest = { memory_mb: Number(flags["vm-memory"]) }
  if (!flags["skip-start"]) m.state = "started"
  save()
  console.log("Machine " + m.id + " has been updated")
} else {
  die("fake fly does not know: " + args.join(" "))
}
`

/** Single-quotes a word for bash. */
const sh = (word: string) => `'${word.replace(/'/g, `'\\''`)}'`

interface Run {
  readonly code: number | null
  readonly stdout: string
  readonly stderr: string
  /** argv of every fake `fly` call this run made, in order */
  readonly calls: ReadonlyArray<ReadonlyArray<string>>
}

const tempDirs: Array<string> = []
afterAll(() => {
  for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true })
})

/** A temp dir with the fake fly, the fake CLI, a state file and a log. */
const setup = (state: FakeState = { machines: [], releases: defaultReleases }) => {
  const dir = mkdtempSync(join(tmpdir(), "kaiwa-deploy-"))
  tempDirs.push(dir)
  // Executables are bash wrappers around this very node, so no path here needs to be free of spaces.
  const executable = (name: string, js: string) => {
    writeFileSync(join(dir, `${name}.cjs`), js)
    writeFileSync(join(dir, name), `#!/usr/bin/env bash\nexec ${sh(process.execPath)} ${sh(join(dir, `${name}.cjs`))} "$@"\n`)
    chmodSync(join(dir, name), 0o755)
  }
  executable("fly", fakeFly)
  executable(
    "kaiwa-jobs",
    `if (process.argv[2] === "list" && process.argv[3] === "--json") console.log(${JSON.stringify(JSON.stringify(jobs))})\n` +
      `else { console.error("fake cli: unexpected " + process.argv.slice(2).join(" ")); process.exit(2) }\n`
  )
  const statePath = join(dir, "state.json")
  const logPath = join(dir, "calls.log")
  writeFileSync(statePath, JSON.stringify(state, null, 2))
  writeFileSync(logPath, "")
  let logged = 0
  const deploy = (args: ReadonlyArray<string>, env: Readonly<Record<string, string>> = {}): Run => {
    const r = spawnSync("bash", [script, ...args], {
      cwd: root,
      encoding: "utf8",
      env: {
        PATH: `${dir}:${process.env["PATH"] ?? ""}`,
        HOME: dir,
        FAKE_FLY_STATE: statePath,
        FAKE_FLY_LOG: logPath,
        KAIWA_JOBS_CLI: "kaiwa-jobs",
        ...env
      }
    })
    const lines = readFileSync(logPath, "utf8").split("\n").filter((l) => l !== "")
    const calls = lines.slice(logged).map((l) => JSON.parse(l) as Array<string>)
    logged = lines.length
    return { code: r.status, stdout: r.stdout, stderr: r.stderr, calls }
  }
  const readState = () => JSON.parse(readFileSync(statePath, "utf8")) as FakeState
  return { deploy, readState, statePath }
}

const defaultReleases = [
  { Version: 3, Status: "failed", ImageRef: "registry.fly.io/kaiwa:deployment-3-broken" },
  { Version: 2, Status: "complete", ImageRef: releasedImage },
  { Version: 1, Status: "complete", ImageRef: "registry.fly.io/kaiwa:deployment-1" }
]

const runs = (calls: ReadonlyArray<ReadonlyArray<string>>) => calls.filter((c) => c[0] === "machine" && c[1] === "run")
const updates = (calls: ReadonlyArray<ReadonlyArray<string>>) =>
  calls.filter((c) => c[0] === "machine" && c[1] === "update")
const mutating = (calls: ReadonlyArray<ReadonlyArray<string>>) => [...runs(calls), ...updates(calls)]
/** The value after `--flag` in an argv. */
const flag = (argv: ReadonlyArray<string>, name: string) => {
  const i = argv.indexOf(`--${name}`)
  return i >= 0 ? argv[i + 1] : undefined
}
const ok = (r: Run) => assert.strictEqual(r.code, 0, `exit ${r.code}\n${r.stdout}\n${r.stderr}`)
const assertNoScheduleTime = (calls: ReadonlyArray<ReadonlyArray<string>>) => {
  for (const c of calls) assert.notInclude(c.join(" "), "schedule-time")
}

describe("deploy-cron-jobs.sh", () => {
  it("a first deploy creates one hourly, never-restarted machine per job, running the job's compiled main", () => {
    const fly = setup()
    const r = fly.deploy(["--app", "kaiwa"])
    ok(r)
    const created = runs(r.calls)
    assert.strictEqual(created.length, 2)
    assert.strictEqual(updates(r.calls).length, 0)
    for (const job of jobs) {
      const call = created.find((c) => flag(c, "name") === job.machineName)
      assert.isDefined(call, `no machine run for ${job.machineName}`)
      if (call === undefined) continue
      // `fly machine run IMAGE node dist/....js`: the image of the newest *complete* release, then the command.
      assert.deepStrictEqual(call.slice(2, 5), [releasedImage, ...job.command])
      assert.strictEqual(flag(call, "schedule"), "hourly")
      assert.strictEqual(flag(call, "restart"), "no")
      assert.strictEqual(flag(call, "app"), "kaiwa")
      assert.strictEqual(flag(call, "vm-memory"), "512")
    }
    const machines = fly.readState().machines
    assert.deepStrictEqual(machines.map((m) => m.name).sort(), jobs.map((j) => j.machineName).sort())
    for (const m of machines) {
      assert.strictEqual(m.config.image, releasedImage)
      assert.strictEqual(m.config.restart?.policy, "no")
      assert.strictEqual(m.config.schedule, "hourly")
    }
    assertNoScheduleTime(r.calls)
    assert.include(r.stdout, "created 2, updated 0")
  })

  it("with the real built CLI, every registered job gets its machine: a job added to the registry needs no edit here", () => {
    // The registry as the built CLI lists it (globalSetup ran `npm run build`), not a fixture.
    const listed = JSON.parse(execFileSync(process.execPath, ["dist/cli.js", "list", "--json"], { cwd: root, encoding: "utf8" })) as
      Array<{ name: string; machineName: string; command: Array<string> }>
    assert.deepStrictEqual(listed.map((j) => j.name), registry.map((j) => j.name))
    const fly = setup()
    const r = fly.deploy(["--app", "kaiwa"], { KAIWA_JOBS_CLI: `${process.execPath} dist/cli.js` })
    ok(r)
    const created = runs(r.calls)
    assert.strictEqual(created.length, registry.length)
    for (const job of registry) {
      const call = created.find((c) => flag(c, "name") === `cron-${job.name}`)
      assert.isDefined(call, `no machine for ${job.name}`)
      assert.deepStrictEqual(call!.slice(2, 2 + 1 + job.command.length), [releasedImage, ...job.command])
    }
    // A job without a compiled main of its own runs the generic one, `node dist/cli.js run <name>`.
    for (const job of registry.filter((j) => j.command[1] === "dist/cli.js")) {
      assert.deepStrictEqual(job.command, ["node", "dist/cli.js", "run", job.name])
    }
    assert.include(r.stdout, `created ${registry.length}, updated 0`)
  })

  it("new machines go to fly.toml's primary_region unless --region says otherwise", () => {
    const primary = /^primary_region\s*=\s*"([a-z0-9]+)"/m.exec(readFileSync(join(root, "fly.toml"), "utf8"))?.[1]
    assert.isDefined(primary)
    const first = setup()
    const a = first.deploy(["--app", "kaiwa"])
    ok(a)
    for (const c of runs(a.calls)) assert.strictEqual(flag(c, "region"), primary)
    const second = setup()
    const b = second.deploy(["--app", "kaiwa", "--region", "ams"])
    ok(b)
    for (const c of runs(b.calls)) assert.strictEqual(flag(c, "region"), "ams")
  })

  it("a second deploy creates nothing and updates both machines in place, image included, without starting them", () => {
    const fly = setup()
    ok(fly.deploy(["--app", "kaiwa"]))
    const before = fly.readState().machines
    const r = fly.deploy([], { FLY_APP: "kaiwa" })
    ok(r)
    assert.strictEqual(runs(r.calls).length, 0)
    const updated = updates(r.calls)
    assert.strictEqual(updated.length, 2)
    for (const job of jobs) {
      const id = before.find((m) => m.name === job.machineName)?.id
      const call = updated.find((c) => c[2] === id)
      assert.isDefined(call, `no update of ${job.machineName}`)
      if (call === undefined) continue
      assert.strictEqual(flag(call, "image"), releasedImage)
      assert.strictEqual(flag(call, "command"), job.command.join(" "))
      assert.strictEqual(flag(call, "schedule"), "hourly")
      assert.strictEqual(flag(call, "restart"), "no")
      assert.include(call, "--yes")
      assert.include(call, "--skip-start")
    }
    const after = fly.readState().machines
    assert.strictEqual(after.length, 2)
    assert.deepStrictEqual(after.map((m) => m.id), before.map((m) => m.id))
    assert.isTrue(after.every((m) => m.state === "stopped"), "an update must not run the job")
    assertNoScheduleTime(r.calls)
    assert.include(r.stdout, "created 0, updated 2")
  })

  it("--image moves every cron machine to that image", () => {
    const fly = setup()
    ok(fly.deploy(["--app", "kaiwa"]))
    const next = "registry.fly.io/kaiwa:deployment-01JNEWIMAGE"
    const r = fly.deploy(["--app", "kaiwa", "--image", next])
    ok(r)
    assert.strictEqual(runs(r.calls).length, 0)
    assert.strictEqual(updates(r.calls).length, 2)
    for (const c of updates(r.calls)) assert.strictEqual(flag(c, "image"), next)
    assert.isFalse(r.calls.some((c) => c[0] === "releases"), "an explicit image needs no release lookup")
    for (const m of fly.readState().machines) assert.strictEqual(m.config.image, next)
  })

  it("--dry-run changes nothing and prints the commands it would run", () => {
    const fly = setup()
    const initial = readFileSync(fly.statePath, "utf8")
    const r = fly.deploy(["--app", "kaiwa", "--dry-run"])
    ok(r)
    assert.deepStrictEqual(mutating(r.calls), [])
    assert.strictEqual(readFileSync(fly.statePath, "utf8"), initial)
    for (const job of jobs) {
      const line = r.stdout.split("\n").find((l) => l.includes("fly machine run") && l.includes(job.machineName))
      assert.isDefined(line, `no printed command for ${job.machineName}:\n${r.stdout}`)
      assert.include(line, `${releasedImage} ${job.command.join(" ")}`)
      assert.include(line, "--schedule hourly")
      assert.include(line, "--restart no")
    }
    // Once the machines exist, a dry run prints the updates instead, still changing nothing.
    ok(fly.deploy(["--app", "kaiwa"]))
    const existing = readFileSync(fly.statePath, "utf8")
    const again = fly.deploy(["--app", "kaiwa", "--dry-run", "--image", "registry.fly.io/kaiwa:next"])
    ok(again)
    assert.deepStrictEqual(mutating(again.calls), [])
    assert.strictEqual(readFileSync(fly.statePath, "utf8"), existing)
    assert.strictEqual(again.stdout.split("\n").filter((l) => l.includes("fly machine update")).length, 2)
    assert.include(again.stdout, "--image registry.fly.io/kaiwa:next")
  })

  it("two machines with a job's name stop the deploy before any change, naming both", () => {
    const twin = (id: string): FakeMachine => ({
      id,
      name: "cron-founder-emails",
      state: "stopped",
      region: "iad",
      config: { image: "registry.fly.io/kaiwa:old", schedule: "daily", init: { cmd: ["tsx", "scripts/x.ts"] } }
    })
    const fly = setup({ machines: [twin("3d8d9e1b2c7789"), twin("91857e3f6a2318")], releases: defaultReleases })
    const initial = readFileSync(fly.statePath, "utf8")
    const r = fly.deploy(["--app", "kaiwa"])
    assert.notStrictEqual(r.code, 0)
    assert.include(r.stderr, "cron-founder-emails")
    assert.include(r.stderr, "3d8d9e1b2c7789")
    assert.include(r.stderr, "91857e3f6a2318")
    // Not even the other job's machine was created: a half-applied deploy is harder to reason about.
    assert.deepStrictEqual(mutating(r.calls), [])
    assert.strictEqual(readFileSync(fly.statePath, "utf8"), initial)
  })

  it("leaves cron-* machines that belong to no job alone, and says so", () => {
    const seedMachine: FakeMachine = {
      id: "148ed726c54289",
      name: "cron-daily-reminders",
      state: "stopped",
      region: "den",
      config: { image: "registry.fly.io/kaiwa:seed", schedule: "daily", init: { cmd: ["tsx", "bin/main/send-reminders.ts"] } }
    }
    const fly = setup({ machines: [seedMachine], releases: defaultReleases })
    const r = fly.deploy(["--app", "kaiwa"])
    ok(r)
    assert.strictEqual(runs(r.calls).length, 2)
    assert.isFalse(updates(r.calls).some((c) => c[2] === seedMachine.id))
    assert.include(r.stdout, "cron-daily-reminders")
    assert.include(r.stdout, seedMachine.id)
    assert.deepStrictEqual(fly.readState().machines.find((m) => m.id === seedMachine.id), seedMachine)
  })

  it("refuses to run without an app, or without an image to deploy, changing nothing", () => {
    const fly = setup()
    const noApp = fly.deploy([])
    assert.strictEqual(noApp.code, 2)
    assert.include(noApp.stderr, "FLY_APP")
    assert.deepStrictEqual(noApp.calls, [])

    const neverDeployed = setup({ machines: [], releases: [{ Version: 1, Status: "failed", ImageRef: "x:1" }] })
    const noImage = neverDeployed.deploy(["--app", "kaiwa"])
    assert.strictEqual(noImage.code, 2)
    assert.include(noImage.stderr, "--image")
    assert.deepStrictEqual(mutating(noImage.calls), [])
  })

  it("stops when the job list cannot be read, changing nothing", () => {
    const fly = setup()
    const r = fly.deploy(["--app", "kaiwa"], { KAIWA_JOBS_CLI: "false" })
    assert.notStrictEqual(r.code, 0)
    assert.include(r.stderr, "list --json")
    assert.deepStrictEqual(mutating(r.calls), [])
  })

  it("never uses --schedule-time, which flyctl does not have", () => {
    assert.notInclude(readFileSync(script, "utf8"), "--schedule-time")
  })
})

/** Dockerfile instructions, comments dropped and continuation lines joined. */
const dockerInstructions = (text: string) =>
  text
    .replace(/\\\n/g, " ")
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l !== "" && !l.startsWith("#"))
    .map((l) => {
      const [keyword = "", ...rest] = l.split(/\s+/)
      return { keyword: keyword.toUpperCase(), args: rest.join(" ") }
    })

/** fly.toml as `section -> key -> raw value` for the simple `key = value` lines this file uses. */
const tomlTables = (text: string) => {
  const tables = new Map<string, Map<string, string>>([["", new Map()]])
  let current = ""
  for (const raw of text.split("\n")) {
    const line = raw.replace(/\s+#.*$/, "").trim()
    if (line === "" || line.startsWith("#")) continue
    const header = /^\[\[?([^\]]+)\]\]?$/.exec(line)
    if (header?.[1] !== undefined) {
      current = header[1].trim()
      if (!tables.has(current)) tables.set(current, new Map())
      continue
    }
    const kv = /^([A-Za-z0-9_]+)\s*=\s*(.+)$/.exec(line)
    if (kv?.[1] !== undefined && kv[2] !== undefined) tables.get(current)?.set(kv[1], kv[2].trim())
  }
  return tables
}
const unquote = (v: string | undefined) => v?.replace(/^["'](.*)["']$/, "$1")

describe("Dockerfile", () => {
  const instructions = dockerInstructions(readFileSync(join(root, "Dockerfile"), "utf8"))
  const runs = instructions.filter((i) => i.keyword === "RUN").map((i) => i.args)
  const commands = runs.flatMap((r) => r.split(/&&|;/).map((c) => c.trim()))

  it("builds on node:24-slim in every stage, with more than one stage", () => {
    const froms = instructions.filter((i) => i.keyword === "FROM").map((i) => i.args.split(/\s+/)[0])
    assert.isAtLeast(froms.length, 2)
    for (const f of froms) assert.strictEqual(f, "node:24-slim")
  })

  it("installs with npm ci, builds with exactly `npm run build`, and drops dev dependencies", () => {
    assert.isTrue(commands.some((c) => /^npm ci(\s|$)/.test(c) && !c.includes("--omit")), "a full npm ci to build with")
    assert.isTrue(commands.some((c) => /^npm run build$/.test(c)), "npm run build")
    assert.isTrue(commands.some((c) => /^npm (prune|ci)\b.*--omit=dev/.test(c)), "dev dependencies dropped")
    // No second build path that could drift from the one the tests exercise.
    for (const c of commands) {
      assert.match(c, /^npm (ci|run build|prune)\b/, `unexpected RUN step: ${c}`)
      assert.notMatch(c, /\b(tsc|esbuild|tsx|npx|build\.mjs)\b/, `a build step besides npm run build: ${c}`)
    }
    const pkg = JSON.parse(readFileSync(join(root, "package.json"), "utf8")) as { scripts: Record<string, string> }
    assert.isString(pkg.scripts["build"])
  })

  it("ships package.json, the production node_modules and dist/ from the build stage, as production", () => {
    const lastFrom = instructions.map((i) => i.keyword).lastIndexOf("FROM")
    const runtime = instructions.slice(lastFrom)
    const copies = runtime.filter((i) => i.keyword === "COPY").map((i) => i.args)
    for (const path of ["package.json", "node_modules", "dist"]) {
      assert.isTrue(copies.some((c) => c.startsWith("--from=") && c.includes(`/app/${path}`)), `runtime copies ${path}`)
    }
    assert.isFalse(runtime.some((i) => i.keyword === "RUN" && /npm (ci|install)/.test(i.args)), "no install at runtime")
    assert.isTrue(runtime.some((i) => i.keyword === "ENV" && /NODE_ENV=production/.test(i.args)))
    assert.isTrue(runtime.some((i) => i.keyword === "EXPOSE" && i.args === "8080"))
  })

  it("runs `node dist/cli.js serve` as a non-root user", () => {
    const cmdAt = instructions.map((i) => i.keyword).lastIndexOf("CMD")
    assert.isAtLeast(cmdAt, 0)
    assert.deepStrictEqual(JSON.parse(instructions[cmdAt]?.args ?? "null"), ["node", "dist/cli.js", "serve"])
    const user = instructions.slice(0, cmdAt).filter((i) => i.keyword === "USER").at(-1)?.args
    assert.isDefined(user, "a USER before CMD")
    assert.notMatch(user ?? "", /^(root|0)(:|$)/)
    assert.isAbove(cmdAt, instructions.map((i) => i.keyword).lastIndexOf("FROM"))
  })

  it("keeps local state, build output and dependencies out of the build context", () => {
    const ignored = readFileSync(join(root, ".dockerignore"), "utf8")
      .split("\n")
      .map((l) => l.trim())
    for (const entry of ["node_modules", "dist", ".git", ".kaiwa-local", ".preview"]) assert.include(ignored, entry)
  })

  it("names only files that `npm run build` produces", () => {
    // globalSetup has just run the same build; every main the image or the deploy is told to run must exist.
    const build = readFileSync(join(root, "build.mjs"), "utf8")
    for (const main of ["cli", "send-reminders", "send-founder-emails"]) {
      assert.include(build, `${main}`)
      assert.isTrue(readFileSync(join(root, "dist", `${main}.js`), "utf8").length > 0)
    }
  })
})

describe("fly.toml", () => {
  const toml = tomlTables(readFileSync(join(root, "fly.toml"), "utf8"))
  const top = toml.get("") ?? new Map<string, string>()

  it("runs the migrations as the release command and serve as the web process", () => {
    assert.strictEqual(unquote(toml.get("deploy")?.get("release_command")), "node dist/cli.js migrate")
    assert.strictEqual(unquote(toml.get("processes")?.get("web")), "node dist/cli.js serve")
    assert.strictEqual(unquote(toml.get("build")?.get("dockerfile")), "Dockerfile")
    assert.isString(unquote(top.get("app")))
  })

  it("serves the web process on 8080 with a GET /health check", () => {
    const http = toml.get("http_service")
    assert.strictEqual(http?.get("internal_port"), "8080")
    assert.include(http?.get("processes") ?? "", "web")
    const check = toml.get("http_service.checks")
    assert.strictEqual(unquote(check?.get("path")), "/health")
    assert.strictEqual(unquote(check?.get("method"))?.toUpperCase(), "GET")
  })

  it("stops with a signal the server handles and time to finish the batch in flight", () => {
    assert.include(["SIGINT", "SIGTERM"], unquote(top.get("kill_signal")))
    const timeout = /^(\d+)s$/.exec(unquote(top.get("kill_timeout")) ?? "")?.[1]
    assert.isDefined(timeout, "kill_timeout in seconds")
    assert.isAtLeast(Number(timeout), 10)
    assert.isAtMost(Number(timeout), 300)
  })

  it("caps the requests the proxy sends the web machine at once, below the server's own connection bound", () => {
    const concurrency = toml.get("http_service.concurrency")
    assert.isDefined(concurrency, "[http_service.concurrency]")
    assert.include(["requests", "connections"], unquote(concurrency?.get("type")))
    const soft = Number(concurrency?.get("soft_limit"))
    const hard = Number(concurrency?.get("hard_limit"))
    assert.isTrue(Number.isInteger(soft) && soft > 0, "soft_limit")
    assert.isTrue(Number.isInteger(hard) && hard >= soft, "hard_limit >= soft_limit")
    // Every request the proxy may send is read at once: none waits behind the server's own queue.
    assert.isAtMost(hard, MAX_OPEN_CONNECTIONS)
  })

  it("defines no cron machines and no [env] the cron machines would not get", () => {
    assert.isFalse([...toml.keys()].some((k) => k === "env"))
    assert.notInclude(readFileSync(join(root, "fly.toml"), "utf8"), "schedule-time")
  })
})
