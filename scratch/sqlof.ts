// Prints the compiled selection SQL of a job (params inlined) for the tree this file is run from.
import { Effect, Layer, Redacted } from "effect"
import { SqlClient } from "effect/sql"
import { JobsConfig } from "../src/Config.ts"
import { pgLayer } from "../src/Database.ts"
const which = process.argv[2] ?? "reminders"
const at = new Date(process.argv[3] ?? "2026-03-10T12:00:00Z")
const mod = which === "reminders" ? await import("../src/jobs/PracticeReminders.ts") : await import("../src/jobs/WeeklyProgress.ts")
const config = await Effect.runPromise(Effect.provide(Effect.map(JobsConfig, (c) => c), JobsConfig.layer))
const program = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const [text, params] = (mod as any).selection(sql, at, config).compile()
  const lit = (p: unknown): string => p instanceof Date ? `'${p.toISOString()}'::timestamptz` : typeof p === "number" ? String(p) : typeof p === "boolean" ? String(p) : `'${String(p).replace(/'/g, "''")}'`
  console.log(text.replace(/\$(\d+)/g, (_: string, n: string) => lit(params[Number(n) - 1])))
})
// compile() needs a client but never connects
await Effect.runPromise(program.pipe(Effect.provide(pgLayer(Redacted.make("postgres://x:y@127.0.0.1:1/none"))) as any)).catch((e) => { console.error(e); process.exit(1) })
