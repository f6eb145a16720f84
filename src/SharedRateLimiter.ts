/**
 * The provider's rate limit shared by every process of the library, kept in PostgreSQL (CONTRACT 8b). Resend's
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
 * and fixes the departure a whole interval after the last real one (`last_at`), so one call leaving late cannot
 * squeeze the next one closer than an interval behind it. The caller then sleeps to the departure on its own
 * timer; a call that leaves late (its timer fired late, or the answer reached a busy process late) moves
 * `last_at` to when it really left, without waiting for that statement's answer.
 *
 * Arrivals at the provider jitter (a process descheduled between its turn and the call reaching the wire), and
 * with several processes that jitter can put one call too many in the provider's window. A rate-limit 429
 * therefore also widens the shared spacing a little (`widen`, a factor in the row, like the in-process
 * limiter's), and every departure narrows it back slowly (`RELAX`).
 *
 * Failure behaviour: the limiter never lets a call go without a turn the database confirmed. When the database
 * cannot be reached while taking a turn or checking it, the caller waits (backoff up to 2 s) and tries again,
 * so an outage makes sending slower, never faster. A worker killed while holding a reservation only wastes that
 * one departure: nothing is held, nothing needs releasing.
 */
import { Duration, Effect, Schedule, Schema } from "effect"
import type { SqlClient } from "effect/sql"
import { RATE_HEADROOM, RATE_MAX_WIDEN, RATE_WIDEN, type RateLimiter } from "./ResendMailer.ts"

/** The row every process of the library shares for Resend's account-wide limit. */
export const DEFAULT_KEY = "resend"

/** The longest a single database round trip of the limiter may take before it counts as a failure. */
export const STATEMENT_TIMEOUT = Duration.seconds(5)

/** How long before its slot a turn is confirmed: the confirmation's round trip stays off the departure. */
export const CONFIRM_AHEAD_MS = 50

/**
 * Each confirmed departure narrows a widened spacing by this factor, back to the configured rate. After a
 * rate-limit 429 the shared spacing widens by `RATE_WIDEN` (2%, up to `RATE_MAX_WIDEN`), as the in-process
 * limiter's does; it stays in the row, so it outlives a run, and narrows again over a few hundred calls: at
 * equilibrium under steady jitter that is one 429 per ~100 calls (ln 1.02 / -ln RELAX).
 */
export const RELAX = 0.9998

/** Waiting between attempts while the database cannot be reached: 50 ms doubling, capped at 2 s. */
export const unreachableBackoff = Schedule.min([Schedule.exponential("50 millis"), Schedule.spaced("2 seconds")])

const Turn = Schema.Struct({ epoch: Schema.String, slot_ms: Schema.Number, wait_ms: Schema.Number })
type Turn = typeof Turn.Type
const decodeTurn = Schema.decodeUnknownEffect(Schema.Array(Turn))
const Confirm = Schema.Struct({ epoch: Schema.String, departure_ms: Schema.Number, wait_ms: Schema.Number })
const decodeConfirm = Schema.decodeUnknownEffect(Schema.Array(Confirm))

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
}

