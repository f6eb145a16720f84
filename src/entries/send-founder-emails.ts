/** dist/send-founder-emails.js: the compile cache first, then the Fly main scripts/send-founder-emails.ts, loaded as a separate chunk. */
import "./compileCache.ts"

await import("../../scripts/send-founder-emails.ts")
