/** The `kaiwa-jobs` executable (package bin; compiled to dist/cli.js). */
import { Command } from "effect/cli"
import { commands, main, runMain } from "./Cli.ts"

const root = Command.make("kaiwa-jobs").pipe(
  Command.withDescription("Typed scheduled jobs for Kaiwa: practice reminders and the founder email sequence"),
  Command.withSubcommands([...commands])
)

runMain(main(root, process.argv.slice(2)))
