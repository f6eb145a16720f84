/**
 * What a job is, the registry of the jobs that ship, and the runner. A job is a name, a description, its Fly
 * schedule bucket and an Effect program returning typed stats. The runner is the only way a trigger (Fly main,
 * CLI, HTTP) runs a job: it records the run, times it, logs the seed's completion lines, emits
 * `cron_job_completed`, and maps the outcome to an exit code (CONTRACT section 7).
 */
import { randomUUID } from "node:crypto"
import { Cause, Clock, Duration, Effect, Exit, Schema } from "effect"
import { JobsConfig } from "./Config.ts"
import { Database } from "./Database.ts"
import { type DeliveryReport, deliver, type RunContext } from "./Delivery.ts"
import type { Mailer } from "./Mailer.ts"
import { Telemetry } from "./Telemetry.ts"
import * as FounderEmails from "./jobs/FounderEmails.ts"
import * as PracticeReminders from "./jobs/PracticeReminders.ts"

/** Names of the jobs that ship. */
export const JobName = Schema.Literals([PracticeReminders.NAME, FounderEmails.NAME])
export type JobName = typeof JobName.Type

/** Stats every job reports besides its own counts. */
export interface CommonStats {
  readonly due: number
  readonly failed: number
  readonly skipped: Readonly<Record<string, number>>
  readonly pending: number
  readonly badRows: Readonly<Record<string, ReadonlyArray<string>>>
}

/** `practice-reminders` stats. */
export interface ReminderStats extends CommonStats {
  readonly sent: number
}

/** `founder-emails` stats. */
export interface FounderStats extends CommonStats {
  readonly Day1: number
  readonly Day2: number
  readonly Day3: number
}

/** The services a job program needs. */
export type JobServices = Database | Mailer | JobsConfig | Telemetry

/** One scheduled job. */
export interface Job<S extends CommonStats = CommonStats> {
  readonly name: JobName
  readonly title: string
  readonly description: string
  /** Fly's schedule bucket; Fly timing is fuzzy, so every job runs hourly and decides itself what is due. */
  readonly schedule: "hourly"
  /** A job is OVERDUE when its last successful run is older than this. */
  readonly overdueAfter: Duration.Duration
  /** The compiled main Fly runs. */
  readonly main: string
  readonly program: (ctx: RunContext) => Effect.Effect<{ stats: S; report: DeliveryReport }, unknown, JobServices>
  readonly completedLine: string
  readonly statsLine: (stats: S) => string
}

const common = (r: DeliveryReport): CommonStats => ({
  due: r.due,
  failed: r.failed,
  skipped: r.skipped,
  pending: r.pending,
  badRows: r.badRows
})

/** Daily practice reminders. */
export const practiceReminders: Job<ReminderStats> = {
  name: PracticeReminders.NAME,
  title: "Daily practice reminders",
  description: "Reminds learners who have not practised in 24 hours, once per local day, from 09:00 their time.",
  schedule: "hourly",
  overdueAfter: Duration.hours(3),
  main: "dist/send-reminders.js",
  program: Effect.fnUntraced(function*(ctx: RunContext) {
    const config = yield* JobsConfig
    const db = yield* Database
    const report = yield* deliver(ctx, {
      list: PracticeReminders.NAME,
      selection: PracticeReminders.selection(db.sql, ctx.asOf, config),
      render: PracticeReminders.render(config),
      group: () => "sent"
    })
    return { stats: { ...common(report), sent: report.sent["sent"] ?? 0 }, report }
  }),
  completedLine: "🎉 Reminder process completed!",
  statsLine: (s) => `📊 Stats: ${s.sent} sent, ${s.failed} failed`
}

