/**
 * The operator's web console at `/console`, on the same server as the cron triggers:
 * server-rendered HTML, no JavaScript, no front-end build. Pages:
 * - `/console`: every job with its schedule, its last runs (outcome and stats), OVERDUE, AT RISK with the 7-day
 *   delivery rates, who paused it, when and why, and its pause or resume button;
 * - `/console/run?id=…`: a run's stats and the ledger rows it planned (the recipients it touched), 50 a page;
 * - `/console/learner?q=…[&at=ISO]`: `kaiwa-jobs why` for a learner (each job's decision by the run's own SQL,
 *   and the timeline);
 * - `/console/samples`: every job's sample emails as `preview` renders them, each on its own page
 *   (`/console/sample?job=…&name=…`) under a sandboxing Content-Security-Policy of its own.
 *
 * Access: `/console` answers 404 while CONSOLE_SECRET is unset. Sign-in is a one-time link from `kaiwa-jobs
 * console-link` (src/pages/ConsoleAuth.ts): the link shows a Sign in button, whose POST uses the link up and sets the
 * session cookie (a chat app or scanner that fetches the link uses nothing); without a session every page is a 401 that says how to get one and shows
 * nothing else. Pause, resume and sign-out are POST forms carrying the session's CSRF token (403 without it).
 * Every page sends the strict policy of src/pages/Pages.ts (no script at all, forms to this server only).
 */
import { ByteSize, Cause, Clock, Effect, Option, type Redacted } from "effect"
import { HttpIncomingMessage, HttpRouter, HttpServerRequest, HttpServerResponse } from "effect/http"
import { SqlClient } from "effect/sql"
import { JobsConfig, type Settings } from "../config/Config.ts"
import * as Auth from "./ConsoleAuth.ts"
import { useNonce } from "./ConsoleAuth.ts"
import { Ledger, type TouchedRow } from "../ledger/Ledger.ts"
import { type RunRecord as RunRow, Runs } from "../ledger/Runs.ts"
import { describeHealth } from "../delivery/DeliveryHealth.ts"
import { escapeHtml as esc } from "../emails/html.ts"
import type { ServerServices } from "../triggers/Http.ts"
import { Jobs, type Registry } from "../jobs/index.ts"
import type * as Job from "../job/Job.ts"
import { page, pageHeaders } from "./Pages.ts"
import { type Pause, Pauses } from "../ledger/Pauses.ts"
import { type JobStatus, jobStatuses } from "../operator/Status.ts"
import { why, type WhyReport } from "../operator/Why.ts"

/** The console's root path. */
export const PATH = "/console"

const RUNS_PER_JOB = 5
const PAGE_SIZE = 50
const MAX_FORM_BODY = ByteSize.kibibytes(4)

// The console is wider than the learner's pages; lists wrap instead of scrolling sideways on a phone.
const STYLE = `<style>body{max-width:62rem}nav{display:flex;flex-wrap:wrap;gap:.5rem 1.2rem;align-items:center;` +
  `padding-bottom:.6rem;border-bottom:1px solid #d0d7de}nav form{margin-left:auto}.card{border:1px solid #d0d7de;` +
  `border-radius:10px;padding:.4rem 1rem 1rem;margin:1rem 0}.badge{display:inline-block;font-size:.85rem;` +
  `font-weight:700;padding:.1rem .5rem;border-radius:6px;vertical-align:middle;margin-left:.3rem}` +
  `.b-ok{background:#dafbe1;color:#116329}.b-bad{background:#ffebe9;color:#a40e26}.b-pause{background:#fff8c5;` +
  `color:#6f4e00}ul.plain{list-style:none;padding:0;margin:.3rem 0}ul.plain li{padding:.35rem 0;` +
  `border-bottom:1px solid #d0d7de;overflow-wrap:anywhere}input[type=text]{font:inherit;min-height:44px;` +
  `box-sizing:border-box;padding:.3rem .5rem;max-width:100%;width:22rem;border:1px solid #8c959f;border-radius:8px}` +
  `.row{display:flex;flex-wrap:wrap;gap:.5rem;align-items:center}pre{white-space:pre-wrap;overflow-wrap:anywhere}` +
  `td,th{overflow-wrap:anywhere}a{color:#0969da}.notice.warn{background:#fff8c5;border-color:#9a6700}` +
  `@media (prefers-color-scheme: dark){.card,nav,ul.plain li{border-color:#30363d}a{color:#58a6ff}` +
  `.b-ok{background:#033a16;color:#7ee787}.b-bad{background:#490202;color:#ffa198}.b-pause{background:#3b2e00;` +
  `color:#e3b341}input[type=text]{background:#0d1117;color:#e6edf3}.notice.warn{background:#3b2e00;border-color:#e3b341}}</style>`

