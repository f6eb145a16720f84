/**
 * Loads the selection benchmark's population (see bench/selection.ts) with the recommended indexes (created after
 * the rows, which is faster), in either shape of the app's tables, the SAME population in both:
 *
 * - `simple` (CONTRACT 3): text ids, the same as Kaiwa's (see `SIMPLE_IDS`), `timestamptz` columns, the zone in `users.timezone`, a session with no
 *   recorded duration has NULL;
 * - `kaiwa` (Kaiwa's production tables, `kaiwaAppFixture`): ids `md5('u' || g)::uuid` (deterministic, so both
 *   databases hold the same learners), `timestamp` columns holding the same instants as UTC wall clock, no zone
 *   column: every user's zone is in `kaiwa_jobs.user_timezones` (as the web app fills it through
 *   `set_user_timezone`, at sign-up), and `duration_seconds` is NOT NULL, so an unrecorded duration is 0 (the weekly report
 *   counts NULL as 0: the figures are the same). The app's extra columns keep their defaults (NULL mostly).
 *
 * Every figure is otherwise identical: the same learners, sign-ups, sessions, settings rows and ledger rows (whose
 * `user_id` is the id as text, as the library stores it). Sessions have durations (1 to 30 minutes, 1 in 13
 * unrecorded) and, for the weekly progress report, four languages and two more weeks of practice (below). A
 * cohort of recent sign-ups (0.24% of the users, g % 5000 in 2501..2512) has none of the old sessions: those who
 * never practised before AT are in the founder sequence (267 due at AT); those with a session of the week before
 * the report's (8 March) are due for a reminder instead (534 of the 13,868).
 */
import { Effect } from "effect"
import type { SqlClient } from "effect/sql"
import { type AppFixture, recommendedAppIndexes } from "../src/migrations/index.ts"

const zones = ["America/Los_Angeles", "America/New_York", "America/Sao_Paulo", "Europe/London", "Europe/Berlin",
  "Africa/Lagos", "Asia/Kolkata", "Asia/Kathmandu", "Asia/Shanghai", "Asia/Tokyo", "Australia/Adelaide", "Pacific/Auckland"]

/** The names of the indexes the library recommends for the app tables. */
export const recommendedIndexNames = recommendedAppIndexes.map((ddl) => /IF NOT EXISTS (\S+)/.exec(ddl)![1]!)

/**
 * The simple shape's ids: by default the very ids Kaiwa's shape holds, as text (`md5('u' || g)::uuid::text`), so
 * the two shapes differ in their types and tables only, not in how long each learner's id is (the ledger stores
 * ids as text in both). `BENCH_SIMPLE_IDS=short` gives the simple shape ids `'u' || g` (2 to 8 characters against
 * 36), as runs before 2026-12-07 did; docs/decisions.md (Selection on Kaiwa's shape) has both figures.
 */
export const SIMPLE_IDS: "same" | "short" = process.env["BENCH_SIMPLE_IDS"] === "short" ? "short" : "same"

/** Learner g's id in each shape, as SQL over a column `g`. */
export const userId = (shape: AppFixture, g = "g") =>
  shape === "kaiwa" ? `md5('u' || ${g})::uuid` : SIMPLE_IDS === "short" ? `('u' || ${g})` : `md5('u' || ${g})::uuid::text`

/** Learner g's time zone, as SQL over `g`. */
const zoneOf = (g = "g") => `(ARRAY[${zones.map((z) => `'${z}'`).join(",")}])[1 + ${g} % ${zones.length}]`

// The founder cohort: signed up 24 to 96 hours before AT, none of the old sessions (some practise on 8 March).
const FOUNDER = "g % 5000 BETWEEN 2501 AND 2512"

