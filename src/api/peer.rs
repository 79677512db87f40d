//! `Peer`: the JS entry point. Dials the creator nodes it is given, knows the HTTP gateways it
//! may use, and hands out players that fetch from all of them.

use std::rc::Rc;
use std::time::Duration;

use antiphon_core::transport::transport_name;
use serde::Deserialize;
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use web_sys::HtmlMediaElement;

use crate::api::args;
use crate::api::player::{Player, PlayerOptions};
use crate::error::Error;
use crate::js::object;
use crate::network::dial::{DialPlan, NodeLink};
use crate::network::session::{Network, NodeState, Serving};

const DEFAULT_DIAL_TIMEOUT_MS: u32 = 10_000;
/// Head start of each address over the next one when dialling.
const DEFAULT_STAGGER_MS: u32 = 1_500;
/// Most creator nodes, and most gateways, one peer takes.
const MAX_ENDPOINTS: usize = 16;

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct StartOptions {
    /// Creator nodes: HTTP base URLs (their `/peer` lists their addresses) or multiaddrs.
    creator_nodes: Option<Vec<String>>,
    /// Base URLs of HTTP trustless gateways, verified like Bitswap blocks.
    gateways: Option<Vec<String>>,
    /// "webrtc-direct" or "websocket" to use only that transport.
    transport: Option<String>,
    dial_timeout_ms: Option<u32>,
    /// Head start, in ms, of each address over the next (default 1500).
    stagger_ms: Option<u32>,
    /// Serve verified blocks to other browsers (default true).
    serve: Option<bool>,
    /// Sign receipts for blocks other browsers sent and post them to a creator node
    /// (default true).
    receipts: Option<bool>,
    /// What this peer uploads to other browsers at most ([`UploadOptions`], read by
    /// [`check_upload`] so that its keys are checked too).
    #[serde(default, with = "serde_wasm_bindgen::preserve")]
    upload: JsValue,
    /// What the module writes to the console (see `setLogLevel`); it applies to the whole
    /// module, not only to this peer.
    log_level: Option<String>,
}

/// `Peer.start`'s `upload`: the serving browser's upload budget.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct UploadOptions {
    /// Bytes per second one peer may be sent (default 262144: 2 Mbit/s).
    per_peer_bytes_per_sec: Option<f64>,
    /// Peers served at once (default 4).
    max_peers: Option<f64>,
}

/// Most peers a page may serve at once.
const MAX_UPLOAD_PEERS: f64 = 64.0;

/// The upload budget `options` asks for, checked.
fn check_upload(options: JsValue) -> Result<antiphon_core::bitswap::UploadBudget, Error> {
    let defaults = antiphon_core::bitswap::UploadBudget::default();
    let o: UploadOptions = parse_options(Some(options), UPLOAD_KEYS).map_err(|e| match e {
        Error::InvalidArgument { reason, .. } => Error::InvalidArgument { what: "upload".into(), reason },
        e => e,
    })?;
    let invalid = |what: &str, reason: String| Error::InvalidArgument { what: format!("upload.{what}"), reason };
    let rate = o.per_peer_bytes_per_sec.unwrap_or(defaults.bytes_per_sec_per_peer as f64);
    if !(1024.0..=1e10).contains(&rate) {
        return Err(invalid("perPeerBytesPerSec", format!("{rate}: expected 1024 to 1e10 bytes per second")));
    }
    let peers = o.max_peers.unwrap_or(defaults.max_peers as f64);
    if !(peers.fract() == 0.0 && (0.0..=MAX_UPLOAD_PEERS).contains(&peers)) {
        return Err(invalid("maxPeers", format!("{peers}: expected a whole number from 0 to {MAX_UPLOAD_PEERS}")));
    }
    Ok(antiphon_core::bitswap::UploadBudget { bytes_per_sec_per_peer: rate as u64, max_peers: peers as usize })
}

/// An IPFS peer in the page, connected to creator nodes.
#[wasm_bindgen]
pub struct Peer {
    network: Rc<Network>,
}

