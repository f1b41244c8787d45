//! `ingest::whip::sdp::inspect_offer` on arbitrary text: never panics, and what it accepts is
//! consistent (at least one H.264 variant, packetization-mode 1 variants first).
#![no_main]

use ingest::whip::sdp::inspect_offer;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(s) = inspect_offer(&text) {
        assert!(!s.h264.is_empty());
        assert!(s.h264.windows(2).all(|w| w[0].packetization_mode >= w[1].packetization_mode));
        assert!(s.h264.iter().all(|h| h.pt < 128 && h.profile_level_id <= 0xff_ffff));
        assert!(s.media_sections > 0);
    }
});
