/**
 * The whole pipeline (runner, ledger, claims, leases, the real Resend mailer through the `resend` SDK) against the
 * fake Resend on loopback, on real clocks, fault by fault (CONTRACT 8): 5xx, 429 storms, a connection dropped
 * after the provider accepted a batch, a run killed mid-batch (softly, and hard with its lease left behind), an
 * invalid address, a bad key, a quota, the deadline and an idempotency conflict. Each test has its own database
 * and its own fake, and each run builds its own mailer and settings, as a new process would. The fake counts
 * every email it accepted, so "exactly once" is checked against the provider, not against our own ledger.
 */
import { assert, describe, it } from "@effect/vitest"
import { ConfigProvider, Effect, Exit, Fiber, Layer, Logger, Redacted } from "effect"
import { SqlClient } from "effect/sql"
import { JobsConfig } from "../../src/config/Config.ts"
import { Database, type Owners, pgLayer } from "../../src/database/Database.ts"
import { type RunReport, runJob } from "../../src/job/Job.ts"
import { practiceReminders } from "../../src/jobs/index.ts"
import * as Layers from "../../src/job/Layers.ts"
import { Mailer } from "../../src/mail/Mailer.ts"
import * as ResendMailer from "../../src/mail/ResendMailer.ts"
import { Telemetry } from "../../src/telemetry/Telemetry.ts"
import { type FakeResend, type FakeResendOptions, startFakeResend } from "../support/FakeResend.ts"
import { freshDatabaseUrl, insertUsers, uid } from "../support/TestDb.ts"

const DAY = 86_400_000
// Tuesday 2026-03-10 10:00 UTC: inside the 09:00-21:00 reminder window of UTC learners. Runs happen "as of" this
// instant but at real speed (Layers.clockAt), so leases, backoff, retry-after and deadlines take real time.
const AT = new Date("2026-03-10T10:00:00Z")

/** Settings of every run unless a test overrides them: short deadline and lease so each test ends quickly. */
const BASE_ENV: Readonly<Record<string, string>> = {
  SEND_DEADLINE: "10s",
  LEASE_SECONDS: "2",
  APP_URL: "https://kaiwa.example",
  MAIL_FROM: "Kaiwa <hello@kaiwa.example>",
  UNSUBSCRIBE_SECRET: "delivery-test-unsubscribe-secret"
}

interface RunOptions {
  readonly env?: Readonly<Record<string, string>>
  /** The API key this run's mailer sends (default: the fake's). */
  readonly apiKey?: string
  /** Calls per second allowed by this run's mailer (default 50: the fake's own limit is what a test varies). */
  readonly rps?: number
}

/**
 * One test's world: a fresh migrated database, a fake Resend, captured log lines, and `run`, which runs
 * practice-reminders once as a fresh process would (new settings, new mailer with its own rate limiter).
 */
const world = (options: FakeResendOptions = {}) =>
  Effect.gen(function*() {
    const fake = yield* Effect.acquireRelease(
      Effect.promise(() => startFakeResend(options)),
      (f) => Effect.promise(() => f.close())
    )
    const url = yield* freshDatabaseUrl
    const db = yield* Layer.build(Database.layerMigrated({ appFixture: true }).pipe(Layer.provideMerge(pgLayer(url))))
    const logs: Array<string> = []
    const run = (o: RunOptions = {}): Effect.Effect<RunReport<"sent">, never, Database | Owners | SqlClient.SqlClient> => {
      const mailer = Layer.effect(
        Mailer,
        ResendMailer.make({
          apiKey: Redacted.make(o.apiKey ?? fake.apiKey),
          rps: o.rps ?? 50,
          timeout: "5 seconds",
          baseUrl: fake.url
        })
      )
      const provider = ConfigProvider.fromEnv({ env: { ...BASE_ENV, ...o.env } })
      const stack = Layer.mergeAll(mailer, Telemetry.layerTest).pipe(
        Layer.provideMerge(JobsConfig.layer),
        Layer.provide(ConfigProvider.layer(provider))
      )
      return runJob(practiceReminders).pipe(Effect.provide(stack, { local: true }), Effect.orDie)
    }
    const capture = Logger.layer([Logger.make((o) => void logs.push(Logger.formatJson.log(o)))])
    return { fake, url, db, logs, run, capture }
  })

type World = Effect.Success<ReturnType<typeof world>>