#[wasm_bindgen]
impl Peer {
    /// Starts a peer. `options`: `{ creatorNodes?: string[], gateways?: string[], transport?:
    /// "webrtc-direct" | "websocket", dialTimeoutMs?: number, staggerMs?: number }`.
    ///
    /// Every creator node (an HTTP base URL, whose `/peer` lists its addresses, or one
    /// multiaddr) is dialled at once, WebRTC-direct first and WebSocket when that fails or is
    /// slow (`staggerMs`, default 1500). The promise resolves when the first node is
    /// connected; the others join as they connect, and players already playing start using
    /// them. It rejects with `DIAL_FAILED` only when every node failed and no gateway was
    /// given. Gateways (HTTP trustless gateways, base URLs) are fetched from with every block
    /// verified; one that sends bytes that do not verify is banned.
    // Typed in `types.rs` (its options argument may be left out).
    #[wasm_bindgen(skip_typescript)]
    pub async fn start(options: Option<JsValue>) -> Result<Peer, Error> {
        let options: StartOptions = parse_options(options, START_KEYS)?;
        let nodes = options.creator_nodes.clone().unwrap_or_default();
        Self::start_with(nodes, options).await
    }

    /// Connects to one creator node: `Peer.start({ creatorNodes: [target], ...options })`,
    /// except that it rejects when that node cannot be reached, even with gateways.
    #[wasm_bindgen(skip_typescript)]
    pub async fn connect(target: JsValue, options: Option<JsValue>) -> Result<Peer, Error> {
        let target = args::string(&target, "target", args::MAX_ADDRESS_CHARS)?;
        let options: StartOptions = parse_options(options, START_KEYS)?;
        if options.creator_nodes.is_some() {
            return Err(Error::InvalidArgument {
                what: "creatorNodes".into(),
                reason: "give it to Peer.start; Peer.connect takes one target".into(),
            });
        }
        let peer = Self::start_with(vec![target], options).await?;
        let failed = match &peer.network.states.borrow()[0].1 {
            NodeState::Failed(e) => {
                Some(Error::DialFailed { target: peer.network.states.borrow()[0].0.clone(), reason: e.to_string() })
            }
            _ => None,
        };
        match failed {
            Some(e) => {
                peer.network.net.close().await;
                Err(e)
            }
            None => Ok(peer),
        }
    }

    async fn start_with(nodes: Vec<String>, mut options: StartOptions) -> Result<Peer, Error> {
        let receipts = options.receipts.unwrap_or(true);
        let upload = check_upload(std::mem::take(&mut options.upload))?;
        let (plan, gateways, on) = check_start(&nodes, options)?;
        let network = Network::start(&nodes, plan, gateways, Serving { on, receipts, upload })?;
        network.first_connected(nodes.len()).await?;
        Ok(Peer { network })
    }

    /// The transport of the first creator node connection: `"webrtc-direct"` or
    /// `"websocket"`; `undefined` with none.
    #[wasm_bindgen(getter, unchecked_return_type = "\"webrtc-direct\" | \"websocket\" | undefined")]
    pub fn transport(&self) -> Option<String> {
        self.first().map(|n| transport_name(&n.addr).to_owned())
    }

    /// The first connected creator node's peer ID.
    #[wasm_bindgen(getter, js_name = remotePeerId)]
    pub fn remote_peer_id(&self) -> Option<String> {
        self.first().map(|n| n.peer.to_string())
    }

    /// This peer's ID.
    #[wasm_bindgen(getter, js_name = localPeerId)]
    pub fn local_peer_id(&self) -> String {
        self.network.net.local_peer_id().to_string()
    }

    /// The multiaddr of the first creator node connection.
    #[wasm_bindgen(getter, js_name = remoteAddr)]
    pub fn remote_addr(&self) -> Option<String> {
        self.first().map(|n| n.addr.to_string())
    }

    /// Milliseconds the first creator node's dial took.
    #[wasm_bindgen(getter, js_name = dialMs)]
    pub fn dial_ms(&self) -> Option<f64> {
        self.first().map(|n| n.dial_ms)
    }

