/**
 * `node dist/cli.js serve` as Fly runs it (live settings, the Dockerfile's NODE_OPTIONS), for the benchmarks that
 * flood the HTTP server (bench/health.ts, bench/webhook-flood.ts): started on a free loopback port, with its RSS
 * readable from /proc.
 */
import { spawn } from "node:child_process"
import { randomBytes } from "node:crypto"
import * as fs from "node:fs"
import * as net from "node:net"
import { Redacted } from "effect"
import { productionNodeOptions } from "./processes.ts"

/** The webhook signing secret every benchmark server is started with. */
export const WEBHOOK_SECRET = `whsec_${randomBytes(32).toString("base64")}`

const freePort = () =>
  new Promise<number>((resolve) => {
    const s = net.createServer().listen(0, "127.0.0.1", () => {
      const port = (s.address() as net.AddressInfo).port
      s.close(() => resolve(port))
    })
  })

/** Starts `serve` on `url`; resolves once it answers /health. */
export const startServe = async (url: Redacted.Redacted<string>) => {
  const port = await freePort()
  const child = spawn(process.execPath, ["dist/cli.js", "serve"], {
    env: {
      PATH: process.env["PATH"] ?? "",
      NODE_OPTIONS: productionNodeOptions(),
      LOG_FORMAT: "json",
      DATABASE_URL: Redacted.value(url),
      RESEND_API_KEY: "re_bench_unused",
      RESEND_BASE_URL: "http://127.0.0.1:9",
      MAIL_FROM: "Kaiwa <hello@example.com>",
      APP_URL: "https://kaiwa.example",
      UNSUBSCRIBE_SECRET: "bench-unsubscribe-secret-0123456789",
      // A live serve can send founder emails: FOUNDER_NAME is required (issue 20).
      FOUNDER_NAME: "Yuki",
      RESEND_WEBHOOK_SECRET: WEBHOOK_SECRET,
      HOST: "127.0.0.1",
      PORT: String(port)
    },
    stdio: ["ignore", "ignore", "pipe"]
  })
  let stderr = ""
  child.stderr.on("data", (d: Buffer) => (stderr += d.toString()))
  for (let i = 0; ; i++) {
    try {
      await fetch(`http://127.0.0.1:${port}/health`).then((r) => r.text())
      break
    } catch {
      if (i > 300 || child.exitCode !== null) throw new Error(`serve did not start: ${stderr}`)
      await new Promise((r) => setTimeout(r, 100))
    }
  }
  /** Resident memory now (VmRSS) and the peak since start (VmHWM), in MB. */
  const rss = () => {
    const status = fs.readFileSync(`/proc/${child.pid}/status`, "utf8")
    const kb = (field: string) => Number(new RegExp(`${field}:\\s+(\\d+)`).exec(status)?.[1] ?? 0)
    return { rssMb: kb("VmRSS") / 1024, hwmMb: kb("VmHWM") / 1024 }
  }
  const stop = () =>
    new Promise<void>((resolve) => {
      if (child.exitCode !== null) return resolve()
      child.once("close", () => resolve())
      child.kill("SIGTERM")
    })
  return { port, pid: child.pid!, rss, stop }
}
