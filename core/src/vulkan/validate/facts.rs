//! The resolved view of a module: every type, constant (typed, masked to its
//! width, specialization applied), decoration, global variable, function and
//! value type, known once. Size checks, binding checks, policy and the
//! rewrite all read this one table, so a constant or a decoration cannot
//! mean one thing to one check and another to the next (or to the driver:
//! the rewrite bakes the resolved constants into the module).
//!
//! Building the table rejects what would make it ambiguous or unbounded:
//! undefined or duplicate ids, malformed types and constants, duplicated
//! decorations, and modules over the structural limits.

use super::super::error::KernelRejection;
use crate::reasons::ComplexityLimit;
use rspirv::dr::{Instruction, Module, Operand};
use rspirv::spirv::{BuiltIn, Decoration, ExecutionMode, ExecutionModel, Op, StorageClass, Word};
use std::collections::{HashMap, HashSet};

pub(crate) type Id = Word;

/// Deepest type nesting accepted.
pub(crate) const MAX_TYPE_DEPTH: u32 = 32;
/// Most nodes of a type written out as a tree (members repeated).
pub(crate) const MAX_TYPE_TREE: u64 = 4096;
/// Most members of one struct.
pub(crate) const MAX_STRUCT_MEMBERS: usize = 1024;
/// Most global variables.
pub(crate) const MAX_GLOBALS: usize = 1024;
/// Most `Function` variables in one function.
pub(crate) const MAX_LOCALS: usize = 4096;
/// Most parameters of one function.
pub(crate) const MAX_PARAMS: usize = 32;
/// Most indices of one access chain.
pub(crate) const MAX_CHAIN_INDICES: usize = 16;
/// Most targets of one `OpSwitch`.
pub(crate) const MAX_SWITCH_TARGETS: usize = 1024;
/// Most functions.
pub(crate) const MAX_FUNCTIONS: usize = 1024;
/// Most instructions of a function with every call inlined: about what
/// the largest module (1 MiB) holds without calls. Compilers take time
/// quadratic in this (lavapipe: 13,000 instructions 4 s, 52,000 about 72 s);
/// the dispatcher's deadline on compilation contains the rest.
pub(crate) const MAX_INLINED_INSTRUCTIONS: u64 = 1 << 16;

/// A type, resolved.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Type {
    Void,
    Bool,
    Int {
        width: u32,
        signed: bool,
    },
    Float {
        width: u32,
    },
    Vector {
        component: Id,
        count: u32,
    },
    Matrix {
        column: Id,
        count: u32,
    },
    /// `length` is the resolved value of the length constant.
    Array {
        element: Id,
        length: u64,
    },
    RuntimeArray {
        element: Id,
    },
    Struct {
        members: Vec<Id>,
    },
    Pointer {
        class: StorageClass,
        pointee: Id,
    },
    Function {
        ret: Id,
        params: Vec<Id>,
    },
}

/// A constant's value after specialization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Value {
    /// Integers: the bits masked to the type's width. Floats: the raw
    /// bits. Booleans: 0 or 1.
    Scalar(u64),
    Composite(Vec<Id>),
    Null,
    /// A specialization-constant expression this validator does not evaluate.
    Unresolved,
}

/// Where a constant came from: specialization constants are replaced by
/// plain constants of their resolved value before the driver sees them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin {
    Plain,
    Spec,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Constant {
    pub ty: Id,
    pub value: Value,
    pub origin: Origin,
}

/// The decorations that must be unique on a target, and the flags.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Decorations {
    pub spec_id: Option<u32>,
    pub binding: Option<u32>,
    pub set: Option<u32>,
    pub builtin: Option<BuiltIn>,
    pub array_stride: Option<u32>,
    pub block: bool,
    pub buffer_block: bool,
}

/// Member decorations that must be unique on a member.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct MemberDecorations {
    pub offset: Option<u32>,
    pub matrix_stride: Option<u32>,
    pub builtin: bool,
}

/// A module-level `OpVariable`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Global {
    pub class: StorageClass,
    pub pointee: Id,
    pub init: Option<Id>,
}

/// What an id names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Type,
    Constant,
    Global,
    /// A module-level `OpUndef`.
    Undef,
    ExtInstImport,
    String,
    Function,
    Label,
    /// A parameter or instruction result inside a function.
    Local,
}

/// A function's signature and calls.
#[derive(Debug, Clone, Default)]
pub(crate) struct FunctionInfo {
    pub ret: Id,
    pub params: Vec<Id>,
    /// One entry per call instruction (a callee called twice is listed twice).
    pub callees: Vec<Id>,
    /// Instructions in the function's own body.
    pub instructions: u64,
}

/// The single entry point.
#[derive(Debug, Clone)]
pub(crate) struct EntryPoint {
    pub function: Id,
    pub interface: Vec<Id>,
}

/// The table of facts about one module, for one job's specialization.
pub(crate) struct Facts {
    pub kinds: HashMap<Id, Kind>,
    pub types: HashMap<Id, Type>,
    pub constants: HashMap<Id, Constant>,
    pub decorations: HashMap<Id, Decorations>,
    pub members: HashMap<(Id, u32), MemberDecorations>,
    pub globals: HashMap<Id, Global>,
    /// Result id → result type of every instruction that has both.
    pub value_types: HashMap<Id, Id>,
    pub functions: HashMap<Id, FunctionInfo>,
    pub entry: EntryPoint,
    /// Functions reachable from the entry point.
    pub reachable: HashSet<Id>,
    /// Global variables used by a function reachable from the entry point.
    pub used_globals: HashSet<Id>,
    /// The resolved workgroup size.
    pub workgroup_size: [u32; 3],
}

pub(crate) fn id(op: Option<&Operand>) -> Option<Id> {
    match op {
        Some(Operand::IdRef(v)) => Some(*v),
        _ => None,
    }
}

pub(crate) fn lit(op: Option<&Operand>) -> Option<u32> {
    match op {
        Some(Operand::LiteralBit32(v)) => Some(*v),
        _ => None,
    }
}

/// Every id an operand list refers to (`IdRef`, `IdScope`, `IdMemorySemantics`).
pub(crate) fn operand_ids(inst: &Instruction) -> impl Iterator<Item = Id> + '_ {
    inst.operands.iter().filter_map(|op| match op {
        Operand::IdRef(i) | Operand::IdScope(i) | Operand::IdMemorySemantics(i) => Some(*i),
        _ => None,
    })
}

