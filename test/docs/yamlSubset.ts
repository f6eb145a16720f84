/**
 * A reader for the small subset of YAML the workflow example under docs/ uses (no YAML parser is a dependency):
 * block mappings and sequences by indentation, `key: value`, `- item` (a scalar or a mapping), `|` literal block
 * scalars, plain, "double" and 'single' quoted scalars, flow sequences of scalars (`[a, b]`), `{}`, comments,
 * true/false/null and integers. Anything else (anchors, aliases, tags, folded scalars, flow mappings, tabs) is an
 * error naming the line, so the example cannot drift into YAML this reader would misread.
 */
export type Yaml = string | number | boolean | null | ReadonlyArray<Yaml> | { readonly [key: string]: Yaml }

const KEY = /^([A-Za-z0-9_][A-Za-z0-9_.-]*|"[^"]*"):(?:[ ]+(.*))?$/
const ITEM = /^\s*-(?: |$)/

/** The lines being read and the index of the next one. */
interface Cursor {
  readonly lines: Array<string>
  i: number
}

const fail = (c: Cursor, message: string): never => {
  throw new Error(`YAML line ${c.i + 1}: ${message}: ${JSON.stringify(c.lines[c.i] ?? "")}`)
}
const indentOf = (line: string) => line.length - line.trimStart().length
const done = (c: Cursor) => c.i >= c.lines.length
const skipBlank = (c: Cursor) => {
  while (!done(c) && (c.lines[c.i]!.trim() === "" || c.lines[c.i]!.trim().startsWith("#"))) c.i++
}

const quoted = (c: Cursor, t: string): string => {
  if (t.startsWith("'")) {
    const end = /^'(?:[^']|'')*'/.exec(t) ?? fail(c, "unterminated single-quoted scalar")
    return end[0].slice(1, -1).replaceAll("''", "'")
  }
  const end = /^"(?:[^"\\]|\\.)*"/.exec(t) ?? fail(c, "unterminated double-quoted scalar")
  const after = t.slice(end[0].length).trim()
  if (after !== "" && !after.startsWith("#")) fail(c, "text after a quoted scalar")
  return String(JSON.parse(end[0]))
}

const scalar = (c: Cursor, text: string): Yaml => {
  const t = text.trim()
  if (t.startsWith("\"") || t.startsWith("'")) return quoted(c, t)
  const plain = t.replace(/\s+#.*$/, "")
  if (plain === "{}") return {}
  if (plain.startsWith("[")) {
    if (!plain.endsWith("]")) fail(c, "a flow sequence must end on its line")
    const inner = plain.slice(1, -1).trim()
    if (/[[\]{}]/.test(inner)) fail(c, "nested flow collections are not supported")
    return inner === "" ? [] : inner.split(",").map((item) => scalar(c, item))
  }
  if (/^[&*!>{|?%@`]/.test(plain)) fail(c, "unsupported YAML (anchor, alias, tag, folded scalar or flow mapping)")
  if (plain === "true" || plain === "false") return plain === "true"
  if (plain === "null" || plain === "~" || plain === "") return null
  return /^-?\d+$/.test(plain) ? Number(plain) : plain
}

/** A `|` block scalar: the lines more indented than its key (blank lines kept), clipped to one final newline. */
const literal = (c: Cursor, parentIndent: number): string => {
  const body: Array<string> = []
  while (!done(c) && (c.lines[c.i]!.trim() === "" || indentOf(c.lines[c.i]!) > parentIndent)) body.push(c.lines[c.i++]!)
  while (body.length > 0 && body.at(-1)!.trim() === "") body.pop()
  if (body.length === 0) return ""
  const indent = indentOf(body[0]!)
  return body.map((l) => l.slice(indent)).join("\n") + "\n"
}

/** What follows `key:` or `- ` on the same line (`rest`), or, when nothing does, the more indented block below. */
const value = (c: Cursor, rest: string | undefined, indent: number): Yaml => {
  if (rest !== undefined && rest.trim() === "|") {
    c.i++
    return literal(c, indent)
  }
  if (rest !== undefined && rest.trim() !== "" && !rest.trim().startsWith("#")) {
    const read = scalar(c, rest)
    c.i++
    return read
  }
  c.i++
  skipBlank(c)
  return done(c) || indentOf(c.lines[c.i]!) <= indent ? null : block(c, indentOf(c.lines[c.i]!))
}

/** The next line of a block at `indent`, or undefined where the block ends. */
const nextLine = (c: Cursor, indent: number): string | undefined => {
  skipBlank(c)
  if (done(c) || indentOf(c.lines[c.i]!) < indent) return undefined
  if (indentOf(c.lines[c.i]!) > indent) fail(c, "unexpected indentation")
  return c.lines[c.i]!
}

const mapping = (c: Cursor, indent: number): Yaml => {
  const out: Record<string, Yaml> = {}
  for (let line = nextLine(c, indent); line !== undefined; line = nextLine(c, indent)) {
    const m = KEY.exec(line.trim()) ?? fail(c, "expected `key: value`")
    const key = m[1]!.startsWith("\"") ? String(JSON.parse(m[1]!)) : m[1]!
    if (key in out) fail(c, `duplicate key ${key}`)
    out[key] = value(c, m[2], indent)
  }
  return out
}

const sequence = (c: Cursor, indent: number): Yaml => {
  const out: Array<Yaml> = []
  for (let line = nextLine(c, indent); line !== undefined; line = nextLine(c, indent)) {
    if (!ITEM.test(line)) fail(c, "expected a `- ` sequence item")
    const rest = line.slice(indent + 1)
    if (KEY.test(rest.trim())) {
      // `- key: value`: a mapping whose first key sits two columns in; read it as if the dash were a space.
      c.lines[c.i] = " ".repeat(indent + 1) + rest
      out.push(mapping(c, indentOf(c.lines[c.i]!)))
    } else {
      out.push(value(c, rest.trim() === "" ? undefined : rest, indent))
    }
  }
  return out
}

const block = (c: Cursor, indent: number): Yaml => ITEM.test(c.lines[c.i]!) ? sequence(c, indent) : mapping(c, indent)

/** The document `source` holds; throws, naming the line, on anything outside the subset. */
export const parseYamlSubset = (source: string): Yaml => {
  const c: Cursor = { lines: source.split("\n"), i: 0 }
  const tab = c.lines.findIndex((l) => /^\s*\t/.test(l))
  if (tab >= 0) {
    c.i = tab
    fail(c, "tabs are not allowed in indentation")
  }
  skipBlank(c)
  if (done(c)) return null
  const doc = block(c, indentOf(c.lines[c.i]!))
  skipBlank(c)
  if (!done(c)) fail(c, "unexpected content")
  return doc
}
