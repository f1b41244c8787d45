//! Segment-listing latency for `rtmp_load --latency-playlist`: the time from the keyframe that
//! closes a segment leaving the publisher to that segment appearing in the stream's playlist.
//!
//! Both servers measured cut on the first video keyframe at or after the target duration (storef:
//! `[hls] target_duration`; nginx-rtmp: `hls_fragment`), so the publisher knows which keyframes close
//! a segment without asking the server: the k-th such keyframe closes the k-th segment, and the
//! segment is listed once the playlist holds k segments in total (`EXT-X-MEDIA-SEQUENCE` plus the
//! `#EXTINF` lines, because nginx-rtmp's playlist slides and storef's does not).
//!
//! Polling only runs while a closing keyframe is waiting to be seen listed, every `poll` interval,
//! so the server under test answers a handful of requests per segment rather than a constant
//! stream of them; the moment recorded is when the answer that first shows the segment was read
//! (an upper bound: resolution is the poll interval plus one request).

use std::collections::VecDeque;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Watches one publisher's video tags and reports when each segment-closing keyframe was sent.
pub struct KeyframeClock {
    target_ms: u32,
    segment_start_ms: Option<u32>,
    sent: mpsc::UnboundedSender<Instant>,
}

impl KeyframeClock {
    /// Call after a video tag (FLV `VIDEODATA` body) with RTMP timestamp `ts_ms` was written.
    pub fn on_video_sent(&mut self, ts_ms: u32, body: &[u8], at: Instant) {
        // FLV VIDEODATA (E.4.3.1): frame type 1 = keyframe in the high nibble, codec 7 = AVC,
        // AVCPacketType 1 = NALUs (0 is the sequence header, which is no frame).
        let is_key_nalu = matches!(body, [b0, 1, ..] if b0 >> 4 == 1 && b0 & 0x0f == 7);
        if !is_key_nalu {
            return;
        }
        match self.segment_start_ms {
            None => self.segment_start_ms = Some(ts_ms),
            Some(start) if ts_ms.wrapping_sub(start) >= self.target_ms => {
                self.segment_start_ms = Some(ts_ms);
                let _ = self.sent.send(at);
            }
            Some(_) => {}
        }
    }
}

/// What one sampled publisher's playlist showed.
#[derive(Debug, Default)]
pub struct Samples {
    pub latencies: Vec<Duration>,
    /// Closing keyframes whose segment was not listed within the give-up time after publishing ended.
    pub unlisted: usize,
    /// Playlist requests that failed (connection refused, non-200, unreadable).
    pub poll_errors: usize,
    pub polls: usize,
}

/// Starts watching `playlist` (`http://host:port/path` or a file path); returns the clock to feed
/// from the publisher and the task that resolves to the samples once the clock is dropped.
pub fn watch(
    playlist: String,
    target_ms: u32,
    poll: Duration,
    give_up: Duration,
) -> (KeyframeClock, tokio::task::JoinHandle<Samples>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let clock = KeyframeClock {
        target_ms,
        segment_start_ms: None,
        sent: tx,
    };
    (
        clock,
        tokio::spawn(poll_playlist(playlist, rx, poll, give_up)),
    )
}

async fn poll_playlist(
    playlist: String,
    mut sent: mpsc::UnboundedReceiver<Instant>,
    poll: Duration,
    give_up: Duration,
) -> Samples {
    let mut s = Samples::default();
    let mut pending: VecDeque<Instant> = VecDeque::new();
    let mut matched = 0usize;
    let mut closed_at: Option<Instant> = None;
    loop {
        if pending.is_empty() && closed_at.is_none() {
            match sent.recv().await {
                Some(t) => pending.push_back(t),
                None => closed_at = Some(Instant::now()),
            }
        }
        while let Ok(t) = sent.try_recv() {
            pending.push_back(t);
        }
        if closed_at.is_none() && sent.is_closed() && sent.is_empty() {
            closed_at = Some(Instant::now());
        }
        if pending.is_empty() {
            if closed_at.is_some() {
                break;
            }
            continue;
        }
        if closed_at.is_some_and(|c| c.elapsed() > give_up) {
            s.unlisted += pending.len();
            break;
        }
        s.polls += 1;
        match fetch(&playlist).await {
            Some(text) => {
                let now = Instant::now();
                let listed = listed_segments(&text);
                while listed > matched {
                    let Some(t) = pending.pop_front() else { break };
                    s.latencies.push(now.saturating_duration_since(t));
                    matched += 1;
                }
            }
            None => s.poll_errors += 1,
        }
        if !pending.is_empty() {
            tokio::time::sleep(poll).await;
        }
    }
    s
}

