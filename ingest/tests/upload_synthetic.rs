//! `index_mp4` on files built box by box with mp4-atom: the table layouts ffmpeg never writes
//! (co64, several stsc runs, empty edits, trex/tfhd defaults, several trafs per moof) and
//! hostile counts that must not allocate.

use ingest::upload::{index_mp4, index_mp4_with_limits, DemuxError, Limits, SampleRef};
use mp4_atom::{
    Avc1, Avcc, Co64, Ctts, CttsEntry, Edts, Elst, ElstEntry, Encode, Ftyp, Hdlr, Mdhd, Mdia, Mfhd,
    Minf, Moof, Moov, Mvex, Mvhd, Stbl, Stco, Stsc, StscEntry, Stsd, Stss, Stsz, StszSamples, Stts,
    SttsEntry, Tfdt, Tfhd, Tkhd, Traf, Trak, Trex, Trun, TrunEntry, Visual,
};
use packager::{Codec, TrackKind};
use std::io::Cursor;

/// x264's SPS for a 320x240 High-profile stream and a PPS.
const SPS: [u8; 25] = [
    0x67, 0x64, 0x00, 0x0d, 0xac, 0xd9, 0x41, 0x41, 0xfb, 0x01, 0x10, 0x00, 0x00, 0x03, 0x00, 0x10,
    0x00, 0x00, 0x03, 0x03, 0xc0, 0xf1, 0x42, 0x99, 0x60,
];
const PPS: [u8; 6] = [0x68, 0xeb, 0xe3, 0xcb, 0x22, 0xc0];

fn encode<T: Encode>(atom: &T) -> Vec<u8> {
    let mut buf = Vec::new();
    atom.encode(&mut buf).expect("encode");
    buf
}

fn ftyp() -> Vec<u8> {
    encode(&Ftyp {
        major_brand: b"isom".into(),
        minor_version: 0,
        compatible_brands: vec![b"isom".into(), b"avc1".into()],
    })
}

fn mdat(payload: &[u8]) -> Vec<u8> {
    let mut b = ((payload.len() + 8) as u32).to_be_bytes().to_vec();
    b.extend_from_slice(b"mdat");
    b.extend_from_slice(payload);
    b
}

fn video_trak(id: u32, timescale: u32, width: u16, stbl: Stbl, edts: Option<Edts>) -> Trak {
    let mut stbl = stbl;
    stbl.stsd = Stsd {
        codecs: vec![Avc1 {
            visual: Visual {
                width,
                height: if width == 0 { 0 } else { 240 },
                ..Default::default()
            },
            avcc: Avcc::new(&SPS, &PPS).expect("avcc"),
            ..Default::default()
        }
        .into()],
    };
    Trak {
        tkhd: Tkhd {
            track_id: id,
            ..Default::default()
        },
        edts,
        mdia: Mdia {
            mdhd: Mdhd {
                timescale,
                ..Default::default()
            },
            hdlr: Hdlr {
                handler: b"vide".into(),
                name: "video".into(),
            },
            minf: Minf {
                stbl,
                ..Default::default()
            },
        },
        ..Default::default()
    }
}

fn moov(traks: Vec<Trak>, mvex: Option<Mvex>) -> Moov {
    Moov {
        mvhd: Mvhd {
            timescale: 1000,
            ..Default::default()
        },
        mvex,
        trak: traks,
        ..Default::default()
    }
}

/// Five samples of distinct sizes (the payload is the sample index repeated).
fn payload(sizes: &[u32]) -> (Vec<u8>, Vec<u64>) {
    let mut data = Vec::new();
    let mut offs = Vec::new();
    for (i, &s) in sizes.iter().enumerate() {
        offs.push(data.len() as u64);
        data.extend(std::iter::repeat_n(i as u8 + 1, s as usize));
    }
    (data, offs)
}

/// ftyp + moov + mdat with the chunk offsets fixed up once the moov size is known.
fn progressive(make_moov: impl Fn(u64) -> Moov, data: &[u8]) -> Vec<u8> {
    let ftyp = ftyp();
    let probe = encode(&make_moov(0));
    let base = (ftyp.len() + probe.len() + 8) as u64;
    let moov = encode(&make_moov(base));
    assert_eq!(moov.len(), probe.len());
    [ftyp, moov, mdat(data)].concat()
}

fn index(bytes: &[u8]) -> ingest::upload::Mp4Index {
    index_mp4(&mut Cursor::new(bytes)).unwrap_or_else(|e| panic!("{e}"))
}

