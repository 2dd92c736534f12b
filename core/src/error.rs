//! The agent's errors, the codes sent to the peer in `Error` frames, and the
//! one numeric code space every error of the library maps into.
//!
//! [`Error`] says who is at fault, as rustls's errors do:
//! - [`Error::Peer`]: the coordinator broke the protocol ([`PeerError`]); an
//!   `Error` frame was queued for it;
//! - [`Error::Usage`]: the host called the API in a way it does not allow
//!   ([`UsageError`]);
//! - [`Error::WouldBlock`], [`Error::EventsPending`] and
//!   [`Error::BufferTooSmall`]: back-pressure, call again after draining;
//! - [`Error::Config`]: a configuration value is out of range ([`ConfigError`]);
//! - [`Error::Signer`]: the signer failed.
//!
//! Every error has a number ([`Error::code`]) in the shared space of
//! [`codes`], which the C header, the C++ API and the Python and Go
//! bindings use unchanged (`docs/CODES.md` is the table).

use crate::attest::{KeyError, SignError, VerifyError};
use crate::wire::{DecodeError, FailReason, JobId, MessageType};

/// Codes carried by `Error` frames (`docs/PROTOCOL.md`, "Errors").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
#[repr(u16)]
pub enum ErrorCode {
    /// A body did not decode as its message type.
    Malformed = 1,
    /// A header announced a body over the maximum frame size.
    FrameTooLarge = 2,
    /// Unsupported wire or protocol version.
    UnsupportedVersion = 3,
    /// Unknown message type byte.
    UnknownMessageType = 4,
    /// A message not allowed in the receiver's state or direction.
    UnexpectedMessage = 5,
    /// A job id the receiver does not hold.
    UnknownJob = 6,
    /// A job assignment breaks the offer or the limits.
    BadAssignment = 7,
    /// A chunk out of order or of the wrong length.
    ChunkOutOfOrder = 8,
    /// A chunk whose data does not match its digest.
    ChunkDigestMismatch = 9,
    /// A stream whose Merkle root does not match the assignment.
    RootMismatch = 10,
    /// The first bytes of a frame are not the magic.
    BadMagic = 11,
    /// The coordinator rejected the provider's evidence.
    EvidenceRejected = 12,
    /// A receipt did not verify (coordinator to provider).
    ReceiptRejected = 13,
}

impl ErrorCode {
    /// Every wire error code, in order.
    pub const ALL: &'static [ErrorCode] = &[
        ErrorCode::Malformed,
        ErrorCode::FrameTooLarge,
        ErrorCode::UnsupportedVersion,
        ErrorCode::UnknownMessageType,
        ErrorCode::UnexpectedMessage,
        ErrorCode::UnknownJob,
        ErrorCode::BadAssignment,
        ErrorCode::ChunkOutOfOrder,
        ErrorCode::ChunkDigestMismatch,
        ErrorCode::RootMismatch,
        ErrorCode::BadMagic,
        ErrorCode::EvidenceRejected,
        ErrorCode::ReceiptRejected,
    ];

    /// The code for a wire value, if known.
    pub fn from_u16(v: u16) -> Option<ErrorCode> {
        ErrorCode::ALL.iter().copied().find(|c| *c as u16 == v)
    }
}

/// The coordinator broke the protocol. An `Error` frame with
/// [`PeerError::wire_code`] was queued for it; the session goes on unless
/// [`PeerError::is_fatal`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PeerError {
    /// A frame that does not decode. `BadMagic`, `UnsupportedVersion` and
    /// `FrameTooLarge` end the connection (the stream cannot be
    /// resynchronised).
    Decode(DecodeError),
    /// A message not allowed now or not in its direction.
    UnexpectedMessage(MessageType),
    /// A job id the agent does not hold.
    UnknownJob(JobId),
    /// A job assignment breaks the accepted offer or the agent's limits.
    BadAssignment(JobId),
    /// An input chunk out of order or of the wrong length.
    ChunkOutOfOrder(JobId),
    /// A protocol version this agent does not speak.
    UnsupportedVersion(u16),
}

