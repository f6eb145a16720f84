/**
 * The shared rate limit yields to another sender on the same provider account (issue 13: `RESEND_RPS=1.5` beside
 * the web app's 0.5 request/s must not end in a 429 storm). First the row's state on a real database, driven the
 * way the mailer drives the limiter (`answered` with the provider's headers); then real worker processes at 1.5/s
 * beside a second sender at 0.5/s against the fake Resend's sliding 1 s window of 2.
 */
import type { ChildProcess } from "node:child_process"
import { afterAll, assert, describe, it } from "@effect/vitest"
import { Duration, Effect, Fiber, ManagedRuntime, Redacted } from "effect"
import { SqlClient } from "effect/sql"
import { pgLayer } from "../../src/Database.ts"
import { RATE_HEADROOM, RATE_WIDEN } from "../../src/ResendMailer.ts"
import * as SharedRateLimiter from "../../src/SharedRateLimiter.ts"
import { query, seed } from "../faults/harness.ts"
import { type FakeResend, startFakeResend } from "../support/FakeResend.ts"
import { startLimiterWorker } from "../support/limiterWorkerProcess.ts"
import { freshDatabaseUrl, testLayer } from "../support/TestDb.ts"

const headers = (limit: number, remaining: number) => ({
  "ratelimit-limit": String(limit),
  "ratelimit-remaining": String(remaining),
  "ratelimit-reset": "1",
  "retry-after": "1"
})

const rowOf = (key: string) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const [row] = yield* sql<{ share: number; widen: number; foreign: boolean; next_ms: number; paused: boolean }>`
      SELECT share::float8 AS share, widen::float8 AS widen, foreign_at IS NOT NULL AS foreign,
        (extract(epoch FROM next_at) * 1000)::float8 AS next_ms,
        coalesce(paused_until > clock_timestamp(), false) AS paused
      FROM kaiwa_jobs.rate_limits WHERE key = ${key}`
    return row!
  })

