/**
 * The delivery ledger, `kaiwa_jobs.deliveries` and `kaiwa_jobs.batches`: the only module that names them. Who is
 * due is a rule, so each job supplies its own (`Selection`); this module composes it with what every job
 * shares (the once-per-key check, a verified, usable, unsuppressed address, the opt-in and the cross-job cap),
 * turns the result into ledger rows (the selection into a temporary table, then one INSERT ... SELECT from it,
 * serialised across jobs so the cross-job cap holds), hands out batches to workers with `FOR UPDATE SKIP LOCKED`
 * and leases, and records what the provider said. It also explains a decision (`explainOf`, for `why`).
 * Every instant a rule depends on is a parameter: SQL never calls now() to decide who is due. Leases and
 * idempotency-key ages are the exception: they measure real time shared by several machines, so they use the
 * database's clock (`clock_timestamp()`), which every worker agrees on whatever `--now` it was started with.
 *
 * The statements live in `internal/` by concern: planning (`selectionOf`, `enqueue`), batches (claims, verdicts,
 * the sweep), explanations (`explainOf`, the timeline) and reports; every row is decoded where it enters
 * (`internal/rows.ts`).
 */
import { Context, Effect, Layer } from "effect"
import { SqlClient, type Statement } from "effect/sql"
import type { DatabaseError } from "../database/Database.ts"
import * as Batches from "./internal/batches.ts"
import * as Explain from "./internal/explain.ts"
import * as Planning from "./internal/planning.ts"
import * as Reports from "./internal/reports.ts"
import type { Candidate, ClaimedDelivery, DeliveryCounts, DeliveryState, FailureKind, FutureRows, TimelineEntry, TouchedRow } from "./internal/rows.ts"
import { Suppressions } from "./Suppressions.ts"

export { localTimeIn } from "./internal/explain.ts"
export {
  BAD_ROW_NOTES,
  BAD_ROW_REASONS,
  CONFLICT_REASON,
  KEY_EXPIRED_REASON,
  KEY_MAX_AGE_HOURS,
  REJECTED_PREFIX
} from "./internal/reasons.ts"
export {
  Candidate,
  ClaimedDelivery,
  DELIVERY_STATES,
  DeliveryCounts,
  DeliveryState,
  FailureKind,
  FutureRows,
  SkipReason,
  TimelineEntry,
  TimelineKind,
  TouchedRow
} from "./internal/rows.ts"

/**
 * A job's rule, as `Job.Definition.selection` returns it. The job says who may be due and what to store; the
 * library adds, around it, the check that no ledger row exists yet for the candidate's key, the rules every job
 * shares (a verified, usable, unsuppressed address, the job's opt-in) and the cross-job cap, and reports each
 * skip's reason (`Database.selectionOf`).
 */
export interface Selection {
  /** Common table expressions the job's statements share (time zones, say), placed first in the WITH list. */
  readonly with?: Statement.Fragment | undefined
  /**
   * The job's cheap rules, as named rules over one FROM clause (so `kaiwa-jobs why` can say which one excluded a
   * learner, with the very SQL a run uses): `select` gives one row per user and key that may be due, with
   * `user_id` (text, as `AppTables.users` gives it) and `dedupe_key`, plus whatever `rows` reads; `from` holds the
   * user as `u`; each rule `holds` for a user who may be due, and its `reason` names it when it does not. Or, for
   * a job that needs no explanations, `candidates`: the whole SELECT.
   */
  readonly candidates: Statement.Fragment | Rules
  /**
   * Every dedupe key this tick's candidates can have, when the job knows them: the ledger check then reads only
   * those keys, and with a single key it compares with it rather than with each candidate's (so PostgreSQL may
   * check the ledger before the job's own rules). A candidate with a key outside `keys` is a bug in the job.
   */
  readonly keys?: ReadonlyArray<string> | undefined
  /**
   * From the candidates that have no ledger row yet for their key (the relation `fresh` names), one row each
   * with `user_id`, `email`, `dedupe_key`, `data` (jsonb), `expires_at` (when the window closes),
   * `email_verified` (null when unverified), `opt_in` (the job's opt-in, boolean) and `unknown_timezone`.
   */
  readonly rows: (fresh: Statement.Fragment) => Statement.Fragment
  /**
   * The reason for the candidates `rows` leaves out, if it leaves any out (a rule that costs a lookup per user,
   * so it runs after the ledger check: the reminder's "still in the founder sequence").
   */
  readonly rowsRule?: string | undefined
}

