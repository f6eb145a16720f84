// `npm run build`: bundles the CLI and the two Fly mains into dist/ as plain ESM JavaScript. Dependencies stay
// external (resolved from node_modules at run time), so dist/ runs with `node` and production dependencies only.
import { build } from "esbuild"
import { rm } from "node:fs/promises"

await rm("dist", { recursive: true, force: true })
await build({
  entryPoints: {
    cli: "src/bin.ts",
    "send-reminders": "scripts/send-reminders.ts",
    "send-founder-emails": "scripts/send-founder-emails.ts"
  },
  outdir: "dist",
  bundle: true,
  platform: "node",
  format: "esm",
  target: "node22",
  packages: "external",
  sourcemap: true,
  logLevel: "warning",
  banner: { js: "#!/usr/bin/env node" }
})
console.log("built dist/cli.js, dist/send-reminders.js, dist/send-founder-emails.js")
