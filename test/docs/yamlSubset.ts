/**
 * A reader for the small subset of YAML the workflow example under docs/ uses (no YAML parser is a dependency):
 * block mappings and sequences by indentation, `key: value`, `- item` (a scalar or a mapping), `|` literal block
 * scalars, plain, "double" and 'single' quoted scalars, flow sequences of scalars (`[a, b]`), `{}`, comments,
 * true/false/null and integers. Anything else (anchors, aliases, tags, folded scalars, flow mappings, tabs) is an
 * error naming the line, so the example cannot drift into YAML this reader would misread.
 */
export type Yaml = string | number | boolean | null | ReadonlyArray<Yaml> | { readonly [key: string]: Yaml }

const KEY = /^([A-Za-z0-9_][A-Za-z0-9_.-]*|"[^"]*"):(?:[ ]+(.*))?$/

export const parseYamlSubset = (source: string): Yaml => {
  const lines = source.split("\n")
  let i = 0
  const fail = (message: string): never => {
    throw new Error(`YAML line ${i + 1}: ${message}: ${JSON.stringify(lines[i] ?? "")}`)
  }
  const indentOf = (line: string) => line.length - line.trimStart().length
  const skipBlank = () => {
    while (i < lines.length && (lines[i]!.trim() === "" || lines[i]!.trim().startsWith("#"))) i++
  }

  const scalar = (text: string): Yaml => {
    const t = text.trim()
    if (t.startsWith("\"")) {
      const end = /^"(?:[^"\\]|\\.)*"/.exec(t) ?? fail("unterminated double-quoted scalar")
      if (t.slice(end[0].length).trim() !== "" && !t.slice(end[0].length).trim().startsWith("#")) fail("text after a quoted scalar")
      return JSON.parse(end[0]) as string
    }
    if (t.startsWith("'")) {
      const end = /^'(?:[^']|'')*'/.exec(t) ?? fail("unterminated single-quoted scalar")
      return end[0].slice(1, -1).replaceAll("''", "'")
    }
    const plain = t.replace(/\s+#.*$/, "")
    if (plain === "{}") return {}
    if (plain.startsWith("[")) {
      if (!plain.endsWith("]")) fail("a flow sequence must end on its line")
      const inner = plain.slice(1, -1).trim()
      if (/[[\]{}]/.test(inner)) fail("nested flow collections are not supported")
      return inner === "" ? [] : inner.split(",").map((item) => scalar(item))
    }
    if (/^[&*!>{|?%@`]/.test(plain)) fail("unsupported YAML (anchor, alias, tag, folded scalar or flow mapping)")
    if (plain === "true" || plain === "false") return plain === "true"
    if (plain === "null" || plain === "~" || plain === "") return null
    if (/^-?\d+$/.test(plain)) return Number(plain)
    return plain
  }

  // A `|` block scalar: the lines after the key more indented than it (blank lines kept), clipped to one final newline.
  const literal = (parentIndent: number): string => {
    const body: Array<string> = []
    while (i < lines.length && (lines[i]!.trim() === "" || indentOf(lines[i]!) > parentIndent)) body.push(lines[i++]!)
    while (body.length > 0 && body.at(-1)!.trim() === "") body.pop()
    if (body.length === 0) return ""
    const indent = indentOf(body[0]!)
    return body.map((l) => l.slice(indent)).join("\n") + "\n"
  }

  // What follows `key:` or `- ` when the rest of the line is empty: a more indented block, or null.
  const nested = (parentIndent: number): Yaml => {
    skipBlank()
    if (i >= lines.length || indentOf(lines[i]!) <= parentIndent) return null
    return block(indentOf(lines[i]!))
  }

  const value = (rest: string | undefined, indent: number): Yaml => {
    if (rest === undefined || rest.trim() === "" || rest.trim().startsWith("#")) {
      i++
      return nested(indent)
    }
    if (rest.trim() === "|") {
      i++
      return literal(indent)
    }
    i++
    return scalar(rest)
  }

  const mapping = (indent: number): Yaml => {
    const out: Record<string, Yaml> = {}
    for (;;) {
      skipBlank()
      if (i >= lines.length || indentOf(lines[i]!) < indent) return out
      if (indentOf(lines[i]!) > indent) fail("unexpected indentation")
      const m = KEY.exec(lines[i]!.trim()) ?? fail("expected `key: value`")
      const key = m[1]!.startsWith("\"") ? JSON.parse(m[1]!) as string : m[1]!
      if (key in out) fail(`duplicate key ${key}`)
      out[key] = value(m[2], indent)
    }
  }

  const sequence = (indent: number): Yaml => {
    const out: Array<Yaml> = []
    for (;;) {
      skipBlank()
      if (i >= lines.length || indentOf(lines[i]!) < indent) return out
      if (indentOf(lines[i]!) > indent) fail("unexpected indentation")
      const line = lines[i]!
      if (!/^\s*-(?: |$)/.test(line)) fail("expected a `- ` sequence item")
      const rest = line.slice(indent + 1)
      if (KEY.test(rest.trim())) {
        // `- key: value`: a mapping whose first key sits two columns in; read it as if the dash were a space.
        lines[i] = " ".repeat(indent + 1) + rest
        out.push(mapping(indentOf(lines[i]!)))
      } else {
        out.push(value(rest.trim() === "" ? undefined : rest, indent))
      }
    }
  }

  const block = (indent: number): Yaml => /^\s*-(?: |$)/.test(lines[i]!) ? sequence(indent) : mapping(indent)

  if (lines.some((l) => /^\s*\t/.test(l))) {
    i = lines.findIndex((l) => /^\s*\t/.test(l))
    fail("tabs are not allowed in indentation")
  }
  skipBlank()
  if (i >= lines.length) return null
  const doc = block(indentOf(lines[i]!))
  skipBlank()
  if (i < lines.length) fail("unexpected content")
  return doc
}
