/**
 * Telemetry on PostHog through the official `posthog-node` SDK. Each event is logged like `layerLog` does, then
 * captured under one fixed distinct id (the service, never a learner) and delivered straight away by a fiber of the
 * layer, so a long-running process does not hold events and every failure reaches our own logger as a warning.
 * PostHog's own flush timer is switched off (`flushInterval: 0`) because its background flushes report errors
 * with `console.error`, outside the structured logs. Releasing the layer waits for deliveries in flight, sends
 * whatever is left and shuts the client down, all bounded by `timeout`, so a dead PostHog never holds up exit and
 * never fails a run. The API key is unwrapped only to construct the client and appears in no log line.
 * SDK facts this relies on (posthog-node 5.70): events go to `POST {host}/batch/` as `{ api_key, batch, sent_at }`,
 * gzip-compressed when the runtime has `CompressionStream`; `flush()` rejects when a batch could not be sent;
 * a network failure keeps the batch queued, any other failure drops it.
 */
import { Duration, Effect, FiberSet, Layer, Option, Redacted } from "effect"
import { PostHog } from "posthog-node"
import { InvalidConfig } from "../config/Config.ts"
import { read } from "../config/Setting.ts"
import * as PostHogConfig from "./PostHogConfig.ts"
import { countEmails, logEvent, Telemetry } from "./Telemetry.ts"

/** What `make` needs; `layer` reads it from PostHog's settings (PostHogConfig.ts). */
export interface PostHogTelemetryOptions {
  readonly apiKey: Redacted.Redacted<string>
  /** PostHog's ingestion host, e.g. `https://us.i.posthog.com`; tests point it at a loopback server. */
  readonly host: string
  /** Whom events are attributed to; defaults to `DISTINCT_ID`. Never a user's id or address. */
  readonly distinctId?: string | undefined
  /** Longest wait for one delivery, and for the whole release; defaults to `DEFAULT_TIMEOUT`. */
  readonly timeout?: Duration.Input | undefined
}

/** The distinct id of every event: the service itself, so PostHog holds no person data from the jobs. */
export const DISTINCT_ID = "kaiwa-jobs"

/** Default bound on one delivery and on the release. */
export const DEFAULT_TIMEOUT: Duration.Duration = Duration.seconds(5)

// The SDK's errors carry a status or a network cause in their message, never the key or the payload.
const describe = (error: unknown): string => {
  if (error instanceof Error) {
    const cause = error.cause instanceof Error ? `: ${error.cause.message}` : ""
    return `${error.message}${cause}`.split("\n")[0]!.slice(0, 300)
  }
  return String(error).slice(0, 300)
}

/** Sends everything queued; true when PostHog accepted it. Never fails. */
const deliver = (client: PostHog, timeout: Duration.Duration) =>
  Effect.tryPromise({ try: () => client.flush(), catch: describe }).pipe(
    Effect.timeoutOrElse({
      duration: timeout,
      orElse: () => Effect.fail(`PostHog did not answer within ${Duration.format(timeout)}`)
    }),
    Effect.as(true),
    Effect.catch((reason) =>
      Effect.logWarning(`could not deliver telemetry events to PostHog: ${reason}`).pipe(Effect.as(false))
    )
  )

/**
 * The release: waits for deliveries in flight, sends what is left and shuts the client down, all within
 * `timeout`; after a failed delivery it skips shutdown, which would retry the same batch and report through
 * console.error.
 */
const release = (client: PostHog, deliveries: FiberSet.FiberSet<void>, timeout: Duration.Duration) =>
  Effect.gen(function*() {
    yield* FiberSet.awaitEmpty(deliveries)
    if (yield* deliver(client, timeout)) {
      yield* Effect.tryPromise(() => client.shutdown(Duration.toMillis(timeout))).pipe(Effect.ignore)
    }
  }).pipe(
    Effect.timeoutOption(timeout),
    Effect.flatMap(Option.match({
      onNone: () => Effect.logWarning(`PostHog did not finish within ${Duration.format(timeout)}; undelivered events are dropped`),
      onSome: () => Effect.void
    }))
  )

/** Builds the PostHog-backed Telemetry service; the client lives as long as the surrounding scope. */
export const make = Effect.fnUntraced(function*(options: PostHogTelemetryOptions) {
  const timeout = Duration.fromInputUnsafe(options.timeout ?? DEFAULT_TIMEOUT)
  const distinctId = options.distinctId ?? DISTINCT_ID
  // Created before the client so that its finalizer (interrupting stragglers) runs after the client's release.
  const deliveries = yield* FiberSet.make<void>()
  const client = yield* Effect.acquireRelease(
    Effect.sync(() =>
      new PostHog(Redacted.value(options.apiKey), {
        host: options.host,
        flushInterval: 0,
        requestTimeout: Duration.toMillis(timeout),
        fetchRetryCount: 1,
        fetchRetryDelay: 500,
        disableGeoip: true
      })
    ),
    (client) => release(client, deliveries, timeout)
  )

  const capture = (name: string, properties: Readonly<Record<string, unknown>>) =>
    Effect.try({
      // `$process_person_profile: false`: these are service events, PostHog should not make a person of them.
      try: () => client.capture({ distinctId, event: name, properties: { ...properties, $process_person_profile: false } }),
      catch: describe
    }).pipe(
      Effect.andThen(FiberSet.run(deliveries, deliver(client, timeout))),
      Effect.catch((reason) => Effect.logWarning(`could not queue telemetry event ${name} for PostHog: ${reason}`))
    )

  return Telemetry.of({
    event: (name, properties) => logEvent(name, properties).pipe(Effect.andThen(capture(name, properties)), Effect.asVoid),
    countEmails
  })
})

/**
 * PostHog on its own settings (`PostHogConfig.config`: POSTHOG_API_KEY, POSTHOG_HOST); fails with InvalidConfig
 * when the key is not set.
 */
export const layer = Layer.effect(
  Telemetry,
  Effect.gen(function*() {
    const { apiKey, host } = yield* read(PostHogConfig.config)
    if (Option.isNone(apiKey)) {
      return yield* new InvalidConfig({ variable: "POSTHOG_API_KEY", message: "POSTHOG_API_KEY is required for PostHog telemetry" })
    }
    return yield* make({ apiKey: apiKey.value, host })
  })
)
