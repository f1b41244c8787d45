// Publishes the fake camera and microphone of headless Debian chromium over WHIP.
// usage: node whip_publish.mjs PAGE_URL WHIP_URL SECONDS [TOKEN]
// PAGE_URL: any page on a secure-context origin (http://127.0.0.1) the WHIP endpoint accepts CORS from.
// Prints one JSON line: {"ok":true, "connectionState":..., "outbound": {...}} and exits.
import puppeteer from 'puppeteer-core';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const [pageUrl, whipUrl, seconds, token] = process.argv.slice(2);
const browser = await puppeteer.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  userDataDir: mkdtempSync(join(tmpdir(), 'whip-chromium-')),
  args: [
    '--no-sandbox',
    '--use-fake-device-for-media-stream',
    '--use-fake-ui-for-media-stream',
    '--autoplay-policy=no-user-gesture-required',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
    '--no-first-run',
  ],
});
try {
  const page = await browser.newPage();
  page.on('console', (m) => process.stderr.write(`[page] ${m.text()}\n`));
  await page.goto(pageUrl);
  const result = await page.evaluate(async (whipUrl, seconds, token) => {
    const stream = await navigator.mediaDevices.getUserMedia({
      video: { width: 640, height: 360, frameRate: 30 },
      audio: true,
    });
    const pc = new RTCPeerConnection();
    for (const track of stream.getTracks()) {
      pc.addTransceiver(track, { direction: 'sendonly', streams: [stream] });
    }
    await pc.setLocalDescription(await pc.createOffer());
    const headers = { 'Content-Type': 'application/sdp' };
    if (token) headers.Authorization = `Bearer ${token}`;
    const res = await fetch(whipUrl, { method: 'POST', headers, body: pc.localDescription.sdp });
    if (res.status !== 201) {
      return { ok: false, status: res.status, body: await res.text() };
    }
    const location = res.headers.get('Location');
    await pc.setRemoteDescription({ type: 'answer', sdp: await res.text() });
    const connected = await new Promise((resolve) => {
      const t = setTimeout(() => resolve(false), 10000);
      pc.onconnectionstatechange = () => {
        if (pc.connectionState === 'connected') { clearTimeout(t); resolve(true); }
      };
    });
    await new Promise((r) => setTimeout(r, Number(seconds) * 1000));
    const outbound = {};
    const stats = await pc.getStats();
    // The nominated pair's candidates: which transport the media really took (ICE-TCP tests).
    let selectedPair = null;
    stats.forEach((s) => {
      if (s.type === 'transport' && s.selectedCandidatePairId) {
        const pair = stats.get(s.selectedCandidatePairId);
        const cand = (id) => {
          const c = stats.get(id);
          return c && { protocol: c.protocol, candidateType: c.candidateType, tcpType: c.tcpType, address: c.address, port: c.port };
        };
        selectedPair = pair && { local: cand(pair.localCandidateId), remote: cand(pair.remoteCandidateId) };
      }
    });
    stats.forEach((s) => {
      if (s.type === 'outbound-rtp') {
        outbound[s.kind] = {
          packetsSent: s.packetsSent, framesEncoded: s.framesEncoded, keyFramesEncoded: s.keyFramesEncoded,
          pliCount: s.pliCount, firCount: s.firCount, nackCount: s.nackCount, encoderImplementation: s.encoderImplementation,
        };
      }
    });
    return { ok: true, connected, connectionState: pc.connectionState, location, outbound, selectedPair };
  }, whipUrl, seconds, token || '');
  process.stdout.write(JSON.stringify(result) + '\n');
} finally {
  // No DELETE: the server has to notice the peer vanishing (ICE timeout).
  await browser.close();
}
