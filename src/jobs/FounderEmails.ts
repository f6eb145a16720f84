/**
 * founder-emails, "Founder email sequence" (CONTRACT 5.2). Step k (1, 2, 3) is due for a user at instant t when
 * they are reachable, have never practised, signed up between k and k+1 days before t, it is between
 * FOUNDER_LOCAL_TIME and 4 hours later in their time zone, step k was never sent to them, and the cross-job
 * cap allows it. Sent from FOUNDER_FROM with Reply-To the same address.
 */
import { Effect, Schema } from "effect"
import type { SqlClient } from "effect/sql"
import type { Settings } from "../Config.ts"
import type { Candidate } from "../Database.ts"
import { type Recipient, RenderError } from "../Delivery.ts"
import type { OutgoingEmail } from "../Mailer.ts"
import { renderFounder } from "../emails/index.ts"
import { makeToken, unsubscribeHeaders, unsubscribeUrl } from "../Unsubscribe.ts"
import { capJoin, suppressed, usersAt, validEmail } from "./shared.ts"

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
    CASE
      WHEN c.email_verified IS NULL THEN 'unverified'
      WHEN NOT c.founder_opt_in THEN 'opted_out'
      WHEN NOT ${validEmail(sql, "c.email")} THEN 'invalid_email'
      WHEN ${suppressed(sql, NAME)} THEN 'suppressed'
      WHEN cap.hit THEN 'cap'
    END AS skip_reason,
    c.unknown_timezone
  FROM c
  ${capJoin(sql, asOf, config)}`

/** The template inputs stored on the ledger row. */
export const FounderData = Schema.Struct({
  displayName: Schema.NullOr(Schema.String),
  step: Schema.Literals([1, 2, 3])
})

const decode = Schema.decodeUnknownEffect(FounderData)

/** Renders one founder email, from and reply-to FOUNDER_FROM, with its unsubscribe link and headers. */
export const render = (config: Settings) => (recipient: Recipient): Effect.Effect<OutgoingEmail, RenderError> =>
  decode(recipient.data).pipe(
    Effect.mapError(() => new RenderError(`ledger data of user ${recipient.user_id} does not decode`)),
    Effect.map((data) => {
      const url = unsubscribeUrl(config.appUrl, makeToken(config.unsubscribeSecret, { userId: recipient.user_id, list: NAME }))
      const email = renderFounder({
        step: data.step,
        displayName: data.displayName,
        appUrl: config.appUrl,
        callUrl: config.founderCallUrl,
        unsubscribeUrl: url,
        founderName: config.founderName
      })
      return {
        from: config.founderFrom,
        to: recipient.email,
        replyTo: config.founderFrom,
        subject: email.subject,
        html: email.html,
        text: email.text,
        headers: unsubscribeHeaders(url),
        tags: [{ name: "job", value: NAME }, { name: "step", value: `day${data.step}` }]
      }
    })
  )

/** The stats key of a delivery: Day1, Day2 or Day3. */
export const stepOf = (recipient: Recipient): string => `Day${recipient.dedupe_key.replace("day", "")}`
