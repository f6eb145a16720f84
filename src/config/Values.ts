/**
 * What a setting's value may be: pure parsers and predicates for the shapes settings take (mailboxes, http(s)
 * URLs, PostgreSQL URLs, local times, durations, secrets). No I/O and no `Config`: the readers in Setting.ts
 * and the modules that own a setting apply them.
 */
import * as net from "node:net"
import { Duration, Option } from "effect"

/** Minutes after local midnight, parsed from "HH:MM". */
export type LocalTime = number

/** An IANA time zone name this runtime knows ("Asia/Tokyo"). */
export const isTimeZone = (tz: string): boolean => {
  try {
    new Intl.DateTimeFormat("en-US", { timeZone: tz })
    return true
  } catch {
    return false
  }
}

/** A day of the week, lower case. */
export type Weekday = "monday" | "tuesday" | "wednesday" | "thursday" | "friday" | "saturday" | "sunday"

/** The days of the week in ISO order: index + 1 is the ISO day number (Monday 1 .. Sunday 7). */
export const WEEKDAYS: ReadonlyArray<Weekday> = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]

/** Parses a day name, case-insensitively ("Sunday", "SUNDAY", " sunday "). */
export const parseWeekday = (s: string): Option.Option<Weekday> => {
  const day = s.trim().toLowerCase()
  return Option.fromUndefinedOr(WEEKDAYS.find((d) => d === day))
}

/** Parses "HH:MM" (00:00..23:59) into minutes after midnight. */
export const parseLocalTime = (s: string): Option.Option<LocalTime> => {
  const m = /^([01]\d|2[0-3]):([0-5]\d)$/.exec(s.trim())
  return m ? Option.some(Number(m[1]) * 60 + Number(m[2])) : Option.none()
}

/**
 * Control characters (C0, C1, DEL, format characters such as zero-width and bidi overrides, line and paragraph
 * separators). No setting has a use for one, and a CR/LF inside a value that reaches a header (APP_URL in
 * List-Unsubscribe, MAIL_FROM, FOUNDER_NAME) would be header injection. A trailing newline pasted with a value
 * is one too, so it is refused rather than trimmed: the operator learns that the value was not what they meant.
 */
const CONTROL = /[\p{Cc}\p{Cf}\p{Cs}\u2028\u2029]/u

/** Contains a control character (see `CONTROL`). */
export const hasControlCharacter = (s: string): boolean => CONTROL.test(s)