const time = (d: Date | string | null) =>
  d === null ? "never" : (typeof d === "string" ? d : d.toISOString()).replace("T", " ").replace(/:\d\d(\.\d+)?Z$/, " UTC")

/** An object or an array: what `Object.entries` lists. */
const isObjectLike = (u: unknown): u is Readonly<Record<string, unknown>> => u !== null && typeof u === "object"

/** `due 3 · sent 2 · skipped cap 1` from a run's stats (whatever the job's groups). */
export const describeStats = (stats: unknown): string => {
  if (!isObjectLike(stats)) return "no stats"
  return Object.entries(stats).flatMap(([k, v]) => {
    if (typeof v === "number") return [`${k} ${v}`]
    if (isObjectLike(v)) {
      const parts = Object.entries(v).map(([r, n]) => `${r} ${Array.isArray(n) ? n.length : String(n)}`)
      return parts.length === 0 ? [] : [`${k}: ${parts.join(", ")}`]
    }
    return []
  }).join(" · ")
}

const shell = (title: string, body: string, csrf: string | undefined, status = 200) =>
  page(
    `${title} · kaiwa-jobs console`,
    STYLE +
      `<nav><strong>kaiwa-jobs</strong><a href="${PATH}">Jobs</a><a href="${PATH}/learner">Learner lookup</a>` +
      `<a href="${PATH}/samples">Email samples</a>` +
      (csrf === undefined ? "" : `<form method="post" action="${PATH}/logout">${hidden("csrf", csrf)}<button type="submit" class="secondary">Sign out</button></form>`) +
      `</nav>${body}`,
    status
  )

const hidden = (name: string, value: string) => `<input type="hidden" name="${esc(name)}" value="${esc(value)}">`

const plain = (title: string, body: string, status: number) => page(title, `<h1>${esc(title)}</h1>${body}`, status)

const signInPage = (reason: string, status: number) =>
  plain(
    "Sign in to the console",
    `<p>${esc(reason)}</p><p>Ask for a sign-in link on a machine with the production settings:</p>` +
      `<pre>kaiwa-jobs console-link</pre><p>It prints a link that works once, for 15 minutes.</p>`,
    status
  )

// ---- the jobs page ----

const badge = (s: JobStatus, pause: Pause | undefined) =>
  pause !== undefined
    ? `<span class="badge b-pause">PAUSED</span>`
    : [s.overdue ? `<span class="badge b-bad">OVERDUE</span>` : "", s.atRisk ? `<span class="badge b-bad">AT RISK</span>` : ""].join("") ||
      `<span class="badge b-ok">OK</span>`

const runLine = (r: RunRow) =>
  `<li><a href="${PATH}/run?id=${esc(r.id)}">${esc(time(r.started_at))}</a> <strong>${esc(r.outcome)}</strong> ` +
  `<span class="note">(${esc(r.trigger)})</span><br><span class="note">${esc(describeStats(r.stats))}` +
  `${r.error ? ` · ${esc(r.error)}` : ""}</span></li>`

