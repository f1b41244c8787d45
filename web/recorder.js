// storef MediaRecorder example: for front-ends migrating from the old server, which recorded the
// camera with MediaRecorder and uploaded a blob every few seconds. Sign in with a token, start a
// stream, upload each blob in order (sequence + video_chunk), watch the HLS, stop and get the VOD.
// Plain browser JavaScript, no build step; hls.js is vendored in vendor/hls.min.js, and common.js
// (loaded first) has the sign-in, the API helper and the player that the studio page uses too.
'use strict';

(() => {
  const { $, readJson, setError, setText } = window.storef;
  // Chromium's MediaRecorder: plain `video/mp4` records VP9, which HLS players and storef refuse;
  // these two give H.264 + Opus. AAC is not offered.
  const MIME = {
    mp4: 'video/mp4;codecs=avc1,opus',
    webm: 'video/webm;codecs=h264,opus',
  };
  // One blob every 2 s, and (Chrome's `videoKeyFrameIntervalDuration`) a keyframe every 2 s: a
  // segment can only start on a keyframe, so without it segments grow as long as the encoder's GOP.
  const TIMESLICE_MS = 2000;
  const KEYFRAME_MS = 2000;
  const MAX_ATTEMPTS = 8;

  const state = {
    token: window.storef.savedToken(),
    media: null, // camera MediaStream
    recorder: null, // MediaRecorder while recording
    mimeType: '',
    stream: null, // { streamId, playbackUrl, uploadUrl }
    nextSeq: 0,
    queue: [], // { seq, blob } not yet acknowledged, in order
    pumping: false,
    drained: [], // resolvers waiting for the queue to empty
    uploads: [], // { seq, bytes, status, attempts, answer, duplicate } per acknowledged (or refused) blob
    retries: 0,
    bytes: 0,
    segments: 0,
    failed: false,
    hls: null,
    hlsErrors: [],
    startedAt: 0,
    timer: null,
    phase: 'offline', // offline | starting | recording | ending
    // Hook called with (sequence, Blob) as each blob arrives, before it is queued (tests use it).
    onBlob: null,
  };
  // For tests and debugging in the console.
  window.storefRecorder = state;

  const { api, signOut, start, showMedia, endMedia, showStreamInfo, startOnServer, stopOnServer, watchWhenReady } = window.storef.session(state, {
    onSignIn() {
      const supported = Object.values(MIME).filter((m) => window.MediaRecorder && MediaRecorder.isTypeSupported(m));
      if (!supported.length) setError('This browser cannot record H.264 + Opus with MediaRecorder. Use the Live Studio (WHIP) page instead.');
    },
    endStream: stopRecording,
  });

  // ---------- recording ----------

  /** The first H.264 + Opus type the browser records, in the order the Format choice asks for. */
  function chooseMimeType(format) {
    const order = format === 'webm' ? [MIME.webm] : format === 'mp4' ? [MIME.mp4] : [MIME.mp4, MIME.webm];
    return order.find((m) => window.MediaRecorder && MediaRecorder.isTypeSupported(m)) || '';
  }

  async function startRecording(ev) {
    ev.preventDefault();
    setError('');
    const mimeType = chooseMimeType($('format').value);
    if (!mimeType) {
      setError('This browser cannot record the chosen format with H.264 + Opus; try another format.');
      return;
    }
    setPhase('starting');
    try {
      state.media = await navigator.mediaDevices.getUserMedia({
        video: { width: { ideal: 1280 }, height: { ideal: 720 }, frameRate: { ideal: 30 } },
        audio: true,
      });
    } catch (e) {
      setError(`Could not open the camera/microphone: ${e.message || e.name}`);
      setPhase('offline');
      return;
    }
    showMedia();
    try {
      const s = await startOnServer();
      state.stream = {
        streamId: s.streamId,
        playbackUrl: s.playbackUrl,
        uploadUrl: `${window.location.origin}/api/streams/${s.streamId}/upload`,
      };
    } catch (e) {
      setError(`Could not start a stream: ${e.message}`);
      endMedia();
      setPhase('offline');
      return;
    }
    Object.assign(state, { nextSeq: 0, queue: [], uploads: [], retries: 0, bytes: 0, segments: 0, failed: false, hlsErrors: [] });
    showInfo();
    const recorder = new MediaRecorder(state.media, {
      mimeType,
      videoKeyFrameIntervalDuration: KEYFRAME_MS,
      videoBitsPerSecond: 2_500_000,
      audioBitsPerSecond: 128_000,
    });
    state.recorder = recorder;
    state.mimeType = recorder.mimeType || mimeType;
    recorder.addEventListener('dataavailable', (e) => {
      if (!e.data || e.data.size === 0 || state.failed) return;
      const seq = state.nextSeq++;
      if (state.onBlob) state.onBlob(seq, e.data);
      state.queue.push({ seq, blob: e.data });
      updateStats();
      pump();
    });
    recorder.addEventListener('error', (e) => {
      setError(`The recorder failed: ${(e.error && e.error.message) || 'unknown error'}`);
      stopRecording();
    });
    recorder.start(TIMESLICE_MS);
    state.startedAt = Date.now();
    state.timer = setInterval(updateStats, 1000);
    setPhase('recording');
    updateStats();
    watchWhenReady(state.stream.playbackUrl, 120);
  }

  /** Uploads queued blobs one at a time, in sequence order: a blob only continues the one before. */
  async function pump() {
    if (state.pumping) return;
    state.pumping = true;
    while (state.queue.length && !state.failed) {
      const item = state.queue[0];
      try {
        await uploadOne(item);
        state.queue.shift();
      } catch (e) {
        state.failed = true;
        state.queue = [];
        setError(e.message);
        if (state.recorder && state.recorder.state !== 'inactive') state.recorder.stop();
      }
      updateStats();
    }
    state.pumping = false;
    state.drained.splice(0).forEach((r) => r());
  }

  function drained() {
    if (!state.pumping && !state.queue.length) return Promise.resolve();
    return new Promise((r) => state.drained.push(r));
  }

  /**
   * Sends one blob, retrying network failures and 5xx/408/429 with the same bytes: storef answers a
   * repeated sequence with identical content as a success, so a retry after a lost answer is safe.
   * Other 4xx answers (415 wrong codec, 409 conflict) cannot succeed by retrying.
   */
  async function uploadOne({ seq, blob }) {
    const ext = state.mimeType.startsWith('video/webm') ? 'webm' : 'mp4';
    let lastError = '';
    for (let attempt = 1; attempt <= MAX_ATTEMPTS; attempt++) {
      const form = new FormData();
      form.append('sequence', String(seq));
      form.append('video_chunk', blob, `chunk-${seq}.${ext}`);
      let res = null;
      try {
        res = await fetch(state.stream.uploadUrl, {
          method: 'POST',
          headers: { Authorization: `Bearer ${state.token}` },
          body: form,
        });
      } catch (e) {
        lastError = `network error: ${e.message}`;
      }
      if (res) {
        const json = await readJson(res);
        if (res.ok) {
          state.uploads.push({ seq, bytes: blob.size, status: res.status, attempts: attempt, answer: json && json.status, duplicate: !!(json && json.duplicate) });
          state.bytes += blob.size;
          if (json && typeof json.segments === 'number') state.segments += json.segments;
          else if (json && Array.isArray(json.segments)) state.segments += json.segments.length;
          return;
        }
        lastError = `${res.status}: ${(json && json.message) || res.statusText}`;
        const retryable = res.status >= 500 || res.status === 408 || res.status === 429;
        if (!retryable) {
          state.uploads.push({ seq, bytes: blob.size, status: res.status, attempts: attempt, answer: lastError });
          if (res.status === 401) signOut('Your session has expired. Sign in again (the recording stopped).');
          throw new Error(`Chunk ${seq} was refused (${lastError})`);
        }
      }
      if (attempt < MAX_ATTEMPTS) {
        state.retries++;
        updateStats();
        await new Promise((r) => setTimeout(r, Math.min(10_000, 500 * 2 ** attempt)));
      }
    }
    throw new Error(`Chunk ${seq} could not be uploaded after ${MAX_ATTEMPTS} attempts (${lastError})`);
  }

  async function stopRecording() {
    if (!state.stream || state.phase === 'ending') return;
    setPhase('ending');
    const recorder = state.recorder;
    if (recorder && recorder.state !== 'inactive') {
      // The last blob arrives in a `dataavailable` just before `stop`.
      const stopped = new Promise((r) => recorder.addEventListener('stop', r, { once: true }));
      recorder.stop();
      await stopped;
    }
    await drained();
    endMedia();
    await stopOnServer();
    clearInterval(state.timer);
    state.timer = null;
    state.recorder = null;
    state.stream = null;
    updateStats();
    setPhase('offline');
  }

  // ---------- page state ----------

  function setPhase(phase) {
    state.phase = phase;
    const badge = $('state-badge');
    const labels = { offline: 'Offline', starting: 'Starting…', recording: 'Live', ending: 'Ending…' };
    badge.textContent = labels[phase];
    badge.className = `badge ${phase === 'recording' ? 'live' : phase === 'offline' ? '' : 'connecting'}`;
    const busy = phase !== 'offline';
    $('start').hidden = busy;
    $('stop').hidden = !busy;
    $('stop').disabled = phase !== 'recording';
    ['format', 'title'].forEach((id) => { $(id).disabled = busy; });
  }

  function showInfo() {
    showStreamInfo();
    $('info-upload').textContent = state.stream.uploadUrl;
  }

  function fmtBytes(n) {
    if (n < 1024) return `${n} B`;
    if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
    return `${(n / 1024 / 1024).toFixed(1)} MiB`;
  }

  function updateStats() {
    setText('st-mime', state.mimeType.replace(/^video\//, ''));
    setText('st-sent', String(state.uploads.filter((u) => u.status >= 200 && u.status < 300).length));
    setText('st-queued', String(state.queue.length));
    setText('st-retries', String(state.retries));
    setText('st-bytes', fmtBytes(state.bytes));
    const last = state.uploads[state.uploads.length - 1];
    setText('st-last', last ? `#${last.seq} ${last.status}${last.answer && last.status < 300 ? ` ${last.answer}` : ''}` : null);
    setText('st-segments', String(state.segments));
    if (state.startedAt && state.timer) {
      const s = Math.round((Date.now() - state.startedAt) / 1000);
      setText('st-elapsed', `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`);
    }
  }

  // ---------- wiring ----------

  $('record-form').addEventListener('submit', startRecording);
  $('stop').addEventListener('click', stopRecording);
  window.storef.wireCopyButtons();
  window.addEventListener('beforeunload', (ev) => {
    // Blobs not yet uploaded would be lost: ask before leaving.
    if (state.phase === 'recording' || state.queue.length) ev.preventDefault();
  });

  setPhase('offline');
  start();
})();
