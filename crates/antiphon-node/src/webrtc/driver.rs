//! The task that owns one UDP socket and every WebRTC-direct connection on it.
//!
//! Each connection is a `str0m::Rtc` (ICE-lite, DTLS, SCTP; sans-IO) keyed by the remote's
//! address. A listener creates one from the first STUN binding request of an unknown address
//! and feeds that same packet to it, so the first request is answered; DTLS and SCTP are
//! started with the connection, so a ClientHello that arrives right behind the STUN exchange
//! is answered too. The handles in [`super::connection`] share state with this task; it hands
//! their framed messages to the channels and wakes them when data arrives.

use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use str0m::channel::{ChannelConfig, ChannelId};
use str0m::config::{DtlsCert, Fingerprint as DtlsFingerprint};
use str0m::ice::StunMessage;
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, IceConnectionState, IceCreds, Input, Output, Rtc};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};

use antiphon_core::datachannel::WriteHalf;

use super::connection::{HANDSHAKE, MAX_PENDING_INBOUND, MAX_QUEUED, MAX_STREAMS, Shared, Slot};
use super::pacer::{Pace, Pacer};

/// How long a connection may take from its first packet to the end of the Noise handshake.
pub(crate) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a finished stream the remote opened waits for the remote to close its channel
/// before this side does.
const REMOTE_CLOSE_GRACE: Duration = Duration::from_secs(5);
/// The longest ICE ufrag accepted in a first binding request.
const MAX_UFRAG: usize = 256;

/// Limits a listener applies to what strangers can make it hold.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections on the socket at once, established or not.
    pub max_connections: usize,
    /// Connections still handshaking at once.
    pub max_handshaking: usize,
    /// Connections from one IP address still handshaking at once.
    pub max_handshaking_per_ip: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self { max_connections: 4096, max_handshaking: 256, max_handshaking_per_ip: 8 }
    }
}

/// What the socket saw, for `/metrics` and the tests: whether first packets are answered.
#[derive(Debug, Default)]
pub struct Counters {
    /// Connections created from a first binding request.
    pub connections: AtomicU64,
    /// Connections whose first binding request was answered at once.
    pub first_binding_answered: AtomicU64,
    /// Connections whose first DTLS ClientHello was answered at once.
    pub first_hello_answered: AtomicU64,
    /// Connections whose first DTLS ClientHello arrived (the denominator of the above).
    pub first_hello_received: AtomicU64,
    /// STUN binding requests received on known connections and the first packet of new ones.
    pub binding_requests: AtomicU64,
    /// STUN binding responses sent.
    pub binding_responses: AtomicU64,
    /// Datagrams nothing took: unknown senders that did not open with a valid binding
    /// request, packets a connection refused, and anything past the limits.
    pub dropped: AtomicU64,
    /// Datagrams the socket could not send at once (its buffer was full).
    pub send_drops: AtomicU64,
    /// Streams whose write side this node closed (a FIN sent).
    pub fins_sent: AtomicU64,
    /// Of those, closes the remote acknowledged with a FIN_ACK.
    pub fins_acked: AtomicU64,
    /// Of those, closes given up after the FIN_ACK wait timed out.
    pub fins_timed_out: AtomicU64,
    /// Of those, closes whose channel or connection ended before any FIN_ACK came.
    pub fins_cut: AtomicU64,
}

