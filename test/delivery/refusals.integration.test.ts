/**
 * Issue 19, item 2: a provider's per-email error suppresses an address only when it is about that recipient.
 * A bad sender (Resend's real "Invalid `from` field" message, from the fake) stops the run with exit 1, nothing
 * suppressed, every row pending; the re-run after the fix sends under a new idempotency key (the old one would
 * replay the refusal, or answer 409 for the changed payload) and delivers each email exactly once. And the circuit
 * breaker: a batch with many recipients rejected stops the run after at most one batch's worth of suppressions.
 * Real PostgreSQL, the real Resend SDK against the fake on loopback. The MAIL_FROM typo is injected past the
 * settings check (which now refuses it at start-up, test/Config.test.ts): this is the mailer's own line of defence.
 */
import { assert, describe, it } from "@effect/vitest"
import { ConfigProvider, Effect, Layer, Logger, Redacted } from "effect"
import { SqlClient } from "effect/sql"
import { JobsConfig, load } from "../../src/config/Config.ts"
import { Database, type Owners, pgLayer } from "../../src/database/Database.ts"
import { BREAKER_MIN } from "../../src/delivery/Delivery.ts"
import { runJob } from "../../src/job/Job.ts"
import { practiceReminders } from "../../src/jobs/index.ts"
import * as Layers from "../../src/job/Layers.ts"
import { Mailer } from "../../src/mail/Mailer.ts"
import * as ResendMailer from "../../src/mail/ResendMailer.ts"
import { Telemetry } from "../../src/telemetry/Telemetry.ts"
import { type FakeResendOptions, startFakeResend } from "../support/FakeResend.ts"
import { freshDatabaseUrl, insertUsers, uid } from "../support/TestDb.ts"

const DAY = 86_400_000
const AT = new Date("2026-03-10T10:00:00Z")
const ENV = {
  SEND_DEADLINE: "10s",
  LEASE_SECONDS: "2",
  APP_URL: "https://kaiwa.example",
  MAIL_FROM: "Kaiwa <hello@kaiwa.example>",
  UNSUBSCRIBE_SECRET: "refusals-test-unsubscribe-secret"
}
const TYPO = "Kaiwa hello@kaiwa.example"

const world = (options: FakeResendOptions = {}) =>
  Effect.gen(function*() {
    const fake = yield* Effect.acquireRelease(Effect.promise(() => startFakeResend(options)), (f) => Effect.promise(() => f.close()))
    const url = yield* freshDatabaseUrl
    const db = yield* Layer.build(Database.layerMigrated({ appFixture: true }).pipe(Layer.provideMerge(pgLayer(url))))
    /** One run of practice-reminders as a new process would do it, with MAIL_FROM as given (unchecked). */
    const run = (mailFrom: string) => {
      const mailer = Layer.effect(
        Mailer,
        ResendMailer.make({ apiKey: Redacted.make(fake.apiKey), rps: 50, timeout: "5 seconds", baseUrl: fake.url })
      )
      const config = Layer.effect(JobsConfig, Effect.map(load("lenient"), (c) => ({ ...c, mailFrom })))
      const stack = Layer.mergeAll(mailer, Telemetry.layerTest).pipe(
        Layer.provideMerge(config),
        Layer.provide(ConfigProvider.layer(ConfigProvider.fromEnv({ env: ENV })))
      )
      return runJob(practiceReminders).pipe(Effect.provide(stack, { local: true }), Effect.orDie)
    }
    return { fake, db, run }
  })

const inWorld = <A, E>(w: Effect.Success<ReturnType<typeof world>>, body: Effect.Effect<A, E, Database | Owners | SqlClient.SqlClient>) =>
  body.pipe(
    Effect.provide(w.db),
    Effect.provide(Logger.layer([])),
    Effect.provide(Layers.clockAt(AT))
  )

const userId = (i: number) => `u${String(i).padStart(4, "0")}`
const addressOf = (i: number) => `${userId(i)}@example.com`
const dueUsers = (n: number) =>
  insertUsers(Array.from({ length: n }, (_, i) => ({ id: userId(i), createdAt: new Date(AT.getTime() - 30 * DAY) })))

const ledger = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  return yield* sql<{ user_id: string; status: string; reason: string | null }>`
    SELECT user_id, status, reason FROM kaiwa_jobs.deliveries ORDER BY id`
})
const statusCounts = Effect.map(ledger, (rows) => {
  const counts: Record<string, number> = {}
  for (const r of rows) counts[r.status] = (counts[r.status] ?? 0) + 1
  return counts
})
const suppressions = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  return yield* sql<{ email: string; reason: string }>`SELECT email, reason FROM kaiwa_jobs.suppressions ORDER BY email`
})