/// co64 chunk offsets, two stsc runs (3 samples then 2 per chunk), ctts with a negative offset,
/// stss, and a 0×0 sample entry whose size comes from the SPS.
#[test]
fn co64_stsc_runs_ctts_stss() {
    let sizes = [10u32, 20, 30, 40, 50];
    let (data, offs) = payload(&sizes);
    let stbl = |base: u64| Stbl {
        stts: Stts {
            entries: vec![SttsEntry {
                sample_count: 5,
                sample_delta: 3000,
            }],
        },
        ctts: Some(Ctts {
            entries: vec![
                CttsEntry {
                    sample_count: 1,
                    sample_offset: 6000,
                },
                CttsEntry {
                    sample_count: 1,
                    sample_offset: -3000,
                },
                CttsEntry {
                    sample_count: 3,
                    sample_offset: 0,
                },
            ],
        }),
        stss: Some(Stss {
            entries: vec![1, 4],
        }),
        stsc: Stsc {
            entries: vec![
                StscEntry {
                    first_chunk: 1,
                    samples_per_chunk: 3,
                    sample_description_index: 1,
                },
                StscEntry {
                    first_chunk: 2,
                    samples_per_chunk: 2,
                    sample_description_index: 1,
                },
            ],
        },
        stsz: Stsz {
            samples: StszSamples::Different {
                sizes: sizes.to_vec(),
            },
        },
        co64: Some(Co64 {
            entries: vec![base + offs[0], base + offs[3]],
        }),
        ..Default::default()
    };
    let file = progressive(
        |b| moov(vec![video_trak(1, 90000, 0, stbl(b), None)], None),
        &data,
    );
    assert!(file.windows(4).any(|w| w == b"co64"));
    let idx = index(&file);
    assert_eq!(idx.tracks.len(), 1);
    assert!(
        matches!(
            idx.tracks[0].codec,
            Codec::H264 {
                width: 320,
                height: 240,
                ..
            }
        ),
        "{:?}",
        idx.tracks[0].codec
    );
    let got: Vec<(u32, i64, i32, bool)> = idx
        .samples
        .iter()
        .map(|s| (s.size, s.dts, s.cts_offset, s.keyframe))
        .collect();
    // ctts -3000 is folded into the dts (shift 3000), pts unchanged: 6000, 0, 6000, 9000, 12000.
    assert_eq!(
        got,
        vec![
            (10, -3000, 9000, true),
            (20, 0, 0, false),
            (30, 3000, 3000, false),
            (40, 6000, 3000, true),
            (50, 9000, 3000, false),
        ]
    );
    let mut cur = Cursor::new(&file);
    for (i, s) in idx.samples.iter().enumerate() {
        let f = idx.read_frame(&mut cur, s).unwrap();
        assert!(f.data.iter().all(|&b| b == i as u8 + 1));
        assert_eq!(f.duration, Some(3000));
    }
}

/// An empty edit of 0.5 s (movie timescale 1000) then media_time 3000: shift = 45000 − 3000.
#[test]
fn empty_edit_then_media_time() {
    let sizes = [5u32, 5];
    let (data, offs) = payload(&sizes);
    let edts = Edts {
        elst: Some(Elst {
            entries: vec![
                ElstEntry {
                    segment_duration: 500,
                    media_time: None,
                    media_rate: 1i16.into(),
                },
                ElstEntry {
                    segment_duration: 1000,
                    media_time: Some(3000),
                    media_rate: 1i16.into(),
                },
            ],
        }),
    };
    let stbl = |base: u64| Stbl {
        stts: Stts {
            entries: vec![SttsEntry {
                sample_count: 2,
                sample_delta: 3000,
            }],
        },
        stsc: Stsc {
            entries: vec![StscEntry {
                first_chunk: 1,
                samples_per_chunk: 2,
                sample_description_index: 1,
            }],
        },
        stsz: Stsz {
            samples: StszSamples::Identical { count: 2, size: 5 },
        },
        stco: Some(Stco {
            entries: vec![(base + offs[0]) as u32],
        }),
        ..Default::default()
    };
    let file = progressive(
        |b| {
            moov(
                vec![video_trak(1, 90000, 320, stbl(b), Some(edts.clone()))],
                None,
            )
        },
        &data,
    );
    let idx = index(&file);
    let dts: Vec<i64> = idx.samples.iter().map(|s| s.dts).collect();
    assert_eq!(dts, vec![42000, 45000]);
}

