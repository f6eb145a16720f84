/**
 * CONTRACT 5.4 in plain TypeScript, for checking the weekly progress selection against: local dates and times
 * from Intl (test/jobs/localTime.ts), never from the library's SQL. Only the date arithmetic on `YYYY-MM-DD`
 * strings and the ISO week are shared with the library (`addDays`, `weekKey`), and `isoWeek` is tested on its own.
 */
import { addDays, weekKey } from "../../src/jobs/WeeklyProgress.ts"
import { localTime, MINUTE } from "./localTime.ts"

/** A session as the oracle sees it. */
export interface OracleSession {
  readonly at: number
  readonly language: string
  readonly durationSeconds: number | null
}

/** What the oracle expects for one user at one instant, when the window is open and the week had practice. */
export interface OracleReport {
  readonly key: string
  readonly reportDay: string
  readonly data: {
    readonly week: string
    readonly weekStart: string
    readonly weekEnd: string
    readonly minutes: number
    readonly sessions: number
    readonly activeDays: number
    readonly topLanguage: string | null
    readonly previousMinutes: number
    readonly changePercent: number | null
    readonly minutesByDay: ReadonlyArray<number>
  }
}

const ISO_DAY: Record<string, number> = { monday: 1, tuesday: 2, wednesday: 3, thursday: 4, friday: 5, saturday: 6, sunday: 7 }

const isoDayOf = (date: string): number => {
  const d = new Date(`${date}T00:00:00Z`).getUTCDay()
  return d === 0 ? 7 : d
}

// PostgreSQL's round(numeric): half away from zero.
const roundHalfAway = (x: number): number => Math.sign(x) * Math.round(Math.abs(x))

/**
 * The local date the report window that is open at `at` opened on (the report day), or undefined when no window
 * is open: local time minus PROGRESS_LOCAL_TIME is less than 10 hours past midnight of a PROGRESS_DAY.
 */
export const openReportDay = (at: number, tz: string, progressDay = "sunday", localTimeMinutes = 8 * 60): string | undefined => {
  const lt = localTime(at, tz)
  let shifted = lt.minutes - localTimeMinutes
  let day = lt.date
  if (shifted < 0) {
    shifted += 24 * 60
    day = addDays(day, -1)
  }
  return shifted < 10 * 60 && isoDayOf(day) === ISO_DAY[progressDay] ? day : undefined
}

/** The report CONTRACT 5.4 expects at `at` for a user in `tz` with these sessions (before opt-ins, ledger, cap). */
export const expectedReport = (
  at: number,
  tz: string,
  sessions: ReadonlyArray<OracleSession>,
  progressDay = "sunday",
  localTimeMinutes = 8 * 60
): OracleReport | undefined => {
  const reportDay = openReportDay(at, tz, progressDay, localTimeMinutes)
  if (reportDay === undefined) return undefined
  const weekStart = addDays(reportDay, -7)
  const weekEnd = addDays(reportDay, -1)
  const previousStart = addDays(reportDay, -14)
  const previousEnd = addDays(reportDay, -8)
  const withDates = sessions.map((s) => ({ ...s, date: localTime(s.at, tz).date }))
  const week = withDates.filter((s) => s.date >= weekStart && s.date <= weekEnd)
  if (week.length === 0) return undefined
  const previous = withDates.filter((s) => s.date >= previousStart && s.date <= previousEnd)
  const seconds = (xs: ReadonlyArray<OracleSession>) => xs.reduce((sum, s) => sum + (s.durationSeconds ?? 0), 0)
  const minutes = Math.round(seconds(week) / 60)
  const previousMinutes = Math.round(seconds(previous) / 60)
  const byLanguage = new Map<string, { seconds: number; n: number }>()
  for (const s of week) {
    const l = byLanguage.get(s.language) ?? { seconds: 0, n: 0 }
    byLanguage.set(s.language, { seconds: l.seconds + (s.durationSeconds ?? 0), n: l.n + 1 })
  }
  // Most minutes (seconds), then most sessions, then the first in code-unit order.
  const topLanguage = [...byLanguage].sort(([la, a], [lb, b]) =>
    b.seconds - a.seconds || b.n - a.n || (la < lb ? -1 : la > lb ? 1 : 0))[0]?.[0] ?? null
  return {
    key: weekKey(reportDay),
    reportDay,
    data: {
      week: weekKey(reportDay),
      weekStart,
      weekEnd,
      minutes,
      sessions: week.length,
      activeDays: new Set(week.map((s) => s.date)).size,
      topLanguage,
      previousMinutes,
      changePercent: previousMinutes === 0 ? null : roundHalfAway(((minutes - previousMinutes) * 100) / previousMinutes),
      // Whole minutes of each local day of the week, Monday-or-whichever first: weekStart to weekEnd.
      minutesByDay: [0, 1, 2, 3, 4, 5, 6].map((k) => Math.round(seconds(week.filter((s) => s.date === addDays(weekStart, k))) / 60))
    }
  }
}

/**
 * The instant at which the wall clock in `tz` reads `date`, `minutes` after midnight (the first, when it reads it
 * twice). Throws for a time the zone skips: the tests only ask for times that exist.
 */
export const zonedInstant = (date: string, minutes: number, tz: string): number => {
  const target = Date.parse(`${date}T00:00:00Z`) + minutes * MINUTE
  const wall = (at: number) => {
    const lt = localTime(at, tz)
    return Date.parse(`${lt.date}T00:00:00Z`) + lt.minutes * MINUTE
  }
  // The offsets in effect around the target give every candidate instant.
  const candidates = [target - 36 * 60 * MINUTE, target, target + 36 * 60 * MINUTE].map((probe) => target - (wall(probe) - probe))
  const exact = candidates.filter((at) => wall(at) === target).sort((a, b) => a - b)
  if (exact.length === 0) throw new Error(`${date} +${minutes} min does not exist in ${tz}`)
  return exact[0]!
}
