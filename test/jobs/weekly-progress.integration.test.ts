/**
 * CONTRACT 5.4, the weekly progress report, against the embedded PostgreSQL.
 *
 * The selection is compared, candidate by candidate and figure by figure, with a plain-TypeScript oracle
 * (test/jobs/weeklyOracle.ts: local dates and times from Intl) at many instants: hourly through the Sundays on
 * which New York and Berlin change their clocks (the window there is 08:00-18:00 local on the day itself), at
 * the window's edges in the zones that change, and on the Sundays whose report week holds a change (167- and
 * 169-hour weeks), with sessions one minute either side of each week's local midnights; and across the ISO
 * year's end.
 */
import { assert, describe, layer } from "@effect/vitest"
import { Effect, Option } from "effect"
import { SqlClient } from "effect/sql"
import { TestClock } from "effect/testing"
import { JobsConfig } from "../../src/config/Config.ts"
import * as Setting from "../../src/config/Setting.ts"
import type { Candidate } from "../../src/database/Database.ts"
import { Suppressions } from "../../src/ledger/Suppressions.ts"
import { findProblems } from "../../src/emails/templates.ts"
import { practiceReminders } from "../../src/jobs/index.ts"
import * as WeeklyProgress from "../../src/jobs/WeeklyProgress.ts"
import { weeklyProgress } from "../../src/jobs/WeeklyProgress.ts"
import { verifyPreferencesToken, verifyToken } from "../../src/mail/Unsubscribe.ts"
import { insertUsers, nameOf, type Session, testLayer, uid, type UserFixture } from "../support/TestDb.ts"
import { DAY, effectiveZone, HOUR, localTime, MINUTE, runAt, type Sent } from "./localTime.ts"
import { expectedReport, type OracleSession, zonedInstant } from "./weeklyOracle.ts"

const OLD = new Date("2025-01-01T00:00:00Z")

/** Zones with a DST change on a Sunday of 2026 (and NZ's on 5 April), one without DST, and the fallbacks. */
const ZONES: ReadonlyArray<readonly [id: string, tz: string | null]> = [
  ["ny", "America/New_York"],
  ["berlin", "Europe/Berlin"],
  ["auckland", "Pacific/Auckland"],
  ["kolkata", "Asia/Kolkata"],
  ["utc", "UTC"],
  ["none", null],
  ["invalid", "Not/AZone"]
]

/** Report days (Sundays): DST changes on the day itself, in the report's week, and the ISO year's end. */
const REPORT_DAYS = [
  "2026-03-08", // US spring forward on the report day
  "2026-03-15", // its report week (8-14 March) is 167 hours long in New York
  "2026-03-29", // EU spring forward on the report day
  "2026-04-05", // EU's 167-hour week; NZ falls back on the report day
  "2026-10-25", // EU fall back on the report day
  "2026-11-01", // EU's 169-hour week; US fall back on the report day
  "2026-11-08", // US 169-hour week
  "2026-12-27",
  "2027-01-03", // covers 2026-12-27..2027-01-02: ISO week 2026-W53
  "2027-01-10"
] as const

const LANGUAGES = ["ja", "es", "fr"] as const

/**
 * Sessions one minute before, at, and one minute after the local midnights that bound each report week and the
 * week before it, plus one starting at 23:30 local that runs past midnight (it counts on the day it started),
 * with varied languages and durations (some unrecorded).
 */
const sessionsFor = (tz: string): ReadonlyArray<Session> => {
  const out: Array<Session> = []
  let k = 0
  for (const day of REPORT_DAYS) {
    for (const boundary of [WeeklyProgress.addDays(day, -14), WeeklyProgress.addDays(day, -7), day]) {
      const midnight = zonedInstant(boundary, 0, tz)
      for (const delta of [-MINUTE, 0, MINUTE]) {
        k++
        out.push({ at: new Date(midnight + delta), language: LANGUAGES[k % 3]!, durationSeconds: k % 5 === 0 ? null : 60 * (k % 17) + 7 * k })
      }
    }
    k++
    out.push({ at: new Date(zonedInstant(WeeklyProgress.addDays(day, -3), 23 * 60 + 30, tz)), language: "de", durationSeconds: 45 * 60 })
  }
  // Deduplicate: the boundaries of consecutive report days coincide.
  const seen = new Set<number>()
  return out.filter((s) => !seen.has(s.at.getTime()) && seen.add(s.at.getTime()))
}

