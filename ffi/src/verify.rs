//! What a coordinator, requester or auditor needs to check a provider, over
//! bytes alone: keys (`tessera_key_*`), signed evidence
//! (`tessera_evidence_*`), signed receipts (`tessera_receipt_*`), one key's
//! receipt chain (`tessera_chain_verifier_*`), Merkle roots and proofs of
//! output chunks (`tessera_merkle_*`, `tessera_verify_output_chunk`) and the
//! hashes a receipt binds (`tessera_kernel_hash`, `tessera_result_hash`,
//! `tessera_result_seal`).
//!
//! Every check is the core's (`tessera_core::attest`, `tessera_core::merkle`),
//! so results are byte for byte those of the Rust API. A failed verification
//! returns its `TESSERA_VERIFY_*` code (401 to 408) and writes nothing.

use core::ffi::c_char;

use tessera_core::attest::{
    self, ChainState, Ed25519Signer, Evidence, Receipt, ReceiptStatus, ReceiptVerifier, Signer,
    VerifyError,
};
use tessera_core::bounded::BoundedVec;
use tessera_core::limits::{MAX_BUFFERS, MAX_ENTRY_POINT, MAX_PUSH_CONSTANTS, MAX_SPEC_CONSTANTS};
use tessera_core::merkle::{self, MAX_PROOF_LEN};
use tessera_core::wire::{BufferSpec, Digest, Usage};

use crate::agent::{tessera_buffer_spec, tessera_chain_state, tessera_usage};
use crate::boundary::{bytes, copy_out, free_handle, guard, new_handle, non_null};
use crate::*;

// ----- sizes and limits ------------------------------------------------------

/// Bytes of the PKCS#8 document `tessera_key_generate` writes.
pub const TESSERA_KEY_PKCS8_LEN: usize = 83;
/// Bytes of signed evidence.
pub const TESSERA_EVIDENCE_LEN: usize = 448;
/// `tessera_evidence_info.hardware_report_kind`: no hardware report.
pub const TESSERA_HARDWARE_REPORT_NONE: u16 = 0;
/// An NVIDIA GPU confidential-computing attestation report.
pub const TESSERA_HARDWARE_REPORT_NVIDIA_CC: u16 = 1;
/// A TPM 2.0 quote.
pub const TESSERA_HARDWARE_REPORT_TPM2_QUOTE: u16 = 2;
/// An AMD SEV-SNP attestation report.
pub const TESSERA_HARDWARE_REPORT_SEV_SNP: u16 = 3;
/// An Intel TDX quote.
pub const TESSERA_HARDWARE_REPORT_TDX: u16 = 4;
/// Longest Merkle audit path, in 32-byte hashes (trees have at most 2^32
/// leaves).
pub const TESSERA_MAX_PROOF_LEN: usize = 32;
/// Most bytes of a kernel entry point name (without the NUL).
pub const TESSERA_MAX_ENTRY_POINT: usize = 64;
/// Most specialization constants of a kernel.
pub const TESSERA_MAX_SPEC_CONSTANTS: usize = 16;
/// Most push constant bytes of a kernel.
pub const TESSERA_MAX_PUSH_CONSTANTS: usize = 128;

/// How a job ended (`tessera_receipt_info.status`): the kernel ran and its
/// outputs were returned. Any other status is a failure, numbered as the wire
/// fail reason (its result code is `TESSERA_FAIL_BASE + status`).
pub const TESSERA_RECEIPT_COMPLETED: u32 = 0;
/// Failed: the kernel failed validation.
pub const TESSERA_RECEIPT_KERNEL_REJECTED: u32 = 1;
/// Failed: the kernel ran past its time limit.
pub const TESSERA_RECEIPT_TIMEOUT: u32 = 2;
/// Failed: the job's deadline passed before it completed.
pub const TESSERA_RECEIPT_DEADLINE_EXCEEDED: u32 = 3;
/// Failed: the GPU was lost while running the job.
pub const TESSERA_RECEIPT_DEVICE_LOST: u32 = 4;
/// Failed: the device ran out of memory.
pub const TESSERA_RECEIPT_OUT_OF_MEMORY: u32 = 5;
/// Failed: an input chunk or root did not match its digest.
pub const TESSERA_RECEIPT_INPUT_INTEGRITY: u32 = 6;
/// Failed: the provider's host failed for another reason.
pub const TESSERA_RECEIPT_HOST: u32 = 7;

// ----- pointer helpers -------------------------------------------------------

/// The `N` bytes at `ptr`, copied.
///
/// # Safety
/// `ptr` must be non-NULL and point to `N` readable bytes.
unsafe fn read_array<const N: usize>(ptr: *const u8) -> [u8; N] {
    // SAFETY: by the caller; `[u8; N]` has alignment 1.
    unsafe { ptr.cast::<[u8; N]>().read() }
}

/// Writes `value` to the `N` bytes at `ptr`.
///
/// # Safety
/// `ptr` must be non-NULL and point to `N` writable bytes.
unsafe fn write_array<const N: usize>(ptr: *mut u8, value: &[u8; N]) {
    // SAFETY: by the caller; a local value never overlaps the caller's bytes.
    unsafe { core::ptr::copy_nonoverlapping(value.as_ptr(), ptr, N) }
}

/// `count` items of `T` at `ptr`: empty for a zero count (`ptr` may be NULL),
/// `TESSERA_NULL_ARGUMENT` for NULL with a non-zero count,
/// `TESSERA_INVALID_ARGUMENT` for a misaligned pointer or a size past
/// `isize::MAX`.
///
/// # Safety
/// Unless NULL, `ptr` must point to `count` valid items that stay unchanged
/// for `'a`.
unsafe fn items<'a, T>(ptr: *const T, count: usize) -> Result<&'a [T], tessera_result> {
    if count == 0 {
        return Ok(&[]);
    }
    if ptr.is_null() {
        return Err(TESSERA_NULL_ARGUMENT);
    }
    let size = core::mem::size_of::<T>().max(1);
    if !ptr.is_aligned() || count > isize::MAX as usize / size {
        return Err(TESSERA_INVALID_ARGUMENT);
    }
    // SAFETY: non-NULL, aligned, within isize, and by the caller `count`
    // valid items that stay unchanged for 'a.
    Ok(unsafe { core::slice::from_raw_parts(ptr, count) })
}

/// The NUL-terminated UTF-8 string at `s`, reading no byte past its
/// `max + 1`th: `TESSERA_INVALID_ARGUMENT` when longer than `max` bytes or
/// not UTF-8.
///
/// # Safety
/// `s` must be non-NULL and NUL-terminated, and stay unchanged for `'a`.
unsafe fn bounded_str<'a>(s: *const c_char, max: usize) -> Result<&'a str, tessera_result> {
    let mut len = 0;
    // SAFETY: every byte read is one before the string's NUL, or the NUL
    // itself: the loop stops at the first NUL, and reads byte `len` only
    // after bytes 0..len were all non-NUL.
    while unsafe { *s.add(len) } != 0 {
        if len == max {
            return Err(TESSERA_INVALID_ARGUMENT);
        }
        len += 1;
    }
    // SAFETY: the `len` bytes before the NUL, read above.
    let b = unsafe { core::slice::from_raw_parts(s.cast::<u8>(), len) };
    core::str::from_utf8(b).map_err(|_| TESSERA_INVALID_ARGUMENT)
}

/// A verification result as a code, handing the value to `ok`.
fn verified<T>(r: Result<T, VerifyError>, ok: impl FnOnce(T)) -> tessera_result {
    match r {
        Ok(v) => {
            ok(v);
            TESSERA_OK
        }
        Err(e) => e.code(),
    }
}

/// A buffer of a layout the caller gave; `None` when its `readback` byte is
/// neither 0 nor 1.
fn buffer_spec(b: &tessera_buffer_spec) -> Option<BufferSpec> {
    Some(BufferSpec {
        binding: b.binding,
        len: b.len,
        init_len: b.init_len,
        readback: b.readback.get()?,
    })
}

/// A job's buffer layout, at most `TESSERA_MAX_BUFFERS` buffers.
///
/// # Safety
/// As [`items`].
unsafe fn layout(
    buffers: *const tessera_buffer_spec,
    count: usize,
) -> Result<BoundedVec<BufferSpec, MAX_BUFFERS>, tessera_result> {
    if count > MAX_BUFFERS {
        return Err(TESSERA_INVALID_ARGUMENT);
    }
    // SAFETY: the caller's promise.
    let specs = unsafe { items(buffers, count) }?;
    let mut out = BoundedVec::new();
    for b in specs {
        let spec = buffer_spec(b).ok_or(TESSERA_INVALID_ARGUMENT)?;
        out.push(spec).map_err(|_| TESSERA_INVALID_ARGUMENT)?;
    }
    Ok(out)
}

// ----- keys ------------------------------------------------------------------

/// Generates a new Ed25519 device key from the system's random source and
/// writes it into `pkcs8` as a PKCS#8 v2 document (`TESSERA_KEY_PKCS8_LEN`
/// bytes), for `tessera_signer_from_pkcs8` and `tessera_key_public`.
/// `written` (may be NULL) gets its length, also with
/// `TESSERA_BUFFER_TOO_SMALL` (then no key is kept: call again with room).
/// `TESSERA_NO_RANDOMNESS` when the random source fails.
///
/// The document is the private key: store it where only the agent reads it.
///
/// # Safety
/// `pkcs8` must point to `len` writable bytes (NULL allowed when `len` is
/// 0); `written` must be NULL or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn tessera_key_generate(
    pkcs8: *mut u8,
    len: usize,
    written: *mut usize,
) -> tessera_result {
    guard(|| {
        if len < TESSERA_KEY_PKCS8_LEN {
            // SAFETY: NULL or valid, by the caller.
            unsafe { crate::boundary::write_opt(written, TESSERA_KEY_PKCS8_LEN) };
            return TESSERA_BUFFER_TOO_SMALL;
        }
        non_null!(pkcs8);
        let (_, mut doc) = match Ed25519Signer::generate() {
            Ok(key) => key,
            Err(e) => return e.code(),
        };
        // SAFETY: the caller's promise for (pkcs8, len) and `written`.
        let r = unsafe { copy_out(&doc, pkcs8, len, written) };
        // Leave no copy of the private key in freed memory.
        for b in doc.iter_mut() {
            // SAFETY: a valid, aligned byte of `doc`; volatile so the
            // compiler keeps the stores.
            unsafe { core::ptr::write_volatile(b, 0) };
        }
        r
    })
}

/// Writes the 32-byte Ed25519 public key of the PKCS#8 document
/// `(pkcs8, len)` to `public_key`. `TESSERA_KEY_REJECTED` when the document
/// is not an Ed25519 PKCS#8 v2 key.
///
/// # Safety
/// `(pkcs8, len)` readable; `public_key` 32 writable bytes.
#[no_mangle]
pub unsafe extern "C" fn tessera_key_public(
    pkcs8: *const u8,
    len: usize,
    public_key: *mut u8,
) -> tessera_result {
    guard(|| {
        non_null!(public_key);
        // SAFETY: the caller's promise for (pkcs8, len).
        let Some(der) = (unsafe { bytes(pkcs8, len) }) else {
            return TESSERA_NULL_ARGUMENT;
        };
        match Ed25519Signer::from_pkcs8(der) {
            Ok(key) => {
                // SAFETY: 32 writable bytes, by the caller.
                unsafe { write_array(public_key, &key.public_key()) };
                TESSERA_OK
            }
            Err(e) => e.code(),
        }
    })
}

/// Writes the 16-byte key id of a 32-byte public key to `key_id`: what
/// `Hello`, every COSE header and every receipt name the key by.
///
/// # Safety
/// `public_key` 32 readable bytes; `key_id` 16 writable bytes.
#[no_mangle]
pub unsafe extern "C" fn tessera_key_id(public_key: *const u8, key_id: *mut u8) -> tessera_result {
    guard(|| {
        non_null!(public_key, key_id);
        // SAFETY: 32 readable bytes, by the caller.
        let pk = unsafe { read_array::<32>(public_key) };
        // SAFETY: 16 writable bytes, by the caller.
        unsafe { write_array(key_id, &attest::key_id(&pk)) };
        TESSERA_OK
    })
}

// ----- evidence --------------------------------------------------------------

