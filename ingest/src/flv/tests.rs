use super::*;

fn b(v: &[u8]) -> Bytes {
    Bytes::copy_from_slice(v)
}

const SPS_720P: &[u8] = &[
    0x67, 0x64, 0x00, 0x1f, 0xac, 0xd9, 0x40, 0x50, 0x05, 0xbb, 0x01, 0x10, 0x00, 0x00, 0x03, 0x00,
    0x10, 0x00, 0x00, 0x03, 0x03, 0xc0, 0xf1, 0x83, 0x19, 0x60,
];

fn avcc() -> Vec<u8> {
    let mut v = vec![1, 0x64, 0x00, 0x1f, 0xff, 0xe1, 0, SPS_720P.len() as u8];
    v.extend_from_slice(SPS_720P);
    v.extend_from_slice(&[1, 0, 4, 0x68, 0xeb, 0xe3, 0xcb]);
    v
}

#[test]
fn avc_sequence_header() {
    let mut body = vec![0x17, 0, 0, 0, 0];
    body.extend(avcc());
    match parse_video_tag(&b(&body)).unwrap() {
        VideoTag::SequenceHeader(Codec::H264 {
            avcc: a,
            width,
            height,
        }) => {
            assert_eq!(&a[..], &avcc()[..]);
            assert_eq!((width, height), (1280, 720));
        }
        x => panic!("{x:?}"),
    }
}

#[test]
fn avc_nalu_with_negative_and_positive_composition_time() {
    let body = [0x27, 1, 0xff, 0xff, 0xfe, 0, 0, 0, 1, 0x41];
    assert_eq!(
        parse_video_tag(&b(&body)).unwrap(),
        VideoTag::Frame {
            keyframe: false,
            composition_time_ms: -2,
            data: b(&[0, 0, 0, 1, 0x41]),
        }
    );
    let body = [0x17, 1, 0x00, 0x00, 0x43, 0, 0, 0, 1, 0x65];
    assert_eq!(
        parse_video_tag(&b(&body)).unwrap(),
        VideoTag::Frame {
            keyframe: true,
            composition_time_ms: 67,
            data: b(&[0, 0, 0, 1, 0x65]),
        }
    );
    // Largest positive SI24.
    let body = [0x27, 1, 0x7f, 0xff, 0xff];
    match parse_video_tag(&b(&body)).unwrap() {
        VideoTag::Frame {
            composition_time_ms,
            ..
        } => assert_eq!(composition_time_ms, 0x7f_ffff),
        x => panic!("{x:?}"),
    }
}

#[test]
fn avc_end_of_sequence_and_command_frame() {
    assert_eq!(
        parse_video_tag(&b(&[0x17, 2, 0, 0, 0])).unwrap(),
        VideoTag::EndOfSequence
    );
    assert_eq!(parse_video_tag(&b(&[0x57, 0])).unwrap(), VideoTag::Ignored);
}

#[test]
fn truncated_video_tags_carry_offsets() {
    assert_eq!(
        parse_video_tag(&b(&[])),
        Err(FlvError::Truncated {
            tag: TagType::Video,
            offset: 0,
            len: 0,
            needed: 1
        })
    );
    let e = parse_video_tag(&b(&[0x17, 1, 0])).unwrap_err();
    assert_eq!((e.tag(), e.offset()), (TagType::Video, 3));
    // A sequence header whose avcC is cut inside the SPS.
    let mut body = vec![0x17, 0, 0, 0, 0];
    body.extend(&avcc()[..12]);
    let e = parse_video_tag(&b(&body)).unwrap_err();
    assert!(matches!(e, FlvError::AvcConfig { offset: 5, .. }), "{e:?}");
    assert_eq!(e.tag(), TagType::Video);
}

#[test]
fn legacy_video_codecs_are_refused_by_name() {
    let e = parse_video_tag(&b(&[0x22, 0, 0])).unwrap_err();
    assert_eq!(
        e,
        FlvError::UnsupportedCodec {
            tag: TagType::Video,
            offset: 0,
            codec: "Sorenson H.263"
        }
    );
    assert!(e.to_string().contains("Sorenson"), "{e}");
    assert!(matches!(
        parse_video_tag(&b(&[0x1c, 0, 0, 0, 0])),
        Err(FlvError::UnsupportedCodec { codec, .. }) if codec.starts_with("HEVC")
    ));
}

#[test]
fn enhanced_rtmp_hevc_av1_vp9_are_refused_with_their_fourcc() {
    for fourcc in [b"hvc1", b"av01", b"vp09"] {
        // IsExHeader | keyframe | SequenceStart, FourCC, then a config record.
        let mut body = vec![0x90];
        body.extend_from_slice(fourcc);
        body.extend_from_slice(&[1, 2, 3]);
        let e = parse_video_tag(&b(&body)).unwrap_err();
        assert_eq!(
            e,
            FlvError::UnsupportedEnhancedCodec {
                tag: TagType::Video,
                offset: 1,
                fourcc: *fourcc
            }
        );
        assert!(
            e.to_string().contains(std::str::from_utf8(fourcc).unwrap()),
            "{e}"
        );
    }
}

