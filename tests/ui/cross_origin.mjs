// A web page on another origin against a ragway serving without keys, in a real browser
// (Debian's chromium through playwright-core): the page, served by a second server on another
// port, tries to read /models, to post a document as text/plain (a request browsers send
// without asking) and as JSON (which needs the server's permission first), and the browser is
// pointed at ragway under a rebound name, as DNS rebinding would. None of it may read or write.
// Run by crates/ragway/tests/web_pages.rs, which then checks the store is unchanged.
//
// Environment: RAGWAY_URL, RAGWAY_PORT, SCREENSHOT, CHROMIUM (default /usr/bin/chromium).
import http from "node:http";
import { chromium } from "playwright-core";
import { fail } from "./browser.mjs";

const ragway = process.env.RAGWAY_URL;
const port = process.env.RAGWAY_PORT;
const screenshot = process.env.SCREENSHOT ?? "cross_origin.png";

// The other origin: a page with nothing but a heading.
const site = http.createServer((_, response) => {
  response.writeHead(200, { "content-type": "text/html" });
  response.end("<!doctype html><title>another site</title><h1>another site</h1>");
});
await new Promise((resolve) => site.listen(0, "127.0.0.1", resolve));
const origin = `http://127.0.0.1:${site.address().port}`;

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  // evil.example resolves to this machine, as a rebinding attacker's DNS would make it.
  args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
    "--host-resolver-rules=MAP evil.example 127.0.0.1"],
});
try {
  const page = await browser.newPage();
  await page.goto(origin);
  const outcomes = await page.evaluate(async (ragway) => {
    const attempt = async (what, request) => {
      try {
        const response = await request();
        // An opaque answer (no-cors) has status 0 and no body the page can read.
        return `${what}: status ${response.status}, type ${response.type}, body "${await response.text()}"`;
      } catch (error) {
        return `${what}: blocked (${error.name})`;
      }
    };
    const documents = JSON.stringify({ documents: [{ id: "planted", text: "written by a page" }] });
    return [
      await attempt("read", () => fetch(`${ragway}/models`)),
      await attempt("text/plain", () => fetch(`${ragway}/stores/notes/documents`, {
        method: "POST", mode: "no-cors", headers: { "content-type": "text/plain" }, body: documents })),
      await attempt("json", () => fetch(`${ragway}/stores/notes/documents`, {
        method: "POST", headers: { "content-type": "application/json" }, body: documents })),
    ];
  }, ragway);
  for (const outcome of outcomes) console.log(outcome);
  if (!outcomes[0].startsWith("read: blocked")) fail(`the page read /models: ${outcomes[0]}`);
  if (!outcomes[1].includes('status 0, type opaque, body ""')) fail(`text/plain: ${outcomes[1]}`);
  if (!outcomes[2].startsWith("json: blocked")) fail(`the page posted JSON: ${outcomes[2]}`);

  // Rebinding: the page's own name, now pointing at ragway, gets nothing.
  const rebound = await page.goto(`http://evil.example:${port}/models`);
  const text = await rebound.text();
  console.log(`rebound: ${rebound.status()} ${text}`);
  if (rebound.status() !== 421) fail(`ragway answered a rebound name with ${rebound.status()}: ${text}`);
  if (text.includes("llm_models")) fail("a rebound page read the model list");

  await page.screenshot({ path: screenshot });
  if (!process.exitCode) console.log("cross_origin check passed");
} finally {
  await browser.close();
  site.close();
}
