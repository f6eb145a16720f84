/**
 * The server's bound on the connections it reads at once (makeNodeServer in src/triggers/Http.ts), and what closed
 * connections read collected as it goes (src/triggers/Reclaim.ts): the threshold, the server's wiring (every
 * closed connection reports what it read), and that the collection frees a refused body's copy.
 */
import type { AddressInfo } from "node:net"
import * as net from "node:net"
import type { IncomingMessage, Server, ServerResponse } from "node:http"
import { Duration } from "effect"
import { describe, expect, it } from "vitest"
import { makeNodeServer } from "../../src/triggers/Http.ts"
import { makeReclaimer } from "../../src/triggers/Reclaim.ts"

const connections = (server: Server) =>
  new Promise<number>((resolve, reject) => server.getConnections((e, n) => (e ? reject(e) : resolve(n))))

const listen = async (server: Server) => {
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
  return (server.address() as AddressInfo).port
}

/** A promise and its resolve function. */
const deferred = () => {
  let resolve = () => {}
  const promise = new Promise<void>((r) => (resolve = r))
  return { promise, resolve }
}

/**
 * Sends `chunks` on a raw connection and resolves with the status line of the answer once the server closes it;
 * `written` once the kernel has taken the last chunk.
 */
const exchange = (port: number, chunks: ReadonlyArray<string | Buffer>, written: () => void = () => {}) =>
  new Promise<string>((resolve) => {
    const socket = net.connect(port, "127.0.0.1")
    let answer = ""
    socket.on("data", (d) => (answer += d.toString("latin1")))
    socket.on("error", () => {})
    socket.on("close", () => resolve(answer.slice(0, 12)))
    chunks.forEach((chunk, i) => socket.write(chunk, i === chunks.length - 1 ? written : undefined))
  })

/** A 30 KB webhook post: small enough for the kernel's buffers to take whole while the server reads nothing. */
const post = (port: number, accepted: () => void) =>
  exchange(port, [`POST /webhooks/resend HTTP/1.1\r\nhost: x\r\ncontent-length: 30000\r\n\r\n`, Buffer.alloc(29_999, "x")], accepted)

describe("makeNodeServer: connections beyond the bound wait unread", () => {
  it("2 open at once: the other 8 connections read nothing until an open one closes, then all are answered", async () => {
    const server = makeNodeServer({ maxOpen: 2 })
    const held: Array<{ req: IncomingMessage; res: ServerResponse }> = []
    const seen = deferred()
    let released = false
    server.on("request", (req, res) => {
      // Once the held two are released, every later request is answered at once.
      if (released) return answer(req, res)
      held.push({ req, res })
      if (held.length === 2) seen.resolve()
    })
    const answer = (req: IncomingMessage, res: ServerResponse) => {
      const socket = req.socket
      res.writeHead(401, { connection: "close" }).end()
      res.once("finish", () => socket.destroy())
    }
    const accepted: Array<Promise<void>> = []
    const sockets: Array<net.Socket> = []
    server.on("connection", (socket: net.Socket) => sockets.push(socket))
    const port = await listen(server)
    const answers = Array.from({ length: 10 }, () => {
      const written = deferred()
      accepted.push(written.promise)
      return post(port, written.resolve)
    })
    // Every client has handed its whole body to the kernel, and the server has accepted all ten connections.
    await Promise.all(accepted)
    while (sockets.length < 10) await new Promise((r) => setTimeout(r, 10))
    await seen.promise
    // Time for a server that reads every connection to have read them (a bound that holds passes at any speed).
    await new Promise((r) => setTimeout(r, 300))
    expect(held).toHaveLength(2)
    const unread = sockets.filter((s) => !held.some((h) => h.req.socket === s))
    expect(unread).toHaveLength(8)
    expect(unread.map((s) => s.bytesRead)).toEqual(Array(8).fill(0))
    released = true
    for (const h of held) answer(h.req, h.res)
    expect(new Set(await Promise.all(answers))).toEqual(new Set(["HTTP/1.1 401"]))
    await new Promise<void>((resolve) => server.close(() => resolve()))
  })
})