    /// Every dial made to the first connected creator node, in order: `{ transport, addr, ms,
    /// error? }`. Shows, for instance, a WebRTC-direct attempt that failed before WebSocket
    /// succeeded.
    #[wasm_bindgen(getter, js_name = dialAttempts, unchecked_return_type = "DialAttempt[]")]
    pub fn dial_attempts(&self) -> js_sys::Array {
        self.first()
            .map(|n| {
                n.attempts
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
            })
            .unwrap_or_default()
    }

    /// Each configured creator node: `{ target, state: "dialling" | "connected" | "failed" |
    /// "closed", peerId?, transport?, addr?, dialMs?, code?, error? }`. After `close()` every
    /// node that was not `failed` is `closed`.
    #[wasm_bindgen(getter, js_name = creatorNodes, unchecked_return_type = "CreatorNode[]")]
    pub fn creator_nodes(&self) -> js_sys::Array {
        self.network
            .states
            .borrow()
            .iter()
            .map(|(target, state)| match state {
                NodeState::Dialling => object(&[("target", target.into()), ("state", "dialling".into())]),
                NodeState::Connected(n) => object(&[
                    ("target", target.into()),
                    ("state", "connected".into()),
                    ("peerId", n.peer.to_string().into()),
                    ("transport", transport_name(&n.addr).into()),
                    ("addr", n.addr.to_string().into()),
                    ("dialMs", n.dial_ms.into()),
                ]),
                NodeState::Failed(e) => object(&[
                    ("target", target.into()),
                    ("state", "failed".into()),
                    ("code", e.code().as_str().into()),
                    ("error", e.to_string().into()),
                ]),
                NodeState::Closed => object(&[("target", target.into()), ("state", "closed".into())]),
            })
            .collect()
    }

    /// Where other browsers can connect to this one directly (WebRTC signalled through a
    /// creator node's relay): `<node>/p2p/<node-id>/p2p-circuit/webrtc/p2p/<this-id>`. Empty
    /// until the first creator node has granted a reservation, or when `serve` is false.
    #[wasm_bindgen(getter)]
    pub fn addresses(&self) -> Vec<String> {
        self.network.addresses.borrow().clone()
    }

    /// Why this peer is not reachable by other browsers, if it is not; `undefined` otherwise.
    #[wasm_bindgen(getter, js_name = servingError)]
    pub fn serving_error(&self) -> Option<String> {
        self.network.serving_error.borrow().clone()
    }

    /// Other browsers connected directly: `{ peerId, addr }` each. Players fetch from them as
    /// sources of kind `"peer"`.
    #[wasm_bindgen(getter, unchecked_return_type = "BrowserLink[]")]
    pub fn browsers(&self) -> js_sys::Array {
        self.network.prune_browsers();
        self.network
            .browsers
            .borrow()
            .iter()
            .map(|b| object(&[("peerId", b.peer.to_string().into()), ("addr", b.addr.clone().into())]))
            .collect()
    }

    /// Connects directly to another browser at `addr` (one of its `peer.addresses`) and
    /// resolves with its peer ID. Players then fetch from it too. Rejects with
    /// `INVALID_ADDRESS` for an address that is not a browser's, and `DIAL_FAILED` when the
    /// relay or WebRTC fails (within 15 s).
    #[wasm_bindgen(js_name = connectBrowser)]
    pub async fn connect_browser(
        &self,
        #[wasm_bindgen(unchecked_param_type = "string")] addr: JsValue,
    ) -> Result<String, Error> {
        self.check_live()?;
        let addr = args::string(&addr, "addr", args::MAX_ADDRESS_CHARS)?;
        self.network.connect_browser(addr).await.map(|p| p.to_string())
    }

    /// The gateways players fetch from.
    #[wasm_bindgen(getter)]
    pub fn gateways(&self) -> Vec<String> {
        self.network.gateways.clone()
    }

