/**
 * What a job is, how one is declared, and the runner. A job is declared once with `Job.make`: its name, its
 * rules (one selection statement that says who is due, with each candidate's dedupe key and the instant its
 * window closes), the schema of the data the selection stores on the ledger row, its template and its stats
 * groups. `make` turns that into a `Job` that inherits everything else: exactly-once delivery through the
 * ledger, the cross-job cap and suppressions (composed around the job's rule by `Ledger.selectionOf`), the unsubscribe link
 * and RFC 8058 headers signed for the job's own list, the template check that no placeholder or `undefined`
 * ever leaves, dry runs, previews, and typed stats. The registry (`jobs/index.ts`) lists the jobs that ship;
 * the CLI, the HTTP server, status, the demo and the deploy script all read it.
 *
 * The runner (`runJob`) is the only way a trigger (Fly main, CLI, HTTP) runs a job: it records the run, times
 * it, logs the seed's completion lines, emits `cron_job_completed`, and maps the outcome to an exit code
 * (CONTRACT section 7).
 */
import { randomUUID } from "node:crypto"
import { Cause, Clock, Config, Duration, Effect, Exit, Schema } from "effect"
import type { Statement } from "effect/sql"
import { AppShapeError, AppTables } from "../database/App.ts"
import { JobsConfig, type Settings } from "../config/Config.ts"
import { SqlClient } from "effect/sql"
import { type Candidate, Database, type DatabaseError, type Decision, type Learner, type Selection, type SelectionArgs } from "../database/Database.ts"
import { Ledger } from "../ledger/Ledger.ts"
import { Runs } from "../ledger/Runs.ts"
import { Pauses } from "../ledger/Pauses.ts"
import { type DeliveryReport, deliver, type Recipient, RenderError, type RunContext } from "../delivery/Delivery.ts"
import { findProblems } from "../emails/problems.ts"
import type { Mailer, OutgoingEmail } from "../mail/Mailer.ts"
import { Telemetry } from "../telemetry/Telemetry.ts"
import { type EmailLinks, type LinkMode, linksFor } from "../mail/Links.ts"
import { unsubscribeHeaders } from "../mail/Unsubscribe.ts"

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
  /** Reads the job's own settings (`Definition.settings`), so a trigger can refuse bad ones before a run (exit 2). */
  readonly checkSettings: Effect.Effect<void, Config.ConfigError>
  readonly program: (ctx: RunContext) => Effect.Effect<JobResult<G>, unknown, JobServices>
  /**
   * The job's whole selection at an instant, exactly as a run plans it (the job's rule inside the library's
   * ledger check, shared rules and cap): one row per candidate, `skip_reason` null when due.
   */
  readonly statement: (
    asOf: Date
  ) => Effect.Effect<Statement.Statement<Candidate>, AppShapeError | Config.ConfigError, Ledger | AppTables | SqlClient.SqlClient | JobsConfig>
  /** Why the job is or is not due for each learner at an instant (`kaiwa-jobs why`), by the run's own SQL. */
  readonly decide: (
    asOf: Date,
    learners: ReadonlyArray<Learner>
  ) => Effect.Effect<ReadonlyArray<Decision>, AppShapeError | Config.ConfigError | DatabaseError, Ledger | AppTables | SqlClient.SqlClient | JobsConfig | Pauses>
  /** Renders every sample the job declares, with the given settings, through the job's real render path. */
  readonly preview: (config: Settings) => Effect.Effect<ReadonlyArray<Preview>, RenderError | Config.ConfigError>
  /**
   * Renders the job's email for one recipient's ledger data through the job's real render path, with links that
   * cannot be used (`kaiwa-jobs send-test`: the copy goes to an operator, who must not unsubscribe the learner).
   */
  readonly renderTest: (config: Settings, recipient: Recipient) => Effect.Effect<OutgoingEmail, RenderError | Config.ConfigError>
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
   * Settings of this job only, read through effect `Config` (e.g. `Config.String("STREAK_LOCAL_TIME")`), so a
   * job that needs a setting declares it here instead of in `Config.ts`. Read once per run; a missing or
   * malformed one stops a CLI run with exit 2 naming the variable, before anything is planned.
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

const SAMPLE_RECIPIENT: Recipient = { user_id: "sample-user", email: "aiko@example.com", dedupe_key: "sample", data: null }

