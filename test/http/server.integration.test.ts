/**
 * The HTTP server on a real port: cron triggers with their auth rules, dry runs, the per-job lock, /health, and
 * the unsubscribe page and one-click POST. No response carries a stack trace or a secret.
 */
import { NodeHttpServer } from "@effect/platform-node"
import { assert, describe, layer } from "@effect/vitest"
import { ConfigProvider, Deferred, Effect, Fiber, Layer, Redacted, Ref } from "effect"
import { HttpRouter, HttpServer } from "effect/http"
import { SqlClient } from "effect/sql"
import { JobsConfig } from "../../src/Config.ts"
import { Database, pgLayer } from "../../src/Database.ts"
import { Routes } from "../../src/Http.ts"
import * as Layers from "../../src/Layers.ts"
import { type Batch, type DeliveryResult, Mailer, MailerTestRef, type OutgoingEmail } from "../../src/Mailer.ts"
import { Telemetry } from "../../src/Telemetry.ts"
import { makeToken } from "../../src/Unsubscribe.ts"
import { freshDatabaseUrl, insertUsers, snapshotLibraryTables } from "../support/TestDb.ts"

const CRON_SECRET = "cron-secret-for-tests-0123456789abcdef"
const UNSUBSCRIBE_SECRET = "unsubscribe-secret-for-tests-0123456789"
const DAY = 86_400_000
const AT = new Date("2026-03-10T10:00:00Z")

const bodies: Array<string> = []

/** The server on an ephemeral port over a fresh test stack configured with `env`. */
const serverWith = (env: Record<string, string>, mailer: Layer.Layer<Mailer | MailerTestRef> = Mailer.layerTest) =>
  Layer.unwrap(Effect.map(freshDatabaseUrl, (url) => {
    const stack = Layer.mergeAll(
      Database.layerMigrated({ appFixture: true }).pipe(Layer.provideMerge(pgLayer(url))),
      mailer,
      Telemetry.layerTest,
      Layers.clockAt(AT)
    ).pipe(
      Layer.provideMerge(JobsConfig.layer),
      Layer.provide(ConfigProvider.layer(ConfigProvider.fromEnv({ env: { UNSUBSCRIBE_SECRET, ...env } })))
    )
    return HttpRouter.serve(Routes, { disableLogger: true }).pipe(
      Layer.provideMerge(NodeHttpServer.layerTest),
      Layer.provideMerge(stack)
    )
  }))

/** fetch against the test server; every body is kept for the final secrets check. */
const call = (path: string, init: RequestInit = {}) =>
  Effect.gen(function*() {
    const server = yield* HttpServer.HttpServer
    const address = server.address as { readonly port: number }
    const response = yield* Effect.promise(() => fetch(`http://127.0.0.1:${address.port}${path}`, init))
    const text = yield* Effect.promise(() => response.text())
    bodies.push(text)
    return { status: response.status, text, json: () => JSON.parse(text) }
  })

const auth = (token: string) => ({ headers: { authorization: token } })
const runsCount = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  return (yield* sql<{ n: number }>`SELECT count(*)::int AS n FROM kaiwa_jobs.runs`)[0]!.n
})
const seed = insertUsers(Array.from({ length: 5 }, (_, i) => ({ id: `h${i}`, createdAt: new Date(AT.getTime() - 30 * DAY) })))

