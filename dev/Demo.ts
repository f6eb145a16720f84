/**
 * `npm run demo`: a local embedded database (kept in .kaiwa-local/ so a second run sees the ledger) seeded with
 * about 30 demo learners across eight time zones, then every registered job at the current instant (or `--now`)
 * with the console mailer. Run twice at the same `--now`, the second run sends nothing. `--reset` starts over.
 * The weekly progress report goes out on Sunday mornings, local time: `--now 2026-03-15T05:00:00Z` (a Sunday
 * afternoon in Tokyo and a morning in Kolkata) shows all three jobs at once.
 */
import * as fs from "node:fs/promises"
import { Clock, Effect } from "effect"
import { SqlClient } from "effect/sql"
import { AppTables } from "../src/database/App.ts"
import { runJob } from "../src/job/Job.ts"
import { Jobs } from "../src/jobs/index.ts"

/** Where the demo keeps its database. */
export const DEMO_DIR = ".kaiwa-local"

/**
 * The jobs the demo learners are made for: at the right instant (a Sunday morning in Asia) each of them has
 * learners due. A job added to the registry runs in the demo too, but needs no demo learners of its own: it may
 * find nobody due (test/cli/demo-dryrun.integration.test.ts says so and passes).
 */
export const seededFor: ReadonlyArray<string> = ["practice-reminders", "founder-emails", "weekly-progress"]

const HOUR = 3_600_000
const DAY = 24 * HOUR

const zones = [
  "America/Los_Angeles",
  "America/New_York",
  "America/Sao_Paulo",
  "Europe/London",
  "Europe/Berlin",
  "Asia/Kolkata",
  "Asia/Tokyo",
  "Pacific/Auckland"
] as const

const names = [
  "Aiko Tanaka", "Ben Carter", "Chloé Martin", "Dev Patel", "Elif Yılmaz", "Fatima Zahra", "Gustavo Lima",
  "Hana Kim", "Ivan Petrov", "Jia Li", "Kofi Mensah", "Lena Müller", "Mateo García", "Nora O'Brien",
  "Olu Adeyemi", "Priya Sharma", "Quinn", "Rosa Rossi", "Sven Larsen", "Tomás Silva", "Uma Rao", "Viktor Novak",
  "Wen Zhang", "Ximena López", "Yuki Sato", "Zara Ahmed", "<b>Sneaky</b> Sam", "", "Émile Zola", "Ana 🎌 Souza"
]
const languages = ["ja", "es", "fr", "de", "ko", "it"]

/** The demo learners as of `now`: every kind of user the rules care about. */
export const demoUsers = (now: number) =>
  names.map((name, i) => {
    // 0: new and never practised (founder sequence; every third learner, so all eight zones have some);
    // 1: practised 2 days ago; 2: a week ago; 4: an hour ago (not due); 5: never practised, signed up long ago
    const kind = i % 3 === 0 ? 0 : i % 6
    const createdAt = kind === 0 ? now - (1 + (i % 3)) * DAY - (i % 5) * HOUR : now - (40 + i) * DAY
    const lastSession = kind === 1 ? now - 2 * DAY : kind === 2 ? now - (i % 4 === 0 ? 45 : 7) * DAY
      : kind === 4 ? now - HOUR : null
    // Regular learners (1 and 4) also practised earlier in the week and the week before: on their PROGRESS_DAY
    // morning they get a weekly report with real figures (kind 4 practised an hour ago, so no reminder competes).
    const earlier = kind === 1 || kind === 4 ? [3, 5, 9].map((d) => now - d * DAY - (i % 5) * HOUR) : []
    return {
      id: `demo-${String(i + 1).padStart(2, "0")}`,
      email: `${name.split(" ")[0]?.replace(/[^A-Za-z]/g, "").toLowerCase() || "anon"}.${i + 1}@example.com`,
      display_name: name === "" ? null : name,
      email_verified: i === 7 || i === 19 ? null : new Date(createdAt + 5 * 60_000),
      created_at: new Date(createdAt),
      timezone: i === 11 ? "Mars/Olympus_Mons" : zones[i % zones.length]!,
      reminders: i !== 9 && i !== 21,
      founder: i !== 12,
      progress: i !== 16,
      lastSession: lastSession === null ? null : new Date(lastSession),
      sessions: [lastSession, ...earlier].filter((t): t is number => t !== null).map((t, k) => ({
        at: new Date(t),
        language: languages[(i + (k === 3 ? 1 : 0)) % languages.length]!,
        // minutes vary by learner and session; one session without a recorded duration (counted as 0)
        durationSeconds: k === 2 && i % 2 === 0 ? null : (4 + ((i + k * 3) % 11)) * 60
      })),
      language: languages[i % languages.length]!
    }
  })

