import * as fs from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"
import { assert, describe, it, layer } from "@effect/vitest"
import { Effect, Ref } from "effect"
import { SqlClient } from "effect/sql"
import { TestClock } from "effect/testing"
import { demo, demoUsers } from "../../dev/Demo.ts"
import { findProblems } from "../../src/emails/index.ts"
import { type RunReport, runJob } from "../../src/job/Job.ts"
import { practiceReminders, registry } from "../../src/jobs/index.ts"

/** Emails a run sent, over its job's stats groups. */
const sentBy = (report: RunReport): number => {
  const groups = registry.find((j) => j.name === report.job)?.groups ?? []
  const stats = report.stats as Readonly<Record<string, unknown>> | null
  return groups.reduce((n, g) => n + Number(stats?.[g] ?? 0), 0)
}
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
      Effect.gen(function*() {
        yield* TestClock.setTime(AT)
        const firstRuns = yield* demo
        // Every registered job runs, and every one of them has demo learners it emails.
        assert.deepStrictEqual(firstRuns.map((r) => r.job), registry.map((j) => j.name))
        for (const r of firstRuns) assert.isAbove(sentBy(r), 0, `${r.job} sent nothing in the demo`)
        const first = (yield* Ref.get(yield* MailerTestRef)).length
        assert.strictEqual(first, firstRuns.reduce((n, r) => n + sentBy(r), 0))
        const secondRuns = yield* demo
        for (const r of secondRuns) assert.strictEqual(sentBy(r), 0, `${r.job} sent again`)
        assert.strictEqual((yield* Ref.get(yield* MailerTestRef)).length, first)
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
