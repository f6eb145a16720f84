/**
 * The README's example job is real: the block in README.md is `src/jobs/WinBack.example.ts` byte for byte
 * (`npm test` type-checks that file), and the job runs as written against the embedded database.
 */
import * as fs from "node:fs"
import { assert, describe, it, layer } from "@effect/vitest"
import { Effect, Ref } from "effect"
import { TestClock } from "effect/testing"
import { JobsConfig } from "../../src/config/Config.ts"
import { runJob } from "../../src/job/Job.ts"
import { winBack } from "../../src/jobs/WinBack.example.ts"
import { MailerTestRef } from "../../src/mail/Mailer.ts"
import { insertUsers, testLayer } from "../support/TestDb.ts"

const HOUR = 3_600_000
const DAY = 24 * HOUR
// Tuesday 12:00 UTC: 12:00 in London (inside 10:00-20:00), 21:00 in Tokyo (outside).
const AT = Date.parse("2026-03-10T12:00:00Z")

describe("the README's example job", () => {
  it("is the file src/jobs/WinBack.example.ts, byte for byte", () => {
    const readme = fs.readFileSync("README.md", "utf8")
    const marker = "<!-- example: src/jobs/WinBack.example.ts -->\n```ts\n"
    const start = readme.indexOf(marker)
    assert.isAtLeast(start, 0, "the README has the example block")
    const block = readme.slice(start + marker.length, readme.indexOf("```\n", start + marker.length))
    assert.strictEqual(block, fs.readFileSync("src/jobs/WinBack.example.ts", "utf8"))
  })

  layer(testLayer, { excludeTestServices: true })((it) => {
    it.effect("runs as written: one email per lapse, inside the learner's local window, never twice", () =>
      Effect.gen(function*() {
        yield* insertUsers([
          { id: "w1", timezone: "Europe/London", createdAt: new Date(AT - 60 * DAY), sessions: [{ at: new Date(AT - 14 * DAY - 2 * HOUR), language: "ja" }] },
          { id: "w2", timezone: "Europe/London", createdAt: new Date(AT - 60 * DAY), sessions: [{ at: new Date(AT - 10 * DAY), language: "ja" }] },
          { id: "w3", timezone: "Asia/Tokyo", createdAt: new Date(AT - 60 * DAY), sessions: [{ at: new Date(AT - 14 * DAY - 5 * HOUR), language: "es" }] }
        ])
        yield* TestClock.setTime(AT)
        const first = yield* runJob(winBack)
        assert.strictEqual(first.stats?.sent, 1)
        const sent = yield* Ref.get(yield* MailerTestRef)
        assert.deepStrictEqual(sent.map((e) => e.to), ["w1@example.com"])
        assert.strictEqual(sent[0]!.subject, "Your Japanese is waiting")
        assert.include(sent[0]!.text, "Unsubscribe from win-back emails")

        const again = yield* runJob(winBack)
        assert.strictEqual(again.stats?.sent, 0)
        // 10:00 the next day in Tokyo is 01:00 UTC: w3's window is open and the lapse still 14 to 15 days old.
        yield* TestClock.setTime(Date.parse("2026-03-11T01:30:00Z"))
        const tokyo = yield* runJob(winBack)
        assert.strictEqual(tokyo.stats?.sent, 1)
        assert.deepStrictEqual((yield* Ref.get(yield* MailerTestRef)).map((e) => e.to), ["w1@example.com", "w3@example.com"])

        const previews = yield* winBack.preview(yield* JobsConfig)
        assert.deepStrictEqual(previews.map((p) => p.name), ["win-back"])
      }).pipe(Effect.provide(TestClock.layer())))
  })
})
