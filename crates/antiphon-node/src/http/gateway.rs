//! The trustless gateway: `GET`/`HEAD /ipfs/{cid}[/path]` answering with one verified block
//! (`application/vnd.ipld.raw`) or a CARv1 stream (`application/vnd.ipld.car`) per the IPFS
//! trustless gateway spec, and, when neither is asked for, the bytes of a UnixFS file (so
//! `<audio>`, hls.js and `curl` can read segments directly).

use std::hash::{Hash, Hasher};

use antiphon_core::Cid;
use antiphon_core::block::RAW;
use antiphon_core::car::{CarWriter, write_section};
use antiphon_core::unixfs::exporter::{ExportError, read_file};
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde::Deserialize;

use super::AppState;
use super::traversal::{self, DagScope, EntityBytes, TraversalError};

/// `Cache-Control` of every successful response: content-addressed bytes never change.
const IMMUTABLE: &str = "public, max-age=29030400, immutable";
const RAW_TYPE: &str = "application/vnd.ipld.raw";
const CAR_TYPE: &str = "application/vnd.ipld.car";
/// Blocks per chunk of a streamed CAR body.
const CAR_CHUNK_BLOCKS: usize = 16;

/// Query parameters the gateway reads.
#[derive(Debug, Default, Deserialize)]
pub struct GatewayQuery {
    format: Option<String>,
    #[serde(rename = "dag-scope")]
    dag_scope: Option<String>,
    #[serde(rename = "entity-bytes")]
    entity_bytes: Option<String>,
}

/// What the client asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Raw,
    /// A CAR; `dups` when the client asked for duplicate blocks (`dups=y`).
    Car {
        dups: bool,
    },
    /// The file's own bytes.
    File,
}

fn plain(status: StatusCode, message: impl Into<String>) -> Response {
    let mut response = (status, message.into()).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    response
}

/// What `Accept` asks for: `Ok(Some(_))` for a verifiable type, `Ok(None)` for anything a
/// browser or `curl` sends, `Err` (a 406) for other explicit IPLD types or CAR parameters this
/// gateway does not produce.
fn from_accept(headers: &HeaderMap) -> Result<Option<Format>, Response> {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
    let mut explicit_other = false;
    let mut anything = false;
    for item in accept.split(',') {
        let mut parts = item.split(';').map(str::trim);
        let media = parts.next().unwrap_or("").to_ascii_lowercase();
        let params: Vec<(String, String)> = parts
            .filter_map(|p| p.split_once('='))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().trim_matches('"').to_string()))
            .collect();
        let param = |name: &str| params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
        match media.as_str() {
            RAW_TYPE => return Ok(Some(Format::Raw)),
            CAR_TYPE => {
                if let Some(v) = param("version")
                    && v != "1"
                {
                    return Err(plain(StatusCode::NOT_ACCEPTABLE, format!("CAR version {v} is not served; only 1")));
                }
                if let Some(v) = param("order")
                    && v != "dfs"
                    && v != "unk"
                {
                    return Err(plain(StatusCode::NOT_ACCEPTABLE, format!("CAR order={v} is not served; only dfs")));
                }
                return Ok(Some(Format::Car { dups: param("dups") == Some("y") }));
            }
            "" => {}
            m if m.starts_with("application/vnd.ipld.") || m == "application/x-tar" => explicit_other = true,
            _ => anything = true,
        }
    }
    if explicit_other && !anything {
        return Err(plain(
            StatusCode::NOT_ACCEPTABLE,
            "only application/vnd.ipld.raw and application/vnd.ipld.car are served",
        ));
    }
    Ok(None)
}

/// The format: a verifiable type in `Accept` (the more specific request), else `?format=`,
/// else the file's bytes; `Err` is the 406 response.
fn negotiate(query: &GatewayQuery, headers: &HeaderMap) -> Result<Format, Response> {
    if let Some(format) = from_accept(headers)? {
        return Ok(format);
    }
    match query.format.as_deref() {
        None => Ok(Format::File),
        Some("raw") => Ok(Format::Raw),
        Some("car") => Ok(Format::Car { dups: false }),
        Some(other) => Err(plain(
            StatusCode::NOT_ACCEPTABLE,
            format!("format={other} is not served here; ask for format=raw or format=car"),
        )),
    }
}

