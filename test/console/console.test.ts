/**
 * The operator console (issue 21 items 4 and 7) on the real server (`Http.layerApp` on a loopback port) over a
 * fresh embedded database, driven in a real Chromium at 1280 px and 375 px: sign in through the link the compiled
 * `kaiwa-jobs console-link` prints, pause a job with its button and see a run skip (outcome `paused`, nothing
 * sent), look a learner up and read the reason the rules give (`why`), resume, see a run's recipients and every
 * email sample, with no page scrolling sideways and every page under the strict Content-Security-Policy. Then the
 * refusals: no session (401, nothing personal), an expired, forged or replayed link, a form without its CSRF token
 * (403, nothing changed), and `/console` off (404) while CONSOLE_SECRET is unset. Screenshots go to .screenshots/.
 */
import { NodeHttpServer } from "@effect/platform-node"
import { assert, describe, layer } from "@effect/vitest"
import { ConfigProvider, Effect, Layer, Redacted, Ref, References, Tracer } from "effect"
import { HttpServer } from "effect/http"
import type { Page } from "puppeteer-core"
import { JobsConfig } from "../../src/config/Config.ts"
import * as Auth from "../../src/pages/ConsoleAuth.ts"
import { Database, pgLayer } from "../../src/database/Database.ts"
import * as Http from "../../src/triggers/Http.ts"
import { runJob } from "../../src/job/Job.ts"
import { practiceReminders, registry } from "../../src/jobs/index.ts"
import { Mailer, MailerTestRef } from "../../src/mail/Mailer.ts"
import { Pauses } from "../../src/ledger/Pauses.ts"
import { Telemetry } from "../../src/telemetry/Telemetry.ts"
import { screenshot, useBrowser } from "../support/Browser.ts"
import { noonZone } from "../support/NoonZone.ts"
import { run } from "../support/spawn.ts"
import { freshDatabaseUrl, insertUsers } from "../support/TestDb.ts"

const CONSOLE_SECRET = "console-secret-for-tests-0123456789abcdefgh"
const UNSUBSCRIBE_SECRET = "unsubscribe-secret-for-console-tests-0123"
const DAY = 86_400_000

// Every span the server made, to check what reaches trace attributes.
const spans: Array<Tracer.NativeSpan> = []
const recordSpans = Layer.succeed(
  Tracer.Tracer,
  Tracer.make({ span: (options) => {
    const span = new Tracer.NativeSpan(options)
    spans.push(span)
    return span
  } })
)

/** The server over a fresh database, configured with `env`. */
const serverWith = (env: Record<string, string>) =>
  Http.layerApp.pipe(
    Layer.provideMerge(NodeHttpServer.layerTest),
    Layer.provideMerge(Layer.unwrap(Effect.map(freshDatabaseUrl, (url) =>
      Layer.mergeAll(
        Database.layerMigrated({ appFixture: true }).pipe(Layer.provideMerge(pgLayer(url))),
        Mailer.layerTest,
        Telemetry.layerTest,
        recordSpans
      ).pipe(
        Layer.provideMerge(JobsConfig.layer),
        Layer.provide(ConfigProvider.layer(ConfigProvider.fromEnv({ env: { UNSUBSCRIBE_SECRET, ...env } })))
      )))),
    Layer.provideMerge(Layer.succeed(References.MinimumLogLevel, "Warn"))
  )

const origin = Effect.map(HttpServer.HttpServer, (server) => `http://127.0.0.1:${(server.address as { readonly port: number }).port}`)

/** What `kaiwa-jobs console-link` prints for this server (the compiled CLI, as an operator runs it). */
const printedLink = Effect.gen(function*() {
  const base = yield* origin
  const r = yield* Effect.promise(() => run("dist/cli.js", ["console-link"], { CONSOLE_SECRET, APP_URL: base }))
  assert.strictEqual(r.code, 0, r.stderr)
  const link = r.stdout.trim()
  assert.match(link, new RegExp(`^${base.replace(/[.]/g, "\\.")}/console/login\\?token=[\\w.%-]+$`))
  assert.notInclude(r.stdout + r.stderr, CONSOLE_SECRET)
  return link
})

