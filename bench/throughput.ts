/**
 * Throughput against the provider's ceiling: 10,000 due learners, the fake Resend on loopback answering after
 * 100 ms and allowing 2 requests/s (Resend's default), so the ceiling is 2 x 100 = 200 emails/s. The pipeline is
 * the compiled main (`node dist/send-reminders.js`, production heap flags), i.e. what a Fly machine runs:
 * runJob -> plan -> claim -> the Resend mailer (RESEND_RPS=2) -> record. Beside it, in the same run, the seed's
 * sequential design (one `POST /emails` per learner, a 100 ms pause after each) on 200 learners against the same
 * fake with the same 100 ms latency but no rate limit (its best case: at ~5 requests/s a 2/s limit would refuse
 * most of its calls). Target: at least 95% of the ceiling, no failures, and no 429 recorded as a failure.
 * The rate is measured over delivery: from the provider's first request to its last answer (process start and
 * planning are reported separately as the wall time).
 */
import { Redacted } from "effect"
import { Resend } from "resend"
import { startFakeResend } from "../test/support/FakeResend.ts"
import { productionNodeOptions, runCompiledMain, seedDue } from "./processes.ts"
import { sqlOn, withDatabase, writeResult } from "./support.ts"

const N = Number(process.env["BENCH_THROUGHPUT_N"] ?? 10_000)
const SEED_N = Number(process.env["BENCH_THROUGHPUT_SEED_N"] ?? 200)
const LATENCY_MS = 100
const LIMIT_PER_SECOND = 2
const CEILING = LIMIT_PER_SECOND * 100
const TARGET = 0.95

export const throughput = async () => {
  const pipeline = await withDatabase("throughput", async (url) => {
    await seedDue(url, N, "t")
    const fake = await startFakeResend({ faults: { latencyMs: LATENCY_MS, rateLimitPerSecond: LIMIT_PER_SECOND } })
    try {
      const r = await runCompiledMain({
        DATABASE_URL: Redacted.value(url),
        RESEND_API_KEY: fake.apiKey,
        RESEND_BASE_URL: fake.url,
        RESEND_RPS: String(LIMIT_PER_SECOND),
        MAIL_FROM: "Kaiwa <hello@example.com>",
        APP_URL: "https://kaiwa.example",
        UNSUBSCRIBE_SECRET: "bench-unsubscribe-secret-0123456789",
        NODE_OPTIONS: productionNodeOptions()
      })
      const first = fake.log[0]!.at
      const last = fake.log[fake.log.length - 1]!.at + LATENCY_MS
      const perSecond = fake.accepted.length / ((last - first) / 1000)
      // How close the calls came to the provider's window: a call and the one two after it must arrive more than
      // 1 s apart at 2/s. The closest pair says how much jitter the limiter's headroom had to absorb.
      const pairGaps = fake.log.slice(2).map((req, i) => req.at - fake.log[i]!.at)
      const ledger = await sqlOn(url, (sql) =>
        sql<{ status: string; n: number }>`SELECT status, count(*)::int AS n FROM kaiwa_jobs.deliveries GROUP BY status`)
      return {
        exitCode: r.code,
        emails: fake.accepted.length,
        requests: fake.requests,
        seconds: Number(((last - first) / 1000).toFixed(1)),
        perSecond: Number(perSecond.toFixed(1)),
        ofCeiling: Number((perSecond / CEILING).toFixed(3)),
        wallSeconds: Number((r.ms / 1000).toFixed(1)),
        provider429: fake.total429,
        closestPairMs: pairGaps.length > 0 ? Math.min(...pairGaps) : null,
        ledger: Object.fromEntries(ledger.map((l) => [l.status, l.n])) as Record<string, number>,
        duplicates: [...fake.acceptedCountByRecipient().values()].filter((c) => c > 1).length
      }
    } finally {
      await fake.close()
    }
  })
  const fake = await startFakeResend({ faults: { latencyMs: LATENCY_MS } })
  const seed = await (async () => {
    try {
      const client = new Resend(fake.apiKey, { baseUrl: fake.url })
      const t0 = performance.now()
      let failed = 0
      // The seed's loop, as its design document has it: one single send per learner, then a 100 ms pause.
      for (let i = 0; i < SEED_N; i++) {
        const { error } = await client.emails.send({
          from: "Kaiwa <hello@example.com>",
          to: `seed${i}@example.com`,
          subject: "Time to practise",
          html: "<p>Hi</p>",
          text: "Hi"
        })
        if (error) failed++
        await new Promise((r) => setTimeout(r, 100))
      }
      const seconds = (performance.now() - t0) / 1000
      return { emails: SEED_N - failed, seconds: Number(seconds.toFixed(1)), perSecond: Number(((SEED_N - failed) / seconds).toFixed(1)) }
    } finally {
      await fake.close()
    }
  })()
  const met = pipeline.ofCeiling >= TARGET && pipeline.exitCode === 0 && (pipeline.ledger["failed"] ?? 0) === 0 &&
    pipeline.ledger["sent"] === N && pipeline.duplicates === 0
  const row = (cells: ReadonlyArray<string | number>) => `  ${cells.map((c, i) => String(c).padEnd(i === 0 ? 34 : 12)).join("")}`
  console.log(row(["", "emails", "seconds", "emails/s", "of ceiling"]))
  console.log(row(["ceiling (2 req/s x 100)", "", "", CEILING, "100%"]))
  console.log(row([`pipeline (compiled main, N=${N})`, pipeline.emails, pipeline.seconds, pipeline.perSecond, `${(pipeline.ofCeiling * 100).toFixed(1)}%`]))
  console.log(row([`seed design (sequential, N=${SEED_N})`, seed.emails, seed.seconds, seed.perSecond, `${(seed.perSecond / CEILING * 100).toFixed(1)}%`]))
  console.log(`  pipeline: ledger ${JSON.stringify(pipeline.ledger)}, ${pipeline.provider429} answers 429, ${pipeline.duplicates} duplicates, ` +
    `exit ${pipeline.exitCode}, wall ${pipeline.wallSeconds} s, closest call pair ${pipeline.closestPairMs} ms apart (window 1000 ms)`)
  console.log(`  the pipeline is ${(pipeline.perSecond / seed.perSecond).toFixed(1)}x the seed's design; ` +
    `target (>= ${TARGET * 100}% of the ceiling, 0 failures, no 429 as a failure): ${met ? "MET" : "MISSED"}`)
  const result = {
    n: N,
    latencyMs: LATENCY_MS,
    rateLimitPerSecond: LIMIT_PER_SECOND,
    ceilingPerSecond: CEILING,
    pipeline,
    seed: { ...seed, n: SEED_N, rateLimitPerSecond: null, pauseMs: 100 },
    speedup: Number((pipeline.perSecond / seed.perSecond).toFixed(1)),
    target: TARGET,
    met
  }
  await writeResult("throughput", result)
  return result
}

if (import.meta.url === `file://${process.argv[1]}`) await throughput()
