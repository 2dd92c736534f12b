//! Properties of the wire format and of the agent under arbitrary input.
//!
//! The frame codec must never panic on any bytes, and must give back what it
//! was given. The agent must survive any byte stream and any interleaving of
//! well-formed coordinator messages and host calls: it never panics, never
//! holds more jobs than it can, only emits frames that decode and receipts that
//! verify in one unbroken chain, and never drops a job the host runs without
//! telling the host.
//!
//! Case counts are modest so the file runs quickly in a debug build; set
//! `PROPTEST_CASES` to run more.

use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::rc::Rc;

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::strategy::Union;
use proptest::test_runner::TestCaseError;

use tessera_core::agent::Event;
use tessera_core::attest::{ChainState, DeviceCapabilities, Ed25519Signer, Receipt};
use tessera_core::attest::{ReceiptVerifier, SignError, Signer};
use tessera_core::limits::{
    CHUNK_SIZE, HEADER_LEN, MAX_BODY, MAX_BUFFERS, MAX_ENTRY_POINT, MAX_FRAME, MAX_PUSH_CONSTANTS,
    MAX_SIGNED, MAX_SPEC_CONSTANTS,
};
use tessera_core::merkle::leaf_hash;
use tessera_core::testkit::{increment_run, Harness, JobDescription};
use tessera_core::wire::{
    features, BufferSpec, Cancel, Chunk, Completed, DeclineReason, DecodeError, Direction,
    EncodeError, ErrorMsg, FailReason, Failed, Goodbye, GoodbyeReason, Header, Heartbeat, Hello,
    JobAssign, JobId, JobOffer, JobRef, KernelSpec, Message, MessageType, OfferAccept,
    OfferDecline, Progress, ReceiptMsg, Requirements, ResultRefuse, Usage, UsageReport, Welcome,
    MAGIC, WIRE_VERSION,
};
use tessera_core::{Agent, Config, ConnState, Duration, Error, Instant, LinearPrice, Policy};

/// Case count: `default`, unless `PROPTEST_CASES` says otherwise.
fn cases(default: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default);
    ProptestConfig {
        cases,
        ..ProptestConfig::default()
    }
}

// ----- messages ------------------------------------------------------------

/// A message that owns its borrowed parts, so a strategy can produce it.
#[derive(Clone, Debug)]
enum Owned {
    Hello(Hello),
    Welcome(Welcome),
    Evidence(Vec<u8>),
    Ready,
    JobOffer(JobOffer),
    OfferAccept(OfferAccept),
    OfferDecline(OfferDecline),
    JobAssign(Box<JobAssign>),
    InputChunk(OwnedChunk),
    Started(JobRef),
    Progress(Progress),
    OutputChunk(OwnedChunk),
    Completed(Completed),
    Failed(Failed),
    UsageReport(UsageReport),
    Receipt(JobId, Vec<u8>),
    ResultAck(JobRef),
    Cancel(Cancel),
    ResultRefuse(ResultRefuse),
    Heartbeat(Heartbeat),
    Drain,
    Goodbye(Goodbye),
    Error(ErrorMsg),
}

#[derive(Clone, Debug)]
struct OwnedChunk {
    job: JobId,
    stream: u8,
    index: u32,
    digest: [u8; 32],
    data: Vec<u8>,
}

impl OwnedChunk {
    fn borrow(&self) -> Chunk<'_> {
        Chunk {
            job: self.job,
            stream: self.stream,
            index: self.index,
            digest: self.digest,
            data: &self.data,
        }
    }
}

impl Owned {
    fn message(&self) -> Message<'_> {
        match self {
            Owned::Hello(m) => Message::Hello(*m),
            Owned::Welcome(m) => Message::Welcome(*m),
            Owned::Evidence(b) => Message::Evidence(tessera_core::wire::Blob { bytes: b }),
            Owned::Ready => Message::Ready,
            Owned::JobOffer(m) => Message::JobOffer(*m),
            Owned::OfferAccept(m) => Message::OfferAccept(*m),
            Owned::OfferDecline(m) => Message::OfferDecline(*m),
            Owned::JobAssign(m) => Message::JobAssign((**m).clone()),
            Owned::InputChunk(c) => Message::InputChunk(c.borrow()),
            Owned::Started(m) => Message::Started(*m),
            Owned::Progress(m) => Message::Progress(*m),
            Owned::OutputChunk(c) => Message::OutputChunk(c.borrow()),
            Owned::Completed(m) => Message::Completed(*m),
            Owned::Failed(m) => Message::Failed(*m),
            Owned::UsageReport(m) => Message::UsageReport(*m),
            Owned::Receipt(job, b) => Message::Receipt(ReceiptMsg {
                job: *job,
                bytes: b,
            }),
            Owned::ResultAck(m) => Message::ResultAck(*m),
            Owned::Cancel(m) => Message::Cancel(*m),
            Owned::ResultRefuse(m) => Message::ResultRefuse(*m),
            Owned::Heartbeat(m) => Message::Heartbeat(*m),
            Owned::Drain => Message::Drain,
            Owned::Goodbye(m) => Message::Goodbye(*m),
            Owned::Error(m) => Message::Error(*m),
        }
    }
}

/// Lengths from `0..=max`, often exactly `max` so limits are exercised.
fn len_up_to(max: usize) -> impl Strategy<Value = usize> {
    prop_oneof![1 => Just(max), 3 => 0..=max]
}

fn bytes_up_to(max: usize) -> impl Strategy<Value = Vec<u8>> {
    len_up_to(max).prop_flat_map(|n| vec(any::<u8>(), n))
}

fn digest() -> impl Strategy<Value = [u8; 32]> {
    any::<[u8; 32]>()
}

fn usage() -> impl Strategy<Value = Usage> {
    (any::<u64>(), any::<u32>(), any::<u64>(), any::<u64>()).prop_map(|(g, d, i, o)| Usage {
        gpu_time_us: g,
        dispatches: d,
        bytes_in: i,
        bytes_out: o,
    })
}

fn fail_reason() -> impl Strategy<Value = FailReason> {
    prop_oneof![
        Just(FailReason::KernelRejected),
        Just(FailReason::Timeout),
        Just(FailReason::DeadlineExceeded),
        Just(FailReason::DeviceLost),
        Just(FailReason::OutOfMemory),
        Just(FailReason::InputIntegrity),
        Just(FailReason::Host),
    ]
}

fn decline_reason() -> impl Strategy<Value = DeclineReason> {
    prop_oneof![
        Just(DeclineReason::PriceTooLow),
        Just(DeclineReason::AtCapacity),
        Just(DeclineReason::Unsupported),
        Just(DeclineReason::DeadlineTooShort),
        Just(DeclineReason::Draining),
        Just(DeclineReason::TooLarge),
        Just(DeclineReason::DuplicateJob),
        Just(DeclineReason::Unavailable),
    ]
}

fn goodbye_reason() -> impl Strategy<Value = GoodbyeReason> {
    prop_oneof![
        Just(GoodbyeReason::Drained),
        Just(GoodbyeReason::Shutdown),
        Just(GoodbyeReason::ProtocolError),
    ]
}

