//! The Vulkan dispatcher (`tessera_dispatcher_*`): list devices, open one,
//! run the start-up benchmark, run untrusted kernels through both gates.
//!
//! A host that drives the sans-IO agent itself (`tessera_agent_*`) runs its
//! jobs here: on `TESSERA_EVENT_RUN_JOB` it builds a `tessera_kernel_job`
//! from the job's spec and inputs, calls `tessera_dispatcher_run`, then
//! sends the outputs and finishes the job, or fails it with what
//! `tessera_dispatcher_last_failure` says.

use std::ffi::{c_char, CStr, CString};
use std::time::Duration;

use tessera_core::gpu_host::{evidence_capabilities, failure_of};
use tessera_core::vulkan::{
    self, BufferSpec, DeviceSelector, Dispatcher, DispatcherConfig, Instance, JobError, KernelJob,
    KhronosConfig,
};

use crate::agent::{tessera_device, tessera_usage};
use crate::boundary::{bytes, guard, new_handle, non_null, write_opt};
use crate::*;

/// One Vulkan device, as `tessera_vulkan_devices` lists it.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct tessera_device_entry {
    /// Its index (`tessera_dispatcher_config.device_index`).
    pub index: u32,
    /// The driver's name for it, NUL-terminated (cut to 255 bytes).
    pub name: [c_char; 256],
    /// `TESSERA_DEVICE_*`.
    pub device_type: u32,
    /// PCI vendor id.
    pub vendor_id: u32,
    /// Vendor's device id.
    pub device_id: u32,
    /// Highest Vulkan version it supports.
    pub api_version: u32,
}

fn device_type(t: vulkan::DeviceType) -> u32 {
    use crate::agent::*;
    match t {
        vulkan::DeviceType::Discrete => TESSERA_DEVICE_DISCRETE_GPU,
        vulkan::DeviceType::Integrated => TESSERA_DEVICE_INTEGRATED_GPU,
        vulkan::DeviceType::Virtual => TESSERA_DEVICE_VIRTUAL_GPU,
        vulkan::DeviceType::Cpu => TESSERA_DEVICE_CPU,
        vulkan::DeviceType::Other => TESSERA_DEVICE_OTHER,
    }
}

/// Copies `s` into a fixed C string field, cut to fit (never mid-character).
fn fixed_name<const N: usize>(s: &str) -> [c_char; N] {
    let mut out = [0 as c_char; N];
    let mut n = s.len().min(N - 1);
    while !s.is_char_boundary(n) {
        n -= 1;
    }
    for (o, b) in out.iter_mut().zip(&s.as_bytes()[..n]) {
        *o = *b as c_char;
    }
    out
}

/// Lists the Vulkan devices into `out` (room for `capacity` entries) and
/// writes how many there are to `count`: `TESSERA_BUFFER_TOO_SMALL` when
/// that is more than `capacity` (nothing written but the count). A machine
/// without a Vulkan loader returns `TESSERA_VULKAN_BASE + 1`.
///
/// # Safety
/// `out` NULL (with `capacity` 0) or room for `capacity` entries; `count`
/// valid for a write.
#[no_mangle]
pub unsafe extern "C" fn tessera_vulkan_devices(
    out: *mut tessera_device_entry,
    capacity: usize,
    count: *mut usize,
) -> tessera_result {
    guard(|| {
        non_null!(count);
        let instance = match Instance::load() {
            Ok(i) => i,
            Err(e) => return e.result_code(),
        };
        let devices = instance.devices();
        if devices.len() > capacity {
            // SAFETY: valid for a write, by the caller.
            unsafe { count.write(devices.len()) };
            return TESSERA_BUFFER_TOO_SMALL;
        }
        if !devices.is_empty() {
            non_null!(out);
        }
        for (i, d) in devices.iter().enumerate() {
            let entry = tessera_device_entry {
                index: d.index as u32,
                name: fixed_name(&d.name),
                device_type: device_type(d.device_type),
                vendor_id: d.vendor_id,
                device_id: d.device_id,
                api_version: d.api_version,
            };
            // SAFETY: `i < devices.len() <= capacity` entries, by the caller.
            unsafe { out.add(i).write(entry) };
        }
        // SAFETY: valid for a write, by the caller.
        unsafe { count.write(devices.len()) };
        TESSERA_OK
    })
}

