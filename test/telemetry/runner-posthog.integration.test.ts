import { assert, describe, layer } from "@effect/vitest"
import { Effect, Layer, Redacted } from "effect"
import { TestClock } from "effect/testing"
import { runJob } from "../../src/job/Job.ts"
import { practiceReminders } from "../../src/jobs/index.ts"
import * as PostHogTelemetry from "../../src/telemetry/PostHogTelemetry.ts"
import { Telemetry } from "../../src/telemetry/Telemetry.ts"
import { insertUsers, testLayer } from "../support/TestDb.ts"
import { loopback } from "./Loopback.ts"

const HOUR = 3_600_000
const DAY = 24 * HOUR
// Tuesday 2026-03-10 10:00 UTC: inside the 09:00-21:00 reminder window for UTC users.
const T = Date.parse("2026-03-10T10:00:00Z")

interface PostHogBatch {
  readonly batch: ReadonlyArray<{ readonly event: string; readonly properties: Record<string, unknown> }>
}

describe("runner with PostHog telemetry", () => {
  layer(testLayer, { excludeTestServices: true })((it) => {
    it.effect("sends exactly one cron_job_completed per run with the run's stats, and none for a dry run", () =>
      Effect.gen(function*() {
        const posthog = yield* loopback()
        const events = () =>
          posthog.at("/batch/").flatMap((r) => (r.json as PostHogBatch).batch).filter((e) => e.event.startsWith("cron_job"))
        // Each run gets its own PostHog layer, released (flushed) when the run ends, as the CLI does.
        const withPostHog = Effect.provide(
          Layer.effect(Telemetry, PostHogTelemetry.make({ apiKey: Redacted.make("phc_runner_test"), host: posthog.url }))
        )
        yield* insertUsers([
          { id: "p1", createdAt: new Date(T - 10 * DAY), sessions: [{ at: new Date(T - 3 * DAY), language: "ja" }] },
          { id: "p2", createdAt: new Date(T - 10 * DAY) },
          { id: "p3", createdAt: new Date(T - 10 * DAY), sessions: [{ at: new Date(T - HOUR), language: "es" }] }
        ])
        yield* TestClock.setTime(T)

        const first = yield* runJob(practiceReminders).pipe(withPostHog)
        assert.strictEqual(events().length, 1)
        const [one] = events()
        assert.strictEqual(one!.event, "cron_job_completed")
        assert.strictEqual(one!.properties["job"], "practice-reminders")
        assert.strictEqual(one!.properties["outcome"], "succeeded")
        assert.strictEqual(one!.properties["duration_ms"], first.durationMs)
        assert.deepStrictEqual(one!.properties["stats"], JSON.parse(JSON.stringify(first.stats)))
        assert.strictEqual((one!.properties["stats"] as { sent: number }).sent, 2)

        yield* runJob(practiceReminders).pipe(withPostHog)
        assert.strictEqual(events().length, 2)
        assert.strictEqual((events()[1]!.properties["stats"] as { sent: number }).sent, 0)

        yield* runJob(practiceReminders, { dryRun: true }).pipe(withPostHog)
        assert.strictEqual(events().length, 2)
      }).pipe(Effect.provide(TestClock.layer())))
  })
})
