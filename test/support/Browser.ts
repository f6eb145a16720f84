/**
 * A real Chromium for tests, from npm: `@sparticuz/chromium` ships a headless-shell build inside the package
 * (unpacked to the temporary folder on first use; globalSetup does that once, before test files run in
 * parallel) and `puppeteer-core` drives it. Each test file launches one browser (`useBrowser()` in its describe
 * block: launched in beforeAll, closed in afterAll) and opens a page per check. Text is set in the package's own
 * font (Open Sans), so layouts and screenshots do not depend on the machine's fonts. Screenshots go under
 * `.screenshots/` (git-ignored) for a person to look at.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import chromium from "@sparticuz/chromium"
import puppeteer, { type Browser, type Page } from "puppeteer-core"
import { afterAll, beforeAll } from "vitest"

/** Where tests write screenshots (git-ignored). */
export const SCREENSHOTS = path.resolve(".screenshots")

/** Unpacks the browser if it is not yet (idempotent); returns the executable's path. */
export const chromiumPath = (): Promise<string> => chromium.executablePath()

/** Launches headless Chromium as the tests run it: the package's flags, no sandbox (tests run as root). */
export const launchBrowser = async (): Promise<Browser> => {
  const executablePath = await chromiumPath()
  return puppeteer.launch({
    executablePath,
    args: [...chromium.args, "--no-sandbox"],
    headless: true,
    // The package's fonts.conf lists the folder it unpacked Open Sans into.
    env: { ...process.env, FONTCONFIG_PATH: path.join(os.tmpdir(), "fonts"), HOME: process.env["HOME"] ?? os.tmpdir() }
  })
}

/**
 * One browser for the calling test file: call inside a `describe`; the returned function gives the browser
 * once beforeAll has run.
 */
export const useBrowser = (): (() => Browser) => {
  let browser: Browser | undefined
  beforeAll(async () => {
    browser = await launchBrowser()
  })
  afterAll(async () => {
    await browser?.close()
  })
  return () => {
    if (browser === undefined) throw new Error("the browser is not launched yet (use it inside a test)")
    return browser
  }
}

/** Opens a page at `width` x `height` CSS pixels with `html` loaded, runs `f`, and closes the page. */
export const withPage = async <A>(
  browser: Browser,
  options: { readonly width: number; readonly height?: number; readonly html: string },
  f: (page: Page) => Promise<A>
): Promise<A> => {
  const page = await browser.newPage()
  try {
    await page.setViewport({ width: options.width, height: options.height ?? 800 })
    // Emails load nothing from the network; anything they would fetch is refused rather than waited for.
    await page.setRequestInterception(true)
    page.on("request", (request) => void (request.url().startsWith("data:") ? request.continue() : request.abort()))
    await page.setContent(options.html, { waitUntil: "load" })
    return await f(page)
  } finally {
    await page.close()
  }
}

/** Saves a full-page screenshot as `.screenshots/<name>.png`; returns its path. */
export const screenshot = async (page: Page, name: string): Promise<string> => {
  fs.mkdirSync(SCREENSHOTS, { recursive: true })
  const file = path.join(SCREENSHOTS, `${name}.png`)
  await page.screenshot({ path: file as `${string}.png`, fullPage: true })
  return file
}
