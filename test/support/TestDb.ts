/**
 * A fresh database per test file on the shared test server, migrated with the library's schema and the app
 * fixture, plus helpers that insert app rows (users, settings, sessions) the way the Kaiwa web app would.
 */
import { randomBytes } from "node:crypto"
import { Effect, Layer, Redacted, References } from "effect"
import { SqlClient } from "effect/sql"
import { inject } from "vitest"
import { pgLayer } from "../../src/Database.ts"
import * as Layers from "../../src/Layers.ts"

// Callers check emptiness first; sql.insert's array overload wants a non-empty tuple type.
const nonEmpty = <A extends object>(rows: ReadonlyArray<A>) =>
  rows as unknown as readonly [Record<string, unknown>, ...Array<Record<string, unknown>>]

/** Creates an empty database on the test server and returns its URL. */
export const freshDatabaseUrl = Effect.gen(function*() {
  const admin = inject("pgAdminUrl")
  const name = `t_${randomBytes(6).toString("hex")}`
  yield* Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    yield* sql`CREATE DATABASE ${sql(name)}`
  }).pipe(Effect.provide(pgLayer(Redacted.make(admin))), Effect.orDie)
  const url = new URL(admin)
  url.pathname = `/${name}`
  return Redacted.make(url.toString())
})

/** The test mode stack on a fresh database. Only warnings and errors are logged, to keep the output readable. */
export const testLayer = Layer.unwrap(Effect.map(freshDatabaseUrl, Layers.test)).pipe(
  Layer.provideMerge(Layer.succeed(References.MinimumLogLevel, "Warn"))
)

/** A user row of the app's `users` table (CONTRACT section 3), with settings and sessions. */
export interface UserFixture {
  readonly id: string
  readonly email?: string
  readonly displayName?: string | null
  readonly verified?: boolean
  readonly createdAt: Date
  readonly timezone?: string | null
  readonly reminders?: boolean | undefined
  readonly founder?: boolean | undefined
  readonly progress?: boolean | undefined
  /** `durationSeconds` defaults to 300; null is a session whose length the app never recorded. */
  readonly sessions?: ReadonlyArray<Session>
}

/** A conversation session of a fixture user. */
export interface Session {
  readonly at: Date
  readonly language: string
  readonly durationSeconds?: number | null | undefined
}

/** Inserts users (and their settings rows when an opt-in is given, and sessions) in a few set-based statements. */
export const insertUsers = (users: ReadonlyArray<UserFixture>) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    if (users.length === 0) return
    for (let i = 0; i < users.length; i += 1000) {
      const chunk = users.slice(i, i + 1000)
      yield* sql`INSERT INTO users ${sql.insert(nonEmpty(chunk.map((u) => ({
        id: u.id,
        email: u.email ?? `${u.id}@example.com`,
        display_name: u.displayName === undefined ? `Learner ${u.id}` : u.displayName,
        email_verified: u.verified === false ? null : new Date(u.createdAt.getTime() + 60_000),
        created_at: u.createdAt,
        timezone: u.timezone === undefined ? "UTC" : u.timezone
      }))))}`
      const settings = chunk.filter((u) => u.reminders !== undefined || u.founder !== undefined || u.progress !== undefined)
      if (settings.length > 0) {
        yield* sql`INSERT INTO user_settings ${sql.insert(nonEmpty(settings.map((u) => ({
          user_id: u.id,
          receive_practice_reminders: u.reminders ?? true,
          receive_founder_emails: u.founder ?? true,
          receive_progress_reports: u.progress ?? true
        }))))}`
      }
      const sessions = chunk.flatMap((u) => (u.sessions ?? []).map((s, k) => ({ u, s, k })))
      if (sessions.length > 0) yield* addSessions(sessions.map(({ u, s, k }) => ({ id: `${u.id}-s${k}`, userId: u.id, ...s })))
    }
  })

/** Adds conversation sessions. */
export const addSessions = (sessions: ReadonlyArray<Session & { readonly id: string; readonly userId: string }>) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    for (let i = 0; i < sessions.length; i += 1000) {
      yield* sql`INSERT INTO conversation_sessions ${sql.insert(nonEmpty(sessions.slice(i, i + 1000).map((s) => ({
        id: s.id,
        user_id: s.userId,
        language: s.language,
        start_time: s.at,
        duration_seconds: s.durationSeconds === undefined ? 300 : s.durationSeconds
      }))))}`
    }
  })

/** Every row of every `kaiwa_jobs` table, as JSON text, for before/after comparisons. */
export const snapshotLibraryTables = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const tables = ["runs", "batches", "deliveries", "suppressions", "migrations"]
  const out: Record<string, string> = {}
  for (const t of tables) {
    const rows = yield* sql<{ j: string | null }>`SELECT json_agg(x ORDER BY x::text)::text AS j FROM ${sql(`kaiwa_jobs.${t}`)} x`
    out[t] = rows[0]?.j ?? "[]"
  }
  return out
})