const jobCard = (s: JobStatus, runs: ReadonlyArray<RunRow>, pause: Pause | undefined, csrf: string) =>
  `<section class="card" id="job-${esc(s.job)}"><h2>${esc(s.title)} ${badge(s, pause)}</h2>` +
  `<p class="note">${esc(s.job)} · runs hourly, decides itself who is due · overdue after ${s.overdueAfterMinutes} min without a success · ` +
  `last success ${esc(time(s.lastSuccessAt))}</p>` +
  (pause === undefined
    ? ""
    : `<p class="notice warn" role="status">Paused by ${esc(pause.pausedBy)} at ${esc(time(pause.pausedAt))}` +
      `${pause.reason ? `: ${esc(pause.reason)}` : ""}. Its runs send nothing until it is resumed.</p>`) +
  `<p><strong>Delivery, last 7 days${s.atRisk ? " (AT RISK)" : ""}:</strong> ${esc(describeHealth(s.delivery))}</p>` +
  `<h3>Last runs</h3>` +
  (runs.length === 0 ? `<p class="note">No run yet.</p>` : `<ul class="plain">${runs.map(runLine).join("")}</ul>`) +
  (pause === undefined
    ? `<form method="post" action="${PATH}/pause" class="row">${hidden("csrf", csrf)}${hidden("job", s.job)}` +
      `<input type="text" name="reason" aria-label="Reason for pausing ${esc(s.job)}" placeholder="Why (optional)" maxlength="200">` +
      `<button type="submit">Pause ${esc(s.job)}</button></form>`
    : `<form method="post" action="${PATH}/resume">${hidden("csrf", csrf)}${hidden("job", s.job)}` +
      `<button type="submit">Resume ${esc(s.job)}</button></form>`) +
  `</section>`

// ---- the run page ----

const touchedLine = (t: TouchedRow) =>
  `<li><strong>${esc(t.email)}</strong> <span class="note">${esc(t.user_id)}</span><br>key ${esc(t.dedupe_key)} · ` +
  `<strong>${esc(t.status)}</strong>${t.reason ? ` (${esc(t.reason)})` : ""}${t.delivery ? ` · ${esc(t.delivery)}` : ""}` +
  ` · planned ${esc(time(t.planned_at))}${t.sent_at ? ` · sent ${esc(time(t.sent_at))}` : ""} · ` +
  `<a href="${PATH}/learner?q=${encodeURIComponent(t.user_id)}">why</a></li>`

const runPage = (run: RunRow, rows: ReadonlyArray<TouchedRow>, total: number, pageNo: number, csrf: string) => {
  const pages = Math.max(1, Math.ceil(total / PAGE_SIZE))
  const link = (n: number, label: string) => `<a href="${PATH}/run?id=${esc(run.id)}&amp;page=${n}">${label}</a>`
  return shell(
    `Run of ${run.job}`,
    `<h1>Run of ${esc(run.job)}</h1><ul class="plain"><li>Outcome <strong>${esc(run.outcome)}</strong>` +
      `${run.error ? `: ${esc(run.error)}` : ""}</li><li>As of ${esc(time(run.as_of))}, started ${esc(time(run.started_at))}, ` +
      `finished ${esc(time(run.finished_at))}</li><li>Trigger ${esc(run.trigger)}${run.host ? ` on ${esc(run.host)}` : ""}</li>` +
      `<li>Stats: ${esc(describeStats(run.stats))}</li><li class="note">Run id ${esc(run.id)}</li></ul>` +
      `<h2>Recipients it touched (${total})</h2>` +
      (rows.length === 0 ? `<p class="note">None on this page.</p>` : `<ul class="plain">${rows.map(touchedLine).join("")}</ul>`) +
      `<p class="row">${pageNo > 1 ? link(pageNo - 1, "← Newer page") : ""}<span>Page ${pageNo} of ${pages}</span>` +
      `${pageNo < pages ? link(pageNo + 1, "Next page →") : ""}</p>`,
    csrf
  )
}

// ---- the learner page ----