describe("the shared rate limit against another sender (row state)", () => {
  it("pure rules: which 429s our own pace explains, what the cut is, when an answer shows someone else", () => {
    const interval = (rps: number) => (1000 / rps) * RATE_HEADROOM
    // At 2/s our own calls fill a window of 2 (give or take the margin): a 429 there is arrival jitter.
    assert.isTrue(SharedRateLimiter.ownPaceExplains429(interval(2), 2))
    // At 1.5/s only one of our calls can be in the window before the refused one: someone else took a place.
    assert.isFalse(SharedRateLimiter.ownPaceExplains429(interval(1.5), 2))
    // The cut: straight to one place per window free (1 of 2 per second = 2/3 of 1.5/s), then by YIELD.
    assert.closeTo(SharedRateLimiter.yieldedShare(1, 1.5, 2), 2 / 3, 1e-9)
    assert.closeTo(SharedRateLimiter.yieldedShare(2 / 3, 1.5, 2), (2 / 3) * SharedRateLimiter.YIELD, 1e-9)
    assert.strictEqual(SharedRateLimiter.yieldedShare(0.05, 1.5, 2), SharedRateLimiter.MIN_SHARE)
    // An accepted answer: two calls in the window while our pace (1/s) puts only one there.
    assert.isTrue(SharedRateLimiter.othersInWindow(interval(1), headers(2, 0)))
    assert.isFalse(SharedRateLimiter.othersInWindow(interval(1), headers(2, 1)))
    assert.isFalse(SharedRateLimiter.othersInWindow(interval(1.5), headers(2, 0)))
    assert.isFalse(SharedRateLimiter.othersInWindow(interval(1), null))
  })

  it.live("a 429 our pace cannot explain cuts every worker's pace once, to one free place per window", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const a = SharedRateLimiter.make(sql, { rps: 1.5, key: "cut" })
      const b = SharedRateLimiter.make(sql, { rps: 1.5, key: "cut" })
      yield* a.take
      yield* b.take
      assert.strictEqual((yield* rowOf("cut")).share, 1)
      yield* a.answered({ refused: true, headers: headers(2, 0) })
      const cut = yield* rowOf("cut")
      assert.closeTo(cut.share, 2 / 3, 1e-9)
      assert.isTrue(cut.foreign)
      assert.strictEqual(cut.widen, 1)
      // The other worker was refused by the same collision (its turn was taken before the cut): no second cut.
      yield* b.answered({ refused: true, headers: headers(2, 0) })
      assert.closeTo((yield* rowOf("cut")).share, 2 / 3, 1e-9)
      // Every worker's next turns are spaced for 1 call/s (with the headroom): 1030 ms instead of 687 ms.
      const before = (yield* rowOf("cut")).next_ms
      yield* Effect.forkChild(a.take)
      yield* Effect.sleep("100 millis")
      assert.closeTo((yield* rowOf("cut")).next_ms - before, 1000 * RATE_HEADROOM, 1)
      // Another collision at the cut pace: multiplicative decrease.
      yield* a.answered({ refused: true, headers: headers(2, 0) })
      assert.closeTo((yield* rowOf("cut")).share, (2 / 3) * SharedRateLimiter.YIELD, 1e-9)
    }).pipe(Effect.provide(testLayer)))

  it.live("with nobody else sending, a 429 our own pace explains only widens the spacing a little", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const limiter = SharedRateLimiter.make(sql, { rps: 2, key: "jitter" })
      yield* limiter.take
      yield* limiter.answered({ refused: true, headers: headers(2, 0) })
      const row = yield* rowOf("jitter")
      assert.strictEqual(row.share, 1)
      assert.isFalse(row.foreign)
      assert.closeTo(row.widen, RATE_WIDEN, 1e-9)
      // At 2/s every other accepted answer says the window is full: our own pace, nothing to act on.
      yield* limiter.answered({ refused: false, headers: headers(2, 0) })
      yield* Effect.sleep("100 millis")
      const after = yield* rowOf("jitter")
      assert.isFalse(after.foreign)
      assert.isFalse(after.paused)
    }).pipe(Effect.provide(testLayer)))

  it.live("an accepted answer showing someone else in the window pauses every worker and holds the share back", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const limiter = SharedRateLimiter.make(sql, { rps: 1, key: "seen" })
      yield* limiter.take
      yield* limiter.answered({ refused: false, headers: headers(2, 0) })
      // The sighting is recorded without holding up the caller: poll for it.
      let row = yield* rowOf("seen")
      for (let i = 0; i < 50 && !row.foreign; i++) row = yield* Effect.andThen(Effect.sleep("20 millis"), rowOf("seen"))
      assert.isTrue(row.foreign)
      assert.isTrue(row.paused)
      assert.strictEqual(row.share, 1)
    }).pipe(Effect.provide(testLayer)))

  it.live("the share grows back by PROBE_STEP per departure once nobody else was seen for `quiet`", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const limiter = SharedRateLimiter.make(sql, { rps: 20, key: "probe", quiet: Duration.seconds(2) })
      yield* limiter.take
      // rps 20 against a provider limit of 30: our pace puts at most 21 calls in a window, so a 429 is someone else.
      yield* limiter.answered({ refused: true, headers: headers(30, 0) })
      const cut = (yield* rowOf("probe")).share
      assert.closeTo(cut, SharedRateLimiter.YIELD, 1e-9)
      // Within `quiet` of the collision: no growth.
      yield* limiter.take
      yield* limiter.take
      assert.strictEqual((yield* rowOf("probe")).share, cut)
      yield* Effect.sleep("2100 millis")
      for (let i = 0; i < 5; i++) yield* limiter.take
      assert.closeTo((yield* rowOf("probe")).share, cut + 5 * SharedRateLimiter.PROBE_STEP, 1e-9)
      // Someone else shows up in an accepted answer (rps 2 at the cut share: 1 call per window; 3 of 3 used):
      // growth stops again.
      yield* limiter.answered({ refused: false, headers: headers(30, 0) })
      yield* Effect.sleep("100 millis")
      const held = (yield* rowOf("probe")).share
      for (let i = 0; i < 3; i++) yield* limiter.take
      assert.strictEqual((yield* rowOf("probe")).share, held)
      // And it never goes above the whole budget.
      yield* sql`UPDATE kaiwa_jobs.rate_limits SET foreign_at = NULL, share = 0.99 WHERE key = 'probe'`
      for (let i = 0; i < 3; i++) yield* limiter.take
      assert.strictEqual((yield* rowOf("probe")).share, 1)
    }).pipe(Effect.provide(testLayer)))
})

