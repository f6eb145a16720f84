/**
 * practice-reminders, "Daily practice reminders". A reminder is due for a user at instant t when
 * they are reachable, it is between REMINDER_LOCAL_TIME and 12 hours later in their time zone, they have not
 * practised in the last 24 hours, they signed up at least 24 hours ago and are not in the founder sequence, they
 * got no reminder for this local date, and the cross-job cap allows it. One SQL statement decides it for everyone.
 */
import { type Config, Schema } from "effect"
import * as Setting from "../config/Setting.ts"
import type { Selection } from "../database/Database.ts"
import { reminderSegments, renderReminder } from "../emails/index.ts"
import * as Job from "../job/Job.ts"

/** The job's name, as used in the ledger, the CLI and the HTTP path. */
export const NAME = "practice-reminders"

/** Length of the sending window after REMINDER_LOCAL_TIME: late ticks still send, nights never. */
export const WINDOW_MINUTES = 12 * 60

/** The reminder's own setting: REMINDER_LOCAL_TIME (default 09:00), when its window opens (docs/configuration.md). */
export const settings = Setting.every({ reminderLocalTime: Setting.localTime("REMINDER_LOCAL_TIME", 9 * 60) })
export type ReminderSettings = Config.Success<typeof settings>

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

/** What the reminder's rule reads: the adapter's fragments, the run's instant and the settings. */
export type ReminderContext = Pick<Job.SelectionContext<ReminderSettings>, "sql" | "app" | "asOf" | "config" | "settings">

/**
 * The reminder's rule at `asOf` (the library adds the ledger check, the shared rules and the cap).
 *
 * Shaped for a large population (bench/selection.ts: 1,000,000 users): every user is read once (by parallel
 * workers when PostgreSQL can use them), and the rules that exclude most users (outside the window, practised in
 * the last 24 hours, already reminded today) are hash anti-joins against the last day's sessions and the ledger;
 * only the few users left get per-user index lookups (last session, cross-job cap). The instants the rules
 * compare with are computed here, once, instead of per row in SQL (`timestamptz - interval` is not
 * constant-folded), and typed like the app's columns (`app.at`) so its indexes serve them on either shape.
 *
 * Over 60 lines on purpose: it is one SQL statement, read top to bottom; its named CTEs are its steps.
 */
export const selection = ({ app, asOf, config, settings, sql }: ReminderContext): Selection => {
  const at = asOf.getTime()
  const dayAgo = new Date(at - 24 * HOUR_MS) // rules 2 and 3: sessions in (t - 24 h, t], signed up by t - 24 h
  const founderSince = new Date(at - 96 * HOUR_MS) // rule 3: the founder sequence covers sign-ups after t - 96 h
  return {
    with: sql`
  zones_json AS MATERIALIZED (
    -- Every time zone PostgreSQL knows, computed once per statement (not per user, nor per parallel worker):
    -- whether its window is open at t and the local date it opened on (the dedupe key). One jsonb value, so it
    -- reaches parallel workers as a parameter; a materialized table of zones would keep the join with users out
    -- of them.
    SELECT jsonb_agg(jsonb_build_object('name', z.name, 'open', x.shifted::time < make_time(${WINDOW_MINUTES / 60}, 0, 0),
      'day', x.shifted::date::text)) AS zones
    FROM pg_timezone_names z,
      LATERAL (SELECT (${asOf}::timestamptz AT TIME ZONE z.name) - make_interval(mins => ${settings.reminderLocalTime}) AS shifted) x
  ),
  zones AS NOT MATERIALIZED (
    SELECT * FROM jsonb_to_recordset((SELECT zones FROM zones_json)) AS z(name text, open boolean, day text)
  ),
  -- Users whose time zone PostgreSQL does not know (or who have none) are served in DEFAULT_TIMEZONE.
  fallback AS NOT MATERIALIZED (SELECT * FROM zones WHERE name = ${config.defaultTimezone})`,
    candidates: {
      select: sql`u.user_id, u.app_id, u.email, u.display_name, u.created_at, u.email_verified,
        coalesce(z.name, ${config.defaultTimezone}) AS tz,
        (u.timezone IS NOT NULL AND z.name IS NULL) AS unknown_timezone,
        coalesce(z.day, (SELECT day FROM fallback)) AS dedupe_key,
        ${app.optIn(NAME)} AS opt_in,
        ${app.optIn("founder-emails")} AS founder_opt_in`,
      from: sql`${app.users} u LEFT JOIN zones z ON z.name = u.timezone`,
      rules: [
        { reason: "outside_local_window", holds: sql`coalesce(z.open, (SELECT open FROM fallback))` },
        // signed up at least 24 h ago; no sign-up instant means long ago
        {
          reason: "signed_up_less_than_24h_ago",
          holds: sql`(u.created_raw IS NULL OR u.created_raw <= ${app.at.created(dayAgo)})`
        },
        {
          reason: "practised_in_last_24h",
          holds: sql`NOT EXISTS (
            SELECT 1 FROM ${app.sessions} s
            WHERE s.app_user_id = u.app_id AND s.start_raw > ${app.at.start(dayAgo)} AND s.start_raw <= ${app.at.start(asOf)})`
        }
      ]
    },
    rowsRule: "in_founder_sequence",
    // Only the local dates a window can be open on can match: older reminders are never read.
    keys: openWindowDays(asOf, settings.reminderLocalTime),
    rows: (fresh) => sql`
    SELECT c.user_id, c.email, c.dedupe_key, c.email_verified, c.opt_in, c.unknown_timezone,
      jsonb_build_object(
        'displayName', c.display_name,
        'language', last.language,
        -- date_part (float8) rather than extract (numeric): the same whole days, cheaper per row
        'daysSince', CASE WHEN last.start_time IS NULL THEN NULL
          ELSE floor(date_part('epoch', ${asOf}::timestamptz - last.start_time) / 86400)::int END,
        'localDate', c.dedupe_key
      ) AS data,
      -- the instant the window closes: the local date it opened on, at REMINDER_LOCAL_TIME + 12 h, in the user's zone
      (c.dedupe_key::date + make_interval(mins => ${settings.reminderLocalTime + WINDOW_MINUTES})) AT TIME ZONE c.tz AS expires_at
    FROM ${fresh} c
    LEFT JOIN LATERAL (
      SELECT s.start_time, s.language FROM ${app.sessions} s
      WHERE s.app_user_id = c.app_id AND s.start_raw <= ${app.at.start(asOf)}
      ORDER BY s.start_raw DESC LIMIT 1
    ) last ON true
    -- still in the founder sequence: never practised, signed up less than 96 h ago, founder emails not refused
    -- (no sign-up instant means long ago: never in the sequence)
    WHERE NOT (last.start_time IS NULL AND coalesce(c.created_at > ${founderSince}::timestamptz, false) AND c.founder_opt_in)`
  }
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
  settings,
  data: ReminderData,
  selection,
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
