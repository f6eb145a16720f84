/** dist/cli.js: the compile cache first, then the kaiwa-jobs CLI (bin/main/kaiwa-jobs.ts), loaded as a separate chunk. */
import { enableCompileCache } from "./compileCache.ts"

enableCompileCache(import.meta.url)

await import("./main/kaiwa-jobs.ts")
