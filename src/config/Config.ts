/**
 * The settings every module shares, read once through effect `Config` and validated up front, so a bad value
 * stops the process before any email is considered (exit 2, naming the variable and never echoing its value).
 * Secrets are `Redacted` and unwrapped only at the I/O call that needs them. A job's own settings (the reminder's
 * local time, the report's day) are declared by the job (`Definition.settings`) and validated together with these
 * (`JobSettings`), so every problem is reported in one message. The full list: docs/configuration.md.
 */
import * as os from "node:os"
import { type Config, Context, Duration, Effect, Layer, Option, Redacted } from "effect"
import { type Checks, InvalidConfig, makeChecks, type Problem, problemsReading, raw } from "./Setting.ts"
import { isBaseUrl, isBindAddress, isDatabaseUrl, isHttpUrl, isMailbox, isTimeZone, isWebhookSecret, parseDuration } from "./Values.ts"

export { InvalidConfig } from "./Setting.ts"
export {
  hasControlCharacter,
  isBindAddress,
  isDatabaseUrl,
  isHttpUrl,
  isWeakSecret,
  isWebhookSecret,
  type LocalTime,
  parseDuration,
  parseLocalTime,
  parseMailbox,
  parseWeekday,
  type Weekday,
  WEEKDAYS
} from "./Values.ts"

/** The shared settings, resolved. A job's own settings are in its declaration (`Definition.settings`). */
export interface Settings {
  readonly databaseUrl: Option.Option<Redacted.Redacted<string>>
  readonly resendApiKey: Option.Option<Redacted.Redacted<string>>
  readonly mailFrom: string
  readonly founderFrom: string
  /** FOUNDER_NAME, who signs the founder emails; never derived from a From display name. */
  readonly founderName: string
  readonly founderCallUrl: string
  readonly appUrl: string
  readonly unsubscribeSecret: Redacted.Redacted<string>
  readonly cronSecret: Option.Option<Redacted.Redacted<string>>
  /** The operator console's secret; unset, `/console` is disabled. At least 32 characters. */
  readonly consoleSecret: Option.Option<Redacted.Redacted<string>>
  /** Resend's webhook signing secret (`whsec_...`); unset, `POST /webhooks/resend` answers 503. */
  readonly resendWebhookSecret: Option.Option<Redacted.Redacted<string>>
  readonly defaultTimezone: string
  readonly minHoursBetweenEmails: number
  readonly resendRps: number
  /**
   * Whether RESEND_RPS is one budget for every process sharing DATABASE_URL (`shared`, the default)
   * or a budget per process (`process`, the first release's behaviour, kept so bench/ratelimit.ts can compare).
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
  readonly otlpEndpoint: Option.Option<string>
  /** Which machine ran a job (Fly's machine id, else the host name), recorded on each run. */
  readonly machine: string
}


/** Which variables a mode insists on. Live sends real email, so it refuses to guess. */
export type Strictness = "live" | "lenient"

/**
 * The jobs this process may send live: `all` for the HTTP server, one job for a CLI run or a Fly main. Live
 * settings insist on what those jobs need (FOUNDER_NAME for the founder sequence) and nothing more.
 */
export const LiveJobs = Context.Reference<ReadonlyArray<string> | "all">("kaiwa-jobs/Config/LiveJobs", {
  defaultValue: () => "all"
})

/**
 * The own settings of the jobs this process may run (each job's `Definition.settings`), validated with the shared
 * ones so that one message lists every problem. A trigger provides them (src/triggers/Cli.ts); none by default.
 */
export const JobSettings = Context.Reference<ReadonlyArray<Config.Config<unknown>>>("kaiwa-jobs/Config/JobSettings", {
  defaultValue: () => []
})

/** The job whose emails are signed with FOUNDER_NAME (src/jobs/FounderEmails.ts). */
export const FOUNDER_EMAILS_JOB = "founder-emails"

// A development-only secret: lets the demo and dry runs render working unsubscribe links without configuration.
// Live mode never uses it (UNSUBSCRIBE_SECRET is required there).
const DEV_UNSUBSCRIBE_SECRET = "kaiwa-jobs-development-unsubscribe-secret"

// The name in development runs, demos and previews. Never the sender's display name: FOUNDER_FROM is often
// "Kaiwa <hello@...>" or "Yuki at Kaiwa <...>", and "I'm Kaiwa" or "a call with Yuki at Kaiwa" reads like a bot.
const DEV_FOUNDER_NAME = "The Kaiwa founder"

const MAILBOX = "an email address as `email@example.com` or `Name <email@example.com>`"
const HTTP_URL = "an absolute http(s) URL"
const BASE_URL = "an absolute http(s) URL without a query or fragment"

