//! Parsing: the bytes become a module, or a precise reason why not. Checks
//! the header and the instruction stream itself before the third-party
//! parser (rspirv) sees them, and runs that parser so that a panic in it
//! rejects the kernel instead of taking the agent down.

use super::super::error::KernelRejection;
use rspirv::dr::{Instruction, Module, Operand};
use rspirv::spirv::{ExecutionMode, Op};

/// Largest id bound accepted (keeps every id-indexed table small; the same
/// as the `--max-id-bound` given to the Khronos validator).
pub(crate) const MAX_ID_BOUND: u32 = 1 << 22;

/// The module's words and their parse.
pub(crate) struct Parsed {
    /// The header's version word (`major << 16 | minor << 8`).
    pub version: u32,
    pub module: Module,
}

/// Checks the header and the instruction stream, then parses.
/// `max_version` is the highest SPIR-V version word the device accepts.
pub(crate) fn parse(
    spirv: &[u8],
    max_bytes: u64,
    max_version: u32,
) -> Result<Parsed, KernelRejection> {
    let len = spirv.len() as u64;
    if len > max_bytes {
        return Err(KernelRejection::KernelTooLarge {
            len,
            max: max_bytes,
        });
    }
    if spirv.len() < 20 {
        return Err(KernelRejection::TooShort);
    }
    if spirv.len() % 4 != 0 {
        return Err(KernelRejection::NotWordAligned);
    }
    let words: Vec<u32> = spirv
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    if words[0] != rspirv::spirv::MAGIC_NUMBER {
        return Err(KernelRejection::BadMagic);
    }
    let version = words[1];
    if version >> 16 != 1 || version & 0xff00_00ff != 0 || version > max_version {
        return Err(KernelRejection::UnsupportedVersion(version));
    }
    if words[3] == 0 || words[3] > MAX_ID_BOUND {
        return Err(KernelRejection::IdOutOfBounds);
    }
    // Every instruction's word count must be non-zero and stay inside the
    // module (the parser would otherwise slice past the end and panic).
    // rspirv cannot place `OpExecutionModeId` (it has no section for it),
    // so those are taken out here and put back into the parsed module.
    let mut at = 5;
    let mut kept = Vec::with_capacity(words.len());
    kept.extend_from_slice(&words[..5]);
    let mut mode_ids = Vec::new();
    let mut layout = Layout::default();
    while at < words.len() {
        let count = (words[at] >> 16) as usize;
        if count == 0 || count > words.len() - at {
            return Err(KernelRejection::BadInstruction { word: at as u32 });
        }
        let inst = &words[at..at + count];
        // In its place in the module's layout: the parser files each
        // instruction into its section wherever it stands, so a module
        // out of order would be checked (and rewritten) as another one.
        if let Some(op) = Op::from_u32(inst[0] & 0xffff) {
            if !layout.next(op) {
                return Err(KernelRejection::BadInstruction { word: at as u32 });
            }
        }
        if inst[0] & 0xffff == Op::ExecutionModeId as u32 {
            mode_ids.push(execution_mode_id(inst)?);
        } else {
            kept.extend_from_slice(inst);
        }
        at += count;
    }
    // The parser is third-party code fed hostile bytes: a panic in it must
    // reject the kernel, not take the agent down.
    let parsed = std::panic::catch_unwind(|| rspirv::dr::load_words(&kept));
    match parsed {
        Ok(Ok(mut module)) => {
            module.execution_modes.extend(mode_ids);
            Ok(Parsed { version, module })
        }
        _ => Err(KernelRejection::Unparsable),
    }
}

/// `OpExecutionModeId %entry Mode %id...`, decoded by hand.
fn execution_mode_id(words: &[u32]) -> Result<Instruction, KernelRejection> {
    let (Some(&entry), Some(&mode)) = (words.get(1), words.get(2)) else {
        return Err(KernelRejection::Unparsable);
    };
    let mode = ExecutionMode::from_u32(mode).ok_or(KernelRejection::Unparsable)?;
    let mut operands = vec![Operand::IdRef(entry), Operand::ExecutionMode(mode)];
    operands.extend(words[3..].iter().map(|w| Operand::IdRef(*w)));
    Ok(Instruction::new(Op::ExecutionModeId, None, None, operands))
}

/// Where the walk over a module is in SPIR-V's logical layout (SPIR-V
/// 2.4): the section of the last instruction outside functions, and
/// whether it is inside a function.
#[derive(Default)]
struct Layout {
    section: u8,
    in_function: bool,
}

/// The layout section of an instruction that stands outside functions
/// (types, constants, global variables and undefs share one); `None` for
/// the instructions of function bodies.
fn section(op: Op) -> Option<u8> {
    use Op::*;
    Some(match op {
        Capability => 1,
        Extension => 2,
        ExtInstImport => 3,
        MemoryModel => 4,
        EntryPoint => 5,
        ExecutionMode | ExecutionModeId => 6,
        String | SourceExtension | Source | SourceContinued => 7,
        Name | MemberName => 8,
        ModuleProcessed => 9,
        Decorate | MemberDecorate | DecorationGroup | GroupDecorate | GroupMemberDecorate
        | DecorateId | DecorateString | MemberDecorateString => 10,
        Variable | Undef | Line | NoLine => 11,
        _ if op.is_type() || op.is_constant() => 11,
        Function => 12,
        _ => return None,
    })
}

impl Layout {
    /// Whether `op` may come next.
    fn next(&mut self, op: Op) -> bool {
        if self.in_function {
            // Function bodies hold variables, undefs and lines, and no
            // other module-level instruction.
            match op {
                Op::FunctionEnd => self.in_function = false,
                Op::Variable | Op::Undef | Op::Line | Op::NoLine => {}
                _ if section(op).is_some() => return false,
                _ => {}
            }
            return true;
        }
        // Lines may also stand between functions.
        if matches!(op, Op::Line | Op::NoLine) && self.section >= 11 {
            return true;
        }
        match section(op) {
            // After the first function only functions follow.
            Some(s) if s >= self.section && (self.section < 12 || s == 12) => {
                self.section = s;
                self.in_function = s == 12;
                true
            }
            _ => false,
        }
    }
}
