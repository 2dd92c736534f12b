//! The sans-IO agent (the firmware path): `tessera_agent_*` and the signers.
//!
//! The host owns the transport and the clock, exactly as with the Rust
//! `tessera_core::Agent` (docs in `core/src/agent.rs`): feed received bytes
//! with `tessera_agent_handle_input`, then drain `tessera_agent_poll_transmit`
//! (bytes to send), `tessera_agent_poll_event` (what to do) and
//! `tessera_agent_poll_timeout` (when to call `tessera_agent_handle_timeout`),
//! each until it returns `TESSERA_NOTHING`. Times are microseconds in the
//! host's own time base; only differences matter.

#[cfg(feature = "std")]
extern crate std;

use core::ffi::{c_char, c_void, CStr};
use core::mem::MaybeUninit;
use core::ptr::addr_of_mut;

use tessera_core::agent::{CancelReason, DisconnectReason, ResultRecord, MAX_RECORD_BYTES};
use tessera_core::attest::{
    ChainState, DeviceCapabilities, DeviceType, Ed25519Signer, HardwareReport, HardwareReportKind,
    SignError, Signer,
};
use tessera_core::bounded::BoundedString;
use tessera_core::policy::{LinearPrice, Policy};
use tessera_core::reasons::KernelRule;
use tessera_core::wire::{FailReason, JobId, Usage};
use tessera_core::{Agent, Config, ConnState, Duration, Error, Event, Instant, JobState};

use crate::boundary::{
    bytes, copy_out, footprint, free_any, guard, new_handle, non_null, place_handle,
    place_handle_with, sized_ok, take_any, write_opt, Guarded, Placeable, SizedOut,
};
use crate::*;

// ----- signers ---------------------------------------------------------------

/// Signs `message_len` bytes at `message` with the device key and writes the
/// 64-byte Ed25519 signature to `signature`. Returns `TESSERA_OK`,
/// `TESSERA_SIGNER_UNAVAILABLE` (busy: the agent retries later) or any other
/// code (failed). Called on the thread that called into the agent. A call
/// it makes into the agent that holds the signer, or into the signer, is
/// refused with `TESSERA_IN_USE`; it must not free either, nor give the
/// signer to another `_new` or `_init` function. It must return: no C++
/// exception or `longjmp` may leave it (that is undefined behaviour).
pub type tessera_sign_fn = Option<
    unsafe extern "C" fn(
        userdata: *mut c_void,
        message: *const u8,
        message_len: usize,
        signature: *mut u8,
    ) -> tessera_result,
>;

/// Writes the device's 32-byte Ed25519 public key to `public_key`. It must
/// return: no C++ exception or `longjmp` may leave it.
pub type tessera_public_key_fn =
    Option<unsafe extern "C" fn(userdata: *mut c_void, public_key: *mut u8) -> tessera_result>;

/// A signer whose key lives outside the library (a secure element, a TPM).
#[repr(C)]
pub struct tessera_signer_callbacks {
    /// `sizeof(tessera_signer_callbacks)`.
    pub size: usize,
    /// Passed first to both callbacks.
    pub userdata: *mut c_void,
    /// Called once, by `tessera_signer_from_callbacks`: the key is read then.
    pub public_key: tessera_public_key_fn,
    /// Called for every signature (evidence at each connection, each receipt).
    pub sign: tessera_sign_fn,
}

pub(crate) struct CallbackSigner {
    userdata: *mut c_void,
    public_key: [u8; 32],
    sign: unsafe extern "C" fn(*mut c_void, *const u8, usize, *mut u8) -> tessera_result,
}

// SAFETY: the header requires callback signers given to a runtime to be
// callable from the runtime's thread with their `userdata`
// (`tessera_runtime_new`); the agent calls them only from the thread that
// calls into it, one at a time.
unsafe impl Send for CallbackSigner {}

impl Signer for CallbackSigner {
    fn public_key(&self) -> [u8; 32] {
        self.public_key
    }

    fn sign(&mut self, message: &[u8]) -> Result<[u8; 64], SignError> {
        let mut signature = [0u8; 64];
        // SAFETY: the callback was given with `userdata` for this purpose;
        // `message` and `signature` are valid for the lengths passed.
        let r = unsafe {
            (self.sign)(
                self.userdata,
                message.as_ptr(),
                message.len(),
                signature.as_mut_ptr(),
            )
        };
        match r {
            TESSERA_OK => Ok(signature),
            TESSERA_SIGNER_UNAVAILABLE => Err(SignError::Unavailable),
            other => Err(SignError::Failed(other)),
        }
    }
}

/// Names a hardware attestation report for the evidence about to be
/// signed: made for the 32 bytes at `nonce` (the evidence's hardware-report
/// nonce: SHA-256 of "tessera/hw-nonce/v1", the coordinator's challenge, the
/// device key and the session key), it writes the report's kind
/// (`TESSERA_HARDWARE_REPORT_*`) to `kind` and the SHA-256 of the report's
/// bytes to the 32 bytes at `hash`, and keeps the bytes for whoever verifies
/// the evidence. Any result but `TESSERA_OK`, or kind
/// `TESSERA_HARDWARE_REPORT_NONE`, names no report (the evidence then stands
/// on the device key alone, which a verifier that asks for a report
/// refuses); a result but `TESSERA_OK` is also logged as a warning
/// (`tessera_set_log_callback`, where the library has it). Called on the
/// thread that called into the agent, at each connection; the same rules as
/// `tessera_sign_fn` hold.
pub type tessera_hardware_report_fn = Option<
    unsafe extern "C" fn(
        userdata: *mut c_void,
        nonce: *const u8,
        kind: *mut u16,
        hash: *mut u8,
    ) -> tessera_result,
>;

/// The hardware-report callback of a signer
/// (`tessera_signer_set_hardware_report`).
pub(crate) struct ReportHook {
    userdata: *mut c_void,
    report: unsafe extern "C" fn(*mut c_void, *const u8, *mut u16, *mut u8) -> tessera_result,
}

/// The key of a signer handle.
pub(crate) enum SignerKey {
    Ed25519(Ed25519Signer),
    Callbacks(CallbackSigner),
}

/// What a signer handle holds: its key, and the callback naming a hardware
/// report in each evidence, if one was set.
pub(crate) struct AnySigner {
    key: SignerKey,
    report: Option<ReportHook>,
}

// SAFETY: as for `CallbackSigner`: the header requires the report callback
// of a signer given to a runtime to be callable from the runtime's thread
// with its `userdata`; the agent calls it from the thread that calls into
// it, one call at a time.
unsafe impl Send for AnySigner {}

impl AnySigner {
    pub(crate) fn ed25519(s: Ed25519Signer) -> AnySigner {
        AnySigner {
            key: SignerKey::Ed25519(s),
            report: None,
        }
    }

    fn callbacks(s: CallbackSigner) -> AnySigner {
        AnySigner {
            key: SignerKey::Callbacks(s),
            report: None,
        }
    }
}

impl Signer for AnySigner {
    fn public_key(&self) -> [u8; 32] {
        match &self.key {
            SignerKey::Ed25519(s) => s.public_key(),
            SignerKey::Callbacks(s) => s.public_key(),
        }
    }

    fn sign(&mut self, message: &[u8]) -> Result<[u8; 64], SignError> {
        match &mut self.key {
            SignerKey::Ed25519(s) => s.sign(message),
            SignerKey::Callbacks(s) => s.sign(message),
        }
    }

    fn hardware_report(&mut self, nonce: &[u8; 32]) -> HardwareReport {
        let Some(hook) = &self.report else {
            return HardwareReport::NONE;
        };
        let mut kind = 0u16;
        let mut hash = [0u8; 32];
        // SAFETY: the callback was given with `userdata` for this purpose;
        // `nonce` is 32 readable bytes, `kind` and `hash` (32 bytes) are
        // writable.
        let r =
            unsafe { (hook.report)(hook.userdata, nonce.as_ptr(), &mut kind, hash.as_mut_ptr()) };
        if r != TESSERA_OK {
            // Otherwise seen only as evidence that names no report.
            #[cfg(feature = "runtime")]
            log::warn!("the hardware report callback failed ({r}): this evidence names no report");
            return HardwareReport::NONE;
        }
        if kind == HardwareReportKind::NONE.0 {
            return HardwareReport::NONE;
        }
        HardwareReport {
            kind: HardwareReportKind(kind),
            hash,
        }
    }
}

/// A device signing key: built in (Ed25519 in memory) or given as callbacks.
/// Given to `tessera_agent_new` (or `_init`, or `tessera_runtime_new`),
/// which takes it over.
pub struct tessera_signer {
    inner: Guarded<AnySigner>,
    heap: bool,
}

impl Placeable for tessera_signer {
    fn on_heap(&self) -> bool {
        self.heap
    }
}

impl tessera_signer {
    fn new(inner: AnySigner, heap: bool) -> Self {
        tessera_signer {
            inner: Guarded::new(inner),
            heap,
        }
    }

    /// Takes the key out of a signer handle (which is gone afterwards).
    ///
    /// # Safety
    /// `signer` must be a live signer, not used again.
    pub(crate) unsafe fn take(signer: *mut tessera_signer) -> AnySigner {
        // SAFETY: the caller's promise.
        unsafe { take_any(signer) }.inner.into_inner()
    }
}

/// Puts a new signer on the heap (hosted) or into the caller's memory.
///
/// # Safety
/// `memory` NULL (heap) or `len` bytes as `place_handle` needs; `out`
/// checked non-NULL.
unsafe fn make_signer(
    memory: *mut c_void,
    len: usize,
    inner: AnySigner,
    out: *mut *mut tessera_signer,
) -> tessera_result {
    if memory.is_null() {
        new_handle(tessera_signer::new(inner, true), out)
    } else {
        // SAFETY: the caller's promise for (memory, len).
        unsafe { place_handle(memory, len, tessera_signer::new(inner, false), out) }
    }
}

/// Bytes of memory `tessera_signer_init_*` needs, whatever its alignment.
#[no_mangle]
pub extern "C" fn tessera_signer_footprint() -> usize {
    footprint::<tessera_signer>()
}

/// As `tessera_signer_from_seed`, in the caller's `memory` (at least
/// `tessera_signer_footprint()` bytes, valid until the signer is freed or
/// taken over): the bare-metal way, with no allocator.
///
/// # Safety
/// `memory` `len` writable bytes; `seed` 32 readable bytes; `out` valid.
#[no_mangle]
pub unsafe extern "C" fn tessera_signer_init_from_seed(
    memory: *mut c_void,
    len: usize,
    seed: *const u8,
    out: *mut *mut tessera_signer,
) -> tessera_result {
    guard(|| {
        non_null!(memory, seed, out);
        // SAFETY: non-NULL and, by the caller, 32 readable bytes.
        let seed = unsafe { &*(seed as *const [u8; 32]) };
        match Ed25519Signer::from_seed(seed) {
            // SAFETY: the caller's promise for (memory, len).
            Ok(s) => unsafe { make_signer(memory, len, AnySigner::ed25519(s), out) },
            Err(e) => e.code(),
        }
    })
}

