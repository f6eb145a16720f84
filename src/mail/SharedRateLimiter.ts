/**
 * The provider's rate limit shared by every process of the library, kept in PostgreSQL (docs/decisions.md, Mail and pages). Resend's
 * limit holds for the whole account, so N workers each pacing themselves to `RESEND_RPS` would send N times too
 * fast; here they all draw departures from one row of `kaiwa_jobs.rate_limits`.
 *
 * The algorithm is virtual scheduling (the GCRA's form without burst tolerance): the row holds `next_at`, the
 * earliest departure nobody has reserved yet. Taking a turn is ONE statement that reserves
 * `slot = greatest(next_at, paused_until, clock_timestamp())` and moves `next_at` to `slot + interval`, returning
 * how long to wait; the caller sleeps until shortly before it (see below). Every instant is the database's clock, because the
 * workers' clocks differ between machines and a run started with `--now` reads a shifted Clock; the caller only
 * ever sees a relative wait, which it sleeps on its own (real) clock.
 *
 * Why not the store of Effect's `RateLimiter` (`effect/persistence`): its token bucket and fixed window let
 * `limit` calls through back to back, and a burst followed by one more call a second later is exactly what a
 * sliding window such as Resend's refuses; its store API has no way to hold every caller back for a provider's
 * `retry-after` (the adaptive feedback learns a new limit instead); and its memory and Redis stores take the
 * instant from the caller's Clock, which `--now` shifts. Even spacing in one SQL statement needs none of that.
 *
 * A provider pause (a 429's `retry-after`) is written into the row: `paused_until` moves forward, `next_at`
 * restarts at the pause's end, and `epoch` is bumped, which voids every departure reserved before the pause.
 * Shortly before its slot (50 ms) a caller confirms its turn in a second single-row statement, which takes a new
 * turn if the pause voided it (so workers that reserved before the 429 arrived do not run into the same window)
 * and fixes the departure at its slot, or later when the last real departure (`last_at`) was late enough that the
 * slot would squeeze this call closer behind it than an interval less `LATE_TOLERANCE`. The caller then sleeps to
 * the departure on its own timer; a call that leaves late (its timer fired late, or the answer reached a busy process late) moves
 * `last_at` to when it really left, without waiting for that statement's answer.
 *
 * Arrivals at the provider jitter (a process descheduled between its turn and the call reaching the wire), and
 * with several processes that jitter can put one call too many in the provider's window. A rate-limit 429
 * therefore also widens the shared spacing a little (`widen`, a factor in the row, like the in-process
 * limiter's), and every departure narrows it back slowly (`RELAX`).
 *
 * Another sender on the same account (the web app's sign-up and password-reset emails) is invisible until it
 * collides with us, and two senders that do not coordinate cannot share an exactly full window: at 1.5/s beside
 * a sender at 0.5/s against a limit of 2, both got a 429 on about a third of their calls. So the library yields
 * (AIMD, as TCP does with a link it shares): `share` in the row is the part of `rps` it uses now. A rate-limit
 * 429 that our own pace cannot explain (fewer of our calls fit in the provider's window, give or take
 * `FOREIGN_MARGIN_MS`, than its limit) means someone else took a place: every worker drops at once to the pace
 * that leaves one place per window free, `(limit - 1)` calls per window, or by `YIELD` if it already was there
 * (multiplicative decrease). An accepted answer whose `ratelimit-remaining` shows more calls in the window than
 * our pace puts there is evidence of the other sender too (`foreign_at`), without a cut. Once no other sender has
 * been seen for `quiet` (10 s by default), every departure raises the share by `PROBE_STEP` (additive increase)
 * back to the whole `rps`. A 429 our own pace does explain (arrival jitter at close to the limit) only widens the
 * spacing a little, as before: with nobody else sending, nothing changes.
 *
 * Failure behaviour: the limiter never lets a call go without a turn the database confirmed. When the database
 * cannot be reached while taking a turn or checking it, the caller waits (backoff up to 2 s) and tries again,
 * so an outage makes sending slower, never faster. A worker killed while holding a reservation only wastes that
 * one departure: nothing is held, nothing needs releasing.
 */
