/**
 * `kaiwa-jobs doctor`: checks a live database and the settings before a deploy, and prints one checklist. It
 * reads the app's shape the way the jobs do (`App.make`), names every column the jobs need and every optional
 * one (with what is lost without it), the recommended indexes, the library's migrations, and whether an
 * unsubscribe can be written back to the app's `user_settings` (tried inside a transaction that is rolled
 * back). A check that blocks a job fails the command (exit 1), naming the table, column or variable and what
 * to do; warnings do not.
 */
import { Cause, Effect, Schema } from "effect"
import { SqlClient, SqlSchema } from "effect/sql"
import * as App from "../database/App.ts"
import { loadSettings as load } from "../jobs/index.ts"
import { describeSqlCause } from "../database/Database.ts"
import { pendingMigrations } from "../migrations/index.ts"

/** One line of the checklist. */
export interface Check {
  readonly name: string
  /** `fail` blocks a job; `warn` loses something worth knowing; `ok` is fine. */
  readonly status: "ok" | "warn" | "fail"
  readonly detail: string
}

/** The whole checklist. */
export interface Report {
  readonly ok: boolean
  /** The app's shape the jobs will see: `kaiwa`, `simple` or `mixed`; null when the database was not read. */
  readonly shape: string | null
  readonly checks: ReadonlyArray<Check>
}

const ok = (name: string, detail: string): Check => ({ name, status: "ok", detail })
const warn = (name: string, detail: string): Check => ({ name, status: "warn", detail })
const fail = (name: string, detail: string): Check => ({ name, status: "fail", detail })

/** Every setting a live run needs, validated all at once. */
export const settingsChecks: Effect.Effect<ReadonlyArray<Check>> = load("live").pipe(
  Effect.as([ok("settings", "every setting a live run needs is present and well formed")]),
  Effect.catch((e) => Effect.succeed([fail(`setting ${e.variable}`, e.message)]))
)

// Optional columns: what the jobs do without them.
const OPTIONAL: ReadonlyArray<readonly [string, string]> = [
  ["users.display_name", "emails greet learners as \"there\" instead of by first name"],
  ["users.timezone", "local time comes from kaiwa_jobs.user_timezones (the web app calls kaiwa_jobs.set_user_timezone), else DEFAULT_TIMEZONE"]
]

// The recommended indexes, by the columns they lead with (any index starting with these serves the jobs).
const INDEXES: ReadonlyArray<{ readonly table: string; readonly columns: ReadonlyArray<string>; readonly why: string; readonly create: string }> = [
  {
    table: "conversation_sessions",
    columns: ["user_id", "start_time"],
    why: "each learner's last session (reminders, founder emails)",
    create: "CREATE INDEX conversation_sessions_user_start_idx ON conversation_sessions (user_id, start_time DESC)"
  },
  {
    table: "conversation_sessions",
    columns: ["start_time"],
    why: "the day's and the week's sessions (reminders, weekly report)",
    create: "CREATE INDEX conversation_sessions_start_idx ON conversation_sessions (start_time)"
  },
  {
    table: "users",
    columns: ["created_at"],
    why: "the founder sequence's recent sign-ups",
    create: "CREATE INDEX users_created_at_idx ON users (created_at)"
  }
]

/** Every index on the app's tables, by the columns it leads with. */
const appIndexes = (sql: SqlClient.SqlClient) =>
  SqlSchema.findAll({
    Request: Schema.Void,
    Result: Schema.Struct({ table: Schema.String, columns: Schema.Array(Schema.String) }),
    execute: () =>
      sql`
      SELECT t.relname AS table, array_agg(a.attname ORDER BY k.n) AS columns
      FROM pg_index i
      JOIN pg_class t ON t.oid = i.indrelid
      JOIN pg_namespace ns ON ns.oid = t.relnamespace AND ns.nspname = current_schema()
      CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, n)
      JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.attnum
      WHERE t.relname IN ('users', 'conversation_sessions')
      GROUP BY i.indexrelid, t.relname`
  })(undefined)

