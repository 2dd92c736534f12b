//! The dispatcher: validates a job, runs it on its device with a deadline,
//! meters it and returns its outputs.

use super::caps::{self, Capabilities, DeviceBenchmark, Probe};
use super::error::{JobError, KernelRejection, VulkanError};
use super::gpu::{Gpu, Slot, LANES};
use super::instance::{DeviceInfo, DeviceSelector, Instance, ValidationMessage, VkHandles};
use super::khronos::{KhronosConfig, KhronosGate, TargetEnv};
use super::validate::{
    self, KernelInfo, Rules, ZeroWorkgroup, BASE_CAPABILITIES, OPTIONAL_CAPABILITIES,
};
use ash::vk;
use rspirv::spirv::Capability;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often a cancellable run looks at its flag while the device works.
const CANCEL_POLL: Duration = Duration::from_millis(10);
/// How long a cancelled kernel gets to leave its loops (the watchdog stops
/// it at the next back edge) before its device is abandoned as after a
/// timeout.
const CANCEL_GRACE: Duration = Duration::from_secs(1);

/// How long a job of a round may run before the jobs ahead of it that have
/// ended are reported: a slow job does not keep ended ones waiting (past
/// their own deadlines) until it ends.
const REPORT_AFTER: Duration = Duration::from_millis(1);

/// Most push-constant bytes a job may carry (the Vulkan guaranteed minimum).
pub const MAX_PUSH_CONSTANTS: usize = 128;

/// Binding numbers of a job's buffers are below this.
pub const MAX_BINDINGS: u32 = 32;

const COPY_SPV: &[u8] = include_bytes!("../../kernels/copy.spv");
const FMA_SPV: &[u8] = include_bytes!("../../kernels/fma.spv");

/// Settings of a [`Dispatcher`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DispatcherConfig {
    /// Enable `VK_LAYER_KHRONOS_validation` and record its warnings and
    /// errors (see [`Dispatcher::validation_messages`]). For tests; slow.
    pub validation: bool,
    /// Most bytes of job buffers one job may use (after rounding each buffer
    /// up to its pool size, a power of two of at least 256 bytes).
    pub memory_budget: u64,
    /// Most bytes of idle buffers kept for reuse between jobs.
    pub pool_bytes: u64,
    /// Most compiled pipelines kept (least recently used is evicted).
    pub pipeline_cache_capacity: usize,
    /// Largest SPIR-V module accepted, in bytes.
    pub max_kernel_bytes: u64,
    /// Most buffers per job (also capped by the device limit).
    pub max_buffers: u32,
    /// Most private and function-local bytes per invocation a kernel may declare.
    pub max_private_bytes: u64,
    /// A grid with more workgroups than this is split along x into several
    /// dispatches (`vkCmdDispatchBase`), unless the kernel reads `NumWorkgroups`.
    pub max_workgroups_per_dispatch: u64,
    /// Use device-local buffers with host-visible staging copies even when
    /// device-local host-visible memory exists (exercises the discrete-GPU path).
    pub force_staging: bool,
    /// Zero workgroup memory with code injected at the entry point even on
    /// a device that null-initialises it (exercises the fallback path).
    pub force_workgroup_zeroing_code: bool,
    /// Invocations per second this device is taken to run at most, for the
    /// bound on a job's total work (grid × workgroup size ≤ rate × time
    /// limit). `None`: 16 times the rate the start-up benchmark's copy
    /// kernel measured, or 2^40 per second before it ran.
    pub max_invocations_per_second: Option<u64>,
    /// How job time is metered.
    pub metering: Metering,
    /// The second gate: the Khronos validator (`spirv-val`), run on every
    /// new kernel, bounded in time and memory.
    pub khronos: KhronosConfig,
    /// Most devices given up on after a timeout or loss whose work has not
    /// finished yet. At this number the dispatcher refuses jobs
    /// ([`JobError::DeviceUnavailable`]) until one is reclaimed
    /// ([`Dispatcher::reclaim_abandoned`]), so endless kernels cannot pile
    /// up devices and burn the machine.
    pub max_abandoned_devices: usize,
}

/// How [`Usage::gpu_time_ns`] is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Metering {
    /// GPU timestamps on GPUs; the host clock on CPU implementations, where
    /// "GPU time" is host time anyway and timestamp queries are costly
    /// (about 40 us per job on lavapipe, see docs/VULKAN.md).
    #[default]
    Auto,
    /// Always GPU timestamp queries (when the queue supports them).
    Timestamps,
    /// Host monotonic clock from submission to fence signal (includes
    /// submission latency, so it slightly overstates device time).
    HostClock,
}

/// Which clock produced a job's [`Usage::gpu_time_ns`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MeterClock {
    /// Device timestamps around the dispatches.
    #[default]
    GpuTimestamps,
    /// Host clock from submit to fence signal.
    HostClock,
}

impl Default for DispatcherConfig {
    fn default() -> Self {
        DispatcherConfig {
            validation: false,
            memory_budget: 1 << 30,
            pool_bytes: 256 << 20,
            pipeline_cache_capacity: 64,
            max_kernel_bytes: 1 << 20,
            max_buffers: 16,
            max_private_bytes: 16 << 10,
            max_workgroups_per_dispatch: 1 << 20,
            force_staging: false,
            force_workgroup_zeroing_code: false,
            max_invocations_per_second: None,
            metering: Metering::Auto,
            khronos: KhronosConfig::default(),
            max_abandoned_devices: 2,
        }
    }
}

/// One storage buffer of a job, bound at descriptor set 0, `binding`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BufferSpec<'a> {
    /// The binding number in descriptor set 0 (below [`MAX_BINDINGS`],
    /// distinct within a job).
    pub binding: u32,
    /// Length in bytes the kernel sees.
    pub len: u64,
    /// Initial contents (at most `len` bytes); the rest is zero.
    pub init: Option<&'a [u8]>,
    /// Whether the buffer's final contents are returned.
    pub readback: bool,
}

/// A compute job: an untrusted SPIR-V kernel and its inputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KernelJob<'a> {
    /// SPIR-V module bytes (little-endian words).
    pub spirv: &'a [u8],
    /// Name of the single `GLCompute` entry point.
    pub entry_point: &'a str,
    /// Specialization constants: (constant id, 32-bit value; narrower
    /// constants take the low bytes).
    pub specialization: &'a [(u32, u32)],
    /// Push-constant bytes (at most [`MAX_PUSH_CONSTANTS`]).
    pub push_constants: &'a [u8],
    /// Workgroup counts in x, y, z.
    pub grid: [u32; 3],
    /// The storage buffers.
    pub buffers: &'a [BufferSpec<'a>],
}

/// Told each job's index and outcome, with the outputs of a success.
type Reporter<'a> = dyn FnMut(usize, Result<Usage, JobError>, &mut Vec<Vec<u8>>) + 'a;

/// A job of a batch ([`Dispatcher::run_batch`]).
#[derive(Debug, Clone, Copy)]
pub struct BatchJob<'a> {
    /// The job.
    pub job: KernelJob<'a>,
    /// When it must have ended: validation and pipeline creation count,
    /// and so does the time it waits behind the batch's earlier jobs.
    pub deadline: Instant,
    /// Stops it early once set, as in [`Dispatcher::run_cancellable`].
    pub cancel: Option<&'a Arc<AtomicBool>>,
    /// The job's buffers and push constants are a secret (a sealed job's
    /// plaintext): the host memory of its buffers (inputs, outputs) is
    /// zeroed before they go back to the pool, and the recording of its
    /// commands, which holds its push constants, is forgotten. See
    /// docs/VULKAN.md, "Isolation", for what stays out of reach (the
    /// driver's own copies).
    pub confidential: bool,
    /// Its kernel is a secret too: the pipeline it builds (destroyed when
    /// its round of jobs ends) and the Khronos validator's verdict on it
    /// are not kept once the call returns, so a
    /// later job of the same kernel builds its pipeline again. (A pipeline
    /// a job in the clear built is used as it is: that kernel is no secret
    /// to this host.)
    pub secret_kernel: bool,
}

/// What a job consumed, for pricing and receipts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    /// GPU time between the timestamps around the dispatches, nanoseconds
    /// (0 when the queue has no timestamps).
    pub gpu_time_ns: u64,
    /// Number of dispatch commands recorded (more than 1 when the grid was split).
    pub dispatches: u32,
    /// Bytes uploaded (sum of init lengths).
    pub bytes_in: u64,
    /// Bytes returned (sum of lengths of readback buffers).
    pub bytes_out: u64,
    /// Which clock measured `gpu_time_ns`.
    pub clock: MeterClock,
}

/// Result of a successful job.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct JobOutput {
    /// One entry per buffer with `readback = true`, in buffer order.
    pub outputs: Vec<Vec<u8>>,
    /// Metered usage.
    pub usage: Usage,
}

