//! Job receipts: one signed record per job binding what was run, on what, what
//! came out, what it cost, and its place in the device's receipt chain.

use super::cose::{self, sign1_len};
use super::{
    sha256, sha256_parts, Reader, SignError, Signer, VerifyError, Writer, KERNEL_DOMAIN,
    RECEIPT_DOMAIN, RESULT_DOMAIN, SEALED_KERNEL_DOMAIN, SEAL_DOMAIN,
};
use crate::wire::{BufferSpec, Digest, FailReason, JobId, KeyId, Nonce, Usage};

/// Bytes of the receipt payload.
pub const RECEIPT_PAYLOAD_LEN: usize =
    1 + 1 + 8 + 32 + 32 + 32 + 32 + 8 + 32 + 32 + 8 + 4 + 8 + 8 + 8 + 8 + 8 + 32 + 16 + 8 + 32;
/// Bytes of a signed receipt (COSE_Sign1).
pub const RECEIPT_LEN: usize = sign1_len(RECEIPT_PAYLOAD_LEN);
const RECEIPT_VERSION: u8 = 1;

/// How the job ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReceiptStatus {
    /// The kernel ran and its outputs were returned.
    Completed,
    /// The job failed; no outputs.
    Failed(FailReason),
}

impl ReceiptStatus {
    /// Wire code: 0 for completed, else the [`FailReason`] code.
    pub fn code(self) -> u8 {
        match self {
            ReceiptStatus::Completed => 0,
            ReceiptStatus::Failed(r) => r as u8,
        }
    }

    /// The status for a wire code.
    pub fn from_code(code: u8) -> Option<ReceiptStatus> {
        match code {
            0 => Some(ReceiptStatus::Completed),
            _ => FailReason::from_u8(code).map(ReceiptStatus::Failed),
        }
    }
}

/// A job receipt, the signed payload's fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Receipt {
    /// How the job ended.
    pub status: ReceiptStatus,
    /// The job.
    pub job: JobId,
    /// The requester's nonce from the assignment.
    pub requester_nonce: Nonce,
    /// [`kernel_hash`] of what was dispatched.
    pub kernel_hash: Digest,
    /// Merkle root over the input buffers' chunks.
    pub input_root: Digest,
    /// Merkle root over the output buffers' chunks.
    pub output_root: Digest,
    /// Total output bytes.
    pub output_len: u64,
    /// [`result_hash`]: the same on every honest replica.
    pub result_hash: Digest,
    /// [`result_seal`]: unique to this device's key.
    pub result_seal: Digest,
    /// Metered usage.
    pub usage: Usage,
    /// Price charged, in the network's smallest unit.
    pub price: u64,
    /// When the job started, microseconds in the host's time base.
    pub started_at: u64,
    /// When the job ended, microseconds in the host's time base.
    pub ended_at: u64,
    /// SHA-256 of the signed evidence the coordinator accepted (with its
    /// `Ready`) in the session that offered the job.
    pub evidence_hash: Digest,
    /// The signing key's id.
    pub key_id: KeyId,
    /// Position in this key's receipt chain, starting at 1.
    pub sequence: u64,
    /// SHA-256 of the previous signed receipt of this key (zeros for the first).
    pub prev_hash: Digest,
}

/// Hash of everything that defines a dispatch: SHA-256 of the domain tag, the
/// SPIR-V Merkle root, the entry point (length-prefixed), the specialization
/// constants, the push constants (length-prefixed), the grid and the buffer
/// layout (count, then each buffer's `binding`, `len`, `init_len` and
/// `readback`, in buffer order).
///
/// Binding the layout makes a receipt say what buffers, at which bindings,
/// the kernel ran on, and fixes the number of leaves of its output tree
/// ([`crate::merkle::output_leaf_count`]). [`crate::wire::JobAssign::kernel_hash`]
/// computes it from an assignment.
pub fn kernel_hash(
    spirv_root: &Digest,
    entry_point: &str,
    specialization: &[(u32, u32)],
    push_constants: &[u8],
    grid: [u32; 3],
    buffers: &[BufferSpec],
) -> Digest {
    let mut ctx = crate::crypto::Sha256::new();
    ctx.update(KERNEL_DOMAIN);
    ctx.update(spirv_root);
    ctx.update(&(entry_point.len() as u32).to_le_bytes());
    ctx.update(entry_point.as_bytes());
    ctx.update(&(specialization.len() as u32).to_le_bytes());
    for (id, value) in specialization {
        ctx.update(&id.to_le_bytes());
        ctx.update(&value.to_le_bytes());
    }
    ctx.update(&(push_constants.len() as u32).to_le_bytes());
    ctx.update(push_constants);
    for g in grid {
        ctx.update(&g.to_le_bytes());
    }
    ctx.update(&(buffers.len() as u32).to_le_bytes());
    for b in buffers {
        ctx.update(&b.binding.to_le_bytes());
        ctx.update(&b.len.to_le_bytes());
        ctx.update(&b.init_len.to_le_bytes());
        ctx.update(&[u8::from(b.readback)]);
    }
    ctx.finish()
}

