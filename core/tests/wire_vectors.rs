//! Wire test vectors (`core/tests/vectors/wire.json`): one or more frames for
//! every message type, edge cases of every field encoding, and invalid frames
//! with the decode error they must give.
//!
//! The test builds each message, encodes it and compares the result with the
//! committed file; `TESSERA_BLESS=1 cargo test --test wire_vectors` rewrites
//! the file instead. It then decodes every committed vector: valid frames must
//! decode to the message they were built from (and to their readable form),
//! invalid ones must fail with the stated error. `ci/verify_wire_vectors.py`
//! checks the same file independently, from the layout in `docs/PROTOCOL.md`.

use serde_json::{json, Value};
use tessera_core::limits::{
    CHUNK_SIZE, MAX_BODY, MAX_BUFFERS, MAX_ENTRY_POINT, MAX_FRAME, MAX_PUSH_CONSTANTS,
    MAX_SPEC_CONSTANTS,
};
use tessera_core::merkle::{empty_root, leaf_hash};
use tessera_core::wire::{
    Batching, BufferSpec, Cancel, Chunk, Completed, DeclineReason, DecodeError, ErrorMsg,
    FailReason, Failed, Goodbye, GoodbyeReason, Heartbeat, Hello, JobAssign, JobOffer, JobRef,
    KernelSpec, Message, MessageType, OfferAccept, OfferDecline, Progress, ReceiptMsg,
    Requirements, ResultRefuse, Usage, UsageReport, Welcome, MAGIC, WIRE_VERSION,
};

const VECTORS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/wire.json");

// ----- deterministic test data -----------------------------------------------

/// `len` bytes of a fixed pattern that depends on `seed`.
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ ((i >> 8) as u8))
        .collect()
}

fn array<const N: usize>(seed: u8) -> [u8; N] {
    let mut a = [0u8; N];
    a.copy_from_slice(&pattern(N, seed));
    a
}

/// Test data lives for the whole test run; messages borrow it.
fn leak(v: Vec<u8>) -> &'static [u8] {
    Box::leak(v.into_boxed_slice())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    assert!(s.len() % 2 == 0, "odd-length hex");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex digit"))
        .collect()
}

// ----- the valid vectors ---------------------------------------------------------

