//! A requester's submission on its way to a provider, held once.
//!
//! The request body is kept as it arrived. The submission is decoded as a
//! view borrowing from it ([`SubmitView`]), so the kernel and the initial data
//! are never copied: a job's inputs are ranges of that one body, and the
//! provider's input chunks are framed from it one at a time, by the event
//! loop, as the provider's connection drains ([`InputStream`]).
//! The assignment is built by `tessera_core::job::Description`, which hashes
//! every chunk once: its leaf goes into the Merkle roots and is kept for
//! framing. That happens here, on the coordinator's hashing thread for a
//! large body (on the event loop for one of 64 KiB or less): never under the
//! engine's lock, and never stalling the loop for long.

use std::fmt;
use std::marker::PhantomData;
use std::ops::Range;
use std::sync::{Arc, Weak};

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use tessera_core::job;
use tessera_core::limits::{
    CHUNK_SIZE, MAX_BINDINGS, MAX_BUFFERS, MAX_ENTRY_POINT, MAX_FRAME, MAX_KERNEL_BYTES,
    MAX_PUSH_CONSTANTS, MAX_SPEC_CONSTANTS,
};
use tessera_core::wire::{Chunk, Digest, JobAssign, JobId, JobOffer, Message, Nonce, Requirements};

use crate::budget::Permit;
use crate::protocol::{FrameError, SealedFor, Submit};

/// [`crate::protocol::Request`] as a view: encodes to the same bytes, and
/// decodes without copying the kernel or the initial data.
#[derive(Debug, Serialize, Deserialize)]
#[allow(clippy::large_enum_variant)]
pub(crate) enum RequestView<'a> {
    /// [`crate::protocol::Request::Submit`].
    Submit(#[serde(borrow)] SubmitView<'a>),
    /// [`crate::protocol::Request::Providers`].
    Providers,
}

/// [`Submit`] with its byte fields borrowed.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct SubmitView<'a> {
    #[serde(serialize_with = "as_bytes")]
    pub kernel: &'a [u8],
    pub entry_point: &'a str,
    #[serde(deserialize_with = "at_most_spec_constants")]
    pub specialization: Vec<(u32, u32)>,
    #[serde(serialize_with = "as_bytes")]
    pub push_constants: &'a [u8],
    pub grid: [u32; 3],
    #[serde(borrow, deserialize_with = "at_most_buffers")]
    pub buffers: Vec<BufferView<'a>>,
    pub requirements: Requirements,
    pub est_gpu_ms: u32,
    pub max_price: u64,
    pub deadline_ms: u32,
    pub nonce: Nonce,
    pub sealed: Option<SealedFor>,
}

/// [`crate::protocol::BufferInit`] with its initial data borrowed.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct BufferView<'a> {
    pub binding: u32,
    #[serde(serialize_with = "as_bytes")]
    pub init: &'a [u8],
    pub len: u64,
    pub readback: bool,
}

impl<'a> SubmitView<'a> {
    /// A view of an owned submission.
    pub(crate) fn of(s: &'a Submit) -> SubmitView<'a> {
        SubmitView {
            kernel: &s.kernel,
            entry_point: &s.entry_point,
            specialization: s.specialization.clone(),
            push_constants: &s.push_constants,
            grid: s.grid,
            buffers: s
                .buffers
                .iter()
                .map(|b| BufferView {
                    binding: b.binding,
                    init: &b.init,
                    len: b.len,
                    readback: b.readback,
                })
                .collect(),
            requirements: s.requirements,
            est_gpu_ms: s.est_gpu_ms,
            max_price: s.max_price,
            deadline_ms: s.deadline_ms,
            nonce: s.nonce,
            sealed: s.sealed,
        }
    }

    /// The buffers as the core's job description takes them.
    pub(crate) fn job_buffers(&self) -> Vec<job::Buffer<'a>> {
        self.buffers
            .iter()
            .map(|b| job::Buffer {
                binding: b.binding,
                init: b.init,
                len: b.len,
                readback: b.readback,
            })
            .collect()
    }