/// An entry point of any characters, at most `MAX_ENTRY_POINT` bytes long.
fn entry_point() -> impl Strategy<Value = tessera_core::bounded::BoundedString<MAX_ENTRY_POINT>> {
    prop_oneof![
        1 => Just("m".repeat(MAX_ENTRY_POINT)),
        1 => vec(any::<char>(), 0..=MAX_ENTRY_POINT).prop_map(|cs| cs.into_iter().collect()),
        2 => "[a-zA-Z_][a-zA-Z0-9_]{0,63}",
    ]
    .prop_map(|s: String| {
        let mut out = tessera_core::bounded::BoundedString::new();
        for c in s.chars() {
            if out.push(c).is_err() {
                break;
            }
        }
        out
    })
}

fn kernel_spec() -> impl Strategy<Value = KernelSpec> {
    (
        any::<u32>(),
        digest(),
        entry_point(),
        len_up_to(MAX_SPEC_CONSTANTS).prop_flat_map(|n| vec(any::<(u32, u32)>(), n)),
        bytes_up_to(MAX_PUSH_CONSTANTS),
        any::<[u32; 3]>(),
    )
        .prop_map(|(len, root, entry_point, spec, push, grid)| KernelSpec {
            len,
            root,
            entry_point,
            specialization: tessera_core::bounded::BoundedVec::from_slice(&spec)
                .unwrap_or_default(),
            push_constants: tessera_core::bounded::BoundedVec::from_slice(&push)
                .unwrap_or_default(),
            grid,
        })
}

fn job_assign() -> impl Strategy<Value = JobAssign> {
    (
        any::<u64>(),
        digest(),
        kernel_spec(),
        len_up_to(MAX_BUFFERS).prop_flat_map(|n| vec(any::<(u32, u64, u64, bool)>(), n)),
        digest(),
    )
        .prop_map(|(job, nonce, kernel, buffers, inputs_root)| JobAssign {
            job,
            requester_nonce: nonce,
            kernel,
            buffers: buffers
                .into_iter()
                .map(|(binding, len, init_len, readback)| BufferSpec {
                    binding,
                    len,
                    init_len,
                    readback,
                })
                .collect::<Vec<_>>()
                .as_slice()
                .try_into()
                .unwrap_or_default(),
            inputs_root,
            sealing: None,
        })
}

fn chunk() -> impl Strategy<Value = OwnedChunk> {
    (
        any::<u64>(),
        any::<u8>(),
        any::<u32>(),
        digest(),
        bytes_up_to(CHUNK_SIZE),
    )
        .prop_map(|(job, stream, index, digest, data)| OwnedChunk {
            job,
            stream,
            index,
            digest,
            data,
        })
}

/// A blob: usually a signed-structure size, sometimes as large as a body
/// holds next to `beside` bytes of other fields (and a 2-byte length).
fn blob(beside: usize) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![4 => bytes_up_to(MAX_SIGNED), 1 => bytes_up_to(MAX_BODY - 2 - beside)]
}

/// Every message type, with every field drawn from its whole range.
fn owned_message() -> BoxedStrategy<Owned> {
    Union::new(vec![
        (
            any::<u16>(),
            any::<u16>(),
            any::<[u16; 3]>(),
            any::<[u8; 16]>(),
            any::<u64>(),
            digest(),
        )
            .prop_map(
                |(min_version, max_version, agent_version, key_id, next_sequence, prev_hash)| {
                    Owned::Hello(Hello {
                        min_version,
                        max_version,
                        agent_version,
                        key_id,
                        next_sequence,
                        prev_hash,
                    })
                },
            )
            .boxed(),
        (any::<u16>(), digest(), any::<u32>())
            .prop_map(|(version, challenge, heartbeat_ms)| {
                Owned::Welcome(Welcome {
                    version,
                    challenge,
                    heartbeat_ms,
                })
            })
            .boxed(),
        blob(0).prop_map(Owned::Evidence).boxed(),
        Just(Owned::Ready).boxed(),
        (
            any::<u64>(),
            any::<(u32, u32)>(),
            any::<u32>(),
            any::<(u64, u64, u64)>(),
            any::<u32>(),
        )
            .prop_map(|(job, (memory_mib, features), est, (i, o, p), d)| {
                Owned::JobOffer(JobOffer {
                    job,
                    requirements: Requirements {
                        memory_mib,
                        features,
                    },
                    est_gpu_ms: est,
                    bytes_in: i,
                    bytes_out: o,
                    max_price: p,
                    deadline_ms: d,
                })
            })
            .boxed(),
        any::<(u64, u64)>()
            .prop_map(|(job, price)| Owned::OfferAccept(OfferAccept { job, price }))
            .boxed(),
        (any::<u64>(), decline_reason())
            .prop_map(|(job, reason)| Owned::OfferDecline(OfferDecline { job, reason }))
            .boxed(),
        job_assign()
            .prop_map(|a| Owned::JobAssign(Box::new(a)))
            .boxed(),
        chunk().prop_map(Owned::InputChunk).boxed(),
        any::<u64>()
            .prop_map(|job| Owned::Started(JobRef { job }))
            .boxed(),
        any::<(u64, u16)>()
            .prop_map(|(job, permille)| Owned::Progress(Progress { job, permille }))
            .boxed(),
        chunk().prop_map(Owned::OutputChunk).boxed(),
        (any::<u64>(), any::<u64>(), digest())
            .prop_map(|(job, output_len, output_root)| {
                Owned::Completed(Completed {
                    job,
                    output_len,
                    output_root,
                })
            })
            .boxed(),
        (any::<u64>(), fail_reason(), any::<u32>())
            .prop_map(|(job, reason, detail)| {
                Owned::Failed(Failed {
                    job,
                    reason,
                    detail,
                })
            })
            .boxed(),
        (any::<u64>(), usage(), any::<u64>())
            .prop_map(|(job, usage, price)| Owned::UsageReport(UsageReport { job, usage, price }))
            .boxed(),
        (any::<u64>(), blob(10))
            .prop_map(|(job, b)| Owned::Receipt(job, b))
            .boxed(),
        any::<u64>()
            .prop_map(|job| Owned::ResultAck(JobRef { job }))
            .boxed(),
        any::<(u64, u16)>()
            .prop_map(|(job, reason)| Owned::Cancel(Cancel { job, reason }))
            .boxed(),
        any::<(u64, u16)>()
            .prop_map(|(job, reason)| Owned::ResultRefuse(ResultRefuse { job, reason }))
            .boxed(),
        any::<(u8, u8)>()
            .prop_map(|(active_jobs, capacity)| {
                Owned::Heartbeat(Heartbeat {
                    active_jobs,
                    capacity,
                })
            })
            .boxed(),
        Just(Owned::Drain).boxed(),
        goodbye_reason()
            .prop_map(|reason| Owned::Goodbye(Goodbye { reason }))
            .boxed(),
        any::<(u16, u64)>()
            .prop_map(|(code, job)| Owned::Error(ErrorMsg { code, job }))
            .boxed(),
    ])
    .boxed()
}