describe("the shared schedule (row state)", () => {
  it.live("a call a little late (under LATE_TOLERANCE) leaves the next one on its slot; a later one pushes it, and the push fades", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const limiter = SharedRateLimiter.make(sql, { rps: 2, key: "late" })
      const interval = 500 * RATE_HEADROOM
      const tolerance = interval * SharedRateLimiter.LATE_TOLERANCE
      const times = sql<{ next_ms: number; last_ms: number | null }>`
        SELECT (extract(epoch FROM next_at) * 1000)::float8 AS next_ms, (extract(epoch FROM last_at) * 1000)::float8 AS last_ms
        FROM kaiwa_jobs.rate_limits WHERE key = 'late'`.pipe(Effect.map((rows) => rows[0]!))
      // The previous call left `lateBy` ms after the departure fixed for it (as its lateness report would say).
      const previousLeftLate = (departure: number, lateBy: number) =>
        sql`UPDATE kaiwa_jobs.rate_limits SET last_at = to_timestamp(${departure + lateBy} / 1000.0) WHERE key = 'late'`
      // Takes a turn and returns its slot and the departure the database fixed for it, read between the
      // confirmation and the call (before this call's own lateness report can move it).
      const turn = Effect.gen(function*() {
        const before = yield* times
        const taking = yield* Effect.forkChild(limiter.take)
        let now = before
        while (now.last_ms === before.last_ms) now = yield* Effect.andThen(Effect.sleep("2 millis"), times)
        yield* Fiber.join(taking)
        // Let a lateness report of this call land before the test writes the row again.
        yield* Effect.sleep("50 millis")
        return { slot: before.next_ms, departure: now.last_ms! }
      })
      // The first turn creates the row (its slot is now); say it departed on its slot but left late by half the
      // tolerance: the next call keeps its slot, an interval after the first one (with a whole interval from the
      // late departure, it would have been pushed by that much).
      yield* limiter.take
      yield* Effect.sleep("50 millis")
      const first = { slot: (yield* times).next_ms - interval }
      yield* previousLeftLate(first.slot, tolerance / 2)
      const second = yield* turn
      assert.closeTo(second.departure - second.slot, 0, tolerance / 4)
      assert.closeTo(second.slot - first.slot, interval, 0.5)
      // Late by 20 ms: the next call is pushed, to the tolerance short of an interval after the real departure.
      yield* previousLeftLate(second.departure, 20)
      const third = yield* turn
      assert.closeTo(third.departure - (second.departure + 20), interval - tolerance, 0.5)
      // On time from then on: the push fades by the tolerance per call, back to the slots.
      yield* previousLeftLate(third.departure, 0)
      const fourth = yield* turn
      assert.closeTo(fourth.departure - fourth.slot, 20 - 2 * tolerance, 0.5)
      assert.isAtLeast(fourth.departure - third.departure, interval - tolerance - 0.5)
    }).pipe(Effect.provide(testLayer)))
})

const workers = new Set<ChildProcess>()
const cleanups: Array<() => Promise<void>> = []
afterAll(async () => {
  for (const w of workers) w.kill("SIGKILL")
  for (const c of cleanups.reverse()) await c()
})

const startWorker = (url: Redacted.Redacted<string>, fake: FakeResend, name: string, rps: number, seconds: number) => {
  const worker = startLimiterWorker(workers, url, fake, { name, rps, seconds })
  return { done: worker.done.then((ended) => ended.code), output: worker.output }
}

