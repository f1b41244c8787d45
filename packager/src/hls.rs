//! HLS media playlists for fMP4 segments (RFC 8216, version 7 for `EXT-X-MAP` in a playlist
//! without I-frames-only, §4.3.2.5 and §7).
//!
//! Written by hand rather than with `m3u8-rs`' writer: its `#EXTINF` is an `f32` printed with a
//! process-wide precision setting (a global we must not flip from a library), and it puts
//! `EXT-X-MAP` before `EXT-X-DISCONTINUITY`, where the new init belongs after the boundary.
//! The tests parse what this renders with `m3u8-rs`' parser.

use std::fmt::Write as _;

/// One segment line of a playlist.
#[derive(Clone, Debug, PartialEq)]
pub struct PlaylistSegment {
    pub uri: String,
    pub duration_secs: f64,
    pub discontinuity: bool,
    /// URI of the init segment (`EXT-X-MAP`) this segment is decoded with.
    pub init_uri: String,
    /// Wall-clock time of the segment's first frame, unix milliseconds.
    pub program_date_time_ms: Option<i64>,
}

/// `EXT-X-PLAYLIST-TYPE`: EVENT while live (segments are only appended), VOD once stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlaylistKind {
    Event,
    Vod,
}

/// A media playlist.
#[derive(Clone, Debug, PartialEq)]
pub struct Playlist {
    pub kind: PlaylistKind,
    /// `EXT-X-ENDLIST`: no more segments will be added.
    pub ended: bool,
    /// The configured target; `EXT-X-TARGETDURATION` never goes below it (rounded up).
    pub target_duration_secs: f64,
    pub media_sequence: u64,
    pub segments: Vec<PlaylistSegment>,
}

/// RFC 8216 §4.3.3.1: the rounded (to nearest) EXTINF of every segment must be ≤ the target
/// duration; taking the ceiling of the longest is the safe reading hls.js and Safari agree with.
fn target_duration(p: &Playlist) -> u64 {
    let floor = if p.target_duration_secs.is_finite() && p.target_duration_secs > 0.0 {
        p.target_duration_secs.ceil() as u64
    } else {
        1
    };
    let longest = p
        .segments
        .iter()
        .map(|s| s.duration_secs)
        .filter(|d| d.is_finite() && *d > 0.0)
        .fold(0.0f64, f64::max);
    // A millisecond of slack so 2.0000001 (float noise) does not become 3.
    let longest = (longest - 0.0005).max(0.0).ceil() as u64;
    floor.max(longest).max(1)
}

/// `2026-11-25T12:00:00.000Z` (RFC 8216 §4.3.2.6 wants ISO 8601 with time zone; ms precision
/// lets players map segment boundaries to wall clock exactly).
pub fn format_program_date_time(unix_ms: i64) -> String {
    let days = unix_ms.div_euclid(86_400_000);
    let ms_of_day = unix_ms.rem_euclid(86_400_000);
    let (y, m, d) = civil_from_days(days);
    let h = ms_of_day / 3_600_000;
    let min = (ms_of_day / 60_000) % 60;
    let s = (ms_of_day / 1000) % 60;
    let ms = ms_of_day % 1000;
    format!("{y:04}-{m:02}-{d:02}T{h:02}:{min:02}:{s:02}.{ms:03}Z")
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

impl Playlist {
    /// The playlist text. An empty live playlist is still a valid one (players poll it again).
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(256 + self.segments.len() * 96);
        let kind = match self.kind {
            PlaylistKind::Event => "EVENT",
            PlaylistKind::Vod => "VOD",
        };
        // Writing to a String cannot fail.
        let _ = writeln!(out, "#EXTM3U");
        let _ = writeln!(out, "#EXT-X-VERSION:7");
        let _ = writeln!(out, "#EXT-X-TARGETDURATION:{}", target_duration(self));
        let _ = writeln!(out, "#EXT-X-MEDIA-SEQUENCE:{}", self.media_sequence);
        let _ = writeln!(out, "#EXT-X-PLAYLIST-TYPE:{kind}");
        // Every segment starts with a keyframe (the segmenter guarantees it).
        let _ = writeln!(out, "#EXT-X-INDEPENDENT-SEGMENTS");
        let mut map: Option<&str> = None;
        for (i, seg) in self.segments.iter().enumerate() {
            if seg.discontinuity && i > 0 {
                let _ = writeln!(out, "#EXT-X-DISCONTINUITY");
            }
            if map != Some(seg.init_uri.as_str()) {
                let _ = writeln!(out, "#EXT-X-MAP:URI=\"{}\"", quoted(&seg.init_uri));
                map = Some(seg.init_uri.as_str());
            }
            if i == 0 || seg.discontinuity {
                if let Some(ms) = seg.program_date_time_ms {
                    let _ = writeln!(
                        out,
                        "#EXT-X-PROGRAM-DATE-TIME:{}",
                        format_program_date_time(ms)
                    );
                }
            }
            let d = if seg.duration_secs.is_finite() {
                seg.duration_secs.max(0.0)
            } else {
                0.0
            };
            let _ = writeln!(out, "#EXTINF:{d:.3},");
            let _ = writeln!(out, "{}", seg.uri);
        }
        if self.ended {
            let _ = writeln!(out, "#EXT-X-ENDLIST");
        }
        out
    }
}

