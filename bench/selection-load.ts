/**
 * Loads the selection benchmark's population (see bench/selection.ts) with the recommended indexes (created after
 * the rows, which is faster). Sessions have durations (1 to 30 minutes, 1 in 13 unrecorded) and, for the weekly
 * progress report, four languages and two more weeks of practice (below).
 */
import { Effect } from "effect"
import type { SqlClient } from "effect/sql"
import { recommendedAppIndexes } from "../src/migrations/index.ts"

const zones = ["America/Los_Angeles", "America/New_York", "America/Sao_Paulo", "Europe/London", "Europe/Berlin",
  "Africa/Lagos", "Asia/Kolkata", "Asia/Kathmandu", "Asia/Shanghai", "Asia/Tokyo", "Australia/Adelaide", "Pacific/Auckland"]

/** The names of the indexes the library recommends for the app tables. */
export const recommendedIndexNames = recommendedAppIndexes.map((ddl) => /IF NOT EXISTS (\S+)/.exec(ddl)![1]!)

// 1 to 30 minutes; 1 session in 13 has no recorded duration.
const DURATION = "CASE WHEN g % 13 = 0 THEN NULL ELSE 60 + (g * 7) % 1740 END"

export const selectionLoad = (sql: SqlClient.SqlClient, AT: Date, USERS: number) =>
  Effect.gen(function*() {
    const t0 = performance.now()
    // Loading is faster without the indexes; they are created (and dropped again for the baseline) below.
    for (const name of recommendedIndexNames) yield* sql`DROP INDEX IF EXISTS ${sql(name)}`
    yield* sql.unsafe(`
      INSERT INTO users (id, email, display_name, email_verified, created_at, timezone)
      SELECT 'u' || g, 'u' || g || '@example.com', 'Learner ' || g,
        CASE WHEN g % 50 = 0 THEN NULL ELSE timestamptz '2025-01-01' END,
        $1::timestamptz - make_interval(days => 10 + g % 700) - make_interval(mins => g % 1440),
        (ARRAY[${zones.map((z) => `'${z}'`).join(",")}])[1 + g % ${zones.length}]
      FROM generate_series(1, ${USERS}) g`, [AT])
    yield* sql.unsafe(`
      INSERT INTO user_settings (user_id, receive_practice_reminders, receive_founder_emails)
      SELECT 'u' || g, g % 3 <> 0, true FROM generate_series(10, ${USERS}, 10) g`)
    // Everyone practised long ago; 38% also practised in the last 24 hours; 2% are due.
    yield* sql.unsafe(`
      INSERT INTO conversation_sessions (id, user_id, language, start_time, duration_seconds)
      SELECT 'old' || g, 'u' || g, 'ja', $1::timestamptz - make_interval(days => 3 + g % 60), ${DURATION}
      FROM generate_series(1, ${USERS}) g`, [AT])
    yield* sql.unsafe(`
      INSERT INTO conversation_sessions (id, user_id, language, start_time, duration_seconds)
      SELECT 'new' || g, 'u' || g, 'es', $1::timestamptz - make_interval(mins => 30 + g % 1200), ${DURATION}
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
          SELECT '${prefix}${k}-' || g, 'u' || g, (ARRAY['ja', 'es', 'fr', 'de'])[1 + (g + ${k}) % 4],
            $1::timestamptz + make_interval(days => (ARRAY[${days}])[1 + (g + ${k}) % ${days.split(",").length}],
              hours => g % 12, mins => ${k * 37}),
            ${DURATION}
          FROM generate_series(1, ${USERS}) g WHERE ${filter}`, [new Date(from)])
      }
    }
    // 60% of users already got today's reminder (their local date at AT, window opening 09:00).
    yield* sql.unsafe(`
      INSERT INTO kaiwa_jobs.deliveries (job, user_id, dedupe_key, email, data, status, planned_at, expires_at, sent_at)
      SELECT 'practice-reminders', u.id, ((($1::timestamptz AT TIME ZONE u.timezone) - interval '9 hours')::date)::text,
        u.email, '{}'::jsonb, 'sent', $1::timestamptz - interval '3 hours', $1::timestamptz + interval '6 hours',
        $1::timestamptz - interval '3 hours'
      FROM users u WHERE substr(u.id, 2)::int % 100 < 60`, [AT])
    // BENCH_SKIP_INDEX=<name> leaves one recommended index out, to measure what it changes.
    for (const ddl of recommendedAppIndexes) {
      if (process.env["BENCH_SKIP_INDEX"] !== undefined && ddl.includes(process.env["BENCH_SKIP_INDEX"])) continue
      yield* sql.unsafe(ddl)
    }
    // A database in steady state has been vacuumed (autovacuum): hint bits and the visibility map are set, so
    // the first measured run does not pay for setting them on a million freshly loaded rows.
    yield* sql`VACUUM ANALYZE`
    console.log(`  loaded in ${Math.round((performance.now() - t0) / 1000)} s`)
  })
