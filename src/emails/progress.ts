/**
 * The weekly progress report: the learner's past week at a glance (minutes of conversation,
 * sessions and active days as large figures, the change against the week before, minutes per day as a small
 * chart), then the language practised most. The copy changes with the trend (up, down, the same, new after a
 * week without practice) and reads correctly in the singular (one minute, one conversation, one active day),
 * without a top language, and when no session recorded its duration.
 */
import { firstName, languageName } from "./fields.ts"
import { type BarChart, type Block, count, type EmailContent, link, type Rendered, renderEmail, type Tiles } from "./html.ts"

/** What a progress report needs: the week's figures as the selection computed them. */
export interface ProgressData {
  readonly displayName: string | null
  /** First and last local date of the report's week, `YYYY-MM-DD`. */
  readonly weekStart: string
  readonly weekEnd: string
  readonly minutes: number
  readonly sessions: number
  readonly activeDays: number
  /** The language practised most, as stored (a code such as "ja" or a name); null when there is none. */
  readonly topLanguage: string | null
  readonly previousMinutes: number
  /** Change in minutes against the week before, in percent; null when the week before had none. */
  readonly changePercent: number | null
  /**
   * Minutes on each of the report week's 7 local days, in order from `weekStart`; the chart is drawn only when
   * it is given with 7 entries and some minutes.
   */
  readonly minutesByDay?: ReadonlyArray<number> | undefined
  readonly appUrl: string
  readonly unsubscribeUrl: string
  readonly preferencesUrl: string
}

/**
 * How the week compares with the one before. "new": the week before had no minutes. "unknown": the past week has
 * no minutes (no session recorded a duration), so a comparison would only say "-100%", which is not what
 * happened; the report then says nothing about the trend.
 */
export type ProgressTrend = "up" | "down" | "same" | "new" | "unknown"

/** All trends, for previews and tests. */
export const progressTrends: ReadonlyArray<ProgressTrend> = ["up", "down", "same", "new", "unknown"]

/** The trend a report shows. */
export const progressTrend = (data: Pick<ProgressData, "minutes" | "changePercent">): ProgressTrend => {
  if (whole(data.minutes) === 0) return "unknown"
  if (data.changePercent === null || !Number.isFinite(data.changePercent)) return "new"
  const change = Math.round(data.changePercent)
  return change > 0 ? "up" : change < 0 ? "down" : "same"
}

// The figures come from SQL integers; a value that is not a finite number (which a correct caller never passes)
// prints as 0 rather than as "NaN".
const whole = (n: number): number => Number.isFinite(n) ? Math.max(0, Math.round(n)) : 0

const plural = (n: number, one: string, many: string): string => `${count(n)} ${n === 1 ? one : many}`

const MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
  "November", "December"] as const

const parseDate = (s: string): { readonly month: string; readonly day: number } | undefined => {
  const m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(s)
  const month = m === null ? undefined : MONTHS[Number(m[2]) - 1]
  return m === null || month === undefined ? undefined : { month, day: Number(m[3]) }
}

/** "March 8–14", "March 29 – April 4"; empty when a date is malformed. */
export const weekRange = (start: string, end: string): string => {
  const a = parseDate(start)
  const b = parseDate(end)
  if (a === undefined || b === undefined) return ""
  return a.month === b.month ? `${a.month} ${a.day}–${b.day}` : `${a.month} ${a.day} – ${b.month} ${b.day}`
}

const WEEKDAYS = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"] as const

/** The short names of the 7 days from `weekStart` ("Sun" ... "Sat"); empty when the date is malformed. */
export const weekdayLabels = (weekStart: string): ReadonlyArray<string> => {
  const first = /^\d{4}-\d{2}-\d{2}$/.test(weekStart) ? new Date(`${weekStart}T00:00:00Z`).getUTCDay() : Number.NaN
  return Number.isNaN(first) ? [] : Array.from({ length: 7 }, (_, i) => WEEKDAYS[(first + i) % 7]!)
}

const DAYS_IN_WEEK = 7

/** The per-day chart, when the data has 7 days with some minutes and the dates name the days. */
const chartOf = (data: ProgressData): BarChart | undefined => {
  const labels = weekdayLabels(data.weekStart)
  const days = data.minutesByDay
  if (days === undefined || days.length !== DAYS_IN_WEEK || labels.length !== DAYS_IN_WEEK) return undefined
  const values = days.map(whole)
  if (values.every((v) => v === 0)) return undefined
  return { _tag: "BarChart", title: "Minutes per day", rows: values.map((value, i) => ({ label: labels[i]!, value })) }
}

