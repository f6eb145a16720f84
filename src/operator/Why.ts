/**
 * `kaiwa-jobs why <email-or-user-id>`: the answer to "why didn't I get my reminder?". For each job, due
 * or not at an instant and the rule that decided, computed by the run's own SQL (`Job.decide`); then the
 * learner's timeline: every email the library planned, sent, skipped or failed, the provider's later events,
 * suppressions and preference changes, newest first.
 */
import { Effect, Schema } from "effect"
import { AppTables } from "../database/App.ts"
import type { Decision, TimelineEntry } from "../database/Database.ts"
import { Ledger } from "../ledger/Ledger.ts"
import { Preferences } from "../ledger/Preferences.ts"
import { EVERY_LIST, listLabel, Suppressions } from "../ledger/Suppressions.ts"
import { Jobs } from "../jobs/index.ts"

/** No learner has that id or address. */
export class UnknownLearner extends Schema.TaggedError<UnknownLearner>()("UnknownLearner", {
  message: Schema.String
}) {}

/** The whole answer, as `--json` prints it. */
export interface WhyReport {
  readonly user: { readonly userId: string; readonly email: string }
  readonly asOf: string
  readonly jobs: ReadonlyArray<{ readonly job: string } & Decision>
  readonly timeline: ReadonlyArray<{ readonly at: string; readonly kind: string; readonly job: string | null; readonly detail: string }>
}

/** Each job's decision for a learner at `asOf`, and their timeline. */
export const why = Effect.fn("Why.why")(function*(who: string, asOf: Date) {
  const app = yield* AppTables
  const user = yield* app.findUser(who.trim())
  if (user === undefined) return yield* new UnknownLearner({ message: `no learner has the id or address "${who}"` })
  const jobs = yield* Jobs
  const decisions = yield* Effect.forEach(jobs, (job) => Effect.map(job.decide(asOf, [user]), ([d]) => ({ job: job.name, ...d! })))
  const timeline = yield* timelineOf(user)
  return {
    user,
    asOf: asOf.toISOString(),
    jobs: decisions,
    timeline: timeline.map((t: TimelineEntry) => ({ at: t.at.toISOString(), kind: t.kind, job: t.job, detail: t.detail }))
  } satisfies WhyReport
})

/** Everything the library did and learned about a learner, from each table's owner, newest first. */
const timelineOf = (user: { readonly userId: string; readonly email: string }) =>
  Effect.gen(function*() {
    const emails = yield* Effect.flatMap(Ledger, (l) => l.timelineOf(user.userId))
    const suppressions = yield* Effect.flatMap(Suppressions, (s) => s.of(user))
    const changes = yield* Effect.flatMap(Preferences, (p) => p.changesOf(user.userId))
    const entries: Array<TimelineEntry> = [
      ...emails,
      ...suppressions.map((s): TimelineEntry => ({
        at: s.createdAt,
        kind: "suppressed",
        job: s.list === EVERY_LIST ? null : s.list,
        detail: `${s.reason} (${listLabel(s.list)})`
      })),
      ...changes.map((c): TimelineEntry => ({
        at: c.at,
        kind: "preference",
        job: c.list === EVERY_LIST ? null : c.list,
        detail: `${c.subscribed ? "subscribed" : "unsubscribed"} via ${c.source} (kept in ${c.home === "app" ? "the app's user_settings" : "kaiwa-jobs"})`
      }))
    ]
    return entries.sort((a, b) => b.at.getTime() - a.at.getTime())
  })

/** The answer as text, for a person. */
export const format = (report: WhyReport): string => {
  const width = Math.max(...report.jobs.map((j) => j.job.length), 4)
  return [
    `Learner ${report.user.userId} <${report.user.email}> as of ${report.asOf}`,
    ...report.jobs.map((j) =>
      `  ${j.job.padEnd(width)}  ${j.due ? "DUE    " : "not due"}  ${j.reason}${j.detail ? `: ${j.detail}` : ""}`
    ),
    report.timeline.length === 0 ? "Timeline: nothing yet" : "Timeline (newest first):",
    ...report.timeline.map((t) => `  ${t.at}  ${t.kind.padEnd(11)} ${(t.job ?? "").padEnd(width)}  ${t.detail}`)
  ].join("\n")
}
