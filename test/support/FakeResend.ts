/**
 * A fake Resend HTTP API on 127.0.0.1 for tests and benchmarks, driven through the real `resend` SDK (point its
 * `baseUrl` at `fake.url`). It implements what the Mailer relies on: bearer auth, `POST /emails/batch` in strict
 * and permissive validation, `POST /emails`, idempotency keys (replay, 409 for a different payload, 409 while the
 * first request is in flight), a per-key sliding-window rate limit with Resend's headers, quotas, and injectable
 * faults (latency, 5xx, 429 storms, a socket dropped after the emails were accepted). Randomness comes from a
 * seeded PRNG so a run is reproducible; ids are `fake-<n>`.
 */
import { createHash } from "node:crypto"
import { createServer, type IncomingMessage, type ServerResponse } from "node:http"
import type { AddressInfo } from "node:net"

/** Faults and limits; mutate `fake.faults` between or during requests. */
export interface FakeResendFaults {
  /** Processing time of a request that reaches the send step (auth, rate-limit and 409 answers are immediate). */
  latencyMs: number
  /** Requests per second per API key (sliding 1 s window); `null` means unlimited. */
  rateLimitPerSecond: number | null
  /** Probability (0..1) that a request is answered 500 before anything is accepted. */
  fail5xxRate: number
  /** Probability (0..1) that, after accepting and recording the emails, the socket is destroyed unanswered. */
  dropAfterAcceptRate: number
  /** One-shot: drop the next request that accepts emails (then resets itself to false). */
  dropNextAfterAccept: boolean
  /** Answer the next N requests 429 `rate_limit_exceeded`, with `retry-after: storm429RetryAfterSeconds`. */
  storm429: number
  /** The `retry-after` sent during a 429 storm. */
  storm429RetryAfterSeconds: number
  /** A quota that is exhausted: every request is answered 429 daily/monthly_quota_exceeded. */
  quota: "daily" | "monthly" | null
  /** Addresses treated as invalid (compared lower-case), on top of syntactically invalid ones. */
  invalidAddresses: Set<string>
}

/** Options of `startFakeResend`. */
export interface FakeResendOptions {
  /** The only API key it accepts (default `re_test_fake_key`). */
  readonly apiKey?: string
  /** PRNG seed for the fault rates (default 42). */
  readonly seed?: number
  readonly faults?: Partial<FakeResendFaults>
}

/** One email the fake accepted (and would have delivered). */
export interface AcceptedEmail {
  readonly id: string
  readonly from: string
  readonly to: ReadonlyArray<string>
  readonly subject: string
  readonly html: string | undefined
  readonly text: string | undefined
  readonly replyTo: ReadonlyArray<string> | undefined
  readonly headers: Readonly<Record<string, string>>
  readonly tags: ReadonlyArray<{ readonly name: string; readonly value: string }>
  readonly idempotencyKey: string | null
  /** The request (1-based, in arrival order) that accepted it. */
  readonly request: number
}

/** One request as the fake saw it. */
export interface FakeRequestRecord {
  readonly n: number
  readonly method: string
  readonly path: string
  /** Epoch ms of arrival (real clock). */
  readonly at: number
  readonly idempotencyKey: string | null
  readonly batchValidation: string | null
  /** The status answered, or "dropped" when the socket was destroyed. */
  status: number | "dropped" | null
  /** The Resend error name answered, if any. */
  errorName: string | null
}

/** Counters of what the fake answered. */
export interface FakeResendStats {
  /** 429 `rate_limit_exceeded` from the sliding window. */
  rateLimited429: number
  /** 429 `rate_limit_exceeded` from `storm429`. */
  storm429: number
  /** 429 daily/monthly quota answers. */
  quota429: number
  /** 500 answers injected by `fail5xxRate`. */
  server5xx: number
  /** Sockets destroyed after accepting. */
  dropped: number
  /** Stored responses replayed for a repeated idempotency key. */
  idempotentReplays: number
  /** 409 `invalid_idempotent_request` answers. */
  idempotencyConflicts: number
  /** 409 `concurrent_idempotent_requests` answers. */
  concurrentConflicts: number
  /** 401/403 answers. */
  authFailures: number
  /** 422 answers. */
  validationFailures: number
}

