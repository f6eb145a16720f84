/**
 * Versioned SQL. `kaiwaJobs` owns the `kaiwa_jobs` schema (run history, the delivery ledger, batches and
 * suppressions, time zones) and runs everywhere, including production through Fly's `release_command`. The app
 * fixtures create the Kaiwa web app's tables (either supported shape, docs/app-database.md) and run only on
 * embedded databases: in production the web app owns those tables and this library never migrates them.
 */
import { Effect, Schema } from "effect"
import { SqlClient } from "effect/sql"
import type { SqlError } from "effect/sql/SqlError"
import * as Migrator from "effect/sql/Migrator"

const statements = (...parts: ReadonlyArray<string>) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    for (const part of parts) yield* sql.unsafe(part)
  })

/**
 * `kaiwa_jobs.set_user_timezone(user_id text, timezone text)`, as migrations 0008 and 0013 create it: an unknown zone
 * or a null id raises SQLSTATE 22023 and stores nothing; otherwise the learner's row is inserted or, where
 * `updateWhen` holds (0013: only a changed zone), replaced.
 */
const setUserTimezone = (create: "CREATE FUNCTION" | "CREATE OR REPLACE FUNCTION", updateWhen: string) =>
  `${create} kaiwa_jobs.set_user_timezone(user_id text, timezone text) RETURNS void
      LANGUAGE plpgsql VOLATILE AS $$
    #variable_conflict use_column
    BEGIN
      IF $1 IS NULL THEN
        RAISE EXCEPTION 'kaiwa_jobs.set_user_timezone: user_id is null' USING ERRCODE = '22023';
      END IF;
      IF $2 IS NULL OR NOT EXISTS (SELECT 1 FROM pg_timezone_names z WHERE z.name = $2) THEN
        RAISE EXCEPTION 'kaiwa_jobs.set_user_timezone: unknown time zone %', coalesce(quote_literal($2), 'NULL')
          USING ERRCODE = '22023', HINT = 'Pass an IANA zone name such as Europe/Paris (Intl.DateTimeFormat().resolvedOptions().timeZone).';
      END IF;
      INSERT INTO kaiwa_jobs.user_timezones AS t (user_id, timezone, updated_at) VALUES ($1, $2, clock_timestamp())
      ON CONFLICT (user_id) DO UPDATE SET timezone = EXCLUDED.timezone, updated_at = EXCLUDED.updated_at
        ${updateWhen};
    END
    $$`

