/**
 * The `kaiwa-jobs` command line: list, run, status, migrate, preview and serve. Like the HTTP server, it only
 * ever calls the runner. Exit codes follow CONTRACT 7: 0 every due recipient handled; 1 a fatal error or
 * recipients left unsent; 2 bad configuration or usage, with a message naming the variable or flag (never its
 * value). The Fly mains in scripts/ are this CLI's `run` with the job fixed.
 */
import * as fs from "node:fs/promises"
import * as path from "node:path"
// Deep imports (issue 13): the package root also loads the Redis client, `ws` and undici.
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as NodeServices from "@effect/platform-node/NodeServices"
import { Cause, Clock, type Config, Console, Context, Effect, Exit, Layer, Option, Schema } from "effect"
import { Argument, Command, Flag } from "effect/cli"
import { InvalidConfig, JobsConfig } from "./Config.ts"
import { Database, DatabaseError, describeSqlCause } from "./Database.ts"
import type { EmbeddedPostgresError } from "./EmbeddedPostgres.ts"
import type { Mailer } from "./Mailer.ts"
import type { Telemetry } from "./Telemetry.ts"
import { describeFailure, runJob } from "./Job.ts"
import { findJob, Jobs } from "./jobs/index.ts"
import * as Layers from "./Layers.ts"
import * as Logging from "./Logging.ts"
import { migrate as migrateLibrary } from "./migrations/index.ts"
import { describeHealth } from "./DeliveryHealth.ts"
import { jobStatuses } from "./Status.ts"

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

/** Parses `--now`; anything but a full ISO-8601 instant is a usage error. */
export const parseNow = (raw: Option.Option<string>) =>
  Option.match(raw, {
    onNone: () => Effect.succeed(undefined),
    onSome: (s) => {
      const ms = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})$/.test(s) ? Date.parse(s) : NaN
      return Number.isNaN(ms)
        ? Effect.fail(new UsageError({ message: `--now must be an ISO-8601 instant with a time zone, e.g. 2026-03-10T09:00:00Z` }))
        : Effect.succeed(new Date(ms))
    }
  })

const findJobOrFail = (name: string) =>
  Effect.flatMap(Jobs, (jobs) =>
    Effect.fromNullishOr(findJob(jobs, name)).pipe(
      Effect.mapError(() => new UsageError({ message: `unknown job "${name}"; jobs: ${jobs.map((j) => j.name).join(", ")}` }))
    ))

/** The services a mode stack provides. */
type ModeServices = Database | Mailer | JobsConfig | Telemetry
type ModeError = DatabaseError | InvalidConfig | EmbeddedPostgresError | Config.ConfigError

/**
 * The mode stacks the commands run in (CONTRACT 6). Production uses `Layers`; a test provides its own (the
 * in-memory mailer on its test database) to run the real commands in process.
 */
export const Stacks = Context.Reference<{
  readonly live: Layer.Layer<ModeServices, ModeError>
  readonly dryRun: Layer.Layer<ModeServices, ModeError>
  readonly local: (dataDir: string) => Layer.Layer<ModeServices, ModeError>
}>("kaiwa-jobs/Cli/Stacks", { defaultValue: () => ({ live: Layers.live, dryRun: Layers.dryRun, local: Layers.local }) })

/** The mode stack for a run. */
const stackFor = (options: { readonly dryRun: boolean; readonly local: boolean }) =>
  Effect.map(Stacks, (stacks) => options.dryRun ? stacks.dryRun : options.local ? stacks.local(LOCAL_DIR) : stacks.live)

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

/** Runs one job in the mode the flags pick; fails with ExitWith when the run did not handle everyone. */
export const runCommand = (name: string, options: { readonly dryRun: boolean; readonly local: boolean; readonly now: Option.Option<string> }) =>
  Effect.gen(function*() {
    const job = yield* findJobOrFail(name)
    const now = yield* parseNow(options.now)
    // The job's own settings, before any database or mailer: a bad one exits 2 naming the variable.
    yield* job.checkSettings
    const stack = yield* stackFor({ dryRun: options.dryRun, local: options.local })
    const report = yield* runJob(job, { dryRun: options.dryRun, trigger: "cli", asOf: now }).pipe(
      Effect.provide(Layers.clockFor(now)),
      Effect.provide(stack)
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
    const statuses = yield* jobStatuses.pipe(Effect.provide(stack))
    if (json) yield* Console.log(JSON.stringify(statuses, null, 2))
    else {
      for (const s of statuses) {
        const last = s.lastRun
        yield* Console.log(
          `${s.overdue ? "OVERDUE" : s.atRisk ? "AT RISK" : "ok     "} ${s.job.padEnd(20)} ` +
            (last === null
              ? "never ran"
              : `last run ${last.startedAt} ${last.outcome}` + (last.error ? ` (${last.error})` : "") +
                ` | last success ${s.lastSuccessAt ?? "never"} | overdue after ${s.overdueAfterMinutes} min`)
        )
        if (last?.stats) yield* Console.log(`        stats ${JSON.stringify(last.stats)}`)
        yield* Console.log(`        ${s.atRisk ? "AT RISK " : ""}delivery ${describeHealth(s.delivery)}`)
      }
    }
    const overdue = statuses.filter((s) => s.overdue).map((s) => s.job)
    const atRisk = statuses.filter((s) => s.atRisk).map((s) => s.job)
    const problems = [
      ...(overdue.length > 0 ? [`overdue: ${overdue.join(", ")}`] : []),
      ...(atRisk.length > 0 ? [`at risk: ${atRisk.join(", ")}`] : [])
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
      Effect.mapError((e) => e._tag === "SqlError" || e._tag === "MigrationError" ? new DatabaseError({ message: `migrations failed: ${describeSqlCause(e)}` }) : e)
    )
    yield* Console.log(ran.length === 0 ? "kaiwa_jobs schema is up to date" : `applied: ${ran.map(([id, n]) => `${id}_${n}`).join(", ")}`)
  })).pipe(Command.withDescription("Apply the kaiwa_jobs migrations (Fly's release_command)"))