impl Counters {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// How the driver came to be: listening for strangers or dialing one server.
pub(crate) enum Mode {
    /// New connections from binding requests go to the transport through the channel.
    Listen(mpsc::Sender<Arc<Shared>>),
    /// One connection, made before the driver starts; the driver ends with it.
    Dial,
}

/// One connection on the socket.
struct Conn {
    rtc: Rtc,
    shared: Arc<Shared>,
    /// The local address the remote sends to.
    local: SocketAddr,
    by_channel: HashMap<ChannelId, u64>,
    by_key: HashMap<u64, ChannelId>,
    /// Until the Noise handshake ends.
    handshake_deadline: Instant,
    /// What the connection sends leaves through this (see `super::pacer`).
    pacer: Pacer,
    /// When str0m wants its next timeout input.
    rtc_timeout: Option<Instant>,
    /// The time this connection holds in the driver's timer set.
    timer: Option<Instant>,
    /// A channel refused a message for lack of room: retry after every input.
    blocked: bool,
    /// Counted in the driver's [`Handshakes`] until the swarm has the connection.
    handshaking: bool,
    /// Where the judgement of the first ClientHello stands.
    first_hello: FirstHello,
    /// The ICE ufrag, which is also the password.
    ufrag: String,
}

/// Whether a connection's first ClientHello was answered before the client sent it again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FirstHello {
    /// None has arrived.
    NotSeen,
    /// It arrived (its handshake message sequence number) and no DTLS record went back yet.
    Waiting(u16),
    /// Answered, or sent again before it was.
    Judged,
}

/// Connections still handshaking, in all and per IP address, kept as connections come, get
/// established and go (so a new one is checked against the limits without a scan).
#[derive(Debug, Default)]
struct Handshakes {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

impl Handshakes {
    fn allows(&self, ip: IpAddr, limits: &Limits) -> bool {
        self.total < limits.max_handshaking
            && self.per_ip.get(&ip).copied().unwrap_or(0) < limits.max_handshaking_per_ip
    }

    fn add(&mut self, ip: IpAddr) {
        self.total += 1;
        *self.per_ip.entry(ip).or_default() += 1;
    }

    fn release(&mut self, ip: IpAddr) {
        self.total -= 1;
        if let Some(n) = self.per_ip.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                self.per_ip.remove(&ip);
            }
        }
    }
}

/// The handshake message sequence number of a ClientHello whose first fragment (offset 0) is
/// in `datagram`, if one is (DTLS records: 13-byte header, then a 12-byte handshake header).
pub(crate) fn client_hello_start(datagram: &[u8]) -> Option<u16> {
    let mut rest = datagram;
    while rest.len() >= 13 {
        let len = u16::from_be_bytes([rest[11], rest[12]]) as usize;
        let body = rest.get(13..13 + len)?;
        let epoch = u16::from_be_bytes([rest[3], rest[4]]);
        if rest[0] == 22 && epoch == 0 && body.len() >= 12 && body[0] == 1 && body[6..9] == [0, 0, 0] {
            return Some(u16::from_be_bytes([body[4], body[5]]));
        }
        rest = &rest[13 + len..];
    }
    None
}

/// What a drain sent.
#[derive(Default)]
struct Sent {
    binding_responses: u64,
    dtls_records: u64,
}

/// The socket task; see the module documentation.
pub(crate) struct Driver {
    socket: Arc<UdpSocket>,
    local: SocketAddr,
    cert: DtlsCert,
    conns: HashMap<SocketAddr, Conn>,
    timers: BTreeSet<(Instant, SocketAddr)>,
    wake: Arc<super::connection::DriverWake>,
    epoch: Instant,
    mode: Mode,
    limits: Limits,
    handshakes: Handshakes,
    counters: Arc<Counters>,
}

impl Driver {
    pub(crate) fn new(
        socket: UdpSocket,
        cert: DtlsCert,
        mode: Mode,
        limits: Limits,
        counters: Arc<Counters>,
    ) -> std::io::Result<Self> {
        let local = socket.local_addr()?;
        Ok(Self {
            socket: Arc::new(socket),
            local,
            cert,
            conns: HashMap::new(),
            timers: BTreeSet::new(),
            wake: Arc::new(super::connection::DriverWake::new()),
            epoch: Instant::now(),
            mode,
            limits,
            handshakes: Handshakes::default(),
            counters,
        })
    }