// RFC 5322 addr-spec in its dot-atom form (what every provider accepts): atext runs separated by single dots,
// and a domain of at least two labels. Quoted local parts and domain literals are refused: Resend refuses them too.
const ATEXT = "[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
const LABEL = "[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
const ADDR_SPEC = new RegExp(`^${ATEXT}(?:\\.${ATEXT})*@${LABEL}(?:\\.${LABEL})*\\.(?:[A-Za-z]{2,63}|xn--[A-Za-z0-9-]{1,59})$`)
// A display name: a quoted string (any printable character, `\"` and `\\` escaped), or a phrase of words without
// RFC 5322 specials (`.` allowed, as obs-phrase does and as "Kaiwa Inc." needs); UTF-8 allowed (RFC 6532).
const QUOTED_NAME = /^"(?:[^"\\]|\\["\\])*"$/
const PHRASE = /^[^()<>[\]:;@\\,"]+$/

/**
 * Parses an RFC 5322 mailbox as providers take it: `email@example.com` or `Name <email@example.com>` (the name
 * may be quoted). Returns the address, or `None` for anything else (`Kaiwa hello@kaiwa.example`, say).
 */
export const parseMailbox = (s: string): Option.Option<{ readonly name: string | undefined; readonly address: string }> => {
  if (hasControlCharacter(s) || s.length > 320) return Option.none()
  const value = s.trim()
  if (ADDR_SPEC.test(value) && value.length <= 254) return Option.some({ name: undefined, address: value })
  const named = /^(.*?)\s*<([^<>]*)>$/.exec(value)
  if (named === null) return Option.none()
  const [, name = "", address = ""] = named
  if (!ADDR_SPEC.test(address) || address.length > 254) return Option.none()
  if (name === "") return Option.some({ name: undefined, address })
  if (QUOTED_NAME.test(name)) return Option.some({ name: name.slice(1, -1).replace(/\\(["\\])/g, "$1"), address })
  return PHRASE.test(name) ? Option.some({ name, address }) : Option.none()
}

/** An absolute http: or https: URL, written without whitespace (which `new URL` would silently drop or encode). */
export const isHttpUrl = (s: string): boolean => {
  if (/\s/.test(s) || hasControlCharacter(s)) return false
  try {
    const u = new URL(s)
    return (u.protocol === "https:" || u.protocol === "http:") && u.hostname !== ""
  } catch {
    return false
  }
}

/** A base URL that paths are appended to: an http(s) URL with no query, fragment or credentials. */
export const isBaseUrl = (s: string): boolean => {
  if (!isHttpUrl(s)) return false
  const u = new URL(s)
  return u.search === "" && u.hash === "" && u.username === "" && u.password === "" && !s.includes("?") && !s.includes("#")
}

/**
 * A PostgreSQL connection URL (`postgres://` or `postgresql://`) with a host, or with `?host=` naming a socket
 * folder. Checked up front so a typo exits 2 as bad configuration instead of 1 "unreachable".
 */
export const isDatabaseUrl = (s: string): boolean => {
  if (/\s/.test(s) || hasControlCharacter(s)) return false
  try {
    const u = new URL(s)
    if (u.protocol !== "postgres:" && u.protocol !== "postgresql:") return false
    if (u.port !== "" && !(Number(u.port) > 0 && Number(u.port) < 65536)) return false
    // Percent-escapes must decode: the driver decodes the user, the password and the database name.
    decodeURIComponent(u.username)
    decodeURIComponent(u.password)
    decodeURIComponent(u.pathname)
    return u.hostname !== "" || (u.searchParams.get("host") ?? "") !== ""
  } catch {
    return false
  }
}

/** A bind address: an IP literal (`0.0.0.0`, `::`, `127.0.0.1`) or a host name (`localhost`, `fly-local-6pn`). */
export const isBindAddress = (s: string): boolean =>
  net.isIP(s) !== 0 || /^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/.test(s)

/**
 * A secret an operator chose (UNSUBSCRIBE_SECRET, CRON_SECRET, CONSOLE_SECRET) that anyone could guess: fewer
 * than 8 different characters (`xxxx...`, `000...`, `abab...`). Secrets a provider issues are not judged.
 */
export const isWeakSecret = (s: string): boolean => new Set(s).size < MIN_DISTINCT_SECRET_CHARACTERS

/** Fewer different characters than this make an operator-chosen secret trivially weak. */
export const MIN_DISTINCT_SECRET_CHARACTERS = 8

/**
 * A Standard Webhooks signing secret: `whsec_` and the base64 of the key (what Resend's dashboard shows). Checked
 * up front so a secret pasted without its prefix, or cut short, stops the server at start-up (exit 2) instead of
 * turning every webhook into a 401.
 */
export const isWebhookSecret = (s: string): boolean =>
  /^whsec_[A-Za-z0-9+/]{16,}={0,2}$/.test(s) && (s.length - "whsec_".length) % 4 === 0


/** "10m", "90s", "2h", "500ms" or anything `Duration` accepts ("10 minutes"). */
export const parseDuration = (s: string): Duration.Duration | undefined => {
  const short = /^(\d+)(ms|s|m|h)$/.exec(s.trim())
  if (short) return Duration.fromInputUnsafe(`${Number(short[1])} ${SHORT_UNITS[short[2] ?? ""] ?? "millis"}`)
  return Option.getOrUndefined(Duration.fromInput(s.trim() as Duration.Input))
}

const SHORT_UNITS: Readonly<Record<string, "millis" | "seconds" | "minutes" | "hours">> = { ms: "millis", s: "seconds", m: "minutes", h: "hours" }

/** An RFC 5322 mailbox (see `parseMailbox`). */
export const isMailbox = (s: string): boolean => Option.isSome(parseMailbox(s))