/// As `tessera_signer_from_callbacks`, in the caller's `memory` (at least
/// `tessera_signer_footprint()` bytes, valid until the signer is freed or
/// taken over).
///
/// # Safety
/// `memory` `len` writable bytes; `callbacks` valid with `size` set; `out`
/// valid.
#[no_mangle]
pub unsafe extern "C" fn tessera_signer_init_from_callbacks(
    memory: *mut c_void,
    len: usize,
    callbacks: *const tessera_signer_callbacks,
    out: *mut *mut tessera_signer,
) -> tessera_result {
    guard(|| {
        non_null!(memory, callbacks, out);
        // SAFETY: the caller's promise.
        match unsafe { callback_signer(callbacks) } {
            // SAFETY: the caller's promise for (memory, len).
            Ok(s) => unsafe { make_signer(memory, len, AnySigner::callbacks(s), out) },
            Err(code) => code,
        }
    })
}

/// Reads callbacks and asks for the public key once.
///
/// # Safety
/// `callbacks` non-NULL and valid.
unsafe fn callback_signer(
    callbacks: *const tessera_signer_callbacks,
) -> Result<CallbackSigner, tessera_result> {
    // SAFETY: non-NULL; the caller promises a valid struct.
    let cb = unsafe { &*callbacks };
    if cb.size < core::mem::size_of::<tessera_signer_callbacks>() {
        return Err(TESSERA_INVALID_ARGUMENT);
    }
    let (Some(public_key_fn), Some(sign)) = (cb.public_key, cb.sign) else {
        return Err(TESSERA_NULL_ARGUMENT);
    };
    let mut public_key = [0u8; 32];
    // SAFETY: the callback's contract: writes 32 bytes to a buffer of 32.
    let r = unsafe { public_key_fn(cb.userdata, public_key.as_mut_ptr()) };
    if r != TESSERA_OK {
        return Err(r);
    }
    Ok(CallbackSigner {
        userdata: cb.userdata,
        public_key,
        sign,
    })
}

/// A signer holding the Ed25519 key whose 32-byte seed is at `seed`.
///
/// # Safety
/// `seed` must point to 32 readable bytes; `out` must be valid for a write.
#[cfg(feature = "std")]
#[no_mangle]
pub unsafe extern "C" fn tessera_signer_from_seed(
    seed: *const u8,
    out: *mut *mut tessera_signer,
) -> tessera_result {
    guard(|| {
        non_null!(seed, out);
        // SAFETY: non-NULL and, by the caller, 32 readable bytes.
        let seed = unsafe { &*(seed as *const [u8; 32]) };
        match Ed25519Signer::from_seed(seed) {
            Ok(s) => new_handle(tessera_signer::new(AnySigner::ed25519(s), true), out),
            Err(e) => e.code(),
        }
    })
}

/// A signer holding the Ed25519 key in the PKCS#8 document `(der, len)`, as
/// `tessera_key_generate` writes it.
///
/// # Safety
/// `der` must point to `len` readable bytes; `out` must be valid for a write.
#[cfg(feature = "std")]
#[no_mangle]
pub unsafe extern "C" fn tessera_signer_from_pkcs8(
    der: *const u8,
    len: usize,
    out: *mut *mut tessera_signer,
) -> tessera_result {
    guard(|| {
        non_null!(der, out);
        // SAFETY: the caller's promise for (der, len).
        let Some(der) = (unsafe { bytes(der, len) }) else {
            return TESSERA_NULL_ARGUMENT;
        };
        match Ed25519Signer::from_pkcs8(der) {
            Ok(s) => new_handle(tessera_signer::new(AnySigner::ed25519(s), true), out),
            Err(e) => e.code(),
        }
    })
}

/// A signer whose key lives elsewhere: `callbacks->public_key` is called
/// once, now; `callbacks->sign` for every signature. `userdata` must stay
/// valid until the signer (or the agent that took it) is freed.
///
/// # Safety
/// `callbacks` must point to a valid `tessera_signer_callbacks` whose `size`
/// is set; `out` must be valid for a write.
#[cfg(feature = "std")]
#[no_mangle]
pub unsafe extern "C" fn tessera_signer_from_callbacks(
    callbacks: *const tessera_signer_callbacks,
    out: *mut *mut tessera_signer,
) -> tessera_result {
    guard(|| {
        non_null!(callbacks, out);
        // SAFETY: the caller's promise.
        match unsafe { callback_signer(callbacks) } {
            Ok(s) => new_handle(tessera_signer::new(AnySigner::callbacks(s), true), out),
            Err(code) => code,
        }
    })
}

/// Makes `signer` name a hardware attestation report in every evidence it
/// signs from now on: `report` (see `tessera_hardware_report_fn`) is called
/// with `userdata` at each connection, before the evidence is signed; NULL
/// removes it. `userdata` must stay valid until the signer (or the agent or
/// runtime that took it) is freed. For a vendor whose device also attests
/// itself (a GPU's confidential-computing report, a TPM quote): a verifier
/// matches the report's bytes to `tessera_evidence_info.hardware_report_hash`
/// and has the vendor's check accept it as made for the hardware nonce
/// (docs/PROTOCOL.md, "Hardware attestation reports").
///
/// # Safety
/// `signer` a live signer used by no other thread; `report`, if not NULL,
/// callable as `tessera_hardware_report_fn` describes.
#[no_mangle]
pub unsafe extern "C" fn tessera_signer_set_hardware_report(
    signer: *mut tessera_signer,
    report: tessera_hardware_report_fn,
    userdata: *mut c_void,
) -> tessera_result {
    guard(|| {
        non_null!(signer);
        let f = |s: &mut AnySigner| {
            s.report = report.map(|report| ReportHook { userdata, report });
            TESSERA_OK
        };
        // SAFETY: non-NULL live handle, by the caller, used by no other
        // thread now.
        unsafe { (*signer).inner.with_mut(f) }
    })
}

/// Writes the signer's 32-byte public key to `out`.
///
/// # Safety
/// `signer` must be a live signer; `out` must point to 32 writable bytes.
#[no_mangle]
pub unsafe extern "C" fn tessera_signer_public_key(
    signer: *const tessera_signer,
    out: *mut u8,
) -> tessera_result {
    guard(|| {
        non_null!(signer, out);
        let f = |s: &AnySigner| {
            let key = s.public_key();
            // SAFETY: 32 writable bytes, by the caller.
            unsafe { core::ptr::copy_nonoverlapping(key.as_ptr(), out, 32) };
            TESSERA_OK
        };
        // SAFETY: non-NULL live handle, by the caller, who calls no
        // non-const function on it from another thread now.
        unsafe { (*signer).inner.with_ref(f) }
    })
}

/// Signs `(message, len)` with the signer's key and writes the 64-byte
/// Ed25519 signature to `signature` (a callback signer calls its callback).
/// Lets a program put a built-in key behind its own callbacks, as a stand-in
/// for a secure element in tests.
///
/// # Safety
/// `signer` a live signer used by no other thread; `(message, len)`
/// readable; `signature` 64 writable bytes.
#[no_mangle]
pub unsafe extern "C" fn tessera_signer_sign(
    signer: *mut tessera_signer,
    message: *const u8,
    len: usize,
    signature: *mut u8,
) -> tessera_result {
    guard(|| {
        non_null!(signer, signature);
        // SAFETY: the caller's promise for (message, len).
        let Some(message) = (unsafe { bytes(message, len) }) else {
            return TESSERA_NULL_ARGUMENT;
        };
        let f = |s: &mut AnySigner| match s.sign(message) {
            Ok(sig) => {
                // SAFETY: 64 writable bytes, by the caller.
                unsafe { core::ptr::copy_nonoverlapping(sig.as_ptr(), signature, 64) };
                TESSERA_OK
            }
            Err(e) => e.code(),
        };
        // SAFETY: non-NULL live handle used by this thread only, by the caller.
        unsafe { (*signer).inner.with_mut(f) }
    })
}

/// Frees a signer that no agent took over (also one made in the caller's
/// memory, which may then be reused). NULL is a no-op, and so is a signer
/// whose callback runs now (freeing it from there is a bug).
///
/// # Safety
/// `signer` must be NULL or a live signer not given to an agent.
#[no_mangle]
pub unsafe extern "C" fn tessera_signer_free(signer: *mut tessera_signer) {
    guard(|| {
        // SAFETY: NULL or live, by the caller.
        if signer.is_null() || unsafe { &*signer }.inner.is_busy() {
            return TESSERA_IN_USE;
        }
        // SAFETY: the caller's promise.
        unsafe { free_any(signer) };
        TESSERA_OK
    });
}

// ----- configuration ---------------------------------------------------------

/// What the device is: signed into the evidence (`DeviceCapabilities`).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct tessera_device {
    /// Device name, NUL-terminated UTF-8, at most 64 bytes (NULL: empty).
    pub name: *const c_char,
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

/// Device type: unknown or other.
pub const TESSERA_DEVICE_OTHER: u32 = 0;
/// Device type: a GPU sharing memory with the host.
pub const TESSERA_DEVICE_INTEGRATED_GPU: u32 = 1;
/// Device type: a GPU with its own memory.
pub const TESSERA_DEVICE_DISCRETE_GPU: u32 = 2;
/// Device type: a GPU in a virtual machine.
pub const TESSERA_DEVICE_VIRTUAL_GPU: u32 = 3;
/// Device type: a CPU implementation.
pub const TESSERA_DEVICE_CPU: u32 = 4;

/// Which offers to take, what to charge, and the session timers.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct tessera_policy {
    /// Jobs held at once, 1 to `TESSERA_MAX_JOBS` (32; 4 in the bare-metal
    /// library).
    pub max_concurrent: u32,
    /// Fixed fee per job.
    pub price_base: u64,
    /// Price per GPU millisecond.
    pub price_per_gpu_ms: u64,
    /// Price per MiB received.
    pub price_per_mib_in: u64,
    /// Price per MiB returned.
    pub price_per_mib_out: u64,
    /// The least charged for any job.
    pub floor: u64,
    /// Most bytes received for one job.
    pub max_bytes_in: u64,
    /// Most bytes returned for one job.
    pub max_bytes_out: u64,
    /// Heartbeat interval, milliseconds (unless the coordinator asks another).
    pub heartbeat_interval_ms: u64,
    /// Silence after which the coordinator is given up, milliseconds.
    pub peer_timeout_ms: u64,
}

/// The agent's configuration. Fill it with `tessera_agent_config_default`,
/// then change what differs.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct tessera_agent_config {
    /// `sizeof(tessera_agent_config)`.
    pub size: usize,
    /// Agent software version: major, minor, patch.
    pub agent_version: [u16; 3],
    /// Random id chosen at each boot (the host supplies the randomness).
    pub boot_id: [u8; 16],
    /// What the device is.
    pub device: tessera_device,
    /// Offers, prices and timers.
    pub policy: tessera_policy,
    /// Hold each signed result back until the host stored it
    /// (`TESSERA_EVENT_PERSIST_RESULT`, then `tessera_agent_confirm_persisted`).
    pub persist_results: CBool,
}