import { Duration, Effect, Schedule, Schema } from "effect"
import { type SqlClient, SqlSchema } from "effect/sql"
import {
  type ProviderAnswer,
  PROVIDER_WINDOW_MS,
  RATE_HEADROOM,
  RATE_MAX_WIDEN,
  RATE_WIDEN,
  pauseFromHeaders,
  type RateLimiter
} from "./RateLimiter.ts"

/** The row every process of the library shares for Resend's account-wide limit. */
export const DEFAULT_KEY = "resend"

/** The longest a single database round trip of the limiter may take before it counts as a failure. */
export const STATEMENT_TIMEOUT = Duration.seconds(5)

/** How long before its slot a turn is confirmed: the confirmation's round trip stays off the departure. */
export const CONFIRM_AHEAD_MS = 50

/**
 * How much closer than an interval a departure may follow the last real one, as a part of the configured
 * interval (0.4%: 2 ms at 2 calls/s). Reserved slots are evenly spaced; a departure is pushed behind its slot
 * only when the call before it left later than this, so the millisecond or two of lateness reported on most
 * calls (the timer, and the confirmation's round trip, counted in full to stay on the safe side) is absorbed by
 * the schedule instead of accumulating into a slower one; a larger tolerance lets several workers' calls arrive
 * closer together than the provider's window allows (docs/decisions.md, "Mail and pages"; bench/ratelimit.ts).
 */
export const LATE_TOLERANCE = 0.004

/**
 * Each confirmed departure narrows a widened spacing by this factor, back to the configured rate. After a
 * rate-limit 429 the shared spacing widens by `RATE_WIDEN` (2%, up to `RATE_MAX_WIDEN`), as the in-process
 * limiter's does; it stays in the row, so it outlives a run, and narrows again over a few hundred calls: at
 * equilibrium under steady jitter that is one 429 per ~100 calls (ln 1.02 / -ln RELAX).
 */
export const RELAX = 0.9998

/**
 * A rate-limit 429 is our own doing when our pace can put `ratelimit-limit` of our calls before it in the
 * provider's window stretched by this margin (arrivals jitter by tens of milliseconds on a busy machine, never
 * by this much in steady state); otherwise another sender took a place, and the library yields.
 */
export const FOREIGN_MARGIN_MS = 100

/** The cut of the share when another sender collides with us and we already leave one place per window free. */
export const YIELD = 0.75

/** The share never drops below this part of `rps`, however often another sender collides with us. */
export const MIN_SHARE = 0.1

/** Once no other sender has been seen for `quiet`, each departure raises the share by this much (up to 1). */
export const PROBE_STEP = 0.02

/** How long without any sign of another sender before the share grows back (default of `quiet`). */
export const DEFAULT_QUIET = Duration.seconds(10)

/** Waiting between attempts while the database cannot be reached: 50 ms doubling, capped at 2 s. */
export const unreachableBackoff = Schedule.min([Schedule.exponential("50 millis"), Schedule.spaced("2 seconds")])

const Turn = Schema.Struct({
  epoch: Schema.String,
  slot_ms: Schema.Number,
  wait_ms: Schema.Number,
  interval_ms: Schema.Number,
  share: Schema.Number
})
type Turn = typeof Turn.Type
const Confirmed = Schema.Struct({ epoch: Schema.String, departure_ms: Schema.Number, wait_ms: Schema.Number })

/** The database did not confirm a turn (unreachable, timed out, or an unexpected answer). */
class Unreachable extends Schema.TaggedError<Unreachable>()("SharedRateLimiter/Unreachable", {
  cause: Schema.Defect()
}) {}

/** What `make` needs. */
export interface SharedRateLimiterOptions {
  /** Provider calls per second for all processes together (may be fractional). */
  readonly rps: number
  /** The row; every process sharing one provider account must use the same key (default `resend`). */
  readonly key?: string | undefined
  /** How long without a sign of another sender before the library's share of `rps` grows back (10 s). */
  readonly quiet?: Duration.Input | undefined
}