    /// A dialer's one connection to `server`, whose certificate hashes to `server_fingerprint`.
    /// The socket must be bound to the address it reaches `server` from (see [`route_to`]).
    pub(crate) fn dial(
        &mut self,
        server: SocketAddr,
        server_fingerprint: [u8; 32],
        ufrag: &str,
    ) -> Result<Arc<Shared>, str0m::RtcError> {
        let now = Instant::now();
        let mut rtc = Rtc::builder().set_dtls_cert(self.cert.clone()).build(now);
        rtc.add_local_candidate(Candidate::host(self.local, "udp")?);
        rtc.add_remote_candidate(Candidate::host(server, "udp")?);
        let creds = IceCreds { ufrag: ufrag.to_owned(), pass: ufrag.to_owned() };
        let mut api = rtc.direct_api();
        api.set_local_ice_credentials(creds.clone());
        api.set_remote_ice_credentials(creds);
        api.set_ice_controlling(true);
        api.set_remote_fingerprint(DtlsFingerprint { hash_func: "sha-256".into(), bytes: server_fingerprint.to_vec() });
        api.start_dtls(true)?;
        api.start_sctp(true);
        let shared = Shared::new(server, self.wake.clone(), self.epoch, self.counters.clone());
        self.conns.insert(server, Conn::new(rtc, shared.clone(), self.local, now));
        self.service(server);
        Ok(shared)
    }

    /// The socket's address.
    pub(crate) fn local(&self) -> SocketAddr {
        self.local
    }

    /// Runs until `stop` fires or is dropped (a listener) or its connection ends (a dialer).
    pub(crate) async fn run(mut self, stop: Option<oneshot::Receiver<()>>) {
        let mut stop = std::pin::pin!(async move {
            match stop {
                Some(stop) => {
                    let _ = stop.await;
                }
                None => std::future::pending().await,
            }
        });
        let mut buf = vec![0u8; 2048];
        loop {
            for addr in self.wake.take() {
                self.service(addr);
            }
            if matches!(self.mode, Mode::Dial) && self.conns.is_empty() {
                return;
            }
            let next = self.timers.first().map(|(t, _)| *t);
            let socket = self.socket.clone();
            let wake = self.wake.clone();
            tokio::select! {
                biased;
                _ = &mut stop => break,
                received = socket.recv_from(&mut buf) => match received {
                    Ok((n, from)) => self.receive(from, &buf[..n], Instant::now()),
                    // ICMP errors for earlier sends surface here on Linux; the socket is fine.
                    Err(e) => tracing::trace!(error = %e, "WebRTC-direct socket"),
                },
                () = wake.notified() => {}
                () = sleep_until(next), if next.is_some() => self.fire_timers(Instant::now()),
            }
        }
        let addrs: Vec<_> = self.conns.keys().copied().collect();
        for addr in addrs {
            self.remove(addr, "listener closed");
        }
    }

