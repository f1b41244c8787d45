//! PieceCID strings: today's v2 (FRC-0069) and the legacy v1 (go-fil-commcid).
//!
//! - **v2** `bafkzcib…`: CIDv1, codec `raw` (0x55), multihash `fr32-sha256-trunc254-padbintree`
//!   (0x1011) whose digest is `varint(padding) ‖ height (1 byte) ‖ root (32 bytes)` — it carries
//!   the payload size, so a provider can check a PUT against it (Curio `ParsePieceCidV2`).
//! - **v1** `baga6ea4seaq…`: CIDv1, codec `fil-commitment-unsealed` (0xf101), multihash
//!   `sha2-256-trunc254-padded` (0x1012) whose digest is the bare 32-byte root
//!   (`commcid.DataCommitmentV1ToCID`). The seed's FilCDN URLs use this form.
//!
//! Both print as multibase base32 lower case without padding (prefix `b`, RFC 4648 §6).

use super::commp::{unpadded_size, Commitment, Node};

/// CID version 1.
const CID_V1: u64 = 1;
/// Multicodec `raw`.
pub const CODEC_RAW: u64 = 0x55;
/// Multicodec `fil-commitment-unsealed`.
pub const CODEC_FIL_COMMITMENT_UNSEALED: u64 = 0xf101;
/// Multihash `fr32-sha256-trunc254-padbintree` (FRC-0069).
pub const MH_FR32_SHA256_TRUNC254_PADBINTREE: u64 = 0x1011;
/// Multihash `sha2-256-trunc254-padded`.
pub const MH_SHA256_TRUNC254_PADDED: u64 = 0x1012;

/// Why a string is not a PieceCID.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum PieceCidError {
    #[error("not a base32 multibase string (expected prefix 'b')")]
    Multibase,
    #[error("invalid base32 character {ch:?} at offset {offset}")]
    Base32 { offset: usize, ch: char },
    #[error("truncated or overlong varint at byte {offset}")]
    Varint { offset: usize },
    #[error("CID version {0} (expected 1)")]
    Version(u64),
    #[error("codec 0x{codec:x} / multihash 0x{multihash:x} is not a PieceCID")]
    NotPiece { codec: u64, multihash: u64 },
    #[error("digest length {got} does not fit its multihash (expected {expected})")]
    DigestLength { expected: usize, got: usize },
    #[error("height {height} with padding {padding} describes no valid piece")]
    Shape { height: u8, padding: u64 },
}

/// A PieceCID v2: everything FRC-0069 puts in the CID.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PieceCid(pub Commitment);

impl PieceCid {
    pub fn commitment(&self) -> &Commitment {
        &self.0
    }

    /// The 32-byte CommP root.
    pub fn root(&self) -> &Node {
        &self.0.root
    }

    /// Payload size the piece commits to.
    pub fn payload_size(&self) -> u64 {
        self.0.payload_size()
    }

    /// Binary CID (what the AddPieces typed data signs as `Cid.data`).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut digest = Vec::with_capacity(43);
        put_varint(&mut digest, self.0.padding);
        digest.push(self.0.height);
        digest.extend_from_slice(&self.0.root);
        let mut out = Vec::with_capacity(50);
        put_varint(&mut out, CID_V1);
        put_varint(&mut out, CODEC_RAW);
        put_varint(&mut out, MH_FR32_SHA256_TRUNC254_PADBINTREE);
        put_varint(&mut out, digest.len() as u64);
        out.extend_from_slice(&digest);
        out
    }

    /// The legacy v1 CID string of the same root.
    pub fn to_v1_string(&self) -> String {
        v1_string(&self.0.root)
    }

    /// Parses a v2 string (`bafkzcib…`).
    pub fn parse(s: &str) -> Result<Self, PieceCidError> {
        let bytes = multibase_decode(s)?;
        Self::from_bytes(&bytes)
    }

    /// Parses a binary v2 CID.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, PieceCidError> {
        let (codec, multihash, digest) = split_cid(bytes)?;
        if codec != CODEC_RAW || multihash != MH_FR32_SHA256_TRUNC254_PADBINTREE {
            return Err(PieceCidError::NotPiece { codec, multihash });
        }
        let mut pos = 0;
        let padding = get_varint(digest, &mut pos)?;
        if digest.len() != pos + 33 {
            return Err(PieceCidError::DigestLength {
                expected: pos + 33,
                got: digest.len(),
            });
        }
        let height = digest[pos];
        let mut root = [0u8; 32];
        root.copy_from_slice(&digest[pos + 1..]);
        // A tree has at least one quad (4 leaves) and padding never exceeds its capacity.
        if !(2..=64).contains(&height) || padding > unpadded_size(height) {
            return Err(PieceCidError::Shape { height, padding });
        }
        Ok(Self(Commitment {
            root,
            height,
            padding,
        }))
    }
}

impl std::fmt::Display for PieceCid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&multibase_encode(&self.to_bytes()))
    }
}

