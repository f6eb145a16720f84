import { assert, describe, it } from "@effect/vitest"
import { ConfigProvider, Effect, Exit, Layer, Logger, Option, Redacted, Tracer } from "effect"
import { JobsConfig } from "../../src/config/Config.ts"
import { read } from "../../src/config/Setting.ts"
import * as Layers from "../../src/job/Layers.ts"
import * as Observability from "../../src/telemetry/Observability.ts"
import * as PostHogConfig from "../../src/telemetry/PostHogConfig.ts"
import * as PostHogTelemetry from "../../src/telemetry/PostHogTelemetry.ts"
import { countEmails, Telemetry } from "../../src/telemetry/Telemetry.ts"
import { loopback, type Received } from "./Loopback.ts"

const API_KEY = "phc_loopback_secret_0123456789"

/**
 * The settings as `JobsConfig.layer` reads them from exactly these variables (nothing from the environment), and
 * the same variables for the layers that read their own settings (PostHog's).
 */
const configWith = (vars: Record<string, string>) =>
  JobsConfig.layer.pipe(Layer.provideMerge(ConfigProvider.layer(ConfigProvider.fromUnknown(vars))))

/** Replaces the loggers with one that keeps every line as JSON text. */
const collectLogs = (lines: Array<string>) =>
  Logger.layer([Logger.make((options) => {
    lines.push(`${options.logLevel} ${Logger.formatJson.log(options)}`)
  })])

const completed = {
  job: "practice-reminders",
  stats: { due: 3, sent: 2, failed: 1, skipped: { cooldown: 1 }, pending: 0, badRows: {} },
  duration_ms: 1234,
  outcome: "incomplete"
}

interface PostHogBatch {
  readonly api_key: string
  readonly batch: ReadonlyArray<{ readonly event: string; readonly distinct_id: string; readonly properties: Record<string, unknown> }>
}

const eventsIn = (requests: ReadonlyArray<Received>) => requests.flatMap((r) => (r.json as PostHogBatch).batch)

