/**
 * Signals on real processes: SIGINT and SIGTERM sent to a live run in the middle of a batch stop it within 5 s
 * (Fly's default kill_timeout), the run is recorded as interrupted, and a re-run finishes without a duplicate.
 * Also `kaiwa-jobs serve` answers /health and stops on a signal.
 */
import * as net from "node:net"
import { assert, describe, layer } from "@effect/vitest"
import { Effect, Redacted } from "effect"
import { SqlClient } from "effect/sql"
import { startFakeResend } from "../support/FakeResend.ts"
import { run, start } from "../support/spawn.ts"
import { freshDatabaseUrl, insertUsers } from "../support/TestDb.ts"
import * as Layers from "../../src/Layers.ts"
import { Layer } from "effect"

const DAY = 86_400_000
const AT = "2026-03-10T10:00:00Z"
let url: Redacted.Redacted<string> | undefined
const stack = Layer.unwrap(Effect.map(freshDatabaseUrl, (u) => {
  url = u
  return Layers.test(u)
}))

const liveEnv = (fakeUrl: string, apiKey: string) => ({
  DATABASE_URL: Redacted.value(url!),
  RESEND_API_KEY: apiKey,
  RESEND_BASE_URL: fakeUrl,
  RESEND_RPS: "20",
  MAIL_FROM: "Kaiwa <hello@example.com>",
  APP_URL: "https://kaiwa.example",
  UNSUBSCRIBE_SECRET: "signals-unsubscribe-secret-0123456789",
  LEASE_SECONDS: "2"
})

describe("signals", () => {
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    layer(stack, { excludeTestServices: true })((it) => {
      it.effect(`${signal} mid-batch: exit within 5 s, run recorded interrupted, a re-run completes without duplicates`, () =>
        Effect.gen(function*() {
          yield* insertUsers(Array.from({ length: 400 }, (_, i) => ({ id: `s${i}`, createdAt: new Date(Date.parse(AT) - 30 * DAY) })))
          const fake = yield* Effect.acquireRelease(
            Effect.promise(() => startFakeResend({ faults: { latencyMs: 1500 } })),
            (f) => Effect.promise(() => f.close())
          )
          const env = liveEnv(fake.url, fake.apiKey)
          // Interrupt once the provider holds the first batch.
          const { child, done } = start("dist/send-reminders.js", ["--now", AT], env)
          yield* Effect.promise(async () => {
            while (fake.requests === 0) await new Promise((r) => setTimeout(r, 20))
          })
          const t0 = Date.now()
          child.kill(signal)
          const r = yield* Effect.promise(() => done)
          const took = Date.now() - t0
          assert.isBelow(took, 5000, `took ${took} ms to stop`)
          assert.strictEqual(r.code, 130, r.stderr)
          const sql = yield* SqlClient.SqlClient
          const runs = yield* sql<{ outcome: string }>`SELECT outcome FROM kaiwa_jobs.runs`
          assert.deepStrictEqual(runs.map((x) => x.outcome), ["interrupted"])

          fake.faults.latencyMs = 0
          const again = yield* Effect.promise(() => run("dist/send-reminders.js", ["--now", AT], env))
          assert.strictEqual(again.code, 0, again.stderr)
          const counts = fake.acceptedCountByRecipient()
          assert.strictEqual(counts.size, 400)
          assert.isTrue([...counts.values()].every((c) => c === 1))
          const pending = yield* sql<{ n: number }>`SELECT count(*)::int AS n FROM kaiwa_jobs.deliveries WHERE status <> 'sent'`
          assert.strictEqual(pending[0]!.n, 0)
        }), 30_000)
    })
  }
})

const freePort = () =>
  new Promise<number>((resolve) => {
    const s = net.createServer().listen(0, "127.0.0.1", () => {
      const port = (s.address() as net.AddressInfo).port
      s.close(() => resolve(port))
    })
  })

describe("serve", () => {
  layer(stack, { excludeTestServices: true })((it) => {
    it.effect("`kaiwa-jobs serve` answers /health and exits promptly on SIGTERM", () =>
      Effect.gen(function*() {
        const port = yield* Effect.promise(freePort)
        const env = { ...liveEnv("http://127.0.0.1:9", "re_unused"), PORT: String(port), CRON_SECRET: "x".repeat(40) }
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
})
