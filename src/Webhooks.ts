/**
 * What the provider tells afterwards (CONTRACT 8a): `POST /webhooks/resend` receives Resend's events, checks
 * their signature, and applies each one exactly once.
 *
 * The request, checked in this order; nothing is written unless every check passes:
 * - 503 when RESEND_WEBHOOK_SECRET is unset: the endpoint is off, and Resend keeps retrying (for about a day),
 *   so setting the secret soon after loses nothing.
 * - 401 when a signature header is missing (`svix-id`, `svix-timestamp`, `svix-signature`; the Standard
 *   Webhooks names `webhook-*` are accepted too).
 * - 413 when the body is larger than MAX_WEBHOOK_BODY (declared in Content-Length or found while reading).
 * - 401 when the signature does not match the raw body byte for byte, or its timestamp is more than 5 minutes
 *   from now either way (a captured request cannot be replayed later). The check is the `standardwebhooks`
 *   package, the implementation the `resend` SDK's own `webhooks.verify` wraps; it is used directly because the
 *   SDK's wrapper needs a client built with an API key, which the web server has no use for. Its timestamp
 *   window is measured on the machine's real clock, not Effect's Clock: it compares two real clocks (Resend's
 *   and ours), it decides nothing about who gets an email.
 * - 400 when a correctly signed body is not a Resend event (never expected; nothing to apply).
 * - 200 otherwise, also for a replay and for a provider retry: the event's svix-id is recorded in the same
 *   transaction as its effect, so a second delivery finds it and changes nothing.
 *
 * Effects of an event (src/migrations/index.ts 0004 has the tables):
 * - `email.bounced` with a Permanent bounce, `email.complained` and `email.suppressed` suppress each recipient
 *   address for every list (list '*', reason `hard_bounce`, or `complaint` for a complaint or a suppression
 *   Resend made because of one). A Transient or Undetermined bounce does not suppress: the address may work
 *   tomorrow, and Resend sends it again if it bounces for good.
 * - `email.delivered`, `email.delivery_delayed`, `email.bounced`, `email.complained` set the delivery state of
 *   the ledger row with that provider id (`data.email_id`) and the instant of the event (its `created_at`).
 *   States only move up DELIVERY_STATES (delayed < delivered < bounced < complained): events may arrive in any
 *   order, and a late `delivered` must not hide a bounce, nor a late `delayed` a delivery. A complaint ranks
 *   highest because it is the one the provider weighs most (0.08% against 4%), and it implies the email arrived.
 * - Every other event, and events for emails this library did not send (the web app uses the same Resend
 *   account), are stored and answered 200: they are not errors, and a non-2xx answer would only make Resend
 *   retry them for a day.
 */
import { ByteSize, Clock, Effect, Option, Redacted, Result, Schema } from "effect"
import { HttpIncomingMessage, HttpRouter, HttpServerRequest, HttpServerResponse } from "effect/http"
import { SqlClient } from "effect/sql"
import { Webhook } from "standardwebhooks"
import { JobsConfig } from "./Config.ts"
import { DatabaseError, describeSqlCause } from "./Database.ts"

/** Where Resend posts its events. */
export const RESEND_WEBHOOK_PATH = "/webhooks/resend"

/**
 * The largest body accepted. A Resend email event is about 1 KB (ids, addresses, subject, tags, a bounce
 * message); 256 KiB leaves room for 50 recipients with long tags and a verbose bounce diagnostic many times
 * over, while a flood of large bodies costs at most 256 KiB of memory per request before it is refused.
 */
export const MAX_WEBHOOK_BODY = ByteSize.kibibytes(256)

/** Delivery states in precedence order: a ledger row's state only ever moves to the right. */
export const DELIVERY_STATES = ["delayed", "delivered", "bounced", "complained"] as const
/** What became of a sent email, as the provider reported it. */
export type DeliveryState = typeof DELIVERY_STATES[number]

// The precedence as an SQL array literal (a constant of this module, never user input); migration 0004's
// trigger spells out the same order.
const STATES_SQL = `ARRAY[${DELIVERY_STATES.map((s) => `'${s}'`).join(", ")}]`

/** The delivery state each event type sets. */
export const STATE_OF_EVENT: Readonly<Record<string, DeliveryState>> = {
  "email.delivery_delayed": "delayed",
  "email.delivered": "delivered",
  "email.bounced": "bounced",
  "email.complained": "complained"
}

/** The parts of a Resend event this module reads; everything else is kept in the stored payload. */
const ResendEvent = Schema.Struct({
  type: Schema.String,
  created_at: Schema.String,
  data: Schema.optional(Schema.NullOr(Schema.Struct({
    email_id: Schema.optional(Schema.NullOr(Schema.String)),
    to: Schema.optional(Schema.NullOr(Schema.Union([Schema.String, Schema.Array(Schema.String)]))),
    bounce: Schema.optional(Schema.NullOr(Schema.Struct({ type: Schema.optional(Schema.NullOr(Schema.String)) }))),
    suppressed: Schema.optional(Schema.NullOr(Schema.Struct({ type: Schema.optional(Schema.NullOr(Schema.String)) })))
  })))
})
/** A Resend event, as far as this module reads it. */
export type ResendEvent = typeof ResendEvent.Type
const decodeEvent = Schema.decodeUnknownOption(Schema.fromJsonString(ResendEvent))

