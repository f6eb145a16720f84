import { assert, describe, it } from "@effect/vitest"
import { ConfigProvider, Effect, Option, Redacted } from "effect"
import {
  escapeHtml,
  findProblems,
  firstName,
  type FounderData,
  languageName,
  type Rendered,
  type ReminderSegment,
  reminderSegment,
  reminderSegments,
  renderFounder,
  renderReminder
} from "../../src/emails/templates.ts"
import { JobsConfig } from "../../src/config/Config.ts"
import { registry } from "../../src/jobs/index.ts"
import { allSamples } from "../support/EmailSamples.ts"
import { makePreferencesToken, makeToken, preferencesUrl, unsubscribeUrl, verifyToken } from "../../src/mail/Unsubscribe.ts"

const appUrl = "https://kaiwa.example/app"
const callUrl = "https://cal.example/kaiwa/15min?src=email&step=3"
const unsubscribe = unsubscribeUrl(
  "https://kaiwa.example/",
  makeToken(Redacted.make("templates-test-secret"), { userId: "user_1", list: "practice-reminders" })
)
const preferences = preferencesUrl(
  "https://kaiwa.example/",
  makePreferencesToken(Redacted.make("templates-test-secret"), { userId: "user_1" })
)

// Days since the last session that land in each segment.
const daysFor: Record<ReminderSegment, number | null> = {
  never: null,
  days1to2: 1,
  days3to6: 4,
  days7to29: 12,
  days30plus: 90
}

const hostileNames: ReadonlyArray<string | null> = [
  "<script>alert(1)</script>",
  "\"Ann\" & <Bob>",
  "x".repeat(5_000),
  null,
  "",
  "   ",
  "\u0000Zoë\u202E🎉 Smith",
  "undefined",
  "null",
  "{{name}}",
  "NaN",
  "Nan",
  "NULL Smith",
  "Ann\r\nBcc: evil@example.com",
  "\u200B\u2066 \uFEFF",
  "'; DROP TABLE users; --",
  "${name}",
  "[object Object]",
  "🎉".repeat(100),
  "\uD83D lone surrogate",
  "山田 太郎",
  "O'Brien"
]

const hostileLanguages: ReadonlyArray<string | null> = [
  "ja",
  null,
  "Spanish",
  "<b>Klingon</b>",
  "ja\r\nBcc: evil@example.com",
  "null",
  "nan",
  "undefined",
  "{{language}}",
  "\u202Eja",
  "y".repeat(5_000),
  ""
]

interface Variant {
  readonly label: string
  readonly rendered: Rendered
  readonly unsubscribeUrl: string
}

const founder = (step: 1 | 2 | 3, displayName: string | null, overrides: Partial<FounderData> = {}): Rendered =>
  renderFounder({ step, displayName, appUrl, callUrl, unsubscribeUrl: unsubscribe, preferencesUrl: preferences, founderName: "Yuki", ...overrides })

const reminder = (segment: ReminderSegment, language: string | null, displayName: string | null): Rendered =>
  renderReminder({ displayName, language, daysSinceLastSession: daysFor[segment], appUrl, unsubscribeUrl: unsubscribe, preferencesUrl: preferences })

// Every template variant for one display name: 5 segments x each hostile language, then founder days 1-3.
const variantsFor = (displayName: string | null): ReadonlyArray<Variant> => [
  ...reminderSegments.flatMap((segment) =>
    hostileLanguages.map((language) => ({
      label: `reminder ${segment} language=${JSON.stringify(language)?.slice(0, 30)}`,
      rendered: reminder(segment, language, displayName),
      unsubscribeUrl: unsubscribe
    }))
  ),
  ...([1, 2, 3] as const).map((step) => ({
    label: `founder day ${step}`,
    rendered: founder(step, displayName),
    unsubscribeUrl: unsubscribe
  }))
]

