//! A first look at a WHIP offer (RFC 8866 SDP), before str0m negotiates it.
//!
//! str0m answers any offer it can parse, but it cannot tell a publisher *why* nothing matched. storef
//! needs H.264 (every HLS player decodes it) and takes Opus audio, so this pass collects what the
//! offer carries per `m=` section: the H.264 variants (payload type, `packetization-mode`,
//! `profile-level-id`, RTX payload type, RTCP feedback), the Opus payload type and the names of
//! everything else, so a VP8-only offer is refused with "offered VP8, VP9 … ; storef needs H.264".
//!
//! The variants found here are mirrored into the `Rtc`'s codec table, so the answer carries the
//! client's own payload types and `profile-level-id`s (Firefox refuses an answer whose
//! profile-level-id differs from its offer, RFC 6184 §8.2.2 lets the answerer echo it).
//!
//! Client quirks this parser takes (see `testdata/whip/`):
//! - GStreamer 1.22 `whipsink`: `OPUS` in upper case (encoding names are case-insensitive,
//!   RFC 8866 §6.6), audio on port 0 with `a=bundle-only` (RFC 9143 §7.3.3), profile-level-id
//!   42c01f, `sprop-parameter-sets` in the fmtp.
//! - Chromium: H.264 in both packetization modes for 42001f, 42e01f and 4d001f, each with an RTX
//!   (`apt=`) payload type; VP8/VP9/AV1/red/ulpfec alongside.
//! - Safari: High profile (640c1f, 640c34).

/// Why an offer cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SdpError {
    #[error("not an SDP offer: the body must start with \"v=0\"")]
    NotSdp,
    #[error("SDP line {line}: {reason}")]
    BadLine { line: usize, reason: &'static str },
    #[error("SDP offer has no audio or video m= section")]
    NoMedia,
    #[error("SDP offer has no ICE credentials (a=ice-ufrag / a=ice-pwd)")]
    NoIce,
    #[error("SDP offer has no DTLS fingerprint (a=fingerprint)")]
    NoFingerprint,
    #[error("no H.264 video in the offer (offered: {offered}); storef needs H.264 because HLS players decode it")]
    NoH264 { offered: String },
}

/// One H.264 payload type of the offer (RFC 6184 §8.1 fmtp parameters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct H264Offer {
    pub pt: u8,
    /// The RTX payload type whose `apt=` names this one (RFC 4588 §8.6).
    pub rtx: Option<u8>,
    /// 0 (single NAL unit) or 1 (non-interleaved, STAP-A + FU-A). Absent means 0 (RFC 6184 §8.1).
    pub packetization_mode: u8,
    /// profile_idc, constraint flags, level_idc. Absent means 42000a (Baseline 1.0, RFC 6184 §8.1).
    pub profile_level_id: u32,
    /// `a=rtcp-fb:PT nack pli`.
    pub pli: bool,
    /// `a=rtcp-fb:PT ccm fir`.
    pub fir: bool,
}

/// The Opus payload type of the offer (RFC 7587).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpusOffer {
    pub pt: u8,
    /// The channel count of the rtpmap; RFC 7587 §7 requires "2" even for mono.
    pub channels: u8,
}

/// What an offer carries, as far as storef cares.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OfferSummary {
    /// Every H.264 variant, in the order storef prefers them: packetization-mode 1 first (FU-A lets
    /// the encoder send pictures larger than the MTU), then the offer's own order.
    pub h264: Vec<H264Offer>,
    pub opus: Option<OpusOffer>,
    /// Encoding names of all other payload types (`VP8`, `red`, `rtx` …), each once, as offered.
    pub others: Vec<String>,
    /// Number of audio and video `m=` sections.
    pub media_sections: usize,
}

impl OfferSummary {
    /// Whether PLI may be sent for the negotiated H.264 (else FIR, RFC 5104 §4.3.1).
    pub fn pli_negotiated(&self) -> bool {
        self.h264.first().map(|h| h.pli).unwrap_or(true)
    }
}