fn not_found_or_error(e: TraversalError) -> Response {
    match e {
        TraversalError::Missing(_) | TraversalError::NoSuchPath { .. } => plain(StatusCode::NOT_FOUND, e.to_string()),
        TraversalError::Malformed { .. } | TraversalError::Dag(_) => {
            let message = std::iter::successors(Some(&e as &dyn std::error::Error), |e| e.source())
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(": ");
            plain(StatusCode::BAD_GATEWAY, message)
        }
        TraversalError::TooLarge(_) => plain(StatusCode::PAYLOAD_TOO_LARGE, e.to_string()),
        TraversalError::Store(_) => {
            tracing::error!(error = %e, "gateway store read failed");
            plain(StatusCode::INTERNAL_SERVER_ERROR, "store read failed")
        }
    }
}

fn common_headers(headers: &mut HeaderMap, content_path: &str, roots: &[Cid], etag: &str) {
    let mut set = |name: header::HeaderName, value: &str| {
        if let Ok(v) = HeaderValue::from_str(value) {
            headers.insert(name, v);
        }
    };
    set(header::CACHE_CONTROL, IMMUTABLE);
    set(header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(header::ETAG, etag);
    set(header::VARY, "Accept");
    set(header::HeaderName::from_static("x-ipfs-path"), content_path);
    let roots: Vec<String> = roots.iter().map(ToString::to_string).collect();
    set(header::HeaderName::from_static("x-ipfs-roots"), &roots.join(","));
}

fn not_modified(request: &HeaderMap, etag: &str) -> bool {
    request
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"))
}

/// `GET`/`HEAD /ipfs/{cid}`.
pub async fn root(
    state: State<AppState>,
    method: Method,
    Path(cid): Path<String>,
    query: Query<GatewayQuery>,
    headers: HeaderMap,
) -> Response {
    serve(state, method, cid, String::new(), query, headers).await
}

/// `GET`/`HEAD /ipfs/{cid}/{*path}`.
pub async fn with_path(
    state: State<AppState>,
    method: Method,
    Path((cid, path)): Path<(String, String)>,
    query: Query<GatewayQuery>,
    headers: HeaderMap,
) -> Response {
    serve(state, method, cid, path, query, headers).await
}

async fn serve(
    State(state): State<AppState>,
    method: Method,
    cid: String,
    path: String,
    Query(query): Query<GatewayQuery>,
    headers: HeaderMap,
) -> Response {
    let Ok(root) = cid.parse::<Cid>() else {
        return plain(StatusCode::BAD_REQUEST, format!("{cid:?} is not a valid CID"));
    };
    let format = match negotiate(&query, &headers) {
        Ok(f) => f,
        Err(response) => return response,
    };
    let scope = match query.dag_scope.as_deref().map(DagScope::parse) {
        None => DagScope::All,
        Some(Some(scope)) => scope,
        Some(None) => return plain(StatusCode::BAD_REQUEST, "dag-scope must be block, entity or all"),
    };
    let entity_bytes = match query.entity_bytes.as_deref().map(EntityBytes::parse) {
        None => None,
        Some(Some(range)) if scope == DagScope::Entity => Some(range),
        Some(Some(_)) => return plain(StatusCode::BAD_REQUEST, "entity-bytes needs dag-scope=entity"),
        Some(None) => return plain(StatusCode::BAD_REQUEST, "entity-bytes must be from:to (to may be *)"),
    };
    let segments: Vec<String> = path.split('/').filter(|s| !s.is_empty()).map(str::to_string).collect();
    let content_path =
        if segments.is_empty() { format!("/ipfs/{cid}") } else { format!("/ipfs/{cid}/{}", segments.join("/")) };

    let store = state.store.clone();
    let resolved = tokio::task::spawn_blocking(move || traversal::resolve(&store, root, &segments)).await;
    let (path_blocks, terminus) = match resolved {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => return not_found_or_error(e),
        Err(_) => return plain(StatusCode::INTERNAL_SERVER_ERROR, "path resolution failed"),
    };
    let head = method == Method::HEAD;
    match format {
        Format::Raw => {
            let etag = format!("\"{terminus}.raw\"");
            let store = state.store.clone();
            let bytes = match tokio::task::spawn_blocking(move || traversal::get(&store, &terminus)).await {
                Ok(Ok(b)) => b,
                Ok(Err(e)) => return not_found_or_error(e),
                Err(_) => return plain(StatusCode::INTERNAL_SERVER_ERROR, "reading the block failed"),
            };
            let mut response = if not_modified(&headers, &etag) {
                StatusCode::NOT_MODIFIED.into_response()
            } else {
                sized(&state, head, StatusCode::OK, bytes)
            };
            let h = response.headers_mut();
            common_headers(h, &content_path, &path_blocks, &etag);
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static(RAW_TYPE));
            if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{terminus}.bin\"")) {
                h.insert(header::CONTENT_DISPOSITION, v);
            }
            response
        }
        Format::Car { dups } => {
            let request = CarRequest { root, content_path, path_blocks, terminus, scope, entity_bytes, dups };
            car(state, head, request, &headers).await
        }
        Format::File => file(state, head, content_path, path_blocks, terminus, &headers).await,
    }
}

