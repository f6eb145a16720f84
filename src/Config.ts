/**
 * Every setting of kaiwa-jobs, read once through effect `Config` and validated up front, so a bad value stops
 * the process before any email is considered (exit 2, naming the variable and never echoing its value).
 * Secrets are `Redacted` and unwrapped only at the I/O call that needs them.
 */
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
  readonly founderName: string
  readonly founderCallUrl: string
  readonly appUrl: string
  readonly unsubscribeSecret: Redacted.Redacted<string>
  readonly cronSecret: Option.Option<Redacted.Redacted<string>>
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
  readonly posthogApiKey: Option.Option<Redacted.Redacted<string>>
  readonly posthogHost: string
  readonly otlpEndpoint: Option.Option<string>
  /** Which machine ran a job (Fly's machine id, else the host name), recorded on each run. */
  readonly host: string
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

/** An absolute http: or https: URL. */
export const isHttpUrl = (s: string): boolean => {
  try {
    const u = new URL(s)
    return u.protocol === "https:" || u.protocol === "http:"
  } catch {
    return false
  }
}

const fail = (variable: string, problem: string) =>
  Effect.fail(new InvalidConfig({ variable, message: `${variable} ${problem}` }))

/** An optional string setting; empty counts as unset. */
const optional = (name: string) =>
  Config.option(Config.String(name)).pipe(
    Effect.map(Option.filter((s) => s.trim() !== "")),
    Effect.mapError(() => new InvalidConfig({ variable: name, message: `${name} could not be read` }))
  )

const required = (name: string, why: string) =>
  optional(name).pipe(
    Effect.flatMap(Option.match({ onNone: () => fail(name, `is required ${why}`), onSome: Effect.succeed }))
  )

const withDefault = (name: string, fallback: string) => optional(name).pipe(Effect.map(Option.getOrElse(() => fallback)))

const validated = <A>(name: string, raw: string, parse: (s: string) => Option.Option<A>, expected: string) =>
  Option.match(parse(raw), { onNone: () => fail(name, `must be ${expected}`), onSome: Effect.succeed })

const positiveInt = (s: string) => /^\d+$/.test(s.trim()) && Number(s) > 0 ? Option.some(Number(s)) : Option.none<number>()
const positiveNumber = (s: string) => {
  const n = Number(s)
  return s.trim() !== "" && Number.isFinite(n) && n > 0 ? Option.some(n) : Option.none<number>()
}

/**
 * A Standard Webhooks signing secret: `whsec_` and the base64 of the key (what Resend's dashboard shows). Checked
 * up front so a secret pasted without its prefix, or cut short, stops the server at start-up (exit 2) instead of
 * turning every webhook into a 401.
 */
export const isWebhookSecret = (s: string): boolean =>
  /^whsec_[A-Za-z0-9+/]{16,}={0,2}$/.test(s) && (s.length - "whsec_".length) % 4 === 0

