//! Walking ISO BMFF boxes (ISO/IEC 14496-12 §4.2) in a buffer that is already in memory.
//!
//! mp4-atom decodes one box type at a time; this module only finds the boxes and their byte
//! ranges, so that errors can name the absolute offset of the offending box and so that a box we do
//! not care about (QuickTime `udta`/`meta` from phones, vendor `uuid`s) can never fail the whole
//! file the way a strict all-in-one decode of `moov` would.

use super::DemuxError;
use mp4_atom::Atom;

/// One box found in a buffer: its type, where it starts in the file, and its body.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RawBox<'a> {
    pub kind: [u8; 4],
    /// Absolute offset of the first byte of the box header.
    pub offset: u64,
    /// Length of the header (8, or 16 with a 64-bit `largesize`).
    pub header_len: usize,
    pub body: &'a [u8],
}

impl RawBox<'_> {
    /// Absolute offset of the first body byte.
    pub fn body_offset(&self) -> u64 {
        self.offset + self.header_len as u64
    }

    pub fn kind_str(&self) -> String {
        fourcc_str(self.kind)
    }

    /// Decodes this box's body with mp4-atom's decoder for `T`.
    ///
    /// Trailing bytes after what `T` understands are ignored, as ffmpeg does: encoders pad boxes.
    pub fn decode<T: Atom>(&self) -> Result<T, DemuxError> {
        let mut body = self.body;
        T::decode_body(&mut body)
            .map_err(|e| DemuxError::malformed(&self.kind_str(), self.offset, e.to_string()))
    }
}

/// A printable four-character code (non-ASCII bytes are shown escaped).
pub(crate) fn fourcc_str(kind: [u8; 4]) -> String {
    kind.iter()
        .flat_map(|&b| std::ascii::escape_default(b))
        .map(char::from)
        .collect()
}

/// Iterates over the boxes packed in `buf`, the body of a box that starts at absolute offset
/// `base` (the offset of `buf[0]`).
pub(crate) struct Children<'a> {
    buf: &'a [u8],
    pos: usize,
    base: u64,
    parent: &'static str,
    done: bool,
}

/// The child boxes of a box body `buf` that begins at absolute offset `base`.
pub(crate) fn children<'a>(buf: &'a [u8], base: u64, parent: &'static str) -> Children<'a> {
    Children {
        buf,
        pos: 0,
        base,
        parent,
        done: false,
    }
}

impl<'a> Iterator for Children<'a> {
    type Item = Result<RawBox<'a>, DemuxError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let rest = self.buf.get(self.pos..)?;
        // QuickTime writes a 4-byte zero terminator after the last child of some containers;
        // fewer than 8 bytes cannot be a box, so treat them as padding (as ffmpeg does).
        if rest.len() < 8 {
            self.done = true;
            return None;
        }
        let offset = self.base + self.pos as u64;
        let item = parse_header(rest, offset, self.parent).map(|(kind, header_len, size)| {
            let body = rest.get(header_len..size).unwrap_or_default();
            self.pos += size;
            RawBox {
                kind,
                offset,
                header_len,
                body,
            }
        });
        if item.is_err() {
            self.done = true;
        }
        Some(item)
    }
}

/// Parses a box header at the start of `rest` and returns (type, header length, total box size),
/// the size being checked to fit in `rest`.
fn parse_header(
    rest: &[u8],
    offset: u64,
    parent: &'static str,
) -> Result<([u8; 4], usize, usize), DemuxError> {
    let (kind, header_len, size) = match read_header_fields(rest) {
        Some(h) => h,
        None => {
            return Err(DemuxError::malformed(
                parent,
                offset,
                "child box header cut by the end of its parent",
            ))
        }
    };
    let size = match size {
        Some(size) => size,
        None => rest.len() as u64, // size 0: extends to the end of the parent
    };
    if size < header_len as u64 {
        return Err(DemuxError::malformed(
            &fourcc_str(kind),
            offset,
            format!("box size {size} is smaller than its {header_len}-byte header"),
        ));
    }
    if size > rest.len() as u64 {
        return Err(DemuxError::malformed(
            &fourcc_str(kind),
            offset,
            format!(
                "box size {size} overruns its parent {parent} ({} bytes left)",
                rest.len()
            ),
        ));
    }
    Ok((kind, header_len, size as usize))
}

/// Reads (type, header length, declared total size or `None` for "to the end") from the first
/// bytes of `b`; `None` if `b` is too short to hold the header.
pub(crate) fn read_header_fields(b: &[u8]) -> Option<([u8; 4], usize, Option<u64>)> {
    let size32 = u32::from_be_bytes(b.get(0..4)?.try_into().ok()?);
    let kind: [u8; 4] = b.get(4..8)?.try_into().ok()?;
    match size32 {
        0 => Some((kind, 8, None)),
        1 => {
            let large = u64::from_be_bytes(b.get(8..16)?.try_into().ok()?);
            Some((kind, 16, Some(large)))
        }
        n => Some((kind, 8, Some(u64::from(n)))),
    }
}

/// Finds the first child of type `kind`.
pub(crate) fn find_child<'a>(
    parent: &RawBox<'a>,
    kind: &[u8; 4],
    parent_name: &'static str,
) -> Result<Option<RawBox<'a>>, DemuxError> {
    for child in children(parent.body, parent.body_offset(), parent_name) {
        let child = child?;
        if &child.kind == kind {
            return Ok(Some(child));
        }
    }
    Ok(None)
}

/// Finds the first child of type `kind`, or fails naming the parent.
pub(crate) fn require_child<'a>(
    parent: &RawBox<'a>,
    kind: &[u8; 4],
    parent_name: &'static str,
) -> Result<RawBox<'a>, DemuxError> {
    find_child(parent, kind, parent_name)?.ok_or_else(|| {
        DemuxError::malformed(
            parent_name,
            parent.offset,
            format!("missing {} box", fourcc_str(*kind)),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walks_children_and_skips_a_short_terminator() {
        let mut buf = Vec::new();
        buf.extend_from_slice(&[0, 0, 0, 12]);
        buf.extend_from_slice(b"free");
        buf.extend_from_slice(&[1, 2, 3, 4]);
        buf.extend_from_slice(&[0, 0, 0, 1]);
        buf.extend_from_slice(b"skip");
        buf.extend_from_slice(&17u64.to_be_bytes());
        buf.push(9);
        buf.extend_from_slice(&[0, 0, 0, 0]); // QuickTime terminator
        let kids: Vec<_> = children(&buf, 100, "test")
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(kids.len(), 2);
        assert_eq!(&kids[0].kind, b"free");
        assert_eq!(kids[0].offset, 100);
        assert_eq!(kids[0].body, &[1, 2, 3, 4]);
        assert_eq!(&kids[1].kind, b"skip");
        assert_eq!(kids[1].offset, 112);
        assert_eq!(kids[1].header_len, 16);
        assert_eq!(kids[1].body, &[9]);
    }

    #[test]
    fn overrunning_child_is_malformed_with_its_offset() {
        let mut buf = vec![0, 0, 0, 8];
        buf.extend_from_slice(b"free");
        buf.extend_from_slice(&[0, 0, 0, 99]);
        buf.extend_from_slice(b"trak");
        let mut it = children(&buf, 1000, "moov");
        assert!(it.next().unwrap().is_ok());
        match it.next().unwrap() {
            Err(DemuxError::Malformed {
                box_type, offset, ..
            }) => {
                assert_eq!(box_type, "trak");
                assert_eq!(offset, 1008);
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(it.next().is_none());
    }
}
