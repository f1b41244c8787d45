//! The connection's socket, read on readiness until a publish starts and then on a tick
//! (what SRS calls "merged read").
//!
//! A publisher's bytes arrive in many small TCP segments: every audio frame, every few
//! kilobytes of video. Read on readiness, each one wakes the connection's thread, and with tens
//! of publishers per core those sleeps and wakeups cost more CPU than parsing the media (a
//! profile at 50 publishers: a fifth of storef's CPU in the scheduler). So with a `read_tick`
//! set, once a publish has started the socket leaves the reactor and is read every tick, at
//! deadlines aligned across all connections: they expire in the same timer-wheel turn, and one
//! wakeup of the thread serves every publisher on it with everything that arrived since. The
//! price is at most one tick of added latency per message, and a poll per publisher per tick
//! whether bytes came or not, which is why it is off by default: it saves CPU only with many
//! publishers per thread.
//! The handshake and the commands before `publish` stay on readiness either way.

use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::sync::OnceLock;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

pub(crate) enum Socket {
    /// Registered with the reactor: woken when bytes arrive.
    Ready(TcpStream),
    /// Off the reactor (non-blocking), read at each tick.
    Ticked {
        sock: std::net::TcpStream,
        tick: Duration,
    },
}

impl Socket {
    /// From now on reads happen every `tick` (a zero tick keeps reading on readiness).
    pub fn read_on_ticks(self, tick: Duration) -> io::Result<Socket> {
        match self {
            Socket::Ready(s) if !tick.is_zero() => Ok(Socket::Ticked {
                // Leaves O_NONBLOCK set: reads below return WouldBlock when nothing is queued.
                sock: s.into_std()?,
                tick,
            }),
            other => Ok(other),
        }
    }

    pub fn is_ticked(&self) -> bool {
        matches!(self, Socket::Ticked { .. })
    }

    /// Reads what is queued; waits (for readiness, or for the next tick) when nothing is.
    pub async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Socket::Ready(s) => s.read(buf).await,
            Socket::Ticked { sock, tick } => retry_on_ticks(*tick, || (&*sock).read(buf)).await,
        }
    }

    /// Writes all of `bytes`; a full send buffer is retried at the next tick.
    pub async fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Socket::Ready(s) => s.write_all(bytes).await,
            Socket::Ticked { sock, tick } => {
                let mut rest = bytes;
                while !rest.is_empty() {
                    match retry_on_ticks(*tick, || (&*sock).write(rest)).await? {
                        0 => return Err(io::ErrorKind::WriteZero.into()),
                        n => rest = rest.get(n..).unwrap_or_default(),
                    }
                }
                Ok(())
            }
        }
    }

    /// Half-closes the sending side.
    pub async fn shutdown(&mut self) -> io::Result<()> {
        match self {
            Socket::Ready(s) => s.shutdown().await,
            Socket::Ticked { sock, .. } => sock.shutdown(Shutdown::Write),
        }
    }
}

/// Runs the non-blocking `op` until it does something other than block, waiting for the next
/// tick after each WouldBlock (and retrying at once after EINTR).
async fn retry_on_ticks<T>(tick: Duration, mut op: impl FnMut() -> io::Result<T>) -> io::Result<T> {
    loop {
        match op() {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                tokio::time::sleep_until(next_tick(tick)).await
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            r => return r,
        }
    }
}

/// The first multiple of `tick` after now, counted from one process-wide epoch, so that every
/// connection with the same tick wakes at the same instant.
fn next_tick(tick: Duration) -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    let tick_ns = tick.as_nanos().max(1);
    let ticks = Instant::now().saturating_duration_since(epoch).as_nanos() / tick_ns + 1;
    let at = ticks.saturating_mul(tick_ns);
    epoch + Duration::from_nanos(u64::try_from(at).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn ticks_are_aligned_and_in_the_future() {
        let tick = Duration::from_millis(5);
        let a = next_tick(tick);
        tokio::time::sleep(Duration::from_millis(2)).await;
        let b = next_tick(tick);
        let now = Instant::now();
        assert!(a > now - tick && b > now);
        // Same grid: the two deadlines are a whole number of ticks apart.
        let apart = b.saturating_duration_since(a).as_nanos();
        assert_eq!(apart % tick.as_nanos(), 0, "{apart}");
        assert!(b.saturating_duration_since(now) <= tick);
    }

    #[tokio::test]
    async fn a_ticked_socket_reads_writes_and_sees_eof() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = tokio::spawn(async move {
            let mut c = TcpStream::connect(addr).await.unwrap();
            c.write_all(b"hello").await.unwrap();
            let mut back = [0u8; 3];
            c.read_exact(&mut back).await.unwrap();
            assert_eq!(&back, b"ack");
            for _ in 0..100 {
                c.write_all(b"x").await.unwrap();
            }
            c.shutdown().await.unwrap();
        });
        let (s, _) = listener.accept().await.unwrap();
        let mut sock = Socket::Ready(s)
            .read_on_ticks(Duration::from_millis(20))
            .unwrap();
        assert!(sock.is_ticked());
        let mut buf = [0u8; 4096];
        let mut got = Vec::new();
        while got.len() < 5 {
            let n = sock.read(&mut buf).await.unwrap();
            got.extend_from_slice(&buf[..n]);
        }
        assert_eq!(got, b"hello");
        sock.write_all(b"ack").await.unwrap();
        let mut total = 0;
        loop {
            let n = sock.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            total += n;
        }
        assert_eq!(total, 100);
        client.await.unwrap();
        assert!(!Socket::Ready(
            TcpStream::connect(listener.local_addr().unwrap())
                .await
                .unwrap()
        )
        .read_on_ticks(Duration::ZERO)
        .unwrap()
        .is_ticked());
    }
}