/// Fills `out` with the defaults (and its `size`): the library's version, a
/// zero boot id (set a random one), an empty device, the default policy.
///
/// # Safety
/// `out` must be valid for a write of `tessera_agent_config`.
#[no_mangle]
pub unsafe extern "C" fn tessera_agent_config_default(
    out: *mut tessera_agent_config,
) -> tessera_result {
    guard(|| {
        non_null!(out);
        let p = Policy::default();
        let config = tessera_agent_config {
            size: core::mem::size_of::<tessera_agent_config>(),
            agent_version: [
                TESSERA_VERSION_MAJOR as u16,
                TESSERA_VERSION_MINOR as u16,
                TESSERA_VERSION_PATCH as u16,
            ],
            boot_id: [0; 16],
            device: tessera_device {
                name: core::ptr::null(),
                vendor_id: 0,
                device_id: 0,
                driver_version: 0,
                api_version: 0,
                device_type: TESSERA_DEVICE_OTHER,
                features: 0,
                device_local_bytes: 0,
                host_visible_bytes: 0,
                max_workgroup_size: [0; 3],
                max_workgroup_count: [0; 3],
                max_invocations: 0,
                max_shared_memory: 0,
                max_storage_buffer_range: 0,
                subgroup_size: 0,
                copy_mbps: 0,
                fma_mflops: 0,
            },
            policy: tessera_policy {
                max_concurrent: u32::from(p.max_concurrent),
                price_base: p.price.base,
                price_per_gpu_ms: p.price.per_gpu_ms,
                price_per_mib_in: p.price.per_mib_in,
                price_per_mib_out: p.price.per_mib_out,
                floor: p.floor,
                max_bytes_in: p.max_bytes_in,
                max_bytes_out: p.max_bytes_out,
                heartbeat_interval_ms: p.heartbeat_interval.micros / 1000,
                peer_timeout_ms: p.peer_timeout.micros / 1000,
            },
            persist_results: CBool::FALSE,
        };
        // SAFETY: non-NULL and valid for a write, by the caller.
        unsafe { out.write(config) };
        TESSERA_OK
    })
}

/// Reads a C configuration into the core's, or says which field is wrong.
///
/// # Safety
/// `c.device.name` must be NULL or a NUL-terminated string.
unsafe fn config_from_c(c: &tessera_agent_config) -> Result<Config, (&'static str, &'static str)> {
    let mut name = BoundedString::new();
    if !c.device.name.is_null() {
        // SAFETY: non-NULL and NUL-terminated, by the caller.
        let raw = unsafe { CStr::from_ptr(c.device.name) };
        let text = raw.to_str().map_err(|_| ("device.name", "must be UTF-8"))?;
        name.push_str(text)
            .map_err(|_| ("device.name", "must be at most 64 bytes"))?;
    }
    let device_type = match c.device.device_type {
        TESSERA_DEVICE_OTHER => DeviceType::Other,
        TESSERA_DEVICE_INTEGRATED_GPU => DeviceType::IntegratedGpu,
        TESSERA_DEVICE_DISCRETE_GPU => DeviceType::DiscreteGpu,
        TESSERA_DEVICE_VIRTUAL_GPU => DeviceType::VirtualGpu,
        TESSERA_DEVICE_CPU => DeviceType::Cpu,
        _ => return Err(("device.device_type", "must be a TESSERA_DEVICE_* value")),
    };
    let max_concurrent = u8::try_from(c.policy.max_concurrent).map_err(|_| {
        (
            "policy.max_concurrent",
            tessera_core::limits::MAX_CONCURRENT_RULE,
        )
    })?;
    let persist_results = c
        .persist_results
        .get()
        .ok_or(("persist_results", "must be false or true"))?;
    let ms = |v: u64| Duration::from_micros(v.saturating_mul(1000));
    let d = &c.device;
    Ok(Config {
        agent_version: c.agent_version,
        boot_id: c.boot_id,
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
        policy: Policy {
            max_concurrent,
            price: LinearPrice {
                base: c.policy.price_base,
                per_gpu_ms: c.policy.price_per_gpu_ms,
                per_mib_in: c.policy.price_per_mib_in,
                per_mib_out: c.policy.price_per_mib_out,
            },
            floor: c.policy.floor,
            max_bytes_in: c.policy.max_bytes_in,
            max_bytes_out: c.policy.max_bytes_out,
            heartbeat_interval: ms(c.policy.heartbeat_interval_ms),
            peer_timeout: ms(c.policy.peer_timeout_ms),
        },
        persist_results,
    })
}

/// A position in the device key's receipt chain: what to start a new agent
/// from (kept by the host across restarts), and what
/// `tessera_agent_chain` exports.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct tessera_chain_state {
    /// Sequence number of the next receipt (the first is 1).
    pub next_sequence: u64,
    /// Hash of the last signed receipt (zeros before the first).
    pub prev_hash: [u8; 32],
}

impl From<ChainState> for tessera_chain_state {
    fn from(c: ChainState) -> Self {
        tessera_chain_state {
            next_sequence: c.next_sequence,
            prev_hash: c.prev_hash,
        }
    }
}

impl From<&tessera_chain_state> for ChainState {
    fn from(c: &tessera_chain_state) -> Self {
        ChainState {
            next_sequence: c.next_sequence,
            prev_hash: c.prev_hash,
        }
    }
}

// ----- the agent -------------------------------------------------------------

/// The provider agent (sans-IO). One thread at a time.
pub struct tessera_agent {
    data: Guarded<AgentData>,
    heap: bool,
}

/// What a call on an agent works on.
struct AgentData {
    inner: Agent<AnySigner>,
    /// The words of the last error a call on this agent returned.
    last_error: Text<160>,
}

impl Placeable for tessera_agent {
    fn on_heap(&self) -> bool {
        self.heap
    }
}

impl AgentData {
    /// Records and numbers an error of the core.
    fn fail(&mut self, e: Error) -> tessera_result {
        use core::fmt::Write;
        self.last_error = Text::new();
        let _ = write!(self.last_error, "{e}");
        e.code()
    }

    fn done(&mut self, r: Result<(), Error>) -> tessera_result {
        match r {
            Ok(()) => TESSERA_OK,
            Err(e) => self.fail(e),
        }
    }
}

/// Runs `f` on the agent behind `agent`, inside the boundary;
/// `TESSERA_IN_USE` when called from a callback of a call on that agent.
///
/// # Safety
/// `agent` must be NULL or a live agent used by no other thread now.
unsafe fn with_agent(
    agent: *mut tessera_agent,
    f: impl FnOnce(&mut AgentData) -> tessera_result,
) -> tessera_result {
    guard(|| {
        non_null!(agent);
        // SAFETY: non-NULL and live, by the caller, who makes no other call
        // on it from another thread now; only a shared reference is made
        // here, the value is reached through its guard.
        unsafe { (*agent).data.with_mut(f) }
    })
}

/// As [`with_agent`], shared.
///
/// # Safety
/// `agent` must be NULL or a live agent on which no non-const call runs on
/// another thread now.
unsafe fn with_agent_ref(
    agent: *const tessera_agent,
    f: impl FnOnce(&AgentData) -> tessera_result,
) -> tessera_result {
    guard(|| {
        non_null!(agent);
        // SAFETY: non-NULL and live, by the caller; shared access only.
        unsafe { (*agent).data.with_ref(f) }
    })
}

fn at(now_us: u64) -> Instant {
    Instant::from_micros(now_us)
}

/// Reads and checks the configuration and the chain: everything that can
/// refuse an agent, before any memory is touched.
///
/// # Safety
/// As `tessera_agent_new` for `config`, `chain` and `(error, error_len)`.
unsafe fn agent_config(
    config: *const tessera_agent_config,
    chain: *const tessera_chain_state,
    error: *mut c_char,
    error_len: usize,
) -> Result<(Config, ChainState), tessera_result> {
    if config.is_null() {
        return Err(TESSERA_NULL_ARGUMENT);
    }
    // SAFETY: non-NULL and valid, by the caller.
    let c = unsafe { &*config };
    if c.size < core::mem::size_of::<tessera_agent_config>() {
        return Err(TESSERA_INVALID_ARGUMENT);
    }
    let say = |words: &dyn core::fmt::Display| {
        if !error.is_null() && error_len > 0 {
            use core::fmt::Write;
            let mut t = Text::<160>::new();
            let _ = write!(t, "{words}");
            // SAFETY: `error_len` writable bytes at `error`, by the caller.
            unsafe { t.write_c(error.cast(), error_len, core::ptr::null_mut()) };
        }
    };
    // SAFETY: the name is NULL or NUL-terminated, by the caller.
    let config = match unsafe { config_from_c(c) } {
        Ok(config) => config,
        Err((field, rule)) => {
            say(&tessera_core::ConfigError { field, rule });
            return Err(TESSERA_INVALID_CONFIG);
        }
    };
    if let Err(e) = config.check() {
        say(&e);
        return Err(e.code());
    }
    let chain = if chain.is_null() {
        ChainState::default()
    } else {
        // SAFETY: non-NULL and valid, by the caller.
        ChainState::from(unsafe { &*chain })
    };
    Ok((config, chain))
}

/// Makes the agent of a checked configuration in `slot`, in its place: the
/// agent is about 96 KiB, and a copy of it on the stack of a small thread
/// (musl's 128 KiB) would overflow it. Writes the whole value, or on an
/// error (none is expected: the configuration was checked) nothing.
fn build_agent(
    slot: &mut MaybeUninit<tessera_agent>,
    config: Config,
    signer: AnySigner,
    chain: ChainState,
    heap: bool,
) -> Result<(), tessera_result> {
    let p = slot.as_mut_ptr();
    // SAFETY: a field of the slot, its pointer made without reading it;
    // `MaybeUninit<T>` has the layout of `T` and any bytes are valid for
    // it; borrowed only for this call.
    let data = unsafe { &mut *addr_of_mut!((*p).data).cast::<MaybeUninit<Guarded<AgentData>>>() };
    Guarded::init_in(data, |data| {
        let d = data.as_mut_ptr();
        // SAFETY: as above, for the fields of `data`.
        let inner =
            unsafe { &mut *addr_of_mut!((*d).inner).cast::<MaybeUninit<Agent<AnySigner>>>() };
        if let Err(e) = Agent::new_in(inner, config, signer, chain) {
            return Err(e.code());
        }
        // SAFETY: as above; the other field, written once.
        unsafe { addr_of_mut!((*d).last_error).write(Text::new()) };
        Ok(())
    })?;
    // SAFETY: as above; the last field, written once.
    unsafe { addr_of_mut!((*p).heap).write(heap) };
    Ok(())
}

/// Makes an agent. The call takes `signer` over whatever it returns: do not
/// use or free it afterwards. `chain` is where the device key's receipt
/// chain stands (NULL for a key that never signed). `TESSERA_INVALID_CONFIG`
/// names the field through `error` when given (a NUL-terminated text, cut
/// to fit).
///
/// # Safety
/// `config` must be a valid configuration with `size` set; `signer` a live
/// signer; `chain` NULL or valid; `error` NULL or `error_len` writable bytes;
/// `out` valid for a write.
#[cfg(feature = "std")]
#[no_mangle]
pub unsafe extern "C" fn tessera_agent_new(
    config: *const tessera_agent_config,
    signer: *mut tessera_signer,
    chain: *const tessera_chain_state,
    error: *mut c_char,
    error_len: usize,
    out: *mut *mut tessera_agent,
) -> tessera_result {
    guard(|| {
        non_null!(signer);
        // SAFETY: a live signer, by the caller: the agent's (or dropped)
        // from here on, whatever the result.
        let signer = unsafe { tessera_signer::take(signer) };
        non_null!(out);
        // SAFETY: the caller's promise for the rest.
        let (config, chain) = match unsafe { agent_config(config, chain, error, error_len) } {
            Ok(checked) => checked,
            Err(code) => return code,
        };
        // SAFETY: `build_agent` writes the whole agent when it succeeds,
        // and nothing when it fails.
        unsafe {
            crate::boundary::new_handle_with(out, |slot| {
                build_agent(slot, config, signer, chain, true)
            })
        }
    })
}

