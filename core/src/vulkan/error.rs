//! Errors of the Vulkan dispatcher: setup errors, job errors and the reasons a
//! kernel is rejected before any driver sees it.

use crate::reasons::{ComplexityLimit, KernelRule, RejectionDetail};
use ash::vk;
use std::fmt;

/// Why the dispatcher (or the Vulkan instance under it) could not be set up.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
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
    /// The Khronos SPIR-V validator (`spirv-val`, Debian and Ubuntu package
    /// `spirv-tools`) could not be run; install it, point
    /// `KhronosConfig::program` at it, or turn the gate off.
    KhronosUnavailable(String),
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
            VulkanError::KhronosUnavailable(_) => 9,
        }
    }
}

impl VulkanError {
    /// The number of this error in the library's shared code space
    /// ([`crate::codes`]): 500 + [`VulkanError::code`].
    pub fn result_code(&self) -> u32 {
        crate::codes::VULKAN_BASE + u32::from(self.code())
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
            VulkanError::KhronosUnavailable(why) => {
                write!(f, "the Khronos SPIR-V validator cannot run: {why}")
            }
        }
    }
}

impl std::error::Error for VulkanError {}

/// Why a kernel job was refused before it reached the driver. Every variant
/// is something the requester can fix in its kernel or job, and names one
/// rule of the gates ([`KernelRule`]); [`KernelRejection::detail`] is the
/// number that travels in `Failed.detail` (see docs/VULKAN.md and
/// `tessera_core::reasons`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum KernelRejection {
    /// Shorter than the 5-word header.
    TooShort,
    /// Length is not a multiple of 4 bytes.
    NotWordAligned,
    /// The first word is not the SPIR-V magic number (little-endian).
    BadMagic,
    /// The SPIR-V version is not one the device accepts (packed as in the header).
    UnsupportedVersion(u32),
    /// The module is larger than the configured kernel size limit.
    KernelTooLarge {
        /// Size of the module in bytes.
        len: u64,
        /// The limit in bytes.
        max: u64,
    },
    /// An instruction's word count is zero or runs past the end.
    BadInstruction {
        /// Word offset of the instruction.
        word: u32,
    },
    /// The operands of an instruction do not follow its grammar.
    Unparsable,
    /// An id at or above the header's bound, or a bound over 2^22.
    IdOutOfBounds,
    /// An id is used but not defined.
    UndefinedId(u32),
    /// An id is defined twice.
    DuplicateId(u32),
    /// A type is not well formed.
    BadType(u32),
    /// A constant does not fit its type.
    BadConstant(u32),
    /// An operand is not what its instruction needs.
    BadOperand {
        /// The instruction's opcode.
        opcode: u32,
    },
    /// A function's blocks are not well formed.
    BadFunction,
    /// A structural limit is exceeded.
    TooComplex(ComplexityLimit),
    /// There is no `OpMemoryModel`.
    MissingMemoryModel,
    /// A type or instruction needs a capability the module does not declare.
    UndeclaredCapability(u32),
    /// A decoration that must be unique appears twice on one target.
    DuplicateDecoration {
        /// The decorated id.
        target: u32,
        /// The decoration enumerant.
        decoration: u32,
    },
    /// A function calls itself, directly or not.
    Recursion,
    /// A branch back to a block that is not a loop header.
    BadControlFlow {
        /// The branch's opcode.
        opcode: u32,
    },
    /// A capability that is never allowed (for example
    /// `PhysicalStorageBufferAddresses`, `Addresses`, `Linkage`, `Kernel`).
    ForbiddenCapability(u32),
    /// The capability is allowed but this device does not support it.
    UnsupportedCapability(u32),
    /// A SPIR-V extension that is not on the allow-list.
    ForbiddenExtension(String),
    /// An extended instruction set other than `GLSL.std.450`.
    ForbiddenExtInstSet(String),
    /// A `GLSL.std.450` instruction compute kernels may not use.
    ForbiddenExtInst(u32),
    /// Addressing model must be `Logical` and memory model `GLSL450`.
    ForbiddenMemoryModel {
        /// The addressing model enumerant.
        addressing: u32,
        /// The memory model enumerant.
        memory: u32,
    },
    /// An opcode compute kernels may not use.
    ForbiddenOpcode(u32),
    /// A storage class compute kernels may not use.
    ForbiddenStorageClass(u32),
    /// A pointer made from or turned into something else (the opcode).
    ForbiddenPointerOp(u32),
    /// A decoration compute kernels may not use.
    ForbiddenDecoration(u32),
    /// An execution mode other than the workgroup size.
    ForbiddenExecutionMode(u32),
    /// A built-in compute kernels do not have.
    ForbiddenBuiltIn(u32),
    /// A type kernels may not use here (the type's id).
    ForbiddenType(u32),
    /// No entry point with the requested name.
    NoEntryPoint,
    /// More than one entry point; exactly one is allowed.
    MultipleEntryPoints(u32),
    /// The entry point is not a compute shader (execution model enumerant).
    WrongExecutionModel(u32),
    /// SPIR-V 1.4+: the entry point's interface omits a global it uses.
    InterfaceIncomplete {
        /// The variable missing from the interface.
        variable: u32,
    },
    /// The workgroup size is missing.
    MissingWorkgroupSize,
    /// A workgroup size or array length depends on an expression the
    /// validator does not evaluate.
    UnresolvableSize,
    /// The kernel uses a resource the job supplies no buffer for.
    UnboundResource {
        /// Its descriptor set.
        set: u32,
        /// Its binding.
        binding: u32,
    },
    /// The kernel uses a resource that is not a storage buffer.
    ForbiddenDescriptorType {
        /// The binding of the offending resource.
        binding: u32,
    },
    /// A resource variable without `DescriptorSet` and `Binding`.
    MissingBinding {
        /// The variable.
        variable: u32,
    },
    /// A job buffer's binding is not below [`super::MAX_BINDINGS`].
    BindingOutOfRange {
        /// Index of the buffer.
        index: u32,
        /// Its binding.
        binding: u32,
    },
    /// Two job buffers name the same binding.
    DuplicateBinding {
        /// The binding.
        binding: u32,
    },
    /// A workgroup dimension is zero.
    WorkgroupSizeZero {
        /// The resolved workgroup size.
        size: [u32; 3],
    },
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
    /// Private and function-local variables exceed the per-invocation limit.
    PrivateMemoryTooLarge {
        /// Bytes the kernel declares per invocation.
        bytes: u64,
        /// The configured limit.
        max: u64,
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
    /// that is not 8, 16 or 32 bits wide or a boolean.
    BadSpecialization {
        /// The constant id.
        constant_id: u32,
    },
    /// A grid dimension is zero.
    EmptyGrid,
    /// The grid exceeds `maxComputeWorkGroupCount`.
    GridTooLarge {
        /// The requested grid.
        grid: [u32; 3],
    },
    /// More invocations (grid × workgroup size) than the device runs
    /// before the job's time limit, by its benchmarked rate.
    TooMuchWork {
        /// Invocations the job asks for.
        invocations: u64,
        /// The most this device takes within the job's time limit.
        max: u64,
    },
    /// More buffers than the configured maximum.
    TooManyBuffers {
        /// Buffers in the job.
        count: u32,
        /// The maximum.
        max: u32,
    },
    /// A buffer has length zero.
    EmptyBuffer {
        /// Index of the buffer.
        index: u32,
    },
    /// A buffer's init data is longer than its length.
    InitTooLong {
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
    /// The Khronos validator (`spirv-val`) refused the module.
    KhronosRejected {
        /// Its first error message.
        message: String,
    },
    /// The Khronos validator ran past its time budget on the module.
    KhronosTimeLimit,
    /// The Khronos validator ran out of its memory budget on the module.
    KhronosMemoryLimit,
}

fn arg(v: u32) -> u16 {
    u16::try_from(v).unwrap_or(u16::MAX)
}

impl KernelRejection {
    /// The rule this rejection is about, and its argument.
    pub fn rule(&self) -> (KernelRule, u16) {
        use KernelRejection::*;
        use KernelRule as R;
        match self {
            TooShort => (R::TooShort, 0),
            NotWordAligned => (R::NotWordAligned, 0),
            BadMagic => (R::BadMagic, 0),
            UnsupportedVersion(v) => (R::UnsupportedVersion, arg((v >> 8) & 0xffff)),
            KernelTooLarge { .. } => (R::KernelTooLarge, 0),
            BadInstruction { .. } => (R::BadInstruction, 0),
            Unparsable => (R::Unparsable, 0),
            IdOutOfBounds => (R::IdOutOfBounds, 0),
            UndefinedId(_) => (R::UndefinedId, 0),
            DuplicateId(_) => (R::DuplicateId, 0),
            BadType(_) => (R::BadType, 0),
            BadConstant(_) => (R::BadConstant, 0),
            BadOperand { opcode } => (R::BadOperand, arg(*opcode)),
            BadFunction => (R::BadFunction, 0),
            TooComplex(l) => (R::TooComplex, *l as u16),
            MissingMemoryModel => (R::MissingMemoryModel, 0),
            UndeclaredCapability(c) => (R::UndeclaredCapability, arg(*c)),
            DuplicateDecoration { decoration, .. } => (R::DuplicateDecoration, arg(*decoration)),
            Recursion => (R::Recursion, 0),
            BadControlFlow { opcode } => (R::BadControlFlow, arg(*opcode)),
            ForbiddenCapability(c) => (R::ForbiddenCapability, arg(*c)),
            UnsupportedCapability(c) => (R::UnsupportedCapability, arg(*c)),
            ForbiddenExtension(_) => (R::ForbiddenExtension, 0),
            ForbiddenExtInstSet(_) => (R::ForbiddenExtInstSet, 0),
            ForbiddenExtInst(n) => (R::ForbiddenExtInst, arg(*n)),
            ForbiddenMemoryModel { .. } => (R::ForbiddenMemoryModel, 0),
            ForbiddenOpcode(op) => (R::ForbiddenOpcode, arg(*op)),
            ForbiddenStorageClass(c) => (R::ForbiddenStorageClass, arg(*c)),
            ForbiddenPointerOp(op) => (R::ForbiddenPointerOp, arg(*op)),
            ForbiddenDecoration(d) => (R::ForbiddenDecoration, arg(*d)),
            ForbiddenExecutionMode(m) => (R::ForbiddenExecutionMode, arg(*m)),
            ForbiddenBuiltIn(b) => (R::ForbiddenBuiltIn, arg(*b)),
            ForbiddenType(_) => (R::ForbiddenType, 0),
            NoEntryPoint => (R::NoEntryPoint, 0),
            MultipleEntryPoints(_) => (R::MultipleEntryPoints, 0),
            WrongExecutionModel(m) => (R::WrongExecutionModel, arg(*m)),
            InterfaceIncomplete { .. } => (R::InterfaceIncomplete, 0),
            MissingWorkgroupSize => (R::MissingWorkgroupSize, 0),
            UnresolvableSize => (R::UnresolvableSize, 0),
            UnboundResource { binding, .. } => (R::UnboundResource, arg(*binding)),
            ForbiddenDescriptorType { binding } => (R::ForbiddenDescriptorType, arg(*binding)),
            MissingBinding { .. } => (R::MissingBinding, 0),
            BindingOutOfRange { index, .. } => (R::BindingOutOfRange, arg(*index)),
            DuplicateBinding { binding } => (R::DuplicateBinding, arg(*binding)),
            WorkgroupSizeZero { .. } => (R::WorkgroupSizeZero, 0),
            WorkgroupTooLarge { .. } => (R::WorkgroupTooLarge, 0),
            SharedMemoryTooLarge { .. } => (R::SharedMemoryTooLarge, 0),
            PrivateMemoryTooLarge { .. } => (R::PrivateMemoryTooLarge, 0),
            PushConstantsTooLarge { .. } => (R::PushConstantsTooLarge, 0),
            PushConstantsTooSmall { .. } => (R::PushConstantsTooSmall, 0),
            BadSpecialization { .. } => (R::BadSpecialization, 0),
            EmptyGrid => (R::EmptyGrid, 0),
            GridTooLarge { .. } => (R::GridTooLarge, 0),
            TooMuchWork { .. } => (R::TooMuchWork, 0),
            TooManyBuffers { .. } => (R::TooManyBuffers, 0),
            EmptyBuffer { index } => (R::EmptyBuffer, arg(*index)),
            InitTooLong { index } => (R::InitTooLong, arg(*index)),
            BufferTooLarge { index, .. } => (R::BufferTooLarge, arg(*index)),
            MemoryBudgetExceeded { .. } => (R::MemoryBudgetExceeded, 0),
            KhronosRejected { .. } => (R::KhronosRejected, 0),
            KhronosTimeLimit => (R::KhronosTimeLimit, 0),
            KhronosMemoryLimit => (R::KhronosMemoryLimit, 0),
        }
    }

    /// The rule's stable code (see docs/VULKAN.md).
    pub fn code(&self) -> u16 {
        self.rule().0 as u16
    }

    /// The number that travels in `Failed.detail`: the rule's code in the
    /// low 16 bits, its argument (an opcode, a capability, a binding, ...)
    /// in the high 16 bits.
    pub fn detail(&self) -> u32 {
        let (rule, argument) = self.rule();
        RejectionDetail::new(rule, argument).detail()
    }
}

impl fmt::Display for KernelRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (rule, argument) = self.rule();
        write!(
            f,
            "kernel rejected: {}",
            RejectionDetail::new(rule, argument)
        )?;
        match self {
            KernelRejection::KhronosRejected { message } => write!(f, ": {message}"),
            KernelRejection::ForbiddenExtension(name)
            | KernelRejection::ForbiddenExtInstSet(name) => write!(f, ": {name}"),
            other => write!(f, " [{other:?}]"),
        }
    }
}

