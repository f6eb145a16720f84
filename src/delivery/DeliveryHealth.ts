/**
 * Each job's delivery health over the last 7 days (docs/http.md), from what Resend's webhooks wrote on the ledger
 * (src/feedback/Webhooks.ts): how many of the emails a job sent were delivered, bounced or complained about, and whether
 * the job is AT RISK, that is past the levels at which providers suspend a sender.
 *
 * - The window is the 7 days up to the Clock's instant: (now - 7 days, now].
 * - The denominator is the emails the job sent in that window (ledger rows `sent`, by `sent_at`); the counts are
 *   the states those same emails reached. Numerator and denominator are one cohort, so a rate never passes 100%
 *   and an old email's late bounce does not inflate this week's rate. An email still waiting for its events
 *   counts as sent and not bounced, which is how providers compute the rate too (over everything sent).
 * - Each email counts once, in its final state (a complaint implies delivery; it is counted as complained).
 * - AT RISK: bounce rate above 4% or complaint rate above 0.08% (Resend's and the big mailbox providers' levels).
 *   No minimum volume: a small sender crosses those levels with a handful of events, and the provider does not
 *   wait for volume either.
 * The result holds counts and rates only: no address, no user id (it is served on /health).
 */
import { Clock, Duration, Effect } from "effect"
import type { DatabaseError } from "../database/Database.ts"
import { Ledger } from "../ledger/Ledger.ts"
import { Jobs } from "../jobs/index.ts"

/** How far back the rates look. */
export const WINDOW = Duration.days(7)
/** A job whose bounce rate passes this is AT RISK. */
export const MAX_BOUNCE_RATE = 0.04
/** A job whose complaint rate passes this is AT RISK. */
export const MAX_COMPLAINT_RATE = 0.0008

/** One job's last 7 days of delivery. */
export interface DeliveryHealth {
  readonly windowDays: number
  /** Emails the job sent in the window (the denominator of every rate). */
  readonly sent: number
  readonly delivered: number
  readonly delayed: number
  readonly bounced: number
  readonly complained: number
  /** Fractions of `sent` (0..1); null when nothing was sent. */
  readonly deliveredRate: number | null
  readonly bounceRate: number | null
  readonly complaintRate: number | null
  readonly atRisk: boolean
}

const rate = (n: number, sent: number) => sent === 0 ? null : n / sent

/** Counts to rates and the AT RISK verdict. */
export const healthOf = (counts: {
  readonly sent: number
  readonly delivered: number
  readonly delayed: number
  readonly bounced: number
  readonly complained: number
}): DeliveryHealth => {
  const bounceRate = rate(counts.bounced, counts.sent)
  const complaintRate = rate(counts.complained, counts.sent)
  return {
    windowDays: Duration.toDays(WINDOW),
    ...counts,
    deliveredRate: rate(counts.delivered, counts.sent),
    bounceRate,
    complaintRate,
    atRisk: (bounceRate ?? 0) > MAX_BOUNCE_RATE || (complaintRate ?? 0) > MAX_COMPLAINT_RATE
  }
}

/** Every registered job's delivery health as of the Clock's instant, by job name. */
export const deliveryHealth: Effect.Effect<ReadonlyMap<string, DeliveryHealth>, DatabaseError, Ledger> = Effect.gen(
  function*() {
    const ledger = yield* Ledger
    const registry = yield* Jobs
    const now = new Date(yield* Clock.currentTimeMillis)
    const from = new Date(now.getTime() - Duration.toMillis(WINDOW))
    const rows = yield* ledger.deliveryCounts(from, now)
    return new Map(registry.map((job) => {
      const row = rows.find((r) => r.job === job.name)
      return [job.name, healthOf({
        sent: row?.sent ?? 0,
        delivered: row?.delivered ?? 0,
        delayed: row?.delayed ?? 0,
        bounced: row?.bounced ?? 0,
        complained: row?.complained ?? 0
      })] as const
    }))
  }
)

/** `12 sent, 11 delivered, 1 bounced (8.33%), 0 complained (0.00%)` */
export const describeHealth = (h: DeliveryHealth): string => {
  const pct = (r: number | null) => r === null ? "n/a" : `${(r * 100).toFixed(2)}%`
  return `${h.sent} sent, ${h.delivered} delivered, ${h.delayed} delayed, ${h.bounced} bounced (${pct(h.bounceRate)}), ` +
    `${h.complained} complained (${pct(h.complaintRate)}) in ${h.windowDays} days`
}
