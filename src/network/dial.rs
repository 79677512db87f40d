//! Dialling one creator node: its HTTP `/peer` (or a multiaddr) gives the addresses, which are
//! dialled WebRTC-direct first, each with a head start over the next ("happy eyeballs"). The
//! `/peer` request is sent before the network is built, so the two overlap.

use std::time::Duration;

use antiphon_core::transport::transport_name;
use futures::StreamExt;
use futures::future::{Either, select};
use futures::stream::FuturesUnordered;
use futures_timer::Delay;
use libp2p::{Multiaddr, PeerId};
use serde::Deserialize;

use crate::error::Error;
use crate::js::fetch_json;
use crate::network::swarm::NetHandle;

/// How a creator node is dialled.
#[derive(Clone)]
pub(crate) struct DialPlan {
    /// Only this transport ("webrtc-direct" or "websocket"), or both.
    pub(crate) transport: Option<String>,
    /// Each address gives up after this long.
    pub(crate) timeout: Duration,
    /// Head start of each address over the next.
    pub(crate) stagger: Duration,
}

/// One dial of one address.
#[derive(Clone)]
pub(crate) struct Attempt {
    pub(crate) addr: Multiaddr,
    pub(crate) ms: f64,
    pub(crate) error: Option<String>,
}

/// A creator node this peer is connected to.
#[derive(Clone)]
pub(crate) struct NodeLink {
    /// Its peer ID.
    pub(crate) peer: PeerId,
    /// The address that connected.
    pub(crate) addr: Multiaddr,
    /// How long the winning dial took.
    pub(crate) dial_ms: f64,
    /// Every address tried, in order.
    pub(crate) attempts: Vec<Attempt>,
}

#[derive(Deserialize)]
struct PeerInfo {
    multiaddrs: Vec<String>,
}

/// Dials `target` at the addresses `lookup` (from [`resolve`]) gives; the first to connect wins.
pub(crate) async fn dial_node(
    net: &NetHandle,
    target: &str,
    lookup: impl Future<Output = Result<Vec<Multiaddr>, Error>>,
    plan: &DialPlan,
) -> Result<NodeLink, Error> {
    let mut addrs = lookup.await?;
    if let Some(only) = &plan.transport {
        addrs.retain(|a| transport_name(a) == only);
    }
    // WebRTC-direct first: it needs no TLS certificate from a CA.
    addrs.retain(|a| matches!(transport_name(a), "webrtc-direct" | "websocket"));
    addrs.sort_by_key(|a| transport_name(a) != "webrtc-direct");
    if addrs.is_empty() {
        return Err(Error::InvalidAddress {
            input: target.to_owned(),
            reason: "no WebRTC-direct or WebSocket address to dial".into(),
        });
    }
    dial_staggered(net, addrs, plan.timeout, plan.stagger)
        .await
        .map(|(peer, addr, dial_ms, attempts)| NodeLink { peer, addr, dial_ms, attempts })
        .map_err(|attempts| {
            let reason = attempts
                .iter()
                .map(|a| format!("{}: {}", transport_name(&a.addr), a.error.as_deref().unwrap_or("?")))
                .collect::<Vec<_>>()
                .join("; ");
            Error::DialFailed { target: target.to_owned(), reason }
        })
}

/// Dials `addrs` in order, starting the next one when the previous fails or has not connected
/// within `stagger`, so that a WebRTC-direct address that hangs costs `stagger`, not the whole
/// dial timeout, before WebSocket is tried. The first connection wins.
async fn dial_staggered(
    net: &NetHandle,
    addrs: Vec<Multiaddr>,
    timeout: Duration,
    stagger: Duration,
) -> Result<(PeerId, Multiaddr, f64, Vec<Attempt>), Vec<Attempt>> {
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
                    Either::Left((result, _)) => result.map_err(|e| e.to_string()),
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
                return Ok((remote, addr, ms, attempts));
            }
            Err(reason) => {
                tracing::warn!(%addr, %reason, "dial failed");
                attempts[index].error = Some(reason);
            }
        }
    }
}

/// Turns a connect target into multiaddrs: an HTTP(S) URL is asked for its `/peer`. The request
/// is sent when this is called, so that it travels while the caller builds the network.
pub(crate) fn resolve(target: &str) -> impl Future<Output = Result<Vec<Multiaddr>, Error>> + use<> {
    let is_url = target.starts_with("http://") || target.starts_with("https://");
    let info = is_url.then(|| fetch_json::<PeerInfo>(&format!("{}/peer", target.trim_end_matches('/'))));
    let target = target.to_owned();
    async move {
        let invalid = |reason: String| Error::InvalidAddress { input: target.clone(), reason };
        match info {
            Some(info) => {
                let info = info.await?;
                info.multiaddrs.iter().map(|s| s.parse().map_err(|e| invalid(format!("{s}: {e}")))).collect()
            }
            None => Ok(vec![target.parse().map_err(|e| invalid(format!("{e}")))?]),
        }
    }
}
