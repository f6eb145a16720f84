/**
 * `kaiwa-jobs serve` as a real process: it answers /health and stops promptly on SIGTERM (Fly's stop signal for
 * the web process). The HTTP cases themselves are in test/http; signals during a job run are in test/faults.
 */
import { execFileSync, spawn } from "node:child_process"
import * as fs from "node:fs"
import * as net from "node:net"
import * as os from "node:os"
import * as path from "node:path"
import { afterAll, assert, describe, it } from "@effect/vitest"
import { Effect, Redacted } from "effect"
import { type Finished, run, start } from "../support/spawn.ts"
import { freshDatabaseUrl } from "../support/TestDb.ts"

const freePort = () =>
  new Promise<number>((resolve) => {
    const s = net.createServer().listen(0, "127.0.0.1", () => {
      const port = (s.address() as net.AddressInfo).port
      s.close(() => resolve(port))
    })
  })

describe("serve", () => {
  it.live("`kaiwa-jobs serve` answers /health and exits promptly on SIGTERM", () =>
    Effect.gen(function*() {
      const url = yield* freshDatabaseUrl
      const port = yield* Effect.promise(freePort)
      const env = {
        DATABASE_URL: Redacted.value(url),
        RESEND_API_KEY: "re_unused",
        RESEND_BASE_URL: "http://127.0.0.1:9",
        MAIL_FROM: "Kaiwa <hello@example.com>",
        APP_URL: "https://kaiwa.example",
        UNSUBSCRIBE_SECRET: "serve-unsubscribe-secret-0123456789",
        PORT: String(port),
        CRON_SECRET: "serve-cron-secret-0123456789-abcdefghij",
        FOUNDER_NAME: "Yuki Sato"
      }
      // As on Fly: the release command migrates, then the web process starts.
      const migrated = yield* Effect.promise(() => run("dist/cli.js", ["migrate"], env))
      assert.strictEqual(migrated.code, 0, migrated.stderr)
      const { child, done } = start("dist/cli.js", ["serve"], env)
      const health = yield* Effect.promise(async () => {
        for (let i = 0; i < 100; i++) {
          try {
            const res = await fetch(`http://127.0.0.1:${port}/health`)
            return { status: res.status, body: await res.json() as { ok: boolean } }
          } catch {
            await new Promise((r) => setTimeout(r, 100))
          }
        }
        throw new Error("the server never answered")
      })
      assert.strictEqual(health.status, 200)
      assert.isTrue(health.body.ok)
      const t0 = Date.now()
      child.kill("SIGTERM")
      const r = yield* Effect.promise(() => done)
      assert.isBelow(Date.now() - t0, 5000)
      assert.strictEqual(r.code, 130)
    }), 30_000)

  for (const state of ["dead", "wedged"] as const) {
    it.live(`\`serve --local\` whose embedded PostgreSQL is ${state} still exits on SIGTERM, promptly`, () =>
      Effect.gen(function*() {
        const port = yield* Effect.promise(freePort)
        const local = yield* Effect.promise(() => startLocal({ PORT: String(port) }))
        yield* Effect.promise(() => waitForHealth(port, local.output))
        const postmaster = local.postmaster()
        const server = [postmaster, ...childrenOf(postmaster)]
        if (state === "dead") {
          // The database dies under the server (out of memory, an operator's kill): no shutdown of its own.
          process.kill(postmaster, "SIGKILL")
          yield* Effect.promise(() => waitUntilGone(postmaster))
          // Requests that find the database gone, as Fly's health check would, once the summary /health answers
          // from (at most 5 s old) has expired.
          const health = yield* Effect.promise(async () => {
            for (let i = 0; i < 100; i++) {
              const status = await fetch(`http://127.0.0.1:${port}/health`).then((r) => r.status)
              if (status === 503) return status
              await new Promise((r) => setTimeout(r, 200))
            }
            return 0
          })
          assert.strictEqual(health, 503)
        } else {
          // Every process of the server stopped: connections open, nothing answers (a wedged or partitioned
          // database). A request is left waiting on it when the signal comes.
          for (const pid of server) process.kill(pid, "SIGSTOP")
          cleanups.push(() => server.forEach((pid) => signal(pid, "SIGKILL")))
          void fetch(`http://127.0.0.1:${port}/health?strict=1`, { signal: AbortSignal.timeout(60_000) }).catch(() => undefined)
          yield* Effect.sleep("500 millis")
        }
        const t0 = Date.now()
        local.child.kill("SIGTERM")
        // Generous against the 5 s the server allows itself: before, a dead database kept it up for more than a
        // minute (its stop waited for an exit that had already happened), a wedged one for the 20 s graceful window
        // and then on a finalizer that never returned.
        const r = yield* Effect.promise(() => local.exited(30_000))
        console.log(`serve --local exited ${Date.now() - t0} ms after SIGTERM with its database ${state}`)
        assert.isDefined(r, "serve --local was still running 30 s after SIGTERM")
        assert.strictEqual(r!.code, 130, r!.stderr)
      }), 90_000)
  }

  it.live("`serve --local` binds loopback only unless HOST says otherwise; `serve` on Fly binds every interface", () =>
    Effect.gen(function*() {
      const port = yield* Effect.promise(freePort)
      const local = yield* Effect.promise(() => startLocal({ PORT: String(port) }))
      yield* Effect.promise(() => waitForHealth(port, local.output))
      assert.deepStrictEqual(listeningOn(port), ["127.0.0.1"])
      local.child.kill("SIGTERM")
      assert.strictEqual((yield* Effect.promise(() => local.exited(30_000)))?.code, 130)

      const url = yield* freshDatabaseUrl
      const livePort = yield* Effect.promise(freePort)
      const live = start("dist/cli.js", ["serve"], { ...liveEnv(url), PORT: String(livePort) })
      yield* Effect.promise(() => waitForHealth(livePort))
      assert.includeMembers(["0.0.0.0", "::"], listeningOn(livePort))
      assert.strictEqual(listeningOn(livePort).length, 1)
      live.child.kill("SIGTERM")
      assert.strictEqual((yield* Effect.promise(() => live.done)).code, 130)

      const chosenPort = yield* Effect.promise(freePort)
      const chosen = start("dist/cli.js", ["serve"], { ...liveEnv(url), PORT: String(chosenPort), HOST: "127.0.0.1" })
      yield* Effect.promise(() => waitForHealth(chosenPort))
      assert.deepStrictEqual(listeningOn(chosenPort), ["127.0.0.1"])
      chosen.child.kill("SIGTERM")
      assert.strictEqual((yield* Effect.promise(() => chosen.done)).code, 130)

      const bad = yield* Effect.promise(() => run("dist/cli.js", ["serve"], { ...liveEnv(url), HOST: "127.0.0.1\r\nx" }))
      assert.strictEqual(bad.code, 2, bad.stderr)
      assert.include(bad.stderr, "HOST")
    }), 90_000)
})

