//! The property both continuation-stream targets check (`mp4_continuation`, `webm_reader`):
//! the first input byte picks how the rest is cut into chunks; the first chunk goes to
//! `new_from_header`, the others to `push_chunk`. After every chunk a reader resumed from
//! `header_bytes` + the previous `carry` must give exactly the same frames as the live reader,
//! and every frame belongs to a track.

use ingest::upload::ContinuationDemuxer;

pub fn run(data: &[u8]) {
    let Some((&seed, body)) = data.split_first() else {
        return;
    };
    let chunk = (usize::from(seed) % 64 + 1) * 97;
    let first = if seed >= 128 {
        body.len()
    } else {
        chunk.min(body.len())
    };
    let Ok((mut live, frames)) = ContinuationDemuxer::new_from_header(&body[..first]) else {
        return;
    };
    let kinds: Vec<_> = live.tracks().iter().map(|t| t.kind).collect();
    assert!(!kinds.is_empty());
    assert!(frames.iter().all(|f| kinds.contains(&f.kind)));
    let header = live.header_bytes().to_vec();
    for c in body[first..].chunks(chunk) {
        let mut resumed =
            ContinuationDemuxer::resume(&header, live.carry()).expect("resume from own carry");
        let before = live.carry().to_vec();
        let a = live.push_chunk(c);
        let b = resumed.push_chunk(c);
        match (a, b) {
            (Ok(a), Ok(b)) => {
                assert_eq!(a, b);
                assert!(a.iter().all(|f| kinds.contains(&f.kind)));
            }
            (Err(_), Err(_)) => {
                assert_eq!(
                    live.carry(),
                    &before[..],
                    "a failed chunk must change nothing"
                );
                return;
            }
            (a, b) => panic!(
                "live {:?} vs resumed {:?}",
                a.map(|f| f.len()),
                b.map(|f| f.len())
            ),
        }
    }
}