fn encode(msg: &Message<'_>) -> Vec<u8> {
    let mut buf = vec![0u8; MAX_FRAME];
    let n = msg
        .encode(&mut buf)
        .expect("a generated message fits a frame");
    buf.truncate(n);
    buf
}

/// A frame header announcing `len` body bytes of type `kind`.
fn header(kind: u8, len: u32) -> [u8; HEADER_LEN] {
    let l = len.to_le_bytes();
    [
        MAGIC[0],
        MAGIC[1],
        WIRE_VERSION,
        kind,
        l[0],
        l[1],
        l[2],
        l[3],
    ]
}

const KNOWN_TYPES: [u8; 22] = [
    0x01, 0x02, 0x03, 0x04, 0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x19, 0x1A, 0x1B,
    0x1C, 0x1D, 0x30, 0x31, 0x32, 0x3F,
];

/// Bytes that look like frames to varying degrees: raw noise, valid headers
/// over noise, encoded messages, and encoded messages with bytes flipped.
fn frame_like_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        vec(any::<u8>(), 0..64),
        (
            prop_oneof![3 => proptest::sample::select(&KNOWN_TYPES[..]), 1 => any::<u8>()],
            vec(any::<u8>(), 0..300),
        )
            .prop_map(|(kind, body)| {
                let mut f = header(kind, body.len() as u32).to_vec();
                f.extend_from_slice(&body);
                f
            }),
        owned_message().prop_map(|m| encode(&m.message())),
        (
            owned_message(),
            vec((any::<prop::sample::Index>(), 1..=255u8), 1..4)
        )
            .prop_map(|(m, flips)| {
                let mut f = encode(&m.message());
                for (at, x) in flips {
                    let i = at.index(f.len());
                    f[i] ^= x;
                }
                f
            }),
    ]
}

proptest! {
    #![proptest_config(cases(1024))]

    /// A header decodes from any bytes without panicking, and what decodes
    /// names a frame the agent can hold.
    #[test]
    fn header_decode_never_panics(bytes in vec(any::<u8>(), 0..16)) {
        if let Ok(h) = Header::decode(&bytes) {
            prop_assert!(h.frame_len() <= MAX_FRAME);
            prop_assert_eq!(&bytes[..2], &MAGIC[..]);
        }
    }

    /// Any bytes give a message or a typed error, never a panic; a message
    /// that decodes encodes back to a frame, no longer, that decodes to the
    /// same message. (Not always to the same bytes: postcard accepts overlong
    /// varints, `ff 00` for 127; see `overlong_varints_decode`.)
    #[test]
    fn message_decode_never_panics_and_reencodes(bytes in frame_like_bytes()) {
        if let Ok(m) = Message::decode(&bytes) {
            let again = encode(&m);
            prop_assert!(again.len() <= bytes.len(), "re-encoding grew the frame");
            prop_assert_eq!(Message::decode(&again), Ok(m.clone()));
            prop_assert_eq!(again[3], m.kind() as u8);
        }
    }
}

proptest! {
    #![proptest_config(cases(512))]

    /// Every message, with its fields anywhere in range and its variable
    /// fields up to their limits, survives an encode/decode round trip byte
    /// for byte; a truncated frame asks for more bytes, an overlong one is
    /// refused, and a short output buffer is a typed error.
    #[test]
    fn every_message_round_trips(m in owned_message(), cut in any::<prop::sample::Index>()) {
        let msg = m.message();
        let frame = encode(&msg);
        prop_assert!(frame.len() <= MAX_FRAME);
        let decoded = Message::decode(&frame);
        prop_assert_eq!(decoded.as_ref(), Ok(&msg));
        prop_assert_eq!(encode(&decoded.unwrap()), frame.clone());

        let short = cut.index(frame.len());
        prop_assert_eq!(Message::decode(&frame[..short]), Err(DecodeError::Incomplete));
        let mut long = frame.clone();
        long.push(0);
        prop_assert_eq!(Message::decode(&long), Err(DecodeError::Malformed(msg.kind())));
        let mut small = vec![0u8; short];
        prop_assert_eq!(msg.encode(&mut small), Err(EncodeError::BufferTooSmall));
    }
}

/// A body with an overlong varint (`ff 00`, 127 in two bytes) decodes, to the
/// same message as its canonical form: frames are not byte-unique, so
/// nothing may rely on a frame's bytes (nothing signs them; evidence and
/// receipts are fixed-width and signed separately). Found by fuzzing.
#[test]
fn overlong_varints_decode() {
    let canonical = encode(&Message::JobOffer(JobOffer {
        job: 127,
        requirements: Requirements::default(),
        est_gpu_ms: 1,
        bytes_in: 1,
        bytes_out: 1,
        max_price: 1,
        deadline_ms: 1,
    }));
    assert_eq!(canonical[HEADER_LEN], 0x7F);
    let mut overlong = header(MessageType::JobOffer as u8, canonical.len() as u32 + 1 - 8).to_vec();
    overlong.extend_from_slice(&[0xFF, 0x00]);
    overlong.extend_from_slice(&canonical[HEADER_LEN + 1..]);
    assert_eq!(Message::decode(&overlong), Message::decode(&canonical));
}

/// A chunk one byte over `CHUNK_SIZE` is refused by the encoder and, forged
/// by hand, by the decoder.
#[test]
fn oversized_chunk_is_refused_both_ways() {
    let data = vec![7u8; CHUNK_SIZE + 1];
    let chunk = Chunk {
        job: 1,
        stream: 0,
        index: 0,
        digest: [0; 32],
        data: &data,
    };
    let mut buf = vec![0u8; MAX_FRAME];
    assert_eq!(
        Message::InputChunk(chunk).encode(&mut buf),
        Err(EncodeError::TooLarge)
    );
    let mut body = vec![1, 0, 0];
    body.extend_from_slice(&[0; 32]);
    body.extend_from_slice(&[0x81, 0x40]); // varint 8193
    body.extend_from_slice(&data);
    let mut frame = header(MessageType::InputChunk as u8, body.len() as u32).to_vec();
    frame.extend_from_slice(&body);
    assert_eq!(
        Message::decode(&frame),
        Err(DecodeError::Malformed(MessageType::InputChunk))
    );
}

// ----- the agent: common set-up ----------------------------------------------

const SEED: [u8; 32] = [7; 32];
const CHALLENGE: [u8; 32] = [0xC4; 32];

fn config() -> Config {
    let mut capabilities = DeviceCapabilities {
        features: features::FLOAT16,
        device_local_bytes: 1 << 30,
        ..DeviceCapabilities::default()
    };
    let _ = capabilities.name.push_str("property device");
    Config {
        agent_version: [0, 1, 0],
        boot_id: [1; 16],
        capabilities,
        policy: Policy {
            max_concurrent: HELD as u8,
            price: LinearPrice {
                base: 100,
                per_gpu_ms: 10,
                per_mib_in: 1,
                per_mib_out: 1,
            },
            floor: 150,
            heartbeat_interval: Duration::from_secs(5),
            peer_timeout: Duration::from_secs(20),
            ..Policy::default()
        },
        // Results wait for the host's confirmation that they are stored.
        persist_results: true,
    }
}

