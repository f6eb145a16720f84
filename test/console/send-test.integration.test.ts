/**
 * `kaiwa-jobs send-test` (issue 21 item 3), the compiled CLI as an operator runs it, in live mode: the real Resend
 * mailer (the `resend` SDK) against the fake Resend on loopback, over a fresh migrated database. The test email
 * goes to the given address only, with `[test] ` before the subject and the tag `test=true`, carries the learner's
 * own data (or a sample), has links that cannot act for the learner, and leaves every library table as it was:
 * the ledger, runs, batches and suppressions, so it never counts in the cap, the dedupe keys or the delivery
 * health. The learner's own reminder still goes out afterwards.
 */
import { assert, describe, it } from "@effect/vitest"
import { ConfigProvider, Effect, Layer, Redacted, Ref, References } from "effect"
import { JobsConfig } from "../../src/config/Config.ts"
import { Database, pgLayer } from "../../src/database/Database.ts"
import { runJob } from "../../src/job/Job.ts"
import { practiceReminders } from "../../src/jobs/index.ts"
import { DRY_RUN_TOKEN } from "../../src/mail/Links.ts"
import { Mailer, MailerTestRef } from "../../src/mail/Mailer.ts"
import { Telemetry } from "../../src/telemetry/Telemetry.ts"
import { startFakeResend } from "../support/FakeResend.ts"
import { noonZone } from "../support/NoonZone.ts"
import { run } from "../support/spawn.ts"
import { freshDatabaseUrl, insertUsers, snapshotLibraryTables, uid } from "../support/TestDb.ts"

const DAY = 86_400_000

const OPERATOR = "ops@kaiwa.example"

describe("send-test", () => {
  it.live("sends one [test] copy of a learner's real email through Resend to --to only; no library table changes; the learner's own reminder still goes", () =>
    Effect.gen(function*() {
      const fake = yield* Effect.acquireRelease(Effect.promise(() => startFakeResend()), (f) => Effect.promise(() => f.close()))
      const url = yield* freshDatabaseUrl
      const env = {
        DATABASE_URL: Redacted.value(url),
        RESEND_API_KEY: fake.apiKey,
        RESEND_BASE_URL: fake.url,
        UNSUBSCRIBE_SECRET: "send-test-unsubscribe-secret-0123456789",
        MAIL_FROM: "Kaiwa <hello@kaiwa.example>",
        APP_URL: "https://kaiwa.example"
      }
      const stack = Layer.mergeAll(
        Database.layerMigrated({ appFixture: true }).pipe(Layer.provideMerge(pgLayer(url))),
        Mailer.layerTest,
        Telemetry.layerTest
      ).pipe(
        Layer.provideMerge(JobsConfig.layer),
        Layer.provide(ConfigProvider.layer(ConfigProvider.fromEnv({ env }))),
        Layer.provideMerge(Layer.succeed(References.MinimumLogLevel, "Warn"))
      )
      yield* Effect.gen(function*() {
        const now = Date.now()
        yield* insertUsers([
          // Due a reminder right now: a month-old learner who last practised Spanish three days ago.
          { id: "zelda", displayName: "Zelda Quinn", email: "zelda@example.com", createdAt: new Date(now - 30 * DAY), timezone: noonZone(now), sessions: [{ at: new Date(now - 3 * DAY), language: "es" }] },
          // Practised an hour ago: the reminder job has no row for her now.
          { id: "yara", displayName: "Yara", email: "yara@example.com", createdAt: new Date(now - 30 * DAY), timezone: noonZone(now), sessions: [{ at: new Date(now - 3_600_000), language: "fr" }] }
        ])
        const before = yield* snapshotLibraryTables

        const learner = yield* Effect.promise(() =>
          run("dist/cli.js", ["send-test", "practice-reminders", "--to", OPERATOR, "--as", "zelda@example.com"], env)
        )
        assert.strictEqual(learner.code, 0, learner.stderr)
        assert.include(learner.stdout, `learner ${uid("zelda")}`)
        assert.strictEqual(fake.accepted.length, 1)
        const email = fake.accepted[0]!
        assert.deepStrictEqual(email.to, [OPERATOR])
        assert.match(email.subject, /^\[test\] /)
        assert.deepInclude(email.tags, { name: "test", value: "true" })
        assert.deepInclude(email.tags, { name: "job", value: "practice-reminders" })
        // Her own data: her first name and the language she last practised.
        assert.include(email.text ?? "", "Zelda")
        assert.include(email.text ?? "", "Spanish")
        // No link in the copy can act for her: the operator must not unsubscribe the learner by clicking.
        assert.include(email.headers["List-Unsubscribe"] ?? email.headers["list-unsubscribe"] ?? "", DRY_RUN_TOKEN)
        assert.notMatch(email.html ?? "", /token=(?!dry-run-not-a-valid-token)/)

        const sample = yield* Effect.promise(() =>
          run("dist/cli.js", ["send-test", "practice-reminders", "--to", OPERATOR, "--sample", "reminder-days3to6-with-language"], env)
        )
        const fallback = yield* Effect.promise(() =>
          run("dist/cli.js", ["send-test", "practice-reminders", "--to", OPERATOR, "--as", "yara@example.com"], env)
        )
        const unknownSample = yield* Effect.promise(() =>
          run("dist/cli.js", ["send-test", "practice-reminders", "--to", OPERATOR, "--sample", "no-such-sample"], env)
        )
        const badAddress = yield* Effect.promise(() =>
          run("dist/cli.js", ["send-test", "practice-reminders", "--to", "not an address"], env)
        )
        assert.strictEqual(unknownSample.code, 2)
        assert.include(unknownSample.stderr, "no sample")
        assert.strictEqual(badAddress.code, 2)
        assert.strictEqual(fallback.code, 0, fallback.stderr)
        assert.match(fallback.stdout, /data: sample "[^"]+": practice-reminders has no row for/)
        assert.strictEqual(sample.code, 0, sample.stderr)
        assert.include(sample.stdout, `data: sample "reminder-days3to6-with-language"`)
        assert.strictEqual(fake.accepted.length, 3)
        assert.isTrue(fake.accepted.every((e) => e.to.length === 1 && e.to[0] === OPERATOR && e.subject.startsWith("[test] ")))

        // Not on the ledger, no run, no batch, no suppression: table contents are exactly as before.
        assert.deepStrictEqual(yield* snapshotLibraryTables, before)
        // So the cap and the dedupe key are untouched: her real reminder goes out on the next run.
        const report = yield* runJob(practiceReminders)
        assert.strictEqual(report.outcome, "succeeded")
        assert.deepStrictEqual((yield* Ref.get(yield* MailerTestRef)).map((e) => e.to), ["zelda@example.com"])
      }).pipe(Effect.provide(stack))
    }), 120_000)
})
