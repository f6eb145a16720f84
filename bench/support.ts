/** Shared pieces of the benchmarks: an embedded server with a migrated database, timing, result files. */
import * as fs from "node:fs/promises"
import { Effect, Exit, Layer, Redacted, Scope } from "effect"
import { SqlClient } from "effect/sql"
import { Database, pgLayer } from "../src/Database.ts"
import { start } from "../src/EmbeddedPostgres.ts"

/**
 * A running embedded server for one benchmark, with a migrated database (library schema + app fixture);
 * `settings` are extra server parameters.
 */
export const withDatabase = async <A>(
  name: string,
  f: (url: Redacted.Redacted<string>) => Promise<A>,
  settings?: Readonly<Record<string, string>>
): Promise<A> => {
  const scope = Effect.runSync(Scope.make())
  try {
    const server = await Effect.runPromise(Scope.provide(start({ settings }), scope))
    await Effect.runPromise(server.createDatabase(name))
    const url = server.url(name)
    await Effect.runPromise(Effect.void.pipe(Effect.provide(Database.layerMigrated({ appFixture: true }).pipe(Layer.provide(pgLayer(url))))))
    return await f(url)
  } finally {
    await Effect.runPromise(Scope.close(scope, Exit.void))
  }
}

/** Runs SQL against a database. */
export const sqlOn = <A, E>(url: Redacted.Redacted<string>, f: (sql: SqlClient.SqlClient) => Effect.Effect<A, E>) =>
  Effect.runPromise(Effect.flatMap(SqlClient.SqlClient, f).pipe(Effect.provide(pgLayer(url))) as Effect.Effect<A, unknown>)

/** Median of a sample. */
export const median = (xs: ReadonlyArray<number>) => {
  const s = [...xs].sort((a, b) => a - b)
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2
}

/** Writes a result file under bench/results/. */
export const writeResult = async (name: string, result: unknown) => {
  await fs.mkdir("bench/results", { recursive: true })
  await fs.writeFile(`bench/results/${name}.json`, JSON.stringify(result, null, 2) + "\n")
}
