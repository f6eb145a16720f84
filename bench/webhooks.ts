/**
 * What provider feedback (migration 0004, src/feedback/Webhooks.ts, src/delivery/DeliveryHealth.ts) costs and delivers, each beside
 * its baseline in the same run:
 * - recording: `Ledger.completeBatch` (100 rows `sent` with their provider ids) with 0004's trigger and two
 *   partial indexes, with the indexes only, and with neither (the baseline): the price the send path pays for
 *   the provider-id lookup, the 7-day counts and picking up early events, beside 200,000 sent rows and 100,000
 *   stored events.
 * - health: the 7-day delivery health per job (`deliveryHealth`, what status and /health run) over a ledger of
 *   1,000,000 sent rows spread over a year (BENCH_HEALTH_DAYS), with `deliveries_sent_idx` and without it.
 * - http: signed events through `POST /webhooks/resend` (signature check, one transaction each), 50 in flight
 *   against one at a time.
 */
import { randomBytes, randomUUID } from "node:crypto"
import { NodeHttpServer } from "@effect/platform-node"
import { ConfigProvider, Effect, Layer, References } from "effect"
import { HttpServer } from "effect/http"
import type { Redacted } from "effect"
import { SqlClient } from "effect/sql"
import { Webhook } from "standardwebhooks"
import { Database, type Owners, pgLayer } from "../src/database/Database.ts"
import { Ledger } from "../src/ledger/Ledger.ts"
import { deliveryHealth } from "../src/delivery/DeliveryHealth.ts"
import * as Http from "../src/triggers/Http.ts"
import * as Layers from "../src/job/Layers.ts"
import { median, sqlOn, withDatabase, writeResult } from "./support.ts"

const ROUNDS = 6
const BATCHES_PER_ROUND = 50
const HEALTH_ROWS = Number(process.env["BENCH_HEALTH_ROWS"] ?? 1_000_000)
// A ledger only grows: a year of sends, of which the 7-day window is ~2%. BENCH_HEALTH_DAYS=30 measures a young
// ledger, where the window is a quarter of it.
const HEALTH_DAYS = Number(process.env["BENCH_HEALTH_DAYS"] ?? 365)
const HTTP_EVENTS = 2000
const SECRET = `whsec_${randomBytes(32).toString("base64")}`

const onDatabase = <A, E>(url: Redacted.Redacted<string>, f: Effect.Effect<A, E, Database | Owners | SqlClient.SqlClient>) =>
  Effect.runPromise(f.pipe(Effect.provide(Database.layerFromSql("bench").pipe(Layer.provideMerge(pgLayer(url))))) as Effect.Effect<A>)

/**
 * Drops part of 0004 ("all": the trigger and both ledger indexes; "trigger"; "sent index": the 7-day index),
 * returning the statements that bring it back.
 */
const dropFeedback = (what: "all" | "trigger" | "sent index") => (sql: SqlClient.SqlClient) =>
  Effect.gen(function*() {
    const trigger = what !== "sent index"
    const indexes = what === "all"
      ? ["kaiwa_jobs.deliveries_provider_idx", "kaiwa_jobs.deliveries_sent_idx"]
      : what === "sent index" ? ["kaiwa_jobs.deliveries_sent_idx"] : []
    const defs: Array<string> = []
    if (trigger) {
      const t = yield* sql<{ def: string }>`
        SELECT pg_get_triggerdef(oid) AS def FROM pg_trigger WHERE tgname = 'deliveries_take_events'`
      defs.push(...t.map((d) => d.def))
      yield* sql`DROP TRIGGER deliveries_take_events ON kaiwa_jobs.deliveries`
    }
    for (const index of indexes) {
      const i = yield* sql<{ def: string }>`SELECT pg_get_indexdef(${index}::regclass) AS def`
      defs.push(i[0]!.def)
      yield* sql.unsafe(`DROP INDEX ${index}`)
    }
    return defs
  })

/** `n` batches of 100 pending rows each, ready for completeBatch; returns their batch ids. */
const pendingBatches = (sql: SqlClient.SqlClient, n: number, now: Date) =>
  Effect.gen(function*() {
    const tag = randomUUID().slice(0, 8)
    const batches = yield* sql<{ id: string }>`
      INSERT INTO kaiwa_jobs.batches (job, idempotency_key, status, created_at)
      SELECT 'practice-reminders', ${tag} || '-' || i, 'pending', ${now} FROM generate_series(1, ${n}) AS i
      RETURNING id::text AS id`
    yield* sql`
      INSERT INTO kaiwa_jobs.deliveries (job, user_id, dedupe_key, email, data, planned_at, expires_at, batch_id)
      SELECT 'practice-reminders', ${tag} || '-' || b.id || '-' || j, 'k', 'u' || j || '@example.com', '{}'::jsonb,
        ${now}, ${now}, b.id
      FROM kaiwa_jobs.batches b, generate_series(1, 100) AS j
      WHERE b.idempotency_key LIKE ${tag + "-%"}`
    return batches.map((b) => b.id)
  })

