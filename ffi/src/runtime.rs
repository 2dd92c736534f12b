//! The network runtime (the hosted path): `tessera_runtime_*` and the log
//! callback.
//!
//! A runtime is a provider: it connects to the coordinator over TLS, keeps
//! the session up (reconnecting with backoff), runs jobs on the GPU through
//! the Vulkan dispatcher on a worker thread (a started runtime runs a job
//! due within `inline_deadline_ms` that it holds alone on its own thread,
//! except with a host executor), stores results until they are
//! acknowledged, and drains on request. Build it from the operator's TOML
//! file (`tessera_runtime_new_from_toml`, the same file `tessera-agent`
//! reads) or from a struct (`tessera_runtime_new`), then either give it a
//! thread (`tessera_runtime_start`, later `tessera_runtime_wait`) or step it
//! from the host's own loop: `poll()` the descriptor of
//! `tessera_runtime_fd` until `tessera_runtime_next_wakeup`, then call
//! `tessera_runtime_step`.

use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, TryLockError};
use std::thread::JoinHandle;
use std::time::Duration;

use tessera_core::net::{DrainHandle, Runtime, Status};
use tessera_core::operator::{
    CapacitySection, DeviceSection, KeySection, OperatorConfig, OperatorError, PricingSection,
    StoreSection, TimersSection, TlsSection,
};
use tessera_core::ConnState;

use crate::agent::{tessera_policy, tessera_signer, AnySigner};
use crate::boundary::{guard, new_handle, non_null};
use crate::*;

enum Mode {
    /// Stepped by the host.
    Stepped(Box<Runtime<AnySigner>>),
    /// Run by its own thread until drained; joined by `tessera_runtime_wait`.
    Threaded(JoinHandle<(Box<Runtime<AnySigner>>, tessera_result)>),
    /// Between states, or after `tessera_runtime_wait`: the runtime is kept
    /// (its drop closes the worker) until `tessera_runtime_free`.
    Done(#[allow(dead_code)] Option<Box<Runtime<AnySigner>>>),
}

/// What is shared between the runtime's owner and other threads.
struct Shared {
    status: Mutex<Status>,
    /// Whether the runtime has drained and stopped, as of its last step.
    finished: AtomicBool,
    accepting: AtomicBool,
    /// A drain the host asked for, not started yet.
    drain_requested: AtomicBool,
    /// Its deadline, in milliseconds (0: the configured one).
    drain_timeout_ms: AtomicU64,
    last_error: Mutex<String>,
}

/// A provider on the network. Functions taking a `const tessera_runtime *`
/// (status, drain, accepting jobs, descriptor) may be called from any
/// thread at any time: while the runtime runs on its own thread, while
/// another thread steps it, from its callbacks. The others need the runtime
/// to themselves; one called from a callback of another (a log line
/// written during a step) returns `TESSERA_IN_USE`.
pub struct tessera_runtime {
    /// Held by each call that steps, starts or waits for the runtime, so
    /// that such a call made while another runs (from a log or signer
    /// callback) finds it held and returns `TESSERA_IN_USE`. The
    /// thread-safe functions never take it.
    mode: Mutex<Mode>,
    drain: DrainHandle,
    fd: c_int,
    public_key: [u8; 32],
    shared: Arc<Shared>,
    /// The configured `inline_deadline_ms`, which `tessera_runtime_start`
    /// applies (a stepped runtime runs no job inside a step).
    inline_deadline: Duration,
}

fn publish(rt: &Runtime<AnySigner>, shared: &Shared) {
    if let Ok(mut s) = shared.status.lock() {
        *s = rt.status();
    }
    shared.finished.store(rt.is_finished(), Ordering::SeqCst);
}

/// The runtime's mode, for a call that steps, starts or waits for it:
/// `TESSERA_IN_USE` while another such call runs (this one came from its
/// callback), `TESSERA_PANIC` after one panicked.
fn lock_mode(r: &tessera_runtime) -> Result<MutexGuard<'_, Mode>, tessera_result> {
    match r.mode.try_lock() {
        Ok(mode) => Ok(mode),
        Err(TryLockError::WouldBlock) => Err(TESSERA_IN_USE),
        Err(TryLockError::Poisoned(_)) => Err(TESSERA_PANIC),
    }
}

/// One step, with what the host set since the last one applied first.
fn step(
    rt: &mut Runtime<AnySigner>,
    shared: &Shared,
    max_wait: Option<Duration>,
) -> tessera_result {
    rt.set_accepting_jobs(shared.accepting.load(Ordering::SeqCst));
    // A drain the host asked for starts here, its deadline set first, so
    // the deadline cannot miss the drain it belongs to.
    if shared.drain_requested.swap(false, Ordering::SeqCst) {
        let drain_ms = shared.drain_timeout_ms.swap(0, Ordering::SeqCst);
        if drain_ms > 0 {
            rt.set_drain_timeout(Duration::from_millis(drain_ms));
        }
        rt.drain_handle().drain();
    }
    let r = match rt.step(max_wait) {
        Ok(()) => TESSERA_OK,
        Err(e) => {
            if let Ok(mut last) = shared.last_error.lock() {
                *last = e.to_string();
            }
            e.code()
        }
    };
    publish(rt, shared);
    r
}

