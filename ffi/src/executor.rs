//! A host executor for the runtime: `tessera_executor` and the
//! `tessera_job_run_*` functions its callback uses.
//!
//! By default the runtime runs each job on its Vulkan device. A host that
//! runs jobs itself (a render engine with its own queue, a binding that
//! gives them to a Python or Go function) passes a `tessera_executor`: its
//! `run` callback is called on the runtime's worker thread, one job at a
//! time, with a `tessera_job_run` that holds the job (as the
//! `tessera_kernel_job` a dispatcher runs, with zeroed output memory for
//! each read-back buffer) and may run it on the runtime's own device
//! (`tessera_job_run_on_device`). What the callback leaves in the outputs is
//! what the provider returns, Merkle-hashes and signs.

use std::ffi::{c_void, CString};
use std::time::Duration;

use tessera_core::gpu_host::{failure_of, GpuHost};
use tessera_core::host::{JobFailure, JobOutputs};
use tessera_core::net::{Executor, JobToRun};
use tessera_core::vulkan::JobError;
use tessera_core::wire::{FailReason, JobAssign, Usage};

use crate::boundary::{guard, non_null, write_opt};
use crate::dispatcher::{tessera_kernel_buffer, tessera_kernel_job};
use crate::*;

/// Runs one job (`tessera_executor.run`): returns `TESSERA_OK` when the
/// outputs are written, anything else to fail the job. The failure is the
/// one `tessera_job_run_fail` set, or else the returned code's:
/// `TESSERA_FAIL_BASE` + a fail reason is that reason (detail 0),
/// `TESSERA_KERNEL_BASE` + a rule a refused kernel, `TESSERA_JOB_BASE` + a
/// dispatcher code the host reason with that code as detail (what
/// `tessera_job_run_on_device` and `tessera_dispatcher_run` return), and
/// any other code the host reason with detail 0. `run` is valid only during
/// the call.
pub type tessera_execute_fn = Option<
    unsafe extern "C" fn(userdata: *mut c_void, run: *mut tessera_job_run) -> tessera_result,
>;

/// Whether the host takes work now (`tessera_executor.accepting_jobs`);
/// asked after every job and about every 100 ms while the answer is no.
pub type tessera_accepting_fn = Option<unsafe extern "C" fn(userdata: *mut c_void) -> bool>;

/// A host that runs jobs itself (`tessera_runtime_config.executor`,
/// `tessera_runtime_new_from_toml_with`). The runtime copies the struct;
/// `userdata` must stay valid, and the callbacks callable from the
/// runtime's worker thread, until the runtime is freed.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct tessera_executor {
    /// `sizeof(tessera_executor)`.
    pub size: usize,
    /// Passed to the callbacks.
    pub userdata: *mut c_void,
    /// Runs a job (required).
    pub run: tessera_execute_fn,
    /// Whether the host takes work now; NULL: always.
    pub accepting_jobs: tessera_accepting_fn,
}

// SAFETY: `#[repr(C)]`, its first field the `usize` size.
unsafe impl crate::boundary::SizedOut for tessera_executor {}

/// One job given to a host executor, valid during its `run` callback.
pub struct tessera_job_run {
    job: *const JobToRun,
    device: *mut GpuHost,
    entry_point: CString,
    specialization: Vec<u32>,
    buffers: Vec<tessera_kernel_buffer>,
    /// One per read-back buffer, in binding order.
    outputs: Vec<Vec<u8>>,
    usage: Usage,
    failure: Option<(FailReason, u32)>,
    /// Whether `tessera_job_run_on_device` runs on it now: a call from a
    /// callback during it (a log line) is refused.
    on_device: bool,
}

/// The executor the runtime's worker calls: the host's callbacks, and the
/// device they may hand a job to.
pub(crate) struct HostExecutor {
    callbacks: tessera_executor,
    device: GpuHost,
}

// SAFETY: the runtime moves the executor to its worker thread once; the
// caller of `tessera_runtime_new` promised that `userdata` and the
// callbacks may be used from that thread (the header says so).
unsafe impl Send for HostExecutor {}

