/**
 * The delivery ledger, `kaiwa_jobs.deliveries` and `kaiwa_jobs.batches`: the only module that names them. Who is
 * due is a rule, so each job supplies its own (`Selection`); this module composes it with what every job
 * shares (the once-per-key check, a verified, usable, unsuppressed address, the opt-in and the cross-job cap),
 * turns the result into ledger rows (the selection into a temporary table, then one INSERT ... SELECT from it,
 * serialised across jobs so the cross-job cap holds), hands out batches to workers with `FOR UPDATE SKIP LOCKED`
 * and leases, and records what the provider said. It also explains a decision (`explainOf`, for `why`).
 * Every instant a rule depends on is a parameter: SQL never calls now() to decide who is due. Leases and
 * idempotency-key ages are the exception: they measure real time shared by several machines, so they use the
 * database's clock (`clock_timestamp()`), which every worker agrees on whatever `--now` it was started with.
 */
import { Context, Effect, Layer, Schema } from "effect"
import { SqlClient, type SqlError, SqlSchema, type Statement } from "effect/sql"
import { type DatabaseError, toDatabaseError } from "../database/Database.ts"
import { suppressedFor, Suppressions } from "./Suppressions.ts"

/** A row of a job's selection: one candidate recipient and, when not due, why. */
export interface Candidate {
  readonly user_id: string
  readonly email: string
  readonly dedupe_key: string
  readonly data: unknown
  readonly expires_at: Date
  readonly skip_reason: string | null
  /** The user's `timezone` is set but unknown, so DEFAULT_TIMEZONE was used: served, but reported as bad data. */
  readonly unknown_timezone: boolean
}

/**
 * A job's rule, as `Job.Definition.selection` returns it. The job says who may be due and what to store; the
 * library adds, around it, the check that no ledger row exists yet for the candidate's key, the rules every job
 * shares (a verified, usable, unsuppressed address, the job's opt-in) and the cross-job cap, and reports each
 * skip's reason (`Database.selectionOf`).
 */
export interface Selection {
  /** Common table expressions the job's statements share (time zones, say), placed first in the WITH list. */
  readonly with?: Statement.Fragment | undefined
  /**
   * The job's cheap rules, as named rules over one FROM clause (so `kaiwa-jobs why` can say which one excluded a
   * learner, with the very SQL a run uses): `select` gives one row per user and key that may be due, with
   * `user_id` (text, as `AppTables.users` gives it) and `dedupe_key`, plus whatever `rows` reads; `from` holds the
   * user as `u`; each rule `holds` for a user who may be due, and its `reason` names it when it does not. Or, for
   * a job that needs no explanations, `candidates`: the whole SELECT.
   */
  readonly candidates: Statement.Fragment | Rules
  /** The dedupe keys this tick can plan, when the job knows them: the ledger check then reads only those keys. */
  readonly keys?: ReadonlyArray<string> | undefined
  /**
   * From the candidates that have no ledger row yet for their key (the relation `fresh` names), one row each
   * with `user_id`, `email`, `dedupe_key`, `data` (jsonb), `expires_at` (when the window closes),
   * `email_verified` (null when unverified), `opt_in` (the job's opt-in, boolean) and `unknown_timezone`.
   */
  readonly rows: (fresh: Statement.Fragment) => Statement.Fragment
  /**
   * The reason for the candidates `rows` leaves out, if it leaves any out (a rule that costs a lookup per user,
   * so it runs after the ledger check: the reminder's "still in the founder sequence").
   */
  readonly rowsRule?: string | undefined
}

/** A job's cheap rules, named (see `Selection.candidates`). */
export interface Rules {
  readonly select: Statement.Fragment
  readonly from: Statement.Fragment
  readonly rules: ReadonlyArray<{ readonly reason: string; readonly holds: Statement.Fragment }>
}

/** A job's selection at one instant, as `selectionOf` composes it. */
export interface SelectionArgs {
  readonly job: string
  /** The list whose suppressions apply (the job's name). */
  readonly list: string
  readonly asOf: Date
  readonly minHoursBetweenEmails: number
  readonly selection: Selection
}

/** A job's decision for one learner at one instant (`kaiwa-jobs why`). */
export interface Decision {
  readonly due: boolean
  /** `due`, or the first rule that excluded the learner (a job's own rule's reason, or a shared one). */
  readonly reason: string
  /** What a person needs to know: the learner's local time, the email that caused the cap and when it ends... */
  readonly detail: string
  /** The dedupe key at stake, when the learner got that far. */
  readonly key: string | null
}

/** One event of a learner's timeline. */
export interface TimelineEntry {
  readonly at: Date
  /** `planned`, `sent`, `skipped`, `failed`, `delivered`, `bounced`, `complained`, `delayed`, `suppressed`, `preference`. */
  readonly kind: string
  readonly job: string | null
  readonly detail: string
}

/** What planning a tick did. */
export interface EnqueueResult {
  readonly enqueued: number
  /** Candidates not due, counted by reason. */
  readonly skipped: Readonly<Record<string, number>>
  /** Up to 100 user ids per reason, for the reasons that point at bad data. */
  readonly skippedIds: Readonly<Record<string, ReadonlyArray<string>>>
}

/** A ledger row handed to a worker inside a batch. */
export interface ClaimedDelivery {
  readonly id: string
  readonly user_id: string
  readonly dedupe_key: string
  readonly email: string
  readonly data: unknown
}

/** A batch owned by one worker until its lease runs out. */
export interface ClaimedBatch {
  readonly id: string
  readonly idempotencyKey: string
  readonly resumed: boolean
  readonly deliveries: ReadonlyArray<ClaimedDelivery>
}

/** The provider's verdict on one delivery. */
export interface DeliveryOutcome {
  readonly id: string
  readonly status: "sent" | "failed"
  readonly providerId: string | null
  readonly reason: string | null
}

