/**
 * practice-reminders, "Daily practice reminders" (CONTRACT 5.1). A reminder is due for a user at instant t when
 * they are reachable, it is between REMINDER_LOCAL_TIME and 12 hours later in their time zone, they have not
 * practised in the last 24 hours, they signed up at least 24 hours ago and are not in the founder sequence, they
 * got no reminder for this local date, and the cross-job cap allows it. One SQL statement decides it for everyone.
 */
import { Schema } from "effect"
import type { SqlClient } from "effect/sql"
import type { Settings } from "../Config.ts"
import type { Candidate } from "../Database.ts"
import { reminderSegments, renderReminder } from "../emails/index.ts"
import * as Job from "../Job.ts"
import { capJoin, skipReason } from "./shared.ts"

/** The job's name, as used in the ledger, the CLI and the HTTP path. */
export const NAME = "practice-reminders"

/** Length of the sending window after REMINDER_LOCAL_TIME: late ticks still send, nights never. */
export const WINDOW_MINUTES = 12 * 60

const HOUR_MS = 3_600_000
const QUARTER_HOUR_MS = HOUR_MS / 4
const DAY_MS = 24 * HOUR_MS

/**
 * Every local date (YYYY-MM-DD) whose reminder window can be open at `asOf` in some time zone: each UTC offset
 * from -13 to +15 h (real ones run from -12 to +14 h, in quarter hours) whose window, opening at
 * `reminderLocalTime` minutes past local midnight, is open at `asOf` gives one. Usually one date, two when the
 * windows open somewhere span local midnight.
 */
export const openWindowDays = (asOf: Date, reminderLocalTime: number): ReadonlyArray<string> => {
  const days = new Set<string>()
  for (let offset = -13 * HOUR_MS; offset <= 15 * HOUR_MS; offset += QUARTER_HOUR_MS) {
    // the local wall clock at asOf in a zone `offset` ahead of UTC, moved back to the window's opening time
    const shifted = asOf.getTime() + offset - reminderLocalTime * 60_000
    if (((shifted % DAY_MS) + DAY_MS) % DAY_MS < WINDOW_MINUTES * 60_000) days.add(new Date(shifted).toISOString().slice(0, 10))
  }
  return [...days]
}

/**
 * The set of candidates at `asOf`: due ones have a null skip_reason.
 *
 * Shaped for a large population (bench/selection.ts: 1,000,000 users): every user is read once (by parallel
 * workers when PostgreSQL can use them), and the rules that exclude most users (outside the window, practised in
 * the last 24 hours, already reminded today) are hash anti-joins against the last day's sessions and the ledger;
 * only the few users left get per-user index lookups (last session, cross-job cap). The instants the rules
 * compare with are computed here, once, instead of per row in SQL (`timestamptz - interval` is not
 * constant-folded); they are whole hours, so nothing depends on the session's time zone.
 */
