//! Policy: what a compute kernel may use, each rule an allow-list.
//!
//! [`module_level`] runs on the parsed module before the table of facts is
//! built (capabilities declared, extensions, instruction sets, memory
//! model, the entry point, execution modes, and every instruction's opcode,
//! storage class, decoration and built-in). [`with_facts`] runs on the
//! table: what each used type and instruction requires (declared *and*
//! allowed), pointers, resources and bindings, the entry point's interface,
//! structure the driver relies on, and the size limits.

use super::super::error::KernelRejection;
use super::facts::{id, lit, operand_ids, Facts, Id, Kind, Origin, Type, Value};
use super::Rules;
use rspirv::dr::{Instruction, Module, Operand};
use rspirv::grammar::GLSL_STD_450_INSTRUCTION_TABLE;
use rspirv::spirv::{
    AddressingModel, BuiltIn, Capability, Decoration, ExecutionMode, ExecutionModel,
    FunctionControl, GroupOperation, LoopControl, MemoryAccess, MemoryModel, Op, Scope,
    SelectionControl, StorageClass,
};
use std::collections::{HashMap, HashSet};

/// SPIR-V extensions a kernel may declare.
pub(crate) const ALLOWED_EXTENSIONS: &[&str] = &[
    "SPV_KHR_storage_buffer_storage_class",
    "SPV_KHR_16bit_storage",
    "SPV_KHR_8bit_storage",
    "SPV_KHR_variable_pointers",
    "SPV_KHR_no_integer_wrap_decoration",
];

/// Storage classes a pointer or variable may have.
const ALLOWED_CLASSES: &[StorageClass] = &[
    StorageClass::Input,
    StorageClass::Workgroup,
    StorageClass::Private,
    StorageClass::Function,
    StorageClass::PushConstant,
    StorageClass::StorageBuffer,
    StorageClass::Uniform,
];

/// Built-in variables of compute shaders.
const ALLOWED_BUILTINS: &[BuiltIn] = &[
    BuiltIn::NumWorkgroups,
    BuiltIn::WorkgroupSize,
    BuiltIn::WorkgroupId,
    BuiltIn::LocalInvocationId,
    BuiltIn::GlobalInvocationId,
    BuiltIn::LocalInvocationIndex,
    BuiltIn::SubgroupSize,
    BuiltIn::SubgroupLocalInvocationId,
    BuiltIn::NumSubgroups,
    BuiltIn::SubgroupId,
    BuiltIn::SubgroupEqMask,
    BuiltIn::SubgroupGeMask,
    BuiltIn::SubgroupGtMask,
    BuiltIn::SubgroupLeMask,
    BuiltIn::SubgroupLtMask,
];

/// Decorations a kernel may use. (`Uniform`, `NoSignedWrap` and
/// `NoUnsignedWrap` are promises the rewrite removes.)
const ALLOWED_DECORATIONS: &[Decoration] = &[
    Decoration::RelaxedPrecision,
    Decoration::SpecId,
    Decoration::Block,
    Decoration::BufferBlock,
    Decoration::RowMajor,
    Decoration::ColMajor,
    Decoration::ArrayStride,
    Decoration::MatrixStride,
    Decoration::GLSLShared,
    Decoration::GLSLPacked,
    Decoration::BuiltIn,
    Decoration::Restrict,
    Decoration::Aliased,
    Decoration::Volatile,
    Decoration::Coherent,
    Decoration::NonWritable,
    Decoration::NonReadable,
    Decoration::Uniform,
    Decoration::Binding,
    Decoration::DescriptorSet,
    Decoration::Offset,
    Decoration::NoContraction,
    Decoration::NoSignedWrap,
    Decoration::NoUnsignedWrap,
    Decoration::NonUniform,
];

/// Opcodes that make pointers out of other values or other values out of
/// pointers: refused as pointer casts.
const POINTER_CASTS: &[Op] = &[
    Op::ConvertUToPtr,
    Op::ConvertPtrToU,
    Op::PtrCastToGeneric,
    Op::GenericCastToPtr,
    Op::GenericCastToPtrExplicit,
    Op::PtrEqual,
    Op::PtrNotEqual,
    Op::PtrDiff,
    Op::PtrAccessChain,
    Op::InBoundsPtrAccessChain,
    Op::TypeForwardPointer,
];

/// The operations an `OpSpecConstantOp` may have in a shader (SPIR-V
/// 2.3, "Specialization"; the others need the `Kernel` capability).
const SHADER_SPEC_CONSTANT_OPS: &[Op] = &[
    Op::SConvert,
    Op::UConvert,
    Op::SNegate,
    Op::Not,
    Op::IAdd,
    Op::ISub,
    Op::IMul,
    Op::UDiv,
    Op::SDiv,
    Op::UMod,
    Op::SRem,
    Op::SMod,
    Op::ShiftRightLogical,
    Op::ShiftRightArithmetic,
    Op::ShiftLeftLogical,
    Op::BitwiseOr,
    Op::BitwiseXor,
    Op::BitwiseAnd,
    Op::VectorShuffle,
    Op::CompositeExtract,
    Op::CompositeInsert,
    Op::LogicalOr,
    Op::LogicalAnd,
    Op::LogicalNot,
    Op::LogicalEqual,
    Op::LogicalNotEqual,
    Op::Select,
    Op::IEqual,
    Op::INotEqual,
    Op::ULessThan,
    Op::SLessThan,
    Op::UGreaterThan,
    Op::SGreaterThan,
    Op::ULessThanEqual,
    Op::SLessThanEqual,
    Op::UGreaterThanEqual,
    Op::SGreaterThanEqual,
];

/// Whether a compute kernel may use `op` at all (what it requires is
/// checked with the facts).
fn opcode_allowed(op: Op) -> bool {
    use Op::*;
    matches!(
        op,
        Nop | Undef
            | SourceContinued
            | Source
            | SourceExtension
            | Name
            | MemberName
            | String
            | Line
            | NoLine
            | ModuleProcessed
            | Extension
            | ExtInstImport
            | ExtInst
            | MemoryModel
            | EntryPoint
            | ExecutionMode
            | ExecutionModeId
            | Capability
            | TypeVoid
            | TypeBool
            | TypeInt
            | TypeFloat
            | TypeVector
            | TypeMatrix
            | TypeArray
            | TypeRuntimeArray
            | TypeStruct
            | TypePointer
            | TypeFunction
            | ConstantTrue
            | ConstantFalse
            | Constant
            | ConstantComposite
            | ConstantNull
            | SpecConstantTrue
            | SpecConstantFalse
            | SpecConstant
            | SpecConstantComposite
            | SpecConstantOp
            | Function
            | FunctionParameter
            | FunctionEnd
            | FunctionCall
            | Variable
            | Load
            | Store
            | CopyMemory
            | AccessChain
            | InBoundsAccessChain
            | ArrayLength
            | Decorate
            | MemberDecorate
            | VectorExtractDynamic
            | VectorInsertDynamic
            | VectorShuffle
            | CompositeConstruct
            | CompositeExtract
            | CompositeInsert
            | CopyObject
            | Transpose
            | CopyLogical
            | ConvertFToU
            | ConvertFToS
            | ConvertSToF
            | ConvertUToF
            | UConvert
            | SConvert
            | FConvert
            | QuantizeToF16
            | Bitcast
            | SNegate
            | FNegate
            | IAdd
            | FAdd
            | ISub
            | FSub
            | IMul
            | FMul
            | UDiv
            | SDiv
            | FDiv
            | UMod
            | SRem
            | SMod
            | FRem
            | FMod
            | VectorTimesScalar
            | MatrixTimesScalar
            | VectorTimesMatrix
            | MatrixTimesVector
            | MatrixTimesMatrix
            | OuterProduct
            | Dot
            | IAddCarry
            | ISubBorrow
            | UMulExtended
            | SMulExtended
            | Any
            | All
            | IsNan
            | IsInf
            | LogicalEqual
            | LogicalNotEqual
            | LogicalOr
            | LogicalAnd
            | LogicalNot
            | Select
            | IEqual
            | INotEqual
            | UGreaterThan
            | SGreaterThan
            | UGreaterThanEqual
            | SGreaterThanEqual
            | ULessThan
            | SLessThan
            | ULessThanEqual
            | SLessThanEqual
            | FOrdEqual
            | FUnordEqual
            | FOrdNotEqual
            | FUnordNotEqual
            | FOrdLessThan
            | FUnordLessThan
            | FOrdGreaterThan
            | FUnordGreaterThan
            | FOrdLessThanEqual
            | FUnordLessThanEqual
            | FOrdGreaterThanEqual
            | FUnordGreaterThanEqual
            | ShiftRightLogical
            | ShiftRightArithmetic
            | ShiftLeftLogical
            | BitwiseOr
            | BitwiseXor
            | BitwiseAnd
            | Not
            | BitFieldInsert
            | BitFieldSExtract
            | BitFieldUExtract
            | BitReverse
            | BitCount
            | ControlBarrier
            | MemoryBarrier
            | AtomicLoad
            | AtomicStore
            | AtomicExchange
            | AtomicCompareExchange
            | AtomicIIncrement
            | AtomicIDecrement
            | AtomicIAdd
            | AtomicISub
            | AtomicSMin
            | AtomicUMin
            | AtomicSMax
            | AtomicUMax
            | AtomicAnd
            | AtomicOr
            | AtomicXor
            | Phi
            | LoopMerge
            | SelectionMerge
            | Label
            | Branch
            | BranchConditional
            | Switch
            | Return
            | ReturnValue
            | Unreachable
    ) || group_capability(op).is_some()
}