/** What recording a batch changed: only rows still pending are written, so a batch completed twice (a worker
 * whose lease ran out finishing after the one that took over) counts its emails once. */
export interface CompletedBatch {
  readonly sent: ReadonlyArray<string>
  readonly failed: ReadonlyArray<string>
}

/** What the sweep at the start of a run did. */
export interface SweepResult {
  /** Never-batched pending rows skipped, by reason ('expired', 'suppressed'). */
  readonly skipped: Readonly<Record<string, number>>
  /** Ledger ids of rows in batches whose idempotency key the provider may have forgotten: not resent. */
  readonly keyExpired: ReadonlyArray<string>
}

/** Pending work of a job that this worker could not claim. */
export interface Outstanding {
  readonly pending: number
  readonly nextLeaseExpiry: Date | null
}

/** Planning one tick: the job's selection, inserted into the ledger as of `asOf`. */
export interface EnqueueArgs {
  readonly job: string
  readonly runId: string
  readonly asOf: Date
  readonly selection: Statement.Statement<Candidate>
  /** Skip reasons recorded as `skipped` ledger rows, final for their dedupe key. */
  readonly finalSkips?: ReadonlyArray<string> | undefined
}

/** A worker asking for its next batch (`newKey` is used only when a fresh batch is formed). */
export interface ClaimArgs {
  readonly job: string
  readonly owner: string
  readonly now: Date
  readonly leaseSeconds: number
  readonly size: number
  readonly newKey: string
}

/** The provider's verdicts on one batch. */
export interface CompleteArgs {
  /**
   * The provider refused the batch (its sender, content or account): after the verdicts are recorded, the rows it
   * did not accept leave the batch in the same transaction (a re-run sends them under a new key).
   */
  readonly requeue?: string | undefined
  readonly batchId: string
  readonly outcomes: ReadonlyArray<DeliveryOutcome>
  readonly now: Date
}

/** The start-of-run sweep of one job's ledger. */
export interface SweepArgs {
  readonly job: string
  readonly list: string
  readonly now: Date
}

/**
 * A batch first sent longer ago than this is not resent: Resend keeps idempotency keys for 24 h, and a resend
 * after that could deliver twice. Its rows are marked failed with `KEY_EXPIRED_REASON` for the operator.
 */
export const KEY_MAX_AGE_HOURS = 23
export const KEY_EXPIRED_REASON = "outcome_unknown: the batch's idempotency key expired before it was confirmed"
/** Rows of a batch whose key the provider refused with a different payload (see migration 0002). */
export const CONFLICT_REASON = "outcome_unknown: idempotency conflict (the batch no longer renders as first sent)"

/** How the reason of a row the provider refused begins; only those rows suppress the address. */
export const REJECTED_PREFIX = "rejected: "

/** Reasons that mean the app's data is bad, reported by user id. */
export const BAD_ROW_REASONS: ReadonlySet<string> = new Set(["invalid_email"])

/** Bad data that does not stop a user being served (reported by id all the same). */
export const BAD_ROW_NOTES: ReadonlyArray<"unknown_timezone"> = ["unknown_timezone"]

// Any constant works; it only has to be the same for every job so enqueues of different jobs serialise.
const ENQUEUE_LOCK = 0x6b6a6f62

export interface FutureDeliveries {
  readonly job: string
  readonly rows: number
  /** The latest instant among them. */
  readonly latest: Date
  /** Up to 20 of their ids. */
  readonly ids: ReadonlyArray<string>
}

/** What became of a sent email, in precedence order: a later event never lowers it. */
export const DELIVERY_STATES = ["delayed", "delivered", "bounced", "complained"] as const
export type DeliveryState = (typeof DELIVERY_STATES)[number]

/** One job's sent emails since an instant, by what became of them. */
export interface DeliveryCounts {
  readonly job: string
  readonly sent: number
  readonly delivered: number
  readonly bounced: number
  readonly complained: number
  readonly delayed: number
}

/** A ledger row a run touched. */
export const TouchedRow = Schema.Struct({
  id: Schema.String,
  user_id: Schema.String,
  email: Schema.String,
  dedupe_key: Schema.String,
  status: Schema.String,
  reason: Schema.NullOr(Schema.String),
  delivery: Schema.NullOr(Schema.String),
  planned_at: Schema.Date,
  sent_at: Schema.NullOr(Schema.Date)
})
export type TouchedRow = typeof TouchedRow.Type

/** The ledger rows planned by a run (`run_id`), a page at a time, and how many there are in all. */
const touchedBy = (sql: SqlClient.SqlClient, runId: string, page: { readonly offset: number; readonly limit: number }) =>
  Effect.all([
    SqlSchema.findAll({
      Request: Schema.String,
      Result: TouchedRow,
      execute: (id) =>
        sql`SELECT d.id::text AS id, d.user_id, d.email, d.dedupe_key, d.status, d.reason,
            d.delivery_state AS delivery, d.planned_at, d.sent_at
          FROM kaiwa_jobs.deliveries d WHERE d.run_id = ${id}::uuid
          ORDER BY d.id LIMIT ${page.limit} OFFSET ${page.offset}`
    })(runId),
    SqlSchema.findAll({
      Request: Schema.String,
      Result: Schema.Struct({ n: Schema.Number }),
      execute: (id) => sql`SELECT count(*)::int AS n FROM kaiwa_jobs.deliveries WHERE run_id = ${id}::uuid`
    })(runId).pipe(Effect.map((rows) => rows[0]?.n ?? 0))
  ])


