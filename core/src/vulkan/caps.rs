//! What a device is and can do: the figures that go into signed device
//! evidence, and the feature set the dispatcher enables.

use super::instance::{DeviceType, VkHandles};
use ash::vk;
use std::ffi::CStr;

/// Most memory heaps a Vulkan device can report.
pub const MAX_MEMORY_HEAPS: usize = vk::MAX_MEMORY_HEAPS;

/// One memory heap of the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MemoryHeap {
    /// Heap size in bytes.
    pub size: u64,
    /// Whether the heap is device-local (VRAM on a discrete GPU).
    pub device_local: bool,
}

/// Compute limits of the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ComputeLimits {
    /// Largest workgroup size per dimension.
    pub max_workgroup_size: [u32; 3],
    /// Largest grid (workgroup count) per dimension.
    pub max_workgroup_count: [u32; 3],
    /// Most invocations in one workgroup.
    pub max_invocations: u32,
    /// Most workgroup (shared) memory in bytes.
    pub max_shared_memory: u32,
    /// Largest storage-buffer range in bytes.
    pub max_storage_buffer_range: u32,
    /// Most push-constant bytes.
    pub max_push_constants: u32,
    /// Most storage buffers visible to one compute stage.
    pub max_storage_buffers: u32,
}

/// Results of [`super::Dispatcher::run_startup_benchmark`].
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct DeviceBenchmark {
    /// Copy throughput of a 16 MiB storage-buffer copy kernel, GB/s (bytes
    /// copied counted once, timed by the dispatcher's metering clock: GPU
    /// timestamps, or the host clock on CPU implementations).
    pub copy_gbps: f32,
    /// Single-precision fused multiply-add throughput, GFLOP/s (2 flops per FMA).
    pub fma_gflops: f32,
}

/// Shader features the device supports (and the dispatcher enables).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ShaderFeatures {
    /// 16-bit floats in shaders.
    pub float16: bool,
    /// 8-bit integers in shaders.
    pub int8: bool,
    /// 16-bit integers in shaders.
    pub int16: bool,
    /// 64-bit integers in shaders.
    pub int64: bool,
    /// 64-bit floats in shaders.
    pub float64: bool,
    /// 16-bit values in storage buffers.
    pub storage_buffer_16bit: bool,
    /// 8-bit values in storage buffers.
    pub storage_buffer_8bit: bool,
    /// Variable pointers into storage buffers.
    pub variable_pointers: bool,
    /// `VkSubgroupFeatureFlags` available in compute shaders.
    pub subgroup_operations: u32,
}

/// Robustness features of the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Robustness {
    /// `robustBufferAccess` (core): out-of-bounds accesses stay inside the buffer.
    pub robust_buffer_access: bool,
    /// `VK_EXT_robustness2` with `robustBufferAccess2`: out-of-bounds writes
    /// are discarded and reads return zero.
    pub robust_buffer_access2: bool,
    /// `VK_EXT_device_fault`: device-loss reasons are reported.
    pub device_fault: bool,
    /// `shaderZeroInitializeWorkgroupMemory` (core in Vulkan 1.3, or
    /// `VK_KHR_zero_initialize_workgroup_memory`): workgroup variables may
    /// have null initializers, which the dispatcher gives them so that no
    /// data moves between jobs through shared memory.
    pub zero_initialize_workgroup_memory: bool,
}

/// What the dispatcher's device is and can do.
#[derive(Debug, Clone, PartialEq)]
pub struct Capabilities {
    /// Driver-reported device name.
    pub name: String,
    /// Vendor id.
    pub vendor_id: u32,
    /// Device id.
    pub device_id: u32,
    /// Driver version (vendor-specific packing).
    pub driver_version: u32,
    /// Vulkan version the device supports.
    pub api_version: u32,
    /// Kind of device.
    pub device_type: DeviceType,
    /// Memory heaps; the first `memory_heap_count` entries are meaningful.
    pub memory_heaps: [MemoryHeap; MAX_MEMORY_HEAPS],
    /// Number of meaningful entries in `memory_heaps`.
    pub memory_heap_count: u32,
    /// Compute limits.
    pub limits: ComputeLimits,
    /// Subgroup (wave, warp) size.
    pub subgroup_size: u32,
    /// Shader features.
    pub features: ShaderFeatures,
    /// Robustness features.
    pub robustness: Robustness,
    /// Whether the compute queue supports timestamps (metering uses them).
    pub timestamps: bool,
    /// Startup benchmark figures, once run.
    pub benchmark: Option<DeviceBenchmark>,
}

