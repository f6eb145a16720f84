import { Effect, Layer } from "effect"
import { SqlClient } from "effect/sql"
import { pgLayer, describeSqlCause } from "../src/Database.ts"
import { withDatabase } from "../bench/support.ts"
await withDatabase("err", async (url) => {
  const r = await Effect.runPromise(Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    return yield* Effect.flip(sql`SELECT pg_terminate_backend(pg_backend_pid())`)
  }).pipe(Effect.provide(pgLayer(url))) as any)
  const e: any = r
  console.log(e._tag, e.reason?._tag, Object.keys(e.reason ?? {}), e.reason?.cause?.code, e.reason?.cause?.message, describeSqlCause(e))
})
