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
use tessera_core::wire::{FailReason, JobId, Nonce, Requirements, Sealing, Usage};

/// Magic of requester frames, the ASCII letters "TQ".
pub const REQUEST_MAGIC: [u8; 2] = *b"TQ";
/// Bytes of a requester frame header: magic and body length.
pub const REQUEST_HEADER_LEN: usize = 6;
/// Largest requester frame body the library reads or writes by default.
pub const DEFAULT_MAX_REQUEST_BODY: usize = 256 << 20;
/// Bytes of a `Response` beyond its outputs, at most: the receipt and the
/// evidence (1 KiB each at most), the reason (at most [`MAX_REASON`]) and
/// the small fields, with room to spare. A requester reads back no more than
/// its read-back buffers and this ([`response_limit`]).
pub const RESPONSE_OVERHEAD: usize = 64 << 10;
/// Bytes of the longest `reason` a coordinator sends.
pub const MAX_REASON: usize = 4096;
/// Requests a requester may send on one connection ahead of their answers.
/// The coordinator works on them at once and answers them in the order they
/// were sent; it reads no more from a connection with this many unanswered.
pub const MAX_IN_FLIGHT: usize = 64;

/// The outputs of a result: at most `MAX_BUFFERS` byte strings, each as one
/// run of bytes (the encoding of a `Vec<Vec<u8>>`, without a serde call per
/// byte). A longer list fails at its first extra item, so a result cannot
/// make the decoder allocate for many empty outputs.
mod byte_lists {
    use core::marker::PhantomData;

    use serde::{Deserializer, Serializer};
    use tessera_core::limits::MAX_BUFFERS;

    use crate::submission::AtMost;

    pub fn serialize<S: Serializer>(lists: &[Vec<u8>], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(lists.iter().map(|l| serde_bytes::Bytes::new(l)))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Vec<u8>>, D::Error> {
        let lists = d.deserialize_seq(AtMost::<serde_bytes::ByteBuf, MAX_BUFFERS>(PhantomData))?;
        Ok(lists
            .into_iter()
            .map(serde_bytes::ByteBuf::into_vec)
            .collect())
    }
}

/// One storage buffer of a job.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BufferInit {
    /// Binding number in descriptor set 0 where the kernel sees the buffer:
    /// below 32, distinct within the job (gaps are fine).
    pub binding: u32,
    /// Initial contents (may be empty; the rest of the buffer is zero).
    #[serde(with = "serde_bytes")]
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
    #[serde(with = "serde_bytes")]
    pub kernel: Vec<u8>,
    /// GLCompute entry point name.
    pub entry_point: String,
    /// Specialization constants: (constant id, value).
    pub specialization: Vec<(u32, u32)>,
    /// Push constant bytes.
    #[serde(with = "serde_bytes")]
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
    /// A job sealed end to end (`docs/PROTOCOL.md`, "Sealed jobs"), for the
    /// one provider it is sealed to; `kernel`, `push_constants` and the
    /// buffers' `init` are then as sealed, and `len` as declared for the
    /// sealed bytes. `None`: a job in the clear, for any provider.
    pub sealed: Option<SealedFor>,
}

/// The provider a sealed job is for, and how it is sealed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedFor {
    /// The provider's device key (its evidence's `public_key`).
    pub provider: [u8; 32],
    /// The session key the job is sealed to (that evidence's `enc_key`):
    /// the job goes to that provider only while that session lasts.
    pub enc_key: [u8; 32],
    /// How the job is sealed (goes in its `SealedJobAssign`).
    pub sealing: Sealing,
}

/// A provider a requester may seal jobs to: its signed evidence of the
/// current session (which states its session key), and the challenge it
/// answers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderEntry {
    /// The provider's signed evidence (`docs/PROTOCOL.md`, "Evidence").
    #[serde(with = "serde_bytes")]
    pub evidence: Vec<u8>,
    /// The coordinator's challenge it answers.
    pub challenge: Nonce,
    /// Jobs it holds and takes at once, at its last heartbeat (unknown: 0, 0).
    pub load: (u8, u8),
}

/// Most providers a `Providers` answer lists.
pub const MAX_PROVIDERS_LISTED: usize = 64;

/// A requester's message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[allow(clippy::large_enum_variant)]
pub enum Request {
    /// Run a job.
    Submit(Submit),
    /// List the connected providers that take sealed jobs (at most
    /// [`MAX_PROVIDERS_LISTED`]), with their evidence.
    Providers,
}

