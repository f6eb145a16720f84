/**
 * The HTTP side of kaiwa-jobs (`kaiwa-jobs serve`, docs/http.md): cron triggers that call the runner (never
 * a job body), `GET /health`, and the unsubscribe page with its RFC 8058 one-click POST.
 *
 * Cron triggers (`GET` or `POST /api/cron/<job>` for every registered job, and `/api/cron/<alias>` for its
 * aliases: `/api/cron/send-reminders` is the seed's path of practice-reminders), checked in this order:
 * - 503 when CRON_SECRET is unset or shorter than 32 characters: nothing runs, so an unset secret can never be
 *   matched by `Bearer undefined` or `Bearer `.
 * - 401 unless the request carries `Authorization: Bearer <CRON_SECRET>`. The token is compared in constant time:
 *   both sides are hashed with SHA-256 first, so not even the secret's length leaks.
 * - 400 for any query parameter other than `dryRun`, or a `dryRun` other than `1`/`true`/`0`/`false`: a typo such
 *   as `?dryrun=1` must not turn into a real send.
 * - 409 when the same job is already running in this process (dry runs included; other processes are kept apart
 *   by the delivery ledger's leases).
 * - Otherwise the run's report as JSON `{ job, outcome, exitCode, stats, durationMs, runId, dryRun, asOf, error }`:
 *   200 when the outcome is `succeeded`, 500 when it is `failed` or `incomplete`, so `curl --fail` in a scheduler
 *   notices; `error` is the runner's one-line reason (never a stack). A dry run (`?dryRun=1`) runs with the console
 *   mailer in place of the server's own, so nothing is sent whatever mode the server runs in, and the runner
 *   writes nothing.
 * - The run belongs to the server, not to the connection: a client that hangs up (a proxy's idle timeout, a curl
 *   `--max-time`) does not interrupt it, and the job stays locked until it ends. Stopping the server interrupts it
 *   after the graceful-shutdown window, and the runner records it as interrupted.
 *
 * `GET /health` answers each job's last run, last success and overdue flag, and its 7-day delivery counts and
 * rates with the AT RISK flag (src/delivery/DeliveryHealth.ts), and nothing else: run stats can hold user ids (bad rows),
 * so they are left out. 503 when the database cannot be read (or does not answer within HEALTH_TIMEOUT); with
 * `?strict=1`, also when any job is overdue or at risk (`healthy: false`), so an uptime monitor that reads only
 * status codes can alert. It stays unauthenticated (Fly's health check and uptime monitors call it), so it answers
 * from one summary at most HEALTH_MAX_AGE old, shared by every request meanwhile: a flood of requests costs the
 * database one summary per 5 s (bench/health.ts).
 *
 * `POST /webhooks/resend` (Resend's delivery events) lives in src/feedback/Webhooks.ts, the learner's `/preferences` in
 * src/pages/PreferenceCenter.ts and the operator's `/console` in src/pages/Console.ts, each merged into the app below.
 *
 * `GET /unsubscribe?token=…` only shows a confirmation form (mail scanners prefetch links; an unsubscribe must be
 * a person's act or the provider's one-click POST). `POST /unsubscribe` (token in the query, or in a urlencoded
 * form body) verifies the signed token and records the suppression, idempotently; a bad token is a 400 and
 * changes nothing.
 *
 * No response carries a stack trace or a secret. Each request is logged by method, path and status (Effect's
 * access log, which drops the query string: it holds unsubscribe tokens), and the `token` query parameter is
 * redacted from trace attributes as well.
 */
import { createHash, timingSafeEqual } from "node:crypto"
import { createServer } from "node:http"
import { isIP, type Socket } from "node:net"
import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import { ByteSize, Cause, Config, Duration, Effect, Exit, Fiber, Layer, Option, Redacted } from "effect"
import type { Scope } from "effect"
import {
  HttpIncomingMessage,
  HttpRouter,
  type HttpServer,
  type HttpServerError,
  HttpServerRequest,
  HttpServerResponse,
  UrlParams
} from "effect/http"
import { InvalidConfig, JobsConfig, type Settings } from "../config/Config.ts"
import { DatabaseError } from "../database/Database.ts"
import { makeReclaimer, type Reclaimer } from "./Reclaim.ts"
import { escapeHtml } from "../emails/index.ts"
import { describeFailure, type JobServices, type RunReport, runJob } from "../job/Job.ts"
import type { Preferences } from "../ledger/Preferences.ts"
import type { Suppressions } from "../ledger/Suppressions.ts"
import type * as Job from "../job/Job.ts"
import { findJob, Jobs, type Registry } from "../jobs/index.ts"
import { Mailer } from "../mail/Mailer.ts"
import { type JobStatus, jobStatuses } from "../operator/Status.ts"
import { confirm, verifyToken } from "../mail/Unsubscribe.ts"
import * as Console from "../pages/Console.ts"
import * as PreferenceCenter from "../pages/PreferenceCenter.ts"
import * as Webhooks from "../feedback/Webhooks.ts"