    fn receive(&mut self, from: SocketAddr, bytes: &[u8], now: Instant) {
        // Only STUN starts with 0 or 1 (DTLS is 20-63): the parse is skipped for the rest.
        let request = match bytes.first() {
            Some(0 | 1) => StunMessage::parse(bytes).ok().filter(|m| m.is_binding_request()),
            _ => None,
        };
        if request.is_some() {
            Counters::add(&self.counters.binding_requests, 1);
        }
        let new = !self.conns.contains_key(&from);
        if new && !request.as_ref().is_some_and(|r| self.accept(from, r, now)) {
            Counters::add(&self.counters.dropped, 1);
            return;
        }
        let Some(conn) = self.conns.get_mut(&from) else { return };
        // A new connection's first check nominates its pair (see `super::stun`).
        let nominated = new.then(|| super::stun::with_use_candidate(bytes, conn.ufrag.as_bytes())).flatten();
        let bytes = nominated.as_deref().unwrap_or(bytes);
        // The first ClientHello is judged once: answered if a DTLS record goes back before the
        // client sends it again (a retransmission starts the same message at offset 0 again).
        let judging = match conn.first_hello {
            FirstHello::NotSeen => match client_hello_start(bytes) {
                Some(seq) => {
                    conn.first_hello = FirstHello::Waiting(seq);
                    Counters::add(&self.counters.first_hello_received, 1);
                    true
                }
                None => false,
            },
            FirstHello::Waiting(seq) if client_hello_start(bytes) == Some(seq) => {
                conn.first_hello = FirstHello::Judged;
                false
            }
            FirstHello::Waiting(_) => true,
            FirstHello::Judged => false,
        };
        let Ok(receive) = Receive::new(Protocol::Udp, from, conn.local, bytes) else {
            Counters::add(&self.counters.dropped, 1);
            return;
        };
        let input = Input::Receive(now, receive);
        if !conn.rtc.accepts(&input) {
            Counters::add(&self.counters.dropped, 1);
            return;
        }
        if let Err(e) = guarded(|| conn.rtc.handle_input(input)) {
            tracing::debug!(%from, error = %e, "WebRTC-direct connection failed");
            self.remove(from, "protocol error");
            return;
        }
        let sent = self.service(from);
        if new && sent.binding_responses > 0 {
            Counters::add(&self.counters.first_binding_answered, 1);
        }
        if judging
            && sent.dtls_records > 0
            && let Some(conn) = self.conns.get_mut(&from)
        {
            conn.first_hello = FirstHello::Judged;
            Counters::add(&self.counters.first_hello_answered, 1);
        }
    }

    /// Creates a connection for a first binding request from `from`, if the limits allow.
    fn accept(&mut self, from: SocketAddr, request: &StunMessage<'_>, now: Instant) -> bool {
        let Mode::Listen(incoming) = &self.mode else { return false };
        // The spec's ufrag is both ours and theirs: USERNAME is "ufrag:ufrag".
        let Some((ours, theirs)) = request.split_username() else { return false };
        if ours != theirs || ours.is_empty() || ours.len() > MAX_UFRAG {
            return false;
        }
        if self.conns.len() >= self.limits.max_connections || !self.handshakes.allows(from.ip(), &self.limits) {
            tracing::debug!(%from, "WebRTC-direct: refused a new connection (limits)");
            return false;
        }
        let local = if self.local.ip().is_unspecified() {
            match route_to(from) {
                Some(ip) => SocketAddr::new(ip, self.local.port()),
                None => return false,
            }
        } else {
            self.local
        };
        let Ok(candidate) = Candidate::host(local, "udp") else { return false };
        let mut rtc = Rtc::builder()
            .set_ice_lite(true)
            .set_dtls_cert(self.cert.clone())
            // Noise on channel 0 authenticates the remote's certificate, which nobody can
            // know in advance; str0m wants a fingerprint set all the same.
            .set_fingerprint_verification(false)
            .build(now);
        rtc.add_local_candidate(candidate);
        let creds = IceCreds { ufrag: ours.to_owned(), pass: ours.to_owned() };
        let mut api = rtc.direct_api();
        api.set_local_ice_credentials(creds.clone());
        api.set_remote_ice_credentials(creds);
        api.set_ice_controlling(false);
        api.set_remote_fingerprint(DtlsFingerprint { hash_func: "sha-256".into(), bytes: vec![0; 32] });
        if api.start_dtls(false).is_err() {
            return false;
        }
        api.start_sctp(false);
        let shared = Shared::new(from, self.wake.clone(), self.epoch, self.counters.clone());
        if incoming.try_send(shared.clone()).is_err() {
            tracing::debug!(%from, "WebRTC-direct: refused a new connection (the swarm is behind)");
            return false;
        }
        let mut conn = Conn::new(rtc, shared, local, now);
        conn.handshaking = true;
        self.handshakes.add(from.ip());
        self.conns.insert(from, conn);
        Counters::add(&self.counters.connections, 1);
        true
    }

