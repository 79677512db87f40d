//! WebRTC-direct (libp2p/specs `webrtc/webrtc-direct.md`) on str0m, as a libp2p `Transport`.
//!
//! - [`driver`]: the task that owns a UDP socket and every connection on it (str0m's `Rtc`,
//!   ICE-lite, DTLS, SCTP).
//! - [`connection`]: the stream muxer and streams the swarm uses, with the spec's framing
//!   from `antiphon_core::datachannel` (FIN, STOP_SENDING, RESET_STREAM, FIN_ACK).
//! - [`certificate`]: the DTLS certificate kept in the data directory.
//!
//! A listener answers the first binding request of a new address at once and starts DTLS with
//! the connection; Noise then runs on negotiated channel 0 with both certificate fingerprints in
//! the prologue (the listener is the Noise initiator, as the spec's role reversal says). A
//! dialer does the same from the other side: ICE-controlling, DTLS client, the server's
//! certificate checked against the `/certhash/` of its address.

mod certificate;
mod connection;
mod driver;
mod pacer;
mod stun;

use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use libp2p::core::muxing::StreamMuxerBox;
use libp2p::core::transport::{DialOpts, ListenerId, TransportError, TransportEvent};
use libp2p::identity::Keypair;
use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId};
use libp2p_webrtc_utils::Fingerprint;
use tokio::sync::{mpsc, oneshot};

pub use certificate::{Certificate, CertificateError};
pub use connection::{Closed, Connection, Substream};
use connection::{HANDSHAKE, Shared};
pub use driver::{Counters, Limits};
use driver::{Driver, Mode};

/// How long a connection may take from its first packet to the end of Noise.
const UPGRADE_TIMEOUT: Duration = driver::HANDSHAKE_TIMEOUT;
/// New connections the driver may hand over before the swarm takes them.
const INCOMING_QUEUE: usize = 64;
/// Socket buffer sizes asked of the kernel (it may cap them at `net.core.*mem_max`).
const SOCKET_BUFFER: usize = 4 * 1024 * 1024;

