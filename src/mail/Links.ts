/**
 * The links an email carries for its recipient, made in one place that knows whether the email can really go
 * out. A live run signs them (src/mail/Unsubscribe.ts); a dry run, which prints every email to a console or a log,
 * gets a placeholder token that no verifier accepts, so its output never holds a working link signed with the
 * production secret. A link added later (the preference center) belongs here, under the same rule.
 */
import type { Settings } from "../config/Config.ts"
import { makePreferencesToken, makeToken, preferencesUrl, type UnsubscribeClaim, unsubscribeUrl } from "./Unsubscribe.ts"

/** Every per-recipient link a template shows. */
export interface EmailLinks {
  /** The one-click unsubscribe page for this recipient and list (also the List-Unsubscribe header). */
  readonly unsubscribeUrl: string
  /** The recipient's preference center (every list), linked from every footer. */
  readonly preferencesUrl: string
}

/**
 * The token text of every link in a dry run: it says what it is to a person reading the output, and it cannot
 * verify (no signature part), so the endpoints answer 400 and change nothing.
 */
export const DRY_RUN_TOKEN = "dry-run-not-a-valid-token"

/** Whether an email's links may be used: `live` signs them, `dryRun` puts `DRY_RUN_TOKEN` in their place. */
export type LinkMode = "live" | "dryRun"

/** The links of one email for `claim` (its recipient and list). */
export const linksFor = (config: Settings, claim: UnsubscribeClaim, mode: LinkMode): EmailLinks => {
  const dryRun = mode === "dryRun"
  return {
    unsubscribeUrl: unsubscribeUrl(config.appUrl, dryRun ? DRY_RUN_TOKEN : makeToken(config.unsubscribeSecret, claim)),
    preferencesUrl: preferencesUrl(
      config.appUrl,
      dryRun ? DRY_RUN_TOKEN : makePreferencesToken(config.unsubscribeSecret, { userId: claim.userId })
    )
  }
}