fn new_agent() -> Agent<Ed25519Signer> {
    let signer = Ed25519Signer::from_seed(&SEED).expect("seed");
    Agent::new(config(), signer, ChainState::default()).expect("config")
}

fn is_connected(s: ConnState) -> bool {
    matches!(
        s,
        ConnState::AwaitingWelcome | ConnState::AwaitingReady | ConnState::Ready
    )
}

/// The job of a given id: sizes chosen so that kernels and buffers span one
/// or several chunks, with and without inputs and outputs.
fn describe(id: JobId) -> JobDescription {
    let fill = |n: usize, salt: u8| -> Vec<u8> {
        (0..n)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(salt))
            .collect()
    };
    let (kernel_len, buffers): (usize, Vec<(usize, u64, bool)>) = match id % 5 {
        0 => (4, vec![]),
        1 => (64, vec![(100, 100, false), (0, 100, true)]),
        2 => (CHUNK_SIZE + 12, vec![(0, 9000, true)]),
        3 => (8, vec![(20_000, 20_000, false)]),
        _ => (
            40,
            vec![(100, 200, true), (CHUNK_SIZE, CHUNK_SIZE as u64 + 1, true)],
        ),
    };
    JobDescription {
        kernel: fill(kernel_len, id as u8),
        entry_point: "main".into(),
        grid: [2, 1, 1],
        push_constants: vec![id as u8; 4],
        buffers: buffers
            .into_iter()
            .enumerate()
            .map(|(i, (init, len, rb))| (fill(init, i as u8 + 1), len, rb))
            .collect(),
        nonce: [id as u8; 32],
        bindings: Vec::new(),
    }
}

/// What the host writes to read-back buffer `buffer` of a job at `offset`.
fn output_byte(id: JobId, buffer: u8, offset: u64) -> u8 {
    (offset as u8)
        .wrapping_mul(7)
        .wrapping_add(buffer.wrapping_mul(13))
        .wrapping_add(id as u8)
}

// ----- the agent: garbage on a live connection ---------------------------------

/// Garbage pieces: noise, frames of any type over noise (a bare `Drain`, which
/// would legitimately stop the agent taking jobs, excepted), encoded messages
/// and mutated ones.
fn garbage() -> impl Strategy<Value = Vec<u8>> {
    vec(frame_like_bytes(), 1..8).prop_map(|pieces| {
        let mut out = Vec::new();
        for p in pieces {
            let is_drain = p.len() == HEADER_LEN && p[..4] == header(0x31, 0)[..4];
            if !is_drain {
                out.extend_from_slice(&p);
            }
        }
        out
    })
}

/// Whether `bytes` is a run of whole frames (by their headers), so that a
/// connection that took them is still in step with its peer.
fn ends_on_a_frame_boundary(bytes: &[u8]) -> bool {
    let mut at = 0;
    while at < bytes.len() {
        match Header::decode(&bytes[at..]) {
            Ok(h) => at += h.frame_len(),
            Err(_) => return false,
        }
    }
    at == bytes.len()
}

fn settle_harness(h: &mut Harness) -> Result<(), TestCaseError> {
    for f in h.pump() {
        prop_assert!(Message::decode(&f).is_ok(), "agent sent {:?}", f);
    }
    Ok(())
}

/// Feeds `bytes` to the agent in pieces of the given sizes, draining its
/// queues between calls.
fn feed_pieces(h: &mut Harness, bytes: &[u8], sizes: &[usize]) -> Result<(), TestCaseError> {
    let mut rest = bytes;
    let mut sizes = sizes.iter().cycle();
    while !rest.is_empty() && is_connected(h.agent.state()) {
        let n = (*sizes.next().unwrap_or(&1)).min(rest.len());
        let mut piece = &rest[..n];
        let mut stalled = false;
        while !piece.is_empty() && is_connected(h.agent.state()) {
            let used = match h.agent.handle_input(h.now, piece) {
                Ok(used) => used,
                Err(e) => {
                    prop_assert!(e.consumed >= 1 && e.consumed <= piece.len(), "{:?}", e);
                    e.consumed
                }
            };
            prop_assert!(used <= piece.len());
            piece = &piece[used..];
            settle_harness(h)?;
            if used == 0 {
                prop_assert!(!stalled, "input stalls although every queue was drained");
                stalled = true;
            } else {
                stalled = false;
            }
        }
        rest = &rest[n..];
    }
    Ok(())
}

fn harness() -> Harness {
    Harness::new(new_agent(), increment_run)
}

/// Connects (from any state) and completes the handshake.
fn handshake(h: &mut Harness) -> Result<(), TestCaseError> {
    if is_connected(h.agent.state()) {
        h.agent.disconnected(h.now);
    }
    h.to_agent.clear();
    h.from_agent = Default::default();
    settle_harness(h)?;
    prop_assert_eq!(h.agent.connect(h.now), Ok(()));
    settle_harness(h)?;
    h.send(&Message::Welcome(Welcome {
        version: 1,
        challenge: CHALLENGE,
        heartbeat_ms: 0,
    }));
    settle_harness(h)?;
    h.send(&Message::Ready);
    settle_harness(h)?;
    prop_assert_eq!(h.agent.state(), ConnState::Ready);
    Ok(())
}

/// Runs one whole job and checks its receipt.
fn complete_a_job(h: &mut Harness, id: JobId) -> Result<(), TestCaseError> {
    let pk = h.agent_public_key();
    let j = describe(1);
    h.send(&Message::JobOffer(j.offer(id, 10_000, 60_000)));
    h.send(&Message::JobAssign(j.assign(id)));
    for f in j.input_frames(id) {
        h.send_raw(&f);
    }
    let frames = h.pump();
    let receipt = frames.iter().find_map(|f| match Message::decode(f) {
        Ok(Message::Receipt(r)) if r.job == id => Some(r.bytes.to_vec()),
        _ => None,
    });
    prop_assert!(receipt.is_some(), "no receipt; log: {:?}", h.host.log);
    let r = Receipt::verify(&receipt.unwrap(), &pk);
    prop_assert!(r.is_ok(), "{:?}", r);
    h.send(&Message::ResultAck(JobRef { job: id }));
    settle_harness(h)?;
    prop_assert_eq!(h.agent.job_state(id), None);
    Ok(())
}

trait PublicKey {
    fn agent_public_key(&self) -> [u8; 32];
}

impl PublicKey for Harness {
    fn agent_public_key(&self) -> [u8; 32] {
        Ed25519Signer::from_seed(&SEED)
            .map(|s| s.public_key())
            .unwrap_or_default()
    }
}

