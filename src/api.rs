//! The HTTP API, path for path the one of the Node.js server storef replaces, plus status,
//! listing, file serving and metrics. Every error is `{"success":false,"message":…}`.

use crate::app::App;
use crate::ids::is_object_id;
use crate::metrics::Metrics;
use crate::{files, stop, upload};
use axum::extract::multipart::MultipartRejection;
use axum::extract::{DefaultBodyLimit, Multipart, Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use packager::hls::{Playlist, PlaylistKind, PlaylistSegment};
use serde_json::{json, Value};
use storage::{ChunkState, StreamRecord};
use tower_http::cors::{AllowOrigin, CorsLayer};

/// An error answer: a status and a message for the client.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
        }
    }

    /// A server-side failure: logged in full, answered without internals.
    pub fn internal(e: impl std::fmt::Display) -> Self {
        tracing::error!(error = %e, "internal error");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("internal error: {e}"),
        )
    }

    fn not_found(what: &str) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, format!("{what} not found"))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(json!({"success": false, "message": self.message})),
        )
            .into_response()
    }
}

impl From<storage::DbError> for ApiError {
    fn from(e: storage::DbError) -> Self {
        ApiError::internal(e)
    }
}

type ApiResult<T> = Result<T, ApiError>;

/// The router with every route, CORS and metrics middleware.
pub fn router(app: App) -> Router {
    let cors = cors_layer(&app.cfg.http.cors_origins);
    let upload_limit = DefaultBodyLimit::max(
        usize::try_from(app.cfg.upload.max_chunk_bytes.saturating_add(1 << 20))
            .unwrap_or(usize::MAX),
    );
    Router::new()
        .route("/api/streams/start", post(start))
        .route("/api/streams", get(list))
        .route("/api/streams/{id}", get(status))
        .route("/api/streams/{id}/stop", post(stop_handler))
        .route(
            "/api/streams/{id}/upload",
            post(upload_handler).layer(upload_limit),
        )
        .route("/api/streams/{id}/live.m3u8", get(live_playlist))
        .route("/api/streams/{id}/init/{file}", get(files::init_file))
        .route(
            "/api/streams/{id}/segments/{file}",
            get(files::segment_file),
        )
        .route("/api/videos/{id}", get(video))
        .route("/api/videos/{id}/index.m3u8", get(vod_playlist))
        .route("/api/videos/{id}/video.mp4", get(files::video_file))
        .route(
            "/api/whip",
            post(crate::whip_api::post).options(crate::whip_api::options),
        )
        .route(
            "/api/whip/{session}",
            axum::routing::delete(crate::whip_api::delete)
                .patch(crate::whip_api::patch)
                .options(crate::whip_api::options),
        )
        .route("/", get(crate::web::index))
        .route("/app.js", get(crate::web::app_js))
        .route("/common.js", get(crate::web::common_js))
        .route("/recorder", get(crate::web::recorder))
        .route("/recorder.js", get(crate::web::recorder_js))
        .route("/app.css", get(crate::web::app_css))
        .route("/vendor/hls.min.js", get(crate::web::hls_js))
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .fallback(fallback)
        .layer(middleware::from_fn_with_state(app.clone(), count_requests))
        .layer(cors)
        .with_state(app)
}

fn cors_layer(origins: &[String]) -> CorsLayer {
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(
            origins
                .iter()
                .filter_map(|o| HeaderValue::from_str(o).ok())
                .collect::<Vec<_>>(),
        )
    };
    CorsLayer::new()
        .allow_origin(allow)
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PATCH,
            Method::DELETE,
            Method::OPTIONS,
        ])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::RANGE,
            header::IF_MATCH,
        ])
        .expose_headers([
            header::LOCATION,
            header::ETAG,
            header::LINK,
            header::CONTENT_LENGTH,
            header::CONTENT_RANGE,
        ])
        .max_age(std::time::Duration::from_secs(3600))
}

