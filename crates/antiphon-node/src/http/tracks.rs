//! Tracks: listing, one manifest with its replica status, its HLS playlist, and uploads.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use antiphon_core::{Cid, TrackManifest};
use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;

use subtle::ConstantTimeEq;

use super::{AppState, UploadAccess};
use crate::catalog::Track;
use crate::ingest::{IngestOptions, ingest_file};
use crate::replication::peer_of;

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(serde_json::json!({ "error": message.into() }))).into_response()
}

fn internal(e: impl std::fmt::Display) -> Response {
    tracing::error!(error = %e, "track request failed");
    error(StatusCode::INTERNAL_SERVER_ERROR, "store read failed")
}

/// One entry of `GET /tracks`.
#[derive(Serialize)]
struct TrackInfo {
    cid: String,
    title: Option<String>,
    artist: Option<String>,
    album: Option<String>,
    codec: String,
    duration_secs: f64,
    segments: usize,
    added_unix: u64,
    playlist: String,
}

/// `GET /tracks`: every stored track, oldest first (from the catalog: no store read).
pub async fn list(State(state): State<AppState>) -> Response {
    let list: Vec<TrackInfo> = state
        .catalog
        .list()
        .into_iter()
        .map(|(cid, t)| {
            let m = &t.manifest;
            TrackInfo {
                cid: cid.to_string(),
                duration_secs: m.duration_secs(),
                segments: m.segments.len(),
                title: m.title.clone(),
                artist: m.artist.clone(),
                album: m.album.clone(),
                codec: m.codec.clone(),
                added_unix: t.added_unix,
                playlist: format!("/tracks/{cid}/playlist.m3u8"),
            }
        })
        .collect();
    Json(list).into_response()
}

#[derive(Serialize)]
struct SegmentInfo {
    cid: String,
    bytes: u64,
    samples: u64,
    start_secs: f64,
}

#[derive(Serialize)]
struct CoverInfo {
    cid: String,
    bytes: u64,
    mime: String,
    url: String,
}

#[derive(Serialize)]
struct ReplicaInfo {
    peer: String,
    addr: Option<String>,
    confirmed: bool,
    confirmed_unix: Option<u64>,
}

#[derive(Serialize)]
struct ManifestInfo {
    cid: String,
    version: u64,
    codec: String,
    sample_rate: u32,
    channels: u32,
    total_samples: u64,
    duration_secs: f64,
    title: Option<String>,
    artist: Option<String>,
    album: Option<String>,
    cover: Option<CoverInfo>,
    segments: Vec<SegmentInfo>,
    playlist: String,
    replicas: Vec<ReplicaInfo>,
}

/// A track from the catalog; `Err` is the response to send.
fn load_track(state: &AppState, cid: &str) -> Result<(Cid, Track), Response> {
    let cid: Cid = cid.parse().map_err(|_| error(StatusCode::BAD_REQUEST, format!("{cid:?} is not a valid CID")))?;
    let track = state.catalog.get(&cid).ok_or_else(|| error(StatusCode::NOT_FOUND, format!("no track {cid} here")))?;
    Ok((cid, track))
}

