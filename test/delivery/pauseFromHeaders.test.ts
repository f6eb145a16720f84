/**
 * Which accepted answers pause every worker (CONTRACT 8b): `ratelimit-remaining: 0` is news only when our own
 * pace cannot have filled the provider's window by itself, i.e. another sender (the web app) is using it.
 */
import { assert, describe, it } from "@effect/vitest"
import { Duration } from "effect"
import { pauseFromHeaders, RATE_HEADROOM } from "../../src/mail/RateLimiter.ts"

const spacing = (rps: number) => (1000 / rps) * RATE_HEADROOM
const full = { "ratelimit-limit": "2", "ratelimit-remaining": "0", "ratelimit-reset": "1" }

describe("the pause an accepted answer asks for", () => {
  it("none while the window still has room", () => {
    assert.isUndefined(pauseFromHeaders({ ...full, "ratelimit-remaining": "1" }, spacing(1)))
    assert.isUndefined(pauseFromHeaders(null, spacing(1)))
  })

  it("none when our own pace fills the window (2 calls a second against a limit of 2, or 1.5)", () => {
    assert.isUndefined(pauseFromHeaders(full, spacing(2)))
    assert.isUndefined(pauseFromHeaders(full, spacing(1.5)))
  })

  it("until the reset when our pace leaves room and the window is full anyway", () => {
    const pause = pauseFromHeaders(full, spacing(1))
    assert.isDefined(pause)
    assert.strictEqual(Duration.toMillis(pause!), 1000)
    assert.strictEqual(Duration.toMillis(pauseFromHeaders({ ...full, "ratelimit-reset": "3" }, spacing(0.5))!), 3000)
  })
})