/// Segments the playlist has ever listed: the media sequence number of its first entry plus the
/// entries (RFC 8216 §4.3.3.2, §4.3.2.1).
pub fn listed_segments(m3u8: &str) -> usize {
    let mut seq = 0usize;
    let mut n = 0usize;
    for line in m3u8.lines() {
        if let Some(v) = line.strip_prefix("#EXT-X-MEDIA-SEQUENCE:") {
            seq = v.trim().parse().unwrap_or(0);
        } else if line.starts_with("#EXTINF:") {
            n += 1;
        }
    }
    seq + n
}

async fn fetch(playlist: &str) -> Option<String> {
    match playlist.strip_prefix("http://") {
        Some(rest) => http_get(rest).await,
        None => tokio::fs::read_to_string(playlist).await.ok(),
    }
}

/// One HTTP/1.1 GET with `Connection: close` (no HTTP client crate in `ingest`'s dependencies; the
/// playlist is small and a fresh connection per poll is what an HLS player without keep-alive does).
async fn http_get(host_and_path: &str) -> Option<String> {
    let (host, path) = match host_and_path.split_once('/') {
        Some((h, p)) => (h, format!("/{p}")),
        None => (host_and_path, "/".to_string()),
    };
    let mut conn = tokio::net::TcpStream::connect(host).await.ok()?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    conn.write_all(req.as_bytes()).await.ok()?;
    let mut buf = Vec::with_capacity(4096);
    conn.read_to_end(&mut buf).await.ok()?;
    let text = String::from_utf8_lossy(&buf);
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status_ok = head
        .lines()
        .next()
        .is_some_and(|l| l.split_whitespace().nth(1) == Some("200"));
    status_ok.then(|| body.to_string())
}

/// Every sampled publisher's latencies together.
#[derive(Debug)]
pub struct Summary {
    pub samples: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub unlisted: usize,
    pub poll_errors: usize,
    pub polls: usize,
}

pub fn summary(all: &[Samples]) -> Summary {
    let mut l: Vec<Duration> = all
        .iter()
        .flat_map(|s| s.latencies.iter().copied())
        .collect();
    l.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let pick = |q: f64| {
        l.get(((l.len() as f64 - 1.0) * q).round() as usize)
            .copied()
            .map_or(f64::NAN, ms)
    };
    Summary {
        samples: l.len(),
        p50_ms: pick(0.5),
        p99_ms: pick(0.99),
        max_ms: l.last().copied().map_or(f64::NAN, ms),
        unlisted: all.iter().map(|s| s.unlisted).sum(),
        poll_errors: all.iter().map(|s| s.poll_errors).sum(),
        polls: all.iter().map(|s| s.polls).sum(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_sliding_and_event_playlists() {
        let event = "#EXTM3U\n#EXT-X-MEDIA-SEQUENCE:0\n#EXTINF:2.0,\na.m4s\n#EXTINF:2.0,\nb.m4s\n";
        assert_eq!(listed_segments(event), 2);
        let sliding =
            "#EXTM3U\n#EXT-X-MEDIA-SEQUENCE:7\n#EXTINF:2.0,\nk-7.ts\n#EXTINF:2.0,\nk-8.ts\n";
        assert_eq!(listed_segments(sliding), 9);
        assert_eq!(listed_segments("#EXTM3U\n"), 0);
    }

    #[tokio::test]
    async fn only_keyframes_at_or_after_target_close_a_segment() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let mut c = KeyframeClock {
            target_ms: 2000,
            segment_start_ms: None,
            sent: tx,
        };
        let key = [0x17u8, 1, 0, 0, 0];
        let inter = [0x27u8, 1, 0, 0, 0];
        let seq_header = [0x17u8, 0, 0, 0, 0];
        let now = Instant::now();
        c.on_video_sent(0, &seq_header, now);
        c.on_video_sent(0, &key, now); // opens the first segment
        c.on_video_sent(1000, &key, now); // too early: no cut
        c.on_video_sent(2000, &inter, now);
        c.on_video_sent(2000, &key, now); // closes segment 1
        c.on_video_sent(3999, &key, now); // too early
        c.on_video_sent(4001, &key, now); // closes segment 2
        drop(c);
        let mut n = 0;
        while rx.recv().await.is_some() {
            n += 1;
        }
        assert_eq!(n, 2);
    }
}
