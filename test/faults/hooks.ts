/** The vitest side of the fault harness (harness.ts itself stays free of vitest so bench/ can use it). */
import { afterAll, beforeAll } from "@effect/vitest"
import { killAll, snapshotMain } from "./harness.ts"

/**
 * The file's own copy of the compiled main, made before its tests (so a rebuild by another file cannot swap it
 * mid-test); after them, stray children are killed and the copy is removed.
 */
export const compiledMain = () => {
  let main: Awaited<ReturnType<typeof snapshotMain>> | undefined
  beforeAll(async () => {
    main = await snapshotMain()
  })
  afterAll(() => {
    killAll()
    main?.dispose()
  })
  return {
    get script() {
      if (main === undefined) throw new Error("the compiled main is made in beforeAll")
      return main.script
    }
  }
}
