/**
 * Issue 18 on Kaiwa's real tables (uuid ids, `timestamp` columns holding UTC, a nullable `created_at`, no
 * time-zone column, few `user_settings` rows), learner by learner:
 * - `kaiwa_jobs.set_user_timezone(user_id, timezone)`, the SQL function the web app calls, stores a zone (with the
 *   app's uuid, typed or not) that the next run uses, replaces it on a second call, and refuses an unknown zone
 *   with SQLSTATE 22023, storing nothing;
 * - a null `created_at` means "signed up long ago": due a reminder, never in the founder sequence;
 * - a learner with no `user_settings` row is opted in to everything; a row with an opt-out is respected.
 * The week-in-the-life test (test/jobs/week.integration.test.ts) checks the same learners hour by hour against
 * its oracle; this file states each rule on its own.
 */
import { assert, describe, layer } from "@effect/vitest"
import { Cause, Effect, Exit, Ref } from "effect"
import { SqlClient } from "effect/sql"
import { TestClock } from "effect/testing"
import { type Job, runJob } from "../../src/job/Job.ts"
import { founderEmails, practiceReminders } from "../../src/jobs/index.ts"
import { MailerTestRef } from "../../src/mail/Mailer.ts"
import { appShape, insertUsers, snapshotLibraryTables, testLayer, uid } from "../support/TestDb.ts"

const HOUR = 3_600_000
const DAY = 24 * HOUR
// Tuesday 2026-03-10 15:00 UTC: inside the reminder (09:00-21:00) and founder (14:00-18:00) windows in UTC,
// midnight in Tokyo (outside both).
const AT = Date.parse("2026-03-10T15:00:00Z")

/** The SQLSTATE of a failed statement (the driver's error, under @effect/sql's SqlError and its reason). */
const sqlStateOf = (e: unknown): string | undefined => {
  for (let c: unknown = e; c !== undefined && c !== null; c = (c as { cause?: unknown }).cause) {
    const code = (c as { code?: unknown }).code
    if (typeof code === "string") return code
  }
  return undefined
}

/** Calls the web app's function; the exit, so refusals can be inspected. */
const setZone = (userId: string, zone: string | null, as: "untyped" | "uuid" = "untyped") =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    Effect.exit(
      as === "uuid"
        ? sql`SELECT kaiwa_jobs.set_user_timezone(${userId}::uuid, ${zone})`
        : sql`SELECT kaiwa_jobs.set_user_timezone(${userId}, ${zone})`
    ))

const zones = Effect.flatMap(SqlClient.SqlClient, (sql) =>
  Effect.map(
    sql<{ user_id: string; timezone: string }>`SELECT user_id, timezone FROM kaiwa_jobs.user_timezones ORDER BY user_id`,
    (rows) => Object.fromEntries(rows.map((r) => [r.user_id, r.timezone]))
  ))

/** Runs a job at `at`; the addresses it sent to. */
const sendAt = <N extends string, G extends string>(job: Job<N, G>, at: number) =>
  Effect.gen(function*() {
    yield* TestClock.setTime(at)
    const ref = yield* MailerTestRef
    const before = (yield* Ref.get(ref)).length
    const report = yield* runJob(job)
    assert.strictEqual(report.outcome, "succeeded", report.error ?? undefined)
    return { stats: report.stats!, to: (yield* Ref.get(ref)).slice(before).map((e) => e.to).sort() }
  })