fn table_file(stsz: Stsz, stts: Stts, stco: Vec<u32>) -> Vec<u8> {
    let stbl = Stbl {
        stts,
        stsc: Stsc {
            entries: vec![StscEntry {
                first_chunk: 1,
                samples_per_chunk: u32::MAX,
                sample_description_index: 1,
            }],
        },
        stsz,
        stco: Some(Stco { entries: stco }),
        ..Default::default()
    };
    [
        ftyp(),
        encode(&moov(vec![video_trak(1, 90000, 320, stbl, None)], None)),
        mdat(&[0u8; 64]),
    ]
    .concat()
}

/// An `stsz` claiming 2^32−1 samples is refused before anything is allocated for them (a
/// file cannot have more samples than bytes).
#[test]
fn lying_sample_count_is_refused_without_allocating() {
    let stts = Stts {
        entries: vec![SttsEntry {
            sample_count: u32::MAX,
            sample_delta: 1,
        }],
    };
    let file = table_file(
        Stsz {
            samples: StszSamples::Identical {
                count: u32::MAX,
                size: 1,
            },
        },
        stts.clone(),
        vec![0],
    );
    match index_mp4(&mut Cursor::new(&file)) {
        Err(DemuxError::LimitExceeded { what, value, .. }) => {
            assert_eq!(what, "sample count");
            assert_eq!(value, u64::from(u32::MAX));
        }
        other => panic!("{other:?}"),
    }
    // Within the limit but pointing past the end of the file: Truncated at the first sample out.
    let file = table_file(
        Stsz {
            samples: StszSamples::Identical {
                count: 100,
                size: 1000,
            },
        },
        stts,
        vec![0],
    );
    match index_mp4_with_limits(&mut Cursor::new(&file), &Limits::default()) {
        Err(DemuxError::Truncated { offset: 0, .. }) => {}
        other => panic!("{other:?}"),
    }
}

