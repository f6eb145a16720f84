/**
 * The weekly progress report template (CONTRACT 5.3, 5.4): every trend (up, down, the same, new this week, no
 * minutes recorded), singular forms, no top language, and hostile names and languages, checked for escaping,
 * the unsubscribe link and template debris (`findProblems`).
 */
import { assert, describe, it } from "@effect/vitest"
import {
  escapeHtml,
  findProblems,
  type ProgressData,
  type ProgressTrend,
  progressTrend,
  progressTrends,
  renderProgress,
  weekRange
} from "../../src/emails/templates.ts"

const appUrl = "https://kaiwa.example/app"
// A token's shape (base64url with a dot), not a real one: the template only prints the URL it is given.
const unsubscribe = "https://kaiwa.example/unsubscribe?token=eyJ1IjoidXNlcl8xIiwibCI6IndlZWtseS1wcm9ncmVzcyJ9.c2lnbmF0dXJl-_x"
const preferences = "https://kaiwa.example/preferences?token=eyJ2IjoxLCJ1IjoidXNlcl8xIiwicCI6InByZWZlcmVuY2VzIn0.c2lnbmF0dXJl-_y"

const base: ProgressData = {
  displayName: "Aiko Tanaka",
  weekStart: "2026-03-08",
  weekEnd: "2026-03-14",
  minutes: 45,
  sessions: 3,
  activeDays: 2,
  topLanguage: "ja",
  previousMinutes: 30,
  changePercent: 50,
  appUrl,
  unsubscribeUrl: unsubscribe,
  preferencesUrl: preferences
}

// The figures that give each trend.
const trendData: Record<ProgressTrend, Partial<ProgressData>> = {
  up: { minutes: 45, previousMinutes: 30, changePercent: 50 },
  down: { minutes: 18, previousMinutes: 30, changePercent: -40 },
  same: { minutes: 30, previousMinutes: 30, changePercent: 0 },
  new: { minutes: 30, previousMinutes: 0, changePercent: null },
  unknown: { minutes: 0, previousMinutes: 25, changePercent: -100 }
}

const render = (overrides: Partial<ProgressData> = {}) => renderProgress({ ...base, ...overrides })

const hostileNames: ReadonlyArray<string | null> = [
  "<script>alert(1)</script>",
  "\"Ann\" & <Bob>",
  "x".repeat(5_000),
  null,
  "",
  "undefined",
  "null",
  "NaN",
  "{{name}}",
  "${name}",
  "Ann\r\nBcc: evil@example.com",
  "\u0000Zoë\u202E🎉 Smith",
  "O'Brien"
]

const hostileLanguages: ReadonlyArray<string | null> = [
  "ja", null, "Spanish", "<b>Klingon</b>", "ja\r\nBcc: evil@example.com", "null", "nan", "undefined",
  "{{language}}", "", "y".repeat(5_000)
]

// Every trend, in the singular and the plural, for every hostile name and language.
const allVariants = progressTrends.flatMap((trend) =>
  [{ sessions: 1, activeDays: 1 }, { sessions: 4, activeDays: 3 }].flatMap((counts) =>
    hostileNames.flatMap((displayName) =>
      hostileLanguages.map((topLanguage) => ({
        label: `${trend} ${JSON.stringify(counts)} name=${JSON.stringify(displayName)?.slice(0, 20)} ` +
          `language=${JSON.stringify(topLanguage)?.slice(0, 20)}`,
        rendered: render({ ...trendData[trend], ...counts, displayName, topLanguage })
      }))
    )
  )
)