fn bad_operand(op: Op) -> KernelRejection {
    KernelRejection::BadOperand { opcode: op as u32 }
}

/// Masks `v` to `width` bits.
pub(crate) fn mask(v: u64, width: u32) -> u64 {
    if width >= 64 {
        v
    } else {
        v & ((1u64 << width) - 1)
    }
}

/// `v` (masked to `width` bits) as a signed number.
pub(crate) fn signed(v: u64, width: u32) -> i64 {
    if width >= 64 || width == 0 {
        v as i64
    } else {
        let shift = 64 - width;
        ((v << shift) as i64) >> shift
    }
}

impl Facts {
    /// Builds the table for `module` under the job's specialization
    /// (`(constant id, value)` pairs).
    pub(crate) fn build(
        module: &Module,
        specialization: &[(u32, u32)],
    ) -> Result<Facts, KernelRejection> {
        let bound = module.header.as_ref().map_or(0, |h| h.bound);
        let mut f = Facts {
            kinds: HashMap::new(),
            types: HashMap::new(),
            constants: HashMap::new(),
            decorations: HashMap::new(),
            members: HashMap::new(),
            globals: HashMap::new(),
            value_types: HashMap::new(),
            functions: HashMap::new(),
            entry: EntryPoint {
                function: 0,
                interface: Vec::new(),
            },
            reachable: HashSet::new(),
            used_globals: HashSet::new(),
            workgroup_size: [0; 3],
        };
        f.check_bounds(module, bound)?;
        f.collect_kinds(module)?;
        f.check_references(module)?;
        f.collect_decorations(module)?;
        let spec = f.job_specialization(specialization)?;
        f.collect_types_and_constants(module, &spec)?;
        f.collect_functions(module)?;
        f.collect_entry_point(module)?;
        f.find_reachable()?;
        f.check_inlined_size()?;
        f.mark_used_globals(module);
        f.workgroup_size = f.resolve_workgroup_size(module)?;
        Ok(f)
    }

    fn check_bounds(&self, module: &Module, bound: u32) -> Result<(), KernelRejection> {
        for inst in module.all_inst_iter() {
            // Id 0 is no id.
            let out = inst.result_id.is_some_and(|r| r == 0 || r >= bound)
                || inst.result_type.is_some_and(|t| t >= bound)
                || operand_ids(inst).any(|i| i >= bound);
            if out {
                return Err(KernelRejection::IdOutOfBounds);
            }
        }
        Ok(())
    }

    fn define(&mut self, r: Id, kind: Kind) -> Result<(), KernelRejection> {
        if self.kinds.insert(r, kind).is_some() {
            return Err(KernelRejection::DuplicateId(r));
        }
        Ok(())
    }

    fn collect_kinds(&mut self, module: &Module) -> Result<(), KernelRejection> {
        for inst in &module.ext_inst_imports {
            if let Some(r) = inst.result_id {
                self.define(r, Kind::ExtInstImport)?;
            }
        }
        for inst in &module.debug_string_source {
            if let Some(r) = inst.result_id {
                self.define(r, Kind::String)?;
            }
        }
        if module.types_global_values.len() > 4 * MAX_GLOBALS + 65536 {
            // Bounded by the module size anyway; kept explicit.
            return Err(KernelRejection::TooComplex(
                ComplexityLimit::GlobalVariables,
            ));
        }
        let mut globals = 0;
        for inst in &module.types_global_values {
            let Some(r) = inst.result_id else { continue };
            let op = inst.class.opcode;
            let kind = if op.is_type() {
                Kind::Type
            } else if op.is_constant() {
                Kind::Constant
            } else if op == Op::Variable {
                globals += 1;
                Kind::Global
            } else if op == Op::Undef {
                Kind::Undef
            } else {
                Kind::Local
            };
            self.define(r, kind)?;
        }
        if globals > MAX_GLOBALS {
            return Err(KernelRejection::TooComplex(
                ComplexityLimit::GlobalVariables,
            ));
        }
        if module.functions.len() > MAX_FUNCTIONS {
            return Err(KernelRejection::TooComplex(ComplexityLimit::Functions));
        }
        for func in &module.functions {
            let def = func.def.as_ref().ok_or(KernelRejection::BadFunction)?;
            let r = def.result_id.ok_or(KernelRejection::BadFunction)?;
            self.define(r, Kind::Function)?;
            if func.parameters.len() > MAX_PARAMS {
                return Err(KernelRejection::TooComplex(
                    ComplexityLimit::FunctionParameters,
                ));
            }
            for p in &func.parameters {
                if let Some(r) = p.result_id {
                    self.define(r, Kind::Local)?;
                }
            }
            for block in &func.blocks {
                let label = block.label.as_ref().ok_or(KernelRejection::BadFunction)?;
                let r = label.result_id.ok_or(KernelRejection::BadFunction)?;
                self.define(r, Kind::Label)?;
                for inst in &block.instructions {
                    if let Some(r) = inst.result_id {
                        self.define(r, Kind::Local)?;
                    }
                }
            }
        }
        for inst in module.all_inst_iter() {
            if let (Some(r), Some(t)) = (inst.result_id, inst.result_type) {
                self.value_types.insert(r, t);
            }
        }
        Ok(())
    }

    /// Every referenced id is defined, and every result type is a type.
    fn check_references(&self, module: &Module) -> Result<(), KernelRejection> {
        for inst in module.all_inst_iter() {
            if let Some(t) = inst.result_type {
                match self.kinds.get(&t) {
                    Some(Kind::Type) => {}
                    Some(_) => return Err(KernelRejection::BadType(t)),
                    None => return Err(KernelRejection::UndefinedId(t)),
                }
            }
            for i in operand_ids(inst) {
                if !self.kinds.contains_key(&i) {
                    return Err(KernelRejection::UndefinedId(i));
                }
            }
        }
        Ok(())
    }