/** A verified event, ready to apply. */
export interface VerifiedEvent {
  readonly svixId: string
  /** The raw body, as signed. */
  readonly body: string
  readonly event: ResendEvent
}

/** What applying one event did. */
export interface Applied {
  /** The svix-id was recorded before: nothing changed. */
  readonly duplicate: boolean
  /** A ledger row carries the event's provider id. */
  readonly matched: boolean
  /** The delivery state the event reports, if any. */
  readonly state: DeliveryState | null
  /** The addresses the event suppresses (lower case). */
  readonly suppressed: ReadonlyArray<string>
}

/** `Name <a@b>` or `a@b`, lower-cased. */
const addressOf = (recipient: string): string => (/<([^<>]+)>\s*$/.exec(recipient)?.[1] ?? recipient).trim().toLowerCase()

/** The suppression reason an event calls for, if any. */
export const suppressionReason = (event: ResendEvent): "hard_bounce" | "complaint" | null => {
  switch (event.type) {
    case "email.bounced":
      return event.data?.bounce?.type?.toLowerCase() === "permanent" ? "hard_bounce" : null
    case "email.complained":
      return "complaint"
    case "email.suppressed":
      // Resend suppresses an address after a hard bounce or a complaint; its type says which.
      return /complain/i.test(event.data?.suppressed?.type ?? "") ? "complaint" : "hard_bounce"
    default:
      return null
  }
}

const recipientsOf = (event: ResendEvent): ReadonlyArray<string> => {
  const to = event.data?.to
  const list = to === undefined || to === null ? [] : typeof to === "string" ? [to] : to
  // Sorted and distinct: two events for the same addresses insert them in the same order, so they cannot
  // deadlock on the suppressions' unique index.
  return [...new Set(list.map(addressOf).filter((a) => a.includes("@")))].sort()
}

// The same lock key as the deliveries_take_events trigger (migration 0004).
const providerLock = (sql: SqlClient.SqlClient, providerId: string) =>
  sql`SELECT pg_advisory_xact_lock(hashtextextended(${"kaiwa_jobs.provider:" + providerId}, 0))`

/**
 * Applies one verified event in one transaction: records its svix-id, raises the ledger row's delivery state,
 * suppresses the addresses. A svix-id seen before changes nothing.
 */
export const applyEvent = Effect.fn("Webhooks.applyEvent")(
  function*(sql: SqlClient.SqlClient, verified: VerifiedEvent, receivedAt: Date) {
    const { event } = verified
    const providerId = event.data?.email_id ?? null
    const state = STATE_OF_EVENT[event.type] ?? null
    const reason = suppressionReason(event)
    const addresses = reason === null ? [] : recipientsOf(event)
    const created = Date.parse(event.created_at)
    const occurredAt = Number.isNaN(created) ? receivedAt : new Date(created)

    return yield* sql.withTransaction(Effect.gen(function*() {
      let matched = false
      if (providerId !== null) {
        const exists = sql<{ n: number }>`
          SELECT count(*)::int AS n FROM kaiwa_jobs.deliveries WHERE provider_id = ${providerId}`
        matched = (yield* exists)[0]!.n > 0
        if (!matched) {
          // The ledger may be recording this email's provider id right now (its transaction not yet committed).
          // The trigger that copies stored events onto a row that gets its provider id holds this lock while it
          // reads them; taking it here and looking again means one of the two sees the other's write.
          yield* providerLock(sql, providerId)
          matched = (yield* exists)[0]!.n > 0
        }
      }
      const claimed = yield* sql<{ svix_id: string }>`
        INSERT INTO kaiwa_jobs.webhook_events
          (svix_id, type, provider_id, delivery_state, occurred_at, received_at, matched, suppressed, payload)
        VALUES (${verified.svixId}, ${event.type}, ${providerId}, ${state}, ${occurredAt}, ${receivedAt}, ${matched},
          ARRAY(SELECT jsonb_array_elements_text(${JSON.stringify(addresses)}::jsonb)), ${verified.body}::jsonb)
        ON CONFLICT (svix_id) DO NOTHING
        RETURNING svix_id`
      if (claimed.length === 0) return { duplicate: true, matched, state, suppressed: [] } satisfies Applied
      if (matched && state !== null) {
        yield* sql`
          UPDATE kaiwa_jobs.deliveries
          SET delivery_state = ${state}, delivery_state_at = ${occurredAt}
          WHERE provider_id = ${providerId}
            AND coalesce(array_position(${sql.literal(STATES_SQL)}, delivery_state), 0) < ${DELIVERY_STATES.indexOf(state) + 1}`
      }
      if (reason !== null && addresses.length > 0) {
        yield* sql`
          INSERT INTO kaiwa_jobs.suppressions (user_id, email, list, reason, created_at)
          SELECT NULL, a.email, '*', ${reason}, ${occurredAt}
          FROM jsonb_array_elements_text(${JSON.stringify(addresses)}::jsonb) WITH ORDINALITY AS a(email, n)
          ORDER BY a.n
          ON CONFLICT ON CONSTRAINT suppressions_once DO NOTHING`
      }
      return { duplicate: false, matched, state, suppressed: addresses } satisfies Applied
    }))
  },
  Effect.mapError((cause) => new DatabaseError({ message: `recording a webhook event failed: ${describeSqlCause(cause)}` }))
)