describe("weekly progress report over hostile input", () => {
  it("never produces a problem, for any trend, count, name or language", () => {
    assert.isAbove(allVariants.length, 1000)
    for (const v of allVariants) assert.deepStrictEqual(findProblems(v.rendered), [], v.label)
  })

  it("keeps subjects on one line, without control characters", () => {
    for (const v of allVariants) {
      assert.notMatch(v.rendered.subject, /[\p{Cc}\p{Cf}\u2028\u2029]/u, v.label)
      assert.notInclude(v.rendered.subject, "Bcc:", v.label)
    }
  })

  it("escapes a script tag in a name and markup in a language", () => {
    const r = render({ displayName: "<script>alert(1)</script>", topLanguage: "<b>Klingon</b>" })
    assert.notInclude(r.html, "<script")
    assert.notInclude(r.html, "<b>")
    assert.include(r.html, "Hi &lt;script&gt;alert(1)&lt;/script&gt;,")
    assert.include(r.html, "Your most practised language was &lt;b&gt;Klingon&lt;/b&gt;.")
    assert.include(r.text, "Hi <script>alert(1)</script>,")
    assert.include(render({ displayName: "\"Ann\" & <Bob>" }).html, "Hi &quot;Ann&quot;,")
  })

  it("puts the unsubscribe link and the app URL in both parts of every variant", () => {
    for (const v of allVariants) {
      assert.include(v.rendered.text, `Unsubscribe from weekly progress reports:\n${unsubscribe}`, v.label)
      assert.include(v.rendered.text, `Manage email preferences:\n${preferences}`, v.label)
      assert.include(v.rendered.html, `href="${escapeHtml(preferences)}"`, v.label)
      assert.include(v.rendered.html, `href="${escapeHtml(unsubscribe)}"`, v.label)
      assert.include(v.rendered.html, `href="${escapeHtml(appUrl)}"`, v.label)
    }
  })

  it("prints 0 rather than NaN for a figure that is not a number", () => {
    const r = render({ minutes: Number.NaN, sessions: Number.NaN, activeDays: Number.POSITIVE_INFINITY, changePercent: Number.NaN })
    assert.deepStrictEqual(findProblems(r), [])
    assert.include(r.text, "0 conversations\n0 active days\n")
  })
})

describe("weekly progress report copy", () => {
  it("classifies the trend from the change and the minutes", () => {
    for (const trend of progressTrends) assert.strictEqual(progressTrend({ ...base, ...trendData[trend] }), trend, trend)
  })

  it("says up, down, the same or new, with the figures, in subject and body", () => {
    const up = render(trendData.up)
    assert.strictEqual(up.subject, "Last week on Kaiwa: 45 minutes, up 50%")
    assert.include(up.text, "45 minutes\n3 conversations\n2 active days\nUp 50% on the week before (30 minutes)\n")
    const down = render(trendData.down)
    assert.strictEqual(down.subject, "Last week on Kaiwa: 18 minutes of conversation")
    assert.include(down.text, "Down 40% on the week before (30 minutes)")
    const same = render(trendData.same)
    assert.strictEqual(same.subject, "Last week on Kaiwa: 30 minutes, same as the week before")
    assert.include(same.text, "The same as the week before (30 minutes)")
    const fresh = render(trendData.new)
    assert.strictEqual(fresh.subject, "Last week on Kaiwa: 30 minutes of conversation")
    assert.include(fresh.text, "Up from no practice the week before")
    assert.include(fresh.text, "A fresh start after a week off.")
    assert.notInclude(fresh.text, "%")
    assert.strictEqual(new Set(progressTrends.map((t) => render(trendData[t]).text)).size, progressTrends.length)
  })

  it("says nothing about the trend when no session recorded a duration", () => {
    const r = render({ ...trendData.unknown, sessions: 2, activeDays: 2 })
    assert.strictEqual(r.subject, "Last week on Kaiwa: 2 conversations")
    assert.include(r.text, "on Kaiwa went.\n\nMarch 8–14\n2 conversations\n2 active days\n")
    assert.notInclude(r.text, "minute")
    assert.notInclude(r.text, "%")
    assert.notInclude(r.text, "week before")
    assert.notInclude(r.text, "Minutes per day")
  })

  it("uses singular forms for one minute, one conversation, one day", () => {
    const r = render({ minutes: 1, sessions: 1, activeDays: 1, previousMinutes: 1, changePercent: 0 })
    assert.include(r.text, "1 minute\n1 conversation\n1 active day\nThe same as the week before (1 minute)\n")
    assert.strictEqual(r.subject, "Last week on Kaiwa: 1 minute, same as the week before")
    assert.notMatch(r.text, /\b1 (minutes|conversations|days|active days)\b/)
    assert.notInclude(r.text, "all on one day")
    const one = render({ ...trendData.unknown, sessions: 1, activeDays: 1 })
    assert.strictEqual(one.subject, "Last week on Kaiwa: 1 conversation")
    assert.include(one.text, "1 conversation\n1 active day\n")
  })

  it("names the top language by its display name, and leaves the line out without one", () => {
    assert.include(render({ topLanguage: "pt-BR" }).text, "Your most practised language was Portuguese.")
    for (const topLanguage of [null, "", "null", "undefined", "nan"]) {
      const r = render({ topLanguage })
      assert.notInclude(r.text, "most practised language", String(topLanguage))
      assert.deepStrictEqual(findProblems(r), [], String(topLanguage))
    }
  })

  it("shows the week's dates, across a month's end too, and nothing when they are malformed", () => {
    assert.include(render().text, "Here's how your past week on Kaiwa went.\n\nMarch 8–14\n45 minutes\n")
    assert.strictEqual(weekRange("2026-03-29", "2026-04-04"), "March 29 – April 4")
    assert.strictEqual(weekRange("2026-12-27", "2027-01-02"), "December 27 – January 2")
    assert.include(render({ weekStart: "nope" }).text, "Here's how your past week on Kaiwa went.\n\n45 minutes\n")
  })

  it("greets by first name, falling back to 'there'", () => {
    assert.isTrue(render().text.startsWith("Hi Aiko,\n"))
    assert.isTrue(render({ displayName: null }).text.startsWith("Hi there,\n"))
  })
})

