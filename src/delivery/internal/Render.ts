/**
 * The render step both kinds of run share: each recipient's email and stats group, or why it cannot be rendered
 * (a ledger row whose stored data no longer renders is reported, never sent half-filled).
 */
import { Effect } from "effect"
import type { OutgoingEmail } from "../../mail/Mailer.ts"
import type { DeliverySpec, Recipient, RenderError } from "../Delivery.ts"

/** A recipient whose email rendered. */
export interface Ready<R extends Recipient> {
  readonly recipient: R
  readonly email: OutgoingEmail
  readonly group: string
}

/** A batch's recipients, rendered (in the batch's order) or not. */
export interface Rendered<R extends Recipient> {
  readonly ready: ReadonlyArray<Ready<R>>
  readonly broken: ReadonlyArray<{ readonly recipient: R; readonly error: RenderError }>
}

/** Renders every recipient of a batch; one that cannot be rendered does not stop the others. */
export const render = <R extends Recipient>(spec: DeliverySpec, recipients: ReadonlyArray<R>) =>
  Effect.map(Effect.forEach(recipients, (r) => Effect.result(spec.prepare(r))), (results): Rendered<R> => {
    const ready: Array<Ready<R>> = []
    const broken: Array<{ readonly recipient: R; readonly error: RenderError }> = []
    results.forEach((result, i) => {
      const recipient = recipients[i]!
      if (result._tag === "Success") ready.push({ recipient, email: result.success.email, group: result.success.group })
      else broken.push({ recipient, error: result.failure })
    })
    return { ready, broken }
  })

/** How many of the emails fall in each stats group. */
export const countGroups = (groups: Iterable<string>): Readonly<Record<string, number>> => {
  const counts: Record<string, number> = {}
  for (const group of groups) counts[group] = (counts[group] ?? 0) + 1
  return counts
}
