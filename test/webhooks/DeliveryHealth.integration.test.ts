/**
 * Delivery health (CONTRACT 8a): each job's delivered / bounced / complained counts and rates over the 7 days
 * before the Clock's instant, the AT RISK rule (bounces above 4%, complaints above 0.08% of the emails sent in the
 * window), and how `kaiwa-jobs status` (exit 1) and `GET /health` (`?strict=1` -> 503) show it. Also the
 * RESEND_WEBHOOK_SECRET setting.
 */
import { randomUUID } from "node:crypto"
import { NodeHttpServer } from "@effect/platform-node"
import { assert, describe, it, layer } from "@effect/vitest"
import { ConfigProvider, Effect, Exit, Layer, Option, Redacted, References } from "effect"
import { HttpServer } from "effect/http"
import { SqlClient } from "effect/sql"
import { TestClock } from "effect/testing"
import { load } from "../../src/config/Config.ts"
import { healthOf, MAX_BOUNCE_RATE, MAX_COMPLAINT_RATE } from "../../src/delivery/DeliveryHealth.ts"
import * as Http from "../../src/triggers/Http.ts"
import { registry } from "../../src/jobs/index.ts"
import * as Layers from "../../src/job/Layers.ts"
import { jobStatuses } from "../../src/operator/Status.ts"
import { run } from "../support/spawn.ts"
import { freshDatabaseUrl } from "../support/TestDb.ts"

const HOUR = 3_600_000
const DAY = 24 * HOUR
const T0 = Date.parse("2026-03-10T10:00:00Z")
const jobs = registry.map((j) => j.name)

/** `n` ledger rows of `job`, sent at `sentAt`, the first ones in the given delivery states. */
const ledger = (
  job: string,
  n: number,
  sentAt: Date,
  states: Partial<Record<"delivered" | "delayed" | "bounced" | "complained", number>> = {},
  status = "sent"
) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const tag = randomUUID().slice(0, 8)
    const list = Object.entries(states).flatMap(([state, k]) => Array.from({ length: k }, () => state))
    yield* sql`
      INSERT INTO kaiwa_jobs.deliveries
        (job, user_id, dedupe_key, email, data, status, provider_id, planned_at, expires_at, sent_at, delivery_state)
      SELECT ${job}, ${tag} || '-' || i, 'k', ${tag} || '-' || i || '@example.com', '{}'::jsonb, ${status},
        CASE WHEN ${status} = 'sent' THEN ${tag} || '-' || i END, ${sentAt}, ${sentAt},
        CASE WHEN ${status} = 'sent' THEN ${sentAt}::timestamptz END,
        (${JSON.stringify(list)}::jsonb ->> (i - 1))
      FROM generate_series(1, ${n}) AS i`
  })

/** A succeeded run of every job at `at`, so no job is overdue then. */
const succeededRuns = (at: Date) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    for (const job of jobs) {
      yield* sql`INSERT INTO kaiwa_jobs.runs (id, job, as_of, started_at, finished_at, outcome)
        VALUES (${randomUUID()}::uuid, ${job}, ${at}, ${at}, ${at}, 'succeeded')`
    }
  })

describe("AT RISK rule", () => {
  it("passes 4% bounces or 0.08% complaints of the emails sent; exactly at the level is not yet at risk", () => {
    const base = { delivered: 0, delayed: 0, bounced: 0, complained: 0 }
    assert.strictEqual(MAX_BOUNCE_RATE, 0.04)
    assert.strictEqual(MAX_COMPLAINT_RATE, 0.0008)
    assert.isFalse(healthOf({ ...base, sent: 100, bounced: 4 }).atRisk)
    assert.isTrue(healthOf({ ...base, sent: 100, bounced: 5 }).atRisk)
    assert.isFalse(healthOf({ ...base, sent: 2500, complained: 2 }).atRisk)
    assert.isTrue(healthOf({ ...base, sent: 2500, complained: 3 }).atRisk)
    assert.deepStrictEqual(healthOf({ ...base, sent: 200, delivered: 190, bounced: 6, complained: 1 }), {
      windowDays: 7,
      sent: 200,
      delivered: 190,
      delayed: 0,
      bounced: 6,
      complained: 1,
      deliveredRate: 0.95,
      bounceRate: 0.03,
      complaintRate: 0.005,
      atRisk: true
    })
    const none = healthOf({ ...base, sent: 0 })
    assert.deepStrictEqual([none.bounceRate, none.complaintRate, none.deliveredRate, none.atRisk], [null, null, null, false])
  })
})

