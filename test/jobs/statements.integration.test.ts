/**
 * CONTRACT 10 ("set-based selection, no N+1"): who is due is decided by one set-based SQL statement per job, so
 * the number of statements a run issues is the same for 10 users and for 1,000, and grows only with the number
 * of 100-email batches sent, never with the number of users. Statements are counted with a custom Tracer:
 * every statement @effect/sql runs is a span of kind "client" (effect/sql/Statement.ts, `withConnection`);
 * transactions are "internal" spans and are not counted.
 * Each scenario runs in its own fresh database (one `layer(testLayer)` block each), at the same instant.
 */
import { assert, describe, it, layer } from "@effect/vitest"
import { Effect, Tracer } from "effect"
import { SqlClient } from "effect/sql"
import { TestClock } from "effect/testing"
import { type Job, runJob } from "../../src/job/Job.ts"
import { founderEmails, practiceReminders } from "../../src/jobs/index.ts"
import * as PracticeReminders from "../../src/jobs/PracticeReminders.ts"
import { insertUsers, testLayer, type UserFixture } from "../support/TestDb.ts"
import { DAY, HOUR } from "./localTime.ts"

// Tuesday 2026-03-10 14:30 UTC: inside 09:00-21:00 (reminders) and 14:00-18:00 (founder) for UTC users.
const AT = Date.parse("2026-03-10T14:30:00Z")
const OLD = new Date(AT - 60 * DAY)

/** The statements an effect issued: one entry per client span, with its SQL text. */
const countingStatements = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.gen(function*() {
    const statements: Array<string> = []
    const tracer = Tracer.make({
      span(options) {
        const span = new Tracer.NativeSpan(options)
        if (options.kind === "client") {
          const index = statements.push("?") - 1
          const attribute = span.attribute.bind(span)
          span.attribute = (key, value) => {
            if (key === "db.query.text") statements[index] = String(value).replace(/\s+/g, " ").trim()
            attribute(key, value)
          }
        }
        return span
      }
    })
    const result = yield* Effect.withTracer(effect, tracer)
    return { result, statements }
  })

/** Runs a job at AT, counting its statements. */
const countedRun = <N extends string, G extends string>(job: Job<N, G>) =>
  Effect.gen(function*() {
    yield* TestClock.setTime(AT)
    const { result, statements } = yield* countingStatements(runJob(job))
    assert.strictEqual(result.outcome, "succeeded")
    return { stats: result.stats!, statements }
  })

/** Users due a reminder at AT: long-standing, no practice for 3 days. */
const remindersDue = (n: number): Array<UserFixture> =>
  Array.from({ length: n }, (_, i) => ({
    id: `rem-${i}`,
    createdAt: OLD,
    sessions: [{ at: new Date(AT - 3 * DAY), language: "ja" }]
  }))

/** Users due founder Day1 at AT (signed up 30 h ago, never practised); in the founder sequence, so no reminder. */
const founderDue = (n: number): Array<UserFixture> =>
  Array.from({ length: n }, (_, i) => ({ id: `fdr-${i}`, createdAt: new Date(AT - 30 * HOUR) }))

/** Users due nothing at AT, each kept out by one rule; the kinds rotate so 990 users cover all of them. */
const notDue = (n: number): Array<UserFixture & { readonly kind: number }> =>
  Array.from({ length: n }, (_, i) => {
    const kind = i % 10
    const base = { id: `not-${kind}-${i}`, createdAt: OLD, kind }
    switch (kind) {
      case 0:
        return { ...base, verified: false }
      case 1:
        return { ...base, reminders: false, founder: false }
      case 2: // practised an hour ago
        return { ...base, sessions: [{ at: new Date(AT - HOUR), language: "es" }] }
      case 3: // 23:30 in Tokyo: outside every window
        return { ...base, timezone: "Asia/Tokyo", createdAt: new Date(AT - 30 * HOUR) }
      case 4: // signed up 10 hours ago
        return { ...base, createdAt: new Date(AT - 10 * HOUR) }
      case 5: // suppressed (see `suppressAndLedger`)
        return base
      case 6:
        return { ...base, email: `not-an-address-${i}` }
      case 7: // already got today's reminder (ledger row)
        return base
      case 8: // got a founder email 10 hours ago: the cross-job cap (ledger row)
        return base
      default: // in founder Day1's range, but opted out of both lists
        return { ...base, createdAt: new Date(AT - 30 * HOUR), reminders: false, founder: false }
    }
  })

