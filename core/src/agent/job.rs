//! A job on the agent: the terms its offer was accepted on, and what each
//! of its states holds.

use super::{JobState, Outcome};
use crate::attest::{ChainState, BATCHED_RECEIPT_MIN_LEN};
use crate::bounded::BoundedVec;
use crate::limits::{CHUNK_SIZE, MAX_JOBS};
use crate::merkle::RootBuilder;
use crate::time::Instant;
use crate::wire::{Digest, FailReason, JobAssign, JobId, JobOffer, Usage};

/// A job the agent holds: the terms its offer was accepted on, and where it
/// stands.
#[derive(Clone, Debug)]
pub(super) struct Job {
    pub(super) id: JobId,
    pub(super) max_price: u64,
    /// The price the offer was accepted at: what a timed-out job is charged.
    pub(super) quote: u64,
    /// The offer's transfer sizes, which the assignment must keep to.
    pub(super) bytes_in: u64,
    pub(super) bytes_out: u64,
    /// When the result is due; while a failure waits for the signer
    /// ([`PendingFailure`]), when signing it is tried again.
    pub(super) deadline: Instant,
    /// The evidence the coordinator accepted (with its `Ready`) in the
    /// session that offered this job: what its receipt names, even when it
    /// is signed later, after evidence a coordinator refused.
    pub(super) evidence_hash: Digest,
    pub(super) phase: Phase,
}

/// Where a job stands.
// Without an allocator there is nothing to box: every job slot holds the
// largest state anyway.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
pub(super) enum Phase {
    /// Offer accepted; waiting for the assignment.
    Accepted,
    /// Assigned: the assignment holds from here on.
    Assigned { spec: JobAssign, step: Step },
}

/// Where an assigned job stands. The first three are work whose result is
/// not signed yet; the last two hold the signed result.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
pub(super) enum Step {
    /// Kernel and inputs arriving.
    Receiving {
        input: Input,
        failure: Option<PendingFailure>,
    },
    /// Inputs verified; the host runs the kernel.
    Running {
        started_at: Instant,
        failure: Option<PendingFailure>,
    },
    /// The host writes the outputs, before the result is signed.
    Uploading {
        started_at: Instant,
        upload: Upload,
        failure: Option<PendingFailure>,
    },
    /// The result is signed; the host writes its outputs again (after a
    /// reconnect) for it to be sent on this connection. It holds back the
    /// outcomes of later receipts.
    Resending {
        upload: Upload,
        result: SignedResult,
    },
    /// The result is signed; waiting for it to go out and be acknowledged.
    AwaitingAck {
        result: SignedResult,
        /// The outcome messages still have to be sent on the current
        /// connection.
        unsent: bool,
    },
}

/// A failure the agent decided on (deadline, corrupt input), which the host
/// was told of, whose receipt the signer could not sign yet: retried at the
/// job's deadline, with no further event; the job takes no more input and
/// no more host calls.
#[derive(Clone, Copy, Debug)]
pub(super) struct PendingFailure {
    pub(super) reason: FailReason,
    pub(super) detail: u32,
    pub(super) usage: Usage,
}

/// Where the kernel and inputs of a job stand.
#[derive(Clone, Debug)]
pub(super) struct Input {
    /// The stream arriving: 0 for the kernel, `i + 1` for buffer `i`.
    pub(super) stream: u8,
    /// Its next chunk's index.
    pub(super) chunk: u64,
    /// The Merkle tree of the stream (the kernel), or of every input buffer
    /// so far.
    pub(super) builder: RootBuilder,
}

/// What an input chunk left a job with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Received {
    /// More chunks to come.
    More,
    /// Every input arrived and matches its root.
    Complete,
    /// The kernel or the inputs do not match their root.
    Corrupt,
}

impl Input {
    pub(super) fn new() -> Self {
        Input {
            stream: 0,
            chunk: 0,
            builder: RootBuilder::new(),
        }
    }

    /// Where the next chunk starts in its stream, and how long it must be.
    pub(super) fn next_chunk(&self, spec: &JobAssign) -> (u64, usize) {
        let offset = self.chunk * CHUNK_SIZE as u64;
        let len = (stream_len(spec, self.stream) - offset).min(CHUNK_SIZE as u64) as usize;
        (offset, len)
    }

