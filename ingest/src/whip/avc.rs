//! The H.264 decoder configuration of a WebRTC stream, built from the parameter sets the encoder
//! sends in band.
//!
//! WebRTC has no out-of-band codec configuration (Chromium's offer carries no
//! `sprop-parameter-sets`, and GStreamer's may be stale), so the `avcC` of the init segment
//! (ISO/IEC 14496-15 §5.3.3.1) is built from the SPS and PPS NAL units that precede each IDR, and
//! the picture size is read from the SPS (ITU-T H.264 §7.3.2.1.1, cropping per §7.4.2.1.1).

use bytes::{BufMut, Bytes, BytesMut};

/// Why an SPS could not be read; `bit` is the bit offset into the RBSP where it ran out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SpsError {
    #[error("SPS truncated at bit {bit}")]
    Truncated { bit: usize },
    #[error("SPS field {field} out of range at bit {bit}")]
    OutOfRange { field: &'static str, bit: usize },
    #[error("NAL unit is not an SPS (type {nal_type})")]
    NotSps { nal_type: u8 },
}

/// What the init segment needs from an SPS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpsInfo {
    pub profile_idc: u8,
    pub constraint_flags: u8,
    pub level_idc: u8,
    pub width: u16,
    pub height: u16,
}

/// Reads the fields of `sps` (a whole NAL unit, header byte included) up to the cropping window.
pub fn parse_sps(sps: &[u8]) -> Result<SpsInfo, SpsError> {
    let header = *sps.first().ok_or(SpsError::Truncated { bit: 0 })?;
    if header & 0x1f != 7 {
        return Err(SpsError::NotSps {
            nal_type: header & 0x1f,
        });
    }
    let rbsp = unescape(sps.get(1..).unwrap_or_default());
    let mut r = Bits::new(&rbsp);
    let profile_idc = r.u(8)? as u8;
    let constraint_flags = r.u(8)? as u8;
    let level_idc = r.u(8)? as u8;
    r.ue("seq_parameter_set_id", 31)?;
    let mut chroma_format_idc = 1;
    let mut separate_colour_plane = false;
    if matches!(
        profile_idc,
        100 | 110 | 122 | 244 | 44 | 83 | 86 | 118 | 128 | 138 | 139 | 134 | 135
    ) {
        chroma_format_idc = r.ue("chroma_format_idc", 3)?;
        if chroma_format_idc == 3 {
            separate_colour_plane = r.u(1)? == 1;
        }
        r.ue("bit_depth_luma_minus8", 6)?;
        r.ue("bit_depth_chroma_minus8", 6)?;
        r.u(1)?; // qpprime_y_zero_transform_bypass_flag
        if r.u(1)? == 1 {
            // seq_scaling_matrix_present_flag: skip the lists (§7.3.2.1.1.1).
            let lists = if chroma_format_idc == 3 { 12 } else { 8 };
            for i in 0..lists {
                if r.u(1)? == 1 {
                    let size = if i < 6 { 16 } else { 64 };
                    let (mut last, mut next) = (8i64, 8i64);
                    for _ in 0..size {
                        if next != 0 {
                            let delta = r.se("delta_scale")?;
                            next = (last + delta + 256) % 256;
                        }
                        if next != 0 {
                            last = next;
                        }
                    }
                }
            }
        }
    }
    r.ue("log2_max_frame_num_minus4", 12)?;
    match r.ue("pic_order_cnt_type", 2)? {
        0 => {
            r.ue("log2_max_pic_order_cnt_lsb_minus4", 12)?;
        }
        1 => {
            r.u(1)?;
            r.se("offset_for_non_ref_pic")?;
            r.se("offset_for_top_to_bottom_field")?;
            let n = r.ue("num_ref_frames_in_pic_order_cnt_cycle", 255)?;
            for _ in 0..n {
                r.se("offset_for_ref_frame")?;
            }
        }
        _ => {}
    }
    r.ue("max_num_ref_frames", 32)?;
    r.u(1)?; // gaps_in_frame_num_value_allowed_flag
    let width_mbs = r.ue("pic_width_in_mbs_minus1", 1023)? + 1;
    let height_units = r.ue("pic_height_in_map_units_minus1", 1023)? + 1;
    let frame_mbs_only = r.u(1)?;
    if frame_mbs_only == 0 {
        r.u(1)?; // mb_adaptive_frame_field_flag
    }
    r.u(1)?; // direct_8x8_inference_flag
    let (mut crop_l, mut crop_r, mut crop_t, mut crop_b) = (0, 0, 0, 0);
    if r.u(1)? == 1 {
        crop_l = r.ue("frame_crop_left_offset", 8192)?;
        crop_r = r.ue("frame_crop_right_offset", 8192)?;
        crop_t = r.ue("frame_crop_top_offset", 8192)?;
        crop_b = r.ue("frame_crop_bottom_offset", 8192)?;
    }
    // Table 6-1 and equations 7-19/7-20: crop units depend on chroma subsampling.
    let (sub_w, sub_h) = match (chroma_format_idc, separate_colour_plane) {
        (1, false) => (2, 2),
        (2, false) => (2, 1),
        _ => (1, 1),
    };
    let (crop_x, crop_y) = if chroma_format_idc == 0 || separate_colour_plane {
        (1, 2 - frame_mbs_only)
    } else {
        (sub_w, sub_h * (2 - frame_mbs_only))
    };
    let width = (width_mbs * 16).saturating_sub(crop_x * (crop_l + crop_r));
    let height =
        (height_units * 16 * (2 - frame_mbs_only)).saturating_sub(crop_y * (crop_t + crop_b));
    let bit = r.pos;
    Ok(SpsInfo {
        profile_idc,
        constraint_flags,
        level_idc,
        width: u16::try_from(width).map_err(|_| SpsError::OutOfRange {
            field: "width",
            bit,
        })?,
        height: u16::try_from(height).map_err(|_| SpsError::OutOfRange {
            field: "height",
            bit,
        })?,
    })
}

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

