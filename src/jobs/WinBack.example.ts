/**
 * win-back (the README's example job; not in the registry, so it does not ship): a learner whose last
 * conversation was 14 days ago gets one "pick up where you left off" email, between 10:00 and 20:00 their time.
 */
import { Schema } from "effect"
import type { Candidate } from "../Database.ts"
import { firstName, languageName } from "../emails/fields.ts"
import { link, renderEmail } from "../emails/html.ts"
import * as Job from "../Job.ts"
import { capJoin, skipReason, usersAt } from "./shared.ts"

export const winBack = Job.make({
  name: "win-back",
  title: "Win-back email",
  description: "One email to learners whose last conversation was two weeks ago, from 10:00 their time.",
  list: "win-back emails",
  data: Schema.Struct({ displayName: Schema.NullOr(Schema.String), language: Schema.String }),
  // Who is due, in one statement: due rows have a null skip_reason; the dedupe key is the lapse's first day.
  selection: ({ asOf, config, sql }) => sql<Candidate>`
    WITH c AS (
      SELECT u.*, last.language, to_char(last.start_time AT TIME ZONE 'UTC', 'YYYY-MM-DD') AS lapse,
        (${asOf}::timestamptz AT TIME ZONE u.tz) AS local_now
      FROM (${usersAt(sql, config)}) u
      JOIN LATERAL (
        SELECT s.start_time, s.language FROM conversation_sessions s
        WHERE s.user_id = u.user_id AND s.start_time <= ${asOf} ORDER BY s.start_time DESC LIMIT 1
      ) last ON true
      WHERE last.start_time <= ${asOf}::timestamptz - interval '14 days'
        AND last.start_time > ${asOf}::timestamptz - interval '15 days'
    )
    SELECT c.user_id, c.email, c.lapse AS dedupe_key,
      jsonb_build_object('displayName', c.display_name, 'language', c.language) AS data,
      (c.local_now::date + time '20:00') AT TIME ZONE c.tz AS expires_at,
      ${skipReason(sql, "win-back")} AS skip_reason,
      c.unknown_timezone
    FROM c
    ${capJoin(sql, asOf, config)}
    WHERE c.local_now::time >= time '10:00' AND c.local_now::time < time '20:00'
      AND NOT EXISTS (SELECT 1 FROM kaiwa_jobs.deliveries d
        WHERE d.job = 'win-back' AND d.user_id = c.user_id AND d.dedupe_key = c.lapse)`,
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