/** A CRON_SECRET shorter than this disables the cron endpoints (503). */
export const MIN_CRON_SECRET_LENGTH = 32

/** The cron trigger paths of a registry and the job each one runs: `/api/cron/<name>`, then one per alias. */
export const cronRoutes = (jobs: Registry): ReadonlyArray<{ readonly path: `/api/cron/${string}`; readonly job: Job.Any }> =>
  jobs.flatMap((job) => [job.name, ...job.aliases].map((name) => ({ path: `/api/cron/${name}` as const, job })))

const digest = (s: string) => createHash("sha256").update(s, "utf8").digest()

/**
 * Whether an Authorization header is `Bearer <secret>` (scheme case-insensitive, RFC 9110), compared in constant
 * time: both sides are SHA-256 digests of equal length, whatever was sent.
 */
export const bearerMatches = (header: string | undefined, secret: Redacted.Redacted<string>): boolean => {
  const token = /^Bearer (.*)$/is.exec(header ?? "")?.[1] ?? ""
  const equal = timingSafeEqual(digest(token), digest(Redacted.value(secret)))
  return equal && token !== ""
}

const baseHeaders = { "cache-control": "no-store", "x-content-type-options": "nosniff" }

const json = (body: unknown, status = 200, headers: Record<string, string> = {}) =>
  HttpServerResponse.jsonUnsafe(body, { status, headers: { ...baseHeaders, ...headers } })

// The page embeds nothing and links nowhere; the policy keeps it that way, and no-referrer keeps the token in the
// URL from travelling anywhere.
const pageHeaders = {
  ...baseHeaders,
  "content-security-policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
  "referrer-policy": "no-referrer",
  "x-robots-tag": "noindex"
}

const page = (title: string, body: string, status = 200) =>
  HttpServerResponse.text(
    `<!doctype html><html lang="en"><head><meta charset="utf-8">` +
      `<meta name="viewport" content="width=device-width, initial-scale=1"><title>${escapeHtml(title)}</title></head>` +
      `<body style="font-family:system-ui,sans-serif;max-width:32rem;margin:3rem auto;padding:0 1rem;line-height:1.5">` +
      `${body}</body></html>`,
    { status, contentType: "text/html; charset=utf-8", headers: pageHeaders }
  )

const invalidLinkPage = () =>
  page(
    "Invalid link",
    "<h1>This unsubscribe link is not valid</h1><p>Nothing was changed. Please use the link from the latest email, " +
      "or reply to it and we will take you off the list.</p>",
    400
  )

// The job's own words for its list; a list no job declares any more (a retired job's old link) still works.
const listDescription = (jobs: Registry, list: string): string => findJob(jobs, list)?.list ?? "these emails"

const searchParams = (request: HttpServerRequest.HttpServerRequest) =>
  new URL(request.url, "http://localhost").searchParams

// Tokens are about 100 characters; a form that carries one never needs more than this.
const MAX_FORM_BODY = ByteSize.kibibytes(16)

/** The token of an unsubscribe POST: in the query (RFC 8058 one-click), or else in a urlencoded form body. */
const tokenOf = (request: HttpServerRequest.HttpServerRequest) =>
  Effect.gen(function*() {
    const inQuery = searchParams(request).get("token")
    if (inQuery !== null && inQuery !== "") return inQuery
    if (!request.headers["content-type"]?.toLowerCase().startsWith("application/x-www-form-urlencoded")) return ""
    const body = yield* request.text.pipe(
      Effect.provideService(HttpIncomingMessage.MaxBodySize, MAX_FORM_BODY),
      Effect.orElseSucceed(() => "")
    )
    return new URLSearchParams(body).get("token") ?? ""
  })

// A Map, not an object literal: `?dryRun=toString` must not find Object.prototype's.
const DRY_RUN_VALUES: ReadonlyMap<string, boolean> = new Map([["1", true], ["true", true], ["0", false], ["false", false]])

