//! The segmenter: frames in, init and media segments out (sans-IO).
//!
//! Contract: `begin_run(tracks)`, then `push(frame)` any number of times, `flush()` at the end of
//! an uploaded chunk or of the stream; after every call drain [`Segmenter::poll_output`] until it
//! returns `None`. Nothing here blocks, allocates per byte of payload or reads a clock.
//!
//! Timeline. Every run (one upload chunk, one publisher connection) is rebased onto one output
//! timeline: the run's earliest *decode* time (over all its tracks) lands exactly where the
//! previous output ended, so `tfdt` only ever grows (ISO/IEC 14496-12 §8.8.12 requires the
//! decode timeline of a track to be monotonic). Audio and video of a run are shifted by the same
//! amount of seconds, so their offset inside the run is kept (±1 tick of rounding).
//!
//! Cutting (RFC 8216 §3 and the Apple HLS authoring spec: every segment starts with an IDR):
//! a segment closes when a video keyframe arrives at or after the target duration; audio frames
//! go to the segment whose video span contains their decode time, so a closed segment waits for
//! audio to catch up (bounded by [`MAX_AUDIO_WAIT_SECS`] of video). Audio-only runs cut on time.
//!
//! Durations: a frame's duration is the next frame's `dts` minus its own whenever the next frame
//! of the run is known — even when the source gave `duration`, so a source whose durations and
//! timestamps disagree cannot drift audio against video. `frame.duration` is used for the last
//! frame of a run (end of an uploaded chunk), else the previous frame's duration; and for an
//! audio frame that reaches past a cut, so the keyframe that closes a live segment lists it at
//! once instead of an audio frame later.

use std::collections::VecDeque;
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::fmp4::{self, Fmp4Error, FragSample, TrackRun};
use crate::media::{Codec, MediaFrame, Track, TrackKind};

/// How much video past a cut the segmenter keeps a closed segment waiting for the audio that
/// belongs before the cut. Live publishers interleave within a few hundred ms (Opus DTX sends a
/// packet every 400 ms); a declared audio track that never sends anything costs this much extra
/// latency. Ingests must push frames interleaved by decode time (an MP4 demuxer merging its
/// tracks by dts): audio pushed more than this behind its video still plays, but lands in a
/// later segment than its time.
pub const MAX_AUDIO_WAIT_SECS: f64 = 4.0;
/// Audio more than this far ahead of the last video frame means the video stalled (a muted
/// camera, a broken encoder): the open segment is emitted and audio goes on in audio-only
/// segments until the next keyframe.
pub const MAX_VIDEO_STALL_SECS: f64 = 10.0;
/// Audio kept while a run waits for its first video keyframe; older audio is dropped.
pub const MAX_PREROLL_SECS: f64 = 10.0;

/// Segmenter settings.
#[derive(Clone, Debug)]
pub struct SegmenterConfig {
    /// Segments close on the first keyframe at or after this much media.
    pub target_duration: Duration,
}

/// Where one track's output ended, exactly, in its own timescale.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct TrackEnd {
    pub kind: TrackKind,
    pub timescale: u32,
    /// Decode time just after the track's last emitted frame.
    pub end: u64,
}

/// Everything needed to continue a stream after a restart.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ResumePoint {
    /// Media sequence number of the next segment.
    pub next_sequence: u64,
    pub next_init_id: u32,
    pub current_init: Option<(u32, Vec<Track>)>,
    /// Where the next run starts on the output timeline (the latest track end), in seconds.
    pub timeline_end_secs: f64,
    /// The exact per-track ends behind `timeline_end_secs`.
    #[serde(default)]
    pub track_ends: Vec<TrackEnd>,
    /// A discontinuity was requested that no segment has carried yet.
    #[serde(default)]
    pub discontinuity_pending: bool,
    #[serde(default)]
    pub dropped_frames: u64,
}

