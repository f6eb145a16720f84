/**
 * Every email sample (as `kaiwa-jobs preview` renders it) in a real Chromium, at a phone's 375 px and a
 * desktop's 1024 px (issue 20 items 3, 4 and 6): nothing overflows sideways; the unsubscribe and preference links
 * are on screen; every visible text is at least 14 px with a contrast of at least 4.5:1 against what it sits on,
 * in light mode, in the email's own dark mode and with its colours inverted as some clients darken emails; the
 * words on screen (`document.body.innerText`) are the text part's words; the weekly report's figures are large
 * tiles in one row; and the button keeps its colour and padding as Outlook's Word engine renders it.
 * Screenshots of every sample (light at both widths, dark at 375 px) go to `.screenshots/` (git-ignored) for a person
 * to look at.
 */
import { assert, describe, it } from "@effect/vitest"
import { useBrowser, screenshot, withPage } from "../support/Browser.ts"
import { asWordSees, contrast, inverted, type Layout, measure, paintedBoxBehind } from "../support/EmailLayout.ts"
import { renderProgress, renderReminder } from "../../src/emails/templates.ts"
import { allSamples } from "../support/EmailSamples.ts"
import { firstDifference, words } from "../support/EmailText.ts"

const WIDTHS = [375, 1024] as const
const MIN_FONT = 14
const MIN_CONTRAST = 4.5
const samples = allSamples()

const assertReadable = (layout: Layout, label: string, mode: "light" | "dark") => {
  assert.isAtLeast(layout.texts.length, 8, label)
  for (const t of layout.texts) {
    const where = `${label} (${mode}): "${t.text}"`
    assert.isAtLeast(t.fontSize, MIN_FONT, where)
    assert.isAtLeast(contrast(t.color, t.background), MIN_CONTRAST, `${where}: ${t.color} on ${t.background}`)
    if (mode === "light") {
      assert.isAtLeast(contrast(inverted(t.color), inverted(t.background)), MIN_CONTRAST, `${where} inverted`)
    }
  }
}

const assertOnScreen = (layout: Layout, hrefPart: string, label: string) => {
  const found = layout.links.filter((l) => l.href.includes(hrefPart))
  assert.strictEqual(found.length, 1, `${label}: one ${hrefPart} link`)
  const l = found[0]!
  assert.isAbove(l.box.width, 0, label)
  assert.isAbove(l.box.height, 0, label)
  assert.isAtLeast(l.box.left, 0, label)
  assert.isAtMost(l.box.right, layout.innerWidth, label)
  assert.isAtLeast(l.fontSize, MIN_FONT, label)
  assert.isAtLeast(contrast(l.color, l.background), MIN_CONTRAST, label)
}