async fn count_requests(State(app): State<App>, req: Request, next: Next) -> Response {
    let res = next.run(req).await;
    Metrics::inc(&app.metrics.http_requests_total, 1);
    if res.status().is_client_error() || res.status().is_server_error() {
        Metrics::inc(&app.metrics.http_errors_total, 1);
    }
    res
}

async fn fallback(method: Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!("no route for {method} {}", uri.path()),
    )
}

/// The caller's user id from the bearer token.
fn user(app: &App, headers: &HeaderMap) -> ApiResult<String> {
    let h = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    app.auth
        .verify_header(h)
        .map_err(|e| ApiError::new(StatusCode::UNAUTHORIZED, e.to_string()))
}

/// The stream `id` if it exists and belongs to `user`; another user's stream is "not found" so
/// ids cannot be probed.
fn owned_stream(app: &App, id: &str, user: &str) -> ApiResult<StreamRecord> {
    if !is_object_id(id) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("invalid stream id {id:?}: expected 24 lowercase hex characters"),
        ));
    }
    match app.db.stream(id)? {
        Some(s) if s.user_id == user => Ok(s),
        _ => Err(ApiError::not_found("stream")),
    }
}

fn public_stream(app: &App, id: &str) -> ApiResult<StreamRecord> {
    if !is_object_id(id) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("invalid stream id {id:?}: expected 24 lowercase hex characters"),
        ));
    }
    app.db
        .stream(id)?
        .ok_or_else(|| ApiError::not_found("stream"))
}

/// `http(s)://host[:port]` for URLs handed out: the configured public URL, else the request's
/// Host (and `X-Forwarded-Proto` behind a TLS proxy).
pub fn base_url(app: &App, headers: &HeaderMap) -> String {
    if !app.cfg.http.public_url.is_empty() {
        return app.cfg.http.public_url.trim_end_matches('/').to_string();
    }
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("localhost:5000");
    let proto = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("http");
    format!("{proto}://{host}")
}

/// The URLs a client needs for a stream.
fn stream_urls(app: &App, base: &str, s: &StreamRecord) -> Value {
    let host = base
        .split("://")
        .nth(1)
        .unwrap_or(base)
        .split(['/', ':'])
        .next()
        .unwrap_or("localhost");
    let rtmp_port = app
        .cfg
        .rtmp
        .addr
        .rsplit(':')
        .next()
        .unwrap_or("1935")
        .to_string();
    let mut v = json!({
        "playbackUrl": format!("{base}/api/streams/{}/live.m3u8", s.id),
    });
    if app.cfg.rtmp.enabled {
        v["rtmpUrl"] = json!(format!("rtmp://{host}:{rtmp_port}/{}", app.cfg.rtmp.app));
    }
    if app.whip.0.is_some() {
        v["whipUrl"] = json!(format!("{base}/api/whip"));
    }
    v
}

#[derive(serde::Deserialize, Default)]
struct StartBody {
    title: Option<String>,
    /// `rtsp://[user:pass@]host[:port]/path`: storef pulls the stream from this camera.
    pull: Option<String>,
    /// `tcp` (default) or `udp`, for `pull`.
    transport: Option<String>,
}

async fn start(State(app): State<App>, headers: HeaderMap, body: Bytes) -> ApiResult<Response> {
    let user = user(&app, &headers)?;
    let parsed: StartBody = if body.iter().all(u8::is_ascii_whitespace) {
        StartBody::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("body must be JSON like {{\"title\":\"…\"}}: {e}"),
            )
        })?
    };
    let source = match (parsed.pull.as_deref(), parsed.transport.as_deref()) {
        (Some(url), transport) => Some(
            crate::pull::parse_request(url, transport)
                .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.to_string()))?,
        ),
        (None, Some(_)) => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "\"transport\" needs \"pull\": \"rtsp://…\"",
            ))
        }
        (None, None) => None,
    };
    let mut rec = crate::app::new_stream(&user, parsed.title);
    rec.pull = source.as_ref().map(crate::pull::record);
    app.db
        .commit(storage::Commit {
            streams: vec![rec.clone()],
            ..Default::default()
        })
        .await?;
    Metrics::inc(&app.metrics.streams_started_total, 1);
    tracing::info!(stream = %rec.id, user = %user, "stream started");
    if let Some(source) = source {
        crate::pull::spawn(&app, &rec, source);
    }
    let base = base_url(&app, &headers);
    let mut v = json!({
        "success": true,
        "streamId": rec.id,
        "streamKey": rec.stream_key,
    });
    if rec.pull.is_some() {
        v["pull"] = crate::pull::status_json(&rec);
    }
    merge(&mut v, stream_urls(&app, &base, &rec));
    Ok((StatusCode::CREATED, Json(v)).into_response())
}

