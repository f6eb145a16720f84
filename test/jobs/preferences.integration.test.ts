/**
 * Preferences have one home (CONTRACT 3, issue 18): on Kaiwa's shape an unsubscribe through the emailed link
 * writes the app's own `user_settings` column (creating the row, every other column left to its default), so
 * the app's profile page shows it and a re-subscribe made in the app brings the emails back at the next due
 * instant; bounces and complaints stay the library's suppressions; and when the write-back cannot be made, the
 * library records its own suppression, so nobody who unsubscribed is emailed again.
 */
import { assert, describe, layer } from "@effect/vitest"
import { Effect, Option, Ref } from "effect"
import { SqlClient } from "effect/sql"
import { TestClock } from "effect/testing"
import { Suppressions } from "../../src/ledger/Suppressions.ts"
import { runJob } from "../../src/job/Job.ts"
import { practiceReminders } from "../../src/jobs/index.ts"
import { MailerTestRef } from "../../src/mail/Mailer.ts"
import { confirm } from "../../src/mail/Unsubscribe.ts"
import { insertUsers, testLayer, testLayerFor, uid } from "../support/TestDb.ts"

const HOUR = 3_600_000
const DAY = 24 * HOUR
// Tuesday 10:00 UTC: inside the reminder window of UTC learners.
const AT = Date.parse("2026-03-10T10:00:00Z")

/** The unsubscribe token of the last email sent to `to`. */
const lastToken = (to: string) =>
  Effect.gen(function*() {
    const sent = yield* Ref.get(yield* MailerTestRef)
    const email = [...sent].reverse().find((e) => e.to === to)
    assert.isDefined(email, `an email to ${to}`)
    const url = new URL(email!.headers["List-Unsubscribe"]!.slice(1, -1))
    return url.searchParams.get("token")!
  })

const sentTo = (to: string) => Effect.map(Effect.flatMap(MailerTestRef, Ref.get), (all) => all.filter((e) => e.to === to).length)

const runAt = (at: number) => Effect.andThen(TestClock.setTime(at), runJob(practiceReminders))

describe("preferences on Kaiwa's shape", () => {
  layer(testLayer, { excludeTestServices: true })((it) => {
    it.effect("the emailed link flips the app's column; a re-subscribe in the app brings the reminders back; a bounce still suppresses", () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        yield* insertUsers([{ id: "pref-1", createdAt: new Date(AT - 30 * DAY) }])
        const id = uid("pref-1")
        const address = "pref-1@example.com"

        assert.strictEqual((yield* runAt(AT)).stats?.sent, 1)
        const claim = yield* confirm(yield* lastToken(address))
        assert.deepStrictEqual({ userId: claim.userId, list: claim.list }, { userId: id, list: practiceReminders.name })

        // The app's row was created with the opt-out, every other column to its default; no library suppression.
        const rows = yield* sql<{ r: boolean; f: boolean; p: boolean; theme: string; count: number }>`
          SELECT receive_practice_reminders AS r, receive_founder_emails AS f, receive_progress_reports AS p,
            theme::text AS theme, daily_reminder_sent_count AS count
          FROM user_settings WHERE user_id = ${id}::uuid`
        assert.deepStrictEqual([...rows], [{ r: false, f: true, p: true, theme: "system", count: 0 }])
        const suppressions = yield* sql`SELECT * FROM kaiwa_jobs.suppressions`
        assert.strictEqual(suppressions.length, 0)

        const optedOut = yield* runAt(AT + DAY)
        assert.strictEqual(optedOut.stats?.sent, 0)
        assert.strictEqual(optedOut.stats?.skipped["opted_out"], 1)

        // The learner switches reminders back on in the app's profile page (the app's own upsert).
        yield* sql`UPDATE user_settings SET receive_practice_reminders = true WHERE user_id = ${id}::uuid`
        assert.strictEqual((yield* runAt(AT + 2 * DAY)).stats?.sent, 1)
        assert.strictEqual(yield* sentTo(address), 2)

        // What only the provider knows stays the library's: a hard bounce suppresses every list.
        const db = yield* Suppressions
        yield* db.suppress({ userId: null, email: address, list: "*", reason: "hard_bounce", now: new Date(AT + 2 * DAY) })
        const bounced = yield* runAt(AT + 3 * DAY)
        assert.strictEqual(bounced.stats?.sent, 0)
        assert.strictEqual(bounced.stats?.skipped["suppressed"], 1)
      }).pipe(Effect.provide(TestClock.layer())))

    it.effect("when the app's row cannot be written, the unsubscribe is kept as the library's suppression", () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        yield* insertUsers([{ id: "pref-2", createdAt: new Date(AT - 30 * DAY) }])
        // A column the app added later, not null without a default: the library cannot create the row.
        yield* sql`ALTER TABLE user_settings ADD COLUMN locale text NOT NULL DEFAULT 'en'`
        yield* sql`ALTER TABLE user_settings ALTER COLUMN locale DROP DEFAULT`
        yield* TestClock.setTime(AT + 10 * DAY)
        yield* runJob(practiceReminders)
        assert.strictEqual(yield* sentTo("pref-2@example.com"), 1)
        yield* confirm(yield* lastToken("pref-2@example.com"))
        const settings = yield* sql`SELECT * FROM user_settings WHERE user_id = ${uid("pref-2")}::uuid`
        assert.strictEqual(settings.length, 0)
        const kept = yield* sql<{ list: string; reason: string }>`SELECT list, reason FROM kaiwa_jobs.suppressions WHERE user_id = ${uid("pref-2")}`
        assert.deepStrictEqual([...kept], [{ list: practiceReminders.name, reason: "unsubscribed" }])
        yield* TestClock.setTime(AT + 11 * DAY)
        yield* runJob(practiceReminders)
        assert.strictEqual(yield* sentTo("pref-2@example.com"), 1)
        yield* sql`ALTER TABLE user_settings DROP COLUMN locale`
      }).pipe(Effect.provide(TestClock.layer())))
  })
})

describe("preferences on the simple shape", () => {
  layer(testLayerFor("simple"), { excludeTestServices: true })((it) => {
    it.effect("the emailed link writes the app's column there too", () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        yield* insertUsers([{ id: "simple-1", createdAt: new Date(AT - 30 * DAY) }])
        assert.strictEqual((yield* runAt(AT)).stats?.sent, 1)
        yield* confirm(yield* lastToken("simple-1@example.com"))
        const rows = yield* sql<{ r: boolean }>`SELECT receive_practice_reminders AS r FROM user_settings WHERE user_id = 'simple-1'`
        assert.deepStrictEqual(rows.map((r) => r.r), [false])
        assert.isTrue(Option.isNone(Option.fromNullishOr((yield* sql`SELECT 1 FROM kaiwa_jobs.suppressions`)[0])))
      }).pipe(Effect.provide(TestClock.layer())))
  })
})
