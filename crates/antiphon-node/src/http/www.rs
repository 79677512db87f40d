//! `serve --www`: the built page's static files, precompressed where a copy exists, with the
//! caching a returning visitor can use.
//!
//! A file whose name carries a content hash (`main.3f9c0a5be1d27c4e8a11.js`,
//! `9d8e7f6a5b4c3d2e1f00.module.wasm`, as webpack names them) never changes under its name: it
//! is cached for a year and never revalidated, so a returning visitor's browser takes the wasm
//! module (and, where Chromium kept it, its compiled code) from its cache without asking. Every other file
//! (`index.html`, files named as wasm-pack names them) is `no-cache`: kept, but revalidated on
//! each use with `If-Modified-Since`, which costs a round trip and a `304` rather than the file.

use std::path::PathBuf;

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::Response;
use tower_http::services::ServeDir;

/// For files whose name holds a content hash.
pub const IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// For every other file: stored, revalidated on each use.
pub const REVALIDATE: &str = "no-cache";

/// The shortest run of hex digits taken for a content hash (webpack writes 20, and a decimal
/// version number is never this long).
const MIN_HASH_DIGITS: usize = 16;

/// The static files of `dir`, as the router's fallback.
pub fn router(dir: PathBuf) -> Router {
    Router::new()
        .fallback_service(ServeDir::new(dir).precompressed_br().precompressed_gzip())
        .layer(middleware::from_fn(cache_control))
}

async fn cache_control(request: Request, next: Next) -> Response {
    let policy = policy_for(request.uri().path());
    let mut response = next.run(request).await;
    if response.status().is_success() || response.status() == StatusCode::NOT_MODIFIED {
        let headers = response.headers_mut();
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(policy));
        // The body depends on Accept-Encoding (a precompressed copy or the file): a shared
        // cache must not give one client's brotli to another that cannot read it.
        headers.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    }
    response
}

/// The `Cache-Control` for a request path: [`IMMUTABLE`] when the file name has a dot-separated
/// part of at least 16 hex digits before its extension, else [`REVALIDATE`].
pub fn policy_for(path: &str) -> &'static str {
    let name = path.rsplit('/').next().unwrap_or_default();
    let mut parts: Vec<&str> = name.split('.').collect();
    // A name without an extension is never taken for hashed.
    parts.pop();
    let hashed = parts.iter().any(|p| p.len() >= MIN_HASH_DIGITS && p.bytes().all(|b| b.is_ascii_hexdigit()));
    if hashed { IMMUTABLE } else { REVALIDATE }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_hashed_names_are_immutable_and_others_revalidate() {
        for hashed in [
            "/main.3f9c0a5be1d27c4e8a11.js",
            "/9d8e7f6a5b4c3d2e1f00.module.wasm",
            "/a/b/chunk.0123456789abcdef.js",
            "/0123456789abcdef.js",
        ] {
            assert_eq!(policy_for(hashed), IMMUTABLE, "{hashed}");
        }
        for plain in [
            "/",
            "/index.html",
            "/pkg/antiphon_bg.wasm",
            "/pkg/antiphon.js",
            "/0123456789abcdef0123",
            "/app.1.2.3.js",
            "/notes.0123456789abcdeg.txt",
        ] {
            assert_eq!(policy_for(plain), REVALIDATE, "{plain}");
        }
    }
}
