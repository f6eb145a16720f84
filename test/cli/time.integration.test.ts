/**
 * Time is sane (issue 19, item 3): a live `--now` far ahead of the real clock is refused (exit 2) while a dry run
 * may look ahead; impossible dates exit 2 instead of rolling over (2026-02-30 is not March 2); `overdue` ignores
 * runs dated in the future of the real instant, and `status` names every run and ledger row dated there.
 */
import { assert, describe, layer } from "@effect/vitest"
import { Clock, ConfigProvider, Effect, Layer, Redacted, References } from "effect"
import { TestConsole } from "effect/testing"
import { SqlClient } from "effect/sql"
import * as Cli from "../../src/triggers/Cli.ts"
import * as Layers from "../../src/job/Layers.ts"
import { jobStatuses } from "../../src/operator/Status.ts"
import { run } from "../support/spawn.ts"
import { freshDatabaseUrl, insertUsers } from "../support/TestDb.ts"

const HOUR = 3_600_000
// Nothing listens on port 9: a live main that got past its flags would exit 1 "unreachable".
const liveEnv = {
  DATABASE_URL: "postgres://kaiwa:db-password@127.0.0.1:9/kaiwa",
  RESEND_API_KEY: "re_resend_key_for_time_tests",
  UNSUBSCRIBE_SECRET: "time-tests-unsubscribe-secret-0123",
  MAIL_FROM: "Kaiwa <hello@example.com>",
  APP_URL: "https://kaiwa.example",
  FOUNDER_NAME: "Yuki Sato"
}

let url: Redacted.Redacted<string> | undefined
const stack = Layer.unwrap(Effect.map(freshDatabaseUrl, (u) => {
  url = u
  return Layers.test(u)
})).pipe(Layer.provideMerge(Layer.succeed(References.MinimumLogLevel, "Warn")))

/** `kaiwa-jobs <argv>` in process, every mode on this test's database (in-memory mailer), on the real clock. */
const cli = (argv: ReadonlyArray<string>) => {
  const test = Layers.test(url!)
  return Effect.gen(function*() {
    const code = yield* Cli.main(Cli.root, argv)
    return { code, err: (yield* TestConsole.errorLines).map(String).join("\n") }
  }).pipe(
    Effect.provideService(Cli.Stacks, { live: test, dryRun: test, local: () => test }),
    Effect.provide(TestConsole.layer),
    Effect.provide(ConfigProvider.layer(ConfigProvider.fromEnv({ env: { UNSUBSCRIBE_SECRET: liveEnv.UNSUBSCRIBE_SECRET } })))
  )
}

const count = (table: "runs" | "deliveries") =>
  Effect.flatMap(SqlClient.SqlClient, (sql) => sql<{ n: number }>`SELECT count(*)::int AS n FROM ${sql(`kaiwa_jobs.${table}`)}`).pipe(
    Effect.map((rows) => rows[0]!.n)
  )