    fn collect_decorations(&mut self, module: &Module) -> Result<(), KernelRejection> {
        for inst in &module.annotations {
            match inst.class.opcode {
                Op::Decorate => {
                    let (Some(target), Some(Operand::Decoration(d))) =
                        (id(inst.operands.first()), inst.operands.get(1))
                    else {
                        return Err(bad_operand(Op::Decorate));
                    };
                    let value = inst.operands.get(2);
                    let entry = self.decorations.entry(target).or_default();
                    let dup = || KernelRejection::DuplicateDecoration {
                        target,
                        decoration: *d as u32,
                    };
                    let literal = || lit(value).ok_or(bad_operand(Op::Decorate));
                    match d {
                        Decoration::SpecId => set_once(&mut entry.spec_id, literal()?, dup)?,
                        Decoration::Binding => set_once(&mut entry.binding, literal()?, dup)?,
                        Decoration::DescriptorSet => set_once(&mut entry.set, literal()?, dup)?,
                        Decoration::ArrayStride => {
                            set_once(&mut entry.array_stride, literal()?, dup)?
                        }
                        Decoration::BuiltIn => match value {
                            Some(Operand::BuiltIn(b)) => set_once(&mut entry.builtin, *b, dup)?,
                            _ => return Err(bad_operand(Op::Decorate)),
                        },
                        Decoration::Block | Decoration::BufferBlock => {
                            if entry.block || entry.buffer_block {
                                return Err(dup());
                            }
                            if *d == Decoration::Block {
                                entry.block = true;
                            } else {
                                entry.buffer_block = true;
                            }
                        }
                        _ => {}
                    }
                }
                Op::MemberDecorate => {
                    let (Some(target), Some(member), Some(Operand::Decoration(d))) = (
                        id(inst.operands.first()),
                        lit(inst.operands.get(1)),
                        inst.operands.get(2),
                    ) else {
                        return Err(bad_operand(Op::MemberDecorate));
                    };
                    let entry = self.members.entry((target, member)).or_default();
                    let dup = || KernelRejection::DuplicateDecoration {
                        target,
                        decoration: *d as u32,
                    };
                    let literal =
                        || lit(inst.operands.get(3)).ok_or(bad_operand(Op::MemberDecorate));
                    match d {
                        Decoration::Offset => set_once(&mut entry.offset, literal()?, dup)?,
                        Decoration::MatrixStride => {
                            set_once(&mut entry.matrix_stride, literal()?, dup)?
                        }
                        Decoration::BuiltIn => {
                            if entry.builtin {
                                return Err(dup());
                            }
                            entry.builtin = true;
                        }
                        _ => {}
                    }
                }
                // Other annotation opcodes are refused by policy before this.
                _ => {}
            }
        }
        Ok(())
    }

    /// The job's specialization as a map from constant id to value;
    /// duplicates are refused.
    fn job_specialization(
        &mut self,
        specialization: &[(u32, u32)],
    ) -> Result<HashMap<u32, u32>, KernelRejection> {
        let mut out = HashMap::new();
        for &(constant_id, value) in specialization {
            if out.insert(constant_id, value).is_some() {
                return Err(KernelRejection::BadSpecialization { constant_id });
            }
        }
        Ok(out)
    }

    fn ty(&self, t: Id) -> Result<&Type, KernelRejection> {
        self.types.get(&t).ok_or(KernelRejection::BadType(t))
    }

    /// The resolved value of an integer scalar constant, as an unsigned
    /// number (negative signed values are refused where a size is needed).
    pub(crate) fn int_value(&self, c: Id) -> Result<u64, KernelRejection> {
        let constant = self
            .constants
            .get(&c)
            .ok_or(KernelRejection::UnresolvableSize)?;
        let Type::Int { width, signed: s } = self.ty(constant.ty)? else {
            return Err(KernelRejection::BadConstant(c));
        };
        match constant.value {
            Value::Scalar(v) => {
                if *s && signed(v, *width) < 0 {
                    return Err(KernelRejection::BadConstant(c));
                }
                Ok(v)
            }
            Value::Null => Ok(0),
            Value::Unresolved => Err(KernelRejection::UnresolvableSize),
            Value::Composite(_) => Err(KernelRejection::BadConstant(c)),
        }
    }

    fn collect_types_and_constants(
        &mut self,
        module: &Module,
        spec: &HashMap<u32, u32>,
    ) -> Result<(), KernelRejection> {
        // Depth and written-out size of each type, to bound every
        // recursive walk over types (ours, the Khronos validator's, the
        // driver's).
        let mut shape: HashMap<Id, (u32, u64)> = HashMap::new();
        for inst in &module.types_global_values {
            let op = inst.class.opcode;
            let Some(r) = inst.result_id else { continue };
            if op.is_type() {
                let t = self.parse_type(inst)?;
                let children: Vec<Id> = match &t {
                    Type::Vector { component, .. } => vec![*component],
                    Type::Matrix { column, .. } => vec![*column],
                    Type::Array { element, .. } | Type::RuntimeArray { element } => vec![*element],
                    Type::Struct { members } => members.clone(),
                    Type::Pointer { pointee, .. } => vec![*pointee],
                    Type::Function { ret, params } => {
                        let mut v = params.clone();
                        v.push(*ret);
                        v
                    }
                    _ => Vec::new(),
                };
                let mut depth = 0u32;
                let mut nodes = 1u64;
                for c in children {
                    // A forward reference: the type is not defined yet.
                    let (d, n) = *shape.get(&c).ok_or(KernelRejection::BadType(r))?;
                    depth = depth.max(d);
                    nodes = nodes.saturating_add(n);
                }
                let depth = depth + 1;
                if depth > MAX_TYPE_DEPTH {
                    return Err(KernelRejection::TooComplex(ComplexityLimit::TypeDepth));
                }
                if nodes > MAX_TYPE_TREE {
                    return Err(KernelRejection::TooComplex(ComplexityLimit::TypeTree));
                }
                shape.insert(r, (depth, nodes));
                self.types.insert(r, t);
            } else if op.is_constant() {
                let c = self.parse_constant(inst, spec)?;
                self.constants.insert(r, c);
            } else if op == Op::Variable {
                let ptr = inst.result_type.ok_or(bad_operand(Op::Variable))?;
                let Type::Pointer { class, pointee } = self.ty(ptr)?.clone() else {
                    return Err(bad_operand(Op::Variable));
                };
                if inst.operands.first() != Some(&Operand::StorageClass(class))
                    || class == StorageClass::Function
                {
                    return Err(bad_operand(Op::Variable));
                }
                let init = match inst.operands.get(1) {
                    None => None,
                    Some(Operand::IdRef(i)) => {
                        // Only constants of the pointee type initialise.
                        if self.constants.get(i).map(|c| c.ty) != Some(pointee) {
                            return Err(bad_operand(Op::Variable));
                        }
                        Some(*i)
                    }
                    Some(_) => return Err(bad_operand(Op::Variable)),
                };
                self.globals.insert(
                    r,
                    Global {
                        class,
                        pointee,
                        init,
                    },
                );
            }
        }
        Ok(())
    }

