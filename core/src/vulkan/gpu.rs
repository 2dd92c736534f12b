//! One logical device and everything created from it: queue, command
//! buffer, fence, timestamp queries, descriptor pool, pipeline cache and
//! buffer pool. A wedged or lost device is replaced as a whole.

use super::caps::Probe;
use super::error::JobError;
use super::validate::KernelInfo;
use super::VulkanError;
use ash::vk;
use std::collections::HashMap;
use std::sync::mpsc;

/// Which memory types job buffers use.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MemoryChoice {
    /// Memory type for buffers the kernel binds.
    pub device_type: u32,
    /// When set, `device_type` is not host-visible and every buffer gets a
    /// host-visible staging twin of this type.
    pub staging_type: Option<u32>,
}

/// A pooled storage buffer (plus its staging twin on discrete GPUs without
/// host-visible VRAM).
pub(crate) struct Slot {
    pub buffer: vk::Buffer,
    memory: vk::DeviceMemory,
    /// Host mapping: of `buffer` when direct, of the staging buffer otherwise.
    pub map: *mut u8,
    pub capacity: u64,
    pub staging: Option<(vk::Buffer, vk::DeviceMemory)>,
}

impl Slot {
    /// Zeroes the slot's host memory (its buffer's mapping, or its staging
    /// buffer's). The slot must not be in use by pending work.
    pub fn wipe(&self) {
        // SAFETY: `map` is a host-coherent mapping of `capacity` bytes that
        // no pending GPU work uses (caller's contract).
        unsafe { std::ptr::write_bytes(self.map, 0, self.capacity as usize) };
        // The zeroes are written before anything after this (the slot's
        // next use, or freeing its memory).
        std::sync::atomic::compiler_fence(std::sync::atomic::Ordering::SeqCst);
    }
}

/// The watchdog buffer and the descriptor set (set 1) that binds it.
struct Watchdog {
    buffer: vk::Buffer,
    memory: vk::DeviceMemory,
    map: *mut u32,
    pool: vk::DescriptorPool,
    set_layout: vk::DescriptorSetLayout,
    set: vk::DescriptorSet,
}

