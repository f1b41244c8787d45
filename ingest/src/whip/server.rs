//! The UDP task (one socket, every publisher, plus the ICE-TCP listener and its connections) and
//! the handle the HTTP layer calls.
//!
//! Datagrams are routed to the `Rtc` that [`str0m::Rtc::accepts`] them: STUN by the ICE username
//! (our ufrag), DTLS/SRTP by the remote address ICE nominated. A datagram no session takes
//! (garbage, a stale peer) is counted and dropped.
//!
//! A TCP connection is bound to a session by its first frame, which must be a STUN Binding
//! request the session's `Rtc` accepts (USERNAME's first half is its ufrag and MESSAGE-INTEGRITY
//! checks out); every later frame of that connection goes to that session as `Protocol::Tcp`.
//! Anything else as a first frame (garbage, an unknown ufrag, a frame over
//! [`MAX_FRAME`](super::rfc4571::MAX_FRAME)) closes that connection only.
//!
//! A session is inserted into the task's table before its answer goes back to the HTTP layer:
//! the publisher's first STUN check can beat the `201 Created` to the server.

use super::rfc4571::stun_binding_request;
use super::sdp::{inspect_offer, OfferSummary};
use super::session::{End, Session};
use super::tcp::{TcpConns, TcpEvent, TcpEventKind, EVENTS_QUEUE};
use super::{TransportCounters, TransportStats, WhipAnswer, WhipConfig, WhipError};
use crate::publish::Publisher;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use str0m::change::SdpOffer;
use str0m::format::{Codec, FormatParams};
use str0m::media::Frequency;
use str0m::net::{DatagramRecv, Protocol, Receive, TcpType};
use str0m::{Candidate, Input, Output, Rtc, RtcConfig};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// Starts the UDP task.
pub struct WhipServer;

enum Command {
    Add(Box<Session>, oneshot::Sender<()>),
    Delete(String, oneshot::Sender<bool>),
    Keyframe(String, oneshot::Sender<bool>),
}

/// Cheap to clone; every method talks to the UDP task.
#[derive(Clone)]
pub struct WhipHandle {
    tx: mpsc::Sender<Command>,
    candidates: Arc<Vec<SocketAddr>>,
    tcp_candidates: Arc<Vec<SocketAddr>>,
    links: Arc<Vec<String>>,
    local_addr: SocketAddr,
    tcp_local_addr: Option<SocketAddr>,
    garbage: Arc<AtomicU64>,
    counters: Arc<TransportCounters>,
}

impl WhipServer {
    /// Binds [`WhipConfig::udp_addr`] (and [`WhipConfig::tcp_addr`]) and spawns the task that
    /// owns them. The task ends when every [`WhipHandle`] is dropped.
    pub async fn start(config: WhipConfig) -> Result<(WhipHandle, JoinHandle<()>), WhipError> {
        let socket = bind(config.udp_addr, config.udp_recv_buffer)?;
        let local_addr = socket.local_addr()?;
        let candidates = candidate_addrs(local_addr, &config.public_ips);
        let listener = match config.tcp_addr {
            Some(a) => Some(TcpListener::bind(a).await?),
            None => None,
        };
        let tcp_local_addr = listener.as_ref().map(|l| l.local_addr()).transpose()?;
        let tcp_candidates = tcp_local_addr
            .map(|a| candidate_addrs(a, &config.public_ips))
            .unwrap_or_default();
        let advertised = if config.advertise_udp {
            candidates.clone()
        } else {
            Vec::new()
        };
        if advertised.is_empty() && tcp_candidates.is_empty() {
            return Err(WhipError::Io(std::io::Error::other(
                "no address to offer as ICE candidate",
            )));
        }
        tracing::info!(%local_addr, ?candidates, advertised = config.advertise_udp, "WHIP UDP socket bound");
        if let Some(tcp) = tcp_local_addr {
            tracing::info!(%tcp, candidates = ?tcp_candidates, "WHIP ICE-TCP listener bound");
        }
        let (tx, rx) = mpsc::channel(64);
        let garbage = Arc::new(AtomicU64::new(0));
        let counters = Arc::new(TransportCounters::default());
        let (tcp_tx, tcp_rx) = mpsc::channel(EVENTS_QUEUE);
        let task = UdpTask {
            socket,
            sessions: Vec::new(),
            candidates: candidates.clone(),
            config: config.clone(),
            garbage: garbage.clone(),
            counters: counters.clone(),
            listener,
            accept_after: Instant::now(),
            tcp_rx,
            tcp: TcpConns::new(tcp_tx, tcp_candidates.clone(), counters.clone()),
        };
        let join = tokio::spawn(task.run(rx));
        let links = config.ice_servers.iter().map(|s| s.link_header()).collect();
        Ok((
            WhipHandle {
                tx,
                candidates: Arc::new(advertised),
                tcp_candidates: Arc::new(tcp_candidates),
                links: Arc::new(links),
                local_addr,
                tcp_local_addr,
                garbage,
                counters,
            },
            join,
        ))
    }
}

