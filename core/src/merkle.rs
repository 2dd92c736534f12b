//! Merkle trees over fixed-size chunks, with the RFC 6962 leaf and node
//! prefixes (`docs/PROTOCOL.md`, "Merkle trees").
//!
//! A buffer is cut into [`CHUNK_SIZE`] chunks (the last may be shorter); leaf
//! `i` is `SHA-256(0x00 ‖ chunk_i)`, an inner node is `SHA-256(0x01 ‖ left ‖
//! right)`, and the tree over `n` leaves splits at the largest power of two
//! below `n` (RFC 6962 §2.1). The root of no leaves is `SHA-256("")`.
//! Several buffers form one tree by concatenating their leaves in order, each
//! buffer cut into chunks separately.
//!
//! [`RootBuilder`] computes the root while chunks stream past, holding one
//! digest per level (at most 33), so transfers are verified without keeping
//! the data. [`prove`] and [`verify_proof`] give and check the audit path of
//! one chunk, so a verifier can spot-check a single chunk of a large output.

use crate::crypto::Sha256;

use crate::limits::CHUNK_SIZE;
use crate::wire::{BufferSpec, Digest};

/// Longest audit path: trees have at most 2^32 leaves.
pub const MAX_PROOF_LEN: usize = 32;

/// The leaf hash of one chunk: SHA-256(0x00 ‖ data).
pub fn leaf_hash(data: &[u8]) -> Digest {
    let mut ctx = Sha256::new();
    ctx.update(&[0x00]);
    ctx.update(data);
    ctx.finish()
}

/// An inner node's hash: SHA-256(0x01 ‖ left ‖ right).
pub fn node_hash(left: &Digest, right: &Digest) -> Digest {
    let mut ctx = Sha256::new();
    ctx.update(&[0x01]);
    ctx.update(left);
    ctx.update(right);
    ctx.finish()
}

/// The root of a tree with no leaves: SHA-256 of the empty string.
pub fn empty_root() -> Digest {
    Sha256::new().finish()
}

/// Number of chunks (leaves) a buffer of `len` bytes is cut into.
pub fn chunk_count(len: u64) -> u64 {
    len.div_ceil(CHUNK_SIZE as u64)
}

/// Number of leaves of a job's output tree: the chunks of every read-back
/// buffer, each cut separately. This is the exact tree size a spot check of
/// one output chunk requires ([`crate::attest::verify_output_chunk`]); the
/// layout it is computed from is bound by the receipt's kernel hash.
pub fn output_leaf_count(buffers: &[BufferSpec]) -> u64 {
    buffers
        .iter()
        .filter(|b| b.readback)
        .fold(0u64, |n, b| n.saturating_add(chunk_count(b.len)))
}

/// Computes a Merkle root from leaf hashes given in order, one at a time.
///
/// It keeps the roots of the perfect subtrees seen so far (one per set bit of
/// the leaf count), so its size is fixed whatever the tree's size.
#[derive(Clone, Debug)]
pub struct RootBuilder {
    /// `stack[i]` is the root of a perfect subtree; heights strictly decrease.
    stack: [Digest; MAX_PROOF_LEN + 1],
    heights: [u8; MAX_PROOF_LEN + 1],
    depth: usize,
    leaves: u64,
}

impl Default for RootBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl RootBuilder {
    /// A builder with no leaves.
    pub const fn new() -> Self {
        RootBuilder {
            stack: [[0; 32]; MAX_PROOF_LEN + 1],
            heights: [0; MAX_PROOF_LEN + 1],
            depth: 0,
            leaves: 0,
        }
    }

    /// Leaves pushed so far.
    pub fn leaves(&self) -> u64 {
        self.leaves
    }

