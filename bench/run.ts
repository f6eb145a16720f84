/**
 * `npm run bench`: builds dist/ (the benchmarks run the compiled mains, as Fly does) and runs every benchmark in
 * turn, each beside its baseline, starting with throughput; results go to bench/results/*.json and a summary
 * table is printed at the end. `npm run bench -- selection throughput` runs only the named ones.
 * (bench/faults-kill.ts is a stress script with its own command line, not a benchmark: run it directly.)
 */
import { execFileSync } from "node:child_process"
import { cpuPerEmail } from "./cpu-per-email.ts"
import { memory, scaleOut } from "./processes.ts"
import { ratelimit } from "./ratelimit.ts"
import { selection } from "./selection.ts"
import { startup } from "./startup.ts"
import { throughput } from "./throughput.ts"
import { health } from "./health.ts"
import { webhookFlood } from "./webhook-flood.ts"
import { webhooks } from "./webhooks.ts"

const all = { throughput, startup, selection, memory, scale: scaleOut, cpuPerEmail, webhooks, ratelimit, health, webhookFlood } as const
type Name = keyof typeof all
const wanted = process.argv.slice(2)
const names = (wanted.length > 0 ? wanted : Object.keys(all)) as Array<Name>
for (const name of names) if (!(name in all)) throw new Error(`unknown benchmark ${name}; known: ${Object.keys(all).join(", ")}`)

/** One line per benchmark: what was measured, against what, and whether the target was met. */
const headline: { readonly [K in Name]: (r: Awaited<ReturnType<(typeof all)[K]>>) => [string, boolean | null] } = {
  throughput: (r) => [
    `${r.pipeline.perSecond} emails/s = ${(r.pipeline.ofCeiling * 100).toFixed(1)}% of the ${r.ceilingPerSecond}/s ceiling ` +
    `(seed design ${r.seed.perSecond}/s, ${r.speedup}x); ${r.pipeline.provider429} x 429, ledger ${JSON.stringify(r.pipeline.ledger)}`,
    r.met
  ],
  startup: (r) => [
    r.rows.map((x) => `${x.command} ${x.baseline.medianMs} -> ${x.cold.medianMs} cold / ${x.warm.medianMs} warm` +
      (x.fly ? ` / ${x.fly.medianMs} as on Fly` : "") + " ms").join(", ") +
    ` (targets: list, --help <= 25% warm; main <= 50% cold and as on Fly)`,
    r.rows.every((x) => x.command === "main" ? x.metCold && x.metFly === true : x.metWarm)
  ],
  selection: (r) => [
    `planning over ${r.users} users, Kaiwa's shape / CONTRACT 3's (median ms): ` +
    r.shapes.map((s) => `${s.job} ${s.kaiwa.medianMs} / ${s.simple.medianMs} = ${s.ratio}x (paired ${s.pairedRatio}x)${s.samePlan ? "" : " (different rows!)"}`).join(", ") +
    ` (target <= ${r.targetRatio}x)`,
    r.met
  ],
  memory: (r) => [
    `peak RSS ${r.runs.map((x) => `${x.peakRssMb} MB @ ${x.n}`).join(", ")} (ratio ${r.ratio}, target < ${r.targets.peakRssMb} MB and <= ${r.targets.ratio})`,
    r.runs.every((x) => x.peakRssMb < r.targets.peakRssMb) && r.ratio <= r.targets.ratio
  ],
  scale: (r) => [`4 processes ${r.four.perSecond}/s vs 1 ${r.one.perSecond}/s = ${r.speedup}x (target ${r.target}x)`, r.speedup >= r.target],
  cpuPerEmail: (r) => [
    `CPU per email (worker + PostgreSQL) ${r.medianWorkerUsPerEmail.current} + ${r.medianPostgresUsPerEmail.current} µs vs ` +
    `${r.medianWorkerUsPerEmail.baseline} + ${r.medianPostgresUsPerEmail.baseline} µs for ${r.baselineCommit} (paired ratio ${r.medianPairedRatio})`,
    null
  ],
  webhooks: (r) => [
    `completeBatch ${r.recording.withMsPerBatch} ms/batch with 0004 (indexes only ${r.recording.indexesOnlyMsPerBatch}) vs ${r.recording.withoutMsPerBatch} without; ` +
    `7-day health over ${r.health.ledgerRows} rows ${r.health.indexedMs} ms vs ${r.health.withoutIndexMs} ms unindexed; ` +
    `webhook ${r.http.concurrentPerSecond} events/s (50 in flight) vs ${r.http.sequentialPerSecond}/s one at a time`,
    null
  ],
  health: (r) => [
    `${r.requests} concurrent /health with ${r.windowRows} rows in the 7-day window ${r.fullMs} ms vs ${r.emptyMs} ms on an empty ledger (${r.ratio}x, target <= ${r.target}x); a signed webhook in the flood ${r.webhookDuringFullFloodMs} ms`,
    r.met
  ],
  webhookFlood: (r) => [
    `2,000 held-open 255 KB webhook bodies: unsigned peak ${r.unsigned.peakRssMb} MB / idle ${r.unsigned.idleRssMb} MB (${r.unsigned.ratio}x), forged signatures ${r.forged.peakRssMb} / ${r.forged.idleRssMb} MB (${r.forged.ratio}x), target <= 1.5x`,
    r.met
  ],
  ratelimit: (r) => [
    `shared limit: 4 workers ${(r.variants.fourShared.ofCeiling * 100).toFixed(1)}% of the ceiling with ` +
    `${(r.variants.fourShared.share429 * 100).toFixed(1)}% 429 (per-process before: ${(r.variants.fourBaseline.share429 * 100).toFixed(1)}% 429), ` +
    `1 worker ${(r.variants.oneShared.ofCeiling * 100).toFixed(1)}%; 1.5/s + web app: ${r.variants.withWebApp.provider429} and ` +
    `${r.variants.withWebApp.webApp?.provider429 ?? "?"} x 429`,
    r.allMet
  ]
}

execFileSync(process.execPath, ["build.mjs"], { stdio: "inherit" })
const summary: Array<{ name: Name; seconds: number; line: string; met: boolean | null }> = []
for (const name of names) {
  console.log(`\n== ${name}`)
  const t0 = performance.now()
  const result = await all[name]()
  const seconds = Math.round((performance.now() - t0) / 1000)
  const [line, met] = (headline[name] as (r: unknown) => [string, boolean | null])(result)
  summary.push({ name, seconds, line, met })
  console.log(`   (${seconds} s)`)
}
console.log("\n== summary (results in bench/results/)")
for (const s of summary) {
  const verdict = s.met === null ? "      " : s.met ? "MET   " : "MISSED"
  console.log(`  ${s.name.padEnd(11)} ${verdict} ${s.line}  [${s.seconds} s]`)
}