const lookupForm = (q: string, at: string) =>
  `<form method="get" action="${PATH}/learner" class="row"><input type="text" name="q" value="${esc(q)}" ` +
  `aria-label="Email address or user id" placeholder="Email address or user id">` +
  `<input type="text" name="at" value="${esc(at)}" aria-label="As of (ISO instant, empty for now)" placeholder="As of (ISO, empty: now)">` +
  `<button type="submit">Look up</button></form>`

const whyBody = (r: WhyReport) =>
  `<h2>${esc(r.user.email)} <span class="note">${esc(r.user.userId)}</span></h2><p class="note">As of ${esc(time(r.asOf))}</p>` +
  `<ul class="plain">${r.jobs.map((j) =>
    `<li data-job="${esc(j.job)}"><strong>${esc(j.job)}</strong>: <span class="badge ${j.due ? "b-ok" : "b-pause"}">${j.due ? "DUE" : "NOT DUE"}</span> ` +
    `<code class="reason">${esc(j.reason)}</code>${j.detail ? `<br><span class="note">${esc(j.detail)}</span>` : ""}</li>`
  ).join("")}</ul><h2>Timeline</h2>` +
  (r.timeline.length === 0
    ? `<p class="note">Nothing yet.</p>`
    : `<ul class="plain">${r.timeline.map((t) =>
      `<li>${esc(time(t.at))} <strong>${esc(t.kind)}</strong> ${esc(t.job ?? "")}<br><span class="note">${esc(t.detail)}</span></li>`
    ).join("")}</ul>`)

const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d{1,3})?)?(?:Z|[+-]\d{2}:?\d{2})$/

const parseAt = (s: string): Date | undefined => {
  if (!ISO.test(s)) return undefined
  const d = new Date(s)
  return Number.isNaN(d.getTime()) ? undefined : d
}

// ---- the sample pages ----

// A sample email is shown as it would be received: its own HTML, sandboxed, nothing it could load or run.
const sampleHeaders = {
  ...pageHeaders,
  "content-security-policy": "default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'none'; " +
    "frame-ancestors 'none'; base-uri 'none'; sandbox"
}

// ---- the routes ----

/** What every handler works with, read once when the server starts. */
interface ConsoleApp {
  readonly config: Settings
  readonly jobs: Registry
  readonly sql: SqlClient.SqlClient
  readonly pauses: Pauses["Service"]
  /** Runs an effect on the server's mode stack, with this server's registry. */
  readonly provide: <A, E>(effect: Effect.Effect<A, E, ServerServices>) => Effect.Effect<A, E>
  /** Cookies are Secure when APP_URL is https. */
  readonly secure: boolean
}

type ServerResponse = HttpServerResponse.HttpServerResponse
type ServerRequest = HttpServerRequest.HttpServerRequest

/** A handler behind the CONSOLE_SECRET check; it may fail with anything (logged, answered 500). */
type Handler = (app: ConsoleApp, secret: Redacted.Redacted<string>, request: ServerRequest, now: number) => Effect.Effect<ServerResponse, unknown>

/** A page for a signed-in operator. */
type PageHandler = (app: ConsoleApp, page: { readonly session: Auth.Session; readonly csrf: string; readonly request: ServerRequest; readonly now: number }) =>
  Effect.Effect<ServerResponse, unknown>

/** A state-changing form of a signed-in operator, its CSRF token checked. */
type FormHandler = (app: ConsoleApp, session: Auth.Session, fields: URLSearchParams, now: number) => Effect.Effect<ServerResponse, unknown>

const failedPage = () => plain("Something went wrong", "<p>Nothing was changed. The server log has the details.</p>", 500)
const notFound = () => HttpServerResponse.text("Not Found", { status: 404, headers: { "cache-control": "no-store" } })
const unknownJob = () => plain("Unknown job", "<p>Nothing was changed.</p>", 400)

const paramsOf = (request: ServerRequest) => new URL(request.url, "http://localhost").searchParams

