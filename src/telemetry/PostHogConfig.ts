/**
 * PostHog's settings, owned by the telemetry: `POSTHOG_API_KEY` (unset or blank: events are log lines) and
 * `POSTHOG_HOST` (PostHog's US ingestion host). A module of its own, without the SDK, so a process can read them
 * and load `posthog-node` only when the key is set. The same variables are also checked with every other setting
 * at start-up (src/config/Config.ts), so an operator sees every problem at once.
 */
import type { Config, Redacted } from "effect"
import { Option } from "effect"
import { every, parsedSetting, secretSetting } from "../config/Setting.ts"
import { isBaseUrl } from "../config/Values.ts"

/** PostHog's US ingestion host, where a project key is sent unless POSTHOG_HOST says otherwise. */
export const DEFAULT_HOST = "https://us.i.posthog.com"

/** The settings `config` reads. */
export interface PostHogConfig {
  readonly apiKey: Option.Option<Redacted.Redacted<string>>
  readonly host: string
}

/** PostHog's settings, every problem reported at once. */
export const config: Config.Config<PostHogConfig> = every({
  apiKey: secretSetting("POSTHOG_API_KEY"),
  host: parsedSetting(
    "POSTHOG_HOST",
    (s) => isBaseUrl(s) ? Option.some(s.replace(/\/+$/, "")) : Option.none(),
    "an absolute http(s) URL without a query or fragment",
    DEFAULT_HOST
  )
})
