/**
 * One sample of every email variant, for `kaiwa-jobs preview`, which writes each to an HTML file so a person
 * can look at the real layout before a deploy. The samples use fixed example data and a placeholder token.
 */
import { renderFounder } from "./founder.ts"
import type { Rendered } from "./html.ts"
import { reminderSegments, renderReminder } from "./reminder.ts"

const SAMPLE_APP_URL = "https://kaiwa.example"
const SAMPLE_UNSUBSCRIBE_URL = `${SAMPLE_APP_URL}/unsubscribe?token=sample-token`

const LANGUAGE_VARIANTS: ReadonlyArray<{ readonly suffix: string; readonly language: string | null }> = [
  { suffix: "with-language", language: "ja" },
  { suffix: "no-language", language: null }
]

// Days since the last session that land in each segment.
const SAMPLE_DAYS = { never: null, days1to2: 1, days3to6: 4, days7to29: 12, days30plus: 45 } as const

/** Every variant, named for a file: 5 reminder segments with and without a language, then founder days 1-3. */
export const sampleVariants = (): ReadonlyArray<{ readonly name: string; readonly rendered: Rendered }> => [
  ...reminderSegments.flatMap((segment) =>
    LANGUAGE_VARIANTS.map(({ suffix, language }) => ({
      name: `reminder-${segment}-${suffix}`,
      rendered: renderReminder({
        displayName: "Aiko Tanaka",
        language,
        daysSinceLastSession: SAMPLE_DAYS[segment],
        appUrl: SAMPLE_APP_URL,
        unsubscribeUrl: SAMPLE_UNSUBSCRIBE_URL
      })
    }))
  ),
  ...([1, 2, 3] as const).map((step) => ({
    name: `founder-day${step}`,
    rendered: renderFounder({
      step,
      displayName: "Aiko Tanaka",
      appUrl: SAMPLE_APP_URL,
      callUrl: "https://cal.example/kaiwa/15min",
      unsubscribeUrl: SAMPLE_UNSUBSCRIBE_URL,
      founderName: "Sam"
    })
  }))
]