/** How `?dryRun=` reads; `undefined` for anything that is not a clear yes or no. */
const parseDryRun = (params: URLSearchParams): boolean | undefined => {
  for (const key of params.keys()) if (key !== "dryRun") return undefined
  const values = params.getAll("dryRun")
  if (values.length === 0) return false
  if (values.length > 1) return undefined
  return DRY_RUN_VALUES.get(values[0]!)
}

/** The longest /health's summary may be; requests within it share one. */
export const HEALTH_MAX_AGE = Duration.seconds(5)

/** A summary not computed within this answers 503, as an unreachable database does. */
export const HEALTH_TIMEOUT = Duration.seconds(3)

/** How long a failed summary (the database unreachable) is kept before the next request asks again. */
const HEALTH_FAILURE_TTL = Duration.seconds(1)

/** The body of /health: each job's last run, overdue flag and delivery health. Run stats are left out (user ids). */
const healthBody = (statuses: ReadonlyArray<JobStatus>) => ({
  ok: true,
  healthy: statuses.every((s) => !s.overdue && !s.atRisk),
  jobs: statuses.map((s) => ({
    job: s.job,
    lastRunAt: s.lastRun?.startedAt ?? null,
    lastOutcome: s.lastRun?.outcome ?? null,
    lastSuccessAt: s.lastSuccessAt,
    overdue: s.overdue,
    paused: s.paused,
    overdueAfterMinutes: s.overdueAfterMinutes,
    atRisk: s.atRisk,
    delivery: s.delivery
  }))
})

/** The JSON a cron trigger answers with: the run's report. */
const reportBody = (report: RunReport) => ({
  job: report.job,
  outcome: report.outcome,
  exitCode: report.exitCode,
  stats: report.stats,
  durationMs: report.durationMs,
  runId: report.runId,
  dryRun: report.dryRun,
  asOf: report.asOf,
  error: report.error
})

/**
 * Answers with whatever `effect` produced; an unexpected failure becomes `fallback` (a one-line message, no
 * stack) and is logged. Interruptions (the client went away, the server is stopping) pass through.
 */
const guarded = <E, R>(
  effect: Effect.Effect<HttpServerResponse.HttpServerResponse, E, R>,
  fallback: (message: string) => HttpServerResponse.HttpServerResponse
) =>
  effect.pipe(
    Effect.catchCause((cause) => {
      if (Cause.hasInterruptsOnly(cause)) return Effect.interrupt
      const message = describeFailure(cause)
      return Effect.logError(`request failed: ${message}`).pipe(Effect.as(fallback(message)))
    })
  )

/** What the server needs: a mode stack's services and the learners' preferences. */
export type ServerServices = JobServices | Preferences | Suppressions

/** What every route works with, read once when the server starts. */
interface Server {
  readonly config: Settings
  readonly jobs: Registry
  /** Runs an effect on the server's mode stack, with this server's registry. */
  readonly provide: <A, E>(effect: Effect.Effect<A, E, ServerServices>) => Effect.Effect<A, E>
}

/**
 * One summary for every /health request of HEALTH_MAX_AGE: concurrent requests share the computation in
 * flight, later ones the finished summary, so a flood costs the database one query set per HEALTH_MAX_AGE
 * instead of one per request (docs/decisions.md, "Mail and pages"). A run this server started refreshes it when it
 * ends (the second effect); runs elsewhere (the cron machines) show within HEALTH_MAX_AGE.
 */
const makeHealthSummary = (server: Server) =>
  server.provide(jobStatuses).pipe(
    Effect.timeoutOrElse({
      duration: HEALTH_TIMEOUT,
      orElse: () => Effect.fail(new DatabaseError({ reason: "timeout", message: "the health summary timed out" }))
    }),
    Effect.timed,
    Effect.map(([took, statuses]) => ({ took, summary: healthBody(statuses) })),
    // A summary is as old as its first query: it is kept for what is left of HEALTH_MAX_AGE once it is done.
    // A failure is kept a second, so a database that is down is not asked again by every request.
    Effect.cachedInvalidateWithTTL((exit) =>
      Exit.isSuccess(exit) ? Duration.subtract(HEALTH_MAX_AGE, exit.value.took) : HEALTH_FAILURE_TTL
    )
  )

/**
 * Starts a run unless the job is running already (none then); the lock is released when the run's fiber ends,
 * however. Runs are forked in the server's scope rather than in the request: they outlive a client that hangs
 * up, and end with the server.
 */