/// A quoted-string attribute cannot hold `"` or line breaks (RFC 8216 §4.2).
fn quoted(s: &str) -> String {
    s.chars()
        .filter(|c| *c != '"' && *c != '\n' && *c != '\r')
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(i: u32, d: f64, disc: bool, init: &str) -> PlaylistSegment {
        PlaylistSegment {
            uri: format!("seg{i}.m4s"),
            duration_secs: d,
            discontinuity: disc,
            init_uri: init.to_string(),
            program_date_time_ms: Some(1_764_072_000_000 + i64::from(i) * 2000),
        }
    }

    #[test]
    fn program_date_time_is_iso8601_utc_ms() {
        assert_eq!(format_program_date_time(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            format_program_date_time(1_764_072_000_123),
            "2025-11-25T12:00:00.123Z"
        );
        assert_eq!(
            format_program_date_time(951_782_400_000),
            "2000-02-29T00:00:00.000Z"
        );
        assert_eq!(format_program_date_time(-1), "1969-12-31T23:59:59.999Z");
    }

    #[test]
    fn renders_event_playlist_with_maps_and_discontinuities() {
        let p = Playlist {
            kind: PlaylistKind::Event,
            ended: false,
            target_duration_secs: 2.0,
            media_sequence: 5,
            segments: vec![
                seg(5, 2.002, false, "init0.mp4"),
                seg(6, 4.1, false, "init0.mp4"),
                seg(7, 1.5, true, "init1.mp4"),
                seg(8, 2.0, true, "init1.mp4"),
            ],
        };
        let text = p.render();
        let expected = "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:5\n#EXT-X-MEDIA-SEQUENCE:5\n\
#EXT-X-PLAYLIST-TYPE:EVENT\n#EXT-X-INDEPENDENT-SEGMENTS\n\
#EXT-X-MAP:URI=\"init0.mp4\"\n#EXT-X-PROGRAM-DATE-TIME:2025-11-25T12:00:10.000Z\n#EXTINF:2.002,\nseg5.m4s\n\
#EXTINF:4.100,\nseg6.m4s\n\
#EXT-X-DISCONTINUITY\n#EXT-X-MAP:URI=\"init1.mp4\"\n#EXT-X-PROGRAM-DATE-TIME:2025-11-25T12:00:14.000Z\n#EXTINF:1.500,\nseg7.m4s\n\
#EXT-X-DISCONTINUITY\n#EXT-X-PROGRAM-DATE-TIME:2025-11-25T12:00:16.000Z\n#EXTINF:2.000,\nseg8.m4s\n";
        assert_eq!(text, expected);

        let parsed = m3u8_rs::parse_media_playlist_res(text.as_bytes()).expect("m3u8-rs parses it");
        assert_eq!(parsed.version, Some(7));
        assert_eq!(parsed.target_duration, 5);
        assert_eq!(parsed.media_sequence, 5);
        assert_eq!(parsed.segments.len(), 4);
        assert!(parsed.segments[2].discontinuity);
        assert_eq!(
            parsed.segments[2].map.as_ref().map(|m| m.uri.as_str()),
            Some("init1.mp4")
        );
        assert!(!parsed.end_list);
    }

    #[test]
    fn empty_live_playlist_is_valid_and_vod_ends() {
        let mut p = Playlist {
            kind: PlaylistKind::Event,
            ended: false,
            target_duration_secs: 1.5,
            media_sequence: 0,
            segments: vec![],
        };
        let text = p.render();
        assert!(text.contains("#EXT-X-TARGETDURATION:2\n"));
        let parsed = m3u8_rs::parse_media_playlist_res(text.as_bytes()).expect("parses");
        assert!(parsed.segments.is_empty());

        p.kind = PlaylistKind::Vod;
        p.ended = true;
        p.segments.push(seg(0, 2.0000001, false, "i.mp4"));
        let text = p.render();
        assert!(text.contains("#EXT-X-PLAYLIST-TYPE:VOD\n"));
        assert!(text.ends_with("#EXT-X-ENDLIST\n"));
        assert!(text.contains("#EXT-X-TARGETDURATION:2\n"), "{text}");
        let parsed = m3u8_rs::parse_media_playlist_res(text.as_bytes()).expect("parses");
        assert!(parsed.end_list);
    }
}