/// The capability a subgroup (`GroupNonUniform*`) instruction needs; the
/// arithmetic family's depends on its group operation.
fn group_capability(op: Op) -> Option<Capability> {
    use rspirv::spirv::Capability as Cap;
    use Op::*;
    Some(match op {
        GroupNonUniformElect => Cap::GroupNonUniform,
        GroupNonUniformAll | GroupNonUniformAny | GroupNonUniformAllEqual => {
            Cap::GroupNonUniformVote
        }
        GroupNonUniformBroadcast
        | GroupNonUniformBroadcastFirst
        | GroupNonUniformBallot
        | GroupNonUniformInverseBallot
        | GroupNonUniformBallotBitExtract
        | GroupNonUniformBallotBitCount
        | GroupNonUniformBallotFindLSB
        | GroupNonUniformBallotFindMSB => Cap::GroupNonUniformBallot,
        GroupNonUniformShuffle | GroupNonUniformShuffleXor => Cap::GroupNonUniformShuffle,
        GroupNonUniformShuffleUp | GroupNonUniformShuffleDown => {
            Cap::GroupNonUniformShuffleRelative
        }
        GroupNonUniformIAdd
        | GroupNonUniformFAdd
        | GroupNonUniformIMul
        | GroupNonUniformFMul
        | GroupNonUniformSMin
        | GroupNonUniformUMin
        | GroupNonUniformFMin
        | GroupNonUniformSMax
        | GroupNonUniformUMax
        | GroupNonUniformFMax
        | GroupNonUniformBitwiseAnd
        | GroupNonUniformBitwiseOr
        | GroupNonUniformBitwiseXor
        | GroupNonUniformLogicalAnd
        | GroupNonUniformLogicalOr
        | GroupNonUniformLogicalXor => Cap::GroupNonUniformArithmetic,
        GroupNonUniformQuadBroadcast | GroupNonUniformQuadSwap => Cap::GroupNonUniformQuad,
        _ => return None,
    })
}

/// Capabilities that declaring `cap` declares too (SPIR-V's "implicitly
/// declares").
fn implied(cap: Capability) -> &'static [Capability] {
    use Capability::*;
    match cap {
        Shader => &[Matrix],
        GroupNonUniformVote
        | GroupNonUniformArithmetic
        | GroupNonUniformBallot
        | GroupNonUniformShuffle
        | GroupNonUniformShuffleRelative
        | GroupNonUniformClustered
        | GroupNonUniformQuad => &[GroupNonUniform],
        Int64Atomics => &[Int64],
        VariablePointers => &[VariablePointersStorageBuffer],
        UniformAndStorageBuffer16BitAccess => &[StorageBuffer16BitAccess],
        UniformAndStorageBuffer8BitAccess => &[StorageBuffer8BitAccess],
        _ => &[],
    }
}

/// The capabilities a module declares, with those they imply.
pub(crate) fn declared_capabilities(module: &Module) -> Result<HashSet<u32>, KernelRejection> {
    let mut out = HashSet::new();
    let mut todo = Vec::new();
    for inst in &module.capabilities {
        match inst.operands.first() {
            Some(Operand::Capability(c)) => todo.push(*c),
            _ => return Err(KernelRejection::Unparsable),
        }
    }
    while let Some(c) = todo.pop() {
        if out.insert(c as u32) {
            todo.extend_from_slice(implied(c));
        }
    }
    Ok(out)
}

fn check_capability_allowed(c: u32, rules: &Rules) -> Result<(), KernelRejection> {
    if rules.allowed.contains(&c) {
        Ok(())
    } else if rules.known_unsupported.contains(&c) {
        Err(KernelRejection::UnsupportedCapability(c))
    } else {
        Err(KernelRejection::ForbiddenCapability(c))
    }
}

/// Checks that need only the parsed module.
pub(crate) fn module_level(
    module: &Module,
    entry_point: &str,
    declared: &HashSet<u32>,
    rules: &Rules,
) -> Result<(), KernelRejection> {
    let mut caps: Vec<u32> = declared.iter().copied().collect();
    caps.sort_unstable();
    for c in caps {
        check_capability_allowed(c, rules)?;
    }
    // A Vulkan module is a shader: the memory model and everything in it
    // need the capability.
    if !declared.contains(&(Capability::Shader as u32)) {
        return Err(KernelRejection::UndeclaredCapability(
            Capability::Shader as u32,
        ));
    }
    for inst in &module.extensions {
        let name = match inst.operands.first() {
            Some(Operand::LiteralString(s)) => s.clone(),
            _ => String::new(),
        };
        if !ALLOWED_EXTENSIONS.contains(&name.as_str()) {
            return Err(KernelRejection::ForbiddenExtension(name));
        }
    }
    for inst in &module.ext_inst_imports {
        let name = match inst.operands.first() {
            Some(Operand::LiteralString(s)) => s.clone(),
            _ => String::new(),
        };
        if name != "GLSL.std.450" {
            return Err(KernelRejection::ForbiddenExtInstSet(name));
        }
    }
    let mm = module
        .memory_model
        .as_ref()
        .ok_or(KernelRejection::MissingMemoryModel)?;
    match (mm.operands.first(), mm.operands.get(1)) {
        (Some(Operand::AddressingModel(a)), Some(Operand::MemoryModel(m))) => {
            if *a != AddressingModel::Logical || *m != MemoryModel::GLSL450 {
                return Err(KernelRejection::ForbiddenMemoryModel {
                    addressing: *a as u32,
                    memory: *m as u32,
                });
            }
        }
        _ => return Err(KernelRejection::MissingMemoryModel),
    }
    let entry_function = check_entry_point(module, entry_point)?;
    for inst in &module.execution_modes {
        let op = inst.class.opcode;
        if id(inst.operands.first()) != Some(entry_function) {
            return Err(KernelRejection::BadOperand { opcode: op as u32 });
        }
        match inst.operands.get(1) {
            Some(Operand::ExecutionMode(ExecutionMode::LocalSize)) if op == Op::ExecutionMode => {}
            Some(Operand::ExecutionMode(ExecutionMode::LocalSizeId))
                if op == Op::ExecutionModeId => {}
            Some(Operand::ExecutionMode(m)) => {
                return Err(KernelRejection::ForbiddenExecutionMode(*m as u32))
            }
            _ => return Err(KernelRejection::BadOperand { opcode: op as u32 }),
        }
    }
    for inst in module.all_inst_iter() {
        check_instruction(inst)?;
    }
    Ok(())
}

/// Exactly one entry point, a compute shader, with the requested name;
/// returns its function id.
fn check_entry_point(module: &Module, name: &str) -> Result<Id, KernelRejection> {
    let eps = &module.entry_points;
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
        _ => return Err(KernelRejection::Unparsable),
    }
    match ep.operands.get(2) {
        Some(Operand::LiteralString(s)) if s == name => {}
        _ => return Err(KernelRejection::NoEntryPoint),
    }
    id(ep.operands.get(1)).ok_or(KernelRejection::BadOperand {
        opcode: Op::EntryPoint as u32,
    })
}

/// One instruction on its own: opcode, storage class, decoration, built-in.
fn check_instruction(inst: &Instruction) -> Result<(), KernelRejection> {
    let op = inst.class.opcode;
    if POINTER_CASTS.contains(&op) {
        return Err(KernelRejection::ForbiddenPointerOp(op as u32));
    }
    if !opcode_allowed(op) {
        return Err(KernelRejection::ForbiddenOpcode(op as u32));
    }
    match op {
        Op::TypePointer | Op::Variable => match inst.operands.first() {
            Some(Operand::StorageClass(c)) if ALLOWED_CLASSES.contains(c) => {}
            Some(Operand::StorageClass(c)) => {
                return Err(KernelRejection::ForbiddenStorageClass(*c as u32))
            }
            _ => return Err(KernelRejection::BadOperand { opcode: op as u32 }),
        },
        Op::Decorate | Op::MemberDecorate => {
            let at = if op == Op::Decorate { 1 } else { 2 };
            match inst.operands.get(at) {
                Some(Operand::Decoration(d)) if ALLOWED_DECORATIONS.contains(d) => {
                    if *d == Decoration::BuiltIn {
                        if op == Op::MemberDecorate {
                            let b = match inst.operands.get(3) {
                                Some(Operand::BuiltIn(b)) => *b as u32,
                                _ => u32::MAX,
                            };
                            return Err(KernelRejection::ForbiddenBuiltIn(b));
                        }
                        match inst.operands.get(2) {
                            Some(Operand::BuiltIn(b)) if ALLOWED_BUILTINS.contains(b) => {}
                            Some(Operand::BuiltIn(b)) => {
                                return Err(KernelRejection::ForbiddenBuiltIn(*b as u32))
                            }
                            _ => return Err(KernelRejection::BadOperand { opcode: op as u32 }),
                        }
                    }
                }
                Some(Operand::Decoration(d)) => {
                    return Err(KernelRejection::ForbiddenDecoration(*d as u32))
                }
                _ => return Err(KernelRejection::BadOperand { opcode: op as u32 }),
            }
        }
        Op::ExtInst => {
            let n = match inst.operands.get(1) {
                Some(Operand::LiteralExtInstInteger(n)) => *n,
                _ => return Err(KernelRejection::BadOperand { opcode: op as u32 }),
            };
            // GLSL.std.450 1..=81, without IMix (47, removed from the
            // instruction set) and the fragment-only interpolation
            // functions (76..=78).
            if !(1..=81).contains(&n) || n == 47 || (76..=78).contains(&n) {
                return Err(KernelRejection::ForbiddenExtInst(n));
            }
            // Exactly the operands the instruction has: a driver reads
            // them by position.
            let arity = GLSL_STD_450_INSTRUCTION_TABLE
                .lookup_opcode(n)
                .map(|g| g.operands.len());
            if arity != Some(inst.operands.len() - 2) {
                return Err(KernelRejection::BadOperand { opcode: op as u32 });
            }
        }
        Op::SpecConstantOp => match inst.operands.first() {
            Some(Operand::LiteralSpecConstantOpInteger(o))
                if SHADER_SPEC_CONSTANT_OPS.contains(o) => {}
            _ => return Err(KernelRejection::BadOperand { opcode: op as u32 }),
        },
        Op::GroupNonUniformIAdd
        | Op::GroupNonUniformFAdd
        | Op::GroupNonUniformIMul
        | Op::GroupNonUniformFMul
        | Op::GroupNonUniformSMin
        | Op::GroupNonUniformUMin
        | Op::GroupNonUniformFMin
        | Op::GroupNonUniformSMax
        | Op::GroupNonUniformUMax
        | Op::GroupNonUniformFMax
        | Op::GroupNonUniformBitwiseAnd
        | Op::GroupNonUniformBitwiseOr
        | Op::GroupNonUniformBitwiseXor
        | Op::GroupNonUniformLogicalAnd
        | Op::GroupNonUniformLogicalOr
        | Op::GroupNonUniformLogicalXor => match inst.operands.get(1) {
            Some(Operand::GroupOperation(
                GroupOperation::Reduce
                | GroupOperation::InclusiveScan
                | GroupOperation::ExclusiveScan
                | GroupOperation::ClusteredReduce,
            )) => {}
            Some(Operand::GroupOperation(_)) => {
                return Err(KernelRejection::ForbiddenCapability(
                    Capability::GroupNonUniformPartitionedNV as u32,
                ))
            }
            _ => return Err(KernelRejection::BadOperand { opcode: op as u32 }),
        },
        _ => {}
    }
    // Memory operands: only volatile, alignment and non-temporal hints.
    if matches!(op, Op::Load | Op::Store | Op::CopyMemory) {
        let allowed = MemoryAccess::VOLATILE | MemoryAccess::ALIGNED | MemoryAccess::NONTEMPORAL;
        for o in &inst.operands {
            if let Operand::MemoryAccess(m) = o {
                if !allowed.contains(*m) {
                    return Err(KernelRejection::BadOperand { opcode: op as u32 });
                }
            }
        }
    }
    // Function, selection and loop controls are SPIR-V's own hints (the
    // others need vendor capabilities), and loop controls do not
    // contradict each other. The rewrite drops them all, but the module
    // must be valid as sent.
    let known = match (op, inst.operands.first(), inst.operands.get(1)) {
        (Op::Function, Some(Operand::FunctionControl(c)), _) => {
            let standard = FunctionControl::INLINE
                | FunctionControl::DONT_INLINE
                | FunctionControl::PURE
                | FunctionControl::CONST;
            standard.contains(*c)
        }
        (Op::SelectionMerge, _, Some(Operand::SelectionControl(c))) => {
            (SelectionControl::FLATTEN | SelectionControl::DONT_FLATTEN).contains(*c)
        }
        _ => true,
    };
    if !known {
        return Err(KernelRejection::BadOperand { opcode: op as u32 });
    }
    if let (Op::LoopMerge, Some(Operand::LoopControl(c))) = (op, inst.operands.get(2)) {
        let standard = LoopControl::UNROLL
            | LoopControl::DONT_UNROLL
            | LoopControl::DEPENDENCY_INFINITE
            | LoopControl::DEPENDENCY_LENGTH
            | LoopControl::MIN_ITERATIONS
            | LoopControl::MAX_ITERATIONS
            | LoopControl::ITERATION_MULTIPLE
            | LoopControl::PEEL_COUNT
            | LoopControl::PARTIAL_COUNT;
        let both = |a: LoopControl, b: LoopControl| c.contains(a) && c.contains(b);
        if !standard.contains(*c)
            || both(LoopControl::UNROLL, LoopControl::DONT_UNROLL)
            || both(LoopControl::PEEL_COUNT, LoopControl::DONT_UNROLL)
            || both(LoopControl::PARTIAL_COUNT, LoopControl::DONT_UNROLL)
            || both(
                LoopControl::DEPENDENCY_INFINITE,
                LoopControl::DEPENDENCY_LENGTH,
            )
        {
            return Err(KernelRejection::BadOperand { opcode: op as u32 });
        }
    }
    Ok(())
}

