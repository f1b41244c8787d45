//! Structural walk of init segments with mp4-atom: decode what we encode, check the fields a
//! player relies on, and re-encode to the identical bytes.

mod common;

use bytes::Bytes;
use mp4_atom::{Any, Codec as Entry, Encode};
use packager::fmp4::write_init;
use packager::{Codec, Track, TrackKind};

fn moov_of(init: &[u8]) -> mp4_atom::Moov {
    let mut b = init;
    let mut moov = None;
    let mut kinds = Vec::new();
    let mut reencoded = Vec::new();
    while !b.is_empty() {
        let any = <Any as mp4_atom::Decode>::decode(&mut b).expect("box");
        any.encode(&mut reencoded).expect("re-encode");
        kinds.push(any.kind().to_string());
        if let Any::Moov(m) = any {
            moov = Some(m);
        }
    }
    assert_eq!(kinds, ["ftyp", "moov"]);
    assert_eq!(reencoded, init, "decode + encode is the identity");
    moov.expect("moov")
}

#[test]
fn h264_aac_init_has_what_players_need() {
    let tracks = common::tracks(true);
    let init = write_init(&tracks).unwrap();
    let moov = moov_of(&init);
    assert_eq!(moov.mvhd.next_track_id, 3);
    let trex = &moov.mvex.as_ref().expect("mvex").trex;
    assert_eq!(trex.iter().map(|t| t.track_id).collect::<Vec<_>>(), [1, 2]);
    assert!(trex.iter().all(|t| t.default_sample_description_index == 1));

    let video = &moov.trak[0];
    assert_eq!(video.tkhd.track_id, 1);
    assert_eq!(video.mdia.mdhd.timescale, 90_000);
    assert_eq!(video.mdia.hdlr.handler.as_ref(), b"vide");
    assert!(video.mdia.minf.vmhd.is_some());
    match &video.mdia.minf.stbl.stsd.codecs[..] {
        [Entry::Avc1(avc1)] => {
            assert_eq!((avc1.visual.width, avc1.visual.height), (320, 240));
            assert_eq!(avc1.avcc.avc_profile_indication, 0x64);
            assert_eq!(avc1.avcc.length_size, 4);
            assert_eq!(avc1.avcc.sequence_parameter_sets.len(), 1);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(video.tkhd.width.integer(), 320);

    let audio = &moov.trak[1];
    assert_eq!(audio.tkhd.track_id, 2);
    assert_eq!(audio.mdia.mdhd.timescale, 48_000);
    assert_eq!(audio.mdia.hdlr.handler.as_ref(), b"soun");
    match &audio.mdia.minf.stbl.stsd.codecs[..] {
        [Entry::Mp4a(mp4a)] => {
            assert_eq!(mp4a.audio.channel_count, 2);
            let dc = &mp4a.esds.es_desc.dec_config;
            assert_eq!(dc.object_type_indication, 0x40);
            assert_eq!(dc.dec_specific.as_ref().unwrap().raw, [0x11, 0x90]);
        }
        other => panic!("{other:?}"),
    }
    // Empty sample tables, as fragmented files have.
    for t in &moov.trak {
        let stbl = &t.mdia.minf.stbl;
        assert!(stbl.stts.entries.is_empty());
        assert_eq!(stbl.stco.as_ref().map(|s| s.entries.len()), Some(0));
        assert!(t.edts.is_none());
    }
}

#[test]
fn opus_init_keeps_48k_and_pre_skip() {
    let tracks = vec![Track {
        kind: TrackKind::Audio,
        codec: Codec::Opus {
            channels: 2,
            pre_skip: 312,
            input_sample_rate: 48_000,
        },
        timescale: 48_000,
    }];
    let moov = moov_of(&write_init(&tracks).unwrap());
    let trak = &moov.trak[0];
    assert_eq!(trak.mdia.mdhd.timescale, 48_000);
    match &trak.mdia.minf.stbl.stsd.codecs[..] {
        [Entry::Opus(o)] => {
            assert_eq!(o.dops.pre_skip, 312);
            assert_eq!(o.dops.output_channel_count, 2);
            assert_eq!(o.dops.input_sample_rate, 48_000);
            assert!(o.dops.channel_mapping.is_none());
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn bad_track_configs_are_errors() {
    let bad_avcc = vec![Track {
        kind: TrackKind::Video,
        codec: Codec::H264 {
            avcc: Bytes::from_static(&[2, 0, 0]),
            width: 1,
            height: 1,
        },
        timescale: 90_000,
    }];
    assert!(write_init(&bad_avcc).is_err());
    let surround_opus = vec![Track {
        kind: TrackKind::Audio,
        codec: Codec::Opus {
            channels: 6,
            pre_skip: 312,
            input_sample_rate: 48_000,
        },
        timescale: 48_000,
    }];
    assert!(write_init(&surround_opus).is_err());
    let mismatch = vec![Track {
        kind: TrackKind::Video,
        codec: Codec::Opus {
            channels: 2,
            pre_skip: 0,
            input_sample_rate: 48_000,
        },
        timescale: 48_000,
    }];
    assert!(write_init(&mismatch).is_err());
}
