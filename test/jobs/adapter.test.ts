/**
 * One module reads the app (issue 18): no job file names an app table or column's table, nor a table of the
 * library's own `kaiwa_jobs` schema; they read the app through `AppTables` and leave the ledger, suppressions
 * and cap to the library. Checked on the source of every job file, the README's example included.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { assert, describe, it } from "@effect/vitest"

const JOBS = "src/jobs"
const files = fs.readdirSync(JOBS).filter((f) => f.endsWith(".ts") && f !== "index.ts")

// An app table used in SQL (`FROM users`, `JOIN conversation_sessions`, `INTO user_settings`), or any mention of
// the app's settings and sessions tables or of the library's schema.
const NAMES_A_TABLE = /\b(?:FROM|JOIN|INTO|UPDATE)\s+(?:users|user_settings|conversation_sessions)\b|\buser_settings\b|\bconversation_sessions\b|\bkaiwa_jobs\b/i

describe("job files", () => {
  it("are found (the check below reads real files)", () => {
    assert.includeMembers(files, ["PracticeReminders.ts", "FounderEmails.ts", "WeeklyProgress.ts", "WinBack.example.ts"])
  })

  for (const file of files) {
    it(`${file} names no app table and no kaiwa_jobs table`, () => {
      const lines = fs.readFileSync(path.join(JOBS, file), "utf8").split("\n")
      const offending = lines.map((l, i) => [i + 1, l] as const).filter(([, l]) => NAMES_A_TABLE.test(l))
      assert.deepStrictEqual(offending, [], `${file} should read the app through AppTables`)
    })
  }

  it("the check itself catches a table name", () => {
    assert.isTrue(NAMES_A_TABLE.test("  LEFT JOIN user_settings us ON us.user_id = u.id"))
    assert.isTrue(NAMES_A_TABLE.test("SELECT 1 FROM kaiwa_jobs.deliveries d"))
    assert.isTrue(NAMES_A_TABLE.test("FROM users u"))
    assert.isFalse(NAMES_A_TABLE.test("FROM ${app.users} u"))
  })
})
