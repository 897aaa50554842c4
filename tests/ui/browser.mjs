// What every browser check shares: Debian's chromium launched through playwright-core, a page
// whose console errors, uncaught exceptions and failed loads are collected, and a `fail` that
// reports a mismatch without stopping the check (so one run reports every problem).
//
// Environment: CHROMIUM (default /usr/bin/chromium).
import { chromium } from "playwright-core";

export const fail = (message) => {
  console.error(`MISMATCH: ${message}`);
  process.exitCode = 1;
};

/// Runs `check(page, errors)` in a fresh page of the given size, closing the browser after.
/// `errors` fills with console errors, page errors and responses of 400 and above.
export async function withPage(viewport, check) {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
  });
  try {
    const page = await browser.newPage({ viewport });
    const errors = [];
    page.on("console", (message) => message.type() === "error" && errors.push(message.text()));
    page.on("pageerror", (error) => errors.push(String(error)));
    page.on("response", (response) => {
      if (response.status() >= 400) errors.push(`${response.status()} for ${response.url()}`);
    });
    await check(page, errors);
  } finally {
    await browser.close();
  }
}