/// How to open a dispatcher. Fill it with `tessera_dispatcher_config_default`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct tessera_dispatcher_config {
    /// `sizeof(tessera_dispatcher_config)`.
    pub size: usize,
    /// Device index, or -1 for the default (a discrete GPU first) or
    /// `device_name`.
    pub device_index: i32,
    /// Part of the device name (case-insensitive), or NULL.
    pub device_name: *const c_char,
    /// Run the Khronos validation layer and keep its messages (slow).
    pub validation: CBool,
    /// Run the Khronos SPIR-V validator on every new kernel (the second
    /// gate; default true).
    pub spirv_val_gate: CBool,
    /// The `spirv-val` program (NULL: on `PATH`).
    pub spirv_val_path: *const c_char,
    /// Most bytes of buffers one job may use.
    pub memory_budget: u64,
    /// Run the start-up benchmark when opening (its figures go into the
    /// evidence, and bound each job's work); default true.
    pub run_benchmark: CBool,
}

/// Fills `out` with the defaults and its `size`.
///
/// # Safety
/// `out` valid for a write.
#[no_mangle]
pub unsafe extern "C" fn tessera_dispatcher_config_default(
    out: *mut tessera_dispatcher_config,
) -> tessera_result {
    guard(|| {
        non_null!(out);
        let d = DispatcherConfig::default();
        // SAFETY: valid for a write, by the caller.
        unsafe {
            out.write(tessera_dispatcher_config {
                size: core::mem::size_of::<tessera_dispatcher_config>(),
                device_index: -1,
                device_name: core::ptr::null(),
                validation: CBool::FALSE,
                spirv_val_gate: CBool::TRUE,
                spirv_val_path: core::ptr::null(),
                memory_budget: d.memory_budget,
                run_benchmark: CBool::TRUE,
            })
        };
        TESSERA_OK
    })
}

/// Runs untrusted compute kernels on one Vulkan device. One thread at a time.
pub struct tessera_dispatcher {
    inner: Dispatcher,
    /// The device name, for `tessera_dispatcher_device` to point at.
    name: CString,
    last_error: String,
    last_failure: Option<(u32, u32, tessera_usage)>,
}

/// # Safety
/// `s` NULL or NUL-terminated.
unsafe fn opt_str<'a>(s: *const c_char) -> Result<Option<&'a str>, ()> {
    if s.is_null() {
        return Ok(None);
    }
    // SAFETY: non-NULL and NUL-terminated, by the caller.
    unsafe { CStr::from_ptr(s) }
        .to_str()
        .map(Some)
        .map_err(|_| ())
}

