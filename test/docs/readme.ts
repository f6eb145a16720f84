/** Reads the README's marked blocks, so the tests follow what the README says rather than a copy of it. */
import * as fs from "node:fs"

/** The fenced block right after `<!-- name -->` in README.md (its lines, without the fences). */
export const readmeBlock = (name: string, file = "README.md"): ReadonlyArray<string> => {
  const text = fs.readFileSync(file, "utf8")
  const marker = `<!-- ${name} -->\n`
  const at = text.indexOf(marker)
  if (at < 0) throw new Error(`${file} has no block marked <!-- ${name} -->`)
  const open = /^```[a-z]*\n/.exec(text.slice(at + marker.length))
  if (open === null) throw new Error(`${file}: <!-- ${name} --> is not followed by a fenced block`)
  const start = at + marker.length + open[0].length
  const end = text.indexOf("\n```", start)
  return text.slice(start, end).split("\n")
}
