/**
 * `kaiwa-jobs send-test <job> --to ADDR [--as <learner>] [--sample NAME]`: one copy of a job's email,
 * sent through the stack's mailer (Resend in live mode) to the given address only, so an operator can see what a
 * learner would get. It renders through the job's real render path:
 * - `--as`: the learner's own data at the instant, from the job's selection statement filtered to that learner
 *   (the run's own SQL), whether or not they are due; a learner the job has no row for (never a candidate, or this
 *   key already sent) gets the job's first sample instead, and the result says so;
 * - `--sample NAME`: that sample, as `preview` renders it; neither: the first sample.
 * The copy's subject starts with `[test] `, it carries the tag `test=true`, and its unsubscribe and preference
 * links cannot be used (the copy goes to an operator, who must not unsubscribe the learner by clicking). It is
 * never written to the ledger, so it never counts in the cross-job cap, the dedupe keys or the delivery health.
 */
import { randomUUID } from "node:crypto"
import { Effect, Option, Schema } from "effect"
import { SqlClient, SqlSchema, type Statement } from "effect/sql"
import { AppTables } from "../database/App.ts"
import { JobsConfig, parseMailbox } from "../config/Config.ts"
import type * as Job from "../job/Job.ts"
import { Mailer, type OutgoingEmail } from "../mail/Mailer.ts"

/** A send-test that cannot be done as asked (exit 2 on the command line). */
export class SendTestError extends Schema.TaggedError<SendTestError>()("SendTestError", {
  message: Schema.String
}) {}

/** What to send. */
export interface SendTestOptions {
  readonly job: Job.Any
  readonly to: string
  readonly as?: string | undefined
  readonly sample?: string | undefined
  readonly asOf: Date
}

/** What was sent. */
export interface SendTestResult {
  readonly to: string
  readonly subject: string
  /** Where the email's data came from, for the operator. */
  readonly source: string
  /** The provider's answer. */
  readonly providerId: string | null
}

/** The prefix of every test email's subject. */
export const SUBJECT_PREFIX = "[test] "

/** The tag every test email carries besides `job=<name>`. */
export const TEST_TAG = { name: "test", value: "true" } as const

/** Turns a job's rendered email into the test copy for `to`. */
export const asTestCopy = (email: OutgoingEmail, to: string): OutgoingEmail => ({
  ...email,
  to,
  subject: `${SUBJECT_PREFIX}${email.subject}`,
  tags: [...email.tags.filter((t) => t.name !== TEST_TAG.name), TEST_TAG]
})

const sampleEmail = (job: Job.Any, name: string | undefined) =>
  Effect.gen(function*() {
    const config = yield* JobsConfig
    const previews = yield* job.preview(config)
    const found = name === undefined ? previews[0] : previews.find((p) => p.name === name)
    if (found === undefined) {
      return yield* new SendTestError({
        message: `${job.name} has no sample "${name}"; samples: ${previews.map((p) => p.name).join(", ")}`
      })
    }
    return found
  })

/** The learner's email at `asOf`, or the first sample when the job has no row for them. */
const learnerEmail = (job: Job.Any, who: string, asOf: Date) =>
  Effect.gen(function*() {
    const config = yield* JobsConfig
    const app = yield* AppTables
    const sql = yield* SqlClient.SqlClient
    const user = yield* app.findUser(who.trim())
    if (user === undefined) return yield* new SendTestError({ message: `no learner has the id or address "${who}"` })
    const selection = yield* job.statement(asOf)
    const rows = yield* candidatesOf(sql, selection, user.userId).pipe(Effect.orDie)
    const row = rows.find((r) => r.data !== null)
    if (row === undefined) {
      const sample = yield* sampleEmail(job, undefined)
      return {
        email: sample.email,
        source: `sample "${sample.name}": ${job.name} has no row for ${user.userId} at ${asOf.toISOString()} ` +
          `(not a candidate, or already on the ledger for this key)`
      }
    }
    const email = yield* job.renderTest(config, { user_id: row.user_id, email: row.email, dedupe_key: row.dedupe_key, data: row.data })
    return {
      email,
      source: `learner ${user.userId} at ${asOf.toISOString()} (key ${row.dedupe_key}, ${row.skip_reason === null ? "due" : `not due: ${row.skip_reason}`})`
    }
  })

/** Renders and sends one test email; nothing is written to the library's tables. */
export const sendTest = Effect.fn("SendTest.send")(function*(options: SendTestOptions) {
  if (Option.isNone(parseMailbox(options.to))) {
    return yield* new SendTestError({ message: `--to must be an email address (it was not one)` })
  }
  if (options.as !== undefined && options.sample !== undefined) {
    return yield* new SendTestError({ message: "give --as or --sample, not both" })
  }
  const { email, source } = options.as !== undefined
    ? yield* learnerEmail(options.job, options.as, options.asOf)
    : yield* Effect.map(sampleEmail(options.job, options.sample), (s) => ({ email: s.email, source: `sample "${s.name}"` }))
  const copy = asTestCopy(email, options.to)
  const mailer = yield* Mailer
  const [result] = yield* mailer.send({ idempotencyKey: `send-test-${randomUUID()}`, emails: [copy] })
  if (result === undefined || result._tag !== "Accepted") {
    return yield* new SendTestError({ message: `the provider did not accept the test email: ${result?._tag === undefined ? "no answer" : result.reason}` })
  }
  return { to: options.to, subject: copy.subject, source, providerId: result.providerId } satisfies SendTestResult
})

/** A job's selection row for one learner, as the run would plan it (due or not). */
export const CandidateRow = Schema.Struct({
  user_id: Schema.String,
  email: Schema.String,
  dedupe_key: Schema.String,
  data: Schema.Unknown,
  skip_reason: Schema.NullOr(Schema.String)
})
export type CandidateRow = typeof CandidateRow.Type

/**
 * The candidate rows of one learner in a job's selection statement (`Job.statement(asOf)`), due ones first: the
 * data the learner's email would carry now, even when they are not due. Empty when the job has no row for them
 * (not a candidate at all, or this key already on the ledger).
 */
const candidatesOf = (sql: SqlClient.SqlClient, selection: Statement.Statement<unknown>, userId: string) =>
  SqlSchema.findAll({
    Request: Schema.String,
    Result: CandidateRow,
    execute: (id) =>
      sql`SELECT c.user_id, c.email, c.dedupe_key, c.data, c.skip_reason FROM (${selection}) c
        WHERE c.user_id = ${id} ORDER BY (c.skip_reason IS NULL) DESC, c.dedupe_key LIMIT 5`
  })(userId)

