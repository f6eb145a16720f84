/** dist/send-founder-emails.js: the compile cache first, then the Fly main scripts/send-founder-emails.ts, loaded as a separate chunk. */
import { enableCompileCache } from "./compileCache.ts"

enableCompileCache(import.meta.url)

await import("../../scripts/send-founder-emails.ts")
