/**
 * The HTTP server (CONTRACT section 7) on a real port over a fresh embedded database: cron triggers and their auth
 * rules, dry runs, the per-job lock, runs that outlive their client, /health, and the unsubscribe page and
 * one-click POST. Every response body, log line and trace attribute is checked for stack traces and secrets.
 */
import { createServer, type AddressInfo } from "node:net"
import { NodeHttpServer } from "@effect/platform-node"
import { assert, describe, layer } from "@effect/vitest"
import { Cause, ConfigProvider, Deferred, Duration, Effect, Fiber, Layer, Logger, Redacted, References, Ref, Tracer } from "effect"
import { HttpServer } from "effect/http"
import { SqlClient } from "effect/sql"
import { TestConsole } from "effect/testing"
import { JobsConfig } from "../../src/config/Config.ts"
import { Database, pgLayer } from "../../src/database/Database.ts"
import * as Http from "../../src/triggers/Http.ts"
import { registry } from "../../src/jobs/index.ts"
import * as Layers from "../../src/job/Layers.ts"
import { type Batch, type DeliveryResult, Mailer, MailerError, MailerTestRef, type OutgoingEmail } from "../../src/mail/Mailer.ts"
import { Telemetry } from "../../src/telemetry/Telemetry.ts"
import { DRY_RUN_TOKEN } from "../../src/mail/Links.ts"
import { makeToken, verifyToken } from "../../src/mail/Unsubscribe.ts"
import { freshDatabaseUrl, insertUsers, snapshotLibraryTables, uid } from "../support/TestDb.ts"

const CRON_SECRET = "cron-secret-for-tests-0123456789abcdef"
// Short and exact-length secrets for the length rule; varied characters, since a trivially weak one exits 2.
const CRON_32 = "0123456789abcdefghijklmnopqrstuv"
const CRON_31 = CRON_32.slice(0, 31)
const UNSUBSCRIBE_SECRET = "unsubscribe-secret-for-tests-0123456789"
const DAY = 86_400_000
// Tuesday 10:00 UTC: inside the reminder window for UTC users.
const AT = new Date("2026-03-10T10:00:00Z")

// Everything the server said or recorded, for the secrets checks.
const bodies: Array<string> = []
const logLines: Array<string> = []
const spans: Array<Tracer.NativeSpan> = []
// Values that must never appear in any of them (tokens are added as tests make them).
const credentials: Array<string> = [CRON_SECRET, UNSUBSCRIBE_SECRET]

const STACK_FRAME = /\bat (?:async )?[^\s()]*\s*\(?[^\s()]+:\d+:\d+\)?/

const captureLogs = Logger.layer([
  Logger.make(({ cause, fiber, logLevel, message }) => {
    const annotations = fiber.getRef(References.CurrentLogAnnotations)
    logLines.push(
      `${logLevel} ${JSON.stringify(message)} ${JSON.stringify(annotations)}${cause.reasons.length > 0 ? ` ${Cause.pretty(cause)}` : ""}`
    )
  })
])

const recordSpans = Layer.succeed(
  Tracer.Tracer,
  Tracer.make({
    span: (options) => {
      const span = new Tracer.NativeSpan(options)
      spans.push(span)
      return span
    }
  })
)

/** The in-memory mailer, plus a switch: accept, hold every batch until released, or fail as a refused API key. */
const control = {
  mode: "accept" as "accept" | "hold" | "fail",
  entered: Effect.runSync(Deferred.make<void>()),
  release: Effect.runSync(Deferred.make<void>())
}
const controlledMailer = Layer.effect(
  Mailer,
  Effect.gen(function*() {
    const store = yield* MailerTestRef
    const accept = (batch: Batch) =>
      Ref.update(store, (all) => [...all, ...batch.emails]).pipe(
        Effect.as(batch.emails.map((): DeliveryResult => ({ _tag: "Accepted", providerId: null })))
      )
    return Mailer.of({
      send: (batch) =>
        Effect.suspend(() => {
          switch (control.mode) {
            case "fail":
              return Effect.fail(new MailerError({ message: "the API key was refused", kind: "auth", retryable: false }))
            case "hold":
              return Deferred.succeed(control.entered, undefined).pipe(
                Effect.andThen(Deferred.await(control.release)),
                Effect.andThen(accept(batch))
              )
            case "accept":
              return accept(batch)
          }
        })
    })
  })
).pipe(Layer.provideMerge(Layer.effect(MailerTestRef, Ref.make<ReadonlyArray<OutgoingEmail>>([]))))

