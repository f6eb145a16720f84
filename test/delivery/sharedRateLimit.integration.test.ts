/**
 * CONTRACT 8b: RESEND_RPS is one budget for every process, kept in PostgreSQL. Real processes against the fake
 * Resend, whose arrival timestamps are the evidence: two compiled mains on one tick, and worker processes that do
 * nothing but take turns and send (test/support/limiterWorker.ts), so a worker can be SIGKILLed mid-reservation
 * and PostgreSQL can be restarted under them. The rate is 10/s rather than Resend's 2/s to keep each test to a
 * few seconds; the property (never more than RESEND_RPS calls in any 1 s window) is the same.
 */
import type { ChildProcess } from "node:child_process"
import * as fs from "node:fs"
import * as net from "node:net"
import * as os from "node:os"
import * as path from "node:path"
import { afterAll, assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Redacted, Scope } from "effect"
import { start as startPostgres } from "../../src/local/EmbeddedPostgres.ts"
import { dueLearners, liveEnv, query, seed, startMain, verifyExactlyOnce } from "../faults/harness.ts"
import { compiledMain } from "../faults/hooks.ts"
import { type FakeResend, startFakeResend } from "../support/FakeResend.ts"
import { departuresOf, logDepartures } from "../support/departures.ts"
import { startLimiterWorker } from "../support/limiterWorkerProcess.ts"
import { freshDatabaseUrl } from "../support/TestDb.ts"

const RPS = 10

const main = compiledMain()
const workers = new Set<ChildProcess>()
const cleanups: Array<() => Promise<void>> = []
afterAll(async () => {
  for (const w of workers) w.kill("SIGKILL")
  for (const c of cleanups.reverse()) await c()
})

/**
 * Arrival stamps are taken by the fake inside the test runner's process, on a machine shared by other test
 * processes: a stamp can be late by a scheduling hiccup, which looks like two calls closer together than they
 * were sent. The windows are therefore 1 s less 30 ms (the limiter's 3% headroom at any rate): a limiter running
 * even 4% too fast, or one budget per process (2x), still fails the check; timestamp noise under 30 ms does not.
 */
const STAMP_NOISE_MS = 30

/** The most requests that arrived in any window `(t - 1000 + noise, t]`, and the gaps between them (ms). */
const busiestWindow = (times: ReadonlyArray<number>, noise = STAMP_NOISE_MS) => {
  const t = [...times].sort((a, b) => a - b)
  let most = 0
  let gaps: Array<number> = []
  for (let i = 0, j = 0; i < t.length; i++) {
    while (t[j]! <= t[i]! - 1000 + noise) j++
    if (i - j + 1 > most) {
      most = i - j + 1
      gaps = [t[j]!, ...t.slice(j + 1, i + 1).map((x, k) => x - t[j + k]!)]
    }
  }
  return { most, gaps }
}
const busiestSecond = (times: ReadonlyArray<number>) => busiestWindow(times).most

/** Starts a limiter worker process sending for `seconds` at RESEND_RPS. */
const startWorker = (url: Redacted.Redacted<string>, fake: FakeResend, name: string, seconds: number) =>
  startLimiterWorker(workers, url, fake, { name, rps: RPS, seconds })

/** Arrival times at the fake of the requests sent by the worker `name` (its recipients are `name-<n>@...`). */
const arrivalsOf = (fake: FakeResend, name: string) =>
  fake.accepted.filter((a) => a.to[0]!.startsWith(`${name}-`)).map((a) => fake.log[a.request - 1]!.at)

/**
 * A TCP proxy on a fixed loopback port to whatever port PostgreSQL listens on now: a restarted embedded server
 * picks a new port, and the workers keep the one DATABASE_URL they were started with, as a Fly machine would.
 */
