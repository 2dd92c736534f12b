//! Batched receipts (`docs/PROTOCOL.md`, "Batched receipts"): one signature
//! over the Merkle root of up to [`MAX_BATCH`] receipt payloads, each job
//! getting its payload, its place and an audit path. Every payload is the
//! plain receipt payload, chain fields included, so each job stays
//! individually verifiable and the chain rules apply unchanged; only the
//! link (what the next receipt's `prev_hash` names) is the SHA-256 of the
//! payload rather than of signed bytes of its own.

use super::cose::{self, sign1_len};
use super::receipt::RECEIPT_PAYLOAD_LEN;
use super::{sha256, Reader, Receipt, SignError, Signer, VerifyError, Writer};
use crate::bounded::BoundedVec;
use crate::merkle::{self, Proof};
use crate::wire::{Digest, KeyId, Nonce};

/// Domain tag (COSE external AAD) of a batch statement.
pub const BATCH_DOMAIN: &[u8] = b"tessera/batch/v1";
/// Layout version of a batch statement.
const BATCH_VERSION: u8 = 1;
/// The most receipts one batch signs.
pub const MAX_BATCH: u32 = 256;
/// The longest audit path in a batch of [`MAX_BATCH`] (log2).
pub const MAX_BATCH_PATH: usize = 8;
/// A batch statement's payload length.
pub const BATCH_PAYLOAD_LEN: usize = 1 + 16 + 8 + 4 + 32;
/// A signed batch statement's length.
pub const BATCH_LEN: usize = sign1_len(BATCH_PAYLOAD_LEN);
/// A batched receipt's length with an empty audit path (a batch of one);
/// each path hash adds 32.
pub const BATCHED_RECEIPT_MIN_LEN: usize = BATCH_LEN + 4 + 1 + RECEIPT_PAYLOAD_LEN;
/// The longest batched receipt.
pub const BATCHED_RECEIPT_MAX_LEN: usize = BATCHED_RECEIPT_MIN_LEN + 32 * MAX_BATCH_PATH;
/// The longest receipt in either form (a batched one).
pub const MAX_RECEIPT_LEN: usize = BATCHED_RECEIPT_MAX_LEN;
const _: () = assert!(MAX_RECEIPT_LEN > super::RECEIPT_LEN);

/// Whether `len` is the length of a receipt in one of its two forms:
/// [`RECEIPT_LEN`](super::RECEIPT_LEN) signed alone, or
/// [`BATCHED_RECEIPT_MIN_LEN`] plus 32 per path hash (at most
/// [`MAX_BATCH_PATH`]) batched.
pub fn is_receipt_len(len: usize) -> bool {
    len == super::RECEIPT_LEN
        || (BATCHED_RECEIPT_MIN_LEN..=BATCHED_RECEIPT_MAX_LEN).contains(&len)
            && (len - BATCHED_RECEIPT_MIN_LEN) % 32 == 0
}

/// What a batch's signature covers: `count` receipt payloads of one key, with
/// consecutive sequence numbers from `first_sequence`, by the RFC 9162 root
/// of their leaf hashes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReceiptBatch {
    /// The signing key's id; must equal the COSE header's.
    pub key_id: KeyId,
    /// The sequence number of the batch's first receipt.
    pub first_sequence: u64,
    /// Receipts in the batch, 1..=[`MAX_BATCH`].
    pub count: u32,
    /// Merkle root over `leaf_hash(payload)` of each receipt, in sequence order.
    pub root: Digest,
}

impl ReceiptBatch {
    /// The fixed-width payload.
    pub fn encode_payload(&self) -> [u8; BATCH_PAYLOAD_LEN] {
        let mut buf = [0u8; BATCH_PAYLOAD_LEN];
        let mut w = Writer::new(&mut buf);
        w.u8(BATCH_VERSION);
        w.bytes(&self.key_id);
        w.u64(self.first_sequence);
        w.u32(self.count);
        w.bytes(&self.root);
        debug_assert_eq!(w.pos, BATCH_PAYLOAD_LEN);
        buf
    }

    /// Parses a payload; `Malformed` on a wrong length or version, or a
    /// count outside 1..=[`MAX_BATCH`].
    pub fn decode_payload(payload: &[u8]) -> Result<ReceiptBatch, VerifyError> {
        if payload.len() != BATCH_PAYLOAD_LEN {
            return Err(VerifyError::Malformed);
        }
        let mut r = Reader::new(payload);
        if r.u8() != BATCH_VERSION {
            return Err(VerifyError::Malformed);
        }
        let batch = ReceiptBatch {
            key_id: r.take(),
            first_sequence: r.u64(),
            count: r.u32(),
            root: r.take(),
        };
        if batch.count == 0 || batch.count > MAX_BATCH {
            return Err(VerifyError::Malformed);
        }
        Ok(batch)
    }

