/**
 * `POST /webhooks/resend` (CONTRACT 8a) on a real port over a fresh embedded database, with payloads signed by
 * the same library the server verifies with (`standardwebhooks`) and a test secret: the secret, signature,
 * timestamp and size checks (nothing written when one fails), every event type's effect, replays and retries,
 * out-of-order events, a concurrent burst of 1,000 deliveries with duplicates, an event that beats the ledger to
 * its provider id, and a job run after a complaint.
 */
import { randomBytes } from "node:crypto"
import * as net from "node:net"
import { NodeHttpServer } from "@effect/platform-node"
import { assert, describe, layer } from "@effect/vitest"
import { ConfigProvider, Deferred, Effect, Fiber, Layer, Ref, References } from "effect"
import { HttpServer } from "effect/http"
import { SqlClient } from "effect/sql"
import { Webhook } from "standardwebhooks"
import * as Http from "../../src/triggers/Http.ts"
import { runJob } from "../../src/job/Job.ts"
import { practiceReminders } from "../../src/jobs/index.ts"
import * as Layers from "../../src/job/Layers.ts"
import { MailerTestRef } from "../../src/mail/Mailer.ts"
import { MAX_BODIES_IN_FLIGHT, MAX_BODIES_WAITING, MAX_WEBHOOK_BODY } from "../../src/feedback/Webhooks.ts"
import { freshDatabaseUrl, insertUsers, uid } from "../support/TestDb.ts"

const SECRET = `whsec_${randomBytes(32).toString("base64")}`
const OTHER_SECRET = `whsec_${randomBytes(32).toString("base64")}`
const signer = new Webhook(SECRET)
const MINUTE = 60_000
const DAY = 86_400_000
// Tuesday 10:00 UTC: inside the reminder window for UTC users.
const AT = new Date("2026-03-10T10:00:00Z")

/** The test mode stack on a fresh database, configured with `env`; warnings and errors only. */
const stackWith = (env: Record<string, string>) =>
  Layer.unwrap(Effect.map(freshDatabaseUrl, (url) =>
    Layers.test(url).pipe(Layer.provide(ConfigProvider.layer(ConfigProvider.fromEnv({ env }))))
  )).pipe(Layer.provideMerge(Layer.succeed(References.MinimumLogLevel, "Warn")))

/** The whole HTTP app (so the route's wiring into Http.ts is tested too) on an ephemeral port. */
const serverWith = (env: Record<string, string>) =>
  Http.layerApp.pipe(Layer.provideMerge(NodeHttpServer.layerTest), Layer.provideMerge(stackWith(env)))

interface Reply {
  readonly status: number
  readonly text: string
  readonly json: () => any
}

const portOf = Effect.map(HttpServer.HttpServer, (server) => (server.address as { readonly port: number }).port)

const send = (port: number, path: string, init: RequestInit): Promise<Reply> =>
  fetch(`http://127.0.0.1:${port}${path}`, init).then(async (response) => {
    const text = await response.text()
    return { status: response.status, text, json: () => JSON.parse(text) }
  })

/** Svix headers for `body`, signed now (or at `at`) with `secret`. */
const signed = (id: string, body: string, options: { readonly at?: Date; readonly secret?: string } = {}) => {
  const at = options.at ?? new Date()
  const signature = (options.secret === undefined ? signer : new Webhook(options.secret)).sign(id, at, body)
  return {
    "content-type": "application/json",
    "svix-id": id,
    "svix-timestamp": String(Math.floor(at.getTime() / 1000)),
    "svix-signature": signature
  }
}

/** POSTs `body` to the webhook with `headers`. */
const post = (body: string | Uint8Array, headers: Record<string, string>) =>
  Effect.flatMap(portOf, (port) =>
    Effect.promise(() => send(port, "/webhooks/resend", { method: "POST", headers, body: body as string })))

/** POSTs a correctly signed delivery of `body` under `id`. */
const deliver = (id: string, body: string) => post(body, signed(id, body))

let ids = 0
const svixId = () => `msg_${++ids}_${randomBytes(6).toString("hex")}`

/** A Resend email event as the provider sends it. */
const eventBody = (
  type: string,
  emailId: string,
  options: { readonly to?: ReadonlyArray<string>; readonly at?: Date; readonly extra?: Record<string, unknown> } = {}
) =>
  JSON.stringify({
    type,
    created_at: (options.at ?? new Date()).toISOString(),
    data: {
      created_at: "2026-03-10T10:00:00.000Z",
      email_id: emailId,
      from: "Kaiwa <hello@kaiwa.example>",
      message_id: `<${emailId}@kaiwa.example>`,
      subject: "Time for a quick conversation?",
      to: options.to ?? [`${emailId}@example.com`],
      tags: { job: "practice-reminders" },
      ...options.extra
    }
  })

