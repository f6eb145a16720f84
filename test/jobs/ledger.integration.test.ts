/**
 * CONTRACT 5 and 8: the delivery ledger. The row for (job, user, dedupe key) is written before the send (a Mailer
 * stub reads the ledger at the moment of sending); re-runs at the same instant and at every later hour never send
 * a duplicate; the cross-job cap (MIN_HOURS_BETWEEN_EMAILS = 20) holds between founder emails and reminders and
 * between two reminders; suppressed, unverified and opted-out users never get the mail they refused, and the run
 * stats count them by reason.
 */
import { assert, describe, layer } from "@effect/vitest"
import { ConfigProvider, Context, Effect, Layer, Ref, References } from "effect"
import { SqlClient } from "effect/sql"
import { TestClock } from "effect/testing"
import { JobsConfig } from "../../src/config/Config.ts"
import { Database, pgLayer } from "../../src/database/Database.ts"
import { Suppressions } from "../../src/ledger/Suppressions.ts"
import { type Job, runJob } from "../../src/job/Job.ts"
import * as Layers from "../../src/job/Layers.ts"
import { founderEmails, practiceReminders } from "../../src/jobs/index.ts"
import { type Batch, type DeliveryResult, Mailer, MailerTestRef, type OutgoingEmail } from "../../src/mail/Mailer.ts"
import { Telemetry } from "../../src/telemetry/Telemetry.ts"
import { freshDatabaseUrl, insertUsers, uid, type UserFixture } from "../support/TestDb.ts"
import { DAY, effectiveZone, HOUR, jobOf, localTime, MINUTE, runAt, type Sent, stepOf } from "./localTime.ts"

/** What the ledger held for one email at the moment the Mailer was asked to send it. */
interface SendCheck {
  readonly idempotencyKey: string
  readonly to: string
  readonly job: string
  readonly row: {
    readonly job: string
    readonly user_id: string
    readonly dedupe_key: string
    readonly email: string
    readonly status: string
    readonly batch_id: string | null
    readonly sent_at: Date | null
  } | undefined
}

class SendChecks extends Context.Service<SendChecks, Ref.Ref<ReadonlyArray<SendCheck>>>()("test/ledger/SendChecks") {}

/**
 * An in-memory Mailer that, before accepting a batch, reads `kaiwa_jobs.deliveries` for the rows of that batch
 * (through its recorded idempotency key) and records what it saw for every email.
 */
const ledgerReadingMailer = Layer.effect(
  Mailer,
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const store = yield* MailerTestRef
    const checks = yield* SendChecks
    return Mailer.of({
      send: (batch: Batch) =>
        Effect.gen(function*() {
          const rows = yield* sql<NonNullable<SendCheck["row"]>>`
            SELECT d.job, d.user_id, d.dedupe_key, d.email, d.status, d.batch_id::text AS batch_id, d.sent_at
            FROM kaiwa_jobs.deliveries d JOIN kaiwa_jobs.batches b ON b.id = d.batch_id
            WHERE b.idempotency_key = ${batch.idempotencyKey}`.pipe(Effect.orDie)
          const seen = batch.emails.map((email): SendCheck => ({
            idempotencyKey: batch.idempotencyKey,
            to: email.to,
            job: jobOf(email),
            row: rows.find((r) => r.email === email.to && r.job === jobOf(email))
          }))
          yield* Ref.update(checks, (all) => [...all, ...seen])
          yield* Ref.update(store, (all) => [...all, ...batch.emails])
          return batch.emails.map((_, i): DeliveryResult => ({ _tag: "Accepted", providerId: `ledger-${i}` }))
        })
    })
  })
).pipe(
  Layer.provideMerge(Layer.effect(MailerTestRef, Ref.make<ReadonlyArray<OutgoingEmail>>([]))),
  Layer.provideMerge(Layer.effect(SendChecks, Ref.make<ReadonlyArray<SendCheck>>([])))
)

/** Like `Layers.test`, on a fresh database, with the ledger-reading Mailer and MIN_HOURS_BETWEEN_EMAILS = 20. */
const ledgerLayer = Layer.unwrap(Effect.map(freshDatabaseUrl, (url) =>
  Layer.mergeAll(ledgerReadingMailer, Telemetry.layerTest).pipe(
    Layer.provideMerge(Database.layerMigrated({ appFixture: true })),
    Layer.provideMerge(pgLayer(url)),
    Layer.provideMerge(JobsConfig.layer),
    Layer.provide(ConfigProvider.layer(ConfigProvider.fromEnv({ env: { MIN_HOURS_BETWEEN_EMAILS: "20" } })))
  ))).pipe(Layer.provideMerge(Layer.succeed(References.MinimumLogLevel, "Warn")))

