/**
 * The ledger's reasons: the texts a person reads in `reason` (timeline, console, `status`), and the typed
 * `failure` kind the code matches on (decision "Ledger: a failed row's kind is a column", docs/decisions.md).
 */
/**
 * A batch first sent longer ago than this is not resent: Resend keeps idempotency keys for 24 h, and a resend
 * after that could deliver twice. Its rows are marked failed with `KEY_EXPIRED_REASON` for the operator.
 */
export const KEY_MAX_AGE_HOURS = 23
export const KEY_EXPIRED_REASON = "outcome_unknown: the batch's idempotency key expired before it was confirmed"
/** Rows of a batch whose key the provider refused with a different payload (see migration 0002). */
export const CONFLICT_REASON = "outcome_unknown: idempotency conflict (the batch no longer renders as first sent)"

/**
 * How the text of a row the provider refused begins, for people. The ledger tells such rows by their `failure`
 * kind (`rejected`), which alone suppresses the address.
 */
export const REJECTED_PREFIX = "rejected: "

/** Reasons that mean the app's data is bad, reported by user id. */
export const BAD_ROW_REASONS: ReadonlySet<string> = new Set(["invalid_email"])

/** Bad data that does not stop a user being served (reported by id all the same). */
export const BAD_ROW_NOTES: ReadonlyArray<"unknown_timezone"> = ["unknown_timezone"]

// Rows failed before `failure` existed were classified by migration 0012 from their reason's prefix.