const users: ReadonlyArray<UserFixture & { readonly zone: string }> = ZONES.map(([id, tz]) => ({
  id,
  timezone: tz,
  zone: effectiveZone(tz),
  createdAt: OLD,
  sessions: sessionsFor(effectiveZone(tz))
}))

/** A fixture's sessions as the oracle sees them (TestDb stores 300 s when no duration is given). */
const oracleSessions = (u: UserFixture): ReadonlyArray<OracleSession> =>
  (u.sessions ?? []).map((s) => ({
    at: s.at.getTime(),
    language: s.language,
    durationSeconds: s.durationSeconds === undefined ? 300 : s.durationSeconds
  }))

/** A candidate's figures, without the display name (which the oracle does not compute). */
const figuresOf = (data: unknown) => {
  const { displayName: _, ...rest } = data as Record<string, unknown>
  return rest
}

/** The selection at `at`, keyed by user. */
const select = (at: number) =>
  Effect.gen(function*() {
    const rows = yield* (yield* WeeklyProgress.weeklyProgress.statement(new Date(at)))
    return new Map(rows.map((r) => [nameOf(r.user_id), r] as const))
  })

/** Compares the selection at `at` with the oracle for every user; returns the candidates. */
const check = (at: number) =>
  Effect.gen(function*() {
    const got = yield* select(at)
    const when = new Date(at).toISOString()
    for (const u of users) {
      const expected = expectedReport(at, u.zone, oracleSessions(u))
      const row: Candidate | undefined = got.get(u.id)
      const where = `${u.id} (${u.zone}) at ${when}, local ${localTime(at, u.zone).date} ${localTime(at, u.zone).hhmm}`
      if (expected === undefined) {
        assert.isUndefined(row, `${where}: not expected, got ${JSON.stringify(row?.data)}`)
        continue
      }
      assert.isDefined(row, `${where}: expected a report for ${expected.key}`)
      assert.strictEqual(row!.dedupe_key, expected.key, where)
      assert.deepStrictEqual(figuresOf(row!.data), { ...expected.data }, where)
      assert.isNull(row!.skip_reason, where)
      // The window closes at 18:00 local on the report day.
      const expires = new Date(row!.expires_at).getTime()
      assert.strictEqual(expires, zonedInstant(expected.reportDay, 18 * 60, u.zone), `${where}: expires_at`)
      assert.strictEqual(row!.unknown_timezone, u.id === "invalid", where)
    }
    return got
  })

