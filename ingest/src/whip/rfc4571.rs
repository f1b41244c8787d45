//! RFC 4571 framing for ICE-TCP (RFC 6544 §3): over a TCP connection every STUN, DTLS, RTP and
//! RTCP packet is preceded by its length as a 16-bit big-endian integer. Sans-IO: [`Deframer`]
//! turns arbitrarily sliced reads into packets, [`frame`] prefixes one packet, and
//! [`stun_binding_request`] recognises the Binding request a connection must open with (RFC 6544
//! §7.2: the first thing an active ICE-TCP peer sends is its connectivity check).
//!
//! Fuzzed by `fuzz/fuzz_targets/rfc4571.rs`.

/// The largest packet storef takes from a publisher over TCP. WebRTC stacks packetise media and
/// DTLS flights for the path MTU whatever the transport (libwebrtc keeps its ~1200-byte packets on
/// TCP too), so a frame announcing more than this is not media: the connection is dropped rather
/// than made to buffer up to the 64 KiB the 16-bit length allows.
pub const MAX_FRAME: usize = 8 * 1024;

/// Why a TCP byte stream is not RFC 4571 frames storef can take.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FramingError {
    /// The length prefix at `offset` (bytes into the stream) is larger than the limit.
    #[error("RFC 4571 frame at stream offset {offset} announces {len} bytes (limit {max})")]
    TooLong { offset: u64, len: usize, max: usize },
    /// A packet to send is longer than a 16-bit length can say.
    #[error("a {len}-byte packet cannot be framed: RFC 4571 lengths are 16 bits")]
    PacketTooLong { len: usize },
}

/// Splits one direction of a TCP connection into frames.
///
/// Holds at most one unfinished frame (its 2-byte prefix and at most `max_frame - 1` bytes of it),
/// so a peer can make storef buffer no more than `max_frame + 1` bytes per connection. After an
/// error the stream position is lost and every later call returns the same error.
#[derive(Debug)]
pub struct Deframer {
    partial: Vec<u8>,
    /// Stream offset of `partial[0]`.
    offset: u64,
    max_frame: usize,
    failed: Option<FramingError>,
}

impl Deframer {
    /// A deframer refusing frames longer than `max_frame` (at most 65535 takes effect).
    pub fn new(max_frame: usize) -> Self {
        Deframer {
            partial: Vec::new(),
            offset: 0,
            max_frame: max_frame.min(u16::MAX as usize),
            failed: None,
        }
    }

    /// Consumes `input` (any slice of the stream, in order) and appends every frame it completes
    /// to `out`; zero-length frames are frames too (RFC 4571 §2 does not forbid them).
    pub fn feed(&mut self, mut input: &[u8], out: &mut Vec<Vec<u8>>) -> Result<(), FramingError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        loop {
            if self.partial.len() < 2 {
                let take = (2 - self.partial.len()).min(input.len());
                let (head, rest) = input.split_at(take);
                self.partial.extend_from_slice(head);
                input = rest;
                if self.partial.len() < 2 {
                    return Ok(());
                }
            }
            let len = match self.partial.get(..2) {
                Some(&[hi, lo]) => u16::from_be_bytes([hi, lo]) as usize,
                _ => return Ok(()),
            };
            if len > self.max_frame {
                let e = FramingError::TooLong {
                    offset: self.offset,
                    len,
                    max: self.max_frame,
                };
                self.failed = Some(e.clone());
                self.partial = Vec::new();
                return Err(e);
            }
            let need = 2 + len - self.partial.len();
            let take = need.min(input.len());
            let (body, rest) = input.split_at(take);
            self.partial.extend_from_slice(body);
            input = rest;
            if self.partial.len() < 2 + len {
                return Ok(());
            }
            out.push(self.partial.get(2..).unwrap_or_default().to_vec());
            self.offset += self.partial.len() as u64;
            self.partial.clear();
        }
    }

    /// Bytes of an unfinished frame held (prefix included).
    pub fn buffered(&self) -> usize {
        self.partial.len()
    }

    /// Stream offset just after the last complete frame.
    pub fn offset(&self) -> u64 {
        self.offset
    }
}

/// Appends `packet` with its RFC 4571 length prefix to `out`.
pub fn frame(packet: &[u8], out: &mut Vec<u8>) -> Result<(), FramingError> {
    let len = u16::try_from(packet.len())
        .map_err(|_| FramingError::PacketTooLong { len: packet.len() })?;
    out.reserve(2 + packet.len());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(packet);
    Ok(())
}

