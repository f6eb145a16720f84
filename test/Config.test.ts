/**
 * Settings are validated as what they are, all at once (issue 19, item 1): mailboxes, http(s) URLs, no control
 * characters, secrets without whitespace and not trivially weak, a DATABASE_URL that parses, FOUNDER_NAME where
 * founder emails can go out live. No message repeats a value.
 */
import { assert, describe, it } from "@effect/vitest"
import { ConfigProvider, Effect, Exit, Option, Redacted } from "effect"
import { FOUNDER_EMAILS_JOB, LiveJobs, parseMailbox, type Strictness } from "../src/config/Config.ts"
import { founderEmails, loadSettings as load } from "../src/jobs/index.ts"

const LIVE = {
  DATABASE_URL: "postgres://kaiwa:db-password-SECRET@127.0.0.1:5432/kaiwa",
  RESEND_API_KEY: "re_SECRET_resend_key",
  MAIL_FROM: "Kaiwa <hello@kaiwa.example>",
  APP_URL: "https://app.kaiwa.example",
  UNSUBSCRIBE_SECRET: "unsubscribe-SECRET-value-long-enough",
  FOUNDER_NAME: "Yuki Sato"
}

const loadWith = (env: Record<string, string>, strictness: Strictness = "live", jobs: ReadonlyArray<string> | "all" = "all") =>
  load(strictness).pipe(
    Effect.provideService(ConfigProvider.ConfigProvider, ConfigProvider.fromEnv({ env })),
    Effect.provideService(LiveJobs, jobs),
    Effect.exit
  )

/** The InvalidConfig of a failed load: its message and the variables it names. */
const problemOf = (exit: Exit.Exit<unknown, { readonly message: string; readonly variable: string }>) => {
  if (Exit.isSuccess(exit)) return assert.fail("the settings were accepted")
  const error = Option.getOrThrow(Exit.findErrorOption(exit))
  return { message: error.message, variables: error.variable.split(", ") }
}