export const selectionLoad = (sql: SqlClient.SqlClient, AT: Date, USERS: number, shape: AppFixture = "simple") =>
  Effect.gen(function*() {
    const t0 = performance.now()
    const id = userId(shape)
    // An instant (a timestamptz expression) as the shape stores it: Kaiwa's columns hold UTC wall clock.
    const ts = (expr: string) => shape === "kaiwa" ? `((${expr}) AT TIME ZONE 'UTC')` : `(${expr})`
    // 1 to 30 minutes; 1 session in 13 has no recorded duration (Kaiwa's column is NOT NULL: 0).
    const duration = `CASE WHEN g % 13 = 0 THEN ${shape === "kaiwa" ? "0" : "NULL"} ELSE 60 + (g * 7) % 1740 END`
    // Loading is faster without the indexes; they are created (and dropped again for the baseline) below.
    for (const name of recommendedIndexNames) yield* sql`DROP INDEX IF EXISTS ${sql(name)}`
    const signUp = `CASE WHEN ${FOUNDER}
          THEN $1::timestamptz - interval '24 hours' - make_interval(mins => (g * 7) % (72 * 60 - 1))
          ELSE $1::timestamptz - make_interval(days => 10 + g % 700) - make_interval(mins => g % 1440) END`
    yield* sql.unsafe(`
      INSERT INTO users (id, email, display_name, email_verified, created_at${shape === "simple" ? ", timezone" : ""})
      SELECT ${id}, 'u' || g || '@example.com', 'Learner ' || g,
        CASE WHEN g % 50 = 0 THEN NULL ELSE ${ts("timestamptz '2025-01-01'")} END,
        ${ts(signUp)}
        ${shape === "simple" ? `, ${zoneOf()}` : ""}
      FROM generate_series(1, ${USERS}) g`, [AT])
    if (shape === "kaiwa") {
      // Each zone set once, at sign-up (`set_user_timezone` writes nothing when the zone is unchanged).
      yield* sql.unsafe(`
        INSERT INTO kaiwa_jobs.user_timezones (user_id, timezone, updated_at)
        SELECT ${id}::text, ${zoneOf()}, ${signUp} FROM generate_series(1, ${USERS}) g`, [AT])
    }
    yield* sql.unsafe(`
      INSERT INTO user_settings (user_id, receive_practice_reminders, receive_founder_emails)
      SELECT ${id}, g % 3 <> 0, true FROM generate_series(10, ${USERS}, 10) g`)
    // Everyone but the founder cohort practised long ago; 38% also practised in the last 24 hours; 2% are due.
    yield* sql.unsafe(`
      INSERT INTO conversation_sessions (id, user_id, language, start_time, duration_seconds)
      SELECT 'old' || g, ${id}, 'ja', ${ts("$1::timestamptz - make_interval(days => 3 + g % 60)")}, ${duration}
      FROM generate_series(1, ${USERS}) g WHERE NOT (${FOUNDER})`, [AT])
    yield* sql.unsafe(`
      INSERT INTO conversation_sessions (id, user_id, language, start_time, duration_seconds)
      SELECT 'new' || g, ${id}, 'es', ${ts("$1::timestamptz - make_interval(mins => 30 + g % 1200)")}, ${duration}
      FROM generate_series(1, ${USERS}) g WHERE g % 100 BETWEEN 60 AND 97`, [AT])
    // The weekly report's weeks (bench/selection.ts WEEKLY_AT: the report of Sunday 22 March covers 15-21 March):
    // 20% of users (g % 10 in 1..2, which leaves out the unverified users, g % 50 = 0) practised twice in the
    // report's week, and 40% (g % 10 in 1..4) twice in the week before, besides the reminder population's sessions
    // of 9-10 March (38%), so the report's trends vary. The
    // instants are well inside both local weeks in every zone used here, and none falls in the reminder's last
    // 24 hours before AT (9 March 12:00 to 10 March 12:00 UTC), so the reminder's population is unchanged.
    for (const [prefix, from, days, filter] of [
      ["wk", "2026-03-15T06:00:00Z", "0, 1, 2, 3, 4, 5", "g % 10 BETWEEN 1 AND 2"],
      ["pw", "2026-03-08T06:00:00Z", "0, 3, 4, 5", "g % 10 BETWEEN 1 AND 4"]
    ] as const) {
      for (const k of [0, 1]) {
        yield* sql.unsafe(`
          INSERT INTO conversation_sessions (id, user_id, language, start_time, duration_seconds)
          SELECT '${prefix}${k}-' || g, ${id}, (ARRAY['ja', 'es', 'fr', 'de'])[1 + (g + ${k}) % 4],
            ${ts(`$1::timestamptz + make_interval(days => (ARRAY[${days}])[1 + (g + ${k}) % ${days.split(",").length}],
              hours => g % 12, mins => ${k * 37})`)},
            ${duration}
          FROM generate_series(1, ${USERS}) g WHERE ${filter}`, [new Date(from)])
      }
    }
    // 60% of users already got today's reminder (their local date at AT, window opening 09:00); the founder
    // cohort did not (the cross-job cap would hold its founder emails back).
    yield* sql.unsafe(`
      INSERT INTO kaiwa_jobs.deliveries (job, user_id, dedupe_key, email, data, status, planned_at, expires_at, sent_at)
      SELECT 'practice-reminders', ${id}::text, ((($1::timestamptz AT TIME ZONE ${zoneOf()}) - interval '9 hours')::date)::text,
        'u' || g || '@example.com', '{}'::jsonb, 'sent', $1::timestamptz - interval '3 hours', $1::timestamptz + interval '6 hours',
        $1::timestamptz - interval '3 hours'
      FROM generate_series(1, ${USERS}) g WHERE g % 100 < 60 AND NOT (${FOUNDER})`, [AT])
    // BENCH_SKIP_INDEX=<name> leaves one recommended index out, to measure what it changes.
    for (const ddl of recommendedAppIndexes) {
      if (process.env["BENCH_SKIP_INDEX"] !== undefined && ddl.includes(process.env["BENCH_SKIP_INDEX"])) continue
      yield* sql.unsafe(ddl)
    }
    // A database in steady state has been vacuumed (autovacuum): hint bits and the visibility map are set, so
    // the first measured run does not pay for setting them on a million freshly loaded rows.
    yield* sql`VACUUM ANALYZE`
    const seconds = Math.round((performance.now() - t0) / 1000)
    console.log(`  ${shape} shape loaded in ${seconds} s`)
    return seconds
  })
