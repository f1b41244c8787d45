//! The product page (web/) in headless chromium against a stand-in of storef's stream API and the
//! real WHIP front-end: sign in with pasted `storef token` output, go live with the fake camera,
//! status panel filled from the publisher's stats, end the stream, recording link and history.
//! Saves a screenshot of the live studio as `whip_page.png` in Cargo's test tmp dir.
//!
//! The stand-in API answers with the JSON shapes of src/api.rs (`streamId`, `streamKey`,
//! `playbackUrl`, `whipUrl`; `stream.publisher.stats`; `videoUrl`), without HLS: the full path
//! through the segmenter is the server's own end-to-end test.

mod whip_support;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use ingest::publish::{IngestEvent, Publisher};
use ingest::whip::{WhipConfig, WhipHandle, WhipServer};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use whip_support::{js_dir, require};

/// HS256 header, claims {"id":"alice"}; the stand-in only compares strings.
const TOKEN: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJpZCI6ImFsaWNlIn0.c2lnbmF0dXJl";

#[derive(Default)]
struct Stream {
    title: Option<String>,
    key: String,
    live: bool,
    stats: Option<Value>,
    frames: u64,
    cancel: Option<CancellationToken>,
}

#[derive(Clone)]
struct Api {
    whip: WhipHandle,
    streams: Arc<Mutex<BTreeMap<String, Stream>>>,
}

fn authed(h: &HeaderMap) -> bool {
    h.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) == Some(&format!("Bearer {TOKEN}"))
}

fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        Json(json!({"success": false, "message": "invalid token"})),
    )
        .into_response()
}

fn stream_json(id: &str, s: &Stream) -> Value {
    json!({
        "id": id, "title": s.title, "status": if s.live { "live" } else { "stopped" },
        "createdAt": "2026-11-25T12:00:00Z", "durationSecs": if s.live { 0.0 } else { 12.0 },
        "resolution": s.stats.as_ref().and_then(|st| st["width"].as_u64().map(|w| format!("{w}x{}", st["height"]))),
        "playbackUrl": format!("/api/streams/{id}/live.m3u8"),
        "publisher": s.stats.as_ref().filter(|_| s.live).map(|st| json!({"connected": true, "protocol": "whip", "stats": st})),
        "videoUrl": if s.live { Value::Null } else { json!(format!("/api/videos/v{id}/video.mp4")) },
    })
}

async fn start(State(api): State<Api>, h: HeaderMap, body: Bytes) -> Response {
    if !authed(&h) {
        return unauthorized();
    }
    let title = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v["title"].as_str().map(String::from));
    let mut streams = api.streams.lock().unwrap();
    let id = format!("{:024x}", streams.len() + 1);
    let key = format!("key{}", streams.len() + 1);
    streams.insert(
        id.clone(),
        Stream {
            title,
            key: key.clone(),
            live: true,
            ..Stream::default()
        },
    );
    let host = h
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    (
        StatusCode::CREATED,
        Json(json!({"success": true, "streamId": id, "streamKey": key,
            "playbackUrl": format!("http://{host}/api/streams/{id}/live.m3u8"),
            "whipUrl": format!("http://{host}/api/whip")})),
    )
        .into_response()
}

async fn list(State(api): State<Api>, h: HeaderMap) -> Response {
    if !authed(&h) {
        return unauthorized();
    }
    let streams = api.streams.lock().unwrap();
    let list: Vec<Value> = streams
        .iter()
        .rev()
        .map(|(id, s)| stream_json(id, s))
        .collect();
    Json(json!({"success": true, "streams": list})).into_response()
}