    /// What became of the receipts this peer signed for blocks other browsers sent it
    /// (`docs/receipts.md`): signed, accepted and refused by the creator node, dropped unsent,
    /// still pending, and the milliseconds spent signing.
    #[wasm_bindgen(getter, unchecked_return_type = "ReceiptCounts")]
    pub fn receipts(&self) -> JsValue {
        let c = self.network.receipts.borrow().counts();
        crate::js::object(&[
            ("signed", (c.signed as f64).into()),
            ("accepted", (c.accepted as f64).into()),
            ("refused", (c.refused as f64).into()),
            ("dropped", (c.dropped as f64).into()),
            ("pending", (c.pending as f64).into()),
            ("signMs", c.sign_ms.into()),
        ])
    }

    /// Posts the receipts waiting now to the creator node without waiting for the next batch
    /// (a page about to unload, or a test). Resolves once the node answered or the post failed.
    #[wasm_bindgen(js_name = flushReceipts)]
    pub async fn flush_receipts(&self) {
        let network = Rc::downgrade(&self.network);
        let weak = Rc::downgrade(&self.network.receipts);
        crate::network::receipts::flush_once(&weak, &|| network.upgrade().and_then(|n| n.receipts_url())).await;
    }

    /// Closes every connection and data channel of this peer and stops its network task.
    /// Players attached to it stop too; destroy them first to release their media sources.
    /// Afterwards `transport`, `remotePeerId`, `remoteAddr` and `dialMs` are `undefined`,
    /// `addresses` and `browsers` are empty, and methods reject with `STOPPED`.
    pub async fn close(&self) {
        self.network.close().await;
    }

    /// A player that plays tracks from this peer's sources into `element`. `options`:
    /// `{ windowSecs?: number }`, how far ahead of the playhead segments are fetched
    /// (default 30, at least one segment).
    #[wasm_bindgen(skip_typescript)]
    pub fn attach(&self, element: JsValue, options: Option<JsValue>) -> Result<Player, Error> {
        self.check_live()?;
        let element: HtmlMediaElement = args::instance(&element, "element", "an <audio> or <video> element")?;
        let options: PlayerOptions = parse_options(options, ATTACH_KEYS)?;
        Player::new(self.network.clone(), element, options)
    }

    /// Fetches a UnixFS file (or a single raw block) by CID from the first connected creator
    /// node over Bitswap, verifying every block, and resolves with its bytes. `options`:
    /// `{ maxBytes?: number }` (default 64 MiB): a larger file is refused rather than buffered.
    #[wasm_bindgen(skip_typescript)]
    pub async fn cat(&self, cid: JsValue, options: Option<JsValue>) -> Result<js_sys::Uint8Array, Error> {
        self.check_live()?;
        let cid = args::string(&cid, "cid", args::MAX_CID_CHARS)?;
        let options: CatOptions = parse_options(options, CAT_KEYS)?;
        let max = match options.max_bytes {
            None => DEFAULT_CAT_MAX_BYTES,
            Some(n) if n.is_finite() && n >= 0.0 => n as u64,
            Some(n) => {
                return Err(Error::InvalidArgument {
                    what: "maxBytes".into(),
                    reason: format!("{n} is not a byte count"),
                });
            }
        };
        let cid: antiphon_core::Cid = cid.parse().map_err(|source| Error::InvalidCid { input: cid.clone(), source })?;
        let source = match self.first() {
            Some(n) => crate::fetching::source::Source::Bitswap { net: self.network.net.clone(), peer: n.peer },
            None => match self.network.gateways.first() {
                Some(g) => crate::fetching::source::Source::Gateway { base: g.clone(), net: self.network.net.clone() },
                None => return Err(Error::Stopped),
            },
        };
        crate::fetching::fetch::fetch_bytes(&source, cid, max).await
    }
}

impl Peer {
    fn first(&self) -> Option<NodeLink> {
        self.network.connected.borrow().first().cloned()
    }

    /// `STOPPED` once the peer is closed.
    fn check_live(&self) -> Result<(), Error> {
        if self.network.net.is_stopped() { Err(Error::Stopped) } else { Ok(()) }
    }
}

/// `peer.cat`'s options.
#[derive(serde::Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct CatOptions {
    max_bytes: Option<f64>,
}

/// Default bound of [`Peer::cat`].
const DEFAULT_CAT_MAX_BYTES: u64 = 64 * 1024 * 1024;

