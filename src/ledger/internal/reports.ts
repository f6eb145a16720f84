/**
 * What the ledger tells others: rows dated in the future (`status`), the delivery health, a run's recipients (the
 * console), and the provider's later events matched to a row by its provider id (the webhook). Internal to
 * `src/ledger/`; `Ledger` offers these operations.
 */
import { Effect, Schema } from "effect"
import { type SqlClient, SqlSchema } from "effect/sql"
import { toDatabaseError } from "../../database/Database.ts"
import { CountRow, decodeRows, DELIVERY_STATES, DeliveryCounts, type DeliveryState, FutureRows, TouchedRow } from "./rows.ts"

/** For `status` only (it scans the ledger): rows a future `--now` left behind. */
export const future = (sql: SqlClient.SqlClient) => (now: Date) =>
  sql`
    SELECT job, count(*)::int AS rows, max(greatest(planned_at, sent_at)) AS latest,
      (array_agg(id::text ORDER BY id DESC))[1:20] AS ids
    FROM kaiwa_jobs.deliveries WHERE planned_at > ${now} OR sent_at > ${now} GROUP BY job ORDER BY job`.pipe(
    decodeRows(FutureRows),
    Effect.mapError(toDatabaseError("reading ledger rows dated in the future failed"))
  )

/** One index range per job (deliveries_sent_idx): the emails sent in (from, to] and their delivery states. */
export const deliveryCounts = (sql: SqlClient.SqlClient) => (from: Date, to: Date) =>
  sql`
    SELECT job, count(*)::int AS sent,
      count(*) FILTER (WHERE delivery_state = 'delivered')::int AS delivered,
      count(*) FILTER (WHERE delivery_state = 'bounced')::int AS bounced,
      count(*) FILTER (WHERE delivery_state = 'complained')::int AS complained,
      count(*) FILTER (WHERE delivery_state = 'delayed')::int AS delayed
    FROM kaiwa_jobs.deliveries WHERE status = 'sent' AND sent_at > ${from} AND sent_at <= ${to}
    GROUP BY job ORDER BY job`.pipe(
    decodeRows(DeliveryCounts),
    Effect.mapError(toDatabaseError("reading delivery health failed"))
  )

/** The ledger rows planned by a run (`run_id`), a page at a time, and how many there are in all. */
export const touchedBy = (sql: SqlClient.SqlClient) => {
  const page = SqlSchema.findAll({
    Request: Schema.Struct({ runId: Schema.String, offset: Schema.Number, limit: Schema.Number }),
    Result: TouchedRow,
    execute: (r) =>
      sql`SELECT d.id::text AS id, d.user_id, d.email, d.dedupe_key, d.status, d.reason,
          d.delivery_state AS delivery, d.planned_at, d.sent_at
        FROM kaiwa_jobs.deliveries d WHERE d.run_id = ${r.runId}::uuid
        ORDER BY d.id LIMIT ${r.limit} OFFSET ${r.offset}`
  })
  const total = SqlSchema.findOne({
    Request: Schema.String,
    Result: CountRow,
    execute: (id) => sql`SELECT count(*)::int AS n FROM kaiwa_jobs.deliveries WHERE run_id = ${id}::uuid`
  })
  return (runId: string, p: { readonly offset: number; readonly limit: number }) =>
    Effect.all([page({ runId, ...p }), Effect.map(total(runId), (r) => r.n)]).pipe(
      Effect.mapError(toDatabaseError("reading a run's recipients failed"))
    )
}

/** Whether an email with this provider id is on the ledger. */
export const hasProviderId = (sql: SqlClient.SqlClient) => {
  const count = SqlSchema.findOne({
    Request: Schema.String,
    Result: CountRow,
    execute: (id) => sql`SELECT count(*)::int AS n FROM kaiwa_jobs.deliveries WHERE provider_id = ${id}`
  })
  return (providerId: string) =>
    count(providerId).pipe(
      Effect.map((r) => r.n > 0),
      Effect.mapError(toDatabaseError("looking up a provider id failed"))
    )
}

/** The same lock key as the deliveries_take_events trigger (migration 0004). */
export const lockProviderId = (sql: SqlClient.SqlClient) => (providerId: string) =>
  sql`SELECT pg_advisory_xact_lock(hashtextextended(${"kaiwa_jobs.provider:" + providerId}, 0))`.pipe(
    Effect.asVoid,
    Effect.mapError(toDatabaseError("locking a provider id failed"))
  )

/** Raises the delivery state of the email with this provider id (delayed < delivered < bounced < complained). */
export const raiseDeliveryState = (sql: SqlClient.SqlClient) => (providerId: string, state: DeliveryState, at: Date) =>
  sql`
    UPDATE kaiwa_jobs.deliveries
    SET delivery_state = ${state}, delivery_state_at = ${at}
    WHERE provider_id = ${providerId}
      AND coalesce(array_position(${[...DELIVERY_STATES]}::text[], delivery_state), 0) < ${DELIVERY_STATES.indexOf(state) + 1}`.pipe(
    Effect.asVoid,
    Effect.mapError(toDatabaseError("recording a delivery state failed"))
  )
