/**
 * Shared pieces of the fault tests (test/faults) and of the longer kill benchmark (bench/faults-kill.ts): a
 * migrated database seeded with due learners, the live environment of a compiled main pointed at the fake
 * Resend, real child processes that can be killed, signalled or waited for, and the exactly-once check that
 * compares the ledger with what the provider accepted. Nothing here uses vitest's context, so the benchmark can
 * run it with plain `tsx`.
 */
import { type ChildProcess, spawn } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { Effect, Redacted } from "effect"
import { SqlClient } from "effect/sql"
import { pgLayer } from "../../src/database/Database.ts"
import * as Layers from "../../src/job/Layers.ts"
import type { FakeResend } from "../support/FakeResend.ts"
import { insertUsers, type UserFixture } from "../support/TestDb.ts"

/** Tuesday 2026-03-10 10:00 UTC: inside the 09:00-21:00 reminder window of UTC learners. */
export const AT = "2026-03-10T10:00:00Z"
const DAY = 86_400_000

/** `n` learners due for a practice reminder at AT (signed up 30 days before, never practised, UTC). */
export const dueLearners = (n: number, prefix = "u"): Array<UserFixture> =>
  Array.from({ length: n }, (_, i) => ({
    id: `${prefix}${String(i).padStart(4, "0")}`,
    createdAt: new Date(Date.parse(AT) - 30 * DAY)
  }))

/** The address `insertUsers` gives a fixture without an explicit email. */
export const addressOf = (u: UserFixture) => u.email ?? `${u.id}@example.com`

/** Migrates a database (library schema and app fixture) the way the tests' layer does, and inserts `users`. */
export const seed = (url: Redacted.Redacted<string>, users: ReadonlyArray<UserFixture>) =>
  Effect.runPromise(insertUsers(users).pipe(Effect.provide(Layers.test(url))))

/** Runs SQL against a database, with a pool that lives only for the call. */
export const query = <A>(url: Redacted.Redacted<string>, f: (sql: SqlClient.SqlClient) => Effect.Effect<A, unknown>) =>
  Effect.runPromise(Effect.flatMap(SqlClient.SqlClient, f).pipe(Effect.provide(pgLayer(url))) as Effect.Effect<A>)

/** The fake's seeded PRNG, so a failing trial can be replayed from the printed seed. */
export { prng } from "../support/FakeResend.ts"

/** An integer in [lo, hi] from a PRNG. */
export const between = (random: () => number, lo: number, hi: number) => lo + Math.floor(random() * (hi - lo + 1))

/** The unsubscribe secret every fault test gives the mains (live mode requires one). */
export const UNSUBSCRIBE_SECRET = "faults-unsubscribe-SECRET-0123456789"

/** The environment of a live run against `fake`: short leases so takeovers happen within the test. */
export const liveEnv = (url: Redacted.Redacted<string>, fake: FakeResend, extra: Record<string, string> = {}) => ({
  DATABASE_URL: Redacted.value(url),
  RESEND_API_KEY: fake.apiKey,
  RESEND_BASE_URL: fake.url,
  RESEND_RPS: "50",
  RESEND_TIMEOUT: "5s",
  SEND_DEADLINE: "30s",
  LEASE_SECONDS: "2",
  MAIL_FROM: "Kaiwa <hello@example.com>",
  APP_URL: "https://kaiwa.example",
  UNSUBSCRIBE_SECRET,
  ...extra
})

/**
 * A private copy of the compiled reminders main (dist/, its chunks included). `npm run build` (and every test run's global setup) deletes and
 * rewrites dist/, so a copy keeps these long-running process tests safe from another test run building at the
 * same time. Bare imports still resolve: the copy sits beside a `node_modules` link to the project's.
 */
export const snapshotMain = async (projectDir = process.cwd()): Promise<{ readonly script: string; readonly dispose: () => void }> => {
  const source = path.join(projectDir, "dist", "send-reminders.js")
  for (let i = 0; !fs.existsSync(source); i++) {
    if (i >= 300) throw new Error(`${source} is missing: run npm run build`)
    await new Promise((r) => setTimeout(r, 100))
  }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "kaiwa-faults-"))
  // The whole of dist/ (the entry imports its chunks from dist/chunks/, issue 13), source maps left out.
  fs.cpSync(path.join(projectDir, "dist"), dir, { recursive: true, filter: (f) => !f.endsWith(".map") })
  fs.copyFileSync(path.join(projectDir, "package.json"), path.join(dir, "package.json"))
  fs.symlinkSync(path.join(projectDir, "node_modules"), path.join(dir, "node_modules"), "dir")
  return { script: path.join(dir, "send-reminders.js"), dispose: () => fs.rmSync(dir, { recursive: true, force: true }) }
}