/** Reads and validates every setting from the current ConfigProvider. */
export const load = (strictness: Strictness): Effect.Effect<Settings, InvalidConfig> =>
  Effect.gen(function*() {
    const live = strictness === "live"
    const why = "in live mode"
    const databaseUrl = live ? Option.some(yield* required("DATABASE_URL", why)) : yield* optional("DATABASE_URL")
    const resendApiKey = live ? Option.some(yield* required("RESEND_API_KEY", why)) : yield* optional("RESEND_API_KEY")
    const mailFrom = live ? yield* required("MAIL_FROM", why) : yield* withDefault("MAIL_FROM", "Kaiwa <hello@kaiwa.local>")
    const appUrl = (live ? yield* required("APP_URL", why) : yield* withDefault("APP_URL", "http://localhost:8080"))
      .replace(/\/+$/, "")
    if (!isHttpUrl(appUrl)) return yield* fail("APP_URL", "must be an http(s) URL")
    const unsubscribeSecret = live
      ? yield* required("UNSUBSCRIBE_SECRET", why)
      : yield* withDefault("UNSUBSCRIBE_SECRET", DEV_UNSUBSCRIBE_SECRET)
    if (unsubscribeSecret.length < 16) return yield* fail("UNSUBSCRIBE_SECRET", "must be at least 16 characters")
    const founderFrom = yield* withDefault("FOUNDER_FROM", mailFrom)
    const founderCallUrl = yield* withDefault("FOUNDER_CALL_URL", `${appUrl}/call`)
    if (!isHttpUrl(founderCallUrl)) return yield* fail("FOUNDER_CALL_URL", "must be an http(s) URL")
    const defaultTimezone = yield* withDefault("DEFAULT_TIMEZONE", "UTC")
    if (!isTimeZone(defaultTimezone)) return yield* fail("DEFAULT_TIMEZONE", "must be an IANA time zone name")
    const hhmm = "a local time HH:MM"
    const reminderLocalTime = yield* validated("REMINDER_LOCAL_TIME", yield* withDefault("REMINDER_LOCAL_TIME", "09:00"), parseLocalTime, hhmm)
    const founderLocalTime = yield* validated("FOUNDER_LOCAL_TIME", yield* withDefault("FOUNDER_LOCAL_TIME", "14:00"), parseLocalTime, hhmm)
    const progressDay = yield* validated("PROGRESS_DAY", yield* withDefault("PROGRESS_DAY", "sunday"), parseWeekday, "a day of the week (monday..sunday)")
    const progressLocalTime = yield* validated("PROGRESS_LOCAL_TIME", yield* withDefault("PROGRESS_LOCAL_TIME", "08:00"), parseLocalTime, hhmm)
    const minHoursBetweenEmails = yield* validated(
      "MIN_HOURS_BETWEEN_EMAILS",
      yield* withDefault("MIN_HOURS_BETWEEN_EMAILS", "20"),
      (s) => /^\d+(\.\d+)?$/.test(s.trim()) ? Option.some(Number(s)) : Option.none(),
      "a number of hours, 0 or more"
    )
    const resendRps = yield* validated("RESEND_RPS", yield* withDefault("RESEND_RPS", "2"), positiveNumber, "a positive number")
    const resendRpsScope = yield* validated(
      "RESEND_RPS_SCOPE",
      yield* withDefault("RESEND_RPS_SCOPE", "shared"),
      (s): Option.Option<"shared" | "process"> => s === "shared" || s === "process" ? Option.some(s) : Option.none(),
      "shared or process"
    )
    const resendBaseUrl = (yield* withDefault("RESEND_BASE_URL", "https://api.resend.com")).replace(/\/+$/, "")
    if (!isHttpUrl(resendBaseUrl)) return yield* fail("RESEND_BASE_URL", "must be an http(s) URL")
    const resendTimeout = yield* validated(
      "RESEND_TIMEOUT",
      yield* withDefault("RESEND_TIMEOUT", "30s"),
      (s) => Option.fromUndefinedOr(parseDuration(s)),
      "a duration such as 30s"
    )
    const sendDeadline = yield* validated(
      "SEND_DEADLINE",
      yield* withDefault("SEND_DEADLINE", "10 minutes"),
      (s) => Option.fromUndefinedOr(parseDuration(s)),
      "a duration such as 10m, 90s or \"10 minutes\""
    )
    const leaseSeconds = yield* validated("LEASE_SECONDS", yield* withDefault("LEASE_SECONDS", "30"), positiveInt, "a positive integer")
    const port = yield* validated(
      "PORT",
      yield* withDefault("PORT", "8080"),
      (s) => positiveInt(s).pipe(Option.filter((n) => n < 65536)),
      "a TCP port number"
    )
    const cronSecret = yield* optional("CRON_SECRET")
    const resendWebhookSecret = yield* optional("RESEND_WEBHOOK_SECRET")
    if (Option.isSome(resendWebhookSecret) && !isWebhookSecret(resendWebhookSecret.value)) {
      return yield* fail(
        "RESEND_WEBHOOK_SECRET",
        "must be the webhook's signing secret as Resend shows it: whsec_ followed by base64"
      )
    }
    const posthogApiKey = yield* optional("POSTHOG_API_KEY")
    const posthogHost = yield* withDefault("POSTHOG_HOST", "https://us.i.posthog.com")
    const otlpEndpoint = yield* optional("OTEL_EXPORTER_OTLP_ENDPOINT")
    const host = yield* withDefault("FLY_MACHINE_ID", os.hostname())
    const founderName = yield* withDefault("FOUNDER_NAME", displayNameOf(founderFrom) ?? "The Kaiwa founder")
    return {
      databaseUrl: Option.map(databaseUrl, Redacted.make),
      resendApiKey: Option.map(resendApiKey, Redacted.make),
      mailFrom,
      founderFrom,
      founderName,
      founderCallUrl,
      appUrl,
      unsubscribeSecret: Redacted.make(unsubscribeSecret),
      cronSecret: Option.map(cronSecret, Redacted.make),
      resendWebhookSecret: Option.map(resendWebhookSecret, Redacted.make),
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
      posthogApiKey: Option.map(posthogApiKey, Redacted.make),
      posthogHost,
      otlpEndpoint,
      host
    }
  })

/** "10m", "90s", "2h", "500ms" or anything `Duration` accepts ("10 minutes"). */
export const parseDuration = (s: string): Duration.Duration | undefined => {
  const short = /^(\d+)(ms|s|m|h)$/.exec(s.trim())
  if (short) {
    const unit = ({ ms: "millis", s: "seconds", m: "minutes", h: "hours" } as const)[short[2] as "ms" | "s" | "m" | "h"]
    return Duration.fromInputUnsafe(`${Number(short[1])} ${unit}`)
  }
  return Option.getOrUndefined(Duration.fromInput(s.trim() as Duration.Input))
}

const displayNameOf = (from: string): string | undefined => {
  const m = /^\s*"?([^"<]+?)"?\s*</.exec(from)
  return m?.[1]
}

/** The settings as a service. */
export class JobsConfig extends Context.Service<JobsConfig, Settings>()("kaiwa-jobs/Config") {
  /** Lenient: development defaults for everything a local run can do without. */
  static readonly layer = Layer.effect(JobsConfig, load("lenient"))
  /** Live: refuses to start without what sending real email needs. */
  static readonly layerLive = Layer.effect(JobsConfig, load("live"))
}
