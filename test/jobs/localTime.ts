/**
 * Local wall-clock time computed independently of the library (with `Intl`, never with its SQL), so tests can
 * state CONTRACT 4/5 rules in a user's own time zone and check the library against them.
 */
import { Effect, Ref } from "effect"
import { TestClock } from "effect/testing"
import { type Job, runJob } from "../../src/job/Job.ts"
import { MailerTestRef, type OutgoingEmail } from "../../src/mail/Mailer.ts"

/** One minute in milliseconds. */
export const MINUTE = 60_000
/** One hour in milliseconds. */
export const HOUR = 60 * MINUTE
/** 24 hours in milliseconds (not a local day: those are 23 to 25 hours long around DST changes). */
export const DAY = 24 * HOUR

/** DEFAULT_TIMEZONE as the test stack configures it. */
export const DEFAULT_TIMEZONE = "UTC"

const formatters = new Map<string, Intl.DateTimeFormat>()

const formatter = (tz: string): Intl.DateTimeFormat => {
  let f = formatters.get(tz)
  if (f === undefined) {
    f = new Intl.DateTimeFormat("en-CA", {
      timeZone: tz,
      year: "numeric",
      month: "2-digit",
      day: "2-digit",
      hour: "2-digit",
      minute: "2-digit",
      hourCycle: "h23"
    })
    formatters.set(tz, f)
  }
  return f
}

/** The zone a user is served in: `users.timezone` when it is a known IANA name, else DEFAULT_TIMEZONE. */
export const effectiveZone = (tz: string | null | undefined): string => {
  if (tz === null || tz === undefined) return DEFAULT_TIMEZONE
  try {
    formatter(tz)
    return tz
  } catch {
    return DEFAULT_TIMEZONE
  }
}

/** Local date (`YYYY-MM-DD`), `HH:MM` and minutes after midnight of an instant in a zone. */
export const localTime = (at: number, tz: string) => {
  const parts: Record<string, string> = {}
  for (const p of formatter(tz).formatToParts(new Date(at))) parts[p.type] = p.value
  const hour = Number(parts["hour"])
  const minute = Number(parts["minute"])
  return {
    date: `${parts["year"]}-${parts["month"]}-${parts["day"]}`,
    hhmm: `${parts["hour"]}:${parts["minute"]}`,
    minutes: hour * 60 + minute
  }
}

/** True when the local time of `at` in `tz` is in [fromMinutes, fromMinutes + lengthMinutes). */
export const inLocalWindow = (at: number, tz: string, fromMinutes: number, lengthMinutes: number): boolean => {
  const m = localTime(at, tz).minutes
  return m >= fromMinutes && m < fromMinutes + lengthMinutes
}

/** One email the in-memory mailer accepted, with the TestClock instant of the run that sent it. */
export interface Sent {
  readonly at: number
  readonly job: string
  readonly userId: string
  readonly email: OutgoingEmail
}

/** The user an email went to (fixtures use `<id>@example.com`). */
export const userOf = (email: OutgoingEmail): string => email.to.slice(0, email.to.lastIndexOf("@"))

/** The job named by an email's `job` tag. */
export const jobOf = (email: OutgoingEmail): string => email.tags.find((t) => t.name === "job")?.value ?? "?"

/** The founder step tag (`day1`..`day3`) of an email, if any. */
export const stepOf = (email: OutgoingEmail): string | undefined => email.tags.find((t) => t.name === "step")?.value

/**
 * Sets the TestClock to `at`, runs `job` once, and returns what the in-memory mailer received during that run,
 * stamped with `at`. Fails the test when a run does not succeed.
 */
export const runAt = <N extends string, G extends string>(job: Job<N, G>, at: number) =>
  Effect.gen(function*() {
    const ref = yield* MailerTestRef
    yield* TestClock.setTime(at)
    const before = (yield* Ref.get(ref)).length
    const report = yield* runJob(job)
    if (report.outcome !== "succeeded") {
      return yield* Effect.die(new Error(`${job.name} at ${new Date(at).toISOString()}: ${report.outcome} ${report.error}`))
    }
    const sent: Array<Sent> = (yield* Ref.get(ref)).slice(before).map((email) => ({
      at,
      job: jobOf(email),
      userId: userOf(email),
      email
    }))
    return { report, sent, stats: report.stats! }
  })
