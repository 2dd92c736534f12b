//! Why a kernel was refused, as a number that travels and as words a person
//! reads.
//!
//! A provider that refuses a requester's kernel ends the job with
//! `Failed { reason: KernelRejected, detail }` (`docs/PROTOCOL.md`, "Kernel
//! rejection codes"). `detail` names the rule the kernel broke in its low 16
//! bits and, for rules about one thing (an opcode, a capability, a binding,
//! a buffer), that thing's number in its high 16 bits. This module is the one
//! table of those rules: the Vulkan dispatcher's `KernelRejection::detail`
//! writes the codes, and a requester or coordinator (which need not build
//! the dispatcher) turns a detail back into words with
//! [`RejectionDetail::from_detail`] and its `Display`.
//!
//! Codes are stable: a rule keeps its code, new rules get new codes, and a
//! code this table does not know still prints (as "rule N").
//! [`describe_failure`] words any `Failed` reason with its detail.

use core::fmt;

use crate::wire::FailReason;

macro_rules! rules {
    ($( $(#[$doc:meta])* $name:ident = $code:literal, $id:literal, $arg:expr, $text:literal; )*) => {
        /// A rule of the kernel gates. Each has a stable code (see the module
        /// documentation and `docs/VULKAN.md`).
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        #[repr(u16)]
        pub enum KernelRule {
            $( $(#[$doc])* $name = $code, )*
        }

        impl KernelRule {
            /// Every rule, in code order.
            pub const ALL: &'static [KernelRule] = &[$(KernelRule::$name,)*];

            /// The rule with this code, if it is one this table knows.
            pub fn from_code(code: u16) -> Option<KernelRule> {
                match code {
                    $( $code => Some(KernelRule::$name), )*
                    _ => None,
                }
            }

            /// A short identifier (`snake_case`), stable like the code.
            pub fn name(self) -> &'static str {
                match self { $( KernelRule::$name => $id, )* }
            }

            /// What the rule's argument (the detail's high 16 bits) is, for
            /// rules that have one.
            pub fn argument(self) -> Option<Argument> {
                match self { $( KernelRule::$name => $arg, )* }
            }

            /// The rule in words, for the requester.
            pub fn text(self) -> &'static str {
                match self { $( KernelRule::$name => $text, )* }
            }
        }
    };
}

/// What the number in a rejection detail's high 16 bits stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Argument {
    /// A SPIR-V opcode.
    Opcode,
    /// A SPIR-V capability enumerant.
    Capability,
    /// A SPIR-V storage class enumerant.
    StorageClass,
    /// A SPIR-V decoration enumerant.
    Decoration,
    /// A SPIR-V execution model enumerant.
    ExecutionModel,
    /// A SPIR-V execution mode enumerant.
    ExecutionMode,
    /// A SPIR-V built-in enumerant.
    BuiltIn,
    /// A `GLSL.std.450` instruction number.
    ExtInst,
    /// A binding number in descriptor set 0.
    Binding,
    /// The index of a buffer in the job.
    Buffer,
    /// Which structural limit (see [`ComplexityLimit`]).
    Limit,
    /// A SPIR-V version, `major << 8 | minor`.
    Version,
}

impl Argument {
    fn word(self) -> &'static str {
        match self {
            Argument::Opcode => "opcode",
            Argument::Capability => "capability",
            Argument::StorageClass => "storage class",
            Argument::Decoration => "decoration",
            Argument::ExecutionModel => "execution model",
            Argument::ExecutionMode => "execution mode",
            Argument::BuiltIn => "built-in",
            Argument::ExtInst => "GLSL.std.450 instruction",
            Argument::Binding => "binding",
            Argument::Buffer => "buffer",
            Argument::Limit => "limit",
            Argument::Version => "version",
        }
    }
}

use Argument as A;