impl PeerError {
    /// The code sent to the peer in the `Error` frame.
    pub fn wire_code(&self) -> ErrorCode {
        match self {
            PeerError::Decode(DecodeError::BadMagic) => ErrorCode::BadMagic,
            PeerError::Decode(DecodeError::UnsupportedVersion(_))
            | PeerError::UnsupportedVersion(_) => ErrorCode::UnsupportedVersion,
            PeerError::Decode(DecodeError::FrameTooLarge(_)) => ErrorCode::FrameTooLarge,
            PeerError::Decode(DecodeError::UnknownType(_)) => ErrorCode::UnknownMessageType,
            PeerError::Decode(_) => ErrorCode::Malformed,
            PeerError::UnexpectedMessage(_) => ErrorCode::UnexpectedMessage,
            PeerError::UnknownJob(_) => ErrorCode::UnknownJob,
            PeerError::BadAssignment(_) => ErrorCode::BadAssignment,
            PeerError::ChunkOutOfOrder(_) => ErrorCode::ChunkOutOfOrder,
        }
    }

    /// Whether the connection cannot go on after this error.
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            PeerError::Decode(
                DecodeError::BadMagic
                    | DecodeError::UnsupportedVersion(_)
                    | DecodeError::FrameTooLarge(_)
            ) | PeerError::UnsupportedVersion(_)
        )
    }
}

/// The host called the agent in a way it does not allow. Nothing was changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum UsageError {
    /// The call needs an established session.
    NotConnected,
    /// `connect` was called while a session is open.
    AlreadyConnected,
    /// The host named a job the agent does not hold.
    UnknownJob(JobId),
    /// The job is not in a state that allows this call (outputs for a job
    /// that is not running, say).
    InvalidJobState(JobId),
    /// Outputs were written for a buffer other than the next one due.
    OutputOutOfOrder(JobId),
    /// `finish_job` before every read-back buffer was written in full.
    OutputIncomplete(JobId),
    /// Outputs written again after a reconnect differ from the first time.
    OutputMismatch(JobId),
    /// The agent already holds as many jobs as it can.
    CapacityExceeded,
    /// No input chunk of this job is readable now (`read_input` after the
    /// next `handle_input`, or for another job than the last `JobData`).
    NoInput(JobId),
}

/// A configuration value is out of range: which, and the rule it breaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// The field, as `Config` names it (`policy.max_concurrent`, say).
    pub field: &'static str,
    /// What it must be.
    pub rule: &'static str,
}

/// What went wrong in a call on the agent. Every error leaves the agent usable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The peer broke the protocol; an `Error` frame was queued.
    Peer(PeerError),
    /// The host called the API wrongly; nothing was changed.
    Usage(UsageError),
    /// The outgoing queue is full: drain `poll_transmit`, then call again.
    /// (`connect` also says it while events wait to be read.)
    WouldBlock,
    /// Too many events wait to be read for this call to queue its own:
    /// drain `poll_event`, then call again. Nothing was changed.
    EventsPending,
    /// The output buffer is too small: this many bytes are needed.
    BufferTooSmall(usize),
    /// A configuration value is out of range.
    Config(ConfigError),
    /// The signer failed; the job's result is kept and signing is retried.
    Signer(SignError),
}

impl Error {
    /// The number of this error in the shared code space ([`codes`]).
    pub fn code(&self) -> u32 {
        match self {
            Error::Peer(p) => codes::PEER_BASE + p.wire_code() as u32,
            Error::Usage(u) => codes::usage(u),
            Error::WouldBlock => codes::WOULD_BLOCK,
            Error::EventsPending => codes::EVENTS_PENDING,
            Error::BufferTooSmall(_) => codes::BUFFER_TOO_SMALL,
            Error::Config(_) => codes::INVALID_CONFIG,
            Error::Signer(e) => codes::signer(e),
        }
    }

    /// The code to send to the peer, for an error caused by its input.
    pub fn wire_code(&self) -> Option<ErrorCode> {
        match self {
            Error::Peer(p) => Some(p.wire_code()),
            _ => None,
        }
    }

    /// Whether the connection cannot go on after this error.
    pub fn is_fatal(&self) -> bool {
        matches!(self, Error::Peer(p) if p.is_fatal())
    }