impl WhipHandle {
    /// Negotiates `offer_sdp` and registers the session with the UDP task; the returned answer is
    /// what `201 Created` carries. The publisher's events start when media flows; dropping the
    /// session (DELETE, ICE timeout) drops `publisher.events`.
    pub async fn publish(
        &self,
        offer_sdp: &str,
        publisher: Publisher,
    ) -> Result<WhipAnswer, WhipError> {
        let summary = inspect_offer(offer_sdp)?;
        let (rtc, answer_sdp) =
            negotiate(offer_sdp, &summary, &self.candidates, &self.tcp_candidates)?;
        let session_id = new_session_id();
        let etag = format!("\"{}\"", &session_id[..16]);
        let session = Session::new(session_id.clone(), rtc, publisher, summary, Instant::now());
        let (done, added) = oneshot::channel();
        self.tx
            .send(Command::Add(Box::new(session), done))
            .await
            .map_err(|_| WhipError::Stopped)?;
        added.await.map_err(|_| WhipError::Stopped)?;
        Ok(WhipAnswer {
            session_id,
            answer_sdp,
            etag,
            links: self.links.to_vec(),
        })
    }

    /// Ends a publish (`DELETE /api/whip/{session_id}`).
    pub async fn delete(&self, session_id: &str) -> Result<(), WhipError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Command::Delete(session_id.to_string(), tx))
            .await
            .map_err(|_| WhipError::Stopped)?;
        match rx.await {
            Ok(true) => Ok(()),
            Ok(false) => Err(WhipError::NotFound(session_id.to_string())),
            Err(_) => Err(WhipError::Stopped),
        }
    }

    /// `PATCH /api/whip/{session_id}` (trickle ICE, ICE restart). storef is ICE-lite with all its
    /// candidates in the answer, and the clients it serves send every candidate in the offer or
    /// find storef's by its checks, so PATCH is answered 405 as RFC 9725 §4.4 allows; unknown
    /// sessions are 404.
    pub async fn patch(&self, session_id: &str, _body: &str) -> Result<(), WhipError> {
        let (tx, rx) = oneshot::channel();
        // A keyframe request doubles as an existence check without side effects worth noting.
        self.tx
            .send(Command::Keyframe(session_id.to_string(), tx))
            .await
            .map_err(|_| WhipError::Stopped)?;
        match rx.await {
            Ok(true) => Err(WhipError::NotSupported("trickle ICE (PATCH)")),
            Ok(false) => Err(WhipError::NotFound(session_id.to_string())),
            Err(_) => Err(WhipError::Stopped),
        }
    }

    /// Asks the publisher for a keyframe (PLI, or FIR when PLI was not negotiated). The segmenter
    /// calls this when a segment runs past its target duration without one.
    pub async fn request_keyframe(&self, session_id: &str) -> Result<(), WhipError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Command::Keyframe(session_id.to_string(), tx))
            .await
            .map_err(|_| WhipError::Stopped)?;
        match rx.await {
            Ok(true) => Ok(()),
            Ok(false) => Err(WhipError::NotFound(session_id.to_string())),
            Err(_) => Err(WhipError::Stopped),
        }
    }

    /// The bound UDP address (tests bind port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The addresses put into answers as UDP host candidates (none when
    /// [`WhipConfig::advertise_udp`] is off).
    pub fn candidates(&self) -> &[SocketAddr] {
        &self.candidates
    }

    /// The bound ICE-TCP listener, when [`WhipConfig::tcp_addr`] is set.
    pub fn tcp_local_addr(&self) -> Option<SocketAddr> {
        self.tcp_local_addr
    }

    /// The addresses put into answers as passive TCP host candidates.
    pub fn tcp_candidates(&self) -> &[SocketAddr] {
        &self.tcp_candidates
    }

    /// Datagrams no session accepted so far.
    pub fn unrouted_datagrams(&self) -> u64 {
        self.garbage.load(Ordering::Relaxed)
    }

    /// Packets and connections seen on both transports so far.
    pub fn transport_stats(&self) -> TransportStats {
        self.counters.snapshot()
    }
}