    /// The job as the core describes it, its buffers from
    /// [`SubmitView::job_buffers`]: what the assignment and the input
    /// chunks are built from ([`job::Description::assign_with`]).
    pub(crate) fn description<'b>(
        &'b self,
        buffers: &'b [job::Buffer<'a>],
    ) -> job::Description<'b> {
        job::Description {
            kernel: self.kernel,
            entry_point: self.entry_point,
            specialization: &self.specialization,
            push_constants: self.push_constants,
            grid: self.grid,
            buffers,
            nonce: self.nonce,
        }
    }
}

/// Postcard writes a `Vec<u8>` as a length and the bytes, as it writes
/// `serialize_bytes`; this way the bytes go out in one piece.
fn as_bytes<S: Serializer>(bytes: &&[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_bytes(bytes)
}

/// A sequence of at most `N` items: a declared length cannot make the
/// decoder allocate, and a list over the limit fails at its first extra item.
pub(crate) struct AtMost<T, const N: usize>(pub(crate) PhantomData<T>);

impl<'de, T: Deserialize<'de>, const N: usize> Visitor<'de> for AtMost<T, N> {
    type Value = Vec<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a sequence of at most {N} items")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            if items.len() == N {
                return Err(de::Error::invalid_length(N + 1, &self));
            }
            items.push(item);
        }
        Ok(items)
    }
}

fn at_most_spec_constants<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<(u32, u32)>, D::Error> {
    d.deserialize_seq(AtMost::<(u32, u32), MAX_SPEC_CONSTANTS>(PhantomData))
}

fn at_most_buffers<'de: 'a, 'a, D: Deserializer<'de>>(
    d: D,
) -> Result<Vec<BufferView<'a>>, D::Error> {
    d.deserialize_seq(AtMost::<BufferView<'a>, MAX_BUFFERS>(PhantomData))
}

/// Decodes a request body as a view borrowing from it.
pub(crate) fn decode_request(body: &[u8]) -> Result<RequestView<'_>, FrameError> {
    match postcard::take_from_bytes::<RequestView<'_>>(body) {
        Ok((msg, [])) => Ok(msg),
        Ok(_) => Err(FrameError::Malformed(
            postcard::Error::DeserializeBadEncoding,
        )),
        Err(e) => Err(FrameError::Malformed(e)),
    }
}

/// Whether a request body is `Request::Providers`.
pub(crate) fn is_providers_request(body: &[u8]) -> bool {
    matches!(decode_request(body), Ok(RequestView::Providers))
}

/// Limits a submission is checked against (from the coordinator's config).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    /// Largest sum of read-back buffer lengths.
    pub max_readback_bytes: u64,
}

/// What a submission's buffers add up to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Totals {
    /// Bytes the provider receives: the kernel and every initial data.
    pub bytes_in: u64,
    /// Bytes the provider returns: every read-back buffer.
    pub bytes_out: u64,
}

