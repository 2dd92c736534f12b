//! End-to-end sealing between a requester and a provider
//! (`docs/PROTOCOL.md`, "End-to-end sealing").
//!
//! A requester seals a job's streams to the provider's session key (in its
//! signed evidence), and the provider seals the outputs to the requester's
//! key, so the coordinator between them routes, meters and verifies
//! ciphertext only. One HPKE context (RFC 9180, base mode,
//! DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, export-only) per job and
//! direction; each stream's AES-256-GCM key and nonce are exported from it,
//! and the stream is sealed in segments of [`SEGMENT_PLAIN_LEN`] bytes, each
//! with its 16-byte tag, so a sealed segment is exactly eight transfer
//! chunks ([`crate::limits::CHUNK_SIZE`], 64 KiB) and opens on its own.
//! (Segments of one chunk cost a tenth of the sealing rate in per-call
//! overhead: `ci/bench`, `crypto.seal_rate`.)
//!
//! HPKE's key exchange and key schedule come from the `hpke` crate (checked
//! against RFC 9180's published vectors in this module's tests); the bulk
//! of the bytes goes through ring's AES-256-GCM (feature `e2e`). The
//! lengths and labels are here in every build: the agent checks a sealed
//! job's sizes without opening anything.

use core::fmt;

use crate::limits::CHUNK_SIZE;
use crate::wire::Nonce;

#[cfg(feature = "e2e")]
mod hpke_streams;
#[cfg(feature = "e2e")]
pub use hpke_streams::{KeyPair, Receiver, Sender, StreamKey};
#[cfg(all(feature = "e2e", feature = "std"))]
mod job;
#[cfg(all(feature = "e2e", feature = "std"))]
pub use job::{
    expected_result_hash, open_job, open_outputs, output_plain_lens, seal_job, sealed_result_hash,
    OpenedJob, PlainJob, Recipient, SealedJob, MAX_SEALED_PUSH_CONSTANTS, PUSH_CONSTANTS_STREAM,
    RESULT_KEY_LEN, RESULT_KEY_STREAM,
};

/// Bytes of an X25519 public key, and of HPKE's encapsulated key.
pub const KEY_LEN: usize = 32;
/// Bytes of an AES-256-GCM tag, added to every sealed segment.
pub const TAG_LEN: usize = 16;
/// Bytes of a sealed segment (all but a stream's last): eight chunks.
pub const SEGMENT_LEN: usize = 8 * CHUNK_SIZE;
/// Bytes of plaintext in every segment but a stream's last.
pub const SEGMENT_PLAIN_LEN: usize = SEGMENT_LEN - TAG_LEN;
/// HPKE `info` label of Tessera's contexts.
pub const INFO_LABEL: &[u8; 14] = b"tessera/e2e/v1";
/// Bytes of an HPKE `info` ([`info`]).
pub const INFO_LEN: usize = INFO_LABEL.len() + 1 + 32 + 32;

/// Who a context seals to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Direction {
    /// The requester's kernel and inputs, sealed to the provider's session
    /// key.
    ToProvider = 0,
    /// The provider's outputs, sealed to the requester's key.
    ToRequester = 1,
}

/// Why sealing or opening failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SealError {
    /// A public or encapsulated key that X25519 refuses (a low-order point:
    /// the shared secret would be all zeros).
    BadKey,
    /// A length no sealed stream has, a segment past the stream's end, or
    /// a segment of the wrong length for its place.
    BadLength,
    /// A segment that does not open: forged, corrupted, or from another
    /// job, direction, stream or place in the stream.
    Forged,
    /// The system's random source failed (hosted builds).
    Random,
}

impl fmt::Display for SealError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SealError::BadKey => "not a usable X25519 public key",
            SealError::BadLength => "not a length or place of a sealed stream",
            SealError::Forged => "a sealed segment that does not open (forged or misplaced)",
            SealError::Random => "the system's random source failed",
        })
    }
}

#[cfg(feature = "std")]
impl std::error::Error for SealError {}

/// HPKE `info` of a job's context: the label, the direction, the
/// requester's nonce for the job and the provider's device key (its Ed25519
/// public key), so a context of one job, direction or provider opens nothing
/// of another.
pub fn info(
    direction: Direction,
    requester_nonce: &Nonce,
    device_key: &[u8; 32],
) -> [u8; INFO_LEN] {
    let mut out = [0u8; INFO_LEN];
    let (label, rest) = out.split_at_mut(INFO_LABEL.len());
    label.copy_from_slice(INFO_LABEL);
    rest[0] = direction as u8;
    rest[1..33].copy_from_slice(requester_nonce);
    rest[33..65].copy_from_slice(device_key);
    out
}

/// Segments of a stream of `plain` bytes (0 for an empty stream).
pub const fn segments(plain: u64) -> u64 {
    plain.div_ceil(SEGMENT_PLAIN_LEN as u64)
}

/// Bytes of a stream of `plain` bytes once sealed: `plain` + 16 per
/// segment. `None` past `u64`.
pub const fn sealed_len(plain: u64) -> Option<u64> {
    match segments(plain).checked_mul(TAG_LEN as u64) {
        Some(tags) => plain.checked_add(tags),
        None => None,
    }
}

/// Bytes of plaintext in a sealed stream of `sealed` bytes; `None` for a
/// length no sealed stream has (a last segment of 16 bytes or fewer).
pub const fn plain_len(sealed: u64) -> Option<u64> {
    let full = sealed / SEGMENT_LEN as u64;
    let rest = sealed % SEGMENT_LEN as u64;
    let plain = full * SEGMENT_PLAIN_LEN as u64;
    if rest == 0 {
        Some(plain)
    } else if rest <= TAG_LEN as u64 {
        None
    } else {
        Some(plain + rest - TAG_LEN as u64)
    }
}

/// Bytes a read-back buffer must be declared with so that `plain` bytes of
/// output come back sealed: the sealed length, and for the job's first
/// read-back buffer 32 more (the outputs' encapsulated key goes first).
pub fn output_buffer_len(plain: u64, first_readback: bool) -> Option<u64> {
    let sealed = sealed_len(plain)?;
    if first_readback {
        sealed.checked_add(KEY_LEN as u64)
    } else {
        Some(sealed)
    }
}

/// The plaintext bytes a sealed read-back buffer of `len` declared bytes
/// returns (see [`output_buffer_len`]); `None` for a length no sealed
/// output has.
pub fn output_plain_len(len: u64, first_readback: bool) -> Option<u64> {
    let sealed = if first_readback {
        len.checked_sub(KEY_LEN as u64)?
    } else {
        len
    };
    plain_len(sealed).filter(|&p| p > 0)
}