#[derive(Default)]
struct Section {
    media: String,
    /// (pt, encoding name, channels)
    rtpmap: Vec<(u8, String, u8)>,
    fmtp: Vec<(u8, String)>,
    fb: Vec<(u8, String)>,
}

/// Collects the codecs of an offer. Pure function over text; never panics (fuzzed by
/// `fuzz/fuzz_targets/sdp_offer.rs`).
pub fn inspect_offer(sdp: &str) -> Result<OfferSummary, SdpError> {
    let mut lines = sdp.lines().map(|l| l.trim_end_matches('\r'));
    if lines.next().map(str::trim) != Some("v=0") {
        return Err(SdpError::NotSdp);
    }
    let mut sections: Vec<Section> = Vec::new();
    let mut ufrag = false;
    let mut pwd = false;
    let mut fingerprint = false;
    for (i, line) in sdp.lines().enumerate() {
        let line_no = i + 1;
        let line = line.trim_end_matches('\r');
        if line.is_empty() {
            continue;
        }
        let Some((kind, value)) = line.split_once('=') else {
            return Err(SdpError::BadLine {
                line: line_no,
                reason: "expected <type>=<value>",
            });
        };
        if kind.len() != 1 {
            return Err(SdpError::BadLine {
                line: line_no,
                reason: "SDP line type must be one letter",
            });
        }
        match kind {
            "m" => {
                let media = value
                    .split(' ')
                    .next()
                    .unwrap_or_default()
                    .to_ascii_lowercase();
                if value.split(' ').count() < 4 {
                    return Err(SdpError::BadLine {
                        line: line_no,
                        reason: "m= needs <media> <port> <proto> <fmt>...",
                    });
                }
                sections.push(Section {
                    media,
                    ..Section::default()
                });
            }
            "a" => {
                let (attr, arg) = value.split_once(':').unwrap_or((value, ""));
                match attr {
                    "ice-ufrag" => ufrag = !arg.is_empty(),
                    "ice-pwd" => pwd = !arg.is_empty(),
                    "fingerprint" => fingerprint = !arg.is_empty(),
                    _ => {}
                }
                let Some(sec) = sections.last_mut() else {
                    continue;
                };
                let mut parts = arg.splitn(2, ' ');
                let pt_str = parts.next().unwrap_or_default();
                let rest = parts.next().unwrap_or_default().trim();
                let pt = pt_str.parse::<u8>().ok().filter(|p| *p < 128);
                match (attr, pt) {
                    ("rtpmap", Some(pt)) => {
                        let mut enc = rest.split('/');
                        let name = enc.next().unwrap_or_default().to_string();
                        let _rate = enc.next();
                        let channels = enc.next().and_then(|c| c.parse().ok()).unwrap_or(1);
                        if name.is_empty() {
                            return Err(SdpError::BadLine {
                                line: line_no,
                                reason: "a=rtpmap without an encoding name",
                            });
                        }
                        sec.rtpmap.push((pt, name, channels));
                    }
                    ("fmtp", Some(pt)) => sec.fmtp.push((pt, rest.to_string())),
                    ("rtcp-fb", Some(pt)) => sec.fb.push((pt, rest.to_ascii_lowercase())),
                    ("rtpmap", None) => {
                        return Err(SdpError::BadLine {
                            line: line_no,
                            reason: "a=rtpmap with a bad payload type",
                        })
                    }
                    _ => {}
                }
            }
            _ => {}
        }
    }

    let mut out = OfferSummary::default();
    for sec in &sections {
        if sec.media != "video" && sec.media != "audio" {
            continue;
        }
        out.media_sections += 1;
        for (pt, name, channels) in &sec.rtpmap {
            let fmtp = sec
                .fmtp
                .iter()
                .find(|(p, _)| p == pt)
                .map(|(_, f)| f.as_str())
                .unwrap_or("");
            if sec.media == "video" && name.eq_ignore_ascii_case("H264") {
                let pm = fmtp_value(fmtp, "packetization-mode")
                    .and_then(|v| v.parse::<u8>().ok())
                    .unwrap_or(0);
                if pm > 1 {
                    // Interleaved mode (2) needs DON reordering that no WebRTC client uses.
                    push_other(&mut out.others, &format!("{name} packetization-mode={pm}"));
                    continue;
                }
                let plid = fmtp_value(fmtp, "profile-level-id")
                    .and_then(|v| u32::from_str_radix(v, 16).ok())
                    .filter(|v| *v <= 0xff_ffff)
                    .unwrap_or(0x42_000a);
                let rtx = sec.rtpmap.iter().find_map(|(rp, rn, _)| {
                    let f = sec.fmtp.iter().find(|(p, _)| p == rp)?;
                    (rn.eq_ignore_ascii_case("rtx")
                        && fmtp_value(&f.1, "apt").and_then(|a| a.parse::<u8>().ok()) == Some(*pt))
                    .then_some(*rp)
                });
                let fb = |what: &str| sec.fb.iter().any(|(p, f)| p == pt && f == what);
                out.h264.push(H264Offer {
                    pt: *pt,
                    rtx,
                    packetization_mode: pm,
                    profile_level_id: plid,
                    pli: fb("nack pli"),
                    fir: fb("ccm fir"),
                });
            } else if sec.media == "audio" && name.eq_ignore_ascii_case("opus") {
                if out.opus.is_none() {
                    out.opus = Some(OpusOffer {
                        pt: *pt,
                        channels: (*channels).clamp(1, 2),
                    });
                }
            } else {
                push_other(&mut out.others, name);
            }
        }
    }
    if out.media_sections == 0 {
        return Err(SdpError::NoMedia);
    }
    if !(ufrag && pwd) {
        return Err(SdpError::NoIce);
    }
    if !fingerprint {
        return Err(SdpError::NoFingerprint);
    }
    if out.h264.is_empty() {
        let offered = out
            .others
            .iter()
            .filter(|n| !is_auxiliary(n))
            .cloned()
            .chain(out.opus.map(|_| "opus".to_string()))
            .collect::<Vec<_>>();
        let offered = if offered.is_empty() {
            "nothing storef decodes".to_string()
        } else {
            offered.join(", ")
        };
        return Err(SdpError::NoH264 { offered });
    }
    // Stable sort keeps the offer's order inside each packetization mode.
    out.h264
        .sort_by_key(|h| std::cmp::Reverse(h.packetization_mode));
    Ok(out)
}