/// Bytes of memory `tessera_agent_init` needs, whatever its alignment: about
/// 96 KiB in the hosted library (32 job slots of `limits`), about 16 KiB in
/// the bare-metal one (4).
#[no_mangle]
pub extern "C" fn tessera_agent_footprint() -> usize {
    footprint::<tessera_agent>()
}

/// Most jobs an agent of this library holds at once: `TESSERA_MAX_JOBS` as
/// the library was built (32 hosted, 4 bare-metal). The header's
/// `TESSERA_MAX_JOBS` follows `TESSERA_BARE_METAL` in the program that
/// includes it; a program can compare the two to find it was built for the
/// other library.
#[no_mangle]
pub extern "C" fn tessera_max_jobs() -> usize {
    TESSERA_MAX_JOBS
}

/// As `tessera_agent_new`, in the caller's `memory` (at least
/// `tessera_agent_footprint()` bytes, valid and otherwise unused until
/// `tessera_agent_free`): the bare-metal way, with no allocator. The call
/// takes `signer` over whatever it returns; a signer made in caller memory
/// (`tessera_signer_init_*`) leaves that memory free for reuse.
///
/// # Safety
/// `memory` `len` writable bytes; the rest as `tessera_agent_new`.
#[no_mangle]
pub unsafe extern "C" fn tessera_agent_init(
    memory: *mut c_void,
    len: usize,
    config: *const tessera_agent_config,
    signer: *mut tessera_signer,
    chain: *const tessera_chain_state,
    error: *mut c_char,
    error_len: usize,
    out: *mut *mut tessera_agent,
) -> tessera_result {
    guard(|| {
        non_null!(signer);
        // SAFETY: a live signer, by the caller: the agent's (or dropped)
        // from here on, whatever the result.
        let signer = unsafe { tessera_signer::take(signer) };
        non_null!(memory, out);
        if len < core::mem::size_of::<tessera_agent>() {
            return TESSERA_BUFFER_TOO_SMALL;
        }
        // SAFETY: the caller's promise for the rest.
        let (config, chain) = match unsafe { agent_config(config, chain, error, error_len) } {
            Ok(checked) => checked,
            Err(code) => return code,
        };
        // SAFETY: the caller's promise for (memory, len); `build_agent`
        // writes the whole agent when it succeeds, and nothing when it fails.
        unsafe {
            place_handle_with(memory, len, out, |slot| {
                build_agent(slot, config, signer, chain, false)
            })
        }
    })
}

/// Frees the agent and its signer (an agent made by `tessera_agent_init`
/// leaves its memory free for reuse). NULL is a no-op, and so is an agent
/// whose signer's callback runs now (freeing it from there is a bug).
///
/// # Safety
/// `agent` must be NULL or a live agent, not used again.
#[no_mangle]
pub unsafe extern "C" fn tessera_agent_free(agent: *mut tessera_agent) {
    guard(|| {
        // SAFETY: NULL or live, by the caller.
        if agent.is_null() || unsafe { &*agent }.data.is_busy() {
            return TESSERA_IN_USE;
        }
        // SAFETY: the caller's promise.
        unsafe { free_any(agent) };
        TESSERA_OK
    });
}

/// Writes the words of the last error a call on this agent returned (which
/// field a configuration error names, which job, …) into `buf`,
/// NUL-terminated and cut to fit; `written` gets their length. With a zero
/// `len` (`buf` may then be NULL): `TESSERA_BUFFER_TOO_SMALL`, and `written`
/// gets the buffer length the whole text needs, NUL included.
///
/// # Safety
/// `agent` a live agent; `buf` `len` writable bytes; `written` NULL or valid.
#[no_mangle]
pub unsafe extern "C" fn tessera_agent_last_error(
    agent: *const tessera_agent,
    buf: *mut c_char,
    len: usize,
    written: *mut usize,
) -> tessera_result {
    // SAFETY: the caller's promise for `agent`.
    unsafe {
        with_agent_ref(agent, |a| {
            // SAFETY: the caller's promise for (buf, len) and `written`.
            a.last_error.write_c_or_size(buf.cast(), len, written)
        })
    }
}

/// Opens a session on a transport the host just connected: queues `Hello`.
///
/// # Safety
/// `agent` must be a live agent used by no other thread now.
#[no_mangle]
pub unsafe extern "C" fn tessera_agent_connect(
    agent: *mut tessera_agent,
    now_us: u64,
) -> tessera_result {
    let f = |a: &mut AgentData| {
        let r = a.inner.connect(at(now_us));
        a.done(r)
    };
    // SAFETY: the caller's promise.
    unsafe { with_agent(agent, f) }
}

/// The transport closed (or failed): the agent is disconnected. Jobs keep
/// running; results wait for the next session.
///
/// # Safety
/// `agent` must be a live agent used by no other thread now.
#[no_mangle]
pub unsafe extern "C" fn tessera_agent_disconnected(
    agent: *mut tessera_agent,
    now_us: u64,
) -> tessera_result {
    let f = |a: &mut AgentData| {
        a.inner.disconnected(at(now_us));
        TESSERA_OK
    };
    // SAFETY: the caller's promise.
    unsafe { with_agent(agent, f) }
}

/// Feeds received bytes. `consumed` (may be NULL) gets how many were taken,
/// on success and on error: pass the rest again later (after draining events
/// when fewer were taken than given). A peer error returns its code
/// (1000 + the wire code) after queueing an `Error` frame for the peer.
///
/// # Safety
/// `agent` a live agent used by no other thread; `(data, len)` readable;
/// `consumed` NULL or valid.
#[no_mangle]
pub unsafe extern "C" fn tessera_agent_handle_input(
    agent: *mut tessera_agent,
    now_us: u64,
    data: *const u8,
    len: usize,
    consumed: *mut usize,
) -> tessera_result {
    let f = |a: &mut AgentData| {
        // SAFETY: the caller's promise for (data, len).
        let Some(data) = (unsafe { bytes(data, len) }) else {
            return TESSERA_NULL_ARGUMENT;
        };
        match a.inner.handle_input(at(now_us), data) {
            Ok(n) => {
                // SAFETY: NULL or valid, by the caller.
                unsafe { write_opt(consumed, n) };
                TESSERA_OK
            }
            Err(e) => {
                // SAFETY: NULL or valid, by the caller.
                unsafe { write_opt(consumed, e.consumed) };
                a.fail(e.error)
            }
        }
    };
    // SAFETY: the caller's promise.
    unsafe { with_agent(agent, f) }
}

/// Writes the next bytes to send into `buf` and their length into
/// `written`; `TESSERA_NOTHING` when there are none. A buffer of
/// `TESSERA_MAX_FRAME` bytes always makes progress.
///
/// # Safety
/// `agent` a live agent used by no other thread; `buf` `len` writable bytes;
/// `written` valid.
#[no_mangle]
pub unsafe extern "C" fn tessera_agent_poll_transmit(
    agent: *mut tessera_agent,
    now_us: u64,
    buf: *mut u8,
    len: usize,
    written: *mut usize,
) -> tessera_result {
    let f = |a: &mut AgentData| {
        non_null!(buf, written);
        // SAFETY: the caller's promise for (buf, len).
        let Some(out) = (unsafe { crate::boundary::bytes_mut(buf, len) }) else {
            return TESSERA_NULL_ARGUMENT;
        };
        if out.is_empty() {
            return TESSERA_BUFFER_TOO_SMALL;
        }
        match a.inner.poll_transmit(at(now_us), out) {
            Some(n) => {
                // SAFETY: valid, by the caller.
                unsafe { written.write(n) };
                TESSERA_OK
            }
            None => TESSERA_NOTHING,
        }
    };
    // SAFETY: the caller's promise.
    unsafe { with_agent(agent, f) }
}

/// Largest frame on the wire, header included: a transmit buffer of this
/// size always makes progress.
pub const TESSERA_MAX_FRAME: usize = 8448;
/// Bytes of one input or output chunk (a Merkle leaf).
pub const TESSERA_CHUNK_SIZE: usize = 8192;
/// Most bytes of one `TESSERA_EVENT_JOB_DATA` (the most
/// `tessera_agent_read_input` returns): a chunk's data comes in pieces of
/// this size, the last one shorter.
pub const TESSERA_MAX_INPUT_PIECE: usize = 2048;
/// Bytes of a transmit buffer with which every `tessera_agent_send_output`
/// call takes a whole chunk.
pub const TESSERA_TRANSMIT_BUFFER: usize = 9472;
/// Most jobs an agent holds at once: 32 in the hosted library, 4 in the
/// bare-metal one. `tessera_agent_config.max_concurrent` is at most this.
#[cfg(feature = "std")]
pub const TESSERA_MAX_JOBS: usize = 32;
/// Most jobs an agent holds at once: 32 in the hosted library, 4 in the
/// bare-metal one. `tessera_agent_config.max_concurrent` is at most this.
#[cfg(not(feature = "std"))]
pub const TESSERA_MAX_JOBS: usize = 4;
// The core's capacity, whatever features the build unified.
const _: () = assert!(TESSERA_MAX_JOBS == tessera_core::limits::MAX_JOBS);
/// Most buffers of one job.
pub const TESSERA_MAX_BUFFERS: usize = 8;
/// Bytes of a receipt signed alone.
pub const TESSERA_RECEIPT_LEN: usize = 444;
/// Most bytes of a receipt in either form: a batched receipt is 509 bytes
/// plus 32 per audit-path hash, at most 765 (`docs/PROTOCOL.md`, "Batched
/// receipts"). An agent's receipts are at most 669 bytes (573 in the
/// bare-metal library: a batch holds at most `TESSERA_MAX_JOBS` results).
pub const TESSERA_RECEIPT_MAX_LEN: usize = 765;
/// Most bytes of an encoded result record (`tessera_agent_result_record`).
pub const TESSERA_MAX_RECORD_BYTES: usize = 2048;

