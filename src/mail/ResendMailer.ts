/**
 * The live Mailer on Resend's batch API, through the official `resend` SDK. One Batch is one
 * `POST /emails/batch` call in permissive validation (one bad address does not sink the other 99) carrying the
 * batch's `Idempotency-Key`, so a retry, or a batch resumed by another run, is answered from Resend's stored
 * response instead of being delivered twice. Calls are spaced by a client-side rate limit: in live runs the one
 * every process shares through PostgreSQL (src/mail/SharedRateLimiter.ts), otherwise one for this process's fibers;
 * a 429 waits for `retry-after` (holding back every caller of the limiter, and, in-process, widening the spacing
 * a little), and so does a `ratelimit-remaining: 0` that our own pace does not explain; 5xx, network failures, timeouts and `concurrent_idempotent_requests` retry with jittered exponential
 * backoff until the batch's deadline; authentication, quota, idempotency conflicts and whole-batch validation
 * fail at once.
 * The API key is unwrapped only to construct the SDK client, and no message built here contains it.
 * SDK facts this relies on (resend 6.38): it never throws but resolves `{ data, error, headers }`; a network
 * failure is `application_error` with `statusCode: null`; it has no timeout or retry of its own; it passes
 * `signal` through to `fetch`; it prints errors to the console only when `RESEND_DEBUG=true` (read at construction).
 */
import { Clock, Config, Data, Duration, Effect, Layer, Redacted, Ref, Schedule, Schema, Semaphore } from "effect"
import { type CreateBatchEmailOptions, type ErrorResponse, Resend } from "resend"
import { type Batch, type DeliveryResult, Mailer, MailerError, type OutgoingEmail, MAX_BATCH } from "./Mailer.ts"