describe("PostHog telemetry", () => {
  it.live("delivers cron_job_completed with its properties and the project key to /batch/, and logs no key", () =>
    Effect.gen(function*() {
      const posthog = yield* loopback()
      const logs: Array<string> = []
      const stack = Layers.telemetry.pipe(Layer.provide(configWith({ POSTHOG_API_KEY: API_KEY, POSTHOG_HOST: posthog.url })))
      yield* Telemetry.use((t) => t.event("cron_job_completed", completed)).pipe(
        Effect.provide(stack),
        Effect.provide(collectLogs(logs))
      )
      // The layer is released here: whatever was queued has been sent.
      const batches = posthog.at("/batch/")
      assert.isAbove(batches.length, 0)
      assert.isTrue(batches.every((r) => r.method === "POST"))
      assert.isTrue(batches.every((r) => (r.json as PostHogBatch).api_key === API_KEY))
      const events = eventsIn(batches)
      assert.strictEqual(events.length, 1)
      const [event] = events
      assert.strictEqual(event!.event, "cron_job_completed")
      assert.strictEqual(event!.distinct_id, PostHogTelemetry.DISTINCT_ID)
      assert.strictEqual(event!.properties["job"], "practice-reminders")
      assert.deepStrictEqual(event!.properties["stats"], completed.stats)
      assert.strictEqual(event!.properties["duration_ms"], 1234)
      assert.strictEqual(event!.properties["outcome"], "incomplete")
      assert.strictEqual(event!.properties["$process_person_profile"], false)

      assert.isTrue(logs.some((l) => l.startsWith("Info") && l.includes("event cron_job_completed") && l.includes("\"duration_ms\":1234")))
      assert.isFalse(logs.some((l) => l.includes(API_KEY)), "the API key appears in a log line")
      assert.isFalse(logs.some((l) => l.startsWith("Warn")), logs.join("\n"))
      assert.isFalse(posthog.received.some((r) => r.path.includes(API_KEY)), "the API key appears in a URL")
    }))

  it.live("sends each event as it happens, before the layer is released", () =>
    Effect.gen(function*() {
      const posthog = yield* loopback()
      yield* Effect.gen(function*() {
        const telemetry = yield* Telemetry
        yield* telemetry.event("cron_job_completed", completed)
        // A long-running process (the HTTP trigger) must not sit on events until it exits.
        for (let i = 0; i < 100 && eventsIn(posthog.at("/batch/")).length === 0; i++) yield* Effect.sleep("20 millis")
        assert.strictEqual(eventsIn(posthog.at("/batch/")).length, 1)
      }).pipe(
        Effect.provide(Layer.effect(Telemetry, PostHogTelemetry.make({ apiKey: Redacted.make(API_KEY), host: posthog.url }))),
        Effect.provide(collectLogs([]))
      )
      assert.strictEqual(eventsIn(posthog.at("/batch/")).length, 1)
    }))

  it.live("a PostHog that answers 500 costs a warning, never a failure", () =>
    Effect.gen(function*() {
      const posthog = yield* loopback({ status: 500 })
      const logs: Array<string> = []
      const exit = yield* Telemetry.use((t) => t.event("cron_job_completed", completed)).pipe(
        Effect.provide(Layer.effect(Telemetry, PostHogTelemetry.make({ apiKey: Redacted.make(API_KEY), host: posthog.url }))),
        Effect.provide(collectLogs(logs)),
        Effect.exit
      )
      assert.isTrue(Exit.isSuccess(exit))
      assert.isAbove(posthog.at("/batch/").length, 0)
      const warnings = logs.filter((l) => l.startsWith("Warn"))
      assert.isTrue(warnings.some((l) => l.includes("could not deliver telemetry events to PostHog") && l.includes("status=500")), logs.join("\n"))
      assert.isFalse(logs.some((l) => l.includes(API_KEY)))
    }))

  it.live("a PostHog that never answers holds up release only for the timeout", () =>
    Effect.gen(function*() {
      const posthog = yield* loopback("hang")
      const logs: Array<string> = []
      const started = Date.now()
      const exit = yield* Telemetry.use((t) => t.event("cron_job_completed", completed)).pipe(
        Effect.provide(Layer.effect(Telemetry, PostHogTelemetry.make({ apiKey: Redacted.make(API_KEY), host: posthog.url, timeout: "300 millis" }))),
        Effect.provide(collectLogs(logs)),
        Effect.exit
      )
      const elapsed = Date.now() - started
      assert.isTrue(Exit.isSuccess(exit))
      assert.isBelow(elapsed, 2_000)
      assert.isAbove(posthog.at("/batch/").length, 0)
      assert.isTrue(logs.some((l) => l.startsWith("Warn") && l.includes("PostHog")), logs.join("\n"))
    }))

  it.live("an unreachable PostHog costs a warning, never a failure", () =>
    Effect.gen(function*() {
      const closed = yield* Effect.scoped(Effect.map(loopback(), (s) => s.url))
      const logs: Array<string> = []
      const exit = yield* Telemetry.use((t) => t.event("cron_job_completed", completed)).pipe(
        Effect.provide(Layer.effect(Telemetry, PostHogTelemetry.make({ apiKey: Redacted.make(API_KEY), host: closed, timeout: "2 seconds" }))),
        Effect.provide(collectLogs(logs)),
        Effect.exit
      )
      assert.isTrue(Exit.isSuccess(exit))
      assert.isTrue(logs.some((l) => l.startsWith("Warn") && l.includes("could not deliver telemetry events to PostHog")), logs.join("\n"))
    }))

  it.live("the PostHog layer refuses to build without POSTHOG_API_KEY", () =>
    Effect.gen(function*() {
      const exit = yield* Effect.exit(Layer.build(PostHogTelemetry.layer.pipe(Layer.provide(configWith({})))).pipe(Effect.scoped))
      assert.isTrue(Exit.isFailure(exit))
      assert.include(String(Exit.isFailure(exit) ? exit.cause : ""), "POSTHOG_API_KEY")
    }))
})

