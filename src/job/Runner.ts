/**
 * The runner (`runJob`), the only way a trigger (Fly main, CLI, HTTP) runs a job: it records the run, times it,
 * logs the seed's completion lines, emits `cron_job_completed`, and maps the outcome to an exit code
 * (docs/runbook.md). A run is a pipeline of named steps: start, the pause check, the job's program, then one report
 * for each way it can end (paused, failed, completed).
 */
import { randomUUID } from "node:crypto"
import { Cause, Clock, Duration, Effect, Exit } from "effect"
import { JobsConfig } from "../config/Config.ts"
import { Database } from "../database/Database.ts"
import type { DeliveryReport, RunContext } from "../delivery/Delivery.ts"
import { type Pause, Pauses } from "../ledger/Pauses.ts"
import { Runs } from "../ledger/Runs.ts"
import { Telemetry } from "../telemetry/Telemetry.ts"
import type { CommonStats, Job, JobResult, Stats } from "./Job.ts"

/** How a run ended. */
export type Outcome = "succeeded" | "incomplete" | "failed" | "interrupted" | "paused"

/** Exit codes (docs/runbook.md): 0 when every due recipient was handled; 1 on a fatal error or recipients left unsent. */
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

/** A run in progress: its context, when it started, and how its log lines are annotated. */
interface Run {
  readonly ctx: RunContext
  readonly title: string
  readonly started: number
  readonly annotate: <A, E, R>(self: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
}

const pauseText = (p: Pause) => `paused by ${p.pausedBy} since ${p.pausedAt.toISOString()}${p.reason ? ` (${p.reason})` : ""}`

/** Starts a run: its context, the first log line, and (unless a dry run) its row in the run history. */
const start = Effect.fnUntraced(function*(job: Pick<Job, "name" | "title">, options: RunOptions) {
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
    yield* Effect.flatMap(Runs, (runs) =>
      runs.start({ id: ctx.runId, job: job.name, asOf: ctx.asOf, startedAt: ctx.asOf, trigger: options.trigger ?? "cli", host: config.machine }))
  }
  return { ctx, title: job.title, started, annotate } satisfies Run
})

/** Ends a run: its row in the run history (unless a dry run), and how long it took. */
const finish = Effect.fnUntraced(function*(run: Run, outcome: Outcome, stats: CommonStats | null, error: string | null) {
  const ended = yield* Clock.currentTimeMillis
  if (!run.ctx.dryRun) {
    yield* Effect.flatMap(Runs, (runs) => runs.finish({ id: run.ctx.runId, outcome, finishedAt: new Date(ended), stats, error })).pipe(
      Effect.catch((e) => Effect.logError(`could not record the end of the run: ${e.message}`))
    )
  }
  return ended - run.started
})

const reportOf = <G extends string>(run: Run, outcome: Outcome, stats: Stats<G> | null, error: string | null, durationMs: number): RunReport<G> => ({
  runId: run.ctx.runId,
  job: run.ctx.job,
  dryRun: run.ctx.dryRun,
  asOf: run.ctx.asOf.toISOString(),
  outcome,
  exitCode: exitCodeOf(outcome),
  stats,
  error,
  durationMs
})

/**
 * A paused job (kaiwa-jobs pause) sends nothing: the run records itself as paused and exits 0, and its pending
 * rows wait for the first run after resume. A dry run goes on (it sends nothing anyway) and says so.
 */
const pausedReport = Effect.fnUntraced(function*<G extends string>(run: Run) {
  const paused = yield* Effect.flatMap(Pauses, (p) => p.get(run.ctx.job))
  if (paused === undefined) return undefined
  const why = pauseText(paused)
  if (run.ctx.dryRun) {
    yield* Effect.logWarning(`⏸ ${run.title} is ${why}: a live run would send nothing`).pipe(run.annotate)
    return undefined
  }
  const durationMs = yield* finish(run, "paused", null, why)
  yield* Effect.logWarning(`⏸ ${run.title} is ${why}: nothing sent; kaiwa-jobs resume ${run.ctx.job} to send again`).pipe(run.annotate)
  return reportOf<G>(run, "paused", null, why, durationMs)
})

