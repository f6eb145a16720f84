/**
 * Process-level benchmarks against the fake Resend on loopback, with the compiled main (`npm run build` first):
 * - memory: peak RSS of one live run delivering 100,000 emails, against a 10,000 run (target: < 200 MB and
 *   within 1.2x of the smaller run: memory does not grow with the number of recipients);
 * - scale-out: 4 worker processes against 1, the fake answering each call after 100 ms with no rate limit
 *   (target: at least 3x the emails per second, no email accepted twice).
 */
import { spawn } from "node:child_process"
import * as fs from "node:fs"
import { Effect, Redacted } from "effect"
import { startFakeResend } from "../test/support/FakeResend.ts"
import { sqlOn, withDatabase, writeResult } from "./support.ts"

const AT = "2026-03-10T10:00:00Z"

/** The heap limits production runs with: read from the Dockerfile, so the benchmark measures what Fly runs. */
export const productionNodeOptions = (): string => {
  const m = /^ENV NODE_OPTIONS="([^"]*)"/m.exec(fs.readFileSync("Dockerfile", "utf8"))
  if (!m) throw new Error("the Dockerfile sets no NODE_OPTIONS")
  return m[1]!
}

/** Inserts `n` learners due for a reminder at AT. */
export const seedDue = (url: Redacted.Redacted<string>, n: number, prefix: string) =>
  sqlOn(url, (sql) => Effect.gen(function*() {
    yield* sql.unsafe(`
      INSERT INTO users (id, email, display_name, email_verified, created_at, timezone)
      SELECT '${prefix}' || g, '${prefix}' || g || '@example.com', 'Learner ' || g, timestamptz '2025-01-01',
        timestamptz '2025-01-01', 'UTC'
      FROM generate_series(1, ${n}) g`)
    yield* sql`ANALYZE`
  }))

/** Runs `node dist/send-reminders.js` and samples its peak RSS (VmHWM) until it exits. */
export const runCompiledMain = (env: Record<string, string>) =>
  new Promise<{ code: number | null; ms: number; peakRssMb: number; stderr: string }>((resolve) => {
    const t0 = performance.now()
    const child = spawn(process.execPath, ["dist/send-reminders.js", "--now", AT], {
      env: { PATH: process.env["PATH"] ?? "", LOG_FORMAT: "json", NODE_OPTIONS: productionNodeOptions(), ...env },
      stdio: ["ignore", "ignore", "pipe"]
    })
    let stderr = ""
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()))
    let peakKb = 0
    const sample = setInterval(() => {
      try {
        const status = fs.readFileSync(`/proc/${child.pid}/status`, "utf8")
        const hwm = Number(/VmHWM:\s+(\d+)/.exec(status)?.[1] ?? 0)
        if (hwm > peakKb) peakKb = hwm
      } catch {
        // the process has exited between two samples
      }
    }, 20)
    child.on("close", (code) => {
      clearInterval(sample)
      resolve({ code, ms: performance.now() - t0, peakRssMb: Math.round(peakKb / 1024), stderr })
    })
  })

const liveEnv = (url: Redacted.Redacted<string>, fakeUrl: string, apiKey: string) => ({
  DATABASE_URL: Redacted.value(url),
  RESEND_API_KEY: apiKey,
  RESEND_BASE_URL: fakeUrl,
  RESEND_RPS: "1000",
  MAIL_FROM: "Kaiwa <hello@example.com>",
  APP_URL: "https://kaiwa.example",
  UNSUBSCRIBE_SECRET: "bench-unsubscribe-secret-0123456789"
})

export const memory = async () => {
  const sizes = [10_000, Number(process.env["BENCH_MEMORY_N"] ?? 100_000)]
  const runs: Array<{ n: number; peakRssMb: number; seconds: number; accepted: number }> = []
  for (const n of sizes) {
    await withDatabase(`memory${n}`, async (url) => {
      await seedDue(url, n, "m")
      const fake = await startFakeResend({ faults: { latencyMs: 0 } })
      try {
        const r = await runCompiledMain(liveEnv(url, fake.url, fake.apiKey))
        if (r.code !== 0) throw new Error(`run of ${n} exited ${r.code}: ${r.stderr}`)
        runs.push({ n, peakRssMb: r.peakRssMb, seconds: Number((r.ms / 1000).toFixed(1)), accepted: fake.accepted.length })
        console.log(`  memory: ${n} deliveries, peak RSS ${r.peakRssMb} MB, ${(r.ms / 1000).toFixed(1)} s, ${fake.accepted.length} accepted`)
      } finally {
        await fake.close()
      }
    })
  }
  const ratio = Number((runs[1]!.peakRssMb / runs[0]!.peakRssMb).toFixed(2))
  const result = { nodeOptions: productionNodeOptions(), runs, ratio, targets: { peakRssMb: 200, ratio: 1.2 } }
  console.log(`  memory: ${runs[1]!.n} vs ${runs[0]!.n}: ${ratio}x`)
  await writeResult("memory", result)
  return result
}

export const scaleOut = async () => {
  const n = Number(process.env["BENCH_SCALE_N"] ?? 20_000)
  const measure = (workers: number) =>
    withDatabase(`scale${workers}`, async (url) => {
      await seedDue(url, n, "s")
      const fake = await startFakeResend({ faults: { latencyMs: 100 } })
      try {
        const t0 = performance.now()
        const results = await Promise.all(Array.from({ length: workers }, () => runCompiledMain(liveEnv(url, fake.url, fake.apiKey))))
        const seconds = (performance.now() - t0) / 1000
        const bad = results.filter((r) => r.code !== 0)
        if (bad.length > 0) throw new Error(`a worker exited ${bad[0]!.code}: ${bad[0]!.stderr}`)
        const counts = fake.acceptedCountByRecipient()
        const duplicates = [...counts.values()].filter((c) => c > 1).length
        // Delivery rate: from the provider's first request to its last answer (process start and planning, the
        // same for 1 or 4 workers, are reported separately as the wall time).
        const first = fake.log[0]!.at
        const last = fake.log[fake.log.length - 1]!.at + 100
        const deliverySeconds = (last - first) / 1000
        const perSecond = Math.round(fake.accepted.length / deliverySeconds)
        console.log(`  scale-out: ${workers} process(es): ${fake.accepted.length} emails, ${perSecond}/s while delivering ` +
          `(${deliverySeconds.toFixed(1)} s; wall ${seconds.toFixed(1)} s = ${Math.round(fake.accepted.length / seconds)}/s), ${duplicates} duplicates`)
        return {
          workers,
          emails: fake.accepted.length,
          wallSeconds: Number(seconds.toFixed(1)),
          deliverySeconds: Number(deliverySeconds.toFixed(1)),
          perSecond,
          wallPerSecond: Math.round(fake.accepted.length / seconds),
          duplicates
        }
      } finally {
        await fake.close()
      }
    })
  const one = await measure(1)
  const four = await measure(4)
  const result = { n, latencyMs: 100, one, four, speedup: Number((four.perSecond / one.perSecond).toFixed(2)), target: 3 }
  console.log(`  scale-out: 4 processes deliver ${result.speedup}x the emails per second of 1`)
  await writeResult("scaleout", result)
  return result
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const which = process.argv[2] ?? "all"
  if (which === "memory" || which === "all") await memory()
  if (which === "scale" || which === "all") await scaleOut()
}
