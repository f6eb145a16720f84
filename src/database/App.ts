/**
 * The app adapter: the only module that names the Kaiwa web app's tables and columns (`users`, `user_settings`,
 * `conversation_sessions`) and the library's own `kaiwa_jobs.user_timezones`, which stands in for the time-zone
 * column the app does not have. It learns the database's shape from the catalog when its layer is built (no
 * setting): the id type (`text` or `uuid`), whether timestamps are `timestamptz` or `timestamp` holding UTC,
 * which opt-in columns exist, whether `users.timezone` exists. Jobs read the app only through the fragments it
 * hands out, which present both shapes the same way:
 *
 * - `users`: one row per user with `user_id` (text, as the library's tables store it), `app_id` (the app's own
 *   id, for joining the app's sessions), `email`, `display_name`, `email_verified` (null when unverified),
 *   `created_raw` (the app's column, for range predicates the app's index serves; null means "signed up long
 *   ago"), `created_at` (the same as timestamptz), `timezone` (app column, else `user_timezones`, else null) and
 *   one non-null opt-in per list (`optIn(list)`; true when the app has no row or no column for it);
 * - `sessions`: `app_user_id`, `start_raw` (the app's column, for its index), `start_time` (timestamptz),
 *   `language`, `duration_seconds`;
 * - `at.created(d)` / `at.start(d)`: an instant typed like the app's column, and `rawStart(expr)` to compare a
 *   timestamptz expression with `start_raw`, so the app's indexes stay usable on both shapes.
 *
 * It also owns the write-back of preferences (docs/app-database.md): where the app has a list's opt-in column, an
 * unsubscribe is an upsert of that column in `user_settings`; otherwise the caller records a suppression.
 */
import { Context, Effect, Layer, Option, Schema } from "effect"
import { SqlClient, SqlSchema, type Statement } from "effect/sql"
import { propertyOf, toDatabaseError } from "./Database.ts"

/** The app's tables. Named here only. */
const USERS = "users"
const SETTINGS = "user_settings"
const SESSIONS = "conversation_sessions"

/**
 * The app's opt-in column for each list (a job's name). A list missing here, or whose column the database
 * lacks, is opted in for everyone and its unsubscribes are kept by the library as suppressions.
 */
export const OPT_IN_COLUMNS: Readonly<Record<string, string>> = {
  "practice-reminders": "receive_practice_reminders",
  "founder-emails": "receive_founder_emails",
  "weekly-progress": "receive_progress_reports"
}

/** How a timestamp column stores its instants. */
export type TimestampKind = "timestamptz" | "timestamp"

/** What the catalog said about the app's tables. */
export interface AppShape {
  /** Kaiwa's production shape (uuid ids, `timestamp` columns) or the simple shape (text ids, `timestamptz`). */
  readonly name: "kaiwa" | "simple" | "mixed"
  readonly idType: "text" | "uuid"
  readonly createdAt: TimestampKind
  readonly startTime: TimestampKind
  readonly timezoneColumn: boolean
  readonly displayName: boolean
  readonly settingsTable: boolean
  /** Opt-in columns present in `user_settings`. */
  readonly optInColumns: ReadonlyArray<string>
  /** Every column seen, `table.column` -> data type, for `doctor`. */
  readonly columns: Readonly<Record<string, string>>
}

/** A problem with the app's tables that stops the jobs: the table or column and what to do. */
export interface ShapeProblem {
  readonly table: string
  readonly column: string | null
  readonly message: string
}

/** The app's tables cannot be read as the jobs need (`problems` name each table or column). */
export class AppShapeError extends Schema.TaggedError<AppShapeError>()("AppShapeError", {
  message: Schema.String
}) {}

/** What became of a preference change. */
export type WriteBack =
  | { readonly _tag: "App"; readonly column: string }
  | { readonly _tag: "NoColumn" }
  | { readonly _tag: "Failed"; readonly reason: string }

/** The result of trying the write-back inside a rolled-back transaction. */
export interface WriteBackProbe {
  readonly list: string
  readonly column: string | null
  readonly works: boolean
  readonly detail: string
}

const ColumnRow = Schema.Struct({
  table_name: Schema.String,
  column_name: Schema.String,
  data_type: Schema.String,
  is_nullable: Schema.String,
  has_default: Schema.Boolean
})
type ColumnRow = typeof ColumnRow.Type

const kindOf = (type: string | undefined): TimestampKind | undefined =>
  type === "timestamp with time zone" ? "timestamptz" : type === "timestamp without time zone" ? "timestamp" : undefined

