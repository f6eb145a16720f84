/** The emails barrel; see `templates.ts`. */
export * from "./templates.ts"