proptest! {
    #![proptest_config(cases(256))]

    /// Whatever bytes a broken or hostile coordinator sends, cut wherever the
    /// transport cuts them, the agent answers with typed errors and frames
    /// that decode, keeps consuming input once its queues are drained, and
    /// afterwards still runs a job to a verified receipt (on the same
    /// connection if it survived, else after reconnecting).
    #[test]
    fn garbage_input_leaves_the_agent_usable(
        bytes in garbage(),
        sizes in vec(1..=3000usize, 1..8),
    ) {
        let mut h = harness();
        handshake(&mut h)?;
        feed_pieces(&mut h, &bytes, &sizes)?;
        let in_sync = ends_on_a_frame_boundary(&bytes);
        prop_assert!(h.agent.active_jobs() <= HELD);
        // A well-formed `Drain` hidden in the noise legitimately stops the
        // agent taking jobs; such cases prove nothing more here.
        prop_assume!(!h.agent.is_draining());
        if !in_sync || h.agent.state() != ConnState::Ready || h.agent.active_jobs() > 0 {
            handshake(&mut h)?;
        }
        prop_assert_eq!(h.agent.active_jobs(), 0);
        complete_a_job(&mut h, 1 << 40)?;
    }
}

// ----- the agent: any interleaving of messages and host calls -------------------

/// Jobs the agent of the sequences holds at once (its `max_concurrent`,
/// the default; `MAX_JOBS` is 32 in hosted builds).
const HELD: usize = 4;
/// Job ids the sequences use: more than `HELD`, so capacity is tested.
const IDS: std::ops::RangeInclusive<JobId> = 1..=6;

#[derive(Clone, Debug)]
enum Op {
    // From the coordinator.
    Offer {
        id: JobId,
        cheap: bool,
        deadline: u8,
    },
    Assign {
        id: JobId,
        bad: bool,
    },
    Chunk {
        id: JobId,
        k: usize,
        corrupt: bool,
    },
    AllChunks {
        id: JobId,
        corrupt: Option<usize>,
    },
    Cancel {
        id: JobId,
        reason: u16,
    },
    Ack {
        id: JobId,
    },
    Refuse {
        id: JobId,
        reason: u16,
    },
    Heartbeat,
    Drain,
    Goodbye,
    PeerError {
        code: u16,
        id: JobId,
    },
    Welcome {
        version: u16,
        heartbeat_ms: u32,
    },
    Ready,
    /// Many frames the agent refuses (each answered with an `Error` frame).
    Junk {
        count: usize,
    },
    // From the host.
    Upload {
        id: JobId,
        max: usize,
        buffer: Option<u8>,
        corrupt: bool,
    },
    Finish {
        id: JobId,
    },
    Fail {
        id: JobId,
        reason: FailReason,
    },
    Progress {
        id: JobId,
        permille: u16,
    },
    /// Progress reports until the outgoing queue is full.
    Flood {
        id: JobId,
    },
    /// The signer starts or stops refusing to sign.
    Signer {
        down: bool,
    },
    /// The transport takes only part of the outgoing queue.
    TransmitSome {
        bytes: usize,
    },
    HostDrain,
    /// The host says whether its device takes work.
    DeviceAvailable {
        available: bool,
    },
    Disconnected,
    Connect,
    Handshake,
    Wait {
        millis: u64,
    },
    Timeout,
}

fn id() -> impl Strategy<Value = JobId> {
    IDS
}

fn single_op() -> BoxedStrategy<Op> {
    prop_oneof![
        6 => (id(), prop::bool::weighted(0.1), 0..3u8)
            .prop_map(|(id, cheap, deadline)| Op::Offer { id, cheap, deadline }),
        5 => (id(), prop::bool::weighted(0.1)).prop_map(|(id, bad)| Op::Assign { id, bad }),
        3 => (id(), 0..4usize, prop::bool::weighted(0.3))
            .prop_map(|(id, k, corrupt)| Op::Chunk { id, k, corrupt }),
        5 => (id(), prop::option::weighted(0.15, 0..4usize))
            .prop_map(|(id, corrupt)| Op::AllChunks { id, corrupt }),
        2 => (id(), any::<u16>()).prop_map(|(id, reason)| Op::Cancel { id, reason }),
        5 => id().prop_map(|id| Op::Ack { id }),
        1 => (id(), any::<u16>()).prop_map(|(id, reason)| Op::Refuse { id, reason }),
        2 => prop_oneof![18 => Just(Op::Heartbeat), 1 => Just(Op::Drain), 1 => Just(Op::HostDrain)],
        1 => Just(Op::Goodbye),
        1 => (0..16u16, prop_oneof![Just(0), id()])
            .prop_map(|(code, id)| Op::PeerError { code, id }),
        1 => (0..3u16, prop_oneof![Just(0u32), 1..100_000u32])
            .prop_map(|(version, heartbeat_ms)| Op::Welcome { version, heartbeat_ms }),
        1 => Just(Op::Ready),
        1 => (1..2_000usize).prop_map(|count| Op::Junk { count }),
        1 => id().prop_map(|id| Op::Flood { id }),
        2 => (1..3_000usize).prop_map(|bytes| Op::TransmitSome { bytes }),
        1 => any::<bool>().prop_map(|down| Op::Signer { down }),
        1 => any::<bool>().prop_map(|available| Op::DeviceAvailable { available }),
        8 => (
            id(),
            prop_oneof![Just(usize::MAX), 1..20_000usize],
            prop::option::weighted(0.1, 0..3u8),
            prop::bool::weighted(0.1),
        )
            .prop_map(|(id, max, buffer, corrupt)| Op::Upload { id, max, buffer, corrupt }),
        6 => id().prop_map(|id| Op::Finish { id }),
        2 => (id(), fail_reason()).prop_map(|(id, reason)| Op::Fail { id, reason }),
        2 => (id(), any::<u16>()).prop_map(|(id, permille)| Op::Progress { id, permille }),
        2 => Just(Op::Disconnected),
        1 => Just(Op::Connect),
        3 => Just(Op::Handshake),
        4 => prop_oneof![0..2_000u64, 2_000..30_000u64, Just(70_000u64)]
            .prop_map(|millis| Op::Wait { millis }),
        1 => Just(Op::Timeout),
    ]
    .boxed()
}

/// One whole job, in order, so sequences reach the late states often. The
/// second upload and finish serve a resend after a reconnect (and are refused
/// otherwise).
fn lifecycle(id: JobId) -> Vec<Op> {
    let upload = Op::Upload {
        id,
        max: usize::MAX,
        buffer: None,
        corrupt: false,
    };
    vec![
        Op::Offer {
            id,
            cheap: false,
            deadline: 1,
        },
        Op::Assign { id, bad: false },
        Op::AllChunks { id, corrupt: None },
        upload.clone(),
        upload.clone(),
        Op::Finish { id },
        upload.clone(),
        upload,
        Op::Finish { id },
        Op::Ack { id },
    ]
}

