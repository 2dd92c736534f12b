//! End-to-end sealing between a requester and a provider
//! (`docs/PROTOCOL.md`, "End-to-end sealing").
//!
//! A requester seals a job's streams to the provider's session key (in its
//! signed evidence), and the provider seals the outputs to the requester's
//! key, so the coordinator between them routes, meters and verifies
//! ciphertext only. An HPKE context (RFC 9180, base mode,
//! DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, export-only) each way serves
//! many jobs ([`provider_info`], [`requester_info`]); each job's
//! AES-256-GCM key and base nonce are exported from it once under the
//! job's bytes ([`job_bytes`], [`JobKey`]), each of the job's streams
//! takes its own nonces under that key ([`JobKey::stream`]), and a stream
//! is sealed in segments of [`SEGMENT_PLAIN_LEN`] bytes, each
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
use crate::wire::{BufferSpec, Digest, JobAssign, Nonce};

#[cfg(feature = "e2e")]
mod hpke_streams;
#[cfg(feature = "e2e")]
pub use hpke_streams::{JobKey, KeyPair, Receiver, Sender, StreamKey};
#[cfg(all(feature = "e2e", feature = "std"))]
mod job;
#[cfg(all(feature = "e2e", feature = "std"))]
pub use job::sealed_layout;
#[cfg(all(feature = "e2e", feature = "std"))]
pub use job::{
    expected_result_hash, open_job, open_job_unhashed, open_outputs, output_plain_lens,
    output_prefix, output_receiver, provider_context, seal_job, sealed_result_hash, OpenedJob,
    OutputContext, OutputSealer, PlainDigest, PlainJob, Recipient, RequesterContext, SealedJob,
    MAX_SEALED_PUSH_CONSTANTS, PUSH_CONSTANTS_STREAM, RESULT_KEY_LEN, RESULT_KEY_STREAM,
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
/// Bytes of the `info` of a context sealed to a provider ([`provider_info`]).
pub const PROVIDER_INFO_LEN: usize = INFO_LABEL.len() + 1 + 32;
/// Bytes of the `info` of a context sealed to a requester
/// ([`requester_info`]).
pub const REQUESTER_INFO_LEN: usize = PROVIDER_INFO_LEN + 32;
/// Bytes at the front of a sealed job's first output stream: the output
/// context's encapsulated key and the job's output salt.
pub const OUTPUT_PREFIX_LEN: usize = KEY_LEN + OUTPUT_SALT_LEN;
/// Bytes of the salt a provider draws for each job's outputs.
pub const OUTPUT_SALT_LEN: usize = 16;
/// Most bytes of the job bytes a job's key is exported under: the
/// requester's nonce, the job's binding, and for outputs the salt after
/// them.
pub const MAX_JOB_BYTES: usize = 32 + 32 + OUTPUT_SALT_LEN;
/// Domain tag of a sealed job's binding ([`job_binding`]).
pub const BINDING_DOMAIN: &[u8] = b"tessera/e2e/bind/v1";

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
    /// Outputs sealed for a job whose plaintext was not hashed
    /// ([`OpenedJob::set_plain_digest`] after [`open_job_unhashed`]).
    Unhashed,
}

impl fmt::Display for SealError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SealError::BadKey => "not a usable X25519 public key",
            SealError::BadLength => "not a length or place of a sealed stream",
            SealError::Forged => "a sealed segment that does not open (forged or misplaced)",
            SealError::Random => "the system's random source failed",
            SealError::Unhashed => {
                "the job in the clear was not hashed before its outputs were sealed"
            }
        })
    }
}

#[cfg(feature = "std")]
impl std::error::Error for SealError {}

/// HPKE `info` of a requester's context sealed to a provider: the label,
/// direction 0 and the provider's device key (its Ed25519 public key). One
/// such context serves any number of the requester's jobs for that
/// provider's session; each job's key is exported under its own nonce
/// ([`job_bytes`]).
pub fn provider_info(device_key: &[u8; 32]) -> [u8; PROVIDER_INFO_LEN] {
    let mut out = [0u8; PROVIDER_INFO_LEN];
    out[..INFO_LABEL.len()].copy_from_slice(INFO_LABEL);
    out[INFO_LABEL.len()] = Direction::ToProvider as u8;
    out[INFO_LABEL.len() + 1..].copy_from_slice(device_key);
    out
}

