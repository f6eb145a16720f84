/** dist/send-reminders.js: the compile cache first, then the Fly main scripts/send-reminders.ts, loaded as a separate chunk. */
import { enableCompileCache } from "./compileCache.ts"

enableCompileCache(import.meta.url)

await import("../../scripts/send-reminders.ts")