/**
 * The share of `rps` that leaves one place per provider window free (`limit - 1` calls per window), and the
 * cut below the current share: straight down to it, or by `YIELD` when the share is already there.
 */
export const yieldedShare = (share: number, rps: number, limit: number): number => {
  const onePlaceFree = (limit - 1) * 1000 / (PROVIDER_WINDOW_MS * rps)
  return Math.max(MIN_SHARE, Math.min(share * YIELD, onePlaceFree))
}

/**
 * Whether a rate-limit 429 with this `ratelimit-limit` is explained by our own calls alone at `intervalMs`
 * between departures: the window (stretched by `FOREIGN_MARGIN_MS`) holds `limit` of them before this one.
 */
export const ownPaceExplains429 = (intervalMs: number, limit: number): boolean =>
  Math.ceil((PROVIDER_WINDOW_MS + FOREIGN_MARGIN_MS) / intervalMs) - 1 >= limit

/**
 * Whether an accepted answer shows more calls in the provider's window than ours at `intervalMs`: the window
 * holds `limit - remaining` calls with this one, our pace at most `ceil(window / interval)`.
 */
export const othersInWindow = (intervalMs: number, headers: Record<string, string> | null): boolean => {
  const limit = Number(headers?.["ratelimit-limit"])
  const remaining = Number(headers?.["ratelimit-remaining"])
  if (!Number.isFinite(limit) || !Number.isFinite(remaining)) return false
  return limit - remaining > Math.ceil(PROVIDER_WINDOW_MS / intervalMs)
}

/** What every statement of one limiter works on: its row, and its pace as configured. */
interface Row {
  readonly sql: SqlClient.SqlClient
  readonly key: string
  readonly rps: number
  /** The configured spacing, with the in-process limiter's headroom (Resend counts arrivals, we space departures). */
  readonly intervalMs: number
  readonly quietMs: number
}

// Nothing the caller can act on: a failure here only means "no confirmed turn yet, wait and ask again".
const bounded = <A, E>(effect: Effect.Effect<A, E>) =>
  effect.pipe(
    Effect.timeout(STATEMENT_TIMEOUT),
    Effect.mapError((cause) => new Unreachable({ cause }))
  )

/** One statement: reserve the next departure and return how long to wait for it (the database's clock). */
const reserve = ({ intervalMs, key, sql }: Row) =>
  bounded(SqlSchema.findOne({
    Request: Schema.Void,
    Result: Turn,
    execute: () =>
      sql`INSERT INTO kaiwa_jobs.rate_limits AS r (key, next_at)
        VALUES (${key}, clock_timestamp() + ${intervalMs} * interval '1 millisecond')
        ON CONFLICT (key) DO UPDATE
          SET next_at = greatest(r.next_at, r.paused_until, clock_timestamp()) + ${intervalMs} * r.widen / r.share * interval '1 millisecond'
        RETURNING epoch::text AS epoch, share::float8 AS share,
          (${intervalMs} * widen / share)::float8 AS interval_ms,
          (extract(epoch FROM next_at) * 1000 - ${intervalMs} * widen / share)::float8 AS slot_ms,
          (extract(epoch FROM (next_at - clock_timestamp())) * 1000 - ${intervalMs} * widen / share)::float8 AS wait_ms`
  })(undefined))

/**
 * One statement shortly before the slot: the turn still holds (no pause since it was reserved), and the
 * departure is fixed at the later of the slot and an interval (less LATE_TOLERANCE) after the last departure;
 * `last_at` records it, and the caller sleeps the returned wait on its own timer, so no database round trip sits
 * between the wake-up and the call. Reserved slots are evenly spaced, but a call that leaves late (a busy event
 * loop, a descheduled process) would otherwise leave the next one less than an interval behind it: spacing from
 * the real departures is what the in-process limiter does too.
 */
