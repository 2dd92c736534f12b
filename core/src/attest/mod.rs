//! Attestation: the device's signing key, signed device evidence and signed job
//! receipts (`docs/PROTOCOL.md`, "Attestation").
//!
//! Everything signed is a COSE_Sign1 (RFC 9052) with EdDSA (Ed25519) over a
//! fixed-width body, with a per-structure domain tag as external AAD, so a
//! signature made for one structure never verifies as another. Verification is
//! plain functions over bytes, usable by coordinators, requesters and auditors,
//! in `no_std` too.

mod batch;
mod cose;
mod evidence;
mod receipt;
mod signer;

pub use batch::{
    batch_leaf, batch_paths, batched_link, is_receipt_len, sign_batch, write_batched, BatchPath,
    BatchedReceipt, ReceiptBatch, StatementSlot, VerifiedReceipt, BATCHED_RECEIPT_MAX_LEN,
    BATCHED_RECEIPT_MIN_LEN, BATCH_DOMAIN, BATCH_LEN, BATCH_PAYLOAD_LEN, MAX_BATCH, MAX_BATCH_PATH,
    MAX_RECEIPT_LEN,
};
pub use cose::{Sign1, COSE_OVERHEAD};
pub use evidence::{
    hardware_report_nonce, DeviceCapabilities, DeviceType, Evidence, HardwareReport,
    HardwareReportError, HardwareReportKind, HardwareReportVerifier, EVIDENCE_LEN,
    EVIDENCE_PAYLOAD_LEN, HARDWARE_NONCE_DOMAIN,
};
pub use receipt::{
    kernel_hash, result_hash, result_seal, sealed_kernel_hash, ChainState, Receipt, ReceiptStatus,
    ReceiptVerifier, RECEIPT_LEN, RECEIPT_PAYLOAD_LEN,
};
pub use signer::{key_id, verify_signature, Ed25519Signer, KeyError, SignError, Signer};

use crate::wire::Digest;

/// Domain tag (COSE external AAD) of device evidence.
pub const EVIDENCE_DOMAIN: &[u8] = b"tessera/evidence/v1";
/// Domain tag (COSE external AAD) of job receipts.
pub const RECEIPT_DOMAIN: &[u8] = b"tessera/receipt/v1";
/// Domain tag of key identifiers.
pub const KEY_ID_DOMAIN: &[u8] = b"tessera/key-id/v1";
/// Domain tag of kernel hashes (v3: each buffer's binding is bound too).
pub const KERNEL_DOMAIN: &[u8] = b"tessera/kernel/v3";
/// Domain tag of sealed jobs' kernel hashes.
pub const SEALED_KERNEL_DOMAIN: &[u8] = b"tessera/kernel/sealed/v1";
/// Domain tag of result hashes.
pub const RESULT_DOMAIN: &[u8] = b"tessera/result/v1";
/// Domain tag of result seals.
pub const SEAL_DOMAIN: &[u8] = b"tessera/seal/v1";

/// Why a signed structure did not verify. Each variant is a different thing for
/// a verifier to act on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum VerifyError {
    /// Not a well-formed structure of the expected kind and length.
    Malformed,
    /// The signature does not verify under the key.
    BadSignature,
    /// Signed by a key the verifier does not know (key id mismatch).
    UnknownKey,
    /// Bound to another challenge or requester nonce than the one expected.
    WrongNonce,
    /// A sequence number already seen: a replayed receipt.
    Replayed,
    /// A sequence number past the next expected one: a receipt is missing.
    OutOfOrder,
    /// The previous-receipt hash does not match the last receipt seen.
    BrokenChain,
    /// A chunk's Merkle proof does not lead to the signed root.
    ChunkProofMismatch,
}

impl VerifyError {
    /// The number of this error in the library's shared code space
    /// ([`crate::codes`]).
    pub fn code(self) -> u32 {
        crate::codes::verify(self)
    }
}

/// SHA-256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> Digest {
    sha256_parts(&[bytes])
}

