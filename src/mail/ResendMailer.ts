/**
 * The live Mailer on Resend's batch API, through the official `resend` SDK. One Batch is one
 * `POST /emails/batch` call in permissive validation (one bad address does not sink the other 99) carrying the
 * batch's `Idempotency-Key`, so a retry, or a batch resumed by another run, is answered from Resend's stored
 * response instead of being delivered twice. Calls are spaced by a client-side rate limit (src/mail/RateLimiter.ts):
 * in live runs the one every process shares through PostgreSQL (src/mail/SharedRateLimiter.ts), otherwise one for
 * this process's fibers; a 429 waits for `retry-after` (holding back every caller of the limiter, and, in-process,
 * widening the spacing a little), and so does a `ratelimit-remaining: 0` that our own pace does not explain; 5xx,
 * network failures, timeouts and `concurrent_idempotent_requests` retry with jittered exponential
 * backoff until the batch's deadline; authentication, quota, idempotency conflicts and whole-batch validation
 * fail at once.
 * The module owns its settings (`config`: RESEND_API_KEY, RESEND_RPS, RESEND_RPS_SCOPE, RESEND_TIMEOUT,
 * RESEND_BASE_URL) and `layerConfig` builds the live layer from them.
 * The API key is unwrapped only to construct the SDK client, and no message built here contains it.
 * SDK facts this relies on (resend 6.38): it never throws but resolves `{ data, error, headers }`; a network
 * failure is `application_error` with `statusCode: null`; it has no timeout or retry of its own; it passes
 * `signal` through to `fetch`; it prints errors to the console only when `RESEND_DEBUG=true` (read at construction).
 */
import { Clock, Config, Data, Duration, Effect, Layer, Option, Redacted, Result, Schedule, Schema } from "effect"
import * as SchemaIssue from "effect/SchemaIssue"
import { SqlClient } from "effect/sql"
import { type CreateBatchEmailOptions, type ErrorResponse, Resend } from "resend"
import { hasControlCharacter, isHttpUrl, parseDuration } from "../config/Config.ts"
import { secretSetting } from "../config/Setting.ts"
import { type Batch, type DeliveryResult, Mailer, MailerError, type OutgoingEmail, MAX_BATCH } from "./Mailer.ts"
import { makeRateLimiter, type RateLimiter, retryAfterOf } from "./RateLimiter.ts"
import * as SharedRateLimiter from "./SharedRateLimiter.ts"

/** What `make` needs; `layerConfig` reads it from configuration. */
export interface ResendMailerOptions {
  readonly apiKey: Redacted.Redacted<string>
  /** Provider calls per second (Resend's default team limit is 2); fractional values are allowed. */
  readonly rps: number
  /**
   * The limiter every call waits on. Default: one for this process only (`makeRateLimiter(rps)`), right when one
   * process sends; live runs pass the one shared through PostgreSQL (src/mail/SharedRateLimiter.ts), so that any
   * number of workers together stay under `rps` (docs/decisions.md, Mail and pages).
   */
  readonly limiter?: RateLimiter | undefined
  /** Longest wait for one SDK call before it counts as a network failure and is retried. */
  readonly timeout: Duration.Input
  /** API base URL; defaults to Resend's. Tests point it at the fake server. */
  readonly baseUrl?: string | undefined
}

/** Resend's production API. Passed explicitly so the SDK never reads `RESEND_BASE_URL` behind Config's back. */
export const DEFAULT_BASE_URL = "https://api.resend.com"

/** Resend keeps idempotency keys of at most this many characters (for 24 hours). */
export const MAX_IDEMPOTENCY_KEY = 256

/** How long a batch without its own `deadline` keeps retrying, counted from its first attempt. */
export const DEFAULT_SEND_WINDOW: Duration.Duration = Duration.minutes(10)

/** Backoff between attempts of one batch: 250 ms doubling, capped at 30 s, each delay jittered to 80-120 %. */
export const retryBackoff = Schedule.min([Schedule.exponential("250 millis"), Schedule.spaced("30 seconds")]).pipe(
  Schedule.jittered
)

// ---- settings ----

/** The settings `config` reads. */
export interface ResendMailerConfig {
  readonly apiKey: Redacted.Redacted<string>
  readonly rps: number
  /** `shared`: one budget for every process on the database (docs/decisions.md, Mail and pages); `process`: this process's own. */
  readonly rpsScope: "shared" | "process"
  readonly timeout: Duration.Duration
  readonly baseUrl: string
}

