//! Pieces every hosted (std) host of the agent needs: the job's inputs as
//! they arrive, and what a run produces or why it failed.

use std::vec::Vec;

use crate::wire::{FailReason, Usage};

/// A job's kernel and input buffers, filled from `Event::JobData`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JobInputs {
    /// SPIR-V bytes (stream 0).
    pub kernel: Vec<u8>,
    /// Initial contents of each buffer (stream `i + 1` is buffer `i`); a
    /// buffer without input stays empty.
    pub buffers: Vec<Vec<u8>>,
}

impl JobInputs {
    /// Stores verified bytes of `stream` at `offset`, growing the target.
    pub fn write(&mut self, stream: u8, offset: u64, data: &[u8]) {
        let target = if stream == 0 {
            &mut self.kernel
        } else {
            let i = stream as usize - 1;
            if self.buffers.len() <= i {
                self.buffers.resize(i + 1, Vec::new());
            }
            &mut self.buffers[i]
        };
        let start = offset as usize;
        let end = start + data.len();
        if target.len() < end {
            target.resize(end, 0);
        }
        target[start..end].copy_from_slice(data);
    }
}

/// Outputs of a run: one per read-back buffer, in binding order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JobOutputs {
    /// Read-back buffers' contents, each exactly the buffer's length.
    pub outputs: Vec<Vec<u8>>,
    /// Metered usage (GPU time, dispatches); transfer sizes are filled in by
    /// the agent.
    pub usage: Usage,
}

/// Why a run failed, as it goes on the wire, and what it used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JobFailure {
    /// The reason.
    pub reason: FailReason,
    /// A reason-specific code (the kernel rejection code, say).
    pub detail: u32,
    /// Metered usage of what ran (GPU time, dispatches); transfer sizes are
    /// filled in by the agent. A [`FailReason::Timeout`] is metered to the
    /// time limit the run was given: it is signed into the receipt and the
    /// job is charged its quote ([`crate::Policy::charge_timeout`]). Other
    /// failures are charged nothing whatever they report.
    pub usage: Usage,
}

impl JobFailure {
    /// A failure with nothing metered.
    pub fn new(reason: FailReason, detail: u32) -> Self {
        JobFailure {
            reason,
            detail,
            usage: Usage::default(),
        }
    }
}
