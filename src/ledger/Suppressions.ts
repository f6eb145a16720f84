/**
 * Suppressions, `kaiwa_jobs.suppressions`: who must not be emailed, on one list or (list `*`) on every list,
 * matched by user id and by address (an unsubscribe survives an address change, a bounce follows the address).
 * Reasons: `unsubscribed` (a learner's own choice, for lists the app has no column for, or when the app's row
 * could not be written), `hard_bounce`, `complaint`, `invalid_address` (the provider's word, never lifted by a
 * preference). The only module that names that table; the ledger gets the check as a fragment.
 */
import { Context, Effect, Layer, Schema } from "effect"
import { SqlClient, type Statement } from "effect/sql"
import { type DatabaseError, toDatabaseError } from "../database/Database.ts"
import { decodeRows, IdRow } from "./internal/rows.ts"

/** Why an address or user is suppressed, as `suppressions.reason` stores it (its CHECK, migration 0001). */
export const SuppressionReason = Schema.Literals(["unsubscribed", "hard_bounce", "complaint", "invalid_address"])
export type SuppressionReason = typeof SuppressionReason.Type

/** An address or user taken off a list (or, with list '*', every list). */
export interface Suppression {
  readonly userId: string | null
  readonly email: string | null
  readonly list: string
  readonly reason: SuppressionReason
  readonly now: Date
}

/** The list a suppression of every list is stored under. */
export const EVERY_LIST = "*"

/** Whether a suppression or preference stored for `stored` applies to `list` (its own, or every list). */
export const covers = (stored: string, list: string): boolean => stored === EVERY_LIST || stored === list

/** How a person reads a stored list: its name, or "every list". */
export const listLabel = (stored: string): string => stored === EVERY_LIST ? "every list" : stored

/** The lists an unsubscribe from every list is split into when one list comes back: the shipped jobs' names. */
const knownLists = new Set(["practice-reminders", "founder-emails", "weekly-progress"])

/** One suppression as the timeline and the preference center read it. */
export interface SuppressionRow {
  readonly list: string
  readonly reason: SuppressionReason
  readonly createdAt: Date
}

const StoredSuppression = Schema.Struct({ list: Schema.String, reason: SuppressionReason, created_at: Schema.Date })
const CreatedAt = Schema.Struct({ created_at: Schema.Date })

/**
 * Whether a user or address is suppressed for `list` (or for every list): a boolean SQL expression over the
 * caller's columns, so the ledger's statements can apply the rule without naming this module's table.
 */
export const suppressedFor = (sql: Statement.Constructor, list: Statement.Fragment | string, userId: Statement.Fragment, email: Statement.Fragment) => sql`(
  EXISTS (SELECT 1 FROM kaiwa_jobs.suppressions s WHERE s.user_id = ${userId} AND s.list IN ('*', ${list}))
  OR EXISTS (SELECT 1 FROM kaiwa_jobs.suppressions s WHERE lower(s.email) = lower(${email}) AND s.list IN ('*', ${list})))`

/** Who must not be emailed. */
export class Suppressions extends Context.Service<Suppressions, {
  /** Records a suppression; false when it was already there. */
  readonly suppress: (s: Suppression) => Effect.Effect<boolean, DatabaseError>
  /** Suppresses addresses (a bounce's or complaint's recipients) for every list, in the order given. */
  readonly suppressAddresses: (addresses: ReadonlyArray<string>, reason: "hard_bounce" | "complaint", at: Date) => Effect.Effect<void, DatabaseError>
  /** Suppresses several addresses for every list at once (the provider rejected them as invalid). */
  readonly suppressInvalid: (rows: ReadonlyArray<{ readonly userId: string; readonly email: string }>, now: Date) => Effect.Effect<void, DatabaseError>
  /**
   * Lifts a user's own unsubscribe from a list (never a bounce, complaint or invalid address). An unsubscribe from
   * every list becomes one per other list the user had not left, so only this list comes back.
   */
  readonly unsuppress: (userId: string, list: string) => Effect.Effect<void, DatabaseError>
  /** A user's suppressions, by id or by address, oldest first. */
  readonly of: (user: { readonly userId: string; readonly email: string | null }) => Effect.Effect<ReadonlyArray<SuppressionRow>, DatabaseError>
  /** The first suppression that applies to a list for a user or address, if any. */
  readonly firstFor: (user: { readonly userId: string; readonly email: string }, list: string) => Effect.Effect<SuppressionRow | undefined, DatabaseError>
}>()("kaiwa-jobs/Suppressions") {
  /** Over the SqlClient provided. */
  static readonly layer = Layer.effect(Suppressions, Effect.map(SqlClient.SqlClient, (sql) => make(sql)))
}