const makeStarter = (server: Server, serverScope: Scope.Scope, refreshHealth: Effect.Effect<void>) => {
  const running = new Set<string>()
  return (job: Job.Any, dryRun: boolean) =>
    Effect.uninterruptible(Effect.suspend(() => {
      if (running.has(job.name)) return Effect.succeed(Option.none<Fiber.Fiber<RunReport>>())
      running.add(job.name)
      return runJob(job, { dryRun, trigger: "http" }).pipe(
        // Innermost wins: a dry run prints its emails instead of handing them to the server's mailer.
        dryRun ? Effect.provide(Mailer.layerConsole) : (run) => run,
        server.provide,
        Effect.forkIn(serverScope),
        Effect.tap((fiber) =>
          Effect.sync(() =>
            fiber.addObserver(() => {
              running.delete(job.name)
              Effect.runSync(refreshHealth)
            })
          )
        ),
        Effect.map(Option.some)
      )
    }))
}

type Starter = ReturnType<typeof makeStarter>

/** `GET`/`POST /api/cron/<job>`: the checks of the module comment, in that order, then the run's report. */
const cron = (server: Server, start: Starter, job: Job.Any) =>
  Effect.gen(function*() {
    const request = yield* HttpServerRequest.HttpServerRequest
    const secret = server.config.cronSecret
    if (Option.isNone(secret) || Redacted.value(secret.value).length < MIN_CRON_SECRET_LENGTH) {
      return json({
        error: `cron endpoint disabled: CRON_SECRET is not set or shorter than ${MIN_CRON_SECRET_LENGTH} characters`
      }, 503)
    }
    if (!bearerMatches(request.headers["authorization"], secret.value)) {
      return json({ error: "unauthorized: send Authorization: Bearer <CRON_SECRET>" }, 401, {
        "www-authenticate": "Bearer"
      })
    }
    const dryRun = parseDryRun(searchParams(request))
    if (dryRun === undefined) {
      return json({ error: "the only query parameter is dryRun, and it takes 1, true, 0 or false" }, 400)
    }
    const started = yield* start(job, dryRun)
    if (Option.isNone(started)) return json({ error: `${job.name} is already running` }, 409)
    const report = yield* Fiber.join(started.value)
    return json(reportBody(report), report.outcome === "succeeded" ? 200 : 500)
  })

/** `GET /health[?strict=1]`: the shared summary; 503 when the database cannot be read (or, strict, when unhealthy). */
const health = (summary: Effect.Effect<{ readonly summary: ReturnType<typeof healthBody> }, DatabaseError>) =>
  Effect.gen(function*() {
    const request = yield* HttpServerRequest.HttpServerRequest
    const { summary: body } = yield* summary
    // ?strict=1: 503 when any job is overdue or at risk, for monitors that read only the status code.
    const strict = ["1", "true"].includes(searchParams(request).get("strict") ?? "")
    return json(body, strict && !body.healthy ? 503 : 200)
  }).pipe(
    Effect.catchTag("DatabaseError", () => Effect.succeed(json({ ok: false, error: "the database is unreachable" }, 503)))
  )

const unsubscribeFailed = () =>
  page("Something went wrong", "<h1>Something went wrong</h1><p>Please try the link again in a few minutes.</p>", 500)

/** `GET /unsubscribe?token=…`: a confirmation form, nothing recorded. */
const unsubscribePage = (server: Server) =>
  Effect.gen(function*() {
    const request = yield* HttpServerRequest.HttpServerRequest
    const token = searchParams(request).get("token") ?? ""
    // Verifying is pure: the GET records nothing, it only refuses to offer a form that would fail.
    const claim = verifyToken(server.config.unsubscribeSecret, token)
    if (Option.isNone(claim)) return invalidLinkPage()
    return page(
      "Unsubscribe",
      `<h1>Unsubscribe?</h1><p>You will no longer get ${escapeHtml(listDescription(server.jobs, claim.value.list))}.</p>` +
        // No action: the form posts to this very URL, token included, so the page never echoes the token.
        `<form method="post">` +
        `<input type="hidden" name="List-Unsubscribe" value="One-Click">` +
        `<button type="submit" style="font-size:1rem;padding:.6rem 1.2rem">Unsubscribe</button></form>`
    )
  })

