//! The fields of an H.264 sequence parameter set (ITU-T H.264 §7.3.2.1.1) that an init segment
//! needs: profile, level and the displayed picture size after cropping (§7.4.2.1.1).
//!
//! Every ingest path meets an SPS: inside an FLV AVC sequence header (RTMP), in band before each
//! IDR (WHIP), and in an uploaded MP4's `avcC` when the sample entry says `0×0`. One parser
//! serves them all, so a fix or a fuzz finding lands once.

/// Why an SPS could not be read; `bit` is the bit offset into the RBSP (the NAL unit after its
/// header byte, emulation prevention bytes removed) where reading stopped.
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
pub struct Sps {
    pub profile_idc: u8,
    pub constraint_flags: u8,
    pub level_idc: u8,
    /// Displayed width and height: coded size minus the cropping window.
    pub width: u16,
    pub height: u16,
}

/// Reads `sps` (a whole NAL unit, header byte included) up to its cropping window.
///
/// Every `ue(v)` field is bounded by its legal range, so a hostile SPS cannot make later
/// arithmetic overflow, and a cropping window that would leave no picture is an error.
pub fn parse_sps(sps: &[u8]) -> Result<Sps, SpsError> {
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
                    skip_scaling_list(&mut r, if i < 6 { 16 } else { 64 })?;
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
            r.u(1)?; // delta_pic_order_always_zero_flag
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
    let crop_at = r.pos;
    let (mut crop_l, mut crop_r, mut crop_t, mut crop_b) = (0, 0, 0, 0);
    if r.u(1)? == 1 {
        crop_l = r.ue("frame_crop_left_offset", 8192)?;
        crop_r = r.ue("frame_crop_right_offset", 8192)?;
        crop_t = r.ue("frame_crop_top_offset", 8192)?;
        crop_b = r.ue("frame_crop_bottom_offset", 8192)?;
    }
    // Table 6-1 and equations 7-19/7-20: crop units follow chroma subsampling (ChromaArrayType);
    // monochrome and separately coded planes crop in whole samples.
    let (crop_x, crop_y) = match (chroma_format_idc, separate_colour_plane) {
        (1, false) => (2, 2 * (2 - frame_mbs_only)),
        (2, false) => (2, 2 - frame_mbs_only),
        (3, false) => (1, 2 - frame_mbs_only),
        _ => (1, 2 - frame_mbs_only),
    };
    let coded_w = width_mbs * 16;
    let coded_h = height_units * 16 * (2 - frame_mbs_only);
    let too_much = |field| SpsError::OutOfRange {
        field,
        bit: crop_at,
    };
    // Bounded fields: these products stay far below u32::MAX.
    let width = coded_w
        .checked_sub(crop_x * (crop_l + crop_r))
        .filter(|w| *w > 0)
        .ok_or(too_much("frame_crop_left/right_offset"))?;
    let height = coded_h
        .checked_sub(crop_y * (crop_t + crop_b))
        .filter(|h| *h > 0)
        .ok_or(too_much("frame_crop_top/bottom_offset"))?;
    Ok(Sps {
        profile_idc,
        constraint_flags,
        level_idc,
        // At most 1024 × 16 × 2: always fits.
        width: u16::try_from(width).map_err(|_| too_much("pic_width_in_mbs_minus1"))?,
        height: u16::try_from(height).map_err(|_| too_much("pic_height_in_map_units_minus1"))?,
    })
}

/// Skips a scaling_list() (§7.3.2.1.1.1) of `size` coefficients.
fn skip_scaling_list(r: &mut Bits<'_>, size: usize) -> Result<(), SpsError> {
    let (mut last, mut next) = (8i64, 8i64);
    for _ in 0..size {
        if next != 0 {
            let delta = r.se("delta_scale")?;
            next = (last + delta).rem_euclid(256);
        }
        if next != 0 {
            last = next;
        }
    }
    Ok(())
}

/// Removes emulation prevention bytes (`00 00 03` → `00 00`, §7.4.1).
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

