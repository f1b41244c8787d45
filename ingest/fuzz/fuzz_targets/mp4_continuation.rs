//! fMP4 continuation streams (MediaRecorder `video/mp4`), checked as `continuation::run`
//! describes.
#![no_main]

mod continuation;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Only ISO BMFF streams here; EBML streams go to webm_reader.
    if data.get(1..5) != Some(&[0x1a, 0x45, 0xdf, 0xa3]) {
        continuation::run(data);
    }
});
