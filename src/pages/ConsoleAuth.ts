/**
 * Sign-in for the operator console without a password store. `kaiwa-jobs console-link` prints a
 * one-time URL `${APP_URL}/console/login?token=…`; the token is signed with a key derived from CONSOLE_SECRET and
 * carries its expiry, a random nonce and who made it (the operator's OS user and host). Using it records the
 * nonce (`useNonce`, the only code that names `kaiwa_jobs.console_nonces`), so a link signs in once, and sets a session cookie signed with
 * another derived key: short-lived (8 hours), HttpOnly, SameSite=Strict, Secure when APP_URL is https, and
 * scoped to `/console`. Forms that change anything carry a CSRF token, an HMAC of the session id.
 *
 * Every key is derived from CONSOLE_SECRET with HMAC for one purpose ("link", "session", "csrf"), so a value
 * signed for one can never pass as another, and the secret itself is never used directly. Signatures are
 * compared in constant time. Nothing here reads the clock: callers pass `now`, so tests drive time.
 */
import { createHmac, randomBytes, timingSafeEqual } from "node:crypto"
import { Effect, Option, Redacted, Schema } from "effect"
import { type SqlClient, SqlSchema } from "effect/sql"

/** How long a console session lasts. */
export const SESSION_HOURS = 8

/** The default lifetime of a sign-in link, in minutes. */
export const DEFAULT_LINK_MINUTES = 15

/** The session cookie's name. */
export const COOKIE = "kaiwa_console"

type Purpose = "link" | "session" | "csrf"

const keyFor = (secret: Redacted.Redacted<string>, purpose: Purpose) =>
  createHmac("sha256", Redacted.value(secret)).update(`kaiwa-jobs/console/v1/${purpose}`).digest()

const mac = (secret: Redacted.Redacted<string>, purpose: Purpose, data: string) =>
  createHmac("sha256", keyFor(secret, purpose)).update(data).digest("base64url")

const sameMac = (a: string, b: string) => {
  const x = Buffer.from(a)
  const y = Buffer.from(b)
  return x.length === y.length && timingSafeEqual(x, y)
}

/** `payload.signature`, with the payload as base64url JSON. */
const sign = (secret: Redacted.Redacted<string>, purpose: Purpose, payload: object) => {
  const body = Buffer.from(JSON.stringify(payload)).toString("base64url")
  return `${body}.${mac(secret, purpose, body)}`
}

const open = (secret: Redacted.Redacted<string>, purpose: Purpose, token: string): unknown => {
  const [body, signature, extra] = token.split(".")
  if (body === undefined || signature === undefined || extra !== undefined || body === "") return undefined
  if (!sameMac(signature, mac(secret, purpose, body))) return undefined
  try {
    return JSON.parse(Buffer.from(body, "base64url").toString("utf8"))
  } catch {
    return undefined
  }
}

// What a signed payload must hold; anything else, however well signed, is refused.
const decodeLinkPayload = Schema.decodeUnknownOption(Schema.Struct({ exp: Schema.Number, n: Schema.String, by: Schema.String }))
const decodeSessionPayload = Schema.decodeUnknownOption(Schema.Struct({ sid: Schema.String, exp: Schema.Number, by: Schema.String }))

/** What a sign-in link says. */
export interface LinkClaim {
  readonly expiresAt: number
  readonly nonce: string
  readonly by: string
}

/** A signed sign-in token valid until `now + minutes`. */
export const makeLinkToken = (secret: Redacted.Redacted<string>, options: { readonly now: number; readonly minutes: number; readonly by: string }) =>
  sign(secret, "link", { exp: options.now + options.minutes * 60_000, n: randomBytes(18).toString("base64url"), by: options.by })

/** The URL `console-link` prints. */
export const linkUrl = (appUrl: string, token: string) => `${appUrl.replace(/\/+$/, "")}/console/login?token=${encodeURIComponent(token)}`

/** Why a sign-in token is refused. */
export type LinkProblem = "invalid" | "expired"

/** Verifies a sign-in token's signature and expiry (the nonce's one use is the caller's to record). */
export const verifyLinkToken = (secret: Redacted.Redacted<string>, token: string, now: number): LinkClaim | LinkProblem => {
  const p = decodeLinkPayload(open(secret, "link", token))
  if (Option.isNone(p)) return "invalid"
  if (p.value.exp <= now) return "expired"
  return { expiresAt: p.value.exp, nonce: p.value.n, by: p.value.by }
}

/** A signed-in operator. */
export interface Session {
  readonly id: string
  readonly expiresAt: number
  readonly by: string
}

/** A new session's cookie value. */
export const makeSession = (secret: Redacted.Redacted<string>, options: { readonly now: number; readonly by: string }) => {
  const session: Session = { id: randomBytes(18).toString("base64url"), expiresAt: options.now + SESSION_HOURS * 3_600_000, by: options.by }
  return { session, value: sign(secret, "session", { sid: session.id, exp: session.expiresAt, by: session.by }) }
}

/** The session a cookie value holds, if it is genuine and not expired. */
export const verifySession = (secret: Redacted.Redacted<string>, value: string, now: number): Session | undefined => {
  const p = Option.getOrUndefined(decodeSessionPayload(open(secret, "session", value)))
  return p !== undefined && p.exp > now ? { id: p.sid, expiresAt: p.exp, by: p.by } : undefined
}

/** The `Set-Cookie` header of a session (or, with `value` empty, of signing out). */
export const sessionCookie = (value: string, options: { readonly secure: boolean; readonly maxAgeSeconds: number }) =>
  `${COOKIE}=${value}; Path=/console; HttpOnly; SameSite=Strict; Max-Age=${options.maxAgeSeconds}${options.secure ? "; Secure" : ""}`

/** The CSRF token of a session's forms. */
export const csrfToken = (secret: Redacted.Redacted<string>, session: Session) => mac(secret, "csrf", session.id)

/** Whether a form's CSRF token belongs to the session. */
export const csrfMatches = (secret: Redacted.Redacted<string>, session: Session, token: string) =>
  sameMac(token, csrfToken(secret, session))

/**
 * Records a sign-in link's nonce as used; false when it was used before (a replayed link). One statement, so two
 * requests racing with the same link cannot both win. Old nonces are pruned once their links have expired.
 */
export const useNonce = (sql: SqlClient.SqlClient, nonce: string, expiresAt: Date, now: Date) =>
  Effect.gen(function*() {
    yield* sql`DELETE FROM kaiwa_jobs.console_nonces WHERE expires_at < ${now}`
    const rows = yield* SqlSchema.findAll({
      Request: Schema.String,
      Result: Schema.Struct({ nonce: Schema.String }),
      execute: (n) =>
        sql`INSERT INTO kaiwa_jobs.console_nonces (nonce, expires_at, used_at) VALUES (${n}, ${expiresAt}, ${now})
          ON CONFLICT (nonce) DO NOTHING RETURNING nonce`
    })(nonce)
    return rows.length === 1
  })
