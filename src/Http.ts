/**
 * The HTTP side of kaiwa-jobs (`kaiwa-jobs serve`): cron triggers that call the runner (never a job body),
 * `/health`, and the unsubscribe pages. The cron endpoints are disabled (503) unless CRON_SECRET is set and at
 * least 32 characters long, so an unset secret can never be matched by `Bearer undefined`; the token is compared
 * in constant time (SHA-256 of both sides, then timingSafeEqual, so not even its length leaks). Responses never
 * carry a stack trace or a secret, and request logs never carry the query string (it holds unsubscribe tokens).
 */
import { createHash, timingSafeEqual } from "node:crypto"
import { createServer } from "node:http"
import { NodeHttpServer } from "@effect/platform-node"
import { Cause, Effect, Layer, Option, Redacted } from "effect"
import { HttpRouter, HttpServerRequest, HttpServerResponse } from "effect/http"
import { JobsConfig } from "./Config.ts"
import type { Database } from "./Database.ts"
import { escapeHtml } from "./emails/index.ts"
import { describeFailure, founderEmails, type Job, practiceReminders, runJob } from "./Job.ts"
import { consoleMailer, Mailer } from "./Mailer.ts"
import { jobStatuses } from "./Status.ts"
import type { Telemetry } from "./Telemetry.ts"
import { confirm } from "./Unsubscribe.ts"

/** CRON_SECRET shorter than this disables the cron endpoints. */
export const MIN_CRON_SECRET = 32

const digest = (s: string) => createHash("sha256").update(s, "utf8").digest()

/** Whether an Authorization header carries exactly `Bearer <secret>`, compared in constant time. */
export const bearerMatches = (header: string | undefined, secret: Redacted.Redacted<string>): boolean =>
  timingSafeEqual(digest(header ?? ""), digest(`Bearer ${Redacted.value(secret)}`))

const json = (body: unknown, status = 200) =>
  HttpServerResponse.jsonUnsafe(body, { status, headers: { "cache-control": "no-store" } })

const page = (title: string, body: string, status = 200) =>
  HttpServerResponse.text(
    `<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">` +
      `<title>${escapeHtml(title)}</title></head><body style="font-family:system-ui,sans-serif;max-width:32rem;margin:3rem auto;padding:0 1rem">` +
      `${body}</body></html>`,
    { status, contentType: "text/html; charset=utf-8", headers: { "cache-control": "no-store" } }
  )

const queryParam = (request: HttpServerRequest.HttpServerRequest, name: string) =>
  new URL(request.url, "http://localhost").searchParams.get(name)