fn wrap(mut rt: Runtime<AnySigner>, out: *mut *mut tessera_runtime) -> tessera_result {
    // Stepped from the host's loop (a render engine's frame), a step runs no
    // job: every job goes to the worker thread. `tessera_runtime_start`
    // lets a job due soon run on the runtime's own thread, as configured.
    let inline_deadline = rt.inline_deadline();
    rt.set_inline_deadline(Duration::ZERO);
    #[cfg(unix)]
    let fd = rt.as_raw_fd();
    #[cfg(not(unix))]
    let fd = -1;
    let shared = Arc::new(Shared {
        status: Mutex::new(rt.status()),
        finished: AtomicBool::new(rt.is_finished()),
        accepting: AtomicBool::new(true),
        drain_requested: AtomicBool::new(false),
        drain_timeout_ms: AtomicU64::new(0),
        last_error: Mutex::new(String::new()),
    });
    new_handle(
        tessera_runtime {
            drain: rt.drain_handle(),
            fd,
            public_key: rt.agent().public_key(),
            mode: Mutex::new(Mode::Stepped(Box::new(rt))),
            shared,
            inline_deadline,
        },
        out,
    )
}

/// Writes `text` into the caller's optional error buffer.
///
/// # Safety
/// `error` NULL or `error_len` writable bytes.
unsafe fn say(error: *mut c_char, error_len: usize, text: &str) {
    if error.is_null() || error_len == 0 {
        return;
    }
    let mut t = Text::<512>::new();
    t.push(text);
    // SAFETY: by the caller, `error_len >= 1` writable bytes at `error`.
    unsafe { t.write_c(error.cast(), error_len, core::ptr::null_mut()) };
}

/// # Safety
/// `s` NULL or NUL-terminated.
unsafe fn opt_str<'a>(s: *const c_char, field: &str) -> Result<Option<&'a str>, String> {
    if s.is_null() {
        return Ok(None);
    }
    // SAFETY: non-NULL and NUL-terminated, by the caller.
    unsafe { CStr::from_ptr(s) }
        .to_str()
        .map(Some)
        .map_err(|_| format!("{field} must be UTF-8"))
}

fn operator_error(e: OperatorError, error: *mut c_char, error_len: usize) -> tessera_result {
    // SAFETY: the caller of the entry point promised (error, error_len).
    unsafe { say(error, error_len, &e.to_string()) };
    e.code()
}

/// A provider from the operator's TOML file at `path` (README, "The operator
/// program"): device key (created if missing), result store, GPU and
/// coordinator as the file says. On error `error` (when given) holds what is
/// wrong, NUL-terminated and cut to fit.
///
/// The GPU driver may keep what it compiles, sealed kernels too, in an
/// on-disk cache of its own: a program that runs sealed jobs sets
/// `MESA_SHADER_CACHE_DISABLE=true` and `__GL_SHADER_DISK_CACHE=0` in its
/// environment before it loads Vulkan, as `tessera-agent` does (the library
/// does not change a host's environment; docs/VULKAN.md, "Isolation").
///
/// # Safety
/// `path` NUL-terminated; `error` NULL or `error_len` writable bytes; `out`
/// valid for a write.
#[no_mangle]
pub unsafe extern "C" fn tessera_runtime_new_from_toml(
    path: *const c_char,
    error: *mut c_char,
    error_len: usize,
    out: *mut *mut tessera_runtime,
) -> tessera_result {
    // SAFETY: the caller's promises, and no executor.
    unsafe { tessera_runtime_new_from_toml_with(path, core::ptr::null(), error, error_len, out) }
}

/// As `tessera_runtime_new_from_toml`, with jobs run by the host's
/// `executor` (copied; NULL: the Vulkan device, as the file says). The
/// device the file names is still opened: its capabilities make the
/// evidence, and `tessera_job_run_on_device` runs jobs on it.
///
/// # Safety
/// As `tessera_runtime_new_from_toml`; `executor` NULL or valid, its
/// `userdata` and callbacks usable from the runtime's worker thread until
/// the runtime is freed.
#[no_mangle]
pub unsafe extern "C" fn tessera_runtime_new_from_toml_with(
    path: *const c_char,
    executor: *const crate::executor::tessera_executor,
    error: *mut c_char,
    error_len: usize,
    out: *mut *mut tessera_runtime,
) -> tessera_result {
    guard(|| {
        non_null!(path, out);
        // SAFETY: non-NULL and NUL-terminated, by the caller.
        let path = match unsafe { opt_str(path, "path") } {
            Ok(Some(p)) => PathBuf::from(p),
            Ok(None) => return TESSERA_NULL_ARGUMENT,
            Err(e) => {
                // SAFETY: the caller's promise.
                unsafe { say(error, error_len, &e) };
                return TESSERA_INVALID_ARGUMENT;
            }
        };
        let file = match OperatorConfig::load(&path) {
            Ok(f) => f,
            Err(e) => return operator_error(e, error, error_len),
        };
        // The whole file is checked before a key file is created.
        if let Err(e) = file.tls_config() {
            return operator_error(e, error, error_len);
        }
        let signer = match tessera_core::operator::load_or_create_key(&file.key.file) {
            Ok(s) => AnySigner::ed25519(s),
            Err(e) => return operator_error(OperatorError::Key(e), error, error_len),
        };
        // SAFETY: the caller's promises for the executor and error buffer.
        unsafe { build(&file, signer, executor, error, error_len, out) }
    })
}

