import * as fs from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"
import { assert, describe, it, layer } from "@effect/vitest"
import { Effect, Ref } from "effect"
import { SqlClient } from "effect/sql"
import { TestClock } from "effect/testing"
import { demo, demoUsers, seededFor } from "../../dev/Demo.ts"
import { findProblems } from "../../src/emails/index.ts"
import { type RunReport, runJob } from "../../src/job/Job.ts"
import { Jobs, practiceReminders, type Registry, registry } from "../../src/jobs/index.ts"
import { winBack } from "../../src/jobs/WinBack.example.ts"

/** Emails a run sent, over its job's stats groups. */
const sentBy = (jobs: Registry) => (report: RunReport): number => {
  const groups = jobs.find((j) => j.name === report.job)?.groups ?? []
  const stats = report.stats as Readonly<Record<string, unknown>> | null
  return groups.reduce((n, g) => n + Number(stats?.[g] ?? 0), 0)
}

/**
 * The demo at AT, twice, with `jobs` registered: every job runs, each job the demo learners are made for emails
 * some of them, any other job (one just added, as the README's "Adding a job" does) may find nobody due, and the
 * second run sends nothing.
 */
const demoTwice = (jobs: Registry) =>
  Effect.gen(function*() {
    const sent = sentBy(jobs)
    yield* TestClock.setTime(AT)
    const firstRuns = yield* demo
    assert.deepStrictEqual(firstRuns.map((r) => r.job), jobs.map((j) => j.name))
    for (const r of firstRuns) assert.strictEqual(r.exitCode, 0, `${r.job}: ${r.error ?? r.outcome}`)
    for (const name of seededFor) {
      const r = firstRuns.find((r) => r.job === name)
      assert.isDefined(r, `${name}, which the demo learners are made for, is not registered`)
      assert.isAbove(sent(r!), 0, `${name} sent nothing in the demo`)
    }
    for (const r of firstRuns.filter((r) => !seededFor.includes(r.job) && sent(r) === 0)) {
      yield* Effect.logWarning(`${r.job} has no demo learners due at ${new Date(AT).toISOString()} (fine: the demo seeds learners for ${seededFor.join(", ")})`)
    }
    const first = (yield* Ref.get(yield* MailerTestRef)).length
    assert.strictEqual(first, firstRuns.reduce((n, r) => n + sent(r), 0))
    const secondRuns = yield* demo
    for (const r of secondRuns) assert.strictEqual(sent(r), 0, `${r.job} sent again`)
    assert.strictEqual((yield* Ref.get(yield* MailerTestRef)).length, first)
    return firstRuns
  })
import { MailerTestRef } from "../../src/mail/Mailer.ts"
import { run } from "../support/spawn.ts"
import { insertUsers, snapshotLibraryTables, testLayer } from "../support/TestDb.ts"

const DAY = 86_400_000
// Sunday 05:00 UTC: Sunday 14:00 in Tokyo, 10:30 in Kolkata, so every job, the weekly report included, has
// demo learners due.
const AT = Date.parse("2026-03-15T05:00:00Z")

describe("demo", () => {
  it("seeds about 30 learners across at least 5 time zones, verified and not, opted in and out, every practice history", () => {
    const users = demoUsers(AT)
    assert.isAtLeast(users.length, 25)
    assert.isAtLeast(new Set(users.map((u) => u.timezone)).size, 5)
    assert.isTrue(users.some((u) => u.email_verified === null) && users.some((u) => u.email_verified !== null))
    assert.isTrue(users.some((u) => !u.reminders) && users.some((u) => !u.founder))
    assert.isTrue(users.some((u) => u.lastSession === null))
    assert.isTrue(users.some((u) => u.lastSession !== null && AT - u.lastSession.getTime() < DAY))
    assert.isTrue(users.some((u) => u.lastSession !== null && AT - u.lastSession.getTime() > 30 * DAY))
  })

  layer(testLayer, { excludeTestServices: true })((it) => {
    it.effect("run twice at the same instant, the second run sends nothing", () =>
      // Every registered job runs, and every job the demo learners are made for emails some of them.
      demoTwice(registry).pipe(Effect.provide(TestClock.layer())))
  })

  layer(testLayer, { excludeTestServices: true })((it) => {
    it.effect("a job added to the registry needs no demo learners: the demo still runs green", () =>
      Effect.gen(function*() {
        const jobs = [...registry, winBack]
        const firstRuns = yield* demoTwice(jobs).pipe(Effect.provideService(Jobs, jobs))
        // The README's example finds nobody due at AT (no demo learner lapsed exactly two weeks before), and passes.
        const added = firstRuns.find((r) => r.job === "win-back")
        assert.strictEqual(added?.exitCode, 0)
        assert.strictEqual(sentBy(jobs)(added!), 0)
      }).pipe(Effect.provide(TestClock.layer())))
  })
})