/** The test mode stack on a fresh database, configured with `env`, with logs, spans and console captured. */
const stackWith = (env: Record<string, string>, mailer: Layer.Layer<Mailer | MailerTestRef> = Mailer.layerTest) =>
  Layer.unwrap(Effect.map(freshDatabaseUrl, (url) =>
    Layer.mergeAll(
      Database.layerMigrated({ appFixture: true }).pipe(Layer.provideMerge(pgLayer(url))),
      mailer,
      Telemetry.layerTest,
      Layers.clockAt(AT),
      captureLogs,
      recordSpans,
      // The console mailer of a dry run prints here, where the tests can read it.
      TestConsole.layer
    ).pipe(
      Layer.provideMerge(JobsConfig.layer),
      Layer.provide(ConfigProvider.layer(ConfigProvider.fromEnv({ env: { UNSUBSCRIBE_SECRET, ...env } })))
    )
  ))

/** `Http.layerApp` on an ephemeral port (with an HttpServer to read it from) over `stackWith(env, mailer)`. */
const serverWith = (env: Record<string, string>, mailer?: Layer.Layer<Mailer | MailerTestRef>) =>
  Http.layerApp.pipe(Layer.provideMerge(NodeHttpServer.layerTest), Layer.provideMerge(stackWith(env, mailer)))

interface Reply {
  readonly status: number
  readonly headers: Headers
  readonly text: string
  readonly json: () => any
}

const assertClean = (what: string, text: string) => {
  assert.notMatch(text, STACK_FRAME, `${what} carries a stack frame`)
  for (const secret of credentials) assert.notInclude(text, secret, `${what} carries a secret`)
}

/** fetch against the test server; every reply is checked for stack frames and secrets, and kept. */
const call = (path: string, init: RequestInit = {}) =>
  Effect.gen(function*() {
    const server = yield* HttpServer.HttpServer
    const { port } = server.address as { readonly port: number }
    return yield* Effect.promise(async (): Promise<Reply> => {
      const response = await fetch(`http://127.0.0.1:${port}${path}`, init)
      const text = await response.text()
      return { status: response.status, headers: response.headers, text, json: () => JSON.parse(text) }
    })
  }).pipe(Effect.tap((reply) =>
    Effect.sync(() => {
      bodies.push(reply.text)
      assertClean(`the reply to ${path}`, reply.text)
      assertClean(`the headers of the reply to ${path}`, JSON.stringify([...reply.headers]))
    })
  ))

/** A TCP port nobody listens on right now. */
const freePort = Effect.promise(() =>
  new Promise<number>((resolve, reject) => {
    const probe = createServer()
    probe.once("error", reject)
    probe.listen(0, "127.0.0.1", () => {
      const { port } = probe.address() as AddressInfo
      probe.close(() => resolve(port))
    })
  })
)

const bearer = (token: string, method = "GET"): RequestInit => ({ method, headers: { authorization: token } })
const authorized = (method = "GET") => bearer(`Bearer ${CRON_SECRET}`, method)
const form = (body: string): RequestInit => ({
  method: "POST",
  headers: { "content-type": "application/x-www-form-urlencoded" },
  body
})

const count = (table: string) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    return (yield* sql<{ n: number }>`SELECT count(*)::int AS n FROM ${sql(`kaiwa_jobs.${table}`)}`)[0]!.n
  })
const sentTo = Effect.gen(function*() {
  return (yield* Ref.get(yield* MailerTestRef)).map((e) => e.to).sort()
})
/** `n` learners who signed up a month ago and never practised: each is due a reminder now. */
const learners = (prefix: string, n: number) =>
  insertUsers(Array.from({ length: n }, (_, i) => ({ id: `${prefix}${i}`, createdAt: new Date(AT.getTime() - 30 * DAY) })))