/// What a kernel's policy checks learnt that the dispatcher needs.
pub(crate) struct Learnt {
    /// Bytes of the push-constant block the entry point uses (0 if none),
    /// rounded up to 4.
    pub push_constant_bytes: u32,
    /// The entry point reads `NumWorkgroups`.
    pub reads_num_workgroups: bool,
}

/// Checks on the table of facts.
pub(crate) fn with_facts(
    module: &Module,
    version: u32,
    facts: &Facts,
    declared: &HashSet<u32>,
    bindings: u32,
    rules: &Rules,
) -> Result<Learnt, KernelRejection> {
    check_types(facts, declared, rules)?;
    check_builtin_capabilities(facts, declared, rules)?;
    check_decorations(module, facts)?;
    check_debug_info(module, facts)?;
    check_globals(module, facts)?;
    let push = check_resources(facts, bindings)?;
    check_interface(version, facts)?;
    check_functions(module, version, facts, declared, rules)?;
    check_sizes(module, facts, rules)?;
    check_value_sizes(module, facts)?;
    let reads_num_workgroups = facts
        .used_globals
        .iter()
        .any(|g| facts.decorations.get(g).and_then(|d| d.builtin) == Some(BuiltIn::NumWorkgroups));
    Ok(Learnt {
        push_constant_bytes: u32::try_from(push.div_ceil(4).saturating_mul(4)).unwrap_or(u32::MAX),
        reads_num_workgroups,
    })
}

/// Requires one of `alternatives` to be declared. Refuses with the first
/// alternative the device allows (undeclared), or with the first one
/// (forbidden or unsupported) when the device allows none.
fn require(
    alternatives: &[Capability],
    declared: &HashSet<u32>,
    rules: &Rules,
) -> Result<(), KernelRejection> {
    if alternatives.iter().any(|c| declared.contains(&(*c as u32))) {
        return Ok(());
    }
    match alternatives
        .iter()
        .find(|c| rules.allowed.contains(&(**c as u32)))
    {
        Some(c) => Err(KernelRejection::UndeclaredCapability(*c as u32)),
        None => check_capability_allowed(alternatives.first().map_or(0, |c| *c as u32), rules),
    }
}

fn check_types(
    facts: &Facts,
    declared: &HashSet<u32>,
    rules: &Rules,
) -> Result<(), KernelRejection> {
    use Capability::*;
    let mut ids: Vec<&Id> = facts.types.keys().collect();
    ids.sort_unstable();
    // A scalar, vector, matrix or function type is declared once: types
    // are compared by id (here, by spirv-val and by drivers), and the
    // rewrite reuses the module's own.
    let mut declared_once: HashSet<&Type> = HashSet::new();
    for t in &ids {
        let ty = &facts.types[*t];
        let aggregate = matches!(
            ty,
            Type::Struct { .. }
                | Type::Array { .. }
                | Type::RuntimeArray { .. }
                | Type::Pointer { .. }
        );
        if !aggregate && !declared_once.insert(ty) {
            return Err(KernelRejection::BadType(**t));
        }
    }
    for t in ids {
        match &facts.types[t] {
            Type::Int { width: 8, .. } => require(
                &[
                    Int8,
                    StorageBuffer8BitAccess,
                    UniformAndStorageBuffer8BitAccess,
                    StoragePushConstant8,
                ],
                declared,
                rules,
            )?,
            Type::Int { width: 16, .. } => require(
                &[
                    Int16,
                    StorageBuffer16BitAccess,
                    UniformAndStorageBuffer16BitAccess,
                    StoragePushConstant16,
                ],
                declared,
                rules,
            )?,
            Type::Int { width: 64, .. } => require(&[Int64], declared, rules)?,
            Type::Float { width: 16 } => require(
                &[
                    Float16,
                    StorageBuffer16BitAccess,
                    UniformAndStorageBuffer16BitAccess,
                    StoragePushConstant16,
                ],
                declared,
                rules,
            )?,
            Type::Float { width: 64 } => require(&[Float64], declared, rules)?,
            // Pointers live in variables and values only: never stored in
            // memory, never pointing at pointers.
            Type::Pointer { pointee, .. }
                if facts.contains(*pointee, &|t| matches!(t, Type::Pointer { .. })) =>
            {
                return Err(KernelRejection::ForbiddenType(*t));
            }
            Type::Vector { .. }
            | Type::Matrix { .. }
            | Type::Array { .. }
            | Type::RuntimeArray { .. }
            | Type::Struct { .. }
                if facts.contains(*t, &|t| matches!(t, Type::Pointer { .. })) =>
            {
                return Err(KernelRejection::ForbiddenType(*t));
            }
            _ => {}
        }
    }
    Ok(())
}

/// The subgroup built-ins need the subgroup capabilities (declared and
/// allowed).
fn check_builtin_capabilities(
    facts: &Facts,
    declared: &HashSet<u32>,
    rules: &Rules,
) -> Result<(), KernelRejection> {
    let mut builtins: Vec<BuiltIn> = facts
        .decorations
        .values()
        .filter_map(|d| d.builtin)
        .collect();
    builtins.sort_unstable_by_key(|b| *b as u32);
    for b in builtins {
        let needs = match b {
            BuiltIn::SubgroupSize
            | BuiltIn::SubgroupLocalInvocationId
            | BuiltIn::NumSubgroups
            | BuiltIn::SubgroupId => Capability::GroupNonUniform,
            BuiltIn::SubgroupEqMask
            | BuiltIn::SubgroupGeMask
            | BuiltIn::SubgroupGtMask
            | BuiltIn::SubgroupLeMask
            | BuiltIn::SubgroupLtMask => Capability::GroupNonUniformBallot,
            _ => continue,
        };
        require(&[needs], declared, rules)?;
    }
    Ok(())
}

