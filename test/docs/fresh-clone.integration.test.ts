/**
 * `npx kaiwa-jobs` works in a fresh clone after `npm run build` (the globalSetup of this suite runs that very
 * build): the entries are executable, since npx and a shell execute the file itself, not `node <file>`.
 */
import { spawn } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import { assert, describe, it } from "@effect/vitest"

const run = (command: string, args: ReadonlyArray<string>) =>
  new Promise<{ code: number | null; out: string }>((resolve) => {
    const child = spawn(command, args, {
      cwd: process.cwd(),
      // node_modules/.bin first, as `npx` and npm scripts have it; nothing else of the test runner's environment.
      env: { PATH: `${path.resolve("node_modules", ".bin")}${path.delimiter}${process.env["PATH"] ?? ""}`, HOME: process.env["HOME"] ?? "/tmp" },
      stdio: ["ignore", "pipe", "pipe"]
    })
    let out = ""
    child.stdout.on("data", (d: Buffer) => (out += d.toString()))
    child.stderr.on("data", (d: Buffer) => (out += d.toString()))
    child.on("close", (code) => resolve({ code, out }))
  })

describe("a fresh clone's build", () => {
  it("writes dist/cli.js and the two Fly mains executable (0755)", () => {
    for (const entry of ["cli", "send-reminders", "send-founder-emails"]) {
      const mode = fs.statSync(path.join("dist", `${entry}.js`)).mode & 0o777
      assert.strictEqual(mode.toString(8), "755", `dist/${entry}.js`)
    }
    assert.strictEqual(fs.readFileSync("dist/cli.js", "utf8").split("\n")[0], "#!/usr/bin/env node")
  })

  it("`npx kaiwa-jobs --help` and `./dist/cli.js list` run from the package root", async () => {
    const help = await run("npx", ["kaiwa-jobs", "--help"])
    assert.strictEqual(help.code, 0, help.out)
    assert.notInclude(help.out, "Permission denied")
    assert.include(help.out, "SUBCOMMANDS")
    const list = await run("./dist/cli.js", ["list"])
    assert.strictEqual(list.code, 0, list.out)
    assert.match(list.out, /^practice-reminders\s+hourly/m)
  }, 60_000)
})