describe("set_user_timezone, the web app's way to give a learner's zone", () => {
  layer(testLayer, { excludeTestServices: true })((it) => {
    it.effect("stores a zone the next run uses, replaces it on a second call, and refuses an unknown zone with 22023, storing nothing", () =>
      Effect.gen(function*() {
        assert.strictEqual(yield* appShape, "kaiwa")
        const old = new Date(AT - 30 * DAY)
        // No zone given to insertUsers: these learners have no user_timezones row.
        yield* insertUsers([
          { id: "tz-tokyo", createdAt: old, timezone: null },
          { id: "tz-typed", createdAt: old, timezone: null },
          { id: "tz-none", createdAt: old, timezone: null }
        ])
        assert.deepStrictEqual(yield* zones, {})

        // The web app passes its uuid as a plain parameter (a Drizzle `sql` template) or typed as uuid.
        assert.isTrue(Exit.isSuccess(yield* setZone(uid("tz-tokyo"), "Asia/Tokyo")))
        assert.isTrue(Exit.isSuccess(yield* setZone(uid("tz-typed"), "America/Los_Angeles", "uuid")))
        assert.deepStrictEqual(yield* zones, { [uid("tz-tokyo")]: "Asia/Tokyo", [uid("tz-typed")]: "America/Los_Angeles" })

        // Unknown names, a null zone and a null id: SQLSTATE 22023, and not one row of the library's tables changed
        // (the learner's earlier zone is kept).
        const before = yield* snapshotLibraryTables
        for (const [id, zone] of [
          [uid("tz-tokyo"), "Asia/Tokio"],
          [uid("tz-none"), "Mars/Olympus"],
          [uid("tz-none"), "Europe/Paris; DROP TABLE users"],
          [uid("tz-none"), ""],
          [uid("tz-none"), null]
        ] as const) {
          const exit = yield* setZone(id, zone)
          assert.isTrue(Exit.isFailure(exit), `${zone} was accepted`)
          if (Exit.isFailure(exit)) assert.strictEqual(sqlStateOf(Cause.squash(exit.cause)), "22023", String(zone))
        }
        const nullId = yield* Effect.flatMap(SqlClient.SqlClient, (sql) =>
          Effect.exit(sql`SELECT kaiwa_jobs.set_user_timezone(NULL::text, 'Asia/Tokyo')`))
        assert.isTrue(Exit.isFailure(nullId))
        if (Exit.isFailure(nullId)) assert.strictEqual(sqlStateOf(Cause.squash(nullId.cause)), "22023")
        assert.deepStrictEqual(yield* snapshotLibraryTables, before)

        // At 15:00 UTC it is midnight in Tokyo and 08:00 in Los Angeles: only the learner with no zone
        // (DEFAULT_TIMEZONE, UTC) is due. Then each in their own morning: 09:00 in Los Angeles (16:00 UTC), 09:00
        // in Tokyo (00:00 UTC).
        assert.deepStrictEqual((yield* sendAt(practiceReminders, AT)).to, ["tz-none@example.com"])
        assert.deepStrictEqual((yield* sendAt(practiceReminders, Date.parse("2026-03-10T16:00:00Z"))).to, ["tz-typed@example.com"])
        assert.deepStrictEqual((yield* sendAt(practiceReminders, Date.parse("2026-03-11T00:00:00Z"))).to, ["tz-tokyo@example.com"])

        // A second call replaces the zone: the Tokyo learner moved to London. At 00:00 UTC on the 12th (09:00 in
        // Tokyo, when the old zone would send) only Los Angeles' evening learner is due; at 09:00 UTC, London's
        // morning, they are.
        assert.isTrue(Exit.isSuccess(yield* setZone(uid("tz-tokyo"), "Europe/London")))
        assert.strictEqual((yield* zones)[uid("tz-tokyo")], "Europe/London")
        assert.deepStrictEqual((yield* sendAt(practiceReminders, Date.parse("2026-03-12T00:00:00Z"))).to, ["tz-typed@example.com"])
        assert.deepStrictEqual((yield* sendAt(practiceReminders, Date.parse("2026-03-12T09:00:00Z"))).to, ["tz-none@example.com", "tz-tokyo@example.com"])
      }).pipe(Effect.provide(TestClock.layer())))
  })
})

describe("set_user_timezone records when the zone changed; the founder sequence reads zones old and new", () => {
  layer(testLayer, { excludeTestServices: true })((it) => {
    it.effect("the same zone again writes nothing; a recent row, an old row and no row each give the learner's zone", () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        // The row's version (xmin changes with every write) and its updated_at to the microsecond.
        const version = (name: string) =>
          Effect.map(
            sql<{ v: string }>`SELECT xmin::text || '|' || updated_at::text AS v FROM kaiwa_jobs.user_timezones WHERE user_id = ${uid(name)}`,
            (rows) => rows[0]!.v
          )
        // Founder cohort: signed up 30 hours before 2026-03-10 09:00 UTC, never practised.
        const nine = Date.parse("2026-03-10T09:00:00Z")
        const signedUp = new Date(nine - 30 * HOUR)
        yield* insertUsers(["f-recent", "f-old", "f-none"].map((id) => ({ id, createdAt: signedUp, timezone: null })))
        assert.isTrue(Exit.isSuccess(yield* setZone(uid("f-recent"), "Asia/Kolkata")))
        assert.isTrue(Exit.isSuccess(yield* setZone(uid("f-old"), "Asia/Kolkata")))

        // The web app calls the function at every sign-in: the same zone again leaves the row as it was.
        const first = yield* version("f-recent")
        assert.isTrue(Exit.isSuccess(yield* setZone(uid("f-recent"), "Asia/Kolkata")))
        assert.strictEqual(yield* version("f-recent"), first)
        // A new zone is a change: written, with its time.
        assert.isTrue(Exit.isSuccess(yield* setZone(uid("f-recent"), "Europe/Paris")))
        const changed = yield* version("f-recent")
        assert.notStrictEqual(changed.split("|")[0], first.split("|")[0])
        assert.notStrictEqual(changed.split("|")[1], first.split("|")[1])
        assert.isTrue(Exit.isSuccess(yield* setZone(uid("f-recent"), "Asia/Kolkata")))

        // f-old's row was written long before the sign-up (outside the range of recent zones the founder sequence
        // reads at once); f-none has no row (DEFAULT_TIMEZONE, UTC).
        yield* sql`UPDATE kaiwa_jobs.user_timezones SET updated_at = '2020-01-01T00:00:00Z' WHERE user_id = ${uid("f-old")}`

        // 09:00 UTC is 14:30 in Kolkata (the 14:00-18:00 window is open) and 09:00 in UTC (closed); 15:00 UTC is
        // 20:30 in Kolkata (closed) and 15:00 in UTC (open).
        assert.deepStrictEqual((yield* sendAt(founderEmails, nine)).to, ["f-old@example.com", "f-recent@example.com"])
        assert.deepStrictEqual((yield* sendAt(founderEmails, nine + 6 * HOUR)).to, ["f-none@example.com"])
      }).pipe(Effect.provide(TestClock.layer())))
  })
})

