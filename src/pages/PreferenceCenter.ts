/**
 * The learner's preference center: `/preferences?token=…`, linked from every email's
 * footer with a signed per-user token. It lists every list with its current state and lets the learner switch
 * each one, leave everything at once, and come back. It writes through `Preferences` (the app's `user_settings`
 * where the app has the list's column, else the library's suppressions) and never lifts a bounce or a
 * complaint. Plain forms, no JavaScript: the GET only shows (a mail scanner that follows the link changes
 * nothing), each POST changes one thing and answers 303 back to the page. A bad token is a 400 with nothing
 * changed.
 */
import { ByteSize, Cause, Effect, Option } from "effect"
import { HttpIncomingMessage, HttpRouter, HttpServerRequest, type HttpServerResponse } from "effect/http"
import { JobsConfig } from "../config/Config.ts"
import { escapeHtml } from "../emails/html.ts"
import type * as Job from "../job/Job.ts"
import { Jobs } from "../jobs/index.ts"
import { page, seeOther } from "./Pages.ts"
import { type ListState, Preferences } from "../ledger/Preferences.ts"
import { verifyPreferencesToken } from "../mail/Unsubscribe.ts"

/** The page's path. */
export const PATH = "/preferences"

// A form carries a list name and a yes or no: a few hundred bytes at most.
const MAX_FORM_BODY = ByteSize.kibibytes(4)

const BLOCKED: Readonly<Record<string, string>> = {
  hard_bounce: "Emails to your address bounced, so we stopped sending any. Reply to an email or contact us once your address works again.",
  complaint: "Your address marked one of our emails as spam, so we stopped sending any. Contact us to start again.",
  invalid_address: "Our email provider said your address cannot receive email, so we stopped sending any."
}

const invalid = () =>
  page(
    "Invalid link",
    "<h1>This link is not valid</h1><p>Nothing was changed. Please use the link at the bottom of our latest email.</p>",
    400
  )

const failed = () =>
  page("Something went wrong", "<h1>Something went wrong</h1><p>Nothing was changed. Please try again in a few minutes.</p>", 500)

const stateLine = (s: ListState) =>
  s.blocked !== null
    ? `<p class="state off">Paused</p>`
    : s.subscribed
    ? `<p class="state on">On</p>`
    : `<p class="state off">Off</p>`

// One list: its name, what it is, its state, and the one button that flips it.
const listRow = (job: Job.Any, s: ListState) =>
  // The title says what the emails are; the job's description is written for operators, so it is not shown.
  `<div class="list"><div><h2 style="margin:0">${escapeHtml(job.title)}</h2>${stateLine(s)}` +
  (s.blocked === null ? "" : `<p class="note">${escapeHtml(BLOCKED[s.blocked] ?? "We stopped sending to your address.")}</p>`) +
  `</div>` +
  (s.blocked !== null
    ? ""
    : `<form method="post"><input type="hidden" name="list" value="${escapeHtml(job.name)}">` +
      `<input type="hidden" name="subscribed" value="${s.subscribed ? "0" : "1"}">` +
      `<button type="submit"${s.subscribed ? ` class="secondary"` : ""}>${s.subscribed ? "Turn off" : "Turn on"}</button></form>`) +
  `</div>`

const everything = (subscribed: boolean, label: string, secondary: boolean) =>
  `<form method="post" style="display:inline-block;margin:.5rem .5rem 0 0"><input type="hidden" name="list" value="*">` +
  `<input type="hidden" name="subscribed" value="${subscribed ? "1" : "0"}">` +
  `<button type="submit"${secondary ? ` class="secondary"` : ""}>${label}</button></form>`

/** The page for a learner's states. */
export const render = (jobs: ReadonlyArray<Job.Any>, states: ReadonlyArray<ListState>, saved: boolean) => {
  const anyOn = states.some((s) => s.subscribed && s.blocked === null)
  const anyOff = states.some((s) => !s.subscribed && s.blocked === null)
  return page(
    "Your email preferences",
    `<h1>Your email preferences</h1>` +
      (saved ? `<p class="notice" role="status">Saved. Your choice applies from the next email on.</p>` : "") +
      `<p>Choose which emails Kaiwa sends you. Account and security emails are not affected.</p>` +
      jobs.map((job, i) => listRow(job, states[i]!)).join("") +
      `<div style="margin-top:1.25rem">` +
      (anyOn ? everything(false, "Turn off all of these emails", true) : "") +
      (anyOff ? everything(true, "Turn all of them back on", false) : "") +
      `</div>`
  )
}

const tokenIn = (request: HttpServerRequest.HttpServerRequest) =>
  new URL(request.url, "http://localhost").searchParams.get("token") ?? ""

/** `GET` and `POST /preferences`, as their own router layer (Http.ts merges it into the app). */
export const Routes = HttpRouter.use(Effect.fn(function*(router) {
  const config = yield* JobsConfig
  const jobs = yield* Jobs
  const preferences = yield* Preferences
  const lists = jobs.map((j) => j.name)

  const guarded = (effect: Effect.Effect<HttpServerResponse.HttpServerResponse, unknown, HttpServerRequest.HttpServerRequest>) =>
    effect.pipe(Effect.catchCause((cause) =>
      Cause.hasInterruptsOnly(cause)
        ? Effect.interrupt
        : Effect.logError(`preference center: ${Cause.pretty(cause).split("\n")[0]}`).pipe(Effect.as(failed()))
    ))

  yield* router.add("GET", PATH, guarded(Effect.gen(function*() {
    const request = yield* HttpServerRequest.HttpServerRequest
    const claim = verifyPreferencesToken(config.unsubscribeSecret, tokenIn(request))
    if (Option.isNone(claim)) return invalid()
    const states = yield* preferences.stateOf(claim.value.userId, lists)
    return render(jobs, states, new URL(request.url, "http://localhost").searchParams.get("saved") === "1")
  })))

  yield* router.add("POST", PATH, guarded(Effect.gen(function*() {
    const request = yield* HttpServerRequest.HttpServerRequest
    const token = tokenIn(request)
    const claim = verifyPreferencesToken(config.unsubscribeSecret, token)
    if (Option.isNone(claim)) return invalid()
    const body = yield* request.text.pipe(
      Effect.provideService(HttpIncomingMessage.MaxBodySize, MAX_FORM_BODY),
      Effect.orElseSucceed(() => "")
    )
    const form = new URLSearchParams(body)
    const list = form.get("list") ?? ""
    const subscribed = form.get("subscribed")
    if ((list !== "*" && !lists.includes(list)) || (subscribed !== "0" && subscribed !== "1")) {
      return page("Not understood", "<h1>That did not work</h1><p>Nothing was changed. Please go back and try again.</p>", 400)
    }
    yield* preferences.change({ userId: claim.value.userId, email: null, list, subscribed: subscribed === "1", source: "preferences" })
    return seeOther(`${PATH}?token=${encodeURIComponent(token)}&saved=1`)
  })))
}))