/// Builds the runtime the file describes, on the host's executor when one
/// is given.
///
/// # Safety
/// `executor` NULL or valid; `(error, error_len)` as the entry point's.
unsafe fn build(
    file: &OperatorConfig,
    signer: AnySigner,
    executor: *const crate::executor::tessera_executor,
    error: *mut c_char,
    error_len: usize,
    out: *mut *mut tessera_runtime,
) -> tessera_result {
    use crate::executor::HostExecutor;
    let built = if executor.is_null() {
        file.build_runtime_with(signer)
    } else {
        // SAFETY: non-NULL and valid, by the caller.
        let callbacks = match unsafe { HostExecutor::callbacks(executor) } {
            Ok(c) => c,
            Err(e) => {
                // SAFETY: the caller's promise.
                unsafe { say(error, error_len, &e) };
                return TESSERA_INVALID_CONFIG;
            }
        };
        file.build_runtime_wrapped(signer, |gpu| HostExecutor::new(callbacks, gpu))
    };
    match built {
        Ok(rt) => wrap(rt, out),
        Err(e) => operator_error(e, error, error_len),
    }
}

/// Where the provider connects and how it trusts the coordinator, what it
/// runs on and where it keeps results. Fill it with
/// `tessera_runtime_config_default`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct tessera_runtime_config {
    /// `sizeof(tessera_runtime_config)`.
    pub size: usize,
    /// The coordinator, `host:port` (NUL-terminated).
    pub coordinator: *const c_char,
    /// The name on its certificate (NULL: the host part of `coordinator`).
    pub server_name: *const c_char,
    /// PEM file of the CA that signs the coordinator's certificate; or NULL
    /// and `pinned_key_sha256` set.
    pub ca_file: *const c_char,
    /// SHA-256 of the coordinator's SubjectPublicKeyInfo (32 bytes), or NULL.
    pub pinned_key_sha256: *const u8,
    /// Directory where results wait for acknowledgement, crash-safely
    /// (NULL: in memory only, lost on exit).
    pub store_dir: *const c_char,
    /// Offers, prices and timers (`max_bytes_*` and `max_concurrent` too).
    pub policy: tessera_policy,
    /// Vulkan device index, or -1 for the default device (or `device_name`).
    pub device_index: i32,
    /// Part of the Vulkan device name to pick, or NULL.
    pub device_name: *const c_char,
    /// Run the Khronos SPIR-V validator on every new kernel (default true).
    pub spirv_val_gate: CBool,
    /// How long a drain waits for acknowledgements, milliseconds.
    pub drain_timeout_ms: u64,
    /// A host that runs jobs itself (`tessera_executor`, copied), or NULL:
    /// jobs run on the Vulkan device.
    pub executor: *const crate::executor::tessera_executor,
}

/// Fills `out` with the defaults (and its `size`); set `coordinator` and the
/// trust fields.
///
/// # Safety
/// `out` valid for a write.
#[no_mangle]
pub unsafe extern "C" fn tessera_runtime_config_default(
    out: *mut tessera_runtime_config,
) -> tessera_result {
    guard(|| {
        non_null!(out);
        let mut agent = core::mem::MaybeUninit::<crate::agent::tessera_agent_config>::uninit();
        // SAFETY: a valid pointer to space for the struct.
        let r = unsafe { crate::agent::tessera_agent_config_default(agent.as_mut_ptr()) };
        if r != TESSERA_OK {
            return r;
        }
        // SAFETY: initialised by the call above, which returned OK.
        let agent = unsafe { agent.assume_init() };
        let timers = TimersSection::default();
        let capacity = CapacitySection::default();
        let mut policy = agent.policy;
        policy.max_concurrent = u32::from(capacity.max_concurrent);
        policy.heartbeat_interval_ms = timers.heartbeat_ms;
        policy.peer_timeout_ms = timers.peer_timeout_ms;
        // SAFETY: valid for a write, by the caller.
        unsafe {
            out.write(tessera_runtime_config {
                size: core::mem::size_of::<tessera_runtime_config>(),
                coordinator: core::ptr::null(),
                server_name: core::ptr::null(),
                ca_file: core::ptr::null(),
                pinned_key_sha256: core::ptr::null(),
                store_dir: core::ptr::null(),
                policy,
                device_index: -1,
                device_name: core::ptr::null(),
                spirv_val_gate: CBool::TRUE,
                drain_timeout_ms: timers.drain_timeout_s * 1000,
                executor: core::ptr::null(),
            })
        };
        TESSERA_OK
    })
}