rules! {
    // The module's form.
    /// Shorter than the 5-word SPIR-V header.
    TooShort = 1, "too_short", None, "the module is shorter than the SPIR-V header";
    /// The length is not a multiple of 4 bytes.
    NotWordAligned = 2, "not_word_aligned", None, "the module's length is not a multiple of 4 bytes";
    /// The first word is not the SPIR-V magic number (little-endian).
    BadMagic = 3, "bad_magic", None, "the module does not start with the SPIR-V magic number (little-endian)";
    /// A SPIR-V version the device does not accept.
    UnsupportedVersion = 4, "unsupported_version", Some(A::Version), "the module's SPIR-V version is not one this device accepts";
    /// Larger than the provider's kernel size limit.
    KernelTooLarge = 5, "kernel_too_large", None, "the module is larger than the provider's kernel size limit";
    /// An instruction's word count is zero or runs past the end.
    BadInstruction = 6, "bad_instruction", None, "an instruction's word count is zero or runs past the end of the module";
    /// Operands do not follow the opcode's grammar, or the parser refused.
    Unparsable = 7, "unparsable", None, "an instruction's operands do not follow its opcode's grammar";
    /// An id at or above the header's bound, or an absurd bound.
    IdOutOfBounds = 8, "id_out_of_bounds", None, "an id is at or above the module's id bound, or the bound is too large";
    /// An id is used but never defined.
    UndefinedId = 9, "undefined_id", None, "an id is used but never defined";
    /// An id is defined twice.
    DuplicateId = 10, "duplicate_id", None, "an id is defined more than once";
    /// A type's shape is invalid (widths, component counts, references).
    BadType = 11, "bad_type", None, "a type is not well formed (width, component count, or what it refers to)";
    /// A constant does not fit its type or its parts do not match it.
    BadConstant = 12, "bad_constant", None, "a constant does not fit its type (for example an 8-bit constant with bits above its width)";
    /// An instruction's operand is not what the instruction needs.
    BadOperand = 13, "bad_operand", Some(A::Opcode), "an instruction's operand is not what the instruction needs";
    /// A function's blocks are not well formed.
    BadFunction = 14, "bad_function", None, "a function's blocks are not well formed";
    /// A structural limit is exceeded (see [`ComplexityLimit`]).
    TooComplex = 15, "too_complex", Some(A::Limit), "the module exceeds a structural limit";
    /// There is no `OpMemoryModel`.
    MissingMemoryModel = 16, "missing_memory_model", None, "the module has no OpMemoryModel";
    /// A type or instruction needs a capability the module does not declare.
    UndeclaredCapability = 17, "undeclared_capability", Some(A::Capability), "the module uses a type or instruction whose capability it does not declare";
    /// A decoration that must be unique is given twice on one target.
    DuplicateDecoration = 18, "duplicate_decoration", Some(A::Decoration), "a decoration is given twice on one target";
    /// A function calls itself, directly or not.
    Recursion = 19, "recursion", None, "a function calls itself, directly or through others";
    /// A branch goes backwards to a block that is not a loop header.
    BadControlFlow = 20, "bad_control_flow", Some(A::Opcode), "a branch goes backwards to a block that is not the header of a loop";

    // What the module may use.
    /// A capability that is never allowed.
    ForbiddenCapability = 30, "forbidden_capability", Some(A::Capability), "the kernel needs a capability compute kernels may not use here";
    /// An allowed capability this device lacks.
    UnsupportedCapability = 31, "unsupported_capability", Some(A::Capability), "the kernel needs a capability this device does not have";
    /// A SPIR-V extension not on the allow-list.
    ForbiddenExtension = 32, "forbidden_extension", None, "the module declares a SPIR-V extension that is not allowed";
    /// An extended instruction set other than `GLSL.std.450`.
    ForbiddenExtInstSet = 33, "forbidden_ext_inst_set", None, "the module imports an extended instruction set other than GLSL.std.450";
    /// A `GLSL.std.450` instruction compute kernels may not use.
    ForbiddenExtInst = 34, "forbidden_ext_inst", Some(A::ExtInst), "the kernel uses a GLSL.std.450 instruction compute kernels may not use";
    /// Not `Logical` addressing with the `GLSL450` memory model.
    ForbiddenMemoryModel = 35, "forbidden_memory_model", None, "the addressing model is not Logical or the memory model not GLSL450";
    /// An instruction compute kernels may not use.
    ForbiddenOpcode = 36, "forbidden_opcode", Some(A::Opcode), "the kernel uses an instruction compute kernels may not use";
    /// A storage class compute kernels may not use.
    ForbiddenStorageClass = 37, "forbidden_storage_class", Some(A::StorageClass), "the kernel uses a storage class compute kernels may not use";
    /// A pointer made from or turned into something else.
    ForbiddenPointerOp = 38, "forbidden_pointer_op", Some(A::Opcode), "the kernel makes a pointer out of something else, or turns a pointer into something else";
    /// A decoration compute kernels may not use.
    ForbiddenDecoration = 39, "forbidden_decoration", Some(A::Decoration), "the kernel uses a decoration compute kernels may not use";
    /// An execution mode other than the workgroup size.
    ForbiddenExecutionMode = 40, "forbidden_execution_mode", Some(A::ExecutionMode), "the kernel uses an execution mode other than its workgroup size";
    /// A built-in variable compute kernels do not have.
    ForbiddenBuiltIn = 41, "forbidden_built_in", Some(A::BuiltIn), "the kernel uses a built-in variable compute kernels do not have";
    /// A type this provider does not offer.
    ForbiddenType = 42, "forbidden_type", None, "the kernel uses a type kernels may not use here (a pointer stored in memory, a runtime array outside a storage buffer)";

    // The entry point.
    /// No entry point with the requested name.
    NoEntryPoint = 50, "no_entry_point", None, "the module has no entry point with the requested name";
    /// More than one entry point.
    MultipleEntryPoints = 51, "multiple_entry_points", None, "the module has more than one entry point";
    /// The entry point is not a compute shader.
    WrongExecutionModel = 52, "wrong_execution_model", Some(A::ExecutionModel), "the entry point is not a compute shader";
    /// SPIR-V 1.4 and later: the entry point's interface omits a global it uses.
    InterfaceIncomplete = 53, "interface_incomplete", None, "the entry point's interface does not list every global variable it uses";
    /// No workgroup size.
    MissingWorkgroupSize = 54, "missing_workgroup_size", None, "the kernel has no workgroup size";
    /// A size depends on an expression the validator does not evaluate.
    UnresolvableSize = 55, "unresolvable_size", None, "a workgroup size or array length depends on an expression that cannot be evaluated";

    // Resources and bindings.
    /// A resource the kernel uses is not one of the job's buffers.
    UnboundResource = 60, "unbound_resource", Some(A::Binding), "the kernel uses a resource at a binding (or set) the job supplies no buffer for";
    /// A resource the kernel uses is not a storage buffer.
    ForbiddenDescriptorType = 61, "forbidden_descriptor_type", Some(A::Binding), "the kernel uses a resource that is not a storage buffer";
    /// A resource variable without both `DescriptorSet` and `Binding`.
    MissingBinding = 62, "missing_binding", None, "a resource variable lacks its DescriptorSet or Binding decoration";
    /// A job buffer's binding number is too large.
    BindingOutOfRange = 63, "binding_out_of_range", Some(A::Buffer), "a job buffer's binding number is not below the limit";
    /// Two job buffers name the same binding.
    DuplicateBinding = 64, "duplicate_binding", Some(A::Binding), "two job buffers name the same binding";

    // Sizes and limits.
    /// A workgroup dimension is zero.
    WorkgroupSizeZero = 70, "workgroup_size_zero", None, "a workgroup size dimension is zero";
    /// The workgroup exceeds the device's limits.
    WorkgroupTooLarge = 71, "workgroup_too_large", None, "the workgroup is larger than the device allows";
    /// Workgroup (shared) memory over the device limit.
    SharedMemoryTooLarge = 72, "shared_memory_too_large", None, "the kernel's shared (workgroup) memory is larger than the device allows";
    /// Private and function memory over the provider's limit.
    PrivateMemoryTooLarge = 73, "private_memory_too_large", None, "the kernel's private and function memory per invocation is over the provider's limit";
    /// More push-constant bytes than allowed.
    PushConstantsTooLarge = 74, "push_constants_too_large", None, "the job carries more push-constant bytes than allowed";
    /// The kernel's push-constant block is larger than the job's bytes.
    PushConstantsTooSmall = 75, "push_constants_too_small", None, "the kernel's push-constant block is larger than the bytes the job supplies";
    /// A specialization constant id given twice, or for a 64-bit constant.
    BadSpecialization = 76, "bad_specialization", None, "a specialization constant is given twice, or targets a 64-bit constant";
    /// A grid dimension is zero.
    EmptyGrid = 77, "empty_grid", None, "a grid dimension is zero";
    /// The grid exceeds the device's workgroup count limits.
    GridTooLarge = 78, "grid_too_large", None, "the grid is larger than the device allows";
    /// More invocations than the device can run before the deadline.
    TooMuchWork = 79, "too_much_work", None, "the job has more invocations (grid times workgroup size) than this device can run before its deadline";
    /// More buffers than allowed.
    TooManyBuffers = 80, "too_many_buffers", None, "the job has more buffers than allowed";
    /// A buffer of length zero.
    EmptyBuffer = 81, "empty_buffer", Some(A::Buffer), "a job buffer has length zero";
    /// A buffer's initial data is longer than the buffer.
    InitTooLong = 82, "init_too_long", Some(A::Buffer), "a job buffer's initial data is longer than the buffer";
    /// A buffer larger than the device's storage buffer range.
    BufferTooLarge = 83, "buffer_too_large", Some(A::Buffer), "a job buffer is larger than the device's storage buffer range";
    /// All buffers together over the provider's memory budget.
    MemoryBudgetExceeded = 84, "memory_budget_exceeded", None, "the job's buffers together exceed the provider's memory budget";

    // The Khronos validator.
    /// The Khronos SPIR-V validator refused the module.
    KhronosRejected = 90, "khronos_rejected", None, "the Khronos SPIR-V validator (spirv-val) refused the module";
    /// The Khronos validator ran out of its time budget.
    KhronosTimeLimit = 91, "khronos_time_limit", None, "validating the module took longer than the provider allows";
    /// The Khronos validator ran out of its memory budget.
    KhronosMemoryLimit = 92, "khronos_memory_limit", None, "validating the module needed more memory than the provider allows";
}