/// What a device said it is and can do, as its evidence carries it
/// (`tessera_device` is what an agent is configured with).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct tessera_device_info {
    /// Device name, UTF-8, NUL-terminated (at most 64 bytes before the NUL).
    pub name: [c_char; 65],
    /// PCI vendor id.
    pub vendor_id: u32,
    /// Vendor's device id.
    pub device_id: u32,
    /// Driver version, vendor-encoded.
    pub driver_version: u32,
    /// Vulkan API version the device supports.
    pub api_version: u32,
    /// `TESSERA_DEVICE_*`.
    pub device_type: u32,
    /// Feature bits (`PROTOCOL.md`, "Device capabilities").
    pub features: u32,
    /// Bytes of device-local memory.
    pub device_local_bytes: u64,
    /// Bytes of host-visible memory.
    pub host_visible_bytes: u64,
    /// Largest workgroup size in x, y, z.
    pub max_workgroup_size: [u32; 3],
    /// Most workgroups in one dispatch in x, y, z.
    pub max_workgroup_count: [u32; 3],
    /// Most invocations in one workgroup.
    pub max_invocations: u32,
    /// Bytes of workgroup shared memory.
    pub max_shared_memory: u32,
    /// Largest storage buffer binding, in bytes.
    pub max_storage_buffer_range: u64,
    /// Subgroup size.
    pub subgroup_size: u32,
    /// Measured copy bandwidth, MB/s (0: not measured).
    pub copy_mbps: u32,
    /// Measured FMA throughput, MFLOP/s (0: not measured).
    pub fma_mflops: u32,
}

/// Verified device evidence (`tessera_evidence_verify`).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct tessera_evidence_info {
    /// `sizeof(tessera_evidence_info)`: set it before the call.
    pub size: usize,
    /// The challenge the evidence answers.
    pub challenge: [u8; 32],
    /// The device's Ed25519 public key, which signed the evidence: give it
    /// to `tessera_chain_verifier_new` and `tessera_receipt_verify`.
    pub public_key: [u8; 32],
    /// The key's id (`tessera_key_id`).
    pub key_id: [u8; 16],
    /// Agent software version: major, minor, patch.
    pub agent_version: [u16; 3],
    /// Random id the agent chose at its boot.
    pub boot_id: [u8; 16],
    /// When the evidence was made, microseconds in the provider's time base.
    pub issued_at: u64,
    /// The provider's receipt chain when the evidence was made: where a
    /// verifier without history starts its chain verifier.
    pub chain: tessera_chain_state,
    /// What the device is and can do.
    pub device: tessera_device_info,
    /// The provider's X25519 public key for this session, to which
    /// requesters seal jobs; all zeros when it takes no sealed jobs.
    pub enc_key: [u8; 32],
    /// The kind of hardware attestation report the evidence names
    /// (`TESSERA_HARDWARE_REPORT_*`; 0: none).
    pub hardware_report_kind: u16,
    /// SHA-256 of that report's bytes (zeros when there is none).
    pub hardware_report_hash: [u8; 32],
}

fn evidence_info(e: &Evidence) -> tessera_evidence_info {
    let c = &e.capabilities;
    let mut name = [0 as c_char; 65];
    for (dst, src) in name.iter_mut().zip(c.name.as_bytes()) {
        *dst = *src as c_char;
    }
    tessera_evidence_info {
        size: core::mem::size_of::<tessera_evidence_info>(),
        challenge: e.challenge,
        public_key: e.public_key,
        key_id: attest::key_id(&e.public_key),
        agent_version: e.agent_version,
        boot_id: e.boot_id,
        issued_at: e.issued_at,
        chain: e.chain.into(),
        device: tessera_device_info {
            name,
            vendor_id: c.vendor_id,
            device_id: c.device_id,
            driver_version: c.driver_version,
            api_version: c.api_version,
            device_type: u32::from(c.device_type as u8),
            features: c.features,
            device_local_bytes: c.device_local_bytes,
            host_visible_bytes: c.host_visible_bytes,
            max_workgroup_size: c.max_workgroup_size,
            max_workgroup_count: c.max_workgroup_count,
            max_invocations: c.max_invocations,
            max_shared_memory: c.max_shared_memory,
            max_storage_buffer_range: c.max_storage_buffer_range,
            subgroup_size: c.subgroup_size,
            copy_mbps: c.copy_mbps,
            fma_mflops: c.fma_mflops,
        },
        enc_key: e.enc_key,
        hardware_report_kind: e.hardware_report.kind.0,
        hardware_report_hash: e.hardware_report.hash,
    }
}

/// Verifies signed evidence: well-formed, signed by the public key it
/// carries, and answering the 32-byte `challenge` this verifier issued.
/// Writes what it says to `out`. `TESSERA_VERIFY_MALFORMED`,
/// `_BAD_SIGNATURE`, `_UNKNOWN_KEY` (the header names another key than the
/// payload) or `_WRONG_NONCE` (another challenge).
///
/// # Safety
/// `(evidence, len)` readable; `challenge` 32 readable bytes; `out` valid
/// for a write.
#[no_mangle]
pub unsafe extern "C" fn tessera_evidence_verify(
    evidence: *const u8,
    len: usize,
    challenge: *const u8,
    out: *mut tessera_evidence_info,
) -> tessera_result {
    guard(|| {
        non_null!(challenge, out);
        // SAFETY: non-NULL and valid, by the caller.
        if !unsafe { crate::boundary::sized_ok(out) } {
            return TESSERA_INVALID_ARGUMENT;
        }
        // SAFETY: the caller's promise for (evidence, len).
        let Some(signed) = (unsafe { bytes(evidence, len) }) else {
            return TESSERA_NULL_ARGUMENT;
        };
        // SAFETY: 32 readable bytes, by the caller.
        let challenge = unsafe { read_array::<32>(challenge) };
        verified(Evidence::verify(signed, &challenge), |e| {
            // SAFETY: valid for a write, by the caller.
            unsafe { out.write(evidence_info(&e)) }
        })
    })
}

/// Verifies signed evidence's form and signature only, for a third party
/// that did not issue the challenge: `out->challenge` says which challenge it
/// answers, and the caller decides whether that is fresh. Codes as
/// `tessera_evidence_verify`, without `_WRONG_NONCE`.
///
/// # Safety
/// `(evidence, len)` readable; `out` valid for a write.
#[no_mangle]
pub unsafe extern "C" fn tessera_evidence_open(
    evidence: *const u8,
    len: usize,
    out: *mut tessera_evidence_info,
) -> tessera_result {
    guard(|| {
        non_null!(out);
        // SAFETY: non-NULL and valid, by the caller.
        if !unsafe { crate::boundary::sized_ok(out) } {
            return TESSERA_INVALID_ARGUMENT;
        }
        // SAFETY: the caller's promise for (evidence, len).
        let Some(signed) = (unsafe { bytes(evidence, len) }) else {
            return TESSERA_NULL_ARGUMENT;
        };
        verified(Evidence::open(signed), |e| {
            // SAFETY: valid for a write, by the caller.
            unsafe { out.write(evidence_info(&e)) }
        })
    })
}

/// Writes the hash receipts bind evidence by (`evidence_hash`): SHA-256 of
/// the signed bytes, whatever they are (nothing is verified).
///
/// # Safety
/// `(evidence, len)` readable; `out` 32 writable bytes.
#[no_mangle]
pub unsafe extern "C" fn tessera_evidence_hash(
    evidence: *const u8,
    len: usize,
    out: *mut u8,
) -> tessera_result {
    guard(|| {
        non_null!(out);
        // SAFETY: the caller's promise for (evidence, len).
        let Some(signed) = (unsafe { bytes(evidence, len) }) else {
            return TESSERA_NULL_ARGUMENT;
        };
        // SAFETY: 32 writable bytes, by the caller.
        unsafe { write_array(out, &Evidence::hash(signed)) };
        TESSERA_OK
    })
}

// ----- receipts --------------------------------------------------------------

/// A verified receipt (`tessera_receipt_verify`,
/// `tessera_chain_verifier_verify_next`).
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct tessera_receipt_info {
    /// `sizeof(tessera_receipt_info)`: set it before the call.
    pub size: usize,
    /// How the job ended: `TESSERA_RECEIPT_*`.
    pub status: u32,
    /// The job.
    pub job: u64,
    /// The requester's nonce from the assignment.
    pub requester_nonce: [u8; 32],
    /// What was dispatched (`tessera_kernel_hash`).
    pub kernel_hash: [u8; 32],
    /// Merkle root over the input buffers' chunks.
    pub input_root: [u8; 32],
    /// Merkle root over the output buffers' chunks
    /// (`tessera_verify_output_chunk` checks one chunk against it).
    pub output_root: [u8; 32],
    /// Total output bytes.
    pub output_len: u64,
    /// The same on every honest replica (`tessera_result_hash`).
    pub result_hash: [u8; 32],
    /// Unique to the provider's key (`tessera_result_seal`).
    pub result_seal: [u8; 32],
    /// Metered usage.
    pub usage: tessera_usage,
    /// Price charged, in the network's smallest unit.
    pub price: u64,
    /// When the job started, microseconds in the provider's time base.
    pub started_at: u64,
    /// When the job ended, microseconds in the provider's time base.
    pub ended_at: u64,
    /// Hash of the evidence of the session that offered the job
    /// (`tessera_evidence_hash`).
    pub evidence_hash: [u8; 32],
    /// The signing key's id.
    pub key_id: [u8; 16],
    /// Position in the key's receipt chain, from 1.
    pub sequence: u64,
    /// Hash of the key's previous receipt (zeros for the first).
    pub prev_hash: [u8; 32],
}

// SAFETY: #[repr(C)], `size: usize` first.
unsafe impl crate::boundary::SizedOut for tessera_receipt_info {}
// SAFETY: #[repr(C)], `size: usize` first.
unsafe impl crate::boundary::SizedOut for tessera_evidence_info {}

impl From<&Receipt> for tessera_receipt_info {
    fn from(r: &Receipt) -> Self {
        let u: &Usage = &r.usage;
        tessera_receipt_info {
            size: core::mem::size_of::<tessera_receipt_info>(),
            status: u32::from(r.status.code()),
            job: r.job,
            requester_nonce: r.requester_nonce,
            kernel_hash: r.kernel_hash,
            input_root: r.input_root,
            output_root: r.output_root,
            output_len: r.output_len,
            result_hash: r.result_hash,
            result_seal: r.result_seal,
            usage: tessera_usage::from(*u),
            price: r.price,
            started_at: r.started_at,
            ended_at: r.ended_at,
            evidence_hash: r.evidence_hash,
            key_id: r.key_id,
            sequence: r.sequence,
            prev_hash: r.prev_hash,
        }
    }
}

/// Verifies one signed receipt's form and signature under the 32-byte
/// `public_key`, and that its payload names that key; writes it to `out`.
/// Either form verifies: signed alone (`TESSERA_RECEIPT_LEN` bytes) or
/// batched (509 to `TESSERA_RECEIPT_MAX_LEN` bytes: the batch statement's
/// signature, the receipt's place and audit path; `docs/PROTOCOL.md`,
/// "Batched receipts").
/// Its place in the chain is not checked: `tessera_chain_verifier_verify_next`
/// does. `TESSERA_VERIFY_MALFORMED`, `_BAD_SIGNATURE` or `_UNKNOWN_KEY`.
///
/// # Safety
/// `(receipt, len)` readable; `public_key` 32 readable bytes; `out` valid
/// for a write.
#[no_mangle]
pub unsafe extern "C" fn tessera_receipt_verify(
    receipt: *const u8,
    len: usize,
    public_key: *const u8,
    out: *mut tessera_receipt_info,
) -> tessera_result {
    guard(|| {
        non_null!(public_key, out);
        // SAFETY: non-NULL and valid, by the caller.
        if !unsafe { crate::boundary::sized_ok(out) } {
            return TESSERA_INVALID_ARGUMENT;
        }
        // SAFETY: the caller's promise for (receipt, len).
        let Some(signed) = (unsafe { bytes(receipt, len) }) else {
            return TESSERA_NULL_ARGUMENT;
        };
        // SAFETY: 32 readable bytes, by the caller.
        let pk = unsafe { read_array::<32>(public_key) };
        verified(Receipt::verify_any(signed, &pk), |r| {
            // SAFETY: valid for a write, by the caller.
            unsafe { out.write(tessera_receipt_info::from(&r)) }
        })
    })
}

