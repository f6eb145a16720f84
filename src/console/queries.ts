/**
 * The queries the operator console and `send-test` need that the table owners do not offer yet (issue 21). Each
 * takes the SqlClient and decodes its rows with Schema; they are meant to move into the module that owns each
 * table (the runs and the ledger: Database.ts's successors; the console sessions: this console).
 */
import { Effect, Schema } from "effect"
import { type SqlClient, SqlSchema, type Statement } from "effect/sql"

/** A job's selection row for one learner, as the run would plan it (due or not). */
export const CandidateRow = Schema.Struct({
  user_id: Schema.String,
  email: Schema.String,
  dedupe_key: Schema.String,
  data: Schema.Unknown,
  skip_reason: Schema.NullOr(Schema.String)
})
export type CandidateRow = typeof CandidateRow.Type

/**
 * The candidate rows of one learner in a job's selection statement (`Job.statement(asOf)`), due ones first: the
 * data the learner's email would carry now, even when they are not due. Empty when the job has no row for them
 * (not a candidate at all, or this key already on the ledger).
 */
export const candidatesOf = (sql: SqlClient.SqlClient, selection: Statement.Statement<unknown>, userId: string) =>
  SqlSchema.findAll({
    Request: Schema.String,
    Result: CandidateRow,
    execute: (id) =>
      sql`SELECT c.user_id, c.email, c.dedupe_key, c.data, c.skip_reason FROM (${selection}) c
        WHERE c.user_id = ${id} ORDER BY (c.skip_reason IS NULL) DESC, c.dedupe_key LIMIT 5`
  })(userId)

/** One run, as the console lists it. */
export const RunRow = Schema.Struct({
  id: Schema.String,
  job: Schema.String,
  as_of: Schema.Date,
  started_at: Schema.Date,
  finished_at: Schema.NullOr(Schema.Date),
  outcome: Schema.String,
  stats: Schema.Unknown,
  error: Schema.NullOr(Schema.String),
  trigger: Schema.String,
  host: Schema.NullOr(Schema.String)
})
export type RunRow = typeof RunRow.Type

const RUN_COLUMNS = "id::text AS id, job, as_of, started_at, finished_at, outcome, stats, error, trigger, host"

/** The latest runs of each job, `perJob` of each, newest first. */
export const recentRuns = (sql: SqlClient.SqlClient, perJob: number) =>
  SqlSchema.findAll({
    Request: Schema.Number,
    Result: RunRow,
    execute: (n) =>
      sql`SELECT ${sql.literal(RUN_COLUMNS)} FROM (
          SELECT r.*, row_number() OVER (PARTITION BY r.job ORDER BY r.started_at DESC) AS k FROM kaiwa_jobs.runs r
        ) x WHERE x.k <= ${n} ORDER BY x.job, x.started_at DESC`
  })(perJob)

/** One run by id; undefined when there is none (or the id is not a uuid). */
export const runById = (sql: SqlClient.SqlClient, id: string) =>
  /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(id)
    ? SqlSchema.findAll({
      Request: Schema.String,
      Result: RunRow,
      execute: (runId) => sql`SELECT ${sql.literal(RUN_COLUMNS)} FROM kaiwa_jobs.runs WHERE id = ${runId}::uuid`
    })(id).pipe(Effect.map((rows) => rows[0]))
    : Effect.succeed(undefined)

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
export const touchedBy = (sql: SqlClient.SqlClient, runId: string, page: { readonly offset: number; readonly limit: number }) =>
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

/**
 * Records a sign-in link's nonce as used; false when it was used before (a replayed link). One statement, so two
 * requests racing with the same link cannot both win. Old nonces are pruned once their links have expired.
 */
export const useNonce = (sql: SqlClient.SqlClient, nonce: string, expiresAt: Date, now: Date) =>
  Effect.gen(function*() {
    yield* sql`DELETE FROM kaiwa_jobs.console_nonces WHERE expires_at < ${now}`
    const rows = yield* SqlSchema.findAll({
      Request: Schema.String,
      Result: Schema.Struct({ nonce: Schema.String }),
      execute: (n) =>
        sql`INSERT INTO kaiwa_jobs.console_nonces (nonce, expires_at, used_at) VALUES (${n}, ${expiresAt}, ${now})
          ON CONFLICT (nonce) DO NOTHING RETURNING nonce`
    })(nonce)
    return rows.length === 1
  })