/// Opens a device for running kernels: robust buffer access on, both gates
/// in front of the driver (docs/VULKAN.md). `error`, when given, says what
/// failed.
///
/// # Safety
/// `config` valid with `size` set, its strings NULL or NUL-terminated;
/// `error` NULL or `error_len` writable bytes; `out` valid for a write.
#[no_mangle]
pub unsafe extern "C" fn tessera_dispatcher_new(
    config: *const tessera_dispatcher_config,
    error: *mut c_char,
    error_len: usize,
    out: *mut *mut tessera_dispatcher,
) -> tessera_result {
    guard(|| {
        non_null!(config, out);
        // SAFETY: non-NULL and valid, by the caller.
        let c = unsafe { &*config };
        if c.size < core::mem::size_of::<tessera_dispatcher_config>() {
            return TESSERA_INVALID_ARGUMENT;
        }
        let say = |text: &str| {
            if !error.is_null() && error_len > 0 {
                let mut t = Text::<512>::new();
                t.push(text);
                // SAFETY: `error_len` writable bytes, by the caller.
                unsafe { t.write_c(error.cast(), error_len, core::ptr::null_mut()) };
            }
        };
        // SAFETY: NULL or NUL-terminated, by the caller.
        let (Ok(name), Ok(program)) = (unsafe { opt_str(c.device_name) }, unsafe {
            opt_str(c.spirv_val_path)
        }) else {
            say("device_name and spirv_val_path must be UTF-8");
            return TESSERA_INVALID_ARGUMENT;
        };
        let selector = match (c.device_index, name) {
            (-1, None) => DeviceSelector::Default,
            (-1, Some(n)) => DeviceSelector::Name(n.to_string()),
            (i, _) if i >= 0 => DeviceSelector::Index(i as usize),
            _ => {
                say("device_index must be -1 or a device index");
                return TESSERA_INVALID_CONFIG;
            }
        };
        let (Some(validation), Some(spirv_val_gate), Some(run_benchmark)) = (
            c.validation.get(),
            c.spirv_val_gate.get(),
            c.run_benchmark.get(),
        ) else {
            say("validation, spirv_val_gate and run_benchmark must be false or true");
            return TESSERA_INVALID_CONFIG;
        };
        let config = DispatcherConfig {
            validation,
            memory_budget: c.memory_budget,
            khronos: KhronosConfig {
                enabled: spirv_val_gate,
                program: program.map(Into::into),
                ..KhronosConfig::default()
            },
            ..DispatcherConfig::default()
        };
        let opened = Instance::load().and_then(|i| Dispatcher::new(&i, selector, config));
        let mut inner = match opened {
            Ok(d) => d,
            Err(e) => {
                say(&e.to_string());
                return e.result_code();
            }
        };
        if run_benchmark {
            if let Err(e) = inner.run_startup_benchmark() {
                say(&format!("start-up benchmark: {e}"));
                return e.result_code();
            }
        }
        let name = CString::new(inner.capabilities().name.replace('\0', " ")).unwrap_or_default();
        new_handle(
            tessera_dispatcher {
                inner,
                name,
                last_error: String::new(),
                last_failure: None,
            },
            out,
        )
    })
}

/// Frees the dispatcher and its device. NULL is a no-op.
///
/// # Safety
/// `dispatcher` NULL or a live dispatcher, not used again.
#[no_mangle]
pub unsafe extern "C" fn tessera_dispatcher_free(dispatcher: *mut tessera_dispatcher) {
    // SAFETY: the caller's promise.
    guard(|| unsafe {
        crate::boundary::free_handle(dispatcher);
        TESSERA_OK
    });
}

/// Writes what the device is, as the evidence states it: give it to
/// `tessera_agent_config.device`. `out->name` points into the dispatcher
/// and is valid until it is freed.
///
/// # Safety
/// `dispatcher` a live dispatcher; `out` valid for a write.
#[no_mangle]
pub unsafe extern "C" fn tessera_dispatcher_device(
    dispatcher: *const tessera_dispatcher,
    out: *mut tessera_device,
) -> tessera_result {
    guard(|| {
        non_null!(dispatcher, out);
        // SAFETY: non-NULL and live, by the caller.
        let d = unsafe { &*dispatcher };
        let e = evidence_capabilities(d.inner.capabilities());
        let device = tessera_device {
            name: d.name.as_ptr(),
            vendor_id: e.vendor_id,
            device_id: e.device_id,
            driver_version: e.driver_version,
            api_version: e.api_version,
            device_type: e.device_type as u32,
            features: e.features,
            device_local_bytes: e.device_local_bytes,
            host_visible_bytes: e.host_visible_bytes,
            max_workgroup_size: e.max_workgroup_size,
            max_workgroup_count: e.max_workgroup_count,
            max_invocations: e.max_invocations,
            max_shared_memory: e.max_shared_memory,
            max_storage_buffer_range: e.max_storage_buffer_range,
            subgroup_size: e.subgroup_size,
            copy_mbps: e.copy_mbps,
            fma_mflops: e.fma_mflops,
        };
        // SAFETY: valid for a write, by the caller.
        unsafe { out.write(device) };
        TESSERA_OK
    })
}