async fn one(State(api): State<Api>, h: HeaderMap, Path(id): Path<String>) -> Response {
    if !authed(&h) {
        return unauthorized();
    }
    let streams = api.streams.lock().unwrap();
    match streams.get(&id) {
        Some(s) => Json(json!({"success": true, "stream": stream_json(&id, s)})).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn stop(State(api): State<Api>, h: HeaderMap, Path(id): Path<String>) -> Response {
    if !authed(&h) {
        return unauthorized();
    }
    let mut streams = api.streams.lock().unwrap();
    let Some(s) = streams.get_mut(&id) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    s.live = false;
    if let Some(c) = s.cancel.take() {
        c.cancel();
    }
    Json(
        json!({"success": true, "message": "Stream finalized successfully. VOD created.",
        "videoId": format!("v{id}"), "videoUrl": format!("/api/videos/v{id}/video.mp4")}),
    )
    .into_response()
}

async fn whip_post(State(api): State<Api>, h: HeaderMap, body: Bytes) -> Response {
    let key = h
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default()
        .to_string();
    let (tx, mut rx) = mpsc::channel(4096);
    let cancel = CancellationToken::new();
    let id = {
        let mut streams = api.streams.lock().unwrap();
        let Some((id, s)) = streams.iter_mut().find(|(_, s)| s.key == key && s.live) else {
            return (StatusCode::UNAUTHORIZED, "unknown stream key").into_response();
        };
        s.cancel = Some(cancel.clone());
        id.clone()
    };
    let publisher = Publisher {
        stream_id: id.clone(),
        events: tx,
        cancel,
    };
    let answer = match api
        .whip
        .publish(&String::from_utf8_lossy(&body), publisher)
        .await
    {
        Ok(a) => a,
        Err(e) => {
            let status = StatusCode::from_u16(e.status()).unwrap();
            return (
                status,
                Json(json!({"success": false, "message": e.to_string()})),
            )
                .into_response();
        }
    };
    let streams = api.streams.clone();
    tokio::spawn(async move {
        while let Some(ev) = rx.recv().await {
            let mut s = streams.lock().unwrap();
            let Some(st) = s.get_mut(&id) else { continue };
            match ev {
                IngestEvent::Stats(v) => st.stats = Some(v),
                IngestEvent::Frame(_) => st.frames += 1,
                IngestEvent::Frames(v) => st.frames += v.len() as u64,
                IngestEvent::Tracks(_) => {}
            }
        }
    });
    (
        StatusCode::CREATED,
        [
            (header::CONTENT_TYPE, "application/sdp".to_string()),
            (header::LOCATION, format!("/api/whip/{}", answer.session_id)),
            (header::ETAG, answer.etag),
        ],
        answer.answer_sdp,
    )
        .into_response()
}

async fn whip_delete(State(api): State<Api>, Path(id): Path<String>) -> StatusCode {
    match api.whip.delete(&id).await {
        Ok(()) => StatusCode::OK,
        Err(e) => StatusCode::from_u16(e.status()).unwrap(),
    }
}

fn web_file(name: &'static str, mime: &'static str) -> axum::routing::MethodRouter<Api> {
    let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../web")
        .join(name);
    get(move || async move {
        match std::fs::read(&path) {
            Ok(b) => ([(header::CONTENT_TYPE, mime)], b).into_response(),
            Err(_) => StatusCode::NOT_FOUND.into_response(),
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn product_page_goes_live_over_whip_and_ends() {
    require("chromium", "chromium fonts-liberation");
    let js = js_dir();
    let (whip, _task) = WhipServer::start(WhipConfig {
        udp_addr: "127.0.0.1:0".parse().unwrap(),
        stats_interval: Duration::from_secs(1),
        ..WhipConfig::default()
    })
    .await
    .unwrap();
    let api = Api {
        whip,
        streams: Arc::default(),
    };
    let app = Router::new()
        .route("/", web_file("index.html", "text/html; charset=utf-8"))
        .route("/app.js", web_file("app.js", "text/javascript"))
        .route("/common.js", web_file("common.js", "text/javascript"))
        .route("/app.css", web_file("app.css", "text/css"))
        .route(
            "/vendor/hls.min.js",
            web_file("vendor/hls.min.js", "text/javascript"),
        )
        .route("/api/streams/start", post(start))
        .route("/api/streams", get(list))
        .route("/api/streams/{id}", get(one))
        .route("/api/streams/{id}/stop", post(stop))
        .route("/api/whip", post(whip_post))
        .route("/api/whip/{id}", delete(whip_delete))
        .with_state(api.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let shot = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("whip_page.png");
    // What `storef token --user alice` prints: the token on a line of its own among others.
    let pasted = format!("Token for user alice (valid 24h):\n{TOKEN}\n");
    let out = tokio::process::Command::new("node")
        .arg(js.join("whip_page.mjs"))
        .arg(format!("http://{http}/"))
        .arg(pasted)
        .arg("6")
        .arg(&shot)
        .kill_on_drop(true)
        .output()
        .await
        .unwrap();
    let r: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
        panic!(
            "{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    eprintln!("page: {r:#}");
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(r["errors"], json!([]), "JavaScript errors on the page");
    assert_eq!(r["user"], "Signed in as alice");
    let stats = &r["stats"];
    assert_eq!(stats["st-conn"], "connected");
    assert!(
        stats["st-codecs"].as_str().unwrap().contains("opus"),
        "{stats}"
    );
    assert!(
        stats["st-codecs"].as_str().unwrap().contains("avc1."),
        "{stats}"
    );
    assert!(stats["st-res"].as_str().unwrap().contains('×'), "{stats}");
    assert!(
        stats["st-bitrate"].as_str().unwrap().ends_with("kbit/s"),
        "{stats}"
    );
    assert!(r["info"]["whip"].as_str().unwrap().ends_with("/api/whip"));
    assert!(r["rowsLive"][0]
        .as_str()
        .unwrap()
        .contains("Browser test stream"));
    assert!(r["vodHref"].as_str().unwrap().ends_with("/video.mp4"));
    assert_eq!(r["badgeAfter"], "Offline");
    assert!(r["rowsAfter"][0].as_str().unwrap().contains("Ended"));
    let frames = api
        .streams
        .lock()
        .unwrap()
        .values()
        .map(|s| s.frames)
        .sum::<u64>();
    assert!(frames > 150, "only {frames} frames reached the stream");
    let png = std::fs::read(&shot).unwrap();
    assert_eq!(&png[1..4], b"PNG");
    eprintln!("screenshot: {}", shot.display());
}