/// The kernel hash of a sealed job: SHA-256 of the domain tag
/// `tessera/kernel/sealed/v1`, the kernel hash of the assignment as sent
/// ([`kernel_hash`], over the kernel stream's root as it crossed the
/// coordinator), the HPKE encapsulated key, the requester's key, whether
/// the kernel is sealed, and the sealed result key with its tag. A receipt thus
/// binds how its job was sealed.
pub fn sealed_kernel_hash(wire_kernel_hash: &Digest, sealing: &crate::wire::Sealing) -> Digest {
    sha256_parts(&[
        SEALED_KERNEL_DOMAIN,
        wire_kernel_hash,
        &sealing.enc,
        &sealing.requester_key,
        &[u8::from(sealing.kernel_sealed)],
        &sealing.result_key,
        &sealing.result_key_tag,
    ])
}

/// The result hash, identical on every honest replica of a job:
/// SHA-256(domain ‖ kernel hash ‖ input root ‖ output root ‖ output length).
pub fn result_hash(
    kernel: &Digest,
    input_root: &Digest,
    output_root: &Digest,
    output_len: u64,
) -> Digest {
    sha256_parts(&[
        RESULT_DOMAIN,
        kernel,
        input_root,
        output_root,
        &output_len.to_le_bytes(),
    ])
}

/// The result seal, unique to one device: SHA-256(domain ‖ public key ‖ job ‖
/// result hash). A provider cannot present another's result as its own.
pub fn result_seal(public_key: &[u8; 32], job: JobId, result: &Digest) -> Digest {
    sha256_parts(&[SEAL_DOMAIN, public_key, &job.to_le_bytes(), result])
}

impl Receipt {
    /// The fixed-width payload (`docs/PROTOCOL.md`, "Receipts").
    pub fn encode_payload(&self) -> [u8; RECEIPT_PAYLOAD_LEN] {
        let mut buf = [0u8; RECEIPT_PAYLOAD_LEN];
        let mut w = Writer::new(&mut buf);
        w.u8(RECEIPT_VERSION);
        w.u8(self.status.code());
        w.u64(self.job);
        w.bytes(&self.requester_nonce);
        w.bytes(&self.kernel_hash);
        w.bytes(&self.input_root);
        w.bytes(&self.output_root);
        w.u64(self.output_len);
        w.bytes(&self.result_hash);
        w.bytes(&self.result_seal);
        w.u64(self.usage.gpu_time_us);
        w.u32(self.usage.dispatches);
        w.u64(self.usage.bytes_in);
        w.u64(self.usage.bytes_out);
        w.u64(self.price);
        w.u64(self.started_at);
        w.u64(self.ended_at);
        w.bytes(&self.evidence_hash);
        w.bytes(&self.key_id);
        w.u64(self.sequence);
        w.bytes(&self.prev_hash);
        debug_assert_eq!(w.pos, RECEIPT_PAYLOAD_LEN);
        buf
    }

