/** Fly scheduled machine main: daily practice reminders. `node dist/send-reminders.js [--dry-run] [--now ISO]` */
import { jobMain, main, runMain } from "../../src/triggers/Cli.ts"

runMain(main(jobMain("practice-reminders"), process.argv.slice(2)))
