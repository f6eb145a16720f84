/**
 * Signed unsubscribe tokens. Every email carries a one-click unsubscribe link (RFC 8058), and the web endpoint
 * that receives it must know which user and which list to suppress without a login and without a database of
 * issued tokens. So the token names the user and the list itself and is signed with `UNSUBSCRIBE_SECRET`:
 * `base64url(JSON {v:1,u,l}) + "." + base64url(HMAC-SHA256(secret, "kaiwa-jobs/unsubscribe/v1." + payload))`.
 * The domain prefix keeps these signatures from ever being valid for another use of the same secret, and the
 * version field lets a later format coexist. Tokens never expire: a link in an old email must still work, and
 * the worst a leaked token can do is unsubscribe its own recipient from one list. Verification is total: any
 * malformed, truncated or forged token gives `None`, never an exception, and the signature is checked (in
 * constant time) before the payload is even parsed.
 */
import { createHmac, timingSafeEqual } from "node:crypto"
import { Clock, Effect, Option, Redacted, Schema } from "effect"
import { AppTables, OPT_IN_COLUMNS } from "./App.ts"
import { JobsConfig } from "./Config.ts"
import { Database } from "./Database.ts"

/**
 * A mailing list a user can leave: one per job, named after the job (`Job.make`'s `name`), so a new job has its
 * list without an edit here. The signature, not this pattern, makes a claim trustworthy; the pattern only keeps
 * the payload to the shape job names have. A valid token for a list no job declares any more (a retired job) is
 * still honoured: recording that suppression is harmless, and refusing a person's unsubscribe never is.
 */
export const UnsubscribeList = Schema.String.check(Schema.isPattern(/^[a-z0-9][a-z0-9-]{0,62}$/))

/** What a token proves: this user asked to leave this list. */
export interface UnsubscribeClaim {
  readonly userId: string
  readonly list: string
}

const DOMAIN = "kaiwa-jobs/unsubscribe/v1."

// Far above any real token (about 100 characters plus the user id), low enough that garbage is never hashed.
const MAX_TOKEN_LENGTH = 4096

const BASE64URL = /^[A-Za-z0-9_-]+$/

// `u` stays a plain string so that every token `makeToken` produces verifies; the signature, not the schema,
// is what makes a claim trustworthy.
const Payload = Schema.Struct({ v: Schema.Literal(1), u: Schema.String, l: UnsubscribeList })
const decodePayload = Schema.decodeUnknownOption(Schema.fromJsonString(Payload))

const sign = (secret: Redacted.Redacted<string>, payloadB64: string): string =>
  createHmac("sha256", Redacted.value(secret)).update(DOMAIN + payloadB64, "utf8").digest("base64url")

/** Signs a claim into a URL-safe token (`payload.signature`, both base64url). */
export const makeToken = (secret: Redacted.Redacted<string>, claim: UnsubscribeClaim): string => {
  const payloadB64 = Buffer.from(JSON.stringify({ v: 1, u: claim.userId, l: claim.list }), "utf8").toString(
    "base64url"
  )
  return `${payloadB64}.${sign(secret, payloadB64)}`
}

/** Returns the claim of a token signed with `secret`, or `None` for anything else; never throws. */
export const verifyToken = (secret: Redacted.Redacted<string>, token: string): Option.Option<UnsubscribeClaim> => {
  if (typeof token !== "string" || token.length > MAX_TOKEN_LENGTH) return Option.none()
  const parts = token.split(".")
  if (parts.length !== 2) return Option.none()
  const [payloadB64 = "", signatureB64 = ""] = parts
  if (!BASE64URL.test(payloadB64) || !BASE64URL.test(signatureB64)) return Option.none()
  // Compare the base64url text rather than decoded bytes: Node's decoder ignores the unused low bits of the
  // last character, so two different strings can decode to the same bytes; text comparison keeps exactly one
  // valid spelling of each signature.
  const expected = Buffer.from(sign(secret, payloadB64), "ascii")
  const given = Buffer.from(signatureB64, "ascii")
  if (expected.length !== given.length || !timingSafeEqual(expected, given)) return Option.none()
  return Option.map(
    decodePayload(Buffer.from(payloadB64, "base64url").toString("utf8")),
    (payload): UnsubscribeClaim => ({ userId: payload.u, list: payload.l })
  )
}