/** The signature headers, under Svix's names (what Resend sends) or the Standard Webhooks names. */
const signatureHeaders = (headers: Readonly<Record<string, string | undefined>>) => {
  const id = headers["svix-id"] ?? headers["webhook-id"]
  const timestamp = headers["svix-timestamp"] ?? headers["webhook-timestamp"]
  const signature = headers["svix-signature"] ?? headers["webhook-signature"]
  if (!id || !timestamp || !signature) return undefined
  return { "webhook-id": id, "webhook-timestamp": timestamp, "webhook-signature": signature }
}

// Signature failures say only that: which part was wrong would help a forger, not the operator (the provider's
// dashboard shows the attempts).
const UNAUTHORIZED = "unauthorized: missing or invalid webhook signature"

const json = (body: unknown, status = 200) =>
  HttpServerResponse.jsonUnsafe(body, { status, headers: { "cache-control": "no-store" } })

// A fatal decoder: bytes that are not UTF-8 cannot be what Resend signed, and decoding them leniently would map
// different bodies onto the same text.
const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true })

/** The raw body as text when its signature and timestamp check out; `undefined` otherwise. */
export const verifiedBody = (
  verifier: Webhook,
  bytes: ArrayBuffer | Uint8Array,
  headers: { readonly "webhook-id": string; readonly "webhook-timestamp": string; readonly "webhook-signature": string }
): string | undefined => {
  try {
    const body = utf8.decode(bytes)
    verifier.verify(body, headers, { jsonParse: false })
    return body
  } catch {
    return undefined
  }
}

/** `POST /webhooks/resend`, as its own router layer (Http.ts merges it into the app). */
export const Routes = HttpRouter.use(Effect.fn(function*(router) {
  const config = yield* JobsConfig
  // The owner of webhook_events; it also records each event's delivery state on the ledger row and suppresses a
  // bounced or complaining address, in the event's own transaction (see applyEvent).
  const sql = yield* SqlClient.SqlClient
  // Built once; the secret is unwrapped here, at the one call that needs it.
  const verifier = Option.map(config.resendWebhookSecret, (secret) => new Webhook(Redacted.value(secret)))
  const limit = Number(MAX_WEBHOOK_BODY)

  const handler = Effect.gen(function*() {
    const request = yield* HttpServerRequest.HttpServerRequest
    if (Option.isNone(verifier)) {
      return json({ error: "webhook endpoint disabled: RESEND_WEBHOOK_SECRET is not set" }, 503)
    }
    const headers = signatureHeaders(request.headers)
    if (headers === undefined) return json({ error: UNAUTHORIZED }, 401)
    const declared = Number(request.headers["content-length"] ?? "0")
    if (declared > limit) return json({ error: `body larger than ${limit} bytes` }, 413)
    const read = yield* Effect.result(request.arrayBuffer.pipe(
      Effect.provideService(HttpIncomingMessage.MaxBodySize, MAX_WEBHOOK_BODY)
    ))
    if (Result.isFailure(read)) {
      const tooLarge = read.failure.reason._tag === "RequestParseError" && read.failure.reason.reason === "BodyTooLarge"
      return tooLarge ? json({ error: `body larger than ${limit} bytes` }, 413) : json({ error: "could not read the body" }, 400)
    }
    const body = verifiedBody(verifier.value, read.success, headers)
    if (body === undefined) return json({ error: UNAUTHORIZED }, 401)
    const event = decodeEvent(body)
    if (Option.isNone(event)) return json({ error: "the body is not a Resend event" }, 400)
    const receivedAt = new Date(yield* Clock.currentTimeMillis)
    const applied = yield* applyEvent(sql, { svixId: headers["webhook-id"], body, event: event.value }, receivedAt)
    yield* Effect.logInfo(
      `webhook ${event.value.type}: ${applied.duplicate ? "already applied" : applied.matched ? "applied to the ledger" : "stored (not an email of this library)"}` +
        (applied.suppressed.length > 0 ? `, ${applied.suppressed.length} address(es) suppressed` : "")
    )
    // No addresses, no ids: the answer goes to Resend's logs.
    return json({ ok: true, duplicate: applied.duplicate })
  }).pipe(
    Effect.catchTag("DatabaseError", (e) =>
      Effect.logError(e.message).pipe(Effect.as(json({ error: "the event could not be recorded; retry later" }, 500))))
  )

  yield* router.add("POST", RESEND_WEBHOOK_PATH, handler)
}))