const startProxy = async () => {
  let target = 0
  const sockets = new Set<net.Socket>()
  const server = net.createServer((client) => {
    const upstream = net.connect(target, "127.0.0.1")
    for (const s of [client, upstream]) {
      sockets.add(s)
      s.on("error", () => {
        client.destroy()
        upstream.destroy()
      })
      s.on("close", () => {
        sockets.delete(s)
        client.destroy()
        upstream.destroy()
      })
    }
    client.pipe(upstream)
    upstream.pipe(client)
  })
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
  return {
    port: (server.address() as net.AddressInfo).port,
    to: (port: number) => (target = port),
    close: () => {
      for (const s of sockets) s.destroy()
      return new Promise<void>((resolve) => server.close(() => resolve()))
    }
  }
}

/** `url` with its port replaced. */
const viaPort = (url: Redacted.Redacted<string>, port: number) => {
  const u = new URL(Redacted.value(url))
  u.port = String(port)
  return Redacted.make(u.toString())
}

/**
 * Arrivals of the workers' calls, less each worker's very first one: a process's first POST runs code paths for
 * the first time and can reach the fake tens of milliseconds after its turn (the mailer warms its HTTP client up
 * for this; the first POST is still slower). The two-mains test above keeps every call.
 */
const steadyArrivals = (fake: FakeResend) => {
  const firsts = new Set<number>()
  const seen = new Set<string>()
  for (const a of fake.accepted) {
    const name = a.to[0]!.split("-")[0]!
    if (!seen.has(name)) {
      seen.add(name)
      firsts.add(a.request)
    }
  }
  return fake.log.filter((r) => r.path === "/emails/batch" && !firsts.has(r.n)).map((r) => r.at)
}

const waitUntil = async (what: string, condition: () => boolean, timeoutMs = 30_000) => {
  const until = performance.now() + timeoutMs
  while (!condition()) {
    if (performance.now() > until) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 10))
  }
}


