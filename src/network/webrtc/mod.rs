//! Browser-to-browser WebRTC, the `/webrtc` transport of libp2p/specs `webrtc/webrtc.md`, which
//! rust-libp2p does not implement.
//!
//! A browser that serves listens on `/webrtc` and holds a circuit-relay-v2 reservation on its
//! creator node, so it is reachable at `<node>/p2p/<node-id>/p2p-circuit/webrtc/p2p/<its-id>`.
//! Another browser dials that address in two steps: the network task first dials the relayed
//! address (Noise and Yamux through the node), then this transport opens
//! `/webrtc-signaling/0.0.1` on that connection, exchanges SDP and ICE candidates
//! ([`signaling`]), and hands the swarm a direct `RTCPeerConnection` ([`connection`]) whose
//! data channels carry libp2p streams ([`stream`]). No bytes of the direct connection go
//! through the node.

mod connection;
mod direct;
mod signaling;
mod stream;

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use libp2p::core::muxing::StreamMuxerBox;
use libp2p::core::transport::{DialOpts, ListenerId, TransportError, TransportEvent};
use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId, StreamProtocol};
use send_wrapper::SendWrapper;

pub(crate) use direct::DirectTransport;
pub(crate) use signaling::SignalingError;

/// The signaling protocol.
pub(crate) const SIGNALING: StreamProtocol = StreamProtocol::new("/webrtc-signaling/0.0.1");
/// Browser-to-browser connections being set up at once, each way; more wait their turn in
/// the relay (dials) or are refused (incoming).
const MAX_PENDING: usize = 8;

/// The transport's error.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    /// The signaling stream could not be opened on the relayed connection.
    #[error("could not open the signaling stream: {0}")]
    Open(String),
    /// Signaling or the direct connection failed.
    #[error(transparent)]
    Signaling(#[from] SignalingError),
}

/// `<relayed>/p2p-circuit/webrtc/p2p/<peer>` split into the relayed address (without
/// `/webrtc`) and the peer; `None` if `addr` is not a browser-to-browser address.
pub(crate) fn split_address(addr: &Multiaddr) -> Option<(Multiaddr, PeerId)> {
    let protocols: Vec<Protocol<'_>> = addr.iter().collect();
    let [.., Protocol::P2pCircuit, Protocol::WebRTC, Protocol::P2p(peer)] = protocols.as_slice() else {
        return None;
    };
    let relayed: Multiaddr = protocols.iter().filter(|p| !matches!(p, Protocol::WebRTC)).cloned().collect();
    Some((relayed, *peer))
}

type Upgrade = BoxFuture<'static, Result<(PeerId, StreamMuxerBox), Error>>;

/// The `/webrtc` transport. Dials need a relayed connection to the peer already (see the
/// module doc); listening on `/webrtc` accepts signaling streams from any connected peer.
pub(crate) struct Transport {
    control: libp2p_stream::Control,
    listener: Option<(ListenerId, libp2p_stream::IncomingStreams)>,
    events: VecDeque<TransportEvent<Upgrade, Error>>,
    pending: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl Transport {
    /// A transport opening and accepting signaling streams through `control`.
    pub(crate) fn new(control: libp2p_stream::Control) -> Self {
        Self { control, listener: None, events: VecDeque::new(), pending: Default::default() }
    }
}

/// Counts a connection attempt in progress until dropped.
struct PendingGuard(std::sync::Arc<std::sync::atomic::AtomicUsize>);

impl PendingGuard {
    fn take(counter: &std::sync::Arc<std::sync::atomic::AtomicUsize>) -> Option<Self> {
        use std::sync::atomic::Ordering;
        if counter.fetch_add(1, Ordering::SeqCst) >= MAX_PENDING {
            counter.fetch_sub(1, Ordering::SeqCst);
            return None;
        }
        Some(Self(counter.clone()))
    }
}

impl Drop for PendingGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

fn boxed(peer: PeerId, connection: connection::Connection) -> (PeerId, StreamMuxerBox) {
    (peer, StreamMuxerBox::new(connection))
}

impl libp2p::core::Transport for Transport {
    type Output = (PeerId, StreamMuxerBox);
    type Error = Error;
    type ListenerUpgrade = Upgrade;
    type Dial = Upgrade;

