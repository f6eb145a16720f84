/** `npm run demo [-- --now ISO] [-- --reset]`: the jobs against a local embedded database with demo learners. */
import { Command, Flag } from "effect/cli"
import { Effect } from "effect"
import { main, parseNow, runMain } from "../src/Cli.ts"
import { demo, DEMO_DIR, reset } from "../src/Demo.ts"
import * as Layers from "../src/Layers.ts"

const command = Command.make(
  "demo",
  {
    now: Flag.String("now").pipe(Flag.withDescription("Run as of this ISO-8601 instant"), Flag.optional),
    reset: Flag.Boolean("reset").pipe(Flag.withDescription("Delete the demo database first"), Flag.withDefault(false))
  },
  (flags) =>
    Effect.gen(function*() {
      if (flags.reset) yield* reset
      const now = yield* parseNow(flags.now)
      const stack = Layers.local(`${DEMO_DIR}/postgres`)
      yield* demo.pipe(Effect.provide(Layers.clockFor(now)), Effect.provide(stack))
    })
)

runMain(main(command, process.argv.slice(2)))
