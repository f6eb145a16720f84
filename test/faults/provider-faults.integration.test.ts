/**
 * CONTRACT 8 with everything at once: the provider answers a 429 storm (with retry-after), 20% of calls 500,
 * drops the connection after accepting a batch, and the process is SIGKILLed while a later batch is at the
 * provider. Re-runs until one exits 0 must leave exactly one accepted email per due learner.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { startFakeResend } from "../support/FakeResend.ts"
import { freshDatabaseUrl } from "../support/TestDb.ts"
import { dueLearners, liveEnv, printed, query, runMain, seed, startMain, verifyExactlyOnce, waitFor } from "./harness.ts"
import { compiledMain } from "./hooks.ts"

const LEARNERS = 300

const main = compiledMain()

describe("provider faults combined with a kill", () => {
  it("429 storm + 20% 5xx + a connection dropped after accept + SIGKILL mid-batch: re-runs end with one email each", async () => {
    const url = await Effect.runPromise(freshDatabaseUrl)
    const due = dueLearners(LEARNERS)
    await seed(url, due)
    // With seed 34 the fake's draws for "answer 500?" go no, no, yes: the first batch is accepted (and its answer
    // dropped), the second is accepted while its sender is killed, and the third meets a 500 in the re-run.
    const fake = await startFakeResend({
      seed: 34,
      faults: { latencyMs: 60, fail5xxRate: 0.2, dropNextAfterAccept: true, storm429: 3, storm429RetryAfterSeconds: 1 }
    })
    try {
      const env = liveEnv(url, fake)
      const first = startMain(main.script, env)
      await printed(first, "▶")
      // Kill while a new batch (a key the provider has not accepted yet) is at the provider, after the first batch
      // was accepted and its answer dropped.
      const newBatchInFlight = () => {
        const seen = new Set(fake.accepted.map((a) => a.idempotencyKey))
        return fake.log.some((r) => r.path === "/emails/batch" && r.status === null && !seen.has(r.idempotencyKey))
      }
      await waitFor("a second batch in flight", () => fake.accepted.length >= 100 && newBatchInFlight(), 30_000, 1)
      const acceptedAtKill = fake.accepted.length
      first.child.kill("SIGKILL")
      const killed = await first.done
      assert.strictEqual(killed.signal, "SIGKILL")

      const codes: Array<number | null> = []
      let last = ""
      while (codes.at(-1) !== 0 && codes.length < 4) {
        const r = await runMain(main.script, env)
        codes.push(r.code)
        last = r.stdout + r.stderr
      }
      console.log(`provider faults: killed with ${acceptedAtKill} accepted; re-run exits ${codes.join(", ")}; fake saw ` +
        `${fake.requests} requests, ${JSON.stringify(fake.stats)}`)
      assert.strictEqual(codes.at(-1), 0, last)
      assert.strictEqual(fake.stats.storm429, 3)
      assert.strictEqual(fake.stats.dropped, 1)
      assert.isAbove(fake.stats.server5xx, 0)
      const verdict = await verifyExactlyOnce(url, fake, due)
      assert.deepStrictEqual(verdict.problems, [])
      assert.deepStrictEqual(verdict.ledger, { sent: LEARNERS })
      // The dropped answer was recovered by resending under the same key (a replay, not a second delivery), and
      // the batch in flight at the kill was taken over by a re-run (a second claim of the same batch row).
      assert.isAtLeast(fake.stats.idempotentReplays, 2)
      const resumed = await query(url, (sql) =>
        sql<{ n: number }>`SELECT count(*)::int AS n FROM kaiwa_jobs.batches WHERE attempts > 1`)
      assert.isAtLeast(resumed[0]!.n, 1)
    } finally {
      await fake.close()
    }
  })
})