/// Why a submission was refused before any offer; the text says which
/// limit it breaks.
pub(crate) fn validate(s: &SubmitView<'_>, limits: &Limits) -> Result<Totals, String> {
    let k = s.kernel.len() as u64;
    if k == 0 || k % 4 != 0 || k > MAX_KERNEL_BYTES {
        return Err(format!(
            "kernel must be 1..={MAX_KERNEL_BYTES} bytes and a multiple of 4 (got {k})"
        ));
    }
    if s.entry_point.is_empty() || s.entry_point.len() > MAX_ENTRY_POINT {
        return Err(format!("entry point must be 1..={MAX_ENTRY_POINT} bytes"));
    }
    if s.specialization.len() > MAX_SPEC_CONSTANTS {
        return Err(format!(
            "at most {MAX_SPEC_CONSTANTS} specialization constants"
        ));
    }
    if s.push_constants.len() > MAX_PUSH_CONSTANTS {
        return Err(format!(
            "at most {MAX_PUSH_CONSTANTS} bytes of push constants"
        ));
    }
    if s.grid.contains(&0) {
        return Err("every grid dimension must be at least 1".into());
    }
    if s.buffers.is_empty() || s.buffers.len() > MAX_BUFFERS {
        return Err(format!("a job binds 1..={MAX_BUFFERS} buffers"));
    }
    let mut bytes_in = k;
    let mut bytes_out = 0u64;
    for (i, b) in s.buffers.iter().enumerate() {
        if b.len == 0 || b.init.len() as u64 > b.len {
            return Err(format!(
                "buffer {i}: length must be at least 1 and at least its initial data"
            ));
        }
        if b.binding >= MAX_BINDINGS {
            return Err(format!(
                "buffer {i}: binding {} is not below {MAX_BINDINGS}",
                b.binding
            ));
        }
        if let Some(j) = s.buffers[..i].iter().position(|o| o.binding == b.binding) {
            return Err(format!(
                "buffers {j} and {i} are both at binding {}",
                b.binding
            ));
        }
        // The initial data came in the request body, so this cannot
        // overflow; checked all the same.
        bytes_in = bytes_in
            .checked_add(b.init.len() as u64)
            .ok_or("the initial data add up to more than 2^64 bytes")?;
        if b.readback {
            bytes_out = bytes_out.checked_add(b.len).ok_or_else(|| {
                format!(
                    "the read-back buffers add up to more than {} bytes",
                    limits.max_readback_bytes
                )
            })?;
        }
    }
    if bytes_out > limits.max_readback_bytes {
        return Err(format!(
            "the read-back buffers add up to {bytes_out} bytes, over this coordinator's \
             limit of {}",
            limits.max_readback_bytes
        ));
    }
    if s.deadline_ms == 0 {
        return Err("deadline_ms must be at least 1".into());
    }
    if s.sealed.is_some() {
        // The provider checks the same (`docs/PROTOCOL.md`, "Sealed jobs");
        // refused here, the requester learns why at once.
        use tessera_core::e2e::{output_plain_len, plain_len};
        let push = s.push_constants.len() as u64;
        if push != 0 && plain_len(push).is_none_or(|p| p == 0) {
            return Err("a sealed job's push constants must be sealed".into());
        }
        for (i, b) in s.buffers.iter().enumerate() {
            if plain_len(b.init.len() as u64).is_none() {
                return Err(format!("buffer {i}: its initial data is not sealed"));
            }
        }
        let readback = s.buffers.iter().filter(|b| b.readback);
        for (k, b) in readback.enumerate() {
            if output_plain_len(b.len, k == 0).is_none() {
                return Err(format!(
                    "read-back buffer {k}: a length no sealed output has ({})",
                    b.len
                ));
            }
        }
    }
    Ok(Totals {
        bytes_in,
        bytes_out,
    })
}

/// Why a submission is not taken.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// It does not decode or breaks a limit (the text says which).
    Invalid(String),
    /// The coordinator holds as many bytes as it may now.
    Busy(String),
}

/// A job's inputs: the request body they arrived in, where each input stream
/// lies in it, and the leaf hash of every chunk. Shared by the job and the
/// connection streaming it to a provider; the body's bytes stay counted in the
/// budget until the last holder lets go.
pub(crate) struct Inputs {
    body: Vec<u8>,
    _permit: Permit,
    /// Input streams in order: the stream number (0 the kernel, `i + 1`
    /// buffer `i`), the bytes in `body`, and its first chunk's place in
    /// `leaves`.
    streams: Vec<(u8, Range<usize>, usize)>,
    /// Every chunk's leaf hash, stream after stream.
    leaves: Vec<Digest>,
}

impl Inputs {
    /// Input chunk `n` of all the streams: its stream, its index in that
    /// stream, and its bytes.
    fn chunk(&self, n: usize) -> Option<(u8, u32, &[u8])> {
        let (stream, range, first) = self
            .streams
            .iter()
            .rev()
            .find(|(_, _, first)| *first <= n)?;
        let index = n - first;
        let start = range.start.checked_add(index.checked_mul(CHUNK_SIZE)?)?;
        if start >= range.end {
            return None;
        }
        let end = start.saturating_add(CHUNK_SIZE).min(range.end);
        Some((
            *stream,
            u32::try_from(index).ok()?,
            self.body.get(start..end)?,
        ))
    }
}