    /// Signs the statement into `out` (at least [`BATCH_LEN`] bytes);
    /// returns the length written. `self.key_id` must be the signer's.
    pub fn sign<S: Signer + ?Sized>(
        &self,
        signer: &mut S,
        out: &mut [u8],
    ) -> Result<usize, SignError> {
        cose::sign(signer, BATCH_DOMAIN, &self.encode_payload(), out)
    }

    /// Verifies a signed statement's form and signature under `public_key`,
    /// and that its payload names the same key id as its header.
    pub fn verify(bytes: &[u8], public_key: &[u8; 32]) -> Result<ReceiptBatch, VerifyError> {
        let sign1 = cose::parse(bytes, BATCH_PAYLOAD_LEN)?;
        cose::verify(&sign1, BATCH_DOMAIN, public_key)?;
        let batch = ReceiptBatch::decode_payload(sign1.payload)?;
        if batch.key_id != sign1.key_id {
            return Err(VerifyError::UnknownKey);
        }
        Ok(batch)
    }
}

/// The leaf a receipt payload is in its batch's tree: RFC 9162's
/// `SHA-256(0x00 ‖ payload)`.
pub fn batch_leaf(payload: &[u8; RECEIPT_PAYLOAD_LEN]) -> Digest {
    merkle::leaf_hash(payload)
}

/// The link of a receipt signed in a batch: what the next receipt's
/// `prev_hash` names, SHA-256 of its 350-byte payload.
pub fn batched_link(payload: &[u8; RECEIPT_PAYLOAD_LEN]) -> Digest {
    sha256(payload)
}

/// A receipt's audit path in its batch, leaf level first.
pub type BatchPath = BoundedVec<Digest, MAX_BATCH_PATH>;

/// The RFC 9162 root of `leaves` and every leaf's audit path, in one pass
/// over the tree (`count - 1` node hashes): `paths[i]` gets leaf `i`'s.
/// `None` for no leaves, more than [`MAX_BATCH`], or a `paths` of another
/// length.
pub fn batch_paths(leaves: &[Digest], paths: &mut [BatchPath]) -> Option<Digest> {
    if leaves.is_empty() || leaves.len() > MAX_BATCH as usize || paths.len() != leaves.len() {
        return None;
    }
    for p in paths.iter_mut() {
        p.clear();
    }
    Some(fill_paths(leaves, paths))
}

/// The root of `leaves`, pushing each one's siblings onto its path, deepest
/// first (RFC 9162 §2.1.1: split at the largest power of two below the size).
fn fill_paths(leaves: &[Digest], paths: &mut [BatchPath]) -> Digest {
    if leaves.len() == 1 {
        return leaves[0];
    }
    let mut k = 1usize;
    while k << 1 < leaves.len() {
        k <<= 1;
    }
    let (l, r) = leaves.split_at(k);
    let (pl, pr) = paths.split_at_mut(k);
    let left = fill_paths(l, pl);
    let right = fill_paths(r, pr);
    // At most 256 leaves, so at most 8 levels: the pushes fit.
    for p in pl.iter_mut() {
        let _ = p.push(right);
    }
    for p in pr.iter_mut() {
        let _ = p.push(left);
    }
    merkle::node_hash(&left, &right)
}

/// Signs `leaves` (the [`batch_leaf`] of consecutive receipt payloads from
/// `first_sequence`) as one batch into `out`, filling `paths` with each
/// receipt's audit path ([`batch_paths`]); returns the statement and the
/// length written. `Failed(0)` for no leaves, more than [`MAX_BATCH`], or
/// `paths` of another length than `leaves`.
pub fn sign_batch<S: Signer + ?Sized>(
    signer: &mut S,
    first_sequence: u64,
    leaves: &[Digest],
    paths: &mut [BatchPath],
    out: &mut [u8],
) -> Result<(ReceiptBatch, usize), SignError> {
    let root = batch_paths(leaves, paths).ok_or(SignError::Failed(0))?;
    let batch = ReceiptBatch {
        key_id: signer.key_id(),
        first_sequence,
        count: leaves.len() as u32,
        root,
    };
    let n = batch.sign(signer, out)?;
    Ok((batch, n))
}

