/**
 * Why a job is or is not due for some learners (`kaiwa-jobs why`), from the very fragments a run composes, and
 * the learner's timeline of emails. Internal to `src/ledger/`; `Ledger` offers both.
 */
import { Effect } from "effect"
import type { SqlClient } from "effect/sql"
import { type DatabaseError, toDatabaseError } from "../../database/Database.ts"
import type { Decision, Learner, Selection, SelectionArgs } from "../Ledger.ts"
import { listLabel, type Suppressions } from "../Suppressions.ts"
import { selectionOf } from "./planning.ts"
import { Candidate, CapRow, decodeRows, OwnRow, PlannedRow, type SkipReason, TimelineEntry } from "./rows.ts"

const HOUR_MS = 3_600_000

/** The local wall clock of an instant in a zone, e.g. `Tue 2026-03-10 07:15 Europe/Paris`. */
export const localTimeIn = (at: Date, zone: string): string => {
  try {
    const parts = new Intl.DateTimeFormat("en-CA", {
      timeZone: zone, weekday: "short", year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", hourCycle: "h23"
    }).formatToParts(at)
    const get = (t: string) => parts.find((p) => p.type === t)?.value ?? ""
    return `${get("weekday")} ${get("year")}-${get("month")}-${get("day")} ${get("hour")}:${get("minute")} ${zone}`
  } catch {
    return `${at.toISOString()} (zone ${zone} unknown)`
  }
}

const SHARED_DETAIL: Readonly<Record<Exclude<SkipReason, "suppressed" | "cap">, string>> = {
  unverified: "the learner has not verified their address",
  opted_out: "the learner turned this list off (the app's email preferences)",
  invalid_email: "the address cannot be an email address"
}

type OwnRow = typeof OwnRow.Type

/** What the job's own rules say of one learner: the first rule that excluded them, or their row. */
type OwnRules =
  | { readonly _tag: "Excluded"; readonly decision: Decision }
  | { readonly _tag: "Candidate"; readonly row: OwnRow }

const userIdOf = (row: OwnRow) => String(row["user_id"])
const keyOf = (row: OwnRow) => String(row["dedupe_key"])

/** The job's own rows for some learners, with whether each named rule holds (`rule_0`, `rule_1`, ...). */
const ownRows = (sql: SqlClient.SqlClient, sel: Selection, ids: ReadonlyArray<string>) => {
  const c = sel.candidates
  const withClause = sel.with === undefined ? sql.literal("") : sql`WITH ${sel.with}`
  if (!("select" in c)) return sql`${withClause} SELECT x.* FROM (${c}) x WHERE x.user_id IN ${sql.in(ids)}`.pipe(decodeRows(OwnRow))
  const holds = c.rules.map((r, i) => sql`coalesce((${r.holds}), false) AS ${sql(`rule_${i}`)}`)
  return sql`${withClause}
    SELECT ${c.select}${holds.length === 0 ? sql.literal("") : sql`, ${sql.csv(holds)}`}
    FROM ${c.from} WHERE u.user_id IN ${sql.in(ids)}`.pipe(decodeRows(OwnRow))
}

/** One learner's verdict from their rows: the first that passes every rule, else the first rule that fails. */
const verdictOf = (mine: ReadonlyArray<OwnRow>, sel: Selection, asOf: Date): OwnRules => {
  const rules = "select" in sel.candidates ? sel.candidates.rules : []
  // A learner may have several keys (founder steps); the first that passes every rule is the one at stake.
  const passing = mine.find((row) => rules.every((_, i) => row[`rule_${i}`] === true))
  if (passing !== undefined) return { _tag: "Candidate", row: passing }
  const row = mine[0]!
  const failed = rules.findIndex((_, i) => row[`rule_${i}`] !== true)
  const zone = row["tz"]
  return {
    _tag: "Excluded",
    decision: {
      due: false,
      reason: rules[failed]!.reason,
      detail: typeof zone === "string" ? `the learner's local time is ${localTimeIn(asOf, zone)}` : "",
      key: row["dedupe_key"] === null || row["dedupe_key"] === undefined ? null : keyOf(row)
    }
  }
}

