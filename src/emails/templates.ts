/**
 * Kaiwa's email templates: typed data in, `{ subject, html, text }` out. Pure functions with no services, so
 * jobs, the preview command and tests call them directly. Every user-supplied value is cleaned (`fields.ts`)
 * and escaped (`html.ts`), and `findProblems` is the check a sender runs before anything leaves.
 */
export { escapeHtml, type Rendered, TEXT_WIDTH, wrapLine } from "./html.ts"
export { firstName, languageName } from "./fields.ts"
export { findProblems } from "./problems.ts"
export {
  type ReminderData,
  type ReminderSegment,
  reminderSegment,
  reminderSegments,
  renderReminder
} from "./reminder.ts"
export { type FounderData, renderFounder } from "./founder.ts"
export {
  type ProgressData,
  type ProgressTrend,
  progressTrend,
  progressTrends,
  renderProgress,
  weekdayLabels,
  weekRange
} from "./progress.ts"
