/**
 * CONTRACT 8, "a machine killed mid-send": a real process running practice-reminders is SIGKILLed at a random
 * moment of its run (planning, claiming, a batch in flight at the provider, recording), and a re-run finishes
 * the tick. Every due learner ends with exactly one accepted email and the ledger agrees with the provider.
 * 150 learners, the fake answering after 30-80 ms, RESEND_RPS=3, the kill 50-800 ms after the run's first line,
 * leases of 2 s so the re-run takes over quickly. The kill moments come from a seeded PRNG; the seed is printed, and FAULTS_SEED=<n> replays it.
 * bench/faults-kill.ts runs the same trial a hundred times.
 */
import { assert, beforeAll, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { startFakeResend } from "../support/FakeResend.ts"
import { freshDatabaseUrl } from "../support/TestDb.ts"
import { between, killTrial, type KillTrialResult, prng } from "./harness.ts"
import { compiledMain } from "./hooks.ts"

const SEED = Number(process.env["FAULTS_SEED"] ?? Math.floor(Math.random() * 2 ** 31))
const TRIALS_PER_TEST = 5
const random = prng(SEED)

const main = compiledMain()
beforeAll(() => {
  console.log(`SIGKILL trials: seed ${SEED} (replay with FAULTS_SEED=${SEED})`)
})

const trials = async (first: number) => {
  const results: Array<KillTrialResult> = []
  for (let trial = first; trial < first + TRIALS_PER_TEST; trial++) {
    const killAfterMs = between(random, 50, 800)
    const latencyMs = between(random, 30, 80)
    const url = await Effect.runPromise(freshDatabaseUrl)
    const r = await killTrial({
      trial,
      script: main.script,
      url,
      users: 150,
      killAfterMs,
      latencyMs,
      startFake: (latency) => startFakeResend({ seed: SEED + trial, faults: { latencyMs: latency } })
    })
    console.log(`  trial ${trial}: kill ${killAfterMs} ms into the run (${latencyMs} ms latency): ${r.phase}, ` +
      `${r.acceptedAtKill} accepted by then; re-run exit ${r.rerunCode} in ${r.rerunMs} ms; ledger ${JSON.stringify(r.verdict.ledger)}`)
    const context = `seed ${SEED}, trial ${trial}, kill after ${killAfterMs} ms (${r.phase})`
    assert.strictEqual(r.rerunCode, 0, `${context}: the re-run did not complete:\n${r.rerunOutput}`)
    assert.deepStrictEqual(r.verdict.problems, [], context)
    assert.strictEqual(r.verdict.accepted, 150, context)
    results.push(r)
  }
  return results
}

describe("SIGKILL at random moments, then a re-run", () => {
  it("trials 1-5: exactly one accepted email per due learner, ledger agrees with the provider", async () => {
    await trials(1)
  })

  it("trials 6-10: exactly one accepted email per due learner, ledger agrees with the provider", async () => {
    await trials(6)
  })
})
