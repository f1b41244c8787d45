use super::*;

const SPS: &[u8] = &[0x67, 0x42, 0xc0, 0x1f, 0xda, 0x01, 0x40, 0x16];
const PPS: &[u8] = &[0x68, 0xce, 0x3c, 0x80];

fn idr_slice() -> Bytes {
    let mut v = vec![0x65];
    v.extend((0..3000u32).map(|i| (i % 251) as u8));
    Bytes::from(v)
}

fn p_slice(n: u8) -> Bytes {
    Bytes::from(vec![0x41, n, n, n])
}

/// Packets of one synthetic GOP stream: picture 0 is SPS+PPS (STAP-A) + IDR (FU-A in 3 parts),
/// pictures 1..gop are single-NAL P pictures, then the next IDR. 3000 ticks apart (30 fps).
fn stream(pictures: usize, gop: usize) -> Vec<RtpIn> {
    let t0 = Instant::now();
    let mut out = Vec::new();
    let mut seq = 1000u64;
    for i in 0..pictures {
        let ts = 90_000 + i as u64 * 3000;
        let arrival = t0 + Duration::from_millis(i as u64 * 33);
        let mut push = |payload: Vec<u8>, marker: bool| {
            out.push(RtpIn {
                seq,
                timestamp: ts,
                marker,
                payload: Bytes::from(payload),
                arrival,
            });
            seq += 1;
        };
        if i % gop == 0 {
            let mut stap = vec![24];
            for n in [SPS, PPS] {
                stap.extend_from_slice(&(n.len() as u16).to_be_bytes());
                stap.extend_from_slice(n);
            }
            push(stap, false);
            push(vec![0x09, 0x10], false); // AUD, dropped
            let idr = idr_slice();
            let body = &idr[1..];
            for (k, chunk) in body.chunks(1000).enumerate() {
                let s = if k == 0 { 0x80 } else { 0 };
                let e = if (k + 1) * 1000 >= body.len() {
                    0x40
                } else {
                    0
                };
                let mut p = vec![(idr[0] & 0xe0) | 28, s | e | 5];
                p.extend_from_slice(chunk);
                push(p, e != 0);
            }
        } else {
            push(p_slice(i as u8).to_vec(), true);
        }
    }
    out
}

fn run(d: &mut H264Depacketizer, pkts: Vec<RtpIn>) -> Vec<Result<AccessUnit, H264Error>> {
    let mut out = Vec::new();
    for p in pkts {
        d.push(p);
        while let Some(x) = d.pull() {
            out.push(x);
        }
    }
    out
}

#[test]
fn in_order_stream_gives_every_picture() {
    let mut d = H264Depacketizer::new();
    let out = run(&mut d, stream(60, 30));
    // The marker bit ends each picture, so all 60 are out without waiting for the next one.
    assert_eq!(out.len(), 60);
    let aus: Vec<AccessUnit> = out.into_iter().map(Result::unwrap).collect();
    assert_eq!(
        aus[0].nals,
        vec![
            Bytes::from_static(SPS),
            Bytes::from_static(PPS),
            idr_slice()
        ]
    );
    assert!(aus[0].idr && aus[30].idr);
    assert_eq!(aus.iter().filter(|a| a.idr).count(), 2);
    assert_eq!(aus[1].nals, vec![p_slice(1)]);
    for (i, a) in aus.iter().enumerate() {
        assert_eq!(a.timestamp, 90_000 + i as u64 * 3000);
    }
}

#[test]
fn reordered_packets_are_put_back_in_order() {
    let mut pkts = stream(60, 30);
    // Swap neighbours all over the stream, including inside the FU-A of the IDRs.
    for i in (1..pkts.len() - 1).step_by(3) {
        pkts.swap(i, i + 1);
    }
    let mut d = H264Depacketizer::new();
    let reordered = run(&mut d, pkts);
    let mut d2 = H264Depacketizer::new();
    let straight = run(&mut d2, stream(60, 30));
    let strip = |v: Vec<Result<AccessUnit, H264Error>>| {
        v.into_iter()
            .map(|r| r.map(|a| (a.timestamp, a.nals, a.idr)))
            .collect::<Vec<_>>()
    };
    assert_eq!(strip(reordered), strip(straight));
    assert_eq!(d.dropped, 0);
}

#[test]
fn loss_drops_pictures_until_the_next_idr() {
    let mut pkts = stream(60, 30);
    // Picture 10 is a single packet: seq 1000 + 5 (first IDR) + 9.
    let lost_seq = pkts[5 + 9].seq;
    pkts.remove(5 + 9);
    let mut d = H264Depacketizer::new();
    let out = run(&mut d, pkts);
    let loss: Vec<&H264Error> = out.iter().filter_map(|r| r.as_ref().err()).collect();
    assert_eq!(
        loss,
        vec![&H264Error::Loss {
            first: lost_seq,
            last: lost_seq
        }]
    );
    let ts: Vec<u64> = out
        .iter()
        .filter_map(|r| r.as_ref().ok())
        .map(|a| (a.timestamp - 90_000) / 3000)
        .collect();
    // 0..=9 before the loss, then nothing until the IDR at picture 30.
    let expected: Vec<u64> = (0..10).chain(30..60).collect();
    assert_eq!(ts, expected);
    // Pictures 11..=29 arrived whole but reference the lost picture 10.
    assert_eq!(d.dropped, 19);
}