/// A CAR request, resolved up to its path's end.
struct CarRequest {
    root: Cid,
    content_path: String,
    path_blocks: Vec<Cid>,
    terminus: Cid,
    scope: DagScope,
    entity_bytes: Option<EntityBytes>,
    dups: bool,
}

async fn car(state: AppState, head: bool, req: CarRequest, request: &HeaderMap) -> Response {
    let CarRequest { root, content_path, path_blocks, terminus, scope, entity_bytes, dups } = req;
    let mut hasher = std::hash::DefaultHasher::new();
    (&content_path, format!("{scope:?}"), format!("{entity_bytes:?}"), dups).hash(&mut hasher);
    let etag = format!("W/\"{root}.car.{:016x}\"", hasher.finish());
    // Every block is listed (and found) before the first byte goes out, so a missing block is a
    // 404 rather than a truncated stream.
    let store = state.store.clone();
    let roots = path_blocks.clone();
    let listed = tokio::task::spawn_blocking(move || {
        let mut cids = path_blocks;
        let scoped = traversal::scope_blocks(&store, terminus, scope, entity_bytes, dups)?;
        // The terminus ends the path and starts the scope: it goes out once.
        let skip = usize::from(scoped.first() == Some(&terminus) && cids.last() == Some(&terminus));
        cids.extend(scoped.into_iter().skip(skip));
        if !dups {
            let mut seen = std::collections::HashSet::new();
            cids.retain(|c| seen.insert(*c));
        }
        // Identity CIDs carry their bytes inline and are never sent as blocks.
        cids.retain(|c| !traversal::is_identity(c));
        Ok::<_, TraversalError>(cids)
    })
    .await;
    let cids = match listed {
        Ok(Ok(cids)) => cids,
        Ok(Err(e)) => return not_found_or_error(e),
        Err(_) => return plain(StatusCode::INTERNAL_SERVER_ERROR, "listing blocks failed"),
    };
    let mut response = if not_modified(request, &etag) {
        StatusCode::NOT_MODIFIED.into_response()
    } else if head {
        Body::empty().into_response()
    } else {
        let store = state.store.clone();
        let metrics = state.metrics.clone();
        let header_bytes = match CarWriter::new(Vec::new(), &[root]).and_then(CarWriter::finish) {
            Ok(b) => b,
            Err(e) => return plain(StatusCode::INTERNAL_SERVER_ERROR, format!("CAR header: {e}")),
        };
        let chunks = cids.chunks(CAR_CHUNK_BLOCKS).map(<[Cid]>::to_vec).collect::<Vec<_>>();
        // Each chunk is read from the store on a blocking thread, one chunk at a time, as the
        // client takes the body.
        let sections = futures::stream::iter(chunks).then(move |chunk| {
            let store = store.clone();
            let metrics = metrics.clone();
            async move {
                let read = tokio::task::spawn_blocking(move || {
                    let mut out = Vec::new();
                    for cid in chunk {
                        // Listing the blocks verified each one a moment ago: no second hash here.
                        let data = traversal::read(&store, &cid).map_err(std::io::Error::other)?;
                        write_section(&mut out, &cid, &data)?;
                    }
                    Ok::<_, std::io::Error>(out)
                })
                .await
                .map_err(std::io::Error::other)??;
                metrics.served("http", "gateway", read.len() as u64);
                Ok::<_, std::io::Error>(read)
            }
        });
        let body = futures::stream::once(async move { Ok::<_, std::io::Error>(header_bytes) }).chain(sections);
        Body::from_stream(body).into_response()
    };
    let h = response.headers_mut();
    common_headers(h, &content_path, &roots, &etag);
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(if dups {
            "application/vnd.ipld.car; version=1; order=dfs; dups=y"
        } else {
            "application/vnd.ipld.car; version=1; order=dfs; dups=n"
        }),
    );
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{root}.car\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    response
}