impl std::str::FromStr for PieceCid {
    type Err = PieceCidError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl From<Commitment> for PieceCid {
    fn from(c: Commitment) -> Self {
        Self(c)
    }
}

/// Legacy v1 CID string (`baga6ea4seaq…`) of a CommP root.
pub fn v1_string(root: &Node) -> String {
    let mut out = Vec::with_capacity(38);
    put_varint(&mut out, CID_V1);
    put_varint(&mut out, CODEC_FIL_COMMITMENT_UNSEALED);
    put_varint(&mut out, MH_SHA256_TRUNC254_PADDED);
    put_varint(&mut out, 32);
    out.extend_from_slice(root);
    multibase_encode(&out)
}

/// Parses a legacy v1 CID string to its root. (v1 has no size, so it cannot become a v2.)
pub fn parse_v1(s: &str) -> Result<Node, PieceCidError> {
    let bytes = multibase_decode(s)?;
    let (codec, multihash, digest) = split_cid(&bytes)?;
    if codec != CODEC_FIL_COMMITMENT_UNSEALED || multihash != MH_SHA256_TRUNC254_PADDED {
        return Err(PieceCidError::NotPiece { codec, multihash });
    }
    let mut root = [0u8; 32];
    if digest.len() != 32 {
        return Err(PieceCidError::DigestLength {
            expected: 32,
            got: digest.len(),
        });
    }
    root.copy_from_slice(digest);
    Ok(root)
}

/// Splits a binary CIDv1 into (codec, multihash code, digest).
fn split_cid(bytes: &[u8]) -> Result<(u64, u64, &[u8]), PieceCidError> {
    let mut pos = 0;
    let version = get_varint(bytes, &mut pos)?;
    if version != CID_V1 {
        return Err(PieceCidError::Version(version));
    }
    let codec = get_varint(bytes, &mut pos)?;
    let multihash = get_varint(bytes, &mut pos)?;
    let len = get_varint(bytes, &mut pos)?;
    let digest = bytes.get(pos..).unwrap_or_default();
    if digest.len() as u64 != len {
        return Err(PieceCidError::DigestLength {
            expected: usize::try_from(len).unwrap_or(usize::MAX),
            got: digest.len(),
        });
    }
    Ok((codec, multihash, digest))
}

/// Unsigned LEB128 (multiformats unsigned-varint).
fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// multiformats unsigned-varint: at most 9 bytes, minimal encoding.
fn get_varint(bytes: &[u8], pos: &mut usize) -> Result<u64, PieceCidError> {
    let start = *pos;
    let mut v: u64 = 0;
    for i in 0..9 {
        let b = *bytes
            .get(start + i)
            .ok_or(PieceCidError::Varint { offset: start })?;
        v |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            if b == 0 && i > 0 {
                return Err(PieceCidError::Varint { offset: start });
            }
            *pos = start + i + 1;
            return Ok(v);
        }
    }
    Err(PieceCidError::Varint { offset: start })
}

const B32: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

fn multibase_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(1 + bytes.len() * 8 / 5 + 1);
    out.push('b');
    let mut acc: u32 = 0;
    let mut bits = 0;
    for &b in bytes {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(B32[((acc >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(B32[((acc << (5 - bits)) & 31) as usize] as char);
    }
    out
}

fn multibase_decode(s: &str) -> Result<Vec<u8>, PieceCidError> {
    let body = s.strip_prefix('b').ok_or(PieceCidError::Multibase)?;
    let mut out = Vec::with_capacity(body.len() * 5 / 8);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for (i, ch) in body.chars().enumerate() {
        let v = match ch {
            'a'..='z' => ch as u32 - 'a' as u32,
            '2'..='7' => ch as u32 - '2' as u32 + 26,
            _ => return Err(PieceCidError::Base32 { offset: i + 1, ch }),
        };
        acc = ((acc << 5) | v) & 0xffff;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varint_round_trip_and_rejects_overlong() {
        for v in [0u64, 1, 127, 128, 300, 0xf101, u32::MAX as u64, 1 << 62] {
            let mut b = Vec::new();
            put_varint(&mut b, v);
            let mut pos = 0;
            assert_eq!(get_varint(&b, &mut pos), Ok(v));
            assert_eq!(pos, b.len());
        }
        let mut pos = 0;
        assert!(get_varint(&[0x80, 0x00], &mut pos).is_err());
        assert!(get_varint(&[0x80], &mut pos).is_err());
    }

    #[test]
    fn base32_round_trip() {
        for len in 0..40 {
            let data: Vec<u8> = (0..len).map(|i| (i * 37 + 5) as u8).collect();
            assert_eq!(multibase_decode(&multibase_encode(&data)).unwrap(), data);
        }
        assert_eq!(
            multibase_decode("bA"),
            Err(PieceCidError::Base32 { offset: 1, ch: 'A' })
        );
    }

    #[test]
    fn parse_rejects_wrong_kinds() {
        // A v1 string is not a v2 PieceCID and vice versa.
        let v1 = "baga6ea4seaqdomn3tgwgrh3g532zopskstnbrd2n3sxfqbze7rxt7vqn7veigmy";
        assert!(matches!(
            PieceCid::parse(v1),
            Err(PieceCidError::NotPiece { .. })
        ));
        let v2 = "bafkzcibcaabdomn3tgwgrh3g532zopskstnbrd2n3sxfqbze7rxt7vqn7veigmy";
        assert!(matches!(parse_v1(v2), Err(PieceCidError::NotPiece { .. })));
        assert!(PieceCid::parse("").is_err());
        assert!(PieceCid::parse("bafk").is_err());
    }
}
