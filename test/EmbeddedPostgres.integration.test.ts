/**
 * The embedded PostgreSQL keeps other users of the machine out (issue 19, item 6): loopback only, a random
 * password per data folder (the old fixed `kaiwa-embedded` is refused, also by a folder made before the change),
 * and a folder that nobody else can read or write. The suite runs as root here, as on this project's machines, so
 * the server runs as the `postgres` user and "another user" is `nobody`; as any other user the folder is this
 * process's own and the other-user probe runs only where a process may switch users.
 */
import { spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as net from "node:net"
import * as os from "node:os"
import * as path from "node:path"
import { afterAll, assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Redacted, Scope } from "effect"
import { SqlClient } from "effect/sql"
import { describeSqlCause, pgLayer } from "../src/database/Database.ts"
import { LEGACY_PASSWORD, PASSWORD_FILE, start } from "../src/local/EmbeddedPostgres.ts"

const dirs: Array<string> = []
const scopes: Array<Scope.Closeable> = []
afterAll(async () => {
  for (const scope of scopes) await Effect.runPromise(Scope.close(scope, Exit.void))
  for (const dir of dirs) fs.rmSync(dir, { recursive: true, force: true })
})

const tempDir = () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "kaiwa-embedded-test-"))
  dirs.push(dir)
  return dir
}

/** Starts the server (persistent in `dataDir` when given); `stop` shuts it down. */
const serverOn = async (dataDir?: string) => {
  const scope = Effect.runSync(Scope.make())
  scopes.push(scope)
  const server = await Effect.runPromise(Scope.provide(start({ dataDir }), scope))
  return {
    server,
    stop: async () => {
      scopes.splice(scopes.indexOf(scope), 1)
      await Effect.runPromise(Scope.close(scope, Exit.void))
    }
  }
}

/** Runs `statement` over a fresh connection to `url`: its rows, or the failure's description. */
const tryQuery = (url: Redacted.Redacted<string>, statement: string) =>
  Effect.runPromise(
    Effect.flatMap(SqlClient.SqlClient, (sql) => sql.unsafe<Record<string, unknown>>(statement)).pipe(
      Effect.provide(pgLayer(url)),
      Effect.match({ onFailure: (e) => ({ error: describeSqlCause(e) }), onSuccess: (rows) => ({ rows }) })
    )
  )

/** The server's URL with the password replaced. */
const withPassword = (url: Redacted.Redacted<string>, password: string) => {
  const u = new URL(Redacted.value(url))
  u.password = password
  return Redacted.make(u.toString())
}

const root = process.getuid?.() === 0
const idOf = (flag: "-u" | "-g", user: string) => Number(spawnSync("id", [flag, user], { encoding: "utf8" }).stdout.trim())

/** What the user `nobody` can do to `dir`: list it, create a file in it. */
const asNobody = (dir: string) => {
  const nobody = { uid: idOf("-u", "nobody"), gid: idOf("-g", "nobody") }
  const list = spawnSync("ls", [dir], { ...nobody, encoding: "utf8" })
  const write = spawnSync("touch", [path.join(dir, "planted")], { ...nobody, encoding: "utf8" })
  return { list: list.status, write: write.status }
}

