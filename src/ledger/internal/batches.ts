/**
 * The ledger's batches: the sweep at the start of a run, claims under leases (`FOR UPDATE SKIP LOCKED`), the
 * provider's verdicts, and the batches parked or requeued when they cannot be resent as they are. Internal to
 * `src/ledger/`; `Ledger` offers these operations.
 */
import { Effect } from "effect"
import type { SqlClient, Statement } from "effect/sql"
import { toDatabaseError } from "../../database/Database.ts"
import type {
  ClaimArgs,
  ClaimedBatch,
  CompleteArgs,
  CompletedBatch,
  DeliveryOutcome,
  Outstanding,
  SweepArgs,
  SweepResult
} from "../Ledger.ts"
import { suppressedFor, type Suppressions } from "../Suppressions.ts"
import { CONFLICT_REASON, KEY_EXPIRED_REASON, KEY_MAX_AGE_HOURS } from "./reasons.ts"
import {
  ClaimedDelivery,
  decodeRows,
  type FailureKind,
  FreshDelivery,
  IdRow,
  OutstandingRow,
  RejectedRow,
  StaleBatch,
  SweepCount,
  WrittenRow
} from "./rows.ts"

// Two CTEs, `parked` and `unknown`: sets the pending batches `which` selects (alias b) aside for good, and fails
// their pending rows as outcome unknown. Used for batches that can no longer be resent without risking a second
// delivery: keys the provider may have forgotten (sweep) and idempotency conflicts (parkConflict).
const park = (sql: SqlClient.SqlClient, options: {
  readonly status: "expired" | "conflict"
  readonly reason: string
  readonly lastError: string
  readonly which: Statement.Fragment
}) =>
  sql`
    parked AS (
      UPDATE kaiwa_jobs.batches b
      SET status = ${options.status}, lease_until = NULL, owner = NULL, done_at = clock_timestamp(),
          last_error = ${options.lastError}
      WHERE b.status = 'pending' AND ${options.which}
      RETURNING b.id
    ),
    unknown AS (
      UPDATE kaiwa_jobs.deliveries d SET status = 'failed', reason = ${options.reason}, failure = 'outcome_unknown'
      FROM parked WHERE d.batch_id = parked.id AND d.status = 'pending'
      RETURNING d.id
    )`

/**
 * Once per run, in one statement:
 * - pending rows that were never put in a batch and can no longer go out (their window passed, or the address
 *   was suppressed after planning) are skipped. Rows already in a batch are left alone: a batch is resent whole,
 *   with the same payload, under its idempotency key;
 * - unless that key is too old for the provider to remember it: such a batch (its worker died a day ago and no
 *   run came since) is marked expired and its rows failed as outcome unknown, never resent.
 */
export const sweep = (sql: SqlClient.SqlClient) =>
  Effect.fn("Ledger.sweep")(function*(args: SweepArgs) {
    const rows = yield* sql`
      WITH swept AS (
        UPDATE kaiwa_jobs.deliveries d
        SET status = 'skipped',
            reason = CASE WHEN d.expires_at <= ${args.now} THEN 'expired' ELSE 'suppressed' END
        WHERE d.job = ${args.job} AND d.status = 'pending' AND d.batch_id IS NULL
          AND (d.expires_at <= ${args.now} OR ${suppressedFor(sql, args.list, sql`d.user_id`, sql`d.email`)})
        RETURNING d.reason
      ),
      ${park(sql, {
        status: "expired",
        reason: KEY_EXPIRED_REASON,
        lastError: KEY_EXPIRED_REASON,
        which: sql`b.job = ${args.job} AND (b.lease_until IS NULL OR b.lease_until < clock_timestamp())
          AND b.key_created_at < clock_timestamp() - make_interval(hours => ${KEY_MAX_AGE_HOURS})`
      })}
      SELECT 'skipped' AS kind, reason, count(*)::int AS n, NULL::text[] AS ids FROM swept GROUP BY reason
      UNION ALL
      SELECT 'key_expired', NULL, count(*)::int, array_agg(id::text ORDER BY id) FROM unknown HAVING count(*) > 0`.pipe(
      decodeRows(SweepCount),
      Effect.mapError(toDatabaseError("sweeping the ledger failed"))
    )
    const skipped: Record<string, number> = {}
    let keyExpired: ReadonlyArray<string> = []
    for (const row of rows) {
      if (row.kind === "key_expired") keyExpired = row.ids ?? []
      else skipped[row.reason] = row.n
    }
    return { skipped, keyExpired } satisfies SweepResult
  })

/** A batch whose worker died (its lease ran out), taken over: the oldest such batch of the job, if any. */
const takeOverStale = (sql: SqlClient.SqlClient, args: ClaimArgs) =>
  sql`
    UPDATE kaiwa_jobs.batches b
    SET owner = ${args.owner}::uuid, lease_until = clock_timestamp() + make_interval(secs => ${args.leaseSeconds}),
        attempts = b.attempts + 1
    WHERE b.id = (
      SELECT id FROM kaiwa_jobs.batches
      WHERE job = ${args.job} AND status = 'pending' AND (lease_until IS NULL OR lease_until < clock_timestamp())
      ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED)
    RETURNING b.id::text AS id, b.idempotency_key`.pipe(decodeRows(StaleBatch))

