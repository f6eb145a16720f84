/**
 * The four mode stacks of docs/architecture.md, in one place. Each provides Database, Mailer, Telemetry and
 * JobsConfig; Clock is Effect's own (TestClock in tests, a shifted clock for `--now`).
 *
 * | mode     | database                    | mailer    | writes       |
 * | live     | DATABASE_URL                | Resend    | ledger, runs |
 * | dry-run  | DATABASE_URL or embedded    | console   | nothing      |
 * | local    | embedded, persistent folder | console   | ledger, runs |
 * | test     | embedded (per test file)    | in-memory | ledger, runs |
 */
import { Clock, Duration, Effect, Layer, Option, Redacted } from "effect"
import { InvalidConfig, JobsConfig } from "../config/Config.ts"
import { Database, labelOf, pgLayer } from "../database/Database.ts"
import { EmbeddedPostgres } from "../local/EmbeddedPostgres.ts"
import { Mailer } from "../mail/Mailer.ts"
import type { AppFixture } from "../migrations/index.ts"
import { read } from "../config/Setting.ts"
import * as Observability from "../telemetry/Observability.ts"
import * as PostHogConfig from "../telemetry/PostHogConfig.ts"
import { Telemetry } from "../telemetry/Telemetry.ts"

/**
 * The Resend mailer on its own settings (`ResendMailer.config`: RESEND_API_KEY, RESEND_RPS, RESEND_RPS_SCOPE,
 * RESEND_TIMEOUT, RESEND_BASE_URL), its rate limit shared through the database by every process unless
 * RESEND_RPS_SCOPE=process. `load` checks the same variables beforehand, so that live mode names every bad setting
 * in one message; this layer is what reads them for the mailer. Imported here, not at the top: only a live run loads
 * the `resend` SDK and the limiters.
 */
export const resendFromConfig = Layer.unwrap(
  Effect.map(Effect.promise(() => import("../mail/ResendMailer.ts")), (ResendMailer) => ResendMailer.layerConfig(ResendMailer.config))
)

/**
 * Product events to PostHog when POSTHOG_API_KEY is set, otherwise as log lines, on PostHog's own settings
 * (`PostHogConfig.config`). `posthog-node` is imported only when the key is set (a process without it never loads
 * the SDK).
 */
export const telemetry: Layer.Layer<Telemetry, InvalidConfig> = Layer.unwrap(
  Effect.flatMap(read(PostHogConfig.config), ({ apiKey, host }) =>
    Option.match(apiKey, {
      onNone: () => Effect.succeed(Telemetry.layerLog),
      onSome: (key) =>
        Effect.map(
          Effect.promise(() => import("../telemetry/PostHogTelemetry.ts")),
          (PostHogTelemetry) => Layer.effect(Telemetry, PostHogTelemetry.make({ apiKey: key, host }))
        )
    }))
)

/**
 * Production on Fly: every required variable present (exit 2 otherwise), real database, Resend, PostHog and OTLP
 * export when configured. Releasing the stack (the end of the run) flushes PostHog and the OTLP exporters.
 */
export const live = Layer.mergeAll(resendFromConfig, telemetry, Observability.layer).pipe(
  Layer.provideMerge(Database.layer),
  Layer.provideMerge(JobsConfig.layerLive)
)

/**
 * Dry run: the configured database when DATABASE_URL is set (read only: the runner writes nothing in a dry run),
 * otherwise a throwaway embedded one; every email printed, nothing sent, and no analytics: events stay log lines
 * (the runner emits none in a dry run anyway).
 */
export const dryRun = Layer.mergeAll(
  Layer.unwrap(Effect.map(JobsConfig, (config) =>
    Option.isSome(config.databaseUrl)
      ? Database.layerFromSql(labelOf(config.databaseUrl.value)).pipe(Layer.provideMerge(pgLayer(config.databaseUrl.value)))
      : Database.layerEmbedded("postgres", "kaiwa", "an empty embedded database (DATABASE_URL is not set): nothing to read").pipe(
        Layer.provide(EmbeddedPostgres.layer)
      )
  )),
  Mailer.layerConsole,
  Telemetry.layerLog
).pipe(Layer.provideMerge(JobsConfig.layer))

/** Local runs and the demo: an embedded server whose data persists in `dataDir`, console mailer. */
export const local = (dataDir: string) =>
  Layer.mergeAll(
    Database.layerEmbedded("postgres", "kaiwa", `the local demo database (${dataDir})`).pipe(
      Layer.provide(EmbeddedPostgres.layerPersistent(dataDir))
    ),
    Mailer.layerConsole,
    Telemetry.layerLog
  ).pipe(Layer.provideMerge(JobsConfig.layer))

/**
 * Tests: a given (embedded) database, migrated with an app fixture (Kaiwa's real shape unless told otherwise);
 * in-memory mailer and telemetry.
 */
export const test = (url: Redacted.Redacted<string>, fixture: AppFixture = "kaiwa") =>
  Layer.mergeAll(
    Database.layerMigrated({ appFixture: fixture }).pipe(Layer.provideMerge(pgLayer(url))),
    Mailer.layerTest,
    Telemetry.layerTest
  ).pipe(Layer.provideMerge(JobsConfig.layer))

/**
 * A Clock that reads exactly `at` the first time it is asked and then runs at real speed: `--now` makes a whole
 * run happen as of that instant (leases and deadlines still measure real elapsed time).
 */
export const clockAt = (at: Date) =>
  Layer.effect(
    Clock.Clock,
    Effect.map(Clock.clockWith(Effect.succeed), (real) => {
      let offset: number | undefined
      const millis = () => {
        const t = real.currentTimeMillisUnsafe()
        offset ??= at.getTime() - t
        return t + offset
      }
      return {
        currentTimeMillisUnsafe: millis,
        currentTimeMillis: Effect.sync(millis),
        currentTimeNanosUnsafe: () => BigInt(millis()) * 1_000_000n,
        currentTimeNanos: Effect.sync(() => BigInt(millis()) * 1_000_000n),
        monotonicTimeNanosUnsafe: () => real.monotonicTimeNanosUnsafe(),
        monotonicTimeNanos: real.monotonicTimeNanos,
        sleep: (d: Duration.Duration) => real.sleep(d)
      } satisfies Clock.Clock
    })
  )

/**
 * `--now` when given, else nothing (the real clock). Provide it inside the mode stack, so the first reading of
 * the shifted clock is near the run's start, not the stack's start-up (an embedded server, say). The run's
 * `asOf` itself is passed to runJob exactly (RunOptions.asOf): the first reading can be a span's.
 */
export const clockFor = (now: Date | undefined): Layer.Layer<never> => now === undefined ? Layer.empty : clockAt(now)
