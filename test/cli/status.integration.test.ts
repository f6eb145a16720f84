import { assert, describe, layer } from "@effect/vitest"
import { Effect, Redacted } from "effect"
import { TestClock } from "effect/testing"
import { SqlClient } from "effect/sql"
import { runJob } from "../../src/job/Job.ts"
import { practiceReminders, type Registry, registry } from "../../src/jobs/index.ts"
import { jobStatuses } from "../../src/operator/Status.ts"
import { run } from "../support/spawn.ts"
import { freshDatabaseUrl } from "../support/TestDb.ts"
import * as Layers from "../../src/job/Layers.ts"
import { Layer, Ref } from "effect"
import { MailerTestRef } from "../../src/mail/Mailer.ts"
import { insertUsers, uid } from "../support/TestDb.ts"

const HOUR = 3_600_000
const T0 = Date.parse("2026-03-10T10:00:00Z")

// The database URL is kept so the compiled CLI can be pointed at the same database.
let url: Redacted.Redacted<string> | undefined
const stack = Layer.unwrap(Effect.map(freshDatabaseUrl, (u) => {
  url = u
  return Layers.test(u)
}))

describe("status", () => {
  layer(stack, { excludeTestServices: true })((it) => {
    it.effect("a job is OVERDUE when its last success is older than its interval plus grace, or it never succeeded", () =>
      Effect.gen(function*() {
        yield* TestClock.setTime(T0)
        const never = yield* jobStatuses
        assert.isTrue(never.every((s) => s.overdue && s.lastRun === null))

        for (const job of registry as Registry) yield* runJob(job)
        const fresh = yield* jobStatuses
        assert.isTrue(fresh.every((s) => !s.overdue && s.lastRun?.outcome === "succeeded"))

        yield* TestClock.setTime(T0 + 4 * HOUR)
        const late = yield* jobStatuses
        assert.isTrue(late.every((s) => s.overdue))
      }).pipe(Effect.provide(TestClock.layer())))

    it.effect("`kaiwa-jobs status` prints each job's last run and exits 1 when any job is overdue", () =>
      Effect.gen(function*() {
        const env = { DATABASE_URL: Redacted.value(url!) }
        // The runs above are recorded as of 2026-03-10, so as of today every job is overdue.
        const overdue = yield* Effect.promise(() => run("dist/cli.js", ["status"], env))
        assert.strictEqual(overdue.code, 1)
        assert.match(overdue.stdout, /OVERDUE practice-reminders/)
        assert.match(overdue.stdout, /OVERDUE founder-emails/)
        assert.include(overdue.stdout, "succeeded")
        assert.notInclude(overdue.stdout + overdue.stderr, Redacted.value(url!))

        // A fresh run of each job (as of now) makes them current: exit 0.
        const json = yield* Effect.promise(() => run("dist/cli.js", ["status", "--json"], env))
        assert.deepStrictEqual(JSON.parse(json.stdout).map((s: { job: string }) => s.job), registry.map((j) => j.name))
        for (const job of registry as Registry) yield* runJob(job)
        const ok = yield* Effect.promise(() => run("dist/cli.js", ["status"], env))
        assert.strictEqual(ok.code, 0, ok.stdout + ok.stderr)
        assert.match(ok.stdout, /ok\s+practice-reminders/)
      }))
  })
})

describe("abandoned runs", () => {
  layer(stack, { excludeTestServices: true })((it) => {
    it.effect("a run left 'running' by a killed process is shown as abandoned after an hour, not as running", () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        const started = new Date(T0 - 5 * 60_000)
        yield* sql`INSERT INTO kaiwa_jobs.runs (id, job, as_of, started_at) VALUES (gen_random_uuid(), 'practice-reminders', ${started}, ${started})`
        yield* TestClock.setTime(T0)
        const soon = (yield* jobStatuses).find((s) => s.job === "practice-reminders")!
        assert.strictEqual(soon.lastRun?.outcome, "running")
        yield* TestClock.setTime(T0 + HOUR)
        const later = (yield* jobStatuses).find((s) => s.job === "practice-reminders")!
        assert.strictEqual(later.lastRun?.outcome, "abandoned")
        assert.include(later.lastRun?.error ?? "", "killed")
        assert.isTrue(later.overdue)
      }).pipe(Effect.provide(TestClock.layer())))
  })
})

describe("unsubscribe by hand", () => {
  layer(stack, { excludeTestServices: true })((it) => {
    it.effect("`kaiwa-jobs unsubscribe --user` stops that list for the user; other users and lists go on", () =>
      Effect.gen(function*() {
        const at = Date.parse("2026-03-10T10:00:00Z")
        yield* insertUsers([
          { id: "hand-1", createdAt: new Date(at - 30 * 24 * HOUR) },
          { id: "hand-2", createdAt: new Date(at - 30 * 24 * HOUR) }
        ])
        const env = { DATABASE_URL: Redacted.value(url!) }
        // `--user` takes the app's id (users.id: a uuid on Kaiwa's shape).
        const r = yield* Effect.promise(() => run("dist/cli.js", ["unsubscribe", "--user", uid("hand-1"), "--list", "practice-reminders"], env))
        assert.strictEqual(r.code, 0, r.stderr)
        const again = yield* Effect.promise(() => run("dist/cli.js", ["unsubscribe", "--user", uid("hand-1"), "--list", "practice-reminders"], env))
        assert.include(again.stdout, "already suppressed")
        const missing = yield* Effect.promise(() => run("dist/cli.js", ["unsubscribe"], env))
        assert.strictEqual(missing.code, 2)
        yield* TestClock.setTime(at)
        const before = (yield* Ref.get(yield* MailerTestRef)).length
        const report = yield* runJob(practiceReminders)
        const sent = (yield* Ref.get(yield* MailerTestRef)).slice(before).map((e) => e.to)
        assert.deepStrictEqual(sent, ["hand-2@example.com"])
        // Preferences have one home (issue 18): the app has the list's opt-in column, so the unsubscribe is written
        // there (the learner's profile page shows it) and the run skips the learner as opted out.
        assert.deepStrictEqual(report.stats?.skipped, { opted_out: 1 })
        const sql = yield* SqlClient.SqlClient
        const settings = yield* sql<{ user_id: string; r: boolean }>`
          SELECT user_id::text AS user_id, receive_practice_reminders AS r FROM user_settings`
        assert.deepStrictEqual(settings.map((x) => ({ ...x })), [{ user_id: uid("hand-1"), r: false }])
      }).pipe(Effect.provide(TestClock.layer())))
  })
})

describe("cli usage", () => {
  layer(Layer.empty)((it) => {
    it.effect("every command has --help, exiting 0", () =>
      Effect.gen(function*() {
        for (const cmd of ["list", "run", "status", "migrate", "preview", "unsubscribe"]) {
          const r = yield* Effect.promise(() => run("dist/cli.js", [cmd, "--help"]))
          assert.strictEqual(r.code, 0, `${cmd} --help: ${r.stderr}`)
          assert.include(r.stdout, "USAGE")
        }
        const top = yield* Effect.promise(() => run("dist/cli.js", ["--help"]))
        assert.strictEqual(top.code, 0)
        for (const cmd of ["list", "run", "status", "migrate", "preview"]) assert.include(top.stdout, cmd)
      }))
  })
})