describe("makeNodeServer: a connection that never finishes its headers loses its turn", () => {
  it("1 open at once, held by a client that sends half its headers: it gets 408, and a request waiting behind it is answered", async () => {
    // Node counts the timeout from when a connection was accepted, waiting included: the request behind the holder
    // arrives half a timeout later, so the holder's expiry (at 1 s, checked every 100 ms) frees the turn for it
    // well before its own would come.
    const server = makeNodeServer({ maxOpen: 1, headersTimeout: Duration.seconds(1), checkEvery: Duration.millis(100) })
    server.on("request", (_req, res) => res.writeHead(200, { connection: "close" }).end("ok"))
    const port = await listen(server)
    const reply = (request: string) => exchange(port, [request])
    const holder = reply("POST /webhooks/resend HTTP/1.1\r\nhost: x\r\n")
    while ((await connections(server)) < 1) await new Promise((r) => setTimeout(r, 10))
    await new Promise((r) => setTimeout(r, 500))
    const next = reply("GET /health HTTP/1.1\r\nhost: x\r\n\r\n")
    expect(await holder).toBe("HTTP/1.1 408")
    expect(await next).toBe("HTTP/1.1 200")
    await new Promise<void>((resolve) => server.close(() => resolve()))
  })
})

describe("Reclaim", () => {
  it("collects once per `after` bytes read by closed connections, and starts counting again", () => {
    let collections = 0
    const reclaimer = makeReclaimer(() => collections++, 100)
    reclaimer.closed(60)
    expect(collections).toBe(0)
    reclaimer.closed(60)
    expect(collections).toBe(1)
    reclaimer.closed(99)
    expect(collections).toBe(1)
    reclaimer.closed(1)
    expect(collections).toBe(2)
    reclaimer.closed(0)
    expect(collections).toBe(2)
  })

  it("the collection frees Buffers nothing references any more", () => {
    // Garbage the size of 64 refused bodies' first reads, kept from young-generation collections by surviving them.
    let garbage: Array<Buffer> | undefined = Array.from({ length: 64 }, () => Buffer.alloc(64 * 1024, 1))
    const before = process.memoryUsage().arrayBuffers
    garbage = undefined
    expect(garbage).toBeUndefined()
    makeReclaimer(undefined, 1).closed(1)
    const after = process.memoryUsage().arrayBuffers
    expect(before - after).toBeGreaterThanOrEqual(64 * 64 * 1024)
  })

  it("the server reports what each closed connection read to its reclaimer, which collects", async () => {
    const reported: Array<number> = []
    let collections = 0
    // A threshold of one byte: every closed connection that read anything collects once.
    const reclaimer = makeReclaimer(() => collections++, 1)
    const server = makeNodeServer({ reclaimer: { closed: (bytes: number) => (reported.push(bytes), reclaimer.closed(bytes)) } })
    // Refused on the headers and dropped, as the webhook route refuses an unsigned body.
    server.on("request", (req, res) => {
      const socket = req.socket
      res.writeHead(401, { connection: "close" }).end()
      res.once("finish", () => socket.destroy())
    })
    const port = await listen(server)
    const body = Buffer.alloc(255 * 1024 - 1, "x")
    const head = `POST /webhooks/resend HTTP/1.1\r\nhost: x\r\ncontent-length: ${255 * 1024}\r\n\r\n`
    const one = () => exchange(port, [head, body])
    const answers = await Promise.all(Array.from({ length: 40 }, one))
    await new Promise<void>((resolve) => server.close(() => resolve()))
    expect(new Set(answers)).toEqual(new Set(["HTTP/1.1 401"]))
    expect(reported).toHaveLength(40)
    // Each refused connection reported at least its headers.
    expect(reported.every((b) => b >= head.length)).toBe(true)
    expect(collections).toBe(40)
  })
})