impl HostExecutor {
    /// Checks the host's struct; `None` when it is not usable.
    ///
    /// # Safety
    /// `e` valid for reads.
    pub(crate) unsafe fn callbacks(e: *const tessera_executor) -> Result<tessera_executor, String> {
        // The size first: a struct of an older header is shorter than ours.
        // SAFETY: readable for its first field, by the caller.
        if !unsafe { crate::boundary::sized_ok(e) } {
            return Err("executor.size must be sizeof(tessera_executor)".into());
        }
        // SAFETY: valid for the whole struct, its size says.
        let e = unsafe { &*e };
        if e.run.is_none() {
            return Err("executor.run is required".into());
        }
        Ok(*e)
    }

    pub(crate) fn new(callbacks: tessera_executor, device: GpuHost) -> Self {
        HostExecutor { callbacks, device }
    }
}

/// Zeroed memory for each read-back buffer of `spec`, in binding order.
/// Their sum is at most the operator's `max_bytes_out`, which may be more
/// than this machine can hold: the job then fails out of memory, as on the
/// device, instead of the allocation aborting the process.
fn zeroed_outputs(spec: &JobAssign) -> Result<Vec<Vec<u8>>, JobFailure> {
    let out_of_memory = || failure_of(&JobError::OutOfMemory, Duration::ZERO);
    spec.buffers
        .iter()
        .filter(|b| b.readback)
        .map(|b| {
            let len = usize::try_from(b.len).map_err(|_| out_of_memory())?;
            let mut output = Vec::new();
            output.try_reserve_exact(len).map_err(|_| out_of_memory())?;
            output.resize(len, 0);
            Ok(output)
        })
        .collect()
}

impl Executor for HostExecutor {
    fn run(&mut self, job: &JobToRun) -> Result<JobOutputs, JobFailure> {
        let spec = &job.spec;
        let Ok(entry_point) = CString::new(spec.kernel.entry_point.as_str()) else {
            // An entry point holding a NUL names no function of any module.
            return Err(JobFailure::new(
                FailReason::KernelRejected,
                u32::from(tessera_core::reasons::KernelRule::NoEntryPoint as u16),
            ));
        };
        let mut outputs = zeroed_outputs(spec)?;
        let mut next_output = outputs.iter_mut();
        let buffers = spec
            .buffers
            .iter()
            .zip(&job.buffers)
            .map(|(b, init)| {
                let (output, output_len) = match b.readback.then(|| next_output.next()).flatten() {
                    Some(o) => (o.as_mut_ptr(), o.len()),
                    None => (core::ptr::null_mut(), 0),
                };
                tessera_kernel_buffer {
                    binding: b.binding,
                    len: b.len,
                    init: init.as_ptr(),
                    init_len: init.len(),
                    readback: CBool::from(b.readback),
                    output,
                    output_len,
                }
            })
            .collect();
        let mut run = tessera_job_run {
            job,
            device: &mut self.device,
            entry_point,
            specialization: spec
                .kernel
                .specialization
                .iter()
                .flat_map(|&(id, value)| [id, value])
                .collect(),
            buffers,
            outputs: Vec::new(),
            usage: Usage::default(),
            failure: None,
            on_device: false,
        };
        // The output vectors move into the run; their heap memory, which
        // the buffers point at, does not.
        run.outputs = outputs;
        let run_fn = self.callbacks.run.expect("checked at construction");
        // SAFETY: the host's callback, with its userdata and a run valid for
        // the call, as `tessera_executor` documents.
        let r = unsafe { run_fn(self.callbacks.userdata, &mut run) };
        if r == TESSERA_OK {
            Ok(JobOutputs {
                outputs: run.outputs,
                usage: run.usage,
            })
        } else {
            let (reason, detail) = run.failure.unwrap_or_else(|| failure_of_code(r));
            Err(JobFailure {
                reason,
                detail,
                usage: run.usage,
            })
        }
    }

