//! SPIR-V validation of untrusted kernels, run before any shader module is
//! created. The rules are in docs/VULKAN.md; this module only accepts what it
//! understands and rejects everything else with a [`KernelRejection`].

use super::error::{KernelRejection, Malformed};
use rspirv::dr::{Instruction, Module, Operand};
use rspirv::spirv::{
    AddressingModel, BuiltIn, Capability, Decoration, ExecutionMode, ExecutionModel, MemoryModel,
    Op, StorageClass,
};
use std::collections::{HashMap, HashSet};

/// Largest id bound accepted (keeps every id-indexed table small).
const MAX_ID_BOUND: u32 = 1 << 22;
/// Deepest type nesting followed when sizing variables.
const MAX_TYPE_DEPTH: u32 = 32;

/// SPIR-V extensions a kernel may declare.
const ALLOWED_EXTENSIONS: &[&str] = &[
    "SPV_KHR_storage_buffer_storage_class",
    "SPV_KHR_16bit_storage",
    "SPV_KHR_8bit_storage",
    "SPV_KHR_variable_pointers",
    "SPV_KHR_shader_draw_parameters",
];

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
    /// Specialization entries to pass: (constant id, byte size, value).
    pub specialization: Vec<(u32, u8, u32)>,
}

/// Validates `spirv` for a job with storage buffers at the `bindings` (a bit
/// per binding number of set 0), `push_len`
/// push-constant bytes and the given specialization. Returns what was
/// learnt and the module to hand to the driver: the kernel with every
/// dynamic index into memory that robust buffer access does not cover
/// (workgroup, private, function, push-constant) clamped into range.
pub(crate) fn validate(
    spirv: &[u8],
    entry_point: &str,
    specialization: &[(u32, u32)],
    bindings: u32,
    push_len: u32,
    rules: &Rules,
) -> Result<(KernelInfo, Vec<u32>), KernelRejection> {
    let mut module = parse(spirv, rules)?;
    let info = check(
        &module,
        entry_point,
        specialization,
        bindings,
        push_len,
        rules,
    )?;
    clamp_indices(&mut module, specialization)?;
    Ok((info, rspirv::binary::Assemble::assemble(&module)))
}

fn check(
    module: &Module,
    entry_point: &str,
    specialization: &[(u32, u32)],
    bindings: u32,
    push_len: u32,
    rules: &Rules,
) -> Result<KernelInfo, KernelRejection> {
    let v = Validator::new(module)?;
    v.check_module_level(rules)?;
    check_structure(module)?;
    v.check_entry_point(entry_point)?;
    let spec = v.check_specialization(specialization)?;
    let local_size = v.workgroup_size(specialization)?;
    let [x, y, z] = local_size;
    let total = u64::from(x)
        .saturating_mul(u64::from(y))
        .saturating_mul(u64::from(z));
    if x == 0
        || y == 0
        || z == 0
        || x > rules.max_workgroup_size[0]
        || y > rules.max_workgroup_size[1]
        || z > rules.max_workgroup_size[2]
        || total > u64::from(rules.max_invocations)
    {
        return Err(KernelRejection::WorkgroupTooLarge { size: local_size });
    }
    let vars = v.check_variables(specialization, bindings, rules)?;
    if vars.push_constant_bytes > push_len {
        return Err(KernelRejection::PushConstantsTooSmall {
            kernel: vars.push_constant_bytes,
            job: push_len,
        });
    }
    Ok(KernelInfo {
        local_size,
        push_constant_bytes: vars.push_constant_bytes,
        bindings,
        reads_num_workgroups: v.builtin_used(BuiltIn::NumWorkgroups),
        specialization: spec,
    })
}

fn parse(spirv: &[u8], rules: &Rules) -> Result<Module, KernelRejection> {
    let len = spirv.len() as u64;
    if len > rules.max_kernel_bytes {
        return Err(KernelRejection::KernelTooLarge {
            len,
            max: rules.max_kernel_bytes,
        });
    }
    if spirv.len() < 20 {
        return Err(KernelRejection::Malformed(Malformed::TooShort));
    }
    if spirv.len() % 4 != 0 {
        return Err(KernelRejection::Malformed(Malformed::NotWordAligned));
    }
    let words: Vec<u32> = spirv
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    if words[0] != rspirv::spirv::MAGIC_NUMBER {
        return Err(KernelRejection::Malformed(Malformed::BadMagic));
    }
    let version = words[1];
    if version >> 16 != 1 || version & 0xff00_00ff != 0 || version > rules.max_version {
        return Err(KernelRejection::Malformed(Malformed::UnsupportedVersion(
            version,
        )));
    }
    if words[3] == 0 || words[3] > MAX_ID_BOUND {
        return Err(KernelRejection::Malformed(Malformed::IdOutOfBounds));
    }
    // Every instruction's word count must be non-zero and stay inside the
    // module (the parser would otherwise slice past the end and panic).
    let mut at = 5;
    while at < words.len() {
        let count = (words[at] >> 16) as usize;
        if count == 0 || count > words.len() - at {
            return Err(KernelRejection::Malformed(Malformed::Unparsable));
        }
        at += count;
    }
    // The parser is third-party code fed hostile bytes: a panic in it must
    // reject the kernel, not take the agent down.
    let parsed = std::panic::catch_unwind(|| rspirv::dr::load_words(&words));
    match parsed {
        Ok(Ok(module)) => Ok(module),
        _ => Err(KernelRejection::Malformed(Malformed::Unparsable)),
    }
}

