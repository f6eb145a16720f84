/**
 * What the provider tells afterwards (docs/http.md): `POST /webhooks/resend` receives Resend's events, checks
 * their signature, and applies each one exactly once.
 *
 * The request, checked in this order; nothing is written unless every check passes:
 * - 503 when RESEND_WEBHOOK_SECRET is unset: the endpoint is off, and Resend keeps retrying (for about a day),
 *   so setting the secret soon after loses nothing.
 * - 401 when the signature headers are missing or could not be a valid signature (`svix-id`, `svix-timestamp`,
 *   `svix-signature`; the Standard Webhooks names `webhook-*` are accepted too): an id of 1..256 visible
 *   characters, a timestamp within 5 minutes of now, a signature list with a `v1,<base64 of 32 bytes>` entry.
 *   Nothing of the body is read before this: memory for unsigned bodies stays bounded whatever arrives (figures:
 *   bench/README.md, webhook flood).
 * - 413 when the body is larger than MAX_WEBHOOK_BODY (declared in Content-Length or found while reading).
 * - 503 (with `retry-after`) when MAX_BODIES_IN_FLIGHT bodies are being read already and MAX_BODIES_WAITING
 *   requests wait for a turn, or a turn did not come within BODY_READ_TIMEOUT: memory for bodies stays bounded
 *   whatever arrives, and Resend retries later. 408 when a body does not arrive within BODY_READ_TIMEOUT of its
 *   request's arrival (a connection held open). These refusals, and the 401s and 413s, close the connection: its
 *   unread body is dropped, not drained (`refuseAndDrop`).
 * - 401 when the signature does not match the raw body byte for byte, or its timestamp is more than 5 minutes
 *   from now either way (a captured request cannot be replayed later). The check is the `standardwebhooks`
 *   package, the implementation the `resend` SDK's own `webhooks.verify` wraps; it is used directly because the
 *   SDK's wrapper needs a client built with an API key, which the web server has no use for. Its timestamp
 *   window is measured on the machine's real clock, not Effect's Clock: it compares two real clocks (Resend's
 *   and ours), it decides nothing about who gets an email.
 * - 400 when a correctly signed body is not a Resend event (never expected; nothing to apply).
 * - 200 otherwise, also for a replay and for a provider retry: the event's svix-id is recorded in the same
 *   transaction as its effect, so a second delivery finds it and changes nothing.
 * - An event PostgreSQL cannot store as sent (a `\u0000` or a lone surrogate in a string, nesting deeper than
 *   MAX_PAYLOAD_DEPTH, an instant outside PostgreSQL's range such as the year -200000) is stored with those values
 *   replaced (U+FFFD, null, the instant it was received) and applied like any other: a bounce still suppresses.
 *   Answering 500 would only make Resend retry it, to the same 500, for a day.
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
import { ByteSize, Clock, Duration, Effect, Option, Redacted, Result, Schema, Semaphore } from "effect"
import * as NodeHttpServerRequest from "@effect/platform-node/NodeHttpServerRequest"
import { HttpIncomingMessage, HttpRouter, HttpServerRequest, HttpServerResponse } from "effect/http"
import { SqlClient, SqlSchema } from "effect/sql"
import { Webhook } from "standardwebhooks"
import { JobsConfig } from "../config/Config.ts"
import { DatabaseError, describeSqlCause, failureOf } from "../database/Database.ts"
import { type DeliveryState, Ledger } from "../ledger/Ledger.ts"
import { Suppressions } from "../ledger/Suppressions.ts"

/** Where Resend posts its events. */
export const RESEND_WEBHOOK_PATH = "/webhooks/resend"

/**
 * The largest body accepted. A Resend email event is about 1 KB (ids, addresses, subject, tags, a bounce
 * message); 256 KiB leaves room for 50 recipients with long tags and a verbose bounce diagnostic many times
 * over, while a flood of large bodies costs at most 256 KiB of memory per request before it is refused.
 */
export const MAX_WEBHOOK_BODY = ByteSize.kibibytes(256)

/** At most this many webhook bodies are read at once; a request beyond them is answered 503 before its body is read. */
export const MAX_BODIES_IN_FLIGHT = 16

