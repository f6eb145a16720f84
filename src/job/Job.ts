/**
 * What a job is and how one is declared. A job is declared once with `make`: its name, its own settings, its
 * rules (one selection statement that says who is due, with each candidate's dedupe key and the instant its
 * window closes), the schema of the data the selection stores on the ledger row, its template and its stats
 * groups. `make` turns that into a `Job` that inherits everything else: exactly-once delivery through the
 * ledger, the cross-job cap and suppressions (composed around the job's rule by `Ledger.selectionOf`), the
 * unsubscribe link and RFC 8058 headers signed for the job's own list and the template check (Render.ts), dry
 * runs, previews, and typed stats. The registry (`jobs/index.ts`) lists the jobs that ship; the CLI, the HTTP
 * server, status, the demo and the deploy script all read it. The runner is in Runner.ts.
 */
import { Config, Duration, Effect, type Schema } from "effect"
import type { Statement } from "effect/sql"
import { SqlClient } from "effect/sql"
import { JobsConfig, type Settings } from "../config/Config.ts"
import { InvalidConfig, read } from "../config/Setting.ts"
import { AppShapeError, AppTables } from "../database/App.ts"
import { type Candidate, Database, type DatabaseError, type Decision, type Learner, type Selection, type SelectionArgs } from "../database/Database.ts"
import { type DeliveryReport, deliver, type Recipient, type RenderError, type RunContext } from "../delivery/Delivery.ts"
import { Ledger } from "../ledger/Ledger.ts"
import { Pauses } from "../ledger/Pauses.ts"
import type { Runs } from "../ledger/Runs.ts"
import type { EmailLinks } from "../mail/Links.ts"
import type { Mailer, OutgoingEmail } from "../mail/Mailer.ts"
import type { Telemetry } from "../telemetry/Telemetry.ts"
import { prepare, previews } from "./Render.ts"

export { describeFailure, exitCodeOf, type Outcome, type RunOptions, type RunReport, runJob } from "./Runner.ts"

/** Stats every job reports besides its own groups. */
export interface CommonStats {
  readonly due: number
  readonly failed: number
  readonly skipped: Readonly<Record<string, number>>
  readonly pending: number
  readonly badRows: Readonly<Record<string, ReadonlyArray<string>>>
  /**
   * A dry run only: what a live run would have sent, by group (the groups' own counts are 0, as nothing was
   * sent), and the database it read.
   */
  readonly wouldSend?: Readonly<Record<string, number>> | undefined
  readonly database?: string | undefined
}

/** A job's stats: the common counts plus one count of sent emails per group the job declares. */
export type Stats<G extends string> = CommonStats & { readonly [K in G]: number }

/** The services a job program needs. */
export type JobServices = Database | Ledger | Runs | AppTables | Pauses | SqlClient.SqlClient | Mailer | JobsConfig | Telemetry

/** What a job program hands the runner. */
export interface JobResult<G extends string> {
  readonly stats: Stats<G>
  readonly report: DeliveryReport
  /** The seed's stats line, e.g. `📊 Stats: 8 sent, 0 failed`. */
  readonly statsLine: string
}

/** One rendered sample of a job's email, for `kaiwa-jobs preview`. */
export interface Preview {
  readonly name: string
  readonly email: OutgoingEmail
}

/**
 * One scheduled job, ready to run. `G` is the job's stats groups; a registry holds jobs as `Job.Any`, and the
 * runner gives back stats typed from `G` again (`runJob(job).stats.Day1`).
 */
