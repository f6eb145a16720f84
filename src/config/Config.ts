/**
 * Every setting of kaiwa-jobs, read once through effect `Config` and validated up front, so a bad value stops
 * the process before any email is considered (exit 2, naming the variable and never echoing its value).
 * Secrets are `Redacted` and unwrapped only at the I/O call that needs them.
 */
import * as net from "node:net"
import * as os from "node:os"
import { Config, Context, Duration, Effect, Layer, Option, Redacted, Schema } from "effect"

/** A setting that is missing or malformed; `variable` names it, the value is never repeated. */
export class InvalidConfig extends Schema.TaggedError<InvalidConfig>()("InvalidConfig", {
  variable: Schema.String,
  message: Schema.String
}) {}

/** Minutes after local midnight, parsed from "HH:MM". */
export type LocalTime = number

/** The resolved settings. */
export interface Settings {
  readonly databaseUrl: Option.Option<Redacted.Redacted<string>>
  readonly resendApiKey: Option.Option<Redacted.Redacted<string>>
  readonly mailFrom: string
  readonly founderFrom: string
  /** FOUNDER_NAME, who signs the founder emails; never derived from a From display name (issue 20). */
  readonly founderName: string
  readonly founderCallUrl: string
  readonly appUrl: string
  readonly unsubscribeSecret: Redacted.Redacted<string>
  readonly cronSecret: Option.Option<Redacted.Redacted<string>>
  /** The operator console's secret (CONTRACT 7); unset, `/console` is disabled. At least 32 characters. */
  readonly consoleSecret: Option.Option<Redacted.Redacted<string>>
  /** Resend's webhook signing secret (`whsec_...`); unset, `POST /webhooks/resend` answers 503. */
  readonly resendWebhookSecret: Option.Option<Redacted.Redacted<string>>
  readonly defaultTimezone: string
  readonly reminderLocalTime: LocalTime
  readonly founderLocalTime: LocalTime
  /** The local day the weekly progress report goes out on (PROGRESS_DAY). */
  readonly progressDay: Weekday
  readonly progressLocalTime: LocalTime
  readonly minHoursBetweenEmails: number
  readonly resendRps: number
  /**
   * Whether RESEND_RPS is one budget for every process sharing DATABASE_URL (`shared`, the default: CONTRACT 8b)
   * or a budget per process (`process`, the behaviour before issue 13, kept so bench/ratelimit.ts can compare).
   */
  readonly resendRpsScope: "shared" | "process"
  readonly resendBaseUrl: string
  readonly resendTimeout: Duration.Duration
  readonly sendDeadline: Duration.Duration
  /** How long a claimed batch stays owned by one worker without a heartbeat (not in the contract; tests shorten it). */
  readonly leaseSeconds: number
  readonly port: number
  /** HOST: the address the HTTP server binds; unset, the server's own default (all interfaces on Fly). */
  readonly host: Option.Option<string>
  readonly posthogApiKey: Option.Option<Redacted.Redacted<string>>
  readonly posthogHost: string
  readonly otlpEndpoint: Option.Option<string>
  /** Which machine ran a job (Fly's machine id, else the host name), recorded on each run. */
  readonly machine: string
}

/** Which variables a mode insists on. Live sends real email, so it refuses to guess. */
export type Strictness = "live" | "lenient"

// A development-only secret: lets the demo and dry runs render working unsubscribe links without configuration.
// Live mode never uses it (UNSUBSCRIBE_SECRET is required there).
const DEV_UNSUBSCRIBE_SECRET = "kaiwa-jobs-development-unsubscribe-secret"