/** Times completeBatch over `batchIds`, each with 100 provider ids; ms per batch. */
const completeAll = (batchIds: ReadonlyArray<string>, now: Date) =>
  Effect.gen(function*() {
    const db = yield* Ledger
    const sql = yield* SqlClient.SqlClient
    const rows = yield* sql<{ id: string; batch_id: string }>`
      SELECT id::text AS id, batch_id::text AS batch_id FROM kaiwa_jobs.deliveries
      WHERE batch_id IN (SELECT jsonb_array_elements_text(${JSON.stringify(batchIds)}::jsonb)::bigint)`
    const byBatch = new Map<string, Array<string>>()
    for (const r of rows) byBatch.set(r.batch_id, [...(byBatch.get(r.batch_id) ?? []), r.id])
    const t0 = performance.now()
    for (const batchId of batchIds) {
      yield* db.completeBatch({
        batchId,
        now,
        outcomes: byBatch.get(batchId)!.map((id) => ({ id, status: "sent" as const, providerId: `re-${randomUUID()}`, reason: null }))
      })
    }
    return (performance.now() - t0) / batchIds.length
  })

const recording = async (url: Redacted.Redacted<string>) => {
  const now = new Date()
  await sqlOn(url, (sql) => Effect.gen(function*() {
    yield* sql`
      INSERT INTO kaiwa_jobs.deliveries (job, user_id, dedupe_key, email, data, status, provider_id, planned_at, expires_at, sent_at)
      SELECT 'practice-reminders', 'bg-' || i, 'k', 'bg' || i || '@example.com', '{}'::jsonb, 'sent', 'bg-' || i,
        ${now}, ${now}, ${now}
      FROM generate_series(1, 200000) AS i`
    yield* sql`
      INSERT INTO kaiwa_jobs.webhook_events (svix_id, type, provider_id, delivery_state, occurred_at, received_at, matched, payload)
      SELECT 'msg_bg_' || i, 'email.delivered', 'web-' || i, 'delivered', ${now}, ${now}, false, '{}'::jsonb
      FROM generate_series(1, 100000) AS i`
    yield* sql`ANALYZE`
  }))
  const withFeedback: Array<number> = []
  const indexesOnly: Array<number> = []
  const without: Array<number> = []
  const arm = async (drop: "all" | "trigger" | undefined, into: Array<number>) => {
    const restore = drop === undefined ? [] : await sqlOn(url, dropFeedback(drop))
    const ids = await sqlOn(url, (sql) => pendingBatches(sql, BATCHES_PER_ROUND, now))
    into.push(await onDatabase(url, completeAll(ids, now)))
    await sqlOn(url, (sql) => Effect.forEach(restore, (def) => sql.unsafe(def), { discard: true }))
  }
  for (let round = 0; round < ROUNDS; round++) {
    // Interleaved, so a slow spell of the machine hits every arm alike.
    await arm(undefined, withFeedback)
    await arm("trigger", indexesOnly)
    await arm("all", without)
  }
  const ms = (xs: ReadonlyArray<number>) => Number(median(xs).toFixed(2))
  return {
    batches: ROUNDS * BATCHES_PER_ROUND,
    withMsPerBatch: ms(withFeedback),
    indexesOnlyMsPerBatch: ms(indexesOnly),
    withoutMsPerBatch: ms(without),
    rounds: [withFeedback, indexesOnly, without].map((xs) => xs.map((x) => Number(x.toFixed(2))))
  }
}