const iso = (ms: number) => new Date(ms).toISOString()

/** The dedupe key an email stands for: the founder step, or the reminder's local date at the send instant. */
const keyOf = (s: Sent, zone: string) => s.job === "founder-emails" ? stepOf(s.email)! : localTime(s.at, zone).date

const ZONES = ["UTC", "Asia/Kolkata", "America/New_York", "Europe/Berlin", "Asia/Kathmandu", "Pacific/Auckland"]

describe("the ledger row is written before the send, and nothing is sent twice", () => {
  layer(ledgerLayer, { excludeTestServices: true })((it) => {
    it.effect("every send finds its pending, batched ledger rows; re-runs at the same instant and hourly for 3 days send no duplicate", () =>
      Effect.gen(function*() {
        const T0 = Date.parse("2026-03-10T00:00:00Z")
        const users: Array<UserFixture> = []
        // 150 long-standing learners (two reminder batches at once), some of whom practise now and then.
        for (let i = 0; i < 150; i++) {
          users.push({
            id: `old-${i}`,
            timezone: ZONES[i % ZONES.length]!,
            createdAt: new Date(T0 - 40 * DAY),
            sessions: i % 4 === 0 ? [{ at: new Date(T0 + (i % 48) * HOUR + 7 * MINUTE), language: "ja" }] : []
          })
        }
        // 30 new learners, signed up over the 3 days before T0: the founder sequence, then reminders.
        for (let i = 0; i < 30; i++) {
          users.push({ id: `new-${i}`, timezone: ZONES[i % ZONES.length]!, createdAt: new Date(T0 - 3 * DAY + i * 137 * MINUTE) })
        }
        yield* insertUsers(users)
        const zoneOf = new Map(users.map((u) => [u.id, effectiveZone(u.timezone)]))

        const sent: Array<Sent> = []
        // Runs a job, then again at the same instant (a Fly restart, a second machine): the re-run finds nothing.
        const runTwice = <N extends string, G extends string>(job: Job<N, G>, at: number) =>
          Effect.gen(function*() {
            sent.push(...(yield* runAt(job, at)).sent)
            const again = yield* runAt(job, at)
            assert.deepStrictEqual(again.sent, [], `${job.name} re-run at ${iso(at)} sent again`)
            assert.strictEqual(again.stats.due, 0)
          })
        for (let h = 0; h < 72; h++) {
          yield* runTwice(practiceReminders, T0 + h * HOUR)
          yield* runTwice(founderEmails, T0 + h * HOUR)
        }
        assert.isAbove(sent.filter((s) => s.job === "practice-reminders").length, 300)
        assert.isAbove(sent.filter((s) => s.job === "founder-emails").length, 30)

        // At every send, the ledger already held the email's row: pending, in this batch, not yet sent.
        const checks = yield* Ref.get(yield* SendChecks)
        assert.strictEqual(checks.length, sent.length)
        for (const c of checks) {
          assert.isDefined(c.row, `no ledger row for ${c.job} to ${c.to} when batch ${c.idempotencyKey} was sent`)
          assert.strictEqual(c.row!.status, "pending")
          assert.isNotNull(c.row!.batch_id)
          assert.isNull(c.row!.sent_at)
        }
        // ...with the dedupe key of what was actually sent (founder step; reminder local date at the send instant).
        sent.forEach((s, i) => {
          assert.strictEqual(checks[i]!.to, s.email.to)
          assert.strictEqual(checks[i]!.row!.dedupe_key, keyOf(s, zoneOf.get(s.userId)!))
        })

        // No (job, user, dedupe key) twice, and at most one email per user per local date, across both jobs.
        const keys = sent.map((s) => `${s.job} ${s.userId} ${keyOf(s, zoneOf.get(s.userId)!)}`)
        assert.strictEqual(new Set(keys).size, keys.length)
        const perDate = sent.map((s) => `${s.userId} ${localTime(s.at, zoneOf.get(s.userId)!).date}`)
        assert.strictEqual(new Set(perDate).size, perDate.length)

        // The ledger says the same: one sent row per email, none pending (the ledger holds the app's ids).
        const sql = yield* SqlClient.SqlClient
        const ledger = yield* sql<{ k: string; status: string }>`
          SELECT job || ' ' || user_id || ' ' || dedupe_key AS k, status FROM kaiwa_jobs.deliveries`
        const ledgerKeys = sent.map((s) => `${s.job} ${uid(s.userId)} ${keyOf(s, zoneOf.get(s.userId)!)}`)
        assert.deepStrictEqual(ledger.map((r) => r.k).sort(), [...ledgerKeys].sort())
        assert.isTrue(ledger.every((r) => r.status === "sent"))
      }).pipe(Effect.provide(TestClock.layer())))
  })
})

