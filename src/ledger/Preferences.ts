/**
 * A learner's email preferences, with one home (docs/app-database.md): where the app has a list's opt-in column, the app's
 * own `user_settings` (so its profile page shows the change and a change made there takes effect); otherwise, or
 * when the app's row cannot be written (a permission, a not-null column without a default), the library's own
 * suppression. Bounces, complaints and invalid addresses are the provider's word and are never lifted here.
 *
 * Owns `kaiwa_jobs.preference_changes`: each change made through the library (the emailed link, the one-click
 * POST, the preference center, `kaiwa-jobs unsubscribe`), for the learner's timeline (`kaiwa-jobs why`); the
 * app's table keeps only the current state.
 */
import { Clock, Context, Effect, Layer, Schema } from "effect"
import { SqlClient } from "effect/sql"
import { AppTables, OPT_IN_COLUMNS } from "../database/App.ts"
import { type DatabaseError, toDatabaseError } from "../database/Database.ts"
import { decodeRows } from "./internal/rows.ts"
import { covers, EVERY_LIST, Suppressions } from "./Suppressions.ts"

/** Who changes which list. `userId` null: an address, whoever it belongs to (library suppression only). */
export interface Change {
  readonly userId: string | null
  readonly email: string | null
  /** A job's name, or `*` for every list. */
  readonly list: string
  readonly subscribed: boolean
  /** `link`, `one-click`, `preferences`, `cli`. */
  readonly source: string
}

/** Where a preference lives: the app's `user_settings` column, or the library's suppressions. */
export const Home = Schema.Literals(["app", "library"])
export type Home = typeof Home.Type

/** A preference change made through the library, as the timeline reads it. */
export const PreferenceChange = Schema.Struct({
  at: Schema.Date,
  list: Schema.String,
  subscribed: Schema.Boolean,
  source: Schema.String,
  home: Home
})
export type PreferenceChange = typeof PreferenceChange.Type

/** One list's state for a learner, as the preference center shows it. */
export interface ListState {
  readonly list: string
  readonly subscribed: boolean
  /** Where the state lives: the app's `user_settings` column, or the library's suppressions. */
  readonly home: Home
  /** A bounce, complaint or invalid address: the provider's word, which no preference lifts. */
  readonly blocked: string | null
}

/** Reads and writes preferences. */
export class Preferences extends Context.Service<Preferences, {
  /** Applies a change in its home; returns whether anything new was recorded. */
  readonly change: (c: Change) => Effect.Effect<boolean, DatabaseError>
  /** The preference changes made through the library, newest first (for the timeline). */
  readonly changesOf: (userId: string) => Effect.Effect<ReadonlyArray<PreferenceChange>, DatabaseError>
  /** The learner's state for each list. */
  readonly stateOf: (userId: string, lists: ReadonlyArray<string>) => Effect.Effect<ReadonlyArray<ListState>, DatabaseError>
}>()("kaiwa-jobs/Preferences") {
  /** Over the Database and the app adapter of the same connection. */
  static readonly layer = Layer.effect(
    Preferences,
    Effect.gen(function*() {
      return make(yield* SqlClient.SqlClient, yield* Suppressions, yield* AppTables)
    })
  )
}

/** What the operations below work over. */
interface Deps {
  readonly sql: SqlClient.SqlClient
  readonly db: Suppressions["Service"]
  readonly app: AppTables["Service"]
}

const make = (sql: SqlClient.SqlClient, db: Suppressions["Service"], app: AppTables["Service"]): Preferences["Service"] => {
  const deps: Deps = { sql, db, app }
  return Preferences.of({ change: change(deps), stateOf: stateOf(deps), changesOf: changesOf(sql) })
}

const record = (sql: SqlClient.SqlClient, userId: string, list: string, subscribed: boolean, source: string, home: Home, now: Date) =>
  sql`INSERT INTO kaiwa_jobs.preference_changes (user_id, list, subscribed, source, written_to, created_at)
      VALUES (${userId}, ${list}, ${subscribed}, ${source}, ${home}, ${now})`.pipe(Effect.orDie)