describe("cron endpoints: the secret", () => {
  layer(serverWith({}), { excludeTestServices: true })((it) => {
    it.effect("CRON_SECRET unset: 503 whatever the header, and nothing runs", () =>
      Effect.gen(function*() {
        yield* learners("u", 2)
        for (const init of [{}, bearer("Bearer undefined"), bearer("Bearer "), bearer("Bearer", "POST")]) {
          for (const { path } of Http.cronRoutes(registry)) {
            const r = yield* call(path, init)
            assert.strictEqual(r.status, 503)
            assert.deepStrictEqual(r.json(), {
              error: "cron endpoint disabled: CRON_SECRET is not set or shorter than 32 characters"
            })
          }
        }
        assert.strictEqual(yield* count("runs"), 0)
        assert.deepStrictEqual(yield* sentTo, [])
      }))
  })

  layer(serverWith({ CRON_SECRET: CRON_31 }), { excludeTestServices: true })((it) => {
    it.effect("CRON_SECRET of 31 characters: 503 even for the matching token, and nothing runs", () =>
      Effect.gen(function*() {
        yield* learners("u", 2)
        assert.strictEqual((yield* call("/api/cron/send-reminders", bearer(`Bearer ${CRON_31}`))).status, 503)
        assert.strictEqual((yield* call("/api/cron/founder-emails?dryRun=1", bearer(`Bearer ${CRON_31}`, "POST"))).status, 503)
        assert.strictEqual(yield* count("runs"), 0)
        assert.deepStrictEqual(yield* sentTo, [])
      }))
  })

  layer(serverWith({ CRON_SECRET: CRON_32 }), { excludeTestServices: true })((it) => {
    it.effect("CRON_SECRET of exactly 32 characters enables the endpoints", () =>
      Effect.gen(function*() {
        const r = yield* call("/api/cron/founder-emails", bearer(`Bearer ${CRON_32}`))
        assert.strictEqual(r.status, 200)
        assert.strictEqual(r.json().outcome, "succeeded")
      }))
  })
})