/// # Safety
/// Every pointer in `c` NULL or valid as documented.
unsafe fn operator_config(c: &tessera_runtime_config) -> Result<OperatorConfig, String> {
    // SAFETY (all `opt_str` calls): the caller's promise for the fields.
    let coordinator = unsafe { opt_str(c.coordinator, "coordinator") }?
        .ok_or("coordinator is required (host:port)")?;
    let pin = if c.pinned_key_sha256.is_null() {
        None
    } else {
        // SAFETY: 32 readable bytes, by the caller.
        let key = unsafe { core::slice::from_raw_parts(c.pinned_key_sha256, 32) };
        Some(key.iter().map(|b| format!("{b:02x}")).collect::<String>())
    };
    let device_index = match c.device_index {
        -1 => None,
        i if i >= 0 => Some(i as usize),
        _ => return Err("device_index must be -1 or a device index".into()),
    };
    let max_concurrent = u8::try_from(c.policy.max_concurrent).map_err(|_| {
        format!(
            "policy.max_concurrent {}",
            tessera_core::limits::MAX_CONCURRENT_RULE
        )
    })?;
    let spirv_val_gate = c
        .spirv_val_gate
        .get()
        .ok_or("spirv_val_gate must be false or true")?;
    Ok(OperatorConfig {
        coordinator: coordinator.to_string(),
        // SAFETY: as above.
        server_name: unsafe { opt_str(c.server_name, "server_name") }?.map(str::to_string),
        tls: TlsSection {
            // SAFETY: as above.
            ca_file: unsafe { opt_str(c.ca_file, "ca_file") }?.map(PathBuf::from),
            pinned_key_sha256: pin,
        },
        key: KeySection {
            file: PathBuf::new(),
        },
        // SAFETY: as above.
        store: unsafe { opt_str(c.store_dir, "store_dir") }?.map(|d| StoreSection {
            dir: PathBuf::from(d),
        }),
        pricing: PricingSection {
            base: c.policy.price_base,
            per_gpu_ms: c.policy.price_per_gpu_ms,
            per_mib_in: c.policy.price_per_mib_in,
            per_mib_out: c.policy.price_per_mib_out,
            floor: c.policy.floor,
        },
        capacity: CapacitySection {
            max_concurrent,
            max_bytes_in: c.policy.max_bytes_in,
            max_bytes_out: c.policy.max_bytes_out,
        },
        device: DeviceSection {
            index: device_index,
            // SAFETY: as above.
            name: unsafe { opt_str(c.device_name, "device_name") }?.map(str::to_string),
            spirv_val_gate,
            ..DeviceSection::default()
        },
        timers: TimersSection {
            heartbeat_ms: c.policy.heartbeat_interval_ms,
            peer_timeout_ms: c.policy.peer_timeout_ms,
            drain_timeout_s: c.drain_timeout_ms.div_ceil(1000),
            // Below the heartbeat interval, as the TOML path requires.
            inline_deadline_ms: TimersSection::default()
                .inline_deadline_ms
                .min(c.policy.heartbeat_interval_ms / 2),
            ..TimersSection::default()
        },
        // The operator program's listener; a library host exports its own.
        metrics: Default::default(),
    })
}

/// A provider from a struct, signing with `signer` (built in, or callbacks
/// to a secure element: then they are called from the thread that steps
/// the runtime, or from its own thread after `tessera_runtime_start`).
/// The call takes `signer` over whatever it returns: do not use or free it
/// afterwards.
///
/// # Safety
/// `config` valid with `size` set and its strings NUL-terminated; `signer`
/// a live signer; `error` NULL or `error_len` writable bytes; `out` valid.
#[no_mangle]
pub unsafe extern "C" fn tessera_runtime_new(
    config: *const tessera_runtime_config,
    signer: *mut tessera_signer,
    error: *mut c_char,
    error_len: usize,
    out: *mut *mut tessera_runtime,
) -> tessera_result {
    guard(|| {
        non_null!(signer);
        // SAFETY: a live signer from `new_handle`, by the caller; it is the
        // runtime's (or dropped) from here on, whatever the result.
        let signer = unsafe { tessera_signer::take(signer) };
        non_null!(config, out);
        // SAFETY: non-NULL and valid, by the caller.
        let c = unsafe { &*config };
        if c.size < core::mem::size_of::<tessera_runtime_config>() {
            return TESSERA_INVALID_ARGUMENT;
        }
        // SAFETY: the caller's promise for the struct's pointers.
        let file = match unsafe { operator_config(c) } {
            Ok(f) => f,
            Err(e) => {
                // SAFETY: the caller's promise.
                unsafe { say(error, error_len, &e) };
                return TESSERA_INVALID_CONFIG;
            }
        };
        // SAFETY: the caller's promises for the executor and error buffer.
        unsafe { build(&file, signer, c.executor, error, error_len, out) }
    })
}

/// Writes the provider's public key (32 bytes: the device key that signs
/// its evidence and receipts, as a settlement party verifies them) into
/// `out`. Any thread, any time.
///
/// # Safety
/// `runtime` a live runtime; `out` 32 writable bytes.
#[no_mangle]
pub unsafe extern "C" fn tessera_runtime_public_key(
    runtime: *const tessera_runtime,
    out: *mut u8,
) -> tessera_result {
    guard(|| {
        non_null!(runtime, out);
        // SAFETY: a live runtime, by the caller; the key never changes.
        let key = unsafe { &(*runtime).public_key };
        // SAFETY: 32 writable bytes, by the caller.
        unsafe { core::ptr::copy_nonoverlapping(key.as_ptr(), out, 32) };
        TESSERA_OK
    })
}

/// Called with each receipt the provider signs (`tessera_runtime_set_receipt_callback`):
/// the job and the receipt's bytes, valid during the call.
pub type tessera_receipt_fn =
    Option<unsafe extern "C" fn(userdata: *mut c_void, job: u64, receipt: *const u8, len: usize)>;

/// A receipt callback and its userdata, moved to the thread that steps the
/// runtime.
struct ReceiptCallback {
    f: unsafe extern "C" fn(*mut c_void, u64, *const u8, usize),
    userdata: *mut c_void,
}

// SAFETY: the caller of `tessera_runtime_set_receipt_callback` promised
// that the callback and userdata may be used from the thread that steps
// the runtime (its own after `tessera_runtime_start`).
unsafe impl Send for ReceiptCallback {}