/** At most this many requests wait for a turn to read their body; one more is answered 503 before it is read. */
export const MAX_BODIES_WAITING = 64

/** A body must have arrived this long after reading it began, or the request is answered 408. */
export const BODY_READ_TIMEOUT = Duration.seconds(10)

/** How far a signature's timestamp may be from now either way (Standard Webhooks' and `standardwebhooks`' own). */
export const TIMESTAMP_TOLERANCE_SECONDS = 5 * 60

/** Objects and arrays nested deeper than this in a stored payload are replaced by null (Resend's go 3 deep). */
export const MAX_PAYLOAD_DEPTH = 32

/** Delivery states in precedence order: a ledger row's state only ever moves to the right (src/ledger/Ledger.ts). */
export { DELIVERY_STATES, type DeliveryState } from "../ledger/Ledger.ts"

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
const decodeEvent = Schema.decodeUnknownOption(ResendEvent)

/** A string PostgreSQL stores as given in text and jsonb: no NUL, no lone surrogate (each becomes U+FFFD). */
const storableString = (s: string): string => s.replace(UNSTORABLE, "\uFFFD")
// NUL, a high surrogate with no low one after it, a low surrogate with no high one before it.
const UNSTORABLE = /\u0000|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g

/**
 * A parsed JSON value that PostgreSQL's jsonb accepts: strings (and keys) made storable, nesting past
 * MAX_PAYLOAD_DEPTH replaced by null. Numbers need nothing: JSON.stringify writes a non-finite one as null.
 */
export const storableJson = (value: unknown, depth = 0): unknown => {
  if (typeof value === "string") return storableString(value)
  if (value === null || typeof value !== "object") return value
  if (depth >= MAX_PAYLOAD_DEPTH) return null
  if (Array.isArray(value)) return value.map((v) => storableJson(v, depth + 1))
  return Object.fromEntries(Object.entries(value).map(([k, v]) => [storableString(k), storableJson(v, depth + 1)]))
}

/** The earliest instant PostgreSQL's timestamptz holds (4713 BC); its latest, 294276 AD, is past JavaScript's. */
const EARLIEST_STORABLE = Date.UTC(-4712, 0, 1)

/** A signed body's event, made storable (`storableJson`); none when it is not JSON or not a Resend event. */
export const parseEvent = (body: string): Option.Option<{ readonly event: ResendEvent; readonly payload: string }> => {
  let parsed: unknown
  try {
    parsed = storableJson(JSON.parse(body))
  } catch {
    return Option.none()
  }
  return Option.map(decodeEvent(parsed), (event) => ({ event, payload: JSON.stringify(parsed) }))
}

