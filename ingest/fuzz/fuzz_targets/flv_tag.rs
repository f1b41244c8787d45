//! FLV tag bodies (`ingest::flv`): the first byte picks audio (even) or video (odd), the rest is
//! the tag body. Seeds: the first audio/video message bodies of `testdata/rtmp/*.c2s.bin`
//! (e.g. the ffmpeg5 AVC sequence header, one chunk at capture offset 3820:
//! `(printf '\x01'; tail -c +3821 ../testdata/rtmp/ffmpeg5_publish.c2s.bin | head -c 52) > corpus/flv_tag/avc`).
#![no_main]

use bytes::Bytes;
use ingest::flv::{parse_audio_tag, parse_video_tag, AudioTag, VideoTag};
use libfuzzer_sys::fuzz_target;
use packager::Codec;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, body)) = data.split_first() else {
        return;
    };
    let body = Bytes::copy_from_slice(body);
    if mode & 1 == 1 {
        match parse_video_tag(&body) {
            Ok(VideoTag::SequenceHeader(Codec::H264 {
                width,
                height,
                avcc,
            })) => {
                assert!(width > 0 && height > 0);
                assert!(body.ends_with(&avcc));
            }
            Ok(VideoTag::Frame { data, .. }) => assert!(body.ends_with(&data)),
            Ok(_) => {}
            Err(e) => assert!(e.offset() <= body.len()),
        }
    } else {
        match parse_audio_tag(&body) {
            Ok(AudioTag::SequenceHeader(Codec::Aac {
                sample_rate,
                channels,
                asc,
            })) => {
                assert!(sample_rate > 0 && channels > 0);
                assert!(body.ends_with(&asc));
            }
            Ok(AudioTag::Frame(data)) => assert!(body.ends_with(&data)),
            Ok(_) => {}
            Err(e) => assert!(e.offset() <= body.len()),
        }
    }
});
