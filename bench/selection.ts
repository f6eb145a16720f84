/**
 * Selection at scale: 1,000,000 users, about 1% due for a practice reminder, planning one tick (the job's one
 * selection statement) with the indexes this library recommends, against the same statement without them
 * (the baseline), in the same run. Target: at most 1 s with the indexes. Also prints the plan's index use.
 *
 * The population is steady state at 12:00 UTC: ~half of the users are inside their 09:00-21:00 window; of those,
 * 60% already got today's reminder (ledger rows), 38% practised in the last 24 hours, 2% are due.
 */
import { Effect } from "effect"
import { JobsConfig } from "../src/Config.ts"
import * as FounderEmails from "../src/jobs/FounderEmails.ts"
import * as PracticeReminders from "../src/jobs/PracticeReminders.ts"
import { recommendedAppIndexes } from "../src/migrations/index.ts"
import { median, sqlOn, withDatabase, writeResult } from "./support.ts"

const USERS = Number(process.env["BENCH_USERS"] ?? 1_000_000)
const AT = new Date("2026-03-10T12:00:00Z")
const zones = ["America/Los_Angeles", "America/New_York", "America/Sao_Paulo", "Europe/London", "Europe/Berlin",
  "Africa/Lagos", "Asia/Kolkata", "Asia/Kathmandu", "Asia/Shanghai", "Asia/Tokyo", "Australia/Adelaide", "Pacific/Auckland"]

export const selection = () =>
  withDatabase("selection", async (url) => {
    const t0 = performance.now()
    await sqlOn(url, (sql) => Effect.gen(function*() {
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
      yield* sql`ANALYZE`
      console.log(`  loaded in ${Math.round((performance.now() - t0) / 1000)} s`)
    }))
    const loadMs = performance.now() - t0
    const config = await Effect.runPromise(Effect.provide(Effect.map(JobsConfig, (c) => c), JobsConfig.layer))

    const measure = (label: string) =>
      sqlOn(url, (sql) => Effect.gen(function*() {
        // The baseline without indexes is quadratic; cap it instead of waiting for it.
        yield* sql`SET statement_timeout = '20s'`
        const reminders = PracticeReminders.selection(sql, AT, config)
        const founder = FounderEmails.selection(sql, AT, config)
        const times: Array<number> = []
        const founderTimes: Array<number> = []
        let due = 0
        let candidates = 0
        for (let i = 0; i < 3; i++) {
          const t = performance.now()
          const rows = yield* Effect.result(reminders)
          if (rows._tag === "Failure") return { timedOut: true as const, label }
          times.push(performance.now() - t)
          candidates = rows.success.length
          due = rows.success.filter((r) => r.skip_reason === null).length
          const f = performance.now()
          yield* founder
          founderTimes.push(performance.now() - f)
        }
        const [compiled, params] = reminders.compile()
        const plan = yield* sql.unsafe<{ "QUERY PLAN": string }>(`EXPLAIN ${compiled}`, params)
        const planText = plan.map((r) => r["QUERY PLAN"]).join("\n")
        const indexes = [...new Set([...planText.matchAll(/Index (?:Only )?Scan(?: Backward)? using (\S+)/g)].map((m) => m[1]!))]
        return {
          label,
          timedOut: false as const,
          reminderMs: Math.round(median(times)),
          founderMs: Math.round(median(founderTimes)),
          due,
          candidates,
          indexes
        }
      }))

    // The seed's design for comparison: one query for the users, then queries per user (its N+1), timed on a
    // sample and scaled to the whole population.
    const seedSample = Math.min(2000, USERS)
    const seedDesign = await sqlOn(url, (sql) => Effect.gen(function*() {
      const t = performance.now()
      const users = yield* sql<{ id: string }>`SELECT id FROM users WHERE email_verified IS NOT NULL ORDER BY id LIMIT ${seedSample}`
      for (const u of users) {
        yield* sql`SELECT start_time, language FROM conversation_sessions WHERE user_id = ${u.id} ORDER BY start_time DESC LIMIT 1`
        yield* sql`SELECT 1 FROM kaiwa_jobs.deliveries WHERE job = 'practice-reminders' AND user_id = ${u.id} LIMIT 1`
      }
      const ms = performance.now() - t
      return { sampleUsers: seedSample, sampleMs: Math.round(ms), projectedMs: Math.round((ms / seedSample) * USERS) }
    }))

    const report = (m: Awaited<ReturnType<typeof measure>>) =>
      console.log(m.timedOut
        ? `  ${m.label}: the reminder selection did not finish within 20 s`
        : `  ${m.label}: reminders ${m.reminderMs} ms (median of 3), founder ${m.founderMs} ms; ${m.due} due of ${m.candidates} candidates; indexes: ${m.indexes.join(", ") || "none"}`)
    await sqlOn(url, (sql) => Effect.gen(function*() {
      for (const ddl of recommendedAppIndexes) yield* sql.unsafe(ddl)
      yield* sql`ANALYZE`
    }))
    const indexed = await measure("with the recommended indexes")
    report(indexed)
    await sqlOn(url, (sql) => Effect.gen(function*() {
      yield* sql`DROP INDEX conversation_sessions_user_start_idx`
      yield* sql`DROP INDEX conversation_sessions_start_idx`
      yield* sql`DROP INDEX users_created_at_idx`
      yield* sql`ANALYZE`
    }))
    const baseline = await measure("without them (baseline)")
    report(baseline)
    console.log(`  the seed's per-user queries: ${seedDesign.sampleMs} ms for ${seedDesign.sampleUsers} users, about ${Math.round(seedDesign.projectedMs / 1000)} s for all ${USERS}`)
    const result = { users: USERS, at: AT.toISOString(), loadSeconds: Math.round(loadMs / 1000), indexed, baseline, seedDesign, targetMs: 1000 }
    await writeResult("selection", result)
    return result
  })

if (import.meta.url === `file://${process.argv[1]}`) {
  console.log(`selection: ${USERS} users`)
  await selection()
}