/// A pipeline being compiled on a helper thread after its job gave up
/// waiting (the driver's compiler cannot be interrupted): the device stays
/// parked until it finishes.
struct Compiling {
    rx: mpsc::Receiver<Result<vk::Pipeline, vk::Result>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// A cached compute pipeline with what validation learnt about its kernel.
pub(crate) struct CachedPipeline {
    pub pipeline: vk::Pipeline,
    pub layout: vk::PipelineLayout,
    pub set_layout: vk::DescriptorSetLayout,
    pub info: KernelInfo,
    last_used: u64,
}

/// Most jobs submitted to a device before the first of them is waited on
/// ([`super::Dispatcher::run_batch`]).
pub(crate) const LANES: usize = 16;

/// What one job submitted to the device uses: its command buffer (with its
/// own pool, reset alone), fence and descriptor pool, the buffers it binds,
/// and timestamp queries `2 * lane` and `2 * lane + 1`.
pub(crate) struct Lane {
    pub cmd_pool: vk::CommandPool,
    pub cmd: vk::CommandBuffer,
    pub fence: vk::Fence,
    pub desc_pool: vk::DescriptorPool,
    /// Set once a submission is known not to have completed: the device
    /// must not be destroyed until its fence signals or it is lost.
    pub busy: bool,
    /// Buffers bound by the lane's last submission, until they go back to
    /// the pool.
    pub in_flight: Vec<Slot>,
    /// Dispatch commands of the lane's last submission.
    pub dispatches: u32,
    /// Shape of the job recorded in `cmd`, set only by a submission of it
    /// (so `dispatches` is its count); cleared whenever a pipeline or
    /// buffer it may name is destroyed (handles can be reused by new
    /// objects).
    pub last_recording: Option<super::dispatcher::RecordKey>,
    /// The lane's last job was confidential: its buffers are zeroed and its
    /// recording forgotten when they come back.
    pub confidential: bool,
}

impl Lane {
    /// Forgets the recorded shape, zeroing the push constants it holds.
    pub fn forget_recording(&mut self) {
        if let Some(mut r) = self.last_recording.take() {
            r.wipe();
        }
    }
}

pub(crate) struct Gpu {
    pub device: ash::Device,
    pub queue: vk::Queue,
    /// [`LANES`] lanes, lane 0 for single jobs.
    pub lanes: Vec<Lane>,
    pub query_pool: Option<vk::QueryPool>,
    /// The watchdog: a host-visible word every rewritten kernel reads on
    /// each loop back edge (set 1, binding 0); the host sets it to stop
    /// the kernels still running after a timeout.
    watchdog: Watchdog,
    layouts: HashMap<(u32, u32), (vk::DescriptorSetLayout, vk::PipelineLayout)>,
    pipelines: HashMap<[u8; 32], CachedPipeline>,
    free: HashMap<u64, Vec<Slot>>,
    pub pooled_bytes: u64,
    pub memory: MemoryChoice,
    fault: Option<ash::ext::device_fault::Device>,
    tick: u64,
    /// A compilation still running after its job timed out.
    compiling: Option<Compiling>,
    /// Pipelines that finished compiling after their job gave up; destroyed
    /// with the device.
    late_pipelines: Vec<vk::Pipeline>,
}

/// Compiles one compute pipeline (the driver's compiler runs here).
///
/// # Safety
/// `device` and `layout` must be live for the whole call; `words` must be a
/// module that passed the kernel gates.
unsafe fn compile(
    device: &ash::Device,
    words: &[u32],
    name: &std::ffi::CStr,
    layout: vk::PipelineLayout,
) -> Result<vk::Pipeline, vk::Result> {
    // SAFETY: guaranteed by the caller; the module is destroyed right after
    // pipeline creation, which is allowed.
    unsafe {
        let module = device
            .create_shader_module(&vk::ShaderModuleCreateInfo::default().code(words), None)?;
        // Specialization is baked into the module by the rewrite.
        let stage = vk::PipelineShaderStageCreateInfo::default()
            .stage(vk::ShaderStageFlags::COMPUTE)
            .module(module)
            .name(name);
        let ci = [vk::ComputePipelineCreateInfo::default()
            .flags(vk::PipelineCreateFlags::DISPATCH_BASE)
            .stage(stage)
            .layout(layout)];
        let r = device.create_compute_pipelines(vk::PipelineCache::null(), &ci, None);
        device.destroy_shader_module(module, None);
        match r {
            Ok(p) => p.first().copied().ok_or(vk::Result::ERROR_UNKNOWN),
            Err((_, e)) => Err(e),
        }
    }
}

fn pick_memory_type(
    props: &vk::PhysicalDeviceMemoryProperties,
    bits: u32,
    wanted: vk::MemoryPropertyFlags,
) -> Option<u32> {
    (0..props.memory_type_count).find(|&i| {
        bits & (1 << i) != 0
            && props.memory_types[i as usize]
                .property_flags
                .contains(wanted)
    })
}

const BUFFER_USAGE: vk::BufferUsageFlags = vk::BufferUsageFlags::from_raw(
    vk::BufferUsageFlags::STORAGE_BUFFER.as_raw()
        | vk::BufferUsageFlags::TRANSFER_SRC.as_raw()
        | vk::BufferUsageFlags::TRANSFER_DST.as_raw(),
);

impl Gpu {
    /// Creates the logical device with robustness on and every optional
    /// shader feature the device has.
    pub(crate) fn create(
        instance: &ash::Instance,
        pd: vk::PhysicalDevice,
        probe: &Probe,
        max_buffers: u32,
        force_staging: bool,
        timestamps: bool,
    ) -> Result<Gpu, VulkanError> {
        let caps = &probe.caps;
        let f = &caps.features;
        let b = |x: bool| if x { vk::TRUE } else { vk::FALSE };
        let base = vk::PhysicalDeviceFeatures {
            robust_buffer_access: b(caps.robustness.robust_buffer_access),
            shader_int16: b(f.int16),
            shader_int64: b(f.int64),
            shader_float64: b(f.float64),
            ..Default::default()
        };
        let mut f16 = vk::PhysicalDevice16BitStorageFeatures::default()
            .storage_buffer16_bit_access(f.storage_buffer_16bit);
        let mut vp = vk::PhysicalDeviceVariablePointersFeatures::default()
            .variable_pointers_storage_buffer(f.variable_pointers);
        let mut f8 = vk::PhysicalDevice8BitStorageFeatures::default()
            .storage_buffer8_bit_access(f.storage_buffer_8bit);
        let mut fi8 = vk::PhysicalDeviceShaderFloat16Int8Features::default()
            .shader_float16(f.float16)
            .shader_int8(f.int8);
        let mut rb2 = vk::PhysicalDeviceRobustness2FeaturesEXT::default()
            .robust_buffer_access2(caps.robustness.robust_buffer_access2);
        let mut fault = vk::PhysicalDeviceFaultFeaturesEXT::default().device_fault(true);
        let mut zero_init = vk::PhysicalDeviceZeroInitializeWorkgroupMemoryFeatures::default()
            .shader_zero_initialize_workgroup_memory(true);
        let mut feats2 = vk::PhysicalDeviceFeatures2::default()
            .features(base)
            .push_next(&mut f16)
            .push_next(&mut vp);
        let mut extensions = Vec::new();
        if f.storage_buffer_8bit {
            feats2 = feats2.push_next(&mut f8);
            if probe.needs_ext_8bit {
                extensions.push(ash::khr::_8bit_storage::NAME.as_ptr());
            }
        }
        if f.float16 || f.int8 {
            feats2 = feats2.push_next(&mut fi8);
            if probe.needs_ext_f16i8 {
                extensions.push(ash::khr::shader_float16_int8::NAME.as_ptr());
            }
        }
        if caps.robustness.robust_buffer_access2 {
            feats2 = feats2.push_next(&mut rb2);
            extensions.push(ash::ext::robustness2::NAME.as_ptr());
        }
        if caps.robustness.device_fault {
            feats2 = feats2.push_next(&mut fault);
            extensions.push(ash::ext::device_fault::NAME.as_ptr());
        }
        if caps.robustness.zero_initialize_workgroup_memory {
            feats2 = feats2.push_next(&mut zero_init);
            if probe.needs_ext_zero_initialize {
                extensions.push(ash::khr::zero_initialize_workgroup_memory::NAME.as_ptr());
            }
        }
        let priorities = [1.0f32];
        let queues = [vk::DeviceQueueCreateInfo::default()
            .queue_family_index(probe.queue_family)
            .queue_priorities(&priorities)];
        let info = vk::DeviceCreateInfo::default()
            .queue_create_infos(&queues)
            .enabled_extension_names(&extensions)
            .push_next(&mut feats2);
        // SAFETY: `pd` belongs to `instance`; every feature and extension
        // enabled was reported as supported by `probe`; pointers in `info`
        // refer to locals that outlive the call.
        let device = unsafe { instance.create_device(pd, &info, None) }?;
        let mut gpu = Gpu {
            // SAFETY: the family was created with one queue.
            queue: unsafe { device.get_device_queue(probe.queue_family, 0) },
            device,
            lanes: Vec::new(),
            query_pool: None,
            watchdog: Watchdog {
                buffer: vk::Buffer::null(),
                memory: vk::DeviceMemory::null(),
                map: std::ptr::null_mut(),
                pool: vk::DescriptorPool::null(),
                set_layout: vk::DescriptorSetLayout::null(),
                set: vk::DescriptorSet::null(),
            },
            layouts: HashMap::new(),
            pipelines: HashMap::new(),
            free: HashMap::new(),
            pooled_bytes: 0,
            memory: MemoryChoice {
                device_type: 0,
                staging_type: None,
            },
            fault: None,
            tick: 0,
            compiling: None,
            late_pipelines: Vec::new(),
        };
        if caps.robustness.device_fault {
            gpu.fault = Some(ash::ext::device_fault::Device::new(instance, &gpu.device));
        }
        // On failure `gpu` is dropped through `destroy` by the caller's error path.
        match gpu.init(instance, pd, probe, max_buffers, force_staging, timestamps) {
            Ok(()) => Ok(gpu),
            Err(e) => {
                gpu.destroy();
                Err(e)
            }
        }
    }

