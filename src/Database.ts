/**
 * The Database service: the handful of set-based statements the runner needs on top of `SqlClient`. Who is due
 * is a rule, so each job supplies its own selection statement; this module turns a selection into ledger rows
 * (the selection into a temporary table, then one INSERT ... SELECT from it, serialised across jobs so the cross-job cap holds), hands out batches to workers with
 * `FOR UPDATE SKIP LOCKED` and leases, records what the provider said, and keeps the run history.
 * Every instant a rule depends on is a parameter: SQL never calls now() to decide who is due. Leases and
 * idempotency-key ages are the exception: they measure real time shared by several machines, so they use the
 * database's clock (`clock_timestamp()`), which every worker agrees on whatever `--now` it was started with.
 */
import { Context, Effect, Layer, Redacted, Schema } from "effect"
import { SqlClient, type Statement } from "effect/sql"
import { JobsConfig } from "./Config.ts"
import { EmbeddedPostgres } from "./EmbeddedPostgres.ts"
import { migrate, migrateAppFixture } from "./migrations/index.ts"

/** The database could not be reached or refused a statement the runner cannot do without. */
export class DatabaseError extends Schema.TaggedError<DatabaseError>()("DatabaseError", {
  message: Schema.String
}) {}

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
  readonly batchId: string
  readonly outcomes: ReadonlyArray<DeliveryOutcome>
  readonly now: Date
}

/** A run-history row as a run starts. */
export interface RunStart {
  readonly id: string
  readonly job: string
  readonly asOf: Date
  readonly startedAt: Date
  readonly trigger: string
  readonly host: string | null
}

/** How a run ended. */
export interface RunEnd {
  readonly id: string
  readonly outcome: "succeeded" | "incomplete" | "failed" | "interrupted"
  readonly finishedAt: Date
  readonly stats: unknown
  readonly error: string | null
}

/** An address or user taken off a list (or, with list '*', every list). */
export interface Suppression {
  readonly userId: string | null
  readonly email: string | null
  readonly list: string
  readonly reason: "unsubscribed" | "hard_bounce" | "complaint" | "invalid_address"
  readonly now: Date
}

/** The start-of-run sweep of one job's ledger. */
export interface SweepArgs {
  readonly job: string
  readonly list: string
  readonly now: Date
}

