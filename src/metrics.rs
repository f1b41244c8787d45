//! Counters for `/metrics`, in the Prometheus text exposition format.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

macro_rules! metrics {
    ($($name:ident : $kind:literal, $help:literal;)*) => {
        /// Process-wide counters and gauges.
        #[derive(Default, Debug)]
        pub struct Metrics {
            $(pub $name: AtomicU64,)*
            /// Closing keyframe reaching the packager -> its segment durable and listed in
            /// live.m3u8, per live protocol: how far behind the publisher players are, beyond
            /// the segment itself.
            pub segment_listing: ListingLatency,
        }

        impl Metrics {
            /// The exposition text.
            pub fn render(&self, live_streams: u64, publishers: u64) -> String {
                let mut s = String::new();
                $(
                    sample(&mut s, stringify!($name), $kind, $help, self.$name.load(Relaxed));
                )*
                sample(&mut s, "live_streams", "gauge", "Streams not yet stopped.", live_streams);
                sample(&mut s, "publishers", "gauge", "Connected live publishers.", publishers);
                self.segment_listing.render(&mut s);
                s
            }
        }
    };
}

metrics! {
    http_requests_total: "counter", "HTTP requests answered.";
    http_errors_total: "counter", "HTTP requests answered with a 4xx or 5xx status.";
    streams_started_total: "counter", "Streams started.";
    streams_stopped_total: "counter", "Streams stopped (VOD created).";
    chunks_accepted_total: "counter", "Uploaded chunks acknowledged.";
    chunks_rejected_total: "counter", "Uploaded chunks refused.";
    chunk_bytes_total: "counter", "Bytes of acknowledged uploaded chunks.";
    chunks_skipped_total: "counter", "Chunk sequences skipped after the gap timeout.";
    segments_written_total: "counter", "Media segments written and recorded.";
    segment_bytes_total: "counter", "Bytes of media segments written.";
    frames_dropped_total: "counter", "Video frames dropped before a run's first keyframe.";
    publishes_total: "counter", "Live publishes accepted (RTMP, WHIP, RTSP).";
    publishes_refused_total: "counter", "Live publishes refused.";
    pins_enqueued_total: "counter", "Files offered to the FilCDN pin queue.";
    pins_total: "counter", "Files pinned (piece on chain, URL switched to FilBeam).";
    pin_errors_total: "counter", "Pin-queue writes or pinned-URL updates that failed.";
    pin_queue_depth: "gauge", "Files in the pin queue not yet pinned.";
    pins_failing: "gauge", "Files in the pin queue in error backoff.";
    pin_latency_ms_sum: "counter", "Sum of enqueue-to-pinned latencies (ms); divide by pins_total.";
    pin_latency_ms_last: "gauge", "Enqueue-to-pinned latency of the last pinned file (ms).";
}

impl Metrics {
    pub fn inc(c: &AtomicU64, by: u64) {
        c.fetch_add(by, Relaxed);
    }
}

/// Upper bounds of the latency histogram buckets, in milliseconds: fine below 50 ms, where a
/// healthy server lists segments, coarse above.
const BUCKETS_MS: [f64; 18] = [
    1.0, 2.0, 3.0, 5.0, 7.5, 10.0, 15.0, 20.0, 30.0, 50.0, 75.0, 100.0, 200.0, 500.0, 1000.0,
    2000.0, 5000.0, 10000.0,
];

/// A Prometheus histogram of durations (cumulative buckets rendered from per-bucket counts).
#[derive(Default, Debug)]
pub struct Histogram {
    /// Observations per bucket (not cumulative); the last slot is `+Inf`.
    counts: [AtomicU64; BUCKETS_MS.len() + 1],
    sum_us: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, d: Duration) {
        let ms = d.as_secs_f64() * 1000.0;
        let i = BUCKETS_MS
            .iter()
            .position(|b| ms <= *b)
            .unwrap_or(BUCKETS_MS.len());
        self.counts[i].fetch_add(1, Relaxed);
        self.sum_us
            .fetch_add(u64::try_from(d.as_micros()).unwrap_or(u64::MAX), Relaxed);
    }

    fn render(&self, s: &mut String, name: &str, labels: &str) {
        let mut cumulative = 0;
        for (i, c) in self.counts.iter().enumerate() {
            cumulative += c.load(Relaxed);
            let le = BUCKETS_MS
                .get(i)
                .map_or_else(|| "+Inf".to_string(), |ms| format!("{}", ms / 1000.0));
            let _ = writeln!(s, "{name}_bucket{{{labels},le=\"{le}\"}} {cumulative}");
        }
        let sum = self.sum_us.load(Relaxed) as f64 / 1e6;
        let _ = writeln!(s, "{name}_sum{{{labels}}} {sum}");
        let _ = writeln!(s, "{name}_count{{{labels}}} {cumulative}");
    }
}

