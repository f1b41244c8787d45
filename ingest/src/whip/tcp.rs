//! ICE-TCP (RFC 6544): the connections to storef's passive TCP host candidates.
//!
//! Why only passive candidates: storef is ICE-lite (RFC 8445 §2.5), it never sends checks and so
//! never opens connections; the publisher's agent makes an active TCP connection to the listener,
//! exactly as a UDP publisher sends the first packet. Active or simultaneous-open candidates would
//! need storef to connect out, which a server behind a firewall or a load balancer often cannot.
//!
//! Why TCP at all: networks that drop UDP (corporate proxies, some hotel and mobile networks)
//! still let a browser make a TCP connection. Answers give TCP candidates the priority RFC 8445
//! §5.1.2 computes with str0m's (libwebrtc's) type preference 90 for TCP host candidates against
//! 126 for UDP ones: when both work the publisher nominates UDP, because TCP's in-order delivery
//! turns one lost packet into a stall of every packet behind it (head-of-line blocking), which
//! NACK/PLI handle far better on UDP.
//!
//! The tokio side stays thin: one task per connection reads into a [`Deframer`] and sends frames
//! to the server task over a shared channel; the server task owns the table, routes frames to
//! `Rtc`s and queues framed packets on a bounded per-connection queue with `try_send`, so a peer
//! that stops reading can never stall the other publishers (it is dropped instead).

use super::rfc4571::{frame, Deframer, FramingError, MAX_FRAME};
use super::TransportCounters;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;
use tokio_util::sync::CancellationToken;

/// Connections that have not yet sent a Binding request a session accepted. Each costs a task
/// and a socket; beyond this many new ones are refused at once. A publisher opens one per local
/// candidate pair it tests (a few), so this is far above what honest clients need at a time.
pub(crate) const MAX_UNAUTHENTICATED: usize = 64;
/// Outbound packets queued per connection. A publisher receives little (STUN responses, DTLS,
/// RTCP feedback): a full queue means the peer stopped reading.
const OUT_QUEUE: usize = 256;
/// Frames in flight from all connection tasks to the server task.
pub(crate) const EVENTS_QUEUE: usize = 1024;

pub(crate) struct TcpEvent {
    pub conn: u64,
    pub kind: TcpEventKind,
}

pub(crate) enum TcpEventKind {
    Frame(Vec<u8>),
    Closed(Closed),
}

/// Why a connection task ended on its own.
#[derive(Debug)]
pub(crate) enum Closed {
    Eof,
    Io(std::io::Error),
    Framing(FramingError),
}

impl std::fmt::Display for Closed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Closed::Eof => f.write_str("closed by the peer"),
            Closed::Io(e) => write!(f, "{e}"),
            Closed::Framing(e) => write!(f, "{e}"),
        }
    }
}

impl Closed {
    fn is_peer_leaving(&self) -> bool {
        use std::io::ErrorKind::*;
        match self {
            Closed::Eof => true,
            Closed::Io(e) => matches!(e.kind(), ConnectionReset | BrokenPipe | ConnectionAborted),
            Closed::Framing(_) => false,
        }
    }
}

pub(crate) struct Conn {
    pub peer: SocketAddr,
    /// The TCP candidate the connection arrived on (what str0m's ICE agent matches against).
    pub local: SocketAddr,
    /// The session whose `Rtc` accepted this connection's Binding request.
    pub session: Option<String>,
    opened: Instant,
    out: mpsc::Sender<Vec<u8>>,
    kill: CancellationToken,
}

impl Drop for Conn {
    /// Removing a connection from the table closes it, even while its task is stuck writing.
    fn drop(&mut self) {
        self.kill.cancel();
    }
}

/// The table of TCP connections, owned by the server task.
pub(crate) struct TcpConns {
    conns: HashMap<u64, Conn>,
    next_id: u64,
    events: mpsc::Sender<TcpEvent>,
    candidates: Vec<SocketAddr>,
    counters: Arc<TransportCounters>,
}