/** How a child ended, what it printed, and when (ms after it was started). */
export interface Ended {
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
  readonly stdout: string
  readonly stderr: string
  readonly ms: number
}

/** A running main. */
export interface Running {
  readonly child: ChildProcess
  readonly startedAt: number
  readonly done: Promise<Ended>
  readonly output: () => string
}

const children = new Set<ChildProcess>()

// Only what a Fly machine would have, plus PATH: never the test runner's own environment.
const baseEnv = () => ({ PATH: process.env["PATH"] ?? "", HOME: process.env["HOME"] ?? "/tmp", NODE_ENV: "production" })

/** Starts `node <script> --now AT` in live mode with exactly `env`. */
export const startMain = (script: string, env: Record<string, string>, args: ReadonlyArray<string> = ["--now", AT]): Running => {
  const startedAt = performance.now()
  const child = spawn(process.execPath, [script, ...args], { env: { ...baseEnv(), ...env }, stdio: ["ignore", "pipe", "pipe"] })
  children.add(child)
  let stdout = ""
  let stderr = ""
  child.stdout!.on("data", (d: Buffer) => (stdout += d.toString()))
  child.stderr!.on("data", (d: Buffer) => (stderr += d.toString()))
  const done = new Promise<Ended>((resolve) =>
    child.on("close", (code, signal) => {
      children.delete(child)
      resolve({ code, signal, stdout, stderr, ms: performance.now() - startedAt })
    })
  )
  return { child, startedAt, done, output: () => stdout + stderr }
}

/** Runs a main to its end. */
export const runMain = (script: string, env: Record<string, string>) => startMain(script, env).done

/** SIGKILLs every child this module started that is still running (a test that failed half-way). */
export const killAll = () => {
  for (const child of children) child.kill("SIGKILL")
}

/** Resolves once `condition` holds (polled every `everyMs`), or rejects after `timeoutMs`. */
export const waitFor = async (what: string, condition: () => boolean | Promise<boolean>, timeoutMs = 20_000, everyMs = 5) => {
  const until = performance.now() + timeoutMs
  while (!(await condition())) {
    if (performance.now() > until) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await new Promise((r) => setTimeout(r, everyMs))
  }
}

/** A provider call that has arrived at the fake and is not answered yet (the batch is in flight). */
export const inFlight = (fake: FakeResend) => fake.log.some((r) => r.path === "/emails/batch" && r.status === null)

/** One ledger row as the exactly-once check reads it. */
interface LedgerRow {
  readonly user_id: string
  readonly email: string
  readonly status: string
  readonly provider_id: string | null
}

/** What the ledger and the provider say after a scenario; `problems` is empty when delivery was exactly once. */
export interface Verdict {
  readonly problems: ReadonlyArray<string>
  readonly accepted: number
  readonly ledger: Readonly<Record<string, number>>
}

/**
 * Exactly once, ledger against provider: every due address was accepted exactly once and nothing else was; the
 * ledger holds one row per due learner, none pending, each `sent` with a provider id that the provider gave
 * that very address.
 */
export const verifyExactlyOnce = async (
  url: Redacted.Redacted<string>,
  fake: FakeResend,
  due: ReadonlyArray<UserFixture>
): Promise<Verdict> => {
  const problems: Array<string> = []
  const expected = new Set(due.map(addressOf))
  const counts = fake.acceptedCountByRecipient()
  for (const [address, n] of counts) {
    if (!expected.has(address)) problems.push(`${address} was accepted but is not due`)
    else if (n !== 1) problems.push(`${address} was accepted ${n} times`)
  }
  for (const address of expected) if (!counts.has(address)) problems.push(`${address} was never accepted`)
  if (fake.accepted.length !== expected.size) problems.push(`${fake.accepted.length} emails accepted for ${expected.size} due learners`)

  const idsByAddress = new Map<string, Set<string>>()
  for (const a of fake.accepted) for (const to of a.to) (idsByAddress.get(to) ?? idsByAddress.set(to, new Set()).get(to)!).add(a.id)
  const rows = await query(url, (sql) => sql<LedgerRow>`SELECT user_id, email, status, provider_id FROM kaiwa_jobs.deliveries`)
  const ledger: Record<string, number> = {}
  for (const r of rows) {
    ledger[r.status] = (ledger[r.status] ?? 0) + 1
    if (r.status !== "sent") problems.push(`ledger row of ${r.user_id} is ${r.status}`)
    else if (r.provider_id === null || !idsByAddress.get(r.email)?.has(r.provider_id)) {
      problems.push(`ledger row of ${r.user_id} says sent as ${r.provider_id}, which the provider never gave ${r.email}`)
    }
  }
  if (rows.length !== expected.size) problems.push(`${rows.length} ledger rows for ${expected.size} due learners`)
  return { problems, accepted: fake.accepted.length, ledger }
}