const preview = Command.make(
  "preview",
  {
    job: Argument.String("job"),
    out: Flag.String("out").pipe(Flag.withDescription("Folder for the HTML files"), Flag.withDefault(".preview"))
  },
  ({ job, out }) =>
    Effect.gen(function*() {
      const found = yield* findJobOrFail(job)
      // The job's own samples through its real render path (unsubscribe link, headers, template check), with
      // the configured settings (development defaults when unset).
      const config = yield* JobsConfig
      const variants = yield* found.preview(config)
      const dir = path.resolve(out)
      const written = yield* Effect.promise(async () => {
        await fs.mkdir(dir, { recursive: true })
        const files: Array<string> = []
        for (const v of variants) {
          const file = path.join(dir, `${v.name}.html`)
          await fs.writeFile(file, v.email.html)
          await fs.writeFile(
            path.join(dir, `${v.name}.txt`),
            `From: ${v.email.from}\nSubject: ${v.email.subject}\n\n${v.email.text}`
          )
          files.push(file)
        }
        return files
      })
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
      const db = yield* Database
      const now = new Date(yield* Clock.currentTimeMillis)
      const added = yield* db.suppress({
        userId: Option.getOrNull(user),
        email: Option.getOrNull(email),
        list: list === "all" ? "*" : list,
        reason: "unsubscribed",
        now
      })
      yield* Console.log(added ? `suppressed (${list})` : `already suppressed (${list})`)
    }).pipe(Effect.provide(local ? Layers.local(LOCAL_DIR) : databaseOnly))
).pipe(Command.withDescription("Record an unsubscribe by hand (a request that arrived by email, say)"))

/** `serve` exits this long after SIGINT or SIGTERM at the latest, whatever state its database is in (issue 19). */
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

// The HTTP server and its routes are imported only by `serve` (issue 13). `--local` binds loopback unless HOST
// says otherwise: the demo's server is for the person at the laptop.
const serve = Command.make("serve", { local: localFlag }, ({ local }) =>
  Effect.flatMap(Effect.all([Stacks, Effect.promise(() => import("./Http.ts"))]), ([stacks, Http]) =>
    Effect.andThen(
      exitDeadline,
      Layer.launch(Http.layerServerOn(local ? "127.0.0.1" : undefined).pipe(
        Layer.provide(local ? stacks.local(LOCAL_DIR) : stacks.live)
      ))
    ).pipe(Effect.scoped))).pipe(
    Command.withDescription("Serve /api/cron/*, /health, /unsubscribe and /webhooks/resend on PORT (default 8080)")
  )

/** A Fly main: `run <job>` with the job fixed, the same flags, the same exit codes. */
export const jobMain = (name: string) =>
  Command.make(name, { dryRun: dryRunFlag, now: nowFlag, local: localFlag }, ({ dryRun, local, now }) =>
    runCommand(name, { dryRun, local, now })).pipe(Command.withDescription(`Run ${name} once (live unless --dry-run or --local)`))

/** Every subcommand of `kaiwa-jobs`. */
export const commands = [list, run, status, migrate, preview, unsubscribe, serve] as const

/** The `kaiwa-jobs` command with every subcommand. */
export const root = Command.make("kaiwa-jobs").pipe(
  Command.withDescription("Typed scheduled jobs for Kaiwa: run, preview and serve the registered email jobs"),
  Command.withSubcommands([...commands])
)

/** Maps any failure to an exit code, printing a one-line explanation without secrets. */
export const exitCodeFor = (cause: Cause.Cause<unknown>): Effect.Effect<number> => {
  const error = Cause.squash(cause)
  const tag = (error as { _tag?: string })?._tag
  switch (tag) {
    case "ExitWith":
      return Effect.succeed((error as ExitWith).code)
    case "InvalidConfig":
      return Console.error(`kaiwa-jobs: configuration error: ${(error as InvalidConfig).message}`).pipe(Effect.as(2))
    case "ConfigError": {
      const variable = /\["([A-Z0-9_]+)"\]/.exec(String((error as Error).message))?.[1] ?? "a variable"
      return Console.error(`kaiwa-jobs: configuration error: ${variable} is missing or invalid`).pipe(Effect.as(2))
    }
    case "UsageError":
      return Console.error(`kaiwa-jobs: ${(error as UsageError).message}`).pipe(Effect.as(2))
    case "ShowHelp": {
      const errors = (error as { errors?: ReadonlyArray<unknown> }).errors ?? []
      return Effect.succeed(errors.length === 0 ? 0 : 2)
    }
    default:
      if (typeof tag === "string" && /^(Missing|Invalid|Unrecognized|Duplicate|UnknownSubcommand)/.test(tag)) {
        return Effect.succeed(2)
      }
      return Console.error(`kaiwa-jobs: ${describeFailure(cause)}`).pipe(Effect.as(1))
  }
}

/** Runs the CLI on `argv` (without node and script) to an exit code. */
export const main = <Name extends string, Input, E, R>(
  root: Command.Command<Name, Input, any, E, R>,
  argv: ReadonlyArray<string>
): Effect.Effect<number> =>
  Command.runWith(root, { version: "0.1.0" })(argv).pipe(
    Effect.as(0),
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