/** A row of the run history. */
export interface RunRow {
  readonly id: string
  readonly job: string
  readonly as_of: Date
  readonly started_at: Date
  readonly finished_at: Date | null
  readonly outcome: string
  readonly stats: unknown
  readonly error: string | null
  readonly trigger: string
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

const toDatabaseError = (what: string) => (cause: unknown) =>
  new DatabaseError({ message: `${what}: ${describeSqlCause(cause)}` })

/**
 * A short, secret-free description of why a statement failed. An SqlError's own message is the driver's
 * generic "PgConnection: Query failed" whatever happened; what happened is in its `reason` (ConnectionError,
 * UniqueViolation, ...) and in the driver's error under it, so those are what is read here.
 */
export const describeSqlCause = (cause: unknown): string => {
  const reason = (cause as { reason?: { readonly _tag?: unknown; readonly cause?: unknown } } | undefined)?.reason
  const underlying = reason?.cause ?? (cause as { cause?: unknown } | undefined)?.cause
  const message = (e: unknown) => String((e as { message?: unknown } | undefined)?.message ?? e ?? "")
  const detail = underlying === undefined ? message(cause) : message(underlying)
  // SQLSTATE class 57P: the server is shutting down, crashed or not accepting connections yet (a restart in
  // progress): for the operator that is the database being unreachable, like a refused connection a moment later.
  const code = String((underlying as { code?: unknown } | undefined)?.code ?? "")
  if (
    reason?._tag === "ConnectionError" ||
    code.startsWith("57P") ||
    /ECONNREFUSED|ECONNRESET|EPIPE|ETIMEDOUT|ENOTFOUND|terminating connection|connection (?:refused|reset|closed|ended|terminated)|socket|closed/i.test(detail)
  ) {
    return "the database is unreachable"
  }
  const first = detail.split("\n")[0] || message(cause).split("\n")[0] || "unknown error"
  // Connection strings can carry a password; never let one through.
  return first.replace(/postgres(ql)?:\/\/[^\s]+/gi, "<database-url>").slice(0, 300)
}

/** Rows of one table and job dated after the real instant (issue 19): what `status` names for clean-up. */
export interface FutureRows {
  readonly table: "runs" | "deliveries"
  readonly job: string
  readonly rows: number
  /** The latest instant among them. */
  readonly latest: Date
  /** Up to 20 of their ids. */
  readonly ids: ReadonlyArray<string>
}

/** The runner's view of PostgreSQL. */
export class Database extends Context.Service<Database, {
  readonly sql: SqlClient.SqlClient
  readonly enqueue: (args: EnqueueArgs) => Effect.Effect<EnqueueResult, DatabaseError>
  readonly sweep: (args: SweepArgs) => Effect.Effect<SweepResult, DatabaseError>
  readonly claimBatch: (args: ClaimArgs) => Effect.Effect<ClaimedBatch | undefined, DatabaseError>
  readonly renewLease: (batchId: string, owner: string, leaseSeconds: number) => Effect.Effect<void, DatabaseError>
  readonly releaseBatch: (batchId: string, owner: string, error: string) => Effect.Effect<void, DatabaseError>
  /** Parks a batch the provider refused as an idempotency conflict; returns the ledger ids marked failed. */
  readonly parkConflict: (batchId: string, error: string) => Effect.Effect<ReadonlyArray<string>, DatabaseError>
  readonly completeBatch: (args: CompleteArgs) => Effect.Effect<CompletedBatch, DatabaseError>
  readonly outstanding: (job: string) => Effect.Effect<Outstanding, DatabaseError>
  readonly startRun: (run: RunStart) => Effect.Effect<void, DatabaseError>
  readonly finishRun: (run: RunEnd) => Effect.Effect<void, DatabaseError>
  readonly lastRuns: Effect.Effect<ReadonlyArray<RunRow & { readonly last_success_at: Date | null }>, DatabaseError>
  readonly suppress: (s: Suppression) => Effect.Effect<boolean, DatabaseError>
  /**
   * Hands a batch's still-pending rows back to the queue (out of the batch, so a later claim sends them under a
   * new idempotency key) and closes the batch. Only for a batch the provider accepted none of those rows from.
   */
  readonly requeueBatch: (batchId: string, error: string) => Effect.Effect<ReadonlyArray<string>, DatabaseError>
  /** `lastRuns` as of `now`: runs dated after it (a `--now` in the future) are left out. */
  readonly lastRunsBefore: (now: Date) => Effect.Effect<ReadonlyArray<RunRow & { readonly last_success_at: Date | null }>, DatabaseError>
  /** Run and ledger rows dated after `now`, per table and job, for an operator to clean up. */
  readonly futureRows: (now: Date) => Effect.Effect<ReadonlyArray<FutureRows>, DatabaseError>
}>()("kaiwa-jobs/Database") {
  /** The service over whatever SqlClient is provided. */
  static readonly layerFromSql = Layer.effect(Database, Effect.map(SqlClient.SqlClient, makeDatabase))

  /** Production: `DATABASE_URL`, migrations applied by `kaiwa-jobs migrate` (release_command), not here. */
  static readonly layer = Layer.unwrap(
    Effect.gen(function*() {
      const config = yield* JobsConfig
      const url = config.databaseUrl
      if (url._tag === "None") return yield* new DatabaseError({ message: "DATABASE_URL is not set" })
      return Database.layerFromSql.pipe(Layer.provideMerge(pgLayer(url.value)))
    })
  )

  /** An embedded server (from `EmbeddedPostgres`), migrated, with the app fixture; `database` defaults to postgres. */
  static readonly layerEmbedded = (database = "postgres") =>
    Layer.unwrap(
      Effect.gen(function*() {
        const server = yield* EmbeddedPostgres
        return Database.layerMigrated({ appFixture: true }).pipe(Layer.provideMerge(pgLayer(server.url(database))))
      })
    )

  /** Applies the library's migrations (and the app fixture when asked) before offering the service. */
  static readonly layerMigrated = (options: { readonly appFixture: boolean }) =>
    Layer.effectDiscard(
      Effect.gen(function*() {
        yield* migrate
        if (options.appFixture) yield* migrateAppFixture
      }).pipe(Effect.mapError(toDatabaseError("migrations failed")))
    ).pipe(Layer.provideMerge(Database.layerFromSql))
}

/**
 * A pooled client; connection failures surface within seconds instead of hanging a run. The driver
 * (`@effect/sql-pg`) is imported when the layer is built, not when this module is: commands that never
 * touch the database (`list`, `--help`, `preview`) do not pay for loading it (issue 13).
 */
export const pgLayer = (url: Redacted.Redacted<string>) =>
  Layer.unwrap(Effect.map(Effect.promise(() => import("@effect/sql-pg/PgClient")), (PgClient) =>
    PgClient.layerFrom(
      PgClient.make({ url, maxConnections: 10, connectTimeout: "5 seconds", applicationName: "kaiwa-jobs" }).pipe(
        Effect.mapError(toDatabaseError("cannot connect to the database"))
      )
    )))

function makeDatabase(sql: SqlClient.SqlClient): Database["Service"] {
  const enqueue = Effect.fn("Database.enqueue")(function*(args: EnqueueArgs) {
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
  const sweep = Effect.fn("Database.sweep")(function*(args: SweepArgs) {
    const rows = yield* sql<{ reason: string; n: number; ids: ReadonlyArray<string> | null }>`
      WITH swept AS (
        UPDATE kaiwa_jobs.deliveries d
        SET status = 'skipped',
            reason = CASE WHEN d.expires_at <= ${args.now} THEN 'expired' ELSE 'suppressed' END
        WHERE d.job = ${args.job} AND d.status = 'pending' AND d.batch_id IS NULL
          AND (d.expires_at <= ${args.now} OR EXISTS (
            SELECT 1 FROM kaiwa_jobs.suppressions s
            WHERE s.list IN ('*', ${args.list}) AND (s.user_id = d.user_id OR lower(s.email) = lower(d.email))))
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

  const claimBatch = Effect.fn("Database.claimBatch")(function*(args: ClaimArgs) {
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

  const completeBatch = Effect.fn("Database.completeBatch")(function*(args: CompleteArgs) {
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
      yield* sql`
        INSERT INTO kaiwa_jobs.suppressions (user_id, email, list, reason, created_at)
        SELECT d.user_id, lower(d.email), '*', 'invalid_address', ${args.now}
        FROM kaiwa_jobs.deliveries d
        WHERE d.batch_id = ${args.batchId} AND d.status = 'failed' AND d.reason LIKE ${REJECTED_PREFIX + "%"}
        ON CONFLICT ON CONSTRAINT suppressions_once DO NOTHING`
      yield* sql`
        UPDATE kaiwa_jobs.batches SET status = 'done', done_at = ${args.now}, lease_until = NULL
        WHERE id = ${args.batchId} AND status = 'pending'`
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

  const startRun = (run: RunStart) =>
    sql`INSERT INTO kaiwa_jobs.runs (id, job, as_of, started_at, trigger, host)
        VALUES (${run.id}::uuid, ${run.job}, ${run.asOf}, ${run.startedAt}, ${run.trigger}, ${run.host})`.pipe(
      Effect.asVoid,
      Effect.mapError(toDatabaseError("recording the run failed"))
    )

  const finishRun = (run: RunEnd) =>
    sql`UPDATE kaiwa_jobs.runs
        SET outcome = ${run.outcome}, finished_at = ${run.finishedAt},
            stats = ${JSON.stringify(run.stats ?? null)}::jsonb, error = ${run.error}
        WHERE id = ${run.id}::uuid`.pipe(
      Effect.asVoid,
      Effect.mapError(toDatabaseError("recording the run's end failed"))
    )

  const lastRuns = sql<RunRow & { last_success_at: Date | null }>`
    SELECT DISTINCT ON (r.job) r.id::text AS id, r.job, r.as_of, r.started_at, r.finished_at, r.outcome, r.stats,
      r.error, r.trigger,
      (SELECT max(s.started_at) FROM kaiwa_jobs.runs s WHERE s.job = r.job AND s.outcome = 'succeeded') AS last_success_at
    FROM kaiwa_jobs.runs r
    ORDER BY r.job, r.started_at DESC`.pipe(Effect.mapError(toDatabaseError("reading the run history failed")))

  const suppress = (s: Suppression) =>
    sql<{ id: string }>`
      INSERT INTO kaiwa_jobs.suppressions (user_id, email, list, reason, created_at)
      VALUES (${s.userId}, ${s.email === null ? null : s.email.toLowerCase()}, ${s.list}, ${s.reason}, ${s.now})
      ON CONFLICT ON CONSTRAINT suppressions_once DO NOTHING
      RETURNING id::text AS id`.pipe(
      Effect.map((rows) => rows.length > 0),
      Effect.mapError(toDatabaseError("recording a suppression failed"))
    )

  // Issue 19: a batch the provider refused (its sender, content or account, not its recipients) accepted none of
  // these rows; resent under its old key it would get the stored refusal back (or a 409 once the content is
  // fixed), so its rows leave it and the next claim gives them a new key. Closed as done, it is never resumed.
  const requeueBatch = (batchId: string, error: string) =>
    sql.withTransaction(Effect.gen(function*() {
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
    })).pipe(Effect.mapError(toDatabaseError("requeueing a batch failed")))

  // Issue 19: a run made with a `--now` in the future would count as the latest success until that date, and hide
  // an overdue job. The same statement as `lastRuns`, with every run dated after `now` left out.
  const lastRunsBefore = (now: Date) =>
    sql<RunRow & { last_success_at: Date | null }>`
      SELECT DISTINCT ON (r.job) r.id::text AS id, r.job, r.as_of, r.started_at, r.finished_at, r.outcome, r.stats,
        r.error, r.trigger,
        (SELECT max(s.started_at) FROM kaiwa_jobs.runs s
         WHERE s.job = r.job AND s.outcome = 'succeeded' AND s.started_at <= ${now} AND s.as_of <= ${now}) AS last_success_at
      FROM kaiwa_jobs.runs r
      WHERE r.started_at <= ${now} AND r.as_of <= ${now}
      ORDER BY r.job, r.started_at DESC`.pipe(Effect.mapError(toDatabaseError("reading the run history failed")))

  // For `status` only (it scans the ledger): rows a future `--now` left behind.
  const futureRows = (now: Date) =>
    sql<{ table_name: "runs" | "deliveries"; job: string; rows: number; latest: Date; ids: ReadonlyArray<string> }>`
      SELECT 'runs' AS table_name, job, count(*)::int AS rows, max(greatest(as_of, started_at)) AS latest,
        (array_agg(id::text ORDER BY started_at DESC))[1:20] AS ids
      FROM kaiwa_jobs.runs WHERE as_of > ${now} OR started_at > ${now} GROUP BY job
      UNION ALL
      SELECT 'deliveries', job, count(*)::int, max(greatest(planned_at, sent_at)),
        (array_agg(id::text ORDER BY id DESC))[1:20]
      FROM kaiwa_jobs.deliveries WHERE planned_at > ${now} OR sent_at > ${now} GROUP BY job
      ORDER BY 1, 2`.pipe(
      Effect.map((rows) => rows.map((r): FutureRows => ({ table: r.table_name, job: r.job, rows: r.rows, latest: r.latest, ids: r.ids }))),
      Effect.mapError(toDatabaseError("reading rows dated in the future failed"))
    )

  return Database.of({
    sql,
    enqueue,
    sweep,
    claimBatch,
    renewLease,
    releaseBatch,
    parkConflict,
    completeBatch,
    outstanding,
    startRun,
    finishRun,
    lastRuns,
    suppress,
    requeueBatch,
    lastRunsBefore,
    futureRows
  })
}
