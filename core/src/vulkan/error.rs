//! Errors of the Vulkan dispatcher: setup errors, job errors and the reasons a
//! kernel is rejected before any driver sees it.

use ash::vk;
use std::fmt;

/// Why the dispatcher (or the Vulkan instance under it) could not be set up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VulkanError {
    /// The Vulkan loader library (libvulkan) could not be opened: install a
    /// Vulkan driver and loader.
    LoaderUnavailable,
    /// The loader works but reports no physical device (no driver installed,
    /// or `VK_ICD_FILENAMES`/`VK_DRIVER_FILES` point at nothing).
    NoDevice,
    /// No device matches the selector (index out of range, no name match).
    DeviceNotFound,
    /// The device or loader only offers Vulkan 1.0; 1.1 is needed.
    ApiVersionTooOld {
        /// The version the device reports, as `VK_MAKE_API_VERSION` packs it.
        version: u32,
    },
    /// The device has no queue family with compute support.
    NoComputeQueue,
    /// Validation was requested but `VK_LAYER_KHRONOS_validation` or
    /// `VK_EXT_debug_utils` is not installed.
    ValidationUnavailable,
    /// The device has no host-visible memory type usable for storage buffers.
    NoUsableMemory,
    /// A Vulkan call failed during setup.
    Vulkan(vk::Result),
}

impl VulkanError {
    /// Stable small integer for the wire and the C ABI.
    pub fn code(&self) -> u16 {
        match self {
            VulkanError::LoaderUnavailable => 1,
            VulkanError::NoDevice => 2,
            VulkanError::DeviceNotFound => 3,
            VulkanError::ApiVersionTooOld { .. } => 4,
            VulkanError::NoComputeQueue => 5,
            VulkanError::ValidationUnavailable => 6,
            VulkanError::NoUsableMemory => 7,
            VulkanError::Vulkan(_) => 8,
        }
    }
}

impl From<vk::Result> for VulkanError {
    fn from(r: vk::Result) -> Self {
        VulkanError::Vulkan(r)
    }
}

impl fmt::Display for VulkanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VulkanError::LoaderUnavailable => write!(f, "the Vulkan loader could not be opened"),
            VulkanError::NoDevice => write!(f, "no Vulkan physical device is available"),
            VulkanError::DeviceNotFound => write!(f, "no Vulkan device matches the selector"),
            VulkanError::ApiVersionTooOld { version } => write!(
                f,
                "Vulkan {}.{} is too old, 1.1 is needed",
                vk::api_version_major(*version),
                vk::api_version_minor(*version)
            ),
            VulkanError::NoComputeQueue => write!(f, "the device has no compute queue"),
            VulkanError::ValidationUnavailable => {
                write!(f, "VK_LAYER_KHRONOS_validation is not installed")
            }
            VulkanError::NoUsableMemory => write!(f, "no host-visible memory type for buffers"),
            VulkanError::Vulkan(r) => write!(f, "Vulkan call failed: {r}"),
        }
    }
}

impl std::error::Error for VulkanError {}

/// What is wrong with the SPIR-V bytes themselves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Malformed {
    /// Shorter than the 5-word header.
    TooShort,
    /// Length is not a multiple of 4 bytes.
    NotWordAligned,
    /// The first word is not the SPIR-V magic number (little-endian).
    BadMagic,
    /// The SPIR-V version is not one the device accepts (packed as in the header).
    UnsupportedVersion(u32),
    /// The instruction stream does not parse.
    Unparsable,
    /// An id is at or above the header's id bound, or the bound is absurd.
    IdOutOfBounds,
    /// There is no `OpMemoryModel`.
    NoMemoryModel,
    /// A type or constant that the validator must follow is missing or
    /// inconsistent (for example a pointer to an undefined type).
    BadType,
}

