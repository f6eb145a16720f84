/**
 * The server's HTML pages (the unsubscribe confirmation, the preference center, the console): one shell, one set
 * of headers. Pages are server-rendered and work without JavaScript; the Content-Security-Policy allows no script
 * at all, no external resource, and forms that post only to this server; no-referrer keeps a token in the URL
 * from travelling anywhere.
 */
import { HttpServerResponse } from "effect/http"
import { escapeHtml } from "../emails/html.ts"

/** Headers every page sends. */
export const pageHeaders: Readonly<Record<string, string>> = {
  "cache-control": "no-store",
  "x-content-type-options": "nosniff",
  "content-security-policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
  "referrer-policy": "no-referrer",
  "x-robots-tag": "noindex"
}

// Type is 16 px or more everywhere, controls are at least 44 px tall, and nothing is wider than the screen.
const STYLE = [
  "body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;font-size:17px;line-height:1.5;color:#1f2328;background:#fff;max-width:40rem;margin:2rem auto;padding:0 1rem}",
  "h1{font-size:1.6rem;line-height:1.25}h2{font-size:1.2rem}",
  "button{font:inherit;min-height:44px;padding:.5rem 1rem;border-radius:8px;border:1px solid #1f6feb;background:#1f6feb;color:#fff;cursor:pointer}",
  "button.secondary{background:#fff;color:#1f6feb}",
  "table{border-collapse:collapse;width:100%}td,th{text-align:left;padding:.5rem .4rem;border-bottom:1px solid #d0d7de;vertical-align:top}",
  ".list{display:flex;gap:.75rem;align-items:center;justify-content:space-between;padding:.9rem 0;border-bottom:1px solid #d0d7de}.list>div{flex:1;min-width:0}",
  ".list p{margin:.15rem 0}.state{font-weight:600}.on{color:#1a7f37}.off{color:#cf222e}.note{color:#57606a}",
  ".notice{background:#dafbe1;border:1px solid #1a7f37;padding:.6rem .9rem;border-radius:8px}",
  ".wide{overflow-x:auto}form{margin:0}",
  "@media (prefers-color-scheme: dark){body{background:#0d1117;color:#e6edf3}.note{color:#9da7b3}button.secondary{background:#0d1117;color:#58a6ff}.list,td,th{border-color:#30363d}.on{color:#3fb950}.off{color:#ff7b72}.notice{background:#033a16;border-color:#3fb950}}"
].join("")

/** A whole page: `body` is HTML the caller escaped. */
export const page = (title: string, body: string, status = 200, headers: Readonly<Record<string, string>> = {}) =>
  HttpServerResponse.text(
    `<!doctype html><html lang="en"><head><meta charset="utf-8">` +
      `<meta name="viewport" content="width=device-width, initial-scale=1"><meta name="color-scheme" content="light dark">` +
      `<title>${escapeHtml(title)}</title><style>${STYLE}</style></head><body>${body}</body></html>`,
    { status, contentType: "text/html; charset=utf-8", headers: { ...pageHeaders, ...headers } }
  )

/** A 303 to another page of this server (after a form's POST, so a reload does not post again). */
export const seeOther = (location: string) =>
  HttpServerResponse.empty({ status: 303, headers: { ...pageHeaders, location } })