export interface Job<Name extends string = string, G extends string = never> {
  readonly name: Name
  readonly title: string
  readonly description: string
  /** What a person leaves when they unsubscribe from this job's emails: "You will no longer get <list>." */
  readonly list: string
  /** Fly's schedule bucket; Fly timing is fuzzy, so every job runs hourly and decides itself what is due. */
  readonly schedule: "hourly"
  /** A job is OVERDUE when its last successful run is older than this. */
  readonly overdueAfter: Duration.Duration
  /** The command a Fly machine runs: a compiled main of its own, or the CLI's generic `run <name>`. */
  readonly command: ReadonlyArray<string>
  /** Other names the job answers to (older HTTP paths such as `/api/cron/send-reminders`). */
  readonly aliases: ReadonlyArray<string>
  /** The stats groups, in order. */
  readonly groups: ReadonlyArray<string>
  readonly completedLine: string
  /**
   * The job's own settings as declared (`Definition.settings`): a trigger validates them with the shared ones
   * (`Config.JobSettings`), so one message lists every problem.
   */
  readonly settings: Config.Config<unknown>
  /** Reads the job's own settings, so a trigger can refuse bad ones before a run (exit 2, naming each variable). */
  readonly checkSettings: Effect.Effect<void, InvalidConfig>
  readonly program: (ctx: RunContext) => Effect.Effect<JobResult<G>, unknown, JobServices>
  /**
   * The job's whole selection at an instant, exactly as a run plans it (the job's rule inside the library's
   * ledger check, shared rules and cap): one row per candidate, `skip_reason` null when due.
   */
  readonly statement: (
    asOf: Date
  ) => Effect.Effect<Statement.Statement<Candidate>, AppShapeError | InvalidConfig, Ledger | AppTables | SqlClient.SqlClient | JobsConfig>
  /** Why the job is or is not due for each learner at an instant (`kaiwa-jobs why`), by the run's own SQL. */
  readonly decide: (
    asOf: Date,
    learners: ReadonlyArray<Learner>
  ) => Effect.Effect<ReadonlyArray<Decision>, AppShapeError | InvalidConfig | DatabaseError, Ledger | AppTables | SqlClient.SqlClient | JobsConfig | Pauses>
  /** Renders every sample the job declares, with the given settings, through the job's real render path. */
  readonly preview: (config: Settings) => Effect.Effect<ReadonlyArray<Preview>, RenderError | InvalidConfig>
  /**
   * Renders the job's email for one recipient's ledger data through the job's real render path, with links that
   * cannot be used (`kaiwa-jobs send-test`: the copy goes to an operator, who must not unsubscribe the learner).
   */
  readonly renderTest: (config: Settings, recipient: Recipient) => Effect.Effect<OutgoingEmail, RenderError | InvalidConfig>
}

/** Any job, as a registry holds it. */
export type Any = Job<string, never>

/**
 * What a selection is given: a statement builder (fragments only; the library runs them), the app's tables
 * through the adapter (never by name), the run's instant (never now() in SQL), and the settings.
 */
export interface SelectionContext<C = undefined> {
  readonly sql: Statement.Constructor
  readonly app: AppTables["Service"]
  readonly asOf: Date
  readonly config: Settings
  /** The job's own settings (`Definition.settings`). */
  readonly settings: C
}

/** What a template is given besides the job's data. */
export interface RenderContext<C = undefined> {
  readonly config: Settings
  /** The job's own settings (`Definition.settings`). */
  readonly settings: C
  readonly recipient: Recipient
  /** This recipient's signed one-click unsubscribe link for this job's list; the template shows it. */
  readonly unsubscribeUrl: string
  /** This recipient's link to their preference center (every list); the template's footer shows it. */
  readonly preferencesUrl: string
  /** Every per-recipient link (src/mail/Links.ts): signed in a live run, placeholders in a dry run. */
  readonly links: EmailLinks
}

/** What a job's template returns; the library adds the recipient, the unsubscribe headers and the job tag. */
export interface Draft {
  readonly subject: string
  readonly html: string
  readonly text: string
  /** Defaults to MAIL_FROM. */
  readonly from?: string | undefined
  readonly replyTo?: string | undefined
  /** Tags besides `job=<name>`, which every email carries. */
  readonly tags?: ReadonlyArray<{ readonly name: string; readonly value: string }> | undefined
}