    /// Parses a payload; `Malformed` on a wrong length, version or status.
    pub fn decode_payload(payload: &[u8]) -> Result<Receipt, VerifyError> {
        if payload.len() != RECEIPT_PAYLOAD_LEN {
            return Err(VerifyError::Malformed);
        }
        let mut r = Reader::new(payload);
        if r.u8() != RECEIPT_VERSION {
            return Err(VerifyError::Malformed);
        }
        let status = ReceiptStatus::from_code(r.u8()).ok_or(VerifyError::Malformed)?;
        Ok(Receipt {
            status,
            job: r.u64(),
            requester_nonce: r.take(),
            kernel_hash: r.take(),
            input_root: r.take(),
            output_root: r.take(),
            output_len: r.u64(),
            result_hash: r.take(),
            result_seal: r.take(),
            usage: Usage {
                gpu_time_us: r.u64(),
                dispatches: r.u32(),
                bytes_in: r.u64(),
                bytes_out: r.u64(),
            },
            price: r.u64(),
            started_at: r.u64(),
            ended_at: r.u64(),
            evidence_hash: r.take(),
            key_id: r.take(),
            sequence: r.u64(),
            prev_hash: r.take(),
        })
    }

    /// Signs the receipt into `out` (at least [`RECEIPT_LEN`] bytes); returns
    /// the length written. `self.key_id` must be the signer's.
    pub fn sign<S: Signer + ?Sized>(
        &self,
        signer: &mut S,
        out: &mut [u8],
    ) -> Result<usize, SignError> {
        cose::sign(signer, RECEIPT_DOMAIN, &self.encode_payload(), out)
    }

    /// Verifies a signed receipt's form and signature under `public_key`, and
    /// that its payload names the same key id as its header. Chain and nonce
    /// checks are [`ReceiptVerifier`]'s.
    pub fn verify(bytes: &[u8], public_key: &[u8; 32]) -> Result<Receipt, VerifyError> {
        let sign1 = cose::parse(bytes, RECEIPT_PAYLOAD_LEN)?;
        cose::verify(&sign1, RECEIPT_DOMAIN, public_key)?;
        let receipt = Receipt::decode_payload(sign1.payload)?;
        if receipt.key_id != sign1.key_id {
            return Err(VerifyError::UnknownKey);
        }
        Ok(receipt)
    }

    /// The hash the next receipt in the chain names: SHA-256 of the signed bytes.
    pub fn hash(signed: &[u8]) -> Digest {
        sha256(signed)
    }
}

/// A key's receipt chain: the next sequence number and the last receipt's hash.
/// The agent keeps it (and persists it across restarts); a verifier keeps one
/// per provider key to detect dropped, replayed or reordered receipts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChainState {
    /// Sequence number of the next receipt (the first is 1).
    pub next_sequence: u64,
    /// Hash of the last signed receipt (zeros before the first).
    pub prev_hash: Digest,
}

impl Default for ChainState {
    fn default() -> Self {
        ChainState {
            next_sequence: 1,
            prev_hash: [0; 32],
        }
    }
}

impl ChainState {
    /// Advances past a receipt whose signed bytes hash to `hash`.
    pub fn advance(&mut self, hash: Digest) {
        self.next_sequence = self.next_sequence.saturating_add(1);
        self.prev_hash = hash;
    }
}

/// Verifies one provider's receipts in order: signature, key, chain and
/// (optionally) the requester nonce of each.
#[derive(Clone, Debug)]
pub struct ReceiptVerifier {
    public_key: [u8; 32],
    chain: ChainState,
}

impl ReceiptVerifier {
    /// A verifier for `public_key` (from verified evidence) expecting the chain
    /// to continue from `chain` (`ChainState::default()` for a new key).
    pub fn new(public_key: [u8; 32], chain: ChainState) -> Self {
        ReceiptVerifier { public_key, chain }
    }

    /// The chain position after the receipts verified so far.
    pub fn chain(&self) -> ChainState {
        self.chain
    }

    /// Verifies the next receipt; on success the chain advances. When
    /// `expected_nonce` is given, the receipt must carry it.
    pub fn verify_next(
        &mut self,
        bytes: &[u8],
        expected_nonce: Option<&Nonce>,
    ) -> Result<Receipt, VerifyError> {
        let receipt = Receipt::verify(bytes, &self.public_key)?;
        self.advance_with(&receipt, expected_nonce, Receipt::hash(bytes))?;
        Ok(receipt)
    }

    /// The provider key this verifier checks signatures under.
    pub fn public_key(&self) -> &[u8; 32] {
        &self.public_key
    }

