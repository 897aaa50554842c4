// Drives ragway's playground (GET /ui) in a real browser — Debian's chromium through
// playwright-core — asking a question and checking that the answer streams in and the sources
// with their scores, the usage and the timings appear. Run by crates/ragway/tests/offline.rs.
//
// Environment: RAGWAY_URL (the server), LLM and STORE (names to pick), QUESTION, SOURCE_WORD
// (a word the first source must contain), SCREENSHOT (where to save a screenshot),
// CHROMIUM (default /usr/bin/chromium).
import { fail, withPage } from "./browser.mjs";

const url = process.env.RAGWAY_URL;
const screenshot = process.env.SCREENSHOT ?? "playground.png";

await withPage({ width: 1100, height: 900 }, async (page, consoleErrors) => {
  await page.goto(`${url}/ui`);
  await page.waitForSelector(`#llm option[value="${process.env.LLM}"]`, { state: "attached" });
  await page.selectOption("#llm", process.env.LLM);
  await page.selectOption("#store", process.env.STORE);
  await page.fill("#prompt", process.env.QUESTION);

  // Watch the answer grow: streaming means it is seen partial before it is done.
  const lengths = [];
  const watch = setInterval(async () => {
    try {
      lengths.push((await page.textContent("#answer")).length);
    } catch {}
  }, 25);
  await page.click("#go");
  await page.waitForSelector('#answer[data-done="true"]', { timeout: 120_000 });
  clearInterval(watch);

  const answer = (await page.textContent("#answer")).trim();
  if (!answer) fail("the answer is empty");
  const partial = lengths.filter((n) => n > 0 && n < answer.length);
  if (partial.length === 0) fail(`the answer did not stream (lengths seen: ${lengths.join(",")})`);
  const sources = await page.$$eval("#sources li", (items) =>
    items.map((li) => ({ meta: li.querySelector(".meta").textContent, text: li.querySelector(".text").textContent })));
  if (sources.length === 0) fail("no sources are shown");
  else {
    if (!sources[0].text.toLowerCase().includes(process.env.SOURCE_WORD)) {
      fail(`the first source lacks "${process.env.SOURCE_WORD}": ${sources[0].text}`);
    }
    if (!/score \d\.\d{3}/.test(sources[0].meta)) fail(`no score in "${sources[0].meta}"`);
  }
  const stats = await page.textContent("#stats");
  for (const part of ["tokens in", "out", "retrieval", "generation", "total"]) {
    if (!stats.includes(part)) fail(`usage/timings line lacks "${part}": ${stats}`);
  }
  const error = (await page.textContent("#error")).trim();
  if (error) fail(`the page shows an error: ${error}`);
  if (consoleErrors.length) fail(`browser console errors: ${consoleErrors.join(" | ")}`);

  await page.screenshot({ path: screenshot, fullPage: true });
  console.log(`answer (${answer.length} chars, seen partial ${partial.length} times): ${answer.slice(0, 80)}`);
  console.log(`sources: ${sources.length}; ${stats}`);
  console.log(`screenshot: ${screenshot}`);
  if (!process.exitCode) console.log("playground check passed");
});