/// Runs untrusted compute kernels on one Vulkan device.
///
/// Thread safety: a `Dispatcher` is `Send` but not `Sync`: it may move
/// between threads, and `run` takes `&mut self`, so one job runs at a time
/// per dispatcher. Several dispatchers (one per device, or several on the
/// same device) may run jobs concurrently from different threads; each owns
/// its Vulkan instance, device, queue and pools.
pub struct Dispatcher {
    gpu: Option<Gpu>,
    /// Devices given up on after a timeout whose work has not finished yet,
    /// each with the instance it came from (when that was replaced too).
    graveyard: Vec<Abandoned>,
    pd: vk::PhysicalDevice,
    device: DeviceInfo,
    probe: Probe,
    rules: Rules,
    config: DispatcherConfig,
    generation: u64,
    /// Invocations per second of the start-up benchmark's copy kernel.
    invocation_rate: Option<f64>,
    /// The second gate (`None` when turned off) and its target environment.
    khronos: Option<KhronosGate>,
    target_env: TargetEnv,
    /// Khronos verdicts by SHA-256 of the kernel bytes.
    verdicts: HashMap<[u8; 32], Result<(), KernelRejection>>,
    /// The running job's cancel flag, during [`Dispatcher::run_cancellable`].
    cancel: Option<Arc<AtomicBool>>,
    /// The last job's kernel key.
    last_kernel: KernelMemo,
    /// [`Dispatcher::drive`]'s vectors, kept for the next call.
    scratch: DriveScratch,
    /// Pipelines built for secret kernels ([`BatchJob::secret_kernel`]),
    /// destroyed when the call ends.
    ephemeral: Vec<[u8; 32]>,
    // Dropped last: every device above must be gone before the instance.
    handles: VkHandles,
}

// SAFETY: the raw pointers inside (host mappings of pooled buffers) are only
// dereferenced through `&mut self`, so moving the dispatcher to another
// thread cannot create shared access; Vulkan allows using a device and its
// objects from any thread as long as access is externally synchronized,
// which `&mut self` guarantees.
unsafe impl Send for Dispatcher {}

/// A kernel job that passed Tessera's own gate, as the driver would get it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedKernel {
    /// The rewritten module: specialization baked in, promises removed,
    /// indices clamped, workgroup memory zeroed, a watchdog on every loop.
    pub spirv: Vec<u32>,
    /// The workgroup size after specialization.
    pub workgroup_size: [u32; 3],
    /// Push-constant bytes the kernel's block needs (a multiple of 4).
    pub push_constant_bytes: u32,
    /// Whether the rewritten kernel reads the watchdog (it has loops).
    pub watchdog: bool,
}

/// Checks a job against a device's capabilities without a device: the
/// job-level limits and Tessera's own kernel gate (parse, facts, policy,
/// rewrite), as [`Dispatcher::run`] does before anything reaches a driver.
/// Not included: the Khronos validator (run `spirv-val` on `job.spirv`
/// for that), the bound on total work (it needs the time limit) and the
/// memory budget of a live dispatcher's pool. For requesters that check a
/// kernel before sending it, and for tests and fuzzing of the gate.
pub fn check_kernel(
    job: &KernelJob<'_>,
    device: &Capabilities,
    config: &DispatcherConfig,
) -> Result<CheckedKernel, KernelRejection> {
    check_job(job, device, config)?;
    let rules = build_rules(device, spirv_version_for(device.api_version), config);
    let push_len = u32::try_from(job.push_constants.len()).unwrap_or(u32::MAX);
    let (info, spirv) = validate::validate(
        job.spirv,
        job.entry_point,
        job.specialization,
        binding_mask(job),
        push_len,
        &rules,
    )?;
    Ok(CheckedKernel {
        spirv,
        workgroup_size: info.local_size,
        push_constant_bytes: info.push_constant_bytes,
        watchdog: info.watchdog,
    })
}

/// Highest SPIR-V version word a device of this Vulkan version accepts.
fn spirv_version_for(api: u32) -> u32 {
    if api >= vk::API_VERSION_1_3 {
        0x0001_0600
    } else if api >= vk::API_VERSION_1_2 {
        0x0001_0500
    } else {
        0x0001_0300
    }
}

fn build_rules(c: &Capabilities, max_version: u32, config: &DispatcherConfig) -> Rules {
    let f = &c.features;
    let sg = vk::SubgroupFeatureFlags::from_raw(f.subgroup_operations);
    let mut allowed: HashSet<u32> = BASE_CAPABILITIES.iter().map(|c| *c as u32).collect();
    let mut supported = |cap: Capability, ok: bool| {
        if ok {
            allowed.insert(cap as u32);
        }
    };
    supported(Capability::Int8, f.int8);
    supported(Capability::Int16, f.int16);
    supported(Capability::Int64, f.int64);
    supported(Capability::Float16, f.float16);
    supported(Capability::Float64, f.float64);
    supported(Capability::StorageBuffer16BitAccess, f.storage_buffer_16bit);
    supported(Capability::StorageBuffer8BitAccess, f.storage_buffer_8bit);
    supported(
        Capability::VariablePointersStorageBuffer,
        f.variable_pointers,
    );
    use vk::SubgroupFeatureFlags as Sg;
    for (cap, flag) in [
        (Capability::GroupNonUniform, Sg::BASIC),
        (Capability::GroupNonUniformVote, Sg::VOTE),
        (Capability::GroupNonUniformArithmetic, Sg::ARITHMETIC),
        (Capability::GroupNonUniformBallot, Sg::BALLOT),
        (Capability::GroupNonUniformShuffle, Sg::SHUFFLE),
        (
            Capability::GroupNonUniformShuffleRelative,
            Sg::SHUFFLE_RELATIVE,
        ),
        (Capability::GroupNonUniformClustered, Sg::CLUSTERED),
        (Capability::GroupNonUniformQuad, Sg::QUAD),
    ] {
        supported(cap, sg.contains(flag));
    }
    let known_unsupported = OPTIONAL_CAPABILITIES
        .iter()
        .map(|c| *c as u32)
        .filter(|c| !allowed.contains(c))
        .collect();
    Rules {
        allowed,
        known_unsupported,
        max_version,
        max_kernel_bytes: config.max_kernel_bytes,
        max_workgroup_size: c.limits.max_workgroup_size,
        max_invocations: c.limits.max_invocations,
        max_shared_bytes: u64::from(c.limits.max_shared_memory),
        max_private_bytes: config.max_private_bytes,
        zero_workgroup: if c.robustness.zero_initialize_workgroup_memory
            && !config.force_workgroup_zeroing_code
        {
            ZeroWorkgroup::NullInitializers
        } else {
            ZeroWorkgroup::Code
        },
    }
}

fn use_timestamps(probe: &Probe, config: &DispatcherConfig) -> bool {
    probe.caps.timestamps
        && match config.metering {
            Metering::Auto => probe.caps.device_type != super::DeviceType::Cpu,
            Metering::Timestamps => true,
            Metering::HostClock => false,
        }
}

/// The set of a job's binding numbers, one bit each (checked below
/// [`MAX_BINDINGS`] by `check_job`).
fn binding_mask(job: &KernelJob<'_>) -> u32 {
    job.buffers
        .iter()
        .fold(0, |m, b| m | 1u32.checked_shl(b.binding).unwrap_or(0))
}

/// SHA-256 of everything that makes a pipeline distinct: the kernel, its
/// specialization and the bindings its layout has.
fn kernel_key(job: &KernelJob<'_>) -> [u8; 32] {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(&binding_mask(job).to_le_bytes());
    ctx.update(&(job.spirv.len() as u64).to_le_bytes());
    ctx.update(job.spirv);
    ctx.update(&(job.entry_point.len() as u64).to_le_bytes());
    ctx.update(job.entry_point.as_bytes());
    ctx.update(&(job.specialization.len() as u64).to_le_bytes());
    for (id, v) in job.specialization {
        ctx.update(&id.to_le_bytes());
        ctx.update(&v.to_le_bytes());
    }
    let mut key = [0u8; 32];
    key.copy_from_slice(ctx.finish().as_ref());
    key
}

/// Kernels up to this many bytes are kept by [`KernelMemo`]; larger ones
/// are hashed for every job.
const MEMO_MAX_KERNEL_BYTES: usize = 64 * 1024;

/// The last kernel of a [`Dispatcher::drive`] call and its [`kernel_key`]:
/// a job of the same kernel (compared byte for byte, with its entry point,
/// specialization and bindings) is not hashed again. The copy may be a
/// sealed job's plaintext, so it is zeroed (spare capacity included) when
/// another kernel replaces it, when the call returns ([`KernelMemo::forget`])
/// and on drop: no kernel outlives the call that ran it.
#[derive(Default)]
struct KernelMemo {
    key: Option<[u8; 32]>,
    mask: u32,
    spirv: Vec<u8>,
    entry_point: Vec<u8>,
    /// (constant id << 32) | value.
    specialization: Vec<u64>,
}

fn spec_word(&(id, value): &(u32, u32)) -> u64 {
    (u64::from(id) << 32) | u64::from(value)
}

impl KernelMemo {
    /// `kernel_key(job)`, from the memo when `job` has the last kernel.
    fn key(&mut self, job: &KernelJob<'_>) -> [u8; 32] {
        let mask = binding_mask(job);
        if let Some(key) = self.key {
            if self.mask == mask
                && self.spirv == job.spirv
                && self.entry_point == job.entry_point.as_bytes()
                && self
                    .specialization
                    .iter()
                    .copied()
                    .eq(job.specialization.iter().map(spec_word))
            {
                return key;
            }
        }
        let key = kernel_key(job);
        self.forget();
        if job.spirv.len() <= MEMO_MAX_KERNEL_BYTES {
            self.key = Some(key);
            self.mask = mask;
            self.spirv.extend_from_slice(job.spirv);
            self.entry_point
                .extend_from_slice(job.entry_point.as_bytes());
            self.specialization
                .extend(job.specialization.iter().map(spec_word));
        }
        key
    }

    /// Zeroes and empties the memo (its vectors keep their capacity).
    /// Without a key it holds nothing: it was zeroed when that was taken.
    fn forget(&mut self) {
        use zeroize::Zeroize;
        if self.key.take().is_none() {
            return;
        }
        self.mask = 0;
        self.spirv.zeroize();
        self.entry_point.zeroize();
        self.specialization.zeroize();
    }
}

impl Drop for KernelMemo {
    fn drop(&mut self) {
        self.forget();
    }
}

