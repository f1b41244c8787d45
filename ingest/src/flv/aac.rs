//! The AudioSpecificConfig (ISO/IEC 14496-3 §1.6.2.1) of an FLV AAC sequence header.
//!
//! The FLV audio flags (rate, size, stereo) are fixed at 44 kHz / 16 bit / stereo for AAC whatever
//! the stream is (FLV spec E.4.2.1: "the decoder uses the AudioSpecificConfig"), so the sample rate
//! and channel count come from here.

/// Why an AudioSpecificConfig was not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AscError {
    #[error("AudioSpecificConfig truncated")]
    Truncated,
    #[error("AudioSpecificConfig: reserved samplingFrequencyIndex {index}")]
    ReservedFrequencyIndex { index: u8 },
    #[error("AudioSpecificConfig: sampling frequency 0")]
    ZeroFrequency,
    #[error(
        "AudioSpecificConfig: channelConfiguration {config} (program config element) not supported"
    )]
    ChannelConfiguration { config: u8 },
}

/// The fields of an AudioSpecificConfig storef uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AudioSpecificConfig {
    pub object_type: u8,
    pub sample_rate: u32,
    pub channels: u8,
}

/// Table 1.18, samplingFrequencyIndex.
const SAMPLE_RATES: [u32; 13] = [
    96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350,
];

/// Reads audioObjectType, samplingFrequency and channelConfiguration.
pub fn parse_asc(asc: &[u8]) -> Result<AudioSpecificConfig, AscError> {
    let mut bits = 0u64;
    let mut avail = 0u32;
    let mut next = asc.iter();
    let mut read = |n: u32| -> Result<u32, AscError> {
        while avail < n {
            bits = (bits << 8) | u64::from(*next.next().ok_or(AscError::Truncated)?);
            avail += 8;
        }
        avail -= n;
        Ok(((bits >> avail) & ((1 << n) - 1)) as u32)
    };
    let mut object_type = read(5)? as u8;
    if object_type == 31 {
        object_type = 32 + read(6)? as u8;
    }
    let index = read(4)? as u8;
    let sample_rate = match index {
        15 => read(24)?,
        i => *SAMPLE_RATES
            .get(usize::from(i))
            .ok_or(AscError::ReservedFrequencyIndex { index: i })?,
    };
    if sample_rate == 0 {
        return Err(AscError::ZeroFrequency);
    }
    let config = read(4)? as u8;
    // Table 1.19: 1..=6 are that many channels, 7 is 7.1 (8 channels); 0 defers to a PCE.
    let channels = match config {
        1..=6 => config,
        7 => 8,
        _ => return Err(AscError::ChannelConfiguration { config }),
    };
    Ok(AudioSpecificConfig {
        object_type,
        sample_rate,
        channels,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lc_mono_44100() {
        // ffmpeg5 capture: AAC-LC, index 4, mono.
        assert_eq!(
            parse_asc(&[0x12, 0x08]),
            Ok(AudioSpecificConfig {
                object_type: 2,
                sample_rate: 44100,
                channels: 1
            })
        );
    }

    #[test]
    fn lc_stereo_48000() {
        assert_eq!(
            parse_asc(&[0x11, 0x90]),
            Ok(AudioSpecificConfig {
                object_type: 2,
                sample_rate: 48000,
                channels: 2
            })
        );
    }

    #[test]
    fn explicit_frequency_and_escape() {
        // audioObjectType 31 → 32 + 0 (Layer-1), index 15 → 24-bit 22050, channels 2.
        let asc = [0xf8, 0x1e, 0x00, 0xac, 0x44, 0x40];
        assert_eq!(
            parse_asc(&asc),
            Ok(AudioSpecificConfig {
                object_type: 32,
                sample_rate: 22050,
                channels: 2
            })
        );
    }

    #[test]
    fn errors() {
        assert_eq!(parse_asc(&[0x12]), Err(AscError::Truncated));
        assert_eq!(
            parse_asc(&[0x16, 0x88]),
            Err(AscError::ReservedFrequencyIndex { index: 13 })
        );
        assert_eq!(
            parse_asc(&[0x12, 0x00]),
            Err(AscError::ChannelConfiguration { config: 0 })
        );
    }
}