#[test]
fn lost_fragment_of_an_idr_breaks_that_idr() {
    let mut pkts = stream(40, 30);
    // Second IDR: picture 30 starts at 5 + 29 packets; its FU-A middle is +3.
    let i = 5 + 29 + 3;
    assert_eq!(pkts[i].payload[0] & 0x1f, 28);
    pkts.remove(i);
    let mut d = H264Depacketizer::new();
    let out = run(&mut d, pkts);
    assert!(out.iter().any(|r| r.is_err()));
    let idrs = out
        .iter()
        .filter(|r| r.as_ref().is_ok_and(|a| a.idr))
        .count();
    assert_eq!(idrs, 1, "the damaged IDR must not come out");
    assert!(d.waiting_for_keyframe());
}

#[test]
fn retransmission_inside_the_window_repairs_the_gap() {
    let mut pkts = stream(20, 30);
    let late = pkts.remove(12);
    // It comes back 100 ms later (a NACK round trip), after six more packets.
    let mut late = late;
    late.arrival += Duration::from_millis(100);
    pkts.insert(18, late);
    let mut d = H264Depacketizer::new();
    let out = run(&mut d, pkts);
    assert!(out.iter().all(|r| r.is_ok()));
    assert_eq!(out.len(), 20);
}

#[test]
fn a_gap_with_nothing_after_it_times_out() {
    let mut pkts = stream(12, 30);
    pkts.remove(8);
    let t_gap = pkts[8].arrival;
    let mut d = H264Depacketizer::new();
    let out = run(&mut d, pkts);
    assert!(out.iter().all(|r| r.is_ok()));
    d.handle_timeout(t_gap + MAX_WAIT / 2);
    assert!(d.pull().is_none());
    d.handle_timeout(t_gap + MAX_WAIT * 2);
    assert!(matches!(d.pull(), Some(Err(H264Error::Loss { .. }))));
}

#[test]
fn packetization_mode_0_single_nals() {
    let t = Instant::now();
    let mut d = H264Depacketizer::new();
    for (i, (nal, marker)) in [(SPS, false), (PPS, false), (&[0x65u8, 1, 2][..], true)]
        .iter()
        .enumerate()
    {
        d.push(RtpIn {
            seq: 7 + i as u64,
            timestamp: 1,
            marker: *marker,
            payload: Bytes::copy_from_slice(nal),
            arrival: t,
        });
    }
    let au = d.pull().unwrap().unwrap();
    assert_eq!(au.nals.len(), 3);
    assert!(au.idr);
    assert_eq!(
        to_length_prefixed(&au.nals[2..]),
        Bytes::from_static(&[0, 0, 0, 3, 0x65, 1, 2])
    );
}

#[test]
fn parameter_sets_between_slices_move_to_the_front() {
    // GStreamer: SPS PPS SEI SPS PPS IDR(slice 0) SPS PPS IDR(slice 1).
    let t = Instant::now();
    let sei = &[0x06u8, 5, 1, 0x80][..];
    let s0 = &[0x65u8, 0x88, 1][..];
    let s1 = &[0x65u8, 0x40, 2][..];
    let mut d = H264Depacketizer::new();
    let seq = [SPS, PPS, sei, SPS, PPS, s0, SPS, PPS, s1];
    for (i, nal) in seq.iter().enumerate() {
        d.push(RtpIn {
            seq: i as u64,
            timestamp: 9,
            marker: i == seq.len() - 1,
            payload: Bytes::copy_from_slice(nal),
            arrival: t,
        });
    }
    let au = d.pull().unwrap().unwrap();
    let want: Vec<Bytes> = [SPS, PPS, sei, s0, s1]
        .iter()
        .map(|n| Bytes::copy_from_slice(n))
        .collect();
    assert_eq!(au.nals, want);
}

proptest::proptest! {
    #[test]
    fn arbitrary_payloads_never_panic(
        pkts in proptest::collection::vec(
            (0u64..64, 0u64..8, proptest::bool::ANY, proptest::collection::vec(proptest::num::u8::ANY, 0..40)),
            0..80)
    ) {
        let t = Instant::now();
        let mut d = H264Depacketizer::new();
        for (i, (seq, ts, marker, payload)) in pkts.into_iter().enumerate() {
            d.push(RtpIn { seq, timestamp: ts, marker, payload: Bytes::from(payload), arrival: t + Duration::from_millis(i as u64 * 10) });
            while let Some(x) = d.pull() {
                if let Ok(au) = x {
                    proptest::prop_assert!(!au.nals.is_empty());
                }
            }
        }
        d.handle_timeout(t + Duration::from_secs(10));
        while d.pull().is_some() {}
    }
}
