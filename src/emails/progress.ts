/**
 * The weekly progress report (CONTRACT 5.4): a short, readable summary of the learner's week (minutes of
 * conversation, sessions, active days, the language practised most) and how it compares with the week before.
 * The copy changes with the trend (up, down, the same, new this week) and reads correctly in the singular (one
 * minute, one conversation, one day), without a top language, and when no session recorded its duration.
 */
import { firstName, languageName } from "./fields.ts"
import { type EmailContent, link, type Paragraph, type Rendered, renderEmail } from "./html.ts"

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
  readonly appUrl: string
  readonly unsubscribeUrl: string
}

/**
 * How the week compares with the one before. "new": the week before had no minutes. "unknown": this week has
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

const plural = (n: number, one: string, many: string): string => `${n} ${n === 1 ? one : many}`

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

/** Renders the weekly progress report for one user. */
export const renderProgress = (data: ProgressData): Rendered => {
  const minutes = whole(data.minutes)
  const sessions = whole(data.sessions)
  const days = whole(data.activeDays)
  const previous = whole(data.previousMinutes)
  const change = data.changePercent === null ? 0 : Math.abs(Math.round(data.changePercent))
  const language = languageName(data.topLanguage)
  const trend = progressTrend(data)
  const range = weekRange(data.weekStart, data.weekEnd)

  const conversations = plural(sessions, "conversation", "conversations")
  const onDays = days === 1 ? "all on one day" : `on ${days} different days`
  const figures = minutes > 0
    ? `You practised for ${plural(minutes, "minute", "minutes")} in ${conversations}, ${onDays}.`
    : `You had ${conversations}, ${onDays}.`
  const trendLine: Record<ProgressTrend, string | undefined> = {
    up: `That's ${change}% more than the week before (${plural(previous, "minute", "minutes")}). Great momentum!`,
    down: `That's ${change}% less than the week before (${plural(previous, "minute", "minutes")}). Every ` +
      "conversation counts: one short one early this week keeps the habit going.",
    same: `That's the same as the week before (${plural(previous, "minute", "minutes")}). Nice and steady!`,
    new: "You had no practice time the week before, so this week is a fresh start. Keep it going!",
    unknown: undefined
  }
  const subjectTail: Record<ProgressTrend, string> = {
    up: `${plural(minutes, "minute", "minutes")}, up ${change}%`,
    down: `${plural(minutes, "minute", "minutes")} of conversation`,
    same: `${plural(minutes, "minute", "minutes")}, same as last week`,
    new: `${plural(minutes, "minute", "minutes")} of conversation`,
    unknown: conversations
  }

  const paragraphs: Array<Paragraph> = [
    [range === "" ? "Here's your week on Kaiwa." : `Here's your week on Kaiwa, ${range}.`],
    [figures]
  ]
  if (language !== null) paragraphs.push([`Your most practised language was ${language}.`])
  const line = trendLine[trend]
  if (line !== undefined) paragraphs.push([line])

  const content: EmailContent = {
    subject: `Your week on Kaiwa: ${subjectTail[trend]}`,
    preheader: `${minutes > 0 ? `${plural(minutes, "minute", "minutes")}, ` : ""}${conversations}, ` +
      `${plural(days, "active day", "active days")}: your week at a glance.`,
    greeting: `Hi ${firstName(data.displayName)},`,
    paragraphs,
    cta: link("Start this week's first conversation", data.appUrl),
    closing: ["See you in your next conversation,", "The Kaiwa team"],
    reason: "You're receiving this because weekly progress reports are turned on for your Kaiwa account.",
    unsubscribe: link("Unsubscribe from weekly progress reports", data.unsubscribeUrl),
    appUrl: data.appUrl
  }
  return renderEmail(content)
}
