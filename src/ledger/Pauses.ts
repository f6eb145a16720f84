/**
 * Pausing a job: the owner of `kaiwa_jobs.pauses`. A pause is stored in the database, so every
 * trigger (a Fly machine, the CLI, the HTTP server) sees it: a run checks it when it starts and before each
 * batch it claims; a paused run records itself as `paused`, sends nothing more, exits 0, and leaves its pending
 * rows for the first run after `resume`. Who paused what, when and why is shown by `status`, `/health` and the
 * console; a paused job is never reported overdue.
 */
import { Context, Effect, Layer, Option, Schema } from "effect"
import { SqlClient, SqlSchema } from "effect/sql"

/** A job's pause, as stored. */
export const Pause = Schema.Struct({
  job: Schema.String,
  pausedAt: Schema.Date,
  pausedBy: Schema.String,
  reason: Schema.NullOr(Schema.String)
})
export type Pause = typeof Pause.Type

const PauseRow = Schema.Struct({
  job: Schema.String,
  paused_at: Schema.Date,
  paused_by: Schema.String,
  reason: Schema.NullOr(Schema.String)
})

const fromRow = (r: typeof PauseRow.Type): Pause => ({ job: r.job, pausedAt: r.paused_at, pausedBy: r.paused_by, reason: r.reason })

/** Reads and writes the pauses. */
export class Pauses extends Context.Service<Pauses, {
  /** Pauses a job (a second pause keeps the first one's instant and author, and updates the reason when given). */
  readonly pause: (p: { readonly job: string; readonly by: string; readonly reason: string | null; readonly now: Date }) => Effect.Effect<Pause>
  /** Resumes a job; false when it was not paused. */
  readonly resume: (job: string) => Effect.Effect<boolean>
  /** The job's pause, if it is paused. */
  readonly get: (job: string) => Effect.Effect<Pause | undefined>
  /** Every pause, by job. */
  readonly all: Effect.Effect<ReadonlyMap<string, Pause>>
}>()("kaiwa-jobs/Pauses") {
  /** The pauses in the database the SqlClient points at. */
  static readonly layer = Layer.effect(Pauses, Effect.map(SqlClient.SqlClient, (sql) => make(sql)))
}

// A pause is a rare, operator-driven write: a database error here is a defect the caller cannot act on.
const make = (sql: SqlClient.SqlClient): Pauses["Service"] => {
  const findAll = SqlSchema.findAll({
    Request: Schema.Void,
    Result: PauseRow,
    execute: () => sql`SELECT job, paused_at, paused_by, reason FROM kaiwa_jobs.pauses ORDER BY job`
  })
  const findOne = SqlSchema.findOneOption({
    Request: Schema.String,
    Result: PauseRow,
    execute: (job) => sql`SELECT job, paused_at, paused_by, reason FROM kaiwa_jobs.pauses WHERE job = ${job}`
  })
  const upsert = SqlSchema.findOne({
    Request: Schema.Struct({ job: Schema.String, by: Schema.String, reason: Schema.NullOr(Schema.String), now: Schema.Date }),
    Result: PauseRow,
    execute: (p) =>
      sql`INSERT INTO kaiwa_jobs.pauses (job, paused_at, paused_by, reason) VALUES (${p.job}, ${p.now}, ${p.by}, ${p.reason})
        ON CONFLICT (job) DO UPDATE SET reason = coalesce(EXCLUDED.reason, kaiwa_jobs.pauses.reason)
        RETURNING job, paused_at, paused_by, reason`
  })
  const remove = SqlSchema.findAll({
    Request: Schema.String,
    Result: Schema.Struct({ job: Schema.String }),
    execute: (job) => sql`DELETE FROM kaiwa_jobs.pauses WHERE job = ${job} RETURNING job`
  })
  return Pauses.of({
    pause: (p) => upsert(p).pipe(Effect.map(fromRow), Effect.orDie),
    resume: (job) => remove(job).pipe(Effect.map((rows) => rows.length > 0), Effect.orDie),
    get: (job) => findOne(job).pipe(Effect.map((row) => Option.getOrUndefined(Option.map(row, fromRow))), Effect.orDie),
    all: findAll(undefined).pipe(Effect.map((rows) => new Map(rows.map((r) => [r.job, fromRow(r)] as const))), Effect.orDie)
  })
}