/// GLSL.std.450 `UMin`.
const GLSL_UMIN: u32 = 38;

/// Rewrites every access chain whose base lives outside buffer memory so
/// that each array, vector or matrix index is `UMin(index, len - 1)`.
/// Robust buffer access covers storage buffers only; an out-of-range index
/// into shared or private memory is undefined behaviour that crashes some
/// drivers (lavapipe) and can read other workgroups' data on others.
fn clamp_indices(module: &mut Module, spec: &[(u32, u32)]) -> Result<(), KernelRejection> {
    let malformed = || KernelRejection::Malformed(Malformed::BadType);
    let defs: HashMap<u32, Instruction> = module
        .types_global_values
        .iter()
        .filter_map(|i| Some((i.result_id?, i.clone())))
        .collect();
    let spec_ids: HashMap<u32, u32> = module
        .annotations
        .iter()
        .filter(|i| {
            i.class.opcode == Op::Decorate
                && i.operands.get(1) == Some(&Operand::Decoration(Decoration::SpecId))
        })
        .filter_map(|i| Some((id(i.operands.first())?, lit(i.operands.get(2))?)))
        .collect();
    let const_value = |cid: u32| -> Option<u32> {
        let c = defs.get(&cid)?;
        match c.class.opcode {
            Op::Constant => lit(c.operands.first()),
            Op::SpecConstant => spec_ids
                .get(&cid)
                .and_then(|sid| spec.iter().find(|(i, _)| i == sid).map(|(_, v)| *v))
                .or_else(|| lit(c.operands.first())),
            _ => None,
        }
    };
    let mut value_types: HashMap<u32, u32> = HashMap::new();
    for inst in module.all_inst_iter() {
        if let (Some(r), Some(t)) = (inst.result_id, inst.result_type) {
            value_types.insert(r, t);
        }
    }
    let mut bound = module
        .header
        .as_ref()
        .map(|h| h.bound)
        .ok_or_else(malformed)?;
    let mut fresh = || {
        let id = bound;
        bound += 1;
        id
    };
    let glsl = match module.ext_inst_imports.first().and_then(|i| i.result_id) {
        Some(g) => g,
        None => {
            let g = fresh();
            module.ext_inst_imports.push(Instruction::new(
                Op::ExtInstImport,
                None,
                Some(g),
                vec![Operand::LiteralString("GLSL.std.450".into())],
            ));
            g
        }
    };
    let mut new_constants: HashMap<(u32, u32), u32> = HashMap::new();
    let mut constant_insts = Vec::new();
    for f in &mut module.functions {
        for block in &mut f.blocks {
            let mut out = Vec::with_capacity(block.instructions.len());
            for mut inst in std::mem::take(&mut block.instructions) {
                let op = inst.class.opcode;
                if !matches!(op, Op::AccessChain | Op::InBoundsAccessChain) {
                    out.push(inst);
                    continue;
                }
                let base = id(inst.operands.first()).ok_or_else(malformed)?;
                let ptr = value_types
                    .get(&base)
                    .and_then(|t| defs.get(t))
                    .ok_or_else(malformed)?;
                let class = match ptr.operands.first() {
                    Some(Operand::StorageClass(c)) => *c,
                    _ => return Err(malformed()),
                };
                if matches!(class, StorageClass::StorageBuffer | StorageClass::Uniform) {
                    out.push(inst);
                    continue;
                }
                let mut current = id(ptr.operands.get(1)).ok_or_else(malformed)?;
                for k in 1..inst.operands.len() {
                    let index = id(inst.operands.get(k)).ok_or_else(malformed)?;
                    let t = defs.get(&current).ok_or_else(malformed)?;
                    let (len, next) = match t.class.opcode {
                        Op::TypeStruct => {
                            let member = const_value(index).ok_or_else(malformed)?;
                            current = id(t.operands.get(member as usize)).ok_or_else(malformed)?;
                            continue;
                        }
                        Op::TypeArray => {
                            let len_id = id(t.operands.get(1)).ok_or_else(malformed)?;
                            let len =
                                const_value(len_id).ok_or(KernelRejection::UnresolvableSize)?;
                            (len, id(t.operands.first()).ok_or_else(malformed)?)
                        }
                        Op::TypeVector | Op::TypeMatrix => (
                            lit(t.operands.get(1)).ok_or_else(malformed)?,
                            id(t.operands.first()).ok_or_else(malformed)?,
                        ),
                        _ => return Err(malformed()),
                    };
                    current = next;
                    if len == 0 {
                        return Err(malformed());
                    }
                    if const_value(index).is_some_and(|v| v < len)
                        && defs.get(&index).map(|c| c.class.opcode) == Some(Op::Constant)
                    {
                        continue;
                    }
                    let index_type = *value_types.get(&index).ok_or_else(malformed)?;
                    let wide = defs
                        .get(&index_type)
                        .filter(|t| t.class.opcode == Op::TypeInt)
                        .and_then(|t| lit(t.operands.first()))
                        .ok_or_else(malformed)?
                        == 64;
                    let max = *new_constants
                        .entry((index_type, len - 1))
                        .or_insert_with(|| {
                            let c = fresh();
                            let value = if wide {
                                Operand::LiteralBit64(u64::from(len - 1))
                            } else {
                                Operand::LiteralBit32(len - 1)
                            };
                            constant_insts.push(Instruction::new(
                                Op::Constant,
                                Some(index_type),
                                Some(c),
                                vec![value],
                            ));
                            c
                        });
                    let clamped = fresh();
                    out.push(Instruction::new(
                        Op::ExtInst,
                        Some(index_type),
                        Some(clamped),
                        vec![
                            Operand::IdRef(glsl),
                            Operand::LiteralExtInstInteger(GLSL_UMIN),
                            Operand::IdRef(index),
                            Operand::IdRef(max),
                        ],
                    ));
                    inst.operands[k] = Operand::IdRef(clamped);
                }
                out.push(inst);
            }
            block.instructions = out;
        }
    }
    module.types_global_values.extend(constant_insts);
    if let Some(h) = module.header.as_mut() {
        h.bound = bound;
    }
    Ok(())
}

