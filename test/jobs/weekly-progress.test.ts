/**
 * The weekly progress report's settings (PROGRESS_DAY, PROGRESS_LOCAL_TIME), its dedupe key (the ISO week of the
 * report week's last day) and which report days can be open at an instant, without a database; and its preview
 * samples, rendered through the job's own render path.
 */
import { assert, describe, it } from "@effect/vitest"
import { ConfigProvider, Effect, Exit } from "effect"
import { load } from "../../src/config/Config.ts"
import * as Setting from "../../src/config/Setting.ts"
import { findProblems } from "../../src/emails/templates.ts"
import { isoWeek, openReportDays, settings as progressSettings, weekKey, weeklyProgress } from "../../src/jobs/WeeklyProgress.ts"

const loadWith = (env: Record<string, string>) =>
  Setting.read(progressSettings).pipe(Effect.provideService(ConfigProvider.ConfigProvider, ConfigProvider.fromEnv({ env })), Effect.exit)

describe("PROGRESS_DAY and PROGRESS_LOCAL_TIME", () => {
  it.effect("default to sunday and 08:00; a day name is read case-insensitively", () =>
    Effect.gen(function*() {
      const defaults = yield* loadWith({})
      assert.isTrue(Exit.isSuccess(defaults))
      if (Exit.isSuccess(defaults)) {
        assert.strictEqual(defaults.value.progressDay, "sunday")
        assert.strictEqual(defaults.value.progressLocalTime, 8 * 60)
      }
      for (const [raw, day] of [["Monday", "monday"], ["SATURDAY", "saturday"], [" wednesday ", "wednesday"]] as const) {
        const set = yield* loadWith({ PROGRESS_DAY: raw, PROGRESS_LOCAL_TIME: "07:30" })
        assert.isTrue(Exit.isSuccess(set) && set.value.progressDay === day && set.value.progressLocalTime === 7 * 60 + 30, raw)
      }
    }))

  it.effect("refuse anything else, naming the variable and not the value", () =>
    Effect.gen(function*() {
      for (const [variable, bad] of [["PROGRESS_DAY", "sundae"], ["PROGRESS_DAY", "7"], ["PROGRESS_DAY", "sun"], ["PROGRESS_LOCAL_TIME", "8am"], ["PROGRESS_LOCAL_TIME", "24:00"]] as const) {
        const exit = yield* loadWith({ [variable]: bad })
        assert.isTrue(Exit.isFailure(exit), `${variable}=${bad}`)
        const error = Exit.isFailure(exit) ? JSON.stringify(exit.cause) : ""
        assert.include(error, "InvalidConfig")
        assert.include(error, variable)
        assert.notInclude(error, `"${bad}"`)
      }
    }))
})

describe("the report's week key", () => {
  it("is the ISO 8601 week, across year ends with 52 and 53 weeks", () => {
    const cases: ReadonlyArray<readonly [string, string]> = [
      ["2026-03-14", "2026-W11"],
      ["2026-12-28", "2026-W53"],
      ["2027-01-02", "2026-W53"],
      ["2027-01-03", "2026-W53"],
      ["2027-01-04", "2027-W01"],
      ["2025-12-29", "2026-W01"],
      ["2021-01-03", "2020-W53"],
      ["2024-12-30", "2025-W01"],
      ["2026-01-01", "2026-W01"]
    ]
    for (const [date, week] of cases) assert.strictEqual(isoWeek(date), week, date)
  })

  it("names the ISO week of the report week's last day: Sunday 2027-01-03 reports 2026-12-27..2027-01-02 as 2026-W53", () => {
    assert.strictEqual(weekKey("2027-01-03"), "2026-W53")
    assert.strictEqual(weekKey("2026-03-15"), "2026-W11")
    // With PROGRESS_DAY=monday the report week is exactly the ISO week it names (Monday 9 to Sunday 15 March).
    assert.strictEqual(weekKey("2026-03-16"), "2026-W11")
    // Report days a week apart never share a key.
    for (let d = 0; d < 800; d++) {
      const day = new Date(Date.UTC(2026, 0, 1) + d * 86_400_000).toISOString().slice(0, 10)
      const next = new Date(Date.UTC(2026, 0, 8) + d * 86_400_000).toISOString().slice(0, 10)
      assert.notStrictEqual(weekKey(day), weekKey(next), day)
    }
  })

  it("is open for one report day at most, and only around PROGRESS_DAY", () => {
    const settings = { progressDay: "sunday", progressLocalTime: 8 * 60 } as const
    // Sunday 15 March 07:30 UTC: open from UTC+00:30 to UTC+10 (08:00-18:00 local on Sunday).
    assert.deepStrictEqual(openReportDays(new Date("2026-03-15T07:30:00Z"), settings), [{ day: "2026-03-15", week: "2026-W11" }])
    // Saturday 14 March 19:00 UTC: Sunday 08:00 in UTC+13 (Auckland in March).
    assert.deepStrictEqual(openReportDays(new Date("2026-03-14T19:00:00Z"), settings), [{ day: "2026-03-15", week: "2026-W11" }])
    // Wednesday: nowhere.
    assert.deepStrictEqual(openReportDays(new Date("2026-03-11T12:00:00Z"), settings), [])
    // Monday with PROGRESS_DAY=monday at 09:00 UTC.
    assert.deepStrictEqual(openReportDays(new Date("2026-03-16T09:00:00Z"), { progressDay: "monday", progressLocalTime: 8 * 60 }), [{ day: "2026-03-16", week: "2026-W11" }])
  })
})

describe("weekly progress preview samples", () => {
  it.effect("render every variant through the job's render path, clean, with the unsubscribe link", () =>
    Effect.gen(function*() {
      const config = yield* load("lenient").pipe(Effect.provideService(ConfigProvider.ConfigProvider, ConfigProvider.fromEnv({ env: {} })))
      const previews = yield* weeklyProgress.preview(config)
      assert.strictEqual(previews.length, 8)
      assert.strictEqual(new Set(previews.map((p) => p.email.subject + p.email.text)).size, 8)
      // The per-day chart in the samples that carry minutesByDay, and a sample without it.
      assert.include(previews.find((p) => p.name === "weekly-progress-up")?.email.text, "Minutes per day")
      assert.notInclude(previews.find((p) => p.name === "weekly-progress-no-chart")?.email.text, "Minutes per day")
      for (const p of previews) {
        assert.deepStrictEqual(findProblems(p.email), [], p.name)
        assert.include(p.email.text, "Unsubscribe from weekly progress reports:", p.name)
        assert.strictEqual(p.email.headers["List-Unsubscribe-Post"], "List-Unsubscribe=One-Click", p.name)
      }
    }))
})