/** The one-click unsubscribe page for a token: `${appUrl}/unsubscribe?token=…`. */
export const unsubscribeUrl = (appUrl: string, token: string): string =>
  `${appUrl.replace(/\/+$/, "")}/unsubscribe?token=${encodeURIComponent(token)}`

/** The RFC 8058 one-click headers for an unsubscribe URL made by `unsubscribeUrl`. */
export const unsubscribeHeaders = (url: string): Readonly<Record<string, string>> => ({
  "List-Unsubscribe": `<${url}>`,
  "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"
})

/** A token that does not verify: nothing was recorded. */
export class InvalidUnsubscribeToken extends Schema.TaggedError<InvalidUnsubscribeToken>()("InvalidUnsubscribeToken", {
  message: Schema.String
}) {}

/**
 * Verifies a token and records the suppression it asks for (idempotent: a second use changes nothing and still
 * succeeds). A forged, truncated or garbled token fails with `InvalidUnsubscribeToken` and writes nothing.
 */
export const confirm = Effect.fn("Unsubscribe.confirm")(function*(token: string) {
  const config = yield* JobsConfig
  const claim = verifyToken(config.unsubscribeSecret, token)
  if (Option.isNone(claim)) {
    return yield* new InvalidUnsubscribeToken({ message: "this unsubscribe link is not valid" })
  }
  const recorded = yield* leave({ userId: claim.value.userId, email: null, list: claim.value.list })
  return { ...claim.value, recorded }
})

/** Who leaves which list: a user (by id), or an address whoever it belongs to. */
export interface Leaving {
  readonly userId: string | null
  readonly email: string | null
  /** A job's name, or `*` for every list. */
  readonly list: string
}

/**
 * Records that someone left a list, in the one home preferences have (CONTRACT 3): where the app has the list's
 * opt-in column, the app's `user_settings` (so its profile page shows it and a re-subscribe there takes effect);
 * otherwise, or when that write cannot be made (a permission, a not-null column without a default), the
 * library's own suppression, so nobody who unsubscribed is emailed again. Returns whether anything new was
 * recorded (false when the library's suppression was already there).
 */
export const leave = Effect.fn("Unsubscribe.leave")(function*(who: Leaving) {
  const db = yield* Database
  const app = yield* AppTables
  const now = new Date(yield* Clock.currentTimeMillis)
  const suppress = (list: string) =>
    db.suppress({ userId: who.userId, email: who.email === null ? null : who.email, list, reason: "unsubscribed", now })
  if (who.userId === null) return yield* suppress(who.list)
  if (who.list === "*") {
    // Every list the app has a column for is written there; the rest (and any later job's list) by suppression.
    const results = yield* Effect.forEach(app.shape.optInColumns.length === 0 ? [] : appLists(app), (list) =>
      app.setSubscribed(who.userId!, list, false))
    const failed = results.find((r) => r._tag === "Failed")
    if (failed !== undefined && failed._tag === "Failed") {
      yield* Effect.logWarning(`could not write the unsubscribe to the app's user_settings (${failed.reason}); kept as kaiwa-jobs' own suppression`)
    }
    return yield* suppress("*")
  }
  const written = yield* app.setSubscribed(who.userId, who.list, false)
  if (written._tag === "App") {
    yield* Effect.logInfo(`unsubscribe written to the app's user_settings.${written.column}`).pipe(
      Effect.annotateLogs({ list: who.list })
    )
    return true
  }
  if (written._tag === "Failed") {
    yield* Effect.logWarning(
      `could not write the unsubscribe to the app's user_settings (${written.reason}); kept as kaiwa-jobs' own suppression (kaiwa-jobs doctor explains)`
    ).pipe(Effect.annotateLogs({ list: who.list }))
  }
  return yield* suppress(who.list)
})

const appLists = (app: AppTables["Service"]) => Object.keys(OPT_IN_COLUMNS).filter((l) => app.shape.optInColumns.includes(OPT_IN_COLUMNS[l]!))
