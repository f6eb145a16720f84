/**
 * `kaiwa-jobs why` agrees with the runner (issue 21): for every learner of a varied population, at ten instants
 * of a week, each job's decision taken just before the job runs says `due` exactly for the learners the run then
 * emails, and the reasons it gives for the others add up to the run's own skip counts. Both come from the same
 * fragments (`Job.decide` and `Job.statement`), so this checks the explanation path, not a second copy of the
 * rules. Then the command itself: text, `--json` and a learner it does not know.
 */
import { assert, describe, layer } from "@effect/vitest"
import { Effect, Ref } from "effect"
import { SqlClient } from "effect/sql"
import { TestClock } from "effect/testing"
import { Suppressions } from "../../src/ledger/Suppressions.ts"
import { runJob } from "../../src/job/Job.ts"
import { registry, type Registry } from "../../src/jobs/index.ts"
import { MailerTestRef } from "../../src/mail/Mailer.ts"
import { Pauses } from "../../src/ledger/Pauses.ts"
import { why } from "../../src/operator/Why.ts"
import { insertUsers, testLayer, uid, type UserFixture } from "../support/TestDb.ts"

const HOUR = 3_600_000
const DAY = 24 * HOUR
// Thursday 5 March 2026 to the following week: the weekly report's Sunday (8 March) is among the instants.
const START = Date.parse("2026-03-05T00:00:00Z")
const INSTANTS = [9, 14, 20, 30, 57, 80, 82, 86, 105, 130].map((h) => START + h * HOUR)
const ZONES = ["UTC", "America/New_York", "Europe/Berlin", "Asia/Tokyo", "Asia/Kolkata", "Pacific/Auckland", null] as const

/** 70 learners: every kind the rules tell apart. */
const population: ReadonlyArray<UserFixture> = Array.from({ length: 70 }, (_, i) => {
  const zone = ZONES[i % ZONES.length]!
  const kind = i % 10
  const createdAt = kind === 0 ? new Date(START + 20 * HOUR - (i % 5) * 7 * HOUR) // new: the founder sequence
    : kind === 9 ? null // signed up long ago, instant unknown
    : new Date(START - (20 + i) * DAY)
  const sessions = kind === 0 || kind === 5 ? [] : [
    { at: new Date(START - (1 + (i % 4)) * DAY), language: "ja" },
    { at: new Date(START + ((i * 7) % 100) * HOUR), language: i % 2 === 0 ? "es" : "fr" }
  ]
  return {
    id: `why-${i}`,
    timezone: zone,
    createdAt,
    verified: i !== 13,
    ...(i === 21 ? { reminders: false } : {}),
    ...(i === 30 ? { founder: false } : {}),
    ...(i === 44 ? { progress: false } : {}),
    sessions
  }
})