/// [`Histogram`]s of segment-listing latency, one per live protocol.
#[derive(Default, Debug)]
pub struct ListingLatency {
    pub rtmp: Histogram,
    pub whip: Histogram,
    pub rtsp: Histogram,
}

impl ListingLatency {
    /// The histogram of `protocol` (the publisher's protocol name), if it is a live one.
    pub fn of(&self, protocol: &str) -> Option<&Histogram> {
        match protocol {
            "rtmp" => Some(&self.rtmp),
            "whip" => Some(&self.whip),
            "rtsp" => Some(&self.rtsp),
            _ => None,
        }
    }

    fn render(&self, s: &mut String) {
        const NAME: &str = "storef_segment_listing_seconds";
        let _ = writeln!(
            s,
            "# HELP {NAME} From the keyframe that closes a live segment reaching the packager to the segment being durable and listed in live.m3u8."
        );
        let _ = writeln!(s, "# TYPE {NAME} histogram");
        for (p, h) in [
            ("rtmp", &self.rtmp),
            ("whip", &self.whip),
            ("rtsp", &self.rtsp),
        ] {
            h.render(s, NAME, &format!("protocol=\"{p}\""));
        }
    }
}

/// One metric without labels: its HELP and TYPE lines and its value, named `storef_<name>`.
fn sample(s: &mut String, name: &str, kind: &str, help: &str, value: u64) {
    let _ = writeln!(s, "# HELP storef_{name} {help}");
    let _ = writeln!(s, "# TYPE storef_{name} {kind}");
    let _ = writeln!(s, "storef_{name} {value}");
}

/// The WHIP server's transport counters (its UDP socket and ICE-TCP listener).
pub fn render_whip_transport(s: &mut String, t: ingest::whip::TransportStats) {
    for (name, help, v) in [
        (
            "whip_udp_datagrams_total",
            "Datagrams received on the WebRTC UDP socket.",
            t.udp_datagrams,
        ),
        (
            "whip_tcp_connections_total",
            "ICE-TCP connections accepted.",
            t.tcp_connections,
        ),
        (
            "whip_tcp_frames_total",
            "RFC 4571 frames received over ICE-TCP.",
            t.tcp_frames,
        ),
        (
            "whip_tcp_dropped_total",
            "ICE-TCP connections storef closed for what they sent or did not send (a peer closing its own is not counted).",
            t.tcp_dropped,
        ),
        (
            "whip_tcp_timed_out_total",
            "Of the dropped ICE-TCP connections, those silent past the ICE timeout (browsers leave unused candidate pairs so).",
            t.tcp_timed_out,
        ),
    ] {
        sample(s, name, "counter", help, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_renders_cumulative_buckets_sum_and_count() {
        let h = Histogram::default();
        for ms in [0.5, 4.0, 5.0, 12.0, 20_000.0] {
            h.observe(Duration::from_secs_f64(ms / 1000.0));
        }
        let mut s = String::new();
        h.render(&mut s, "x", "protocol=\"rtmp\"");
        let line = |le: &str| {
            s.lines()
                .find(|l| l.starts_with(&format!("x_bucket{{protocol=\"rtmp\",le=\"{le}\"}}")))
                .unwrap_or_else(|| panic!("no bucket {le} in {s}"))
                .rsplit(' ')
                .next()
                .unwrap()
                .to_string()
        };
        assert_eq!(line("0.001"), "1");
        assert_eq!(line("0.003"), "1");
        assert_eq!(line("0.005"), "3");
        assert_eq!(line("0.015"), "4");
        assert_eq!(line("10"), "4");
        assert_eq!(line("+Inf"), "5");
        assert!(s.contains("x_count{protocol=\"rtmp\"} 5\n"), "{s}");
        assert!(s.contains("x_sum{protocol=\"rtmp\"} 20.0215\n"), "{s}");
    }
}