/// Steps: a few job lifecycles (each cut off at some point) and single
/// operations, interleaved at random; after each, whether the host drains
/// every queue.
fn steps() -> impl Strategy<Value = Vec<(Op, bool)>> {
    (
        vec((id(), 1..=10usize), 0..5),
        vec(single_op(), 0..40),
        vec(any::<u8>(), 100),
        vec(prop::bool::weighted(0.8), 100),
    )
        .prop_map(|(flows, singles, picks, settles)| {
            let mut queues: Vec<VecDeque<Op>> = flows
                .into_iter()
                .map(|(id, len)| lifecycle(id).into_iter().take(len).collect())
                .collect();
            queues.push(singles.into_iter().collect());
            let mut out = Vec::new();
            let mut pick = picks.iter().cycle();
            loop {
                let live: Vec<usize> = (0..queues.len())
                    .filter(|&q| !queues[q].is_empty())
                    .collect();
                if live.is_empty() {
                    break;
                }
                let q = live[*pick.next().unwrap_or(&0) as usize % live.len()];
                let settle = settles[out.len() % settles.len()];
                if let Some(op) = queues[q].pop_front() {
                    out.push((op, settle));
                }
            }
            out
        })
}

/// A signer that refuses to sign while `down` is set, as a secure element
/// that is busy or absent.
struct FlakySigner {
    inner: Ed25519Signer,
    down: Rc<Cell<bool>>,
}

impl Signer for FlakySigner {
    fn public_key(&self) -> [u8; 32] {
        self.inner.public_key()
    }

    fn sign(&mut self, message: &[u8]) -> Result<[u8; 64], SignError> {
        if self.down.get() {
            Err(SignError::Unavailable)
        } else {
            self.inner.sign(message)
        }
    }
}

/// What the host and the coordinator know, to check the agent against.
struct Sim {
    agent: Agent<FlakySigner>,
    /// Whether the signer is refusing to sign (a busy secure element).
    signer_down: Rc<Cell<bool>>,
    public_key: [u8; 32],
    now: Instant,
    /// Coordinator frames not yet consumed by the agent (the first partly).
    to_agent: VecDeque<Vec<u8>>,
    /// Agent bytes not yet cut into frames.
    from_agent: Vec<u8>,
    /// Jobs the host was told about and not yet told to drop.
    host_jobs: BTreeSet<JobId>,
    /// Input bytes the host received for each job.
    received: BTreeMap<JobId, u64>,
    /// Receipts signed so far, as the agent holds them.
    signed: BTreeSet<Vec<u8>>,
    /// Checks the receipt chain.
    verifier: ReceiptVerifier,
    /// Largest piece of input handed over at once.
    split: usize,
    /// Whether the host connected since it last drained the events.
    reconnected: bool,
    /// The output chunks each job sent on this transport, in order:
    /// (stream, index, leaf digest).
    session_chunks: BTreeMap<JobId, Vec<(u8, u32, [u8; 32])>>,
}

impl Sim {
    fn new(split: usize) -> Self {
        let signer_down = Rc::new(Cell::new(false));
        let signer = FlakySigner {
            inner: Ed25519Signer::from_seed(&SEED).expect("seed"),
            down: signer_down.clone(),
        };
        let agent = Agent::new(config(), signer, ChainState::default()).expect("config");
        let public_key = Ed25519Signer::from_seed(&SEED)
            .map(|s| s.public_key())
            .unwrap_or_default();
        Sim {
            agent,
            signer_down,
            public_key,
            now: Instant::from_millis(1),
            to_agent: VecDeque::new(),
            from_agent: Vec::new(),
            host_jobs: BTreeSet::new(),
            received: BTreeMap::new(),
            signed: BTreeSet::new(),
            verifier: ReceiptVerifier::new(public_key, ChainState::default()),
            split,
            reconnected: false,
            session_chunks: BTreeMap::new(),
        }
    }

    /// Runs a host call; a refused call must leave the agent as it was.
    fn host_call<T>(
        &mut self,
        id: JobId,
        call: impl FnOnce(&mut Agent<FlakySigner>, Instant) -> Result<T, Error>,
    ) -> Result<Option<T>, TestCaseError> {
        let before = self.snapshot(id);
        let now = self.now;
        match call(&mut self.agent, now) {
            Ok(v) => Ok(Some(v)),
            Err(Error::Usage(tessera_core::UsageError::OutputMismatch(_))) => Ok(None),
            Err(e) => {
                prop_assert_eq!(
                    &self.snapshot(id),
                    &before,
                    "a call refused with {:?} changed the agent",
                    e
                );
                Ok(None)
            }
        }
    }

    #[allow(clippy::type_complexity)]
    fn snapshot(
        &self,
        id: JobId,
    ) -> (
        Option<tessera_core::JobState>,
        Option<(u8, u64)>,
        Option<Vec<u8>>,
        usize,
        ConnState,
        bool,
        ChainState,
        usize,
    ) {
        (
            self.agent.job_state(id),
            self.agent.output_cursor(id),
            self.agent.job_receipt(id).map(<[u8]>::to_vec),
            self.agent.active_jobs(),
            self.agent.state(),
            self.agent.is_draining(),
            self.agent.chain(),
            self.agent.pending_transmit(),
        )
    }

    fn send(&mut self, msg: &Message<'_>) {
        if is_connected(self.agent.state()) {
            self.to_agent.push_back(encode(msg));
        }
    }

    /// Feeds queued coordinator bytes, never more than one frame per call,
    /// until the agent stops taking them.
    fn feed(&mut self) -> Result<(), TestCaseError> {
        loop {
            if !is_connected(self.agent.state()) {
                self.to_agent.clear();
                return Ok(());
            }
            let Some(frame) = self.to_agent.front_mut() else {
                return Ok(());
            };
            let n = frame.len().min(self.split);
            let used = match self.agent.handle_input(self.now, &frame[..n]) {
                Ok(used) => used,
                Err(e) => {
                    prop_assert!(e.consumed >= 1 && e.consumed <= n, "{:?}", e);
                    prop_assert!(
                        e.error != Error::WouldBlock,
                        "a frame was consumed but its reply did not fit"
                    );
                    e.consumed
                }
            };
            prop_assert!(used <= n);
            frame.drain(..used);
            if frame.is_empty() {
                self.to_agent.pop_front();
            }
            self.observe()?;
            if used == 0 {
                return Ok(());
            }
        }
    }

    /// Checks what can be checked without draining the agent: capacity, and
    /// every receipt newly signed continues the chain.
    fn observe(&mut self) -> Result<(), TestCaseError> {
        prop_assert!(self.agent.active_jobs() <= HELD);
        let mut fresh = Vec::new();
        for id in IDS {
            if let Some(r) = self.agent.job_receipt(id) {
                if !self.signed.contains(r) {
                    let receipt = Receipt::verify(r, &self.public_key);
                    prop_assert!(receipt.is_ok(), "receipt does not verify: {:?}", receipt);
                    let receipt = receipt.unwrap();
                    prop_assert_eq!(receipt.job, id);
                    fresh.push((receipt.sequence, r.to_vec()));
                }
            }
        }
        fresh.sort();
        for (_, r) in fresh {
            let v = self.verifier.verify_next(&r, None);
            prop_assert!(v.is_ok(), "receipt breaks the chain: {:?}", v);
            self.signed.insert(r);
        }
        prop_assert_eq!(
            self.verifier.chain(),
            self.agent.chain(),
            "a receipt was signed that the agent does not hold"
        );
        Ok(())
    }