fn merge(into: &mut Value, from: Value) {
    if let (Value::Object(a), Value::Object(b)) = (into, from) {
        a.extend(b);
    }
}

async fn upload_handler(
    State(app): State<App>,
    Path(id): Path<String>,
    headers: HeaderMap,
    mp: Result<Multipart, MultipartRejection>,
) -> ApiResult<Json<Value>> {
    let mut mp = mp;
    let res = match upload_precheck(&app, &id, &headers) {
        Err(e) => Err(e),
        Ok(()) => match &mut mp {
            Ok(mp) => upload_inner(&app, &id, mp).await,
            Err(e) => Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                format!(
                    "expected multipart/form-data with fields `sequence` and `video_chunk`: {e}"
                ),
            )),
        },
    };
    if res.is_err() {
        if let Ok(mp) = &mut mp {
            // Refused before the whole body was read (bad token, bad `sequence` before the file
            // …): read and discard a bounded 16 MiB of the rest, so a client still sending gets
            // to read this answer instead of a broken pipe.
            let mut left: usize = 16 << 20;
            'drain: while let Ok(Some(mut f)) = mp.next_field().await {
                while let Ok(Some(c)) = f.chunk().await {
                    left = left.saturating_sub(c.len());
                    if left == 0 {
                        break 'drain;
                    }
                }
            }
        }
    }
    if res.is_err() {
        Metrics::inc(&app.metrics.chunks_rejected_total, 1);
    }
    res
}

/// The checks an upload must pass before its body is read: token, ownership, live stream, size.
fn upload_precheck(app: &App, id: &str, headers: &HeaderMap) -> ApiResult<()> {
    let user = user(app, headers)?;
    let rec = owned_stream(app, id, &user)?;
    if !rec.is_live() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("stream {id} is stopped; start a new stream"),
        ));
    }
    if let Some(len) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
    {
        if len > app.cfg.upload.max_chunk_bytes.saturating_add(1 << 20) {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "upload of {len} bytes is larger than the limit of {} bytes",
                    app.cfg.upload.max_chunk_bytes
                ),
            ));
        }
    }
    Ok(())
}

async fn upload_inner(app: &App, id: &str, mp: &mut Multipart) -> ApiResult<Json<Value>> {
    let staged = upload::receive(app, mp).await?;
    upload::validate(&staged.path).await?;
    let sess = app.session(id);
    let mut sess = sess.lock().await;
    let v = upload::accept(app, &mut sess, staged).await?;
    Ok(Json(v))
}

async fn stop_handler(
    State(app): State<App>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    let user = user(&app, &headers)?;
    let rec = owned_stream(&app, &id, &user)?;
    if !rec.is_live() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("stream {id} is already stopped"),
        ));
    }
    let video = stop::stop_stream(&app, &id)
        .await
        .map_err(ApiError::internal)?;
    let base = base_url(&app, &headers);
    Ok(Json(json!({
        "success": true,
        "message": "Stream finalized successfully. VOD created.",
        "videoId": video.id,
        "videoUrl": video_url(&base, &video),
    })))
}

