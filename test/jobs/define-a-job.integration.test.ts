/**
 * The job-definition API needs nothing outside a job's declaration. `streakSaver` below is declared in this
 * test file only (it does not ship): its rule, data schema, template, stats groups and one setting of its own.
 * Added to a registry, it runs through the runner, the CLI (in process, with the in-memory mailer) and the HTTP
 * trigger, and inherits the ledger (a re-run sends nothing), the cross-job cap, suppressions, the unsubscribe
 * link, headers and page text for its own list, the template check, previews, dry runs and typed stats.
 * The whole suite runs on both app shapes (Kaiwa's real tables and CONTRACT 3's simple ones): the job's SQL
 * names no app table, so it runs unchanged on either.
 */
import * as fs from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"
import { NodeHttpServer } from "@effect/platform-node"
import { assert, describe, layer } from "@effect/vitest"
import { Config, ConfigProvider, Effect, Layer, Option, Redacted, Ref, References, Schema } from "effect"
import { HttpServer } from "effect/http"
import { SqlClient } from "effect/sql"
import { TestConsole } from "effect/testing"
import * as Cli from "../../src/triggers/Cli.ts"
import { JobsConfig } from "../../src/config/Config.ts"
import { link, renderEmail } from "../../src/emails/html.ts"
import { firstName } from "../../src/emails/fields.ts"
import * as Http from "../../src/triggers/Http.ts"
import * as Job from "../../src/job/Job.ts"
import { Jobs, practiceReminders, registry } from "../../src/jobs/index.ts"
import * as Layers from "../../src/job/Layers.ts"
import { Mailer, type OutgoingEmail } from "../../src/mail/Mailer.ts"
import { Database, pgLayer } from "../../src/database/Database.ts"
import { Telemetry } from "../../src/telemetry/Telemetry.ts"
import { makeToken, verifyToken } from "../../src/mail/Unsubscribe.ts"
import type { AppFixture } from "../../src/migrations/index.ts"
import { appShape, freshDatabaseUrl, insertUsers, uid } from "../support/TestDb.ts"

const HOUR = 3_600_000
const DAY = 24 * HOUR
// Tuesday 10:00 UTC: inside the reminder window of UTC users too, for the cap test.
const AT = new Date("2026-03-10T10:00:00Z")
const CRON_SECRET = "cron-secret-for-the-streak-saver-test-0123"
const UNSUBSCRIBE_SECRET = "unsubscribe-secret-for-the-streak-saver"
const ENV = { UNSUBSCRIBE_SECRET, CRON_SECRET, APP_URL: "https://app.kaiwa.test", MAIL_FROM: "Kaiwa <hello@kaiwa.test>" }

// ---------------------------------------------------------------------------------------------------------------
// The whole job: one declaration. "Streak saver": learners who practised yesterday (24-48 h ago) but not in the
// last 24 hours get one nudge per UTC date, with the number of sessions they had yesterday.
// ---------------------------------------------------------------------------------------------------------------
const StreakData = Schema.Struct({ displayName: Schema.NullOr(Schema.String), sessions: Schema.Int })

const streakSaver = Job.make({
  name: "streak-saver",
  title: "Streak saver",
  description: "Nudges learners who practised yesterday but not yet today.",
  list: "streak saver nudges",
  // Settings of the job's own: no edit to Config.ts.
  settings: Config.all({
    subject: Config.String("STREAK_SUBJECT").pipe(Config.withDefault("Keep your streak going")),
    minSessions: Config.Int("STREAK_MIN_SESSIONS").pipe(Config.withDefault(1))
  }),
  data: StreakData,
  // Who may be due and with which key; the library adds the ledger check, the shared rules and the cap.
  selection: ({ app, asOf, settings, sql }) => ({
    candidates: sql`
      SELECT u.user_id, u.email, u.display_name, u.email_verified, count(*)::int AS sessions,
        to_char(${asOf}::timestamptz AT TIME ZONE 'UTC', 'YYYY-MM-DD') AS dedupe_key
      FROM ${app.users} u
      JOIN ${app.sessions} s ON s.app_user_id = u.app_id
        AND s.start_time > ${asOf}::timestamptz - interval '48 hours' AND s.start_time <= ${asOf}::timestamptz - interval '24 hours'
      WHERE NOT EXISTS (
          SELECT 1 FROM ${app.sessions} t
          WHERE t.app_user_id = u.app_id AND t.start_time > ${asOf}::timestamptz - interval '24 hours' AND t.start_time <= ${asOf})
      GROUP BY u.user_id, u.email, u.display_name, u.email_verified
      HAVING count(*) >= ${settings.minSessions}`,
    rows: (fresh) => sql`
      SELECT c.user_id, c.email, c.dedupe_key, c.email_verified, true AS opt_in, false AS unknown_timezone,
        jsonb_build_object('displayName', c.display_name, 'sessions', c.sessions) AS data,
        ${asOf}::timestamptz + interval '6 hours' AS expires_at
      FROM ${fresh} c`
  }),
  groups: ["nudged"],
  group: () => "nudged",
  render: (data, { config, settings, unsubscribeUrl, preferencesUrl }) =>
    renderEmail({
      subject: settings.subject,
      preheader: "Two minutes today keeps it alive.",
      greeting: `Hi ${firstName(data.displayName)},`,
      paragraphs: [[`Yesterday you had ${data.sessions} conversation${data.sessions === 1 ? "" : "s"}. One more today?`]],
      cta: link("Practise now", config.appUrl),
      closing: ["The Kaiwa team"],
      reason: "You get this because you practised on Kaiwa yesterday.",
      unsubscribe: link("Unsubscribe from streak saver nudges", unsubscribeUrl),
      preferencesUrl,
      appUrl: config.appUrl
    }),
  samples: [{ name: "streak-saver-two", data: { displayName: "Aiko Tanaka", sessions: 2 } }],
  statsLine: (stats) => `📊 Stats: ${stats.nudged} nudged, ${stats.failed} failed`
})
// ---------------------------------------------------------------------------------------------------------------