    /// Takes the leaf of the next chunk, whose digest was checked; at the
    /// end of a stream checks its root and moves to the next one.
    pub(super) fn push(&mut self, spec: &JobAssign, leaf: Digest) -> Received {
        self.builder.push_leaf(leaf);
        self.chunk += 1;
        if self.chunk * (CHUNK_SIZE as u64) < stream_len(spec, self.stream) {
            return Received::More;
        }
        if self.stream == 0 {
            if self.builder.root() != spec.kernel.root {
                return Received::Corrupt;
            }
            self.builder = RootBuilder::new();
        }
        match next_input_stream(spec, self.stream) {
            Some(stream) => {
                self.stream = stream;
                self.chunk = 0;
                Received::More
            }
            None if self.builder.root() != spec.inputs_root => Received::Corrupt,
            None => Received::Complete,
        }
    }
}

/// Where the upload of a job's outputs stands.
#[derive(Clone, Debug)]
pub(super) struct Upload {
    /// The read-back buffer being written.
    pub(super) buffer: u8,
    /// The next byte offset in it.
    pub(super) offset: u64,
    /// The Merkle tree of the outputs so far.
    pub(super) builder: RootBuilder,
    /// The connection epoch every chunk taken so far was sent on (another
    /// value once a chunk was taken and not sent): only an upload wholly
    /// sent on the current session lets its outcome follow at once.
    pub(super) epoch: u32,
}

impl Upload {
    /// An upload from the start of the first read-back buffer.
    pub(super) fn new(spec: &JobAssign, epoch: u32) -> Self {
        Upload {
            buffer: first_readback(spec).unwrap_or(0),
            offset: 0,
            builder: RootBuilder::new(),
            epoch,
        }
    }

    /// Whether every read-back buffer was written to its end.
    pub(super) fn is_complete(&self, spec: &JobAssign) -> bool {
        self.offset >= buffer_len(spec, self.buffer) && next_readback(spec, self.buffer).is_none()
    }
}

/// The longest receipt this agent holds: a batch covers at most the
/// [`MAX_JOBS`] results it holds, so an audit path has at most
/// `ceil(log2(MAX_JOBS))` hashes (669 bytes for 32 jobs, 573 for 4).
pub(super) const AGENT_RECEIPT_LEN: usize = BATCHED_RECEIPT_MIN_LEN + 32 * ceil_log2(MAX_JOBS);

const fn ceil_log2(n: usize) -> usize {
    let mut bits = 0;
    while (1 << bits) < n {
        bits += 1;
    }
    bits
}

/// A job's signed result, kept until the coordinator acknowledges it.
#[derive(Clone, Debug)]
pub(super) struct SignedResult {
    pub(super) outcome: Outcome,
    pub(super) usage: Usage,
    pub(super) price: u64,
    /// The signed receipt, in either form; while `signed` is false, the
    /// receipt payload waiting for its batch's signature.
    pub(super) receipt: BoundedVec<u8, AGENT_RECEIPT_LEN>,
    /// Whether `receipt` is signed. An unsigned result holds back the
    /// outcomes of later receipts, and its job's slot.
    pub(super) signed: bool,
    /// The receipt chain right after this receipt.
    pub(super) chain_after: ChainState,
    /// The host stored the result (always true without `persist_results`).
    pub(super) persisted: bool,
}

impl Job {
    pub(super) fn new(
        offer: &JobOffer,
        quote: u64,
        deadline: Instant,
        evidence_hash: Digest,
    ) -> Self {
        Job {
            id: offer.job,
            max_price: offer.max_price,
            quote,
            bytes_in: offer.bytes_in,
            bytes_out: offer.bytes_out,
            deadline,
            evidence_hash,
            phase: Phase::Accepted,
        }
    }

    pub(super) fn state(&self) -> JobState {
        match self.step() {
            None => JobState::Accepted,
            Some(Step::Receiving { .. }) => JobState::Receiving,
            Some(Step::Running { .. }) => JobState::Running,
            Some(Step::Uploading { .. } | Step::Resending { .. }) => JobState::Uploading,
            Some(Step::AwaitingAck { .. }) => JobState::AwaitingAck,
        }
    }

