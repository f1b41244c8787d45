//! H.264 RTP depacketizer (RFC 6184) with a reorder buffer: RTP packets in, access units out.
//!
//! Drain contract: after every [`H264Depacketizer::push`] or [`H264Depacketizer::handle_timeout`]
//! call [`H264Depacketizer::pull`] until it returns `None`. It yields access units in RTP order
//! and `Err(Loss)` where packets never came (the caller then asks the sender for a keyframe, RFC 4585
//! §6.3.1 PLI).
//!
//! Why a reorder buffer here: str0m (in RTP mode) hands over packets as they arrive, NACKs the gaps
//! and passes the retransmissions (unwrapped from RTX, RFC 4588) on with their original sequence
//! number, usually one round trip later. So a gap is held open for [`MAX_WAIT`] or
//! [`MAX_PACKETS`], whichever comes first, before it is declared lost.
//!
//! After a loss every access unit up to the next IDR is dropped: a P picture that references a
//! lost picture decodes to garbage, and HLS segments must start on a clean IDR anyway.
//! Access units start at an RTP timestamp change (all packets of one picture share it, RFC 6184
//! §5.1) and end at the marker bit. STAP-A (§5.7.1) and FU-A (§5.8) are taken, as are single NAL
//! unit packets (packetization-mode 0, §6.2). Access unit delimiters and filler data are dropped:
//! the fMP4 samples do not need them.

use bytes::{Bytes, BytesMut};
use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

/// How long a sequence gap waits for a retransmission before it counts as lost.
pub const MAX_WAIT: Duration = Duration::from_millis(250);
/// How many packets may queue behind a gap before it counts as lost (an IDR of a 4 Mbit/s
/// stream is around 100 packets).
pub const MAX_PACKETS: usize = 400;

/// One RTP packet, its sequence number and timestamp already extended to 64 bits (str0m does that).
#[derive(Debug, Clone)]
pub struct RtpIn {
    pub seq: u64,
    pub timestamp: u64,
    pub marker: bool,
    pub payload: Bytes,
    pub arrival: Instant,
}

/// One picture: its NAL units (header byte included, no start codes, no length prefix).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessUnit {
    pub timestamp: u64,
    pub nals: Vec<Bytes>,
    /// Contains an IDR slice (NAL type 5).
    pub idr: bool,
    /// Arrival of its first packet (for the arrival-time clock when the sender sends no SR).
    pub arrival: Instant,
}

/// What went wrong with the stream; each names the RTP sequence numbers concerned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum H264Error {
    #[error("RTP packets {first}..={last} lost")]
    Loss { first: u64, last: u64 },
}

struct Pending {
    nals: Vec<Bytes>,
    timestamp: u64,
    arrival: Instant,
    /// A packet of it is known to be missing.
    broken: bool,
}

/// See the module docs.
pub struct H264Depacketizer {
    buf: BTreeMap<u64, RtpIn>,
    next_seq: Option<u64>,
    cur: Option<Pending>,
    /// FU-A reassembly of the NAL unit in flight.
    frag: Option<BytesMut>,
    /// Nothing is emitted until an IDR arrives (start of stream, and after a loss).
    wait_idr: bool,
    /// The packet before a gap ended an access unit (marker bit).
    last_marker: bool,
    last_timestamp: Option<u64>,
    out: VecDeque<Result<AccessUnit, H264Error>>,
    /// Access units dropped because they came before an IDR or were damaged.
    pub dropped: u64,
    /// Packets that came after their gap had been given up on.
    pub late: u64,
}

impl Default for H264Depacketizer {
    fn default() -> Self {
        Self::new()
    }
}

impl H264Depacketizer {
    pub fn new() -> Self {
        H264Depacketizer {
            buf: BTreeMap::new(),
            next_seq: None,
            cur: None,
            frag: None,
            wait_idr: true,
            last_marker: true,
            last_timestamp: None,
            out: VecDeque::new(),
            dropped: 0,
            late: 0,
        }
    }