/// A content type for file bytes, from their first bytes.
fn sniff(data: &[u8]) -> &'static str {
    if crate::ingest::frames::looks_like_adts(data) {
        "audio/aac"
    } else if data.starts_with(b"ID3") || crate::ingest::frames::looks_like_mp3(data) {
        "audio/mpeg"
    } else if let Some(image) = crate::ingest::tags::sniff_image(data) {
        image
    } else {
        "application/octet-stream"
    }
}

/// What reading a file (or a range of it) for a response found.
struct FileRead {
    /// The file's size.
    total: u64,
    /// The range asked for: `Some(None)` when it cannot be satisfied.
    range: Option<Option<(u64, u64)>>,
    /// Its first bytes, to tell its type.
    head: Vec<u8>,
    /// The bytes to send.
    bytes: bytes::Bytes,
}

/// Bytes read from a file's start to tell its content type.
const SNIFF_BYTES: u64 = 64;

async fn file(
    state: AppState,
    head_only: bool,
    content_path: String,
    path_blocks: Vec<Cid>,
    terminus: Cid,
    request: &HeaderMap,
) -> Response {
    let etag = format!("\"{terminus}\"");
    let store = state.store.clone();
    let range_header = request.get(header::RANGE).and_then(|v| v.to_str().ok()).map(str::to_owned);
    // Only the blocks a range needs are read (a one-byte range of a 32 MiB segment reads one
    // leaf); a whole file is bounded (segments 32 MiB, covers 8 MiB) and a larger one is
    // refused rather than buffered.
    let read = tokio::task::spawn_blocking(move || -> Result<FileRead, ExportError> {
        let total = traversal::file_size(&store, terminus).map_err(|e| match e {
            TraversalError::Missing(cid) => ExportError::Missing(cid),
            other => ExportError::Write(std::io::Error::other(other.to_string())),
        })?;
        let range = range_header.map(|v| parse_range(&v, total));
        let wanted = match range {
            Some(None) => return Ok(FileRead { total, range, head: Vec::new(), bytes: bytes::Bytes::new() }),
            Some(Some((from, to))) => from..to.saturating_add(1),
            None => 0..total,
        };
        // The type is told from the file's first bytes: those the answer reads anyway when it
        // starts at 0, otherwise a read of the first leaf alone.
        let starts_at_zero = wanted.start == 0;
        let mut head = Vec::new();
        if !starts_at_zero {
            read_file(&store, terminus, 0..SNIFF_BYTES, &mut head)?;
        }
        let mut out = Vec::new();
        let mut limited = LimitedWriter { out: &mut out, left: FILE_BODY_LIMIT };
        read_file(&store, terminus, wanted, &mut limited)?;
        if starts_at_zero {
            head = out[..out.len().min(SNIFF_BYTES as usize)].to_vec();
        }
        Ok(FileRead { total, range, head, bytes: bytes::Bytes::from(out) })
    })
    .await;
    let FileRead { total, range, head, bytes } = match read {
        Ok(Ok(read)) => read,
        Ok(Err(ExportError::Missing(cid))) => {
            return plain(StatusCode::NOT_FOUND, format!("block {cid} is not stored here"));
        }
        Ok(Err(ExportError::Write(_))) => {
            return plain(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("files over {FILE_BODY_LIMIT} bytes are served as ?format=car only"),
            );
        }
        Ok(Err(e)) => {
            return plain(
                StatusCode::NOT_ACCEPTABLE,
                format!("{terminus} is not a UnixFS file ({e}); ask for ?format=raw or ?format=car"),
            );
        }
        Err(_) => return plain(StatusCode::INTERNAL_SERVER_ERROR, "reading the file failed"),
    };
    let content_type =
        if terminus.codec() == RAW || !head.is_empty() { sniff(&head) } else { "application/octet-stream" };
    let mut response = if not_modified(request, &etag) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        match range {
            Some(None) => {
                let mut r = plain(StatusCode::RANGE_NOT_SATISFIABLE, "range not satisfiable");
                if let Ok(v) = HeaderValue::from_str(&format!("bytes */{total}")) {
                    r.headers_mut().insert(header::CONTENT_RANGE, v);
                }
                return r;
            }
            Some(Some((from, to))) => {
                let mut r = sized(&state, head_only, StatusCode::PARTIAL_CONTENT, bytes);
                if let Ok(v) = HeaderValue::from_str(&format!("bytes {from}-{to}/{total}")) {
                    r.headers_mut().insert(header::CONTENT_RANGE, v);
                }
                r
            }
            None => sized(&state, head_only, StatusCode::OK, bytes),
        }
    };
    let h = response.headers_mut();
    common_headers(h, &content_path, &path_blocks, &etag);
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    response
}