/** A limiter over `sql` whose budget is shared by every process using the same key and database. */
export const make = (sql: SqlClient.SqlClient, options: SharedRateLimiterOptions): RateLimiter => {
  if (!(options.rps > 0)) throw new Error(`the Resend rate limit must be positive (got ${options.rps})`)
  const key = options.key ?? DEFAULT_KEY
  // The same headroom as the in-process limiter: Resend counts arrivals and we space departures.
  const intervalMs = (1000 / options.rps) * RATE_HEADROOM

  const bounded = <A, E>(effect: Effect.Effect<A, E>) =>
    effect.pipe(
      Effect.timeout(STATEMENT_TIMEOUT),
      // Nothing the caller can act on: a failure here only means "no confirmed turn yet, wait and ask again".
      Effect.mapError((cause) => new Unreachable({ cause }))
    )

  // One statement: reserve the next departure and return how long to wait for it (the database's clock).
  const reserve = bounded(
    sql`INSERT INTO kaiwa_jobs.rate_limits AS r (key, next_at)
        VALUES (${key}, clock_timestamp() + ${intervalMs} * interval '1 millisecond')
        ON CONFLICT (key) DO UPDATE
          SET next_at = greatest(r.next_at, r.paused_until, clock_timestamp()) + ${intervalMs} * r.widen * interval '1 millisecond'
        RETURNING epoch::text AS epoch,
          (extract(epoch FROM next_at) * 1000 - ${intervalMs} * widen)::float8 AS slot_ms,
          (extract(epoch FROM (next_at - clock_timestamp())) * 1000 - ${intervalMs} * widen)::float8 AS wait_ms`
      .pipe(Effect.flatMap(decodeTurn))
  )

  // One statement shortly before the slot: the turn still holds (no pause since it was reserved), and the
  // departure is fixed at the later of the slot and a whole interval after the last departure; `last_at` records
  // it, and the caller sleeps the returned wait on its own timer, so no database round trip sits between the
  // wake-up and the call. Reserved slots are evenly spaced, but a call that leaves late (a busy event loop, a
  // descheduled process) would otherwise leave the next one less than an interval behind it: spacing from the
  // real departures is what the in-process limiter does too.
  const confirm = (turn: Turn) =>
    bounded(
      sql`WITH now AS (SELECT clock_timestamp() AS t)
          UPDATE kaiwa_jobs.rate_limits AS r
          SET last_at = CASE WHEN r.epoch::text = ${turn.epoch}
            THEN greatest(to_timestamp(${turn.slot_ms} / 1000.0), r.last_at + ${intervalMs} * r.widen * interval '1 millisecond', now.t)
            ELSE r.last_at END,
            widen = greatest(1, r.widen * ${RELAX})
          FROM now
          WHERE r.key = ${key}
          RETURNING r.epoch::text AS epoch, (extract(epoch FROM r.last_at) * 1000)::float8 AS departure_ms,
            (extract(epoch FROM (r.last_at - now.t)) * 1000)::float8 AS wait_ms`
        .pipe(Effect.flatMap(decodeConfirm))
    )

  // Sent when a call leaves later than the departure `confirm` fixed (the process was busy when its timer fired),
  // and not awaited: moves `last_at` to when the call really left. The lateness is measured on this process's
  // monotonic clock and added to the fixed departure, so it does not matter when the statement itself runs. Its
  // failure changes nothing but that margin, so it is ignored.
  const departedLate = (departureMs: number, latenessMs: number) =>
    bounded(sql`UPDATE kaiwa_jobs.rate_limits
      SET last_at = greatest(last_at, to_timestamp(${departureMs + latenessMs} / 1000.0)) WHERE key = ${key}`)
      .pipe(Effect.ignore)

  const attempt = Effect.gen(function*() {
    while (true) {
      const [turn] = yield* reserve
      if (turn === undefined) return yield* new Unreachable({ cause: "no row returned" })
      if (turn.wait_ms > CONFIRM_AHEAD_MS) yield* Effect.sleep(Duration.millis(turn.wait_ms - CONFIRM_AHEAD_MS))
      const sent = performance.now()
      const [state] = yield* confirm(turn)
      if (state === undefined) return yield* new Unreachable({ cause: "no row returned" })
      // A pause written while we waited voids the turn: take a new one (it lands after the pause).
      if (state.epoch !== turn.epoch) continue
      // The database fixed the departure `wait_ms` after its reading of the clock, which happened somewhere between
      // sending the statement and receiving its answer. Counting the wait from the answer never leaves early;
      // counting the lateness from the sending reports every delay that may have pushed the call past the
      // departure the database recorded (an answer that reached a busy process late, a late timer), at worst
      // one round trip too much.
      if (state.wait_ms > 0) yield* Effect.sleep(Duration.millis(state.wait_ms))
      const lateness = performance.now() - (sent + state.wait_ms)
      if (lateness > 1) yield* Effect.forkDetach(departedLate(state.departure_ms, lateness))
      return
    }
  })

  const take = attempt.pipe(
    Effect.tapError(() => Effect.logWarning("the shared rate limit cannot reach the database; waiting before sending")),
    Effect.retry(unreachableBackoff),
    Effect.orDie
  )

  const pauseFor = (duration: Duration.Duration) => {
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

  const widen = bounded(
    sql`UPDATE kaiwa_jobs.rate_limits SET widen = least(widen * ${RATE_WIDEN}, ${RATE_MAX_WIDEN}) WHERE key = ${key}`
  ).pipe(Effect.ignore)

  return { take, pauseFor, widen }
}