fn chunk(job: u64, stream: u8, index: u32, data: &'static [u8]) -> Chunk<'static> {
    Chunk {
        job,
        stream,
        index,
        digest: leaf_hash(data),
        data,
    }
}

fn entry_point(s: &str) -> tessera_core::bounded::BoundedString<MAX_ENTRY_POINT> {
    let mut e = tessera_core::bounded::BoundedString::new();
    e.push_str(s).expect("entry point fits");
    e
}

fn assign_minimal() -> JobAssign {
    let mut buffers = tessera_core::bounded::BoundedVec::new();
    buffers
        .push(BufferSpec {
            binding: 0,
            len: 4096,
            init_len: 4096,
            readback: true,
        })
        .unwrap();
    JobAssign {
        job: 7,
        requester_nonce: array(0xA0),
        kernel: KernelSpec {
            len: 1024,
            root: array(0xB0),
            entry_point: entry_point("main"),
            specialization: tessera_core::bounded::BoundedVec::new(),
            push_constants: tessera_core::bounded::BoundedVec::new(),
            grid: [64, 1, 1],
        },
        buffers,
        inputs_root: array(0xC0),
        sealing: None,
    }
}

/// Every collection at its capacity.
fn assign_full() -> JobAssign {
    let name: String = (0..MAX_ENTRY_POINT)
        .map(|i| (b'a' + (i % 26) as u8) as char)
        .collect();
    let specialization = (0..MAX_SPEC_CONSTANTS as u32)
        .map(|i| match i {
            0 => (0, 0),
            1 => (127, 128),
            2 => (16_383, 16_384),
            3 => (u32::MAX, u32::MAX),
            _ => (i, i.wrapping_mul(0x0101_0101)),
        })
        .collect::<Vec<_>>()
        .as_slice()
        .try_into()
        .expect("fits");
    let buffers = (0..MAX_BUFFERS as u64)
        .map(|i| BufferSpec {
            // Bindings with gaps, up to the last one allowed (31).
            binding: 4 * i as u32 + 3,
            len: match i {
                7 => u64::MAX,
                _ => (i + 1) << (7 * i),
            },
            init_len: if i % 2 == 0 { (i + 1) << (7 * i) } else { 0 },
            readback: i % 3 != 1,
        })
        .collect::<Vec<_>>()
        .as_slice()
        .try_into()
        .expect("fits");
    JobAssign {
        job: u64::MAX,
        requester_nonce: array(0xA1),
        kernel: KernelSpec {
            len: u32::MAX,
            root: array(0xB1),
            entry_point: entry_point(&name),
            specialization,
            push_constants: tessera_core::bounded::BoundedVec::from_slice(&pattern(
                MAX_PUSH_CONSTANTS,
                0x11,
            ))
            .unwrap(),
            grid: [u32::MAX, 65_535, 1],
        },
        buffers,
        inputs_root: array(0xC1),
        sealing: None,
    }
}

/// Two buffers at bindings 0 and 2, binding 1 unused: the layout of a kernel
/// whose bindings have a gap.
fn assign_binding_gap() -> JobAssign {
    let mut a = assign_minimal();
    a.job = 8;
    a.buffers = [(0, 4096, 4096, false), (2, 4096, 0, true)]
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
        .expect("fits");
    a
}

/// A binding of `u32::MAX`: a five-byte varint. The decoder takes it; the
/// provider refuses the assignment (bindings are below 32).
fn assign_binding_u32_max() -> JobAssign {
    let mut a = assign_minimal();
    a.job = 9;
    a.buffers[0].binding = u32::MAX;
    a
}

/// A sealed job (protocol version 3): `JobAssign`'s fields (four bytes of
/// push constants sealed: 20), then how the job is sealed: a sealed kernel
/// and the sealed result key.
fn assign_sealed() -> JobAssign {
    let mut a = assign_minimal();
    a.job = 10;
    a.kernel.push_constants =
        tessera_core::bounded::BoundedVec::from_slice(&pattern(20, 0x61)).unwrap();
    a.sealing = Some(tessera_core::wire::Sealing {
        enc: [0xE1; 32],
        requester_key: [0xE2; 32],
        kernel_sealed: true,
        result_key: [0xE3; 32],
        result_key_tag: [0xE4; 16],
    });
    a
}

/// A body without buffers: valid on the wire (the agent would refuse it as an
/// assignment only if it broke the offer or the limits; it does not).
fn assign_no_buffers() -> JobAssign {
    JobAssign {
        job: 128,
        requester_nonce: [0; 32],
        kernel: KernelSpec {
            len: 4,
            root: leaf_hash(&[0x03, 0x02, 0x23, 0x07]),
            entry_point: entry_point("k"),
            specialization: tessera_core::bounded::BoundedVec::new(),
            push_constants: tessera_core::bounded::BoundedVec::new(),
            grid: [1, 1, 1],
        },
        buffers: tessera_core::bounded::BoundedVec::new(),
        inputs_root: empty_root(),
        sealing: None,
    }
}

fn valid() -> Vec<(&'static str, Message<'static>)> {
    use Message as M;
    let mut v: Vec<(&'static str, Message<'static>)> = vec![
        (
            "hello",
            M::Hello(Hello {
                min_version: 1,
                max_version: 1,
                agent_version: [0, 1, 0],
                key_id: array(0x10),
                next_sequence: 4,
                prev_hash: array(0x30),
            }),
        ),
        (
            "hello_varint_boundaries",
            M::Hello(Hello {
                min_version: 127,
                max_version: 128,
                agent_version: [16_383, 16_384, u16::MAX],
                key_id: [0xFF; 16],
                next_sequence: u64::MAX,
                prev_hash: [0xFF; 32],
            }),
        ),
        (
            "welcome",
            M::Welcome(Welcome {
                version: 1,
                challenge: array(0x20),
                heartbeat_ms: 5000,
            }),
        ),
        (
            "welcome_heartbeat_default",
            M::Welcome(Welcome {
                version: 1,
                challenge: [0; 32],
                heartbeat_ms: 0,
            }),
        ),
        (
            "welcome_u32_max",
            M::Welcome(Welcome {
                version: u16::MAX,
                challenge: [0xFF; 32],
                heartbeat_ms: u32::MAX,
            }),
        ),
        (
            "evidence_short",
            M::Evidence(tessera_core::wire::Blob {
                bytes: leak(pattern(100, 0x30)),
            }),
        ),
        (
            "evidence_length_two_byte_varint",
            M::Evidence(tessera_core::wire::Blob {
                bytes: leak(pattern(300, 0x31)),
            }),
        ),
        (
            "evidence_empty",
            M::Evidence(tessera_core::wire::Blob { bytes: &[] }),
        ),
        ("ready", M::Ready),
        (
            "batching",
            M::Batching(Batching {
                max_receipts: 64,
                max_delay_us: 2_000,
            }),
        ),
        (
            "batching_off",
            M::Batching(Batching {
                max_receipts: 0,
                max_delay_us: 0,
            }),
        ),
        (
            "batching_varint_boundaries",
            M::Batching(Batching {
                max_receipts: u16::MAX,
                max_delay_us: u32::MAX,
            }),
        ),
        (
            "job_offer",
            M::JobOffer(JobOffer {
                job: 1,
                requirements: Requirements {
                    memory_mib: 512,
                    features: 0b0010_0001,
                },
                est_gpu_ms: 250,
                bytes_in: 1 << 20,
                bytes_out: 65_536,
                max_price: 10_000,
                deadline_ms: 30_000,
            }),
        ),
        (
            "job_offer_zero",
            M::JobOffer(JobOffer {
                job: 0,
                requirements: Requirements::default(),
                est_gpu_ms: 0,
                bytes_in: 0,
                bytes_out: 0,
                max_price: 0,
                deadline_ms: 0,
            }),
        ),
        (
            "job_offer_max",
            M::JobOffer(JobOffer {
                job: u64::MAX,
                requirements: Requirements {
                    memory_mib: u32::MAX,
                    features: u32::MAX,
                },
                est_gpu_ms: u32::MAX,
                bytes_in: u64::MAX,
                bytes_out: u64::MAX,
                max_price: u64::MAX,
                deadline_ms: u32::MAX,
            }),
        ),
        (
            "offer_accept",
            M::OfferAccept(OfferAccept {
                job: 127,
                price: 128,
            }),
        ),
        (
            "offer_accept_varint_boundaries",
            M::OfferAccept(OfferAccept {
                job: 16_383,
                price: 16_384,
            }),
        ),
    ];
    let reasons = [
        ("offer_decline_price_too_low", DeclineReason::PriceTooLow),
        ("offer_decline_at_capacity", DeclineReason::AtCapacity),
        ("offer_decline_unsupported", DeclineReason::Unsupported),
        (
            "offer_decline_deadline_too_short",
            DeclineReason::DeadlineTooShort,
        ),
        ("offer_decline_draining", DeclineReason::Draining),
        ("offer_decline_too_large", DeclineReason::TooLarge),
        ("offer_decline_duplicate_job", DeclineReason::DuplicateJob),
        ("offer_decline_unavailable", DeclineReason::Unavailable),
    ];
    for (name, reason) in reasons {
        v.push((name, M::OfferDecline(OfferDecline { job: 2, reason })));
    }
    v.extend([
        ("job_assign_minimal", M::JobAssign(assign_minimal())),
        ("job_assign_full", M::JobAssign(assign_full())),
        ("job_assign_no_buffers", M::JobAssign(assign_no_buffers())),
        ("job_assign_binding_gap", M::JobAssign(assign_binding_gap())),
        (
            "job_assign_binding_u32_max",
            M::JobAssign(assign_binding_u32_max()),
        ),
        ("sealed_job_assign", M::JobAssign(assign_sealed())),
        (
            "input_chunk_kernel",
            M::InputChunk(chunk(7, 0, 0, &[0x03, 0x02, 0x23, 0x07])),
        ),
        (
            "input_chunk_max_size",
            M::InputChunk(chunk(7, 1, 3, leak(pattern(CHUNK_SIZE, 0x40)))),
        ),
        (
            "input_chunk_tail",
            M::InputChunk(chunk(7, 8, 200, leak(pattern(1000, 0x41)))),
        ),
        ("input_chunk_empty_data", M::InputChunk(chunk(0, 0, 0, &[]))),
        ("started", M::Started(JobRef { job: 7 })),
        (
            "progress_zero",
            M::Progress(Progress {
                job: 7,
                permille: 0,
            }),
        ),
        (
            "progress_done",
            M::Progress(Progress {
                job: 7,
                permille: 1000,
            }),
        ),
        (
            "output_chunk",
            M::OutputChunk(chunk(7, 0, 0, leak(pattern(64, 0x50)))),
        ),
        (
            "output_chunk_max_size",
            M::OutputChunk(chunk(
                u64::MAX,
                7,
                u32::MAX,
                leak(pattern(CHUNK_SIZE, 0x51)),
            )),
        ),
        (
            "completed",
            M::Completed(Completed {
                job: 7,
                output_len: 4096,
                output_root: array(0x60),
            }),
        ),
        (
            "completed_no_outputs",
            M::Completed(Completed {
                job: 7,
                output_len: 0,
                output_root: empty_root(),
            }),
        ),
    ]);
    let fails = [
        ("failed_kernel_rejected", FailReason::KernelRejected, 3),
        ("failed_timeout", FailReason::Timeout, 0),
        ("failed_deadline_exceeded", FailReason::DeadlineExceeded, 0),
        ("failed_device_lost", FailReason::DeviceLost, 0),
        ("failed_out_of_memory", FailReason::OutOfMemory, 0),
        ("failed_input_integrity", FailReason::InputIntegrity, 9),
        ("failed_host", FailReason::Host, u32::MAX),
    ];
    for (name, reason, detail) in fails {
        v.push((
            name,
            M::Failed(Failed {
                job: 7,
                reason,
                detail,
            }),
        ));
    }
    v.extend([
        (
            "usage_report",
            M::UsageReport(UsageReport {
                job: 7,
                usage: Usage {
                    gpu_time_us: 1234,
                    dispatches: 1,
                    bytes_in: 5120,
                    bytes_out: 4096,
                },
                price: 150,
            }),
        ),
        (
            "usage_report_max",
            M::UsageReport(UsageReport {
                job: u64::MAX,
                usage: Usage {
                    gpu_time_us: u64::MAX,
                    dispatches: u32::MAX,
                    bytes_in: u64::MAX,
                    bytes_out: u64::MAX,
                },
                price: u64::MAX,
            }),
        ),
        (
            "receipt",
            M::Receipt(ReceiptMsg {
                job: 7,
                bytes: leak(pattern(400, 0x70)),
            }),
        ),
        ("result_ack", M::ResultAck(JobRef { job: 7 })),
        (
            "cancel",
            M::Cancel(Cancel {
                job: 7,
                reason: 300,
            }),
        ),
        (
            "result_refuse",
            M::ResultRefuse(ResultRefuse { job: 7, reason: 2 }),
        ),
        (
            "heartbeat",
            M::Heartbeat(Heartbeat {
                active_jobs: 1,
                capacity: 4,
            }),
        ),
        (
            "heartbeat_bytes_not_varints",
            M::Heartbeat(Heartbeat {
                active_jobs: 128,
                capacity: 255,
            }),
        ),
        ("drain", M::Drain),
        (
            "goodbye_drained",
            M::Goodbye(Goodbye {
                reason: GoodbyeReason::Drained,
            }),
        ),
        (
            "goodbye_shutdown",
            M::Goodbye(Goodbye {
                reason: GoodbyeReason::Shutdown,
            }),
        ),
        (
            "goodbye_protocol_error",
            M::Goodbye(Goodbye {
                reason: GoodbyeReason::ProtocolError,
            }),
        ),
        ("error_malformed", M::Error(ErrorMsg { code: 1, job: 0 })),
        (
            "error_chunk_digest_mismatch",
            M::Error(ErrorMsg { code: 9, job: 7 }),
        ),
    ]);
    v
}

// ----- readable form ---------------------------------------------------------------

/// The message's fields as JSON: integers as numbers, byte strings as hex,
/// enums by variant name, field names as in `core/src/wire.rs` (the form
/// `tessera_core::wire_json` writes and reads, which the C ABI's
/// `tessera_message_decode` returns).
fn readable(msg: &Message<'_>) -> Value {
    tessera_core::wire_json::to_json(msg)["fields"].clone()
}

fn encode(msg: &Message<'_>) -> Vec<u8> {
    let mut buf = vec![0u8; MAX_FRAME];
    let n = msg.encode(&mut buf).expect("vector message encodes");
    buf.truncate(n);
    buf
}

// ----- invalid frames ----------------------------------------------------------------

/// A frame with a correct header around `body`.
fn frame(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut f = header(kind, body.len() as u32);
    f.extend_from_slice(body);
    f
}

fn header(kind: u8, body_len: u32) -> Vec<u8> {
    let mut h = MAGIC.to_vec();
    h.push(WIRE_VERSION);
    h.push(kind);
    h.extend_from_slice(&body_len.to_le_bytes());
    h
}

/// A minimal postcard writer for bodies the encoder refuses to produce.
#[derive(Default)]
struct Body(Vec<u8>);

impl Body {
    fn varint(mut self, mut v: u64) -> Self {
        while v >= 0x80 {
            self.0.push(v as u8 | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
        self
    }
    fn raw(mut self, bytes: &[u8]) -> Self {
        self.0.extend_from_slice(bytes);
        self
    }
    fn bytes(self, bytes: &[u8]) -> Self {
        self.varint(bytes.len() as u64).raw(bytes)
    }
}

/// A `JobAssign` body with `spec` specialization constants, `push` bytes of
/// push constants, `buffers` buffers (buffer `i` at binding `i`, each with
/// the `readback` byte given).
fn assign_body(entry: &[u8], spec: usize, push: usize, buffers: usize, readback: u8) -> Vec<u8> {
    let mut b = Body::default()
        .varint(7)
        .raw(&[0xAA; 32])
        .varint(1024)
        .raw(&[0xBB; 32])
        .bytes(entry)
        .varint(spec as u64);
    for i in 0..spec as u64 {
        b = b.varint(i).varint(i * 1000);
    }
    b = b.bytes(&vec![0x5A; push]).varint(1).varint(1).varint(1);
    b = b.varint(buffers as u64);
    for i in 0..buffers as u64 {
        b = b.varint(i).varint(64).varint(0).raw(&[readback]);
    }
    b.raw(&[0xCC; 32]).0
}

fn invalid() -> Vec<(&'static str, Vec<u8>, DecodeError)> {
    use DecodeError as E;
    use MessageType as T;
    let ready = encode(&Message::Ready);
    let hello = encode(&valid()[0].1);
    let with_magic = |m: &[u8]| {
        let mut f = ready.clone();
        f[..2].copy_from_slice(m);
        f
    };
    let bad_magic = with_magic(b"TX");
    let bad_magic_swapped = with_magic(b"ST");
    let version = |v: u8| {
        let mut f = ready.clone();
        f[2] = v;
        f
    };
    let version_0 = version(0);
    let version_2 = version(2);
    let mut extra = ready.clone();
    extra.push(0);
    let mut short_hello = hello.clone();
    short_hello.pop();
    let hello_truncated_body = frame(T::Hello as u8, &hello[8..hello.len() - 1]);
    let big_chunk = Body::default()
        .varint(7)
        .raw(&[0])
        .varint(0)
        .raw(&leaf_hash(&pattern(CHUNK_SIZE + 1, 1)))
        .bytes(&pattern(CHUNK_SIZE + 1, 1))
        .0;
    let long_entry = [b'e'; MAX_ENTRY_POINT + 1];
    vec![
        ("bad_magic", bad_magic, E::BadMagic),
        ("bad_magic_byte_order", bad_magic_swapped, E::BadMagic),
        ("bad_magic_short_frame", b"HTTP/1.1".to_vec(), E::BadMagic),
        ("unsupported_version_0", version_0, E::UnsupportedVersion(0)),
        ("unsupported_version_2", version_2, E::UnsupportedVersion(2)),
        (
            "frame_too_large_by_one",
            header(T::InputChunk as u8, MAX_BODY as u32 + 1),
            E::FrameTooLarge(MAX_BODY as u32 + 1),
        ),
        (
            "frame_too_large_u32_max",
            header(T::Ready as u8, u32::MAX),
            E::FrameTooLarge(u32::MAX),
        ),
        ("unknown_type_0x00", frame(0x00, &[]), E::UnknownType(0x00)),
        ("unknown_type_0x06", frame(0x06, &[]), E::UnknownType(0x06)),
        (
            "unknown_type_0x20",
            frame(0x20, &[1, 2]),
            E::UnknownType(0x20),
        ),
        ("unknown_type_0xff", frame(0xFF, &[]), E::UnknownType(0xFF)),
        ("incomplete_empty", Vec::new(), E::Incomplete),
        ("incomplete_header", ready[..7].to_vec(), E::Incomplete),
        ("incomplete_body", short_hello, E::Incomplete),
        (
            "incomplete_body_of_unknown_type",
            header(0x05, 4),
            E::Incomplete,
        ),
        (
            "malformed_ready_with_body",
            frame(T::Ready as u8, &[0]),
            E::Malformed(T::Ready),
        ),
        (
            "malformed_drain_with_body",
            frame(T::Drain as u8, &[0]),
            E::Malformed(T::Drain),
        ),
        ("malformed_bytes_after_frame", extra, E::Malformed(T::Ready)),
        (
            "malformed_trailing_body_byte",
            frame(T::Heartbeat as u8, &[1, 4, 0]),
            E::Malformed(T::Heartbeat),
        ),
        (
            "malformed_body_too_short",
            hello_truncated_body,
            E::Malformed(T::Hello),
        ),
        (
            "malformed_empty_body",
            frame(T::OfferAccept as u8, &[]),
            E::Malformed(T::OfferAccept),
        ),
        (
            "malformed_decline_reason_9",
            frame(T::OfferDecline as u8, &[2, 9]),
            E::Malformed(T::OfferDecline),
        ),
        (
            "malformed_fail_reason_0",
            frame(T::Failed as u8, &[7, 0, 0]),
            E::Malformed(T::Failed),
        ),
        (
            "malformed_goodbye_reason_4",
            frame(T::Goodbye as u8, &[4]),
            E::Malformed(T::Goodbye),
        ),
        (
            "malformed_bool_2",
            frame(T::JobAssign as u8, &assign_body(b"main", 0, 0, 1, 2)),
            E::Malformed(T::JobAssign),
        ),
        (
            "malformed_u16_over_max",
            frame(T::Progress as u8, &[7, 0xFF, 0xFF, 0x04]),
            E::Malformed(T::Progress),
        ),
        (
            "malformed_u16_varint_too_long",
            frame(T::Progress as u8, &[7, 0x80, 0x80, 0x80, 0x00]),
            E::Malformed(T::Progress),
        ),
        (
            "malformed_u32_over_max",
            frame(
                T::Welcome as u8,
                &Body::default()
                    .varint(1)
                    .raw(&[0; 32])
                    .raw(&[0xFF, 0xFF, 0xFF, 0xFF, 0x10])
                    .0,
            ),
            E::Malformed(T::Welcome),
        ),
        (
            "malformed_u64_over_max",
            frame(
                T::Started as u8,
                &[0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x02],
            ),
            E::Malformed(T::Started),
        ),
        (
            "malformed_blob_length_past_end",
            frame(T::Evidence as u8, &[5, 1, 2]),
            E::Malformed(T::Evidence),
        ),
        (
            "malformed_entry_point_too_long",
            frame(T::JobAssign as u8, &assign_body(&long_entry, 0, 0, 1, 1)),
            E::Malformed(T::JobAssign),
        ),
        (
            "malformed_entry_point_not_utf8",
            frame(T::JobAssign as u8, &assign_body(&[0x6D, 0xFF], 0, 0, 1, 1)),
            E::Malformed(T::JobAssign),
        ),
        (
            "malformed_too_many_spec_constants",
            frame(
                T::JobAssign as u8,
                &assign_body(b"main", MAX_SPEC_CONSTANTS + 1, 0, 1, 1),
            ),
            E::Malformed(T::JobAssign),
        ),
        (
            "malformed_too_many_push_constant_bytes",
            frame(
                T::JobAssign as u8,
                &assign_body(b"main", 0, MAX_PUSH_CONSTANTS + 1, 1, 1),
            ),
            E::Malformed(T::JobAssign),
        ),
        (
            "malformed_too_many_buffers",
            frame(
                T::JobAssign as u8,
                &assign_body(b"main", 0, 0, MAX_BUFFERS + 1, 1),
            ),
            E::Malformed(T::JobAssign),
        ),
        (
            "malformed_input_chunk_over_chunk_size",
            frame(T::InputChunk as u8, &big_chunk),
            E::Malformed(T::InputChunk),
        ),
        (
            "malformed_output_chunk_over_chunk_size",
            frame(T::OutputChunk as u8, &big_chunk),
            E::Malformed(T::OutputChunk),
        ),
    ]
}

/// The name used in the vectors for a decode error.
fn error_name(e: &DecodeError) -> &'static str {
    match e {
        DecodeError::Incomplete => "Incomplete",
        DecodeError::BadMagic => "BadMagic",
        DecodeError::UnsupportedVersion(_) => "UnsupportedVersion",
        DecodeError::FrameTooLarge(_) => "FrameTooLarge",
        DecodeError::UnknownType(_) => "UnknownType",
        DecodeError::Malformed(_) => "Malformed",
        other => panic!("no vector name for {other:?}"),
    }
}

// ----- the file --------------------------------------------------------------------

fn string(s: &str) -> String {
    serde_json::to_string(s).unwrap()
}

/// The vector file's text: one object per vector, keys in a fixed order.
fn render() -> String {
    let mut entries = Vec::new();
    for (name, msg) in valid() {
        let kind = msg.kind();
        entries.push(format!(
            "  {{\n    \"name\": {},\n    \"type\": {},\n    \"type_code\": {},\n    \
             \"readable\": {},\n    \"hex\": {}\n  }}",
            string(name),
            string(&format!("{kind:?}")),
            kind as u8,
            serde_json::to_string(&readable(&msg)).unwrap(),
            string(&hex(&encode(&msg))),
        ));
    }
    for (name, bytes, error) in invalid() {
        entries.push(format!(
            "  {{\n    \"name\": {},\n    \"hex\": {},\n    \"expect_error\": {}\n  }}",
            string(name),
            string(&hex(&bytes)),
            string(error_name(&error)),
        ));
    }
    format!("[\n{}\n]\n", entries.join(",\n"))
}

fn blessing() -> bool {
    std::env::var_os("TESSERA_BLESS").is_some_and(|v| v == "1")
}

#[test]
fn vectors_match_the_encoder() {
    let text = render();
    if blessing() {
        std::fs::create_dir_all(std::path::Path::new(VECTORS).parent().unwrap()).unwrap();
        std::fs::write(VECTORS, &text).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(VECTORS).unwrap_or_default();
    assert!(
        committed == text,
        "{VECTORS} differs from what the encoder produces; \
         if the change is intended, rerun with TESSERA_BLESS=1 and review the diff"
    );
}

#[test]
fn committed_vectors_decode() {
    // While blessing, the file may be being rewritten by the other test.
    let text = if blessing() {
        render()
    } else {
        std::fs::read_to_string(VECTORS).expect("vector file present")
    };
    let vectors: Vec<Value> = serde_json::from_str(&text).expect("vector file is JSON");
    let built = valid();
    let bad = invalid();
    let mut types_seen = std::collections::BTreeSet::new();
    for v in &vectors {
        let name = v["name"].as_str().expect("name");
        let bytes = unhex(v["hex"].as_str().expect("hex"));
        let decoded = Message::decode(&bytes);
        if let Some(expected) = v.get("expect_error") {
            let err = decoded.expect_err(name);
            assert_eq!(error_name(&err), expected.as_str().unwrap(), "{name}");
            let (_, _, exact) = bad.iter().find(|b| b.0 == name).expect(name);
            assert_eq!(&err, exact, "{name}");
            continue;
        }
        let msg = decoded.unwrap_or_else(|e| panic!("{name}: {e:?}"));
        let (_, original) = built.iter().find(|b| b.0 == name).expect(name);
        assert_eq!(&msg, original, "{name}");
        assert_eq!(readable(&msg), v["readable"], "{name}");
        // And the readable form encodes back to the frame, byte for byte.
        let again = tessera_core::wire_json::encode_json(&json!({
            "type": v["type"],
            "fields": v["readable"],
        }));
        assert_eq!(again.as_deref(), Ok(bytes.as_slice()), "{name}");
        assert_eq!(format!("{:?}", msg.kind()), v["type"], "{name}");
        assert_eq!(msg.kind() as u8 as u64, v["type_code"], "{name}");
        types_seen.insert(msg.kind() as u8);
    }
    // Every message type has at least one vector.
    let all = (0..=255u8).filter(|&c| MessageType::from_u8(c).is_some());
    assert!(
        all.eq(types_seen.into_iter()),
        "a message type lacks a vector"
    );
}

/// The hand-written bodies used for invalid frames follow the same layout as
/// the encoder: with valid values they encode to the encoder's bytes.
#[test]
fn hand_written_bodies_match_the_encoder() {
    let mut spec = assign_minimal();
    spec.job = 7;
    spec.requester_nonce = [0xAA; 32];
    spec.kernel.root = [0xBB; 32];
    spec.kernel.grid = [1, 1, 1];
    spec.kernel.specialization = (0..3)
        .map(|i| (i, i * 1000))
        .collect::<Vec<_>>()
        .as_slice()
        .try_into()
        .expect("fits");
    spec.kernel.push_constants = tessera_core::bounded::BoundedVec::from_slice(&[0x5A; 5]).unwrap();
    spec.buffers = (0..2)
        .map(|binding| BufferSpec {
            binding,
            len: 64,
            init_len: 0,
            readback: true,
        })
        .collect::<Vec<_>>()
        .as_slice()
        .try_into()
        .expect("fits");
    spec.inputs_root = [0xCC; 32];
    let encoded = encode(&Message::JobAssign(spec));
    assert_eq!(encoded[8..], assign_body(b"main", 3, 5, 2, 1)[..]);
}