/** A job's cheap rules, named (see `Selection.candidates`). */
export interface Rules {
  readonly select: Statement.Fragment
  readonly from: Statement.Fragment
  readonly rules: ReadonlyArray<{ readonly reason: string; readonly holds: Statement.Fragment }>
}

/** A job's selection at one instant, as `selectionOf` composes it. */
export interface SelectionArgs {
  readonly job: string
  /** The list whose suppressions apply (the job's name). */
  readonly list: string
  readonly asOf: Date
  readonly minHoursBetweenEmails: number
  readonly selection: Selection
}

/** A job's decision for one learner at one instant (`kaiwa-jobs why`). */
export interface Decision {
  readonly due: boolean
  /** `due`, or the first rule that excluded the learner (a job's own rule's reason, or a shared one). */
  readonly reason: string
  /** What a person needs to know: the learner's local time, the email that caused the cap and when it ends... */
  readonly detail: string
  /** The dedupe key at stake, when the learner got that far. */
  readonly key: string | null
}

/** What planning a tick did. */
export interface EnqueueResult {
  readonly enqueued: number
  /** Candidates not due, counted by reason. */
  readonly skipped: Readonly<Record<string, number>>
  /** Up to 100 user ids per reason, for the reasons that point at bad data. */
  readonly skippedIds: Readonly<Record<string, ReadonlyArray<string>>>
}

/** A batch owned by one worker until its lease runs out. */
export interface ClaimedBatch {
  readonly id: string
  readonly idempotencyKey: string
  readonly resumed: boolean
  readonly deliveries: ReadonlyArray<ClaimedDelivery>
}

/** The provider's verdict on one delivery: sent, or failed with its kind (only `rejected`, the provider refusing
 * this recipient, suppresses the address). `reason` is for people (the timeline, the console, `status`). */
export type DeliveryOutcome =
  | { readonly id: string; readonly status: "sent"; readonly providerId: string | null; readonly reason: null }
  | { readonly id: string; readonly status: "failed"; readonly providerId: null; readonly reason: string; readonly failure: FailureKind }

/** What recording a batch changed: only rows still pending are written, so a batch completed twice (a worker
 * whose lease ran out finishing after the one that took over) counts its emails once. */
export interface CompletedBatch {
  readonly sent: ReadonlyArray<string>
  readonly failed: ReadonlyArray<string>
}

/** What the sweep at the start of a run did. */
export interface SweepResult {
  /** Never-batched pending rows skipped, by reason ('expired', 'suppressed'). */
  readonly skipped: Readonly<Record<string, number>>
  /** Ledger ids of rows in batches whose idempotency key the provider may have forgotten: not resent. */
  readonly keyExpired: ReadonlyArray<string>
}

/** Pending work of a job that this worker could not claim. */
export interface Outstanding {
  readonly pending: number
  readonly nextLeaseExpiry: Date | null
}

/** Planning one tick: the job's selection, inserted into the ledger as of `asOf`. */
export interface EnqueueArgs {
  readonly job: string
  readonly runId: string
  readonly asOf: Date
  readonly selection: Statement.Statement<Candidate>
  /** Skip reasons recorded as `skipped` ledger rows, final for their dedupe key. */
  readonly finalSkips?: ReadonlyArray<string> | undefined
}

/** A worker asking for its next batch (`newKey` is used only when a fresh batch is formed). */
export interface ClaimArgs {
  readonly job: string
  readonly owner: string
  readonly now: Date
  readonly leaseSeconds: number
  readonly size: number
  readonly newKey: string
}

/** The provider's verdicts on one batch. */
export interface CompleteArgs {
  /**
   * The provider refused the batch (its sender, content or account): after the verdicts are recorded, the rows it
   * did not accept leave the batch in the same transaction (a re-run sends them under a new key).
   */
  readonly requeue?: string | undefined
  readonly batchId: string
  readonly outcomes: ReadonlyArray<DeliveryOutcome>
  readonly now: Date
}

/** The start-of-run sweep of one job's ledger. */
export interface SweepArgs {
  readonly job: string
  readonly list: string
  readonly now: Date
}

/** A learner whose decision is asked for. */
export interface Learner {
  readonly userId: string
  readonly email: string
}

