//! A job from the coordinator's side: the assignment and input chunks built
//! from a requester's description, and a provider's receipt checked against
//! what was sent and seen.
//!
//! The reference coordinator builds every assignment with [`Description`]
//! and settles every receipt with [`check_receipt`]; the requester's check
//! and the test kit use the same two, so the rules of `docs/PROTOCOL.md`
//! ("Offers and pricing"; "Outcome, usage, receipt and acknowledgement";
//! "Receipts") are written once. Nothing here allocates.

use core::fmt;

use crate::attest::{result_hash, result_seal, Receipt, ReceiptStatus};
use crate::bounded::{BoundedString, BoundedVec};
use crate::limits::{CHUNK_SIZE, MAX_BUFFERS};
use crate::merkle::{empty_root, leaf_hash, RootBuilder};
use crate::wire::{
    BufferSpec, Chunk, Completed, Digest, FailReason, Failed, JobAssign, JobId, KernelSpec, Nonce,
    Usage, UsageReport,
};

/// One storage buffer of a job, as the requester gives it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Buffer<'a> {
    /// Binding number in descriptor set 0.
    pub binding: u32,
    /// Initial contents (may be empty; the rest of the buffer is zero).
    pub init: &'a [u8],
    /// Buffer size in bytes.
    pub len: u64,
    /// Whether the buffer comes back as an output.
    pub readback: bool,
}

/// A job as a requester describes it, borrowed from wherever it is held.
///
/// Building an assignment checks only that each field fits the wire's
/// capacities ([`BuildError`]); the protocol's rules on the values (kernel
/// length a multiple of 4, grid counts above 0, distinct bindings, …) are
/// the provider's to enforce and the coordinator's to check before it
/// offers the job.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Description<'a> {
    /// SPIR-V bytes (input stream 0).
    pub kernel: &'a [u8],
    /// Entry point name.
    pub entry_point: &'a str,
    /// Specialization constants: (constant id, value).
    pub specialization: &'a [(u32, u32)],
    /// Push constant bytes.
    pub push_constants: &'a [u8],
    /// Workgroup counts in x, y, z.
    pub grid: [u32; 3],
    /// The buffers, in order: buffer `i` with initial data is input stream
    /// `i + 1`.
    pub buffers: &'a [Buffer<'a>],
    /// The requester's nonce, bound into the receipt.
    pub nonce: Nonce,
}

/// One input chunk as the coordinator sends it, its leaf hash computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InputChunk<'a> {
    /// 0 the kernel, `i + 1` buffer `i`.
    pub stream: u8,
    /// Position in its stream, from 0.
    pub index: u32,
    /// [`leaf_hash`] of `data`.
    pub digest: Digest,
    /// At most [`CHUNK_SIZE`] bytes.
    pub data: &'a [u8],
}

impl<'a> InputChunk<'a> {
    /// The `InputChunk` message body for `job`.
    pub fn message(&self, job: JobId) -> Chunk<'a> {
        Chunk {
            job,
            stream: self.stream,
            index: self.index,
            digest: self.digest,
            data: self.data,
        }
    }
}

/// Why a [`Description`] makes no assignment: a field is over what the
/// assignment message holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BuildError {
    /// The kernel is longer than a `u32` counts.
    KernelTooLarge {
        /// Its length in bytes.
        len: usize,
    },
    /// The entry point is longer than [`MAX_ENTRY_POINT`](crate::limits::MAX_ENTRY_POINT).
    EntryPointTooLong {
        /// Its length in bytes.
        len: usize,
    },
    /// More than [`MAX_SPEC_CONSTANTS`](crate::limits::MAX_SPEC_CONSTANTS)
    /// specialization constants.
    TooManySpecializationConstants {
        /// How many were given.
        count: usize,
    },
    /// More than [`MAX_PUSH_CONSTANTS`](crate::limits::MAX_PUSH_CONSTANTS)
    /// bytes of push constants.
    PushConstantsTooLong {
        /// How many bytes were given.
        len: usize,
    },
    /// More than [`MAX_BUFFERS`] buffers.
    TooManyBuffers {
        /// How many were given.
        count: usize,
    },
    /// The kernel or the inputs have more chunks than a Merkle tree holds
    /// (2^32).
    TooManyChunks,
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BuildError::KernelTooLarge { len } => {
                write!(
                    f,
                    "a kernel of {len} bytes is longer than an assignment states"
                )
            }
            BuildError::EntryPointTooLong { len } => write!(
                f,
                "an entry point of {len} bytes is over the limit of {}",
                crate::limits::MAX_ENTRY_POINT
            ),
            BuildError::TooManySpecializationConstants { count } => write!(
                f,
                "{count} specialization constants are over the limit of {}",
                crate::limits::MAX_SPEC_CONSTANTS
            ),
            BuildError::PushConstantsTooLong { len } => write!(
                f,
                "{len} bytes of push constants are over the limit of {}",
                crate::limits::MAX_PUSH_CONSTANTS
            ),
            BuildError::TooManyBuffers { count } => {
                write!(f, "{count} buffers are over the limit of {MAX_BUFFERS}")
            }
            BuildError::TooManyChunks => {
                f.write_str("the kernel or the inputs have more chunks than a Merkle tree holds")
            }
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for BuildError {}