/** Ledger rows the library sent, with provider ids `p<i>` and addresses `p<i>@example.com`. */
const sentRows = (job: string, providerIds: ReadonlyArray<string>, sentAt: Date) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    yield* sql`
      INSERT INTO kaiwa_jobs.deliveries (job, user_id, dedupe_key, email, data, status, provider_id, planned_at, expires_at, sent_at)
      SELECT ${job}, 'user-' || p, 'k', p || '@example.com', '{}'::jsonb, 'sent', p, ${sentAt}, ${sentAt}, ${sentAt}
      FROM jsonb_array_elements_text(${JSON.stringify(providerIds)}::jsonb) AS p`
  })

const stateOf = (providerId: string) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const rows = yield* sql<{ delivery_state: string | null; delivery_state_at: Date | null }>`
      SELECT delivery_state, delivery_state_at FROM kaiwa_jobs.deliveries WHERE provider_id = ${providerId}`
    return rows[0]
  })

const suppressionsOf = (email: string) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    return yield* sql<{ user_id: string | null; list: string; reason: string }>`
      SELECT user_id, list, reason FROM kaiwa_jobs.suppressions WHERE email = ${email}`
  })

const count = (table: string) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    return (yield* sql<{ n: number }>`SELECT count(*)::int AS n FROM ${sql(`kaiwa_jobs.${table}`)}`)[0]!.n
  })

/** Every row the webhook could write, as text, for "nothing changed" checks. */
const snapshot = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const out: Record<string, string> = {}
  for (const t of ["deliveries", "suppressions", "webhook_events", "runs"]) {
    const rows = yield* sql<{ j: string | null }>`SELECT json_agg(x ORDER BY x::text)::text AS j FROM ${sql(`kaiwa_jobs.${t}`)} x`
    out[t] = rows[0]?.j ?? "[]"
  }
  return out
})

describe("webhook: RESEND_WEBHOOK_SECRET unset", () => {
  layer(serverWith({}), { excludeTestServices: true })((it) => {
    it.effect("503 for a correctly signed event, and nothing is written", () =>
      Effect.gen(function*() {
        yield* sentRows("practice-reminders", ["p1"], AT)
        const before = yield* snapshot
        const body = eventBody("email.complained", "p1")
        const r = yield* deliver(svixId(), body)
        assert.strictEqual(r.status, 503)
        assert.include(r.json().error, "RESEND_WEBHOOK_SECRET")
        assert.notInclude(r.text, SECRET)
        assert.deepStrictEqual(yield* snapshot, before)
      }))
  })
})

