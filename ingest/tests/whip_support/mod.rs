//! A tiny WHIP HTTP endpoint for the tests: what the server's axum routes do, minus auth and
//! sessions. `POST /api/whip` (bearer `test-key`) → `WhipHandle::publish`, `DELETE
//! /api/whip/{id}`, and a blank page at `/` so a browser has a secure-context origin.
#![allow(dead_code)]

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::Router;
use ingest::publish::{IngestEvent, Publisher};
use ingest::whip::{WhipError, WhipHandle};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub const KEY: &str = "test-key";

/// One accepted publish, as the stream session would see it.
pub struct Published {
    pub session_id: String,
    pub events: mpsc::Receiver<IngestEvent>,
    pub cancel: CancellationToken,
}

#[derive(Clone)]
struct AppState {
    whip: WhipHandle,
    published: mpsc::UnboundedSender<Published>,
}

fn error_response(e: WhipError) -> Response {
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        status,
        axum::Json(serde_json::json!({ "error": e.to_string() })),
    )
        .into_response()
}

async fn publish(State(st): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if auth != format!("Bearer {KEY}") {
        return (StatusCode::UNAUTHORIZED, "bad key").into_response();
    }
    let offer = String::from_utf8_lossy(&body);
    let (tx, rx) = mpsc::channel(4096);
    let cancel = CancellationToken::new();
    let publisher = Publisher {
        stream_id: "test".into(),
        events: tx,
        cancel: cancel.clone(),
    };
    match st.whip.publish(&offer, publisher).await {
        Ok(a) => {
            let _ = st.published.send(Published {
                session_id: a.session_id.clone(),
                events: rx,
                cancel,
            });
            (
                StatusCode::CREATED,
                [
                    (header::CONTENT_TYPE, "application/sdp".to_string()),
                    (header::LOCATION, format!("/api/whip/{}", a.session_id)),
                    (header::ETAG, a.etag),
                    (
                        header::ACCESS_CONTROL_EXPOSE_HEADERS,
                        "Location, ETag".into(),
                    ),
                ],
                a.answer_sdp,
            )
                .into_response()
        }
        Err(e) => error_response(e),
    }
}

async fn remove(State(st): State<AppState>, Path(id): Path<String>) -> Response {
    match st.whip.delete(&id).await {
        Ok(()) => StatusCode::OK.into_response(),
        Err(e) => error_response(e),
    }
}

/// Serves the test endpoint on 127.0.0.1; accepted publishes come out of the receiver.
pub async fn serve(whip: WhipHandle) -> (SocketAddr, mpsc::UnboundedReceiver<Published>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let app = Router::new()
        .route(
            "/",
            get(|| async { axum::response::Html("<!doctype html><title>whip test</title>") }),
        )
        .route("/api/whip", post(publish))
        .route("/api/whip/{id}", delete(remove))
        .with_state(AppState {
            whip,
            published: tx,
        });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (addr, rx)
}

/// tests/js with puppeteer-core installed (`npm ci` on first use, as CI would).
pub fn js_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/js");
    if !dir.join("node_modules/puppeteer-core").exists() {
        let st = std::process::Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&dir)
            .status()
            .expect("npm (Debian/NodeSource nodejs) is needed for the browser tests");
        assert!(st.success(), "npm ci in tests/js failed");
    }
    dir
}

/// Panics with the install command when a Debian package the test needs is missing.
pub fn require(binary: &str, package: &str) {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(binary).exists()))
        .unwrap_or(false);
    assert!(
        found,
        "{binary} not found: apt-get install -y --no-install-recommends {package}"
    );
}

/// Splits a 4-byte length-prefixed sample into NAL units (None if the lengths do not add up).
pub fn nal_units(sample: &[u8]) -> Option<Vec<&[u8]>> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < sample.len() {
        let len = u32::from_be_bytes(sample.get(at..at + 4)?.try_into().ok()?) as usize;
        at += 4;
        out.push(sample.get(at..at + len)?);
        at += len;
    }
    Some(out)
}

pub fn run(cmd: &mut Command) {
    let st = cmd.status().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(st.success(), "{cmd:?} failed");
}

// The namespace and plugin helpers are shared with the root crate's storef-binary tests.
#[path = "../../../tests/common/netns.rs"]
mod netns;
#[allow(unused_imports)] // each test binary uses some of them
pub use netns::{block_on, rerun_in_netns};
