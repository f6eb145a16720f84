/**
 * Selection at scale: planning each job's tick over the same 1,000,000 users on Kaiwa's production
 * shape (uuid ids, `timestamp` columns holding UTC, zones in `kaiwa_jobs.user_timezones`) against the
 * simple shape (text ids, `timestamptz`, `users.timezone`), side by side in one run: two databases on one
 * embedded server, loaded with the same population (bench/selection-load.ts). Target: on Kaiwa's shape each job
 * plans in at most 1.25x the time it takes on the simple shape.
 *
 * Planning is what production does at each tick: the job's whole statement (`job.statement(asOf)`, the job's rule
 * inside the library's ledger check, shared rules and cap) inserted into the ledger by `Ledger.enqueue`, on a
 * fresh connection (as a scheduled Machine has), rolled back after each run so every run plans the same tick
 * from scratch; the rolled-back rows are vacuumed away before the next run, as autovacuum would, outside the
 * timing. Each job is planned once per shape untimed (warm-up), then BENCH_SHAPE_RUNS times per shape (default 7),
 * the shapes alternating (simple then kaiwa, kaiwa then simple, ...), so the load of a shared machine falls on
 * both; the ratio is kaiwa's median over simple's, and, since the load of a shared machine drifts during a run,
 * also the median of the ratios of the pairs run back to back. Met when both are at most 1.25.
 *
 * The ticks:
 * - practice-reminders at AT (12:00 UTC): ~half of the users are inside their 09:00-21:00 window; of those, 60%
 *   already got today's reminder (ledger rows), 38% practised in the last 24 hours, 2% are due (13,868: 13,334
 *   plus 534 of the founder cohort who practised on 8 March);
 * - founder-emails at AT: the founder cohort (signed up 24 to 96 h ago) who never practised, in the zones whose
 *   14:00-18:00 window is open (Asia/Kolkata and Asia/Kathmandu);
 * - weekly-progress on Sunday 22 March 2026 07:30 UTC, with the tick of 06:30 planned and sent (see WEEKLY_AT);
 * - and, timed as the statement alone, a weekly tick with no window open (Wednesday 12:00 UTC), which reads nothing.
 *
 * BENCH_EXPLAIN=1 writes each job's plan on each shape (EXPLAIN ANALYZE of the planning's CREATE TABLE AS, with
 * its buffers) to bench/results/selection-plans/. BENCH_SELECTION_EXTRA=1 also runs the older measurements on the
 * simple database, after the comparison: the reminder and founder statements alone with the plan's index use,
 * the ledger reads a worker repeats beside the planned rows, a lighter weekly tick (one zone opening), the floor
 * of any plan of the weekly tick (`weeklyFloor`), the seed's per-user queries, and the reminder statement
 * without the recommended indexes (the baseline; it drops them, so it runs last).
 */
import { randomUUID } from "node:crypto"
import * as fs from "node:fs/promises"
import * as os from "node:os"
import { Effect, Layer, type Redacted } from "effect"
import { SqlClient } from "effect/sql"
import { JobsConfig, WEEKDAYS } from "../src/config/Config.ts"
import * as Setting from "../src/config/Setting.ts"
import { type Candidate, Database, type Owners, pgLayer } from "../src/database/Database.ts"
import { type EnqueueResult, Ledger } from "../src/ledger/Ledger.ts"
import type * as Job from "../src/job/Job.ts"
import { founderEmails, practiceReminders, weeklyProgress } from "../src/jobs/index.ts"
import * as WeeklyProgress from "../src/jobs/WeeklyProgress.ts"
import type { AppFixture } from "../src/migrations/index.ts"
import { recommendedIndexNames, SIMPLE_IDS, selectionLoad } from "./selection-load.ts"
import { median, sqlOn, withDatabases, writeResult } from "./support.ts"