/** Declares a job. */
export const make = <const Name extends string, const G extends string, D, C = undefined>(
  definition: Definition<Name, G, D, C>
): Job<Name, G> => {
  const decode = Schema.decodeUnknownEffect(definition.data)
  const readSettings: Effect.Effect<C, Config.ConfigError> = definition.settings ?? Effect.succeed(undefined as C)

  /** The email for one recipient, or why it cannot be sent: the one render path of live runs, dry runs and previews. */
  const renderData = (
    config: Settings,
    settings: C,
    recipient: Recipient,
    data: D,
    mode: LinkMode
  ): Effect.Effect<OutgoingEmail, RenderError> => {
    const links = linksFor(config, { userId: recipient.user_id, list: definition.name }, mode)
    const url = links.unsubscribeUrl
    return Effect.try({
      try: () => definition.render(data, { config, settings, recipient, unsubscribeUrl: url, preferencesUrl: links.preferencesUrl, links }),
      // A template that throws is a bug in that template; it costs one recipient, never the run.
      catch: (cause) =>
        new RenderError(`the template threw for user ${recipient.user_id}: ${cause instanceof Error ? cause.message : String(cause)}`)
    }).pipe(Effect.flatMap((draft) => {
      // The last line of defence: an unfilled placeholder, a stringified undefined, a control character.
      const problems = findProblems(draft)
      if (problems.length > 0) {
        return Effect.fail(new RenderError(`the email for user ${recipient.user_id} is not fit to send (${problems.join("; ")})`))
      }
      return Effect.succeed({
        from: draft.from ?? config.mailFrom,
        to: recipient.email,
        ...(draft.replyTo !== undefined ? { replyTo: draft.replyTo } : {}),
        subject: draft.subject,
        html: draft.html,
        text: draft.text,
        headers: unsubscribeHeaders(url),
        tags: [{ name: "job", value: definition.name }, ...(draft.tags ?? [])]
      } satisfies OutgoingEmail)
    }))
  }

  const prepare = (config: Settings, settings: C, mode: LinkMode) => (recipient: Recipient) =>
    decode(recipient.data).pipe(
      Effect.mapError(() => new RenderError(`ledger data of user ${recipient.user_id} does not decode`)),
      Effect.flatMap((data) =>
        Effect.map(
          renderData(config, settings, recipient, data, mode),
          (email) => ({ email, group: definition.group(data, recipient) })
        )
      )
    )

  const statsLine = definition.statsLine ??
    ((stats: Stats<G>) =>
      `📊 Stats: ${[...definition.groups.map((g) => `${g}=${stats[g]}`), `failed=${stats.failed}`].join(", ")}`)

  const selectionArgs = Effect.fnUntraced(function*(asOf: Date) {
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

  const statement = (asOf: Date) => Effect.flatMap(Ledger, (ledger) => Effect.map(selectionArgs(asOf), ledger.selectionOf))

  const decide = Effect.fnUntraced(function*(asOf: Date, learners: ReadonlyArray<Learner>) {
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
    return yield* ledger.explainOf(yield* selectionArgs(asOf), learners)
  })

  const program = Effect.fnUntraced(function*(ctx: RunContext) {
    const config = yield* JobsConfig
    const settings = yield* readSettings
    const report = yield* deliver(ctx, {
      list: definition.name,
      selection: yield* statement(ctx.asOf),
      finalSkips: definition.finalSkips ?? [],
      // A dry run prints its emails: their links carry a placeholder, never a token signed with the real secret.
      prepare: prepare(config, settings, ctx.dryRun ? "dryRun" : "live")
    })
    const counts = Object.fromEntries(definition.groups.map((g) => [g, report.sent[g] ?? 0])) as { readonly [K in G]: number }
    const common = { due: report.due, failed: report.failed, skipped: report.skipped, pending: report.pending, badRows: report.badRows }
    if (ctx.dryRun) {
      // Nothing was sent: the groups say 0, and what a live run would send is reported as such.
      const zero = Object.fromEntries(definition.groups.map((g) => [g, 0])) as { readonly [K in G]: number }
      const database = (yield* Database).label
      const stats: Stats<G> = { ...common, ...zero, wouldSend: counts, database }
      const line = `📊 Dry run of ${database}: would send ${definition.groups.map((g) => `${g}=${counts[g]}`).join(", ")}; ` +
        `${report.failed} would fail; nothing was sent`
      return { stats, report, statsLine: line } satisfies JobResult<G>
    }
    const stats: Stats<G> = { ...common, ...counts }
    return { stats, report, statsLine: statsLine(stats) } satisfies JobResult<G>
  })

  return {
    name: definition.name,
    title: definition.title,
    description: definition.description,
    list: definition.list,
    schedule: "hourly",
    overdueAfter: definition.overdueAfter === undefined ? DEFAULT_OVERDUE_AFTER : Duration.fromInputUnsafe(definition.overdueAfter),
    command: definition.main !== undefined ? ["node", definition.main] : ["node", "dist/cli.js", "run", definition.name],
    aliases: definition.aliases ?? [],
    groups: definition.groups,
    completedLine: definition.completedLine ?? `🎉 ${definition.title} completed!`,
    checkSettings: Effect.asVoid(readSettings),
    program,
    statement,
    decide,
    renderTest: (config, recipient) =>
      Effect.flatMap(readSettings, (settings) => Effect.map(prepare(config, settings, "dryRun")(recipient), (r) => r.email)),
    preview: (config) =>
      Effect.flatMap(readSettings, (settings) =>
        Effect.forEach(definition.samples, (sample) =>
          Effect.map(
            // Previews are for the sample learner, who is nobody: a real signature shows what the link will look like.
            renderData(config, settings, { ...SAMPLE_RECIPIENT, dedupe_key: sample.name, data: sample.data }, sample.data, "live"),
            (email): Preview => ({ name: sample.name, email })
          )))
  }
}

/** How a run ended. */
export type Outcome = "succeeded" | "incomplete" | "failed" | "interrupted" | "paused"

/** CONTRACT 7: 0 when every due recipient was handled; 1 on a fatal error or recipients left unsent. */
export const exitCodeOf = (outcome: Outcome): 0 | 1 | 130 =>
  outcome === "succeeded" || outcome === "paused" ? 0 : outcome === "interrupted" ? 130 : 1

/** What the runner tells its trigger; `stats` are typed from the job's groups. */
export interface RunReport<G extends string = never> {
  readonly runId: string
  readonly job: string
  readonly dryRun: boolean
  readonly asOf: string
  readonly outcome: Outcome
  readonly exitCode: 0 | 1 | 130
  readonly stats: Stats<G> | null
  readonly error: string | null
  readonly durationMs: number
}

/** Options of one run. */
export interface RunOptions {
  readonly dryRun?: boolean | undefined
  readonly trigger?: string | undefined
  /**
   * The instant the run is as of (`--now`), exactly. Without it the Clock's current instant. Given with a
   * shifted Clock (Layers.clockFor), because the Clock's first reading may be a span's or a log line's, a
   * millisecond before the run's own.
   */
  readonly asOf?: Date | undefined
}

/** Describes a failure for operators: a message, never a stack or a secret. */
export const describeFailure = (cause: Cause.Cause<unknown>): string => {
  const error = Cause.squash(cause)
  if (typeof error === "object" && error !== null && "message" in error && typeof error.message === "string" && error.message !== "") {
    const tag = "_tag" in error && typeof error._tag === "string" ? `${error._tag}: ` : ""
    return `${tag}${error.message}`.split("\n")[0]!.slice(0, 500)
  }
  return String(error).split("\n")[0]!.slice(0, 500)
}

/** Runs one job once at the Clock's current instant and reports; never fails (failures become the report). */
export const runJob = Effect.fn("Job.run")(function*<Name extends string, G extends string>(
  job: Job<Name, G>,
  options: RunOptions = {}
) {
  const runs = yield* Runs
  const telemetry = yield* Telemetry
  const config = yield* JobsConfig
  const dryRun = options.dryRun ?? false
  const started = yield* Clock.currentTimeMillis
  const ctx: RunContext = {
    runId: randomUUID(),
    job: job.name,
    asOf: options.asOf ?? new Date(started),
    dryRun,
    deadline: started + Duration.toMillis(config.sendDeadline)
  }
  const annotate = Effect.annotateLogs({ job: job.name, runId: ctx.runId, ...(dryRun ? { dryRun: true } : {}) })
  const database = (yield* Database).label
  yield* Effect.logInfo(
    `▶ ${job.title} (${job.name}) as of ${ctx.asOf.toISOString()}${dryRun ? ` [dry run: reading ${database}; nothing is sent or written]` : ""}`
  ).pipe(annotate)
  if (!dryRun) {
    yield* runs.start({
      id: ctx.runId,
      job: job.name,
      asOf: ctx.asOf,
      startedAt: ctx.asOf,
      trigger: options.trigger ?? "cli",
      host: config.machine
    })
  }
  const finish = (outcome: Outcome, stats: CommonStats | null, error: string | null) =>
    Effect.gen(function*() {
      const ended = yield* Clock.currentTimeMillis
      if (!dryRun) {
        yield* runs.finish({ id: ctx.runId, outcome, finishedAt: new Date(ended), stats, error }).pipe(
          Effect.catch((e) => Effect.logError(`could not record the end of the run: ${e.message}`))
        )
      }
      return { durationMs: ended - started }
    })

  // A paused job (kaiwa-jobs pause) sends nothing: the run records itself as paused and exits 0, and its pending
  // rows wait for the first run after resume. A dry run goes on (it sends nothing anyway) and says so.
  const paused = yield* Effect.flatMap(Pauses, (p) => p.get(job.name))
  if (paused !== undefined) {
    const why = `paused by ${paused.pausedBy} since ${paused.pausedAt.toISOString()}${paused.reason ? ` (${paused.reason})` : ""}`
    if (!dryRun) {
      const { durationMs } = yield* finish("paused", null, why)
      yield* Effect.logWarning(`⏸ ${job.title} is ${why}: nothing sent; kaiwa-jobs resume ${job.name} to send again`).pipe(annotate)
      return { runId: ctx.runId, job: job.name, dryRun, asOf: ctx.asOf.toISOString(), outcome: "paused", exitCode: 0, stats: null, error: why, durationMs } satisfies RunReport<G> as RunReport<G>
    }
    yield* Effect.logWarning(`⏸ ${job.title} is ${why}: a live run would send nothing`).pipe(annotate)
  }

  // Everything the job logs carries the job and run id, like the runner's own lines.
  const exit = yield* Effect.exit(job.program(ctx).pipe(annotate)).pipe(
    Effect.onInterrupt(() => finish("interrupted", null, "interrupted by a signal").pipe(
      Effect.andThen(Effect.logWarning("⏹ run interrupted; a re-run resumes what is left without duplicates")),
      annotate
    ))
  )

  if (Exit.isFailure(exit)) {
    const error = describeFailure(exit.cause)
    const { durationMs } = yield* finish("failed", null, error)
    yield* Effect.logError(`❌ ${job.title} failed: ${error}`).pipe(annotate)
    if (!dryRun) yield* telemetry.event("cron_job_failed", { job: job.name, error, duration_ms: durationMs })
    return { runId: ctx.runId, job: job.name, dryRun, asOf: ctx.asOf.toISOString(), outcome: "failed", exitCode: 1, stats: null, error, durationMs } satisfies RunReport<G> as RunReport<G>
  }

  const { report, stats, statsLine } = exit.value
  const outcome: Outcome = report.fatal !== undefined
    ? "failed"
    : report.paused !== undefined
    ? "paused"
    : report.pending > 0
    ? "incomplete"
    : "succeeded"
  const error = report.fatal !== undefined
    ? `${report.fatal.kind}: ${report.fatal.message}`
    : report.paused !== undefined
    ? `paused by ${report.paused.pausedBy} since ${report.paused.pausedAt.toISOString()}${report.paused.reason ? ` (${report.paused.reason})` : ""}: ` +
      `stopped before its next batch; ${report.pending} email(s) left pending for the run after resume`
    : report.pending > 0
    ? `${report.pending} recipient(s) left unsent after retries; a re-run finishes them safely`
    : null
  const { durationMs } = yield* finish(outcome, stats, error)
  if (outcome === "succeeded") yield* Effect.logInfo(job.completedLine).pipe(annotate)
  else if (outcome === "paused") yield* Effect.logWarning(`⏸ ${job.title} ${error}`).pipe(annotate)
  else yield* Effect.logError(`❌ ${job.title} did not complete: ${error}`).pipe(annotate)
  yield* Effect.logInfo(statsLine).pipe(
    Effect.annotateLogs({ stats: JSON.stringify(stats), duration_ms: durationMs }),
    annotate
  )
  if (!dryRun) yield* telemetry.event("cron_job_completed", { job: job.name, stats, duration_ms: durationMs, outcome })
  return {
    runId: ctx.runId,
    job: job.name,
    dryRun,
    asOf: ctx.asOf.toISOString(),
    outcome,
    exitCode: exitCodeOf(outcome),
    stats,
    error,
    durationMs
  } satisfies RunReport<G> as RunReport<G>
})