const allVariants: ReadonlyArray<Variant & { readonly name: string | null }> = hostileNames.flatMap((name) =>
  variantsFor(name).map((v) => ({ ...v, name, label: `${v.label} name=${JSON.stringify(name)?.slice(0, 30)}` }))
)

describe("templates over hostile input", () => {
  it("never produce a problem, for any variant, name or language", () => {
    for (const v of allVariants) {
      assert.deepStrictEqual(findProblems(v.rendered), [], v.label)
    }
  })

  it("keep subjects on one line, without control characters", () => {
    for (const v of allVariants) {
      assert.notMatch(v.rendered.subject, /[\p{Cc}\p{Cf}\u2028\u2029]/u, v.label)
      assert.strictEqual(v.rendered.subject, v.rendered.subject.trim(), v.label)
    }
  })

  it("keep the text part free of control characters other than line breaks", () => {
    for (const v of allVariants) {
      assert.notMatch(v.rendered.text, /(?![\n])[\p{Cc}\p{Cf}\p{Cs}]/u, v.label)
    }
  })

  it("escape a script tag in a name instead of emitting it", () => {
    for (const v of variantsFor("<script>alert(1)</script>")) {
      assert.notInclude(v.rendered.html, "<script", v.label)
      assert.include(v.rendered.html, "Hi &lt;script&gt;alert(1)&lt;/script&gt;,", v.label)
      assert.include(v.rendered.text, "Hi <script>alert(1)</script>,", v.label)
    }
  })

  it("escape quotes and ampersands in a name", () => {
    for (const v of variantsFor("\"Ann\" & <Bob>")) {
      assert.include(v.rendered.html, "Hi &quot;Ann&quot;,", v.label)
      assert.notInclude(v.rendered.html, "\"Ann\"", v.label)
    }
    assert.include(founder(1, "Tom's").html, "Hi Tom&#39;s,")
  })

  it("escape a hostile language in the HTML part and keep it on one line everywhere", () => {
    const r = reminder("days3to6", "<b>Klingon</b>", "Ann")
    assert.include(r.html, "&lt;b&gt;Klingon&lt;/b&gt;")
    assert.notInclude(r.html, "<b>")
    assert.include(r.subject, "<b>Klingon</b>")
    const injected = reminder("days3to6", "ja\r\nBcc: evil@example.com", "Ann")
    assert.strictEqual(injected.subject, "A few days without ja Bcc: evil@example.com? Pick up where you left off")
  })

  it("cap a 5,000-character name at 40 characters", () => {
    for (const v of variantsFor("x".repeat(5_000))) {
      assert.include(v.rendered.html, `Hi ${"x".repeat(40)},`, v.label)
      assert.notInclude(v.rendered.html, "x".repeat(41), v.label)
      assert.notInclude(v.rendered.text, "x".repeat(41), v.label)
    }
  })

  it("cap a long language at 40 characters", () => {
    const r = reminder("days7to29", "y".repeat(5_000), "Ann")
    assert.include(r.subject, "y".repeat(40))
    assert.notInclude(r.html, "y".repeat(41))
  })

  it("put the unsubscribe URL and the app URL in both parts of every email", () => {
    for (const v of allVariants) {
      assert.include(v.rendered.text, v.unsubscribeUrl, v.label)
      assert.include(v.rendered.html, `href="${escapeHtml(v.unsubscribeUrl)}"`, v.label)
      assert.include(v.rendered.text, appUrl, v.label)
      assert.include(v.rendered.html, `href="${escapeHtml(appUrl)}"`, v.label)
    }
  })

  it("make the unsubscribe link visible in the HTML part", () => {
    for (const v of variantsFor("Ann")) {
      assert.match(v.rendered.html, /<a href="[^"]*\/unsubscribe\?token=[^"]*"[^>]*>Unsubscribe from [^<]+<\/a>/, v.label)
    }
  })

  it("produce a complete HTML document and a text part with a greeting", () => {
    const variants = [
      ...reminderSegments.flatMap((segment) => [reminder(segment, "ja", "Aiko Tanaka"), reminder(segment, null, "Aiko")]),
      ...([1, 2, 3] as const).map((step) => founder(step, "Aiko Tanaka"))
    ].map((rendered, i) => ({ label: String(i), rendered }))
    for (const v of variants) {
      assert.isTrue(v.rendered.html.startsWith("<!doctype html>"), v.label)
      assert.include(v.rendered.html, "<meta charset=\"utf-8\">", v.label)
      assert.include(v.rendered.html, "</html>", v.label)
      assert.isTrue(v.rendered.text.startsWith("Hi Aiko,\n"), v.label)
      assert.notInclude(v.rendered.text, "<", v.label)
    }
  })
})

