/**
 * The Telemetry service: product events (`cron_job_completed`) and counters. Structured logs and spans come
 * from Effect itself; this service is for what an operator's analytics should receive. Layers: `layerLog`
 * (events as structured log lines), `layerTest` (in-memory, readable by tests); PostHog lives in
 * `PostHogTelemetry.ts`, OTLP export of spans, metrics and logs in `Observability.ts`, and `Layers.ts` picks them
 * by configuration.
 */
import { Context, Effect, Layer, Metric, Ref } from "effect"

/** One product event. */
export interface TelemetryEvent {
  readonly name: string
  readonly properties: Readonly<Record<string, unknown>>
}

const emails = Metric.counter("kaiwa_jobs_emails_total", { description: "Emails by job and outcome", incremental: true })

/** An event as one structured log line (`event` plus its properties as annotations); every layer but the test one logs it. */
export const logEvent = (name: string, properties: Readonly<Record<string, unknown>>): Effect.Effect<void> =>
  Effect.logInfo(`event ${name}`).pipe(Effect.annotateLogs({ event: name, ...properties }))

/** Adds `n` to the `kaiwa_jobs_emails_total{job, outcome}` counter (exported by OTLP when it is on). */
export const countEmails = (job: string, outcome: "sent" | "failed" | "skipped", n: number): Effect.Effect<void> =>
  n === 0 ? Effect.void : Metric.update(Metric.withAttributes(emails, { job, outcome }), n)

/** The events an in-memory Telemetry received, in order. */
export class TelemetryTestRef extends Context.Service<TelemetryTestRef, Ref.Ref<ReadonlyArray<TelemetryEvent>>>()(
  "kaiwa-jobs/TelemetryTestRef"
) {}

/** Emits product events and counts emails. */
export class Telemetry extends Context.Service<Telemetry, {
  readonly event: (name: string, properties: Readonly<Record<string, unknown>>) => Effect.Effect<void>
  readonly countEmails: (job: string, outcome: "sent" | "failed" | "skipped", n: number) => Effect.Effect<void>
}>()("kaiwa-jobs/Telemetry") {
  /** Events become structured log lines; email counts become an Effect metric (exported by OTLP when on). */
  static readonly layerLog = Layer.succeed(
    Telemetry,
    Telemetry.of({ event: logEvent, countEmails })
  )

  /** In-memory: tests read the events through `TelemetryTestRef`. */
  static readonly layerTest = Layer.effect(
    Telemetry,
    Effect.gen(function*() {
      const store = yield* TelemetryTestRef
      return Telemetry.of({
        event: (name, properties) => Ref.update(store, (all) => [...all, { name, properties }]),
        countEmails: () => Effect.void
      })
    })
  ).pipe(Layer.provideMerge(Layer.effect(TelemetryTestRef, Ref.make<ReadonlyArray<TelemetryEvent>>([]))))
}