/** The ledger. */
export class Ledger extends Context.Service<Ledger, {
  /** Plans one tick: the job's selection, inserted into the ledger as of `asOf`. */
  readonly enqueue: (args: EnqueueArgs) => Effect.Effect<EnqueueResult, DatabaseError>
  readonly sweep: (args: SweepArgs) => Effect.Effect<SweepResult, DatabaseError>
  readonly claimBatch: (args: ClaimArgs) => Effect.Effect<ClaimedBatch | undefined, DatabaseError>
  readonly renewLease: (batchId: string, owner: string, leaseSeconds: number) => Effect.Effect<void, DatabaseError>
  readonly releaseBatch: (batchId: string, owner: string, error: string) => Effect.Effect<void, DatabaseError>
  /** Parks a batch the provider refused as an idempotency conflict; returns the ledger ids marked failed. */
  readonly parkConflict: (batchId: string, error: string) => Effect.Effect<ReadonlyArray<string>, DatabaseError>
  readonly completeBatch: (args: CompleteArgs) => Effect.Effect<CompletedBatch, DatabaseError>
  readonly outstanding: (job: string) => Effect.Effect<Outstanding, DatabaseError>
  /**
   * Hands a batch's still-pending rows back to the queue (out of the batch, so a later claim sends them under a
   * new idempotency key) and closes the batch. Only for a batch the provider accepted none of those rows from.
   */
  readonly requeueBatch: (batchId: string, error: string) => Effect.Effect<ReadonlyArray<string>, DatabaseError>
  /** A job's whole selection: its rule inside the ledger check, the shared rules and the cap. */
  readonly selectionOf: (args: SelectionArgs) => Statement.Statement<Candidate>
  /** Why a job is or is not due for some learners at an instant, from the very fragments a run composes. */
  readonly explainOf: (args: SelectionArgs, learners: ReadonlyArray<Learner>) => Effect.Effect<ReadonlyArray<Decision>, DatabaseError>
  /** The learner's emails: planned, sent, skipped, failed, and what the provider said of them, newest first. */
  readonly timelineOf: (userId: string) => Effect.Effect<ReadonlyArray<TimelineEntry>, DatabaseError>
  /** Ledger rows dated after `now`, per job, for an operator to clean up (scans the ledger: `status` only). */
  readonly future: (now: Date) => Effect.Effect<ReadonlyArray<FutureDeliveries>, DatabaseError>
  /** The ledger rows a run planned (`run_id`), a page at a time, and how many there are in all (the console). */
  readonly touchedBy: (runId: string, page: { readonly offset: number; readonly limit: number }) => Effect.Effect<readonly [ReadonlyArray<TouchedRow>, number], DatabaseError>
  /** Whether an email with this provider id is on the ledger. */
  readonly hasProviderId: (providerId: string) => Effect.Effect<boolean, DatabaseError>
  /**
   * Serialises with the ledger's trigger that copies stored provider events onto a row as it gets its provider id
   * (migration 0004): inside a transaction, one of the two sees the other's write.
   */
  readonly lockProviderId: (providerId: string) => Effect.Effect<void, DatabaseError>
  /** Raises the delivery state of the email with this provider id (delayed < delivered < bounced < complained). */
  readonly raiseDeliveryState: (providerId: string, state: DeliveryState, at: Date) => Effect.Effect<void, DatabaseError>
  /** Each job's emails sent since `since`, with what became of them (the 7-day delivery health). */
  readonly deliveryCounts: (from: Date, to: Date) => Effect.Effect<ReadonlyArray<DeliveryCounts>, DatabaseError>
}>()("kaiwa-jobs/Ledger") {
  /** Over the SqlClient provided and the suppressions of the same database. */
  static readonly layer = Layer.effect(
    Ledger,
    Effect.gen(function*() {
      return makeLedger(yield* SqlClient.SqlClient, yield* Suppressions)
    })
  )
}

