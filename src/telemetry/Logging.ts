/**
 * Log output: one JSON object per line on Fly (`FLY_MACHINE_ID` set, or `LOG_FORMAT=json`), so `fly logs` can be
 * filtered by job and run id; short readable lines locally. Every line carries the annotations in force (job,
 * run id), and Redacted values print as `<redacted>` in both.
 */
import { Cause, Config, Effect, Layer, Logger, References } from "effect"

/** The two formats. */
export type LogFormat = "json" | "text"

const time = (d: Date) => d.toISOString().slice(11, 19)

const short = (value: unknown): string => {
  const s = typeof value === "string" ? value : JSON.stringify(value)
  return s.length > 200 ? `${s.slice(0, 197)}...` : s
}

/** A compact human format: `10:00:03 INFO  message  job=practice-reminders run=1a2b3c4d`. */
export const readable = Logger.make<unknown, string>(({ cause, date, fiber, logLevel, message }) => {
  const messages = Array.isArray(message) ? message : [message]
  let out = `${time(date)} ${logLevel.toUpperCase().padEnd(5)} ${messages.map((m) => typeof m === "string" ? m : short(m)).join(" ")}`
  const annotations = fiber.getRef(References.CurrentLogAnnotations)
  const extras = Object.entries(annotations)
    .filter(([k]) => k !== "stats")
    .map(([k, v]) => `${k === "runId" ? "run" : k}=${k === "runId" ? String(v).slice(0, 8) : short(v)}`)
  if (extras.length > 0) out += `  ${extras.join(" ")}`
  if (cause.reasons.length > 0 && !Cause.hasInterruptsOnly(cause)) out += `\n${Cause.pretty(cause).split("\n")[0]}`
  return out
})

const consoleReadable = Logger.make<unknown, void>((options) => {
  const line = readable.log(options)
  if (options.logLevel === "Error" || options.logLevel === "Fatal") console.error(line)
  else console.log(line)
})

/** The logger for a format. */
export const layerFormat = (format: LogFormat) =>
  Logger.layer([format === "json" ? Logger.consoleJson : consoleReadable])

/** JSON on Fly or when LOG_FORMAT=json, readable text otherwise. */
export const layer = Layer.unwrap(
  Effect.gen(function*() {
    const explicit = yield* Config.option(Config.Literals(["json", "text"], "LOG_FORMAT")).pipe(Effect.orElseSucceed(() => undefined))
    const onFly = yield* Config.option(Config.String("FLY_MACHINE_ID")).pipe(Effect.orElseSucceed(() => undefined))
    const format: LogFormat = explicit?._tag === "Some" ? explicit.value : onFly?._tag === "Some" ? "json" : "text"
    return layerFormat(format)
  })
)