describe("learners as Kaiwa's tables hold them", () => {
  layer(testLayer, { excludeTestServices: true })((it) => {
    it.effect("a null created_at is 'signed up long ago': reminders, never the founder sequence; no settings row means opted in", () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        yield* insertUsers([
          // Never practised, sign-up unknown: were it a recent sign-up, the founder sequence would hold it.
          { id: "null-never", createdAt: null },
          // Sign-up unknown, practised two days ago.
          { id: "null-practised", createdAt: null, sessions: [{ at: new Date(AT - 2 * DAY), language: "ja" }] },
          // Sign-up unknown, opted out of reminders in the app (a settings row).
          { id: "null-opted-out", createdAt: null, reminders: false },
          // Signed up 30 hours ago, never practised: founder Day1, no reminder.
          { id: "fresh", createdAt: new Date(AT - 30 * HOUR) },
          // Opted out of the founder emails in the app, so not in the sequence: a reminder instead.
          { id: "fresh-no-founder", createdAt: new Date(AT - 30 * HOUR), founder: false }
        ])
        const stored = yield* sql<{ email: string; created_at: Date | null; settings: boolean }>`
          SELECT u.email, u.created_at, EXISTS (SELECT 1 FROM user_settings s WHERE s.user_id = u.id) AS settings
          FROM users u`
        assert.deepStrictEqual(stored.map((r) => [r.email.split("@")[0], r.created_at === null, r.settings]).sort(), [
          ["fresh", false, false],
          ["fresh-no-founder", false, true],
          ["null-never", true, false],
          ["null-opted-out", true, true],
          ["null-practised", true, false]
        ])

        const reminders = yield* sendAt(practiceReminders, AT)
        assert.deepStrictEqual(reminders.to, ["fresh-no-founder@example.com", "null-never@example.com", "null-practised@example.com"])
        assert.deepStrictEqual(reminders.stats.skipped, { opted_out: 1 })
        // The next day and the one after (each 20 h past the last email): founder Day2 and Day3 for the fresh
        // learner, never one for a learner whose sign-up is unknown.
        const founder = [yield* sendAt(founderEmails, AT)]
        for (const at of [AT + DAY, AT + 2 * DAY]) {
          assert.includeMembers((yield* sendAt(practiceReminders, at)).to, ["null-never@example.com", "null-practised@example.com"])
          founder.push(yield* sendAt(founderEmails, at))
        }
        assert.deepStrictEqual(founder.map((f) => f.to), [["fresh@example.com"], ["fresh@example.com"], ["fresh@example.com"]])
        assert.deepStrictEqual(founder.map((f) => [f.stats.Day1, f.stats.Day2, f.stats.Day3]), [[1, 0, 0], [0, 1, 0], [0, 0, 1]])

        // The ledger holds the app's uuids as text.
        const ledger = yield* sql<{ user_id: string }>`
          SELECT DISTINCT user_id FROM kaiwa_jobs.deliveries WHERE job = ${founderEmails.name} AND status = 'sent'`
        assert.deepStrictEqual(ledger.map((r) => r.user_id), [uid("fresh")])
      }).pipe(Effect.provide(TestClock.layer())))
  })
})
