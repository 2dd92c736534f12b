//! The requester protocol: how a requester submits a job to a coordinator and
//! gets its result (`README.md` beside this crate, "Requester protocol").
//!
//! A frame is the magic `"TQ"`, the body length (u32 little-endian) and a
//! postcard body: a [`Request`] from the requester, a [`Response`] from the
//! coordinator. One connection carries any number of request/response pairs,
//! one at a time.

use std::fmt;
use std::io::{self, Read, Write};

use serde::{Deserialize, Serialize};
use tessera_core::wire::{FailReason, JobId, Nonce, Requirements, Usage};

/// Magic of requester frames, the ASCII letters "TQ".
pub const REQUEST_MAGIC: [u8; 2] = *b"TQ";
/// Bytes of a requester frame header: magic and body length.
pub const REQUEST_HEADER_LEN: usize = 6;
/// Largest requester frame body the library reads or writes by default.
pub const DEFAULT_MAX_REQUEST_BODY: usize = 256 << 20;

/// One storage buffer of a job.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BufferInit {
    /// Binding number in descriptor set 0 where the kernel sees the buffer:
    /// below 32, distinct within the job (gaps are fine).
    pub binding: u32,
    /// Initial contents (may be empty; the rest of the buffer is zero).
    pub init: Vec<u8>,
    /// Buffer size in bytes (at least `init.len()`, more than 0).
    pub len: u64,
    /// Whether the buffer comes back as an output.
    pub readback: bool,
}

/// A job as a requester submits it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Submit {
    /// SPIR-V module (length a multiple of 4).
    pub kernel: Vec<u8>,
    /// GLCompute entry point name.
    pub entry_point: String,
    /// Specialization constants: (constant id, value).
    pub specialization: Vec<(u32, u32)>,
    /// Push constant bytes.
    pub push_constants: Vec<u8>,
    /// Workgroup counts in x, y, z.
    pub grid: [u32; 3],
    /// Storage buffers, each at its `binding` in set 0; outputs come back in
    /// this order.
    pub buffers: Vec<BufferInit>,
    /// What the job needs from the device.
    pub requirements: Requirements,
    /// Estimated GPU time, in milliseconds.
    pub est_gpu_ms: u32,
    /// The most the requester pays, in the network's smallest unit.
    pub max_price: u64,
    /// Time from the offer until the result is due, in milliseconds.
    pub deadline_ms: u32,
    /// Fresh random nonce, bound into the receipt.
    pub nonce: Nonce,
}

/// A requester's message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// Run a job.
    Submit(Submit),
}

/// A verified result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobResult {
    /// The job id the coordinator gave the job.
    pub job: JobId,
    /// Contents of every read-back buffer, in buffer order.
    pub outputs: Vec<Vec<u8>>,
    /// The provider's signed receipt (COSE_Sign1).
    pub receipt: Vec<u8>,
    /// The provider's Ed25519 key (from its verified evidence).
    pub provider_public_key: [u8; 32],
    /// The provider's signed evidence named by the receipt.
    pub evidence: Vec<u8>,
    /// The challenge that evidence answers (to verify it again).
    pub evidence_challenge: Nonce,
    /// Metered usage.
    pub usage: Usage,
    /// Price charged.
    pub price: u64,
}

/// Why a job produced no result.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FailureCode {
    /// The submission breaks a limit (`reason` says which).
    Invalid,
    /// No connected provider can run the job.
    NoCapableProvider,
    /// Every capable provider declined the offer.
    AllDeclined,
    /// The provider's receipt or outputs did not verify.
    ReceiptRejected,
    /// The provider ran the job and reported a failure (signed).
    JobFailed,
    /// No result before the deadline.
    Timeout,
    /// The coordinator is shutting down.
    Shutdown,
    /// The kernel ran out its time on the provider: a signed receipt with
    /// status `Timeout`, metered to the deadline; the requester is charged
    /// [`JobFailure::price`], the quote the provider accepted the job at.
    KernelTimeout,
}

/// A job that produced no result, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobFailure {
    /// The job id, or 0 if none was given.
    pub job: JobId,
    /// What kind of failure.
    pub code: FailureCode,
    /// A readable explanation.
    pub reason: String,
    /// The provider's signed failure receipt, when there is one.
    pub receipt: Option<Vec<u8>>,
    /// The provider's `Failed` reason and detail, when it reported one (the
    /// requester puts them in words with `tessera_core::reasons`).
    pub provider: Option<(FailReason, u32)>,
    /// What the requester is charged for the job: the accepted quote for a
    /// [`FailureCode::KernelTimeout`], 0 for every other failure.
    pub price: u64,
}

/// The coordinator's answer to a [`Request`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[allow(clippy::large_enum_variant)]
pub enum Response {
    /// The job ran and its result verified.
    Result(JobResult),
    /// The job produced no result.
    Failed(JobFailure),
}

/// Why a requester frame could not be read or written.
#[derive(Debug)]
pub enum FrameError {
    /// The transport failed.
    Io(io::Error),
    /// The peer closed the connection between frames.
    Closed,
    /// The first bytes are not "TQ": the peer does not speak this protocol.
    BadMagic([u8; 2]),
    /// The body is larger than this side accepts.
    TooLarge(u64),
    /// The body does not decode as the expected message.
    Malformed(postcard::Error),
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::Io(e) => write!(f, "transport error: {e}"),
            FrameError::Closed => f.write_str("the peer closed the connection"),
            FrameError::BadMagic(m) => write!(f, "not a requester frame (magic {m:02x?})"),
            FrameError::TooLarge(n) => write!(f, "frame body of {n} bytes is over the limit"),
            FrameError::Malformed(e) => write!(f, "frame body does not decode: {e}"),
        }
    }
}