const positiveInt = (s: string) => /^\d+$/.test(s) && Number(s) > 0 ? Option.some(Number(s)) : Option.none<number>()
const positiveNumber = (s: string) => {
  const n = Number(s)
  return s !== "" && Number.isFinite(n) && n > 0 ? Option.some(n) : Option.none<number>()
}
const hours = (s: string) => /^\d+(\.\d+)?$/.test(s) ? Option.some(Number(s)) : Option.none<number>()
const duration = (s: string) => Option.fromUndefinedOr(parseDuration(s))
const rpsScope = (s: string): Option.Option<"shared" | "process"> => s === "shared" || s === "process" ? Option.some(s) : Option.none()
const port = (s: string) => positiveInt(s).pipe(Option.filter((n) => n < 65536))
const redacted = (value: string | undefined) => Option.map(Option.fromUndefinedOr(value), Redacted.make)

/** The two connections a live run needs (src/database/Database.ts, src/mail/ResendMailer.ts). */
const connections = ({ check, required, secret }: Checks) => ({
  databaseUrl: redacted(required<string | undefined>(
    "DATABASE_URL",
    check("DATABASE_URL", secret("DATABASE_URL", { operatorChosen: false }), isDatabaseUrl, "a PostgreSQL URL such as postgres://user:password@host:5432/database"),
    undefined
  )),
  resendApiKey: redacted(required<string | undefined>("RESEND_API_KEY", secret("RESEND_API_KEY", { operatorChosen: false }), undefined))
})

/** Who every email is from, where its links point and who signs the founder's (src/mail/Links.ts, the jobs). */
const emails = ({ check, required, secret, text }: Checks, founderLive: boolean) => {
  const mailFrom = required("MAIL_FROM", check("MAIL_FROM", text("MAIL_FROM"), isMailbox, MAILBOX), "Kaiwa <hello@kaiwa.local>")
  const appUrl = required("APP_URL", check("APP_URL", text("APP_URL"), isBaseUrl, BASE_URL), "http://localhost:8080").replace(/\/+$/, "")
  const unsubscribeSecret = required("UNSUBSCRIBE_SECRET", secret("UNSUBSCRIBE_SECRET", { operatorChosen: true, minLength: 16 }), DEV_UNSUBSCRIBE_SECRET)
  const founderFrom = check("FOUNDER_FROM", text("FOUNDER_FROM"), isMailbox, MAILBOX) ?? mailFrom
  const founderNameGiven = text("FOUNDER_NAME")
  // A founder email is signed by a person, so a process that can send one live insists on
  // the name (the sender's display name is never a stand-in for it).
  const founderName = founderLive ? required("FOUNDER_NAME", founderNameGiven, "") : founderNameGiven ?? DEV_FOUNDER_NAME
  const founderCallUrl = check("FOUNDER_CALL_URL", text("FOUNDER_CALL_URL"), isHttpUrl, HTTP_URL) ?? `${appUrl}/call`
  const defaultTimezone = check("DEFAULT_TIMEZONE", text("DEFAULT_TIMEZONE"), isTimeZone, "an IANA time zone name") ?? "UTC"
  return { mailFrom, appUrl, unsubscribeSecret: Redacted.make(unsubscribeSecret), founderFrom, founderName, founderCallUrl, defaultTimezone }
}

/** How emails leave: the cross-job cap, the provider's limits and deadlines (src/delivery, src/mail). */
const delivery = ({ check, parsed, text }: Checks) => ({
  minHoursBetweenEmails: parsed("MIN_HOURS_BETWEEN_EMAILS", text("MIN_HOURS_BETWEEN_EMAILS"), hours, "a number of hours, 0 or more") ?? 20,
  resendRps: parsed("RESEND_RPS", text("RESEND_RPS"), positiveNumber, "a positive number") ?? 2,
  resendRpsScope: parsed("RESEND_RPS_SCOPE", text("RESEND_RPS_SCOPE"), rpsScope, "shared or process") ?? "shared",
  resendBaseUrl: (check("RESEND_BASE_URL", text("RESEND_BASE_URL"), isBaseUrl, BASE_URL) ?? "https://api.resend.com").replace(/\/+$/, ""),
  resendTimeout: parsed("RESEND_TIMEOUT", text("RESEND_TIMEOUT"), duration, "a duration such as 30s") ?? Duration.seconds(30),
  sendDeadline: parsed("SEND_DEADLINE", text("SEND_DEADLINE"), duration, "a duration such as 10m, 90s or \"10 minutes\"") ?? Duration.minutes(10),
  leaseSeconds: parsed("LEASE_SECONDS", text("LEASE_SECONDS"), positiveInt, "a positive integer") ?? 30
})

