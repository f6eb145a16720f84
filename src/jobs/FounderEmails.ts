/**
 * founder-emails, "Founder email sequence". Step k (1, 2, 3) is due for a user at instant t when
 * they are reachable, have never practised, signed up between k and k+1 days before t, it is between
 * FOUNDER_LOCAL_TIME and 4 hours later in their time zone, step k was never sent to them, and the cross-job
 * cap allows it. Sent from FOUNDER_FROM with Reply-To the same address.
 */
import { type Config, Schema } from "effect"
import * as Setting from "../config/Setting.ts"
import type { Selection } from "../database/Database.ts"
import { renderFounder } from "../emails/index.ts"
import * as Job from "../job/Job.ts"

/** The job's name, as used in the ledger, the CLI and the HTTP path. */
export const NAME = "founder-emails"

/** Length of the sending window after FOUNDER_LOCAL_TIME. */
export const WINDOW_MINUTES = 4 * 60

/**
 * The sequence's own setting: FOUNDER_LOCAL_TIME (default 14:00), when its window opens. FOUNDER_FROM, FOUNDER_NAME
 * and FOUNDER_CALL_URL are shared settings (Config.ts): they default from MAIL_FROM and APP_URL, and FOUNDER_NAME is
 * required only where this job can be sent live (docs/decisions.md, "Configuration").
 */
export const settings = Setting.every({ founderLocalTime: Setting.localTime("FOUNDER_LOCAL_TIME", 14 * 60) })
export type FounderSettings = Config.Success<typeof settings>

const HOUR_MS = 3_600_000

/** The earliest sign-up still in the sequence at `asOf` (signed up less than 96 hours before). */
const sequenceStart = (asOf: Date) => new Date(asOf.getTime() - 96 * HOUR_MS)

/**
 * The founder sequence's rule at `asOf` (the library adds the ledger check, the shared rules and the cap). The
 * sign-up range is on the app's own column (`app.at`), so its index serves it on either shape; a user with no
 * sign-up instant is never in the sequence (null is outside every range).
 */
export const selection = (
  { app, asOf, config, settings, sql }: Pick<Job.SelectionContext<FounderSettings>, "sql" | "app" | "asOf" | "config" | "settings">
): Selection => ({
  candidates: {
    select: sql`u.user_id, u.app_id, u.email, u.display_name, u.email_verified, u.created_at, u.tz, u.unknown_timezone,
      ${app.optIn(NAME)} AS opt_in, x.step, x.shifted, 'day' || x.step AS dedupe_key`,
    from: sql`${app.usersIn(config.defaultTimezone, sequenceStart(asOf))} u
      CROSS JOIN LATERAL (SELECT floor(extract(epoch FROM ${asOf}::timestamptz - u.created_at) / 86400)::int AS step,
        (${asOf}::timestamptz AT TIME ZONE u.tz) - make_interval(mins => ${settings.founderLocalTime}) AS shifted) x`,
    rules: [
      {
        reason: "not_in_founder_days",
        holds: sql`u.created_raw <= ${app.at.created(new Date(asOf.getTime() - 24 * HOUR_MS))}
          AND u.created_raw > ${app.at.created(sequenceStart(asOf))}`
      },
      { reason: "outside_local_window", holds: sql`x.shifted::time < make_time(${WINDOW_MINUTES / 60}, 0, 0)` },
      {
        reason: "has_practised",
        holds: sql`NOT EXISTS (SELECT 1 FROM ${app.sessions} s WHERE s.app_user_id = u.app_id AND s.start_raw <= ${app.at.start(asOf)})`
      }
    ]
  },
  rows: (fresh) => sql`
    SELECT c.user_id, c.email, c.dedupe_key, c.email_verified, c.opt_in, c.unknown_timezone,
      jsonb_build_object('displayName', c.display_name, 'step', c.step) AS data,
      least(
        c.created_at + make_interval(days => c.step + 1),
        (c.shifted::date + make_interval(mins => ${settings.founderLocalTime + WINDOW_MINUTES})) AT TIME ZONE c.tz
      ) AS expires_at
    FROM ${fresh} c`
})

/** The template inputs stored on the ledger row. */
export const FounderData = Schema.Struct({
  displayName: Schema.NullOr(Schema.String),
  step: Schema.Literals([1, 2, 3])
})

/** The founder email sequence: Day1, Day2 and Day3, from and reply-to FOUNDER_FROM. */
export const founderEmails = Job.make({
  name: NAME,
  title: "Founder email sequence",
  description: "Day 1, 2 and 3 emails from the founder to new learners who have not had a conversation yet.",
  list: "emails from the Kaiwa founder",
  main: "dist/send-founder-emails.js",
  settings,
  data: FounderData,
  selection,
  groups: ["Day1", "Day2", "Day3"],
  group: (data) => `Day${data.step}` as const,
  render: (data, { config, unsubscribeUrl, preferencesUrl }) => ({
    ...renderFounder({
      step: data.step,
      displayName: data.displayName,
      appUrl: config.appUrl,
      callUrl: config.founderCallUrl,
      unsubscribeUrl,
      preferencesUrl,
      founderName: config.founderName
    }),
    from: config.founderFrom,
    replyTo: config.founderFrom,
    tags: [{ name: "step", value: `day${data.step}` }]
  }),
  samples: ([1, 2, 3] as const).map((step) => ({ name: `founder-day${step}`, data: { displayName: "Aiko Tanaka", step } })),
  completedLine: "🎉 Founder email sequence completed!",
  statsLine: (s) => `📊 Stats: Day1=${s.Day1}, Day2=${s.Day2}, Day3=${s.Day3}`
})