impl<'a> Description<'a> {
    /// The buffer layout of the assignment, in buffer order.
    pub fn layout(&self) -> Result<BoundedVec<BufferSpec, MAX_BUFFERS>, BuildError> {
        let mut layout = BoundedVec::new();
        for b in self.buffers {
            let spec = BufferSpec {
                binding: b.binding,
                len: b.len,
                init_len: b.init.len() as u64,
                readback: b.readback,
            };
            if layout.push(spec).is_err() {
                return Err(BuildError::TooManyBuffers {
                    count: self.buffers.len(),
                });
            }
        }
        Ok(layout)
    }

    /// The input streams that carry data, in the order they are sent: the
    /// kernel (stream 0, always listed), then each buffer with initial data
    /// (stream `i + 1`).
    pub fn input_streams(&self) -> impl Iterator<Item = (u8, &'a [u8])> + 'a {
        let buffers = self.buffers;
        core::iter::once((0u8, self.kernel)).chain(
            buffers
                .iter()
                .enumerate()
                .filter(|(_, b)| !b.init.is_empty())
                .map_while(|(i, b)| Some((u8::try_from(i + 1).ok()?, b.init))),
        )
    }

    /// Every input chunk in the order it is sent, stream after stream, each
    /// hashed as it is produced.
    pub fn input_chunks(&self) -> impl Iterator<Item = InputChunk<'a>> + 'a {
        self.input_streams().flat_map(|(stream, data)| {
            data.chunks(CHUNK_SIZE)
                .enumerate()
                .map_while(move |(index, data)| {
                    Some(InputChunk {
                        stream,
                        index: u32::try_from(index).ok()?,
                        digest: leaf_hash(data),
                        data,
                    })
                })
        })
    }

    /// The assignment for `job`: the kernel's and the inputs' Merkle roots,
    /// the dispatch and the buffer layout.
    pub fn assign(&self, job: JobId) -> Result<JobAssign, BuildError> {
        self.assign_with(job, |_| {})
    }

    /// As [`Description::assign`], handing every input chunk to `each` in
    /// the order of [`Description::input_chunks`] as it is hashed, so the
    /// chunks' leaf hashes are computed once for both. Nothing is hashed
    /// when a field is over its capacity.
    pub fn assign_with(
        &self,
        job: JobId,
        mut each: impl FnMut(&InputChunk<'a>),
    ) -> Result<JobAssign, BuildError> {
        let buffers = self.layout()?;
        let len = u32::try_from(self.kernel.len()).map_err(|_| BuildError::KernelTooLarge {
            len: self.kernel.len(),
        })?;
        let mut entry_point = BoundedString::new();
        entry_point
            .push_str(self.entry_point)
            .map_err(|_| BuildError::EntryPointTooLong {
                len: self.entry_point.len(),
            })?;
        let specialization = BoundedVec::from_slice(self.specialization).map_err(|_| {
            BuildError::TooManySpecializationConstants {
                count: self.specialization.len(),
            }
        })?;
        let push_constants = BoundedVec::from_slice(self.push_constants).map_err(|_| {
            BuildError::PushConstantsTooLong {
                len: self.push_constants.len(),
            }
        })?;
        let mut kernel_root = RootBuilder::new();
        let mut inputs_root = RootBuilder::new();
        for chunk in self.input_chunks() {
            let tree = if chunk.stream == 0 {
                &mut kernel_root
            } else {
                &mut inputs_root
            };
            if !tree.push_leaf(chunk.digest) {
                return Err(BuildError::TooManyChunks);
            }
            each(&chunk);
        }
        Ok(JobAssign {
            job,
            requester_nonce: self.nonce,
            kernel: KernelSpec {
                len,
                root: kernel_root.root(),
                entry_point,
                specialization,
                push_constants,
                grid: self.grid,
            },
            buffers,
            inputs_root: inputs_root.root(),
            sealing: None,
        })
    }
}

/// What the offer settled, as the checker saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Terms {
    /// The offer's `max_price`.
    pub max_price: u64,
    /// The offer's `deadline_ms` as sent to this provider.
    pub deadline_ms: u32,
    /// The provider's quote (`OfferAccept.price`); `None` for a checker that
    /// did not see it (a requester), which then holds a timed-out job's
    /// price to `max_price` only.
    pub quote: Option<u64>,
}

/// The usage and price the provider reported beside its receipt (its
/// `UsageReport`, or what a coordinator passed on of it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reported {
    /// Metered usage.
    pub usage: Usage,
    /// Price charged.
    pub price: u64,
}