/** The job's program failed: recorded, logged and (unless a dry run) reported as `cron_job_failed`. */
const failedReport = Effect.fnUntraced(function*<G extends string>(run: Run, cause: Cause.Cause<unknown>) {
  const error = describeFailure(cause)
  const durationMs = yield* finish(run, "failed", null, error)
  yield* Effect.logError(`❌ ${run.title} failed: ${error}`).pipe(run.annotate)
  if (!run.ctx.dryRun) yield* Effect.flatMap(Telemetry, (t) => t.event("cron_job_failed", { job: run.ctx.job, error, duration_ms: durationMs }))
  return reportOf<G>(run, "failed", null, error, durationMs)
})

/** How a run that completed its program ended, by what its delivery reports. */
const outcomeOf = (report: DeliveryReport): Outcome =>
  report.fatal !== undefined ? "failed" : report.paused !== undefined ? "paused" : report.pending > 0 ? "incomplete" : "succeeded"

/** Why a run did not succeed, for the run history and the log; null when it did. */
const errorOf = (report: DeliveryReport): string | null => {
  if (report.fatal !== undefined) return `${report.fatal.kind}: ${report.fatal.message}`
  if (report.paused !== undefined) {
    return `${pauseText(report.paused)}: stopped before its next batch; ${report.pending} email(s) left pending for the run after resume`
  }
  return report.pending > 0 ? `${report.pending} recipient(s) left unsent after retries; a re-run finishes them safely` : null
}

/** The job's program completed: recorded, the seed's lines logged, `cron_job_completed` emitted (unless a dry run). */
const completedReport = Effect.fnUntraced(function*<G extends string>(run: Run, job: Pick<Job, "name" | "title" | "completedLine">, result: JobResult<G>) {
  const { report, stats, statsLine } = result
  const outcome = outcomeOf(report)
  const error = errorOf(report)
  const durationMs = yield* finish(run, outcome, stats, error)
  if (outcome === "succeeded") yield* Effect.logInfo(job.completedLine).pipe(run.annotate)
  else if (outcome === "paused") yield* Effect.logWarning(`⏸ ${job.title} ${error}`).pipe(run.annotate)
  else yield* Effect.logError(`❌ ${job.title} did not complete: ${error}`).pipe(run.annotate)
  yield* Effect.logInfo(statsLine).pipe(Effect.annotateLogs({ stats: JSON.stringify(stats), duration_ms: durationMs }), run.annotate)
  if (!run.ctx.dryRun) {
    yield* Effect.flatMap(Telemetry, (t) => t.event("cron_job_completed", { job: job.name, stats, duration_ms: durationMs, outcome }))
  }
  return reportOf<G>(run, outcome, stats, error, durationMs)
})

/** Runs one job once at the Clock's current instant and reports; never fails (failures become the report). */
export const runJob = Effect.fn("Job.run")(function*<Name extends string, G extends string>(job: Job<Name, G>, options: RunOptions = {}) {
  const run = yield* start(job, options)
  const paused = yield* pausedReport<G>(run)
  if (paused !== undefined) return paused
  // Everything the job logs carries the job and run id, like the runner's own lines.
  const exit = yield* Effect.exit(job.program(run.ctx).pipe(run.annotate)).pipe(
    Effect.onInterrupt(() =>
      finish(run, "interrupted", null, "interrupted by a signal").pipe(
        Effect.andThen(Effect.logWarning("⏹ run interrupted; a re-run resumes what is left without duplicates")),
        run.annotate
      )
    )
  )
  return Exit.isFailure(exit) ? yield* failedReport<G>(run, exit.cause) : yield* completedReport(run, job, exit.value)
})