    /// The job this error is about, if it names one.
    pub fn job(&self) -> Option<JobId> {
        match self {
            Error::Peer(
                PeerError::UnknownJob(j)
                | PeerError::BadAssignment(j)
                | PeerError::ChunkOutOfOrder(j),
            )
            | Error::Usage(
                UsageError::UnknownJob(j)
                | UsageError::InvalidJobState(j)
                | UsageError::OutputOutOfOrder(j)
                | UsageError::OutputIncomplete(j)
                | UsageError::OutputMismatch(j)
                | UsageError::NoInput(j),
            ) => Some(*j),
            _ => None,
        }
    }
}

impl From<PeerError> for Error {
    fn from(e: PeerError) -> Self {
        Error::Peer(e)
    }
}

impl From<UsageError> for Error {
    fn from(e: UsageError) -> Self {
        Error::Usage(e)
    }
}

impl From<ConfigError> for Error {
    fn from(e: ConfigError) -> Self {
        Error::Config(e)
    }
}

impl core::fmt::Display for PeerError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            PeerError::Decode(e) => write!(f, "undecodable frame from the peer: {e:?}"),
            PeerError::UnexpectedMessage(t) => write!(f, "message {t:?} not allowed now"),
            PeerError::UnknownJob(j) => {
                write!(f, "the peer named job {j}, which this agent does not hold")
            }
            PeerError::BadAssignment(j) => {
                write!(f, "assignment of job {j} breaks its offer or the limits")
            }
            PeerError::ChunkOutOfOrder(j) => write!(
                f,
                "input chunk of job {j} out of order or of the wrong length"
            ),
            PeerError::UnsupportedVersion(v) => write!(f, "protocol version {v} not supported"),
        }
    }
}

impl core::fmt::Display for UsageError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            UsageError::NotConnected => f.write_str("no session is established"),
            UsageError::AlreadyConnected => f.write_str("a session is already open"),
            UsageError::UnknownJob(j) => write!(f, "no job {j} on this agent"),
            UsageError::InvalidJobState(j) => {
                write!(f, "job {j} is not in a state that allows this")
            }
            UsageError::OutputOutOfOrder(j) => {
                write!(f, "outputs of job {j} written for the wrong buffer")
            }
            UsageError::OutputIncomplete(j) => write!(f, "outputs of job {j} not written in full"),
            UsageError::OutputMismatch(j) => write!(
                f,
                "outputs of job {j} differ from the first time they were written"
            ),
            UsageError::CapacityExceeded => f.write_str("the agent holds as many jobs as it can"),
            UsageError::NoInput(job) => write!(f, "no input of job {job} is readable now"),
        }
    }
}

impl core::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "configuration: {} {}", self.field, self.rule)
    }
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Error::Peer(e) => e.fmt(f),
            Error::Usage(e) => e.fmt(f),
            Error::WouldBlock => f.write_str("outgoing queue full: drain poll_transmit first"),
            Error::EventsPending => f.write_str("events wait to be read: drain poll_event first"),
            Error::BufferTooSmall(n) => write!(f, "buffer too small: {n} bytes needed"),
            Error::Config(e) => e.fmt(f),
            Error::Signer(e) => write!(f, "signer failed: {e:?}"),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for PeerError {}
#[cfg(feature = "std")]
impl std::error::Error for UsageError {}
#[cfg(feature = "std")]
impl std::error::Error for ConfigError {}
#[cfg(feature = "std")]
impl std::error::Error for Error {}

/// An error from `handle_input`, with how many input bytes were consumed
/// before it (those bytes must not be passed again).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InputError {
    /// Bytes consumed, the offending frame included.
    pub consumed: usize,
    /// What went wrong.
    pub error: Error,
}

/// The one numeric code space of the library.
///
/// Every error the library reports, every wire error code, every job failure
/// reason and every kernel rejection rule has one number here. The C header
/// (`TESSERA_*` result codes), the C++ API and the Python and Go bindings use
/// these numbers unchanged, so a log line from any of them means the same
/// thing.
/// Numbers are stable: a code keeps its number, new codes get new numbers.
/// `docs/CODES.md` lists them all; `tests/reason_tables.rs` checks that table
/// against this module.
///
/// | range          | what                                                    |
/// |----------------|---------------------------------------------------------|
/// | 0              | success                                                 |
/// | 1 – 99         | call status: back-pressure and argument errors          |
/// | 100 – 199      | API misuse ([`UsageError`])                             |
/// | 200 – 299      | configuration, keys and signers                         |
/// | 300 – 399      | the result store                                        |
/// | 400 – 499      | verification ([`VerifyError`])                          |
/// | 500 – 599      | Vulkan set-up (500 + the dispatcher's setup code)       |
/// | 1000 – 1099    | peer protocol errors: 1000 + the wire [`ErrorCode`]     |
/// | 2000 – 2099    | job failures: 2000 + the wire [`FailReason`]            |
/// | 2100 – 2199    | dispatcher job errors: 2100 + the dispatcher's job code |
/// | 10000 – 19999  | kernel rejected: 10000 + the kernel rule code           |
pub mod codes {
    use super::*;