impl std::error::Error for FrameError {}

impl From<io::Error> for FrameError {
    fn from(e: io::Error) -> Self {
        FrameError::Io(e)
    }
}

/// Encodes a message as one requester frame.
pub fn encode_frame<T: Serialize>(msg: &T) -> Result<Vec<u8>, FrameError> {
    let body = postcard::to_stdvec(msg).map_err(FrameError::Malformed)?;
    let len = u32::try_from(body.len()).map_err(|_| FrameError::TooLarge(body.len() as u64))?;
    let mut frame = Vec::with_capacity(REQUEST_HEADER_LEN + body.len());
    frame.extend_from_slice(&REQUEST_MAGIC);
    frame.extend_from_slice(&len.to_le_bytes());
    frame.extend_from_slice(&body);
    Ok(frame)
}

/// Writes one frame.
pub fn write_frame<T: Serialize>(w: &mut impl Write, msg: &T) -> Result<(), FrameError> {
    let frame = encode_frame(msg)?;
    w.write_all(&frame)?;
    w.flush()?;
    Ok(())
}

/// Checks a frame header; returns the body length.
pub fn parse_header(
    header: &[u8; REQUEST_HEADER_LEN],
    max_body: usize,
) -> Result<usize, FrameError> {
    if header[..2] != REQUEST_MAGIC {
        return Err(FrameError::BadMagic([header[0], header[1]]));
    }
    let len = u32::from_le_bytes([header[2], header[3], header[4], header[5]]) as usize;
    if len > max_body {
        return Err(FrameError::TooLarge(len as u64));
    }
    Ok(len)
}

/// Decodes a frame body.
pub fn decode_body<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, FrameError> {
    match postcard::take_from_bytes::<T>(body) {
        Ok((msg, [])) => Ok(msg),
        Ok(_) => Err(FrameError::Malformed(
            postcard::Error::DeserializeBadEncoding,
        )),
        Err(e) => Err(FrameError::Malformed(e)),
    }
}

/// Reads one frame from a blocking reader.
pub fn read_frame<T: for<'de> Deserialize<'de>>(
    r: &mut impl Read,
    max_body: usize,
) -> Result<T, FrameError> {
    let mut header = [0u8; REQUEST_HEADER_LEN];
    let mut at = 0;
    while at < header.len() {
        match r.read(&mut header[at..]) {
            Ok(0) if at == 0 => return Err(FrameError::Closed),
            Ok(0) => return Err(FrameError::Io(io::ErrorKind::UnexpectedEof.into())),
            Ok(n) => at += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(FrameError::Io(e)),
        }
    }
    let len = parse_header(&header, max_body)?;
    // Grows as bytes arrive, so a header alone cannot reserve memory.
    let mut body = Vec::with_capacity(len.min(1 << 20));
    r.take(len as u64).read_to_end(&mut body)?;
    if body.len() < len {
        return Err(FrameError::Io(io::ErrorKind::UnexpectedEof.into()));
    }
    decode_body(&body)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The README's description of the body, byte by byte.
    #[test]
    fn a_submit_frame_is_laid_out_as_documented() {
        let submit = Submit {
            kernel: vec![1, 2, 3, 4],
            entry_point: "m".into(),
            specialization: vec![(1, 2)],
            push_constants: Vec::new(),
            grid: [1, 2, 3],
            buffers: vec![BufferInit {
                binding: 2,
                init: Vec::new(),
                len: 300,
                readback: true,
            }],
            requirements: Requirements {
                memory_mib: 0,
                features: 0,
            },
            est_gpu_ms: 5,
            max_price: 1000,
            deadline_ms: 7,
            nonce: [9; 32],
        };
        let frame = encode_frame(&Request::Submit(submit.clone())).expect("encodes");
        let mut body = vec![
            0x00, // Request::Submit
            0x04, 1, 2, 3, 4, // kernel
            0x01, b'm', // entry point
            0x01, 0x01, 0x02, // one specialization constant (1, 2)
            0x00, // no push constants
            0x01, 0x02, 0x03, // grid
            0x01, 0x02, 0x00, 0xAC, 0x02,
            0x01, // one buffer: binding 2, no init, len 300, read back
            0x00, 0x00, // requirements
            0x05, // est_gpu_ms
            0xE8, 0x07, // max_price 1000
            0x07, // deadline_ms
        ];
        body.extend_from_slice(&[9; 32]);
        let mut expected = b"TQ".to_vec();
        expected.extend_from_slice(&(body.len() as u32).to_le_bytes());
        expected.extend_from_slice(&body);
        assert_eq!(frame, expected);
        let back: Request = read_frame(&mut &frame[..], 1 << 20).expect("decodes");
        assert_eq!(back, Request::Submit(submit));
    }

    #[test]
    fn oversized_and_foreign_frames_are_refused() {
        let mut frame = b"TQ".to_vec();
        frame.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            read_frame::<Request>(&mut &frame[..], 1 << 20),
            Err(FrameError::TooLarge(_))
        ));
        let frame = b"TS\x01\x01\x00\x00\x00\x00".to_vec();
        assert!(matches!(
            read_frame::<Request>(&mut &frame[..], 1 << 20),
            Err(FrameError::BadMagic(_))
        ));
    }
}
