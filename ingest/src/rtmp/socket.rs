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
//!
//! Read on readiness, a publishing socket can also be told to wake the thread only once a few
//! milliseconds of the publisher's media have queued ([`Socket::set_wake_threshold`], the
//! kernel's `SO_RCVLOWAT`): audio frames and small video frames then arrive together instead of
//! one wakeup each. Bytes below the threshold wait in the kernel until more come, so the
//! connection also reads without waiting for readiness ([`Socket::read_queued`]) when its timer
//! fires: a publisher that goes quiet leaves nothing unread for long.

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

    /// Wakes a reader on readiness only when at least `bytes` are queued (`SO_RCVLOWAT`; 1 is
    /// the kernel's default, any byte). No effect on a ticked socket, which is read regardless.
    pub fn set_wake_threshold(&self, bytes: usize) -> io::Result<()> {
        match self {
            Socket::Ready(s) => set_rcvlowat(s, bytes),
            Socket::Ticked { .. } => Ok(()),
        }
    }

    /// Reads whatever is queued now, below any wake threshold too, without waiting: `WouldBlock`
    /// when nothing is.
    pub fn read_queued(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            // Past tokio's cached readiness: it may say "not readable" because the queued bytes
            // are below the threshold. A read here that finds nothing only makes tokio's next
            // read return WouldBlock once and wait for readiness again.
            Socket::Ready(s) => (&*socket2::SockRef::from(&*s)).read(buf),
            Socket::Ticked { sock, .. } => (&*sock).read(buf),
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

/// `setsockopt(SO_RCVLOWAT)`: neither std nor socket2 has it.
fn set_rcvlowat(s: &TcpStream, bytes: usize) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let value = libc::c_int::try_from(bytes.max(1)).unwrap_or(libc::c_int::MAX);
    // SAFETY: the fd is open for the life of `s`, and the option value is a c_int that lives
    // across the call, with its size passed alongside.
    let r = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVLOWAT,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
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

    /// A listener whose connections carry 1400-byte segments, as on a real network. Linux wakes
    /// a reader below the threshold while the receive window is no bigger than one segment,
    /// which with loopback's 64 KiB segments is most of a short test.
    /// (`tests/rtmp_server.rs` has its own copy: integration tests cannot reach this module.)
    fn small_mss_listener() -> tokio::net::TcpListener {
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        s.set_tcp_mss(1400).unwrap();
        let addr: std::net::SocketAddr = "127.0.0.1:0".parse().unwrap();
        s.bind(&addr.into()).unwrap();
        s.listen(16).unwrap();
        s.set_nonblocking(true).unwrap();
        tokio::net::TcpListener::from_std(s.into()).unwrap()
    }

    /// Below the threshold the socket does not wake a reader, `read_queued` still finds the
    /// bytes, and crossing the threshold wakes it.
    #[tokio::test]
    async fn a_wake_threshold_holds_small_writes_until_enough_have_queued() {
        let listener = small_mss_listener();
        let mut c = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (s, _) = listener.accept().await.unwrap();
        let mut sock = Socket::Ready(s);
        let mut buf = [0u8; 4096];
        // A few MB through first: the receive window grows past the segment size.
        let bulk = tokio::spawn(async move {
            for _ in 0..64 {
                c.write_all(&[1u8; 64 * 1024]).await.unwrap();
            }
            c
        });
        let mut through = 0;
        while through < 64 * 64 * 1024 {
            through += sock.read(&mut buf).await.unwrap();
        }
        let mut c = bulk.await.unwrap();
        sock.set_wake_threshold(1000).unwrap();
        c.write_all(&[7u8; 100]).await.unwrap();
        let woke = tokio::time::timeout(Duration::from_millis(200), sock.read(&mut buf)).await;
        assert!(woke.is_err(), "100 bytes < 1000 must not wake the reader");
        assert_eq!(sock.read_queued(&mut buf).unwrap(), 100);
        assert_eq!(
            sock.read_queued(&mut buf).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
        c.write_all(&[8u8; 1500]).await.unwrap();
        let n = tokio::time::timeout(Duration::from_secs(5), sock.read(&mut buf))
            .await
            .expect("1500 bytes >= 1000 wake the reader")
            .unwrap();
        assert!(n > 0 && buf[..n].iter().all(|b| *b == 8), "{n}");
        // The peer closing wakes it whatever is queued.
        let mut rest = 1500 - n;
        while rest > 0 {
            rest -= sock.read(&mut buf).await.unwrap();
        }
        c.write_all(&[9u8; 10]).await.unwrap();
        c.shutdown().await.unwrap();
        let n = tokio::time::timeout(Duration::from_secs(5), sock.read(&mut buf))
            .await
            .expect("EOF wakes the reader")
            .unwrap();
        assert_eq!(n, 10);
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
