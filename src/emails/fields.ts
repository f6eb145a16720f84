/**
 * Turning user-supplied values (a display name, a language from a session row) into short, printable strings
 * that are safe in a subject line, an HTML body and a plain-text body. These values come from whatever a
 * person typed or an upstream system stored, so they may hold control characters, bidi overrides, template
 * syntax, megabytes of text, or the literal words "undefined" and "null". HTML escaping happens later, in
 * `html.ts`; this module makes the value itself sensible.
 */
import { hasProblemWord } from "./problems.ts"

// Cc: C0/C1 controls (including NUL, DEL, NEL). Cf: format characters, i.e. zero-width spaces and joiners,
// bidi embeddings/overrides/isolates, the BOM, soft hyphens, and emoji tag characters. Cs: lone surrogates,
// which cannot be encoded as UTF-8. Removing ZWJ splits a family emoji into its people, which still reads.
const INVISIBLE = /[\p{Cc}\p{Cf}\p{Cs}]/gu
// Every kind of whitespace and line break (including U+2028/2029 and NEL) becomes one space, so a value can
// never add a line to a header or to the text part.
const SPACES = /[\s\u0085]+/gu

/**
 * Like `cleanInline` but keeps one leading or trailing space: for a piece of a sentence that a link follows or
 * precedes ("If you have 15 minutes, " + link), whose edge space separates two words.
 */
export const collapseInline = (s: string): string => s.replace(SPACES, " ").replace(INVISIBLE, "").replace(/ {2,}/g, " ")

/** Makes a value single-line and printable: whitespace collapsed, control/format characters removed. */
export const cleanInline = (s: string): string => collapseInline(s).trim()

const graphemes = new Intl.Segmenter("en", { granularity: "grapheme" })

/**
 * Keeps at most `max` code points, cutting only between grapheme clusters so an emoji (with its skin-tone
 * modifier) or a letter with its accents is kept whole or dropped whole.
 */
export const capCodePoints = (s: string, max: number): string => {
  if (s.length <= max) return s
  let out = ""
  let count = 0
  for (const { segment } of graphemes.segment(s)) {
    const size = Array.from(segment).length
    if (count + size > max) break
    out += segment
    count += size
  }
  // A single cluster longer than `max` (stacked combining marks): fall back to whole code points.
  return out === "" ? Array.from(s).slice(0, max).join("") : out
}

/** The longest first name the templates print, in code points. */
export const MAX_FIRST_NAME = 40

const FALLBACK_NAME = "there"

/**
 * The first word of a display name, for "Hi Aiko,"; "there" when there is none.
 *
 * Decision on names that look like template bugs: the rendered output is what `findProblems` checks, so a name
 * must not be able to make a correct email look broken. `{` and `}` are removed (so "{{name}}" becomes "name"),
 * and a name that is, or contains as a separate word, "undefined", "null" or "NaN" (the same patterns
 * `findProblems` uses) falls back to "there". Such a user gets a generic greeting, which is the honest
 * outcome: we cannot tell their name from a bug.
 */
export const firstName = (displayName: string | null): string => {
  if (displayName === null) return FALLBACK_NAME
  const first = cleanInline(displayName.replace(/[{}]/g, "")).split(" ")[0] ?? ""
  // A trailing comma or semicolon ("Smith, John") would double up with the greeting's own comma.
  const name = capCodePoints(first.replace(/[,;:]+$/u, ""), MAX_FIRST_NAME)
  return name === "" || hasProblemWord(name) ? FALLBACK_NAME : name
}

const LANGUAGES: ReadonlyMap<string, string> = new Map([
  ["ar", "Arabic"],
  ["zh", "Chinese"],
  ["cs", "Czech"],
  ["da", "Danish"],
  ["nl", "Dutch"],
  ["en", "English"],
  ["fi", "Finnish"],
  ["fr", "French"],
  ["de", "German"],
  ["el", "Greek"],
  ["he", "Hebrew"],
  ["hi", "Hindi"],
  ["id", "Indonesian"],
  ["it", "Italian"],
  ["ja", "Japanese"],
  ["ko", "Korean"],
  ["nb", "Norwegian"],
  ["no", "Norwegian"],
  ["pl", "Polish"],
  ["pt", "Portuguese"],
  ["ru", "Russian"],
  ["es", "Spanish"],
  ["sv", "Swedish"],
  ["th", "Thai"],
  ["tr", "Turkish"],
  ["uk", "Ukrainian"],
  ["vi", "Vietnamese"]
])

const NAMES_BY_LOWER: ReadonlyMap<string, string> = new Map(
  Array.from(LANGUAGES.values(), (name) => [name.toLowerCase(), name] as const)
)

// A BCP 47-ish tag: a 2-3 letter primary language, then optional subtags ("pt-BR", "zh_Hant", "ja-JP").
const LANGUAGE_TAG = /^([a-z]{2,3})(?:[-_][a-z0-9]{1,8})*$/

/** The longest language label the templates print, in code points. */
export const MAX_LANGUAGE = 40

/**
 * A human name for a stored language ("ja" -> "Japanese", "pt-BR" -> "Portuguese", "spanish" -> "Spanish"),
 * the cleaned raw value when it is not a code we know, or null when nothing printable is left. A value such as
 * "nan" or "null" is treated as missing (it is far more likely a leaked NaN/null than ISO 639-3 "nan").
 */
export const languageName = (language: string | null): string | null => {
  if (language === null) return null
  const cleaned = capCodePoints(cleanInline(language.replace(/[{}]/g, "")), MAX_LANGUAGE)
  if (cleaned === "" || hasProblemWord(cleaned) || /^nan$/i.test(cleaned)) return null
  const lower = cleaned.toLowerCase()
  const primary = LANGUAGE_TAG.exec(lower)?.[1]
  return (primary === undefined ? undefined : LANGUAGES.get(primary)) ?? NAMES_BY_LOWER.get(lower) ?? cleaned
}