/** The library's own schema, in order. Never edit a shipped migration: add the next one. */
export const kaiwaJobs = Migrator.fromRecord({
  "0001_ledger": statements(
    `CREATE TABLE kaiwa_jobs.runs (
      id uuid PRIMARY KEY,
      job text NOT NULL,
      as_of timestamptz NOT NULL,
      started_at timestamptz NOT NULL,
      finished_at timestamptz NULL,
      outcome text NOT NULL DEFAULT 'running'
        CHECK (outcome IN ('running', 'succeeded', 'incomplete', 'failed', 'interrupted')),
      stats jsonb NULL,
      error text NULL,
      trigger text NOT NULL DEFAULT 'cli',
      host text NULL
    )`,
    `CREATE INDEX runs_job_started_idx ON kaiwa_jobs.runs (job, started_at DESC)`,
    `CREATE TABLE kaiwa_jobs.batches (
      id bigserial PRIMARY KEY,
      job text NOT NULL,
      idempotency_key text NOT NULL UNIQUE,
      status text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'done')),
      owner uuid NULL,
      lease_until timestamptz NULL,
      attempts integer NOT NULL DEFAULT 0,
      created_at timestamptz NOT NULL,
      done_at timestamptz NULL,
      last_error text NULL
    )`,
    `CREATE INDEX batches_pending_idx ON kaiwa_jobs.batches (job, id) WHERE status = 'pending'`,
    // One row per (job, user, dedupe key), written before anything is sent: the unique key is what makes a
    // re-run, a second machine or a restart unable to send the same email twice.
    `CREATE TABLE kaiwa_jobs.deliveries (
      id bigserial PRIMARY KEY,
      job text NOT NULL,
      user_id text NOT NULL,
      dedupe_key text NOT NULL,
      email text NOT NULL,
      data jsonb NOT NULL,
      status text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sent', 'failed', 'skipped')),
      reason text NULL,
      batch_id bigint NULL REFERENCES kaiwa_jobs.batches (id),
      provider_id text NULL,
      planned_at timestamptz NOT NULL,
      expires_at timestamptz NOT NULL,
      sent_at timestamptz NULL,
      run_id uuid NULL,
      CONSTRAINT deliveries_once UNIQUE (job, user_id, dedupe_key)
    )`,
    `CREATE INDEX deliveries_unbatched_idx ON kaiwa_jobs.deliveries (job, id) WHERE status = 'pending' AND batch_id IS NULL`,
    `CREATE INDEX deliveries_batch_idx ON kaiwa_jobs.deliveries (batch_id)`,
    `CREATE INDEX deliveries_user_recent_idx ON kaiwa_jobs.deliveries (user_id, planned_at DESC)`,
    `CREATE INDEX deliveries_job_planned_idx ON kaiwa_jobs.deliveries (job, planned_at)`,
    // Suppressions apply to one list or, with list '*', to every list. Matched by user id and by address, so an
    // unsubscribe survives an address change and a bounce follows the address.
    `CREATE TABLE kaiwa_jobs.suppressions (
      id bigserial PRIMARY KEY,
      user_id text NULL,
      email text NULL,
      list text NOT NULL,
      reason text NOT NULL CHECK (reason IN ('unsubscribed', 'hard_bounce', 'complaint', 'invalid_address')),
      created_at timestamptz NOT NULL,
      CONSTRAINT suppressions_once UNIQUE NULLS NOT DISTINCT (user_id, email, list)
    )`,
    `CREATE INDEX suppressions_user_idx ON kaiwa_jobs.suppressions (user_id)`,
    `CREATE INDEX suppressions_email_idx ON kaiwa_jobs.suppressions (lower(email))`
  ),
  // Batches that can no longer be sent safely are parked rather than retried forever:
  // - 'conflict': the provider refused the batch's key with a different payload (the batch no longer renders
  //   the same, say after a deploy changed MAIL_FROM); resending under a new key could deliver twice.
  // - 'expired': the batch was first sent so long ago that the provider may have forgotten its key (Resend
  //   keeps keys 24 h); resending could deliver twice.
  // `key_created_at` is the database's own clock when the key was first used, so it does not depend on `--now`.
  "0002_parked_batches": statements(
    `ALTER TABLE kaiwa_jobs.batches DROP CONSTRAINT batches_status_check`,
    `ALTER TABLE kaiwa_jobs.batches ADD CONSTRAINT batches_status_check
      CHECK (status IN ('pending', 'done', 'conflict', 'expired'))`,
    `ALTER TABLE kaiwa_jobs.batches ADD COLUMN key_created_at timestamptz NOT NULL DEFAULT clock_timestamp()`
  ),
  // The ledger's indexes, shaped for a ledger that only grows (a year of reminders for 1,000,000 users is
  // hundreds of millions of rows) and for planning, which inserts every due row under the planning lock:
  // - pending rows, batched or not, are what claims and `outstanding` read: a partial index keeps both
  //   proportional to the work left, not to the ledger (the old index left batched pending rows out, so
  //   `outstanding` scanned the whole ledger every half second while another worker held a batch);
  // - the cross-job cap asks "any email to this user since t - 20 h?": indexing the instant it compares
  //   (`coalesce(sent_at, planned_at)`) makes that one index range per candidate instead of a walk through the
  //   user's whole history;
  // - a fresh row has no batch yet, so the batch index leaves NULLs out and planning skips it;
  // - the once-per-key constraint leads with (job, dedupe_key), so the reminder selection reads only the
  //   ledger rows of the local dates whose windows can be open (yesterday's and older rows are never read)
  //   and `(job, planned_at)` is no longer needed for that.
  // A planned row now updates 4 indexes instead of 6 (bench/selection.ts times the insert).
  "0003_ledger_indexes": statements(
    `DROP INDEX kaiwa_jobs.deliveries_job_planned_idx`,
    `DROP INDEX kaiwa_jobs.deliveries_unbatched_idx`,
    `CREATE INDEX deliveries_pending_idx ON kaiwa_jobs.deliveries (job, id) WHERE status = 'pending'`,
    `DROP INDEX kaiwa_jobs.deliveries_batch_idx`,
    `CREATE INDEX deliveries_batch_idx ON kaiwa_jobs.deliveries (batch_id) WHERE batch_id IS NOT NULL`,
    `ALTER TABLE kaiwa_jobs.deliveries DROP CONSTRAINT deliveries_once,
      ADD CONSTRAINT deliveries_once UNIQUE (job, dedupe_key, user_id)`,
    `DROP INDEX kaiwa_jobs.deliveries_user_recent_idx`,
    `CREATE INDEX deliveries_cap_idx ON kaiwa_jobs.deliveries (user_id, (coalesce(sent_at, planned_at)))
      WHERE status IN ('pending', 'sent')`
  ),
  // What the provider tells afterwards (src/feedback/Webhooks.ts):
  // - webhook_events: one row per Resend event, keyed by its svix-id and written in the same transaction as the
  //   event's effect, so a replay or a provider retry finds its id and changes nothing. Events for emails this
  //   library did not send (the web app shares the account) are kept too (matched = false). provider_id is
  //   indexed so a ledger row that learns its provider id late can pick up the events that came first.
  // - deliveries.delivery_state / delivery_state_at: what became of a sent email. Only ever raised along the
  //   precedence delayed < delivered < bounced < complained (src/feedback/Webhooks.ts, DELIVERY_STATES), so events may
  //   arrive in any order. No index includes these columns: an event's update of a ledger row stays HOT.
  // - deliveries_provider_idx: the webhook finds the ledger row by provider id (Resend's email id).
  // - deliveries_sent_idx: the 7-day delivery health per job (src/delivery/DeliveryHealth.ts) reads one index range
  //   per job instead of the whole ledger.
  // - deliveries_take_events: see the function's comment.
  "0004_webhook_events": statements(
    `CREATE TABLE kaiwa_jobs.webhook_events (
      svix_id text PRIMARY KEY,
      type text NOT NULL,
      provider_id text NULL,
      delivery_state text NULL CHECK (delivery_state IN ('delayed', 'delivered', 'bounced', 'complained')),
      occurred_at timestamptz NOT NULL,
      received_at timestamptz NOT NULL,
      matched boolean NOT NULL,
      suppressed text[] NOT NULL DEFAULT '{}',
      payload jsonb NOT NULL
    )`,
    `CREATE INDEX webhook_events_provider_idx ON kaiwa_jobs.webhook_events (provider_id)
      WHERE provider_id IS NOT NULL AND delivery_state IS NOT NULL`,
    `CREATE INDEX webhook_events_received_idx ON kaiwa_jobs.webhook_events (received_at)`,
    `ALTER TABLE kaiwa_jobs.deliveries
      ADD COLUMN delivery_state text NULL CHECK (delivery_state IN ('delayed', 'delivered', 'bounced', 'complained')),
      ADD COLUMN delivery_state_at timestamptz NULL`,
    `CREATE INDEX deliveries_provider_idx ON kaiwa_jobs.deliveries (provider_id) WHERE provider_id IS NOT NULL`,
    `CREATE INDEX deliveries_sent_idx ON kaiwa_jobs.deliveries (job, sent_at) WHERE status = 'sent'`,
    // A webhook can come before the ledger knows the email's provider id: the batch's answer is recorded after
    // the provider accepted it, and a database blip can delay that by minutes. When a row gets its provider id,
    // this takes the highest-precedence state among the events already stored for it. The webhook and this
    // trigger serialise on a transaction lock named after the provider id (src/feedback/Webhooks.ts), so an event that
    // lands while the row's update is in flight is not lost either. A batch records at most 100 rows, so it holds
    // at most 100 such locks until it commits, far inside PostgreSQL's shared lock table.
    `CREATE FUNCTION kaiwa_jobs.deliveries_take_events() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE
      best record;
    BEGIN
      PERFORM pg_advisory_xact_lock(hashtextextended('kaiwa_jobs.provider:' || NEW.provider_id, 0));
      SELECT e.delivery_state, e.occurred_at INTO best
      FROM kaiwa_jobs.webhook_events e
      WHERE e.provider_id = NEW.provider_id AND e.delivery_state IS NOT NULL
      ORDER BY array_position(ARRAY['delayed', 'delivered', 'bounced', 'complained'], e.delivery_state) DESC,
        e.occurred_at
      LIMIT 1;
      IF FOUND THEN
        NEW.delivery_state := best.delivery_state;
        NEW.delivery_state_at := best.occurred_at;
      END IF;
      RETURN NEW;
    END
    $$`,
    `CREATE TRIGGER deliveries_take_events BEFORE UPDATE OF provider_id ON kaiwa_jobs.deliveries
      FOR EACH ROW WHEN (NEW.provider_id IS NOT NULL AND NEW.provider_id IS DISTINCT FROM OLD.provider_id)
      EXECUTE FUNCTION kaiwa_jobs.deliveries_take_events()`
  ),
  // One provider rate limit shared by every process (src/mail/SharedRateLimiter.ts): one row per limit.
  // `next_at` is the earliest departure nobody has reserved yet, `paused_until` a pause the provider asked for
  // (429, or a window used up by another sender), `epoch` is bumped by each pause so that departures reserved
  // before it are void, `last_at` is the last departure a worker confirmed, and `widen` stretches the spacing
  // after rate-limit 429s (narrowing back with each departure). Every instant is the database's clock (`clock_timestamp()`), never a worker's.
  "0005_rate_limit": statements(
    `CREATE TABLE kaiwa_jobs.rate_limits (
      key text PRIMARY KEY,
      next_at timestamptz NOT NULL,
      paused_until timestamptz NULL,
      epoch bigint NOT NULL DEFAULT 0,
      last_at timestamptz NULL,
      widen double precision NOT NULL DEFAULT 1
    )`
  ),
  // Yielding to another sender on the same provider account (src/mail/SharedRateLimiter.ts): `share` is the
  // part of RESEND_RPS the library uses now (1 = all of it; cut when a 429 shows another sender in the window,
  // raised back a little per departure once `foreign_at`, the last sight of another sender, is a while ago).
  "0006_rate_limit_share": statements(
    `ALTER TABLE kaiwa_jobs.rate_limits
      ADD COLUMN share double precision NOT NULL DEFAULT 1 CHECK (share > 0 AND share <= 1),
      ADD COLUMN foreign_at timestamptz NULL`
  ),
  // The same row for a sender outside the library (the web app), so that it takes turns instead of colliding
  // (README "Shared rate limit"): `take_rate_limit_turn(key, rps, margin_ms)` reserves the next departure
  // as the library does (spaced by `1000 / rps` ms with the library's 3% headroom, its widening and its share),
  // `margin_ms` (default 100) later than the library would, and returns how many milliseconds to wait before sending.
  // The margin stands in for the library's second step: a worker confirms its departure shortly before its slot,
  // never less than an interval after the last real departure, so a late call pushes the next worker's call back;
  // a caller of this function cannot be pushed back, so it keeps that much room before its call instead.
  // `pause_rate_limit(key, seconds)` writes a 429's `retry-after` into the row, holding every sender back and
  // voiding the turns reserved before it.
  "0007_rate_limit_functions": statements(
    `CREATE FUNCTION kaiwa_jobs.take_rate_limit_turn(p_key text, p_rps double precision, p_margin_ms double precision DEFAULT 100)
      RETURNS double precision LANGUAGE sql VOLATILE AS $$
      INSERT INTO kaiwa_jobs.rate_limits AS r (key, next_at)
      VALUES (p_key, clock_timestamp() + (1000 / nullif(greatest(p_rps, 0), 0) * 1.03) * interval '1 millisecond')
      ON CONFLICT (key) DO UPDATE
        SET next_at = greatest(r.next_at, r.paused_until, clock_timestamp()) + greatest(p_margin_ms, 0) * interval '1 millisecond'
          + (1000 / nullif(greatest(p_rps, 0), 0) * 1.03) * r.widen / r.share * interval '1 millisecond'
      RETURNING greatest(0, extract(epoch FROM (next_at - clock_timestamp())) * 1000
        - (1000 / nullif(greatest(p_rps, 0), 0) * 1.03) * widen / share)::float8
    $$`,
    `CREATE FUNCTION kaiwa_jobs.pause_rate_limit(p_key text, p_seconds double precision)
      RETURNS void LANGUAGE sql VOLATILE AS $$
      INSERT INTO kaiwa_jobs.rate_limits AS r (key, next_at, paused_until, epoch)
      VALUES (p_key, clock_timestamp() + p_seconds * interval '1 second', clock_timestamp() + p_seconds * interval '1 second', 1)
      ON CONFLICT (key) DO UPDATE
        SET paused_until = greatest(r.paused_until, clock_timestamp() + p_seconds * interval '1 second'),
            next_at = greatest(r.paused_until, clock_timestamp() + p_seconds * interval '1 second'),
            epoch = r.epoch + 1
    $$`
  ),
  // Where local time comes from when the app has no time-zone column (src/database/App.ts reads it): the web
  // app calls `SELECT kaiwa_jobs.set_user_timezone($1, $2)` with the browser's Intl zone, say at sign-in. An unknown
  // zone raises SQLSTATE 22023 (invalid_parameter_value) and stores nothing, so a typo never reaches a schedule.
  // Ids are text, as in the ledger; the uuid overload spares a Kaiwa caller the cast.
  "0008_user_timezones": statements(
    `CREATE TABLE kaiwa_jobs.user_timezones (
      user_id text PRIMARY KEY,
      timezone text NOT NULL,
      updated_at timestamptz NOT NULL DEFAULT clock_timestamp()
    )`,
    setUserTimezone("CREATE FUNCTION", ""),
    `CREATE FUNCTION kaiwa_jobs.set_user_timezone(user_id uuid, timezone text) RETURNS void
      LANGUAGE sql VOLATILE AS $$ SELECT kaiwa_jobs.set_user_timezone($1::text, $2) $$`
  ),
  // What an operator steers (src/ledger/Pauses.ts): a paused job's runs record themselves as `paused` and send
  // nothing; who paused it, when and why are shown by status, /health and the console. And the learner's own
  // preference changes made through the library (links, the preference center; src/mail/Unsubscribe.ts), for the
  // learner's timeline in `kaiwa-jobs why`: the app's user_settings keeps only the current state.
  "0009_pauses_and_preference_changes": statements(
    `CREATE TABLE kaiwa_jobs.pauses (
      job text PRIMARY KEY,
      paused_at timestamptz NOT NULL,
      paused_by text NOT NULL,
      reason text NULL
    )`,
    `ALTER TABLE kaiwa_jobs.runs DROP CONSTRAINT runs_outcome_check`,
    `ALTER TABLE kaiwa_jobs.runs ADD CONSTRAINT runs_outcome_check
      CHECK (outcome IN ('running', 'succeeded', 'incomplete', 'failed', 'interrupted', 'paused'))`,
    `CREATE TABLE kaiwa_jobs.preference_changes (
      id bigserial PRIMARY KEY,
      user_id text NOT NULL,
      list text NOT NULL,
      subscribed boolean NOT NULL,
      source text NOT NULL,
      written_to text NOT NULL CHECK (written_to IN ('app', 'library')),
      created_at timestamptz NOT NULL
    )`,
    `CREATE INDEX preference_changes_user_idx ON kaiwa_jobs.preference_changes (user_id, created_at)`
  ),
  // The learner's zone joined by the app's own uuid (Kaiwa's users.id): every full-population tick joins all
  // users with this table, and a 16-byte uuid key (no cast per user) keeps that hash about a third smaller than
  // the text key (bench/README.md, "Where Kaiwa's shape loses time"). Null for ids that are not uuids (the simple shape's
  // text ids, which join on user_id as before).
  "0010_user_timezones_uuid": statements(
    `ALTER TABLE kaiwa_jobs.user_timezones ADD COLUMN app_uuid uuid GENERATED ALWAYS AS (
      CASE WHEN user_id ~ '^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$' THEN user_id::uuid END
    ) STORED`,
    // INCLUDE (timezone): a job over few learners (the founder sequence) looks each one's zone up from the index
    // alone, without a read of the table per learner.
    `CREATE UNIQUE INDEX user_timezones_app_uuid_idx ON kaiwa_jobs.user_timezones (app_uuid) INCLUDE (timezone)`
  ),
  // The operator console's sign-in links (src/pages/Console.ts): each link's nonce is recorded when it is
  // used, so a link signs in once; rows are pruned once the link has expired.
  "0011_console_sessions": statements(
    `CREATE TABLE kaiwa_jobs.console_nonces (
      nonce text PRIMARY KEY,
      expires_at timestamptz NOT NULL,
      used_at timestamptz NOT NULL
    )`
  ),
  // A failed ledger row's kind, typed (src/ledger/internal/rows.ts FailureKind), so no module matches a reason's
  // text: 'rejected' (the provider refused this recipient: the only kind that suppresses the address),
  // 'render_error' (our template), 'outcome_unknown' (a parked batch: key expired or idempotency conflict).
  // `reason` keeps the text people read. Rows failed before this migration are classified by the prefixes their
  // reasons were written with (the only failed rows there are; the UPDATE reads the failed rows once).
  "0012_delivery_failure": statements(
    `ALTER TABLE kaiwa_jobs.deliveries ADD COLUMN failure text NULL
      CHECK (failure IN ('rejected', 'render_error', 'outcome_unknown'))`,
    `UPDATE kaiwa_jobs.deliveries SET failure = CASE
        WHEN starts_with(reason, 'rejected: ') THEN 'rejected'
        WHEN starts_with(reason, 'render_error: ') THEN 'render_error'
        WHEN starts_with(reason, 'outcome_unknown: ') THEN 'outcome_unknown'
      END
      WHERE status = 'failed'`
  ),
  // A learner's zone row records when the zone last changed: setting the zone it already has (the web app calls
  // this at every sign-in) writes nothing, so `updated_at` is the sign-up for most learners, and the founder
  // sequence reads its recent sign-ups' zones in one range of this index (src/database/App.ts, `usersIn`;
  // docs/decisions.md, Selection on Kaiwa's shape). Writing nothing also spares a dead row per sign-in.
  "0013_user_timezones_recent": statements(
    setUserTimezone("CREATE OR REPLACE FUNCTION", "WHERE t.timezone IS DISTINCT FROM EXCLUDED.timezone"),
    `CREATE INDEX user_timezones_updated_idx ON kaiwa_jobs.user_timezones (updated_at) INCLUDE (app_uuid, timezone)`
  )
})

