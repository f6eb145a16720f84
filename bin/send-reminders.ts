/** dist/send-reminders.js: the compile cache first, then the Fly main bin/main/send-reminders.ts, loaded as a separate chunk. */
import { enableCompileCache } from "./compileCache.ts"

enableCompileCache(import.meta.url)

await import("./main/send-reminders.ts")
