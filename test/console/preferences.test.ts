/**
 * The learner's preference center (issue 20 item 6) in a real Chromium against the real server (`Http.layerApp`
 * on a loopback port) and a fresh database of Kaiwa's shape, at a phone's 375 px and a laptop's 1024 px: no page
 * scrolls sideways; one list switched off and on again through its own form; everything left and then taken back;
 * after each step the app's own `user_settings` row says so (the preferences' one home), and a bounce suppression
 * stays exactly as it was. A bad token answers 400 and changes nothing. Screenshots go to .screenshots/.
 */
import { NodeHttpServer } from "@effect/platform-node"
import { assert, describe, layer } from "@effect/vitest"
import { ConfigProvider, Effect, Layer, Redacted, References } from "effect"
import { HttpServer } from "effect/http"
import { SqlClient } from "effect/sql"
import type { Page } from "puppeteer-core"
import { JobsConfig } from "../../src/config/Config.ts"
import { Database, pgLayer } from "../../src/database/Database.ts"
import * as Http from "../../src/triggers/Http.ts"
import { Mailer } from "../../src/mail/Mailer.ts"
import { Suppressions } from "../../src/ledger/Suppressions.ts"
import { Telemetry } from "../../src/telemetry/Telemetry.ts"
import { makePreferencesToken } from "../../src/mail/Unsubscribe.ts"
import { screenshot, useBrowser } from "../support/Browser.ts"
import { freshDatabaseUrl, insertUsers, snapshotLibraryTables, uid } from "../support/TestDb.ts"

const UNSUBSCRIBE_SECRET = "unsubscribe-secret-for-preference-tests-01"

const server = Http.layerApp.pipe(
  Layer.provideMerge(NodeHttpServer.layerTest),
  Layer.provideMerge(Layer.unwrap(Effect.map(freshDatabaseUrl, (url) =>
    Layer.mergeAll(
      Database.layerMigrated({ appFixture: "kaiwa" }).pipe(Layer.provideMerge(pgLayer(url))),
      Mailer.layerTest,
      Telemetry.layerTest
    ).pipe(
      Layer.provideMerge(JobsConfig.layer),
      Layer.provide(ConfigProvider.layer(ConfigProvider.fromEnv({ env: { UNSUBSCRIBE_SECRET, APP_URL: "https://kaiwa.example" } })))
    )))),
  Layer.provideMerge(Layer.succeed(References.MinimumLogLevel, "Warn"))
)

const origin = Effect.map(HttpServer.HttpServer, (s) => `http://127.0.0.1:${(s.address as { readonly port: number }).port}`)

const tokenFor = (name: string) => makePreferencesToken(Redacted.make(UNSUBSCRIBE_SECRET), { userId: uid(name) })

/** The learner's user_settings row as the app reads it (null: no row, every list on). */
const settingsOf = (name: string) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const rows = yield* sql`SELECT receive_practice_reminders AS r, receive_founder_emails AS f, receive_progress_reports AS p
      FROM user_settings WHERE user_id = ${uid(name)}::uuid`
    return rows[0] === undefined ? null : { r: rows[0]["r"], f: rows[0]["f"], p: rows[0]["p"] }
  })

const suppressions = Effect.flatMap(SqlClient.SqlClient, (sql) =>
  sql`SELECT user_id, email, list, reason, created_at FROM kaiwa_jobs.suppressions ORDER BY id`)

const noSidewaysScroll = async (page: Page, what: string) => {
  // A string, not a function: tests type-check without the DOM library.
  const m = await page.evaluate("({ scroll: document.documentElement.scrollWidth, inner: window.innerWidth })") as { scroll: number; inner: number }
  assert.isAtMost(m.scroll, m.inner, `${what} scrolls sideways`)
}

const bodyText = (page: Page) => page.evaluate("document.body.innerText") as Promise<string>

/** Clicks the button of the form for `list` (a job's name, or `*` for everything) and waits for the page after it. */
const press = (page: Page, list: string, label: string) =>
  Promise.all([page.waitForNavigation(), page.click(`form:has(input[name=list][value="${list}"]) button`)]).then(async () => {
    const text = await bodyText(page)
    assert.include(text, "Saved.", `after ${label}`)
    return text
  })