/** The figures a report shows, rounded as shown, and the words they make. */
const figuresOf = (data: ProgressData) => {
  const minutes = whole(data.minutes)
  const sessions = whole(data.sessions)
  const days = whole(data.activeDays)
  return {
    minutes,
    sessions,
    days,
    change: data.changePercent === null ? 0 : Math.abs(Math.round(data.changePercent)),
    minutesText: plural(minutes, "minute", "minutes"),
    previousText: plural(whole(data.previousMinutes), "minute", "minutes"),
    conversations: plural(sessions, "conversation", "conversations")
  }
}

type Figures = ReturnType<typeof figuresOf>

/** What each trend says: the note under the tiles, the closing remark, and the subject's tail. */
const trendWords = (f: Figures) => ({
  note: {
    up: `Up ${count(f.change)}% on the week before (${f.previousText})`,
    down: `Down ${count(f.change)}% on the week before (${f.previousText})`,
    same: `The same as the week before (${f.previousText})`,
    new: "Up from no practice the week before",
    unknown: undefined
  } satisfies Record<ProgressTrend, string | undefined>,
  remark: {
    up: "Great momentum! Keep it going.",
    down: "Every conversation counts: one short one early this week keeps the habit going.",
    same: "Nice and steady!",
    new: "A fresh start after a week off. Keep it going!",
    unknown: undefined
  } satisfies Record<ProgressTrend, string | undefined>,
  subjectTail: {
    up: `${f.minutesText}, up ${count(f.change)}%`,
    down: `${f.minutesText} of conversation`,
    same: `${f.minutesText}, same as the week before`,
    new: `${f.minutesText} of conversation`,
    unknown: f.conversations
  } satisfies Record<ProgressTrend, string>
})

/** The body: the tiles (no minutes tile when no minutes were recorded), the chart, the top language, the remark. */
const progressBlocks = (data: ProgressData, f: Figures, trend: ProgressTrend): Array<Block> => {
  const words = trendWords(f)
  const range = weekRange(data.weekStart, data.weekEnd)
  const tile = (n: number, one: string, many: string) => ({ value: count(n), label: n === 1 ? one : many })
  const tiles: Tiles = {
    _tag: "Tiles",
    title: range === "" ? undefined : range,
    tiles: [
      ...(trend === "unknown" ? [] : [tile(f.minutes, "minute", "minutes")]),
      tile(f.sessions, "conversation", "conversations"),
      tile(f.days, "active day", "active days")
    ],
    note: words.note[trend]
  }
  const chart = trend === "unknown" ? undefined : chartOf(data)
  const language = languageName(data.topLanguage)
  const remark = words.remark[trend]
  return [
    ["Here's how your past week on Kaiwa went."],
    tiles,
    ...(chart === undefined ? [] : [chart]),
    ...(language === null ? [] : [[`Your most practised language was ${language}.`]]),
    ...(remark === undefined ? [] : [[remark]])
  ]
}

/**
 * Renders the weekly progress report for one user. It leads with the past week's figures as large tiles (minutes,
 * conversations, active days) and the change against the week before, then the minutes of each day as a bar
 * chart when the data has them. Wording (decisions): the report is read on the report day, so the week it
 * covers is "the past week" or "last week" and the one before it "the week before"; "this week" only ever means
 * the week that is starting. With no minutes recorded ("unknown") the minutes tile and the comparison are left
 * out rather than showing 0 minutes and -100%.
 */
export const renderProgress = (data: ProgressData): Rendered => {
  const f = figuresOf(data)
  const trend = progressTrend(data)
  const content: EmailContent = {
    subject: `Last week on Kaiwa: ${trendWords(f).subjectTail[trend]}`,
    preheader: `${trend === "unknown" ? "" : `${f.minutesText}, `}${f.conversations}, ` +
      `${plural(f.days, "active day", "active days")}: your past week at a glance.`,
    greeting: `Hi ${firstName(data.displayName)},`,
    paragraphs: progressBlocks(data, f, trend),
    cta: link("Start this week's first conversation", data.appUrl),
    closing: ["See you in your next conversation,", "The Kaiwa team"],
    reason: "You're receiving this because weekly progress reports are turned on for your Kaiwa account.",
    unsubscribe: link("Unsubscribe from weekly progress reports", data.unsubscribeUrl),
    preferencesUrl: data.preferencesUrl,
    appUrl: data.appUrl
  }
  return renderEmail(content)
}
