/**
 * PostgreSQL stopped in the middle of a run: the run ends within 10 s, exit 1, saying the database is
 * unreachable and nothing secret; after a restart a re-run completes with no duplicate. And bad rows in the app
 * tables: every other learner is served, the bad rows are reported by id, the run exits 0.
 */
import * as fs from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"
import { assert, describe, it, layer } from "@effect/vitest"
import { Effect, Exit, Redacted, Ref, Scope } from "effect"
import { SqlClient } from "effect/sql"
import { TestClock } from "effect/testing"
import { start as startPostgres } from "../../src/EmbeddedPostgres.ts"
import { practiceReminders, runJob } from "../../src/Job.ts"
import * as Layers from "../../src/Layers.ts"
import { MailerTestRef } from "../../src/Mailer.ts"
import { startFakeResend } from "../support/FakeResend.ts"
import { run, start } from "../support/spawn.ts"
import { insertUsers, testLayer } from "../support/TestDb.ts"

const DAY = 86_400_000
const AT = "2026-03-10T10:00:00Z"
const PASSWORD_IN_URL = "kaiwa-embedded"

describe("database outage", () => {
  it("a run whose database stops mid-run ends within 10 s (exit 1, 'unreachable'); a re-run after restart completes once", async () => {
    const dataDir = await fs.mkdtemp(path.join(os.tmpdir(), "kaiwa-outage-"))
    const fake = await startFakeResend({ faults: { latencyMs: 400 } })
    const boot = async () => {
      const scope = Effect.runSync(Scope.make())
      const server = await Effect.runPromise(Scope.provide(startPostgres({ dataDir }), scope))
      return { scope, server }
    }
    let pg = await boot()
    try {
      const url = pg.server.url("postgres")
      await Effect.runPromise(
        insertUsers(Array.from({ length: 500 }, (_, i) => ({ id: `o${i}`, createdAt: new Date(Date.parse(AT) - 30 * DAY) })))
          .pipe(Effect.provide(Layers.test(url)))
      )
      const envFor = (u: Redacted.Redacted<string>) => ({
        DATABASE_URL: Redacted.value(u),
        RESEND_API_KEY: fake.apiKey,
        RESEND_BASE_URL: fake.url,
        RESEND_RPS: "100",
        MAIL_FROM: "Kaiwa <hello@example.com>",
        APP_URL: "https://kaiwa.example",
        UNSUBSCRIBE_SECRET: "outage-unsubscribe-secret-0123456789",
        LEASE_SECONDS: "1"
      })
      const { done } = start("dist/send-reminders.js", ["--now", AT], envFor(url))
      while (fake.accepted.length < 100) await new Promise((r) => setTimeout(r, 10))
      await Effect.runPromise(Scope.close(pg.scope, Exit.void))
      const stoppedAt = Date.now()
      const r = await done
      const took = Date.now() - stoppedAt
      assert.isBelow(took, 10_000, `the run took ${took} ms to end`)
      assert.strictEqual(r.code, 1)
      const output = r.stdout + r.stderr
      assert.include(output, "unreachable")
      assert.notInclude(output, PASSWORD_IN_URL)
      assert.notInclude(output, fake.apiKey)

      pg = await boot()
      fake.faults.latencyMs = 0
      const again = await run("dist/send-reminders.js", ["--now", AT], envFor(pg.server.url("postgres")))
      assert.strictEqual(again.code, 0, again.stderr)
      const counts = fake.acceptedCountByRecipient()
      assert.strictEqual(counts.size, 500)
      assert.isTrue([...counts.values()].every((c) => c === 1), "an email was accepted twice")
    } finally {
      await Effect.runPromise(Scope.close(pg.scope, Exit.void))
      await fake.close()
      await fs.rm(dataDir, { recursive: true, force: true })
    }
  }, 90_000)
})

describe("bad rows in the app tables", () => {
  layer(testLayer, { excludeTestServices: true })((it) => {
    it.effect("every other learner is served, bad rows are reported by id, and the run exits 0", () =>
      Effect.gen(function*() {
        const at = Date.parse(AT)
        const old = new Date(at - 30 * DAY)
        yield* insertUsers([
          ...Array.from({ length: 50 }, (_, i) => ({ id: `ok${i}`, createdAt: old })),
          { id: "bad-empty", email: "", createdAt: old },
          { id: "bad-malformed", email: "not-an-email", createdAt: old },
          { id: "bad-half", email: "bob@", createdAt: old },
          { id: "null-name", displayName: null, createdAt: old },
          { id: "long-name", displayName: "N".repeat(10_000), createdAt: old },
          { id: "mars", timezone: "Mars/Olympus", createdAt: old },
          // PostgreSQL text cannot hold NUL, so the worst a row can carry is the other control characters.
          { id: "control", displayName: "\u0007\u0001Zoë\u202E 🎉\u200B\u001b[31m", createdAt: old }
        ])
        // A user with no settings row at all (insertUsers adds none unless an opt-in is given) is "no-settings".
        const sql = yield* SqlClient.SqlClient
        yield* sql`INSERT INTO users (id, email, display_name, email_verified, created_at, timezone)
                   VALUES ('no-settings', 'no-settings@example.com', 'Ola', ${old}, ${old}, 'UTC')`
        yield* TestClock.setTime(at)
        const report = yield* runJob(practiceReminders)
        assert.strictEqual(report.exitCode, 0, report.error ?? "")
        const to = new Set((yield* Ref.get(yield* MailerTestRef)).map((e) => e.to))
        for (let i = 0; i < 50; i++) assert.isTrue(to.has(`ok${i}@example.com`))
        for (const id of ["null-name", "long-name", "mars", "control", "no-settings"]) assert.isTrue(to.has(`${id}@example.com`), id)
        assert.strictEqual(to.size, 55)
        assert.deepStrictEqual([...(report.stats?.badRows["invalid_email"] ?? [])].sort(), ["bad-empty", "bad-half", "bad-malformed"])
        assert.deepStrictEqual(report.stats?.badRows["unknown_timezone"], ["mars"])
        assert.strictEqual(report.stats?.skipped["invalid_email"], 3)
        const emails = yield* Ref.get(yield* MailerTestRef)
        const long = emails.find((e) => e.to === "long-name@example.com")!
        assert.isBelow(long.subject.length + long.text.length, 5_000)
        const control = emails.find((e) => e.to === "control@example.com")!
        assert.notMatch(control.text + control.subject, /[\u0000-\u0008\u000e-\u001f\u202e]/)
      }).pipe(Effect.provide(TestClock.layer())))
  })
})