interface OtlpSpan {
  readonly name: string
  readonly spanId: string
  readonly parentSpanId?: string
  readonly traceId: string
}
interface OtlpAttribute {
  readonly key: string
  readonly value: { readonly stringValue?: string; readonly intValue?: number | string; readonly doubleValue?: number }
}
interface OtlpTraces {
  readonly resourceSpans: ReadonlyArray<{
    readonly resource: { readonly attributes: ReadonlyArray<OtlpAttribute> }
    readonly scopeSpans: ReadonlyArray<{ readonly spans: ReadonlyArray<OtlpSpan> }>
  }>
}
interface OtlpDataPoint {
  readonly attributes: ReadonlyArray<OtlpAttribute>
  readonly asDouble?: number
  readonly asInt?: number | string
}
interface OtlpMetrics {
  readonly resourceMetrics: ReadonlyArray<{
    readonly scopeMetrics: ReadonlyArray<{
      readonly metrics: ReadonlyArray<{ readonly name: string; readonly sum?: { readonly dataPoints: ReadonlyArray<OtlpDataPoint> } }>
    }>
  }>
}
interface OtlpLogs {
  readonly resourceLogs: ReadonlyArray<{
    readonly scopeLogs: ReadonlyArray<{ readonly logRecords: ReadonlyArray<{ readonly body: { readonly stringValue?: string } }> }>
  }>
}

const attribute = (attributes: ReadonlyArray<OtlpAttribute>, key: string) => attributes.find((a) => a.key === key)?.value.stringValue

describe("OTLP export", () => {
  it.live("sends the spans of Effect.fn, the email counter and the log lines to the collector when released", () =>
    Effect.gen(function*() {
      const collector = yield* loopback()
      const logs: Array<string> = []
      // A job name no other test uses: the metric registry is process-wide.
      const job = "otlp-loopback-check"
      const send = Effect.fn("Mailer.send")(function*() {
        yield* countEmails(job, "sent", 3)
      })
      const run = Effect.fn("Job.run")(function*() {
        yield* send()
        yield* Effect.logInfo("otlp run finished")
      })
      const stack = Observability.layer.pipe(
        Layer.provide(configWith({ OTEL_EXPORTER_OTLP_ENDPOINT: `${collector.url}/` }))
      )
      yield* run().pipe(Effect.provide(stack), Effect.provide(collectLogs(logs)))

      const traces = collector.at("/v1/traces").map((r) => r.json as OtlpTraces)
      assert.isAbove(traces.length, 0)
      const resource = traces[0]!.resourceSpans[0]!.resource.attributes
      assert.strictEqual(attribute(resource, "service.name"), Observability.SERVICE_NAME)
      const spans = traces.flatMap((t) => t.resourceSpans.flatMap((rs) => rs.scopeSpans.flatMap((ss) => ss.spans)))
      const jobRun = spans.find((s) => s.name === "Job.run")
      const mailerSend = spans.find((s) => s.name === "Mailer.send")
      assert.isDefined(jobRun)
      assert.isDefined(mailerSend)
      assert.strictEqual(mailerSend!.parentSpanId, jobRun!.spanId)
      assert.strictEqual(mailerSend!.traceId, jobRun!.traceId)

      const metrics = collector.at("/v1/metrics").map((r) => r.json as OtlpMetrics)
      assert.isAbove(metrics.length, 0)
      const points = metrics.flatMap((m) =>
        m.resourceMetrics.flatMap((rm) => rm.scopeMetrics.flatMap((sm) => sm.metrics)))
        .filter((m) => m.name === "kaiwa_jobs_emails_total")
        .flatMap((m) => m.sum?.dataPoints ?? [])
        .filter((p) => attribute(p.attributes, "job") === job && attribute(p.attributes, "outcome") === "sent")
      assert.isAbove(points.length, 0)
      assert.strictEqual(Number(points.at(-1)!.asDouble ?? points.at(-1)!.asInt), 3)

      const records = collector.at("/v1/logs").map((r) => r.json as OtlpLogs)
        .flatMap((l) => l.resourceLogs.flatMap((rl) => rl.scopeLogs.flatMap((sl) => sl.logRecords)))
      assert.isTrue(records.some((r) => r.body.stringValue === "otlp run finished"))
      // The OTLP logger is added to the console loggers, not put in their place.
      assert.isTrue(logs.some((l) => l.includes("otlp run finished")))
    }))

  it.live("refuses an endpoint that is not an http(s) URL, naming the variable", () =>
    Effect.gen(function*() {
      const exit = yield* Effect.exit(
        Layer.build(Observability.layer.pipe(Layer.provide(configWith({ OTEL_EXPORTER_OTLP_ENDPOINT: "collector:4318" })))).pipe(Effect.scoped)
      )
      assert.isTrue(Exit.isFailure(exit))
      assert.include(String(Exit.isFailure(exit) ? exit.cause : ""), "OTEL_EXPORTER_OTLP_ENDPOINT")
    }))
})