const jobs = [...registry, streakSaver]

/** Learners: s1 and s2 practised yesterday only (due), s3 also today (not due), s4 never (not due). */
const learners = insertUsers([
  { id: "s1", displayName: "<b>Ana</b> & co", createdAt: new Date(AT.getTime() - 30 * DAY), sessions: [{ at: new Date(AT.getTime() - 30 * HOUR), language: "ja" }] },
  {
    id: "s2",
    createdAt: new Date(AT.getTime() - 30 * DAY),
    sessions: [{ at: new Date(AT.getTime() - 40 * HOUR), language: "es" }, { at: new Date(AT.getTime() - 26 * HOUR), language: "es" }]
  },
  {
    id: "s3",
    createdAt: new Date(AT.getTime() - 30 * DAY),
    sessions: [{ at: new Date(AT.getTime() - 30 * HOUR), language: "fr" }, { at: new Date(AT.getTime() - 2 * HOUR), language: "fr" }]
  },
  { id: "s4", createdAt: new Date(AT.getTime() - 30 * DAY) }
])

const provider = ConfigProvider.layer(ConfigProvider.fromEnv({ env: ENV }))

/**
 * Everything one run of the suite needs on one app shape: the declared job must run unchanged on Kaiwa's real
 * tables and on CONTRACT 3's simple ones (issue 18), so the suite below runs once per shape.
 */
const suiteOn = (shape: AppFixture) => {
  // One store for every stack the suite builds (each in-process CLI command builds its own, like a process would).
  const store = Effect.runSync(Ref.make<ReadonlyArray<OutgoingEmail>>([]))
  let databaseUrl: Redacted.Redacted<string> | undefined

  /** The test mode stack over the test database, with the shared in-memory mailer, at AT. */
  const stackOn = (url: Redacted.Redacted<string>) =>
    Layer.mergeAll(
      Database.layerMigrated({ appFixture: shape }).pipe(Layer.provideMerge(pgLayer(url))),
      Mailer.layerTestInto(store),
      Telemetry.layerTest,
      Layers.clockAt(AT)
    ).pipe(Layer.provideMerge(JobsConfig.layer), Layer.provide(provider))

  const stack = Layer.unwrap(Effect.map(freshDatabaseUrl, (url) => {
    databaseUrl = url
    return stackOn(url)
  })).pipe(Layer.provideMerge(Layer.succeed(References.MinimumLogLevel, "Warn")))

  /** Runs `kaiwa-jobs <argv>` in process, with this test's registry and the test stack in every mode. */
  const cli = (argv: ReadonlyArray<string>, env: Record<string, string> = {}) => {
    const stacks = { live: stackOn(databaseUrl!), dryRun: stackOn(databaseUrl!), local: () => stackOn(databaseUrl!) }
    return Effect.gen(function*() {
      const code = yield* Cli.main(Cli.root, argv)
      return { code, out: (yield* TestConsole.logLines).map(String).join("\n"), err: (yield* TestConsole.errorLines).map(String).join("\n") }
    }).pipe(
      Effect.provideService(Jobs, jobs),
      Effect.provideService(Cli.Stacks, stacks as typeof Cli.Stacks.Service),
      Effect.provide(TestConsole.layer),
      Effect.provide(ConfigProvider.layer(ConfigProvider.fromEnv({ env: { ...ENV, ...env } })))
    )
  }

  const sentTo = Effect.map(Ref.get(store), (all) => all.filter((e) => e.tags.some((t) => t.value === "streak-saver")).map((e) => e.to).sort())

  return { store, stack, cli, sentTo }
}