    fn fire_timers(&mut self, now: Instant) {
        while let Some(&(at, addr)) = self.timers.first() {
            if at > now {
                break;
            }
            self.timers.pop_first();
            let Some(conn) = self.conns.get_mut(&addr) else { continue };
            conn.timer = None;
            if !conn.shared.lock().established && now >= conn.handshake_deadline {
                self.remove(addr, "handshake timed out");
                continue;
            }
            if let Err(e) = guarded(|| conn.rtc.handle_input(Input::Timeout(now))) {
                tracing::debug!(%addr, error = %e, "WebRTC-direct connection failed");
                self.remove(addr, "protocol error");
                continue;
            }
            self.service(addr);
        }
    }

    /// Does what the connection's handles asked, sends what str0m has, and sets its timer.
    fn service(&mut self, addr: SocketAddr) -> Sent {
        let Some(conn) = self.conns.get_mut(&addr) else { return Sent::default() };
        conn.shared.unqueue();
        let (close_requested, established) = {
            let state = conn.shared.lock();
            (state.close_requested, state.established)
        };
        if close_requested {
            self.remove(addr, "closed");
            return Sent::default();
        }
        if conn.handshaking && established {
            conn.handshaking = false;
            self.handshakes.release(addr.ip());
        }
        let mut sent = Sent::default();
        // Sending can free room and events can queue messages (a FIN_ACK): go round until
        // neither happens.
        for _ in 0..8 {
            conn.flush();
            let (more, alive) = conn.drain(&self.socket, &self.counters, &mut sent);
            if !alive {
                self.remove(addr, "connection lost");
                return sent;
            }
            if !more {
                break;
            }
        }
        let next = conn.next_deadline();
        if conn.timer != next {
            if let Some(old) = conn.timer.take() {
                self.timers.remove(&(old, addr));
            }
            if let Some(at) = next {
                self.timers.insert((at, addr));
            }
            conn.timer = next;
        }
        sent
    }

    /// Ends a connection: str0m's goodbyes are sent and every handle fails from now on.
    fn remove(&mut self, addr: SocketAddr, why: &'static str) {
        let Some(mut conn) = self.conns.remove(&addr) else { return };
        if conn.handshaking {
            self.handshakes.release(addr.ip());
        }
        if let Some(at) = conn.timer.take() {
            self.timers.remove(&(at, addr));
        }
        let _ = conn.rtc.close();
        let mut sent = Sent::default();
        let _ = conn.drain(&self.socket, &self.counters, &mut sent);
        let mut state = conn.shared.lock();
        for slot in state.streams.values_mut() {
            count_close(&self.counters, slot, true);
        }
        state.close(why);
        tracing::debug!(%addr, why, "WebRTC-direct connection ended");
    }
}

impl Conn {
    fn new(mut rtc: Rtc, shared: Arc<Shared>, local: SocketAddr, now: Instant) -> Self {
        let rtc_ufrag = rtc.direct_api().local_ice_credentials().ufrag;
        let handshake = rtc.direct_api().create_data_channel(ChannelConfig {
            label: String::new(),
            negotiated: Some(0),
            ..Default::default()
        });
        Self {
            rtc,
            shared,
            local,
            by_channel: HashMap::from([(handshake, HANDSHAKE)]),
            by_key: HashMap::from([(HANDSHAKE, handshake)]),
            handshake_deadline: now + HANDSHAKE_TIMEOUT,
            rtc_timeout: None,
            pacer: Pacer::new(now),
            timer: None,
            blocked: false,
            handshaking: false,
            first_hello: FirstHello::NotSeen,
            ufrag: rtc_ufrag,
        }
    }