/** The HTTP server and what it guards (src/triggers/Http.ts, src/pages, src/feedback/Webhooks.ts). */
const server = ({ check, parsed, secret, text }: Checks) => ({
  port: parsed("PORT", text("PORT"), port, "a TCP port number") ?? 8080,
  host: Option.fromUndefinedOr(check("HOST", text("HOST"), isBindAddress, "an IP address or a host name to listen on (0.0.0.0, ::, 127.0.0.1)")),
  cronSecret: redacted(secret("CRON_SECRET", { operatorChosen: true })),
  consoleSecret: redacted(secret("CONSOLE_SECRET", { operatorChosen: true, minLength: 32 })),
  resendWebhookSecret: redacted(check(
    "RESEND_WEBHOOK_SECRET",
    secret("RESEND_WEBHOOK_SECRET", { operatorChosen: false }),
    isWebhookSecret,
    "the webhook's signing secret as Resend shows it: whsec_ followed by base64"
  ))
})

/** Analytics, traces and the machine's name (src/telemetry). */
const telemetry = ({ check, secret, text }: Checks) => {
  // PostHog's settings are read by their owner (src/telemetry/PostHogConfig.ts); they are checked here as well so
  // that a bad one is reported with every other problem, at start-up.
  secret("POSTHOG_API_KEY", { operatorChosen: false })
  check("POSTHOG_HOST", text("POSTHOG_HOST"), isBaseUrl, BASE_URL)
  return {
    otlpEndpoint: Option.fromUndefinedOr(check("OTEL_EXPORTER_OTLP_ENDPOINT", text("OTEL_EXPORTER_OTLP_ENDPOINT"), isHttpUrl, HTTP_URL)),
    machine: text("FLY_MACHINE_ID") ?? os.hostname()
  }
}

/** Every variable `load` reads itself (a job's own are read by its `Definition.settings`). */
const VARIABLES = [
  "DATABASE_URL", "RESEND_API_KEY", "MAIL_FROM", "FOUNDER_FROM", "FOUNDER_NAME", "FOUNDER_CALL_URL", "APP_URL",
  "UNSUBSCRIBE_SECRET", "CRON_SECRET", "CONSOLE_SECRET", "RESEND_WEBHOOK_SECRET", "DEFAULT_TIMEZONE",
  "MIN_HOURS_BETWEEN_EMAILS", "RESEND_RPS", "RESEND_RPS_SCOPE", "RESEND_BASE_URL", "RESEND_TIMEOUT", "SEND_DEADLINE",
  "LEASE_SECONDS", "PORT", "HOST", "POSTHOG_API_KEY", "POSTHOG_HOST", "OTEL_EXPORTER_OTLP_ENDPOINT", "FLY_MACHINE_ID"
] as const

const readVariables = Effect.map(
  Effect.forEach(VARIABLES, (name) => Effect.map(raw(name), (value) => [name, value] as const)),
  (entries) => new Map<string, Option.Option<string>>(entries)
)

/** Whether FOUNDER_NAME is needed: a live process that may send the founder sequence. */
const founderLive = (strictness: Strictness) =>
  Effect.map(LiveJobs, (jobs) => strictness === "live" && (jobs === "all" || jobs.includes(FOUNDER_EMAILS_JOB)))

/** The problems of every job's own settings (`JobSettings`), in the order the jobs are given. */
const jobProblems: Effect.Effect<ReadonlyArray<Problem>> = Effect.flatMap(
  JobSettings,
  (configs) => Effect.map(Effect.forEach(configs, problemsReading), (problems) => problems.flat())
)

/**
 * Reads and validates every shared setting, and the own settings of the jobs in `JobSettings`, from the current
 * ConfigProvider. Every problem is collected and reported in one `InvalidConfig`, so an operator fixes them in
 * one go: in reading order, what the emails say (connections, senders, links, each job's own settings) before
 * how they are delivered and served.
 */
export const load = (strictness: Strictness): Effect.Effect<Settings, InvalidConfig> =>
  Effect.gen(function*() {
    const checks = makeChecks(yield* readVariables, strictness === "live")
    const shared = { ...connections(checks), ...emails(checks, yield* founderLive(strictness)) }
    for (const p of yield* jobProblems) checks.report(p.variable, p.problem)
    const settings: Settings = { ...shared, ...delivery(checks), ...server(checks), ...telemetry(checks) }
    const [first, ...rest] = checks.problems
    return first === undefined ? settings : yield* InvalidConfig.of([first, ...rest])
  })

/** The settings as a service. */
export class JobsConfig extends Context.Service<JobsConfig, Settings>()("kaiwa-jobs/Config") {
  /** Lenient: development defaults for everything a local run can do without. */
  static readonly layer = Layer.effect(JobsConfig, load("lenient"))
  /** Live: refuses to start without what sending real email needs. */
  static readonly layerLive = Layer.effect(JobsConfig, load("live"))
}
