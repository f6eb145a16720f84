/**
 * The provider's rate limit shared by every process of the library, kept in PostgreSQL (CONTRACT 8b). Resend's
 * limit holds for the whole account, so N workers each pacing themselves to `RESEND_RPS` would send N times too
 * fast; here they all draw departures from one row of `kaiwa_jobs.rate_limits`.
 *
 * The algorithm is virtual scheduling (the GCRA's form without burst tolerance): the row holds `next_at`, the
 * earliest departure nobody has reserved yet. Taking a turn is ONE statement that reserves
 * `slot = greatest(next_at, paused_until, clock_timestamp())` and moves `next_at` to `slot + interval`, returning
 * how long to wait; the caller sleeps that long and goes. Every instant is the database's clock, because the
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
 * A caller confirms its turn when it wakes (one more single-row statement) and takes a new turn if its own was
 * voided, so workers that reserved their departures before the 429 arrived do not run into the same window; the
 * confirmation also records the real departure, so one worker waking late cannot squeeze the next one closer
 * than an interval behind it.
 *
 * Failure behaviour: the limiter never lets a call go without a turn the database confirmed. When the database
 * cannot be reached while taking a turn or checking it, the caller waits (backoff up to 2 s) and tries again,
 * so an outage makes sending slower, never faster. A worker killed while holding a reservation only wastes that
 * one departure: nothing is held, nothing needs releasing.
 */
import { Duration, Effect, Schedule, Schema } from "effect"
import type { SqlClient } from "effect/sql"
import { RATE_HEADROOM, type RateLimiter } from "./ResendMailer.ts"

/** The row every process of the library shares for Resend's account-wide limit. */
export const DEFAULT_KEY = "resend"

/** The longest a single database round trip of the limiter may take before it counts as a failure. */
export const STATEMENT_TIMEOUT = Duration.seconds(5)

/** Waiting between attempts while the database cannot be reached: 50 ms doubling, capped at 2 s. */
export const unreachableBackoff = Schedule.min([Schedule.exponential("50 millis"), Schedule.spaced("2 seconds")])

const Turn = Schema.Struct({ epoch: Schema.String, wait_ms: Schema.Number })
const decodeTurn = Schema.decodeUnknownEffect(Schema.Array(Turn))
const Confirm = Schema.Struct({ epoch: Schema.String, confirmed: Schema.Boolean, wait_ms: Schema.Number })
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
          SET next_at = greatest(r.next_at, r.paused_until, clock_timestamp()) + ${intervalMs} * interval '1 millisecond'
        RETURNING epoch::text AS epoch,
          (extract(epoch FROM (next_at - ${intervalMs} * interval '1 millisecond' - clock_timestamp())) * 1000)::float8 AS wait_ms`
      .pipe(Effect.flatMap(decodeTurn))
  )
  // One statement at the moment of departure: the turn still holds (no pause since it was reserved) and the last
  // confirmed departure is a whole interval ago; if so, this departure is recorded. Reserved slots are evenly
  // spaced, but a worker that wakes late (a busy event loop, a descheduled process) would otherwise leave the
  // next worker's on-time departure less than an interval behind it: this keeps the spacing between departures
  // as they really happen, as the in-process limiter does.
  const confirm = (epoch: string) =>
    bounded(
      sql`WITH now AS (SELECT clock_timestamp() AS t)
          UPDATE kaiwa_jobs.rate_limits AS r
          SET last_at = CASE
            WHEN r.epoch::text = ${epoch} AND (r.last_at IS NULL OR r.last_at <= now.t - ${intervalMs} * interval '1 millisecond')
            THEN now.t ELSE r.last_at END
          FROM now
          WHERE r.key = ${key}
          RETURNING r.epoch::text AS epoch, r.last_at = now.t AS confirmed,
            coalesce(extract(epoch FROM (r.last_at + ${intervalMs} * interval '1 millisecond' - now.t)) * 1000, 0)::float8 AS wait_ms`
        .pipe(Effect.flatMap(decodeConfirm))
    )

  const attempt = Effect.gen(function*() {
    while (true) {
      const [turn] = yield* reserve
      if (turn === undefined) return yield* new Unreachable({ cause: "no row returned" })
      if (turn.wait_ms > 0) yield* Effect.sleep(Duration.millis(turn.wait_ms))
      while (true) {
        const [state] = yield* confirm(turn.epoch)
        if (state === undefined) return yield* new Unreachable({ cause: "no row returned" })
        if (state.confirmed) return
        // A pause written while we slept voids our departure: take a new one (it lands after the pause).
        if (state.epoch !== turn.epoch) break
        // The previous departure went late: keep a whole interval behind it.
        yield* Effect.sleep(Duration.millis(Math.max(1, state.wait_ms)))
      }
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

  // One spacing for everyone: widening it after a 429 is replaced by the shared pause above.
  return { take, pauseFor, widen: Effect.void }
}
