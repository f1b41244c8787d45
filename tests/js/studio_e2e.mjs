// Drives storef's page at / as a user would: paste a token, go live over WHIP from the fake
// camera, stay live SECONDS, take a screenshot, then play the stream's HLS with hls.js in a
// second page and report whether currentTime advances; finally stop from the page.
// usage: node studio_e2e.mjs BASE_URL TOKEN SECONDS SCREENSHOT_PATH
// Prints one JSON line with what it saw.
import puppeteer from 'puppeteer-core';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const [base, token, seconds, shot] = process.argv.slice(2);
const browser = await puppeteer.launch({
  protocolTimeout: 60000,
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  userDataDir: mkdtempSync(join(tmpdir(), 'storef-studio-')),
  args: [
    '--no-sandbox', '--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream',
    '--autoplay-policy=no-user-gesture-required', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--no-first-run', '--window-size=1400,1000',
  ],
  defaultViewport: { width: 1400, height: 1000 },
});
const out = {};
try {
  const page = await browser.newPage();
  page.on('console', (m) => process.stderr.write(`[studio] ${m.text()}\n`));
  await page.goto(base + '/');
  await page.type('#token-input', token);
  await page.click('#signin-form button[type=submit]');
  await page.waitForSelector('#studio:not([hidden])', { timeout: 10000 });
  await page.type('#title', 'e2e from the studio page');
  await page.click('#go-live');
  // Live when the page shows the stream's playback URL and the state badge says so.
  await page.waitForFunction(() => document.querySelector('#info-playback')?.textContent.includes('live.m3u8'), { timeout: 20000 });
  out.playbackUrl = await page.$eval('#info-playback', (e) => e.textContent.trim());
  await new Promise((r) => setTimeout(r, Number(seconds) * 1000));
  out.badge = await page.$eval('#state-badge', (e) => e.textContent.trim());
  await page.screenshot({ path: shot, fullPage: true });

  // A second page: hls.js plays the playlist while it is live.
  const viewer = await browser.newPage();
  await viewer.goto(base + '/healthz');
  await viewer.addScriptTag({ url: base + '/vendor/hls.min.js' });
  out.play = await viewer.evaluate(async (src) => {
    document.body.innerHTML = '<video id="v" muted autoplay playsinline></video>';
    const v = document.getElementById('v');
    const hls = new Hls({ liveSyncDurationCount: 2 });
    const errors = [];
    hls.on(Hls.Events.ERROR, (_, d) => { if (d.fatal) errors.push(d.details); });
    hls.loadSource(src);
    hls.attachMedia(v);
    await v.play().catch(() => {});
    await new Promise((r) => setTimeout(r, 4000));
    const t0 = v.currentTime;
    await new Promise((r) => setTimeout(r, 3000));
    return { t0, t1: v.currentTime, errors, width: v.videoWidth, height: v.videoHeight };
  }, out.playbackUrl);

  await viewer.close();
  await page.bringToFront();
  await page.click('#stop');
  await page.waitForSelector('#vod-done:not([hidden])', { timeout: 30000 });
  out.vod = await page.$eval('#vod-link', (e) => e.href);
  out.ok = true;
} catch (e) {
  out.ok = false;
  out.error = String(e);
} finally {
  await browser.close();
}
process.stdout.write(JSON.stringify(out) + '\n');