/** Reads the shape from catalog rows; `problems` lists whatever blocks the jobs. */
export const shapeOf = (rows: ReadonlyArray<ColumnRow>): { readonly shape: AppShape; readonly problems: ReadonlyArray<ShapeProblem> } => {
  const columns: Record<string, string> = {}
  for (const r of rows) columns[`${r.table_name}.${r.column_name}`] = r.data_type
  const problems: Array<ShapeProblem> = []
  const need = (table: string, column: string, accepted: ReadonlyArray<string>, what: string) => {
    const type = columns[`${table}.${column}`]
    if (type === undefined) {
      problems.push({ table, column, message: `${table}.${column} is missing: the jobs read it (${what})` })
    } else if (!accepted.includes(type)) {
      problems.push({
        table,
        column,
        message: `${table}.${column} is ${type}; kaiwa-jobs reads it as ${accepted.join(" or ")} (${what})`
      })
    }
  }
  const hasTable = (table: string) => rows.some((r) => r.table_name === table)
  for (const table of [USERS, SESSIONS]) {
    if (!hasTable(table)) problems.push({ table, column: null, message: `table ${table} is missing (is DATABASE_URL the app's database?)` })
  }
  const timestamps = ["timestamp with time zone", "timestamp without time zone"]
  if (hasTable(USERS)) {
    need(USERS, "id", ["uuid", "text", "character varying"], "the user's id")
    need(USERS, "email", ["text", "character varying", "citext"], "the address")
    need(USERS, "email_verified", timestamps, "verified when not null")
    need(USERS, "created_at", timestamps, "the sign-up instant")
  }
  if (hasTable(SESSIONS)) {
    need(SESSIONS, "user_id", [columns[`${USERS}.id`] ?? "uuid"], "the learner, as users.id")
    need(SESSIONS, "start_time", timestamps, "when the learner practised")
    need(SESSIONS, "language", ["text", "character varying"], "the language practised")
    need(SESSIONS, "duration_seconds", ["integer", "bigint", "smallint"], "minutes practised")
  }
  const optInColumns = Object.values(OPT_IN_COLUMNS).filter((c) => columns[`${SETTINGS}.${c}`] === "boolean")
  const idType = columns[`${USERS}.id`] === "uuid" ? "uuid" : "text"
  const createdAt = kindOf(columns[`${USERS}.created_at`]) ?? "timestamptz"
  const startTime = kindOf(columns[`${SESSIONS}.start_time`]) ?? "timestamptz"
  const name = idType === "uuid" && createdAt === "timestamp" && startTime === "timestamp"
    ? "kaiwa"
    : idType === "text" && createdAt === "timestamptz" && startTime === "timestamptz"
    ? "simple"
    : "mixed"
  return {
    shape: {
      name,
      idType,
      createdAt,
      startTime,
      timezoneColumn: columns[`${USERS}.timezone`] !== undefined,
      displayName: columns[`${USERS}.display_name`] !== undefined,
      settingsTable: hasTable(SETTINGS),
      optInColumns,
      columns
    },
    problems
  }
}

/** Reads the app tables' columns from the catalog (the schemas on the search path, first match wins). */
export const readCatalog = (sql: SqlClient.SqlClient) =>
  sql`
    SELECT c.table_name, c.column_name, c.data_type, c.is_nullable, (c.column_default IS NOT NULL) AS has_default
    FROM information_schema.columns c
    WHERE c.table_schema = current_schema() AND c.table_name IN (${USERS}, ${SETTINGS}, ${SESSIONS})
    ORDER BY c.table_name, c.ordinal_position`.pipe(
    Effect.mapError(toDatabaseError("reading the app's tables from the catalog failed")),
    Effect.flatMap((rows) => Schema.decodeUnknownEffect(Schema.Array(ColumnRow))(rows).pipe(Effect.orDie))
  )

/** The UTC wall clock of an instant, as a `timestamp without time zone` literal holding UTC. */
const utcWall = (d: Date) => d.toISOString().replace("T", " ").replace("Z", "")