/// One value for each buffer of a job (distinct bindings below
/// [`MAX_BINDINGS`], so at most that many).
type PerBuffer<T> = heapless::Vec<T, { MAX_BINDINGS as usize }>;

/// Job-level checks that need no parsing; returns each buffer's pool capacity.
fn check_job(
    job: &KernelJob<'_>,
    caps: &Capabilities,
    config: &DispatcherConfig,
) -> Result<PerBuffer<u64>, KernelRejection> {
    let limits = &caps.limits;
    let max_push = MAX_PUSH_CONSTANTS.min(limits.max_push_constants as usize);
    if job.push_constants.len() > max_push {
        return Err(KernelRejection::PushConstantsTooLarge {
            len: u32::try_from(job.push_constants.len()).unwrap_or(u32::MAX),
            max: max_push as u32,
        });
    }
    if job.grid.contains(&0) {
        return Err(KernelRejection::EmptyGrid);
    }
    if job
        .grid
        .iter()
        .zip(limits.max_workgroup_count)
        .any(|(g, m)| *g > m)
    {
        return Err(KernelRejection::GridTooLarge { grid: job.grid });
    }
    let max_buffers = config.max_buffers.min(limits.max_storage_buffers);
    if job.buffers.len() > max_buffers as usize {
        return Err(KernelRejection::TooManyBuffers {
            count: u32::try_from(job.buffers.len()).unwrap_or(u32::MAX),
            max: max_buffers,
        });
    }
    let mut total = 0u64;
    let mut caps = PerBuffer::new();
    let mut seen = 0u32;
    for (i, b) in job.buffers.iter().enumerate() {
        let index = i as u32;
        if b.binding >= MAX_BINDINGS {
            return Err(KernelRejection::BindingOutOfRange {
                index,
                binding: b.binding,
            });
        }
        if seen & (1 << b.binding) != 0 {
            return Err(KernelRejection::DuplicateBinding { binding: b.binding });
        }
        seen |= 1 << b.binding;
        if b.len == 0 {
            return Err(KernelRejection::EmptyBuffer { index });
        }
        if b.init.is_some_and(|d| d.len() as u64 > b.len) {
            return Err(KernelRejection::InitTooLong { index });
        }
        if b.len > u64::from(limits.max_storage_buffer_range) {
            return Err(KernelRejection::BufferTooLarge {
                index,
                len: b.len,
                max: u64::from(limits.max_storage_buffer_range),
            });
        }
        let c = capacity_for(b.len);
        total = total.saturating_add(c);
        if caps.push(c).is_err() {
            // Not reached: distinct bindings below MAX_BINDINGS.
            return Err(KernelRejection::TooManyBuffers {
                count: u32::try_from(job.buffers.len()).unwrap_or(u32::MAX),
                max: MAX_BINDINGS,
            });
        }
    }
    if total > config.memory_budget {
        return Err(KernelRejection::MemoryBudgetExceeded {
            requested: total,
            budget: config.memory_budget,
        });
    }
    Ok(caps)
}

/// Pool size class for a buffer of `len` bytes.
fn capacity_for(len: u64) -> u64 {
    len.max(256).next_power_of_two()
}

/// A job's invocations: its grid times its pipeline's workgroup size.
fn invocations(job: &KernelJob<'_>, p: &Pipeline) -> u64 {
    job.grid
        .iter()
        .chain(&p.local_size)
        .fold(1u64, |n, d| n.saturating_mul(u64::from(*d)))
}

/// Most invocations of a job submitted behind others in a batch.
const MAX_BATCHED_INVOCATIONS: u64 = 1 << 14;

/// A device whose last submission never completed, kept until it does.
struct Abandoned {
    gpu: Gpu,
    handles: Option<VkHandles>,
}

impl Abandoned {
    fn destroy(mut self) {
        self.gpu.destroy();
        // The instance (if any) is dropped after its device.
        drop(self.handles);
    }
}

/// What a recorded command buffer depends on.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct RecordKey {
    pipeline: vk::Pipeline,
    /// (buffer, its binding, descriptor range, bytes uploaded when staged,
    /// read back).
    buffers: Vec<(vk::Buffer, u32, u64, u64, bool)>,
    push: Vec<u8>,
    grid: [u32; 3],
}

impl RecordKey {
    /// Zeroes the push constants it holds (a confidential job's).
    pub(crate) fn wipe(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.push);
    }

    /// Whether the recording binds `pipeline`.
    pub(crate) fn names(&self, pipeline: vk::Pipeline) -> bool {
        self.pipeline == pipeline
    }
}

/// What [`RecordKey::buffers`] holds for a job's buffers in `slots`.
fn record_buffers<'a>(
    slots: &'a [Slot],
    specs: &'a [BufferSpec<'_>],
    fill_lens: &'a [u64],
) -> impl Iterator<Item = (vk::Buffer, u32, u64, u64, bool)> + 'a {
    slots
        .iter()
        .zip(specs)
        .zip(fill_lens)
        .map(|((s, spec), fill)| (s.buffer, spec.binding, spec.len, *fill, spec.readback))
}

/// The jobs of a [`Dispatcher::drive`] call not yet submitted, those of
/// its round, and when each of them ended.
#[derive(Default)]
struct DriveScratch {
    pending: VecDeque<usize>,
    round: Vec<(usize, Instant)>,
    ended: Vec<Instant>,
}

struct Pipeline {
    pipeline: vk::Pipeline,
    layout: vk::PipelineLayout,
    set_layout: vk::DescriptorSetLayout,
    push_bytes: u32,
    reads_num_workgroups: bool,
    local_size: [u32; 3],
}

/// Most Khronos verdicts kept (each 32 bytes of key and a verdict).
const VERDICT_CACHE_CAPACITY: usize = 4096;

/// Headroom over the benchmarked copy rate for the bound on total work:
/// an invocation that does almost nothing runs faster than a copy.
const WORK_HEADROOM: f64 = 16.0;
/// Invocations per second assumed before the start-up benchmark ran.
const DEFAULT_INVOCATION_RATE: f64 = (1u64 << 40) as f64;

impl Dispatcher {
    /// Opens the selected device with robust buffer access enabled.
    pub fn new(
        instance: &Instance,
        selector: DeviceSelector,
        config: DispatcherConfig,
    ) -> Result<Dispatcher, VulkanError> {
        let handles = VkHandles::create(instance.handles.entry.clone(), config.validation)?;
        let (pd, info) = handles.select(&selector)?;
        let probe = caps::probe(&handles, pd, info.device_type)?;
        let rules = build_rules(&probe.caps, probe.max_spirv_version, &config);
        let khronos = KhronosGate::new(&config.khronos)
            .map_err(|e| VulkanError::KhronosUnavailable(e.to_string()))?;
        let target_env = match probe.max_spirv_version {
            v if v >= 0x0001_0600 => TargetEnv::Vulkan1_3,
            v if v >= 0x0001_0500 => TargetEnv::Vulkan1_2,
            _ => TargetEnv::Vulkan1_1,
        };
        let gpu = Gpu::create(
            &handles.instance,
            pd,
            &probe,
            config.max_buffers,
            config.force_staging,
            use_timestamps(&probe, &config),
        )?;
        Ok(Dispatcher {
            gpu: Some(gpu),
            graveyard: Vec::new(),
            pd,
            device: info,
            probe,
            rules,
            config,
            generation: 0,
            invocation_rate: None,
            khronos,
            target_env,
            verdicts: HashMap::new(),
            cancel: None,
            last_kernel: KernelMemo::default(),
            scratch: DriveScratch::default(),
            ephemeral: Vec::new(),
            handles,
        })
    }

    /// What the device is and can do (benchmark figures once
    /// [`Dispatcher::run_startup_benchmark`] ran).
    pub fn capabilities(&self) -> &Capabilities {
        &self.probe.caps
    }

    /// How many times the logical device was replaced after a timeout or a
    /// device loss.
    pub fn device_generation(&self) -> u64 {
        self.generation
    }

    /// Number of compiled pipelines currently cached.
    pub fn cached_pipelines(&self) -> usize {
        self.gpu.as_ref().map_or(0, Gpu::cached_pipelines)
    }

    /// Whether the host memory of a buffer waiting in the pool for the
    /// next job holds `needle` (for tests that a confidential job leaves
    /// no bytes behind, [`BatchJob::confidential`]).
    #[doc(hidden)]
    pub fn pool_holds(&self, needle: &[u8]) -> bool {
        self.gpu.as_ref().is_some_and(|g| g.pool_holds(needle))
    }

    /// Number of Khronos verdicts cached (for tests of secret kernels,
    /// [`BatchJob::secret_kernel`]).
    #[doc(hidden)]
    pub fn cached_verdicts(&self) -> usize {
        self.verdicts.len()
    }

    /// Replaced devices whose last job has not finished yet (a kernel still
    /// spinning on a CPU implementation, for example).
    pub fn abandoned_devices(&self) -> usize {
        self.graveyard.len()
    }

    /// Destroys every abandoned device whose work has finished (each with
    /// its Vulkan instance, which on CPU implementations owns the worker
    /// threads) and returns how many are still abandoned. Cheap: one fence
    /// status query per abandoned device. `run` calls it too; a host that
    /// is refusing work calls it while idle.
    pub fn reclaim_abandoned(&mut self) -> usize {
        self.reap_graveyard();
        self.graveyard.len()
    }

    /// Whether the dispatcher takes jobs now: fewer than
    /// `max_abandoned_devices` devices are still running abandoned work.
    /// Reclaims finished ones first.
    pub fn accepting_jobs(&mut self) -> bool {
        self.reclaim_abandoned() < self.config.max_abandoned_devices.max(1)
    }