describe("PostHog's own settings (PostHogConfig)", () => {
  const readWith = (vars: Record<string, string>) =>
    Effect.exit(read(PostHogConfig.config).pipe(Effect.provide(ConfigProvider.layer(ConfigProvider.fromUnknown(vars)))))

  it.effect("unset or blank key: no PostHog; the host defaults to PostHog's US host, trailing slashes dropped", () =>
    Effect.gen(function*() {
      const unset = yield* read(PostHogConfig.config).pipe(Effect.provide(ConfigProvider.layer(ConfigProvider.fromUnknown({}))))
      assert.isTrue(Option.isNone(unset.apiKey))
      assert.strictEqual(unset.host, PostHogConfig.DEFAULT_HOST)
      const set = yield* read(PostHogConfig.config).pipe(
        Effect.provide(ConfigProvider.layer(ConfigProvider.fromUnknown({ POSTHOG_API_KEY: API_KEY, POSTHOG_HOST: "https://eu.i.posthog.com/" })))
      )
      assert.strictEqual(Option.map(set.apiKey, Redacted.value).pipe(Option.getOrUndefined), API_KEY)
      assert.strictEqual(set.host, "https://eu.i.posthog.com")
    }))

  it.effect("a bad host and a key with a pasted newline are both named, neither value repeated", () =>
    Effect.gen(function*() {
      const exit = yield* readWith({ POSTHOG_API_KEY: `${API_KEY}\n`, POSTHOG_HOST: "eu.i.posthog.com?x=1" })
      assert.isTrue(Exit.isFailure(exit))
      const text = String(Exit.isFailure(exit) ? exit.cause : "")
      assert.include(text, "POSTHOG_API_KEY contains a control character")
      assert.include(text, "POSTHOG_HOST must be an absolute http(s) URL without a query or fragment")
      assert.notInclude(text, API_KEY)
      assert.notInclude(text, "eu.i.posthog.com?x=1")
    }))
})

describe("telemetry chosen by configuration", () => {
  it.live("with neither POSTHOG_API_KEY nor OTEL_EXPORTER_OTLP_ENDPOINT, events are log lines and nothing is sent", () =>
    Effect.gen(function*() {
      const posthog = yield* loopback()
      const logs: Array<string> = []
      const stack = Layer.mergeAll(Layers.telemetry, Observability.layer).pipe(
        // An empty key counts as unset; the host alone does not turn PostHog on.
        Layer.provide(configWith({ POSTHOG_API_KEY: "", POSTHOG_HOST: posthog.url }))
      )
      const tracer = yield* Effect.gen(function*() {
        yield* Telemetry.use((t) => t.event("cron_job_completed", completed))
        yield* Effect.fn("Job.run")(function*() {})()
        return yield* Effect.tracer
      }).pipe(Effect.provide(stack), Effect.provide(collectLogs(logs)))
      assert.strictEqual(tracer, Tracer.nativeTracer)
      assert.strictEqual(posthog.received.length, 0)
      assert.isTrue(logs.some((l) => l.includes("event cron_job_completed")))
    }))
})
