//! `ContinuationDemuxer` on real MediaRecorder output (Chromium 156, fake camera, H.264 +
//! Opus, fMP4 and WebM; recorded with `testdata/upload/chromium156_mediarecorder_record.html`)
//! and on ffmpeg's fragmented MP4: frames equal ffprobe's view of the concatenated blobs, and
//! any re-chunking, with or without a persist/resume between chunks, gives the same frames.

mod upload_common;

use ingest::upload::{
    classify_chunk, index_mp4, ChunkKind, ContainerFormat, ContinuationDemuxer, DemuxError,
};
use packager::{Codec, MediaFrame, TrackKind};
use proptest::prelude::*;
use std::io::Cursor;
use std::path::PathBuf;

fn testdata(name: &str) -> Vec<u8> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/upload")
        .join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The blobs of one recording, in order.
fn blobs(set: &str, ext: &str) -> Vec<Vec<u8>> {
    (0..)
        .map(|i| format!("chromium156_mediarecorder_{set}_{i:03}.{ext}"))
        .take_while(|n| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("testdata/upload")
                .join(n)
                .exists()
        })
        .map(|n| testdata(&n))
        .collect()
}

/// Feeds `chunks` in order (the first must hold the header).
fn feed(chunks: &[&[u8]]) -> (ContinuationDemuxer, Vec<MediaFrame>) {
    let (mut d, mut frames) = ContinuationDemuxer::new_from_header(chunks[0]).expect("header");
    for c in &chunks[1..] {
        frames.extend(d.push_chunk(c).expect("chunk"));
    }
    (d, frames)
}

/// Like `feed`, but persists and resumes the reader between every two chunks, as the server
/// does between two upload requests.
fn feed_resuming(chunks: &[&[u8]]) -> Vec<MediaFrame> {
    let (d, mut frames) = ContinuationDemuxer::new_from_header(chunks[0]).expect("header");
    let header = d.header_bytes().to_vec();
    let mut carry = d.carry().to_vec();
    for c in &chunks[1..] {
        let mut d = ContinuationDemuxer::resume(&header, &carry).expect("resume");
        frames.extend(d.push_chunk(c).expect("chunk"));
        carry = d.carry().to_vec();
    }
    frames
}

/// (codec_name, time_base denominator) per stream and (stream, pts, dts, size, key) per packet
/// from a committed ffprobe dump.
type Dump = (Vec<(String, u32)>, Vec<(usize, i64, i64, usize, bool)>);
fn dump(name: &str) -> Dump {
    let text = String::from_utf8(testdata(name)).unwrap();
    let field = |l: &str, k: &str| -> Option<String> {
        l.split('|')
            .find_map(|kv| kv.strip_prefix(k)?.strip_prefix('=').map(str::to_string))
    };
    let mut streams = Vec::new();
    let mut packets = Vec::new();
    for l in text.lines() {
        if l.starts_with("index=") {
            let tb = field(l, "time_base").unwrap();
            streams.push((field(l, "codec_name").unwrap(), tb[2..].parse().unwrap()));
        } else if l.starts_with("stream_index=") {
            packets.push((
                field(l, "stream_index").unwrap().parse().unwrap(),
                field(l, "pts").unwrap().parse().unwrap(),
                field(l, "dts").unwrap().parse().unwrap(),
                field(l, "size").unwrap().parse().unwrap(),
                field(l, "flags").unwrap().starts_with('K'),
            ));
        }
    }
    (streams, packets)
}

/// Our frames of one kind equal ffprobe's packets of the stream with that codec: count, size,
/// keyframe flags, and pts/dts once converted from ffprobe's time base to the track timescale.
fn assert_matches_dump(d: &ContinuationDemuxer, frames: &[MediaFrame], dump_name: &str) {
    let (streams, packets) = dump(dump_name);
    for (kind, codec) in [(TrackKind::Video, "h264"), (TrackKind::Audio, "opus")] {
        let idx = streams
            .iter()
            .position(|s| s.0 == codec)
            .expect("stream in dump");
        let tb = i64::from(streams[idx].1);
        let ts = i64::from(
            d.tracks()
                .iter()
                .find(|t| t.kind == kind)
                .unwrap()
                .timescale,
        );
        let want: Vec<_> = packets
            .iter()
            .filter(|p| p.0 == idx)
            .map(|p| (p.1 * ts / tb, p.2 * ts / tb, p.3, p.4))
            .collect();
        let got: Vec<_> = frames
            .iter()
            .filter(|f| f.kind == kind)
            .map(|f| {
                (
                    f.dts + i64::from(f.cts_offset),
                    f.dts,
                    f.data.len(),
                    f.keyframe,
                )
            })
            .collect();
        assert_eq!(got.len(), want.len(), "{dump_name} {kind:?} frame count");
        assert_eq!(got, want, "{dump_name} {kind:?}");
    }
}