/// Writes the hash the next receipt of the chain names (`prev_hash`): for a
/// receipt signed alone (`TESSERA_RECEIPT_LEN` bytes) SHA-256 of its signed
/// bytes, for a batched one SHA-256 of its 350-byte payload, for any other
/// bytes SHA-256 of them (nothing is verified).
///
/// # Safety
/// `(receipt, len)` readable; `out` 32 writable bytes.
#[no_mangle]
pub unsafe extern "C" fn tessera_receipt_hash(
    receipt: *const u8,
    len: usize,
    out: *mut u8,
) -> tessera_result {
    guard(|| {
        non_null!(out);
        // SAFETY: the caller's promise for (receipt, len).
        let Some(signed) = (unsafe { bytes(receipt, len) }) else {
            return TESSERA_NULL_ARGUMENT;
        };
        // SAFETY: 32 writable bytes, by the caller.
        unsafe { write_array(out, &Receipt::link(signed)) };
        TESSERA_OK
    })
}

/// Writes the result hash, the same on every honest replica of a job:
/// SHA-256 of its domain, the kernel hash, the input and output roots (32
/// bytes each) and the output length.
///
/// # Safety
/// `kernel_hash`, `input_root`, `output_root` 32 readable bytes each; `out`
/// 32 writable bytes.
#[no_mangle]
pub unsafe extern "C" fn tessera_result_hash(
    kernel_hash: *const u8,
    input_root: *const u8,
    output_root: *const u8,
    output_len: u64,
    out: *mut u8,
) -> tessera_result {
    guard(|| {
        non_null!(kernel_hash, input_root, output_root, out);
        // SAFETY: 32 readable bytes each, by the caller.
        let (k, i, o) = unsafe {
            (
                read_array::<32>(kernel_hash),
                read_array::<32>(input_root),
                read_array::<32>(output_root),
            )
        };
        // SAFETY: 32 writable bytes, by the caller.
        unsafe { write_array(out, &attest::result_hash(&k, &i, &o, output_len)) };
        TESSERA_OK
    })
}

/// Writes the result seal, unique to one provider: SHA-256 of its domain, the
/// 32-byte public key, the job and the 32-byte result hash.
///
/// # Safety
/// `public_key`, `result_hash` 32 readable bytes each; `out` 32 writable
/// bytes.
#[no_mangle]
pub unsafe extern "C" fn tessera_result_seal(
    public_key: *const u8,
    job: u64,
    result_hash: *const u8,
    out: *mut u8,
) -> tessera_result {
    guard(|| {
        non_null!(public_key, result_hash, out);
        // SAFETY: 32 readable bytes each, by the caller.
        let (pk, result) = unsafe { (read_array::<32>(public_key), read_array::<32>(result_hash)) };
        // SAFETY: 32 writable bytes, by the caller.
        unsafe { write_array(out, &attest::result_seal(&pk, job, &result)) };
        TESSERA_OK
    })
}

// ----- the chain verifier ----------------------------------------------------

/// Checks one provider key's receipts in order, in either form: signature,
/// key, sequence, previous-receipt hash and (optionally) the requester nonce
/// of each. Keep one per provider key: it checks a batch statement's
/// signature once for the batch's receipts.
pub struct tessera_chain_verifier {
    inner: ReceiptVerifier,
    statement: tessera_core::attest::StatementSlot,
}

/// Makes a chain verifier for the 32-byte `public_key` (from verified
/// evidence), expecting the chain to continue from `chain`: NULL for a key
/// that never signed, the evidence's `chain` for a provider seen the first
/// time, or what `tessera_chain_verifier_chain` exported before.
///
/// # Safety
/// `public_key` 32 readable bytes; `chain` NULL or valid; `out` valid for a
/// write.
#[no_mangle]
pub unsafe extern "C" fn tessera_chain_verifier_new(
    public_key: *const u8,
    chain: *const tessera_chain_state,
    out: *mut *mut tessera_chain_verifier,
) -> tessera_result {
    guard(|| {
        non_null!(public_key, out);
        // SAFETY: 32 readable bytes, by the caller.
        let pk = unsafe { read_array::<32>(public_key) };
        let chain = if chain.is_null() {
            ChainState::default()
        } else {
            // SAFETY: non-NULL and valid, by the caller.
            ChainState::from(unsafe { &*chain })
        };
        new_handle(
            tessera_chain_verifier {
                inner: ReceiptVerifier::new(pk, chain),
                statement: None,
            },
            out,
        )
    })
}

/// Verifies the next receipt of the chain, in either form; on success the
/// chain advances and the receipt is written to `out` (may be NULL). With `expected_nonce` (32
/// bytes; NULL: any) the receipt must carry that requester nonce. Codes as
/// `tessera_receipt_verify`, and `TESSERA_VERIFY_REPLAYED` (a sequence
/// already seen), `_OUT_OF_ORDER` (a receipt is missing), `_BROKEN_CHAIN`
/// (the previous-receipt hash differs), `_WRONG_NONCE`; on error the chain
/// stays where it was.
///
/// # Safety
/// `verifier` a live verifier used by no other thread; `(receipt, len)`
/// readable; `expected_nonce` NULL or 32 readable bytes; `out` NULL or valid
/// for a write.
#[no_mangle]
pub unsafe extern "C" fn tessera_chain_verifier_verify_next(
    verifier: *mut tessera_chain_verifier,
    receipt: *const u8,
    len: usize,
    expected_nonce: *const u8,
    out: *mut tessera_receipt_info,
) -> tessera_result {
    guard(|| {
        non_null!(verifier);
        // SAFETY: valid when non-NULL, by the caller.
        if !out.is_null() && !unsafe { crate::boundary::sized_ok(out) } {
            return TESSERA_INVALID_ARGUMENT;
        }
        // SAFETY: non-NULL, live and not aliased, by the caller.
        let v = unsafe { &mut *verifier };
        // SAFETY: the caller's promise for (receipt, len).
        let Some(signed) = (unsafe { bytes(receipt, len) }) else {
            return TESSERA_NULL_ARGUMENT;
        };
        let nonce = if expected_nonce.is_null() {
            None
        } else {
            // SAFETY: non-NULL, 32 readable bytes, by the caller.
            Some(unsafe { read_array::<32>(expected_nonce) })
        };
        verified(
            v.inner
                .verify_next_any(signed, nonce.as_ref(), &mut v.statement),
            |r| {
                // SAFETY: NULL or valid, by the caller.
                unsafe { crate::boundary::write_opt(out, tessera_receipt_info::from(&r)) }
            },
        )
    })
}

/// Writes where the chain stands after the receipts verified so far: keep it
/// to continue with a new verifier later.
///
/// # Safety
/// `verifier` a live verifier; `out` valid for a write.
#[no_mangle]
pub unsafe extern "C" fn tessera_chain_verifier_chain(
    verifier: *const tessera_chain_verifier,
    out: *mut tessera_chain_state,
) -> tessera_result {
    guard(|| {
        non_null!(verifier, out);
        // SAFETY: non-NULL and live, by the caller; shared access only.
        let chain = unsafe { &*verifier }.inner.chain();
        // SAFETY: valid for a write, by the caller.
        unsafe { out.write(chain.into()) };
        TESSERA_OK
    })
}

/// Frees a chain verifier. NULL is a no-op.
///
/// # Safety
/// `verifier` must be NULL or a live verifier, not used again.
#[no_mangle]
pub unsafe extern "C" fn tessera_chain_verifier_free(verifier: *mut tessera_chain_verifier) {
    // SAFETY: the caller's promise.
    guard(|| unsafe {
        free_handle(verifier);
        TESSERA_OK
    });
}

// ----- Merkle trees ----------------------------------------------------------

/// Writes the Merkle root of `(data, len)` cut into `TESSERA_CHUNK_SIZE`
/// chunks (the last may be shorter; no data: SHA-256 of nothing): the root
/// of a kernel, or of a job's inputs or outputs when they are one buffer.
///
/// # Safety
/// `(data, len)` readable; `out` 32 writable bytes.
#[no_mangle]
pub unsafe extern "C" fn tessera_merkle_root(
    data: *const u8,
    len: usize,
    out: *mut u8,
) -> tessera_result {
    guard(|| {
        non_null!(out);
        // SAFETY: the caller's promise for (data, len).
        let Some(data) = (unsafe { bytes(data, len) }) else {
            return TESSERA_NULL_ARGUMENT;
        };
        // SAFETY: 32 writable bytes, by the caller.
        unsafe { write_array(out, &merkle::root_of(data)) };
        TESSERA_OK
    })
}

/// Writes the Merkle root over `count` buffers, each cut into chunks
/// separately, leaves in buffer order: buffer `i` is `(buffers[i],
/// lens[i])`. A job's input root is over its buffers' initial contents, its
/// output root over its read-back buffers.
///
/// # Safety
/// `buffers` and `lens` `count` valid items each (NULL allowed when `count`
/// is 0); each `(buffers[i], lens[i])` readable; `out` 32 writable bytes.
#[no_mangle]
pub unsafe extern "C" fn tessera_merkle_root_of_buffers(
    buffers: *const *const u8,
    lens: *const usize,
    count: usize,
    out: *mut u8,
) -> tessera_result {
    guard(|| {
        non_null!(out);
        // SAFETY: the caller's promise for both arrays.
        let (ptrs, lens) = match unsafe { (items(buffers, count), items(lens, count)) } {
            (Ok(p), Ok(l)) => (p, l),
            (Err(e), _) | (_, Err(e)) => return e,
        };
        let mut slices = std::vec::Vec::with_capacity(count);
        for (&p, &l) in ptrs.iter().zip(lens) {
            // SAFETY: the caller's promise for (buffers[i], lens[i]).
            let Some(b) = (unsafe { bytes(p, l) }) else {
                return TESSERA_NULL_ARGUMENT;
            };
            slices.push(b);
        }
        // SAFETY: 32 writable bytes, by the caller.
        unsafe { write_array(out, &merkle::root_of_buffers(slices)) };
        TESSERA_OK
    })
}

/// Writes the leaf hash of one chunk: SHA-256(0x00 ‖ chunk).
///
/// # Safety
/// `(chunk, len)` readable; `out` 32 writable bytes.
#[no_mangle]
pub unsafe extern "C" fn tessera_merkle_leaf_hash(
    chunk: *const u8,
    len: usize,
    out: *mut u8,
) -> tessera_result {
    guard(|| {
        non_null!(out);
        // SAFETY: the caller's promise for (chunk, len).
        let Some(chunk) = (unsafe { bytes(chunk, len) }) else {
            return TESSERA_NULL_ARGUMENT;
        };
        // SAFETY: 32 writable bytes, by the caller.
        unsafe { write_array(out, &merkle::leaf_hash(chunk)) };
        TESSERA_OK
    })
}

/// Writes the audit path of leaf `index` in the tree over `leaf_count` leaf
/// hashes (`leaves`: `leaf_count * 32` bytes, from
/// `tessera_merkle_leaf_hash`) into `path`, room for `path_cap` 32-byte
/// hashes, and the number of hashes into `path_len` (also, with
/// `TESSERA_BUFFER_TOO_SMALL`, the number needed; `TESSERA_MAX_PROOF_LEN`
/// is always enough). For a provider or requester holding the whole output
/// to hand a verifier one chunk and its proof; the tree size is
/// `leaf_count`. `TESSERA_INVALID_ARGUMENT` when `index` is not below
/// `leaf_count` or `leaf_count` exceeds 2^32.
///
/// # Safety
/// `leaves` `leaf_count * 32` readable bytes; `path` `path_cap * 32`
/// writable bytes (NULL allowed when `path_cap` is 0); `path_len` valid for
/// a write.
#[no_mangle]
pub unsafe extern "C" fn tessera_merkle_prove(
    leaves: *const u8,
    leaf_count: usize,
    index: u64,
    path: *mut u8,
    path_cap: usize,
    path_len: *mut usize,
) -> tessera_result {
    guard(|| {
        non_null!(path_len);
        if leaf_count as u64 > 1u64 << MAX_PROOF_LEN || index >= leaf_count as u64 {
            return TESSERA_INVALID_ARGUMENT;
        }
        // SAFETY: the caller's promise: `leaf_count` hashes of 32 bytes.
        let leaves = match unsafe { items(leaves.cast::<Digest>(), leaf_count) } {
            Ok(l) => l,
            Err(e) => return e,
        };
        let proof = match merkle::prove(leaves, index) {
            Ok(p) => p,
            Err(_) => return TESSERA_INVALID_ARGUMENT,
        };
        let needed = proof.path.len();
        if path_cap < needed {
            // SAFETY: valid for a write, by the caller.
            unsafe { path_len.write(needed) };
            return TESSERA_BUFFER_TOO_SMALL;
        }
        let flat: std::vec::Vec<u8> = proof.path.iter().flatten().copied().collect();
        // SAFETY: `path_cap * 32` writable bytes at `path`, by the caller;
        // `path_cap >= needed`, so `flat` fits.
        let r = unsafe { copy_out(&flat, path, flat.len(), core::ptr::null_mut()) };
        if r == TESSERA_OK {
            // SAFETY: valid for a write, by the caller.
            unsafe { path_len.write(needed) };
        }
        r
    })
}