/// Calls `callback` with each receipt the provider signs (completed and
/// failed jobs alike), once it is stored and before it is sent: a host
/// that keeps its own receipt log for settlement, or shows earnings as
/// they are signed. It is called from the thread that steps the runtime
/// (its own after `tessera_runtime_start`) and should return quickly. NULL
/// removes it. Set it before `tessera_runtime_start` (`TESSERA_IN_USE`
/// after).
///
/// # Safety
/// `runtime` a live runtime; `callback` and `userdata` usable from the
/// thread that steps it until the runtime is freed or the callback
/// replaced.
#[no_mangle]
pub unsafe extern "C" fn tessera_runtime_set_receipt_callback(
    runtime: *mut tessera_runtime,
    callback: tessera_receipt_fn,
    userdata: *mut c_void,
) -> tessera_result {
    guard(|| {
        non_null!(runtime);
        // SAFETY: a live runtime, by the caller.
        let r = unsafe { &*runtime };
        let mut mode = match lock_mode(r) {
            Ok(m) => m,
            Err(code) => return code,
        };
        let Mode::Stepped(rt) = &mut *mode else {
            return TESSERA_IN_USE;
        };
        match callback {
            Some(f) => {
                let cb = ReceiptCallback { f, userdata };
                rt.set_receipt_hook(move |job, receipt| {
                    let cb = &cb;
                    // SAFETY: the host's callback with its userdata, on the
                    // thread the caller allowed; the bytes live for the call.
                    unsafe { (cb.f)(cb.userdata, job, receipt.as_ptr(), receipt.len()) }
                });
            }
            None => rt.clear_receipt_hook(),
        }
        TESSERA_OK
    })
}

/// Frees the runtime. A runtime on its own thread is asked to drain first and
/// waited for (at most its drain timeout), unless this is called from that
/// thread (a callback), which then drains and ends on its own. NULL is a
/// no-op, and so is a runtime stepped, started or waited for now (from a
/// callback of that call: freeing it there is a bug).
///
/// # Safety
/// `runtime` NULL or a live runtime, not used again.
#[no_mangle]
pub unsafe extern "C" fn tessera_runtime_free(runtime: *mut tessera_runtime) {
    guard(|| {
        if runtime.is_null() {
            return TESSERA_OK;
        }
        {
            // SAFETY: live, by the caller; shared access only.
            let r = unsafe { &*runtime };
            if let Err(TryLockError::WouldBlock) = r.mode.try_lock() {
                return TESSERA_IN_USE;
            }
        }
        // SAFETY: a live runtime from `new_handle` in no call now, by the
        // caller and the check above.
        let rt = unsafe { crate::boundary::take_handle(runtime) };
        let mode = rt.mode.into_inner().unwrap_or_else(|e| e.into_inner());
        if let Mode::Threaded(join) = mode {
            rt.drain.drain();
            if join.thread().id() != std::thread::current().id() {
                let _ = join.join();
            }
        }
        TESSERA_OK
    });
}

/// Runs `f` on a runtime the host steps (`TESSERA_IN_USE` while its own
/// thread runs it, `TESSERA_STOPPED` after `tessera_runtime_wait`).
///
/// # Safety
/// `runtime` NULL or live, used by no other thread now.
unsafe fn with_stepped(
    runtime: *mut tessera_runtime,
    f: impl FnOnce(&mut Runtime<AnySigner>, &Shared) -> tessera_result,
) -> tessera_result {
    guard(|| {
        non_null!(runtime);
        // SAFETY: non-NULL and live, by the caller; shared access only: the
        // runtime is reached through its lock.
        let r = unsafe { &*runtime };
        let mut mode = match lock_mode(r) {
            Ok(mode) => mode,
            Err(code) => return code,
        };
        match &mut *mode {
            Mode::Stepped(rt) => f(rt, &r.shared),
            Mode::Threaded(_) => TESSERA_IN_USE,
            Mode::Done(_) => TESSERA_STOPPED,
        }
    })
}

/// Runs `f` on a runtime shared with other threads.
///
/// # Safety
/// `runtime` NULL or live.
unsafe fn with_shared(
    runtime: *const tessera_runtime,
    f: impl FnOnce(&tessera_runtime) -> tessera_result,
) -> tessera_result {
    guard(|| {
        non_null!(runtime);
        // SAFETY: non-NULL and live, by the caller; only shared state is used.
        f(unsafe { &*runtime })
    })
}

/// One turn of the host's loop: waits at most `max_wait_ms` for the network
/// or a job (0: not at all), then does all work that is ready. Call it when
/// the descriptor of `tessera_runtime_fd` is readable or at
/// `tessera_runtime_next_wakeup`, and at least every few hundred
/// milliseconds while jobs run. No job runs inside a step: every job runs
/// on the runtime's worker thread.
///
/// # Safety
/// `runtime` a live runtime used by no other thread now.
#[no_mangle]
pub unsafe extern "C" fn tessera_runtime_step(
    runtime: *mut tessera_runtime,
    max_wait_ms: u64,
) -> tessera_result {
    let f = |rt: &mut Runtime<AnySigner>, shared: &Shared| {
        step(rt, shared, Some(Duration::from_millis(max_wait_ms)))
    };
    // SAFETY: the caller's promise.
    unsafe { with_stepped(runtime, f) }
}

/// Writes how many milliseconds from now the runtime must be stepped (0:
/// now), rounded up, so that a host never steps it before its time and
/// spins; `TESSERA_NOTHING` when only the descriptor matters. On Linux the
/// descriptor also becomes readable when that time comes, to the
/// microsecond; elsewhere the host wakes up to a millisecond late.
///
/// # Safety
/// `runtime` a live runtime used by no other thread now; `out` valid.
#[no_mangle]
pub unsafe extern "C" fn tessera_runtime_next_wakeup(
    runtime: *mut tessera_runtime,
    out: *mut u64,
) -> tessera_result {
    let f = |rt: &mut Runtime<AnySigner>, _: &Shared| {
        non_null!(out);
        match rt.next_wakeup() {
            Some(t) => {
                // SAFETY: valid for a write, by the caller.
                unsafe { out.write(millis_until(t)) };
                TESSERA_OK
            }
            None => TESSERA_NOTHING,
        }
    };
    // SAFETY: the caller's promise.
    unsafe { with_stepped(runtime, f) }
}