function makeLedger(sql: SqlClient.SqlClient, suppressions: Suppressions["Service"]): Ledger["Service"] {
  const enqueue = Effect.fn("Ledger.enqueue")(function*(args: EnqueueArgs) {
    const finalSkips = args.finalSkips ?? []
    const rows = yield* sql.withTransaction(Effect.gen(function*() {
      // Serialises planning across jobs and machines, so two jobs cannot both pass the cross-job cap for one
      // user. Planning is two set-based statements, so the lock is held for about a second even at 1M users.
      yield* sql`SELECT pg_advisory_xact_lock(${ENQUEUE_LOCK})`
      // The selection runs on its own, as CREATE TABLE AS, and the ledger insert reads its result: PostgreSQL
      // never gives parallel workers to a statement that writes (INSERT ... SELECT), but does to CREATE TABLE AS.
      // At 1,000,000 users that is the difference between ~1.2 s and ~0.85 s (bench/selection.ts).
      // The selection hashes the day's sessions and ledger rows (hundreds of thousands at 1,000,000 users); with
      // the default 2 x work_mem they spill to disk in batches. 4 x work_mem (16 MB per hash and process with the
      // default work_mem) keeps them in memory, for this one statement per tick: ~6% faster in bench/selection.ts.
      yield* sql`SET LOCAL hash_mem_multiplier = 4`
      yield* sql`CREATE TEMP TABLE kaiwa_jobs_selection ON COMMIT DROP AS ${args.selection}`
      // A plain INSERT, no ON CONFLICT: every selection leaves out the users who already have a ledger row for
      // the key it plans (an anti-join on the same job, user and key), and this lock keeps any other planner out
      // until the rows are committed, so a conflict can only be a bug in a selection. deliveries_once then fails
      // the planning loudly (the run exits 1, nothing is sent twice) instead of hiding the bug from the tests and
      // the operator. It is also ~70 ms cheaper at 13,334 rows than speculative insertion.
      return yield* sql<{ reason: string; n: number; ids: ReadonlyArray<string> | null }>`
        WITH sel AS (SELECT * FROM kaiwa_jobs_selection),
        ins AS (
          INSERT INTO kaiwa_jobs.deliveries (job, user_id, dedupe_key, email, data, planned_at, expires_at, run_id)
          SELECT ${args.job}, user_id, dedupe_key, email, data, ${args.asOf}, expires_at, ${args.runId}::uuid
          FROM sel WHERE skip_reason IS NULL
          ORDER BY user_id
          RETURNING 1
        )${finalSkips.length === 0 ? sql.literal("") : sql`,
        -- Skips the job declared final (the weekly report blocked by the cap) settle their key: a skipped row,
        -- which the selection's own "no ledger row for this key" rule then excludes on later ticks.
        settled AS (
          INSERT INTO kaiwa_jobs.deliveries (job, user_id, dedupe_key, email, data, planned_at, expires_at, run_id, status, reason)
          SELECT ${args.job}, user_id, dedupe_key, email, data, ${args.asOf}, expires_at, ${args.runId}::uuid, 'skipped', skip_reason
          FROM sel WHERE skip_reason IN ${sql.in(finalSkips)}
          RETURNING 1
        )`}
        SELECT 'enqueued' AS reason, count(*)::int AS n, NULL::text[] AS ids FROM ins
        UNION ALL
        SELECT skip_reason, count(*)::int, (array_agg(user_id ORDER BY user_id))[1:100]
        FROM sel WHERE skip_reason IS NOT NULL GROUP BY skip_reason
        UNION ALL
        SELECT 'note:unknown_timezone', count(*)::int, (array_agg(user_id ORDER BY user_id))[1:100]
        FROM sel WHERE unknown_timezone HAVING count(*) > 0`
    })).pipe(Effect.mapError(toDatabaseError("planning failed")))
    let enqueued = 0
    const skipped: Record<string, number> = {}
    const skippedIds: Record<string, ReadonlyArray<string>> = {}
    for (const row of rows) {
      if (row.reason === "enqueued") enqueued = row.n
      else if (row.reason.startsWith("note:")) skippedIds[row.reason.slice(5)] = row.ids ?? []
      else {
        skipped[row.reason] = row.n
        if (BAD_ROW_REASONS.has(row.reason)) skippedIds[row.reason] = row.ids ?? []
      }
    }
    return { enqueued, skipped, skippedIds } satisfies EnqueueResult
  })

  // Two CTEs, `parked` and `unknown`: sets the pending batches `which` selects (alias b) aside for good, and
  // fails their pending rows as outcome unknown. Used for batches that can no longer be resent without risking a
  // second delivery: keys the provider may have forgotten (sweep) and idempotency conflicts (parkConflict).
  const park = (options: {
    readonly status: "expired" | "conflict"
    readonly reason: string
    readonly lastError: string
    readonly which: Statement.Fragment
  }) => sql`
      parked AS (
        UPDATE kaiwa_jobs.batches b
        SET status = ${options.status}, lease_until = NULL, owner = NULL, done_at = clock_timestamp(),
            last_error = ${options.lastError}
        WHERE b.status = 'pending' AND ${options.which}
        RETURNING b.id
      ),
      unknown AS (
        UPDATE kaiwa_jobs.deliveries d SET status = 'failed', reason = ${options.reason}
        FROM parked WHERE d.batch_id = parked.id AND d.status = 'pending'
        RETURNING d.id
      )`

  // Once per run, in one statement:
  // - pending rows that were never put in a batch and can no longer go out (their window passed, or the address
  //   was suppressed after planning) are skipped. Rows already in a batch are left alone: a batch is resent
  //   whole, with the same payload, under its idempotency key;
  // - unless that key is too old for the provider to remember it: such a batch (its worker died a day ago and
  //   no run came since) is marked expired and its rows failed as outcome unknown, never resent.
  const sweep = Effect.fn("Ledger.sweep")(function*(args: SweepArgs) {
    const rows = yield* sql<{ reason: string; n: number; ids: ReadonlyArray<string> | null }>`
      WITH swept AS (
        UPDATE kaiwa_jobs.deliveries d
        SET status = 'skipped',
            reason = CASE WHEN d.expires_at <= ${args.now} THEN 'expired' ELSE 'suppressed' END
        WHERE d.job = ${args.job} AND d.status = 'pending' AND d.batch_id IS NULL
          AND (d.expires_at <= ${args.now} OR ${suppressedFor(sql, args.list, sql`d.user_id`, sql`d.email`)})
        RETURNING d.reason
      ),
      ${park({
        status: "expired",
        reason: KEY_EXPIRED_REASON,
        lastError: KEY_EXPIRED_REASON,
        which: sql`b.job = ${args.job} AND (b.lease_until IS NULL OR b.lease_until < clock_timestamp())
          AND b.key_created_at < clock_timestamp() - make_interval(hours => ${KEY_MAX_AGE_HOURS})`
      })}
      SELECT reason, count(*)::int AS n, NULL::text[] AS ids FROM swept GROUP BY reason
      UNION ALL
      SELECT 'key_expired', count(*)::int, array_agg(id::text ORDER BY id) FROM unknown HAVING count(*) > 0`.pipe(
      Effect.mapError(toDatabaseError("sweeping the ledger failed"))
    )
    const skipped: Record<string, number> = {}
    let keyExpired: ReadonlyArray<string> = []
    for (const row of rows) {
      if (row.reason === "key_expired") keyExpired = row.ids ?? []
      else skipped[row.reason] = row.n
    }
    return { skipped, keyExpired } satisfies SweepResult
  })

  const claimBatch = Effect.fn("Ledger.claimBatch")(function*(args: ClaimArgs) {
    const deliveriesOf = (batchId: string) =>
      sql<ClaimedDelivery>`
        SELECT d.id::text AS id, d.user_id, d.dedupe_key, d.email, d.data FROM kaiwa_jobs.deliveries d
        WHERE d.batch_id = ${batchId} ORDER BY d.id`
    // A batch whose worker died (lease ran out) is taken over first, and resent with its recorded key, in the
    // order of its first attempt (numeric ledger id: the payload must be byte-identical for the key to match).
    const stale = yield* sql<{ id: string; idempotency_key: string }>`
      UPDATE kaiwa_jobs.batches b
      SET owner = ${args.owner}::uuid, lease_until = clock_timestamp() + make_interval(secs => ${args.leaseSeconds}),
          attempts = b.attempts + 1
      WHERE b.id = (
        SELECT id FROM kaiwa_jobs.batches
        WHERE job = ${args.job} AND status = 'pending' AND (lease_until IS NULL OR lease_until < clock_timestamp())
        ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED)
      RETURNING b.id::text AS id, b.idempotency_key`
    if (stale.length > 0) {
      const batch = stale[0]!
      const deliveries = yield* deliveriesOf(batch.id)
      return { id: batch.id, idempotencyKey: batch.idempotency_key, resumed: true, deliveries } satisfies ClaimedBatch
    }
    const fresh = yield* sql<ClaimedDelivery & { batch_id: string; idempotency_key: string }>`
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
      RETURNING d.id::text AS id, d.user_id, d.dedupe_key, d.email, d.data, b.id::text AS batch_id, b.idempotency_key`
    if (fresh.length === 0) return undefined
    const deliveries = [...fresh].sort((a, b) => Number(a.id) - Number(b.id))
      .map(({ id, user_id, dedupe_key, email, data }) => ({ id, user_id, dedupe_key, email, data }))
    return {
      id: fresh[0]!.batch_id,
      idempotencyKey: fresh[0]!.idempotency_key,
      resumed: false,
      deliveries
    } satisfies ClaimedBatch
  }, Effect.mapError(toDatabaseError("claiming a batch failed")))

  const renewLease = (batchId: string, owner: string, leaseSeconds: number) =>
    sql`UPDATE kaiwa_jobs.batches SET lease_until = clock_timestamp() + make_interval(secs => ${leaseSeconds})
        WHERE id = ${batchId} AND owner = ${owner}::uuid AND status = 'pending'`.pipe(
      Effect.asVoid,
      Effect.mapError(toDatabaseError("renewing a lease failed"))
    )

  const releaseBatch = (batchId: string, owner: string, error: string) =>
    sql`UPDATE kaiwa_jobs.batches SET lease_until = NULL, owner = NULL, last_error = ${error.slice(0, 500)}
        WHERE id = ${batchId} AND owner = ${owner}::uuid AND status = 'pending'`.pipe(
      Effect.asVoid,
      Effect.mapError(toDatabaseError("releasing a batch failed"))
    )

  const parkConflict = (batchId: string, error: string) =>
    sql<{ id: string }>`
      WITH ${park({ status: "conflict", reason: CONFLICT_REASON, lastError: error.slice(0, 500), which: sql`b.id = ${batchId}` })}
      SELECT id::text AS id FROM unknown`.pipe(
      Effect.map((rows) => rows.map((r) => r.id)),
      Effect.mapError(toDatabaseError("parking a conflicting batch failed"))
    )

  const completeBatch = Effect.fn("Ledger.completeBatch")(function*(args: CompleteArgs) {
    const payload = JSON.stringify(args.outcomes.map((o) => ({
      id: Number(o.id),
      status: o.status,
      provider_id: o.providerId,
      reason: o.reason
    })))
    return yield* sql.withTransaction(Effect.gen(function*() {
      // Only rows still pending are written and returned: if another worker already recorded this batch (it took
      // over after our lease ran out and got the provider's stored answer), nothing is counted twice.
      const written = yield* sql<{ id: string; status: "sent" | "failed" }>`
        UPDATE kaiwa_jobs.deliveries d
        SET status = v.status, provider_id = v.provider_id, reason = v.reason,
            sent_at = CASE WHEN v.status = 'sent' THEN ${args.now}::timestamptz ELSE NULL END
        FROM jsonb_to_recordset(${payload}::jsonb) AS v(id bigint, status text, provider_id text, reason text)
        WHERE d.id = v.id AND d.batch_id = ${args.batchId} AND d.status = 'pending'
        RETURNING d.id::text AS id, d.status`
      // An address the provider rejected is never tried again, for any list. Only the provider's rejections:
      // a row that failed for our own reasons (a template that did not render) says nothing about the address.
      const rejected = yield* sql<{ user_id: string; email: string }>`
        SELECT d.user_id, d.email FROM kaiwa_jobs.deliveries d
        WHERE d.batch_id = ${args.batchId} AND d.status = 'failed' AND d.reason LIKE ${REJECTED_PREFIX + "%"}`
      yield* suppressions.suppressInvalid(rejected.map((r) => ({ userId: r.user_id, email: r.email })), args.now)
      yield* sql`
        UPDATE kaiwa_jobs.batches SET status = 'done', done_at = ${args.now}, lease_until = NULL
        WHERE id = ${args.batchId} AND status = 'pending'`
      if (args.requeue !== undefined) yield* requeueRows(args.batchId, args.requeue)
      return {
        sent: written.filter((r) => r.status === "sent").map((r) => r.id),
        failed: written.filter((r) => r.status === "failed").map((r) => r.id)
      } satisfies CompletedBatch
    }))
  }, Effect.mapError(toDatabaseError("recording a batch failed")))

  const outstanding = (job: string) =>
    sql<{ pending: number; next_lease_expiry: Date | null }>`
      SELECT count(*)::int AS pending, min(b.lease_until) AS next_lease_expiry
      FROM kaiwa_jobs.deliveries d LEFT JOIN kaiwa_jobs.batches b ON b.id = d.batch_id
      WHERE d.job = ${job} AND d.status = 'pending'`.pipe(
      Effect.map((rows) => ({ pending: rows[0]?.pending ?? 0, nextLeaseExpiry: rows[0]?.next_lease_expiry ?? null })),
      Effect.mapError(toDatabaseError("reading outstanding work failed"))
    )

  // Issue 19: a batch the provider refused (its sender, content or account, not its recipients) accepted none of
  // these rows; resent under its old key it would get the stored refusal back (or a 409 once the content is
  // fixed), so its rows leave it and the next claim gives them a new key. Closed as done, it is never resumed.
  const requeueRows = (batchId: string, error: string) =>
    Effect.gen(function*() {
      const freed = yield* sql<{ id: string }>`
        UPDATE kaiwa_jobs.deliveries SET batch_id = NULL
        WHERE batch_id = ${batchId} AND status = 'pending'
        RETURNING id::text AS id`
      yield* sql`
        UPDATE kaiwa_jobs.batches
        SET status = 'done', done_at = coalesce(done_at, clock_timestamp()), lease_until = NULL, owner = NULL,
            last_error = ${error.slice(0, 500)}
        WHERE id = ${batchId}`
      return freed.map((r) => r.id)
    })

  const requeueBatch = (batchId: string, error: string) =>
    sql.withTransaction(requeueRows(batchId, error)).pipe(Effect.mapError(toDatabaseError("requeueing a batch failed")))

  // For `status` only (it scans the ledger): rows a future `--now` left behind.
  const future = (now: Date) =>
    sql<FutureDeliveries>`
      SELECT job, count(*)::int AS rows, max(greatest(planned_at, sent_at)) AS latest,
        (array_agg(id::text ORDER BY id DESC))[1:20] AS ids
      FROM kaiwa_jobs.deliveries WHERE planned_at > ${now} OR sent_at > ${now} GROUP BY job ORDER BY job`.pipe(
      Effect.mapError(toDatabaseError("reading ledger rows dated in the future failed"))
    )

  // One index range per job (deliveries_sent_idx): the emails sent since `since` and their delivery states.
  const deliveryCounts = (from: Date, to: Date) =>
    sql<DeliveryCounts>`
      SELECT job, count(*)::int AS sent,
        count(*) FILTER (WHERE delivery_state = 'delivered')::int AS delivered,
        count(*) FILTER (WHERE delivery_state = 'bounced')::int AS bounced,
        count(*) FILTER (WHERE delivery_state = 'complained')::int AS complained,
        count(*) FILTER (WHERE delivery_state = 'delayed')::int AS delayed
      FROM kaiwa_jobs.deliveries WHERE status = 'sent' AND sent_at > ${from} AND sent_at <= ${to}
      GROUP BY job ORDER BY job`.pipe(Effect.mapError(toDatabaseError("reading delivery health failed")))

  const hasProviderId = (providerId: string) =>
    sql<{ n: number }>`SELECT count(*)::int AS n FROM kaiwa_jobs.deliveries WHERE provider_id = ${providerId}`.pipe(
      Effect.map((rows) => (rows[0]?.n ?? 0) > 0),
      Effect.mapError(toDatabaseError("looking up a provider id failed"))
    )

  // The same lock key as the deliveries_take_events trigger (migration 0004).
  const lockProviderId = (providerId: string) =>
    sql`SELECT pg_advisory_xact_lock(hashtextextended(${"kaiwa_jobs.provider:" + providerId}, 0))`.pipe(
      Effect.asVoid,
      Effect.mapError(toDatabaseError("locking a provider id failed"))
    )

  const raiseDeliveryState = (providerId: string, state: DeliveryState, at: Date) =>
    sql`
      UPDATE kaiwa_jobs.deliveries
      SET delivery_state = ${state}, delivery_state_at = ${at}
      WHERE provider_id = ${providerId}
        AND coalesce(array_position(${DELIVERY_STATES as unknown as Array<string>}::text[], delivery_state), 0) < ${DELIVERY_STATES.indexOf(state) + 1}`.pipe(
      Effect.asVoid,
      Effect.mapError(toDatabaseError("recording a delivery state failed"))
    )

  return Ledger.of({
    touchedBy: (runId, page) => touchedBy(sql, runId, page).pipe(Effect.mapError(toDatabaseError("reading a run's recipients failed"))),
    hasProviderId,
    lockProviderId,
    raiseDeliveryState,
    enqueue,
    sweep,
    claimBatch,
    renewLease,
    releaseBatch,
    parkConflict,
    completeBatch,
    outstanding,
    requeueBatch,
    selectionOf: selectionOf(sql),
    explainOf: explainOf(sql, suppressions),
    timelineOf: timelineOf(sql),
    future,
    deliveryCounts
  })
}