impl From<&UsageReport> for Reported {
    fn from(u: &UsageReport) -> Self {
        Reported {
            usage: u.usage,
            price: u.price,
        }
    }
}

/// How the provider said the job ended, apart from its receipt (its
/// `Completed` or `Failed` message).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// `Completed`.
    Completed {
        /// Total output bytes stated.
        output_len: u64,
        /// Output root stated.
        output_root: Digest,
    },
    /// `Failed`.
    Failed {
        /// The reason given.
        reason: FailReason,
    },
}

impl From<&Completed> for Outcome {
    fn from(c: &Completed) -> Self {
        Outcome::Completed {
            output_len: c.output_len,
            output_root: c.output_root,
        }
    }
}

impl From<&Failed> for Outcome {
    fn from(f: &Failed) -> Self {
        Outcome::Failed { reason: f.reason }
    }
}

/// Everything a receipt is checked against: what the checker sent and saw,
/// none of it taken from the receipt.
#[derive(Clone, Copy, Debug)]
pub struct Expected<'a> {
    /// The assignment sent (job id, nonce, kernel, layout, input root).
    pub assign: &'a JobAssign,
    /// The provider's public key: the receipt verified under it, and the
    /// result seal is over it.
    pub provider_key: &'a [u8; 32],
    /// Hashes ([`Evidence::hash`](crate::attest::Evidence::hash)) of the
    /// evidence documents the checker verified for this key; the receipt
    /// must name one of them.
    pub evidence: &'a [Digest],
    /// The offer's terms.
    pub terms: Terms,
    /// Usage and price reported beside the receipt.
    pub reported: Reported,
    /// The outcome message.
    pub outcome: Outcome,
    /// The Merkle root of the outputs the checker received, when it
    /// received them (every chunk, in order, each matching its digest).
    pub received_output_root: Option<Digest>,
}