/// What the host must do (`tessera_event.kind`).
/// The session is established.
pub const TESSERA_EVENT_READY: u32 = 1;
/// A job was assigned: prepare its buffers (`tessera_agent_job_info`).
pub const TESSERA_EVENT_JOB_ASSIGNED: u32 = 2;
/// `len` bytes (at most `TESSERA_MAX_INPUT_PIECE`) of stream `stream` at
/// `offset`: read them with `tessera_agent_read_input` before the next
/// `tessera_agent_handle_input`. A chunk's pieces are checked against its
/// digest when its last piece arrives; data that fails a check cancels the
/// job (`TESSERA_CANCEL_INPUT_INTEGRITY`) instead of its last piece, so
/// inputs are known good only at `TESSERA_EVENT_RUN_JOB`.
pub const TESSERA_EVENT_JOB_DATA: u32 = 3;
/// All inputs arrived and verified: run the kernel.
pub const TESSERA_EVENT_RUN_JOB: u32 = 4;
/// Stop the job and drop its buffers; `reason` is `TESSERA_CANCEL_*`, `code`
/// the coordinator's code for `TESSERA_CANCEL_REQUESTED`.
pub const TESSERA_EVENT_CANCEL_JOB: u32 = 5;
/// Write the job's outputs again, then finish it (after a reconnect).
pub const TESSERA_EVENT_RESEND_OUTPUTS: u32 = 6;
/// Store `tessera_agent_result_record` durably, then
/// `tessera_agent_confirm_persisted`.
pub const TESSERA_EVENT_PERSIST_RESULT: u32 = 7;
/// The coordinator holds the result: the host may drop the outputs.
pub const TESSERA_EVENT_RESULT_ACKNOWLEDGED: u32 = 8;
/// The coordinator refused the result (`code`: its reason); drop it.
pub const TESSERA_EVENT_RESULT_REFUSED: u32 = 9;
/// The coordinator reported an error (`code`: the wire error code).
pub const TESSERA_EVENT_PEER_ERROR: u32 = 10;
/// Close the transport; `reason` is `TESSERA_DISCONNECT_*`, `code` the
/// coordinator's for `TESSERA_DISCONNECT_REFUSED`.
pub const TESSERA_EVENT_DISCONNECT: u32 = 11;

/// Cancel reason: the coordinator cancelled the job.
pub const TESSERA_CANCEL_REQUESTED: u32 = 1;
/// Cancel reason: the job's deadline passed.
pub const TESSERA_CANCEL_DEADLINE: u32 = 2;
/// Cancel reason: the connection dropped before the inputs were complete.
pub const TESSERA_CANCEL_DISCONNECTED: u32 = 3;
/// Cancel reason: an input did not match its digest.
pub const TESSERA_CANCEL_INPUT_INTEGRITY: u32 = 4;

/// Disconnect reason: nothing heard from the coordinator in time.
pub const TESSERA_DISCONNECT_PEER_SILENT: u32 = 1;
/// Disconnect reason: the peer broke the protocol beyond recovery.
pub const TESSERA_DISCONNECT_PROTOCOL_VIOLATION: u32 = 2;
/// Disconnect reason: the coordinator refused the session.
pub const TESSERA_DISCONNECT_REFUSED: u32 = 3;
/// Disconnect reason: the coordinator said goodbye.
pub const TESSERA_DISCONNECT_PEER_GOODBYE: u32 = 4;
/// Disconnect reason: drained, as the host asked.
pub const TESSERA_DISCONNECT_DRAINED: u32 = 5;
/// Disconnect reason: drained, as the coordinator asked; connect again later.
pub const TESSERA_DISCONNECT_PEER_DRAINED: u32 = 6;

/// An event (`tessera_agent_poll_event`). Fields other than `kind` and `job`
/// are set only for the kinds that say so, else zero.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct tessera_event {
    /// `sizeof(tessera_event)`: set it before the first poll.
    pub size: usize,
    /// `TESSERA_EVENT_*`.
    pub kind: u32,
    /// The job, or 0.
    pub job: u64,
    /// `JOB_DATA`: 0 for the kernel, `i + 1` for buffer `i`.
    pub stream: u32,
    /// `JOB_DATA`: byte offset in the stream.
    pub offset: u64,
    /// `JOB_DATA`: bytes readable with `tessera_agent_read_input`.
    pub len: usize,
    /// `CANCEL_JOB`: `TESSERA_CANCEL_*`; `DISCONNECT`: `TESSERA_DISCONNECT_*`.
    pub reason: u32,
    /// The peer's code, for the kinds that carry one.
    pub code: u32,
}

// SAFETY: #[repr(C)], `size: usize` first.
unsafe impl SizedOut for tessera_event {}

pub(crate) fn event_to_c(e: Event) -> tessera_event {
    let mut c = tessera_event {
        size: core::mem::size_of::<tessera_event>(),
        ..Default::default()
    };
    match e {
        Event::Ready => c.kind = TESSERA_EVENT_READY,
        Event::JobAssigned { job } => (c.kind, c.job) = (TESSERA_EVENT_JOB_ASSIGNED, job),
        Event::JobData {
            job,
            stream,
            offset,
            len,
        } => {
            c.kind = TESSERA_EVENT_JOB_DATA;
            c.job = job;
            c.stream = u32::from(stream);
            c.offset = offset;
            c.len = len;
        }
        Event::RunJob { job } => (c.kind, c.job) = (TESSERA_EVENT_RUN_JOB, job),
        Event::CancelJob { job, reason } => {
            (c.kind, c.job) = (TESSERA_EVENT_CANCEL_JOB, job);
            (c.reason, c.code) = match reason {
                CancelReason::Requested(code) => (TESSERA_CANCEL_REQUESTED, u32::from(code)),
                CancelReason::Deadline => (TESSERA_CANCEL_DEADLINE, 0),
                CancelReason::Disconnected => (TESSERA_CANCEL_DISCONNECTED, 0),
                CancelReason::InputIntegrity => (TESSERA_CANCEL_INPUT_INTEGRITY, 0),
                _ => (0, 0),
            };
        }
        Event::ResendOutputs { job } => (c.kind, c.job) = (TESSERA_EVENT_RESEND_OUTPUTS, job),
        Event::PersistResult { job } => (c.kind, c.job) = (TESSERA_EVENT_PERSIST_RESULT, job),
        Event::ResultAcknowledged { job } => {
            (c.kind, c.job) = (TESSERA_EVENT_RESULT_ACKNOWLEDGED, job)
        }
        Event::ResultRefused { job, reason } => {
            (c.kind, c.job, c.code) = (TESSERA_EVENT_RESULT_REFUSED, job, u32::from(reason))
        }
        Event::PeerError { code, job } => {
            (c.kind, c.job, c.code) = (TESSERA_EVENT_PEER_ERROR, job, u32::from(code))
        }
        Event::Disconnect { reason } => {
            c.kind = TESSERA_EVENT_DISCONNECT;
            (c.reason, c.code) = match reason {
                DisconnectReason::PeerSilent => (TESSERA_DISCONNECT_PEER_SILENT, 0),
                DisconnectReason::ProtocolViolation => (TESSERA_DISCONNECT_PROTOCOL_VIOLATION, 0),
                DisconnectReason::Refused(code) => (TESSERA_DISCONNECT_REFUSED, u32::from(code)),
                DisconnectReason::PeerGoodbye => (TESSERA_DISCONNECT_PEER_GOODBYE, 0),
                DisconnectReason::Drained => (TESSERA_DISCONNECT_DRAINED, 0),
                DisconnectReason::PeerDrained => (TESSERA_DISCONNECT_PEER_DRAINED, 0),
                _ => (0, 0),
            };
        }
        _ => {}
    }
    c
}

/// Writes the next event into `out`; `TESSERA_NOTHING` when there is none.
/// `out->size` must be set (`TESSERA_INVALID_ARGUMENT`, and the event stays
/// queued, when it is not).
///
/// # Safety
/// `agent` a live agent used by no other thread; `out` valid for a write.
#[no_mangle]
pub unsafe extern "C" fn tessera_agent_poll_event(
    agent: *mut tessera_agent,
    out: *mut tessera_event,
) -> tessera_result {
    let f = |a: &mut AgentData| {
        non_null!(out);
        // SAFETY: non-NULL and valid, by the caller.
        if !unsafe { sized_ok(out) } {
            return TESSERA_INVALID_ARGUMENT;
        }
        match a.inner.poll_event() {
            Some(e) => {
                // SAFETY: valid for a write, by the caller.
                unsafe { out.write(event_to_c(e)) };
                TESSERA_OK
            }
            None => TESSERA_NOTHING,
        }
    };
    // SAFETY: the caller's promise.
    unsafe { with_agent(agent, f) }
}

/// Writes when `tessera_agent_handle_timeout` is next due (microseconds,
/// the host's time base); `TESSERA_NOTHING` when no timer runs.
///
/// # Safety
/// `agent` a live agent; `out` valid for a write.
#[no_mangle]
pub unsafe extern "C" fn tessera_agent_poll_timeout(
    agent: *const tessera_agent,
    out: *mut u64,
) -> tessera_result {
    let f = |a: &AgentData| {
        non_null!(out);
        match a.inner.poll_timeout() {
            Some(t) => {
                // SAFETY: valid for a write, by the caller.
                unsafe { out.write(t.micros) };
                TESSERA_OK
            }
            None => TESSERA_NOTHING,
        }
    };
    // SAFETY: the caller's promise.
    unsafe { with_agent_ref(agent, f) }
}

/// Runs the timers due at `now_us` (heartbeats, peer silence, deadlines).
///
/// # Safety
/// `agent` a live agent used by no other thread.
#[no_mangle]
pub unsafe extern "C" fn tessera_agent_handle_timeout(
    agent: *mut tessera_agent,
    now_us: u64,
) -> tessera_result {
    let f = |a: &mut AgentData| {
        a.inner.handle_timeout(at(now_us));
        TESSERA_OK
    };
    // SAFETY: the caller's promise.
    unsafe { with_agent(agent, f) }
}

/// Copies the input piece of the last `TESSERA_EVENT_JOB_DATA` polled for
/// `job` into `buf`; `written` gets its length (also, with
/// `TESSERA_BUFFER_TOO_SMALL`, the length needed). `TESSERA_NO_INPUT` once
/// `tessera_agent_handle_input` was called again.
///
/// # Safety
/// `agent` a live agent; `buf` `len` writable bytes; `written` NULL or valid.
#[no_mangle]
pub unsafe extern "C" fn tessera_agent_read_input(
    agent: *const tessera_agent,
    job: u64,
    buf: *mut u8,
    len: usize,
    written: *mut usize,
) -> tessera_result {
    let f = |a: &AgentData| match a.inner.input(job) {
        // SAFETY: the caller's promise for (buf, len) and `written`.
        Some(data) => unsafe { copy_out(data, buf, len, written) },
        None => Error::Usage(tessera_core::UsageError::NoInput(job)).code(),
    };
    // SAFETY: the caller's promise.
    unsafe { with_agent_ref(agent, f) }
}

/// A job's state (`tessera_job_info.state`).
/// Offer accepted; waiting for the assignment.
pub const TESSERA_JOB_ACCEPTED: u32 = 1;
/// Kernel and inputs arriving.
pub const TESSERA_JOB_RECEIVING: u32 = 2;
/// Inputs verified; the host runs the kernel.
pub const TESSERA_JOB_RUNNING: u32 = 3;
/// The host writes outputs.
pub const TESSERA_JOB_UPLOADING: u32 = 4;
/// Signed; waiting for the coordinator's acknowledgement.
pub const TESSERA_JOB_AWAITING_ACK: u32 = 5;

/// What a job is and how to run it (`tessera_agent_job_info`).
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct tessera_job_info {
    /// `sizeof(tessera_job_info)`: set it before the call.
    pub size: usize,
    /// `TESSERA_JOB_*`.
    pub state: u32,
    /// Whether the job has a deadline now, and when (microseconds).
    pub has_deadline: bool,
    /// The deadline, if `has_deadline`.
    pub deadline_us: u64,
    /// Whether the assignment arrived (the fields below are set).
    pub assigned: bool,
    /// SPIR-V bytes (stream 0).
    pub kernel_len: u32,
    /// Workgroup counts in x, y, z.
    pub grid: [u32; 3],
    /// Buffers (`tessera_agent_job_buffer`).
    pub buffer_count: u32,
    /// Specialization constants (`tessera_agent_job_specialization`).
    pub specialization_count: u32,
    /// Push constant bytes (`tessera_agent_job_push_constants`).
    pub push_constants_len: u32,
    /// Entry point bytes, without a NUL (`tessera_agent_job_entry_point`).
    pub entry_point_len: u32,
    /// The requester's nonce.
    pub requester_nonce: [u8; 32],
}