/** Reads the app's tables, whatever their shape. */
export class AppTables extends Context.Service<AppTables, {
  readonly shape: AppShape
  /** Problems that stop the jobs (empty on a usable database); runs fail naming them. */
  readonly problems: ReadonlyArray<ShapeProblem>
  /** Fails with the problems, if any: the runner checks it before planning. */
  readonly ensureUsable: Effect.Effect<void, AppShapeError>
  /** The users, as a FROM item (see the module comment for its columns). */
  readonly users: Statement.Fragment
  /**
   * The users with their zone resolved, as a FROM item: `users`' columns plus `tz` (their zone when PostgreSQL
   * knows it, else `defaultTimezone`) and `unknown_timezone` (a zone was given that PostgreSQL does not know).
   * Made for a job that keeps few users (zones are looked up user by user). `signedUpAfter`, when the job keeps
   * only users who signed up after that instant (the founder sequence), lets the zones written since then be read
   * in one range instead; the result is the same.
   */
  readonly usersIn: (defaultTimezone: string, signedUpAfter?: Date) => Statement.Fragment
  /** The conversation sessions, as a FROM item. */
  readonly sessions: Statement.Fragment
  /**
   * A list's opt-in for the user aliased `u` (a non-null boolean): the app's column when it has one for the list,
   * else true (a list the app has no column for is kept by the library's suppressions alone).
   */
  readonly optIn: (list: string) => Statement.Fragment
  /** Instants typed like the app's columns, for range predicates its indexes serve. */
  readonly at: { readonly created: (d: Date) => Statement.Fragment; readonly start: (d: Date) => Statement.Fragment }
  /** A timestamptz expression typed like `sessions.start_raw`. */
  readonly rawStart: (expr: Statement.Fragment) => Statement.Fragment
  /** Writes a list's opt-in in the app's `user_settings` when the app has the column. */
  readonly setSubscribed: (userId: string, list: string, subscribed: boolean) => Effect.Effect<WriteBack>
  /** The learner's opt-in for each list the app has a column for (true when the app has no row for them). */
  readonly subscriptionsOf: (userId: string) => Effect.Effect<ReadonlyMap<string, boolean>>
  /** Whether each list's write-back would work, tried inside a transaction that is rolled back. */
  readonly probeWriteBack: Effect.Effect<ReadonlyArray<WriteBackProbe>>
  /** A user's id (as the library stores it) by address or id, or undefined. */
  readonly findUser: (emailOrId: string) => Effect.Effect<{ readonly userId: string; readonly email: string } | undefined>
}>()("kaiwa-jobs/AppTables") {
  /** Learns the shape of the database the SqlClient points at. */
  static readonly layer = Layer.effect(AppTables, Effect.flatMap(SqlClient.SqlClient, (sql) => make(sql)))
}

/** The adapter over one connection; exported for `doctor`, which reads the shape without a layer. */
export const make = Effect.fnUntraced(function*(sql: SqlClient.SqlClient) {
  const rows = yield* readCatalog(sql)
  const { shape, problems } = shapeOf(rows)
  const from = fromItems(sql, shape, yield* knownZonesOf(sql))
  const write = writeBack(sql, shape)
  const instant = (kind: TimestampKind) => (d: Date) =>
    kind === "timestamp" ? sql`${utcWall(d)}::timestamp` : sql`${d}::timestamptz`
  return AppTables.of({
    shape,
    usersIn: from.usersIn,
    problems,
    ensureUsable: problems.length === 0
      ? Effect.void
      : Effect.fail(new AppShapeError({ message: `the app's tables cannot be read: ${problems.map((p) => p.message).join("; ")} (run kaiwa-jobs doctor)` })),
    users: from.users,
    sessions: from.sessions,
    optIn: (list) => OPT_IN_COLUMNS[list] === undefined ? sql`true` : sql`u.${sql(optInName(list))}`,
    at: { created: instant(shape.createdAt), start: instant(shape.startTime) },
    rawStart: from.rawStart,
    setSubscribed: write.setSubscribed,
    subscriptionsOf: write.subscriptionsOf,
    probeWriteBack: write.probeWriteBack,
    findUser: findUser(sql)
  })
})

/** The column a list's opt-in is given under in `users`. */
const optInName = (list: string) => `opt_in_${list.replace(/[^a-z0-9]+/gi, "_")}`

/** The app's id typed like `users.id`, from the library's text. */
const idParamFor = (sql: SqlClient.SqlClient, shape: AppShape) => (userId: string) =>
  shape.idType === "uuid" ? sql`${userId}::uuid` : sql`${userId}`

/** How the users' zones are read: joined for all, looked up one by one, or recent ones in a range first. */
type Zones =
  | { readonly _tag: "join" }
  | { readonly _tag: "lookup" }
  | { readonly _tag: "recent"; readonly signedUpAfter: Date }