    fn accepting_jobs(&mut self) -> bool {
        let device = Executor::accepting_jobs(&mut self.device);
        match self.callbacks.accepting_jobs {
            // SAFETY: the host's callback, as `tessera_executor` documents.
            Some(f) => device && unsafe { f(self.callbacks.userdata) },
            None => device,
        }
    }
}

/// The failure a host executor's returned code means (`tessera_execute_fn`).
fn failure_of_code(code: tessera_result) -> (FailReason, u32) {
    let reason = |r: u32| u8::try_from(r).ok().and_then(FailReason::from_u8);
    if let Some(r) = code.checked_sub(TESSERA_FAIL_BASE).and_then(reason) {
        return (r, 0);
    }
    if let Some(rule) = code.checked_sub(TESSERA_KERNEL_BASE) {
        return (FailReason::KernelRejected, rule);
    }
    match code.checked_sub(TESSERA_JOB_BASE) {
        Some(dispatcher) if code < TESSERA_KERNEL_BASE => (FailReason::Host, dispatcher),
        _ => (FailReason::Host, 0),
    }
}

/// The job's id. May be called from any thread during the callback.
///
/// # Safety
/// `run` the live run of a `run` callback, or NULL (then 0).
#[no_mangle]
pub unsafe extern "C" fn tessera_job_run_id(run: *const tessera_job_run) -> u64 {
    if run.is_null() {
        return 0;
    }
    // SAFETY: live during the callback, by the caller; `job` lives as long.
    unsafe { (*(*run).job).id }
}

/// Whether the job no longer needs running (cancelled by the coordinator,
/// its deadline passed, its session ended): a host that can stop early
/// checks it and returns any failure; the runtime discards the result. May
/// be called from any thread during the callback, also while
/// `tessera_job_run_on_device` runs on another.
///
/// # Safety
/// `run` the live run of a `run` callback, or NULL (then true).
#[no_mangle]
pub unsafe extern "C" fn tessera_job_run_cancelled(run: *const tessera_job_run) -> bool {
    if run.is_null() {
        return true;
    }
    // SAFETY: as in `tessera_job_run_id`.
    unsafe { (*(*run).job).cancel.is_cancelled() }
}

/// Writes the job into `out` (set `out->size` first): the SPIR-V (verified
/// against the assignment's root), entry point, constants, grid, each
/// buffer's initial contents and, for read-back buffers, `output`: zeroed
/// memory of the buffer's length that the host fills. `timeout_ms` is the
/// time left until the job's deadline. Every pointer stays valid until the
/// callback returns; the outputs are read when it does. Read-back lengths
/// are bounded by the policy's `max_bytes_out`; the lengths of the other
/// buffers are the requester's, bounded only by the device's limits when
/// the device runs them: a host that allocates memory for them checks them
/// against what it can hold.
///
/// # Safety
/// `run` the live run of a `run` callback; `out` valid for a write.
#[no_mangle]
pub unsafe extern "C" fn tessera_job_run_kernel(
    run: *mut tessera_job_run,
    out: *mut tessera_kernel_job,
) -> tessera_result {
    guard(|| {
        non_null!(run, out);
        // SAFETY: live during the callback, by the caller.
        if unsafe { (*run).on_device } {
            return TESSERA_IN_USE;
        }
        // SAFETY: live during the callback and not aliased, by the caller
        // (and no call on it runs: checked above).
        let run = unsafe { &mut *run };
        // SAFETY: `out` valid for reads of its size field, by the caller.
        if unsafe { (*out).size } < core::mem::size_of::<tessera_kernel_job>() {
            return TESSERA_INVALID_ARGUMENT;
        }
        // SAFETY: the job outlives the run.
        let job = unsafe { &*run.job };
        let push = &job.spec.kernel.push_constants;
        let job_out = tessera_kernel_job {
            size: core::mem::size_of::<tessera_kernel_job>(),
            spirv: job.kernel.as_ptr(),
            spirv_len: job.kernel.len(),
            entry_point: run.entry_point.as_ptr(),
            specialization: run.specialization.as_ptr(),
            specialization_count: run.specialization.len() / 2,
            push_constants: push.as_ptr(),
            push_constants_len: push.len(),
            grid: job.spec.kernel.grid,
            buffers: run.buffers.as_mut_ptr(),
            buffer_count: run.buffers.len(),
            timeout_ms: job.timeout().as_millis().min(u128::from(u64::MAX)) as u64,
        };
        // SAFETY: valid for a write, by the caller.
        unsafe { out.write(job_out) };
        TESSERA_OK
    })
}

