/**
 * Throughput against the provider's ceiling: 10,000 due learners, the fake Resend on loopback answering after
 * 100 ms and allowing 2 requests/s (Resend's default), so the ceiling is 2 x 100 = 200 emails/s. Beside it, in the
 * same run, the seed's sequential design (one email per request, a 100 ms pause after each) on 200 learners
 * against the same fake without a rate limit (its best case). Target: at least 95% of the ceiling, no failures,
 * and no 429 recorded as a failure.
 */
import { Redacted } from "effect"
import { Resend } from "resend"
import { startFakeResend } from "../test/support/FakeResend.ts"
import { productionNodeOptions, runCompiledMain, seedDue } from "./processes.ts"
import { sqlOn, withDatabase, writeResult } from "./support.ts"

const N = Number(process.env["BENCH_THROUGHPUT_N"] ?? 10_000)
const SEED_N = 200

export const throughput = async () => {
  const pipeline = await withDatabase("throughput", async (url) => {
    await seedDue(url, N, "t")
    const fake = await startFakeResend({ faults: { latencyMs: 100, rateLimitPerSecond: 2 } })
    try {
      const r = await runCompiledMain({
        DATABASE_URL: Redacted.value(url),
        RESEND_API_KEY: fake.apiKey,
        RESEND_BASE_URL: fake.url,
        RESEND_RPS: "2",
        MAIL_FROM: "Kaiwa <hello@example.com>",
        APP_URL: "https://kaiwa.example",
        UNSUBSCRIBE_SECRET: "bench-unsubscribe-secret-0123456789",
        NODE_OPTIONS: productionNodeOptions()
      })
      const first = fake.log[0]!.at
      const last = fake.log[fake.log.length - 1]!.at + 100
      const perSecond = fake.accepted.length / ((last - first) / 1000)
      const ledger = await sqlOn(url, (sql) =>
        sql<{ status: string; n: number }>`SELECT status, count(*)::int AS n FROM kaiwa_jobs.deliveries GROUP BY status`)
      return {
        exitCode: r.code,
        emails: fake.accepted.length,
        seconds: Number(((last - first) / 1000).toFixed(1)),
        perSecond: Number(perSecond.toFixed(1)),
        ofCeiling: Number((perSecond / 200).toFixed(3)),
        provider429: fake.total429,
        ledger: Object.fromEntries(ledger.map((l) => [l.status, l.n])),
        duplicates: [...fake.acceptedCountByRecipient().values()].filter((c) => c > 1).length
      }
    } finally {
      await fake.close()
    }
  })
  console.log(`  pipeline: ${pipeline.emails} emails in ${pipeline.seconds} s = ${pipeline.perSecond}/s, ` +
    `${(pipeline.ofCeiling * 100).toFixed(1)}% of the 200/s ceiling; ledger ${JSON.stringify(pipeline.ledger)}; ` +
    `${pipeline.provider429} answers 429; ${pipeline.duplicates} duplicates; exit ${pipeline.exitCode}`)

  const fake = await startFakeResend({ faults: { latencyMs: 100 } })
  const seed = await (async () => {
    try {
      const client = new Resend(fake.apiKey, { baseUrl: fake.url })
      const t0 = performance.now()
      let failed = 0
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
  console.log(`  the seed's sequential design: ${seed.emails} emails in ${seed.seconds} s = ${seed.perSecond}/s ` +
    `(${(pipeline.perSecond / seed.perSecond).toFixed(1)}x slower than the pipeline)`)
  const result = { n: N, latencyMs: 100, rateLimitPerSecond: 2, ceilingPerSecond: 200, pipeline, seed, target: 0.95 }
  await writeResult("throughput", result)
  return result
}

if (import.meta.url === `file://${process.argv[1]}`) await throughput()