    /// Opens the channels asked for, hands queued messages to open channels, ends the FIN_ACK
    /// waits that timed out, and closes the channels of finished streams.
    fn flush(&mut self) {
        let shared = self.shared.clone();
        let mut state = shared.lock();
        while let Some(key) = state.opening.pop_front() {
            let id = self.rtc.direct_api().create_data_channel(ChannelConfig::default());
            self.by_channel.insert(id, key);
            self.by_key.insert(key, id);
        }
        self.blocked = false;
        let framing_now = shared.now();
        let mut finished = Vec::new();
        for (key, slot) in state.streams.iter_mut() {
            if slot.framing.deadline().is_some_and(|at| at <= framing_now) {
                slot.framing.on_timeout(framing_now);
            }
            count_close(&shared.counters, slot, false);
            let channel = self.by_key.get(key).copied();
            if let Some(id) = channel
                && let Some(mut ch) = self.rtc.channel(id)
            {
                while let Some(message) = slot.framing.poll_transmit() {
                    match ch.write(true, &message) {
                        Ok(true) => tracing::trace!(key, len = message.len(), "WebRTC-direct: sent"),
                        Ok(false) => {
                            slot.framing.unsend(message);
                            self.blocked = true;
                            break;
                        }
                        Err(e) => {
                            tracing::debug!(error = %e, "WebRTC-direct channel write failed");
                            slot.channel_closed = true;
                            break;
                        }
                    }
                }
            }
            if slot.framing.outgoing_bytes() < MAX_QUEUED {
                slot.wake_writer();
            }
            if slot.dropped && !slot.hold && slot.finished() {
                // The side that opened a channel closes it. Closing a remote's channel here
                // raced its own close, and str0m then refused the remote's next channel on
                // the same SCTP stream id (libdatachannel reuses an id at once).
                if !slot.inbound || slot.channel_closed {
                    finished.push(*key);
                } else {
                    let close_by = *slot.close_by.get_or_insert(framing_now + REMOTE_CLOSE_GRACE);
                    if close_by <= framing_now {
                        finished.push(*key);
                    }
                }
            }
        }
        for key in finished {
            if let Some(mut slot) = state.streams.remove(&key) {
                count_close(&shared.counters, &mut slot, true);
            }
            if let Some(id) = self.by_key.remove(&key) {
                self.by_channel.remove(&id);
                self.rtc.direct_api().close_data_channel(id);
            }
        }
    }

    /// Sends what str0m has and takes its events. Returns (whether an event may have queued
    /// messages, whether the connection lives).
    fn drain(&mut self, socket: &UdpSocket, counters: &Counters, sent: &mut Sent) -> (bool, bool) {
        for (to, datagram) in self.pacer.release(Instant::now()) {
            send(socket, counters, to, &datagram);
        }
        let mut more = false;
        loop {
            match guarded(|| self.rtc.poll_output()) {
                Ok(Output::Transmit(t)) => {
                    let bytes: &[u8] = &t.contents;
                    match bytes.first() {
                        Some(0 | 1) if StunMessage::parse(bytes).is_ok_and(|m| m.is_successful_binding_response()) => {
                            sent.binding_responses += 1;
                            Counters::add(&counters.binding_responses, 1);
                        }
                        Some(22) => sent.dtls_records += 1,
                        _ => {}
                    }
                    match self.pacer.offer(t.destination, bytes, Instant::now()) {
                        Pace::Now => send(socket, counters, t.destination, bytes),
                        Pace::Queued => {}
                        Pace::Dropped => Counters::add(&counters.send_drops, 1),
                    }
                }
                Ok(Output::Event(event)) => more |= self.on_event(event),
                Ok(Output::Timeout(at)) => {
                    self.rtc_timeout = Some(at);
                    return (more || self.blocked, self.rtc.is_alive());
                }
                Err(e) => {
                    tracing::debug!(error = %e, "WebRTC-direct connection failed");
                    return (false, false);
                }
            }
        }
    }

