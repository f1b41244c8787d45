//! The AVCDecoderConfigurationRecord (ISO/IEC 14496-15 §5.3.3.1) an FLV AVC sequence header
//! carries, and the few fields of its first sequence parameter set (ITU-T H.264 §7.3.2.1.1) the
//! init segment needs: the coded picture size after cropping.

/// Why an avcC or SPS was not usable. Offsets are relative to the start of the avcC.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AvcConfigError {
    #[error("avcC truncated at byte {offset}")]
    Truncated { offset: usize },
    #[error("avcC configurationVersion {version}, expected 1")]
    Version { version: u8 },
    #[error("avcC has no sequence parameter set")]
    NoSps,
    #[error("SPS (avcC byte {offset}): {reason}")]
    Sps { offset: usize, reason: &'static str },
}

/// What storef needs from an avcC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AvcConfig {
    /// Bytes of each NAL unit length prefix in the frames (`lengthSizeMinusOne + 1`).
    pub length_size: u8,
    pub width: u16,
    pub height: u16,
}

/// Checks an avcC and reads the picture size from its first SPS.
pub fn parse_avcc(avcc: &[u8]) -> Result<AvcConfig, AvcConfigError> {
    let header = avcc
        .get(..6)
        .ok_or(AvcConfigError::Truncated { offset: avcc.len() })?;
    if header[0] != 1 {
        return Err(AvcConfigError::Version { version: header[0] });
    }
    let length_size = (header[4] & 0x03) + 1;
    let num_sps = header[5] & 0x1f;
    if num_sps == 0 {
        return Err(AvcConfigError::NoSps);
    }
    let len_bytes = avcc
        .get(6..8)
        .ok_or(AvcConfigError::Truncated { offset: avcc.len() })?;
    let sps_len = usize::from(u16::from_be_bytes([len_bytes[0], len_bytes[1]]));
    let sps = avcc
        .get(8..8 + sps_len)
        .ok_or(AvcConfigError::Truncated { offset: avcc.len() })?;
    let (width, height) =
        sps_picture_size(sps).map_err(|reason| AvcConfigError::Sps { offset: 8, reason })?;
    Ok(AvcConfig {
        length_size,
        width,
        height,
    })
}

/// Reads bits MSB first from an RBSP (emulation prevention bytes already removed).
struct BitReader<'a> {
    data: &'a [u8],
    pos: usize,
}

const EOD: &str = "ended early";

impl<'a> BitReader<'a> {
    fn new(data: &'a [u8]) -> Self {
        Self { data, pos: 0 }
    }

    fn bit(&mut self) -> Result<u32, &'static str> {
        let byte = self.data.get(self.pos / 8).ok_or(EOD)?;
        let bit = (byte >> (7 - (self.pos % 8))) & 1;
        self.pos += 1;
        Ok(u32::from(bit))
    }

    fn bits(&mut self, n: u32) -> Result<u32, &'static str> {
        let mut v = 0;
        for _ in 0..n {
            v = (v << 1) | self.bit()?;
        }
        Ok(v)
    }

    /// ue(v), §9.1. Values above 2^32-2 are refused (no valid SPS field needs them).
    fn ue(&mut self) -> Result<u32, &'static str> {
        let mut zeros = 0;
        while self.bit()? == 0 {
            zeros += 1;
            if zeros > 31 {
                return Err("exp-Golomb code too long");
            }
        }
        let rest = self.bits(zeros)?;
        Ok(((1u64 << zeros) - 1 + u64::from(rest)) as u32)
    }

    /// se(v), §9.1.1.
    fn se(&mut self) -> Result<i64, &'static str> {
        let k = i64::from(self.ue()?);
        Ok(if k % 2 == 1 { (k + 1) / 2 } else { -(k / 2) })
    }
}

