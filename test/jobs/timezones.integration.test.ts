/**
 * CONTRACT 4 and 5: local time and daylight saving. Jobs are ticked every 15 minutes across the 2026
 * spring-forward and fall-back transitions of America/New_York (2026-03-08, 2026-11-01) and Europe/Berlin
 * (2026-03-29, 2026-10-25), with users there, in zones with fractional offsets and no DST (Asia/Kolkata +05:30,
 * Asia/Kathmandu +05:45), in America/St_Johns (-03:30, DST on the US dates), and with an invalid or a null
 * time zone (both served in DEFAULT_TIMEZONE, UTC). Local time is computed here with Intl, not by the library.
 */
import { assert, describe, layer } from "@effect/vitest"
import { Effect } from "effect"
import { TestClock } from "effect/testing"
import { founderEmails, practiceReminders } from "../../src/Job.ts"
import { insertUsers, testLayer } from "../support/TestDb.ts"
import { DAY, effectiveZone, inLocalWindow, localTime, MINUTE, runAt, type Sent } from "./localTime.ts"

const TICK = 15 * MINUTE

const ZONES: ReadonlyArray<readonly [id: string, tz: string | null]> = [
  ["ny", "America/New_York"],
  ["berlin", "Europe/Berlin"],
  ["kolkata", "Asia/Kolkata"],
  ["kathmandu", "Asia/Kathmandu"],
  ["stjohns", "America/St_Johns"],
  ["invalid", "Not/AZone"],
  ["none", null]
]

// Every range starts at 02:00 UTC, when no user above is inside 09:00-21:00 local, so each user's first reminder
// falls at 09:00 local and the cross-job cap (20 h) never pushes a later one: 09:00 to 09:00 is 23-25 h.
const TRANSITIONS = [
  { name: "US spring forward 2026-03-08", from: "2026-03-06T02:00:00Z", days: 4 },
  { name: "EU spring forward 2026-03-29", from: "2026-03-27T02:00:00Z", days: 4 },
  { name: "EU fall back 2026-10-25", from: "2026-10-23T02:00:00Z", days: 4 },
  { name: "US fall back 2026-11-01", from: "2026-10-30T02:00:00Z", days: 4 }
] as const

const sentTo = (sent: ReadonlyArray<Sent>, userId: string) => sent.filter((s) => s.userId === userId)

describe("practice reminders across daylight-saving transitions", () => {
  layer(testLayer, { excludeTestServices: true })((it) => {
    TRANSITIONS.forEach((transition, n) => {
      it.effect(`${transition.name}: one reminder per local day, at 09:00 local, never outside 09:00-21:00`, () =>
        Effect.gen(function*() {
          // Long-standing users who never practise (so never in the founder sequence), one per zone. Users of
          // earlier cases stay in the database and keep getting reminders; each case checks only its own.
          const prefix = `t${n}-`
          yield* insertUsers(ZONES.map(([id, tz]) => ({ id: prefix + id, timezone: tz, createdAt: new Date("2025-01-01T00:00:00Z") })))
          const from = Date.parse(transition.from)
          const to = from + transition.days * DAY
          const sent: Array<Sent> = []
          const ticks: Array<number> = []
          for (let at = from; at < to; at += TICK) {
            ticks.push(at)
            sent.push(...(yield* runAt(practiceReminders, at)).sent)
          }
          assert.isTrue(sent.every((s) => s.job === "practice-reminders"))
          for (const [id, tz] of ZONES) {
            const zone = effectiveZone(tz)
            const mine = sentTo(sent, prefix + id)
            const where = `${id} (${zone})`
            // Every reminder inside [09:00, 21:00) local; in fact at the first tick of the window, 09:00 sharp.
            for (const s of mine) {
              const lt = localTime(s.at, zone)
              assert.isTrue(inLocalWindow(s.at, zone, 9 * 60, 12 * 60), `${where} got a reminder at ${lt.hhmm} local`)
              assert.strictEqual(lt.hhmm, "09:00", `${where}: reminder at ${new Date(s.at).toISOString()} is ${lt.date} ${lt.hhmm} local`)
            }
            // At most one per local date.
            const dates = mine.map((s) => localTime(s.at, zone).date)
            assert.deepStrictEqual(dates, [...new Set(dates)], `${where}: two reminders on one local date: ${dates.join(", ")}`)
            // Exactly one on each local day lying wholly inside the range (all but the first and last date seen).
            const seen = [...new Set(ticks.map((t) => localTime(t, zone).date))]
            const fullDays = seen.slice(1, -1)
            assert.isAtLeast(fullDays.length, 3)
            for (const day of fullDays) {
              assert.strictEqual(dates.filter((d) => d === day).length, 1, `${where}: reminders on ${day}: ${dates.join(", ")}`)
            }
          }
          // The invalid and the null time zone are both served in DEFAULT_TIMEZONE, at the same instants.
          assert.deepStrictEqual(sentTo(sent, `${prefix}invalid`).map((s) => s.at), sentTo(sent, `${prefix}none`).map((s) => s.at))
          assert.isAbove(sentTo(sent, `${prefix}none`).length, 0)
        }).pipe(Effect.provide(TestClock.layer())))
    })
  })
})

