/**
 * Memory under a flood of held-open webhook bodies (issue 19): 2,000 connections each post 255 KB of body to
 * `POST /webhooks/resend` on a `serve` process, send all of it but the last byte and hold the connection open.
 * Peak RSS of the server (sampled every 25 ms) against its idle RSS in the same run. Target: at most 1.5x for the
 * unsigned flood (issue 19).
 * Before issue 19 every body was buffered in full before its signature was checked: 92 MB -> 700 MB.
 * Two floods: "unsigned" (no signature headers) and "forged" (headers shaped like a valid signature, a current
 * timestamp, a random HMAC), which passes the header check and meets the bounded reading instead.
 * Run: `npm run bench -- webhookFlood` (or `npx tsx bench/webhook-flood.ts` after `npm run build`).
 */
import { randomBytes } from "node:crypto"
import * as net from "node:net"
import { Effect, Exit, Layer, Scope } from "effect"
import { Database, pgLayer } from "../src/database/Database.ts"
import { start } from "../src/local/EmbeddedPostgres.ts"
import { startServe } from "./serve.ts"
import { writeResult } from "./support.ts"

const CONNECTIONS = Number(process.env["BENCH_FLOOD_CONNECTIONS"] ?? 2000)
const BODY_BYTES = Number(process.env["BENCH_FLOOD_BODY_KB"] ?? 255) * 1024
const HOLD_MS = 12_000
const TARGET = 1.5

type Variant = "unsigned" | "forged"

const headersOf = (variant: Variant, i: number) =>
  [
    `POST /webhooks/resend HTTP/1.1`,
    `host: 127.0.0.1`,
    `content-type: application/json`,
    `content-length: ${BODY_BYTES}`,
    ...(variant === "forged"
      ? [
        `svix-id: msg_flood_${i}`,
        `svix-timestamp: ${Math.floor(Date.now() / 1000)}`,
        `svix-signature: v1,${randomBytes(32).toString("base64")}`
      ]
      : []),
    "",
    ""
  ].join("\r\n")

/** Opens the flood, holds it HOLD_MS while sampling the server's RSS, then drops every connection. */
const flood = async (port: number, variant: Variant, rss: () => { rssMb: number }) => {
  const body = Buffer.alloc(BODY_BYTES - 1, "x")
  const sockets: Array<net.Socket> = []
  const answers = new Map<string, number>()
  let peak = rss().rssMb
  const trace: Array<number> = []
  let ticks = 0
  const sampler = setInterval(() => {
    const now = rss().rssMb
    peak = Math.max(peak, now)
    if (++ticks % 20 === 0) trace.push(Math.round(now))
  }, 25)
  for (let i = 0; i < CONNECTIONS; i++) {
    const socket = net.connect(port, "127.0.0.1")
    socket.on("error", () => {})
    let answered = false
    socket.on("data", (d: Buffer) => {
      if (answered) return
      answered = true
      const status = /^HTTP\/1\.1 (\d{3})/.exec(d.toString("latin1"))?.[1] ?? "?"
      answers.set(status, (answers.get(status) ?? 0) + 1)
    })
    socket.write(headersOf(variant, i))
    socket.write(body)
    sockets.push(socket)
  }
  await new Promise((r) => setTimeout(r, HOLD_MS))
  clearInterval(sampler)
  peak = Math.max(peak, rss().rssMb)
  for (const s of sockets) s.destroy()
  if (process.env["BENCH_FLOOD_TRACE"]) console.log(`${variant} RSS every 0.5 s: ${trace.join(" ")}`)
  return { peakRssMb: Math.round(peak), answers: Object.fromEntries([...answers].sort()), unanswered: CONNECTIONS - [...answers.values()].reduce((a, b) => a + b, 0) }
}

export const webhookFlood = async () => {
  const scope = Effect.runSync(Scope.make())
  try {
    const server = await Effect.runPromise(Scope.provide(start(), scope))
    await Effect.runPromise(server.createDatabase("flood"))
    const url = server.url("flood")
    await Effect.runPromise(Effect.void.pipe(Effect.provide(Database.layerMigrated({ appFixture: true }).pipe(Layer.provide(pgLayer(url))))))
    const result: Record<string, unknown> = { connections: CONNECTIONS, bodyBytes: BODY_BYTES, holdMs: HOLD_MS, target: TARGET }
    let met = true
    for (const variant of ["unsigned", "forged"] as const) {
      // A fresh server per flood: each measured from its own idle state.
      const serve = await startServe(url)
      try {
        // Warm: the routes and the database pool in use, as a server that has been up a while.
        for (let i = 0; i < 20; i++) await fetch(`http://127.0.0.1:${serve.port}/health`).then((r) => r.text())
        await new Promise((r) => setTimeout(r, 2_000))
        const idleMb = Math.round(serve.rss().rssMb)
        const f = await flood(serve.port, variant, serve.rss)
        const ratio = Number((f.peakRssMb / idleMb).toFixed(2))
        // The target is the issue's: the unsigned flood. The forged one is shown beside it.
        if (variant === "unsigned") met = ratio <= TARGET
        result[variant] = { idleRssMb: idleMb, ...f, ratio }
        console.log(`${variant}: idle ${idleMb} MB, peak ${f.peakRssMb} MB (${ratio}x); answers ${JSON.stringify(f.answers)}, ${f.unanswered} unanswered while held`)
      } finally {
        await serve.stop()
      }
    }
    result["met"] = met
    console.log(JSON.stringify(result, null, 2))
    await writeResult("webhook-flood", result)
    return result as { met: boolean; unsigned: { idleRssMb: number; peakRssMb: number; ratio: number }; forged: { idleRssMb: number; peakRssMb: number; ratio: number } }
  } finally {
    await Effect.runPromise(Scope.close(scope, Exit.void))
  }
}

if (import.meta.url === `file://${process.argv[1]}`) await webhookFlood()
