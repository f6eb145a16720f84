/**
 * `npm run demo -- --console` (issue 21 item 6): the demo runs every job on its local embedded database, then
 * serves that database with the console on loopback and prints a sign-in link, with no secret set by hand (the
 * environment here has no CONSOLE_SECRET). The printed link signs in, and the jobs page shows the demo's runs.
 * Run as a real process in a temporary folder, so its `.kaiwa-local/` is its own.
 */
import { spawn } from "node:child_process"
import * as fs from "node:fs/promises"
import { createServer } from "node:net"
import * as os from "node:os"
import * as path from "node:path"
import { assert, describe, it } from "@effect/vitest"

const freePort = () =>
  new Promise<number>((resolve) => {
    const server = createServer()
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as { port: number }
      server.close(() => resolve(port))
    })
  })

describe("npm run demo -- --console", () => {
  it("runs the demo, serves the console on loopback and prints a link that signs in", async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), "kaiwa-demo-console-"))
    // Readable by the unprivileged user the embedded server runs as when the tests run as root.
    await fs.chmod(dir, 0o755)
    const port = await freePort()
    const tsx = path.resolve("node_modules/tsx/dist/cli.mjs")
    const child = spawn(process.execPath, [tsx, path.resolve("dev/run-demo.ts"), "--console"], {
      cwd: dir,
      env: { PATH: process.env["PATH"] ?? "", HOME: process.env["HOME"] ?? dir, PORT: String(port) },
      stdio: ["ignore", "pipe", "pipe"]
    })
    let out = ""
    child.stdout.on("data", (d: Buffer) => (out += d.toString()))
    child.stderr.on("data", (d: Buffer) => (out += d.toString()))
    const exited = new Promise<number | null>((resolve) => child.on("close", (code) => resolve(code)))
    try {
      // Ready once it printed the link and the server listens (bounded by the test's timeout, not a sleep).
      const link = await new Promise<string>((resolve, reject) => {
        const check = () => {
          const m = /Sign in \(once, within 15 minutes\): (\S+)/.exec(out)
          if (m && out.includes("Listening on")) resolve(m[1]!)
        }
        child.stdout.on("data", check)
        child.stderr.on("data", check)
        void exited.then((code) => reject(new Error(`the demo exited (${code}) before serving:\n${out}`)))
      })
      assert.match(link, new RegExp(`^http://127\\.0\\.0\\.1:${port}/console/login\\?token=`))
      assert.include(out, "Reminder process completed!")
      assert.strictEqual((await fetch(link)).status, 200)
      const useLink = () =>
        fetch(`http://127.0.0.1:${port}/console/login`, {
          method: "POST",
          redirect: "manual",
          headers: { "content-type": "application/x-www-form-urlencoded" },
          body: new URLSearchParams({ token: new URL(link).searchParams.get("token")! }).toString()
        })
      const signIn = await useLink()
      assert.strictEqual(signIn.status, 303)
      const cookie = /^(kaiwa_console=[^;]+);/.exec(signIn.headers.get("set-cookie") ?? "")?.[1]
      assert.isDefined(cookie)
      const jobs = await fetch(`http://127.0.0.1:${port}/console`, { headers: { cookie: cookie! } })
      const html = await jobs.text()
      assert.strictEqual(jobs.status, 200)
      for (const title of ["Daily practice reminders", "Founder email sequence", "Weekly progress report"]) assert.include(html, title)
      assert.match(html, /<strong>succeeded<\/strong> <span class="note">\(demo\)<\/span>/)
      // The link worked once.
      assert.strictEqual((await useLink()).status, 401)
    } finally {
      child.kill("SIGINT")
      await exited
      await fs.rm(dir, { recursive: true, force: true })
    }
  }, 180_000)
})