fn check_tracks(d: &ContinuationDemuxer, video_timescale: u32) {
    assert_eq!(d.tracks().len(), 2);
    let v = &d.tracks()[0];
    assert_eq!((v.kind, v.timescale), (TrackKind::Video, video_timescale));
    assert!(
        matches!(
            v.codec,
            Codec::H264 {
                width: 320,
                height: 240,
                ..
            }
        ),
        "{:?}",
        v.codec
    );
    let a = &d.tracks()[1];
    assert_eq!((a.kind, a.timescale), (TrackKind::Audio, 48000));
    assert!(
        matches!(a.codec, Codec::Opus { channels: 1, .. }),
        "{:?}",
        a.codec
    );
}

#[test]
fn chromium_fmp4_blobs_match_ffprobe() {
    let b = blobs("h264_opus_kf1s", "mp4");
    assert_eq!(b.len(), 5);
    let chunks: Vec<&[u8]> = b.iter().map(Vec::as_slice).collect();
    let (d, frames) = feed(&chunks);
    assert_eq!(d.format(), ContainerFormat::Fmp4);
    check_tracks(&d, 20000); // Chromium's mp4 muxer writes a 20 kHz video timescale
    assert_matches_dump(
        &d,
        &frames,
        "chromium156_mediarecorder_h264_opus_kf1s_mp4.txt",
    );
    assert!(d.pending_bytes().is_empty());
    assert_eq!(feed_resuming(&chunks), frames);
}

#[test]
fn chromium_webm_blobs_match_ffprobe() {
    for set in ["h264_opus_kf1s", "h264_opus_nokf"] {
        let b = blobs(set, "webm");
        let chunks: Vec<&[u8]> = b.iter().map(Vec::as_slice).collect();
        let (d, frames) = feed(&chunks);
        assert_eq!(d.format(), ContainerFormat::WebM);
        check_tracks(&d, 90000);
        assert_matches_dump(
            &d,
            &frames,
            &format!("chromium156_mediarecorder_{set}_webm.txt"),
        );
        assert_eq!(feed_resuming(&chunks), frames, "{set} with resume");
    }
}

/// Chromium's WebM blobs start inside a SimpleBlock: the carry holds the cut element.
#[test]
fn chromium_webm_blob_boundaries_fall_mid_element() {
    let b = blobs("h264_opus_kf1s", "webm");
    let (d, _) = ContinuationDemuxer::new_from_header(&b[0]).unwrap();
    assert!(
        !d.pending_bytes().is_empty(),
        "blob 0 ends inside an element"
    );
}

/// Re-chunks the concatenated stream: first chunk = the shortest acceptable one + `first_extra`
/// bytes, then the given chunk sizes (cycled).
fn rechunk<'a>(
    all: &'a [u8],
    min_first: usize,
    first_extra: usize,
    sizes: &[usize],
) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    let first = (min_first + first_extra).min(all.len());
    out.push(&all[..first]);
    let mut pos = first;
    let mut i = 0;
    while pos < all.len() {
        let n = sizes[i % sizes.len()].max(1).min(all.len() - pos);
        out.push(&all[pos..pos + n]);
        pos += n;
        i += 1;
    }
    out
}

