/**
 * What closed connections read is collected as it goes (src/triggers/Reclaim.ts): the threshold, the server's
 * wiring (every closed connection reports what it read), and that the collection frees a refused body's copy.
 */
import type { AddressInfo } from "node:net"
import * as net from "node:net"
import { describe, expect, it } from "vitest"
import { makeNodeServer } from "../../src/triggers/Http.ts"
import { makeReclaimer } from "../../src/triggers/Reclaim.ts"

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
    const server = makeNodeServer({ closed: (bytes) => (reported.push(bytes), reclaimer.closed(bytes)) })
    // Refused on the headers and dropped, as the webhook route refuses an unsigned body.
    server.on("request", (_req, res) => {
      res.writeHead(401, { connection: "close" }).end()
      res.once("finish", () => res.socket?.destroy())
    })
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
    const port = (server.address() as AddressInfo).port
    const body = Buffer.alloc(255 * 1024 - 1, "x")
    const head = `POST /webhooks/resend HTTP/1.1\r\nhost: x\r\ncontent-length: ${255 * 1024}\r\n\r\n`
    const one = () =>
      new Promise<string>((resolve) => {
        const socket = net.connect(port, "127.0.0.1")
        let answer = ""
        socket.on("data", (d) => (answer += d.toString("latin1")))
        socket.on("error", () => {})
        socket.on("close", () => resolve(answer.slice(0, 12)))
        socket.write(head)
        socket.write(body)
      })
    const answers = await Promise.all(Array.from({ length: 40 }, one))
    await new Promise<void>((resolve) => server.close(() => resolve()))
    expect(new Set(answers)).toEqual(new Set(["HTTP/1.1 401"]))
    expect(reported).toHaveLength(40)
    // Each refused connection reported at least its headers.
    expect(reported.every((b) => b >= head.length)).toBe(true)
    expect(collections).toBe(40)
  })
})