/** A running fake Resend API. */
export interface FakeResend {
  /** Base URL to give the SDK (`new Resend(key, { baseUrl: fake.url })`). */
  readonly url: string
  readonly apiKey: string
  /** Mutable fault configuration. */
  readonly faults: FakeResendFaults
  /** Every email accepted, in order. */
  readonly accepted: ReadonlyArray<AcceptedEmail>
  /** Every request received, in order. */
  readonly log: ReadonlyArray<FakeRequestRecord>
  /** Number of HTTP requests received. */
  readonly requests: number
  /** Total 429 answers of any kind. */
  readonly total429: number
  readonly stats: FakeResendStats
  /** How many times each recipient address was accepted. */
  readonly acceptedCountByRecipient: () => ReadonlyMap<string, number>
  /**
   * Holds the next request that reaches the send step (after `latencyMs`) until the returned function is called,
   * or the fake closes. Tests use it to keep a request in flight for exactly as long as they need, whatever the
   * machine's speed (a fixed latency once let a request finish before the step it was meant to overlap).
   */
  readonly holdNext: () => () => void
  readonly close: () => Promise<void>
}

const MAX_BATCH = 100
const MAX_RECIPIENTS = 50
const IDEMPOTENCY_TTL_MS = 24 * 60 * 60 * 1000
const MAX_IDEMPOTENCY_KEY = 256
const WINDOW_MS = 1000

// A deliberately plain address check: local@domain.tld, optionally inside "Name <...>".
const ADDRESS = /^[^\s@<>()",;:]+@[^\s@<>()",;:]+\.[A-Za-z]{2,}$/
const addressOf = (value: string): string | null => {
  const trimmed = value.trim()
  const named = /^[^<>]*<([^<>]+)>$/.exec(trimmed)
  const address = named ? named[1]!.trim() : trimmed
  return ADDRESS.test(address) ? address : null
}