/** The app's tables: shape, needed and optional columns, indexes. */
const appChecks = (sql: SqlClient.SqlClient, adapter: App.AppTables["Service"]) =>
  Effect.gen(function*() {
    const { problems, shape } = adapter
    const checks: Array<Check> = [
      problems.length === 0
        ? ok("app shape", `${shape.name === "kaiwa" ? "Kaiwa's production shape" : shape.name === "simple" ? "the simple shape" : "a mix of both shapes"}: users.id ${shape.idType}, users.created_at ${shape.createdAt}, conversation_sessions.start_time ${shape.startTime} (timestamp columns are read as UTC)`)
        : fail("app shape", "the jobs cannot read the app's tables; see below"),
      ...problems.map((p) => fail(p.column === null ? p.table : `${p.table}.${p.column}`, `${p.message}. Fix the app's schema or point DATABASE_URL at the app's database.`))
    ]
    for (const [column, lost] of OPTIONAL) {
      const type = shape.columns[column]
      checks.push(type === undefined ? warn(column, `absent: ${lost}`) : ok(column, `present (${type})`))
    }
    if (!shape.settingsTable) {
      checks.push(warn("user_settings", "absent: everyone is opted in to every list, and unsubscribes are kept by kaiwa-jobs"))
    }
    for (const [list, column] of Object.entries(App.OPT_IN_COLUMNS)) {
      checks.push(shape.optInColumns.includes(column)
        ? ok(`user_settings.${column}`, `present: the ${list} opt-in`)
        : warn(`user_settings.${column}`, `absent: everyone is opted in to ${list}; unsubscribes from it are kept by kaiwa-jobs, not shown on the app's profile page`))
    }
    const indexes = yield* appIndexes(sql)
    for (const want of INDEXES) {
      const found = indexes.some((ix) => ix.table === want.table && want.columns.every((c, n) => ix.columns[n] === c))
      checks.push(found
        ? ok(`index ${want.table} (${want.columns.join(", ")})`, `present: ${want.why}`)
        : warn(`index ${want.table} (${want.columns.join(", ")})`, `missing: ${want.why} read the whole table. Add it: ${want.create}`))
    }
    return checks
  })

/** The library's own migrations: every one applied. */
const migrationChecks = Effect.map(pendingMigrations, (state) =>
  state === "none applied"
    ? [fail("kaiwa_jobs migrations", `none applied: run kaiwa-jobs migrate (Fly's release_command does) before the jobs run`)]
    : state.pending.length === 0
    ? [ok("kaiwa_jobs migrations", `all ${state.shipped} applied`)]
    : [fail("kaiwa_jobs migrations", `not applied: ${state.pending.join(", ")}; run kaiwa-jobs migrate`)])

/** The opt-out write-back, tried in a transaction that is rolled back. */
const writeBackChecks = (adapter: App.AppTables["Service"]) =>
  Effect.map(adapter.probeWriteBack, (probes) =>
    probes.filter((p) => p.column !== null).map((p) =>
      p.works
        ? ok(`write-back ${p.list}`, `an unsubscribe sets user_settings.${p.column} = false: ${p.detail}`)
        : warn(`write-back ${p.list}`, `cannot write user_settings.${p.column} (${p.detail}); grant INSERT and UPDATE on user_settings to this role`)
    ))

/** Every check on the database the SqlClient points at (settings apart). */
export const databaseChecks = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const adapter = yield* App.make(sql)
  const checks = [
    ...(yield* appChecks(sql, adapter)),
    ...(yield* migrationChecks),
    ...(yield* writeBackChecks(adapter))
  ]
  return { shape: adapter.shape.name, checks }
}).pipe(
  Effect.catchCause((cause) => Effect.succeed(unreachable(Cause.squash(cause))))
)

/** The database part of the report when it could not be reached. */
export const unreachable = (e: unknown) => ({
  shape: null,
  checks: [fail("database", `${describeSqlCause(e)}: check DATABASE_URL and that the server accepts connections`)]
})

/** The database part of the report when it was not read. */
export const notChecked = (why: string) => ({ shape: null, checks: [fail("database", `not checked: ${why}`)] })

/** The checklist as text, one line per check. */
export const format = (report: Report): string =>
  [
    ...report.checks.map((c) => `${c.status === "ok" ? "✓" : c.status === "warn" ? "!" : "✗"} ${c.name}: ${c.detail}`),
    report.ok ? "doctor: nothing blocks the jobs" : `doctor: ${report.checks.filter((c) => c.status === "fail").length} problem(s) block the jobs`
  ].join("\n")
