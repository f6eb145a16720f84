/**
 * Planning a tick: a job's rule composed with the rules every job shares (`selectionOf`), and its result turned
 * into ledger rows (`enqueue`). Internal to `src/ledger/`; `Ledger` offers both.
 */
import { Effect } from "effect"
import type { SqlClient, Statement } from "effect/sql"
import { toDatabaseError } from "../../database/Database.ts"
import type { EnqueueArgs, EnqueueResult, Rules, SelectionArgs } from "../Ledger.ts"
import { suppressedFor } from "../Suppressions.ts"
import { BAD_ROW_REASONS } from "./reasons.ts"
import { type Candidate, decodeRows, PlanCount } from "./rows.ts"

// Any constant works; it only has to be the same for every job so enqueues of different jobs serialise.
const ENQUEUE_LOCK = 0x6b6a6f62

/** Plans one tick: the job's selection, inserted into the ledger as of `asOf`. */
export const enqueue = (sql: SqlClient.SqlClient) =>
  Effect.fn("Ledger.enqueue")(function*(args: EnqueueArgs) {
    const rows = yield* sql.withTransaction(Effect.gen(function*() {
      // Serialises planning across jobs and machines, so two jobs cannot both pass the cross-job cap for one
      // user. Planning is two set-based statements, so the lock is held for about a second even at 1M users.
      yield* sql`SELECT pg_advisory_xact_lock(${ENQUEUE_LOCK})`
      // The selection runs on its own, as CREATE TABLE AS, and the ledger insert reads its result: PostgreSQL
      // never gives parallel workers to a statement that writes (INSERT ... SELECT), but does to CREATE TABLE AS
      // (docs/decisions.md). The selection hashes the day's sessions and ledger rows; 4 x work_mem keeps them in
      // memory for this one statement per tick instead of spilling to disk in batches.
      yield* sql`SET LOCAL hash_mem_multiplier = 4`
      yield* sql`CREATE TEMP TABLE kaiwa_jobs_selection ON COMMIT DROP AS ${args.selection}`
      return yield* insertSelected(sql, args)
    })).pipe(Effect.mapError(toDatabaseError("planning failed")))
    return tally(rows)
  })

// A plain INSERT, no ON CONFLICT: every selection leaves out the users who already have a ledger row for the key
// it plans (an anti-join on the same job, user and key), and the planning lock keeps any other planner out until
// the rows are committed, so a conflict can only be a bug in a selection. deliveries_once then fails the planning
// loudly (the run exits 1, nothing is sent twice) instead of hiding the bug from the tests and the operator.
// It is also cheaper than speculative insertion.
const insertSelected = (sql: SqlClient.SqlClient, args: EnqueueArgs) => {
  const finalSkips = args.finalSkips ?? []
  return sql`
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
    SELECT 'enqueued' AS kind, NULL::text AS reason, count(*)::int AS n, NULL::text[] AS ids FROM ins
    UNION ALL
    SELECT 'skipped', skip_reason, count(*)::int, (array_agg(user_id ORDER BY user_id))[1:100]
    FROM sel WHERE skip_reason IS NOT NULL GROUP BY skip_reason
    UNION ALL
    SELECT 'bad_data', 'unknown_timezone', count(*)::int, (array_agg(user_id ORDER BY user_id))[1:100]
    FROM sel WHERE unknown_timezone HAVING count(*) > 0`.pipe(decodeRows(PlanCount))
}

/** A planning's counts as `EnqueueResult`: ids are kept for bad data only. */
const tally = (rows: ReadonlyArray<PlanCount>): EnqueueResult => {
  let enqueued = 0
  const skipped: Record<string, number> = {}
  const skippedIds: Record<string, ReadonlyArray<string>> = {}
  for (const row of rows) {
    if (row.kind === "enqueued") enqueued = row.n
    else if (row.kind === "bad_data") skippedIds[row.reason] = row.ids ?? []
    else {
      skipped[row.reason] = row.n
      if (BAD_ROW_REASONS.has(row.reason)) skippedIds[row.reason] = row.ids ?? []
    }
  }
  return { enqueued, skipped, skippedIds }
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
 * The ledger check's key: the candidate's own, and among `keys` when the job declared them. With one key declared
 * (most ticks: every open window shares its local date or week), every candidate has that key, so the check
 * compares with the constant and not with `x.dedupe_key`: it then depends on the user alone, and PostgreSQL can run
 * it before the job's window rules (which compute the key from the zone) instead of after them
 * (docs/decisions.md, Selection on Kaiwa's shape). A candidate whose key is outside `keys` is a bug in the job's
 * declaration: the check would look for the declared key instead of its own, so a row already planned for its own
 * key would meet it in `deliveries_once` (the planning fails, nothing is sent twice), and a row for the declared
 * key would hold it back. `test/jobs/keys.integration.test.ts` checks the jobs' declarations.
 */
const sameKey = (sql: SqlClient.SqlClient, keys: ReadonlyArray<string> | undefined): Statement.Fragment =>
  keys === undefined
    ? sql`d.dedupe_key = x.dedupe_key`
    : keys.length === 1
    ? sql`d.dedupe_key = ${keys[0]!}`
    : sql`d.dedupe_key = x.dedupe_key AND d.dedupe_key IN ${sql.in(keys)}`

/**
 * A job's rule composed with what the library applies to every job: the candidates that already
 * have a ledger row for their key are left out before the job computes their rows (so no job repeats that
 * check, and the ledger's once-per-key constraint catches a bug in this composition loudly); then each row gets
 * the first reason it is not due, in the order a person would check them: unverified, opted out, an unusable
 * address, suppressed (for this list or every list, by user or by address), the cross-job cap.
 *
 * The cap is one range of deliveries_cap_idx per candidate, bounded on both sides: an email sent or planned
 * less than MIN_HOURS_BETWEEN_EMAILS before `asOf`, and not after it. A row dated in the future (a run with a
 * mistaken `--now`) never blocks anyone; `status` names such rows.
 *
 * The statement is composed here and executed elsewhere (the planning's CREATE TABLE AS, the dry run's cursor):
 * its type parameter says what its rows are, and `Candidate` is the schema to decode them with.
 */
export const selectionOf = (sql: SqlClient.SqlClient) => (args: SelectionArgs): Statement.Statement<Candidate> => {
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
      WHERE d.job = ${args.job} AND d.user_id = x.user_id AND ${sameKey(sql, keys)})
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
