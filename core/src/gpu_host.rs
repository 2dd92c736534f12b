//! The Vulkan dispatcher as the agent's job runner (features `vulkan`): maps a
//! job's assignment onto a [`vulkan::KernelJob`], its outcome onto the wire's
//! usage and failure reasons, and the dispatcher's capabilities onto the
//! signed evidence.

use std::time::Duration;

use crate::attest::{DeviceCapabilities, DeviceType};
use crate::host::{JobFailure, JobOutputs};
use crate::vulkan::{
    self, BatchJob, BufferSpec, Capabilities, DeviceSelector, Dispatcher, DispatcherConfig,
    Instance, JobError, KernelJob, VulkanError,
};
use crate::wire::{features, FailReason, JobAssign, Usage};

// A binding the agent accepts in an assignment is one the dispatcher takes.
const _: () = assert!(crate::limits::MAX_BINDINGS == vulkan::MAX_BINDINGS);

/// Most jobs handed to the device together: what the dispatcher submits
/// before waiting on the first.
#[cfg(feature = "net")]
const BATCH_SIZE: usize = 16;

/// A Vulkan device ready to run jobs.
pub struct GpuHost {
    dispatcher: Dispatcher,
    capabilities: DeviceCapabilities,
}

impl core::fmt::Debug for GpuHost {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("GpuHost")
            .field("device", &self.capabilities.name)
            .finish_non_exhaustive()
    }
}

/// The evidence's view of a device's capabilities.
pub fn evidence_capabilities(caps: &Capabilities) -> DeviceCapabilities {
    let mut name = crate::bounded::BoundedString::new();
    for c in caps.name.chars() {
        if name.push(c).is_err() {
            break;
        }
    }
    let heaps =
        &caps.memory_heaps[..(caps.memory_heap_count as usize).min(caps.memory_heaps.len())];
    let device_local_bytes = heaps
        .iter()
        .filter(|h| h.device_local)
        .map(|h| h.size)
        .max()
        .unwrap_or(0);
    let host_visible_bytes = heaps
        .iter()
        .filter(|h| !h.device_local)
        .map(|h| h.size)
        .max()
        .unwrap_or(device_local_bytes);
    let mut bits = 0;
    let f = &caps.features;
    for (on, bit) in [
        (f.float16, features::FLOAT16),
        (f.float64, features::FLOAT64),
        (f.int8, features::INT8),
        (f.int64, features::INT64),
        // VK_SUBGROUP_FEATURE_ARITHMETIC_BIT
        (
            f.subgroup_operations & 0x4 != 0,
            features::SUBGROUP_ARITHMETIC,
        ),
        (
            caps.robustness.robust_buffer_access,
            features::ROBUST_BUFFER_ACCESS,
        ),
        (
            caps.robustness.robust_buffer_access2,
            features::ROBUST_BUFFER_ACCESS_2,
        ),
    ] {
        if on {
            bits |= bit;
        }
    }
    let (copy_mbps, fma_mflops) = caps
        .benchmark
        .map(|b| {
            (
                (b.copy_gbps * 1000.0) as u32,
                (b.fma_gflops * 1000.0) as u32,
            )
        })
        .unwrap_or((0, 0));
    DeviceCapabilities {
        name,
        vendor_id: caps.vendor_id,
        device_id: caps.device_id,
        driver_version: caps.driver_version,
        api_version: caps.api_version,
        device_type: match caps.device_type {
            vulkan::DeviceType::Discrete => DeviceType::DiscreteGpu,
            vulkan::DeviceType::Integrated => DeviceType::IntegratedGpu,
            vulkan::DeviceType::Virtual => DeviceType::VirtualGpu,
            vulkan::DeviceType::Cpu => DeviceType::Cpu,
            vulkan::DeviceType::Other => DeviceType::Other,
        },
        features: bits,
        device_local_bytes,
        host_visible_bytes,
        max_workgroup_size: caps.limits.max_workgroup_size,
        max_workgroup_count: caps.limits.max_workgroup_count,
        max_invocations: caps.limits.max_invocations,
        max_shared_memory: caps.limits.max_shared_memory,
        max_storage_buffer_range: caps.limits.max_storage_buffer_range as u64,
        subgroup_size: caps.subgroup_size,
        copy_mbps,
        fma_mflops,
    }
}