/** Everything a job declares; `Job.make` does the rest. */
export interface Definition<Name extends string, G extends string, D, C = undefined> {
  /** The job's name: its ledger key, CLI name, HTTP path `/api/cron/<name>`, unsubscribe list and Fly machine. */
  readonly name: Name
  readonly title: string
  /** One line for `kaiwa-jobs list`. */
  readonly description: string
  /** What the unsubscribe page says a person leaves: "daily practice reminders". */
  readonly list: string
  /** Default 3 hours: an hourly job that has not succeeded for three ticks needs a person. */
  readonly overdueAfter?: Duration.Input | undefined
  /** Other names for `/api/cron/<alias>`. */
  readonly aliases?: ReadonlyArray<string> | undefined
  /** A compiled main of its own (`dist/send-reminders.js`); by default Fly runs `node dist/cli.js run <name>`. */
  readonly main?: string | undefined
  /**
   * Settings of this job only, read through effect `Config`, so a job that needs a setting declares it here
   * instead of in `src/config/` (e.g. `Setting.every({ localTime: Setting.localTime("STREAK_LOCAL_TIME", 18 * 60) })`,
   * or any `Config` such as `Config.Int("STREAK_MIN_SESSIONS")`). Every command validates them with the shared
   * settings (one message, exit 2, naming each variable) and the job reads them again at each run.
   */
  readonly settings?: Config.Config<C> | undefined
  /** The schema of the data the selection stores on each ledger row (the `data` jsonb column). */
  readonly data: Schema.Codec<D, unknown>
  /**
   * The job's rule, set-based over every user (see `Selection`): who may be due with their dedupe key, then,
   * for those with no ledger row for it yet, their data and the instant the window closes. The library adds the
   * rules every job shares (verified, opted in, a usable and unsuppressed address, the cross-job cap).
   */
  readonly selection: (ctx: SelectionContext<C>) => Selection
  /**
   * Skip reasons that settle the dedupe key for good: such candidates get a `skipped` ledger row, so later ticks
   * leave them out (the weekly report blocked by the cap is skipped for that week). Others are retried each tick.
   */
  readonly finalSkips?: ReadonlyArray<string> | undefined
  /** The stats groups; every sent email counts in exactly one (`group`). */
  readonly groups: readonly [G, ...Array<G>]
  readonly group: (data: D, recipient: Recipient) => G
  /** The template: pure, data in, draft out. Every user-supplied string must go through `emails/html.ts`. */
  readonly render: (data: D, ctx: RenderContext<C>) => Draft
  /** One sample per variant, for `kaiwa-jobs preview` (and the template tests). */
  readonly samples: ReadonlyArray<{ readonly name: string; readonly data: D }>
  /** Default `🎉 <title> completed!`. */
  readonly completedLine?: string | undefined
  /** Default `📊 Stats: <group>=<n>, ..., failed=<n>`. */
  readonly statsLine?: ((stats: Stats<G>) => string) | undefined
}

const DEFAULT_OVERDUE_AFTER = Duration.hours(3)

/** Declares a job. */
export const make = <const Name extends string, const G extends string, D, C = undefined>(
  definition: Definition<Name, G, D, C>
): Job<Name, G> => {
  // A job without settings of its own reads `undefined`, which is its declared `C` (the default).
  const settingsConfig = definition.settings ?? Config.succeed(undefined as C)
  const readSettings = read(settingsConfig)
  const statement = (asOf: Date) =>
    Effect.flatMap(Ledger, (ledger) => Effect.map(selectionArgs(definition, readSettings, asOf), ledger.selectionOf))
  return {
    ...describe(definition),
    settings: settingsConfig,
    checkSettings: Effect.asVoid(readSettings),
    program: program(definition, readSettings, statement),
    statement,
    decide: decide(definition, readSettings),
    renderTest: (config, recipient) =>
      Effect.flatMap(readSettings, (settings) => Effect.map(prepare(definition, config, settings, "dryRun")(recipient), (r) => r.email)),
    preview: (config) => Effect.flatMap(readSettings, (settings) => previews(definition, config, settings))
  }
}

/** What a job says about itself: names, schedule, command, groups and lines, with their defaults. */
const describe = <Name extends string, G extends string, D, C>(definition: Definition<Name, G, D, C>) => ({
  name: definition.name,
  title: definition.title,
  description: definition.description,
  list: definition.list,
  schedule: "hourly" as const,
  overdueAfter: definition.overdueAfter === undefined ? DEFAULT_OVERDUE_AFTER : Duration.fromInputUnsafe(definition.overdueAfter),
  command: definition.main !== undefined ? ["node", definition.main] : ["node", "dist/cli.js", "run", definition.name],
  aliases: definition.aliases ?? [],
  groups: definition.groups,
  completedLine: definition.completedLine ?? `🎉 ${definition.title} completed!`
})