/** The founder email sequence. */
export const founderEmails: Job<FounderStats> = {
  name: FounderEmails.NAME,
  title: "Founder email sequence",
  description: "Day 1, 2 and 3 emails from the founder to new learners who have not had a conversation yet.",
  schedule: "hourly",
  overdueAfter: Duration.hours(3),
  main: "dist/send-founder-emails.js",
  program: Effect.fnUntraced(function*(ctx: RunContext) {
    const config = yield* JobsConfig
    const db = yield* Database
    const report = yield* deliver(ctx, {
      list: FounderEmails.NAME,
      selection: FounderEmails.selection(db.sql, ctx.asOf, config),
      render: FounderEmails.render(config),
      group: FounderEmails.stepOf
    })
    return {
      stats: { ...common(report), Day1: report.sent["Day1"] ?? 0, Day2: report.sent["Day2"] ?? 0, Day3: report.sent["Day3"] ?? 0 },
      report
    }
  }),
  completedLine: "🎉 Founder email sequence completed!",
  statsLine: (s) => `📊 Stats: Day1=${s.Day1}, Day2=${s.Day2}, Day3=${s.Day3}`
}

/** Every job that ships, in the order they run. */
export const registry: ReadonlyArray<Job> = [practiceReminders as unknown as Job, founderEmails as unknown as Job]

/** Looks a job up by name. */
export const findJob = (name: string): Job | undefined => registry.find((j) => j.name === name)

/** How a run ended. */
export type Outcome = "succeeded" | "incomplete" | "failed" | "interrupted"

/** CONTRACT 7: 0 when every due recipient was handled; 1 on a fatal error or recipients left unsent. */
export const exitCodeOf = (outcome: Outcome): 0 | 1 | 130 =>
  outcome === "succeeded" ? 0 : outcome === "interrupted" ? 130 : 1

/** What the runner tells its trigger. */
export interface RunReport {
  readonly runId: string
  readonly job: JobName
  readonly dryRun: boolean
  readonly asOf: string
  readonly outcome: Outcome
  readonly exitCode: 0 | 1 | 130
  readonly stats: CommonStats | null
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
export const runJob = Effect.fn("Job.run")(function*<S extends CommonStats>(job: Job<S>, options: RunOptions = {}) {
  const db = yield* Database
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
  yield* Effect.logInfo(`▶ ${job.title} (${job.name}) as of ${ctx.asOf.toISOString()}${dryRun ? " [dry run: nothing is written]" : ""}`).pipe(annotate)
  if (!dryRun) {
    yield* db.startRun({
      id: ctx.runId,
      job: job.name,
      asOf: ctx.asOf,
      startedAt: ctx.asOf,
      trigger: options.trigger ?? "cli",
      host: config.host
    })
  }
  const finish = (outcome: Outcome, stats: CommonStats | null, error: string | null) =>
    Effect.gen(function*() {
      const ended = yield* Clock.currentTimeMillis
      if (!dryRun) {
        yield* db.finishRun({ id: ctx.runId, outcome, finishedAt: new Date(ended), stats, error }).pipe(
          Effect.catch((e) => Effect.logError(`could not record the end of the run: ${e.message}`))
        )
      }
      return { durationMs: ended - started }
    })

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
    return { runId: ctx.runId, job: job.name, dryRun, asOf: ctx.asOf.toISOString(), outcome: "failed", exitCode: 1, stats: null, error, durationMs } satisfies RunReport
  }

  const { stats, report } = exit.value
  const outcome: Outcome = report.fatal !== undefined ? "failed" : report.pending > 0 ? "incomplete" : "succeeded"
  const error = report.fatal !== undefined
    ? `${report.fatal.kind}: ${report.fatal.message}`
    : report.pending > 0
    ? `${report.pending} recipient(s) left unsent after retries; a re-run finishes them safely`
    : null
  const { durationMs } = yield* finish(outcome, stats, error)
  if (outcome === "succeeded") yield* Effect.logInfo(job.completedLine).pipe(annotate)
  else yield* Effect.logError(`❌ ${job.title} did not complete: ${error}`).pipe(annotate)
  yield* Effect.logInfo(job.statsLine(stats)).pipe(
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
  } satisfies RunReport
})