describe("webhook: signatures", () => {
  layer(serverWith({ RESEND_WEBHOOK_SECRET: SECRET }), { excludeTestServices: true })((it) => {
    it.effect("forged, missing, stale, future-dated and altered requests: 401 each, and nothing is written", () =>
      Effect.gen(function*() {
        yield* sentRows("practice-reminders", ["p1"], AT)
        const before = yield* snapshot
        const body = eventBody("email.bounced", "p1", { extra: { bounce: { type: "Permanent", subType: "General", message: "no such user" } } })
        const id = svixId()
        const good = signed(id, body)
        const { ["svix-signature"]: _signature, ...unsigned } = good
        const altered = Buffer.from(body)
        // One byte changed: a digit of the bounce's email id in the middle of the JSON.
        const at = body.indexOf("p1")
        altered[at + 1] = "2".charCodeAt(0)
        const cases: ReadonlyArray<readonly [string, string | Uint8Array, Record<string, string>]> = [
          ["no headers", body, { "content-type": "application/json" }],
          ["no signature", body, unsigned],
          ["signed with another secret", body, signed(id, body, { secret: OTHER_SECRET })],
          ["a made-up signature", body, { ...good, "svix-signature": `v1,${randomBytes(32).toString("base64")}` }],
          ["another message's id", body, { ...good, "svix-id": svixId() }],
          ["a shifted timestamp", body, { ...good, "svix-timestamp": String(Number(good["svix-timestamp"]) + 1) }],
          ["stale: signed 6 minutes ago", body, signed(id, body, { at: new Date(Date.now() - 6 * MINUTE) })],
          ["future-dated: signed 6 minutes ahead", body, signed(id, body, { at: new Date(Date.now() + 6 * MINUTE) })],
          ["the body changed by one byte", altered, good],
          ["the body with a trailing space", `${body} `, good],
          ["a body that is not UTF-8", Buffer.concat([Buffer.from(body), Buffer.from([0xff])]), good]
        ]
        for (const [what, payload, headers] of cases) {
          const r = yield* post(payload, headers)
          assert.strictEqual(r.status, 401, what)
          assert.deepStrictEqual(r.json(), { error: "unauthorized: missing or invalid webhook signature" }, what)
        }
        assert.deepStrictEqual(yield* snapshot, before)

        // The very same request, well signed, is accepted: the cases above failed for what they changed.
        const ok = yield* post(body, good)
        assert.strictEqual(ok.status, 200)
        assert.strictEqual((yield* stateOf("p1"))?.delivery_state, "bounced")
      }))

    it.effect("a correctly signed body that is not a Resend event: 400, and nothing is written", () =>
      Effect.gen(function*() {
        const before = yield* snapshot
        for (const body of ["not json", "{}", JSON.stringify({ type: "email.delivered" }), "[]"]) {
          const r = yield* deliver(svixId(), body)
          assert.strictEqual(r.status, 400, body)
          assert.deepStrictEqual(r.json(), { error: "the body is not a Resend event" })
        }
        assert.deepStrictEqual(yield* snapshot, before)
      }))

    it.effect("inside the 5-minute tolerance either way: accepted", () =>
      Effect.gen(function*() {
        yield* sentRows("practice-reminders", ["tol-past", "tol-future"], AT)
        const past = eventBody("email.delivered", "tol-past")
        const future = eventBody("email.delivered", "tol-future")
        assert.strictEqual((yield* post(past, signed(svixId(), past, { at: new Date(Date.now() - 4 * MINUTE) }))).status, 200)
        assert.strictEqual((yield* post(future, signed(svixId(), future, { at: new Date(Date.now() + 4 * MINUTE) }))).status, 200)
        assert.strictEqual((yield* stateOf("tol-past"))?.delivery_state, "delivered")
        assert.strictEqual((yield* stateOf("tol-future"))?.delivery_state, "delivered")
      }))

    it.effect("a body over 256 KiB: 413 whether its length is declared or streamed, and nothing is written", () =>
      Effect.gen(function*() {
        const before = yield* snapshot
        const limit = Number(MAX_WEBHOOK_BODY)
        // A correctly signed event padded past the limit: refused for its size, not its signature.
        const big = eventBody("email.complained", "big-1", { extra: { padding: "x".repeat(limit) } })
        const declared = yield* deliver(svixId(), big)
        assert.strictEqual(declared.status, 413)
        const port = yield* portOf
        const id = svixId()
        const streamed = yield* Effect.promise(() =>
          send(port, "/webhooks/resend", {
            method: "POST",
            headers: signed(id, big),
            body: new ReadableStream({
              start(controller) {
                const bytes = Buffer.from(big)
                for (let i = 0; i < bytes.length; i += 16_384) controller.enqueue(bytes.subarray(i, i + 16_384))
                controller.close()
              }
            }),
            duplex: "half"
          } as RequestInit)
        )
        assert.strictEqual(streamed.status, 413)
        assert.deepStrictEqual(yield* snapshot, before)

        // Just under the limit is fine.
        const fits = eventBody("email.complained", "big-2", { extra: { padding: "x".repeat(limit - 1024) } })
        assert.isBelow(Buffer.byteLength(fits), limit)
        assert.strictEqual((yield* deliver(svixId(), fits)).status, 200)
      }))
  })
})

/**
 * A raw POST that sends its headers and `sent` bytes of a `length`-byte body, then holds the connection open;
 * `status` resolves with the status line of whatever answer comes (never, if none does), `close` drops it.
 */
const heldOpen = (port: number, headers: Record<string, string>, length: number, sent: number) => {
  const socket = net.connect(port, "127.0.0.1")
  socket.on("error", () => {})
  const status = new Promise<number>((resolve) =>
    socket.once("data", (d: Buffer) => resolve(Number(/^HTTP\/1\.1 (\d{3})/.exec(d.toString("latin1"))?.[1] ?? 0))))
  const head = Object.entries({ ...headers, "content-type": "application/json", "content-length": String(length) })
    .map(([k, v]) => `${k}: ${v}`)
  socket.write(["POST /webhooks/resend HTTP/1.1", "host: 127.0.0.1", ...head, "", ""].join("\r\n"))
  socket.write(Buffer.alloc(sent, "x"))
  return { status, close: () => socket.destroy() }
}

/** Signature headers shaped like a valid one (a current timestamp, a random 32-byte HMAC) that match no body. */
const forgedHeaders = () => ({
  "svix-id": svixId(),
  "svix-timestamp": String(Math.floor(Date.now() / 1000)),
  "svix-signature": `v1,${randomBytes(32).toString("base64")}`
})