/// Payload formats that only ride along with a real codec (RFC 4588 rtx, RFC 2198 red, FEC).
fn is_auxiliary(name: &str) -> bool {
    [
        "rtx",
        "red",
        "ulpfec",
        "flexfec-03",
        "telephone-event",
        "CN",
    ]
    .iter()
    .any(|a| a.eq_ignore_ascii_case(name))
}

fn push_other(others: &mut Vec<String>, name: &str) {
    if !others.iter().any(|o| o.eq_ignore_ascii_case(name)) {
        others.push(name.to_string());
    }
}

/// The value of `key` in an fmtp parameter list (`k=v;k=v`, keys case-insensitive).
fn fmtp_value<'a>(fmtp: &'a str, key: &str) -> Option<&'a str> {
    fmtp.split(';').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        k.trim().eq_ignore_ascii_case(key).then_some(v.trim())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHROMIUM: &str = include_str!("../../testdata/whip/chromium156_whip_offer.sdp");
    const GSTREAMER: &str = include_str!("../../testdata/whip/gstreamer122_whipsink_offer.sdp");

    #[test]
    fn chromium_offer_lists_six_h264_variants_mode_1_first() {
        let s = inspect_offer(CHROMIUM).unwrap();
        let got: Vec<(u8, Option<u8>, u8, u32)> = s
            .h264
            .iter()
            .map(|h| (h.pt, h.rtx, h.packetization_mode, h.profile_level_id))
            .collect();
        assert_eq!(
            got,
            vec![
                (102, Some(103), 1, 0x42001f),
                (108, Some(109), 1, 0x42e01f),
                (116, Some(117), 1, 0x4d001f),
                (104, Some(107), 0, 0x42001f),
                (114, Some(115), 0, 0x42e01f),
                (39, Some(40), 0, 0x4d001f),
            ]
        );
        assert!(s.h264.iter().all(|h| h.pli && h.fir));
        assert_eq!(
            s.opus,
            Some(OpusOffer {
                pt: 111,
                channels: 2
            })
        );
        assert_eq!(s.media_sections, 2);
        assert!(s.others.iter().any(|o| o == "VP8"));
        assert!(s.others.iter().any(|o| o == "AV1"));
    }

    #[test]
    fn gstreamer_offer_upper_case_opus_and_42c01f() {
        let s = inspect_offer(GSTREAMER).unwrap();
        assert_eq!(
            s.h264,
            vec![H264Offer {
                pt: 96,
                rtx: None,
                packetization_mode: 1,
                profile_level_id: 0x42c01f,
                pli: true,
                fir: true,
            }]
        );
        assert_eq!(
            s.opus,
            Some(OpusOffer {
                pt: 111,
                channels: 2
            })
        );
    }

    #[test]
    fn vp8_only_offer_is_refused_naming_the_codecs() {
        let offer = CHROMIUM
            .lines()
            .filter(|l| !l.contains("H264") && !l.contains("profile-level-id"))
            .collect::<Vec<_>>()
            .join("\r\n");
        let err = inspect_offer(&offer).unwrap_err();
        let SdpError::NoH264 { offered } = &err else {
            panic!("{err:?}");
        };
        assert!(offered.contains("VP8") && offered.contains("VP9") && offered.contains("AV1"));
        assert!(offered.contains("opus"));
        assert!(!offered.contains("rtx"), "{offered}");
        assert!(err.to_string().contains("needs H.264"));
    }

    #[test]
    fn garbage_is_refused() {
        assert_eq!(inspect_offer(""), Err(SdpError::NotSdp));
        assert_eq!(inspect_offer("hello world"), Err(SdpError::NotSdp));
        assert_eq!(inspect_offer("v=0\r\n"), Err(SdpError::NoMedia));
        assert!(matches!(
            inspect_offer("v=0\r\nthis is not sdp\r\n"),
            Err(SdpError::BadLine { line: 2, .. })
        ));
        assert!(matches!(
            inspect_offer("v=0\r\nm=video\r\n"),
            Err(SdpError::BadLine { line: 2, .. })
        ));
        let no_ice = GSTREAMER.replace("a=ice-ufrag", "a=x-ufrag");
        assert_eq!(inspect_offer(&no_ice), Err(SdpError::NoIce));
        let no_fp = GSTREAMER.replace("a=fingerprint", "a=x-fingerprint");
        assert_eq!(inspect_offer(&no_fp), Err(SdpError::NoFingerprint));
    }

    #[test]
    fn defaults_of_rfc_6184() {
        let offer = GSTREAMER.replace(
            "a=fmtp:96 packetization-mode=1;sprop-parameter-sets=Z0LAH9oBQBbsBagICAoAAAMAAgAAAwB5HjBlQA==,aM48gA==;profile-level-id=42c01f;level-asymmetry-allowed=1",
            "",
        );
        let s = inspect_offer(&offer).unwrap();
        assert_eq!(s.h264[0].packetization_mode, 0);
        assert_eq!(s.h264[0].profile_level_id, 0x42000a);
    }

    proptest::proptest! {
        #[test]
        fn never_panics(s in "\\PC*") {
            let _ = inspect_offer(&s);
        }

        #[test]
        fn never_panics_on_mangled_offers(cut in 0usize..2000, junk in "[ -~]{0,40}") {
            let mut s = GSTREAMER.to_string();
            let at = (cut % s.len()).min(s.len());
            if s.is_char_boundary(at) {
                s.insert_str(at, &junk);
            }
            let _ = inspect_offer(&s);
        }
    }
}
