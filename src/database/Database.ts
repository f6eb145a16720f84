/**
 * PostgreSQL for the library: the connection (`pgLayer`), the errors a caller can act on, and the layers that
 * offer every table owner over one connection: `Ledger` (deliveries, batches), `Runs`, `Suppressions`, `Pauses`,
 * `Preferences` (preference changes), the app adapter (`AppTables`) and `Database` itself, which only says
 * which database this is (a dry run names what it read). No module but a table's owner names it, and no raw
 * `SqlClient` is handed to a job: it gets statement fragments.
 */
import { Context, Effect, Layer, Predicate, Redacted, Schema } from "effect"
import type { SqlClient } from "effect/sql"
import { AppTables } from "./App.ts"
import { JobsConfig } from "../config/Config.ts"
import { EmbeddedPostgres } from "../local/EmbeddedPostgres.ts"
import { Ledger } from "../ledger/Ledger.ts"
import { type AppFixture, migrate, migrateAppFixture } from "../migrations/index.ts"
import { Pauses } from "../ledger/Pauses.ts"
import { Preferences } from "../ledger/Preferences.ts"
import { Runs } from "../ledger/Runs.ts"
import { Suppressions } from "../ledger/Suppressions.ts"

export type {
  Candidate,
  ClaimedBatch,
  ClaimedDelivery,
  Decision,
  DeliveryOutcome,
  Learner,
  Rules,
  Selection,
  SelectionArgs,
  TimelineEntry
} from "../ledger/Ledger.ts"
export { BAD_ROW_NOTES, BAD_ROW_REASONS, CONFLICT_REASON, KEY_EXPIRED_REASON, KEY_MAX_AGE_HOURS, REJECTED_PREFIX } from "../ledger/Ledger.ts"

/** The database could not be reached or refused a statement the runner cannot do without. */
/**
 * Why the database failed us, for code to match on (`message` is for people): it could not be reached (refused,
 * reset, shutting down), a statement failed (a constraint, a permission, bad data), it did not answer in time, or
 * there is no database to reach (DATABASE_URL unset).
 */
export const DatabaseFailure = Schema.Literals(["unreachable", "statement", "timeout", "not_configured"])
export type DatabaseFailure = typeof DatabaseFailure.Type

export class DatabaseError extends Schema.TaggedError<DatabaseError>()("DatabaseError", {
  reason: DatabaseFailure,
  message: Schema.String
}) {}

/** Wraps a failed statement as a `DatabaseError` saying what was being done. */
export const toDatabaseError = (what: string) => (cause: unknown) =>
  new DatabaseError({ reason: failureOf(cause), message: `${what}: ${describeSqlCause(cause)}` })

/** Whether a driver or SqlError failure means the database could not be reached, or a statement failed. */
export const failureOf = (cause: unknown): "unreachable" | "statement" => isUnreachable(cause) ? "unreachable" : "statement"

/**
 * A short, secret-free description of why a statement failed. An SqlError's own message is the driver's
 * generic "PgConnection: Query failed" whatever happened; what happened is in its `reason` (ConnectionError,
 * UniqueViolation, ...) and in the driver's error under it, so those are what is read here.
 */
export const describeSqlCause = (cause: unknown): string => {
  if (isUnreachable(cause)) return "the database is unreachable"
  const first = detailOf(cause).split("\n")[0] || messageOf(cause).split("\n")[0] || "unknown error"
  // Connection strings can carry a password; never let one through.
  return first.replace(/postgres(ql)?:\/\/[^\s]+/gi, "<database-url>").slice(0, 300)
}

const messageOf = (e: unknown) => String(propertyOf(e, "message") ?? e ?? "")
const underlyingOf = (cause: unknown) => propertyOf(propertyOf(cause, "reason"), "cause") ?? propertyOf(cause, "cause")
const detailOf = (cause: unknown) => {
  const underlying = underlyingOf(cause)
  return underlying === undefined ? messageOf(cause) : messageOf(underlying)
}

/**
 * SQLSTATE class 57P: the server is shutting down, crashed or not accepting connections yet (a restart in
 * progress): for the operator that is the database being unreachable, like a refused connection a moment later.
 */
const isUnreachable = (cause: unknown): boolean =>
  propertyOf(propertyOf(cause, "reason"), "_tag") === "ConnectionError" ||
  String(propertyOf(underlyingOf(cause), "code") ?? "").startsWith("57P") || UNREACHABLE.test(detailOf(cause))

