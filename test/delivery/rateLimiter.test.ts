/**
 * The Resend mailer's client-side rate limiter under TestClock: spacing counts from when a call actually went
 * (so a late call never squeezes the next one into the provider's window), and a rate-limit 429 widens it.
 */
import { assert, describe, it } from "@effect/vitest"
import { Clock, Effect, Fiber } from "effect"
import { TestClock } from "effect/testing"
import { makeRateLimiter, RATE_HEADROOM, RATE_MAX_WIDEN, RATE_WIDEN } from "../../src/mail/RateLimiter.ts"

const SPACING = 500 * RATE_HEADROOM

describe("the Resend rate limiter", () => {
  it.effect("spaces a call from when the previous one went, not from the previous one's slot", () =>
    Effect.gen(function*() {
      const limiter = yield* makeRateLimiter(2)
      const times: Array<number> = []
      const take = limiter.take.pipe(Effect.andThen(Clock.currentTimeMillis), Effect.map((t) => void times.push(t)))
      yield* take
      // The next caller comes late (its slot was at SPACING) and the one after it right behind it.
      yield* TestClock.adjust(700)
      yield* take
      const third = yield* Effect.forkChild(take)
      yield* TestClock.adjust(SPACING - 1)
      assert.strictEqual(times.length, 2, "the third call went less than one spacing after the second")
      yield* TestClock.adjust(1)
      yield* Fiber.join(third)
      assert.closeTo(times[2]! - times[1]!, SPACING, 0.01)
      // Under the provider's 2/s window a call and the one two after it must be more than 1 s apart.
      assert.isAbove(times[2]! - times[0]!, 1000)
    }))

  it.effect("each rate-limit 429 widens the spacing, up to a cap", () =>
    Effect.gen(function*() {
      const limiter = yield* makeRateLimiter(2)
      const gapAfter = (widens: number) =>
        Effect.gen(function*() {
          for (let i = 0; i < widens; i++) yield* limiter.widen
          const a = yield* Effect.forkChild(Effect.andThen(limiter.take, Clock.currentTimeMillis))
          const b = yield* Effect.forkChild(Effect.andThen(limiter.take, Clock.currentTimeMillis))
          yield* TestClock.adjust(10_000)
          return (yield* Fiber.join(b)) - (yield* Fiber.join(a))
        })
      assert.closeTo(yield* gapAfter(0), SPACING, 0.01)
      assert.closeTo(yield* gapAfter(1), SPACING * RATE_WIDEN, 0.01)
      assert.closeTo(yield* gapAfter(50), SPACING * RATE_MAX_WIDEN, 0.01)
    }))
})
