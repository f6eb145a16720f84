/**
 * A worker process for the shared rate limit's tests: it takes turns from the limiter in PostgreSQL and sends
 * one-email batches to the fake Resend as fast as the limiter lets it, honouring a 429 the way the mailer does
 * (a pause written into the shared row, and what the answer says about the pace: `limiter.answered`), until
 * `SECONDS` have passed. `QUIET_MS` (optional) sets the limiter's `quiet`. Unlike a compiled main it keeps going
 * while the database is away, so a test can restart PostgreSQL under it.
 * Run: `node --import tsx test/support/limiterWorker.ts` with DATABASE_URL, FAKE_URL, FAKE_KEY, RPS, SECONDS, NAME.
 * Prints one line per request: `sent <epoch ms> <status>`. Its database sessions are named `limiter-<NAME>`
 * (`application_name`), so a test's trigger on the shared row can tell whose departure the database fixed.
 */
import { Duration, Effect, Redacted } from "effect"
import { SqlClient } from "effect/sql"
import * as PgClient from "@effect/sql-pg/PgClient"
import * as SharedRateLimiter from "../../src/mail/SharedRateLimiter.ts"

const env = (name: string) => {
  const value = process.env[name]
  if (value === undefined) throw new Error(`${name} is not set`)
  return value
}
const fakeUrl = env("FAKE_URL")
const apiKey = env("FAKE_KEY")
const rps = Number(env("RPS"))
const seconds = Number(env("SECONDS"))
const name = env("NAME")

const program = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const quiet = process.env["QUIET_MS"]
  const limiter = SharedRateLimiter.make(sql, { rps, quiet: quiet === undefined ? undefined : Duration.millis(Number(quiet)) })
  // Node's fetch opens its first connection lazily, tens of milliseconds slower than the next requests on a busy
  // machine: a departure that goes on time would arrive late and the next worker's would catch up with it.
  // One HEAD request (which the fake answers and does not record), as the mailer does, warms the client up first.
  yield* Effect.promise(() => fetch(fakeUrl, { method: "HEAD" }).then((r) => r.text()))
  const until = Date.now() + seconds * 1000
  let n = 0
  while (Date.now() < until) {
    yield* limiter.take
    const response = yield* Effect.promise(() =>
      fetch(`${fakeUrl}/emails/batch`, {
        method: "POST",
        headers: { authorization: `Bearer ${apiKey}`, "content-type": "application/json", "x-batch-validation": "permissive" },
        body: JSON.stringify([{ from: "Kaiwa <hello@example.com>", to: `${name}-${n++}@example.com`, subject: "Hi", text: "Hi" }])
      }).then(async (r) => ({ status: r.status, headers: Object.fromEntries(r.headers), body: await r.text() }))
    )
    console.log(`sent ${Date.now()} ${response.status}`)
    // As the mailer does: what the answer says about the pace first, then a 429's pause.
    yield* limiter.answered({ refused: response.status === 429, headers: response.headers })
    const retryAfter = response.headers["retry-after"]
    if (response.status === 429 && retryAfter !== undefined) {
      yield* limiter.pauseFor(Duration.seconds(Number(retryAfter)))
    }
  }
})

// The library's pool settings (src/database/Database.ts pgLayer), under this worker's own application_name.
const database = PgClient.layer({
  url: Redacted.make(env("DATABASE_URL")),
  maxConnections: 10,
  connectTimeout: "5 seconds",
  applicationName: `limiter-${name}`
})

await Effect.runPromise(program.pipe(Effect.provide(database)))