// One list of one learner: the app's column when it has one and the write works, else the library's rows.
const one = ({ app, db, sql }: Deps) =>
  Effect.fnUntraced(function*(userId: string, list: string, c: Change, now: Date) {
    const before = (yield* app.subscriptionsOf(userId)).get(list)
    const written = yield* app.setSubscribed(userId, list, c.subscribed)
    if (written._tag === "Failed") {
      yield* Effect.logWarning(
        `could not write the change to the app's user_settings (${written.reason}); kept as kaiwa-jobs' own suppression (kaiwa-jobs doctor explains)`
      ).pipe(Effect.annotateLogs({ list }))
    }
    // The library's own 'unsubscribed' row goes whenever the learner subscribes (it may predate the app's column).
    if (c.subscribed) yield* db.unsuppress(userId, list)
    const home: Home = written._tag === "App" ? "app" : "library"
    // Something new was recorded when the app's column changed, or the library's row was added; a repeated click
    // changes nothing and is not logged as a change.
    const added = written._tag === "App"
      ? before !== c.subscribed
      : c.subscribed
      ? true
      : yield* db.suppress({ userId, email: null, list, reason: "unsubscribed", now })
    if (added) yield* record(sql, userId, list, c.subscribed, c.source, home, now)
    return added
  })

const change = (deps: Deps) => {
  const { app, db, sql } = deps
  const appLists = Object.keys(OPT_IN_COLUMNS).filter((l) => app.shape.optInColumns.includes(OPT_IN_COLUMNS[l]!))
  const oneList = one(deps)
  return Effect.fn("Preferences.change")(function*(c: Change) {
    const now = new Date(yield* Clock.currentTimeMillis)
    const userId = c.userId
    if (userId === null) {
      // An address alone: only the library can keep it (and never lifts anything by address).
      return c.subscribed ? false : yield* db.suppress({ userId: null, email: c.email, list: c.list, reason: "unsubscribed", now })
    }
    if (c.list !== EVERY_LIST) return yield* oneList(userId, c.list, c, now)
    // Every list: the app's columns, and one library row for every list (a later job's list included).
    const results = yield* Effect.forEach(appLists, (list) => oneList(userId, list, c, now))
    if (c.subscribed) {
      yield* db.unsuppress(userId, EVERY_LIST)
      return results.some(Boolean)
    }
    yield* record(sql, userId, EVERY_LIST, false, c.source, "library", now)
    return yield* db.suppress({ userId, email: null, list: EVERY_LIST, reason: "unsubscribed", now })
  })
}

const stateOf = ({ app, db }: Deps) =>
  Effect.fn("Preferences.stateOf")(function*(userId: string, lists: ReadonlyArray<string>) {
    const settings = yield* app.subscriptionsOf(userId)
    const user = yield* app.findUser(userId)
    const suppressions = yield* db.of({ userId, email: user?.email ?? null })
    return lists.map((list): ListState => {
      const blocked = suppressions.find((s) => s.reason !== "unsubscribed" && covers(s.list, list))
      const unsubscribed = suppressions.some((s) => s.reason === "unsubscribed" && covers(s.list, list))
      const appState = settings.get(list)
      return {
        list,
        subscribed: !unsubscribed && appState !== false,
        home: appState === undefined ? "library" : "app",
        blocked: blocked === undefined ? null : blocked.reason
      }
    })
  })

const changesOf = (sql: SqlClient.SqlClient) => (userId: string) =>
  sql`
    SELECT created_at AS at, list, subscribed, source, written_to AS home FROM kaiwa_jobs.preference_changes
    WHERE user_id = ${userId} ORDER BY created_at DESC, id DESC`.pipe(
    decodeRows(PreferenceChange),
    Effect.mapError(toDatabaseError("reading preference changes failed"))
  )
