/**
 * `Selection.keys`: a job that declares the keys a tick can plan must list every key its candidates can have at
 * that instant. With one declared key the library's ledger check compares with that key instead of each
 * candidate's own (src/ledger/internal/planning.ts, `sameKey`), so a wrong declaration would hold a learner back
 * or plan them twice. Checked here for the two jobs that declare keys, the reminders and the weekly report, with a
 * learner in every time zone PostgreSQL knows (and one with no zone, one with an unknown zone), at every half hour
 * of days that cross daylight-saving transitions: each learner inside the job's window has a declared key.
 */
import { assert, describe, layer } from "@effect/vitest"
import { Effect, References } from "effect"
import { SqlClient } from "effect/sql"
import { JobsConfig } from "../../src/config/Config.ts"
import { AppTables } from "../../src/database/App.ts"
import type { Selection } from "../../src/ledger/Ledger.ts"
import * as PracticeReminders from "../../src/jobs/PracticeReminders.ts"
import * as WeeklyProgress from "../../src/jobs/WeeklyProgress.ts"
import { insertUsers, testLayer } from "../support/TestDb.ts"
import { DAY, MINUTE } from "./localTime.ts"

const HALF_HOUR = 30 * MINUTE

/** The keys of the learners inside the job's window (the rule named `windowRule`) at one instant. */
const keysInWindow = (selection: Selection, windowRule: string) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const c = selection.candidates
    if (!("select" in c)) return assert.fail("the job's candidates are not named rules")
    const rule = c.rules.find((r) => r.reason === windowRule)
    assert.isDefined(rule, `no rule ${windowRule}`)
    const rows = yield* sql<{ dedupe_key: string; n: number }>`
      WITH ${selection.with!}
      SELECT x.dedupe_key, count(*)::int AS n FROM (SELECT ${c.select} FROM ${c.from} WHERE ${rule!.holds}) x
      GROUP BY x.dedupe_key`
    return rows
  })

/** Every instant from `from`, each half hour, for `days` days. */
const instants = (from: string, days: number) =>
  Array.from({ length: (days * DAY) / HALF_HOUR }, (_, i) => new Date(Date.parse(from) + i * HALF_HOUR))

/** A learner in every zone PostgreSQL knows, one with no zone and one with a zone it does not know. */
const everyZone = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const zones = yield* sql<{ name: string }>`SELECT name FROM pg_timezone_names ORDER BY name`
  yield* insertUsers([
    ...zones.map((z, i) => ({ id: `zone-${i}`, createdAt: new Date("2025-01-01T00:00:00Z"), timezone: z.name })),
    { id: "no-zone", createdAt: new Date("2025-01-01T00:00:00Z"), timezone: null },
    { id: "unknown-zone", createdAt: new Date("2025-01-01T00:00:00Z"), timezone: "Not/AZone" }
  ])
  return zones.length
})

interface Tally {
  ticks: number
  singleKeyTicks: number
  learnersChecked: number
  ticksWithTwoKeysUsed: number
}

const check = (tally: Tally, declared: ReadonlyArray<string>, rows: ReadonlyArray<{ dedupe_key: string; n: number }>, at: Date) => {
  tally.ticks += 1
  if (declared.length === 1) tally.singleKeyTicks += 1
  if (rows.length > 1) tally.ticksWithTwoKeysUsed += 1
  for (const row of rows) {
    assert.include(declared, row.dedupe_key, `${at.toISOString()}: ${row.n} learners in the window with key ${row.dedupe_key}, declared ${declared.join(", ")}`)
    tally.learnersChecked += row.n
  }
}

describe("declared keys cover every candidate", () => {
  layer(testLayer, { excludeTestServices: true })((it) => {
    it.effect("the reminders and the weekly report, a learner in every zone, each half hour across DST changes", () =>
      Effect.gen(function*() {
        const zones = yield* everyZone
        assert.isAbove(zones, 300)
        const app = yield* AppTables
        const config = yield* JobsConfig
        const sql = yield* SqlClient.SqlClient

        const reminders: Tally = { ticks: 0, singleKeyTicks: 0, learnersChecked: 0, ticksWithTwoKeysUsed: 0 }
        // US spring forward (2026-03-08), and EU fall back (2026-10-25)
        for (const asOf of [...instants("2026-03-07T00:00:00Z", 2), ...instants("2026-10-24T12:00:00Z", 2)]) {
          const settings = { reminderLocalTime: 9 * 60 }
          const selection = PracticeReminders.selection({ sql, app, asOf, config, settings })
          const declared = PracticeReminders.openWindowDays(asOf, settings.reminderLocalTime)
          assert.deepStrictEqual(selection.keys, declared)
          check(reminders, declared, yield* keysInWindow(selection, "outside_local_window"), asOf)
        }

        const weekly: Tally = { ticks: 0, singleKeyTicks: 0, learnersChecked: 0, ticksWithTwoKeysUsed: 0 }
        // The report's Sunday and the days around it, the EU spring forward (2026-03-29), and a Monday report.
        const weeklyRuns = [
          ...instants("2026-03-27T12:00:00Z", 3).map((asOf) => ({ asOf, settings: { progressDay: "sunday", progressLocalTime: 8 * 60 } as const })),
          ...instants("2026-03-15T12:00:00Z", 2).map((asOf) => ({ asOf, settings: { progressDay: "monday", progressLocalTime: 23 * 60 } as const }))
        ]
        for (const { asOf, settings } of weeklyRuns) {
          const selection = WeeklyProgress.selection({ sql, app, asOf, config, settings })
          const declared = selection.keys ?? []
          if (declared.length === 0) continue
          check(weekly, declared, yield* keysInWindow(selection, "not_report_time"), asOf)
        }

        // Not vacuous: many ticks with one key, learners in the window at them, and some ticks whose window
        // learners had two different keys (the reminders' local dates either side of midnight).
        assert.isAbove(reminders.singleKeyTicks, 50)
        assert.isAbove(reminders.learnersChecked, 10_000)
        assert.isAbove(reminders.ticksWithTwoKeysUsed, 10)
        assert.isAbove(weekly.singleKeyTicks, 20)
        assert.isAbove(weekly.learnersChecked, 1_000)
      }).pipe(Effect.provideService(References.MinimumLogLevel, "Error")), 120_000)
  })
})
