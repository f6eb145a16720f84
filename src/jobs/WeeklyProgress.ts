/**
 * weekly-progress, "Weekly progress report". A report is due for a user at instant t when they are
 * reachable, it is PROGRESS_DAY in their time zone and between PROGRESS_LOCAL_TIME and 10 hours later, they had
 * at least one conversation in the report's week (the 7 local days ending at the start of that local day), they
 * got no report for that week, and the cross-job cap allows it; a report the cap blocks is skipped for the week.
 * The one selection statement also computes the week's figures the email shows.
 */
import { type Config, Schema } from "effect"
import * as Setting from "../config/Setting.ts"
import { WEEKDAYS } from "../config/Values.ts"
import type { Selection } from "../database/Database.ts"
import { type ProgressData, progressTrend, renderProgress } from "../emails/progress.ts"
import * as Job from "../job/Job.ts"

/** The job's name, as used in the ledger, the CLI, the HTTP path and the unsubscribe list. */
export const NAME = "weekly-progress"

/** Length of the sending window after PROGRESS_LOCAL_TIME: it opens before the reminder's 09:00 on purpose. */
export const WINDOW_MINUTES = 10 * 60

const MINUTE_MS = 60_000

/**
 * The report's own settings: PROGRESS_DAY (default sunday), the local day it goes out on, and PROGRESS_LOCAL_TIME
 * (default 08:00), when its window opens (docs/configuration.md).
 */
export const settings = Setting.every({
  progressDay: Setting.weekday("PROGRESS_DAY", "sunday"),
  progressLocalTime: Setting.localTime("PROGRESS_LOCAL_TIME", 8 * 60)
})
export type ProgressSettings = Config.Success<typeof settings>
const HOUR_MS = 60 * MINUTE_MS
const QUARTER_HOUR_MS = HOUR_MS / 4
const DAY_MS = 24 * HOUR_MS

/** `YYYY-MM-DD` plus `days` (calendar arithmetic on the date alone, no time zone involved). */
export const addDays = (date: string, days: number): string =>
  new Date(Date.parse(`${date}T00:00:00Z`) + days * DAY_MS).toISOString().slice(0, 10)

/** The ISO 8601 week of a date, e.g. `2026-W14` (weeks start on Monday; week 1 holds the year's first Thursday). */
export const isoWeek = (date: string): string => {
  const d = new Date(`${date}T00:00:00Z`)
  const isoDay = d.getUTCDay() === 0 ? 7 : d.getUTCDay()
  // The Thursday of the same ISO week decides the year.
  const thursday = new Date(d.getTime() + (4 - isoDay) * DAY_MS)
  const year = thursday.getUTCFullYear()
  const week = Math.floor((thursday.getTime() - Date.UTC(year, 0, 1)) / (7 * DAY_MS)) + 1
  return `${year}-W${String(week).padStart(2, "0")}`
}

/**
 * The dedupe key of the report sent on local date `reportDay`: the ISO week of the report week's LAST day (the
 * day before the report day).
 *
 * Decision: with PROGRESS_DAY=monday the report week is exactly an ISO week (Monday to Sunday), so the key names
 * the week the report is about; with the default sunday the week runs Sunday to Saturday and the key names the
 * ISO week holding six of its seven days. Report days are 7 days apart, so their last days always fall in
 * different ISO weeks: one key per report. And an operator who moves PROGRESS_DAY later in the week (sunday to
 * monday) keeps the key of the week in progress, so nobody gets two reports for one ISO week. At the year's end,
 * the report on Sunday 2027-01-03 (covering 2026-12-27..2027-01-02) is `2026-W53`.
 */
export const weekKey = (reportDay: string): string => isoWeek(addDays(reportDay, -1))

/**
 * The report days (local dates) whose window is open at `asOf` in some time zone, with their week keys: each
 * UTC offset from -13 to +15 h in quarter hours whose local time, moved back to PROGRESS_LOCAL_TIME, is less
 * than the window's length past midnight on a PROGRESS_DAY. At most one date (report days are 7 days apart).
 */