/** Indexes this library recommends for the app tables (also listed in the README). */
export const recommendedAppIndexes: ReadonlyArray<string> = [
  `CREATE INDEX IF NOT EXISTS conversation_sessions_user_start_idx ON conversation_sessions (user_id, start_time DESC)`,
  `CREATE INDEX IF NOT EXISTS conversation_sessions_start_idx ON conversation_sessions (start_time)`,
  `CREATE INDEX IF NOT EXISTS users_created_at_idx ON users (created_at)`
  // No covering index (start_time) INCLUDE (user_id, language, duration_seconds) for the weekly report: measured
  // side by side on the same 1,000,000-user population (bench/selection.ts, BENCH_SKIP_INDEX), the reminder's
  // planning took 2,239 ms with it (its plan switched to it) and 1,845 ms without, and the weekly tick was no
  // faster with it (2,752 / 2,559 ms against 2,626 / 2,189 ms): the plain start_time index serves both.
]

/**
 * the simple shape (the first release's fixture): text ids, timestamptz, a `users.timezone` column. Kept as
 * the second supported shape; tests run the rule set on it too.
 */
export const simpleAppFixture = Migrator.fromRecord({
  "0001_app_tables": statements(
    `CREATE TABLE IF NOT EXISTS users (
      id text PRIMARY KEY,
      email text NOT NULL,
      display_name text NULL,
      email_verified timestamptz NULL,
      created_at timestamptz NOT NULL,
      timezone text NULL
    )`,
    `CREATE TABLE IF NOT EXISTS user_settings (
      user_id text PRIMARY KEY REFERENCES users (id),
      receive_practice_reminders boolean NOT NULL DEFAULT true,
      receive_founder_emails boolean NOT NULL DEFAULT true
    )`,
    `CREATE TABLE IF NOT EXISTS conversation_sessions (
      id text PRIMARY KEY,
      user_id text NOT NULL REFERENCES users (id),
      language text NOT NULL,
      start_time timestamptz NOT NULL,
      duration_seconds integer NULL
    )`,
    ...recommendedAppIndexes
  ),
  // the simple shape's opt-in for the weekly progress report.
  "0002_progress_reports": statements(
    `ALTER TABLE user_settings ADD COLUMN IF NOT EXISTS receive_progress_reports boolean NOT NULL DEFAULT true`
  )
})

