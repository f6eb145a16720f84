// Runs SQL from a file (or -e "SQL") on the kept database, fresh connection; prints rows and the time.
import * as fs from "node:fs"
import { Effect, Redacted } from "effect"
import { SqlClient } from "effect/sql"
import { pgLayer } from "../src/Database.ts"
const url = fs.readFileSync(process.env.KEEP ?? "/tmp/selkeep/url", "utf8")
const arg = process.argv[2]!
const text = arg === "-e" ? process.argv[3]! : fs.readFileSync(arg, "utf8")
const prefix = process.env.PRE ?? ""
const program = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  if (process.env.SETUP) yield* sql.unsafe(process.env.SETUP)
  const t = performance.now()
  const rows = yield* sql.unsafe<Record<string, unknown>>(prefix + text)
  const ms = performance.now() - t
  if (prefix.startsWith("EXPLAIN")) console.log(rows.map((r) => r["QUERY PLAN"]).join("\n"))
  else if (rows.length <= 5) console.log(JSON.stringify(rows))
  console.log(`${rows.length} rows in ${ms.toFixed(0)} ms`)
})
await Effect.runPromise(program.pipe(Effect.provide(pgLayer(Redacted.make(url)))) as any)