/**
 * Suppressions and ledger history for kinds 5, 7 and 8, in three set-based statements. Users are found by their
 * address (`<name>@example.com`), since on Kaiwa's shape their ids are uuids; the ledger stores ids as text.
 */
const suppressAndLedger = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  yield* sql`
    INSERT INTO kaiwa_jobs.suppressions (user_id, email, list, reason, created_at)
    SELECT id::text, NULL, '*', 'unsubscribed', ${new Date(AT - DAY)} FROM users WHERE email LIKE 'not-5-%'`
  yield* sql`
    INSERT INTO kaiwa_jobs.deliveries (job, user_id, dedupe_key, email, data, status, planned_at, expires_at, sent_at)
    SELECT 'practice-reminders', id::text, '2026-03-10', email, '{}'::jsonb, 'sent', ${new Date(AT - 3 * HOUR)},
      ${new Date(AT + 6 * HOUR)}, ${new Date(AT - 3 * HOUR)}
    FROM users WHERE email LIKE 'not-7-%'`
  yield* sql`
    INSERT INTO kaiwa_jobs.deliveries (job, user_id, dedupe_key, email, data, status, planned_at, expires_at, sent_at)
    SELECT 'founder-emails', id::text, 'day3', email, '{}'::jsonb, 'sent', ${new Date(AT - 10 * HOUR)},
      ${new Date(AT - 8 * HOUR)}, ${new Date(AT - 10 * HOUR)}
    FROM users WHERE email LIKE 'not-8-%'`
  // Each kind really got its rows (a statement matching nobody would make the scenario prove nothing).
  const [counts] = yield* sql<{ s: number; r: number; f: number }>`
    SELECT (SELECT count(*) FROM kaiwa_jobs.suppressions)::int AS s,
      (SELECT count(*) FROM kaiwa_jobs.deliveries WHERE job = 'practice-reminders')::int AS r,
      (SELECT count(*) FROM kaiwa_jobs.deliveries WHERE job = 'founder-emails')::int AS f`
  const users = yield* sql<{ email: string }>`SELECT email FROM users`
  const kind = (k: number) => users.filter((u) => u.email.startsWith(`not-${k}-`)).length
  assert.deepStrictEqual(counts, { s: kind(5), r: kind(7), f: kind(8) })
})

interface Measured {
  readonly users: number
  readonly reminders: { readonly sent: number; readonly skipped: Readonly<Record<string, number>>; readonly statements: ReadonlyArray<string> }
  readonly founder: { readonly sent: number; readonly statements: ReadonlyArray<string> }
}

const results: Record<string, Measured> = {}

/** One scenario in its own fresh database: insert the population, run reminders then founder emails at AT. */
const scenario = (key: string, title: string, population: { reminders: number; founder: number; notDue: number }) =>
  layer(testLayer, { excludeTestServices: true })((it) => {
    it.effect(title, () =>
      Effect.gen(function*() {
        const users = [...remindersDue(population.reminders), ...founderDue(population.founder), ...notDue(population.notDue)]
        yield* insertUsers(users)
        yield* suppressAndLedger
        const reminders = yield* countedRun(practiceReminders)
        const founder = yield* countedRun(founderEmails)
        assert.strictEqual(reminders.stats.sent, population.reminders)
        assert.strictEqual(founder.stats.Day1, population.founder)
        results[key] = {
          users: users.length,
          reminders: { sent: reminders.stats.sent, skipped: reminders.stats.skipped, statements: reminders.statements },
          founder: { sent: founder.stats.Day1, statements: founder.statements }
        }
      }).pipe(Effect.provide(TestClock.layer())))
  })

const get = (key: string): Measured => {
  const r = results[key]
  assert.isDefined(r, `scenario ${key} did not run`)
  return r!
}

