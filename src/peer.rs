//! `Peer`: the JS entry point. Connects to a creator node and hands out players.

use std::time::Duration;

use futures::StreamExt;
use futures::future::{Either, select};
use futures::stream::FuturesUnordered;
use futures_timer::Delay;
use libp2p::{Multiaddr, PeerId};
use serde::Deserialize;
use wasm_bindgen::prelude::*;
use web_sys::HtmlMediaElement;

use crate::error::Error;
use antiphon_core::transport::transport_name;

use crate::net::NetHandle;
use crate::player::Player;
use crate::util::{fetch_json, object};

const DEFAULT_DIAL_TIMEOUT_MS: u32 = 10_000;
/// Head start of each address over the next one when dialling.
const DEFAULT_STAGGER_MS: u32 = 1_500;

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ConnectOptions {
    /// "webrtc-direct" or "websocket" to use only that transport.
    transport: Option<String>,
    dial_timeout_ms: Option<u32>,
    /// Head start, in ms, of each address over the next (default 1500).
    stagger_ms: Option<u32>,
    /// Base URLs of HTTP trustless gateways players may fetch blocks from, verified like
    /// Bitswap blocks.
    gateways: Option<Vec<String>>,
}

#[derive(Deserialize)]
struct PeerInfo {
    multiaddrs: Vec<String>,
}

/// One dial made by [`Peer::connect`].
struct Attempt {
    addr: Multiaddr,
    ms: f64,
    error: Option<String>,
}

/// An IPFS peer in the page, connected to a creator node.
#[wasm_bindgen]
pub struct Peer {
    net: NetHandle,
    remote: PeerId,
    remote_addr: Multiaddr,
    dial_ms: f64,
    attempts: Vec<Attempt>,
    gateways: Vec<String>,
}

#[wasm_bindgen]
impl Peer {
    /// Connects to a creator node. `target` is the node's HTTP base URL (its `/peer` lists its
    /// addresses) or one multiaddr. WebRTC-direct is tried first, WebSocket when it fails.
    /// The next address is tried when one fails or has not connected within `staggerMs`; the
    /// first connection wins.
    /// `options`: `{ transport?: "webrtc-direct" | "websocket", dialTimeoutMs?: number,
    /// staggerMs?: number, gateways?: string[] }`. `gateways` are HTTP trustless gateways
    /// (base URLs) players also fetch from, verifying every block; one that sends bytes that
    /// do not verify is banned.
    pub async fn connect(target: String, options: JsValue) -> Result<Peer, Error> {
        let options: ConnectOptions = if options.is_undefined() || options.is_null() {
            ConnectOptions::default()
        } else {
            serde_wasm_bindgen::from_value(options)
                .map_err(|e| Error::InvalidAddress { input: target.clone(), reason: format!("bad options: {e}") })?
        };
        let mut addrs = resolve(&target).await?;
        if let Some(only) = &options.transport {
            addrs.retain(|a| transport_name(a) == only);
        }
        // WebRTC-direct first: it needs no TLS certificate from a CA.
        addrs.retain(|a| matches!(transport_name(a), "webrtc-direct" | "websocket"));
        addrs.sort_by_key(|a| transport_name(a) != "webrtc-direct");
        if addrs.is_empty() {
            return Err(Error::InvalidAddress {
                input: target,
                reason: "no WebRTC-direct or WebSocket address to dial".into(),
            });
        }
        let net = NetHandle::spawn()?;
        let timeout = Duration::from_millis(u64::from(options.dial_timeout_ms.unwrap_or(DEFAULT_DIAL_TIMEOUT_MS)));
        let stagger = Duration::from_millis(u64::from(options.stagger_ms.unwrap_or(DEFAULT_STAGGER_MS)));
        let mut gateways = Vec::new();
        for g in options.gateways.unwrap_or_default() {
            let url = web_sys::Url::new(&g).map_err(|_| Error::InvalidArgument {
                what: "gateways".into(),
                reason: format!("{g:?} is not a URL"),
            })?;
            if url.protocol() != "http:" && url.protocol() != "https:" {
                return Err(Error::InvalidArgument {
                    what: "gateways".into(),
                    reason: format!("{g:?} is not http(s)"),
                });
            }
            gateways.push(g.trim_end_matches('/').to_string());
        }
        let mut peer = dial_staggered(net, addrs, timeout, stagger).await.map_err(|attempts| {
            let reason = attempts
                .iter()
                .map(|a| format!("{}: {}", transport_name(&a.addr), a.error.as_deref().unwrap_or("?")))
                .collect::<Vec<_>>()
                .join("; ");
            Error::DialFailed { target, reason }
        })?;
        peer.gateways = gateways;
        Ok(peer)
    }

    /// The transport of the connection: `"webrtc-direct"` or `"websocket"`.
    #[wasm_bindgen(getter)]
    pub fn transport(&self) -> String {
        transport_name(&self.remote_addr).to_owned()
    }

    /// The creator node's peer ID.
    #[wasm_bindgen(getter, js_name = remotePeerId)]
    pub fn remote_peer_id(&self) -> String {
        self.remote.to_string()
    }

    /// This peer's ID.
    #[wasm_bindgen(getter, js_name = localPeerId)]
    pub fn local_peer_id(&self) -> String {
        self.net.local_peer_id().to_string()
    }

    /// The multiaddr that was dialled.
    #[wasm_bindgen(getter, js_name = remoteAddr)]
    pub fn remote_addr(&self) -> String {
        self.remote_addr.to_string()
    }