/// Why a kernel job was refused before it reached the driver. Every variant
/// is something the requester can fix in its kernel or job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KernelRejection {
    /// The bytes are not a well-formed SPIR-V module.
    Malformed(Malformed),
    /// The module is larger than the configured kernel size limit.
    KernelTooLarge {
        /// Size of the module in bytes.
        len: u64,
        /// The limit in bytes.
        max: u64,
    },
    /// The module declares a capability that is never allowed (for example
    /// `PhysicalStorageBufferAddresses`, `Addresses`, `Linkage`, `Kernel`).
    ForbiddenCapability(u32),
    /// The capability is allowed but this device does not support it (for
    /// example `Float64` on a device without `shaderFloat64`).
    UnsupportedCapability(u32),
    /// The module uses a SPIR-V extension that is not on the allow-list.
    ForbiddenExtension(String),
    /// The module imports an extended instruction set other than `GLSL.std.450`.
    ForbiddenExtInstSet(String),
    /// Addressing model must be `Logical` and memory model `GLSL450`.
    ForbiddenMemoryModel {
        /// The addressing model enumerant.
        addressing: u32,
        /// The memory model enumerant.
        memory: u32,
    },
    /// No `GLCompute` entry point with the requested name.
    NoEntryPoint,
    /// More than one entry point; exactly one is allowed.
    MultipleEntryPoints(u32),
    /// The entry point is not a compute shader (execution model enumerant).
    WrongExecutionModel(u32),
    /// The workgroup size is missing.
    MissingWorkgroupSize,
    /// A workgroup size or array length depends on a specialization-constant
    /// expression (`OpSpecConstantOp`) that the validator does not evaluate.
    UnresolvableSize,
    /// The workgroup is larger than the device allows, per dimension or in
    /// total invocations.
    WorkgroupTooLarge {
        /// The resolved workgroup size.
        size: [u32; 3],
    },
    /// Workgroup (shared) memory exceeds `maxComputeSharedMemorySize`.
    SharedMemoryTooLarge {
        /// Bytes the kernel declares.
        bytes: u64,
        /// Bytes the device allows.
        max: u64,
    },
    /// Private and function-local variables exceed the configured per-invocation limit.
    PrivateMemoryTooLarge {
        /// Bytes the kernel declares per invocation.
        bytes: u64,
        /// The configured limit.
        max: u64,
    },
    /// A global variable uses a storage class compute kernels may not use here.
    ForbiddenStorageClass(u32),
    /// A resource at `binding` is not a storage buffer (uniform buffers,
    /// images and samplers are not offered).
    ForbiddenDescriptorType {
        /// The binding of the offending resource.
        binding: u32,
    },
    /// The kernel's storage-buffer bindings do not match the job's buffers:
    /// buffer i must be set 0, binding i, and every buffer must be declared.
    BindingMismatch {
        /// Descriptor set of the offending binding (0 for a missing one).
        set: u32,
        /// The offending (or missing) binding.
        binding: u32,
        /// How many buffers the job supplies.
        job_buffers: u32,
    },
    /// The job supplies more than 128 bytes (or the device limit) of push constants.
    PushConstantsTooLarge {
        /// Bytes supplied.
        len: u32,
        /// Bytes allowed.
        max: u32,
    },
    /// The kernel's push-constant block is larger than the bytes the job supplies.
    PushConstantsTooSmall {
        /// Bytes the kernel's block needs.
        kernel: u32,
        /// Bytes the job supplies.
        job: u32,
    },
    /// A specialization constant id is given twice, or targets a constant
    /// that is not 8, 16 or 32 bits wide.
    BadSpecialization {
        /// The constant id.
        constant_id: u32,
    },
    /// A grid dimension is zero.
    EmptyGrid,
    /// The grid exceeds `maxComputeWorkGroupCount` or the configured total.
    GridTooLarge {
        /// The requested grid.
        grid: [u32; 3],
    },
    /// More buffers than the configured maximum.
    TooManyBuffers {
        /// Buffers in the job.
        count: u32,
        /// The maximum.
        max: u32,
    },
    /// A buffer has length zero, or its init data is longer than its length.
    BadBuffer {
        /// Index of the buffer.
        index: u32,
    },
    /// A buffer exceeds `maxStorageBufferRange`.
    BufferTooLarge {
        /// Index of the buffer.
        index: u32,
        /// Requested length.
        len: u64,
        /// Device limit.
        max: u64,
    },
    /// All buffers together exceed the dispatcher's memory budget.
    MemoryBudgetExceeded {
        /// Bytes requested (after rounding to pool sizes).
        requested: u64,
        /// The budget.
        budget: u64,
    },
}