/// A verified result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobResult {
    /// The job id the coordinator gave the job.
    pub job: JobId,
    /// Contents of every read-back buffer, in buffer order.
    #[serde(with = "byte_lists")]
    pub outputs: Vec<Vec<u8>>,
    /// The provider's signed receipt (COSE_Sign1).
    #[serde(with = "serde_bytes")]
    pub receipt: Vec<u8>,
    /// The provider's Ed25519 key (from its verified evidence).
    pub provider_public_key: [u8; 32],
    /// The provider's signed evidence named by the receipt.
    #[serde(with = "serde_bytes")]
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
    /// The coordinator holds as many requesters' bytes as it may
    /// (`Config::max_buffered_bytes`): try again later.
    Busy,
    /// The provider a sealed job is sealed for is not connected, or no
    /// longer with the session key it was sealed to: list the providers
    /// again and seal it anew.
    ProviderUnavailable,
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
    #[serde(with = "serde_bytes")]
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
    /// The providers that take sealed jobs (answer to `Request::Providers`).
    Providers(Vec<ProviderEntry>),
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

/// The largest response a requester reads back for `job`: its read-back
/// buffers, as it stated them, and [`RESPONSE_OVERHEAD`].
pub fn response_limit(job: &Submit) -> usize {
    let outputs = job
        .buffers
        .iter()
        .filter(|b| b.readback)
        .fold(0u64, |n, b| n.saturating_add(b.len));
    usize::try_from(outputs)
        .unwrap_or(usize::MAX)
        .saturating_add(RESPONSE_OVERHEAD)
        .min(u32::MAX as usize)
}

/// Shortens a reason to at most [`MAX_REASON`] bytes, on a character
/// boundary.
pub(crate) fn bounded_reason(mut reason: String) -> String {
    if reason.len() > MAX_REASON {
        let mut end = MAX_REASON - 3;
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        reason.truncate(end);
        reason.push_str("...");
    }
    reason
}

