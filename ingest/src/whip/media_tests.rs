use super::*;
use crate::whip::sdp::inspect_offer;
use std::time::Duration;

const GST_OFFER: &str = include_str!("../../testdata/whip/gstreamer122_whipsink_offer.sdp");
/// x264's SPS from GStreamer's offer: constrained baseline 3.1, 1280x720.
const SPS_720: &[u8] = &[
    0x67, 0x42, 0xc0, 0x1f, 0xda, 0x01, 0x40, 0x16, 0xec, 0x05, 0xa8, 0x08, 0x08, 0x0a, 0x00, 0x00,
    0x03, 0x00, 0x02, 0x00, 0x00, 0x03, 0x00, 0x79, 0x1e, 0x30, 0x65, 0x40,
];
const PPS: &[u8] = &[0x68, 0xce, 0x3c, 0x80];

/// A baseline SPS for 640x360 (40x23 macroblocks, 4 rows cropped), written bit by bit.
fn sps_360() -> Vec<u8> {
    let mut bits = String::new();
    let ue = |b: &mut String, v: u32| {
        let s = format!("{:b}", v + 1);
        b.push_str(&"0".repeat(s.len() - 1));
        b.push_str(&s);
    };
    bits.push_str("010000100000000000011110"); // profile 66, constraints 0, level 30
    ue(&mut bits, 0); // sps id
    ue(&mut bits, 0); // log2_max_frame_num_minus4
    ue(&mut bits, 2); // pic_order_cnt_type
    ue(&mut bits, 1); // max_num_ref_frames
    bits.push('0'); // gaps
    ue(&mut bits, 39); // width in mbs - 1
    ue(&mut bits, 22); // height in map units - 1
    bits.push_str("11"); // frame_mbs_only, direct_8x8
    bits.push('1'); // cropping
    for v in [0, 0, 0, 4] {
        ue(&mut bits, v);
    }
    bits.push('0'); // no VUI
    bits.push('1'); // rbsp stop bit
    while !bits.len().is_multiple_of(8) {
        bits.push('0');
    }
    let mut out = vec![0x67];
    out.extend(
        bits.as_bytes()
            .chunks(8)
            .map(|c| u8::from_str_radix(std::str::from_utf8(c).unwrap(), 2).unwrap()),
    );
    out
}

struct Gen {
    t0: Instant,
    vseq: u64,
    aseq: u64,
}

impl Gen {
    fn new() -> Self {
        Gen {
            t0: Instant::now(),
            vseq: 100,
            aseq: 5000,
        }
    }

    /// One picture as single-NAL packets (OBS style: SPS and PPS in packets of their own).
    fn picture(&mut self, i: u64, nals: &[&[u8]]) -> Vec<Packet> {
        nals.iter()
            .enumerate()
            .map(|(k, n)| {
                self.vseq += 1;
                Packet {
                    pt: 96,
                    seq: self.vseq,
                    rtp_time: 1_000_000 + i * 3000,
                    marker: k == nals.len() - 1,
                    payload: Bytes::copy_from_slice(n),
                    arrival: self.t0 + Duration::from_millis(i * 33),
                    sender_report: None,
                }
            })
            .collect()
    }

    fn opus(&mut self, i: u64) -> Packet {
        self.aseq += 1;
        Packet {
            pt: 111,
            seq: self.aseq,
            rtp_time: 7_000 + i * 960,
            marker: false,
            payload: Bytes::from_static(&[0xfc, 1, 2, 3]),
            arrival: self.t0 + Duration::from_millis(i * 20),
            sender_report: None,
        }
    }
}

fn state() -> MediaState {
    MediaState::new(inspect_offer(GST_OFFER).unwrap())
}

fn collect(m: &mut MediaState, pkts: Vec<Packet>, out: &mut Vec<IngestEvent>) {
    for p in pkts {
        m.push(p, &mut |e| {
            out.push(e);
            true
        });
    }
}

fn video_size(ev: &IngestEvent) -> Option<(u16, u16)> {
    match ev {
        IngestEvent::Tracks(t) => t.iter().find_map(|t| match t.codec {
            Codec::H264 { width, height, .. } => Some((width, height)),
            _ => None,
        }),
        _ => None,
    }
}

#[test]
fn tracks_come_from_the_first_idr_and_audio_waits_for_them() {
    let mut g = Gen::new();
    let mut m = state();
    let mut out = Vec::new();
    // Audio and a P picture before any IDR: nothing to put them in yet.
    let early = vec![g.opus(0), g.opus(1)];
    collect(&mut m, early, &mut out);
    let p = g.picture(0, &[&[0x41, 1]]);
    collect(&mut m, p, &mut out);
    assert!(out.is_empty());
    assert!(m.take_keyframe_wanted(), "no IDR yet: ask for one");
    let idr = g.picture(1, &[SPS_720, PPS, &[0x65, 0x88, 1]]);
    collect(&mut m, idr, &mut out);
    let a = g.opus(2);
    collect(&mut m, vec![a], &mut out);
    assert_eq!(out.len(), 3, "{out:?}");
    assert_eq!(video_size(&out[0]), Some((1280, 720)));
    let IngestEvent::Tracks(t) = &out[0] else {
        panic!()
    };
    assert_eq!(
        t[1].codec,
        Codec::Opus {
            channels: 2,
            pre_skip: 312,
            input_sample_rate: 48_000
        }
    );
    let IngestEvent::Frame(v) = &out[1] else {
        panic!()
    };
    assert!(v.keyframe && v.kind == TrackKind::Video);
    // SPS and PPS stay in band, each length-prefixed.
    assert_eq!(&v.data[..4], &(SPS_720.len() as u32).to_be_bytes());
    let IngestEvent::Frame(a) = &out[2] else {
        panic!()
    };
    assert_eq!(a.kind, TrackKind::Audio);
    assert_eq!(&a.data[..], &[0xfc, 1, 2, 3]);
}