const isTimeZone = (tz: string): boolean => {
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

/** One thing wrong with one setting: `problem` completes a sentence that begins with the variable's name. */
interface Problem {
  readonly variable: string
  readonly problem: string
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
const isBaseUrl = (s: string): boolean => {
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

const MIN_DISTINCT_SECRET_CHARACTERS = 8

/**
 * A Standard Webhooks signing secret: `whsec_` and the base64 of the key (what Resend's dashboard shows). Checked
 * up front so a secret pasted without its prefix, or cut short, stops the server at start-up (exit 2) instead of
 * turning every webhook into a 401.
 */
export const isWebhookSecret = (s: string): boolean =>
  /^whsec_[A-Za-z0-9+/]{16,}={0,2}$/.test(s) && (s.length - "whsec_".length) % 4 === 0

/**
 * The jobs this process may send live: `all` for the HTTP server, one job for a CLI run or a Fly main. Live
 * settings insist on what those jobs need (FOUNDER_NAME for the founder sequence) and nothing more.
 */
export const LiveJobs = Context.Reference<ReadonlyArray<string> | "all">("kaiwa-jobs/Config/LiveJobs", {
  defaultValue: () => "all"
})

/** The job whose emails are signed with FOUNDER_NAME (src/jobs/FounderEmails.ts). */
export const FOUNDER_EMAILS_JOB = "founder-emails"

// The name in development runs, demos and previews. Never the sender's display name: FOUNDER_FROM is often
// "Kaiwa <hello@...>" or "Yuki at Kaiwa <...>", and "I'm Kaiwa" or "a call with Yuki at Kaiwa" reads like a bot.
const DEV_FOUNDER_NAME = "The Kaiwa founder"

/** Reads a variable as given (no trimming, so whitespace and control characters can be judged). */
const raw = (name: string) =>
  Config.option(Config.String(name)).pipe(Effect.orElseSucceed(() => Option.none<string>()))

/**
 * Validation of every setting that collects every problem instead of stopping at the first: live mode lists them
 * all in one message (CONTRACT 7a). Each reader returns the value, or `undefined` after recording why not.
 */
const makeChecks = (env: ReadonlyMap<string, Option.Option<string>>, live: boolean) => {
  const problems: Array<Problem> = []
  const report = (variable: string, problem: string): undefined => {
    problems.push({ variable, problem })
    return undefined
  }
  const given = (name: string): string | undefined => {
    const value = Option.getOrUndefined(env.get(name) ?? Option.none())
    return value === undefined || value === "" ? undefined : value
  }
  /** A plain setting: control characters refused, surrounding spaces trimmed; blank counts as unset. */
  const text = (name: string): string | undefined => {
    const value = given(name)
    if (value === undefined) return undefined
    if (hasControlCharacter(value)) return report(name, "contains a control character (a line break, a tab or similar)")
    return value.trim() === "" ? undefined : value.trim()
  }
  /** A secret: besides control characters, any surrounding whitespace is refused (never silently trimmed). */
  const secret = (name: string, rules: { readonly operatorChosen: boolean; readonly minLength?: number }) => {
    const value = given(name)
    if (value === undefined) return undefined
    if (hasControlCharacter(value)) return report(name, "contains a control character (a trailing newline pasted with it?)")
    if (value.trim() !== value) return report(name, "has whitespace around it (a space or newline pasted with it?)")
    if (rules.minLength !== undefined && value.length < rules.minLength) {
      return report(name, `must be at least ${rules.minLength} characters`)
    }
    if (rules.operatorChosen && isWeakSecret(value)) {
      return report(name, `is trivially weak (fewer than ${MIN_DISTINCT_SECRET_CHARACTERS} different characters); use a random value`)
    }
    return value
  }
  const required = <A>(name: string, value: A | undefined, fallback: A): A => {
    if (value !== undefined) return value
    // A value that was present but refused has been reported already; blank or absent is missing.
    if (live && problems.every((p) => p.variable !== name)) report(name, "is required in live mode")
    return fallback
  }
  /** Applies `parse` to a value that is present; a value that does not parse is reported, never echoed. */
  const parsed = <A>(name: string, value: string | undefined, parse: (s: string) => Option.Option<A>, expected: string) => {
    if (value === undefined) return undefined
    return Option.getOrElse(parse(value), () => report(name, `must be ${expected}`))
  }
  const check = (name: string, value: string | undefined, ok: (s: string) => boolean, expected: string) =>
    parsed(name, value, (s) => ok(s) ? Option.some(s) : Option.none(), expected)
  return { problems, report, text, secret, required, parsed, check }
}

const positiveInt = (s: string) => /^\d+$/.test(s) && Number(s) > 0 ? Option.some(Number(s)) : Option.none<number>()
const positiveNumber = (s: string) => {
  const n = Number(s)
  return s !== "" && Number.isFinite(n) && n > 0 ? Option.some(n) : Option.none<number>()
}
const duration = (s: string) => Option.fromUndefinedOr(parseDuration(s))

const MAILBOX = "an email address as `email@example.com` or `Name <email@example.com>`"
const HTTP_URL = "an absolute http(s) URL"
const BASE_URL = "an absolute http(s) URL without a query or fragment"

/** Every variable `load` reads. */
const VARIABLES = [
  "DATABASE_URL", "RESEND_API_KEY", "MAIL_FROM", "FOUNDER_FROM", "FOUNDER_NAME", "FOUNDER_CALL_URL", "APP_URL",
  "UNSUBSCRIBE_SECRET", "CRON_SECRET", "CONSOLE_SECRET", "RESEND_WEBHOOK_SECRET", "DEFAULT_TIMEZONE",
  "REMINDER_LOCAL_TIME", "FOUNDER_LOCAL_TIME", "PROGRESS_DAY", "PROGRESS_LOCAL_TIME", "MIN_HOURS_BETWEEN_EMAILS",
  "RESEND_RPS", "RESEND_RPS_SCOPE", "RESEND_BASE_URL", "RESEND_TIMEOUT", "SEND_DEADLINE", "LEASE_SECONDS", "PORT",
  "HOST", "POSTHOG_API_KEY", "POSTHOG_HOST", "OTEL_EXPORTER_OTLP_ENDPOINT", "FLY_MACHINE_ID"
] as const

/**
 * Reads and validates every setting from the current ConfigProvider. Every problem is collected and reported in
 * one `InvalidConfig` (its `variable` names them all, comma-separated), so an operator fixes them in one go.
 */
export const load = (strictness: Strictness): Effect.Effect<Settings, InvalidConfig> =>
  Effect.gen(function*() {
    const live = strictness === "live"
    const liveJobs = yield* LiveJobs
    const env = new Map<string, Option.Option<string>>()
    for (const name of VARIABLES) env.set(name, yield* raw(name))
    const { check, parsed, problems, required, secret, text } = makeChecks(env, live)

    const databaseUrl = Option.fromUndefinedOr(required<string | undefined>(
      "DATABASE_URL",
      check("DATABASE_URL", secret("DATABASE_URL", { operatorChosen: false }), isDatabaseUrl, "a PostgreSQL URL such as postgres://user:password@host:5432/database"),
      undefined
    ))
    const resendApiKey = Option.fromUndefinedOr(
      required<string | undefined>("RESEND_API_KEY", secret("RESEND_API_KEY", { operatorChosen: false }), undefined)
    )
    const mailFrom = required("MAIL_FROM", check("MAIL_FROM", text("MAIL_FROM"), isMailbox, MAILBOX), "Kaiwa <hello@kaiwa.local>")
    const appUrl = required("APP_URL", check("APP_URL", text("APP_URL"), isBaseUrl, BASE_URL), "http://localhost:8080")
      .replace(/\/+$/, "")
    const unsubscribeSecret = required(
      "UNSUBSCRIBE_SECRET",
      secret("UNSUBSCRIBE_SECRET", { operatorChosen: true, minLength: 16 }),
      DEV_UNSUBSCRIBE_SECRET
    )
    const founderFrom = check("FOUNDER_FROM", text("FOUNDER_FROM"), isMailbox, MAILBOX) ?? mailFrom
    const founderNameGiven = text("FOUNDER_NAME")
    // CONTRACT 5.2 and 7a: a founder email is signed by a person, so a process that can send one live insists on
    // the name (the sender's display name is never a stand-in for it).
    const founderLive = live && (liveJobs === "all" || liveJobs.includes(FOUNDER_EMAILS_JOB))
    const founderName = founderLive ? required("FOUNDER_NAME", founderNameGiven, "") : founderNameGiven ?? DEV_FOUNDER_NAME
    const founderCallUrl = check("FOUNDER_CALL_URL", text("FOUNDER_CALL_URL"), isHttpUrl, HTTP_URL) ?? `${appUrl}/call`
    const defaultTimezone = check("DEFAULT_TIMEZONE", text("DEFAULT_TIMEZONE"), isTimeZone, "an IANA time zone name") ?? "UTC"
    const hhmm = "a local time HH:MM"
    const reminderLocalTime = parsed("REMINDER_LOCAL_TIME", text("REMINDER_LOCAL_TIME"), parseLocalTime, hhmm) ?? 9 * 60
    const founderLocalTime = parsed("FOUNDER_LOCAL_TIME", text("FOUNDER_LOCAL_TIME"), parseLocalTime, hhmm) ?? 14 * 60
    const progressDay = parsed("PROGRESS_DAY", text("PROGRESS_DAY"), parseWeekday, "a day of the week (monday..sunday)") ?? "sunday"
    const progressLocalTime = parsed("PROGRESS_LOCAL_TIME", text("PROGRESS_LOCAL_TIME"), parseLocalTime, hhmm) ?? 8 * 60
    const minHoursBetweenEmails = parsed(
      "MIN_HOURS_BETWEEN_EMAILS",
      text("MIN_HOURS_BETWEEN_EMAILS"),
      (s) => /^\d+(\.\d+)?$/.test(s) ? Option.some(Number(s)) : Option.none(),
      "a number of hours, 0 or more"
    ) ?? 20
    const resendRps = parsed("RESEND_RPS", text("RESEND_RPS"), positiveNumber, "a positive number") ?? 2
    const resendRpsScope = parsed(
      "RESEND_RPS_SCOPE",
      text("RESEND_RPS_SCOPE"),
      (s): Option.Option<"shared" | "process"> => s === "shared" || s === "process" ? Option.some(s) : Option.none(),
      "shared or process"
    ) ?? "shared"
    const resendBaseUrl = (check("RESEND_BASE_URL", text("RESEND_BASE_URL"), isBaseUrl, BASE_URL) ?? "https://api.resend.com")
      .replace(/\/+$/, "")
    const resendTimeout = parsed("RESEND_TIMEOUT", text("RESEND_TIMEOUT"), duration, "a duration such as 30s") ?? Duration.seconds(30)
    const sendDeadline = parsed("SEND_DEADLINE", text("SEND_DEADLINE"), duration, "a duration such as 10m, 90s or \"10 minutes\"") ??
      Duration.minutes(10)
    const leaseSeconds = parsed("LEASE_SECONDS", text("LEASE_SECONDS"), positiveInt, "a positive integer") ?? 30
    const port = parsed("PORT", text("PORT"), (s) => positiveInt(s).pipe(Option.filter((n) => n < 65536)), "a TCP port number") ?? 8080
    const host = check("HOST", text("HOST"), isBindAddress, "an IP address or a host name to listen on (0.0.0.0, ::, 127.0.0.1)")
    const cronSecret = secret("CRON_SECRET", { operatorChosen: true })
    const consoleSecret = secret("CONSOLE_SECRET", { operatorChosen: true, minLength: 32 })
    const resendWebhookSecret = check(
      "RESEND_WEBHOOK_SECRET",
      secret("RESEND_WEBHOOK_SECRET", { operatorChosen: false }),
      isWebhookSecret,
      "the webhook's signing secret as Resend shows it: whsec_ followed by base64"
    )
    const posthogApiKey = secret("POSTHOG_API_KEY", { operatorChosen: false })
    const posthogHost = check("POSTHOG_HOST", text("POSTHOG_HOST"), isBaseUrl, BASE_URL) ?? "https://us.i.posthog.com"
    const otlpEndpoint = check("OTEL_EXPORTER_OTLP_ENDPOINT", text("OTEL_EXPORTER_OTLP_ENDPOINT"), isHttpUrl, HTTP_URL)
    const machine = text("FLY_MACHINE_ID") ?? os.hostname()

    if (problems.length > 0) {
      return yield* new InvalidConfig({
        variable: [...new Set(problems.map((p) => p.variable))].join(", "),
        message: problems.length === 1
          ? `${problems[0]!.variable} ${problems[0]!.problem}`
          : `${problems.length} problems: ${problems.map((p) => `${p.variable} ${p.problem}`).join("; ")}`
      })
    }
    return {
      databaseUrl: Option.map(databaseUrl, Redacted.make),
      resendApiKey: Option.map(resendApiKey, Redacted.make),
      mailFrom,
      founderFrom,
      founderName,
      founderCallUrl,
      appUrl,
      unsubscribeSecret: Redacted.make(unsubscribeSecret),
      cronSecret: Option.map(Option.fromUndefinedOr(cronSecret), Redacted.make),
      consoleSecret: Option.map(Option.fromUndefinedOr(consoleSecret), Redacted.make),
      resendWebhookSecret: Option.map(Option.fromUndefinedOr(resendWebhookSecret), Redacted.make),
      defaultTimezone,
      reminderLocalTime,
      founderLocalTime,
      progressDay,
      progressLocalTime,
      minHoursBetweenEmails,
      resendRps,
      resendRpsScope,
      resendBaseUrl,
      resendTimeout,
      sendDeadline,
      leaseSeconds,
      port,
      host: Option.fromUndefinedOr(host),
      posthogApiKey: Option.map(Option.fromUndefinedOr(posthogApiKey), Redacted.make),
      posthogHost,
      otlpEndpoint: Option.fromUndefinedOr(otlpEndpoint),
      machine
    }
  })

const isMailbox = (s: string): boolean => Option.isSome(parseMailbox(s))

/** "10m", "90s", "2h", "500ms" or anything `Duration` accepts ("10 minutes"). */
export const parseDuration = (s: string): Duration.Duration | undefined => {
  const short = /^(\d+)(ms|s|m|h)$/.exec(s.trim())
  if (short) {
    const unit = ({ ms: "millis", s: "seconds", m: "minutes", h: "hours" } as const)[short[2] as "ms" | "s" | "m" | "h"]
    return Duration.fromInputUnsafe(`${Number(short[1])} ${unit}`)
  }
  return Option.getOrUndefined(Duration.fromInput(s.trim() as Duration.Input))
}

/** The settings as a service. */
export class JobsConfig extends Context.Service<JobsConfig, Settings>()("kaiwa-jobs/Config") {
  /** Lenient: development defaults for everything a local run can do without. */
  static readonly layer = Layer.effect(JobsConfig, load("lenient"))
  /** Live: refuses to start without what sending real email needs. */
  static readonly layerLive = Layer.effect(JobsConfig, load("live"))
}