/// Runs the start-up benchmark (again): copy bandwidth in GB/s and FMA
/// throughput in GFLOP/s.
///
/// # Safety
/// `dispatcher` a live dispatcher used by no other thread; the outputs
/// valid for writes.
#[no_mangle]
pub unsafe extern "C" fn tessera_dispatcher_benchmark(
    dispatcher: *mut tessera_dispatcher,
    copy_gbps: *mut f64,
    fma_gflops: *mut f64,
) -> tessera_result {
    guard(|| {
        non_null!(dispatcher, copy_gbps, fma_gflops);
        // SAFETY: non-NULL, live and not aliased, by the caller.
        let d = unsafe { &mut *dispatcher };
        match d.inner.run_startup_benchmark() {
            Ok(b) => {
                // SAFETY: valid for writes, by the caller.
                unsafe {
                    copy_gbps.write(f64::from(b.copy_gbps));
                    fma_gflops.write(f64::from(b.fma_gflops));
                }
                TESSERA_OK
            }
            Err(e) => {
                d.last_error = e.to_string();
                e.result_code()
            }
        }
    })
}

/// One storage buffer of a kernel job.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct tessera_kernel_buffer {
    /// Binding in descriptor set 0 (below 32, distinct within the job).
    pub binding: u32,
    /// Bytes the kernel sees.
    pub len: u64,
    /// Initial contents (`init_len <= len` bytes; the rest is zero), or NULL.
    pub init: *const u8,
    /// Bytes at `init`.
    pub init_len: usize,
    /// Whether the final contents are returned, into `output`.
    pub readback: CBool,
    /// For a read-back buffer: where its `len` bytes go (caller-owned).
    pub output: *mut u8,
    /// Bytes at `output` (at least `len`).
    pub output_len: usize,
}

/// An untrusted compute job.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct tessera_kernel_job {
    /// `sizeof(tessera_kernel_job)`.
    pub size: usize,
    /// SPIR-V module bytes.
    pub spirv: *const u8,
    /// Bytes at `spirv`.
    pub spirv_len: usize,
    /// The GLCompute entry point, NUL-terminated.
    pub entry_point: *const c_char,
    /// Specialization constants: `2 * specialization_count` values, each
    /// constant id then its value.
    pub specialization: *const u32,
    /// Number of specialization constants.
    pub specialization_count: usize,
    /// Push-constant bytes.
    pub push_constants: *const u8,
    /// Bytes at `push_constants`.
    pub push_constants_len: usize,
    /// Workgroup counts in x, y, z.
    pub grid: [u32; 3],
    /// The buffers.
    pub buffers: *mut tessera_kernel_buffer,
    /// Number of buffers.
    pub buffer_count: usize,
    /// Time limit, milliseconds: past it the kernel is stopped.
    pub timeout_ms: u64,
}