describe("the shared rate limit against another sender (processes)", () => {
  it("two workers at RESEND_RPS=1.5 beside a sender at 0.5/s: after the first collision, no 429 for either", async () => {
    const url = await Effect.runPromise(freshDatabaseUrl)
    await seed(url, [])
    const fake = await startFakeResend({ faults: { latencyMs: 20, rateLimitPerSecond: 2 } })
    cleanups.push(() => fake.close())
    const seconds = 20
    const runs = [startWorker(url, fake, "a", 1.5, seconds), startWorker(url, fake, "b", 1.5, seconds)]
    let done = false
    const ended = Promise.all(runs.map((r) => r.done)).then((codes) => {
      done = true
      return codes
    })
    // The other sender: one email every 2 s, waiting out a 429's retry-after, as the web app would.
    const other: Array<{ at: number; status: number }> = []
    while (!done && !fake.log.some((r) => r.path === "/emails/batch")) await new Promise((r) => setTimeout(r, 20))
    while (!done) {
      const at = Date.now()
      const response = await fetch(`${fake.url}/emails`, {
        method: "POST",
        headers: { authorization: `Bearer ${fake.apiKey}`, "content-type": "application/json" },
        body: JSON.stringify({ from: "Kaiwa <hello@example.com>", to: `web-${other.length}@example.com`, subject: "Hi", text: "Hi" })
      })
      await response.text()
      other.push({ at, status: response.status })
      const wait = Math.max(2000 - (Date.now() - at), response.status === 429 ? Number(response.headers.get("retry-after")) * 1000 : 0)
      await new Promise((r) => setTimeout(r, wait))
    }
    const codes = await ended
    for (const [i, code] of codes.entries()) assert.strictEqual(code, 0, runs[i]!.output())
    const library = fake.log.filter((r) => r.path === "/emails/batch")
    const web = fake.log.filter((r) => r.path === "/emails")
    const firstRefusal = library.find((r) => r.status === 429)
    const line = (rs: typeof library) => rs.map((r) => `${r.at - library[0]!.at}:${r.status}`).join(" ")
    console.log(`library ${library.filter((r) => r.status === 429).length}/${library.length} 429, ` +
      `other sender ${web.filter((r) => r.status === 429).length}/${web.length} 429\n library ${line(library)}\n other ${line(web)}`)
    // The library learns of the other sender from a collision of its own (the other sender's 429s are invisible
    // to it); from then on (plus the pause and one turn), the two share the window without a single 429.
    assert.isDefined(firstRefusal, "the library never collided with the other sender")
    const settled = firstRefusal!.at + 2500
    const after = [...library, ...web].filter((r) => r.at > settled)
    assert.isAtLeast(web.filter((r) => r.at > settled).length, 3, "too little of the run after the adaptation")
    assert.deepStrictEqual(after.filter((r) => r.status === 429).map((r) => `${r.path} +${r.at - settled} ms`), [])
    // The library's own calls after the adaptation are a whole window apart (1 call/s, one place left free).
    const ownAfter = library.filter((r) => r.at > settled).map((r) => r.at)
    const gaps = ownAfter.slice(1).map((t, i) => t - ownAfter[i]!)
    assert.isAtLeast(Math.min(...gaps), 1000 - 30, `gaps: ${gaps.join(" ")}`)
    const [row] = await query(url, (sql) =>
      sql<{ share: number }>`SELECT share::float8 AS share FROM kaiwa_jobs.rate_limits WHERE key = 'resend'`)
    assert.closeTo(row!.share, 2 / 3, 1e-9)
  }, 60_000)
})

describe("another sender taking its turns from the same row (kaiwa_jobs.take_rate_limit_turn)", () => {
  it("a worker at the whole limit and a second sender using the SQL function: no 429 for either", async () => {
    const url = await Effect.runPromise(freshDatabaseUrl)
    await seed(url, [])
    const rps = 10
    const fake = await startFakeResend({ faults: { latencyMs: 20, rateLimitPerSecond: rps } })
    cleanups.push(() => fake.close())
    // The web app's side: one connection of its own, a turn from the row before each email, the 429 pause into it.
    const runtime = ManagedRuntime.make(pgLayer(url))
    cleanups.push(() => runtime.dispose())
    const turn = () =>
      runtime.runPromise(Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        return yield* sql<{ wait_ms: number }>`SELECT kaiwa_jobs.take_rate_limit_turn('resend', ${rps}) AS wait_ms`
      }))
    await turn() // the connection is open before the first timed turn
    const worker = startWorker(url, fake, "a", rps, 6)
    let done = false
    const ended = worker.done.then((code) => {
      done = true
      return code
    })
    while (!done && !fake.log.some((r) => r.path === "/emails/batch")) await new Promise((r) => setTimeout(r, 10))
    let sent = 0
    while (!done) {
      const [row] = await turn()
      const wait_ms = row!.wait_ms
      if (wait_ms > 0) await new Promise((r) => setTimeout(r, wait_ms))
      const response = await fetch(`${fake.url}/emails`, {
        method: "POST",
        headers: { authorization: `Bearer ${fake.apiKey}`, "content-type": "application/json" },
        body: JSON.stringify({ from: "Kaiwa <hello@example.com>", to: `web-${sent++}@example.com`, subject: "Hi", text: "Hi" })
      })
      await response.text()
      if (response.status === 429) {
        const seconds = Number(response.headers.get("retry-after") ?? 1)
        await runtime.runPromise(Effect.gen(function*() {
          const sql = yield* SqlClient.SqlClient
          yield* sql`SELECT kaiwa_jobs.pause_rate_limit('resend', ${seconds})`
        }))
      }
      await new Promise((r) => setTimeout(r, 250))
    }
    assert.strictEqual(await ended, 0, worker.output())
    const library = fake.log.filter((r) => r.path === "/emails/batch")
    const web = fake.log.filter((r) => r.path === "/emails")
    console.log(`row shared with a second sender: library ${library.length} calls, web app ${web.length}, 429s ${fake.total429}`)
    assert.isAtLeast(web.length, 10)
    assert.isAtLeast(library.length, 20)
    assert.strictEqual(fake.total429, 0, [...library, ...web].sort((a, b) => a.at - b.at).map((r) => `${r.path}:${r.status}`).join(" "))
  }, 60_000)
})