interface Reply {
  readonly status: number
  readonly headers: Headers
  readonly text: string
}

const fetchFrom = (path: string, init: RequestInit = {}) =>
  Effect.flatMap(origin, (base) =>
    Effect.promise(async (): Promise<Reply> => {
      const response = await fetch(path.startsWith("http") ? path : `${base}${path}`, { redirect: "manual", ...init })
      return { status: response.status, headers: response.headers, text: await response.text() }
    }))

const form = (fields: Record<string, string>, cookie?: string): RequestInit => ({
  method: "POST",
  headers: { "content-type": "application/x-www-form-urlencoded", ...(cookie === undefined ? {} : { cookie }) },
  body: new URLSearchParams(fields).toString()
})

/** The POST of a sign-in link's button (what uses the link up). */
const useLink = (link: string) => fetchFrom("/console/login", form({ token: new URL(link).searchParams.get("token") ?? "" }))

/** Signs in with a fresh printed link by fetch; the session cookie as a Cookie header. */
const signIn = Effect.gen(function*() {
  const r = yield* useLink(yield* printedLink)
  assert.strictEqual(r.status, 303)
  const cookie = /^(kaiwa_console=[^;]+);/.exec(r.headers.get("set-cookie") ?? "")?.[1]
  assert.isDefined(cookie)
  return cookie!
})

const assertStrictPolicy = (csp: string | null, what: string) => {
  assert.include(csp ?? "", "default-src 'none'", what)
  assert.notInclude(csp ?? "", "script-src", what)
  assert.include(csp ?? "", "frame-ancestors 'none'", what)
}

const noSidewaysScroll = async (page: Page, what: string) => {
  // A string, not a function: tests type-check without the DOM library.
  const m = await page.evaluate("({ scroll: document.documentElement.scrollWidth, inner: window.innerWidth })") as { scroll: number; inner: number }
  assert.isAtMost(m.scroll, m.inner, `${what} scrolls sideways`)
}

/** The text a person sees in an element (innerText). */
const textOf = (page: Page, selector: string) =>
  page.evaluate(`document.querySelector(${JSON.stringify(selector)})?.innerText ?? ""`) as Promise<string>

const submit = (page: Page, selector: string) => Promise.all([page.waitForNavigation(), page.click(selector)])

const learners = (now: number) => [
  // Due a reminder now (noon in her zone, practised three days ago).
  { id: "due", email: "due@example.com", displayName: "Dana Due", createdAt: new Date(now - 30 * DAY), timezone: noonZone(now), sessions: [{ at: new Date(now - 3 * DAY), language: "es" }] },
  // Practised an hour ago: the reminder's rules say so.
  { id: "recent", email: "recent@example.com", displayName: "Rae Recent", createdAt: new Date(now - 30 * DAY), timezone: noonZone(now), sessions: [{ at: new Date(now - 3_600_000), language: "fr" }] }
]

