/**
 * Claims, leases and recording, at the edges where a worker is slow, skewed or long gone:
 * - leases run on the database's clock, so workers started with different `--now` instants agree on them;
 * - a failed lease renewal does not end the heartbeat;
 * - a batch recorded twice (the worker that lost its lease finishes after the one that took over) counts once;
 * - a batch abandoned longer than the provider keeps idempotency keys is not resent;
 * - a row that failed for our own reasons (its data no longer renders) does not suppress the address.
 */
import { randomUUID } from "node:crypto"
import { assert, describe, layer } from "@effect/vitest"
import { Effect, Fiber, Ref } from "effect"
import { SqlClient } from "effect/sql"
import { JobsConfig } from "../../src/config/Config.ts"
import { type Candidate, DatabaseError, KEY_EXPIRED_REASON } from "../../src/database/Database.ts"
import { Ledger } from "../../src/ledger/Ledger.ts"
import { runJob } from "../../src/job/Job.ts"
import { practiceReminders } from "../../src/jobs/index.ts"
import * as Layers from "../../src/job/Layers.ts"
import { Mailer, MailerTestRef } from "../../src/mail/Mailer.ts"
import { insertUsers, testLayer } from "../support/TestDb.ts"

const DAY = 86_400_000
// Tuesday 2026-03-10 10:00 UTC: inside the reminder window of UTC learners.
const AT = new Date("2026-03-10T10:00:00Z")
const JOB = practiceReminders.name

/** `n` ledger rows of practice-reminders, pending and not yet in a batch, with data that renders. */
const ledgerRows = (prefix: string, n: number, data: unknown = { displayName: "Ann", language: "ja", daysSince: 3, localDate: "2026-03-10" }) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const rows = Array.from({ length: n }, (_, i) => ({
      job: JOB,
      user_id: `${prefix}${i}`,
      dedupe_key: "2026-03-10",
      email: `${prefix}${i}@example.com`,
      data: JSON.stringify(data),
      planned_at: AT,
      expires_at: new Date(AT.getTime() + DAY)
    }))
    yield* sql`INSERT INTO kaiwa_jobs.deliveries ${sql.insert(rows as unknown as readonly [Record<string, unknown>])}`
  })

const claim = (now: Date, owner = randomUUID()) =>
  Effect.flatMap(Ledger, (db) => db.claimBatch({ job: JOB, owner, now, leaseSeconds: 30, size: 100, newKey: `k-${randomUUID()}` }))

const resetLedger = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  yield* sql`TRUNCATE kaiwa_jobs.deliveries, kaiwa_jobs.batches, kaiwa_jobs.suppressions, kaiwa_jobs.runs, users, user_settings, conversation_sessions CASCADE`
})

