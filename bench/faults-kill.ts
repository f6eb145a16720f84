/**
 * The SIGKILL trial of test/faults/kill.integration.test.ts, many times over: a live run of the compiled
 * reminders main over 150 due learners is SIGKILLed at a random moment of its run (50-800 ms after it began,
 * the fake Resend answering after 30-80 ms), then re-run; every trial must end with exactly one accepted email
 * per learner and a ledger that agrees with the provider. Prints where the kills landed and how long re-runs
 * took, writes bench/results/faults-kill.json, and exits 1 if any trial failed.
 *
 *   npx tsx bench/faults-kill.ts [TRIALS=100] [--seed N] [--concurrency 2] [--no-build]
 */
import { execFileSync } from "node:child_process"
import { Effect, Exit, Scope } from "effect"
import { start } from "../src/local/EmbeddedPostgres.ts"
import { startFakeResend } from "../test/support/FakeResend.ts"
import { between, killAll, killTrial, type KillTrialResult, prng, snapshotMain } from "../test/faults/harness.ts"
import { median, writeResult } from "./support.ts"

const argv = process.argv.slice(2)
const option = (name: string) => {
  const i = argv.indexOf(name)
  return i >= 0 ? argv[i + 1] : undefined
}
const trials = Number(argv.find((a, i) => /^\d+$/.test(a) && !["--seed", "--concurrency"].includes(argv[i - 1] ?? "")) ?? 100)
const seed = Number(option("--seed") ?? Math.floor(Math.random() * 2 ** 31))
const concurrency = Number(option("--concurrency") ?? 2)
const USERS = 150

if (!argv.includes("--no-build")) execFileSync(process.execPath, ["build.mjs"], { stdio: "inherit" })
console.log(`faults-kill: ${trials} trials, seed ${seed}, ${concurrency} at a time (replay: --seed ${seed})`)

const random = prng(seed)
// Draw every trial's parameters up front, so a seed names the same trials whatever the concurrency.
const plan = Array.from({ length: trials }, (_, i) => ({
  trial: i + 1,
  killAfterMs: between(random, 50, 800),
  latencyMs: between(random, 30, 80)
}))

const scope = Effect.runSync(Scope.make())
const main = await snapshotMain()
const results: Array<KillTrialResult> = []
const failures: Array<{ trial: number; killAfterMs: number; problems: ReadonlyArray<string> }> = []
const t0 = performance.now()
try {
  const server = await Effect.runPromise(Scope.provide(start(), scope))
  let next = 0
  const worker = async () => {
    while (next < plan.length) {
      const p = plan[next++]!
      const name = `kill${p.trial}`
      await Effect.runPromise(server.createDatabase(name))
      try {
        const r = await killTrial({
          ...p,
          script: main.script,
          url: server.url(name),
          users: USERS,
          startFake: (latencyMs) => startFakeResend({ seed: seed + p.trial, faults: { latencyMs } })
        })
        results.push(r)
        const problems = [
          ...(r.rerunCode === 0 ? [] : [`re-run exited ${r.rerunCode}: ${r.rerunOutput.trim().split("\n").slice(-3).join(" | ")}`]),
          ...r.verdict.problems.slice(0, 5)
        ]
        if (problems.length > 0) failures.push({ trial: p.trial, killAfterMs: p.killAfterMs, problems })
        console.log(`  ${String(p.trial).padStart(3)}: kill at ${String(p.killAfterMs).padStart(3)} ms (${p.latencyMs} ms latency) ` +
          `${r.phase.padEnd(21)} ${String(r.acceptedAtKill).padStart(3)} accepted; re-run ${r.rerunCode} in ${r.rerunMs} ms` +
          (problems.length > 0 ? `  FAILED: ${problems.join("; ")}` : ""))
      } catch (e) {
        failures.push({ trial: p.trial, killAfterMs: p.killAfterMs, problems: [String(e)] })
        console.log(`  ${String(p.trial).padStart(3)}: ERROR ${String(e)}`)
      }
    }
  }
  await Promise.all(Array.from({ length: Math.max(1, concurrency) }, worker))
} finally {
  killAll()
  main.dispose()
  await Effect.runPromise(Scope.close(scope, Exit.void))
}

const seconds = (performance.now() - t0) / 1000
const byPhase: Record<string, number> = {}
for (const r of results) byPhase[r.phase] = (byPhase[r.phase] ?? 0) + 1
const rerunMs = results.map((r) => r.rerunMs)
const duplicates = results.reduce((n, r) => n + r.verdict.problems.filter((p) => p.includes("accepted") && p.includes("times")).length, 0)
const summary = {
  seed,
  trials,
  learnersPerTrial: USERS,
  concurrency,
  passed: trials - failures.length,
  failed: failures.length,
  duplicateEmails: duplicates,
  killsByPhase: byPhase,
  rerunMs: { median: Math.round(median(rerunMs)), max: Math.max(...rerunMs), min: Math.min(...rerunMs) },
  acceptedAtKill: { median: median(results.map((r) => r.acceptedAtKill)) },
  seconds: Number(seconds.toFixed(0)),
  failures
}
console.log(`\nfaults-kill: ${summary.passed}/${trials} trials exactly once (${duplicates} duplicate emails), seed ${seed}, ${summary.seconds} s`)
console.log(`  kills landed: ${Object.entries(byPhase).map(([k, v]) => `${k} ${v}`).join(", ")}`)
console.log(`  re-runs: median ${summary.rerunMs.median} ms, max ${summary.rerunMs.max} ms (a re-run waits out the dead run's lease)`)
await writeResult("faults-kill", summary)
process.exitCode = failures.length === 0 ? 0 : 1
