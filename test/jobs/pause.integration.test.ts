/**
 * Pause and resume (issue 21): stored in the database, honoured by every trigger at the start of a run and
 * between batches. A paused run records itself as `paused`, sends nothing more, exits 0, and leaves its pending
 * rows for the first run after `resume`; `status` lists the job as paused and never overdue. The race: a run in
 * this process holds its first batch at the provider (a gate) while another process (the compiled CLI) pauses the
 * job; the run stops before its next batch; a second process resumes it, and the next run sends exactly the rest.
 */
import { assert, describe, layer } from "@effect/vitest"
import { Deferred, Effect, Fiber, Layer, Redacted, Ref } from "effect"
import { SqlClient } from "effect/sql"
import { TestClock } from "effect/testing"
import { runJob } from "../../src/job/Job.ts"
import { practiceReminders } from "../../src/jobs/index.ts"
import * as Layers from "../../src/job/Layers.ts"
import { type Batch, Mailer, type OutgoingEmail } from "../../src/mail/Mailer.ts"
import { Pauses } from "../../src/ledger/Pauses.ts"
import { jobStatuses } from "../../src/operator/Status.ts"
import { run } from "../support/spawn.ts"
import { freshDatabaseUrl, insertUsers } from "../support/TestDb.ts"

const HOUR = 3_600_000
const DAY = 24 * HOUR
const AT = Date.parse("2026-03-10T10:00:00Z")

// The database URL is kept so the compiled CLI (another process) can be pointed at the same database.
let url: Redacted.Redacted<string> | undefined
const stack = Layer.unwrap(Effect.map(freshDatabaseUrl, (u) => {
  url = u
  return Layers.test(u)
}))

/** A mailer that records what it accepts and holds the first batch until `release` is completed. */
const gatedMailer = (store: Ref.Ref<ReadonlyArray<OutgoingEmail>>, arrived: Deferred.Deferred<void>, release: Deferred.Deferred<void>) =>
  Layer.succeed(Mailer, Mailer.of({
    send: (batch: Batch) =>
      Effect.gen(function*() {
        const before = (yield* Ref.get(store)).length
        if (before === 0) {
          yield* Deferred.succeed(arrived, undefined)
          yield* Deferred.await(release)
        }
        yield* Ref.update(store, (all) => [...all, ...batch.emails])
        return batch.emails.map(() => ({ _tag: "Accepted" as const, providerId: null }))
      })
  }))

const ledgerCounts = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const rows = yield* sql<{ status: string; n: number }>`
    SELECT status, count(*)::int AS n FROM kaiwa_jobs.deliveries GROUP BY status ORDER BY status`
  return Object.fromEntries(rows.map((r) => [r.status, r.n]))
})

describe("pause and resume", () => {
  layer(stack, { excludeTestServices: true })((it) => {
    it.effect("a paused job's run sends nothing, records paused, exits 0; status lists it paused, never overdue; resume sends", () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        yield* insertUsers([{ id: "p-1", createdAt: new Date(AT - 30 * DAY) }])
        const pauses = yield* Pauses
        yield* pauses.pause({ job: practiceReminders.name, by: "ops@laptop", reason: "fixing the template", now: new Date(AT - HOUR) })
        yield* TestClock.setTime(AT)
        const report = yield* runJob(practiceReminders)
        assert.strictEqual(report.outcome, "paused")
        assert.strictEqual(report.exitCode, 0)
        assert.include(report.error ?? "", "ops@laptop")
        assert.deepStrictEqual(yield* ledgerCounts, {}, "nothing planned, nothing sent")
        const runs = yield* sql<{ outcome: string }>`SELECT outcome FROM kaiwa_jobs.runs WHERE job = ${practiceReminders.name}`
        assert.deepStrictEqual(runs.map((r) => r.outcome), ["paused"])

        // A week later it would be long overdue; paused, it is listed as paused instead.
        yield* TestClock.setTime(AT + 7 * DAY)
        const status = (yield* jobStatuses).find((s) => s.job === practiceReminders.name)!
        assert.isFalse(status.overdue)
        assert.deepStrictEqual(status.paused, { by: "ops@laptop", at: new Date(AT - HOUR).toISOString(), reason: "fixing the template" })

        assert.isTrue(yield* pauses.resume(practiceReminders.name))
        const resumed = yield* runJob(practiceReminders)
        assert.strictEqual(resumed.outcome, "succeeded")
        assert.strictEqual(resumed.stats?.sent, 1)
        assert.isNull((yield* jobStatuses).find((s) => s.job === practiceReminders.name)!.paused)
      }).pipe(Effect.provide(TestClock.layer())))

    it.effect("another process pauses a run in flight: it stops before its next batch; after resume the rest go out once", () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        yield* sql`DELETE FROM kaiwa_jobs.deliveries`
        yield* sql`DELETE FROM kaiwa_jobs.batches`
        // 250 learners, and p-1 from the test above: 251 due.
        yield* insertUsers(Array.from({ length: 250 }, (_, i) => ({ id: `race-${i}`, createdAt: new Date(Date.now() - 30 * DAY) })))
        const store = yield* Ref.make<ReadonlyArray<OutgoingEmail>>([])
        const arrived = yield* Deferred.make<void>()
        const release = yield* Deferred.make<void>()
        const env = { DATABASE_URL: Redacted.value(url!) }
        // The learners are due now in UTC only between 09:00 and 21:00: run as of a fixed instant inside it, with a
        // clock that starts there (the start-of-run sweep reads the clock: after 21:00 UTC it would expire them all).
        const asOf = new Date(new Date().toISOString().slice(0, 10) + "T12:00:00Z")
        const running = yield* runJob(practiceReminders, { asOf }).pipe(
          Effect.provide(gatedMailer(store, arrived, release)),
          Effect.provide(Layers.clockAt(asOf)),
          Effect.forkChild
        )
        yield* Deferred.await(arrived)
        const paused = yield* Effect.promise(() => run("dist/cli.js", ["pause", practiceReminders.name, "--reason", "race test"], env))
        assert.strictEqual(paused.code, 0, paused.stdout + paused.stderr)
        yield* Deferred.succeed(release, undefined)
        const report = yield* Fiber.join(running)
        assert.strictEqual(report.outcome, "paused")
        assert.strictEqual(report.exitCode, 0)
        assert.strictEqual((yield* Ref.get(store)).length, 100, "the batch in flight finished; no other batch was sent")
        assert.deepStrictEqual(yield* ledgerCounts, { pending: 151, sent: 100 })

        const resumed = yield* Effect.promise(() => run("dist/cli.js", ["resume", practiceReminders.name], env))
        assert.strictEqual(resumed.code, 0, resumed.stdout + resumed.stderr)
        const after = yield* runJob(practiceReminders, { asOf }).pipe(Effect.provide(Layers.clockAt(asOf)))
        assert.strictEqual(after.outcome, "succeeded")
        const all = (yield* Ref.get(store)).map((e) => e.to)
        assert.strictEqual(all.length, 100, "the gated mailer is not this run's")
        assert.deepStrictEqual(yield* ledgerCounts, { sent: 251 })
        const distinct = yield* sql<{ n: number }>`SELECT count(DISTINCT user_id)::int AS n FROM kaiwa_jobs.deliveries WHERE status = 'sent'`
        assert.strictEqual(distinct[0]!.n, 251, "every learner exactly once")
      }))
  })
})
