/**
 * The provider answers that stop a run although the batch was recorded: a refusal for the sender, the content
 * or the account, and the circuit breaker for a batch mostly rejected as invalid.
 */
import { MailerError } from "../../mail/Mailer.ts"

/**
 * The circuit breaker: a batch in which more than `BREAKER_RATE` of the recipients, and at least
 * `BREAKER_MIN` of them, are rejected as invalid is not a few bad addresses (the selection already leaves out
 * what cannot be an address) but a problem with the sender, the content or the provider that its messages did not
 * name. That batch is recorded (at most one batch's worth of addresses suppressed) and the run stops (exit 1),
 * leaving the rest pending, instead of suppressing the audience batch after batch.
 */
export const BREAKER_RATE = 0.05
/** See `BREAKER_RATE`: fewer rejections than this never trip the breaker (one bad address in a batch of 10). */
export const BREAKER_MIN = 5

/** Whether `rejected` invalid recipients among `size` trip the breaker. */
export const tripsBreaker = (rejected: number, size: number) => rejected >= BREAKER_MIN && rejected > BREAKER_RATE * size

/** The error a tripped breaker stops the run with. */
export const breakerError = (rejected: number, size: number) =>
  new MailerError({
    kind: "rejections",
    retryable: false,
    message: `circuit breaker: the provider rejected ${rejected} of ${size} recipients of one batch as invalid ` +
      `(more than ${BREAKER_RATE * 100}%), which is not a few bad addresses; the run stopped before suppressing more ` +
      "than that batch's. Check the sender, the content and the provider account; the rest stay pending for a re-run"
  })

/** The error a batch with refused emails (sender, content, account) stops the run with. */
export const refusedError = (reasons: ReadonlyArray<string>, size: number) =>
  new MailerError({
    kind: "refused",
    retryable: false,
    message: `the provider refused ${reasons.length} of ${size} email(s) of a batch for their sender, content or ` +
      `account, not their recipients (${reasons[0]!.slice(0, 200)}). Nothing was suppressed; the emails stay pending ` +
      "and a re-run sends them under a new idempotency key once the cause is fixed"
  })
