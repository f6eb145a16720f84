/**
 * A week in the life: 200 learners in eleven time zones (half-hour and 45-minute offsets, an invalid zone, no
 * zone), signing up over the five days before and during the week, practising as the days pass, opting out of
 * either list, one unverified, one suppressed. Both jobs run every hour for seven days under TestClock (across
 * Europe's 2026 spring-forward). An oracle written here straight from CONTRACT 5.1 and 5.2 (it never calls the
 * library's selection) says which email each learner must get at which hour; the in-memory mailer must agree
 * exactly.
 */
import { assert, describe, layer } from "@effect/vitest"
import { Effect, Ref } from "effect"
import { SqlClient } from "effect/sql"
import { TestClock } from "effect/testing"
import { findProblems } from "../../src/emails/index.ts"
import { founderEmails, practiceReminders, runJob } from "../../src/Job.ts"
import { MailerTestRef } from "../../src/Mailer.ts"
import { addSessions, insertUsers, testLayer, type UserFixture } from "../support/TestDb.ts"

const MINUTE = 60_000
const HOUR = 60 * MINUTE
const DAY = 24 * HOUR
const START = Date.parse("2026-03-23T00:00:00Z")
const END = START + 7 * DAY
const CAP = 20 * HOUR

const zones = [
  "UTC", "America/New_York", "America/Los_Angeles", "Europe/Berlin", "Asia/Kolkata", "Asia/Kathmandu",
  "Australia/Adelaide", "Pacific/Chatham", "America/St_Johns", "Not/AZone", null
] as const
const names = ["Aiko", "<script>alert(1)</script>", "\"Ann\" & <Bob>", null, "Zoë 🎉 Smith", "x".repeat(5000), "undefined", "Ben"]
const languages = ["ja", "es", "fr", "de"]

// A small deterministic PRNG so the population is the same on every run.
const prng = (seed: number) => () => {
  seed = (seed * 1664525 + 1013904223) >>> 0
  return seed / 2 ** 32
}

interface Learner {
  readonly id: string
  readonly tz: string | null
  readonly createdAt: number
  readonly verified: boolean
  readonly reminders: boolean | undefined
  readonly founder: boolean | undefined
  readonly suppressed: boolean
  readonly sessions: ReadonlyArray<number>
  readonly displayName: string | null
}

const population = (): ReadonlyArray<Learner> => {
  const random = prng(20260323)
  return Array.from({ length: 200 }, (_, i) => {
    // Signed up between 5 days before the week and its fifth day, at any minute.
    const createdAt = START - 5 * DAY + Math.floor(random() * 10 * DAY / MINUTE) * MINUTE
    const habit = random()
    const sessions: Array<number> = []
    if (habit < 0.5) {
      // Practises now and then: sessions at random instants between sign-up and the end of the week.
      const count = Math.floor(random() * 6)
      for (let k = 0; k < count; k++) sessions.push(createdAt + Math.floor(random() * (END - createdAt) / MINUTE) * MINUTE)
    } else if (habit < 0.6) {
      sessions.push(createdAt - 0 + 30 * MINUTE) // practised right after signing up
    }
    return {
      id: `w${String(i).padStart(3, "0")}`,
      tz: zones[i % zones.length]!,
      createdAt,
      verified: i !== 7,
      reminders: i % 13 === 5 ? false : i % 7 === 0 ? true : undefined,
      founder: i % 11 === 4 ? false : i % 7 === 0 ? true : undefined,
      suppressed: i === 42,
      sessions: sessions.sort((a, b) => a - b),
      displayName: names[i % names.length]!
    }
  })
}

const localOf = (at: number, tz: string | null) => {
  const zone = tz === null || tz === "Not/AZone" ? "UTC" : tz
  const parts = Object.fromEntries(
    new Intl.DateTimeFormat("en-CA", {
      timeZone: zone, year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", hourCycle: "h23"
    }).formatToParts(new Date(at)).map((p) => [p.type, p.value])
  )
  return { date: `${parts["year"]}-${parts["month"]}-${parts["day"]}`, minutes: Number(parts["hour"]) * 60 + Number(parts["minute"]) }
}