/** The job's own named rules for some learners: for each, the first rule that does not hold, or their row. */
const ownRules = (sql: SqlClient.SqlClient, sel: Selection, ids: ReadonlyArray<string>, asOf: Date) =>
  Effect.map(ownRows(sql, sel, ids), (rows) => {
    const byUser = new Map<string, Array<OwnRow>>()
    for (const row of rows) byUser.set(userIdOf(row), [...(byUser.get(userIdOf(row)) ?? []), row])
    return new Map([...byUser].map(([userId, mine]) => [userId, verdictOf(mine, sel, asOf)] as const))
  })

/** The candidates' ledger rows for their keys, if any (`already_planned_for_key`). */
const plannedFor = (sql: SqlClient.SqlClient, job: string, candidates: ReadonlyArray<OwnRow>) =>
  candidates.length === 0 ? Effect.succeed([]) : sql`
    SELECT d.user_id, d.dedupe_key, d.status, d.reason, d.planned_at, d.sent_at FROM kaiwa_jobs.deliveries d
    JOIN unnest(${candidates.map(userIdOf)}::text[], ${candidates.map(keyOf)}::text[]) AS k(user_id, dedupe_key)
      ON d.user_id = k.user_id AND d.dedupe_key = k.dedupe_key
    WHERE d.job = ${job}`.pipe(decodeRows(PlannedRow))

/** The whole selection's rows for some learners: the shared rules and the cap, as a run applies them. */
const selectedFor = (sql: SqlClient.SqlClient, args: SelectionArgs, userIds: ReadonlyArray<string>) =>
  userIds.length === 0 ? Effect.succeed([]) : sql`
    SELECT q.* FROM (${selectionOf(sql)(args)}) q WHERE q.user_id IN ${sql.in(userIds)}`.pipe(decodeRows(Candidate))

/**
 * Why a job is or is not due for each of some learners, checked in the order a run applies its rules, each with
 * the very fragments the run composes (never a second implementation): the job's own named rules, the ledger's
 * once per key, the job's late rule, then the shared rules and the cap (the whole statement, restricted to these
 * learners). Set-based: a handful of statements whatever the number of learners.
 */
export const explainOf = (sql: SqlClient.SqlClient, suppressions: Suppressions["Service"]) =>
  (args: SelectionArgs, learners: ReadonlyArray<Learner>): Effect.Effect<ReadonlyArray<Decision>, DatabaseError> =>
    Effect.gen(function*() {
      const sel = args.selection
      if (sel.keys !== undefined && sel.keys.length === 0) {
        return learners.map((): Decision => ({ due: false, reason: "no_window_open", detail: "this job's window is not open in any time zone at this instant", key: null }))
      }
      if (learners.length === 0) return []
      const own = yield* ownRules(sql, sel, learners.map((l) => l.userId), args.asOf)
      const candidates = [...own.values()].flatMap((o) => o._tag === "Candidate" ? [o.row] : [])
      const plannedBy = new Map((yield* plannedFor(sql, args.job, candidates)).map((p) => [p.user_id, p] as const))
      const rest = candidates.map(userIdOf).filter((id) => !plannedBy.has(id))
      const rowBy = new Map((yield* selectedFor(sql, args, rest)).map((r) => [r.user_id, r] as const))
      return yield* Effect.forEach(learners, (learner) => {
        const o = own.get(learner.userId)
        if (o === undefined) return Effect.succeed(notSelected("the job's own rules leave this learner out", null))
        if (o._tag === "Excluded") return Effect.succeed(o.decision)
        const key = keyOf(o.row)
        const p = plannedBy.get(learner.userId)
        if (p !== undefined) return Effect.succeed(alreadyPlanned(p, key))
        const row = rowBy.get(learner.userId)
        if (row === undefined) return Effect.succeed(notSelected("the job's own rule leaves this learner out", key, sel.rowsRule))
        if (row.skip_reason === null) return Effect.succeed<Decision>({ due: true, reason: "due", detail: `an email for ${key} would be planned`, key })
        const reason = row.skip_reason
        return Effect.map(sharedDetail(sql, suppressions, args, learner, reason), (detail): Decision => ({ due: false, reason, detail, key }))
      })
    }).pipe(Effect.mapError(toDatabaseError("explaining a decision failed")))