describe("the cross-job cap", () => {
  layer(ledgerLayer, { excludeTestServices: true })((it) => {
    it.effect("a reminder waits 20 h after founder Day3, and a late reminder delays the next morning's", () =>
      Effect.gen(function*() {
        const D0 = Date.parse("2026-03-02T00:00:00Z")
        yield* insertUsers([
          // Signed up D0 08:00 UTC, never practises: Day1-3 at 14:00 on D1-D3; leaves the sequence at D4 08:00
          // (96 h), due a reminder from D4 09:00, only 19 h after Day3.
          { id: "founder-then-reminder", timezone: "UTC", createdAt: new Date(D0 + 8 * HOUR) },
          // A long-standing learner who practises at D2 19:30: the next reminder goes at D3 20:00 (late ticks
          // still send), and the one of D4 waits until 16:00, 20 h later.
          {
            id: "late-reminder",
            timezone: "UTC",
            createdAt: new Date(D0 - 30 * DAY),
            sessions: [{ at: new Date(D0 + 2 * DAY + 19 * HOUR + 30 * MINUTE), language: "fr" }]
          }
        ])
        const sent: Array<Sent> = []
        const capSkips: Array<string> = []
        for (let at = D0 + 8 * HOUR; at <= D0 + 4 * DAY + 20 * HOUR; at += HOUR) {
          const reminders = yield* runAt(practiceReminders, at)
          sent.push(...reminders.sent)
          const cap = reminders.stats.skipped["cap"] ?? 0
          if (cap > 0) capSkips.push(`${iso(at)} ${cap}`)
          const founder = yield* runAt(founderEmails, at)
          sent.push(...founder.sent)
          assert.strictEqual(founder.stats.skipped["cap"], undefined)
        }
        const of = (id: string) =>
          sent.filter((s) => s.userId === id).map((s) => `${s.job === "founder-emails" ? stepOf(s.email) : "reminder"} ${iso(s.at)}`)
        const day = (d: number, h: number) => iso(D0 + d * DAY + h * HOUR)
        assert.deepStrictEqual(of("founder-then-reminder"), [
          `day1 ${day(1, 14)}`,
          `day2 ${day(2, 14)}`,
          `day3 ${day(3, 14)}`,
          `reminder ${day(4, 10)}`
        ])
        assert.deepStrictEqual(of("late-reminder"), [
          `reminder ${day(0, 9)}`,
          `reminder ${day(1, 9)}`,
          `reminder ${day(2, 9)}`,
          `reminder ${day(3, 20)}`,
          `reminder ${day(4, 16)}`
        ])
        // Both were due at D4 09:00 and skipped for the cap; then only the late one, until 16:00.
        assert.deepStrictEqual(capSkips, [
          `${day(4, 9)} 2`,
          ...[10, 11, 12, 13, 14, 15].map((h) => `${day(4, h)} 1`)
        ])
        // And the cap itself: no two emails to one user less than 20 h apart.
        for (const id of ["founder-then-reminder", "late-reminder"]) {
          const times = sent.filter((s) => s.userId === id).map((s) => s.at)
          times.slice(1).forEach((t, i) => assert.isAtLeast(t - times[i]!, 20 * HOUR))
        }
      }).pipe(Effect.provide(TestClock.layer())))
  })
})

describe("the cap is measured from the instant the earlier email was sent", () => {
  layer(ledgerLayer, { excludeTestServices: true })((it) => {
    it.effect("a run exactly 20 h after an earlier run's instant is still inside the cap; a minute later it is not", () =>
      Effect.gen(function*() {
        // Real-speed clocks started at each instant (as `--now` runs are): the earlier email is sent a few
        // milliseconds after its run's instant, so exactly 20 h after that instant is less than 20 h after the send.
        const T = Date.parse("2026-03-16T20:30:00Z") // 20:30 UTC: inside the 09:00-21:00 reminder window
        yield* insertUsers([{ id: "cap-edge", timezone: "UTC", createdAt: new Date(T - 30 * DAY) }])
        const at = (ms: number) => runJob(practiceReminders, { asOf: new Date(ms) }).pipe(Effect.provide(Layers.clockAt(new Date(ms))))
        const first = yield* at(T)
        assert.strictEqual(first.stats?.sent, 1)
        const sql = yield* SqlClient.SqlClient
        const [row] = yield* sql<{ planned_at: Date; sent_at: Date }>`
          SELECT planned_at, sent_at FROM kaiwa_jobs.deliveries WHERE user_id = ${uid("cap-edge")}`
        assert.isAbove(row!.sent_at.getTime(), row!.planned_at.getTime(), "sent after the run's instant")

        const exactly = yield* at(T + 20 * HOUR) // 16:30 the next day: a new local date, the window open
        assert.strictEqual(exactly.stats?.sent, 0)
        assert.strictEqual(exactly.stats?.skipped["cap"], 1)
        const later = yield* at(T + 20 * HOUR + MINUTE)
        assert.strictEqual(later.stats?.sent, 1)
      }))
  })
})