/// Why a job did not produce outputs. The dispatcher stays usable after
/// every one of these.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
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
    /// The Khronos validator could not be run on a new kernel (the program
    /// vanished or failed for a reason of its own); nothing ran. A provider
    /// problem, not the requester's.
    ValidatorUnavailable(String),
    /// The job was cancelled ([`Dispatcher::run_cancellable`]) before or
    /// while it ran; its outputs are dropped.
    ///
    /// [`Dispatcher::run_cancellable`]: super::Dispatcher::run_cancellable
    Cancelled,
}

impl JobError {
    /// Stable small integer: 1 timeout, 2 device lost, 3 out of memory, 4
    /// other Vulkan error, 5 device unavailable, 6 Khronos validator
    /// unavailable, 7 cancelled, 100 a rejected kernel (whose own number is
    /// [`KernelRejection::detail`]).
    pub fn code(&self) -> u16 {
        match self {
            JobError::Timeout => 1,
            JobError::DeviceLost { .. } => 2,
            JobError::OutOfMemory => 3,
            JobError::Vulkan(_) => 4,
            JobError::DeviceUnavailable { .. } => 5,
            JobError::ValidatorUnavailable(_) => 6,
            JobError::Cancelled => 7,
            JobError::Rejected(_) => 100,
        }
    }

