//! EBML (RFC 8794) element headers: variable-length IDs and sizes, and the few value types
//! WebM headers use. Everything here works on a byte slice that may end anywhere: "need more
//! bytes" is `Ok(None)`, never an error.

/// An element header: its ID (marker bits kept, as the specs write IDs), its data size
/// (`None` = unknown size, RFC 8794 §6.2), and the header's own length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Header {
    pub id: u32,
    pub size: Option<u64>,
    pub len: usize,
}

/// Reads a VINT (RFC 8794 §4): returns (value without the marker, length, all value bits set).
fn vint(b: &[u8], max_len: usize) -> Result<Option<(u64, usize, bool)>, String> {
    let Some(&first) = b.first() else {
        return Ok(None);
    };
    let len = first.leading_zeros() as usize + 1;
    if len > max_len {
        return Err(format!(
            "invalid variable-length integer first byte {first:#04x}"
        ));
    }
    let Some(bytes) = b.get(..len) else {
        return Ok(None);
    };
    let mut v = u64::from(first) & (0xff >> len);
    for &x in &bytes[1..] {
        v = (v << 8) | u64::from(x);
    }
    let all_ones = v == (1u64 << (7 * len)) - 1;
    Ok(Some((v, len, all_ones)))
}

/// Reads an element header at the start of `b`.
pub(crate) fn read_header(b: &[u8]) -> Result<Option<Header>, String> {
    let Some(&first) = b.first() else {
        return Ok(None);
    };
    let id_len = first.leading_zeros() as usize + 1;
    if id_len > 4 {
        return Err(format!("invalid element ID first byte {first:#04x}"));
    }
    let Some(id_bytes) = b.get(..id_len) else {
        return Ok(None);
    };
    let id = id_bytes.iter().fold(0u32, |a, &x| (a << 8) | u32::from(x));
    let Some((size, size_len, unknown)) = vint(&b[id_len..], 8)? else {
        return Ok(None);
    };
    Ok(Some(Header {
        id,
        size: if unknown { None } else { Some(size) },
        len: id_len + size_len,
    }))
}

/// A track number inside a (Simple)Block (a VINT without the "unknown" meaning).
pub(crate) fn read_track_number(b: &[u8]) -> Option<(u64, usize)> {
    vint(b, 8).ok().flatten().map(|(v, len, _)| (v, len))
}

/// An unsigned integer element body (0 to 8 bytes, big-endian).
pub(crate) fn uint(body: &[u8]) -> Option<u64> {
    if body.len() > 8 {
        return None;
    }
    Some(body.iter().fold(0u64, |a, &x| (a << 8) | u64::from(x)))
}

/// One child of a master element whose body is complete in memory.
pub(crate) struct Child<'a> {
    pub id: u32,
    pub offset: u64,
    pub body: &'a [u8],
}

/// The children of a complete master element body that starts at absolute offset `base`.
/// Children must have known sizes that fit in the body.
pub(crate) fn children(body: &[u8], base: u64) -> impl Iterator<Item = Result<Child<'_>, String>> {
    let mut pos = 0usize;
    let mut failed = false;
    std::iter::from_fn(move || {
        if failed || pos >= body.len() {
            return None;
        }
        let rest = &body[pos..];
        let offset = base + pos as u64;
        let r = match read_header(rest) {
            Ok(Some(h)) => match h.size {
                Some(size) if size <= (rest.len() - h.len) as u64 => {
                    let end = h.len + size as usize;
                    pos += end;
                    Ok(Child {
                        id: h.id,
                        offset,
                        body: &rest[h.len..end],
                    })
                }
                Some(size) => Err(format!(
                    "element {:#x} at byte {offset} of size {size} overruns its parent",
                    h.id
                )),
                None => Err(format!(
                    "element {:#x} at byte {offset} has an unknown size",
                    h.id
                )),
            },
            Ok(None) => Err(format!("element header cut at byte {offset}")),
            Err(e) => Err(format!("{e} at byte {offset}")),
        };
        failed = r.is_err();
        Some(r)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers() {
        // Segment with unknown size (8-byte all-ones).
        let b = [
            0x18, 0x53, 0x80, 0x67, 0x01, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        ];
        assert_eq!(
            read_header(&b).unwrap(),
            Some(Header {
                id: 0x1853_8067,
                size: None,
                len: 12
            })
        );
        // Cluster with 1-byte unknown size 0xff.
        assert_eq!(
            read_header(&[0x1f, 0x43, 0xb6, 0x75, 0xff])
                .unwrap()
                .unwrap()
                .size,
            None
        );
        // SimpleBlock of 0x4123 bytes, 2-byte size.
        let h = read_header(&[0xa3, 0x41, 0x23]).unwrap().unwrap();
        assert_eq!((h.id, h.size, h.len), (0xa3, Some(0x123), 3));
        assert_eq!(read_header(&[0xa3, 0x41]).unwrap(), None);
        assert_eq!(read_header(&[0x1f, 0x43]).unwrap(), None);
        assert!(read_header(&[0x00, 0x81]).is_err());
        assert!(read_header(&[0xa3, 0x00]).is_err());
    }

    #[test]
    fn values() {
        assert_eq!(uint(&[0x0f, 0x42, 0x40]), Some(1_000_000));
        assert_eq!(uint(&[]), Some(0));
        assert_eq!(read_track_number(&[0x81]), Some((1, 1)));
    }
}