describe("cron endpoints: runs", () => {
  layer(serverWith({ CRON_SECRET }), { excludeTestServices: true })((it) => {
    it.effect("a missing or wrong token: 401 each, with WWW-Authenticate, and nothing runs", () =>
      Effect.gen(function*() {
        yield* learners("w", 3)
        const wrong: Array<RequestInit> = [
          {},
          bearer("Bearer undefined"),
          bearer("Bearer "),
          bearer("Bearer"),
          bearer(`Bearer ${CRON_SECRET.slice(0, -1)}${CRON_SECRET.endsWith("f") ? "e" : "f"}`),
          bearer(`Bearer ${CRON_SECRET.slice(0, -1)}`),
          bearer(`Bearer ${CRON_SECRET}x`),
          bearer(`Bearer  ${CRON_SECRET}`),
          bearer(CRON_SECRET),
          bearer(`Basic ${CRON_SECRET}`),
          bearer(`Bearer ${CRON_SECRET.toUpperCase()}`)
        ]
        for (const init of wrong) {
          for (const method of ["GET", "POST"]) {
            for (const { path } of Http.cronRoutes(registry)) {
              const r = yield* call(`${path}?dryRun=1`, { ...init, method })
              assert.strictEqual(r.status, 401, `${method} ${path} with ${JSON.stringify(init.headers)}`)
              assert.strictEqual(r.headers.get("www-authenticate"), "Bearer")
              assert.deepStrictEqual(Object.keys(r.json()), ["error"])
            }
          }
        }
        assert.strictEqual(yield* count("runs"), 0)
        assert.deepStrictEqual(yield* sentTo, [])
      }))

    it.effect("?dryRun=1 and ?dryRun=true: 200 with the stats; every kaiwa_jobs table unchanged, nothing sent", () =>
      Effect.gen(function*() {
        const before = yield* snapshotLibraryTables
        for (const [query, method] of [["dryRun=1", "GET"], ["dryRun=true", "POST"]] as const) {
          const r = yield* call(`/api/cron/send-reminders?${query}`, authorized(method))
          assert.strictEqual(r.status, 200)
          const body = r.json()
          assert.deepStrictEqual(Object.keys(body).sort(), ["asOf", "dryRun", "durationMs", "error", "exitCode", "job", "outcome", "runId", "stats"])
          assert.strictEqual(body.dryRun, true)
          assert.strictEqual(body.job, "practice-reminders")
          assert.strictEqual(body.outcome, "succeeded")
          assert.strictEqual(body.exitCode, 0)
          assert.strictEqual(body.stats.due, 3)
          // Nothing was sent: what a live run would send is reported as such (issue 19).
          assert.strictEqual(body.stats.sent, 0)
          assert.deepStrictEqual(body.stats.wouldSend, { sent: 3 })
        }
        assert.deepStrictEqual(yield* snapshotLibraryTables, before)
        assert.deepStrictEqual(yield* sentTo, [])
        // Each dry run printed its emails through the console mailer instead.
        const printed = (yield* TestConsole.logLines).map(String).filter((l) => l.includes("To:       w"))
        assert.strictEqual(printed.length, 6)
        // Issue 19: what a dry run prints holds no usable token, only the placeholder: in each email the unsubscribe
        // link and the preference center's link (issue 20's footer).
        for (const l of printed) {
          assert.include(l, `/unsubscribe?token=${DRY_RUN_TOKEN}`)
          assert.include(l, `/preferences?token=${DRY_RUN_TOKEN}`)
        }
        const tokens = printed.flatMap((l) => [...l.matchAll(/token=([^\s>"&<]+)/g)].map((m) => decodeURIComponent(m[1]!)))
        assert.strictEqual(tokens.length, 12)
        for (const token of tokens) {
          assert.strictEqual(token, DRY_RUN_TOKEN)
          assert.isTrue(verifyToken(Redacted.make(UNSUBSCRIBE_SECRET), token)._tag === "None")
        }
      }))

    it.effect("an unknown query parameter or dryRun value: 400 and nothing runs (a typo never sends for real)", () =>
      Effect.gen(function*() {
        const before = yield* snapshotLibraryTables
        for (const query of ["dryrun=1", "dry-run=1", "dryRun=yes", "dryRun=", "dryRun", "dryRun=1&dryRun=0", "dryRun=1&x=2", "dryRun=toString", "dryRun=__proto__"]) {
          const r = yield* call(`/api/cron/send-reminders?${query}`, authorized())
          assert.strictEqual(r.status, 400, query)
        }
        assert.deepStrictEqual(yield* snapshotLibraryTables, before)
        assert.deepStrictEqual(yield* sentTo, [])
      }))

    it.effect("the right token: 200 with the stats, by GET and by POST; the emails went to the mailer", () =>
      Effect.gen(function*() {
        const r = yield* call("/api/cron/send-reminders", authorized())
        assert.strictEqual(r.status, 200)
        assert.strictEqual(r.headers.get("content-type"), "application/json")
        const body = r.json()
        assert.strictEqual(body.job, "practice-reminders")
        assert.strictEqual(body.outcome, "succeeded")
        assert.strictEqual(body.exitCode, 0)
        assert.strictEqual(body.dryRun, false)
        assert.strictEqual(body.error, null)
        assert.isString(body.runId)
        assert.isNumber(body.durationMs)
        assert.strictEqual(body.stats.sent, 3)
        assert.deepStrictEqual(yield* sentTo, ["w0@example.com", "w1@example.com", "w2@example.com"])

        // The scheme is case-insensitive (RFC 9110); POST works the same.
        yield* learners("p", 1)
        const post = yield* call("/api/cron/send-reminders", bearer(`bearer ${CRON_SECRET}`, "POST"))
        assert.strictEqual(post.status, 200)
        assert.strictEqual(post.json().stats.sent, 1)
        const founder = yield* call("/api/cron/founder-emails", authorized("POST"))
        assert.strictEqual(founder.status, 200)
        assert.strictEqual(founder.json().job, "founder-emails")
        assert.deepStrictEqual(Object.keys(founder.json().stats).filter((k) => k.startsWith("Day")), ["Day1", "Day2", "Day3"])

        const sql = yield* SqlClient.SqlClient
        const runs = yield* sql<{ job: string; trigger: string; outcome: string }>`
          SELECT job, trigger, outcome FROM kaiwa_jobs.runs ORDER BY started_at, job`
        assert.strictEqual(runs.length, 3)
        for (const run of runs) {
          assert.strictEqual(run.trigger, "http")
          assert.strictEqual(run.outcome, "succeeded")
        }
      }))

    it.effect("unknown paths and methods are 404", () =>
      Effect.gen(function*() {
        for (const [path, method] of [["/api/cron/everything", "GET"], ["/api/cron", "POST"], ["/", "GET"], ["/api/cron/send-reminders", "PUT"], ["/health", "POST"]] as const) {
          assert.strictEqual((yield* call(path, authorized(method))).status, 404, `${method} ${path}`)
        }
      }))
  })
})

describe("/health", () => {
  layer(serverWith({ CRON_SECRET }), { excludeTestServices: true })((it) => {
    it.effect("200 with each job's last run and overdue flag, and no personal data (stats are left out)", () =>
      Effect.gen(function*() {
        const fresh = yield* call("/health")
        assert.strictEqual(fresh.status, 200)
        assert.deepStrictEqual(
          fresh.json().jobs.map((j: { job: string; overdue: boolean }) => [j.job, j.overdue]),
          registry.map((j) => [j.name, true])
        )

        // A run whose stats name a user (an invalid address is a bad row, reported by id to the operator).
        yield* insertUsers([
          { id: "h-valid", createdAt: new Date(AT.getTime() - 30 * DAY) },
          { id: "h-bad-row-user", email: "not-an-address", createdAt: new Date(AT.getTime() - 30 * DAY) }
        ])
        const run = yield* call("/api/cron/send-reminders", authorized())
        assert.strictEqual(run.status, 200)
        assert.deepStrictEqual(run.json().stats.badRows, { invalid_email: [uid("h-bad-row-user")] })

        const r = yield* call("/health")
        assert.strictEqual(r.status, 200)
        assert.strictEqual(r.headers.get("cache-control"), "no-store")
        const body = r.json()
        assert.isTrue(body.ok)
        const [reminders, founder] = body.jobs
        assert.deepStrictEqual(Object.keys(reminders).sort(), ["atRisk", "delivery", "job", "lastOutcome", "lastRunAt", "lastSuccessAt", "overdue", "overdueAfterMinutes", "paused"])
        assert.strictEqual(reminders.job, "practice-reminders")
        assert.isNull(reminders.paused)
        assert.strictEqual(reminders.lastOutcome, "succeeded")
        assert.isString(reminders.lastRunAt)
        assert.strictEqual(reminders.lastSuccessAt, reminders.lastRunAt)
        assert.isFalse(reminders.overdue)
        assert.strictEqual(founder.job, "founder-emails")
        assert.isNull(founder.lastRunAt)
        assert.isTrue(founder.overdue)
        assert.notInclude(r.text, "h-bad-row-user")
        assert.notInclude(r.text, uid("h-bad-row-user"), "the bad row's id stays in the run's stats")
        assert.notInclude(r.text, "h-valid")
        assert.notInclude(r.text, "@")
        assert.notInclude(r.text, "stats")
      }))
  })
})

describe("/health under a flood", () => {
  layer(serverWith({ CRON_SECRET }), { excludeTestServices: true })((it) => {
    // The delivery-health statement (src/delivery/DeliveryHealth.ts), as the SQL client's spans record it.
    const healthQueries = () =>
      spans.filter((s) => String(s.attributes.get("db.query.text") ?? "").includes("FILTER (WHERE delivery_state = 'delivered')")).length

    it.effect("concurrent requests share one summary: 500 at once cost the database one summary per 5 s, not 500", () =>
      Effect.gen(function*() {
        const before = healthQueries()
        const started = performance.now()
        const replies = yield* Effect.forEach(Array.from({ length: 500 }), () => call("/health"), { concurrency: "unbounded" })
        const elapsed = performance.now() - started
        assert.deepStrictEqual([...new Set(replies.map((r) => r.status))], [200])
        // One summary serves every request of its 5 s: however long the flood took on this machine, it cost one
        // summary per HEALTH_MAX_AGE it lasted (and one more for a summary cached before it), where each request
        // used to run its own.
        const summaries = healthQueries() - before
        const bound = 2 + Math.floor(elapsed / Duration.toMillis(Http.HEALTH_MAX_AGE))
        assert.isAtMost(summaries, bound, `${summaries} summaries in ${Math.round(elapsed)} ms`)
        assert.isAtMost(new Set(replies.map((r) => r.text)).size, bound)
      }))

    it.effect("the summary is at most HEALTH_MAX_AGE old: a run recorded elsewhere shows once it has expired", () =>
      Effect.gen(function*() {
        const first = yield* call("/health")
        assert.isNull(first.json().jobs.find((j: { job: string }) => j.job === "founder-emails").lastRunAt)
        // A run recorded by another process (a cron machine), straight into the history.
        const sql = yield* SqlClient.SqlClient
        yield* sql`INSERT INTO kaiwa_jobs.runs (id, job, as_of, started_at, finished_at, outcome, trigger, host)
          VALUES (gen_random_uuid(), 'founder-emails', ${AT}, ${AT}, ${AT}, 'succeeded', 'cli', 'elsewhere')`
        yield* Effect.sleep(Http.HEALTH_MAX_AGE)
        const later = yield* call("/health")
        assert.strictEqual(later.json().jobs.find((j: { job: string }) => j.job === "founder-emails").lastOutcome, "succeeded")
      }))
  })
})

describe("the per-job lock, and runs that outlive their client", () => {
  layer(serverWith({ CRON_SECRET }, controlledMailer), { excludeTestServices: true })((it) => {
    it.effect("the same job already running: 409 (dry runs too); another job still runs; the lock goes with the run", () =>
      Effect.gen(function*() {
        yield* learners("l", 2)
        control.mode = "hold"
        control.entered = yield* Deferred.make<void>()
        control.release = yield* Deferred.make<void>()
        const first = yield* call("/api/cron/send-reminders", authorized()).pipe(Effect.forkChild)
        yield* Deferred.await(control.entered)

        for (const query of ["", "?dryRun=1"]) {
          const busy = yield* call(`/api/cron/send-reminders${query}`, authorized("POST"))
          assert.strictEqual(busy.status, 409)
          assert.deepStrictEqual(busy.json(), { error: "practice-reminders is already running" })
        }
        const other = yield* call("/api/cron/founder-emails", authorized())
        assert.strictEqual(other.status, 200)

        yield* Deferred.succeed(control.release, undefined)
        const done = yield* Fiber.join(first)
        assert.strictEqual(done.status, 200)
        assert.strictEqual(done.json().stats.sent, 2)
        control.mode = "accept"
        assert.strictEqual((yield* call("/api/cron/send-reminders", authorized())).status, 200)
      }))

    it.effect("a client that hangs up does not stop the run; the job stays locked until the run ends", () =>
      Effect.gen(function*() {
        yield* learners("a", 2)
        control.mode = "hold"
        control.entered = yield* Deferred.make<void>()
        control.release = yield* Deferred.make<void>()
        const abort = new AbortController()
        const hungUp = yield* call("/api/cron/send-reminders", { ...authorized(), signal: abort.signal }).pipe(
          Effect.exit,
          Effect.forkChild
        )
        yield* Deferred.await(control.entered)
        abort.abort()
        yield* Fiber.join(hungUp)
        // Give the server time to see the closed connection (it would interrupt a request-bound run).
        yield* Effect.sleep("200 millis")
        // Bounded: were the run bound to the request, this call would start a new run and wait on the mailer.
        const busy = yield* call("/api/cron/send-reminders", authorized()).pipe(Effect.timeout("5 seconds"))
        assert.strictEqual(busy.status, 409)

        yield* Deferred.succeed(control.release, undefined)
        const sql = yield* SqlClient.SqlClient
        const outcome = sql<{ outcome: string | null }>`
          SELECT outcome FROM kaiwa_jobs.runs WHERE job = 'practice-reminders' ORDER BY started_at DESC LIMIT 1`
        let last: string | null = null
        for (let i = 0; i < 100 && (last === null || last === "running"); i++) {
          yield* Effect.sleep("50 millis")
          last = (yield* outcome)[0]?.outcome ?? null
        }
        assert.strictEqual(last, "succeeded")
        assert.includeMembers(yield* sentTo, ["a0@example.com", "a1@example.com"])
        // The lock goes when the run's fiber ends, a moment after the row is written.
        control.mode = "accept"
        let status = 409
        for (let i = 0; i < 20 && status === 409; i++) {
          yield* Effect.sleep("25 millis")
          status = (yield* call("/api/cron/send-reminders", authorized())).status
        }
        assert.strictEqual(status, 200)
      }))

    it.effect("a run that fails: 500 with the same JSON (the runner's reason, no stack); the lock is released", () =>
      Effect.gen(function*() {
        yield* learners("f", 2)
        control.mode = "fail"
        const r = yield* call("/api/cron/send-reminders", authorized())
        assert.strictEqual(r.status, 500)
        const body = r.json()
        assert.strictEqual(body.job, "practice-reminders")
        assert.strictEqual(body.outcome, "failed")
        assert.strictEqual(body.exitCode, 1)
        assert.strictEqual(body.dryRun, false)
        assert.include(body.error, "the API key was refused")
        assert.isNumber(body.stats.pending)
        control.mode = "accept"
        const again = yield* call("/api/cron/send-reminders", authorized())
        assert.strictEqual(again.status, 200)
        assert.strictEqual(again.json().stats.sent, 2)
      }))
  })
})

describe("unsubscribe", () => {
  const secret = Redacted.make(UNSUBSCRIBE_SECRET)
  // Tokens name the app's id (a uuid on Kaiwa's shape, the fixture here).
  const token = makeToken(secret, { userId: uid("s1", "kaiwa"), list: "practice-reminders" })
  const founderToken = makeToken(secret, { userId: uid("s2", "kaiwa"), list: "founder-emails" })
  credentials.push(token, founderToken)
  const oneClick = form("List-Unsubscribe=One-Click")
  const suppressions = Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    return yield* sql<{ userId: string | null; email: string | null; list: string; reason: string }>`
      SELECT user_id AS "userId", email, list, reason FROM kaiwa_jobs.suppressions ORDER BY id`
  })
  // The app's own preferences (Kaiwa's user_settings has a column for each of these lists).
  const appSettings = Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const rows = yield* sql<{ userId: string; reminders: boolean; founder: boolean; progress: boolean }>`
      SELECT user_id::text AS "userId", receive_practice_reminders AS reminders, receive_founder_emails AS founder,
        receive_progress_reports AS progress
      FROM user_settings`
    return rows.map((r) => ({ ...r })).sort((a, b) => a.userId.localeCompare(b.userId))
  })

  layer(serverWith({ CRON_SECRET }), { excludeTestServices: true })((it) => {
    it.effect("GET shows a confirmation form that posts to the same URL, and records nothing", () =>
      Effect.gen(function*() {
        const before = yield* snapshotLibraryTables
        const r = yield* call(`/unsubscribe?token=${encodeURIComponent(token)}`)
        assert.strictEqual(r.status, 200)
        assert.match(r.headers.get("content-type") ?? "", /^text\/html/)
        assert.strictEqual(r.headers.get("referrer-policy"), "no-referrer")
        // No action attribute: the form posts back to this URL, token included, without the page echoing it.
        assert.include(r.text, `<form method="post">`)
        assert.include(r.text, `<input type="hidden" name="List-Unsubscribe" value="One-Click">`)
        assert.include(r.text, "practice reminders")
        assert.deepStrictEqual(yield* snapshotLibraryTables, before)
      }))

    it.effect("a bad, forged, truncated or missing token: 400 on GET and POST, and nothing changes", () =>
      Effect.gen(function*() {
        const before = yield* snapshotLibraryTables
        const [payload, signature] = token.split(".") as [string, string]
        const otherUser = makeToken(secret, { userId: "s9", list: "practice-reminders" })
        const bad = [
          token.slice(0, -1),
          token.slice(0, 20),
          `${token}x`,
          `${payload}.${otherUser.split(".")[1]}`,
          `${otherUser.split(".")[0]}.${signature}`,
          makeToken(Redacted.make("a-different-secret-0123456789"), { userId: "s1", list: "practice-reminders" }),
          payload,
          "",
          "\"><script>alert(1)</script>"
        ]
        for (const t of bad) {
          const get = yield* call(`/unsubscribe?token=${encodeURIComponent(t)}`)
          assert.strictEqual(get.status, 400)
          const post = yield* call(`/unsubscribe?token=${encodeURIComponent(t)}`, oneClick)
          assert.strictEqual(post.status, 400)
          assert.include(post.text, "not valid")
          assert.notInclude(post.text, "<script>")
          assert.notInclude(get.text, "<script>")
          const inBody = yield* call("/unsubscribe", form(`token=${encodeURIComponent(t)}`))
          assert.strictEqual(inBody.status, 400)
        }
        assert.strictEqual((yield* call("/unsubscribe")).status, 400)
        assert.strictEqual((yield* call("/unsubscribe", oneClick)).status, 400)
        assert.deepStrictEqual(yield* snapshotLibraryTables, before)
      }))

    it.effect("the one-click POST records the opt-out in the app's user_settings (idempotently); the user is then skipped as opted out", () =>
      Effect.gen(function*() {
        yield* learners("s", 3)
        assert.deepStrictEqual(yield* appSettings, [], "the app made no settings row at sign-up")
        const post = yield* call(`/unsubscribe?token=${encodeURIComponent(token)}`, oneClick)
        assert.strictEqual(post.status, 200)
        assert.match(post.headers.get("content-type") ?? "", /^text\/html/)
        assert.include(post.text, "You're unsubscribed")
        // Preferences have one home (issue 18): the app's column, where its profile page reads it; the other lists
        // keep their defaults, and the library records no suppression of its own.
        const optedOut = [{ userId: uid("s1", "kaiwa"), reminders: false, founder: true, progress: true }]
        assert.deepStrictEqual(yield* appSettings, optedOut)
        assert.deepStrictEqual(yield* suppressions, [])
        // A second click (or a provider retrying) is still a 200 and changes nothing.
        const again = yield* call(`/unsubscribe?token=${encodeURIComponent(token)}`, oneClick)
        assert.strictEqual(again.status, 200)
        assert.deepStrictEqual(yield* appSettings, optedOut)
        assert.deepStrictEqual(yield* suppressions, [])

        const run = yield* call("/api/cron/send-reminders", authorized())
        assert.strictEqual(run.status, 200)
        assert.deepStrictEqual(run.json().stats.skipped, { opted_out: 1 })
        assert.strictEqual(run.json().stats.sent, 2)
        assert.deepStrictEqual(yield* sentTo, ["s0@example.com", "s2@example.com"])
      }))

    it.effect("the token may come in the form body instead of the query", () =>
      Effect.gen(function*() {
        const r = yield* call("/unsubscribe", form(`List-Unsubscribe=One-Click&token=${encodeURIComponent(founderToken)}`))
        assert.strictEqual(r.status, 200)
        assert.include(r.text, "founder")
        assert.deepStrictEqual(yield* appSettings, [
          { userId: uid("s1", "kaiwa"), reminders: false, founder: true, progress: true },
          { userId: uid("s2", "kaiwa"), reminders: true, founder: false, progress: true }
        ].sort((a, b) => a.userId.localeCompare(b.userId)))
        assert.deepStrictEqual(yield* suppressions, [])
      }))

    it.effect("requests are logged by method, path and status; never the query string", () =>
      Effect.sync(() => {
        const access = logLines.filter((l) => l.includes("http.status"))
        assert.isTrue(access.some((l) => l.includes("\"http.method\":\"POST\"") && l.includes("\"http.url\":\"/unsubscribe\"") && l.includes("\"http.status\":200")))
        assert.isTrue(access.some((l) => l.includes("\"http.url\":\"/unsubscribe\"") && l.includes("\"http.status\":400")))
        for (const line of access) assert.notInclude(line, "token=")
      }))
  })
})

describe("the production server", () => {
  layer(
    Layer.unwrap(Effect.map(freePort, (port) => Http.layerServer.pipe(Layer.provideMerge(stackWith({ CRON_SECRET, PORT: String(port) }))))),
    { excludeTestServices: true }
  )((it) => {
    it.effect("layerServer listens on PORT and serves the same routes", () =>
      Effect.gen(function*() {
        const { port } = yield* JobsConfig
        const health = yield* Effect.promise(() => fetch(`http://127.0.0.1:${port}/health`))
        assert.strictEqual(health.status, 200)
        const text = yield* Effect.promise(() => health.text())
        bodies.push(text)
        assert.isTrue(JSON.parse(text).ok)
        const cron = yield* Effect.promise(() => fetch(`http://127.0.0.1:${port}/api/cron/founder-emails?dryRun=1`, authorized()))
        assert.strictEqual(cron.status, 200)
        const cronText = yield* Effect.promise(() => cron.text())
        bodies.push(cronText)
        assert.strictEqual(JSON.parse(cronText).dryRun, true)
      }))
  })
})

describe("bearerMatches", () => {
  const secret = Redacted.make(CRON_SECRET)
  layer(Layer.empty)((it) => {
    it.effect("accepts exactly `Bearer <secret>` (any case of the scheme) and nothing else", () =>
      Effect.sync(() => {
        assert.isTrue(Http.bearerMatches(`Bearer ${CRON_SECRET}`, secret))
        assert.isTrue(Http.bearerMatches(`BEARER ${CRON_SECRET}`, secret))
        for (const header of [undefined, "", "Bearer", "Bearer ", "Bearer undefined", CRON_SECRET, `Bearer ${CRON_SECRET} `, `Token ${CRON_SECRET}`]) {
          assert.isFalse(Http.bearerMatches(header, secret), String(header))
        }
        assert.isFalse(Http.bearerMatches("Bearer ", Redacted.make("")))
      }))
  })
})

describe("everything the server said", () => {
  layer(Layer.empty)((it) => {
    it.effect("no response body, log line or trace attribute carries a stack trace or a secret", () =>
      Effect.sync(() => {
        assert.isAbove(bodies.length, 100)
        for (const body of bodies) assertClean("a response body", body)
        assert.isAbove(logLines.length, 0)
        for (const line of logLines) {
          for (const secret of credentials) assert.notInclude(line, secret, "a log line carries a secret")
        }
        const server = spans.filter((s) => s.kind === "server")
        assert.isAbove(server.length, 0)
        assert.isTrue(server.some((s) => String(s.attributes.get("url.query") ?? "").includes("token=REDACTED")))
        for (const span of spans) {
          const attributes = JSON.stringify([...span.attributes].map(([k, v]) => [k, String(v)]))
          for (const secret of credentials) assert.notInclude(attributes, secret, `span ${span.name} carries a secret`)
        }
      }))
  })
})