/// Why a WebRTC-direct connection could not be made.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The socket.
    #[error("socket: {0}")]
    Io(#[from] std::io::Error),
    /// The connection closed before it was up.
    #[error(transparent)]
    Closed(#[from] Closed),
    /// Noise on channel 0 failed: not the peer, or not libp2p.
    #[error("noise handshake: {0}")]
    Noise(#[from] libp2p_webrtc_utils::noise::Error),
    /// No connection within the handshake timeout.
    #[error("no WebRTC-direct connection within {UPGRADE_TIMEOUT:?}")]
    Timeout,
    /// The kernel has no route to the server's address.
    #[error("no route to {0}")]
    NoRoute(SocketAddr),
    /// str0m refused the connection's setup.
    #[error("WebRTC setup: {0}")]
    Setup(#[from] str0m::RtcError),
    /// Not inside a tokio runtime.
    #[error("the WebRTC-direct transport needs a tokio runtime")]
    NoRuntime,
}

type Upgrade = BoxFuture<'static, Result<(PeerId, StreamMuxerBox), Error>>;

struct Listener {
    id: ListenerId,
    /// Addresses to report (with `/certhash/`), drained by `poll`.
    unreported: Vec<Multiaddr>,
    local: SocketAddr,
    incoming: mpsc::Receiver<Arc<Shared>>,
    _stop: oneshot::Sender<()>,
}

/// The `/webrtc-direct` transport: listens on UDP and dials servers.
pub struct Transport {
    key: Keypair,
    cert: Certificate,
    /// The certificate's, hashed once.
    fingerprint: Fingerprint,
    limits: Limits,
    counters: Arc<Counters>,
    listeners: Vec<Listener>,
}

impl Transport {
    /// A transport authenticating as `key`, presenting `cert` in DTLS.
    pub fn new(key: Keypair, cert: Certificate) -> Self {
        let fingerprint = cert.fingerprint();
        Self { key, cert, fingerprint, limits: Limits::default(), counters: Arc::default(), listeners: Vec::new() }
    }

    /// Sets what strangers may make a listener hold.
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Counts into `counters` (to share them with `/metrics`).
    pub fn with_counters(mut self, counters: Arc<Counters>) -> Self {
        self.counters = counters;
        self
    }

    /// What the sockets saw (shared with the drivers; read it any time).
    pub fn counters(&self) -> Arc<Counters> {
        self.counters.clone()
    }
}

/// A UDP socket bound to `addr` with room for bursts: a listener's socket is shared by many
/// connections, and a dialer's takes a fast sender's bursts (with the kernel's default
/// buffer, about one datagram in 600 of a 64 MiB fetch was dropped, each loss an SCTP
/// retransmission).
fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::UdpSocket> {
    let domain = if addr.is_ipv4() { socket2::Domain::IPV4 } else { socket2::Domain::IPV6 };
    let socket = socket2::Socket::new(domain, socket2::Type::DGRAM, Some(socket2::Protocol::UDP))?;
    let _ = socket.set_recv_buffer_size(SOCKET_BUFFER);
    let _ = socket.set_send_buffer_size(SOCKET_BUFFER);
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    tokio::net::UdpSocket::from_std(socket.into())
}

/// The UDP socket address of a `/ip4|ip6/…/udp/N/webrtc-direct` listen address.
fn listen_socket(addr: &Multiaddr) -> Option<SocketAddr> {
    let mut parts = addr.iter();
    let ip: IpAddr = match parts.next()? {
        Protocol::Ip4(ip) => ip.into(),
        Protocol::Ip6(ip) => ip.into(),
        _ => return None,
    };
    let Protocol::Udp(port) = parts.next()? else { return None };
    let Protocol::WebRTCDirect = parts.next()? else { return None };
    parts.next().is_none().then_some(SocketAddr::new(ip, port))
}

/// The address browsers dial: socket, `/webrtc-direct`, `/certhash/`.
fn dial_address(socket: SocketAddr, fingerprint: Fingerprint) -> Multiaddr {
    Multiaddr::empty()
        .with(socket.ip().into())
        .with(Protocol::Udp(socket.port()))
        .with(Protocol::WebRTCDirect)
        .with(Protocol::Certhash(fingerprint.to_multihash()))
}

/// The addresses a socket bound to `local` can be reached at: itself, or every interface
/// address of its family when it is unspecified (read once, at listen time).
fn reachable_at(local: SocketAddr) -> Vec<SocketAddr> {
    if !local.ip().is_unspecified() {
        return vec![local];
    }
    if_addrs::get_if_addrs()
        .map(|ifs| {
            ifs.into_iter()
                .map(|i| i.ip())
                .filter(|ip| ip.is_ipv4() == local.is_ipv4())
                .map(|ip| SocketAddr::new(ip, local.port()))
                .collect()
        })
        .unwrap_or_default()
}

impl libp2p::core::Transport for Transport {
    type Output = (PeerId, StreamMuxerBox);
    type Error = Error;
    type ListenerUpgrade = Upgrade;
    type Dial = Upgrade;

    fn listen_on(&mut self, id: ListenerId, addr: Multiaddr) -> Result<(), TransportError<Error>> {
        let Some(socket_addr) = listen_socket(&addr) else {
            return Err(TransportError::MultiaddrNotSupported(addr));
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return Err(TransportError::Other(Error::NoRuntime));
        };
        let socket = {
            let _enter = runtime.enter();
            bind(socket_addr).map_err(|e| TransportError::Other(e.into()))?
        };
        let (tx, incoming) = mpsc::channel(INCOMING_QUEUE);
        let driver =
            Driver::new(socket, self.cert.dtls().clone(), Mode::Listen(tx), self.limits, self.counters.clone())
                .map_err(|e| TransportError::Other(e.into()))?;
        let local = driver.local();
        let (stop, stopped) = oneshot::channel();
        runtime.spawn(driver.run(Some(stopped)));
        let fingerprint = self.fingerprint;
        let unreported = reachable_at(local).into_iter().map(|s| dial_address(s, fingerprint)).collect();
        tracing::info!(%local, certhash = %fingerprint.to_sdp_format(), "WebRTC-direct listening (str0m)");
        self.listeners.push(Listener { id, unreported, local, incoming, _stop: stop });
        Ok(())
    }

    fn remove_listener(&mut self, id: ListenerId) -> bool {
        let before = self.listeners.len();
        self.listeners.retain(|l| l.id != id);
        before != self.listeners.len()
    }

    fn dial(&mut self, addr: Multiaddr, opts: DialOpts) -> Result<Upgrade, TransportError<Error>> {
        if opts.role.is_listener() {
            return Err(TransportError::MultiaddrNotSupported(addr));
        }
        let Some((server, server_fingerprint)) = libp2p_webrtc_utils::parse_webrtc_dial_addr(&addr) else {
            return Err(TransportError::MultiaddrNotSupported(addr));
        };
        let (key, cert, limits, counters) = (self.key.clone(), self.cert.clone(), self.limits, self.counters.clone());
        let local = self.fingerprint;
        Ok(async move {
            // Bound to the address the server is reached from, which is also the ICE candidate.
            let ip = driver::route_to(server).ok_or(Error::NoRoute(server))?;
            let socket = bind(SocketAddr::new(ip, 0))?;
            let mut driver = Driver::new(socket, cert.dtls().clone(), Mode::Dial, limits, counters)?;
            let digest = server_fingerprint.to_multihash().digest().try_into().unwrap_or([0; 32]);
            let shared = driver.dial(server, digest, &random_ufrag())?;
            // A dialer's driver ends with its one connection.
            tokio::spawn(driver.run(None));
            let result = tokio::time::timeout(UPGRADE_TIMEOUT, async {
                futures::future::poll_fn(|cx| shared.poll_dtls(cx)).await?;
                let stream = Substream::new(shared.clone(), HANDSHAKE);
                Ok::<_, Error>(libp2p_webrtc_utils::noise::outbound(key, stream, server_fingerprint, local).await?)
            })
            .await;
            finish(shared, result)
        }
        .boxed())
    }

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<TransportEvent<Upgrade, Error>> {
        let local_fingerprint = self.fingerprint;
        let this = &mut *self;
        for listener in &mut this.listeners {
            if let Some(address) = listener.unreported.pop() {
                return Poll::Ready(TransportEvent::NewAddress { listener_id: listener.id, listen_addr: address });
            }
            if let Poll::Ready(Some(shared)) = listener.incoming.poll_recv(cx) {
                let remote = shared.remote;
                let send_back_addr = Multiaddr::empty()
                    .with(remote.ip().into())
                    .with(Protocol::Udp(remote.port()))
                    .with(Protocol::WebRTCDirect);
                let local_addr = dial_address(listener.local, local_fingerprint);
                let upgrade = inbound(shared, this.key.clone(), local_fingerprint).boxed();
                return Poll::Ready(TransportEvent::Incoming {
                    listener_id: listener.id,
                    upgrade,
                    local_addr,
                    send_back_addr,
                });
            }
        }
        Poll::Pending
    }
}

/// A fresh ICE ufrag in the spec's form. 32 random characters, not `random_ufrag`'s 64: str0m
/// refuses to write a STUN USERNAME ("ufrag:ufrag") of 128 characters or more.
fn random_ufrag() -> String {
    use rand::RngExt;
    let random: String = rand::rng().sample_iter(rand::distr::Alphanumeric).take(32).map(char::from).collect();
    format!("libp2p+webrtc+v1/{random}")
}

/// The listener's side of a new connection: DTLS up, then Noise as the initiator.
async fn inbound(shared: Arc<Shared>, key: Keypair, local: Fingerprint) -> Result<(PeerId, StreamMuxerBox), Error> {
    let result = tokio::time::timeout(UPGRADE_TIMEOUT, async {
        let remote = Fingerprint::raw(futures::future::poll_fn(|cx| shared.poll_dtls(cx)).await?);
        tracing::trace!(remote = %shared.remote, "WebRTC-direct: DTLS up, Noise starts");
        let stream = Substream::new(shared.clone(), HANDSHAKE);
        Ok::<_, Error>(libp2p_webrtc_utils::noise::inbound(key, stream, remote, local).await?)
    })
    .await;
    finish(shared, result)
}

/// Hands the connection to the swarm, or closes it when the handshake failed.
fn finish(
    shared: Arc<Shared>,
    result: Result<Result<PeerId, Error>, tokio::time::error::Elapsed>,
) -> Result<(PeerId, StreamMuxerBox), Error> {
    match result.map_err(|_| Error::Timeout).and_then(|r| r) {
        Ok(peer) => {
            shared.set_established();
            Ok((peer, StreamMuxerBox::new(Connection::new(shared))))
        }
        Err(e) => {
            shared.request_close();
            Err(e)
        }
    }
}