// Deliberately loose: one @, no spaces or angle brackets, a dot in the domain. The provider does the real check;
// this only keeps rows that cannot be an address (empty, "n/a", "bob@") out of a batch.
const validEmail = (sql: SqlClient.SqlClient, column: Statement.Fragment) =>
  sql`(length(${column}) BETWEEN 3 AND 254 AND ${column} ~ '^[^@[:space:]<>(),;:"]+@[^@[:space:]<>(),;:"]+\\.[^@[:space:]<>(),;:".]+$')`

/** The candidates' SELECT: the job's own, or its named rules all holding. */
const candidatesOf = (sql: SqlClient.SqlClient, candidates: Statement.Fragment | Rules): Statement.Fragment =>
  "select" in candidates
    ? sql`SELECT ${candidates.select} FROM ${candidates.from}
      ${candidates.rules.length === 0 ? sql.literal("") : sql`WHERE ${sql.and(candidates.rules.map((r) => r.holds))}`}`
    : candidates

/**
 * A job's rule composed with what the library applies to every job (CONTRACT 5): the candidates that already
 * have a ledger row for their key are left out before the job computes their rows (so no job repeats that
 * check, and the ledger's once-per-key constraint catches a bug in this composition loudly); then each row gets
 * the first reason it is not due, in the order a person would check them: unverified, opted out, an unusable
 * address, suppressed (for this list or every list, by user or by address), the cross-job cap.
 *
 * The cap is one range of deliveries_cap_idx per candidate, bounded on both sides: an email sent or planned
 * less than MIN_HOURS_BETWEEN_EMAILS before `asOf`, and not after it. A row dated in the future (a run with a
 * mistaken `--now`) never blocks anyone; `status` names such rows.
 */