/// Removes emulation prevention bytes (`00 00 03` → `00 00`, §7.4.1).
fn rbsp(nal: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(nal.len());
    let mut zeros = 0;
    for &b in nal {
        if zeros >= 2 && b == 3 {
            zeros = 0;
            continue;
        }
        zeros = if b == 0 { zeros + 1 } else { 0 };
        out.push(b);
    }
    out
}

/// Skips a scaling_list() of `size` entries (§7.3.2.1.1.1).
fn skip_scaling_list(r: &mut BitReader<'_>, size: u32) -> Result<(), &'static str> {
    let mut last = 8i64;
    let mut next = 8i64;
    for _ in 0..size {
        if next != 0 {
            let delta = r.se()?;
            next = (last + delta + 256).rem_euclid(256);
        }
        if next != 0 {
            last = next;
        }
    }
    Ok(())
}

/// The cropped picture size of a SPS NAL unit (with its one-byte NAL header), §7.4.2.1.1.
pub fn sps_picture_size(sps_nal: &[u8]) -> Result<(u16, u16), &'static str> {
    let nal_type = sps_nal.first().ok_or("empty")? & 0x1f;
    if nal_type != 7 {
        return Err("not a SPS NAL unit");
    }
    let data = rbsp(sps_nal.get(1..).ok_or(EOD)?);
    let mut r = BitReader::new(&data);
    let profile_idc = r.bits(8)?;
    r.bits(16)?; // constraint flags, level_idc
    r.ue()?; // seq_parameter_set_id
    let mut chroma_format_idc = 1;
    let mut separate_colour_plane = 0;
    if matches!(
        profile_idc,
        100 | 110 | 122 | 244 | 44 | 83 | 86 | 118 | 128 | 138 | 139 | 134 | 135
    ) {
        chroma_format_idc = r.ue()?;
        if chroma_format_idc > 3 {
            return Err("chroma_format_idc out of range");
        }
        if chroma_format_idc == 3 {
            separate_colour_plane = r.bit()?;
        }
        r.ue()?; // bit_depth_luma_minus8
        r.ue()?; // bit_depth_chroma_minus8
        r.bit()?; // qpprime_y_zero_transform_bypass_flag
        if r.bit()? == 1 {
            let lists = if chroma_format_idc == 3 { 12 } else { 8 };
            for i in 0..lists {
                if r.bit()? == 1 {
                    skip_scaling_list(&mut r, if i < 6 { 16 } else { 64 })?;
                }
            }
        }
    }
    r.ue()?; // log2_max_frame_num_minus4
    match r.ue()? {
        0 => {
            r.ue()?; // log2_max_pic_order_cnt_lsb_minus4
        }
        1 => {
            r.bit()?; // delta_pic_order_always_zero_flag
            r.se()?; // offset_for_non_ref_pic
            r.se()?; // offset_for_top_to_bottom_field
            let cycle = r.ue()?;
            if cycle > 255 {
                return Err("num_ref_frames_in_pic_order_cnt_cycle out of range");
            }
            for _ in 0..cycle {
                r.se()?;
            }
        }
        2 => {}
        _ => return Err("pic_order_cnt_type out of range"),
    }
    r.ue()?; // max_num_ref_frames
    r.bit()?; // gaps_in_frame_num_value_allowed_flag
    let width_mbs = u64::from(r.ue()?) + 1;
    let height_map_units = u64::from(r.ue()?) + 1;
    let frame_mbs_only = u64::from(r.bit()?);
    if frame_mbs_only == 0 {
        r.bit()?; // mb_adaptive_frame_field_flag
    }
    r.bit()?; // direct_8x8_inference_flag
    let (mut crop_l, mut crop_r, mut crop_t, mut crop_b) = (0u64, 0u64, 0u64, 0u64);
    if r.bit()? == 1 {
        crop_l = r.ue()?.into();
        crop_r = r.ue()?.into();
        crop_t = r.ue()?.into();
        crop_b = r.ue()?.into();
    }
    // Table 6-1: SubWidthC / SubHeightC; monochrome and separate planes crop in whole samples.
    let (crop_unit_x, crop_unit_y) = if chroma_format_idc == 0 || separate_colour_plane == 1 {
        (1, 2 - frame_mbs_only)
    } else {
        let (sub_w, sub_h) = match chroma_format_idc {
            1 => (2, 2),
            2 => (2, 1),
            _ => (1, 1),
        };
        (sub_w, sub_h * (2 - frame_mbs_only))
    };
    let width = (width_mbs * 16)
        .checked_sub(crop_unit_x * (crop_l + crop_r))
        .ok_or("cropping wider than the picture")?;
    let height = ((2 - frame_mbs_only) * height_map_units * 16)
        .checked_sub(crop_unit_y * (crop_t + crop_b))
        .ok_or("cropping taller than the picture")?;
    let width = u16::try_from(width).map_err(|_| "width above 65535")?;
    let height = u16::try_from(height).map_err(|_| "height above 65535")?;
    if width == 0 || height == 0 {
        return Err("empty picture");
    }
    Ok((width, height))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// libx264's High-profile 1280x720 SPS: 80x45 macroblocks, no cropping.
    const SPS_720P_HIGH: &[u8] = &[
        0x67, 0x64, 0x00, 0x1f, 0xac, 0xd9, 0x40, 0x50, 0x05, 0xbb, 0x01, 0x10, 0x00, 0x00, 0x03,
        0x00, 0x10, 0x00, 0x00, 0x03, 0x03, 0xc0, 0xf1, 0x83, 0x19, 0x60,
    ];

    #[test]
    fn high_profile_720p() {
        assert_eq!(sps_picture_size(SPS_720P_HIGH), Ok((1280, 720)));
    }

    #[test]
    fn baseline_1080p_with_cropping() {
        // libx264 baseline 1920x1080: 120x68 macroblocks, frame_crop_bottom_offset 4 (x2 rows).
        let sps = [
            0x67, 0x42, 0xc0, 0x28, 0xd9, 0x00, 0x78, 0x02, 0x27, 0xe5, 0xc0, 0x44, 0x00, 0x00,
            0x03, 0x00, 0x04, 0x00, 0x00, 0x03, 0x00, 0xf0, 0x3c, 0x60, 0xc9, 0x20,
        ];
        assert_eq!(sps_picture_size(&sps), Ok((1920, 1080)));
    }

    #[test]
    fn main_odd_size_crops_both_ways() {
        // libx264 main 642x362: 41x23 macroblocks cropped right and bottom.
        let sps = [
            0x67, 0x4d, 0x40, 0x1e, 0xec, 0xa0, 0x52, 0x17, 0xf1, 0x12, 0x60, 0x22, 0x00, 0x00,
            0x03, 0x00, 0x02, 0x00, 0x00, 0x03, 0x00, 0x78, 0x1e, 0x2c, 0x5b, 0x2c,
        ];
        assert_eq!(sps_picture_size(&sps), Ok((642, 362)));
    }

    #[test]
    fn avcc_round_trip_fields() {
        let mut avcc = vec![1, 0x64, 0x00, 0x1f, 0xff, 0xe1];
        avcc.extend_from_slice(&(SPS_720P_HIGH.len() as u16).to_be_bytes());
        avcc.extend_from_slice(SPS_720P_HIGH);
        avcc.extend_from_slice(&[1, 0, 4, 0x68, 0xeb, 0xe3, 0xcb]);
        assert_eq!(
            parse_avcc(&avcc),
            Ok(AvcConfig {
                length_size: 4,
                width: 1280,
                height: 720
            })
        );
        assert_eq!(
            parse_avcc(&avcc[..10]),
            Err(AvcConfigError::Truncated { offset: 10 })
        );
    }

    #[test]
    fn truncated_sps_is_an_error() {
        // The picture size and cropping flag end in byte 9 of this SPS; any cut before that fails.
        for n in 0..9 {
            assert!(sps_picture_size(&SPS_720P_HIGH[..n]).is_err(), "{n}");
        }
    }
}
