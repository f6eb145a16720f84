/**
 * "Adding a job", followed literally: in a copy of the project (src/, bin/, dev/, package.json, tsconfig.json and a
 * link to node_modules; the real src/ is never touched), the README's copy command runs as written, its two lines
 * go into src/jobs/index.ts where it says, the copy type-checks, and the README's "try it" commands run as written
 * from source: `list` shows the job, `preview` writes its files, and a dry run against the local embedded
 * PostgreSQL (the demo's, seeded by the README's own `npm run demo` line) prints the one email due.
 */
import { spawn } from "node:child_process"
import * as fs from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"
import { afterAll, assert, beforeAll, describe, it } from "@effect/vitest"
import { readmeBlock } from "./readme.ts"

const root = process.cwd()
let dir = ""

/** Runs one README line with bash in the copy, with the environment a newcomer's shell would have. */
const sh = (line: string) =>
  new Promise<{ code: number | null; out: string }>((resolve) => {
    const child = spawn("bash", ["-c", line], {
      cwd: dir,
      // node_modules/.bin first, as npm scripts and `npx` have it: Node 24 even where the system Node is older.
      env: { PATH: `${path.join(root, "node_modules", ".bin")}${path.delimiter}${process.env["PATH"] ?? ""}`, HOME: dir },
      stdio: ["ignore", "pipe", "pipe"]
    })
    let out = ""
    child.stdout.on("data", (d: Buffer) => (out += d.toString()))
    child.stderr.on("data", (d: Buffer) => (out += d.toString()))
    child.on("close", (code) => resolve({ code, out }))
  })

/** The README's registry step applied to index.ts: the import after the last import, the registry line replaced. */
const register = (index: string, lines: ReadonlyArray<string>): string => {
  const importLine = lines.find((l) => l.startsWith("import "))
  const registryLine = lines.find((l) => l.startsWith("export const registry = "))
  assert.isDefined(importLine, "the README's registry step has an import line")
  assert.isDefined(registryLine, "the README's registry step has the registry line")
  const source = index.split("\n")
  const lastImport = source.findLastIndex((l) => l.startsWith("import "))
  const current = source.findIndex((l) => l.startsWith("export const registry = "))
  assert.isAtLeast(current, 0, "src/jobs/index.ts declares `export const registry = ...` on one line")
  // The README's line is today's registry with the new job added at the end, nothing else changed.
  assert.strictEqual(registryLine!.replace(/, winBack\]/, "]"), source[current], "the README's registry line matches src/jobs/index.ts")
  source[current] = registryLine!
  source.splice(lastImport + 1, 0, importLine!)
  return source.join("\n")
}

describe("Adding a job, as the README says", () => {
  beforeAll(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), "kaiwa-adding-a-job-"))
    // Readable by the unprivileged user the embedded server runs as when the tests run as root.
    await fs.chmod(dir, 0o755)
    for (const entry of ["src", "bin", "dev", "package.json", "tsconfig.json"]) {
      await fs.cp(path.join(root, entry), path.join(dir, entry), { recursive: true })
    }
    await fs.symlink(path.join(root, "node_modules"), path.join(dir, "node_modules"), "dir")
  })
  afterAll(async () => {
    if (dir !== "") await fs.rm(dir, { recursive: true, force: true })
  })

  it("copy, register, type-check, then list, preview and a local dry run from source", async () => {
    for (const line of readmeBlock("adding-a-job: copy").filter((l) => l.trim() !== "")) {
      const r = await sh(line)
      assert.strictEqual(r.code, 0, `${line}\n${r.out}`)
    }
    const indexPath = path.join(dir, "src", "jobs", "index.ts")
    const index = await fs.readFile(indexPath, "utf8")
    await fs.writeFile(indexPath, register(index, readmeBlock("adding-a-job: register in src/jobs/index.ts")))
    const typecheck = await sh("tsc --noEmit -p tsconfig.json")
    assert.strictEqual(typecheck.code, 0, typecheck.out)

    const outputs: Array<{ line: string; out: string }> = []
    for (const line of readmeBlock("adding-a-job: try").filter((l) => l.trim() !== "")) {
      const r = await sh(line)
      assert.strictEqual(r.code, 0, `${line}\n${r.out}`)
      outputs.push({ line, out: r.out })
    }
    const of = (command: string) => outputs.find((o) => o.line.includes(command))?.out ?? assert.fail(`the README runs no ${command}`)
    assert.match(of("-- list"), /^win-back\s+hourly\s+Win-back email/m)
    assert.include(of("-- preview win-back"), "win-back.html")
    assert.include(await fs.readFile(path.join(dir, ".preview", "win-back.html"), "utf8"), "/unsubscribe?token=")
    const dryRun = of("run win-back")
    assert.include(dryRun, "reading the local demo database")
    assert.match(dryRun, /would send sent=1\b/)
    assert.include(dryRun, "is waiting")
    assert.include(dryRun, "nothing was sent")
  }, 300_000)
})
