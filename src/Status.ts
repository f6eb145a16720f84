/**
 * Each job's last run and whether it is overdue: a job is OVERDUE when its last successful run is older than
 * its `overdueAfter` (its hourly interval plus a grace period for Fly's fuzzy timing), or when it never
 * succeeded. A job is AT RISK when its bounce or complaint rate over the last 7 days passes the provider's
 * levels (src/DeliveryHealth.ts). Shared by `kaiwa-jobs status` and `GET /health`; carries no personal data.
 */
import { Clock, Duration, Effect } from "effect"
import { Database } from "./Database.ts"
import { type DeliveryHealth, deliveryHealth } from "./DeliveryHealth.ts"
import { Jobs } from "./jobs/index.ts"

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
  readonly overdue: boolean
  readonly overdueAfterMinutes: number
  /** The last 7 days of delivery (src/DeliveryHealth.ts). */
  readonly delivery: DeliveryHealth
  /** Bounce or complaint rate past the provider's levels. */
  readonly atRisk: boolean
}

/** The status of every registered job (`Jobs`), as of the Clock's instant. */
export const jobStatuses = Effect.gen(function*() {
  const registry = yield* Jobs
  const db = yield* Database
  const now = yield* Clock.currentTimeMillis
  const rows = yield* db.lastRuns
  const health = yield* deliveryHealth
  return registry.map((job): JobStatus => {
    const row = rows.find((r) => r.job === job.name)
    const lastSuccess = row?.last_success_at ?? null
    const overdue = lastSuccess === null || now - lastSuccess.getTime() > Duration.toMillis(job.overdueAfter)
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
      overdue,
      overdueAfterMinutes: Duration.toMinutes(job.overdueAfter),
      delivery: health.get(job.name)!,
      atRisk: health.get(job.name)!.atRisk
    }
  })
})
