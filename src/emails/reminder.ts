/**
 * The practice reminder (contract 5.1). Its subject and copy depend on how long ago the user last practised,
 * in five segments, because "keep your streak" and "we miss you" are different messages. Each segment reads
 * correctly with or without the language last practised.
 */
import { firstName, languageName } from "./fields.ts"
import { type EmailContent, link, type Rendered, renderEmail } from "./html.ts"

/** How long ago a user last practised, as the reminder copy sees it. */
export type ReminderSegment = "never" | "days1to2" | "days3to6" | "days7to29" | "days30plus"

/** All segments, in order of time since the last session. */
export const reminderSegments: ReadonlyArray<ReminderSegment> = [
  "never",
  "days1to2",
  "days3to6",
  "days7to29",
  "days30plus"
]

/**
 * The segment for a number of whole days since the last session (null: never practised). 0 and negative
 * values (clock skew) count as 1-2 days; a non-number (NaN), which a correct caller never passes, gets the
 * 30+ copy because that copy claims nothing precise about when the user last practised.
 */
export const reminderSegment = (daysSinceLastSession: number | null): ReminderSegment => {
  if (daysSinceLastSession === null) return "never"
  if (Number.isNaN(daysSinceLastSession)) return "days30plus"
  const days = Math.floor(daysSinceLastSession)
  if (days <= 2) return "days1to2"
  if (days <= 6) return "days3to6"
  if (days <= 29) return "days7to29"
  return "days30plus"
}

/** What a reminder needs; `language` is the language of the last session, as stored. */
export interface ReminderData {
  readonly displayName: string | null
  readonly language: string | null
  readonly daysSinceLastSession: number | null
  readonly appUrl: string
  readonly unsubscribeUrl: string
  readonly preferencesUrl: string
}

interface Copy {
  readonly subject: string
  readonly preheader: string
  readonly paragraphs: ReadonlyArray<string>
  readonly cta: string
}

// Each segment's copy for `lang`, a display name ("Japanese") or null; every entry spells out both forms so each
// reads naturally.
const COPY: Readonly<Record<ReminderSegment, (lang: string | null) => Copy>> = {
  never: (lang) => ({
    subject: lang ? `Your first ${lang} conversation is waiting` : "Your first conversation is waiting",
    preheader: "Five relaxed minutes with your AI conversation partner.",
    paragraphs: [
      lang
        ? `You signed up to practise ${lang} with Kaiwa, but you haven't had your first conversation yet.`
        : "You signed up for Kaiwa, but you haven't had your first conversation yet.",
      "It only takes five minutes: pick a topic, start talking, and your AI partner keeps the conversation " +
      "going at your pace. Nobody is grading you, and mistakes are part of how it works."
    ],
    cta: lang ? `Start your first ${lang} conversation` : "Start your first conversation"
  }),
  days1to2: (lang) => ({
    subject: lang
      ? `Keep your streak going: a quick ${lang} conversation today`
      : "Keep your streak going: a quick conversation today",
    preheader: "A few minutes today keeps the habit alive.",
    paragraphs: [
      lang
        ? `You practised ${lang} in the last couple of days. Nice work!`
        : "You practised in the last couple of days. Nice work!",
      "Keep your streak going: one short conversation today is enough to keep new words fresh. Small, " +
      "regular practice beats long, rare sessions."
    ],
    cta: "Keep my streak going"
  }),
  days3to6: (lang) => ({
    subject: lang ? `A few days without ${lang}? Pick up where you left off` : "A few days off? Pick up where you left off",
    preheader: "One short conversation gets you back into the rhythm.",
    paragraphs: [
      lang
        ? `It's been a few days since your last ${lang} conversation.`
        : "It's been a few days since your last conversation.",
      "That's completely normal, and the best time to get back is now, while everything is still fresh. " +
      "Five minutes of conversation is enough to get back into the rhythm."
    ],
    cta: "Pick up where I left off"
  }),
  days7to29: (lang) => ({
    subject: lang
      ? `Ready for a ${lang} conversation? It's been over a week`
      : "Ready for a conversation? It's been over a week",
    preheader: "No catching up needed: one short conversation and you're back.",
    paragraphs: [
      lang
        ? `It's been more than a week since your last ${lang} conversation.`
        : "It's been more than a week since your last conversation.",
      "Life gets busy. You don't need to make up for lost time: one short conversation today, about " +
      "anything you like, and you're back on track."
    ],
    cta: "Start a conversation"
  }),
  days30plus: (lang) => ({
    subject: lang
      ? `We miss you! Your ${lang} conversation partner is still here`
      : "We miss you! Your conversation partner is still here",
    preheader: "Whatever you remember is enough to start again.",
    paragraphs: [
      lang
        ? `It's been a while since your last ${lang} conversation, and we miss you.`
        : "It's been a while since your last conversation, and we miss you.",
      "Whatever you remember is enough to start. Your AI partner meets you at your level, so there's no " +
      "pressure to be where you left off."
    ],
    cta: "Come back for one conversation"
  })
}

/** Renders the practice reminder for one user. */
export const renderReminder = (data: ReminderData): Rendered => {
  const c = COPY[reminderSegment(data.daysSinceLastSession)](languageName(data.language))
  const content: EmailContent = {
    subject: c.subject,
    preheader: c.preheader,
    greeting: `Hi ${firstName(data.displayName)},`,
    paragraphs: c.paragraphs.map((p) => [p]),
    cta: link(c.cta, data.appUrl),
    closing: ["Happy practising,", "The Kaiwa team"],
    reason: "You're receiving this because practice reminders are turned on for your Kaiwa account.",
    unsubscribe: link("Unsubscribe from practice reminders", data.unsubscribeUrl),
    preferencesUrl: data.preferencesUrl,
    appUrl: data.appUrl
  }
  return renderEmail(content)
}
