/**
 * Turns on Node's module compile cache (`module.enableCompileCache`, Node >= 22.1) for the built entry points,
 * before the bundle itself is loaded: V8's compiled code for dist/chunks/*.js is kept on disk and reused by the
 * next start of the same build, which skips most of the parse and compile work (issue 13).
 *
 * Where: `NODE_COMPILE_CACHE` when set, else Node's default `<os.tmpdir()>/node-compile-cache` (/tmp in the image:
 * writable by the unprivileged `node` user, while /app stays root-owned and read-only). `NODE_DISABLE_COMPILE_CACHE=1`
 * turns it off. Entries are keyed by file content, Node version and user, so a new build or Node never reads stale
 * code; a cache that cannot be written (read-only disk) only means a cold start, never a failure.
 *
 * Not on a Fly Machine (FLY_MACHINE_ID set): its root file system is reset to the image every time it stops, so a
 * scheduled run would pay for writing a cache that no later run reads. `NODE_COMPILE_CACHE` still turns it on there
 * (Node itself reads that variable), for a Machine with a volume, say.
 */
import * as Module from "node:module"

if (process.env["FLY_MACHINE_ID"] === undefined) Module.enableCompileCache?.()