/** A ConfigError naming the variable (`at ["NAME"]`, which the CLI reports) and the problem, never the value. */
const invalidSetting = (name: string, problem: string) =>
  new Config.ConfigError(new Schema.SchemaError(new SchemaIssue.Pointer([name], new SchemaIssue.InvalidValue({ message: problem }))))

/**
 * A plain setting under the rules of src/config/Config.ts: control characters refused, surrounding spaces trimmed,
 * blank counting as unset (`fallback`); `parse` gives the value or the problem.
 */
const setting = <A>(name: string, fallback: A, parse: (s: string) => Result.Result<A, string>): Config.Config<A> =>
  Config.option(Config.String(name)).pipe(Config.mapEffect((raw) => {
    const value = Option.getOrElse(raw, () => "")
    if (hasControlCharacter(value)) return Effect.fail(invalidSetting(name, "contains a control character (a line break, a tab or similar)"))
    if (value.trim() === "") return Effect.succeed(fallback)
    return Result.match(parse(value.trim()), {
      onSuccess: Effect.succeed,
      onFailure: (problem) => Effect.fail(invalidSetting(name, problem))
    })
  }))

/** A required secret, read as every secret is (`Setting.secretSetting`). */
const secret = (name: string): Config.Config<Redacted.Redacted<string>> =>
  secretSetting(name).pipe(Config.mapEffect(Option.match({
    onNone: () => Effect.fail(invalidSetting(name, "is required to send email")),
    onSome: Effect.succeed
  })))

const positiveNumber = (s: string): Result.Result<number, string> =>
  Number.isFinite(Number(s)) && Number(s) > 0 ? Result.succeed(Number(s)) : Result.fail("must be a positive number")

const rpsScope = (s: string): Result.Result<"shared" | "process", string> =>
  s === "shared" || s === "process" ? Result.succeed(s) : Result.fail("must be shared or process")

const timeoutOf = (s: string): Result.Result<Duration.Duration, string> => {
  const duration = parseDuration(s)
  return duration === undefined ? Result.fail("must be a duration such as 30s") : Result.succeed(duration)
}

/** A base URL paths are appended to: http(s), no query, fragment or credentials; trailing slashes dropped. */
const baseUrlOf = (s: string): Result.Result<string, string> => {
  const url = isHttpUrl(s) ? new URL(s) : undefined
  const plain = url !== undefined && url.search === "" && url.hash === "" && url.username === "" && url.password === "" &&
    !s.includes("?") && !s.includes("#")
  return plain ? Result.succeed(s.replace(/\/+$/, "")) : Result.fail("must be an absolute http(s) URL without a query or fragment")
}

/**
 * The mailer's settings, read and checked as src/config/Config.ts checks them: `RESEND_API_KEY` (required),
 * `RESEND_RPS` (2), `RESEND_RPS_SCOPE` (`shared`), `RESEND_TIMEOUT` (30 s), `RESEND_BASE_URL` (Resend's API).
 */
export const config: Config.Config<ResendMailerConfig> = Config.all({
  apiKey: secret("RESEND_API_KEY"),
  rps: setting("RESEND_RPS", 2, positiveNumber),
  rpsScope: setting<"shared" | "process">("RESEND_RPS_SCOPE", "shared", rpsScope),
  timeout: setting("RESEND_TIMEOUT", Duration.seconds(30), timeoutOf),
  baseUrl: setting("RESEND_BASE_URL", DEFAULT_BASE_URL, baseUrlOf)
})

// ---- the provider's answers ----

/** The body of a successful batch call; `errors` is present in permissive mode only. */
const BatchResponse = Schema.Struct({
  data: Schema.Array(Schema.Struct({ id: Schema.String })),
  errors: Schema.optional(Schema.Array(Schema.Struct({ index: Schema.Int, message: Schema.String })))
})
type BatchResponse = typeof BatchResponse.Type
const decodeBatchResponse = Schema.decodeUnknownEffect(BatchResponse)

