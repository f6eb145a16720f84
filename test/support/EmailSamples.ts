/**
 * Every email the library can send, as `kaiwa-jobs preview` renders it: each registered job's samples (plus the
 * README's example job) through the job's real render path, with development settings and a founder name.
 */
import { ConfigProvider, Effect } from "effect"
import { load, type Settings } from "../../src/config/Config.ts"
import type { Preview } from "../../src/job/Job.ts"
import { registry } from "../../src/jobs/index.ts"
import { winBack } from "../../src/jobs/WinBack.example.ts"

/** The settings samples render with: development defaults, and FOUNDER_NAME set as live mode requires it. */
export const sampleSettings = (env: Record<string, string> = {}): Effect.Effect<Settings, unknown> =>
  load("lenient").pipe(
    Effect.provideService(ConfigProvider.ConfigProvider, ConfigProvider.fromEnv({ env: { FOUNDER_NAME: "Yuki", ...env } }))
  )

/** Every sample of every job, with its job's name (rendering is synchronous, so test files can list them). */
export const allSamples = (env: Record<string, string> = {}): ReadonlyArray<Preview & { readonly job: string }> =>
  Effect.runSync(Effect.gen(function*() {
    const config = yield* sampleSettings(env)
    const out: Array<Preview & { readonly job: string }> = []
    for (const job of [...registry, winBack]) {
      for (const p of yield* job.preview(config)) out.push({ ...p, job: job.name })
    }
    return out
  }))
