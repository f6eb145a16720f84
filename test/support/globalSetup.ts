/**
 * One embedded PostgreSQL server for the whole test run (each test file makes its own database on it), or the
 * server named by DATABASE_URL when set. Stopped when the run ends.
 */
import { execFileSync } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import { Effect, Exit, Redacted, Scope } from "effect"
import type { TestProject } from "vitest/node"
import { start } from "../../src/local/EmbeddedPostgres.ts"
import { chromiumPath } from "./Browser.ts"

declare module "vitest" {
  export interface ProvidedContext {
    pgAdminUrl: string
    /**
     * The files of dist/compile-cache as the build left them (paths relative to it). Test files run in parallel,
     * and as root the built programs other files run may add entries of their own, so the shipped cache's checks
     * look at these only.
     */
    shippedCompileCache: Array<string>
  }
}

export default async function setup(project: TestProject) {
  // Tests that run the compiled mains need dist/: build once, with the same `npm run build` the Dockerfile runs.
  execFileSync(process.execPath, ["build.mjs"], { stdio: "inherit" })
  const cache = path.join("dist", "compile-cache")
  project.provide(
    "shippedCompileCache",
    fs.existsSync(cache)
      ? fs.readdirSync(cache, { recursive: true }).map(String).filter((f) => fs.statSync(path.join(cache, f)).isFile())
      : []
  )
  // The browser tests' Chromium ships compressed inside its npm package: unpack it once, here, before test files
  // run in parallel (two unpacking at once could each see the other's half-written binary).
  await chromiumPath()
  const external = process.env["DATABASE_URL"]
  if (external) {
    project.provide("pgAdminUrl", external)
    return
  }
  const scope = Effect.runSync(Scope.make())
  const server = await Effect.runPromise(Scope.provide(start(), scope))
  project.provide("pgAdminUrl", Redacted.value(server.url("postgres")))
  return async () => {
    await Effect.runPromise(Scope.close(scope, Exit.void))
  }
}