/** What the ledger composes the job's rule into: the rule at `asOf`, with the settings and the app's tables. */
const selectionArgs = Effect.fnUntraced(function*<C>(
  definition: Pick<Definition<string, string, never, C>, "name" | "selection">,
  readSettings: Effect.Effect<C, InvalidConfig>,
  asOf: Date
) {
  const config = yield* JobsConfig
  const settings = yield* readSettings
  // Jobs get the statement builder only (fragments; the library runs them), never the client.
  const sql: Statement.Constructor = yield* SqlClient.SqlClient
  const app = yield* AppTables
  yield* app.ensureUsable
  return {
    job: definition.name,
    list: definition.name,
    asOf,
    minHoursBetweenEmails: config.minHoursBetweenEmails,
    selection: definition.selection({ sql, app, asOf, config, settings })
  } satisfies SelectionArgs
})

/** `kaiwa-jobs why`: each learner's decision by the run's own SQL, or the pause that holds the job. */
const decide = <C>(definition: Pick<Definition<string, string, never, C>, "name" | "selection">, readSettings: Effect.Effect<C, InvalidConfig>) =>
  Effect.fnUntraced(function*(asOf: Date, learners: ReadonlyArray<Learner>) {
    const pause = yield* Effect.flatMap(Pauses, (p) => p.get(definition.name))
    if (pause !== undefined) {
      const decision: Decision = {
        due: false,
        reason: "paused",
        detail: `paused by ${pause.pausedBy} at ${pause.pausedAt.toISOString()}${pause.reason ? `: ${pause.reason}` : ""}`,
        key: null
      }
      return learners.map(() => decision)
    }
    const ledger = yield* Ledger
    return yield* ledger.explainOf(yield* selectionArgs(definition, readSettings, asOf), learners)
  })

/** The job's program: plan, claim and deliver through the ledger, then the stats by the job's groups. */
const program = <G extends string, D, C>(
  definition: Definition<string, G, D, C>,
  readSettings: Effect.Effect<C, InvalidConfig>,
  statement: (asOf: Date) => Effect.Effect<Statement.Statement<Candidate>, AppShapeError | InvalidConfig, Ledger | AppTables | SqlClient.SqlClient | JobsConfig>
) =>
  Effect.fnUntraced(function*(ctx: RunContext) {
    const config = yield* JobsConfig
    const settings = yield* readSettings
    const report = yield* deliver(ctx, {
      list: definition.name,
      selection: yield* statement(ctx.asOf),
      finalSkips: definition.finalSkips ?? [],
      // A dry run prints its emails: their links carry a placeholder, never a token signed with the real secret.
      prepare: prepare(definition, config, settings, ctx.dryRun ? "dryRun" : "live")
    })
    return ctx.dryRun ? yield* dryRunResult(definition.groups, report) : liveResult(definition, report)
  })

/** The sent counts by group, as the job declares its groups. */
const countsBy = <G extends string>(groups: ReadonlyArray<G>, sent: Readonly<Record<string, number>>) =>
  Object.fromEntries(groups.map((g) => [g, sent[g] ?? 0])) as { readonly [K in G]: number }

const commonOf = (report: DeliveryReport): CommonStats =>
  ({ due: report.due, failed: report.failed, skipped: report.skipped, pending: report.pending, badRows: report.badRows })

const liveResult = <G extends string>(definition: Pick<Definition<string, G, never, never>, "groups" | "statsLine">, report: DeliveryReport): JobResult<G> => {
  const stats: Stats<G> = { ...commonOf(report), ...countsBy(definition.groups, report.sent) }
  const line = definition.statsLine ??
    ((s: Stats<G>) => `📊 Stats: ${[...definition.groups.map((g) => `${g}=${s[g]}`), `failed=${s.failed}`].join(", ")}`)
  return { stats, report, statsLine: line(stats) }
}

/** Nothing was sent: the groups say 0, and what a live run would send is reported as such, with the database read. */
const dryRunResult = Effect.fnUntraced(function*<G extends string>(groups: ReadonlyArray<G>, report: DeliveryReport) {
  const counts = countsBy(groups, report.sent)
  const database = (yield* Database).label
  const stats: Stats<G> = { ...commonOf(report), ...countsBy(groups, {}), wouldSend: counts, database }
  const line = `📊 Dry run of ${database}: would send ${groups.map((g) => `${g}=${counts[g]}`).join(", ")}; ` +
    `${report.failed} would fail; nothing was sent`
  return { stats, report, statsLine: line } satisfies JobResult<G>
})