/**
 * Kaiwa's production tables as they are (the web app's Drizzle schema, December 2025): uuid ids, `timestamp`
 * columns holding UTC, a nullable `created_at`, no time-zone column, `user_settings` rows for few users, and the
 * columns the jobs ignore, so the fixture behaves like the real thing (a write-back must leave them to their
 * defaults). The embedded database, the demo and the default test fixture use it.
 */
export const kaiwaAppFixture = Migrator.fromRecord({
  "0001_app_tables": statements(
    `DO $$ BEGIN
      CREATE TYPE theme AS ENUM ('light', 'dark', 'system');
    EXCEPTION WHEN duplicate_object THEN NULL; END $$`,
    `CREATE TABLE IF NOT EXISTS users (
      id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
      google_id text NULL UNIQUE,
      username text NULL,
      email text NOT NULL UNIQUE,
      display_name text NULL,
      avatar_url text NULL,
      hashed_password text NULL,
      email_verified timestamp NULL,
      email_verification_required boolean NOT NULL DEFAULT false,
      stripe_customer_id text NULL,
      last_usage timestamp NULL,
      native_language_id text NULL,
      preferred_ui_language_id text NULL,
      created_at timestamp NULL DEFAULT now()
    )`,
    `CREATE TABLE IF NOT EXISTS user_settings (
      user_id uuid PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
      receive_practice_reminders boolean NOT NULL DEFAULT true,
      receive_founder_emails boolean NOT NULL DEFAULT true,
      receive_progress_reports boolean NOT NULL DEFAULT true,
      receive_product_updates boolean NOT NULL DEFAULT true,
      receive_security_alerts boolean NOT NULL DEFAULT true,
      notifications_enabled boolean NOT NULL DEFAULT true,
      received_founder_email boolean NOT NULL DEFAULT false,
      daily_reminder_sent_count integer NOT NULL DEFAULT 0,
      last_reminder_sent_at timestamp NULL,
      audio_settings jsonb NULL,
      theme theme NOT NULL DEFAULT 'system',
      created_at timestamp NOT NULL DEFAULT now(),
      updated_at timestamp NOT NULL DEFAULT now()
    )`,
    `CREATE TABLE IF NOT EXISTS conversation_sessions (
      id text PRIMARY KEY,
      user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
      language text NOT NULL,
      start_time timestamp NOT NULL,
      end_time timestamp NULL,
      duration_seconds integer NOT NULL,
      seconds_consumed integer NOT NULL DEFAULT 0,
      scenario_id text NULL,
      transcript jsonb NULL
    )`,
    ...recommendedAppIndexes
  )
})

