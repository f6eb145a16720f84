/** The `kaiwa-jobs` executable (package bin; compiled to dist/cli.js). */
import { main, root, runMain } from "../../src/triggers/Cli.ts"

runMain(main(root, process.argv.slice(2)))
