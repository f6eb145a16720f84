/**
 * The ledger's rows as they enter from PostgreSQL, each decoded by a `Schema` (never cast), and the typed values
 * that stand where strings used to carry meaning between modules: a failed row's `failure` kind (a column with a
 * CHECK, migration 0012), the kind of each count planning and the sweep return, a timeline entry's kind.
 * Internal to `src/ledger/`.
 */
import { Effect, Schema } from "effect"

/**
 * Decodes every row of a statement's result where it enters. A row that does not match its schema is a bug in
 * this module's SQL (or a migration not applied): it fails like the statement would, with the schema's message.
 */
export const decodeRows = <S extends Schema.Constraint>(schema: S) => {
  const decode = Schema.decodeUnknownEffect(Schema.Array(schema))
  return <E, R>(
    rows: Effect.Effect<ReadonlyArray<unknown>, E, R>
  ): Effect.Effect<ReadonlyArray<S["Type"]>, E | Schema.SchemaError, R | S["DecodingServices"]> => Effect.flatMap(rows, decode)
}

/** Why a ledger row failed, as `deliveries.failure` stores it. */
export const FailureKind = Schema.Literals(["rejected", "render_error", "outcome_unknown"])
export type FailureKind = typeof FailureKind.Type

/** A row's status on the ledger. */
export const DeliveryStatus = Schema.Literals(["pending", "sent", "failed", "skipped"])
export type DeliveryStatus = typeof DeliveryStatus.Type

/** What became of a sent email, in precedence order: a later event never lowers it. */
export const DELIVERY_STATES = ["delayed", "delivered", "bounced", "complained"] as const
export const DeliveryState = Schema.Literals(DELIVERY_STATES)
export type DeliveryState = typeof DeliveryState.Type

/**
 * Why a candidate is not due, by the rules every job shares (`selectionOf`), in the order a person would check
 * them. A job's own rules leave learners out before they are candidates (`Decision.reason` names those).
 */
export const SkipReason = Schema.Literals(["unverified", "opted_out", "invalid_email", "suppressed", "cap"])
export type SkipReason = typeof SkipReason.Type

/** A row of a job's selection: one candidate recipient and, when not due, why. */
export const Candidate = Schema.Struct({
  user_id: Schema.String,
  email: Schema.String,
  dedupe_key: Schema.String,
  data: Schema.Unknown,
  expires_at: Schema.Date,
  skip_reason: Schema.NullOr(SkipReason),
  /** The user's `timezone` is set but unknown, so DEFAULT_TIMEZONE was used: served, but reported as bad data. */
  unknown_timezone: Schema.Boolean
})
export type Candidate = typeof Candidate.Type

const Ids = Schema.NullOr(Schema.Array(Schema.String))

/**
 * One count of a planning: the rows enqueued, the candidates skipped for one reason (with up to 100 user ids),
 * or bad data that did not stop anyone being served (`unknown_timezone`, with up to 100 user ids).
 */
export const PlanCount = Schema.Union([
  Schema.Struct({ kind: Schema.Literal("enqueued"), n: Schema.Number }),
  Schema.Struct({ kind: Schema.Literal("skipped"), reason: SkipReason, n: Schema.Number, ids: Ids }),
  Schema.Struct({ kind: Schema.Literal("bad_data"), reason: Schema.Literal("unknown_timezone"), n: Schema.Number, ids: Ids })
])
export type PlanCount = typeof PlanCount.Type

/** One count of a sweep: pending rows skipped for one reason, or the rows failed because their key expired. */
export const SweepCount = Schema.Union([
  Schema.Struct({ kind: Schema.Literal("skipped"), reason: Schema.Literals(["expired", "suppressed"]), n: Schema.Number }),
  Schema.Struct({ kind: Schema.Literal("key_expired"), ids: Ids })
])
export type SweepCount = typeof SweepCount.Type