const UNREACHABLE =
  /ECONNREFUSED|ECONNRESET|EPIPE|ETIMEDOUT|ENOTFOUND|terminating connection|connection (?:refused|reset|closed|ended|terminated)|socket|closed/i

/** A property of an error of unknown shape (a driver's, an SqlError's reason), or undefined: read, never cast. */
export const propertyOf = (u: unknown, key: string): unknown => Predicate.hasProperty(u, key) ? u[key] : undefined

/** Which database the services read: the host and database name, or what the embedded one is. */
export class Database extends Context.Service<Database, {
  /** For people: `db.example.internal:5432/kaiwa`, "local demo database", "empty embedded database". */
  readonly label: string
}>()("kaiwa-jobs/Database") {
  /** Every table owner over whatever SqlClient is provided, labelled. */
  static readonly layerFromSql = (label: string) =>
    Layer.mergeAll(Layer.succeed(Database, Database.of({ label })), owners())

  /** Production: `DATABASE_URL`, migrations applied by `kaiwa-jobs migrate` (release_command), not here. */
  static readonly layer = Layer.unwrap(
    Effect.gen(function*() {
      const config = yield* JobsConfig
      const url = config.databaseUrl
      if (url._tag === "None") return yield* new DatabaseError({ reason: "not_configured", message: "DATABASE_URL is not set" })
      return Database.layerFromSql(labelOf(url.value)).pipe(Layer.provideMerge(pgLayer(url.value)))
    })
  )

  /** An embedded server (from `EmbeddedPostgres`), migrated, with an app fixture; `database` defaults to postgres. */
  static readonly layerEmbedded = (database = "postgres", fixture: AppFixture = "kaiwa", label = "embedded database") =>
    Layer.unwrap(
      Effect.gen(function*() {
        const server = yield* EmbeddedPostgres
        return Database.layerMigrated({ appFixture: fixture, label }).pipe(Layer.provideMerge(pgLayer(server.url(database))))
      })
    )

  /**
   * Applies the library's migrations (and an app fixture when asked: `true` is Kaiwa's real shape) before
   * offering the services; the app adapter reads the shape after them.
   */
  static readonly layerMigrated = (options: { readonly appFixture: boolean | AppFixture; readonly label?: string | undefined }) =>
    Database.layerFromSql(options.label ?? "test database").pipe(
      Layer.provideMerge(Layer.effectDiscard(
        Effect.gen(function*() {
          yield* migrate
          if (options.appFixture !== false) yield* migrateAppFixture(options.appFixture === true ? "kaiwa" : options.appFixture)
        }).pipe(Effect.mapError(toDatabaseError("migrations failed")))
      ))
    )
}

/** Host, port and database name of a connection string, never its credentials. */
export const labelOf = (url: Redacted.Redacted<string>): string => {
  try {
    const u = new URL(Redacted.value(url))
    return `${u.hostname}${u.port ? `:${u.port}` : ""}${u.pathname}`
  } catch {
    return "the database at DATABASE_URL"
  }
}

/** Every table owner a mode stack offers. */
export type Owners = Ledger | Runs | Suppressions | AppTables | Pauses | Preferences

// Built on first use, not when this module loads: the owners import this module for its errors (an import cycle
// that is harmless as long as neither reads the other while loading).
let ownersLayer: Layer.Layer<Owners, DatabaseError, SqlClient.SqlClient> | undefined
const owners = () =>
  (ownersLayer ??= Layer.mergeAll(Ledger.layer, Preferences.layer).pipe(
    Layer.provideMerge(Layer.mergeAll(Runs.layer, Suppressions.layer, AppTables.layer, Pauses.layer))
  ))

/**
 * A pooled client; connection failures surface within seconds instead of hanging a run. The driver
 * (`@effect/sql-pg`) is imported when the layer is built, not when this module is: commands that never
 * touch the database (`list`, `--help`, `preview`) do not pay for loading it.
 */
export const pgLayer = (url: Redacted.Redacted<string>) =>
  Layer.unwrap(Effect.map(Effect.promise(() => import("@effect/sql-pg/PgClient")), (PgClient) =>
    PgClient.layerFrom(
      PgClient.make({ url, maxConnections: 10, connectTimeout: "5 seconds", applicationName: "kaiwa-jobs" }).pipe(
        Effect.mapError(toDatabaseError("cannot connect to the database"))
      )
    )))
