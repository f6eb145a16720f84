/**
 * docs/github-actions-cron.yml stays a valid workflow that works: it parses (a reader of the YAML subset it uses),
 * it is scheduled and can be run by hand, its matrix is exactly the jobs `kaiwa-jobs list` registers, and its step,
 * run with bash as GitHub runs it (`bash --noprofile --norc -eo pipefail`), its `${{ }}` expressions filled in,
 * triggers each job on a real `kaiwa-jobs serve`: the path exists and the Authorization header it sends is the one
 * the server checks (a dry run from "Run workflow", a live run as the schedule sends it, a wrong secret refused).
 */
import { spawn } from "node:child_process"
import * as fs from "node:fs"
import * as net from "node:net"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Redacted } from "effect"
import * as Layers from "../../src/job/Layers.ts"
import { run, start } from "../support/spawn.ts"
import { freshDatabaseUrl } from "../support/TestDb.ts"
import { parseYamlSubset, type Yaml } from "./yamlSubset.ts"

const FILE = "docs/github-actions-cron.yml"
const SECRET = "workflow-cron-secret-0123456789-abcdefghij"

type Map = { readonly [key: string]: Yaml }
const isList = (v: Yaml | undefined): v is ReadonlyArray<Yaml> => Array.isArray(v)
const isMap = (v: Yaml | undefined): v is Map => typeof v === "object" && v !== null && !isList(v)
const asMap = (v: Yaml | undefined, what: string): Map => isMap(v) ? v : assert.fail(`${what} is a mapping`)
const asList = (v: Yaml | undefined, what: string): ReadonlyArray<Yaml> => isList(v) ? v : assert.fail(`${what} is a sequence`)

/** GitHub's `${{ expr }}` with the values of a context; an expression the test does not know fails it. */
const fill = (text: string, context: Readonly<Record<string, string>>): string =>
  text.replace(/\$\{\{\s*([^}]+?)\s*\}\}/g, (_, expr: string) => {
    assert.property(context, expr, `${FILE} uses \${{ ${expr} }}, which this test does not provide`)
    return context[expr]!
  })

/** A step's `run`, as GitHub runs a bash step, with only its own `env` (and PATH). */
const runStep = (step: Map, context: Readonly<Record<string, string>>) =>
  new Promise<{ code: number | null; out: string; err: string }>((resolve) => {
    const env = Object.fromEntries(Object.entries(asMap(step["env"], "the step's env")).map(([k, v]) => [k, fill(String(v), context)]))
    const child = spawn("bash", ["--noprofile", "--norc", "-eo", "pipefail", "-c", fill(String(step["run"]), context)], {
      env: { PATH: process.env["PATH"] ?? "", ...env },
      stdio: ["ignore", "pipe", "pipe"]
    })
    let out = ""
    let err = ""
    child.stdout.on("data", (d: Buffer) => (out += d.toString()))
    child.stderr.on("data", (d: Buffer) => (err += d.toString()))
    child.on("close", (code) => resolve({ code, out, err }))
  })

const freePort = () =>
  new Promise<number>((resolve, reject) => {
    const s = net.createServer().listen(0, "127.0.0.1", () => {
      const address = s.address()
      if (address === null || typeof address === "string") return reject(new Error("no TCP port"))
      s.close(() => resolve(address.port))
    })
  })

/**
 * `kaiwa-jobs serve` as Fly runs it (live settings, CRON_SECRET = SECRET) on a fresh database holding the library's
 * schema and the app's tables (Kaiwa's shape); its base URL once /health answers. Stopped when the scope closes.
 */
const serve = Effect.gen(function*() {
  const url = yield* freshDatabaseUrl
  yield* Effect.provide(Effect.void, Layers.test(url, "kaiwa"))
  const port = yield* Effect.promise(freePort)
  const { child, done } = start("dist/cli.js", ["serve"], {
    DATABASE_URL: Redacted.value(url),
    RESEND_API_KEY: "re_unused",
    RESEND_BASE_URL: "http://127.0.0.1:9",
    MAIL_FROM: "Kaiwa <hello@example.com>",
    APP_URL: "https://kaiwa.example",
    UNSUBSCRIBE_SECRET: "workflow-unsubscribe-secret-0123456789",
    PORT: String(port),
    CRON_SECRET: SECRET,
    FOUNDER_NAME: "Yuki Sato"
  })
  yield* Effect.addFinalizer(() => Effect.promise(() => (child.kill("SIGTERM"), done)))
  const base = `http://127.0.0.1:${port}`
  yield* Effect.promise(async () => {
    for (let i = 0; i < 150; i++) {
      if (await fetch(`${base}/health`).then(() => true, () => false)) return
      await new Promise((r) => setTimeout(r, 100))
    }
    throw new Error("the server never answered")
  })
  return base
})