/// A STUN Binding request (RFC 8489 §5: class request, method 0x001, the magic cookie, a length
/// that matches and attributes that add up).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BindingRequest<'a> {
    /// USERNAME (RFC 8489 §14.3): for ICE `<receiver ufrag>:<sender ufrag>` (RFC 8445 §7.2.2).
    pub username: Option<&'a str>,
}

impl<'a> BindingRequest<'a> {
    /// The ufrag of the side the request is addressed to: storef's, naming the session.
    pub fn local_ufrag(&self) -> Option<&'a str> {
        self.username.and_then(|u| u.split(':').next())
    }
}

const STUN_MAGIC: [u8; 4] = [0x21, 0x12, 0xa4, 0x42];
const ATTR_USERNAME: u16 = 0x0006;

/// Whether `packet` is a well-formed STUN Binding request, and its USERNAME. Only a cheap
/// structural check: the session's `Rtc` verifies MESSAGE-INTEGRITY before anything is accepted.
pub fn stun_binding_request(packet: &[u8]) -> Option<BindingRequest<'_>> {
    let header = packet.get(..20)?;
    let msg_type = u16::from_be_bytes([*header.first()?, *header.get(1)?]);
    let msg_len = u16::from_be_bytes([*header.get(2)?, *header.get(3)?]) as usize;
    if msg_type != 0x0001 || header.get(4..8)? != STUN_MAGIC {
        return None;
    }
    let mut attrs = packet.get(20..)?;
    if attrs.len() != msg_len || !msg_len.is_multiple_of(4) {
        return None;
    }
    let mut username = None;
    while !attrs.is_empty() {
        let kind = u16::from_be_bytes([*attrs.first()?, *attrs.get(1)?]);
        let len = u16::from_be_bytes([*attrs.get(2)?, *attrs.get(3)?]) as usize;
        let value = attrs.get(4..4 + len)?;
        if kind == ATTR_USERNAME && username.is_none() {
            username = Some(std::str::from_utf8(value).ok()?);
        }
        let padded = 4 + len.div_ceil(4) * 4;
        attrs = attrs.get(padded..)?;
    }
    Some(BindingRequest { username })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(packets: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for p in packets {
            frame(p, &mut out).unwrap();
        }
        out
    }

    #[test]
    fn frame_prefixes_the_length_big_endian() {
        let mut out = vec![9];
        frame(&[1, 2, 3], &mut out).unwrap();
        assert_eq!(out, [9, 0, 3, 1, 2, 3]);
        let big = vec![0u8; 65535];
        let mut out = Vec::new();
        frame(&big, &mut out).unwrap();
        assert_eq!(&out[..2], [0xff, 0xff]);
        assert_eq!(out.len(), 65537);
        assert_eq!(
            frame(&vec![0u8; 65536], &mut Vec::new()),
            Err(FramingError::PacketTooLong { len: 65536 })
        );
    }

    #[test]
    fn several_frames_in_one_read_and_a_zero_length_one() {
        let mut d = Deframer::new(MAX_FRAME);
        let mut out = Vec::new();
        d.feed(&framed(&[b"abc", b"", b"de"]), &mut out).unwrap();
        assert_eq!(out, [b"abc".to_vec(), vec![], b"de".to_vec()]);
        assert_eq!(d.buffered(), 0);
        assert_eq!(d.offset(), 5 + 2 + 4);
    }

    #[test]
    fn a_frame_split_across_reads_byte_by_byte() {
        let stream = framed(&[b"hello", b"world!"]);
        let mut d = Deframer::new(MAX_FRAME);
        let mut out = Vec::new();
        for (i, b) in stream.iter().enumerate() {
            d.feed(std::slice::from_ref(b), &mut out).unwrap();
            match i {
                0..=5 => assert!(out.is_empty(), "after byte {i}"),
                6..=13 => assert_eq!(out.len(), 1, "after byte {i}"),
                _ => assert_eq!(out.len(), 2),
            }
        }
        assert_eq!(out, [b"hello".to_vec(), b"world!".to_vec()]);
        // An empty read changes nothing.
        d.feed(&[], &mut out).unwrap();
        assert_eq!(out.len(), 2);
    }

    #[test]
    fn an_oversized_length_fails_at_once_with_its_offset_and_stays_failed() {
        let mut d = Deframer::new(1500);
        let mut out = Vec::new();
        let mut stream = framed(&[&[7u8; 1500]]);
        stream.extend_from_slice(&[0x05, 0xdd]); // 1501
        let e = d.feed(&stream, &mut out).unwrap_err();
        assert_eq!(
            e,
            FramingError::TooLong {
                offset: 1502,
                len: 1501,
                max: 1500
            }
        );
        assert_eq!(out.len(), 1, "the good frame before it still came out");
        assert_eq!(d.buffered(), 0);
        assert_eq!(d.feed(&[0, 1, 2], &mut out), Err(e));
        // A huge prefix is refused from its two bytes, before any body arrives.
        let mut d = Deframer::new(MAX_FRAME);
        assert!(matches!(
            d.feed(&[0xff, 0xff], &mut out),
            Err(FramingError::TooLong { len: 65535, .. })
        ));
    }

    #[test]
    fn buffered_bytes_never_exceed_one_frame() {
        let mut d = Deframer::new(100);
        let mut out = Vec::new();
        let mut stream = Vec::new();
        for i in 0..50u8 {
            frame(&[i; 100], &mut stream).unwrap();
        }
        for chunk in stream.chunks(37) {
            d.feed(chunk, &mut out).unwrap();
            assert!(d.buffered() <= 101, "{}", d.buffered());
        }
        assert_eq!(out.len(), 50);
        assert!(out
            .iter()
            .enumerate()
            .all(|(i, f)| f == &vec![i as u8; 100]));
    }

    /// A Binding request as Chromium sends it over TCP (header, USERNAME, PRIORITY ...).
    fn binding_request(username: &str) -> Vec<u8> {
        let mut attrs = Vec::new();
        attrs.extend_from_slice(&ATTR_USERNAME.to_be_bytes());
        attrs.extend_from_slice(&(username.len() as u16).to_be_bytes());
        attrs.extend_from_slice(username.as_bytes());
        while attrs.len() % 4 != 0 {
            attrs.push(0);
        }
        attrs.extend_from_slice(&[0x00, 0x24, 0x00, 0x04, 0x6e, 0x7f, 0x1e, 0xff]);
        let mut p = vec![0x00, 0x01];
        p.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
        p.extend_from_slice(&STUN_MAGIC);
        p.extend_from_slice(&[0xab; 12]);
        p.extend_from_slice(&attrs);
        p
    }

    #[test]
    fn binding_requests_are_recognised_with_their_ufrag() {
        let p = binding_request("srvU:cli1");
        let r = stun_binding_request(&p).unwrap();
        assert_eq!(r.username, Some("srvU:cli1"));
        assert_eq!(r.local_ufrag(), Some("srvU"));
        // Binding success response (0x0101), wrong cookie, bad lengths, DTLS, RTP: not requests.
        let mut resp = p.clone();
        resp[0] = 0x01;
        assert_eq!(stun_binding_request(&resp), None);
        let mut cookie = p.clone();
        cookie[4] = 0;
        assert_eq!(stun_binding_request(&cookie), None);
        assert_eq!(stun_binding_request(&p[..p.len() - 4]), None);
        let mut attr_len = p.clone();
        attr_len[23] = 200;
        assert_eq!(stun_binding_request(&attr_len), None);
        assert_eq!(stun_binding_request(&[0x16, 0xfe, 0xfd, 0, 0]), None);
        assert_eq!(stun_binding_request(&[0x80; 40]), None);
        assert_eq!(
            stun_binding_request(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
            None
        );
    }

    proptest::proptest! {
        /// However the stream of frames is cut into reads, the same frames come out.
        #[test]
        fn any_slicing_gives_the_same_frames(
            packets in proptest::collection::vec(proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300), 0..20),
            cuts in proptest::collection::vec(0usize..4000, 0..30),
        ) {
            let refs: Vec<&[u8]> = packets.iter().map(Vec::as_slice).collect();
            let stream = framed(&refs);
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (stream.len() + 1)).collect();
            cuts.push(0);
            cuts.push(stream.len());
            cuts.sort_unstable();
            let mut d = Deframer::new(300);
            let mut out = Vec::new();
            for w in cuts.windows(2) {
                d.feed(&stream[w[0]..w[1]], &mut out).unwrap();
                proptest::prop_assert!(d.buffered() <= 301);
            }
            proptest::prop_assert_eq!(out, packets);
            proptest::prop_assert_eq!(d.buffered(), 0);
            proptest::prop_assert_eq!(d.offset(), stream.len() as u64);
        }
    }
}