/// Whole milliseconds from now until `t`, rounded up: a time 300 µs away is
/// 1, not 0 (which would have a host step the runtime again and again
/// until it is due); one already past is 0.
pub(crate) fn millis_until(t: std::time::Instant) -> u64 {
    millis_between(std::time::Instant::now(), t)
}

/// Whole milliseconds from `now` until `t`, rounded up; 0 when `t` is not
/// after `now`.
fn millis_between(now: std::time::Instant, t: std::time::Instant) -> u64 {
    let left = t.saturating_duration_since(now);
    let ms = left.as_millis() + u128::from(left.subsec_nanos() % 1_000_000 != 0);
    u64::try_from(ms).unwrap_or(u64::MAX)
}

/// Writes the descriptor that becomes readable when the runtime has work
/// (`poll()` it for reading; do not read from or close it).
///
/// # Safety
/// `runtime` a live runtime; `out` valid for a write.
#[no_mangle]
pub unsafe extern "C" fn tessera_runtime_fd(
    runtime: *const tessera_runtime,
    out: *mut c_int,
) -> tessera_result {
    let f = |r: &tessera_runtime| {
        non_null!(out);
        if r.fd < 0 {
            return TESSERA_UNSUPPORTED;
        }
        // SAFETY: valid for a write, by the caller.
        unsafe { out.write(r.fd) };
        TESSERA_OK
    };
    // SAFETY: the caller's promise.
    unsafe { with_shared(runtime, f) }
}

/// Gives the runtime a thread of its own, which steps it until it has
/// drained. With the Vulkan executor, a job the runtime holds alone and
/// that is due within `[timers] inline_deadline_ms` (250 unless set; its
/// kernel already validated and not sent sealed) runs on that thread, skipping two
/// thread hand-overs. Afterwards only the `const` functions, `tessera_runtime_wait`
/// and `tessera_runtime_free` apply (the others return `TESSERA_IN_USE`).
///
/// # Safety
/// `runtime` a live runtime used by no other thread now.
#[no_mangle]
pub unsafe extern "C" fn tessera_runtime_start(runtime: *mut tessera_runtime) -> tessera_result {
    guard(|| {
        non_null!(runtime);
        // SAFETY: non-NULL and live, by the caller; shared access only.
        let r = unsafe { &*runtime };
        let mut mode = match lock_mode(r) {
            Ok(mode) => mode,
            Err(code) => return code,
        };
        let mut rt = match core::mem::replace(&mut *mode, Mode::Done(None)) {
            Mode::Stepped(rt) => rt,
            other => {
                let code = match other {
                    Mode::Threaded(_) => TESSERA_IN_USE,
                    _ => TESSERA_STOPPED,
                };
                *mode = other;
                return code;
            }
        };
        let shared = r.shared.clone();
        rt.set_inline_deadline(r.inline_deadline);
        let spawned = std::thread::Builder::new()
            .name("tessera-runtime".into())
            .spawn(move || {
                let mut result = TESSERA_OK;
                while !rt.is_finished() {
                    result = step(&mut rt, &shared, Some(Duration::from_millis(250)));
                    if result != TESSERA_OK {
                        break;
                    }
                }
                (rt, result)
            });
        match spawned {
            Ok(join) => {
                *mode = Mode::Threaded(join);
                TESSERA_OK
            }
            Err(_) => TESSERA_IO,
        }
    })
}

/// Waits until the runtime's own thread ends (it drained, or failed) and
/// returns how it ended. After it the runtime only reports status.
///
/// # Safety
/// `runtime` a live runtime used by no other thread now.
#[no_mangle]
pub unsafe extern "C" fn tessera_runtime_wait(runtime: *mut tessera_runtime) -> tessera_result {
    guard(|| {
        non_null!(runtime);
        // SAFETY: non-NULL and live, by the caller; shared access only.
        let r = unsafe { &*runtime };
        let mut mode = match lock_mode(r) {
            Ok(mode) => mode,
            Err(code) => return code,
        };
        match core::mem::replace(&mut *mode, Mode::Done(None)) {
            // From a callback on the runtime's own thread: it cannot wait
            // for itself.
            Mode::Threaded(join) if join.thread().id() == std::thread::current().id() => {
                *mode = Mode::Threaded(join);
                TESSERA_IN_USE
            }
            Mode::Threaded(join) => {
                let result = match join.join() {
                    Ok((rt, result)) => {
                        publish(&rt, &r.shared);
                        *mode = Mode::Done(Some(rt));
                        result
                    }
                    Err(_) => TESSERA_PANIC,
                };
                r.shared.finished.store(true, Ordering::SeqCst);
                result
            }
            other => {
                let code = match other {
                    Mode::Stepped(_) => TESSERA_INVALID_ARGUMENT,
                    _ => TESSERA_STOPPED,
                };
                *mode = other;
                code
            }
        }
    })
}

/// Asks the runtime to drain: finish the jobs it holds, take no new ones,
/// say goodbye; it stops anyway `timeout_ms` after the drain starts (0: the
/// configured `drain_timeout_ms`), leaving unacknowledged results in the
/// store for the next start. Any thread may call it; the drain starts at
/// the runtime's next step, which it wakes.
///
/// # Safety
/// `runtime` a live runtime.
#[no_mangle]
pub unsafe extern "C" fn tessera_runtime_drain(
    runtime: *const tessera_runtime,
    timeout_ms: u64,
) -> tessera_result {
    let f = |r: &tessera_runtime| {
        r.shared
            .drain_timeout_ms
            .store(timeout_ms, Ordering::SeqCst);
        r.shared.drain_requested.store(true, Ordering::SeqCst);
        r.drain.wake();
        TESSERA_OK
    };
    // SAFETY: the caller's promise.
    unsafe { with_shared(runtime, f) }
}

