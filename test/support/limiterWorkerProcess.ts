/** Starts test/support/limiterWorker.ts as a child process: one worker of the shared rate limit, sending to the fake. */
import { type ChildProcess, spawn } from "node:child_process"
import * as path from "node:path"
import { Redacted } from "effect"
import type { FakeResend } from "./FakeResend.ts"

const WORKER = path.resolve("test/support/limiterWorker.ts")

/**
 * A worker named `name` sending at `rps` for `seconds`; it is tracked in `workers` while it runs (so a test's
 * afterAll can kill what is left). `done` resolves when it ends, `output` is what it printed.
 */
export const startLimiterWorker = (
  workers: Set<ChildProcess>,
  url: Redacted.Redacted<string>,
  fake: FakeResend,
  options: { readonly name: string; readonly rps: number; readonly seconds: number }
) => {
  const child = spawn(process.execPath, ["--import", "tsx", WORKER], {
    env: {
      PATH: process.env["PATH"] ?? "",
      DATABASE_URL: Redacted.value(url),
      FAKE_URL: fake.url,
      FAKE_KEY: fake.apiKey,
      RPS: String(options.rps),
      SECONDS: String(options.seconds),
      NAME: options.name
    },
    stdio: ["ignore", "pipe", "pipe"]
  })
  workers.add(child)
  let output = ""
  child.stdout!.on("data", (d: Buffer) => (output += d.toString()))
  child.stderr!.on("data", (d: Buffer) => (output += d.toString()))
  const done = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on("close", (code, signal) => {
      workers.delete(child)
      resolve({ code, signal })
    })
  )
  return { child, done, output: () => output }
}