impl TcpConns {
    pub fn new(
        events: mpsc::Sender<TcpEvent>,
        candidates: Vec<SocketAddr>,
        counters: Arc<TransportCounters>,
    ) -> Self {
        TcpConns {
            conns: HashMap::new(),
            next_id: 0,
            events,
            candidates,
            counters,
        }
    }

    pub fn get(&self, id: u64) -> Option<&Conn> {
        self.conns.get(&id)
    }

    pub fn bind(&mut self, id: u64, session: &str) {
        if let Some(c) = self.conns.get_mut(&id) {
            c.session = Some(session.to_string());
        }
    }

    fn unauthenticated(&self) -> usize {
        self.conns.values().filter(|c| c.session.is_none()).count()
    }

    /// Takes a new connection: refused beyond [`MAX_UNAUTHENTICATED`], else its task is spawned.
    pub fn accept(&mut self, stream: TcpStream, peer: SocketAddr, now: Instant) {
        self.counters
            .tcp_connections
            .fetch_add(1, Ordering::Relaxed);
        if self.unauthenticated() >= MAX_UNAUTHENTICATED {
            self.counters.tcp_dropped.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(%peer, "WHIP TCP: too many connections without a valid STUN request; refused");
            return;
        }
        // Small packets (RTCP feedback, STUN responses) must not wait for Nagle.
        let _ = stream.set_nodelay(true);
        let local = stream.local_addr().ok();
        let candidate = local
            .filter(|l| self.candidates.contains(l))
            .unwrap_or_else(|| super::server::candidate_for(&self.candidates, peer));
        let id = self.next_id;
        self.next_id += 1;
        let (out, out_rx) = mpsc::channel(OUT_QUEUE);
        let kill = CancellationToken::new();
        tokio::spawn(connection(
            id,
            stream,
            self.events.clone(),
            out_rx,
            kill.clone(),
        ));
        tracing::debug!(conn = id, %peer, ?local, %candidate, "WHIP TCP connection");
        self.conns.insert(
            id,
            Conn {
                peer,
                local: candidate,
                session: None,
                opened: now,
                out,
                kill,
            },
        );
    }

    /// Closes a connection because of what it sent (or did not send).
    pub fn close(&mut self, id: u64, why: &str) {
        if let Some(c) = self.conns.remove(&id) {
            self.counters.tcp_dropped.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(conn = id, peer = %c.peer, session = ?c.session, "WHIP TCP connection closed: {why}");
        }
    }

    /// The connection task ended (peer closed, read error, bad framing).
    pub fn closed(&mut self, id: u64, why: Closed) {
        let Some(c) = self.conns.remove(&id) else {
            return;
        };
        match why {
            // A publisher that quits closes its socket; one that quits while storef is writing
            // RTCP to it resets it instead; an ICE agent closes connections of candidate pairs it
            // gave up on. All are the peer leaving, not storef dropping it.
            why if why.is_peer_leaving() => {
                tracing::debug!(conn = id, peer = %c.peer, session = ?c.session, "WHIP TCP connection closed by the peer ({why})")
            }
            why => {
                self.counters.tcp_dropped.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(conn = id, peer = %c.peer, session = ?c.session, "WHIP TCP connection closed: {why}")
            }
        }
    }

    /// Drops every connection of an ended session.
    pub fn close_session(&mut self, session: &str) {
        self.conns
            .retain(|_, c| c.session.as_deref() != Some(session));
    }

    /// Drops connections that sent no acceptable Binding request within `timeout`.
    pub fn expire(&mut self, now: Instant, timeout: Duration) {
        let stale: Vec<u64> = self
            .conns
            .iter()
            .filter(|(_, c)| {
                c.session.is_none() && now.saturating_duration_since(c.opened) > timeout
            })
            .map(|(id, _)| *id)
            .collect();
        for id in stale {
            self.counters.tcp_timed_out.fetch_add(1, Ordering::Relaxed);
            self.close(id, "no valid STUN Binding request within the ICE timeout");
        }
    }