impl KernelRejection {
    /// Stable small integer for the wire (see docs/VULKAN.md).
    pub fn code(&self) -> u16 {
        use KernelRejection::*;
        match self {
            Malformed(_) => 1,
            KernelTooLarge { .. } => 2,
            ForbiddenCapability(_) => 3,
            UnsupportedCapability(_) => 4,
            ForbiddenExtension(_) => 5,
            ForbiddenExtInstSet(_) => 6,
            ForbiddenMemoryModel { .. } => 7,
            NoEntryPoint => 8,
            MultipleEntryPoints(_) => 9,
            WrongExecutionModel(_) => 10,
            MissingWorkgroupSize => 11,
            UnresolvableSize => 12,
            WorkgroupTooLarge { .. } => 13,
            SharedMemoryTooLarge { .. } => 14,
            PrivateMemoryTooLarge { .. } => 15,
            ForbiddenStorageClass(_) => 16,
            ForbiddenDescriptorType { .. } => 17,
            BindingMismatch { .. } => 18,
            PushConstantsTooLarge { .. } => 19,
            PushConstantsTooSmall { .. } => 20,
            BadSpecialization { .. } => 21,
            EmptyGrid => 22,
            GridTooLarge { .. } => 23,
            TooManyBuffers { .. } => 24,
            BadBuffer { .. } => 25,
            BufferTooLarge { .. } => 26,
            MemoryBudgetExceeded { .. } => 27,
        }
    }
}

impl fmt::Display for KernelRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "kernel rejected: {self:?}")
    }
}

/// Why a job did not produce outputs. The dispatcher stays usable after
/// every one of these.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobError {
    /// The kernel or job failed validation; nothing ran.
    Rejected(KernelRejection),
    /// The job did not finish within its timeout. The logical device was
    /// replaced; the next job runs on a fresh one.
    Timeout,
    /// The device was lost while the job ran (driver reset, hang detection).
    /// `fault` holds the `VK_EXT_device_fault` description when available.
    /// The logical device was recreated.
    DeviceLost {
        /// Vendor fault description, if the driver reported one.
        fault: Option<String>,
    },
    /// Host or device memory ran out while setting up the job.
    OutOfMemory,
    /// Another Vulkan call failed.
    Vulkan(vk::Result),
    /// Too many devices are still running work abandoned after timeouts
    /// (`DispatcherConfig::max_abandoned_devices`); nothing ran. The
    /// dispatcher takes jobs again once one is reclaimed.
    DeviceUnavailable {
        /// Devices still running abandoned work.
        abandoned: u32,
    },
}

impl JobError {
    /// Stable small integer for the wire: 1 timeout, 2 device lost, 3 out of
    /// memory, 4 other Vulkan error, 100 + n for rejection code n.
    pub fn code(&self) -> u16 {
        match self {
            JobError::Timeout => 1,
            JobError::DeviceLost { .. } => 2,
            JobError::OutOfMemory => 3,
            JobError::Vulkan(_) => 4,
            JobError::DeviceUnavailable { .. } => 5,
            JobError::Rejected(r) => 100 + r.code(),
        }
    }
}

impl From<KernelRejection> for JobError {
    fn from(r: KernelRejection) -> Self {
        JobError::Rejected(r)
    }
}

impl From<vk::Result> for JobError {
    fn from(r: vk::Result) -> Self {
        match r {
            vk::Result::ERROR_OUT_OF_HOST_MEMORY | vk::Result::ERROR_OUT_OF_DEVICE_MEMORY => {
                JobError::OutOfMemory
            }
            vk::Result::ERROR_DEVICE_LOST => JobError::DeviceLost { fault: None },
            vk::Result::TIMEOUT => JobError::Timeout,
            other => JobError::Vulkan(other),
        }
    }
}

impl fmt::Display for JobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JobError::Rejected(r) => write!(f, "{r}"),
            JobError::Timeout => write!(f, "job timed out"),
            JobError::DeviceLost { fault: Some(s) } => write!(f, "device lost: {s}"),
            JobError::DeviceLost { fault: None } => write!(f, "device lost"),
            JobError::OutOfMemory => write!(f, "out of memory"),
            JobError::Vulkan(r) => write!(f, "Vulkan call failed: {r}"),
            JobError::DeviceUnavailable { abandoned } => write!(
                f,
                "device unavailable: {abandoned} devices still run abandoned work"
            ),
        }
    }
}

impl std::error::Error for JobError {}