    fn init(
        &mut self,
        instance: &ash::Instance,
        pd: vk::PhysicalDevice,
        probe: &Probe,
        max_buffers: u32,
        force_staging: bool,
        timestamps: bool,
    ) -> Result<(), VulkanError> {
        let d = &self.device;
        // SAFETY (whole block): plain object creation on a live device with
        // valid create infos; the handles are destroyed in `destroy`.
        unsafe {
            let sizes = [vk::DescriptorPoolSize {
                ty: vk::DescriptorType::STORAGE_BUFFER,
                descriptor_count: max_buffers.max(1),
            }];
            for _ in 0..LANES {
                // Pushed before anything else is created, so `destroy`
                // frees what a failure part-way left.
                self.lanes.push(Lane {
                    cmd_pool: vk::CommandPool::null(),
                    cmd: vk::CommandBuffer::null(),
                    fence: vk::Fence::null(),
                    desc_pool: vk::DescriptorPool::null(),
                    busy: false,
                    in_flight: Vec::new(),
                    dispatches: 0,
                    last_recording: None,
                    confidential: false,
                });
                let lane = self
                    .lanes
                    .last_mut()
                    .ok_or(VulkanError::Vulkan(vk::Result::ERROR_UNKNOWN))?;
                lane.cmd_pool = d.create_command_pool(
                    &vk::CommandPoolCreateInfo::default()
                        .flags(vk::CommandPoolCreateFlags::TRANSIENT)
                        .queue_family_index(probe.queue_family),
                    None,
                )?;
                lane.cmd = d
                    .allocate_command_buffers(
                        &vk::CommandBufferAllocateInfo::default()
                            .command_pool(lane.cmd_pool)
                            .level(vk::CommandBufferLevel::PRIMARY)
                            .command_buffer_count(1),
                    )?
                    .first()
                    .copied()
                    .ok_or(VulkanError::Vulkan(vk::Result::ERROR_UNKNOWN))?;
                lane.fence = d.create_fence(&vk::FenceCreateInfo::default(), None)?;
                lane.desc_pool = d.create_descriptor_pool(
                    &vk::DescriptorPoolCreateInfo::default()
                        .max_sets(1)
                        .pool_sizes(&sizes),
                    None,
                )?;
            }
            if timestamps {
                self.query_pool = Some(
                    d.create_query_pool(
                        &vk::QueryPoolCreateInfo::default()
                            .query_type(vk::QueryType::TIMESTAMP)
                            .query_count(2 * LANES as u32),
                        None,
                    )?,
                );
            }
            // Memory type: device-local + host-visible + coherent first
            // (integrated GPUs, ReBAR, lavapipe), else device-local with
            // host-visible staging, else host-visible only.
            let probe_buf = d.create_buffer(
                &vk::BufferCreateInfo::default()
                    .size(256)
                    .usage(BUFFER_USAGE)
                    .sharing_mode(vk::SharingMode::EXCLUSIVE),
                None,
            )?;
            let bits = d.get_buffer_memory_requirements(probe_buf).memory_type_bits;
            d.destroy_buffer(probe_buf, None);
            let props = instance.get_physical_device_memory_properties(pd);
            let dl = vk::MemoryPropertyFlags::DEVICE_LOCAL;
            let hv = vk::MemoryPropertyFlags::HOST_VISIBLE | vk::MemoryPropertyFlags::HOST_COHERENT;
            let direct = pick_memory_type(&props, bits, dl | hv);
            let device_only = pick_memory_type(&props, bits, dl);
            let host = pick_memory_type(&props, bits, hv | vk::MemoryPropertyFlags::HOST_CACHED)
                .or_else(|| pick_memory_type(&props, bits, hv));
            self.memory = match (direct, device_only, host, force_staging) {
                (Some(t), _, _, false) => MemoryChoice {
                    device_type: t,
                    staging_type: None,
                },
                (_, Some(t), Some(h), _) => MemoryChoice {
                    device_type: t,
                    staging_type: Some(h),
                },
                (_, None, Some(h), _) => MemoryChoice {
                    device_type: h,
                    staging_type: None,
                },
                _ => return Err(VulkanError::NoUsableMemory),
            };
        }
        self.init_watchdog()
    }