impl fmt::Debug for Inputs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Inputs")
            .field("body", &self.body.len())
            .field("chunks", &self.leaves.len())
            .finish()
    }
}

/// A job's input chunks as frames, made one at a time for a provider's
/// connection. It holds its inputs weakly: once the job no longer needs them
/// (answered, or started), the stream ends where it is.
pub(crate) struct InputStream {
    inputs: Weak<Inputs>,
    job: JobId,
    next: usize,
}

impl InputStream {
    /// The input chunks of `job`, from the first.
    pub(crate) fn new(inputs: &Arc<Inputs>, job: JobId) -> InputStream {
        InputStream {
            inputs: Arc::downgrade(inputs),
            job,
            next: 0,
        }
    }

    /// Encodes the next chunk's frame into `buf`; `None` when every chunk
    /// went, or when the job no longer wants them.
    pub(crate) fn next_frame(&mut self, buf: &mut Vec<u8>) -> Option<usize> {
        let inputs = self.inputs.upgrade()?;
        let (stream, index, data) = inputs.chunk(self.next)?;
        let digest = *inputs.leaves.get(self.next)?;
        buf.resize(MAX_FRAME, 0);
        let msg = Message::InputChunk(Chunk {
            job: self.job,
            stream,
            index,
            digest,
            data,
        });
        match msg.encode(buf) {
            Ok(n) => {
                self.next += 1;
                Some(n)
            }
            Err(e) => {
                // A chunk is never larger than a frame holds.
                log::error!("job {}: cannot frame input chunk: {e:?}", self.job);
                None
            }
        }
    }
}

/// A submission checked, hashed and ready for the engine: everything the
/// engine needs, computed outside its lock.
pub(crate) struct Prepared {
    /// The assignment, its job id 0 until the engine numbers the job.
    pub assign: JobAssign,
    /// The offer, its job id 0 until the engine numbers the job.
    pub offer: JobOffer,
    /// Positions of the read-back buffers, in buffer order.
    pub readback: Vec<usize>,
    /// The inputs, held once.
    pub inputs: Arc<Inputs>,
    /// The budget the read-back bytes the submission states are counted in,
    /// until its result has been written to the requester.
    pub readback_permit: Permit,
    /// A sealed job's provider (device key) and the session key it is
    /// sealed to: offered to that provider only, in that session only.
    pub sealed_for: Option<([u8; 32], [u8; 32])>,
}

impl fmt::Debug for Prepared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Prepared")
            .field("offer", &self.offer)
            .field("inputs", &self.inputs)
            .finish_non_exhaustive()
    }
}

/// Where `part`, a slice decoded from `body`, lies in it.
fn place_in(body: &[u8], part: &[u8]) -> Option<Range<usize>> {
    let start = (part.as_ptr() as usize).checked_sub(body.as_ptr() as usize)?;
    let end = start.checked_add(part.len())?;
    (end <= body.len()).then_some(start..end)
}