const USERS = Number(process.env["BENCH_USERS"] ?? 1_000_000)
const AT = new Date("2026-03-10T12:00:00Z")
const RUNS = Number(process.env["BENCH_SHAPE_RUNS"] ?? 7)
const EXTRA_PLAN_RUNS = 5
const TARGET_RATIO = 1.25
// PostgreSQL's default shared_buffers (128 MB), smaller than the working set (users, sessions and ledger are
// ~330 MB per database here), so every tick re-reads its blocks from the OS cache. A server for 1,000,000
// learners would be sized to hold it (PostgreSQL's docs suggest 25% of RAM for a dedicated server);
// BENCH_SHARED_BUFFERS=1GB measures that.
const SHARED_BUFFERS = process.env["BENCH_SHARED_BUFFERS"] ?? "128MB"

// Sunday 08:30 in UTC+1. Of the 12 zones of the population, the report's 08:00-18:00 window is open in six:
// Europe/Berlin and Africa/Lagos (08:30, opened since the last hourly tick), Asia/Kolkata, Asia/Kathmandu,
// Asia/Shanghai and Asia/Tokyo (opened on earlier ticks, which planned their reports). 20% of the users practised
// in the report's week (bench/selection-load.ts), so about 33,000 reports are due at this tick.
const WEEKLY_AT = new Date("2026-03-22T07:30:00Z")
const WEEKLY_PREVIOUS_TICK = new Date("2026-03-22T06:30:00Z")
// 08:30 UTC: Europe/London opened since the last tick (about 16,700 due); the five zones opened before are planned.
const WEEKLY_ONE_ZONE_AT = new Date("2026-03-22T08:30:00Z")
const WEEKLY_CLOSED_AT = new Date("2026-03-18T12:00:00Z")
// What weeklyProgress declares as `finalSkips` (a report the cap blocks is settled for the week);
// a Job does not expose it, and Ledger.enqueue needs it.
const WEEKLY_FINAL_SKIPS = ["cap"]

const SHAPES: ReadonlyArray<AppFixture> = ["simple", "kaiwa"]
type Urls = Readonly<Record<AppFixture, Redacted.Redacted<string>>>
type Services = Database | Owners | JobsConfig | SqlClient.SqlClient

/** Runs an effect with the library's services over a fresh pool to `url` (the app's shape read from the catalog). */
const withServices = <A, E>(url: Redacted.Redacted<string>, effect: Effect.Effect<A, E, Services>): Promise<A> =>
  Effect.runPromise(effect.pipe(
    Effect.provide(Layer.mergeAll(Database.layerFromSql("bench").pipe(Layer.provideMerge(pgLayer(url))), JobsConfig.layer))
  ) as Effect.Effect<A, unknown>)

/** Thrown out of a transaction to roll it back, carrying what happened inside. */
class Rollback<A> {
  constructor(readonly value: A) {}
}

/** Plans one tick of `job` as production does (Ledger.enqueue), rolled back; the time of the planning alone. */
const planOnce = (url: Redacted.Redacted<string>, job: Job.Any, asOf: Date, finalSkips: ReadonlyArray<string>) =>
  withServices(url, Effect.gen(function*() {
    const db = yield* Ledger
    const sql = yield* SqlClient.SqlClient
    const statement = yield* job.statement(asOf)
    // The pool's connection is open already (the adapter read the catalog through it); the planning is timed alone.
    const t = performance.now()
    const outcome = yield* Effect.flip(sql.withTransaction(Effect.gen(function*() {
      const result = yield* db.enqueue({ job: job.name, runId: randomUUID(), asOf, selection: statement, finalSkips })
      return yield* Effect.fail(new Rollback({ ms: performance.now() - t, result }))
    })))
    if (!(outcome instanceof Rollback)) return yield* Effect.die(outcome)
    return outcome.value as { readonly ms: number; readonly result: EnqueueResult }
  }))

