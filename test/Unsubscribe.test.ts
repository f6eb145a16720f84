import { assert, describe, it } from "@effect/vitest"
import { createHmac } from "node:crypto"
import { Option, Redacted } from "effect"
import {
  makePreferencesToken,
  makeToken,
  preferencesUrl,
  type UnsubscribeClaim,
  unsubscribeHeaders,
  unsubscribeUrl,
  verifyPreferencesToken,
  verifyToken
} from "../src/mail/Unsubscribe.ts"

const secret = Redacted.make("test-unsubscribe-secret-0123456789abcdef")
const otherSecret = Redacted.make("another-unsubscribe-secret-0123456789")
const claim: UnsubscribeClaim = { userId: "user_123", list: "practice-reminders" }

// The token format written out independently of the implementation.
const signWithRecipe = (payloadB64: string): string =>
  `${payloadB64}.${
    createHmac("sha256", Redacted.value(secret)).update(`kaiwa-jobs/unsubscribe/v1.${payloadB64}`).digest("base64url")
  }`

// Replaces the character at `i` with a different base64url character.
const flip = (s: string, i: number): string => {
  const c = s[i] === "A" ? "B" : "A"
  return s.slice(0, i) + c + s.slice(i + 1)
}

describe("Unsubscribe tokens", () => {
  it("round-trips a claim for both lists", () => {
    for (const list of ["practice-reminders", "founder-emails"] as const) {
      const token = makeToken(secret, { userId: "user_123", list })
      assert.deepStrictEqual(verifyToken(secret, token), Option.some({ userId: "user_123", list }))
    }
  })

  it("round-trips unusual user ids (unicode, dots, quotes, empty)", () => {
    for (const userId of ["ユーザー🎉", "a.b.c", "\"quoted\" \\ back", "", "x".repeat(500)]) {
      const token = makeToken(secret, { userId, list: "founder-emails" })
      assert.deepStrictEqual(verifyToken(secret, token), Option.some({ userId, list: "founder-emails" as const }))
    }
  })

  it("produces URL-safe tokens in the form payload.signature", () => {
    const token = makeToken(secret, claim)
    assert.match(token, /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]{43}$/)
    assert.strictEqual(encodeURIComponent(token), token)
  })

  it("is deterministic, so the same email always carries the same link", () => {
    assert.strictEqual(makeToken(secret, claim), makeToken(secret, claim))
    assert.notStrictEqual(makeToken(secret, claim), makeToken(secret, { ...claim, list: "founder-emails" }))
  })

  it("rejects a token signed with another secret", () => {
    assert.isTrue(Option.isNone(verifyToken(secret, makeToken(otherSecret, claim))))
  })

  it("rejects truncated tokens", () => {
    const token = makeToken(secret, claim)
    for (let n = 0; n < token.length; n++) {
      assert.isTrue(Option.isNone(verifyToken(secret, token.slice(0, n))), `prefix of length ${n}`)
    }
    assert.isTrue(Option.isNone(verifyToken(secret, token.slice(1))))
  })

  it("rejects a token with any single character of the payload or the signature changed", () => {
    const token = makeToken(secret, claim)
    const dot = token.indexOf(".")
    for (let i = 0; i < token.length; i++) {
      if (i === dot) continue
      assert.isTrue(Option.isNone(verifyToken(secret, flip(token, i))), `changed at ${i} (dot at ${dot})`)
    }
  })

  it("rejects another user's payload carrying this user's signature", () => {
    const mine = makeToken(secret, claim)
    const theirs = makeToken(secret, { userId: "user_456", list: "practice-reminders" })
    const forged = `${theirs.split(".")[0]}.${mine.split(".")[1]}`
    assert.isTrue(Option.isNone(verifyToken(secret, forged)))
    // Same user, other list: the list is signed too.
    const otherList = makeToken(secret, { ...claim, list: "founder-emails" })
    assert.isTrue(Option.isNone(verifyToken(secret, `${otherList.split(".")[0]}.${mine.split(".")[1]}`)))
  })

  it("signs exactly the documented recipe: base64url(JSON).base64url(HMAC(secret, domain + payload))", () => {
    const payload = Buffer.from(JSON.stringify({ v: 1, u: claim.userId, l: claim.list }), "utf8").toString("base64url")
    assert.strictEqual(makeToken(secret, claim), signWithRecipe(payload))
  })

  it("rejects a correctly signed payload that is not a version-1 claim", () => {
    const payloads = [
      "not json",
      "{}",
      "null",
      "[1,\"u\",\"founder-emails\"]",
      "{\"v\":2,\"u\":\"x\",\"l\":\"founder-emails\"}",
      "{\"v\":1,\"u\":\"x\",\"l\":\"Marketing List!\"}",
      "{\"v\":1,\"u\":\"x\",\"l\":\"\"}",
      "{\"v\":1,\"u\":42,\"l\":\"founder-emails\"}",
      "{\"v\":1,\"l\":\"founder-emails\"}"
    ]
    for (const payload of payloads) {
      const token = signWithRecipe(Buffer.from(payload, "utf8").toString("base64url"))
      assert.isTrue(Option.isNone(verifyToken(secret, token)), payload)
    }
    // The recipe itself is right: a well-formed claim signed the same way verifies.
    const good = signWithRecipe(Buffer.from("{\"v\":1,\"u\":\"x\",\"l\":\"founder-emails\"}").toString("base64url"))
    assert.deepStrictEqual(verifyToken(secret, good), Option.some({ userId: "x", list: "founder-emails" as const }))
    // Lists are named after jobs, so a list no job declares today (a retired job's old link) still verifies:
    // honouring that unsubscribe is harmless, refusing it never is.
    const retired = signWithRecipe(Buffer.from("{\"v\":1,\"u\":\"x\",\"l\":\"marketing\"}").toString("base64url"))
    assert.deepStrictEqual(verifyToken(secret, retired), Option.some({ userId: "x", list: "marketing" }))
  })

  it("returns None for garbage and never throws", () => {
    const token = makeToken(secret, claim)
    const garbage = [
      "",
      ".",
      "..",
      "a.b",
      "a.",
      ".b",
      `${token}.`,
      `.${token}`,
      `${token}.extra`,
      token.replace(".", ".."),
      `${token} `,
      `${token}=`,
      token.replace(/-/g, "+").replace(/_/g, "/"),
      "x".repeat(100_000),
      `${"a".repeat(5_000)}.${"b".repeat(43)}`,
      "\u0000.\u0000",
      "🎉.🎉",
      "eyJ2IjoxfQ.%%%",
      "null",
      "undefined"
    ]
    for (const g of garbage) {
      assert.isTrue(Option.isNone(verifyToken(secret, g)), JSON.stringify(g.slice(0, 40)))
    }
    // Random strings from the token alphabet, with and without a dot.
    const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_."
    for (let n = 0; n < 500; n++) {
      const length = 1 + ((n * 37) % 120)
      let s = ""
      for (let i = 0; i < length; i++) s += alphabet[Math.floor(Math.random() * alphabet.length)]
      assert.isTrue(Option.isNone(verifyToken(secret, s)))
    }
  })

  it("never reveals the secret in the token", () => {
    const token = makeToken(secret, claim)
    assert.notInclude(Buffer.from(token.split(".")[0] ?? "", "base64url").toString("utf8"), Redacted.value(secret))
  })
})