/// Removes emulation prevention bytes (00 00 03 → 00 00, §7.4.1).
fn unescape(nal: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(nal.len());
    let mut zeros = 0;
    for &byte in nal {
        if zeros >= 2 && byte == 3 {
            zeros = 0;
            continue;
        }
        zeros = if byte == 0 { zeros + 1 } else { 0 };
        out.push(byte);
    }
    out
}

struct Bits<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Bits<'a> {
    fn new(data: &'a [u8]) -> Self {
        Bits { data, pos: 0 }
    }

    fn bit(&mut self) -> Result<u32, SpsError> {
        let byte = self
            .data
            .get(self.pos / 8)
            .ok_or(SpsError::Truncated { bit: self.pos })?;
        let v = (byte >> (7 - self.pos % 8)) & 1;
        self.pos += 1;
        Ok(v as u32)
    }

    fn u(&mut self, n: u32) -> Result<u32, SpsError> {
        let mut v = 0;
        for _ in 0..n {
            v = (v << 1) | self.bit()?;
        }
        Ok(v)
    }

    /// ue(v), §9.1, refusing values above `max` (every field read here has a small legal range).
    fn ue(&mut self, field: &'static str, max: u32) -> Result<u32, SpsError> {
        let start = self.pos;
        let mut zeros = 0;
        while self.bit()? == 0 {
            zeros += 1;
            if zeros > 31 {
                return Err(SpsError::OutOfRange { field, bit: start });
            }
        }
        let v = ((1u64 << zeros) - 1 + self.u(zeros)? as u64) as u32;
        if v > max {
            return Err(SpsError::OutOfRange { field, bit: start });
        }
        Ok(v)
    }

    fn se(&mut self, field: &'static str) -> Result<i64, SpsError> {
        let k = self.ue(field, u32::MAX - 1)? as i64;
        Ok(if k % 2 == 1 { (k + 1) / 2 } else { -(k / 2) })
    }
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
    fn gstreamer_sps_is_1280x720_baseline() {
        let info = parse_sps(GST_SPS).unwrap();
        assert_eq!(
            info,
            SpsInfo {
                profile_idc: 66,
                constraint_flags: 0xc0,
                level_idc: 31,
                width: 1280,
                height: 720
            }
        );
    }

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

    #[test]
    fn bad_sps() {
        assert_eq!(parse_sps(&[]), Err(SpsError::Truncated { bit: 0 }));
        assert_eq!(parse_sps(&[0x68, 1]), Err(SpsError::NotSps { nal_type: 8 }));
        assert!(matches!(
            parse_sps(&GST_SPS[..6]),
            Err(SpsError::Truncated { .. })
        ));
        assert!(parse_sps(&[0x67, 0x64, 0, 0x1f, 0, 0, 0, 0, 0, 0]).is_err());
    }

    proptest::proptest! {
        #[test]
        fn sps_never_panics(mut data in proptest::collection::vec(proptest::num::u8::ANY, 0..64)) {
            if let Some(b) = data.first_mut() { *b = 0x67; }
            let _ = parse_sps(&data);
        }
    }
}