/** A ledger row handed to a worker inside a batch. */
export const ClaimedDelivery = Schema.Struct({
  id: Schema.String,
  user_id: Schema.String,
  dedupe_key: Schema.String,
  email: Schema.String,
  data: Schema.Unknown
})
export type ClaimedDelivery = typeof ClaimedDelivery.Type

/** A batch taken over from a worker whose lease ran out. */
export const StaleBatch = Schema.Struct({ id: Schema.String, idempotency_key: Schema.String })

/** A ledger row put into a fresh batch, with the batch's id and key. */
export const FreshDelivery = Schema.Struct({
  ...ClaimedDelivery.fields,
  batch_id: Schema.String,
  idempotency_key: Schema.String
})

/** A ledger id. */
export const IdRow = Schema.Struct({ id: Schema.String })

/** A row a batch's verdicts wrote. */
export const WrittenRow = Schema.Struct({ id: Schema.String, status: Schema.Literals(["sent", "failed"]) })

/** A recipient the provider rejected. */
export const RejectedRow = Schema.Struct({ user_id: Schema.String, email: Schema.String })

/** A job's pending work. */
export const OutstandingRow = Schema.Struct({ pending: Schema.Number, next_lease_expiry: Schema.NullOr(Schema.Date) })

/** A count. */
export const CountRow = Schema.Struct({ n: Schema.Number })

/** Rows of one of the ledger's tables (runs, deliveries) dated after an instant, per job. */
export const FutureRows = Schema.Struct({
  job: Schema.String,
  rows: Schema.Number,
  /** The latest instant among them. */
  latest: Schema.Date,
  /** Up to 20 of their ids. */
  ids: Schema.Array(Schema.String)
})
export type FutureRows = typeof FutureRows.Type

/** One job's sent emails since an instant, by what became of them. */
export const DeliveryCounts = Schema.Struct({
  job: Schema.String,
  sent: Schema.Number,
  delivered: Schema.Number,
  bounced: Schema.Number,
  complained: Schema.Number,
  delayed: Schema.Number
})
export type DeliveryCounts = typeof DeliveryCounts.Type

/** What a timeline entry records: the row's planning, its end, what the provider said, the learner's choices. */
export const TimelineKind = Schema.Literals([
  "planned",
  "sent",
  "skipped",
  "failed",
  ...DELIVERY_STATES,
  "suppressed",
  "preference"
])
export type TimelineKind = typeof TimelineKind.Type

/** One event of a learner's timeline. */
export const TimelineEntry = Schema.Struct({
  at: Schema.Date,
  kind: TimelineKind,
  job: Schema.NullOr(Schema.String),
  detail: Schema.String
})
export type TimelineEntry = typeof TimelineEntry.Type

/** A learner's ledger row for the key at stake (`why`). */
export const PlannedRow = Schema.Struct({
  user_id: Schema.String,
  dedupe_key: Schema.String,
  status: DeliveryStatus,
  reason: Schema.NullOr(Schema.String),
  planned_at: Schema.Date,
  sent_at: Schema.NullOr(Schema.Date)
})

/** The email that holds a learner's cross-job cap (`why`). */
export const CapRow = Schema.Struct({
  job: Schema.String,
  dedupe_key: Schema.String,
  status: DeliveryStatus,
  at: Schema.Date
})

/**
 * A row of a job's own rules for one learner (`why`): its user, its key, its zone when the job reads one, and
 * whether each named rule holds (`rule_0`, `rule_1`, ...; the job's other columns are kept as they are).
 */
export const OwnRow = Schema.Record(Schema.String, Schema.Unknown)

/** A ledger row a run touched. */
export const TouchedRow = Schema.Struct({
  id: Schema.String,
  user_id: Schema.String,
  email: Schema.String,
  dedupe_key: Schema.String,
  status: DeliveryStatus,
  reason: Schema.NullOr(Schema.String),
  delivery: Schema.NullOr(DeliveryState),
  planned_at: Schema.Date,
  sent_at: Schema.NullOr(Schema.Date)
})
export type TouchedRow = typeof TouchedRow.Type