fn is_terminator(op: Op) -> bool {
    matches!(
        op,
        Op::Branch
            | Op::BranchConditional
            | Op::Switch
            | Op::Return
            | Op::ReturnValue
            | Op::Kill
            | Op::Unreachable
            | Op::TerminateInvocation
    )
}

/// Structural checks a driver's compiler relies on: every id is defined
/// exactly once, every referenced id is defined, result types are types,
/// scalar and vector shapes are ones Vulkan knows, every block ends in a
/// terminator, and the entry point names a function of the module.
fn check_structure(module: &Module) -> Result<(), KernelRejection> {
    let malformed = || KernelRejection::Malformed(Malformed::BadType);
    let mut defined = HashSet::new();
    let mut types = HashSet::new();
    for inst in module.all_inst_iter() {
        if let Some(r) = inst.result_id {
            if !defined.insert(r) {
                return Err(malformed());
            }
        }
    }
    for inst in &module.types_global_values {
        let op = inst.class.opcode;
        let is_type = matches!(
            op,
            Op::TypeVoid
                | Op::TypeBool
                | Op::TypeInt
                | Op::TypeFloat
                | Op::TypeVector
                | Op::TypeMatrix
                | Op::TypeArray
                | Op::TypeRuntimeArray
                | Op::TypeStruct
                | Op::TypePointer
                | Op::TypeFunction
        );
        if inst.class.opname.starts_with("Type") && !is_type {
            // Images, samplers, events, cooperative matrices, ...
            return Err(malformed());
        }
        let ok = match op {
            Op::TypeInt => matches!(lit(inst.operands.first()), Some(8 | 16 | 32 | 64)),
            Op::TypeFloat => matches!(lit(inst.operands.first()), Some(16 | 32 | 64)),
            Op::TypeVector => matches!(lit(inst.operands.get(1)), Some(2..=4)),
            Op::TypeMatrix => matches!(lit(inst.operands.get(1)), Some(2..=4)),
            _ => true,
        };
        if !ok {
            return Err(malformed());
        }
        if is_type {
            if let Some(r) = inst.result_id {
                types.insert(r);
            }
        }
    }
    for inst in module.all_inst_iter() {
        if let Some(t) = inst.result_type {
            if !types.contains(&t) {
                return Err(malformed());
            }
        }
        for op in &inst.operands {
            if let Operand::IdRef(i) | Operand::IdScope(i) | Operand::IdMemorySemantics(i) = op {
                if !defined.contains(i) {
                    return Err(malformed());
                }
            }
        }
    }
    // Member decorations and names must name an existing member of a struct.
    let members: HashMap<u32, usize> = module
        .types_global_values
        .iter()
        .filter(|i| i.class.opcode == Op::TypeStruct)
        .filter_map(|i| Some((i.result_id?, i.operands.len())))
        .collect();
    for inst in module.annotations.iter().chain(&module.debug_names) {
        if matches!(inst.class.opcode, Op::MemberDecorate | Op::MemberName) {
            let ok = match (id(inst.operands.first()), lit(inst.operands.get(1))) {
                (Some(t), Some(m)) => members.get(&t).is_some_and(|n| (m as usize) < *n),
                _ => false,
            };
            if !ok {
                return Err(malformed());
            }
        }
    }
    // Only compute built-ins: a vertex or fragment built-in in a compute
    // shader crashes some compilers.
    for inst in &module.annotations {
        let builtin = match (
            inst.class.opcode,
            inst.operands.get(1),
            inst.operands.get(2),
        ) {
            (Op::Decorate, Some(Operand::Decoration(Decoration::BuiltIn)), Some(b)) => Some(b),
            (Op::MemberDecorate, _, Some(Operand::Decoration(Decoration::BuiltIn))) => {
                inst.operands.get(3)
            }
            _ => None,
        };
        if let Some(b) = builtin {
            let ok = matches!(
                b,
                Operand::BuiltIn(
                    BuiltIn::NumWorkgroups
                        | BuiltIn::WorkgroupSize
                        | BuiltIn::WorkgroupId
                        | BuiltIn::LocalInvocationId
                        | BuiltIn::GlobalInvocationId
                        | BuiltIn::LocalInvocationIndex
                        | BuiltIn::SubgroupSize
                        | BuiltIn::SubgroupLocalInvocationId
                        | BuiltIn::NumSubgroups
                        | BuiltIn::SubgroupId
                        | BuiltIn::SubgroupEqMask
                        | BuiltIn::SubgroupGeMask
                        | BuiltIn::SubgroupGtMask
                        | BuiltIn::SubgroupLeMask
                        | BuiltIn::SubgroupLtMask
                )
            );
            if !ok {
                return Err(malformed());
            }
        }
    }
    check_access_chains(module)?;
    let mut functions = HashSet::new();
    for f in &module.functions {
        let def = f.def.as_ref().ok_or_else(malformed)?;
        if f.end.is_none() || f.blocks.is_empty() {
            return Err(malformed());
        }
        for block in &f.blocks {
            match block.instructions.last() {
                Some(last) if is_terminator(last.class.opcode) => {}
                _ => return Err(malformed()),
            }
            if block.label.is_none() {
                return Err(malformed());
            }
        }
        if let Some(r) = def.result_id {
            functions.insert(r);
        }
    }
    for ep in &module.entry_points {
        match id(ep.operands.get(1)) {
            Some(f) if functions.contains(&f) => {}
            _ => return Err(malformed()),
        }
    }
    Ok(())
}

