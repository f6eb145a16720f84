/**
 * `npm run demo [-- --now ISO] [-- --reset] [-- --console]`: the jobs against a local embedded database with demo
 * learners. With `--console`, it then serves that database with the web console on loopback (HOST 127.0.0.1,
 * PORT or 8080) and prints a sign-in link. Nothing to configure: unless CONSOLE_SECRET is set, a random one is
 * generated for this process only (so its links die with it), and APP_URL defaults to the loopback address.
 */
import { randomBytes } from "node:crypto"
import { Command, Flag } from "effect/cli"
import { Clock, Config, ConfigProvider, Console, Effect, Layer } from "effect"
import { main, parseNow, runMain } from "../src/triggers/Cli.ts"
import { JobsConfig } from "../src/config/Config.ts"
import { demo, DEMO_DIR, reset } from "./Demo.ts"
import * as Layers from "../src/job/Layers.ts"

/** Serves the local database with the console and prints a one-time sign-in link. */
const serveConsole = Effect.gen(function*() {
  const [Http, Auth] = yield* Effect.promise(() => Promise.all([import("../src/triggers/Http.ts"), import("../src/pages/ConsoleAuth.ts")]))
  const config = yield* JobsConfig
  if (config.consoleSecret._tag === "None") return yield* Effect.die(new Error("CONSOLE_SECRET was not provided"))
  const token = Auth.makeLinkToken(config.consoleSecret.value, { now: yield* Clock.currentTimeMillis, minutes: 15, by: "demo" })
  yield* Console.log(
    `\nConsole: ${config.appUrl}/console (listening on ${config.host._tag === "Some" ? config.host.value : "all interfaces"}:${config.port})\n` +
      `Sign in (once, within 15 minutes): ${Auth.linkUrl(config.appUrl, token)}\n` +
      `For a new link restart the demo (or set CONSOLE_SECRET yourself, then: npx kaiwa-jobs console-link). Ctrl-C stops.`
  )
  return yield* Http.serve
})

/** Settings the console needs locally, used only where the environment has none. */
const consoleDefaults = Effect.gen(function*() {
  const port = yield* Config.Port("PORT").pipe(Config.withDefault(8080))
  return ConfigProvider.fromUnknown({
    // Generated per process: a local demo needs no secret set by hand, and no fixed one ships in the code.
    CONSOLE_SECRET: randomBytes(32).toString("base64url"),
    HOST: "127.0.0.1",
    APP_URL: `http://127.0.0.1:${port}`
  })
})

const command = Command.make(
  "demo",
  {
    now: Flag.String("now").pipe(Flag.withDescription("Run as of this ISO-8601 instant"), Flag.optional),
    reset: Flag.Boolean("reset").pipe(Flag.withDescription("Delete the demo database first"), Flag.withDefault(false)),
    console: Flag.Boolean("console").pipe(
      Flag.withDescription("Then serve the local database with the web console on loopback and print a sign-in link"),
      Flag.withDefault(false)
    )
  },
  (flags) =>
    Effect.gen(function*() {
      if (flags.reset) yield* reset
      const now = yield* parseNow(flags.now)
      const stack = Layers.local(`${DEMO_DIR}/postgres`)
      const program = flags.console ? Effect.andThen(demo, serveConsole) : demo
      yield* program.pipe(
        Effect.provide(Layers.clockFor(now)),
        Effect.provide(stack),
        Effect.provide(flags.console ? ConfigProvider.layerAdd(consoleDefaults) : Layer.empty)
      )
    })
)

runMain(main(command, process.argv.slice(2)))