/// A response of `bytes` (none for HEAD) with its `Content-Length`, counted as gateway bytes
/// served when they are sent.
fn sized(state: &AppState, head: bool, status: StatusCode, bytes: bytes::Bytes) -> Response {
    let len = bytes.len();
    let body = if head {
        Body::empty()
    } else {
        state.metrics.served("http", "gateway", len as u64);
        Body::from(bytes)
    };
    let mut r = (status, body).into_response();
    r.headers_mut().insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    r
}

/// Largest file served as plain bytes (a segment's limit).
const FILE_BODY_LIMIT: u64 = antiphon_core::limits::MAX_SEGMENT_BYTES;

struct LimitedWriter<'a> {
    out: &'a mut Vec<u8>,
    left: u64,
}

impl std::io::Write for LimitedWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if buf.len() as u64 > self.left {
            return Err(std::io::Error::other("file too large to serve as bytes"));
        }
        self.left -= buf.len() as u64;
        self.out.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A single `bytes=a-b` range of a body of `total` bytes: `Some((from, to))` inclusive, or
/// `None` when it cannot be satisfied.
fn parse_range(value: &str, total: u64) -> Option<(u64, u64)> {
    let spec = value.strip_prefix("bytes=")?.trim();
    if spec.contains(',') || total == 0 {
        return None;
    }
    let (a, b) = spec.split_once('-')?;
    let (from, to) = if a.is_empty() {
        let n: u64 = b.parse().ok()?;
        (total.saturating_sub(n), total - 1)
    } else {
        let from: u64 = a.parse().ok()?;
        let to = if b.is_empty() { total - 1 } else { b.parse::<u64>().ok()?.min(total - 1) };
        (from, to)
    };
    (from <= to && from < total).then_some((from, to))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-99", 1000), Some((0, 99)));
        assert_eq!(parse_range("bytes=900-", 1000), Some((900, 999)));
        assert_eq!(parse_range("bytes=-100", 1000), Some((900, 999)));
        assert_eq!(parse_range("bytes=990-2000", 1000), Some((990, 999)));
        assert_eq!(parse_range("bytes=1000-", 1000), None);
        assert_eq!(parse_range("bytes=5-1", 1000), None);
        assert_eq!(parse_range("bytes=0-1,5-6", 1000), None);
    }

    #[test]
    fn format_negotiation() {
        let q = |f: &str| GatewayQuery { format: Some(f.into()), ..Default::default() };
        let accept = |a: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::ACCEPT, HeaderValue::from_str(a).unwrap());
            h
        };
        assert_eq!(
            negotiate(&q("raw"), &accept(CAR_TYPE)).unwrap(),
            Format::Car { dups: false },
            "Accept is more specific"
        );
        assert_eq!(negotiate(&q("raw"), &accept("text/html")).unwrap(), Format::Raw);
        assert_eq!(negotiate(&q("tar"), &HeaderMap::new()).unwrap_err().status(), StatusCode::NOT_ACCEPTABLE);
        let none = GatewayQuery::default();
        assert_eq!(
            negotiate(&none, &accept("application/vnd.ipld.car; version=1; order=dfs")).unwrap(),
            Format::Car { dups: false }
        );
        assert_eq!(negotiate(&none, &accept("application/vnd.ipld.car; dups=y")).unwrap(), Format::Car { dups: true });
        assert_eq!(
            negotiate(&none, &accept("application/vnd.ipld.car; version=2")).unwrap_err().status(),
            StatusCode::NOT_ACCEPTABLE
        );
        assert_eq!(
            negotiate(&none, &accept("application/vnd.ipld.dag-json")).unwrap_err().status(),
            StatusCode::NOT_ACCEPTABLE
        );
        assert_eq!(negotiate(&none, &accept("text/html, */*;q=0.8")).unwrap(), Format::File);
        assert_eq!(negotiate(&none, &HeaderMap::new()).unwrap(), Format::File);
    }
}