/// The wire's failure for a dispatcher error: the reason; as detail the
/// rejection's rule and argument (`tessera_core::reasons`) for a refused
/// kernel, else the dispatcher's stable code; and the usage. A timeout is
/// metered to `timeout`, the time limit the dispatcher was given (the kernel
/// held the device that long; its dispatches are not known); other failures
/// meter nothing.
pub fn failure_of(e: &JobError, timeout: Duration) -> JobFailure {
    let (reason, usage) = match e {
        JobError::Rejected(_) => (FailReason::KernelRejected, Usage::default()),
        JobError::Timeout => (
            FailReason::Timeout,
            Usage {
                gpu_time_us: u64::try_from(timeout.as_micros()).unwrap_or(u64::MAX),
                ..Usage::default()
            },
        ),
        JobError::DeviceLost { .. } => (FailReason::DeviceLost, Usage::default()),
        JobError::OutOfMemory => (FailReason::OutOfMemory, Usage::default()),
        JobError::Vulkan(_)
        | JobError::DeviceUnavailable { .. }
        | JobError::ValidatorUnavailable(_)
        | JobError::Cancelled => (FailReason::Host, Usage::default()),
    };
    JobFailure {
        reason,
        detail: e.detail(),
        usage,
    }
}

impl GpuHost {
    /// Opens the selected device, runs the start-up benchmark (its figures go
    /// into the evidence) and returns the host with the evidence view of the
    /// device.
    pub fn open(selector: DeviceSelector, validation: bool) -> Result<GpuHost, VulkanError> {
        GpuHost::open_with(
            selector,
            DispatcherConfig {
                validation,
                ..DispatcherConfig::default()
            },
        )
    }

    /// Like [`GpuHost::open`], with every dispatcher setting given.
    pub fn open_with(
        selector: DeviceSelector,
        config: DispatcherConfig,
    ) -> Result<GpuHost, VulkanError> {
        let instance = Instance::load()?;
        let mut dispatcher = Dispatcher::new(&instance, selector, config)?;
        if let Err(e) = dispatcher.run_startup_benchmark() {
            log::warn!("start-up benchmark failed: {e}");
        }
        let capabilities = evidence_capabilities(dispatcher.capabilities());
        Ok(GpuHost {
            dispatcher,
            capabilities,
        })
    }

    /// The device's capabilities as signed into the evidence.
    pub fn capabilities(&self) -> &DeviceCapabilities {
        &self.capabilities
    }

    /// The dispatcher, for callers that need more than jobs.
    pub fn dispatcher(&mut self) -> &mut Dispatcher {
        &mut self.dispatcher
    }

    /// Runs one assigned job: `kernel` is its SPIR-V, `buffers` the initial
    /// contents of each buffer (shorter than the buffer is fine). Returns the
    /// read-back buffers and the metered usage, or the wire failure.
    pub fn run_job(
        &mut self,
        spec: &JobAssign,
        kernel: &[u8],
        buffers: &[Vec<u8>],
        timeout: Duration,
    ) -> Result<JobOutputs, JobFailure> {
        self.run_inner(spec, kernel, buffers, timeout, None)
    }

    fn run_inner(
        &mut self,
        spec: &JobAssign,
        kernel: &[u8],
        buffers: &[Vec<u8>],
        timeout: Duration,
        cancel: Option<&std::sync::Arc<std::sync::atomic::AtomicBool>>,
    ) -> Result<JobOutputs, JobFailure> {
        let specs = buffer_specs(spec, buffers);
        let job = kernel_job(spec, kernel, &specs);
        if spec.sealing.is_some() {
            // A sealed job's plaintext: the dispatcher keeps nothing of it.
            let now = std::time::Instant::now();
            let one = [BatchJob {
                job,
                deadline: now
                    .checked_add(timeout)
                    .unwrap_or_else(|| now + Duration::from_secs(365 * 24 * 3600)),
                cancel,
                confidential: true,
                secret_kernel: secret_kernel(spec),
            }];
            let mut ran = Err(JobError::Cancelled);
            self.dispatcher.run_batch(&one, |_, r| ran = r);
            return outcome(ran, timeout, true);
        }
        let ran = match cancel {
            Some(c) => self.dispatcher.run_cancellable(&job, timeout, c),
            None => self.dispatcher.run(&job, timeout),
        };
        outcome(ran, timeout, false)
    }
}

/// Whether the job's kernel came sealed: the dispatcher keeps no
/// pipeline built from it. A sealed job's kernel sent in the clear is no
/// secret, and its pipeline is kept.
fn secret_kernel(spec: &JobAssign) -> bool {
    spec.sealing.as_ref().is_some_and(|s| s.kernel_sealed)
}