/// Decorations sit where they mean something: a member decoration on an
/// existing member of a struct type (and never one that describes a whole
/// object, such as `SpecId`, `Binding` or `Uniform`), the matrix layout
/// decorations on members only, and `SpecId`, `Block`, `BufferBlock`,
/// `ArrayStride`, `Binding` and `DescriptorSet` on the kind of object they
/// describe (bindings on buffer variables). (The same lists as spirv-val's.)
fn check_decorations(module: &Module, facts: &Facts) -> Result<(), KernelRejection> {
    let opcodes: HashMap<Id, Op> = module
        .types_global_values
        .iter()
        .filter_map(|i| Some((i.result_id?, i.class.opcode)))
        .collect();
    for inst in &module.annotations {
        let op = inst.class.opcode;
        let bad = || KernelRejection::BadOperand { opcode: op as u32 };
        let target = id(inst.operands.first()).ok_or_else(bad)?;
        let ok = match (op, inst.operands.get(1), inst.operands.get(2)) {
            (
                Op::MemberDecorate,
                Some(Operand::LiteralBit32(member)),
                Some(Operand::Decoration(d)),
            ) => {
                let exists = match facts.types.get(&target) {
                    Some(Type::Struct { members }) => (*member as usize) < members.len(),
                    _ => false,
                };
                exists
                    && !matches!(
                        d,
                        Decoration::SpecId
                            | Decoration::Block
                            | Decoration::BufferBlock
                            | Decoration::ArrayStride
                            | Decoration::GLSLShared
                            | Decoration::GLSLPacked
                            | Decoration::Aliased
                            | Decoration::Uniform
                            | Decoration::Binding
                            | Decoration::DescriptorSet
                            | Decoration::NoContraction
                            | Decoration::NoSignedWrap
                            | Decoration::NoUnsignedWrap
                            | Decoration::NonUniform
                    )
            }
            (Op::Decorate, Some(Operand::Decoration(d)), _) => match d {
                // Only members have a layout within a matrix.
                Decoration::RowMajor | Decoration::ColMajor | Decoration::MatrixStride => false,
                Decoration::SpecId => matches!(
                    opcodes.get(&target),
                    Some(Op::SpecConstant | Op::SpecConstantTrue | Op::SpecConstantFalse)
                ),
                Decoration::Block | Decoration::BufferBlock => {
                    matches!(facts.types.get(&target), Some(Type::Struct { .. }))
                }
                Decoration::ArrayStride => matches!(
                    facts.types.get(&target),
                    Some(Type::Array { .. } | Type::RuntimeArray { .. })
                ),
                // Resources only.
                Decoration::Binding | Decoration::DescriptorSet => {
                    facts.globals.get(&target).is_some_and(|g| {
                        matches!(g.class, StorageClass::StorageBuffer | StorageClass::Uniform)
                    })
                }
                _ => true,
            },
            _ => false,
        };
        if !ok {
            return Err(bad());
        }
    }
    // A block never holds another block.
    let mut blocks: Vec<Id> = facts
        .decorations
        .iter()
        .filter(|(_, d)| d.block || d.buffer_block)
        .map(|(t, _)| *t)
        .collect();
    blocks.sort_unstable();
    for b in blocks {
        if let Some(Type::Struct { members }) = facts.types.get(&b) {
            if members.iter().any(|m| holds_block(facts, *m)) {
                return Err(KernelRejection::BadType(b));
            }
        }
    }
    Ok(())
}

/// Whether a type is or contains a struct decorated `Block` or
/// `BufferBlock` (types are bounded in depth, so is the recursion).
fn holds_block(facts: &Facts, t: Id) -> bool {
    if facts
        .decorations
        .get(&t)
        .is_some_and(|d| d.block || d.buffer_block)
    {
        return true;
    }
    match facts.types.get(&t) {
        Some(Type::Struct { members }) => members.iter().any(|m| holds_block(facts, *m)),
        Some(Type::Array { element, .. } | Type::RuntimeArray { element }) => {
            holds_block(facts, *element)
        }
        _ => false,
    }
}

/// The source languages of `OpSource` the Khronos validator the provider
/// runs knows (SPIR-V's Unknown 0 to SYCL 7): a newer one (HERO_C, WGSL,
/// Slang...) it refuses, so the first gate refuses it too.
const KNOWN_SOURCE_LANGUAGES: u32 = 7;

/// Debug information names what exists: line information and sources a
/// file by an `OpString`, member names a member of a struct type; a source
/// language is one the validator knows.
fn check_debug_info(module: &Module, facts: &Facts) -> Result<(), KernelRejection> {
    for inst in module.all_inst_iter() {
        let op = inst.class.opcode;
        let target = id(inst.operands.first()).unwrap_or(0);
        let ok = match op {
            Op::Line => facts.kinds.get(&target) == Some(&Kind::String),
            Op::Source => {
                matches!(inst.operands.first(),
                    Some(Operand::SourceLanguage(l)) if (*l as u32) <= KNOWN_SOURCE_LANGUAGES)
                    && id(inst.operands.get(2))
                        .is_none_or(|f| facts.kinds.get(&f) == Some(&Kind::String))
            }
            Op::MemberName => match (facts.types.get(&target), lit(inst.operands.get(1))) {
                (Some(Type::Struct { members }), Some(m)) => (m as usize) < members.len(),
                _ => false,
            },
            _ => true,
        };
        if !ok {
            return Err(KernelRejection::BadOperand { opcode: op as u32 });
        }
    }
    Ok(())
}

fn check_globals(module: &Module, facts: &Facts) -> Result<(), KernelRejection> {
    let runtime = |t: &Type| matches!(t, Type::RuntimeArray { .. });
    for inst in &module.types_global_values {
        let Some(r) = inst.result_id else { continue };
        // No null pointers and no undefined pointers.
        if matches!(inst.class.opcode, Op::Undef | Op::ConstantNull)
            && inst
                .result_type
                .is_some_and(|t| matches!(facts.types.get(&t), Some(Type::Pointer { .. })))
        {
            return Err(KernelRejection::ForbiddenPointerOp(
                inst.class.opcode as u32,
            ));
        }
        let Some(g) = facts.globals.get(&r) else {
            continue;
        };
        let d = facts.decorations.get(&r);
        let builtin = d.and_then(|d| d.builtin);
        match g.class {
            StorageClass::Input
                if builtin.is_none() => {
                    return Err(KernelRejection::ForbiddenStorageClass(
                        StorageClass::Input as u32,
                    ));
                }
            StorageClass::Workgroup
                // Workgroup memory is zeroed by the rewrite, never by the
                // kernel's own initializer (which needs a device feature).
                if g.init.is_some() => {
                    return Err(KernelRejection::BadOperand {
                        opcode: Op::Variable as u32,
                    });
                }
            _ => {}
        }
        if builtin.is_some() && g.class != StorageClass::Input {
            return Err(KernelRejection::BadOperand {
                opcode: Op::Decorate as u32,
            });
        }
        // A built-in input has the type the driver writes.
        if let Some(b) = builtin {
            let uint32 = |t: &Id| matches!(facts.types.get(t), Some(Type::Int { width: 32, .. }));
            let uvec = |n: u32| {
                matches!(facts.types.get(&g.pointee),
                    Some(Type::Vector { component, count }) if *count == n && uint32(component))
            };
            let ok = match b {
                BuiltIn::NumWorkgroups
                | BuiltIn::WorkgroupSize
                | BuiltIn::WorkgroupId
                | BuiltIn::LocalInvocationId
                | BuiltIn::GlobalInvocationId => uvec(3),
                BuiltIn::SubgroupEqMask
                | BuiltIn::SubgroupGeMask
                | BuiltIn::SubgroupGtMask
                | BuiltIn::SubgroupLeMask
                | BuiltIn::SubgroupLtMask => uvec(4),
                _ => uint32(&g.pointee),
            };
            if !ok {
                return Err(KernelRejection::BadType(g.pointee));
            }
        }
        let in_buffer = matches!(g.class, StorageClass::StorageBuffer | StorageClass::Uniform);
        if !in_buffer && facts.contains(g.pointee, &runtime) {
            return Err(KernelRejection::ForbiddenType(g.pointee));
        }
        // A buffer or push-constant block is a struct decorated as one (or
        // an array of them), used or not: Block for storage buffers and
        // push constants, Block or BufferBlock for uniforms.
        if in_buffer || g.class == StorageClass::PushConstant {
            let block = match facts.types.get(&g.pointee) {
                Some(Type::Array { element, .. } | Type::RuntimeArray { element }) => *element,
                _ => g.pointee,
            };
            let d = facts.decorations.get(&block);
            let decorated = match g.class {
                StorageClass::Uniform => d.is_some_and(|d| d.block || d.buffer_block),
                _ => d.is_some_and(|d| d.block),
            };
            if !matches!(facts.types.get(&block), Some(Type::Struct { .. })) || !decorated {
                return Err(KernelRejection::BadType(g.pointee));
            }
            // Booleans have no size in memory shared with the host.
            if facts.contains(g.pointee, &|t| matches!(t, Type::Bool)) {
                return Err(KernelRejection::ForbiddenType(g.pointee));
            }
        }
    }
    // Built-in decorations go on variables or on the WorkgroupSize constant.
    for (target, d) in &facts.decorations {
        if let Some(b) = d.builtin {
            let ok = match facts.kinds.get(target) {
                Some(Kind::Global) => true,
                Some(Kind::Constant) => b == BuiltIn::WorkgroupSize,
                _ => false,
            };
            if !ok {
                return Err(KernelRejection::BadOperand {
                    opcode: Op::Decorate as u32,
                });
            }
        }
    }
    Ok(())
}

/// Resources the entry point uses must be storage buffers the job binds;
/// returns the size of the push-constant block it uses.
fn check_resources(facts: &Facts, bindings: u32) -> Result<u64, KernelRejection> {
    let mut push = 0u64;
    let mut used: Vec<&Id> = facts.used_globals.iter().collect();
    used.sort_unstable();
    for v in used {
        let g = &facts.globals[v];
        let d = facts.decorations.get(v).cloned().unwrap_or_default();
        match g.class {
            StorageClass::StorageBuffer | StorageClass::Uniform => {
                let (Some(set), Some(binding)) = (d.set, d.binding) else {
                    return Err(KernelRejection::MissingBinding { variable: *v });
                };
                let block = facts
                    .decorations
                    .get(&g.pointee)
                    .cloned()
                    .unwrap_or_default();
                let is_struct = matches!(facts.types.get(&g.pointee), Some(Type::Struct { .. }));
                let storage = is_struct
                    && match g.class {
                        StorageClass::StorageBuffer => block.block,
                        _ => block.buffer_block,
                    };
                if !storage {
                    return Err(KernelRejection::ForbiddenDescriptorType { binding });
                }
                if set != 0 || binding >= 32 || bindings & (1 << binding) == 0 {
                    return Err(KernelRejection::UnboundResource { set, binding });
                }
            }
            StorageClass::PushConstant => {
                let block = facts.decorations.get(&g.pointee).is_some_and(|d| d.block);
                if !block || !matches!(facts.types.get(&g.pointee), Some(Type::Struct { .. })) {
                    return Err(KernelRejection::BadType(g.pointee));
                }
                push = push.max(facts.size_of(g.pointee));
            }
            _ => {}
        }
    }
    Ok(push)
}