export const openReportDays = (
  asOf: Date,
  settings: ProgressSettings
): ReadonlyArray<{ readonly day: string; readonly week: string }> => {
  const days = new Set<string>()
  const isoDay = WEEKDAYS.indexOf(settings.progressDay) + 1
  for (let offset = -13 * HOUR_MS; offset <= 15 * HOUR_MS; offset += QUARTER_HOUR_MS) {
    const shifted = new Date(asOf.getTime() + offset - settings.progressLocalTime * MINUTE_MS)
    const sinceMidnight = ((shifted.getTime() % DAY_MS) + DAY_MS) % DAY_MS
    const day = shifted.getUTCDay() === 0 ? 7 : shifted.getUTCDay()
    if (sinceMidnight < WINDOW_MINUTES * MINUTE_MS && day === isoDay) days.add(shifted.toISOString().slice(0, 10))
  }
  return [...days].map((day) => ({ day, week: weekKey(day) }))
}

/**
 * Instants that bound the report week of report day `day` (and the week before it) in every zone: local midnight
 * is at most 14 h before and 12 h after UTC midnight (15 and 13 here, for margin).
 */
export const sessionBounds = (day: string) => {
  const utcMidnight = (date: string) => Date.parse(`${date}T00:00:00Z`)
  return {
    previousFrom: new Date(utcMidnight(addDays(day, -14)) - 15 * HOUR_MS),
    weekFrom: new Date(utcMidnight(addDays(day, -7)) - 15 * HOUR_MS),
    weekTo: new Date(utcMidnight(day) + 13 * HOUR_MS)
  }
}

// The per-zone values the users' rows need: taken from the user's zone, or from DEFAULT_TIMEZONE's when
// PostgreSQL does not know the user's zone (the scalar subquery is an InitPlan, computed once).
const ZONE_FIELDS = ["open", "day", "week", "prev_start", "week_start", "week_end", "expires"] as const

/**
 * The set of candidates at `asOf`: due ones have a null skip_reason; `data` holds the week's figures.
 *
 * Shaped for a large population like the reminder's selection (bench/selection.ts: 1,000,000 users). Every time
 * zone is looked at once per statement: whether its window is open at t and, for open ones, the report day, the
 * week key and the UTC instants of the report week's local midnights (so DST weeks are 167 or 169 hours, and no
 * session's time zone is converted to decide whether it is in the week). The users, read once (by parallel
 * workers when PostgreSQL can use them), stop at the zone's window (all of them on six days of the week); those
 * left are matched against the users who practised in the week (one range of
 * the sessions' start-time index) and against the week's
 * ledger rows (those already planned on an earlier tick). The figures of the candidates left, those whose window
 * opened since the last tick, come from one more range of the same index (the two weeks), hashed against them;
 * the cap is looked up for them alone.
 *
 * Figures (decisions):
 * - minutes: the week's sum of duration_seconds (null counted as 0), in whole minutes rounded half up; the
 *   previous week's the same way;
 * - activeDays: distinct local dates (in the user's zone) of the week's sessions;
 * - topLanguage: the language with the most minutes in the week, then the most sessions, then the first
 *   alphabetically (byte order of the stored value, so the choice does not depend on the database's collation);
 * - changePercent: (minutes - previousMinutes) / previousMinutes x 100, rounded half away from zero, on the
 *   whole minutes the email shows (so the figures it prints agree with each other); null ("new this week")
 *   when the week before had no minutes.
 *
 * Over 60 lines on purpose: it is one SQL statement, read top to bottom; its named CTEs are its steps.
 */
