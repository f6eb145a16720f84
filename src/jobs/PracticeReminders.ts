/**
 * practice-reminders, "Daily practice reminders" (CONTRACT 5.1). A reminder is due for a user at instant t when
 * they are reachable, it is between REMINDER_LOCAL_TIME and 12 hours later in their time zone, they have not
 * practised in the last 24 hours, they signed up at least 24 hours ago and are not in the founder sequence, they
 * got no reminder for this local date, and the cross-job cap allows it. One SQL statement decides it for everyone.
 */
import { Effect, Schema } from "effect"
import type { SqlClient } from "effect/sql"
import type { Settings } from "../Config.ts"
import type { Candidate } from "../Database.ts"
import { type Recipient, RenderError } from "../Delivery.ts"
import type { OutgoingEmail } from "../Mailer.ts"
import { renderReminder } from "../emails/index.ts"
import { makeToken, unsubscribeHeaders, unsubscribeUrl } from "../Unsubscribe.ts"
import { capJoin, suppressed, validEmail } from "./shared.ts"

/** The job's name, as used in the ledger, the CLI and the HTTP path. */
export const NAME = "practice-reminders"

/** Length of the sending window after REMINDER_LOCAL_TIME: late ticks still send, nights never. */
export const WINDOW_MINUTES = 12 * 60

/** The set of candidates at `asOf`: due ones have a null skip_reason. */
export const selection = (sql: SqlClient.SqlClient, asOf: Date, config: Settings) => sql<Candidate>`
  WITH zones AS NOT MATERIALIZED (
    -- Everything that depends on local time is computed once per time zone, not once per user: whether the
    -- window is open, the local date it opened on (the dedupe key), and the instant it closes.
    SELECT z.name, x.shifted::time < make_time(${WINDOW_MINUTES / 60}, 0, 0) AS in_window,
      x.shifted::date::text AS local_day,
      (x.shifted::date + make_interval(mins => ${config.reminderLocalTime + WINDOW_MINUTES})) AT TIME ZONE z.name AS window_end
    FROM pg_timezone_names z,
      LATERAL (SELECT (${asOf}::timestamptz AT TIME ZONE z.name) - make_interval(mins => ${config.reminderLocalTime}) AS shifted) x
  ),
  c1 AS (
    SELECT u.id AS user_id, u.email, u.display_name, u.created_at, u.email_verified, w.name AS tz,
      (u.timezone IS NOT NULL AND z.name IS NULL) AS unknown_timezone,
      coalesce(us.receive_practice_reminders, true) AS reminders_opt_in,
      coalesce(us.receive_founder_emails, true) AS founder_opt_in,
      w.local_day, w.window_end
    FROM users u
    LEFT JOIN zones z ON z.name = u.timezone
    JOIN zones w ON w.name = coalesce(z.name, ${config.defaultTimezone})
    LEFT JOIN user_settings us ON us.user_id = u.id
    WHERE w.in_window
      AND u.created_at <= ${asOf}::timestamptz - interval '24 hours'
      AND NOT EXISTS (
        SELECT 1 FROM conversation_sessions s
        WHERE s.user_id = u.id AND s.start_time > ${asOf}::timestamptz - interval '24 hours' AND s.start_time <= ${asOf})
      AND NOT EXISTS (
        SELECT 1 FROM kaiwa_jobs.deliveries d
        WHERE d.job = ${NAME} AND d.user_id = u.id AND d.dedupe_key = w.local_day
          AND d.planned_at > ${asOf}::timestamptz - interval '3 days')
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
    WHERE NOT (last.start_time IS NULL AND c1.created_at > ${asOf}::timestamptz - interval '96 hours' AND c1.founder_opt_in)
  )
  SELECT c.user_id, c.email, c.local_day AS dedupe_key,
    jsonb_build_object(
      'displayName', c.display_name,
      'language', c.last_language,
      'daysSince', CASE WHEN c.last_start IS NULL THEN NULL
        ELSE floor(extract(epoch FROM ${asOf}::timestamptz - c.last_start) / 86400)::int END,
      'localDate', c.local_day
    ) AS data,
    c.window_end AS expires_at,
    CASE
      WHEN c.email_verified IS NULL THEN 'unverified'
      WHEN NOT c.reminders_opt_in THEN 'opted_out'
      WHEN NOT ${validEmail(sql, "c.email")} THEN 'invalid_email'
      WHEN ${suppressed(sql, NAME)} THEN 'suppressed'
      WHEN cap.hit THEN 'cap'
    END AS skip_reason,
    c.unknown_timezone
  FROM c
  ${capJoin(sql, asOf, config)}`

/** The template inputs stored on the ledger row, so a resumed batch renders the same email. */
export const ReminderData = Schema.Struct({
  displayName: Schema.NullOr(Schema.String),
  language: Schema.NullOr(Schema.String),
  daysSince: Schema.NullOr(Schema.Number),
  localDate: Schema.String
})

const decode = Schema.decodeUnknownEffect(ReminderData)

/** Renders one reminder with its unsubscribe link and headers. */
export const render = (config: Settings) => (recipient: Recipient): Effect.Effect<OutgoingEmail, RenderError> =>
  decode(recipient.data).pipe(
    Effect.mapError(() => new RenderError(`ledger data of user ${recipient.user_id} does not decode`)),
    Effect.map((data) => {
      const url = unsubscribeUrl(config.appUrl, makeToken(config.unsubscribeSecret, { userId: recipient.user_id, list: NAME }))
      const email = renderReminder({
        displayName: data.displayName,
        language: data.language,
        daysSinceLastSession: data.daysSince,
        appUrl: config.appUrl,
        unsubscribeUrl: url
      })
      return {
        from: config.mailFrom,
        to: recipient.email,
        subject: email.subject,
        html: email.html,
        text: email.text,
        headers: unsubscribeHeaders(url),
        tags: [{ name: "job", value: NAME }]
      }
    })
  )