describe("weekly progress selection against the oracle", () => {
  layer(testLayer, { excludeTestServices: true })((it) => {
    it.effect("hourly through the Sundays New York and Berlin change their clocks: window 08:00-18:00 local, the right week", () =>
      Effect.gen(function*() {
        yield* insertUsers(users)
        for (const day of ["2026-03-08", "2026-03-29", "2026-10-25", "2026-11-01"]) {
          const from = Date.parse(`${day}T00:00:00Z`) - 14 * HOUR
          let reports = 0
          for (let at = from; at <= from + 38 * HOUR; at += HOUR) reports += (yield* check(at)).size
          // Every zone's window is 10 hours long (9 or 11 of UTC-clock hours on a change day are fine too).
          assert.isAtLeast(reports, ZONES.length * 9, day)
        }
      }))

    it.effect("a tick with no window open anywhere reads no table, and the oracle agrees that nobody is due", () =>
      Effect.gen(function*() {
        // The users the first test of this layer inserted.
        const config = yield* Setting.read(WeeklyProgress.settings)
        let closed = 0
        for (let at = Date.parse("2026-03-09T00:00:00Z"); at < Date.parse("2026-03-16T00:00:00Z"); at += 30 * MINUTE) {
          if (WeeklyProgress.openReportDays(new Date(at), config).length > 0) continue
          closed++
          const [text] = (yield* WeeklyProgress.weeklyProgress.statement(new Date(at))).compile()
          assert.notMatch(text, /\busers\b|conversation_sessions|deliveries|pg_timezone_names/, new Date(at).toISOString())
          assert.strictEqual((yield* check(at)).size, 0)
        }
        // Monday to Saturday and the Sunday evening: most of the week's ticks.
        assert.isAtLeast(closed, 250)
      }))

    it.effect("the window's edges in the zones that change clocks that day: 07:59 no, 08:00 yes, 17:59 yes, 18:00 no", () =>
      Effect.gen(function*() {
        const cases = [["ny", "2026-03-08"], ["berlin", "2026-03-29"], ["berlin", "2026-10-25"], ["ny", "2026-11-01"], ["auckland", "2026-04-05"]] as const
        for (const [id, day] of cases) {
          const zone = users.find((u) => u.id === id)!.zone
          for (const [minutes, inside] of [[7 * 60 + 59, false], [8 * 60, true], [17 * 60 + 59, true], [18 * 60, false]] as const) {
            const got = yield* check(zonedInstant(day, minutes, zone))
            assert.strictEqual(got.has(id), inside, `${id} ${day} ${minutes}`)
          }
        }
      }))

    it.effect("report weeks of 167 and 169 hours: sessions a minute either side of each local midnight counted in the right week", () =>
      Effect.gen(function*() {
        for (const day of REPORT_DAYS) {
          for (const u of users) {
            const got = yield* check(zonedInstant(day, 12 * 60, u.zone))
            assert.isTrue(got.has(u.id), `${u.id} ${day}`)
          }
        }
        // Spelled out for New York's week of 8-14 March (167 hours: 05:00 UTC on the 8th to 04:00 UTC on the 15th).
        const ny = users.find((u) => u.id === "ny")!
        const week = (ny.sessions ?? []).filter((s) =>
          s.at.getTime() >= Date.parse("2026-03-08T05:00:00Z") && s.at.getTime() < Date.parse("2026-03-15T04:00:00Z"))
        assert.strictEqual(Date.parse("2026-03-15T04:00:00Z") - Date.parse("2026-03-08T05:00:00Z"), 167 * HOUR)
        const got = yield* select(Date.parse("2026-03-15T16:00:00Z"))
        assert.strictEqual((got.get("ny")!.data as { sessions: number }).sessions, week.length)
        // 8 March 00:00 and 00:01 local, 12 March 23:30 local, 14 March 23:59 local
        assert.strictEqual(week.length, 4)
      }))

    it.effect("the week key computed in TypeScript (the ledger lookup's values) agrees with PostgreSQL's, every day 2020-2035", () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        const rows = yield* sql<{ d: string; w: string }>`
          SELECT d::date::text AS d, to_char(d::date, 'IYYY-"W"IW') AS w
          FROM generate_series(date '2020-01-01', date '2035-12-31', interval '1 day') d`
        assert.strictEqual(rows.length, 5844)
        for (const r of rows) assert.strictEqual(WeeklyProgress.isoWeek(r.d), r.w, r.d)
      }))

    it.effect("the dedupe key is the ISO week of the report week's last day: 2026-W53 for the report of Sunday 2027-01-03", () =>
      Effect.gen(function*() {
        const keys = new Map<string, string>()
        for (const day of ["2026-12-27", "2027-01-03", "2027-01-10"]) {
          const got = yield* select(zonedInstant(day, 9 * 60, "UTC"))
          keys.set(day, got.get("utc")!.dedupe_key)
          assert.deepStrictEqual(
            [(got.get("utc")!.data as { weekStart: string }).weekStart, (got.get("utc")!.data as { weekEnd: string }).weekEnd],
            [WeeklyProgress.addDays(day, -7), WeeklyProgress.addDays(day, -1)]
          )
        }
        assert.deepStrictEqual(Object.fromEntries(keys), { "2026-12-27": "2026-W52", "2027-01-03": "2026-W53", "2027-01-10": "2027-W01" })
      }))
  })
})