/// The structural limits behind [`KernelRule::TooComplex`]; the number is
/// the rejection's argument.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
#[repr(u16)]
pub enum ComplexityLimit {
    /// Types nested deeper than 32 composites (16 structs).
    TypeDepth = 1,
    /// A type whose tree, written out, has more than 4096 nodes.
    TypeTree = 2,
    /// A struct with more than 1024 members.
    StructMembers = 3,
    /// More than 1024 global variables.
    GlobalVariables = 4,
    /// More than 4096 local variables in one function.
    LocalVariables = 5,
    /// A function with more than 32 parameters.
    FunctionParameters = 6,
    /// An access chain with more than 16 indices.
    AccessChainIndices = 7,
    /// A switch with more than 1024 targets.
    SwitchTargets = 8,
    /// More than 1024 functions.
    Functions = 9,
    /// A function over 2^16 instructions with its calls inlined.
    InlinedSize = 10,
    /// A value (constant, result, or what one load, store or copy moves)
    /// of more than 256 scalars.
    ValueSize = 11,
}

impl ComplexityLimit {
    /// The limit with this number.
    pub fn from_code(code: u16) -> Option<ComplexityLimit> {
        use ComplexityLimit::*;
        [
            TypeDepth,
            TypeTree,
            StructMembers,
            GlobalVariables,
            LocalVariables,
            FunctionParameters,
            AccessChainIndices,
            SwitchTargets,
            Functions,
            InlinedSize,
            ValueSize,
        ]
        .into_iter()
        .find(|l| *l as u16 == code)
    }