export const selection = (sql: SqlClient.SqlClient, asOf: Date, config: Settings) => {
  const at = asOf.getTime()
  const dayAgo = new Date(at - 24 * HOUR_MS) // rules 2 and 3: sessions in (t - 24 h, t], signed up by t - 24 h
  const founderSince = new Date(at - 96 * HOUR_MS) // rule 3: the founder sequence covers sign-ups after t - 96 h
  // Bounds the ledger lookup to the dates a window can be open on. Passed as values rather than derived from the
  // zones in SQL, so the planner knows them and reads only those dates' ledger rows (deliveries_once leads with
  // job and dedupe_key, and holds every column the lookup needs), not the ledger's history.
  const windowDays = openWindowDays(asOf, config.reminderLocalTime)
  return sql<Candidate>`
  WITH zones_json AS MATERIALIZED (
    -- Every time zone PostgreSQL knows, computed once per statement (not per user, nor per parallel worker):
    -- whether its window is open at t and the local date it opened on (the dedupe key). One jsonb value, so it
    -- reaches parallel workers as a parameter; a materialized table of zones would keep the join with users out
    -- of them.
    SELECT jsonb_agg(jsonb_build_object('name', z.name, 'open', x.shifted::time < make_time(${WINDOW_MINUTES / 60}, 0, 0),
      'day', x.shifted::date::text)) AS zones
    FROM pg_timezone_names z,
      LATERAL (SELECT (${asOf}::timestamptz AT TIME ZONE z.name) - make_interval(mins => ${config.reminderLocalTime}) AS shifted) x
  ),
  zones AS NOT MATERIALIZED (
    SELECT * FROM jsonb_to_recordset((SELECT zones FROM zones_json)) AS z(name text, open boolean, day text)
  ),
  -- Users whose time zone PostgreSQL does not know (or who have none) are served in DEFAULT_TIMEZONE.
  fallback AS NOT MATERIALIZED (SELECT * FROM zones WHERE name = ${config.defaultTimezone}),
  c1 AS (
    SELECT u.id AS user_id, u.email, u.display_name, u.created_at, u.email_verified,
      coalesce(z.name, ${config.defaultTimezone}) AS tz,
      (u.timezone IS NOT NULL AND z.name IS NULL) AS unknown_timezone,
      coalesce(z.day, (SELECT day FROM fallback)) AS local_day,
      coalesce(us.receive_practice_reminders, true) AS reminders_opt_in,
      coalesce(us.receive_founder_emails, true) AS founder_opt_in
    FROM users u
    LEFT JOIN zones z ON z.name = u.timezone
    LEFT JOIN user_settings us ON us.user_id = u.id
    WHERE coalesce(z.open, (SELECT open FROM fallback))
      AND u.created_at <= ${dayAgo}
      AND NOT EXISTS (
        -- z.open IS NOT FALSE changes nothing (closed zones are filtered out above); it makes the cheap window
        -- filter run before this anti-join, so only users whose window is open are looked up in the sessions
        SELECT 1 FROM conversation_sessions s
        WHERE s.user_id = u.id AND z.open IS NOT FALSE AND s.start_time > ${dayAgo} AND s.start_time <= ${asOf})
      AND NOT EXISTS (
        SELECT 1 FROM kaiwa_jobs.deliveries d
        WHERE d.job = ${NAME} AND d.user_id = u.id AND d.dedupe_key = coalesce(z.day, (SELECT day FROM fallback))
          -- only the local dates a window can be open on can match: older reminders are never read
          AND d.dedupe_key IN ${sql.in(windowDays)})
  ),
  c AS (
    SELECT c1.*, last.start_time AS last_start, last.language AS last_language
    FROM c1
    LEFT JOIN LATERAL (
      SELECT s.start_time, s.language FROM conversation_sessions s
      WHERE s.user_id = c1.user_id AND s.start_time <= ${asOf}
      ORDER BY s.start_time DESC LIMIT 1
    ) last ON true
    -- still in the founder sequence: never practised, signed up less than 96 h ago, founder emails not refused
    WHERE NOT (last.start_time IS NULL AND c1.created_at > ${founderSince} AND c1.founder_opt_in)
  )
  SELECT c.user_id, c.email, c.local_day AS dedupe_key,
    jsonb_build_object(
      'displayName', c.display_name,
      'language', c.last_language,
      -- date_part (float8) rather than extract (numeric): the same whole days, cheaper per row
      'daysSince', CASE WHEN c.last_start IS NULL THEN NULL
        ELSE floor(date_part('epoch', ${asOf}::timestamptz - c.last_start) / 86400)::int END,
      'localDate', c.local_day
    ) AS data,
    -- the instant the window closes: the local date it opened on, at REMINDER_LOCAL_TIME + 12 h, in the user's zone
    (c.local_day::date + make_interval(mins => ${config.reminderLocalTime + WINDOW_MINUTES})) AT TIME ZONE c.tz AS expires_at,
    ${skipReason(sql, NAME, { optIn: "c.reminders_opt_in" })} AS skip_reason,
    c.unknown_timezone
  FROM c
  ${capJoin(sql, asOf, config)}`
}

/** The template inputs stored on the ledger row, so a resumed batch renders the same email. */
export const ReminderData = Schema.Struct({
  displayName: Schema.NullOr(Schema.String),
  language: Schema.NullOr(Schema.String),
  daysSince: Schema.NullOr(Schema.Number),
  localDate: Schema.String
})

// Days since the last session that land in each segment, for the preview samples.
const SAMPLE_DAYS = { never: null, days1to2: 1, days3to6: 4, days7to29: 12, days30plus: 45 } as const

/** Daily practice reminders. */
export const practiceReminders = Job.make({
  name: NAME,
  title: "Daily practice reminders",
  description: "Reminds learners who have not practised in 24 hours, once per local day, from 09:00 their time.",
  list: "daily practice reminders",
  aliases: ["send-reminders"],
  main: "dist/send-reminders.js",
  data: ReminderData,
  selection: ({ asOf, config, sql }) => selection(sql, asOf, config),
  groups: ["sent"],
  group: () => "sent",
  render: (data, { config, unsubscribeUrl, preferencesUrl }) =>
    renderReminder({
      displayName: data.displayName,
      language: data.language,
      daysSinceLastSession: data.daysSince,
      appUrl: config.appUrl,
      unsubscribeUrl,
      preferencesUrl
    }),
  samples: reminderSegments.flatMap((segment) =>
    ([["with-language", "ja"], ["no-language", null]] as const).map(([suffix, language]) => ({
      name: `reminder-${segment}-${suffix}`,
      data: { displayName: "Aiko Tanaka", language, daysSince: SAMPLE_DAYS[segment], localDate: "2026-03-10" }
    }))
  ),
  completedLine: "🎉 Reminder process completed!",
  statsLine: (s) => `📊 Stats: ${s.sent} sent, ${s.failed} failed`
})