    fn listen_on(&mut self, id: ListenerId, addr: Multiaddr) -> Result<(), TransportError<Error>> {
        if addr.iter().collect::<Vec<_>>() != [Protocol::WebRTC] {
            return Err(TransportError::MultiaddrNotSupported(addr));
        }
        if self.listener.is_some() {
            return Err(TransportError::Other(Error::Open("already listening on /webrtc".into())));
        }
        let incoming = self.control.accept(SIGNALING).map_err(|e| TransportError::Other(Error::Open(e.to_string())))?;
        self.listener = Some((id, incoming));
        self.events.push_back(TransportEvent::NewAddress { listener_id: id, listen_addr: addr });
        Ok(())
    }

    fn remove_listener(&mut self, id: ListenerId) -> bool {
        if self.listener.as_ref().is_some_and(|(listening, _)| *listening == id) {
            self.listener = None;
            self.events.push_back(TransportEvent::ListenerClosed { listener_id: id, reason: Ok(()) });
            return true;
        }
        false
    }

    fn dial(&mut self, addr: Multiaddr, opts: DialOpts) -> Result<Upgrade, TransportError<Error>> {
        let Some((_, peer)) = split_address(&addr) else {
            return Err(TransportError::MultiaddrNotSupported(addr));
        };
        if opts.role.is_listener() {
            return Err(TransportError::MultiaddrNotSupported(addr));
        }
        let mut control = self.control.clone();
        let guard = PendingGuard::take(&self.pending);
        let dial = async move {
            let _guard = guard.ok_or_else(|| Error::Open(format!("more than {MAX_PENDING} connections pending")))?;
            let stream = control.open_stream(peer, SIGNALING).await.map_err(|e| Error::Open(e.to_string()))?;
            let connection = signaling::offer(stream).await?;
            tracing::info!(%peer, "browser-to-browser connection up (offerer)");
            Ok(boxed(peer, connection))
        };
        // The future holds browser objects; wasm is single-threaded, so it never moves threads.
        Ok(SendWrapper::new(dial).boxed())
    }

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<TransportEvent<Upgrade, Error>> {
        if let Some(event) = self.events.pop_front() {
            return Poll::Ready(event);
        }
        let pending = self.pending.clone();
        let Some((id, incoming)) = self.listener.as_mut() else { return Poll::Pending };
        let id = *id;
        loop {
            match incoming.poll_next_unpin(cx) {
                Poll::Ready(Some((peer, stream))) => {
                    let Some(guard) = PendingGuard::take(&pending) else {
                        tracing::warn!(%peer, "refused a browser-to-browser offer: too many pending");
                        continue;
                    };
                    let upgrade = async move {
                        let _guard = guard;
                        let connection = signaling::answer(stream).await?;
                        tracing::info!(%peer, "browser-to-browser connection up (answerer)");
                        Ok(boxed(peer, connection))
                    };
                    let send_back_addr = Multiaddr::empty().with(Protocol::WebRTC).with(Protocol::P2p(peer));
                    return Poll::Ready(TransportEvent::Incoming {
                        listener_id: id,
                        upgrade: SendWrapper::new(upgrade).boxed(),
                        local_addr: Multiaddr::empty().with(Protocol::WebRTC),
                        send_back_addr,
                    });
                }
                Poll::Ready(None) => {
                    self.listener = None;
                    return Poll::Ready(TransportEvent::ListenerClosed { listener_id: id, reason: Ok(()) });
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    #[test]
    fn browser_addresses_are_split_into_relayed_address_and_peer() {
        let node: PeerId = "12D3KooWHrzdHUqYBc5wStnHxQCrESymrGJvzCmFfFUGQY9Yt3jm".parse().unwrap();
        let browser = PeerId::random();
        let addr: Multiaddr =
            format!("/ip4/10.200.0.1/tcp/4002/ws/p2p/{node}/p2p-circuit/webrtc/p2p/{browser}").parse().unwrap();
        let (relayed, peer) = split_address(&addr).unwrap();
        assert_eq!(peer, browser);
        assert_eq!(relayed.to_string(), format!("/ip4/10.200.0.1/tcp/4002/ws/p2p/{node}/p2p-circuit/p2p/{browser}"));
        // A relayed address without /webrtc, or /webrtc without a peer, is not ours.
        assert!(split_address(&relayed).is_none());
        assert!(split_address(&format!("/p2p/{node}/p2p-circuit/webrtc").parse().unwrap()).is_none());
    }
}
