/** The YAML subset reader the workflow test relies on: what it reads, and that it refuses what it does not know. */
import { assert, describe, it } from "@effect/vitest"
import { parseYamlSubset } from "./yamlSubset.ts"

describe("the YAML subset reader", () => {
  it("reads mappings, sequences of scalars and of mappings, flow sequences, literal blocks, quotes and comments", () => {
    const doc = parseYamlSubset([
      "# a comment",
      "name: kaiwa-jobs cron   # trailing comment",
      "on:",
      "  schedule:",
      "    - cron: \"7 * * * *\"",
      "      extra: 'it''s'",
      "  workflow_dispatch:",
      "permissions: {}",
      "list: [a, \"b c\", 3]",
      "flags:",
      "  - true",
      "  - ~",
      "run: |",
      "  line one",
      "",
      "    indented",
      "after: -12"
    ].join("\n"))
    assert.deepStrictEqual(doc, {
      name: "kaiwa-jobs cron",
      on: { schedule: [{ cron: "7 * * * *", extra: "it's" }], workflow_dispatch: null },
      permissions: {},
      list: ["a", "b c", 3],
      flags: [true, null],
      run: "line one\n\n  indented\n",
      after: -12
    })
  })

  it("refuses YAML outside the subset, naming the line", () => {
    for (const [source, line] of [
      ["a: &anchor 1", 1],
      ["a: 1\nb: *anchor", 2],
      ["a:\n\t- 1", 2],
      ["a: >\n  folded", 1],
      ["a: {b: 1}", 1],
      ["a: 1\na: 2", 2],
      ["a:\n  b: 1\n   c: 2", 3],
      ["a: [b, [c]]", 1]
    ] as const) {
      assert.throws(() => parseYamlSubset(source), new RegExp(`^YAML line ${line}:`), source)
    }
  })
})