    fn parse_type(&self, inst: &Instruction) -> Result<Type, KernelRejection> {
        let r = inst.result_id.unwrap_or(0);
        let bad = || KernelRejection::BadType(r);
        let ops = &inst.operands;
        let is_type = |t: Id| self.types.contains_key(&t);
        let t = match inst.class.opcode {
            Op::TypeVoid => Type::Void,
            Op::TypeBool => Type::Bool,
            Op::TypeInt => {
                let width = lit(ops.first()).ok_or_else(bad)?;
                let signedness = lit(ops.get(1)).ok_or_else(bad)?;
                if !matches!(width, 8 | 16 | 32 | 64) || signedness > 1 {
                    return Err(bad());
                }
                Type::Int {
                    width,
                    signed: signedness == 1,
                }
            }
            Op::TypeFloat => {
                let width = lit(ops.first()).ok_or_else(bad)?;
                // No alternative encodings (bfloat16 and friends).
                if !matches!(width, 16 | 32 | 64) || ops.len() != 1 {
                    return Err(bad());
                }
                Type::Float { width }
            }
            Op::TypeVector => {
                let component = id(ops.first()).ok_or_else(bad)?;
                let count = lit(ops.get(1)).ok_or_else(bad)?;
                let scalar = matches!(
                    self.types.get(&component),
                    Some(Type::Bool | Type::Int { .. } | Type::Float { .. })
                );
                if !scalar || !(2..=4).contains(&count) {
                    return Err(bad());
                }
                Type::Vector { component, count }
            }
            Op::TypeMatrix => {
                let column = id(ops.first()).ok_or_else(bad)?;
                let count = lit(ops.get(1)).ok_or_else(bad)?;
                let float_vector = match self.types.get(&column) {
                    Some(Type::Vector { component, .. }) => {
                        matches!(self.types.get(component), Some(Type::Float { .. }))
                    }
                    _ => false,
                };
                if !float_vector || !(2..=4).contains(&count) {
                    return Err(bad());
                }
                Type::Matrix { column, count }
            }
            Op::TypeArray => {
                let element = id(ops.first()).ok_or_else(bad)?;
                let length_id = id(ops.get(1)).ok_or_else(bad)?;
                if !self.is_sized(element) {
                    return Err(bad());
                }
                let length = self.int_value(length_id)?;
                if length == 0 {
                    return Err(KernelRejection::BadConstant(length_id));
                }
                Type::Array { element, length }
            }
            Op::TypeRuntimeArray => {
                let element = id(ops.first()).ok_or_else(bad)?;
                if !self.is_sized(element) {
                    return Err(bad());
                }
                Type::RuntimeArray { element }
            }
            Op::TypeStruct => {
                if ops.len() > MAX_STRUCT_MEMBERS {
                    return Err(KernelRejection::TooComplex(ComplexityLimit::StructMembers));
                }
                let mut members = Vec::with_capacity(ops.len());
                for (i, m) in ops.iter().enumerate() {
                    let m = id(Some(m)).ok_or_else(bad)?;
                    let last = i + 1 == ops.len();
                    let ok = self.is_sized(m)
                        || (last && matches!(self.types.get(&m), Some(Type::RuntimeArray { .. })));
                    if !ok {
                        return Err(bad());
                    }
                    members.push(m);
                }
                Type::Struct { members }
            }
            Op::TypePointer => {
                let class = match ops.first() {
                    Some(Operand::StorageClass(c)) => *c,
                    _ => return Err(bad()),
                };
                let pointee = id(ops.get(1)).ok_or_else(bad)?;
                match self.types.get(&pointee) {
                    None | Some(Type::Void | Type::Function { .. }) => return Err(bad()),
                    Some(_) => {}
                }
                Type::Pointer { class, pointee }
            }
            Op::TypeFunction => {
                let ret = id(ops.first()).ok_or_else(bad)?;
                let mut params = Vec::new();
                for p in &ops[1..] {
                    let p = id(Some(p)).ok_or_else(bad)?;
                    if !is_type(p) || matches!(self.types.get(&p), Some(Type::Void)) {
                        return Err(bad());
                    }
                    params.push(p);
                }
                if !is_type(ret) || params.len() > MAX_PARAMS {
                    return Err(bad());
                }
                Type::Function { ret, params }
            }
            // Every other type opcode is refused by policy before this.
            _ => return Err(bad()),
        };
        Ok(t)
    }

    /// A type with a size: scalars, vectors, matrices, arrays, structs and
    /// pointers (not void, functions or runtime arrays).
    fn is_sized(&self, t: Id) -> bool {
        match self.types.get(&t) {
            Some(Type::Void | Type::Function { .. } | Type::RuntimeArray { .. }) | None => false,
            Some(Type::Struct { members }) => members
                .last()
                .is_none_or(|m| !matches!(self.types.get(m), Some(Type::RuntimeArray { .. }))),
            Some(_) => true,
        }
    }

