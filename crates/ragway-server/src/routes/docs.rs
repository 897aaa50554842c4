//! The API described: `GET /openapi.json` (OpenAPI 3.1) and `GET /docs`, Swagger UI over it,
//! its assets vendored from `swagger-ui-dist` and compiled into the binary, so it works offline.

use axum::extract::Path;
use axum::http::StatusCode;
use axum::http::header::{CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};

use crate::openapi::schemas::ErrorMessage;

/// The Swagger UI page: the vendored bundle and style, started by [`INITIALIZER`].
const PAGE: &str = r#"<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>ragway API</title>
  <link rel="icon" href="data:,">
  <link rel="stylesheet" href="/docs/swagger-ui.css">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="/docs/swagger-ui-bundle.js"></script>
  <script src="/docs/swagger-initializer.js"></script>
</body>
</html>
"#;

/// Points Swagger UI at this server's document; `validatorUrl: null` keeps it from asking
/// validator.swagger.io for a badge, the one call it would otherwise make off the machine.
const INITIALIZER: &str = r##"window.onload = function () {
  window.ui = SwaggerUIBundle({
    url: "/openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    validatorUrl: null,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
  });
};
"##;

const BUNDLE: &[u8] = include_bytes!("../../assets/swagger-ui/swagger-ui-bundle.js");
const STYLE: &[u8] = include_bytes!("../../assets/swagger-ui/swagger-ui.css");

/// Everything the page runs, styles or fetches comes from this server's files (no inline script
/// or style); Swagger UI's stylesheet draws some icons as `data:` images. Checked in a browser
/// by `swagger_ui_renders_every_operation_in_a_browser_under_its_csp`.
const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
                      img-src 'self' data:; connect-src 'self'; base-uri 'none'; \
                      form-action 'none'; frame-ancestors 'none'";

/// The page and the initializer change with ragway; the vendored files only with their
/// version, so browsers may keep them for a day.
const REVALIDATE: &str = "no-cache";
const KEEP_A_DAY: &str = "public, max-age=86400";

/// `GET /openapi.json`.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "docs",
    responses(
        (status = 200, description = "This document (OpenAPI 3.1)", body = Object, content_type = "application/json"),
    ),
)]
pub async fn openapi_json() -> axum::Json<utoipa::openapi::OpenApi> {
    axum::Json(crate::openapi::document())
}

/// `GET /docs`: Swagger UI.
#[utoipa::path(
    get,
    path = "/docs",
    tag = "docs",
    responses((status = 200, description = "Swagger UI over /openapi.json", body = String, content_type = "text/html")),
)]
pub async fn swagger_ui() -> Response {
    (
        [
            (CONTENT_TYPE, "text/html; charset=utf-8"),
            (CACHE_CONTROL, REVALIDATE),
            (CONTENT_SECURITY_POLICY, POLICY),
        ],
        PAGE,
    )
        .into_response()
}

/// `GET /docs/{asset}`: the files the Swagger UI page loads.
#[utoipa::path(
    get,
    path = "/docs/{asset}",
    tag = "docs",
    params(("asset" = String, Path, description = "`swagger-ui-bundle.js`, `swagger-ui.css` or `swagger-initializer.js`")),
    responses(
        (status = 200, description = "The file", content(
            (String = "text/javascript"),
            (String = "text/css"),
        )),
        (status = 404, description = "No such file", body = ErrorMessage),
    ),
)]
pub async fn asset(Path(asset): Path<String>) -> Response {
    let (content_type, cache, body): (&str, &str, &'static [u8]) = match asset.as_str() {
        "swagger-ui-bundle.js" => ("text/javascript; charset=utf-8", KEEP_A_DAY, BUNDLE),
        "swagger-ui.css" => ("text/css; charset=utf-8", KEEP_A_DAY, STYLE),
        "swagger-initializer.js" => (
            "text/javascript; charset=utf-8",
            REVALIDATE,
            INITIALIZER.as_bytes(),
        ),
        _ => {
            return (
                StatusCode::NOT_FOUND,
                axum::Json(ErrorMessage {
                    detail: format!("No file /docs/{asset}"),
                }),
            )
                .into_response();
        }
    };
    ([(CONTENT_TYPE, content_type), (CACHE_CONTROL, cache)], body).into_response()
}