/** Plans and commits a tick, marking its rows sent (the steady state a later tick of the same day finds). */
const planAndSend = (url: Redacted.Redacted<string>, job: Job.Any, asOf: Date, finalSkips: ReadonlyArray<string>) =>
  withServices(url, Effect.gen(function*() {
    const db = yield* Ledger
    const sql = yield* SqlClient.SqlClient
    const r = yield* db.enqueue({ job: job.name, runId: randomUUID(), asOf, selection: yield* job.statement(asOf), finalSkips })
    yield* sql`UPDATE kaiwa_jobs.deliveries SET status = 'sent', sent_at = planned_at WHERE job = ${job.name} AND status = 'pending'`
    yield* sql`VACUUM ANALYZE kaiwa_jobs.deliveries`
    return r.enqueued
  }))

/** EXPLAIN (ANALYZE, BUFFERS) of the planning's CREATE TABLE AS, as Ledger.enqueue runs it, rolled back. */
const explainPlanning = (url: Redacted.Redacted<string>, job: Job.Any, asOf: Date) =>
  withServices(url, Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const [compiled, params] = (yield* job.statement(asOf)).compile()
    const outcome = yield* Effect.flip(sql.withTransaction(Effect.gen(function*() {
      yield* sql`SET LOCAL hash_mem_multiplier = 4`
      const rows = yield* sql.unsafe<{ "QUERY PLAN": string }>(
        `EXPLAIN (ANALYZE, BUFFERS) CREATE TEMP TABLE bench_explain ON COMMIT DROP AS ${compiled}`,
        params
      )
      return yield* Effect.fail(new Rollback(rows.map((r) => r["QUERY PLAN"]).join("\n")))
    })))
    if (!(outcome instanceof Rollback)) return yield* Effect.die(outcome)
    return outcome.value as string
  }))

interface ShapeFigures {
  readonly medianMs: number
  readonly runs: ReadonlyArray<number>
  readonly enqueued: number
  readonly skipped: Readonly<Record<string, number>>
}

/** One job's tick on both shapes, alternating: the medians and their ratio. */
const compareShapes = async (urls: Urls, spec: {
  readonly job: Job.Any
  readonly at: Date
  readonly finalSkips: ReadonlyArray<string>
}) => {
  const runs: Record<AppFixture, Array<number>> = { simple: [], kaiwa: [] }
  const last: Partial<Record<AppFixture, EnqueueResult>> = {}
  const vacuum = (shape: AppFixture) => sqlOn(urls[shape], (sql) => sql`VACUUM kaiwa_jobs.deliveries`)
  for (const shape of SHAPES) {
    await vacuum(shape)
    await planOnce(urls[shape], spec.job, spec.at, spec.finalSkips)
  }
  for (let i = 0; i < RUNS; i++) {
    for (const shape of i % 2 === 0 ? SHAPES : [...SHAPES].reverse()) {
      await vacuum(shape)
      const r = await planOnce(urls[shape], spec.job, spec.at, spec.finalSkips)
      runs[shape].push(Math.round(r.ms))
      last[shape] = r.result
    }
  }
  const figures = (shape: AppFixture): ShapeFigures => ({
    medianMs: Math.round(median(runs[shape])),
    runs: runs[shape],
    enqueued: last[shape]!.enqueued,
    skipped: last[shape]!.skipped
  })
  const simple = figures("simple")
  const kaiwa = figures("kaiwa")
  const ratio = Math.round((kaiwa.medianMs / simple.medianMs) * 100) / 100
  // Each run's pair ran back to back, so its ratio sees the same load; their median resists the load drifting
  // during the run, which the ratio of the two medians does not.
  const pairedRatio = Math.round(median(runs.kaiwa.map((k, i) => k / runs.simple[i]!)) * 100) / 100
  // Same population, same rule: both shapes must plan the same tick (the same rows, the same skips).
  const samePlan = simple.enqueued === kaiwa.enqueued && JSON.stringify(simple.skipped) === JSON.stringify(kaiwa.skipped)
  const row = {
    job: spec.job.name,
    at: spec.at.toISOString(),
    simple,
    kaiwa,
    ratio,
    pairedRatio,
    samePlan,
    met: ratio <= TARGET_RATIO && pairedRatio <= TARGET_RATIO
  }
  console.log(`  ${row.job} at ${row.at}: simple ${simple.medianMs} ms (${simple.runs.join(", ")}), kaiwa ${kaiwa.medianMs} ms ` +
    `(${kaiwa.runs.join(", ")}); ratio ${ratio} (median of paired runs ${pairedRatio}); ${simple.enqueued} / ${kaiwa.enqueued} enqueued, skipped ` +
    `${JSON.stringify(simple.skipped)} / ${JSON.stringify(kaiwa.skipped)}${samePlan ? "" : " (THE SHAPES PLANNED DIFFERENT ROWS)"}`)
  if (process.env["BENCH_EXPLAIN"] === "1") {
    await fs.mkdir("bench/results/selection-plans", { recursive: true })
    for (const shape of SHAPES) {
      await fs.writeFile(`bench/results/selection-plans/${spec.job.name}-${shape}.txt`, await explainPlanning(urls[shape], spec.job, spec.at) + "\n")
    }
  }
  return row
}

