/** What a template author uses (re-exported from src/index.ts as `Email`): the blocks an email is made of and the field cleaners. */
export { firstName, languageName } from "./fields.ts"
export { type BarChart, type Block, count, type EmailContent, escapeHtml, link, type Link, type Paragraph, renderEmail, type Rendered, type Tiles } from "./html.ts"
