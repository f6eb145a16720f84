/**
 * Local time and daylight saving: reminders and founder emails ticked every 30 minutes across the 2026
 * spring-forward and fall-back weekends of America/New_York and Europe/Berlin, with users in those zones, in
 * Asia/Kolkata (+05:30) and Asia/Kathmandu (+05:45), and users whose time zone is invalid or null (served in
 * DEFAULT_TIMEZONE, UTC). Every user gets at most one reminder per local date, exactly one on each full local day,
 * never outside 09:00-21:00 local; each founder step once, only inside 14:00-18:00 local.
 */
import { assert, describe, layer } from "@effect/vitest"
import { Effect, Ref } from "effect"
import { TestClock } from "effect/testing"
import { founderEmails, practiceReminders, runJob } from "../../src/Job.ts"
import { MailerTestRef, type OutgoingEmail } from "../../src/Mailer.ts"
import { insertUsers, testLayer } from "../support/TestDb.ts"

const MINUTE = 60_000
const HOUR = 60 * MINUTE
const DAY = 24 * HOUR

const zones: Record<string, string | null> = {
  ny: "America/New_York",
  berlin: "Europe/Berlin",
  kolkata: "Asia/Kolkata",
  kathmandu: "Asia/Kathmandu",
  invalid: "Not/AZone",
  none: null
}
const effectiveZone = (tz: string | null) => (tz === null || tz === "Not/AZone" ? "UTC" : tz)

/** Local date and minutes after midnight of an instant in a zone. */
const local = (at: number, tz: string) => {
  const parts = Object.fromEntries(
    new Intl.DateTimeFormat("en-CA", {
      timeZone: tz, year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", hourCycle: "h23"
    }).formatToParts(new Date(at)).map((p) => [p.type, p.value])
  )
  return { date: `${parts["year"]}-${parts["month"]}-${parts["day"]}`, minutes: Number(parts["hour"]) * 60 + Number(parts["minute"]) }
}

/** Runs `job` every `step` from `from` to `to`, returning every email with the instant it went out. */
const tickEvery = (job: typeof practiceReminders | typeof founderEmails, from: number, to: number, step: number) =>
  Effect.gen(function*() {
    const sent: Array<{ at: number; email: OutgoingEmail }> = []
    const ref = yield* MailerTestRef
    for (let at = from; at <= to; at += step) {
      yield* TestClock.setTime(at)
      const before = (yield* Ref.get(ref)).length
      const report = yield* runJob(job as never)
      assert.strictEqual(report.exitCode, 0)
      for (const email of (yield* Ref.get(ref)).slice(before)) sent.push({ at, email })
    }
    return sent
  })

const userOf = (email: OutgoingEmail) => email.to.split("@")[0]!

const transitions = [
  { name: "US spring forward (2026-03-08)", from: "2026-03-06T00:00:00Z", to: "2026-03-10T00:00:00Z" },
  { name: "EU spring forward (2026-03-29)", from: "2026-03-27T00:00:00Z", to: "2026-03-31T00:00:00Z" },
  { name: "EU fall back (2026-10-25)", from: "2026-10-23T00:00:00Z", to: "2026-10-27T00:00:00Z" },
  { name: "US fall back (2026-11-01)", from: "2026-10-30T00:00:00Z", to: "2026-11-03T00:00:00Z" }
]

describe("practice reminders around daylight-saving transitions", () => {
  for (const t of transitions) {
    layer(testLayer, { excludeTestServices: true })((it) => {
      it.effect(`${t.name}: one reminder per local date, on every full local day, only 09:00-21:00 local`, () =>
        Effect.gen(function*() {
          const from = Date.parse(t.from)
          const to = Date.parse(t.to)
          yield* insertUsers(Object.entries(zones).map(([id, tz]) => ({
            id,
            timezone: tz,
            createdAt: new Date(from - 60 * DAY),
            sessions: [{ at: new Date(from - 10 * DAY), language: "de" }]
          })))
          const sent = yield* tickEvery(practiceReminders, from, to, 30 * MINUTE)
          for (const [id, tz] of Object.entries(zones)) {
            const zone = effectiveZone(tz)
            const mine = sent.filter((s) => userOf(s.email) === id)
            const dates = mine.map((s) => local(s.at, zone).date)
            assert.strictEqual(new Set(dates).size, dates.length, `${id}: two reminders on one local date: ${dates}`)
            for (const s of mine) {
              const { minutes } = local(s.at, zone)
              assert.isTrue(minutes >= 9 * 60 && minutes < 21 * 60, `${id}: reminder at ${minutes} min local`)
            }
            // Every local day whose whole 09:00-21:00 window lies inside the ticked range got one (and, above,
            // no more than one).
            const fullDays = new Set<string>()
            for (let d = from; d <= to; d += HOUR) {
              const day = local(d, zone).date
              if (isWholeWindowInside(day, zone, from, to)) fullDays.add(day)
            }
            assert.isAtLeast(fullDays.size, 3)
            for (const day of fullDays) assert.include(dates, day, `${id}: no reminder on ${day}`)
          }
        }).pipe(Effect.provide(TestClock.layer())))
    })
  }
})

/** Whether 09:00-21:00 local on `day` lies within [from, to] (found by scanning the range; DST-proof). */
const isWholeWindowInside = (day: string, zone: string, from: number, to: number) => {
  let first: number | undefined
  let last: number | undefined
  for (let at = from - DAY; at <= to + DAY; at += 30 * MINUTE) {
    const l = local(at, zone)
    if (l.date === day && l.minutes >= 9 * 60 && l.minutes < 21 * 60) {
      first ??= at
      last = at
    }
  }
  return first !== undefined && last !== undefined && first >= from && last <= to
}

describe("founder emails around daylight-saving transitions", () => {
  for (const t of [transitions[0]!, transitions[3]!]) {
    layer(testLayer, { excludeTestServices: true })((it) => {
      it.effect(`${t.name}: Day1, Day2, Day3 once each, only 14:00-18:00 local`, () =>
        Effect.gen(function*() {
          const from = Date.parse(t.from)
          const to = from + 5 * DAY
          // Signed up just before the range: steps 1-3 fall across the transition.
          yield* insertUsers(["ny", "kolkata", "berlin", "none"].map((id) => ({
            id,
            timezone: zones[id]!,
            createdAt: new Date(from - 2 * HOUR)
          })))
          const sent = yield* tickEvery(founderEmails, from, to, 30 * MINUTE)
          for (const id of ["ny", "kolkata", "berlin", "none"]) {
            const zone = effectiveZone(zones[id]!)
            const mine = sent.filter((s) => userOf(s.email) === id)
            const steps = mine.map((s) => s.email.tags.find((tag) => tag.name === "step")?.value)
            assert.deepStrictEqual(steps, ["day1", "day2", "day3"], `${id}: ${steps}`)
            for (const s of mine) {
              const { minutes } = local(s.at, zone)
              assert.isTrue(minutes >= 14 * 60 && minutes < 18 * 60, `${id}: founder email at ${minutes} min local`)
            }
          }
        }).pipe(Effect.provide(TestClock.layer())))
    })
  }
})