describe("settings", () => {
  it.effect("a complete live configuration loads", () =>
    Effect.gen(function*() {
      const exit = yield* loadWith(LIVE)
      assert.isTrue(Exit.isSuccess(exit), String(exit))
    }))

  it.effect("CR/LF inside APP_URL is refused at start-up in every mode (it would reach List-Unsubscribe)", () =>
    Effect.gen(function*() {
      for (const strictness of ["live", "lenient"] as const) {
        for (const appUrl of ["https://app.kaiwa.example/\r\nBcc: victim@evil.example", "https://app.kaiwa.example\n", "https://app\t.kaiwa.example"]) {
          const p = problemOf(yield* loadWith({ ...LIVE, APP_URL: appUrl }, strictness))
          assert.deepStrictEqual(p.variables, ["APP_URL"], JSON.stringify(appUrl))
          assert.notInclude(p.message, "evil")
        }
      }
    }))

  it.effect("CR/LF in MAIL_FROM, FOUNDER_FROM and FOUNDER_NAME is refused", () =>
    Effect.gen(function*() {
      for (const variable of ["MAIL_FROM", "FOUNDER_FROM", "FOUNDER_NAME"]) {
        const p = problemOf(yield* loadWith({ ...LIVE, [variable]: "Kaiwa <hello@kaiwa.example>\r\nBcc: victim@evil.example" }))
        assert.deepStrictEqual(p.variables, [variable])
        assert.notInclude(p.message, "evil")
      }
    }))

  it.effect("addresses must be RFC 5322 mailboxes: `Kaiwa hello@kaiwa.example` (no angle brackets) exits at start-up", () =>
    Effect.gen(function*() {
      for (const bad of ["Kaiwa hello@kaiwa.example", "hello@kaiwa", "Kaiwa <hello@kaiwa.example", "Kaiwa, Inc. <a@kaiwa.example>", "a..b@kaiwa.example"]) {
        assert.deepStrictEqual(problemOf(yield* loadWith({ ...LIVE, MAIL_FROM: bad })).variables, ["MAIL_FROM"], bad)
        assert.deepStrictEqual(problemOf(yield* loadWith({ ...LIVE, FOUNDER_FROM: bad }, "lenient")).variables, ["FOUNDER_FROM"], bad)
      }
      for (const good of ["hello@kaiwa.example", "Kaiwa <hello@kaiwa.example>", "\"Kaiwa, Inc.\" <hello@kaiwa.example>", "Yūki at Kaiwa <yuki@kaiwa.example>"]) {
        assert.isTrue(Option.isSome(parseMailbox(good)), good)
        assert.isTrue(Exit.isSuccess(yield* loadWith({ ...LIVE, MAIL_FROM: good })), good)
      }
    }))

  it.effect("URLs must be absolute http(s): APP_URL, FOUNDER_CALL_URL, RESEND_BASE_URL, POSTHOG_HOST", () =>
    Effect.gen(function*() {
      for (const variable of ["APP_URL", "FOUNDER_CALL_URL", "RESEND_BASE_URL", "POSTHOG_HOST"]) {
        for (const bad of ["app.kaiwa.example", "/relative", "javascript:alert(1)", "ftp://kaiwa.example", "https://kaiwa .example"]) {
          assert.deepStrictEqual(problemOf(yield* loadWith({ ...LIVE, [variable]: bad })).variables, [variable], `${variable}=${bad}`)
        }
      }
      // APP_URL is a base that paths are appended to: a query or fragment would swallow them.
      assert.deepStrictEqual(problemOf(yield* loadWith({ ...LIVE, APP_URL: "https://app.kaiwa.example/?x=1" })).variables, ["APP_URL"])
    }))

  it.effect("CRON_SECRET with a trailing newline or 30 spaces fails; so does a trivially weak one", () =>
    Effect.gen(function*() {
      const good = "cron-SECRET-value-that-is-longer-than-32-characters"
      for (const bad of [`${good}\n`, " ".repeat(30), ` ${good}`, `${good} `, "x".repeat(40), "abab".repeat(10)]) {
        const p = problemOf(yield* loadWith({ ...LIVE, CRON_SECRET: bad }, "lenient"))
        assert.deepStrictEqual(p.variables, ["CRON_SECRET"], JSON.stringify(bad))
        assert.notInclude(p.message, good)
      }
      const ok = yield* loadWith({ ...LIVE, CRON_SECRET: good })
      assert.isTrue(Exit.isSuccess(ok) && Option.map(ok.value.cronSecret, Redacted.value).pipe(Option.getOrNull) === good)
    }))

  it.effect("every operator-chosen secret follows the same rules (UNSUBSCRIBE_SECRET, CONSOLE_SECRET); provider keys may not carry whitespace", () =>
    Effect.gen(function*() {
      for (const variable of ["UNSUBSCRIBE_SECRET", "CONSOLE_SECRET"]) {
        for (const bad of ["0".repeat(40), `console-and-unsubscribe-secret-0123456789\n`, ` console-and-unsubscribe-secret-0123456789`]) {
          assert.deepStrictEqual(problemOf(yield* loadWith({ ...LIVE, [variable]: bad })).variables, [variable], `${variable}=${JSON.stringify(bad)}`)
        }
      }
      assert.deepStrictEqual(problemOf(yield* loadWith({ ...LIVE, CONSOLE_SECRET: "short-console-secret" })).variables, ["CONSOLE_SECRET"])
      for (const variable of ["RESEND_API_KEY", "POSTHOG_API_KEY", "DATABASE_URL"]) {
        const value = variable === "DATABASE_URL" ? LIVE.DATABASE_URL : "re_provider_key_123"
        assert.deepStrictEqual(problemOf(yield* loadWith({ ...LIVE, [variable]: `${value}\n` })).variables, [variable], variable)
      }
      const ok = yield* loadWith({ ...LIVE, CONSOLE_SECRET: "console-secret-0123456789-abcdefghij" })
      assert.isTrue(Exit.isSuccess(ok) && Option.isSome(ok.value.consoleSecret))
    }))

  it.effect("a malformed DATABASE_URL is bad configuration, never echoed", () =>
    Effect.gen(function*() {
      for (const bad of ["postgres//kaiwa:pw-SECRET@db/kaiwa", "mysql://kaiwa:pw-SECRET@db/kaiwa", "kaiwa:pw-SECRET@db", "postgres://kaiwa:pw-SECRET@db:99999/kaiwa", "postgres://kaiwa:%E0%A4%A@db/kaiwa"]) {
        const p = problemOf(yield* loadWith({ ...LIVE, DATABASE_URL: bad }))
        assert.deepStrictEqual(p.variables, ["DATABASE_URL"], bad)
        assert.notInclude(p.message, "SECRET")
      }
    }))

  it.effect("live mode lists every problem in one message", () =>
    Effect.gen(function*() {
      const p = problemOf(yield* loadWith({
        DATABASE_URL: "not a url",
        MAIL_FROM: "Kaiwa hello@kaiwa.example",
        APP_URL: "https://app.kaiwa.example\r\n",
        UNSUBSCRIBE_SECRET: "unsubscribe-SECRET-value-long-enough",
        CRON_SECRET: " ".repeat(30),
        REMINDER_LOCAL_TIME: "25:99"
      }))
      assert.deepStrictEqual(p.variables, ["DATABASE_URL", "RESEND_API_KEY", "MAIL_FROM", "APP_URL", "FOUNDER_NAME", "REMINDER_LOCAL_TIME", "CRON_SECRET"])
      assert.include(p.message, "7 problems")
      assert.include(p.message, "RESEND_API_KEY is required in live mode")
      assert.notInclude(p.message, "25:99")
    }))

  it.effect("HOST is an optional bind address without control characters", () =>
    Effect.gen(function*() {
      const none = yield* loadWith(LIVE)
      assert.isTrue(Exit.isSuccess(none) && Option.isNone(none.value.host))
      for (const host of ["0.0.0.0", "::", "127.0.0.1", "localhost", "fly-local-6pn"]) {
        const exit = yield* loadWith({ ...LIVE, HOST: host })
        assert.isTrue(Exit.isSuccess(exit) && Option.getOrNull(exit.value.host) === host, host)
      }
      for (const bad of ["0.0.0.0\n", "http://0.0.0.0", "a b", "0.0.0.0:8080"]) {
        assert.deepStrictEqual(problemOf(yield* loadWith({ ...LIVE, HOST: bad })).variables, ["HOST"], JSON.stringify(bad))
      }
    }))
})