const formBody = (request: ServerRequest) =>
  request.text.pipe(
    Effect.provideService(HttpIncomingMessage.MaxBodySize, MAX_FORM_BODY),
    Effect.orElseSucceed(() => "")
  )

/** 404 while CONSOLE_SECRET is unset; otherwise the handler, with failures logged as one line and a 500 page. */
const route = (app: ConsoleApp, handler: Handler) =>
  Effect.gen(function*() {
    if (Option.isNone(app.config.consoleSecret)) return notFound()
    const request = yield* HttpServerRequest.HttpServerRequest
    const now = yield* Clock.currentTimeMillis
    return yield* handler(app, app.config.consoleSecret.value, request, now)
  }).pipe(Effect.catchCause((cause) =>
    // An interruption (the client went away, the server is stopping) passes through.
    Cause.hasInterruptsOnly(cause)
      ? Effect.interrupt
      : Effect.logError(`console: ${Cause.pretty(cause).split("\n")[0]}`).pipe(Effect.as(failedPage()))
  ))

/** A page for a signed-in operator; anyone else gets the 401 sign-in page and nothing more. */
const signedIn = (app: ConsoleApp, handler: PageHandler) =>
  route(app, (app, secret, request, now) => {
    const session = Auth.verifySession(secret, request.cookies[Auth.COOKIE] ?? "", now)
    if (session === undefined) return Effect.succeed(signInPage("You are not signed in, or your session has ended.", 401))
    return handler(app, { session, csrf: Auth.csrfToken(secret, session), request, now })
  })

/** A state-changing form: signed in, and carrying the session's CSRF token (403 otherwise, nothing changed). */
const form = (app: ConsoleApp, handler: FormHandler) =>
  route(app, (app, secret, request, now) =>
    Effect.gen(function*() {
      const session = Auth.verifySession(secret, request.cookies[Auth.COOKIE] ?? "", now)
      if (session === undefined) return signInPage("You are not signed in, or your session has ended. Nothing was changed.", 401)
      const fields = new URLSearchParams(yield* formBody(request))
      if (!Auth.csrfMatches(secret, session, fields.get("csrf") ?? "")) {
        return plain("Not allowed", "<p>This form is missing its security token. Nothing was changed; reload the page and try again.</p>", 403)
      }
      return yield* handler(app, session, fields, now)
    }))

const back = (location: string, cookie?: string) =>
  HttpServerResponse.empty({
    status: 303,
    headers: { ...pageHeaders, location, ...(cookie === undefined ? {} : { "set-cookie": cookie }) }
  })

const linkProblem = (claim: Auth.LinkProblem) =>
  signInPage(claim === "expired" ? "This sign-in link has expired." : "This sign-in link is not valid.", 401)

/**
 * `GET /console/login?token=…`: the link only shows a button. Chat apps and mail scanners fetch links they see,
 * and must not use up a one-time link; signing in is the button's POST.
 */
const loginPage: Handler = (_console, secret, request, now) =>
  Effect.sync(() => {
    const token = paramsOf(request).get("token") ?? ""
    const claim = Auth.verifyLinkToken(secret, token, now)
    if (typeof claim === "string") return linkProblem(claim)
    return plain(
      "Sign in to the console",
      `<p>This link signs you in once, until ${esc(time(new Date(claim.expiresAt)))}; the session then lasts ` +
        `${Auth.SESSION_HOURS} hours on this browser.</p><form method="post" action="${PATH}/login">` +
        `${hidden("token", token)}<button type="submit">Sign in</button></form>`,
      200
    )
  })

