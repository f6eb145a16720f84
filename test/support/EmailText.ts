/**
 * Reading an email as its reader does, for the tests that compare the HTML part with the text part:
 * `visibleText` extracts what a mail client shows of the HTML (no head, no comments, so no Outlook-only
 * conditional markup, nothing hidden with display:none, block elements apart and inline ones joined as written),
 * and `words` turns either part into the words a person reads, so the two can be compared word by word.
 */

const BLOCK = new Set([
  "address", "article", "body", "br", "center", "dd", "div", "dl", "dt", "footer", "h1", "h2", "h3", "h4", "h5",
  "h6", "header", "hr", "html", "li", "ol", "p", "section", "table", "tbody", "td", "tfoot", "th", "thead", "tr", "ul"
])
const VOID = new Set(["area", "base", "br", "col", "hr", "img", "input", "link", "meta", "source", "wbr"])
// Elements whose content is never shown.
const UNSHOWN = new Set(["head", "script", "style", "template", "title"])

const NAMED: Readonly<Record<string, string>> = {
  amp: "&",
  lt: "<",
  gt: ">",
  quot: "\"",
  apos: "'",
  nbsp: "\u00a0",
  middot: "\u00b7",
  ndash: "\u2013",
  mdash: "\u2014",
  zwnj: "\u200c",
  hellip: "\u2026"
}

/** Decodes the character references an email uses; an unknown named one fails the test that meets it. */
export const decodeEntities = (s: string): string =>
  s.replace(/&(#x[0-9a-f]+|#[0-9]+|[a-z]+);/gi, (_, ref: string) => {
    if (ref.startsWith("#x") || ref.startsWith("#X")) return String.fromCodePoint(Number.parseInt(ref.slice(2), 16))
    if (ref.startsWith("#")) return String.fromCodePoint(Number.parseInt(ref.slice(1), 10))
    const named = NAMED[ref.toLowerCase()]
    if (named === undefined) throw new Error(`unknown character reference &${ref};`)
    return named
  })

const hides = (attributes: string): boolean => /style\s*=\s*"[^"]*display\s*:\s*none/i.test(attributes) || /\shidden(\s|=|$)/i.test(attributes)

/** The text a mail client shows of an HTML email: words of block elements kept apart, inline ones joined. */
export const visibleText = (html: string): string => {
  const source = html.replace(/<!--[\s\S]*?-->/g, "").replace(/<!doctype[^>]*>/i, "")
  const out: Array<string> = []
  // Open elements, each with whether it hides its content.
  const stack: Array<{ readonly tag: string; readonly hidden: boolean }> = []
  const hidden = () => stack.some((e) => e.hidden)
  const tokens = /<(\/?)([a-zA-Z][a-zA-Z0-9]*)((?:[^>"']|"[^"]*"|'[^']*')*)>|([^<]+)/g
  for (let m = tokens.exec(source); m !== null; m = tokens.exec(source)) {
    const [, closing, rawTag, attributes = "", text] = m
    if (text !== undefined) {
      if (!hidden()) out.push(decodeEntities(text))
      continue
    }
    const tag = (rawTag ?? "").toLowerCase()
    if (BLOCK.has(tag) && !hidden()) out.push("\n")
    if (closing === "/") {
      const at = stack.map((e) => e.tag).lastIndexOf(tag)
      if (at >= 0) stack.length = at
    } else if (!VOID.has(tag) && !attributes.trimEnd().endsWith("/")) {
      stack.push({ tag, hidden: UNSHOWN.has(tag) || hides(attributes) })
    }
  }
  return out.join("")
}

/**
 * The words a person reads, in order: split at whitespace (so "minutes,book" is one word, as it reads), with the
 * punctuation at a word's edges dropped, and URLs left out (the text part prints link targets, the HTML part
 * hides them behind their labels). Punctuation alone ("·", "--", a text bar chart's "####") is not a word.
 */
export const words = (s: string): ReadonlyArray<string> =>
  s.split(/\s+/u)
    .filter((w) => !/:\/\//.test(w))
    .map((w) => w.replace(/^[^\p{L}\p{N}]+|[^\p{L}\p{N}]+$/gu, ""))
    .filter((w) => w !== "")

/** The first place two word lists differ, with a little context, for a readable failure message. */
export const firstDifference = (a: ReadonlyArray<string>, b: ReadonlyArray<string>): string | undefined => {
  const n = Math.max(a.length, b.length)
  for (let i = 0; i < n; i++) {
    if (a[i] !== b[i]) {
      return `word ${i}: ${JSON.stringify(a.slice(Math.max(0, i - 4), i + 4).join(" "))} vs ` +
        JSON.stringify(b.slice(Math.max(0, i - 4), i + 4).join(" "))
    }
  }
  return undefined
}

/** The http(s) URLs an HTML part links to, decoded. */
export const hrefs = (html: string): ReadonlyArray<string> =>
  Array.from(html.matchAll(/href="([^"]*)"/g), (m) => decodeEntities(m[1] ?? ""))
