/**
 * The founder sequence (contract 5.2): three short personal notes to people who signed up but have not had a
 * conversation yet. Day 1 welcomes and asks for one short conversation, Day 2 checks in and invites a reply,
 * Day 3 offers a 15-minute call. They are sent from the founder with Reply-To set, so the copy invites replies.
 */
import { cleanInline, firstName } from "./fields.ts"
import { type EmailContent, link, type Link, type Paragraph, type Rendered, renderEmail } from "./html.ts"

/**
 * What a founder email needs; `founderName` (FOUNDER_NAME) and the URLs come from configuration. The founder's
 * name is only ever this field, never a sender's display name ("Yuki at Kaiwa <yuki@...>" names a mailbox, not
 * a person); when it is empty the copy does without a name rather than invent one.
 */
export interface FounderData {
  readonly step: 1 | 2 | 3
  readonly displayName: string | null
  readonly appUrl: string
  readonly callUrl: string
  readonly unsubscribeUrl: string
  readonly preferencesUrl: string
  readonly founderName: string
}

interface Copy {
  readonly subject: string
  readonly preheader: string
  readonly paragraphs: ReadonlyArray<Paragraph>
  readonly cta: Link
  readonly closing: string
}

// Each step's copy; `founder` is the cleaned FOUNDER_NAME, undefined when there is none.
const COPY: Readonly<Record<FounderData["step"], (data: FounderData, founder: string | undefined) => Copy>> = {
  1: (data, founder) => ({
    subject: "Welcome to Kaiwa (and one small ask)",
    preheader: "One short conversation is all it takes to see how Kaiwa works.",
    paragraphs: [
      [founder === undefined ? "I started Kaiwa. Thank you for signing up!" : `I'm ${founder}, and I started Kaiwa. Thank you for signing up!`],
      [
        "Kaiwa is about one thing: getting you speaking. You practise by having real conversations with an " +
        "AI partner that adapts to your level, so you can make mistakes without anyone watching."
      ],
      [
        "One small ask: have one short conversation today. Five minutes is plenty, and you'll know right " +
        "away whether Kaiwa is for you."
      ],
      ["If anything gets in the way, just reply to this email. I read every reply."]
    ],
    cta: link("Have my first conversation", data.appUrl),
    closing: "Thanks,"
  }),
  2: (data) => ({
    subject: "Checking in: did something get in the way?",
    preheader: "Even a one-line reply helps.",
    paragraphs: [
      ["I wanted to check in and see how you're getting on with Kaiwa."],
      [
        "Was it finding the time, not knowing where to start, or something that didn't work? Hit reply and " +
        "tell me. Even one line helps me make Kaiwa better."
      ],
      [
        "And if you just haven't found the moment yet: a first conversation takes about five minutes, on " +
        "any topic you like."
      ]
    ],
    cta: link("Start a five-minute conversation", data.appUrl),
    closing: "Talk soon,"
  }),
  3: (data, founder) => ({
    subject: `Want to talk for 15 minutes? A call with ${founder ?? "Kaiwa's founder"}`,
    preheader: "No sales pitch: I'd just like to hear what you're hoping for.",
    paragraphs: [
      [
        "I'd love to hear what you're hoping to get out of practising a language, and to help you get " +
        "started with Kaiwa."
      ],
      [
        "If you have 15 minutes, ",
        link("book a call with me", data.callUrl),
        ". No sales pitch: I just want to learn what would make Kaiwa useful for you."
      ],
      [
        "Prefer to try it on your own? ",
        link("Open Kaiwa", data.appUrl),
        " and start a conversation whenever you're ready."
      ]
    ],
    cta: link("Book a 15-minute call", data.callUrl),
    closing: "All the best,"
  })
}

/** Renders step 1, 2 or 3 of the founder sequence for one user. */
export const renderFounder = (data: FounderData): Rendered => {
  const founder = cleanInline(data.founderName) || undefined
  const c = COPY[data.step](data, founder)
  const content: EmailContent = {
    subject: c.subject,
    preheader: c.preheader,
    greeting: `Hi ${firstName(data.displayName)},`,
    paragraphs: c.paragraphs,
    cta: c.cta,
    closing: founder === undefined ? [c.closing, "Founder, Kaiwa"] : [c.closing, founder, "Founder, Kaiwa"],
    reason: "You're receiving this because you recently signed up for Kaiwa.",
    unsubscribe: link("Unsubscribe from these emails", data.unsubscribeUrl),
    preferencesUrl: data.preferencesUrl,
    appUrl: data.appUrl
  }
  return renderEmail(content)
}