/// Decodes, checks and hashes a request body holding a `Submit`. The body
/// and `permit` (its bytes in the budget) move into the job's inputs; the
/// read-back bytes the submission states are taken into `readback`.
pub(crate) fn prepare(
    body: Vec<u8>,
    permit: Permit,
    limits: &Limits,
    mut readback_permit: Permit,
) -> Result<Prepared, Refusal> {
    let RequestView::Submit(s) = decode_request(&body)
        .map_err(|e| Refusal::Invalid(format!("request does not decode: {e}")))?
    else {
        return Err(Refusal::Invalid("not a submission".into()));
    };
    let totals = validate(&s, limits).map_err(Refusal::Invalid)?;

    let buffers = s.job_buffers();
    let description = s.description(&buffers);
    // Where each input stream lies in the body, and the index of its first
    // chunk among all the chunks.
    let mut streams = Vec::with_capacity(s.buffers.len() + 1);
    let mut first = 0usize;
    for (stream, data) in description.input_streams() {
        if data.is_empty() {
            continue;
        }
        let range = place_in(&body, data).ok_or_else(|| {
            Refusal::Invalid("request does not decode: a field lies outside the body".into())
        })?;
        streams.push((stream, range, first));
        first = first.saturating_add(data.len().div_ceil(CHUNK_SIZE));
    }
    // Every chunk is hashed once, here: its leaf goes into the assignment's
    // roots and into `leaves`, from which the chunks are framed.
    let mut leaves = Vec::with_capacity(first);
    let mut assign = description
        .assign_with(0, |chunk| leaves.push(chunk.digest))
        // `validate` checked every length against these capacities.
        .map_err(|e| Refusal::Invalid(e.to_string()))?;
    assign.sealing = s.sealed.map(|x| x.sealing);
    let sealed_for = s.sealed.map(|x| (x.provider, x.enc_key));
    let offer = JobOffer {
        job: 0,
        requirements: s.requirements,
        est_gpu_ms: s.est_gpu_ms,
        bytes_in: totals.bytes_in,
        bytes_out: totals.bytes_out,
        max_price: s.max_price,
        deadline_ms: s.deadline_ms,
    };
    let readback: Vec<usize> = s
        .buffers
        .iter()
        .enumerate()
        .filter(|(_, b)| b.readback)
        .map(|(i, _)| i)
        .collect();
    drop(s);

    let stated = usize::try_from(totals.bytes_out).unwrap_or(usize::MAX);
    if !readback_permit.grow(stated) {
        return Err(Refusal::Busy(format!(
            "the coordinator holds as many bytes as it may; {stated} read-back bytes do not \
             fit now, try again later"
        )));
    }
    Ok(Prepared {
        assign,
        offer,
        readback,
        inputs: Arc::new(Inputs {
            body,
            _permit: permit,
            streams,
            leaves,
        }),
        readback_permit,
        sealed_for,
    })
}