/** At most this many recently written zones are hashed; users beyond them are looked up one by one. */
const RECENT_ZONES = 50_000
/** The app's clock (its `created_at`) and the database's (`updated_at`) may differ by this much. */
const CLOCK_SKEW_MS = 24 * 3_600_000

/**
 * How a users FROM item reads zones, on this shape: the join or lookups that bring `ut` (and `rt`), the zone and app
 * id they give. The library's time zones are joined for every user (one hash join: a tick over everyone) or looked
 * up per user (an index lookup each: a job whose own rules leave few users, the founder sequence).
 */
const zoneReads = (sql: SqlClient.SqlClient, shape: AppShape) => {
  const keyOf = (alias: string) =>
    shape.idType === "uuid" ? sql`${sql(alias)}.app_uuid = u.id` : sql`${sql(alias)}.user_id = u.id::text`
  const zone = (zones: Zones) => zones._tag === "recent" ? sql`coalesce(rt.timezone, ut.timezone)` : sql`ut.timezone`
  const timezone = (zones: Zones) => shape.timezoneColumn ? sql`coalesce(u.timezone, ${zone(zones)})` : zone(zones)
  // Looked up per user from the library's table alone (Kaiwa's shape), the zone's row also gives the app id (the same
  // value), so rules on the app's id (the founder's "never practised") follow the window filter: 400 sessions lookups
  // instead of 2,400 (docs/decisions.md, Selection on Kaiwa's shape).
  const appId = (zones: Zones) =>
    zones._tag !== "join" && !shape.timezoneColumn && shape.idType === "uuid"
      ? sql`coalesce(${zones._tag === "recent" ? sql`rt.app_uuid, ` : sql.literal("")}ut.app_uuid, u.id)`
      : sql`u.id`
  const join = (zones: Zones) => {
    if (zones._tag === "join") return sql`LEFT JOIN kaiwa_jobs.user_timezones ut ON ${keyOf("ut")}`
    if (zones._tag === "lookup") {
      return sql`LEFT JOIN LATERAL (SELECT ut.timezone, ut.app_uuid FROM kaiwa_jobs.user_timezones ut WHERE ${keyOf("ut")}) ut ON true`
    }
    // Recent sign-ups: the zones written since (at most RECENT_ZONES of them, newest first) in one range of
    // user_timezones_updated_idx, hashed; a user not among them (a zone set before the sign-up, an older row, too
    // many recent rows) is looked up as before. Either way the user's one row, so the same zone. Reason: a new
    // connection pays ~16 µs per lookup against ~4 µs once its pages are touched, and the founder sequence looks
    // up thousands (docs/decisions.md, Selection on Kaiwa's shape).
    const since = new Date(zones.signedUpAfter.getTime() - CLOCK_SKEW_MS)
    return sql`LEFT JOIN (
      SELECT r.user_id, r.app_uuid, r.timezone FROM kaiwa_jobs.user_timezones r
      WHERE r.updated_at > ${since}::timestamptz ORDER BY r.updated_at DESC LIMIT ${RECENT_ZONES}) rt ON ${keyOf("rt")}
    LEFT JOIN LATERAL (
      SELECT ut.timezone, ut.app_uuid FROM kaiwa_jobs.user_timezones ut WHERE ${keyOf("ut")} AND rt.timezone IS NULL
      -- LIMIT 1 (one row per user anyway) keeps this a subquery, so the test on rt gates the lookup, per user,
      -- instead of filtering its result after it ran.
      LIMIT 1) ut ON true`
  }
  return { timezone, appId, join }
}

/**
 * The opt-in columns of a users FROM item: joined for every user (a tick over everyone), or, over few users, one
 * lookup per opt-in a statement reads, made only for the rows that reach it: a join there let PostgreSQL hash all
 * of user_settings before the window rules.
 */
const optInsOf = (sql: SqlClient.SqlClient, shape: AppShape) => (zones: Zones) =>
  Object.entries(OPT_IN_COLUMNS).map(([list, column]) =>
    !shape.optInColumns.includes(column)
      ? sql`true AS ${sql(optInName(list))}`
      : zones._tag === "join"
      ? sql`coalesce(us.${sql(column)}, true) AS ${sql(optInName(list))}`
      : sql`coalesce((SELECT us.${sql(column)} FROM ${sql(SETTINGS)} us WHERE us.user_id = u.id), true) AS ${sql(optInName(list))}`
  )