/// Runs a job: both gates, then the kernel under its time limit. Outputs go
/// to the read-back buffers' `output`; `usage` (may be NULL) gets what it
/// used. A failure returns its code (`TESSERA_KERNEL_BASE` + the rule for a
/// refused kernel, `TESSERA_JOB_BASE` + 1 for a timeout, …);
/// `tessera_dispatcher_last_failure` gives what to report to the
/// coordinator and `tessera_dispatcher_last_error` the words. The
/// dispatcher stays usable after every failure.
///
/// # Safety
/// `dispatcher` a live dispatcher used by no other thread; `job` valid with
/// every pointer as documented; `usage` NULL or valid.
#[no_mangle]
pub unsafe extern "C" fn tessera_dispatcher_run(
    dispatcher: *mut tessera_dispatcher,
    job: *const tessera_kernel_job,
    usage: *mut tessera_usage,
) -> tessera_result {
    guard(|| {
        non_null!(dispatcher, job);
        // SAFETY: non-NULL, live and not aliased, by the caller.
        let d = unsafe { &mut *dispatcher };
        // SAFETY: non-NULL and valid, by the caller.
        let j = unsafe { &*job };
        if j.size < core::mem::size_of::<tessera_kernel_job>() {
            return TESSERA_INVALID_ARGUMENT;
        }
        d.last_failure = None;
        // SAFETY: the caller's promise for each (pointer, length).
        let Some(spirv) = (unsafe { bytes(j.spirv, j.spirv_len) }) else {
            return TESSERA_NULL_ARGUMENT;
        };
        // SAFETY: as above.
        let Some(push) = (unsafe { bytes(j.push_constants, j.push_constants_len) }) else {
            return TESSERA_NULL_ARGUMENT;
        };
        non_null!(j.entry_point);
        // SAFETY: NUL-terminated, by the caller.
        let Ok(entry) = (unsafe { CStr::from_ptr(j.entry_point) }).to_str() else {
            return TESSERA_INVALID_ARGUMENT;
        };
        let spec: Vec<(u32, u32)> = if j.specialization_count == 0 {
            Vec::new()
        } else {
            non_null!(j.specialization);
            let Some(n) = j.specialization_count.checked_mul(2) else {
                return TESSERA_INVALID_ARGUMENT;
            };
            if n > 2 * tessera_core::limits::MAX_SPEC_CONSTANTS
                || (j.specialization as usize) % core::mem::align_of::<u32>() != 0
            {
                return TESSERA_INVALID_ARGUMENT;
            }
            // SAFETY: `n` aligned u32s, by the caller.
            let words = unsafe { core::slice::from_raw_parts(j.specialization, n) };
            words.chunks_exact(2).map(|p| (p[0], p[1])).collect()
        };
        if j.buffer_count > tessera_core::limits::MAX_BUFFERS * 4 {
            return TESSERA_INVALID_ARGUMENT;
        }
        let c_buffers: &[tessera_kernel_buffer] = if j.buffer_count == 0 {
            &[]
        } else {
            non_null!(j.buffers);
            // SAFETY: `buffer_count` entries, by the caller; only read.
            unsafe { core::slice::from_raw_parts(j.buffers, j.buffer_count) }
        };
        let mut specs = Vec::with_capacity(c_buffers.len());
        for b in c_buffers.iter() {
            // SAFETY: the caller's promise for (init, init_len).
            let Some(init) = (unsafe { bytes(b.init, b.init_len) }) else {
                return TESSERA_NULL_ARGUMENT;
            };
            let Some(readback) = b.readback.get() else {
                return TESSERA_INVALID_ARGUMENT;
            };
            if readback && (b.output.is_null() || (b.output_len as u64) < b.len) {
                return if b.output.is_null() {
                    TESSERA_NULL_ARGUMENT
                } else {
                    TESSERA_BUFFER_TOO_SMALL
                };
            }
            specs.push(BufferSpec {
                binding: b.binding,
                len: b.len,
                init: (!init.is_empty()).then_some(init),
                readback,
            });
        }
        let kernel = KernelJob {
            spirv,
            entry_point: entry,
            specialization: &spec,
            push_constants: push,
            grid: j.grid,
            buffers: &specs,
        };
        let timeout = Duration::from_millis(j.timeout_ms);
        match d.inner.run(&kernel, timeout) {
            Ok(out) => {
                let readback = c_buffers.iter().zip(&specs).filter(|(_, s)| s.readback);
                for ((b, _), data) in readback.zip(&out.outputs) {
                    // SAFETY: `output_len >= len == data.len()` writable
                    // bytes, checked above and by the caller.
                    let dst = unsafe { core::slice::from_raw_parts_mut(b.output, b.output_len) };
                    dst[..data.len()].copy_from_slice(data);
                }
                let u = tessera_usage {
                    gpu_time_us: out.usage.gpu_time_ns.div_ceil(1000),
                    dispatches: out.usage.dispatches,
                    bytes_in: out.usage.bytes_in,
                    bytes_out: out.usage.bytes_out,
                };
                // SAFETY: NULL or valid, by the caller.
                unsafe { write_opt(usage, u) };
                TESSERA_OK
            }
            Err(e) => {
                let f = failure_of(&e, timeout);
                d.last_failure = Some((f.reason as u32, f.detail, f.usage.into()));
                d.last_error = match &e {
                    JobError::Rejected(r) => format!("kernel rejected: {r}"),
                    other => other.to_string(),
                };
                e.result_code()
            }
        }
    })
}