    /// Drains the validation-layer warnings and errors recorded so far
    /// (always empty unless `DispatcherConfig::validation` is on).
    pub fn validation_messages(&self) -> Vec<ValidationMessage> {
        self.handles.take_messages()
    }

    /// Runs `job`, failing with [`JobError::Timeout`] if it has not finished
    /// within `timeout` (validation and pipeline creation count too).
    pub fn run(&mut self, job: &KernelJob<'_>, timeout: Duration) -> Result<JobOutput, JobError> {
        let mut outputs = Vec::new();
        let usage = self.run_into(job, timeout, &mut outputs)?;
        Ok(JobOutput { outputs, usage })
    }

    /// Like [`Dispatcher::run`], but stops early with [`JobError::Cancelled`]
    /// once `cancel` is set: before the job starts, or while the device runs
    /// it (checked every 10 ms). A running kernel is stopped by the watchdog
    /// every rewritten loop reads, and the device is kept when the kernel
    /// leaves within a second; otherwise it is abandoned as after a timeout.
    pub fn run_cancellable(
        &mut self,
        job: &KernelJob<'_>,
        timeout: Duration,
        cancel: &Arc<AtomicBool>,
    ) -> Result<JobOutput, JobError> {
        self.cancel = Some(cancel.clone());
        let result = self.run(job, timeout);
        self.cancel = None;
        result
    }

    /// Measures copy bandwidth and FMA throughput with two short kernels and
    /// stores them in [`Capabilities::benchmark`]. Each run may take 30 s:
    /// milliseconds on a GPU or lavapipe, but lavapipe under valgrind (the C
    /// tests in CI) on a loaded machine took over 10 s for a run once the
    /// watchdog's flag read became an atomic load.
    pub fn run_startup_benchmark(&mut self) -> Result<DeviceBenchmark, JobError> {
        let timeout = Duration::from_secs(30);
        // Copy: 16 MiB of uvec4, timed on the second run (the first compiles).
        let elems: u32 = 1 << 20;
        let bytes = u64::from(elems) * 16;
        let push = elems.to_le_bytes();
        let bufs = [
            BufferSpec {
                binding: 0,
                len: bytes,
                init: None,
                readback: false,
            },
            BufferSpec {
                binding: 1,
                len: bytes,
                init: None,
                readback: false,
            },
        ];
        let copy = KernelJob {
            spirv: COPY_SPV,
            entry_point: "main",
            specialization: &[],
            push_constants: &push,
            grid: [elems / 256, 1, 1],
            buffers: &bufs,
        };
        let mut out = Vec::new();
        self.run_into(&copy, timeout, &mut out)?;
        // The median of three timed runs: one run slowed or cut short by the
        // machine's load moves neither figure (the invocation rate bounds
        // every later job's work).
        let mut times = [0u64; 3];
        for t in &mut times {
            *t = self.run_into(&copy, timeout, &mut out)?.gpu_time_ns.max(1);
        }
        times.sort_unstable();
        let t = times[1];
        let copy_gbps = bytes as f64 / t as f64;
        self.invocation_rate = Some(f64::from(elems) * 1e9 / t as f64);
        // FMA: 256 workgroups x 64 invocations x iters x 8 vec4 FMAs x 2 flops.
        let mut iters: u32 = 256;
        let mut fma_gflops = 0.0;
        for _ in 0..3 {
            let push = iters.to_le_bytes();
            let bufs = [BufferSpec {
                binding: 0,
                len: 256 * 64 * 4,
                init: None,
                readback: false,
            }];
            let job = KernelJob {
                spirv: FMA_SPV,
                entry_point: "main",
                specialization: &[],
                push_constants: &push,
                grid: [256, 1, 1],
                buffers: &bufs,
            };
            let t = self.run_into(&job, timeout, &mut out)?.gpu_time_ns.max(1);
            let flops = 256.0 * 64.0 * f64::from(iters) * 8.0 * 4.0 * 2.0;
            fma_gflops = flops / t as f64;
            // Too short to time well on a fast GPU: scale up and measure again.
            if t > 2_000_000 {
                break;
            }
            iters = iters.saturating_mul(16);
        }
        let bench = DeviceBenchmark {
            copy_gbps: copy_gbps as f32,
            fma_gflops: fma_gflops as f32,
        };
        self.probe.caps.benchmark = Some(bench);
        Ok(bench)
    }

    fn reap_graveyard(&mut self) {
        let mut i = 0;
        while i < self.graveyard.len() {
            if self.graveyard[i].gpu.settled() {
                self.graveyard.swap_remove(i).destroy();
            } else {
                i += 1;
            }
        }
    }

    /// Gives up on the current device after a timeout or loss. A device
    /// whose work is still running cannot be destroyed; it is parked with
    /// its instance, and a fresh instance is opened: on CPU implementations
    /// (lavapipe) the instance owns the worker threads, so only a new
    /// instance gets threads that are not busy with the abandoned kernel.
    fn abandon(&mut self) {
        let Some(mut gpu) = self.gpu.take() else {
            return;
        };
        if gpu.settled() {
            gpu.destroy();
            return;
        }
        // Confidential jobs that ended leave nothing while it is parked.
        gpu.wipe_idle_confidential();
        let fresh = VkHandles::create_with_log(
            self.handles.entry.clone(),
            self.handles.validation,
            self.handles.messages.clone(),
        )
        .and_then(|h| {
            let (pd, info) = h.select(&DeviceSelector::Index(self.device.index))?;
            if info.vendor_id != self.device.vendor_id
                || info.device_id != self.device.device_id
                || info.name != self.device.name
            {
                return Err(VulkanError::DeviceNotFound);
            }
            // The device is created with the probe's queue family: ask this
            // instance for the families first, as Vulkan requires
            // (VUID-VkDeviceQueueCreateInfo-queueFamilyIndex-00381; only
            // family 0 passed unasked, so lavapipe never showed it).
            // SAFETY: `pd` was enumerated from `h`'s live instance.
            let families = unsafe { h.instance.get_physical_device_queue_family_properties(pd) };
            let family = families.get(self.probe.queue_family as usize);
            if !family.is_some_and(|f| f.queue_flags.contains(vk::QueueFlags::COMPUTE)) {
                return Err(VulkanError::DeviceNotFound);
            }
            Ok((h, pd))
        });
        match fresh {
            Ok((h, pd)) => {
                let old = std::mem::replace(&mut self.handles, h);
                self.pd = pd;
                self.graveyard.push(Abandoned {
                    gpu,
                    handles: Some(old),
                });
            }
            Err(_) => self.graveyard.push(Abandoned { gpu, handles: None }),
        }
    }

    fn recreate(&mut self) -> Result<(), JobError> {
        let gpu = Gpu::create(
            &self.handles.instance,
            self.pd,
            &self.probe,
            self.config.max_buffers,
            self.config.force_staging,
            use_timestamps(&self.probe, &self.config),
        )
        .map_err(|e| match e {
            VulkanError::Vulkan(r) => JobError::from(r),
            _ => JobError::DeviceLost { fault: None },
        })?;
        self.gpu = Some(gpu);
        self.generation += 1;
        Ok(())
    }

    /// The most invocations this device runs per second, for the bound on
    /// a job's total work.
    fn invocation_rate(&self) -> f64 {
        match (self.config.max_invocations_per_second, self.invocation_rate) {
            (Some(r), _) => r as f64,
            (None, Some(r)) => r * WORK_HEADROOM,
            (None, None) => DEFAULT_INVOCATION_RATE,
        }
    }

    /// Refuses a job with more invocations than the device runs within
    /// its time limit.
    fn check_work(&self, invocations: u64, timeout: Duration) -> Result<(), KernelRejection> {
        let max = (self.invocation_rate() * timeout.as_secs_f64()).min(u64::MAX as f64) as u64;
        if invocations > max.max(1) {
            return Err(KernelRejection::TooMuchWork { invocations, max });
        }
        Ok(())
    }

    /// Whether `spirv` needs no run of the Khronos validator: its verdict
    /// is cached, or there is no validator.
    pub fn kernel_validated(&self, spirv: &[u8]) -> bool {
        if self.khronos.is_none() {
            return true;
        }
        let digest = ring::digest::digest(&ring::digest::SHA256, spirv);
        let mut key = [0u8; 32];
        key.copy_from_slice(digest.as_ref());
        self.verdicts.contains_key(&key)
    }

    /// The Khronos validator's verdict on a kernel (cached by its bytes'
    /// SHA-256, refusals too, when `keep`; a failure of the tool itself is
    /// not cached).
    fn khronos_check(&mut self, spirv: &[u8], keep: bool) -> Result<(), JobError> {
        let Some(gate) = &self.khronos else {
            return Ok(());
        };
        let digest = ring::digest::digest(&ring::digest::SHA256, spirv);
        let mut key = [0u8; 32];
        key.copy_from_slice(digest.as_ref());
        if let Some(verdict) = self.verdicts.get(&key) {
            return verdict.clone().map_err(JobError::Rejected);
        }
        // The first gate accepted the module, so it is whole words.
        let mut words: Vec<u32> = spirv
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        let checked = gate.validate(&words, self.target_env);
        zeroize::Zeroize::zeroize(&mut words);
        let verdict = match checked {
            Ok(()) => Ok(()),
            Err(f) if f.is_verdict() => match f.into_job_error() {
                JobError::Rejected(r) => Err(r),
                other => return Err(other),
            },
            Err(f) => return Err(f.into_job_error()),
        };
        if !keep {
            return verdict.map_err(JobError::Rejected);
        }
        if self.verdicts.len() >= VERDICT_CACHE_CAPACITY {
            if let Some(old) = self.verdicts.keys().next().copied() {
                self.verdicts.remove(&old);
            }
        }
        self.verdicts.insert(key, verdict.clone());
        verdict.map_err(JobError::Rejected)
    }

