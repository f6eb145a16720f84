/**
 * One shared shape for every Kaiwa email, rendered twice: as inline-styled, table-based HTML and as plain text.
 * Templates describe an email as data (`EmailContent`: strings, links, figure tiles and a bar chart, never
 * markup), and this module is the only place that writes HTML, so every string that reaches the HTML part,
 * static copy or user value alike, passes through `escapeHtml`, and every string that reaches either part is
 * single-line and free of control characters (`cleanInline`). A template therefore cannot forget to escape a
 * value.
 *
 * Both parts are built from the same pieces in the same order, so they say the same words in the same order
 * (test/emails/parity.test.ts compares them word by word, and test/emails/browser.test.ts compares the text part
 * with what Chromium shows). The HTML is written for the clients that strip the most: layout in tables with
 * `width`/`bgcolor` attributes and inline styles (a `<style>` block only adds dark-mode colours where supported;
 * nothing depends on it), no images, a button whose colour and padding sit on a table cell (Outlook's Word engine
 * ignores padding, `display` and backgrounds on links), a fixed-width "ghost table" for Outlook, which ignores
 * `max-width`, and every visible type at least 14 px in colours of at least 4.5:1 contrast, in light and dark
 * mode and when a client inverts the colours. The text part wraps at 78 columns and never breaks a URL: one
 * that does not fit goes on a line of its own.
 */
import { cleanInline, collapseInline } from "./fields.ts"

/** A rendered email: what a Mailer sends. */
export interface Rendered {
  readonly subject: string
  readonly html: string
  readonly text: string
}