// Demo ids on Kaiwa's shape: readable uuids (demo-07 is ...-000000000007).
const demoUuid = (i: number) => `00000000-0000-4000-8000-${String(i + 1).padStart(12, "0")}`

// `timestamp without time zone` columns hold UTC wall clock.
const utcWall = (d: Date | null) => d === null ? null : d.toISOString().replace("T", " ").replace("Z", "")

/**
 * Seeds the demo learners once (a second run keeps them, and the ledger), as the web app would write them on the
 * database's shape: on Kaiwa's (the local database's), uuid ids, UTC wall-clock timestamps, settings rows only
 * for learners who changed a preference, and time zones through `kaiwa_jobs.set_user_timezone` (the learner with
 * a zone PostgreSQL does not know has none there, so DEFAULT_TIMEZONE serves them); on the simple shape
 * (a local folder from an earlier release), its own columns.
 */
export const seed = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const app = yield* AppTables
  const existing = yield* sql<{ n: number }>`SELECT count(*)::int AS n FROM users`
  if ((existing[0]?.n ?? 0) > 0) return { seeded: 0, existing: existing[0]!.n }
  const now = yield* Clock.currentTimeMillis
  const users = demoUsers(now)
  const kaiwa = app.shape.idType === "uuid"
  const ts = (d: Date | null) => kaiwa ? utcWall(d) : d
  yield* sql.withTransaction(Effect.gen(function*() {
    for (const [i, u] of users.entries()) {
      const id = kaiwa ? demoUuid(i) : u.id
      if (app.shape.timezoneColumn) {
        yield* sql`INSERT INTO users (id, email, display_name, email_verified, created_at, timezone)
                   VALUES (${id}, ${u.email}, ${u.display_name}, ${ts(u.email_verified)}, ${ts(u.created_at)}, ${u.timezone})`
      } else {
        yield* sql`INSERT INTO users (id, email, display_name, email_verified, created_at)
                   VALUES (${id}::uuid, ${u.email}, ${u.display_name}, ${ts(u.email_verified)}, ${ts(u.created_at)})`
        if (u.timezone !== "Mars/Olympus_Mons") yield* sql`SELECT kaiwa_jobs.set_user_timezone(${id}, ${u.timezone})`
      }
      if (!kaiwa || !u.reminders || !u.founder || !u.progress) {
        yield* sql`INSERT INTO user_settings (user_id, receive_practice_reminders, receive_founder_emails, receive_progress_reports)
                   VALUES (${id}, ${u.reminders}, ${u.founder}, ${u.progress})`
      }
      for (const [k, session] of u.sessions.entries()) {
        yield* sql`INSERT INTO conversation_sessions (id, user_id, language, start_time, duration_seconds)
                   VALUES (${`${u.id}-s${k + 1}`}, ${id}, ${session.language}, ${ts(session.at)},
                     ${kaiwa ? session.durationSeconds ?? 0 : session.durationSeconds})`
      }
    }
  }))
  return { seeded: users.length, existing: 0 }
})

/** Seeds when empty, then runs every registered job once, in registry order; returns the reports. */
export const demo = Effect.gen(function*() {
  const { existing, seeded } = yield* seed
  yield* Effect.logInfo(seeded > 0 ? `seeded ${seeded} demo learners in 8 time zones` : `using the ${existing} learners already in ${DEMO_DIR}`)
  const jobs = yield* Jobs
  return yield* Effect.forEach(jobs, (job) => runJob(job, { trigger: "demo" }))
})

/** Removes the demo database folder. */
export const reset = Effect.promise(() => fs.rm(DEMO_DIR, { recursive: true, force: true }))
