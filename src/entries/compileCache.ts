/**
 * Turns on Node's module compile cache (`module.enableCompileCache`, Node >= 22.1) for the built entry points,
 * before the bundle itself is loaded: V8's compiled code for dist/chunks/*.js is kept on disk and reused by the
 * next start of the same build, which skips most of the parse and compile work (issue 13).
 *
 * Where: `NODE_COMPILE_CACHE` when set, else Node's default `<os.tmpdir()>/node-compile-cache` (/tmp in the image:
 * writable by the unprivileged `node` user, while /app stays root-owned and read-only). `NODE_DISABLE_COMPILE_CACHE=1`
 * turns it off. Entries are keyed by file content and Node version, so a new build or Node never reads stale code;
 * a cache that cannot be written (read-only disk) only means a cold start, never a failure.
 */
import * as Module from "node:module"

Module.enableCompileCache?.()
