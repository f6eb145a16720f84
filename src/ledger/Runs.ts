/**
 * The run history, `kaiwa_jobs.runs`: one row per run of a job (its instant, trigger, machine, outcome and stats),
 * written by the runner and read by `status`, `/health` and the console. The only module that names that table.
 */
import { Context, Effect, Layer, Option, Schema } from "effect"
import { SqlClient, SqlSchema } from "effect/sql"
import { type DatabaseError, toDatabaseError } from "../database/Database.ts"
import { decodeRows, FutureRows } from "./internal/rows.ts"

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
  readonly outcome: "succeeded" | "incomplete" | "failed" | "interrupted" | "paused"
  readonly finishedAt: Date
  readonly stats: unknown
  readonly error: string | null
}

/** How a run stands or ended, as `runs.outcome` stores it (its CHECK, migrations 0001 and 0009). */
export const RunOutcome = Schema.Literals(["running", "succeeded", "incomplete", "failed", "interrupted", "paused"])
export type RunOutcome = typeof RunOutcome.Type

/** A row of the run history. */
export const RunRow = Schema.Struct({
  id: Schema.String,
  job: Schema.String,
  as_of: Schema.Date,
  started_at: Schema.Date,
  finished_at: Schema.NullOr(Schema.Date),
  outcome: RunOutcome,
  stats: Schema.Unknown,
  error: Schema.NullOr(Schema.String),
  trigger: Schema.String
})
export type RunRow = typeof RunRow.Type

/** A job's latest run and its last success. */
export const LastRun = Schema.Struct({ ...RunRow.fields, last_success_at: Schema.NullOr(Schema.Date) })
export type LastRun = typeof LastRun.Type

/** One run, as the console lists it. */
export const RunRecord = Schema.Struct({ ...RunRow.fields, host: Schema.NullOr(Schema.String) })
export type RunRecord = typeof RunRecord.Type

const RUN_COLUMNS = "id::text AS id, job, as_of, started_at, finished_at, outcome, stats, error, trigger, host"

/** The latest runs of each job, `perJob` of each, newest first. */
const recentRuns = (sql: SqlClient.SqlClient, perJob: number) =>
  SqlSchema.findAll({
    Request: Schema.Number,
    Result: RunRecord,
    execute: (n) =>
      sql`SELECT ${sql.literal(RUN_COLUMNS)} FROM (
          SELECT r.*, row_number() OVER (PARTITION BY r.job ORDER BY r.started_at DESC) AS k FROM kaiwa_jobs.runs r
        ) x WHERE x.k <= ${n} ORDER BY x.job, x.started_at DESC`
  })(perJob)

/** One run by id; undefined when there is none (or the id is not a uuid). */
const runById = (sql: SqlClient.SqlClient, id: string) =>
  /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(id)
    ? SqlSchema.findOneOption({
      Request: Schema.String,
      Result: RunRecord,
      execute: (runId) => sql`SELECT ${sql.literal(RUN_COLUMNS)} FROM kaiwa_jobs.runs WHERE id = ${runId}::uuid`
    })(id).pipe(Effect.map(Option.getOrUndefined))
    : Effect.succeed(undefined)


/** The run history. */
export class Runs extends Context.Service<Runs, {
  readonly start: (run: RunStart) => Effect.Effect<void, DatabaseError>
  readonly finish: (run: RunEnd) => Effect.Effect<void, DatabaseError>
  /** Each job's latest run and last success. */
  readonly last: Effect.Effect<ReadonlyArray<LastRun>, DatabaseError>
  /** `last` as of `now`: runs dated after it (a `--now` in the future) are left out. */
  readonly lastBefore: (now: Date) => Effect.Effect<ReadonlyArray<LastRun>, DatabaseError>
  /** The latest runs of each job, `perJob` of each, newest first (the console). */
  readonly recent: (perJob: number) => Effect.Effect<ReadonlyArray<RunRecord>, DatabaseError>
  /** One run by id; undefined when there is none (or the id is not a uuid). */
  readonly byId: (id: string) => Effect.Effect<RunRecord | undefined, DatabaseError>
  /** Runs dated after `now`, per job. */
  readonly future: (now: Date) => Effect.Effect<ReadonlyArray<FutureRows>, DatabaseError>
}>()("kaiwa-jobs/Runs") {
  /** Over the SqlClient provided. */
  static readonly layer = Layer.effect(Runs, Effect.map(SqlClient.SqlClient, (sql) => make(sql)))
}

