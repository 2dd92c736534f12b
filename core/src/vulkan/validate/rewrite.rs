//! The rewrite: what the driver gets is the validated module made safe to
//! compile and run, in five passes over it.
//!
//! 1. **Specialization baked in.** Every specialization constant becomes a
//!    plain constant of the value the facts resolved (and `SpecId` goes),
//!    so the driver cannot read a value other than the one validated.
//! 2. **Promises removed.** Hints that are undefined behaviour when false,
//!    and that a hostile kernel makes false to have the driver's compiler
//!    drop its own checks: `InBounds` access chains, loop and function
//!    controls, `Aligned` memory operands, the `Uniform`, `NoSignedWrap`
//!    and `NoUnsignedWrap` decorations, and `OpUnreachable` (made a return).
//! 3. **Indices clamped.** Every dynamic index into memory that robust
//!    buffer access does not cover (workgroup, private, function, push
//!    constant, input) and every dynamic vector component index is replaced
//!    by `UMin(index, len - 1)`.
//! 4. **Memory zeroed.** Workgroup variables: null initializers where the
//!    device zeroes workgroup memory itself, else a store of zeros by the
//!    first invocation of each workgroup at the entry point, then a
//!    barrier. Private and function variables: null initializers. Undefined
//!    values: null constants.
//! 5. **A watchdog on every loop.** Each loop's back edge reads a flag in a
//!    host-visible buffer (set 1, binding 0), with an atomic load at device
//!    scope, and leaves the loop once the host has set it: a kernel that ran
//!    out its time stops within one iteration, so the device can be
//!    reclaimed.

use super::super::error::KernelRejection;
use super::facts::{id, signed, Facts, Id, Origin, Type, Value};
use rspirv::dr::{Block, Instruction, Module, Operand};
use rspirv::spirv::{
    BuiltIn, Decoration, FunctionControl, LoopControl, MemoryAccess, Op, StorageClass,
};
use std::collections::HashMap;

/// GLSL.std.450 `UMin`.
const GLSL_UMIN: u32 = 38;
/// Objects of at most this many scalars are zeroed by one null store (or a
/// null initializer); larger ones by loops.
const SMALL_OBJECT: u64 = 64;
/// The watchdog buffer's descriptor set and binding.
pub(crate) const WATCHDOG_SET: u32 = 1;
/// See [`WATCHDOG_SET`].
pub(crate) const WATCHDOG_BINDING: u32 = 0;

/// How workgroup memory is zeroed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ZeroWorkgroup {
    /// Null initializers (the device has `shaderZeroInitializeWorkgroupMemory`).
    NullInitializers,
    /// Stores injected at the entry point, then a barrier.
    Code,
}

/// What the rewrite added that the pipeline must provide.
pub(crate) struct Rewritten {
    /// The module reads the watchdog flag (it has loops).
    pub watchdog: bool,
}

/// Code being generated: finished blocks, and the open block at the end.
struct Emitter {
    blocks: Vec<Block>,
    label: Id,
    body: Vec<Instruction>,
}

impl Emitter {
    /// An open block labelled `label`, starting with `instructions`.
    fn new(label: Id, instructions: Vec<Instruction>) -> Emitter {
        Emitter {
            blocks: Vec::new(),
            label,
            body: instructions,
        }
    }

    fn push(&mut self, inst: Instruction) {
        self.body.push(inst);
    }

    /// Ends the open block with `terminator` and opens the block `next`.
    fn close(&mut self, terminator: Instruction, next: Id) {
        let mut body = std::mem::take(&mut self.body);
        body.push(terminator);
        self.blocks.push(Block {
            label: Some(Instruction::new(Op::Label, None, Some(self.label), vec![])),
            instructions: body,
        });
        self.label = next;
    }

    /// Ends the open block with `terminator`; returns every block.
    fn finish(mut self, terminator: Instruction) -> Vec<Block> {
        self.close(terminator, 0);
        self.blocks
    }
}

struct Rewriter<'a> {
    module: &'a mut Module,
    facts: &'a Facts,
    bound: u32,
    /// Types found or added: (shape) → id.
    types: HashMap<Type, Id>,
    /// Instructions to append to the types and globals section, in order.
    new_globals: Vec<Instruction>,
    new_annotations: Vec<Instruction>,
    /// Globals the entry point's interface must list, with their class.
    new_interface: Vec<(Id, StorageClass)>,
    glsl: Option<Id>,
    u32_constants: HashMap<(Id, u64), Id>,
    undefs: HashMap<Id, Id>,
    nulls: HashMap<Id, Id>,
}

pub(crate) fn rewrite(
    module: &mut Module,
    facts: &Facts,
    version: u32,
    zero: ZeroWorkgroup,
) -> Result<Rewritten, KernelRejection> {
    let bound = module.header.as_ref().map_or(0, |h| h.bound);
    let mut types = HashMap::new();
    // Existing non-aggregate types are reused (declaring one twice is
    // invalid); the first declaration wins.
    for inst in &module.types_global_values {
        if let Some(r) = inst.result_id {
            if let Some(t) = facts.types.get(&r) {
                if !matches!(t, Type::Struct { .. } | Type::Array { .. }) {
                    types.entry(t.clone()).or_insert(r);
                }
            }
        }
    }
    let glsl = module.ext_inst_imports.first().and_then(|i| i.result_id);
    let mut rw = Rewriter {
        module,
        facts,
        bound,
        types,
        new_globals: Vec::new(),
        new_annotations: Vec::new(),
        new_interface: Vec::new(),
        glsl,
        u32_constants: HashMap::new(),
        undefs: HashMap::new(),
        nulls: HashMap::new(),
    };
    rw.bake_specialization()?;
    rw.remove_promises()?;
    rw.clamp_indices()?;
    rw.zero_memory(zero)?;
    let watchdog = rw.watchdog(version)?;
    rw.finish(version);
    Ok(Rewritten { watchdog })
}