    pub(super) fn spec(&self) -> Option<&JobAssign> {
        match &self.phase {
            Phase::Accepted => None,
            Phase::Assigned { spec, .. } => Some(spec),
        }
    }

    pub(super) fn step(&self) -> Option<&Step> {
        match &self.phase {
            Phase::Accepted => None,
            Phase::Assigned { step, .. } => Some(step),
        }
    }

    pub(super) fn failure(&self) -> Option<&PendingFailure> {
        self.step().and_then(Step::failure)
    }

    pub(super) fn result(&self) -> Option<&SignedResult> {
        self.step().and_then(Step::result)
    }

    pub(super) fn result_mut(&mut self) -> Option<&mut SignedResult> {
        match &mut self.phase {
            Phase::Accepted => None,
            Phase::Assigned { step, .. } => step.result_mut(),
        }
    }

    pub(super) fn host_knows(&self) -> bool {
        !matches!(self.phase, Phase::Accepted)
    }

    /// Microseconds from the start of the run to the deadline: the most GPU
    /// time a job that ran out its time is metered.
    pub(super) fn time_to_deadline(&self, started_at: Instant) -> u64 {
        self.deadline.micros.saturating_sub(started_at.micros)
    }

    /// Whether the job's deadline ends it: until its result is signed
    /// (a failure waiting for the signer is retried instead).
    pub(super) fn has_deadline(&self) -> bool {
        match self.step() {
            None => true,
            Some(
                step @ (Step::Receiving { .. } | Step::Running { .. } | Step::Uploading { .. }),
            ) => step.failure().is_none(),
            Some(Step::Resending { .. } | Step::AwaitingAck { .. }) => false,
        }
    }
}

impl Step {
    pub(super) fn failure(&self) -> Option<&PendingFailure> {
        match self {
            Step::Receiving { failure, .. }
            | Step::Running { failure, .. }
            | Step::Uploading { failure, .. } => failure.as_ref(),
            Step::Resending { .. } | Step::AwaitingAck { .. } => None,
        }
    }

    pub(super) fn result(&self) -> Option<&SignedResult> {
        match self {
            Step::Resending { result, .. } | Step::AwaitingAck { result, .. } => Some(result),
            Step::Receiving { .. } | Step::Running { .. } | Step::Uploading { .. } => None,
        }
    }

    pub(super) fn result_mut(&mut self) -> Option<&mut SignedResult> {
        match self {
            Step::Resending { result, .. } | Step::AwaitingAck { result, .. } => Some(result),
            Step::Receiving { .. } | Step::Running { .. } | Step::Uploading { .. } => None,
        }
    }
}

fn stream_len(spec: &JobAssign, stream: u8) -> u64 {
    if stream == 0 {
        spec.kernel.len as u64
    } else {
        spec.buffers
            .get(stream as usize - 1)
            .map(|b| b.init_len)
            .unwrap_or(0)
    }
}

fn next_input_stream(spec: &JobAssign, after: u8) -> Option<u8> {
    spec.buffers
        .iter()
        .enumerate()
        .skip(after as usize)
        .find(|(_, b)| b.init_len > 0)
        .map(|(i, _)| i as u8 + 1)
}

pub(super) fn first_readback(spec: &JobAssign) -> Option<u8> {
    spec.buffers
        .iter()
        .position(|b| b.readback)
        .map(|i| i as u8)
}

/// Length of buffer `buffer`, or 0 if there is none.
pub(super) fn buffer_len(spec: &JobAssign, buffer: u8) -> u64 {
    spec.buffers
        .get(buffer as usize)
        .map(|b| b.len)
        .unwrap_or(0)
}

pub(super) fn next_readback(spec: &JobAssign, after: u8) -> Option<u8> {
    spec.buffers
        .iter()
        .enumerate()
        .skip(after as usize + 1)
        .find(|(_, b)| b.readback)
        .map(|(i, _)| i as u8)
}