/** `POST /console/login`: uses the link up (once across every server process) and sets the session cookie. */
const login: Handler = (app, secret, request, now) =>
  Effect.gen(function*() {
    const claim = Auth.verifyLinkToken(secret, new URLSearchParams(yield* formBody(request)).get("token") ?? "", now)
    if (typeof claim === "string") return linkProblem(claim)
    // Recorded in the database, so a link signs in once across every server process.
    const first = yield* useNonce(app.sql, claim.nonce, new Date(claim.expiresAt), new Date(now))
    if (!first) return signInPage("This sign-in link was already used. Each link signs in once.", 401)
    const { value } = Auth.makeSession(secret, { now, by: claim.by })
    yield* Effect.logInfo(`console: signed in (link made by ${claim.by})`)
    return back(PATH, Auth.sessionCookie(value, { secure: app.secure, maxAgeSeconds: Auth.SESSION_HOURS * 3600 }))
  })

const logout: FormHandler = (app) =>
  Effect.succeed(back(`${PATH}/signed-out`, Auth.sessionCookie("", { secure: app.secure, maxAgeSeconds: 0 })))

const signedOut: Handler = () => Effect.succeed(signInPage("You are signed out.", 200))

/** `GET /console`: every job's card. */
const jobsPage: PageHandler = (app, { csrf }) =>
  Effect.gen(function*() {
    const [statuses, runs, paused] = yield* app.provide(Effect.all([
      jobStatuses,
      Effect.flatMap(Runs, (r) => r.recent(RUNS_PER_JOB)),
      app.pauses.all
    ]))
    return shell(
      "Jobs",
      `<h1>Jobs</h1>` + statuses.map((s) => jobCard(s, runs.filter((r) => r.job === s.job), paused.get(s.job), csrf)).join(""),
      csrf
    )
  })

const jobIn = (app: ConsoleApp, fields: URLSearchParams) => app.jobs.find((j) => j.name === fields.get("job"))

const pause: FormHandler = (app, session, fields, now) =>
  Effect.gen(function*() {
    const job = jobIn(app, fields)
    if (job === undefined) return unknownJob()
    const reason = (fields.get("reason") ?? "").trim().slice(0, 200)
    yield* app.pauses.pause({ job: job.name, by: `${session.by} (console)`, reason: reason === "" ? null : reason, now: new Date(now) })
    yield* Effect.logInfo(`console: ${job.name} paused by ${session.by}`)
    return back(`${PATH}#job-${job.name}`)
  })

const resume: FormHandler = (app, session, fields) =>
  Effect.gen(function*() {
    const job = jobIn(app, fields)
    if (job === undefined) return unknownJob()
    yield* app.pauses.resume(job.name)
    yield* Effect.logInfo(`console: ${job.name} resumed by ${session.by}`)
    return back(`${PATH}#job-${job.name}`)
  })

/** `GET /console/run?id=…&page=n`: a run and the ledger rows it planned, PAGE_SIZE a page. */
const runView: PageHandler = (app, { csrf, request }) =>
  Effect.gen(function*() {
    const params = paramsOf(request)
    const run = yield* app.provide(Effect.flatMap(Runs, (r) => r.byId(params.get("id") ?? "")))
    if (run === undefined) return shell("No such run", `<h1>No such run</h1><p><a href="${PATH}">Back to the jobs</a></p>`, csrf, 404)
    const pageNo = Math.max(1, Math.min(1_000_000, Number.parseInt(params.get("page") ?? "1", 10) || 1))
    const page = { offset: (pageNo - 1) * PAGE_SIZE, limit: PAGE_SIZE }
    const [rows, total] = yield* app.provide(Effect.flatMap(Ledger, (l) => l.touchedBy(run.id, page)))
    return runPage(run, rows, total, pageNo, csrf)
  })