// Founder users signed up around the US spring-forward (and EU users around theirs), at instants that put step
// starts inside, before and after the 14:00-18:00 window on the transition day.
const FOUNDER_ZONES = [
  ["ny", "America/New_York"],
  ["kolkata", "Asia/Kolkata"],
  ["stjohns", "America/St_Johns"]
] as const
const FOUNDER_SIGNUPS = [
  "2026-03-06T19:10:00Z",
  "2026-03-06T22:50:00Z",
  "2026-03-07T06:30:00Z",
  "2026-03-07T10:45:00Z",
  "2026-03-07T17:00:00Z",
  "2026-03-07T21:59:00Z",
  "2026-03-08T07:15:00Z",
  "2026-03-08T13:05:00Z"
]
const EU_SIGNUPS = ["2026-10-22T13:30:00Z", "2026-10-23T08:00:00Z", "2026-10-23T15:20:00Z", "2026-10-24T12:01:00Z"]

describe("founder emails across daylight-saving transitions", () => {
  layer(testLayer, { excludeTestServices: true })((it) => {
    const cases = [
      {
        name: "US spring forward",
        from: "2026-03-07T00:00:00Z",
        days: 5,
        users: FOUNDER_ZONES.flatMap(([zid, tz]) =>
          FOUNDER_SIGNUPS.map((at, i) => ({ id: `us-${zid}-${i}`, tz: tz as string, createdAt: Date.parse(at) })))
      },
      {
        name: "EU fall back",
        from: "2026-10-23T00:00:00Z",
        days: 5,
        users: (["Europe/Berlin", "Asia/Kolkata"] as const).flatMap((tz, z) =>
          EU_SIGNUPS.map((at, i) => ({ id: `eu-${z}-${i}`, tz: tz as string, createdAt: Date.parse(at) })))
      }
    ]
    for (const c of cases) {
      it.effect(`${c.name}: Day1, Day2 and Day3 each once, at the first 14:00-18:00 local tick of their day`, () =>
        Effect.gen(function*() {
          yield* insertUsers(c.users.map((u) => ({ id: u.id, timezone: u.tz, createdAt: new Date(u.createdAt) })))
          const from = Date.parse(c.from)
          const to = from + c.days * DAY
          const sent: Array<Sent> = []
          const ticks: Array<number> = []
          for (let at = from; at < to; at += TICK) {
            ticks.push(at)
            sent.push(...(yield* runAt(founderEmails, at)).sent)
          }
          for (const u of c.users) {
            const mine = sentTo(sent, u.id)
            const steps = mine.map((s) => s.email.tags.find((t) => t.name === "step")?.value)
            assert.deepStrictEqual(steps, ["day1", "day2", "day3"], `${u.id} (${u.tz}) got ${steps.join(", ")}`)
            mine.forEach((s, i) => {
              const k = i + 1
              const lt = localTime(s.at, u.tz)
              assert.isTrue(inLocalWindow(s.at, u.tz, 14 * 60, 4 * 60), `${u.id} Day${k} at ${lt.date} ${lt.hhmm} local`)
              assert.isTrue(s.at - u.createdAt >= k * DAY && s.at - u.createdAt < (k + 1) * DAY, `${u.id} Day${k} outside its day`)
              // Sent at the first tick that is both inside the step's day and inside the local window.
              const first = ticks.find((t) =>
                t - u.createdAt >= k * DAY && t - u.createdAt < (k + 1) * DAY && inLocalWindow(t, u.tz, 14 * 60, 4 * 60))
              assert.strictEqual(
                new Date(s.at).toISOString(),
                new Date(first!).toISOString(),
                `${u.id} Day${k} sent at ${lt.hhmm} local`
              )
            })
          }
        }).pipe(Effect.provide(TestClock.layer())))
    }
  })
})
