/**
 * founder-emails, "Founder email sequence" (CONTRACT 5.2). Step k (1, 2, 3) is due for a user at instant t when
 * they are reachable, have never practised, signed up between k and k+1 days before t, it is between
 * FOUNDER_LOCAL_TIME and 4 hours later in their time zone, step k was never sent to them, and the cross-job
 * cap allows it. Sent from FOUNDER_FROM with Reply-To the same address.
 */
import { Schema } from "effect"
import type { SqlClient } from "effect/sql"
import type { Settings } from "../Config.ts"
import type { Candidate } from "../Database.ts"
import { renderFounder } from "../emails/index.ts"
import * as Job from "../Job.ts"
import { capJoin, skipReason, usersAt } from "./shared.ts"

/** The job's name, as used in the ledger, the CLI and the HTTP path. */
export const NAME = "founder-emails"

/** Length of the sending window after FOUNDER_LOCAL_TIME. */
export const WINDOW_MINUTES = 4 * 60

/** The set of candidates at `asOf`: due ones have a null skip_reason. */
export const selection = (sql: SqlClient.SqlClient, asOf: Date, config: Settings) => sql<Candidate>`
  WITH c0 AS (
    SELECT u.*,
      floor(extract(epoch FROM ${asOf}::timestamptz - u.created_at) / 86400)::int AS step,
      (${asOf}::timestamptz AT TIME ZONE u.tz) - make_interval(mins => ${config.founderLocalTime}) AS shifted
    FROM (${usersAt(sql, config)}) u
    WHERE u.created_at <= ${asOf}::timestamptz - interval '24 hours'
      AND u.created_at > ${asOf}::timestamptz - interval '96 hours'
  ),
  c AS (
    SELECT c0.* FROM c0
    WHERE c0.shifted::time < make_time(${WINDOW_MINUTES / 60}, 0, 0)
      AND NOT EXISTS (SELECT 1 FROM conversation_sessions s WHERE s.user_id = c0.user_id AND s.start_time <= ${asOf})
      AND NOT EXISTS (
        SELECT 1 FROM kaiwa_jobs.deliveries d
        WHERE d.job = ${NAME} AND d.user_id = c0.user_id AND d.dedupe_key = 'day' || c0.step)
  )
  SELECT c.user_id, c.email, 'day' || c.step AS dedupe_key,
    jsonb_build_object('displayName', c.display_name, 'step', c.step) AS data,
    least(
      c.created_at + make_interval(days => c.step + 1),
      (c.shifted::date + make_interval(mins => ${config.founderLocalTime + WINDOW_MINUTES})) AT TIME ZONE c.tz
    ) AS expires_at,
    ${skipReason(sql, NAME, { optIn: "c.founder_opt_in" })} AS skip_reason,
    c.unknown_timezone
  FROM c
  ${capJoin(sql, asOf, config)}`

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
  data: FounderData,
  selection: ({ asOf, config, sql }) => selection(sql, asOf, config),
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