    fn parse_constant(
        &self,
        inst: &Instruction,
        spec: &HashMap<u32, u32>,
    ) -> Result<Constant, KernelRejection> {
        let r = inst.result_id.unwrap_or(0);
        let bad = || KernelRejection::BadConstant(r);
        let ty = inst.result_type.ok_or_else(bad)?;
        let t = self.ty(ty)?.clone();
        let op = inst.class.opcode;
        let spec_value = || -> Option<u32> {
            let sid = self.decorations.get(&r)?.spec_id?;
            spec.get(&sid).copied()
        };
        let (value, origin) = match op {
            Op::ConstantTrue | Op::ConstantFalse => {
                if t != Type::Bool {
                    return Err(bad());
                }
                (
                    Value::Scalar(u64::from(op == Op::ConstantTrue)),
                    Origin::Plain,
                )
            }
            Op::SpecConstantTrue | Op::SpecConstantFalse => {
                if t != Type::Bool {
                    return Err(bad());
                }
                let default = op == Op::SpecConstantTrue;
                let v = spec_value().map_or(default, |v| v != 0);
                (Value::Scalar(u64::from(v)), Origin::Spec)
            }
            Op::Constant | Op::SpecConstant => {
                let width = match t {
                    Type::Int { width, .. } | Type::Float { width } => width,
                    _ => return Err(bad()),
                };
                let signed_type = matches!(t, Type::Int { signed: true, .. });
                let literal = match inst.operands.as_slice() {
                    [Operand::LiteralBit32(v)] if width <= 32 => {
                        // Narrow literals must be properly extended (zero
                        // for unsigned and floats, sign for signed): the
                        // driver may read only the low bits.
                        let v = u64::from(*v);
                        let low = mask(v, width);
                        let extended = if signed_type {
                            (signed(low, width) as u64) & 0xffff_ffff
                        } else {
                            low
                        };
                        if extended != v {
                            return Err(bad());
                        }
                        low
                    }
                    [Operand::LiteralBit64(v)] if width == 64 => *v,
                    _ => return Err(bad()),
                };
                if op == Op::SpecConstant {
                    let sid = self.decorations.get(&r).and_then(|d| d.spec_id);
                    let value = match sid.and_then(|s| spec.get(&s).map(|v| (s, *v))) {
                        Some((constant_id, _)) if width == 64 => {
                            return Err(KernelRejection::BadSpecialization { constant_id })
                        }
                        // Narrow constants take the low bits of the job's value.
                        Some((_, v)) => mask(u64::from(v), width),
                        None => literal,
                    };
                    (Value::Scalar(value), Origin::Spec)
                } else {
                    (Value::Scalar(literal), Origin::Plain)
                }
            }
            Op::ConstantComposite | Op::SpecConstantComposite => {
                let parts: Vec<Id> = inst
                    .operands
                    .iter()
                    .map(|o| id(Some(o)).ok_or_else(bad))
                    .collect::<Result<_, _>>()?;
                let expected: Vec<Id> = match &t {
                    Type::Vector { component, count } => vec![*component; *count as usize],
                    Type::Matrix { column, count } => vec![*column; *count as usize],
                    Type::Array { element, length } => {
                        if *length != parts.len() as u64 {
                            return Err(bad());
                        }
                        vec![*element; parts.len()]
                    }
                    Type::Struct { members } => members.clone(),
                    _ => return Err(bad()),
                };
                if expected.len() != parts.len()
                    || parts
                        .iter()
                        .zip(&expected)
                        .any(|(p, e)| self.constants.get(p).map(|c| c.ty) != Some(*e))
                {
                    return Err(bad());
                }
                let origin = if op == Op::SpecConstantComposite {
                    Origin::Spec
                } else {
                    Origin::Plain
                };
                (Value::Composite(parts), origin)
            }
            Op::ConstantNull => {
                if !self.is_sized(ty) {
                    return Err(bad());
                }
                (Value::Null, Origin::Plain)
            }
            Op::SpecConstantOp => (self.evaluate(inst, &t)?, Origin::Spec),
            // Every other constant opcode is refused by policy before this.
            _ => return Err(bad()),
        };
        Ok(Constant { ty, value, origin })
    }

    /// Evaluates an `OpSpecConstantOp` over integer and boolean scalars.
    /// Anything else is `Unresolved`: it stays an expression for the
    /// driver, and cannot be used where a size is needed.
    fn evaluate(&self, inst: &Instruction, t: &Type) -> Result<Value, KernelRejection> {
        let r = inst.result_id.unwrap_or(0);
        let bad = || KernelRejection::BadConstant(r);
        let Some(Operand::LiteralSpecConstantOpInteger(op)) = inst.operands.first() else {
            return Err(bad());
        };
        let (width, result_signed) = match t {
            Type::Int { width, signed } => (*width, *signed),
            Type::Bool => (1, false),
            _ => return Ok(Value::Unresolved),
        };
        let _ = result_signed;
        // Operands: (value, width, signed) of each id.
        let mut args = Vec::new();
        for o in &inst.operands[1..] {
            let Some(i) = id(Some(o)) else {
                return Ok(Value::Unresolved);
            };
            let Some(c) = self.constants.get(&i) else {
                return Err(bad());
            };
            let (w, s) = match self.types.get(&c.ty) {
                Some(Type::Int { width, signed }) => (*width, *signed),
                Some(Type::Bool) => (1, false),
                _ => return Ok(Value::Unresolved),
            };
            match c.value {
                Value::Scalar(v) => args.push((v, w, s)),
                Value::Null => args.push((0, w, s)),
                _ => return Ok(Value::Unresolved),
            }
        }
        let a = |i: usize| args.get(i).copied().ok_or_else(bad);
        let b2 = |x: bool| u64::from(x);
        let v = match op {
            Op::IAdd => a(0)?.0.wrapping_add(a(1)?.0),
            Op::ISub => a(0)?.0.wrapping_sub(a(1)?.0),
            Op::IMul => a(0)?.0.wrapping_mul(a(1)?.0),
            Op::UDiv | Op::UMod | Op::SDiv | Op::SRem | Op::SMod => {
                let (x, w, _) = a(0)?;
                let (y, _, _) = a(1)?;
                if mask(y, w) == 0 {
                    return Err(bad());
                }
                match op {
                    Op::UDiv => mask(x, w) / mask(y, w),
                    Op::UMod => mask(x, w) % mask(y, w),
                    _ => {
                        let (sx, sy) = (signed(mask(x, w), w), signed(mask(y, w), w));
                        let q = match op {
                            Op::SDiv => sx.checked_div(sy),
                            Op::SRem => sx.checked_rem(sy),
                            _ => sx.checked_rem(sy).map(|m| {
                                if m != 0 && (m < 0) != (sy < 0) {
                                    m + sy
                                } else {
                                    m
                                }
                            }),
                        };
                        q.ok_or_else(bad)? as u64
                    }
                }
            }
            Op::SNegate => 0u64.wrapping_sub(a(0)?.0),
            Op::Not => !a(0)?.0,
            Op::BitwiseAnd => a(0)?.0 & a(1)?.0,
            Op::BitwiseOr => a(0)?.0 | a(1)?.0,
            Op::BitwiseXor => a(0)?.0 ^ a(1)?.0,
            Op::ShiftLeftLogical | Op::ShiftRightLogical | Op::ShiftRightArithmetic => {
                let (x, w, _) = a(0)?;
                let s = a(1)?.0;
                if s >= u64::from(w) {
                    return Err(bad());
                }
                match op {
                    Op::ShiftLeftLogical => x << s,
                    Op::ShiftRightLogical => mask(x, w) >> s,
                    _ => (signed(mask(x, w), w) >> s) as u64,
                }
            }
            Op::UConvert => mask(a(0)?.0, a(0)?.1),
            Op::SConvert => signed(mask(a(0)?.0, a(0)?.1), a(0)?.1) as u64,
            Op::Select => {
                if a(0)?.0 != 0 {
                    a(1)?.0
                } else {
                    a(2)?.0
                }
            }
            Op::LogicalOr => b2(a(0)?.0 != 0 || a(1)?.0 != 0),
            Op::LogicalAnd => b2(a(0)?.0 != 0 && a(1)?.0 != 0),
            Op::LogicalNot => b2(a(0)?.0 == 0),
            Op::LogicalEqual | Op::IEqual => b2(a(0)?.0 == a(1)?.0),
            Op::LogicalNotEqual | Op::INotEqual => b2(a(0)?.0 != a(1)?.0),
            Op::ULessThan => b2(a(0)?.0 < a(1)?.0),
            Op::UGreaterThan => b2(a(0)?.0 > a(1)?.0),
            Op::ULessThanEqual => b2(a(0)?.0 <= a(1)?.0),
            Op::UGreaterThanEqual => b2(a(0)?.0 >= a(1)?.0),
            Op::SLessThan | Op::SGreaterThan | Op::SLessThanEqual | Op::SGreaterThanEqual => {
                let (x, w, _) = a(0)?;
                let (y, wy, _) = a(1)?;
                let (x, y) = (signed(mask(x, w), w), signed(mask(y, wy), wy));
                b2(match op {
                    Op::SLessThan => x < y,
                    Op::SGreaterThan => x > y,
                    Op::SLessThanEqual => x <= y,
                    _ => x >= y,
                })
            }
            _ => return Ok(Value::Unresolved),
        };
        Ok(Value::Scalar(mask(v, width)))
    }