/** The users and sessions as FROM items, in the shape the module comment describes, and `rawStart`. */
const fromItems = (sql: SqlClient.SqlClient, shape: AppShape, knownZones: ReadonlyArray<string>) => {
  // A `timestamp` column holding UTC, read as an instant (and back, `rawStart`): at the fixed offset 0, the same values
  // as AT TIME ZONE 'UTC' without parsing the zone's name for each row (~5x cheaper per conversion, which the weekly
  // report makes about 20 times per session of the fortnight; docs/decisions.md, Selection on Kaiwa's shape).
  const UTC = sql.literal("INTERVAL '+00:00'")
  const utc = (expr: Statement.Fragment, kind: TimestampKind) => kind === "timestamp" ? sql`(${expr} AT TIME ZONE ${UTC})` : expr
  const zones = zoneReads(sql, shape)
  const optIns = optInsOf(sql, shape)
  const usersWith = (mode: Zones) => sql`(
    SELECT u.id::text AS user_id, ${zones.appId(mode)} AS app_id, u.email,
      ${shape.displayName ? sql`u.display_name` : sql`NULL::text`} AS display_name,
      u.email_verified, u.created_at AS created_raw, ${utc(sql`u.created_at`, shape.createdAt)} AS created_at,
      ${zones.timezone(mode)} AS timezone, ${sql.csv(optIns(mode))}
    FROM ${sql(USERS)} u
    ${shape.settingsTable && mode._tag === "join" ? sql`LEFT JOIN ${sql(SETTINGS)} us ON us.user_id = u.id` : sql.literal("")}
    ${zones.join(mode)})`
  const users = usersWith({ _tag: "join" })
  const sessions = sql`(
    SELECT s.user_id AS app_user_id, s.start_time AS start_raw, ${utc(sql`s.start_time`, shape.startTime)} AS start_time,
      s.language, s.duration_seconds
    FROM ${sql(SESSIONS)} s)`

  const usersIn = (defaultTimezone: string, signedUpAfter?: Date) => sql`(
    SELECT a.*, CASE WHEN a.timezone = ANY(${knownZones}::text[]) THEN a.timezone ELSE ${defaultTimezone} END AS tz,
      (a.timezone IS NOT NULL AND NOT a.timezone = ANY(${knownZones}::text[])) AS unknown_timezone
    FROM ${usersWith(signedUpAfter === undefined ? { _tag: "lookup" } : { _tag: "recent", signedUpAfter })} a)`
  const rawStart = (expr: Statement.Fragment) => shape.startTime === "timestamp" ? sql`(${expr} AT TIME ZONE ${UTC})` : expr
  return { users, sessions, usersIn, rawStart }
}

// The zones PostgreSQL knows, read once when the adapter is built: a job over few users (the founder sequence)
// checks them against a parameter instead of reading the zone database in every parallel worker.
const knownZonesOf = (sql: SqlClient.SqlClient) =>
  SqlSchema.findAll({
    Request: Schema.Void,
    Result: Schema.Struct({ name: Schema.String }),
    execute: () => sql`SELECT name FROM pg_timezone_names`
  })(undefined).pipe(
    Effect.map((rows) => rows.map((r) => r.name)),
    Effect.mapError(toDatabaseError("reading the time zones PostgreSQL knows failed"))
  )

/** The preference write-back: a list's opt-in in `user_settings`, where the app has its column. */
const writeBack = (sql: SqlClient.SqlClient, shape: AppShape) => {
  const col = (table: string, column: string) => shape.columns[`${table}.${column}`] !== undefined
  const idParam = idParamFor(sql, shape)

  const upsert = (userId: string, column: string, subscribed: boolean) =>
    sql`
      INSERT INTO ${sql(SETTINGS)} (user_id, ${sql(column)}) VALUES (${idParam(userId)}, ${subscribed})
      ON CONFLICT (user_id) DO UPDATE SET ${sql(column)} = EXCLUDED.${sql(column)}
      ${col(SETTINGS, "updated_at") ? sql`, updated_at = DEFAULT` : sql.literal("")}`

  const setSubscribed = (userId: string, list: string, subscribed: boolean): Effect.Effect<WriteBack> => {
    const column = OPT_IN_COLUMNS[list]
    if (column === undefined || !shape.optInColumns.includes(column)) return Effect.succeed({ _tag: "NoColumn" })
    return upsert(userId, column, subscribed).pipe(
      Effect.as<WriteBack>({ _tag: "App", column }),
      Effect.catch((e) => Effect.succeed<WriteBack>({ _tag: "Failed", reason: sqlReason(e) }))
    )
  }

  const subscriptionsOf = (userId: string): Effect.Effect<ReadonlyMap<string, boolean>> => {
    const lists = Object.entries(OPT_IN_COLUMNS).filter(([, column]) => shape.optInColumns.includes(column))
    if (lists.length === 0) return Effect.succeed(new Map())
    return sql`
      SELECT ${sql.csv(lists.map(([list, column]) => sql`coalesce(us.${sql(column)}, true) AS ${sql(optInName(list))}`))}
      FROM (SELECT 1) one LEFT JOIN ${sql(SETTINGS)} us ON us.user_id = ${idParam(userId)}`.pipe(
      Effect.flatMap(Schema.decodeUnknownEffect(Schema.Array(OptInRow))),
      Effect.map((rows) => new Map(lists.map(([list]) => [list, rows[0]?.[optInName(list)] !== false] as const))),
      Effect.orDie
    )
  }

  return { setSubscribed, subscriptionsOf, probeWriteBack: probeWriteBack(sql, shape, upsert) }
}