/// SPIR-V 1.4 and later: every global the entry point uses is in its
/// interface. Before 1.4: every input it uses is.
fn check_interface(version: u32, facts: &Facts) -> Result<(), KernelRejection> {
    let listed: HashSet<&Id> = facts.entry.interface.iter().collect();
    let mut used: Vec<&Id> = facts.used_globals.iter().collect();
    used.sort_unstable();
    for v in used {
        let class = facts.globals[v].class;
        let must = version >= 0x0001_0400 || class == StorageClass::Input;
        if must && !listed.contains(v) {
            return Err(KernelRejection::InterfaceIncomplete { variable: *v });
        }
    }
    Ok(())
}

/// Instructions that may take a pointer value as an operand, and which
/// operands.
fn takes_pointer(op: Op, index: usize) -> bool {
    match op {
        Op::Load | Op::AccessChain | Op::InBoundsAccessChain | Op::ArrayLength | Op::CopyObject => {
            index == 0
        }
        Op::Store => index == 0,
        Op::CopyMemory => index <= 1,
        Op::FunctionCall => index >= 1,
        Op::AtomicLoad
        | Op::AtomicStore
        | Op::AtomicExchange
        | Op::AtomicCompareExchange
        | Op::AtomicIIncrement
        | Op::AtomicIDecrement
        | Op::AtomicIAdd
        | Op::AtomicISub
        | Op::AtomicSMin
        | Op::AtomicUMin
        | Op::AtomicSMax
        | Op::AtomicUMax
        | Op::AtomicAnd
        | Op::AtomicOr
        | Op::AtomicXor => index == 0,
        _ => false,
    }
}

fn check_functions(
    module: &Module,
    version: u32,
    facts: &Facts,
    declared: &HashSet<u32>,
    rules: &Rules,
) -> Result<(), KernelRejection> {
    let vp_declared = declared.contains(&(Capability::VariablePointersStorageBuffer as u32));
    for func in &module.functions {
        let Some(def) = func.def.as_ref() else {
            return Err(KernelRejection::BadFunction);
        };
        // Functions never return pointers.
        if def
            .result_type
            .is_some_and(|t| matches!(facts.types.get(&t), Some(Type::Pointer { .. })))
        {
            return Err(KernelRejection::ForbiddenPointerOp(Op::Function as u32));
        }
        // Block order, for telling back edges from forward branches.
        let mut index: HashMap<Id, usize> = HashMap::new();
        let mut headers: HashSet<Id> = HashSet::new();
        for (i, block) in func.blocks.iter().enumerate() {
            if let Some(l) = block.label.as_ref().and_then(|l| l.result_id) {
                index.insert(l, i);
                if block
                    .instructions
                    .iter()
                    .any(|x| x.class.opcode == Op::LoopMerge)
                {
                    headers.insert(l);
                }
            }
        }
        // Each block's predecessors: the blocks that branch to it (once
        // each, however many of their targets it is).
        let mut preds: HashMap<Id, Vec<Id>> = HashMap::new();
        for block in &func.blocks {
            let (Some(label), Some(term)) = (
                block.label.as_ref().and_then(|l| l.result_id),
                block.instructions.last(),
            ) else {
                continue;
            };
            let skip = usize::from(term.class.opcode != Op::Branch);
            let mut targets: Vec<Id> = match term.class.opcode {
                Op::Branch | Op::BranchConditional | Op::Switch => term
                    .operands
                    .iter()
                    .skip(skip)
                    .filter_map(|o| id(Some(o)))
                    .collect(),
                _ => Vec::new(),
            };
            targets.sort_unstable();
            targets.dedup();
            for t in targets {
                preds.entry(t).or_default().push(label);
            }
        }
        // Values are defined in this function before they are used (a phi
        // may name a value of a later block). Whether each definition
        // dominates its uses is left to the Khronos validator.
        let params = func.parameters.iter().filter_map(|p| p.result_id);
        let mut defined: HashSet<Id> = params.clone().collect();
        let own: HashSet<Id> = params
            .chain(
                func.blocks
                    .iter()
                    .flat_map(|b| b.instructions.iter().filter_map(|i| i.result_id)),
            )
            .collect();
        for (b, block) in func.blocks.iter().enumerate() {
            // Phis open a block that has predecessors (lines may stand
            // among them).
            let mut phis_allowed = b != 0;
            for inst in &block.instructions {
                match inst.class.opcode {
                    Op::Phi if !phis_allowed => {
                        return Err(KernelRejection::BadOperand {
                            opcode: Op::Phi as u32,
                        })
                    }
                    Op::Phi | Op::Line | Op::NoLine => {}
                    _ => phis_allowed = false,
                }
                check_body_instruction(inst, facts, declared, rules, vp_declared)?;
                check_value_types(inst, facts, version, def.result_type)?;
                check_scopes(inst, facts)?;
                let op = inst.class.opcode;
                for v in operand_ids(inst) {
                    let known = if op == Op::Phi { &own } else { &defined };
                    if facts.kinds.get(&v) == Some(&Kind::Local) && !known.contains(&v) {
                        return Err(KernelRejection::BadOperand { opcode: op as u32 });
                    }
                }
                defined.extend(inst.result_id);
                // Labels named by branches, merges and phis are blocks of
                // this function; a branch back is a loop's back edge.
                let targets: Vec<Id> = match op {
                    Op::Branch => inst.operands.iter().filter_map(|o| id(Some(o))).collect(),
                    Op::BranchConditional => inst
                        .operands
                        .iter()
                        .skip(1)
                        .filter_map(|o| id(Some(o)))
                        .collect(),
                    Op::Switch => inst
                        .operands
                        .iter()
                        .skip(1)
                        .filter_map(|o| id(Some(o)))
                        .collect(),
                    Op::LoopMerge | Op::SelectionMerge => {
                        inst.operands.iter().filter_map(|o| id(Some(o))).collect()
                    }
                    Op::Phi => {
                        // One value for each predecessor, and no others.
                        let mut parents: Vec<Id> = Vec::new();
                        for pair in inst.operands.chunks(2) {
                            let parent = id(pair.get(1));
                            if parent.is_none_or(|p| !index.contains_key(&p)) {
                                return Err(KernelRejection::BadOperand { opcode: op as u32 });
                            }
                            parents.extend(parent);
                        }
                        parents.sort_unstable();
                        let mut expected = block
                            .label
                            .as_ref()
                            .and_then(|l| l.result_id)
                            .and_then(|l| preds.get(&l))
                            .cloned()
                            .unwrap_or_default();
                        expected.sort_unstable();
                        if parents != expected {
                            return Err(KernelRejection::BadOperand { opcode: op as u32 });
                        }
                        Vec::new()
                    }
                    _ => Vec::new(),
                };
                for (k, t) in targets.iter().enumerate() {
                    let Some(&ti) = index.get(t) else {
                        return Err(KernelRejection::BadOperand { opcode: op as u32 });
                    };
                    let branch = matches!(op, Op::Branch | Op::BranchConditional | Op::Switch);
                    if branch && ti <= b && (op == Op::Switch || !headers.contains(t)) {
                        return Err(KernelRejection::BadControlFlow { opcode: op as u32 });
                    }
                    // A construct's merge block comes after its header (and
                    // a loop's continue target no earlier), so that leaving
                    // a loop for its merge block, as the watchdog does, goes
                    // forward and out.
                    let misplaced = match (op, k) {
                        (Op::LoopMerge | Op::SelectionMerge, 0) => {
                            ti <= b || !merge_precedes_branch(&block.instructions, inst)
                        }
                        (Op::LoopMerge, 1) => ti < b || Some(t) == targets.first(),
                        _ => false,
                    };
                    if misplaced {
                        return Err(KernelRejection::BadControlFlow { opcode: op as u32 });
                    }
                }
            }
        }
    }
    Ok(())
}