/// Prepares an owned submission outside any budget (the engine's tests).
#[cfg(test)]
pub(crate) fn prepare_owned(s: &Submit, limits: &Limits) -> Result<Prepared, Refusal> {
    let body = postcard::to_stdvec(&RequestView::Submit(SubmitView::of(s)))
        .map_err(|e| Refusal::Invalid(e.to_string()))?;
    prepare(body, Permit::unbudgeted(), limits, Permit::unbudgeted())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{decode_body, encode_frame, BufferInit, Request};
    use tessera_core::merkle::{leaf_hash, root_of, root_of_buffers};

    fn submit() -> Submit {
        Submit {
            kernel: (0..3000u32).flat_map(|i| i.to_le_bytes()).collect(),
            entry_point: "main".into(),
            specialization: vec![(1, 2), (3, 4)],
            push_constants: vec![9; 16],
            grid: [2, 3, 4],
            buffers: vec![
                BufferInit {
                    binding: 3,
                    init: (0..20_000u32).map(|i| i as u8).collect(),
                    len: 30_000,
                    readback: false,
                },
                BufferInit {
                    binding: 0,
                    init: Vec::new(),
                    len: 100,
                    readback: true,
                },
                BufferInit {
                    binding: 1,
                    init: vec![7; 5],
                    len: 5,
                    readback: true,
                },
            ],
            requirements: Requirements {
                memory_mib: 3,
                features: 1,
            },
            est_gpu_ms: 10,
            max_price: 500,
            deadline_ms: 1000,
            nonce: [5; 32],
            sealed: None,
        }
    }

    const LIMITS: Limits = Limits {
        max_readback_bytes: 1 << 20,
    };

    #[test]
    fn the_view_encodes_and_decodes_as_the_owned_request() {
        let s = submit();
        let owned = encode_frame(&Request::Submit(s.clone())).expect("encodes");
        let view = postcard::to_stdvec(&RequestView::Submit(SubmitView::of(&s))).expect("encodes");
        assert_eq!(&owned[6..], &view[..]);
        let RequestView::Submit(back) = decode_request(&view).expect("decodes") else {
            panic!("a submission")
        };
        assert_eq!(back.kernel, &s.kernel[..]);
        // `Providers` is the variant after it, with no fields.
        let providers = encode_frame(&Request::Providers).expect("encodes");
        assert_eq!(&providers[6..], &[1]);
        assert!(is_providers_request(&providers[6..]));
        assert!(!is_providers_request(&view));
        assert_eq!(back.buffers[0].init, &s.buffers[0].init[..]);
        assert_eq!(
            decode_body::<Request>(&view).expect("decodes"),
            Request::Submit(s)
        );
    }

    #[test]
    fn a_prepared_job_carries_the_roots_and_chunks_of_its_inputs() {
        let s = submit();
        let p = prepare_owned(&s, &LIMITS).expect("prepares");
        assert_eq!(p.assign.kernel.root, root_of(&s.kernel));
        assert_eq!(
            p.assign.inputs_root,
            root_of_buffers(s.buffers.iter().map(|b| &b.init[..]))
        );
        assert_eq!(p.offer.bytes_in, 12_000 + 20_000 + 5);
        assert_eq!(p.offer.bytes_out, 105);
        assert_eq!(p.readback, vec![1, 2]);
        let mut stream = InputStream::new(&p.inputs, 77);
        let mut buf = Vec::new();
        let mut got: Vec<(u8, u32, Vec<u8>)> = Vec::new();
        while let Some(n) = stream.next_frame(&mut buf) {
            let Ok(Message::InputChunk(c)) = Message::decode(&buf[..n]) else {
                panic!("an input chunk")
            };
            assert_eq!((c.job, c.digest), (77, leaf_hash(c.data)));
            got.push((c.stream, c.index, c.data.to_vec()));
        }
        let streams: Vec<(u8, u32)> = got.iter().map(|(s, i, _)| (*s, *i)).collect();
        assert_eq!(
            streams,
            vec![(0, 0), (0, 1), (1, 0), (1, 1), (1, 2), (3, 0)]
        );
        let kernel: Vec<u8> = got[..2].iter().flat_map(|c| c.2.clone()).collect();
        assert_eq!(kernel, s.kernel);
        assert_eq!(got[5].2, vec![7; 5]);
    }

    #[test]
    fn a_stream_ends_when_the_job_lets_go_of_its_inputs() {
        let p = prepare_owned(&submit(), &LIMITS).expect("prepares");
        let mut stream = InputStream::new(&p.inputs, 1);
        let mut buf = Vec::new();
        assert!(stream.next_frame(&mut buf).is_some());
        drop(p);
        assert!(stream.next_frame(&mut buf).is_none());
    }

    #[test]
    fn read_back_totals_are_checked_without_overflow() {
        let mut s = submit();
        s.buffers[1].len = u64::MAX;
        let err = validate(&SubmitView::of(&s), &LIMITS).expect_err("refused");
        assert!(err.contains("read-back buffers add up"), "{err}");
        let mut s = submit();
        s.buffers[1].len = 2 << 20;
        let err = validate(&SubmitView::of(&s), &LIMITS).expect_err("refused");
        assert!(err.contains("over this coordinator's limit"), "{err}");
    }

    #[test]
    fn declared_lists_longer_than_the_limits_fail_without_allocating() {
        // A Submit whose buffer list claims 2^60 entries.
        let mut body = vec![0x00, 0x04, 1, 2, 3, 4, 0x01, b'm', 0x00, 0x00, 1, 1, 1];
        body.extend_from_slice(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x10]);
        body.extend_from_slice(&[0; 64]);
        assert!(decode_request(&body).is_err());
        // Nine buffers, one over the limit.
        let mut s = submit();
        s.buffers = (0..9)
            .map(|i| BufferInit {
                binding: i,
                init: Vec::new(),
                len: 1,
                readback: false,
            })
            .collect();
        let body = postcard::to_stdvec(&Request::Submit(s)).expect("encodes");
        assert!(decode_request(&body).is_err());
    }
}