describe("the embedded PostgreSQL", () => {
  it("refuses the old fixed password, listens on loopback only, and its pg_hba names loopback addresses only", async () => {
    const { server } = await serverOn()
    const ok = await tryQuery(server.url("postgres"), "SELECT current_setting('listen_addresses') AS listen")
    assert.deepStrictEqual(ok, { rows: [{ listen: "127.0.0.1" }] })
    const refused = await tryQuery(withPassword(server.url("postgres"), LEGACY_PASSWORD), "SELECT 1")
    assert.property(refused, "error")
    assert.match((refused as { error: string }).error, /password authentication failed/i)
    const rules = await tryQuery(server.url("postgres"), "SELECT type, address, auth_method FROM pg_hba_file_rules")
    assert.property(rules, "rows")
    const rows = (rules as { rows: ReadonlyArray<{ type: string; address: string | null; auth_method: string }> }).rows
    assert.isAbove(rows.length, 0)
    for (const rule of rows) {
      if (rule.type !== "local") assert.include(["127.0.0.1", "::1"], rule.address, JSON.stringify(rule))
      assert.strictEqual(rule.auth_method, "scram-sha-256", JSON.stringify(rule))
    }
  })

  it("a port taken before the server binds it: the server starts on another one", async () => {
    const taken = net.createServer()
    await new Promise<void>((resolve) => taken.listen(0, "127.0.0.1", resolve))
    const port = (taken.address() as net.AddressInfo).port
    try {
      const scope = Effect.runSync(Scope.make())
      scopes.push(scope)
      const server = await Effect.runPromise(Scope.provide(start({ firstPort: port }), scope))
      assert.notStrictEqual(server.port, port)
      assert.deepStrictEqual(await tryQuery(server.url("postgres"), "SELECT 1 AS one"), { rows: [{ one: 1 }] })
    } finally {
      taken.close()
    }
  })

  it("a server that exits before it is ready: the error says why, from PostgreSQL's own output", async () => {
    const scope = Effect.runSync(Scope.make())
    scopes.push(scope)
    const exit = await Effect.runPromiseExit(Scope.provide(start({ settings: { max_connections: "many" } }), scope))
    assert.isTrue(Exit.isFailure(exit))
    const text = String(Exit.isFailure(exit) ? exit.cause : "")
    assert.include(text, "could not start the embedded PostgreSQL: the server exited before it was ready, 3 times:")
    assert.include(text, "max_connections")
    assert.notInclude(text, "ready: undefined")
  })

  it("a persistent folder: its own random password in a 0600 file, kept across restarts; the folder is its owner's only", async () => {
    const dir = tempDir()
    const first = await serverOn(dir)
    const password = new URL(Redacted.value(first.server.url("postgres"))).password
    assert.match(password, /^[0-9a-f]{48}$/)
    assert.strictEqual(fs.readFileSync(path.join(dir, PASSWORD_FILE), "utf8"), password)
    assert.strictEqual(fs.statSync(path.join(dir, PASSWORD_FILE)).mode & 0o777, 0o600)
    const folder = fs.statSync(dir)
    assert.strictEqual(folder.mode & 0o777, 0o700)
    assert.strictEqual(folder.uid, root ? idOf("-u", "postgres") : process.getuid?.())
    if (root) assert.deepStrictEqual(asNobody(dir), { list: 2, write: 1 })
    await first.stop()

    // The next start reads the same password; another folder has another one.
    const again = await serverOn(dir)
    assert.strictEqual(new URL(Redacted.value(again.server.url("postgres"))).password, password)
    assert.deepStrictEqual(await tryQuery(again.server.url("postgres"), "SELECT 1 AS one"), { rows: [{ one: 1 }] })
    const other = await serverOn()
    assert.notStrictEqual(new URL(Redacted.value(other.server.url("postgres"))).password, password)
  })

  it("a folder made before (fixed password, world-writable) gets a random password and a private mode at its next start", async () => {
    const dir = tempDir()
    // The folder as the old code left it: the superuser's password `kaiwa-embedded`, mode 0777, no password file.
    const made = await serverOn(dir)
    const set = await tryQuery(made.server.url("postgres"), `ALTER ROLE postgres PASSWORD '${LEGACY_PASSWORD}'`)
    assert.deepStrictEqual(set, { rows: [] })
    await made.stop()
    fs.rmSync(path.join(dir, PASSWORD_FILE))
    fs.chmodSync(dir, 0o777)
    assert.isFalse(fs.existsSync(path.join(dir, PASSWORD_FILE)))

    const { server } = await serverOn(dir)
    const password = fs.readFileSync(path.join(dir, PASSWORD_FILE), "utf8")
    assert.notStrictEqual(password, LEGACY_PASSWORD)
    assert.deepStrictEqual(await tryQuery(server.url("postgres"), "SELECT 1 AS one"), { rows: [{ one: 1 }] })
    const refused = await tryQuery(withPassword(server.url("postgres"), LEGACY_PASSWORD), "SELECT 1")
    assert.match((refused as { error?: string }).error ?? "", /password authentication failed/i)
    assert.strictEqual(fs.statSync(dir).mode & 0o777, 0o700)
    if (root) assert.deepStrictEqual(asNobody(dir), { list: 2, write: 1 })
  })
})