/** `POST /unsubscribe` (RFC 8058 one-click, or the confirmation form): records the suppression. */
const unsubscribe = (server: Server) =>
  Effect.gen(function*() {
    const request = yield* HttpServerRequest.HttpServerRequest
    const token = yield* tokenOf(request)
    return yield* confirm(token).pipe(
      server.provide,
      Effect.map((claim) =>
        page(
          "Unsubscribed",
          `<h1>You're unsubscribed</h1><p>You will get no more ${escapeHtml(listDescription(server.jobs, claim.list))}.</p>`
        )
      ),
      Effect.catchTag("InvalidUnsubscribeToken", () => Effect.succeed(invalidLinkPage()))
    )
  })

/** The routes (docs/http.md). They need the services of a mode stack, read once when the server starts. */
export const Routes: Layer.Layer<never, never, HttpRouter.HttpRouter | ServerServices> = HttpRouter.use(
  Effect.fn(function*(router) {
    const services = yield* Effect.context<ServerServices>()
    const jobs = yield* Jobs
    const server: Server = {
      config: yield* JobsConfig,
      jobs,
      provide: (effect) => effect.pipe(Effect.provideContext(services), Effect.provideService(Jobs, jobs))
    }
    const [healthSummary, refreshHealth] = yield* makeHealthSummary(server)
    const start = makeStarter(server, yield* Effect.scope, refreshHealth)

    for (const { job, path } of cronRoutes(jobs)) {
      const handler = guarded(cron(server, start, job), (error) => json({ error }, 500))
      yield* router.add("GET", path, handler)
      yield* router.add("POST", path, handler)
    }
    yield* router.add("GET", "/health", guarded(health(healthSummary), (error) => json({ ok: false, error }, 500)))
    yield* router.add("GET", "/unsubscribe", guarded(unsubscribePage(server), unsubscribeFailed))
    yield* router.add("POST", "/unsubscribe", guarded(unsubscribe(server), unsubscribeFailed))
  })
)

// The unsubscribe token is a credential: keep it out of trace attributes (`url.full`, `url.query`) too; so is the
// console's learner lookup (`q`: an address or a user id).
const redactTokens = Layer.succeed(UrlParams.CurrentRedactedNames, [
  "token",
  "q",
  ...UrlParams.CurrentRedactedNames.defaultValue()
])

/** The routes served on whichever HttpServer is provided (a test server on an ephemeral port, say). */
export const layerApp: Layer.Layer<never, never, HttpServer.HttpServer | ServerServices> = HttpRouter.serve(Layer.mergeAll(Routes, Webhooks.Routes, PreferenceCenter.Routes, Console.Routes)).pipe(
  Layer.provide(redactTokens)
)

/**
 * How long requests in flight may take to finish once a signal stops the server; then they are interrupted (a
 * cron run forked by one is recorded as interrupted, and its ledger rows are resumed by the next run, exactly
 * once). `serve` exits within 5 s of a signal whatever state its database is in: this window, then
 * the stack's finalizers (the pool, an embedded server's stop, at most EmbeddedPostgres.STOP_TIMEOUT_MS), with
 * `kaiwa-jobs serve`'s deadline (src/triggers/Cli.ts) behind them for a finalizer stuck on a database that does not answer.
 */
export const GRACEFUL_SHUTDOWN = Duration.millis(2_500)

/** At most this many connections are served at once; later ones wait their turn, unread. */
export const MAX_OPEN_CONNECTIONS = 128

/** Connections waiting for a turn beyond this many are closed at once. */
export const MAX_WAITING_CONNECTIONS = 8192

/**
 * A connection must have sent its request's headers this long after it was accepted, or Node answers 408 and
 * closes it: a client holding connections open without finishing a request cannot keep the server's turns for
 * longer. Node counts from acceptance, so time spent waiting for a turn counts too (a client that waited that
 * long retries). Node's default is 60 s.
 */
export const HEADERS_TIMEOUT = Duration.seconds(20)

/** What `makeNodeServer` can be given; the defaults are production's (tests pass smaller bounds). */
export interface NodeServerOptions {
  readonly maxOpen?: number
  readonly maxWaiting?: number
  readonly reclaimer?: Reclaimer
  readonly headersTimeout?: Duration.Duration
  /** How often Node looks for connections past their headers timeout (its default is every 30 s). */
  readonly checkEvery?: Duration.Duration
}