/// HPKE `info` of a provider's context sealed to a requester's key: the
/// label, direction 1, the device key and the encapsulated key of the
/// requester's context the jobs came in, so outputs of one requester's
/// context open under no other.
pub fn requester_info(device_key: &[u8; 32], requester_enc: &[u8; 32]) -> [u8; REQUESTER_INFO_LEN] {
    let mut out = [0u8; REQUESTER_INFO_LEN];
    out[..PROVIDER_INFO_LEN].copy_from_slice(&provider_info(device_key));
    out[INFO_LABEL.len()] = Direction::ToRequester as u8;
    out[PROVIDER_INFO_LEN..].copy_from_slice(requester_enc);
    out
}

/// The job bytes a job's key is exported under: the requester's nonce,
/// the job's binding ([`job_binding`]), then for outputs the provider's
/// salt for the job. Returns the buffer and how much of it is used.
pub fn job_bytes(
    nonce: &Nonce,
    binding: &Digest,
    output_salt: Option<&[u8; OUTPUT_SALT_LEN]>,
) -> ([u8; MAX_JOB_BYTES], usize) {
    let mut out = [0u8; MAX_JOB_BYTES];
    out[..32].copy_from_slice(nonce);
    out[32..64].copy_from_slice(binding);
    match output_salt {
        Some(salt) => {
            out[64..].copy_from_slice(salt);
            (out, MAX_JOB_BYTES)
        }
        None => (out, 64),
    }
}

/// A sealed job's binding: what of the job travels in the clear, bound into
/// the job's key, so that the same sealed streams under another
/// requester key, another dispatch, another buffer layout or (for a kernel
/// in the clear) another kernel open to nothing:
///
/// SHA-256("tessera/e2e/bind/v1" ‖ requester_key ‖ u8 kernel_sealed ‖
/// kernel hash (`attest::kernel_hash`) over the clear kernel's root, or 32
/// zero bytes for a sealed kernel, the entry point, the specialization
/// constants, no push constants, the grid and the buffer layout as
/// declared).
pub fn job_binding(
    requester_key: &[u8; KEY_LEN],
    kernel_sealed: bool,
    clear_kernel_root: &Digest,
    entry_point: &str,
    specialization: &[(u32, u32)],
    grid: [u32; 3],
    buffers: &[BufferSpec],
) -> Digest {
    let root = if kernel_sealed {
        &[0u8; 32]
    } else {
        clear_kernel_root
    };
    let layout = crate::attest::kernel_hash(root, entry_point, specialization, &[], grid, buffers);
    crate::attest::sha256_parts(&[
        BINDING_DOMAIN,
        requester_key,
        &[u8::from(kernel_sealed)],
        &layout,
    ])
}

/// [`job_binding`] of a sealed assignment (`None` for one in the clear).
pub fn assignment_binding(spec: &JobAssign) -> Option<Digest> {
    let s = spec.sealing.as_ref()?;
    Some(job_binding(
        &s.requester_key,
        s.kernel_sealed,
        &spec.kernel.root,
        &spec.kernel.entry_point,
        &spec.kernel.specialization,
        spec.kernel.grid,
        &spec.buffers,
    ))
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
/// read-back buffer [`OUTPUT_PREFIX_LEN`] more (the output context's
/// encapsulated key and the job's salt go first).
pub fn output_buffer_len(plain: u64, first_readback: bool) -> Option<u64> {
    let sealed = sealed_len(plain)?;
    if first_readback {
        sealed.checked_add(OUTPUT_PREFIX_LEN as u64)
    } else {
        Some(sealed)
    }
}

/// The plaintext bytes a sealed read-back buffer of `len` declared bytes
/// returns (see [`output_buffer_len`]); `None` for a length no sealed
/// output has.
pub fn output_plain_len(len: u64, first_readback: bool) -> Option<u64> {
    let sealed = if first_readback {
        len.checked_sub(OUTPUT_PREFIX_LEN as u64)?
    } else {
        len
    };
    plain_len(sealed).filter(|&p| p > 0)
}