/// Builds the `Rtc` for an offer: ICE-lite, RTP mode, the offer's own H.264 variants and Opus,
/// UDP host candidates and passive TCP host candidates (RFC 6544 §4.5; str0m ranks TCP host
/// candidates below UDP ones, type preference 90 against 126, as RFC 6544 §4.2 recommends).
fn negotiate(
    offer_sdp: &str,
    summary: &OfferSummary,
    candidates: &[SocketAddr],
    tcp_candidates: &[SocketAddr],
) -> Result<(Rtc, String), WhipError> {
    let mut cfg = RtcConfig::new()
        .set_ice_lite(true)
        .set_rtp_mode(true)
        .clear_codecs()
        .set_stats_interval(Some(Duration::from_secs(1)));
    for h in &summary.h264 {
        cfg.codec_config().add_h264(
            h.pt.into(),
            h.rtx.map(Into::into),
            h.packetization_mode == 1,
            h.profile_level_id,
        );
    }
    if let Some(o) = summary.opus {
        cfg.codec_config().add_config(
            o.pt.into(),
            None,
            Codec::Opus,
            Frequency::FORTY_EIGHT_KHZ,
            Some(2),
            FormatParams {
                min_p_time: Some(10),
                use_inband_fec: Some(true),
                ..Default::default()
            },
        );
    }
    let mut rtc = cfg.build(Instant::now());
    for addr in candidates {
        let c = Candidate::host(*addr, "udp").map_err(|e| WhipError::Negotiation(e.to_string()))?;
        rtc.add_local_candidate(c);
    }
    for addr in tcp_candidates {
        let c = Candidate::builder()
            .tcp()
            .host(*addr)
            .tcptype(TcpType::Passive)
            .build()
            .map_err(|e| WhipError::Negotiation(e.to_string()))?;
        rtc.add_local_candidate(c);
    }
    let offer =
        SdpOffer::from_sdp_string(offer_sdp).map_err(|e| WhipError::Negotiation(e.to_string()))?;
    let answer = rtc
        .sdp_api()
        .accept_offer(offer)
        .map_err(|e| WhipError::Negotiation(e.to_string()))?;
    Ok((rtc, answer.to_sdp_string()))
}

/// Binds the shared socket with a large receive buffer: every publisher's keyframe burst lands in
/// this one buffer, and the default (~208 KiB on Linux) overflows when a few dozen IDRs of
/// 40–100 KiB arrive together, which costs every one of them a keyframe round trip. The kernel caps
/// the size at `net.core.rmem_max` (the effective size is logged).
fn bind(addr: SocketAddr, recv_buffer: usize) -> std::io::Result<UdpSocket> {
    use socket2::{Domain, Protocol as SockProto, Socket, Type};
    let sock = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(SockProto::UDP))?;
    if let Err(e) = sock.set_recv_buffer_size(recv_buffer) {
        tracing::warn!(error = %e, "WHIP UDP: cannot set the receive buffer size");
    }
    sock.set_nonblocking(true)?;
    sock.bind(&addr.into())?;
    tracing::info!(
        requested = recv_buffer,
        effective = sock.recv_buffer_size().unwrap_or(0),
        "WHIP UDP receive buffer"
    );
    UdpSocket::from_std(sock.into())
}