/// Writes receipt `index`'s batched form into `out`: the signed statement
/// `batch`, the index, its audit `path` (from [`sign_batch`]) and its
/// payload. Returns the length, or `None` when `out` is too small or
/// `batch` is not a statement's length.
pub fn write_batched(
    batch: &[u8],
    index: u32,
    path: &[Digest],
    payload: &[u8; RECEIPT_PAYLOAD_LEN],
    out: &mut [u8],
) -> Option<usize> {
    if batch.len() != BATCH_LEN || path.len() > MAX_BATCH_PATH {
        return None;
    }
    let len = BATCHED_RECEIPT_MIN_LEN + 32 * path.len();
    let out = out.get_mut(..len)?;
    let (head, rest) = out.split_at_mut(BATCH_LEN);
    head.copy_from_slice(batch);
    rest[..4].copy_from_slice(&index.to_le_bytes());
    rest[4] = path.len() as u8;
    let mut at = 5;
    for h in path {
        rest[at..at + 32].copy_from_slice(h);
        at += 32;
    }
    rest[at..].copy_from_slice(payload);
    Some(len)
}

/// A batched receipt split into its parts, borrowed from the bytes; nothing
/// verified yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchedReceipt<'a> {
    /// The signed batch statement.
    pub batch: &'a [u8],
    /// The receipt's place in the batch.
    pub index: u32,
    /// Its audit path's hashes, 32 bytes each, leaf level first.
    pub path: &'a [u8],
    /// The receipt payload.
    pub payload: &'a [u8; RECEIPT_PAYLOAD_LEN],
}

impl<'a> BatchedReceipt<'a> {
    /// Splits `bytes`; `Malformed` unless the length is exactly that of its
    /// stated path (at most [`MAX_BATCH_PATH`] hashes).
    pub fn parse(bytes: &'a [u8]) -> Result<BatchedReceipt<'a>, VerifyError> {
        if bytes.len() < BATCHED_RECEIPT_MIN_LEN {
            return Err(VerifyError::Malformed);
        }
        let (batch, rest) = bytes.split_at(BATCH_LEN);
        let mut index = [0u8; 4];
        index.copy_from_slice(&rest[..4]);
        let path_len = usize::from(rest[4]);
        if path_len > MAX_BATCH_PATH || bytes.len() != BATCHED_RECEIPT_MIN_LEN + 32 * path_len {
            return Err(VerifyError::Malformed);
        }
        let path = &rest[5..5 + 32 * path_len];
        let payload = rest[5 + 32 * path_len..]
            .try_into()
            .map_err(|_| VerifyError::Malformed)?;
        Ok(BatchedReceipt {
            batch,
            index: u32::from_le_bytes(index),
            path,
            payload,
        })
    }

    /// Checks the receipt against an already verified statement: its place,
    /// key, sequence and audit path. Returns the receipt.
    pub fn verify_in(&self, batch: &ReceiptBatch) -> Result<Receipt, VerifyError> {
        if self.index >= batch.count {
            return Err(VerifyError::Malformed);
        }
        let receipt = Receipt::decode_payload(self.payload)?;
        if receipt.key_id != batch.key_id {
            return Err(VerifyError::UnknownKey);
        }
        if Some(receipt.sequence) != batch.first_sequence.checked_add(u64::from(self.index)) {
            return Err(VerifyError::Malformed);
        }
        let mut proof = Proof {
            index: u64::from(self.index),
            tree_size: u64::from(batch.count),
            path: crate::bounded::BoundedVec::new(),
        };
        for h in self.path.chunks_exact(32) {
            let mut d = [0u8; 32];
            d.copy_from_slice(h);
            proof.path.push(d).map_err(|_| VerifyError::Malformed)?;
        }
        // A payload outside the signed tree is not covered by the signature.
        merkle::verify_proof(&batch.root, &batch_leaf(self.payload), &proof)
            .map_err(|_| VerifyError::BadSignature)?;
        Ok(receipt)
    }

    /// The link the next receipt's `prev_hash` names ([`batched_link`]).
    pub fn link(&self) -> Digest {
        batched_link(self.payload)
    }
}

impl Receipt {
    /// Verifies a batched receipt under `public_key`: the statement's form
    /// and signature, then the receipt's place, key, sequence and audit
    /// path. Chain and nonce checks are [`ReceiptVerifier`]'s.
    ///
    /// [`ReceiptVerifier`]: super::ReceiptVerifier
    pub fn verify_batched(bytes: &[u8], public_key: &[u8; 32]) -> Result<Receipt, VerifyError> {
        let parts = BatchedReceipt::parse(bytes)?;
        let batch = ReceiptBatch::verify(parts.batch, public_key)?;
        parts.verify_in(&batch)
    }
}

impl Receipt {
    /// Verifies a receipt in either form under `public_key`: signed alone
    /// ([`RECEIPT_LEN`](super::RECEIPT_LEN) bytes, [`Receipt::verify`]) or
    /// batched ([`Receipt::verify_batched`]); the two never share a length.
    pub fn verify_any(bytes: &[u8], public_key: &[u8; 32]) -> Result<Receipt, VerifyError> {
        if bytes.len() == super::RECEIPT_LEN {
            Receipt::verify(bytes, public_key)
        } else {
            Receipt::verify_batched(bytes, public_key)
        }
    }

