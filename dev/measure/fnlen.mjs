// Heuristic function-length report (no TypeScript parser is installed: comments, strings, templates and regular
// expressions are blanked, then braces counted) for TypeScript sources: every function body ({ after `=>`, or after the
// parameter list of `function`/a method) longer than LIMIT lines. Usage: node fnlen.mjs [--limit N] files...
import { readFileSync } from "node:fs"
const args = process.argv.slice(2)
let limit = 60
if (args[0] === "--limit") { limit = Number(args[1]); args.splice(0, 2) }
const KEYWORDS = new Set(["if", "for", "while", "switch", "catch", "with", "return", "typeof", "await", "yield"])
let total = 0
for (const file of args) {
  const src = readFileSync(file, "utf8")
  // Blank out comments, strings and templates (keeping newlines and ${ } structure) so braces can be counted.
  let out = ""
  const stack = [] // template nesting: number of open braces inside each ${
  let i = 0
  const prevSignificant = () => { const m = out.match(/(\S)\s*$/); return m ? m[1] : "" }
  const prevWord = () => { const m = out.match(/([A-Za-z_$]+)\s*$/); return m ? m[1] : "" }
  while (i < src.length) {
    const c = src[i], n = src[i + 1]
    if (c === "/" && n === "/") { while (i < src.length && src[i] !== "\n") i++; continue }
    if (c === "/" && n === "*") { const e = src.indexOf("*/", i + 2); const chunk = src.slice(i, e + 2); out += chunk.replace(/[^\n]/g, " "); i = e + 2; continue }
    if (c === "\"" || c === "'") { let j = i + 1; while (src[j] !== c) { if (src[j] === "\\") j++; j++ } out += " ".repeat(j - i + 1); i = j + 1; continue }
    if (c === "/" && (/[(,=:[!&|?{};+\-*%<>~^]/.test(prevSignificant()) || prevSignificant() === "" || ["return", "typeof", "case"].includes(prevWord()))) {
      let j = i + 1, cls = false; while (j < src.length && (src[j] !== "/" || cls)) { if (src[j] === "\\") j++; else if (src[j] === "[") cls = true; else if (src[j] === "]") cls = false; else if (src[j] === "\n") break; j++ }
      out += " ".repeat(j - i + 1); i = j + 1; continue
    }
    if (c === "`" || (c === "}" && stack.length && stack[stack.length - 1] === 0)) {
      if (c === "}") stack.pop()
      let j = i + 1
      while (j < src.length && src[j] !== "`" && !(src[j] === "$" && src[j + 1] === "{")) { if (src[j] === "\\") j++; j++ }
      const chunk = src.slice(i + 1, j)
      out += (c === "}" ? "}" : " ") + chunk.replace(/[^\n]/g, " ")
      if (src[j] === "`") { out += " "; i = j + 1 } else { stack.push(0); out += "${"; i = j + 2 }
      continue
    }
    if (c === "{" && stack.length) stack[stack.length - 1]++
    if (c === "}" && stack.length) stack[stack.length - 1]--
    out += c; i++
  }
  const lines = (k) => out.slice(0, k).split("\n").length
  const opens = []
  for (let k = 0; k < out.length; k++) {
    if (out[k] === "{") {
      const before = out.slice(Math.max(0, k - 400), k).replace(/\s+$/, "")
      let isFn = before.endsWith("=>")
      if (!isFn && before.endsWith(")")) {
        // find matching (
        let depth = 0, p = before.length - 1
        for (; p >= 0; p--) { if (before[p] === ")") depth++; else if (before[p] === "(") { depth--; if (depth === 0) break } }
        const head = before.slice(0, p).replace(/<[^<>]*>\s*$/, "").replace(/\s+$/, "")
        const word = (head.match(/([A-Za-z_$][\w$]*)\*?$/) ?? head.match(/(function)\s*\*?\s*$/) ?? [])[1]
        isFn = /function\s*\*?\s*[\w$]*$/.test(head) || (word !== undefined && !KEYWORDS.has(word))
      }
      // a return-type annotation: `): Effect<...> {` or `): T {`
      if (!isFn && /\)\s*:\s*[^;{}()=]+$/.test(before)) isFn = true
      const lineText = src.split("\n")[lines(k) - 1].trim()
      opens.push({ k, isFn, line: lines(k), text: lineText })
    } else if (out[k] === "}") {
      const o = opens.pop()
      if (o && o.isFn) {
        const len = lines(k) - o.line + 1
        if (len > limit) { total++; console.log(`${file}:${o.line}\t${len} lines\t${o.text.slice(0, 90)}`) }
      }
    }
  }
}
console.log(`${total} functions over ${limit} lines`)