/** The statement alone at `at`, run three times on a fresh pool: median ms and the number of candidates. */
const statementAlone = (url: Redacted.Redacted<string>, job: Job.Any, at: Date) =>
  withServices(url, Effect.gen(function*() {
    const statement = yield* job.statement(at)
    const times: Array<number> = []
    let rows: ReadonlyArray<Candidate> = []
    for (let i = 0; i < 3; i++) {
      const t = performance.now()
      rows = yield* statement
      times.push(performance.now() - t)
    }
    const [compiled, params] = statement.compile()
    const sql = yield* SqlClient.SqlClient
    const plan = yield* sql.unsafe<{ "QUERY PLAN": string }>(`EXPLAIN ${compiled}`, params)
    const planText = plan.map((r) => r["QUERY PLAN"]).join("\n")
    return {
      ms: Math.round(median(times) * 10) / 10,
      candidates: rows.length,
      due: rows.filter((r) => r.skip_reason === null).length,
      indexes: [...new Set([...planText.matchAll(/(?:Index (?:Only )?Scan(?: Backward)? using|Bitmap Index Scan on) (\S+)/g)].map((m) => m[1]!))]
    }
  }))

const loadAverage = () => os.loadavg().map((x) => Math.round(x * 100) / 100)

export const selection = () =>
  withDatabases({ selection_simple: "simple", selection_kaiwa: "kaiwa" }, async (byName) => {
    const urls: Urls = { simple: byName["selection_simple"]!, kaiwa: byName["selection_kaiwa"]! }
    const loadSeconds: Record<string, number> = {}
    for (const shape of SHAPES) loadSeconds[shape] = await sqlOn(urls[shape], (sql) => selectionLoad(sql, AT, USERS, shape))
    const loadAverageBefore = loadAverage()
    const startedAt = new Date().toISOString()

    const reminders = await compareShapes(urls, { job: practiceReminders, at: AT, finalSkips: [] })
    const founder = await compareShapes(urls, { job: founderEmails, at: AT, finalSkips: [] })
    // The weekly tick's steady state on both shapes: the previous hourly tick planned and sent.
    const previousTickPlanned: Record<string, number> = {}
    for (const shape of SHAPES) {
      previousTickPlanned[shape] = await planAndSend(urls[shape], weeklyProgress, WEEKLY_PREVIOUS_TICK, WEEKLY_FINAL_SKIPS)
    }
    const weekly = await compareShapes(urls, { job: weeklyProgress, at: WEEKLY_AT, finalSkips: WEEKLY_FINAL_SKIPS })
    // Most of the week's hourly ticks: no zone's report window is open; the library answers without reading.
    const weeklyClosed = Object.fromEntries(await Promise.all(SHAPES.map(async (shape) =>
      [shape, await statementAlone(urls[shape], weeklyProgress, WEEKLY_CLOSED_AT)] as const
    )))
    console.log(`  weekly-progress at ${WEEKLY_CLOSED_AT.toISOString()} (no window open), statement alone: ` +
      SHAPES.map((s) => `${s} ${weeklyClosed[s]!.ms} ms (${weeklyClosed[s]!.candidates} candidates)`).join(", "))
    const loadAverageAfter = loadAverage()
    const shapes = [reminders, founder, weekly]

    const extra = process.env["BENCH_SELECTION_EXTRA"] === "1" ? await olderMeasures(urls.simple) : undefined
    const result = {
      users: USERS,
      startedAt,
      sharedBuffers: SHARED_BUFFERS,
      simpleIds: SIMPLE_IDS,
      runsPerShape: RUNS,
      loadSeconds,
      loadAverage: { before: loadAverageBefore, after: loadAverageAfter },
      weeklyPreviousTick: { at: WEEKLY_PREVIOUS_TICK.toISOString(), planned: previousTickPlanned },
      shapes,
      weeklyClosed,
      targetRatio: TARGET_RATIO,
      met: shapes.every((s) => s.met && s.samePlan),
      ...(extra === undefined ? {} : { extra })
    }
    await writeResult("selection", result)
    await writeReadmeTable(result)
    return result
  }, { shared_buffers: SHARED_BUFFERS })