/** Which app fixture an embedded database gets: Kaiwa's real shape (the default) or the simple one. */
export type AppFixture = "kaiwa" | "simple"

const MigrationsTable = Schema.Struct({ exists: Schema.Boolean })
const AppliedMigration = Schema.Struct({ id: Schema.Int })

/** Rows decoded as they enter; a row of another shape than these two statements produce is a defect. */
const decodeRows = <S extends Schema.Constraint>(schema: S, rows: Effect.Effect<ReadonlyArray<unknown>, SqlError>) =>
  Effect.flatMap(rows, (r) => Schema.decodeUnknownEffect(Schema.Array(schema))(r).pipe(Effect.orDie))

/** The library's migrations a database lacks (for `doctor`), or that the schema was never migrated. */
export const pendingMigrations = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const shipped = yield* kaiwaJobs
  const [table] = yield* decodeRows(MigrationsTable, sql`SELECT to_regclass('kaiwa_jobs.migrations') IS NOT NULL AS exists`)
  if (!table?.exists) return "none applied" as const
  const applied = new Set((yield* decodeRows(AppliedMigration, sql`SELECT migration_id::int AS id FROM kaiwa_jobs.migrations`)).map((r) => r.id))
  const pending = shipped.filter(([id]) => !applied.has(id)).map(([id, name]) => `${String(id).padStart(4, "0")}_${name}`)
  return { shipped: shipped.length, pending }
})

/** Applies the library's migrations (creating the schema first); returns the ids that ran. */
export const migrate = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  yield* sql`CREATE SCHEMA IF NOT EXISTS kaiwa_jobs`
  return yield* Migrator.make({})({ loader: kaiwaJobs, table: "kaiwa_jobs.migrations" })
})

/** Applies an app fixture; embedded databases only. Each shape keeps its own migrations table. */
export const migrateAppFixture = (fixture: AppFixture = "kaiwa") =>
  fixture === "kaiwa"
    ? Migrator.make({})({ loader: kaiwaAppFixture, table: "kaiwa_jobs.app_fixture_kaiwa_migrations" })
    : Migrator.make({})({ loader: simpleAppFixture, table: "kaiwa_jobs.app_fixture_migrations" })