/// SHA-256 of the concatenation of `parts`.
pub fn sha256_parts(parts: &[&[u8]]) -> Digest {
    let mut ctx = crate::crypto::Sha256::new();
    for p in parts {
        ctx.update(p);
    }
    ctx.finish()
}

/// Checks that `chunk` is leaf `proof.index` of the output tree a receipt
/// signed, so a verifier can spot-check one chunk without the whole output.
///
/// `leaf_count` is the exact number of leaves of that tree:
/// [`output_leaf_count`](crate::merkle::output_leaf_count) of the job's buffer
/// layout, which the receipt's `kernel_hash` binds (recompute it with
/// [`JobAssign::kernel_hash`](crate::wire::JobAssign::kernel_hash) or
/// [`kernel_hash`] to trust the layout). The proof's tree size must equal it:
/// a path for a leaf of the signed tree can also be read as a path for another
/// index in a tree of another size, so without the exact size the chunk's
/// claimed position would not be proven.
pub fn verify_output_chunk(
    receipt: &Receipt,
    leaf_count: u64,
    chunk: &[u8],
    proof: &crate::merkle::Proof,
) -> Result<(), VerifyError> {
    if proof.tree_size != leaf_count {
        return Err(VerifyError::ChunkProofMismatch);
    }
    crate::merkle::verify_proof(
        &receipt.output_root,
        &crate::merkle::leaf_hash(chunk),
        proof,
    )
    .map_err(|_| VerifyError::ChunkProofMismatch)
}

/// Little-endian field writer for fixed-width signed bodies.
struct Writer<'a> {
    buf: &'a mut [u8],
    pos: usize,
}