/** The table of the shape comparison, between the markers of bench/README.md (created if missing). */
const writeReadmeTable = async (r: {
  readonly users: number
  readonly startedAt: string
  readonly runsPerShape: number
  readonly simpleIds: "same" | "short"
  readonly loadAverage: { readonly before: ReadonlyArray<number>; readonly after: ReadonlyArray<number> }
  readonly shapes: ReadonlyArray<Awaited<ReturnType<typeof compareShapes>>>
}) => {
  const start = "<!-- selection-shapes:start -->"
  const end = "<!-- selection-shapes:end -->"
  const table = [
    start,
    `Run of ${r.startedAt.slice(0, 16).replace("T", " ")} UTC, ${r.users.toLocaleString("en-US")} users, median of ${r.runsPerShape} ` +
    `planning runs per shape, shapes alternating, on 2 cores (the machine's load is in bench/results/selection.json); ` +
    (r.simpleIds === "same" ? "the simple shape holds the same ids as Kaiwa's, as text:" : "the simple shape's ids are short (`'u' || g`):"),
    "",
    "| job (tick) | due | simple shape | Kaiwa's shape | ratio kaiwa / simple (medians) | median of paired ratios | target <= 1.25 |",
    "| --- | --- | --- | --- | --- | --- | --- |",
    ...r.shapes.map((s) =>
      `| ${s.job} (${s.at.slice(0, 16).replace("T", " ")} UTC) | ${s.simple.enqueued.toLocaleString("en-US")}` +
      `${s.samePlan ? "" : ` (kaiwa: ${s.kaiwa.enqueued.toLocaleString("en-US")})`} | ${s.simple.medianMs.toLocaleString("en-US")} ms ` +
      `(${s.simple.runs.join(", ")}) | ${s.kaiwa.medianMs.toLocaleString("en-US")} ms (${s.kaiwa.runs.join(", ")}) | ` +
      `**${s.ratio.toFixed(2)}** | **${s.pairedRatio.toFixed(2)}** | ${s.met ? "met" : "MISSED"} |`
    ),
    end
  ].join("\n")
  const path = "bench/README.md"
  const current = await fs.readFile(path, "utf8").catch(() => "")
  const i = current.indexOf(start)
  const j = current.indexOf(end)
  await fs.writeFile(path, i >= 0 && j > i ? current.slice(0, i) + table + current.slice(j + end.length) : `${current}\n${table}\n`)
}

