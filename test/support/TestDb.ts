/**
 * A fresh database per test file on the shared test server, migrated with the library's schema and the app
 * fixture, plus helpers that insert app rows (users, settings, sessions) the way the Kaiwa web app would.
 */
import { createHash, randomBytes } from "node:crypto"
import { Effect, Layer, Redacted, References } from "effect"
import { SqlClient } from "effect/sql"
import { inject } from "vitest"
import { pgLayer } from "../../src/database/Database.ts"
import * as Layers from "../../src/job/Layers.ts"
import type { AppFixture } from "../../src/migrations/index.ts"

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

/**
 * The test mode stack on a fresh database with an app fixture: Kaiwa's real shape (the default) or CONTRACT 3's
 * simple one. Only warnings and errors are logged, to keep the output readable.
 */
export const testLayerFor = (fixture: AppFixture) =>
  Layer.unwrap(Effect.map(freshDatabaseUrl, (url) => Layers.test(url, fixture))).pipe(
    Layer.provideMerge(Layer.succeed(References.MinimumLogLevel, "Warn"))
  )

/** The test mode stack on a fresh database shaped like Kaiwa's production tables. */
export const testLayer = testLayerFor("kaiwa")

const names = new Map<string, string>()

/**
 * The app's id of a test user named `name`: the name itself on the simple shape (text ids), a uuid derived from
 * it on Kaiwa's (uuid ids). The ledger stores ids as text, so tests compare ledger rows with `uid(name)`.
 */
export const uid = (name: string, shape: "kaiwa" | "simple" = currentShape): string => {
  if (shape === "simple") return name
  const h = createHash("md5").update(name).digest("hex")
  const id = `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-8${h.slice(17, 20)}-${h.slice(20, 32)}`
  names.set(id, name)
  return id
}

/** The test name of an id `uid` made (the id itself when it is not one). */
export const nameOf = (id: string): string => names.get(id) ?? id

// The shape of the database the last `insertUsers` wrote to. Test files run in separate processes, and a file
// uses one shape at a time (a file that tests both builds each layer in its own describe block).
let currentShape: "kaiwa" | "simple" = "kaiwa"

/** Which app fixture the database behind the current SqlClient has. */
export const appShape = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const rows = yield* sql<{ t: string }>`
    SELECT data_type AS t FROM information_schema.columns
    WHERE table_schema = current_schema() AND table_name = 'users' AND column_name = 'id'`.pipe(Effect.orDie)
  currentShape = rows[0]?.t === "uuid" ? "kaiwa" : "simple"
  return currentShape
})

// `timestamp without time zone` columns hold UTC wall clock: write them as such, whatever the process's zone.
const utcWall = (d: Date | null) => d === null ? null : d.toISOString().replace("T", " ").replace("Z", "")

/** A user row of the app's `users` table (CONTRACT section 3), with settings and sessions. */
export interface UserFixture {
  readonly id: string
  readonly email?: string
  readonly displayName?: string | null
  readonly verified?: boolean
  /** Null: the app does not know when they signed up (Kaiwa's shape only; the simple shape requires it). */
  readonly createdAt: Date | null
  /** On Kaiwa's shape, stored in `kaiwa_jobs.user_timezones` as the web app's `set_user_timezone` would. */
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

/**
 * Inserts users (and their settings rows when an opt-in is given, their time zones and sessions) in a few
 * set-based statements, in whichever shape the database has: on Kaiwa's, ids become `uid(name)`, timestamps are
 * written as UTC wall clock, time zones go to `kaiwa_jobs.user_timezones`, and a null session length becomes 0
 * (the app's column is not null).
 */
export const insertUsers = (users: ReadonlyArray<UserFixture>) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const shape = yield* appShape
    if (users.length === 0) return
    const kaiwa = shape === "kaiwa"
    const ts = (d: Date | null) => kaiwa ? utcWall(d) : d
    for (let i = 0; i < users.length; i += 1000) {
      const chunk = users.slice(i, i + 1000)
      yield* sql`INSERT INTO users ${sql.insert(nonEmpty(chunk.map((u) => ({
        id: uid(u.id, shape),
        email: u.email ?? `${u.id}@example.com`,
        display_name: u.displayName === undefined ? `Learner ${u.id}` : u.displayName,
        email_verified: u.verified === false
          ? null
          : ts(new Date((u.createdAt ?? new Date("2020-01-01T00:00:00Z")).getTime() + 60_000)),
        created_at: ts(u.createdAt),
        ...(kaiwa ? {} : { timezone: u.timezone === undefined ? "UTC" : u.timezone })
      }))))}`
      if (kaiwa) {
        const zones = chunk.filter((u) => u.timezone !== null).map((u) => ({ user_id: uid(u.id, shape), timezone: u.timezone ?? "UTC" }))
        if (zones.length > 0) yield* sql`INSERT INTO kaiwa_jobs.user_timezones ${sql.insert(nonEmpty(zones))}`
      }
      const settings = chunk.filter((u) => u.reminders !== undefined || u.founder !== undefined || u.progress !== undefined)
      if (settings.length > 0) {
        yield* sql`INSERT INTO user_settings ${sql.insert(nonEmpty(settings.map((u) => ({
          user_id: uid(u.id, shape),
          receive_practice_reminders: u.reminders ?? true,
          receive_founder_emails: u.founder ?? true,
          receive_progress_reports: u.progress ?? true
        }))))}`
      }
      const sessions = chunk.flatMap((u) => (u.sessions ?? []).map((s, k) => ({ u, s, k })))
      if (sessions.length > 0) yield* addSessions(sessions.map(({ u, s, k }) => ({ id: `${u.id}-s${k}`, userId: u.id, ...s })))
    }
  })

/** Adds conversation sessions (`userId` is the test name, as in `insertUsers`). */
export const addSessions = (sessions: ReadonlyArray<Session & { readonly id: string; readonly userId: string }>) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const shape = yield* appShape
    const kaiwa = shape === "kaiwa"
    for (let i = 0; i < sessions.length; i += 1000) {
      yield* sql`INSERT INTO conversation_sessions ${sql.insert(nonEmpty(sessions.slice(i, i + 1000).map((s) => ({
        id: s.id,
        user_id: uid(s.userId, shape),
        language: s.language,
        start_time: kaiwa ? utcWall(s.at) : s.at,
        duration_seconds: s.durationSeconds === undefined ? 300 : kaiwa ? (s.durationSeconds ?? 0) : s.durationSeconds
      }))))}`
    }
  })

/** Every row of every `kaiwa_jobs` table, as JSON text, for before/after comparisons. */
export const snapshotLibraryTables = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const tables = ["runs", "batches", "deliveries", "suppressions", "migrations", "user_timezones"]
  const out: Record<string, string> = {}
  for (const t of tables) {
    const rows = yield* sql<{ j: string | null }>`SELECT json_agg(x ORDER BY x::text)::text AS j FROM ${sql(`kaiwa_jobs.${t}`)} x`
    out[t] = rows[0]?.j ?? "[]"
  }
  return out
})