describe("dry run", () => {
  layer(testLayer, { excludeTestServices: true })((it) => {
    it.effect("renders every due email but leaves every kaiwa_jobs table exactly as it was", () =>
      Effect.gen(function*() {
        const at = Date.parse("2026-03-10T10:00:00Z")
        yield* insertUsers(Array.from({ length: 12 }, (_, i) => ({ id: `d${i}`, createdAt: new Date(at - 30 * DAY) })))
        yield* TestClock.setTime(at)
        const before = yield* snapshotLibraryTables
        const report = yield* runJob(practiceReminders, { dryRun: true })
        const after = yield* snapshotLibraryTables
        assert.deepStrictEqual(after, before)
        assert.strictEqual(report.stats?.due, 12)
        assert.strictEqual(report.exitCode, 0)
        const rendered = yield* Ref.get(yield* MailerTestRef)
        assert.strictEqual(rendered.length, 12)
        for (const e of rendered) assert.deepStrictEqual(findProblems(e), [])
        // And a live run afterwards still finds all twelve due: the dry run reserved nothing.
        const live = yield* runJob(practiceReminders)
        assert.strictEqual(live.stats?.sent, 12)
        const sql = yield* SqlClient.SqlClient
        const runs = yield* sql<{ n: number }>`SELECT count(*)::int AS n FROM kaiwa_jobs.runs`
        assert.strictEqual(runs[0]!.n, 1)
      }).pipe(Effect.provide(TestClock.layer())))
  })
})

describe("preview", () => {
  it("writes one HTML file per template variant of the job", async () => {
    const out = await fs.mkdtemp(path.join(os.tmpdir(), "kaiwa-preview-"))
    const reminders = await run("dist/cli.js", ["preview", "practice-reminders", "--out", out])
    assert.strictEqual(reminders.code, 0, reminders.stderr)
    const founder = await run("dist/cli.js", ["preview", "founder-emails", "--out", out])
    assert.strictEqual(founder.code, 0, founder.stderr)
    const weekly = await run("dist/cli.js", ["preview", "weekly-progress", "--out", out])
    assert.strictEqual(weekly.code, 0, weekly.stderr)
    const html = (await fs.readdir(out)).filter((f) => f.endsWith(".html")).sort()
    assert.strictEqual(html.filter((f) => f.startsWith("reminder-")).length, 10)
    assert.deepStrictEqual(html.filter((f) => f.startsWith("founder-")), ["founder-day1.html", "founder-day2.html", "founder-day3.html"])
    // Every weekly variant, with the figure tiles, and the per-day chart where the sample has the minutes per day.
    assert.strictEqual(html.filter((f) => f.startsWith("weekly-progress-")).length, 8)
    const up = await fs.readFile(path.join(out, "weekly-progress-up.html"), "utf8")
    assert.strictEqual(up.match(/class="k-tile"/g)?.length, 3)
    assert.strictEqual(up.match(/class="k-track"/g)?.length, 7)
    assert.notInclude(await fs.readFile(path.join(out, "weekly-progress-no-chart.html"), "utf8"), "class=\"k-track\"")
    for (const f of html) {
      const body = await fs.readFile(path.join(out, f), "utf8")
      assert.include(body, "/unsubscribe?token=")
      assert.include(body, "/preferences?token=")
      assert.notInclude(body, "{{")
    }
    await fs.rm(out, { recursive: true, force: true })
  })
})
