//! The agent's errors, and the codes sent to the peer in `Error` frames.

use crate::attest::SignError;
use crate::wire::{DecodeError, JobId, MessageType};

/// Codes carried by `Error` frames (`docs/PROTOCOL.md`, "Errors").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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
    /// The code for a wire value, if known.
    pub fn from_u16(v: u16) -> Option<ErrorCode> {
        use ErrorCode::*;
        Some(match v {
            1 => Malformed,
            2 => FrameTooLarge,
            3 => UnsupportedVersion,
            4 => UnknownMessageType,
            5 => UnexpectedMessage,
            6 => UnknownJob,
            7 => BadAssignment,
            8 => ChunkOutOfOrder,
            9 => ChunkDigestMismatch,
            10 => RootMismatch,
            11 => BadMagic,
            12 => EvidenceRejected,
            13 => ReceiptRejected,
            _ => return None,
        })
    }
}

/// What went wrong in a call on the agent. Every error leaves the agent usable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// The peer sent a frame that does not decode; an `Error` frame was queued.
    /// `BadMagic`, `UnsupportedVersion` and `FrameTooLarge` also end the
    /// connection (the stream cannot be resynchronised).
    Decode(DecodeError),
    /// The peer sent a message not allowed now or not in its direction.
    UnexpectedMessage(MessageType),
    /// The peer or the host named a job the agent does not hold.
    UnknownJob(JobId),
    /// A job assignment breaks the accepted offer or the agent's limits.
    BadAssignment(JobId),
    /// An input chunk arrived out of order or with the wrong length.
    ChunkOutOfOrder(JobId),
    /// The peer offered a protocol version range this agent does not speak.
    UnsupportedVersion(u16),
    /// The call needs an established session.
    NotConnected,
    /// `connect` was called while a session is open.
    AlreadyConnected,
    /// The job is not in a state that allows this call (outputs for a job
    /// that is not running, say).
    InvalidJobState(JobId),
    /// Outputs were written for a buffer other than the next one due.
    OutputOutOfOrder(JobId),
    /// `finish_job` before every read-back buffer was written in full.
    OutputIncomplete(JobId),
    /// Outputs written again after a reconnect differ from the first time.
    OutputMismatch(JobId),
    /// The outgoing queue is full: drain `poll_transmit`, then call again.
    /// (`connect` also says it while events wait to be read.)
    WouldBlock,
    /// Too many events wait to be read for this call to queue its own:
    /// drain `poll_event`, then call again. Nothing was changed.
    EventsPending,
    /// The signer failed; the job's result is kept and signing is retried.
    Signer(SignError),
    /// A configuration value is out of range: which, and the rule.
    InvalidConfig {
        /// The field, as `Config` names it (`policy.max_concurrent`, say).
        field: &'static str,
        /// What it must be.
        rule: &'static str,
    },
    /// The agent already holds as many jobs as it can.
    CapacityExceeded,
    /// No input chunk of this job is readable now (`read_input` after the
    /// next `handle_input`, or for another job than the last `JobData`).
    NoInput(JobId),
    /// The output buffer is too small: this many bytes are needed.
    BufferTooSmall(usize),
}

impl Error {
    /// The code to send to the peer for an error caused by its input.
    pub fn code(&self) -> Option<ErrorCode> {
        Some(match self {
            Error::Decode(DecodeError::BadMagic) => ErrorCode::BadMagic,
            Error::Decode(DecodeError::UnsupportedVersion(_)) | Error::UnsupportedVersion(_) => {
                ErrorCode::UnsupportedVersion
            }
            Error::Decode(DecodeError::FrameTooLarge(_)) => ErrorCode::FrameTooLarge,
            Error::Decode(DecodeError::UnknownType(_)) => ErrorCode::UnknownMessageType,
            Error::Decode(_) => ErrorCode::Malformed,
            Error::UnexpectedMessage(_) => ErrorCode::UnexpectedMessage,
            Error::UnknownJob(_) => ErrorCode::UnknownJob,
            Error::BadAssignment(_) => ErrorCode::BadAssignment,
            Error::ChunkOutOfOrder(_) => ErrorCode::ChunkOutOfOrder,
            _ => return None,
        })
    }

    /// Whether the connection cannot go on after this error.
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            Error::Decode(
                DecodeError::BadMagic
                    | DecodeError::UnsupportedVersion(_)
                    | DecodeError::FrameTooLarge(_)
            ) | Error::UnsupportedVersion(_)
        )
    }
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Error::Decode(e) => write!(f, "undecodable frame from the peer: {e:?}"),
            Error::UnexpectedMessage(t) => write!(f, "message {t:?} not allowed now"),
            Error::UnknownJob(j) => write!(f, "no job {j} on this agent"),
            Error::BadAssignment(j) => {
                write!(f, "assignment of job {j} breaks its offer or the limits")
            }
            Error::ChunkOutOfOrder(j) => write!(
                f,
                "input chunk of job {j} out of order or of the wrong length"
            ),
            Error::UnsupportedVersion(v) => write!(f, "protocol version {v} not supported"),
            Error::NotConnected => f.write_str("no session is established"),
            Error::AlreadyConnected => f.write_str("a session is already open"),
            Error::InvalidJobState(j) => write!(f, "job {j} is not in a state that allows this"),
            Error::OutputOutOfOrder(j) => {
                write!(f, "outputs of job {j} written for the wrong buffer")
            }
            Error::OutputIncomplete(j) => write!(f, "outputs of job {j} not written in full"),
            Error::OutputMismatch(j) => write!(
                f,
                "outputs of job {j} differ from the first time they were written"
            ),
            Error::WouldBlock => f.write_str("outgoing queue full: drain poll_transmit first"),
            Error::EventsPending => f.write_str("events wait to be read: drain poll_event first"),
            Error::Signer(e) => write!(f, "signer failed: {e:?}"),
            Error::InvalidConfig { field, rule } => write!(f, "configuration: {field} {rule}"),
            Error::CapacityExceeded => f.write_str("the agent holds as many jobs as it can"),
            Error::NoInput(job) => write!(f, "no input chunk of job {job} is readable now"),
            Error::BufferTooSmall(n) => write!(f, "buffer too small: {n} bytes needed"),
        }
    }
}

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