/// Whether the device takes new work (a render engine says false while
/// its user renders): offers are declined meanwhile; jobs already taken run
/// on. Any thread may call it; it applies at the next step.
///
/// # Safety
/// `runtime` a live runtime.
#[no_mangle]
pub unsafe extern "C" fn tessera_runtime_set_accepting_jobs(
    runtime: *const tessera_runtime,
    accepting: bool,
) -> tessera_result {
    let f = |r: &tessera_runtime| {
        r.shared.accepting.store(accepting, Ordering::SeqCst);
        r.drain_wake();
        TESSERA_OK
    };
    // SAFETY: the caller's promise.
    unsafe { with_shared(runtime, f) }
}

impl tessera_runtime {
    /// Wakes a runtime waiting in `step` so it applies a change at once.
    fn drain_wake(&self) {
        self.drain.wake();
    }
}

/// What an operator sees (`tessera_runtime_status`).
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct tessera_status {
    /// `sizeof(tessera_status)`; set it before the call.
    pub size: usize,
    /// `TESSERA_CONN_*`.
    pub state: u32,
    /// Whether the runtime has drained and stopped.
    pub finished: bool,
    /// The device takes no new work now.
    pub device_unavailable: bool,
    /// Jobs completed and acknowledged.
    pub jobs_completed: u64,
    /// Jobs failed (acknowledged).
    pub jobs_failed: u64,
    /// Jobs held now.
    pub active_jobs: u64,
    /// Sum of the prices of acknowledged jobs.
    pub earnings: u64,
    /// Sessions established since start.
    pub sessions: u64,
}

/// Writes the runtime's status as of its last step. Any thread may call
/// it, also while the runtime runs on its own thread.
///
/// # Safety
/// `runtime` a live runtime; `out` valid, with `size` set.
#[no_mangle]
pub unsafe extern "C" fn tessera_runtime_status(
    runtime: *const tessera_runtime,
    out: *mut tessera_status,
) -> tessera_result {
    let f = |r: &tessera_runtime| {
        non_null!(out);
        // SAFETY: valid, by the caller.
        if unsafe { (*out).size } < core::mem::size_of::<tessera_status>() {
            return TESSERA_INVALID_ARGUMENT;
        }
        let Ok(s) = r.shared.status.lock() else {
            return TESSERA_PANIC;
        };
        let status = tessera_status {
            size: core::mem::size_of::<tessera_status>(),
            state: match s.state {
                Some(ConnState::AwaitingWelcome) => crate::agent::TESSERA_CONN_AWAITING_WELCOME,
                Some(ConnState::AwaitingReady) => crate::agent::TESSERA_CONN_AWAITING_READY,
                Some(ConnState::Ready) => crate::agent::TESSERA_CONN_READY,
                Some(ConnState::Closed) => crate::agent::TESSERA_CONN_CLOSED,
                _ => crate::agent::TESSERA_CONN_DISCONNECTED,
            },
            finished: r.shared.finished.load(Ordering::SeqCst),
            device_unavailable: s.device_unavailable,
            jobs_completed: s.jobs_completed,
            jobs_failed: s.jobs_failed,
            active_jobs: s.active_jobs as u64,
            earnings: s.earnings,
            sessions: s.sessions,
        };
        // SAFETY: valid for a write, by the caller.
        unsafe { out.write(status) };
        TESSERA_OK
    };
    // SAFETY: the caller's promise.
    unsafe { with_shared(runtime, f) }
}

/// Writes the runtime's status line (as `tessera-agent` logs it, with the
/// last connection error) into `buf`, NUL-terminated and cut to fit;
/// `written` gets its length. With a zero `len` (`buf` may then be NULL):
/// `TESSERA_BUFFER_TOO_SMALL`, and `written` gets the buffer length the whole
/// line needs, NUL included.
///
/// # Safety
/// `runtime` a live runtime; `buf` `len` writable bytes; `written` NULL or
/// valid.
#[no_mangle]
pub unsafe extern "C" fn tessera_runtime_status_text(
    runtime: *const tessera_runtime,
    buf: *mut c_char,
    len: usize,
    written: *mut usize,
) -> tessera_result {
    let f = |r: &tessera_runtime| {
        let Ok(s) = r.shared.status.lock() else {
            return TESSERA_PANIC;
        };
        let mut t = Text::<512>::new();
        t.push(&s.to_string());
        if let Ok(last) = r.shared.last_error.lock() {
            if !last.is_empty() {
                t.push(" | stopped: ");
                t.push(&last);
            }
        }
        // SAFETY: the caller's promise for (buf, len) and `written`.
        unsafe { t.write_c_or_size(buf.cast(), len, written) }
    };
    // SAFETY: the caller's promise.
    unsafe { with_shared(runtime, f) }
}

// ----- logging ---------------------------------------------------------------

/// Receives one log line: `level` is `TESSERA_LOG_*`, `target` the module
/// and `message` the text (both NUL-terminated, valid during the call).
/// Called from any of the library's threads, one line at a time. It may
/// call the library: lines written meanwhile on its own thread are dropped,
/// and `tessera_set_log_callback` returns `TESSERA_IN_USE` there. It must
/// return: no C++ exception or `longjmp` may leave it.
pub type tessera_log_fn = Option<
    unsafe extern "C" fn(
        userdata: *mut c_void,
        level: u32,
        target: *const c_char,
        message: *const c_char,
    ),