    fn collect_functions(&mut self, module: &Module) -> Result<(), KernelRejection> {
        for func in &module.functions {
            let def = func.def.as_ref().ok_or(KernelRejection::BadFunction)?;
            let fid = def.result_id.ok_or(KernelRejection::BadFunction)?;
            if func.end.is_none() || func.blocks.is_empty() {
                return Err(KernelRejection::BadFunction);
            }
            let fn_type = id(def.operands.get(1)).ok_or(bad_operand(Op::Function))?;
            let Some(Type::Function { ret, params }) = self.types.get(&fn_type).cloned() else {
                return Err(bad_operand(Op::Function));
            };
            if def.result_type != Some(ret)
                || params.len() != func.parameters.len()
                || params
                    .iter()
                    .zip(&func.parameters)
                    .any(|(t, p)| p.result_type != Some(*t))
            {
                return Err(bad_operand(Op::Function));
            }
            let mut info = FunctionInfo {
                ret,
                params,
                callees: Vec::new(),
                instructions: func
                    .blocks
                    .iter()
                    .map(|b| b.instructions.len() as u64 + 1)
                    .sum(),
            };
            let mut locals = 0;
            for (b, block) in func.blocks.iter().enumerate() {
                let mut leading = true;
                let n = block.instructions.len();
                for (k, inst) in block.instructions.iter().enumerate() {
                    let op = inst.class.opcode;
                    let last = k + 1 == n;
                    // A terminator ends every block, and only the last
                    // instruction is one.
                    if is_terminator(op) != last {
                        return Err(KernelRejection::BadFunction);
                    }
                    match op {
                        Op::Variable => {
                            // Function variables open the first block.
                            if b != 0 || !leading {
                                return Err(KernelRejection::BadFunction);
                            }
                            let t = inst.result_type.ok_or(bad_operand(op))?;
                            let ok = matches!(
                                self.types.get(&t),
                                Some(Type::Pointer {
                                    class: StorageClass::Function,
                                    ..
                                })
                            ) && inst.operands.first()
                                == Some(&Operand::StorageClass(StorageClass::Function));
                            if !ok {
                                return Err(bad_operand(op));
                            }
                            if let Some(init) = inst.operands.get(1) {
                                let init = id(Some(init)).ok_or(bad_operand(op))?;
                                if !self.constants.contains_key(&init) {
                                    return Err(bad_operand(op));
                                }
                            }
                            locals += 1;
                            continue;
                        }
                        Op::Line | Op::NoLine => continue,
                        Op::FunctionCall => {
                            let callee = id(inst.operands.first()).ok_or(bad_operand(op))?;
                            if self.kinds.get(&callee) != Some(&Kind::Function) {
                                return Err(bad_operand(op));
                            }
                            info.callees.push(callee);
                        }
                        Op::AccessChain | Op::InBoundsAccessChain
                            if inst.operands.len() > MAX_CHAIN_INDICES + 1 =>
                        {
                            return Err(KernelRejection::TooComplex(
                                ComplexityLimit::AccessChainIndices,
                            ));
                        }
                        Op::Switch if inst.operands.len() > 2 * MAX_SWITCH_TARGETS + 2 => {
                            return Err(KernelRejection::TooComplex(
                                ComplexityLimit::SwitchTargets,
                            ));
                        }
                        _ => {}
                    }
                    leading = false;
                }
            }
            if locals > MAX_LOCALS {
                return Err(KernelRejection::TooComplex(ComplexityLimit::LocalVariables));
            }
            self.functions.insert(fid, info);
        }
        Ok(())
    }

