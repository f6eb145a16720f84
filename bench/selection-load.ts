/** Loads the selection benchmark's population (see bench/selection.ts) with the recommended indexes (created after the rows, which is faster). */
import { Effect } from "effect"
import type { SqlClient } from "effect/sql"
import { recommendedAppIndexes } from "../src/migrations/index.ts"

const zones = ["America/Los_Angeles", "America/New_York", "America/Sao_Paulo", "Europe/London", "Europe/Berlin",
  "Africa/Lagos", "Asia/Kolkata", "Asia/Kathmandu", "Asia/Shanghai", "Asia/Tokyo", "Australia/Adelaide", "Pacific/Auckland"]

export const selectionLoad = (sql: SqlClient.SqlClient, AT: Date, USERS: number) =>
  Effect.gen(function*() {
    const t0 = performance.now()
    // Loading is faster without the indexes; they are created (and dropped again for the baseline) below.
    yield* sql`DROP INDEX IF EXISTS conversation_sessions_user_start_idx`
    yield* sql`DROP INDEX IF EXISTS users_created_at_idx`
    yield* sql`DROP INDEX IF EXISTS conversation_sessions_start_idx`
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
      INSERT INTO conversation_sessions (id, user_id, language, start_time)
      SELECT 'old' || g, 'u' || g, 'ja', $1::timestamptz - make_interval(days => 3 + g % 60)
      FROM generate_series(1, ${USERS}) g`, [AT])
    yield* sql.unsafe(`
      INSERT INTO conversation_sessions (id, user_id, language, start_time)
      SELECT 'new' || g, 'u' || g, 'es', $1::timestamptz - make_interval(mins => 30 + g % 1200)
      FROM generate_series(1, ${USERS}) g WHERE g % 100 BETWEEN 60 AND 97`, [AT])
    // 60% of users already got today's reminder (their local date at AT, window opening 09:00).
    yield* sql.unsafe(`
      INSERT INTO kaiwa_jobs.deliveries (job, user_id, dedupe_key, email, data, status, planned_at, expires_at, sent_at)
      SELECT 'practice-reminders', u.id, ((($1::timestamptz AT TIME ZONE u.timezone) - interval '9 hours')::date)::text,
        u.email, '{}'::jsonb, 'sent', $1::timestamptz - interval '3 hours', $1::timestamptz + interval '6 hours',
        $1::timestamptz - interval '3 hours'
      FROM users u WHERE substr(u.id, 2)::int % 100 < 60`, [AT])
    for (const ddl of recommendedAppIndexes) yield* sql.unsafe(ddl)
    // A database in steady state has been vacuumed (autovacuum): hint bits and the visibility map are set, so
    // the first measured run does not pay for setting them on a million freshly loaded rows.
    yield* sql`VACUUM ANALYZE`
    console.log(`  loaded in ${Math.round((performance.now() - t0) / 1000)} s`)
  })