const health = async (url: Redacted.Redacted<string>) => {
  const now = Date.now()
  await sqlOn(url, (sql) => Effect.gen(function*() {
    // HEALTH_DAYS of sends by two jobs, ~5% bounced, 0.05% complained, the rest delivered or awaiting events.
    yield* sql`
      INSERT INTO kaiwa_jobs.deliveries (job, user_id, dedupe_key, email, data, status, provider_id, planned_at, expires_at, sent_at, delivery_state)
      SELECT CASE WHEN i % 3 = 0 THEN 'founder-emails' ELSE 'practice-reminders' END, 'h-' || i, 'k', 'h' || i || '@example.com',
        '{}'::jsonb, 'sent', 'h-' || i, t, t, t,
        CASE WHEN i % 20 = 0 THEN 'bounced' WHEN i % 2000 = 1 THEN 'complained' WHEN i % 10 = 3 THEN NULL ELSE 'delivered' END
      FROM generate_series(1, ${HEALTH_ROWS}) AS i,
        LATERAL (SELECT to_timestamp(${now / 1000} - (i::float8 / ${HEALTH_ROWS}) * ${HEALTH_DAYS} * 86400) AS t) AS x`
    yield* sql`VACUUM ANALYZE kaiwa_jobs.deliveries`
  }))
  const time = () =>
    onDatabase(url, Effect.gen(function*() {
      const times: Array<number> = []
      let sent = 0
      for (let i = 0; i < 5; i++) {
        const t0 = performance.now()
        const h = yield* deliveryHealth
        times.push(performance.now() - t0)
        sent = [...h.values()].reduce((n, x) => n + x.sent, 0)
      }
      return { medianMs: Number(median(times).toFixed(1)), sent }
    }))
  const indexed = await time()
  const restore = await sqlOn(url, dropFeedback("sent index"))
  const unindexed = await time()
  await sqlOn(url, (sql) => Effect.forEach(restore, (def) => sql.unsafe(def), { discard: true }))
  return {
    ledgerRows: HEALTH_ROWS,
    ledgerDays: HEALTH_DAYS,
    inWindow: indexed.sent,
    indexedMs: indexed.medianMs,
    withoutIndexMs: unindexed.medianMs
  }
}

const http = async (url: Redacted.Redacted<string>) => {
  const signer = new Webhook(SECRET)
  const now = new Date()
  await sqlOn(url, (sql) => sql`
    INSERT INTO kaiwa_jobs.deliveries (job, user_id, dedupe_key, email, data, status, provider_id, planned_at, expires_at, sent_at)
    SELECT 'practice-reminders', 'w-' || i, 'k', 'w' || i || '@example.com', '{}'::jsonb, 'sent', 'w-' || i, ${now}, ${now}, ${now}
    FROM generate_series(1, ${2 * HTTP_EVENTS}) AS i`)
  const server = Http.layerApp.pipe(
    Layer.provideMerge(NodeHttpServer.layerTest),
    Layer.provideMerge(Layers.test(url).pipe(
      Layer.provide(ConfigProvider.layer(ConfigProvider.fromEnv({ env: { RESEND_WEBHOOK_SECRET: SECRET } })))
    )),
    Layer.provideMerge(Layer.succeed(References.MinimumLogLevel, "Warn"))
  )
  const fire = (port: number, from: number, n: number, concurrency: number) => async () => {
    let next = from
    const t0 = performance.now()
    const worker = async () => {
      while (next < from + n) {
        const i = next++
        const body = JSON.stringify({
          type: "email.delivered",
          created_at: new Date().toISOString(),
          data: { email_id: `w-${i + 1}`, to: [`w${i + 1}@example.com`], subject: "Time to practise", created_at: now.toISOString() }
        })
        const id = `msg_bench_${i}`
        const response = await fetch(`http://127.0.0.1:${port}/webhooks/resend`, {
          method: "POST",
          headers: {
            "content-type": "application/json",
            "svix-id": id,
            "svix-timestamp": String(Math.floor(Date.now() / 1000)),
            "svix-signature": signer.sign(id, new Date(), body)
          },
          body
        })
        if (response.status !== 200) throw new Error(`webhook answered ${response.status}`)
        await response.text()
      }
    }
    await Promise.all(Array.from({ length: concurrency }, worker))
    return Math.round(n / ((performance.now() - t0) / 1000))
  }
  return Effect.runPromise(Effect.gen(function*() {
    const port = ((yield* HttpServer.HttpServer).address as { readonly port: number }).port
    const sequential = yield* Effect.promise(fire(port, 0, HTTP_EVENTS / 4, 1))
    const concurrent = yield* Effect.promise(fire(port, HTTP_EVENTS / 4, HTTP_EVENTS, 50))
    return { events: HTTP_EVENTS, concurrentPerSecond: concurrent, sequentialPerSecond: sequential }
  }).pipe(Effect.provide(server)) as Effect.Effect<{ events: number; concurrentPerSecond: number; sequentialPerSecond: number }>)
}

export const webhooks = async () => {
  const result = {
    recording: await withDatabase("webhooks_recording", recording),
    health: await withDatabase("webhooks_health", health),
    http: await withDatabase("webhooks_http", http)
  }
  console.log(JSON.stringify(result, null, 2))
  await writeResult("webhooks", result)
  return result
}

if (import.meta.url === `file://${process.argv[1]}`) await webhooks()