describe("every email sample in Chromium", () => {
  const browser = useBrowser()

  it("renders the samples of every job", () => {
    assert.isAtLeast(samples.length, 20)
    for (const job of ["practice-reminders", "founder-emails", "weekly-progress"]) {
      assert.isTrue(samples.some((s) => s.job === job), job)
    }
  })

  for (const width of WIDTHS) {
    for (const s of samples) {
      it(`${s.name} at ${width} px: no sideways overflow, links on screen, type >= 14 px at 4.5:1 in light, dark and inverted colours`, async () => {
        await withPage(browser(), { width, html: s.email.html }, async (page) => {
          await screenshot(page, `${s.name}-${width}`)
          const light = await measure(page)
          const label = `${s.name} at ${width}px`
          assert.isAtMost(light.scrollWidth, light.innerWidth, `${label} scrolls sideways`)
          for (const t of light.texts) {
            assert.isAtLeast(t.left, 0, `${label}: "${t.text}"`)
            assert.isAtMost(t.right, light.innerWidth, `${label}: "${t.text}"`)
          }
          assertOnScreen(light, "/unsubscribe?token=", label)
          assertOnScreen(light, "/preferences?token=", label)
          assertReadable(light, label, "light")
          await page.emulateMediaFeatures([{ name: "prefers-color-scheme", value: "dark" }])
          // Dark screenshots at the phone width only: the layout is the same, and each full-page capture costs CPU
          // the rest of the suite shares.
          if (width === 375) await screenshot(page, `${s.name}-${width}-dark`)
          const dark = await measure(page)
          assert.isAtMost(dark.scrollWidth, dark.innerWidth, `${label} (dark) scrolls sideways`)
          assertReadable(dark, label, "dark")
        })
      })
    }
  }

  it("keeps the longest name and language a template prints inside a 375 px screen", async () => {
    const long = [
      renderReminder({ displayName: "x".repeat(5_000), language: "y".repeat(5_000), daysSinceLastSession: 4, appUrl: "https://kaiwa.example", unsubscribeUrl: "https://kaiwa.example/unsubscribe?token=t", preferencesUrl: "https://kaiwa.example/preferences?token=t" }),
      renderProgress({ displayName: "W".repeat(5_000), topLanguage: "W".repeat(5_000), weekStart: "2026-03-08", weekEnd: "2026-03-14", minutes: 12_345, sessions: 1_234, activeDays: 7, previousMinutes: 99_999, changePercent: -88, minutesByDay: [9_999, 0, 1, 2, 3, 4, 2_335], appUrl: "https://kaiwa.example", unsubscribeUrl: "https://kaiwa.example/unsubscribe?token=t", preferencesUrl: "https://kaiwa.example/preferences?token=t" })
    ]
    for (const r of long) {
      await withPage(browser(), { width: 375, html: r.html }, async (page) => {
        await screenshot(page, `long-input-${long.indexOf(r)}-375`)
        const layout = await measure(page)
        assert.isAtMost(layout.scrollWidth, layout.innerWidth, r.subject.slice(0, 40))
      })
    }
  })

  it("shows on screen the same words, in the same order, as each sample's text part, under 102 KB", async () => {
    for (const s of samples) {
      await withPage(browser(), { width: 375, html: s.email.html }, async (page) => {
        const { innerText } = await measure(page)
        assert.isBelow(Buffer.byteLength(innerText, "utf8"), 102 * 1024, s.name)
        assert.isUndefined(firstDifference(words(innerText), words(s.email.text)), s.name)
      })
    }
  })

  it("leads the weekly report with its figures: large numbers in tiles, in one row, at 375 and 1024 px", async () => {
    const weekly = samples.filter((s) => s.job === "weekly-progress")
    assert.isAtLeast(weekly.length, 7)
    for (const s of weekly) {
      for (const width of WIDTHS) {
        await withPage(browser(), { width, html: s.email.html }, async (page) => {
          const { tiles, chartRows, innerWidth, texts } = await measure(page)
          const label = `${s.name} at ${width}px`
          const minutesKnown = !s.name.endsWith("no-minutes")
          assert.strictEqual(tiles.length, minutesKnown ? 3 : 2, label)
          for (const t of tiles) {
            assert.strictEqual(t.box.top, tiles[0]!.box.top, `${label}: tiles in one row`)
            assert.isAtLeast(t.box.left, 0, label)
            assert.isAtMost(t.box.left + t.box.width, innerWidth, label)
            // Large: well above the 16 px body text.
            assert.isAtLeast(t.valueSize, 28, label)
          }
          assert.match(tiles.map((t) => t.text).join(" "), minutesKnown ? /\d+\s+minutes?\s+\d+\s+conversations?\s+\d+\s+active days?/ : /\d+\s+conversations?\s+\d+\s+active days?/, label)
          // The tiles come before the copy: the first tile is above the top-language line.
          const copy = texts.find((t) => t.text.startsWith("Your most practised language"))
          if (copy !== undefined) assert.isBelow(tiles[0]!.box.top, copy.top, label)
          const withChart = ["up", "down", "same", "new", "one-session", "no-language"].some((v) => s.name === `weekly-progress-${v}`)
          assert.strictEqual(chartRows, withChart ? 7 : 0, `${label}: per-day chart rows`)
        })
      }
    }
  })

  it("keeps each email's button coloured and padded as Outlook's Word engine renders it", async () => {
    for (const s of samples) {
      await withPage(browser(), { width: 1024, html: s.email.html }, async (page) => {
        const before = await measure(page)
        const buttons = before.links.map((l, i) => ({ ...l, i })).filter((l) => l.color.every((v) => v === 255))
        assert.strictEqual(buttons.length, 1, `${s.name}: one button`)
        const button = buttons[0]!
        await asWordSees(page)
        const painted = await paintedBoxBehind(page, button.i)
        assert.isAtLeast(contrast([255, 255, 255], painted.color), MIN_CONTRAST, `${s.name}: button text on ${painted.color}`)
        // The padding survives: the painted box is well taller and wider than the label's line.
        assert.isAtLeast(painted.height, 40, s.name)
        assert.isAtLeast(painted.width, button.box.width + 30, s.name)
      })
    }
  })
})
