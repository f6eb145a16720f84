/**
 * `kaiwa-jobs doctor` (issue 18): one checklist before a deploy, run as the compiled CLI against real databases.
 * A good database and good settings exit 0; a database whose `users.id` is of an unexpected type and that lacks
 * `receive_progress_reports`, with a malformed MAIL_FROM, exits 1 naming each problem.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer, Redacted } from "effect"
import { SqlClient } from "effect/sql"
import { Database, pgLayer } from "../../src/database/Database.ts"
import * as Layers from "../../src/job/Layers.ts"
import { run } from "../support/spawn.ts"
import { freshDatabaseUrl, insertUsers } from "../support/TestDb.ts"

const LIVE = {
  RESEND_API_KEY: "re_test_doctor_0123456789",
  MAIL_FROM: "Kaiwa <hello@kaiwa.example>",
  APP_URL: "https://app.kaiwa.example",
  UNSUBSCRIBE_SECRET: "doctor-unsubscribe-secret-0123456789",
  CRON_SECRET: "doctor-cron-secret-0123456789-abcdefghij",
  FOUNDER_NAME: "Yuki"
}

/** A fresh database migrated like production plus Kaiwa's real tables, with one learner. */
const goodDatabase = Effect.gen(function*() {
  const url = yield* freshDatabaseUrl
  yield* insertUsers([{ id: "doc-1", createdAt: new Date("2026-01-01T00:00:00Z") }]).pipe(
    Effect.provide(Layers.test(url)),
    Effect.orDie
  )
  return url
})

/** A database whose app tables the jobs cannot read: bigint ids, no progress-report opt-in. */
const badDatabase = Effect.gen(function*() {
  const url = yield* freshDatabaseUrl
  yield* Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    yield* sql`CREATE TABLE users (id bigint PRIMARY KEY, email text NOT NULL, display_name text,
      email_verified timestamptz, created_at timestamptz)`
    yield* sql`CREATE TABLE user_settings (user_id bigint PRIMARY KEY REFERENCES users (id),
      receive_practice_reminders boolean NOT NULL DEFAULT true, receive_founder_emails boolean NOT NULL DEFAULT true)`
    yield* sql`CREATE TABLE conversation_sessions (id text PRIMARY KEY, user_id bigint NOT NULL, language text NOT NULL,
      start_time timestamptz NOT NULL, duration_seconds integer)`
  }).pipe(
    Effect.provide(Database.layerMigrated({ appFixture: false }).pipe(Layer.provideMerge(pgLayer(url)))),
    Effect.orDie
  )
  return url
})

describe("kaiwa-jobs doctor", () => {
  it.effect("a good database and good settings: exit 0, Kaiwa's shape named, the write-back tried", () =>
    Effect.gen(function*() {
      const url = yield* goodDatabase
      const out = yield* Effect.promise(() => run("dist/cli.js", ["doctor"], { ...LIVE, DATABASE_URL: Redacted.value(url) }))
      assert.strictEqual(out.code, 0, out.stdout + out.stderr)
      assert.include(out.stdout, "Kaiwa's production shape")
      assert.match(out.stdout, /✓ write-back practice-reminders: .*rolled back/)
      assert.match(out.stdout, /✓ kaiwa_jobs migrations: all \d+ applied/)
      assert.notInclude(out.stdout + out.stderr, Redacted.value(url))
      const json = yield* Effect.promise(() => run("dist/cli.js", ["doctor", "--json"], { ...LIVE, DATABASE_URL: Redacted.value(url) }))
      const report = JSON.parse(json.stdout)
      assert.strictEqual(report.ok, true)
      assert.strictEqual(report.shape, "kaiwa")
    }))

  it.effect("an unexpected id type, a missing opt-in column and a malformed MAIL_FROM: exit 1, each named", () =>
    Effect.gen(function*() {
      const url = yield* badDatabase
      const env = { ...LIVE, MAIL_FROM: "Kaiwa hello@kaiwa.example", DATABASE_URL: Redacted.value(url) }
      const out = yield* Effect.promise(() => run("dist/cli.js", ["doctor"], env))
      assert.strictEqual(out.code, 1, out.stdout + out.stderr)
      assert.match(out.stdout, /✗ users\.id: users\.id is bigint/)
      assert.match(out.stdout, /! user_settings\.receive_progress_reports: absent/)
      assert.match(out.stdout, /✗ setting MAIL_FROM/)
      const report = JSON.parse((yield* Effect.promise(() => run("dist/cli.js", ["doctor", "--json"], env))).stdout)
      assert.strictEqual(report.ok, false)
      const failed = report.checks.filter((c: { status: string }) => c.status === "fail").map((c: { name: string }) => c.name)
      assert.includeMembers(failed, ["users.id", "setting MAIL_FROM"])
    }))

  it.effect("no database reachable: exit 1 naming DATABASE_URL, no secret printed", () =>
    Effect.gen(function*() {
      const dead = "postgres://kaiwa:s3cret-password@127.0.0.1:9/kaiwa"
      const out = yield* Effect.promise(() => run("dist/cli.js", ["doctor"], { ...LIVE, DATABASE_URL: dead }))
      assert.strictEqual(out.code, 1, out.stdout + out.stderr)
      assert.match(out.stdout, /✗ database: .*DATABASE_URL/)
      assert.notInclude(out.stdout + out.stderr, "s3cret-password")
    }))

  it.effect("a malformed DATABASE_URL: exit 1, named as malformed (not 'unreachable'), never printed", () =>
    Effect.gen(function*() {
      const out = yield* Effect.promise(() => run("dist/cli.js", ["doctor"], { ...LIVE, DATABASE_URL: "postgres//kaiwa:s3cret@db" }))
      assert.strictEqual(out.code, 1, out.stdout + out.stderr)
      assert.match(out.stdout, /✗ database: not checked: DATABASE_URL is not a PostgreSQL URL/)
      assert.notInclude(out.stdout + out.stderr, "s3cret")
    }))
})

describe("operator commands with a mistake in their input", () => {
  it.effect("pause and resume name an unknown job (exit 2) before they need a database", () =>
    Effect.gen(function*() {
      for (const command of ["pause", "resume"]) {
        const out = yield* Effect.promise(() => run("dist/cli.js", [command, "practise-reminders"], {}))
        assert.strictEqual(out.code, 2, out.stdout + out.stderr)
        assert.include(out.stderr, `unknown job "practise-reminders"; jobs: practice-reminders`)
        assert.notInclude(out.stderr, "DATABASE_URL")
      }
    }))
})