interface Report {
  readonly job: string
  readonly outcome: string
  readonly dryRun: boolean
}

const workflow = asMap(parseYamlSubset(fs.readFileSync(FILE, "utf8")), "the workflow")
const trigger = asMap(asMap(workflow["jobs"], "jobs")["trigger"], "jobs.trigger")
const matrixJobs = asList(asMap(asMap(trigger["strategy"], "strategy")["matrix"], "matrix")["job"], "matrix.job").map(String)
const steps = asList(trigger["steps"], "steps").map((s) => asMap(s, "a step"))

describe(FILE, () => {
  it("is scheduled hourly, can be run by hand with a dry run, and its matrix is every registered job", async () => {
    const on = asMap(workflow["on"], "on")
    const schedule = asList(on["schedule"], "on.schedule").map((s) => String(asMap(s, "a schedule")["cron"]))
    assert.lengthOf(schedule, 1)
    // Five fields, every hour: each run decides who is due, so the jobs need a run every hour, no more.
    assert.match(schedule[0]!, /^([0-5]?\d) \* \* \* \*$/)
    const dryRun = asMap(asMap(asMap(on["workflow_dispatch"], "workflow_dispatch")["inputs"], "inputs")["dry_run"], "dry_run")
    assert.strictEqual(dryRun["type"], "boolean")
    assert.strictEqual(dryRun["default"], false)
    assert.deepStrictEqual(workflow["permissions"], {})
    const listed = await run("dist/cli.js", ["list", "--json"])
    assert.strictEqual(listed.code, 0, listed.stderr)
    const jobs: ReadonlyArray<{ readonly name: string }> = JSON.parse(listed.stdout)
    const registered = jobs.map((j) => j.name)
    assert.deepStrictEqual([...matrixJobs].sort(), [...registered].sort())
    assert.lengthOf(steps.filter((s) => s["run"] !== undefined), 1)
  })

  it.live("its step triggers each job on `kaiwa-jobs serve` with the header the server checks", () =>
    Effect.gen(function*() {
      const url = yield* serve
      const step = steps.find((s) => s["run"] !== undefined)!
      const base = { "secrets.CRON_SECRET": SECRET, "vars.KAIWA_JOBS_URL": url }
      for (const job of matrixJobs) {
        // "Run workflow" with dry run ticked: nothing written, nothing sent, the report says so.
        const dry = yield* Effect.promise(() => runStep(step, { ...base, "matrix.job": job, "inputs.dry_run": "true" }))
        assert.strictEqual(dry.code, 0, `${job}: ${dry.out}${dry.err}`)
        const report: Report = JSON.parse(dry.out)
        assert.deepStrictEqual([report.job, report.outcome, report.dryRun], [job, "succeeded", true])
      }
      // The schedule's run: no inputs, so a live run (nobody is due in this empty app: nothing to send).
      const live = yield* Effect.promise(() => runStep(step, { ...base, "matrix.job": matrixJobs[0]!, "inputs.dry_run": "" }))
      assert.strictEqual(live.code, 0, live.out + live.err)
      const liveReport: Report = JSON.parse(live.out)
      assert.deepStrictEqual([liveReport.outcome, liveReport.dryRun], ["succeeded", false])
      // A secret that is not the server's: refused, and the step fails (curl --fail-with-body).
      const wrong = yield* Effect.promise(() =>
        runStep(step, { ...base, "secrets.CRON_SECRET": `${SECRET}-other`, "matrix.job": matrixJobs[0]!, "inputs.dry_run": "true" })
      )
      assert.notStrictEqual(wrong.code, 0)
      assert.include(wrong.out, "unauthorized")
    }).pipe(Effect.scoped), 120_000)
})
