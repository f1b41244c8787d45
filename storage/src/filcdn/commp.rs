//! Streaming CommP (Filecoin piece commitment) over `sha2`.
//!
//! The piece tree, as FRC-0069 defines it and as go-fil-commp-hashhash, Curio and synapse-core
//! compute it:
//! 1. the payload is zero-padded to `127 · 2^k` bytes (at least one 127-byte quad);
//! 2. every 127-byte quad is Fr32-expanded to 128 bytes: split into four 254-bit little-endian
//!    fields, each stored in 32 bytes with its two top bits zero (so it is a BLS12-381 scalar);
//! 3. those 32-byte leaves form a binary merkle tree whose nodes are
//!    `sha256(left ‖ right)` with the two top bits of the last byte cleared
//!    (`sha2-256-trunc254-padded`).
//!
//! The hasher never holds the payload: it keeps the partial quad (127 bytes) and a stack of
//! completed subtree roots, one per level (a binary counter), so memory is O(log n). The zero
//! padding at the end is never hashed byte by byte either: a missing right subtree of level `l`
//! is the precomputed root of `2^l` zero leaves.

use sha2::{Digest, Sha256};
use std::sync::OnceLock;

/// Payload bytes per Fr32 quad (4 × 254 bits).
pub const QUAD_IN: usize = 127;
/// Expanded bytes per quad (4 × 32-byte leaves).
pub const QUAD_OUT: usize = 128;
/// Smallest payload a PDP provider accepts (Curio `PieceSizeMinLimit`: one padded 128-byte
/// piece unpadded; synapse-core `SIZE_CONSTANTS.MIN_UPLOAD_SIZE`). Smaller inputs still hash
/// (padded to 127 bytes) but cannot be uploaded.
pub const MIN_UPLOAD_SIZE: u64 = 127;
/// Largest payload a PDP provider accepts: 1 GiB padded, i.e. `2^30 · 127/128` (Curio
/// `PieceSizeMaxLimit` from `proof.MaxMemtreeSize`; synapse-core `MAX_UPLOAD_SIZE`).
pub const MAX_UPLOAD_SIZE: u64 = 1_065_353_216;

/// A 32-byte merkle node.
pub type Node = [u8; 32];

/// Levels of precomputed zero-subtree roots. A level-`l` node covers `2^l` leaves of 32 bytes;
/// 64 levels is far beyond any u64 payload.
const ZERO_LEVELS: usize = 64;

/// `zero_roots()[l]` is the root of a subtree of `2^l` all-zero leaves (level 0 = zero leaf).
/// Fr32 expansion of zero bytes is zero bytes, so these are exactly the roots of zero padding.
fn zero_roots() -> &'static [Node; ZERO_LEVELS] {
    static ROOTS: OnceLock<[Node; ZERO_LEVELS]> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let mut roots = [[0u8; 32]; ZERO_LEVELS];
        for level in 1..ZERO_LEVELS {
            roots[level] = hash_pair(&roots[level - 1], &roots[level - 1]);
        }
        roots
    })
}

/// One tree node: SHA-256 of the two children, top two bits cleared (`trunc254`).
pub fn hash_pair(left: &Node, right: &Node) -> Node {
    let mut h = Sha256::new();
    h.update(left);
    h.update(right);
    let mut out: Node = h.finalize().into();
    out[31] &= 0b0011_1111;
    out
}

/// Fr32-expands one 127-byte quad into four 32-byte leaves.
///
/// Field `i` is the 254 bits starting at bit `254·i` of the quad read as a little-endian bit
/// string; it starts in byte `⌊254·i/8⌋` at bit offset `(254·i) mod 8` (0, 6, 4, 2).
pub fn fr32_expand(quad: &[u8; QUAD_IN]) -> [u8; QUAD_OUT] {
    let mut out = [0u8; QUAD_OUT];
    for field in 0..4 {
        let bit = 254 * field;
        let start = bit / 8;
        let shift = (bit % 8) as u32;
        for j in 0..32 {
            let lo = quad.get(start + j).copied().unwrap_or(0);
            let byte = if shift == 0 {
                lo
            } else {
                let hi = quad.get(start + j + 1).copied().unwrap_or(0);
                (lo >> shift) | (hi << (8 - shift))
            };
            out[field * 32 + j] = byte;
        }
        out[field * 32 + 31] &= 0b0011_1111;
    }
    out
}