const make = (sql: SqlClient.SqlClient): Runs["Service"] =>
  Runs.of({
    start: (run) => startRun(sql, run).pipe(Effect.asVoid, Effect.mapError(toDatabaseError("recording the run failed"))),
    finish: (run) => finishRun(sql, run).pipe(Effect.asVoid, Effect.mapError(toDatabaseError("recording the run's end failed"))),
    last: lastRuns(sql).pipe(Effect.mapError(toDatabaseError("reading the run history failed"))),
    lastBefore: (now) => lastRunsBefore(sql, now).pipe(Effect.mapError(toDatabaseError("reading the run history failed"))),
    future: (now) => futureRuns(sql, now).pipe(Effect.mapError(toDatabaseError("reading runs dated in the future failed"))),
    recent: (perJob) => recentRuns(sql, perJob).pipe(Effect.mapError(toDatabaseError("reading the run history failed"))),
    byId: (id) => runById(sql, id).pipe(Effect.mapError(toDatabaseError("reading a run failed")))
  })

const startRun = (sql: SqlClient.SqlClient, run: RunStart) =>
  sql`INSERT INTO kaiwa_jobs.runs (id, job, as_of, started_at, trigger, host)
      VALUES (${run.id}::uuid, ${run.job}, ${run.asOf}, ${run.startedAt}, ${run.trigger}, ${run.host})`

const finishRun = (sql: SqlClient.SqlClient, run: RunEnd) =>
  sql`UPDATE kaiwa_jobs.runs
      SET outcome = ${run.outcome}, finished_at = ${run.finishedAt},
          stats = ${JSON.stringify(run.stats ?? null)}::jsonb, error = ${run.error}
      WHERE id = ${run.id}::uuid`

const lastRuns = (sql: SqlClient.SqlClient) =>
  sql`
    SELECT DISTINCT ON (r.job) r.id::text AS id, r.job, r.as_of, r.started_at, r.finished_at, r.outcome, r.stats,
      r.error, r.trigger,
      (SELECT max(s.started_at) FROM kaiwa_jobs.runs s WHERE s.job = r.job AND s.outcome = 'succeeded') AS last_success_at
    FROM kaiwa_jobs.runs r
    ORDER BY r.job, r.started_at DESC`.pipe(decodeRows(LastRun))

// A run made with a `--now` in the future would count as the latest success until that date, and hide
// an overdue job. The same statement as `lastRuns`, with every run dated after `now` left out.
const lastRunsBefore = (sql: SqlClient.SqlClient, now: Date) =>
  sql`
    SELECT DISTINCT ON (r.job) r.id::text AS id, r.job, r.as_of, r.started_at, r.finished_at, r.outcome, r.stats,
      r.error, r.trigger,
      (SELECT max(s.started_at) FROM kaiwa_jobs.runs s
       WHERE s.job = r.job AND s.outcome = 'succeeded' AND s.started_at <= ${now} AND s.as_of <= ${now}) AS last_success_at
    FROM kaiwa_jobs.runs r
    WHERE r.started_at <= ${now} AND r.as_of <= ${now}
    ORDER BY r.job, r.started_at DESC`.pipe(decodeRows(LastRun))

// For `status` only: runs a future `--now` left behind.
const futureRuns = (sql: SqlClient.SqlClient, now: Date) =>
  sql`
    SELECT job, count(*)::int AS rows, max(greatest(as_of, started_at)) AS latest,
      (array_agg(id::text ORDER BY started_at DESC))[1:20] AS ids
    FROM kaiwa_jobs.runs WHERE as_of > ${now} OR started_at > ${now} GROUP BY job ORDER BY job`.pipe(decodeRows(FutureRows))