const selectionOf = (sql: SqlClient.SqlClient) => (args: SelectionArgs): Statement.Statement<Candidate> => {
  const { selection } = args
  const keys = selection.keys
  // The job knows no key can be planned at this instant (no report window open anywhere): nothing is read.
  if (keys !== undefined && keys.length === 0) {
    return sql<Candidate>`SELECT NULL::text AS user_id, NULL::text AS email, NULL::text AS dedupe_key, NULL::jsonb AS data,
      NULL::timestamptz AS expires_at, NULL::text AS skip_reason, false AS unknown_timezone WHERE false`
  }
  return sql<Candidate>`
  WITH ${selection.with === undefined ? sql.literal("") : sql`${selection.with},`}
  job_candidates AS (${candidatesOf(sql, selection.candidates)}),
  fresh AS (
    SELECT x.* FROM job_candidates x
    WHERE NOT EXISTS (
      SELECT 1 FROM kaiwa_jobs.deliveries d
      WHERE d.job = ${args.job} AND d.user_id = x.user_id AND d.dedupe_key = x.dedupe_key
        ${keys === undefined ? sql.literal("") : sql`AND d.dedupe_key IN ${sql.in(keys)}`})
  ),
  job_rows AS (${selection.rows(sql`fresh`)})
  SELECT r.user_id, r.email, r.dedupe_key, r.data, r.expires_at,
    CASE
      WHEN r.email_verified IS NULL THEN 'unverified'
      WHEN NOT r.opt_in THEN 'opted_out'
      WHEN NOT ${validEmail(sql, sql`r.email`)} THEN 'invalid_email'
      WHEN ${suppressedFor(sql, args.list, sql`r.user_id`, sql`r.email`)} THEN 'suppressed'
      WHEN cap.hit THEN 'cap'
    END AS skip_reason,
    r.unknown_timezone
  FROM job_rows r
  LEFT JOIN LATERAL (
    SELECT true AS hit FROM kaiwa_jobs.deliveries d
    WHERE d.user_id = r.user_id AND d.status IN ('pending', 'sent')
      AND coalesce(d.sent_at, d.planned_at) > ${args.asOf}::timestamptz - make_interval(secs => ${args.minHoursBetweenEmails * 3600})
      AND coalesce(d.sent_at, d.planned_at) <= ${args.asOf}::timestamptz
    LIMIT 1
  ) cap ON true`
}