describe("weekly progress figures", () => {
  layer(testLayer, { excludeTestServices: true })((it) => {
    // Sunday 2026-03-15 10:00 in Tokyo (+09:00): the report week is 8-14 March local.
    const AT = Date.parse("2026-03-15T01:00:00Z")
    const TZ = "Asia/Tokyo"
    const local = (date: string, hhmm: string) => new Date(zonedInstant(date, Number(hhmm.slice(0, 2)) * 60 + Number(hhmm.slice(3)), TZ))

    it.effect("minutes with unrecorded durations, active local days across midnight, top language, change, new this week", () =>
      Effect.gen(function*() {
        const figures: ReadonlyArray<UserFixture> = [
          {
            // 10 + 0 (unrecorded) + 10 + 20 + 15 = 55 minutes; 23:50 on the 9th and 00:10 on the 10th are two local
            // days, though 20 minutes apart (and the same UTC day); ja and es tie on 20 minutes, ja has more sessions.
            id: "f-mixed",
            timezone: TZ,
            createdAt: OLD,
            sessions: [
              { at: local("2026-03-09", "23:50"), language: "ja", durationSeconds: 600 },
              { at: local("2026-03-10", "00:10"), language: "ja", durationSeconds: null },
              { at: local("2026-03-10", "00:10"), language: "ja", durationSeconds: 600 },
              { at: local("2026-03-12", "18:00"), language: "es", durationSeconds: 1200 },
              { at: local("2026-03-13", "07:00"), language: "fr", durationSeconds: 900 },
              // the week before: 40 minutes
              { at: local("2026-03-03", "12:00"), language: "ja", durationSeconds: 2400 }
            ]
          },
          {
            // 30 minutes this week; the week before had a session but no recorded minutes: "new this week"
            id: "f-new",
            timezone: TZ,
            createdAt: OLD,
            sessions: [
              { at: local("2026-03-14", "23:59"), language: "es", durationSeconds: 1800 },
              { at: local("2026-03-07", "23:59"), language: "es", durationSeconds: null }
            ]
          },
          {
            // Ties everywhere: 10 minutes and one session each, so the first alphabetically wins.
            id: "f-tie",
            timezone: TZ,
            createdAt: OLD,
            sessions: [
              { at: local("2026-03-11", "09:00"), language: "fr", durationSeconds: 600 },
              { at: local("2026-03-11", "10:00"), language: "de", durationSeconds: 600 },
              { at: local("2026-03-02", "10:00"), language: "de", durationSeconds: 1200 }
            ]
          },
          {
            // Practised only the week before, and on the report day itself: no report.
            id: "f-none",
            timezone: TZ,
            createdAt: OLD,
            sessions: [
              { at: local("2026-03-07", "23:59"), language: "es", durationSeconds: 600 },
              { at: local("2026-03-15", "00:00"), language: "es", durationSeconds: 600 }
            ]
          },
          {
            // Every duration unrecorded: 0 minutes, and no change to compare.
            id: "f-unrecorded",
            timezone: TZ,
            createdAt: OLD,
            sessions: [
              { at: local("2026-03-08", "00:00"), language: "ko", durationSeconds: null },
              { at: local("2026-03-01", "00:00"), language: "ko", durationSeconds: 600 }
            ]
          }
        ]
        yield* insertUsers(figures)
        const got = yield* select(AT)
        const data = (id: string) => got.get(id)?.data
        assert.deepStrictEqual(data("f-mixed"), {
          displayName: "Learner f-mixed",
          week: "2026-W11",
          weekStart: "2026-03-08",
          weekEnd: "2026-03-14",
          minutes: 55,
          sessions: 5,
          activeDays: 4,
          topLanguage: "ja",
          previousMinutes: 40,
          changePercent: 38, // 37.5, rounded half away from zero
          // per local day, Sunday 8 to Saturday 14 March: 23:50 on the 9th and 00:10 on the 10th on two days
          minutesByDay: [0, 10, 10, 0, 20, 15, 0]
        })
        assert.deepStrictEqual(
          [data("f-new")].map((d) => d as Record<string, unknown>).map((d) => [d["minutes"], d["previousMinutes"], d["changePercent"], d["activeDays"]]),
          [[30, 0, null, 1]]
        )
        assert.deepStrictEqual(
          [data("f-tie")].map((d) => d as Record<string, unknown>).map((d) => [d["topLanguage"], d["minutes"], d["changePercent"]]),
          [["de", 20, 0]]
        )
        assert.isFalse(got.has("f-none"))
        assert.deepStrictEqual(
          [data("f-unrecorded")].map((d) => d as Record<string, unknown>).map((d) => [d["minutes"], d["sessions"], d["previousMinutes"], d["changePercent"]]),
          [[0, 1, 10, -100]]
        )
        // And the oracle agrees with every figure.
        for (const u of figures) {
          const expected = expectedReport(AT, TZ, oracleSessions(u))
          assert.deepStrictEqual(got.has(u.id) ? figuresOf(data(u.id)) : undefined, expected === undefined ? undefined : { ...expected.data }, u.id)
        }
      }))
  })
})

