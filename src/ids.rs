//! Identifiers and clocks.

use rand::RngCore;
use std::sync::atomic::{AtomicU32, Ordering};

/// A 24-hex-character id shaped like a MongoDB ObjectId (4-byte seconds, 5 random bytes, 3-byte
/// counter), because the front-ends of the server storef replaces store and validate such ids.
pub fn object_id() -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let secs = (now_ms() / 1000) as u32;
    let mut rnd = [0u8; 5];
    rand::thread_rng().fill_bytes(&mut rnd);
    let c = COUNTER.fetch_add(1, Ordering::Relaxed) & 0x00ff_ffff;
    format!("{secs:08x}{}{c:06x}", hex::encode(rnd))
}

/// An unguessable publisher secret: 128 random bits, URL- and RTMP-safe.
pub fn stream_key() -> String {
    let mut b = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut b);
    format!("sk_{}", hex::encode(b))
}

/// Whether `s` is a well-formed stream/video id.
pub fn is_object_id(s: &str) -> bool {
    s.len() == 24
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_24_lowercase_hex_and_unique() {
        let a = object_id();
        let b = object_id();
        assert!(is_object_id(&a), "{a}");
        assert_ne!(a, b);
        assert!(!is_object_id("685659660933D7CB88A7E397"));
        assert!(!is_object_id("../etc"));
        assert_ne!(stream_key(), stream_key());
    }
}