describe("provider errors about the sender, not the recipients", () => {
  it.live("MAIL_FROM without angle brackets: nothing suppressed, exit 1, rows pending; the fixed re-run delivers each email exactly once under a new key", () =>
    Effect.gen(function*() {
      const w = yield* world()
      yield* inWorld(w, Effect.gen(function*() {
        yield* dueUsers(150)
        const bad = yield* w.run(TYPO)
        assert.strictEqual(bad.exitCode, 1)
        assert.strictEqual(bad.outcome, "failed")
        assert.include(bad.error ?? "", "Invalid `from` field")
        assert.include(bad.error ?? "", "Nothing was suppressed")
        assert.deepStrictEqual(yield* suppressions, [])
        assert.deepStrictEqual(yield* statusCounts, { pending: 150 })
        assert.strictEqual(w.fake.accepted.length, 0)
        // The run stopped at the first refused batch: the second was never sent.
        assert.strictEqual(w.fake.log.length, 1)
        const refusedKey = w.fake.log[0]!.idempotencyKey

        const fixed = yield* w.run(ENV.MAIL_FROM)
        assert.strictEqual(fixed.exitCode, 0, fixed.error ?? "")
        assert.strictEqual(fixed.stats?.sent, 150)
        assert.deepStrictEqual(yield* statusCounts, { sent: 150 })
        assert.deepStrictEqual(yield* suppressions, [])
        const counts = w.fake.acceptedCountByRecipient()
        assert.strictEqual(counts.size, 150)
        for (const [to, n] of counts) assert.strictEqual(n, 1, `${to} got ${n} emails`)
        // Delivered at once: no 409 for the old key with the new payload, no replayed refusal.
        assert.isFalse(w.fake.log.slice(1).some((r) => r.idempotencyKey === refusedKey), "the refused batch's key was reused")
        assert.strictEqual(w.fake.stats.idempotencyConflicts, 0)
        assert.isTrue(w.fake.log.slice(1).every((r) => r.status === 200))
      }))
    }))

  it.live("a re-run with the typo still in place is refused again and still suppresses nothing", () =>
    Effect.gen(function*() {
      const w = yield* world()
      yield* inWorld(w, Effect.gen(function*() {
        yield* dueUsers(20)
        for (let i = 0; i < 2; i++) {
          const bad = yield* w.run(TYPO)
          assert.strictEqual(bad.exitCode, 1)
          assert.include(bad.error ?? "", "Invalid `from` field")
        }
        assert.deepStrictEqual(yield* suppressions, [])
        assert.deepStrictEqual(yield* statusCounts, { pending: 20 })
        // Each run used a fresh key (the second was not a replay of the first's stored answer).
        assert.strictEqual(new Set(w.fake.log.map((r) => r.idempotencyKey)).size, 2)
      }))
    }))
})

describe("the circuit breaker", () => {
  it.live("when most recipients of the first batch are rejected, the run stops after that batch: at most one batch's worth suppressed, and it says why", () =>
    Effect.gen(function*() {
      // 250 learners, 60 of each 100 'invalid' at the provider: far beyond a few bad addresses. Batches follow the
      // ledger's order (planned by user id, the app's uuid as text), so "each 100" is counted in that order.
      const inLedgerOrder = Array.from({ length: 250 }, (_, i) => i).sort((a, b) => uid(userId(a)) < uid(userId(b)) ? -1 : 1)
      const invalid = new Set(inLedgerOrder.filter((_, position) => position % 100 < 60).map(addressOf))
      const w = yield* world({ faults: { invalidAddresses: invalid } })
      yield* inWorld(w, Effect.gen(function*() {
        yield* dueUsers(250)
        const report = yield* w.run(ENV.MAIL_FROM)
        assert.strictEqual(report.exitCode, 1)
        assert.include(report.error ?? "", "circuit breaker")
        assert.include(report.error ?? "", "60 of 100")
        const suppressed = yield* suppressions
        assert.isAtMost(suppressed.length, 100)
        assert.strictEqual(suppressed.length, 60)
        assert.strictEqual(w.fake.log.length, 1, "no batch was sent after the breaker tripped")
        assert.deepStrictEqual(yield* statusCounts, { sent: 40, failed: 60, pending: 150 })
      }))
    }))

  it.live(`a few bad addresses (fewer than ${BREAKER_MIN} in a batch) are suppressed without stopping the run`, () =>
    Effect.gen(function*() {
      const invalid = new Set([3, 150, 220].map(addressOf))
      const w = yield* world({ faults: { invalidAddresses: invalid } })
      yield* inWorld(w, Effect.gen(function*() {
        yield* dueUsers(250)
        const report = yield* w.run(ENV.MAIL_FROM)
        assert.strictEqual(report.exitCode, 0, report.error ?? "")
        assert.deepStrictEqual((yield* suppressions).map((s) => s.email), [...invalid].sort())
        assert.deepStrictEqual(yield* statusCounts, { sent: 247, failed: 3 })
      }))
    }))
})