// SAFETY: #[repr(C)], `size: usize` first.
unsafe impl SizedOut for tessera_job_info {}

/// One buffer of a job.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct tessera_buffer_spec {
    /// Binding in descriptor set 0.
    pub binding: u32,
    /// Size in bytes.
    pub len: u64,
    /// Bytes of initial contents sent as input (the rest is zero).
    pub init_len: u64,
    /// Whether it is returned as an output.
    pub readback: CBool,
}

/// Writes what the agent knows of `job` into `out`.
///
/// # Safety
/// `agent` a live agent; `out` valid for a write.
#[no_mangle]
pub unsafe extern "C" fn tessera_agent_job_info(
    agent: *const tessera_agent,
    job: u64,
    out: *mut tessera_job_info,
) -> tessera_result {
    let f = |a: &AgentData| {
        non_null!(out);
        // SAFETY: non-NULL and valid, by the caller.
        if !unsafe { sized_ok(out) } {
            return TESSERA_INVALID_ARGUMENT;
        }
        let Some(state) = a.inner.job_state(job) else {
            return tessera_core::codes::UNKNOWN_JOB;
        };
        let mut info = tessera_job_info {
            size: core::mem::size_of::<tessera_job_info>(),
            state: match state {
                JobState::Accepted => TESSERA_JOB_ACCEPTED,
                JobState::Receiving => TESSERA_JOB_RECEIVING,
                JobState::Running => TESSERA_JOB_RUNNING,
                JobState::Uploading => TESSERA_JOB_UPLOADING,
                JobState::AwaitingAck => TESSERA_JOB_AWAITING_ACK,
                _ => 0,
            },
            ..Default::default()
        };
        if let Some(d) = a.inner.job_deadline(job) {
            info.has_deadline = true;
            info.deadline_us = d.micros;
        }
        if let Some(spec) = a.inner.job_spec(job) {
            info.assigned = true;
            info.kernel_len = spec.kernel.len;
            info.grid = spec.kernel.grid;
            info.buffer_count = spec.buffers.len() as u32;
            info.specialization_count = spec.kernel.specialization.len() as u32;
            info.push_constants_len = spec.kernel.push_constants.len() as u32;
            info.entry_point_len = spec.kernel.entry_point.len() as u32;
            info.requester_nonce = spec.requester_nonce;
        }
        // SAFETY: valid for a write, by the caller.
        unsafe { out.write(info) };
        TESSERA_OK
    };
    // SAFETY: the caller's promise.
    unsafe { with_agent_ref(agent, f) }
}

fn spec_of(a: &AgentData, job: JobId) -> Result<&tessera_core::wire::JobAssign, u32> {
    match (a.inner.job_state(job), a.inner.job_spec(job)) {
        (None, _) => Err(tessera_core::codes::UNKNOWN_JOB),
        (Some(_), None) => Err(tessera_core::codes::INVALID_JOB_STATE),
        (Some(_), Some(spec)) => Ok(spec),
    }
}

/// Writes buffer `index` of an assigned job into `out`
/// (`TESSERA_INVALID_ARGUMENT` past the last).
///
/// # Safety
/// `agent` a live agent; `out` valid for a write.
#[no_mangle]
pub unsafe extern "C" fn tessera_agent_job_buffer(
    agent: *const tessera_agent,
    job: u64,
    index: u32,
    out: *mut tessera_buffer_spec,
) -> tessera_result {
    let f = |a: &AgentData| {
        non_null!(out);
        let spec = match spec_of(a, job) {
            Ok(s) => s,
            Err(code) => return code,
        };
        let Some(b) = spec.buffers.get(index as usize) else {
            return TESSERA_INVALID_ARGUMENT;
        };
        // SAFETY: valid for a write, by the caller.
        unsafe {
            out.write(tessera_buffer_spec {
                binding: b.binding,
                len: b.len,
                init_len: b.init_len,
                readback: b.readback.into(),
            })
        };
        TESSERA_OK
    };
    // SAFETY: the caller's promise.
    unsafe { with_agent_ref(agent, f) }
}

/// Writes specialization constant `index` of an assigned job.
///
/// # Safety
/// `agent` a live agent; `id` and `value` valid for writes.
#[no_mangle]
pub unsafe extern "C" fn tessera_agent_job_specialization(
    agent: *const tessera_agent,
    job: u64,
    index: u32,
    id: *mut u32,
    value: *mut u32,
) -> tessera_result {
    let f = |a: &AgentData| {
        non_null!(id, value);
        let spec = match spec_of(a, job) {
            Ok(s) => s,
            Err(code) => return code,
        };
        let Some(&(i, v)) = spec.kernel.specialization.get(index as usize) else {
            return TESSERA_INVALID_ARGUMENT;
        };
        // SAFETY: valid for writes, by the caller.
        unsafe {
            id.write(i);
            value.write(v);
        }
        TESSERA_OK
    };
    // SAFETY: the caller's promise.
    unsafe { with_agent_ref(agent, f) }
}

/// Copies an assigned job's push constants into `buf`.
///
/// # Safety
/// `agent` a live agent; `buf` `len` writable bytes; `written` NULL or valid.
#[no_mangle]
pub unsafe extern "C" fn tessera_agent_job_push_constants(
    agent: *const tessera_agent,
    job: u64,
    buf: *mut u8,
    len: usize,
    written: *mut usize,
) -> tessera_result {
    let f = |a: &AgentData| match spec_of(a, job) {
        // SAFETY: the caller's promise for the buffer.
        Ok(spec) => unsafe { copy_out(&spec.kernel.push_constants, buf, len, written) },
        Err(code) => code,
    };
    // SAFETY: the caller's promise.
    unsafe { with_agent_ref(agent, f) }
}

/// Copies an assigned job's entry point name into `buf`, NUL-terminated;
/// `written` gets its length without the NUL (or, when too small, the
/// buffer length needed, NUL included). A name holding a NUL byte, which
/// no module's entry point has and no C string holds, is
/// `TESSERA_KERNEL_BASE` + the `no_entry_point` rule: fail the job with
/// reason 1 (kernel rejected) and `code - TESSERA_KERNEL_BASE` as detail,
/// as the Rust provider's gate fails it.
///
/// # Safety
/// `agent` a live agent; `buf` `len` writable bytes; `written` NULL or valid.
#[no_mangle]
pub unsafe extern "C" fn tessera_agent_job_entry_point(
    agent: *const tessera_agent,
    job: u64,
    buf: *mut c_char,
    len: usize,
    written: *mut usize,
) -> tessera_result {
    let f = |a: &AgentData| {
        let spec = match spec_of(a, job) {
            Ok(s) => s,
            Err(code) => return code,
        };
        let name = spec.kernel.entry_point.as_bytes();
        if name.contains(&0) {
            // Read as a C string, it would name another entry point than
            // the one the receipt binds.
            return TESSERA_KERNEL_BASE + u32::from(KernelRule::NoEntryPoint as u16);
        }
        if len < name.len() + 1 {
            // SAFETY: NULL or valid, by the caller.
            unsafe { write_opt(written, name.len() + 1) };
            return TESSERA_BUFFER_TOO_SMALL;
        }
        non_null!(buf);
        // SAFETY: `len > name.len()` writable bytes, by the caller; a name
        // is at most TESSERA_MAX_ENTRY_POINT bytes.
        let dst = unsafe { core::slice::from_raw_parts_mut(buf.cast::<u8>(), name.len() + 1) };
        dst[..name.len()].copy_from_slice(name);
        dst[name.len()] = 0;
        // SAFETY: NULL or valid, by the caller.
        unsafe { write_opt(written, name.len()) };
        TESSERA_OK
    };
    // SAFETY: the caller's promise.
    unsafe { with_agent_ref(agent, f) }
}

/// Metered usage of a job.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct tessera_usage {
    /// GPU time, microseconds.
    pub gpu_time_us: u64,
    /// Dispatch commands submitted.
    pub dispatches: u32,
    /// Bytes received (kernel and inputs).
    pub bytes_in: u64,
    /// Bytes returned (outputs).
    pub bytes_out: u64,
}

impl From<Usage> for tessera_usage {
    fn from(u: Usage) -> tessera_usage {
        tessera_usage {
            gpu_time_us: u.gpu_time_us,
            dispatches: u.dispatches,
            bytes_in: u.bytes_in,
            bytes_out: u.bytes_out,
        }
    }
}

impl From<&tessera_usage> for Usage {
    fn from(u: &tessera_usage) -> Usage {
        Usage {
            gpu_time_us: u.gpu_time_us,
            dispatches: u.dispatches,
            bytes_in: u.bytes_in,
            bytes_out: u.bytes_out,
        }
    }
}

/// Takes the next bytes of read-back buffer `buffer` of a job that ran and
/// writes their frames into `out`: first the frames already queued (as
/// `tessera_agent_poll_transmit` would), then one output chunk frame per
/// whole chunk (or the buffer's tail) that fits. Send `out[..written]`
/// before polling anything else. `consumed` gets how many data bytes were
/// taken: 0 when `out` had no room for the next chunk's frame (send what
/// was written and call again with the same bytes). An `out` of
/// `TESSERA_MAX_FRAME` bytes always makes progress, one of
/// `TESSERA_TRANSMIT_BUFFER` bytes takes a chunk at every call; a smaller
/// one that can never hold the next frame (or an empty one while frames are
/// queued) is refused with `TESSERA_BUFFER_TOO_SMALL`, `written` then
/// holding the length that takes the next chunk. While no session is up
/// the bytes are hashed and taken, and nothing is written (they are asked
/// for again with `TESSERA_EVENT_RESEND_OUTPUTS`). Buffers are written in
/// order, each from its start to its end.
///
/// # Safety
/// `agent` a live agent used by no other thread; `(data, len)` readable;
/// `(out, out_len)` writable; `consumed` and `written` NULL or valid.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn tessera_agent_send_output(
    agent: *mut tessera_agent,
    now_us: u64,
    job: u64,
    buffer: u32,
    data: *const u8,
    len: usize,
    out: *mut u8,
    out_len: usize,
    consumed: *mut usize,
    written: *mut usize,
) -> tessera_result {
    let f = |a: &mut AgentData| {
        // SAFETY: the caller's promise for (data, len).
        let Some(data) = (unsafe { bytes(data, len) }) else {
            return TESSERA_NULL_ARGUMENT;
        };
        // SAFETY: the caller's promise for (out, out_len).
        let Some(out) = (unsafe { crate::boundary::bytes_mut(out, out_len) }) else {
            return TESSERA_NULL_ARGUMENT;
        };
        let Ok(buffer) = u8::try_from(buffer) else {
            return TESSERA_INVALID_ARGUMENT;
        };
        match a.inner.send_output(at(now_us), job, buffer, data, out) {
            Ok(sent) => {
                // SAFETY: NULL or valid, by the caller.
                unsafe {
                    write_opt(consumed, sent.taken);
                    write_opt(written, sent.written);
                }
                TESSERA_OK
            }
            Err(e) => {
                if let Error::BufferTooSmall(needed) = e {
                    // As `tessera_agent_read_input`: the length needed.
                    // SAFETY: NULL or valid, by the caller.
                    unsafe {
                        write_opt(consumed, 0);
                        write_opt(written, needed);
                    }
                }
                a.fail(e)
            }
        }
    };
    // SAFETY: the caller's promise.
    unsafe { with_agent(agent, f) }
}