    /// The limit in words.
    pub fn text(self) -> &'static str {
        match self {
            ComplexityLimit::TypeDepth => "types nested deeper than 32 (16 structs)",
            ComplexityLimit::TypeTree => "a type with more than 4096 nodes written out",
            ComplexityLimit::StructMembers => "a struct with more than 1024 members",
            ComplexityLimit::GlobalVariables => "more than 1024 global variables",
            ComplexityLimit::LocalVariables => "more than 4096 local variables in a function",
            ComplexityLimit::FunctionParameters => "a function with more than 32 parameters",
            ComplexityLimit::AccessChainIndices => "an access chain with more than 16 indices",
            ComplexityLimit::SwitchTargets => "a switch with more than 1024 targets",
            ComplexityLimit::Functions => "more than 1024 functions",
            ComplexityLimit::InlinedSize => {
                "a function over 65536 instructions with its calls inlined"
            }
            ComplexityLimit::ValueSize => {
                "a value (constant, result, load, store or copy) of more than 256 scalars"
            }
        }
    }
}

/// A `Failed.detail` of a `KernelRejected` failure, taken apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RejectionDetail {
    /// The rule's code (the low 16 bits).
    pub code: u16,
    /// The rule's argument (the high 16 bits; 0 for rules without one).
    pub argument: u16,
}

impl RejectionDetail {
    /// Packs a rule and its argument.
    pub fn new(rule: KernelRule, argument: u16) -> RejectionDetail {
        RejectionDetail {
            code: rule as u16,
            argument,
        }
    }

    /// Takes a wire detail apart.
    pub fn from_detail(detail: u32) -> RejectionDetail {
        RejectionDetail {
            code: detail as u16,
            argument: (detail >> 16) as u16,
        }
    }

    /// The wire detail: the code in the low 16 bits, the argument above.
    pub fn detail(self) -> u32 {
        u32::from(self.code) | u32::from(self.argument) << 16
    }

