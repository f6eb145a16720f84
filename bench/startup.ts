/**
 * Built main vs tsx: wall time of `node dist/send-reminders.js` against `tsx scripts/send-reminders.ts` for a live
 * run with nothing due (the common hourly case), alternating in the same run. Needs `npm run build` first
 * (bench/run.ts does it).
 */
import { spawnSync } from "node:child_process"
import { Redacted } from "effect"
import { median, withDatabase, writeResult } from "./support.ts"

const RUNS = Number(process.env["BENCH_STARTUP_RUNS"] ?? 7)

export const startup = () =>
  withDatabase("startup", async (url) => {
    const env = {
      PATH: process.env["PATH"] ?? "",
      DATABASE_URL: Redacted.value(url),
      RESEND_API_KEY: "re_bench_not_used",
      MAIL_FROM: "Kaiwa <hello@example.com>",
      APP_URL: "https://kaiwa.example",
      UNSUBSCRIBE_SECRET: "bench-unsubscribe-secret-0123456789",
      LOG_FORMAT: "json"
    }
    const time = (cmd: string, args: Array<string>) => {
      const t0 = performance.now()
      const r = spawnSync(cmd, args, { env, encoding: "utf8" })
      const ms = performance.now() - t0
      if (r.status !== 0) throw new Error(`${cmd} ${args.join(" ")} exited ${r.status}: ${r.stderr}`)
      return ms
    }
    const built: Array<number> = []
    const tsx: Array<number> = []
    time(process.execPath, ["dist/send-reminders.js"]) // warm the file cache for both
    time("node_modules/.bin/tsx", ["scripts/send-reminders.ts"])
    for (let i = 0; i < RUNS; i++) {
      built.push(time(process.execPath, ["dist/send-reminders.js"]))
      tsx.push(time("node_modules/.bin/tsx", ["scripts/send-reminders.ts"]))
    }
    const result = {
      runs: RUNS,
      builtMedianMs: Math.round(median(built)),
      tsxMedianMs: Math.round(median(tsx)),
      speedup: Number((median(tsx) / median(built)).toFixed(2)),
      builtMs: built.map(Math.round),
      tsxMs: tsx.map(Math.round)
    }
    await writeResult("startup", result)
    console.log(`startup (nothing due, live mode, ${RUNS} runs each): built main ${result.builtMedianMs} ms median, ` +
      `tsx ${result.tsxMedianMs} ms median (${result.speedup}x)`)
    return result
  })

if (import.meta.url === `file://${process.argv[1]}`) await startup()
