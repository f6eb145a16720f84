/**
 * The client-side rate limit of provider calls: what every limiter offers (`RateLimiter`), the
 * in-process one (`makeRateLimiter`), and how a provider's answer reads as far as the pace is concerned
 * (`pauseFromHeaders`, `retryAfterOf`). The limit shared by every process through PostgreSQL is
 * src/mail/SharedRateLimiter.ts; the Resend mailer (src/mail/ResendMailer.ts) takes either.
 */
import { Clock, Duration, Effect, Ref, Semaphore } from "effect"

/**
 * Spacing headroom of the client-side rate limit. Resend counts arrivals, we space departures: network jitter
 * of a few milliseconds would otherwise put `rps + 1` arrivals inside one second now and then. 3% (15 ms at
 * 2 requests/s, so 30 ms between a call and the one two after it) is ample on loopback and in one region; when a
 * rate-limit 429 still slips through, the spacing widens (see `RATE_WIDEN`).
 */
export const RATE_HEADROOM = 1.03

/**
 * After each rate-limit 429 the spacing grows by this factor, up to `RATE_MAX_WIDEN` times the initial spacing.
 * Every 429 costs a whole `retry-after` (at least 1 s, so 2 calls' worth at 2/s), while 2% more spacing costs
 * 10 ms a call: when arrivals jitter more than the headroom allows (a busy machine, a long network path), a
 * slightly slower pace is much faster than hitting the window again and again.
 */
export const RATE_WIDEN = 1.02
/** The widest spacing, as a multiple of the initial one. */
export const RATE_MAX_WIDEN = 1.2

/** Resend's rate-limit window: its limit is a number of requests per second. */
export const PROVIDER_WINDOW_MS = 1000

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

/** Seconds from `retry-after`, else `ratelimit-reset` (Resend sends both as delta seconds). */
export const retryAfterOf = (headers: Record<string, string> | null): Duration.Duration | undefined => {
  for (const name of ["retry-after", "ratelimit-reset"]) {
    const seconds = Number(headers?.[name])
    if (headers?.[name] !== undefined && Number.isFinite(seconds) && seconds >= 0) return Duration.seconds(seconds)
  }
  return undefined
}

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