/// Keys of `Peer.start`'s and `Peer.connect`'s options.
const START_KEYS: &[&str] =
    &["creatorNodes", "gateways", "transport", "dialTimeoutMs", "staggerMs", "serve", "receipts", "upload", "logLevel"];
/// Keys of `Peer.start`'s `upload` option.
const UPLOAD_KEYS: &[&str] = &["perPeerBytesPerSec", "maxPeers"];
/// Keys of `peer.attach`'s options.
const ATTACH_KEYS: &[&str] = &["windowSecs"];
/// Keys of `peer.cat`'s options.
const CAT_KEYS: &[&str] = &["maxBytes"];

/// Checks `Peer.start`'s arguments and turns them into a dial plan, the gateways, and
/// whether to serve.
fn check_start(nodes: &[String], options: StartOptions) -> Result<(DialPlan, Vec<String>, bool), Error> {
    if let Some(level) = &options.log_level {
        crate::api::log::set_level(level)?;
    }
    let gateways = check_gateways(options.gateways.unwrap_or_default())?;
    if nodes.is_empty() && gateways.is_empty() {
        return Err(Error::InvalidArgument {
            what: "creatorNodes".into(),
            reason: "give at least one creator node or gateway".into(),
        });
    }
    if nodes.len() > MAX_ENDPOINTS {
        return Err(Error::InvalidArgument {
            what: "creatorNodes".into(),
            reason: format!("{} given, at most {MAX_ENDPOINTS}", nodes.len()),
        });
    }
    if let Some(t) = &options.transport
        && !matches!(t.as_str(), "webrtc-direct" | "websocket")
    {
        return Err(Error::InvalidArgument {
            what: "transport".into(),
            reason: format!("{t:?}: expected \"webrtc-direct\" or \"websocket\""),
        });
    }
    let plan = DialPlan {
        transport: options.transport,
        timeout: Duration::from_millis(u64::from(options.dial_timeout_ms.unwrap_or(DEFAULT_DIAL_TIMEOUT_MS))),
        stagger: Duration::from_millis(u64::from(options.stagger_ms.unwrap_or(DEFAULT_STAGGER_MS))),
    };
    Ok((plan, gateways, options.serve.unwrap_or(true)))
}

/// Reads an options object; `undefined` and `null` give the defaults, keys not in `known` are
/// refused (a misspelt option must not be silently ignored).
fn parse_options<T: serde::de::DeserializeOwned + Default>(
    options: Option<JsValue>,
    known: &[&str],
) -> Result<T, Error> {
    let Some(options) = options.filter(|o| !o.is_undefined() && !o.is_null()) else {
        return Ok(T::default());
    };
    // Anything but a plain object is refused before serde sees (and copies) it.
    if !options.is_object() || js_sys::Array::is_array(&options) || options.is_function() {
        return Err(Error::InvalidArgument {
            what: "options".into(),
            reason: format!("expected an options object, got {}", args::kind_of(&options)),
        });
    }
    if let Some(object) = options.dyn_ref::<js_sys::Object>() {
        for key in js_sys::Object::keys(object).iter().filter_map(|k| k.as_string()) {
            if !known.contains(&key.as_str()) {
                let key: String = key.chars().take(64).collect();
                return Err(Error::InvalidArgument {
                    what: "options".into(),
                    reason: format!("unknown option {key:?}; known: {}", known.join(", ")),
                });
            }
        }
    }
    serde_wasm_bindgen::from_value(options)
        .map_err(|e| Error::InvalidArgument { what: "options".into(), reason: e.to_string() })
}

/// Checks gateway base URLs (http or https) and drops trailing slashes.
fn check_gateways(given: Vec<String>) -> Result<Vec<String>, Error> {
    if given.len() > MAX_ENDPOINTS {
        return Err(Error::InvalidArgument {
            what: "gateways".into(),
            reason: format!("{} given, at most {MAX_ENDPOINTS}", given.len()),
        });
    }
    given
        .into_iter()
        .map(|g| {
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
            Ok(g.trim_end_matches('/').to_string())
        })
        .collect()
}
