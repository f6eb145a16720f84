import { assert, describe, layer } from "@effect/vitest"
import { Effect, Ref } from "effect"
import { TestClock } from "effect/testing"
import { SqlClient } from "effect/sql"
import { exitCodeOf, runJob } from "../../src/job/Job.ts"
import { founderEmails, practiceReminders } from "../../src/jobs/index.ts"
import { MailerTestRef } from "../../src/mail/Mailer.ts"
import { TelemetryTestRef } from "../../src/telemetry/Telemetry.ts"
import { insertUsers, testLayer } from "../support/TestDb.ts"

const HOUR = 3_600_000
const DAY = 24 * HOUR
// Tuesday 2026-03-10 10:00 UTC: inside the 09:00-21:00 reminder window for UTC users.
const T = Date.parse("2026-03-10T10:00:00Z")

describe("runner", () => {
  layer(testLayer, { excludeTestServices: true })((it) => {
    it.effect("sends due reminders to the in-memory mailer, and a second run at the same instant sends nothing", () =>
      Effect.gen(function*() {
        yield* insertUsers([
          { id: "r1", createdAt: new Date(T - 10 * DAY), sessions: [{ at: new Date(T - 3 * DAY), language: "ja" }] },
          { id: "r2", createdAt: new Date(T - 10 * DAY) },
          { id: "r3", createdAt: new Date(T - 10 * DAY), sessions: [{ at: new Date(T - HOUR), language: "es" }] }
        ])
        yield* TestClock.setTime(T)
        const first = yield* runJob(practiceReminders)
        const sent = yield* Ref.get(yield* MailerTestRef)
        assert.deepStrictEqual(sent.map((e) => e.to).sort(), ["r1@example.com", "r2@example.com"])
        assert.strictEqual(first.outcome, "succeeded")
        assert.strictEqual(first.exitCode, 0)
        assert.strictEqual(first.stats?.sent, 2)

        const second = yield* runJob(practiceReminders)
        assert.strictEqual((yield* Ref.get(yield* MailerTestRef)).length, 2)
        assert.strictEqual(second.stats?.sent, 0)
        assert.strictEqual(second.exitCode, 0)

        const sql = yield* SqlClient.SqlClient
        const runs = yield* sql<{ outcome: string; n: number }>`SELECT outcome, count(*)::int AS n FROM kaiwa_jobs.runs GROUP BY outcome`
        assert.deepStrictEqual(runs, [{ outcome: "succeeded", n: 2 }])
        const events = yield* Ref.get(yield* TelemetryTestRef)
        const completed = events.filter((e) => e.name === "cron_job_completed")
        assert.strictEqual(completed.length, 2)
        assert.strictEqual(completed[0]!.properties["job"], "practice-reminders")
        assert.isNumber(completed[0]!.properties["duration_ms"])
      }).pipe(Effect.provide(TestClock.layer())))

    it.effect("founder emails go out on day 1 in the founder window, from FOUNDER_FROM with Reply-To", () =>
      Effect.gen(function*() {
        const at = Date.parse("2026-03-10T14:30:00Z")
        yield* insertUsers([{ id: "f1", createdAt: new Date(at - DAY - HOUR) }])
        yield* TestClock.setTime(at)
        const before = (yield* Ref.get(yield* MailerTestRef)).length
        const report = yield* runJob(founderEmails)
        const sent = (yield* Ref.get(yield* MailerTestRef)).slice(before)
        assert.deepStrictEqual(sent.map((e) => e.to), ["f1@example.com"])
        assert.strictEqual(sent[0]!.replyTo, sent[0]!.from)
        assert.strictEqual(report.stats?.Day1, 1)
      }).pipe(Effect.provide(TestClock.layer())))
  })
})

describe("exit codes", () => {
  layer(testLayer, { excludeTestServices: true })((it) => {
    it.effect("map every outcome", () =>
      Effect.sync(() => {
        assert.strictEqual(exitCodeOf("succeeded"), 0)
        assert.strictEqual(exitCodeOf("incomplete"), 1)
        assert.strictEqual(exitCodeOf("failed"), 1)
        assert.strictEqual(exitCodeOf("interrupted"), 130)
      }))
  })
})
