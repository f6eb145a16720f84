/** Shared pieces of the benchmarks: an embedded server with a migrated database, timing, result files. */
import { execFileSync } from "node:child_process"
import * as fsSync from "node:fs"
import * as fs from "node:fs/promises"
import * as path from "node:path"
import { Effect, Exit, Layer, Redacted, Scope } from "effect"
import { SqlClient } from "effect/sql"
import { Database, pgLayer } from "../src/database/Database.ts"
import { start } from "../src/local/EmbeddedPostgres.ts"
import type { AppFixture } from "../src/migrations/index.ts"

/**
 * A running embedded server for one benchmark, with a migrated database (library schema + app fixture);
 * `settings` are extra server parameters. The fixture defaults to CONTRACT 3's simple shape (text ids, a
 * `users.timezone` column): the benchmarks that seed their own users write that shape.
 */
export const withDatabase = <A>(
  name: string,
  f: (url: Redacted.Redacted<string>) => Promise<A>,
  settings?: Readonly<Record<string, string>>,
  appFixture: AppFixture = "simple"
): Promise<A> => withDatabases({ [name]: appFixture }, (urls) => f(urls[name]!), settings)

/**
 * One embedded server with several migrated databases, each with its own app fixture (`name -> fixture`), so a
 * benchmark can compare shapes side by side in one run on one server.
 */
export const withDatabases = async <A>(
  databases: Readonly<Record<string, AppFixture>>,
  f: (urls: Readonly<Record<string, Redacted.Redacted<string>>>) => Promise<A>,
  settings?: Readonly<Record<string, string>>
): Promise<A> => {
  const scope = Effect.runSync(Scope.make())
  try {
    const server = await Effect.runPromise(Scope.provide(start({ settings }), scope))
    const urls: Record<string, Redacted.Redacted<string>> = {}
    for (const [name, appFixture] of Object.entries(databases)) {
      await Effect.runPromise(server.createDatabase(name))
      urls[name] = server.url(name)
      await Effect.runPromise(Effect.void.pipe(Effect.provide(Database.layerMigrated({ appFixture }).pipe(Layer.provide(pgLayer(urls[name]))))))
    }
    return await f(urls)
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

/**
 * A commit's tree in `tmp/baseline`, built with its own build.mjs against our node_modules: the baseline a
 * benchmark runs beside the current build (bench/startup.ts, bench/cpu-per-email.ts).
 */
export const buildBaseline = (tmp: string, commit: string): string => {
  const dir = path.join(tmp, "baseline")
  fsSync.mkdirSync(dir)
  const tar = execFileSync("git", ["archive", "--format=tar", commit], { maxBuffer: 256 * 1024 * 1024 })
  execFileSync("tar", ["-x", "-C", dir], { input: tar })
  fsSync.symlinkSync(path.resolve("node_modules"), path.join(dir, "node_modules"), "dir")
  execFileSync(process.execPath, ["build.mjs"], { cwd: dir, stdio: ["ignore", "ignore", "inherit"] })
  return dir
}