/// Access chains must index existing struct members with constants and
/// step only through composite types (drivers index member tables with
/// these values unchecked).
fn check_access_chains(module: &Module) -> Result<(), KernelRejection> {
    let malformed = || KernelRejection::Malformed(Malformed::BadType);
    let defs: HashMap<u32, &Instruction> = module
        .types_global_values
        .iter()
        .filter_map(|i| Some((i.result_id?, i)))
        .collect();
    let mut value_types: HashMap<u32, u32> = HashMap::new();
    for inst in module.all_inst_iter() {
        if let (Some(r), Some(t)) = (inst.result_id, inst.result_type) {
            value_types.insert(r, t);
        }
    }
    for inst in module.all_inst_iter() {
        if inst.class.opcode == Op::Variable {
            // The declared storage class must be the pointer type's.
            let ptr = inst
                .result_type
                .and_then(|t| defs.get(&t))
                .ok_or_else(malformed)?;
            if ptr.class.opcode != Op::TypePointer || ptr.operands.first() != inst.operands.first()
            {
                return Err(malformed());
            }
        }
    }
    for f in &module.functions {
        for block in &f.blocks {
            for inst in &block.instructions {
                if inst.class.opcode == Op::Variable
                    && inst.operands.first() != Some(&Operand::StorageClass(StorageClass::Function))
                {
                    return Err(malformed());
                }
            }
        }
    }
    for inst in module.all_inst_iter() {
        match inst.class.opcode {
            Op::AccessChain | Op::InBoundsAccessChain => {}
            Op::PtrAccessChain | Op::InBoundsPtrAccessChain => return Err(malformed()),
            _ => continue,
        }
        let base = id(inst.operands.first()).ok_or_else(malformed)?;
        let ptr_type = value_types.get(&base).ok_or_else(malformed)?;
        let ptr = defs.get(ptr_type).ok_or_else(malformed)?;
        if ptr.class.opcode != Op::TypePointer {
            return Err(malformed());
        }
        let mut current = id(ptr.operands.get(1)).ok_or_else(malformed)?;
        for index in &inst.operands[1..] {
            let index = id(Some(index)).ok_or_else(malformed)?;
            let t = defs.get(&current).ok_or_else(malformed)?;
            current = match t.class.opcode {
                Op::TypeStruct => {
                    let c = defs.get(&index).ok_or_else(malformed)?;
                    if c.class.opcode != Op::Constant {
                        return Err(malformed());
                    }
                    let member = lit(c.operands.first()).ok_or_else(malformed)?;
                    id(t.operands.get(member as usize)).ok_or_else(malformed)?
                }
                Op::TypeArray | Op::TypeRuntimeArray | Op::TypeVector | Op::TypeMatrix => {
                    id(t.operands.first()).ok_or_else(malformed)?
                }
                _ => return Err(malformed()),
            };
        }
    }
    Ok(())
}