export const selection = (
  { app, asOf, config, settings, sql }: Pick<Job.SelectionContext<ProgressSettings>, "sql" | "app" | "asOf" | "config" | "settings">
): Selection => {
  const isoDay = WEEKDAYS.indexOf(settings.progressDay) + 1
  const T = settings.progressLocalTime
  const open = openReportDays(asOf, settings)
  // No UTC offset has its window open (six days of the week, and the hours around them): nobody can be due, so the
  // tick reads nothing. `openReportDays` covers every offset a zone can have (quarter hours from -13 to +15 h),
  // and the statement below already depends on it for the week keys.
  // No key at all: the library reads nothing.
  if (open.length === 0) return { candidates: sql`SELECT NULL::text AS user_id, NULL::text AS dedupe_key`, keys: [], rows: () => sql`` }
  // Redundant with each user's own bounds, these tell the planner how few sessions can match, so it reads just
  // those through the sessions' start-time index.
  const { previousFrom, weekFrom, weekTo } = sessionBounds(open[0]?.day ?? asOf.toISOString().slice(0, 10))
  const zoneField = (f: (typeof ZONE_FIELDS)[number]) => sql`coalesce(z.${sql(f)}, (SELECT ${sql(f)} FROM fallback))`
  return {
    with: sql`
  zones_json AS MATERIALIZED (
    -- One jsonb value (it reaches parallel workers as a parameter): every zone PostgreSQL knows, and for the zones
    -- whose window is open, the report day, its week key and the instants of the local midnights that bound the
    -- report week and the week before it.
    SELECT jsonb_agg(CASE WHEN x.open THEN jsonb_build_object('name', z.name, 'open', true,
        'day', x.day::text,
        'week', to_char(x.day - 1, 'IYYY-"W"IW'),
        'prev_start', (x.day - 14)::timestamp AT TIME ZONE z.name,
        'week_start', (x.day - 7)::timestamp AT TIME ZONE z.name,
        'week_end', x.day::timestamp AT TIME ZONE z.name,
        'expires', (x.day + make_interval(mins => ${T + WINDOW_MINUTES})) AT TIME ZONE z.name)
      ELSE jsonb_build_object('name', z.name, 'open', false) END) AS zones
    FROM pg_timezone_names z,
      LATERAL (SELECT (${asOf}::timestamptz AT TIME ZONE z.name) - make_interval(mins => ${T}) AS shifted) s,
      LATERAL (SELECT s.shifted::date AS day,
        s.shifted::time < make_time(${WINDOW_MINUTES / 60}, 0, 0) AND extract(isodow FROM s.shifted) = ${isoDay} AS open) x
  ),
  zones AS NOT MATERIALIZED (
    SELECT * FROM jsonb_to_recordset((SELECT zones FROM zones_json)) AS z(name text, open boolean, day text, week text,
      prev_start timestamptz, week_start timestamptz, week_end timestamptz, expires timestamptz)
  ),
  -- Users whose time zone PostgreSQL does not know (or who have none) are served in DEFAULT_TIMEZONE.
  fallback AS NOT MATERIALIZED (SELECT * FROM zones WHERE name = ${config.defaultTimezone}),
  c0 AS NOT MATERIALIZED (
    SELECT u.user_id, u.app_id, u.email, u.display_name, u.email_verified,
      coalesce(z.name, ${config.defaultTimezone}) AS tz,
      (u.timezone IS NOT NULL AND z.name IS NULL) AS unknown_timezone,
      ${app.optIn(NAME)} AS opt_in,
      ${sql.csv(ZONE_FIELDS.map((f) => sql`${zoneField(f)} AS ${sql(f)}`))}
    FROM ${app.users} u
    LEFT JOIN zones z ON z.name = u.timezone
  )`,
    // Every open zone has the same report day (report days are 7 days apart), so the week's key is a constant:
    // only this week's reports are read from the ledger, hashed once.
    keys: open.map((o) => o.week),
    candidates: {
      select: sql`u.*, u.week AS dedupe_key`,
      from: sql`c0 u`,
      rules: [
        { reason: "not_report_time", holds: sql`u.open` },
        {
          reason: "no_practice_in_report_week",
          // practised in the report's week: the 7 local days before the report day, between local midnights
          holds: sql`EXISTS (
            SELECT 1 FROM ${app.sessions} s
            WHERE s.app_user_id = u.app_id AND s.start_raw >= ${app.at.start(weekFrom)} AND s.start_raw < ${app.at.start(weekTo)}
              AND s.start_raw >= ${app.rawStart(sql`u.week_start`)} AND s.start_raw < ${app.rawStart(sql`u.week_end`)})`
        }
      ]
    },
    // The candidates left (read twice, so PostgreSQL materializes them: a fence, so the sessions of only these
    // users are aggregated).
    rows: (fresh) => sql`
  WITH per_language AS (
    SELECT c1.app_id, s.language,
      count(*) FILTER (WHERE s.start_time >= c1.week_start) AS n,
      coalesce(sum(s.duration_seconds) FILTER (WHERE s.start_time >= c1.week_start), 0) AS seconds,
      coalesce(bit_or(1 << d.k)
        FILTER (WHERE s.start_time >= c1.week_start), 0) AS days,
      coalesce(sum(s.duration_seconds) FILTER (WHERE s.start_time < c1.week_start), 0) AS previous_seconds,
      -- seconds per local day of the week (0 = the first day), for the email's chart
      ${sql.csv([0, 1, 2, 3, 4, 5, 6].map((k) =>
      sql`coalesce(sum(s.duration_seconds) FILTER (WHERE s.start_time >= c1.week_start AND d.k = ${k}), 0) AS ${sql(`d${k}`)}`
    ))}
    FROM ${fresh} c1
    -- The fortnight's sessions of every zone (the constant bounds: one range of
    -- the sessions' start-time index), hashed against the few
    -- candidates left; then each candidate's own two weeks. A per-candidate index lookup would cost a random read
    -- each (~16,000 to 33,000 of them at 1,000,000 users); the range is one sequential read.
    JOIN ${app.sessions} s ON s.app_user_id = c1.app_id
      AND s.start_raw >= ${app.at.start(previousFrom)} AND s.start_raw < ${app.at.start(weekTo)}
      AND s.start_raw >= ${app.rawStart(sql`c1.prev_start`)} AND s.start_raw < ${app.rawStart(sql`c1.week_end`)}
    CROSS JOIN LATERAL (SELECT (s.start_time AT TIME ZONE c1.tz)::date - (c1.day::date - 7) AS k) d
    -- grouped by the app's own id: a 16-byte uuid on Kaiwa's shape sorts and hashes cheaper than its text
    GROUP BY c1.app_id, s.language
  ),
  figures AS (
    SELECT p.app_id, sum(p.n)::int AS sessions,
      round(sum(p.seconds) / 60.0)::int AS minutes,
      bit_count(bit_or(p.days)::bit(7))::int AS active_days,
      round(sum(p.previous_seconds) / 60.0)::int AS previous_minutes,
      (array_agg(p.language ORDER BY p.seconds DESC, p.n DESC, p.language COLLATE "C") FILTER (WHERE p.n > 0))[1]
        AS top_language,
      jsonb_build_array(${sql.csv([0, 1, 2, 3, 4, 5, 6].map((k) => sql`round(sum(p.${sql(`d${k}`)}) / 60.0)::int`))}) AS minutes_by_day
    FROM per_language p
    GROUP BY p.app_id
  )
  SELECT c.user_id, c.email, c.dedupe_key, c.email_verified, c.opt_in, c.unknown_timezone,
    jsonb_build_object(
      'displayName', c.display_name,
      'week', c.week,
      'weekStart', (c.day::date - 7)::text,
      'weekEnd', (c.day::date - 1)::text,
      'minutes', f.minutes,
      'sessions', f.sessions,
      'activeDays', f.active_days,
      'topLanguage', f.top_language,
      'previousMinutes', f.previous_minutes,
      'changePercent', CASE WHEN f.previous_minutes = 0 THEN NULL
        ELSE round((f.minutes - f.previous_minutes) * 100.0 / f.previous_minutes)::int END,
      'minutesByDay', f.minutes_by_day
    ) AS data,
    -- the instant the window closes: the report day at PROGRESS_LOCAL_TIME + 10 h, in the user's zone
    c.expires AS expires_at
  FROM ${fresh} c JOIN figures f USING (app_id)`
  }
}