    /// Applies one str0m event to the shared state. Returns whether a stream may now have
    /// messages to send.
    fn on_event(&mut self, event: Event) -> bool {
        let shared = self.shared.clone();
        let mut state = shared.lock();
        match event {
            Event::Connected => {
                let fingerprint = self
                    .rtc
                    .direct_api()
                    .remote_dtls_fingerprint()
                    .and_then(|f| <[u8; 32]>::try_from(f.bytes.as_slice()).ok());
                match fingerprint {
                    Some(f) => state.remote_fingerprint = Some(f),
                    None => state.close("no sha-256 certificate fingerprint"),
                }
                state.wake_connection();
                false
            }
            Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                state.close_requested = true;
                true
            }
            Event::ChannelOpen(id, _) => {
                if self.by_channel.contains_key(&id) {
                    return true;
                }
                if state.streams.len() >= MAX_STREAMS
                    || state.inbound.len() >= MAX_PENDING_INBOUND
                    || state.closed.is_some()
                {
                    tracing::debug!("WebRTC-direct: refused a stream (limits)");
                    drop(state);
                    self.rtc.direct_api().close_data_channel(id);
                    return false;
                }
                let key = state.new_key();
                let mut slot = Slot::new();
                slot.inbound = true;
                state.streams.insert(key, slot);
                state.inbound.push_back(key);
                state.wake_connection();
                self.by_channel.insert(id, key);
                self.by_key.insert(key, id);
                false
            }
            Event::ChannelData(data) => {
                let Some(key) = self.by_channel.get(&data.id).copied() else {
                    tracing::trace!(id = ?data.id, "WebRTC-direct: data on an unknown channel");
                    return false;
                };
                tracing::trace!(key, len = data.data.len(), "WebRTC-direct: received");
                let Some(slot) = state.streams.get_mut(&key) else { return false };
                if let Err(e) = slot.framing.receive(&data.data) {
                    tracing::debug!(error = %e, "WebRTC-direct: the remote broke the framing; resetting the stream");
                }
                let over = state.over_unread_budget();
                let Some(slot) = state.streams.get_mut(&key) else { return false };
                if over {
                    tracing::debug!(
                        "WebRTC-direct: the connection's streams hold too much unread; resetting the stream"
                    );
                    slot.framing.reset();
                }
                slot.wake();
                // A FIN_ACK or a RESET_STREAM may be owed.
                slot.framing.has_outgoing()
            }
            Event::ChannelClose(id) => {
                if let Some(key) = self.by_channel.remove(&id) {
                    self.by_key.remove(&key);
                    if let Some(slot) = state.streams.get_mut(&key) {
                        slot.channel_closed = true;
                        slot.wake();
                        if slot.dropped
                            && let Some(mut slot) = state.streams.remove(&key)
                        {
                            count_close(&shared.counters, &mut slot, true);
                        }
                    }
                }
                false
            }
            Event::ChannelBufferedAmountLow(_) => true,
            _ => false,
        }
    }

    /// The earliest of str0m's timeout, the framing deadlines and the handshake's.
    fn next_deadline(&self) -> Option<Instant> {
        let state = self.shared.lock();
        let framing = state
            .streams
            .values()
            .flat_map(|s| [s.framing.deadline(), s.close_by])
            .flatten()
            .min()
            .map(|d| self.shared.instant(d));
        let handshake = (!state.established).then_some(self.handshake_deadline);
        [self.rtc_timeout, framing, handshake, self.pacer.next_release()].into_iter().flatten().min()
    }
}

/// Counts how this side's close of a stream ended, once: when its FIN is acknowledged or its
/// wait times out, or (`ending`) when the stream goes with its FIN still unanswered.
fn count_close(counters: &Counters, slot: &mut Slot, ending: bool) {
    if slot.close_counted {
        return;
    }
    let counter = match slot.framing.write_half() {
        WriteHalf::Closed { acked: true } => &counters.fins_acked,
        WriteHalf::Closed { acked: false } => &counters.fins_timed_out,
        WriteHalf::FinSent { .. } if ending => &counters.fins_cut,
        _ => return,
    };
    slot.close_counted = true;
    Counters::add(counter, 1);
}

/// Sends one datagram now; a full socket buffer drops it (counted; SCTP resends).
fn send(socket: &UdpSocket, counters: &Counters, to: SocketAddr, datagram: &[u8]) {
    if socket.try_send_to(datagram, to).is_err() {
        Counters::add(&counters.send_drops, 1);
    }
}