/** The contract's rules, hour by hour: which (user, job, key) each tick must send. */
const oracle = (learners: ReadonlyArray<Learner>) => {
  const expected: Array<string> = []
  const lastEmail = new Map<string, number>()
  const reminded = new Set<string>()
  const founderSent = new Set<string>()
  const capOk = (u: Learner, t: number) => !lastEmail.has(u.id) || t - lastEmail.get(u.id)! >= CAP
  for (let t = START; t <= END; t += HOUR) {
    const sends: Array<[Learner, string, string]> = []
    // practice-reminders (CONTRACT 5.1)
    for (const u of learners) {
      if (!u.verified || u.reminders === false || u.suppressed) continue
      const { date, minutes } = localOf(t, u.tz)
      if (minutes < 9 * 60 || minutes >= 21 * 60) continue
      const past = u.sessions.filter((s) => s <= t)
      if (past.some((s) => s > t - DAY)) continue
      if (u.createdAt > t - DAY) continue
      if (past.length === 0 && u.createdAt > t - 4 * DAY && u.founder !== false) continue
      if (reminded.has(`${u.id}|${date}`)) continue
      if (!capOk(u, t)) continue
      sends.push([u, "practice-reminders", date])
    }
    for (const [u, job, key] of sends) {
      reminded.add(`${u.id}|${key}`)
      lastEmail.set(u.id, t)
      expected.push(`${u.id} ${job} ${key} @${new Date(t).toISOString()}`)
    }
    // founder-emails (CONTRACT 5.2), after the reminders of the same hour
    const founder: Array<[Learner, number]> = []
    for (const u of learners) {
      if (!u.verified || u.founder === false || u.suppressed) continue
      if (u.sessions.some((s) => s <= t)) continue
      const k = Math.floor((t - u.createdAt) / DAY)
      if (k < 1 || k > 3) continue
      const { minutes } = localOf(t, u.tz)
      if (minutes < 14 * 60 || minutes >= 18 * 60) continue
      if (founderSent.has(`${u.id}|${k}`)) continue
      if (!capOk(u, t)) continue
      founder.push([u, k])
    }
    for (const [u, k] of founder) {
      founderSent.add(`${u.id}|${k}`)
      lastEmail.set(u.id, t)
      expected.push(`${u.id} founder-emails day${k} @${new Date(t).toISOString()}`)
    }
  }
  return expected
}

describe("a week in the life", () => {
  layer(testLayer, { excludeTestServices: true })((it) => {
    it.effect("200 learners, both jobs every hour for 7 days: every email matches the contract's oracle", () =>
      Effect.gen(function*() {
        const learners = population()
        const fixtures: Array<UserFixture> = learners.map((u) => ({
          id: u.id,
          createdAt: new Date(u.createdAt),
          timezone: u.tz,
          verified: u.verified,
          reminders: u.reminders,
          founder: u.founder,
          displayName: u.displayName
        }))
        yield* insertUsers(fixtures)
        const sql = yield* SqlClient.SqlClient
        yield* sql`INSERT INTO kaiwa_jobs.suppressions (user_id, email, list, reason, created_at)
                   VALUES ('w042', 'w042@example.com', '*', 'complaint', ${new Date(START - DAY)})`
        const sessions = learners
          .flatMap((u) => u.sessions.map((at, k) => ({ id: `${u.id}-s${k}`, userId: u.id, at, language: languages[k % 4]! })))
          .sort((a, b) => a.at - b.at)
        let added = 0
        const actual: Array<string> = []
        const mailbox = yield* MailerTestRef
        for (let t = START; t <= END; t += HOUR) {
          // Sessions appear as the days pass.
          const now = sessions.filter((s) => s.at <= t).length
          if (now > added) {
            yield* addSessions(sessions.slice(0, now).slice(added).map((s) => ({ ...s, at: new Date(s.at) })))
            added = now
          }
          yield* TestClock.setTime(t)
          for (const job of [practiceReminders, founderEmails] as const) {
            const before = (yield* Ref.get(mailbox)).length
            const report = yield* runJob(job as never)
            assert.strictEqual(report.exitCode, 0)
            for (const email of (yield* Ref.get(mailbox)).slice(before)) {
              const id = email.to.split("@")[0]!
              const learner = learners.find((u) => u.id === id)!
              const key = job.name === "founder-emails"
                ? email.tags.find((tag) => tag.name === "step")!.value
                : localOf(t, learner.tz).date
              actual.push(`${id} ${job.name} ${key} @${new Date(t).toISOString()}`)
            }
          }
        }
        const expected = oracle(learners)
        assert.isAbove(expected.length, 150)
        assert.isTrue(expected.some((e) => e.includes("founder-emails day3")))
        const missing = expected.filter((e) => !actual.includes(e))
        const extra = actual.filter((a) => !expected.includes(a))
        assert.deepStrictEqual({ missing, extra }, { missing: [], extra: [] })
        assert.deepStrictEqual([...actual].sort(), [...expected].sort())

        const all = yield* Ref.get(mailbox)
        for (const email of all) {
          assert.deepStrictEqual(findProblems(email), [])
          assert.include(email.text, "/unsubscribe?token=")
          assert.include(email.html, "/unsubscribe?token=")
          assert.match(email.headers["List-Unsubscribe"] ?? "", /^<https?:\/\/.+\/unsubscribe\?token=.+>$/)
          assert.strictEqual(email.headers["List-Unsubscribe-Post"], "List-Unsubscribe=One-Click")
          assert.notInclude(email.html, "<script>")
        }
        assert.isFalse(all.some((e) => e.to === "w007@example.com" || e.to === "w042@example.com"))
      }).pipe(Effect.provide(TestClock.layer())))
  })
})