/** A batch's rows in the order of its first attempt (numeric ledger id): the payload must be byte-identical. */
const deliveriesOf = (sql: SqlClient.SqlClient, batchId: string) =>
  sql`
    SELECT d.id::text AS id, d.user_id, d.dedupe_key, d.email, d.data FROM kaiwa_jobs.deliveries d
    WHERE d.batch_id = ${batchId} ORDER BY d.id`.pipe(decodeRows(ClaimedDelivery))

/** A fresh batch of up to `size` unbatched pending rows, with its new key; empty when there is none. */
const formFresh = (sql: SqlClient.SqlClient, args: ClaimArgs) =>
  sql`
    WITH picked AS (
      SELECT id FROM kaiwa_jobs.deliveries
      WHERE job = ${args.job} AND status = 'pending' AND batch_id IS NULL
      ORDER BY id LIMIT ${args.size} FOR UPDATE SKIP LOCKED
    ),
    b AS (
      INSERT INTO kaiwa_jobs.batches (job, idempotency_key, owner, lease_until, created_at, attempts)
      SELECT ${args.job}, ${args.newKey}, ${args.owner}::uuid,
        clock_timestamp() + make_interval(secs => ${args.leaseSeconds}), ${args.now}, 1
      WHERE EXISTS (SELECT 1 FROM picked)
      RETURNING id, idempotency_key
    )
    UPDATE kaiwa_jobs.deliveries d SET batch_id = b.id
    FROM b, picked WHERE d.id = picked.id
    RETURNING d.id::text AS id, d.user_id, d.dedupe_key, d.email, d.data, b.id::text AS batch_id, b.idempotency_key`.pipe(
    decodeRows(FreshDelivery)
  )

/**
 * A worker's next batch: a batch whose worker died is taken over first, and resent with its recorded key;
 * otherwise a fresh batch is formed under `newKey`.
 */
export const claimBatch = (sql: SqlClient.SqlClient) =>
  Effect.fn("Ledger.claimBatch")(function*(args: ClaimArgs) {
    const stale = (yield* takeOverStale(sql, args))[0]
    if (stale !== undefined) {
      const deliveries = yield* deliveriesOf(sql, stale.id)
      return { id: stale.id, idempotencyKey: stale.idempotency_key, resumed: true, deliveries } satisfies ClaimedBatch
    }
    const fresh = yield* formFresh(sql, args)
    const first = fresh[0]
    if (first === undefined) return undefined
    const deliveries = [...fresh].sort((a, b) => Number(a.id) - Number(b.id))
      .map(({ data, dedupe_key, email, id, user_id }) => ({ id, user_id, dedupe_key, email, data }))
    return { id: first.batch_id, idempotencyKey: first.idempotency_key, resumed: false, deliveries } satisfies ClaimedBatch
  }, Effect.mapError(toDatabaseError("claiming a batch failed")))

/** Extends a batch's lease, while its owner still holds it. */
export const renewLease = (sql: SqlClient.SqlClient) => (batchId: string, owner: string, leaseSeconds: number) =>
  sql`UPDATE kaiwa_jobs.batches SET lease_until = clock_timestamp() + make_interval(secs => ${leaseSeconds})
      WHERE id = ${batchId} AND owner = ${owner}::uuid AND status = 'pending'`.pipe(
    Effect.asVoid,
    Effect.mapError(toDatabaseError("renewing a lease failed"))
  )

/** Gives a batch up (its owner could not finish it): the next claim resumes it under its key. */
export const releaseBatch = (sql: SqlClient.SqlClient) => (batchId: string, owner: string, error: string) =>
  sql`UPDATE kaiwa_jobs.batches SET lease_until = NULL, owner = NULL, last_error = ${error.slice(0, 500)}
      WHERE id = ${batchId} AND owner = ${owner}::uuid AND status = 'pending'`.pipe(
    Effect.asVoid,
    Effect.mapError(toDatabaseError("releasing a batch failed"))
  )

/** Parks a batch the provider refused as an idempotency conflict; returns the ledger ids marked failed. */
export const parkConflict = (sql: SqlClient.SqlClient) => (batchId: string, error: string) =>
  sql`
    WITH ${park(sql, { status: "conflict", reason: CONFLICT_REASON, lastError: error.slice(0, 500), which: sql`b.id = ${batchId}` })}
    SELECT id::text AS id FROM unknown`.pipe(
    decodeRows(IdRow),
    Effect.map((rows) => rows.map((r) => r.id)),
    Effect.mapError(toDatabaseError("parking a conflicting batch failed"))
  )