/// One instruction of a function body, with the facts.
fn check_body_instruction(
    inst: &Instruction,
    facts: &Facts,
    declared: &HashSet<u32>,
    rules: &Rules,
    vp_declared: bool,
) -> Result<(), KernelRejection> {
    let op = inst.class.opcode;
    let bad = || KernelRejection::BadOperand { opcode: op as u32 };
    if let Some(cap) = group_capability(op) {
        let cap = match inst.operands.get(1) {
            Some(Operand::GroupOperation(GroupOperation::ClusteredReduce)) => {
                Capability::GroupNonUniformClustered
            }
            _ => cap,
        };
        require(&[cap], declared, rules)?;
    }
    // Pointer-typed results come only from variables, access chains,
    // parameters and copies, plus selects and phis of storage-buffer
    // pointers under VariablePointersStorageBuffer.
    if let Some(Type::Pointer { class, .. }) = inst.result_type.and_then(|t| facts.types.get(&t)) {
        match op {
            Op::Variable
            | Op::AccessChain
            | Op::InBoundsAccessChain
            | Op::FunctionParameter
            | Op::CopyObject => {}
            Op::Select | Op::Phi if *class == StorageClass::StorageBuffer => {
                require(
                    &[Capability::VariablePointersStorageBuffer],
                    declared,
                    rules,
                )?;
            }
            Op::Select | Op::Phi => {
                return Err(KernelRejection::ForbiddenCapability(
                    Capability::VariablePointers as u32,
                ))
            }
            _ => return Err(KernelRejection::ForbiddenPointerOp(op as u32)),
        }
    }
    // Pointer operands go only where a pointer is expected.
    for (index, o) in inst.operands.iter().enumerate() {
        if let Operand::IdRef(v) = o {
            if facts.pointer_of(*v).is_some()
                && facts.kinds.get(v) != Some(&Kind::Function)
                && !takes_pointer(op, index)
                && !(matches!(op, Op::Select | Op::Phi) && vp_declared)
            {
                return Err(KernelRejection::ForbiddenPointerOp(op as u32));
            }
        }
    }
    match op {
        Op::AccessChain | Op::InBoundsAccessChain => {
            let base = id(inst.operands.first()).ok_or_else(bad)?;
            let (class, mut current) = facts.pointer_of(base).ok_or_else(bad)?;
            for o in &inst.operands[1..] {
                let index = id(Some(o)).ok_or_else(bad)?;
                // Every index is an integer scalar.
                let it = facts
                    .value_types
                    .get(&index)
                    .and_then(|t| facts.types.get(t));
                if !matches!(it, Some(Type::Int { .. })) {
                    return Err(bad());
                }
                current = match facts.types.get(&current) {
                    Some(Type::Struct { members }) => {
                        // A member is named by a plain 32-bit constant
                        // (what SPIR-V requires; not a specialization
                        // constant the driver would resolve again).
                        let c = facts.constants.get(&index).ok_or_else(bad)?;
                        let (Value::Scalar(m), Origin::Plain, Some(Type::Int { width: 32, .. })) =
                            (&c.value, c.origin, facts.types.get(&c.ty))
                        else {
                            return Err(bad());
                        };
                        let m = *m;
                        *members
                            .get(usize::try_from(m).map_err(|_| bad())?)
                            .ok_or_else(bad)?
                    }
                    Some(
                        Type::Array { element, .. }
                        | Type::RuntimeArray { element }
                        | Type::Vector {
                            component: element, ..
                        }
                        | Type::Matrix {
                            column: element, ..
                        },
                    ) => *element,
                    _ => return Err(bad()),
                };
            }
            match inst.result_type.and_then(|t| facts.types.get(&t)) {
                Some(Type::Pointer { class: c, pointee }) if *c == class && *pointee == current => {
                }
                _ => return Err(bad()),
            }
        }
        Op::CompositeExtract | Op::CompositeInsert => {
            let at = if op == Op::CompositeExtract { 0 } else { 1 };
            let composite = id(inst.operands.get(at)).ok_or_else(bad)?;
            let composite_type = *facts.value_types.get(&composite).ok_or_else(bad)?;
            let mut current = composite_type;
            if inst.operands.len() <= at + 1 {
                return Err(bad());
            }
            for o in &inst.operands[at + 1..] {
                let i = u64::from(lit(Some(o)).ok_or_else(bad)?);
                current = match facts.types.get(&current) {
                    Some(Type::Struct { members }) => *members.get(i as usize).ok_or_else(bad)?,
                    Some(Type::Array { element, length }) if i < *length => *element,
                    Some(Type::Vector { component, count }) if i < u64::from(*count) => *component,
                    Some(Type::Matrix { column, count }) if i < u64::from(*count) => *column,
                    _ => return Err(bad()),
                };
            }
            // Extract gives the part's type; insert puts a part of that
            // type and gives the composite's.
            let agree = if op == Op::CompositeExtract {
                inst.result_type == Some(current)
            } else {
                inst.result_type == Some(composite_type)
                    && value_type(facts, inst.operands.first()) == Some(current)
            };
            if !agree {
                return Err(bad());
            }
        }
        Op::VectorShuffle => {
            let count = |v: Option<&Operand>| -> Result<u32, KernelRejection> {
                let v = id(v).ok_or_else(bad)?;
                match facts.value_types.get(&v).and_then(|t| facts.types.get(t)) {
                    Some(Type::Vector { count, .. }) => Ok(*count),
                    _ => Err(bad()),
                }
            };
            let n = count(inst.operands.first())? + count(inst.operands.get(1))?;
            for o in &inst.operands[2..] {
                let c = lit(Some(o)).ok_or_else(bad)?;
                if c >= n && c != u32::MAX {
                    return Err(bad());
                }
            }
        }
        Op::AtomicLoad
        | Op::AtomicStore
        | Op::AtomicExchange
        | Op::AtomicCompareExchange
        | Op::AtomicIIncrement
        | Op::AtomicIDecrement
        | Op::AtomicIAdd
        | Op::AtomicISub
        | Op::AtomicSMin
        | Op::AtomicUMin
        | Op::AtomicSMax
        | Op::AtomicUMax
        | Op::AtomicAnd
        | Op::AtomicOr
        | Op::AtomicXor => {
            let ptr = id(inst.operands.first()).ok_or_else(bad)?;
            let (class, pointee) = facts.pointer_of(ptr).ok_or_else(bad)?;
            if !matches!(
                class,
                StorageClass::StorageBuffer | StorageClass::Uniform | StorageClass::Workgroup
            ) {
                return Err(KernelRejection::ForbiddenStorageClass(class as u32));
            }
            match facts.types.get(&pointee) {
                Some(Type::Int { width: 32, .. }) => {}
                Some(Type::Int { width: 64, .. }) => {
                    require(&[Capability::Int64Atomics], declared, rules)?
                }
                _ => return Err(bad()),
            }
            // The result and the values have the pointee's type.
            let values: &[usize] = match op {
                Op::AtomicStore | Op::AtomicLoad | Op::AtomicIIncrement | Op::AtomicIDecrement => {
                    if op == Op::AtomicStore {
                        &[3]
                    } else {
                        &[]
                    }
                }
                Op::AtomicCompareExchange => &[4, 5],
                _ => &[3],
            };
            if inst.result_type.is_some_and(|t| t != pointee)
                || values
                    .iter()
                    .any(|i| value_type(facts, inst.operands.get(*i)) != Some(pointee))
            {
                return Err(bad());
            }
        }
        Op::Load => {
            let ptr = id(inst.operands.first()).ok_or_else(bad)?;
            let (_, pointee) = facts.pointer_of(ptr).ok_or_else(bad)?;
            if inst.result_type != Some(pointee) {
                return Err(bad());
            }
        }
        Op::Store | Op::CopyMemory => {
            let target = id(inst.operands.first()).ok_or_else(bad)?;
            let (class, pointee) = facts.pointer_of(target).ok_or_else(bad)?;
            // Inputs and push constants are read-only.
            if matches!(class, StorageClass::Input | StorageClass::PushConstant) {
                return Err(bad());
            }
            let source = id(inst.operands.get(1)).ok_or_else(bad)?;
            let stored = if op == Op::Store {
                facts.value_types.get(&source).copied()
            } else {
                facts.pointer_of(source).map(|(_, p)| p)
            };
            if stored != Some(pointee) {
                return Err(bad());
            }
        }
        Op::ArrayLength => {
            // The runtime array that ends the struct a pointer points at.
            let ptr = id(inst.operands.first()).ok_or_else(bad)?;
            let (_, pointee) = facts.pointer_of(ptr).ok_or_else(bad)?;
            let Some(Type::Struct { members }) = facts.types.get(&pointee) else {
                return Err(bad());
            };
            let last = members.len().checked_sub(1).ok_or_else(bad)?;
            let runtime = matches!(
                facts.types.get(&members[last]),
                Some(Type::RuntimeArray { .. })
            );
            let uint = inst.result_type.and_then(|t| facts.types.get(&t))
                == Some(&Type::Int {
                    width: 32,
                    signed: false,
                });
            if !runtime || !uint || lit(inst.operands.get(1)) != Some(last as u32) {
                return Err(bad());
            }
        }
        Op::ExtInst => {
            let set = id(inst.operands.first()).ok_or_else(bad)?;
            if facts.kinds.get(&set) != Some(&Kind::ExtInstImport) {
                return Err(bad());
            }
        }
        Op::FunctionCall => {
            // The arguments match the callee's parameters.
            let callee = id(inst.operands.first()).ok_or_else(bad)?;
            let f = facts.functions.get(&callee).ok_or_else(bad)?;
            let args = &inst.operands[1..];
            if inst.result_type != Some(f.ret) || args.len() != f.params.len() {
                return Err(bad());
            }
            for (a, p) in args.iter().zip(&f.params) {
                let a = id(Some(a)).ok_or_else(bad)?;
                if facts.value_types.get(&a) != Some(p) {
                    return Err(bad());
                }
            }
        }
        _ => {}
    }
    // Operands that must be ids of values are not types, labels or functions.
    for v in operand_ids(inst) {
        if matches!(op, Op::FunctionCall) && Some(v) == id(inst.operands.first()) {
            continue;
        }
        if matches!(facts.kinds.get(&v), Some(Kind::Type)) {
            return Err(bad());
        }
    }
    Ok(())
}