describe("cron endpoints", () => {
  layer(serverWith({}), { excludeTestServices: true })((it) => {
    it.effect("CRON_SECRET unset: 503 and nothing runs", () =>
      Effect.gen(function*() {
        const r = yield* call("/api/cron/send-reminders", auth("Bearer undefined"))
        assert.strictEqual(r.status, 503)
        assert.strictEqual(yield* runsCount, 0)
      }))
  })

  layer(serverWith({ CRON_SECRET: "x".repeat(31) }), { excludeTestServices: true })((it) => {
    it.effect("CRON_SECRET shorter than 32 characters: 503 and nothing runs", () =>
      Effect.gen(function*() {
        const r = yield* call("/api/cron/founder-emails", auth(`Bearer ${"x".repeat(31)}`))
        assert.strictEqual(r.status, 503)
        assert.strictEqual(yield* runsCount, 0)
      }))
  })

  layer(serverWith({ CRON_SECRET }), { excludeTestServices: true })((it) => {
    it.effect("missing or wrong tokens: 401 each, nothing runs", () =>
      Effect.gen(function*() {
        const wrong = [
          {},
          auth("Bearer undefined"),
          auth("Bearer "),
          auth(`Bearer ${CRON_SECRET.slice(0, -1)}x`),
          auth(CRON_SECRET),
          auth(`Bearer ${CRON_SECRET}${CRON_SECRET}`),
          auth(`Basic ${CRON_SECRET}`)
        ]
        for (const init of wrong) {
          assert.strictEqual((yield* call("/api/cron/send-reminders", init)).status, 401)
          assert.strictEqual((yield* call("/api/cron/founder-emails", { ...init, method: "POST" })).status, 401)
        }
        assert.strictEqual(yield* runsCount, 0)
      }))

    it.effect("?dryRun=1: 200 with stats, every kaiwa_jobs table unchanged, nothing sent", () =>
      Effect.gen(function*() {
        yield* seed
        const before = yield* snapshotLibraryTables
        const r = yield* call("/api/cron/send-reminders?dryRun=1", auth(`Bearer ${CRON_SECRET}`))
        assert.strictEqual(r.status, 200)
        assert.strictEqual(r.json().dryRun, true)
        assert.strictEqual(r.json().stats.due, 5)
        assert.deepStrictEqual(yield* snapshotLibraryTables, before)
        assert.strictEqual((yield* Ref.get(yield* MailerTestRef)).length, 0)
      }))

    it.effect("the right token: 200 with the stats, by GET and by POST", () =>
      Effect.gen(function*() {
        const r = yield* call("/api/cron/send-reminders", auth(`Bearer ${CRON_SECRET}`))
        assert.strictEqual(r.status, 200)
        assert.strictEqual(r.json().outcome, "succeeded")
        assert.strictEqual(r.json().stats.sent, 5)
        assert.strictEqual((yield* Ref.get(yield* MailerTestRef)).length, 5)
        const post = yield* call("/api/cron/founder-emails", { ...auth(`Bearer ${CRON_SECRET}`), method: "POST" })
        assert.strictEqual(post.status, 200)
        assert.strictEqual(post.json().job, "founder-emails")
        assert.strictEqual(yield* runsCount, 2)
      }))

    it.effect("/health: 200 with each job's last run and overdue flag, and no personal data", () =>
      Effect.gen(function*() {
        const r = yield* call("/health")
        assert.strictEqual(r.status, 200)
        const body = r.json()
        assert.isTrue(body.ok)
        assert.deepStrictEqual(body.jobs.map((j: { job: string }) => j.job), ["practice-reminders", "founder-emails"])
        for (const j of body.jobs) assert.isBoolean(j.overdue)
        assert.notInclude(r.text, "@example.com")
        assert.notMatch(r.text, /"h\d"/)
      }))

    it.effect("unknown paths are 404", () =>
      Effect.gen(function*() {
        assert.strictEqual((yield* call("/api/cron/everything", auth(`Bearer ${CRON_SECRET}`))).status, 404)
      }))
  })
})

