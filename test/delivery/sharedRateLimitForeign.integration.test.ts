/**
 * The shared rate limit yields to another sender on the same provider account (issue 13: `RESEND_RPS=1.5` beside
 * the web app's 0.5 request/s must not end in a 429 storm). First the row's state on a real database, driven the
 * way the mailer drives the limiter (`answered` with the provider's headers); then real worker processes at 1.5/s
 * beside a second sender at 0.5/s against the fake Resend's sliding 1 s window of 2.
 */
import type { ChildProcess } from "node:child_process"
import { afterAll, assert, describe, it } from "@effect/vitest"
import { Duration, Effect, ManagedRuntime, Redacted } from "effect"
import { SqlClient } from "effect/sql"
import { pgLayer } from "../../src/database/Database.ts"
import { RATE_HEADROOM, RATE_WIDEN } from "../../src/mail/RateLimiter.ts"
import * as SharedRateLimiter from "../../src/mail/SharedRateLimiter.ts"
import { query, seed } from "../faults/harness.ts"
import { type FakeResend, startFakeResend } from "../support/FakeResend.ts"
import { departuresOf, logDepartures } from "../support/departures.ts"
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
      // Every change of the row's last departure, with the database's clock when it was written (this test's own
      // database): the confirmation's value is read from here, whatever the caller's lateness report does later.
      yield* sql`CREATE TABLE departures (n bigserial PRIMARY KEY, last_ms float8 NOT NULL, written_ms float8 NOT NULL)`
      yield* sql.unsafe(`CREATE FUNCTION log_departure() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
        INSERT INTO departures (last_ms, written_ms)
        VALUES (extract(epoch FROM NEW.last_at) * 1000, extract(epoch FROM clock_timestamp()) * 1000);
        RETURN NEW; END $$`)
      yield* sql.unsafe(`CREATE TRIGGER log_departure AFTER UPDATE ON kaiwa_jobs.rate_limits FOR EACH ROW
        WHEN (NEW.last_at IS DISTINCT FROM OLD.last_at) EXECUTE FUNCTION log_departure()`)
      const nextMs = sql<{ next_ms: number }>`
        SELECT (extract(epoch FROM next_at) * 1000)::float8 AS next_ms FROM kaiwa_jobs.rate_limits WHERE key = 'late'`
        .pipe(Effect.map((rows) => rows[0]!.next_ms))
      const lastLogged = sql<{ n: string }>`SELECT coalesce(max(n), 0)::text AS n FROM departures`
        .pipe(Effect.map((rows) => rows[0]!.n))
      // The previous call left at `at` (as its lateness report would say).
      const previousLeft = (at: number) =>
        sql`UPDATE kaiwa_jobs.rate_limits SET last_at = to_timestamp(${at} / 1000.0) WHERE key = 'late'`
      // Takes a turn after the previous call left at `previous`: its slot, the departure the confirmation fixed,
      // and what the rule says it should be (the slot, an interval less the tolerance after the previous
      // departure, or the confirmation's own clock if it ran after both, on a busy machine).
      const turn = (previous: number) =>
        Effect.gen(function*() {
          yield* previousLeft(previous)
          const slot = yield* nextMs
          const from = yield* lastLogged
          yield* limiter.take
          const [confirmed] = yield* sql<{ last_ms: number; written_ms: number }>`
            SELECT last_ms, written_ms FROM departures WHERE n > ${from}::bigint ORDER BY n LIMIT 1`
          // Let this call's lateness report land before the test writes the row again.
          yield* Effect.sleep("50 millis")
          const rule = Math.max(slot, previous + interval - tolerance, confirmed!.written_ms)
          return { slot, departure: confirmed!.last_ms, rule, ahead: confirmed!.written_ms < slot }
        })
      // The first turn creates the row; its slot is the first one.
      yield* limiter.take
      yield* Effect.sleep("50 millis")
      const firstSlot = (yield* nextMs) - interval
      // It left 1 ms late, less than the tolerance (2 ms at 2/s): the next call keeps its slot, an interval after the
      // first one (with a whole interval from the late departure, it would have been pushed by 1 ms).
      assert.isAbove(tolerance, 1.5)
      const second = yield* turn(firstSlot + 1)
      assert.closeTo(second.slot - firstSlot, interval, 0.5)
      assert.closeTo(second.departure, second.rule, 0.3)
      // Late by 20 ms: the next call is pushed, to the tolerance short of an interval after the real departure.
      const third = yield* turn(second.departure + 20)
      assert.closeTo(third.departure, third.rule, 0.3)
      // On time from then on: the push fades by the tolerance per call, back to the slots.
      const fourth = yield* turn(third.departure)
      assert.closeTo(fourth.departure, fourth.rule, 0.3)
      // Where the confirmation ran ahead of its slot (always, unless the machine stalled the caller for 50 ms),
      // that is: on the slot, then pushed by 20 ms less the tolerance, then by 20 less twice the tolerance.
      const expected = [[second, 0], [third, 20 - tolerance], [fourth, 20 - 2 * tolerance]] as const
      assert.isTrue(expected.some(([t]) => t.ahead), "no confirmation ran ahead of its slot: nothing was checked")
      for (const [t, push] of expected) if (t.ahead) assert.closeTo(t.departure - t.slot, push, 0.3)
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
  it("two workers at RESEND_RPS=1.5 beside a sender at 0.5/s: after the first collision, the library leaves the other sender its place", async () => {
    const url = await Effect.runPromise(freshDatabaseUrl)
    await seed(url, [])
    await logDepartures(url)
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
    // to it); from then on (plus the pause and one turn), it takes at most one of the window's two places, a whole
    // window apart, leaving the other to the other sender. Judged on the departures the database fixed: the fake
    // runs in this process, and on a loaded machine an arrival stamped late makes the next one look early (CI saw
    // two library calls 989 ms apart at the fake, and one 429, with departures over 1,000 ms apart).
    assert.isDefined(firstRefusal, "the library never collided with the other sender")
    const settled = firstRefusal!.at + 2500
    assert.isAtLeast(web.filter((r) => r.at > settled).length, 3, "too little of the run after the adaptation")
    const departures = (await departuresOf(url)).map((d) => d.at).filter((t) => t > settled)
    assert.isAtLeast(departures.length, 5, "too few library departures after the adaptation")
    const gaps = departures.slice(1).map((t, i) => t - departures[i]!)
    assert.isAtLeast(Math.min(...gaps), 1000, `departure gaps: ${gaps.map((g) => g.toFixed(0)).join(" ")}`)
    // Every call the library made after the adaptation had a departure the database fixed.
    assert.isAtMost(library.filter((r) => r.at > settled + 1000).length, departures.length)
    const [row] = await query(url, (sql) =>
      sql<{ share: number }>`SELECT share::float8 AS share FROM kaiwa_jobs.rate_limits WHERE key = 'resend'`)
    // The first collision cuts the share to 2/3 (one place per window free). A later 429 cuts it again by YIELD:
    // on a loaded machine the fake, which runs in this process, can stamp two arrivals closer than the library's
    // departures were (a CI run ended at 0.5 = 2/3 x 0.75 so). So the share is 2/3 x YIELD^j, with j no more than
    // the library's refusals after its first one, and 2/3 exactly when there were none.
    const refusalsAfterFirst = library.filter((r) => r.status === 429 && r.at > firstRefusal!.at).length
    const cuts = Math.round(Math.log(row!.share / (2 / 3)) / Math.log(SharedRateLimiter.YIELD))
    assert.closeTo(row!.share, (2 / 3) * SharedRateLimiter.YIELD ** cuts, 1e-9)
    assert.isAtLeast(cuts, 0, `share ${row!.share} above 2/3`)
    assert.isAtMost(cuts, refusalsAfterFirst, `share ${row!.share}: cut without a refusal to explain it`)
  }, 60_000)
})