impl<'a> Writer<'a> {
    fn new(buf: &'a mut [u8]) -> Self {
        Writer { buf, pos: 0 }
    }
    fn bytes(&mut self, b: &[u8]) {
        self.buf[self.pos..self.pos + b.len()].copy_from_slice(b);
        self.pos += b.len();
    }
    fn u8(&mut self, v: u8) {
        self.bytes(&[v]);
    }
    fn u16(&mut self, v: u16) {
        self.bytes(&v.to_le_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.bytes(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.bytes(&v.to_le_bytes());
    }
}

/// Little-endian field reader for fixed-width signed bodies. The caller checks
/// the length first, so reads never run past the end.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }
    fn take<const N: usize>(&mut self) -> [u8; N] {
        let mut a = [0u8; N];
        a.copy_from_slice(&self.buf[self.pos..self.pos + N]);
        self.pos += N;
        a
    }
    fn u8(&mut self) -> u8 {
        self.take::<1>()[0]
    }
    fn u16(&mut self) -> u16 {
        u16::from_le_bytes(self.take())
    }
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.take())
    }
    fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.take())
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! Sample structures shared by the attestation tests.
    use super::*;
    use crate::wire::{features, Usage};

    /// A signer from a seed whose bytes are all `b`.
    pub fn signer(b: u8) -> Ed25519Signer {
        Ed25519Signer::from_seed(&[b; 32]).unwrap()
    }

    /// Sample evidence for `public_key` answering `challenge`.
    pub fn evidence(public_key: [u8; 32], challenge: crate::wire::Nonce) -> Evidence {
        let mut name = crate::bounded::BoundedString::new();
        name.push_str("Test GPU 9000").unwrap();
        Evidence {
            challenge,
            public_key,
            agent_version: [0, 1, 0],
            boot_id: [0xB0; 16],
            issued_at: 1_700_000_000_000_000,
            chain: ChainState::default(),
            capabilities: DeviceCapabilities {
                name,
                vendor_id: 0x10DE,
                device_id: 0x2684,
                driver_version: 0x0220_0000,
                api_version: (1 << 22) | (3 << 12),
                device_type: DeviceType::DiscreteGpu,
                features: features::FLOAT16 | features::INT8 | features::ROBUST_BUFFER_ACCESS,
                device_local_bytes: 24 << 30,
                host_visible_bytes: 256 << 20,
                max_workgroup_size: [1024, 1024, 64],
                max_workgroup_count: [65535, 65535, 65535],
                max_invocations: 1024,
                max_shared_memory: 49152,
                max_storage_buffer_range: 1 << 32,
                subgroup_size: 32,
                copy_mbps: 900_000,
                fma_mflops: 80_000_000,
            },
            enc_key: [0; 32],
            hardware_report: HardwareReport::NONE,
        }
    }

    /// A completed receipt of `signer`'s at `chain`'s position.
    pub fn receipt(signer: &Ed25519Signer, chain: ChainState, job: u64) -> Receipt {
        let layout = [
            crate::wire::BufferSpec {
                binding: 0,
                len: 20_000,
                init_len: 20_000,
                readback: false,
            },
            crate::wire::BufferSpec {
                binding: 1,
                len: 9000,
                init_len: 0,
                readback: true,
            },
        ];
        let kernel = kernel_hash(
            &[0x11; 32],
            "main",
            &[(0, 64)],
            &[1, 2, 3, 4],
            [16, 1, 1],
            &layout,
        );
        let input_root = crate::merkle::root_of(&[5u8; 20_000]);
        let output = [6u8; 9000];
        let output_root = crate::merkle::root_of(&output);
        let result = result_hash(&kernel, &input_root, &output_root, output.len() as u64);
        Receipt {
            status: ReceiptStatus::Completed,
            job,
            requester_nonce: [job as u8; 32],
            kernel_hash: kernel,
            input_root,
            output_root,
            output_len: output.len() as u64,
            result_hash: result,
            result_seal: result_seal(&signer.public_key(), job, &result),
            usage: Usage {
                gpu_time_us: 1234,
                dispatches: 1,
                bytes_in: 20_000,
                bytes_out: 9000,
            },
            price: 42,
            started_at: 1_000_000,
            ended_at: 1_001_234,
            evidence_hash: [0xEE; 32],
            key_id: signer.key_id(),
            sequence: chain.next_sequence,
            prev_hash: chain.prev_hash,
        }
    }

    /// Signs `r` and returns the signed bytes.
    pub fn sign_receipt<S: Signer + ?Sized>(r: &Receipt, signer: &mut S) -> [u8; RECEIPT_LEN] {
        let mut out = [0u8; RECEIPT_LEN];
        assert_eq!(r.sign(signer, &mut out).unwrap(), RECEIPT_LEN);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;
    use crate::limits::CHUNK_SIZE;
    use crate::merkle;

    #[test]
    fn sizes_are_the_documented_ones() {
        assert_eq!(RECEIPT_PAYLOAD_LEN, 350);
        assert_eq!(RECEIPT_LEN, 444);
        assert_eq!(EVIDENCE_PAYLOAD_LEN, 354);
        assert_eq!(EVIDENCE_LEN, 448);
        const { assert!(RECEIPT_LEN <= crate::limits::MAX_SIGNED) };
        const { assert!(EVIDENCE_LEN <= crate::limits::MAX_SIGNED) };
    }

    /// A secure element: holds the key, exposes only `public_key` and `sign`
    /// (the key id comes from the trait's default), and counts what it signs.
    struct SecureElement {
        key: Ed25519Signer,
        signatures: u32,
        busy: bool,
    }

    impl Signer for SecureElement {
        fn public_key(&self) -> [u8; 32] {
            self.key.public_key()
        }
        fn sign(&mut self, message: &[u8]) -> Result<[u8; 64], SignError> {
            if self.busy {
                return Err(SignError::Unavailable);
            }
            self.signatures += 1;
            self.key.sign(message)
        }
    }

    #[test]
    fn a_secure_element_behind_the_trait_signs_everything() {
        let mut se = SecureElement {
            key: signer(7),
            signatures: 0,
            busy: false,
        };
        let pk = se.public_key();
        let challenge = [0xC1; 32];
        let mut ev = [0u8; EVIDENCE_LEN];
        let n = evidence(pk, challenge).sign(&mut se, &mut ev).unwrap();
        assert_eq!(n, EVIDENCE_LEN);
        assert_eq!(Evidence::verify(&ev, &challenge).unwrap().public_key, pk);

        let mut verifier = ReceiptVerifier::new(pk, ChainState::default());
        let mut chain = ChainState::default();
        for job in 1..=3 {
            let r = receipt(&se.key, chain, job);
            let signed = sign_receipt(&r, &mut se);
            assert_eq!(verifier.verify_next(&signed, Some(&[job as u8; 32])), Ok(r));
            chain.advance(Receipt::hash(&signed));
        }
        assert_eq!(se.signatures, 4);
        // Same bytes as the in-memory signer: the trait is all signing needs.
        let r = receipt(&se.key, chain, 4);
        assert_eq!(sign_receipt(&r, &mut se), sign_receipt(&r, &mut signer(7)));

        // A busy element: the error comes back and nothing is written.
        se.busy = true;
        let mut out = [0xAA; RECEIPT_LEN];
        assert_eq!(r.sign(&mut se, &mut out), Err(SignError::Unavailable));
        assert!(out.iter().all(|&b| b == 0xAA));
        // Through `&mut S` as well (`dyn Signer` works too).
        se.busy = false;
        let dynamic: &mut dyn Signer = &mut se;
        assert_eq!(r.sign(dynamic, &mut out), Ok(RECEIPT_LEN));
    }

    #[test]
    fn too_small_an_output_buffer_is_an_error_not_a_panic() {
        let s = signer(1);
        let r = receipt(&s, ChainState::default(), 1);
        let mut out = [0u8; RECEIPT_LEN - 1];
        assert_eq!(r.sign(&mut signer(1), &mut out), Err(SignError::Failed(0)));
    }

    #[test]
    fn structures_never_verify_as_one_another() {
        let mut s = signer(1);
        let pk = s.public_key();
        let challenge = [9; 32];
        let mut ev = [0u8; EVIDENCE_LEN];
        evidence(pk, challenge).sign(&mut s, &mut ev).unwrap();
        let rc = sign_receipt(&receipt(&s, ChainState::default(), 1), &mut s);
        assert_eq!(
            Evidence::verify(&rc, &challenge),
            Err(VerifyError::Malformed)
        );
        assert_eq!(Receipt::verify(&ev, &pk), Err(VerifyError::Malformed));

        // The domain tag is the COSE external AAD: a signature over the same
        // payload under another domain does not verify.
        let payload = [0x42u8; 100];
        let mut out = [0u8; crate::limits::MAX_SIGNED];
        let n = cose::sign(&mut s, EVIDENCE_DOMAIN, &payload, &mut out).unwrap();
        let parsed = cose::parse(&out[..n], payload.len()).unwrap();
        assert_eq!(parsed.payload, &payload[..]);
        assert_eq!(cose::verify(&parsed, EVIDENCE_DOMAIN, &pk), Ok(()));
        assert_eq!(
            cose::verify(&parsed, RECEIPT_DOMAIN, &pk),
            Err(VerifyError::BadSignature)
        );
    }

    #[test]
    fn cose_shape_is_the_documented_one() {
        let mut s = signer(1);
        let kid = s.key_id();
        let r = receipt(&s, ChainState::default(), 1);
        let signed = sign_receipt(&r, &mut s);
        assert_eq!(
            signed[..9],
            [0xD2, 0x84, 0x43, 0xA1, 0x01, 0x27, 0xA1, 0x04, 0x50]
        );
        assert_eq!(signed[9..25], kid);
        assert_eq!(signed[25..28], [0x59, 0x01, 0x5E]);
        assert_eq!(signed[28..378], r.encode_payload());
        assert_eq!(signed[378..380], [0x58, 0x40]);
        // 354-byte evidence payloads take the two-byte length form too.
        let mut ev = [0u8; EVIDENCE_LEN];
        evidence(s.public_key(), [0; 32])
            .sign(&mut s, &mut ev)
            .unwrap();
        assert_eq!(ev[25..28], [0x59, 0x01, 0x62]);
        assert_eq!(ev[382..384], [0x58, 0x40]);
    }

    #[test]
    fn output_chunks_are_proven_against_the_signed_root() {
        let s = signer(1);
        let output: std::vec::Vec<u8> = (0..4 * CHUNK_SIZE + 100).map(|i| i as u8).collect();
        let leaves: std::vec::Vec<_> = output.chunks(CHUNK_SIZE).map(merkle::leaf_hash).collect();
        let mut r = receipt(&s, ChainState::default(), 1);
        r.output_root = merkle::root_of(&output);
        r.output_len = output.len() as u64;
        let count = leaves.len() as u64;
        for (i, chunk) in output.chunks(CHUNK_SIZE).enumerate() {
            let proof = merkle::prove(&leaves, i as u64).unwrap();
            assert_eq!(verify_output_chunk(&r, count, chunk, &proof), Ok(()));
            assert_eq!(
                verify_output_chunk(&r, count, &chunk[1..], &proof),
                Err(VerifyError::ChunkProofMismatch)
            );
            // A verifier expecting another tree size refuses a genuine proof.
            assert_eq!(
                verify_output_chunk(&r, count + 1, chunk, &proof),
                Err(VerifyError::ChunkProofMismatch)
            );
        }
        // The last leaf of 5 has the path [root of leaves 0..4]; the same
        // path also reads as leaf 1 of a tree of 2. The Merkle check alone
        // accepts that misplaced claim; the exact leaf count refuses it.
        let mut forged = merkle::prove(&leaves, 4).unwrap();
        assert_eq!(forged.path.len(), 1);
        forged.index = 1;
        forged.tree_size = 2;
        assert_eq!(
            merkle::verify_proof(&r.output_root, &leaves[4], &forged),
            Ok(())
        );
        assert_eq!(
            verify_output_chunk(&r, count, &output[4 * CHUNK_SIZE..], &forged),
            Err(VerifyError::ChunkProofMismatch)
        );
    }

    #[test]
    fn the_layout_pins_a_chunk_position_across_buffers() {
        // Two read-back buffers: 8202 bytes (two leaves, the second short) and
        // 3 bytes (one leaf). 8205 output bytes would be two chunks in one
        // buffer, so the output length alone cannot tell a tree of 2 from 3.
        let s = signer(1);
        let a: std::vec::Vec<u8> = (0..CHUNK_SIZE + 10).map(|i| i as u8).collect();
        let b = [0xB0u8, 0xB1, 0xB2];
        let layout = [
            crate::wire::BufferSpec {
                binding: 0,
                len: a.len() as u64,
                init_len: 0,
                readback: true,
            },
            crate::wire::BufferSpec {
                binding: 1,
                len: 4096,
                init_len: 4096,
                readback: false,
            },
            crate::wire::BufferSpec {
                binding: 2,
                len: b.len() as u64,
                init_len: 0,
                readback: true,
            },
        ];
        let count = merkle::output_leaf_count(&layout);
        assert_eq!(count, 3);
        let leaves: std::vec::Vec<_> = a
            .chunks(CHUNK_SIZE)
            .chain(b.chunks(CHUNK_SIZE))
            .map(merkle::leaf_hash)
            .collect();
        let mut r = receipt(&s, ChainState::default(), 1);
        r.output_root = merkle::root_of_buffers([&a[..], &b[..]]);
        r.output_len = (a.len() + b.len()) as u64;
        assert_eq!(merkle::chunk_count(r.output_len), 2);
        let proof = merkle::prove(&leaves, 2).unwrap();
        assert_eq!(verify_output_chunk(&r, count, &b, &proof), Ok(()));
        // Leaf 2's path, [root of leaves 0..2], also reads as leaf 1 of a
        // tree of 2, a size the output length allows. With the layout's exact
        // count the claim that `b` is leaf 1 is refused.
        let mut misplaced = proof.clone();
        misplaced.index = 1;
        misplaced.tree_size = 2;
        assert_eq!(
            merkle::verify_proof(&r.output_root, &leaves[2], &misplaced),
            Ok(())
        );
        assert_eq!(
            verify_output_chunk(&r, count, &b, &misplaced),
            Err(VerifyError::ChunkProofMismatch)
        );
    }
}
