/**
 * Turns on Node's module compile cache (`module.enableCompileCache`, Node >= 22.1) for the built entry points,
 * before the bundle itself is loaded: V8's compiled code for dist/chunks/*.js is kept on disk and reused by the
 * next start of the same build, which skips most of the parse and compile work.
 *
 * Where, in order:
 * 1. `NODE_COMPILE_CACHE` when set: Node itself turned the cache on there before this code ran (this call only
 *    reports it as already enabled). `NODE_DISABLE_COMPILE_CACHE=1` turns it off altogether.
 * 2. The cache shipped inside the build, `dist/compile-cache/`: `npm run build` fills it by running the built CLI's
 *    `--help` and `list` once (build.mjs), so the first run after a build (a fresh Docker container, a Fly Machine
 *    whose disk was reset) already starts warm. It is "portable" (entries keyed by paths relative to it), so a
 *    copied dist/ keeps it. Node keys its entries by its version, V8's cache tag and the user id (one sub-directory
 *    each) and every entry by the file's contents, so a stale entry is never used. Node needs only to read it: when
 *    the sub-directory of this Node and user exists it is used read-only if need be (what cannot be written is
 *    skipped silently); when it does not exist and cannot be created (dist/ is root-owned in the image), Node
 *    reports the cache as failed, never throws, and we go on to 3.
 * 3. Node's default `<os.tmpdir()>/node-compile-cache` (/tmp in the image: writable by the unprivileged `node`
 *    user), except on a Fly Machine (FLY_MACHINE_ID set): its root file system is reset to the image every time it
 *    stops, so a scheduled run would pay for writing a cache that no later run reads.
 */
import * as Module from "node:module"
import { fileURLToPath } from "node:url"

/** The shipped cache's directory, next to the entry point (`dist/compile-cache` for `dist/cli.js`). */
export const shippedCacheDir = (entryUrl: string): string => fileURLToPath(new URL("compile-cache", entryUrl))

/** Called first by each entry with its own `import.meta.url` (this module may end up in a shared chunk). */
export const enableCompileCache = (entryUrl: string): void => {
  if (Module.enableCompileCache === undefined) return
  const FAILED = Module.constants.compileCacheStatus.FAILED
  const shipped = Module.enableCompileCache({ directory: shippedCacheDir(entryUrl), portable: true })
  if (shipped.status === FAILED && process.env["FLY_MACHINE_ID"] === undefined) Module.enableCompileCache()
}