const notSelected = (detail: string, key: string | null, reason = "not_selected"): Decision => ({ due: false, reason, detail, key })

const alreadyPlanned = (p: typeof PlannedRow.Type, key: string): Decision => ({
  due: false,
  reason: "already_planned_for_key",
  detail: `${p.status} for ${key} (planned ${p.planned_at.toISOString()}${p.sent_at ? `, sent ${p.sent_at.toISOString()}` : ""}${p.reason ? `, ${p.reason}` : ""})`,
  key
})

/** The email that holds a learner's cap at `asOf`, if any. */
const capHolder = (sql: SqlClient.SqlClient, userId: string, asOf: Date, hours: number) =>
  sql`
    SELECT job, dedupe_key, status, coalesce(sent_at, planned_at) AS at FROM kaiwa_jobs.deliveries
    WHERE user_id = ${userId} AND status IN ('pending', 'sent')
      AND coalesce(sent_at, planned_at) > ${asOf}::timestamptz - make_interval(secs => ${hours * 3600})
      AND coalesce(sent_at, planned_at) <= ${asOf}::timestamptz
    ORDER BY at DESC LIMIT 1`.pipe(decodeRows(CapRow), Effect.map((rows) => rows[0]))

/** What a person needs to know about a shared rule's skip: which suppression, which email holds the cap. */
const sharedDetail = (
  sql: SqlClient.SqlClient,
  suppressions: Suppressions["Service"],
  args: SelectionArgs,
  user: Learner,
  reason: SkipReason
) =>
  Effect.gen(function*() {
    if (reason === "suppressed") {
      const first = yield* suppressions.firstFor(user, args.list)
      return first === undefined ? "suppressed" : `${first.reason} (${listLabel(first.list)}) since ${first.createdAt.toISOString()}`
    }
    if (reason === "cap") {
      const hours = args.minHoursBetweenEmails
      const first = yield* capHolder(sql, user.userId, args.asOf, hours)
      return first === undefined
        ? "another email is inside the cap"
        : `${first.job} (${first.dedupe_key}) ${first.status} at ${first.at.toISOString()}; the cap ends at ${new Date(first.at.getTime() + hours * HOUR_MS).toISOString()}`
    }
    return SHARED_DETAIL[reason]
  })

/** The learner's emails, newest first: planned, then sent, skipped or failed, then what became of each. */
export const timelineOf = (sql: SqlClient.SqlClient) => (userId: string) =>
  sql`
    SELECT planned_at AS at, 'planned' AS kind, job, dedupe_key AS detail FROM kaiwa_jobs.deliveries WHERE user_id = ${userId}
    UNION ALL
    SELECT coalesce(sent_at, planned_at), status, job, dedupe_key || coalesce(': ' || reason, '')
    FROM kaiwa_jobs.deliveries WHERE user_id = ${userId} AND status <> 'pending'
    UNION ALL
    SELECT delivery_state_at, delivery_state, job, dedupe_key
    FROM kaiwa_jobs.deliveries WHERE user_id = ${userId} AND delivery_state IS NOT NULL
    ORDER BY 1 DESC, 2`.pipe(
    decodeRows(TimelineEntry),
    Effect.mapError(toDatabaseError("reading the learner's timeline failed"))
  )