describe.each(["kaiwa", "simple"] as const)("a job declared in a test file, on the %s shape", (shape) => {
  const { store, stack, cli, sentTo } = suiteOn(shape)
  layer(stack, { excludeTestServices: true })((it) => {
    it.effect("runs through the runner: typed stats, its list's unsubscribe link and headers, escaping, and a re-run sends nothing", () =>
      Effect.gen(function*() {
        yield* learners
        assert.strictEqual(yield* appShape, shape, "the database has the shape this suite is about")
        const sql = yield* SqlClient.SqlClient
        const dry = yield* Job.runJob(streakSaver, { dryRun: true }).pipe(Effect.provide(Mailer.layerConsole), Effect.provide(TestConsole.layer))
        assert.strictEqual(dry.stats?.wouldSend?.["nudged"], 2, "a dry run renders both")
        assert.strictEqual(dry.stats?.nudged, 0, "and sends neither")
        const ledger = yield* sql<{ n: number }>`SELECT count(*)::int AS n FROM kaiwa_jobs.deliveries WHERE job = 'streak-saver'`
        assert.strictEqual(ledger[0]!.n, 0, "a dry run writes nothing")

        const report = yield* Job.runJob(streakSaver)
        // `nudged` is typed from the job's groups: no cast.
        assert.strictEqual(report.stats?.nudged, 2)
        assert.strictEqual(report.exitCode, 0)
        assert.deepStrictEqual(yield* sentTo, ["s1@example.com", "s2@example.com"])
        const emails = (yield* Ref.get(store)).filter((e) => e.to === "s1@example.com")
        const email = emails[0]!
        assert.strictEqual(email.subject, "Keep your streak going", "the job's own setting, defaulted")
        assert.strictEqual(email.from, "Kaiwa <hello@kaiwa.test>")
        assert.deepStrictEqual(email.tags, [{ name: "job", value: "streak-saver" }])
        assert.strictEqual(email.headers["List-Unsubscribe-Post"], "List-Unsubscribe=One-Click")
        const token = new URL(/^<(.*)>$/.exec(email.headers["List-Unsubscribe"]!)![1]!).searchParams.get("token")!
        const claim = verifyToken(Redacted.make(UNSUBSCRIBE_SECRET), token)
        assert.deepStrictEqual(Option.getOrNull(claim), { userId: uid("s1", shape), list: "streak-saver" }, "the token names the app's id")
        assert.include(email.html, "&lt;b&gt;Ana&lt;/b&gt;", "the display name is escaped")
        assert.notInclude(email.html, "<b>Ana")
        assert.include(email.text, "Yesterday you had 1 conversation.")

        const again = yield* Job.runJob(streakSaver)
        assert.strictEqual(again.stats?.nudged, 0)
        assert.strictEqual(again.stats?.due, 0)
        assert.deepStrictEqual(yield* sentTo, ["s1@example.com", "s2@example.com"])
      }))

    it.effect("shares the cross-job cap: a learner reminded an hour ago is skipped with reason cap", () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        yield* insertUsers([
          { id: "c1", createdAt: new Date(AT.getTime() - 30 * DAY), sessions: [{ at: new Date(AT.getTime() - 30 * HOUR), language: "ja" }] }
        ])
        yield* sql`INSERT INTO kaiwa_jobs.deliveries (job, user_id, dedupe_key, email, data, status, planned_at, expires_at, sent_at)
                   VALUES (${practiceReminders.name}, ${uid("c1", shape)}, '2026-03-10', 'c1@example.com', '{}', 'sent',
                           ${new Date(AT.getTime() - HOUR)}, ${AT}, ${new Date(AT.getTime() - HOUR)})`
        const report = yield* Job.runJob(streakSaver)
        assert.strictEqual(report.stats?.skipped["cap"], 1)
        assert.notInclude(yield* sentTo, "c1@example.com")
      }))

    it.effect("runs through the CLI: list --json gives its Fly command, run sends, preview writes its samples, a bad setting exits 2", () =>
      Effect.gen(function*() {
        const listed = yield* cli(["list", "--json"])
        assert.strictEqual(listed.code, 0, listed.err)
        const entry = (JSON.parse(listed.out) as Array<{ name: string; command: Array<string>; machineName: string }>)
          .find((j) => j.name === "streak-saver")
        assert.deepStrictEqual(entry?.command, ["node", "dist/cli.js", "run", "streak-saver"])
        assert.strictEqual(entry?.machineName, "cron-streak-saver")

        yield* insertUsers([
          { id: "k1", createdAt: new Date(AT.getTime() - 30 * DAY), sessions: [{ at: new Date(AT.getTime() - 30 * HOUR), language: "ja" }] }
        ])
        const ran = yield* cli(["run", "streak-saver", "--now", AT.toISOString()])
        assert.strictEqual(ran.code, 0, ran.err)
        assert.include(yield* sentTo, "k1@example.com")

        const out = yield* Effect.promise(() => fs.mkdtemp(path.join(os.tmpdir(), "streak-preview-")))
        const previewed = yield* cli(["preview", "streak-saver", "--out", out])
        assert.strictEqual(previewed.code, 0, previewed.err)
        const html = yield* Effect.promise(() => fs.readFile(path.join(out, "streak-saver-two.html"), "utf8"))
        assert.include(html, "Yesterday you had 2 conversations.")
        assert.include(html, "/unsubscribe?token=")

        const before = (yield* Ref.get(store)).length
        const bad = yield* cli(["run", "streak-saver"], { STREAK_MIN_SESSIONS: "many" })
        assert.strictEqual(bad.code, 2, "a malformed setting of the job's own is a configuration error")
        assert.include(bad.err, "STREAK_MIN_SESSIONS")
        assert.notInclude(bad.err, "many", "the value is never echoed")
        assert.strictEqual((yield* Ref.get(store)).length, before)
        const unknown = yield* cli(["run", "no-such-job"])
        assert.strictEqual(unknown.code, 2)
        assert.include(unknown.err, "streak-saver", "the usage error lists the registered jobs")
      }))

    it.effect("runs through HTTP: /api/cron/streak-saver, /health, and its own unsubscribe page and one-click POST", () =>
      Effect.gen(function*() {
        yield* insertUsers([
          { id: "h1", createdAt: new Date(AT.getTime() - 30 * DAY), sessions: [{ at: new Date(AT.getTime() - 30 * HOUR), language: "ja" }] },
          { id: "h2", createdAt: new Date(AT.getTime() - 30 * DAY), sessions: [{ at: new Date(AT.getTime() - 30 * HOUR), language: "ja" }] }
        ])
        const server = Http.layerApp.pipe(
          Layer.provideMerge(NodeHttpServer.layerTest),
          Layer.provide(Layer.succeed(Jobs, jobs))
        )
        yield* Effect.gen(function*() {
          const { port } = (yield* HttpServer.HttpServer).address as { readonly port: number }
          const call = (p: string, init: RequestInit = {}) =>
            Effect.promise(async () => {
              const r = await fetch(`http://127.0.0.1:${port}${p}`, init)
              return { status: r.status, text: await r.text() }
            })
          // h1 leaves the list first, through the page the link opens and its one-click POST.
          const token = makeToken(Redacted.make(UNSUBSCRIBE_SECRET), { userId: uid("h1", shape), list: "streak-saver" })
          const page = yield* call(`/unsubscribe?token=${token}`)
          assert.strictEqual(page.status, 200)
          assert.include(page.text, "You will no longer get streak saver nudges.")
          const posted = yield* call(`/unsubscribe?token=${token}`, { method: "POST" })
          assert.strictEqual(posted.status, 200)

          const unauthorized = yield* call("/api/cron/streak-saver", { method: "POST" })
          assert.strictEqual(unauthorized.status, 401)
          const ran = yield* call("/api/cron/streak-saver", { method: "POST", headers: { authorization: `Bearer ${CRON_SECRET}` } })
          assert.strictEqual(ran.status, 200, ran.text)
          const body = JSON.parse(ran.text) as { job: string; stats: { nudged: number; skipped: Record<string, number> } }
          assert.strictEqual(body.job, "streak-saver")
          assert.strictEqual(body.stats.nudged, 1)
          assert.strictEqual(body.stats.skipped["suppressed"], 1)
          assert.include(yield* sentTo, "h2@example.com")
          assert.notInclude(yield* sentTo, "h1@example.com")

          const health = JSON.parse((yield* call("/health")).text) as { jobs: Array<{ job: string; lastOutcome: string | null }> }
          assert.deepStrictEqual(health.jobs.map((j) => j.job), jobs.map((j) => j.name))
          assert.strictEqual(health.jobs.find((j) => j.job === "streak-saver")?.lastOutcome, "succeeded")
        }).pipe(Effect.provide(server))
      }))
  })
})
