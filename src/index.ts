/**
 * kaiwa-jobs' public surface: what a job author, a test or a program that embeds the library uses. Everything
 * else under src/ is internal (the ledger and its tables, the delivery pipeline, the HTTP routes, the provider
 * adapters) and may change without notice; test/layout.test.ts keeps this list from growing by accident.
 *
 * - `Job`: declare a job (`Job.make`), run one (`Job.runJob`), its stats, outcome and report types.
 * - `Jobs`, `registry`, `findJob`: the jobs that ship, and the reference a program overrides to add its own.
 * - `Layers`: the ready-made environments (`live`, `dryRun`, `local`, `test`) and a fixed clock (`clockAt`).
 * - `Mailer` and its email types: the service a job sends through; `consoleMailer` prints instead of sending.
 * - `Email`: the building blocks of a template (paragraphs, links, tiles, a bar chart) and the field cleaners.
 */
export * as Job from "./job/Job.ts"
export * as Layers from "./job/Layers.ts"
export { findJob, type JobName, Jobs, type Registry, registry } from "./jobs/index.ts"
export { type Batch, consoleMailer, type DeliveryResult, Mailer, MailerError, type OutgoingEmail } from "./mail/Mailer.ts"
export * as Email from "./emails/public.ts"
