/**
 * SQL pieces both jobs' selections share: who a user is at an instant (resolved time zone, opt-ins), whether an
 * address is usable, suppressed, or inside the cross-job cap. Each job's own file says who is due.
 */
import type { SqlClient } from "effect/sql"
import type { Settings } from "../Config.ts"

/** Users with their resolved time zone (`users.timezone` when PostgreSQL knows it, else DEFAULT_TIMEZONE) and opt-ins. */
export const usersAt = (sql: SqlClient.SqlClient, config: Settings) => sql`
  SELECT u.id AS user_id, u.email, u.display_name, u.created_at, u.email_verified,
    coalesce(z.name, ${config.defaultTimezone}) AS tz,
    (u.timezone IS NOT NULL AND z.name IS NULL) AS unknown_timezone,
    coalesce(us.receive_practice_reminders, true) AS reminders_opt_in,
    coalesce(us.receive_founder_emails, true) AS founder_opt_in
  FROM users u
  LEFT JOIN (SELECT name FROM pg_timezone_names) z ON z.name = u.timezone
  LEFT JOIN user_settings us ON us.user_id = u.id`

// Deliberately loose: one @, no spaces or angle brackets, a dot in the domain. The provider does the real check;
// this only keeps rows that cannot be an address (empty, "n/a", "bob@") out of a batch.
export const validEmail = (sql: SqlClient.SqlClient, column: string) =>
  sql`(length(${sql(column)}) BETWEEN 3 AND 254 AND ${sql(column)} ~ '^[^@[:space:]<>(),;:"]+@[^@[:space:]<>(),;:"]+\\.[^@[:space:]<>(),;:".]+$')`

/** The address or user is suppressed for `list` (or for every list). */
export const suppressed = (sql: SqlClient.SqlClient, list: string) => sql`(
  EXISTS (SELECT 1 FROM kaiwa_jobs.suppressions s WHERE s.user_id = c.user_id AND s.list IN ('*', ${list}))
  OR EXISTS (SELECT 1 FROM kaiwa_jobs.suppressions s WHERE lower(s.email) = lower(c.email) AND s.list IN ('*', ${list})))`

/**
 * Why a candidate row `c` is not due, or NULL when it is: the rules every job shares (CONTRACT 5, reachable, and
 * the cap), in the order a person would check them. Needs `c.email_verified`, `c.email`, `c.user_id`, the opt-in
 * column when the job has one, and `capJoin` in the FROM clause.
 */
export const skipReason = (sql: SqlClient.SqlClient, list: string, options: { readonly optIn?: string } = {}) => sql`CASE
      WHEN c.email_verified IS NULL THEN 'unverified'
      ${options.optIn === undefined ? sql.literal("") : sql`WHEN NOT ${sql(options.optIn)} THEN 'opted_out'`}
      WHEN NOT ${validEmail(sql, "c.email")} THEN 'invalid_email'
      WHEN ${suppressed(sql, list)} THEN 'suppressed'
      WHEN cap.hit THEN 'cap'
    END`

/**
 * A LATERAL join exposing `cap.hit` when the user got (or is about to get) an email from this library less than
 * MIN_HOURS_BETWEEN_EMAILS before `asOf`: one range of deliveries_cap_idx per candidate, which indexes exactly
 * this predicate (status and the instant compared), so a user's older emails are never read.
 */
export const capJoin = (sql: SqlClient.SqlClient, asOf: Date, config: Settings) => sql`
  LEFT JOIN LATERAL (
    SELECT true AS hit FROM kaiwa_jobs.deliveries d
    WHERE d.user_id = c.user_id AND d.status IN ('pending', 'sent')
      AND coalesce(d.sent_at, d.planned_at) > ${asOf}::timestamptz - make_interval(secs => ${config.minHoursBetweenEmails * 3600})
    LIMIT 1
  ) cap ON true`
