import { Effect, Layer } from "effect"
import { EmbeddedPostgres } from "./src/EmbeddedPostgres.ts"
import { Database } from "./src/Database.ts"
const prog = Effect.gen(function*() {
  const db = yield* Database
  const r = yield* db.sql<{ n: Date; x: unknown }>`SELECT ${new Date(0)}::timestamptz AS n, '{"a":1}'::jsonb AS x`
  console.log(r, typeof r[0]!.n, r[0]!.n instanceof Date)
  const t = yield* db.sql`SELECT table_name FROM information_schema.tables WHERE table_schema IN ('kaiwa_jobs','public') ORDER BY 1`
  console.log(t.map((x: any) => x.table_name).join(","))
})
const t0 = Date.now()
await Effect.runPromise(prog.pipe(Effect.provide(Database.layerEmbedded().pipe(Layer.provide(EmbeddedPostgres.layer)))))
console.log("ms", Date.now() - t0)