    /// Drains outgoing bytes and events, checking each.
    fn drain(&mut self) -> Result<(), TestCaseError> {
        let mut out = [0u8; 5000];
        while let Some(n) = self.agent.poll_transmit(self.now, &mut out) {
            prop_assert!(n > 0 && n <= out.len());
            self.from_agent.extend_from_slice(&out[..n]);
        }
        self.check_frames()?;
        let mut to_confirm = Vec::new();
        while let Some(event) = self.agent.poll_event() {
            match event {
                Event::JobAssigned { job } => {
                    prop_assert!(self.host_jobs.insert(job), "job {} assigned twice", job);
                    self.received.insert(job, 0);
                }
                Event::JobData {
                    job,
                    stream,
                    offset,
                    len,
                } => {
                    let data = self.agent.input(job).unwrap_or_default();
                    prop_assert_eq!(data.len(), len, "the chunk is readable");
                    prop_assert!(self.host_jobs.contains(&job));
                    prop_assert!(!data.is_empty() && data.len() <= CHUNK_SIZE);
                    let j = describe(job);
                    let source = if stream == 0 {
                        &j.kernel
                    } else {
                        &j.buffers[stream as usize - 1].0
                    };
                    let at = offset as usize;
                    prop_assert_eq!(data, &source[at..at + data.len()], "unverified data");
                    *self.received.entry(job).or_default() += data.len() as u64;
                }
                Event::RunJob { job } => {
                    prop_assert!(
                        self.host_jobs.contains(&job),
                        "{:?} for a dropped job",
                        event
                    );
                    let j = describe(job);
                    let inputs =
                        j.kernel.len() + j.buffers.iter().map(|b| b.0.len()).sum::<usize>();
                    prop_assert_eq!(
                        self.received.get(&job).copied(),
                        Some(inputs as u64),
                        "job {} runs without all its inputs",
                        job
                    );
                }
                Event::ResendOutputs { job } => {
                    prop_assert!(
                        self.host_jobs.contains(&job),
                        "{:?} for a dropped job",
                        event
                    );
                }
                Event::CancelJob { job, .. } => {
                    prop_assert!(self.host_jobs.remove(&job), "cancel of an unknown job");
                }
                Event::ResultAcknowledged { job } | Event::ResultRefused { job, .. } => {
                    self.host_jobs.remove(&job);
                }
                // Also for a job the host was told to cancel: its failure
                // receipt is a result too.
                Event::PersistResult { job } => to_confirm.push(job),
                Event::Ready | Event::PeerError { .. } => {}
                Event::Disconnect { .. } => {
                    // Unless the host has connected again since (without
                    // draining first), the agent is disconnected.
                    prop_assert!(self.reconnected || !is_connected(self.agent.state()));
                }
                other => prop_assert!(false, "an event this test does not know: {:?}", other),
            }
        }
        self.reconnected = false;
        // The host stores each signed result, then lets the agent send it.
        for job in to_confirm {
            let r = self.agent.confirm_persisted(self.now, job);
            prop_assert!(r.is_ok(), "confirm_persisted({}) -> {:?}", job, r);
        }
        // Nothing silently lost: every job the host holds, the agent holds too.
        for job in &self.host_jobs {
            let state = self.agent.job_state(*job);
            prop_assert!(
                state.is_some() && state != Some(tessera_core::JobState::Accepted),
                "job {} vanished without an event (state {:?})",
                job,
                state
            );
        }
        Ok(())
    }

