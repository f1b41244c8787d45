//! Serving stored files (init segments, media segments, VOD MP4s) with single `Range` requests and
//! caching headers for immutable content: a segment's bytes never change once it is listed.

use crate::api::ApiError;
use crate::app::{init_path, segment_path, App};
use crate::ids::is_object_id;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

fn parse_name(file: &str, ext: &str) -> Result<u64, ApiError> {
    file.strip_suffix(ext)
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("no such file {file:?}")))
}

fn check_id(id: &str) -> Result<(), ApiError> {
    if is_object_id(id) {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("invalid id {id:?}: expected 24 lowercase hex characters"),
        ))
    }
}

pub async fn init_file(
    State(app): State<App>,
    Path((id, file)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    check_id(&id)?;
    let n = parse_name(&file, ".mp4")?;
    let n = u32::try_from(n).map_err(|_| ApiError::new(StatusCode::NOT_FOUND, "no such init"))?;
    serve(&app, &init_path(&id, n), "video/mp4", &headers).await
}

pub async fn segment_file(
    State(app): State<App>,
    Path((id, file)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    check_id(&id)?;
    let n = parse_name(&file, ".m4s")?;
    // Only segments recorded in sled are served: a file written by a request that then failed
    // before its commit is not part of the stream.
    if app.db.segment(&id, n)?.is_none() {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "segment not found"));
    }
    serve(&app, &segment_path(&id, n), "video/iso.segment", &headers).await
}

pub async fn video_file(
    State(app): State<App>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    check_id(&id)?;
    let v = app
        .db
        .video(&id)?
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "video not found"))?;
    let path = v
        .mp4_path
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "this video has no media"))?;
    serve(&app, &path, "video/mp4", &headers).await
}

/// A `bytes=a-b` / `bytes=a-` / `bytes=-n` range within `len`; None for no (or an ignorable) header.
fn parse_range(h: &str, len: u64) -> Option<Result<(u64, u64), ()>> {
    let spec = h.strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None; // multipart ranges: answer with the whole file, as RFC 9110 allows
    }
    let (a, b) = spec.split_once('-')?;
    let r = match (a.trim(), b.trim()) {
        ("", n) => {
            let n: u64 = n.parse().ok()?;
            if n == 0 || len == 0 {
                return Some(Err(()));
            }
            (len.saturating_sub(n), len - 1)
        }
        (a, "") => (a.parse().ok()?, len.saturating_sub(1)),
        (a, b) => (
            a.parse().ok()?,
            b.parse::<u64>().ok()?.min(len.saturating_sub(1)),
        ),
    };
    if r.0 > r.1 || r.0 >= len {
        return Some(Err(()));
    }
    Some(Ok(r))
}

async fn serve(
    app: &App,
    rel: &str,
    ctype: &str,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let path = app.store.path(rel).map_err(ApiError::internal)?;
    let mut f = match tokio::fs::File::open(&path).await {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ApiError::new(StatusCode::NOT_FOUND, "file not found"))
        }
        Err(e) => return Err(ApiError::internal(e)),
    };
    let len = f.metadata().await.map_err(ApiError::internal)?.len();
    let etag = format!("\"{len:x}-{}\"", rel.len());
    if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == etag)
    {
        return Ok((StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response());
    }
    let range = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|h| parse_range(h, len));
    let common = [
        (header::CONTENT_TYPE, ctype.to_string()),
        (header::ACCEPT_RANGES, "bytes".to_string()),
        (
            header::CACHE_CONTROL,
            "public, max-age=31536000, immutable".to_string(),
        ),
        (header::ETAG, etag),
    ];
    match range {
        None => {
            let body = Body::from_stream(tokio_util::io::ReaderStream::new(f));
            Ok((
                StatusCode::OK,
                common,
                [(header::CONTENT_LENGTH, len.to_string())],
                body,
            )
                .into_response())
        }
        Some(Err(())) => Ok((
            StatusCode::RANGE_NOT_SATISFIABLE,
            [(header::CONTENT_RANGE, format!("bytes */{len}"))],
        )
            .into_response()),
        Some(Ok((a, b))) => {
            f.seek(std::io::SeekFrom::Start(a))
                .await
                .map_err(ApiError::internal)?;
            let n = b - a + 1;
            let body = Body::from_stream(tokio_util::io::ReaderStream::new(f.take(n)));
            Ok((
                StatusCode::PARTIAL_CONTENT,
                common,
                [
                    (header::CONTENT_LENGTH, n.to_string()),
                    (header::CONTENT_RANGE, format!("bytes {a}-{b}/{len}")),
                ],
                body,
            )
                .into_response())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse_range;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-9", 100), Some(Ok((0, 9))));
        assert_eq!(parse_range("bytes=90-", 100), Some(Ok((90, 99))));
        assert_eq!(parse_range("bytes=-10", 100), Some(Ok((90, 99))));
        assert_eq!(parse_range("bytes=95-200", 100), Some(Ok((95, 99))));
        assert_eq!(parse_range("bytes=100-", 100), Some(Err(())));
        assert_eq!(parse_range("bytes=5-1", 100), Some(Err(())));
        assert_eq!(parse_range("bytes=0-1,5-6", 100), None);
        assert_eq!(parse_range("items=0-1", 100), None);
    }
}