/** The template inputs the selection stores on the ledger row (so a resumed batch renders the same email). */
export const WeeklyProgressData = Schema.Struct({
  displayName: Schema.NullOr(Schema.String),
  /** The dedupe key, e.g. `2026-W14`. */
  week: Schema.String,
  /** First and last local date of the report's week. */
  weekStart: Schema.String,
  weekEnd: Schema.String,
  minutes: Schema.Int,
  sessions: Schema.Int,
  activeDays: Schema.Int,
  topLanguage: Schema.NullOr(Schema.String),
  previousMinutes: Schema.Int,
  /** Change in minutes against the week before, in percent; null when the week before had none. */
  changePercent: Schema.NullOr(Schema.Int),
  /**
   * Whole minutes on each of the report week's 7 local days, in order from weekStart (the email's chart). Optional:
   * ledger rows written before it existed, and a selection that does not compute it, render without the chart.
   */
  minutesByDay: Schema.optional(Schema.Array(Schema.Int))
})
export type WeeklyProgressData = typeof WeeklyProgressData.Type

// One sample per variant of the email, for `kaiwa-jobs preview weekly-progress`.
const sample = (overrides: Partial<WeeklyProgressData>): WeeklyProgressData => ({
  displayName: "Aiko Tanaka",
  week: "2026-W11",
  weekStart: "2026-03-08",
  weekEnd: "2026-03-14",
  minutes: 45,
  sessions: 3,
  activeDays: 2,
  topLanguage: "ja",
  previousMinutes: 30,
  changePercent: 50,
  minutesByDay: [0, 15, 0, 20, 0, 0, 10],
  ...overrides
})