/// Variables summary.
struct Vars {
    push_constant_bytes: u32,
}

struct Validator<'m> {
    module: &'m Module,
    /// Types, constants and global variables by result id.
    defs: HashMap<u32, &'m Instruction>,
    /// Decorations by target id.
    decorations: HashMap<u32, Vec<(Decoration, Option<u32>)>>,
    /// Member offsets by (struct id, member index).
    offsets: HashMap<(u32, u32), u32>,
}

fn lit(op: Option<&Operand>) -> Option<u32> {
    match op {
        Some(Operand::LiteralBit32(v)) => Some(*v),
        _ => None,
    }
}

fn id(op: Option<&Operand>) -> Option<u32> {
    match op {
        Some(Operand::IdRef(v)) => Some(*v),
        _ => None,
    }
}

fn bad_type() -> KernelRejection {
    KernelRejection::Malformed(Malformed::BadType)
}

impl<'m> Validator<'m> {
    fn new(module: &'m Module) -> Result<Self, KernelRejection> {
        let bound = module.header.as_ref().map(|h| h.bound).unwrap_or(0);
        let mut defs = HashMap::new();
        let mut decorations: HashMap<u32, Vec<(Decoration, Option<u32>)>> = HashMap::new();
        let mut offsets = HashMap::new();
        for inst in module.all_inst_iter() {
            if let Some(r) = inst.result_id {
                if r >= bound {
                    return Err(KernelRejection::Malformed(Malformed::IdOutOfBounds));
                }
            }
            if let Some(t) = inst.result_type {
                if t >= bound {
                    return Err(KernelRejection::Malformed(Malformed::IdOutOfBounds));
                }
            }
            for op in &inst.operands {
                if let Operand::IdRef(i) | Operand::IdScope(i) | Operand::IdMemorySemantics(i) = op
                {
                    if *i >= bound {
                        return Err(KernelRejection::Malformed(Malformed::IdOutOfBounds));
                    }
                }
            }
        }
        for inst in &module.types_global_values {
            if let Some(r) = inst.result_id {
                defs.insert(r, inst);
            }
        }
        for inst in &module.annotations {
            match inst.class.opcode {
                Op::Decorate => {
                    if let (Some(target), Some(Operand::Decoration(d))) =
                        (id(inst.operands.first()), inst.operands.get(1))
                    {
                        let value = match inst.operands.get(2) {
                            Some(Operand::LiteralBit32(v)) => Some(*v),
                            Some(Operand::BuiltIn(b)) => Some(*b as u32),
                            _ => None,
                        };
                        decorations.entry(target).or_default().push((*d, value));
                    }
                }
                Op::MemberDecorate => {
                    if let (
                        Some(target),
                        Some(member),
                        Some(Operand::Decoration(Decoration::Offset)),
                        Some(off),
                    ) = (
                        id(inst.operands.first()),
                        lit(inst.operands.get(1)),
                        inst.operands.get(2),
                        lit(inst.operands.get(3)),
                    ) {
                        offsets.insert((target, member), off);
                    }
                }
                _ => {}
            }
        }
        Ok(Validator {
            module,
            defs,
            decorations,
            offsets,
        })
    }

