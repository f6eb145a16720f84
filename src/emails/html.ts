/**
 * One shared shape for every Kaiwa email, rendered twice: as simple inline-styled HTML and as plain text.
 * Templates describe an email as data (`EmailContent`: strings and links, never markup), and this module is
 * the only place that writes HTML, so every string that reaches the HTML part, static copy or user value
 * alike, passes through `escapeHtml`, and every string that reaches either part is single-line and free of
 * control characters (`cleanInline`). A template therefore cannot forget to escape a value.
 */
import { cleanInline } from "./fields.ts"

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

/** One paragraph: plain strings and links, concatenated. */
export type Paragraph = ReadonlyArray<string | Link>

/** Everything an email says, without any markup. */
export interface EmailContent {
  readonly subject: string
  /** The preview line inbox lists show after the subject; hidden in the HTML body. */
  readonly preheader: string
  /** "Hi Aiko," */
  readonly greeting: string
  readonly paragraphs: ReadonlyArray<Paragraph>
  /** The main button. */
  readonly cta: Link
  /** Sign-off lines, e.g. "Happy practising," and "The Kaiwa team". */
  readonly closing: ReadonlyArray<string>
  /** Why the recipient gets this email. */
  readonly reason: string
  readonly unsubscribe: Link
  readonly appUrl: string
}

const FONT = "-apple-system,BlinkMacSystemFont,'Segoe UI',Roboto,Helvetica,Arial,sans-serif"
const TEXT_COLOR = "#1f2933"
const MUTED_COLOR = "#616e7c"
const LINK_COLOR = "#2454d6"

const h = (s: string): string => escapeHtml(cleanInline(s))

const anchor = (l: Link, style: string): string =>
  `<a href="${h(l.url)}" style="${style}">${h(l.label)}</a>`

const inlineHtml = (p: Paragraph): string =>
  p.map((part) => typeof part === "string" ? h(part) : anchor(part, `color:${LINK_COLOR};`)).join("")

const inlineText = (p: Paragraph): string =>
  cleanInline(p.map((part) => typeof part === "string" ? part : `${part.label} (${part.url})`).join(""))

const paragraphHtml = (inner: string): string => `<p style="margin:0 0 16px 0;">${inner}</p>`

const renderHtml = (c: EmailContent): string => {
  const button = anchor(
    c.cta,
    `display:inline-block;background:${LINK_COLOR};color:#ffffff;text-decoration:none;font-weight:600;` +
      "padding:12px 22px;border-radius:6px;"
  )
  const footerLink = `color:${MUTED_COLOR};text-decoration:underline;`
  return [
    "<!doctype html>",
    "<html lang=\"en\">",
    "<head>",
    "<meta charset=\"utf-8\">",
    "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">",
    `<title>${h(c.subject)}</title>`,
    "</head>",
    "<body style=\"margin:0;padding:0;background:#f5f7fa;\">",
    `<div style="display:none;max-height:0;overflow:hidden;">${h(c.preheader)}</div>`,
    "<table role=\"presentation\" width=\"100%\" cellpadding=\"0\" cellspacing=\"0\" style=\"background:#f5f7fa;\">",
    "<tr><td align=\"center\" style=\"padding:24px 12px;\">",
    "<table role=\"presentation\" width=\"100%\" cellpadding=\"0\" cellspacing=\"0\" " +
    "style=\"max-width:560px;background:#ffffff;border-radius:8px;\">",
    `<tr><td style="padding:32px 28px;font-family:${FONT};font-size:16px;line-height:1.6;color:${TEXT_COLOR};">`,
    paragraphHtml(h(c.greeting)),
    ...c.paragraphs.map((p) => paragraphHtml(inlineHtml(p))),
    `<p style="margin:24px 0;">${button}</p>`,
    paragraphHtml(c.closing.map(h).join("<br>")),
    "</td></tr>",
    "</table>",
    `<p style="max-width:560px;margin:16px auto 0 auto;font-family:${FONT};font-size:12px;line-height:1.5;` +
    `color:${MUTED_COLOR};">`,
    `${h(c.reason)}<br>`,
    `${anchor(c.unsubscribe, footerLink)} &middot; ${anchor(link("Open Kaiwa", c.appUrl), footerLink)}`,
    "</p>",
    "</td></tr>",
    "</table>",
    "</body>",
    "</html>",
    ""
  ].join("\n")
}

const renderText = (c: EmailContent): string =>
  [
    cleanInline(c.greeting),
    "",
    ...c.paragraphs.flatMap((p) => [inlineText(p), ""]),
    `${cleanInline(c.cta.label)}: ${cleanInline(c.cta.url)}`,
    "",
    ...c.closing.map(cleanInline),
    "",
    "--",
    cleanInline(c.reason),
    `${cleanInline(c.unsubscribe.label)}: ${cleanInline(c.unsubscribe.url)}`,
    `Open Kaiwa: ${cleanInline(c.appUrl)}`,
    ""
  ].join("\n")

/** Renders an email's content as subject, HTML part and plain-text part. */
export const renderEmail = (c: EmailContent): Rendered => ({
  subject: cleanInline(c.subject),
  html: renderHtml(c),
  text: renderText(c)
})
