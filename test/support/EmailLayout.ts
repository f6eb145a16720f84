/**
 * What a rendered email looks like in a real browser, measured in the page: every visible run of text with its
 * computed font size, colour and the background it sits on (the first ancestor with an opaque background), the
 * links and figure tiles with their boxes, and whether anything overflows the viewport sideways. Plus contrast
 * (WCAG 2 relative luminance) and an approximation of Outlook's Word engine for the button check.
 *
 * The page scripts are plain JavaScript strings: a function passed to `page.evaluate` would be serialised after
 * the test transform, which may add helpers the page does not have.
 */
import type { Page } from "puppeteer-core"

/** An sRGB colour, 0-255 per channel. */
export type Rgb = readonly [number, number, number]

/** One visible run of text. */
export interface TextRun {
  readonly text: string
  readonly fontSize: number
  readonly color: Rgb
  readonly background: Rgb
  readonly left: number
  readonly right: number
  readonly top: number
}

/** A box in CSS pixels. */
export interface Box {
  readonly left: number
  readonly right: number
  readonly top: number
  readonly width: number
  readonly height: number
}

/** What the page shows. */
export interface Layout {
  readonly scrollWidth: number
  readonly innerWidth: number
  readonly innerText: string
  readonly texts: ReadonlyArray<TextRun>
  readonly links: ReadonlyArray<{ readonly href: string; readonly text: string; readonly box: Box; readonly fontSize: number; readonly color: Rgb; readonly background: Rgb }>
  readonly tiles: ReadonlyArray<{ readonly box: Box; readonly valueSize: number; readonly text: string }>
  readonly chartRows: number
}

const HELPERS = `
  const parse = (c) => {
    const m = /rgba?\\(([^)]+)\\)/.exec(c)
    if (!m) return [0, 0, 0, 0]
    const p = m[1].split(/[\\s,\\/]+/).filter(Boolean).map(Number)
    return [p[0], p[1], p[2], p.length > 3 ? p[3] : 1]
  }
  const rgb = (c) => [c[0], c[1], c[2]]
  const backgroundOf = (el) => {
    for (let e = el; e; e = e.parentElement) {
      const c = parse(getComputedStyle(e).backgroundColor)
      if (c[3] > 0) return rgb(c)
    }
    // No background anywhere: the light canvas (every email here paints its own).
    return [255, 255, 255]
  }
  const box = (r) => ({ left: r.left, right: r.right, top: r.top, width: r.width, height: r.height })
`

const MEASURE = `(() => {
  ${HELPERS}
  const texts = []
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT)
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    if (n.textContent.trim() === "") continue
    const el = n.parentElement
    const range = document.createRange()
    range.selectNodeContents(n)
    const rects = [...range.getClientRects()].filter((r) => r.width > 0 && r.height > 0)
    const style = getComputedStyle(el)
    if (rects.length === 0 || style.visibility !== "visible" || Number(style.opacity) === 0) continue
    texts.push({
      text: n.textContent.trim().slice(0, 80),
      fontSize: parseFloat(style.fontSize),
      color: rgb(parse(style.color)),
      background: backgroundOf(el),
      left: Math.min(...rects.map((r) => r.left)),
      right: Math.max(...rects.map((r) => r.right)),
      top: Math.min(...rects.map((r) => r.top))
    })
  }
  return {
    scrollWidth: Math.max(document.documentElement.scrollWidth, document.body.scrollWidth),
    innerWidth: window.innerWidth,
    innerText: document.body.innerText,
    texts,
    links: [...document.querySelectorAll("a")].map((a) => ({
      href: a.getAttribute("href") || "",
      text: a.innerText,
      box: box(a.getBoundingClientRect()),
      fontSize: parseFloat(getComputedStyle(a).fontSize),
      color: rgb(parse(getComputedStyle(a).color)),
      background: backgroundOf(a)
    })),
    tiles: [...document.querySelectorAll(".k-tile")].map((t) => ({
      box: box(t.getBoundingClientRect()),
      valueSize: t.firstElementChild ? parseFloat(getComputedStyle(t.firstElementChild).fontSize) : 0,
      text: t.innerText
    })),
    chartRows: document.querySelectorAll(".k-track").length
  }
})()`

/** Measures the page as it is now. */
export const measure = (page: Page): Promise<Layout> => page.evaluate(MEASURE) as Promise<Layout>

/**
 * Approximates Outlook for Windows (Word's HTML engine): no `<style>` blocks, and on inline elements (links,
 * spans) no display, padding, width, height or background, nor rounded corners or max-width anywhere. What
 * survives is what Word honours: table cells with `bgcolor`, padding and widths, and text colour.
 */
export const asWordSees = (page: Page): Promise<unknown> =>
  page.evaluate(`(() => {
    for (const s of [...document.querySelectorAll("style")]) s.remove()
    for (const el of [...document.querySelectorAll("*")]) {
      for (const p of ["max-width", "border-radius"]) el.style.removeProperty(p)
      if (["A", "SPAN", "B", "STRONG", "EM", "I"].includes(el.tagName)) {
        for (const p of ["display", "padding", "padding-top", "padding-right", "padding-bottom", "padding-left",
          "width", "height", "background", "background-color", "line-height"]) el.style.removeProperty(p)
      }
    }
  })()`)

/** For the button: the box of the nearest element that paints the background behind the link at `href`. */
export const paintedBoxBehind = (page: Page, linkIndex: number): Promise<Box & { readonly color: Rgb }> =>
  page.evaluate(`(() => {
    ${HELPERS}
    const a = document.querySelectorAll("a")[${linkIndex}]
    for (let e = a; e; e = e.parentElement) {
      const c = parse(getComputedStyle(e).backgroundColor)
      if (c[3] > 0) return { ...box(e.getBoundingClientRect()), color: rgb(c) }
    }
    return { left: 0, right: 0, top: 0, width: 0, height: 0, color: [255, 255, 255] }
  })()`) as Promise<Box & { readonly color: Rgb }>

const channel = (v: number): number => {
  const c = v / 255
  return c <= 0.04045 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4
}

/** WCAG 2 relative luminance. */
export const luminance = (c: Rgb): number => 0.2126 * channel(c[0]) + 0.7152 * channel(c[1]) + 0.0722 * channel(c[2])

/** WCAG 2 contrast ratio, 1 to 21. */
export const contrast = (a: Rgb, b: Rgb): number => {
  const [hi, lo] = [luminance(a), luminance(b)].sort((x, y) => y - x) as [number, number]
  return (hi + 0.05) / (lo + 0.05)
}

/** A colour as a client that inverts an email's colours (Gmail's apps, Outlook.com) would paint it, roughly. */
export const inverted = (c: Rgb): Rgb => [255 - c[0], 255 - c[1], 255 - c[2]]