describe("refusals", () => {
  layer(ledgerLayer, { excludeTestServices: true })((it) => {
    it.effect("suppressed, unverified and opted-out users never get the mail they refused, and are counted by reason", () =>
      Effect.gen(function*() {
        const T0 = Date.parse("2026-03-10T14:00:00Z") // inside both UTC windows
        const old = new Date(T0 - 30 * DAY)
        const recent = new Date(T0 - 30 * HOUR) // founder Day1 range
        yield* insertUsers([
          { id: "sup-all", createdAt: old },
          { id: "sup-reminders", createdAt: old },
          { id: "sup-founder-by-address", createdAt: recent },
          { id: "unverified-old", createdAt: old, verified: false },
          { id: "unverified-new", createdAt: recent, verified: false },
          { id: "optout-reminders", createdAt: old, reminders: false },
          { id: "optout-founder", createdAt: recent, founder: false }, // so not in the founder sequence: reminders
          { id: "optout-both", createdAt: recent, reminders: false, founder: false },
          { id: "control-old", createdAt: old },
          { id: "control-new", createdAt: recent },
          { id: "unsubscribes-later", createdAt: old }
        ])
        const db = yield* Suppressions
        yield* db.suppress({ userId: uid("sup-all"), email: null, list: "*", reason: "complaint", now: new Date(T0 - DAY) })
        yield* db.suppress({ userId: uid("sup-reminders"), email: null, list: "practice-reminders", reason: "unsubscribed", now: new Date(T0 - DAY) })
        yield* db.suppress({ userId: null, email: "Sup-Founder-By-Address@Example.com", list: "founder-emails", reason: "unsubscribed", now: new Date(T0 - DAY) })

        const reminders0 = yield* runAt(practiceReminders, T0)
        const founder0 = yield* runAt(founderEmails, T0)
        assert.deepStrictEqual(reminders0.sent.map((s) => s.userId).sort(), ["control-old", "optout-founder", "unsubscribes-later"])
        assert.deepStrictEqual(reminders0.stats.skipped, { suppressed: 2, unverified: 1, opted_out: 2 })
        assert.deepStrictEqual(founder0.sent.map((s) => s.userId), ["control-new"])
        assert.deepStrictEqual(founder0.stats.skipped, { suppressed: 1, unverified: 1, opted_out: 2 })

        // The one-click unsubscribe of a reminder, recorded as the HTTP endpoint would.
        yield* db.suppress({ userId: uid("unsubscribes-later"), email: null, list: "practice-reminders", reason: "unsubscribed", now: new Date(T0 + HOUR) })

        const sent: Array<Sent> = [...reminders0.sent, ...founder0.sent]
        let laterSuppressedSkips = 0
        for (let at = T0 + HOUR; at < T0 + 3 * DAY; at += HOUR) {
          const r = yield* runAt(practiceReminders, at)
          const f = yield* runAt(founderEmails, at)
          sent.push(...r.sent, ...f.sent)
          if (localTime(at, "UTC").hhmm === "09:00") {
            // Every morning the three suppressed users are due but for the suppression.
            assert.strictEqual(r.stats.skipped["suppressed"], 3, iso(at))
            laterSuppressedSkips++
          }
        }
        assert.strictEqual(laterSuppressedSkips, 3)
        const to = (id: string, job?: string) => sent.filter((s) => s.userId === id && (job === undefined || s.job === job))
        for (const id of ["sup-all", "unverified-old", "unverified-new", "optout-both"]) assert.deepStrictEqual(to(id), [], id)
        assert.deepStrictEqual(to("sup-reminders", "practice-reminders"), [])
        assert.deepStrictEqual(to("optout-reminders", "practice-reminders"), [])
        assert.deepStrictEqual(to("sup-founder-by-address", "founder-emails"), [])
        assert.deepStrictEqual(to("optout-founder", "founder-emails"), [])
        assert.deepStrictEqual(to("unsubscribes-later").map((s) => iso(s.at)), [iso(T0)])
        // The controls did get theirs: a reminder each day (Mar 10 to 13), and the founder steps.
        assert.strictEqual(to("control-old").length, 4)
        assert.strictEqual(to("optout-founder", "practice-reminders").length, 4)
        assert.deepStrictEqual(to("control-new", "founder-emails").map((s) => stepOf(s.email)), ["day1", "day2", "day3"])
      }).pipe(Effect.provide(TestClock.layer())))
  })
})