#[test]
fn enhanced_rtmp_avc1_is_the_same_bitstream() {
    let mut body = vec![0x90];
    body.extend_from_slice(b"avc1");
    body.extend(avcc());
    assert!(matches!(
        parse_video_tag(&b(&body)).unwrap(),
        VideoTag::SequenceHeader(Codec::H264 { width: 1280, .. })
    ));
    let mut body = vec![0xa1];
    body.extend_from_slice(b"avc1");
    body.extend_from_slice(&[0, 0, 0x21, 0, 0, 0, 1, 0x41]);
    assert_eq!(
        parse_video_tag(&b(&body)).unwrap(),
        VideoTag::Frame {
            keyframe: false,
            composition_time_ms: 33,
            data: b(&[0, 0, 0, 1, 0x41])
        }
    );
    let mut body = vec![0x93];
    body.extend_from_slice(b"avc1");
    body.extend_from_slice(&[0, 0, 0, 1, 0x65]);
    assert_eq!(
        parse_video_tag(&b(&body)).unwrap(),
        VideoTag::Frame {
            keyframe: true,
            composition_time_ms: 0,
            data: b(&[0, 0, 0, 1, 0x65])
        }
    );
    // Multitrack is refused before its FourCC is read.
    assert!(matches!(
        parse_video_tag(&b(&[0x96, 0, b'a', b'v', b'c', b'1'])),
        Err(FlvError::UnsupportedPacketType { packet_type: 6, .. })
    ));
}

#[test]
fn aac_sequence_header_uses_the_asc_not_the_flv_flags() {
    // FLV flags say 44 kHz stereo (0xAF, as the spec requires for AAC); the ASC says 48 kHz stereo.
    match parse_audio_tag(&b(&[0xaf, 0, 0x11, 0x90])).unwrap() {
        AudioTag::SequenceHeader(Codec::Aac {
            asc,
            sample_rate,
            channels,
        }) => {
            assert_eq!(&asc[..], &[0x11, 0x90]);
            assert_eq!((sample_rate, channels), (48000, 2));
        }
        x => panic!("{x:?}"),
    }
    // ffmpeg's mono 44.1 kHz: flags 0xAE (mono), ASC 12 08.
    assert!(matches!(
        parse_audio_tag(&b(&[0xae, 0, 0x12, 0x08])).unwrap(),
        AudioTag::SequenceHeader(Codec::Aac {
            sample_rate: 44100,
            channels: 1,
            ..
        })
    ));
}

#[test]
fn raw_aac() {
    assert_eq!(
        parse_audio_tag(&b(&[0xaf, 1, 0x21, 0x10, 0x05])).unwrap(),
        AudioTag::Frame(b(&[0x21, 0x10, 0x05]))
    );
}

#[test]
fn other_audio_codecs_are_refused() {
    for (byte, name) in [
        (0x2f, "MP3"),
        (0xb6, "Speex"),
        (0x7e, "G.711 A-law"),
        (0x3f, "Linear PCM, little endian"),
    ] {
        assert_eq!(
            parse_audio_tag(&b(&[byte, 0, 0])),
            Err(FlvError::UnsupportedCodec {
                tag: TagType::Audio,
                offset: 0,
                codec: name
            })
        );
    }
    let e = parse_audio_tag(&b(&[0x90, b'O', b'p', b'u', b's', 1])).unwrap_err();
    assert_eq!(
        e,
        FlvError::UnsupportedEnhancedCodec {
            tag: TagType::Audio,
            offset: 1,
            fourcc: *b"Opus"
        }
    );
    let e = parse_audio_tag(&b(&[0xaf, 0, 0x16, 0x88])).unwrap_err();
    assert!(matches!(e, FlvError::AacConfig { offset: 2, .. }), "{e:?}");
    assert_eq!(
        parse_audio_tag(&b(&[0xaf])),
        Err(FlvError::Truncated {
            tag: TagType::Audio,
            offset: 1,
            len: 1,
            needed: 2
        })
    );
}

#[test]
fn enhanced_rtmp_mp4a() {
    assert!(matches!(
        parse_audio_tag(&b(&[0x90, b'm', b'p', b'4', b'a', 0x11, 0x90])).unwrap(),
        AudioTag::SequenceHeader(Codec::Aac {
            sample_rate: 48000,
            ..
        })
    ));
    assert_eq!(
        parse_audio_tag(&b(&[0x91, b'm', b'p', b'4', b'a', 7])).unwrap(),
        AudioTag::Frame(b(&[7]))
    );
}

proptest::proptest! {
    #[test]
    fn never_panics(body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64)) {
        let body = Bytes::from(body);
        let _ = parse_video_tag(&body);
        let _ = parse_audio_tag(&body);
    }

    #[test]
    fn video_frame_payload_is_the_rest_of_the_body(
        frame_type in 1u8..=4, cts in -0x80_0000i32..0x80_0000, data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..32)
    ) {
        let mut body = vec![frame_type << 4 | 7, 1];
        body.extend_from_slice(&cts.to_be_bytes()[1..]);
        body.extend_from_slice(&data);
        let parsed = parse_video_tag(&Bytes::from(body)).unwrap();
        proptest::prop_assert_eq!(parsed, VideoTag::Frame {
            keyframe: frame_type == 1 || frame_type == 4,
            composition_time_ms: cts,
            data: Bytes::from(data),
        });
    }
}
