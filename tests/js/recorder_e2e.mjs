// Drives storef's MediaRecorder example page at /recorder as a user would: paste a token, choose
// the format, record the fake camera for SECONDS while the page uploads each 2 s blob, check that
// the page's hls.js player advances while live, then stop. Every blob the recorder produced is
// also written to OUT_DIR/blob_NNN.{mp4,webm} so the caller can probe them concatenated.
// With LOSE_ANSWER = n, the answer to the n-th upload request (1-based) is replaced by a connection
// reset after storef has handled it, as a dropped connection would: the page must retry.
// usage: node recorder_e2e.mjs BASE_URL TOKEN FORMAT(mp4|webm) SECONDS OUT_DIR SCREENSHOT_PATH [LOSE_ANSWER]
// Prints one JSON line with what it saw.
import puppeteer from 'puppeteer-core';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const [base, token, format, seconds, outDir, shot, loseAnswer] = process.argv.slice(2);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const browser = await puppeteer.launch({
  protocolTimeout: 60000,
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  userDataDir: mkdtempSync(join(tmpdir(), 'storef-recorder-')),
  args: [
    '--no-sandbox', '--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream',
    '--autoplay-policy=no-user-gesture-required', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--no-first-run', '--window-size=1400,1000',
  ],
  defaultViewport: { width: 1400, height: 1000 },
});
const out = { format, blobs: [] };
try {
  const page = await browser.newPage();
  page.on('console', (m) => process.stderr.write(`[recorder] ${m.text()}\n`));
  page.on('pageerror', (e) => process.stderr.write(`[recorder] page error: ${e}\n`));
  await page.exposeFunction('storefSaveBlob', (seq, ext, b64) => {
    const name = `blob_${String(seq).padStart(3, '0')}.${ext}`;
    writeFileSync(join(outDir, name), Buffer.from(b64, 'base64'));
    out.blobs.push(name);
  });
  if (loseAnswer) {
    // The DevTools Fetch domain pauses each upload at its response: the server has answered.
    const cdp = await page.createCDPSession();
    let n = 0;
    out.lost = [];
    cdp.on('Fetch.requestPaused', async (ev) => {
      n += 1;
      if (n === Number(loseAnswer)) {
        out.lost.push({ request: n, status: ev.responseStatusCode });
        await cdp.send('Fetch.failRequest', { requestId: ev.requestId, errorReason: 'ConnectionReset' });
      } else {
        await cdp.send('Fetch.continueRequest', { requestId: ev.requestId });
      }
    });
    await cdp.send('Fetch.enable', { patterns: [{ urlPattern: '*/upload', requestStage: 'Response' }] });
  }
  await page.goto(base + '/recorder');
  await page.type('#token-input', token);
  await page.click('#signin-form button[type=submit]');
  await page.waitForSelector('#studio:not([hidden])', { timeout: 10000 });
  await page.select('#format', format);
  await page.type('#title', `e2e MediaRecorder ${format}`);
  // Keep a copy of every blob, exactly as the page uploads it.
  await page.evaluate(() => {
    const st = window.storefRecorder;
    st.saves = [];
    st.onBlob = (seq, blob) => {
      const ext = blob.type.startsWith('video/webm') ? 'webm' : 'mp4';
      st.saves.push(blob.arrayBuffer().then((buf) => {
        let bin = '';
        const bytes = new Uint8Array(buf);
        for (let i = 0; i < bytes.length; i += 0x8000) bin += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
        return window.storefSaveBlob(seq, ext, btoa(bin));
      }));
    };
  });
  await page.click('#start');
  await page.waitForFunction(() => window.storefRecorder.phase === 'recording', { timeout: 20000 });
  out.mimeType = await page.evaluate(() => window.storefRecorder.mimeType);
  out.streamId = await page.evaluate(() => window.storefRecorder.stream.streamId);
  const secs = Number(seconds);
  // hls.js in the page's player while live: currentTime must advance.
  await sleep((secs - 6) * 1000);
  out.play = { t0: await page.$eval('#player', (v) => v.currentTime) };
  await sleep(4000);
  Object.assign(out.play, await page.$eval('#player', (v) => ({ t1: v.currentTime, width: v.videoWidth, height: v.videoHeight })));
  out.play.errors = await page.evaluate(() => window.storefRecorder.hlsErrors.slice());
  out.play.badge = await page.$eval('#player-badge', (e) => e.textContent.trim());
  await page.screenshot({ path: shot, fullPage: true });
  await sleep(2000);
  await page.click('#stop');
  await page.waitForSelector('#vod-done:not([hidden])', { timeout: 60000 });
  out.vod = await page.$eval('#vod-link', (e) => e.href);
  Object.assign(out, await page.evaluate(async () => {
    const st = window.storefRecorder;
    await Promise.all(st.saves);
    return {
      uploads: st.uploads.map(({ seq, bytes, status, attempts, answer, duplicate }) => ({ seq, bytes, status, attempts, answer, duplicate })),
      retries: st.retries,
      produced: st.nextSeq,
      pageError: document.getElementById('studio-error').textContent,
    };
  }));
  out.blobs.sort();
  out.ok = true;
} catch (e) {
  out.ok = false;
  out.error = String(e);
} finally {
  await browser.close();
}
process.stdout.write(JSON.stringify(out) + '\n');
