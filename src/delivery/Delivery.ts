/**
 * How a job's due recipients become sent emails, exactly once. The order is what makes it safe:
 * 1. plan: the job's selection is inserted into the ledger set-based, never row by row (unique per job, user, dedupe key),
 *    before anything is sent;
 * 2. claim: a worker takes up to 100 ledger rows as a batch with `FOR UPDATE SKIP LOCKED`, records the batch and
 *    its idempotency key, and holds it under a lease it renews while sending;
 * 3. send: the batch goes to the Mailer with its recorded key; a batch whose worker died is resent whole, with
 *    the same key, so the provider answers with its first response instead of delivering again;
 * 4. record: the provider's verdicts are written in one transaction.
 * Several processes can drain the same job at once; they share the work through the claims.
 */
import { randomUUID } from "node:crypto"
import { Clock, Duration, Effect, Fiber, Option, Stream } from "effect"
import { JobsConfig } from "../config/Config.ts"
import {
  BAD_ROW_REASONS,
  type Candidate,
  type ClaimedBatch,
  type ClaimedDelivery,
  DatabaseError,
  type DeliveryOutcome,
  describeSqlCause,
  REJECTED_PREFIX
} from "../database/Database.ts"
import { Ledger } from "../ledger/Ledger.ts"
import { type Pause, Pauses } from "../ledger/Pauses.ts"
import { MAX_BATCH, type Batch, Mailer, MailerError, type OutgoingEmail } from "../mail/Mailer.ts"
import { Telemetry } from "../telemetry/Telemetry.ts"
import type { Statement } from "effect/sql"

/** What one run is doing: the instant it plans for, whether it may write, and when it must stop sending. */
export interface RunContext {
  readonly runId: string
  readonly job: string
  readonly asOf: Date
  readonly dryRun: boolean
  /** Epoch millis after which no new batch is started and retries stop. */
  readonly deadline: number
}

/** A delivery as a job's renderer sees it (a planned candidate or a claimed ledger row). */
export interface Recipient {
  readonly user_id: string
  readonly email: string
  readonly dedupe_key: string
  readonly data: unknown
}

/** What delivering one job's tick did. */
export interface DeliveryReport {
  /** Newly planned recipients (ledger rows written by this run; in a dry run, those that would be). */
  readonly due: number
  /** Candidates not due, by reason, plus pending rows swept as expired or suppressed. */
  readonly skipped: Readonly<Record<string, number>>
  /** User ids behind bad-data reasons (for the operator). */
  readonly badRows: Readonly<Record<string, ReadonlyArray<string>>>
  /** Emails the provider accepted, grouped by the job's `group` function. */
  readonly sent: Readonly<Record<string, number>>
  readonly failed: number
  /** Ledger rows of this job still pending when the run ended (a re-run finishes them). */
  readonly pending: number
  /** A batch-level error that stopped the run (bad API key, quota, idempotency conflict). */
  readonly fatal: MailerError | undefined
  /** The job was paused while the run sent: it stopped before its next batch. */
  readonly paused: Pause | undefined
}

/** What a job gives the pipeline (`Job.make` builds it from the job's declaration). */
export interface DeliverySpec {
  /** The unsubscribe list whose suppressions apply (the job's name). */
  readonly list: string
  readonly selection: Statement.Statement<Candidate>
  /** Skip reasons recorded in the ledger as final for the dedupe key (see `Job.Definition.finalSkips`). */
  readonly finalSkips: ReadonlyArray<string>
  /** The email for one recipient and the stats group it counts in, or why it cannot be sent. */
  readonly prepare: (recipient: Recipient) => Effect.Effect<Prepared, RenderError>
}

/** One recipient's rendered email and its stats group. */
export interface Prepared {
  readonly email: OutgoingEmail
  readonly group: string
}

/** A ledger row whose stored data no longer renders (should not happen; reported, never sent half-filled). */
export class RenderError extends Error {
  readonly _tag = "RenderError"
}

const PROGRESS_EVERY = Duration.seconds(5)