describe("FOUNDER_NAME (issue 20, item 2)", () => {
  it.effect("is required whenever founder emails can be sent live, and only then", () =>
    Effect.gen(function*() {
      const { FOUNDER_NAME: _, ...withoutName } = LIVE
      for (const jobs of ["all", [FOUNDER_EMAILS_JOB]] as const) {
        const p = problemOf(yield* loadWith(withoutName, "live", jobs))
        assert.deepStrictEqual(p.variables, ["FOUNDER_NAME"])
      }
      assert.isTrue(Exit.isSuccess(yield* loadWith(withoutName, "live", ["practice-reminders"])))
      assert.isTrue(Exit.isSuccess(yield* loadWith(withoutName, "lenient")))
    }))

  it.effect("the sender's display name is never used as the founder's name", () =>
    Effect.gen(function*() {
      const { FOUNDER_NAME: _, ...withoutName } = LIVE
      for (const from of ["Yuki at Kaiwa <yuki@kaiwa.example>", "Kaiwa <hello@kaiwa.example>"]) {
        const exit = yield* loadWith({ ...withoutName, FOUNDER_FROM: from }, "lenient")
        assert.isTrue(Exit.isSuccess(exit))
        if (Exit.isSuccess(exit)) {
          assert.notInclude(exit.value.founderName, "Yuki")
          assert.notStrictEqual(exit.value.founderName, "Kaiwa")
        }
      }
      const named = yield* loadWith({ ...LIVE, FOUNDER_FROM: "Yuki at Kaiwa <yuki@kaiwa.example>", FOUNDER_NAME: "Yuki Sato" })
      assert.isTrue(Exit.isSuccess(named) && named.value.founderName === "Yuki Sato")
    }))

  it.effect("founder emails never read the sender's display name as a person: no \"I'm Kaiwa\", no \"A call with Yuki at Kaiwa\"", () =>
    Effect.gen(function*() {
      const { FOUNDER_NAME: _, ...withoutName } = LIVE
      for (const from of [undefined, "Yuki at Kaiwa <yuki@kaiwa.example>"]) {
        const exit = yield* loadWith(from === undefined ? withoutName : { ...withoutName, FOUNDER_FROM: from }, "lenient")
        if (Exit.isFailure(exit)) return assert.fail(String(exit))
        for (const p of yield* founderEmails.preview(exit.value)) {
          for (const part of [p.email.subject, p.email.text]) {
            assert.notInclude(part, "I'm Kaiwa", p.name)
            assert.notInclude(part, "Yuki at Kaiwa", p.name)
          }
        }
      }
      const named = yield* loadWith({ ...LIVE, FOUNDER_FROM: "Yuki at Kaiwa <yuki@kaiwa.example>" })
      if (Exit.isFailure(named)) return assert.fail(String(named))
      const day3 = (yield* founderEmails.preview(named.value)).find((p) => p.name === "founder-day3")!
      assert.include(day3.email.text, "Yuki Sato")
      assert.strictEqual(day3.email.from, "Yuki at Kaiwa <yuki@kaiwa.example>")
    }))
})