/**
 * The measurements this benchmark made before the shape comparison (BENCH_SELECTION_EXTRA=1), on the simple
 * database: see the module comment.
 */
const olderMeasures = async (url: Redacted.Redacted<string>) => {
  const remindersAlone = await statementAlone(url, practiceReminders, AT)
  const founderAlone = await statementAlone(url, founderEmails, AT)
  console.log(`  [extra] statements alone: reminders ${remindersAlone.ms} ms (${remindersAlone.due} due of ${remindersAlone.candidates}; indexes: ${remindersAlone.indexes.join(", ")}), founder ${founderAlone.ms} ms (${founderAlone.due} due)`)
  // Inside a planning transaction, with the new rows pending beside the sent ones, the two ledger reads a worker
  // repeats while it delivers: "anything left?" (`outstanding`) and the claim of a batch of 100. Both read the
  // partial index of pending rows, so neither grows with the ledger.
  const ledgerReads = await withServices(url, Effect.gen(function*() {
    const db = yield* Ledger
    const sql = yield* SqlClient.SqlClient
    const statement = yield* practiceReminders.statement(AT)
    const outcome = yield* Effect.flip(sql.withTransaction(Effect.gen(function*() {
      yield* db.enqueue({ job: practiceReminders.name, runId: randomUUID(), asOf: AT, selection: statement })
      const o = performance.now()
      const outstanding = yield* db.outstanding(practiceReminders.name)
      const c = performance.now()
      const batch = yield* db.claimBatch({ job: practiceReminders.name, owner: randomUUID(), now: AT, leaseSeconds: 30, size: 100, newKey: randomUUID() })
      return yield* Effect.fail(new Rollback({
        outstandingMs: Math.round((c - o) * 10) / 10,
        claimMs: Math.round((performance.now() - c) * 10) / 10,
        pending: outstanding.pending,
        claimed: batch?.deliveries.length ?? 0
      }))
    })))
    if (!(outcome instanceof Rollback)) return yield* Effect.die(outcome)
    return outcome.value as { outstandingMs: number; claimMs: number; pending: number; claimed: number }
  }))
  console.log(`  [extra] over the ledger's ${ledgerReads.pending} pending rows: outstanding ${ledgerReads.outstandingMs} ms, claiming a batch ${ledgerReads.claimMs} ms (${ledgerReads.claimed} rows)`)
  // A lighter tick of the same Sunday, an hour later: only Europe/London's window opened since the last tick.
  await planAndSend(url, weeklyProgress, WEEKLY_AT, WEEKLY_FINAL_SKIPS)
  const oneZoneRuns: Array<number> = []
  let oneZoneEnqueued = 0
  for (let i = 0; i < EXTRA_PLAN_RUNS; i++) {
    await sqlOn(url, (sql) => sql`VACUUM kaiwa_jobs.deliveries`)
    const r = await planOnce(url, weeklyProgress, WEEKLY_ONE_ZONE_AT, WEEKLY_FINAL_SKIPS)
    oneZoneRuns.push(Math.round(r.ms))
    oneZoneEnqueued = r.result.enqueued
  }
  const weeklyOneZone = { at: WEEKLY_ONE_ZONE_AT.toISOString(), planMs: Math.round(median(oneZoneRuns)), runs: oneZoneRuns, enqueued: oneZoneEnqueued }
  console.log(`  [extra] weekly-progress at ${weeklyOneZone.at} (one zone opening): ${weeklyOneZone.planMs} ms (${oneZoneRuns.join(", ")}), ${oneZoneEnqueued} due`)
  // Back to the steady state of WEEKLY_AT for the floor: only the tick of 06:30 planned.
  await sqlOn(url, (sql) => Effect.gen(function*() {
    yield* sql`DELETE FROM kaiwa_jobs.deliveries WHERE job = ${weeklyProgress.name} AND planned_at > ${WEEKLY_PREVIOUS_TICK}`
    yield* sql`VACUUM ANALYZE kaiwa_jobs.deliveries`
  }))
  const config = await Effect.runPromise(Setting.read(WeeklyProgress.settings))
  const floor = await weeklyFloor(url, config, WEEKLY_AT)
  console.log(`  [extra] floor of any plan of the weekly tick: candidates ${floor.candidatesMs} ms (${floor.candidates}) + insert ${floor.insertMs} ms (${floor.inserted}) = ${floor.candidatesMs + floor.insertMs} ms`)
  await sqlOn(url, (sql) => Effect.gen(function*() {
    yield* sql`DELETE FROM kaiwa_jobs.deliveries WHERE job = ${weeklyProgress.name}`
    yield* sql`VACUUM ANALYZE kaiwa_jobs.deliveries`
  }))
  // The seed's design: one query for the users, then queries per user (its N+1), timed on a sample and scaled to
  // the whole population.
  const seedSample = Math.min(2000, USERS)
  const seedDesign = await sqlOn(url, (sql) => Effect.gen(function*() {
    const t = performance.now()
    const users = yield* sql<{ id: string }>`SELECT id FROM users WHERE email_verified IS NOT NULL ORDER BY id LIMIT ${seedSample}`
    for (const u of users) {
      yield* sql`SELECT start_time, language FROM conversation_sessions WHERE user_id = ${u.id} ORDER BY start_time DESC LIMIT 1`
      yield* sql`SELECT 1 FROM kaiwa_jobs.deliveries WHERE job = 'practice-reminders' AND user_id = ${u.id} LIMIT 1`
    }
    const ms = performance.now() - t
    return { sampleUsers: seedSample, sampleMs: Math.round(ms), projectedMs: Math.round((ms / seedSample) * USERS) }
  }))
  console.log(`  [extra] the seed's per-user queries: ${seedDesign.sampleMs} ms for ${seedDesign.sampleUsers} users, about ${Math.round(seedDesign.projectedMs / 1000)} s for all ${USERS}`)
  // Without the recommended indexes (the baseline; quadratic, so capped at 20 s).
  await sqlOn(url, (sql) => Effect.gen(function*() {
    for (const name of recommendedIndexNames) yield* sql`DROP INDEX IF EXISTS ${sql(name)}`
    yield* sql`ANALYZE`
  }))
  const baseline = await withServices(url, Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    yield* sql`SET statement_timeout = '20s'`
    const statement = yield* practiceReminders.statement(AT)
    const t = performance.now()
    const r = yield* Effect.result(statement)
    return r._tag === "Failure" ? { timedOut: true, ms: null } : { timedOut: false, ms: Math.round(performance.now() - t) }
  }))
  console.log(`  [extra] reminder statement without the recommended indexes: ${baseline.timedOut ? "over 20 s (cut off)" : `${baseline.ms} ms`}`)
  return { remindersAlone, founderAlone, ledgerReads, weeklyOneZone, floor, seedDesign, baseline }
}

