/**
 * The jobs that ship. One line per job: the CLI (`list`, `run`, `preview`, `status`), the HTTP triggers
 * (`/api/cron/<name>` and each job's aliases), `/health`, the unsubscribe lists and their page text, the demo,
 * the dry run, the deploy script's machines and the Fly mains are all read from here.
 */
import { Context, Effect } from "effect"
import { JobSettings, load, type Settings, type Strictness } from "../config/Config.ts"
import type { InvalidConfig } from "../config/Setting.ts"
import type * as Job from "../job/Job.ts"
import { founderEmails } from "./FounderEmails.ts"
import { practiceReminders } from "./PracticeReminders.ts"
import { weeklyProgress } from "./WeeklyProgress.ts"

export { founderEmails } from "./FounderEmails.ts"
export { practiceReminders } from "./PracticeReminders.ts"
export { weeklyProgress } from "./WeeklyProgress.ts"

/** Every job that ships, in the order they run. */
export const registry = [practiceReminders, founderEmails, weeklyProgress] as const

/** The name of a job that ships. */
export type JobName = (typeof registry)[number]["name"]

/** A list of jobs: the shipped registry, or another one (a test's, an app's own build). */
export type Registry = ReadonlyArray<Job.Any>

/**
 * The jobs the CLI, the HTTP server and `status` serve: the shipped registry unless a program provides its own
 * (`Effect.provideService(Jobs, [...registry, myJob])`), which is how a test runs a job declared in the test.
 */
export const Jobs = Context.Reference<Registry>("kaiwa-jobs/Jobs", { defaultValue: () => registry })

/** Looks a job up by name or alias. */
export const findJob = (jobs: Registry, name: string): Job.Any | undefined =>
  jobs.find((j) => j.name === name) ?? jobs.find((j) => j.aliases.includes(name))

/**
 * The shared settings, with every job's own (`Jobs`) validated alongside, so one message lists every problem:
 * what `kaiwa-jobs doctor` and `serve` check (docs/configuration.md).
 */
export const loadSettings = (strictness: Strictness): Effect.Effect<Settings, InvalidConfig> =>
  Effect.flatMap(Jobs, (jobs) => load(strictness).pipe(Effect.provideService(JobSettings, jobs.map((j) => j.settings))))