    /// The chain rules and the nonce for a receipt whose signature verified;
    /// on success the chain advances to `link`.
    pub(crate) fn advance_with(
        &mut self,
        receipt: &Receipt,
        expected_nonce: Option<&Nonce>,
        link: Digest,
    ) -> Result<(), VerifyError> {
        if receipt.sequence < self.chain.next_sequence {
            return Err(VerifyError::Replayed);
        }
        if receipt.sequence > self.chain.next_sequence {
            return Err(VerifyError::OutOfOrder);
        }
        if receipt.prev_hash != self.chain.prev_hash {
            return Err(VerifyError::BrokenChain);
        }
        if let Some(nonce) = expected_nonce {
            if &receipt.requester_nonce != nonce {
                return Err(VerifyError::WrongNonce);
            }
        }
        self.chain.advance(link);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::super::{cose, key_id, Ed25519Signer};
    use super::*;
    use crate::wire::FailReason;

    #[test]
    fn round_trip() {
        let mut s = signer(1);
        let r = receipt(&s, ChainState::default(), 7);
        assert_eq!(Receipt::decode_payload(&r.encode_payload()), Ok(r));
        let signed = sign_receipt(&r, &mut s);
        assert_eq!(Receipt::verify(&signed, &s.public_key()), Ok(r));
        // Deterministic: signing twice gives the same bytes.
        assert_eq!(signed, sign_receipt(&r, &mut s));
    }

    #[test]
    fn every_status_round_trips() {
        use FailReason as F;
        let mut s = signer(1);
        for status in [
            ReceiptStatus::Completed,
            ReceiptStatus::Failed(F::KernelRejected),
            ReceiptStatus::Failed(F::Timeout),
            ReceiptStatus::Failed(F::DeadlineExceeded),
            ReceiptStatus::Failed(F::DeviceLost),
            ReceiptStatus::Failed(F::OutOfMemory),
            ReceiptStatus::Failed(F::InputIntegrity),
            ReceiptStatus::Failed(F::Host),
        ] {
            assert_eq!(ReceiptStatus::from_code(status.code()), Some(status));
            let mut r = receipt(&s, ChainState::default(), 1);
            r.status = status;
            let signed = sign_receipt(&r, &mut s);
            assert_eq!(Receipt::verify(&signed, &s.public_key()), Ok(r));
        }
        assert_eq!(ReceiptStatus::from_code(8), None);
        assert_eq!(ReceiptStatus::from_code(255), None);
    }

    #[test]
    fn every_flipped_byte_is_caught_with_its_reason() {
        let mut s = signer(1);
        let pk = s.public_key();
        let signed = sign_receipt(&receipt(&s, ChainState::default(), 1), &mut s);
        let payload_at = 28;
        let sig_at = payload_at + RECEIPT_PAYLOAD_LEN;
        for i in 0..RECEIPT_LEN {
            let mut t = signed;
            t[i] ^= 0x01;
            let expected = if i < 9 || (25..payload_at).contains(&i) {
                VerifyError::Malformed
            } else if i < 25 {
                VerifyError::UnknownKey
            } else if i < sig_at {
                VerifyError::BadSignature
            } else if i < sig_at + 2 {
                VerifyError::Malformed
            } else {
                VerifyError::BadSignature
            };
            assert_eq!(Receipt::verify(&t, &pk), Err(expected), "byte {i}");
        }
    }

    #[test]
    fn wrong_length_is_malformed() {
        let mut s = signer(1);
        let pk = s.public_key();
        let signed = sign_receipt(&receipt(&s, ChainState::default(), 1), &mut s);
        for len in [0, 1, 28, RECEIPT_LEN - 64, RECEIPT_LEN - 1] {
            assert_eq!(
                Receipt::verify(&signed[..len], &pk),
                Err(VerifyError::Malformed)
            );
        }
        let mut longer = [0u8; RECEIPT_LEN + 1];
        longer[..RECEIPT_LEN].copy_from_slice(&signed);
        assert_eq!(Receipt::verify(&longer, &pk), Err(VerifyError::Malformed));
        assert_eq!(
            Receipt::decode_payload(&[1u8; RECEIPT_PAYLOAD_LEN - 1]),
            Err(VerifyError::Malformed)
        );
    }

    #[test]
    fn another_key_is_unknown() {
        let mut s = signer(1);
        let signed = sign_receipt(&receipt(&s, ChainState::default(), 1), &mut s);
        assert_eq!(
            Receipt::verify(&signed, &signer(2).public_key()),
            Err(VerifyError::UnknownKey)
        );
        // A payload naming another key than the header's is refused too.
        let mut r = receipt(&s, ChainState::default(), 1);
        r.key_id = key_id(&signer(2).public_key());
        let signed = sign_receipt(&r, &mut s);
        assert_eq!(
            Receipt::verify(&signed, &s.public_key()),
            Err(VerifyError::UnknownKey)
        );
    }

    #[test]
    fn a_signed_payload_with_an_unknown_version_or_status_is_malformed() {
        let mut s = signer(1);
        let good = receipt(&s, ChainState::default(), 1).encode_payload();
        for (at, value) in [(0usize, 2u8), (1, 8), (1, 0xFF)] {
            let mut payload = good;
            payload[at] = value;
            let mut out = [0u8; RECEIPT_LEN];
            cose::sign(&mut s, RECEIPT_DOMAIN, &payload, &mut out).unwrap();
            assert_eq!(
                Receipt::verify(&out, &s.public_key()),
                Err(VerifyError::Malformed)
            );
        }
    }

    /// Three receipts of one key and the chain they form.
    fn chain_of_three(s: &mut Ed25519Signer) -> [[u8; RECEIPT_LEN]; 3] {
        let mut chain = ChainState::default();
        let mut out = [[0u8; RECEIPT_LEN]; 3];
        for (i, o) in out.iter_mut().enumerate() {
            *o = sign_receipt(&receipt(s, chain, i as u64 + 1), s);
            chain.advance(Receipt::hash(o));
        }
        out
    }

    #[test]
    fn a_chain_verifies_in_order() {
        let mut s = signer(1);
        let rs = chain_of_three(&mut s);
        let mut v = ReceiptVerifier::new(s.public_key(), ChainState::default());
        for (i, r) in rs.iter().enumerate() {
            let got = v.verify_next(r, Some(&[i as u8 + 1; 32])).unwrap();
            assert_eq!(got.sequence, i as u64 + 1);
            assert_eq!(v.chain().next_sequence, i as u64 + 2);
            assert_eq!(v.chain().prev_hash, Receipt::hash(r));
        }
        // A verifier can pick the chain up where another left it.
        let mut later = ReceiptVerifier::new(
            s.public_key(),
            ChainState {
                next_sequence: 3,
                prev_hash: Receipt::hash(&rs[1]),
            },
        );
        assert!(later.verify_next(&rs[2], None).is_ok());
    }

    #[test]
    fn replay_gap_break_and_nonce_are_told_apart_and_do_not_advance() {
        let mut s = signer(1);
        let pk = s.public_key();
        let rs = chain_of_three(&mut s);
        let mut v = ReceiptVerifier::new(pk, ChainState::default());
        // A gap: receipt 2 before receipt 1.
        assert_eq!(v.verify_next(&rs[1], None), Err(VerifyError::OutOfOrder));
        assert_eq!(v.chain(), ChainState::default());
        // A wrong requester nonce.
        assert_eq!(
            v.verify_next(&rs[0], Some(&[0xFF; 32])),
            Err(VerifyError::WrongNonce)
        );
        assert_eq!(v.chain(), ChainState::default());
        v.verify_next(&rs[0], None).unwrap();
        // A replay of receipt 1.
        assert_eq!(v.verify_next(&rs[0], None), Err(VerifyError::Replayed));
        // Sequence 2 whose prev hash is not receipt 1's.
        let before = v.chain();
        let forked = sign_receipt(
            &receipt(
                &s,
                ChainState {
                    next_sequence: 2,
                    prev_hash: [0x99; 32],
                },
                2,
            ),
            &mut s,
        );
        assert_eq!(v.verify_next(&forked, None), Err(VerifyError::BrokenChain));
        assert_eq!(v.chain(), before);
        // A bad signature is reported before any chain check.
        let mut flipped = rs[1];
        flipped[100] ^= 0x80;
        assert_eq!(
            v.verify_next(&flipped, None),
            Err(VerifyError::BadSignature)
        );
        // The genuine next one still verifies.
        assert!(v.verify_next(&rs[1], None).is_ok());
    }

    #[test]
    fn result_hash_is_shared_and_seal_is_per_key() {
        let a = signer(1).public_key();
        let b = signer(2).public_key();
        let k = kernel_hash(&[1; 32], "main", &[], &[], [1, 1, 1], &[]);
        let r1 = result_hash(&k, &[2; 32], &[3; 32], 10);
        assert_eq!(r1, result_hash(&k, &[2; 32], &[3; 32], 10));
        assert_ne!(r1, result_hash(&k, &[2; 32], &[3; 32], 11));
        assert_ne!(result_seal(&a, 1, &r1), result_seal(&b, 1, &r1));
        assert_ne!(result_seal(&a, 1, &r1), result_seal(&a, 2, &r1));
    }

    #[test]
    fn kernel_hash_separates_its_fields() {
        let root = [1; 32];
        let at = |binding, len, init_len, readback| BufferSpec {
            binding,
            len,
            init_len,
            readback,
        };
        let buf = |len, init_len, readback| at(0, len, init_len, readback);
        let layout = [buf(4096, 4096, false), at(2, 100, 0, true)];
        let hash = |entry: &str, spec: &[(u32, u32)], push: &[u8], grid, bufs: &[BufferSpec]| {
            kernel_hash(&root, entry, spec, push, grid, bufs)
        };
        let base = hash("main", &[(1, 2)], &[3], [4, 5, 6], &layout);
        // Moving a byte between the entry point and the push constants, or
        // changing any field, changes the hash.
        assert_ne!(base, hash("mai", &[(1, 2)], b"n\x03", [4, 5, 6], &layout));
        assert_ne!(base, hash("main", &[(1, 3)], &[3], [4, 5, 6], &layout));
        assert_ne!(base, hash("main", &[], &[3], [4, 5, 6], &layout));
        assert_ne!(base, hash("main", &[(1, 2)], &[3], [4, 5, 7], &layout));
        assert_ne!(
            base,
            kernel_hash(&[2; 32], "main", &[(1, 2)], &[3], [4, 5, 6], &layout)
        );
        // The buffer layout is bound: each buffer's binding, size, initial
        // length and read-back flag, their order and their number.
        for other in [
            [buf(4097, 4096, false), at(2, 100, 0, true)],
            [buf(4096, 4095, false), at(2, 100, 0, true)],
            [buf(4096, 4096, true), at(2, 100, 0, true)],
            [buf(4096, 4096, false), at(2, 100, 0, false)],
            [buf(4096, 4096, false), at(1, 100, 0, true)],
            [at(1, 4096, 4096, false), at(2, 100, 0, true)],
            [at(2, 100, 0, true), buf(4096, 4096, false)],
        ] {
            assert_ne!(base, hash("main", &[(1, 2)], &[3], [4, 5, 6], &other));
        }
        assert_ne!(base, hash("main", &[(1, 2)], &[3], [4, 5, 6], &layout[..1]));
        assert_ne!(base, hash("main", &[(1, 2)], &[3], [4, 5, 6], &[]));
    }

    #[test]
    fn kernel_hash_matches_a_hand_computed_digest() {
        // The documented byte sequence, spelled out.
        let mut expected = std::vec::Vec::new();
        expected.extend_from_slice(b"tessera/kernel/v3");
        expected.extend_from_slice(&[7; 32]);
        expected.extend_from_slice(&[2, 0, 0, 0]);
        expected.extend_from_slice(b"go");
        expected.extend_from_slice(&[1, 0, 0, 0, 5, 0, 0, 0, 9, 0, 0, 0]);
        expected.extend_from_slice(&[1, 0, 0, 0, 0xAB]);
        expected.extend_from_slice(&[2, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0]);
        expected.extend_from_slice(&[1, 0, 0, 0]);
        expected.extend_from_slice(&[3, 0, 0, 0]);
        expected.extend_from_slice(&300u64.to_le_bytes());
        expected.extend_from_slice(&12u64.to_le_bytes());
        expected.push(1);
        let layout = [BufferSpec {
            binding: 3,
            len: 300,
            init_len: 12,
            readback: true,
        }];
        assert_eq!(
            kernel_hash(&[7; 32], "go", &[(5, 9)], &[0xAB], [2, 1, 1], &layout),
            sha256(&expected)
        );
    }
}
