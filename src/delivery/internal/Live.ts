/**
 * The live run's steps: `plan` (the selection into the ledger, then the sweep), `claims` (the stream of batches
 * this worker claims, ending with why it stopped), and `sendBatch` (render, send under the batch's recorded
 * idempotency key while its lease is renewed, record), each batch ending in an `Outcome`.
 */
import { randomUUID } from "node:crypto"
import { Clock, Duration, Effect, Result, Stream } from "effect"
import { JobsConfig } from "../../config/Config.ts"
import type { DatabaseError } from "../../database/Database.ts"
import { type ClaimedBatch, type ClaimedDelivery, type DeliveryOutcome, Ledger, REJECTED_PREFIX } from "../../ledger/Ledger.ts"
import { Pauses } from "../../ledger/Pauses.ts"
import { type DeliveryResult, Mailer, type MailerError, MAX_BATCH, type OutgoingEmail } from "../../mail/Mailer.ts"
import { Telemetry } from "../../telemetry/Telemetry.ts"
import type { DeliverySpec, RunContext } from "../Delivery.ts"
import { breakerError, refusedError, tripsBreaker } from "./Breaker.ts"
import { ends, Outcome } from "./Outcome.ts"
import { countGroups, render, type Rendered } from "./Render.ts"

const now = Effect.map(Clock.currentTimeMillis, (ms) => new Date(ms))

// How long a worker waits before claiming again while another worker holds the job's last batches.
const WAIT_FOR_OTHERS = Duration.millis(500)

