/** Fly scheduled machine main: the founder email sequence. `node dist/send-founder-emails.js [--dry-run] [--now ISO]` */
import { jobMain, main, runMain } from "../../src/triggers/Cli.ts"

runMain(main(jobMain("founder-emails"), process.argv.slice(2)))
