// Opens Swagger UI (GET /docs) in a real browser — Debian's chromium through playwright-core —
// and checks that it renders every operation of /openapi.json from the vendored assets, with
// the page's Content-Security-Policy in force and blocking nothing. Run by
// crates/ragway/tests/openapi.rs.
//
// Environment: RAGWAY_URL (the server), OPERATIONS (how many operations the document has),
// SCREENSHOT (where to save a screenshot), CHROMIUM (default /usr/bin/chromium).
import { fail, withPage } from "./browser.mjs";

const url = process.env.RAGWAY_URL;
const expected = Number(process.env.OPERATIONS);
const screenshot = process.env.SCREENSHOT ?? "docs.png";

await withPage({ width: 1200, height: 900 }, async (page, consoleErrors) => {
  const offServer = [];
  page.on("request", (request) => {
    if (!request.url().startsWith(url) && !request.url().startsWith("data:")) offServer.push(request.url());
  });
  // What the policy blocks is reported to the page as events; keep them.
  await page.addInitScript(() => {
    window.violations = [];
    document.addEventListener("securitypolicyviolation", (event) =>
      window.violations.push(`${event.violatedDirective} blocked ${event.blockedURI || "inline"}`));
  });

  const response = await page.goto(`${url}/docs`);
  const policy = response.headers()["content-security-policy"] ?? "";
  if (!policy.includes("default-src 'none'")) fail(`no restrictive Content-Security-Policy: "${policy}"`);

  await page.waitForSelector(".swagger-ui .info .title", { timeout: 60_000 });
  const title = (await page.textContent(".swagger-ui .info .title")).trim();
  if (!title.startsWith("ragway")) fail(`title is "${title}"`);
  await page.waitForSelector(".opblock", { timeout: 60_000 });
  const operations = await page.$$eval(".opblock", (blocks) => blocks.length);
  if (operations !== expected) fail(`${operations} operations rendered, the document has ${expected}`);

  // Open one operation: its parameters and responses render from the schemas.
  await page.click("#operations-generate-generate .opblock-summary");
  await page.waitForSelector("#operations-generate-generate .responses-table", { timeout: 30_000 });
  const responses = await page.$$eval("#operations-generate-generate .responses-table .response", (rows) =>
    rows.map((row) => row.getAttribute("data-code")));
  for (const code of ["200", "400", "422"]) {
    if (!responses.includes(code)) fail(`POST /generate shows responses ${responses.join(",")}, not ${code}`);
  }

  const violations = await page.evaluate(() => window.violations);
  if (violations.length) fail(`the Content-Security-Policy blocked: ${violations.join(" | ")}`);
  if (consoleErrors.length) fail(`browser console errors: ${consoleErrors.join(" | ")}`);
  if (offServer.length) fail(`requests off the server: ${offServer.join(", ")}`);

  await page.screenshot({ path: screenshot });
  console.log(`"${title}": ${operations} operations; POST /generate responses ${responses.join(",")}`);
  console.log(`screenshot: ${screenshot}`);
  if (!process.exitCode) console.log("docs check passed");
});
