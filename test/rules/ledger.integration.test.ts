/**
 * The ledger: a row per (job, user, dedupe key) written before the send; re-runs never duplicate; the cross-job
 * cap; suppressions (through the signed unsubscribe token) and the users who are never due.
 */
import { assert, describe, layer } from "@effect/vitest"
import { Effect, Layer, Redacted, Ref } from "effect"
import { SqlClient } from "effect/sql"
import { TestClock } from "effect/testing"
import { JobsConfig } from "../../src/Config.ts"
import { Database, pgLayer } from "../../src/Database.ts"
import { founderEmails, practiceReminders, runJob } from "../../src/Job.ts"
import { type Batch, type DeliveryResult, Mailer, MailerTestRef } from "../../src/Mailer.ts"
import { Telemetry } from "../../src/Telemetry.ts"
import { confirm, makeToken } from "../../src/Unsubscribe.ts"
import { freshDatabaseUrl, insertUsers, testLayer } from "../support/TestDb.ts"

const HOUR = 3_600_000
const DAY = 24 * HOUR
const T = Date.parse("2026-03-10T10:00:00Z")

type Seen = { readonly to: string; readonly status: string; readonly batched: boolean }

/** A mailer that, at the moment of sending, reads what the ledger says about the batch's recipients. */
const inspectingMailer = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const seen = yield* Ref.make<ReadonlyArray<Seen>>([])
  const mailer = Mailer.of({
    send: (batch: Batch) =>
      Effect.gen(function*() {
        for (const email of batch.emails) {
          const rows = yield* sql<{ status: string; batch_id: string | null }>`
            SELECT status, batch_id::text AS batch_id FROM kaiwa_jobs.deliveries WHERE email = ${email.to}`.pipe(Effect.orDie)
          yield* Ref.update(seen, (all) => [...all, ...rows.map((r) => ({ to: email.to, status: r.status, batched: r.batch_id !== null }))])
        }
        return batch.emails.map((): DeliveryResult => ({ _tag: "Accepted", providerId: null }))
      })
  })
  return { mailer, seen }
})

describe("ledger", () => {
  const layerWithInspector = Layer.unwrap(Effect.map(freshDatabaseUrl, (url: Redacted.Redacted<string>) =>
    Layer.mergeAll(
      Database.layerMigrated({ appFixture: true }).pipe(Layer.provideMerge(pgLayer(url))),
      Telemetry.layerTest
    ).pipe(Layer.provideMerge(JobsConfig.layer))
  ))

  layer(layerWithInspector, { excludeTestServices: true })((it) => {
    it.effect("the ledger row for (job, user, dedupe key) exists, pending and in its batch, when the email is sent", () =>
      Effect.gen(function*() {
        yield* insertUsers([
          { id: "l1", createdAt: new Date(T - 30 * DAY) },
          { id: "l2", createdAt: new Date(T - 30 * DAY) }
        ])
        yield* TestClock.setTime(T)
        const inspector = yield* inspectingMailer
        const report = yield* runJob(practiceReminders).pipe(Effect.provideService(Mailer, inspector.mailer))
        assert.strictEqual(report.exitCode, 0)
        const seen = yield* Ref.get(inspector.seen)
        assert.deepStrictEqual(seen.map((s) => s.to).sort(), ["l1@example.com", "l2@example.com"])
        for (const s of seen) {
          assert.strictEqual(s.status, "pending")
          assert.isTrue(s.batched)
        }
        const sql = yield* SqlClient.SqlClient
        const after = yield* sql<{ status: string }>`SELECT status FROM kaiwa_jobs.deliveries ORDER BY user_id`
        assert.deepStrictEqual(after.map((r) => r.status), ["sent", "sent"])
      }).pipe(Effect.provide(TestClock.layer())))
  })
})

describe("re-runs", () => {
  layer(testLayer, { excludeTestServices: true })((it) => {
    it.effect("at the same instant and every later hour for three days never send a duplicate", () =>
      Effect.gen(function*() {
        yield* insertUsers(Array.from({ length: 20 }, (_, i) => ({
          id: `rr${i}`,
          createdAt: new Date(T - (i % 2 === 0 ? 30 : 2) * DAY),
          timezone: ["UTC", "Asia/Tokyo", "America/Denver", "Asia/Kolkata"][i % 4]!
        })))
        for (let at = T; at <= T + 3 * DAY; at += HOUR) {
          yield* TestClock.setTime(at)
          yield* runJob(practiceReminders)
          yield* runJob(practiceReminders)
          yield* runJob(founderEmails)
        }
        const sql = yield* SqlClient.SqlClient
        const dup = yield* sql<{ n: number }>`
          SELECT count(*)::int AS n FROM (SELECT job, user_id, dedupe_key FROM kaiwa_jobs.deliveries
          GROUP BY 1, 2, 3 HAVING count(*) > 1) x`
        assert.strictEqual(dup[0]!.n, 0)
        const sent = yield* Ref.get(yield* MailerTestRef)
        const ledger = yield* sql<{ n: number }>`SELECT count(*)::int AS n FROM kaiwa_jobs.deliveries WHERE status = 'sent'`
        assert.strictEqual(sent.length, ledger[0]!.n)
        assert.isAbove(sent.length, 20)
        // At most one reminder per user per 20 hours, whichever job.
        const byUser = new Map<string, Array<number>>()
        const rows = yield* sql<{ user_id: string; sent_at: Date }>`SELECT user_id, sent_at FROM kaiwa_jobs.deliveries WHERE status = 'sent' ORDER BY sent_at`
        for (const r of rows) byUser.set(r.user_id, [...(byUser.get(r.user_id) ?? []), r.sent_at.getTime()])
        for (const [user, times] of byUser) {
          for (let i = 1; i < times.length; i++) assert.isAtLeast(times[i]! - times[i - 1]!, 20 * HOUR, `${user} twice within 20 h`)
        }
      }).pipe(Effect.provide(TestClock.layer())))
  })
})

