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
import { Cause, Clock, type Config, Console, Effect, Exit, Layer, Option, Schema } from "effect"
import { Argument, Command, Flag } from "effect/cli"
import { InvalidConfig, JobsConfig } from "./Config.ts"
import { Database, DatabaseError, describeSqlCause } from "./Database.ts"
import type { EmbeddedPostgresError } from "./EmbeddedPostgres.ts"
import type { Mailer } from "./Mailer.ts"
import type { Telemetry } from "./Telemetry.ts"
import { describeFailure, findJob, registry, runJob } from "./Job.ts"
import * as Layers from "./Layers.ts"
import * as Logging from "./Logging.ts"
import { migrate as migrateLibrary } from "./migrations/index.ts"
import { jobStatuses } from "./Status.ts"
import { sampleVariants } from "./emails/index.ts"

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

const jobNames = registry.map((j) => j.name)

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
  Effect.fromNullishOr(findJob(name)).pipe(
    Effect.mapError(() => new UsageError({ message: `unknown job "${name}"; jobs: ${jobNames.join(", ")}` }))
  )

/** The mode stack for a run. */
const stackFor = (
  options: { readonly dryRun: boolean; readonly local: boolean }
): Layer.Layer<Database | Mailer | JobsConfig | Telemetry, DatabaseError | InvalidConfig | EmbeddedPostgresError | Config.ConfigError> =>
  options.dryRun ? Layers.dryRun : options.local ? Layers.local(LOCAL_DIR) : Layers.live

const list = Command.make("list", { json: jsonFlag }, ({ json }) =>
  Console.log(
    json
      ? JSON.stringify(registry.map((j) => ({
        name: j.name,
        title: j.title,
        description: j.description,
        schedule: j.schedule,
        main: j.main,
        machineName: `cron-${j.name}`,
        command: ["node", j.main]
      })))
      : registry.map((j) => `${j.name.padEnd(20)} ${j.schedule.padEnd(7)} ${j.title}: ${j.description}`).join("\n")
  )).pipe(Command.withDescription("List the jobs"))

/** Runs one job in the mode the flags pick; fails with ExitWith when the run did not handle everyone. */
export const runCommand = (name: string, options: { readonly dryRun: boolean; readonly local: boolean; readonly now: Option.Option<string> }) =>
  Effect.gen(function*() {
    const job = yield* findJobOrFail(name)
    const now = yield* parseNow(options.now)
    const report = yield* runJob(job, { dryRun: options.dryRun, trigger: "cli", asOf: now }).pipe(
      Effect.provide(Layers.clockFor(now)),
      Effect.provide(stackFor({ dryRun: options.dryRun, local: options.local }))
    )
    if (report.exitCode !== 0) {
      return yield* new ExitWith({ code: report.exitCode, message: report.error ?? report.outcome })
    }
  })

const run = Command.make(
  "run",
  {
    job: Argument.String("job").pipe(Argument.withDescription(`One of: ${jobNames.join(", ")}`)),
    dryRun: dryRunFlag,
    now: nowFlag,
    local: localFlag
  },
  ({ dryRun, job, local, now }) => runCommand(job, { dryRun, local, now })
).pipe(Command.withDescription("Run one job once (live unless --dry-run or --local)"))

const status = Command.make("status", { json: jsonFlag, local: localFlag }, ({ json, local }) =>
  Effect.gen(function*() {
    const statuses = yield* jobStatuses.pipe(Effect.provide(local ? Layers.local(LOCAL_DIR) : databaseOnly))
    if (json) yield* Console.log(JSON.stringify(statuses, null, 2))
    else {
      for (const s of statuses) {
        const last = s.lastRun
        yield* Console.log(
          `${s.overdue ? "OVERDUE" : "ok     "} ${s.job.padEnd(20)} ` +
            (last === null
              ? "never ran"
              : `last run ${last.startedAt} ${last.outcome}` + (last.error ? ` (${last.error})` : "") +
                ` | last success ${s.lastSuccessAt ?? "never"} | overdue after ${s.overdueAfterMinutes} min`)
        )
        if (last?.stats) yield* Console.log(`        stats ${JSON.stringify(last.stats)}`)
      }
    }
    const overdue = statuses.filter((s) => s.overdue).map((s) => s.job)
    if (overdue.length > 0) return yield* new ExitWith({ code: 1, message: `overdue: ${overdue.join(", ")}` })
  })).pipe(Command.withDescription("Show each job's last run; exits 1 when any job is overdue"))

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
      const prefix = found.name === "practice-reminders" ? "reminder-" : "founder-"
      const variants = sampleVariants().filter((v) => v.name.startsWith(prefix))
      const dir = path.resolve(out)
      const written = yield* Effect.promise(async () => {
        await fs.mkdir(dir, { recursive: true })
        const files: Array<string> = []
        for (const v of variants) {
          const file = path.join(dir, `${v.name}.html`)
          await fs.writeFile(file, v.rendered.html)
          await fs.writeFile(path.join(dir, `${v.name}.txt`), `Subject: ${v.rendered.subject}\n\n${v.rendered.text}`)
          files.push(file)
        }
        return files
      })
      yield* Console.log(`${written.length} variant(s) of ${found.name}:\n${written.map((f) => `  ${f}`).join("\n")}`)
    })
).pipe(Command.withDescription("Render every template variant of a job to HTML files for a person to look at"))

const unsubscribe = Command.make(
  "unsubscribe",
  {
    user: Flag.String("user").pipe(Flag.withDescription("The user's id (users.id)"), Flag.optional),
    email: Flag.String("email").pipe(Flag.withDescription("An address, whoever it belongs to"), Flag.optional),
    list: Flag.Literals("list", ["all", ...jobNames]).pipe(
      Flag.withDescription("The list to stop (default: every list)"),
      Flag.withDefault("all")
    ),
    local: localFlag
  },
  ({ email, list, local, user }) =>
    Effect.gen(function*() {
      if (Option.isNone(user) && Option.isNone(email)) {
        return yield* new UsageError({ message: "unsubscribe needs --user ID or --email ADDRESS" })
      }
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

// The HTTP server and its routes are imported only by `serve` (issue 13).
const serve = Command.make("serve", { local: localFlag }, ({ local }) =>
  Effect.flatMap(Effect.promise(() => import("./Http.ts")), (Http) =>
    Layer.launch(Http.layerServer.pipe(Layer.provide(local ? Layers.local(LOCAL_DIR) : Layers.live))))).pipe(
    Command.withDescription("Serve /api/cron/*, /health and /unsubscribe on PORT (default 8080)")
  )

/** A Fly main: `run <job>` with the job fixed, the same flags, the same exit codes. */
export const jobMain = (name: string) =>
  Command.make(name, { dryRun: dryRunFlag, now: nowFlag, local: localFlag }, ({ dryRun, local, now }) =>
    runCommand(name, { dryRun, local, now })).pipe(Command.withDescription(`Run ${name} once (live unless --dry-run or --local)`))

/** Every subcommand of `kaiwa-jobs`. */
export const commands = [list, run, status, migrate, preview, unsubscribe, serve] as const

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