/// Ends a job whose outputs were all written: signs its receipt.
///
/// # Safety
/// `agent` a live agent used by no other thread; `usage` valid.
#[no_mangle]
pub unsafe extern "C" fn tessera_agent_finish_job(
    agent: *mut tessera_agent,
    now_us: u64,
    job: u64,
    usage: *const tessera_usage,
) -> tessera_result {
    let f = |a: &mut AgentData| {
        non_null!(usage);
        // SAFETY: non-NULL and valid, by the caller.
        let usage = Usage::from(unsafe { &*usage });
        let r = a.inner.finish_job(at(now_us), job, usage);
        a.done(r)
    };
    // SAFETY: the caller's promise.
    unsafe { with_agent(agent, f) }
}

/// Ends a job that could not run: `reason` is a wire fail reason
/// (`code - TESSERA_FAIL_BASE`, 1 kernel rejected … 7 host), `detail` its
/// detail (the kernel rule for a rejection).
///
/// # Safety
/// `agent` a live agent used by no other thread; `usage` valid.
#[no_mangle]
pub unsafe extern "C" fn tessera_agent_fail_job(
    agent: *mut tessera_agent,
    now_us: u64,
    job: u64,
    reason: u32,
    detail: u32,
    usage: *const tessera_usage,
) -> tessera_result {
    let f = |a: &mut AgentData| {
        non_null!(usage);
        let Some(reason) = u8::try_from(reason).ok().and_then(FailReason::from_u8) else {
            return TESSERA_INVALID_ARGUMENT;
        };
        // SAFETY: non-NULL and valid, by the caller.
        let usage = Usage::from(unsafe { &*usage });
        let r = a.inner.fail_job(at(now_us), job, reason, detail, usage);
        a.done(r)
    };
    // SAFETY: the caller's promise.
    unsafe { with_agent(agent, f) }
}

/// Reports a running job's progress, in thousandths.
///
/// # Safety
/// `agent` a live agent used by no other thread.
#[no_mangle]
pub unsafe extern "C" fn tessera_agent_report_progress(
    agent: *mut tessera_agent,
    now_us: u64,
    job: u64,
    permille: u32,
) -> tessera_result {
    let f = |a: &mut AgentData| {
        let Ok(permille) = u16::try_from(permille) else {
            return TESSERA_INVALID_ARGUMENT;
        };
        let r = a.inner.report_progress(at(now_us), job, permille);
        a.done(r)
    };
    // SAFETY: the caller's promise.
    unsafe { with_agent(agent, f) }
}

/// The host stored the job's result record durably (after
/// `TESSERA_EVENT_PERSIST_RESULT`): the agent may send it.
///
/// # Safety
/// `agent` a live agent used by no other thread.
#[no_mangle]
pub unsafe extern "C" fn tessera_agent_confirm_persisted(
    agent: *mut tessera_agent,
    now_us: u64,
    job: u64,
) -> tessera_result {
    let f = |a: &mut AgentData| {
        let r = a.inner.confirm_persisted(at(now_us), job);
        a.done(r)
    };
    // SAFETY: the caller's promise.
    unsafe { with_agent(agent, f) }
}

/// Takes no more offers; says goodbye once every held job is acknowledged.
///
/// # Safety
/// `agent` a live agent used by no other thread.
#[no_mangle]
pub unsafe extern "C" fn tessera_agent_drain(
    agent: *mut tessera_agent,
    now_us: u64,
) -> tessera_result {
    let f = |a: &mut AgentData| {
        let r = a.inner.drain(at(now_us));
        a.done(r)
    };
    // SAFETY: the caller's promise.
    unsafe { with_agent(agent, f) }
}

/// Whether the device takes work now (a render engine says no while the
/// user renders): offers are declined while it does not.
///
/// # Safety
/// `agent` a live agent used by no other thread.
#[no_mangle]
pub unsafe extern "C" fn tessera_agent_set_device_available(
    agent: *mut tessera_agent,
    now_us: u64,
    available: bool,
) -> tessera_result {
    let f = |a: &mut AgentData| {
        a.inner.set_device_available(at(now_us), available);
        TESSERA_OK
    };
    // SAFETY: the caller's promise.
    unsafe { with_agent(agent, f) }
}

/// Connection state (`tessera_agent_state`): no transport.
pub const TESSERA_CONN_DISCONNECTED: u32 = 1;
/// `Hello` sent; waiting for `Welcome`.
pub const TESSERA_CONN_AWAITING_WELCOME: u32 = 2;
/// Evidence sent; waiting for `Ready`.
pub const TESSERA_CONN_AWAITING_READY: u32 = 3;
/// Session established.
pub const TESSERA_CONN_READY: u32 = 4;
/// Goodbye exchanged.
pub const TESSERA_CONN_CLOSED: u32 = 5;

/// Writes the connection state (`TESSERA_CONN_*`).
///
/// # Safety
/// `agent` a live agent; `out` valid for a write.
#[no_mangle]
pub unsafe extern "C" fn tessera_agent_state(
    agent: *const tessera_agent,
    out: *mut u32,
) -> tessera_result {
    let f = |a: &AgentData| {
        non_null!(out);
        let s = match a.inner.state() {
            ConnState::Disconnected => TESSERA_CONN_DISCONNECTED,
            ConnState::AwaitingWelcome => TESSERA_CONN_AWAITING_WELCOME,
            ConnState::AwaitingReady => TESSERA_CONN_AWAITING_READY,
            ConnState::Ready => TESSERA_CONN_READY,
            ConnState::Closed => TESSERA_CONN_CLOSED,
            _ => 0,
        };
        // SAFETY: valid for a write, by the caller.
        unsafe { out.write(s) };
        TESSERA_OK
    };
    // SAFETY: the caller's promise.
    unsafe { with_agent_ref(agent, f) }
}

/// Exports where the receipt chain stands: keep it across restarts and give
/// it to the next `tessera_agent_new`.
///
/// # Safety
/// `agent` a live agent; `out` valid for a write.
#[no_mangle]
pub unsafe extern "C" fn tessera_agent_chain(
    agent: *const tessera_agent,
    out: *mut tessera_chain_state,
) -> tessera_result {
    let f = |a: &AgentData| {
        non_null!(out);
        // SAFETY: valid for a write, by the caller.
        unsafe { out.write(a.inner.chain().into()) };
        TESSERA_OK
    };
    // SAFETY: the caller's promise.
    unsafe { with_agent_ref(agent, f) }
}

/// Counters an operator reads (`tessera_agent_stats`).
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct tessera_stats {
    /// `sizeof(tessera_stats)`: set it before the call.
    pub size: usize,
    /// Offers accepted.
    pub offers_accepted: u64,
    /// Offers declined.
    pub offers_declined: u64,
    /// Jobs completed and acknowledged.
    pub jobs_completed: u64,
    /// Jobs failed (acknowledged).
    pub jobs_failed: u64,
    /// Results the coordinator refused.
    pub results_refused: u64,
    /// Sum of prices of acknowledged completed jobs.
    pub earnings: u64,
    /// Frames received.
    pub frames_in: u64,
    /// Frames queued for sending.
    pub frames_out: u64,
    /// Frames refused.
    pub frames_refused: u64,
}

// SAFETY: #[repr(C)], `size: usize` first.
unsafe impl SizedOut for tessera_stats {}

/// Writes the agent's counters (`out->size` set by the caller).
///
/// # Safety
/// `agent` a live agent; `out` valid for a write.
#[no_mangle]
pub unsafe extern "C" fn tessera_agent_stats(
    agent: *const tessera_agent,
    out: *mut tessera_stats,
) -> tessera_result {
    let f = |a: &AgentData| {
        non_null!(out);
        // SAFETY: non-NULL and valid, by the caller.
        if !unsafe { sized_ok(out) } {
            return TESSERA_INVALID_ARGUMENT;
        }
        let s = a.inner.stats();
        // SAFETY: valid for a write, by the caller.
        unsafe {
            out.write(tessera_stats {
                size: core::mem::size_of::<tessera_stats>(),
                offers_accepted: s.offers_accepted,
                offers_declined: s.offers_declined,
                jobs_completed: s.jobs_completed,
                jobs_failed: s.jobs_failed,
                results_refused: s.results_refused,
                earnings: s.earnings,
                frames_in: s.frames_in,
                frames_out: s.frames_out,
                frames_refused: s.frames_refused,
            })
        };
        TESSERA_OK
    };
    // SAFETY: the caller's promise.
    unsafe { with_agent_ref(agent, f) }
}

/// Writes the 16-byte id of the agent's key.
///
/// # Safety
/// `agent` a live agent; `out` 16 writable bytes.
#[no_mangle]
pub unsafe extern "C" fn tessera_agent_key_id(
    agent: *const tessera_agent,
    out: *mut u8,
) -> tessera_result {
    let f = |a: &AgentData| {
        let id = a.inner.key_id();
        // SAFETY: the caller's promise: 16 writable bytes.
        unsafe { copy_out(&id, out, id.len(), core::ptr::null_mut()) }
    };
    // SAFETY: the caller's promise.
    unsafe { with_agent_ref(agent, f) }
}

/// Encodes a signed job's result record (what to store on
/// `TESSERA_EVENT_PERSIST_RESULT`) into `buf`; at most
/// `TESSERA_MAX_RECORD_BYTES`.
///
/// # Safety
/// `agent` a live agent; `buf` `len` writable bytes; `written` NULL or valid.
#[no_mangle]
pub unsafe extern "C" fn tessera_agent_result_record(
    agent: *const tessera_agent,
    job: u64,
    buf: *mut u8,
    len: usize,
    written: *mut usize,
) -> tessera_result {
    let f = |a: &AgentData| {
        let Some(record) = a.inner.result_record(job) else {
            return match a.inner.job_state(job) {
                None => tessera_core::codes::UNKNOWN_JOB,
                Some(_) => tessera_core::codes::INVALID_JOB_STATE,
            };
        };
        let mut tmp = [0u8; MAX_RECORD_BYTES];
        match record.encode(&mut tmp) {
            // SAFETY: the caller's promise for the buffer.
            Ok(n) => unsafe { copy_out(&tmp[..n], buf, len, written) },
            Err(_) => TESSERA_PANIC,
        }
    };
    // SAFETY: the caller's promise.
    unsafe { with_agent_ref(agent, f) }
}