    fn collect_entry_point(&mut self, module: &Module) -> Result<(), KernelRejection> {
        // Policy made sure there is exactly one GLCompute entry point.
        let ep = module
            .entry_points
            .first()
            .ok_or(KernelRejection::NoEntryPoint)?;
        if ep.operands.first() != Some(&Operand::ExecutionModel(ExecutionModel::GLCompute)) {
            return Err(bad_operand(Op::EntryPoint));
        }
        let function = id(ep.operands.get(1)).ok_or(bad_operand(Op::EntryPoint))?;
        match self
            .types
            .get(self.value_types.get(&function).unwrap_or(&0))
        {
            Some(Type::Void) if self.functions.contains_key(&function) => {}
            _ => return Err(bad_operand(Op::EntryPoint)),
        }
        let mut interface = Vec::new();
        for o in ep.operands.iter().skip(3) {
            let v = id(Some(o)).ok_or(bad_operand(Op::EntryPoint))?;
            if !self.globals.contains_key(&v) || interface.contains(&v) {
                return Err(bad_operand(Op::EntryPoint));
            }
            interface.push(v);
        }
        self.entry = EntryPoint {
            function,
            interface,
        };
        Ok(())
    }

    /// Bounds every function's size with its calls inlined, as drivers
    /// inline them: a tree of calls (each function calling the next twice)
    /// is small in the module and exponential in the compiler. The call
    /// graph has no cycle (checked before), so sizes are computed callees
    /// first.
    fn check_inlined_size(&self) -> Result<(), KernelRejection> {
        let mut size: HashMap<Id, u64> = HashMap::new();
        let mut ids: Vec<Id> = self.functions.keys().copied().collect();
        ids.sort_unstable();
        for root in ids {
            let mut stack = vec![root];
            while let Some(&f) = stack.last() {
                if size.contains_key(&f) {
                    stack.pop();
                    continue;
                }
                let info = &self.functions[&f];
                let pending: Vec<Id> = info
                    .callees
                    .iter()
                    .copied()
                    .filter(|c| !size.contains_key(c))
                    .collect();
                if pending.is_empty() {
                    let total = info.callees.iter().fold(info.instructions, |n, c| {
                        n.saturating_add(size.get(c).copied().unwrap_or(0))
                    });
                    if total > MAX_INLINED_INSTRUCTIONS {
                        return Err(KernelRejection::TooComplex(ComplexityLimit::InlinedSize));
                    }
                    size.insert(f, total);
                    stack.pop();
                } else {
                    stack.extend(pending);
                }
            }
        }
        Ok(())
    }

    /// Refuses recursion and finds what the entry point reaches.
    fn find_reachable(&mut self) -> Result<(), KernelRejection> {
        // Depth-first search over the call graph with three colours; an
        // explicit stack keeps a deep call chain off the Rust stack.
        #[derive(Clone, Copy, PartialEq)]
        enum Colour {
            Open,
            Done,
        }
        let mut colour: HashMap<Id, Colour> = HashMap::new();
        let mut ids: Vec<Id> = self.functions.keys().copied().collect();
        ids.sort_unstable();
        for root in ids {
            if colour.contains_key(&root) {
                continue;
            }
            let mut stack: Vec<(Id, usize)> = vec![(root, 0)];
            colour.insert(root, Colour::Open);
            while let Some((f, next)) = stack.last().copied() {
                let callees = &self.functions[&f].callees;
                if next < callees.len() {
                    if let Some(top) = stack.last_mut() {
                        top.1 += 1;
                    }
                    let c = callees[next];
                    match colour.get(&c) {
                        Some(Colour::Open) => return Err(KernelRejection::Recursion),
                        Some(Colour::Done) => {}
                        None => {
                            colour.insert(c, Colour::Open);
                            stack.push((c, 0));
                        }
                    }
                } else {
                    colour.insert(f, Colour::Done);
                    stack.pop();
                }
            }
        }
        let mut todo = vec![self.entry.function];
        while let Some(f) = todo.pop() {
            if self.reachable.insert(f) {
                todo.extend(self.functions[&f].callees.iter().copied());
            }
        }
        Ok(())
    }

    /// Marks the globals used by functions reachable from the entry point.
    fn mark_used_globals(&mut self, module: &Module) {
        for func in &module.functions {
            let Some(fid) = func.def.as_ref().and_then(|d| d.result_id) else {
                continue;
            };
            if !self.reachable.contains(&fid) {
                continue;
            }
            for inst in func.all_inst_iter() {
                for i in operand_ids(inst) {
                    if self.globals.contains_key(&i) {
                        self.used_globals.insert(i);
                    }
                }
            }
        }
    }

    fn resolve_workgroup_size(&self, module: &Module) -> Result<[u32; 3], KernelRejection> {
        let u32_of = |c: Id| -> Result<u32, KernelRejection> {
            u32::try_from(self.int_value(c)?).map_err(|_| KernelRejection::BadConstant(c))
        };
        // A constant decorated BuiltIn WorkgroupSize overrides the execution
        // mode; two would leave the size to whichever a reader takes.
        let mut decorated: Vec<Id> = self
            .decorations
            .iter()
            .filter(|(_, d)| d.builtin == Some(BuiltIn::WorkgroupSize))
            .map(|(t, _)| *t)
            .collect();
        decorated.sort_unstable();
        if let Some(second) = decorated.get(1) {
            return Err(KernelRejection::DuplicateDecoration {
                target: *second,
                decoration: Decoration::BuiltIn as u32,
            });
        }
        if let Some(target) = decorated.first() {
            let c = self
                .constants
                .get(target)
                .ok_or(bad_operand(Op::Decorate))?;
            let Value::Composite(parts) = &c.value else {
                return Err(KernelRejection::UnresolvableSize);
            };
            if parts.len() != 3 {
                return Err(KernelRejection::BadConstant(*target));
            }
            return Ok([u32_of(parts[0])?, u32_of(parts[1])?, u32_of(parts[2])?]);
        }
        let mut found = None;
        for inst in &module.execution_modes {
            let size = match inst.operands.get(1) {
                Some(Operand::ExecutionMode(ExecutionMode::LocalSize)) => {
                    let mut size = [0u32; 3];
                    for (i, s) in size.iter_mut().enumerate() {
                        *s = lit(inst.operands.get(2 + i)).ok_or(bad_operand(inst.class.opcode))?;
                    }
                    size
                }
                Some(Operand::ExecutionMode(ExecutionMode::LocalSizeId)) => {
                    let mut size = [0u32; 3];
                    for (i, s) in size.iter_mut().enumerate() {
                        let c =
                            id(inst.operands.get(2 + i)).ok_or(bad_operand(inst.class.opcode))?;
                        *s = u32_of(c)?;
                    }
                    size
                }
                _ => continue,
            };
            if found.is_some() {
                return Err(bad_operand(inst.class.opcode));
            }
            found = Some(size);
        }
        found.ok_or(KernelRejection::MissingWorkgroupSize)
    }

