/**
 * The last line of defence before an email leaves: a scan of the rendered subject, HTML and text for the marks
 * of a template bug (an unfilled `{{placeholder}}`, a stringified `undefined`, `null`, `NaN` or object, a
 * control character that could split a header or hide text). The templates are built so that none of these
 * can appear; callers still run this check and refuse to send when it reports anything, and the template tests
 * run it over hostile inputs.
 */
import type { Rendered } from "./html.ts"

// A word counts only when it is not part of a longer run of URL-safe characters. `-` and `_` are included so
// that a base64url token in an unsubscribe link can never look like one of these words by chance, which would
// block one user's emails forever (tokens are deterministic). The same patterns decide which display names
// and languages the templates neutralise, so the two can never disagree.
const word = (w: string, flags: string): RegExp => new RegExp(`(?<![A-Za-z0-9_-])${w}(?![A-Za-z0-9_-])`, flags)

/** Words that betray a missing value; `NaN` is case-sensitive so that the name "Nan" stays a name. */
export const PROBLEM_WORDS: ReadonlyArray<readonly [name: string, pattern: RegExp]> = [
  ["undefined", word("undefined", "i")],
  ["null", word("null", "i")],
  ["NaN", word("NaN", "")]
]

/** True when `s` contains a word from `PROBLEM_WORDS`. */
export const hasProblemWord = (s: string): boolean => PROBLEM_WORDS.some(([, pattern]) => pattern.test(s))

const MARKERS: ReadonlyArray<readonly [name: string, marker: string]> = [
  ["unfilled placeholder {{", "{{"],
  ["unfilled placeholder }}", "}}"],
  ["unfilled placeholder ${", "${"],
  ["[object Object]", "[object "]
]

// Line breaks and tabs are legitimate in a body, nowhere else; everything else in Cc/Cf (C0/C1 controls,
// zero-width and bidi-override characters) and lone surrogates are not.
const BODY_CONTROL = /(?![\t\n\r])[\p{Cc}\p{Cf}\p{Cs}]/u
const SUBJECT_CONTROL = /[\p{Cc}\p{Cf}\p{Cs}\u2028\u2029]/u

/** Lists what is wrong with a rendered email, e.g. `"subject: unfilled placeholder {{"`; empty when clean. */
export const findProblems = (r: Rendered): ReadonlyArray<string> => {
  const problems: Array<string> = []
  const parts = [["subject", r.subject], ["html", r.html], ["text", r.text]] as const
  for (const [part, value] of parts) {
    if (value.trim() === "") problems.push(`${part}: empty`)
    for (const [name, marker] of MARKERS) {
      if (value.includes(marker)) problems.push(`${part}: ${name}`)
    }
    for (const [name, pattern] of PROBLEM_WORDS) {
      if (pattern.test(value)) problems.push(`${part}: ${name}`)
    }
    if ((part === "subject" ? SUBJECT_CONTROL : BODY_CONTROL).test(value)) {
      problems.push(`${part}: control character`)
    }
  }
  if (/<script/i.test(r.html)) problems.push("html: script tag")
  return problems
}