/// After a failed `tessera_dispatcher_run`: the wire fail reason and detail
/// to give `tessera_agent_fail_job`, and the usage to report (a timeout is
/// metered to its limit). `TESSERA_NOTHING` when the last run succeeded.
///
/// # Safety
/// `dispatcher` a live dispatcher; the outputs NULL or valid.
#[no_mangle]
pub unsafe extern "C" fn tessera_dispatcher_last_failure(
    dispatcher: *const tessera_dispatcher,
    reason: *mut u32,
    detail: *mut u32,
    usage: *mut tessera_usage,
) -> tessera_result {
    guard(|| {
        non_null!(dispatcher);
        // SAFETY: non-NULL and live, by the caller.
        let d = unsafe { &*dispatcher };
        let Some((r, det, u)) = d.last_failure else {
            return TESSERA_NOTHING;
        };
        // SAFETY: NULL or valid, by the caller.
        unsafe {
            write_opt(reason, r);
            write_opt(detail, det);
            write_opt(usage, u);
        }
        TESSERA_OK
    })
}

/// Writes the words of the dispatcher's last error (which rule a refused
/// kernel broke, say) into `buf`, NUL-terminated and cut to fit; `written`
/// gets their length. With a zero `len` (`buf` may then be NULL):
/// `TESSERA_BUFFER_TOO_SMALL`, and `written` gets the buffer length the whole
/// text needs, NUL included.
///
/// # Safety
/// `dispatcher` a live dispatcher; `buf` `len` writable bytes; `written`
/// NULL or valid.
#[no_mangle]
pub unsafe extern "C" fn tessera_dispatcher_last_error(
    dispatcher: *const tessera_dispatcher,
    buf: *mut c_char,
    len: usize,
    written: *mut usize,
) -> tessera_result {
    guard(|| {
        non_null!(dispatcher);
        // SAFETY: non-NULL and live, by the caller.
        let d = unsafe { &*dispatcher };
        let mut t = Text::<512>::new();
        t.push(&d.last_error);
        // SAFETY: the caller's promise for (buf, len) and `written`.
        unsafe { t.write_c_or_size(buf.cast(), len, written) }
    })
}

/// Destroys every device given up on after a timeout whose kernel has
/// finished, and writes how many still run abandoned work (at two the
/// dispatcher refuses jobs, `TESSERA_JOB_BASE + 5`, until one ends). A host
/// refusing work calls it while idle; freeing a dispatcher leaves devices
/// still running to the end of the process (destroying one would be
/// invalid).
///
/// # Safety
/// `dispatcher` a live dispatcher used by no other thread; `still` NULL or
/// valid.
#[no_mangle]
pub unsafe extern "C" fn tessera_dispatcher_reclaim(
    dispatcher: *mut tessera_dispatcher,
    still: *mut usize,
) -> tessera_result {
    guard(|| {
        non_null!(dispatcher);
        // SAFETY: non-NULL, live and not aliased, by the caller.
        let d = unsafe { &mut *dispatcher };
        let n = d.inner.reclaim_abandoned();
        // SAFETY: NULL or valid, by the caller.
        unsafe { write_opt(still, n) };
        TESSERA_OK
    })
}