/// A rule of the job a verified receipt breaks; each variant is one rule,
/// and its text says which, with the numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReceiptCheckError {
    /// The receipt names another job than the one assigned.
    Job {
        /// The job assigned.
        assigned: JobId,
        /// The job the receipt names.
        receipt: JobId,
    },
    /// The receipt names evidence the checker did not verify for this key.
    EvidenceNotVerified,
    /// The receipt carries another requester nonce than the assignment.
    RequesterNonce,
    /// The receipt's kernel hash is not that of the assignment.
    KernelHash,
    /// The receipt's input root is not the assignment's.
    InputRoot,
    /// The receipt's usage differs from the usage reported beside it.
    UsageDiffers {
        /// The usage reported beside the receipt.
        reported: Usage,
        /// The receipt's.
        receipt: Usage,
    },
    /// The receipt's price differs from the price reported beside it.
    PriceDiffers {
        /// The price reported beside the receipt.
        reported: u64,
        /// The receipt's.
        receipt: u64,
    },
    /// The result hash is not over the receipt's own kernel hash, roots and
    /// output length.
    ResultHash,
    /// The result seal is not this key's seal of the job and result hash.
    ResultSeal,
    /// The receipt's status is not the outcome the provider reported.
    StatusDiffers {
        /// The receipt's status.
        receipt: ReceiptStatus,
        /// The outcome message: `None` for `Completed`, else the `Failed`
        /// reason.
        reported: Option<FailReason>,
    },
    /// A completed receipt's output root is not that of the outputs
    /// received.
    OutputRoot,
    /// A completed receipt's output root or length is not what `Completed`
    /// stated.
    CompletedDiffers {
        /// `Completed.output_len`.
        reported_len: u64,
        /// The receipt's `output_len`.
        receipt_len: u64,
    },
    /// A completed receipt's output length is not the sum of the
    /// assignment's read-back buffers.
    OutputLen {
        /// The read-back buffers' total length.
        assigned: u64,
        /// The receipt's `output_len`.
        receipt: u64,
    },
    /// A failure receipt states an output (its root is not the empty root,
    /// or its length is not 0).
    FailureOutput {
        /// The receipt's `output_len`.
        output_len: u64,
    },
    /// The usage's `bytes_in` is not the kernel and initial data assigned.
    BytesIn {
        /// `kernel.len` + Σ `init_len` of the assignment.
        assigned: u64,
        /// The receipt's `usage.bytes_in`.
        receipt: u64,
    },
    /// The usage's `bytes_out` is not the receipt's output length.
    BytesOut {
        /// The receipt's `output_len` (0 for a failure).
        output_len: u64,
        /// The receipt's `usage.bytes_out`.
        receipt: u64,
    },
    /// The price is over the offer's maximum.
    OverMaximum {
        /// The receipt's price.
        price: u64,
        /// The offer's `max_price`.
        max_price: u64,
    },
    /// A timed-out job is not charged exactly the accepted quote.
    TimeoutPrice {
        /// The accepted quote.
        quote: u64,
        /// The receipt's price.
        price: u64,
    },
    /// A timed-out job is metered past its deadline.
    TimeoutMetered {
        /// The offer's `deadline_ms` as sent to the provider.
        deadline_ms: u32,
        /// The receipt's `usage.gpu_time_us`.
        gpu_time_us: u64,
    },
    /// A job that failed other than by running out its time is charged.
    FailurePrice {
        /// The failure.
        reason: FailReason,
        /// The receipt's price.
        price: u64,
    },
}

/// How a status or outcome reads in [`ReceiptCheckError`]'s text.
struct StatusText(Option<FailReason>);

impl fmt::Display for StatusText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            None => f.write_str("completed"),
            Some(reason) => write!(f, "failed ({reason:?})"),
        }
    }
}

/// A usage as [`ReceiptCheckError`]'s text gives it.
struct UsageText(Usage);

impl fmt::Display for UsageText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let u = &self.0;
        write!(
            f,
            "gpu_time_us {}, dispatches {}, bytes_in {}, bytes_out {}",
            u.gpu_time_us, u.dispatches, u.bytes_in, u.bytes_out
        )
    }
}

fn failure_of(status: ReceiptStatus) -> Option<FailReason> {
    match status {
        ReceiptStatus::Completed => None,
        ReceiptStatus::Failed(reason) => Some(reason),
    }
}