    /// Success.
    pub const OK: u32 = 0;
    /// The outgoing queue is full: drain transmits, then call again.
    pub const WOULD_BLOCK: u32 = 1;
    /// Events wait to be read: drain events, then call again.
    pub const EVENTS_PENDING: u32 = 2;
    /// The caller's buffer is too small; the size needed was reported.
    pub const BUFFER_TOO_SMALL: u32 = 3;
    /// A pointer argument was NULL.
    pub const NULL_ARGUMENT: u32 = 4;
    /// An argument is out of range or not of the expected form (a string not
    /// UTF-8, a length of zero where bytes are needed, an unknown enum value).
    pub const INVALID_ARGUMENT: u32 = 5;
    /// The library hit an internal error and caught it; the handle that was
    /// in use must be freed.
    pub const PANIC: u32 = 6;
    /// The library was built without the feature this call needs.
    pub const UNSUPPORTED: u32 = 7;
    /// A file or socket operation failed.
    pub const IO: u32 = 8;
    /// Nothing to return now (no event, no transmit, no timeout).
    pub const NOTHING: u32 = 9;
    /// The object was stopped (drained, closed) and takes no more calls of
    /// this kind.
    pub const STOPPED: u32 = 10;
    /// The object is busy: its own thread runs it (only its thread-safe calls
    /// apply), or a callback of a call on it made this call.
    pub const IN_USE: u32 = 11;

    /// [`UsageError::NotConnected`].
    pub const NOT_CONNECTED: u32 = 100;
    /// [`UsageError::AlreadyConnected`].
    pub const ALREADY_CONNECTED: u32 = 101;
    /// [`UsageError::UnknownJob`].
    pub const UNKNOWN_JOB: u32 = 102;
    /// [`UsageError::InvalidJobState`].
    pub const INVALID_JOB_STATE: u32 = 103;
    /// [`UsageError::OutputOutOfOrder`].
    pub const OUTPUT_OUT_OF_ORDER: u32 = 104;
    /// [`UsageError::OutputIncomplete`].
    pub const OUTPUT_INCOMPLETE: u32 = 105;
    /// [`UsageError::OutputMismatch`].
    pub const OUTPUT_MISMATCH: u32 = 106;
    /// [`UsageError::CapacityExceeded`].
    pub const CAPACITY_EXCEEDED: u32 = 107;
    /// [`UsageError::NoInput`].
    pub const NO_INPUT: u32 = 108;

    /// A configuration value is out of range ([`ConfigError`]).
    pub const INVALID_CONFIG: u32 = 200;
    /// [`KeyError::Rejected`]: not an Ed25519 key of the expected form.
    pub const KEY_REJECTED: u32 = 201;
    /// [`KeyError::Mismatch`]: the public key does not belong to the seed.
    pub const KEY_MISMATCH: u32 = 202;
    /// [`KeyError::NoRandomness`]: the random source failed.
    pub const NO_RANDOMNESS: u32 = 203;
    /// [`SignError::Unavailable`]: the key is not available now.
    pub const SIGNER_UNAVAILABLE: u32 = 210;
    /// [`SignError::Failed`]: the signer failed.
    pub const SIGNER_FAILED: u32 = 211;

    /// The store could not read or write a file, or a file is damaged.
    pub const STORE_IO: u32 = 300;
    /// The store's chain belongs to another device key.
    pub const STORE_OTHER_KEY: u32 = 301;
    /// Two stored chain positions disagree.
    pub const STORE_CONFLICT: u32 = 302;