    /// Byte size of a type, never less than the driver may lay it out in:
    /// the larger of its natural size (members one after another, a
    /// 3-vector taking the room of a 4-vector) and what its explicit
    /// offsets, array strides and matrix strides say (a driver follows
    /// those in blocks, and a kernel can make them larger than natural).
    /// Runtime arrays count as zero. Types are bounded in depth and tree
    /// size, so the recursion is too.
    pub(crate) fn size_of(&self, t: Id) -> u64 {
        self.size_with_matrix_stride(t, None)
    }

    fn size_with_matrix_stride(&self, t: Id, matrix_stride: Option<u32>) -> u64 {
        match self.types.get(&t) {
            Some(Type::Matrix { column, count }) => {
                let natural = self.natural(t).0;
                // Column- or row-major: the stride steps over the columns
                // or over the rows; count the larger.
                let rows = match self.types.get(column) {
                    Some(Type::Vector { count, .. }) => u64::from(*count),
                    _ => 1,
                };
                let strided = u64::from(matrix_stride.unwrap_or(0))
                    .saturating_mul(u64::from(*count).max(rows));
                natural.max(strided)
            }
            Some(Type::Array { element, length }) => {
                let elem = self.size_with_matrix_stride(*element, matrix_stride);
                let stride = match self.decorations.get(&t).and_then(|d| d.array_stride) {
                    Some(s) => u64::from(s).max(elem),
                    None => elem,
                };
                stride.saturating_mul(*length).max(self.natural(t).0)
            }
            Some(Type::Struct { members }) => {
                let mut explicit = 0u64;
                for (i, m) in members.iter().enumerate() {
                    let d = self.members.get(&(t, i as u32));
                    let size = self.size_with_matrix_stride(*m, d.and_then(|d| d.matrix_stride));
                    if let Some(off) = d.and_then(|d| d.offset) {
                        explicit = explicit.max(u64::from(off).saturating_add(size));
                    }
                }
                explicit.max(self.natural(t).0)
            }
            _ => self.natural(t).0,
        }
    }

    /// Size and alignment of a type in a natural layout: each scalar, vector
    /// (a 3-vector as a 4-vector) and matrix column aligned to its size,
    /// arrays of elements padded to their alignment, struct members at their
    /// alignment and the struct padded to its own (what drivers allocate
    /// for workgroup, private and function memory). Saturating.
    pub(crate) fn natural(&self, t: Id) -> (u64, u64) {
        let round = |n: u64, a: u64| n.div_ceil(a.max(1)).saturating_mul(a.max(1));
        match self.types.get(&t) {
            Some(Type::Bool) => (4, 4),
            Some(Type::Int { width, .. } | Type::Float { width }) => {
                let b = u64::from(*width / 8);
                (b, b)
            }
            Some(Type::Vector { component, count }) => {
                let n = if *count == 3 { 4 } else { u64::from(*count) };
                let b = self.natural(*component).0.saturating_mul(n);
                (b, b)
            }
            Some(Type::Matrix { column, count }) => {
                let (c, a) = self.natural(*column);
                (c.saturating_mul(u64::from(*count)), a)
            }
            Some(Type::Array { element, length }) => {
                let (e, a) = self.natural(*element);
                (round(e, a).saturating_mul(*length), a)
            }
            Some(Type::Struct { members }) => {
                let mut offset = 0u64;
                let mut align = 1u64;
                for m in members {
                    let (size, a) = self.natural(*m);
                    offset = round(offset, a).saturating_add(size);
                    align = align.max(a);
                }
                (round(offset, align), align)
            }
            Some(Type::Pointer { .. }) => (8, 8),
            _ => (0, 1),
        }
    }

    /// How many scalars a value of the type holds (vectors, matrices and
    /// arrays multiplied out, struct members summed; runtime arrays 0,
    /// pointers 1), saturating.
    pub(crate) fn scalars(&self, t: Id) -> u64 {
        match self.types.get(&t) {
            Some(Type::Vector { count, .. }) => u64::from(*count),
            Some(Type::Matrix { column, count }) => {
                self.scalars(*column).saturating_mul(u64::from(*count))
            }
            Some(Type::Array { element, length }) => self.scalars(*element).saturating_mul(*length),
            Some(Type::Struct { members }) => members
                .iter()
                .fold(0u64, |n, m| n.saturating_add(self.scalars(*m))),
            Some(Type::RuntimeArray { .. } | Type::Void | Type::Function { .. }) | None => 0,
            Some(_) => 1,
        }
    }

    /// Whether a type is or contains a pointer, or contains a runtime array.
    pub(crate) fn contains(&self, t: Id, pred: &dyn Fn(&Type) -> bool) -> bool {
        let Some(ty) = self.types.get(&t) else {
            return false;
        };
        if pred(ty) {
            return true;
        }
        match ty {
            Type::Vector { component, .. } => self.contains(*component, pred),
            Type::Matrix { column, .. } => self.contains(*column, pred),
            Type::Array { element, .. } | Type::RuntimeArray { element } => {
                self.contains(*element, pred)
            }
            Type::Struct { members } => members.iter().any(|m| self.contains(*m, pred)),
            _ => false,
        }
    }

    /// The pointer type of a value, as (storage class, pointee), if it is one.
    pub(crate) fn pointer_of(&self, value: Id) -> Option<(StorageClass, Id)> {
        match self.types.get(self.value_types.get(&value)?) {
            Some(Type::Pointer { class, pointee }) => Some((*class, *pointee)),
            _ => None,
        }
    }
}

fn set_once<T>(
    slot: &mut Option<T>,
    value: T,
    dup: impl Fn() -> KernelRejection,
) -> Result<(), KernelRejection> {
    if slot.is_some() {
        return Err(dup());
    }
    *slot = Some(value);
    Ok(())
}

pub(crate) fn is_terminator(op: Op) -> bool {
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
