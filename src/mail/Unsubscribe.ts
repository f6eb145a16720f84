/**
 * Signed unsubscribe tokens. Every email carries a one-click unsubscribe link (RFC 8058), and the web endpoint
 * that receives it must know which user and which list to suppress without a login and without a database of
 * issued tokens. So the token names the user and the list itself and is signed with `UNSUBSCRIBE_SECRET`:
 * `base64url(JSON {v:1,u,l}) + "." + base64url(HMAC-SHA256(secret, "kaiwa-jobs/unsubscribe/v1." + payload))`.
 * The domain prefix keeps these signatures from ever being valid for another use of the same secret, and the
 * version field lets a later format coexist. Tokens never expire: a link in an old email must still work, and
 * the worst a leaked token can do is unsubscribe its own recipient from one list. Verification is total: any
 * malformed, truncated or forged token gives `None`, never an exception, and the signature is checked (in
 * constant time) before the payload is even parsed. Every email's footer also links the learner's preference
 * center with a per-user token of the same form under its own domain (`makePreferencesToken`).
 */
import { createHmac, timingSafeEqual } from "node:crypto"
import { Effect, Option, Redacted, Schema } from "effect"
import { JobsConfig } from "../config/Config.ts"
import { Preferences } from "../ledger/Preferences.ts"

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

/**
 * The payload (JSON text) of a `payload.signature` token whose signature is `sign(payload)`, or `None`. The
 * signature is checked, in constant time, before the payload is decoded.
 */
const verifiedPayload = (token: string, sign: (payloadB64: string) => string): Option.Option<string> => {
  if (typeof token !== "string" || token.length > MAX_TOKEN_LENGTH) return Option.none()
  const parts = token.split(".")
  if (parts.length !== 2) return Option.none()
  const [payloadB64 = "", signatureB64 = ""] = parts
  if (!BASE64URL.test(payloadB64) || !BASE64URL.test(signatureB64)) return Option.none()
  // Compare the base64url text rather than decoded bytes: Node's decoder ignores the unused low bits of the
  // last character, so two different strings can decode to the same bytes; text comparison keeps exactly one
  // valid spelling of each signature.
  const expected = Buffer.from(sign(payloadB64), "ascii")
  const given = Buffer.from(signatureB64, "ascii")
  if (expected.length !== given.length || !timingSafeEqual(expected, given)) return Option.none()
  return Option.some(Buffer.from(payloadB64, "base64url").toString("utf8"))
}

/** Returns the claim of a token signed with `secret`, or `None` for anything else; never throws. */
export const verifyToken = (secret: Redacted.Redacted<string>, token: string): Option.Option<UnsubscribeClaim> =>
  Option.flatMap(
    verifiedPayload(token, (payloadB64) => sign(secret, payloadB64)),
    (json) => Option.map(decodePayload(json), (payload): UnsubscribeClaim => ({ userId: payload.u, list: payload.l }))
  )

/** What a preferences token proves: this link was sent to this user, to manage all of their email lists. */
export interface PreferencesClaim {
  readonly userId: string
}

// Its own domain and payload shape: a preferences signature is never valid as an unsubscribe token (which would
// let the preference link leave a list in one click) and an unsubscribe token never opens the preference center.
const PREFERENCES_DOMAIN = "kaiwa-jobs/preferences/v1."

const PreferencesPayload = Schema.Struct({ v: Schema.Literal(1), u: Schema.String, p: Schema.Literal("preferences") })
const decodePreferencesPayload = Schema.decodeUnknownOption(Schema.fromJsonString(PreferencesPayload))

const signPreferences = (secret: Redacted.Redacted<string>, payloadB64: string): string =>
  createHmac("sha256", Redacted.value(secret)).update(PREFERENCES_DOMAIN + payloadB64, "utf8").digest("base64url")

/**
 * Signs a user's preference-center token: `base64url(JSON {v:1,u,p:"preferences"}) + "." + base64url(HMAC-SHA256(
 * secret, "kaiwa-jobs/preferences/v1." + payload))`. Per user, not per list (the page shows every list); like
 * unsubscribe tokens it never expires, so the footer of an old email still opens the page.
 */
export const makePreferencesToken = (secret: Redacted.Redacted<string>, claim: PreferencesClaim): string => {
  const payloadB64 = Buffer.from(JSON.stringify({ v: 1, u: claim.userId, p: "preferences" }), "utf8").toString(
    "base64url"
  )
  return `${payloadB64}.${signPreferences(secret, payloadB64)}`
}

/** Returns the claim of a preferences token signed with `secret`, or `None` for anything else; never throws. */
export const verifyPreferencesToken = (
  secret: Redacted.Redacted<string>,
  token: string
): Option.Option<PreferencesClaim> =>
  Option.flatMap(
    verifiedPayload(token, (payloadB64) => signPreferences(secret, payloadB64)),
    (json) => Option.map(decodePreferencesPayload(json), (payload): PreferencesClaim => ({ userId: payload.u }))
  )

/** The preference center for a token: `${appUrl}/preferences?token=…`. */
export const preferencesUrl = (appUrl: string, token: string): string =>
  `${appUrl.replace(/\/+$/, "")}/preferences?token=${encodeURIComponent(token)}`

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

/** Who leaves which list: a user (by id), or an address whoever it belongs to; and through what. */
export interface Leaving {
  readonly userId: string | null
  readonly email: string | null
  /** A job's name, or `*` for every list. */
  readonly list: string
  /** `link` (the emailed link's page), `one-click` (RFC 8058), `cli`. */
  readonly source?: string | undefined
}

/**
 * Records that someone left a list, in the one home preferences have (`Preferences`): the app's `user_settings`
 * where it has the list's column, else the library's own suppression, so nobody who unsubscribed is emailed
 * again. Returns whether anything new was recorded.
 */
export const leave = Effect.fn("Unsubscribe.leave")(function*(who: Leaving) {
  const preferences = yield* Preferences
  const recorded = yield* preferences.change({ ...who, subscribed: false, source: who.source ?? "link" })
  yield* Effect.logInfo(recorded ? "unsubscribe recorded" : "unsubscribe already recorded").pipe(Effect.annotateLogs({ list: who.list }))
  return recorded
})