    /// Milliseconds the successful dial took.
    #[wasm_bindgen(getter, js_name = dialMs)]
    pub fn dial_ms(&self) -> f64 {
        self.dial_ms
    }

    /// Every dial `connect` made, in order: `{ transport, addr, ms, error? }`. Shows, for
    /// instance, a WebRTC-direct attempt that failed before WebSocket succeeded.
    #[wasm_bindgen(getter, js_name = dialAttempts)]
    pub fn dial_attempts(&self) -> js_sys::Array {
        self.attempts
            .iter()
            .map(|a| {
                object(&[
                    ("transport", transport_name(&a.addr).into()),
                    ("addr", a.addr.to_string().into()),
                    ("ms", a.ms.into()),
                    ("error", a.error.clone().into()),
                ])
            })
            .collect()
    }

    /// Closes every connection and data channel of this peer and stops its network task.
    /// Players attached to it stop too; destroy them first to release their media sources.
    pub async fn close(&self) {
        self.net.close().await;
    }

    /// A player that plays tracks from this peer into `element`.
    pub fn attach(&self, element: HtmlMediaElement) -> Player {
        Player::new(self.net.clone(), self.remote, self.transport(), element, self.gateways.clone())
    }

    /// Fetches a UnixFS file (or a single raw block) by CID from the connected peer over
    /// Bitswap, verifying every block, and resolves with its bytes. `options`:
    /// `{ maxBytes?: number }` (default 64 MiB): a larger file is refused rather than buffered.
    pub async fn cat(&self, cid: String, options: JsValue) -> Result<js_sys::Uint8Array, Error> {
        let max = if options.is_undefined() || options.is_null() {
            DEFAULT_CAT_MAX_BYTES
        } else {
            js_sys::Reflect::get(&options, &"maxBytes".into())
                .ok()
                .and_then(|v| v.as_f64())
                .map_or(DEFAULT_CAT_MAX_BYTES, |v| v.max(0.0) as u64)
        };
        let cid: antiphon_core::Cid = cid.parse().map_err(|source| Error::InvalidCid { input: cid.clone(), source })?;
        let source = crate::source::Source::Bitswap { net: self.net.clone(), peer: self.remote };
        crate::fetch::fetch_bytes(&source, cid, max).await
    }
}

/// Default bound of [`Peer::cat`].
const DEFAULT_CAT_MAX_BYTES: u64 = 64 * 1024 * 1024;

/// Dials `addrs` in order, starting the next one when the previous fails or has not connected
/// within `stagger` ("happy eyeballs"), so that a WebRTC-direct address that hangs costs
/// `stagger`, not the whole dial timeout, before WebSocket is tried. The first connection wins.
async fn dial_staggered(
    net: NetHandle,
    addrs: Vec<Multiaddr>,
    timeout: Duration,
    stagger: Duration,
) -> Result<Peer, Vec<Attempt>> {
    let mut attempts: Vec<Attempt> = Vec::new();
    let mut pending = FuturesUnordered::new();
    let mut next = 0usize;
    // Running while the latest address has its head start; a fired Delay is never polled again.
    let mut head_start: Option<Delay> = None;
    loop {
        if next < addrs.len() && (pending.is_empty() || head_start.is_none()) {
            let addr = addrs[next].clone();
            let net = net.clone();
            let index = next;
            pending.push(async move {
                let started = js_sys::Date::now();
                let outcome = match select(Box::pin(net.dial(addr.clone())), Delay::new(timeout)).await {
                    Either::Left((result, _)) => result,
                    Either::Right(_) => Err(format!("timed out after {} ms", timeout.as_millis())),
                };
                (index, addr, js_sys::Date::now() - started, outcome)
            });
            attempts.push(Attempt {
                addr: addrs[next].clone(),
                ms: 0.0,
                error: Some("abandoned: another address connected first".into()),
            });
            next += 1;
            head_start = (next < addrs.len()).then(|| Delay::new(stagger));
        }
        let completed = match head_start.as_mut() {
            Some(delay) => match select(pending.next(), delay).await {
                Either::Left((completed, _)) => completed,
                Either::Right(_) => {
                    head_start = None;
                    continue;
                }
            },
            None => pending.next().await,
        };
        let Some((index, addr, ms, outcome)) = completed else { return Err(attempts) };
        attempts[index].ms = ms;
        match outcome {
            Ok(remote) => {
                tracing::info!(%addr, dial_ms = ms, "connected to creator node");
                attempts[index].error = None;
                return Ok(Peer { net, remote, remote_addr: addr, dial_ms: ms, attempts, gateways: Vec::new() });
            }
            Err(reason) => {
                tracing::warn!(%addr, %reason, "dial failed");
                attempts[index].error = Some(reason);
            }
        }
    }
}

/// Turns a connect target into multiaddrs: an HTTP(S) URL is asked for its `/peer`.
async fn resolve(target: &str) -> Result<Vec<Multiaddr>, Error> {
    let invalid = |reason: String| Error::InvalidAddress { input: target.to_owned(), reason };
    if target.starts_with("http://") || target.starts_with("https://") {
        let url = format!("{}/peer", target.trim_end_matches('/'));
        let info: PeerInfo = fetch_json(&url).await?;
        info.multiaddrs.iter().map(|s| s.parse().map_err(|e| invalid(format!("{s}: {e}")))).collect()
    } else {
        Ok(vec![target.parse().map_err(|e| invalid(format!("{e}")))?])
    }
}
