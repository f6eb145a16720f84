/** dist/cli.js: the compile cache first, then the kaiwa-jobs CLI (src/bin.ts), loaded as a separate chunk. */
import "./compileCache.ts"

await import("../bin.ts")
