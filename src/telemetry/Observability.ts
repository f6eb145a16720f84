/**
 * OTLP export of what Effect already records: the spans of every `Effect.fn` (Job.run, Delivery.deliver,
 * Mailer.send, Database.*), the metrics (`kaiwa_jobs_emails_total`) and the log lines, sent as OTLP/JSON to
 * `OTEL_EXPORTER_OTLP_ENDPOINT` (`/v1/traces`, `/v1/metrics`, `/v1/logs` below it) with Effect's own
 * `effect/observability` exporters over `fetch`. Without that variable the layer is empty and Effect keeps its
 * in-process tracer. The exporters buffer and send on an interval; closing the layer's scope sends what is
 * buffered (bounded by `shutdownTimeout`), so a job's spans leave the process before it exits, and an
 * unreachable collector only costs that bound. The console loggers stay (the OTLP logger is added to them).
 */
import { type Duration, Effect, Layer, Option } from "effect"
import { InvalidConfig, isHttpUrl, JobsConfig } from "../config/Config.ts"

/** The `service.name` of every exported span, metric and log record. */
export const SERVICE_NAME = "kaiwa-jobs"

/** What `layerOtlp` needs; `layer` reads it from configuration. */
export interface OtlpOptions {
  /** The collector's base URL, e.g. `http://localhost:4318`; signals go to `/v1/<signal>` below it. */
  readonly baseUrl: string
  /** Longest wait for the final export when the layer is released (per signal, concurrently); default 5 s. */
  readonly shutdownTimeout?: Duration.Input | undefined
  /** How often metrics are sent while the process runs; default 10 s (spans every 5 s, logs every second). */
  readonly metricsExportInterval?: Duration.Input | undefined
}

/**
 * OTLP/JSON export of traces, metrics and logs to `baseUrl`, flushed when the layer is released. The exporters
 * and the HTTP client are imported when the layer is built: without an endpoint they are never loaded.
 */
export const layerOtlp = (options: OtlpOptions): Layer.Layer<never> =>
  Layer.unwrap(Effect.map(
    Effect.promise(() => Promise.all([import("effect/observability/Otlp"), import("effect/http/FetchHttpClient")])),
    ([Otlp, FetchHttpClient]) =>
      Otlp.layerJson({
        baseUrl: options.baseUrl.replace(/\/+$/, ""),
        resource: { serviceName: SERVICE_NAME },
        shutdownTimeout: options.shutdownTimeout ?? "5 seconds",
        metricsExportInterval: options.metricsExportInterval
      }).pipe(Layer.provide(FetchHttpClient.layer))
  ))

/** OTLP export when `OTEL_EXPORTER_OTLP_ENDPOINT` is set (an http(s) URL, else InvalidConfig), nothing otherwise. */
export const layer: Layer.Layer<never, InvalidConfig, JobsConfig> = Layer.unwrap(
  Effect.gen(function*() {
    const config = yield* JobsConfig
    if (Option.isNone(config.otlpEndpoint)) return Layer.empty
    const baseUrl = config.otlpEndpoint.value.trim()
    if (!isHttpUrl(baseUrl)) {
      return yield* new InvalidConfig({
        variable: "OTEL_EXPORTER_OTLP_ENDPOINT",
        message: "OTEL_EXPORTER_OTLP_ENDPOINT must be an http(s) URL"
      })
    }
    return layerOtlp({ baseUrl })
  })
)