/** The ledger. */
export class Ledger extends Context.Service<Ledger, {
  /** Plans one tick: the job's selection, inserted into the ledger as of `asOf`. */
  readonly enqueue: (args: EnqueueArgs) => Effect.Effect<EnqueueResult, DatabaseError>
  readonly sweep: (args: SweepArgs) => Effect.Effect<SweepResult, DatabaseError>
  readonly claimBatch: (args: ClaimArgs) => Effect.Effect<ClaimedBatch | undefined, DatabaseError>
  readonly renewLease: (batchId: string, owner: string, leaseSeconds: number) => Effect.Effect<void, DatabaseError>
  readonly releaseBatch: (batchId: string, owner: string, error: string) => Effect.Effect<void, DatabaseError>
  /** Parks a batch the provider refused as an idempotency conflict; returns the ledger ids marked failed. */
  readonly parkConflict: (batchId: string, error: string) => Effect.Effect<ReadonlyArray<string>, DatabaseError>
  readonly completeBatch: (args: CompleteArgs) => Effect.Effect<CompletedBatch, DatabaseError>
  readonly outstanding: (job: string) => Effect.Effect<Outstanding, DatabaseError>
  /**
   * Hands a batch's still-pending rows back to the queue (out of the batch, so a later claim sends them under a
   * new idempotency key) and closes the batch. Only for a batch the provider accepted none of those rows from.
   */
  readonly requeueBatch: (batchId: string, error: string) => Effect.Effect<ReadonlyArray<string>, DatabaseError>
  /** A job's whole selection: its rule inside the ledger check, the shared rules and the cap. */
  readonly selectionOf: (args: SelectionArgs) => Statement.Statement<Candidate>
  /** Why a job is or is not due for some learners at an instant, from the very fragments a run composes. */
  readonly explainOf: (args: SelectionArgs, learners: ReadonlyArray<Learner>) => Effect.Effect<ReadonlyArray<Decision>, DatabaseError>
  /** The learner's emails: planned, sent, skipped, failed, and what the provider said of them, newest first. */
  readonly timelineOf: (userId: string) => Effect.Effect<ReadonlyArray<TimelineEntry>, DatabaseError>
  /** Ledger rows dated after `now`, per job, for an operator to clean up (scans the ledger: `status` only). */
  readonly future: (now: Date) => Effect.Effect<ReadonlyArray<FutureRows>, DatabaseError>
  /** The ledger rows a run planned (`run_id`), a page at a time, and how many there are in all (the console). */
  readonly touchedBy: (runId: string, page: { readonly offset: number; readonly limit: number }) => Effect.Effect<readonly [ReadonlyArray<TouchedRow>, number], DatabaseError>
  /** Whether an email with this provider id is on the ledger. */
  readonly hasProviderId: (providerId: string) => Effect.Effect<boolean, DatabaseError>
  /**
   * Serialises with the ledger's trigger that copies stored provider events onto a row as it gets its provider id
   * (migration 0004): inside a transaction, one of the two sees the other's write.
   */
  readonly lockProviderId: (providerId: string) => Effect.Effect<void, DatabaseError>
  /** Raises the delivery state of the email with this provider id (delayed < delivered < bounced < complained). */
  readonly raiseDeliveryState: (providerId: string, state: DeliveryState, at: Date) => Effect.Effect<void, DatabaseError>
  /** Each job's emails sent since `since`, with what became of them (the 7-day delivery health). */
  readonly deliveryCounts: (from: Date, to: Date) => Effect.Effect<ReadonlyArray<DeliveryCounts>, DatabaseError>
}>()("kaiwa-jobs/Ledger") {
  /** Over the SqlClient provided and the suppressions of the same database. */
  static readonly layer = Layer.effect(
    Ledger,
    Effect.gen(function*() {
      return makeLedger(yield* SqlClient.SqlClient, yield* Suppressions)
    })
  )
}

function makeLedger(sql: SqlClient.SqlClient, suppressions: Suppressions["Service"]): Ledger["Service"] {
  return Ledger.of({
    enqueue: Planning.enqueue(sql),
    selectionOf: Planning.selectionOf(sql),
    sweep: Batches.sweep(sql),
    claimBatch: Batches.claimBatch(sql),
    renewLease: Batches.renewLease(sql),
    releaseBatch: Batches.releaseBatch(sql),
    parkConflict: Batches.parkConflict(sql),
    completeBatch: Batches.completeBatch(sql, suppressions),
    outstanding: Batches.outstanding(sql),
    requeueBatch: Batches.requeueBatch(sql),
    explainOf: Explain.explainOf(sql, suppressions),
    timelineOf: Explain.timelineOf(sql),
    future: Reports.future(sql),
    deliveryCounts: Reports.deliveryCounts(sql),
    touchedBy: Reports.touchedBy(sql),
    hasProviderId: Reports.hasProviderId(sql),
    lockProviderId: Reports.lockProviderId(sql),
    raiseDeliveryState: Reports.raiseDeliveryState(sql)
  })
}