/** A verified event, ready to apply. */
export interface VerifiedEvent {
  readonly svixId: string
  /** The body as stored: the signed JSON, with what PostgreSQL refuses replaced (`parseEvent`). */
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

/** A row of `kaiwa_jobs.webhook_events`, the table this module owns. */
const EventRow = Schema.Struct({
  svixId: Schema.String,
  type: Schema.String,
  providerId: Schema.NullOr(Schema.String),
  state: Schema.NullOr(Schema.String),
  occurredAt: Schema.Date,
  receivedAt: Schema.Date,
  matched: Schema.Boolean,
  suppressed: Schema.Array(Schema.String),
  /** The stored body (JSON text). */
  payload: Schema.String
})

/** Records an event under its svix-id; none when that id was recorded before (a replay or a provider retry). */
const recordEvent = (sql: SqlClient.SqlClient) =>
  SqlSchema.findOneOption({
    Request: EventRow,
    Result: Schema.Struct({ svix_id: Schema.String }),
    execute: (row) =>
      sql`INSERT INTO kaiwa_jobs.webhook_events
          (svix_id, type, provider_id, delivery_state, occurred_at, received_at, matched, suppressed, payload)
        VALUES (${row.svixId}, ${row.type}, ${row.providerId}, ${row.state}, ${row.occurredAt}, ${row.receivedAt}, ${row.matched},
          ARRAY(SELECT jsonb_array_elements_text(${JSON.stringify(row.suppressed)}::jsonb)), ${row.payload}::jsonb)
        ON CONFLICT (svix_id) DO NOTHING
        RETURNING svix_id`
  })

/**
 * What applying an event writes through: webhook_events (this module's, through `sql`), the ledger row's delivery
 * state, and the suppressions.
 */
export interface EventOwners {
  readonly sql: SqlClient.SqlClient
  readonly ledger: Ledger["Service"]
  readonly suppressions: Suppressions["Service"]
}

/**
 * Applies one verified event in one transaction: records its svix-id, raises the ledger row's delivery state,
 * suppresses the addresses. A svix-id seen before changes nothing.
 */
export const applyEvent = Effect.fn("Webhooks.applyEvent")(
  function*(
    owners: EventOwners,
    verified: VerifiedEvent,
    receivedAt: Date
  ) {
    const { ledger, sql, suppressions } = owners
    const { event } = verified
    const providerId = event.data?.email_id ?? null
    const state = STATE_OF_EVENT[event.type] ?? null
    const reason = suppressionReason(event)
    const addresses = reason === null ? [] : recipientsOf(event)
    const created = Date.parse(event.created_at)
    const occurredAt = Number.isNaN(created) || created < EARLIEST_STORABLE ? receivedAt : new Date(created)

    return yield* sql.withTransaction(Effect.gen(function*() {
      let matched = false
      if (providerId !== null) {
        matched = yield* ledger.hasProviderId(providerId)
        if (!matched) {
          // The ledger may be recording this email's provider id right now (its transaction not yet committed).
          // The trigger that copies stored events onto a row that gets its provider id holds this lock while it
          // reads them; taking it here and looking again means one of the two sees the other's write.
          yield* ledger.lockProviderId(providerId)
          matched = yield* ledger.hasProviderId(providerId)
        }
      }
      const claimed = yield* recordEvent(sql)({
        svixId: verified.svixId,
        type: event.type,
        providerId,
        state,
        occurredAt,
        receivedAt,
        matched,
        suppressed: addresses,
        payload: verified.body
      })
      if (Option.isNone(claimed)) return { duplicate: true, matched, state, suppressed: [] } satisfies Applied
      if (matched && state !== null && providerId !== null) yield* ledger.raiseDeliveryState(providerId, state, occurredAt)
      if (reason !== null && addresses.length > 0) yield* suppressions.suppressAddresses(addresses, reason, occurredAt)
      return { duplicate: false, matched, state, suppressed: addresses } satisfies Applied
    }))
  },
  Effect.mapError((cause) => new DatabaseError({ reason: failureOf(cause), message: `recording a webhook event failed: ${describeSqlCause(cause)}` }))
)

/** The signature headers, under Svix's names (what Resend sends) or the Standard Webhooks names. */
const signatureHeaders = (headers: Readonly<Record<string, string | undefined>>) => {
  const id = headers["svix-id"] ?? headers["webhook-id"]
  const timestamp = headers["svix-timestamp"] ?? headers["webhook-timestamp"]
  const signature = headers["svix-signature"] ?? headers["webhook-signature"]
  if (!id || !timestamp || !signature) return undefined
  return { "webhook-id": id, "webhook-timestamp": timestamp, "webhook-signature": signature }
}

/**
 * Whether signature headers could be a valid signature, judged without the body: an id of visible characters,
 * a timestamp within TIMESTAMP_TOLERANCE_SECONDS of `nowSeconds`, and a `v1,<base64 of an HMAC-SHA256>` entry
 * among the space-separated signatures. The full check (`verifiedBody`) needs the body; this one decides whether
 * reading it is worth anything.
 */
export const plausibleSignature = (
  headers: { readonly "webhook-id": string; readonly "webhook-timestamp": string; readonly "webhook-signature": string },
  nowSeconds: number
): boolean =>
  /^[\x21-\x7e]{1,256}$/.test(headers["webhook-id"]) &&
  /^\d{1,12}$/.test(headers["webhook-timestamp"]) &&
  Math.abs(Number(headers["webhook-timestamp"]) - nowSeconds) <= TIMESTAMP_TOLERANCE_SECONDS &&
  headers["webhook-signature"].length <= 4096 &&
  headers["webhook-signature"].split(" ").some((s) => /^v1,[A-Za-z0-9+/]{43}=$/.test(s))

// Signature failures say only that: which part was wrong would help a forger, not the operator (the provider's
// dashboard shows the attempts).
const UNAUTHORIZED = "unauthorized: missing or invalid webhook signature"

const json = (body: unknown, status = 200) =>
  HttpServerResponse.jsonUnsafe(body, { status, headers: { "cache-control": "no-store" } })

// A refusal made before the body was read closes the connection (Node would otherwise read the unread body to its
// end to keep the connection alive, which a client that holds it open never reaches).
const refuse = (body: unknown, status: number, headers: Record<string, string> = {}) =>
  HttpServerResponse.jsonUnsafe(body, { status, headers: { "cache-control": "no-store", connection: "close", ...headers } })

/**
 * The refusals a flood meets (headers that could not be signed, no reading turn left): the connection is
 * destroyed as soon as the answer is written, so it reads nothing more. A graceful close (Node's, or the HTTP
 * adapter's, which waits 500 ms for the client) kept reading the unread body of a client that holds its
 * connection open, so memory grew with the flood (docs/decisions.md, "Mail and pages"; bench/webhook-flood.ts).
 * The answer is on the wire before the reset; a client that reads its socket sees it.
 */
const refuseAndDrop = (request: HttpServerRequest.HttpServerRequest) =>
(body: unknown, status: number, headers: Record<string, string> = {}) => {
  const socket = NodeHttpServerRequest.toIncomingMessage(request).socket
  NodeHttpServerRequest.toServerResponse(request).once("finish", () => socket.destroy())
  return refuse(body, status, headers)
}

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

/** Why a body was not read: no turn, too slow, too large, or broken. */
type Unread = "busy" | "slow" | "too large" | "unreadable"

/** A body read under the semaphore, or why it was not. */
type BodyRead = Result.Result<ArrayBuffer, Unread>

const LIMIT = Number(MAX_WEBHOOK_BODY)

/**
 * Reads bodies MAX_BODIES_IN_FLIGHT at a time; up to MAX_BODIES_WAITING more requests wait for a turn (their
 * bodies unread: Node holds at most a socket read's worth of each), and a request beyond those is answered 503
 * at once. Waiting and reading together are bounded by BODY_READ_TIMEOUT.
 */
const makeBodyReader = () => {
  const permits = Semaphore.makeUnsafe(MAX_BODIES_IN_FLIGHT)
  let waiting = 0
  return (request: HttpServerRequest.HttpServerRequest): Effect.Effect<BodyRead> =>
    Effect.suspend(() => {
      if (waiting >= MAX_BODIES_WAITING) return Effect.succeed<BodyRead>(Result.fail("busy"))
      waiting++
      let queued = true
      const leaveQueue = Effect.sync(() => {
        if (queued) waiting--
        queued = false
      })
      const read = request.arrayBuffer.pipe(
        Effect.provideService(HttpIncomingMessage.MaxBodySize, MAX_WEBHOOK_BODY),
        Effect.map((bytes): BodyRead => Result.succeed(bytes)),
        Effect.catch((e) =>
          Effect.succeed<BodyRead>(Result.fail(
            e.reason._tag === "RequestParseError" && e.reason.reason === "BodyTooLarge" ? "too large" : "unreadable"
          ))
        )
      )
      return Semaphore.withPermit(permits, Effect.andThen(leaveQueue, read)).pipe(
        Effect.timeoutOption(BODY_READ_TIMEOUT),
        Effect.map(Option.getOrElse((): BodyRead => Result.fail(queued ? "busy" : "slow"))),
        Effect.ensuring(leaveQueue)
      )
    })
}

/** The answer to a body that was not read: no turn (503, dropped), too slow (408), too large (413), broken (400). */
const unread = (request: HttpServerRequest.HttpServerRequest, why: Unread) => {
  switch (why) {
    case "busy":
      return refuseAndDrop(request)({ error: "too many webhook requests at once; retry later" }, 503, { "retry-after": "1" })
    case "slow":
      return refuse({ error: "the body did not arrive in time" }, 408)
    case "too large":
      return refuse({ error: `body larger than ${LIMIT} bytes` }, 413)
    case "unreadable":
      return refuse({ error: "could not read the body" }, 400)
  }
}

/** What the route works with, built once when the server starts. */
interface Receiver {
  /** Built once; the secret is unwrapped here, at the one call that needs it. None: the endpoint is off. */
  readonly verifier: Option.Option<Webhook>
  readonly readBody: (request: HttpServerRequest.HttpServerRequest) => Effect.Effect<BodyRead>
  /**
   * The owner of webhook_events; it also records each event's delivery state on the ledger row and suppresses a
   * bounced or complaining address, in the event's own transaction (see applyEvent).
   */
  readonly owners: EventOwners
}

/** Applies a verified event, logs what it did (no addresses, no ids), and answers Resend. */
const applyAndAnswer = Effect.fnUntraced(function*(receiver: Receiver, verified: VerifiedEvent, signedBody: string) {
  const receivedAt = new Date(yield* Clock.currentTimeMillis)
  const applied = yield* applyEvent(receiver.owners, verified, receivedAt)
  yield* Effect.logInfo(
    `webhook ${verified.event.type}: ${applied.duplicate ? "already applied" : applied.matched ? "applied to the ledger" : "stored (not an email of this library)"}` +
      (applied.suppressed.length > 0 ? `, ${applied.suppressed.length} address(es) suppressed` : "") +
      (verified.body === signedBody ? "" : " (values PostgreSQL cannot store were replaced)")
  )
  // No addresses, no ids: the answer goes to Resend's logs.
  return json({ ok: true, duplicate: applied.duplicate })
})

/** `POST /webhooks/resend`: the checks of the module comment, in that order, then the event applied once. */
const receive = (receiver: Receiver) =>
  Effect.gen(function*() {
    const request = yield* HttpServerRequest.HttpServerRequest
    if (Option.isNone(receiver.verifier)) {
      return refuse({ error: "webhook endpoint disabled: RESEND_WEBHOOK_SECRET is not set" }, 503)
    }
    const headers = signatureHeaders(request.headers)
    // The machine's clock, like the full check's (see the module comment).
    if (headers === undefined || !plausibleSignature(headers, Math.floor(Date.now() / 1000))) {
      return refuseAndDrop(request)({ error: UNAUTHORIZED }, 401)
    }
    const declared = Number(request.headers["content-length"] ?? "0")
    if (declared > LIMIT) return refuse({ error: `body larger than ${LIMIT} bytes` }, 413)
    const read = yield* receiver.readBody(request)
    if (Result.isFailure(read)) return unread(request, read.failure)
    const body = verifiedBody(receiver.verifier.value, read.success, headers)
    if (body === undefined) return json({ error: UNAUTHORIZED }, 401)
    const event = parseEvent(body)
    if (Option.isNone(event)) return json({ error: "the body is not a Resend event" }, 400)
    const verified = { svixId: headers["webhook-id"], body: event.value.payload, event: event.value.event }
    return yield* applyAndAnswer(receiver, verified, body)
  }).pipe(
    Effect.catchTag("DatabaseError", (e) =>
      Effect.logError(e.message).pipe(Effect.as(json({ error: "the event could not be recorded; retry later" }, 500))))
  )

/** `POST /webhooks/resend`, as its own router layer (Http.ts merges it into the app). */
export const Routes = HttpRouter.use(Effect.fn(function*(router) {
  const config = yield* JobsConfig
  const receiver: Receiver = {
    verifier: Option.map(config.resendWebhookSecret, (secret) => new Webhook(Redacted.value(secret))),
    readBody: makeBodyReader(),
    owners: { sql: yield* SqlClient.SqlClient, ledger: yield* Ledger, suppressions: yield* Suppressions }
  }
  yield* router.add("POST", RESEND_WEBHOOK_PATH, receive(receiver))
}))
