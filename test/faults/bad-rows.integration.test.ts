/**
 * Bad rows in the app's tables (CONTRACT 3: the web app owns them, so anything a person typed or a bug stored
 * can be there). A live process against the fake Resend, among 50 normal due learners: empty and malformed
 * addresses are skipped and reported by user id (stats and logs); a NULL, a 10,000-character and a
 * control-character display name, an unknown time zone and a missing settings row are all served; exit 0.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { startFakeResend } from "../support/FakeResend.ts"
import { freshDatabaseUrl, uid, type UserFixture } from "../support/TestDb.ts"
import { addressOf, AT, liveEnv, query, runMain, seed, verifyExactlyOnce } from "./harness.ts"
import { compiledMain } from "./hooks.ts"

const OLD = new Date(Date.parse(AT) - 30 * 86_400_000)

const normal: Array<UserFixture> = Array.from({ length: 50 }, (_, i) => ({ id: `ok${String(i).padStart(2, "0")}`, createdAt: OLD, reminders: true }))
const badAddresses: Array<UserFixture> = [
  { id: "bad-empty", email: "", createdAt: OLD, reminders: true },
  { id: "bad-malformed", email: "not-an-email", createdAt: OLD, reminders: true },
  { id: "bad-half", email: "bob@", createdAt: OLD, reminders: true }
]
const odd: Array<UserFixture> = [
  { id: "null-name", displayName: null, createdAt: OLD, reminders: true },
  { id: "long-name", displayName: `Alexandria${"e".repeat(9_990)}`, createdAt: OLD, reminders: true },
  { id: "mars", timezone: "Mars/Olympus", createdAt: OLD, reminders: true },
  // No opt-in given, so insertUsers writes no user_settings row: a missing row means opted in.
  { id: "no-settings", createdAt: OLD },
  // PostgreSQL text cannot hold NUL; everything else a form could let through is here: C0 controls, a CRLF with
  // a header after it, a bidi override, a zero-width space, an ANSI escape, emoji with joiners.
  {
    id: "control",
    displayName: "\u0007\u0001Zoë\r\nBcc: victim@evil.example\u202E 🎉👩‍👩‍👧\u200B\u001b[31m",
    createdAt: OLD,
    reminders: true
  }
]

const main = compiledMain()

const CONTROL = /[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f\u202a-\u202e\u2066-\u2069\u200b]/

describe("bad rows in the app tables", () => {
  it("every other learner is served, bad addresses are reported by id in the stats and the logs, exit 0", async () => {
    const url = await Effect.runPromise(freshDatabaseUrl)
    await seed(url, [...normal, ...badAddresses, ...odd])
    const fake = await startFakeResend()
    try {
      const r = await runMain(main.script, liveEnv(url, fake, { LOG_FORMAT: "json" }))
      assert.strictEqual(r.code, 0, r.stdout + r.stderr)

      const served = [...normal, ...odd]
      const verdict = await verifyExactlyOnce(url, fake, served)
      assert.deepStrictEqual(verdict.problems, [])
      assert.deepStrictEqual(verdict.ledger, { sent: served.length })

      const runs = await query(url, (sql) =>
        sql<{ outcome: string; stats: { sent: number; skipped: Record<string, number>; badRows: Record<string, Array<string>> } }>`
          SELECT outcome, stats FROM kaiwa_jobs.runs`)
      assert.strictEqual(runs.length, 1)
      const { outcome, stats } = runs[0]!
      assert.strictEqual(outcome, "succeeded")
      assert.strictEqual(stats.sent, served.length)
      assert.strictEqual(stats.skipped["invalid_email"], 3)
      // Reported by the app's id (a uuid on Kaiwa's shape, the default fixture), which an operator can look up.
      assert.sameMembers(stats.badRows["invalid_email"] ?? [], badAddresses.map((u) => uid(u.id)))
      // Served in DEFAULT_TIMEZONE, and reported by id (on Kaiwa's shape a zone lives in kaiwa_jobs.user_timezones,
      // where only a direct write or a tzdata update that drops a name can leave one PostgreSQL does not know).
      assert.deepStrictEqual(stats.badRows["unknown_timezone"], [uid("mars")])

      // The operator finds the ids in the logs too: a warning naming the reason with the ids annotated.
      const lines = r.stdout.split("\n").filter((l) => l.startsWith("{")).map((l) => JSON.parse(l) as {
        message: unknown
        level: string
        annotations: Record<string, unknown>
      })
      const warning = lines.find((l) => String(l.message).includes("invalid_email"))
      assert.isDefined(warning, r.stdout)
      assert.strictEqual(warning!.level, "WARN")
      assert.sameMembers(String(warning!.annotations["userIds"]).split(","), badAddresses.map((u) => uid(u.id)))
      // Like every line of the job's own, it names the job and the run.
      assert.strictEqual(warning!.annotations["job"], "practice-reminders")
      assert.match(String(warning!.annotations["runId"]), /^[0-9a-f-]{36}$/)

      // What the odd rows turned into: sensible names, nothing that can break a header or a line.
      const to = (id: string) => fake.accepted.find((a) => a.to[0] === addressOf(odd.find((u) => u.id === id)!))!
      for (const email of fake.accepted) {
        assert.notMatch(email.subject, CONTROL)
        assert.notMatch(email.subject, /[\r\n]/)
        assert.notMatch(`${email.text}${email.html}`, CONTROL)
        for (const value of Object.values(email.headers)) assert.notMatch(value, /[\r\n]/)
        assert.isBelow((email.html ?? "").length + (email.text ?? "").length, 20_000)
      }
      assert.include(to("null-name").text, "there")
      assert.include(to("control").text, "Zoë")
      assert.notInclude(to("control").subject, "Bcc")
      assert.notInclude(to("long-name").text, "e".repeat(100))
      assert.include(to("long-name").text, "Alexandria")
    } finally {
      await fake.close()
    }
  })
})
