/**
 * CONTRACT 4 and 5: local time and daylight saving. Reminders are ticked every 15 minutes (founder emails every
 * 30 minutes) across the 2026 spring-forward and fall-back transitions of America/New_York (2026-03-08,
 * 2026-11-01) and Europe/Berlin (2026-03-29, 2026-10-25), with users there, in zones with fractional offsets
 * and no DST (Asia/Kolkata +05:30, Asia/Kathmandu +05:45), in America/St_Johns (-03:30, DST on the US dates),
 * and with an invalid or a null time zone (both served in DEFAULT_TIMEZONE, UTC). Local time is computed here
 * with Intl, not by the library.
 */
import { assert, describe, layer } from "@effect/vitest"
import { Effect, References } from "effect"
import { SqlClient } from "effect/sql"
import { TestClock } from "effect/testing"
import { founderEmails, practiceReminders } from "../../src/jobs/index.ts"
import * as PracticeReminders from "../../src/jobs/PracticeReminders.ts"
import { insertUsers, testLayer } from "../support/TestDb.ts"
import { DAY, effectiveZone, inLocalWindow, localTime, MINUTE, runAt, type Sent, stepOf } from "./localTime.ts"

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

// Each range runs for two days from 02:00 UTC the day before a transition, so every zone's whole 09:00-21:00
// window is ticked on the local day before the transition and on the day of it (a reminder run costs ~30 ms, so
// 192 ticks per transition keep the file within a minute). At 02:00 UTC no user above is inside 09:00-21:00
// local, so each user's first reminder falls at 09:00 local, and the cross-job cap (20 h) never delays a later
// one: 09:00 to 09:00 is 23 to 25 hours, even across a transition.
const TRANSITIONS = [
  { name: "US spring forward 2026-03-08", from: "2026-03-07T02:00:00Z", days: 2 },
  { name: "EU spring forward 2026-03-29", from: "2026-03-28T02:00:00Z", days: 2 },
  { name: "EU fall back 2026-10-25", from: "2026-10-24T02:00:00Z", days: 2 },
  { name: "US fall back 2026-11-01", from: "2026-10-31T02:00:00Z", days: 2 }
] as const

const REMINDER_WINDOW_TICKS = (12 * 60) / 15

// The invalid time zone is reported as bad data on every run: expected here, so only errors are logged.
const quiet = Effect.provideService(References.MinimumLogLevel, "Error")

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
            // Exactly one on each local date whose whole 09:00-21:00 window was ticked (48 ticks of 15 minutes).
            const windowTicks = new Map<string, number>()
            for (const t of ticks) {
              if (inLocalWindow(t, zone, 9 * 60, 12 * 60)) {
                const d = localTime(t, zone).date
                windowTicks.set(d, (windowTicks.get(d) ?? 0) + 1)
              }
            }
            const coveredDays = [...windowTicks].filter(([, count]) => count === REMINDER_WINDOW_TICKS).map(([d]) => d)
            assert.isAtLeast(coveredDays.length, 2, `${where}: range covers ${coveredDays.join(", ")}`)
            for (const day of coveredDays) {
              assert.strictEqual(dates.filter((d) => d === day).length, 1, `${where}: reminders on ${day}: ${dates.join(", ")}`)
            }
          }
          // The invalid and the null time zone are both served in DEFAULT_TIMEZONE, at the same instants.
          assert.deepStrictEqual(sentTo(sent, `${prefix}invalid`).map((s) => s.at), sentTo(sent, `${prefix}none`).map((s) => s.at))
          assert.isAbove(sentTo(sent, `${prefix}none`).length, 0)
        }).pipe(Effect.provide(TestClock.layer()), quiet))
    })
  })
})

// Every 30 minutes: every offset used here is a whole or half hour, and the window is 4 hours long.
const FOUNDER_TICK = 30 * MINUTE

// Founder users signed up around the US spring-forward and the EU fall-back, at instants that put step starts
// before, inside and after the 14:00-18:00 local window, on and around the transition day.
const FOUNDER_CASES = [
  {
    name: "US spring forward 2026-03-08",
    zones: ["America/New_York", "Asia/Kolkata", "America/St_Johns"],
    signups: [
      "2026-03-06T19:10:00Z",
      "2026-03-06T22:50:00Z",
      "2026-03-07T06:30:00Z",
      "2026-03-07T10:45:00Z",
      "2026-03-07T17:00:00Z",
      "2026-03-07T21:59:00Z",
      "2026-03-08T07:15:00Z",
      "2026-03-08T13:05:00Z"
    ]
  },
  {
    name: "EU fall back 2026-10-25",
    zones: ["Europe/Berlin", "Asia/Kolkata", "America/New_York"],
    signups: ["2026-10-22T13:30:00Z", "2026-10-23T08:00:00Z", "2026-10-23T15:20:00Z", "2026-10-24T12:01:00Z"]
  }
] as const