    /// First verification code: `VERIFY_BASE + n` for [`VerifyError`] `n`.
    pub const VERIFY_BASE: u32 = 400;
    /// [`VerifyError::Malformed`].
    pub const VERIFY_MALFORMED: u32 = 401;
    /// [`VerifyError::BadSignature`].
    pub const VERIFY_BAD_SIGNATURE: u32 = 402;
    /// [`VerifyError::UnknownKey`].
    pub const VERIFY_UNKNOWN_KEY: u32 = 403;
    /// [`VerifyError::WrongNonce`].
    pub const VERIFY_WRONG_NONCE: u32 = 404;
    /// [`VerifyError::Replayed`].
    pub const VERIFY_REPLAYED: u32 = 405;
    /// [`VerifyError::OutOfOrder`].
    pub const VERIFY_OUT_OF_ORDER: u32 = 406;
    /// [`VerifyError::BrokenChain`].
    pub const VERIFY_BROKEN_CHAIN: u32 = 407;
    /// [`VerifyError::ChunkProofMismatch`].
    pub const VERIFY_CHUNK_PROOF_MISMATCH: u32 = 408;

    /// First Vulkan set-up code: 500 + the dispatcher's setup code (1 loader
    /// unavailable … 9 Khronos validator unavailable, `docs/VULKAN.md`).
    pub const VULKAN_BASE: u32 = 500;
    /// First peer code: 1000 + the wire [`ErrorCode`].
    pub const PEER_BASE: u32 = 1000;
    /// First job failure code: 2000 + the wire [`FailReason`].
    pub const FAIL_BASE: u32 = 2000;
    /// First dispatcher job code: 2100 + the dispatcher's job error code
    /// (1 timeout … 7 cancelled; a rejected kernel has its own range).
    pub const JOB_BASE: u32 = 2100;
    /// First kernel rejection code: 10000 + the kernel rule code.
    pub const KERNEL_BASE: u32 = 10000;

    pub(super) fn usage(e: &UsageError) -> u32 {
        match e {
            UsageError::NotConnected => NOT_CONNECTED,
            UsageError::AlreadyConnected => ALREADY_CONNECTED,
            UsageError::UnknownJob(_) => UNKNOWN_JOB,
            UsageError::InvalidJobState(_) => INVALID_JOB_STATE,
            UsageError::OutputOutOfOrder(_) => OUTPUT_OUT_OF_ORDER,
            UsageError::OutputIncomplete(_) => OUTPUT_INCOMPLETE,
            UsageError::OutputMismatch(_) => OUTPUT_MISMATCH,
            UsageError::CapacityExceeded => CAPACITY_EXCEEDED,
            UsageError::NoInput(_) => NO_INPUT,
        }
    }

    pub(crate) fn signer(e: &SignError) -> u32 {
        match e {
            SignError::Unavailable => SIGNER_UNAVAILABLE,
            SignError::Failed(_) => SIGNER_FAILED,
        }
    }

    /// The code of a key error.
    pub fn key(e: KeyError) -> u32 {
        match e {
            KeyError::Rejected => KEY_REJECTED,
            KeyError::Mismatch => KEY_MISMATCH,
            KeyError::NoRandomness => NO_RANDOMNESS,
        }
    }

    /// The code of a verification error.
    pub fn verify(e: VerifyError) -> u32 {
        VERIFY_BASE
            + match e {
                VerifyError::Malformed => 1,
                VerifyError::BadSignature => 2,
                VerifyError::UnknownKey => 3,
                VerifyError::WrongNonce => 4,
                VerifyError::Replayed => 5,
                VerifyError::OutOfOrder => 6,
                VerifyError::BrokenChain => 7,
                VerifyError::ChunkProofMismatch => 8,
            }
    }

    /// The code of a job failure as the wire reports it (`Failed.reason`).
    /// A kernel rejection is reported by its rule
    /// ([`kernel_rejection`]) when the detail names one.
    pub fn failure(reason: FailReason) -> u32 {
        FAIL_BASE + reason as u32
    }

    /// The code of a kernel rejection, from `Failed.detail` (the rule is in
    /// its low 16 bits).
    pub fn kernel_rejection(detail: u32) -> u32 {
        KERNEL_BASE + (detail & 0xFFFF)
    }

