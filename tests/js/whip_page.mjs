// Drives storef's product page (web/) in headless Debian chromium: sign in with a pasted token,
// go live with the fake camera over WHIP, wait, read the status panel, screenshot, end the stream.
// usage: node whip_page.mjs BASE_URL TOKEN_TEXT SECONDS SCREENSHOT_PATH
// Prints one JSON line with what the page showed.
import puppeteer from 'puppeteer-core';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const [base, tokenText, seconds, shot] = process.argv.slice(2);
const browser = await puppeteer.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  userDataDir: mkdtempSync(join(tmpdir(), 'whip-page-')),
  defaultViewport: { width: 1360, height: 1000 },
  args: ['--no-sandbox', '--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream',
    '--autoplay-policy=no-user-gesture-required', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--no-first-run'],
});
const text = (page, sel) => page.$eval(sel, (e) => e.textContent.trim());
try {
  const page = await browser.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  page.on('console', (m) => process.stderr.write(`[page] ${m.text()}\n`));
  await page.goto(base);
  await page.waitForSelector('#signin:not([hidden])');
  await page.type('#token-input', tokenText);
  await page.click('#signin-form button[type=submit]');
  await page.waitForSelector('#studio:not([hidden])', { timeout: 10000 });
  const user = await text(page, '#user-label');
  await page.type('#title', 'Browser test stream');
  await page.click('#go-live');
  await page.waitForFunction(() => document.getElementById('state-badge').textContent === 'Live', { timeout: 30000 });
  await new Promise((r) => setTimeout(r, Number(seconds) * 1000));
  const stats = await page.$$eval('#stats dd', (dds) => Object.fromEntries(dds.map((d) => [d.id, d.textContent])));
  const info = { whip: await text(page, '#info-whip'), playback: await text(page, '#info-playback') };
  const rowsLive = await page.$$eval('#streams-body tr', (rows) => rows.map((r) => r.textContent));
  await page.screenshot({ path: shot, fullPage: true });
  await page.click('#stop');
  await page.waitForSelector('#vod-done:not([hidden])', { timeout: 20000 });
  const vodHref = await page.$eval('#vod-link', (a) => a.href);
  await page.waitForFunction(() => [...document.querySelectorAll('#streams-body tr')].some((r) => r.textContent.includes('Ended')), { timeout: 10000 });
  const rowsAfter = await page.$$eval('#streams-body tr', (rows) => rows.map((r) => r.textContent));
  const badgeAfter = await text(page, '#state-badge');
  process.stdout.write(JSON.stringify({ ok: true, user, stats, info, rowsLive, rowsAfter, vodHref, badgeAfter, errors }) + '\n');
} catch (e) {
  process.stdout.write(JSON.stringify({ ok: false, error: String(e) }) + '\n');
} finally {
  await browser.close();
}
