/**
 * What each step of a run's pipeline ended in, and how those outcomes add up to the run's stats. A run is a
 * stream of outcomes: one `Planned` (a dry run: one per group of the selection), then one per claimed batch
 * (`Sent`, `Parked`, `Failed`), then, unless a batch stopped it, why it stopped before its next batch (`Paused`,
 * `Deadline`, `Drained`). The stats are a pure fold over that stream (`add`), so a reader finds every counter's
 * rule in one place (docs/decisions.md, "Delivery").
 */
import { Data } from "effect"
import type { Pause } from "../../ledger/Pauses.ts"
import type { MailerError } from "../../mail/Mailer.ts"

type Counts = Readonly<Record<string, number>>
type Ids = Readonly<Record<string, ReadonlyArray<string>>>

/** How one step of a run ended. */
export type Outcome = Data.TaggedEnum<{
  /** Recipients planned (ledger rows written; in a dry run, those that would be) and candidates skipped by reason. */
  Planned: { readonly due: number; readonly skipped: Counts; readonly badRows: Ids; readonly failed: number }
  /** A batch sent and recorded (in a dry run, printed): the emails accepted by stats group. The run goes on. */
  Sent: { readonly sent: Counts; readonly failed: number }
  /** An idempotency conflict: the batch is parked, its rows failed as outcome unknown. The run goes on, and ends failed. */
  Parked: { readonly error: MailerError; readonly failed: number }
  /**
   * The run stops at this batch: the provider call failed (the batch handed back whole), or the provider's answer
   * was recorded and then stops the run (a refusal for the sender or content, the circuit breaker).
   */
  Failed: { readonly error: MailerError; readonly sent: Counts; readonly failed: number }
  /** The job was paused: the run stopped before its next batch. */
  Paused: { readonly pause: Pause }
  /** The send deadline passed: no new batch is started. */
  Deadline: {}
  /** Nothing of the job is left pending. */
  Drained: {}
}>

/** Constructors and matchers of `Outcome`. */
export const Outcome = Data.taggedEnum<Outcome>()

/** The outcomes that end a run's stream (it stops pulling: no further batch is claimed). */
export const ends = (outcome: Outcome): boolean =>
  outcome._tag !== "Planned" && outcome._tag !== "Sent" && outcome._tag !== "Parked"

/** A run's stats so far. */
export interface Tally {
  readonly due: number
  readonly skipped: Counts
  readonly badRows: Ids
  readonly sent: Counts
  readonly failed: number
  /** The last batch-level error that cannot be retried (the run ends failed, exit 1). */
  readonly fatal: MailerError | undefined
  readonly paused: Pause | undefined
}

/** Nothing planned, sent or failed yet. */
export const empty: Tally = { due: 0, skipped: {}, badRows: {}, sent: {}, failed: 0, fatal: undefined, paused: undefined }

// The operator is shown at most this many user ids per bad-data reason.
const MAX_IDS = 100

const addCounts = (into: Counts, more: Counts): Counts => {
  const out: Record<string, number> = { ...into }
  for (const [key, n] of Object.entries(more)) out[key] = (out[key] ?? 0) + n
  return out
}

const addIds = (into: Ids, more: Ids): Ids => {
  const out: Record<string, ReadonlyArray<string>> = { ...into }
  for (const [key, ids] of Object.entries(more)) out[key] = [...(out[key] ?? []), ...ids].slice(0, MAX_IDS)
  return out
}

// A retryable error stops the run (the rows stay pending, exit 1 as incomplete) without making it failed.
const fatalOf = (tally: Tally, error: MailerError) => error.retryable ? tally.fatal : error

/** The stats after one more outcome. */
export const add = (tally: Tally, outcome: Outcome): Tally =>
  Outcome.$match(outcome, {
    Planned: (p) => ({
      ...tally,
      due: tally.due + p.due,
      skipped: addCounts(tally.skipped, p.skipped),
      badRows: addIds(tally.badRows, p.badRows),
      failed: tally.failed + p.failed
    }),
    Sent: (s) => ({ ...tally, sent: addCounts(tally.sent, s.sent), failed: tally.failed + s.failed }),
    Parked: (p) => ({ ...tally, failed: tally.failed + p.failed, fatal: fatalOf(tally, p.error) }),
    Failed: (f) => ({ ...tally, sent: addCounts(tally.sent, f.sent), failed: tally.failed + f.failed, fatal: fatalOf(tally, f.error) }),
    Paused: (p) => ({ ...tally, paused: p.pause }),
    Deadline: () => tally,
    Drained: () => tally
  })

/** How many emails were sent in all. */
export const totalSent = (tally: Tally): number => Object.values(tally.sent).reduce((a, b) => a + b, 0)
