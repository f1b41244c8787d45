// What storef's two pages share: the Live Studio (app.js, at /) and the MediaRecorder example
// (recorder.js, at /recorder). The account box and sign-in form, the token, the API helper, the
// camera preview and hls.js player panels, stopping a stream for its VOD, and small page helpers.
// Plain browser JavaScript, no build step: loaded after vendor/hls.min.js and before the page's
// own script, it defines `window.storef` and touches the page only when the page asks.
'use strict';

window.storef = (() => {
  const $ = (id) => document.getElementById(id);
  const TOKEN_KEY = 'storef.token';

  // ---------- markup both pages show ----------
  // Filled into placeholders that are hidden until sign-in decides what to show (#account, #signin,
  // and the slots inside #studio), so the first paint is the same as with the markup in the page.

  const ACCOUNT_HTML = `
      <span class="user" id="user-label"></span>
      <button class="btn ghost small" id="sign-out" type="button">Sign out</button>`;

  const SIGNIN_HTML = `
      <h1>Sign in</h1>
      <p class="muted">Paste your access token. An administrator can create one with
        <code>storef token --user YOUR_ID</code>; you can paste its whole output.</p>
      <form id="signin-form">
        <label for="token-input">Access token</label>
        <textarea id="token-input" rows="4" spellcheck="false" autocomplete="off" placeholder="eyJhbGciOiJIUzI1NiIs…"></textarea>
        <p class="error" id="signin-error" role="alert"></p>
        <button class="btn primary" type="submit">Sign in</button>
      </form>`;

  const CAMERA_HTML = `
          <div class="panel-head">
            <h2>Your camera</h2>
            <span class="badge" id="state-badge">Offline</span>
          </div>
          <div class="video-frame">
            <video id="preview" autoplay muted playsinline></video>
            <div class="video-empty" id="preview-empty">
              <p></p>
            </div>
          </div>`;

  const VIEWER_HTML = `
          <div class="panel-head">
            <h2>What viewers see</h2>
            <span class="badge subtle" id="player-badge">Not playing</span>
          </div>
          <div class="video-frame">
            <video id="player" controls playsinline muted></video>
            <div class="video-empty" id="player-empty">
              <p id="player-empty-text"></p>
            </div>
          </div>`;

  /** Puts a video panel in place of the placeholder `slotId`, with its `data-empty` as the idle text. */
  function fillSlot(slotId, html) {
    const slot = $(slotId);
    const panel = document.createElement('template');
    panel.innerHTML = html;
    panel.content.querySelector('.video-empty p').textContent = slot.dataset.empty;
    slot.replaceWith(panel.content);
  }

  /** Fills #account and #signin, and replaces #camera-slot (the preview) and #viewer-slot (the player). */
  function render() {
    $('account').innerHTML = ACCOUNT_HTML;
    $('signin').innerHTML = SIGNIN_HTML;
    fillSlot('camera-slot', CAMERA_HTML);
    fillSlot('viewer-slot', VIEWER_HTML);
  }

  // ---------- token ----------

  /** Finds a JWT in pasted text (a bare token, or the whole `storef token` output). */
  function extractToken(text) {
    const m = String(text).match(/eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*/);
    return m ? m[0] : '';
  }

  function tokenClaims(token) {
    try {
      const part = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
      return JSON.parse(atob(part + '='.repeat((4 - (part.length % 4)) % 4)));
    } catch (_) {
      return {};
    }
  }

  function savedToken() {
    return localStorage.getItem(TOKEN_KEY) || '';
  }

  // ---------- API ----------

  class ApiError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  /** The answer's JSON body, or null when it has none. */
  async function readJson(res) {
    try {
      return await res.json();
    } catch (_) {
      return null;
    }
  }

  // ---------- small page helpers ----------

  function setError(msg) {
    $('studio-error').textContent = msg;
  }

  /** Shows `v` in the element `id`, or a dash when there is nothing to show. */
  function setText(id, v) {
    $(id).textContent = v === null || v === undefined || v === '' ? '—' : v;
  }

  /** The Copy buttons of the stream details: `data-copy` names the element whose text they copy. */
  function wireCopyButtons() {
    document.querySelectorAll('.copy').forEach((b) => b.addEventListener('click', async () => {
      const text = $(b.dataset.copy).textContent;
      try {
        await navigator.clipboard.writeText(text);
        b.textContent = 'Copied';
      } catch (_) {
        b.textContent = 'Copy failed';
      }
      setTimeout(() => { b.textContent = 'Copy'; }, 1500);
    }));
  }

  /**
   * The signed-in part of a page, kept in the page's `state` (token, media, stream, hls,
   * hlsErrors). `hooks.onSignIn()` runs once a token is accepted and the page is shown;
   * `hooks.endStream()` (async) runs before the user signs out while a stream is on.
   */
  function session(state, hooks) {
    render();

    async function api(method, path, body) {
      const headers = { Authorization: `Bearer ${state.token}` };
      if (body !== undefined) headers['Content-Type'] = 'application/json';
      const res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
      const json = await readJson(res);
      if (!res.ok || (json && json.success === false)) {
        const msg = (json && json.message) || `${method} ${path} failed (${res.status})`;
        if (res.status === 401) signOut('Your session has expired or the token is not valid. Please sign in again.');
        throw new ApiError(res.status, msg);
      }
      return json || {};
    }

    async function signIn(token) {
      state.token = token;
      await api('GET', '/api/streams'); // proves the token works
      localStorage.setItem(TOKEN_KEY, token);
      const claims = tokenClaims(token);
      $('user-label').textContent = claims.id ? `Signed in as ${claims.id}` : 'Signed in';
      $('signin').hidden = true;
      $('account').hidden = false;
      $('studio').hidden = false;
      hooks.onSignIn();
    }

    function signOut(message) {
      endMedia();
      localStorage.removeItem(TOKEN_KEY);
      state.token = '';
      $('studio').hidden = true;
      $('account').hidden = true;
      $('signin').hidden = false;
      $('signin-error').textContent = message || '';
    }

    /** Shows `state.media` in the preview. */
    function showMedia() {
      $('preview').srcObject = state.media;
      $('preview-empty').hidden = true;
    }

    /** Stops the camera/screen tracks and empties the preview. */
    function endMedia() {
      if (state.media) state.media.getTracks().forEach((t) => t.stop());
      state.media = null;
      $('preview').srcObject = null;
      $('preview-empty').hidden = false;
    }

    /** Signs in with the saved token, or shows the sign-in form. */
    function start() {
      if (state.token) {
        signIn(state.token).catch((e) => signOut(e.status === 401 ? 'Please sign in again.' : ''));
      } else {
        signOut();
      }
    }

    $('signin-form').addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const token = extractToken($('token-input').value);
      if (!token) {
        $('signin-error').textContent = 'That does not look like a token (it starts with "eyJ").';
        return;
      }
      $('signin-error').textContent = '';
      try {
        await signIn(token);
        $('token-input').value = '';
      } catch (e) {
        signOut(e.status === 401 ? 'This token was not accepted.' : `Could not sign in: ${e.message}`);
      }
    });
    $('sign-out').addEventListener('click', async () => {
      if (state.stream) await hooks.endStream();
      signOut();
    });

    // ---------- stream details ----------

    /** Shows the stream details card for `state.stream`, without the VOD line of an earlier one. */
    function showStreamInfo() {
      $('stream-info').hidden = false;
      $('vod-done').hidden = true;
      $('info-playback').textContent = state.stream.playbackUrl;
    }

    /** Starts a stream on the server, titled from the Title field; returns the API's answer. */
    function startOnServer() {
      const title = $('title').value.trim();
      return api('POST', '/api/streams/start', title ? { title } : {});
    }

    /** Ends `state.stream` on the server; shows and plays its recording when there is one. */
    async function stopOnServer() {
      try {
        const r = await api('POST', `/api/streams/${state.stream.streamId}/stop`);
        if (r.videoUrl) {
          $('vod-link').href = r.videoUrl;
          $('vod-done').hidden = false;
          playUrl(r.videoUrl, 'Recording');
        }
      } catch (e) {
        setError(`Could not finish the stream: ${e.message}`);
      }
    }

    // ---------- player ----------

    /** Waits (up to `tries` seconds) until the live playlist lists a segment, then plays it. */
    async function watchWhenReady(url, tries) {
      $('player-empty').hidden = false;
      $('player-empty-text').textContent = 'Waiting for the first segment…';
      for (let i = 0; i < tries && state.stream && state.stream.playbackUrl === url; i++) {
        try {
          const text = await (await fetch(url, { cache: 'no-store' })).text();
          if (text.includes('#EXTINF')) {
            playUrl(url, 'Live');
            return;
          }
        } catch (_) {
          /* not there yet */
        }
        await new Promise((r) => setTimeout(r, 1000));
      }
    }

    function playUrl(url, label) {
      const video = $('player');
      if (state.hls) {
        state.hls.destroy();
        state.hls = null;
      }
      $('player-empty').hidden = true;
      const badge = $('player-badge');
      badge.textContent = label;
      badge.className = `badge ${label === 'Live' ? 'live' : 'ok'}`;
      if (/\.m3u8(\?|$)/.test(url) && window.Hls && window.Hls.isSupported()) {
        const hls = new window.Hls({ liveSyncDurationCount: 2, lowLatencyMode: false });
        state.hls = hls;
        hls.loadSource(url);
        hls.attachMedia(video);
        hls.on(window.Hls.Events.ERROR, (_, data) => {
          if (data.fatal) {
            state.hlsErrors.push(data.details);
            badge.textContent = 'Player error';
            badge.className = 'badge';
            if (data.type === window.Hls.ErrorTypes.NETWORK_ERROR) hls.startLoad();
            else if (data.type === window.Hls.ErrorTypes.MEDIA_ERROR) hls.recoverMediaError();
          }
        });
      } else {
        video.src = url; // progressive MP4, or Safari's native HLS
      }
      video.play().catch(() => {});
    }

    return { api, signOut, start, showMedia, endMedia, showStreamInfo, startOnServer, stopOnServer, watchWhenReady, playUrl };
  }

  return { $, savedToken, readJson, setError, setText, wireCopyButtons, session };
})();
