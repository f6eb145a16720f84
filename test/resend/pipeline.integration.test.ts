/**
 * The whole pipeline (runner, ledger, batches, the real Resend SDK) against the fake Resend, with its faults:
 * every due learner ends with exactly one accepted email, the ledger agrees with the provider, and the run's
 * outcome and exit code say what happened (CONTRACT 8).
 */
import { assert, describe, layer } from "@effect/vitest"
import { ConfigProvider, Effect, Layer } from "effect"
import { SqlClient } from "effect/sql"
import { JobsConfig } from "../../src/Config.ts"
import { Database, pgLayer } from "../../src/Database.ts"
import { practiceReminders, runJob } from "../../src/Job.ts"
import * as Layers from "../../src/Layers.ts"
import { Telemetry } from "../../src/Telemetry.ts"
import { type FakeResend, startFakeResend } from "../support/FakeResend.ts"
import { freshDatabaseUrl, insertUsers } from "../support/TestDb.ts"

const DAY = 86_400_000
const AT = new Date("2026-03-10T10:00:00Z")

/** A fresh database, a fresh fake Resend, and the live stack pointed at it (as of AT, real speed). */
const stack = (faults: Partial<FakeResend["faults"]> = {}, env: Record<string, string> = {}) => {
  let fake: FakeResend | undefined
  const layer = Layer.unwrap(Effect.gen(function*() {
    const url = yield* freshDatabaseUrl
    fake = yield* Effect.acquireRelease(
      Effect.promise(() => startFakeResend({ faults })),
      (f) => Effect.promise(() => f.close())
    )
    const provider = ConfigProvider.fromEnv({
      env: {
        RESEND_API_KEY: fake.apiKey,
        RESEND_BASE_URL: fake.url,
        RESEND_RPS: "50",
        RESEND_TIMEOUT: "5s",
        SEND_DEADLINE: "20s",
        LEASE_SECONDS: "2",
        ...env
      }
    })
    return Layer.mergeAll(
      Database.layerMigrated({ appFixture: true }).pipe(Layer.provideMerge(pgLayer(url))),
      Layers.resendFromConfig,
      Telemetry.layerTest,
      Layers.clockAt(AT)
    ).pipe(Layer.provideMerge(JobsConfig.layer), Layer.provide(ConfigProvider.layer(provider)))
  }))
  return { layer, fake: () => fake! }
}

const due = (n: number, prefix = "p") =>
  insertUsers(Array.from({ length: n }, (_, i) => ({ id: `${prefix}${String(i).padStart(4, "0")}`, createdAt: new Date(AT.getTime() - 30 * DAY) })))

/** Asserts: one accepted email per due learner, and every sent ledger row carries an id the provider gave. */
const assertExactlyOnce = (fake: FakeResend, n: number) =>
  Effect.gen(function*() {
    const counts = fake.acceptedCountByRecipient()
    assert.strictEqual(counts.size, n)
    assert.isTrue([...counts.values()].every((c) => c === 1), "an email was accepted twice")
    const sql = yield* SqlClient.SqlClient
    const rows = yield* sql<{ email: string; status: string; provider_id: string | null }>`
      SELECT email, status, provider_id FROM kaiwa_jobs.deliveries`
    assert.strictEqual(rows.length, n)
    const ids = new Map(fake.accepted.map((a) => [a.to[0]!, a.id]))
    for (const r of rows) {
      assert.strictEqual(r.status, "sent", `${r.email} is ${r.status}`)
      assert.strictEqual(r.provider_id, ids.get(r.email))
    }
  })