/// The host's view of a dispatcher outcome; `timeout` is the time limit
/// the job was given (what a timeout is metered to). A `sealed` job's
/// failure is logged by its codes only: a refusal may quote its kernel.
fn outcome(
    ran: Result<vulkan::JobOutput, JobError>,
    timeout: Duration,
    sealed: bool,
) -> Result<JobOutputs, JobFailure> {
    match ran {
        Ok(out) => Ok(JobOutputs {
            outputs: out.outputs,
            usage: Usage {
                gpu_time_us: out.usage.gpu_time_ns.div_ceil(1000),
                dispatches: out.usage.dispatches,
                bytes_in: out.usage.bytes_in,
                bytes_out: out.usage.bytes_out,
            },
        }),
        Err(e) => {
            let failure = failure_of(&e, timeout);
            if sealed {
                log::info!(
                    "sealed job failed on the GPU: {:?}, detail {}",
                    failure.reason,
                    failure.detail
                );
            } else {
                log::info!("job failed on the GPU: {e}");
            }
            Err(failure)
        }
    }
}

/// A job's buffers as the dispatcher takes them: `buffers` holds the
/// initial contents in binding order.
fn buffer_specs<'a>(spec: &JobAssign, buffers: &'a [Vec<u8>]) -> Vec<BufferSpec<'a>> {
    spec.buffers
        .iter()
        .enumerate()
        .map(|(i, b)| BufferSpec {
            binding: b.binding,
            len: b.len,
            init: buffers.get(i).filter(|d| !d.is_empty()).map(|d| &d[..]),
            readback: b.readback,
        })
        .collect()
}

/// The dispatcher's job for an assignment, over `specs` from [`buffer_specs`].
fn kernel_job<'a>(
    spec: &'a JobAssign,
    kernel: &'a [u8],
    specs: &'a [BufferSpec<'a>],
) -> KernelJob<'a> {
    KernelJob {
        spirv: kernel,
        entry_point: &spec.kernel.entry_point,
        specialization: &spec.kernel.specialization,
        push_constants: &spec.kernel.push_constants,
        grid: spec.kernel.grid,
        buffers: specs,
    }
}

#[cfg(feature = "net")]
impl crate::net::Executor for GpuHost {
    fn run(&mut self, job: &crate::net::JobToRun) -> Result<JobOutputs, JobFailure> {
        // Cancelled (by the coordinator, or the job's deadline passed on the
        // agent's side) stops the kernel early; the runtime drops the result.
        self.run_inner(
            &job.spec,
            &job.kernel,
            &job.buffers,
            job.timeout(),
            Some(job.cancel.as_atomic()),
        )
    }

    /// Jobs waiting together go to the device together
    /// ([`Dispatcher::run_batch`]).
    fn batch_size(&self) -> usize {
        BATCH_SIZE
    }

    fn run_batch(
        &mut self,
        jobs: &[&crate::net::JobToRun],
        done: &mut dyn FnMut(usize, Result<JobOutputs, JobFailure>),
    ) {
        let specs: Vec<Vec<BufferSpec<'_>>> = jobs
            .iter()
            .map(|j| buffer_specs(&j.spec, &j.buffers))
            .collect();
        // The time limit each job had when the batch began, for metering
        // a timeout.
        let timeouts: Vec<Duration> = jobs.iter().map(|j| j.timeout()).collect();
        let batch: Vec<BatchJob<'_>> = jobs
            .iter()
            .zip(&specs)
            .map(|(j, s)| BatchJob {
                job: kernel_job(&j.spec, &j.kernel, s),
                deadline: j.deadline,
                cancel: Some(j.cancel.as_atomic()),
                // A sealed job's plaintext: the dispatcher keeps nothing of it.
                confidential: j.spec.sealing.is_some(),
                secret_kernel: secret_kernel(&j.spec),
            })
            .collect();
        self.dispatcher.run_batch(&batch, |i, ran| {
            let timeout = timeouts.get(i).copied().unwrap_or_default();
            let sealed = jobs.get(i).is_some_and(|j| j.spec.sealing.is_some());
            done(i, outcome(ran, timeout, sealed));
        });
    }

    /// No while the dispatcher's devices abandoned after timeouts are at
    /// their bound; asking reclaims those whose work has finished.
    fn accepting_jobs(&mut self) -> bool {
        self.dispatcher.accepting_jobs()
    }

    /// Vulkan objects are not bound to a thread: the dispatcher only needs
    /// one caller at a time, which the runtime's lock on it gives. A kernel
    /// the Khronos validator has not passed yet goes to the worker (the
    /// validator has its own time limit, not the job's), and so does a
    /// sealed kernel, whose verdict is never kept.
    fn may_run_inline(&mut self, job: &crate::net::JobToRun) -> bool {
        !secret_kernel(&job.spec) && self.dispatcher.kernel_validated(&job.kernel)
    }
}