    /// The link a receipt in either form makes in its key's chain (what the
    /// next receipt's `prev_hash` names): SHA-256 of the signed bytes for a
    /// receipt signed alone, of the payload for a batched one. Bytes that
    /// are neither give SHA-256 of the bytes (they never verify).
    pub fn link(bytes: &[u8]) -> Digest {
        if bytes.len() == super::RECEIPT_LEN {
            return Receipt::hash(bytes);
        }
        match BatchedReceipt::parse(bytes) {
            Ok(b) => b.link(),
            Err(_) => sha256(bytes),
        }
    }
}

/// The last batch statement whose signature verified, kept by its exact
/// bytes: a batch's receipts arrive together, and each carries the same
/// statement. Keep one per provider key (a hit also checks the key).
pub type StatementSlot = Option<([u8; BATCH_LEN], ReceiptBatch)>;

/// A receipt whose signature verified under a key ([`Receipt::verify_cached`]):
/// what [`ReceiptVerifier::accept`](super::ReceiptVerifier::accept) takes
/// without checking the signature again. Only verification makes one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedReceipt {
    receipt: Receipt,
    public_key: [u8; 32],
    link: Digest,
}

impl VerifiedReceipt {
    /// The receipt's fields.
    pub fn receipt(&self) -> &Receipt {
        &self.receipt
    }

    /// The key its signature verified under.
    pub fn public_key(&self) -> &[u8; 32] {
        &self.public_key
    }

    /// The link it makes in its key's chain ([`Receipt::link`]).
    pub fn link(&self) -> Digest {
        self.link
    }
}

impl Receipt {
    /// [`Receipt::verify_any`], sparing the signature check of a batch
    /// statement whose bytes equal `last` (verified before under the same
    /// key), and keeping each statement verified afresh in `last`. The result
    /// carries the receipt's link, for a [`ReceiptVerifier`](super::ReceiptVerifier)
    /// to accept without a second signature check.
    pub fn verify_cached(
        bytes: &[u8],
        public_key: &[u8; 32],
        last: &mut StatementSlot,
    ) -> Result<VerifiedReceipt, VerifyError> {
        if bytes.len() == super::RECEIPT_LEN {
            let receipt = Receipt::verify(bytes, public_key)?;
            return Ok(VerifiedReceipt {
                receipt,
                public_key: *public_key,
                link: Receipt::hash(bytes),
            });
        }
        verify_batched_cached(bytes, public_key, last)
    }
}

/// A batched receipt's checks, sparing the statement's signature check
/// when `last` holds the same statement verified under the same key.
fn verify_batched_cached(
    bytes: &[u8],
    public_key: &[u8; 32],
    last: &mut StatementSlot,
) -> Result<VerifiedReceipt, VerifyError> {
    let parts = BatchedReceipt::parse(bytes)?;
    let batch = match last {
        Some((signed, batch))
            if signed[..] == *parts.batch && batch.key_id == super::key_id(public_key) =>
        {
            *batch
        }
        _ => {
            let batch = ReceiptBatch::verify(parts.batch, public_key)?;
            let mut signed = [0u8; BATCH_LEN];
            signed.copy_from_slice(parts.batch);
            *last = Some((signed, batch));
            batch
        }
    };
    let receipt = parts.verify_in(&batch)?;
    Ok(VerifiedReceipt {
        receipt,
        public_key: *public_key,
        link: parts.link(),
    })
}

impl super::ReceiptVerifier {
    /// The chain rules (and the nonce, when given) for a receipt whose
    /// signature verified already; on success the chain advances.
    /// `UnknownKey` when it verified under another key than this verifier's.
    pub fn accept(
        &mut self,
        verified: &VerifiedReceipt,
        expected_nonce: Option<&Nonce>,
    ) -> Result<Receipt, VerifyError> {
        if verified.public_key != *self.public_key() {
            return Err(VerifyError::UnknownKey);
        }
        self.advance_with(&verified.receipt, expected_nonce, verified.link)?;
        Ok(verified.receipt)
    }
}