/**
 * The floor of planning a weekly tick, whatever the statement's shape (issue 11, item 5): the two things every
 * plan has to do, each timed alone on a fresh connection (median of 3), with none of the rest (no time zone
 * rules, no figures, no cap, no rows sent back):
 * - finding the candidates: the bare count of the users in the open zones (their names passed in as values) who
 *   had a session inside the bounds that hold for every zone (wider than each zone's own week, so this is less
 *   work than the real rule) and have no report for the week yet;
 * - inserting the tick's due rows into the ledger (the columns `Ledger.enqueue` writes, none of its sorting or
 *   counting), from rows already selected into a temporary table (not timed), rolled back.
 * If their sum is over 1 s, no reshaping of the selection plans the tick in 1 s on this machine. Written against
 * the simple shape's tables (`users.timezone`).
 */
const weeklyFloor = async (url: Redacted.Redacted<string>, config: WeeklyProgress.ProgressSettings, at: Date) => {
  const open = WeeklyProgress.openReportDays(at, config)
  const { weekFrom, weekTo } = WeeklyProgress.sessionBounds(open[0]!.day)
  const isoDay = WEEKDAYS.indexOf(config.progressDay) + 1
  // The zones whose window is open at `at` (the selection's own rule for its zones), looked up untimed.
  const [{ names }] = await sqlOn(url, (sql) => sql<{ names: string }>`
    SELECT string_agg(name, ',') AS names FROM pg_timezone_names z,
      LATERAL (SELECT (${at}::timestamptz AT TIME ZONE z.name) - make_interval(mins => ${config.progressLocalTime}) AS shifted) s
    WHERE s.shifted::time < make_time(${WeeklyProgress.WINDOW_MINUTES / 60}, 0, 0) AND extract(isodow FROM s.shifted) = ${isoDay}`)
  const candidatesRuns: Array<number> = []
  let candidates = 0
  for (let i = 0; i < 3; i++) {
    const r = await sqlOn(url, (sql) => Effect.gen(function*() {
      yield* sql`SELECT 1`
      const t = performance.now()
      const [{ n }] = yield* sql<{ n: number }>`
        SELECT count(*)::int AS n FROM users u
        JOIN unnest(string_to_array(${names}, ',')) z(name) ON z.name = u.timezone
        WHERE EXISTS (SELECT 1 FROM conversation_sessions s
            WHERE s.user_id = u.id AND s.start_time >= ${weekFrom} AND s.start_time < ${weekTo})
          AND NOT EXISTS (SELECT 1 FROM kaiwa_jobs.deliveries d
            WHERE d.job = ${WeeklyProgress.NAME} AND d.dedupe_key IN ${sql.in(open.map((o) => o.week))} AND d.user_id = u.id)`
      return { ms: performance.now() - t, n }
    }))
    candidatesRuns.push(Math.round(r.ms))
    candidates = r.n
  }
  const insertRuns: Array<number> = []
  let inserted = 0
  for (let i = 0; i < 3; i++) {
    await sqlOn(url, (sql) => sql`VACUUM kaiwa_jobs.deliveries`)
    const r = await withServices(url, Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const statement = yield* weeklyProgress.statement(at)
      const outcome = yield* Effect.flip(sql.withTransaction(Effect.gen(function*() {
        yield* sql`CREATE TEMP TABLE floor_selection ON COMMIT DROP AS ${statement}`
        const t = performance.now()
        // Cheaper than the real one: neither sorted by user nor counted back (~50 to 100 ms less at 33,332 rows).
        yield* sql`
          INSERT INTO kaiwa_jobs.deliveries (job, user_id, dedupe_key, email, data, planned_at, expires_at, run_id)
          SELECT ${WeeklyProgress.NAME}, user_id, dedupe_key, email, data, ${at}, expires_at, ${randomUUID()}::uuid
          FROM floor_selection WHERE skip_reason IS NULL`
        const ms = performance.now() - t
        const [{ n }] = yield* sql<{ n: number }>`SELECT count(*)::int AS n FROM floor_selection WHERE skip_reason IS NULL`
        return yield* Effect.fail(new Rollback({ ms, n }))
      })))
      if (!(outcome instanceof Rollback)) return yield* Effect.die(outcome)
      return outcome.value as { ms: number; n: number }
    }))
    insertRuns.push(Math.round(r.ms))
    inserted = r.n
  }
  return {
    candidatesMs: Math.round(median(candidatesRuns)),
    candidatesRuns,
    candidates,
    insertMs: Math.round(median(insertRuns)),
    insertRuns,
    inserted
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  console.log(`selection: ${USERS} users, each shape (load average ${loadAverage().join(", ")})`)
  await selection()
}