    /// Appends the next leaf hash. Returns `false`, changing nothing, once the
    /// tree holds 2^32 leaves.
    pub fn push_leaf(&mut self, leaf: Digest) -> bool {
        if self.leaves >= 1u64 << MAX_PROOF_LEN {
            return false;
        }
        let mut hash = leaf;
        let mut height = 0u8;
        while self.depth > 0 && self.heights[self.depth - 1] == height {
            self.depth -= 1;
            hash = node_hash(&self.stack[self.depth], &hash);
            height += 1;
        }
        self.stack[self.depth] = hash;
        self.heights[self.depth] = height;
        self.depth += 1;
        self.leaves += 1;
        true
    }

    /// Appends the root of a perfect subtree of `2^height` leaves, as if its
    /// leaves were pushed one by one. Valid only where such a subtree starts:
    /// when the leaves so far are a multiple of `2^height`.
    #[cfg(feature = "std")]
    fn push_subtree(&mut self, root: Digest, height: u8) -> bool {
        let size = 1u64 << height;
        if self.leaves % size != 0 || self.leaves + size > 1u64 << MAX_PROOF_LEN {
            return false;
        }
        let mut hash = root;
        let mut height = height;
        while self.depth > 0 && self.heights[self.depth - 1] == height {
            self.depth -= 1;
            hash = node_hash(&self.stack[self.depth], &hash);
            height += 1;
        }
        self.stack[self.depth] = hash;
        self.heights[self.depth] = height;
        self.depth += 1;
        self.leaves += size;
        true
    }

    /// Hashes `data` as the next chunk and appends its leaf.
    pub fn push_chunk(&mut self, data: &[u8]) -> bool {
        self.push_leaf(leaf_hash(data))
    }

    /// The root over every leaf pushed so far (RFC 6962 `MTH`).
    pub fn root(&self) -> Digest {
        if self.depth == 0 {
            return empty_root();
        }
        let mut hash = self.stack[self.depth - 1];
        for i in (0..self.depth - 1).rev() {
            hash = node_hash(&self.stack[i], &hash);
        }
        hash
    }
}

/// The Merkle root of `data` cut into [`CHUNK_SIZE`] chunks.
pub fn root_of(data: &[u8]) -> Digest {
    root_of_buffers([data])
}

/// The Merkle root of `data`, equal to [`root_of`], hashed on up to `threads`
/// threads.
///
/// The leaves are cut into aligned blocks of a power-of-two number of leaves,
/// each block the root of a perfect subtree; the threads hash contiguous runs
/// of blocks while the calling thread hashes the leaves past the last whole
/// block, and the block roots then fold like single leaves, one level up.
#[cfg(feature = "std")]
pub fn root_of_parallel(data: &[u8], threads: usize) -> Digest {
    let leaves = data.len().div_ceil(CHUNK_SIZE);
    let threads = threads.max(1);
    // Enough blocks per thread (at least four) to even out the work.
    if threads == 1 || leaves < 4 * threads {
        return root_of(data);
    }
    let mut block = 1usize;
    while block * 2 * 4 * threads <= leaves {
        block *= 2;
    }
    let height = block.trailing_zeros() as u8;
    let blocks = leaves / block;
    let block_bytes = block * CHUNK_SIZE;
    let whole = (blocks * block_bytes).min(data.len());
    let (head, tail) = data.split_at(whole);

    let mut builder = RootBuilder::new();
    let mut tail_leaves = std::vec::Vec::with_capacity(tail.len().div_ceil(CHUNK_SIZE));
    std::thread::scope(|scope| {
        let parts: std::vec::Vec<_> = (0..threads)
            .map(|t| {
                let first = blocks * t / threads;
                let last = blocks * (t + 1) / threads;
                let part = &head[(first * block_bytes).min(whole)..(last * block_bytes).min(whole)];
                scope.spawn(move || {
                    part.chunks(block_bytes)
                        .map(|b| {
                            let mut sub = RootBuilder::new();
                            for chunk in b.chunks(CHUNK_SIZE) {
                                sub.push_chunk(chunk);
                            }
                            sub.root()
                        })
                        .collect::<std::vec::Vec<Digest>>()
                })
            })
            .collect();
        tail_leaves.extend(tail.chunks(CHUNK_SIZE).map(leaf_hash));
        for part in parts {
            // A hashing thread cannot panic but on a bug; pass it on then.
            let roots = match part.join() {
                Ok(roots) => roots,
                Err(panic) => std::panic::resume_unwind(panic),
            };
            for root in roots {
                builder.push_subtree(root, height);
            }
        }
    });
    for leaf in tail_leaves {
        builder.push_leaf(leaf);
    }
    builder.root()
}

