//! The web UI: a page, a script and a style sheet embedded in the binary (no build step),
//! reading the same API as everyone else.

use warp::http::{HeaderValue, StatusCode};
use warp::reply::{Reply, Response};

use super::ApiError;

const INDEX: &str = include_str!("../../ui/index.html");
const APP_JS: &str = include_str!("../../ui/app.js");
const APP_CSS: &str = include_str!("../../ui/app.css");
const ICON: &str = include_str!("../../ui/icon.svg");

/// Answers a GET outside `/api`: the UI's files, or a JSON 404.
pub fn serve(path: &str) -> Response {
    let (body, kind) = match path {
        "/" | "/index.html" => (INDEX, "text/html; charset=utf-8"),
        "/ui/app.js" => (APP_JS, "text/javascript; charset=utf-8"),
        "/ui/app.css" => (APP_CSS, "text/css; charset=utf-8"),
        "/ui/icon.svg" | "/favicon.ico" => (ICON, "image/svg+xml"),
        _ => {
            return ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("no such page `{path}`"),
            )
            .into_response();
        }
    };
    let mut r = body.into_response();
    let h = r.headers_mut();
    h.insert(
        warp::http::header::CONTENT_TYPE,
        HeaderValue::from_static(kind),
    );
    h.insert(
        warp::http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache"),
    );
    h.insert(
        "content-security-policy",
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'",
        ),
    );
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    r
}