describe("live delivery against the fake Resend", () => {
  const fivexx = stack({ fail5xxRate: 0.2 })
  layer(fivexx.layer, { excludeTestServices: true })((it) => {
    it.effect("20% 5xx: 600 learners, each accepted exactly once, ledger all sent, exit 0", () =>
      Effect.gen(function*() {
        yield* due(600)
        const report = yield* runJob(practiceReminders)
        assert.strictEqual(report.exitCode, 0, report.error ?? "")
        assert.isAbove(fivexx.fake().stats.server5xx, 0)
        yield* assertExactlyOnce(fivexx.fake(), 600)
      }))
  })

  const storm = stack({ storm429: 4, storm429RetryAfterSeconds: 1 })
  layer(storm.layer, { excludeTestServices: true })((it) => {
    it.effect("a 429 storm is waited out: nothing lost, nothing doubled, no 429 recorded as a failure", () =>
      Effect.gen(function*() {
        yield* due(150)
        const report = yield* runJob(practiceReminders)
        assert.strictEqual(report.exitCode, 0)
        assert.strictEqual(storm.fake().stats.storm429, 4)
        assert.strictEqual(report.stats?.failed, 0)
        yield* assertExactlyOnce(storm.fake(), 150)
      }))
  })

  const dropped = stack({ dropNextAfterAccept: true })
  layer(dropped.layer, { excludeTestServices: true })((it) => {
    it.effect("a connection dropped after the provider accepted a batch: the resent batch is not delivered twice", () =>
      Effect.gen(function*() {
        yield* due(120)
        const report = yield* runJob(practiceReminders)
        assert.strictEqual(report.exitCode, 0)
        assert.strictEqual(dropped.fake().stats.dropped, 1)
        assert.isAtLeast(dropped.fake().stats.idempotentReplays, 1)
        yield* assertExactlyOnce(dropped.fake(), 120)
      }))
  })

  const invalid = stack({ invalidAddresses: new Set(["p0042@example.com"]) })
  layer(invalid.layer, { excludeTestServices: true })((it) => {
    it.effect("one invalid address among 100: 99 sent, that one failed and suppressed, the run exits 0", () =>
      Effect.gen(function*() {
        yield* due(100)
        const report = yield* runJob(practiceReminders)
        assert.strictEqual(report.exitCode, 0)
        assert.strictEqual((report.stats as { sent: number }).sent, 99)
        assert.strictEqual(report.stats?.failed, 1)
        const sql = yield* SqlClient.SqlClient
        const failed = yield* sql<{ user_id: string; reason: string }>`SELECT user_id, reason FROM kaiwa_jobs.deliveries WHERE status = 'failed'`
        assert.deepStrictEqual(failed.map((f) => f.user_id), ["p0042"])
        const suppressed = yield* sql<{ user_id: string; reason: string; list: string }>`SELECT user_id, reason, list FROM kaiwa_jobs.suppressions`
        assert.deepStrictEqual(suppressed, [{ user_id: "p0042", reason: "invalid_address", list: "*" }])
        assert.strictEqual(invalid.fake().accepted.length, 99)
      }))
  })

  const badKey = stack({}, { RESEND_API_KEY: "re_wrong_key_SECRET_123" })
  layer(badKey.layer, { excludeTestServices: true })((it) => {
    it.effect("a bad API key stops the run at once: exit 1, nothing marked sent, the key in no message", () =>
      Effect.gen(function*() {
        yield* due(30)
        const report = yield* runJob(practiceReminders)
        assert.strictEqual(report.outcome, "failed")
        assert.strictEqual(report.exitCode, 1)
        assert.notInclude(report.error ?? "", "re_wrong_key_SECRET_123")
        assert.include(report.error ?? "", "auth")
        assert.strictEqual(badKey.fake().accepted.length, 0)
        assert.strictEqual(badKey.fake().requests, 1)
        const sql = yield* SqlClient.SqlClient
        const rows = yield* sql<{ status: string; n: number }>`SELECT status, count(*)::int AS n FROM kaiwa_jobs.deliveries GROUP BY status`
        assert.deepStrictEqual(rows, [{ status: "pending", n: 30 }])
        const runs = yield* sql<{ error: string }>`SELECT error FROM kaiwa_jobs.runs`
        assert.notInclude(runs[0]!.error, "re_wrong_key_SECRET_123")
      }))
  })

  const quota = stack({ quota: "daily" })
  layer(quota.layer, { excludeTestServices: true })((it) => {
    it.effect("a quota error stops the run: exit 1, nothing marked sent", () =>
      Effect.gen(function*() {
        yield* due(30)
        const report = yield* runJob(practiceReminders)
        assert.strictEqual(report.exitCode, 1)
        assert.include(report.error ?? "", "quota")
        assert.strictEqual(quota.fake().requests, 1)
        const sql = yield* SqlClient.SqlClient
        const sent = yield* sql<{ n: number }>`SELECT count(*)::int AS n FROM kaiwa_jobs.deliveries WHERE status = 'sent'`
        assert.strictEqual(sent[0]!.n, 0)
      }))
  })

  const deadline = stack({ fail5xxRate: 1 }, { SEND_DEADLINE: "3s" })
  layer(deadline.layer, { excludeTestServices: true })((it) => {
    it.effect("past SEND_DEADLINE what is left stays pending and the run exits 1; a re-run finishes it, once each", () =>
      Effect.gen(function*() {
        yield* due(60)
        const started = Date.now()
        const first = yield* runJob(practiceReminders)
        assert.isBelow(Date.now() - started, 10_000)
        assert.strictEqual(first.outcome, "incomplete")
        assert.strictEqual(first.exitCode, 1)
        assert.strictEqual(first.stats?.pending, 60)
        const sql = yield* SqlClient.SqlClient
        const pending = yield* sql<{ n: number }>`SELECT count(*)::int AS n FROM kaiwa_jobs.deliveries WHERE status = 'pending'`
        assert.strictEqual(pending[0]!.n, 60)
        deadline.fake().faults.fail5xxRate = 0
        const second = yield* runJob(practiceReminders)
        assert.strictEqual(second.exitCode, 0, second.error ?? "")
        yield* assertExactlyOnce(deadline.fake(), 60)
      }))
  })
})