describe("weekly progress report figures", () => {
  const days = [0, 15, 0, 20, 0, 0, 10]

  it("leads with the figures as tiles: large values with their labels, before the rest of the copy", () => {
    const r = render({ minutesByDay: days })
    const tiles = Array.from(r.html.matchAll(/<td class="k-tile"[^>]*>([\s\S]*?)<\/td>/g), (m) => m[1] ?? "")
    assert.strictEqual(tiles.length, 3)
    for (const [i, [value, label]] of ([["45", "minutes"], ["3", "conversations"], ["2", "active days"]] as const).entries()) {
      assert.match(tiles[i] ?? "", new RegExp(`font-size:30px[^>]*>${value}</div>`), label)
      assert.include(tiles[i], `>${label}</div>`)
    }
    assert.isBelow(r.html.indexOf("k-tile"), r.html.indexOf("Your most practised language"))
  })

  it("draws minutes per day as a table chart, one row per day of the week in order, only when given", () => {
    const r = render({ minutesByDay: days })
    assert.include(r.text, "Minutes per day\nSun  0\nMon  ")
    const rows = r.text.slice(r.text.indexOf("Minutes per day")).split("\n").slice(1, 8)
    assert.deepStrictEqual(rows.map((l) => l.slice(0, 3)), ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"])
    assert.deepStrictEqual(rows.map((l) => Number(l.split(" ").at(-1))), days)
    // The longest bar is the day with the most minutes; no image, bars are table cells with widths.
    assert.strictEqual(rows[3], `Wed  ${"#".repeat(30)} 20`)
    assert.notInclude(r.html, "<img")
    assert.include(r.html, "<table role=\"presentation\" width=\"100%\" cellpadding=\"0\" cellspacing=\"0\" border=\"0\"><tr><td class=\"k-bar\"")
    assert.strictEqual(r.html.match(/class="k-track"/g)?.length, 7)
    for (const without of [undefined, [1, 2, 3], [0, 0, 0, 0, 0, 0, 0]]) {
      const plain = render({ minutesByDay: without })
      assert.notInclude(plain.text, "Minutes per day", JSON.stringify(without))
      assert.notInclude(plain.html, "class=\"k-track\"", JSON.stringify(without))
    }
    assert.include(render({ weekStart: "2026-03-09", minutesByDay: days }).text, "Minutes per day\nMon  0\n")
  })

  it("writes large figures with thousands separators, in the tiles, the chart, the note and the subject", () => {
    const r = render({ minutes: 12_345, sessions: 1_234, previousMinutes: 1_000, changePercent: 1_135, minutesByDay: [9_999, 0, 0, 0, 0, 0, 2_346] })
    assert.strictEqual(r.subject, "Last week on Kaiwa: 12,345 minutes, up 1,135%")
    assert.include(r.text, "12,345 minutes\n1,234 conversations\n2 active days\nUp 1,135% on the week before (1,000 minutes)\n")
    assert.include(r.text, `Sun  ${"#".repeat(30)} 9,999\n`)
  })

  it("declares both colour schemes, so clients that darken emails use its own dark colours", () => {
    const r = render()
    assert.include(r.html, "<meta name=\"color-scheme\" content=\"light dark\">")
    assert.include(r.html, "@media (prefers-color-scheme: dark)")
  })
})