    /// Finds or builds the pipeline for `job`; one built for a `secret`
    /// kernel is destroyed when the call ends, and evicts no other.
    fn pipeline(
        &mut self,
        job: &KernelJob<'_>,
        key: [u8; 32],
        deadline: Instant,
        secret: bool,
    ) -> Result<Pipeline, JobError> {
        let gpu = self
            .gpu
            .as_mut()
            .ok_or(JobError::DeviceLost { fault: None })?;
        let push_len = job.push_constants.len() as u32;
        let check = |info: &KernelInfo| -> Result<(), KernelRejection> {
            if info.push_constant_bytes > push_len {
                return Err(KernelRejection::PushConstantsTooSmall {
                    kernel: info.push_constant_bytes,
                    job: push_len,
                });
            }
            Ok(())
        };
        if gpu.cached(&key).is_none() {
            // A new kernel: the first gate (ours), then the second (the
            // Khronos validator, whose verdict is cached by the kernel's
            // bytes), then the driver.
            let (info, mut code) = validate::validate(
                job.spirv,
                job.entry_point,
                job.specialization,
                binding_mask(job),
                push_len,
                &self.rules,
            )?;
            let built = match self.khronos_check(job.spirv, !secret) {
                Ok(()) => match self.gpu.as_mut() {
                    Some(gpu) => gpu
                        .create_pipeline(
                            key,
                            &code,
                            job.entry_point,
                            info,
                            // Past the capacity until the call ends, rather
                            // than evicting a pipeline that is kept.
                            if secret {
                                usize::MAX
                            } else {
                                self.config.pipeline_cache_capacity
                            },
                            deadline,
                        )
                        .map(|_| ()),
                    None => Err(JobError::DeviceLost { fault: None }),
                },
                Err(e) => Err(e),
            };
            // The rewritten kernel is the job's kernel too.
            zeroize::Zeroize::zeroize(&mut code);
            built?;
            if secret {
                self.ephemeral.push(key);
            }
        }
        let p = self
            .gpu
            .as_mut()
            .and_then(|g| g.cached(&key))
            .ok_or(JobError::DeviceLost { fault: None })?;
        check(&p.info)?;
        Ok(Pipeline {
            pipeline: p.pipeline,
            layout: p.layout,
            set_layout: p.set_layout,
            push_bytes: p.info.push_constant_bytes,
            reads_num_workgroups: p.info.reads_num_workgroups,
            local_size: p.info.local_size,
        })
    }

    /// Like [`Dispatcher::run`], but writes outputs into `outputs`, reusing
    /// its vectors' allocations across jobs. On error `outputs` is left
    /// with unspecified contents.
    pub fn run_into(
        &mut self,
        job: &KernelJob<'_>,
        timeout: Duration,
        outputs: &mut Vec<Vec<u8>>,
    ) -> Result<Usage, JobError> {
        let start = Instant::now();
        // A time limit beyond any real deadline waits a year at most.
        let deadline = start
            .checked_add(timeout)
            .unwrap_or_else(|| start + Duration::from_secs(365 * 24 * 3600));
        let cancel = self.cancel.clone();
        let one = [BatchJob {
            job: *job,
            deadline,
            cancel: cancel.as_ref(),
            confidential: false,
            secret_kernel: false,
        }];
        let mut result = Err(JobError::Cancelled);
        self.drive(&one, outputs, &mut |_, r, _| result = r);
        result
    }