/** Runs a test body inside its world: the database services, the log capture and the shifted real clock. */
const inWorld = <A, E>(w: World, body: Effect.Effect<A, E, Database | Owners | SqlClient.SqlClient>) =>
  body.pipe(Effect.provide(w.db), Effect.provide(w.capture), Effect.provide(Layers.clockAt(AT)))

const userId = (i: number) => `u${String(i).padStart(4, "0")}`
const addressOf = (i: number) => `${userId(i)}@example.com`

/** `n` learners due a reminder at AT: verified, signed up 30 days ago, never practised. */
const dueUsers = (n: number) =>
  insertUsers(Array.from({ length: n }, (_, i) => ({ id: userId(i), createdAt: new Date(AT.getTime() - 30 * DAY) })))

interface LedgerRow {
  readonly user_id: string
  readonly email: string
  readonly dedupe_key: string
  readonly status: string
  readonly provider_id: string | null
  readonly reason: string | null
  readonly batch_id: string | null
}

const ledger = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  return yield* sql<LedgerRow>`
    SELECT user_id, email, dedupe_key, status, provider_id, reason, batch_id::text AS batch_id
    FROM kaiwa_jobs.deliveries ORDER BY id`
})

const statusCounts = Effect.map(ledger, (rows) => {
  const counts: Record<string, number> = {}
  for (const r of rows) counts[r.status] = (counts[r.status] ?? 0) + 1
  return counts
})

const batches = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  return yield* sql<{ id: string; idempotency_key: string; status: string; attempts: number; owner: string | null; last_error: string | null }>`
    SELECT id::text AS id, idempotency_key, status, attempts, owner::text AS owner, last_error
    FROM kaiwa_jobs.batches ORDER BY id`
})

const sentCount = (report: RunReport<"sent">) => report.stats?.sent ?? 0

/**
 * The provider and the ledger agree, and nobody got two emails: each of the `n` learners was accepted by the fake
 * exactly once, every ledger row is 'sent', and its provider id is the id the fake gave that learner's email.
 */
const assertExactlyOnce = (fake: FakeResend, n: number) =>
  Effect.gen(function*() {
    const counts = fake.acceptedCountByRecipient()
    for (const [to, c] of counts) assert.strictEqual(c, 1, `${to} was accepted ${c} times`)
    assert.strictEqual(counts.size, n, "distinct learners accepted")
    assert.strictEqual(fake.accepted.length, n, "emails accepted in total")
    const idOf = new Map(fake.accepted.map((a) => [a.to[0]!, a.id]))
    const rows = yield* ledger
    assert.strictEqual(rows.length, n)
    for (const r of rows) {
      assert.strictEqual(r.status, "sent", `${r.user_id} is ${r.status} (${r.reason ?? ""})`)
      assert.strictEqual(r.provider_id, idOf.get(r.email), `${r.user_id}: the ledger's provider id is not the fake's`)
    }
  })

/** Polls a condition on the fake (real time), failing the test after `ms`. */
const waitFor = (what: string, condition: () => boolean, ms = 10_000) =>
  Effect.gen(function*() {
    const start = Date.now()
    while (!condition()) {
      if (Date.now() - start > ms) return yield* Effect.die(new Error(`timed out waiting for ${what}`))
      yield* Effect.sleep("10 millis")
    }
  })