const confirm = ({ intervalMs, key, quietMs, sql }: Row, turn: Turn) =>
  bounded(SqlSchema.findOne({
    Request: Turn,
    Result: Confirmed,
    execute: (turn) =>
      sql`WITH now AS (SELECT clock_timestamp() AS t)
        UPDATE kaiwa_jobs.rate_limits AS r
        SET last_at = CASE WHEN r.epoch::text = ${turn.epoch}
          THEN greatest(to_timestamp(${turn.slot_ms} / 1000.0), r.last_at + ${intervalMs} * (r.widen / r.share - ${LATE_TOLERANCE}) * interval '1 millisecond', now.t)
          ELSE r.last_at END,
          widen = greatest(1, r.widen * ${RELAX}),
          share = CASE WHEN r.share < 1 AND (r.foreign_at IS NULL OR r.foreign_at < now.t - ${quietMs} * interval '1 millisecond')
            THEN least(1, r.share + ${PROBE_STEP}) ELSE r.share END
        FROM now
        WHERE r.key = ${key}
        RETURNING r.epoch::text AS epoch, (extract(epoch FROM r.last_at) * 1000)::float8 AS departure_ms,
          (extract(epoch FROM (r.last_at - now.t)) * 1000)::float8 AS wait_ms`
  })(turn))

/**
 * Sent when a call leaves later than the departure `confirm` fixed (the process was busy when its timer fired),
 * and not awaited: moves `last_at` to when the call really left. The lateness is measured on this process's
 * monotonic clock and added to the fixed departure, so it does not matter when the statement itself runs. Its
 * failure changes nothing but that margin, so it is ignored.
 */
const departedLate = ({ key, sql }: Row, departureMs: number, latenessMs: number) =>
  bounded(sql`UPDATE kaiwa_jobs.rate_limits
    SET last_at = greatest(last_at, to_timestamp(${departureMs + latenessMs} / 1000.0)) WHERE key = ${key}`)
    .pipe(Effect.ignore)

/** Holds every worker back for `duration`: moves the pause, restarts `next_at` after it, voids reserved turns. */
const pauseFor = ({ key, sql }: Row, duration: Duration.Duration) => {
  const ms = Duration.toMillis(duration)
  return bounded(
    sql`INSERT INTO kaiwa_jobs.rate_limits AS r (key, next_at, paused_until, epoch)
        VALUES (${key}, clock_timestamp() + ${ms} * interval '1 millisecond',
                clock_timestamp() + ${ms} * interval '1 millisecond', 1)
        ON CONFLICT (key) DO UPDATE
          SET paused_until = greatest(r.paused_until, clock_timestamp() + ${ms} * interval '1 millisecond'),
              next_at = greatest(r.paused_until, clock_timestamp() + ${ms} * interval '1 millisecond'),
              epoch = r.epoch + 1`
  ).pipe(
    // The pause protects the other workers; if it cannot be written, this worker still waits it out itself
    // (the mailer's retry honours retry-after), so log and go on.
    Effect.catch(() => Effect.logWarning("the shared rate limit could not record the provider's pause")),
    Effect.asVoid
  )
}

/** A rate-limit 429 our own pace explains: widen the shared spacing a little. */
const widen = ({ key, sql }: Row) =>
  bounded(
    sql`UPDATE kaiwa_jobs.rate_limits SET widen = least(widen * ${RATE_WIDEN}, ${RATE_MAX_WIDEN}) WHERE key = ${key}`
  ).pipe(Effect.ignore)

/**
 * Another sender took a place in the provider's window: cut the share (unless a worker already cut it below the
 * share this process's turn was taken at: one collision, one cut, however many workers it refused).
 */
const yieldTo = ({ key, rps, sql }: Row, limit: number, turnShare: number) => {
  const to = yieldedShare(turnShare, rps, limit)
  return bounded(sql`UPDATE kaiwa_jobs.rate_limits
    SET share = CASE WHEN share >= ${turnShare} THEN ${to} ELSE share END, foreign_at = clock_timestamp()
    WHERE key = ${key}`).pipe(
    Effect.tap(() => Effect.logInfo("another sender is using the provider's rate limit; the library yields").pipe(
      Effect.annotateLogs({ share: to, rps })
    )),
    Effect.ignore
  )
}