    fn decoration(&self, target: u32, wanted: Decoration) -> Option<Option<u32>> {
        self.decorations
            .get(&target)?
            .iter()
            .find(|(d, _)| *d == wanted)
            .map(|(_, v)| *v)
    }

    fn builtin_used(&self, builtin: BuiltIn) -> bool {
        self.decorations
            .values()
            .flatten()
            .any(|(d, v)| *d == Decoration::BuiltIn && *v == Some(builtin as u32))
    }

    fn check_module_level(&self, rules: &Rules) -> Result<(), KernelRejection> {
        for inst in &self.module.capabilities {
            if let Some(Operand::Capability(c)) = inst.operands.first() {
                let c = *c as u32;
                if rules.known_unsupported.contains(&c) {
                    return Err(KernelRejection::UnsupportedCapability(c));
                }
                if !rules.allowed.contains(&c) {
                    return Err(KernelRejection::ForbiddenCapability(c));
                }
            } else {
                return Err(KernelRejection::Malformed(Malformed::Unparsable));
            }
        }
        for inst in &self.module.extensions {
            let name = match inst.operands.first() {
                Some(Operand::LiteralString(s)) => s.clone(),
                _ => String::new(),
            };
            if !ALLOWED_EXTENSIONS.contains(&name.as_str()) {
                return Err(KernelRejection::ForbiddenExtension(name));
            }
        }
        for inst in &self.module.ext_inst_imports {
            let name = match inst.operands.first() {
                Some(Operand::LiteralString(s)) => s.clone(),
                _ => String::new(),
            };
            if name != "GLSL.std.450" {
                return Err(KernelRejection::ForbiddenExtInstSet(name));
            }
        }
        let mm = self
            .module
            .memory_model
            .as_ref()
            .ok_or(KernelRejection::Malformed(Malformed::NoMemoryModel))?;
        match (mm.operands.first(), mm.operands.get(1)) {
            (Some(Operand::AddressingModel(a)), Some(Operand::MemoryModel(m))) => {
                if *a != AddressingModel::Logical || *m != MemoryModel::GLSL450 {
                    return Err(KernelRejection::ForbiddenMemoryModel {
                        addressing: *a as u32,
                        memory: *m as u32,
                    });
                }
            }
            _ => return Err(KernelRejection::Malformed(Malformed::NoMemoryModel)),
        }
        Ok(())
    }

    fn check_entry_point(&self, name: &str) -> Result<(), KernelRejection> {
        let eps = &self.module.entry_points;
        match eps.len() {
            0 => return Err(KernelRejection::NoEntryPoint),
            1 => {}
            n => return Err(KernelRejection::MultipleEntryPoints(n as u32)),
        }
        let ep = &eps[0];
        match ep.operands.first() {
            Some(Operand::ExecutionModel(ExecutionModel::GLCompute)) => {}
            Some(Operand::ExecutionModel(m)) => {
                return Err(KernelRejection::WrongExecutionModel(*m as u32))
            }
            _ => return Err(KernelRejection::Malformed(Malformed::Unparsable)),
        }
        match ep.operands.get(2) {
            Some(Operand::LiteralString(s)) if s == name => Ok(()),
            _ => Err(KernelRejection::NoEntryPoint),
        }
    }

    /// Spec ids the module declares, with the byte width of each constant.
    fn spec_widths(&self) -> HashMap<u32, Result<u8, ()>> {
        let mut out = HashMap::new();
        for (target, decos) in &self.decorations {
            for (d, v) in decos {
                if *d != Decoration::SpecId {
                    continue;
                }
                let Some(spec_id) = v else { continue };
                let width = self
                    .defs
                    .get(target)
                    .and_then(|c| c.result_type)
                    .and_then(|t| self.defs.get(&t))
                    .map(|t| match t.class.opcode {
                        Op::TypeBool => Ok(4),
                        Op::TypeInt | Op::TypeFloat => match lit(t.operands.first()) {
                            Some(8) => Ok(1),
                            Some(16) => Ok(2),
                            Some(32) => Ok(4),
                            _ => Err(()),
                        },
                        _ => Err(()),
                    })
                    .unwrap_or(Err(()));
                out.insert(*spec_id, width);
            }
        }
        out
    }

    fn check_specialization(
        &self,
        spec: &[(u32, u32)],
    ) -> Result<Vec<(u32, u8, u32)>, KernelRejection> {
        let widths = self.spec_widths();
        let mut seen = HashSet::new();
        let mut out = Vec::with_capacity(spec.len());
        for &(constant_id, value) in spec {
            if !seen.insert(constant_id) {
                return Err(KernelRejection::BadSpecialization { constant_id });
            }
            match widths.get(&constant_id) {
                // Ids the kernel does not declare are ignored, as Vulkan does.
                None => {}
                Some(Ok(w)) => out.push((constant_id, *w, value)),
                Some(Err(())) => return Err(KernelRejection::BadSpecialization { constant_id }),
            }
        }
        Ok(out)
    }