/** Escapes the five HTML-significant characters, for element content and double- or single-quoted attributes. */
export const escapeHtml = (s: string): string =>
  s.replace(/[&<>"']/g, (c) =>
    c === "&" ? "&amp;" : c === "<" ? "&lt;" : c === ">" ? "&gt;" : c === "\"" ? "&quot;" : "&#39;")

/** A link inside the copy: its label and its URL. */
export interface Link {
  readonly _tag: "Link"
  readonly label: string
  readonly url: string
}

/** Builds a `Link`. */
export const link = (label: string, url: string): Link => ({ _tag: "Link", label, url })

/**
 * One paragraph: plain strings and links, concatenated as written, so the spaces between words belong in the
 * strings (`["If you have 15 minutes, ", link("book a call", url), ". No sales pitch."]`).
 */
export type Paragraph = ReadonlyArray<string | Link>

/** A row of large figures, each with its label ("45" / "minutes"), an optional title above and line under them. */
export interface Tiles {
  readonly _tag: "Tiles"
  readonly title?: string | undefined
  readonly tiles: ReadonlyArray<{ readonly value: string; readonly label: string }>
  readonly note?: string | undefined
}

/** A small horizontal bar chart: a title, then one row per label with its value (e.g. minutes per day). */
export interface BarChart {
  readonly _tag: "BarChart"
  readonly title: string
  readonly rows: ReadonlyArray<{ readonly label: string; readonly value: number }>
}

/** What the body is made of, in order. */
export type Block = Paragraph | Tiles | BarChart

/** Everything an email says, without any markup. */
export interface EmailContent {
  readonly subject: string
  /** The preview line inbox lists show after the subject; hidden in the HTML body. */
  readonly preheader: string
  /** "Hi Aiko," */
  readonly greeting: string
  readonly paragraphs: ReadonlyArray<Block>
  /** The main button. */
  readonly cta: Link
  /** Sign-off lines, e.g. "Happy practising," and "The Kaiwa team". */
  readonly closing: ReadonlyArray<string>
  /** Why the recipient gets this email. */
  readonly reason: string
  readonly unsubscribe: Link
  /** The recipient's preference center (`/preferences?token=…`), linked from the footer. */
  readonly preferencesUrl: string
  readonly appUrl: string
}

/** The longest line of the text part, in characters (RFC 5322's recommendation); URLs alone may be longer. */
export const TEXT_WIDTH = 78

const FONT = "-apple-system,BlinkMacSystemFont,'Segoe UI',Roboto,Helvetica,Arial,sans-serif"
// Light colours, each pair at least 4.5:1 (test/emails/browser.test.ts measures them, also inverted, as Gmail's
// apps and Outlook.com darken an email that does not style its own dark mode).
const PAGE = "#f5f7fa"
const CARD = "#ffffff"
const TEXT = "#1f2933"
const MUTED = "#4b5563"
const LINK = "#2454d6"
const TILE = "#eef2fb"
const TRACK = "#e3e8f2"

// Dark mode where the client supports it (Apple Mail, iOS, Outlook for Mac, some webmails); the inline colours
// above are the default everywhere else.
const DARK_STYLE = [
  "<style>",
  ":root{color-scheme:light dark;supported-color-schemes:light dark;}",
  "@media (prefers-color-scheme: dark){",
  ".k-page{background:#0f141a !important;}",
  ".k-card{background:#182029 !important;}",
  ".k-text{color:#e8edf2 !important;}",
  ".k-muted{color:#b8c2cc !important;}",
  ".k-link{color:#9dbbff !important;}",
  ".k-tile{background:#243041 !important;}",
  ".k-track{background:#2b3644 !important;}",
  ".k-bar{background:#7fa6ff !important;}",
  "}",
  "</style>"
].join("\n")

// A name or language of 40 characters without a space must wrap rather than push a phone screen sideways
// (inherited by everything inside the cell; `word-break:break-word` for clients without `overflow-wrap:anywhere`).
const BREAK_LONG = "overflow-wrap:anywhere;word-break:break-word;"

const h = (s: string): string => escapeHtml(cleanInline(s))

const anchor = (l: Link, style: string, className: string): string =>
  `<a href="${h(l.url)}" class="${className}" style="${style}">${h(l.label)}</a>`

/**
 * A paragraph's pieces with their spaces settled, so both parts put exactly one space where the template wrote
 * one, even at a link's edge: strings keep an edge space (`collapseInline`), a space that would double the one
 * before it is dropped, and the paragraph has none at its ends. Link labels are cleaned like any value.
 */
const inlinePieces = (p: Paragraph): ReadonlyArray<string | Link> => {
  const textOf = (x: string | Link) => typeof x === "string" ? x : x.label
  const out: Array<string | Link> = []
  for (const part of p) {
    const previous = out[out.length - 1]
    const piece = typeof part === "string"
      ? (previous === undefined || textOf(previous).endsWith(" ") ? collapseInline(part).replace(/^ /, "") : collapseInline(part))
      : link(cleanInline(part.label), part.url)
    if (textOf(piece) !== "") out.push(piece)
  }
  const last = out[out.length - 1]
  if (typeof last === "string") {
    if (last.trimEnd() === "") out.pop()
    else out[out.length - 1] = last.trimEnd()
  }
  return out
}

const inlineHtml = (p: Paragraph): string =>
  inlinePieces(p).map((part) => typeof part === "string" ? escapeHtml(part) : anchor(part, `color:${LINK};`, "k-link"))
    .join("")

const inlineText = (p: Paragraph): string =>
  inlinePieces(p).map((part) => typeof part === "string" ? part : `${part.label} (${cleanInline(part.url)})`).join("")

/**
 * Greedy word wrap at `width` columns. Words are never split, so a URL (or any word) longer than a line stands
 * on a line of its own, whole.
 */
export const wrapLine = (line: string, width: number = TEXT_WIDTH): ReadonlyArray<string> => {
  const lines: Array<string> = []
  let current = ""
  for (const word of line.split(" ").filter((w) => w !== "")) {
    if (current === "") current = word
    else if (current.length + 1 + word.length <= width) current += ` ${word}`
    else {
      lines.push(current)
      current = word
    }
  }
  if (current !== "" || lines.length === 0) lines.push(current)
  return lines
}

const WEEKDAY_PAD = 4

// A paragraph is an array and carries no `_tag`.
const isTiles = (b: Block): b is Tiles => "_tag" in b && b._tag === "Tiles"
const isChart = (b: Block): b is BarChart => "_tag" in b && b._tag === "BarChart"

const paragraphHtml = (inner: string): string => `<p style="margin:0 0 16px 0;">${inner}</p>`

const tilesHtml = (t: Tiles): string => {
  // Percentages that leave room for 2% gaps, so the gaps survive at every width.
  const width = Math.floor((100 - 2 * (t.tiles.length - 1)) / Math.max(1, t.tiles.length))
  const cells = t.tiles.map((tile) =>
    `<td class="k-tile" width="${width}%" align="center" valign="top" bgcolor="${TILE}" ` +
    `style="background:${TILE};border-radius:8px;padding:12px 4px;">` +
    `<div class="k-text" style="font-size:30px;line-height:1.2;font-weight:700;color:${TEXT};">${h(tile.value)}</div>` +
    `<div class="k-muted" style="font-size:14px;line-height:1.3;color:${MUTED};">${h(tile.label)}</div></td>`
  )
  const spacer = "<td width=\"2%\" style=\"width:2%;\"></td>"
  return [
    ...(t.title === undefined || cleanInline(t.title) === "" ? [] : [`<p style="margin:0 0 8px 0;font-weight:600;">${h(t.title)}</p>`]),
    "<table role=\"presentation\" width=\"100%\" cellpadding=\"0\" cellspacing=\"0\" border=\"0\">",
    `<tr>${cells.join(spacer)}</tr>`,
    "</table>",
    t.note === undefined || cleanInline(t.note) === ""
      ? "<div style=\"height:16px;line-height:16px;font-size:16px;\">&nbsp;</div>"
      : `<p style="margin:12px 0 20px 0;font-weight:600;">${h(t.note)}</p>`
  ].join("\n")
}

// A cell that holds only a bar: no line box of its own, so its height is exactly the one given (Outlook too).
const ZERO_LINE = "font-size:0;line-height:0;mso-line-height-rule:exactly;"

/** A whole number as English readers write it: "12,345". */
export const count = (n: number): string => n.toLocaleString("en-US", { maximumFractionDigits: 0 })

const chartValue = (n: number): number => Number.isFinite(n) ? Math.max(0, Math.round(n)) : 0

const chartHtml = (c: BarChart): string => {
  const max = Math.max(1, ...c.rows.map((r) => chartValue(r.value)))
  const rows = c.rows.map((r) => {
    const value = chartValue(r.value)
    const percent = value === 0 ? 0 : Math.max(2, Math.round((value / max) * 100))
    const bar = percent === 0
      ? ""
      : `<table role="presentation" width="${percent}%" cellpadding="0" cellspacing="0" border="0"><tr>` +
        `<td class="k-bar" bgcolor="${LINK}" height="14" style="background:${LINK};height:14px;border-radius:3px;` +
        `${ZERO_LINE}"></td></tr></table>`
    return `<tr><td class="k-muted" width="44" style="width:44px;padding:3px 8px 3px 0;font-size:14px;color:${MUTED};">` +
      `${h(r.label)}</td>` +
      "<td valign=\"middle\" style=\"padding:3px 0;\">" +
      "<table role=\"presentation\" width=\"100%\" cellpadding=\"0\" cellspacing=\"0\" border=\"0\"><tr>" +
      `<td class="k-track" bgcolor="${TRACK}" height="14" style="background:${TRACK};height:14px;border-radius:3px;` +
      `${ZERO_LINE}">${bar}</td></tr></table></td>` +
      `<td class="k-text" width="40" align="right" style="width:40px;padding:3px 0 3px 8px;font-size:14px;color:${TEXT};">` +
      `${count(value)}</td></tr>`
  })
  return [
    `<p style="margin:0 0 8px 0;font-weight:600;">${h(c.title)}</p>`,
    "<table role=\"presentation\" width=\"100%\" cellpadding=\"0\" cellspacing=\"0\" border=\"0\" style=\"margin:0 0 20px 0;\">",
    ...rows,
    "</table>"
  ].join("\n")
}

const blockHtml = (b: Block): string => isTiles(b) ? tilesHtml(b) : isChart(b) ? chartHtml(b) : paragraphHtml(inlineHtml(b))

// The button's colour and padding are on the table cell (Outlook's Word engine honours both there, and ignores
// them on a link), and the link inside is the label; every other client shows the same button.
const buttonHtml = (cta: Link): string =>
  [
    "<table role=\"presentation\" cellpadding=\"0\" cellspacing=\"0\" border=\"0\"><tr><td style=\"padding:8px 0 24px 0;\">",
    "<table role=\"presentation\" cellpadding=\"0\" cellspacing=\"0\" border=\"0\"><tr>",
    `<td align="center" bgcolor="${LINK}" style="background:${LINK};border-radius:6px;padding:12px 22px;` +
    "mso-padding-alt:12px 22px;\">",
    anchor(
      cta,
      `display:inline-block;color:#ffffff;font-family:${FONT};font-size:16px;line-height:1.4;font-weight:600;` +
        "text-decoration:none;",
      "k-button"
    ),
    "</td></tr></table>",
    "</td></tr></table>"
  ].join("\n")

const renderHtml = (c: EmailContent): string => {
  const footerLink = `color:${MUTED};text-decoration:underline;`
  const footerLinks = [c.unsubscribe, link("Manage email preferences", c.preferencesUrl), link("Open Kaiwa", c.appUrl)]
  return [
    "<!doctype html>",
    "<html lang=\"en\">",
    "<head>",
    "<meta charset=\"utf-8\">",
    "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">",
    "<meta name=\"x-apple-disable-message-reformatting\">",
    "<meta name=\"color-scheme\" content=\"light dark\">",
    "<meta name=\"supported-color-schemes\" content=\"light dark\">",
    `<title>${h(c.subject)}</title>`,
    DARK_STYLE,
    "</head>",
    `<body class="k-page" bgcolor="${PAGE}" style="margin:0;padding:0;background:${PAGE};">`,
    `<div style="display:none;max-height:0;overflow:hidden;mso-hide:all;">${h(c.preheader)}</div>`,
    `<table role="presentation" class="k-page" width="100%" cellpadding="0" cellspacing="0" border="0" bgcolor="${PAGE}" ` +
    `style="background:${PAGE};">`,
    "<tr><td align=\"center\" style=\"padding:24px 8px;\">",
    // Outlook ignores max-width: a fixed 560 px table holds the column there.
    "<!--[if mso]><table role=\"presentation\" width=\"560\" align=\"center\" cellpadding=\"0\" cellspacing=\"0\" " +
    "border=\"0\"><tr><td><![endif]-->",
    `<table role="presentation" class="k-card" width="100%" cellpadding="0" cellspacing="0" border="0" bgcolor="${CARD}" ` +
    `style="max-width:560px;background:${CARD};border-radius:8px;">`,
    `<tr><td class="k-text" style="padding:28px 20px;font-family:${FONT};font-size:16px;line-height:1.6;color:${TEXT};${BREAK_LONG}">`,
    paragraphHtml(h(c.greeting)),
    ...c.paragraphs.map(blockHtml),
    buttonHtml(c.cta),
    `<p style="margin:0;">${c.closing.map(h).join("<br>")}</p>`,
    "</td></tr>",
    "</table>",
    "<table role=\"presentation\" width=\"100%\" cellpadding=\"0\" cellspacing=\"0\" border=\"0\" style=\"max-width:560px;\">",
    `<tr><td class="k-muted" style="padding:20px 20px 8px 20px;font-family:${FONT};font-size:14px;line-height:1.6;` +
    `color:${MUTED};${BREAK_LONG}">`,
    `<p style="margin:0 0 8px 0;">${h(c.reason)}</p>`,
    // The fixed labels never break inside; the unsubscribe label (a job's own words) may.
    `<p style="margin:0;">${
      footerLinks.map((l, i) => anchor(l, i === 0 ? footerLink : `${footerLink}white-space:nowrap;`, "k-muted")).join(" &middot; ")
    }</p>`,
    "</td></tr>",
    "</table>",
    "<!--[if mso]></td></tr></table><![endif]-->",
    "</td></tr>",
    "</table>",
    "</body>",
    "</html>",
    ""
  ].join("\n")
}

const tilesText = (t: Tiles): ReadonlyArray<string> => [
  ...(t.title === undefined || cleanInline(t.title) === "" ? [] : wrapLine(cleanInline(t.title))),
  ...t.tiles.map((tile) => `${cleanInline(tile.value)} ${cleanInline(tile.label)}`),
  ...(t.note === undefined || cleanInline(t.note) === "" ? [] : wrapLine(cleanInline(t.note))),
  ""
]

// Bars of up to 30 "#", after the label and before the value, as the HTML chart reads.
const chartText = (c: BarChart): ReadonlyArray<string> => {
  const max = Math.max(1, ...c.rows.map((r) => chartValue(r.value)))
  return [
    cleanInline(c.title),
    ...c.rows.map((r) => {
      const value = chartValue(r.value)
      const bar = value === 0 ? "" : `${"#".repeat(Math.max(1, Math.round((value / max) * 30)))} `
      return `${cleanInline(r.label).padEnd(WEEKDAY_PAD)} ${bar}${count(value)}`
    }),
    ""
  ]
}

const blockText = (b: Block): ReadonlyArray<string> =>
  isTiles(b) ? tilesText(b) : isChart(b) ? chartText(b) : [...wrapLine(inlineText(b)), ""]

const renderText = (c: EmailContent): string =>
  [
    ...wrapLine(cleanInline(c.greeting)),
    "",
    ...c.paragraphs.flatMap(blockText),
    ...wrapLine(`${cleanInline(c.cta.label)}: ${cleanInline(c.cta.url)}`),
    "",
    ...c.closing.flatMap((line) => wrapLine(cleanInline(line))),
    "",
    "--",
    ...wrapLine(cleanInline(c.reason)),
    ...wrapLine(`${cleanInline(c.unsubscribe.label)}: ${cleanInline(c.unsubscribe.url)}`),
    ...wrapLine(`Manage email preferences: ${cleanInline(c.preferencesUrl)}`),
    ...wrapLine(`Open Kaiwa: ${cleanInline(c.appUrl)}`),
    ""
  ].join("\n")

/** Renders an email's content as subject, HTML part and plain-text part. */
export const renderEmail = (c: EmailContent): Rendered => ({
  subject: cleanInline(c.subject),
  html: renderHtml(c),
  text: renderText(c)
})