/// Why a call into str0m failed.
#[derive(Debug, thiserror::Error)]
enum RtcFailure {
    /// str0m refused the input or gave up on the connection.
    #[error(transparent)]
    Rtc(#[from] str0m::RtcError),
    /// str0m panicked.
    #[error("str0m panicked")]
    Panicked,
}

/// Runs a call into str0m; a panic in it (a bug some input reached) ends that connection as an
/// error instead of the task with every connection on the socket.
fn guarded<T>(call: impl FnOnce() -> Result<T, str0m::RtcError>) -> Result<T, RtcFailure> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(call)) {
        Ok(result) => Ok(result?),
        Err(_) => Err(RtcFailure::Panicked),
    }
}

/// The local address the kernel would send to `remote` from (the destination of what the
/// remote sends, on a socket bound to an unspecified address).
pub(crate) fn route_to(remote: SocketAddr) -> Option<IpAddr> {
    let unspecified: SocketAddr = if remote.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }.parse().ok()?;
    let probe = std::net::UdpSocket::bind(unspecified).ok()?;
    probe.connect(remote).ok()?;
    Some(probe.local_addr().ok()?.ip())
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A DTLS record of `kind` at `epoch` holding a handshake message header and `body_len` bytes.
    fn record(kind: u8, epoch: u16, msg_type: u8, message_seq: u16, offset: u32, body_len: usize) -> Vec<u8> {
        let mut handshake = vec![msg_type, 0, 1, 0];
        handshake.extend_from_slice(&message_seq.to_be_bytes());
        handshake.extend_from_slice(&offset.to_be_bytes()[1..]);
        handshake.extend_from_slice(&(body_len as u32).to_be_bytes()[1..]);
        handshake.extend(std::iter::repeat_n(0, body_len));
        let mut out = vec![kind, 0xfe, 0xfd];
        out.extend_from_slice(&epoch.to_be_bytes());
        out.extend_from_slice(&[0; 6]);
        out.extend_from_slice(&(handshake.len() as u16).to_be_bytes());
        out.extend(handshake);
        out
    }

    #[test]
    fn handshakes_are_counted_per_address_and_released() {
        let limits = Limits { max_connections: 100, max_handshaking: 3, max_handshaking_per_ip: 2 };
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let mut h = Handshakes::default();
        h.add(a);
        h.add(a);
        assert!(!h.allows(a, &limits), "two from one address");
        assert!(h.allows(b, &limits));
        h.add(b);
        assert!(!h.allows(b, &limits), "three in all");
        h.release(a);
        assert!(h.allows(a, &limits) && h.allows(b, &limits));
        h.release(a);
        h.release(b);
        assert_eq!(h.total, 0);
        assert!(h.per_ip.is_empty(), "no entry left for an address with none");
    }

    #[test]
    fn client_hello_starts_are_found_and_later_fragments_and_other_records_are_not() {
        assert_eq!(client_hello_start(&record(22, 0, 1, 0, 0, 100)), Some(0));
        assert_eq!(client_hello_start(&record(22, 0, 1, 1, 0, 100)), Some(1), "the hello after a cookie");
        assert_eq!(client_hello_start(&record(22, 0, 1, 0, 1188, 100)), None, "a later fragment");
        assert_eq!(client_hello_start(&record(22, 0, 11, 1, 0, 100)), None, "a Certificate");
        assert_eq!(client_hello_start(&record(22, 1, 1, 0, 0, 100)), None, "encrypted");
        assert_eq!(client_hello_start(&record(23, 0, 1, 0, 0, 100)), None, "application data");
        let mut two = record(20, 0, 0, 0, 0, 0);
        two.extend(record(22, 0, 1, 3, 0, 10));
        assert_eq!(client_hello_start(&two), Some(3), "the second record of a datagram");
        let whole = record(22, 0, 1, 0, 0, 100);
        assert_eq!(client_hello_start(&whole[..50]), None, "a record cut short");
        assert_eq!(client_hello_start(&[]), None);
    }
}