    /// A short name for a code (`"would_block"`, `"peer_bad_assignment"`,
    /// `"kernel_rejected"`), or `None` for a number this version does not
    /// know.
    pub fn name(code: u32) -> Option<&'static str> {
        Some(match code {
            OK => "ok",
            WOULD_BLOCK => "would_block",
            EVENTS_PENDING => "events_pending",
            BUFFER_TOO_SMALL => "buffer_too_small",
            NULL_ARGUMENT => "null_argument",
            INVALID_ARGUMENT => "invalid_argument",
            PANIC => "panic",
            UNSUPPORTED => "unsupported",
            IO => "io",
            NOTHING => "nothing",
            STOPPED => "stopped",
            IN_USE => "in_use",
            NOT_CONNECTED => "not_connected",
            ALREADY_CONNECTED => "already_connected",
            UNKNOWN_JOB => "unknown_job",
            INVALID_JOB_STATE => "invalid_job_state",
            OUTPUT_OUT_OF_ORDER => "output_out_of_order",
            OUTPUT_INCOMPLETE => "output_incomplete",
            OUTPUT_MISMATCH => "output_mismatch",
            CAPACITY_EXCEEDED => "capacity_exceeded",
            NO_INPUT => "no_input",
            INVALID_CONFIG => "invalid_config",
            KEY_REJECTED => "key_rejected",
            KEY_MISMATCH => "key_mismatch",
            NO_RANDOMNESS => "no_randomness",
            SIGNER_UNAVAILABLE => "signer_unavailable",
            SIGNER_FAILED => "signer_failed",
            STORE_IO => "store_io",
            STORE_OTHER_KEY => "store_other_key",
            STORE_CONFLICT => "store_conflict",
            VERIFY_MALFORMED => "verify_malformed",
            VERIFY_BAD_SIGNATURE => "verify_bad_signature",
            VERIFY_UNKNOWN_KEY => "verify_unknown_key",
            VERIFY_WRONG_NONCE => "verify_wrong_nonce",
            VERIFY_REPLAYED => "verify_replayed",
            VERIFY_OUT_OF_ORDER => "verify_out_of_order",
            VERIFY_BROKEN_CHAIN => "verify_broken_chain",
            VERIFY_CHUNK_PROOF_MISMATCH => "verify_chunk_proof_mismatch",
            501 => "vulkan_loader_unavailable",
            502 => "vulkan_no_device",
            503 => "vulkan_device_not_found",
            504 => "vulkan_api_version_too_old",
            505 => "vulkan_no_compute_queue",
            506 => "vulkan_validation_unavailable",
            507 => "vulkan_no_usable_memory",
            508 => "vulkan_error",
            509 => "vulkan_khronos_unavailable",
            1001 => "peer_malformed",
            1002 => "peer_frame_too_large",
            1003 => "peer_unsupported_version",
            1004 => "peer_unknown_message_type",
            1005 => "peer_unexpected_message",
            1006 => "peer_unknown_job",
            1007 => "peer_bad_assignment",
            1008 => "peer_chunk_out_of_order",
            1009 => "peer_chunk_digest_mismatch",
            1010 => "peer_root_mismatch",
            1011 => "peer_bad_magic",
            1012 => "peer_evidence_rejected",
            1013 => "peer_receipt_rejected",
            2001 => "failed_kernel_rejected",
            2002 => "failed_timeout",
            2003 => "failed_deadline_exceeded",
            2004 => "failed_device_lost",
            2005 => "failed_out_of_memory",
            2006 => "failed_input_integrity",
            2007 => "failed_host",
            2101 => "job_timeout",
            2102 => "job_device_lost",
            2103 => "job_out_of_memory",
            2104 => "job_vulkan_error",
            2105 => "job_device_unavailable",
            2106 => "job_validator_unavailable",
            2107 => "job_cancelled",
            c if (KERNEL_BASE..KERNEL_BASE + 10000).contains(&c) => "kernel_rejected",
            _ => return None,
        })
    }

    /// What a code means, in words. Kernel rejection codes give the rule's
    /// text; a number this version does not know gives `None`.
    pub fn describe(code: u32) -> Option<&'static str> {
        if let Some(rule) = code
            .checked_sub(KERNEL_BASE)
            .filter(|r| *r < 10000)
            .and_then(|r| crate::reasons::KernelRule::from_code(r as u16))
        {
            return Some(rule.text());
        }
        Some(match code {
            OK => "success",
            WOULD_BLOCK => "the outgoing queue is full: drain transmits, then call again",
            EVENTS_PENDING => "events wait to be read: drain events, then call again",
            BUFFER_TOO_SMALL => "the buffer is too small; the size needed was reported",
            NULL_ARGUMENT => "a pointer argument was NULL",
            INVALID_ARGUMENT => "an argument is out of range or not of the expected form",
            PANIC => "internal error caught at the library boundary; free the handle",
            UNSUPPORTED => "the library was built without the feature this call needs",
            IO => "a file or socket operation failed",
            NOTHING => "nothing to return now",
            STOPPED => "the object was stopped and takes no more calls of this kind",
            IN_USE => "the object is busy: its own thread runs it, or a callback of a call on it made this call",
            NOT_CONNECTED => "no session is established",
            ALREADY_CONNECTED => "a session is already open",
            UNKNOWN_JOB => "no such job on this agent",
            INVALID_JOB_STATE => "the job is not in a state that allows this call",
            OUTPUT_OUT_OF_ORDER => "outputs written for another buffer than the next one due",
            OUTPUT_INCOMPLETE => "not every read-back buffer was written in full",
            OUTPUT_MISMATCH => "outputs written again differ from the first time",
            CAPACITY_EXCEEDED => "the agent holds as many jobs as it can",
            NO_INPUT => "no input of this job is readable now",
            INVALID_CONFIG => "a configuration value is out of range",
            KEY_REJECTED => "not an Ed25519 key of the expected form",
            KEY_MISMATCH => "the public key does not belong to the seed",
            NO_RANDOMNESS => "the system random source failed",
            SIGNER_UNAVAILABLE => "the signing key is not available now",
            SIGNER_FAILED => "the signer failed",
            STORE_IO => "the store could not read or write a file, or a file is damaged",
            STORE_OTHER_KEY => "the store's chain belongs to another device key",
            STORE_CONFLICT => "two stored chain positions disagree",
            VERIFY_MALFORMED => "not a well-formed structure of the expected kind",
            VERIFY_BAD_SIGNATURE => "the signature does not verify",
            VERIFY_UNKNOWN_KEY => "signed by another key than the one expected",
            VERIFY_WRONG_NONCE => "bound to another challenge or nonce",
            VERIFY_REPLAYED => "a replayed receipt (sequence already seen)",
            VERIFY_OUT_OF_ORDER => "a receipt is missing (sequence past the next one)",
            VERIFY_BROKEN_CHAIN => "the previous-receipt hash does not match",
            VERIFY_CHUNK_PROOF_MISMATCH => "the chunk's proof does not lead to the signed root",
            501 => "the Vulkan loader could not be opened",
            502 => "no Vulkan device",
            503 => "no device matches the selector",
            504 => "the device only offers Vulkan 1.0",
            505 => "the device has no compute queue",
            506 => "the Vulkan validation layers are not installed",
            507 => "no host-visible memory usable for storage buffers",
            508 => "a Vulkan call failed",
            509 => "the Khronos SPIR-V validator could not be run",
            1001 => "the peer sent a body that does not decode",
            1002 => "the peer announced a frame over the maximum size",
            1003 => "the peer speaks an unsupported version",
            1004 => "the peer sent an unknown message type",
            1005 => "the peer sent a message not allowed now",
            1006 => "the peer named a job the receiver does not hold",
            1007 => "the assignment breaks its offer or the limits",
            1008 => "an input chunk out of order or of the wrong length",
            1009 => "a chunk does not match its digest",
            1010 => "a stream does not match its Merkle root",
            1011 => "the stream is not Tessera (bad magic)",
            1012 => "the coordinator rejected the evidence",
            1013 => "a receipt did not verify",
            2001 => "the kernel was rejected",
            2002 => "the kernel ran past its time limit",
            2003 => "the job's deadline passed",
            2004 => "the GPU was lost while running the job",
            2005 => "the device ran out of memory",
            2006 => "an input did not match its digest",
            2007 => "the provider's host failed",
            2101 => "the job ran past its timeout",
            2102 => "the device was lost while the job ran",
            2103 => "memory ran out while setting up the job",
            2104 => "a Vulkan call failed",
            2105 => "too many devices still run abandoned work",
            2106 => "the Khronos validator could not be run",
            2107 => "the job was cancelled",
            c if (KERNEL_BASE..KERNEL_BASE + 10000).contains(&c) => "the kernel broke a rule",
            _ => return None,
        })
    }
}