    /// Value of a 32-bit integer constant after specialization.
    fn const_u32(&self, cid: u32, spec: &[(u32, u32)]) -> Result<u32, KernelRejection> {
        let inst = self.defs.get(&cid).ok_or_else(bad_type)?;
        match inst.class.opcode {
            Op::Constant => lit(inst.operands.first()).ok_or(KernelRejection::UnresolvableSize),
            Op::SpecConstant => {
                if let Some(Some(spec_id)) = self.decoration(cid, Decoration::SpecId) {
                    if let Some(&(_, v)) = spec.iter().find(|(i, _)| *i == spec_id) {
                        return Ok(v);
                    }
                }
                lit(inst.operands.first()).ok_or(KernelRejection::UnresolvableSize)
            }
            _ => Err(KernelRejection::UnresolvableSize),
        }
    }

    fn workgroup_size(&self, spec: &[(u32, u32)]) -> Result<[u32; 3], KernelRejection> {
        // A constant decorated BuiltIn WorkgroupSize overrides the execution mode.
        for (target, decos) in &self.decorations {
            if decos.iter().any(|(d, v)| {
                *d == Decoration::BuiltIn && *v == Some(BuiltIn::WorkgroupSize as u32)
            }) {
                let inst = self.defs.get(target).ok_or_else(bad_type)?;
                if !matches!(
                    inst.class.opcode,
                    Op::ConstantComposite | Op::SpecConstantComposite
                ) || inst.operands.len() != 3
                {
                    return Err(KernelRejection::UnresolvableSize);
                }
                let mut size = [0u32; 3];
                for (i, s) in size.iter_mut().enumerate() {
                    let c = id(inst.operands.get(i)).ok_or_else(bad_type)?;
                    *s = self.const_u32(c, spec)?;
                }
                return Ok(size);
            }
        }
        for inst in &self.module.execution_modes {
            match inst.operands.get(1) {
                Some(Operand::ExecutionMode(ExecutionMode::LocalSize)) => {
                    let mut size = [0u32; 3];
                    for (i, s) in size.iter_mut().enumerate() {
                        *s = lit(inst.operands.get(2 + i)).ok_or_else(bad_type)?;
                    }
                    return Ok(size);
                }
                Some(Operand::ExecutionMode(ExecutionMode::LocalSizeId)) => {
                    let mut size = [0u32; 3];
                    for (i, s) in size.iter_mut().enumerate() {
                        let c = id(inst.operands.get(2 + i)).ok_or_else(bad_type)?;
                        *s = self.const_u32(c, spec)?;
                    }
                    return Ok(size);
                }
                _ => {}
            }
        }
        Err(KernelRejection::MissingWorkgroupSize)
    }

    /// Byte size of a type, following `Offset` decorations for explicitly
    /// laid-out structs. Runtime arrays count as zero.
    fn type_size(&self, tid: u32, spec: &[(u32, u32)], depth: u32) -> Result<u64, KernelRejection> {
        if depth > MAX_TYPE_DEPTH {
            return Err(bad_type());
        }
        let t = self.defs.get(&tid).ok_or_else(bad_type)?;
        let sub = |op: Option<&Operand>| -> Result<u64, KernelRejection> {
            let inner = id(op).ok_or_else(bad_type)?;
            self.type_size(inner, spec, depth + 1)
        };
        Ok(match t.class.opcode {
            Op::TypeBool => 4,
            Op::TypeInt | Op::TypeFloat => {
                u64::from(lit(t.operands.first()).ok_or_else(bad_type)?).div_ceil(8)
            }
            Op::TypeVector | Op::TypeMatrix => {
                let n = u64::from(lit(t.operands.get(1)).ok_or_else(bad_type)?);
                let elem = sub(t.operands.first())?;
                // vec3 occupies the space of vec4 in every layout.
                let n = if n == 3 { 4 } else { n };
                elem.saturating_mul(n)
            }
            Op::TypeArray => {
                let len_id = id(t.operands.get(1)).ok_or_else(bad_type)?;
                let len = u64::from(self.const_u32(len_id, spec)?);
                let elem = match self.decoration(tid, Decoration::ArrayStride) {
                    Some(Some(stride)) => u64::from(stride),
                    _ => sub(t.operands.first())?,
                };
                elem.saturating_mul(len)
            }
            Op::TypeRuntimeArray => 0,
            Op::TypeStruct => {
                let mut total = 0u64;
                for (i, m) in t.operands.iter().enumerate() {
                    let size = sub(Some(m))?;
                    total = match self.offsets.get(&(tid, i as u32)) {
                        Some(off) => total.max(u64::from(*off).saturating_add(size)),
                        None => total.saturating_add(size),
                    };
                }
                total
            }
            Op::TypePointer => 8,
            _ => return Err(bad_type()),
        })
    }

