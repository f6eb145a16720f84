/**
 * How a setting is read and how a bad one is reported. Every reader collects its problems instead of stopping at
 * the first, so an operator learns everything that is wrong in one message (docs/configuration.md): the shared settings
 * through `Checks` (Config.ts), a job's own settings through effect `Config` readers (`localTime`, `weekday`,
 * `every`) that a job puts in its `Definition.settings`. A problem names the variable and never repeats its value.
 */
import { Config, Effect, Option, Record, Redacted, Result, Schema, SchemaIssue } from "effect"
import { hasControlCharacter, isWeakSecret, type LocalTime, MIN_DISTINCT_SECRET_CHARACTERS, parseLocalTime, parseWeekday, type Weekday } from "./Values.ts"

/** One thing wrong with one setting: `problem` completes a sentence that begins with the variable's name. */
export const Problem = Schema.Struct({ variable: Schema.String, problem: Schema.String })
export type Problem = typeof Problem.Type

/**
 * Settings that are missing or malformed. `variable` names them (comma-separated, in the order they were read),
 * `problems` says what is wrong with each; no value is ever repeated. Exit code 2 (src/triggers/Cli.ts).
 */
export class InvalidConfig extends Schema.TaggedError<InvalidConfig>()("InvalidConfig", {
  variable: Schema.String,
  message: Schema.String,
  problems: Schema.optional(Schema.Array(Problem))
}) {
  /** One error listing every problem. */
  static of(problems: readonly [Problem, ...Array<Problem>]): InvalidConfig {
    return new InvalidConfig({
      variable: [...new Set(problems.map((p) => p.variable))].join(", "),
      message: problems.length === 1
        ? `${problems[0].variable} ${problems[0].problem}`
        : `${problems.length} problems: ${problems.map((p) => `${p.variable} ${p.problem}`).join("; ")}`,
      problems
    })
  }
}

/** The problems an InvalidConfig carries (one, for an error built with a variable and a message only). */
export const problemsIn = (e: InvalidConfig): ReadonlyArray<Problem> =>
  e.problems ?? [{ variable: e.variable, problem: e.message.startsWith(e.variable) ? e.message.slice(e.variable.length + 1) : e.message }]

// --- The shared settings: a collector over raw values read once -------------------------------------------------

/** Reads a variable as given (no trimming, so whitespace and control characters can be judged); unreadable is unset. */
export const raw = (name: string): Effect.Effect<Option.Option<string>> =>
  Effect.orElseSucceed(Config.option(Config.String(name)), () => Option.none<string>())

/** What a secret must be: chosen by an operator (judged for weakness) or issued by a provider; a minimum length. */
export interface SecretRules {
  readonly operatorChosen: boolean
  readonly minLength?: number
}

/**
 * Validation of settings that collects every problem instead of stopping at the first. Each reader returns the
 * value, or `undefined` after recording why not; `problems` holds what was recorded, in reading order.
 */
export const makeChecks = (env: ReadonlyMap<string, Option.Option<string>>, live: boolean) => {
  const problems: Array<Problem> = []
  const report = (variable: string, problem: string): undefined => {
    problems.push({ variable, problem })
    return undefined
  }
  const given = (name: string): string | undefined => {
    const value = Option.getOrUndefined(env.get(name) ?? Option.none())
    return value === undefined || value === "" ? undefined : value
  }
  /** A plain setting: control characters refused, surrounding spaces trimmed; blank counts as unset. */
  const text = (name: string): string | undefined => {
    const value = given(name)
    if (value === undefined) return undefined
    const refused = textProblem(value)
    return refused !== undefined ? report(name, refused) : value.trim() === "" ? undefined : value.trim()
  }
  /** A secret: besides control characters, any surrounding whitespace is refused (never silently trimmed). */
  const secret = (name: string, rules: SecretRules) => {
    const value = given(name)
    if (value === undefined) return undefined
    const refused = secretProblem(value, rules)
    return refused !== undefined ? report(name, refused) : value
  }
  const required = <A>(name: string, value: A | undefined, fallback: A): A => {
    if (value !== undefined) return value
    // A value that was present but refused has been reported already; blank or absent is missing.
    if (live && problems.every((p) => p.variable !== name)) report(name, "is required in live mode")
    return fallback
  }
  /** Applies `parse` to a value that is present; a value that does not parse is reported, never echoed. */
  const parsed = <A>(name: string, value: string | undefined, parse: (s: string) => Option.Option<A>, expected: string) => {
    if (value === undefined) return undefined
    return Option.getOrElse(parse(value), () => report(name, `must be ${expected}`))
  }
  const check = (name: string, value: string | undefined, ok: (s: string) => boolean, expected: string) =>
    parsed(name, value, (s) => ok(s) ? Option.some(s) : Option.none(), expected)
  return { problems, report, text, secret, required, parsed, check }
}

/** The readers `makeChecks` gives. */
export type Checks = ReturnType<typeof makeChecks>

const textProblem = (value: string): string | undefined =>
  hasControlCharacter(value) ? "contains a control character (a line break, a tab or similar)" : undefined

const secretProblem = (value: string, rules: SecretRules): string | undefined => {
  if (hasControlCharacter(value)) return "contains a control character (a trailing newline pasted with it?)"
  if (value.trim() !== value) return "has whitespace around it (a space or newline pasted with it?)"
  if (rules.minLength !== undefined && value.length < rules.minLength) return `must be at least ${rules.minLength} characters`
  if (rules.operatorChosen && isWeakSecret(value)) {
    return `is trivially weak (fewer than ${MIN_DISTINCT_SECRET_CHARACTERS} different characters); use a random value`
  }
  return undefined
}

// --- A job's own settings: effect Config readers ----------------------------------------------------------------

