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
    while at < words.len() {
        let count = (words[at] >> 16) as usize;
        if count == 0 || count > words.len() - at {
            return Err(KernelRejection::BadInstruction { word: at as u32 });
        }
        let inst = &words[at..at + count];
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