const tempDirs: Array<string> = []
const children: Array<ReturnType<typeof spawn>> = []
const cleanups: Array<() => void> = []
afterAll(() => {
  for (const c of children) c.kill("SIGKILL")
  for (const c of cleanups) c()
  for (const d of tempDirs) fs.rmSync(d, { recursive: true, force: true })
})

/** The environment of a live `serve` on `url` (what Fly's secrets would hold). */
const liveEnv = (url: Redacted.Redacted<string>) => ({
  DATABASE_URL: Redacted.value(url),
  RESEND_API_KEY: "re_unused",
  RESEND_BASE_URL: "http://127.0.0.1:9",
  MAIL_FROM: "Kaiwa <hello@example.com>",
  APP_URL: "https://kaiwa.example",
  UNSUBSCRIBE_SECRET: "serve-unsubscribe-secret-0123456789",
  // Live mode refuses a trivially weak secret and wants FOUNDER_NAME (issue 19's settings checks).
  CRON_SECRET: "serve-cron-secret-0123456789-abcdefghij",
  FOUNDER_NAME: "Yuki Sato"
})

/** GETs /health until the server answers (any status). */
const waitForHealth = async (port: number, output: () => string = () => "") => {
  for (let i = 0; i < 600; i++) {
    try {
      return (await fetch(`http://127.0.0.1:${port}/health`)).status
    } catch {
      await new Promise((r) => setTimeout(r, 100))
    }
  }
  throw new Error(`the server never answered: ${output()}`)
}