/** The secrets a main's output must never contain. */
export const secretsOf = (url: Redacted.Redacted<string>, fake: FakeResend): ReadonlyArray<string> => {
  const password = decodeURIComponent(new URL(Redacted.value(url)).password)
  return [fake.apiKey, UNSUBSCRIBE_SECRET, Redacted.value(url), ...(password === "" ? [] : [password])]
}

/** Where a SIGKILL landed, judged from the provider's side at the moment of the kill. */
export type KillPhase = "before any send" | "batch in flight" | "between batches" | "after the last accept" | "exited first"

/** One SIGKILL trial and its re-run. */
export interface KillTrialResult {
  readonly trial: number
  readonly killAfterMs: number
  readonly latencyMs: number
  readonly phase: KillPhase
  /** Emails the provider had accepted when the kill landed. */
  readonly acceptedAtKill: number
  /** Exit code of the re-run, and how long it took (it waits out the dead run's lease). */
  readonly rerunCode: number | null
  readonly rerunMs: number
  readonly rerunOutput: string
  readonly verdict: Verdict
}

/** Resolves when a running main has printed `text` (e.g. "▶", the run's first line); rejects if it ends first. */
export const printed = (running: Running, text: string) =>
  new Promise<void>((resolve, reject) => {
    const check = () => {
      if (running.output().includes(text)) {
        running.child.stdout!.off("data", check)
        resolve()
      }
    }
    running.child.stdout!.on("data", check)
    check()
    void running.done.then((e) => reject(new Error(`the main ended (${e.code ?? e.signal}) before printing ${text}: ${e.stdout}${e.stderr}`)))
  })

/**
 * The client-side rate limit of the kill trials. Three calls a second (about Resend's default team limit) spreads
 * a 150-learner run's two batches over half a second or more, so kills land in planning, in a claimed batch
 * waiting for its slot, in a batch at the provider, and in recording, rather than mostly after the run ended.
 */
export const KILL_TRIAL_RPS = "3"

/**
 * Seeds `users` due learners, starts a live run against a fresh fake Resend answering after `latencyMs`, SIGKILLs
 * it `killAfterMs` after the run began (its "▶" line: process start-up takes a second or more on a small machine
 * and is not what these trials are about), then runs the job again to its end and checks exactly-once delivery.
 */
export const killTrial = async (options: {
  readonly trial: number
  readonly script: string
  readonly url: Redacted.Redacted<string>
  readonly users: number
  readonly killAfterMs: number
  readonly latencyMs: number
  readonly startFake: (latencyMs: number) => Promise<FakeResend>
}): Promise<KillTrialResult> => {
  const due = dueLearners(options.users, `k${options.trial}-`)
  await seed(options.url, due)
  const fake = await options.startFake(options.latencyMs)
  try {
    const env = liveEnv(options.url, fake, { RESEND_RPS: KILL_TRIAL_RPS })
    const first = startMain(options.script, env)
    let phase: KillPhase = "exited first"
    let acceptedAtKill = 0
    await printed(first, "▶")
    const timer = setTimeout(() => {
      acceptedAtKill = fake.accepted.length
      phase = fake.requests === 0
        ? "before any send"
        : inFlight(fake)
        ? "batch in flight"
        : acceptedAtKill >= due.length
        ? "after the last accept"
        : "between batches"
      first.child.kill("SIGKILL")
    }, options.killAfterMs)
    const ended = await first.done
    clearTimeout(timer)
    if (ended.signal !== "SIGKILL") {
      phase = "exited first"
      acceptedAtKill = fake.accepted.length
    }
    if (phase === "exited first" && ended.code !== 0) {
      throw new Error(`trial ${options.trial}: the run exited ${ended.code} before the kill: ${ended.stdout}${ended.stderr}`)
    }
    const rerun = await runMain(options.script, env)
    const verdict = await verifyExactlyOnce(options.url, fake, due)
    return {
      trial: options.trial,
      killAfterMs: options.killAfterMs,
      latencyMs: options.latencyMs,
      phase,
      acceptedAtKill,
      rerunCode: rerun.code,
      rerunMs: Math.round(rerun.ms),
      rerunOutput: rerun.stdout + rerun.stderr,
      verdict
    }
  } finally {
    await fake.close()
  }
}
