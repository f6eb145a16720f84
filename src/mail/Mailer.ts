/**
 * The Mailer service: hands a batch of rendered emails to a provider and reports, per email, whether the
 * provider accepted it. A batch carries an idempotency key that the caller persisted before the first attempt,
 * so a resumed batch is sent with the same key and the provider never delivers it twice.
 * Layers: `layerTest` (in-memory, readable by tests), `layerConsole` (prints each email), and the Resend layer
 * in `ResendMailer.ts`.
 */
import { Console, Context, Effect, Layer, Ref, Schema } from "effect"

/** One fully rendered email, ready for a provider. */
export interface OutgoingEmail {
  readonly from: string
  readonly to: string
  readonly replyTo?: string | undefined
  readonly subject: string
  readonly html: string
  readonly text: string
  readonly headers: Readonly<Record<string, string>>
  readonly tags: ReadonlyArray<{ readonly name: string; readonly value: string }>
}

/** A batch of up to 100 emails with the idempotency key it was first sent with. */
export interface Batch {
  readonly idempotencyKey: string
  readonly emails: ReadonlyArray<OutgoingEmail>
  /** Epoch millis after which retries stop and the batch is left for a later run. */
  readonly deadline?: number | undefined
}

/**
 * What the provider said about one email of a batch, in the batch's order. `Rejected` is about the recipient
 * (the address is invalid: it is suppressed); `Refused` is about anything else (the sender, the content, the
 * account): it says nothing about the address, and the run stops with the email left pending for a re-run.
 */
export type DeliveryResult =
  | { readonly _tag: "Accepted"; readonly providerId: string | null }
  | { readonly _tag: "Rejected"; readonly reason: string }
  | { readonly _tag: "Refused"; readonly reason: string }

/** Why a whole batch could not be handed over. */
export const MailerErrorKind = Schema.Literals([
  "auth", // bad or missing API key: stop the run
  "quota", // daily or monthly quota: waiting will not help, stop the run
  "idempotency", // same key, different payload: never resend, report loudly
  "transient", // 5xx, network, rate limit, timeout: the batch stays pending
  "deadline", // retries ran out of time: the batch stays pending
  "invalid", // the request itself was refused (validation of the whole batch)
  "refused", // emails refused for their sender, content or account, not their recipients: stop, suppress nothing
  "rejections" // circuit breaker: too many recipients of one batch rejected to be a few bad addresses
])
export type MailerErrorKind = typeof MailerErrorKind.Type

/** A batch-level failure; `retryable` says whether the same batch may be tried again later. */
export class MailerError extends Schema.TaggedError<MailerError>()("MailerError", {
  message: Schema.String,
  kind: MailerErrorKind,
  retryable: Schema.Boolean
}) {}

/** The largest batch a provider call takes (Resend's batch API limit). */
export const MAX_BATCH = 100

/** The emails an in-memory mailer accepted, in order. */
export class MailerTestRef extends Context.Service<MailerTestRef, Ref.Ref<ReadonlyArray<OutgoingEmail>>>()(
  "kaiwa-jobs/MailerTestRef"
) {}

/** Hands batches of rendered emails to a provider. */
export class Mailer extends Context.Service<Mailer, {
  readonly send: (batch: Batch) => Effect.Effect<ReadonlyArray<DeliveryResult>, MailerError>
}>()("kaiwa-jobs/Mailer") {
  /** Prints each email readably (from, to, subject, text part) and accepts it. Used by dry runs and the demo. */
  static readonly layerConsole = Layer.sync(Mailer, () => consoleMailer)

  /** In-memory mailer: records every accepted email; tests read them through `MailerTestRef`. */
  static readonly layerTest = Layer.effect(Mailer, Effect.map(MailerTestRef, inMemory)).pipe(
    Layer.provideMerge(Layer.effect(MailerTestRef, Ref.make<ReadonlyArray<OutgoingEmail>>([])))
  )

  /**
   * The in-memory mailer recording into a store the caller keeps: for a test whose every command builds its own
   * stack (in-process CLI runs), so all of them record into one place.
   */
  static readonly layerTestInto = (store: Ref.Ref<ReadonlyArray<OutgoingEmail>>) =>
    Layer.succeed(Mailer, inMemory(store)).pipe(Layer.provideMerge(Layer.succeed(MailerTestRef, store)))
}

function inMemory(store: Ref.Ref<ReadonlyArray<OutgoingEmail>>): Mailer["Service"] {
  return Mailer.of({
    send: Effect.fn("Mailer.send")(function*(batch: Batch) {
      const sent = yield* Ref.updateAndGet(store, (all) => [...all, ...batch.emails])
      const first = sent.length - batch.emails.length
      return batch.emails.map((_, i): DeliveryResult => ({ _tag: "Accepted", providerId: `mem-${first + i + 1}` }))
    })
  })
}

/** The console mailer as a value, for a dry run inside a server whose own mailer is the real one. */
export const consoleMailer: Mailer["Service"] = {
  send: Effect.fn("Mailer.send")(function*(batch: Batch) {
    for (const email of batch.emails) {
      yield* Console.log(formatEmail(email))
    }
    return batch.emails.map((): DeliveryResult => ({ _tag: "Accepted", providerId: null }))
  })
}

/** A readable rendering of one email for the console and dry runs. */
export const formatEmail = (email: OutgoingEmail): string =>
  [
    "─".repeat(72),
    `From:     ${email.from}`,
    `To:       ${email.to}`,
    ...(email.replyTo ? [`Reply-To: ${email.replyTo}`] : []),
    `Subject:  ${email.subject}`,
    "",
    email.text.trimEnd()
  ].join("\n")