describe("live delivery: the runner and the Resend mailer against the fake Resend", () => {
  it.live("20% 5xx: 250 learners, each accepted exactly once, ledger all sent with provider ids, exit 0", () =>
    Effect.gen(function*() {
      // Seed 3: the fake's PRNG fails the 2nd and 4th requests (batches 2 and 3), then lets the retries through.
      const w = yield* world({ seed: 3, faults: { fail5xxRate: 0.2 } })
      yield* inWorld(w, Effect.gen(function*() {
        yield* dueUsers(250)
        const report = yield* w.run()
        assert.strictEqual(report.exitCode, 0, report.error ?? "")
        assert.strictEqual(report.outcome, "succeeded")
        assert.strictEqual(sentCount(report), 250)
        assert.strictEqual(report.stats?.failed, 0)
        assert.strictEqual(w.fake.stats.server5xx, 2, "the pipeline really retried through 500s")
        yield* assertExactlyOnce(w.fake, 250)
      }))
    }))

  it.live("a 429 storm (and the provider's own 2/s window) is waited out per retry-after; no row fails because of a 429", () =>
    Effect.gen(function*() {
      // The mailer is allowed 10 calls/s, the provider only 2: besides the storm, its sliding window answers 429.
      const w = yield* world({ faults: { storm429: 4, storm429RetryAfterSeconds: 1, rateLimitPerSecond: 2 } })
      yield* inWorld(w, Effect.gen(function*() {
        yield* dueUsers(250)
        const report = yield* w.run({ rps: 10, env: { SEND_DEADLINE: "15s" } })
        assert.strictEqual(report.exitCode, 0, report.error ?? "")
        assert.strictEqual(w.fake.stats.storm429, 4)
        assert.strictEqual(report.stats?.failed, 0)
        assert.deepStrictEqual(yield* statusCounts, { sent: 250 })
        yield* assertExactlyOnce(w.fake, 250)
        // retry-after was honoured: after every 429 the next request came at least ~1 s later.
        const log = w.fake.log
        for (let i = 0; i + 1 < log.length; i++) {
          if (log[i]!.status === 429) {
            assert.isAtLeast(log[i + 1]!.at - log[i]!.at, 950, `request ${log[i + 1]!.n} came too soon after a 429`)
          }
        }
      }))
    }))

  it.live("a connection dropped after the provider accepted a batch: the retry under the same key is answered from the first response", () =>
    Effect.gen(function*() {
      const w = yield* world({ faults: { dropNextAfterAccept: true } })
      yield* inWorld(w, Effect.gen(function*() {
        yield* dueUsers(250)
        const report = yield* w.run()
        assert.strictEqual(report.exitCode, 0, report.error ?? "")
        assert.strictEqual(w.fake.stats.dropped, 1)
        assert.isAtLeast(w.fake.stats.idempotentReplays, 1)
        // The dropped request and its retry carried the same key.
        const dropped = w.fake.log.find((r) => r.status === "dropped")!
        assert.isTrue(w.fake.log.some((r) => r.n > dropped.n && r.idempotencyKey === dropped.idempotencyKey && r.status === 200))
        yield* assertExactlyOnce(w.fake, 250)
        const ids = new Set(w.fake.accepted.map((a) => a.id))
        for (const r of yield* ledger) assert.isTrue(r.provider_id !== null && ids.has(r.provider_id), `${r.user_id}: ${r.provider_id}`)
      }))
    }))

  it.live("a run interrupted mid-batch after the provider accepted it: the re-run resends that batch under its key, nobody gets two", () =>
    Effect.gen(function*() {
      const w = yield* world()
      yield* inWorld(w, Effect.gen(function*() {
        yield* dueUsers(250)
        // The fake holds the first batch until released; kill the run while it does.
        const release = w.fake.holdNext()
        const first = yield* Effect.forkChild(w.run())
        yield* waitFor("the first batch to reach the provider", () => w.fake.requests >= 1)
        yield* Effect.sleep("200 millis")
        yield* Fiber.interrupt(first)
        const exit = yield* Fiber.await(first)
        assert.isTrue(Exit.hasInterrupts(exit))
        release()
        // The provider finishes the request the client walked away from: 100 emails accepted, nobody told.
        yield* waitFor("the provider to accept the abandoned batch", () => w.fake.accepted.length === 100)
        const [b1] = yield* batches
        assert.strictEqual(b1!.status, "pending")
        assert.strictEqual(b1!.attempts, 1)
        assert.isNull(b1!.owner, "an interrupted run hands its batch back at once")
        assert.deepStrictEqual(yield* statusCounts, { pending: 250 })
        const sql = yield* SqlClient.SqlClient
        const runs = yield* sql<{ outcome: string }>`SELECT outcome FROM kaiwa_jobs.runs`
        assert.deepStrictEqual(runs.map((r) => r.outcome), ["interrupted"])

        w.fake.faults.latencyMs = 0
        const second = yield* w.run()
        assert.strictEqual(second.exitCode, 0, second.error ?? "")
        yield* assertExactlyOnce(w.fake, 250)
        const after = yield* batches
        assert.strictEqual(after[0]!.idempotency_key, b1!.idempotency_key)
        assert.strictEqual(after[0]!.attempts, 2, "the resumed batch is the same batch, attempted twice")
        assert.isAtLeast(w.fake.stats.idempotentReplays, 1)
        const withKey = w.fake.log.filter((r) => r.idempotencyKey === b1!.idempotency_key)
        assert.isAtLeast(withKey.length, 2)
        assert.strictEqual(after.length, 3, "the re-run did not rebuild the batch under a new key")
      }))
    }))

  it.live("a run interrupted mid-batch whose request then failed at the provider: the re-run sends that batch once, under the same key", () =>
    Effect.gen(function*() {
      const w = yield* world({ faults: { latencyMs: 1000 } })
      yield* inWorld(w, Effect.gen(function*() {
        yield* dueUsers(250)
        const first = yield* Effect.forkChild(w.run())
        yield* waitFor("the first batch to reach the provider", () => w.fake.requests >= 1)
        // The abandoned request ends in a 500 at the provider: nothing accepted, the key stays free.
        w.fake.faults.fail5xxRate = 1
        yield* Fiber.interrupt(first)
        yield* waitFor("the provider to fail the abandoned batch", () => w.fake.log[0]!.status === 500)
        assert.strictEqual(w.fake.accepted.length, 0)
        w.fake.faults.fail5xxRate = 0
        w.fake.faults.latencyMs = 0
        const [b1] = yield* batches

        const second = yield* w.run()
        assert.strictEqual(second.exitCode, 0, second.error ?? "")
        yield* assertExactlyOnce(w.fake, 250)
        const after = yield* batches
        assert.strictEqual(after[0]!.idempotency_key, b1!.idempotency_key)
        assert.strictEqual(after[0]!.attempts, 2)
        assert.strictEqual(w.fake.stats.idempotentReplays, 0, "nothing to replay: the first attempt was never accepted")
        assert.deepStrictEqual(w.fake.log.filter((r) => r.idempotencyKey === b1!.idempotency_key).map((r) => r.status), [500, 200])
      }))
    }))

  it.live("a run killed hard mid-batch (lease left behind, request still at the provider): the re-run waits out the lease, then the same key gets the first response", () =>
    Effect.gen(function*() {
      const w = yield* world()
      yield* inWorld(w, Effect.gen(function*() {
        yield* dueUsers(250)
        // Only the first request is held, until the re-run has met it at the provider (a gate, not a fixed
        // latency, so a slow machine cannot let it finish before the re-run arrives).
        const release = w.fake.holdNext()
        const first = yield* Effect.forkChild(w.run())
        yield* waitFor("the first batch to reach the provider", () => w.fake.requests >= 1)
        yield* Fiber.interrupt(first)
        // A SIGKILL runs no finalizer: put back what the dead worker would have left, its claim and a live lease.
        const sql = yield* SqlClient.SqlClient
        // Leases run on the database's clock, which every worker shares whatever `--now` it was given.
        const killedAt = Date.now()
        yield* sql`UPDATE kaiwa_jobs.batches SET owner = gen_random_uuid(), lease_until = clock_timestamp() + interval '2 seconds'
                   WHERE status = 'pending'`
        const [b1] = yield* batches

        const rerun = yield* Effect.forkChild(w.run())
        yield* waitFor("the re-run to meet the first request still in progress", () => w.fake.stats.concurrentConflicts >= 1)
        release()
        const second = yield* Fiber.join(rerun)
        assert.strictEqual(second.exitCode, 0, second.error ?? "")
        yield* assertExactlyOnce(w.fake, 250)
        const after = yield* batches
        assert.strictEqual(after.length, 3)
        assert.strictEqual(after[0]!.idempotency_key, b1!.idempotency_key)
        assert.strictEqual(after[0]!.attempts, 2)
        const resent = w.fake.log.filter((r) => r.idempotencyKey === b1!.idempotency_key)
        // Taken over only once the lease ran out, while the first request was still being processed (409
        // concurrent_idempotent_requests, retried), and finally answered from the stored first response.
        assert.isAtLeast(resent[1]!.at - killedAt, 1900, "the lease was not respected")
        assert.strictEqual(resent[1]!.status, 409)
        assert.isAtLeast(w.fake.stats.idempotentReplays, 1)
        assert.strictEqual(resent[resent.length - 1]!.status, 200)
      }))
    }))

  it.live("one invalid address among 100: 99 sent, that one failed and suppressed, exit 0; the next day it is not tried again", () =>
    Effect.gen(function*() {
      const bad = addressOf(42)
      const w = yield* world({ faults: { invalidAddresses: new Set([bad]) } })
      yield* inWorld(w, Effect.gen(function*() {
        yield* dueUsers(100)
        const report = yield* w.run()
        assert.strictEqual(report.exitCode, 0, report.error ?? "")
        assert.strictEqual(report.outcome, "succeeded")
        assert.strictEqual(sentCount(report), 99)
        assert.strictEqual(report.stats?.failed, 1)
        assert.strictEqual(w.fake.requests, 1, "one batch call: the bad address did not sink the other 99")
        const rows = yield* ledger
        const failed = rows.filter((r) => r.status === "failed")
        assert.deepStrictEqual(failed.map((r) => r.user_id), [uid(userId(42))])
        assert.isNull(failed[0]!.provider_id)
        assert.include(failed[0]!.reason ?? "", "rejected")
        assert.strictEqual(rows.filter((r) => r.status === "sent").length, 99)
        const sql = yield* SqlClient.SqlClient
        const suppressions = yield* sql<{ user_id: string; email: string; list: string; reason: string }>`
          SELECT user_id, email, list, reason FROM kaiwa_jobs.suppressions`
        assert.deepStrictEqual(suppressions, [{ user_id: uid(userId(42)), email: bad, list: "*", reason: "invalid_address" }])

        const nextDay = yield* w.run().pipe(Effect.provide(Layers.clockAt(new Date(AT.getTime() + DAY))))
        assert.strictEqual(nextDay.exitCode, 0, nextDay.error ?? "")
        assert.strictEqual(sentCount(nextDay), 99)
        assert.strictEqual(nextDay.stats?.failed, 0, "the suppressed address was tried again")
        assert.strictEqual(nextDay.stats?.skipped["suppressed"], 1)
        const day2 = (yield* ledger).filter((r) => !rows.some((d1) => d1.user_id === r.user_id && d1.dedupe_key === r.dedupe_key))
        assert.strictEqual(day2.length, 99)
        assert.isFalse(day2.some((r) => r.user_id === uid(userId(42))), "the suppressed learner was planned again")
        assert.isFalse(w.fake.accepted.some((a) => a.to.includes(bad)))
        assert.strictEqual(w.fake.accepted.length, 198)
      }))
    }))

  it.live("a bad API key stops the run at once: failed, exit 1, nothing sent or marked sent, the key in no message", () =>
    Effect.gen(function*() {
      const key = "re_live_WRONG_KEY_never_print_me_0123456789"
      const w = yield* world()
      yield* inWorld(w, Effect.gen(function*() {
        yield* dueUsers(250)
        const report = yield* w.run({ apiKey: key })
        assert.strictEqual(report.outcome, "failed")
        assert.strictEqual(report.exitCode, 1)
        assert.include(report.error ?? "", "auth")
        assert.notInclude(report.error ?? "", key)
        assert.strictEqual(w.fake.requests, 1, "an auth error is not retried")
        assert.strictEqual(w.fake.stats.authFailures, 1)
        assert.strictEqual(w.fake.accepted.length, 0)
        assert.deepStrictEqual(yield* statusCounts, { pending: 250 })
        const sql = yield* SqlClient.SqlClient
        const runs = yield* sql<{ outcome: string; error: string | null }>`SELECT outcome, error FROM kaiwa_jobs.runs`
        assert.strictEqual(runs[0]!.outcome, "failed")
        assert.notInclude(runs[0]!.error ?? "", key)
        assert.isAbove(w.logs.length, 0)
        for (const line of w.logs) assert.notInclude(line, key)
        for (const line of w.logs) assert.notInclude(line, key.slice(8, 30))
      }))
    }))

  for (const quota of ["daily", "monthly"] as const) {
    it.live(`a ${quota} quota error stops the run at once: failed, exit 1, nothing marked sent`, () =>
      Effect.gen(function*() {
        const w = yield* world({ faults: { quota } })
        yield* inWorld(w, Effect.gen(function*() {
          yield* dueUsers(250)
          const report = yield* w.run()
          assert.strictEqual(report.outcome, "failed")
          assert.strictEqual(report.exitCode, 1)
          assert.include(report.error ?? "", "quota")
          assert.strictEqual(w.fake.requests, 1, "waiting does not help a quota: no retry")
          assert.strictEqual(w.fake.accepted.length, 0)
          assert.deepStrictEqual(yield* statusCounts, { pending: 250 })
        }))
      }))
  }

  it.live("the deadline: permanent 5xx ends the run within a few seconds, incomplete, exit 1, rows pending; a re-run sends each once", () =>
    Effect.gen(function*() {
      const w = yield* world({ faults: { fail5xxRate: 1 } })
      yield* inWorld(w, Effect.gen(function*() {
        yield* dueUsers(250)
        const started = Date.now()
        const first = yield* w.run({ env: { SEND_DEADLINE: "3s" } })
        const took = Date.now() - started
        assert.isBelow(took, 6000, `the run took ${took} ms past a 3 s deadline`)
        assert.strictEqual(first.outcome, "incomplete")
        assert.strictEqual(first.exitCode, 1)
        assert.strictEqual(first.stats?.pending, 250)
        assert.strictEqual(first.stats?.failed, 0)
        assert.deepStrictEqual(yield* statusCounts, { pending: 250 })
        assert.strictEqual(w.fake.accepted.length, 0)
        assert.isAbove(w.fake.stats.server5xx, 1, "the batch was retried")
        const [b1] = yield* batches
        assert.include(b1!.last_error ?? "", "deadline")

        w.fake.faults.fail5xxRate = 0
        const second = yield* w.run({ env: { SEND_DEADLINE: "3s" } })
        assert.strictEqual(second.exitCode, 0, second.error ?? "")
        assert.strictEqual(sentCount(second), 250)
        yield* assertExactlyOnce(w.fake, 250)
        const after = yield* batches
        assert.strictEqual(after[0]!.idempotency_key, b1!.idempotency_key)
        assert.strictEqual(after[0]!.attempts, 2)
      }))
    }))

  it.live("an idempotency conflict (the resumed batch no longer renders the same) is reported loudly, never sends again, and does not block later batches", () =>
    Effect.gen(function*() {
      const w = yield* world({ faults: { latencyMs: 1000 } })
      yield* inWorld(w, Effect.gen(function*() {
        yield* dueUsers(150)
        // Killed while the provider accepts the first batch...
        const first = yield* Effect.forkChild(w.run())
        yield* waitFor("the first batch to reach the provider", () => w.fake.requests >= 1)
        yield* Fiber.interrupt(first)
        yield* waitFor("the provider to accept the abandoned batch", () => w.fake.accepted.length === 100)
        w.fake.faults.latencyMs = 0
        const [b1] = yield* batches
        // ...then a deploy changes the sender before the re-run: the same key now carries a different payload.
        const changed = { env: { MAIL_FROM: "Kaiwa Team <team@kaiwa.example>" } }
        const second = yield* w.run(changed)
        assert.strictEqual(second.outcome, "failed")
        assert.strictEqual(second.exitCode, 1)
        assert.include(second.error ?? "", "idempotency")
        assert.strictEqual(w.fake.stats.idempotencyConflicts, 1)
        const loud = w.logs.filter((l) => l.includes("IDEMPOTENCY CONFLICT"))
        assert.strictEqual(loud.length, 1)
        assert.include(loud[0]!, "\"level\":\"ERROR\"")
        assert.include(loud[0]!, b1!.idempotency_key)
        // The conflicting batch is parked, so the rest of the tick still went out in that run...
        assert.strictEqual(sentCount(second), 50)
        assert.strictEqual(second.stats?.failed, 100)
        const parked = (yield* batches).find((b) => b.id === b1!.id)!
        assert.strictEqual(parked.status, "conflict")
        // ...and a later run neither trips over it again nor finds a way around it.
        const requestsBefore = w.fake.requests
        const third = yield* w.run(changed)
        assert.strictEqual(third.exitCode, 0, third.error ?? "")
        assert.strictEqual(w.fake.requests, requestsBefore)
        assert.strictEqual(w.fake.stats.idempotencyConflicts, 1)

        const counts = w.fake.acceptedCountByRecipient()
        for (const [to, c] of counts) assert.strictEqual(c, 1, `${to} was accepted ${c} times`)
        const batch1 = (yield* ledger).filter((r) => r.batch_id === b1!.id)
        assert.strictEqual(batch1.length, 100)
        for (const r of batch1) {
          assert.strictEqual(counts.get(r.email), 1)
          assert.strictEqual(r.status, "failed", "a row was marked sent without the provider's answer")
          assert.include(r.reason ?? "", "idempotency conflict")
        }
        assert.isFalse(w.fake.accepted.some((a) => a.from.includes("team@kaiwa.example") && batch1.some((r) => r.email === a.to[0])))
      }))
    }))
})