/// Root of one quad's 4-leaf subtree (a level-2 node).
fn quad_root(quad: &[u8; QUAD_IN]) -> Node {
    let exp = fr32_expand(quad);
    let leaf = |i: usize| -> Node {
        let mut n = [0u8; 32];
        n.copy_from_slice(&exp[i * 32..i * 32 + 32]);
        n
    };
    let a = hash_pair(&leaf(0), &leaf(1));
    let b = hash_pair(&leaf(2), &leaf(3));
    hash_pair(&a, &b)
}

/// The result of hashing a payload: what both PieceCID forms are built from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Commitment {
    /// Merkle root (the v1 CID's digest; the tail of the v2 digest).
    pub root: Node,
    /// Tree height: the tree has `2^height` 32-byte leaves. At least 2 (one quad).
    pub height: u8,
    /// Zero bytes appended to the payload to reach `127 · 2^(height-2)` (FRC-0069 `padding`).
    pub padding: u64,
}

impl Commitment {
    /// Payload size this commitment was computed over.
    pub fn payload_size(&self) -> u64 {
        unpadded_size(self.height).saturating_sub(self.padding)
    }

    /// Filecoin "padded piece size": `32 · 2^height` (what contracts and Curio call the piece size).
    pub fn padded_piece_size(&self) -> u64 {
        if self.height >= 59 {
            u64::MAX
        } else {
            32u64 << self.height
        }
    }
}

/// `127 · 2^(height-2)`: payload capacity of a tree of the given height.
pub fn unpadded_size(height: u8) -> u64 {
    let shift = height.saturating_sub(2);
    if shift >= 64 {
        return u64::MAX;
    }
    (1u64 << shift).saturating_mul(QUAD_IN as u64)
}

/// Streaming CommP hasher: `update` with the payload in any split, then `finalize`.
#[derive(Clone)]
pub struct CommPHasher {
    quad: [u8; QUAD_IN],
    fill: usize,
    total: u64,
    /// Completed subtree roots; levels strictly decrease from bottom to top.
    stack: Vec<(u8, Node)>,
}

impl Default for CommPHasher {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for CommPHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CommPHasher")
            .field("total", &self.total)
            .field("stack_depth", &self.stack.len())
            .finish()
    }
}

impl CommPHasher {
    pub fn new() -> Self {
        Self {
            quad: [0u8; QUAD_IN],
            fill: 0,
            total: 0,
            stack: Vec::with_capacity(40),
        }
    }

    /// Bytes fed so far.
    pub fn count(&self) -> u64 {
        self.total
    }

    /// Feeds more payload.
    pub fn update(&mut self, mut data: &[u8]) {
        self.total = self.total.saturating_add(data.len() as u64);
        if self.fill > 0 {
            let take = (QUAD_IN - self.fill).min(data.len());
            self.quad[self.fill..self.fill + take].copy_from_slice(&data[..take]);
            self.fill += take;
            data = &data[take..];
            if self.fill < QUAD_IN {
                return;
            }
            let quad = self.quad;
            self.push_quad(&quad);
            self.fill = 0;
        }
        let mut chunks = data.chunks_exact(QUAD_IN);
        for chunk in &mut chunks {
            let mut quad = [0u8; QUAD_IN];
            quad.copy_from_slice(chunk);
            self.push_quad(&quad);
        }
        let rest = chunks.remainder();
        self.quad[..rest.len()].copy_from_slice(rest);
        self.fill = rest.len();
    }

    fn push_quad(&mut self, quad: &[u8; QUAD_IN]) {
        self.push_node(2, quad_root(quad));
    }

    /// Pushes a level-`level` root and merges equal levels like a binary counter carry.
    fn push_node(&mut self, mut level: u8, mut node: Node) {
        while let Some(&(top_level, top)) = self.stack.last() {
            if top_level != level {
                break;
            }
            self.stack.pop();
            node = hash_pair(&top, &node);
            level += 1;
        }
        self.stack.push((level, node));
    }