describe("the preference center in a browser", () => {
  const browser = useBrowser()

  layer(server, { excludeTestServices: true, timeout: 120_000 })((it) => {
    it.effect("at 375 and 1024 px: switch one list off and on, leave everything, come back; user_settings follows; a bounce is untouched", () =>
      Effect.gen(function*() {
        const now = Date.now()
        yield* insertUsers([
          { id: "pat", email: "pat@example.com", displayName: "Pat", createdAt: new Date(now - 40 * 86_400_000) },
          { id: "bo", email: "bo@example.com", displayName: "Bo", createdAt: new Date(now - 40 * 86_400_000) }
        ])
        yield* Effect.flatMap(Suppressions, (s) => s.suppress({ userId: uid("bo"), email: "bo@example.com", list: "*", reason: "hard_bounce", now: new Date(now) }))
        const bounce = yield* suppressions
        const base = yield* origin
        for (const width of [375, 1024]) {
          const page = yield* Effect.promise(() => browser().newPage())
          yield* Effect.promise(async () => {
            await page.setViewport({ width, height: 900 })
            const response = await page.goto(`${base}/preferences?token=${encodeURIComponent(tokenFor("pat"))}`)
            assert.strictEqual(response?.status(), 200)
            assert.include(response?.headers()["content-security-policy"] ?? "", "default-src 'none'")
            await noSidewaysScroll(page, `preferences at ${width}`)
            await screenshot(page, `preferences-${width}`)
          })
          // No row at first (every list on); the second round starts from the row the first one left, all on.
          const start = yield* settingsOf("pat")
          if (width === 375) assert.isNull(start, "no row yet: every list on")
          else assert.deepStrictEqual(start, { r: true, f: true, p: true })

          yield* Effect.promise(() => press(page, "practice-reminders", "turning reminders off"))
          assert.deepStrictEqual(yield* settingsOf("pat"), { r: false, f: true, p: true })
          yield* Effect.promise(() => noSidewaysScroll(page, `saved at ${width}`))
          yield* Effect.promise(() => press(page, "practice-reminders", "turning reminders on"))
          assert.deepStrictEqual(yield* settingsOf("pat"), { r: true, f: true, p: true })

          const left = yield* Effect.promise(() => press(page, "*", "leaving everything"))
          assert.deepStrictEqual(yield* settingsOf("pat"), { r: false, f: false, p: false })
          assert.notInclude(left, "Turn off all of these emails")
          yield* Effect.promise(() => screenshot(page, `preferences-left-${width}`))
          const back = yield* Effect.promise(() => press(page, "*", "coming back"))
          assert.deepStrictEqual(yield* settingsOf("pat"), { r: true, f: true, p: true })
          assert.notInclude(back, "Turn all of them back on")
          yield* Effect.promise(() => page.close())

          // Preferences live in the app's table: the library kept no row of its own for Pat, and Bo's bounce is as it was.
          assert.deepStrictEqual(yield* suppressions, bounce)
        }

        // Bo's page shows the bounce and offers no switch; a crafted "everything back on" does not lift it.
        const bo = yield* Effect.promise(async () => {
          const r = await fetch(`${base}/preferences?token=${encodeURIComponent(tokenFor("bo"))}`)
          return r.text()
        })
        assert.include(bo, "bounced")
        assert.notInclude(bo, "<button")
        const crafted = yield* Effect.promise(() =>
          fetch(`${base}/preferences?token=${encodeURIComponent(tokenFor("bo"))}`, {
            method: "POST",
            redirect: "manual",
            headers: { "content-type": "application/x-www-form-urlencoded" },
            body: "list=*&subscribed=1"
          }))
        assert.strictEqual(crafted.status, 303)
        assert.deepStrictEqual(yield* suppressions, bounce)
      }), 180_000)

    it.effect("a bad, forged or missing token: 400 on GET and POST, and nothing changes", () =>
      Effect.gen(function*() {
        const base = yield* origin
        const before = yield* snapshotLibraryTables
        const settings = yield* settingsOf("pat")
        const forged = makePreferencesToken(Redacted.make("some-other-secret-0123456789abcdef"), { userId: uid("pat") })
        for (const token of [forged, `${tokenFor("pat")}x`, tokenFor("pat").split(".")[0]!, ""]) {
          const url = `${base}/preferences?token=${encodeURIComponent(token)}`
          const get = yield* Effect.promise(() => fetch(url))
          assert.strictEqual(get.status, 400)
          const post = yield* Effect.promise(() =>
            fetch(url, { method: "POST", redirect: "manual", headers: { "content-type": "application/x-www-form-urlencoded" }, body: "list=*&subscribed=0" }))
          assert.strictEqual(post.status, 400)
        }
        const page = yield* Effect.promise(() => browser().newPage())
        const shown = yield* Effect.promise(async () => {
          await page.setViewport({ width: 375, height: 700 })
          const r = await page.goto(`${base}/preferences?token=${encodeURIComponent(forged)}`)
          await noSidewaysScroll(page, "invalid link page")
          const text = await bodyText(page)
          await page.close()
          return { status: r?.status(), text }
        })
        assert.strictEqual(shown.status, 400)
        assert.include(shown.text, "Nothing was changed")
        assert.deepStrictEqual(yield* snapshotLibraryTables, before)
        assert.deepStrictEqual(yield* settingsOf("pat"), settings)
      }))
  })
})
