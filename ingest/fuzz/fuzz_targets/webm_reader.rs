//! WebM continuation streams (MediaRecorder `video/webm`), checked as `continuation::run`
//! describes.
#![no_main]

mod continuation;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Only EBML streams here; fMP4 streams go to mp4_continuation.
    if data.get(1..5) == Some(&[0x1a, 0x45, 0xdf, 0xa3]) {
        continuation::run(data);
    }
});
