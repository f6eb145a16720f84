import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer, Redacted } from "effect"
import * as Layers from "../../src/job/Layers.ts"
import { run } from "../support/spawn.ts"
import { freshDatabaseUrl } from "../support/TestDb.ts"
import { loopback } from "./Loopback.ts"

const POSTHOG_KEY = "phc_SECRET_posthog_key_5"

interface PostHogBatch {
  readonly api_key: string
  readonly batch: ReadonlyArray<{ readonly event: string; readonly properties: Record<string, unknown> }>
}
interface OtlpTraces {
  readonly resourceSpans: ReadonlyArray<{ readonly scopeSpans: ReadonlyArray<{ readonly spans: ReadonlyArray<{ readonly name: string }> }> }>
}

describe("a live run of the compiled main", () => {
  it.live("delivers cron_job_completed to PostHog and its spans to the OTLP collector before the process exits", () =>
    Effect.gen(function*() {
      const url = yield* freshDatabaseUrl
      // Migrated, with the app's tables, and no users: nothing is due, so Resend is never called.
      yield* Effect.scoped(Layer.build(Layers.test(url)))
      const posthog = yield* loopback()
      const collector = yield* loopback()
      const r = yield* Effect.promise(() =>
        run("dist/send-reminders.js", [], {
          DATABASE_URL: Redacted.value(url),
          RESEND_API_KEY: "re_unused_in_this_test",
          MAIL_FROM: "Kaiwa <hello@example.com>",
          APP_URL: "https://kaiwa.example",
          UNSUBSCRIBE_SECRET: "unsubscribe-secret-long-enough",
          POSTHOG_API_KEY: POSTHOG_KEY,
          POSTHOG_HOST: posthog.url,
          OTEL_EXPORTER_OTLP_ENDPOINT: collector.url
        })
      )
      assert.strictEqual(r.code, 0, r.stdout + r.stderr)
      assert.notInclude(r.stdout + r.stderr, POSTHOG_KEY)

      const batches = posthog.at("/batch/").map((b) => b.json as PostHogBatch)
      assert.isTrue(batches.every((b) => b.api_key === POSTHOG_KEY))
      const events = batches.flatMap((b) => b.batch)
      assert.deepStrictEqual(events.map((e) => e.event), ["cron_job_completed"])
      assert.strictEqual(events[0]!.properties["job"], "practice-reminders")
      assert.strictEqual((events[0]!.properties["stats"] as { sent: number }).sent, 0)

      const spans = collector.at("/v1/traces")
        .flatMap((t) => (t.json as OtlpTraces).resourceSpans.flatMap((rs) => rs.scopeSpans.flatMap((ss) => ss.spans)))
        .map((s) => s.name)
      assert.include(spans, "Job.run")
      assert.include(spans, "Delivery.deliver")
      assert.include(spans, "Ledger.claimBatch")
      assert.isAbove(collector.at("/v1/metrics").length, 0)
      assert.isAbove(collector.at("/v1/logs").length, 0)
    }))
})
