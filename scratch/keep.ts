// Keeps an embedded PostgreSQL with the selection bench's population running: npx tsx scratch/keep.ts DIR [load]
import { randomUUID } from "node:crypto"
import { Effect, Layer, Redacted, Scope } from "effect"
import { SqlClient } from "effect/sql"
import { JobsConfig } from "../src/Config.ts"
import { Database, pgLayer } from "../src/Database.ts"
import { start } from "../src/EmbeddedPostgres.ts"
import * as WeeklyProgress from "../src/jobs/WeeklyProgress.ts"
import { selectionLoad } from "../bench/selection-load.ts"
import * as fs from "node:fs"

const dir = process.argv[2]!
const load = process.argv[3] === "load"
if (load) { fs.rmSync(dir, { recursive: true, force: true }); fs.mkdirSync(dir, { mode: 0o777 }); fs.chmodSync(dir, 0o777) }
const scope = Effect.runSync(Scope.make())
const server = await Effect.runPromise(Scope.provide(start({ dataDir: dir + "/data", settings: { shared_buffers: process.env.SB ?? "128MB" } }), scope))
if (load) await Effect.runPromise(server.createDatabase("sel"))
const url = server.url("sel")
const run = <A, E>(f: (sql: SqlClient.SqlClient) => Effect.Effect<A, E, any>) =>
  Effect.runPromise(Effect.flatMap(SqlClient.SqlClient, f).pipe(Effect.provide(Database.layerMigrated({ appFixture: true }).pipe(Layer.provideMerge(pgLayer(url))))) as any)
if (load) {
  await run((sql) => selectionLoad(sql, new Date("2026-03-10T12:00:00Z"), 1_000_000))
  const config: any = await Effect.runPromise(Effect.provide(Effect.map(JobsConfig, (c) => c), JobsConfig.layer))
  const prev = new Date("2026-03-22T06:30:00Z")
  await run((sql) => Effect.gen(function*() {
    const db = yield* Database
    yield* db.enqueue({ job: WeeklyProgress.NAME, runId: randomUUID(), asOf: prev, selection: WeeklyProgress.selection(sql, prev, config) })
    yield* sql`UPDATE kaiwa_jobs.deliveries SET status = 'sent', sent_at = planned_at WHERE job = ${WeeklyProgress.NAME}`
    yield* sql`VACUUM ANALYZE`
  }))
}
fs.writeFileSync(dir + "/url", Redacted.value(url))
console.log("ready", Redacted.value(url))
setInterval(() => {}, 1 << 30)