    /// The rule, if the code is one this table knows.
    pub fn rule(self) -> Option<KernelRule> {
        KernelRule::from_code(self.code)
    }
}

impl fmt::Display for RejectionDetail {
    /// For example `forbidden_opcode (opcode 117): the kernel uses an
    /// instruction compute kernels may not use`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some(rule) = self.rule() else {
            return write!(f, "rule {} (argument {})", self.code, self.argument);
        };
        write!(f, "{}", rule.name())?;
        match rule.argument() {
            Some(Argument::Limit) => match ComplexityLimit::from_code(self.argument) {
                Some(l) => write!(f, " ({})", l.text())?,
                None => write!(f, " (limit {})", self.argument)?,
            },
            Some(Argument::Version) => write!(
                f,
                " (version {}.{})",
                self.argument >> 8,
                self.argument & 0xff
            )?,
            Some(a) => write!(f, " ({} {})", a.word(), self.argument)?,
            None => {}
        }
        write!(f, ": {}", rule.text())
    }
}

/// A provider's failure (`Failed.reason` and `Failed.detail`) in words, for
/// requesters and coordinators: `describe_failure(reason, detail)` and
/// `Display`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FailureText {
    /// The failure reason.
    pub reason: FailReason,
    /// Its detail.
    pub detail: u32,
}

/// Words for a provider's failure: a kernel rejection names the rule it
/// broke ([`RejectionDetail`]); the other reasons say what happened.
pub fn describe_failure(reason: FailReason, detail: u32) -> FailureText {
    FailureText { reason, detail }
}

impl fmt::Display for FailureText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.detail;
        match self.reason {
            FailReason::KernelRejected => {
                write!(f, "kernel rejected: {}", RejectionDetail::from_detail(d))
            }
            FailReason::Timeout => write!(f, "the kernel ran out of its time"),
            FailReason::DeadlineExceeded => {
                write!(f, "the job's deadline passed before the kernel ran")
            }
            FailReason::DeviceLost => write!(
                f,
                "the GPU was lost while it ran the job (provider code {d})"
            ),
            FailReason::OutOfMemory => write!(f, "the device ran out of memory"),
            FailReason::InputIntegrity => match d {
                9 => write!(f, "an input chunk did not match its digest"),
                10 => write!(f, "the kernel's or the inputs' Merkle root did not match"),
                11 => write!(
                    f,
                    "the sealed job did not open with the provider's session key (forged, sealed \
                     for another provider or session, or a layout sealing does not give)"
                ),
                _ => write!(f, "the inputs did not arrive intact (code {d})"),
            },
            FailReason::Host => match d {
                5 => write!(
                    f,
                    "the provider's device is busy with abandoned work and takes no jobs now"
                ),
                6 => write!(f, "the provider could not run its kernel validator"),
                _ => write!(
                    f,
                    "the provider failed for another reason (provider code {d})"
                ),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_round_trip() {
        for (i, r) in KernelRule::ALL.iter().enumerate() {
            assert_eq!(KernelRule::from_code(*r as u16), Some(*r));
            for other in &KernelRule::ALL[i + 1..] {
                assert_ne!(*r as u16, *other as u16);
                assert_ne!(r.name(), other.name());
            }
        }
        let d = RejectionDetail::new(KernelRule::ForbiddenOpcode, 117);
        assert_eq!(RejectionDetail::from_detail(d.detail()), d);
        assert_eq!(d.detail(), 36 | 117 << 16);
    }

    #[test]
    fn details_print_in_words() {
        let d = RejectionDetail::from_detail(36 | 117 << 16);
        assert_eq!(
            format!("{d}"),
            "forbidden_opcode (opcode 117): the kernel uses an instruction compute kernels may not use"
        );
        let d = RejectionDetail::new(KernelRule::TooComplex, ComplexityLimit::TypeDepth as u16);
        assert!(format!("{d}").contains("nested deeper"));
        assert_eq!(
            format!("{}", RejectionDetail::from_detail(0xffff)),
            "rule 65535 (argument 0)"
        );
    }

    #[test]
    fn failures_print_in_words() {
        let t = describe_failure(FailReason::KernelRejected, 30 | 5347 << 16);
        assert_eq!(
            format!("{t}"),
            "kernel rejected: forbidden_capability (capability 5347): the kernel needs a \
             capability compute kernels may not use here"
        );
        assert_eq!(
            format!("{}", describe_failure(FailReason::InputIntegrity, 10)),
            "the kernel's or the inputs' Merkle root did not match"
        );
    }
}