    /// Queues `packet` (framed) on the connection of `session` to `destination`. Never waits: a
    /// connection whose queue is full is dropped.
    pub fn send(&mut self, session: &str, destination: SocketAddr, packet: &[u8]) {
        let Some((&id, c)) = self
            .conns
            .iter()
            .find(|(_, c)| c.peer == destination && c.session.as_deref() == Some(session))
        else {
            tracing::debug!(session, %destination, "WHIP TCP: no connection for a transmit");
            return;
        };
        let mut framed = Vec::new();
        if let Err(e) = frame(packet, &mut framed) {
            tracing::warn!(session, error = %e, "WHIP TCP: packet not sent");
            return;
        }
        match c.out.try_send(framed) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => self.close(
                id,
                "the peer does not read fast enough (outbound queue full)",
            ),
            Err(TrySendError::Closed(_)) => {
                self.conns.remove(&id);
            }
        }
    }
}

/// One connection: reads frames to the server task, writes what the server queues, ends on EOF,
/// errors, bad framing, or when the server drops it (`kill`, or the queue's sender).
async fn connection(
    id: u64,
    stream: TcpStream,
    events: mpsc::Sender<TcpEvent>,
    mut out: mpsc::Receiver<Vec<u8>>,
    kill: CancellationToken,
) {
    let (mut rd, mut wr) = stream.into_split();
    let reading = async {
        let mut deframer = Deframer::new(MAX_FRAME);
        let mut buf = vec![0u8; 16 * 1024];
        let mut frames = Vec::new();
        loop {
            let n = match rd.read(&mut buf).await {
                Ok(0) => return Some(Closed::Eof),
                Ok(n) => n,
                Err(e) => return Some(Closed::Io(e)),
            };
            let fed = deframer.feed(buf.get(..n).unwrap_or_default(), &mut frames);
            for f in frames.drain(..) {
                let ev = TcpEvent {
                    conn: id,
                    kind: TcpEventKind::Frame(f),
                };
                if events.send(ev).await.is_err() {
                    return None;
                }
            }
            if let Err(e) = fed {
                return Some(Closed::Framing(e));
            }
        }
    };
    let writing = async {
        while let Some(b) = out.recv().await {
            if let Err(e) = wr.write_all(&b).await {
                return Some(Closed::Io(e));
            }
        }
        None
    };
    let why = tokio::select! {
        w = reading => w,
        w = writing => w,
        _ = kill.cancelled() => None,
    };
    if let Some(why) = why {
        let _ = events
            .send(TcpEvent {
                conn: id,
                kind: TcpEventKind::Closed(why),
            })
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn insert(
        t: &mut TcpConns,
        id: u64,
        peer: &str,
        session: Option<&str>,
        opened: Instant,
    ) -> (mpsc::Receiver<Vec<u8>>, CancellationToken) {
        let (out, rx) = mpsc::channel(OUT_QUEUE);
        let kill = CancellationToken::new();
        let peer: SocketAddr = peer.parse().unwrap();
        t.conns.insert(
            id,
            Conn {
                peer,
                local: "127.0.0.1:8189".parse().unwrap(),
                session: session.map(str::to_string),
                opened,
                out,
                kill: kill.clone(),
            },
        );
        (rx, kill)
    }

    fn table() -> (TcpConns, Arc<TransportCounters>) {
        let counters = Arc::new(TransportCounters::default());
        let (tx, _rx) = mpsc::channel(1);
        (TcpConns::new(tx, Vec::new(), counters.clone()), counters)
    }

    #[test]
    fn a_peer_that_stops_reading_is_dropped_alone() {
        let (mut t, counters) = table();
        let now = Instant::now();
        let (mut slow_rx, slow_kill) = insert(&mut t, 0, "10.0.0.1:5000", Some("a"), now);
        let (mut fast_rx, fast_kill) = insert(&mut t, 1, "10.0.0.2:5000", Some("a"), now);
        let (slow, fast) = (
            "10.0.0.1:5000".parse().unwrap(),
            "10.0.0.2:5000".parse().unwrap(),
        );
        for i in 0..OUT_QUEUE {
            t.send("a", slow, &[i as u8]);
            t.send("a", fast, &[1, 2]);
            assert_eq!(fast_rx.try_recv().unwrap(), [0, 2, 1, 2], "framed");
        }
        assert!(t.get(0).is_some());
        // Not this session's connection, or no connection at all: nothing is queued anywhere.
        t.send("b", fast, &[9]);
        t.send("a", "10.0.0.3:1".parse().unwrap(), &[9]);
        assert!(fast_rx.try_recv().is_err());
        // One more than the queue holds: that connection goes, the other stays.
        t.send("a", slow, &[0]);
        assert!(t.get(0).is_none());
        assert!(slow_kill.is_cancelled());
        assert!(!fast_kill.is_cancelled());
        assert_eq!(counters.snapshot().tcp_dropped, 1);
        assert_eq!(slow_rx.try_recv().unwrap(), [0, 1, 0]);
        t.send("a", fast, &[3]);
        assert_eq!(fast_rx.try_recv().unwrap(), [0, 1, 3]);
    }

    #[test]
    fn unauthenticated_connections_expire_and_sessions_take_theirs_along() {
        let (mut t, counters) = table();
        let now = Instant::now();
        let old = now - Duration::from_secs(11);
        let (_r0, k0) = insert(&mut t, 0, "10.0.0.1:1", None, old);
        let (_r1, k1) = insert(&mut t, 1, "10.0.0.1:2", None, now);
        let (_r2, k2) = insert(&mut t, 2, "10.0.0.1:3", Some("a"), old);
        let (_r3, k3) = insert(&mut t, 3, "10.0.0.1:4", Some("b"), old);
        assert_eq!(t.unauthenticated(), 2);
        t.expire(now, Duration::from_secs(10));
        assert!(k0.is_cancelled() && !k1.is_cancelled() && !k2.is_cancelled());
        assert_eq!(counters.snapshot().tcp_dropped, 1);
        assert_eq!(counters.snapshot().tcp_timed_out, 1);
        t.bind(1, "a");
        t.close_session("a");
        assert!(k1.is_cancelled() && k2.is_cancelled() && !k3.is_cancelled());
        assert_eq!(t.conns.len(), 1);
        // A session ending is not the peer's fault.
        assert_eq!(counters.snapshot().tcp_dropped, 1);
    }

    #[test]
    fn a_peer_leaving_is_not_a_drop_but_bad_framing_is() {
        let (mut t, counters) = table();
        let now = Instant::now();
        let io = |k| Closed::Io(std::io::Error::from(k));
        for (id, why) in [
            (0, Closed::Eof),
            (1, io(std::io::ErrorKind::ConnectionReset)),
            (2, io(std::io::ErrorKind::BrokenPipe)),
        ] {
            let _ = insert(&mut t, id, "10.0.0.1:1", Some("a"), now);
            t.closed(id, why);
        }
        assert_eq!(counters.snapshot().tcp_dropped, 0);
        // A connection no session accepted, closed or reset by its peer: an abandoned candidate
        // pair, not a drop either.
        let _ = insert(&mut t, 3, "10.0.0.1:2", None, now);
        t.closed(3, io(std::io::ErrorKind::ConnectionReset));
        let _ = insert(&mut t, 5, "10.0.0.1:4", None, now);
        t.closed(5, Closed::Eof);
        assert_eq!(counters.snapshot().tcp_dropped, 0);
        // A stream that is not RFC 4571, or a read error that is not the peer leaving, is.
        let _ = insert(&mut t, 4, "10.0.0.1:3", Some("a"), now);
        t.closed(4, io(std::io::ErrorKind::InvalidData));
        let _ = insert(&mut t, 6, "10.0.0.1:5", None, now);
        t.closed(
            6,
            Closed::Framing(FramingError::TooLong {
                offset: 0,
                len: 9000,
                max: 8192,
            }),
        );
        assert_eq!(counters.snapshot().tcp_dropped, 2);
        assert_eq!(counters.snapshot().tcp_timed_out, 0);
        assert!(t.conns.is_empty());
    }
}