impl Rewriter<'_> {
    fn fresh(&mut self) -> Result<Id, KernelRejection> {
        let id = self.bound;
        // Ids stay below the parser's bound limit plus what we add; a
        // module near u32::MAX cannot get here (the bound is ≤ 2^22).
        self.bound = self
            .bound
            .checked_add(1)
            .ok_or(KernelRejection::IdOutOfBounds)?;
        Ok(id)
    }

    /// The id of a type, declared if the module lacks it.
    fn type_id(&mut self, t: Type) -> Result<Id, KernelRejection> {
        if let Some(i) = self.types.get(&t) {
            return Ok(*i);
        }
        let r = self.fresh()?;
        let inst = match &t {
            Type::Void => Instruction::new(Op::TypeVoid, None, Some(r), vec![]),
            Type::Bool => Instruction::new(Op::TypeBool, None, Some(r), vec![]),
            Type::Int { width, signed } => Instruction::new(
                Op::TypeInt,
                None,
                Some(r),
                vec![
                    Operand::LiteralBit32(*width),
                    Operand::LiteralBit32(u32::from(*signed)),
                ],
            ),
            Type::Pointer { class, pointee } => Instruction::new(
                Op::TypePointer,
                None,
                Some(r),
                vec![Operand::StorageClass(*class), Operand::IdRef(*pointee)],
            ),
            Type::Struct { members } => Instruction::new(
                Op::TypeStruct,
                None,
                Some(r),
                members.iter().map(|m| Operand::IdRef(*m)).collect(),
            ),
            // Only the shapes above are ever added.
            _ => return Err(KernelRejection::BadType(r)),
        };
        self.new_globals.push(inst);
        self.types.insert(t, r);
        Ok(r)
    }

    fn uint(&mut self) -> Result<Id, KernelRejection> {
        self.type_id(Type::Int {
            width: 32,
            signed: false,
        })
    }

    fn bool_type(&mut self) -> Result<Id, KernelRejection> {
        self.type_id(Type::Bool)
    }

    /// An integer constant of type `ty` (32 or 64 bits wide).
    fn int_constant(&mut self, ty: Id, value: u64) -> Result<Id, KernelRejection> {
        if let Some(c) = self.u32_constants.get(&(ty, value)) {
            return Ok(*c);
        }
        let wide = matches!(self.type_shape(ty), Some(Type::Int { width: 64, .. }));
        let r = self.fresh()?;
        let literal = if wide {
            Operand::LiteralBit64(value)
        } else {
            Operand::LiteralBit32(value as u32)
        };
        self.new_globals.push(Instruction::new(
            Op::Constant,
            Some(ty),
            Some(r),
            vec![literal],
        ));
        self.u32_constants.insert((ty, value), r);
        Ok(r)
    }

    fn type_shape(&self, t: Id) -> Option<Type> {
        self.facts.types.get(&t).cloned().or_else(|| {
            self.types
                .iter()
                .find(|(_, i)| **i == t)
                .map(|(s, _)| s.clone())
        })
    }

    /// A value of type `ty` for places where any value will do (a phi's
    /// new incoming edge, a return from what was unreachable): a null
    /// constant, or `OpUndef` for a pointer (which has no null without
    /// variable pointers).
    fn undef(&mut self, ty: Id) -> Result<Id, KernelRejection> {
        if !matches!(self.type_shape(ty), Some(Type::Pointer { .. })) {
            return self.null(ty);
        }
        if let Some(u) = self.undefs.get(&ty) {
            return Ok(*u);
        }
        let r = self.fresh()?;
        self.new_globals
            .push(Instruction::new(Op::Undef, Some(ty), Some(r), vec![]));
        self.undefs.insert(ty, r);
        Ok(r)
    }

    fn glsl(&mut self) -> Result<Id, KernelRejection> {
        if let Some(g) = self.glsl {
            return Ok(g);
        }
        let g = self.fresh()?;
        self.module.ext_inst_imports.push(Instruction::new(
            Op::ExtInstImport,
            None,
            Some(g),
            vec![Operand::LiteralString("GLSL.std.450".into())],
        ));
        self.glsl = Some(g);
        Ok(g)
    }

    /// Pass 1: specialization constants become plain constants of their
    /// resolved values.
    fn bake_specialization(&mut self) -> Result<(), KernelRejection> {
        let facts = self.facts;
        for inst in &mut self.module.types_global_values {
            let Some(r) = inst.result_id else { continue };
            let Some(c) = facts.constants.get(&r) else {
                continue;
            };
            if c.origin != Origin::Spec {
                continue;
            }
            let ty = c.ty;
            *inst = match (&c.value, facts.types.get(&ty)) {
                (Value::Scalar(v), Some(Type::Bool)) => {
                    let op = if *v != 0 {
                        Op::ConstantTrue
                    } else {
                        Op::ConstantFalse
                    };
                    Instruction::new(op, Some(ty), Some(r), vec![])
                }
                (
                    Value::Scalar(v),
                    Some(Type::Int { width: 64, .. } | Type::Float { width: 64 }),
                ) => Instruction::new(
                    Op::Constant,
                    Some(ty),
                    Some(r),
                    vec![Operand::LiteralBit64(*v)],
                ),
                (Value::Scalar(v), Some(Type::Int { width, signed: s })) => {
                    // Narrow signed constants are sign-extended in their word.
                    let word = if *s {
                        signed(*v, *width) as u32
                    } else {
                        *v as u32
                    };
                    Instruction::new(
                        Op::Constant,
                        Some(ty),
                        Some(r),
                        vec![Operand::LiteralBit32(word)],
                    )
                }
                (Value::Scalar(v), Some(Type::Float { .. })) => Instruction::new(
                    Op::Constant,
                    Some(ty),
                    Some(r),
                    vec![Operand::LiteralBit32(*v as u32)],
                ),
                (Value::Composite(parts), _) => Instruction::new(
                    Op::ConstantComposite,
                    Some(ty),
                    Some(r),
                    parts.iter().map(|p| Operand::IdRef(*p)).collect(),
                ),
                // An expression left for the driver (never a size).
                (Value::Unresolved, _) => continue,
                _ => return Err(KernelRejection::BadConstant(r)),
            };
        }
        self.module.annotations.retain(|a| {
            !(a.class.opcode == Op::Decorate
                && a.operands.get(1) == Some(&Operand::Decoration(Decoration::SpecId)))
        });
        Ok(())
    }

    /// Pass 2: hints that are undefined behaviour when false go.
    fn remove_promises(&mut self) -> Result<(), KernelRejection> {
        self.module.annotations.retain(|a| {
            !matches!(
                a.operands.get(1),
                Some(Operand::Decoration(
                    Decoration::Uniform | Decoration::NoSignedWrap | Decoration::NoUnsignedWrap
                ))
            ) || a.class.opcode != Op::Decorate
        });
        let mut returns: Vec<(usize, Id)> = Vec::new();
        for (fi, f) in self.module.functions.iter_mut().enumerate() {
            if let Some(def) = f.def.as_mut() {
                if let Some(Operand::FunctionControl(c)) = def.operands.first_mut() {
                    *c = FunctionControl::NONE;
                }
                if let Some(ret) = def.result_type {
                    returns.push((fi, ret));
                }
            }
            for block in &mut f.blocks {
                for inst in &mut block.instructions {
                    match inst.class.opcode {
                        Op::InBoundsAccessChain => {
                            *inst = Instruction::new(
                                Op::AccessChain,
                                inst.result_type,
                                inst.result_id,
                                std::mem::take(&mut inst.operands),
                            );
                        }
                        Op::LoopMerge => {
                            inst.operands.truncate(2);
                            inst.operands.push(Operand::LoopControl(LoopControl::NONE));
                        }
                        Op::Load | Op::Store | Op::CopyMemory => {
                            let mut out = Vec::with_capacity(inst.operands.len());
                            let mut skip = false;
                            for o in std::mem::take(&mut inst.operands) {
                                if skip {
                                    skip = false;
                                    continue;
                                }
                                if let Operand::MemoryAccess(m) = o {
                                    skip = m.contains(MemoryAccess::ALIGNED);
                                    out.push(Operand::MemoryAccess(m - MemoryAccess::ALIGNED));
                                } else {
                                    out.push(o);
                                }
                            }
                            inst.operands = out;
                        }
                        _ => {}
                    }
                }
            }
        }
        // OpUnreachable, when reached, lets the compiler assume anything;
        // a return is always a valid terminator instead.
        for (fi, ret) in returns {
            let void = matches!(self.facts.types.get(&ret), Some(Type::Void));
            let value = if void { None } else { Some(self.undef(ret)?) };
            for block in &mut self.module.functions[fi].blocks {
                if let Some(last) = block.instructions.last_mut() {
                    if last.class.opcode == Op::Unreachable {
                        *last = match value {
                            None => Instruction::new(Op::Return, None, None, vec![]),
                            Some(v) => Instruction::new(
                                Op::ReturnValue,
                                None,
                                None,
                                vec![Operand::IdRef(v)],
                            ),
                        };
                    }
                }
            }
        }
        Ok(())
    }

    /// An index operand made safe for `len` elements: narrow indices are
    /// widened to 32 bits (unsigned, so a negative one becomes large),
    /// then `UMin(index, len - 1)`. Returns the instructions to insert
    /// before the user and the clamped id.
    fn clamp(
        &mut self,
        index: Id,
        len: u64,
        out: &mut Vec<Instruction>,
    ) -> Result<Id, KernelRejection> {
        let facts = self.facts;
        let bad = || KernelRejection::BadOperand {
            opcode: Op::AccessChain as u32,
        };
        // A constant index already in range stays.
        if let Some(c) = facts.constants.get(&index) {
            if let (Value::Scalar(v), Some(Type::Int { width, signed: s })) =
                (&c.value, facts.types.get(&c.ty))
            {
                let negative = *s && signed(*v, *width) < 0;
                if !negative && *v < len {
                    return Ok(index);
                }
            }
        }
        let ty = *facts.value_types.get(&index).ok_or_else(bad)?;
        let Some(Type::Int { width, .. }) = facts.types.get(&ty) else {
            return Err(bad());
        };
        let glsl = self.glsl()?;
        let (value, ty) = if *width < 32 {
            let u = self.uint()?;
            let widened = self.fresh()?;
            out.push(Instruction::new(
                Op::UConvert,
                Some(u),
                Some(widened),
                vec![Operand::IdRef(index)],
            ));
            (widened, u)
        } else {
            (index, ty)
        };
        let max = self.int_constant(ty, len.saturating_sub(1))?;
        let clamped = self.fresh()?;
        out.push(Instruction::new(
            Op::ExtInst,
            Some(ty),
            Some(clamped),
            vec![
                Operand::IdRef(glsl),
                Operand::LiteralExtInstInteger(GLSL_UMIN),
                Operand::IdRef(value),
                Operand::IdRef(max),
            ],
        ));
        Ok(clamped)
    }

    /// Pass 3: indices into memory robust buffer access does not cover,
    /// and dynamic vector components, are clamped.
    fn clamp_indices(&mut self) -> Result<(), KernelRejection> {
        let facts = self.facts;
        let bad = |op: Op| KernelRejection::BadOperand { opcode: op as u32 };
        let mut functions = std::mem::take(&mut self.module.functions);
        let result = (|| {
            for f in &mut functions {
                for block in &mut f.blocks {
                    let mut out = Vec::with_capacity(block.instructions.len());
                    for mut inst in std::mem::take(&mut block.instructions) {
                        let op = inst.class.opcode;
                        match op {
                            Op::AccessChain => {
                                let base = id(inst.operands.first()).ok_or(bad(op))?;
                                let (class, mut current) = facts.pointer_of(base).ok_or(bad(op))?;
                                let covered = matches!(
                                    class,
                                    StorageClass::StorageBuffer | StorageClass::Uniform
                                );
                                for k in 1..inst.operands.len() {
                                    let index = id(inst.operands.get(k)).ok_or(bad(op))?;
                                    let (len, next) = match facts.types.get(&current) {
                                        Some(Type::Struct { members }) => {
                                            let m =
                                                match facts.constants.get(&index).map(|c| &c.value)
                                                {
                                                    Some(Value::Scalar(m)) => *m as usize,
                                                    _ => return Err(bad(op)),
                                                };
                                            current = *members.get(m).ok_or(bad(op))?;
                                            continue;
                                        }
                                        Some(Type::Array { element, length }) => {
                                            (*length, *element)
                                        }
                                        Some(Type::Vector { component, count }) => {
                                            (u64::from(*count), *component)
                                        }
                                        Some(Type::Matrix { column, count }) => {
                                            (u64::from(*count), *column)
                                        }
                                        Some(Type::RuntimeArray { element }) if covered => {
                                            current = *element;
                                            continue;
                                        }
                                        _ => return Err(bad(op)),
                                    };
                                    current = next;
                                    if covered {
                                        continue;
                                    }
                                    let clamped = self.clamp(index, len, &mut out)?;
                                    inst.operands[k] = Operand::IdRef(clamped);
                                }
                            }
                            Op::VectorExtractDynamic | Op::VectorInsertDynamic => {
                                let at = if op == Op::VectorExtractDynamic { 1 } else { 2 };
                                let vector = id(inst.operands.first()).ok_or(bad(op))?;
                                let count = match facts
                                    .value_types
                                    .get(&vector)
                                    .and_then(|t| facts.types.get(t))
                                {
                                    Some(Type::Vector { count, .. }) => u64::from(*count),
                                    _ => return Err(bad(op)),
                                };
                                let index = id(inst.operands.get(at)).ok_or(bad(op))?;
                                let clamped = self.clamp(index, count, &mut out)?;
                                inst.operands[at] = Operand::IdRef(clamped);
                            }
                            _ => {}
                        }
                        out.push(inst);
                    }
                    block.instructions = out;
                }
            }
            Ok(())
        })();
        self.module.functions = functions;
        result
    }

    /// Pass 4: memory starts at zero. Workgroup variables: null
    /// initializers where the device zeroes workgroup memory itself, else
    /// code at the entry point shared out among the workgroup's
    /// invocations, then a barrier. Private and function variables without
    /// an initializer: a null initializer when small, else code at the
    /// start of the entry point (private) or of their function. Undefined
    /// values become null constants. Memory a kernel reads before writing
    /// would otherwise hand it what an earlier job or the agent left there
    /// (a CPU driver's heap and stack, a GPU's registers): data and host
    /// pointers. Large objects are zeroed by loops, never by one store of a
    /// large null constant, which some compilers expand element by element
    /// in quadratic time (lavapipe: 2 s for 1024 words, 4 min for 8192).
    fn zero_memory(&mut self, zero: ZeroWorkgroup) -> Result<(), KernelRejection> {
        let facts = self.facts;
        let entry = facts.entry.function;
        // Module-level: undefined values, private and workgroup variables.
        // A null constant goes right before the variable it initialises.
        let mut shared: Vec<(Id, Id)> = Vec::new();
        let mut private_code: Vec<(Id, Id)> = Vec::new();
        let globals = std::mem::take(&mut self.module.types_global_values);
        let mut out = Vec::with_capacity(globals.len());
        for mut inst in globals {
            let op = inst.class.opcode;
            if op == Op::Undef {
                if let Some(ty) = inst.result_type {
                    if !matches!(facts.types.get(&ty), Some(Type::Pointer { .. })) {
                        inst = Instruction::new(Op::ConstantNull, Some(ty), inst.result_id, vec![]);
                    }
                }
            } else if op == Op::Variable && inst.operands.len() == 1 {
                let global = inst
                    .result_id
                    .and_then(|v| Some((v, facts.globals.get(&v)?.clone())));
                if let Some((v, g)) = global {
                    let small = facts.scalars(g.pointee) <= SMALL_OBJECT;
                    let null_init = match g.class {
                        StorageClass::Workgroup => {
                            shared.push((v, g.pointee));
                            // The driver zeroes it (a memset, whatever the size).
                            zero == ZeroWorkgroup::NullInitializers
                        }
                        StorageClass::Private if small => true,
                        StorageClass::Private => {
                            private_code.push((v, g.pointee));
                            false
                        }
                        _ => false,
                    };
                    if null_init {
                        let n = self.fresh()?;
                        out.push(Instruction::new(
                            Op::ConstantNull,
                            Some(g.pointee),
                            Some(n),
                            vec![],
                        ));
                        inst.operands.push(Operand::IdRef(n));
                    }
                }
            }
            out.push(inst);
        }
        self.module.types_global_values = out;
        shared.sort_unstable();
        private_code.sort_unstable();
        // Function-level: undefined values; small variables get a null
        // initializer, large ones are zeroed by code at the function's start.
        let mut functions = std::mem::take(&mut self.module.functions);
        let mut function_code: Vec<(usize, Vec<(Id, Id)>)> = Vec::new();
        let result = (|| {
            for (fi, f) in functions.iter_mut().enumerate() {
                let mut large = Vec::new();
                for block in &mut f.blocks {
                    let mut kept = Vec::with_capacity(block.instructions.len());
                    for mut inst in std::mem::take(&mut block.instructions) {
                        match inst.class.opcode {
                            Op::Variable if inst.operands.len() == 1 => {
                                let pointee =
                                    match inst.result_type.and_then(|t| facts.types.get(&t)) {
                                        Some(Type::Pointer { pointee, .. }) => *pointee,
                                        _ => return Err(KernelRejection::BadFunction),
                                    };
                                if facts.scalars(pointee) <= SMALL_OBJECT {
                                    let n = self.null(pointee)?;
                                    inst.operands.push(Operand::IdRef(n));
                                } else if let Some(v) = inst.result_id {
                                    large.push((v, pointee));
                                }
                            }
                            Op::Undef => {
                                let ty = inst.result_type.ok_or(KernelRejection::BadFunction)?;
                                if !matches!(facts.types.get(&ty), Some(Type::Pointer { .. })) {
                                    // The same id, as a constant.
                                    self.new_globals.push(Instruction::new(
                                        Op::ConstantNull,
                                        Some(ty),
                                        inst.result_id,
                                        vec![],
                                    ));
                                    continue;
                                }
                            }
                            _ => {}
                        }
                        kept.push(inst);
                    }
                    block.instructions = kept;
                }
                let is_entry = f.def.as_ref().and_then(|d| d.result_id) == Some(entry);
                if !large.is_empty() || is_entry {
                    function_code.push((fi, large));
                }
            }
            Ok(())
        })();
        self.module.functions = functions;
        result?;
        // The code, at the start of each function that needs it.
        for (fi, large) in function_code {
            let is_entry = self.module.functions[fi]
                .def
                .as_ref()
                .and_then(|d| d.result_id)
                == Some(entry);
            let workgroup_code = is_entry && zero == ZeroWorkgroup::Code && !shared.is_empty();
            let private = if is_entry {
                private_code.clone()
            } else {
                Vec::new()
            };
            if large.is_empty() && private.is_empty() && !workgroup_code {
                continue;
            }
            let (variables, rest) = self.split_entry_block(fi)?;
            let start = self.fresh()?;
            let mut e = Emitter::new(start, variables);
            for (v, ty) in &large {
                self.emit_zero(&mut e, *v, *ty, StorageClass::Function, None)?;
            }
            for (v, ty) in &private {
                self.emit_zero(&mut e, *v, *ty, StorageClass::Private, None)?;
                self.new_interface.push((*v, StorageClass::Private));
            }
            if workgroup_code {
                let (index, count) = self.invocation_index(&mut e)?;
                for (v, ty) in &shared {
                    self.emit_zero(
                        &mut e,
                        *v,
                        *ty,
                        StorageClass::Workgroup,
                        Some((index, count)),
                    )?;
                }
                let uint = self.uint()?;
                let workgroup_scope = self.int_constant(uint, 2)?;
                // AcquireRelease | WorkgroupMemory.
                let semantics = self.int_constant(uint, 0x8 | 0x100)?;
                e.push(Instruction::new(
                    Op::ControlBarrier,
                    None,
                    None,
                    vec![
                        Operand::IdScope(workgroup_scope),
                        Operand::IdScope(workgroup_scope),
                        Operand::IdMemorySemantics(semantics),
                    ],
                ));
            }
            let blocks = e.finish(Instruction::new(
                Op::Branch,
                None,
                None,
                vec![Operand::IdRef(rest)],
            ));
            self.module.functions[fi].blocks.splice(0..0, blocks);
        }
        // Workgroup variables the entry point did not use before are used
        // now (zeroed): SPIR-V 1.4 interfaces must list them.
        if zero == ZeroWorkgroup::Code {
            for (v, _) in &shared {
                if !facts.entry.interface.contains(v) {
                    self.new_interface.push((*v, StorageClass::Workgroup));
                }
            }
        }
        Ok(())
    }

    /// Takes the leading variables (and line information) out of a
    /// function's first block, which keeps its label and the rest: nothing
    /// branches to a function's first block, and phis naming it stay
    /// right. Returns the variables and that label.
    fn split_entry_block(&mut self, fi: usize) -> Result<(Vec<Instruction>, Id), KernelRejection> {
        let f = &mut self.module.functions[fi];
        let first = f.blocks.first_mut().ok_or(KernelRejection::BadFunction)?;
        let split = first
            .instructions
            .iter()
            .position(|i| !matches!(i.class.opcode, Op::Variable | Op::Line | Op::NoLine))
            .unwrap_or(first.instructions.len());
        let variables: Vec<Instruction> = first.instructions.drain(..split).collect();
        let label = first
            .label
            .as_ref()
            .and_then(|l| l.result_id)
            .ok_or(KernelRejection::BadFunction)?;
        Ok((variables, label))
    }

    /// This invocation's index in its workgroup as a 32-bit unsigned value,
    /// and the number of invocations in a workgroup.
    fn invocation_index(&mut self, e: &mut Emitter) -> Result<(Id, Id), KernelRejection> {
        let uint = self.uint()?;
        let (var, ty) = self.local_invocation_index()?;
        let loaded = self.fresh()?;
        e.push(Instruction::new(
            Op::Load,
            Some(ty),
            Some(loaded),
            vec![Operand::IdRef(var)],
        ));
        let index = if ty == uint {
            loaded
        } else {
            // A signed built-in: the same bits, unsigned.
            let u = self.fresh()?;
            e.push(Instruction::new(
                Op::Bitcast,
                Some(uint),
                Some(u),
                vec![Operand::IdRef(loaded)],
            ));
            u
        };
        let [x, y, z] = self.facts.workgroup_size;
        let n = u64::from(x)
            .saturating_mul(u64::from(y))
            .saturating_mul(u64::from(z));
        let count = self.int_constant(uint, n)?;
        Ok((index, count))
    }

    /// Emits code that stores zeros into the object `ptr` points at (of
    /// type `ty`, in storage class `class`): one null store for a small
    /// type; a loop over an array; member by member for a struct. With
    /// `share = Some((index, count))` the invocations of a workgroup share
    /// the work: invocation `index` takes the elements `index`, `index +
    /// count`, ... of an array, and what is not an array is stored by
    /// invocation 0 only.
    fn emit_zero(
        &mut self,
        e: &mut Emitter,
        ptr: Id,
        ty: Id,
        class: StorageClass,
        share: Option<(Id, Id)>,
    ) -> Result<(), KernelRejection> {
        let facts = self.facts;
        let uint = self.uint()?;
        let bool_type = self.bool_type()?;
        let small = facts.scalars(ty) <= SMALL_OBJECT;
        match facts.types.get(&ty) {
            Some(Type::Array { element, length }) if !small => {
                let (start, step) = match share {
                    Some((index, count)) => (index, count),
                    None => (self.int_constant(uint, 0)?, self.int_constant(uint, 1)?),
                };
                let len = self.int_constant(uint, *length)?;
                let elem_ptr_type = self.type_id(Type::Pointer {
                    class,
                    pointee: *element,
                })?;
                let (header, body, cont, merge) =
                    (self.fresh()?, self.fresh()?, self.fresh()?, self.fresh()?);
                let (i, next, cond, elem) =
                    (self.fresh()?, self.fresh()?, self.fresh()?, self.fresh()?);
                let pre = e.label;
                e.close(
                    Instruction::new(Op::Branch, None, None, vec![Operand::IdRef(header)]),
                    header,
                );
                e.push(Instruction::new(
                    Op::Phi,
                    Some(uint),
                    Some(i),
                    vec![
                        Operand::IdRef(start),
                        Operand::IdRef(pre),
                        Operand::IdRef(next),
                        Operand::IdRef(cont),
                    ],
                ));
                e.push(Instruction::new(
                    Op::ULessThan,
                    Some(bool_type),
                    Some(cond),
                    vec![Operand::IdRef(i), Operand::IdRef(len)],
                ));
                e.push(Instruction::new(
                    Op::LoopMerge,
                    None,
                    None,
                    vec![
                        Operand::IdRef(merge),
                        Operand::IdRef(cont),
                        Operand::LoopControl(LoopControl::NONE),
                    ],
                ));
                e.close(
                    Instruction::new(
                        Op::BranchConditional,
                        None,
                        None,
                        vec![
                            Operand::IdRef(cond),
                            Operand::IdRef(body),
                            Operand::IdRef(merge),
                        ],
                    ),
                    body,
                );
                e.push(Instruction::new(
                    Op::AccessChain,
                    Some(elem_ptr_type),
                    Some(elem),
                    vec![Operand::IdRef(ptr), Operand::IdRef(i)],
                ));
                self.emit_zero(e, elem, *element, class, None)?;
                e.close(
                    Instruction::new(Op::Branch, None, None, vec![Operand::IdRef(cont)]),
                    cont,
                );
                e.push(Instruction::new(
                    Op::IAdd,
                    Some(uint),
                    Some(next),
                    vec![Operand::IdRef(i), Operand::IdRef(step)],
                ));
                e.close(
                    Instruction::new(Op::Branch, None, None, vec![Operand::IdRef(header)]),
                    merge,
                );
            }
            Some(Type::Struct { members }) if !small => {
                for (k, m) in members.iter().enumerate() {
                    let member_ptr_type = self.type_id(Type::Pointer { class, pointee: *m })?;
                    let index = self.int_constant(uint, k as u64)?;
                    let mp = self.fresh()?;
                    e.push(Instruction::new(
                        Op::AccessChain,
                        Some(member_ptr_type),
                        Some(mp),
                        vec![Operand::IdRef(ptr), Operand::IdRef(index)],
                    ));
                    self.emit_zero(e, mp, *m, class, share)?;
                }
            }
            _ => {
                let null = self.null(ty)?;
                let store = Instruction::new(
                    Op::Store,
                    None,
                    None,
                    vec![Operand::IdRef(ptr), Operand::IdRef(null)],
                );
                match share {
                    None => e.push(store),
                    Some((index, _)) => {
                        // Invocation 0 stores.
                        let zero = self.int_constant(uint, 0)?;
                        let (cond, then, merge) = (self.fresh()?, self.fresh()?, self.fresh()?);
                        e.push(Instruction::new(
                            Op::IEqual,
                            Some(bool_type),
                            Some(cond),
                            vec![Operand::IdRef(index), Operand::IdRef(zero)],
                        ));
                        e.push(Instruction::new(
                            Op::SelectionMerge,
                            None,
                            None,
                            vec![
                                Operand::IdRef(merge),
                                Operand::SelectionControl(rspirv::spirv::SelectionControl::NONE),
                            ],
                        ));
                        e.close(
                            Instruction::new(
                                Op::BranchConditional,
                                None,
                                None,
                                vec![
                                    Operand::IdRef(cond),
                                    Operand::IdRef(then),
                                    Operand::IdRef(merge),
                                ],
                            ),
                            then,
                        );
                        e.push(store);
                        e.close(
                            Instruction::new(Op::Branch, None, None, vec![Operand::IdRef(merge)]),
                            merge,
                        );
                    }
                }
            }
        }
        Ok(())
    }

    /// A null constant of type `ty` (appended to the globals).
    fn null(&mut self, ty: Id) -> Result<Id, KernelRejection> {
        if let Some(n) = self.nulls.get(&ty) {
            return Ok(*n);
        }
        let r = self.fresh()?;
        self.new_globals.push(Instruction::new(
            Op::ConstantNull,
            Some(ty),
            Some(r),
            vec![],
        ));
        self.nulls.insert(ty, r);
        Ok(r)
    }

    /// The `LocalInvocationIndex` input and its (32-bit integer) type,
    /// declared as unsigned if the module lacks it.
    fn local_invocation_index(&mut self) -> Result<(Id, Id), KernelRejection> {
        let facts = self.facts;
        let uint = self.uint()?;
        let mut existing: Vec<(Id, Id)> = facts
            .globals
            .iter()
            .filter(|(v, g)| {
                g.class == StorageClass::Input
                    && facts.decorations.get(v).and_then(|d| d.builtin)
                        == Some(BuiltIn::LocalInvocationIndex)
                    && matches!(
                        facts.types.get(&g.pointee),
                        Some(Type::Int { width: 32, .. })
                    )
            })
            .map(|(v, g)| (*v, g.pointee))
            .collect();
        existing.sort_unstable();
        if let Some(&(v, ty)) = existing.first() {
            if !facts.entry.interface.contains(&v) {
                self.new_interface.push((v, StorageClass::Input));
            }
            return Ok((v, ty));
        }
        let ptr = self.type_id(Type::Pointer {
            class: StorageClass::Input,
            pointee: uint,
        })?;
        let v = self.fresh()?;
        self.new_globals.push(Instruction::new(
            Op::Variable,
            Some(ptr),
            Some(v),
            vec![Operand::StorageClass(StorageClass::Input)],
        ));
        self.new_annotations.push(Instruction::new(
            Op::Decorate,
            None,
            None,
            vec![
                Operand::IdRef(v),
                Operand::Decoration(Decoration::BuiltIn),
                Operand::BuiltIn(BuiltIn::LocalInvocationIndex),
            ],
        ));
        self.new_interface.push((v, StorageClass::Input));
        Ok((v, uint))
    }

    /// Pass 5: every loop's back edge reads the watchdog flag and leaves
    /// the loop for its merge block once the host has set it. Returns
    /// whether the module has loops.
    fn watchdog(&mut self, version: u32) -> Result<bool, KernelRejection> {
        // (function, block) of every back edge, with its loop's header and merge.
        let mut edges: Vec<(usize, usize, Id, Id)> = Vec::new();
        for (fi, f) in self.module.functions.iter().enumerate() {
            let mut index: HashMap<Id, usize> = HashMap::new();
            let mut merges: HashMap<Id, Id> = HashMap::new();
            for (bi, b) in f.blocks.iter().enumerate() {
                let Some(l) = b.label.as_ref().and_then(|l| l.result_id) else {
                    return Err(KernelRejection::BadFunction);
                };
                index.insert(l, bi);
                if let Some(m) = b
                    .instructions
                    .iter()
                    .find(|i| i.class.opcode == Op::LoopMerge)
                {
                    merges.insert(
                        l,
                        id(m.operands.first()).ok_or(KernelRejection::BadFunction)?,
                    );
                }
            }
            for (bi, b) in f.blocks.iter().enumerate() {
                let Some(term) = b.instructions.last() else {
                    return Err(KernelRejection::BadFunction);
                };
                let op = term.class.opcode;
                let targets: Vec<Id> = match op {
                    Op::Branch => term.operands.iter().filter_map(|o| id(Some(o))).collect(),
                    Op::BranchConditional => term
                        .operands
                        .iter()
                        .skip(1)
                        .take(2)
                        .filter_map(|o| id(Some(o)))
                        .collect(),
                    _ => continue,
                };
                let back: Vec<Id> = targets
                    .iter()
                    .copied()
                    .filter(|t| index.get(t).is_some_and(|ti| *ti <= bi))
                    .collect();
                match back.as_slice() {
                    [] => {}
                    [h] | [h, _] if back.iter().all(|x| x == h) => {
                        let m = *merges
                            .get(h)
                            .ok_or(KernelRejection::BadControlFlow { opcode: op as u32 })?;
                        // The other target of a conditional back edge must
                        // be the loop's merge block (a do-while's exit).
                        if op == Op::BranchConditional && targets.iter().any(|t| t != h && *t != m)
                        {
                            return Err(KernelRejection::BadControlFlow { opcode: op as u32 });
                        }
                        edges.push((fi, bi, *h, m));
                    }
                    _ => return Err(KernelRejection::BadControlFlow { opcode: op as u32 }),
                }
            }
        }
        if edges.is_empty() {
            return Ok(false);
        }
        let uint = self.uint()?;
        let bool_type = self.bool_type()?;
        let zero = self.int_constant(uint, 0)?;
        // Scope Device (1) and memory semantics Relaxed (0) of the flag's
        // atomic load.
        let device_scope = self.int_constant(uint, 1)?;
        let relaxed = zero;
        let block_type = self.fresh()?;
        self.new_globals.push(Instruction::new(
            Op::TypeStruct,
            None,
            Some(block_type),
            vec![Operand::IdRef(uint)],
        ));
        let block_ptr = self.fresh()?;
        self.new_globals.push(Instruction::new(
            Op::TypePointer,
            None,
            Some(block_ptr),
            vec![
                Operand::StorageClass(StorageClass::StorageBuffer),
                Operand::IdRef(block_type),
            ],
        ));
        let flag_ptr = self.type_id(Type::Pointer {
            class: StorageClass::StorageBuffer,
            pointee: uint,
        })?;
        let var = self.fresh()?;
        self.new_globals.push(Instruction::new(
            Op::Variable,
            Some(block_ptr),
            Some(var),
            vec![Operand::StorageClass(StorageClass::StorageBuffer)],
        ));
        for (target, decoration, value) in [
            (var, Decoration::DescriptorSet, Some(WATCHDOG_SET)),
            (var, Decoration::Binding, Some(WATCHDOG_BINDING)),
            (block_type, Decoration::Block, None),
        ] {
            let mut ops = vec![Operand::IdRef(target), Operand::Decoration(decoration)];
            ops.extend(value.map(Operand::LiteralBit32));
            self.new_annotations
                .push(Instruction::new(Op::Decorate, None, None, ops));
        }
        self.new_annotations.push(Instruction::new(
            Op::MemberDecorate,
            None,
            None,
            vec![
                Operand::IdRef(block_type),
                Operand::LiteralBit32(0),
                Operand::Decoration(Decoration::Offset),
                Operand::LiteralBit32(0),
            ],
        ));
        if version < 0x0001_0300
            && !self.module.extensions.iter().any(|e| {
                e.operands.first()
                    == Some(&Operand::LiteralString(
                        "SPV_KHR_storage_buffer_storage_class".into(),
                    ))
            })
        {
            self.module.extensions.push(Instruction::new(
                Op::Extension,
                None,
                None,
                vec![Operand::LiteralString(
                    "SPV_KHR_storage_buffer_storage_class".into(),
                )],
            ));
        }
        self.new_interface.push((var, StorageClass::StorageBuffer));
        // New predecessors of merge blocks, for their phis.
        let mut new_preds: Vec<(usize, Id, Id)> = Vec::new();
        for (fi, bi, header, merge) in edges {
            let (p, flag, stop, go, cond) = (
                self.fresh()?,
                self.fresh()?,
                self.fresh()?,
                self.fresh()?,
                self.fresh()?,
            );
            let block = &mut self.module.functions[fi].blocks[bi];
            let label = block
                .label
                .as_ref()
                .and_then(|l| l.result_id)
                .ok_or(KernelRejection::BadFunction)?;
            let term = block
                .instructions
                .pop()
                .ok_or(KernelRejection::BadFunction)?;
            // Before the loop merge instruction when this block is its own
            // loop's header (a merge instruction must precede the branch).
            let at = match block.instructions.last() {
                Some(i) if matches!(i.class.opcode, Op::LoopMerge | Op::SelectionMerge) => {
                    block.instructions.len() - 1
                }
                _ => block.instructions.len(),
            };
            let mut check = vec![
                Instruction::new(
                    Op::AccessChain,
                    Some(flag_ptr),
                    Some(p),
                    vec![Operand::IdRef(var), Operand::IdRef(zero)],
                ),
                // An atomic load, not a volatile one: on an NVIDIA H200
                // (driver 580) a kernel reading the flag with a volatile
                // load never saw the host set it and ran on past its
                // timeout; with a relaxed atomic load at device scope the
                // same kernel stopped within 26 ms of its timeout.
                Instruction::new(
                    Op::AtomicLoad,
                    Some(uint),
                    Some(flag),
                    vec![
                        Operand::IdRef(p),
                        Operand::IdRef(device_scope),
                        Operand::IdRef(relaxed),
                    ],
                ),
                Instruction::new(
                    Op::INotEqual,
                    Some(bool_type),
                    Some(stop),
                    vec![Operand::IdRef(flag), Operand::IdRef(zero)],
                ),
            ];
            let targets_merge;
            let new_term = if term.class.opcode == Op::Branch {
                targets_merge = false;
                Instruction::new(
                    Op::BranchConditional,
                    None,
                    None,
                    vec![
                        Operand::IdRef(stop),
                        Operand::IdRef(merge),
                        Operand::IdRef(header),
                    ],
                )
            } else {
                let c = id(term.operands.first()).ok_or(KernelRejection::BadFunction)?;
                let t1 = id(term.operands.get(1)).ok_or(KernelRejection::BadFunction)?;
                let t2 = id(term.operands.get(2)).ok_or(KernelRejection::BadFunction)?;
                targets_merge = t1 == merge || t2 == merge;
                check.push(Instruction::new(
                    Op::LogicalNot,
                    Some(bool_type),
                    Some(go),
                    vec![Operand::IdRef(stop)],
                ));
                // Continue only while the original condition says so and
                // the flag is clear.
                let (combined, then_target, else_target) = if t1 == header && t2 == header {
                    (go, header, merge)
                } else if t1 == header {
                    check.push(Instruction::new(
                        Op::LogicalAnd,
                        Some(bool_type),
                        Some(cond),
                        vec![Operand::IdRef(c), Operand::IdRef(go)],
                    ));
                    (cond, header, t2)
                } else {
                    check.push(Instruction::new(
                        Op::LogicalOr,
                        Some(bool_type),
                        Some(cond),
                        vec![Operand::IdRef(c), Operand::IdRef(stop)],
                    ));
                    (cond, t1, header)
                };
                Instruction::new(
                    Op::BranchConditional,
                    None,
                    None,
                    vec![
                        Operand::IdRef(combined),
                        Operand::IdRef(then_target),
                        Operand::IdRef(else_target),
                    ],
                )
            };
            block.instructions.splice(at..at, check);
            block.instructions.push(new_term);
            if !targets_merge {
                new_preds.push((fi, merge, label));
            }
        }
        for (fi, merge, pred) in new_preds {
            let f = &self.module.functions[fi];
            let Some(mi) = f
                .blocks
                .iter()
                .position(|b| b.label.as_ref().and_then(|l| l.result_id) == Some(merge))
            else {
                return Err(KernelRejection::BadFunction);
            };
            let phis: Vec<(usize, Id)> = f.blocks[mi]
                .instructions
                .iter()
                .enumerate()
                .filter(|(_, i)| i.class.opcode == Op::Phi)
                .filter_map(|(k, i)| Some((k, i.result_type?)))
                .collect();
            for (k, ty) in phis {
                let u = self.undef(ty)?;
                let phi = &mut self.module.functions[fi].blocks[mi].instructions[k];
                phi.operands.push(Operand::IdRef(u));
                phi.operands.push(Operand::IdRef(pred));
            }
        }
        Ok(true)
    }

    /// Appends the new globals and annotations, extends the entry point's
    /// interface and the id bound.
    fn finish(&mut self, version: u32) {
        self.module
            .types_global_values
            .append(&mut self.new_globals);
        self.module.annotations.append(&mut self.new_annotations);
        if let Some(ep) = self.module.entry_points.first_mut() {
            for (v, class) in self.new_interface.drain(..) {
                let listed = ep.operands.iter().skip(3).any(|o| *o == Operand::IdRef(v));
                // Before SPIR-V 1.4 only inputs and outputs are listed.
                if !listed && (version >= 0x0001_0400 || class == StorageClass::Input) {
                    ep.operands.push(Operand::IdRef(v));
                }
            }
        }
        if let Some(h) = self.module.header.as_mut() {
            h.bound = self.bound;
        }
    }
}