/// 128 random bits as hex, from the OS-seeded SipHash keys of `RandomState` (std seeds each
/// `RandomState` from the OS RNG, then increments) mixed with a counter and the clock.
fn new_session_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let mut words = [0u64; 2];
    for (i, w) in words.iter_mut().enumerate() {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(n);
        h.write_u128(t);
        h.write_usize(i);
        *w = h.finish();
    }
    format!("{:016x}{:016x}", words[0], words[1])
}

/// The host candidates: each public IP with the bound port; else the bound address; for an
/// unspecified bind, the machine's interface addresses (loopback included, so a local browser can
/// publish; link-local IPv6 left out, it needs a scope id).
pub(crate) fn candidate_addrs(bound: SocketAddr, public_ips: &[IpAddr]) -> Vec<SocketAddr> {
    let port = bound.port();
    if !public_ips.is_empty() {
        return public_ips
            .iter()
            .map(|ip| SocketAddr::new(*ip, port))
            .collect();
    }
    if !bound.ip().is_unspecified() {
        return vec![bound];
    }
    let mut out: Vec<SocketAddr> = if_addrs::get_if_addrs()
        .unwrap_or_default()
        .into_iter()
        .map(|i| i.ip())
        .filter(|ip| bound.is_ipv4() == ip.is_ipv4())
        .filter(|ip| match ip {
            IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) != 0xfe80,
            IpAddr::V4(_) => true,
        })
        .map(|ip| SocketAddr::new(ip, port))
        .collect();
    if out.is_empty() && bound.is_ipv4() {
        out.push(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port));
    }
    out.sort_by_key(|a| a.ip().is_loopback());
    out.dedup();
    out
}

struct UdpTask {
    socket: UdpSocket,
    sessions: Vec<Session>,
    candidates: Vec<SocketAddr>,
    config: WhipConfig,
    garbage: Arc<AtomicU64>,
    counters: Arc<TransportCounters>,
    listener: Option<TcpListener>,
    /// Accepting pauses until then after an accept error.
    accept_after: Instant,
    tcp_rx: mpsc::Receiver<TcpEvent>,
    tcp: TcpConns,
}

/// Which of `candidates` a packet from `source` was sent to, when the socket cannot say (bound
/// to `0.0.0.0`, no IP_PKTINFO here): the candidate of the same family that is loopback exactly
/// when the source is; str0m's ICE agent matches checks against its local candidates by address.
pub(crate) fn candidate_for(candidates: &[SocketAddr], source: SocketAddr) -> SocketAddr {
    candidates
        .iter()
        .find(|c| {
            c.is_ipv4() == source.is_ipv4() && c.ip().is_loopback() == source.ip().is_loopback()
        })
        .or_else(|| candidates.iter().find(|c| c.is_ipv4() == source.is_ipv4()))
        .or(candidates.first())
        .copied()
        .unwrap_or(source)
}

/// The next connection on the ICE-TCP listener; never, without one.
async fn accept(
    listener: &Option<TcpListener>,
) -> std::io::Result<(tokio::net::TcpStream, SocketAddr)> {
    match listener {
        Some(l) => l.accept().await,
        None => std::future::pending().await,
    }
}

