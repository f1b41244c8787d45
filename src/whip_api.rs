//! WHIP (RFC 9725) over HTTP: `POST /api/whip` with an SDP offer and the stream key as bearer
//! token answers `201 Created` with the SDP answer and the session's `Location`; `DELETE` on that
//! resource ends the publish; `PATCH` (trickle ICE) is answered 405 as §4.3.1 allows, since every
//! candidate storef has is in its answer (ICE-lite).

use crate::api::{base_url, ApiError};
use crate::app::App;
use crate::live::Gate;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use ingest::publish::{PublishGate, PublisherInfo, Refusal};
use ingest::whip::{WhipError, WhipHandle};
use std::net::SocketAddr;
use std::sync::Arc;

/// The WHIP handle, when `[webrtc]` is enabled.
#[derive(Clone)]
pub struct Whip(pub Option<Arc<WhipHandle>>);

fn whip_error(e: WhipError) -> ApiError {
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST);
    ApiError::new(status, e.to_string())
}

fn handle(app: &App) -> Result<Arc<WhipHandle>, ApiError> {
    app.whip.0.clone().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "WHIP is disabled on this server ([webrtc] enabled = false)",
        )
    })
}

pub async fn post(
    State(app): State<App>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: String,
) -> Result<Response, ApiError> {
    let whip = handle(&app)?;
    let ctype = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !ctype.to_ascii_lowercase().starts_with("application/sdp") {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("a WHIP offer must be sent as application/sdp, not {ctype:?}"),
        ));
    }
    let key = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "missing bearer token: send the stream key as `Authorization: Bearer <streamKey>`",
            )
        })?;
    let gate = Gate { app: app.clone() };
    let publisher = gate
        .start_publish(
            key,
            PublisherInfo {
                protocol: "whip",
                remote: Some(peer),
            },
        )
        .map_err(|r| match r {
            Refusal::UnknownKey => ApiError::new(StatusCode::UNAUTHORIZED, "unknown stream key"),
            Refusal::Stopped => ApiError::new(StatusCode::NOT_FOUND, "stream is stopped"),
            Refusal::AlreadyPublishing => {
                ApiError::new(StatusCode::CONFLICT, "stream already has a publisher")
            }
            other => ApiError::new(StatusCode::FORBIDDEN, other.to_string()),
        })?;
    let stream_id = publisher.stream_id.clone();
    let answer = whip.publish(&body, publisher).await.map_err(|e| {
        tracing::warn!(stream = %stream_id, error = %e, "WHIP offer refused");
        whip_error(e)
    })?;
    // Let the stream's packaging task ask this publisher for a keyframe.
    let sid = answer.session_id.clone();
    let w2 = whip.clone();
    app.set_keyframe_requester(
        &stream_id,
        Arc::new(move || {
            let w = w2.clone();
            let s = sid.clone();
            tokio::spawn(async move {
                let _ = w.request_keyframe(&s).await;
            });
        }),
    );
    tracing::info!(stream = %stream_id, session = %answer.session_id, remote = %peer, "WHIP session created");
    let location = format!(
        "{}/api/whip/{}",
        base_url(&app, &headers),
        answer.session_id
    );
    let mut res = (StatusCode::CREATED, answer.answer_sdp).into_response();
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/sdp"),
    );
    if let Ok(v) = HeaderValue::from_str(&location) {
        h.insert(header::LOCATION, v);
    }
    if let Ok(v) = HeaderValue::from_str(&answer.etag) {
        h.insert(header::ETAG, v);
    }
    for l in &answer.links {
        if let Ok(v) = HeaderValue::from_str(l) {
            h.append(header::LINK, v);
        }
    }
    Ok(res)
}

pub async fn delete(
    State(app): State<App>,
    Path(session): Path<String>,
) -> Result<Response, ApiError> {
    handle(&app)?.delete(&session).await.map_err(whip_error)?;
    Ok(StatusCode::OK.into_response())
}

pub async fn patch(
    State(app): State<App>,
    Path(session): Path<String>,
    body: String,
) -> Result<Response, ApiError> {
    handle(&app)?
        .patch(&session, &body)
        .await
        .map_err(whip_error)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// A plain `OPTIONS` (CORS preflights are answered by the CORS layer before this).
pub async fn options() -> Response {
    (
        StatusCode::NO_CONTENT,
        [(
            header::HeaderName::from_static("accept-post"),
            "application/sdp",
        )],
    )
        .into_response()
}