const add = (into: Record<string, number>, key: string, n = 1) => {
  into[key] = (into[key] ?? 0) + n
}

/**
 * The circuit breaker (issue 19): a batch in which more than `BREAKER_RATE` of the recipients, and at least
 * `BREAKER_MIN` of them, are rejected as invalid is not a few bad addresses (the selection already leaves out
 * what cannot be an address) but a problem with the sender, the content or the provider that its messages did not
 * name. That batch is recorded (at most one batch's worth of addresses suppressed) and the run stops (exit 1),
 * leaving the rest pending, instead of suppressing the audience batch after batch.
 */
export const BREAKER_RATE = 0.05
/** See `BREAKER_RATE`: fewer rejections than this never trip the breaker (one bad address in a batch of 10). */
export const BREAKER_MIN = 5

const tripsBreaker = (rejected: number, size: number) => rejected >= BREAKER_MIN && rejected > BREAKER_RATE * size

const breakerError = (rejected: number, size: number) =>
  new MailerError({
    kind: "rejections",
    retryable: false,
    message: `circuit breaker: the provider rejected ${rejected} of ${size} recipients of one batch as invalid ` +
      `(more than ${BREAKER_RATE * 100}%), which is not a few bad addresses; the run stopped before suppressing more ` +
      "than that batch's. Check the sender, the content and the provider account; the rest stay pending for a re-run"
  })

const refusedError = (reasons: ReadonlyArray<string>, size: number) =>
  new MailerError({
    kind: "refused",
    retryable: false,
    message: `the provider refused ${reasons.length} of ${size} email(s) of a batch for their sender, content or ` +
      `account, not their recipients (${reasons[0]!.slice(0, 200)}). Nothing was suppressed; the emails stay pending ` +
      "and a re-run sends them under a new idempotency key once the cause is fixed"
  })

/** Plans, claims, sends and records one job's tick (or, in a dry run, plans and prints without writing). */
export const deliver = Effect.fn("Delivery.deliver")(function*(ctx: RunContext, spec: DeliverySpec) {
  return ctx.dryRun ? yield* dryRun(ctx, spec) : yield* live(ctx, spec)
})

// Streams the selection through a server-side cursor in groups of 100, so a dry run over a large population
// holds one group at a time, like a live run.
const dryRun = Effect.fnUntraced(function*(ctx: RunContext, spec: DeliverySpec) {
  const mailer = yield* Mailer
  const skipped: Record<string, number> = {}
  const badRows: Record<string, Array<string>> = {}
  const sent: Record<string, number> = {}
  let due = 0
  let failed = 0
  let group = 0
  const note = (reason: string, userId: string) => {
    const ids = (badRows[reason] ??= [])
    if (ids.length < 100) ids.push(userId)
  }
  yield* spec.selection.stream.pipe(
    Stream.grouped(MAX_BATCH),
    Stream.runForEach((candidates) =>
      Effect.gen(function*() {
        const chunk: Array<Candidate> = []
        for (const c of candidates) {
          if (c.unknown_timezone) note("unknown_timezone", c.user_id)
          if (c.skip_reason === null) chunk.push(c)
          else {
            add(skipped, c.skip_reason)
            if (BAD_ROW_REASONS.has(c.skip_reason)) note(c.skip_reason, c.user_id)
          }
        }
        due += chunk.length
        const rendered = yield* Effect.forEach(chunk, (c) => Effect.result(spec.prepare(c)))
        const emails: Array<OutgoingEmail> = []
        for (const r of rendered) {
          if (r._tag === "Success") {
            emails.push(r.success.email)
            add(sent, r.success.group)
          } else failed++
        }
        // The dry-run mailer prints; nothing here writes.
        if (emails.length > 0) {
          yield* mailer.send({ idempotencyKey: `dry-run-${ctx.runId}-${group++}`, emails }).pipe(Effect.ignore)
        }
      })
    ),
    Effect.mapError((e) => new DatabaseError({ message: `selecting candidates failed: ${describeSqlCause(e)}` }))
  )
  return { due, skipped, badRows, sent, failed, pending: 0, fatal: undefined, paused: undefined } satisfies DeliveryReport
})