    fn init_watchdog(&mut self) -> Result<(), VulkanError> {
        // Host-visible memory: the staging type when buffers are staged,
        // else the buffers' own type (host-visible in that case).
        let host = self.memory.staging_type.unwrap_or(self.memory.device_type);
        let (buffer, memory, map) = self.alloc_buffer(256, host, true).map_err(|e| match e {
            JobError::Vulkan(r) => VulkanError::Vulkan(r),
            _ => VulkanError::NoUsableMemory,
        })?;
        self.watchdog.buffer = buffer;
        self.watchdog.memory = memory;
        self.watchdog.map = map.cast::<u32>();
        let d = &self.device;
        // SAFETY (whole block): plain object creation on a live device with
        // valid create infos; the handles are destroyed in `destroy`; the
        // descriptor write names the live watchdog buffer.
        unsafe {
            let binds = [vk::DescriptorSetLayoutBinding::default()
                .binding(super::validate::WATCHDOG_BINDING)
                .descriptor_type(vk::DescriptorType::STORAGE_BUFFER)
                .descriptor_count(1)
                .stage_flags(vk::ShaderStageFlags::COMPUTE)];
            self.watchdog.set_layout = d.create_descriptor_set_layout(
                &vk::DescriptorSetLayoutCreateInfo::default().bindings(&binds),
                None,
            )?;
            let sizes = [vk::DescriptorPoolSize {
                ty: vk::DescriptorType::STORAGE_BUFFER,
                descriptor_count: 1,
            }];
            self.watchdog.pool = d.create_descriptor_pool(
                &vk::DescriptorPoolCreateInfo::default()
                    .max_sets(1)
                    .pool_sizes(&sizes),
                None,
            )?;
            let layouts = [self.watchdog.set_layout];
            self.watchdog.set = d
                .allocate_descriptor_sets(
                    &vk::DescriptorSetAllocateInfo::default()
                        .descriptor_pool(self.watchdog.pool)
                        .set_layouts(&layouts),
                )?
                .first()
                .copied()
                .ok_or(VulkanError::Vulkan(vk::Result::ERROR_UNKNOWN))?;
            let info = [vk::DescriptorBufferInfo {
                buffer: self.watchdog.buffer,
                offset: 0,
                range: 4,
            }];
            let write = [vk::WriteDescriptorSet::default()
                .dst_set(self.watchdog.set)
                .dst_binding(super::validate::WATCHDOG_BINDING)
                .descriptor_type(vk::DescriptorType::STORAGE_BUFFER)
                .buffer_info(&info)];
            d.update_descriptor_sets(&write, &[]);
        }
        self.set_watchdog(false);
        Ok(())
    }

