//! FLV files (Adobe FLV v10.1, E.2 header, E.3 body, E.4.1 tag header): the tags an RTMP
//! publisher would send, for replaying a recorded stream (the `rtmp_load` generator).

use bytes::Bytes;

/// Why an FLV file could not be read. Offsets are from the start of the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FlvFileError {
    #[error("not an FLV file (no 'FLV' signature)")]
    Signature,
    #[error("FLV file truncated at byte {offset}")]
    Truncated { offset: usize },
    #[error("FLV tag at byte {offset} is encrypted (filter bit set)")]
    Encrypted { offset: usize },
}

/// One tag of an FLV file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileTag {
    /// 8 audio, 9 video, 18 script data.
    pub tag_type: u8,
    /// Milliseconds: `Timestamp` with `TimestampExtended` as its upper 8 bits.
    pub timestamp_ms: u32,
    /// The tag body: what an RTMP message of the same type carries.
    pub body: Bytes,
}

/// Reads every tag of an FLV file; a file cut inside its last tag yields the complete ones.
pub fn read_flv(file: &Bytes) -> Result<Vec<FileTag>, FlvFileError> {
    if file.len() < 9 || &file[..3] != b"FLV" {
        return Err(FlvFileError::Signature);
    }
    let data_offset = u32::from_be_bytes([file[5], file[6], file[7], file[8]]) as usize;
    // Skip the header and PreviousTagSize0.
    let mut pos = data_offset
        .checked_add(4)
        .ok_or(FlvFileError::Truncated { offset: 5 })?;
    if pos > file.len() {
        return Err(FlvFileError::Truncated { offset: file.len() });
    }
    let mut tags = Vec::new();
    while let Some(header) = file.get(pos..pos + 11) {
        if header[0] & 0x20 != 0 {
            return Err(FlvFileError::Encrypted { offset: pos });
        }
        let tag_type = header[0] & 0x1f;
        let size =
            usize::from(header[1]) << 16 | usize::from(header[2]) << 8 | usize::from(header[3]);
        let timestamp_ms = u32::from_be_bytes([header[7], header[4], header[5], header[6]]);
        let start = pos + 11;
        let Some(end) = start.checked_add(size).filter(|e| *e <= file.len()) else {
            break;
        };
        tags.push(FileTag {
            tag_type,
            timestamp_ms,
            body: file.slice(start..end),
        });
        pos = end + 4; // PreviousTagSize
    }
    Ok(tags)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(tag_type: u8, ts: u32, body: &[u8]) -> Vec<u8> {
        let mut v = vec![tag_type];
        v.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
        v.extend_from_slice(&ts.to_be_bytes()[1..]);
        v.push((ts >> 24) as u8);
        v.extend_from_slice(&[0, 0, 0]);
        v.extend_from_slice(body);
        v.extend_from_slice(&(11 + body.len() as u32).to_be_bytes());
        v
    }

    #[test]
    fn reads_tags_with_extended_timestamps() {
        let mut f = b"FLV\x01\x05\x00\x00\x00\x09\x00\x00\x00\x00".to_vec();
        f.extend(tag(9, 0, &[0x17, 0, 0, 0, 0]));
        f.extend(tag(8, 0x0100_0010, &[0xaf, 1, 9]));
        f.extend(&tag(9, 40, &[0x27, 1])[..8]); // cut inside the header
        let tags = read_flv(&Bytes::from(f)).unwrap();
        assert_eq!(tags.len(), 2);
        assert_eq!(tags[0].tag_type, 9);
        assert_eq!(tags[1].timestamp_ms, 0x0100_0010);
        assert_eq!(&tags[1].body[..], &[0xaf, 1, 9]);
    }

    #[test]
    fn refuses_non_flv_and_encrypted() {
        assert_eq!(
            read_flv(&Bytes::from_static(b"RIFF....")),
            Err(FlvFileError::Signature)
        );
        let mut f = b"FLV\x01\x05\x00\x00\x00\x09\x00\x00\x00\x00".to_vec();
        f.extend(tag(0x29, 0, &[1]));
        assert_eq!(
            read_flv(&Bytes::from(f)),
            Err(FlvFileError::Encrypted { offset: 13 })
        );
    }

    proptest::proptest! {
        #[test]
        fn never_panics(tail in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
            let mut f = b"FLV\x01\x05\x00\x00\x00\x09\x00\x00\x00\x00".to_vec();
            f.extend(tail);
            let _ = read_flv(&Bytes::from(f));
        }
    }
}