const HOUR_MS = 3_600_000

/** The local wall clock of an instant in a zone, e.g. `Tue 2026-03-10 07:15 Europe/Paris`. */
export const localTimeIn = (at: Date, zone: string): string => {
  try {
    const parts = new Intl.DateTimeFormat("en-CA", {
      timeZone: zone, weekday: "short", year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", hourCycle: "h23"
    }).formatToParts(at)
    const get = (t: string) => parts.find((p) => p.type === t)?.value ?? ""
    return `${get("weekday")} ${get("year")}-${get("month")}-${get("day")} ${get("hour")}:${get("minute")} ${zone}`
  } catch {
    return `${at.toISOString()} (zone ${zone} unknown)`
  }
}

const SHARED_DETAIL: Readonly<Record<string, string>> = {
  unverified: "the learner has not verified their address",
  opted_out: "the learner turned this list off (the app's email preferences)",
  invalid_email: "the address cannot be an email address"
}

/** A learner whose decision is asked for. */
export interface Learner {
  readonly userId: string
  readonly email: string
}

/**
 * Why a job is or is not due for each of some learners, checked in the order a run applies its rules, each with
 * the very fragments the run composes (never a second implementation): the job's own named rules, the ledger's
 * once per key, the job's late rule, then the shared rules and the cap (the whole statement, restricted to these
 * learners). Set-based: a handful of statements whatever the number of learners.
 */
const explainOf = (sql: SqlClient.SqlClient, suppressions: Suppressions["Service"]) =>
  (args: SelectionArgs, learners: ReadonlyArray<Learner>): Effect.Effect<ReadonlyArray<Decision>, DatabaseError> =>
    Effect.gen(function*() {
      const sel = args.selection
      if (sel.keys !== undefined && sel.keys.length === 0) {
        return learners.map((): Decision => ({ due: false, reason: "no_window_open", detail: "this job's window is not open in any time zone at this instant", key: null }))
      }
      if (learners.length === 0) return []
      const ids = learners.map((l) => l.userId)
      const own = yield* ownRules(sql, sel, ids, args.asOf)
      const candidates = [...own.values()].flatMap((o) => o._tag === "Candidate" ? [o.row] : [])
      const planned = candidates.length === 0 ? [] : yield* sql<{ user_id: string; status: string; reason: string | null; planned_at: Date; sent_at: Date | null; dedupe_key: string }>`
        SELECT d.user_id, d.dedupe_key, d.status, d.reason, d.planned_at, d.sent_at FROM kaiwa_jobs.deliveries d
        JOIN unnest(${candidates.map((c) => String(c["user_id"]))}::text[], ${candidates.map((c) => String(c["dedupe_key"]))}::text[]) AS k(user_id, dedupe_key)
          ON d.user_id = k.user_id AND d.dedupe_key = k.dedupe_key
        WHERE d.job = ${args.job}`
      const plannedBy = new Map(planned.map((p) => [p.user_id, p] as const))
      const rest = candidates.filter((c) => !plannedBy.has(String(c["user_id"])))
      const rows = rest.length === 0 ? [] : yield* sql<Candidate>`
        SELECT q.* FROM (${selectionOf(sql)(args)}) q WHERE q.user_id IN ${sql.in(rest.map((c) => String(c["user_id"])))}`
      const rowBy = new Map(rows.map((r) => [r.user_id, r] as const))
      return yield* Effect.forEach(learners, (learner): Effect.Effect<Decision, SqlError.SqlError | DatabaseError> => {
        const o = own.get(learner.userId)
        if (o === undefined) return Effect.succeed({ due: false, reason: "not_selected", detail: "the job's own rules leave this learner out", key: null })
        if (o._tag === "Excluded") return Effect.succeed(o.decision)
        const key = String(o.row["dedupe_key"])
        const p = plannedBy.get(learner.userId)
        if (p !== undefined) {
          return Effect.succeed({
            due: false,
            reason: "already_planned_for_key",
            detail: `${p.status} for ${key} (planned ${p.planned_at.toISOString()}${p.sent_at ? `, sent ${p.sent_at.toISOString()}` : ""}${p.reason ? `, ${p.reason}` : ""})`,
            key
          })
        }
        const row = rowBy.get(learner.userId)
        if (row === undefined) return Effect.succeed({ due: false, reason: sel.rowsRule ?? "not_selected", detail: "the job's own rule leaves this learner out", key })
        if (row.skip_reason === null) return Effect.succeed({ due: true, reason: "due", detail: `an email for ${key} would be planned`, key })
        const reason = row.skip_reason
        return Effect.map(sharedDetail(sql, suppressions, args, learner, reason), (detail) => ({ due: false, reason, detail, key }))
      })
    }).pipe(Effect.mapError(toDatabaseError("explaining a decision failed")))