fn video_url(base: &str, v: &storage::VideoRecord) -> Value {
    match (&v.remote_url, &v.mp4_path) {
        (Some(u), _) => json!(u),
        (None, Some(_)) => json!(format!("{base}/api/videos/{}/video.mp4", v.id)),
        (None, None) => Value::Null,
    }
}

fn stream_json(app: &App, base: &str, s: &StreamRecord) -> ApiResult<Value> {
    let segs = app.db.segments(&s.id)?;
    let chunks = app.db.chunks(&s.id)?;
    let pending: Vec<u64> = chunks
        .iter()
        .filter(|c| matches!(c.state, ChunkState::Pending { .. }))
        .map(|c| c.sequence)
        .collect();
    let skipped: Vec<u64> = chunks
        .iter()
        .filter(|c| matches!(c.state, ChunkState::Skipped))
        .map(|c| c.sequence)
        .collect();
    let inits = app.db.inits(&s.id)?;
    let publisher = app.publisher_json(&s.id);
    let mut v = json!({
        "id": s.id,
        "title": s.title,
        "status": s.status,
        "streamKey": s.stream_key,
        "createdAt": crate::stop::iso(s.created_at_ms),
        "stoppedAt": s.stopped_at_ms.map(crate::stop::iso),
        "segments": segs.len(),
        "durationSecs": segs.iter().map(|x| x.duration_secs).sum::<f64>(),
        "bytes": segs.iter().map(|x| x.size).sum::<u64>(),
        "nextChunk": s.next_chunk,
        "pendingChunks": pending,
        "skippedChunks": skipped,
        "codecs": inits.last().map(|i| i.codecs.clone()),
        "resolution": inits.last().filter(|i| i.width > 0).map(|i| format!("{}x{}", i.width, i.height)),
        "publisher": publisher,
        "pull": crate::pull::status_json(s),
        "videoId": s.video_id,
    });
    merge(&mut v, stream_urls(app, base, s));
    if let Some(pins) = crate::pin::counts(app, &s.id) {
        v["pins"] = json!(pins);
    }
    if let Some(vid) = &s.video_id {
        if let Some(video) = app.db.video(vid)? {
            v["videoUrl"] = video_url(base, &video);
        }
    }
    Ok(v)
}

async fn status(
    State(app): State<App>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    let user = user(&app, &headers)?;
    let rec = owned_stream(&app, &id, &user)?;
    let base = base_url(&app, &headers);
    Ok(Json(
        json!({"success": true, "stream": stream_json(&app, &base, &rec)?}),
    ))
}

async fn list(State(app): State<App>, headers: HeaderMap) -> ApiResult<Json<Value>> {
    let user = user(&app, &headers)?;
    let base = base_url(&app, &headers);
    let streams = app
        .db
        .streams_of_user(&user)?
        .iter()
        .map(|s| stream_json(&app, &base, s))
        .collect::<ApiResult<Vec<_>>>()?;
    Ok(Json(json!({"success": true, "streams": streams})))
}

fn playlist_response(text: impl IntoResponse, live: bool) -> Response {
    let cache = if live {
        "no-cache"
    } else {
        "public, max-age=31536000, immutable"
    };
    (
        [
            (header::CONTENT_TYPE, "application/vnd.apple.mpegurl"),
            (header::CACHE_CONTROL, cache),
        ],
        text,
    )
        .into_response()
}

/// The segments of a stream as playlist lines; `prefix` makes URIs resolve from where the
/// playlist is served.
fn playlist_segments(app: &App, stream: &str, prefix: &str) -> ApiResult<Vec<PlaylistSegment>> {
    let inits = app.db.inits(stream)?;
    Ok(app
        .db
        .segments(stream)?
        .into_iter()
        .map(|s| {
            let init_uri = inits
                .iter()
                .find(|i| i.init_id == s.init_id)
                .and_then(|i| i.remote_url.clone())
                .unwrap_or_else(|| format!("{prefix}init/{}.mp4", s.init_id));
            PlaylistSegment {
                uri: s
                    .remote_url
                    .clone()
                    .unwrap_or_else(|| format!("{prefix}segments/{}.m4s", s.sequence)),
                duration_secs: s.duration_secs,
                discontinuity: s.discontinuity,
                init_uri,
                program_date_time_ms: Some(s.program_date_time_ms),
            }
        })
        .collect())
}

