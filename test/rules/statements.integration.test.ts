/**
 * "Who is due is decided by one set-based SQL statement per job": the statements a run issues are counted with a
 * tracer (every SQL statement is a client span) and do not depend on how many users there are, only on how many
 * batches of 100 are sent.
 */
import { assert, describe, layer } from "@effect/vitest"
import { Effect, Tracer } from "effect"
import { TestClock } from "effect/testing"
import { practiceReminders, runJob } from "../../src/Job.ts"
import { insertUsers, testLayer, type UserFixture } from "../support/TestDb.ts"

const DAY = 86_400_000
const HOUR = 3_600_000

/** Runs an effect and counts the SQL statements (client spans) it issued. */
const countStatements = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.gen(function*() {
    let statements = 0
    const tracer = Tracer.make({
      span(options) {
        if (options.kind === "client") statements++
        return new Tracer.NativeSpan(options)
      }
    })
    const result = yield* Effect.withTracer(effect, tracer)
    return { result, statements }
  })

/** `due` users due at `at`, plus `notDue` users excluded by every kind of rule. */
const population = (prefix: string, at: number, due: number, notDue: number): Array<UserFixture> => {
  const users: Array<UserFixture> = []
  for (let i = 0; i < due; i++) users.push({ id: `${prefix}d${i}`, createdAt: new Date(at - 30 * DAY) })
  for (let i = 0; i < notDue; i++) {
    const kind = i % 5
    users.push({
      id: `${prefix}n${i}`,
      createdAt: new Date(at - (kind === 4 ? 2 * DAY : 30 * DAY)),
      verified: kind !== 0,
      reminders: kind === 1 ? false : undefined,
      timezone: kind === 2 ? "America/Los_Angeles" : "UTC", // 02:00 there: outside the window
      sessions: kind === 3 ? [{ at: new Date(at - HOUR), language: "ja" }] : []
    })
  }
  return users
}

const tick = (at: number, users: ReadonlyArray<UserFixture>) =>
  Effect.gen(function*() {
    yield* insertUsers(users)
    yield* TestClock.setTime(at)
    const { result, statements } = yield* countStatements(runJob(practiceReminders))
    return { sent: (result.stats as { sent: number }).sent, statements }
  }).pipe(Effect.provide(TestClock.layer()))

// Each scenario gets a fresh database, so earlier ledger rows cannot change the next one's work.
const scenario = (name: string, run: Effect.Effect<void, unknown, any>) =>
  layer(testLayer, { excludeTestServices: true })((it) => it.effect(name, () => run))

const results: Record<string, { sent: number; statements: number }> = {}
const AT = Date.parse("2026-03-10T10:00:00Z")

describe("statements per run", () => {
  scenario("10 users, all due", Effect.map(tick(AT, population("a", AT, 10, 0)), (r) => void (results["10"] = r)))
  scenario("1,000 users, 10 due", Effect.map(tick(AT, population("b", AT, 10, 990)), (r) => void (results["1000"] = r)))
  scenario("200 users, all due", Effect.map(tick(AT, population("c", AT, 200, 0)), (r) => void (results["200due"] = r)))
  scenario("1,000 users, all due", Effect.map(tick(AT, population("d", AT, 1000, 0)), (r) => void (results["1000due"] = r)))

  layer(testLayer, { excludeTestServices: true })((it) => {
    it.effect("are the same for 10 users and 1,000, and grow only with the number of 100-email batches", () =>
      Effect.sync(() => {
        assert.strictEqual(results["10"]!.sent, 10)
        assert.strictEqual(results["1000"]!.sent, 10)
        assert.strictEqual(results["1000"]!.statements, results["10"]!.statements)
        // 200 due = 2 batches, 1,000 due = 10 batches: the difference per batch is constant.
        const perBatch = results["200due"]!.statements - results["10"]!.statements
        assert.isAbove(perBatch, 0)
        assert.strictEqual(results["1000due"]!.statements - results["10"]!.statements, 9 * perBatch)
        assert.isBelow(perBatch, 10, "a batch of 100 emails must cost a handful of statements, not one per user")
      }))
  })
})
