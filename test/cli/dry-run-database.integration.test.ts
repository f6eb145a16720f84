/**
 * Dry runs say what they read (issue 21 item 5). As a new operator tried it: `run practice-reminders --dry-run
 * --local` read a fresh, empty embedded database and answered "0 due" while the local demo database had learners
 * due; without DATABASE_URL a dry run did the same silently; and its stats said `sent`. Now `--local` reads the
 * local demo database, every dry run names the database it read, and its report says what it would send.
 */
import { spawn } from "node:child_process"
import * as fs from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"
import { assert, describe, it } from "@effect/vitest"

// Sunday 05:00 UTC: the demo's learners in Tokyo and Kolkata are inside their reminder window.
const AT = "2026-03-15T05:00:00Z"

/** Runs a command in `cwd` (its own `.kaiwa-local/`), as a real process with a controlled environment. */
const inFolder = (cwd: string, script: string, args: ReadonlyArray<string>) =>
  new Promise<{ code: number | null; out: string }>((resolve) => {
    const child = spawn(process.execPath, [script, ...args], {
      cwd,
      env: { PATH: process.env["PATH"] ?? "", HOME: process.env["HOME"] ?? cwd },
      stdio: ["ignore", "pipe", "pipe"]
    })
    let out = ""
    child.stdout.on("data", (d: Buffer) => (out += d.toString()))
    child.stderr.on("data", (d: Buffer) => (out += d.toString()))
    child.on("close", (code) => resolve({ code, out }))
  })

describe("a dry run names the database it read", () => {
  it("--local reads the local demo database and says it would send; without DATABASE_URL it says it read an empty one", async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), "kaiwa-dry-run-"))
    // Readable by the unprivileged user the embedded server runs as when the tests run as root.
    await fs.chmod(dir, 0o755)
    const cli = path.resolve("dist/cli.js")
    try {
      // The local demo database, seeded and run once at AT: a second instant an hour later has learners due again
      // in other zones (and the seeded ones that were not due at AT).
      const demo = await inFolder(dir, path.resolve("node_modules/tsx/dist/cli.mjs"), [path.resolve("dev/run-demo.ts"), "--now", AT])
      assert.strictEqual(demo.code, 0, demo.out)
      const later = "2026-03-16T03:00:00Z"
      const local = await inFolder(dir, cli, ["run", "practice-reminders", "--dry-run", "--local", "--now", later])
      assert.strictEqual(local.code, 0, local.out)
      assert.include(local.out, "reading the local demo database")
      const wouldSend = /Dry run of the local demo database[^:]*: would send sent=(\d+)/.exec(local.out)
      assert.isNotNull(wouldSend, local.out)
      assert.isAbove(Number(wouldSend![1]), 0, "the local demo database has learners due")
      assert.include(local.out, "nothing was sent")
      assert.notMatch(local.out, /📊 Stats: \d+ sent/)
      // A live local run at the same instant finds the same learners still due: the dry run reserved nothing.
      const live = await inFolder(dir, cli, ["run", "practice-reminders", "--local", "--now", later])
      assert.strictEqual(live.code, 0, live.out)
      assert.include(live.out, `📊 Stats: ${wouldSend![1]} sent`)

      const empty = await inFolder(dir, cli, ["run", "practice-reminders", "--dry-run", "--now", later])
      assert.strictEqual(empty.code, 0, empty.out)
      assert.include(empty.out, "an empty embedded database (DATABASE_URL is not set): nothing to read")
      assert.match(empty.out, /would send sent=0/)
    } finally {
      await fs.rm(dir, { recursive: true, force: true })
    }
  }, 240_000)
})
