/**
 * Faults with real processes, the embedded PostgreSQL and the fake Resend (CONTRACT 8 and 10): several workers at
 * once, SIGKILL at random moments, provider faults combined with kills. After the dust settles every due learner
 * has exactly one accepted email and the ledger agrees with the provider.
 */
import { assert, describe, layer } from "@effect/vitest"
import { Effect, Layer, Redacted } from "effect"
import { SqlClient } from "effect/sql"
import * as Layers from "../../src/Layers.ts"
import { type FakeResend, startFakeResend } from "../support/FakeResend.ts"
import { run, start } from "../support/spawn.ts"
import { freshDatabaseUrl, insertUsers } from "../support/TestDb.ts"

const DAY = 86_400_000
const AT = "2026-03-10T10:00:00Z"

let url: Redacted.Redacted<string> | undefined
const stack = Layer.unwrap(Effect.map(freshDatabaseUrl, (u) => {
  url = u
  return Layers.test(u)
}))

const envFor = (fake: FakeResend) => ({
  DATABASE_URL: Redacted.value(url!),
  RESEND_API_KEY: fake.apiKey,
  RESEND_BASE_URL: fake.url,
  RESEND_RPS: "200",
  RESEND_TIMEOUT: "3s",
  MAIL_FROM: "Kaiwa <hello@example.com>",
  APP_URL: "https://kaiwa.example",
  UNSUBSCRIBE_SECRET: "faults-unsubscribe-secret-0123456789",
  LEASE_SECONDS: "1",
  SEND_DEADLINE: "20s"
})

const learners = (prefix: string, n: number) =>
  insertUsers(Array.from({ length: n }, (_, i) => ({ id: `${prefix}${i}`, createdAt: new Date(Date.parse(AT) - 30 * DAY) })))

/** Every learner with `prefix` accepted exactly once, and every ledger row sent with the provider's id. */
const assertSettled = (fake: FakeResend, prefix: string, n: number) =>
  Effect.gen(function*() {
    const counts = fake.acceptedCountByRecipient()
    const mine = [...counts.entries()].filter(([to]) => to.startsWith(prefix))
    assert.strictEqual(mine.length, n, "every due learner got an email")
    assert.deepStrictEqual(mine.filter(([, c]) => c !== 1), [], "nobody got two")
    const sql = yield* SqlClient.SqlClient
    const rows = yield* sql<{ email: string; status: string; provider_id: string | null }>`
      SELECT email, status, provider_id FROM kaiwa_jobs.deliveries WHERE user_id LIKE ${`${prefix}%`}`
    const ids = new Map(fake.accepted.map((a) => [a.to[0]!, a.id]))
    assert.strictEqual(rows.length, n)
    for (const r of rows) {
      assert.strictEqual(r.status, "sent", `${r.email} left ${r.status}`)
      assert.strictEqual(r.provider_id, ids.get(r.email), `${r.email}: the ledger disagrees with the provider`)
    }
  })

// A seeded PRNG: the kill moments are the same on every run (the seed is in the test name).
const prng = (seed: number) => () => {
  seed = (seed * 1664525 + 1013904223) >>> 0
  return seed / 2 ** 32
}

/** Re-runs until a run exits 0 (what Fly's next hourly tick would do), at most `max` times. */
const settle = (fake: FakeResend, max = 5) =>
  Effect.promise(async () => {
    for (let i = 0; i < max; i++) {
      const r = await run("dist/send-reminders.js", ["--now", AT], envFor(fake))
      if (r.code === 0) return i + 1
    }
    throw new Error(`no clean run after ${max} re-runs`)
  })

describe("work sharing", () => {
  layer(stack, { excludeTestServices: true })((it) => {
    it.effect("4 processes start the same job at once: each email accepted exactly once, the work shared", () =>
      Effect.gen(function*() {
        yield* learners("w", 800)
        const fake = yield* Effect.acquireRelease(
          Effect.promise(() => startFakeResend({ faults: { latencyMs: 80 } })),
          (f) => Effect.promise(() => f.close())
        )
        const results = yield* Effect.promise(() =>
          Promise.all(Array.from({ length: 4 }, () => run("dist/send-reminders.js", ["--now", AT], envFor(fake))))
        )
        for (const r of results) assert.strictEqual(r.code, 0, r.stderr)
        yield* assertSettled(fake, "w", 800)
        const sql = yield* SqlClient.SqlClient
        const owners = yield* sql<{ n: number }>`SELECT count(DISTINCT owner)::int AS n FROM kaiwa_jobs.batches`
        assert.isAtLeast(owners[0]!.n, 2, "the batches were claimed by more than one worker")
        const runs = yield* sql<{ outcome: string; n: number }>`SELECT outcome, count(*)::int AS n FROM kaiwa_jobs.runs GROUP BY outcome`
        assert.deepStrictEqual(runs, [{ outcome: "succeeded", n: 4 }])
      }), 60_000)
  })
})

describe("SIGKILL at random moments", () => {
  const SEED = 7
  layer(stack, { excludeTestServices: true })((it) => {
    it.effect(`10 trials (seed ${SEED}): after a re-run every learner has exactly one accepted email`, () =>
      Effect.gen(function*() {
        const random = prng(SEED)
        for (let trial = 0; trial < 10; trial++) {
          const prefix = `k${trial}-`
          yield* learners(prefix, 150)
          const fake = yield* Effect.acquireRelease(
            Effect.promise(() => startFakeResend({ faults: { latencyMs: 30 + Math.floor(random() * 50) } })),
            (f) => Effect.promise(() => f.close())
          )
          const killAfter = 50 + Math.floor(random() * 900)
          const { child, done } = start("dist/send-reminders.js", ["--now", AT], envFor(fake))
          const killer = setTimeout(() => child.kill("SIGKILL"), killAfter)
          yield* Effect.promise(() => done)
          clearTimeout(killer)
          yield* settle(fake)
          yield* assertSettled(fake, prefix, 150)
          // The trials share a database: clear the learners so the next trial starts clean.
          const sql = yield* SqlClient.SqlClient
          yield* sql`DELETE FROM user_settings WHERE user_id LIKE ${`${prefix}%`}`
          yield* sql`DELETE FROM users WHERE id LIKE ${`${prefix}%`}`
        }
      }), 120_000)
  })
})

describe("provider faults combined with kills", () => {
  layer(stack, { excludeTestServices: true })((it) => {
    it.effect("35% 5xx, a dropped connection after acceptance, a 429 storm and a SIGKILL: one email each", () =>
      Effect.gen(function*() {
        yield* learners("f", 1000)
        const fake = yield* Effect.acquireRelease(
          Effect.promise(() =>
            startFakeResend({
              seed: 5,
              faults: { latencyMs: 60, fail5xxRate: 0.35, dropNextAfterAccept: true, storm429: 3, storm429RetryAfterSeconds: 1 }
            })
          ),
          (f) => Effect.promise(() => f.close())
        )
        const { child, done } = start("dist/send-reminders.js", ["--now", AT], envFor(fake))
        yield* Effect.promise(async () => {
          while (fake.accepted.length < 300) await new Promise((r) => setTimeout(r, 10))
        })
        child.kill("SIGKILL")
        yield* Effect.promise(() => done)
        yield* settle(fake)
        yield* assertSettled(fake, "f", 1000)
        assert.isAbove(fake.stats.server5xx, 0)
        assert.strictEqual(fake.stats.dropped, 1)
      }), 90_000)
  })
})