fn check_sizes(module: &Module, facts: &Facts, rules: &Rules) -> Result<(), KernelRejection> {
    let size = facts.workgroup_size;
    let [x, y, z] = size;
    if x == 0 || y == 0 || z == 0 {
        return Err(KernelRejection::WorkgroupSizeZero { size });
    }
    let total = u64::from(x)
        .saturating_mul(u64::from(y))
        .saturating_mul(u64::from(z));
    if x > rules.max_workgroup_size[0]
        || y > rules.max_workgroup_size[1]
        || z > rules.max_workgroup_size[2]
        || total > u64::from(rules.max_invocations)
    {
        return Err(KernelRejection::WorkgroupTooLarge { size });
    }
    let mut shared = 0u64;
    let mut private = 0u64;
    for g in facts.globals.values() {
        match g.class {
            StorageClass::Workgroup => shared = shared.saturating_add(facts.size_of(g.pointee)),
            StorageClass::Private => private = private.saturating_add(facts.size_of(g.pointee)),
            _ => {}
        }
    }
    for func in &module.functions {
        for block in &func.blocks {
            for inst in &block.instructions {
                if inst.class.opcode == Op::Variable {
                    if let Some((_, pointee)) = inst.result_id.and_then(|v| facts.pointer_of(v)) {
                        private = private.saturating_add(facts.size_of(pointee));
                    }
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
    Ok(())
}

/// Most scalars in one value: a constant, the result of an instruction, or
/// what one load, store or copy moves. Compilers expand aggregate values
/// element by element, some in quadratic time (lavapipe: a store of a
/// 1024-word null constant compiles in 2 s, 8192 words in 4 min; a
/// 2^28-element null constant in a 724-byte kernel exhausted the machine).
/// Kernels move large arrays element by element instead.
pub(crate) const MAX_VALUE_SCALARS: u64 = 256;

fn check_value_sizes(module: &Module, facts: &Facts) -> Result<(), KernelRejection> {
    let too_big = |t: Id| facts.scalars(t) > MAX_VALUE_SCALARS;
    let limit = || KernelRejection::TooComplex(crate::reasons::ComplexityLimit::ValueSize);
    for inst in module.all_inst_iter() {
        let op = inst.class.opcode;
        if matches!(op, Op::Variable | Op::Function | Op::FunctionParameter) {
            // Variables are memory (bounded by the memory limits); a
            // function's result and parameters are checked at its calls
            // and returns as values.
            continue;
        }
        if let Some(t) = inst.result_type {
            let pointer = matches!(facts.types.get(&t), Some(Type::Pointer { .. }));
            if !pointer && too_big(t) {
                return Err(limit());
            }
        }
        // What a load, store or copy moves.
        if matches!(op, Op::Store | Op::CopyMemory) {
            if let Some((_, pointee)) = id(inst.operands.first()).and_then(|p| facts.pointer_of(p))
            {
                if too_big(pointee) {
                    return Err(limit());
                }
            }
        }
    }
    Ok(())
}

/// The type of the value an operand names, if it is a value.
fn value_type(facts: &Facts, operand: Option<&Operand>) -> Option<Id> {
    facts.value_types.get(&id(operand)?).copied()
}

/// A scalar or vector type as (scalar type, component count).
fn scalar_shape(facts: &Facts, t: Id) -> Option<(&Type, u32)> {
    match facts.types.get(&t)? {
        s @ (Type::Bool | Type::Int { .. } | Type::Float { .. }) => Some((s, 1)),
        Type::Vector { component, count } => Some((facts.types.get(component)?, *count)),
        _ => None,
    }
}

/// GLSL.std.450 instructions whose operands all have the result's type, a
/// float scalar or vector (Round … NClamp, SPIR-V's extended instruction
/// set for GLSL).
const GLSL_FLOAT_SAME: &[u32] = &[
    1, 2, 3, 4, 6, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27,
    28, 29, 30, 31, 32, 37, 40, 43, 46, 48, 49, 50, 69, 70, 71, 79, 80, 81,
];
/// GLSL.std.450 instructions on integers whose operands have the result's
/// width and component count (SAbs, SSign, U/S Min, Max, Clamp).
const GLSL_INT_SAME: &[u32] = &[5, 7, 38, 39, 41, 42, 44, 45];

/// The types an instruction's operands and result must have: arithmetic,
/// bitwise, comparison, logical, conversion, composite and control-flow
/// instructions, phis, returns and the GLSL.std.450 instructions of
/// [`GLSL_FLOAT_SAME`] and [`GLSL_INT_SAME`]. The rules are SPIR-V's (and
/// spirv-val's): a driver may take any operand's type as the result's.
/// `ret` is the enclosing function's return type.
fn check_value_types(
    inst: &Instruction,
    facts: &Facts,
    version: u32,
    ret: Option<Id>,
) -> Result<(), KernelRejection> {
    use Op::*;
    let op = inst.class.opcode;
    let bad = || KernelRejection::BadOperand { opcode: op as u32 };
    let ops = &inst.operands;
    // The type of value operand `i`, and a type's shape.
    let ty = |i: usize| value_type(facts, ops.get(i)).ok_or_else(bad);
    let shape = |t: Id| scalar_shape(facts, t).ok_or_else(bad);
    let result = || inst.result_type.ok_or_else(bad);
    let width = |s: &Type| match s {
        Type::Int { width, .. } | Type::Float { width } => *width,
        _ => 0,
    };
    let int = |s: &Type| matches!(s, Type::Int { .. });
    let uint = |s: &Type| matches!(s, Type::Int { signed: false, .. });
    let float = |s: &Type| matches!(s, Type::Float { .. });
    let boolean = |s: &Type| matches!(s, Type::Bool);
    let check = |ok: bool| if ok { Ok(()) } else { Err(bad()) };
    let arity = |n: usize| check(ops.len() == n);
    // Every operand from `from` on has exactly the result's type.
    let all_result = |from: usize| -> Result<(), KernelRejection> {
        let r = result()?;
        for i in from..ops.len() {
            check(ty(i)? == r)?;
        }
        Ok(())
    };
    // Every operand from `from` on is an integer with the result's width
    // and component count (the signedness may differ).
    let all_int_like_result = |from: usize| -> Result<(), KernelRejection> {
        let (s, n) = shape(result()?)?;
        check(int(s))?;
        for i in from..ops.len() {
            let (o, m) = shape(ty(i)?)?;
            check(int(o) && m == n && width(o) == width(s))?;
        }
        Ok(())
    };
    match op {
        IAdd | ISub | IMul | SDiv | SMod | SRem | BitwiseOr | BitwiseXor | BitwiseAnd => {
            arity(2)?;
            all_int_like_result(0)?;
        }
        SNegate | Not => {
            arity(1)?;
            all_int_like_result(0)?;
        }
        UDiv | UMod => {
            arity(2)?;
            check(uint(shape(result()?)?.0))?;
            all_result(0)?;
        }
        FAdd | FSub | FMul | FDiv | FRem | FMod | FNegate => {
            arity(if op == FNegate { 1 } else { 2 })?;
            check(float(shape(result()?)?.0))?;
            all_result(0)?;
        }
        ShiftRightLogical | ShiftRightArithmetic | ShiftLeftLogical => {
            arity(2)?;
            let (s, n) = shape(result()?)?;
            let (base, b) = shape(ty(0)?)?;
            let (shift, c) = shape(ty(1)?)?;
            check(
                int(s) && int(base) && int(shift) && b == n && c == n && width(base) == width(s),
            )?;
        }
        IEqual | INotEqual | UGreaterThan | SGreaterThan | UGreaterThanEqual
        | SGreaterThanEqual | ULessThan | SLessThan | ULessThanEqual | SLessThanEqual => {
            arity(2)?;
            let (s, n) = shape(result()?)?;
            let (a, an) = shape(ty(0)?)?;
            let (b, bn) = shape(ty(1)?)?;
            check(boolean(s) && int(a) && int(b) && an == n && bn == n && width(a) == width(b))?;
        }
        FOrdEqual
        | FUnordEqual
        | FOrdNotEqual
        | FUnordNotEqual
        | FOrdLessThan
        | FUnordLessThan
        | FOrdGreaterThan
        | FUnordGreaterThan
        | FOrdLessThanEqual
        | FUnordLessThanEqual
        | FOrdGreaterThanEqual
        | FUnordGreaterThanEqual => {
            arity(2)?;
            let (s, n) = shape(result()?)?;
            let (a, an) = shape(ty(0)?)?;
            check(boolean(s) && float(a) && an == n && ty(1)? == ty(0)?)?;
        }
        LogicalEqual | LogicalNotEqual | LogicalOr | LogicalAnd | LogicalNot => {
            arity(if op == LogicalNot { 1 } else { 2 })?;
            check(boolean(shape(result()?)?.0))?;
            all_result(0)?;
        }
        IsNan | IsInf => {
            arity(1)?;
            let (s, n) = shape(result()?)?;
            let (a, an) = shape(ty(0)?)?;
            check(boolean(s) && float(a) && an == n)?;
        }
        Any | All => {
            arity(1)?;
            let (s, n) = shape(result()?)?;
            let (a, an) = shape(ty(0)?)?;
            check(boolean(s) && n == 1 && boolean(a) && an > 1)?;
        }
        Select => {
            arity(3)?;
            let r = result()?;
            let (c, cn) = shape(ty(0)?)?;
            // A scalar condition selects anything (composites since SPIR-V
            // 1.4); a vector condition selects vectors of its size.
            let n = match facts.types.get(&r) {
                Some(Type::Bool | Type::Int { .. } | Type::Float { .. } | Type::Pointer { .. }) => {
                    1
                }
                Some(Type::Vector { count, .. }) => *count,
                Some(Type::Array { .. } | Type::Matrix { .. } | Type::Struct { .. })
                    if version >= 0x0001_0400 =>
                {
                    1
                }
                _ => return Err(bad()),
            };
            check(boolean(c) && (cn == n || (cn == 1 && version >= 0x0001_0400)))?;
            all_result(1)?;
        }
        ConvertFToU | ConvertFToS | ConvertSToF | ConvertUToF | UConvert | SConvert | FConvert => {
            arity(1)?;
            let (s, n) = shape(result()?)?;
            let (a, an) = shape(ty(0)?)?;
            let kinds = match op {
                ConvertFToU => uint(s) && float(a),
                ConvertFToS => int(s) && float(a),
                ConvertSToF | ConvertUToF => float(s) && int(a),
                UConvert => uint(s) && int(a),
                SConvert => int(s) && int(a),
                _ => float(s) && float(a),
            };
            // Width conversions change the width.
            let widths = !matches!(op, UConvert | SConvert | FConvert) || width(s) != width(a);
            check(kinds && an == n && widths)?;
        }
        QuantizeToF16 => {
            arity(1)?;
            let (s, _) = shape(result()?)?;
            check(width(s) == 32 && float(s))?;
            all_result(0)?;
        }
        Bitcast => {
            // Pointers are refused elsewhere; numbers keep their bits.
            arity(1)?;
            let (s, n) = shape(result()?)?;
            let (a, an) = shape(ty(0)?)?;
            check(
                !boolean(s)
                    && !boolean(a)
                    && u64::from(width(s)) * u64::from(n) == u64::from(width(a)) * u64::from(an),
            )?;
        }
        CopyObject => {
            arity(1)?;
            all_result(0)?;
        }
        VectorExtractDynamic => {
            arity(2)?;
            let Some(Type::Vector { component, .. }) = facts.types.get(&ty(0)?) else {
                return Err(bad());
            };
            let (i, n) = shape(ty(1)?)?;
            check(Some(*component) == inst.result_type && int(i) && n == 1)?;
        }
        VectorInsertDynamic => {
            arity(3)?;
            let Some(Type::Vector { component, .. }) = facts.types.get(&result()?) else {
                return Err(bad());
            };
            let (i, n) = shape(ty(2)?)?;
            check(ty(0)? == result()? && ty(1)? == *component && int(i) && n == 1)?;
        }
        VectorShuffle => {
            let Some(Type::Vector { component, count }) = facts.types.get(&result()?) else {
                return Err(bad());
            };
            for i in 0..2 {
                match facts.types.get(&ty(i)?) {
                    Some(Type::Vector { component: c, .. }) if c == component => {}
                    _ => return Err(bad()),
                }
            }
            check(ops.len() == 2 + *count as usize)?;
        }
        CompositeConstruct => {
            let parts: Vec<Id> = (0..ops.len()).map(ty).collect::<Result<_, _>>()?;
            let ok = match facts.types.get(&result()?) {
                Some(Type::Vector { component, count }) => {
                    // Scalars and vectors of the component type, filling it.
                    let mut filled = 0u32;
                    for p in &parts {
                        filled += match facts.types.get(p) {
                            Some(Type::Vector {
                                component: c,
                                count,
                            }) if c == component => *count,
                            _ if p == component => 1,
                            _ => return Err(bad()),
                        };
                    }
                    parts.len() >= 2 && filled == *count
                }
                Some(Type::Matrix { column, count }) => {
                    parts.len() == *count as usize && parts.iter().all(|p| p == column)
                }
                Some(Type::Array { element, length }) => {
                    parts.len() as u64 == *length && parts.iter().all(|p| p == element)
                }
                Some(Type::Struct { members }) => parts == *members,
                _ => false,
            };
            check(ok)?;
        }
        Dot => {
            arity(2)?;
            let a = ty(0)?;
            let ok = matches!(facts.types.get(&a), Some(Type::Vector { component, .. })
                if Some(*component) == inst.result_type
                    && facts.types.get(component).is_some_and(float));
            check(ok && ty(1)? == a)?;
        }
        VectorTimesScalar => {
            arity(2)?;
            let ok = matches!(facts.types.get(&result()?), Some(Type::Vector { component, .. })
                if facts.types.get(component).is_some_and(float) && ty(1)? == *component);
            check(ok)?;
            check(ty(0)? == result()?)?;
        }
        MatrixTimesScalar => {
            arity(2)?;
            let ok = match facts.types.get(&result()?) {
                Some(Type::Matrix { column, .. }) => matches!(
                    facts.types.get(column),
                    Some(Type::Vector { component, .. }) if ty(1)? == *component
                ),
                _ => false,
            };
            check(ok)?;
            check(ty(0)? == result()?)?;
        }
        MatrixTimesVector => {
            // (columns of the result's type) × (a vector, one per column).
            arity(2)?;
            let (
                Some(Type::Matrix { column, count }),
                Some(Type::Vector {
                    count: n,
                    component,
                }),
            ) = (facts.types.get(&ty(0)?), facts.types.get(&ty(1)?))
            else {
                return Err(bad());
            };
            let ok = Some(*column) == inst.result_type
                && n == count
                && matches!(facts.types.get(column), Some(Type::Vector { component: c, .. }) if c == component);
            check(ok)?;
        }
        VectorTimesMatrix => {
            // (a vector) × (columns of its type) gives one per column.
            arity(2)?;
            let (
                Some(Type::Matrix { column, count }),
                Some(Type::Vector {
                    count: n,
                    component,
                }),
            ) = (facts.types.get(&ty(1)?), facts.types.get(&result()?))
            else {
                return Err(bad());
            };
            let ok = *column == ty(0)?
                && n == count
                && matches!(facts.types.get(column), Some(Type::Vector { component: c, .. }) if c == component);
            check(ok)?;
        }
        MatrixTimesMatrix => {
            arity(2)?;
            let (
                Some(Type::Matrix {
                    column: rc,
                    count: rn,
                }),
                Some(Type::Matrix {
                    column: lc,
                    count: ln,
                }),
                Some(Type::Matrix {
                    column: oc,
                    count: on,
                }),
            ) = (
                facts.types.get(&result()?),
                facts.types.get(&ty(0)?),
                facts.types.get(&ty(1)?),
            )
            else {
                return Err(bad());
            };
            let rows_of = |c: &Id| match facts.types.get(c) {
                Some(Type::Vector { component, count }) => Some((*component, *count)),
                _ => None,
            };
            let ok = rc == lc
                && rn == on
                && matches!((rows_of(lc), rows_of(oc)), (Some((a, _)), Some((b, rows))) if a == b && rows == *ln);
            check(ok)?;
        }
        OuterProduct => {
            arity(2)?;
            let (
                Some(Type::Matrix { column, count }),
                Some(Type::Vector {
                    component,
                    count: n,
                }),
            ) = (facts.types.get(&result()?), facts.types.get(&ty(1)?))
            else {
                return Err(bad());
            };
            let ok = *column == ty(0)?
                && n == count
                && matches!(facts.types.get(column), Some(Type::Vector { component: c, .. }) if c == component);
            check(ok)?;
        }
        Transpose => {
            arity(1)?;
            let (
                Some(Type::Matrix {
                    column: rc,
                    count: rn,
                }),
                Some(Type::Matrix {
                    column: ac,
                    count: an,
                }),
            ) = (facts.types.get(&result()?), facts.types.get(&ty(0)?))
            else {
                return Err(bad());
            };
            let ok = match (facts.types.get(rc), facts.types.get(ac)) {
                (
                    Some(Type::Vector {
                        component: x,
                        count: rows_r,
                    }),
                    Some(Type::Vector {
                        component: y,
                        count: rows_a,
                    }),
                ) => x == y && rows_r == an && rows_a == rn,
                _ => false,
            };
            check(ok)?;
        }
        IAddCarry | ISubBorrow | UMulExtended | SMulExtended => {
            arity(2)?;
            let ok = match facts.types.get(&result()?) {
                Some(Type::Struct { members }) => {
                    members.len() == 2
                        && members[0] == members[1]
                        && scalar_shape(facts, members[0]).is_some_and(|(s, _)| {
                            if op == SMulExtended {
                                int(s)
                            } else {
                                uint(s)
                            }
                        })
                        && ty(0)? == members[0]
                        && ty(1)? == members[0]
                }
                _ => false,
            };
            check(ok)?;
        }
        BitFieldInsert | BitFieldSExtract | BitFieldUExtract => {
            // Base (and insert) of the result's type; offset and count
            // integer scalars.
            let values = if op == BitFieldInsert { 2 } else { 1 };
            arity(values + 2)?;
            check(int(shape(result()?)?.0))?;
            for i in 0..values {
                check(ty(i)? == result()?)?;
            }
            for i in values..values + 2 {
                let (s, n) = shape(ty(i)?)?;
                check(int(s) && n == 1)?;
            }
        }
        BitReverse => {
            arity(1)?;
            check(int(shape(result()?)?.0))?;
            all_result(0)?;
        }
        BitCount => {
            arity(1)?;
            let (s, n) = shape(result()?)?;
            let (a, an) = shape(ty(0)?)?;
            check(int(s) && int(a) && an == n)?;
        }
        Phi => {
            let r = result()?;
            for pair in ops.chunks(2) {
                check(value_type(facts, pair.first()) == Some(r))?;
            }
        }
        BranchConditional => {
            let (c, n) = shape(ty(0)?)?;
            check(boolean(c) && n == 1)?;
        }
        Switch => {
            let (s, n) = shape(ty(0)?)?;
            check(int(s) && n == 1)?;
        }
        Return => {
            check(ret.is_some_and(|t| matches!(facts.types.get(&t), Some(Type::Void))))?;
        }
        ReturnValue => {
            arity(1)?;
            check(ret.is_some() && ty(0).ok() == ret)?;
        }
        ExtInst => {
            let Some(Operand::LiteralExtInstInteger(n)) = ops.get(1) else {
                return Err(bad());
            };
            if GLSL_FLOAT_SAME.contains(n) {
                check(float(shape(result()?)?.0))?;
                all_result(2)?;
            } else if GLSL_INT_SAME.contains(n) {
                all_int_like_result(2)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// The memory-semantics bits SPIR-V defines: Acquire (0x2) through
/// Volatile (0x8000), without the unused 0x1 and 0x20.
const DEFINED_MEMORY_SEMANTICS: u64 = 0xFFDE;

/// Scopes and memory semantics are 32-bit integer constants (not
/// specialization constants), and a scope is one a Vulkan compute kernel
/// may name: execution by the subgroup (or the workgroup, for barriers),
/// memory of the device, workgroup, subgroup or invocation. Semantics use
/// only defined bits; which of them go together is left to the Khronos
/// validator.
fn check_scopes(inst: &Instruction, facts: &Facts) -> Result<(), KernelRejection> {
    let op = inst.class.opcode;
    let bad = || KernelRejection::BadOperand { opcode: op as u32 };
    let constant = |v: Id| -> Option<u64> {
        let c = facts.constants.get(&v)?;
        match (c.origin, facts.types.get(&c.ty), &c.value) {
            (Origin::Plain, Some(Type::Int { width: 32, .. }), Value::Scalar(x)) => Some(*x),
            (Origin::Plain, Some(Type::Int { width: 32, .. }), Value::Null) => Some(0),
            _ => None,
        }
    };
    // The first scope of a barrier or a subgroup operation is its
    // execution scope.
    let mut execution = op == Op::ControlBarrier || group_capability(op).is_some();
    for o in &inst.operands {
        match o {
            Operand::IdScope(v) => {
                let scope = constant(*v).ok_or_else(bad)?;
                let ok = if execution {
                    scope == Scope::Subgroup as u64
                        || (op == Op::ControlBarrier && scope == Scope::Workgroup as u64)
                } else {
                    [
                        Scope::Device,
                        Scope::Workgroup,
                        Scope::Subgroup,
                        Scope::Invocation,
                    ]
                    .iter()
                    .any(|s| *s as u64 == scope)
                };
                if !ok {
                    return Err(bad());
                }
                execution = false;
            }
            // Only bits SPIR-V defines: a driver ignores the others
            // (lavapipe warns "Ignoring unhandled memory semantics") where
            // another may act on them.
            Operand::IdMemorySemantics(v)
                if constant(*v).ok_or_else(bad)? & !DEFINED_MEMORY_SEMANTICS != 0 =>
            {
                return Err(bad());
            }
            _ => {}
        }
    }
    Ok(())
}

/// A merge instruction is the second-to-last of its block, right before the
/// branch that opens its construct: a loop's before a branch, a
/// selection's before a conditional branch or a switch.
fn merge_precedes_branch(block: &[Instruction], merge: &Instruction) -> bool {
    let n = block.len();
    let (Some(m), Some(branch)) = (n.checked_sub(2).map(|i| &block[i]), block.last()) else {
        return false;
    };
    std::ptr::eq(m, merge)
        && match merge.class.opcode {
            Op::LoopMerge => matches!(branch.class.opcode, Op::Branch | Op::BranchConditional),
            _ => matches!(branch.class.opcode, Op::BranchConditional | Op::Switch),
        }
}