describe("webhook: bodies are read only when they could be signed, and a bounded number at once", () => {
  layer(serverWith({ RESEND_WEBHOOK_SECRET: SECRET }), { excludeTestServices: true })((it) => {
    it.effect("missing, stale or malformed signature headers: 401 before the body arrives (it is never read)", () =>
      Effect.gen(function*() {
        const port = yield* portOf
        const body = 255 * 1024
        const good = forgedHeaders()
        const cases: ReadonlyArray<readonly [string, Record<string, string>]> = [
          ["no signature headers", {}],
          ["stale: 6 minutes old", { ...good, "svix-timestamp": String(Math.floor(Date.now() / 1000) - 6 * 60) }],
          ["a timestamp that is not a number", { ...good, "svix-timestamp": "soon" }],
          ["a signature that is not v1,<base64 of 32 bytes>", { ...good, "svix-signature": "v1,c2hvcnQ=" }],
          ["an unknown signature version only", { ...good, "svix-signature": `v2,${randomBytes(32).toString("base64")}` }],
          ["an id with spaces", { ...good, "svix-id": "msg with spaces" }]
        ]
        for (const [what, headers] of cases) {
          // All but the last byte of the body: a server that waited for it would never answer.
          const request = heldOpen(port, headers, body, body - 1)
          assert.strictEqual(yield* Effect.promise(() => request.status), 401, what)
          request.close()
        }
      }))

    it.effect(`at most ${MAX_BODIES_IN_FLIGHT} bodies are read at once and ${MAX_BODIES_WAITING} wait: the next is answered 503 at once; a valid event goes through once they are gone`, () =>
      Effect.gen(function*() {
        const port = yield* portOf
        const body = 255 * 1024
        // Plausible headers, bodies that never finish: each takes a reading turn or a place in the queue.
        const held = Array.from({ length: MAX_BODIES_IN_FLIGHT + MAX_BODIES_WAITING }, () => heldOpen(port, forgedHeaders(), body, body - 1))
        // The queue is full once the server has seen every one of them; a request beyond answers 503 before its
        // body is read. Until the server has seen them all, a probe may still find a place: probe until refused.
        let refused = 0
        for (let i = 0; i < 100 && refused !== 503; i++) {
          const probe = heldOpen(port, forgedHeaders(), body, body - 1)
          refused = yield* Effect.promise(() => Promise.race([probe.status, new Promise<number>((r) => setTimeout(() => r(0), 200))]))
          held.push(probe)
        }
        assert.strictEqual(refused, 503)
        for (const h of held) h.close()
        // The turns come back as the connections go: a correctly signed event is accepted again.
        yield* sentRows("practice-reminders", ["after-flood"], AT)
        let status = 0
        for (let i = 0; i < 100 && status !== 200; i++) {
          status = (yield* deliver(svixId(), eventBody("email.delivered", "after-flood"))).status
          if (status !== 200) yield* Effect.sleep("100 millis")
        }
        assert.strictEqual(status, 200)
        assert.strictEqual((yield* stateOf("after-flood"))?.delivery_state, "delivered")
      }))
  })
})

describe("webhook: events PostgreSQL cannot store as sent", () => {
  layer(serverWith({ RESEND_WEBHOOK_SECRET: SECRET }), { excludeTestServices: true })((it) => {
    it.effect("\\u0000, a lone surrogate, nesting 100,000 deep, the year -200000: stored with those values replaced, applied, 200", () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        yield* sentRows("practice-reminders", ["nul-1", "sur-1", "deep-1", "year-1"], AT)
        const bounce = { bounce: { type: "Permanent", subType: "General", message: "no such user" } }
        const deep = "[".repeat(100_000) + "]".repeat(100_000)
        // Each body as a JSON text: the escapes are what Resend's JSON would carry.
        const cases: ReadonlyArray<readonly [string, string]> = [
          ["nul-1", eventBody("email.bounced", "nul-1", { extra: { ...bounce, subject: "PLACEHOLDER" } }).replace("PLACEHOLDER", "a\\u0000b")],
          ["sur-1", eventBody("email.bounced", "sur-1", { extra: { ...bounce, subject: "PLACEHOLDER" } }).replace("PLACEHOLDER", "x\\ud800y")],
          ["deep-1", eventBody("email.bounced", "deep-1", { extra: { ...bounce, headers: "PLACEHOLDER" } }).replace("\"PLACEHOLDER\"", deep)],
          ["year-1", eventBody("email.bounced", "year-1", { extra: bounce }).replace(/"created_at":"[^"]*"/, `"created_at":"-200000-01-01T00:00:00.000Z"`)]
        ]
        for (const [id, body] of cases) {
          const first = yield* deliver(svixId(), body)
          assert.strictEqual(first.status, 200, `${id}: ${first.text}`)
          assert.deepStrictEqual(first.json(), { ok: true, duplicate: false })
          // Applied: the bounce moved the ledger row and suppressed the address.
          assert.strictEqual((yield* stateOf(id))?.delivery_state, "bounced", id)
          assert.deepStrictEqual(yield* suppressionsOf(`${id}@example.com`), [{ user_id: null, list: "*", reason: "hard_bounce" }], id)
        }
        const stored = yield* sql<{ provider_id: string; subject: string | null; occurred_at: Date; received_at: Date; headers: unknown }>`
          SELECT provider_id, payload #>> '{data,subject}' AS subject, occurred_at, received_at, payload #> '{data,headers}' AS headers
          FROM kaiwa_jobs.webhook_events WHERE provider_id IN ('nul-1', 'sur-1', 'deep-1', 'year-1') ORDER BY provider_id`
        const byId = new Map(stored.map((r) => [r.provider_id, r]))
        assert.strictEqual(byId.get("nul-1")?.subject, "a\uFFFDb")
        assert.strictEqual(byId.get("sur-1")?.subject, "x\uFFFDy")
        // The nesting is cut where it stops being an event's shape: the top levels are kept, the rest is null.
        assert.isArray(byId.get("deep-1")?.headers)
        // An instant PostgreSQL cannot hold: the event counts as having happened when it was received.
        assert.deepStrictEqual(byId.get("year-1")?.occurred_at, byId.get("year-1")?.received_at)
      }))
  })
})