/// Capabilities plus the Vulkan-side details needed to create the device.
pub(crate) struct Probe {
    pub caps: Capabilities,
    pub queue_family: u32,
    pub timestamp_period_ns: f64,
    pub timestamp_mask: u64,
    pub storage_alignment: u64,
    pub needs_ext_8bit: bool,
    pub needs_ext_f16i8: bool,
    pub needs_ext_zero_initialize: bool,
    pub max_spirv_version: u32,
}

pub(crate) fn probe(
    vk: &VkHandles,
    pd: vk::PhysicalDevice,
    device_type: DeviceType,
) -> Result<Probe, super::VulkanError> {
    let inst = &vk.instance;
    // SAFETY: `pd` belongs to this live instance; all queries below only
    // write into the locals passed to them.
    let props = unsafe { inst.get_physical_device_properties(pd) };
    let api = props.api_version.min(vk.api_version);
    if api < vk::API_VERSION_1_1 {
        return Err(super::VulkanError::ApiVersionTooOld { version: api });
    }
    // SAFETY: as above.
    let exts = unsafe { inst.enumerate_device_extension_properties(pd) }
        .map_err(super::VulkanError::Vulkan)?;
    let has = |name: &CStr| exts.iter().any(|e| e.extension_name_as_c_str() == Ok(name));
    let has_ext_robustness2 = has(ash::ext::robustness2::NAME);
    let has_ext_device_fault = has(ash::ext::device_fault::NAME);
    let core12 = api >= vk::API_VERSION_1_2;
    let has_8bit = core12 || has(ash::khr::_8bit_storage::NAME);
    let has_f16i8 = core12 || has(ash::khr::shader_float16_int8::NAME);
    let core13 = api >= vk::API_VERSION_1_3;
    let has_zero_init = core13 || has(ash::khr::zero_initialize_workgroup_memory::NAME);

    let mut subgroup = vk::PhysicalDeviceSubgroupProperties::default();
    let mut props2 = vk::PhysicalDeviceProperties2::default().push_next(&mut subgroup);
    // SAFETY: as above; the chain holds only core 1.1 structures.
    unsafe { inst.get_physical_device_properties2(pd, &mut props2) };

    let mut f16 = vk::PhysicalDevice16BitStorageFeatures::default();
    let mut f8 = vk::PhysicalDevice8BitStorageFeatures::default();
    let mut fi8 = vk::PhysicalDeviceShaderFloat16Int8Features::default();
    let mut vp = vk::PhysicalDeviceVariablePointersFeatures::default();
    let mut rb2 = vk::PhysicalDeviceRobustness2FeaturesEXT::default();
    let mut fault = vk::PhysicalDeviceFaultFeaturesEXT::default();
    let mut zero_init = vk::PhysicalDeviceZeroInitializeWorkgroupMemoryFeatures::default();
    let mut feats2 = vk::PhysicalDeviceFeatures2::default()
        .push_next(&mut f16)
        .push_next(&mut vp);
    if has_zero_init {
        feats2 = feats2.push_next(&mut zero_init);
    }
    if has_8bit {
        feats2 = feats2.push_next(&mut f8);
    }
    if has_f16i8 {
        feats2 = feats2.push_next(&mut fi8);
    }
    if has_ext_robustness2 {
        feats2 = feats2.push_next(&mut rb2);
    }
    if has_ext_device_fault {
        feats2 = feats2.push_next(&mut fault);
    }
    // SAFETY: every chained structure is supported by the device (checked above).
    unsafe { inst.get_physical_device_features2(pd, &mut feats2) };
    let base = feats2.features;

    // SAFETY: as above.
    let mem = unsafe { inst.get_physical_device_memory_properties(pd) };
    let mut memory_heaps = [MemoryHeap::default(); MAX_MEMORY_HEAPS];
    let heap_count = (mem.memory_heap_count as usize).min(MAX_MEMORY_HEAPS);
    for (dst, src) in memory_heaps.iter_mut().zip(&mem.memory_heaps[..heap_count]) {
        *dst = MemoryHeap {
            size: src.size,
            device_local: src.flags.contains(vk::MemoryHeapFlags::DEVICE_LOCAL),
        };
    }

    // SAFETY: as above.
    let families = unsafe { inst.get_physical_device_queue_family_properties(pd) };
    // Prefer a compute-only family (async compute), else any with compute.
    let pick = families
        .iter()
        .enumerate()
        .filter(|(_, f)| f.queue_flags.contains(vk::QueueFlags::COMPUTE) && f.queue_count > 0)
        .min_by_key(|(_, f)| f.queue_flags.contains(vk::QueueFlags::GRAPHICS));
    let (queue_family, family) = pick.ok_or(super::VulkanError::NoComputeQueue)?;
    let valid_bits = family.timestamp_valid_bits;
    let timestamps = valid_bits > 0 && props.limits.timestamp_period > 0.0;
    let timestamp_mask = if valid_bits >= 64 {
        u64::MAX
    } else {
        (1u64 << valid_bits) - 1
    };

    let l = &props.limits;
    let name = props
        .device_name_as_c_str()
        .map(|c| c.to_string_lossy().into_owned())
        .unwrap_or_default();
    let compute_subgroup = subgroup
        .supported_stages
        .contains(vk::ShaderStageFlags::COMPUTE);
    let caps = Capabilities {
        name,
        vendor_id: props.vendor_id,
        device_id: props.device_id,
        driver_version: props.driver_version,
        api_version: props.api_version,
        device_type,
        memory_heaps,
        memory_heap_count: heap_count as u32,
        limits: ComputeLimits {
            max_workgroup_size: l.max_compute_work_group_size,
            max_workgroup_count: l.max_compute_work_group_count,
            max_invocations: l.max_compute_work_group_invocations,
            max_shared_memory: l.max_compute_shared_memory_size,
            max_storage_buffer_range: l.max_storage_buffer_range,
            max_push_constants: l.max_push_constants_size,
            max_storage_buffers: l
                .max_per_stage_descriptor_storage_buffers
                .min(l.max_descriptor_set_storage_buffers),
        },
        subgroup_size: subgroup.subgroup_size,
        features: ShaderFeatures {
            float16: has_f16i8 && fi8.shader_float16 == vk::TRUE,
            int8: has_f16i8 && fi8.shader_int8 == vk::TRUE,
            int16: base.shader_int16 == vk::TRUE,
            int64: base.shader_int64 == vk::TRUE,
            float64: base.shader_float64 == vk::TRUE,
            storage_buffer_16bit: f16.storage_buffer16_bit_access == vk::TRUE,
            storage_buffer_8bit: has_8bit && f8.storage_buffer8_bit_access == vk::TRUE,
            variable_pointers: vp.variable_pointers_storage_buffer == vk::TRUE,
            subgroup_operations: if compute_subgroup {
                subgroup.supported_operations.as_raw()
            } else {
                0
            },
        },
        robustness: Robustness {
            robust_buffer_access: base.robust_buffer_access == vk::TRUE,
            robust_buffer_access2: has_ext_robustness2 && rb2.robust_buffer_access2 == vk::TRUE,
            device_fault: has_ext_device_fault && fault.device_fault == vk::TRUE,
            zero_initialize_workgroup_memory: has_zero_init
                && zero_init.shader_zero_initialize_workgroup_memory == vk::TRUE,
        },
        timestamps,
        benchmark: None,
    };
    let max_spirv_version = if core13 {
        0x0001_0600
    } else if core12 {
        0x0001_0500
    } else {
        0x0001_0300
    };
    Ok(Probe {
        caps,
        queue_family: queue_family as u32,
        timestamp_period_ns: f64::from(props.limits.timestamp_period),
        timestamp_mask,
        storage_alignment: l.min_storage_buffer_offset_alignment.max(16),
        needs_ext_8bit: !core12 && has_8bit,
        needs_ext_f16i8: !core12 && has_f16i8,
        needs_ext_zero_initialize: !core13 && has_zero_init,
        max_spirv_version,
    })
}