/** A failed outcome's kind: the one its caller gave, else read from its reason (callers that predate the kind). */
const failureOf = (o: DeliveryOutcome): FailureKind | null =>
  o.status === "failed" ? o.failure : null

/**
 * Writes a batch's verdicts. Only rows still pending are written and returned: if another worker already recorded
 * this batch (it took over after our lease ran out and got the provider's stored answer), nothing is counted twice.
 */
const writeVerdicts = (sql: SqlClient.SqlClient, args: CompleteArgs) => {
  const payload = JSON.stringify(args.outcomes.map((o) => ({
    id: Number(o.id),
    status: o.status,
    provider_id: o.providerId,
    reason: o.reason,
    failure: failureOf(o)
  })))
  return sql`
    UPDATE kaiwa_jobs.deliveries d
    SET status = v.status, provider_id = v.provider_id, reason = v.reason, failure = v.failure,
        sent_at = CASE WHEN v.status = 'sent' THEN ${args.now}::timestamptz ELSE NULL END
    FROM jsonb_to_recordset(${payload}::jsonb) AS v(id bigint, status text, provider_id text, reason text, failure text)
    WHERE d.id = v.id AND d.batch_id = ${args.batchId} AND d.status = 'pending'
    RETURNING d.id::text AS id, d.status`.pipe(decodeRows(WrittenRow))
}

/**
 * Records the provider's verdicts on a batch and closes it, in one transaction. An address the provider rejected
 * is never tried again, for any list. Only the provider's rejections: a row that failed for our own reasons (a
 * template that did not render) says nothing about the address.
 */
export const completeBatch = (sql: SqlClient.SqlClient, suppressions: Suppressions["Service"]) =>
  Effect.fn("Ledger.completeBatch")(function*(args: CompleteArgs) {
    return yield* sql.withTransaction(Effect.gen(function*() {
      const written = yield* writeVerdicts(sql, args)
      const rejected = yield* sql`
        SELECT d.user_id, d.email FROM kaiwa_jobs.deliveries d
        WHERE d.batch_id = ${args.batchId} AND d.status = 'failed' AND d.failure = 'rejected'`.pipe(decodeRows(RejectedRow))
      yield* suppressions.suppressInvalid(rejected.map((r) => ({ userId: r.user_id, email: r.email })), args.now)
      yield* sql`
        UPDATE kaiwa_jobs.batches SET status = 'done', done_at = ${args.now}, lease_until = NULL
        WHERE id = ${args.batchId} AND status = 'pending'`
      if (args.requeue !== undefined) yield* requeueRows(sql, args.batchId, args.requeue)
      return {
        sent: written.filter((r) => r.status === "sent").map((r) => r.id),
        failed: written.filter((r) => r.status === "failed").map((r) => r.id)
      } satisfies CompletedBatch
    }))
  }, Effect.mapError(toDatabaseError("recording a batch failed")))

/** Pending work of a job that this worker could not claim. */
export const outstanding = (sql: SqlClient.SqlClient) => (job: string) =>
  sql`
    SELECT count(*)::int AS pending, min(b.lease_until) AS next_lease_expiry
    FROM kaiwa_jobs.deliveries d LEFT JOIN kaiwa_jobs.batches b ON b.id = d.batch_id
    WHERE d.job = ${job} AND d.status = 'pending'`.pipe(
    decodeRows(OutstandingRow),
    Effect.map((rows): Outstanding => ({ pending: rows[0]?.pending ?? 0, nextLeaseExpiry: rows[0]?.next_lease_expiry ?? null })),
    Effect.mapError(toDatabaseError("reading outstanding work failed"))
  )

// A batch the provider refused (its sender, content or account, not its recipients) accepted none of these rows;
// resent under its old key it would get the stored refusal back (or a 409 once the content is fixed), so its rows
// leave it and the next claim gives them a new key. Closed as done, it is never resumed.
const requeueRows = (sql: SqlClient.SqlClient, batchId: string, error: string) =>
  Effect.gen(function*() {
    const freed = yield* sql`
      UPDATE kaiwa_jobs.deliveries SET batch_id = NULL
      WHERE batch_id = ${batchId} AND status = 'pending'
      RETURNING id::text AS id`.pipe(decodeRows(IdRow))
    yield* sql`
      UPDATE kaiwa_jobs.batches
      SET status = 'done', done_at = coalesce(done_at, clock_timestamp()), lease_until = NULL, owner = NULL,
          last_error = ${error.slice(0, 500)}
      WHERE id = ${batchId}`
    return freed.map((r) => r.id)
  })

/** Hands a batch's still-pending rows back to the queue and closes the batch (see `Ledger.requeueBatch`). */
export const requeueBatch = (sql: SqlClient.SqlClient) => (batchId: string, error: string) =>
  sql.withTransaction(requeueRows(sql, batchId, error)).pipe(Effect.mapError(toDatabaseError("requeueing a batch failed")))