/** What `make` needs; `layer` reads it from configuration. */
export interface ResendMailerOptions {
  readonly apiKey: Redacted.Redacted<string>
  /** Provider calls per second (Resend's default team limit is 2); fractional values are allowed. */
  readonly rps: number
  /**
   * The limiter every call waits on. Default: one for this process only (`makeRateLimiter(rps)`), right when one
   * process sends; live runs pass the one shared through PostgreSQL (src/mail/SharedRateLimiter.ts), so that any
   * number of workers together stay under `rps` (CONTRACT 8b).
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

/**
 * Spacing headroom of the client-side rate limit. Resend counts arrivals, we space departures: network jitter
 * of a few milliseconds would otherwise put `rps + 1` arrivals inside one second now and then. 3% (15 ms at
 * 2 requests/s, so 30 ms between a call and the one two after it) is ample on loopback and in one region; when a
 * rate-limit 429 still slips through, the spacing widens (see `RATE_WIDEN`).
 */
export const RATE_HEADROOM = 1.03

/** The settings `layer` reads: `RESEND_API_KEY`, `RESEND_RPS` (2), `RESEND_TIMEOUT` (30 s), `RESEND_BASE_URL`. */
export const config = Config.all({
  apiKey: Config.Redacted("RESEND_API_KEY"),
  rps: Config.schema(Schema.Finite.check(Schema.isGreaterThan(0)), "RESEND_RPS").pipe(Config.withDefault(2)),
  timeout: Config.Duration("RESEND_TIMEOUT").pipe(Config.withDefault(Duration.seconds(30))),
  baseUrl: Config.String("RESEND_BASE_URL").pipe(Config.withDefault(DEFAULT_BASE_URL))
})

/**
 * After each rate-limit 429 the spacing grows by this factor, up to `RATE_MAX_WIDEN` times the initial spacing.
 * Every 429 costs a whole `retry-after` (at least 1 s, so 2 calls' worth at 2/s), while 2% more spacing costs
 * 10 ms a call: when arrivals jitter more than the headroom allows (a busy machine, a long network path), a
 * slightly slower pace is much faster than hitting the window again and again.
 */
export const RATE_WIDEN = 1.02
/** The widest spacing, as a multiple of the initial one. */
export const RATE_MAX_WIDEN = 1.2

/** What the provider answered one of our calls, as far as the rate limit is concerned. */
export interface ProviderAnswer {
  /** A rate-limit 429 (`rate_limit_exceeded`); false for an accepted call. */
  readonly refused: boolean
  /** The answer's headers (`ratelimit-limit`, `ratelimit-remaining`, `ratelimit-reset`, `retry-after`). */
  readonly headers: Record<string, string> | null
}

/** A shared limiter: `take` waits for the caller's turn; `pauseFor` holds every caller back (after a 429). */
export interface RateLimiter {
  readonly take: Effect.Effect<void>
  /** Holds every caller back for `duration` from now (a provider's `retry-after`). */
  readonly pauseFor: (duration: Duration.Duration) => Effect.Effect<void>
  /** A rate-limit 429 got through: space later calls a little wider. */
  readonly widen: Effect.Effect<void>
  /**
   * What the provider answered a call that had its turn (a 429's `retry-after` is already paused for). The
   * limiter decides what it says about the pace: the in-process one widens after a 429 and pauses when an
   * accepted answer shows someone else filling the window; the shared one also yields to another sender.
   */
  readonly answered: (answer: ProviderAnswer) => Effect.Effect<void>
}

/**
 * Lets calls through one at a time, each at least `1000 / rps` ms (times `RATE_HEADROOM`) after the previous
 * one actually went, across all fibers. Spacing rather than a bursty token bucket, because a burst of `rps`
 * calls followed by one more a second later is exactly what a sliding window refuses. Spacing is counted from
 * the moment a call was let through, not from its planned slot, so a late wake-up (a busy event loop, a GC
 * pause) delays the calls after it instead of squeezing them closer together. Time comes from Clock, so
 * TestClock drives it. `onDeparture` sees each departure's instant (tests judge the spacing on it).
 */
export const makeRateLimiter = Effect.fnUntraced(function*(rps: number, onDeparture?: (epochMillis: number) => void) {
  if (!(rps > 0)) return yield* Effect.die(new Error(`the Resend rate limit must be positive (got ${rps})`))
  const base = (1000 / rps) * RATE_HEADROOM
  const spacing = yield* Ref.make(base)
  const lastDeparture = yield* Ref.make(Number.NEGATIVE_INFINITY)
  const pausedUntil = yield* Ref.make(0)
  // One caller at a time waits for the next departure; the others queue behind it in arrival order.
  const turn = yield* Semaphore.make(1)
  const take = turn.withPermit(Effect.gen(function*() {
    while (true) {
      const now = yield* Clock.currentTimeMillis
      // Re-read on every pass: a 429 seen by another fiber while we slept pushes our departure back.
      const earliest = Math.max((yield* Ref.get(lastDeparture)) + (yield* Ref.get(spacing)), yield* Ref.get(pausedUntil))
      if (now >= earliest) {
        onDeparture?.(now)
        return yield* Ref.set(lastDeparture, now)
      }
      yield* Effect.sleep(Duration.millis(earliest - now))
    }
  }))
  const pauseUntil = (epochMillis: number) => Ref.update(pausedUntil, (t) => Math.max(t, epochMillis))
  const pauseFor = (duration: Duration.Duration) =>
    Effect.flatMap(Clock.currentTimeMillis, (now) => pauseUntil(now + Duration.toMillis(duration)))
  const widen = Ref.update(spacing, (s) => Math.min(s * RATE_WIDEN, base * RATE_MAX_WIDEN))
  const answered = (answer: ProviderAnswer) =>
    answer.refused ? widen : Effect.gen(function*() {
      const pause = pauseFromHeaders(answer.headers, yield* Ref.get(spacing))
      if (pause !== undefined) yield* pauseFor(pause)
    })
  return { take, pauseUntil, pauseFor, widen, answered } satisfies RateLimiter & { readonly pauseUntil: unknown }
})

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

/** Seconds from `retry-after`, else `ratelimit-reset` (Resend sends both as delta seconds). */
const retryAfterOf = (headers: Record<string, string> | null): Duration.Duration | undefined => {
  for (const name of ["retry-after", "ratelimit-reset"]) {
    const seconds = Number(headers?.[name])
    if (headers?.[name] !== undefined && Number.isFinite(seconds) && seconds >= 0) return Duration.seconds(seconds)
  }
  return undefined
}

/** Resend's rate-limit window: its limit is a number of requests per second. */
export const PROVIDER_WINDOW_MS = 1000

/**
 * The pause an ACCEPTED call's headers ask for, if any. `ratelimit-remaining: 0` says the provider's window is
 * full. At our own pace that is routine when the pace alone can fill the window (2 calls 515 ms apart at 2/s:
 * every other answer says 0), and the spacing already waits for the window: pausing for the whole
 * `ratelimit-reset` (whole seconds, so 1 s) on each of those would cut the throughput by a third. It is news
 * only when our pace puts fewer calls in a window than `ratelimit-limit`: someone else (the web app) is using
 * the account right now, so every worker steps back until the reset. `spacingMs` is our pace's spacing.
 */
export const pauseFromHeaders = (headers: Record<string, string> | null, spacingMs: number): Duration.Duration | undefined => {
  if (headers?.["ratelimit-remaining"] !== "0") return undefined
  const limit = Number(headers["ratelimit-limit"])
  const ownPerWindow = Math.ceil(PROVIDER_WINDOW_MS / spacingMs)
  if (Number.isFinite(limit) && limit <= ownPerWindow) return undefined
  return retryAfterOf(headers)
}

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

/** Builds the Resend Mailer; the rate limit is shared by every caller of the returned service. */
export const make = Effect.fnUntraced(function*(options: ResendMailerOptions) {
  const timeout = Duration.fromInputUnsafe(options.timeout)
  const limiter = options.limiter ?? (yield* makeRateLimiter(options.rps))
  const client = yield* Effect.sync(() => {
    const key = Redacted.value(options.apiKey)
    // An empty key would make the SDK fall back to process.env.RESEND_API_KEY.
    if (key.trim() === "") throw new Error("the Resend API key is empty")
    return new Resend(key, { baseUrl: options.baseUrl ?? DEFAULT_BASE_URL })
  })

  // A process's first call through Node's fetch is tens of milliseconds slower than the next ones (the HTTP client
  // loads and opens its first connection; TLS adds more against the real API), so it reaches the provider later
  // than its turn: with other processes sending on time, that is one call too many in the provider's window.
  // An unauthenticated HEAD of the base URL, once, before the first turn, pays that cost outside the limit
  // (a request without a key cannot count against the team's limit). Its outcome does not matter.
  const warmUp = yield* Effect.cached(
    Effect.tryPromise((signal) => fetch(options.baseUrl ?? DEFAULT_BASE_URL, { method: "HEAD", signal })).pipe(
      Effect.timeout("2 seconds"),
      Effect.ignore
    )
  )

  const attempt = Effect.fnUntraced(function*(key: string, payload: Array<CreateBatchEmailOptions>) {
    yield* warmUp
    yield* limiter.take
    const response = yield* Effect.tryPromise({
      try: (signal) => client.batch.send(payload, { idempotencyKey: key, batchValidation: "permissive", signal }),
      // The SDK resolves errors rather than rejecting; a rejection is unexpected, and as unknown as a network error.
      catch: (cause) => failed("transient", true, `the Resend SDK failed: ${cause instanceof Error ? cause.message : "unknown error"}`)
    }).pipe(
      Effect.timeout(timeout),
      Effect.catchTag("TimeoutError", () =>
        Effect.fail(failed("transient", true, `Resend did not answer within ${Duration.format(timeout)}`)))
    )
    if (response.error !== null) {
      const failure = classify(response.error, response.headers)
      // What the 429 says about the pace first (the shared limiter may yield to another sender), then the pause,
      // which voids every turn reserved before it: they are taken again at the new pace.
      if (failure.error.kind === "transient" && response.error.statusCode === 429) {
        yield* limiter.answered({ refused: true, headers: response.headers })
      }
      if (failure.retryAfter !== undefined) yield* limiter.pauseFor(failure.retryAfter)
      if (failure.error.kind === "idempotency") {
        yield* Effect.logError(
          "IDEMPOTENCY CONFLICT: Resend refused a batch whose key was already used with a different payload. " +
            "Nothing was sent; a batch must never be rebuilt under an old key."
        ).pipe(Effect.annotateLogs({ idempotencyKey: key, provider: failure.error.message }))
      }
      return yield* failure
    }
    yield* limiter.answered({ refused: false, headers: response.headers })
    const body = yield* decodeBatchResponse(response.data).pipe(Effect.orDie)
    const results = deliveryResults(payload.length, body)
    if (typeof results === "string") {
      return yield* Effect.die(new Error(`Resend batch ${key}: unexpected response: ${results}`))
    }
    return results
  })

  const send = Effect.fn("Mailer.send")(function*(batch: Batch) {
    yield* Effect.annotateCurrentSpan({ "mailer.batch_size": batch.emails.length, "mailer.idempotency_key": batch.idempotencyKey })
    if (batch.emails.length === 0) return []
    if (batch.emails.length > MAX_BATCH) {
      return yield* new MailerError({
        kind: "invalid",
        retryable: false,
        message: `a batch holds at most ${MAX_BATCH} emails (got ${batch.emails.length})`
      })
    }
    // The SDK silently drops an empty key (no header, no protection), and Resend refuses one over 256 characters.
    if (batch.idempotencyKey.trim() === "" || batch.idempotencyKey.length > MAX_IDEMPOTENCY_KEY) {
      return yield* new MailerError({
        kind: "invalid",
        retryable: false,
        message: `a batch needs an idempotency key of 1 to ${MAX_IDEMPOTENCY_KEY} characters (got ${batch.idempotencyKey.length})`
      })
    }
    const start = yield* Clock.currentTimeMillis
    const deadline = batch.deadline ?? start + Duration.toMillis(DEFAULT_SEND_WINDOW)
    const payload = batch.emails.map(toResendEmail)
    let attempts = 0
    const policy = retryBackoff.pipe(
      Schedule.setInputType<AttemptFailed>(),
      Schedule.modifyDelay(({ duration, input }) => Effect.succeed(input.retryAfter ?? duration)),
      // Stop when the error is final, or when the next attempt would start after the deadline.
      Schedule.while(({ duration, input, now }) => input.error.retryable && now + Duration.toMillis(duration) < deadline),
      Schedule.tap(({ duration, input }) =>
        Effect.logWarning(`Resend batch attempt ${attempts} failed; retrying in ${Duration.format(duration)}`).pipe(
          Effect.annotateLogs({ idempotencyKey: batch.idempotencyKey, reason: input.error.message })
        ))
    )
    if (start >= deadline) {
      return yield* new MailerError({
        kind: "deadline",
        retryable: true,
        message: `Resend batch ${batch.idempotencyKey}: its deadline had passed before the first attempt`
      })
    }
    return yield* Effect.suspend(() => {
      attempts++
      return attempt(batch.idempotencyKey, payload)
    }).pipe(
      Effect.retry(policy),
      Effect.catchTag("AttemptFailed", ({ error }) =>
        Effect.fail(
          error.retryable
            ? new MailerError({
              kind: "deadline",
              retryable: true,
              message: `Resend batch ${batch.idempotencyKey}: gave up at the deadline after ${attempts} attempt(s); last: ${error.message}`
            })
            : error
        ))
    )
  })

  return Mailer.of({ send })
})

/** The live Mailer, configured from `RESEND_API_KEY`, `RESEND_RPS`, `RESEND_TIMEOUT` and `RESEND_BASE_URL`. */
export const layer: Layer.Layer<Mailer, Config.ConfigError> = Layer.effect(Mailer, Effect.flatMap(config, make))
