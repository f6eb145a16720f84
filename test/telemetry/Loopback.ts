/**
 * A loopback HTTP server standing in for PostHog or an OTLP collector: it records every request (gzip bodies
 * inflated, JSON parsed) and answers as told: 200, a status of choice, or never.
 */
import * as http from "node:http"
import type { AddressInfo } from "node:net"
import * as zlib from "node:zlib"
import { Effect } from "effect"

/** One request the server received. */
export interface Received {
  readonly method: string
  readonly path: string
  readonly headers: http.IncomingHttpHeaders
  /** The body as text (inflated when gzip-encoded). */
  readonly text: string
  /** The body parsed as JSON, or undefined when it is not JSON. */
  readonly json: unknown
}

/** How the server answers. */
export type Behaviour = { readonly status: number } | "hang"

/** A running loopback server. */
export interface Loopback {
  readonly url: string
  readonly received: Array<Received>
  /** Requests whose path starts with `prefix`. */
  readonly at: (prefix: string) => ReadonlyArray<Received>
}

const parse = (text: string): unknown => {
  try {
    return JSON.parse(text)
  } catch {
    return undefined
  }
}

/** Starts a server on 127.0.0.1 for the current scope; closing the scope drops open connections and stops it. */
export const loopback = (behaviour: Behaviour = { status: 200 }) =>
  Effect.acquireRelease(
    Effect.callback<{ server: http.Server; loopback: Loopback }>((resume) => {
      const received: Array<Received> = []
      const server = http.createServer((req, res) => {
        const chunks: Array<Buffer> = []
        req.on("data", (c: Buffer) => chunks.push(c))
        req.on("end", () => {
          const raw = Buffer.concat(chunks)
          const body = req.headers["content-encoding"] === "gzip" ? zlib.gunzipSync(raw) : raw
          const text = body.toString("utf8")
          received.push({ method: req.method ?? "", path: req.url ?? "", headers: req.headers, text, json: parse(text) })
          if (behaviour === "hang") return
          res.writeHead(behaviour.status, { "content-type": "application/json" })
          res.end(behaviour.status < 300 ? `{"status":1}` : `{"error":"unavailable"}`)
        })
      })
      server.listen(0, "127.0.0.1", () => {
        const { port } = server.address() as AddressInfo
        resume(Effect.succeed({
          server,
          loopback: {
            url: `http://127.0.0.1:${port}`,
            received,
            at: (prefix) => received.filter((r) => r.path.startsWith(prefix))
          }
        }))
      })
    }),
    ({ server }) =>
      Effect.callback<void>((resume) => {
        server.closeAllConnections()
        server.close(() => resume(Effect.void))
      })
  ).pipe(Effect.map(({ loopback }) => loopback))
