/**
 * `GET /health` under a flood (issue 19): 2,000 concurrent requests against a `serve` whose ledger holds 200,000
 * rows sent in the 7-day window, beside the same flood against a `serve` on an empty ledger, in the same run
 * (rounds interleaved, so a slow spell of the machine hits both alike; one flood each before, not counted, for
 * the JIT; each flood starts after 5.5 s of quiet, so it pays for computing a summary). Target: the full ledger's flood takes at
 * most 1.5x the empty one's. Before issue 19 every request ran its own summary: 65 s (p50 33 s) at 200,000 rows.
 * Also times one signed webhook sent in the middle of each flood (it waited 28 s behind them before).
 * Run: `npm run bench -- health` (or `npx tsx bench/health.ts` after `npm run build`).
 */
import * as http from "node:http"
import { Effect, Exit, Layer, Scope } from "effect"
import type { Redacted } from "effect"
import { Webhook } from "standardwebhooks"
import { Database, pgLayer } from "../src/database/Database.ts"
import { start } from "../src/local/EmbeddedPostgres.ts"
import { startServe, WEBHOOK_SECRET } from "./serve.ts"
import { median, sqlOn, writeResult } from "./support.ts"

const REQUESTS = Number(process.env["BENCH_HEALTH_REQUESTS"] ?? 2000)
const ROWS = Number(process.env["BENCH_HEALTH_WINDOW_ROWS"] ?? 200_000)
const ROUNDS = 5
const TARGET = 1.5

/** 200,000 emails sent over the last 7 days by two jobs, ~5% bounced, the rest delivered or awaiting events. */
const fill = (url: Redacted.Redacted<string>) =>
  sqlOn(url, (sql) => Effect.gen(function*() {
    const now = Date.now()
    yield* sql`
      INSERT INTO kaiwa_jobs.deliveries (job, user_id, dedupe_key, email, data, status, provider_id, planned_at, expires_at, sent_at, delivery_state)
      SELECT CASE WHEN i % 3 = 0 THEN 'founder-emails' ELSE 'practice-reminders' END, 'h-' || i, 'k', 'h' || i || '@example.com',
        '{}'::jsonb, 'sent', 'h-' || i, t, t, t,
        CASE WHEN i % 20 = 0 THEN 'bounced' WHEN i % 10 = 3 THEN NULL ELSE 'delivered' END
      FROM generate_series(1, ${ROWS}) AS i,
        LATERAL (SELECT to_timestamp(${now / 1000} - (i::float8 / ${ROWS}) * 6.9 * 86400) AS t) AS x`
    yield* sql`VACUUM ANALYZE kaiwa_jobs.deliveries`
  }))

/** One GET; its status and milliseconds. A fresh connection each, as 2,000 different clients would open. */
const get = (agent: http.Agent, port: number, path: string) =>
  new Promise<{ status: number; ms: number }>((resolve, reject) => {
    const t0 = performance.now()
    http.get({ host: "127.0.0.1", port, path, agent }, (res) => {
      res.resume()
      res.on("end", () => resolve({ status: res.statusCode ?? 0, ms: performance.now() - t0 }))
    }).on("error", reject)
  })

const signedWebhook = async (port: number) => {
  const id = `msg_health_bench_${Math.random().toString(36).slice(2)}`
  const body = JSON.stringify({ type: "email.delivered", created_at: new Date().toISOString(), data: { email_id: "bench-none", to: ["x@example.com"] } })
  const t0 = performance.now()
  const response = await fetch(`http://127.0.0.1:${port}/webhooks/resend`, {
    method: "POST",
    headers: { "content-type": "application/json", "svix-id": id, "svix-timestamp": String(Math.floor(Date.now() / 1000)), "svix-signature": new Webhook(WEBHOOK_SECRET).sign(id, new Date(), body) },
    body
  })
  await response.text()
  return { status: response.status, ms: performance.now() - t0 }
}

/** 2,000 requests at once, and a signed webhook in their midst; wall time, latencies, statuses. */
const flood = async (port: number) => {
  const agent = new http.Agent({ keepAlive: false, maxSockets: Infinity })
  const t0 = performance.now()
  const requests = Array.from({ length: REQUESTS }, () => get(agent, port, "/health"))
  const webhook = signedWebhook(port)
  const replies = await Promise.all(requests)
  const ms = performance.now() - t0
  agent.destroy()
  const statuses = [...new Set(replies.map((r) => r.status))]
  if (statuses.length !== 1 || statuses[0] !== 200) throw new Error(`/health answered ${statuses.join(", ")}`)
  const latencies = replies.map((r) => r.ms)
  return { ms, p50: median(latencies), max: Math.max(...latencies), webhook: await webhook }
}

export const health = async () => {
  const scope = Effect.runSync(Scope.make())
  try {
    const server = await Effect.runPromise(Scope.provide(start(), scope))
    const urls = { empty: server.url("health_empty"), full: server.url("health_full") }
    for (const [name, url] of Object.entries(urls)) {
      await Effect.runPromise(server.createDatabase(`health_${name}`))
      await Effect.runPromise(Effect.void.pipe(Effect.provide(Database.layerMigrated({ appFixture: true }).pipe(Layer.provide(pgLayer(url))))))
    }
    await fill(urls.full)
    const empty = await startServe(urls.empty)
    const full = await startServe(urls.full)
    try {
      // One flood each first, not counted: the first one a process serves runs its code paths cold (JIT).
      await flood(empty.port)
      await flood(full.port)
      const rounds: Array<{ empty: Awaited<ReturnType<typeof flood>>; full: Awaited<ReturnType<typeof flood>> }> = []
      for (let round = 0; round < ROUNDS; round++) {
        // Each flood starts with no summary cached, as after a quiet spell: its first request computes one.
        await new Promise((r) => setTimeout(r, 5_500))
        const e = await flood(empty.port)
        await new Promise((r) => setTimeout(r, 5_500))
        const f = await flood(full.port)
        rounds.push({ empty: e, full: f })
        console.log(`round ${round + 1}: empty ${Math.round(e.ms)} ms, full ${Math.round(f.ms)} ms (webhook ${Math.round(f.webhook.ms)} ms)`)
      }
      const emptyMs = median(rounds.map((r) => r.empty.ms))
      const fullMs = median(rounds.map((r) => r.full.ms))
      const ratio = Number((fullMs / emptyMs).toFixed(2))
      const round1 = (x: number) => Math.round(x)
      const result = {
        requests: REQUESTS,
        windowRows: ROWS,
        emptyMs: round1(emptyMs),
        fullMs: round1(fullMs),
        ratio,
        target: TARGET,
        met: ratio <= TARGET,
        fullP50Ms: round1(median(rounds.map((r) => r.full.p50))),
        fullMaxMs: round1(median(rounds.map((r) => r.full.max))),
        webhookDuringFullFloodMs: round1(median(rounds.map((r) => r.full.webhook.ms))),
        webhookStatuses: [...new Set(rounds.map((r) => r.full.webhook.status))],
        rounds: rounds.map((r) => ({ emptyMs: round1(r.empty.ms), fullMs: round1(r.full.ms), fullWebhookMs: round1(r.full.webhook.ms) }))
      }
      console.log(JSON.stringify(result, null, 2))
      await writeResult("health", result)
      return result
    } finally {
      await empty.stop()
      await full.stop()
    }
  } finally {
    await Effect.runPromise(Scope.close(scope, Exit.void))
  }
}

if (import.meta.url === `file://${process.argv[1]}`) await health()
