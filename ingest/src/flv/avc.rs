//! The AVCDecoderConfigurationRecord (ISO/IEC 14496-15 §5.3.3.1) an FLV AVC sequence header
//! carries, checked, with the picture size read from its first sequence parameter set.

use crate::h264::{parse_sps, SpsError};

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
    #[error("SPS (avcC byte {offset}): {error}")]
    Sps { offset: usize, error: SpsError },
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
    let sps = parse_sps(sps).map_err(|error| AvcConfigError::Sps { offset: 8, error })?;
    Ok(AvcConfig {
        length_size,
        width: sps.width,
        height: sps.height,
    })
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
    fn a_bad_sps_says_where_in_the_avcc() {
        let mut avcc = vec![1, 0x64, 0x00, 0x1f, 0xff, 0xe1, 0, 6];
        avcc.extend_from_slice(&SPS_720P_HIGH[..6]);
        assert!(matches!(
            parse_avcc(&avcc),
            Err(AvcConfigError::Sps {
                offset: 8,
                error: SpsError::Truncated { .. }
            })
        ));
    }
}