describe("RESEND_WEBHOOK_SECRET", () => {
  const loadWith = (env: Record<string, string>) =>
    load("lenient").pipe(Effect.provideService(ConfigProvider.ConfigProvider, ConfigProvider.fromEnv({ env })), Effect.exit)

  it.effect("optional and Redacted; a value that is not a whsec_ signing secret is refused, naming the variable only", () =>
    Effect.gen(function*() {
      const unset = yield* loadWith({})
      assert.isTrue(Exit.isSuccess(unset) && Option.isNone(unset.value.resendWebhookSecret))
      const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
      const set = yield* loadWith({ RESEND_WEBHOOK_SECRET: secret })
      assert.isTrue(Exit.isSuccess(set))
      if (Exit.isSuccess(set)) {
        const value = Option.getOrThrow(set.value.resendWebhookSecret)
        assert.strictEqual(Redacted.value(value), secret)
        assert.notInclude(String(value), secret)
      }
      for (const bad of ["MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_short", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaS", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw "]) {
        const exit = yield* loadWith({ RESEND_WEBHOOK_SECRET: bad })
        assert.isTrue(Exit.isFailure(exit), bad)
        const error = Exit.isFailure(exit) ? JSON.stringify(exit.cause) : ""
        assert.include(error, "RESEND_WEBHOOK_SECRET")
        assert.include(error, "InvalidConfig")
        assert.notInclude(error, bad.trim())
      }
    }))
})

describe("delivery health in jobStatuses", () => {
  const stack = Layer.unwrap(Effect.map(freshDatabaseUrl, Layers.test)).pipe(
    Layer.provideMerge(Layer.succeed(References.MinimumLogLevel, "Warn"))
  )
  layer(stack, { excludeTestServices: true })((it) => {
    it.effect("counts each job's emails sent in the 7 days before the Clock's instant, and flags the job at risk", () =>
      Effect.gen(function*() {
        const [first, second] = jobs as [string, string]
        // In the window: 100 sent by the first job (90 delivered, 3 delayed, 5 bounced, 1 complained) ...
        yield* ledger(first, 100, new Date(T0 - 2 * DAY), { delivered: 90, delayed: 3, bounced: 5, complained: 1 })
        // ... and 1,000 by the second (996 delivered, 4 bounced: 0.4%).
        yield* ledger(second, 1000, new Date(T0 - 6 * DAY), { delivered: 996, bounced: 4 })
        // Outside the window or never sent: not counted.
        yield* ledger(first, 50, new Date(T0 - 7 * DAY), { bounced: 50 })
        yield* ledger(first, 50, new Date(T0 + HOUR), { bounced: 50 })
        yield* ledger(second, 20, new Date(T0 - DAY), {}, "failed")
        yield* ledger(second, 20, new Date(T0 - DAY), {}, "pending")

        yield* TestClock.setTime(T0)
        const statuses = yield* jobStatuses
        assert.deepStrictEqual(statuses.map((s) => s.job), jobs)
        const [a, b] = statuses as [typeof statuses[number], typeof statuses[number]]
        assert.deepStrictEqual(
          [a.delivery.sent, a.delivery.delivered, a.delivery.delayed, a.delivery.bounced, a.delivery.complained],
          [100, 90, 3, 5, 1]
        )
        assert.strictEqual(a.delivery.bounceRate, 0.05)
        assert.strictEqual(a.delivery.complaintRate, 0.01)
        assert.isTrue(a.atRisk)
        assert.deepStrictEqual([b.delivery.sent, b.delivery.delivered, b.delivery.bounced], [1000, 996, 4])
        assert.strictEqual(b.delivery.bounceRate, 0.004)
        assert.isFalse(b.atRisk)

        // Eight days later the window holds none of them: nothing is at risk any more.
        yield* TestClock.setTime(T0 + 8 * DAY)
        const later = yield* jobStatuses
        assert.isTrue(later.every((s) => s.delivery.sent === 0 && !s.atRisk))
      }).pipe(Effect.provide(TestClock.layer())))
  })
})