describe("webhook: effects", () => {
  layer(serverWith({ RESEND_WEBHOOK_SECRET: SECRET }), { excludeTestServices: true })((it) => {
    it.effect("each event type sets the ledger row's state and instant, and suppresses what it should", () =>
      Effect.gen(function*() {
        yield* sentRows("practice-reminders", ["d1", "d2", "d3", "d4", "d5", "d6"], AT)
        const t = (m: number) => new Date(AT.getTime() + m * MINUTE)
        const cases: ReadonlyArray<readonly [string, string, Record<string, unknown>]> = [
          ["email.delivered", "d1", {}],
          ["email.delivery_delayed", "d2", {}],
          ["email.bounced", "d3", { bounce: { type: "Permanent", subType: "Suppressed", message: "mailbox does not exist" } }],
          ["email.bounced", "d4", { bounce: { type: "Transient", subType: "MailboxFull", message: "mailbox full" } }],
          ["email.complained", "d5", {}],
          ["email.suppressed", "d6", { suppressed: { type: "bounce", message: "on the suppression list" } }]
        ]
        for (const [i, [type, id, extra]] of cases.entries()) {
          const r = yield* deliver(svixId(), eventBody(type, id, { at: t(i + 1), extra }))
          assert.strictEqual(r.status, 200, type)
          assert.deepStrictEqual(r.json(), { ok: true, duplicate: false })
        }
        assert.deepStrictEqual(yield* stateOf("d1"), { delivery_state: "delivered", delivery_state_at: t(1) })
        assert.deepStrictEqual(yield* stateOf("d2"), { delivery_state: "delayed", delivery_state_at: t(2) })
        assert.deepStrictEqual(yield* stateOf("d3"), { delivery_state: "bounced", delivery_state_at: t(3) })
        assert.deepStrictEqual(yield* stateOf("d4"), { delivery_state: "bounced", delivery_state_at: t(4) })
        assert.deepStrictEqual(yield* stateOf("d5"), { delivery_state: "complained", delivery_state_at: t(5) })
        // Resend suppressed the email instead of sending it: no delivery state, but the address is suppressed.
        assert.deepStrictEqual(yield* stateOf("d6"), { delivery_state: null, delivery_state_at: null })

        assert.deepStrictEqual(yield* suppressionsOf("d1@example.com"), [])
        assert.deepStrictEqual(yield* suppressionsOf("d2@example.com"), [])
        assert.deepStrictEqual(yield* suppressionsOf("d3@example.com"), [{ user_id: null, list: "*", reason: "hard_bounce" }])
        // A transient bounce leaves the address alone.
        assert.deepStrictEqual(yield* suppressionsOf("d4@example.com"), [])
        assert.deepStrictEqual(yield* suppressionsOf("d5@example.com"), [{ user_id: null, list: "*", reason: "complaint" }])
        assert.deepStrictEqual(yield* suppressionsOf("d6@example.com"), [{ user_id: null, list: "*", reason: "hard_bounce" }])

        // A suppression Resend made because of a complaint is recorded as one; "Name <address>" recipients too.
        const r = yield* deliver(svixId(), eventBody("email.suppressed", "web-9", {
          to: ["Ada Lovelace <Ada@Example.COM>"],
          extra: { suppressed: { type: "complaint", message: "marked as spam earlier" } }
        }))
        assert.strictEqual(r.status, 200)
        assert.deepStrictEqual(yield* suppressionsOf("ada@example.com"), [{ user_id: null, list: "*", reason: "complaint" }])
      }))

    it.effect("events for emails the library did not send, and other event types, are stored and answered 200", () =>
      Effect.gen(function*() {
        const before = yield* count("deliveries")
        const webApp = svixId()
        const bounce = eventBody("email.bounced", "web-app-1", {
          to: ["signup@example.org"],
          extra: { bounce: { type: "Permanent", subType: "General", message: "no such user" } }
        })
        assert.strictEqual((yield* deliver(webApp, bounce)).status, 200)
        const opened = svixId()
        assert.strictEqual((yield* deliver(opened, eventBody("email.opened", "web-app-2"))).status, 200)
        const contact = svixId()
        const contactBody = JSON.stringify({ type: "contact.created", created_at: new Date().toISOString(), data: { id: "c1", email: "x@example.org" } })
        assert.strictEqual((yield* deliver(contact, contactBody)).status, 200)

        const sql = yield* SqlClient.SqlClient
        const stored = yield* sql<{ svix_id: string; type: string; provider_id: string | null; matched: boolean; delivery_state: string | null }>`
          SELECT svix_id, type, provider_id, matched, delivery_state FROM kaiwa_jobs.webhook_events
          WHERE svix_id IN (${webApp}, ${opened}, ${contact}) ORDER BY received_at, svix_id`
        assert.sameDeepMembers([...stored], [
          { svix_id: webApp, type: "email.bounced", provider_id: "web-app-1", matched: false, delivery_state: "bounced" },
          { svix_id: opened, type: "email.opened", provider_id: "web-app-2", matched: false, delivery_state: null },
          { svix_id: contact, type: "contact.created", provider_id: null, matched: false, delivery_state: null }
        ])
        // The ledger is untouched, but a hard bounce of the web app's email still protects our sending.
        assert.strictEqual(yield* count("deliveries"), before)
        assert.deepStrictEqual(yield* suppressionsOf("signup@example.org"), [{ user_id: null, list: "*", reason: "hard_bounce" }])
      }))

    it.effect("a replay or a provider retry (same svix-id) answers 200 and changes nothing", () =>
      Effect.gen(function*() {
        yield* sentRows("practice-reminders", ["r1"], AT)
        const id = svixId()
        const body = eventBody("email.complained", "r1", { at: new Date(AT.getTime() + MINUTE) })
        const headers = signed(id, body)
        const first = yield* post(body, headers)
        assert.deepStrictEqual(first.json(), { ok: true, duplicate: false })
        const after = yield* snapshot

        // The captured request replayed as is, within its 5 minutes.
        const replay = yield* post(body, headers)
        assert.strictEqual(replay.status, 200)
        assert.deepStrictEqual(replay.json(), { ok: true, duplicate: true })
        // Resend's own retry: same id and body, a fresh timestamp and signature.
        const retry = yield* post(body, signed(id, body, { at: new Date(Date.now() + 1000) }))
        assert.strictEqual(retry.status, 200)
        assert.deepStrictEqual(retry.json(), { ok: true, duplicate: true })
        assert.deepStrictEqual(yield* snapshot, after)

        // Even after the suppression is lifted by hand, a replay does not bring it back.
        const sql = yield* SqlClient.SqlClient
        yield* sql`DELETE FROM kaiwa_jobs.suppressions WHERE email = 'r1@example.com'`
        assert.deepStrictEqual((yield* post(body, signed(id, body))).json(), { ok: true, duplicate: true })
        assert.deepStrictEqual(yield* suppressionsOf("r1@example.com"), [])
      }))

    it.effect("out of order: a late `delivered` does not undo a bounce, a late `delayed` does not undo a delivery", () =>
      Effect.gen(function*() {
        yield* sentRows("practice-reminders", ["o1", "o2", "o3"], AT)
        const t = (m: number) => new Date(AT.getTime() + m * MINUTE)
        const bounce = { bounce: { type: "Permanent", subType: "General", message: "gone" } }
        // o1: the bounce arrives first, then the (earlier) delivery report.
        yield* deliver(svixId(), eventBody("email.bounced", "o1", { at: t(5), extra: bounce }))
        yield* deliver(svixId(), eventBody("email.delivered", "o1", { at: t(1) }))
        yield* deliver(svixId(), eventBody("email.delivery_delayed", "o1", { at: t(0) }))
        assert.deepStrictEqual(yield* stateOf("o1"), { delivery_state: "bounced", delivery_state_at: t(5) })
        // o2: delivered, then a stale delay report.
        yield* deliver(svixId(), eventBody("email.delivered", "o2", { at: t(3) }))
        yield* deliver(svixId(), eventBody("email.delivery_delayed", "o2", { at: t(1) }))
        assert.deepStrictEqual(yield* stateOf("o2"), { delivery_state: "delivered", delivery_state_at: t(3) })
        // o3: in order, each step raises the state; a complaint outranks everything.
        yield* deliver(svixId(), eventBody("email.delivery_delayed", "o3", { at: t(1) }))
        assert.strictEqual((yield* stateOf("o3"))?.delivery_state, "delayed")
        yield* deliver(svixId(), eventBody("email.delivered", "o3", { at: t(2) }))
        assert.strictEqual((yield* stateOf("o3"))?.delivery_state, "delivered")
        yield* deliver(svixId(), eventBody("email.complained", "o3", { at: t(9) }))
        yield* deliver(svixId(), eventBody("email.delivered", "o3", { at: t(10) }))
        assert.deepStrictEqual(yield* stateOf("o3"), { delivery_state: "complained", delivery_state_at: t(9) })
      }))

    it.effect("a burst of 1,000 deliveries, 100 in flight, 300 of them duplicates: every event applied once, none lost", () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        const eventsBefore = yield* count("webhook_events")
        const suppressionsBefore = yield* count("suppressions")
        const ledger = Array.from({ length: 400 }, (_, i) => `burst-${i}`)
        yield* sentRows("founder-emails", ledger, AT)
        // 700 distinct events: a delivery report for each of the 400 ledger rows, complaints for 100 of them,
        // and 200 events of the web app's emails (100 of them permanent bounces).
        const distinct: Array<{ readonly id: string; readonly body: string }> = [
          ...ledger.map((p) => ({ id: svixId(), body: eventBody("email.delivered", p) })),
          ...ledger.slice(0, 100).map((p) => ({ id: svixId(), body: eventBody("email.complained", p) })),
          ...Array.from({ length: 200 }, (_, i) => ({
            id: svixId(),
            body: i < 100
              ? eventBody("email.bounced", `burst-web-${i}`, { extra: { bounce: { type: "Permanent", subType: "General", message: "gone" } } })
              : eventBody("email.delivered", `burst-web-${i}`)
          }))
        ]
        // 300 duplicates (a retry or a replay): 200 shuffled in among the originals, and 100 sent right beside
        // their original, so the two copies race each other.
        const all = [...distinct, ...Array.from({ length: 200 }, (_, i) => distinct[(i * 7) % distinct.length]!)]
        for (let i = all.length - 1; i > 0; i--) {
          const j = Math.floor(Math.random() * (i + 1))
          ;[all[i], all[j]] = [all[j]!, all[i]!]
        }
        for (const twin of distinct.filter((_, i) => i % 7 === 3).slice(0, 100)) all.splice(all.indexOf(twin) + 1, 0, twin)
        assert.strictEqual(all.length, 1000)
        // 100 requests in flight at a time: with all 1,000 opened in the same instant, the loaded test machine now
        // and then reset a connection before the server read it (ECONNRESET in fetch, no reply from the webhook).
        // Resend itself delivers with bounded parallelism and retries whatever got no answer.
        const port = yield* portOf
        const replies = yield* Effect.promise(async () => {
          const out: Array<Reply> = new Array(all.length)
          let next = 0
          const worker = async () => {
            while (next < all.length) {
              const i = next++
              const { body, id } = all[i]!
              out[i] = await send(port, "/webhooks/resend", { method: "POST", headers: signed(id, body), body })
            }
          }
          await Promise.all(Array.from({ length: 100 }, worker))
          return out
        })
        assert.deepStrictEqual([...new Set(replies.map((r) => r.status))], [200])
        assert.strictEqual(replies.filter((r) => r.json().duplicate === false).length, 700)
        assert.strictEqual(replies.filter((r) => r.json().duplicate === true).length, 300)

        assert.strictEqual((yield* count("webhook_events")) - eventsBefore, 700)
        const states = yield* sql<{ delivery_state: string; n: number }>`
          SELECT delivery_state, count(*)::int AS n FROM kaiwa_jobs.deliveries
          WHERE provider_id LIKE 'burst-%' GROUP BY delivery_state ORDER BY delivery_state`
        assert.deepStrictEqual([...states], [{ delivery_state: "complained", n: 100 }, { delivery_state: "delivered", n: 300 }])
        // 100 complaints + 100 hard bounces, each address once.
        assert.strictEqual((yield* count("suppressions")) - suppressionsBefore, 200)
        const unmatched = yield* sql<{ n: number }>`
          SELECT count(*)::int AS n FROM kaiwa_jobs.webhook_events WHERE provider_id LIKE 'burst-web-%' AND NOT matched`
        assert.strictEqual(unmatched[0]!.n, 200)
      }))
  })
})