>;

/// Log level: errors only.
pub const TESSERA_LOG_ERROR: u32 = 1;
/// Log level: and warnings.
pub const TESSERA_LOG_WARN: u32 = 2;
/// Log level: and information (the status line, sessions, jobs).
pub const TESSERA_LOG_INFO: u32 = 3;
/// Log level: and debugging detail.
pub const TESSERA_LOG_DEBUG: u32 = 4;
/// Log level: everything.
pub const TESSERA_LOG_TRACE: u32 = 5;

struct Sink {
    callback: unsafe extern "C" fn(*mut c_void, u32, *const c_char, *const c_char),
    userdata: usize,
}

struct CLogger(Mutex<Option<Sink>>);

thread_local! {
    /// Whether this thread runs the log callback now (and holds the
    /// logger's lock: taking it again would wait forever).
    static IN_LOG_CALLBACK: core::cell::Cell<bool> = const { core::cell::Cell::new(false) };
}

fn in_log_callback() -> bool {
    IN_LOG_CALLBACK.try_with(|c| c.get()).unwrap_or(false)
}

/// Marks this thread as running the log callback, while it lives.
struct InLogCallback;

impl InLogCallback {
    fn enter() -> Self {
        let _ = IN_LOG_CALLBACK.try_with(|c| c.set(true));
        InLogCallback
    }
}

impl Drop for InLogCallback {
    fn drop(&mut self) {
        let _ = IN_LOG_CALLBACK.try_with(|c| c.set(false));
    }
}

impl log::Log for CLogger {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &log::Record<'_>) {
        if in_log_callback() {
            // A line written by a call the callback made.
            return;
        }
        let Ok(sink) = self.0.lock() else { return };
        let Some(sink) = sink.as_ref() else { return };
        let level = match record.level() {
            log::Level::Error => TESSERA_LOG_ERROR,
            log::Level::Warn => TESSERA_LOG_WARN,
            log::Level::Info => TESSERA_LOG_INFO,
            log::Level::Debug => TESSERA_LOG_DEBUG,
            log::Level::Trace => TESSERA_LOG_TRACE,
        };
        let clean = |s: String| CString::new(s.replace('\0', " ")).unwrap_or_default();
        let target = clean(record.target().to_string());
        let message = clean(record.args().to_string());
        let _inside = InLogCallback::enter();
        // SAFETY: the callback and userdata were registered together for
        // this purpose; both strings live through the call.
        unsafe {
            (sink.callback)(
                sink.userdata as *mut c_void,
                level,
                target.as_ptr(),
                message.as_ptr(),
            )
        };
    }

    fn flush(&self) {}
}

/// Sends the library's log lines up to `max_level` (`TESSERA_LOG_*`; 0 turns
/// logging off) to `callback` with `userdata`; NULL `callback` turns it off.
/// Process-wide; call it again to change it: it returns once no thread runs
/// the callback it replaces. `TESSERA_UNSUPPORTED` when the program already
/// installed another logger for Rust's `log` crate; `TESSERA_IN_USE` from
/// inside the log callback.
///
/// # Safety
/// `callback` NULL or callable from any thread with `userdata` until it is
/// replaced.
#[no_mangle]
pub unsafe extern "C" fn tessera_set_log_callback(
    callback: tessera_log_fn,
    userdata: *mut c_void,
    max_level: u32,
) -> tessera_result {
    guard(|| {
        if max_level > TESSERA_LOG_TRACE {
            return TESSERA_INVALID_ARGUMENT;
        }
        if in_log_callback() {
            return TESSERA_IN_USE;
        }
        // The logger, once installed; `None` when the program had installed
        // another one first.
        static LOGGER: OnceLock<Option<&'static CLogger>> = OnceLock::new();
        let installed = LOGGER.get_or_init(|| {
            let logger: &'static CLogger = Box::leak(Box::new(CLogger(Mutex::new(None))));
            log::set_logger(logger).ok().map(|()| logger)
        });
        let Some(logger) = *installed else {
            return TESSERA_UNSUPPORTED;
        };
        let Ok(mut sink) = logger.0.lock() else {
            return TESSERA_PANIC;
        };
        *sink = callback.map(|callback| Sink {
            callback,
            userdata: userdata as usize,
        });
        log::set_max_level(match (callback.is_some(), max_level) {
            (false, _) | (_, 0) => log::LevelFilter::Off,
            (_, TESSERA_LOG_ERROR) => log::LevelFilter::Error,
            (_, TESSERA_LOG_WARN) => log::LevelFilter::Warn,
            (_, TESSERA_LOG_INFO) => log::LevelFilter::Info,
            (_, TESSERA_LOG_DEBUG) => log::LevelFilter::Debug,
            _ => log::LevelFilter::Trace,
        });
        TESSERA_OK
    })
}

#[cfg(test)]
mod tests {
    use super::millis_between;
    use std::time::{Duration, Instant};

    #[test]
    fn a_wake_up_under_a_millisecond_away_is_one_not_zero() {
        let now = Instant::now();
        let at = |d| millis_between(now, d);
        assert_eq!(at(now + Duration::from_micros(300)), 1);
        assert_eq!(at(now + Duration::from_micros(1500)), 2);
        assert_eq!(at(now + Duration::from_secs(10)), 10_000);
        assert_eq!(at(now), 0);
        assert_eq!(at(now - Duration::from_millis(5)), 0);
    }
}