/// Runs the job on the runtime's own Vulkan device (its kernel gate,
/// watchdog and cancellation included), writing the outputs and usage into
/// the run. Call it from the callback's thread (the worker's), not from
/// another. On success the callback returns `TESSERA_OK` (or changes the
/// outputs first); on failure the run holds the device's reason, detail and
/// usage, and the code is returned (`TESSERA_KERNEL_BASE` + the rule of a
/// refused kernel, `TESSERA_JOB_BASE` + the dispatcher's code for a host
/// failure, `TESSERA_FAIL_BASE` + the reason otherwise): return it from the
/// callback to fail the job as the device would. A call on the
/// run from a callback during this one (a log line) returns
/// `TESSERA_IN_USE`, but for `tessera_job_run_id` and
/// `tessera_job_run_cancelled`.
///
/// # Safety
/// `run` the live run of a `run` callback; `usage` NULL or valid.
#[no_mangle]
pub unsafe extern "C" fn tessera_job_run_on_device(
    run: *mut tessera_job_run,
    usage: *mut crate::agent::tessera_usage,
) -> tessera_result {
    guard(|| {
        non_null!(run);
        // SAFETY: live during the callback, by the caller. No reference to
        // the run is held across the device's call: a log callback during
        // it may reach the run (and is refused).
        let (job, device) = unsafe {
            if (*run).on_device {
                return TESSERA_IN_USE;
            }
            (*run).on_device = true;
            ((*run).job, (*run).device)
        };
        // SAFETY: the job and the device outlive the run; the device is
        // used by this worker thread only, and during this call by nothing
        // else (a call from a callback is refused above).
        let result = Executor::run(unsafe { &mut *device }, unsafe { &*job });
        // SAFETY: live and, the device's call over, not aliased, by the
        // caller.
        let run = unsafe { &mut *run };
        run.on_device = false;
        let (code, ran_usage) = match result {
            Ok(ran) => {
                for (mine, theirs) in run.outputs.iter_mut().zip(&ran.outputs) {
                    let n = mine.len().min(theirs.len());
                    mine[..n].copy_from_slice(&theirs[..n]);
                }
                run.failure = None;
                (TESSERA_OK, ran.usage)
            }
            Err(f) => {
                run.failure = Some((f.reason, f.detail));
                let code = match f.reason {
                    // The rule (the low 16 bits of the wire detail).
                    FailReason::KernelRejected => TESSERA_KERNEL_BASE + (f.detail & 0xFFFF),
                    FailReason::Host => TESSERA_JOB_BASE + f.detail,
                    other => TESSERA_FAIL_BASE + other as u32,
                };
                (code, f.usage)
            }
        };
        run.usage = ran_usage;
        // SAFETY: the caller's promise for `usage`.
        unsafe { write_opt(usage, crate::agent::tessera_usage::from(ran_usage)) };
        code
    })
}

/// Sets the usage reported for the job (GPU time in microseconds and
/// dispatches; transfer sizes are the runtime's).
///
/// # Safety
/// `run` the live run of a `run` callback.
#[no_mangle]
pub unsafe extern "C" fn tessera_job_run_set_usage(
    run: *mut tessera_job_run,
    gpu_time_us: u64,
    dispatches: u32,
) -> tessera_result {
    guard(|| {
        non_null!(run);
        // SAFETY: live during the callback, by the caller.
        if unsafe { (*run).on_device } {
            return TESSERA_IN_USE;
        }
        // SAFETY: live during the callback and not aliased, by the caller
        // (and no call on it runs: checked above).
        let run = unsafe { &mut *run };
        run.usage.gpu_time_us = gpu_time_us;
        run.usage.dispatches = dispatches;
        TESSERA_OK
    })
}