describe("reminder copy", () => {
  it("has a different subject and body for each of the five segments, with and without a language", () => {
    for (const language of ["ja", null]) {
      const rendered = reminderSegments.map((segment) => reminder(segment, language, "Ann"))
      assert.strictEqual(new Set(rendered.map((r) => r.subject)).size, 5, String(language))
      assert.strictEqual(new Set(rendered.map((r) => r.text)).size, 5, String(language))
    }
  })

  it("speaks to each segment as the contract describes", () => {
    assert.include(reminder("never", null, "Ann").subject, "first conversation")
    assert.include(reminder("days1to2", null, "Ann").subject.toLowerCase(), "keep your streak")
    assert.include(reminder("days30plus", null, "Ann").subject.toLowerCase(), "we miss you")
  })

  it("names the language last practised, as a human name, when there is one", () => {
    for (const segment of reminderSegments) {
      const withLanguage = reminder(segment, "ja", "Ann")
      assert.include(withLanguage.subject, "Japanese", segment)
      assert.include(withLanguage.text, "Japanese", segment)
      assert.notInclude(withLanguage.text, " ja ", segment)
      const without = reminder(segment, null, "Ann")
      assert.notInclude(without.text, "Japanese", segment)
      assert.notInclude(without.subject, "  ", segment)
    }
  })

  it("treats a language that looks like a leaked null as no language", () => {
    for (const language of ["null", "nan", "undefined", "", "  ", "{{}}"]) {
      assert.strictEqual(reminder("days3to6", language, "Ann").subject, reminder("days3to6", null, "Ann").subject)
    }
  })

  it("greets by first name", () => {
    assert.include(reminder("days3to6", "es", "María José García").text, "Hi María,")
    assert.include(reminder("days3to6", "es", null).text, "Hi there,")
  })
})