const live = Effect.fnUntraced(function*(ctx: RunContext, spec: DeliverySpec) {
  const db = yield* Ledger
  const pauses = yield* Pauses
  const mailer = yield* Mailer
  const config = yield* JobsConfig
  const telemetry = yield* Telemetry
  const now = Effect.map(Clock.currentTimeMillis, (ms) => new Date(ms))
  const lease = Duration.seconds(config.leaseSeconds)
  let failed = 0

  const planned = yield* db.enqueue({
    job: ctx.job,
    runId: ctx.runId,
    asOf: ctx.asOf,
    selection: spec.selection,
    finalSkips: spec.finalSkips
  })
  const skipped: Record<string, number> = { ...planned.skipped }
  const swept = yield* db.sweep({ job: ctx.job, list: spec.list, now: yield* now })
  for (const [reason, n] of Object.entries(swept.skipped)) add(skipped, reason, n)
  if (swept.keyExpired.length > 0) {
    failed += swept.keyExpired.length
    yield* Effect.logError(
      `${swept.keyExpired.length} email(s) of a batch abandoned over a day ago were not resent: the provider may ` +
        "have delivered them, and their idempotency key has expired, so a resend could deliver twice. " +
        "They are recorded as failed (outcome unknown)."
    ).pipe(Effect.annotateLogs({ ledgerIds: swept.keyExpired.slice(0, 100).join(",") }))
  }
  for (const [reason, ids] of Object.entries(planned.skippedIds)) {
    const what = reason === "unknown_timezone" ? `served in ${config.defaultTimezone}` : "skipped"
    yield* Effect.logWarning(`bad data (${reason}): ${skipped[reason] ?? ids.length} user(s) ${what}`).pipe(
      Effect.annotateLogs({ reason, userIds: ids.join(",") })
    )
  }

  const sent: Record<string, number> = {}
  let fatal: MailerError | undefined = undefined

  const progress = yield* Effect.forkChild(
    Effect.suspend(() => {
      const total = Object.values(sent).reduce((a, b) => a + b, 0)
      return Effect.logInfo(`⏳ ${ctx.job}: ${total} sent, ${failed} failed so far`)
    }).pipe(Effect.delay(PROGRESS_EVERY), Effect.forever)
  )

  const sendBatch = Effect.fnUntraced(function*(batch: ClaimedBatch) {
    const rendered = yield* Effect.forEach(batch.deliveries, (d) => Effect.result(spec.prepare(d)))
    const emails: Array<OutgoingEmail> = []
    const sentRows: Array<ClaimedDelivery> = []
    const groups = new Map<string, string>()
    const outcomes: Array<DeliveryOutcome> = []
    rendered.forEach((r, i) => {
      const d = batch.deliveries[i]!
      if (r._tag === "Success") {
        emails.push(r.success.email)
        sentRows.push(d)
        groups.set(d.id, r.success.group)
      } else outcomes.push({ id: d.id, status: "failed", providerId: null, reason: `render_error: ${r.failure.message}` })
    })
    // While the provider call runs (retries included), the lease is renewed so no other worker takes the batch.
    // One failed renewal (a dropped connection) must not end the heartbeat: the next one may well succeed.
    const heartbeat = yield* Effect.forkChild(
      db.renewLease(batch.id, ctx.runId, config.leaseSeconds).pipe(
        Effect.ignore,
        Effect.delay(Duration.divideUnsafe(lease, 3)),
        Effect.forever
      )
    )
    const request: Batch = { idempotencyKey: batch.idempotencyKey, emails, deadline: ctx.deadline }
    const result = emails.length === 0
      ? { _tag: "Success" as const, success: [] }
      : yield* Effect.result(mailer.send(request)).pipe(
        // Interrupted mid-send (SIGINT, SIGTERM): hand the batch back at once so a re-run resends it under the
        // same key instead of waiting for the lease to run out.
        Effect.onInterrupt(() => db.releaseBatch(batch.id, ctx.runId, "interrupted").pipe(Effect.ignore))
      )
    yield* Fiber.interrupt(heartbeat)
    if (result._tag === "Failure" && result.failure.kind === "idempotency") {
      // Parked, not released: retrying the key can only conflict again and would stop every later run at this
      // batch, and a new key could deliver twice. Its rows are failed as outcome unknown; the run goes on with
      // the other batches and still ends failed, so the operator sees it.
      const parked = yield* db.parkConflict(batch.id, result.failure.message)
      failed += parked.length
      yield* telemetry.countEmails(ctx.job, "failed", parked.length)
      return Option.some(result.failure)
    }
    if (result._tag === "Failure") {
      // Refused whole (a 4xx validation answer): nothing was accepted, and the same key would only bring the same
      // answer back (or a 409 once the cause is fixed), so the rows go out under a new key on the next claim.
      if (result.failure.kind === "invalid") yield* db.requeueBatch(batch.id, result.failure.message)
      else yield* db.releaseBatch(batch.id, ctx.runId, result.failure.message)
      return Option.some(result.failure)
    }
    const refused = result.success.flatMap((r) => r._tag === "Refused" ? [r.reason] : [])
    result.success.forEach((r, i) => {
      const d = sentRows[i]!
      if (r._tag === "Accepted") outcomes.push({ id: d.id, status: "sent", providerId: r.providerId, reason: null })
      // With a refusal in the batch nothing is learnt about any address: its rejections are not recorded either.
      else if (r._tag === "Rejected" && refused.length === 0) {
        outcomes.push({ id: d.id, status: "failed", providerId: null, reason: `${REJECTED_PREFIX}${r.reason}`.slice(0, 300) })
      }
    })
    const error = refused.length > 0 ? refusedError(refused, emails.length) : undefined
    // Counted from what was written, not from what was sent: a batch another worker already recorded adds nothing.
    // After a refusal, the rows the provider did not accept leave the batch in the same transaction (a re-run sends
    // them under a new key); a crash in between would otherwise strand them in a closed batch.
    const written = yield* db.completeBatch({ batchId: batch.id, outcomes, now: yield* now, requeue: error?.message })
    for (const id of written.sent) add(sent, groups.get(id)!)
    failed += written.failed.length
    yield* telemetry.countEmails(ctx.job, "sent", written.sent.length)
    yield* telemetry.countEmails(ctx.job, "failed", written.failed.length)
    if (error !== undefined) {
      yield* Effect.logError(error.message)
      return Option.some(error)
    }
    const rejected = result.success.filter((r) => r._tag === "Rejected").length
    if (tripsBreaker(rejected, emails.length)) return Option.some(breakerError(rejected, emails.length))
    return Option.none<MailerError>()
  })

  let paused: Pause | undefined
  while (true) {
    const t = yield* now
    if (t.getTime() >= ctx.deadline) break
    // A pause (kaiwa-jobs pause, from any machine or the console) stops the run before its next batch; the rows
    // left pending go out with the first run after resume.
    paused = yield* pauses.get(ctx.job)
    if (paused !== undefined) break
    const batch = yield* db.claimBatch({
      job: ctx.job,
      owner: ctx.runId,
      now: t,
      leaseSeconds: config.leaseSeconds,
      size: MAX_BATCH,
      newKey: `kaiwa-jobs/${ctx.job}/${randomUUID()}`
    })
    if (batch === undefined) {
      const rest = yield* db.outstanding(ctx.job)
      if (rest.pending === 0) break
      // Another worker holds the rest: wait for it to finish, or for its lease to run out and take over.
      yield* Effect.sleep(Duration.millis(500))
      continue
    }
    const error = yield* sendBatch(batch)
    if (Option.isSome(error)) {
      if (!error.value.retryable) fatal = error.value
      if (error.value.kind === "idempotency") continue
      break
    }
  }
  yield* Fiber.interrupt(progress)
  const { pending } = yield* db.outstanding(ctx.job)
  return { due: planned.enqueued, skipped, badRows: planned.skippedIds, sent, failed, pending, fatal, paused } satisfies DeliveryReport
})

