//! RTP timestamps → decode timestamps of one publish, with audio/video sync.
//!
//! Each RTP stream starts at a random timestamp (RFC 3550 §5.1), so the two tracks of a publish
//! have to be placed on one timeline. The first packet of each track is placed at its arrival time
//! (relative to the first packet of the publish); within a track the RTP clock rules, so the
//! encoder's frame spacing survives network jitter.
//!
//! Arrival time is only as good as the two streams' send queues. When the sender's RTCP sender
//! reports (RFC 3550 §6.4.1: an NTP wallclock time and the RTP timestamp of the same instant) are
//! known for both tracks, the audio timeline is pulled towards the position the reports give it,
//! at most [`SLEW_PER_FRAME`] per audio frame so timestamps stay monotonic and no audible jump
//! appears. Chromium and GStreamer send SRs; senders without them (OBS sends none) keep the
//! arrival-time placement.

use std::time::{Instant, SystemTime};

/// The largest correction applied to the audio timeline per audio packet, in 48 kHz ticks (0.5 ms:
/// 25 ms per second of 20 ms Opus frames).
pub const SLEW_PER_FRAME: i64 = 24;

pub const VIDEO_RATE: u32 = 90_000;
pub const AUDIO_RATE: u32 = 48_000;

#[derive(Debug, Clone, Copy)]
struct Track {
    rate: u32,
    /// Extended RTP timestamp of the first packet.
    rtp0: u64,
    /// The decode timestamp given to `rtp0`.
    base: i64,
    last: Option<i64>,
    /// Last sender report: wallclock and the 32-bit RTP timestamp of the same instant.
    sr: Option<(SystemTime, u32)>,
}

impl Track {
    fn raw(&self, rtp: u64) -> i64 {
        self.base + rtp.wrapping_sub(self.rtp0) as i64
    }

    /// Wallclock seconds (relative to the UNIX epoch) of `rtp` per the last SR.
    fn wallclock(&self, rtp: u64) -> Option<f64> {
        let (ntp, sr_rtp) = self.sr?;
        let ntp = ntp
            .duration_since(SystemTime::UNIX_EPOCH)
            .ok()?
            .as_secs_f64();
        // 32-bit difference: valid within ±2^31 ticks of the report, hours at these rates.
        let delta = (rtp as u32).wrapping_sub(sr_rtp) as i32 as f64;
        Some(ntp + delta / self.rate as f64)
    }
}

/// Which track a timestamp is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    Video,
    Audio,
}

/// See the module docs.
#[derive(Debug, Default)]
pub struct AvClock {
    origin: Option<Instant>,
    video: Option<Track>,
    audio: Option<Track>,
}

impl AvClock {
    pub fn new() -> Self {
        Self::default()
    }

    fn track(&mut self, which: Which) -> &mut Option<Track> {
        match which {
            Which::Video => &mut self.video,
            Which::Audio => &mut self.audio,
        }
    }

    /// Records a sender report of one track (RTP timestamp as sent, 32 bits).
    pub fn sender_report(&mut self, which: Which, ntp: SystemTime, rtp: u32) {
        if let Some(t) = self.track(which).as_mut() {
            t.sr = Some((ntp, rtp));
        }
    }

    /// The decode timestamp of a frame with extended RTP timestamp `rtp` that arrived at
    /// `arrival`, in the track's rate (90 kHz video, 48 kHz audio). Strictly increasing per track.
    pub fn dts(&mut self, which: Which, rtp: u64, arrival: Instant) -> i64 {
        let origin = *self.origin.get_or_insert(arrival);
        let rate = match which {
            Which::Video => VIDEO_RATE,
            Which::Audio => AUDIO_RATE,
        };
        let slot = self.track(which);
        let t = slot.get_or_insert_with(|| {
            let since = arrival.saturating_duration_since(origin);
            Track {
                rate,
                rtp0: rtp,
                base: (since.as_secs_f64() * rate as f64).round() as i64,
                last: None,
                sr: None,
            }
        });
        let mut t = *t;
        if which == Which::Audio {
            if let Some(target) = self.audio_target(&t, rtp) {
                let err = target - t.raw(rtp);
                t.base += err.clamp(-SLEW_PER_FRAME, SLEW_PER_FRAME);
            }
        }
        let mut dts = t.raw(rtp);
        if let Some(last) = t.last {
            if dts <= last {
                dts = last + 1;
            }
        }
        t.last = Some(dts);
        *self.track(which) = Some(t);
        dts
    }

    /// Where the sender reports put audio timestamp `rtp`: the video timeline's position of the
    /// same wallclock instant, in 48 kHz.
    fn audio_target(&self, audio: &Track, rtp: u64) -> Option<i64> {
        let video = self.video.as_ref()?;
        let wall = audio.wallclock(rtp)?;
        let (v_ntp, v_sr_rtp) = video.sr?;
        let v_ntp = v_ntp
            .duration_since(SystemTime::UNIX_EPOCH)
            .ok()?
            .as_secs_f64();
        // Video RTP ticks from the video SR to the audio instant, then to the video timeline.
        let v_ticks_from_sr = (wall - v_ntp) * VIDEO_RATE as f64;
        let sr_on_timeline =
            video.base as f64 + (v_sr_rtp.wrapping_sub(video.rtp0 as u32) as i32) as f64;
        let video_dts = sr_on_timeline + v_ticks_from_sr;
        let target = video_dts * AUDIO_RATE as f64 / VIDEO_RATE as f64;
        target.is_finite().then_some(target.round() as i64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn arrival_places_first_packets_and_rtp_rules_after() {
        let t0 = Instant::now();
        let mut c = AvClock::new();
        assert_eq!(c.dts(Which::Video, 1_000_000, t0), 0);
        // Audio first arrives 100 ms later.
        assert_eq!(
            c.dts(Which::Audio, 5_000, t0 + Duration::from_millis(100)),
            4800
        );
        // Jittery arrival does not matter afterwards.
        assert_eq!(
            c.dts(Which::Video, 1_003_000, t0 + Duration::from_millis(90)),
            3000
        );
        assert_eq!(
            c.dts(Which::Audio, 5_960, t0 + Duration::from_millis(101)),
            5760
        );
    }

    #[test]
    fn timestamps_stay_strictly_increasing() {
        let t0 = Instant::now();
        let mut c = AvClock::new();
        let a = c.dts(Which::Video, 500, t0);
        let b = c.dts(Which::Video, 500, t0);
        let d = c.dts(Which::Video, 400, t0);
        assert!(a < b && b < d);
    }

    #[test]
    fn sender_reports_pull_audio_into_sync() {
        let t0 = Instant::now();
        let wall = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let mut c = AvClock::new();
        // Video rtp 0 and audio rtp 0 were captured at the same instant `wall`, but audio's first
        // packet arrived 60 ms late, so arrival placement puts it 60 ms (2880 ticks) too late.
        c.dts(Which::Video, 0, t0);
        let first = c.dts(Which::Audio, 0, t0 + Duration::from_millis(60));
        assert_eq!(first, 2880);
        c.sender_report(Which::Video, wall, 0);
        c.sender_report(Which::Audio, wall, 0);
        let mut last = first;
        let mut dts = 0;
        for i in 1..400u64 {
            dts = c.dts(Which::Audio, i * 960, t0);
            assert!(dts > last);
            assert!(dts - last >= 960 - SLEW_PER_FRAME && dts - last <= 960 + SLEW_PER_FRAME);
            last = dts;
        }
        // Converged: audio rtp N*960 sits at N*960 on the timeline.
        assert_eq!(dts, 399 * 960);
    }
}
