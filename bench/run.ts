/**
 * `npm run bench`: builds dist/ (the benchmarks run the compiled mains, as Fly does) and runs every benchmark in
 * turn, each beside its baseline; results go to bench/results/*.json and are summarised at the end.
 * `npm run bench -- selection throughput` runs only the named ones.
 */
import { execFileSync } from "node:child_process"
import { memory, scaleOut } from "./processes.ts"
import { selection } from "./selection.ts"
import { startup } from "./startup.ts"
import { throughput } from "./throughput.ts"

const all = { startup, selection, memory, scale: scaleOut, throughput } as const
const wanted = process.argv.slice(2)
const names = (wanted.length > 0 ? wanted : Object.keys(all)) as Array<keyof typeof all>
for (const name of names) if (!(name in all)) throw new Error(`unknown benchmark ${name}; known: ${Object.keys(all).join(", ")}`)

execFileSync(process.execPath, ["build.mjs"], { stdio: "inherit" })
const summary: Record<string, unknown> = {}
for (const name of names) {
  console.log(`\n== ${name}`)
  const t0 = performance.now()
  summary[name] = await all[name]()
  console.log(`   (${((performance.now() - t0) / 1000).toFixed(0)} s)`)
}
console.log("\nresults written to bench/results/")
