/**
 * `preview --out` (issue 19, item 6): an empty path is refused instead of writing into the working directory;
 * a symbolic link, as the folder or as any file, is never followed (even with --force); an existing file is
 * not overwritten unless --force. The built CLI, as an operator runs it, in temporary folders.
 */
import * as fs from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"
import { afterEach, assert, beforeEach, describe, it } from "@effect/vitest"
import { spawnSync } from "node:child_process"

let tmp = ""
beforeEach(async () => {
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), "kaiwa-preview-out-"))
})
afterEach(async () => {
  await fs.rm(tmp, { recursive: true, force: true })
})

/** `kaiwa-jobs preview founder-emails ...args` with `cwd` as the working directory. */
const preview = async (args: ReadonlyArray<string>, cwd = process.cwd()) => {
  const r = spawnSync(process.execPath, [path.join(process.cwd(), "dist", "cli.js"), "preview", "founder-emails", ...args], {
    cwd,
    encoding: "utf8",
    env: { PATH: process.env["PATH"] ?? "", HOME: tmp, NODE_ENV: "production" }
  })
  return { code: r.status, stdout: r.stdout, stderr: r.stderr }
}

describe("preview --out", () => {
  it("refuses an empty path (exit 2) and writes nothing in the working directory", async () => {
    const r = await preview(["--out", ""], tmp)
    assert.strictEqual(r.code, 2, r.stderr)
    assert.include(r.stderr, "--out needs a folder (it was empty)")
    assert.deepStrictEqual(await fs.readdir(tmp), [])
  })

  it("never follows a planted symbolic link, as a file or as the folder, even with --force", async () => {
    const victim = path.join(tmp, "victim.txt")
    await fs.writeFile(victim, "precious")
    const out = path.join(tmp, "out")
    await fs.mkdir(out)
    await fs.symlink(victim, path.join(out, "founder-day1.html"))
    for (const args of [["--out", out], ["--out", out, "--force"]]) {
      const r = await preview(args)
      assert.strictEqual(r.code, 2, r.stderr)
      assert.include(r.stderr, "symbolic link")
      assert.strictEqual(await fs.readFile(victim, "utf8"), "precious")
    }
    // Refused before the first write: no other file of the preview was written either.
    assert.deepStrictEqual(await fs.readdir(out), ["founder-day1.html"])

    const linkedDir = path.join(tmp, "linked")
    await fs.mkdir(path.join(tmp, "elsewhere"))
    await fs.symlink(path.join(tmp, "elsewhere"), linkedDir)
    const r = await preview(["--out", linkedDir, "--force"])
    assert.strictEqual(r.code, 2, r.stderr)
    assert.include(r.stderr, "symbolic link")
    assert.deepStrictEqual(await fs.readdir(path.join(tmp, "elsewhere")), [])
  })

  it("refuses to overwrite an existing file unless --force", async () => {
    const out = path.join(tmp, "out")
    const first = await preview(["--out", out])
    assert.strictEqual(first.code, 0, first.stderr)
    const day1 = path.join(out, "founder-day1.html")
    await fs.writeFile(day1, "edited by hand")
    const again = await preview(["--out", out])
    assert.strictEqual(again.code, 2, again.stderr)
    assert.include(again.stderr, "--force")
    assert.strictEqual(await fs.readFile(day1, "utf8"), "edited by hand")
    const forced = await preview(["--out", out, "--force"])
    assert.strictEqual(forced.code, 0, forced.stderr)
    assert.include(await fs.readFile(day1, "utf8"), "/unsubscribe?token=")
  })
})
