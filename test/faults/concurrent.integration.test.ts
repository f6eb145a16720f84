/**
 * CONTRACT 10: several copies of a job's main share one tick through PostgreSQL row claims. Four real processes
 * run practice-reminders as of the same instant against the fake Resend (answering after 75 ms): each due email
 * is accepted once, every process exits 0, and each of the four sent some of the batches.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { type FakeResend, startFakeResend } from "../support/FakeResend.ts"
import { freshDatabaseUrl } from "../support/TestDb.ts"
import { dueLearners, liveEnv, query, seed, startMain, verifyExactlyOnce, waitFor } from "./harness.ts"
import { compiledMain } from "./hooks.ts"

const WORKERS = 4
const LEARNERS = 600

const main = compiledMain()

describe("four processes on one tick", () => {
  it("share the work through claims: each due email accepted once, all exit 0, every process sent batches", async () => {
    const url = await Effect.runPromise(freshDatabaseUrl)
    const due = dueLearners(LEARNERS)
    await seed(url, due)
    const fake: FakeResend = await startFakeResend({ faults: { latencyMs: 75 } })
    try {
      // A start line for the four: the test holds a SHARE lock on the batches table, so each process starts up,
      // records its run, plans (the ledger's unique key makes the plan of one process the plan of all), and then
      // blocks at its first claim. Once all four wait there, the lock goes and they race for batches. Without it,
      // process start-up on a loaded machine (seconds apart) would decide who works, not the claims.
      let release!: () => void
      const released = new Promise<void>((r) => (release = r))
      let locked!: () => void
      const isLocked = new Promise<void>((r) => (locked = r))
      const barrier = query(url, (sql) =>
        sql.withTransaction(
          sql`LOCK TABLE kaiwa_jobs.batches IN SHARE MODE`.pipe(
            Effect.andThen(Effect.sync(() => locked())),
            Effect.andThen(Effect.promise(() => released))
          )
        ))
      await isLocked
      // Nobody dies here, so the default 30 s lease: with `--now`, each process's clock starts at the same instant
      // but at its own start-up, so their lease times are skewed by start-up spread (seconds on a loaded machine).
      const runs = Array.from({ length: WORKERS }, () => startMain(main.script, liveEnv(url, fake, { LEASE_SECONDS: "30" })))
      const waiting = () =>
        query(url, (sql) =>
          sql<{ n: number }>`SELECT count(DISTINCT pid)::int AS n FROM pg_locks
            WHERE relation = 'kaiwa_jobs.batches'::regclass AND NOT granted`)
      let exited: string | undefined
      for (const r of runs) void r.done.then((e) => (exited ??= `a process exited ${e.code} before the start: ${e.stdout}${e.stderr}`))
      try {
        await waitFor("four processes waiting to claim", async () => {
          if (exited !== undefined) throw new Error(exited)
          return (await waiting())[0]!.n === WORKERS
        }, 40_000, 50)
      } finally {
        release()
      }
      await barrier
      const ended = await Promise.all(runs.map((r) => r.done))
      for (const e of ended) assert.strictEqual(e.code, 0, e.stdout + e.stderr)

      const verdict = await verifyExactlyOnce(url, fake, due)
      assert.deepStrictEqual(verdict.problems, [])
      assert.deepStrictEqual(verdict.ledger, { sent: LEARNERS })

      const perRun = await query(url, (sql) =>
        sql<{ id: string; outcome: string; due: number; sent: number; batches: number }>`
          SELECT r.id::text AS id, r.outcome, (r.stats->>'due')::int AS due, (r.stats->>'sent')::int AS sent,
            (SELECT count(*)::int FROM kaiwa_jobs.batches b WHERE b.owner = r.id) AS batches
          FROM kaiwa_jobs.runs r ORDER BY r.started_at`)
      console.log(`four processes: batches per run ${perRun.map((r) => r.batches).join("/")}, ` +
        `emails per run ${perRun.map((r) => r.sent).join("/")}, slowest ${Math.round(Math.max(...ended.map((e) => e.ms)))} ms`)
      assert.strictEqual(perRun.length, WORKERS)
      for (const r of perRun) {
        assert.strictEqual(r.outcome, "succeeded")
        assert.isAtLeast(r.batches, 1, `run ${r.id} claimed no batch: the work was not shared`)
        assert.isAbove(r.sent, 0)
      }
      assert.strictEqual(perRun.reduce((n, r) => n + r.sent, 0), LEARNERS)
      // One process planned the tick; the others found it planned (the ledger's unique key) and only claimed.
      assert.deepStrictEqual(perRun.map((r) => r.due).sort((a, b) => b - a), [LEARNERS, 0, 0, 0])
      const batches = await query(url, (sql) =>
        sql<{ n: number; done: number; resumed: number }>`
          SELECT count(*)::int AS n, count(*) FILTER (WHERE status = 'done')::int AS done,
            count(*) FILTER (WHERE attempts > 1)::int AS resumed FROM kaiwa_jobs.batches`)
      // Every batch done, none resumed. Usually 6 full batches; two workers claiming at the same instant can split
      // one (each skips the rows the other has just locked), which changes nothing about who gets what.
      const { done, n, resumed } = batches[0]!
      assert.strictEqual(done, n)
      assert.strictEqual(resumed, 0)
      assert.isAtLeast(n, LEARNERS / 100)
      assert.isAtMost(n, LEARNERS / 100 + 3)
    } finally {
      await fake.close()
    }
  })
})
