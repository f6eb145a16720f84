/** Runs a compiled main (dist/*.js) as a real child process with plain `node` and a controlled environment. */
import { spawn } from "node:child_process"

/** What a finished child printed and how it ended. */
export interface Finished {
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
  readonly stdout: string
  readonly stderr: string
}

// Only what a Fly machine would have, plus PATH: never the test runner's own environment.
const baseEnv = () => ({ PATH: process.env["PATH"] ?? "", HOME: process.env["HOME"] ?? "/tmp", NODE_ENV: "production" })

/** Starts `node <script> ...args`; `onStdout` sees output as it arrives. */
export const start = (
  script: string,
  args: ReadonlyArray<string>,
  env: Readonly<Record<string, string>> = {},
  onStdout?: (chunk: string, child: ReturnType<typeof spawn>) => void
) => {
  const child = spawn(process.execPath, [script, ...args], { env: { ...baseEnv(), ...env }, stdio: ["ignore", "pipe", "pipe"] })
  let stdout = ""
  let stderr = ""
  child.stdout.on("data", (d: Buffer) => {
    stdout += d.toString()
    onStdout?.(stdout, child)
  })
  child.stderr.on("data", (d: Buffer) => (stderr += d.toString()))
  const done = new Promise<Finished>((resolve) =>
    child.on("close", (code, signal) => resolve({ code, signal, stdout, stderr }))
  )
  return { child, done }
}

/** Runs to completion. */
export const run = (script: string, args: ReadonlyArray<string>, env: Readonly<Record<string, string>> = {}) =>
  start(script, args, env).done
