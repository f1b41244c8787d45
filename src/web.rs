//! The page at `/`: go live from the browser over WHIP, watch the HLS beside the preview, stop and
//! get the VOD; and `/recorder`, the MediaRecorder chunk-upload example. Static files compiled into
//! the binary, so storef stays one file to deploy.

use axum::http::header;
use axum::response::{IntoResponse, Response};

fn file(ctype: &'static str, body: &'static [u8]) -> Response {
    (
        [
            (header::CONTENT_TYPE, ctype),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

pub async fn index() -> Response {
    file(
        "text/html; charset=utf-8",
        include_bytes!("../web/index.html"),
    )
}

pub async fn app_js() -> Response {
    file(
        "text/javascript; charset=utf-8",
        include_bytes!("../web/app.js"),
    )
}

/// What both pages share (sign-in, API helper, player); loaded before app.js and recorder.js.
pub async fn common_js() -> Response {
    file(
        "text/javascript; charset=utf-8",
        include_bytes!("../web/common.js"),
    )
}

pub async fn app_css() -> Response {
    file("text/css; charset=utf-8", include_bytes!("../web/app.css"))
}

pub async fn hls_js() -> Response {
    file(
        "text/javascript; charset=utf-8",
        include_bytes!("../web/vendor/hls.min.js"),
    )
}

/// The MediaRecorder example page for front-ends migrating from the old server (issue 7).
pub async fn recorder() -> Response {
    file(
        "text/html; charset=utf-8",
        include_bytes!("../web/recorder.html"),
    )
}

pub async fn recorder_js() -> Response {
    file(
        "text/javascript; charset=utf-8",
        include_bytes!("../web/recorder.js"),
    )
}