/// `GET /tracks/{cid}`: the manifest as JSON, with each segment's start and the replicas.
pub async fn one(State(state): State<AppState>, Path(cid): Path<String>) -> Response {
    let (cid, track) = match load_track(&state, &cid) {
        Ok(x) => x,
        Err(response) => return response,
    };
    let m = &track.manifest;
    let confirmed = &track.replicas;
    let mut replicas: Vec<ReplicaInfo> = state
        .replicas
        .iter()
        .filter_map(|addr| {
            let peer = peer_of(addr)?;
            let when = confirmed.get(&peer).copied();
            Some(ReplicaInfo {
                peer: peer.to_string(),
                addr: Some(addr.to_string()),
                confirmed: when.is_some(),
                confirmed_unix: when,
            })
        })
        .collect();
    // Confirmations from replicas no longer configured are still facts worth showing.
    for (peer, when) in confirmed {
        if !replicas.iter().any(|r| r.peer == peer.to_string()) {
            replicas.push(ReplicaInfo {
                peer: peer.to_string(),
                addr: None,
                confirmed: true,
                confirmed_unix: Some(*when),
            });
        }
    }
    let mut start = 0u64;
    let segments = m
        .segments
        .iter()
        .map(|s| {
            let info = SegmentInfo {
                cid: s.cid.to_string(),
                bytes: s.bytes,
                samples: s.samples,
                start_secs: start as f64 / f64::from(m.sample_rate),
            };
            start += s.samples;
            info
        })
        .collect();
    Json(ManifestInfo {
        cid: cid.to_string(),
        version: m.version,
        duration_secs: m.duration_secs(),
        codec: m.codec.clone(),
        sample_rate: m.sample_rate,
        channels: m.channels,
        total_samples: m.total_samples,
        title: m.title.clone(),
        artist: m.artist.clone(),
        album: m.album.clone(),
        cover: m.cover.as_ref().map(|c| CoverInfo {
            cid: c.cid.to_string(),
            bytes: c.bytes,
            mime: c.mime.clone(),
            url: format!("/ipfs/{}", c.cid),
        }),
        segments,
        playlist: format!("/tracks/{cid}/playlist.m3u8"),
        replicas,
    })
    .into_response()
}

/// The HLS media playlist of a track: one entry per segment, durations from the manifest,
/// URIs on this node's gateway.
pub fn render_playlist(manifest: &TrackManifest) -> String {
    let rate = f64::from(manifest.sample_rate);
    let longest = manifest.segments.iter().map(|s| s.samples).max().unwrap_or(0) as f64 / rate;
    let extension = if manifest.codec == "audio/aac" { "aac" } else { "mp3" };
    let mut out = String::new();
    let _ = writeln!(out, "#EXTM3U");
    let _ = writeln!(out, "#EXT-X-VERSION:3");
    let _ = writeln!(out, "#EXT-X-TARGETDURATION:{}", longest.ceil() as u64);
    let _ = writeln!(out, "#EXT-X-MEDIA-SEQUENCE:0");
    let _ = writeln!(out, "#EXT-X-PLAYLIST-TYPE:VOD");
    for (i, s) in manifest.segments.iter().enumerate() {
        let _ = writeln!(out, "#EXTINF:{:.6},", s.samples as f64 / rate);
        let _ = writeln!(out, "/ipfs/{}?filename=segment-{i}.{extension}", s.cid);
    }
    let _ = writeln!(out, "#EXT-X-ENDLIST");
    out
}

/// `GET /tracks/{cid}/playlist.m3u8`.
pub async fn playlist(State(state): State<AppState>, Path(cid): Path<String>) -> Response {
    let cid = cid.strip_suffix(".m3u8").unwrap_or(&cid).to_string();
    let (_, track) = match load_track(&state, &cid) {
        Ok(x) => x,
        Err(response) => return response,
    };
    let mut r = render_playlist(&track.manifest).into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/vnd.apple.mpegurl"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=29030400, immutable"));
    r
}

/// Query of `POST /tracks`.
#[derive(Debug, Default, Deserialize)]
pub struct UploadQuery {
    title: Option<String>,
    artist: Option<String>,
    album: Option<String>,
    /// The original file name; its extension helps recognise the format.
    filename: Option<String>,
}

#[derive(Serialize)]
struct Uploaded {
    cid: String,
    codec: String,
    transcoded: bool,
    segments: usize,
    blocks: usize,
    duration_secs: f64,
    ingest_ms: u64,
}

/// Why an uploaded file was not stored.
enum UploadError {
    /// Ingest refused the file (the client's problem: 422).
    Refused(crate::ingest::IngestError),
    /// The store failed (ours: 500).
    Store(crate::store::StoreError),
}