    /// Whether an IDR is awaited (the caller should have asked for one).
    pub fn waiting_for_keyframe(&self) -> bool {
        self.wait_idr
    }

    pub fn push(&mut self, pkt: RtpIn) {
        let now = pkt.arrival;
        match self.next_seq {
            Some(n) if pkt.seq < n => {
                self.late += 1;
                return;
            }
            None => self.next_seq = Some(pkt.seq),
            _ => {}
        }
        self.buf.insert(pkt.seq, pkt);
        self.drain(now);
    }

    /// Gives up on gaps older than [`MAX_WAIT`] when no packet arrives to trigger it.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.drain(now);
    }

    /// The next access unit or loss report, in order.
    pub fn pull(&mut self) -> Option<Result<AccessUnit, H264Error>> {
        self.out.pop_front()
    }

    fn drain(&mut self, now: Instant) {
        loop {
            let Some(next) = self.next_seq else { return };
            if let Some(pkt) = self.buf.remove(&next) {
                self.next_seq = Some(next + 1);
                self.depacketize(pkt);
                continue;
            }
            let Some((&first, oldest)) = self.buf.iter().next() else {
                return;
            };
            let (o_ts, o_arrival, o_starts) = (
                oldest.timestamp,
                oldest.arrival,
                starts_nal(&oldest.payload),
            );
            let waited = now.saturating_duration_since(o_arrival);
            if self.buf.len() <= MAX_PACKETS && waited < MAX_WAIT {
                return;
            }
            // Give up on next..first.
            self.out.push_back(Err(H264Error::Loss {
                first: next,
                last: first - 1,
            }));
            self.frag = None;
            if let Some(cur) = self.cur.as_mut() {
                cur.broken = true;
            }
            let resumes_clean = self.last_marker && self.last_timestamp != Some(o_ts) && o_starts;
            if !resumes_clean {
                // The packet after the gap may continue a picture whose start was lost.
                if self.cur.as_ref().map(|c| c.timestamp) != Some(o_ts) {
                    self.finish();
                    self.cur = Some(Pending {
                        nals: Vec::new(),
                        timestamp: o_ts,
                        arrival: o_arrival,
                        broken: true,
                    });
                }
            }
            self.wait_idr = true;
            self.next_seq = Some(first);
        }
    }

    fn depacketize(&mut self, pkt: RtpIn) {
        if self
            .cur
            .as_ref()
            .is_some_and(|c| c.timestamp != pkt.timestamp)
        {
            self.finish();
        }
        let cur = self.cur.get_or_insert_with(|| Pending {
            nals: Vec::new(),
            timestamp: pkt.timestamp,
            arrival: pkt.arrival,
            broken: false,
        });
        self.last_timestamp = Some(pkt.timestamp);
        self.last_marker = pkt.marker;
        let p = &pkt.payload;
        let Some(&header) = p.first() else {
            cur.broken = true;
            return;
        };
        match header & 0x1f {
            1..=23 => push_nal(cur, pkt.payload.clone()),
            24 => {
                // STAP-A: 16-bit size + NAL unit, repeated.
                let mut at = 1;
                while at < p.len() {
                    let size = match p.get(at..at + 2) {
                        Some(s) => u16::from_be_bytes([s[0], s[1]]) as usize,
                        None => {
                            cur.broken = true;
                            break;
                        }
                    };
                    at += 2;
                    if size == 0 || at + size > p.len() {
                        cur.broken = true;
                        break;
                    }
                    push_nal(cur, p.slice(at..at + size));
                    at += size;
                }
            }
            28 => {
                let Some(&fu) = p.get(1) else {
                    cur.broken = true;
                    return;
                };
                let (start, end) = (fu & 0x80 != 0, fu & 0x40 != 0);
                let body = p.slice(2..);
                if start {
                    if self.frag.is_some() {
                        cur.broken = true; // the previous NAL never got its end fragment
                    }
                    let mut b = BytesMut::with_capacity(body.len() * 8 + 1);
                    b.extend_from_slice(&[(header & 0xe0) | (fu & 0x1f)]);
                    b.extend_from_slice(&body);
                    self.frag = Some(b);
                } else if let Some(b) = self.frag.as_mut() {
                    b.extend_from_slice(&body);
                } else {
                    cur.broken = true;
                }
                if end {
                    if let Some(b) = self.frag.take() {
                        push_nal(cur, b.freeze());
                    }
                }
            }
            // STAP-B, MTAP16/24, FU-B are interleaved mode only (never negotiated); 0/30/31 reserved.
            _ => cur.broken = true,
        }
        if pkt.marker {
            self.finish();
        }
    }

    fn finish(&mut self) {
        let Some(cur) = self.cur.take() else { return };
        if self.frag.take().is_some() {
            // A FU-A without its end fragment: the picture is incomplete.
            self.dropped += 1;
            self.wait_idr = true;
            return;
        }
        if cur.nals.is_empty() {
            return;
        }
        let idr = cur
            .nals
            .iter()
            .any(|n| n.first().map(|h| h & 0x1f) == Some(5));
        if cur.broken || (self.wait_idr && !idr) {
            self.dropped += 1;
            if cur.broken {
                self.wait_idr = true;
            }
            return;
        }
        self.wait_idr = false;
        self.out.push_back(Ok(AccessUnit {
            timestamp: cur.timestamp,
            nals: parameter_sets_first(cur.nals),
            idr,
            arrival: cur.arrival,
        }));
    }
}