    /// The descriptor set that binds the watchdog (set 1).
    pub(crate) fn watchdog_set(&self) -> vk::DescriptorSet {
        self.watchdog.set
    }

    /// Sets (`true`: running kernels leave their loops) or clears the
    /// watchdog flag.
    pub(crate) fn set_watchdog(&self, stop: bool) {
        if self.watchdog.map.is_null() {
            return;
        }
        // SAFETY: `map` is the live, host-coherent mapping of the 256-byte
        // watchdog buffer, aligned for u32; a volatile write so the store
        // is not elided (the device reads it concurrently, and a racy
        // read of a whole aligned word sees the old or the new value).
        unsafe { std::ptr::write_volatile(self.watchdog.map, u32::from(stop)) };
    }

    fn alloc_buffer(
        &self,
        capacity: u64,
        type_index: u32,
        map: bool,
    ) -> Result<(vk::Buffer, vk::DeviceMemory, *mut u8), JobError> {
        let d = &self.device;
        // SAFETY: creation and binding of a fresh buffer and allocation on a
        // live device; on any failure what was created is destroyed here.
        unsafe {
            let buffer = d.create_buffer(
                &vk::BufferCreateInfo::default()
                    .size(capacity)
                    .usage(BUFFER_USAGE)
                    .sharing_mode(vk::SharingMode::EXCLUSIVE),
                None,
            )?;
            let req = d.get_buffer_memory_requirements(buffer);
            if req.memory_type_bits & (1 << type_index) == 0 {
                d.destroy_buffer(buffer, None);
                return Err(JobError::OutOfMemory);
            }
            let memory = match d.allocate_memory(
                &vk::MemoryAllocateInfo::default()
                    .allocation_size(req.size)
                    .memory_type_index(type_index),
                None,
            ) {
                Ok(m) => m,
                Err(e) => {
                    d.destroy_buffer(buffer, None);
                    return Err(e.into());
                }
            };
            let ptr = (|| -> Result<*mut u8, vk::Result> {
                d.bind_buffer_memory(buffer, memory, 0)?;
                if map {
                    Ok(
                        d.map_memory(memory, 0, vk::WHOLE_SIZE, vk::MemoryMapFlags::empty())?
                            as *mut u8,
                    )
                } else {
                    Ok(std::ptr::null_mut())
                }
            })();
            match ptr {
                Ok(p) => Ok((buffer, memory, p)),
                Err(e) => {
                    d.destroy_buffer(buffer, None);
                    d.free_memory(memory, None);
                    Err(e.into())
                }
            }
        }
    }