describe("weekly progress job: hourly ticks beside the reminders, the cap, re-runs, opt-outs", () => {
  layer(testLayer, { excludeTestServices: true })((it) => {
    // The report of Sunday 15 March 2026 covers 8-14 March. Everyone practised on 10 March (in the week, and more
    // than 24 hours before any tick, so reminders are due too) with durations of 25 minutes.
    const practised = [{ at: new Date("2026-03-10T12:00:00Z"), language: "ja", durationSeconds: 1500 }]
    const weeklyUsers: ReadonlyArray<UserFixture> = [
      // 08:00 Sunday in Tokyo is Saturday 23:00 UTC: the report goes first, and blocks Sunday's 09:00 reminder.
      { id: "report-first", timezone: "Asia/Tokyo", createdAt: OLD, sessions: practised },
      // Reminded on Saturday at 20:00 UTC: Sunday's report (08:00 UTC) is inside the 20-hour cap, so it is
      // skipped for the week, and not sent later that day once the cap has passed (16:00 UTC).
      { id: "reminded-evening", timezone: "UTC", createdAt: OLD, sessions: practised },
      // No reminders: the report alone, once, whatever the ticks.
      { id: "plain", timezone: "UTC", createdAt: OLD, reminders: false, sessions: practised },
      { id: "opted-out", timezone: "UTC", createdAt: OLD, reminders: false, progress: false, sessions: practised },
      { id: "suppressed", timezone: "UTC", createdAt: OLD, reminders: false, sessions: practised },
      { id: "suppressed-all", timezone: "UTC", createdAt: OLD, sessions: practised },
      { id: "unverified", timezone: "UTC", createdAt: OLD, reminders: false, verified: false, sessions: practised },
      // Practised only the week before: nothing to report.
      { id: "idle", timezone: "UTC", createdAt: OLD, reminders: false, sessions: [{ at: new Date("2026-03-05T12:00:00Z"), language: "es" }] }
    ]
    const SATURDAY_EVENING = Date.parse("2026-03-14T20:00:00Z")

    it.effect("one report per user and week; the cap holds both ways; opt-outs and suppressions are respected", () =>
      Effect.gen(function*() {
        yield* insertUsers(weeklyUsers)
        const db = yield* Suppressions
        yield* db.suppress({ userId: uid("suppressed"), email: null, list: WeeklyProgress.NAME, reason: "unsubscribed", now: new Date(SATURDAY_EVENING - DAY) })
        yield* db.suppress({ userId: null, email: "suppressed-all@example.com", list: "*", reason: "complaint", now: new Date(SATURDAY_EVENING - DAY) })

        const sent: Array<Sent> = []
        sent.push(...(yield* runAt(practiceReminders, SATURDAY_EVENING)).sent)
        let sundayEight: { readonly skipped: Readonly<Record<string, number>> } | undefined
        // Hourly from Saturday 21:00 to Monday 12:00 UTC, each job on its own machine; at Sunday 08:00 UTC the
        // weekly tick runs twice (a Fly restart), and the reminder tick of each hour after it.
        for (let at = SATURDAY_EVENING + HOUR; at <= Date.parse("2026-03-16T12:00:00Z"); at += HOUR) {
          const weekly = yield* runAt(weeklyProgress, at)
          sent.push(...weekly.sent)
          if (at === Date.parse("2026-03-15T08:00:00Z")) {
            sundayEight = weekly.stats
            const again = yield* runAt(weeklyProgress, at)
            assert.deepStrictEqual(again.sent, [], "a re-run of the same tick sends nothing")
            assert.strictEqual(again.stats.due, 0)
          }
          sent.push(...(yield* runAt(practiceReminders, at)).sent)
        }
        const timeline = (id: string) => sent.filter((s) => s.userId === id).map((s) => `${s.job} ${new Date(s.at).toISOString()}`)
        assert.deepStrictEqual(timeline("report-first"), [
          "weekly-progress 2026-03-14T23:00:00.000Z", // Sunday 08:00 in Tokyo
          "practice-reminders 2026-03-16T00:00:00.000Z" // Monday 09:00 in Tokyo: Sunday's reminder was capped
        ])
        // With TestClock an email is sent at its run's very instant, so 20 hours later the cap has passed: Sunday's
        // reminder goes at 16:00 UTC, while the report window is still open (until 18:00), and the report does not.
        assert.deepStrictEqual(timeline("reminded-evening"), [
          "practice-reminders 2026-03-14T20:00:00.000Z",
          "practice-reminders 2026-03-15T16:00:00.000Z",
          "practice-reminders 2026-03-16T12:00:00.000Z"
        ])
        assert.deepStrictEqual(timeline("plain"), ["weekly-progress 2026-03-15T08:00:00.000Z"])
        for (const id of ["opted-out", "suppressed", "unverified", "idle"]) assert.deepStrictEqual(timeline(id), [], id)
        assert.deepStrictEqual(timeline("suppressed-all"), [])
        assert.deepStrictEqual(sundayEight?.skipped, {
          cap: 1,
          opted_out: 1,
          suppressed: 2,
          unverified: 1
        })

        // The ledger: the capped report is settled for the week as skipped, so no later tick reconsidered it. It holds
        // the app's ids as text (uuids on Kaiwa's shape).
        const sql = yield* SqlClient.SqlClient
        const rows = yield* sql<{ user_id: string; dedupe_key: string; status: string; reason: string | null }>`
          SELECT user_id, dedupe_key, status, reason FROM kaiwa_jobs.deliveries WHERE job = ${WeeklyProgress.NAME}`
        const byUser = (a: { user_id: string }, b: { user_id: string }) => a.user_id.localeCompare(b.user_id)
        assert.deepStrictEqual(rows.map((r) => ({ ...r })).sort(byUser), [
          { user_id: uid("plain"), dedupe_key: "2026-W11", status: "sent", reason: null },
          { user_id: uid("reminded-evening"), dedupe_key: "2026-W11", status: "skipped", reason: "cap" },
          { user_id: uid("report-first"), dedupe_key: "2026-W11", status: "sent", reason: null }
        ].sort(byUser))

        // The email: the week's figures, an unsubscribe link for this list, RFC 8058 headers, the job's tag.
        const report = sent.find((s) => s.userId === "plain" && s.job === "weekly-progress")!.email
        assert.strictEqual(report.subject, "Last week on Kaiwa: 25 minutes of conversation")
        assert.include(report.text, "March 8–14\n25 minutes\n1 conversation\n1 active day\n")
        assert.include(report.text, "Your most practised language was Japanese.")
        assert.deepStrictEqual(findProblems(report), [])
        assert.deepStrictEqual(report.tags, [{ name: "job", value: "weekly-progress" }, { name: "trend", value: "new" }])
        assert.strictEqual(report.headers["List-Unsubscribe-Post"], "List-Unsubscribe=One-Click")
        const url = /<(https?:[^>]+)>/.exec(report.headers["List-Unsubscribe"] ?? "")![1]!
        assert.include(report.text, url)
        const config = yield* JobsConfig
        const claim = verifyToken(config.unsubscribeSecret, new URL(url).searchParams.get("token")!)
        assert.deepStrictEqual(Option.getOrUndefined(claim), { userId: uid("plain"), list: "weekly-progress" })
        // The footer's preference center link: this learner's own per-user token.
        const preferences = /Manage email preferences:\s+(\S+)/.exec(report.text)?.[1] ?? ""
        assert.strictEqual(new URL(preferences).pathname, "/preferences")
        assert.include(report.html, `href="${preferences}"`)
        const owner = verifyPreferencesToken(config.unsubscribeSecret, new URL(preferences).searchParams.get("token") ?? "")
        assert.deepStrictEqual(Option.getOrUndefined(owner), { userId: uid("plain") })
      }).pipe(Effect.provide(TestClock.layer())))
  })
})
