/**
 * The dry run's source of outcomes: the job's selection, read through a server-side cursor in groups of 100 (one
 * group held at a time, like a live run's batches), each group printed by the Mailer (the console in a dry run)
 * and nothing written. The selection statement classifies every candidate (`skip_reason`, `unknown_timezone`); a
 * live run's planning statement counts that classification as it inserts the due rows, and a dry run, which
 * may not write (its database can be read-only), counts the same columns group by group.
 */
import { Effect, Stream } from "effect"
import { toDatabaseError } from "../../database/Database.ts"
import { BAD_ROW_REASONS, type Candidate } from "../../ledger/Ledger.ts"
import { Mailer, MAX_BATCH } from "../../mail/Mailer.ts"
import type { DeliverySpec, RunContext } from "../Delivery.ts"
import { Outcome } from "./Outcome.ts"
import { countGroups, render } from "./Render.ts"

/** What a dry run would do: per group of the selection, what it plans and what it would send. */
export const preview = (ctx: RunContext, spec: DeliverySpec) =>
  spec.selection.stream.pipe(
    Stream.mapError(toDatabaseError("selecting candidates failed")),
    Stream.grouped(MAX_BATCH),
    Stream.mapEffect((candidates, i) => printGroup(ctx, spec, candidates, i)),
    Stream.flattenIterable
  )

const printGroup = Effect.fnUntraced(
  function*(ctx: RunContext, spec: DeliverySpec, candidates: ReadonlyArray<Candidate>, group: number) {
    const planned = classify(candidates)
    const rendered = yield* render(spec, candidates.filter((c) => c.skip_reason === null))
    const emails = rendered.ready.map((r) => r.email)
    if (emails.length > 0) {
      const mailer = yield* Mailer
      yield* mailer.send({ idempotencyKey: `dry-run-${ctx.runId}-${group}`, emails }).pipe(Effect.ignore)
    }
    const sent = countGroups(rendered.ready.map((r) => r.group))
    return [planned, Outcome.Sent({ sent, failed: rendered.broken.length })]
  }
)

// The counts a live run's planning statement returns, from one group of the selection.
const classify = (candidates: ReadonlyArray<Candidate>) => {
  const skipped: Record<string, number> = {}
  const badRows: Record<string, Array<string>> = {}
  const note = (reason: string, userId: string) => (badRows[reason] ??= []).push(userId)
  for (const c of candidates) {
    if (c.unknown_timezone) note("unknown_timezone", c.user_id)
    if (c.skip_reason === null) continue
    skipped[c.skip_reason] = (skipped[c.skip_reason] ?? 0) + 1
    if (BAD_ROW_REASONS.has(c.skip_reason)) note(c.skip_reason, c.user_id)
  }
  const due = candidates.filter((c) => c.skip_reason === null).length
  return Outcome.Planned({ due, skipped, badRows, failed: 0 })
}