describe("cross-job cap", () => {
  layer(testLayer, { excludeTestServices: true })((it) => {
    it.effect("a founder Day3 at 14:00 holds back the next morning's first reminder until 20 hours have passed", () =>
      Effect.gen(function*() {
        const d0 = Date.parse("2026-03-02T09:00:00Z")
        yield* insertUsers([{ id: "cap", createdAt: new Date(d0) }])
        const log: Array<{ at: string; job: string; sent: number; capped: number }> = []
        for (let at = d0 + 3 * DAY - 9 * HOUR; at <= d0 + 4 * DAY + 3 * HOUR; at += HOUR) {
          yield* TestClock.setTime(at)
          for (const job of [practiceReminders, founderEmails] as const) {
            const before = (yield* Ref.get(yield* MailerTestRef)).length
            const report = yield* runJob(job as never)
            const sent = (yield* Ref.get(yield* MailerTestRef)).length - before
            log.push({ at: new Date(at).toISOString(), job: job.name, sent, capped: report.stats?.skipped["cap"] ?? 0 })
          }
        }
        const sends = log.filter((l) => l.sent > 0).map((l) => `${l.job}@${l.at}`)
        // Day3 at 14:00 on day 3; eligible for reminders from 09:00 on day 4 (96 h), capped until 10:00.
        assert.deepStrictEqual(sends, ["founder-emails@2026-03-05T14:00:00.000Z", "practice-reminders@2026-03-06T10:00:00.000Z"])
        const cappedAt = log.filter((l) => l.capped > 0).map((l) => `${l.job}@${l.at}`)
        assert.deepStrictEqual(cappedAt, ["practice-reminders@2026-03-06T09:00:00.000Z"])
      }).pipe(Effect.provide(TestClock.layer())))
  })
})

describe("who is never emailed", () => {
  layer(testLayer, { excludeTestServices: true })((it) => {
    it.effect("an unsubscribe through the signed token stops that list for good; forged tokens change nothing", () =>
      Effect.gen(function*() {
        yield* insertUsers([
          { id: "keep", createdAt: new Date(T - 30 * DAY) },
          { id: "leave", createdAt: new Date(T - 30 * DAY) },
          { id: "unverified", createdAt: new Date(T - 30 * DAY), verified: false },
          { id: "optout", createdAt: new Date(T - 30 * DAY), reminders: false }
        ])
        const config = yield* JobsConfig
        const sql = yield* SqlClient.SqlClient
        const token = makeToken(config.unsubscribeSecret, { userId: "leave", list: "practice-reminders" })
        const forged = [
          token.slice(0, -1),
          token.slice(0, token.length / 2),
          makeToken(Redacted.make("another-secret-of-enough-length"), { userId: "keep", list: "practice-reminders" }),
          `${Buffer.from(JSON.stringify({ v: 1, u: "keep", l: "practice-reminders" })).toString("base64url")}.${token.split(".")[1]}`,
          "",
          "garbage"
        ]
        for (const bad of forged) {
          const r = yield* Effect.flip(confirm(bad))
          assert.strictEqual(r._tag, "InvalidUnsubscribeToken")
        }
        const none = yield* sql<{ n: number }>`SELECT count(*)::int AS n FROM kaiwa_jobs.suppressions`
        assert.strictEqual(none[0]!.n, 0)

        const first = yield* confirm(token)
        assert.deepStrictEqual(first, { userId: "leave", list: "practice-reminders", recorded: true })
        const second = yield* confirm(token)
        assert.isFalse(second.recorded)

        for (let day = 0; day < 3; day++) {
          yield* TestClock.setTime(T + day * DAY)
          const report = yield* runJob(practiceReminders)
          assert.strictEqual(report.stats?.skipped["suppressed"], 1)
          assert.strictEqual(report.stats?.skipped["unverified"], 1)
          assert.strictEqual(report.stats?.skipped["opted_out"], 1)
        }
        const to = new Set((yield* Ref.get(yield* MailerTestRef)).map((e) => e.to))
        assert.deepStrictEqual([...to], ["keep@example.com"])
      }).pipe(Effect.provide(TestClock.layer())))
  })
})