    /// The commitment of everything fed so far. Does not consume the hasher.
    pub fn finalize(&self) -> Commitment {
        let mut stack = self.stack.clone();
        // A partial quad is zero-padded; an empty payload is one zero quad (synapse-core and
        // FRC-0069 give 0 bytes padding 127, height 2).
        if self.fill > 0 || self.total == 0 {
            let mut quad = [0u8; QUAD_IN];
            quad[..self.fill].copy_from_slice(&self.quad[..self.fill]);
            let mut h = CommPHasher {
                stack,
                ..CommPHasher::new()
            };
            h.push_quad(&quad);
            stack = h.stack;
        }
        let zeros = zero_roots();
        // Fold from the smallest (rightmost) subtree up, raising it with zero subtrees until it
        // is the sibling of the next one on the stack.
        let (mut level, mut node) = stack.pop().unwrap_or((2, quad_root(&[0u8; QUAD_IN])));
        while let Some((left_level, left)) = stack.pop() {
            while level < left_level {
                node = hash_pair(&node, &zeros[usize::from(level) % ZERO_LEVELS]);
                level += 1;
            }
            node = hash_pair(&left, &node);
            level += 1;
        }
        let capacity = unpadded_size(level);
        Commitment {
            root: node,
            height: level,
            padding: capacity.saturating_sub(self.total),
        }
    }
}

/// One-shot CommP of a byte slice.
pub fn commp(data: &[u8]) -> Commitment {
    let mut h = CommPHasher::new();
    h.update(data);
    h.finalize()
}

/// CommP of everything an async reader yields (a file on disk), in 64 KiB reads.
pub async fn commp_reader<R: tokio::io::AsyncRead + Unpin>(
    mut reader: R,
) -> std::io::Result<Commitment> {
    use tokio::io::AsyncReadExt;
    let mut h = CommPHasher::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = reader.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reference tree built the slow, obvious way (whole buffer, pad, expand, reduce by level).
    fn naive(data: &[u8]) -> Commitment {
        let mut quads = data.len().div_ceil(QUAD_IN).max(1);
        quads = quads.next_power_of_two();
        let mut padded = data.to_vec();
        padded.resize(quads * QUAD_IN, 0);
        let mut layer: Vec<Node> = Vec::new();
        for q in padded.chunks_exact(QUAD_IN) {
            let mut quad = [0u8; QUAD_IN];
            quad.copy_from_slice(q);
            let e = fr32_expand(&quad);
            for l in e.chunks_exact(32) {
                let mut n = [0u8; 32];
                n.copy_from_slice(l);
                layer.push(n);
            }
        }
        let mut height = 0u8;
        while layer.len() > 1 {
            layer = layer
                .chunks_exact(2)
                .map(|p| hash_pair(&p[0], &p[1]))
                .collect();
            height += 1;
        }
        Commitment {
            root: layer[0],
            height,
            padding: (quads * QUAD_IN - data.len()) as u64,
        }
    }

    #[test]
    fn fr32_of_all_ones_clears_two_bits_per_field() {
        let out = fr32_expand(&[0xff; QUAD_IN]);
        for field in 0..4 {
            assert!(out[field * 32..field * 32 + 31].iter().all(|&b| b == 0xff));
            assert_eq!(out[field * 32 + 31], 0x3f);
        }
    }

    #[test]
    fn fr32_moves_bit_254_to_next_field() {
        // Bit 254 of the quad (byte 31, bit 6) is the first bit of field 1.
        let mut quad = [0u8; QUAD_IN];
        quad[31] = 0b0100_0000;
        let out = fr32_expand(&quad);
        assert_eq!(out[31], 0);
        assert_eq!(out[32], 1);
        // Last payload bit (byte 126, bit 7) is bit 253 of field 3: byte 127, bit 5.
        let mut quad = [0u8; QUAD_IN];
        quad[126] = 0x80;
        let out = fr32_expand(&quad);
        assert_eq!(out[127], 0b0010_0000);
    }

    #[test]
    fn streaming_matches_naive_for_many_sizes() {
        for size in [
            0usize, 1, 126, 127, 128, 253, 254, 255, 508, 509, 1016, 1017, 4064, 9000,
        ] {
            let data: Vec<u8> = (0..size).map(|i| (i * 7 + 13) as u8).collect();
            assert_eq!(commp(&data), naive(&data), "size {size}");
        }
    }

    #[test]
    fn sizes_and_padding() {
        let c = commp(&[0u8; 0]);
        assert_eq!((c.height, c.padding, c.payload_size()), (2, 127, 0));
        let c = commp(&[1u8; 128]);
        assert_eq!((c.height, c.padding, c.padded_piece_size()), (3, 126, 256));
        // 1 GiB padded = 32 · 2^25 bytes of leaves.
        assert_eq!(unpadded_size(25), MAX_UPLOAD_SIZE);
    }
}