impl UdpTask {
    async fn run(mut self, mut rx: mpsc::Receiver<Command>) {
        let mut buf = vec![0u8; 2000];
        let mut next_tick = Instant::now();
        loop {
            let mut deadline = self.drive().await;
            if next_tick < deadline {
                deadline = next_tick;
            }
            tokio::select! {
                cmd = rx.recv() => match cmd {
                    None => break,
                    Some(cmd) => self.command(cmd),
                },
                r = self.socket.recv_from(&mut buf) => match r {
                    Ok((n, source)) => self.datagram(source, buf.get(..n).unwrap_or_default()),
                    // ICMP port unreachable from a vanished peer surfaces as ECONNREFUSED on
                    // some platforms: not fatal for the socket.
                    Err(e) => tracing::debug!(error = %e, "WHIP UDP recv"),
                },
                r = accept(&self.listener), if Instant::now() >= self.accept_after => match r {
                    Ok((stream, peer)) => self.tcp.accept(stream, peer, Instant::now()),
                    // EMFILE and friends: the listener stays, and is left alone for a moment
                    // (without stalling the UDP side) rather than retried in a busy loop.
                    Err(e) => {
                        tracing::warn!(error = %e, "WHIP TCP accept");
                        self.accept_after = Instant::now() + Duration::from_millis(100);
                    }
                },
                Some(ev) = self.tcp_rx.recv() => match ev.kind {
                    TcpEventKind::Frame(f) => self.tcp_frame(ev.conn, &f),
                    TcpEventKind::Closed(why) => self.tcp.closed(ev.conn, why),
                },
                _ = tokio::time::sleep_until(deadline.into()) => {}
            }
            let now = Instant::now();
            if now >= next_tick {
                next_tick = now + Duration::from_millis(50);
                for s in &mut self.sessions {
                    s.tick(now, self.config.ice_timeout, self.config.stats_interval);
                }
                self.tcp.expire(now, self.config.ice_timeout);
            }
            for s in &mut self.sessions {
                if s.rtc.is_alive() {
                    if let Err(e) = s.rtc.handle_input(Input::Timeout(now)) {
                        tracing::warn!(session = %s.id, error = %e, "WHIP rtc timeout");
                        s.ended.get_or_insert(End::Closed);
                    }
                } else {
                    s.ended.get_or_insert(End::Closed);
                }
            }
            self.reap().await;
        }
        for s in &mut self.sessions {
            s.rtc.disconnect();
        }
        tracing::info!("WHIP UDP task stopped");
    }

    fn command(&mut self, cmd: Command) {
        match cmd {
            Command::Add(s, done) => {
                tracing::info!(session = %s.id, "WHIP session added");
                self.sessions.push(*s);
                let _ = done.send(());
            }
            Command::Delete(id, reply) => {
                let found = self.sessions.iter_mut().find(|s| s.id == id);
                let ok = found.is_some();
                if let Some(s) = found {
                    s.ended = Some(End::Deleted);
                }
                let _ = reply.send(ok);
            }
            Command::Keyframe(id, reply) => {
                let found = self
                    .sessions
                    .iter_mut()
                    .find(|s| s.id == id && s.ended.is_none());
                let ok = found.is_some();
                if let Some(s) = found {
                    s.want_keyframe();
                }
                let _ = reply.send(ok);
            }
        }
    }