/** `GET /console/learner?q=…[&at=ISO]`: `kaiwa-jobs why` for a learner. */
const learnerPage: PageHandler = (app, { csrf, now, request }) =>
  Effect.gen(function*() {
    const params = paramsOf(request)
    const q = (params.get("q") ?? "").trim()
    const atText = (params.get("at") ?? "").trim()
    const head = `<h1>Learner lookup</h1><p>Why a learner got, or did not get, each job's email: the run's own rules.</p>${lookupForm(q, atText)}`
    if (q === "") return shell("Learner lookup", head, csrf)
    const at = atText === "" ? new Date(now) : parseAt(atText)
    if (at === undefined) return shell("Learner lookup", `${head}<p class="off">“As of” must be an ISO instant such as 2026-03-10T09:00:00Z.</p>`, csrf, 400)
    const answer = yield* app.provide(why(q, at)).pipe(
      Effect.map(whyBody),
      Effect.catchTag("UnknownLearner", () => Effect.succeed(`<p class="off">No learner has that id or address.</p>`))
    )
    return shell("Learner lookup", head + answer, csrf)
  })

const sampleList = (job: Job.Any, previews: ReadonlyArray<Job.Preview>) =>
  `<section class="card"><h2>${esc(job.title)}</h2><ul class="plain">${previews.map((p) =>
    `<li><a href="${PATH}/sample?job=${encodeURIComponent(job.name)}&amp;name=${encodeURIComponent(p.name)}">${esc(p.name)}</a>` +
    `<br><span class="note">${esc(p.email.subject)}</span>` +
    `<details><summary>Text part</summary><pre>${esc(p.email.text)}</pre></details></li>`
  ).join("")}</ul></section>`

/** `GET /console/samples`: every job's sample emails, as `preview` renders them. */
const samplesPage: PageHandler = (app, { csrf }) =>
  Effect.gen(function*() {
    const sections = yield* Effect.forEach(app.jobs, (job) => Effect.map(job.preview(app.config), (previews) => sampleList(job, previews)))
    return shell("Email samples", `<h1>Email samples</h1><p>Every variant of every job, rendered as <code>kaiwa-jobs preview</code> renders it.</p>${sections.join("")}`, csrf)
  })

/** `GET /console/sample?job=…&name=…`: one sample email's own HTML, under `sampleHeaders`. */
const samplePage: PageHandler = (app, { csrf, request }) =>
  Effect.gen(function*() {
    const params = paramsOf(request)
    const job = app.jobs.find((j) => j.name === params.get("job"))
    const previews = job === undefined ? [] : yield* job.preview(app.config)
    const found = previews.find((p) => p.name === params.get("name"))
    if (found === undefined) return shell("No such sample", `<h1>No such sample</h1><p><a href="${PATH}/samples">All samples</a></p>`, csrf, 404)
    return HttpServerResponse.text(found.email.html, { contentType: "text/html; charset=utf-8", headers: sampleHeaders })
  })

/** The console's routes, as their own router layer (Http.ts merges it into the app). */
export const Routes = HttpRouter.use(Effect.fn(function*(router) {
  const services = yield* Effect.context<ServerServices>()
  const config: Settings = yield* JobsConfig
  const jobs = yield* Jobs
  const app: ConsoleApp = {
    config,
    jobs,
    sql: yield* SqlClient.SqlClient,
    pauses: yield* Pauses,
    provide: (effect) => effect.pipe(Effect.provideService(Jobs, jobs), Effect.provideContext(services)),
    secure: config.appUrl.startsWith("https:")
  }
  yield* router.add("GET", `${PATH}/login`, route(app, loginPage))
  yield* router.add("POST", `${PATH}/login`, route(app, login))
  yield* router.add("POST", `${PATH}/logout`, form(app, logout))
  yield* router.add("GET", `${PATH}/signed-out`, route(app, signedOut))
  yield* router.add("GET", PATH, signedIn(app, jobsPage))
  yield* router.add("POST", `${PATH}/pause`, form(app, pause))
  yield* router.add("POST", `${PATH}/resume`, form(app, resume))
  yield* router.add("GET", `${PATH}/run`, signedIn(app, runView))
  yield* router.add("GET", `${PATH}/learner`, signedIn(app, learnerPage))
  yield* router.add("GET", `${PATH}/samples`, signedIn(app, samplesPage))
  yield* router.add("GET", `${PATH}/sample`, signedIn(app, samplePage))
}))