describe("statements per run", () => {
  scenario("small", "10 users, 10 due a reminder (and 10 due founder Day1)", { reminders: 10, founder: 10, notDue: 0 })
  scenario("large", "1,000 users, 10 due a reminder, 10 due Day1, 980 due nothing", { reminders: 10, founder: 10, notDue: 980 })
  scenario("twoBatches", "200 users due a reminder", { reminders: 200, founder: 10, notDue: 0 })
  scenario("tenBatches", "1,000 users due a reminder", { reminders: 1000, founder: 10, notDue: 0 })

  describe("compared", () => {
    {
      it.effect("a run issues the same statements for 10 users and for 1,000 when the same number is due", () =>
        Effect.sync(() => {
          const small = get("small")
          const large = get("large")
          assert.strictEqual(large.users, 1000)
          // The 980 are really there and really excluded, by every kind of rule (reasons the selection reports).
          assert.includeMembers(Object.keys(large.reminders.skipped), ["unverified", "opted_out", "suppressed", "invalid_email", "cap"])
          assert.strictEqual(small.reminders.statements.length, large.reminders.statements.length)
          assert.deepStrictEqual([...large.reminders.statements].sort(), [...small.reminders.statements].sort())
          assert.strictEqual(small.founder.statements.length, large.founder.statements.length)
          assert.deepStrictEqual([...large.founder.statements].sort(), [...small.founder.statements].sort())
          // A job's selection is a single statement: exactly one statement of a run reads the app's users table
          // (the app adapter names it, quoted: FROM "users").
          for (const run of [small.reminders, large.reminders, small.founder, large.founder]) {
            assert.strictEqual(run.statements.filter((s) => /\bFROM "?users"?\s/i.test(s)).length, 1)
          }
        }))

      it.effect("statements grow only with the number of 100-email batches, never per user", () =>
        Effect.sync(() => {
          const small = get("small").reminders.statements.length // 10 due: 1 batch
          const two = get("twoBatches").reminders.statements.length // 200 due: 2 batches
          const ten = get("tenBatches").reminders.statements.length // 1,000 due: 10 batches
          const perBatch = two - small
          assert.isAbove(perBatch, 0)
          // A batch of 100 emails costs a handful of statements (claim, record), far from one per recipient.
          assert.isBelow(perBatch, 20, `a batch of 100 emails costs ${perBatch} statements`)
          assert.strictEqual(ten - small, 9 * perBatch, `10 due: ${small}, 200 due: ${two}, 1,000 due: ${ten}`)
          // Founder emails (10 due in every scenario) cost the same whatever the reminder population.
          const founder = ["small", "large", "twoBatches", "tenBatches"].map((k) => get(k).founder.statements.length)
          assert.deepStrictEqual(founder, [founder[0], founder[0], founder[0], founder[0]])
        }))
    }
  })
})

// The ledger only grows (a reminder a day per learner), so the reminder selection must not read its history:
// it reads only the rows keyed with the local dates whose window can be open, through deliveries_once. With
// 60 days of reminders for 2,000 learners (120,000 rows, 1/60 of them today's), PostgreSQL's own plan for the
// selection must reach the ledger through that index, never by scanning the table.
describe("the reminder selection against a long ledger", () => {
  layer(testLayer, { excludeTestServices: true })((it) => {
    it.effect("reads the ledger through deliveries_once, not a scan of its history", () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        yield* insertUsers(Array.from({ length: 2000 }, (_, i) => ({
          id: `hist-${i + 1}`,
          timezone: "Europe/Berlin",
          createdAt: new Date(AT - 90 * DAY)
        })))
        yield* sql`
          INSERT INTO kaiwa_jobs.deliveries (job, user_id, dedupe_key, email, data, status, planned_at, expires_at, sent_at)
          SELECT ${PracticeReminders.NAME}, u.id::text, to_char(${new Date(AT)}::timestamptz - make_interval(days => k), 'YYYY-MM-DD'),
            u.email, '{}'::jsonb, 'sent', ${new Date(AT)}::timestamptz - make_interval(days => k),
            ${new Date(AT)}::timestamptz - make_interval(days => k) + interval '8 hours', ${new Date(AT)}::timestamptz - make_interval(days => k)
          FROM users u, generate_series(0, 59) k
          WHERE u.email LIKE 'hist-%'`
        const [ledger] = yield* sql<{ n: number }>`SELECT count(*)::int AS n FROM kaiwa_jobs.deliveries`
        assert.strictEqual(ledger!.n, 120_000)
        yield* sql`ANALYZE`
        const [text, params] = (yield* PracticeReminders.practiceReminders.statement(new Date(AT))).compile()
        const plan = (yield* sql.unsafe<{ "QUERY PLAN": string }>(`EXPLAIN ${text}`, params)).map((r) => r["QUERY PLAN"]).join("\n")
        assert.notMatch(plan, /Seq Scan on deliveries/, plan)
        assert.match(plan, /deliveries_once/, plan)
      }))
  })
})