/** Plans one tick: the due recipients become ledger rows, and rows that can no longer go out are swept. */
export const plan = Effect.fnUntraced(function*(ctx: RunContext, spec: DeliverySpec) {
  const db = yield* Ledger
  const config = yield* JobsConfig
  const planned = yield* db.enqueue({
    job: ctx.job,
    runId: ctx.runId,
    asOf: ctx.asOf,
    selection: spec.selection,
    finalSkips: spec.finalSkips
  })
  const swept = yield* db.sweep({ job: ctx.job, list: spec.list, now: yield* now })
  const skipped: Record<string, number> = { ...planned.skipped }
  for (const [reason, n] of Object.entries(swept.skipped)) skipped[reason] = (skipped[reason] ?? 0) + n
  if (swept.keyExpired.length > 0) {
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
  return Outcome.Planned({ due: planned.enqueued, skipped, badRows: planned.skippedIds, failed: swept.keyExpired.length })
})

/** One pull of the claims: a batch to send, a wait for another worker's batch, or why the run stops. */
type Claim =
  | { readonly _tag: "Claimed"; readonly batch: ClaimedBatch }
  | { readonly _tag: "Waited" }
  | Extract<Outcome, { readonly _tag: "Paused" | "Deadline" | "Drained" }>

const claimed = (batch: ClaimedBatch): Claim => ({ _tag: "Claimed", batch })
const waited: Claim = { _tag: "Waited" }

/** Every batch this run sends, each ending in an outcome; the stream ends with the outcome that stops the run. */
export const batches = (ctx: RunContext, spec: DeliverySpec) =>
  Stream.fromEffectRepeat(nextClaim(ctx)).pipe(
    Stream.filter((claim) => claim._tag !== "Waited"),
    Stream.mapEffect((claim) =>
      Effect.gen(function*() {
        return claim._tag === "Claimed" ? yield* sendBatch(ctx, spec, claim.batch) : claim
      })
    ),
    Stream.takeUntil(ends)
  )

const nextClaim = (ctx: RunContext) =>
  Effect.gen(function*(): Effect.fn.Return<Claim, DatabaseError, Ledger | Pauses | JobsConfig> {
    const t = yield* now
    if (t.getTime() >= ctx.deadline) return Outcome.Deadline()
    // A pause (kaiwa-jobs pause, from any machine or the console) stops the run before its next batch; the rows
    // left pending go out with the first run after resume.
    const pause = yield* Effect.flatMap(Pauses, (pauses) => pauses.get(ctx.job))
    if (pause !== undefined) return Outcome.Paused({ pause })
    const db = yield* Ledger
    const config = yield* JobsConfig
    const batch = yield* db.claimBatch({
      job: ctx.job,
      owner: ctx.runId,
      now: t,
      leaseSeconds: config.leaseSeconds,
      size: MAX_BATCH,
      newKey: `kaiwa-jobs/${ctx.job}/${randomUUID()}`
    })
    if (batch !== undefined) return claimed(batch)
    const rest = yield* db.outstanding(ctx.job)
    if (rest.pending === 0) return Outcome.Drained()
    // Another worker holds the rest: wait for it to finish, or for its lease to run out and take over.
    yield* Effect.sleep(WAIT_FOR_OTHERS)
    return waited
  })

/** Renders, sends and records one claimed batch. */
const sendBatch = Effect.fnUntraced(function*(ctx: RunContext, spec: DeliverySpec, batch: ClaimedBatch) {
  const rendered = yield* render(spec, batch.deliveries)
  const result = yield* callProvider(ctx, batch, rendered.ready.map((r) => r.email))
  return result._tag === "Failure"
    ? yield* handBack(ctx, batch, result.failure)
    : yield* record(ctx, batch, rendered, result.success)
})

// The provider call, under the batch's recorded key. While it runs (retries included), the lease is renewed so no
// other worker takes the batch; one failed renewal (a dropped connection) must not end the heartbeat: the next one
// may well succeed.
const callProvider = Effect.fnUntraced(function*(ctx: RunContext, batch: ClaimedBatch, emails: ReadonlyArray<OutgoingEmail>) {
  if (emails.length === 0) return Result.succeed<ReadonlyArray<DeliveryResult>>([])
  const db = yield* Ledger
  const mailer = yield* Mailer
  const config = yield* JobsConfig
  const heartbeat = db.renewLease(batch.id, ctx.runId, config.leaseSeconds).pipe(
    Effect.ignore,
    Effect.delay(Duration.divideUnsafe(Duration.seconds(config.leaseSeconds), 3)),
    Effect.forever
  )
  const send = Effect.result(mailer.send({ idempotencyKey: batch.idempotencyKey, emails, deadline: ctx.deadline })).pipe(
    // Interrupted mid-send (SIGINT, SIGTERM): hand the batch back at once so a re-run resends it under the same key
    // instead of waiting for the lease to run out.
    Effect.onInterrupt(() => db.releaseBatch(batch.id, ctx.runId, "interrupted").pipe(Effect.ignore))
  )
  return yield* Effect.scoped(Effect.andThen(Effect.forkScoped(heartbeat), send))
})

// A batch the provider call failed for: nothing was accepted.
const handBack = Effect.fnUntraced(function*(ctx: RunContext, batch: ClaimedBatch, error: MailerError) {
  const db = yield* Ledger
  if (error.kind === "idempotency") {
    // Parked, not released: retrying the key can only conflict again and would stop every later run at this batch,
    // and a new key could deliver twice. Its rows are failed as outcome unknown; the run goes on with the other
    // batches and still ends failed, so the operator sees it.
    const parked = yield* db.parkConflict(batch.id, error.message)
    yield* Effect.flatMap(Telemetry, (telemetry) => telemetry.countEmails(ctx.job, "failed", parked.length))
    return Outcome.Parked({ error, failed: parked.length })
  }
  // Refused whole (a 4xx validation answer): the same key would only bring the same answer back (or a 409 once the
  // cause is fixed), so the rows go out under a new key on the next claim. Anything else: the batch is released
  // and resent whole under its key.
  if (error.kind === "invalid") yield* db.requeueBatch(batch.id, error.message)
  else yield* db.releaseBatch(batch.id, ctx.runId, error.message)
  return Outcome.Failed({ error, sent: {}, failed: 0 })
})

// The provider's verdicts, written in one transaction. Counted from what was written, not from what was sent: a
// batch another worker already recorded adds nothing. After a refusal, the rows the provider did not accept leave
// the batch in the same transaction (a re-run sends them under a new key); a crash in between would otherwise
// strand them in a closed batch.
const record = Effect.fnUntraced(function*(
  ctx: RunContext,
  batch: ClaimedBatch,
  rendered: Rendered<ClaimedDelivery>,
  results: ReadonlyArray<DeliveryResult>
) {
  const db = yield* Ledger
  const telemetry = yield* Telemetry
  const size = rendered.ready.length
  const refused = results.flatMap((r) => r._tag === "Refused" ? [r.reason] : [])
  const error = refused.length > 0 ? refusedError(refused, size) : undefined
  const outcomes = verdicts(rendered, results, refused.length > 0)
  const written = yield* db.completeBatch({ batchId: batch.id, outcomes, now: yield* now, requeue: error?.message })
  const groups = new Map(rendered.ready.map((r) => [r.recipient.id, r.group]))
  const counts = { sent: countGroups(written.sent.map((id) => groups.get(id)!)), failed: written.failed.length }
  yield* telemetry.countEmails(ctx.job, "sent", written.sent.length)
  yield* telemetry.countEmails(ctx.job, "failed", written.failed.length)
  if (error !== undefined) {
    yield* Effect.logError(error.message)
    return Outcome.Failed({ error, ...counts })
  }
  const rejected = results.filter((r) => r._tag === "Rejected").length
  return tripsBreaker(rejected, size) ? Outcome.Failed({ error: breakerError(rejected, size), ...counts }) : Outcome.Sent(counts)
})

// The ledger row of each recipient: those that did not render, then the provider's answers in the batch's order.
// With a refusal in the batch nothing is learnt about any address: its rejections are not recorded either.
const verdicts = (
  rendered: Rendered<ClaimedDelivery>,
  results: ReadonlyArray<DeliveryResult>,
  anyRefused: boolean
): Array<DeliveryOutcome> => [
  ...rendered.broken.map(({ error, recipient }): DeliveryOutcome => ({
    id: recipient.id,
    status: "failed",
    providerId: null,
    reason: `render_error: ${error.message}`,
    failure: "render_error"
  })),
  ...results.flatMap((r, i): Array<DeliveryOutcome> => {
    const id = rendered.ready[i]!.recipient.id
    if (r._tag === "Accepted") return [{ id, status: "sent", providerId: r.providerId, reason: null }]
    if (r._tag === "Rejected" && !anyRefused) {
      return [{ id, status: "failed", providerId: null, reason: `${REJECTED_PREFIX}${r.reason}`.slice(0, 300), failure: "rejected" }]
    }
    return []
  })
]