    /// Storage class and pointee type of a pointer type.
    fn pointer(&self, ptr_type: u32) -> Result<(StorageClass, u32), KernelRejection> {
        let t = self.defs.get(&ptr_type).ok_or_else(bad_type)?;
        if t.class.opcode != Op::TypePointer {
            return Err(bad_type());
        }
        match (t.operands.first(), id(t.operands.get(1))) {
            (Some(Operand::StorageClass(sc)), Some(pointee)) => Ok((*sc, pointee)),
            _ => Err(bad_type()),
        }
    }

    fn check_variables(
        &self,
        spec: &[(u32, u32)],
        bindings: u32,
        rules: &Rules,
    ) -> Result<Vars, KernelRejection> {
        let job_buffers = bindings.count_ones();
        let mut shared = 0u64;
        let mut private = 0u64;
        let mut push = 0u64;
        let mut seen = 0u32;
        for inst in &self.module.types_global_values {
            if inst.class.opcode != Op::Variable {
                continue;
            }
            let var = inst.result_id.ok_or_else(bad_type)?;
            let (class, pointee) = self.pointer(inst.result_type.ok_or_else(bad_type)?)?;
            let binding = match self.decoration(var, Decoration::Binding) {
                Some(Some(b)) => Some(b),
                _ => None,
            };
            match class {
                StorageClass::Input => {
                    if self.decoration(var, Decoration::BuiltIn).is_none() {
                        return Err(KernelRejection::ForbiddenStorageClass(class as u32));
                    }
                }
                StorageClass::Workgroup => {
                    shared = shared.saturating_add(self.type_size(pointee, spec, 0)?)
                }
                StorageClass::Private => {
                    private = private.saturating_add(self.type_size(pointee, spec, 0)?)
                }
                StorageClass::PushConstant => {
                    push = push.max(self.type_size(pointee, spec, 0)?);
                }
                StorageClass::StorageBuffer | StorageClass::Uniform => {
                    let is_storage = class == StorageClass::StorageBuffer
                        || self.decoration(pointee, Decoration::BufferBlock).is_some();
                    let b = binding
                        .ok_or(KernelRejection::ForbiddenDescriptorType { binding: u32::MAX })?;
                    if !is_storage {
                        return Err(KernelRejection::ForbiddenDescriptorType { binding: b });
                    }
                    let set = match self.decoration(var, Decoration::DescriptorSet) {
                        Some(Some(s)) => s,
                        _ => 0,
                    };
                    if set != 0 || b >= 32 || bindings & (1 << b) == 0 {
                        return Err(KernelRejection::BindingMismatch {
                            set,
                            binding: b,
                            job_buffers,
                        });
                    }
                    seen |= 1 << b;
                }
                StorageClass::UniformConstant => {
                    return Err(KernelRejection::ForbiddenDescriptorType {
                        binding: binding.unwrap_or(u32::MAX),
                    })
                }
                other => return Err(KernelRejection::ForbiddenStorageClass(other as u32)),
            }
        }
        let missing = bindings & !seen;
        if missing != 0 {
            return Err(KernelRejection::BindingMismatch {
                set: 0,
                binding: missing.trailing_zeros(),
                job_buffers,
            });
        }
        for f in &self.module.functions {
            for block in &f.blocks {
                for inst in &block.instructions {
                    if inst.class.opcode == Op::Variable {
                        let (_, pointee) = self.pointer(inst.result_type.ok_or_else(bad_type)?)?;
                        private = private.saturating_add(self.type_size(pointee, spec, 0)?);
                    }
                }
            }
        }
        if shared > rules.max_shared_bytes {
            return Err(KernelRejection::SharedMemoryTooLarge {
                bytes: shared,
                max: rules.max_shared_bytes,
            });
        }
        if private > rules.max_private_bytes {
            return Err(KernelRejection::PrivateMemoryTooLarge {
                bytes: private,
                max: rules.max_private_bytes,
            });
        }
        let push = u32::try_from(push.div_ceil(4) * 4).unwrap_or(u32::MAX);
        Ok(Vars {
            push_constant_bytes: push,
        })
    }
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