    /// Takes a buffer of at least `capacity` bytes from the pool or allocates one.
    pub(crate) fn acquire(&mut self, capacity: u64) -> Result<Slot, JobError> {
        if let Some(slot) = self.free.get_mut(&capacity).and_then(Vec::pop) {
            self.pooled_bytes -= capacity;
            return Ok(slot);
        }
        match self.memory.staging_type {
            None => {
                let (buffer, memory, map) =
                    self.alloc_buffer(capacity, self.memory.device_type, true)?;
                Ok(Slot {
                    buffer,
                    memory,
                    map,
                    capacity,
                    staging: None,
                })
            }
            Some(st) => {
                let (buffer, memory, _) =
                    self.alloc_buffer(capacity, self.memory.device_type, false)?;
                match self.alloc_buffer(capacity, st, true) {
                    Ok((sb, sm, map)) => Ok(Slot {
                        buffer,
                        memory,
                        map,
                        capacity,
                        staging: Some((sb, sm)),
                    }),
                    Err(e) => {
                        // SAFETY: just created, never used.
                        unsafe {
                            self.device.destroy_buffer(buffer, None);
                            self.device.free_memory(memory, None);
                        }
                        Err(e)
                    }
                }
            }
        }
    }

    /// Returns a buffer to the pool, or frees it when the pool is full.
    pub(crate) fn release(&mut self, slot: Slot, pool_limit: u64) {
        if self.pooled_bytes + slot.capacity <= pool_limit {
            self.pooled_bytes += slot.capacity;
            self.free.entry(slot.capacity).or_default().push(slot);
        } else {
            self.forget_recordings();
            self.free_slot(slot);
        }
    }

    fn free_slot(&self, slot: Slot) {
        // SAFETY: the slot is not in use by any pending submission (the
        // caller waited for the fence or the device is idle).
        unsafe {
            self.device.destroy_buffer(slot.buffer, None);
            self.device.free_memory(slot.memory, None);
            if let Some((b, m)) = slot.staging {
                self.device.destroy_buffer(b, None);
                self.device.free_memory(m, None);
            }
        }
    }

    /// Descriptor-set and pipeline layouts for storage buffers at the
    /// `bindings` (a bit per binding number) and `push` push-constant bytes
    /// (cached).
    fn layout(
        &mut self,
        bindings: u32,
        push: u32,
    ) -> Result<(vk::DescriptorSetLayout, vk::PipelineLayout), JobError> {
        if let Some(l) = self.layouts.get(&(bindings, push)) {
            return Ok(*l);
        }
        let binds: Vec<_> = (0..32)
            .filter(|i| bindings & (1 << i) != 0)
            .map(|i| {
                vk::DescriptorSetLayoutBinding::default()
                    .binding(i)
                    .descriptor_type(vk::DescriptorType::STORAGE_BUFFER)
                    .descriptor_count(1)
                    .stage_flags(vk::ShaderStageFlags::COMPUTE)
            })
            .collect();
        let d = &self.device;
        // SAFETY: valid create infos on a live device; on failure the set
        // layout is destroyed.
        let out = unsafe {
            let dsl = d.create_descriptor_set_layout(
                &vk::DescriptorSetLayoutCreateInfo::default().bindings(&binds),
                None,
            )?;
            let ranges = [vk::PushConstantRange {
                stage_flags: vk::ShaderStageFlags::COMPUTE,
                offset: 0,
                size: push,
            }];
            // The watchdog's set follows the job's buffers (set 0).
            const _: () = assert!(super::validate::WATCHDOG_SET == 1);
            let layouts = [dsl, self.watchdog.set_layout];
            let mut info = vk::PipelineLayoutCreateInfo::default().set_layouts(&layouts);
            if push > 0 {
                info = info.push_constant_ranges(&ranges);
            }
            match d.create_pipeline_layout(&info, None) {
                Ok(pl) => (dsl, pl),
                Err(e) => {
                    d.destroy_descriptor_set_layout(dsl, None);
                    return Err(e.into());
                }
            }
        };
        self.layouts.insert((bindings, push), out);
        Ok(out)
    }

    /// A cached pipeline for `key`, touching its LRU stamp.
    pub(crate) fn cached(&mut self, key: &[u8; 32]) -> Option<&CachedPipeline> {
        self.tick += 1;
        let tick = self.tick;
        let p = self.pipelines.get_mut(key)?;
        p.last_used = tick;
        Some(p)
    }

    /// Number of pipelines in the cache.
    pub(crate) fn cached_pipelines(&self) -> usize {
        self.pipelines.len()
    }

    /// Whether the host memory of a pooled buffer holds `needle`.
    pub(crate) fn pool_holds(&self, needle: &[u8]) -> bool {
        !needle.is_empty()
            && self.free.values().flatten().any(|s| {
                // SAFETY: a pooled slot's mapping is `capacity` bytes of
                // host-coherent memory that no pending work uses (it is in
                // the pool), and `&self` keeps it from being reused meanwhile.
                let bytes = unsafe { std::slice::from_raw_parts(s.map, s.capacity as usize) };
                // Copied out once before searching: on a discrete GPU the
                // mapping can be device memory behind the PCIe BAR, where
                // every read is a bus transaction, and a search in place
                // reads each byte up to `needle.len()` times (on an H200
                // a test that searches the pool in place ran past a minute).
                bytes.to_vec().windows(needle.len()).any(|w| w == needle)
            })
    }

