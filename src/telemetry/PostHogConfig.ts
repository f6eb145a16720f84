/**
 * PostHog's settings, owned by the telemetry: `POSTHOG_API_KEY` (unset or blank: events are log lines) and
 * `POSTHOG_HOST` (PostHog's US ingestion host). A module of its own, without the SDK, so a process can read them
 * and load `posthog-node` only when the key is set. The same variables are also checked with every other setting
 * at start-up (src/config/Config.ts), so an operator sees every problem at once.
 */
import { Config, Effect, Option, Redacted } from "effect"
import { configProblem, every, parsedSetting } from "../config/Setting.ts"
import { hasControlCharacter, isBaseUrl } from "../config/Values.ts"

/** PostHog's US ingestion host, where a project key is sent unless POSTHOG_HOST says otherwise. */
export const DEFAULT_HOST = "https://us.i.posthog.com"

/** The settings `config` reads. */
export interface PostHogConfig {
  readonly apiKey: Option.Option<Redacted.Redacted<string>>
  readonly host: string
}

/** The project key: optional, never trimmed (surrounding whitespace is refused, as a pasted newline). */
const apiKey: Config.Config<Option.Option<Redacted.Redacted<string>>> = Config.option(Config.String("POSTHOG_API_KEY")).pipe(
  Config.mapEffect((given) => {
    const value = Option.getOrElse(given, () => "")
    if (value === "") return Effect.succeed(Option.none())
    if (hasControlCharacter(value)) return Effect.fail(configProblem("POSTHOG_API_KEY", "contains a control character (a trailing newline pasted with it?)"))
    if (value.trim() !== value) return Effect.fail(configProblem("POSTHOG_API_KEY", "has whitespace around it (a space or newline pasted with it?)"))
    return Effect.succeed(Option.some(Redacted.make(value)))
  })
)

/** PostHog's settings, every problem reported at once. */
export const config: Config.Config<PostHogConfig> = every({
  apiKey,
  host: parsedSetting(
    "POSTHOG_HOST",
    (s) => isBaseUrl(s) ? Option.some(s.replace(/\/+$/, "")) : Option.none(),
    "an absolute http(s) URL without a query or fragment",
    DEFAULT_HOST
  )
})