/// Writes the number of leaves of a job's output tree: the chunks of every
/// read-back buffer of its layout (`count` buffers, at most
/// `TESSERA_MAX_BUFFERS`), each cut separately. It is the exact tree size
/// `tessera_verify_output_chunk` needs; the layout is bound by the receipt's
/// kernel hash (`tessera_kernel_hash`).
///
/// # Safety
/// `buffers` `count` valid items (NULL allowed when `count` is 0); `out`
/// valid for a write.
#[no_mangle]
pub unsafe extern "C" fn tessera_output_leaf_count(
    buffers: *const tessera_buffer_spec,
    count: usize,
    out: *mut u64,
) -> tessera_result {
    guard(|| {
        non_null!(out);
        // SAFETY: the caller's promise for (buffers, count).
        let layout = match unsafe { layout(buffers, count) } {
            Ok(l) => l,
            Err(e) => return e,
        };
        // SAFETY: valid for a write, by the caller.
        unsafe { out.write(merkle::output_leaf_count(&layout)) };
        TESSERA_OK
    })
}

/// Checks that `(chunk, chunk_len)` is leaf `index` of the output tree whose
/// root a receipt signed (`output_root`, 32 bytes), given its audit path
/// (`path`: `path_len` 32-byte hashes, leaf level first) in a tree of
/// `tree_size` leaves. `leaf_count` is the exact number of leaves of that
/// output (`tessera_output_leaf_count` of the job's layout): a proof for
/// another tree size is refused, since the same path can place a chunk at
/// another index of a tree of another size. `TESSERA_OK` or
/// `TESSERA_VERIFY_CHUNK_PROOF_MISMATCH`; `TESSERA_INVALID_ARGUMENT` when
/// `path_len` exceeds `TESSERA_MAX_PROOF_LEN`.
///
/// # Safety
/// `output_root` 32 readable bytes; `(chunk, chunk_len)` readable; `path`
/// `path_len * 32` readable bytes (NULL allowed when `path_len` is 0).
#[no_mangle]
pub unsafe extern "C" fn tessera_verify_output_chunk(
    output_root: *const u8,
    leaf_count: u64,
    chunk: *const u8,
    chunk_len: usize,
    index: u64,
    tree_size: u64,
    path: *const u8,
    path_len: usize,
) -> tessera_result {
    guard(|| {
        non_null!(output_root);
        if path_len > MAX_PROOF_LEN {
            return TESSERA_INVALID_ARGUMENT;
        }
        // SAFETY: the caller's promise for (chunk, chunk_len).
        let Some(chunk) = (unsafe { bytes(chunk, chunk_len) }) else {
            return TESSERA_NULL_ARGUMENT;
        };
        // SAFETY: the caller's promise: `path_len` hashes of 32 bytes.
        let hashes = match unsafe { items(path.cast::<Digest>(), path_len) } {
            Ok(h) => h,
            Err(e) => return e,
        };
        let Ok(path) = BoundedVec::from_slice(hashes) else {
            return TESSERA_INVALID_ARGUMENT;
        };
        let proof = merkle::Proof {
            index,
            tree_size,
            path,
        };
        // SAFETY: 32 readable bytes, by the caller.
        let root = unsafe { read_array::<32>(output_root) };
        let r =
            attest::verify_output_chunk(&receipt_with_output_root(root), leaf_count, chunk, &proof);
        verified(r, |()| ())
    })
}

/// A receipt that only carries `output_root`: all the core's chunk check
/// reads of a receipt.
fn receipt_with_output_root(output_root: Digest) -> Receipt {
    Receipt {
        status: ReceiptStatus::Completed,
        job: 0,
        requester_nonce: [0; 32],
        kernel_hash: [0; 32],
        input_root: [0; 32],
        output_root,
        output_len: 0,
        result_hash: [0; 32],
        result_seal: [0; 32],
        usage: Usage::default(),
        price: 0,
        started_at: 0,
        ended_at: 0,
        evidence_hash: [0; 32],
        key_id: [0; 16],
        sequence: 0,
        prev_hash: [0; 32],
    }
}

// ----- the kernel hash -------------------------------------------------------

