//! Counters for `/metrics`, in the Prometheus text exposition format.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

macro_rules! metrics {
    ($($name:ident : $kind:literal, $help:literal;)*) => {
        /// Process-wide counters and gauges.
        #[derive(Default, Debug)]
        pub struct Metrics { $(pub $name: AtomicU64,)* }

        impl Metrics {
            /// The exposition text.
            pub fn render(&self, live_streams: u64, publishers: u64) -> String {
                let mut s = String::new();
                $(
                    let _ = writeln!(s, "# HELP storef_{} {}", stringify!($name), $help);
                    let _ = writeln!(s, "# TYPE storef_{} {}", stringify!($name), $kind);
                    let _ = writeln!(s, "storef_{} {}", stringify!($name), self.$name.load(Relaxed));
                )*
                let _ = writeln!(s, "# HELP storef_live_streams Streams not yet stopped.");
                let _ = writeln!(s, "# TYPE storef_live_streams gauge");
                let _ = writeln!(s, "storef_live_streams {live_streams}");
                let _ = writeln!(s, "# HELP storef_publishers Connected live publishers.");
                let _ = writeln!(s, "# TYPE storef_publishers gauge");
                let _ = writeln!(s, "storef_publishers {publishers}");
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
