/**
 * The shared rate limit judged on the database's own clock, for the tests that run limiter workers as processes.
 */
import { Effect, type Redacted } from "effect"
import { query } from "../faults/harness.ts"

/**
 * The rule judged on the database's own clock: a trigger on the shared row logs each departure a
 * worker's confirmation fixed (`last_at`, the instant the database allows the call to leave), with the worker's
 * `application_name`. Arrival stamps at the fake measure when processes happened to run: on a busy machine a
 * worker or the fake can be descheduled for a moment, and two calls look closer together than they were allowed
 * to leave ("busiest second 11" on a first `npm test` under load). The departures are what the limiter decides.
 * The trigger fires on statements that set `widen`: the confirmation does, a late-departure note does not.
 */
export const logDepartures = (url: Redacted.Redacted<string>) =>
  query(url, (sql) =>
    Effect.gen(function*() {
      yield* sql`CREATE TABLE public.limiter_departures (n bigserial PRIMARY KEY, worker text NOT NULL, at timestamptz NOT NULL)`
      yield* sql.unsafe(`CREATE FUNCTION public.log_limiter_departure() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          INSERT INTO public.limiter_departures (worker, at) VALUES (current_setting('application_name'), NEW.last_at);
          RETURN NEW;
        END $$`)
      yield* sql.unsafe(`CREATE TRIGGER log_limiter_departure AFTER UPDATE OF widen ON kaiwa_jobs.rate_limits
        FOR EACH ROW WHEN (NEW.last_at IS DISTINCT FROM OLD.last_at) EXECUTE FUNCTION public.log_limiter_departure()`)
    }))

/** The departures the database fixed, in order (epoch ms on the database's clock). */
export const departuresOf = (url: Redacted.Redacted<string>) =>
  query(url, (sql) =>
    sql<{ worker: string; at: number }>`SELECT worker, (extract(epoch FROM at) * 1000)::float8 AS at
      FROM public.limiter_departures ORDER BY at`)
