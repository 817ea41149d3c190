// Headless Chromium clicks through the partner demo page: "Connect your
// bank" -> finxd start_url -> sandbox widget -> Approve -> finxd /callback
// -> back on the partner page, which must list the accounts (balance with
// currency) and transactions, and the link.completed webhook, verified.  A
// second flow is cancelled and must say so.
// Started by run.sh with the services up; prints TAP lines and a final
// "N passed, N failed", exits 1 on any failure.
import { chromium } from "playwright-core";
import { mkdtempSync, readFileSync } from "node:fs";
import { join } from "node:path";

const partner = process.env.PARTNER_URL;
const sandbox = process.env.SANDBOX_URL;
const dir = process.env.TEST_DIR;
const apiKey = readFileSync(process.env.API_KEY_FILE, "utf8").trim();

let n = 0;
let failed = 0;
function check(ok, what) {
  n++;
  if (!ok) failed++;
  console.log(`${ok ? "ok" : "not ok"} ${n} - ${what}`);
}

const context = await chromium.launchPersistentContext(
  mkdtempSync(join(dir, "chromium-profile-")),
  {
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    args: [
      "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
      "--no-first-run", "--disable-background-networking",
      "--disable-component-update", "--disable-sync",
    ],
    timeout: 60000,
  },
);
const page = context.pages()[0] || (await context.newPage());
page.setDefaultTimeout(30000);
const requested = [];
page.on("request", (r) => requested.push(r.url()));

try {
  // 1. the partner's page
  await page.goto(partner + "/");
  const button = page.locator("#connect");
  check(await button.isVisible(), "partner page shows the Connect button");
  check((await button.textContent()).includes("Connect your bank"),
    'button reads "Connect your bank"');
  const user = await page.locator("#user_id").inputValue();

  // 2. Connect -> finxd start_url -> sandbox widget
  await Promise.all([page.waitForURL(`${sandbox}/**`), button.click()]);
  check(page.url().startsWith(sandbox + "/widget"), "browser is on the sandbox widget");
  check(requested.some((u) => /\/start\//.test(u)),
    "the browser went through finxd's start_url");

  // 3. Approve -> /callback -> partner /return (which waits for the pull)
  await Promise.all([
    page.waitForURL(`${partner}/return**`, { timeout: 45000 }),
    page.locator("#approve").click(),
  ]);
  const back = new URL(page.url());
  check(back.searchParams.get("status") === "connected",
    "back on the partner's /return with status=connected");
  check(requested.some((u) => u.includes("/callback?")),
    "the widget redirected through finxd /callback");
  await page.locator("#accounts tr.account").first().waitFor({ timeout: 30000 });
  const accounts = await page.locator("#accounts tr.account").count();
  check(accounts > 0, `the page lists the accounts (${accounts})`);
  const balances = await page.locator("#accounts td.balance").allTextContents();
  check(balances.length > 0 && balances.every((b) => /^-?\d+(\.\d+)? [A-Z]{3}$/.test(b.trim())),
    "every balance is an exact decimal with its currency");
  const txns = await page.locator("#transactions tr.transaction").count();
  check(txns > 0 && txns <= 10, `the latest transactions are listed (${txns})`);
  check((await page.locator("#status").textContent()).includes(user),
    "the page names the partner's user");
  const html = await page.content();
  check(!html.includes(apiKey) && !requested.some((u) => u.includes(apiKey)),
    "the API key never reaches the browser");
  // finxd's webhooks reach the partner, which verifies them with the
  // Standard Webhooks library and lists them on the page (polled).
  const hook = page.locator('#webhooks tr.webhook[data-type="link.completed"]').first();
  await hook.waitFor({ timeout: 20000 });
  check((await hook.getAttribute("data-verified")) === "true" &&
    (await hook.locator("td.verified").textContent()) === "yes",
    "the link.completed webhook shows up on the page, verified");
  const forged = await fetch(partner + "/webhooks", {
    method: "POST",
    headers: {
      "content-type": "application/json",
      "webhook-id": "evt_forged",
      "webhook-timestamp": String(Math.floor(Date.now() / 1000)),
      "webhook-signature": "v1,bm90IGEgc2lnbmF0dXJlIG9mIGFueSBzZWNyZXQ=",
    },
    body: JSON.stringify({ id: "evt_forged", type: "link.forged", data: {} }),
  });
  const bad = page.locator('#webhooks tr.webhook[data-type="link.forged"]').first();
  await bad.waitFor({ timeout: 10000 });
  check(forged.status === 400 && (await bad.getAttribute("data-verified")) === "false",
    "a forged webhook is refused (400) and listed as not verified");
  const shot = join(dir, "partner-connected.png");
  await page.screenshot({ path: shot, fullPage: true });
  check(readFileSync(shot).length > 1000, `screenshot saved (${shot})`);

  // 4. a cancelled flow comes back as cancelled, with no data shown
  await page.goto(partner + "/");
  await Promise.all([page.waitForURL(`${sandbox}/**`), page.locator("#connect").click()]);
  await Promise.all([page.waitForURL(`${partner}/return**`), page.locator("#cancel").click()]);
  const status = await page.locator("#status").textContent();
  check(status.includes("cancelled") && (await page.locator("#accounts").count()) === 0,
    "a cancelled flow shows status cancelled and no accounts");
} catch (e) {
  check(false, `unexpected error: ${e.message.split("\n")[0]}`);
  try {
    await page.screenshot({ path: join(dir, "failure.png"), fullPage: true });
    console.log(`# failure screenshot: ${join(dir, "failure.png")} at ${page.url().split("?")[0]}`);
  } catch {
    /* the browser may be gone */
  }
} finally {
  await context.close();
}
console.log(`1..${n}`);
console.log(`${n - failed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