// What Resend's per-email validation messages name: "Invalid `to` field. The email address needs to follow the
// `email@example.com` or `Name <email@example.com>` format." is about the recipient; "Invalid `from` field. ..." (the
// same words for the sender), a missing subject, a bad header or tag is not. `reply_to` must not pass for `to`.
const TO_FIELD = /(?<![\w`'"])[`'"]?to[`'"]?\s+field/i
const OTHER_FIELD = /[`'"](?:from|reply_to|replyTo|subject|html|text|headers?|tags?|attachments?|scheduled_at)[`'"]|\bfrom field|\bsender\b/i

/**
 * True when a per-email error is about that email's recipient (its `to` address), and only then: the address may
 * be suppressed. Any other error (the sender, the content, the account, or a message we do not recognise) says
 * nothing about the address.
 */
export const isAboutRecipient = (message: string): boolean => TO_FIELD.test(message) && !OTHER_FIELD.test(message)

/**
 * Maps a permissive batch response onto the batch's order. `data` lists only the accepted emails, in batch
 * order, so the k-th id belongs to the k-th index that is not in `errors`. An error about the recipient is
 * `Rejected`; any other is `Refused` (see `isAboutRecipient`). Returns a description of the problem when the
 * response cannot be reconciled with a batch of `size` emails.
 */
export const deliveryResults = (size: number, response: BatchResponse): ReadonlyArray<DeliveryResult> | string => {
  const rejected = new Map<number, string>()
  for (const e of response.errors ?? []) {
    if (e.index < 0 || e.index >= size || rejected.has(e.index)) return `error index ${e.index} is out of range or repeated`
    rejected.set(e.index, e.message)
  }
  if (response.data.length + rejected.size !== size) {
    return `${response.data.length} ids and ${rejected.size} errors do not add up to ${size} emails`
  }
  let next = 0
  return Array.from({ length: size }, (_, i): DeliveryResult => {
    const reason = rejected.get(i)
    if (reason === undefined) return { _tag: "Accepted", providerId: response.data[next++]!.id }
    return isAboutRecipient(reason) ? { _tag: "Rejected", reason } : { _tag: "Refused", reason }
  })
}

/** One failed call: the error the batch would end with, and how long Resend asked us to wait (429). */
class AttemptFailed extends Data.TaggedError("AttemptFailed")<{
  readonly error: MailerError
  readonly retryAfter: Duration.Duration | undefined
}> {}

const failed = (kind: MailerError["kind"], retryable: boolean, message: string, retryAfter?: Duration.Duration) =>
  new AttemptFailed({ error: new MailerError({ kind, retryable, message }), retryAfter })

/** Sorts a Resend error into retry now, retry later, or stop. Built only from the error body, never the key. */
const classify = (error: ErrorResponse, headers: Record<string, string> | null): AttemptFailed => {
  const status = error.statusCode
  const what = `Resend answered ${status ?? "no status (network failure)"} ${error.name}: ${error.message}`
  switch (error.name) {
    case "missing_api_key":
    case "invalid_api_key":
    case "restricted_api_key":
      return failed("auth", false, what)
    case "daily_quota_exceeded":
    case "monthly_quota_exceeded":
      return failed("quota", false, what)
    case "invalid_idempotent_request":
      return failed("idempotency", false, `${what} (the key was already used for a different batch; nothing sent)`)
    case "concurrent_idempotent_requests":
      return failed("transient", true, what)
    case "rate_limit_exceeded":
      return failed("transient", true, what, retryAfterOf(headers))
  }
  if (status === null) return failed("transient", true, what) // outcome unknown: the same key makes a retry safe
  if (status === 401 || status === 403) return failed("auth", false, what)
  if (status === 429) return failed("transient", true, what, retryAfterOf(headers))
  if (status >= 500) return failed("transient", true, what)
  return failed("invalid", false, what)
}

const toResendEmail = (email: OutgoingEmail): CreateBatchEmailOptions => ({
  from: email.from,
  to: email.to,
  subject: email.subject,
  html: email.html,
  text: email.text,
  headers: { ...email.headers },
  tags: email.tags.map((t) => ({ name: t.name, value: t.value })),
  ...(email.replyTo !== undefined ? { replyTo: email.replyTo } : {})
})

/** Why a batch cannot be handed over at all, checked before any call; `undefined` when it can. */
const invalidBatch = (batch: Batch): MailerError | undefined => {
  const invalid = (message: string) => new MailerError({ kind: "invalid", retryable: false, message })
  if (batch.emails.length > MAX_BATCH) return invalid(`a batch holds at most ${MAX_BATCH} emails (got ${batch.emails.length})`)
  // The SDK silently drops an empty key (no header, no protection), and Resend refuses one over 256 characters.
  if (batch.idempotencyKey.trim() === "" || batch.idempotencyKey.length > MAX_IDEMPOTENCY_KEY) {
    return invalid(`a batch needs an idempotency key of 1 to ${MAX_IDEMPOTENCY_KEY} characters (got ${batch.idempotencyKey.length})`)
  }
  return undefined
}

/** The SDK client; the key is unwrapped here and nowhere else. */
const makeClient = (options: ResendMailerOptions) =>
  Effect.sync(() => {
    const key = Redacted.value(options.apiKey)
    // An empty key would make the SDK fall back to process.env.RESEND_API_KEY.
    if (key.trim() === "") throw new Error("the Resend API key is empty")
    return new Resend(key, { baseUrl: options.baseUrl ?? DEFAULT_BASE_URL })
  })

/**
 * A process's first call through Node's fetch is tens of milliseconds slower than the next ones (the HTTP client
 * loads and opens its first connection; TLS adds more against the real API), so it reaches the provider later
 * than its turn: with other processes sending on time, that is one call too many in the provider's window.
 * An unauthenticated HEAD of the base URL, once, before the first turn, pays that cost outside the limit
 * (a request without a key cannot count against the team's limit). Its outcome does not matter.
 */
const makeWarmUp = (baseUrl: string) =>
  Effect.cached(
    Effect.tryPromise((signal) => fetch(baseUrl, { method: "HEAD", signal })).pipe(
      Effect.timeout("2 seconds"),
      Effect.ignore
    )
  )

/** What one attempt needs: the client, the limiter, the per-call timeout, and the cached warm-up. */
interface Caller {
  readonly client: Resend
  readonly limiter: RateLimiter
  readonly timeout: Duration.Duration
  readonly warmUp: Effect.Effect<void>
}

/** One SDK call under its timeout; a rejection or a timeout is a transient failure (the key makes a retry safe). */
const call = (caller: Caller, key: string, payload: Array<CreateBatchEmailOptions>) =>
  Effect.tryPromise({
    try: (signal) => caller.client.batch.send(payload, { idempotencyKey: key, batchValidation: "permissive", signal }),
    // The SDK resolves errors rather than rejecting; a rejection is unexpected, and as unknown as a network error.
    catch: (cause) => failed("transient", true, `the Resend SDK failed: ${cause instanceof Error ? cause.message : "unknown error"}`)
  }).pipe(
    Effect.timeout(caller.timeout),
    Effect.catchTag("TimeoutError", () =>
      Effect.fail(failed("transient", true, `Resend did not answer within ${Duration.format(caller.timeout)}`)))
  )

/** Tells the limiter what a refused call means for the pace, logs an idempotency conflict, and fails. */
const refused = Effect.fnUntraced(function*(
  caller: Caller,
  key: string,
  error: ErrorResponse,
  headers: Record<string, string> | null
) {
  const failure = classify(error, headers)
  // What the 429 says about the pace first (the shared limiter may yield to another sender), then the pause,
  // which voids every turn reserved before it: they are taken again at the new pace.
  if (failure.error.kind === "transient" && error.statusCode === 429) yield* caller.limiter.answered({ refused: true, headers })
  if (failure.retryAfter !== undefined) yield* caller.limiter.pauseFor(failure.retryAfter)
  if (failure.error.kind === "idempotency") {
    yield* Effect.logError(
      "IDEMPOTENCY CONFLICT: Resend refused a batch whose key was already used with a different payload. " +
        "Nothing was sent; a batch must never be rebuilt under an old key."
    ).pipe(Effect.annotateLogs({ idempotencyKey: key, provider: failure.error.message }))
  }
  return yield* failure
})

/** One attempt of a batch: warm up, wait for a turn, call, and read the answer in the batch's order. */
const attempt = Effect.fnUntraced(function*(caller: Caller, key: string, payload: Array<CreateBatchEmailOptions>) {
  yield* caller.warmUp
  yield* caller.limiter.take
  const response = yield* call(caller, key, payload)
  if (response.error !== null) return yield* refused(caller, key, response.error, response.headers)
  yield* caller.limiter.answered({ refused: false, headers: response.headers })
  const body = yield* decodeBatchResponse(response.data).pipe(Effect.orDie)
  const results = deliveryResults(payload.length, body)
  if (typeof results === "string") return yield* Effect.die(new Error(`Resend batch ${key}: unexpected response: ${results}`))
  return results
})

/**
 * Retries a batch's attempts with `retryBackoff` (or the provider's `retry-after`) while the failure is retryable
 * and the next attempt would start before `deadline`; a retryable failure left at the end becomes `deadline`.
 */
const withRetries = (
  idempotencyKey: string,
  deadline: number,
  once: Effect.Effect<ReadonlyArray<DeliveryResult>, AttemptFailed>
) => {
  let attempts = 0
  const policy = retryBackoff.pipe(
    Schedule.setInputType<AttemptFailed>(),
    Schedule.modifyDelay(({ duration, input }) => Effect.succeed(input.retryAfter ?? duration)),
    // Stop when the error is final, or when the next attempt would start after the deadline.
    Schedule.while(({ duration, input, now }) => input.error.retryable && now + Duration.toMillis(duration) < deadline),
    Schedule.tap(({ duration, input }) =>
      Effect.logWarning(`Resend batch attempt ${attempts} failed; retrying in ${Duration.format(duration)}`).pipe(
        Effect.annotateLogs({ idempotencyKey, reason: input.error.message })
      ))
  )
  const gaveUp = (error: MailerError) =>
    error.retryable
      ? new MailerError({
        kind: "deadline",
        retryable: true,
        message: `Resend batch ${idempotencyKey}: gave up at the deadline after ${attempts} attempt(s); last: ${error.message}`
      })
      : error
  return Effect.suspend(() => {
    attempts++
    return once
  }).pipe(
    Effect.retry(policy),
    Effect.catchTag("AttemptFailed", ({ error }) => Effect.fail(gaveUp(error)))
  )
}

/** Builds the Resend Mailer; the rate limit is shared by every caller of the returned service. */
export const make = Effect.fnUntraced(function*(options: ResendMailerOptions) {
  const caller: Caller = {
    client: yield* makeClient(options),
    limiter: options.limiter ?? (yield* makeRateLimiter(options.rps)),
    timeout: Duration.fromInputUnsafe(options.timeout),
    warmUp: yield* makeWarmUp(options.baseUrl ?? DEFAULT_BASE_URL)
  }

  const send = Effect.fn("Mailer.send")(function*(batch: Batch) {
    yield* Effect.annotateCurrentSpan({ "mailer.batch_size": batch.emails.length, "mailer.idempotency_key": batch.idempotencyKey })
    if (batch.emails.length === 0) return []
    const invalid = invalidBatch(batch)
    if (invalid !== undefined) return yield* invalid
    const start = yield* Clock.currentTimeMillis
    const deadline = batch.deadline ?? start + Duration.toMillis(DEFAULT_SEND_WINDOW)
    if (start >= deadline) {
      return yield* new MailerError({
        kind: "deadline",
        retryable: true,
        message: `Resend batch ${batch.idempotencyKey}: its deadline had passed before the first attempt`
      })
    }
    const payload = batch.emails.map(toResendEmail)
    return yield* withRetries(batch.idempotencyKey, deadline, attempt(caller, batch.idempotencyKey, payload))
  })

  return Mailer.of({ send })
})

/**
 * The live Mailer on `config` (usually `ResendMailer.config`): with `rpsScope` `shared` its rate limit is the one
 * every process shares through the database (`SqlClient`), with `process` this process's own.
 */
export const layerConfig = (
  settings: Config.Wrap<ResendMailerConfig>
): Layer.Layer<Mailer, Config.ConfigError, SqlClient.SqlClient> =>
  Layer.effect(
    Mailer,
    Effect.gen(function*() {
      const { rpsScope, ...options } = yield* Config.unwrap(settings)
      const sql = yield* SqlClient.SqlClient
      const limiter = rpsScope === "shared" ? SharedRateLimiter.make(sql, { rps: options.rps }) : undefined
      return yield* make({ ...options, limiter })
    })
  )

/**
 * The Mailer on `config` with this process's own rate limit and no database (RESEND_RPS_SCOPE is not read): one
 * sender, and the tests. Live runs use `layerConfig`.
 */
export const layer: Layer.Layer<Mailer, Config.ConfigError> = Layer.effect(
  Mailer,
  Effect.flatMap(config, ({ rpsScope: _, ...options }) => make(options))
)
