//! Vulkan compute dispatcher for untrusted SPIR-V kernels (feature `vulkan`).
//!
//! A requester's kernel passes two gates before any driver sees it: Tessera's
//! own validator (parse, one resolved table of facts, allow-list policy, and a
//! rewrite that bakes in specialization, clamps indices, zeroes workgroup
//! memory and puts a watchdog on every loop) and the Khronos validator
//! (`spirv-val`, bounded in time and memory). It then runs with robust buffer
//! access on zeroed pooled buffers, under a deadline, metered with GPU
//! timestamps. Binding model: buffer i of a job is the storage buffer at set
//! 0, binding `buffers[i].binding`.
//! The rules, limits and error codes are documented in `docs/VULKAN.md`.
//!
//! ```no_run
//! use tessera_core::vulkan::*;
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let instance = Instance::load()?;
//! let mut gpu = Dispatcher::new(&instance, DeviceSelector::Default, DispatcherConfig::default())?;
//! # let spirv: &[u8] = &[];
//! let input = [0u8; 1024];
//! let job = KernelJob {
//!     spirv,
//!     entry_point: "main",
//!     specialization: &[],
//!     push_constants: &[],
//!     grid: [4, 1, 1],
//!     buffers: &[
//!         BufferSpec { binding: 0, len: 1024, init: Some(&input), readback: false },
//!         BufferSpec { binding: 1, len: 1024, init: None, readback: true },
//!     ],
//! };
//! let out = gpu.run(&job, std::time::Duration::from_secs(2))?;
//! println!("{} ns of GPU time", out.usage.gpu_time_ns);
//! # Ok(()) }
//! ```

mod caps;
mod dispatcher;
mod error;
mod gpu;
mod instance;
mod khronos;
mod validate;

pub use crate::reasons::{ComplexityLimit, KernelRule, RejectionDetail};
pub use caps::{
    Capabilities, ComputeLimits, DeviceBenchmark, MemoryHeap, Robustness, ShaderFeatures,
    MAX_MEMORY_HEAPS,
};
pub use dispatcher::{
    check_kernel, BatchJob, BufferSpec, CheckedKernel, Dispatcher, DispatcherConfig, JobOutput,
    KernelJob, MeterClock, Metering, Usage, MAX_BINDINGS, MAX_PUSH_CONSTANTS,
};
pub use error::{JobError, KernelRejection, VulkanError};
pub use instance::{
    DeviceInfo, DeviceSelector, DeviceType, Instance, MessageSeverity, ValidationMessage,
};
pub use khronos::{KhronosConfig, KhronosValidator};

/// Re-export of the Vulkan result type carried by [`JobError::Vulkan`] and
/// [`VulkanError::Vulkan`].
pub use ash::vk::Result as VkResult;
