/**
 * The layout docs/architecture.md describes, held by a test: a small public surface (src/index.ts), concern folders
 * with their internals private, and a library that does not depend on its tooling (bin/, dev/).
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { assert, describe, it } from "@effect/vitest"

const files = (dir: string): ReadonlyArray<string> =>
  fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? files(path.join(dir, e.name)) : e.name.endsWith(".ts") ? [path.join(dir, e.name)] : []
  )

/** Every relative module a file imports (static and dynamic), resolved to a path from the repository root. */
const importsOf = (file: string): ReadonlyArray<string> =>
  [...fs.readFileSync(file, "utf8").matchAll(/(?:from|import)\s*\(?\s*"(\.{1,2}\/[^"]+)"/g)].map((m) =>
    path.normalize(path.join(path.dirname(file), m[1]!))
  )

describe("the layout", () => {
  it("src/index.ts exports the public surface and nothing else", async () => {
    const index = await import("../src/index.ts")
    assert.deepStrictEqual(Object.keys(index).sort(), ["Email", "Job", "Jobs", "Layers", "Mailer", "MailerError", "consoleMailer", "findJob", "registry"])
  })

  it("every module of src/ sits in a concern folder; only index.ts is at the top", () => {
    const top = fs.readdirSync("src", { withFileTypes: true }).filter((e) => e.isFile()).map((e) => e.name)
    assert.deepStrictEqual(top, ["index.ts"])
  })

  it("a folder's internal/ modules are imported from that folder only", () => {
    const offenders = files("src").flatMap((file) =>
      importsOf(file)
        .filter((target) => target.includes(`${path.sep}internal${path.sep}`))
        .filter((target) => !file.startsWith(target.slice(0, target.indexOf(`${path.sep}internal${path.sep}`)) + path.sep))
        .map((target) => `${file} -> ${target}`)
    )
    assert.deepStrictEqual(offenders, [])
  })

  it("the library imports nothing from the build entries (bin/) or the demo (dev/)", () => {
    const offenders = files("src").flatMap((file) =>
      importsOf(file).filter((t) => t.startsWith(`bin${path.sep}`) || t.startsWith(`dev${path.sep}`)).map((t) => `${file} -> ${t}`)
    )
    assert.deepStrictEqual(offenders, [])
  })
})
