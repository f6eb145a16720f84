/**
 * win-back, the README's example job: a learner whose last conversation was 14 days ago gets one "pick up where
 * you left off" email, between 10:00 and 20:00 their time. As `WinBack.example.ts` it is in no registry and does
 * not ship; the README's "Adding a job" copies it to `WinBack.ts` and registers it.
 */
import { Schema } from "effect"
import { firstName, languageName } from "../emails/fields.ts"
import { link, renderEmail } from "../emails/html.ts"
import * as Job from "../job/Job.ts"

export const winBack = Job.make({
  name: "win-back",
  title: "Win-back email",
  description: "One email to learners whose last conversation was two weeks ago, from 10:00 their time.",
  list: "win-back emails",
  data: Schema.Struct({ displayName: Schema.NullOr(Schema.String), language: Schema.String }),
  // Who is due: learners whose last conversation began 14 to 15 days ago, between 10:00 and 20:00 their time.
  // The library adds the rest: one email per key (the lapse's first day), verified, opted in, not suppressed, the cap.
  selection: ({ app, asOf, config, sql }) => ({
    candidates: sql`
      SELECT u.user_id, u.email, u.display_name, u.email_verified, u.unknown_timezone, u.tz, last.language,
        ${app.optIn("win-back")} AS opt_in, to_char(last.start_time AT TIME ZONE 'UTC', 'YYYY-MM-DD') AS dedupe_key,
        (${asOf}::timestamptz AT TIME ZONE u.tz) AS local_now
      FROM ${app.usersIn(config.defaultTimezone)} u
      JOIN LATERAL (
        SELECT s.start_time, s.language FROM ${app.sessions} s
        WHERE s.app_user_id = u.app_id AND s.start_raw <= ${app.at.start(asOf)} ORDER BY s.start_raw DESC LIMIT 1
      ) last ON true
      WHERE last.start_time <= ${asOf}::timestamptz - interval '14 days'
        AND last.start_time > ${asOf}::timestamptz - interval '15 days'`,
    rows: (fresh) => sql`
      SELECT c.user_id, c.email, c.dedupe_key, c.email_verified, c.opt_in, c.unknown_timezone,
        jsonb_build_object('displayName', c.display_name, 'language', c.language) AS data,
        (c.local_now::date + time '20:00') AT TIME ZONE c.tz AS expires_at
      FROM ${fresh} c
      WHERE c.local_now::time >= time '10:00' AND c.local_now::time < time '20:00'`
  }),
  groups: ["sent"],
  group: () => "sent",
  // The template: data in, subject/HTML/text out; renderEmail escapes every string it is given.
  render: (data, { config, unsubscribeUrl, preferencesUrl }) =>
    renderEmail({
      subject: `Your ${languageName(data.language) ?? "language"} is waiting`,
      preheader: "Two weeks off is fine. Five minutes today brings it back.",
      greeting: `Hi ${firstName(data.displayName)},`,
      paragraphs: [["It has been two weeks since your last conversation. Pick up where you left off?"]],
      cta: link("Have a conversation", config.appUrl),
      closing: ["The Kaiwa team"],
      reason: "You get this because you practise on Kaiwa.",
      unsubscribe: link("Unsubscribe from win-back emails", unsubscribeUrl),
      preferencesUrl,
      appUrl: config.appUrl
    }),
  samples: [{ name: "win-back", data: { displayName: "Aiko Tanaka", language: "ja" } }]
})
