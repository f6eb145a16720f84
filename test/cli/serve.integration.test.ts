/**
 * `kaiwa-jobs serve` as a real process: it answers /health and stops promptly on SIGTERM (Fly's stop signal for
 * the web process). The HTTP cases themselves are in test/http; signals during a job run are in test/faults.
 */
import * as net from "node:net"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Redacted } from "effect"
import { run, start } from "../support/spawn.ts"
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
})
