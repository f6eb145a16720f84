/**
 * Dry runs print emails without working links (issue 19, item 5): every unsubscribe link and List-Unsubscribe
 * header of a dry run carries the placeholder token, which the real verifier refuses; the same learners in a live
 * run get tokens that verify, so the check is not vacuous. (The HTTP dry run goes through the same runner: see
 * test/http/Http.integration.test.ts, "?dryRun=1".)
 */
import { assert, describe, layer } from "@effect/vitest"
import { Effect, Option, Ref } from "effect"
import { TestClock } from "effect/testing"
import { JobsConfig } from "../../src/config/Config.ts"
import { runJob } from "../../src/job/Job.ts"
import { founderEmails, practiceReminders } from "../../src/jobs/index.ts"
import { DRY_RUN_TOKEN } from "../../src/mail/Links.ts"
import { MailerTestRef, type OutgoingEmail } from "../../src/mail/Mailer.ts"
import { verifyPreferencesToken, verifyToken } from "../../src/mail/Unsubscribe.ts"
import { insertUsers, testLayer } from "../support/TestDb.ts"

const DAY = 86_400_000
const AT = Date.parse("2026-03-10T15:00:00Z")

/** Every token an email carries: in its header, its text part and its HTML part. */
const tokensOf = (email: OutgoingEmail) =>
  [email.headers["List-Unsubscribe"] ?? "", email.text, email.html].flatMap((part) =>
    [...part.matchAll(/[?&](?:amp;)?token=([^\s>"&<]+)/g)].map((m) => decodeURIComponent(m[1]!))
  )

describe("links in a dry run", () => {
  layer(testLayer, { excludeTestServices: true })((it) => {
    it.effect("carry a placeholder that the real verifier refuses; a live run's links verify", () =>
      Effect.gen(function*() {
        yield* TestClock.setTime(AT)
        const config = yield* JobsConfig
        const store = yield* MailerTestRef
        yield* insertUsers([
          // Due a reminder (signed up long ago, never practised) and founder Day 1 (signed up a day ago).
          { id: "dry-1", createdAt: new Date(AT - 30 * DAY) },
          { id: "dry-2", createdAt: new Date(AT - 30 * DAY) },
          { id: "dry-3", createdAt: new Date(AT - DAY - 3_600_000) }
        ])
        for (const report of [yield* runJob(practiceReminders, { dryRun: true }), yield* runJob(founderEmails, { dryRun: true })]) {
          assert.strictEqual(report.exitCode, 0, report.error ?? "")
        }
        const dry = yield* Ref.getAndSet(store, [])
        assert.isAtLeast(dry.length, 3)
        for (const email of dry) {
          const tokens = tokensOf(email)
          assert.isAtLeast(tokens.length, 3, `${email.to}: a link was not found in every part`)
          for (const token of tokens) {
            assert.strictEqual(token, DRY_RUN_TOKEN, email.to)
            assert.isTrue(Option.isNone(verifyToken(config.unsubscribeSecret, token)), `${email.to}: the dry run's token verifies`)
          }
        }

        yield* runJob(practiceReminders)
        yield* runJob(founderEmails)
        const live = yield* Ref.get(store)
        assert.strictEqual(live.length, dry.length)
        for (const email of live) {
          for (const token of tokensOf(email)) {
            // The unsubscribe links' list tokens and the footer's preference-center token, each signed for its use.
            const verifies = Option.isSome(verifyToken(config.unsubscribeSecret, token)) ||
              Option.isSome(verifyPreferencesToken(config.unsubscribeSecret, token))
            assert.isTrue(verifies, `${email.to}: a live token does not verify`)
          }
        }
      }).pipe(Effect.provide(TestClock.layer())))
  })
})