/// Why a call was refused. The segmenter stays usable after any of them.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SegmenterError {
    #[error("push before begin_run")]
    NoRun,
    #[error("{kind:?} frame, but the run has no {kind:?} track")]
    UnknownTrack { kind: TrackKind },
    #[error("{kind:?} frame at dts {dts} goes back before the previous frame at {previous}")]
    NonMonotonic {
        kind: TrackKind,
        dts: i64,
        previous: i64,
    },
    #[error("{kind:?} frame of {len} bytes is too large for one sample")]
    FrameTooLarge { kind: TrackKind, len: usize },
    #[error("invalid track list: {reason}")]
    InvalidTracks { reason: &'static str },
    #[error("init segment: {0}")]
    Init(#[source] Fmp4Error),
    #[error("media segment {sequence}: {source}")]
    Segment {
        sequence: u64,
        #[source]
        source: Fmp4Error,
    },
}

/// What the segmenter produces, in the order it must be stored.
#[derive(Debug, Clone)]
pub enum Output {
    Init(InitSegment),
    Segment(MediaSegment),
}

/// An init segment (`ftyp` + `moov`).
#[derive(Debug, Clone)]
pub struct InitSegment {
    pub id: u32,
    pub tracks: Vec<Track>,
    pub data: Bytes,
}

/// One media segment: `header` followed by `payloads` is the whole file.
#[derive(Debug, Clone)]
pub struct MediaSegment {
    pub sequence: u64,
    pub init_id: u32,
    pub discontinuity: bool,
    /// Output-timeline decode time of its first frame (video if it has video).
    pub start_secs: f64,
    /// Video duration (audio if audio-only).
    pub duration_secs: f64,
    /// `styp` + `moof` + `mdat` box header.
    pub header: Bytes,
    /// The frame data in `mdat` order: the frames' own buffers, not copies.
    pub payloads: Vec<Bytes>,
    pub video_frames: u32,
    pub audio_frames: u32,
    pub keyframe_start: bool,
}

impl MediaSegment {
    /// Bytes of the whole segment file.
    pub fn len(&self) -> u64 {
        self.header.len() as u64 + self.payloads.iter().map(|p| p.len() as u64).sum::<u64>()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A frame on the output timeline with its final duration.
#[derive(Debug, Clone)]
struct OutFrame {
    dts: u64,
    duration: u32,
    cts: i32,
    keyframe: bool,
    data: Bytes,
}

/// Per-track state of the current run.
#[derive(Debug)]
struct TrackState {
    kind: TrackKind,
    timescale: u32,
    /// Output decode time of the run's origin.
    base: u64,
    /// Input decode time of the run's origin, in this track's timescale.
    origin: i64,
    /// The newest frame, waiting for the next one to know its duration.
    last: Option<MediaFrame>,
    /// Input decode time of the newest frame when it was finished early, from its own duration
    /// ([`finish_audio_early`]): the next frame must not start before it.
    early: Option<i64>,
    prev_duration: Option<u32>,
    default_duration: u32,
}

impl TrackState {
    fn out_dts(&self, dts: i64) -> Option<u64> {
        let rel = dts.checked_sub(self.origin)?;
        let rel = u64::try_from(rel).ok()?;
        self.base.checked_add(rel)
    }

    fn secs(&self, ticks: u64) -> f64 {
        ticks as f64 / f64::from(self.timescale)
    }
}

#[derive(Debug, Default)]
struct SegBuild {
    video: Vec<OutFrame>,
    /// Video decode time where this segment ends (the next keyframe), once closed.
    end: Option<u64>,
}

#[derive(Debug)]
struct Run {
    start_secs: f64,
    /// The avcC's SPS and PPS as length-prefixed NAL units, put in front of each segment's first
    /// keyframe unless it carries its own: ffmpeg's HLS reader does not re-read `avcC` when
    /// `EXT-X-MAP` changes, and a player switching inits mid-stream decodes on either way.
    param_sets: Option<(Bytes, usize)>,
    video: Option<TrackState>,
    audio: Option<TrackState>,
    /// Origin fixed (first keyframe seen, or first audio frame of an audio-only run).
    mapped: bool,
    pre_audio: VecDeque<MediaFrame>,
    /// Video dropped until a keyframe (after a stall).
    need_keyframe: bool,
    segments: VecDeque<SegBuild>,
    audio_q: VecDeque<OutFrame>,
}

/// Cuts frames into keyframe-aligned fMP4 segments. See the module docs for the contract.
#[derive(Debug)]
pub struct Segmenter {
    target_secs: f64,
    next_sequence: u64,
    next_init_id: u32,
    current_init: Option<(u32, Vec<Track>)>,
    track_ends: Vec<TrackEnd>,
    timeline_end_secs: f64,
    discontinuity_pending: bool,
    dropped_video: u64,
    dropped_audio: u64,
    write_errors: u64,
    run: Option<Run>,
    outputs: VecDeque<Output>,
}

fn default_duration(track: &Track) -> u32 {
    match track.codec {
        Codec::H264 { .. } => (track.timescale / 30).max(1),
        Codec::Aac { .. } => 1024,
        Codec::Opus { .. } => 960,
    }
}

/// `a/ta < b/tb`, exactly.
fn time_lt(a: u64, ta: u32, b: u64, tb: u32) -> bool {
    u128::from(a) * u128::from(tb) < u128::from(b) * u128::from(ta)
}

impl Segmenter {
    pub fn new(config: SegmenterConfig) -> Self {
        Segmenter {
            target_secs: config.target_duration.as_secs_f64().max(0.001),
            next_sequence: 0,
            next_init_id: 0,
            current_init: None,
            track_ends: Vec::new(),
            timeline_end_secs: 0.0,
            discontinuity_pending: false,
            dropped_video: 0,
            dropped_audio: 0,
            write_errors: 0,
            run: None,
            outputs: VecDeque::new(),
        }
    }

    pub fn resume(config: SegmenterConfig, point: ResumePoint) -> Self {
        let mut s = Segmenter::new(config);
        s.next_sequence = point.next_sequence;
        s.next_init_id = point.next_init_id;
        s.current_init = point.current_init;
        s.track_ends = point.track_ends;
        s.timeline_end_secs = point.timeline_end_secs.max(0.0);
        s.discontinuity_pending = point.discontinuity_pending;
        s.dropped_video = point.dropped_frames;
        s
    }

    /// Valid after every [`Segmenter::flush`]: persisted by the server with the segments it produced.
    pub fn resume_point(&self) -> ResumePoint {
        ResumePoint {
            next_sequence: self.next_sequence,
            next_init_id: self.next_init_id,
            current_init: self.current_init.clone(),
            timeline_end_secs: self.timeline_end_secs,
            track_ends: self.track_ends.clone(),
            discontinuity_pending: self.discontinuity_pending,
            dropped_frames: self.dropped_video,
        }
    }

    /// Video frames dropped so far because they came before a keyframe (undecodable).
    pub fn dropped_frames(&self) -> u64 {
        self.dropped_video
    }

    /// Audio frames dropped so far: before a run's first keyframe, or too late for their run.
    pub fn dropped_audio_frames(&self) -> u64 {
        self.dropped_audio
    }

    /// Segments that could not be written (a box over its size limit); their frames are lost.
    pub fn write_errors(&self) -> u64 {
        self.write_errors
    }

    /// Starts a run of frames with these tracks. See the module docs for the timeline.
    pub fn begin_run(
        &mut self,
        tracks: Vec<Track>,
        discontinuity: bool,
    ) -> Result<(), SegmenterError> {
        validate_tracks(&tracks)?;
        if self.run.is_some() {
            self.flush();
        }
        let same = self
            .current_init
            .as_ref()
            .is_some_and(|(_, current)| *current == tracks);
        if !same {
            let data = fmp4::write_init(&tracks).map_err(SegmenterError::Init)?;
            let id = self.next_init_id;
            self.next_init_id = self.next_init_id.wrapping_add(1);
            if self.current_init.is_some() {
                self.discontinuity_pending = true;
            }
            self.current_init = Some((id, tracks.clone()));
            self.outputs.push_back(Output::Init(InitSegment {
                id,
                tracks: tracks.clone(),
                data,
            }));
        }
        if discontinuity && self.next_sequence > 0 {
            self.discontinuity_pending = true;
        }
        self.start_run(&tracks);
        Ok(())
    }

    fn start_run(&mut self, tracks: &[Track]) {
        let start_secs = self.timeline_end_secs;
        let mut video = None;
        let mut audio = None;
        for track in tracks {
            let ts = track.timescale;
            let mut base = (start_secs * f64::from(ts)).round() as u64;
            if let Some(end) = self
                .track_ends
                .iter()
                .find(|e| e.kind == track.kind && e.timescale == ts)
            {
                base = base.max(end.end);
            }
            let state = TrackState {
                kind: track.kind,
                timescale: ts,
                base,
                origin: 0,
                last: None,
                early: None,
                prev_duration: None,
                default_duration: default_duration(track),
            };
            match track.kind {
                TrackKind::Video => video = Some(state),
                TrackKind::Audio => audio = Some(state),
            }
        }
        self.run = Some(Run {
            start_secs,
            param_sets: tracks.iter().find_map(param_sets),
            video,
            audio,
            mapped: false,
            pre_audio: VecDeque::new(),
            need_keyframe: false,
            segments: VecDeque::from([SegBuild::default()]),
            audio_q: VecDeque::new(),
        });
    }

    /// Adds one frame of the current run.
    pub fn push(&mut self, frame: MediaFrame) -> Result<(), SegmenterError> {
        if self.run.is_none() {
            // After a flush the next frames start a new run with the same tracks.
            let tracks = match &self.current_init {
                Some((_, tracks)) => tracks.clone(),
                None => return Err(SegmenterError::NoRun),
            };
            self.start_run(&tracks);
        }
        let Some(run) = self.run.as_mut() else {
            return Err(SegmenterError::NoRun);
        };
        let kind = frame.kind;
        let has_track = match kind {
            TrackKind::Video => run.video.is_some(),
            TrackKind::Audio => run.audio.is_some(),
        };
        if !has_track {
            return Err(SegmenterError::UnknownTrack { kind });
        }
        if u32::try_from(frame.data.len()).is_err() {
            return Err(SegmenterError::FrameTooLarge {
                kind,
                len: frame.data.len(),
            });
        }
        if !run.mapped {
            match (kind, run.video.is_some()) {
                (TrackKind::Audio, true) => {
                    if let Some(prev) = run.pre_audio.back() {
                        if frame.dts < prev.dts {
                            return Err(SegmenterError::NonMonotonic {
                                kind,
                                dts: frame.dts,
                                previous: prev.dts,
                            });
                        }
                    }
                    run.pre_audio.push_back(frame);
                    self.trim_preroll();
                    return Ok(());
                }
                (TrackKind::Video, _) if !frame.keyframe => {
                    self.dropped_video += 1;
                    return Ok(());
                }
                _ => self.fix_origin(&frame),
            }
        }
        self.accept(frame)
    }

    /// Drops pre-keyframe audio older than [`MAX_PREROLL_SECS`].
    fn trim_preroll(&mut self) {
        let Some(run) = self.run.as_mut() else { return };
        let Some(audio) = run.audio.as_ref() else {
            return;
        };
        let limit = (MAX_PREROLL_SECS * f64::from(audio.timescale)) as i64;
        while let (Some(first), Some(last)) = (run.pre_audio.front(), run.pre_audio.back()) {
            if last.dts.saturating_sub(first.dts) <= limit {
                break;
            }
            run.pre_audio.pop_front();
            self.dropped_audio += 1;
        }
    }

    /// Fixes where the run's input timestamps land on the output timeline, when its first
    /// keyframe (or, audio-only, its first frame) arrives; replays the audio held until then.
    fn fix_origin(&mut self, first: &MediaFrame) {
        let Some(run) = self.run.as_mut() else { return };
        let pre_audio = std::mem::take(&mut run.pre_audio);
        let first_ts = match first.kind {
            TrackKind::Video => run.video.as_ref().map(|t| t.timescale),
            TrackKind::Audio => run.audio.as_ref().map(|t| t.timescale),
        }
        .unwrap_or(1);
        // Audio that ends before the first picture is shown would play over nothing.
        let kf_pts = i128::from(first.dts) + i128::from(first.cts_offset);
        let mut kept: Vec<MediaFrame> = Vec::with_capacity(pre_audio.len());
        if let Some(audio) = run.audio.as_ref() {
            let ta = i128::from(audio.timescale);
            let n = pre_audio.len();
            for i in 0..n {
                let Some(f) = pre_audio.get(i) else { break };
                let dur = match pre_audio.get(i + 1) {
                    Some(next) => i128::from(next.dts) - i128::from(f.dts),
                    None => i128::from(f.duration.unwrap_or(audio.default_duration)),
                };
                let end = i128::from(f.dts) + dur;
                if end * i128::from(first_ts) <= kf_pts * ta {
                    self.dropped_audio += 1;
                } else {
                    kept.push(f.clone());
                }
            }
        }
        // The origin is the earliest decode time of the run, in seconds: (ticks, timescale).
        let mut origin = (i128::from(first.dts), i128::from(first_ts));
        if let (Some(a), Some(audio)) = (kept.first(), run.audio.as_ref()) {
            let ta = i128::from(audio.timescale);
            if i128::from(a.dts) * origin.1 < origin.0 * ta {
                origin = (i128::from(a.dts), ta);
            }
        }
        for state in [run.video.as_mut(), run.audio.as_mut()]
            .into_iter()
            .flatten()
        {
            let ts = i128::from(state.timescale);
            // floor, so every frame of the run maps at or after the base.
            state.origin = (origin.0 * ts).div_euclid(origin.1) as i64;
        }
        run.mapped = true;
        for f in kept {
            // Already checked monotonic when buffered; a frame before the origin cannot occur.
            let _ = self.accept(f);
        }
    }

    /// A frame of a mapped run: finish the previous frame of its track, cut if due.
    fn accept(&mut self, frame: MediaFrame) -> Result<(), SegmenterError> {
        let target_secs = self.target_secs;
        let Some(run) = self.run.as_mut() else {
            return Err(SegmenterError::NoRun);
        };
        let kind = frame.kind;
        let state = match kind {
            TrackKind::Video => run.video.as_mut(),
            TrackKind::Audio => run.audio.as_mut(),
        }
        .ok_or(SegmenterError::UnknownTrack { kind })?;
        if let Some(previous) = state.last.as_ref().map(|p| p.dts).or(state.early) {
            if frame.dts < previous {
                return Err(SegmenterError::NonMonotonic {
                    kind,
                    dts: frame.dts,
                    previous,
                });
            }
        }
        let Some(out_dts) = state.out_dts(frame.dts) else {
            // Before the run's origin: a straggler of the previous interleave.
            match kind {
                TrackKind::Video => self.dropped_video += 1,
                TrackKind::Audio => self.dropped_audio += 1,
            }
            return Ok(());
        };
        // Durations come from the next frame's dts when there is one: that keeps every track
        // on its input clock even when a source's own durations disagree with its timestamps.
        let finished = state.last.take().map(|prev| {
            let d = i128::from(frame.dts) - i128::from(prev.dts);
            let d = u32::try_from(d).unwrap_or(u32::MAX);
            state.prev_duration = Some(d);
            finish(state, prev, d)
        });
        state.last = Some(frame);
        state.early = None;
        let frame = state.last.as_ref().map(|f| (f.keyframe, f.dts));

        match kind {
            TrackKind::Video => {
                let Some(video) = run.video.as_ref() else {
                    return Ok(());
                };
                let target = (target_secs * f64::from(video.timescale)).round() as u64;
                if let Some(f) = finished.flatten() {
                    push_video(run, f, &mut self.dropped_video);
                }
                if let Some((true, _)) = frame {
                    if run.need_keyframe {
                        run.need_keyframe = false;
                    }
                    if let Some(open) = run.segments.back_mut() {
                        if let Some(first) = open.video.first() {
                            if out_dts.saturating_sub(first.dts) >= target {
                                open.end = Some(out_dts);
                                run.segments.push_back(SegBuild::default());
                            }
                        }
                    }
                } else if run.need_keyframe {
                    // Still stalled: this frame references pictures we did not keep.
                    if let Some(v) = run.video.as_mut() {
                        v.last = None;
                    }
                    self.dropped_video += 1;
                }
            }
            TrackKind::Audio => {
                if let Some(f) = finished.flatten() {
                    run.audio_q.push_back(f);
                }
            }
        }
        self.check_stall();
        self.emit_ready(false);
        Ok(())
    }

    /// Audio far ahead of the last video frame: close the open segment and go on audio-only.
    fn check_stall(&mut self) {
        let Some(run) = self.run.as_mut() else { return };
        let (Some(video), Some(audio)) = (run.video.as_ref(), run.audio.as_ref()) else {
            return;
        };
        if run.need_keyframe {
            return;
        }
        let Some(a_last) = audio.last.as_ref().and_then(|f| audio.out_dts(f.dts)) else {
            return;
        };
        let v_last = video.last.as_ref().and_then(|f| video.out_dts(f.dts));
        let v_last = v_last.or_else(|| {
            run.segments
                .iter()
                .rev()
                .find_map(|s| s.video.last().map(|f| f.dts))
        });
        let Some(v_last) = v_last else { return };
        if audio.secs(a_last) - video.secs(v_last) <= MAX_VIDEO_STALL_SECS {
            return;
        }
        // Finish the held video frame with its predecessor's duration and close the segment.
        if let Some(v) = run.video.as_mut() {
            if let Some(last) = v.last.take() {
                let d = last
                    .duration
                    .or(v.prev_duration)
                    .unwrap_or(v.default_duration);
                if let Some(f) = finish(v, last, d) {
                    push_video(run, f, &mut self.dropped_video);
                }
            }
        }
        if let Some(open) = run.segments.back_mut() {
            if let Some(last) = open.video.last() {
                open.end = Some(last.dts.saturating_add(u64::from(last.duration)));
                run.segments.push_back(SegBuild::default());
            }
        }
        run.need_keyframe = true;
    }

    /// Emits every segment whose frames are all known. `all` (flush) emits everything.
    fn emit_ready(&mut self, all: bool) {
        loop {
            let Some(run) = self.run.as_mut() else { return };
            let ready = match run.segments.front() {
                None => false,
                Some(seg) => match seg.end {
                    Some(end) => {
                        all || audio_reached(run, end)
                            || finish_audio_early(run, end)
                            || video_waited(run, end)
                    }
                    None => all && run.segments.len() == 1,
                },
            };
            if ready {
                let Some(seg) = run.segments.pop_front() else {
                    return;
                };
                let audio = take_audio(run, seg.end);
                if run.segments.is_empty() {
                    run.segments.push_back(SegBuild::default());
                }
                self.write_segment(seg.video, audio);
                if all && run_is_empty(self.run.as_ref()) {
                    return;
                }
                continue;
            }
            // Audio-only runs, and a stalled video, cut the audio on time.
            let audio_only = run.video.is_none()
                || (run.need_keyframe
                    && run.segments.len() == 1
                    && run.segments.front().is_some_and(|s| s.video.is_empty()));
            if audio_only {
                if let Some(n) = audio_cut(run, self.target_secs) {
                    let audio: Vec<OutFrame> = run.audio_q.drain(..n).collect();
                    self.write_segment(Vec::new(), audio);
                    continue;
                }
            }
            return;
        }
    }

    fn write_segment(&mut self, video: Vec<OutFrame>, audio: Vec<OutFrame>) {
        if video.is_empty() && audio.is_empty() {
            return;
        }
        let Some(run) = self.run.as_ref() else { return };
        let Some((init_id, _)) = self.current_init.as_ref() else {
            return;
        };
        let init_id = *init_id;
        let sequence = self.next_sequence;
        let mut runs = Vec::with_capacity(2);
        let mut payloads = Vec::with_capacity(video.len() + audio.len());
        let mut start_secs = None;
        let mut duration_secs = 0.0;
        // In-band parameter sets before the first keyframe (see `Run::param_sets`).
        let prefix = match (video.first(), &run.param_sets) {
            (Some(f), Some((sets, len_size))) if f.keyframe && !has_sps(&f.data, *len_size) => {
                Some(sets.clone())
            }
            _ => None,
        };
        let prefix_len = prefix.as_ref().map_or(0, |p| p.len() as u32);
        for (frames, state) in [(&video, run.video.as_ref()), (&audio, run.audio.as_ref())] {
            let (Some(first), Some(state)) = (frames.first(), state) else {
                continue;
            };
            let is_video = state.kind == TrackKind::Video;
            let ts = f64::from(state.timescale);
            let total: u64 = frames.iter().map(|f| u64::from(f.duration)).sum();
            if start_secs.is_none() {
                start_secs = Some(first.dts as f64 / ts);
                duration_secs = total as f64 / ts;
            }
            runs.push(TrackRun {
                track_id: state.kind.track_id(),
                base_media_decode_time: first.dts,
                samples: frames
                    .iter()
                    .enumerate()
                    .map(|(i, f)| FragSample {
                        duration: f.duration,
                        size: f.data.len() as u32 + if is_video && i == 0 { prefix_len } else { 0 },
                        keyframe: f.keyframe,
                        cts_offset: f.cts,
                    })
                    .collect(),
            });
            if is_video {
                payloads.extend(prefix.clone());
            }
            payloads.extend(frames.iter().map(|f| f.data.clone()));
        }
        let header = match fmp4::media_segment_header((sequence as u32).wrapping_add(1), &runs) {
            Ok(h) => h,
            Err(_) => {
                self.write_errors += 1;
                return;
            }
        };
        // Where each track ended: the next run starts after the latest of them.
        for (frames, state) in [(&video, run.video.as_ref()), (&audio, run.audio.as_ref())] {
            let (Some(last), Some(state)) = (frames.last(), state) else {
                continue;
            };
            let end = last.dts.saturating_add(u64::from(last.duration));
            let entry = TrackEnd {
                kind: state.kind,
                timescale: state.timescale,
                end,
            };
            match self.track_ends.iter_mut().find(|e| e.kind == state.kind) {
                Some(e) => *e = entry,
                None => self.track_ends.push(entry),
            }
            self.timeline_end_secs = self.timeline_end_secs.max(state.secs(end));
        }
        let keyframe_start = video.first().is_none_or(|f| f.keyframe);
        self.next_sequence += 1;
        self.outputs.push_back(Output::Segment(MediaSegment {
            sequence,
            init_id,
            discontinuity: std::mem::take(&mut self.discontinuity_pending),
            start_secs: start_secs.unwrap_or(run.start_secs),
            duration_secs,
            header: Bytes::from(header),
            payloads,
            video_frames: video.len() as u32,
            audio_frames: audio.len() as u32,
            keyframe_start,
        }));
    }

    /// Closes the open segment with everything pushed so far and ends the run; frames pushed
    /// after it start a new run with the same tracks (video waits for a keyframe again).
    pub fn flush(&mut self) {
        let Some(run) = self.run.as_mut() else { return };
        if !run.mapped {
            self.dropped_audio += run.pre_audio.len() as u64;
            self.run = None;
            return;
        }
        if let Some(v) = run.video.as_mut() {
            if let Some(last) = v.last.take() {
                let d = last
                    .duration
                    .or(v.prev_duration)
                    .unwrap_or(v.default_duration);
                if let Some(f) = finish(v, last, d) {
                    push_video(run, f, &mut self.dropped_video);
                }
            }
        }
        if let Some(a) = run.audio.as_mut() {
            if let Some(last) = a.last.take() {
                let d = last
                    .duration
                    .or(a.prev_duration)
                    .unwrap_or(a.default_duration);
                if let Some(f) = finish(a, last, d) {
                    run.audio_q.push_back(f);
                }
            }
        }
        self.emit_ready(true);
        self.run = None;
    }

    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// Seconds of media in the open (not yet emitted) segment: a WebRTC ingest sends a PLI when
    /// this is past the target without a keyframe.
    pub fn open_duration(&self) -> f64 {
        let Some(run) = self.run.as_ref() else {
            return 0.0;
        };
        if let Some(v) = run.video.as_ref() {
            let open = run.segments.back();
            let start = open.and_then(|s| s.video.first().map(|f| f.dts));
            let start = start.or_else(|| {
                v.last
                    .as_ref()
                    .filter(|f| f.keyframe)
                    .and_then(|f| v.out_dts(f.dts))
            });
            let newest = v.last.as_ref().and_then(|f| v.out_dts(f.dts));
            if let (Some(s), Some(n)) = (start, newest) {
                return v.secs(n.saturating_sub(s));
            }
            if !run.need_keyframe {
                return 0.0;
            }
        }
        match (run.audio.as_ref(), run.audio_q.front()) {
            (Some(a), Some(first)) => {
                let newest = a.last.as_ref().and_then(|f| a.out_dts(f.dts));
                a.secs(newest.unwrap_or(first.dts).saturating_sub(first.dts))
            }
            _ => 0.0,
        }
    }
}

/// SPS and PPS of an H.264 track's avcC, each prefixed with its length in the avcC's
/// NAL length size (ISO/IEC 14496-15 §5.3.3.1), and that size.
fn param_sets(track: &Track) -> Option<(Bytes, usize)> {
    use mp4_atom::Atom;
    let Codec::H264 { avcc, .. } = &track.codec else {
        return None;
    };
    let avcc = mp4_atom::Avcc::decode_body(&mut avcc.as_ref()).ok()?;
    let len_size = usize::from(avcc.length_size);
    let mut out = Vec::new();
    for nal in avcc
        .sequence_parameter_sets
        .iter()
        .chain(&avcc.picture_parameter_sets)
    {
        let len = u32::try_from(nal.len()).ok()?.to_be_bytes();
        out.extend_from_slice(len.get(4 - len_size..)?);
        out.extend_from_slice(nal);
    }
    (!out.is_empty()).then(|| (Bytes::from(out), len_size))
}

/// Whether a length-prefixed H.264 access unit already carries an SPS (NAL type 7).
fn has_sps(data: &[u8], len_size: usize) -> bool {
    let mut at = 0usize;
    while let Some(len_bytes) = at.checked_add(len_size).and_then(|end| data.get(at..end)) {
        let len = len_bytes
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        if data
            .get(at.saturating_add(len_size))
            .is_some_and(|h| h & 0x1f == 7)
        {
            return true;
        }
        at = at.saturating_add(len_size).saturating_add(len);
    }
    false
}

fn validate_tracks(tracks: &[Track]) -> Result<(), SegmenterError> {
    if tracks.is_empty() {
        return Err(SegmenterError::InvalidTracks {
            reason: "no tracks",
        });
    }
    for (i, t) in tracks.iter().enumerate() {
        if t.timescale == 0 {
            return Err(SegmenterError::InvalidTracks {
                reason: "timescale 0",
            });
        }
        if t.codec.kind() != t.kind {
            return Err(SegmenterError::InvalidTracks {
                reason: "codec of another kind than its track",
            });
        }
        if tracks.iter().skip(i + 1).any(|o| o.kind == t.kind) {
            return Err(SegmenterError::InvalidTracks {
                reason: "two tracks of one kind",
            });
        }
    }
    Ok(())
}

fn finish(state: &TrackState, frame: MediaFrame, duration: u32) -> Option<OutFrame> {
    Some(OutFrame {
        dts: state.out_dts(frame.dts)?,
        duration,
        cts: frame.cts_offset,
        keyframe: frame.keyframe || state.kind == TrackKind::Audio,
        data: frame.data,
    })
}

/// Appends a finished video frame to the open segment; a segment never starts without a keyframe.
fn push_video(run: &mut Run, f: OutFrame, dropped: &mut u64) {
    let Some(open) = run.segments.back_mut() else {
        return;
    };
    if open.video.is_empty() && !f.keyframe {
        *dropped += 1;
        return;
    }
    open.video.push(f);
}

/// Every audio frame before `end` (video ticks) has been seen.
fn audio_reached(run: &Run, end: u64) -> bool {
    let (Some(video), Some(audio)) = (run.video.as_ref(), run.audio.as_ref()) else {
        return true;
    };
    match audio.last.as_ref().and_then(|f| audio.out_dts(f.dts)) {
        Some(a) => !time_lt(a, audio.timescale, end, video.timescale),
        None => false,
    }
}

/// The newest audio frame starts before `end` and its source-given duration takes it to `end` or
/// past: no more audio of the segment can come, so the frame is finished with that duration now
/// instead of when its successor arrives. That is what lets a live segment be listed when its
/// closing keyframe arrives rather than an audio frame later (RTMP's AAC frames are exactly
/// 1024 samples; sources without a duration keep waiting for the next frame).
fn finish_audio_early(run: &mut Run, end: u64) -> bool {
    let (Some(video), Some(audio)) = (run.video.as_ref(), run.audio.as_mut()) else {
        return false;
    };
    let Some(last) = audio.last.as_ref() else {
        return false;
    };
    let (Some(d), Some(start)) = (last.duration, audio.out_dts(last.dts)) else {
        return false;
    };
    let stop = start.saturating_add(u64::from(d));
    if time_lt(stop, audio.timescale, end, video.timescale) {
        return false;
    }
    let Some(last) = audio.last.take() else {
        return false;
    };
    audio.early = Some(last.dts);
    audio.prev_duration = Some(d);
    if let Some(f) = finish(audio, last, d) {
        run.audio_q.push_back(f);
    }
    true
}

/// Video went on far past `end` without the audio catching up: stop waiting.
fn video_waited(run: &Run, end: u64) -> bool {
    let Some(video) = run.video.as_ref() else {
        return true;
    };
    let newest = video.last.as_ref().and_then(|f| video.out_dts(f.dts));
    newest.is_some_and(|n| video.secs(n.saturating_sub(end)) > MAX_AUDIO_WAIT_SECS)
}

/// The queued audio that starts before `end` (video ticks); everything when `end` is `None`.
fn take_audio(run: &mut Run, end: Option<u64>) -> Vec<OutFrame> {
    let (Some(end), Some(video), Some(audio)) = (end, run.video.as_ref(), run.audio.as_ref())
    else {
        return run.audio_q.drain(..).collect();
    };
    let n = run
        .audio_q
        .iter()
        .take_while(|f| time_lt(f.dts, audio.timescale, end, video.timescale))
        .count();
    run.audio_q.drain(..n).collect()
}

/// How many queued audio frames make an audio-only segment of about the target duration.
fn audio_cut(run: &Run, target_secs: f64) -> Option<usize> {
    let audio = run.audio.as_ref()?;
    let first = run.audio_q.front()?;
    let target = (target_secs * f64::from(audio.timescale)).round() as u64;
    run.audio_q
        .iter()
        .position(|f| f.dts.saturating_sub(first.dts) >= target)
}

fn run_is_empty(run: Option<&Run>) -> bool {
    run.is_none_or(|r| r.audio_q.is_empty() && r.segments.iter().all(|s| s.video.is_empty()))
}