describe("--now", () => {
  layer(stack, { excludeTestServices: true })((it) => {
    it.effect("a live run with --now in 2099 is refused (exit 2) before anything is written; a dry run may look ahead", () =>
      Effect.gen(function*() {
        yield* insertUsers([{ id: "far-1", createdAt: new Date("2026-01-01T00:00:00Z") }])
        const live = yield* cli(["run", "practice-reminders", "--now", "2099-03-10T10:00:00Z"])
        assert.strictEqual(live.code, 2)
        assert.include(live.err, "--now")
        assert.include(live.err, "ahead of the clock")
        assert.strictEqual(yield* count("runs"), 0)
        assert.strictEqual(yield* count("deliveries"), 0)

        const dry = yield* cli(["run", "practice-reminders", "--dry-run", "--now", "2099-03-10T10:00:00Z"])
        assert.strictEqual(dry.code, 0, dry.err)
        assert.strictEqual(yield* count("runs"), 0)

        // A few minutes ahead (clock skew) is still a live run.
        const skew = new Date((yield* Clock.currentTimeMillis) + 2 * 60_000).toISOString()
        const near = yield* cli(["run", "practice-reminders", "--now", skew])
        assert.strictEqual(near.code, 0, near.err)
        assert.strictEqual(yield* count("runs"), 1)
      }))
  })

  layer(Layer.empty)((it) => {
    it.effect("the compiled mains refuse --now 2099 live (exit 2), and an impossible date in any mode", () =>
      Effect.gen(function*() {
        const far = yield* Effect.promise(() => run("dist/send-reminders.js", ["--now", "2099-01-01T09:00:00Z"], liveEnv))
        assert.strictEqual(far.code, 2, far.stderr)
        assert.include(far.stderr, "--now")
        for (const args of [["--now", "2026-02-30T09:00:00Z"], ["--dry-run", "--now", "2026-02-30T09:00:00Z"], ["--now", "2026-03-10T24:00:00Z"]]) {
          const r = yield* Effect.promise(() => run("dist/send-reminders.js", args, liveEnv))
          assert.strictEqual(r.code, 2, `${args.join(" ")}: ${r.stderr}`)
          assert.include(r.stderr, "--now")
        }
      }))
  })
})

describe("rows dated in the future", () => {
  layer(stack, { excludeTestServices: true })((it) => {
    it.effect("a success dated 2099 does not hide an overdue job, and `status` names the run and ledger rows dated there", () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        const now = yield* Clock.currentTimeMillis
        const past = new Date(now - 5 * HOUR)
        const future = new Date("2099-03-10T10:00:00Z")
        // What `run practice-reminders --now 2099-...` left before this was refused: a succeeded run and ledger rows.
        yield* sql`INSERT INTO kaiwa_jobs.runs (id, job, as_of, started_at, finished_at, outcome)
          VALUES (gen_random_uuid(), 'practice-reminders', ${past}, ${past}, ${past}, 'succeeded'),
                 (gen_random_uuid(), 'practice-reminders', ${future}, ${future}, ${future}, 'succeeded')`
        yield* sql`INSERT INTO kaiwa_jobs.deliveries (job, user_id, dedupe_key, email, data, planned_at, expires_at, status, sent_at)
          VALUES ('practice-reminders', 'fut-1', '2099-03-10', 'fut-1@example.com', '{}'::jsonb, ${future}, ${future}, 'sent', ${future}),
                 ('practice-reminders', 'fut-2', '2099-03-10', 'fut-2@example.com', '{}'::jsonb, ${future}, ${future}, 'sent', ${future})`

        const reminders = (yield* jobStatuses).find((s) => s.job === "practice-reminders")!
        assert.isTrue(reminders.overdue, "the 2099 run counted as the last success")
        assert.strictEqual(reminders.lastSuccessAt, past.toISOString())
        assert.strictEqual(reminders.lastRun?.startedAt, past.toISOString())

        const status = yield* Effect.promise(() => run("dist/cli.js", ["status"], { DATABASE_URL: Redacted.value(url!) }))
        assert.strictEqual(status.code, 1)
        assert.match(status.stdout, /OVERDUE practice-reminders/)
        assert.match(status.stdout, /FUTURE\s+1 run row\(s\) of practice-reminders dated in the future \(latest 2099-03-10T10:00:00.000Z; kaiwa_jobs.runs ids [0-9a-f-]{36}\)/)
        assert.match(status.stdout, /FUTURE\s+2 ledger row\(s\) of practice-reminders dated in the future \(latest 2099-03-10T10:00:00.000Z; kaiwa_jobs.deliveries ids \d+, \d+\)/)
        const json = yield* Effect.promise(() => run("dist/cli.js", ["status", "--json"], { DATABASE_URL: Redacted.value(url!) }))
        const parsed = JSON.parse(json.stdout) as ReadonlyArray<{ job: string; futureRows: ReadonlyArray<string> }>
        assert.strictEqual(parsed.find((s) => s.job === "practice-reminders")?.futureRows.length, 2)
      }))
  })
})