/** The routes; they need the services of a mode stack (read when the server starts). */
export const Routes = HttpRouter.use(Effect.fn(function*(router) {
  const services = yield* Effect.context<Database | Mailer | JobsConfig | Telemetry>()
  const config = yield* JobsConfig
  const running = new Set<string>()

  // Every handler answers with JSON or HTML it chose: an unexpected failure becomes a plain 500 with a one-line
  // message (no stack), and every request is logged by method, path (no query string) and status.
  const guarded = <E>(effect: Effect.Effect<HttpServerResponse.HttpServerResponse, E, HttpServerRequest.HttpServerRequest>) =>
    Effect.gen(function*() {
      const request = yield* HttpServerRequest.HttpServerRequest
      const response = yield* effect.pipe(
        Effect.catchCause((cause) =>
          Cause.hasInterruptsOnly(cause)
            ? Effect.failCause(cause)
            : Effect.logError(`request failed: ${describeFailure(cause)}`).pipe(
              Effect.as(json({ error: "internal error: the run could not complete; see the server logs" }, 500))
            )
        )
      )
      yield* Effect.logInfo(`${request.method} ${new URL(request.url, "http://localhost").pathname} ${response.status}`)
      return response
    })

  const cron = (job: Job<any>) =>
    guarded(Effect.gen(function*() {
      const request = yield* HttpServerRequest.HttpServerRequest
      const secret = config.cronSecret
      if (Option.isNone(secret) || Redacted.value(secret.value).length < MIN_CRON_SECRET) {
        return json({ error: `cron endpoint disabled: CRON_SECRET is not set or shorter than ${MIN_CRON_SECRET} characters` }, 503)
      }
      if (!bearerMatches(request.headers["authorization"], secret.value)) return json({ error: "unauthorized" }, 401)
      const dryRunParam = queryParam(request, "dryRun")
      const dryRun = dryRunParam === "1" || dryRunParam === "true"
      if (running.has(job.name)) return json({ error: `${job.name} is already running` }, 409)
      running.add(job.name)
      const report = yield* runJob(job, { dryRun, trigger: "http" }).pipe(
        // Innermost wins: a dry run prints instead of sending, whatever mailer the server was started with.
        dryRun ? Effect.provideService(Mailer, consoleMailer) : (e) => e,
        Effect.provideContext(services),
        Effect.ensuring(Effect.sync(() => running.delete(job.name)))
      )
      return json(report, report.exitCode === 0 ? 200 : 500)
    }))

  for (const [path, job] of [["/api/cron/send-reminders", practiceReminders], ["/api/cron/founder-emails", founderEmails]] as const) {
    yield* router.add("GET", path, cron(job))
    yield* router.add("POST", path, cron(job))
  }

  yield* router.add("GET", "/health", guarded(
    jobStatuses.pipe(
      Effect.provideContext(services),
      Effect.map((statuses) =>
        json({
          ok: true,
          jobs: statuses.map((s) => ({
            job: s.job,
            lastRunAt: s.lastRun?.startedAt ?? null,
            lastOutcome: s.lastRun?.outcome ?? null,
            lastSuccessAt: s.lastSuccessAt,
            overdue: s.overdue
          }))
        })
      ),
      Effect.catchTag("DatabaseError", () => Effect.succeed(json({ ok: false, error: "the database is unreachable" }, 503)))
    )
  ))

  // GET only shows a confirmation form: mail scanners open links, and an unsubscribe must be a person's act
  // (or the mail provider's RFC 8058 one-click POST).
  yield* router.add("GET", "/unsubscribe", guarded(Effect.gen(function*() {
    const request = yield* HttpServerRequest.HttpServerRequest
    const token = queryParam(request, "token") ?? ""
    if (token === "") return page("Invalid link", "<h1>This unsubscribe link is not valid</h1>", 400)
    return page(
      "Unsubscribe",
      `<h1>Unsubscribe from these Kaiwa emails?</h1>` +
        `<form method="post" action="/unsubscribe?token=${encodeURIComponent(token)}">` +
        `<input type="hidden" name="List-Unsubscribe" value="One-Click">` +
        `<button type="submit" style="font-size:1rem;padding:.6rem 1.2rem">Unsubscribe</button></form>`
    )
  })))

  yield* router.add("POST", "/unsubscribe", guarded(Effect.gen(function*() {
    const request = yield* HttpServerRequest.HttpServerRequest
    const body = yield* request.text.pipe(Effect.orElseSucceed(() => ""))
    const token = queryParam(request, "token") ?? new URLSearchParams(body).get("token") ?? ""
    return yield* confirm(token).pipe(
      Effect.provideContext(services),
      Effect.map((claim) =>
        page(
          "Unsubscribed",
          `<h1>You're unsubscribed</h1><p>You will get no more ${
            claim.list === "practice-reminders" ? "practice reminders" : "emails from the founder"
          } from Kaiwa.</p>`
        )
      ),
      Effect.catchTag("InvalidUnsubscribeToken", () =>
        Effect.succeed(page("Invalid link", "<h1>This unsubscribe link is not valid</h1><p>Nothing was changed.</p>", 400)))
    )
  })))
}))

/** The server on JobsConfig.port; needs a mode stack. */
export const layerServer = HttpRouter.serve(Routes, { disableLogger: true }).pipe(
  Layer.provide(Layer.unwrap(Effect.map(JobsConfig, (config) => NodeHttpServer.layer(createServer, { port: config.port }))))
)