    fn datagram(&mut self, source: SocketAddr, data: &[u8]) {
        let now = Instant::now();
        self.counters.udp_datagrams.fetch_add(1, Ordering::Relaxed);
        let Ok(contents) = DatagramRecv::try_from(data) else {
            self.garbage.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let input = Input::Receive(
            now,
            Receive {
                proto: Protocol::Udp,
                source,
                destination: self.destination_for(source),
                contents,
            },
        );
        let Some(s) = self
            .sessions
            .iter_mut()
            .find(|s| s.ended.is_none() && s.rtc.accepts(&input))
        else {
            self.garbage.fetch_add(1, Ordering::Relaxed);
            return;
        };
        s.last_rx = now;
        s.remote = Some(source);
        s.transport = Protocol::Udp;
        if let Err(e) = s.rtc.handle_input(input) {
            // A bad packet for one peer (failed DTLS, SRTP) ends at most that peer.
            tracing::debug!(session = %s.id, error = %e, "WHIP input rejected");
        }
    }

    /// Which of our UDP candidates a datagram was sent to ([`candidate_for`]).
    fn destination_for(&self, source: SocketAddr) -> SocketAddr {
        candidate_for(&self.candidates, source)
    }

    /// One RFC 4571 frame from TCP connection `conn`: binds the connection to a session on its
    /// first (STUN) frame, then feeds the session's `Rtc`.
    fn tcp_frame(&mut self, conn: u64, data: &[u8]) {
        let now = Instant::now();
        self.counters.tcp_frames.fetch_add(1, Ordering::Relaxed);
        let Some(c) = self.tcp.get(conn) else {
            return; // closed meanwhile
        };
        let (peer, local, bound) = (c.peer, c.local, c.session.clone());
        if data.is_empty() {
            return; // a zero-length frame carries nothing
        }
        let request = stun_binding_request(data);
        if bound.is_none() && request.is_none() {
            self.tcp
                .close(conn, "first frame is not a STUN Binding request");
            return;
        }
        let Ok(contents) = DatagramRecv::try_from(data) else {
            if bound.is_none() {
                self.tcp.close(
                    conn,
                    "first frame is not a STUN Binding request str0m can parse",
                );
            } else {
                self.garbage.fetch_add(1, Ordering::Relaxed);
            }
            return;
        };
        let input = Input::Receive(
            now,
            Receive {
                proto: Protocol::Tcp,
                source: peer,
                destination: local,
                contents,
            },
        );
        let session = match &bound {
            Some(id) => self
                .sessions
                .iter_mut()
                .find(|s| &s.id == id && s.ended.is_none()),
            None => self
                .sessions
                .iter_mut()
                .find(|s| s.ended.is_none() && s.rtc.accepts(&input)),
        };
        let Some(s) = session else {
            let why = match request.and_then(|r| r.local_ufrag()) {
                _ if bound.is_some() => "its session has ended".to_string(),
                Some(ufrag) => format!("STUN Binding request for unknown ufrag {ufrag:?}"),
                None => "STUN Binding request without USERNAME".to_string(),
            };
            self.tcp.close(conn, &why);
            return;
        };
        if bound.is_none() {
            tracing::info!(session = %s.id, %peer, "WHIP TCP connection bound to its session");
            self.tcp.bind(conn, &s.id);
        }
        s.last_rx = now;
        s.remote = Some(peer);
        s.transport = Protocol::Tcp;
        if let Err(e) = s.rtc.handle_input(input) {
            tracing::debug!(session = %s.id, error = %e, "WHIP input rejected (TCP)");
        }
    }

    /// Polls every session's output: sends transmits, handles events; returns the earliest timeout.
    async fn drive(&mut self) -> Instant {
        let mut earliest = Instant::now() + Duration::from_millis(100);
        for s in &mut self.sessions {
            if s.ended.is_some() {
                continue;
            }
            loop {
                match s.rtc.poll_output() {
                    Ok(Output::Timeout(t)) => {
                        earliest = earliest.min(t);
                        break;
                    }
                    Ok(Output::Transmit(t)) if t.proto == Protocol::Tcp => {
                        self.tcp.send(&s.id, t.destination, &t.contents);
                    }
                    Ok(Output::Transmit(t)) => {
                        if let Err(e) = self.socket.send_to(&t.contents, t.destination).await {
                            tracing::debug!(session = %s.id, error = %e, "WHIP UDP send");
                        }
                    }
                    Ok(Output::Event(ev)) => s.handle_event(Instant::now(), ev),
                    Err(e) => {
                        tracing::warn!(session = %s.id, error = %e, "WHIP rtc failed");
                        s.ended.get_or_insert(End::Closed);
                        break;
                    }
                }
            }
        }
        earliest
    }

    /// Drops ended sessions (and with them their events senders).
    async fn reap(&mut self) {
        let mut i = 0;
        while i < self.sessions.len() {
            let Some(end) = self.sessions.get(i).and_then(|s| s.ended) else {
                i += 1;
                continue;
            };
            let mut s = self.sessions.swap_remove(i);
            tracing::info!(session = %s.id, ?end, "WHIP session ended");
            s.rtc.disconnect();
            // Flush what disconnect queued (DTLS close_notify) before the Rtc goes.
            while let Ok(Output::Transmit(t)) = s.rtc.poll_output() {
                if t.proto == Protocol::Tcp {
                    self.tcp.send(&s.id, t.destination, &t.contents);
                } else {
                    let _ = self.socket.send_to(&t.contents, t.destination).await;
                }
            }
            self.tcp.close_session(&s.id);
        }
    }
}
