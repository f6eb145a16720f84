/**
 * How a job's due recipients become sent emails, exactly once. A run is a pipeline, and its order is what makes
 * it safe:
 * 1. plan: the job's selection is inserted into the ledger set-based, never row by row (unique per job, user, dedupe key),
 *    before anything is sent;
 * 2. claim: a stream of batches, each taken by this worker as up to 100 ledger rows with `FOR UPDATE SKIP LOCKED`,
 *    recorded with its idempotency key and held under a lease it renews while sending;
 * 3. send: the batch goes to the Mailer with its recorded key; a batch whose worker died is resent whole, with
 *    the same key, so the provider answers with its first response instead of delivering again;
 * 4. record: the provider's verdicts are written in one transaction, and the batch ends in a typed outcome
 *    (`internal/Outcome.ts`) that the run's stats fold in. The stream stops at a pause, at the deadline, at a batch
 *    that stops the run, or when nothing is left.
 * A dry run is the same pipeline over the selection itself: planned, rendered and printed, nothing written.
 * Several processes can drain the same job at once; they share the work through the claims.
 */
import { Duration, Effect, Ref, Stream } from "effect"
import { type Candidate, Ledger } from "../ledger/Ledger.ts"
import type { Pause } from "../ledger/Pauses.ts"
import type { MailerError, OutgoingEmail } from "../mail/Mailer.ts"
import { preview } from "./internal/DryRun.ts"
import { batches, plan } from "./internal/Live.ts"
import { add, empty, type Tally, totalSent } from "./internal/Outcome.ts"
import type { Statement } from "effect/sql"

export { BREAKER_MIN, BREAKER_RATE } from "./internal/Breaker.ts"

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

/** Plans, claims, sends and records one job's tick (or, in a dry run, plans and prints without writing). */
export const deliver = Effect.fn("Delivery.deliver")(function*(ctx: RunContext, spec: DeliverySpec) {
  // The same outcomes and fold from the selection itself: planned, rendered and printed, nothing written.
  if (ctx.dryRun) return reportOf(yield* Stream.runFold(preview(ctx, spec), () => empty, add), 0)
  const stats = yield* Ref.make(add(empty, yield* plan(ctx, spec)))
  yield* batches(ctx, spec).pipe(
    Stream.runForEach((outcome) => Ref.update(stats, (tally) => add(tally, outcome))),
    reportingProgress(ctx, stats)
  )
  const { pending } = yield* Effect.flatMap(Ledger, (ledger) => ledger.outstanding(ctx.job))
  return reportOf(yield* Ref.get(stats), pending)
})

// A progress line every 5 s while the run sends (docs/runbook.md).
const reportingProgress = (ctx: RunContext, stats: Ref.Ref<Tally>) => <A, E, R>(sending: Effect.Effect<A, E, R>) =>
  Effect.scoped(Effect.andThen(
    Effect.forkScoped(
      Effect.flatMap(Ref.get(stats), (tally) => Effect.logInfo(`⏳ ${ctx.job}: ${totalSent(tally)} sent, ${tally.failed} failed so far`)).pipe(
        Effect.delay(PROGRESS_EVERY),
        Effect.forever
      )
    ),
    sending
  ))

const reportOf = (tally: Tally, pending: number): DeliveryReport => ({
  due: tally.due,
  skipped: tally.skipped,
  badRows: tally.badRows,
  sent: tally.sent,
  failed: tally.failed,
  pending,
  fatal: tally.fatal,
  paused: tally.paused
})