    /// Cuts the agent's output into frames; each must decode and be one the
    /// agent may send.
    fn check_frames(&mut self) -> Result<(), TestCaseError> {
        while self.from_agent.len() >= HEADER_LEN {
            let h = Header::decode(&self.from_agent);
            prop_assert!(h.is_ok(), "bad header from the agent: {:?}", h);
            let len = h.unwrap().frame_len();
            if self.from_agent.len() < len {
                break;
            }
            let frame: Vec<u8> = self.from_agent.drain(..len).collect();
            let msg = Message::decode(&frame);
            prop_assert!(msg.is_ok(), "agent sent an undecodable frame: {:?}", msg);
            let msg = msg.unwrap();
            prop_assert!(msg.kind().direction() != Direction::ToProvider);
            match msg {
                Message::Receipt(r) => {
                    prop_assert!(self.signed.contains(r.bytes), "unknown receipt sent");
                    let v = Receipt::verify(r.bytes, &self.public_key);
                    prop_assert_eq!(v.map(|x| x.job), Ok(r.job));
                }
                Message::OutputChunk(c) => {
                    prop_assert_eq!(c.digest, leaf_hash(c.data));
                    prop_assert!(!c.data.is_empty() && c.data.len() <= CHUNK_SIZE);
                    let sent = self.session_chunks.entry(c.job).or_default();
                    // An upload started over (outputs written again).
                    if c.index == 0 && sent.iter().any(|&(stream, _, _)| stream == c.stream) {
                        sent.clear();
                    }
                    sent.push((c.stream, c.index, c.digest));
                }
                Message::Completed(c) => {
                    // The outcome follows every output chunk, sent on this
                    // transport, in order: the coordinator can check the root.
                    let sent = self.session_chunks.remove(&c.job).unwrap_or_default();
                    let mut tree = tessera_core::merkle::RootBuilder::new();
                    for &(_, _, digest) in &sent {
                        tree.push_leaf(digest);
                    }
                    prop_assert_eq!(
                        tree.root(),
                        c.output_root,
                        "job {}: Completed without all its output chunks on this transport: {:?}",
                        c.job,
                        sent.iter().map(|&(s, i, _)| (s, i)).collect::<Vec<_>>()
                    );
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Drains and feeds until nothing moves; then all input must be consumed.
    fn settle(&mut self) -> Result<(), TestCaseError> {
        for _ in 0..10_000 {
            self.drain()?;
            let before: usize = self.to_agent.iter().map(Vec::len).sum();
            self.feed()?;
            let after: usize = self.to_agent.iter().map(Vec::len).sum();
            if after == before && self.agent.pending_transmit() == 0 {
                break;
            }
        }
        self.drain()?;
        prop_assert!(
            self.to_agent.is_empty(),
            "input left unconsumed although every queue was drained"
        );
        Ok(())
    }

    fn new_transport(&mut self) {
        self.reconnected = true;
        self.session_chunks.clear();
        self.to_agent.clear();
        self.from_agent.clear();
    }

    fn step(&mut self, op: &Op) -> Result<(), TestCaseError> {
        match *op {
            Op::Offer {
                id,
                cheap,
                deadline,
            } => {
                let price = if cheap { 100 } else { 10_000 };
                let deadline_ms = [1_000, 60_000, 3_600_000][deadline as usize % 3];
                self.send(&Message::JobOffer(describe(id).offer(
                    id,
                    price,
                    deadline_ms,
                )));
            }
            Op::Assign { id, bad } => {
                let mut a = describe(id).assign(id);
                if bad {
                    a.kernel.len = 3;
                }
                self.send(&Message::JobAssign(a));
            }
            Op::Chunk { id, k, corrupt } => {
                let frames = describe(id).input_frames(id);
                let mut f = frames[k % frames.len()].clone();
                if corrupt {
                    let n = f.len();
                    f[n - 1] ^= 0x5A;
                }
                if is_connected(self.agent.state()) {
                    self.to_agent.push_back(f);
                }
            }
            Op::AllChunks { id, corrupt } => {
                let mut frames = describe(id).input_frames(id);
                if let Some(k) = corrupt {
                    let k = k % frames.len();
                    let n = frames[k].len();
                    frames[k][n - 1] ^= 0x5A;
                }
                if is_connected(self.agent.state()) {
                    self.to_agent.extend(frames);
                }
            }
            Op::Cancel { id, reason } => self.send(&Message::Cancel(Cancel { job: id, reason })),
            Op::Ack { id } => self.send(&Message::ResultAck(JobRef { job: id })),
            Op::Refuse { id, reason } => {
                self.send(&Message::ResultRefuse(ResultRefuse { job: id, reason }))
            }
            Op::Heartbeat => self.send(&Message::Heartbeat(Heartbeat::default())),
            Op::Drain => self.send(&Message::Drain),
            Op::Goodbye => self.send(&Message::Goodbye(Goodbye {
                reason: GoodbyeReason::Shutdown,
            })),
            Op::PeerError { code, id } => self.send(&Message::Error(ErrorMsg { code, job: id })),
            Op::Welcome {
                version,
                heartbeat_ms,
            } => self.send(&Message::Welcome(Welcome {
                version,
                challenge: CHALLENGE,
                heartbeat_ms,
            })),
            Op::Ready => self.send(&Message::Ready),
            Op::Junk { count } => {
                for _ in 0..count {
                    self.send(&Message::Started(JobRef { job: 0 }));
                }
            }
            Op::Flood { id } => {
                for _ in 0..3_000 {
                    if self
                        .host_call(id, |a, now| a.report_progress(now, id, 500))?
                        .is_none()
                    {
                        break;
                    }
                }
            }
            Op::Upload {
                id,
                max,
                buffer,
                corrupt,
            } => {
                let (cursor_buffer, offset) = self.agent.output_cursor(id).unwrap_or((0, 0));
                let buffer = buffer.unwrap_or(cursor_buffer);
                let len = self
                    .agent
                    .job_spec(id)
                    .and_then(|s| s.buffers.get(buffer as usize))
                    .map_or(0, |b| b.len);
                let end = len.min(offset.saturating_add(max as u64));
                let mut data: Vec<u8> = (offset..end.max(offset))
                    .map(|o| output_byte(id, buffer, o))
                    .collect();
                if corrupt && !data.is_empty() {
                    data[0] ^= 1;
                }
                let mut out = vec![0u8; tessera_core::limits::TRANSMIT_BUFFER];
                let sent =
                    self.host_call(id, |a, now| a.send_output(now, id, buffer, &data, &mut out))?;
                if let Some(sent) = sent {
                    prop_assert!(sent.taken <= data.len());
                    prop_assert!(sent.written <= out.len());
                    self.from_agent.extend_from_slice(&out[..sent.written]);
                    self.check_frames()?;
                }
            }
            Op::Finish { id } => {
                let usage = Usage {
                    gpu_time_us: 1500,
                    dispatches: 1,
                    ..Usage::default()
                };
                self.host_call(id, |a, now| a.finish_job(now, id, usage))?;
            }
            Op::Fail { id, reason } => {
                self.host_call(id, |a, now| {
                    a.fail_job(now, id, reason, 9, Usage::default())
                })?;
            }
            Op::Progress { id, permille } => {
                self.host_call(id, |a, now| a.report_progress(now, id, permille))?;
            }
            Op::HostDrain => {
                self.host_call(0, |a, now| a.drain(now))?;
            }
            Op::DeviceAvailable { available } => {
                self.agent.set_device_available(self.now, available);
                prop_assert_eq!(self.agent.device_available(), available);
            }
            Op::Disconnected => {
                self.agent.disconnected(self.now);
                // What the agent still has queued goes out on the old
                // transport, which the host flushes before closing.
                self.to_agent.clear();
            }
            Op::Signer { down } => self.signer_down.set(down),
            Op::TransmitSome { bytes } => {
                let mut out = vec![0u8; bytes];
                if let Some(n) = self.agent.poll_transmit(self.now, &mut out) {
                    prop_assert!(n > 0 && n <= bytes);
                    self.from_agent.extend_from_slice(&out[..n]);
                    self.check_frames()?;
                }
            }
            Op::Connect => {
                if self.host_call(0, |a, now| a.connect(now))?.is_some() {
                    self.new_transport();
                }
            }
            Op::Handshake => {
                if is_connected(self.agent.state()) {
                    self.agent.disconnected(self.now);
                }
                self.drain()?;
                if self.host_call(0, |a, now| a.connect(now))?.is_some() {
                    self.new_transport();
                    self.send(&Message::Welcome(Welcome {
                        version: 1,
                        challenge: CHALLENGE,
                        heartbeat_ms: 0,
                    }));
                    self.send(&Message::Ready);
                }
            }
            Op::Wait { millis } => {
                self.now = self.now + Duration::from_millis(millis);
                if let Some(t) = self.agent.poll_timeout() {
                    if t <= self.now {
                        self.agent.handle_timeout(self.now);
                        let next = self.agent.poll_timeout();
                        prop_assert!(
                            next.is_none_or(|n| n > self.now),
                            "a timer is still due after it ran: {:?} at {:?}",
                            next,
                            self.now
                        );
                    }
                }
            }
            Op::Timeout => self.agent.handle_timeout(self.now),
        }
        self.feed()?;
        self.observe()
    }
}

proptest! {
    #![proptest_config(cases(1000))]

    /// Any order of well-formed coordinator messages (right or wrong for the
    /// moment) and host calls, with time jumping and queues drained or not:
    /// the agent never panics, holds at most `HELD` jobs, refuses bad
    /// calls without changing, emits only frames that decode and receipts
    /// that verify in one gap-free chain, hands the host only verified input
    /// bytes and all of them before the job runs, consumes all input once
    /// drained, and never drops a job the host holds without a `CancelJob`
    /// or `ResultAcknowledged` event.
    #[test]
    fn any_interleaving_keeps_the_invariants(
        steps in steps(),
        split in prop_oneof![Just(usize::MAX), 1..10_000usize],
    ) {
        let mut sim = Sim::new(split);
        sim.step(&Op::Handshake)?;
        sim.settle()?;
        for (op, settle) in &steps {
            sim.step(op)?;
            if *settle {
                sim.settle()?;
            }
        }
        sim.settle()?;
    }
}