/// Reads bits MSB first from an RBSP.
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
        Ok(u32::from(v))
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
        let v = (1u64 << zeros) - 1 + u64::from(self.u(zeros)?);
        u32::try_from(v)
            .ok()
            .filter(|v| *v <= max)
            .ok_or(SpsError::OutOfRange { field, bit: start })
    }

    /// se(v), §9.1.1.
    fn se(&mut self, field: &'static str) -> Result<i64, SpsError> {
        let k = i64::from(self.ue(field, u32::MAX - 1)?);
        Ok(if k % 2 == 1 { (k + 1) / 2 } else { -(k / 2) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn size(sps: &[u8]) -> (u16, u16) {
        let s = parse_sps(sps).unwrap();
        (s.width, s.height)
    }

    /// libx264's High-profile 1280x720 SPS: 80x45 macroblocks, no cropping.
    const X264_720P_HIGH: &[u8] = &[
        0x67, 0x64, 0x00, 0x1f, 0xac, 0xd9, 0x40, 0x50, 0x05, 0xbb, 0x01, 0x10, 0x00, 0x00, 0x03,
        0x00, 0x10, 0x00, 0x00, 0x03, 0x03, 0xc0, 0xf1, 0x83, 0x19, 0x60,
    ];

    /// The SPS in GStreamer's `sprop-parameter-sets` (x264, constrained baseline, 1280x720).
    const GST_720P_BASELINE: &[u8] = &[
        0x67, 0x42, 0xc0, 0x1f, 0xda, 0x01, 0x40, 0x16, 0xec, 0x05, 0xa8, 0x08, 0x08, 0x0a, 0x00,
        0x00, 0x03, 0x00, 0x02, 0x00, 0x00, 0x03, 0x00, 0x79, 0x1e, 0x30, 0x65, 0x40,
    ];

    #[test]
    fn high_profile_720p() {
        assert_eq!(
            parse_sps(X264_720P_HIGH),
            Ok(Sps {
                profile_idc: 100,
                constraint_flags: 0,
                level_idc: 31,
                width: 1280,
                height: 720
            })
        );
    }

    #[test]
    fn gstreamer_baseline_720p() {
        assert_eq!(
            parse_sps(GST_720P_BASELINE),
            Ok(Sps {
                profile_idc: 66,
                constraint_flags: 0xc0,
                level_idc: 31,
                width: 1280,
                height: 720
            })
        );
    }

    #[test]
    fn baseline_1080p_crops_the_bottom_rows() {
        // libx264 baseline 1920x1080: 120x68 macroblocks, frame_crop_bottom_offset 4 (x2 rows).
        let x264 = [
            0x67, 0x42, 0xc0, 0x28, 0xd9, 0x00, 0x78, 0x02, 0x27, 0xe5, 0xc0, 0x44, 0x00, 0x00,
            0x03, 0x00, 0x04, 0x00, 0x00, 0x03, 0x00, 0xf0, 0x3c, 0x60, 0xc9, 0x20,
        ];
        assert_eq!(size(&x264), (1920, 1080));
        // OpenH264-style, the same size with a different encoding of the header fields.
        let openh264 = [
            0x67, 0x42, 0xc0, 0x28, 0xda, 0x01, 0xe0, 0x08, 0x9f, 0x96, 0x10, 0x00, 0x00, 0x03,
            0x00, 0x10, 0x00, 0x00, 0x03, 0x03, 0xc8, 0xf1, 0x83, 0x2a,
        ];
        assert_eq!(size(&openh264), (1920, 1080));
    }

    #[test]
    fn main_odd_size_crops_both_ways() {
        // libx264 main 642x362: 41x23 macroblocks cropped right and bottom.
        let sps = [
            0x67, 0x4d, 0x40, 0x1e, 0xec, 0xa0, 0x52, 0x17, 0xf1, 0x12, 0x60, 0x22, 0x00, 0x00,
            0x03, 0x00, 0x02, 0x00, 0x00, 0x03, 0x00, 0x78, 0x1e, 0x2c, 0x5b, 0x2c,
        ];
        assert_eq!(size(&sps), (642, 362));
    }

    #[test]
    fn bad_sps_says_where() {
        assert_eq!(parse_sps(&[]), Err(SpsError::Truncated { bit: 0 }));
        assert_eq!(parse_sps(&[0x67]), Err(SpsError::Truncated { bit: 0 }));
        assert_eq!(parse_sps(&[0x68, 1]), Err(SpsError::NotSps { nal_type: 8 }));
        assert_eq!(
            parse_sps(&[0x67, 0x64, 0, 0x1f, 0, 0, 0, 0, 0, 0]),
            Err(SpsError::OutOfRange {
                field: "seq_parameter_set_id",
                bit: 24
            })
        );
        // The picture size and cropping flag end in byte 9; any cut before that fails.
        for n in 0..9 {
            assert!(
                matches!(
                    parse_sps(&X264_720P_HIGH[..n]),
                    Err(SpsError::Truncated { .. })
                ),
                "{n}"
            );
        }
    }

    #[test]
    fn cropping_away_the_whole_picture_is_an_error() {
        // Baseline, 1x1 macroblock, frame_mbs_only, crop left 4 + right 4 (x2 = 16 columns):
        // profile 66, level 10, then ue fields sps_id=0 '1', log2_max_frame_num=0 '1',
        // poc_type=2 '011', max_num_ref_frames=0 '1', gaps=0, width-1=0 '1', height-1=0 '1',
        // frame_mbs_only=1, direct_8x8=1, cropping=1, 4 '00101', 4 '00101', 0 '1', 0 '1'.
        let bits = "1 1 011 1 0 1 1 1 1 1 00101 00101 1 1 1";
        let bits: String = bits.split_whitespace().collect();
        let mut rbsp = vec![0x67, 66, 0, 10];
        for chunk in bits.as_bytes().chunks(8) {
            let mut b = 0u8;
            for (i, c) in chunk.iter().enumerate() {
                b |= u8::from(*c == b'1') << (7 - i);
            }
            rbsp.push(b);
        }
        assert!(matches!(
            parse_sps(&rbsp),
            Err(SpsError::OutOfRange {
                field: "frame_crop_left/right_offset",
                ..
            })
        ));
    }

    proptest::proptest! {
        #[test]
        fn never_panics(mut data in proptest::collection::vec(proptest::num::u8::ANY, 0..64)) {
            if let Some(b) = data.first_mut() { *b = 0x67; }
            let _ = parse_sps(&data);
        }
    }
}