const OptInRow = Schema.Record(Schema.String, Schema.Boolean)

/** Whether each list's write-back works: tried on one user inside a transaction that is rolled back. */
const probeWriteBack = (
  sql: SqlClient.SqlClient,
  shape: AppShape,
  upsert: (userId: string, column: string, subscribed: boolean) => Effect.Effect<unknown, unknown>
) => {
  class Rollback extends Error {}
  const anyUser = SqlSchema.findAll({
    Request: Schema.Void,
    Result: Schema.Struct({ id: Schema.String }),
    execute: () => sql`SELECT u.id::text AS id FROM ${sql(USERS)} u LIMIT 1`
  })
  return Effect.gen(function*() {
    const someone = yield* anyUser(undefined).pipe(Effect.orDie)
    return yield* Effect.forEach(Object.entries(OPT_IN_COLUMNS), ([list, column]): Effect.Effect<WriteBackProbe> => {
      if (!shape.optInColumns.includes(column)) {
        return Effect.succeed({ list, column: null, works: false, detail: `${SETTINGS}.${column} is missing: unsubscribes are kept by kaiwa-jobs, and the app's profile page does not show them` })
      }
      if (someone.length === 0) {
        return Effect.succeed({ list, column, works: true, detail: "not tried: no user to try it on; the column exists" })
      }
      return sql.withTransaction(
        upsert(someone[0]!.id, column, false).pipe(Effect.andThen(Effect.fail(new Rollback())))
      ).pipe(
        Effect.as<WriteBackProbe>({ list, column, works: true, detail: "works" }),
        Effect.catch((e) =>
          Effect.succeed<WriteBackProbe>(
            e instanceof Rollback
              ? { list, column, works: true, detail: "works (tried and rolled back)" }
              : { list, column, works: false, detail: `${sqlReason(e)}: unsubscribes fall back to kaiwa-jobs' own suppressions` }
          )
        )
      )
    })
  })
}

/** A user's id (as the library stores it) and address, by address or id. */
const findUser = (sql: SqlClient.SqlClient) => {
  const find = SqlSchema.findOneOption({
    Request: Schema.String,
    Result: Schema.Struct({ user_id: Schema.String, email: Schema.String }),
    execute: (emailOrId) =>
      sql`
      SELECT u.id::text AS user_id, u.email FROM ${sql(USERS)} u
      WHERE u.id::text = ${emailOrId} OR lower(u.email) = lower(${emailOrId})
      ORDER BY (u.id::text = ${emailOrId}) DESC LIMIT 1`
  })
  return (emailOrId: string) =>
    find(emailOrId).pipe(
      Effect.map((r) => Option.getOrUndefined(Option.map(r, (u) => ({ userId: u.user_id, email: u.email })))),
      Effect.orDie
    )
}

/** The SQLSTATE and first line of a failed statement, never a connection string. */
const sqlReason = (e: unknown): string => {
  const cause = propertyOf(e, "cause")
  const inner = propertyOf(cause, "cause") ?? cause
  const code = propertyOf(inner, "code")
  return `${code === undefined ? "" : `SQLSTATE ${String(code)}: `}${String(propertyOf(inner, "message") ?? e).split("\n")[0]}`
    .replace(/postgres(ql)?:\/\/\S+/gi, "<database-url>").slice(0, 300)
}
