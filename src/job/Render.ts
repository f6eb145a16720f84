/**
 * The one render path of a job's email, shared by live runs, dry runs, previews and test sends: the job's
 * template on its data, then the library's part (the recipient, the unsubscribe link and RFC 8058 headers signed
 * for the job's own list, the `job` tag) and the last check that no placeholder or `undefined` ever leaves.
 */
import { Effect, Schema } from "effect"
import type { Settings } from "../config/Config.ts"
import { type Recipient, RenderError } from "../delivery/Delivery.ts"
import { findProblems } from "../emails/problems.ts"
import { type LinkMode, linksFor } from "../mail/Links.ts"
import type { OutgoingEmail } from "../mail/Mailer.ts"
import { unsubscribeHeaders } from "../mail/Unsubscribe.ts"
import type { Definition, Draft, Preview } from "./Job.ts"

/** What rendering needs of a job's declaration. */
export type Renderable<D, C> = Pick<Definition<string, string, D, C>, "name" | "data" | "render" | "group" | "samples">

/** One rendering: the settings, the job's own settings, the recipient and their data, and how links are made. */
interface Rendering<D, C> {
  readonly config: Settings
  readonly settings: C
  readonly recipient: Recipient
  readonly data: D
  readonly mode: LinkMode
}

const SAMPLE_RECIPIENT: Recipient = { user_id: "sample-user", email: "aiko@example.com", dedupe_key: "sample", data: null }

/** The email for one recipient, or why it cannot be sent. */
export const renderEmail = <D, C>(job: Renderable<D, C>, r: Rendering<D, C>): Effect.Effect<OutgoingEmail, RenderError> => {
  const links = linksFor(r.config, { userId: r.recipient.user_id, list: job.name }, r.mode)
  const url = links.unsubscribeUrl
  return Effect.try({
    try: () =>
      job.render(r.data, { config: r.config, settings: r.settings, recipient: r.recipient, unsubscribeUrl: url, preferencesUrl: links.preferencesUrl, links }),
    // A template that throws is a bug in that template; it costs one recipient, never the run.
    catch: (cause) =>
      new RenderError(`the template threw for user ${r.recipient.user_id}: ${cause instanceof Error ? cause.message : String(cause)}`)
  }).pipe(Effect.flatMap((draft) => checked(job.name, r, draft, url)))
}

/** The draft made an email, unless it is not fit to send (an unfilled placeholder, a stringified undefined, a control character). */
const checked = <D, C>(name: string, r: Rendering<D, C>, draft: Draft, unsubscribeUrl: string): Effect.Effect<OutgoingEmail, RenderError> => {
  const problems = findProblems(draft)
  if (problems.length > 0) {
    return Effect.fail(new RenderError(`the email for user ${r.recipient.user_id} is not fit to send (${problems.join("; ")})`))
  }
  return Effect.succeed({
    from: draft.from ?? r.config.mailFrom,
    to: r.recipient.email,
    ...(draft.replyTo !== undefined ? { replyTo: draft.replyTo } : {}),
    subject: draft.subject,
    html: draft.html,
    text: draft.text,
    headers: unsubscribeHeaders(unsubscribeUrl),
    tags: [{ name: "job", value: name }, ...(draft.tags ?? [])]
  })
}

/** Renders a ledger row: its data decoded with the job's schema, then its email and the stats group it counts in. */
export const prepare = <D, C>(job: Renderable<D, C>, config: Settings, settings: C, mode: LinkMode) => {
  const decode = Schema.decodeUnknownEffect(job.data)
  return (recipient: Recipient) =>
    decode(recipient.data).pipe(
      Effect.mapError(() => new RenderError(`ledger data of user ${recipient.user_id} does not decode`)),
      Effect.flatMap((data) =>
        Effect.map(renderEmail(job, { config, settings, recipient, data, mode }), (email) => ({ email, group: job.group(data, recipient) }))
      )
    )
}

/** Every sample the job declares, rendered for the sample learner. */
export const previews = <D, C>(job: Renderable<D, C>, config: Settings, settings: C): Effect.Effect<ReadonlyArray<Preview>, RenderError> =>
  Effect.forEach(job.samples, (sample) =>
    Effect.map(
      // Previews are for the sample learner, who is nobody: a real signature shows what the link will look like.
      renderEmail(job, { config, settings, recipient: { ...SAMPLE_RECIPIENT, dedupe_key: sample.name, data: sample.data }, data: sample.data, mode: "live" }),
      (email): Preview => ({ name: sample.name, email })
    ))