describe("another sender taking its turns from the same row (kaiwa_jobs.take_rate_limit_turn)", () => {
  it("a worker at the whole limit and a second sender using the SQL function: together never over the limit", async () => {
    const url = await Effect.runPromise(freshDatabaseUrl)
    await seed(url, [])
    await logDepartures(url)
    const rps = 10
    const fake = await startFakeResend({ faults: { latencyMs: 20, rateLimitPerSecond: rps } })
    cleanups.push(() => fake.close())
    // The web app's side: one connection of its own, a turn from the row before each email, the 429 pause into it.
    const runtime = ManagedRuntime.make(pgLayer(url))
    cleanups.push(() => runtime.dispose())
    const turn = () =>
      runtime.runPromise(Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        // The departure the row gave this turn, on the database's clock: now plus the wait it answered.
        return yield* sql<{ wait_ms: number; now_ms: number }>`SELECT kaiwa_jobs.take_rate_limit_turn('resend', ${rps}) AS wait_ms,
          (extract(epoch FROM clock_timestamp()) * 1000)::float8 AS now_ms`
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
    const webDepartures: Array<number> = []
    while (!done) {
      const [row] = await turn()
      const wait_ms = row!.wait_ms
      webDepartures.push(row!.now_ms + Math.max(0, wait_ms))
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
    // Judged on the departures the database fixed (the worker's confirmations, the web app's turns), not on the
    // fake's arrival stamps, which a loaded machine skews (see logDepartures): never more than `rps` in a second.
    const library429 = library.filter((r) => r.status === 429).length
    const departures = [...(await departuresOf(url)).map((d) => d.at), ...webDepartures].sort((a, b) => a - b)
    assert.isAtLeast(departures.length, library.length - library429 + web.length, "every call had a departure the database fixed")
    let busiest = 0
    for (let i = 0, j = 0; i < departures.length; i++) {
      while (departures[j]! <= departures[i]! - 1000 + 2) j++ // 2 ms: the web turn's instant is read a moment after it is taken
      busiest = Math.max(busiest, i - j + 1)
    }
    console.log(`  busiest second on the database's clock: ${busiest} departures (limit ${rps})`)
    assert.isAtMost(busiest, rps)
  }, 60_000)
})