describe("claims and leases", () => {
  layer(testLayer, { excludeTestServices: true })((it) => {
    it.effect("a worker whose clock is years ahead (another --now) cannot take a batch whose lease is live", () =>
      Effect.gen(function*() {
        yield* resetLedger
        yield* ledgerRows("skew", 3)
        const first = yield* claim(new Date("2020-01-01T00:00:00Z"))
        assert.isDefined(first)
        assert.strictEqual(first!.deliveries.length, 3)
        // Judged by its own clock, the first worker's lease ended in 2020; by the database's it has 30 s to go.
        const second = yield* claim(new Date("2030-01-01T00:00:00Z"))
        assert.isUndefined(second)
        // Once the lease has really run out, the batch is taken over whole, under the same key.
        const sql = yield* SqlClient.SqlClient
        yield* sql`UPDATE kaiwa_jobs.batches SET lease_until = clock_timestamp() - interval '1 second'`
        const third = yield* claim(new Date("2020-01-01T00:00:00Z"))
        assert.strictEqual(third?.id, first!.id)
        assert.strictEqual(third?.idempotencyKey, first!.idempotencyKey)
        assert.isTrue(third?.resumed)
      }))

    it.effect("a batch recorded by two workers counts its emails once", () =>
      Effect.gen(function*() {
        yield* resetLedger
        yield* ledgerRows("twice", 4)
        const db = yield* Ledger
        const slow = (yield* claim(AT))!
        const sql = yield* SqlClient.SqlClient
        yield* sql`UPDATE kaiwa_jobs.batches SET lease_until = clock_timestamp() - interval '1 second'`
        const takeover = (yield* claim(AT))!
        assert.strictEqual(takeover.id, slow.id)
        const outcomes = takeover.deliveries.map((d) => ({ id: d.id, status: "sent" as const, providerId: `p-${d.id}`, reason: null }))
        const winner = yield* db.completeBatch({ batchId: takeover.id, outcomes, now: AT })
        assert.strictEqual(winner.sent.length, 4)
        // The provider answered the slow worker from its stored response: the same verdicts, recorded already.
        const loser = yield* db.completeBatch({ batchId: slow.id, outcomes, now: AT })
        assert.deepStrictEqual(loser, { sent: [], failed: [] })
        const rows = yield* sql<{ n: number }>`SELECT count(*)::int AS n FROM kaiwa_jobs.deliveries WHERE status = 'sent'`
        assert.strictEqual(rows[0]!.n, 4)
      }))

    it.effect("one failed lease renewal does not end the heartbeat: a slow send keeps its batch", () =>
      Effect.gen(function*() {
        yield* resetLedger
        yield* insertUsers(Array.from({ length: 5 }, (_, i) => ({ id: `hb${i}`, createdAt: new Date(AT.getTime() - 30 * DAY) })))
        const db = yield* Ledger
        const config = yield* JobsConfig
        const renewals = yield* Ref.make(0)
        // The first renewal fails (a dropped connection), the later ones go through.
        const flaky = Ledger.of({
          ...db,
          renewLease: (batchId, owner, seconds) =>
            Effect.flatMap(Ref.getAndUpdate(renewals, (n) => n + 1), (n) =>
              n === 0 ? Effect.fail(new DatabaseError({ reason: "unreachable", message: "renewing a lease failed: the database is unreachable" })) : db.renewLease(batchId, owner, seconds))
        })
        // A provider that takes 2.5 s, with a 1 s lease: only renewals keep the batch.
        const slowMailer = Mailer.of({
          send: (batch) => Effect.sleep("2500 millis").pipe(Effect.as(batch.emails.map(() => ({ _tag: "Accepted" as const, providerId: null }))))
        })
        const run = yield* Effect.forkChild(runJob(practiceReminders).pipe(
          Effect.provideService(Ledger, flaky),
          Effect.provideService(Mailer, slowMailer),
          Effect.provideService(JobsConfig, { ...config, leaseSeconds: 1 })
        ))
        yield* Effect.sleep("2 seconds")
        const thief = yield* claim(AT)
        assert.isUndefined(thief, "the batch was taken while its worker was still sending it")
        const report = yield* Fiber.join(run)
        assert.strictEqual(report.exitCode, 0, report.error ?? "")
        assert.strictEqual(report.stats?.sent, 5)
        assert.isAtLeast(yield* Ref.get(renewals), 3)
      }).pipe(Effect.provide(Layers.clockAt(AT))))
  })
})

describe("batches the provider may have forgotten", () => {
  layer(testLayer, { excludeTestServices: true })((it) => {
    it.effect(`a batch first sent over 23 h ago is not resent; its rows fail as outcome unknown; a 22 h old one is resent`, () =>
      Effect.gen(function*() {
        yield* ledgerRows("old", 3)
        const old = (yield* claim(AT))!
        yield* ledgerRows("recent", 2)
        const recent = (yield* claim(AT))!
        const sql = yield* SqlClient.SqlClient
        // Both workers died long ago (leases over); the keys were first used 25 h and 22 h ago.
        yield* sql`UPDATE kaiwa_jobs.batches SET lease_until = clock_timestamp() - interval '1 second'`
        yield* sql`UPDATE kaiwa_jobs.batches SET key_created_at = clock_timestamp() - interval '25 hours' WHERE id = ${old.id}`
        yield* sql`UPDATE kaiwa_jobs.batches SET key_created_at = clock_timestamp() - interval '22 hours' WHERE id = ${recent.id}`

        const report = yield* runJob(practiceReminders).pipe(Effect.provide(Layers.clockAt(AT)))
        assert.strictEqual(report.exitCode, 0, report.error ?? "")
        assert.strictEqual(report.stats?.failed, 3)
        assert.strictEqual(report.stats?.sent, 2)
        const sent = yield* Ref.get(yield* MailerTestRef)
        assert.sameMembers(sent.map((e) => e.to), ["recent0@example.com", "recent1@example.com"])
        const rows = yield* sql<{ user_id: string; status: string; reason: string | null }>`
          SELECT user_id, status, reason FROM kaiwa_jobs.deliveries WHERE user_id LIKE 'old%' ORDER BY user_id`
        assert.deepStrictEqual(rows.map((r) => [r.status, r.reason]), Array(3).fill(["failed", KEY_EXPIRED_REASON]))
        const batches = yield* sql<{ id: string; status: string }>`SELECT id::text AS id, status FROM kaiwa_jobs.batches ORDER BY id`
        assert.deepStrictEqual(batches.map((b) => b.status), ["expired", "done"])
      }))
  })
})