    /// The `Failed.detail` for this error: a rejection's detail (rule and
    /// argument, see [`KernelRejection::detail`]), else [`JobError::code`].
    pub fn detail(&self) -> u32 {
        match self {
            JobError::Rejected(r) => r.detail(),
            other => u32::from(other.code()),
        }
    }
}

impl JobError {
    /// The number of this error in the library's shared code space
    /// ([`crate::codes`]): 10000 + the rule for a rejected kernel, else
    /// 2100 + [`JobError::code`].
    pub fn result_code(&self) -> u32 {
        match self {
            JobError::Rejected(r) => crate::codes::kernel_rejection(r.detail()),
            other => crate::codes::JOB_BASE + u32::from(other.code()),
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
            JobError::ValidatorUnavailable(why) => {
                write!(f, "the Khronos SPIR-V validator could not run: {why}")
            }
            JobError::Cancelled => write!(f, "job cancelled"),
            JobError::DeviceUnavailable { abandoned } => write!(
                f,
                "device unavailable: {abandoned} devices still run abandoned work"
            ),
        }
    }
}

impl std::error::Error for JobError {}

#[cfg(test)]
mod code_tests {
    use super::*;

    #[test]
    fn every_dispatcher_error_has_a_named_code() {
        let setup = [
            VulkanError::LoaderUnavailable,
            VulkanError::NoDevice,
            VulkanError::DeviceNotFound,
            VulkanError::ApiVersionTooOld { version: 0 },
            VulkanError::NoComputeQueue,
            VulkanError::ValidationUnavailable,
            VulkanError::NoUsableMemory,
            VulkanError::Vulkan(vk::Result::ERROR_UNKNOWN),
            VulkanError::KhronosUnavailable(String::new()),
        ];
        for e in setup {
            assert!(crate::codes::name(e.result_code()).is_some(), "{e:?}");
        }
        let jobs = [
            JobError::Timeout,
            JobError::DeviceLost { fault: None },
            JobError::OutOfMemory,
            JobError::Vulkan(vk::Result::ERROR_UNKNOWN),
            JobError::DeviceUnavailable { abandoned: 2 },
            JobError::ValidatorUnavailable(String::new()),
            JobError::Cancelled,
        ];
        for e in jobs {
            let code = e.result_code();
            assert!(crate::codes::name(code).is_some(), "{e:?}");
            assert!(!matches!(crate::codes::name(code), Some("kernel_rejected")));
        }
    }
}