    /// Destroys the cached pipeline for `key`, if any. Must only be called
    /// when no submission is pending.
    pub(crate) fn destroy_pipeline(&mut self, key: &[u8; 32]) {
        if let Some(p) = self.pipelines.remove(key) {
            // Recordings naming it are forgotten: its handle may be reused.
            for l in &mut self.lanes {
                if l.last_recording
                    .as_ref()
                    .is_some_and(|r| r.names(p.pipeline))
                {
                    l.forget_recording();
                }
            }
            // SAFETY: no submission is pending (caller's contract).
            unsafe { self.device.destroy_pipeline(p.pipeline, None) };
        }
    }

    /// Creates and caches the pipeline for a validated kernel, evicting the
    /// least recently used one when the cache is full. The driver compiles
    /// on a helper thread: at `deadline` the job gives up
    /// ([`JobError::Timeout`]), the compilation goes on, and the device
    /// must be parked until it ends ([`Gpu::settled`]).
    pub(crate) fn create_pipeline(
        &mut self,
        key: [u8; 32],
        words: &[u32],
        entry_point: &str,
        info: KernelInfo,
        capacity: usize,
        deadline: std::time::Instant,
    ) -> Result<&CachedPipeline, JobError> {
        let (set_layout, layout) = self.layout(info.bindings, info.push_constant_bytes)?;
        let name = std::ffi::CString::new(entry_point)
            .map_err(|_| JobError::Rejected(super::KernelRejection::NoEntryPoint))?;
        let device = self.device.clone();
        // The module is the job's kernel, rewritten: zeroed when dropped,
        // also if the thread cannot start.
        let words = zeroize::Zeroizing::new(words.to_vec());
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("tessera-compile".into())
            .spawn(move || {
                // SAFETY: the SPIR-V passed both gates (capabilities, entry
                // point, bindings, sizes against this device's features and
                // limits) and was rewritten (see `validate::rewrite`); the
                // device and layout outlive this thread (a device is only
                // destroyed once `settled` saw the thread's result); the
                // module is destroyed right after pipeline creation, which
                // is allowed; none of these calls needs external
                // synchronisation with what the dispatcher's thread does.
                let r = unsafe { compile(&device, &words, &name, layout) };
                drop(words);
                let _ = tx.send(r);
            })
            .map_err(|_| JobError::OutOfMemory)?;
        let remaining = deadline.saturating_duration_since(std::time::Instant::now());
        let pipeline = match rx.recv_timeout(remaining) {
            Ok(r) => {
                let _ = thread.join();
                r?
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                self.compiling = Some(Compiling {
                    rx,
                    thread: Some(thread),
                });
                return Err(JobError::Timeout);
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                let _ = thread.join();
                return Err(JobError::Vulkan(vk::Result::ERROR_UNKNOWN));
            }
        };
        if self.pipelines.len() >= capacity.max(1) {
            if let Some(old) = self
                .pipelines
                .iter()
                .min_by_key(|(_, p)| p.last_used)
                .map(|(k, _)| *k)
            {
                self.forget_recordings();
                if let Some(p) = self.pipelines.remove(&old) {
                    // SAFETY: no submission is pending (run waits for its fence).
                    unsafe { self.device.destroy_pipeline(p.pipeline, None) };
                }
            }
        }
        self.tick += 1;
        let entry = self.pipelines.entry(key).or_insert(CachedPipeline {
            pipeline,
            layout,
            set_layout,
            info,
            last_used: self.tick,
        });
        Ok(entry)
    }

    /// The `VK_EXT_device_fault` description after a device loss.
    pub(crate) fn fault_description(&self) -> Option<String> {
        let fault = self.fault.as_ref()?;
        let mut counts = vk::DeviceFaultCountsEXT::default();
        let mut info = vk::DeviceFaultInfoEXT::default();
        // SAFETY: zero counts ask only for the description, which the driver
        // writes into `info.description` (a fixed array); no other pointer
        // in `info` is read or written with zero counts.
        let r = unsafe {
            (fault.fp().get_device_fault_info_ext)(self.device.handle(), &mut counts, &mut info)
        };
        if r != vk::Result::SUCCESS && r != vk::Result::INCOMPLETE {
            return None;
        }
        info.description_as_c_str()
            .ok()
            .map(|c| c.to_string_lossy().into_owned())
    }

