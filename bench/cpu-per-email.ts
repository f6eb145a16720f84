/**
 * CPU per email of one live worker, the current build beside a baseline build (BENCH_CPU_BASELINE, default
 * bb71c2c: the code before it was reorganised into folders), alternating in pairs. CPU time (user + system) is
 * what the comparison needs on a shared machine: other load moves the wall clock far more than it moves the CPU
 * a process spends. Each measurement: N due learners (BENCH_CPU_N, default 20,000) in a fresh database, the fake
 * Resend answering at once, `node dist/send-reminders.js` of that build; the worker's CPU is what this process's
 * reaped children used during the run (/proc/self/stat cutime + cstime), PostgreSQL's what its server processes
 * used (their /proc stat, summed). Each measurement runs in a process started in that build's tree, with that
 * tree's own bench helpers (migrations, seeding, fake), so each build runs on the database it knows.
 * Run: `npm run build && npx tsx bench/cpu-per-email.ts` (BENCH_CPU_PAIRS, default 6).
 */
import { execFileSync, spawn } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { Redacted } from "effect"
import { buildBaseline, median, writeResult } from "./support.ts"

const BASELINE = process.env["BENCH_CPU_BASELINE"] ?? "bb71c2c"
const N = Number(process.env["BENCH_CPU_N"] ?? 20_000)
const PAIRS = Number(process.env["BENCH_CPU_PAIRS"] ?? 6)
const SELF = fileURLToPath(import.meta.url)
const AT = "2026-03-10T10:00:00Z"
// Clock ticks per second of /proc's CPU fields (getconf CLK_TCK; 100 on Linux).
const TICKS = 100

interface Measurement {
  readonly accepted: number
  readonly workerUsPerEmail: number
  readonly postgresUsPerEmail: number
}

/** user + system ticks of a process's /proc stat: its own, and with `children` those of its reaped children. */
const ticksOf = (pid: number | "self", children: boolean) => {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8")
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
  return { ppid: Number(f[1]), comm: stat.slice(stat.indexOf("(") + 1, stat.lastIndexOf(")")), ticks: children ? Number(f[13]) + Number(f[14]) : Number(f[11]) + Number(f[12]) }
}

/** CPU seconds of the PostgreSQL servers this process started: each postmaster, its reaped and live children. */
const postgresSeconds = () => {
  const procs = fs.readdirSync("/proc").filter((d) => /^\d+$/.test(d)).flatMap((d) => {
    try {
      return [{ pid: Number(d), ...ticksOf(Number(d), false), reaped: ticksOf(Number(d), true).ticks }]
    } catch {
      return [] // gone between the listing and the read
    }
  })
  const postmasters = procs.filter((p) => p.ppid === process.pid && p.comm.startsWith("postgres"))
  const ticks = postmasters.reduce((sum, pm) =>
    sum + pm.ticks + pm.reaped + procs.filter((c) => c.ppid === pm.pid).reduce((s, c) => s + c.ticks, 0), 0)
  return ticks / TICKS
}

/** One measurement in the current working directory's tree (run by `main` in a child process). */
const measureHere = async (): Promise<Measurement> => {
  const root = process.cwd()
  const { seedDue, productionNodeOptions } = await import(`${root}/bench/processes.ts`)
  const { withDatabase } = await import(`${root}/bench/support.ts`)
  const { startFakeResend } = await import(`${root}/test/support/FakeResend.ts`)
  return withDatabase(`cpu${N}`, async (url: Redacted.Redacted<string>) => {
    await seedDue(url, N, "c")
    const fake = await startFakeResend({ faults: { latencyMs: 0 } })
    try {
      const env = {
        PATH: process.env["PATH"] ?? "", LOG_FORMAT: "json", NODE_OPTIONS: productionNodeOptions(),
        DATABASE_URL: Redacted.value(url), RESEND_API_KEY: fake.apiKey,
        RESEND_BASE_URL: fake.url, RESEND_RPS: "1000", MAIL_FROM: "Kaiwa <hello@example.com>",
        APP_URL: "https://kaiwa.example", UNSUBSCRIBE_SECRET: "bench-unsubscribe-secret-0123456789"
      }
      const pg0 = postgresSeconds()
      const worker0 = ticksOf("self", true).ticks
      const code = await new Promise<number | null>((resolve) => {
        const child = spawn(process.execPath, ["dist/send-reminders.js", "--now", AT], { env, stdio: "ignore" })
        child.on("close", resolve)
      })
      if (code !== 0) throw new Error(`the worker exited ${code}`)
      const workerSeconds = (ticksOf("self", true).ticks - worker0) / TICKS
      const pgSeconds = postgresSeconds() - pg0
      const accepted: number = fake.accepted.length
      return {
        accepted,
        workerUsPerEmail: Math.round((workerSeconds * 1e6) / accepted),
        postgresUsPerEmail: Math.round((pgSeconds * 1e6) / accepted)
      }
    } finally {
      await fake.close()
    }
  })
}

/** One measurement of the build in `tree`, in a process started there. */
const measureIn = (tree: string): Measurement => {
  const tsx = path.resolve("node_modules/tsx/dist/cli.mjs")
  const out = execFileSync(process.execPath, [tsx, SELF, "--here"], { cwd: tree, encoding: "utf8", stdio: ["ignore", "pipe", "inherit"] })
  return JSON.parse(out.trim().split("\n").pop()!)
}

export const cpuPerEmail = async () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "kaiwa-cpu-"))
  try {
    const baselineDir = buildBaseline(tmp, BASELINE)
    const pairs: Array<{ baseline: Measurement; current: Measurement }> = []
    for (let i = 0; i < PAIRS; i++) {
      const baseline = measureIn(baselineDir)
      const current = measureIn(process.cwd())
      pairs.push({ baseline, current })
      console.log(`  pair ${i + 1}: worker ${current.workerUsPerEmail} vs ${baseline.workerUsPerEmail} µs/email, ` +
        `PostgreSQL ${current.postgresUsPerEmail} vs ${baseline.postgresUsPerEmail} (current vs ${BASELINE})`)
    }
    const total = (m: Measurement) => m.workerUsPerEmail + m.postgresUsPerEmail
    const result = {
      n: N,
      baselineCommit: BASELINE,
      pairs,
      medianWorkerUsPerEmail: { current: median(pairs.map((p) => p.current.workerUsPerEmail)), baseline: median(pairs.map((p) => p.baseline.workerUsPerEmail)) },
      medianPostgresUsPerEmail: { current: median(pairs.map((p) => p.current.postgresUsPerEmail)), baseline: median(pairs.map((p) => p.baseline.postgresUsPerEmail)) },
      // Worker and PostgreSQL together, current over baseline, pair by pair.
      medianPairedRatio: Number(median(pairs.map((p) => total(p.current) / total(p.baseline))).toFixed(3))
    }
    console.log(`  cpu per email: current / ${BASELINE} = ${result.medianPairedRatio} (median of ${PAIRS} paired ratios)`)
    await writeResult("cpu-per-email", result)
    return result
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true })
  }
}

if (process.argv.includes("--here")) console.log(JSON.stringify(await measureHere()))
else if (import.meta.url === `file://${process.argv[1]}`) await cpuPerEmail()