describe("GET /health with delivery health", () => {
  const server = Http.layerApp.pipe(
    Layer.provideMerge(NodeHttpServer.layerTest),
    Layer.provideMerge(Layer.unwrap(Effect.map(freshDatabaseUrl, Layers.test))),
    Layer.provideMerge(Layer.succeed(References.MinimumLogLevel, "Warn"))
  )
  layer(server, { excludeTestServices: true })((it) => {
    const get = (path: string) =>
      Effect.gen(function*() {
        const port = (((yield* HttpServer.HttpServer).address) as { readonly port: number }).port
        return yield* Effect.promise(async () => {
          const response = await fetch(`http://127.0.0.1:${port}${path}`)
          const text = await response.text()
          return { status: response.status, text, body: JSON.parse(text) }
        })
      })

    it.effect("shows counts and rates per job; ?strict=1 answers 503 while a job is overdue or at risk, plain /health 200", () =>
      Effect.gen(function*() {
        // Nothing ran yet: every job is overdue.
        assert.strictEqual((yield* get("/health")).status, 200)
        const overdue = yield* get("/health?strict=1")
        assert.strictEqual(overdue.status, 503)
        assert.isFalse(overdue.body.healthy)

        const now = Date.now()
        yield* succeededRuns(new Date(now))
        const [first] = jobs as [string]
        yield* ledger(first, 100, new Date(now - HOUR), { delivered: 97, bounced: 3 })
        // /health answers from a summary up to HEALTH_MAX_AGE old (issue 19): the rows show once it has expired.
        yield* Effect.sleep(Http.HEALTH_MAX_AGE)
        const fine = yield* get("/health?strict=1")
        assert.strictEqual(fine.status, 200)
        assert.isTrue(fine.body.healthy)

        // Two more bounces: 5 of 102 sent, 4.9%.
        yield* ledger(first, 2, new Date(now - HOUR), { bounced: 2 })
        yield* Effect.sleep(Http.HEALTH_MAX_AGE)
        const plain = yield* get("/health")
        assert.strictEqual(plain.status, 200)
        const strict = yield* get("/health?strict=1")
        assert.strictEqual(strict.status, 503)
        for (const r of [plain, strict]) {
          assert.isFalse(r.body.healthy)
          const job = r.body.jobs.find((j: { job: string }) => j.job === first)
          assert.isTrue(job.atRisk)
          assert.isFalse(job.overdue)
          assert.deepStrictEqual(
            [job.delivery.sent, job.delivery.delivered, job.delivery.bounced, job.delivery.complained],
            [102, 97, 5, 0]
          )
          assert.closeTo(job.delivery.bounceRate, 5 / 102, 1e-12)
          assert.isTrue(r.body.jobs.filter((j: { job: string }) => j.job !== first).every((j: { atRisk: boolean }) => !j.atRisk))
          // Counts and rates only: no address, no user id.
          assert.notInclude(r.text, "@")
          assert.notInclude(r.text, "example")
          assert.notMatch(r.text, /[0-9a-f]{8}-\d+/)
          assert.deepStrictEqual(Object.keys(job.delivery).sort(), [
            "atRisk", "bounceRate", "bounced", "complained", "complaintRate", "delayed", "delivered", "deliveredRate", "sent",
            "windowDays"
          ])
        }
      }))
  })
})

describe("`kaiwa-jobs status` with delivery health", () => {
  let url: Redacted.Redacted<string> | undefined
  const stack = Layer.unwrap(Effect.map(freshDatabaseUrl, (u) => {
    url = u
    return Layers.test(u)
  })).pipe(Layer.provideMerge(Layer.succeed(References.MinimumLogLevel, "Warn")))
  layer(stack, { excludeTestServices: true })((it) => {
    it.effect("prints each job's 7-day delivery, marks AT RISK and exits 1 then, like OVERDUE", () =>
      Effect.gen(function*() {
        const env = { DATABASE_URL: Redacted.value(url!) }
        const now = Date.now()
        yield* succeededRuns(new Date(now))
        const [first, second] = jobs as [string, string]
        yield* ledger(first, 2000, new Date(now - DAY), { delivered: 1990, complained: 1 })
        const ok = yield* Effect.promise(() => run("dist/cli.js", ["status"], env))
        assert.strictEqual(ok.code, 0, ok.stdout + ok.stderr)
        assert.notInclude(ok.stdout, "AT RISK")
        assert.include(ok.stdout, "2000 sent, 1990 delivered, 0 delayed, 0 bounced (0.00%), 1 complained (0.05%) in 7 days")

        // A second complaint: 2 of 2,001 is 0.0999%, past 0.08%.
        yield* ledger(first, 1, new Date(now - DAY), { complained: 1 })
        const risky = yield* Effect.promise(() => run("dist/cli.js", ["status"], env))
        assert.strictEqual(risky.code, 1)
        assert.match(risky.stdout, new RegExp(`AT RISK ${first}`))
        assert.match(risky.stdout, /AT RISK delivery 2001 sent, 1990 delivered, 0 delayed, 0 bounced \(0\.00%\), 2 complained \(0\.10%\)/)
        assert.match(risky.stdout, new RegExp(`ok\\s+${second}`))

        const json = yield* Effect.promise(() => run("dist/cli.js", ["status", "--json"], env))
        assert.strictEqual(json.code, 1)
        const parsed = JSON.parse(json.stdout) as ReadonlyArray<{ job: string; atRisk: boolean; delivery: { complained: number } }>
        assert.deepStrictEqual(
          parsed.map((s) => [s.job, s.atRisk, s.delivery.complained]),
          jobs.map((job) => job === first ? [job, true, 2] : [job, false, 0])
        )
      }))
  })
})
