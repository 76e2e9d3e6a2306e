// The model catalog in headless Chromium, as a newcomer uses it: read the index, filter by owner,
// sort by the headline metric, search, open a model card and screenshot it, then open the card of
// a model whose description is hostile markup. Prints what the pages showed at each step as one
// JSON document; test_catalog.py judges it.
//
//   node tests/catalog_browser.js SITE_DIR MODEL OWNER SCREENSHOT HOSTILE_MODEL
// with PLAYWRIGHT_CORE (the playwright-core folder) and CHROMIUM (the browser) in the environment.
"use strict";
const path = require("path");
const { pathToFileURL } = require("url");
const { chromium } = require(process.env.PLAYWRIGHT_CORE);

const [site, model, owner, screenshot, hostile] = process.argv.slice(2);
// Without the networking flags Chromium calls home (component updates, sync) from the test machine.
const FLAGS = [
  "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
  "--disable-component-update", "--disable-sync",
];

async function visibleRows(page) {
  return page.$$eval("#models tbody tr", (rows) => rows.filter((r) => !r.hidden).map((r) => ({
    name: r.cells[0].textContent.trim(),
    owner: r.cells[1].textContent.trim(),
    live: r.cells[5].innerText.replace(/\s+/g, " ").trim(),
    headline: r.cells[7].innerText.replace(/\s+/g, " ").trim(),
    worse: r.cells[7].querySelector(".worse") !== null,
  })));
}

async function table(page, selector) {
  return page.$$eval(`${selector} tbody tr`, (rows) => rows.map((r) =>
    Array.from(r.cells, (c) => c.textContent.replace(/\s+/g, " ").trim())));
}

(async () => {
  const browser = await chromium.launch({ executablePath: process.env.CHROMIUM, args: FLAGS });
  const out = { requests: [], console: [], errors: [], dialogs: [] };
  try {
    const context = await browser.newContext({ viewport: { width: 1100, height: 900 } });
    context.on("request", (request) => out.requests.push(request.url()));
    const page = await context.newPage();
    page.on("console", (message) => out.console.push(`${message.type()}: ${message.text()}`));
    page.on("pageerror", (error) => out.errors.push(String(error)));
    // An alert() smuggled in through a manifest would open a dialog: record it, and close it.
    page.on("dialog", (dialog) => { out.dialogs.push(dialog.message()); dialog.dismiss(); });

    await page.goto(pathToFileURL(path.join(site, "index.html")).href);
    out.filtersShown = await page.isVisible("#filters");
    out.all = await visibleRows(page);

    await page.selectOption("select[name=owner]", owner);
    out.owned = await visibleRows(page);
    out.count = await page.$eval("output[name=count]", (o) => o.value);
    await page.selectOption("select[name=owner]", "");

    const metric = page.locator("#models thead th button", { hasText: "Headline metric" });
    await metric.click();
    out.ascending = (await visibleRows(page)).map((r) => r.name);
    await metric.click();
    out.descending = (await visibleRows(page)).map((r) => r.name);

    await page.fill("input[name=q]", "anomaly");
    out.searched = (await visibleRows(page)).map((r) => r.name);
    await page.fill("input[name=q]", "");

    await Promise.all([page.waitForNavigation(), page.click(`a[href="models/${model}/index.html"]`)]);
    out.card = {
      title: await page.title(),
      environments: await table(page, "table.environments"),
      metrics: await table(page, "table.metrics"),
      metricNames: await page.$$eval("table.metrics thead th", (ths) => ths.map((th) => th.textContent.trim())),
      plots: await page.$$eval(".plots svg", (svgs) => svgs.map((s) => s.getAttribute("aria-label"))),
    };
    await page.screenshot({ path: screenshot, fullPage: true });

    await page.goto(pathToFileURL(path.join(site, "models", hostile, "index.html")).href);
    out.hostile = {
      description: await page.textContent("p.description"),
      images: await page.$$eval("main img", (images) => images.length),
    };
  } finally {
    await browser.close();
  }
  process.stdout.write(JSON.stringify(out) + "\n");
})().catch((error) => {
  console.error(error);
  process.exit(1);
});