describe("one rate limit for every process", () => {
  it("two compiled mains on one tick with RESEND_RPS=10 never send more than 10 calls in any 1 s window", async () => {
    const url = await Effect.runPromise(freshDatabaseUrl)
    const due = dueLearners(3000)
    await seed(url, due)
    await logDepartures(url)
    const fake = await startFakeResend({ faults: { latencyMs: 20 } })
    cleanups.push(() => fake.close())
    const env = liveEnv(url, fake, { RESEND_RPS: String(RPS), LEASE_SECONDS: "30" })
    const runs = [startMain(main.script, env), startMain(main.script, env)]
    const ended = await Promise.all(runs.map((r) => r.done))
    for (const e of ended) assert.strictEqual(e.code, 0, e.stdout + e.stderr)
    assert.deepStrictEqual((await verifyExactlyOnce(url, fake, due)).problems, [])
    const calls = fake.log.filter((r) => r.path === "/emails/batch").length
    // The limit judged on the departures the database fixed, not on arrival stamps (see logDepartures).
    const times = (await departuresOf(url)).map((d) => d.at)
    const seconds = (times.at(-1)! - times[0]!) / 1000
    console.log(`two mains: ${calls} calls, ${times.length} departures in ${seconds.toFixed(2)} s, busiest second ${busiestSecond(times)}`)
    assert.isAtLeast(times.length, calls, "every call had a departure the database fixed")
    assert.isAtMost(busiestSecond(times), RPS, `gaps in the busiest second: ${busiestWindow(times).gaps.join(" ")}`)
    const rows = await query(url, (sql) => sql<{ key: string }>`SELECT key FROM kaiwa_jobs.rate_limits`)
    assert.deepStrictEqual(rows.map((r) => r.key), ["resend"])
  })

  it("a 429 seen by one worker holds every worker back until its retry-after", async () => {
    const url = await Effect.runPromise(freshDatabaseUrl)
    await seed(url, [])
    const fake = await startFakeResend({ faults: { latencyMs: 20, storm429RetryAfterSeconds: 2 } })
    cleanups.push(() => fake.close())
    const a = startWorker(url, fake, "a", 6)
    const b = startWorker(url, fake, "b", 6)
    await waitUntil("both workers sending", () => arrivalsOf(fake, "a").length >= 3 && arrivalsOf(fake, "b").length >= 3)
    fake.faults.storm429 = 1
    await waitUntil("the 429", () => fake.stats.storm429 === 1)
    const [ea, eb] = await Promise.all([a.done, b.done])
    assert.strictEqual(ea.code, 0, a.output())
    assert.strictEqual(eb.code, 0, b.output())
    const batches = fake.log.filter((r) => r.path === "/emails/batch")
    const refused = batches.find((r) => r.status === 429)!
    // The refused worker writes the pause as soon as the 429 reaches it; a call the other worker had already
    // confirmed may still be on its way (it leaves within 50 ms of its confirmation, later on a busy machine),
    // nothing after that. Without the shared pause the other worker would send ~17 calls in that time.
    const during = batches.filter((r) => r.at > refused.at + 200 && r.at < refused.at + 2000 - 50)
    const after = batches.filter((r) => r.at >= refused.at + 2000 - 50)
    console.log(`pause: ${during.length} calls in the 2 s after the 429, ${after.length} after it; ` +
      `arrivals after the 429 (ms): ${batches.filter((r) => r.at > refused.at).map((r) => r.at - refused.at).slice(0, 5).join(" ")}`)
    assert.strictEqual(during.length, 0, "a worker sent while the provider had asked everyone to wait")
    // Both workers resume after the pause.
    const names = new Set(after.map((r) => fake.accepted.find((x) => x.request === r.n)?.to[0]?.split("-")[0]))
    assert.isTrue(names.has("a") && names.has("b"), `resumed: ${[...names].join(", ")}`)
  })

  it("a worker SIGKILLed while holding a reservation wastes at most its turn: the survivor gets the whole budget", async () => {
    const url = await Effect.runPromise(freshDatabaseUrl)
    await seed(url, [])
    await logDepartures(url)
    const fake = await startFakeResend({ faults: { latencyMs: 20 } })
    cleanups.push(() => fake.close())
    const a = startWorker(url, fake, "a", 20)
    const b = startWorker(url, fake, "b", 5)
    await waitUntil("both workers sending", () => arrivalsOf(fake, "a").length >= 5 && arrivalsOf(fake, "b").length >= 5)
    // At 10/s with two workers, each always holds a reserved turn it is sleeping towards: kill one mid-wait.
    const killedAt = Date.now()
    a.child.kill("SIGKILL")
    assert.strictEqual((await a.done).signal, "SIGKILL")
    const ended = await b.done
    assert.strictEqual(ended.code, 0, b.output())
    const after = arrivalsOf(fake, "b").filter((t) => t > killedAt + 300)
    const span = (after.at(-1)! - after[0]!) / 1000
    const rate = (after.length - 1) / span
    // The limit judged on the departures the database fixed, not on arrival stamps (see logDepartures).
    const times = (await departuresOf(url)).map((d) => d.at)
    console.log(`kill: survivor ${rate.toFixed(1)} calls/s after the kill (${after.length} calls), busiest second ${busiestSecond(times)}`)
    assert.isAtLeast(times.length, after.length, "every call the survivor made had a departure the database fixed")
    assert.isAtMost(busiestSecond(times), RPS, `gaps in the busiest second: ${busiestWindow(times).gaps.join(" ")}`)
    // The dead worker holds nothing: the schedule in the row is not pushed out by turns nobody will use (at most
    // the one it held), and the survivor kept getting turns after the kill (9.7/s is the whole budget here).
    assert.isAbove(rate, RPS * 0.5)
    const [row] = await query(url, (sql) =>
      sql<{ ahead_ms: number }>`SELECT (extract(epoch FROM next_at - clock_timestamp()) * 1000)::float8 AS ahead_ms
        FROM kaiwa_jobs.rate_limits`)
    assert.isAtMost(row!.ahead_ms, 1000 / RPS * 1.03 * 2)
    assert.strictEqual(fake.total429, 0)
  })

  it("survives a PostgreSQL restart: no call without a turn the database confirmed, never over the limit, and it recovers", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "kaiwa-ratelimit-pg-"))
    cleanups.push(async () => fs.rmSync(dir, { recursive: true, force: true }))
    const serverOn = async () => {
      const scope = Effect.runSync(Scope.make())
      const server = await Effect.runPromise(Scope.provide(startPostgres({ dataDir: dir }), scope))
      let open = true
      const stop = async () => {
        if (open) await Effect.runPromise(Scope.close(scope, Exit.void))
        open = false
      }
      cleanups.push(stop)
      return { server, stop }
    }
    const proxy = await startProxy()
    cleanups.push(() => proxy.close())
    const first = await serverOn()
    proxy.to(first.server.port)
    await Effect.runPromise(first.server.createDatabase("ratelimit"))
    const url = viaPort(first.server.url("ratelimit"), proxy.port)
    await seed(url, [])
    await logDepartures(url)
    const fake = await startFakeResend({ faults: { latencyMs: 20 } })
    cleanups.push(() => fake.close())
    const a = startWorker(url, fake, "a", 12)
    const b = startWorker(url, fake, "b", 12)
    await waitUntil("both workers sending", () => arrivalsOf(fake, "a").length >= 5 && arrivalsOf(fake, "b").length >= 5)
    await first.stop()
    await new Promise((r) => setTimeout(r, 1500))
    const second = await serverOn()
    proxy.to(second.server.port)
    const [ea, eb] = await Promise.all([a.done, b.done])
    assert.strictEqual(ea.code, 0, a.output())
    assert.strictEqual(eb.code, 0, b.output())
    const departures = await departuresOf(url)
    const [{ restarted }] = await query(url, (sql) =>
      sql<{ restarted: number }>`SELECT (extract(epoch FROM pg_postmaster_start_time()) * 1000)::float8 AS restarted`) as [{ restarted: number }]
    await second.stop()
    const times = departures.map((d) => d.at)
    const before = times.filter((t) => t < restarted)
    const after = departures.filter((d) => d.at >= restarted)
    console.log(`restart: ${departures.length} departures (${before.length} before the restart, ${after.length} after; ` +
      `down from ${new Date(before.at(-1)!).toISOString()} to ${new Date(restarted).toISOString()}), ` +
      `${fake.accepted.length} calls, busiest second by the database's clock ${busiestWindow(times, 0).most}, ` +
      `by arrival at the fake ${busiestSecond(steadyArrivals(fake))}`)
    // No call without a turn: every call a worker made had a departure the database confirmed (fixed in the row),
    // so a worker that sent on while the database was away would have more calls than departures.
    for (const name of ["a", "b"]) {
      const confirmed = departures.filter((d) => d.worker === `limiter-${name}`).length
      assert.isAtMost(arrivalsOf(fake, name).length, confirmed, `${name} made a call without a confirmed turn`)
    }
    assert.isAtMost(busiestWindow(times, 0).most, RPS, `gaps in the busiest second: ${busiestWindow(times, 0).gaps.join(" ")}`)
    // It recovers: both workers get turns again once the database is back, and keep getting them (a worker
    // stuck in its 2 s backoff would leave the pace at a fraction of the budget).
    assert.isAbove(after.filter((d) => d.worker === "limiter-a").length, 0)
    assert.isAbove(after.filter((d) => d.worker === "limiter-b").length, 0)
    const tail = after.map((d) => d.at).filter((t) => t > after[0]!.at + 1000)
    assert.isAbove(tail.length, 1)
    assert.isAbove((tail.length - 1) / ((tail.at(-1)! - tail[0]!) / 1000), RPS / 2)
    assert.strictEqual(fake.total429, 0)
  })
})