async fn live_playlist(State(app): State<App>, Path(id): Path<String>) -> ApiResult<Response> {
    let id = id.trim_end_matches(".m3u8");
    // Read before the records: a write after this read makes the rendering below stale for
    // the next request, never current-looking.
    let generation = app.db.generation(id);
    if let Some(c) = app.cached_playlist(id, generation) {
        return Ok(playlist_response(c.body, c.revalidate));
    }
    let rec = public_stream(&app, id)?;
    let segments = playlist_segments(&app, &rec.id, "")?;
    let p = Playlist {
        kind: if rec.is_live() {
            PlaylistKind::Event
        } else {
            PlaylistKind::Vod
        },
        ended: !rec.is_live(),
        target_duration_secs: app.cfg.hls.target_duration,
        media_sequence: 0,
        segments,
    };
    let revalidate = rec.is_live() || !pins_settled(&app, &p.segments);
    let body = bytes::Bytes::from(p.render());
    app.cache_playlist(
        &rec.id,
        crate::app::CachedPlaylist {
            generation,
            body: body.clone(),
            revalidate,
        },
    );
    Ok(playlist_response(body, revalidate))
}

/// Whether a stopped stream's playlist is final: with FilCDN pinning on, its URIs still switch
/// to FilBeam (and local copies may be pruned) until every file is pinned, so it must not be
/// cached as immutable before that.
fn pins_settled(app: &App, segments: &[PlaylistSegment]) -> bool {
    app.pins.get().is_none()
        || segments
            .iter()
            .all(|s| s.uri.starts_with("http") && s.init_uri.starts_with("http"))
}

fn find_video(app: &App, id: &str) -> ApiResult<storage::VideoRecord> {
    if !is_object_id(id) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("invalid video id {id:?}: expected 24 lowercase hex characters"),
        ));
    }
    app.db
        .video(id)?
        .ok_or_else(|| ApiError::not_found("video"))
}

async fn video(
    State(app): State<App>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    let v = find_video(&app, &id)?;
    let base = base_url(&app, &headers);
    Ok(Json(json!({
        "success": true,
        "video": {
            "id": v.id,
            "streamId": v.stream_id,
            "title": v.title,
            "durationSecs": v.duration_secs,
            "size": v.size,
            "segments": v.segments,
            "createdAt": crate::stop::iso(v.created_at_ms),
            "videoUrl": video_url(&base, &v),
            "mp4Url": v.mp4_path.as_ref().map(|_| format!("{base}/api/videos/{}/video.mp4", v.id)),
            "playlistUrl": format!("{base}/api/videos/{}/index.m3u8", v.id),
        }
    })))
}

async fn vod_playlist(State(app): State<App>, Path(id): Path<String>) -> ApiResult<Response> {
    let v = find_video(&app, &id)?;
    let prefix = format!("/api/streams/{}/", v.stream_id);
    let p = Playlist {
        kind: PlaylistKind::Vod,
        ended: true,
        target_duration_secs: app.cfg.hls.target_duration,
        media_sequence: 0,
        segments: playlist_segments(&app, &v.stream_id, &prefix)?,
    };
    let settled = pins_settled(&app, &p.segments);
    Ok(playlist_response(p.render(), !settled))
}

async fn metrics(State(app): State<App>) -> Response {
    let live = app.db.live_streams().map(|v| v.len() as u64).unwrap_or(0);
    let publishers = app.publisher_count().await;
    let mut body = app.metrics.render(live, publishers);
    if let Some(whip) = &app.whip.0 {
        crate::metrics::render_whip_transport(&mut body, whip.transport_stats());
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}
