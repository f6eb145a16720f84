/**
 * Collects the garbage that closed connections leave, so a flood of refused requests does not pile it up.
 *
 * Node copies the first read of every request (up to 64 KiB of its body) into Buffers before any handler can look
 * at the request. A request refused on its headers leaves that copy behind as garbage when its connection closes,
 * and V8 frees such Buffers only at a full collection, which it schedules by the growth of its own heap, not of
 * the Buffers'; the allocator keeps the pages they held meanwhile. One full collection per RECLAIM_AFTER_BYTES read
 * by connections that have closed bounds that garbage (docs/decisions.md, "A flood's garbage is collected as it
 * goes"). Small requests (health checks, webhook events of a few KiB) trigger one per thousands of requests.
 */
import { setFlagsFromString } from "node:v8"
import { runInNewContext } from "node:vm"

/** Bytes read by closed connections since the last collection that trigger the next one. */
export const RECLAIM_AFTER_BYTES = 1024 * 1024

/** Counts the bytes of closed connections and runs `collect` each time they reach `after`. */
export interface Reclaimer {
  readonly closed: (bytesRead: number) => void
}

export const makeReclaimer = (collect: () => void = fullCollection, after = RECLAIM_AFTER_BYTES): Reclaimer => {
  let bytes = 0
  return {
    closed: (bytesRead) => {
      bytes += bytesRead
      if (bytes < after) return
      bytes = 0
      // At once, not on a later turn: a burst of connections is handled in one turn of the event loop (one poll of
      // the sockets), and its garbage would pile up until the turn ends.
      collect()
    }
  }
}

let gc: (() => void) | undefined

/**
 * A full, synchronous collection. V8's `gc` is exposed in a fresh context only (the program's own global gets no
 * `gc`), the same function `node --expose-gc` gives.
 */
const fullCollection = () => {
  if (gc === undefined) {
    setFlagsFromString("--expose-gc")
    const exposed: unknown = runInNewContext("gc")
    // A V8 that does not expose it: nothing is collected early; the bound on open connections still holds.
    if (typeof exposed !== "function") return
    gc = () => void exposed()
  }
  gc()
}