describe("why agrees with the runner", () => {
  layer(testLayer, { excludeTestServices: true })((it) => {
    it.effect("every learner, ten instants, three jobs: due exactly for those emailed; reasons add up to the run's skips", () =>
      Effect.gen(function*() {
        yield* insertUsers(population)
        const db = yield* Suppressions
        yield* db.suppress({ userId: uid("why-33"), email: null, list: "*", reason: "complaint", now: new Date(START) })
        const store = yield* MailerTestRef
        const users = population.map((u) => ({ name: u.id, userId: uid(u.id), email: `${u.id}@example.com` }))
        let compared = 0
        const reasons = new Set<string>()
        for (const at of INSTANTS) {
          yield* TestClock.setTime(at)
          for (const job of registry as Registry) {
            const decisions = (yield* job.decide(new Date(at), users)).map((d, k) => ({ ...users[k]!, ...d }))
            const before = (yield* Ref.get(store)).length
            const report = yield* runJob(job)
            const sent = new Set((yield* Ref.get(store)).slice(before).map((e) => e.to))
            const where = `${job.name} at ${new Date(at).toISOString()}`
            assert.deepStrictEqual(
              decisions.filter((d) => d.due).map((d) => d.email).sort(),
              [...sent].sort(),
              `${where}: due by why = emailed by the run`
            )
            // The shared rules' skips the run counted are the reasons why gave, learner for learner.
            const counted: Record<string, number> = {}
            for (const d of decisions) {
              if (["unverified", "opted_out", "suppressed", "cap", "invalid_email"].includes(d.reason)) counted[d.reason] = (counted[d.reason] ?? 0) + 1
            }
            assert.deepStrictEqual(counted, { ...(report.stats?.skipped ?? {}) }, `${where}: skip reasons`)
            compared += decisions.length
            for (const d of decisions) reasons.add(`${job.name}:${d.reason}`)
          }
        }
        assert.strictEqual(compared, 70 * 3 * INSTANTS.length)
        // The population exercised the rules: somebody was due, and the reasons cover the job's own rules too.
        assert.isAbove((yield* Ref.get(store)).length, 20)
        assert.includeMembers([...reasons], [
          "practice-reminders:due",
          "practice-reminders:outside_local_window",
          "practice-reminders:practised_in_last_24h",
          "practice-reminders:in_founder_sequence",
          "practice-reminders:already_planned_for_key",
          "practice-reminders:unverified",
          "practice-reminders:opted_out",
          "practice-reminders:suppressed",
          "founder-emails:due",
          "founder-emails:not_in_founder_days",
          "founder-emails:outside_local_window",
          "weekly-progress:no_window_open",
          "weekly-progress:due"
        ], [...reasons].sort().join(", "))
      }).pipe(Effect.provide(TestClock.layer())))

    it.effect("names the rule, the local time, the email holding the cap, a pause, and the timeline", () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        const at = new Date(INSTANTS[9]! + DAY)
        const report = yield* why("why-3@example.com", at)
        assert.strictEqual(report.user.userId, uid("why-3"))
        assert.deepStrictEqual(report.jobs.map((j) => j.job), registry.map((j) => j.name))
        assert.isAbove(report.timeline.length, 0)
        assert.isTrue(report.timeline.every((t, i) => i === 0 || t.at <= report.timeline[i - 1]!.at), "newest first")
        // By id as well as by address; at some instant of the week the reminder's window is open and only the
        // address stands in the way.
        const unverified = yield* Effect.forEach(INSTANTS, (t) => why(uid("why-13"), new Date(t)))
        assert.isTrue(unverified.some((r) => r.jobs.some((j) => j.job === "practice-reminders" && j.reason === "unverified")))
        const outside = unverified.flatMap((r) => r.jobs).find((j) => j.reason === "outside_local_window")
        assert.match(outside?.detail ?? "", /local time is \w{3} \d{4}-\d{2}-\d{2} \d{2}:\d{2} /)
        yield* Effect.flatMap(Pauses, (p) => p.pause({ job: "practice-reminders", by: "ops@test", reason: "template fix", now: at }))
        const paused = yield* why("why-3@example.com", at)
        const reminder = paused.jobs.find((j) => j.job === "practice-reminders")!
        assert.strictEqual(reminder.reason, "paused")
        assert.include(reminder.detail, "ops@test")
        assert.include(reminder.detail, "template fix")
        yield* Effect.flatMap(Pauses, (p) => p.resume("practice-reminders"))
        const complained = yield* why("why-33@example.com", new Date(INSTANTS[0]!))
        const suppressedRow = complained.jobs.find((j) => j.reason === "suppressed")
        if (suppressedRow !== undefined) assert.include(suppressedRow.detail, "complaint (every list)")
        assert.isTrue(complained.timeline.some((t) => t.kind === "suppressed" && t.detail.startsWith("complaint")))
        const none = yield* Effect.flip(why("nobody@example.com", at))
        assert.strictEqual(none._tag, "UnknownLearner")
        yield* sql`SELECT 1`
      }).pipe(Effect.provide(TestClock.layer())))
  })
})