describe("founder emails across daylight-saving transitions", () => {
  layer(testLayer, { excludeTestServices: true })((it) => {
    FOUNDER_CASES.forEach((c, n) => {
      it.effect(`${c.name}: Day1, Day2, Day3 each once, at the first 14:00-18:00 local tick of their day`, () =>
        Effect.gen(function*() {
          const users = c.zones.flatMap((tz, z) =>
            c.signups.map((at, i) => ({ id: `c${n}-z${z}-${i}`, tz: tz as string, createdAt: Date.parse(at) })))
          yield* insertUsers(users.map((u) => ({ id: u.id, timezone: u.tz, createdAt: new Date(u.createdAt) })))
          // From the first Day1 start to the last Day3 end, on the 15-minute grid.
          const created = users.map((u) => u.createdAt)
          const from = Math.floor((Math.min(...created) + DAY) / FOUNDER_TICK) * FOUNDER_TICK
          const to = Math.max(...created) + 4 * DAY
          const sent: Array<Sent> = []
          const ticks: Array<number> = []
          for (let at = from; at < to; at += FOUNDER_TICK) {
            ticks.push(at)
            sent.push(...(yield* runAt(founderEmails, at)).sent)
          }
          for (const u of users) {
            const where = `${u.id} (${u.tz}, signed up ${new Date(u.createdAt).toISOString()})`
            const mine = sentTo(sent, u.id)
            for (const s of mine) {
              const lt = localTime(s.at, u.tz)
              assert.isTrue(inLocalWindow(s.at, u.tz, 14 * 60, 4 * 60), `${where}: ${stepOf(s.email)} at ${lt.date} ${lt.hhmm} local`)
            }
            // What CONTRACT 5.2 says, tick by tick: step k at the first tick inside [k, k+1) days after signup and
            // inside 14:00-18:00 local (no other job runs here, so the cap cannot intervene: steps are ~24 h apart).
            const expected = [1, 2, 3].map((k) => {
              const at = ticks.find((t) =>
                t - u.createdAt >= k * DAY && t - u.createdAt < (k + 1) * DAY && inLocalWindow(t, u.tz, 14 * 60, 4 * 60))
              return `day${k} ${at === undefined ? "never" : new Date(at).toISOString()}`
            })
            assert.isFalse(expected.some((e) => e.endsWith("never")), `${where}: the range misses a step: ${expected.join(", ")}`)
            const actual = mine.map((s) => `${stepOf(s.email)} ${new Date(s.at).toISOString()}`)
            assert.deepStrictEqual(actual, expected, where)
          }
        }).pipe(Effect.provide(TestClock.layer()), quiet))
    })
  })
})

// The reminder selection reads only the ledger rows keyed with the local dates `openWindowDays` names. Leaving
// out a date whose window is open somewhere would make a second reminder possible for that date, so the dates
// are checked against every zone PostgreSQL knows, at instants spread over 2026 (both DST seasons, every hour
// of the day and minute offsets), for the default opening time and one whose window spans local midnight.
describe("the local dates whose reminder window can be open", () => {
  layer(testLayer, { excludeTestServices: true })((it) => {
    it.effect("include every date PostgreSQL gives for a zone whose window is open", () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        const instants = Array.from({ length: 1460 }, (_, i) => new Date(Date.parse("2026-01-01T00:07:00Z") + i * 6 * 3_600_000 + (i % 4) * 15 * 60_000))
        for (const openAt of [9 * 60, 22 * 60 + 30]) {
          const rows = yield* sql<{ at: Date; days: ReadonlyArray<string> }>`
            SELECT t.at, array_agg(DISTINCT x.shifted::date::text) AS days
            FROM unnest(${`{${instants.map((d) => d.toISOString()).join(",")}}`}::timestamptz[]) t(at)
            CROSS JOIN pg_timezone_names z
            CROSS JOIN LATERAL (SELECT (t.at AT TIME ZONE z.name) - make_interval(mins => ${openAt}) AS shifted) x
            WHERE x.shifted::time < make_time(${PracticeReminders.WINDOW_MINUTES / 60}, 0, 0)
            GROUP BY t.at`
          assert.strictEqual(rows.length, instants.length)
          let spans = 0
          for (const row of rows) {
            const named = PracticeReminders.openWindowDays(row.at, openAt)
            const missing = row.days.filter((d) => !named.includes(d))
            assert.deepStrictEqual(missing, [], `at ${row.at.toISOString()} (window from ${openAt} min)`)
            assert.isAtMost(named.length, 2)
            if (named.length === 2) spans++
          }
          // both shapes occur: one open date, and two around local midnight
          assert.isAbove(spans, 0)
          assert.isBelow(spans, rows.length)
        }
      }))
  })
})
