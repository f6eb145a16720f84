/**
 * One embedded PostgreSQL server for the whole test run (each test file makes its own database on it), or the
 * server named by DATABASE_URL when set. Stopped when the run ends.
 */
import { execFileSync } from "node:child_process"
import { Effect, Exit, Redacted, Scope } from "effect"
import type { TestProject } from "vitest/node"
import { start } from "../../src/EmbeddedPostgres.ts"

declare module "vitest" {
  export interface ProvidedContext {
    pgAdminUrl: string
  }
}

export default async function setup(project: TestProject) {
  // Tests that run the compiled mains need dist/: build once, with the same `npm run build` the Dockerfile runs.
  execFileSync(process.execPath, ["build.mjs"], { stdio: "inherit" })
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