const make = (sql: SqlClient.SqlClient): Suppressions["Service"] => {
  const of = suppressionsOf(sql)
  return Suppressions.of({
    suppress: suppress(sql),
    suppressAddresses: suppressAddresses(sql),
    suppressInvalid: suppressInvalid(sql),
    unsuppress: unsuppress(sql),
    of,
    firstFor: (user, list) => Effect.map(of(user), (rows) => rows.find((r) => covers(r.list, list)))
  })
}

const suppress = (sql: SqlClient.SqlClient) => (s: Suppression) =>
  sql`
    INSERT INTO kaiwa_jobs.suppressions (user_id, email, list, reason, created_at)
    VALUES (${s.userId}, ${s.email === null ? null : s.email.toLowerCase()}, ${s.list}, ${s.reason}, ${s.now})
    ON CONFLICT ON CONSTRAINT suppressions_once DO NOTHING
    RETURNING id::text AS id`.pipe(
    decodeRows(IdRow),
    Effect.map((rows) => rows.length > 0),
    Effect.mapError(toDatabaseError("recording a suppression failed"))
  )

// An unsubscribe from every list, lifted for one list, becomes one unsubscribe per other list the user had not left.
const splitEveryList = (sql: SqlClient.SqlClient, userId: string, list: string) =>
  Effect.gen(function*() {
    const everyList = yield* sql`
      DELETE FROM kaiwa_jobs.suppressions WHERE user_id = ${userId} AND list = '*' AND reason = 'unsubscribed'
      RETURNING created_at`.pipe(decodeRows(CreatedAt))
    if (everyList[0] === undefined) return
    yield* sql`
      INSERT INTO kaiwa_jobs.suppressions (user_id, email, list, reason, created_at)
      SELECT ${userId}, NULL, j.list, 'unsubscribed', ${everyList[0].created_at}
      FROM unnest(${[...knownLists].filter((l) => l !== list)}::text[]) AS j(list)
      ON CONFLICT ON CONSTRAINT suppressions_once DO NOTHING`
  })

const unsuppress = (sql: SqlClient.SqlClient) => (userId: string, list: string) =>
  sql.withTransaction(Effect.gen(function*() {
    if (list !== EVERY_LIST) yield* splitEveryList(sql, userId, list)
    yield* sql`DELETE FROM kaiwa_jobs.suppressions WHERE user_id = ${userId} AND list = ${list} AND reason = 'unsubscribed'`
  })).pipe(Effect.mapError(toDatabaseError("lifting an unsubscribe failed")))

const suppressInvalid = (sql: SqlClient.SqlClient) =>
(rows: ReadonlyArray<{ readonly userId: string; readonly email: string }>, now: Date) =>
  rows.length === 0
    ? Effect.void
    : sql`
      INSERT INTO kaiwa_jobs.suppressions (user_id, email, list, reason, created_at)
      SELECT r.user_id, lower(r.email), '*', 'invalid_address', ${now}
      FROM unnest(${rows.map((r) => r.userId)}::text[], ${rows.map((r) => r.email)}::text[]) AS r(user_id, email)
      ON CONFLICT ON CONSTRAINT suppressions_once DO NOTHING`.pipe(
      Effect.asVoid,
      Effect.mapError(toDatabaseError("recording a suppression failed"))
    )

// In the order given: two events for the same addresses insert them alike, so they cannot deadlock on the index.
const suppressAddresses = (sql: SqlClient.SqlClient) =>
(addresses: ReadonlyArray<string>, reason: "hard_bounce" | "complaint", at: Date) =>
  sql`
    INSERT INTO kaiwa_jobs.suppressions (user_id, email, list, reason, created_at)
    SELECT NULL, a.email, '*', ${reason}, ${at}
    FROM unnest(${[...addresses]}::text[]) WITH ORDINALITY AS a(email, n)
    ORDER BY a.n
    ON CONFLICT ON CONSTRAINT suppressions_once DO NOTHING`.pipe(
    Effect.asVoid,
    Effect.mapError(toDatabaseError("recording a suppression failed"))
  )

const suppressionsOf = (sql: SqlClient.SqlClient) => (user: { readonly userId: string; readonly email: string | null }) =>
  sql`
    SELECT s.list, s.reason, s.created_at FROM kaiwa_jobs.suppressions s
    WHERE s.user_id = ${user.userId} OR (${user.email}::text IS NOT NULL AND lower(s.email) = lower(${user.email}))
    ORDER BY s.created_at, s.id`.pipe(
    decodeRows(StoredSuppression),
    Effect.map((rows) => rows.map((r): SuppressionRow => ({ list: r.list, reason: r.reason, createdAt: r.created_at }))),
    Effect.mapError(toDatabaseError("reading suppressions failed"))
  )
