import { execFileSync } from "node:child_process"
import { assert, describe, it } from "@effect/vitest"
import { run, start } from "../support/spawn.ts"

const secrets = {
  DATABASE_URL: "postgres://kaiwa:db-password-SECRET-1@127.0.0.1:9/kaiwa",
  RESEND_API_KEY: "re_SECRET_resend_key_2",
  UNSUBSCRIBE_SECRET: "unsubscribe-SECRET-value-3-long-enough",
  CRON_SECRET: "cron-SECRET-value-4-that-is-longer-than-32-characters"
}
const liveEnv = { ...secrets, MAIL_FROM: "Kaiwa <hello@example.com>", APP_URL: "https://kaiwa.example" }
const secretValues = [...Object.values(secrets), "db-password-SECRET-1"]

const assertNoSecret = (output: string) => {
  for (const s of secretValues) assert.notInclude(output, s, "a configured secret reached the output")
}

describe("compiled mains", () => {
  it("live mode without DATABASE_URL exits 2 naming the variable", async () => {
    const { DATABASE_URL: _, ...env } = liveEnv
    const r = await run("dist/send-reminders.js", [], env)
    assert.strictEqual(r.code, 2)
    assert.include(r.stderr, "DATABASE_URL")
    assertNoSecret(r.stdout + r.stderr)
  })

  it("live mode without RESEND_API_KEY exits 2 naming the variable, and never prints the database password", async () => {
    const { RESEND_API_KEY: _, ...env } = liveEnv
    const r = await run("dist/send-founder-emails.js", [], env)
    assert.strictEqual(r.code, 2)
    assert.include(r.stderr, "RESEND_API_KEY")
    assertNoSecret(r.stdout + r.stderr)
  })

  it("an unreachable database exits 1 with a message that says so, and no secret in any output", async () => {
    const r = await run("dist/send-reminders.js", [], liveEnv)
    assert.strictEqual(r.code, 1)
    assert.include(r.stdout + r.stderr, "unreachable")
    assertNoSecret(r.stdout + r.stderr)
  })

  it("a malformed setting exits 2 naming it without echoing the value", async () => {
    const r = await run("dist/send-reminders.js", [], { ...liveEnv, REMINDER_LOCAL_TIME: "25:99", MIN_HOURS_BETWEEN_EMAILS: "x" })
    assert.strictEqual(r.code, 2)
    assert.include(r.stderr, "REMINDER_LOCAL_TIME")
    assert.notInclude(r.stderr, "25:99")
  })

  it("bad usage exits 2: an unknown flag, a bad --now, an unknown job", async () => {
    const flag = await run("dist/send-reminders.js", ["--bogus"])
    assert.strictEqual(flag.code, 2)
    const now = await run("dist/send-reminders.js", ["--dry-run", "--now", "yesterday"])
    assert.strictEqual(now.code, 2)
    assert.include(now.stderr, "--now")
    const job = await run("dist/cli.js", ["run", "send-everything"])
    assert.strictEqual(job.code, 2)
    assert.include(job.stderr, "practice-reminders")
  })

  it("a dry run with no DATABASE_URL uses an embedded server, completes with the seed's lines and exits 0", async () => {
    const r = await run("dist/send-reminders.js", ["--dry-run", "--now", "2026-03-10T10:00:00Z"])
    assert.strictEqual(r.code, 0, r.stderr)
    assert.include(r.stdout, "🎉 Reminder process completed!")
    // A dry run's stats line says what a live run would send, and which database it read (issue 19).
    assert.match(r.stdout, /📊 Dry run of an empty embedded database \(DATABASE_URL is not set\)[^\n]*: would send sent=0; 0 would fail; nothing was sent/)
    assert.include(r.stdout, "2026-03-10T10:00:00.000Z", r.stdout)
  })

  it("JSON log lines on Fly (FLY_MACHINE_ID set), each carrying the job and run id", async () => {
    const r = await run("dist/send-founder-emails.js", ["--dry-run"], { FLY_MACHINE_ID: "e784079b449483" })
    assert.strictEqual(r.code, 0, r.stderr)
    const lines = r.stdout.trim().split("\n").filter((l) => l.startsWith("{"))
    assert.isAtLeast(lines.length, 3)
    const stats = lines.map((l) => JSON.parse(l)).find((l) => /📊 Dry run of .*: would send Day1=0, Day2=0, Day3=0; 0 would fail/.test(String(l.message)))
    assert.isDefined(stats)
    assert.strictEqual(stats.annotations.job, "founder-emails")
    assert.isString(stats.annotations.runId)
  })

  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    it(`${signal} during a run stops the embedded PostgreSQL: no server outlives the process`, async () => {
      // The embedded server is a child of the main: watched for from the start (the run itself, on an empty
      // database, can be over a few milliseconds after its first line, sooner than a `ps` on a loaded machine).
      const postgresChildOf = (pid: number | undefined) => {
        try {
          const pids = execFileSync("ps", ["-o", "pid=,comm=", "--ppid", String(pid)]).toString()
          const found = Number(pids.split("\n").find((l) => l.includes("postgres"))?.trim().split(/\s+/)[0])
          return Number.isInteger(found) && found > 0 ? found : undefined
        } catch {
          return undefined // `ps` exits 1 when the process has no children (any more)
        }
      }
      let postmaster: number | undefined
      let signalled = false
      const { child, done } = start("dist/send-reminders.js", ["--dry-run"], {}, (out, proc) => {
        if (!signalled && out.includes("▶")) {
          signalled = true
          // The server's pid as the run starts, else the one watched during start-up.
          postmaster = postgresChildOf(proc.pid) ?? postmaster
          proc.kill(signal)
        }
      })
      const watch = setInterval(() => (postmaster ??= postgresChildOf(child.pid)), 20)
      const r = await done.finally(() => clearInterval(watch))
      assert.isDefined(postmaster, `no embedded server seen; stdout: ${r.stdout} stderr: ${r.stderr}`)
      assert.isTrue(Number.isInteger(postmaster) && postmaster! > 0)
      assert.isTrue(r.code === 130 || r.code === 0, `exit code ${r.code}`)
      let alive = true
      try {
        process.kill(postmaster!, 0)
      } catch {
        alive = false
      }
      assert.isFalse(alive, `postgres ${postmaster} outlived the run`)
    })
  }
})