type OwnRules =
  | { readonly _tag: "Excluded"; readonly decision: Decision }
  | { readonly _tag: "Candidate"; readonly row: Record<string, unknown> }

/** The job's own named rules for some learners: for each, the first rule that does not hold, or their row. */
const ownRules = (sql: SqlClient.SqlClient, sel: Selection, ids: ReadonlyArray<string>, asOf: Date) =>
  Effect.gen(function*() {
    const c = sel.candidates
    const withClause = sel.with === undefined ? sql.literal("") : sql`WITH ${sel.with}`
    const rules = "select" in c ? c.rules : []
    const rows = "select" in c
      ? yield* sql<Record<string, unknown>>`${withClause}
          SELECT ${c.select}${rules.length === 0 ? sql.literal("") : sql`, ${sql.csv(rules.map((r, i) => sql`coalesce((${r.holds}), false) AS ${sql(`rule_${i}`)}`))}`}
          FROM ${c.from} WHERE u.user_id IN ${sql.in(ids)}`
      : yield* sql<Record<string, unknown>>`${withClause} SELECT x.* FROM (${c}) x WHERE x.user_id IN ${sql.in(ids)}`
    const byUser = new Map<string, Array<Record<string, unknown>>>()
    for (const row of rows) byUser.set(String(row["user_id"]), [...(byUser.get(String(row["user_id"])) ?? []), row])
    const out = new Map<string, OwnRules>()
    for (const [userId, mine] of byUser) {
      // A learner may have several keys (founder steps); the first that passes every rule is the one at stake.
      const passing = mine.find((row) => rules.every((_, i) => row[`rule_${i}`] === true))
      if (passing !== undefined) {
        out.set(userId, { _tag: "Candidate", row: passing })
        continue
      }
      const row = mine[0]!
      const failed = rules.findIndex((_, i) => row[`rule_${i}`] !== true)
      const zone = typeof row["tz"] === "string" ? row["tz"] : null
      out.set(userId, {
        _tag: "Excluded",
        decision: {
          due: false,
          reason: rules[failed]!.reason,
          detail: zone === null ? "" : `the learner's local time is ${localTimeIn(asOf, zone)}`,
          key: row["dedupe_key"] === null || row["dedupe_key"] === undefined ? null : String(row["dedupe_key"])
        }
      })
    }
    return out
  })

/** What a person needs to know about a shared rule's skip: which suppression, which email holds the cap. */
const sharedDetail = (
  sql: SqlClient.SqlClient,
  suppressions: Suppressions["Service"],
  args: SelectionArgs,
  user: { readonly userId: string; readonly email: string },
  reason: string
) =>
  Effect.gen(function*() {
    if (reason === "suppressed") {
      const first = yield* suppressions.firstFor(user, args.list)
      return first === undefined ? "suppressed" : `${first.reason} (${first.list === "*" ? "every list" : first.list}) since ${first.createdAt.toISOString()}`
    }
    if (reason === "cap") {
      const hours = args.minHoursBetweenEmails
      const c = yield* sql<{ job: string; dedupe_key: string; status: string; at: Date }>`
        SELECT job, dedupe_key, status, coalesce(sent_at, planned_at) AS at FROM kaiwa_jobs.deliveries
        WHERE user_id = ${user.userId} AND status IN ('pending', 'sent')
          AND coalesce(sent_at, planned_at) > ${args.asOf}::timestamptz - make_interval(secs => ${hours * 3600})
          AND coalesce(sent_at, planned_at) <= ${args.asOf}::timestamptz
        ORDER BY at DESC LIMIT 1`
      const first = c[0]
      return first === undefined
        ? "another email is inside the cap"
        : `${first.job} (${first.dedupe_key}) ${first.status} at ${first.at.toISOString()}; the cap ends at ${new Date(first.at.getTime() + hours * HOUR_MS).toISOString()}`
    }
    return SHARED_DETAIL[reason] ?? reason
  })

/** The learner's emails, newest first: planned, then sent, skipped or failed, then what became of each. */
const timelineOf = (sql: SqlClient.SqlClient) => (userId: string) =>
  sql<TimelineEntry>`
    SELECT planned_at AS at, 'planned' AS kind, job, dedupe_key AS detail FROM kaiwa_jobs.deliveries WHERE user_id = ${userId}
    UNION ALL
    SELECT coalesce(sent_at, planned_at), status, job, dedupe_key || coalesce(': ' || reason, '')
    FROM kaiwa_jobs.deliveries WHERE user_id = ${userId} AND status <> 'pending'
    UNION ALL
    SELECT delivery_state_at, delivery_state, job, dedupe_key
    FROM kaiwa_jobs.deliveries WHERE user_id = ${userId} AND delivery_state IS NOT NULL
    ORDER BY 1 DESC, 2`.pipe(Effect.mapError(toDatabaseError("reading the learner's timeline failed")))