/**
 * Node's HTTP server with a bound on the connections it reads at once. Node reads up to 64 KiB from every
 * connection as soon as it reads it at all, body included, before any handler can look at the request, so a flood
 * of connections posting large bodies costs buffers in proportion even when every request is refused on its
 * headers. Every connection is accepted without reading (`pauseOnConnect`); up to MAX_OPEN_CONNECTIONS are
 * resumed at once, the others wait unread (their bytes stay in the kernel, not in this process) and are resumed in
 * arrival order as open ones close. What a closed connection read is reported to the reclaimer, which collects the
 * garbage it left (Reclaim.ts). Fly's proxy already caps the requests it sends (fly.toml `hard_limit`, below
 * this); this holds for a client that reaches the port.
 */
export const makeNodeServer = (options: NodeServerOptions = {}) => {
  const { maxOpen = MAX_OPEN_CONNECTIONS, maxWaiting = MAX_WAITING_CONNECTIONS, reclaimer = makeReclaimer() } = options
  const headersTimeout = Duration.toMillis(options.headersTimeout ?? HEADERS_TIMEOUT)
  const server = createServer({
    headersTimeout,
    // Node requires the whole request's timeout to be at least the headers'; bodies here are small (a webhook
    // event has its own read timeout, Webhooks.ts BODY_READ_TIMEOUT).
    requestTimeout: Math.max(headersTimeout, 60_000),
    connectionsCheckingInterval: Duration.toMillis(options.checkEvery ?? Duration.seconds(5))
  })
  // net.Server reads this at every connection it accepts: the socket starts paused, its handle not reading.
  // (It is net.createServer's `pauseOnConnect` option, which http.createServer does not pass on.) Pausing a
  // socket in a 'connection' listener instead does not stop the HTTP parser, which reads the handle directly.
  Object.assign(server, { pauseOnConnect: true })
  let open = 0
  const waiting = new Set<Socket>()
  const admit = (socket: Socket) => {
    open++
    socket.once("close", () => {
      open--
      reclaimer.closed(socket.bytesRead)
      for (const next of waiting) {
        if (open >= maxOpen) break
        waiting.delete(next)
        admit(next)
      }
    })
    // Node's own listener, which runs before this one, has attached the HTTP parser; resuming starts its reading.
    socket.resume()
  }
  server.on("connection", (socket: Socket) => {
    if (open < maxOpen) return admit(socket)
    if (waiting.size >= maxWaiting) return void socket.destroy()
    waiting.add(socket)
    socket.once("close", () => waiting.delete(socket))
  })
  return server
}

/**
 * HOST, the address `serve` binds: an IP address or a host name. Unset, `fallback`: every interface (undefined,
 * Node's `::` with IPv4 mapped, or 0.0.0.0 without IPv6) on Fly, whose proxy reaches the machine over its
 * private network; loopback for `serve --local`, a laptop's demo server that nobody else should reach.
 */
export const hostSetting = (fallback: string | undefined) =>
  Config.option(Config.String("HOST")).pipe(
    Effect.mapError(() => new InvalidConfig({ variable: "HOST", message: "HOST could not be read" })),
    Effect.flatMap((host) => {
      if (Option.isNone(host) || host.value === "") return Effect.succeed(fallback)
      return isIP(host.value) !== 0 || /^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*$/.test(host.value)
        ? Effect.succeed(host.value)
        : Effect.fail(new InvalidConfig({ variable: "HOST", message: "HOST must be an IP address or a host name" }))
    })
  )

/**
 * The server of `kaiwa-jobs serve` on JobsConfig.port (PORT, default 8080) and HOST (default `defaultHost`:
 * every interface unless given); provide a mode stack.
 */
export const layerServerOn = (
  defaultHost: string | undefined
): Layer.Layer<never, HttpServerError.ServeError | InvalidConfig, ServerServices> =>
  layerApp.pipe(
    Layer.provide(Layer.unwrap(Effect.map(
      Effect.zip(JobsConfig, hostSetting(defaultHost)),
      ([config, host]) =>
        NodeHttpServer.layer(() => makeNodeServer(), { port: config.port, host, gracefulShutdownTimeout: GRACEFUL_SHUTDOWN })
    )))
  )

/** The server on every interface unless HOST says otherwise (Fly). */
export const layerServer = layerServerOn(undefined)

/** Serves until interrupted: `Http.serve.pipe(Effect.provide(Layers.live))`. */
export const serve: Effect.Effect<never, HttpServerError.ServeError | InvalidConfig, ServerServices> = Layer.launch(layerServer)