/// Gives back a result record stored before a restart: the agent holds the
/// job again (its outputs are asked for with `TESSERA_EVENT_RESEND_OUTPUTS`
/// at the next session).
///
/// # Safety
/// `agent` a live agent used by no other thread; `(record, len)` readable.
#[no_mangle]
pub unsafe extern "C" fn tessera_agent_restore_result(
    agent: *mut tessera_agent,
    record: *const u8,
    len: usize,
) -> tessera_result {
    let f = |a: &mut AgentData| {
        // SAFETY: the caller's promise for (record, len).
        let Some(bytes) = (unsafe { bytes(record, len) }) else {
            return TESSERA_NULL_ARGUMENT;
        };
        let Some(record) = ResultRecord::decode(bytes) else {
            return TESSERA_INVALID_ARGUMENT;
        };
        let r = a.inner.restore_result(&record);
        a.done(r)
    };
    // SAFETY: the caller's promise.
    unsafe { with_agent(agent, f) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::ptr::{null, null_mut};
    use std::vec::Vec;
    use tessera_core::limits::MAX_ENTRY_POINT;
    use tessera_core::testkit::{encode, JobDescription};
    use tessera_core::wire::{Message, Welcome};

    /// Everything the agent queued to send.
    fn transmits(a: *mut tessera_agent, now: u64) -> Vec<Vec<u8>> {
        let mut frames = Vec::new();
        let mut buf = [0u8; TESSERA_MAX_FRAME];
        let mut n = 0;
        // SAFETY: a live agent; valid buffers.
        while unsafe { tessera_agent_poll_transmit(a, now, buf.as_mut_ptr(), buf.len(), &mut n) }
            == TESSERA_OK
        {
            frames.push(buf[..n].to_vec());
        }
        frames
    }

    fn feed(a: *mut tessera_agent, now: u64, msg: &Message<'_>) {
        let frame = encode(msg);
        let mut n = 0;
        // SAFETY: a live agent; a valid frame.
        let r = unsafe { tessera_agent_handle_input(a, now, frame.as_ptr(), frame.len(), &mut n) };
        assert_eq!((r, n), (TESSERA_OK, frame.len()));
    }

    /// An agent, through the C ABI, holding job 1 as `entry_point` names it.
    fn agent_assigned(entry_point: &str) -> *mut tessera_agent {
        let mut signer = null_mut();
        let mut config = core::mem::MaybeUninit::uninit();
        let mut a = null_mut();
        // SAFETY: valid pointers throughout.
        unsafe {
            assert_eq!(
                tessera_signer_from_seed([7; 32].as_ptr(), &mut signer),
                TESSERA_OK
            );
            assert_eq!(
                tessera_agent_config_default(config.as_mut_ptr()),
                TESSERA_OK
            );
            let mut config = config.assume_init();
            config.device.device_local_bytes = 1 << 30;
            let r = tessera_agent_new(&config, signer, null(), null_mut(), 0, &mut a);
            assert_eq!(r, TESSERA_OK);
            assert_eq!(tessera_agent_connect(a, 1), TESSERA_OK);
        }
        transmits(a, 1);
        let welcome = Welcome {
            version: 1,
            challenge: [3; 32],
            heartbeat_ms: 0,
        };
        feed(a, 2, &Message::Welcome(welcome));
        transmits(a, 2);
        feed(a, 3, &Message::Ready);
        let job = JobDescription {
            kernel: std::vec![0; 16],
            entry_point: entry_point.into(),
            grid: [1, 1, 1],
            push_constants: Vec::new(),
            buffers: std::vec![(std::vec![1, 2, 3, 4], 4, true)],
            bindings: Vec::new(),
            nonce: [9; 32],
        };
        feed(a, 4, &Message::JobOffer(job.offer(1, 1 << 40, 60_000)));
        feed(a, 5, &Message::JobAssign(job.assign(1)));
        transmits(a, 5);
        a
    }

    /// The entry point as a C host reads it.
    fn entry_point(a: *mut tessera_agent) -> (tessera_result, Vec<u8>) {
        let mut buf = [0xAAu8; MAX_ENTRY_POINT + 1];
        let mut n = 0;
        // SAFETY: a live agent; a valid buffer.
        let r = unsafe {
            tessera_agent_job_entry_point(a, 1, buf.as_mut_ptr().cast(), buf.len(), &mut n)
        };
        let c_string = buf.iter().take_while(|&&b| b != 0).copied().collect();
        (r, c_string)
    }

    /// The report callback: kind TPM 2.0 quote, hash = SHA-256 of the
    /// nonce (a stand-in for the report's bytes); the nonce it was given is
    /// kept in `userdata`. Fails when the first nonce byte is odd and
    /// `userdata`'s fail flag is set.
    unsafe extern "C" fn report(
        userdata: *mut c_void,
        nonce: *const u8,
        kind: *mut u16,
        hash: *mut u8,
    ) -> tessera_result {
        // SAFETY: the test passes a `([u8; 32], bool)` as `userdata`; the
        // library passes 32 readable bytes and writable `kind` and `hash`.
        unsafe {
            let seen = &mut *(userdata as *mut ([u8; 32], bool));
            core::ptr::copy_nonoverlapping(nonce, seen.0.as_mut_ptr(), 32);
            if seen.1 {
                return TESSERA_SIGNER_FAILED;
            }
            *kind = crate::verify::TESSERA_HARDWARE_REPORT_TPM2_QUOTE;
            let d = tessera_core::attest::sha256(&seen.0);
            core::ptr::copy_nonoverlapping(d.as_ptr(), hash, 32);
        }
        TESSERA_OK
    }

    /// The evidence an agent with `signer` signs over challenge [3; 32].
    fn evidence_of(signer: *mut tessera_signer) -> tessera_core::attest::Evidence {
        let mut config = core::mem::MaybeUninit::uninit();
        let mut a = null_mut();
        // SAFETY: valid pointers throughout.
        unsafe {
            assert_eq!(
                tessera_agent_config_default(config.as_mut_ptr()),
                TESSERA_OK
            );
            let config = config.assume_init();
            let r = tessera_agent_new(&config, signer, null(), null_mut(), 0, &mut a);
            assert_eq!(r, TESSERA_OK);
            assert_eq!(tessera_agent_connect(a, 1), TESSERA_OK);
        }
        transmits(a, 1);
        let welcome = Welcome {
            version: 1,
            challenge: [3; 32],
            heartbeat_ms: 0,
        };
        feed(a, 2, &Message::Welcome(welcome));
        let evidence = transmits(a, 2)
            .iter()
            .find_map(|f| match Message::decode(f) {
                Ok(Message::Evidence(b)) => Some(
                    tessera_core::attest::Evidence::verify(b.bytes, &[3; 32]).expect("verifies"),
                ),
                _ => None,
            })
            .expect("evidence sent");
        // SAFETY: a live agent, not used again.
        unsafe { tessera_agent_free(a) };
        evidence
    }

    #[test]
    fn a_signer_names_the_hardware_report_its_callback_makes() {
        use tessera_core::attest::HardwareReportKind;
        // Read and written through this pointer only, by the callback and
        // the test alike.
        let seen: *mut ([u8; 32], bool) =
            std::boxed::Box::into_raw(std::boxed::Box::new(([0; 32], false)));
        let userdata = seen.cast::<c_void>();
        let mut signer = null_mut();
        // SAFETY: valid pointers; `seen` outlives the agents below.
        unsafe {
            assert_eq!(
                tessera_signer_from_seed([8; 32].as_ptr(), &mut signer),
                TESSERA_OK
            );
            assert_eq!(
                tessera_signer_set_hardware_report(signer, Some(report), userdata),
                TESSERA_OK
            );
            assert_eq!(
                tessera_signer_set_hardware_report(null_mut(), Some(report), userdata),
                TESSERA_NULL_ARGUMENT
            );
        }
        let e = evidence_of(signer);
        // SAFETY: live until freed at the end; no callback runs now.
        assert_eq!(
            unsafe { (*seen).0 },
            e.hardware_report_nonce(),
            "made for the nonce"
        );
        assert_eq!(e.hardware_report.kind, HardwareReportKind::TPM2_QUOTE);
        assert_eq!(
            e.hardware_report.hash,
            tessera_core::attest::sha256(&e.hardware_report_nonce())
        );
        // A callback that fails names no report.
        // SAFETY: as above.
        unsafe { (*seen).1 = true };
        let mut signer = null_mut();
        // SAFETY: as above.
        unsafe {
            assert_eq!(
                tessera_signer_from_seed([8; 32].as_ptr(), &mut signer),
                TESSERA_OK
            );
            assert_eq!(
                tessera_signer_set_hardware_report(signer, Some(report), userdata),
                TESSERA_OK
            );
        }
        let e = evidence_of(signer);
        assert_eq!(e.hardware_report.kind, HardwareReportKind::NONE);
        assert_eq!(e.hardware_report.hash, [0; 32]);
        // NULL takes the callback away.
        // SAFETY: as above.
        unsafe { (*seen).1 = false };
        let mut signer = null_mut();
        // SAFETY: as above.
        unsafe {
            assert_eq!(
                tessera_signer_from_seed([8; 32].as_ptr(), &mut signer),
                TESSERA_OK
            );
            assert_eq!(
                tessera_signer_set_hardware_report(signer, Some(report), userdata),
                TESSERA_OK
            );
            assert_eq!(
                tessera_signer_set_hardware_report(signer, None, null_mut()),
                TESSERA_OK
            );
        }
        assert_eq!(
            evidence_of(signer).hardware_report.kind,
            HardwareReportKind::NONE
        );
        // SAFETY: from `Box::into_raw` above; no signer holds it any more.
        drop(unsafe { std::boxed::Box::from_raw(seen) });
    }

    #[test]
    fn an_entry_point_that_no_c_string_holds_fails_as_the_gate_fails_it() {
        let a = agent_assigned("main");
        assert_eq!(entry_point(a), (TESSERA_OK, b"main".to_vec()));
        // SAFETY: a live agent, not used again.
        unsafe { tessera_agent_free(a) };

        // A coordinator names "main\0evil": the Rust provider's gate finds no
        // such entry point and fails the job; a C host reading it as a C
        // string would run "main" and sign a receipt for "main\0evil".
        let a = agent_assigned("main\0evil");
        let no_entry_point = TESSERA_KERNEL_BASE + u32::from(KernelRule::NoEntryPoint as u16);
        assert_eq!(entry_point(a).0, no_entry_point);
        // SAFETY: a live agent, not used again.
        unsafe { tessera_agent_free(a) };
    }

    #[test]
    fn header_limits_are_the_core_limits() {
        use tessera_core::limits;
        assert_eq!(TESSERA_MAX_FRAME, limits::MAX_FRAME);
        assert_eq!(TESSERA_CHUNK_SIZE, limits::CHUNK_SIZE);
        assert_eq!(TESSERA_MAX_INPUT_PIECE, limits::MAX_INPUT_PIECE);
        assert_eq!(TESSERA_TRANSMIT_BUFFER, limits::TRANSMIT_BUFFER);
        assert_eq!(TESSERA_MAX_JOBS, limits::MAX_JOBS);
        assert_eq!(tessera_max_jobs(), limits::MAX_JOBS);
        assert_eq!(TESSERA_MAX_BUFFERS, limits::MAX_BUFFERS);
        assert_eq!(TESSERA_RECEIPT_LEN, tessera_core::attest::RECEIPT_LEN);
        assert_eq!(
            TESSERA_RECEIPT_MAX_LEN,
            tessera_core::attest::MAX_RECEIPT_LEN
        );
        assert_eq!(TESSERA_MAX_RECORD_BYTES, MAX_RECORD_BYTES);
    }
}
