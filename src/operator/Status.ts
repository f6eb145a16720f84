/**
 * Each job's last run and whether it is overdue: a job is OVERDUE when its last successful run is older than
 * its `overdueAfter` (its hourly interval plus a grace period for Fly's fuzzy timing), or when it never
 * succeeded. A job is AT RISK when its bounce or complaint rate over the last 7 days passes the provider's
 * levels (src/delivery/DeliveryHealth.ts). Shared by `kaiwa-jobs status` and `GET /health`; carries no personal data.
 */
import { Clock, Duration, Effect } from "effect"
import { Ledger } from "../ledger/Ledger.ts"
import { Pauses } from "../ledger/Pauses.ts"
import { Runs } from "../ledger/Runs.ts"
import { type DeliveryHealth, deliveryHealth } from "../delivery/DeliveryHealth.ts"
import { Jobs } from "../jobs/index.ts"

/**
 * A run still marked running this long after it started is reported as abandoned: a run stops sending at
 * SEND_DEADLINE (10 minutes by default), so only a process that was killed (SIGKILL, out of memory, a lost
 * machine) or lost its database before recording its end leaves such a row. Its ledger rows are safe: the
 * next run takes over its batches once their leases run out.
 */
export const ABANDONED_AFTER = Duration.hours(1)

/** One job's health. */
export interface JobStatus {
  readonly job: string
  readonly title: string
  readonly lastRun: {
    readonly startedAt: string
    readonly finishedAt: string | null
    readonly outcome: string
    readonly stats: unknown
    readonly error: string | null
  } | null
  readonly lastSuccessAt: string | null
  /** Paused by an operator (kaiwa-jobs pause): who, when, why. A paused job is never reported overdue. */
  readonly paused: { readonly by: string; readonly at: string; readonly reason: string | null } | null
  readonly overdue: boolean
  readonly overdueAfterMinutes: number
  /** The last 7 days of delivery (src/delivery/DeliveryHealth.ts). */
  readonly delivery: DeliveryHealth
  /** Bounce or complaint rate past the provider's levels. */
  readonly atRisk: boolean
}

/**
 * The status of every registered job (`Jobs`), as of the Clock's instant. Runs dated after that instant (left by
 * a `--now` in the future) are ignored: one would otherwise count as a success until its date and keep the job
 * from ever being reported overdue. `futureRowsNow` names them.
 */
export const jobStatuses = Effect.gen(function*() {
  const registry = yield* Jobs
  const runs = yield* Runs
  const now = yield* Clock.currentTimeMillis
  const rows = yield* runs.lastBefore(new Date(now))
  const health = yield* deliveryHealth
  const pauses = yield* Effect.flatMap(Pauses, (p) => p.all)
  return registry.map((job): JobStatus => {
    const row = rows.find((r) => r.job === job.name)
    const lastSuccess = row?.last_success_at ?? null
    const pause = pauses.get(job.name)
    const overdue = pause === undefined &&
      (lastSuccess === null || now - lastSuccess.getTime() > Duration.toMillis(job.overdueAfter))
    const abandoned = row !== undefined && row.outcome === "running" && row.finished_at === null &&
      now - row.started_at.getTime() > Duration.toMillis(ABANDONED_AFTER)
    return {
      job: job.name,
      title: job.title,
      lastRun: row === undefined ? null : {
        startedAt: row.started_at.toISOString(),
        finishedAt: row.finished_at?.toISOString() ?? null,
        outcome: abandoned ? "abandoned" : row.outcome,
        stats: row.stats,
        error: abandoned ? "the run never recorded its end: its process was killed or lost the database" : row.error
      },
      lastSuccessAt: lastSuccess?.toISOString() ?? null,
      paused: pause === undefined ? null : { by: pause.pausedBy, at: pause.pausedAt.toISOString(), reason: pause.reason },
      overdue,
      overdueAfterMinutes: Duration.toMinutes(job.overdueAfter),
      delivery: health.get(job.name)!,
      atRisk: health.get(job.name)!.atRisk
    }
  })
})

/**
 * Run and ledger rows dated after the Clock's instant, with a one-line description of each group for the
 * operator: they block the cross-job cap and mislead `status` until that date, so they are worth deleting.
 * Reads the ledger, so `status` asks for it, not `/health`.
 */
export const futureRowsNow = Effect.gen(function*() {
  const now = new Date(yield* Clock.currentTimeMillis)
  const runs = yield* Effect.flatMap(Runs, (r) => r.future(now))
  const deliveries = yield* Effect.flatMap(Ledger, (l) => l.future(now))
  const rows: ReadonlyArray<FutureRows> = [
    ...runs.map((r) => ({ table: "runs" as const, ...r })),
    ...deliveries.map((r) => ({ table: "deliveries" as const, ...r }))
  ]
  return rows.map((r) => ({ ...r, description: describeFutureRows(r) }))
})

/** Run or ledger rows of one job dated in the future. */
export interface FutureRows {
  readonly table: "runs" | "deliveries"
  readonly job: string
  readonly rows: number
  readonly latest: Date
  readonly ids: ReadonlyArray<string>
}

/** "3 run row(s) of practice-reminders dated in the future (latest 2099-01-01T09:00:00.000Z; ids 12, 11, 10)". */
export const describeFutureRows = (r: FutureRows): string =>
  `${r.rows} ${r.table === "runs" ? "run" : "ledger"} row(s) of ${r.job} dated in the future ` +
  `(latest ${r.latest.toISOString()}; kaiwa_jobs.${r.table} ids ${r.ids.join(", ")}${r.rows > r.ids.length ? ", ..." : ""})`