impl fmt::Display for ReceiptCheckError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use ReceiptCheckError as E;
        match *self {
            E::Job { assigned, receipt } => {
                write!(f, "the receipt names job {receipt}, not job {assigned}")
            }
            E::EvidenceNotVerified => {
                f.write_str("the receipt names evidence that was not verified for this provider")
            }
            E::RequesterNonce => f.write_str("the receipt carries another requester nonce"),
            E::KernelHash => f.write_str(
                "the receipt's kernel hash is not that of the kernel, dispatch and buffer \
                 layout assigned",
            ),
            E::InputRoot => f.write_str("the receipt's input root is not that of the inputs sent"),
            E::UsageDiffers { reported, receipt } => write!(
                f,
                "the receipt's usage ({}) differs from the usage reported with it ({})",
                UsageText(receipt),
                UsageText(reported)
            ),
            E::PriceDiffers { reported, receipt } => write!(
                f,
                "the receipt charges {receipt}, the price reported with it is {reported}"
            ),
            E::ResultHash => f.write_str(
                "the receipt's result hash is not over its kernel hash, roots and output length",
            ),
            E::ResultSeal => f.write_str(
                "the receipt's result seal is not this provider's seal of the job and result hash",
            ),
            E::StatusDiffers { receipt, reported } => write!(
                f,
                "the receipt says the job {}, the provider reported it {}",
                StatusText(failure_of(receipt)),
                StatusText(reported)
            ),
            E::OutputRoot => {
                f.write_str("the receipt's output root is not that of the outputs received")
            }
            E::CompletedDiffers {
                reported_len,
                receipt_len,
            } => write!(
                f,
                "the receipt's output (root, {receipt_len} bytes) is not what Completed stated \
                 (root, {reported_len} bytes)"
            ),
            E::OutputLen { assigned, receipt } => write!(
                f,
                "the receipt's output length {receipt} is not the {assigned} bytes of the \
                 read-back buffers assigned"
            ),
            E::FailureOutput { output_len } => write!(
                f,
                "a failure receipt states no output (the empty root, 0 bytes); this one \
                 states {output_len} bytes or another root"
            ),
            E::BytesIn { assigned, receipt } => write!(
                f,
                "the receipt's usage counts {receipt} bytes in, the assignment sent {assigned} \
                 (kernel and initial data)"
            ),
            E::BytesOut {
                output_len,
                receipt,
            } => write!(
                f,
                "the receipt's usage counts {receipt} bytes out, its output is {output_len} bytes"
            ),
            E::OverMaximum { price, max_price } => write!(
                f,
                "price {price} is over the requester's maximum {max_price}"
            ),
            E::TimeoutPrice { quote, price } => write!(
                f,
                "a timed-out job is charged the accepted quote {quote}, the receipt charges {price}"
            ),
            E::TimeoutMetered {
                deadline_ms,
                gpu_time_us,
            } => write!(
                f,
                "a timed-out job is metered to its deadline ({deadline_ms} ms), the receipt \
                 meters {gpu_time_us} us"
            ),
            E::FailurePrice { reason, price } => write!(
                f,
                "a failed job ({reason:?}) is charged 0, the receipt charges {price}"
            ),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for ReceiptCheckError {}

/// Checks a receipt whose signature the caller verified (and, for a
/// coordinator, its chain position) against the job: every field, and the
/// price rules of its status. The first rule broken is returned, in this
/// order:
///
/// 1. `job` is the assignment's;
/// 2. `evidence_hash` names evidence verified for this key;
/// 3. `requester_nonce` is the assignment's;
/// 4. `kernel_hash` is the assignment's ([`JobAssign::kernel_hash`]: the
///    kernel, its dispatch and the buffer layout);
/// 5. `input_root` is the assignment's;
/// 6. `usage` and 7. `price` equal those reported beside the receipt;
/// 8. `result_hash` is over the receipt's kernel hash, roots and output
///    length (not for a completed sealed job: its result hash is keyed
///    over the plaintext, for its requester to check), and 9.
///    `result_seal` is this key's seal of the job and it;
/// 10. the status is the outcome the provider reported (for a failure, the
///     same reason);
/// 11. completed: the output root is that of the outputs received (when
///     given) and, with the length, what `Completed` stated; the length is
///     the assignment's read-back total. Failed: no output (the empty root,
///     length 0);
/// 12. `usage.bytes_in` is the kernel and initial data assigned, and
///     `usage.bytes_out` the output length;
/// 13. the price: completed, at most `max_price`; `Timeout`, exactly the
///     accepted quote (at most `max_price` when the quote is not known) and
///     `gpu_time_us` at most `deadline_ms` × 1000; any other failure, 0.
///
/// `sequence`, `prev_hash` and `key_id` are the chain's and the
/// signature's, checked by [`ReceiptVerifier`](crate::attest::ReceiptVerifier)
/// and [`Receipt::verify`]; `started_at` and `ended_at` are the provider's
/// clock, which the checker cannot compare with anything it saw.
pub fn check_receipt(r: &Receipt, expected: &Expected<'_>) -> Result<(), ReceiptCheckError> {
    use ReceiptCheckError as E;
    let a = expected.assign;
    if r.job != a.job {
        return Err(E::Job {
            assigned: a.job,
            receipt: r.job,
        });
    }
    if !expected.evidence.contains(&r.evidence_hash) {
        return Err(E::EvidenceNotVerified);
    }
    if r.requester_nonce != a.requester_nonce {
        return Err(E::RequesterNonce);
    }
    if r.kernel_hash != a.kernel_hash() {
        return Err(E::KernelHash);
    }
    if r.input_root != a.inputs_root {
        return Err(E::InputRoot);
    }
    let reported = expected.reported;
    if r.usage != reported.usage {
        return Err(E::UsageDiffers {
            reported: reported.usage,
            receipt: r.usage,
        });
    }
    if r.price != reported.price {
        return Err(E::PriceDiffers {
            reported: reported.price,
            receipt: r.price,
        });
    }
    let rh = result_hash(&r.kernel_hash, &r.input_root, &r.output_root, r.output_len);
    // A completed sealed job's result hash is keyed over the plaintext,
    // which only its requester (holding the result key) can recompute
    // (`crate::e2e::expected_result_hash`); a failed one's is as usual.
    let keyed = a.sealing.is_some() && r.status == ReceiptStatus::Completed;
    if !keyed && r.result_hash != rh {
        return Err(E::ResultHash);
    }
    if r.result_seal != result_seal(expected.provider_key, r.job, &r.result_hash) {
        return Err(E::ResultSeal);
    }
    let status_differs = E::StatusDiffers {
        receipt: r.status,
        reported: match expected.outcome {
            Outcome::Completed { .. } => None,
            Outcome::Failed { reason } => Some(reason),
        },
    };
    match (r.status, expected.outcome) {
        (
            ReceiptStatus::Completed,
            Outcome::Completed {
                output_len,
                output_root,
            },
        ) => {
            if expected
                .received_output_root
                .is_some_and(|received| received != r.output_root)
            {
                return Err(E::OutputRoot);
            }
            if output_root != r.output_root || output_len != r.output_len {
                return Err(E::CompletedDiffers {
                    reported_len: output_len,
                    receipt_len: r.output_len,
                });
            }
            if r.output_len != a.bytes_out() {
                return Err(E::OutputLen {
                    assigned: a.bytes_out(),
                    receipt: r.output_len,
                });
            }
        }
        (ReceiptStatus::Failed(reason), Outcome::Failed { reason: reported }) => {
            if reason != reported {
                return Err(status_differs);
            }
            if r.output_root != empty_root() || r.output_len != 0 {
                return Err(E::FailureOutput {
                    output_len: r.output_len,
                });
            }
        }
        _ => return Err(status_differs),
    }
    if r.usage.bytes_in != a.bytes_in() {
        return Err(E::BytesIn {
            assigned: a.bytes_in(),
            receipt: r.usage.bytes_in,
        });
    }
    if r.usage.bytes_out != r.output_len {
        return Err(E::BytesOut {
            output_len: r.output_len,
            receipt: r.usage.bytes_out,
        });
    }
    check_price(r, &expected.terms)
}

/// The price rules of "Offers and pricing": a completed job at most the
/// maximum; a kernel that ran out its time exactly the accepted quote,
/// metered at most to the deadline; every other failure nothing.
fn check_price(r: &Receipt, terms: &Terms) -> Result<(), ReceiptCheckError> {
    use ReceiptCheckError as E;
    let over_maximum = E::OverMaximum {
        price: r.price,
        max_price: terms.max_price,
    };
    match r.status {
        ReceiptStatus::Completed => {
            if r.price > terms.max_price {
                return Err(over_maximum);
            }
        }
        ReceiptStatus::Failed(FailReason::Timeout) => {
            match terms.quote {
                Some(quote) if r.price != quote => {
                    return Err(E::TimeoutPrice {
                        quote,
                        price: r.price,
                    })
                }
                None if r.price > terms.max_price => return Err(over_maximum),
                _ => {}
            }
            if r.usage.gpu_time_us > u64::from(terms.deadline_ms) * 1000 {
                return Err(E::TimeoutMetered {
                    deadline_ms: terms.deadline_ms,
                    gpu_time_us: r.usage.gpu_time_us,
                });
            }
        }
        ReceiptStatus::Failed(reason) => {
            if r.price != 0 {
                return Err(E::FailurePrice {
                    reason,
                    price: r.price,
                });
            }
        }
    }
    Ok(())
}