describe("webhook: the ledger and the jobs", () => {
  layer(serverWith({ RESEND_WEBHOOK_SECRET: SECRET }), { excludeTestServices: true })((it) => {
    it.effect("an event that arrives before the ledger records the email's provider id is applied when it does", () =>
      Effect.gen(function*() {
        yield* insertUsers([{ id: "early", createdAt: new Date(AT.getTime() - 30 * DAY) }])
        // The in-memory mailer names its first email mem-1: its delivery report comes before the run records it.
        const r = yield* deliver(svixId(), eventBody("email.delivered", "mem-1", { to: ["early@example.com"], at: new Date(AT.getTime() + MINUTE) }))
        assert.strictEqual(r.status, 200)
        const report = yield* runJob(practiceReminders).pipe(Effect.provide(Layers.clockAt(AT)))
        assert.strictEqual(report.outcome, "succeeded", report.error ?? "")
        assert.deepStrictEqual(yield* stateOf("mem-1"), {
          delivery_state: "delivered",
          delivery_state_at: new Date(AT.getTime() + MINUTE)
        })
      }))

    it.effect("an event that lands while the ledger's update of its provider id is in flight waits for it, then applies", () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        yield* sql`
          INSERT INTO kaiwa_jobs.deliveries (job, user_id, dedupe_key, email, data, status, planned_at, expires_at)
          VALUES ('practice-reminders', 'racer', 'k', 'racer@example.com', '{}'::jsonb, 'pending', ${AT}, ${AT})`
        // What Database.completeBatch does, held open: the row gets its provider id, the transaction has not committed.
        const updated = yield* Deferred.make<void>()
        const commit = yield* Deferred.make<void>()
        const recording = yield* sql.withTransaction(Effect.gen(function*() {
          yield* sql`UPDATE kaiwa_jobs.deliveries SET status = 'sent', provider_id = 'race-1', sent_at = ${AT}
            WHERE user_id = 'racer'`
          yield* Deferred.succeed(updated, undefined)
          yield* Deferred.await(commit)
        })).pipe(Effect.forkChild)
        yield* Deferred.await(updated)
        const event = eventBody("email.bounced", "race-1", {
          at: new Date(AT.getTime() + MINUTE),
          extra: { bounce: { type: "Permanent", subType: "General", message: "gone" } }
        })
        const webhook = yield* deliver(svixId(), event).pipe(Effect.forkChild)
        // The webhook cannot see the uncommitted provider id; it waits on the provider's lock instead of storing the
        // event as unmatched while the row's trigger has already looked for events.
        yield* Effect.sleep("300 millis")
        assert.isUndefined(webhook.pollUnsafe())
        yield* Deferred.succeed(commit, undefined)
        yield* Fiber.join(recording)
        const reply = yield* Fiber.join(webhook)
        assert.strictEqual(reply.status, 200)
        assert.deepStrictEqual(yield* stateOf("race-1"), { delivery_state: "bounced", delivery_state_at: new Date(AT.getTime() + MINUTE) })
        const stored = yield* sql<{ matched: boolean }>`SELECT matched FROM kaiwa_jobs.webhook_events WHERE provider_id = 'race-1'`
        assert.deepStrictEqual([...stored], [{ matched: true }])
      }))

    it.effect("after a complaint, the next run no longer emails that address (and still emails the others)", () =>
      Effect.gen(function*() {
        yield* insertUsers([
          { id: "c-unhappy", createdAt: new Date(AT.getTime() - 30 * DAY) },
          { id: "c-happy", createdAt: new Date(AT.getTime() - 30 * DAY) }
        ])
        const day1 = new Date(AT.getTime() + DAY)
        const first = yield* runJob(practiceReminders).pipe(Effect.provide(Layers.clockAt(day1)))
        assert.strictEqual(first.outcome, "succeeded", first.error ?? "")
        const sql = yield* SqlClient.SqlClient
        const row = (yield* sql<{ provider_id: string }>`
          SELECT provider_id FROM kaiwa_jobs.deliveries WHERE user_id = ${uid("c-unhappy")} AND status = 'sent'`)[0]!
        const mailer = yield* MailerTestRef
        assert.includeMembers((yield* Ref.get(mailer)).map((e) => e.to), ["c-unhappy@example.com", "c-happy@example.com"])

        const complaint = eventBody("email.complained", row.provider_id, { to: ["c-unhappy@example.com"] })
        assert.strictEqual((yield* deliver(svixId(), complaint)).status, 200)
        assert.strictEqual((yield* stateOf(row.provider_id))?.delivery_state, "complained")

        yield* Ref.set(mailer, [])
        const day2 = new Date(AT.getTime() + 2 * DAY)
        const second = yield* runJob(practiceReminders).pipe(Effect.provide(Layers.clockAt(day2)))
        assert.strictEqual(second.outcome, "succeeded")
        const sentNow = (yield* Ref.get(mailer)).map((e) => e.to)
        assert.include(sentNow, "c-happy@example.com")
        assert.notInclude(sentNow, "c-unhappy@example.com")
        assert.strictEqual((second.stats?.skipped as Record<string, number>)["suppressed"], 1)
      }))
  })
})