    /// Runs several jobs, submitting up to sixteen ([`LANES`]) to the
    /// device before waiting on the first, so the device goes from one to
    /// the next without waiting for the host. Calls `done` once for each
    /// job, with its index in `jobs` and what [`Dispatcher::run`] would
    /// have returned, as soon as that is known (not necessarily in order).
    ///
    /// Each job keeps its own deadline and cancel flag, and no job sees
    /// another's buffers. A job joins the jobs already on the device only
    /// when its pipeline is built and the buffers of all of them fit in
    /// [`DispatcherConfig::memory_budget`]; otherwise it waits for them.
    /// When a job times out, is cancelled or loses the device, the
    /// watchdog that stops it stops every kernel on the device, so the
    /// jobs submitted behind it run again afterwards: delayed, never
    /// failed for it.
    pub fn run_batch(
        &mut self,
        jobs: &[BatchJob<'_>],
        mut done: impl FnMut(usize, Result<JobOutput, JobError>),
    ) {
        let mut scratch = Vec::new();
        self.drive(jobs, &mut scratch, &mut |i, r, outputs| {
            done(
                i,
                r.map(|usage| JobOutput {
                    outputs: std::mem::take(outputs),
                    usage,
                }),
            )
        });
    }

    /// Runs `jobs` in rounds of at most [`LANES`] submitted together.
    fn drive(
        &mut self,
        jobs: &[BatchJob<'_>],
        outputs: &mut Vec<Vec<u8>>,
        done: &mut Reporter<'_>,
    ) {
        // Vectors kept from call to call.
        let DriveScratch {
            mut pending,
            mut round,
            mut ended,
        } = std::mem::take(&mut self.scratch);
        pending.clear();
        pending.extend(0..jobs.len());
        // Whether a job of this call reached the device: those after it
        // waited.
        let mut waited = false;
        while !pending.is_empty() {
            round.clear();
            let generation = self.generation;
            // A device lost while submitting: recovered once the jobs
            // already submitted have ended.
            let mut lost = None;
            while round.len() < LANES {
                let Some(&i) = pending.front() else { break };
                let b = &jobs[i];
                if waited
                    && Instant::now() >= b.deadline
                    && !b.cancel.is_some_and(|c| c.load(Ordering::SeqCst))
                {
                    // Its time ran out while it waited behind other jobs:
                    // it fails without reaching the device. (A job that
                    // waited for none is checked as `run` always did.)
                    pending.pop_front();
                    done(i, Err(JobError::Timeout), outputs);
                    continue;
                }
                match self.submit(b, round.len(), jobs.len() > 1) {
                    Ok(Some(at)) => {
                        pending.pop_front();
                        round.push((i, at));
                        waited = true;
                    }
                    Ok(None) => break,
                    Err(e) => {
                        pending.pop_front();
                        // Only a timeout (building the pipeline) or a lost
                        // device leaves the device to see to; any other
                        // failure happened before the job reached it.
                        let hard = matches!(e, JobError::Timeout | JobError::DeviceLost { .. });
                        if hard && !round.is_empty() {
                            // The device was lost under the jobs ahead (only
                            // the first job of a round builds a pipeline):
                            // this one runs again on the next device.
                            pending.push_front(i);
                            lost = Some(e);
                            break;
                        }
                        if hard {
                            self.recover(None, false, &e);
                        }
                        done(i, Err(e), outputs);
                    }
                }
            }
            // Each job is waited on in order, and outputs are read once
            // all have ended (or one failed): the host copying one job's
            // outputs must not count in the time of the job behind it.
            // Except behind a slow job: once it has run for
            // `REPORT_AFTER`, the jobs ahead of it that ended are reported
            // (their deadlines do not wait for it), and if it ends while
            // their outputs are copied, it is metered as ending when the
            // copy began.
            ended.clear();
            let mut failed = None;
            let mut reported = 0;
            let mut previous: Option<Instant> = None;
            for (lane, &(i, _)) in round.iter().enumerate() {
                let mut seen_by = None;
                let left = || jobs[i].deadline.saturating_duration_since(Instant::now());
                if lane > reported && !self.lane_ended_within(lane, REPORT_AFTER.min(left())) {
                    let copy_began = Instant::now();
                    self.report(jobs, &round, &ended, reported, &mut previous, outputs, done);
                    reported = lane;
                    if self.lane_ended_within(lane, Duration::ZERO) {
                        seen_by = Some(copy_began);
                    }
                }
                match self.wait_lane(&jobs[i], lane) {
                    Ok(()) => ended.push(seen_by.unwrap_or_else(Instant::now)),
                    Err(e) => {
                        failed = Some((lane, e));
                        break;
                    }
                }
            }
            self.report(jobs, &round, &ended, reported, &mut previous, outputs, done);
            let mut rerun = round.len();
            if let Some((lane, e)) = failed {
                self.recover(Some(lane), round.len() > 1, &e);
                if let Some(&(i, _)) = round.get(lane) {
                    done(i, Err(e), outputs);
                }
                rerun = lane + 1;
            }
            // Those behind a failed job may have seen the watchdog stop
            // them (or were abandoned with the device): they run again.
            for &(i, _) in round[rerun.min(round.len())..].iter().rev() {
                pending.push_front(i);
            }
            if let Some(e) = lost {
                // Unless the device was replaced meanwhile.
                if self.generation == generation {
                    self.recover(None, false, &e);
                }
            }
            self.release_lanes();
            // Every lane is idle: a secret kernel's pipeline serves only
            // the round it was built for.
            self.drop_ephemeral();
        }
        self.scratch = DriveScratch {
            pending,
            round,
            ended,
        };
        // Nothing of this call's kernels stays in host memory.
        self.last_kernel.forget();
        self.drop_ephemeral();
    }

    /// Destroys the pipelines secret kernels built in this round. Every
    /// lane is idle here (a job's end was waited for, or its device
    /// abandoned, taking its pipelines with it).
    fn drop_ephemeral(&mut self) {
        if self.ephemeral.is_empty() {
            return;
        }
        let Some(gpu) = self.gpu.as_mut() else {
            self.ephemeral.clear();
            return;
        };
        if gpu.busy() {
            // Not reached (see above); kept for the next call's end.
            return;
        }
        for key in self.ephemeral.drain(..) {
            gpu.destroy_pipeline(&key);
        }
    }

    /// Collects and reports the jobs of `round` from lane `from` on that
    /// ended, each at its time in `ended` (one for each lane from the
    /// first); `previous` is the end of the job before them (the device
    /// takes a job once it has that one).
    #[allow(clippy::too_many_arguments)]
    fn report(
        &mut self,
        jobs: &[BatchJob<'_>],
        round: &[(usize, Instant)],
        ended: &[Instant],
        from: usize,
        previous: &mut Option<Instant>,
        outputs: &mut Vec<Vec<u8>>,
        done: &mut Reporter<'_>,
    ) {
        for (lane, (&(i, submitted), &end)) in round.iter().zip(ended).enumerate().skip(from) {
            let began = previous.map_or(submitted, |p| p.max(submitted));
            *previous = Some(end);
            let usage = self.collect(
                &jobs[i],
                lane,
                end.saturating_duration_since(began),
                outputs,
            );
            done(i, usage, outputs);
        }
    }

    /// Whether the job in `lane` has ended, waiting at most `wait` for it
    /// (no longer than the device is usable: an error says no, and
    /// [`Dispatcher::wait_lane`] then meets it).
    fn lane_ended_within(&self, lane: usize, wait: Duration) -> bool {
        let Some(gpu) = self.gpu.as_ref() else {
            return false;
        };
        let Some(l) = gpu.lanes.get(lane) else {
            return false;
        };
        let nanos = u64::try_from(wait.as_nanos()).unwrap_or(u64::MAX);
        // SAFETY: the fence belongs to this live device and was submitted.
        unsafe { gpu.device.wait_for_fences(&[l.fence], true, nanos) }.is_ok()
    }

    /// After a job failed with `e` (in `lane` when it had been submitted;
    /// `shared`: with other jobs submitted in its round): stops every
    /// kernel still on the device and keeps the device when they all leave
    /// within the grace time, else abandons it and opens a fresh one. A
    /// lost device is abandoned at once, and so is one whose job timed out
    /// alone on it, as ever; a timeout in a shared round gets the grace
    /// time, so the other jobs' kernels (all small) are not left running on
    /// an abandoned device, which counts against `max_abandoned_devices`.
    fn recover(&mut self, lane: Option<usize>, shared: bool, e: &JobError) {
        let Some(gpu) = self.gpu.as_mut() else {
            return;
        };
        let timeout = matches!(e, JobError::Timeout);
        let lost = matches!(e, JobError::DeviceLost { .. });
        // A cancelled kernel that did not leave within its grace time, or
        // a wait that failed otherwise with the work still submitted.
        let stuck = !timeout && lane.is_some_and(|l| gpu.lanes.get(l).is_some_and(|l| l.busy));
        if !lost && !stuck && (shared || !timeout) {
            if gpu.busy() {
                gpu.set_watchdog(true);
                let until = Instant::now() + CANCEL_GRACE;
                let d = &gpu.device;
                for l in gpu.lanes.iter_mut().filter(|l| l.busy) {
                    let left = until.saturating_duration_since(Instant::now());
                    let nanos = u64::try_from(left.as_nanos()).unwrap_or(u64::MAX);
                    // SAFETY: the fence belongs to this device and was submitted.
                    if unsafe { d.wait_for_fences(&[l.fence], true, nanos) }.is_ok() {
                        l.busy = false;
                    }
                }
            }
            if !gpu.busy() {
                // Idle again: reset the watchdog, keep the device.
                gpu.set_watchdog(false);
                return;
            }
        }
        // Kernels still running leave their loops at the next back edge,
        // so the device settles and can be reclaimed.
        gpu.set_watchdog(true);
        self.abandon();
        // Failing here is not fatal: the next job tries again.
        let _ = self.recreate();
    }

    /// Returns the buffers of every idle lane to the pool, last lane first
    /// and each lane's in reverse, so the next round of the same shapes
    /// gets the same buffers in the same lanes (and reuses their commands).
    fn release_lanes(&mut self) {
        let pool_limit = self.config.pool_bytes;
        let Some(gpu) = self.gpu.as_mut() else {
            return;
        };
        for lane in (0..gpu.lanes.len()).rev() {
            if gpu.lanes[lane].busy {
                continue;
            }
            // The lane keeps its vector for its next job.
            let mut slots = std::mem::take(&mut gpu.lanes[lane].in_flight);
            let secret = std::mem::take(&mut gpu.lanes[lane].confidential);
            if secret {
                // Its recording holds the job's push constants.
                gpu.lanes[lane].forget_recording();
                let l = &gpu.lanes[lane];
                // SAFETY: the lane is idle, so its command buffer is not
                // pending; the pool is the lane's own.
                let _ = unsafe {
                    gpu.device
                        .reset_command_pool(l.cmd_pool, vk::CommandPoolResetFlags::empty())
                };
            }
            for s in slots.drain(..).rev() {
                if secret {
                    s.wipe();
                }
                gpu.release(s, pool_limit);
            }
            gpu.lanes[lane].in_flight = slots;
        }
    }

    /// Checks `b`, fills its buffers and submits it in `lane`; when it was
    /// submitted. `None` (only behind other jobs, `lane > 0`): it must wait
    /// for them, because its pipeline is not built (building one may evict
    /// one they use) or its buffers do not fit beside theirs.
    ///
    /// `batch`: other jobs of the same call may follow, so the kernel is
    /// kept to be compared with theirs ([`KernelMemo`]); a job alone is
    /// only hashed.
    fn submit(
        &mut self,
        b: &BatchJob<'_>,
        lane: usize,
        batch: bool,
    ) -> Result<Option<Instant>, JobError> {
        let job = &b.job;
        // The job's time limit from here: validation and pipeline creation
        // count, as for a job run alone.
        let limit = b.deadline.saturating_duration_since(Instant::now());
        if b.cancel.is_some_and(|c| c.load(Ordering::SeqCst)) {
            return Err(JobError::Cancelled);
        }
        if lane == 0 && !self.accepting_jobs() {
            return Err(JobError::DeviceUnavailable {
                abandoned: self.graveyard.len() as u32,
            });
        }
        let capacities = check_job(job, &self.probe.caps, &self.config)?;
        if self.gpu.is_none() {
            self.recreate()?;
        }
        let key = if batch {
            self.last_kernel.key(job)
        } else {
            kernel_key(job)
        };
        if lane > 0 {
            let gpu = self
                .gpu
                .as_mut()
                .ok_or(JobError::DeviceLost { fault: None })?;
            let held: u64 = gpu
                .lanes
                .iter()
                .flat_map(|l| &l.in_flight)
                .map(|s| s.capacity)
                .sum();
            let wanted: u64 = capacities.iter().sum();
            if gpu.cached(&key).is_none() || held.saturating_add(wanted) > self.config.memory_budget
            {
                return Ok(None);
            }
        }
        let p = self.pipeline(job, key, b.deadline, b.secret_kernel)?;
        let invocations = invocations(job, &p);
        // Behind other jobs only a small one: what a failure ahead of it
        // may leave running on an abandoned device stays small.
        if lane > 0 && invocations > MAX_BATCHED_INVOCATIONS {
            return Ok(None);
        }
        self.check_work(invocations, limit)?;
        let zero_all = !self.probe.caps.robustness.robust_buffer_access2;
        let align = self.probe.storage_alignment;
        let pool_limit = self.config.pool_bytes;
        let split_limit = self.config.max_workgroups_per_dispatch.max(1);
        let gpu = self
            .gpu
            .as_mut()
            .ok_or(JobError::DeviceLost { fault: None })?;

        // Buffers: from the pool, zeroed, inputs copied in (into the
        // lane's vector, idle and empty since its last job; were anything
        // left in it, it is dropped, never bound to this job, as when the
        // vector was replaced).
        let mut slots: Vec<Slot> = std::mem::take(&mut gpu.lanes[lane].in_flight);
        debug_assert!(slots.is_empty());
        slots.clear();
        let mut fills = [0u64; MAX_BINDINGS as usize];
        for ((spec, &cap), fill_len) in job.buffers.iter().zip(&capacities).zip(&mut fills) {
            let slot = match gpu.acquire(cap) {
                Ok(s) => s,
                Err(e) => {
                    for s in slots {
                        if b.confidential {
                            s.wipe();
                        }
                        gpu.release(s, pool_limit);
                    }
                    // Behind other jobs, memory they hold may be what is
                    // missing: wait for them.
                    return if lane > 0 { Ok(None) } else { Err(e) };
                }
            };
            let init = spec.init.unwrap_or(&[]);
            // Without robustBufferAccess2 an out-of-bounds read may return
            // anything inside the VkBuffer, so the whole buffer is cleared.
            let fill = if zero_all {
                cap
            } else {
                spec.len.div_ceil(align).saturating_mul(align).min(cap)
            };
            // SAFETY: `map` points to a host-coherent mapping of at least
            // `cap` bytes that no pending GPU work uses (the slot came from
            // the pool or was just allocated); `init.len() <= len <= fill <= cap`.
            unsafe {
                std::ptr::copy_nonoverlapping(init.as_ptr(), slot.map, init.len());
                std::ptr::write_bytes(slot.map.add(init.len()), 0, (fill as usize) - init.len());
            }
            slots.push(slot);
            *fill_len = fill;
        }
        let fill_lens = &fills[..slots.len()];
        let d = &gpu.device;
        let (cmd, cmd_pool, fence, desc_pool) = {
            let l = &gpu.lanes[lane];
            (l.cmd, l.cmd_pool, l.fence, l.desc_pool)
        };
        let (q0, q1) = (2 * lane as u32, 2 * lane as u32 + 1);
        let staged = gpu.memory.staging_type.is_some();
        let mut dispatches = 0u32;
        // SAFETY (whole block): all handles belong to this live device; the
        // previous submission completed (its fence was waited on or the
        // device was replaced), so the command buffer, descriptor pool and
        // query pool may be reset; buffer ranges lie within each buffer.
        // A job shaped exactly like the previous one (same pipeline, same
        // pooled buffers at the same bindings with the same ranges, push
        // constants and grid) resubmits the command buffer recorded for
        // it; the descriptor set is unchanged.
        let push = &job.push_constants[..p.push_bytes as usize];
        let shape = || RecordKey {
            pipeline: p.pipeline,
            buffers: record_buffers(&slots, job.buffers, fill_lens).collect(),
            push: push.to_vec(),
            grid: job.grid,
        };
        // The lane's last submission was that recording: its dispatch
        // count is the lane's.
        let reuse = gpu.lanes[lane].last_recording.as_ref().is_some_and(|r| {
            r.pipeline == p.pipeline
                && r.push == push
                && r.grid == job.grid
                && r.buffers
                    .iter()
                    .copied()
                    .eq(record_buffers(&slots, job.buffers, fill_lens))
        });
        if reuse {
            dispatches = gpu.lanes[lane].dispatches;
        }
        // SAFETY (whole block): every handle used belongs to this live device;
        // the command buffer, fence and descriptor pool are idle (the last
        // submission's fence was waited on), and the buffers bound are the
        // job's, alive until the fence signals.
        let recorded: Result<(), vk::Result> = unsafe {
            (|| {
                if reuse {
                    d.reset_fences(&[fence])?;
                    let cmds = [cmd];
                    let submit = [vk::SubmitInfo::default().command_buffers(&cmds)];
                    return d.queue_submit(gpu.queue, &submit, fence);
                }
                d.reset_descriptor_pool(desc_pool, vk::DescriptorPoolResetFlags::empty())?;
                let layouts = [p.set_layout];
                let set = d
                    .allocate_descriptor_sets(
                        &vk::DescriptorSetAllocateInfo::default()
                            .descriptor_pool(desc_pool)
                            .set_layouts(&layouts),
                    )?
                    .first()
                    .copied()
                    .ok_or(vk::Result::ERROR_UNKNOWN)?;
                let infos: Vec<[vk::DescriptorBufferInfo; 1]> = slots
                    .iter()
                    .zip(job.buffers)
                    .map(|(s, spec)| {
                        [vk::DescriptorBufferInfo {
                            buffer: s.buffer,
                            offset: 0,
                            range: spec.len,
                        }]
                    })
                    .collect();
                let writes: Vec<_> = infos
                    .iter()
                    .enumerate()
                    .map(|(i, info)| {
                        vk::WriteDescriptorSet::default()
                            .dst_set(set)
                            .dst_binding(job.buffers[i].binding)
                            .descriptor_type(vk::DescriptorType::STORAGE_BUFFER)
                            .buffer_info(info)
                    })
                    .collect();
                if !writes.is_empty() {
                    d.update_descriptor_sets(&writes, &[]);
                }

                d.reset_command_pool(cmd_pool, vk::CommandPoolResetFlags::empty())?;
                d.begin_command_buffer(cmd, &vk::CommandBufferBeginInfo::default())?;
                // The job starts once the work submitted before it (another
                // lane's job) has ended, so neither is metered the other's
                // time, on either clock.
                barrier(
                    d,
                    cmd,
                    vk::PipelineStageFlags::ALL_COMMANDS,
                    vk::AccessFlags::empty(),
                    vk::PipelineStageFlags::ALL_COMMANDS,
                    vk::AccessFlags::empty(),
                );
                if let Some(qp) = gpu.query_pool {
                    d.cmd_reset_query_pool(cmd, qp, q0, 2);
                }
                if staged {
                    for (s, fill) in slots.iter().zip(fill_lens) {
                        if let Some((sb, _)) = s.staging {
                            let region = [vk::BufferCopy {
                                src_offset: 0,
                                dst_offset: 0,
                                size: *fill,
                            }];
                            d.cmd_copy_buffer(cmd, sb, s.buffer, &region);
                        }
                    }
                    barrier(
                        d,
                        cmd,
                        vk::PipelineStageFlags::TRANSFER,
                        vk::AccessFlags::TRANSFER_WRITE,
                        vk::PipelineStageFlags::COMPUTE_SHADER,
                        vk::AccessFlags::SHADER_READ | vk::AccessFlags::SHADER_WRITE,
                    );
                }
                if let Some(qp) = gpu.query_pool {
                    // Once every command before it has ended: the work
                    // submitted before this job is not metered to it.
                    d.cmd_write_timestamp(cmd, vk::PipelineStageFlags::ALL_COMMANDS, qp, q0);
                }
                d.cmd_bind_pipeline(cmd, vk::PipelineBindPoint::COMPUTE, p.pipeline);
                d.cmd_bind_descriptor_sets(
                    cmd,
                    vk::PipelineBindPoint::COMPUTE,
                    p.layout,
                    0,
                    &[set, gpu.watchdog_set()],
                    &[],
                );
                if p.push_bytes > 0 {
                    d.cmd_push_constants(
                        cmd,
                        p.layout,
                        vk::ShaderStageFlags::COMPUTE,
                        0,
                        &job.push_constants[..p.push_bytes as usize],
                    );
                }
                let [x, y, z] = job.grid;
                let total = u64::from(x)
                    .saturating_mul(u64::from(y))
                    .saturating_mul(u64::from(z));
                if total > split_limit && x > 1 && !p.reads_num_workgroups {
                    let per_x = (split_limit / (u64::from(y) * u64::from(z))).max(1);
                    let chunk = u32::try_from(per_x).unwrap_or(u32::MAX);
                    let mut base = 0u32;
                    while base < x {
                        let n = chunk.min(x - base);
                        d.cmd_dispatch_base(cmd, base, 0, 0, n, y, z);
                        dispatches += 1;
                        base += n;
                    }
                } else {
                    d.cmd_dispatch(cmd, x, y, z);
                    dispatches = 1;
                }
                if let Some(qp) = gpu.query_pool {
                    d.cmd_write_timestamp(cmd, vk::PipelineStageFlags::BOTTOM_OF_PIPE, qp, q1);
                }
                if staged {
                    barrier(
                        d,
                        cmd,
                        vk::PipelineStageFlags::COMPUTE_SHADER,
                        vk::AccessFlags::SHADER_WRITE,
                        vk::PipelineStageFlags::TRANSFER,
                        vk::AccessFlags::TRANSFER_READ,
                    );
                    for (s, spec) in slots.iter().zip(job.buffers) {
                        if let (true, Some((sb, _))) = (spec.readback, s.staging) {
                            let region = [vk::BufferCopy {
                                src_offset: 0,
                                dst_offset: 0,
                                size: spec.len,
                            }];
                            d.cmd_copy_buffer(cmd, s.buffer, sb, &region);
                        }
                    }
                    barrier(
                        d,
                        cmd,
                        vk::PipelineStageFlags::TRANSFER,
                        vk::AccessFlags::TRANSFER_WRITE,
                        vk::PipelineStageFlags::HOST,
                        vk::AccessFlags::HOST_READ,
                    );
                } else {
                    barrier(
                        d,
                        cmd,
                        vk::PipelineStageFlags::COMPUTE_SHADER,
                        vk::AccessFlags::SHADER_WRITE,
                        vk::PipelineStageFlags::HOST,
                        vk::AccessFlags::HOST_READ,
                    );
                }
                d.end_command_buffer(cmd)?;
                d.reset_fences(&[fence])?;
                let cmds = [cmd];
                let submit = [vk::SubmitInfo::default().command_buffers(&cmds)];
                d.queue_submit(gpu.queue, &submit, fence)
            })()
        };
        let submitted = Instant::now();
        let last = &mut gpu.lanes[lane].last_recording;
        *last = match recorded {
            Ok(()) if reuse => last.take(),
            Ok(()) => Some(shape()),
            Err(_) => None,
        };
        if let Err(e) = recorded {
            // Nothing was submitted (queue_submit failing submits nothing).
            // The lane's pool is transient, without per-buffer resets: the
            // pool is reset.
            // SAFETY: the command buffer is not pending; the pool is the
            // lane's own.
            let _ = unsafe { d.reset_command_pool(cmd_pool, vk::CommandPoolResetFlags::empty()) };
            for s in slots {
                if b.confidential {
                    s.wipe();
                }
                gpu.release(s, pool_limit);
            }
            if e == vk::Result::ERROR_DEVICE_LOST {
                return Err(JobError::DeviceLost {
                    fault: gpu.fault_description(),
                });
            }
            return Err(e.into());
        }
        let l = &mut gpu.lanes[lane];
        debug_assert!(l.in_flight.is_empty());
        l.busy = true;
        l.dispatches = dispatches;
        l.in_flight = slots;
        l.confidential = b.confidential;
        Ok(Some(submitted))
    }

    /// Waits for the job submitted in `lane`, against its deadline and
    /// looking at its cancel flag. Leaves the watchdog and the device after
    /// a failure to [`Dispatcher::recover`].
    fn wait_lane(&mut self, b: &BatchJob<'_>, lane: usize) -> Result<(), JobError> {
        let deadline = b.deadline;
        let cancel = b.cancel;
        let gpu = self
            .gpu
            .as_mut()
            .ok_or(JobError::DeviceLost { fault: None })?;
        let d = &gpu.device;
        let fence = gpu.lanes[lane].fence;
        let nanos = |t: Duration| u64::try_from(t.as_nanos()).unwrap_or(u64::MAX);
        let mut cancelled = false;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            // With a cancel flag, wait in slices and look at it in between.
            let slice = match &cancel {
                Some(_) if !cancelled => remaining.min(CANCEL_POLL),
                Some(_) => remaining.min(CANCEL_GRACE),
                None => remaining,
            };
            // SAFETY: the fence belongs to this device and was submitted.
            let waited = unsafe { d.wait_for_fences(&[fence], true, nanos(slice)) };
            match waited {
                Ok(()) => break,
                Err(vk::Result::TIMEOUT) if cancelled => return Err(JobError::Cancelled),
                Err(vk::Result::TIMEOUT) if slice < remaining => {
                    if cancel.as_ref().is_some_and(|c| c.load(Ordering::SeqCst)) {
                        // Stop the kernel at its next loop back edge and give
                        // it the grace time to leave.
                        gpu.set_watchdog(true);
                        cancelled = true;
                    }
                }
                Err(vk::Result::ERROR_DEVICE_LOST) => {
                    return Err(JobError::DeviceLost {
                        fault: gpu.fault_description(),
                    })
                }
                Err(e) => return Err(e.into()),
            }
        }
        gpu.lanes[lane].busy = false;
        if cancelled {
            // What the stopped kernel wrote is dropped.
            return Err(JobError::Cancelled);
        }
        Ok(())
    }

    /// Reads the outputs and usage of the job that ended in `lane`; `took`
    /// is its time on the host's clock. Leaves the lane's buffers to
    /// [`Dispatcher::release_lanes`].
    fn collect(
        &mut self,
        b: &BatchJob<'_>,
        lane: usize,
        took: Duration,
        outputs: &mut Vec<Vec<u8>>,
    ) -> Result<Usage, JobError> {
        let job = &b.job;
        let timestamp_mask = self.probe.timestamp_mask;
        let timestamp_period_ns = self.probe.timestamp_period_ns;
        let gpu = self
            .gpu
            .as_mut()
            .ok_or(JobError::DeviceLost { fault: None })?;
        let d = &gpu.device;
        let host_ns = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);

        let mut gpu_time_ns = host_ns;
        let mut clock = MeterClock::HostClock;
        if let Some(qp) = gpu.query_pool {
            let mut ts = [0u64; 2];
            // SAFETY: both queries were written by the completed submission.
            let r = unsafe {
                d.get_query_pool_results(
                    qp,
                    2 * lane as u32,
                    &mut ts,
                    vk::QueryResultFlags::TYPE_64,
                )
            };
            if r.is_ok() {
                let ticks = ts[1].wrapping_sub(ts[0]) & timestamp_mask;
                gpu_time_ns = (ticks as f64 * timestamp_period_ns) as u64;
                clock = MeterClock::GpuTimestamps;
            }
        }

        let dispatches = gpu.lanes[lane].dispatches;
        let slots = &gpu.lanes[lane].in_flight;
        let mut out_index = 0;
        let mut bytes_out = 0;
        for (s, spec) in slots.iter().zip(job.buffers) {
            if !spec.readback {
                continue;
            }
            if outputs.len() <= out_index {
                outputs.push(Vec::new());
            }
            let out = &mut outputs[out_index];
            out.clear();
            // SAFETY: the submission completed and a barrier made its writes
            // visible to the host; the mapping covers `len <= cap` bytes.
            copy_out(out, unsafe {
                std::slice::from_raw_parts(slot_ptr(s), spec.len as usize)
            });
            bytes_out += spec.len;
            out_index += 1;
        }
        outputs.truncate(out_index);
        let bytes_in = job
            .buffers
            .iter()
            .map(|b| b.init.map_or(0, |d| d.len() as u64))
            .sum();
        Ok(Usage {
            gpu_time_ns,
            dispatches,
            bytes_in,
            bytes_out,
            clock,
        })
    }
}

/// Appends `src` (a buffer's mapping) to `out` in copies of 256 bytes.
///
/// One `memcpy` of the whole buffer is several times slower when the
/// destination lies less than 512 bytes past the source modulo 4 KiB (a
/// `Vec` from the allocator often does: the source is page-aligned, the
/// vector 16 bytes past a boundary). glibc then copies with `rep movsb`
/// aligned to the source, and each load waits on the store before it to
/// the same page offset; copies of 256 bytes load all of them first.
fn copy_out(out: &mut Vec<u8>, src: &[u8]) {
    out.reserve(src.len());
    let mut chunks = src.chunks_exact(256);
    for c in &mut chunks {
        out.extend_from_slice(c);
    }
    out.extend_from_slice(chunks.remainder());
}

fn slot_ptr(s: &Slot) -> *const u8 {
    s.map
}

/// Records a global memory barrier.
///
/// # Safety
/// `cmd` must be a command buffer of `d` in the recording state.
unsafe fn barrier(
    d: &ash::Device,
    cmd: vk::CommandBuffer,
    src_stage: vk::PipelineStageFlags,
    src: vk::AccessFlags,
    dst_stage: vk::PipelineStageFlags,
    dst: vk::AccessFlags,
) {
    let mb = [vk::MemoryBarrier::default()
        .src_access_mask(src)
        .dst_access_mask(dst)];
    // SAFETY: guaranteed by the caller.
    unsafe {
        d.cmd_pipeline_barrier(
            cmd,
            src_stage,
            dst_stage,
            vk::DependencyFlags::empty(),
            &mb,
            &[],
            &[],
        )
    };
}

impl Drop for Dispatcher {
    fn drop(&mut self) {
        if let Some(mut g) = self.gpu.take() {
            if g.settled() {
                g.destroy();
            } else {
                self.graveyard.push(Abandoned {
                    gpu: g,
                    handles: None,
                });
            }
        }
        self.reap_graveyard();
        // A kernel still executing on an abandoned device: destroying it (or
        // its instance) would be invalid and could block forever. Leak them;
        // process exit reclaims everything.
        for mut a in self.graveyard.drain(..) {
            match a.handles {
                Some(mut h) => h.leak = true,
                None => self.handles.leak = true,
            }
            // Confidential jobs that have ended leave nothing in what leaks.
            a.gpu.wipe_idle_confidential();
            std::mem::forget(a.gpu);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kernel_memo_keeps_no_large_kernel_and_forgets_to_zero() {
        let bufs = [BufferSpec {
            binding: 0,
            len: 16,
            init: None,
            readback: true,
        }];
        let big = vec![7u8; MEMO_MAX_KERNEL_BYTES + 4];
        let spec = [(1u32, 2u32)];
        let job = KernelJob {
            spirv: &big,
            entry_point: "main",
            specialization: &spec,
            push_constants: &[],
            grid: [1, 1, 1],
            buffers: &bufs,
        };
        let mut memo = KernelMemo::default();
        assert_eq!(memo.key(&job), kernel_key(&job));
        assert!(memo.key.is_none() && memo.spirv.is_empty());
        let small = KernelJob {
            spirv: COPY_SPV,
            ..job
        };
        assert_eq!(memo.key(&small), kernel_key(&small));
        assert!(memo.key.is_some() && memo.spirv == COPY_SPV);
        assert_eq!(memo.key(&small), kernel_key(&small));
        memo.forget();
        assert!(memo.key.is_none());
        assert!(memo.spirv.is_empty() && memo.entry_point.is_empty());
        assert!(memo.specialization.is_empty());
        assert_eq!(memo.key(&small), kernel_key(&small));
    }

    #[test]
    fn copy_out_appends_every_byte() {
        let src: Vec<u8> = (0..5000u32).map(|i| (i * 7 + 3) as u8).collect();
        for len in [0, 1, 255, 256, 257, 511, 4096, 4113, 5000] {
            let mut out = vec![9u8; 3];
            copy_out(&mut out, &src[..len]);
            assert_eq!(out.len(), 3 + len);
            assert_eq!(&out[..3], &[9, 9, 9]);
            assert_eq!(&out[3..], &src[..len]);
        }
    }

    #[test]
    fn the_kernel_memo_gives_each_kernel_its_own_key() {
        let spirv = COPY_SPV.to_vec();
        let mut changed = spirv.clone();
        let last = changed.len() - 1;
        changed[last] ^= 1;
        let spec = [(0u32, 64u32)];
        let bufs = [BufferSpec {
            binding: 0,
            len: 16,
            init: None,
            readback: true,
        }];
        let other_bufs = [BufferSpec {
            binding: 1,
            ..bufs[0]
        }];
        let job = KernelJob {
            spirv: &spirv,
            entry_point: "main",
            specialization: &[],
            push_constants: &[],
            grid: [1, 1, 1],
            buffers: &bufs,
        };
        let variants = [
            job,
            KernelJob {
                spirv: &changed,
                ..job
            },
            KernelJob {
                entry_point: "main2",
                ..job
            },
            KernelJob {
                specialization: &spec,
                ..job
            },
            KernelJob {
                buffers: &other_bufs,
                ..job
            },
        ];
        let mut memo = KernelMemo::default();
        let mut keys = Vec::new();
        // Each after each other one, and twice in a row.
        for a in &variants {
            for b in &variants {
                for j in [a, b, b] {
                    assert_eq!(memo.key(j), kernel_key(j));
                }
            }
            keys.push(kernel_key(a));
        }
        keys.sort();
        keys.dedup();
        assert_eq!(keys.len(), variants.len());
        // The same bytes elsewhere are the same kernel.
        let copy = spirv.clone();
        assert_eq!(
            memo.key(&KernelJob {
                spirv: &copy,
                ..job
            }),
            kernel_key(&job)
        );
    }
}