fn push_nal(cur: &mut Pending, nal: Bytes) {
    match nal.first().map(|h| h & 0x1f) {
        // AUD (9) and filler data (12) carry nothing an MP4 sample needs.
        Some(9) | Some(12) | None => {}
        Some(_) => cur.nals.push(nal),
    }
}

/// Moves SPS/PPS to the front of the access unit, each distinct one once.
///
/// GStreamer's `rtph264pay config-interval=-1` sends SPS+PPS before *every* IDR slice, so an x264
/// picture cut into slices (`tune=zerolatency` uses sliced threads) arrives as SPS PPS slice0 SPS PPS
/// slice1. An SPS after a slice starts a new access unit (ITU-T H.264 §7.4.1.2.3), so decoders
/// would split the picture in two; parameter sets belong before the first VCL NAL unit.
fn parameter_sets_first(nals: Vec<Bytes>) -> Vec<Bytes> {
    let kind = |n: &Bytes| n.first().map(|h| h & 0x1f);
    if !nals
        .iter()
        .skip_while(|n| matches!(kind(n), Some(7 | 8)))
        .any(|n| matches!(kind(n), Some(7 | 8)))
    {
        return nals;
    }
    let mut out: Vec<Bytes> = Vec::with_capacity(nals.len());
    for t in [7, 8] {
        for n in nals.iter().filter(|n| kind(n) == Some(t)) {
            if !out.contains(n) {
                out.push(n.clone());
            }
        }
    }
    out.extend(nals.into_iter().filter(|n| !matches!(kind(n), Some(7 | 8))));
    out
}

/// Whether a payload begins a NAL unit (not an FU-A continuation).
fn starts_nal(payload: &[u8]) -> bool {
    match payload.first().map(|h| h & 0x1f) {
        Some(1..=24) => true,
        Some(28) => payload.get(1).is_some_and(|fu| fu & 0x80 != 0),
        _ => false,
    }
}

/// The NAL units of an access unit as one MP4 sample: each prefixed by its 4-byte length
/// (ISO/IEC 14496-15 §5.3.2, `lengthSizeMinusOne` = 3 in [`super::avc::build_avcc`]).
pub fn to_length_prefixed(nals: &[Bytes]) -> Bytes {
    let mut b = BytesMut::with_capacity(nals.iter().map(|n| n.len() + 4).sum());
    for n in nals {
        b.extend_from_slice(&(n.len() as u32).to_be_bytes());
        b.extend_from_slice(n);
    }
    b.freeze()
}

#[cfg(test)]
#[path = "h264_tests.rs"]
mod tests;
