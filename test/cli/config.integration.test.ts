/**
 * Bad settings stop the compiled mains before anything runs, with exit 2 and one message listing every problem
 * (issue 19, item 1), never echoing a value. The unit rules are in test/Config.test.ts; this is what an operator
 * sees from a Fly machine.
 */
import { assert, describe, it } from "@effect/vitest"
import { run } from "../support/spawn.ts"

// Nothing listens on port 9: a run that got past the settings would exit 1 "unreachable".
const liveEnv = {
  DATABASE_URL: "postgres://kaiwa:db-password-SECRET-1@127.0.0.1:9/kaiwa",
  RESEND_API_KEY: "re_SECRET_resend_key_2",
  UNSUBSCRIBE_SECRET: "unsubscribe-SECRET-value-3-long-enough",
  MAIL_FROM: "Kaiwa <hello@example.com>",
  APP_URL: "https://kaiwa.example",
  FOUNDER_NAME: "Yuki Sato"
}

describe("settings checked by the compiled mains", () => {
  it("APP_URL with CR/LF (header injection into List-Unsubscribe) exits 2 at start-up", async () => {
    const r = await run("dist/send-reminders.js", [], { ...liveEnv, APP_URL: "https://kaiwa.example/\r\nBcc: victim@evil.example" })
    assert.strictEqual(r.code, 2, r.stderr)
    assert.include(r.stderr, "APP_URL")
    assert.notInclude(r.stdout + r.stderr, "evil.example")
  })

  it("MAIL_FROM without angle brackets exits 2 at start-up", async () => {
    const r = await run("dist/send-reminders.js", [], { ...liveEnv, MAIL_FROM: "Kaiwa hello@kaiwa.example" })
    assert.strictEqual(r.code, 2, r.stderr)
    assert.include(r.stderr, "MAIL_FROM")
  })

  it("a malformed DATABASE_URL exits 2 as bad configuration, not 1 'unreachable', without printing it", async () => {
    const r = await run("dist/send-reminders.js", [], { ...liveEnv, DATABASE_URL: "postgres//kaiwa:db-password-SECRET-1@127.0.0.1/kaiwa" })
    assert.strictEqual(r.code, 2, r.stderr)
    assert.include(r.stderr, "DATABASE_URL")
    assert.notInclude(r.stdout + r.stderr, "unreachable")
    assert.notInclude(r.stdout + r.stderr, "db-password-SECRET-1")
  })

  it("CRON_SECRET with a trailing newline, or of 30 spaces, exits 2 naming it and never printing it", async () => {
    for (const secret of ["cron-SECRET-value-4-that-is-longer-than-32-characters\n", " ".repeat(30)]) {
      const r = await run("dist/cli.js", ["serve"], { ...liveEnv, CRON_SECRET: secret })
      assert.strictEqual(r.code, 2, r.stderr)
      assert.include(r.stderr, "CRON_SECRET")
      assert.notInclude(r.stdout + r.stderr, "cron-SECRET-value-4")
    }
  })

  it("live mode lists every problem at once in one message", async () => {
    const { DATABASE_URL: _, RESEND_API_KEY: __, ...rest } = liveEnv
    const r = await run("dist/send-founder-emails.js", [], {
      ...rest,
      MAIL_FROM: "Kaiwa hello@kaiwa.example",
      FOUNDER_NAME: "Yuki\r\nBcc: victim@evil.example",
      SEND_DEADLINE: "soon"
    })
    assert.strictEqual(r.code, 2, r.stderr)
    const message = r.stderr.split("\n").filter((l) => l.includes("configuration error"))
    assert.strictEqual(message.length, 1, r.stderr)
    for (const variable of ["DATABASE_URL", "RESEND_API_KEY", "MAIL_FROM", "FOUNDER_NAME", "SEND_DEADLINE"]) {
      assert.include(message[0], variable)
    }
    assert.notInclude(r.stderr, "evil.example")
  })

  it("FOUNDER_NAME is required for a live founder run (exit 2 naming it), not for a live reminders run", async () => {
    const { FOUNDER_NAME: _, ...withoutName } = liveEnv
    const founder = await run("dist/send-founder-emails.js", [], { ...withoutName, FOUNDER_FROM: "Yuki at Kaiwa <yuki@example.com>" })
    assert.strictEqual(founder.code, 2, founder.stderr)
    assert.include(founder.stderr, "FOUNDER_NAME")
    const cli = await run("dist/cli.js", ["run", "founder-emails"], withoutName)
    assert.strictEqual(cli.code, 2, cli.stderr)
    assert.include(cli.stderr, "FOUNDER_NAME")
    // The reminders main gets past the settings and stops at the (absent) database.
    const reminders = await run("dist/send-reminders.js", [], withoutName)
    assert.strictEqual(reminders.code, 1, reminders.stderr)
    assert.notInclude(reminders.stderr, "FOUNDER_NAME")
  })
})
