//! `ingest::whip::rfc4571` on arbitrary TCP bytes: the first input byte picks how the rest is cut
//! into reads; never panics, cutting never changes the frames (same frames and error as one
//! read), nothing over the limit comes out, at most one frame is held, and re-framing the frames
//! gives back the consumed bytes. `stun_binding_request` never panics on any frame.
#![no_main]

use ingest::whip::rfc4571::{frame, stun_binding_request, Deframer, FramingError};
use libfuzzer_sys::fuzz_target;

const MAX: usize = 1500;

fuzz_target!(|data: &[u8]| {
    let Some((&step, stream)) = data.split_first() else {
        return;
    };
    let step = usize::from(step % 64) + 1;

    let mut whole = Deframer::new(MAX);
    let mut whole_frames = Vec::new();
    let whole_result = whole.feed(stream, &mut whole_frames);

    let mut cut = Deframer::new(MAX);
    let mut cut_frames = Vec::new();
    let mut cut_result: Result<(), FramingError> = Ok(());
    for chunk in stream.chunks(step) {
        cut_result = cut.feed(chunk, &mut cut_frames);
        assert!(cut.buffered() <= MAX + 1);
        if cut_result.is_err() {
            break;
        }
    }
    assert_eq!(whole_frames, cut_frames);
    assert_eq!(whole_result, cut_result);
    assert_eq!(whole.offset(), cut.offset());

    let mut again = Vec::new();
    for f in &whole_frames {
        assert!(f.len() <= MAX);
        frame(f, &mut again).unwrap();
        let _ = stun_binding_request(f);
    }
    assert_eq!(again.len() as u64, whole.offset());
    assert_eq!(again.as_slice(), &stream[..again.len()]);
    let _ = stun_binding_request(stream);
});