describe("the per-job lock", () => {
  // A mailer that holds every batch until the test lets it go.
  const release = Effect.runSync(Deferred.make<void>())
  const entered = Effect.runSync(Deferred.make<void>())
  const slowMailer = Layer.succeed(Mailer, Mailer.of({
    send: (batch: Batch) =>
      Deferred.succeed(entered, undefined).pipe(
        Effect.andThen(Deferred.await(release)),
        Effect.as(batch.emails.map((): DeliveryResult => ({ _tag: "Accepted", providerId: null })))
      )
  })).pipe(Layer.provideMerge(Layer.effect(MailerTestRef, Ref.make<ReadonlyArray<OutgoingEmail>>([]))))

  layer(serverWith({ CRON_SECRET }, slowMailer), { excludeTestServices: true })((it) => {
    it.effect("the same job already running: 409; another job still runs; the lock is released afterwards", () =>
      Effect.gen(function*() {
        yield* seed
        const first = yield* call("/api/cron/send-reminders", auth(`Bearer ${CRON_SECRET}`)).pipe(Effect.forkChild)
        yield* Deferred.await(entered)
        const second = yield* call("/api/cron/send-reminders", auth(`Bearer ${CRON_SECRET}`))
        assert.strictEqual(second.status, 409)
        const other = yield* call("/api/cron/founder-emails", auth(`Bearer ${CRON_SECRET}`))
        assert.strictEqual(other.status, 200)
        yield* Deferred.succeed(release, undefined)
        assert.strictEqual((yield* Fiber.join(first)).status, 200)
        const again = yield* call("/api/cron/send-reminders", auth(`Bearer ${CRON_SECRET}`))
        assert.strictEqual(again.status, 200)
      }))
  })
})

describe("unsubscribe", () => {
  layer(serverWith({ CRON_SECRET }), { excludeTestServices: true })((it) => {
    it.effect("GET shows a page and records nothing; the one-click POST records it; the user is no longer due", () =>
      Effect.gen(function*() {
        yield* seed
        const token = makeToken(
          (yield* JobsConfig).unsubscribeSecret,
          { userId: "h1", list: "practice-reminders" }
        )
        const sql = yield* SqlClient.SqlClient
        const suppressions = sql<{ n: number }>`SELECT count(*)::int AS n FROM kaiwa_jobs.suppressions`

        const get = yield* call(`/unsubscribe?token=${encodeURIComponent(token)}`)
        assert.strictEqual(get.status, 200)
        assert.include(get.text, "<form method=\"post\"")
        assert.strictEqual((yield* suppressions)[0]!.n, 0)

        for (const bad of [token.slice(0, -2), `${token}x`, makeToken(Redacted.make("a-different-secret-0123456789"), { userId: "h1", list: "practice-reminders" }), "", "%3Cscript%3E"]) {
          const r = yield* call(`/unsubscribe?token=${encodeURIComponent(bad)}`, {
            method: "POST",
            headers: { "content-type": "application/x-www-form-urlencoded" },
            body: "List-Unsubscribe=One-Click"
          })
          assert.strictEqual(r.status, 400)
          assert.notInclude(r.text, "<script>")
        }
        assert.strictEqual((yield* suppressions)[0]!.n, 0)

        const post = yield* call(`/unsubscribe?token=${encodeURIComponent(token)}`, {
          method: "POST",
          headers: { "content-type": "application/x-www-form-urlencoded" },
          body: "List-Unsubscribe=One-Click"
        })
        assert.strictEqual(post.status, 200)
        assert.include(post.text, "unsubscribed")
        const again = yield* call(`/unsubscribe?token=${encodeURIComponent(token)}`, { method: "POST", body: "List-Unsubscribe=One-Click" })
        assert.strictEqual(again.status, 200)
        assert.strictEqual((yield* suppressions)[0]!.n, 1)

        const run = yield* call("/api/cron/send-reminders", auth(`Bearer ${CRON_SECRET}`))
        assert.strictEqual(run.json().stats.skipped.suppressed, 1)
        const to = (yield* Ref.get(yield* MailerTestRef)).map((e) => e.to)
        assert.notInclude(to, "h1@example.com")
        assert.strictEqual(to.length, 4)
      }))
  })
})

describe("responses", () => {
  layer(Layer.empty)((it) => {
    it.effect("carry no stack trace and no secret", () =>
      Effect.sync(() => {
        assert.isAbove(bodies.length, 20)
        for (const body of bodies) {
          assert.notInclude(body, CRON_SECRET)
          assert.notInclude(body, UNSUBSCRIBE_SECRET)
          assert.notMatch(body, /\n\s+at [^\n]+:\d+:\d+/)
        }
      }))
  })
})