/// The Merkle root over several buffers, each cut into chunks separately,
/// leaves in buffer order.
pub fn root_of_buffers<'a>(buffers: impl IntoIterator<Item = &'a [u8]>) -> Digest {
    let mut b = RootBuilder::new();
    for buf in buffers {
        for chunk in buf.chunks(CHUNK_SIZE) {
            b.push_chunk(chunk);
        }
    }
    b.root()
}

/// An audit path: the sibling hashes from the leaf up to the root.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Proof {
    /// Index of the proven leaf.
    pub index: u64,
    /// Leaves in the tree.
    pub tree_size: u64,
    /// Sibling hashes, leaf level first.
    pub path: crate::bounded::BoundedVec<Digest, MAX_PROOF_LEN>,
}

/// Why a proof could not be made or did not verify.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProofError {
    /// The index is not below the tree size.
    IndexOutOfRange,
    /// The path is longer or shorter than the tree's shape needs.
    WrongPathLength,
    /// The path leads to another root: the chunk or the proof is not the one
    /// the root commits to.
    RootMismatch,
}

/// Audit path for leaf `index` among `leaves` (RFC 6962 §2.1.1 `PATH`).
///
/// Hashes every leaf once: meant for a provider or requester that holds the
/// whole data, to hand a verifier one chunk and its proof.
pub fn prove(leaves: &[Digest], index: u64) -> Result<Proof, ProofError> {
    let n = leaves.len() as u64;
    if index >= n {
        return Err(ProofError::IndexOutOfRange);
    }
    let mut path: crate::bounded::BoundedVec<Digest, MAX_PROOF_LEN> =
        crate::bounded::BoundedVec::new();
    let mut lo = 0usize;
    let mut hi = leaves.len();
    let m = index as usize;
    // Walk down, collecting siblings root-first, then reverse.
    while hi - lo > 1 {
        let k = largest_power_of_two_below(hi - lo);
        let sibling = if m - lo < k {
            let s = subtree_root(&leaves[lo + k..hi]);
            hi = lo + k;
            s
        } else {
            let s = subtree_root(&leaves[lo..lo + k]);
            lo += k;
            s
        };
        path.push(sibling)
            .map_err(|_| ProofError::WrongPathLength)?;
    }
    path.reverse();
    Ok(Proof {
        index,
        tree_size: n,
        path,
    })
}

fn largest_power_of_two_below(n: usize) -> usize {
    // n >= 2 here.
    let mut k = 1usize;
    while k << 1 < n {
        k <<= 1;
    }
    k
}

fn subtree_root(leaves: &[Digest]) -> Digest {
    let mut b = RootBuilder::new();
    for l in leaves {
        b.push_leaf(*l);
    }
    b.root()
}