describe("unsubscribeUrl", () => {
  it("appends /unsubscribe with the token, trimming trailing slashes from the app URL", () => {
    assert.strictEqual(unsubscribeUrl("https://kaiwa.app", "abc.def"), "https://kaiwa.app/unsubscribe?token=abc.def")
    assert.strictEqual(unsubscribeUrl("https://kaiwa.app/", "abc.def"), "https://kaiwa.app/unsubscribe?token=abc.def")
    assert.strictEqual(unsubscribeUrl("https://kaiwa.app//", "t"), "https://kaiwa.app/unsubscribe?token=t")
  })

  it("percent-encodes the token", () => {
    assert.strictEqual(
      unsubscribeUrl("https://kaiwa.app", "a b&c=d/e+f?"),
      "https://kaiwa.app/unsubscribe?token=a%20b%26c%3Dd%2Fe%2Bf%3F"
    )
  })

  it("carries a real token that reads back through URL parsing", () => {
    const token = makeToken(secret, claim)
    const url = new URL(unsubscribeUrl("https://kaiwa.app/", token))
    assert.strictEqual(url.pathname, "/unsubscribe")
    assert.deepStrictEqual(verifyToken(secret, url.searchParams.get("token") ?? ""), Option.some(claim))
  })
})

describe("unsubscribeHeaders", () => {
  it("gives the RFC 8058 one-click headers", () => {
    assert.deepStrictEqual(unsubscribeHeaders("https://kaiwa.app/unsubscribe?token=abc"), {
      "List-Unsubscribe": "<https://kaiwa.app/unsubscribe?token=abc>",
      "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"
    })
  })
})