describe("suppression follows the provider's verdict only", () => {
  layer(testLayer, { excludeTestServices: true })((it) => {
    it.effect("a row whose stored data no longer renders fails without suppressing its address", () =>
      Effect.gen(function*() {
        yield* ledgerRows("broken", 1, { displayName: 42 })
        yield* ledgerRows("fine", 1)
        const report = yield* runJob(practiceReminders).pipe(Effect.provide(Layers.clockAt(AT)))
        assert.strictEqual(report.stats?.failed, 1)
        const sql = yield* SqlClient.SqlClient
        const rows = yield* sql<{ user_id: string; status: string; reason: string | null }>`
          SELECT user_id, status, reason FROM kaiwa_jobs.deliveries ORDER BY user_id`
        assert.deepStrictEqual(rows.map((r) => [r.user_id, r.status]), [["broken0", "failed"], ["fine0", "sent"]])
        assert.match(rows[0]!.reason ?? "", /^render_error/)
        const suppressions = yield* sql<{ n: number }>`SELECT count(*)::int AS n FROM kaiwa_jobs.suppressions`
        assert.strictEqual(suppressions[0]!.n, 0)
      }))
  })
})

// Planning inserts without ON CONFLICT: a selection that offers a (job, user, key) the ledger already holds is a
// bug, and it must fail the planning whole, naming the constraint, rather than be hidden (nothing is sent twice
// either way: the unique constraint holds).
describe("a failed row's kind, not its reason's text, decides suppression", () => {
  layer(testLayer, { excludeTestServices: true })((it) => {
    it.effect("rejected rows suppress their address whatever their reason's text; a render error never does, even one that reads like a rejection", () =>
      Effect.gen(function*() {
        yield* resetLedger
        yield* ledgerRows("row", 3)
        const batch = (yield* claim(AT))!
        const [given, plain, render] = batch.deliveries
        const ledger = yield* Ledger
        const done = yield* ledger.completeBatch({
          batchId: batch.id,
          now: AT,
          outcomes: [
            { id: given!.id, status: "failed", providerId: null, reason: "the provider refused the recipient", failure: "rejected" },
            { id: plain!.id, status: "failed", providerId: null, reason: "invalid `to` field", failure: "rejected" },
            { id: render!.id, status: "failed", providerId: null, reason: "rejected: a template error that reads like one", failure: "render_error" }
          ]
        })
        assert.strictEqual(done.failed.length, 3)
        const sql = yield* SqlClient.SqlClient
        const rows = yield* sql<{ user_id: string; failure: string | null }>`
          SELECT user_id, failure FROM kaiwa_jobs.deliveries ORDER BY id`
        assert.deepStrictEqual(rows.map((r) => [r.user_id, r.failure]), [["row0", "rejected"], ["row1", "rejected"], ["row2", "render_error"]])
        const suppressed = yield* sql<{ email: string; reason: string }>`SELECT email, reason FROM kaiwa_jobs.suppressions ORDER BY email`
        assert.deepStrictEqual(suppressed.map((r) => [r.email, r.reason]), [["row0@example.com", "invalid_address"], ["row1@example.com", "invalid_address"]])
      }))
  })
})

describe("a selection that offers a row the ledger already has", () => {
  layer(testLayer, { excludeTestServices: true })((it) => {
    it.effect("fails the planning whole, naming deliveries_once, and changes nothing", () =>
      Effect.gen(function*() {
        yield* resetLedger
        yield* ledgerRows("dup", 1)
        const sql = yield* SqlClient.SqlClient
        const db = yield* Ledger
        // Two fresh users and one that already has today's row: a selection with a broken anti-join.
        const selection = sql<Candidate>`
          SELECT u.id AS user_id, u.id || '@example.com' AS email, '2026-03-10' AS dedupe_key, '{}'::jsonb AS data,
            ${new Date(AT.getTime() + DAY)}::timestamptz AS expires_at, NULL::text AS skip_reason, false AS unknown_timezone
          FROM (VALUES ('fresh0'), ('dup0'), ('fresh1')) u(id)`
        const error = yield* Effect.flip(db.enqueue({ job: JOB, runId: randomUUID(), asOf: AT, selection }))
        assert.instanceOf(error, DatabaseError)
        assert.match(error.message, /^planning failed: .*deliveries_once/)
        const rows = yield* sql<{ user_id: string }>`SELECT user_id FROM kaiwa_jobs.deliveries ORDER BY user_id`
        assert.deepStrictEqual(rows.map((r) => r.user_id), ["dup0"])
      }))
  })
})