describe("the console in a browser", () => {
  const browser = useBrowser()

  layer(serverWith({ CONSOLE_SECRET }), { excludeTestServices: true, timeout: 120_000 })((it) => {
    it.effect("signs in by a printed link; pauses with the button and a run skips; looks a learner up; resumes; at 1280 and 375 px", () =>
      Effect.gen(function*() {
        yield* insertUsers(learners(Date.now()))
        const pauses = yield* Pauses
        const sent = yield* MailerTestRef
        const base = yield* origin
        let firstRun: string | undefined
        for (const width of [1280, 375]) {
          const link = yield* printedLink
          const page = yield* Effect.promise(() => browser().newPage())
          const policies: Array<[string, string | null]> = []
          page.on("response", (r) => {
            if (r.request().resourceType() === "document") policies.push([r.url(), r.headers()["content-security-policy"] ?? null])
          })
          yield* Effect.promise(() => page.setViewport({ width, height: 900 }))
          const step = <A>(f: () => Promise<A>) => Effect.promise(f)

          // Sign in: the link shows a button, which lands on the jobs page, signed in.
          yield* step(() => page.goto(link))
          yield* step(() => submit(page, "form[action='/console/login'] button"))
          assert.strictEqual(new URL(page.url()).pathname, "/console")
          assert.include(yield* step(() => page.title()), "Jobs")
          assert.include(yield* step(() => textOf(page, "#job-practice-reminders")), "Delivery, last 7 days")
          yield* step(() => noSidewaysScroll(page, `jobs at ${width}`))
          yield* step(() => screenshot(page, `console-jobs-${width}`))

          // Pause through the button, with a reason.
          yield* step(() => page.type("#job-practice-reminders input[name=reason]", `template fix ${width}`))
          yield* step(() => submit(page, "#job-practice-reminders button[type=submit]"))
          const card = yield* step(() => textOf(page, "#job-practice-reminders"))
          assert.include(card, "PAUSED")
          assert.include(card, `template fix ${width}`)
          const pause = yield* pauses.get("practice-reminders")
          assert.strictEqual(pause?.reason, `template fix ${width}`)
          assert.include(pause?.pausedBy ?? "", "(console)")
          yield* step(() => noSidewaysScroll(page, `paused jobs at ${width}`))

          // A run of the paused job skips: outcome paused, nothing sent.
          const before = (yield* Ref.get(sent)).length
          const skipped = yield* runJob(practiceReminders)
          assert.strictEqual(skipped.outcome, "paused")
          assert.strictEqual((yield* Ref.get(sent)).length, before)

          // The learner lookup says why: paused now; after resume, the rule that holds her back.
          const lookUp = (who: string) =>
            step(async () => {
              await page.goto(`${base}/console/learner`)
              await page.type("input[name=q]", who)
              await submit(page, "form[action='/console/learner'] button")
              return page.$eval("li[data-job=practice-reminders] .reason", (e) => e.textContent)
            })
          assert.strictEqual(yield* lookUp("recent@example.com"), "paused")
          yield* step(() => page.goto(`${base}/console`))
          yield* step(() => submit(page, "#job-practice-reminders button[type=submit]"))
          assert.notInclude(yield* step(() => textOf(page, "#job-practice-reminders")), "PAUSED")
          assert.isUndefined(yield* pauses.get("practice-reminders"))
          assert.strictEqual(yield* lookUp("recent@example.com"), "practised_in_last_24h")
          yield* step(() => noSidewaysScroll(page, `learner at ${width}`))
          yield* step(() => screenshot(page, `console-learner-${width}`))

          // Resumed, a run sends again (once: the second width's run finds her key on the ledger).
          const resumed = yield* runJob(practiceReminders)
          assert.strictEqual(resumed.outcome, "succeeded")
          firstRun ??= resumed.runId
          assert.deepStrictEqual((yield* Ref.get(sent)).map((e) => e.to), ["due@example.com"])

          // The run's page lists the recipients it touched; the jobs page links it.
          yield* step(() => page.goto(`${base}/console`))
          const runLinks = yield* step(() => page.$$eval("#job-practice-reminders a[href^='/console/run']", (as) => as.map((a) => a.getAttribute("href"))))
          assert.include(runLinks, `/console/run?id=${firstRun}`)
          yield* step(() => page.goto(`${base}/console/run?id=${firstRun}`))
          const runText = yield* step(() => textOf(page, "body"))
          assert.include(runText, "due@example.com")
          assert.include(runText, "Recipients it touched (1)")
          yield* step(() => noSidewaysScroll(page, `run at ${width}`))
          yield* step(() => screenshot(page, `console-run-${width}`))

          // Every sample, each on its own sandboxed page.
          yield* step(() => page.goto(`${base}/console/samples`))
          const samples = yield* step(() => page.$$eval("a[href^='/console/sample?']", (as) => as.map((a) => a.getAttribute("href")!)))
          const config = yield* JobsConfig
          const expected = yield* Effect.forEach(registry, (job) => Effect.map(job.preview(config), (p) => p.length))
          assert.strictEqual(samples.length, expected.reduce((a, b) => a + b, 0))
          yield* step(() => noSidewaysScroll(page, `samples at ${width}`))
          const sample = yield* step(() => page.goto(`${base}${samples[0]}`))
          assert.include(sample?.headers()["content-security-policy"] ?? "", "sandbox")
          assertStrictPolicy(sample?.headers()["content-security-policy"] ?? null, "a sample")

          // The address looked up never reaches a request's trace attributes (`url.full`, `url.query`).
          const server = spans.filter((s) => s.kind === "server")
          assert.isTrue(server.some((s) => String(s.attributes.get("url.query") ?? "").includes("q=REDACTED")))
          for (const span of server) assert.notInclude(JSON.stringify([...span.attributes].map(([k, v]) => [k, String(v)])), "recent%40example.com")
          assert.isAtLeast(policies.length, 10)
          for (const [url, csp] of policies) assertStrictPolicy(csp, url)
          yield* step(() => page.close())
        }
      }), 180_000)

    it.effect("without a session: 401 with the sign-in page and nothing personal, on every page and form", () =>
      Effect.gen(function*() {
        const report = yield* runJob(practiceReminders)
        const paths = ["/console", "/console/learner?q=due%40example.com", `/console/run?id=${report.runId}`, "/console/samples",
          "/console/sample?job=practice-reminders&name=reminder-never-with-language"]
        for (const path of paths) {
          for (const cookie of [undefined, "kaiwa_console=forged.value", `kaiwa_console=${Auth.makeSession(Redacted.make("another-secret-of-enough-length-0123456789"), { now: Date.now(), by: "x" }).value}`]) {
            const r = yield* fetchFrom(path, cookie === undefined ? {} : { headers: { cookie } })
            assert.strictEqual(r.status, 401, path)
            assert.include(r.text, "kaiwa-jobs console-link")
            assert.notInclude(r.text, "due@example.com")
            assert.notInclude(r.text, report.runId)
            assertStrictPolicy(r.headers.get("content-security-policy"), path)
          }
        }
        const pause = yield* fetchFrom("/console/pause", form({ job: "practice-reminders", reason: "x" }))
        assert.strictEqual(pause.status, 401)
        assert.isUndefined(yield* Effect.flatMap(Pauses, (p) => p.get("practice-reminders")))
      }))

    it.effect("opening a link only shows a Sign in button; its POST signs in once (HttpOnly, SameSite=Strict); an expired, forged or replayed link is refused, no cookie", () =>
      Effect.gen(function*() {
        const secret = Redacted.make(CONSOLE_SECRET)
        const expired = Auth.makeLinkToken(secret, { now: Date.now() - 16 * 60_000, minutes: 15, by: "t" })
        const refused = (token: string, why: string) =>
          Effect.gen(function*() {
            for (const r of [yield* fetchFrom(`/console/login?token=${encodeURIComponent(token)}`), yield* useLink(`http://x/?token=${encodeURIComponent(token)}`)]) {
              assert.strictEqual(r.status, 401)
              assert.include(r.text, why)
              assert.isNull(r.headers.get("set-cookie"))
            }
          })
        yield* refused(expired, "expired")
        const good = Auth.makeLinkToken(secret, { now: Date.now(), minutes: 15, by: "t" })
        const forged = Auth.makeLinkToken(Redacted.make("not-the-console-secret-0123456789abcdef"), { now: Date.now(), minutes: 15, by: "t" })
        for (const token of [forged, `${good}x`, good.split(".")[0]!, ""]) yield* refused(token, "not valid")
        const link = yield* printedLink
        // Opening the link (as a chat app's preview or a scanner would) only shows the button; it uses nothing.
        for (let i = 0; i < 2; i++) {
          const shown = yield* fetchFrom(link)
          assert.strictEqual(shown.status, 200)
          assert.include(shown.text, `<form method="post" action="/console/login">`)
          assert.isNull(shown.headers.get("set-cookie"))
        }
        const first = yield* useLink(link)
        assert.strictEqual(first.status, 303)
        assert.strictEqual(first.headers.get("location"), "/console")
        const cookie = first.headers.get("set-cookie") ?? ""
        assert.match(cookie, /^kaiwa_console=[\w-]+\.[\w-]+; Path=\/console; HttpOnly; SameSite=Strict; Max-Age=28800$/)
        const replay = yield* useLink(link)
        assert.strictEqual(replay.status, 401)
        assert.include(replay.text, "already used")
        assert.isNull(replay.headers.get("set-cookie"))
      }))

    it.effect("a form without its CSRF token, or with another session's, is refused (403) and changes nothing", () =>
      Effect.gen(function*() {
        const pauses = yield* Pauses
        const cookie = yield* signIn
        const other = yield* signIn
        const page = yield* fetchFrom("/console", { headers: { cookie } })
        assert.strictEqual(page.status, 200)
        const csrf = /name="csrf" value="([^"]+)"/.exec(page.text)?.[1]
        const otherCsrf = /name="csrf" value="([^"]+)"/.exec((yield* fetchFrom("/console", { headers: { cookie: other } })).text)?.[1]
        assert.isDefined(csrf)
        assert.notStrictEqual(csrf, otherCsrf)
        for (const fields of [{ job: "practice-reminders" }, { job: "practice-reminders", csrf: "" }, { job: "practice-reminders", csrf: otherCsrf! }]) {
          const r = yield* fetchFrom("/console/pause", form(fields, cookie))
          assert.strictEqual(r.status, 403)
          assert.isUndefined(yield* pauses.get("practice-reminders"))
        }
        const ok = yield* fetchFrom("/console/pause", form({ job: "practice-reminders", csrf: csrf!, reason: "by form" }, cookie))
        assert.strictEqual(ok.status, 303)
        assert.strictEqual((yield* pauses.get("practice-reminders"))?.reason, "by form")
        const noToken = yield* fetchFrom("/console/resume", form({ job: "practice-reminders" }, cookie))
        assert.strictEqual(noToken.status, 403)
        assert.isDefined(yield* pauses.get("practice-reminders"))
        const resumed = yield* fetchFrom("/console/resume", form({ job: "practice-reminders", csrf: csrf! }, cookie))
        assert.strictEqual(resumed.status, 303)
        assert.isUndefined(yield* pauses.get("practice-reminders"))
        // Signing out needs the token too, and ends the cookie.
        assert.strictEqual((yield* fetchFrom("/console/logout", form({}, cookie))).status, 403)
        const out = yield* fetchFrom("/console/logout", form({ csrf: csrf! }, cookie))
        assert.strictEqual(out.status, 303)
        assert.match(out.headers.get("set-cookie") ?? "", /^kaiwa_console=; .*Max-Age=0/)
      }))
  })

  layer(serverWith({}), { excludeTestServices: true })((it) => {
    it.effect("CONSOLE_SECRET unset: /console and its sign-in answer 404, and console-link exits 2 naming it", () =>
      Effect.gen(function*() {
        const token = Auth.makeLinkToken(Redacted.make(CONSOLE_SECRET), { now: Date.now(), minutes: 15, by: "t" })
        for (const path of ["/console", `/console/login?token=${encodeURIComponent(token)}`, "/console/samples", "/console/learner?q=x"]) {
          const r = yield* fetchFrom(path)
          assert.strictEqual(r.status, 404, path)
          assert.isNull(r.headers.get("set-cookie"))
        }
        assert.strictEqual((yield* fetchFrom("/console/pause", form({ job: "practice-reminders" }))).status, 404)
        assert.strictEqual((yield* fetchFrom("/console/login", form({ token }))).status, 404)
        // And console-link says why it cannot make a link (exit 2, the variable named).
        const link = yield* Effect.promise(() => run("dist/cli.js", ["console-link"], { APP_URL: "https://kaiwa.example" }))
        assert.strictEqual(link.code, 2)
        assert.include(link.stderr, "CONSOLE_SECRET")
        assert.strictEqual(link.stdout, "")
      }))
  })

  layer(serverWith({ CONSOLE_SECRET, APP_URL: "https://kaiwa.example" }), { excludeTestServices: true })((it) => {
    it.effect("APP_URL on https: the session cookie is Secure", () =>
      Effect.gen(function*() {
        const token = Auth.makeLinkToken(Redacted.make(CONSOLE_SECRET), { now: Date.now(), minutes: 15, by: "t" })
        const r = yield* fetchFrom("/console/login", form({ token }))
        assert.strictEqual(r.status, 303)
        assert.match(r.headers.get("set-cookie") ?? "", /; HttpOnly; SameSite=Strict; Max-Age=28800; Secure$/)
      }))
  })
})
