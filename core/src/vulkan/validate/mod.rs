//! The first gate: Tessera's own validator of untrusted kernels, run before
//! the Khronos validator and before any shader module is created. It parses
//! the module once ([`parse`]), resolves it into one table of facts
//! ([`facts`]), checks it against allow-lists ([`policy`]) and rewrites it
//! into what the driver gets ([`rewrite`]). The rules are in docs/VULKAN.md;
//! everything not understood is refused with a [`KernelRejection`].

mod facts;
mod parse;
mod policy;
mod rewrite;

pub(crate) use rewrite::{ZeroWorkgroup, WATCHDOG_BINDING, WATCHDOG_SET};

use super::error::KernelRejection;
use rspirv::spirv::Capability;
use std::collections::HashSet;

/// What the device and configuration allow; built once per dispatcher.
#[derive(Debug, Clone)]
pub(crate) struct Rules {
    /// Capabilities a kernel may declare on this device.
    pub allowed: HashSet<u32>,
    /// Capabilities allowed in general but missing on this device.
    pub known_unsupported: HashSet<u32>,
    /// Highest accepted SPIR-V version word (`major << 16 | minor << 8`).
    pub max_version: u32,
    pub max_kernel_bytes: u64,
    pub max_workgroup_size: [u32; 3],
    pub max_invocations: u32,
    pub max_shared_bytes: u64,
    pub max_private_bytes: u64,
    /// How workgroup memory is zeroed on this device.
    pub zero_workgroup: ZeroWorkgroup,
}

/// What the validator learnt about an accepted kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KernelInfo {
    /// Workgroup size after specialization.
    pub local_size: [u32; 3],
    /// Bytes of the push-constant block (0 if none), rounded up to 4.
    pub push_constant_bytes: u32,
    /// The job's bindings at set 0, one bit per binding number.
    pub bindings: u32,
    /// The kernel reads `NumWorkgroups`, so its grid must not be split.
    pub reads_num_workgroups: bool,
    /// The rewritten kernel reads the watchdog flag (set 1, binding 0).
    pub watchdog: bool,
}

/// Validates `spirv` for a job with storage buffers at the `bindings` (a
/// bit per binding number of set 0), `push_len` push-constant bytes and the
/// given specialization. Returns what was learnt and the module to hand to
/// the driver (see [`rewrite`]).
pub(crate) fn validate(
    spirv: &[u8],
    entry_point: &str,
    specialization: &[(u32, u32)],
    bindings: u32,
    push_len: u32,
    rules: &Rules,
) -> Result<(KernelInfo, Vec<u32>), KernelRejection> {
    let parsed = parse::parse(spirv, rules.max_kernel_bytes, rules.max_version)?;
    let declared = policy::declared_capabilities(&parsed.module)?;
    policy::module_level(&parsed.module, entry_point, &declared, rules)?;
    let facts = facts::Facts::build(&parsed.module, specialization)?;
    let learnt = policy::with_facts(
        &parsed.module,
        parsed.version,
        &facts,
        &declared,
        bindings,
        rules,
    )?;
    if learnt.push_constant_bytes > push_len {
        return Err(KernelRejection::PushConstantsTooSmall {
            kernel: learnt.push_constant_bytes,
            job: push_len,
        });
    }
    let mut module = parsed.module;
    let rewritten = rewrite::rewrite(&mut module, &facts, parsed.version, rules.zero_workgroup)?;
    let info = KernelInfo {
        local_size: facts.workgroup_size,
        push_constant_bytes: learnt.push_constant_bytes,
        bindings,
        reads_num_workgroups: learnt.reads_num_workgroups,
        watchdog: rewritten.watchdog,
    };
    Ok((info, rspirv::binary::Assemble::assemble(&module)))
}

/// Capabilities always allowed for compute kernels.
pub(crate) const BASE_CAPABILITIES: &[Capability] = &[Capability::Shader, Capability::Matrix];

/// Capabilities allowed when the device feature behind each is present
/// (the dispatcher decides which are present).
pub(crate) const OPTIONAL_CAPABILITIES: &[Capability] = &[
    Capability::Int8,
    Capability::Int16,
    Capability::Int64,
    Capability::Float16,
    Capability::Float64,
    Capability::StorageBuffer16BitAccess,
    Capability::UniformAndStorageBuffer16BitAccess,
    Capability::StoragePushConstant16,
    Capability::StorageBuffer8BitAccess,
    Capability::UniformAndStorageBuffer8BitAccess,
    Capability::StoragePushConstant8,
    Capability::GroupNonUniform,
    Capability::GroupNonUniformVote,
    Capability::GroupNonUniformArithmetic,
    Capability::GroupNonUniformBallot,
    Capability::GroupNonUniformShuffle,
    Capability::GroupNonUniformShuffleRelative,
    Capability::GroupNonUniformClustered,
    Capability::GroupNonUniformQuad,
    Capability::VariablePointersStorageBuffer,
];