/// The concatenated blobs and the shortest first chunk the reader accepts (the header, and for
/// Chromium's WebM also the first keyframe, whose SPS/PPS make the avcC).
fn concatenated(set: &str, ext: &str) -> (Vec<u8>, usize) {
    let all = blobs(set, ext).concat();
    let (mut lo, mut hi) = (1usize, all.len());
    while lo < hi {
        let mid = (lo + hi) / 2;
        if ContinuationDemuxer::new_from_header(&all[..mid]).is_ok() {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    (all, lo)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Any split of the stream into chunks gives the same frames as the browser's own split,
    /// with and without a persist/resume between chunks.
    #[test]
    fn any_chunking_gives_the_same_frames(
        which in 0usize..3,
        first_extra in 0usize..3000,
        sizes in prop::collection::vec(1usize..9000, 1..6),
    ) {
        let (set, ext) = [("h264_opus_kf1s", "mp4"), ("h264_opus_kf1s", "webm"), ("h264_opus_nokf", "webm")][which];
        let (all, min_first) = concatenated(set, ext);
        let (_, reference) = feed(&[&all[..]]);
        let chunks = rechunk(&all, min_first, first_extra, &sizes);
        let (_, frames) = feed(&chunks);
        prop_assert_eq!(&frames, &reference);
        prop_assert_eq!(&feed_resuming(&chunks), &reference);
    }
}

/// ffmpeg's fragmented MP4 (absolute `base_data_offset`s, B-frames) read in chunks gives the
/// frames `index_mp4` reads from the whole file.
#[test]
fn ffmpeg_fragmented_in_chunks_equals_index_mp4() {
    let all = testdata("ffmpeg5_frag_bframes_aac.mp4");
    let idx = index_mp4(&mut Cursor::new(&all)).unwrap();
    let mut cur = Cursor::new(&all);
    let want: Vec<MediaFrame> = idx
        .samples
        .iter()
        .map(|s| idx.read_frame(&mut cur, s).unwrap())
        .collect();
    assert_eq!(classify_chunk(&all), ChunkKind::Fmp4Init);
    let header_len = ContinuationDemuxer::new_from_header(&all)
        .unwrap()
        .0
        .header_bytes()
        .len();
    for sizes in [&[4096usize][..], &[100, 7000, 13], &[50_000]] {
        let chunks = rechunk(&all, header_len, 17, sizes);
        let (d, frames) = feed(&chunks);
        assert_eq!(d.tracks(), &idx.tracks[..]);
        assert_eq!(frames, want, "chunk sizes {sizes:?}");
        assert_eq!(feed_resuming(&chunks), want);
    }
}

#[test]
fn vp8_and_vp9_recordings_are_unsupported_codecs() {
    for (name, want) in [
        ("chromium156_mediarecorder_vp8_opus_000.webm", "V_VP8"),
        ("chromium156_mediarecorder_vp9_opus_000.mp4", "vp09"),
    ] {
        match ContinuationDemuxer::new_from_header(&testdata(name)) {
            Err(DemuxError::UnsupportedCodec { fourcc }) => assert_eq!(fourcc, want),
            other => panic!(
                "{name}: {:?}",
                other.map(|(d, f)| (d.tracks().to_vec(), f.len()))
            ),
        }
    }
}

#[test]
fn classifies_chunks() {
    let mp4 = blobs("h264_opus_kf1s", "mp4");
    let webm = blobs("h264_opus_kf1s", "webm");
    assert_eq!(classify_chunk(&mp4[0]), ChunkKind::Fmp4Init);
    assert_eq!(classify_chunk(&mp4[1]), ChunkKind::Continuation);
    assert_eq!(classify_chunk(&webm[0]), ChunkKind::WebmHeader);
    assert_eq!(classify_chunk(&webm[1]), ChunkKind::Continuation);
    assert_eq!(
        classify_chunk(&testdata("ffmpeg5_cut_bframes_aac.mp4")),
        ChunkKind::Mp4File
    );
    assert_eq!(classify_chunk(b""), ChunkKind::Continuation);
    assert_eq!(classify_chunk(&mp4[1][100..]), ChunkKind::Continuation);
}

/// A chunk that fails leaves the reader as it was: the right chunk can follow.
#[test]
fn failed_chunk_changes_nothing() {
    for ext in ["mp4", "webm"] {
        let b = blobs("h264_opus_kf1s", ext);
        let chunks: Vec<&[u8]> = b.iter().map(Vec::as_slice).collect();
        let (_, want) = feed(&chunks);
        let (mut d, mut frames) = ContinuationDemuxer::new_from_header(chunks[0]).unwrap();
        let carry = d.carry().to_vec();
        // A new header where a continuation belongs is refused.
        let bad = [chunks[0], chunks[1]].concat();
        if ext == "mp4" {
            // Bytes from the middle of the header are no continuation either. (WebM has no
            // such check: after a cut SimpleBlock header any bytes can be its body.)
            assert!(
                d.push_chunk(&bad[chunks[0].len() / 3..]).is_err(),
                "out of sequence"
            );
        }
        assert!(
            d.push_chunk(chunks[0]).is_err(),
            "{ext}: header inside a continuation"
        );
        assert_eq!(d.carry(), &carry[..]);
        for c in &chunks[1..] {
            frames.extend(d.push_chunk(c).unwrap());
        }
        assert_eq!(frames, want);
    }
}

#[test]
fn header_cut_short_is_truncated_and_garbage_is_refused() {
    let b = blobs("h264_opus_kf1s", "mp4");
    assert!(matches!(
        ContinuationDemuxer::new_from_header(&b[0][..600]),
        Err(DemuxError::Truncated { .. })
    ));
    let w = blobs("h264_opus_kf1s", "webm");
    assert!(matches!(
        ContinuationDemuxer::new_from_header(&w[0][..100]),
        Err(DemuxError::Truncated { .. })
    ));
    assert!(matches!(
        ContinuationDemuxer::new_from_header(&b[1]),
        Err(DemuxError::NotMp4 { .. })
    ));
    assert!(ContinuationDemuxer::resume(&b[0], b"not a carry").is_err());
}

/// ffmpeg's Matroska (H.264 with avcC CodecPrivate and length-prefixed frames, Opus with
/// CodecDelay, known-size Clusters, Cues, SeekHead, Void) read in 5000-byte chunks matches
/// ffprobe: same packets, sizes and key flags, times within ffprobe's 1 ms rounding.
#[test]
fn ffmpeg_matroska_h264_opus_matches_ffprobe() {
    let p = upload_common::work_dir().join("ffmpeg.mkv");
    upload_common::run(
        std::process::Command::new("ffmpeg")
            .args([
                "-v",
                "error",
                "-y",
                "-f",
                "lavfi",
                "-i",
                "testsrc2=size=320x240:rate=30",
                "-f",
                "lavfi",
                "-i",
                "sine=frequency=440:sample_rate=48000",
                "-t",
                "3",
                "-c:v",
                "libx264",
                "-preset",
                "veryfast",
                "-bf",
                "0",
                "-g",
                "30",
                "-c:a",
                "libopus",
                "-b:a",
                "32k",
            ])
            .arg(&p),
    );
    let all = std::fs::read(&p).unwrap();
    assert_eq!(classify_chunk(&all), ChunkKind::WebmHeader);
    let chunks: Vec<&[u8]> = all.chunks(5000).collect();
    let (d, frames) = feed(&chunks);
    let streams = upload_common::probe(&p);
    for s in &streams {
        let kind = if s.codec_type == "video" {
            TrackKind::Video
        } else {
            TrackKind::Audio
        };
        let ts = i64::from(
            d.tracks()
                .iter()
                .find(|t| t.kind == kind)
                .unwrap()
                .timescale,
        );
        let ours: Vec<&MediaFrame> = frames.iter().filter(|f| f.kind == kind).collect();
        assert_eq!(ours.len(), s.packets.len(), "{kind:?} count");
        for (f, p) in ours.iter().zip(&s.packets) {
            assert_eq!(f.keyframe, p.key);
            let want = p.pts * ts / i64::from(s.timebase_den);
            assert!(
                (f.dts - want).abs() <= ts / 1000,
                "{kind:?} {} vs ffprobe {}",
                f.dts,
                want
            );
        }
    }
    assert!(matches!(
        d.tracks()[1].codec,
        Codec::Opus { pre_skip: 312, .. }
    ));
    // The first Opus frame is pre-skip: it starts 312 samples before zero.
    assert_eq!(
        frames
            .iter()
            .find(|f| f.kind == TrackKind::Audio)
            .unwrap()
            .dts,
        -312
    );
}

/// Matroska H.264 with B-frames has no decode times: refused, not given made-up ones.
#[test]
fn matroska_with_b_frames_is_refused() {
    let p = upload_common::work_dir().join("ffmpeg_bframes.mkv");
    upload_common::run(
        std::process::Command::new("ffmpeg")
            .args([
                "-v",
                "error",
                "-y",
                "-f",
                "lavfi",
                "-i",
                "testsrc2=size=160x120:rate=30",
                "-t",
                "1",
                "-c:v",
                "libx264",
                "-preset",
                "veryfast",
                "-bf",
                "3",
            ])
            .arg(&p),
    );
    let all = std::fs::read(&p).unwrap();
    match ContinuationDemuxer::new_from_header(&all) {
        Err(DemuxError::Malformed { reason, .. }) => {
            assert!(reason.contains("B-frames"), "{reason}")
        }
        other => panic!("{:?}", other.map(|(_, f)| f.len())),
    }
}
