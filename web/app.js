// storef Live Studio: sign in with a token, go live over WHIP (RFC 9725), watch the HLS output.
// Plain browser JavaScript, no build step; hls.js is vendored in vendor/hls.min.js, and common.js
// (loaded first) has the sign-in, the API helper and the player that the recorder page uses too.
'use strict';

(() => {
  const { $, setError, setText } = window.storef;

  const state = {
    token: window.storef.savedToken(),
    media: null, // MediaStream being previewed / sent
    pc: null, // RTCPeerConnection while live
    resource: null, // WHIP session URL (Location)
    stream: null, // { streamId, streamKey, playbackUrl, whipUrl, rtmpUrl }
    hls: null,
    hlsErrors: [], // fatal hls.js errors, as on the recorder page
    timers: [],
    lastOutbound: null,
    phase: 'offline', // offline | preview | connecting | live | ending
  };
  // For tests and debugging in the console.
  window.storefStudio = state;

  const { api, start, showMedia, endMedia, showStreamInfo, startOnServer, stopOnServer, watchWhenReady, playUrl } = window.storef.session(state, {
    onSignIn() {
      refreshStreams();
      listDevices();
    },
    endStream: stopStream,
  });

  // ---------- media ----------

  async function listDevices() {
    if (!navigator.mediaDevices || !navigator.mediaDevices.enumerateDevices) return;
    const devices = await navigator.mediaDevices.enumerateDevices();
    const fill = (select, kind) => {
      const current = select.value;
      select.replaceChildren(new Option('Default', ''));
      devices
        .filter((d) => d.kind === kind && d.deviceId)
        .forEach((d, i) => select.add(new Option(d.label || `${kind === 'videoinput' ? 'Camera' : 'Microphone'} ${i + 1}`, d.deviceId)));
      select.value = [...select.options].some((o) => o.value === current) ? current : '';
    };
    fill($('camera'), 'videoinput');
    fill($('mic'), 'audioinput');
  }

  async function getMedia() {
    const source = $('source').value;
    const mic = $('mic').value;
    const audio = mic ? { deviceId: { exact: mic } } : true;
    if (source === 'screen') {
      const screen = await navigator.mediaDevices.getDisplayMedia({ video: { frameRate: 30 }, audio: false });
      let voice = null;
      try {
        voice = await navigator.mediaDevices.getUserMedia({ audio });
      } catch (_) {
        /* screen without microphone is fine */
      }
      return new MediaStream([...screen.getVideoTracks(), ...(voice ? voice.getAudioTracks() : [])]);
    }
    const cam = $('camera').value;
    return navigator.mediaDevices.getUserMedia({
      video: { ...(cam ? { deviceId: { exact: cam } } : {}), width: { ideal: 1280 }, height: { ideal: 720 }, frameRate: { ideal: 30 } },
      audio,
    });
  }

  async function startPreview() {
    setError('');
    endMedia();
    try {
      state.media = await getMedia();
    } catch (e) {
      setError(`Could not open ${$('source').value === 'screen' ? 'the screen' : 'camera/microphone'}: ${e.message || e.name}`);
      return false;
    }
    showMedia();
    // The user may end a screen share from the browser's own bar.
    state.media.getVideoTracks().forEach((t) => t.addEventListener('ended', () => {
      if (state.phase === 'live') stopStream();
    }));
    if (state.phase === 'offline') setPhase('preview');
    listDevices();
    return true;
  }

  // ---------- WHIP ----------

  /** Puts H.264 first (packetization-mode=1 first): HLS players need H.264, storef refuses the rest. */
  function preferH264(transceiver) {
    if (!RTCRtpSender.getCapabilities || !transceiver.setCodecPreferences) return;
    const codecs = RTCRtpSender.getCapabilities('video').codecs;
    const rank = (c) => {
      if (/h264/i.test(c.mimeType)) return /packetization-mode=1/.test(c.sdpFmtpLine || '') ? 0 : 1;
      if (/rtx|red|ulpfec|flexfec/i.test(c.mimeType)) return 2;
      return 3;
    };
    const sorted = codecs.filter((c) => rank(c) < 3).sort((a, b) => rank(a) - rank(b));
    if (sorted.some((c) => /h264/i.test(c.mimeType))) transceiver.setCodecPreferences(sorted);
  }

  /** ICE servers from `Link: <stun:…>; rel="ice-server"` headers (RFC 9725 §4.6). */
  function iceServersFrom(res) {
    const link = res.headers.get('Link');
    if (!link) return [];
    return link.split(/,(?=\s*<)/).map((l) => {
      const url = (l.match(/<([^>]+)>/) || [])[1];
      if (!url || !/rel="?ice-server"?/.test(l)) return null;
      const attr = (k) => (l.match(new RegExp(`${k}="([^"]*)"`)) || [])[1];
      const s = { urls: url };
      if (attr('username')) s.username = attr('username');
      if (attr('credential')) s.credential = attr('credential');
      return s;
    }).filter(Boolean);
  }

  async function publish(whipUrl, streamKey) {
    const pc = new RTCPeerConnection({ bundlePolicy: 'max-bundle' });
    state.pc = pc;
    for (const track of state.media.getTracks()) {
      const tr = pc.addTransceiver(track, { direction: 'sendonly', streams: [state.media] });
      if (track.kind === 'video') {
        preferH264(tr);
        const params = tr.sender.getParameters();
        params.encodings = [{ ...(params.encodings && params.encodings[0]), maxBitrate: 2_500_000 }];
        // Text and slides must stay sharp; for a camera the browser's balanced default is better.
        if ($('source').value === 'screen') params.degradationPreference = 'maintain-resolution';
        tr.sender.setParameters(params).catch(() => {});
      }
    }
    pc.addEventListener('connectionstatechange', () => {
      $('st-conn').textContent = pc.connectionState;
      if (pc.connectionState === 'connected') {
        setPhase('live');
        setTimeout(refreshStreams, 3000); // by then the server has the publisher's first stats
      }
      if (pc.connectionState === 'failed' && state.phase !== 'ending') {
        setError('The connection to the server was lost. End the stream and go live again.');
        setPhase('connecting');
      }
    });
    await pc.setLocalDescription(await pc.createOffer());
    const res = await fetch(whipUrl, {
      method: 'POST',
      headers: { 'Content-Type': 'application/sdp', Authorization: `Bearer ${streamKey}` },
      body: pc.localDescription.sdp,
    });
    if (res.status !== 201) {
      let msg = await res.text();
      try {
        msg = JSON.parse(msg).message || msg;
      } catch (_) {
        /* plain text */
      }
      throw new Error(`The server refused the stream (${res.status}): ${msg}`);
    }
    const location = res.headers.get('Location');
    state.resource = location ? new URL(location, new URL(whipUrl, window.location.href)).href : null;
    const ice = iceServersFrom(res);
    if (ice.length) pc.setConfiguration({ ...pc.getConfiguration(), iceServers: ice });
    await pc.setRemoteDescription({ type: 'answer', sdp: await res.text() });
  }

  // ---------- going live / stopping ----------

  async function goLive(ev) {
    ev.preventDefault();
    setError('');
    if (!state.media && !(await startPreview())) return;
    setPhase('connecting');
    try {
      const s = await startOnServer();
      state.stream = {
        streamId: s.streamId,
        streamKey: s.streamKey,
        playbackUrl: s.playbackUrl,
        whipUrl: s.whipUrl || `${window.location.origin}/api/whip`,
        rtmpUrl: s.rtmpUrl,
      };
      showInfo();
      await publish(state.stream.whipUrl, state.stream.streamKey);
      watchWhenReady(state.stream.playbackUrl, 90);
      state.timers.push(setInterval(updateStats, 2000));
      refreshStreams();
    } catch (e) {
      setError(e.message);
      await teardown();
      if (state.stream) {
        api('POST', `/api/streams/${state.stream.streamId}/stop`).catch(() => {});
        state.stream = null;
      }
      setPhase(state.media ? 'preview' : 'offline');
    }
  }

  async function teardown() {
    state.timers.forEach(clearInterval);
    state.timers = [];
    if (state.resource) {
      fetch(state.resource, { method: 'DELETE', headers: { Authorization: `Bearer ${state.stream ? state.stream.streamKey : ''}` } }).catch(() => {});
    }
    state.resource = null;
    if (state.pc) state.pc.close();
    state.pc = null;
    state.lastOutbound = null;
  }

  async function stopStream() {
    if (!state.stream) return;
    setPhase('ending');
    await teardown();
    await stopOnServer();
    state.stream = null;
    endMedia();
    setPhase('offline');
    refreshStreams();
  }

  function setPhase(phase) {
    state.phase = phase;
    const badge = $('state-badge');
    const labels = { offline: 'Offline', preview: 'Preview', connecting: 'Connecting…', live: 'Live', ending: 'Ending…' };
    badge.textContent = labels[phase];
    badge.className = `badge ${phase === 'live' ? 'live' : phase === 'connecting' || phase === 'ending' ? 'connecting' : ''}`;
    const busy = phase === 'connecting' || phase === 'live' || phase === 'ending';
    $('go-live').hidden = busy;
    $('stop').hidden = !busy;
    $('stop').disabled = phase === 'ending';
    ['source', 'camera', 'mic', 'title', 'preview-btn'].forEach((id) => { $(id).disabled = busy; });
    if (phase === 'offline') ['st-conn', 'st-ice', 'st-rtt', 'st-loss', 'st-bitrate', 'st-fps', 'st-res', 'st-codecs'].forEach((id) => { $(id).textContent = '—'; });
  }

  function showInfo() {
    const s = state.stream;
    showStreamInfo();
    $('info-whip').textContent = s.whipUrl;
    $('info-key').textContent = s.streamKey;
    $('info-rtmp-row').hidden = !s.rtmpUrl;
    $('info-rtmp').textContent = s.rtmpUrl || '';
  }

  // ---------- stats ----------

  async function updateStats() {
    if (!state.pc || !state.stream) return;
    let kbps = null;
    let fps = null;
    let res = null;
    let rtt = null;
    (await state.pc.getStats()).forEach((r) => {
      // From storef's receiver reports (RFC 3550 §6.4.1 LSR/DLSR), as the browser computes it.
      if (r.type === 'remote-inbound-rtp' && typeof r.roundTripTime === 'number') rtt = r.roundTripTime * 1000;
      if (r.type === 'outbound-rtp' && r.kind === 'video') {
        if (state.lastOutbound) {
          const dt = (r.timestamp - state.lastOutbound.timestamp) / 1000;
          if (dt > 0) kbps = Math.round(((r.bytesSent - state.lastOutbound.bytesSent) * 8) / dt / 1000);
        }
        state.lastOutbound = { timestamp: r.timestamp, bytesSent: r.bytesSent };
        fps = r.framesPerSecond;
        if (r.frameWidth) res = `${r.frameWidth}×${r.frameHeight}`;
      }
    });
    let server = null;
    try {
      const s = await api('GET', `/api/streams/${state.stream.streamId}`);
      server = s.stream && s.stream.publisher && s.stream.publisher.stats;
    } catch (_) {
      /* keep the local figures */
    }
    setText('st-ice', server && server.ice_state);
    const rttMs = server && typeof server.rtt_ms === 'number' ? server.rtt_ms : rtt;
    setText('st-rtt', rttMs !== null ? `${Math.max(1, Math.round(rttMs))} ms` : null);
    setText('st-loss', server && typeof server.packet_loss === 'number' ? `${(server.packet_loss * 100).toFixed(1)} %` : null);
    const serverKbps = server && typeof server.video_kbps === 'number' ? server.video_kbps + (server.audio_kbps || 0) : null;
    setText('st-bitrate', serverKbps !== null ? `${serverKbps} kbit/s` : kbps !== null ? `${kbps} kbit/s` : null);
    setText('st-fps', server && server.fps ? server.fps : fps ? Math.round(fps) : null);
    setText('st-res', server && server.width ? `${server.width}×${server.height}` : res);
    setText('st-codecs', server ? [server.video_codec, server.audio_codec].filter(Boolean).join(', ') : null);
  }

  // ---------- past streams ----------

  function fmtDuration(secs) {
    if (!secs) return '—';
    const s = Math.round(secs);
    const h = Math.floor(s / 3600);
    const m = Math.floor((s % 3600) / 60);
    const r = String(s % 60).padStart(2, '0');
    return h ? `${h}:${String(m).padStart(2, '0')}:${r}` : `${m}:${r}`;
  }

  function fmtDate(iso) {
    if (!iso) return '—';
    const d = new Date(iso);
    return Number.isNaN(d.getTime()) ? iso : d.toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'short' });
  }

  async function refreshStreams() {
    let list = [];
    try {
      list = (await api('GET', '/api/streams')).streams || [];
    } catch (e) {
      if (e.status !== 401) setError(`Could not load your streams: ${e.message}`);
      return;
    }
    const body = $('streams-body');
    body.replaceChildren();
    $('streams-empty').hidden = list.length > 0;
    for (const s of list) {
      const tr = document.createElement('tr');
      const td = (text, cls) => {
        const c = document.createElement('td');
        if (cls) c.className = cls;
        if (text !== undefined) c.textContent = text;
        tr.appendChild(c);
        return c;
      };
      td(s.title || 'Untitled stream');
      td(fmtDate(s.createdAt));
      const live = s.status === 'live';
      const status = document.createElement('span');
      status.className = `status ${live ? 'live' : 'stopped'}`;
      status.textContent = live ? (s.publisher ? 'Live' : 'Waiting for publisher') : 'Ended';
      td().appendChild(status);
      td(fmtDuration(s.durationSecs));
      td(s.resolution || '—');
      const actions = td(undefined, 'row-actions');
      const button = (label, fn, cls = 'btn ghost small') => {
        const b = document.createElement('button');
        b.type = 'button';
        b.className = cls;
        b.textContent = label;
        b.addEventListener('click', fn);
        actions.appendChild(b);
      };
      if (live && s.playbackUrl) button('Watch', () => playUrl(s.playbackUrl, 'Live'));
      if (!live && s.videoUrl) {
        button('Watch', () => playUrl(s.videoUrl, 'Recording'));
        const a = document.createElement('a');
        a.href = s.videoUrl;
        a.textContent = 'Download';
        a.target = '_blank';
        a.rel = 'noopener';
        actions.appendChild(a);
      }
      if (live && !(state.stream && state.stream.streamId === s.id)) {
        button('End', async () => {
          try {
            await api('POST', `/api/streams/${s.id}/stop`);
          } catch (e) {
            setError(e.message);
          }
          refreshStreams();
        }, 'btn danger small');
      }
      body.appendChild(tr);
    }
  }

  // ---------- wiring ----------

  $('source').addEventListener('change', () => {
    const screen = $('source').value === 'screen';
    $('camera-field').hidden = screen;
    if (state.media) startPreview();
  });
  $('camera').addEventListener('change', () => { if (state.media) startPreview(); });
  $('mic').addEventListener('change', () => { if (state.media) startPreview(); });
  $('preview-btn').addEventListener('click', startPreview);
  $('go-live-form').addEventListener('submit', goLive);
  $('stop').addEventListener('click', stopStream);
  $('refresh').addEventListener('click', refreshStreams);
  $('info-key').addEventListener('click', () => $('info-key').classList.toggle('shown'));
  window.storef.wireCopyButtons();
  window.addEventListener('beforeunload', () => {
    if (state.resource) fetch(state.resource, { method: 'DELETE', keepalive: true, headers: { Authorization: `Bearer ${state.stream ? state.stream.streamKey : ''}` } });
  });

  setPhase('offline');
  start();
})();