/// Whether a browser says the request comes from a page of another origin: its `Origin`
/// names another host than the request's `Host`, or `Sec-Fetch-Site` is anything but
/// `same-origin` or `none` (typed in, not from a page). Clients that are not browsers send
/// neither.
fn from_another_site(headers: &HeaderMap) -> bool {
    let get = |name: header::HeaderName| headers.get(name).map(|v| v.to_str().unwrap_or("\u{0}"));
    if let Some(site) = get(header::HeaderName::from_static("sec-fetch-site"))
        && site != "same-origin"
        && site != "none"
    {
        return true;
    }
    match get(header::ORIGIN) {
        None => false,
        Some(origin) => {
            let authority = origin.split_once("://").map(|(_, a)| a);
            authority.is_none() || authority != get(header::HOST)
        }
    }
}

/// Whether a `Host` header names this machine by a loopback name or address: a DNS-rebound
/// name pointing at 127.0.0.1 is not one.
fn loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(h, _)| h),
    };
    name.eq_ignore_ascii_case("localhost") || name.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Decides whether an upload may proceed; `Err` is the refusal to send.
fn authorise_upload(access: &UploadAccess, headers: &HeaderMap) -> Result<(), Response> {
    if from_another_site(headers) {
        return Err(error(StatusCode::FORBIDDEN, "uploads from another site's pages are refused"));
    }
    match access {
        UploadAccess::Token(token) => {
            let given = headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .unwrap_or("");
            if bool::from(given.as_bytes().ct_eq(token.as_bytes())) {
                Ok(())
            } else {
                Err(error(StatusCode::UNAUTHORIZED, "uploads need Authorization: Bearer <token>"))
            }
        }
        UploadAccess::Loopback => {
            let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or("");
            if loopback_host(host) {
                Ok(())
            } else {
                Err(error(
                    StatusCode::FORBIDDEN,
                    "without an upload token, uploads are taken only on a loopback address (Host: 127.0.0.1 or localhost)",
                ))
            }
        }
        UploadAccess::Off => Err(error(
            StatusCode::FORBIDDEN,
            "uploads are off: this node's HTTP API listens on a non-loopback address and no upload token is set (http.upload_token or --upload-token)",
        )),
    }
}

/// An extension for a content type, when no file name says it.
fn extension_for(content_type: &str) -> &'static str {
    match content_type.split(';').next().unwrap_or("").trim() {
        "audio/mpeg" | "audio/mp3" => "mp3",
        "audio/aac" | "audio/aacp" => "aac",
        "audio/mp4" | "audio/x-m4a" | "audio/m4a" => "m4a",
        "audio/flac" | "audio/x-flac" => "flac",
        "audio/wav" | "audio/x-wav" | "audio/wave" => "wav",
        "audio/ogg" | "audio/vorbis" => "ogg",
        _ => "bin",
    }
}