/** An accepted answer showed someone else in the window: no cut, but no growing back for a while either. */
const seenOther = ({ key, sql }: Row) =>
  bounded(sql`UPDATE kaiwa_jobs.rate_limits SET foreign_at = clock_timestamp() WHERE key = ${key}`).pipe(Effect.ignore)

/** The pace of this process's latest turn (the row's share and widening then): what answers are read against. */
interface Pace {
  readonly intervalMs: number
  readonly share: number
}

/**
 * Takes a turn the database confirmed and sleeps until its departure; `onTurn` hears each reserved turn's pace.
 * A pause written while waiting voids the turn, and a new one is taken (it lands after the pause).
 */
const takeTurn = (row: Row, onTurn: (pace: Pace) => void) =>
  Effect.gen(function*() {
    while (true) {
      const turn = yield* reserve(row)
      onTurn({ intervalMs: turn.interval_ms, share: turn.share })
      if (turn.wait_ms > CONFIRM_AHEAD_MS) yield* Effect.sleep(Duration.millis(turn.wait_ms - CONFIRM_AHEAD_MS))
      const sent = performance.now()
      const state = yield* confirm(row, turn)
      if (state.epoch !== turn.epoch) continue
      // The database fixed the departure `wait_ms` after its reading of the clock, which happened somewhere between
      // sending the statement and receiving its answer. Counting the wait from the answer never leaves early;
      // counting the lateness from the sending reports every delay that may have pushed the call past the
      // departure the database recorded (an answer that reached a busy process late, a late timer), at worst
      // one round trip too much.
      if (state.wait_ms > 0) yield* Effect.sleep(Duration.millis(state.wait_ms))
      const lateness = performance.now() - (sent + state.wait_ms)
      if (lateness > 1) yield* Effect.forkDetach(departedLate(row, state.departure_ms, lateness))
      return
    }
  })

/** What a provider's answer says about the shared pace (see the module comment: yield, widen, or pause). */
const answer = (row: Row, pace: Pace, answer: ProviderAnswer): Effect.Effect<void> => {
  const limit = Number(answer.headers?.["ratelimit-limit"])
  if (answer.refused) {
    return Number.isFinite(limit) && limit >= 1 && !ownPaceExplains429(pace.intervalMs, limit)
      ? yieldTo(row, limit, pace.share)
      : widen(row)
  }
  // A window used up by someone else as well: every worker waits for its reset (docs/decisions.md, Mail and pages).
  const pause = pauseFromHeaders(answer.headers, pace.intervalMs)
  return Effect.andThen(
    othersInWindow(pace.intervalMs, answer.headers) ? Effect.forkDetach(seenOther(row)) : Effect.void,
    pause === undefined ? Effect.void : pauseFor(row, pause)
  )
}

/** A limiter over `sql` whose budget is shared by every process using the same key and database. */
export const make = (sql: SqlClient.SqlClient, options: SharedRateLimiterOptions): RateLimiter => {
  if (!(options.rps > 0)) throw new Error(`the Resend rate limit must be positive (got ${options.rps})`)
  const row: Row = {
    sql,
    key: options.key ?? DEFAULT_KEY,
    rps: options.rps,
    intervalMs: (1000 / options.rps) * RATE_HEADROOM,
    quietMs: Duration.toMillis(Duration.fromInputUnsafe(options.quiet ?? DEFAULT_QUIET))
  }
  let current: Pace = { intervalMs: row.intervalMs, share: 1 }
  const take = takeTurn(row, (pace) => {
    current = pace
  }).pipe(
    Effect.tapError(() => Effect.logWarning("the shared rate limit cannot reach the database; waiting before sending")),
    Effect.retry(unreachableBackoff),
    Effect.orDie
  )
  return {
    take,
    pauseFor: (duration) => pauseFor(row, duration),
    widen: widen(row),
    answered: (providerAnswer) => answer(row, current, providerAnswer)
  }
}
