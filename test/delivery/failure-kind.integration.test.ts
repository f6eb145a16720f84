/**
 * Migration 0012 gives every failed ledger row a typed kind (`deliveries.failure`): rows failed before it are
 * classified by the prefixes their reasons were written with, so the suppression rule and the history read them
 * as before.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { SqlClient } from "effect/sql"
import * as Migrator from "effect/sql/Migrator"
import { pgLayer } from "../../src/database/Database.ts"
import { kaiwaJobs, migrate } from "../../src/migrations/index.ts"
import { freshDatabaseUrl } from "../support/TestDb.ts"

describe("migration 0012: a failed row's kind", () => {
  it.live("rows failed before it are classified by their reasons; other rows get no kind", () =>
    Effect.gen(function*() {
      const url = yield* freshDatabaseUrl
      yield* Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        yield* sql`CREATE SCHEMA kaiwa_jobs`
        const before = Effect.map(kaiwaJobs, (all) => all.filter(([id]) => id < 12))
        yield* Migrator.make({})({ loader: before, table: "kaiwa_jobs.migrations" })
        const rows: ReadonlyArray<readonly [string, string | null]> = [
          ["failed", "rejected: invalid `to` field"],
          ["failed", "render_error: displayName is not a string"],
          ["failed", "outcome_unknown: the batch's idempotency key expired before it was confirmed"],
          ["failed", "something no prefix names"],
          ["skipped", "suppressed"],
          ["sent", null]
        ]
        for (const [i, [status, reason]] of rows.entries()) {
          yield* sql`
            INSERT INTO kaiwa_jobs.deliveries (job, user_id, dedupe_key, email, data, planned_at, expires_at, status, reason)
            VALUES ('practice-reminders', ${`u${i}`}, '2026-03-10', ${`u${i}@example.com`}, '{}'::jsonb,
              '2026-03-10T09:00:00Z', '2026-03-10T21:00:00Z', ${status}, ${reason})`
        }
        const ran = yield* migrate
        // 0012 runs first; any later migration runs after it.
        const ids = ran.map(([id]) => id)
        assert.strictEqual(ids[0], 12)
        assert.isTrue(ids.every((id) => id >= 12), ids.join(", "))
        const kinds = yield* sql<{ user_id: string; failure: string | null }>`
          SELECT user_id, failure FROM kaiwa_jobs.deliveries ORDER BY user_id`
        assert.deepStrictEqual(kinds.map((r) => r.failure), ["rejected", "render_error", "outcome_unknown", null, null, null])
        const bad = yield* Effect.result(sql`UPDATE kaiwa_jobs.deliveries SET failure = 'typo' WHERE user_id = 'u0'`)
        assert.strictEqual(bad._tag, "Failure", "the CHECK refuses a kind nobody reads")
      }).pipe(Effect.provide(pgLayer(url)))
    }))
})