/** A ConfigError naming `variable` with `problem` (the issue's message; the value is never part of it). */
const configProblem = (variable: string, problem: string): Config.ConfigError =>
  new Config.ConfigError(
    new Schema.SchemaError(new SchemaIssue.Pointer([variable], new SchemaIssue.InvalidValue({ message: problem })))
  )

/**
 * A setting read as the shared ones are (blank is unset, surrounding spaces trimmed, control characters refused)
 * and parsed; a value that does not parse fails naming the variable and what was expected.
 */
export const parsedSetting = <A>(name: string, parse: (s: string) => Option.Option<A>, expected: string, fallback: A): Config.Config<A> =>
  Config.option(Config.String(name)).pipe(Config.mapEffect((given) => {
    const value = Option.getOrUndefined(given)
    if (value === undefined || value === "" || (textProblem(value) === undefined && value.trim() === "")) return Effect.succeed(fallback)
    const refused = textProblem(value)
    if (refused !== undefined) return Effect.fail(configProblem(name, refused))
    return Option.match(parse(value.trim()), {
      onNone: () => Effect.fail(configProblem(name, `must be ${expected}`)),
      onSome: Effect.succeed
    })
  }))

/**
 * A secret read as the shared ones are (`secretProblem`: never trimmed, control characters and surrounding
 * whitespace refused, an operator's judged for weakness); unset or empty, None.
 */
export const secretSetting = (
  name: string,
  rules: SecretRules = { operatorChosen: false }
): Config.Config<Option.Option<Redacted.Redacted<string>>> =>
  Config.option(Config.String(name)).pipe(Config.mapEffect((given) => {
    const value = Option.getOrElse(given, () => "")
    if (value === "") return Effect.succeed(Option.none())
    const refused = secretProblem(value, rules)
    return refused === undefined ? Effect.succeed(Option.some(Redacted.make(value))) : Effect.fail(configProblem(name, refused))
  }))

/** A local time of day, "HH:MM" (minutes after local midnight), `fallback` when unset. */
export const localTime = (name: string, fallback: LocalTime): Config.Config<LocalTime> =>
  parsedSetting(name, parseLocalTime, "a local time HH:MM", fallback)

/** A day of the week, read case-insensitively ("Sunday"), `fallback` when unset. */
export const weekday = (name: string, fallback: Weekday): Config.Config<Weekday> =>
  parsedSetting(name, parseWeekday, "a day of the week (monday..sunday)", fallback)

/**
 * Like `Config.all` over a record, but every member is read and every bad one reported at once (`Config.all`
 * stops at the first).
 */
export const every = <const R extends Record<string, Config.Config<unknown>>>(
  configs: R
): Config.Config<{ -readonly [K in keyof R]: Config.Success<R[K]> }> =>
  Config.all(Record.map(configs, (config) =>
    config.pipe(
      Config.map((value) => Result.succeed(value)),
      Config.orElse((error) => Config.succeed(Result.fail(error)))
    ))).pipe(Config.mapEffect((results) => {
      const errors = Object.values(results).flatMap((r) => Result.isFailure(r) ? [r.failure] : [])
      if (errors.length > 0) return Effect.fail(mergeErrors(errors))
      // Every member succeeded: the record of their values is exactly the declared shape.
      return Effect.succeed(Record.map(results, (r) => Result.getOrThrow(r)) as { -readonly [K in keyof R]: Config.Success<R[K]> })
    }))

/** One ConfigError for several: the schema issues side by side (a provider's own failure wins: it says more). */
const mergeErrors = (errors: ReadonlyArray<Config.ConfigError>): Config.ConfigError => {
  const issues = errors.flatMap((e) => Schema.isSchemaError(e.cause) ? [e.cause.issue] : [])
  if (issues.length !== errors.length || issues.length === 1) return errors[0]!
  return new Config.ConfigError(
    new Schema.SchemaError(new SchemaIssue.Composite(Schema.Unknown.ast, [issues[0]!, ...issues.slice(1)]))
  )
}

// Formats issues without their input: a value must never reach a message (it may be a secret).
const formatter = SchemaIssue.makeFormatterStandardSchemaV1({
  leafHook: (issue) =>
    ownMessage(issue) ?? "is missing or invalid",
  checkHook: () => "is missing or invalid"
})

const ownMessage = (issue: SchemaIssue.Leaf): string | undefined =>
  issue._tag === "InvalidValue" && typeof issue.annotations?.message === "string" ? issue.annotations.message : undefined

/**
 * The problems in a ConfigError, read from its structure (the path of each issue names the variable), never by
 * parsing its text. A provider that could not be read at all names no variable.
 */
export const problemsOf = (error: Config.ConfigError): ReadonlyArray<Problem> => {
  if (!Schema.isSchemaError(error.cause)) return [{ variable: "configuration", problem: "could not be read" }]
  const issues = formatter(error.cause.issue).issues
  return issues.map((i) => ({
    variable: i.path?.map((segment) => String(typeof segment === "object" ? segment.key : segment)).join("_") || "a setting",
    problem: i.message
  }))
}

/** Reads a job's settings; a ConfigError becomes InvalidConfig naming every variable (exit 2). */
export const read = <C>(config: Config.Config<C>): Effect.Effect<C, InvalidConfig> =>
  Effect.mapError(config, (error) => {
    const problems = problemsOf(error)
    return InvalidConfig.of([problems[0] ?? { variable: "a setting", problem: "is missing or invalid" }, ...problems.slice(1)])
  })

/** The problems in reading one config (none when it reads). */
export const problemsReading = (config: Config.Config<unknown>): Effect.Effect<ReadonlyArray<Problem>> =>
  Effect.match(read(config), { onFailure: problemsIn, onSuccess: () => [] })