/** The template's input for one ledger row. */
const progressData = (data: WeeklyProgressData, appUrl: string, unsubscribeUrl: string, preferencesUrl: string): ProgressData => ({
  displayName: data.displayName,
  weekStart: data.weekStart,
  weekEnd: data.weekEnd,
  minutes: data.minutes,
  sessions: data.sessions,
  activeDays: data.activeDays,
  topLanguage: data.topLanguage,
  previousMinutes: data.previousMinutes,
  changePercent: data.changePercent,
  minutesByDay: data.minutesByDay,
  appUrl,
  unsubscribeUrl,
  preferencesUrl
})

/** The weekly progress report. */
export const weeklyProgress = Job.make({
  name: NAME,
  title: "Weekly progress report",
  description: "A summary of the learner's week (minutes, sessions, active days, top language, change), on PROGRESS_DAY from 08:00 their time.",
  list: "weekly progress reports",
  settings,
  data: WeeklyProgressData,
  selection,
  // A report the cross-job cap blocks is skipped for that week, not sent on a later tick.
  finalSkips: ["cap"],
  groups: ["sent"],
  group: () => "sent",
  render: (data, { config, unsubscribeUrl, preferencesUrl }) => {
    const email = renderProgress(progressData(data, config.appUrl, unsubscribeUrl, preferencesUrl))
    return { subject: email.subject, html: email.html, text: email.text, tags: [{ name: "trend", value: progressTrend(data) }] }
  },
  // Every trend, the singular, no minutes recorded, no language; with the per-day chart except where noted.
  samples: [
    { name: "weekly-progress-up", data: sample({}) },
    { name: "weekly-progress-down", data: sample({ minutes: 18, changePercent: -40, minutesByDay: [0, 6, 0, 12, 0, 0, 0] }) },
    { name: "weekly-progress-same", data: sample({ minutes: 30, changePercent: 0, minutesByDay: [0, 10, 0, 0, 20, 0, 0] }) },
    { name: "weekly-progress-new", data: sample({ previousMinutes: 0, changePercent: null }) },
    {
      name: "weekly-progress-one-session",
      data: sample({ minutes: 1, sessions: 1, activeDays: 1, previousMinutes: 0, changePercent: null, minutesByDay: [0, 0, 0, 1, 0, 0, 0] })
    },
    { name: "weekly-progress-no-minutes", data: sample({ minutes: 0, sessions: 2, changePercent: -100, minutesByDay: [0, 0, 0, 0, 0, 0, 0] }) },
    { name: "weekly-progress-no-language", data: sample({ topLanguage: null, displayName: null }) },
    { name: "weekly-progress-no-chart", data: sample({ minutesByDay: undefined }) }
  ],
  completedLine: "🎉 Weekly progress reports completed!",
  statsLine: (s) => `📊 Stats: ${s.sent} sent, ${s.failed} failed`
})