/** mulberry32: tiny deterministic PRNG (also the fault harness's, so a seed replays a whole trial). */
export const prng = (seed: number) => {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

interface StoredIdempotency {
  readonly hash: string
  readonly expiresAt: number
  /** null while the first request with the key is still being processed. */
  response: { readonly status: number; readonly body: unknown } | null
}

interface Answer {
  readonly status: number
  readonly body: unknown
  readonly headers?: Record<string, string>
}

const errorBody = (statusCode: number, name: string, message: string) => ({ statusCode, name, message })
const error = (statusCode: number, name: string, message: string, headers?: Record<string, string>): Answer =>
  headers === undefined
    ? { status: statusCode, body: errorBody(statusCode, name, message) }
    : { status: statusCode, body: errorBody(statusCode, name, message), headers }

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

const readBody = (req: IncomingMessage): Promise<string> =>
  new Promise((resolve, reject) => {
    const chunks: Array<Buffer> = []
    req.on("data", (chunk: Buffer) => chunks.push(chunk))
    req.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")))
    req.on("error", reject)
  })

const isRecord = (u: unknown): u is Record<string, unknown> => typeof u === "object" && u !== null && !Array.isArray(u)

/** Checks one email as the API would; returns the reason it is invalid, or the normalised email. */
const validateEmail = (
  raw: unknown,
  invalid: ReadonlySet<string>
): { readonly ok: false; readonly message: string } | {
  readonly ok: true
  readonly email: Omit<AcceptedEmail, "id" | "idempotencyKey" | "request">
} => {
  if (!isRecord(raw)) return { ok: false, message: "The email must be an object." }
  const { from, to, subject, html, text } = raw
  if (typeof from !== "string" || from.trim() === "") {
    return { ok: false, message: "The `from` field is required." }
  }
  if (addressOf(from) === null) {
    return { ok: false, message: "Invalid `from` field. The email address needs to follow the `email@example.com` or `Name <email@example.com>` format." }
  }
  const recipients = typeof to === "string" ? [to] : Array.isArray(to) ? to : null
  if (recipients === null || recipients.length === 0) return { ok: false, message: "The `to` field is required." }
  if (recipients.length > MAX_RECIPIENTS) return { ok: false, message: `The \`to\` field must have at most ${MAX_RECIPIENTS} recipients.` }
  for (const r of recipients) {
    if (typeof r !== "string") return { ok: false, message: "Invalid `to` field." }
    const address = addressOf(r)
    if (address === null || invalid.has(address.toLowerCase())) {
      return { ok: false, message: `Invalid \`to\` field. The email address needs to follow the \`email@example.com\` or \`Name <email@example.com>\` format. Received: ${r}` }
    }
  }
  if (typeof subject !== "string" || subject === "") return { ok: false, message: "The `subject` field is required." }
  if (typeof html !== "string" && typeof text !== "string") {
    return { ok: false, message: "Either `html` or `text` must be provided." }
  }
  const replyTo = raw["reply_to"]
  const replyList = typeof replyTo === "string" ? [replyTo] : Array.isArray(replyTo) ? replyTo.map(String) : undefined
  const headers = isRecord(raw["headers"])
    ? Object.fromEntries(Object.entries(raw["headers"]).map(([k, v]) => [k, String(v)]))
    : {}
  const tags = Array.isArray(raw["tags"])
    ? raw["tags"].filter(isRecord).map((t) => ({ name: String(t["name"]), value: String(t["value"]) }))
    : []
  return {
    ok: true,
    email: {
      from,
      to: recipients as ReadonlyArray<string>,
      subject,
      html: typeof html === "string" ? html : undefined,
      text: typeof text === "string" ? text : undefined,
      replyTo: replyList,
      headers,
      tags
    }
  }
}

/** Starts the fake on an ephemeral port of 127.0.0.1. */
export const startFakeResend = async (options: FakeResendOptions = {}): Promise<FakeResend> => {
  const apiKey = options.apiKey ?? "re_test_fake_key"
  const random = prng(options.seed ?? 42)
  let nextHold: Promise<void> | null = null
  const releases: Array<() => void> = []
  const faults: FakeResendFaults = {
    latencyMs: 0,
    rateLimitPerSecond: null,
    fail5xxRate: 0,
    dropAfterAcceptRate: 0,
    dropNextAfterAccept: false,
    storm429: 0,
    storm429RetryAfterSeconds: 1,
    quota: null,
    invalidAddresses: new Set(),
    ...options.faults
  }
  const accepted: Array<AcceptedEmail> = []
  const log: Array<FakeRequestRecord> = []
  const stats: FakeResendStats = {
    rateLimited429: 0,
    storm429: 0,
    quota429: 0,
    server5xx: 0,
    dropped: 0,
    idempotentReplays: 0,
    idempotencyConflicts: 0,
    concurrentConflicts: 0,
    authFailures: 0,
    validationFailures: 0
  }
  const windows = new Map<string, Array<number>>()
  const idempotency = new Map<string, StoredIdempotency>()
  let nextId = 0

  const invalidSet = () => new Set([...faults.invalidAddresses].map((a) => a.toLowerCase()))

  /** Sliding-window check; admitted requests are recorded, refused ones are not. */
  const rateLimit = (key: string, now: number): Answer | Record<string, string> => {
    const limit = faults.rateLimitPerSecond
    if (limit === null) return {}
    const recent = (windows.get(key) ?? []).filter((t) => t > now - WINDOW_MS)
    windows.set(key, recent)
    if (recent.length >= limit) {
      const resetSeconds = Math.max(1, Math.ceil((recent[0]! + WINDOW_MS - now) / 1000))
      stats.rateLimited429++
      return error(429, "rate_limit_exceeded", "Too many requests. You can only make " + limit + " requests per second.", {
        "ratelimit-limit": String(limit),
        "ratelimit-remaining": "0",
        "ratelimit-reset": String(resetSeconds),
        "retry-after": String(resetSeconds)
      })
    }
    recent.push(now)
    return {
      "ratelimit-limit": String(limit),
      "ratelimit-remaining": String(limit - recent.length),
      "ratelimit-reset": "1"
    }
  }

  const accept = (
    email: Omit<AcceptedEmail, "id" | "idempotencyKey" | "request">,
    idempotencyKey: string | null,
    request: number
  ): string => {
    const id = `fake-${++nextId}`
    accepted.push({ ...email, id, idempotencyKey, request })
    return id
  }

  /** The send step proper: validation and acceptance. Runs once per idempotency key. */
  const sendStep = (path: string, body: unknown, mode: string, idempotencyKey: string | null, n: number): Answer => {
    const invalid = invalidSet()
    if (path === "/emails") {
      const checked = validateEmail(body, invalid)
      if (!checked.ok) {
        stats.validationFailures++
        return error(422, "validation_error", checked.message)
      }
      return { status: 200, body: { id: accept(checked.email, idempotencyKey, n) } }
    }
    if (!Array.isArray(body)) {
      stats.validationFailures++
      return error(422, "validation_error", "The request body must be an array of emails.")
    }
    if (body.length === 0 || body.length > MAX_BATCH) {
      stats.validationFailures++
      return error(422, "validation_error", `A batch must contain between 1 and ${MAX_BATCH} emails.`)
    }
    const checked = body.map((raw) => validateEmail(raw, invalid))
    if (mode === "strict") {
      const firstBad = checked.findIndex((c) => !c.ok)
      if (firstBad >= 0) {
        const bad = checked[firstBad]!
        stats.validationFailures++
        return error(422, "validation_error", `emails[${firstBad}]: ${bad.ok ? "" : bad.message}`)
      }
    }
    const data: Array<{ id: string }> = []
    const errors: Array<{ index: number; message: string }> = []
    checked.forEach((c, index) => {
      if (c.ok) data.push({ id: accept(c.email, idempotencyKey, n) })
      else errors.push({ index, message: c.message })
    })
    return { status: 200, body: mode === "permissive" ? { data, errors } : { data } }
  }

  const respond = (res: ServerResponse, record: FakeRequestRecord, answer: Answer, extra: Record<string, string>) => {
    record.status = answer.status
    const body = answer.body as { name?: unknown }
    record.errorName = answer.status >= 400 && typeof body?.name === "string" ? body.name : null
    if (res.destroyed || res.writableEnded) return
    res.writeHead(answer.status, { "content-type": "application/json", ...extra, ...answer.headers })
    res.end(JSON.stringify(answer.body))
  }

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    // A client warming up its connection (the mailer's HEAD before its first call): no API request, not recorded.
    if (req.method === "HEAD") {
      res.writeHead(404)
      res.end()
      return
    }
    const n = log.length + 1
    const at = Date.now()
    const path = (req.url ?? "/").split("?")[0]!.replace(/\/+$/, "")
    const idempotencyKey = req.headers["idempotency-key"] === undefined ? null : String(req.headers["idempotency-key"])
    const modeHeader = req.headers["x-batch-validation"]
    const record: FakeRequestRecord = {
      n,
      method: req.method ?? "GET",
      path,
      at,
      idempotencyKey,
      batchValidation: modeHeader === undefined ? null : String(modeHeader),
      status: null,
      errorName: null
    }
    log.push(record)
    const raw = await readBody(req)

    if (path !== "/emails" && path !== "/emails/batch") {
      return respond(res, record, error(404, "not_found", "The requested endpoint does not exist."), {})
    }
    if (req.method !== "POST") {
      return respond(res, record, error(405, "method_not_allowed", "Method is not allowed for the requested path."), {})
    }

    const auth = req.headers["authorization"]
    const token = typeof auth === "string" && auth.startsWith("Bearer ") ? auth.slice("Bearer ".length).trim() : ""
    if (token === "") {
      stats.authFailures++
      return respond(res, record, error(401, "missing_api_key", "Missing API key in the authorization header."), {})
    }
    if (token !== apiKey) {
      stats.authFailures++
      return respond(res, record, error(403, "invalid_api_key", "API key is invalid"), {})
    }

    if (faults.quota !== null) {
      stats.quota429++
      return respond(
        res,
        record,
        faults.quota === "daily"
          ? error(429, "daily_quota_exceeded", "You have reached your daily email sending quota.")
          : error(429, "monthly_quota_exceeded", "You have reached your monthly email sending quota."),
        {}
      )
    }
    if (faults.storm429 > 0) {
      faults.storm429--
      stats.storm429++
      const seconds = String(faults.storm429RetryAfterSeconds)
      return respond(
        res,
        record,
        error(429, "rate_limit_exceeded", "Too many requests.", {
          "ratelimit-limit": String(faults.rateLimitPerSecond ?? 2),
          "ratelimit-remaining": "0",
          "ratelimit-reset": seconds,
          "retry-after": seconds
        }),
        {}
      )
    }
    const limited = rateLimit(apiKey, at)
    if ("status" in limited && typeof limited.status === "number") {
      return respond(res, record, limited as Answer, {})
    }
    const rateHeaders = limited as Record<string, string>

    let body: unknown
    try {
      body = JSON.parse(raw)
    } catch {
      stats.validationFailures++
      return respond(res, record, error(422, "validation_error", "Invalid JSON body."), rateHeaders)
    }
    const mode = path === "/emails/batch" ? String(modeHeader ?? "strict") : "strict"
    if (mode !== "strict" && mode !== "permissive") {
      stats.validationFailures++
      return respond(res, record, error(422, "validation_error", "x-batch-validation must be strict or permissive."), rateHeaders)
    }

    // Idempotency: keyed per API key; the hash covers the endpoint, the mode and the payload.
    let stored: StoredIdempotency | undefined
    const storeKey = idempotencyKey === null ? null : `${apiKey}\u0000${idempotencyKey}`
    if (idempotencyKey !== null && storeKey !== null) {
      if (idempotencyKey.length === 0 || idempotencyKey.length > MAX_IDEMPOTENCY_KEY) {
        return respond(res, record, error(400, "invalid_idempotency_key", `The key must be between 1-${MAX_IDEMPOTENCY_KEY} chars.`), rateHeaders)
      }
      const hash = createHash("sha256").update(`${path}\n${mode}\n${JSON.stringify(body)}`).digest("hex")
      const existing = idempotency.get(storeKey)
      if (existing !== undefined && existing.expiresAt > at) {
        if (existing.hash !== hash) {
          stats.idempotencyConflicts++
          return respond(
            res,
            record,
            error(409, "invalid_idempotent_request", "Same idempotency key used with a different request payload."),
            rateHeaders
          )
        }
        if (existing.response === null) {
          stats.concurrentConflicts++
          return respond(
            res,
            record,
            error(409, "concurrent_idempotent_requests", "Same idempotency key used while original request is still in progress."),
            rateHeaders
          )
        }
        stats.idempotentReplays++
        return respond(res, record, existing.response, rateHeaders)
      }
      stored = { hash, expiresAt: at + IDEMPOTENCY_TTL_MS, response: null }
      idempotency.set(storeKey, stored)
    }

    if (faults.latencyMs > 0) await sleep(faults.latencyMs)
    const gate = nextHold
    nextHold = null
    if (gate !== null) await gate

    if (faults.fail5xxRate > 0 && random() < faults.fail5xxRate) {
      stats.server5xx++
      if (storeKey !== null) idempotency.delete(storeKey)
      return respond(res, record, error(500, "internal_server_error", "An unexpected error occurred."), rateHeaders)
    }

    const answer = sendStep(path, body, mode, idempotencyKey, n)
    if (stored !== undefined && storeKey !== null) {
      // Only successful responses are kept for replay; a refused request leaves the key free.
      if (answer.status === 200) stored.response = { status: answer.status, body: answer.body }
      else idempotency.delete(storeKey)
    }

    const acceptedSomething = answer.status === 200
    if (acceptedSomething) {
      const dropOnce = faults.dropNextAfterAccept
      if (dropOnce) faults.dropNextAfterAccept = false
      if (dropOnce || (faults.dropAfterAcceptRate > 0 && random() < faults.dropAfterAcceptRate)) {
        stats.dropped++
        record.status = "dropped"
        req.socket.destroy()
        return
      }
    }
    return respond(res, record, answer, rateHeaders)
  }

  const server = createServer((req, res) => {
    handle(req, res).catch((cause: unknown) => {
      if (!res.headersSent && !res.destroyed) {
        res.writeHead(500, { "content-type": "application/json" })
        res.end(JSON.stringify(errorBody(500, "internal_server_error", `fake: ${String(cause)}`)))
      }
    })
  })
  // Keep-alive from the SDK's fetch should not hold `close()` open.
  server.keepAliveTimeout = 1000

  await new Promise<void>((resolve, reject) => {
    server.once("error", reject)
    server.listen(0, "127.0.0.1", () => resolve())
  })
  const { port } = server.address() as AddressInfo

  return {
    url: `http://127.0.0.1:${port}`,
    apiKey,
    faults,
    accepted,
    log,
    get requests() {
      return log.length
    },
    get total429() {
      return stats.rateLimited429 + stats.storm429 + stats.quota429
    },
    stats,
    acceptedCountByRecipient: () => {
      const counts = new Map<string, number>()
      for (const email of accepted) {
        for (const to of email.to) counts.set(to, (counts.get(to) ?? 0) + 1)
      }
      return counts
    },
    holdNext: () => {
      let release = () => {}
      const held = new Promise<void>((resolve) => (release = resolve))
      nextHold = held
      releases.push(release)
      return release
    },
    close: () =>
      new Promise<void>((resolve, reject) => {
        for (const release of releases) release()
        server.close((err) => (err ? reject(err) : resolve()))
        server.closeAllConnections()
      })
  }
}