describe("founder copy", () => {
  it("differs across the three steps", () => {
    const days = ([1, 2, 3] as const).map((step) => founder(step, "Ann"))
    assert.strictEqual(new Set(days.map((r) => r.subject)).size, 3)
    assert.strictEqual(new Set(days.map((r) => r.text)).size, 3)
    assert.strictEqual(new Set(days.map((r) => r.html)).size, 3)
  })

  it("welcomes on day 1 and asks for one short conversation", () => {
    const r = founder(1, "Ann")
    assert.include(r.subject, "Welcome")
    assert.include(r.text, "one short conversation")
  })

  it("checks in on day 2", () => {
    assert.include(founder(2, "Ann").subject.toLowerCase(), "checking in")
  })

  it("offers a 15-minute call with the call URL on day 3, and only on day 3", () => {
    const day3 = founder(3, "Ann")
    assert.include(day3.subject, "15 minutes")
    assert.include(day3.text, callUrl)
    assert.include(day3.html, `href="${escapeHtml(callUrl)}"`)
    assert.include(day3.html, "&amp;step=3")
    assert.notInclude(founder(1, "Ann").text, callUrl)
    assert.notInclude(founder(2, "Ann").text, callUrl)
  })

  it("names the founder by FOUNDER_NAME only, never by the sender's display name", () => {
    const samples = allSamples({ FOUNDER_FROM: "Yuki at Kaiwa <yuki@kaiwa.example>", FOUNDER_NAME: "Yuki" })
    const day = (n: number) => samples.find((s) => s.name === `founder-day${n}`)!.email
    assert.strictEqual(day(3).subject, "Want to talk for 15 minutes? A call with Yuki")
    assert.include(day(1).text, "I'm Yuki, and I started Kaiwa.")
    for (const n of [1, 2, 3]) {
      assert.strictEqual(day(n).from, "Yuki at Kaiwa <yuki@kaiwa.example>")
      assert.notInclude(`${day(n).subject}\n${day(n).text}\n${day(n).html}`, "Yuki at Kaiwa", `day ${n}`)
    }
    // Without a name the copy does without one, rather than call the founder "Kaiwa" or "the founder".
    const unnamed = founder(1, "Ann", { founderName: " " })
    assert.include(unnamed.text, "I started Kaiwa. Thank you for signing up!")
    assert.notMatch(unnamed.text, /I'm (Kaiwa|the founder)/)
    assert.strictEqual(founder(3, "Ann", { founderName: "" }).subject, "Want to talk for 15 minutes? A call with Kaiwa's founder")
  })

  it("signs with the founder's name, cleaned and escaped", () => {
    const r = founder(1, "Ann", { founderName: "Sam <CEO>\n" })
    assert.include(r.text, "\nSam <CEO>\n")
    assert.include(r.html, "Sam &lt;CEO&gt;")
    assert.deepStrictEqual(findProblems(r), [])
    assert.deepStrictEqual(findProblems(founder(3, "Ann", { founderName: "" })), [])
  })
})

describe("firstName", () => {
  it("takes the first word of the display name", () => {
    assert.strictEqual(firstName("Aiko Tanaka"), "Aiko")
    assert.strictEqual(firstName("  Aiko   Tanaka  "), "Aiko")
    assert.strictEqual(firstName("Aiko\tTanaka"), "Aiko")
    assert.strictEqual(firstName("Ann\r\nBcc: evil@example.com"), "Ann")
    assert.strictEqual(firstName("Smith, John"), "Smith")
    assert.strictEqual(firstName("O'Brien"), "O'Brien")
    assert.strictEqual(firstName("山田 太郎"), "山田")
  })

  it("falls back to \"there\" when nothing is left", () => {
    for (const name of [null, "", "   ", "\u0000\u0001", "\u200B\u2066 \uFEFF", "{{}}", ","]) {
      assert.strictEqual(firstName(name), "there", JSON.stringify(name))
    }
  })

  it("strips control, zero-width and bidi characters but keeps letters and emoji", () => {
    assert.strictEqual(firstName("\u0000Zoë\u202E🎉 Smith"), "Zoë🎉")
    assert.strictEqual(firstName("A\u200Bnn\u0085"), "Ann")
    assert.strictEqual(firstName("\u009FAnn\u007F"), "Ann")
  })

  it("neutralises names that would look like a template bug", () => {
    for (const name of ["undefined", "null", "NULL Smith", "Undefined", "NaN", "null!", "Zoënull"]) {
      assert.strictEqual(firstName(name), "there", name)
    }
    assert.strictEqual(firstName("{{name}}"), "name")
    assert.strictEqual(firstName("${name}"), "$name")
    // Only whole words count, and NaN only in that exact spelling: these are names.
    assert.strictEqual(firstName("Nan"), "Nan")
    assert.strictEqual(firstName("Nullah"), "Nullah")
    assert.strictEqual(firstName("Annulla"), "Annulla")
  })

  it("caps at 40 code points without splitting an emoji", () => {
    assert.strictEqual(firstName("x".repeat(5_000)), "x".repeat(40))
    assert.strictEqual(firstName("🎉".repeat(100)), "🎉".repeat(40))
    assert.strictEqual(firstName(`${"a".repeat(39)}🎉`), `${"a".repeat(39)}🎉`)
    // An emoji with a skin-tone modifier is one grapheme of two code points: kept whole or dropped whole.
    assert.strictEqual(firstName(`${"a".repeat(39)}👍🏽`), "a".repeat(39))
    assert.strictEqual(firstName(`${"a".repeat(38)}👍🏽`), `${"a".repeat(38)}👍🏽`)
    assert.notMatch(firstName(`${"a".repeat(39)}🎉🎉`), /\p{Cs}/u)
  })

  it("drops a lone surrogate", () => {
    assert.strictEqual(firstName("\uD83DAnn"), "Ann")
  })
})

describe("languageName", () => {
  it("maps common ISO codes to English names", () => {
    const expected: ReadonlyArray<readonly [string, string]> = [
      ["ja", "Japanese"],
      ["es", "Spanish"],
      ["fr", "French"],
      ["de", "German"],
      ["ko", "Korean"],
      ["zh", "Chinese"],
      ["it", "Italian"],
      ["pt", "Portuguese"],
      ["JA", "Japanese"],
      [" ja ", "Japanese"],
      ["pt-BR", "Portuguese"],
      ["zh_Hant", "Chinese"],
      ["ja-JP", "Japanese"]
    ]
    for (const [code, name] of expected) assert.strictEqual(languageName(code), name, code)
  })

  it("normalises known names and keeps unknown values as given", () => {
    assert.strictEqual(languageName("Spanish"), "Spanish")
    assert.strictEqual(languageName("spanish"), "Spanish")
    assert.strictEqual(languageName("tlh"), "tlh")
    assert.strictEqual(languageName("Klingon"), "Klingon")
    assert.strictEqual(languageName("<b>Klingon</b>"), "<b>Klingon</b>")
  })

  it("returns null when nothing usable is left", () => {
    for (const language of [null, "", "   ", "\u202E", "null", "nan", "NaN", "undefined", "{{}}"]) {
      assert.isNull(languageName(language), JSON.stringify(language))
    }
  })
})

describe("reminderSegment", () => {
  it("splits days since the last session at the contract's boundaries", () => {
    const cases: ReadonlyArray<readonly [number | null, ReminderSegment]> = [
      [null, "never"],
      [0, "days1to2"],
      [1, "days1to2"],
      [2, "days1to2"],
      [3, "days3to6"],
      [6, "days3to6"],
      [7, "days7to29"],
      [29, "days7to29"],
      [30, "days30plus"],
      [400, "days30plus"]
    ]
    for (const [days, segment] of cases) assert.strictEqual(reminderSegment(days), segment, String(days))
  })

  it("handles values a correct caller never passes without throwing", () => {
    assert.strictEqual(reminderSegment(-1), "days1to2")
    assert.strictEqual(reminderSegment(2.9), "days1to2")
    assert.strictEqual(reminderSegment(6.5), "days3to6")
    assert.strictEqual(reminderSegment(Number.NaN), "days30plus")
    assert.strictEqual(reminderSegment(Number.POSITIVE_INFINITY), "days30plus")
  })
})

describe("escapeHtml", () => {
  it("escapes the five HTML-significant characters", () => {
    assert.strictEqual(escapeHtml("<a href=\"x\">Tom's & co</a>"), "&lt;a href=&quot;x&quot;&gt;Tom&#39;s &amp; co&lt;/a&gt;")
    assert.strictEqual(escapeHtml("plain Zoë 🎉"), "plain Zoë 🎉")
    assert.strictEqual(escapeHtml("&amp;"), "&amp;amp;")
  })
})

describe("findProblems", () => {
  const clean: Rendered = { subject: "Hello", html: "<p>Hello</p>", text: "Hello\n" }

  it("accepts a clean email", () => {
    assert.deepStrictEqual(findProblems(clean), [])
  })

  it("detects each kind of problem, naming the part", () => {
    const cases: ReadonlyArray<readonly [Rendered, string]> = [
      [{ ...clean, subject: "Hi {{name}}" }, "subject: unfilled placeholder {{"],
      [{ ...clean, html: "<p>Hi {{ name }}</p>" }, "html: unfilled placeholder {{"],
      [{ ...clean, text: "Hi name}}" }, "text: unfilled placeholder }}"],
      [{ ...clean, text: "Hi ${name}" }, "text: unfilled placeholder ${"],
      [{ ...clean, subject: "Hi undefined" }, "subject: undefined"],
      [{ ...clean, html: "<p>Hi null,</p>" }, "html: null"],
      [{ ...clean, text: "Hi NULL" }, "text: null"],
      [{ ...clean, text: "You practised NaN days ago" }, "text: NaN"],
      [{ ...clean, html: "<a href=\"https://x/unsubscribe?token=undefined\">x</a>" }, "html: undefined"],
      [{ ...clean, text: "Hi [object Object]" }, "text: [object Object]"],
      [{ ...clean, subject: "Hi\r\nBcc: evil@example.com" }, "subject: control character"],
      [{ ...clean, subject: "Hi\u2028there" }, "subject: control character"],
      [{ ...clean, text: "Hi \u202Eereht" }, "text: control character"],
      [{ ...clean, html: "<p>Hi\u0000</p>" }, "html: control character"],
      [{ ...clean, subject: "  " }, "subject: empty"],
      [{ ...clean, html: "<script>alert(1)</script>" }, "html: script tag"]
    ]
    for (const [rendered, problem] of cases) {
      assert.include(findProblems(rendered), problem, JSON.stringify(rendered))
    }
  })

  it("allows line breaks in the bodies and ignores the words inside longer tokens", () => {
    assert.deepStrictEqual(findProblems({ ...clean, text: "Line one\r\n\tLine two\n" }), [])
    assert.deepStrictEqual(findProblems({ ...clean, text: "Nullah, Annulla, Nan, nullable, token=ab-null_cd" }), [])
  })
})

describe("every registered job's preview samples", () => {
  it.effect("render through the job's real path: uniquely named, clean, each with its list's unsubscribe link and headers", () =>
    Effect.gen(function*() {
      const config = yield* JobsConfig
      const names = new Set<string>()
      for (const job of registry) {
        const previews = yield* job.preview(config)
        assert.isAbove(previews.length, 0, `${job.name} declares no samples`)
        for (const p of previews) {
          assert.isFalse(names.has(p.name), `sample name ${p.name} is used twice`)
          names.add(p.name)
          assert.match(p.name, /^[a-z0-9-]+$/)
          assert.deepStrictEqual(findProblems(p.email), [], p.name)
          assert.strictEqual(p.email.headers["List-Unsubscribe-Post"], "List-Unsubscribe=One-Click")
          const url = /^<(.*)>$/.exec(p.email.headers["List-Unsubscribe"] ?? "")?.[1] ?? ""
          const token = new URL(url).searchParams.get("token") ?? ""
          assert.strictEqual(Option.getOrNull(verifyToken(config.unsubscribeSecret, token))?.list, job.name)
          assert.include(p.email.html, escapeHtml(url), `${p.name} shows its unsubscribe link`)
        }
      }
      // Every reminder segment with and without a language, and the three founder days.
      for (const segment of reminderSegments) {
        assert.isTrue(names.has(`reminder-${segment}-with-language`), segment)
        assert.isTrue(names.has(`reminder-${segment}-no-language`), segment)
      }
      for (const step of [1, 2, 3]) assert.isTrue(names.has(`founder-day${step}`))
    }).pipe(Effect.provide(JobsConfig.layer), Effect.provide(ConfigProvider.layer(ConfigProvider.fromEnv({ env: {} })))))
})
