/**
 * What every email says, read as its reader reads it (CONTRACT 5.3, issue 20 items 1 and 4): the HTML part's
 * visible text and the text part say the same words in the same order, for every sample and for renders over
 * hostile names and languages and every weekly variant; the text part wraps at 78 columns without breaking a
 * link; the footer links the preference center; and the HTML stays under Gmail's 102 KB clipping limit.
 * test/emails/browser.test.ts checks the same parity against Chromium's own `innerText`.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Option } from "effect"
import {
  escapeHtml,
  type ProgressData,
  type Rendered,
  reminderSegments,
  renderFounder,
  renderProgress,
  renderReminder,
  wrapLine
} from "../../src/emails/templates.ts"
import { verifyPreferencesToken } from "../../src/mail/Unsubscribe.ts"
import { allSamples, sampleSettings } from "../support/EmailSamples.ts"
import { firstDifference, hrefs, visibleText, words } from "../support/EmailText.ts"

const appUrl = "https://kaiwa.example/app"
const callUrl = "https://cal.example/kaiwa/15min?src=email&step=3"
const unsubscribeUrl = `https://kaiwa.example/unsubscribe?token=${"eyJ2IjoxLCJ1IjoidXNlcl8xIiwibCI6IndlZWtseS1wcm9ncmVzcyJ9"}.c2lnbmF0dXJl-_x`
const preferencesUrl = `https://kaiwa.example/preferences?token=${"eyJ2IjoxLCJ1IjoidXNlcl8xIiwicCI6InByZWZlcmVuY2VzIn0"}.c2lnbmF0dXJl-_y`

const names: ReadonlyArray<string | null> = [
  "Aiko Tanaka", null, "<script>alert(1)</script>", "\"Ann\" & <Bob>", "x".repeat(5_000), "O'Brien", "山田 太郎",
  "\u0000Zoë\u202E🎉 Smith", "Ann\r\nBcc: evil@example.com", "{{name}}"
]
const languages: ReadonlyArray<string | null> = ["ja", null, "<b>Klingon</b>", "y".repeat(5_000), "pt-BR"]

const weekly: ProgressData = {
  displayName: "Aiko Tanaka",
  weekStart: "2026-03-08",
  weekEnd: "2026-03-14",
  minutes: 45,
  sessions: 3,
  activeDays: 2,
  topLanguage: "ja",
  previousMinutes: 30,
  changePercent: 50,
  minutesByDay: [0, 15, 0, 20, 0, 0, 10],
  appUrl,
  unsubscribeUrl,
  preferencesUrl
}

const weeklyFigures: ReadonlyArray<Partial<ProgressData>> = [
  {},
  { minutes: 18, changePercent: -40 },
  { minutes: 30, changePercent: 0 },
  { previousMinutes: 0, changePercent: null },
  { minutes: 1, sessions: 1, activeDays: 1, previousMinutes: 1, changePercent: 0, minutesByDay: [0, 0, 1, 0, 0, 0, 0] },
  { minutes: 0, sessions: 2, changePercent: -100 },
  { minutesByDay: undefined },
  { minutesByDay: [1, 2, 3] },
  { weekStart: "nope" }
]

// Direct renders of every template: reminder segments and founder days for each name and language, and every
// weekly variant for each name.
const renders: ReadonlyArray<{ readonly label: string; readonly rendered: Rendered }> = names.flatMap((displayName) => [
  ...reminderSegments.flatMap((segment) =>
    languages.map((language) => ({
      label: `reminder ${segment} ${JSON.stringify(language)?.slice(0, 20)} ${JSON.stringify(displayName)?.slice(0, 20)}`,
      rendered: renderReminder({ displayName, language, daysSinceLastSession: { never: null, days1to2: 1, days3to6: 4, days7to29: 12, days30plus: 90 }[segment], appUrl, unsubscribeUrl, preferencesUrl })
    }))
  ),
  ...([1, 2, 3] as const).flatMap((step) =>
    ["Yuki", ""].map((founderName) => ({
      label: `founder day ${step} founder=${JSON.stringify(founderName)} ${JSON.stringify(displayName)?.slice(0, 20)}`,
      rendered: renderFounder({ step, displayName, appUrl, callUrl, unsubscribeUrl, preferencesUrl, founderName })
    }))
  ),
  ...weeklyFigures.flatMap((figures) =>
    languages.map((topLanguage) => ({
      label: `weekly ${JSON.stringify(figures)} ${JSON.stringify(topLanguage)?.slice(0, 20)} ${JSON.stringify(displayName)?.slice(0, 20)}`,
      rendered: renderProgress({ ...weekly, ...figures, displayName, topLanguage })
    }))
  )
])

const assertSameWords = (r: Rendered, label: string) => {
  const html = words(visibleText(r.html))
  const text = words(r.text)
  assert.isAbove(text.length, 20, label)
  assert.isUndefined(firstDifference(html, text), label)
}

// RFC 5322's recommended line length.
const TEXT_WIDTH = 78

// A line may pass 78 columns only when it is one URL (with the punctuation around it), which must not break.
const assertWrapped = (text: string, label: string) => {
  for (const line of text.split("\n")) {
    if (line.length > TEXT_WIDTH) assert.match(line, /^\S*:\/\/\S*$/, `${label}: a ${line.length}-column line: ${line.slice(0, 90)}`)
  }
}

describe("the HTML and text parts", () => {
  it("say the same words in the same order in every sample `preview` renders", async () => {
    const samples = allSamples()
    assert.isAtLeast(samples.length, 20)
    for (const s of samples) assertSameWords(s.email, s.name)
  })

  it("say the same words in the same order for every template over hostile names, languages and figures", () => {
    assert.isAbove(renders.length, 300)
    for (const r of renders) assertSameWords(r.rendered, r.label)
  })

  it("keep the spaces around a link in the middle of a sentence (Founder Day 3)", () => {
    const r = renderFounder({ step: 3, displayName: "Ann", appUrl, callUrl, unsubscribeUrl, preferencesUrl, founderName: "Yuki" })
    const shown = visibleText(r.html).replace(/\s+/g, " ")
    assert.include(shown, "If you have 15 minutes, book a call with me. No sales pitch")
    assert.include(shown, "Prefer to try it on your own? Open Kaiwa and start a conversation")
    assert.include(r.text.replace(/\s+/g, " "), `If you have 15 minutes, book a call with me (${callUrl}). No sales pitch`)
  })
})

describe("the text part", () => {
  it("wraps at 78 columns in every sample, with a URL too long for a line alone on its own line", async () => {
    for (const s of allSamples()) assertWrapped(s.email.text, s.name)
    for (const r of renders) assertWrapped(r.rendered.text, r.label)
  })

  it("carries every link of the HTML part whole, on one line", async () => {
    for (const s of allSamples()) {
      const lines = s.email.text.split("\n")
      for (const url of hrefs(s.email.html)) {
        assert.isTrue(lines.some((line) => line.includes(url)), `${s.name}: ${url}`)
      }
    }
  })

  it("never splits a word when wrapping, and puts a long URL on a line of its own", () => {
    const url = `https://kaiwa.example/unsubscribe?token=${"a".repeat(120)}`
    assert.deepStrictEqual(wrapLine(`Unsubscribe from practice reminders: ${url}`), ["Unsubscribe from practice reminders:", url])
    const long = "word ".repeat(40).trim()
    const lines = wrapLine(long)
    assert.isTrue(lines.every((l) => l.length <= TEXT_WIDTH))
    assert.strictEqual(lines.join(" "), long)
    assert.deepStrictEqual(wrapLine(""), [""])
  })
})

describe("every email's footer", () => {
  it("links the recipient's own preference center in both parts, beside the unsubscribe link", async () => {
    const secret = Effect.runSync(sampleSettings()).unsubscribeSecret
    for (const s of allSamples()) {
      const url = /Manage email preferences:\s+(\S+)/.exec(s.email.text)?.[1] ?? ""
      assert.match(url, /^http:\/\/localhost:8080\/preferences\?token=[A-Za-z0-9_-]+\.[A-Za-z0-9_-]{43}$/, s.name)
      const claim = verifyPreferencesToken(secret, new URL(url).searchParams.get("token") ?? "")
      assert.deepStrictEqual(Option.getOrUndefined(claim), { userId: "sample-user" }, s.name)
      assert.include(s.email.html, `<a href="${escapeHtml(url)}"`, s.name)
      assert.include(visibleText(s.email.html), "Manage email preferences", s.name)
    }
  })
})

describe("every email's size", () => {
  it("stays under Gmail's 102 KB clipping limit, HTML and visible text, with the longest inputs", async () => {
    const limit = 102 * 1024
    const all = [...(allSamples()).map((s) => ({ label: s.name, rendered: s.email })), ...renders]
    for (const r of all) {
      assert.isBelow(Buffer.byteLength(r.rendered.html, "utf8"), limit, r.label)
      assert.isBelow(Buffer.byteLength(visibleText(r.rendered.html), "utf8"), limit, r.label)
    }
  })
})

describe("the weekly report's wording", () => {
  const text = (overrides: Partial<ProgressData>) => {
    const r = renderProgress({ ...weekly, ...overrides })
    return `${r.subject}\n${r.text}\n${visibleText(r.html)}`
  }

  it("names the report's week as the past week, never as this week, in every variant", () => {
    for (const figures of weeklyFigures) {
      const all = text(figures)
      // "this week" is only ever the week that starts on the report day.
      const rest = all.replace(/Start this week's first conversation/g, "").replace(/early this week keeps/g, "")
      assert.notMatch(rest, /this week/i, JSON.stringify(figures))
      assert.match(all, /past week|last week/i, JSON.stringify(figures))
    }
    assert.include(renderProgress({ ...weekly, previousMinutes: 0, changePercent: null }).subject, "Last week on Kaiwa")
  })

  it("gets the singular right and never says '1 conversation, all on one day'", () => {
    const one = text({ minutes: 1, sessions: 1, activeDays: 1, previousMinutes: 0, changePercent: null })
    assert.notInclude(one, "all on one day")
    assert.notMatch(one, /\b1 (minutes|conversations|active days)\b/)
    for (const phrase of ["1 minute", "1 conversation", "1 active day"]) assert.include(one, phrase)
    const many = text({ minutes: 2, sessions: 2, activeDays: 2 })
    for (const phrase of ["2 minutes", "2 conversations", "2 active days"]) assert.include(many, phrase)
  })
})