const signal = (pid: number, name: NodeJS.Signals) => {
  try {
    process.kill(pid, name)
  } catch {
    // gone already
  }
}

/** The pids of a process's children (none when it has none, or is gone). */
const childrenOf = (pid: number): Array<number> => {
  try {
    return execFileSync("ps", ["-o", "pid=", "--ppid", String(pid)]).toString().split("\n").map(Number).filter((n) => n > 0)
  } catch {
    return [] // `ps` exits 1 when nothing matches
  }
}

const waitUntilGone = async (pid: number) => {
  for (let i = 0; i < 300; i++) {
    try {
      process.kill(pid, 0)
    } catch {
      return
    }
    await new Promise((r) => setTimeout(r, 100))
  }
  throw new Error(`process ${pid} is still alive`)
}

/**
 * `kaiwa-jobs serve --local` in a fresh working directory (its embedded database goes in .kaiwa-local/ there),
 * with the pid of its embedded PostgreSQL and a way to wait for its exit with a bound.
 */
const startLocal = async (env: Record<string, string>) => {
  const cwd = fs.mkdtempSync(path.join(os.tmpdir(), "kaiwa-serve-local-"))
  tempDirs.push(cwd)
  // A checkout's usual mode: as root the embedded server runs as `postgres`, which must reach .kaiwa-local/.
  fs.chmodSync(cwd, 0o755)
  const child = spawn(process.execPath, [path.resolve("dist/cli.js"), "serve", "--local"], {
    cwd,
    env: { PATH: process.env["PATH"] ?? "", HOME: process.env["HOME"] ?? "/tmp", ...env },
    stdio: ["ignore", "pipe", "pipe"]
  })
  children.push(child)
  let stdout = ""
  let stderr = ""
  child.stdout.on("data", (d: Buffer) => (stdout += d.toString()))
  child.stderr.on("data", (d: Buffer) => (stderr += d.toString()))
  const done = new Promise<Finished>((resolve) => child.on("close", (code, signal) => resolve({ code, signal, stdout, stderr })))
  const postmaster = () => {
    const pids = execFileSync("ps", ["-o", "pid=,comm=", "--ppid", String(child.pid)]).toString()
    const pid = Number(pids.split("\n").find((l) => l.includes("postgres"))?.trim().split(/\s+/)[0])
    if (!Number.isInteger(pid) || pid <= 0) throw new Error(`no embedded PostgreSQL under ${child.pid}: ${pids}`)
    return pid
  }
  const exited = (ms: number) =>
    Promise.race([done, new Promise<undefined>((resolve) => setTimeout(() => resolve(undefined), ms))])
  return { child, postmaster, exited, output: () => stdout + stderr }
}

/** The addresses a TCP socket listens on at `port` on this machine (from /proc/net/tcp and tcp6). */
const listeningOn = (port: number): Array<string> => {
  const hex = port.toString(16).toUpperCase().padStart(4, "0")
  const addresses: Array<string> = []
  for (const [file, v6] of [["/proc/net/tcp", false], ["/proc/net/tcp6", true]] as const) {
    if (!fs.existsSync(file)) continue
    for (const line of fs.readFileSync(file, "utf8").split("\n").slice(1)) {
      const [, local, , state] = line.trim().split(/\s+/)
      if (state !== "0A" || !local?.endsWith(`:${hex}`)) continue
      const ip = local.split(":")[0]!
      addresses.push(v6 ? ipv6(ip) : ipv4(ip))
    }
  }
  return addresses
}
const ipv4 = (hex: string) => [3, 2, 1, 0].map((i) => parseInt(hex.slice(i * 2, i * 2 + 2), 16)).join(".")
// /proc spells IPv6 addresses as four little-endian words: only the ones a bind can produce here are named.
const ipv6 = (hex: string) =>
  /^0{32}$/.test(hex) ? "::" : hex === "00000000000000000000000001000000" ? "::1"
  : hex.startsWith("0000000000000000FFFF0000") ? `::ffff:${ipv4(hex.slice(24))}` : hex
