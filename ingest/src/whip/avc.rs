//! The H.264 decoder configuration of a WebRTC stream, built from the parameter sets the encoder
//! sends in band.
//!
//! WebRTC has no out-of-band codec configuration (Chromium's offer carries no
//! `sprop-parameter-sets`, and GStreamer's may be stale), so the `avcC` of the init segment
//! (ISO/IEC 14496-15 §5.3.3.1) is built from the SPS and PPS NAL units that precede each IDR; the
//! picture size comes from the SPS ([`crate::h264::parse_sps`]).

use bytes::{BufMut, Bytes, BytesMut};

/// An AVCDecoderConfigurationRecord with one SPS and one PPS and 4-byte NAL lengths
/// (`lengthSizeMinusOne` = 3), ISO/IEC 14496-15 §5.3.3.1.2. High profiles get the chroma/bit-depth
/// tail the spec requires for profile_idc 100 and up (4:2:0, 8 bit: what WebRTC encoders send).
pub fn build_avcc(sps: &[u8], pps: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(11 + sps.len() + pps.len() + 4);
    let p = |i: usize| sps.get(i).copied().unwrap_or(0);
    b.put_u8(1);
    b.put_u8(p(1));
    b.put_u8(p(2));
    b.put_u8(p(3));
    b.put_u8(0xfc | 3);
    b.put_u8(0xe0 | 1);
    b.put_u16(sps.len() as u16);
    b.put_slice(sps);
    b.put_u8(1);
    b.put_u16(pps.len() as u16);
    b.put_slice(pps);
    if matches!(p(1), 100 | 110 | 122 | 144) {
        b.put_u8(0xfc | 1); // chroma_format 4:2:0
        b.put_u8(0xf8); // bit_depth_luma_minus8 = 0
        b.put_u8(0xf8); // bit_depth_chroma_minus8 = 0
        b.put_u8(0); // numOfSequenceParameterSetExt
    }
    b.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The SPS in GStreamer's `sprop-parameter-sets` (x264, constrained baseline, 1280x720).
    const GST_SPS: &[u8] = &[
        0x67, 0x42, 0xc0, 0x1f, 0xda, 0x01, 0x40, 0x16, 0xec, 0x05, 0xa8, 0x08, 0x08, 0x0a, 0x00,
        0x00, 0x03, 0x00, 0x02, 0x00, 0x00, 0x03, 0x00, 0x79, 0x1e, 0x30, 0x65, 0x40,
    ];

    #[test]
    fn avcc_layout() {
        let avcc = build_avcc(GST_SPS, &[0x68, 0xce, 0x3c, 0x80]);
        assert_eq!(
            &avcc[..8],
            &[1, 0x42, 0xc0, 0x1f, 0xff, 0xe1, 0, GST_SPS.len() as u8]
        );
        assert_eq!(
            &avcc[8 + GST_SPS.len()..],
            &[1, 0, 4, 0x68, 0xce, 0x3c, 0x80]
        );
    }
}
