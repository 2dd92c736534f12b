//! Attestation: the device's signing key, signed device evidence and signed job
//! receipts (`docs/PROTOCOL.md`, "Attestation").
//!
//! Everything signed is a COSE_Sign1 (RFC 9052) with EdDSA (Ed25519) over a
//! fixed-width body, with a per-structure domain tag as external AAD, so a
//! signature made for one structure never verifies as another. Verification is
//! plain functions over bytes, usable by coordinators, requesters and auditors,
//! in `no_std` too.

mod cose;
mod evidence;
mod receipt;
mod signer;

pub use cose::{Sign1, COSE_OVERHEAD};
pub use evidence::{DeviceCapabilities, DeviceType, Evidence, EVIDENCE_LEN, EVIDENCE_PAYLOAD_LEN};
pub use receipt::{
    kernel_hash, result_hash, result_seal, ChainState, Receipt, ReceiptStatus, ReceiptVerifier,
    RECEIPT_LEN, RECEIPT_PAYLOAD_LEN,
};
pub use signer::{key_id, verify_signature, Ed25519Signer, KeyError, SignError, Signer};

use crate::wire::Digest;

/// Domain tag (COSE external AAD) of device evidence.
pub const EVIDENCE_DOMAIN: &[u8] = b"tessera/evidence/v1";
/// Domain tag (COSE external AAD) of job receipts.
pub const RECEIPT_DOMAIN: &[u8] = b"tessera/receipt/v1";
/// Domain tag of key identifiers.
pub const KEY_ID_DOMAIN: &[u8] = b"tessera/key-id/v1";
/// Domain tag of kernel hashes.
pub const KERNEL_DOMAIN: &[u8] = b"tessera/kernel/v1";
/// Domain tag of result hashes.
pub const RESULT_DOMAIN: &[u8] = b"tessera/result/v1";
/// Domain tag of result seals.
pub const SEAL_DOMAIN: &[u8] = b"tessera/seal/v1";

/// Why a signed structure did not verify. Each variant is a different thing for
/// a verifier to act on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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

/// SHA-256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> Digest {
    sha256_parts(&[bytes])
}

/// SHA-256 of the concatenation of `parts`.
pub fn sha256_parts(parts: &[&[u8]]) -> Digest {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for p in parts {
        ctx.update(p);
    }
    let mut d = [0u8; 32];
    d.copy_from_slice(ctx.finish().as_ref());
    d
}

/// Checks that `chunk` is leaf `proof.index` of the output tree a receipt
/// signed, so a verifier can spot-check one chunk without the whole output.
pub fn verify_output_chunk(
    receipt: &Receipt,
    chunk: &[u8],
    proof: &crate::merkle::Proof,
) -> Result<(), VerifyError> {
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
