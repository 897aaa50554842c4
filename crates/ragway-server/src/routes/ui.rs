//! `GET /ui`: the playground, one self-contained HTML page (no CDN, no build step) compiled
//! into the binary. It drives the public API (`/models`, streaming `/generate`) like any client.

use axum::http::header::{CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE};
use axum::response::IntoResponse;

const PAGE: &str = include_str!("../../assets/playground.html");

/// Everything the page needs comes from this server; its script and style are inline.
const POLICY: &str = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
                      connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'";

/// `GET /ui`.
#[utoipa::path(
    get,
    path = "/ui",
    tag = "docs",
    responses((status = 200, description = "The playground page", body = String, content_type = "text/html")),
)]
pub async fn playground() -> impl IntoResponse {
    (
        [
            (CONTENT_TYPE, "text/html; charset=utf-8"),
            (CACHE_CONTROL, "no-cache"),
            (CONTENT_SECURITY_POLICY, POLICY),
        ],
        PAGE,
    )
}
