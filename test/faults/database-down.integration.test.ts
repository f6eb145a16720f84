/**
 * PostgreSQL goes away in the middle of a live run (a failover, a restart, a crash). The process must not hang
 * or send blind: it ends within seconds with exit 1 and a message saying the database is unreachable, printing
 * no secret. Once the server is back, a re-run finishes the tick, and the batch that was at the provider when
 * the database went away is resumed under its key, so nobody gets a second email.
 * This test stops a server, so it uses its own embedded server (with a data folder that outlives a restart),
 * not the suite's shared one.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { afterAll, assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Layer, Scope } from "effect"
import { SqlClient } from "effect/sql"
import { describeSqlCause, pgLayer, toDatabaseError } from "../../src/database/Database.ts"
import { start } from "../../src/local/EmbeddedPostgres.ts"
import { startFakeResend } from "../support/FakeResend.ts"
import {
  dueLearners,
  inFlight,
  killAll,
  liveEnv,
  printed,
  query,
  runMain,
  secretsOf,
  seed,
  startMain,
  verifyExactlyOnce,
  waitFor
} from "./harness.ts"
import { compiledMain } from "./hooks.ts"

const LEARNERS = 250

const main = compiledMain()
const scopes: Array<Scope.Closeable> = []
let base: string | undefined
const dirs: Array<string> = []
afterAll(async () => {
  killAll()
  for (const scope of scopes) await Effect.runPromise(Scope.close(scope, Exit.void))
  for (const dir of base === undefined ? dirs : [base, ...dirs]) fs.rmSync(dir, { recursive: true, force: true })
})

/** Starts (or restarts) the embedded server on the data folder `dir`; `stop` shuts it down (a fast shutdown). */
const serverOn = async (dir: string) => {
  const scope = Effect.runSync(Scope.make())
  scopes.push(scope)
  const server = await Effect.runPromise(Scope.provide(start({ dataDir: dir }), scope))
  return {
    server,
    stop: async () => {
      scopes.splice(scopes.indexOf(scope), 1)
      await Effect.runPromise(Scope.close(scope, Exit.void))
    }
  }
}

describe("the database stops in the middle of a run", () => {
  it("the run exits 1 within 10 s saying the database is unreachable, no secret printed; after a restart a re-run completes once", async () => {
    base = fs.mkdtempSync(path.join(os.tmpdir(), "kaiwa-faults-pg-"))
    const first = await serverOn(base)
    await Effect.runPromise(first.server.createDatabase("faults"))
    const url = first.server.url("faults")
    const due = dueLearners(LEARNERS)
    await seed(url, due)
    const fake = await startFakeResend({ apiKey: "re_faults_SECRET_api_key" })
    // The provider holds the first batch until the database is down (a gate, so a slow stop cannot let the
    // answer and its ledger write land before it).
    const release = fake.holdNext()
    try {
      const run = startMain(main.script, liveEnv(url, fake))
      await printed(run, "▶")
      await waitFor("a batch at the provider", () => inFlight(fake), 20_000, 2)
      const stoppedAt = performance.now()
      await first.stop()
      release()
      const ended = await run.done
      const exitMs = performance.now() - stoppedAt
      const output = ended.stdout + ended.stderr
      console.log(`database down: exited ${ended.code} ${Math.round(exitMs)} ms after the stop began; last line: ` +
        output.trim().split("\n").at(-1))
      assert.isBelow(exitMs, 10_000, `the run took ${Math.round(exitMs)} ms to give up`)
      assert.strictEqual(ended.code, 1, output)
      assert.match(output, /database is unreachable/)
      for (const secret of secretsOf(url, fake)) assert.notInclude(output, secret, "a secret reached the output")
      // The provider accepted the batch that was in flight; its ledger rows could not be written.
      const acceptedWhileDown = fake.accepted.length
      assert.strictEqual(acceptedWhileDown, 100)

      const second = await serverOn(base)
      const url2 = second.server.url("faults")
      const pending = await query(url2, (sql) =>
        sql<{ status: string; n: number }>`SELECT status, count(*)::int AS n FROM kaiwa_jobs.deliveries GROUP BY status`)
      assert.deepStrictEqual(pending, [{ status: "pending", n: LEARNERS }])
      fake.faults.latencyMs = 50
      const rerun = await runMain(main.script, liveEnv(url2, fake))
      assert.strictEqual(rerun.code, 0, rerun.stdout + rerun.stderr)
      const verdict = await verifyExactlyOnce(url2, fake, due)
      assert.deepStrictEqual(verdict.problems, [])
      assert.isAtLeast(fake.stats.idempotentReplays, 1)
      const runs = await query(url2, (sql) => sql<{ outcome: string }>`SELECT outcome FROM kaiwa_jobs.runs`)
      // The first run could not record its end: its row still says running. The re-run succeeded.
      assert.sameMembers(runs.map((r) => r.outcome), ["running", "succeeded"])
      await second.stop()
    } finally {
      await fake.close()
    }
  })
})

describe("a server on its way down", () => {
  it("refusing new connections while it shuts down (SQLSTATE 57P03) reads as the database being unreachable", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "kaiwa-faults-pg-"))
    dirs.push(dir)
    const { server, stop } = await serverOn(dir)
    await Effect.runPromise(server.createDatabase("down"))
    const url = server.url("down")
    // An open session keeps a smart shutdown (SIGTERM) waiting, and meanwhile the server refuses every new
    // connection with "the database system is shutting down": the state a run met when its provider answered
    // during a stop.
    const held = Effect.runSync(Scope.make())
    try {
      const context = await Effect.runPromise(Scope.provide(Layer.build(pgLayer(url)), held))
      await Effect.runPromise(Effect.flatMap(SqlClient.SqlClient, (sql) => sql`SELECT 1`).pipe(Effect.provide(context)))
      process.kill(server.pid!, "SIGTERM")
      let refused: unknown
      for (let i = 0; i < 100 && refused === undefined; i++) {
        const attempt = await Effect.runPromise(
          Effect.flatMap(SqlClient.SqlClient, (sql) => sql`SELECT 1`).pipe(Effect.provide(pgLayer(url)), Effect.result)
        )
        if (attempt._tag === "Failure") refused = attempt.failure
        else await new Promise((resolve) => setTimeout(resolve, 50))
      }
      assert.isDefined(refused, "the server kept accepting connections after SIGTERM")
      assert.match(String((refused as { cause?: unknown }).cause ?? "") + JSON.stringify(refused) + String(refused), /shutting down|57P03/)
      assert.strictEqual(describeSqlCause(refused), "the database is unreachable")
      // The tagged error carries it as a reason code matches on, not only as text.
      const error = toDatabaseError("a statement")(refused)
      assert.deepStrictEqual([error._tag, error.reason], ["DatabaseError", "unreachable"])
      // A statement the server ran and refused is a failed statement, not an unreachable database.
      const refusedStatement = await Effect.runPromise(
        Effect.flatMap(SqlClient.SqlClient, (sql) => sql`SELECT 1/0`).pipe(Effect.provide(context), Effect.flip)
      )
      assert.strictEqual(toDatabaseError("dividing")(refusedStatement).reason, "statement")
    } finally {
      await Effect.runPromise(Scope.close(held, Exit.void))
      await stop()
    }
  })
})