/// Encodes a response as one frame in parts, the outputs moved in rather
/// than copied: the parts, written back to back, are [`encode_frame`]'s
/// bytes.
pub(crate) fn response_parts(response: Response) -> Result<Vec<Vec<u8>>, FrameError> {
    let Response::Result(r) = response else {
        return encode_frame(&response).map(|f| vec![f]);
    };
    let JobResult {
        job,
        outputs,
        receipt,
        provider_public_key,
        evidence,
        evidence_challenge,
        usage,
        price,
    } = r;
    // Postcard: the variant index, then the fields in order; a `Vec<u8>` is
    // its length then its bytes, so each output is a length part and itself.
    let head = postcard::to_stdvec(&(0u32, job, outputs.len())).map_err(FrameError::Malformed)?;
    let tail = postcard::to_stdvec(&(
        receipt,
        provider_public_key,
        evidence,
        evidence_challenge,
        usage,
        price,
    ))
    .map_err(FrameError::Malformed)?;
    let mut parts = Vec::with_capacity(2 * outputs.len() + 3);
    parts.push(Vec::new());
    parts.push(head);
    for output in outputs {
        parts.push(postcard::to_stdvec(&output.len()).map_err(FrameError::Malformed)?);
        parts.push(output);
    }
    parts.push(tail);
    let body = parts
        .iter()
        .try_fold(0u64, |n, p| n.checked_add(p.len() as u64))
        .ok_or(FrameError::TooLarge(u64::MAX))?;
    let len = u32::try_from(body).map_err(|_| FrameError::TooLarge(body))?;
    let mut header = Vec::with_capacity(REQUEST_HEADER_LEN);
    header.extend_from_slice(&REQUEST_MAGIC);
    header.extend_from_slice(&len.to_le_bytes());
    parts[0] = header;
    Ok(parts)
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
            sealed: None,
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
        body.push(0x00); // not sealed
        let mut expected = b"TQ".to_vec();
        expected.extend_from_slice(&(body.len() as u32).to_le_bytes());
        expected.extend_from_slice(&body);
        assert_eq!(frame, expected);
        let back: Request = read_frame(&mut &frame[..], 1 << 20).expect("decodes");
        assert_eq!(back, Request::Submit(submit));
    }

    #[test]
    fn a_result_in_parts_is_the_result_in_one_frame() {
        let result = Response::Result(JobResult {
            job: 300,
            outputs: vec![vec![1; 200], Vec::new(), vec![2; 70_000]],
            receipt: vec![3; 444],
            provider_public_key: [4; 32],
            evidence: vec![5; 300],
            evidence_challenge: [6; 32],
            usage: Usage {
                gpu_time_us: 1_000_000,
                dispatches: 2,
                bytes_in: 129,
                bytes_out: 70_200,
            },
            price: 12345,
        });
        let whole = encode_frame(&result).expect("encodes");
        let parts = response_parts(result.clone()).expect("encodes");
        assert_eq!(parts.concat(), whole);
        let back: Response = read_frame(&mut &whole[..], 1 << 20).expect("decodes");
        assert_eq!(back, result);
        let failed = Response::Failed(JobFailure {
            job: 1,
            code: FailureCode::Busy,
            reason: "x".repeat(10_000),
            receipt: None,
            provider: None,
            price: 0,
        });
        let parts = response_parts(failed.clone()).expect("encodes");
        assert_eq!(parts.concat(), encode_frame(&failed).expect("encodes"));
        // Byte fields keep the encoding of a plain `Vec<u8>` (a length,
        // then the bytes): a failure's receipt too, as the same fields in
        // a tuple encode it.
        let f = JobFailure {
            job: 9,
            code: FailureCode::KernelTimeout,
            reason: "late".into(),
            receipt: Some(vec![7; 300]),
            provider: None,
            price: 5,
        };
        let plain =
            postcard::to_stdvec(&(f.job, f.code, &f.reason, &f.receipt, f.provider, f.price))
                .expect("encodes");
        assert_eq!(postcard::to_stdvec(&f).expect("encodes"), plain);
        assert_eq!(
            postcard::from_bytes::<JobFailure>(&plain).expect("decodes"),
            f
        );

        // More outputs than a job has buffers are refused as they are read,
        // at the first extra one: a million empty ones in a megabyte are not
        // each given a Vec.
        let mut body = postcard::to_stdvec(&(0u32, 300u64, 1usize << 20)).expect("encodes");
        body.resize(body.len() + (1 << 20), 0);
        assert!(decode_body::<Response>(&body).is_err());
        let Response::Result(r) = result else {
            unreachable!("built as a result above")
        };
        let with_outputs = |n: usize| {
            let frame = encode_frame(&Response::Result(JobResult {
                outputs: vec![Vec::new(); n],
                ..r.clone()
            }))
            .expect("encodes");
            decode_body::<Response>(&frame[REQUEST_HEADER_LEN..])
        };
        assert!(with_outputs(tessera_core::limits::MAX_BUFFERS + 1).is_err());
        assert!(matches!(
            with_outputs(tessera_core::limits::MAX_BUFFERS),
            Ok(Response::Result(back)) if back.outputs.len() == tessera_core::limits::MAX_BUFFERS
        ));
        assert_eq!(bounded_reason("é".repeat(3000)).len(), MAX_REASON - 1);
    }

    #[test]
    fn a_requester_reads_back_no_more_than_it_stated() {
        let buffer = |len: u64, readback: bool| BufferInit {
            binding: 0,
            init: Vec::new(),
            len,
            readback,
        };
        let mut job = Submit {
            kernel: vec![0; 4],
            entry_point: "main".into(),
            specialization: Vec::new(),
            push_constants: Vec::new(),
            grid: [1, 1, 1],
            buffers: vec![buffer(1 << 30, false), buffer(1000, true), buffer(24, true)],
            requirements: Requirements::default(),
            est_gpu_ms: 1,
            max_price: 1,
            deadline_ms: 1,
            nonce: [0; 32],
            sealed: None,
        };
        let limit = response_limit(&job);
        assert_eq!(limit, 1024 + RESPONSE_OVERHEAD);
        // A coordinator answering with more is cut off at the header.
        let mut frame = b"TQ".to_vec();
        frame.extend_from_slice(&(limit as u32 + 1).to_le_bytes());
        assert!(matches!(
            read_frame::<Response>(&mut &frame[..], limit),
            Err(FrameError::TooLarge(_))
        ));
        // Stated lengths that overflow do not wrap around.
        job.buffers = vec![buffer(u64::MAX, true), buffer(u64::MAX, true)];
        assert_eq!(response_limit(&job), u32::MAX as usize);
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