    /// Whether nothing runs on the device any more: no compilation, and
    /// no submission or the last one finished (or the device is lost).
    pub(crate) fn settled(&mut self) -> bool {
        if let Some(c) = &mut self.compiling {
            match c.rx.try_recv() {
                Ok(r) => {
                    if let Ok(p) = r {
                        self.late_pipelines.push(p);
                    }
                }
                Err(mpsc::TryRecvError::Empty) => return false,
                Err(mpsc::TryRecvError::Disconnected) => {}
            }
            if let Some(t) = c.thread.take() {
                let _ = t.join();
            }
            self.compiling = None;
        }
        let d = &self.device;
        // SAFETY: the fences belong to this live device.
        // A lost device (error) has settled too.
        self.lanes
            .iter()
            .all(|l| !l.busy || unsafe { d.get_fence_status(l.fence) }.unwrap_or(true))
    }

    /// Whether a lane's submission is known not to have completed.
    pub(crate) fn busy(&self) -> bool {
        self.lanes.iter().any(|l| l.busy)
    }

    /// Zeroes the buffers of the lanes whose last job was confidential and
    /// has ended, and forgets their recordings (before the device is
    /// parked: a lane still running is zeroed when the device is
    /// destroyed).
    pub(crate) fn wipe_idle_confidential(&mut self) {
        let d = &self.device;
        for l in &mut self.lanes {
            // SAFETY: the fence belongs to this live device; a lost device
            // (an error) is not known to have finished.
            let ended = !l.busy || unsafe { d.get_fence_status(l.fence) }.unwrap_or(false);
            if l.confidential && ended {
                for s in &l.in_flight {
                    s.wipe();
                }
                l.forget_recording();
            }
        }
    }

    /// Drops every lane's recorded shape: a pipeline or buffer it may name
    /// is about to be destroyed.
    pub(crate) fn forget_recordings(&mut self) {
        for l in &mut self.lanes {
            l.forget_recording();
        }
    }

    /// Destroys everything. Must only be called when no submission is
    /// pending (`busy == false` or `settled()`).
    pub(crate) fn destroy(&mut self) {
        self.forget_recordings();
        // SAFETY: no work is pending (caller's contract), so every object
        // can be destroyed; each handle is destroyed once (maps are drained,
        // handles reset to null, and destroying a null handle is a no-op).
        unsafe {
            let _ = self.device.device_wait_idle();
            for (_, p) in self.pipelines.drain() {
                self.device.destroy_pipeline(p.pipeline, None);
            }
            for p in self.late_pipelines.drain(..) {
                self.device.destroy_pipeline(p, None);
            }
            for (_, (dsl, pl)) in self.layouts.drain() {
                self.device.destroy_pipeline_layout(pl, None);
                self.device.destroy_descriptor_set_layout(dsl, None);
            }
            let mut slots: Vec<Slot> = self.free.drain().flat_map(|(_, v)| v).collect();
            for l in &mut self.lanes {
                if std::mem::take(&mut l.confidential) {
                    for s in &l.in_flight {
                        s.wipe();
                    }
                }
                slots.append(&mut l.in_flight);
            }
            for s in slots {
                self.free_slot(s);
            }
            self.pooled_bytes = 0;
            self.device
                .destroy_descriptor_pool(self.watchdog.pool, None);
            self.device
                .destroy_descriptor_set_layout(self.watchdog.set_layout, None);
            self.watchdog.map = std::ptr::null_mut();
            self.device.destroy_buffer(self.watchdog.buffer, None);
            self.device.free_memory(self.watchdog.memory, None);
            self.watchdog.pool = vk::DescriptorPool::null();
            self.watchdog.set_layout = vk::DescriptorSetLayout::null();
            self.watchdog.buffer = vk::Buffer::null();
            self.watchdog.memory = vk::DeviceMemory::null();
            if let Some(q) = self.query_pool.take() {
                self.device.destroy_query_pool(q, None);
            }
            for l in self.lanes.drain(..) {
                self.device.destroy_descriptor_pool(l.desc_pool, None);
                self.device.destroy_fence(l.fence, None);
                self.device.destroy_command_pool(l.cmd_pool, None);
            }
            self.device.destroy_device(None);
        }
    }
}