#[test]
fn a_new_sps_re_announces_the_tracks() {
    let mut g = Gen::new();
    let mut m = state();
    let mut out = Vec::new();
    let mut pkts = g.picture(0, &[SPS_720, PPS, &[0x65, 0x88, 1]]);
    pkts.extend(g.picture(1, &[&[0x41, 1]]));
    // Same parameter sets again: no new Tracks.
    pkts.extend(g.picture(2, &[SPS_720, PPS, &[0x65, 0x88, 2]]));
    let sps = sps_360();
    pkts.extend(g.picture(3, &[&sps, PPS, &[0x65, 0x88, 3]]));
    pkts.extend(g.picture(4, &[&[0x41, 2]]));
    collect(&mut m, pkts, &mut out);
    let sizes: Vec<(u16, u16)> = out.iter().filter_map(video_size).collect();
    assert_eq!(sizes, vec![(1280, 720), (640, 360)]);
    let kinds: Vec<&str> = out
        .iter()
        .map(|e| match e {
            IngestEvent::Tracks(_) => "T",
            IngestEvent::Frame(f) if f.keyframe => "K",
            IngestEvent::Frame(_) => "P",
            IngestEvent::Stats(_) => "S",
            IngestEvent::Frames(_) => unreachable!("WHIP sends frames one by one"),
        })
        .collect();
    assert_eq!(kinds, vec!["T", "K", "P", "K", "T", "K", "P"]);
    // The video timeline runs on across the change.
    let dts: Vec<i64> = out
        .iter()
        .filter_map(|e| match e {
            IngestEvent::Frame(f) => Some(f.dts),
            _ => None,
        })
        .collect();
    assert_eq!(dts, vec![0, 3000, 6000, 9000, 12000]);
}

#[test]
fn a_full_channel_drops_video_until_the_next_idr() {
    let mut g = Gen::new();
    let mut m = state();
    let mut out = Vec::new();
    let idr = g.picture(0, &[SPS_720, PPS, &[0x65, 0x88, 1]]);
    collect(&mut m, idr, &mut out);
    m.take_keyframe_wanted(); // asked while the first IDR was on its way
    let p = g.picture(1, &[&[0x41, 1]]);
    collect(&mut m, p, &mut out);
    assert!(!m.take_keyframe_wanted(), "flowing video needs no keyframe");
    // The stream session is busy: picture 2 does not fit.
    for p in g.picture(2, &[&[0x41, 2]]) {
        m.push(p, &mut |_| false);
    }
    assert!(m.take_keyframe_wanted());
    let mut pkts = g.picture(3, &[&[0x41, 3]]);
    pkts.extend(g.picture(4, &[SPS_720, PPS, &[0x65, 0x88, 4]]));
    pkts.extend(g.picture(5, &[&[0x41, 5]]));
    collect(&mut m, pkts, &mut out);
    let frames: Vec<(i64, bool)> = out
        .iter()
        .filter_map(|e| match e {
            IngestEvent::Frame(f) => Some((f.dts, f.keyframe)),
            _ => None,
        })
        .collect();
    // Picture 3 references the dropped picture 2: it must not come out.
    assert_eq!(
        frames,
        vec![(0, true), (3000, false), (12000, true), (15000, false)]
    );
    assert_eq!(m.counters.dropped, 2);
}

#[test]
fn late_and_duplicate_audio_is_dropped() {
    let mut g = Gen::new();
    let mut m = state();
    let mut out = Vec::new();
    let idr = g.picture(0, &[SPS_720, PPS, &[0x65, 0x88, 1]]);
    collect(&mut m, idr, &mut out);
    let a1 = g.opus(1);
    let a2 = g.opus(2);
    let a3 = g.opus(3);
    collect(&mut m, vec![a1, a3.clone(), a2, a3, g.opus(4)], &mut out);
    let audio: Vec<i64> = out
        .iter()
        .filter_map(|e| match e {
            IngestEvent::Frame(f) if f.kind == TrackKind::Audio => Some(f.dts),
            _ => None,
        })
        .collect();
    assert_eq!(audio.len(), 3, "a2 came late, a3 twice: {audio:?}");
    assert!(audio.windows(2).all(|w| w[1] > w[0]));
    assert_eq!(audio[1] - audio[0], 2 * 960);
}
