/**
 * Start-up (issue 13): wall time and peak RSS of `kaiwa-jobs list`, `kaiwa-jobs --help` and a built main with
 * nothing due (`node dist/send-reminders.js`, live mode, against an embedded PostgreSQL that is migrated and has no
 * users), for the current build against the baseline build of BENCH_STARTUP_BASELINE (default 050cca3, main before
 * issue 13), in the same run, alternating command by command.
 *
 * - The baseline is that commit's tree (`git archive`) in a temporary directory, its node_modules a symlink to
 *   ours, built with its own build.mjs: the same dependencies, only the build and the source differ.
 * - The current build is measured three ways: the first run after the build ("shipped": no NODE_COMPILE_CACHE, so
 *   the entries read the compile cache `npm run build` ships in dist/compile-cache, put back as the build left it
 *   before every run, and an empty TMPDIR), with an empty cache (a fresh NODE_COMPILE_CACHE directory for every run,
 *   so each run also pays for writing it: what a Node other than the build's gets) and a warm one (the directory a
 *   previous run filled: a developer's or CI's second `kaiwa-jobs list`). The baseline never enables the cache.
 * - The main is also measured as a Fly Machine runs it (FLY_MACHINE_ID set: the entries read the shipped cache, put
 *   back before every run, and write none), against the same baseline runs (every main gets LOG_FORMAT=json, so
 *   FLY_MACHINE_ID changes nothing else). The shipped cache holds what `--help` and `list` load; the main shares
 *   only part of it.
 * - Every process runs with plain `node` and a fixed environment; the main also with the Dockerfile's NODE_OPTIONS
 *   (heap limits), as on Fly, while list and --help run without, as on a laptop or in CI.
 *   Peak RSS is `process.resourceUsage().maxRSS` read at exit by a one-line `--require` preload, given to both builds.
 * - Targets: list and --help at most 25% of the baseline's median wall time, the main at most 50%. Needs
 *   `npm run build` first (bench/run.ts does it).
 */
import { spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { Redacted } from "effect"
import { productionNodeOptions } from "./processes.ts"
import { buildBaseline, median, withDatabase, writeResult } from "./support.ts"

const RUNS = Number(process.env["BENCH_STARTUP_RUNS"] ?? 11)
const BASELINE = process.env["BENCH_STARTUP_BASELINE"] ?? "050cca3"
const TARGETS = { list: 0.25, help: 0.25, main: 0.5 } as const

type Command = keyof typeof TARGETS
type Variant = "baseline" | "shipped" | "cold" | "warm" | "fly"

// list and --help as a person or the deploy script runs them (no NODE_OPTIONS); the main as a Fly machine runs it,
// with the image's heap limits.
const commands: Record<Command, { readonly script: string; readonly args: ReadonlyArray<string>; readonly fly: boolean }> = {
  list: { script: "dist/cli.js", args: ["list"], fly: false },
  help: { script: "dist/cli.js", args: ["--help"], fly: false },
  main: { script: "dist/send-reminders.js", args: [], fly: true }
}

export const startup = async () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "kaiwa-startup-"))
  try {
    const baselineDir = buildBaseline(tmp, BASELINE)
    const preload = path.join(tmp, "rss.cjs")
    fs.writeFileSync(
      preload,
      `process.on("exit", () => require("node:fs").writeFileSync(process.env.KAIWA_BENCH_RSS_FILE, String(process.resourceUsage().maxRSS)))\n`
    )
    const rssFile = path.join(tmp, "rss")
    const warmCache = path.join(tmp, "cache-warm")
    let coldCaches = 0
    // The shipped cache as `npm run build` left it, put back before every run that reads it: in a writable dist/
    // a run would add what it compiled (the main's chunks), and the next run would not be a first run any more.
    const shippedCache = path.resolve("dist", "compile-cache")
    if (!fs.existsSync(shippedCache)) throw new Error("dist/compile-cache is missing: run `npm run build` first")
    const pristine = path.join(tmp, "shipped-cache")
    fs.cpSync(shippedCache, pristine, { recursive: true })
    const restoreShipped = () => {
      fs.rmSync(shippedCache, { recursive: true, force: true })
      fs.cpSync(pristine, shippedCache, { recursive: true })
    }
    let tmpdirs = 0

    return await withDatabase("startup", async (url) => {
      const live = {
        DATABASE_URL: Redacted.value(url),
        RESEND_API_KEY: "re_bench_not_used",
        MAIL_FROM: "Kaiwa <hello@example.com>",
        APP_URL: "https://kaiwa.example",
        UNSUBSCRIBE_SECRET: "bench-unsubscribe-secret-0123456789",
        LOG_FORMAT: "json"
      }
      /** One run: wall time (ms) and peak RSS (MB). */
      const once = (command: Command, variant: Variant) => {
        const { args, fly, script } = commands[command]
        const cache = variant === "warm"
          ? { NODE_COMPILE_CACHE: warmCache }
          : variant === "cold"
          ? { NODE_COMPILE_CACHE: path.join(tmp, `cache-cold-${coldCaches++}`) }
          : variant === "fly"
          ? { FLY_MACHINE_ID: "e784079b449483" }
          : variant === "shipped"
          ? { TMPDIR: fs.mkdtempSync(path.join(tmp, `tmpdir-${tmpdirs++}-`)) }
          : {}
        if (variant === "shipped" || variant === "fly") restoreShipped()
        const env = {
          PATH: process.env["PATH"] ?? "",
          HOME: tmp,
          NODE_ENV: "production",
          KAIWA_BENCH_RSS_FILE: rssFile,
          ...cache,
          ...(fly ? { NODE_OPTIONS: productionNodeOptions(), ...live } : {})
        }
        fs.rmSync(rssFile, { force: true })
        const cwd = variant === "baseline" ? baselineDir : process.cwd()
        const t0 = performance.now()
        const r = spawnSync(process.execPath, ["--require", preload, script, ...args], { cwd, env, encoding: "utf8" })
        const ms = performance.now() - t0
        if (r.status !== 0) throw new Error(`${variant} ${script} ${args.join(" ")} exited ${r.status}: ${r.stderr}`)
        return { ms, rssMb: Number(fs.readFileSync(rssFile, "utf8")) / 1024 }
      }

      // The main also as a Fly Machine runs it: FLY_MACHINE_ID set, so no compile cache at all (the entries skip it
      // there: the Machine's disk is reset after every run).
      const variantsOf = (c: Command): ReadonlyArray<Variant> =>
        commands[c].fly ? ["baseline", "shipped", "cold", "warm", "fly"] : ["baseline", "shipped", "cold", "warm"]
      const samples = new Map<string, Array<{ ms: number; rssMb: number }>>()
      // One untimed run of each first: fills the OS file cache for every build and the warm compile cache.
      for (const c of Object.keys(commands) as Array<Command>) for (const v of variantsOf(c)) once(c, v)
      for (let i = 0; i < RUNS; i++) {
        for (const c of Object.keys(commands) as Array<Command>) {
          for (const v of variantsOf(c)) {
            const key = `${c}/${v}`
            if (!samples.has(key)) samples.set(key, [])
            samples.get(key)!.push(once(c, v))
          }
        }
      }

      const summary = (c: Command, v: Variant) => {
        const xs = samples.get(`${c}/${v}`)!
        return {
          medianMs: Math.round(median(xs.map((x) => x.ms))),
          peakRssMb: Math.round(Math.max(...xs.map((x) => x.rssMb))),
          medianRssMb: Math.round(median(xs.map((x) => x.rssMb))),
          ms: xs.map((x) => Math.round(x.ms))
        }
      }
      const rows = (Object.keys(commands) as Array<Command>).map((c) => {
        const baseline = summary(c, "baseline")
        const shipped = summary(c, "shipped")
        const cold = summary(c, "cold")
        const warm = summary(c, "warm")
        const ratio = (x: { medianMs: number }) => Number((x.medianMs / baseline.medianMs).toFixed(2))
        const fly = commands[c].fly ? summary(c, "fly") : undefined
        return {
          command: c,
          target: TARGETS[c],
          baseline,
          shipped: { ...shipped, ofBaseline: ratio(shipped) },
          cold: { ...cold, ofBaseline: ratio(cold) },
          warm: { ...warm, ofBaseline: ratio(warm) },
          fly: fly === undefined ? undefined : { ...fly, ofBaseline: ratio(fly) },
          metShipped: ratio(shipped) <= TARGETS[c],
          metCold: ratio(cold) <= TARGETS[c],
          metWarm: ratio(warm) <= TARGETS[c],
          metFly: fly === undefined ? undefined : ratio(fly) <= TARGETS[c]
        }
      })
      const result = { runs: RUNS, baselineCommit: BASELINE, mainNodeOptions: productionNodeOptions(), rows }
      await writeResult("startup", result)
      console.log(`startup (${RUNS} runs each, medians; peak RSS over the runs):`)
      for (const r of rows) {
        console.log(
          `  ${r.command.padEnd(5)} baseline ${r.baseline.medianMs} ms ${r.baseline.peakRssMb} MB | ` +
            `first run after the build (shipped cache) ${r.shipped.medianMs} ms ${r.shipped.peakRssMb} MB (${Math.round(r.shipped.ofBaseline * 100)}%) | ` +
            `empty cache ${r.cold.medianMs} ms ${r.cold.peakRssMb} MB (${Math.round(r.cold.ofBaseline * 100)}%) | ` +
            `warm cache ${r.warm.medianMs} ms ${r.warm.peakRssMb} MB (${Math.round(r.warm.ofBaseline * 100)}%) | ` +
            (r.fly ? `as on Fly (shipped cache) ${r.fly.medianMs} ms ${r.fly.peakRssMb} MB (${Math.round(r.fly.ofBaseline * 100)}%) | ` : "") +
            `target <= ${r.target * 100}%`
        )
      }
      return result
    })
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true })
  }
}

if (import.meta.url === `file://${process.argv[1]}`) await startup()