/// Checks that `leaf` sits at `proof.index` in the tree with root `root`
/// (RFC 9162 §2.1.3.2).
pub fn verify_proof(root: &Digest, leaf: &Digest, proof: &Proof) -> Result<(), ProofError> {
    if proof.index >= proof.tree_size {
        return Err(ProofError::IndexOutOfRange);
    }
    let mut f_n = proof.index;
    let mut s_n = proof.tree_size - 1;
    let mut r = *leaf;
    for p in proof.path.iter() {
        if s_n == 0 {
            return Err(ProofError::WrongPathLength);
        }
        if f_n & 1 == 1 || f_n == s_n {
            r = node_hash(p, &r);
            if f_n & 1 == 0 {
                while f_n & 1 == 0 && f_n != 0 {
                    f_n >>= 1;
                    s_n >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    if s_n != 0 {
        return Err(ProofError::WrongPathLength);
    }
    if &r == root {
        Ok(())
    } else {
        Err(ProofError::RootMismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6962 MTH, written from the definition.
    fn mth(leaves: &[Digest]) -> Digest {
        match leaves.len() {
            0 => empty_root(),
            1 => leaves[0],
            n => {
                let k = largest_power_of_two_below(n);
                node_hash(&mth(&leaves[..k]), &mth(&leaves[k..]))
            }
        }
    }

    fn leaves(n: usize) -> std::vec::Vec<Digest> {
        (0..n)
            .map(|i| leaf_hash(&(i as u32).to_le_bytes()))
            .collect()
    }

    #[test]
    fn output_leaf_count_counts_read_back_chunks_per_buffer() {
        let buf = |len, readback| BufferSpec {
            binding: 0,
            len,
            init_len: 0,
            readback,
        };
        let c = CHUNK_SIZE as u64;
        assert_eq!(output_leaf_count(&[]), 0);
        assert_eq!(output_leaf_count(&[buf(0, true)]), 0);
        assert_eq!(output_leaf_count(&[buf(1, true)]), 1);
        assert_eq!(output_leaf_count(&[buf(c, true)]), 1);
        assert_eq!(output_leaf_count(&[buf(c + 1, true)]), 2);
        // Input-only buffers add nothing; each read-back buffer is cut
        // separately, so two short buffers are two leaves.
        assert_eq!(
            output_leaf_count(&[buf(5 * c, false), buf(3, true), buf(4, true)]),
            2
        );
        // The largest lengths do not overflow.
        assert_eq!(
            output_leaf_count(&[buf(u64::MAX, true); 3]),
            3 * chunk_count(u64::MAX)
        );
    }

    #[test]
    fn streaming_root_matches_definition() {
        for n in 0..70 {
            let ls = leaves(n);
            assert_eq!(subtree_root(&ls), mth(&ls), "n = {n}");
        }
    }

    #[test]
    fn every_proof_verifies_and_tampering_fails() {
        for n in 1..40 {
            let ls = leaves(n);
            let root = mth(&ls);
            for i in 0..n {
                let p = prove(&ls, i as u64).unwrap();
                assert_eq!(verify_proof(&root, &ls[i], &p), Ok(()), "n={n} i={i}");
                let other = leaf_hash(b"not this chunk");
                assert_eq!(
                    verify_proof(&root, &other, &p),
                    Err(ProofError::RootMismatch)
                );
            }
        }
    }

    #[cfg(feature = "std")]
    #[test]
    fn parallel_root_equals_root_of() {
        let data: std::vec::Vec<u8> = (0..70 * CHUNK_SIZE + 17)
            .map(|i| (i * 31 + 7) as u8)
            .collect();
        let sizes = [
            0,
            1,
            CHUNK_SIZE,
            CHUNK_SIZE + 1,
            8 * CHUNK_SIZE,
            8 * CHUNK_SIZE - 1,
            13 * CHUNK_SIZE + 5,
            32 * CHUNK_SIZE,
            33 * CHUNK_SIZE,
            64 * CHUNK_SIZE + 1,
            data.len(),
        ];
        for len in sizes {
            let expected = root_of(&data[..len]);
            for threads in [0, 1, 2, 3, 4, 7, 16] {
                assert_eq!(
                    root_of_parallel(&data[..len], threads),
                    expected,
                    "len {len}, {threads} threads"
                );
            }
        }
    }

    #[test]
    fn short_last_chunk_and_multi_buffer_roots() {
        let a = [7u8; CHUNK_SIZE + 10];
        let b = [9u8; 3];
        let manual = mth(&[
            leaf_hash(&a[..CHUNK_SIZE]),
            leaf_hash(&a[CHUNK_SIZE..]),
            leaf_hash(&b),
        ]);
        assert_eq!(root_of_buffers([&a[..], &b[..]]), manual);
        assert_eq!(chunk_count(0), 0);
        assert_eq!(chunk_count(CHUNK_SIZE as u64), 1);
        assert_eq!(chunk_count(CHUNK_SIZE as u64 + 1), 2);
    }
}