impl super::ReceiptVerifier {
    /// [`verify_next`](super::ReceiptVerifier::verify_next) for a receipt in
    /// either form ([`Receipt::verify_any`]), with `last_batch` as in
    /// [`verify_next_batched`](super::ReceiptVerifier::verify_next_batched).
    pub fn verify_next_any(
        &mut self,
        bytes: &[u8],
        expected_nonce: Option<&Nonce>,
        last_batch: &mut StatementSlot,
    ) -> Result<Receipt, VerifyError> {
        if bytes.len() == super::RECEIPT_LEN {
            self.verify_next(bytes, expected_nonce)
        } else {
            self.verify_next_batched(bytes, expected_nonce, last_batch)
        }
    }

    /// [`verify_next`](super::ReceiptVerifier::verify_next) for a batched
    /// receipt. `last_batch` spares the statement's signature check when the
    /// same signed statement verified before (a batch's receipts arrive
    /// together): pass the same slot for every call, and keep it per key.
    pub fn verify_next_batched(
        &mut self,
        bytes: &[u8],
        expected_nonce: Option<&Nonce>,
        last_batch: &mut StatementSlot,
    ) -> Result<Receipt, VerifyError> {
        let verified = verify_batched_cached(bytes, self.public_key(), last_batch)?;
        self.accept(&verified, expected_nonce)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::super::{ChainState, Ed25519Signer, ReceiptVerifier};
    use super::*;

    type Slot = Option<([u8; BATCH_LEN], ReceiptBatch)>;

    /// `n` consecutive payloads from `chain`, each linked as batched; the
    /// chain after them.
    fn payloads(
        s: &Ed25519Signer,
        mut chain: ChainState,
        n: usize,
    ) -> (Vec<[u8; RECEIPT_PAYLOAD_LEN]>, ChainState) {
        let mut out = Vec::new();
        for i in 0..n {
            let p = receipt(s, chain, 100 + i as u64).encode_payload();
            chain.advance(batched_link(&p));
            out.push(p);
        }
        (out, chain)
    }

    /// The batched receipts of `payloads`, signed as one batch.
    fn batched(s: &mut Ed25519Signer, payloads: &[[u8; RECEIPT_PAYLOAD_LEN]]) -> Vec<Vec<u8>> {
        let leaves: Vec<Digest> = payloads.iter().map(batch_leaf).collect();
        let first = Receipt::decode_payload(&payloads[0]).unwrap().sequence;
        let mut signed = [0u8; BATCH_LEN];
        let mut paths = vec![BatchPath::new(); leaves.len()];
        let (batch, n) = sign_batch(s, first, &leaves, &mut paths, &mut signed).unwrap();
        assert_eq!(n, BATCH_LEN);
        assert_eq!(batch.count as usize, payloads.len());
        payloads
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let mut out = [0u8; BATCHED_RECEIPT_MAX_LEN];
                let len = write_batched(&signed, i as u32, &paths[i], p, &mut out).unwrap();
                out[..len].to_vec()
            })
            .collect()
    }

    /// The lengths `docs/PROTOCOL.md` gives.
    #[test]
    fn lengths_are_the_documented_ones() {
        assert_eq!(BATCH_PAYLOAD_LEN, 61);
        assert_eq!(BATCH_LEN, 154);
        assert_eq!(BATCHED_RECEIPT_MIN_LEN, 509);
        assert_eq!(BATCHED_RECEIPT_MAX_LEN, 765);
        const { assert!(BATCHED_RECEIPT_MAX_LEN <= crate::limits::MAX_SIGNED) };
    }

    #[test]
    fn every_receipt_of_a_batch_verifies_alone_and_in_chain_order() {
        for n in [1, 2, 3, 5, 8, 255, 256] {
            let mut s = signer(1);
            let (ps, end) = payloads(&s, ChainState::default(), n);
            let rs = batched(&mut s, &ps);
            let mut v = ReceiptVerifier::new(s.public_key(), ChainState::default());
            let mut slot: Slot = None;
            for (i, r) in rs.iter().enumerate() {
                let expect = Receipt::decode_payload(&ps[i]).unwrap();
                assert_eq!(Receipt::verify_batched(r, &s.public_key()), Ok(expect));
                let nonce = [(100 + i) as u8; 32];
                assert_eq!(
                    v.verify_next_batched(r, Some(&nonce), &mut slot),
                    Ok(expect)
                );
                assert!(r.len() <= BATCHED_RECEIPT_MAX_LEN);
            }
            assert_eq!(v.chain(), end, "batch of {n}");
        }
    }

    /// The one-pass paths are RFC 9162's: equal to `merkle::prove`'s, with
    /// the root `merkle::RootBuilder` gives, for every batch size.
    #[test]
    fn one_pass_paths_are_the_audit_paths() {
        for n in 1..=MAX_BATCH as usize {
            let leaves: Vec<Digest> = (0..n).map(|i| [i as u8; 32]).collect();
            let mut paths = vec![BatchPath::new(); n];
            let root = batch_paths(&leaves, &mut paths).unwrap();
            let mut b = merkle::RootBuilder::new();
            for l in &leaves {
                b.push_leaf(*l);
            }
            assert_eq!(root, b.root(), "root of {n}");
            for (i, p) in paths.iter().enumerate() {
                let proof = merkle::prove(&leaves, i as u64).unwrap();
                assert_eq!(p.as_slice(), proof.path.as_slice(), "path {i} of {n}");
            }
        }
    }

    #[test]
    fn either_form_verifies_and_links_through_the_same_calls() {
        let mut s = signer(1);
        let pk = s.public_key();
        let alone_receipt = receipt(&s, ChainState::default(), 1);
        let alone = sign_receipt(&alone_receipt, &mut s);
        let mut chain = ChainState::default();
        chain.advance(Receipt::link(&alone));
        assert_eq!(Receipt::link(&alone), Receipt::hash(&alone));
        let (ps, end) = payloads(&s, chain, 3);
        let rs = batched(&mut s, &ps);
        let mut v = ReceiptVerifier::new(pk, ChainState::default());
        let mut slot: Slot = None;
        assert_eq!(Receipt::verify_any(&alone, &pk), Ok(alone_receipt));
        v.verify_next_any(&alone, None, &mut slot).unwrap();
        for (r, p) in rs.iter().zip(&ps) {
            assert_eq!(Receipt::link(r), batched_link(p));
            assert_eq!(Receipt::verify_any(r, &pk), Receipt::decode_payload(p));
            v.verify_next_any(r, None, &mut slot).unwrap();
        }
        assert_eq!(v.chain(), end);
        assert_eq!(
            Receipt::verify_any(&rs[0][..100], &pk),
            Err(VerifyError::Malformed)
        );
    }

    #[test]
    fn receipts_alone_and_batched_make_one_chain() {
        let mut s = signer(1);
        let mut v = ReceiptVerifier::new(s.public_key(), ChainState::default());
        let mut slot: Slot = None;
        // One alone, three batched, one alone naming the last batched payload.
        let first = receipt(&s, ChainState::default(), 1);
        let first_signed = sign_receipt(&first, &mut s);
        v.verify_next(&first_signed, None).unwrap();
        let mut chain = ChainState::default();
        chain.advance(Receipt::hash(&first_signed));
        let (ps, chain) = payloads(&s, chain, 3);
        for r in batched(&mut s, &ps) {
            v.verify_next_batched(&r, None, &mut slot).unwrap();
        }
        let last = receipt(&s, chain, 9);
        assert_eq!(last.prev_hash, batched_link(&ps[2]));
        v.verify_next(&sign_receipt(&last, &mut s), None).unwrap();
        assert_eq!(v.chain().next_sequence, 6);
    }

    #[test]
    fn tampered_batched_receipts_are_refused() {
        let mut s = signer(1);
        let (ps, _) = payloads(&s, ChainState::default(), 5);
        let rs = batched(&mut s, &ps);
        let pk = s.public_key();
        let r = &rs[2];
        let at_index = BATCH_LEN;
        let at_path = BATCH_LEN + 5;
        let at_payload = r.len() - RECEIPT_PAYLOAD_LEN;
        for (at, expect) in [
            (BATCH_LEN - 1, VerifyError::BadSignature), // statement signature
            (BATCH_LEN - 70, VerifyError::BadSignature), // statement root
            (at_path, VerifyError::BadSignature),       // a path hash
            (at_payload + 40, VerifyError::BadSignature), // payload (nonce)
            (at_index, VerifyError::Malformed),         // index 2 -> 3: sequence
        ] {
            let mut bad = r.clone();
            bad[at] ^= 1;
            assert_eq!(Receipt::verify_batched(&bad, &pk), Err(expect), "byte {at}");
        }
        // Another receipt's place with this one's path and payload.
        let mut moved = r.clone();
        moved[at_index..at_index + 4].copy_from_slice(&4u32.to_le_bytes());
        assert!(Receipt::verify_batched(&moved, &pk).is_err());
        // An index past the batch.
        let mut past = r.clone();
        past[at_index..at_index + 4].copy_from_slice(&5u32.to_le_bytes());
        assert_eq!(
            Receipt::verify_batched(&past, &pk),
            Err(VerifyError::Malformed)
        );
        // Lengths that disagree with the path length byte.
        assert_eq!(
            Receipt::verify_batched(&r[..r.len() - 1], &pk),
            Err(VerifyError::Malformed)
        );
        let mut long_path = r.clone();
        long_path[at_index + 4] = 9;
        assert_eq!(
            Receipt::verify_batched(&long_path, &pk),
            Err(VerifyError::Malformed)
        );
        // Another key.
        assert_eq!(
            Receipt::verify_batched(r, &signer(2).public_key()),
            Err(VerifyError::UnknownKey)
        );
        // A receipt alone is not a batched one, nor the reverse.
        let alone = sign_receipt(&receipt(&s, ChainState::default(), 1), &mut s);
        assert_eq!(
            Receipt::verify_batched(&alone, &pk),
            Err(VerifyError::Malformed)
        );
        assert_eq!(Receipt::verify(r, &pk), Err(VerifyError::Malformed));
    }

    #[test]
    fn a_statement_is_well_formed_only_for_1_to_256_receipts_of_its_key() {
        let mut s = signer(1);
        let mut out = [0u8; BATCH_LEN];
        assert!(sign_batch(&mut s, 1, &[], &mut [], &mut out).is_err());
        let mut paths = vec![BatchPath::new(); 257];
        assert!(sign_batch(&mut s, 1, &[[0; 32]; 257], &mut paths, &mut out).is_err());
        assert!(sign_batch(&mut s, 1, &[[0; 32]; 2], &mut paths[..1], &mut out).is_err());
        for (count, key_id, expect) in [
            (0, s.key_id(), Err(VerifyError::Malformed)),
            (257, s.key_id(), Err(VerifyError::Malformed)),
            (3, signer(2).key_id(), Err(VerifyError::UnknownKey)),
        ] {
            let batch = ReceiptBatch {
                key_id,
                first_sequence: 1,
                count,
                root: [7; 32],
            };
            batch.sign(&mut s, &mut out).unwrap();
            assert_eq!(ReceiptBatch::verify(&out, &s.public_key()), expect);
        }
    }

    #[test]
    fn a_batch_whose_statement_misplaces_its_receipts_is_refused() {
        // Signed by the key, but the statement says the batch starts at 2
        // while its first payload has sequence 1.
        let mut s = signer(1);
        let (ps, _) = payloads(&s, ChainState::default(), 2);
        let leaves: Vec<Digest> = ps.iter().map(batch_leaf).collect();
        let mut signed = [0u8; BATCH_LEN];
        let mut paths = vec![BatchPath::new(); 2];
        sign_batch(&mut s, 2, &leaves, &mut paths, &mut signed).unwrap();
        let mut out = [0u8; BATCHED_RECEIPT_MAX_LEN];
        let n = write_batched(&signed, 0, &paths[0], &ps[0], &mut out).unwrap();
        assert_eq!(
            Receipt::verify_batched(&out[..n], &s.public_key()),
            Err(VerifyError::Malformed)
        );
    }

    #[test]
    fn the_chain_rules_catch_dropped_replayed_and_forked_batched_receipts() {
        let mut s = signer(1);
        let (ps, _) = payloads(&s, ChainState::default(), 4);
        let rs = batched(&mut s, &ps);
        let pk = s.public_key();
        // Dropped: the second skipped.
        let mut v = ReceiptVerifier::new(pk, ChainState::default());
        let mut slot: Slot = None;
        v.verify_next_batched(&rs[0], None, &mut slot).unwrap();
        assert_eq!(
            v.verify_next_batched(&rs[2], None, &mut slot),
            Err(VerifyError::OutOfOrder)
        );
        // Replayed.
        v.verify_next_batched(&rs[1], None, &mut slot).unwrap();
        assert_eq!(
            v.verify_next_batched(&rs[1], None, &mut slot),
            Err(VerifyError::Replayed)
        );
        // Forked: another batch from sequence 3 whose first payload names
        // another history.
        let mut fork_chain = v.chain();
        fork_chain.prev_hash = [0xF0; 32];
        let (fork, _) = payloads(&s, fork_chain, 2);
        let forked = batched(&mut s, &fork);
        assert_eq!(
            v.verify_next_batched(&forked[0], None, &mut slot),
            Err(VerifyError::BrokenChain)
        );
        // The genuine continuation still verifies (a refusal changed nothing).
        v.verify_next_batched(&rs[2], None, &mut slot).unwrap();
        // A wrong requester nonce.
        assert_eq!(
            v.verify_next_batched(&rs[3], Some(&[0x77; 32]), &mut slot),
            Err(VerifyError::WrongNonce)
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]

        /// Any bytes give a receipt or a typed error, never a panic.
        #[test]
        fn any_bytes_verify_or_fail_without_panicking(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..900),
        ) {
            let _ = Receipt::verify_batched(&bytes, &[7; 32]);
            let mut v = ReceiptVerifier::new([7; 32], ChainState::default());
            let _ = v.verify_next_batched(&bytes, None, &mut None);
            let _ = BatchedReceipt::parse(&bytes);
        }

        /// Every byte of a batched receipt is bound: changing any one of
        /// them, or cutting or extending the bytes, fails verification.
        #[test]
        fn every_byte_of_a_batched_receipt_is_bound(
            which in 0usize..5,
            at in proptest::prelude::any::<proptest::sample::Index>(),
            xor in 1u8..=255,
            cut in 1usize..40,
        ) {
            let mut s = signer(1);
            let (ps, _) = payloads(&s, ChainState::default(), 5);
            let rs = batched(&mut s, &ps);
            let good = &rs[which];
            let pk = s.public_key();
            proptest::prop_assert!(Receipt::verify_batched(good, &pk).is_ok());
            let mut bad = good.clone();
            bad[at.index(good.len())] ^= xor;
            proptest::prop_assert!(Receipt::verify_batched(&bad, &pk).is_err());
            proptest::prop_assert!(Receipt::verify_batched(&good[..good.len() - cut], &pk).is_err());
            let mut longer = good.clone();
            longer.extend(core::iter::repeat_n(0u8, cut));
            proptest::prop_assert!(Receipt::verify_batched(&longer, &pk).is_err());
        }
    }

    #[test]
    fn the_statement_slot_never_spares_the_check_of_other_bytes() {
        let mut s = signer(1);
        let (ps, _) = payloads(&s, ChainState::default(), 3);
        let rs = batched(&mut s, &ps);
        let mut v = ReceiptVerifier::new(s.public_key(), ChainState::default());
        let mut slot: Slot = None;
        v.verify_next_batched(&rs[0], None, &mut slot).unwrap();
        // The next receipt with its statement's signature broken: verified
        // afresh, refused, and the chain did not move.
        let mut bad = rs[1].clone();
        bad[BATCH_LEN - 1] ^= 1;
        assert_eq!(
            v.verify_next_batched(&bad, None, &mut slot),
            Err(VerifyError::BadSignature)
        );
        assert_eq!(v.chain().next_sequence, 2);
        v.verify_next_batched(&rs[1], None, &mut slot).unwrap();
    }

    /// `verify_cached` then `accept` checks what `verify_next_any` checks,
    /// over a chain of both forms: each receipt's signature once, the
    /// statement's once per batch.
    #[test]
    fn verified_receipts_are_accepted_without_a_second_check() {
        let mut s = signer(1);
        let pk = s.public_key();
        let first_signed = sign_receipt(&receipt(&s, ChainState::default(), 1), &mut s);
        let mut chain = ChainState::default();
        chain.advance(Receipt::hash(&first_signed));
        let (ps, _) = payloads(&s, chain, 3);
        let mut all = vec![first_signed.to_vec()];
        all.extend(batched(&mut s, &ps));
        let mut v = ReceiptVerifier::new(pk, ChainState::default());
        let mut w = ReceiptVerifier::new(pk, ChainState::default());
        let (mut slot, mut slot2): (Slot, Slot) = (None, None);
        for bytes in &all {
            let verified = Receipt::verify_cached(bytes, &pk, &mut slot).unwrap();
            assert_eq!(verified.link(), Receipt::link(bytes));
            assert_eq!(
                v.accept(&verified, None),
                w.verify_next_any(bytes, None, &mut slot2)
            );
            // Accepted once: the same receipt again is a replay.
            assert_eq!(v.accept(&verified, None), Err(VerifyError::Replayed));
        }
        assert_eq!(v.chain(), w.chain());
    }

    /// A verified receipt is accepted only by its key's verifier, and a
    /// statement kept for one key spares no check under another.
    #[test]
    fn verification_under_one_key_does_not_count_for_another() {
        let mut s = signer(1);
        let other = signer(2).public_key();
        let (ps, _) = payloads(&s, ChainState::default(), 2);
        let rs = batched(&mut s, &ps);
        let mut slot: Slot = None;
        let verified = Receipt::verify_cached(&rs[0], &s.public_key(), &mut slot).unwrap();
        let mut theirs = ReceiptVerifier::new(other, ChainState::default());
        assert_eq!(theirs.accept(&verified, None), Err(VerifyError::UnknownKey));
        assert_eq!(theirs.chain(), ChainState::default());
        // The slot holds the statement verified under the first key.
        assert_eq!(
            Receipt::verify_cached(&rs[1], &other, &mut slot),
            Err(VerifyError::UnknownKey)
        );
    }
}