/// Writes the kernel hash a receipt binds: what was dispatched and on what
/// buffers. `spirv_root` is the 32-byte Merkle root of the SPIR-V module
/// (`tessera_merkle_root`); `entry_point` a NUL-terminated UTF-8 name of at
/// most `TESSERA_MAX_ENTRY_POINT` bytes; `specialization` holds
/// `specialization_count` (constant id, value) pairs as `2 *
/// specialization_count` integers (at most `TESSERA_MAX_SPEC_CONSTANTS`
/// pairs); `(push_constants, push_len)` at most
/// `TESSERA_MAX_PUSH_CONSTANTS` bytes; `grid` three workgroup counts;
/// `buffers` the layout, at most `TESSERA_MAX_BUFFERS`. Anything past what a
/// job assignment can carry is `TESSERA_INVALID_ARGUMENT`.
///
/// # Safety
/// `spirv_root` 32 readable bytes; `entry_point` NUL-terminated;
/// `specialization` `2 * specialization_count` readable integers,
/// `push_constants` `push_len` readable bytes and `buffers` `buffer_count`
/// valid items (each NULL allowed when its count is 0); `grid` 3 readable
/// integers; `out` 32 writable bytes.
#[no_mangle]
pub unsafe extern "C" fn tessera_kernel_hash(
    spirv_root: *const u8,
    entry_point: *const c_char,
    specialization: *const u32,
    specialization_count: usize,
    push_constants: *const u8,
    push_len: usize,
    grid: *const u32,
    buffers: *const tessera_buffer_spec,
    buffer_count: usize,
    out: *mut u8,
) -> tessera_result {
    guard(|| {
        non_null!(spirv_root, entry_point, grid, out);
        if specialization_count > MAX_SPEC_CONSTANTS || push_len > MAX_PUSH_CONSTANTS {
            return TESSERA_INVALID_ARGUMENT;
        }
        // SAFETY: the caller's promise for (buffers, buffer_count).
        let layout = match unsafe { layout(buffers, buffer_count) } {
            Ok(l) => l,
            Err(e) => return e,
        };
        // SAFETY: the caller's promise: 2 * count integers.
        let raw = match unsafe { items(specialization, 2 * specialization_count) } {
            Ok(s) => s,
            Err(e) => return e,
        };
        let mut spec = [(0u32, 0u32); MAX_SPEC_CONSTANTS];
        for (pair, s) in raw.chunks_exact(2).zip(spec.iter_mut()) {
            *s = (pair[0], pair[1]);
        }
        // SAFETY: the caller's promise for (push_constants, push_len).
        let Some(push) = (unsafe { bytes(push_constants, push_len) }) else {
            return TESSERA_NULL_ARGUMENT;
        };
        // SAFETY: `grid` is non-NULL with 3 readable integers, by the caller.
        let grid = match unsafe { items(grid, 3) } {
            Ok(g) => [g[0], g[1], g[2]],
            Err(e) => return e,
        };
        // SAFETY: non-NULL and NUL-terminated, by the caller.
        let entry = match unsafe { bounded_str(entry_point, MAX_ENTRY_POINT) } {
            Ok(s) => s,
            Err(e) => return e,
        };
        // SAFETY: non-NULL, 32 readable bytes, by the caller.
        let root = unsafe { read_array::<32>(spirv_root) };
        let hash = attest::kernel_hash(
            &root,
            entry,
            &spec[..specialization_count],
            push,
            grid,
            &layout,
        );
        // SAFETY: 32 writable bytes, by the caller.
        unsafe { write_array(out, &hash) };
        TESSERA_OK
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::ptr::{null, null_mut};
    use std::vec::Vec;
    use tessera_core::attest::{DeviceCapabilities, DeviceType, EVIDENCE_LEN, RECEIPT_LEN};
    use tessera_core::bounded::BoundedString;
    use tessera_core::limits::CHUNK_SIZE;
    use tessera_core::wire::{FailReason, JobAssign, KernelSpec};

    const NOT_WRITTEN: u8 = 0xAA;

    fn signer(b: u8) -> Ed25519Signer {
        Ed25519Signer::from_seed(&[b; 32]).unwrap()
    }

    fn sample_evidence(public_key: [u8; 32], challenge: [u8; 32], name: &str) -> Evidence {
        let mut n = BoundedString::new();
        n.push_str(name).unwrap();
        Evidence {
            challenge,
            public_key,
            agent_version: [1, 2, 3],
            boot_id: core::array::from_fn(|i| 0xB0 + i as u8),
            issued_at: 1_700_000_000_000_123,
            chain: ChainState {
                next_sequence: 9,
                prev_hash: [0x5A; 32],
            },
            capabilities: DeviceCapabilities {
                name: n,
                vendor_id: 0x10DE,
                device_id: 0x2684,
                driver_version: 0x0220_0000,
                api_version: (1 << 22) | (3 << 12),
                device_type: DeviceType::DiscreteGpu,
                features: 0b1011,
                device_local_bytes: 24 << 30,
                host_visible_bytes: 256 << 20,
                max_workgroup_size: [1024, 1024, 64],
                max_workgroup_count: [65535, 65534, 65533],
                max_invocations: 1024,
                max_shared_memory: 49152,
                max_storage_buffer_range: 1 << 32,
                subgroup_size: 32,
                copy_mbps: 900_000,
                fma_mflops: 80_000_000,
            },
            enc_key: [0xE2; 32],
            hardware_report: tessera_core::attest::HardwareReport {
                kind: tessera_core::attest::HardwareReportKind::TPM2_QUOTE,
                hash: [0x42; 32],
            },
        }
    }

    fn sign_evidence(e: &Evidence, s: &mut Ed25519Signer) -> Vec<u8> {
        let mut out = [0u8; EVIDENCE_LEN];
        let n = e.sign(s, &mut out).unwrap();
        out[..n].to_vec()
    }

    fn layout_of(job: u64) -> Vec<BufferSpec> {
        std::vec![
            BufferSpec {
                binding: 0,
                len: 20_000,
                init_len: 20_000,
                readback: false,
            },
            BufferSpec {
                binding: 2,
                len: 9000 + job,
                init_len: 0,
                readback: true,
            },
        ]
    }

    fn sample_receipt(s: &Ed25519Signer, chain: ChainState, job: u64) -> Receipt {
        let kernel = attest::kernel_hash(
            &[0x11; 32],
            "main",
            &[(0, 64)],
            &[1, 2, 3, 4],
            [16, 1, 1],
            &layout_of(job),
        );
        let input_root = merkle::root_of(&[5u8; 20_000]);
        let output_root = merkle::root_of(&[6u8; 9000]);
        let result = attest::result_hash(&kernel, &input_root, &output_root, 9000);
        Receipt {
            status: ReceiptStatus::Completed,
            job,
            requester_nonce: [job as u8; 32],
            kernel_hash: kernel,
            input_root,
            output_root,
            output_len: 9000,
            result_hash: result,
            result_seal: attest::result_seal(&s.public_key(), job, &result),
            usage: Usage {
                gpu_time_us: 1234,
                dispatches: 2,
                bytes_in: 20_000,
                bytes_out: 9000,
            },
            price: 42,
            started_at: 1_000_000,
            ended_at: 1_001_234,
            evidence_hash: [0xEE; 32],
            key_id: s.key_id(),
            sequence: chain.next_sequence,
            prev_hash: chain.prev_hash,
        }
    }

    fn sign_receipt(r: &Receipt, s: &mut Ed25519Signer) -> [u8; RECEIPT_LEN] {
        let mut out = [0u8; RECEIPT_LEN];
        assert_eq!(r.sign(s, &mut out).unwrap(), RECEIPT_LEN);
        out
    }

    /// Three receipts of one key, in chain order.
    fn chain_of_three(s: &mut Ed25519Signer) -> [[u8; RECEIPT_LEN]; 3] {
        let mut chain = ChainState::default();
        core::array::from_fn(|i| {
            let signed = sign_receipt(&sample_receipt(s, chain, i as u64 + 1), s);
            chain.advance(Receipt::hash(&signed));
            signed
        })
    }

    /// A value of `T` (plain integers and arrays only) with every byte set
    /// to [`NOT_WRITTEN`].
    fn sentinel<T: Copy>() -> T {
        let mut v = core::mem::MaybeUninit::<T>::uninit();
        // SAFETY: every field of the structs used here is an integer or an
        // array of integers, valid for any bytes.
        unsafe {
            v.as_mut_ptr().write_bytes(NOT_WRITTEN, 1);
            v.assume_init()
        }
    }

    /// The evidence a C caller was given, read back into the core's type.
    fn evidence_from_info(i: &tessera_evidence_info) -> Evidence {
        let d = &i.device;
        let raw: Vec<u8> = d.name.iter().map(|&c| c as u8).collect();
        let len = raw.iter().position(|&b| b == 0).expect("NUL-terminated");
        let mut name = BoundedString::new();
        name.push_str(core::str::from_utf8(&raw[..len]).unwrap())
            .unwrap();
        let device_type = match d.device_type {
            crate::agent::TESSERA_DEVICE_OTHER => DeviceType::Other,
            crate::agent::TESSERA_DEVICE_INTEGRATED_GPU => DeviceType::IntegratedGpu,
            crate::agent::TESSERA_DEVICE_DISCRETE_GPU => DeviceType::DiscreteGpu,
            crate::agent::TESSERA_DEVICE_VIRTUAL_GPU => DeviceType::VirtualGpu,
            crate::agent::TESSERA_DEVICE_CPU => DeviceType::Cpu,
            other => panic!("device type {other}"),
        };
        Evidence {
            challenge: i.challenge,
            public_key: i.public_key,
            agent_version: i.agent_version,
            boot_id: i.boot_id,
            issued_at: i.issued_at,
            chain: ChainState::from(&i.chain),
            capabilities: DeviceCapabilities {
                name,
                vendor_id: d.vendor_id,
                device_id: d.device_id,
                driver_version: d.driver_version,
                api_version: d.api_version,
                device_type,
                features: d.features,
                device_local_bytes: d.device_local_bytes,
                host_visible_bytes: d.host_visible_bytes,
                max_workgroup_size: d.max_workgroup_size,
                max_workgroup_count: d.max_workgroup_count,
                max_invocations: d.max_invocations,
                max_shared_memory: d.max_shared_memory,
                max_storage_buffer_range: d.max_storage_buffer_range,
                subgroup_size: d.subgroup_size,
                copy_mbps: d.copy_mbps,
                fma_mflops: d.fma_mflops,
            },
            enc_key: i.enc_key,
            hardware_report: tessera_core::attest::HardwareReport {
                kind: tessera_core::attest::HardwareReportKind(i.hardware_report_kind),
                hash: i.hardware_report_hash,
            },
        }
    }

    /// The receipt a C caller was given, read back into the core's type.
    fn receipt_from_info(i: &tessera_receipt_info) -> Receipt {
        Receipt {
            status: ReceiptStatus::from_code(u8::try_from(i.status).unwrap()).unwrap(),
            job: i.job,
            requester_nonce: i.requester_nonce,
            kernel_hash: i.kernel_hash,
            input_root: i.input_root,
            output_root: i.output_root,
            output_len: i.output_len,
            result_hash: i.result_hash,
            result_seal: i.result_seal,
            usage: Usage::from(&i.usage),
            price: i.price,
            started_at: i.started_at,
            ended_at: i.ended_at,
            evidence_hash: i.evidence_hash,
            key_id: i.key_id,
            sequence: i.sequence,
            prev_hash: i.prev_hash,
        }
    }

    fn c_spec(b: &BufferSpec) -> tessera_buffer_spec {
        tessera_buffer_spec {
            binding: b.binding,
            len: b.len,
            init_len: b.init_len,
            readback: b.readback.into(),
        }
    }

    // ----- constants ---------------------------------------------------------

    #[test]
    fn header_constants_are_the_core_ones() {
        assert_eq!(TESSERA_EVIDENCE_LEN, attest::EVIDENCE_LEN);
        assert_eq!(TESSERA_MAX_PROOF_LEN, MAX_PROOF_LEN);
        assert_eq!(TESSERA_MAX_ENTRY_POINT, MAX_ENTRY_POINT);
        assert_eq!(TESSERA_MAX_SPEC_CONSTANTS, MAX_SPEC_CONSTANTS);
        assert_eq!(TESSERA_MAX_PUSH_CONSTANTS, MAX_PUSH_CONSTANTS);
        assert_eq!(
            TESSERA_RECEIPT_COMPLETED,
            u32::from(ReceiptStatus::Completed.code())
        );
        let failures = [
            (TESSERA_RECEIPT_KERNEL_REJECTED, FailReason::KernelRejected),
            (TESSERA_RECEIPT_TIMEOUT, FailReason::Timeout),
            (
                TESSERA_RECEIPT_DEADLINE_EXCEEDED,
                FailReason::DeadlineExceeded,
            ),
            (TESSERA_RECEIPT_DEVICE_LOST, FailReason::DeviceLost),
            (TESSERA_RECEIPT_OUT_OF_MEMORY, FailReason::OutOfMemory),
            (TESSERA_RECEIPT_INPUT_INTEGRITY, FailReason::InputIntegrity),
            (TESSERA_RECEIPT_HOST, FailReason::Host),
        ];
        for (ours, reason) in failures {
            assert_eq!(ours, u32::from(ReceiptStatus::Failed(reason).code()));
            // The failure's result code is the wire fail reason's.
            assert!(
                tessera_core::codes::name(TESSERA_FAIL_BASE + ours).is_some(),
                "{reason:?}"
            );
        }
        // Every status code the core knows has its constant.
        let known = (0..=u8::MAX)
            .filter(|c| ReceiptStatus::from_code(*c).is_some())
            .count();
        assert_eq!(known, 1 + failures.len());
    }

    // ----- keys --------------------------------------------------------------

    #[test]
    fn a_generated_key_is_a_pkcs8_document_the_core_loads() {
        let mut doc = [0u8; 100];
        let mut written = 0usize;
        // SAFETY (all calls in these tests): buffers and pointers as the
        // functions' contracts say, or NULL where the test says so.
        let r = unsafe { tessera_key_generate(doc.as_mut_ptr(), doc.len(), &mut written) };
        assert_eq!(r, TESSERA_OK);
        assert_eq!(written, TESSERA_KEY_PKCS8_LEN);
        let key = Ed25519Signer::from_pkcs8(&doc[..written]).unwrap();
        assert!(doc[written..].iter().all(|&b| b == 0));

        let mut pk = [0u8; 32];
        let r = unsafe { tessera_key_public(doc.as_ptr(), written, pk.as_mut_ptr()) };
        assert_eq!((r, pk), (TESSERA_OK, key.public_key()));
        let mut id = [0u8; 16];
        assert_eq!(
            unsafe { tessera_key_id(pk.as_ptr(), id.as_mut_ptr()) },
            TESSERA_OK
        );
        assert_eq!(id, key.key_id());
        assert_eq!(id, attest::key_id(&pk));

        // A signer made from the document has the same key.
        let mut signer = null_mut();
        let r =
            unsafe { crate::agent::tessera_signer_from_pkcs8(doc.as_ptr(), written, &mut signer) };
        assert_eq!(r, TESSERA_OK);
        let mut from_signer = [0u8; 32];
        unsafe { crate::agent::tessera_signer_public_key(signer, from_signer.as_mut_ptr()) };
        assert_eq!(from_signer, pk);
        unsafe { crate::agent::tessera_signer_free(signer) };

        // Two keys differ; `written` may be NULL.
        let mut other = [0u8; TESSERA_KEY_PKCS8_LEN];
        let r = unsafe { tessera_key_generate(other.as_mut_ptr(), other.len(), null_mut()) };
        assert_eq!(r, TESSERA_OK);
        assert_ne!(other[..], doc[..written]);
    }

    #[test]
    fn key_generation_says_how_much_room_it_needs() {
        let mut small = [NOT_WRITTEN; TESSERA_KEY_PKCS8_LEN - 1];
        let mut written = 0usize;
        let r = unsafe { tessera_key_generate(small.as_mut_ptr(), small.len(), &mut written) };
        assert_eq!(
            (r, written),
            (TESSERA_BUFFER_TOO_SMALL, TESSERA_KEY_PKCS8_LEN)
        );
        assert!(small.iter().all(|&b| b == NOT_WRITTEN));
        // The size query: no buffer at all.
        written = 0;
        let r = unsafe { tessera_key_generate(null_mut(), 0, &mut written) };
        assert_eq!(
            (r, written),
            (TESSERA_BUFFER_TOO_SMALL, TESSERA_KEY_PKCS8_LEN)
        );
        let r = unsafe { tessera_key_generate(null_mut(), 0, null_mut()) };
        assert_eq!(r, TESSERA_BUFFER_TOO_SMALL);
        // NULL with a length is a NULL argument.
        let r = unsafe { tessera_key_generate(null_mut(), 100, null_mut()) };
        assert_eq!(r, TESSERA_NULL_ARGUMENT);
    }

    #[test]
    fn key_functions_refuse_null_and_garbage() {
        let mut pk = [NOT_WRITTEN; 32];
        let garbage = [0u8; 85];
        let r = unsafe { tessera_key_public(garbage.as_ptr(), garbage.len(), pk.as_mut_ptr()) };
        assert_eq!(r, TESSERA_KEY_REJECTED);
        let r = unsafe { tessera_key_public(null(), 0, pk.as_mut_ptr()) };
        assert_eq!(r, TESSERA_KEY_REJECTED);
        let r = unsafe { tessera_key_public(null(), 83, pk.as_mut_ptr()) };
        assert_eq!(r, TESSERA_NULL_ARGUMENT);
        let r = unsafe { tessera_key_public(garbage.as_ptr(), garbage.len(), null_mut()) };
        assert_eq!(r, TESSERA_NULL_ARGUMENT);
        assert_eq!(pk, [NOT_WRITTEN; 32]);
        let mut id = [0u8; 16];
        assert_eq!(
            unsafe { tessera_key_id(null(), id.as_mut_ptr()) },
            TESSERA_NULL_ARGUMENT
        );
        assert_eq!(
            unsafe { tessera_key_id(pk.as_ptr(), null_mut()) },
            TESSERA_NULL_ARGUMENT
        );
    }

    // ----- evidence ----------------------------------------------------------

    #[test]
    fn verified_evidence_reads_as_the_core_reads_it() {
        let mut s = signer(1);
        let challenge = [0xC1; 32];
        for name in [
            "Test GPU 9000",
            "",
            "0123456789012345678901234567890123456789012345678901234567890123",
            "Grafikkarte für Übungen",
        ] {
            let e = sample_evidence(s.public_key(), challenge, name);
            let signed = sign_evidence(&e, &mut s);
            let mut info = sentinel::<tessera_evidence_info>();
            let r = unsafe {
                tessera_evidence_verify(
                    signed.as_ptr(),
                    signed.len(),
                    challenge.as_ptr(),
                    &mut info,
                )
            };
            assert_eq!(r, TESSERA_OK, "{name}");
            let core = Evidence::verify(&signed, &challenge).unwrap();
            let got = evidence_from_info(&info);
            assert_eq!(got, core);
            assert_eq!(got.encode_payload(), core.encode_payload());
            assert_eq!(info.key_id, s.key_id());
            // The name's unused bytes are zero, the last always.
            assert!(info.device.name[name.len()..].iter().all(|&c| c == 0));

            let mut opened = sentinel::<tessera_evidence_info>();
            let r = unsafe { tessera_evidence_open(signed.as_ptr(), signed.len(), &mut opened) };
            assert_eq!(r, TESSERA_OK);
            assert_eq!(evidence_from_info(&opened), core);
            assert_eq!(opened.challenge, challenge);

            let mut hash = [0u8; 32];
            let r =
                unsafe { tessera_evidence_hash(signed.as_ptr(), signed.len(), hash.as_mut_ptr()) };
            assert_eq!((r, hash), (TESSERA_OK, Evidence::hash(&signed)));
        }
    }

    #[test]
    fn evidence_failures_are_the_core_codes_and_write_nothing() {
        let mut s = signer(1);
        let challenge = [0xC1; 32];
        let e = sample_evidence(s.public_key(), challenge, "GPU");
        let good = sign_evidence(&e, &mut s);
        let mut flipped_sig = good.clone();
        flipped_sig[EVIDENCE_LEN - 1] ^= 1;
        let mut flipped_key = good.clone();
        flipped_key[28 + 33] ^= 1;
        let by_other = sign_evidence(&e, &mut signer(2));
        let receipt = sign_receipt(
            &sample_receipt(&s, ChainState::default(), 1),
            &mut signer(1),
        );
        let cases: [(&[u8], [u8; 32], VerifyError); 6] = [
            (&good, [0xC2; 32], VerifyError::WrongNonce),
            (&flipped_sig, challenge, VerifyError::BadSignature),
            (&flipped_key, challenge, VerifyError::UnknownKey),
            (&by_other, challenge, VerifyError::UnknownKey),
            (&good[..EVIDENCE_LEN - 1], challenge, VerifyError::Malformed),
            (&receipt, challenge, VerifyError::Malformed),
        ];
        for (bytes, ch, err) in cases {
            assert_eq!(Evidence::verify(bytes, &ch), Err(err));
            let mut info = sentinel::<tessera_evidence_info>();
            let r = unsafe {
                tessera_evidence_verify(bytes.as_ptr(), bytes.len(), ch.as_ptr(), &mut info)
            };
            assert_eq!(r, err.code(), "{err:?}");
            assert!((401..=408).contains(&r));
            assert_eq!(info.public_key, [NOT_WRITTEN; 32]);
            assert_eq!(info.issued_at, u64::from_ne_bytes([NOT_WRITTEN; 8]));
            assert_eq!(info.device.name[64] as u8, NOT_WRITTEN);
            let r = unsafe { tessera_evidence_open(bytes.as_ptr(), bytes.len(), &mut info) };
            let expected = Evidence::open(bytes)
                .map(|_| TESSERA_OK)
                .unwrap_or_else(|e| e.code());
            assert_eq!(r, expected);
        }
        // Nothing at all is malformed, not a crash.
        let mut info = sentinel::<tessera_evidence_info>();
        let r = unsafe { tessera_evidence_verify(null(), 0, challenge.as_ptr(), &mut info) };
        assert_eq!(r, TESSERA_VERIFY_MALFORMED);
        let r = unsafe { tessera_evidence_open(null(), 0, &mut info) };
        assert_eq!(r, TESSERA_VERIFY_MALFORMED);
        // NULL pointers.
        let p = good.as_ptr();
        let n = good.len();
        let c = challenge.as_ptr();
        for r in unsafe {
            [
                tessera_evidence_verify(null(), n, c, &mut info),
                tessera_evidence_verify(p, n, null(), &mut info),
                tessera_evidence_verify(p, n, c, null_mut()),
                tessera_evidence_open(null(), n, &mut info),
                tessera_evidence_open(p, n, null_mut()),
                tessera_evidence_hash(null(), n, [0u8; 32].as_mut_ptr()),
                tessera_evidence_hash(p, n, null_mut()),
            ]
        } {
            assert_eq!(r, TESSERA_NULL_ARGUMENT);
        }
        assert_eq!(info.public_key, [NOT_WRITTEN; 32]);
        // The hash of nothing is SHA-256 of nothing.
        let mut hash = [0u8; 32];
        assert_eq!(
            unsafe { tessera_evidence_hash(null(), 0, hash.as_mut_ptr()) },
            TESSERA_OK
        );
        assert_eq!(hash, attest::sha256(b""));
    }

    // ----- receipts ----------------------------------------------------------

    #[test]
    fn verified_receipts_read_as_the_core_reads_them() {
        let mut s = signer(3);
        let pk = s.public_key();
        let statuses = [ReceiptStatus::Completed].into_iter().chain(
            [
                FailReason::KernelRejected,
                FailReason::Timeout,
                FailReason::DeadlineExceeded,
                FailReason::DeviceLost,
                FailReason::OutOfMemory,
                FailReason::InputIntegrity,
                FailReason::Host,
            ]
            .map(ReceiptStatus::Failed),
        );
        for status in statuses {
            let mut r = sample_receipt(&s, ChainState::default(), 7);
            r.status = status;
            let signed = sign_receipt(&r, &mut s);
            let mut info = sentinel::<tessera_receipt_info>();
            let code = unsafe {
                tessera_receipt_verify(signed.as_ptr(), signed.len(), pk.as_ptr(), &mut info)
            };
            assert_eq!(code, TESSERA_OK);
            assert_eq!(info.status, u32::from(status.code()));
            let got = receipt_from_info(&info);
            assert_eq!(got, Receipt::verify(&signed, &pk).unwrap());
            assert_eq!(got.encode_payload(), r.encode_payload());

            let mut hash = [0u8; 32];
            let code =
                unsafe { tessera_receipt_hash(signed.as_ptr(), signed.len(), hash.as_mut_ptr()) };
            assert_eq!((code, hash), (TESSERA_OK, Receipt::hash(&signed)));
        }
    }

    #[test]
    fn receipt_failures_are_the_core_codes_and_write_nothing() {
        let mut s = signer(3);
        let pk = s.public_key();
        let good = sign_receipt(&sample_receipt(&s, ChainState::default(), 1), &mut s);
        let mut flipped = good;
        flipped[100] ^= 1;
        let evidence = sign_evidence(&sample_evidence(pk, [0; 32], "x"), &mut s);
        let other = signer(4).public_key();
        let cases: [(&[u8], [u8; 32], VerifyError); 4] = [
            (&flipped, pk, VerifyError::BadSignature),
            (&good, other, VerifyError::UnknownKey),
            (&good[..RECEIPT_LEN - 1], pk, VerifyError::Malformed),
            (&evidence, pk, VerifyError::Malformed),
        ];
        for (bytes, key, err) in cases {
            assert_eq!(Receipt::verify(bytes, &key), Err(err));
            let mut info = sentinel::<tessera_receipt_info>();
            let r = unsafe {
                tessera_receipt_verify(bytes.as_ptr(), bytes.len(), key.as_ptr(), &mut info)
            };
            assert_eq!(r, err.code(), "{err:?}");
            assert_eq!(info.job, u64::from_ne_bytes([NOT_WRITTEN; 8]));
            assert_eq!(info.prev_hash, [NOT_WRITTEN; 32]);
        }
        let mut info = sentinel::<tessera_receipt_info>();
        assert_eq!(
            unsafe { tessera_receipt_verify(null(), 0, pk.as_ptr(), &mut info) },
            TESSERA_VERIFY_MALFORMED
        );
        let p = good.as_ptr();
        let n = good.len();
        let h = [0u8; 32];
        for r in unsafe {
            [
                tessera_receipt_verify(null(), n, pk.as_ptr(), &mut info),
                tessera_receipt_verify(p, n, null(), &mut info),
                tessera_receipt_verify(p, n, pk.as_ptr(), null_mut()),
                tessera_receipt_hash(null(), n, [0u8; 32].as_mut_ptr()),
                tessera_receipt_hash(p, n, null_mut()),
                tessera_result_hash(null(), h.as_ptr(), h.as_ptr(), 0, [0u8; 32].as_mut_ptr()),
                tessera_result_hash(h.as_ptr(), null(), h.as_ptr(), 0, [0u8; 32].as_mut_ptr()),
                tessera_result_hash(h.as_ptr(), h.as_ptr(), null(), 0, [0u8; 32].as_mut_ptr()),
                tessera_result_hash(h.as_ptr(), h.as_ptr(), h.as_ptr(), 0, null_mut()),
                tessera_result_seal(null(), 1, h.as_ptr(), [0u8; 32].as_mut_ptr()),
                tessera_result_seal(h.as_ptr(), 1, null(), [0u8; 32].as_mut_ptr()),
                tessera_result_seal(h.as_ptr(), 1, h.as_ptr(), null_mut()),
            ]
        } {
            assert_eq!(r, TESSERA_NULL_ARGUMENT);
        }
        assert_eq!(info.job, u64::from_ne_bytes([NOT_WRITTEN; 8]));
    }

    #[test]
    fn result_hash_and_seal_are_the_core_ones() {
        let s = signer(5);
        let r = sample_receipt(&s, ChainState::default(), 3);
        let mut hash = [0u8; 32];
        let code = unsafe {
            tessera_result_hash(
                r.kernel_hash.as_ptr(),
                r.input_root.as_ptr(),
                r.output_root.as_ptr(),
                r.output_len,
                hash.as_mut_ptr(),
            )
        };
        assert_eq!((code, hash), (TESSERA_OK, r.result_hash));
        let mut seal = [0u8; 32];
        let code = unsafe {
            tessera_result_seal(
                s.public_key().as_ptr(),
                r.job,
                hash.as_ptr(),
                seal.as_mut_ptr(),
            )
        };
        assert_eq!((code, seal), (TESSERA_OK, r.result_seal));
    }

    // ----- the chain verifier ------------------------------------------------

    /// A chain verifier for `pk` at `chain` (NULL: a new key).
    fn verifier(pk: &[u8; 32], chain: Option<&tessera_chain_state>) -> *mut tessera_chain_verifier {
        let mut v = null_mut();
        let c = chain.map_or(null(), |c| c as *const _);
        assert_eq!(
            unsafe { tessera_chain_verifier_new(pk.as_ptr(), c, &mut v) },
            TESSERA_OK
        );
        assert!(!v.is_null());
        v
    }

    fn chain_of(v: *const tessera_chain_verifier) -> ChainState {
        let mut c = tessera_chain_state {
            next_sequence: 0,
            prev_hash: [0; 32],
        };
        assert_eq!(
            unsafe { tessera_chain_verifier_chain(v, &mut c) },
            TESSERA_OK
        );
        ChainState::from(&c)
    }

    #[test]
    fn a_chain_verifies_in_order_as_the_core_verifies_it() {
        let mut s = signer(1);
        let pk = s.public_key();
        let rs = chain_of_three(&mut s);
        let v = verifier(&pk, None);
        let mut core = ReceiptVerifier::new(pk, ChainState::default());
        assert_eq!(chain_of(v), core.chain());
        for (i, r) in rs.iter().enumerate() {
            let nonce = [i as u8 + 1; 32];
            let mut info = sentinel::<tessera_receipt_info>();
            let code = unsafe {
                tessera_chain_verifier_verify_next(
                    v,
                    r.as_ptr(),
                    r.len(),
                    nonce.as_ptr(),
                    &mut info,
                )
            };
            assert_eq!(code, TESSERA_OK);
            assert_eq!(
                receipt_from_info(&info),
                core.verify_next(r, Some(&nonce)).unwrap()
            );
            assert_eq!(chain_of(v), core.chain());
            assert_eq!(chain_of(v).prev_hash, Receipt::hash(r));
        }
        unsafe { tessera_chain_verifier_free(v) };

        // Picked up where another left off, any nonce, no output.
        let at = tessera_chain_state {
            next_sequence: 3,
            prev_hash: Receipt::hash(&rs[1]),
        };
        let v = verifier(&pk, Some(&at));
        let code = unsafe {
            tessera_chain_verifier_verify_next(v, rs[2].as_ptr(), rs[2].len(), null(), null_mut())
        };
        assert_eq!(code, TESSERA_OK);
        assert_eq!(chain_of(v).next_sequence, 4);
        unsafe { tessera_chain_verifier_free(v) };
        unsafe { tessera_chain_verifier_free(null_mut()) };
    }

    /// Receipts signed alone and in a batch make one chain through the C
    /// ABI: each verifies alone, the chain verifier takes them in order, and
    /// `tessera_receipt_hash` gives the link the next one names.
    #[test]
    fn batched_receipts_verify_and_chain_through_the_c_abi() {
        use tessera_core::attest::{batch_leaf, batched_link, sign_batch, write_batched};
        use tessera_core::attest::{BatchPath, BATCH_LEN, MAX_RECEIPT_LEN};
        let mut s = signer(3);
        let pk = s.public_key();
        let first = sign_receipt(&sample_receipt(&s, ChainState::default(), 1), &mut s);
        let mut chain = ChainState::default();
        chain.advance(Receipt::hash(&first));
        let mut payloads = Vec::new();
        for job in 2..=4 {
            let p = sample_receipt(&s, chain, job).encode_payload();
            chain.advance(batched_link(&p));
            payloads.push(p);
        }
        let leaves: Vec<_> = payloads.iter().map(batch_leaf).collect();
        let mut paths = vec![BatchPath::new(); 3];
        let mut statement = [0u8; BATCH_LEN];
        sign_batch(&mut s, 2, &leaves, &mut paths, &mut statement).unwrap();
        let mut all = vec![first.to_vec()];
        for (i, p) in payloads.iter().enumerate() {
            let mut out = [0u8; MAX_RECEIPT_LEN];
            let n = write_batched(&statement, i as u32, &paths[i], p, &mut out).unwrap();
            all.push(out[..n].to_vec());
        }
        let v = verifier(&pk, None);
        for (i, r) in all.iter().enumerate() {
            let mut info = sentinel::<tessera_receipt_info>();
            info.size = size_of::<tessera_receipt_info>();
            let code =
                unsafe { tessera_receipt_verify(r.as_ptr(), r.len(), pk.as_ptr(), &mut info) };
            assert_eq!(code, TESSERA_OK, "receipt {i} alone");
            assert_eq!(info.sequence, i as u64 + 1);
            let code = unsafe {
                tessera_chain_verifier_verify_next(v, r.as_ptr(), r.len(), null(), null_mut())
            };
            assert_eq!(code, TESSERA_OK, "receipt {i} in the chain");
            let mut link = [0u8; 32];
            assert_eq!(
                unsafe { tessera_receipt_hash(r.as_ptr(), r.len(), link.as_mut_ptr()) },
                TESSERA_OK
            );
            assert_eq!(chain_of(v).prev_hash, link);
        }
        assert_eq!(chain_of(v), chain);
        // A batched receipt whose payload changed is refused, and the chain
        // stays.
        let mut bad = all[3].clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        let code = unsafe {
            tessera_receipt_verify(
                bad.as_ptr(),
                bad.len(),
                pk.as_ptr(),
                &mut tessera_receipt_info {
                    size: size_of::<tessera_receipt_info>(),
                    ..Default::default()
                },
            )
        };
        assert_ne!(code, TESSERA_OK);
        unsafe { tessera_chain_verifier_free(v) };
    }

    #[test]
    fn chain_failures_are_the_core_codes_and_do_not_advance() {
        let mut s = signer(1);
        let pk = s.public_key();
        let rs = chain_of_three(&mut s);
        let forked = sign_receipt(
            &sample_receipt(
                &s,
                ChainState {
                    next_sequence: 2,
                    prev_hash: [0x99; 32],
                },
                2,
            ),
            &mut s,
        );
        let mut flipped = rs[1];
        flipped[100] ^= 0x80;
        let v = verifier(&pk, None);
        let mut core = ReceiptVerifier::new(pk, ChainState::default());
        let mut step =
            |bytes: &[u8], nonce: Option<[u8; 32]>, expected: Result<(), VerifyError>| {
                let before = chain_of(v);
                let mut info = sentinel::<tessera_receipt_info>();
                let n = nonce.as_ref().map_or(null(), |n| n.as_ptr());
                let code = unsafe {
                    tessera_chain_verifier_verify_next(v, bytes.as_ptr(), bytes.len(), n, &mut info)
                };
                let core_result = core.verify_next(bytes, nonce.as_ref()).map(|_| ());
                assert_eq!(core_result, expected);
                match expected {
                    Ok(()) => assert_eq!(code, TESSERA_OK),
                    Err(e) => {
                        assert_eq!(code, e.code(), "{e:?}");
                        assert_eq!(chain_of(v), before);
                        assert_eq!(info.sequence, u64::from_ne_bytes([NOT_WRITTEN; 8]));
                    }
                }
                assert_eq!(chain_of(v), core.chain());
            };
        step(&rs[1], None, Err(VerifyError::OutOfOrder));
        step(&rs[0], Some([0xFF; 32]), Err(VerifyError::WrongNonce));
        step(&rs[0], Some([1; 32]), Ok(()));
        step(&rs[0], None, Err(VerifyError::Replayed));
        step(&forked, None, Err(VerifyError::BrokenChain));
        step(&flipped, None, Err(VerifyError::BadSignature));
        step(&rs[1][..RECEIPT_LEN - 1], None, Err(VerifyError::Malformed));
        step(&[], None, Err(VerifyError::Malformed));
        step(&rs[1], None, Ok(()));

        // Another key's verifier knows no receipt of this one.
        let w = verifier(&signer(9).public_key(), None);
        let code = unsafe {
            tessera_chain_verifier_verify_next(w, rs[0].as_ptr(), rs[0].len(), null(), null_mut())
        };
        assert_eq!(code, TESSERA_VERIFY_UNKNOWN_KEY);

        // NULL pointers.
        let mut out = null_mut();
        let mut c = tessera_chain_state {
            next_sequence: 0,
            prev_hash: [0; 32],
        };
        for r in unsafe {
            [
                tessera_chain_verifier_new(null(), null(), &mut out),
                tessera_chain_verifier_new(pk.as_ptr(), null(), null_mut()),
                tessera_chain_verifier_verify_next(
                    null_mut(),
                    rs[2].as_ptr(),
                    RECEIPT_LEN,
                    null(),
                    null_mut(),
                ),
                tessera_chain_verifier_verify_next(v, null(), RECEIPT_LEN, null(), null_mut()),
                tessera_chain_verifier_chain(null(), &mut c),
                tessera_chain_verifier_chain(v, null_mut()),
            ]
        } {
            assert_eq!(r, TESSERA_NULL_ARGUMENT);
        }
        assert!(out.is_null());
        assert_eq!(c.next_sequence, 0);
        unsafe {
            tessera_chain_verifier_free(v);
            tessera_chain_verifier_free(w);
        }
    }

    // ----- Merkle trees ------------------------------------------------------

    fn data(len: usize) -> Vec<u8> {
        (0..len).map(|i| ((i * 31 + 7) % 251) as u8).collect()
    }

    #[test]
    fn merkle_roots_and_leaves_are_the_core_ones() {
        let all = data(5 * CHUNK_SIZE + 100);
        for len in [
            0,
            1,
            CHUNK_SIZE - 1,
            CHUNK_SIZE,
            CHUNK_SIZE + 1,
            3 * CHUNK_SIZE,
            all.len(),
        ] {
            let mut root = [0u8; 32];
            let r = unsafe { tessera_merkle_root(all.as_ptr(), len, root.as_mut_ptr()) };
            assert_eq!(
                (r, root),
                (TESSERA_OK, merkle::root_of(&all[..len])),
                "{len}"
            );
            let mut leaf = [0u8; 32];
            let r = unsafe { tessera_merkle_leaf_hash(all.as_ptr(), len, leaf.as_mut_ptr()) };
            assert_eq!((r, leaf), (TESSERA_OK, merkle::leaf_hash(&all[..len])));
        }
        let mut root = [0u8; 32];
        let r = unsafe { tessera_merkle_root(null(), 0, root.as_mut_ptr()) };
        assert_eq!((r, root), (TESSERA_OK, merkle::empty_root()));

        // Several buffers, empty ones included.
        let lens = [CHUNK_SIZE + 10, 0, 3, 2 * CHUNK_SIZE];
        let mut at = 0;
        let bufs: Vec<&[u8]> = lens
            .iter()
            .map(|&l| {
                at += l;
                &all[at - l..at]
            })
            .collect();
        let ptrs: Vec<*const u8> = bufs
            .iter()
            .map(|b| if b.is_empty() { null() } else { b.as_ptr() })
            .collect();
        let r = unsafe {
            tessera_merkle_root_of_buffers(
                ptrs.as_ptr(),
                lens.as_ptr(),
                lens.len(),
                root.as_mut_ptr(),
            )
        };
        assert_eq!(
            (r, root),
            (TESSERA_OK, merkle::root_of_buffers(bufs.iter().copied()))
        );
        let r = unsafe { tessera_merkle_root_of_buffers(null(), null(), 0, root.as_mut_ptr()) };
        assert_eq!((r, root), (TESSERA_OK, merkle::empty_root()));

        // NULL pointers.
        let p = all.as_ptr();
        let mut out = [NOT_WRITTEN; 32];
        let mut bad_ptrs = ptrs.clone();
        bad_ptrs[0] = null();
        for r in unsafe {
            [
                tessera_merkle_root(null(), 1, out.as_mut_ptr()),
                tessera_merkle_root(p, 1, null_mut()),
                tessera_merkle_leaf_hash(null(), 1, out.as_mut_ptr()),
                tessera_merkle_leaf_hash(p, 1, null_mut()),
                tessera_merkle_root_of_buffers(null(), lens.as_ptr(), 1, out.as_mut_ptr()),
                tessera_merkle_root_of_buffers(ptrs.as_ptr(), null(), 1, out.as_mut_ptr()),
                tessera_merkle_root_of_buffers(ptrs.as_ptr(), lens.as_ptr(), 1, null_mut()),
                tessera_merkle_root_of_buffers(
                    bad_ptrs.as_ptr(),
                    lens.as_ptr(),
                    1,
                    out.as_mut_ptr(),
                ),
            ]
        } {
            assert_eq!(r, TESSERA_NULL_ARGUMENT);
        }
        assert_eq!(out, [NOT_WRITTEN; 32]);
    }

    #[test]
    fn proofs_are_the_core_ones_and_verify() {
        let all = data(5 * CHUNK_SIZE + 100);
        let chunks: Vec<&[u8]> = all.chunks(CHUNK_SIZE).collect();
        let leaves: Vec<Digest> = chunks.iter().map(|c| merkle::leaf_hash(c)).collect();
        let flat: Vec<u8> = leaves.iter().flatten().copied().collect();
        let root = merkle::root_of(&all);
        let n = leaves.len() as u64;
        let readback = [tessera_buffer_spec {
            binding: 0,
            len: all.len() as u64,
            init_len: 0,
            readback: CBool::TRUE,
        }];
        let mut count = 0u64;
        let r = unsafe { tessera_output_leaf_count(readback.as_ptr(), 1, &mut count) };
        assert_eq!((r, count), (TESSERA_OK, n));
        for (i, chunk) in chunks.iter().enumerate() {
            let core = merkle::prove(&leaves, i as u64).unwrap();
            let mut path = [[NOT_WRITTEN; 32]; TESSERA_MAX_PROOF_LEN];
            let mut path_len = 0usize;
            let r = unsafe {
                tessera_merkle_prove(
                    flat.as_ptr(),
                    leaves.len(),
                    i as u64,
                    path.as_mut_ptr().cast(),
                    path.len(),
                    &mut path_len,
                )
            };
            assert_eq!(r, TESSERA_OK);
            assert_eq!(&path[..path_len], core.path.as_slice());
            assert!(path[path_len..].iter().all(|p| *p == [NOT_WRITTEN; 32]));
            let check = |chunk: &[u8], index: u64, tree_size: u64, count: u64, path: &[Digest]| unsafe {
                tessera_verify_output_chunk(
                    root.as_ptr(),
                    count,
                    chunk.as_ptr(),
                    chunk.len(),
                    index,
                    tree_size,
                    path.as_ptr().cast(),
                    path.len(),
                )
            };
            let p = &path[..path_len];
            assert_eq!(check(chunk, i as u64, n, n, p), TESSERA_OK);
            let mismatch = TESSERA_VERIFY_CHUNK_PROOF_MISMATCH;
            assert_eq!(check(&chunk[1..], i as u64, n, n, p), mismatch);
            assert_eq!(check(chunk, i as u64, n, n + 1, p), mismatch);
            assert_eq!(check(chunk, i as u64 + 1, n, n, p), mismatch);
            assert_eq!(check(chunk, i as u64, n, n, &p[1..]), mismatch);

            // Too small a path buffer says how many hashes it needs.
            let mut small = [[NOT_WRITTEN; 32]; 1];
            let mut needed = 0usize;
            let r = unsafe {
                tessera_merkle_prove(
                    flat.as_ptr(),
                    leaves.len(),
                    i as u64,
                    small.as_mut_ptr().cast(),
                    0,
                    &mut needed,
                )
            };
            assert_eq!((r, needed), (TESSERA_BUFFER_TOO_SMALL, path_len));
            assert_eq!(small, [[NOT_WRITTEN; 32]; 1]);
        }
        // The last leaf of 6 has the path [root of leaves 0..4, ...]: read as
        // another index of a smaller tree, the exact leaf count refuses it.
        let core = merkle::prove(&leaves[..5], 4).unwrap();
        let root5 = merkle::root_of(&all[..5 * CHUNK_SIZE]);
        let misplaced = |count: u64| unsafe {
            tessera_verify_output_chunk(
                root5.as_ptr(),
                count,
                chunks[4].as_ptr(),
                chunks[4].len(),
                1,
                2,
                core.path.as_ptr().cast(),
                core.path.len(),
            )
        };
        let mut forged = core.clone();
        forged.index = 1;
        forged.tree_size = 2;
        assert_eq!(merkle::verify_proof(&root5, &leaves[4], &forged), Ok(()));
        assert_eq!(misplaced(5), TESSERA_VERIFY_CHUNK_PROOF_MISMATCH);
        // A single-leaf tree has an empty path: NULL is fine.
        let one = merkle::root_of(chunks[0]);
        let r = unsafe {
            tessera_verify_output_chunk(
                one.as_ptr(),
                1,
                chunks[0].as_ptr(),
                chunks[0].len(),
                0,
                1,
                null(),
                0,
            )
        };
        assert_eq!(r, TESSERA_OK);
        let mut path_len = 7usize;
        let r = unsafe { tessera_merkle_prove(flat.as_ptr(), 1, 0, null_mut(), 0, &mut path_len) };
        assert_eq!((r, path_len), (TESSERA_OK, 0));
    }

    #[test]
    fn proof_arguments_out_of_range_are_refused() {
        let leaves = [[1u8; 32], [2u8; 32]];
        let root = merkle::node_hash(&leaves[0], &leaves[1]);
        let long = [[0u8; 32]; TESSERA_MAX_PROOF_LEN + 1];
        let chunk = [0u8; 4];
        let verify = |root: *const u8, chunk: *const u8, chunk_len, path: *const u8, path_len| unsafe {
            tessera_verify_output_chunk(root, 2, chunk, chunk_len, 0, 2, path, path_len)
        };
        let p = long.as_ptr().cast::<u8>();
        assert_eq!(
            verify(root.as_ptr(), chunk.as_ptr(), 4, p, long.len()),
            TESSERA_INVALID_ARGUMENT
        );
        assert_eq!(
            verify(root.as_ptr(), chunk.as_ptr(), 4, p, usize::MAX),
            TESSERA_INVALID_ARGUMENT
        );
        assert_eq!(
            verify(root.as_ptr(), chunk.as_ptr(), 4, p, TESSERA_MAX_PROOF_LEN),
            TESSERA_VERIFY_CHUNK_PROOF_MISMATCH
        );
        assert_eq!(
            verify(null(), chunk.as_ptr(), 4, p, 1),
            TESSERA_NULL_ARGUMENT
        );
        assert_eq!(
            verify(root.as_ptr(), null(), 4, p, 1),
            TESSERA_NULL_ARGUMENT
        );
        assert_eq!(
            verify(root.as_ptr(), chunk.as_ptr(), 4, null(), 1),
            TESSERA_NULL_ARGUMENT
        );

        let flat = leaves.as_ptr().cast::<u8>();
        let mut path = [[0u8; 32]; TESSERA_MAX_PROOF_LEN];
        let pp = path.as_mut_ptr().cast::<u8>();
        let mut len = 99usize;
        for r in unsafe {
            [
                tessera_merkle_prove(flat, 2, 2, pp, path.len(), &mut len),
                tessera_merkle_prove(flat, 0, 0, pp, path.len(), &mut len),
                tessera_merkle_prove(null(), 0, 0, pp, path.len(), &mut len),
            ]
        } {
            assert_eq!(r, TESSERA_INVALID_ARGUMENT);
        }
        assert_eq!(len, 99);
        for r in unsafe {
            [
                tessera_merkle_prove(null(), 2, 0, pp, path.len(), &mut len),
                tessera_merkle_prove(flat, 2, 0, null_mut(), path.len(), &mut len),
                tessera_merkle_prove(flat, 2, 0, pp, path.len(), null_mut()),
            ]
        } {
            assert_eq!(r, TESSERA_NULL_ARGUMENT);
        }
        assert_eq!(len, 99);
    }

    #[test]
    fn output_leaf_counts_are_the_core_ones() {
        let c = CHUNK_SIZE as u64;
        let buf = |binding, len, readback| BufferSpec {
            binding,
            len,
            init_len: 0,
            readback,
        };
        let layouts: [&[BufferSpec]; 5] = [
            &[],
            &[buf(0, 0, true)],
            &[buf(0, 5 * c, false), buf(1, 3, true), buf(2, 4, true)],
            &[buf(0, c + 10, true), buf(3, 3, true)],
            &[buf(0, u64::MAX, true); MAX_BUFFERS],
        ];
        for layout in layouts {
            let specs: Vec<tessera_buffer_spec> = layout.iter().map(c_spec).collect();
            let ptr = if specs.is_empty() {
                null()
            } else {
                specs.as_ptr()
            };
            let mut count = u64::MAX;
            let r = unsafe { tessera_output_leaf_count(ptr, specs.len(), &mut count) };
            assert_eq!((r, count), (TESSERA_OK, merkle::output_leaf_count(layout)));
        }
        let specs = [tessera_buffer_spec::default(); MAX_BUFFERS + 1];
        let mut count = 7u64;
        let r = unsafe { tessera_output_leaf_count(specs.as_ptr(), specs.len(), &mut count) };
        assert_eq!((r, count), (TESSERA_INVALID_ARGUMENT, 7));
        let r = unsafe { tessera_output_leaf_count(null(), 1, &mut count) };
        assert_eq!((r, count), (TESSERA_NULL_ARGUMENT, 7));
        let r = unsafe { tessera_output_leaf_count(specs.as_ptr(), 1, null_mut()) };
        assert_eq!(r, TESSERA_NULL_ARGUMENT);
    }

    // ----- the kernel hash ---------------------------------------------------

    /// The kernel hash through the C function, with NUL-terminated `entry`.
    fn c_kernel_hash(
        root: &[u8; 32],
        entry: &[u8],
        spec: &[(u32, u32)],
        push: &[u8],
        grid: [u32; 3],
        buffers: &[BufferSpec],
    ) -> Result<Digest, tessera_result> {
        let flat: Vec<u32> = spec.iter().flat_map(|&(i, v)| [i, v]).collect();
        let specs: Vec<tessera_buffer_spec> = buffers.iter().map(c_spec).collect();
        let mut out = [0u8; 32];
        let r = unsafe {
            tessera_kernel_hash(
                root.as_ptr(),
                entry.as_ptr().cast(),
                flat.as_ptr(),
                spec.len(),
                push.as_ptr(),
                push.len(),
                grid.as_ptr(),
                specs.as_ptr(),
                specs.len(),
                out.as_mut_ptr(),
            )
        };
        if r == TESSERA_OK {
            Ok(out)
        } else {
            Err(r)
        }
    }

    fn assignment(
        root: [u8; 32],
        entry: &str,
        spec: &[(u32, u32)],
        push: &[u8],
        grid: [u32; 3],
        buffers: &[BufferSpec],
    ) -> JobAssign {
        JobAssign {
            job: 1,
            requester_nonce: [0; 32],
            kernel: KernelSpec {
                len: 1000,
                root,
                entry_point: BoundedString::try_from(entry).unwrap(),
                specialization: BoundedVec::from_slice(spec).unwrap(),
                push_constants: BoundedVec::from_slice(push).unwrap(),
                grid,
            },
            buffers: BoundedVec::from_slice(buffers).unwrap(),
            inputs_root: [0; 32],
            sealing: None,
        }
    }

    /// Entry point, specialization, push constants, grid and layout.
    type KernelCase<'a> = (
        &'a str,
        &'a [(u32, u32)],
        &'a [u8],
        [u32; 3],
        &'a [BufferSpec],
    );

    #[test]
    fn kernel_hashes_are_the_assignments_ones() {
        let long_entry = "e".repeat(MAX_ENTRY_POINT);
        let full_spec: Vec<(u32, u32)> = (0..MAX_SPEC_CONSTANTS as u32).map(|i| (i, !i)).collect();
        let full_push: Vec<u8> = (0..MAX_PUSH_CONSTANTS as u8).collect();
        let full_layout: Vec<BufferSpec> = (0..MAX_BUFFERS as u32)
            .map(|i| BufferSpec {
                binding: 4 * i,
                len: u64::MAX - u64::from(i),
                init_len: u64::from(i),
                readback: i % 3 == 0,
            })
            .collect();
        let cases: [KernelCase; 4] = [
            (
                "main",
                &[(0, 256), (1, 7)],
                &[1, 2, 3],
                [64, 1, 1],
                &layout_of(1),
            ),
            ("", &[], &[], [0, 0, 0], &[]),
            (
                &long_entry,
                &full_spec,
                &full_push,
                [u32::MAX; 3],
                &full_layout,
            ),
            ("überall", &[(5, 9)], &[0xAB], [2, 1, 1], &layout_of(2)),
        ];
        for (entry, spec, push, grid, buffers) in cases {
            let root = [0x3C; 32];
            let job = assignment(root, entry, spec, push, grid, buffers);
            let mut cstr = entry.as_bytes().to_vec();
            cstr.push(0);
            assert_eq!(
                c_kernel_hash(&root, &cstr, spec, push, grid, buffers),
                Ok(job.kernel_hash()),
                "{entry:?}"
            );
        }
    }

    #[test]
    fn kernel_hash_arguments_past_the_wire_limits_are_refused() {
        let root = [1u8; 32];
        let grid = [1u32; 3];
        let ok = c_kernel_hash(&root, b"main\0", &[], &[], grid, &[]);
        assert!(ok.is_ok());
        let mut entry = std::vec![b'e'; MAX_ENTRY_POINT + 1];
        entry.push(0);
        let too_many_spec: Vec<(u32, u32)> = std::vec![(0, 0); MAX_SPEC_CONSTANTS + 1];
        let too_many_push = std::vec![0u8; MAX_PUSH_CONSTANTS + 1];
        let too_many_buffers = std::vec![layout_of(1)[0]; MAX_BUFFERS + 1];
        let invalid = Err(TESSERA_INVALID_ARGUMENT);
        assert_eq!(c_kernel_hash(&root, &entry, &[], &[], grid, &[]), invalid);
        assert_eq!(
            c_kernel_hash(&root, b"ma\xFFin\0", &[], &[], grid, &[]),
            invalid
        );
        assert_eq!(
            c_kernel_hash(&root, b"main\0", &too_many_spec, &[], grid, &[]),
            invalid
        );
        assert_eq!(
            c_kernel_hash(&root, b"main\0", &[], &too_many_push, grid, &[]),
            invalid
        );
        assert_eq!(
            c_kernel_hash(&root, b"main\0", &[], &[], grid, &too_many_buffers),
            invalid
        );

        // An entry point with no NUL in its first 65 bytes is refused after
        // reading exactly those: the 66th byte here is not the string's.
        let unterminated = [b'x'; MAX_ENTRY_POINT + 1];
        let mut out = [0u8; 32];
        let r = unsafe {
            tessera_kernel_hash(
                root.as_ptr(),
                unterminated.as_ptr().cast(),
                null(),
                0,
                null(),
                0,
                grid.as_ptr(),
                null(),
                0,
                out.as_mut_ptr(),
            )
        };
        assert_eq!(r, TESSERA_INVALID_ARGUMENT);

        // NULL pointers: the fixed ones always, the arrays with a count.
        let e = c"main".as_ptr();
        let s = [0u32; 2];
        let pc = [0u8; 1];
        let b = [tessera_buffer_spec::default()];
        let o = out.as_mut_ptr();
        let g = grid.as_ptr();
        let rt = root.as_ptr();
        for r in unsafe {
            [
                tessera_kernel_hash(
                    null(),
                    e,
                    s.as_ptr(),
                    1,
                    pc.as_ptr(),
                    1,
                    g,
                    b.as_ptr(),
                    1,
                    o,
                ),
                tessera_kernel_hash(
                    rt,
                    null(),
                    s.as_ptr(),
                    1,
                    pc.as_ptr(),
                    1,
                    g,
                    b.as_ptr(),
                    1,
                    o,
                ),
                tessera_kernel_hash(rt, e, null(), 1, pc.as_ptr(), 1, g, b.as_ptr(), 1, o),
                tessera_kernel_hash(rt, e, s.as_ptr(), 1, null(), 1, g, b.as_ptr(), 1, o),
                tessera_kernel_hash(
                    rt,
                    e,
                    s.as_ptr(),
                    1,
                    pc.as_ptr(),
                    1,
                    null(),
                    b.as_ptr(),
                    1,
                    o,
                ),
                tessera_kernel_hash(rt, e, s.as_ptr(), 1, pc.as_ptr(), 1, g, null(), 1, o),
                tessera_kernel_hash(
                    rt,
                    e,
                    s.as_ptr(),
                    1,
                    pc.as_ptr(),
                    1,
                    g,
                    b.as_ptr(),
                    1,
                    null_mut(),
                ),
            ]
        } {
            assert_eq!(r, TESSERA_NULL_ARGUMENT);
        }
        // Empty arrays may be NULL.
        let r = unsafe { tessera_kernel_hash(rt, e, null(), 0, null(), 0, g, null(), 0, o) };
        assert_eq!(r, TESSERA_OK);
        assert_eq!(out, attest::kernel_hash(&root, "main", &[], &[], grid, &[]));
        // A misaligned array is refused, not read.
        let words = [0u32; 4];
        let odd = unsafe { words.as_ptr().cast::<u8>().add(1) }.cast::<u32>();
        let r = unsafe { tessera_kernel_hash(rt, e, odd, 1, null(), 0, g, null(), 0, o) };
        assert_eq!(r, TESSERA_INVALID_ARGUMENT);
    }
}