/// `POST /tracks`: the body is an audio file; it is spooled to disk (bounded), ingested, stored
/// in one transaction, and handed to replication. Answers 201 with the track CID.
pub async fn upload(
    State(state): State<AppState>,
    Query(query): Query<UploadQuery>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if let Err(refused) = authorise_upload(&state.uploads, &headers) {
        return refused;
    }
    // A permit for the whole upload, taken before the body is read: ingest is CPU-bound.
    let Ok(permit) = state.ingest_slots.clone().try_acquire_owned() else {
        let mut r = error(StatusCode::SERVICE_UNAVAILABLE, "too many uploads at once; try again shortly");
        r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        return r;
    };
    let deadline = Instant::now() + Duration::from_secs(state.ingest.timeout_secs);
    let started = Instant::now();
    let name = query.filename.clone().unwrap_or_else(|| {
        let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
        format!("upload.{}", extension_for(ct))
    });
    let extension = std::path::Path::new(&name).extension().and_then(|e| e.to_str()).unwrap_or("bin").to_string();
    if let Err(e) = tokio::fs::create_dir_all(&state.upload_dir).await {
        return internal(e);
    }
    let spool = state.upload_dir.join(format!("{}.{extension}", rand::random::<u64>()));
    let limit = state.ingest.max_upload_bytes;
    let written = tokio::time::timeout_at(deadline.into(), async {
        let mut file = tokio::fs::File::create(&spool).await?;
        let mut stream = body.into_data_stream();
        let mut total = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(std::io::Error::other)?;
            total += chunk.len() as u64;
            if total > limit {
                return Err(std::io::Error::new(std::io::ErrorKind::FileTooLarge, "too large"));
            }
            file.write_all(&chunk).await?;
        }
        file.flush().await?;
        Ok::<u64, std::io::Error>(total)
    })
    .await
    .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into()));
    match written {
        Ok(0) => {
            let _ = tokio::fs::remove_file(&spool).await;
            return error(StatusCode::BAD_REQUEST, "the request body is empty; send the audio file as the body");
        }
        Ok(_) => {}
        Err(e) => {
            let _ = tokio::fs::remove_file(&spool).await;
            if e.kind() == std::io::ErrorKind::FileTooLarge {
                return error(StatusCode::PAYLOAD_TOO_LARGE, format!("uploads are limited to {limit} bytes"));
            }
            if e.kind() == std::io::ErrorKind::TimedOut {
                return error(StatusCode::REQUEST_TIMEOUT, "the upload took too long to arrive");
            }
            return error(StatusCode::BAD_REQUEST, format!("the upload failed: {e}"));
        }
    }
    let options = IngestOptions {
        title: query.title,
        artist: query.artist,
        album: query.album,
        segment_secs: state.ingest.segment_seconds,
        first_segment_secs: state.ingest.first_segment_seconds,
        kbps: state.ingest.kbps,
        max_duration_secs: state.ingest.max_duration_secs,
        deadline: Some(deadline),
    };
    let (store, catalog) = (state.store.clone(), state.catalog.clone());
    let path = spool.clone();
    // The permit and the catalog go with the ingest: a client that hangs up neither frees the
    // slot while its audio is still being decoded nor leaves a stored track out of the catalog.
    let result = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        let track = ingest_file(&path, options, &mut |_| {});
        let _ = std::fs::remove_file(&path);
        let track = track.map_err(|e| UploadError::Refused(e.kind))?;
        let now = crate::unix_now();
        store.put_track(&track.manifest_block, &track.segments, now).map_err(UploadError::Store)?;
        catalog.add(*track.manifest_block.cid(), track.manifest.clone(), now);
        Ok(track)
    })
    .await;
    let track = match result {
        Ok(Ok(track)) => track,
        Ok(Err(UploadError::Refused(crate::ingest::IngestError::Deadline))) => {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("ingesting {name} took too long; nothing was stored"),
            );
        }
        Ok(Err(UploadError::Refused(kind))) => {
            let mut message = format!("cannot ingest {name}: {kind}");
            let mut source = std::error::Error::source(&kind);
            while let Some(cause) = source {
                let _ = write!(message, ": {cause}");
                source = cause.source();
            }
            return error(StatusCode::UNPROCESSABLE_ENTITY, message);
        }
        Ok(Err(UploadError::Store(store_error))) => return internal(store_error),
        Err(e) => return internal(e),
    };
    let took = started.elapsed();
    state.metrics.ingest(took);
    let cid = *track.manifest_block.cid();
    // A full queue is fine: the replication retry finds the track anyway.
    let _ = state.new_tracks.try_send(cid);
    let m = &track.manifest;
    tracing::info!(%cid, file = %name, segments = m.segments.len(), ms = took.as_millis() as u64, "uploaded a track");
    let mut r = (
        StatusCode::CREATED,
        Json(Uploaded {
            cid: cid.to_string(),
            codec: m.codec.clone(),
            transcoded: track.transcoded,
            segments: m.segments.len(),
            blocks: track.segments.len() + 1,
            duration_secs: m.duration_secs(),
            ingest_ms: took.as_millis() as u64,
        }),
    )
        .into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("/tracks/{cid}")) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in pairs {
            h.insert(header::HeaderName::from_static(name), HeaderValue::from_str(value).unwrap());
        }
        h
    }

    #[test]
    fn uploads_from_other_sites_or_rebound_names_are_refused() {
        let loopback = UploadAccess::Loopback;
        let ok = |h: &[(&'static str, &str)]| authorise_upload(&loopback, &headers(h)).is_ok();
        assert!(ok(&[("host", "127.0.0.1:8080")]), "curl");
        assert!(ok(&[("host", "localhost:8080"), ("origin", "http://localhost:8080")]), "the node's own page");
        assert!(ok(&[("host", "[::1]:8080"), ("sec-fetch-site", "same-origin"), ("origin", "http://[::1]:8080")]));
        assert!(!ok(&[("host", "127.0.0.1:8080"), ("origin", "https://evil.example")]), "a cross-site form");
        assert!(!ok(&[("host", "127.0.0.1:8080"), ("origin", "null")]), "a sandboxed page");
        assert!(!ok(&[("host", "127.0.0.1:8080"), ("sec-fetch-site", "cross-site")]));
        assert!(!ok(&[("host", "127.0.0.1:8080"), ("sec-fetch-site", "same-site")]));
        assert!(!ok(&[("host", "evil.example:8080"), ("origin", "http://evil.example:8080")]), "DNS rebinding");
        assert!(!ok(&[]), "no Host at all");

        let token = UploadAccess::Token("s3cret".into());
        let with = |h: &[(&'static str, &str)]| authorise_upload(&token, &headers(h)).is_ok();
        assert!(with(&[("host", "node.example.org"), ("authorization", "Bearer s3cret")]));
        assert!(!with(&[("host", "node.example.org"), ("authorization", "Bearer s3cre")]));
        assert!(!with(&[("host", "node.example.org"), ("authorization", "Bearer s3cret2")]));
        assert!(!with(&[("host", "node.example.org")]));
        assert!(!with(&[
            ("authorization", "Bearer s3cret"),
            ("origin", "https://evil.example"),
            ("host", "node.example.org")
        ]));

        assert!(authorise_upload(&UploadAccess::Off, &headers(&[("host", "10.0.0.1:8080")])).is_err());
        let addr = |a: &str| a.parse::<std::net::SocketAddr>().unwrap();
        assert!(matches!(UploadAccess::new(None, addr("0.0.0.0:8080")), UploadAccess::Off));
        assert!(matches!(UploadAccess::new(Some(""), addr("10.0.0.1:8080")), UploadAccess::Off));
        assert!(matches!(UploadAccess::new(None, addr("127.0.0.1:8080")), UploadAccess::Loopback));
        assert!(matches!(UploadAccess::new(Some("t"), addr("0.0.0.0:8080")), UploadAccess::Token(_)));
    }

    #[test]
    fn playlist_lists_every_segment_with_its_duration() {
        let seg = |i: u8, samples| antiphon_core::SegmentRef {
            cid: antiphon_core::block::cid_v1(antiphon_core::block::RAW, &[i]),
            bytes: 10,
            samples,
        };
        let m = TrackManifest {
            version: 1,
            codec: "audio/mpeg".into(),
            sample_rate: 44_100,
            channels: 2,
            total_samples: 264_600 + 44_100,
            segments: vec![seg(0, 264_600), seg(1, 44_100)],
            title: None,
            artist: None,
            album: None,
            cover: None,
        };
        let text = render_playlist(&m);
        assert!(text.starts_with("#EXTM3U\n"));
        assert!(text.contains("#EXT-X-TARGETDURATION:6\n"));
        assert!(text.contains("#EXTINF:6.000000,\n/ipfs/"));
        assert!(text.contains("#EXTINF:1.000000,\n"));
        assert_eq!(text.matches("/ipfs/").count(), 2);
        assert!(text.trim_end().ends_with("#EXT-X-ENDLIST"));
    }
}