/// Sets why the job failed, for a callback that then returns an error:
/// `reason` a wire fail reason (`TESSERA_FAIL_*`, 1 to 7), `detail` its
/// reason-specific code (the kernel rule of a refused kernel).
/// `TESSERA_INVALID_ARGUMENT` for a reason that is none.
///
/// # Safety
/// `run` the live run of a `run` callback.
#[no_mangle]
pub unsafe extern "C" fn tessera_job_run_fail(
    run: *mut tessera_job_run,
    reason: u32,
    detail: u32,
) -> tessera_result {
    guard(|| {
        non_null!(run);
        let Some(reason) = u8::try_from(reason).ok().and_then(FailReason::from_u8) else {
            return TESSERA_INVALID_ARGUMENT;
        };
        // SAFETY: live during the callback and not aliased, by the caller;
        // a call on it from a callback of `on_device` is refused.
        unsafe {
            if (*run).on_device {
                return TESSERA_IN_USE;
            }
            (*run).failure = Some((reason, detail));
        }
        TESSERA_OK
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tessera_core::bounded::{BoundedString, BoundedVec};
    use tessera_core::wire::{BufferSpec, KernelSpec};

    #[test]
    fn a_returned_code_fails_the_job_as_it_says() {
        let cases = [
            (TESSERA_FAIL_BASE + 2, (FailReason::Timeout, 0)),
            (TESSERA_FAIL_BASE + 7, (FailReason::Host, 0)),
            (TESSERA_KERNEL_BASE + 12, (FailReason::KernelRejected, 12)),
            (TESSERA_JOB_BASE + 3, (FailReason::Host, 3)),
            // Not a failure's code: the host's, with nothing to misread.
            (TESSERA_INVALID_ARGUMENT, (FailReason::Host, 0)),
            (TESSERA_FAIL_BASE + 99, (FailReason::Host, 0)),
            (TESSERA_FAIL_BASE, (FailReason::Host, 0)),
        ];
        for (code, want) in cases {
            assert_eq!(failure_of_code(code), want, "code {code}");
        }
    }

    /// An assignment with buffers of these lengths (read back or not).
    fn assign(buffers: &[(u64, bool)]) -> JobAssign {
        let mut specs = BoundedVec::new();
        for (binding, &(len, readback)) in (0u32..).zip(buffers) {
            specs
                .push(BufferSpec {
                    binding,
                    len,
                    init_len: 0,
                    readback,
                })
                .expect("a few buffers");
        }
        JobAssign {
            job: 1,
            requester_nonce: [0; 32],
            kernel: KernelSpec {
                len: 4,
                root: [0; 32],
                entry_point: BoundedString::new(),
                specialization: BoundedVec::new(),
                push_constants: BoundedVec::new(),
                grid: [1, 1, 1],
            },
            buffers: specs,
            inputs_root: [0; 32],
            sealing: None,
        }
    }

    /// What the log callback of the re-entry test calls, and what it got.
    struct Reentry {
        thread: std::thread::ThreadId,
        run: *mut tessera_job_run,
        results: std::sync::Mutex<Vec<(&'static str, tessera_result)>>,
    }

    unsafe extern "C" fn reenter(
        userdata: *mut c_void,
        _level: u32,
        _target: *const core::ffi::c_char,
        _message: *const core::ffi::c_char,
    ) {
        // SAFETY: the test's Reentry, alive while the callback is set.
        let r = unsafe { &*(userdata as *const Reentry) };
        if std::thread::current().id() != r.thread {
            return; // another test's line
        }
        let mut kernel = core::mem::MaybeUninit::<tessera_kernel_job>::zeroed();
        // SAFETY: zeroed is a valid tessera_kernel_job; `size` set.
        unsafe { (*kernel.as_mut_ptr()).size = core::mem::size_of::<tessera_kernel_job>() };
        // SAFETY (all calls): the live run of the call this line comes from.
        let results = unsafe {
            [
                (
                    "on_device",
                    tessera_job_run_on_device(r.run, core::ptr::null_mut()),
                ),
                ("kernel", tessera_job_run_kernel(r.run, kernel.as_mut_ptr())),
                ("set_usage", tessera_job_run_set_usage(r.run, 5, 5)),
                ("fail", tessera_job_run_fail(r.run, 7, 9)),
                ("id", tessera_job_run_id(r.run) as tessera_result),
            ]
        };
        r.results.lock().expect("lock").extend(results);
    }

    /// A log line written while the job runs on the device reaches the
    /// host's log callback on the same thread; a callback that calls the
    /// run again there gets TESSERA_IN_USE (the device is not entered
    /// twice, the run not changed under the device's call), as a callback
    /// does from a call on any other handle. The run's id still reads.
    #[test]
    fn a_call_on_the_run_from_a_callback_during_on_device_is_refused() {
        let mut device = match GpuHost::open(Default::default(), false) {
            Ok(d) => d,
            Err(e) => panic!("no Vulkan device (lavapipe): {e}"),
        };
        let mut spec = assign(&[(16, true)]);
        spec.kernel.entry_point.push_str("main").expect("short");
        // Four bytes that are no SPIR-V module: the gate refuses them, and
        // the device logs the failure.
        let job = JobToRun {
            id: 42,
            run: 1,
            spec,
            kernel: vec![0; 4],
            buffers: vec![Vec::new()],
            deadline: std::time::Instant::now() + Duration::from_secs(30),
            cancel: Default::default(),
        };
        let mut run = tessera_job_run {
            job: &job,
            device: &mut device,
            entry_point: CString::new("main").expect("no NUL"),
            specialization: Vec::new(),
            buffers: Vec::new(),
            outputs: vec![vec![0; 16]],
            usage: Usage::default(),
            failure: None,
            on_device: false,
        };
        let reentry = Reentry {
            thread: std::thread::current().id(),
            run: &mut run,
            results: Default::default(),
        };
        // SAFETY: the callback and its userdata live until it is unset below.
        let set = unsafe {
            crate::runtime::tessera_set_log_callback(
                Some(reenter),
                &reentry as *const Reentry as *mut c_void,
                crate::runtime::TESSERA_LOG_INFO,
            )
        };
        assert_eq!(set, TESSERA_OK);
        // SAFETY: the live run; no usage wanted.
        let r = unsafe { tessera_job_run_on_device(reentry.run, core::ptr::null_mut()) };
        // SAFETY: turning the callback off.
        unsafe { crate::runtime::tessera_set_log_callback(None, core::ptr::null_mut(), 0) };
        assert!(r > TESSERA_KERNEL_BASE, "refused by the gate: {r}");
        let results = reentry.results.lock().expect("lock").clone();
        assert_eq!(
            results,
            vec![
                ("on_device", TESSERA_IN_USE),
                ("kernel", TESSERA_IN_USE),
                ("set_usage", TESSERA_IN_USE),
                ("fail", TESSERA_IN_USE),
                ("id", 42),
            ]
        );
        // The device's own failure stands.
        assert_eq!(run.failure.map(|f| f.0), Some(FailReason::KernelRejected));
        assert_eq!(run.usage.gpu_time_us, 0);
    }

    #[test]
    fn outputs_are_zeroed_read_back_buffers_in_order() {
        let outputs = zeroed_outputs(&assign(&[(8, true), (1 << 40, false), (3, true)]))
            .expect("small outputs");
        assert_eq!(outputs, vec![vec![0u8; 8], vec![0u8; 3]]);
    }

    /// An operator's `max_bytes_out` may be more than this machine can
    /// hold: outputs it cannot allocate fail the job (out of memory, as the
    /// device does) instead of aborting the provider's process.
    #[test]
    fn outputs_the_host_cannot_hold_fail_the_job_not_the_process() {
        for len in [u64::MAX, 1 << 62, u64::from(u32::MAX) << 24] {
            let failure =
                zeroed_outputs(&assign(&[(16, true), (len, true)])).expect_err("no such memory");
            assert_eq!(failure.reason, FailReason::OutOfMemory, "{len}");
        }
    }
}
