/**
 * Fly stops a machine with SIGINT or SIGTERM (fly.toml's kill_signal), and a person stops a run with Ctrl-C. A real
 * live process signalled while a batch is at the provider must exit promptly (130), record its run as
 * interrupted, hand the batch back at once, and leave a tick that a re-run completes without a duplicate.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { startFakeResend } from "../support/FakeResend.ts"
import { freshDatabaseUrl } from "../support/TestDb.ts"
import { dueLearners, inFlight, liveEnv, printed, query, runMain, seed, startMain, verifyExactlyOnce, waitFor } from "./harness.ts"
import { compiledMain } from "./hooks.ts"

const LEARNERS = 250

const main = compiledMain()

describe("signals during a live run", () => {
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    it(`${signal} with a batch in flight: exit 130 within 5 s, run recorded interrupted, batch released, re-run completes once`, async () => {
      const url = await Effect.runPromise(freshDatabaseUrl)
      const due = dueLearners(LEARNERS, signal === "SIGINT" ? "i" : "t")
      await seed(url, due)
      const fake = await startFakeResend()
      // The provider holds the first batch until the process has exited, so the signal lands while it is at the
      // provider however slow the machine (a gate, not a fixed latency).
      const release = fake.holdNext()
      try {
        const env = liveEnv(url, fake)
        const run = startMain(main.script, env)
        await printed(run, "▶")
        await waitFor("a batch at the provider", () => inFlight(fake), 20_000, 2)
        const signalledAt = performance.now()
        run.child.kill(signal)
        const ended = await run.done
        release()
        const exitMs = performance.now() - signalledAt
        console.log(`${signal}: exited ${ended.code} ${Math.round(exitMs)} ms after the signal`)
        assert.isBelow(exitMs, 5_000, `${signal} took ${Math.round(exitMs)} ms to stop the run`)
        assert.strictEqual(ended.code, 130, ended.stdout + ended.stderr)
        assert.include(ended.stdout + ended.stderr, "interrupted")

        const runs = await query(url, (sql) =>
          sql<{ outcome: string; error: string | null; finished: boolean }>`
            SELECT outcome, error, finished_at IS NOT NULL AS finished FROM kaiwa_jobs.runs`)
        assert.deepStrictEqual(runs.map((r) => [r.outcome, r.finished]), [["interrupted", true]])
        // Handed back at once, not left to its lease: no owner, no lease, the reason recorded.
        const batches = await query(url, (sql) =>
          sql<{ status: string; owner: string | null; lease_until: Date | null; last_error: string | null; idempotency_key: string }>`
            SELECT status, owner::text AS owner, lease_until, last_error, idempotency_key FROM kaiwa_jobs.batches ORDER BY id`)
        assert.strictEqual(batches.length, 1)
        assert.deepInclude(batches[0]!, { status: "pending", owner: null, lease_until: null, last_error: "interrupted" })
        const interruptedKey = batches[0]!.idempotency_key

        fake.faults.latencyMs = 50
        const rerun = await runMain(main.script, env)
        assert.strictEqual(rerun.code, 0, rerun.stdout + rerun.stderr)
        const verdict = await verifyExactlyOnce(url, fake, due)
        assert.deepStrictEqual(verdict.problems, [])
        assert.deepStrictEqual(verdict.ledger, { sent: LEARNERS })
        // The interrupted batch was resumed under its recorded key, not rebuilt under a new one.
        const resumed = await query(url, (sql) =>
          sql<{ attempts: number; status: string }>`
            SELECT attempts, status FROM kaiwa_jobs.batches WHERE idempotency_key = ${interruptedKey}`)
        assert.deepStrictEqual(resumed, [{ attempts: 2, status: "done" }])
        const outcomes = await query(url, (sql) =>
          sql<{ outcome: string }>`SELECT outcome FROM kaiwa_jobs.runs ORDER BY started_at, outcome`)
        assert.sameMembers(outcomes.map((o) => o.outcome), ["interrupted", "succeeded"])
      } finally {
        await fake.close()
      }
    })
  }
})