#[test]
fn stts_shorter_than_stsz_is_malformed() {
    let file = table_file(
        Stsz {
            samples: StszSamples::Identical { count: 4, size: 2 },
        },
        Stts {
            entries: vec![SttsEntry {
                sample_count: 3,
                sample_delta: 1,
            }],
        },
        vec![0],
    );
    match index_mp4(&mut Cursor::new(&file)) {
        Err(DemuxError::Malformed {
            box_type, reason, ..
        }) => {
            assert_eq!(box_type, "stts");
            assert!(reason.contains("3 of 4"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
}

fn empty_stbl() -> Stbl {
    Stbl {
        stco: Some(Stco::default()),
        ..Default::default()
    }
}

/// trex defaults, tfhd defaults, first_sample_flags, two trafs in one moof (the second
/// continuing after the first's data), a moof without tfdt continuing the decode time.
#[test]
fn fragments_take_defaults_in_order() {
    let trex = |id| Trex {
        track_id: id,
        default_sample_description_index: 1,
        default_sample_duration: 3000,
        default_sample_size: 7,
        default_sample_flags: 0x0101_0000, // non-sync, depends on others
    };
    let mut audio = video_trak(2, 48000, 320, empty_stbl(), None);
    audio.mdia.hdlr.handler = b"soun".into();
    audio.mdia.minf.stbl.stsd.codecs = vec![mp4_atom::Ac3 {
        audio: mp4_atom::Audio {
            data_reference_index: 1,
            channel_count: 2,
            sample_size: 16,
            sample_rate: 48000u16.into(),
        },
        dac3: mp4_atom::Ac3SpecificBox {
            fscod: 0,
            bsid: 8,
            bsmod: 0,
            acmod: 2,
            lfeon: false,
            bit_rate_code: 10,
        },
    }
    .into()];
    let init = [
        ftyp(),
        encode(&moov(
            vec![video_trak(1, 90000, 320, empty_stbl(), None), audio],
            Some(Mvex {
                mehd: None,
                trex: vec![trex(1), trex(2)],
            }),
        )),
    ]
    .concat();

    // moof 1: traf(track 1, base = moof start since it is the first traf, tfdt 9000, trun with
    // first_sample_flags sync + 3 inherited samples), traf(track 2, skipped, no base: its data
    // follows track 1's, 2 samples of tfhd default size 4), traf(track 1 again, no base, no
    // data_offset, no tfdt: one sample right after track 2's data, decode time continuing).
    let moof1 = |data_offset: i32| Moof {
        mfhd: Mfhd { sequence_number: 1 },
        traf: vec![
            Traf {
                tfhd: Tfhd {
                    track_id: 1,
                    ..Default::default()
                },
                tfdt: Some(Tfdt {
                    base_media_decode_time: 9000,
                }),
                trun: vec![Trun {
                    data_offset: Some(data_offset),
                    samples: mp4_atom::TrunSamples::Inherited {
                        count: 3,
                        first_flags: Some(0x0200_0000),
                    },
                }],
                ..Default::default()
            },
            Traf {
                tfhd: Tfhd {
                    track_id: 2,
                    default_sample_size: Some(4),
                    ..Default::default()
                },
                trun: vec![Trun {
                    data_offset: None,
                    samples: mp4_atom::TrunSamples::Inherited {
                        count: 2,
                        first_flags: None,
                    },
                }],
                ..Default::default()
            },
            Traf {
                tfhd: Tfhd {
                    track_id: 1,
                    ..Default::default()
                },
                trun: vec![Trun {
                    data_offset: None,
                    samples: mp4_atom::TrunSamples::Inherited {
                        count: 1,
                        first_flags: None,
                    },
                }],
                ..Default::default()
            },
        ],
    };
    let len1 = encode(&moof1(0)).len();
    let moof1 = encode(&moof1(len1 as i32 + 8));
    let data1 = mdat(&[1u8; 3 * 7 + 2 * 4 + 7]);
    // moof 2: track 1 only, default-base-is-moof, no tfdt, explicit sizes and flags.
    let moof2 = |data_offset: i32| Moof {
        mfhd: Mfhd { sequence_number: 2 },
        traf: vec![Traf {
            tfhd: Tfhd {
                track_id: 1,
                default_base_is_moof: true,
                ..Default::default()
            },
            trun: vec![Trun {
                data_offset: Some(data_offset),
                samples: vec![
                    TrunEntry {
                        size: Some(5),
                        flags: Some(0x0200_0000),
                        cts: Some(3000),
                        duration: None,
                    },
                    TrunEntry {
                        size: Some(6),
                        flags: Some(0x0101_0000),
                        cts: Some(0),
                        duration: None,
                    },
                ]
                .into(),
            }],
            ..Default::default()
        }],
    };
    let len2 = encode(&moof2(0)).len();
    let moof2 = encode(&moof2(len2 as i32 + 8));
    let data2 = mdat(&[2u8; 11]);
    let file = [init.clone(), moof1.clone(), data1, moof2, data2].concat();

    let idx = index(&file);
    assert_eq!(idx.tracks.len(), 1, "ac-3 audio is skipped");
    assert_eq!(idx.skipped_tracks, vec!["ac-3".to_string()]);
    let m1 = init.len() as u64;
    let m1_data = m1 + len1 as u64 + 8;
    let m2 = m1_data + 36;
    let m2_data = m2 + len2 as u64 + 8;
    let got: Vec<SampleRef> = idx.samples.clone();
    let want = [
        (m1_data, 7, 9000, 0, true),
        (m1_data + 7, 7, 12000, 0, false),
        (m1_data + 14, 7, 15000, 0, false),
        (m1_data + 29, 7, 18000, 0, false),
        (m2_data, 5, 21000, 3000, true),
        (m2_data + 5, 6, 24000, 0, false),
    ];
    let got: Vec<_> = got
        .iter()
        .map(|s| (s.offset, s.size, s.dts, s.cts_offset, s.keyframe))
        .collect();
    assert_eq!(got, want);
    assert!(idx
        .samples
        .iter()
        .all(|s| s.kind == TrackKind::Video && s.duration == 3000));
}

#[test]
fn box_smaller_than_its_header_is_malformed() {
    let mut file = ftyp();
    file.extend_from_slice(&[0, 0, 0, 4]);
    file.extend_from_slice(b"moov");
    match index_mp4(&mut Cursor::new(&file)) {
        Err(DemuxError::Malformed {
            box_type, offset, ..
        }) => {
            assert_eq!(box_type, "moov");
            assert_eq!(offset, ftyp().len() as u64);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn moov_without_media_tracks() {
    let file = [ftyp(), encode(&moov(vec![], None))].concat();
    assert!(matches!(
        index_mp4(&mut Cursor::new(&file)),
        Err(DemuxError::NoMediaTracks)
    ));
}