describe("Preferences tokens", () => {
  const user = { userId: "user_123" }

  it("round-trip a user, for unusual user ids too", () => {
    for (const userId of ["user_123", "ユーザー🎉", "a.b.c", "", "x".repeat(500)]) {
      assert.deepStrictEqual(verifyPreferencesToken(secret, makePreferencesToken(secret, { userId })), Option.some({ userId }))
    }
  })

  it("sign the documented recipe: base64url(JSON {v,u,p}).base64url(HMAC(secret, preferences domain + payload))", () => {
    const payload = Buffer.from(JSON.stringify({ v: 1, u: user.userId, p: "preferences" }), "utf8").toString("base64url")
    const signature = createHmac("sha256", Redacted.value(secret)).update(`kaiwa-jobs/preferences/v1.${payload}`).digest("base64url")
    assert.strictEqual(makePreferencesToken(secret, user), `${payload}.${signature}`)
    assert.match(makePreferencesToken(secret, user), /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]{43}$/)
  })

  it("are distinct from list tokens: neither verifies as the other, even re-signed across domains", () => {
    const preferences = makePreferencesToken(secret, user)
    const list = makeToken(secret, claim)
    assert.isTrue(Option.isNone(verifyToken(secret, preferences)))
    assert.isTrue(Option.isNone(verifyPreferencesToken(secret, list)))
    // A list payload under a preferences-domain signature, and a preferences payload under a list signature.
    const listPayload = list.split(".")[0] ?? ""
    const preferencesPayload = preferences.split(".")[0] ?? ""
    const signIn = (domain: string, payload: string) =>
      `${payload}.${createHmac("sha256", Redacted.value(secret)).update(domain + payload).digest("base64url")}`
    assert.isTrue(Option.isNone(verifyPreferencesToken(secret, signIn("kaiwa-jobs/preferences/v1.", listPayload))))
    assert.isTrue(Option.isNone(verifyToken(secret, signIn("kaiwa-jobs/unsubscribe/v1.", preferencesPayload))))
  })

  it("reject another secret, another user's signature, any changed character, truncation and garbage", () => {
    const token = makePreferencesToken(secret, user)
    assert.isTrue(Option.isNone(verifyPreferencesToken(secret, makePreferencesToken(otherSecret, user))))
    const theirs = makePreferencesToken(secret, { userId: "user_456" })
    assert.isTrue(Option.isNone(verifyPreferencesToken(secret, `${theirs.split(".")[0]}.${token.split(".")[1]}`)))
    const dot = token.indexOf(".")
    for (let i = 0; i < token.length; i++) {
      if (i !== dot) assert.isTrue(Option.isNone(verifyPreferencesToken(secret, flip(token, i))), `changed at ${i}`)
    }
    for (let n = 0; n < token.length; n++) assert.isTrue(Option.isNone(verifyPreferencesToken(secret, token.slice(0, n))))
    for (const g of ["", ".", "a.b", `${token}.`, `${token} `, "x".repeat(100_000), "🎉.🎉", "null"]) {
      assert.isTrue(Option.isNone(verifyPreferencesToken(secret, g)), JSON.stringify(g.slice(0, 40)))
    }
  })

  it("make a /preferences URL whose token reads back", () => {
    const token = makePreferencesToken(secret, user)
    const url = new URL(preferencesUrl("https://kaiwa.app//", token))
    assert.strictEqual(url.origin + url.pathname, "https://kaiwa.app/preferences")
    assert.deepStrictEqual(verifyPreferencesToken(secret, url.searchParams.get("token") ?? ""), Option.some(user))
    assert.strictEqual(preferencesUrl("https://kaiwa.app", "a b&c"), "https://kaiwa.app/preferences?token=a%20b%26c")
  })
})
