//! The wire format: frames and messages (`docs/PROTOCOL.md`, "Frames").
//!
//! A frame is an 8-byte header followed by a postcard-encoded body:
//!
//! | offset | size | field                                          |
//! |--------|------|------------------------------------------------|
//! | 0      | 2    | magic `"TS"` (0x54 0x53)                       |
//! | 2      | 1    | wire version, [`WIRE_VERSION`]                  |
//! | 3      | 1    | message type, [`MessageType`]                   |
//! | 4      | 4    | body length, u32 little-endian, ≤ [`MAX_BODY`]  |
//!
//! Decoding borrows chunk data and blobs from the input, so it never copies or
//! allocates.

use crate::bounded::{BoundedString, BoundedVec};
use serde::{Deserialize, Serialize};

use crate::limits::{
    HEADER_LEN, MAX_BODY, MAX_BUFFERS, MAX_ENTRY_POINT, MAX_FRAME, MAX_PUSH_CONSTANTS,
    MAX_SPEC_CONSTANTS,
};

/// Frame magic, the ASCII letters "TS".
pub const MAGIC: [u8; 2] = *b"TS";
/// Version of the frame layer. A frame with another version is refused.
pub const WIRE_VERSION: u8 = 1;
/// Protocol versions this agent speaks (negotiated in `Hello`/`Welcome`).
pub const PROTOCOL_VERSION_MIN: u16 = 1;
/// Highest protocol version this agent speaks.
pub const PROTOCOL_VERSION_MAX: u16 = 3;
/// Protocol version 2: version 1 with `Batching` (batched receipts), and
/// assignments a coordinator may send with their offer, before the answer.
pub const PROTOCOL_VERSION_2: u16 = 2;
/// Protocol version 3: version 2 with `SealedJobAssign`, jobs sealed end to
/// end between requester and provider (`docs/PROTOCOL.md`, "Sealed jobs").
pub const PROTOCOL_VERSION_3: u16 = 3;

/// A job's identifier, chosen by the coordinator. It must never repeat for a
/// provider key: results outlive sessions and restarts, and receipts name it.
pub type JobId = u64;
/// A SHA-256 digest.
pub type Digest = [u8; 32];
/// A 32-byte random challenge or requester nonce.
pub type Nonce = [u8; 32];
/// A key identifier: the first 16 bytes of SHA-256 over a domain tag and the
/// public key (see `attest::key_id`).
pub type KeyId = [u8; 16];

/// Why a frame or message could not be decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeError {
    /// Fewer bytes than the header announces; wait for more.
    Incomplete,
    /// The first two bytes are not `"TS"`: the stream is not Tessera, or lost sync.
    BadMagic,
    /// The frame layer version is not [`WIRE_VERSION`].
    UnsupportedVersion(u8),
    /// The header announces a body larger than [`MAX_BODY`].
    FrameTooLarge(u32),
    /// The message type byte names no message.
    UnknownType(u8),
    /// The body does not decode as the message its type names, or has
    /// trailing bytes, or breaks a field limit.
    Malformed(MessageType),
}

/// Why a message could not be encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum EncodeError {
    /// The output buffer is smaller than the frame.
    BufferTooSmall,
    /// The message is larger than [`MAX_FRAME`] (a chunk over `CHUNK_SIZE`, say).
    TooLarge,
}

/// A frame header, decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// The message type byte (not yet checked against [`MessageType`]).
    pub kind: u8,
    /// Body length in bytes.
    pub body_len: u32,
}

impl Header {
    /// Decodes a header from the first [`HEADER_LEN`] bytes of `bytes`.
    pub fn decode(bytes: &[u8]) -> Result<Header, DecodeError> {
        let head = bytes.get(..HEADER_LEN).ok_or(DecodeError::Incomplete)?;
        if head[0..2] != MAGIC {
            return Err(DecodeError::BadMagic);
        }
        if head[2] != WIRE_VERSION {
            return Err(DecodeError::UnsupportedVersion(head[2]));
        }
        let body_len = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
        if body_len as usize > MAX_BODY {
            return Err(DecodeError::FrameTooLarge(body_len));
        }
        Ok(Header {
            kind: head[3],
            body_len,
        })
    }

    /// Total frame length, header included.
    pub fn frame_len(&self) -> usize {
        HEADER_LEN + self.body_len as usize
    }
}

macro_rules! message_types {
    ($($(#[$doc:meta])* $name:ident = $code:literal, $dir:ident;)*) => {
        /// The message type byte of a frame header.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub enum MessageType {
            $($(#[$doc])* $name = $code,)*
        }

        impl MessageType {
            /// The type for a header byte, if it names one.
            pub fn from_u8(code: u8) -> Option<MessageType> {
                match code {
                    $($code => Some(MessageType::$name),)*
                    _ => None,
                }
            }

            /// Who may send this message.
            pub fn direction(self) -> Direction {
                match self {
                    $(MessageType::$name => Direction::$dir,)*
                }
            }
        }
    };
}

message_types! {
    /// Provider opens the session.
    Hello = 0x01, ToCoordinator;
    /// Coordinator picks the version and sends the challenge.
    Welcome = 0x02, ToProvider;
    /// Provider's signed device evidence.
    Evidence = 0x03, ToCoordinator;
    /// Coordinator verified the evidence; the provider may take jobs.
    Ready = 0x04, ToProvider;
    /// Coordinator sets when the provider signs receipts in batches
    /// (protocol version 2 and later).
    Batching = 0x05, ToProvider;
    /// A job offer.
    JobOffer = 0x10, ToProvider;
    /// Provider accepts an offer at a price.
    OfferAccept = 0x11, ToCoordinator;
    /// Provider declines an offer, with a reason.
    OfferDecline = 0x12, ToCoordinator;
    /// The accepted job's kernel, parameters and buffer layout.
    JobAssign = 0x13, ToProvider;
    /// A chunk of the kernel or of an input buffer.
    InputChunk = 0x14, ToProvider;
    /// A `JobAssign` whose job is sealed end to end, with how it is sealed
    /// (protocol version 3 and later).
    SealedJobAssign = 0x1F, ToProvider;
    /// Provider started the kernel.
    Started = 0x15, ToCoordinator;
    /// Provider's progress on a running job.
    Progress = 0x16, ToCoordinator;
    /// A chunk of an output buffer.
    OutputChunk = 0x17, ToCoordinator;
    /// Provider finished the job; outputs have been sent.
    Completed = 0x18, ToCoordinator;
    /// Provider could not run the job.
    Failed = 0x19, ToCoordinator;
    /// Metered usage and the price charged.
    UsageReport = 0x1A, ToCoordinator;
    /// The job's signed receipt.
    Receipt = 0x1B, ToCoordinator;
    /// Coordinator holds the outputs and receipt; the provider may forget them.
    ResultAck = 0x1C, ToProvider;
    /// Coordinator withdraws a job.
    Cancel = 0x1D, ToProvider;
    /// Coordinator will not accept a result whose receipt it verified; the
    /// provider may forget it.
    ResultRefuse = 0x1E, ToProvider;
    /// Liveness, with the provider's load.
    Heartbeat = 0x30, Both;
    /// From the coordinator: please drain. From the provider: draining now.
    Drain = 0x31, Both;
    /// The sender is closing the session.
    Goodbye = 0x32, Both;
    /// The sender refused a frame or hit a protocol error.
    Error = 0x3F, Both;
}

/// Which peer may send a message type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Coordinator to provider only.
    ToProvider,
    /// Provider to coordinator only.
    ToCoordinator,
    /// Either peer.
    Both,
}

/// Provider's opening message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// Lowest protocol version the provider speaks.
    pub min_version: u16,
    /// Highest protocol version the provider speaks.
    pub max_version: u16,
    /// Agent software version: major, minor, patch.
    pub agent_version: [u16; 3],
    /// The provider's signing key identifier.
    pub key_id: KeyId,
    /// Sequence number the provider's next receipt will carry (1 before
    /// the first). The evidence signs the same position.
    pub next_sequence: u64,
    /// Hash of the provider's last signed receipt (zeros before the first).
    pub prev_hash: Digest,
}

/// Coordinator's answer to `Hello`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Welcome {
    /// The chosen protocol version, within the provider's range.
    pub version: u16,
    /// Fresh random nonce the provider's evidence must be signed over.
    pub challenge: Nonce,
    /// Heartbeat interval the coordinator asks for, in milliseconds (0: the
    /// provider's own setting).
    pub heartbeat_ms: u32,
}

/// When the provider signs receipts in batches (`docs/PROTOCOL.md`,
/// "Batched receipts"). Protocol version 2 and later.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Batching {
    /// The most receipts one batch signature covers; 0 or 1 turn batching
    /// off. The provider may sign smaller batches, never larger ones.
    pub max_receipts: u16,
    /// The longest a result may wait for its batch's signature, in
    /// microseconds, from the moment its job ended.
    pub max_delay_us: u32,
}

/// Writes borrowed bytes as one byte string. In postcard that is the same
/// encoding as a sequence of `u8` (a varint length, then the bytes), which
/// serde's `[u8]` would write one byte at a time: a chunk's 8 KiB in one
/// copy instead of 8,192 calls.
fn byte_string<S: serde::Serializer>(bytes: &&[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_bytes(bytes)
}

/// A signed blob (evidence or receipt), borrowed from the frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Blob<'a> {
    /// The COSE_Sign1 bytes (`docs/PROTOCOL.md`, "Attestation").
    #[serde(borrow, serialize_with = "byte_string")]
    pub bytes: &'a [u8],
}

/// A message that names only a job.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobRef {
    /// The job.
    pub job: JobId,
}

/// What a job needs from the device.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Requirements {
    /// Device memory the job needs, in MiB.
    pub memory_mib: u32,
    /// Device features the job needs: a set of [`features`] bits.
    pub features: u32,
}

/// Device feature bits used in [`Requirements::features`] and in evidence.
pub mod features {
    /// 16-bit floats in shaders.
    pub const FLOAT16: u32 = 1 << 0;
    /// 64-bit floats in shaders.
    pub const FLOAT64: u32 = 1 << 1;
    /// 8-bit integers in shaders.
    pub const INT8: u32 = 1 << 2;
    /// 64-bit integers in shaders.
    pub const INT64: u32 = 1 << 3;
    /// Subgroup arithmetic in compute shaders.
    pub const SUBGROUP_ARITHMETIC: u32 = 1 << 4;
    /// Robust buffer access (out-of-bounds accesses are contained).
    pub const ROBUST_BUFFER_ACCESS: u32 = 1 << 5;
    /// VK_EXT_robustness2 robustBufferAccess2.
    pub const ROBUST_BUFFER_ACCESS_2: u32 = 1 << 6;
}

/// A job offer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobOffer {
    /// The job.
    pub job: JobId,
    /// What the job needs from the device.
    pub requirements: Requirements,
    /// The requester's estimate of GPU time, in milliseconds.
    pub est_gpu_ms: u32,
    /// Bytes the provider will receive (kernel and inputs).
    pub bytes_in: u64,
    /// Bytes the provider will return (outputs).
    pub bytes_out: u64,
    /// The most the requester pays, in the network's smallest price unit.
    pub max_price: u64,
    /// Time from the offer until the result is due, in milliseconds.
    pub deadline_ms: u32,
}

/// Provider accepts an offer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OfferAccept {
    /// The job.
    pub job: JobId,
    /// The provider's price for the job (≤ the offer's `max_price`).
    pub price: u64,
}

/// Defines a reason code: an enum that travels as one byte holding its
/// documented value (not postcard's variant index), so that the wire byte, the
/// docs and receipts agree; an unknown byte does not decode.
macro_rules! wire_code {
    ($(#[$doc:meta])* pub enum $name:ident {
        $($(#[$vdoc:meta])* $variant:ident = $code:literal,)*
    }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        #[repr(u8)]
        pub enum $name {
            $($(#[$vdoc])* $variant = $code,)*
        }

        impl $name {
            /// The variant for a wire byte, if it names one.
            pub fn from_u8(code: u8) -> Option<$name> {
                match code {
                    $($code => Some($name::$variant),)*
                    _ => None,
                }
            }
        }

        impl Serialize for $name {
            fn serialize<Ser: serde::Serializer>(&self, s: Ser) -> Result<Ser::Ok, Ser::Error> {
                s.serialize_u8(*self as u8)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<$name, D::Error> {
                let code = u8::deserialize(d)?;
                $name::from_u8(code).ok_or_else(|| {
                    <D::Error as serde::de::Error>::custom(concat!("unknown ", stringify!($name)))
                })
            }
        }
    };
}

wire_code! {
    /// Why a provider declines an offer.
    ///
    /// On the wire it is one byte holding the `= n` value below (the same
    /// value receipts use).
    pub enum DeclineReason {
        /// The offer's `max_price` is below the provider's price.
        PriceTooLow = 1,
        /// The provider is running as many jobs as it takes.
        AtCapacity = 2,
        /// The device lacks a feature or the memory the job needs.
        Unsupported = 3,
        /// The deadline is shorter than the estimated GPU time.
        DeadlineTooShort = 4,
        /// The provider is draining and takes no new jobs.
        Draining = 5,
        /// The transfer sizes exceed what the provider takes.
        TooLarge = 6,
        /// The job id is already in use on this provider.
        DuplicateJob = 7,
        /// The device is not taking work now: it is still running work
        /// abandoned after timeouts. Offer it again later, or elsewhere.
        Unavailable = 8,
    }
}

/// Provider declines an offer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OfferDecline {
    /// The job.
    pub job: JobId,
    /// Why.
    pub reason: DeclineReason,
}

/// Writes `v` as a postcard varint (LEB128) at `out[at..]`; the new end.
fn put_varint(out: &mut [u8], mut at: usize, mut v: u64) -> Option<usize> {
    loop {
        let byte = (v & 0x7F) as u8;
        v >>= 7;
        *out.get_mut(at)? = if v == 0 { byte } else { byte | 0x80 };
        at += 1;
        if v == 0 {
            return Some(at);
        }
    }
}

/// The frame of an offer's reply (`OfferAccept` with the price, or
/// `OfferDecline` with the reason), byte for byte as [`Message::encode`]
/// writes it, without serde: the frames a busy provider sends most.
pub(crate) fn encode_offer_reply(
    job: JobId,
    reply: Result<u64, DeclineReason>,
    out: &mut [u8],
) -> Result<usize, EncodeError> {
    let (kind, end) = match reply {
        Ok(price) => (
            MessageType::OfferAccept,
            put_varint(out, HEADER_LEN, job).and_then(|at| put_varint(out, at, price)),
        ),
        Err(reason) => (
            MessageType::OfferDecline,
            put_varint(out, HEADER_LEN, job).and_then(|at| {
                *out.get_mut(at)? = reason as u8;
                Some(at + 1)
            }),
        ),
    };
    let end = end.ok_or(EncodeError::BufferTooSmall)?;
    out[0..2].copy_from_slice(&MAGIC);
    out[2] = WIRE_VERSION;
    out[3] = kind as u8;
    out[4..8].copy_from_slice(&((end - HEADER_LEN) as u32).to_le_bytes());
    Ok(end)
}

/// A kernel: SPIR-V module length and Merkle root, and how to dispatch it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelSpec {
    /// SPIR-V module length in bytes.
    pub len: u32,
    /// Merkle root of the SPIR-V bytes (`docs/PROTOCOL.md`, "Merkle trees").
    pub root: Digest,
    /// Name of the GLCompute entry point.
    pub entry_point: BoundedString<MAX_ENTRY_POINT>,
    /// Specialization constants: (constant id, 32-bit value).
    pub specialization: BoundedVec<(u32, u32), MAX_SPEC_CONSTANTS>,
    /// Push constant bytes.
    pub push_constants: BoundedVec<u8, MAX_PUSH_CONSTANTS>,
    /// Workgroup counts in x, y, z.
    pub grid: [u32; 3],
}

/// A storage buffer of a job, bound at descriptor set 0, `binding`.
///
/// Buffers are numbered by their position in [`JobAssign::buffers`] (input
/// stream `i + 1`, output stream `i`); the binding only says where the kernel
/// sees the buffer, so the bindings of a job may have gaps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BufferSpec {
    /// Binding number in descriptor set 0: below
    /// [`MAX_BINDINGS`](crate::limits::MAX_BINDINGS), distinct within a job
    /// (checked when the job is assigned, not by the decoder).
    pub binding: u32,
    /// Buffer size in bytes.
    pub len: u64,
    /// Bytes of initial contents sent as input (≤ `len`; the rest is zero).
    pub init_len: u64,
    /// Whether the buffer is returned as an output after the run.
    pub readback: bool,
}

/// The accepted job's kernel, parameters and buffer layout. Input chunks follow.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobAssign {
    /// The job.
    pub job: JobId,
    /// The requester's nonce, bound into the receipt.
    pub requester_nonce: Nonce,
    /// The kernel (stream 0).
    pub kernel: KernelSpec,
    /// The buffers, each at its own binding; buffer `i` with `init_len > 0`
    /// is input stream `i + 1`, and a read-back buffer `i` is output stream `i`.
    pub buffers: BoundedVec<BufferSpec, MAX_BUFFERS>,
    /// Merkle root over the chunks of every input buffer, in buffer order.
    pub inputs_root: Digest,
    /// How the job is sealed end to end; `None` for a job in the clear.
    /// Not part of `JobAssign`'s body: a sealed job travels as
    /// `SealedJobAssign`, which is `JobAssign`'s fields, then these.
    #[serde(skip)]
    pub sealing: Option<Sealing>,
}

/// How a job is sealed end to end between its requester and the provider
/// (`docs/PROTOCOL.md`, "Sealed jobs"): the HPKE encapsulated key of the
/// context sealed to the provider's session key, the requester's key the
/// outputs are sealed to, whether the kernel is sealed too, and the sealed
/// result key. (A sealed job's push constants, if any, are sealed in
/// place, in `KernelSpec::push_constants`.)
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sealing {
    /// HPKE's encapsulated key (X25519) of the requester's context.
    pub enc: [u8; 32],
    /// The requester's X25519 public key, to which the outputs are sealed.
    pub requester_key: [u8; 32],
    /// Whether stream 0, the kernel, is sealed (inputs always are).
    pub kernel_sealed: bool,
    /// The result key, sealed as stream `u32::MAX` of the context: its 32
    /// bytes of ciphertext...
    pub result_key: [u8; 32],
    /// ...and their tag.
    pub result_key_tag: [u8; 16],
}

impl JobAssign {
    /// The kernel hash receipts bind ([`crate::attest::kernel_hash`]): the
    /// kernel, how it is dispatched, and the buffer layout it runs on; for
    /// a sealed job, how it is sealed too
    /// ([`crate::attest::sealed_kernel_hash`]).
    pub fn kernel_hash(&self) -> Digest {
        let wire = crate::attest::kernel_hash(
            &self.kernel.root,
            &self.kernel.entry_point,
            &self.kernel.specialization,
            &self.kernel.push_constants,
            self.kernel.grid,
            &self.buffers,
        );
        match &self.sealing {
            Some(sealing) => crate::attest::sealed_kernel_hash(&wire, sealing),
            None => wire,
        }
    }

    /// Number of leaves of this job's output tree
    /// ([`crate::merkle::output_leaf_count`]).
    pub fn output_leaf_count(&self) -> u64 {
        crate::merkle::output_leaf_count(&self.buffers)
    }

    /// Bytes the provider receives for this job, the kernel and every
    /// buffer's initial data (saturating): the `bytes_in` of its usage.
    pub fn bytes_in(&self) -> u64 {
        self.buffers
            .iter()
            .fold(u64::from(self.kernel.len), |sum, b| {
                sum.saturating_add(b.init_len)
            })
    }

    /// Bytes of every read-back buffer (saturating): the `output_len` of a
    /// completed job.
    pub fn bytes_out(&self) -> u64 {
        self.buffers
            .iter()
            .filter(|b| b.readback)
            .fold(0u64, |sum, b| sum.saturating_add(b.len))
    }
}

/// A chunk of a transfer stream, borrowed from the frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chunk<'a> {
    /// The job.
    pub job: JobId,
    /// Input: 0 is the kernel, `i + 1` is buffer `i`. Output: buffer index.
    pub stream: u8,
    /// Chunk index within the stream; data starts at `index * CHUNK_SIZE`.
    pub index: u32,
    /// Merkle leaf hash of `data`: SHA-256(0x00 ‖ data).
    pub digest: Digest,
    /// `CHUNK_SIZE` bytes, fewer only for a stream's last chunk.
    #[serde(borrow, serialize_with = "byte_string")]
    pub data: &'a [u8],
}

/// Provider's progress on a running job.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    /// The job.
    pub job: JobId,
    /// Progress in thousandths (0..=1000).
    pub permille: u16,
}

/// Provider finished the job and sent its outputs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Completed {
    /// The job.
    pub job: JobId,
    /// Total output bytes (all read-back buffers).
    pub output_len: u64,
    /// Merkle root over the chunks of every read-back buffer, in buffer order.
    pub output_root: Digest,
}

wire_code! {
    /// Why a job failed.
    ///
    /// On the wire it is one byte holding the `= n` value below (the same
    /// value receipts use).
    pub enum FailReason {
        /// The kernel failed validation; `detail` holds the rejection code.
        KernelRejected = 1,
        /// The kernel ran past its time limit.
        Timeout = 2,
        /// The job's deadline passed before it completed.
        DeadlineExceeded = 3,
        /// The GPU was lost while running the job.
        DeviceLost = 4,
        /// The device ran out of memory.
        OutOfMemory = 5,
        /// An input chunk or root did not match its digest.
        InputIntegrity = 6,
        /// The provider's host failed for another reason; `detail` is host-specific.
        Host = 7,
    }
}

/// Provider could not run the job.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failed {
    /// The job.
    pub job: JobId,
    /// Why.
    pub reason: FailReason,
    /// A reason-specific code (the kernel rejection code, say).
    pub detail: u32,
}

/// Metered usage of one job.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// GPU time, in microseconds, measured by GPU timestamps.
    pub gpu_time_us: u64,
    /// Dispatch commands submitted.
    pub dispatches: u32,
    /// Bytes received (kernel and inputs).
    pub bytes_in: u64,
    /// Bytes returned (outputs).
    pub bytes_out: u64,
}

/// Metered usage and the price charged for a job.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageReport {
    /// The job.
    pub job: JobId,
    /// What the job used.
    pub usage: Usage,
    /// The price charged, by the provider's price schedule.
    pub price: u64,
}

/// A job signed receipt, borrowed from the frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiptMsg<'a> {
    /// The job.
    pub job: JobId,
    /// The COSE_Sign1 receipt (`docs/PROTOCOL.md`, "Attestation").
    #[serde(borrow, serialize_with = "byte_string")]
    pub bytes: &'a [u8],
}

/// Why the coordinator cancels a job.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cancel {
    /// The job.
    pub job: JobId,
    /// A coordinator-defined reason code, passed to the host.
    pub reason: u16,
}

/// The coordinator will not accept a result: its receipt verified and
/// links into the provider's chain, but the result breaks a rule (a price
/// against the rules, outputs that do not match the signed root, say).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResultRefuse {
    /// The job.
    pub job: JobId,
    /// A coordinator-defined reason code, passed to the host as is.
    pub reason: u16,
}

/// Liveness, with the sender's load.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    /// Jobs in flight on the sender (0 from a coordinator).
    pub active_jobs: u8,
    /// Jobs the sender takes at once: the provider's `max_concurrent`, or 0
    /// while its device is unavailable (0 from a coordinator).
    pub capacity: u8,
}

wire_code! {
    /// Why a peer says goodbye.
    ///
    /// On the wire it is one byte holding the `= n` value below (the same
    /// value receipts use).
    pub enum GoodbyeReason {
        /// Drained: nothing is in flight.
        Drained = 1,
        /// Shutting down.
        Shutdown = 2,
        /// A protocol error ended the session.
        ProtocolError = 3,
    }
}

/// The sender is closing the session.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Goodbye {
    /// Why.
    pub reason: GoodbyeReason,
}

/// The sender refused a frame or hit a protocol error.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorMsg {
    /// An [`crate::error::ErrorCode`] value.
    pub code: u16,
    /// The job concerned, or 0.
    pub job: JobId,
}

/// Any protocol message. (`JobAssign` is the large one; without an allocator
/// it cannot be boxed, and messages live on the stack only briefly.)
#[allow(missing_docs, clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message<'a> {
    Hello(Hello),
    Welcome(Welcome),
    Evidence(Blob<'a>),
    Ready,
    Batching(Batching),
    JobOffer(JobOffer),
    OfferAccept(OfferAccept),
    OfferDecline(OfferDecline),
    JobAssign(JobAssign),
    InputChunk(Chunk<'a>),
    Started(JobRef),
    Progress(Progress),
    OutputChunk(Chunk<'a>),
    Completed(Completed),
    Failed(Failed),
    UsageReport(UsageReport),
    Receipt(ReceiptMsg<'a>),
    ResultAck(JobRef),
    Cancel(Cancel),
    ResultRefuse(ResultRefuse),
    Heartbeat(Heartbeat),
    Drain,
    Goodbye(Goodbye),
    Error(ErrorMsg),
}

/// The body of a `kind` frame as that message's struct: what
/// [`Message::decode_body`] puts in the variant, without the enum around
/// it (the agent's hot path decodes offers and heartbeats this way).
pub(crate) fn body<'a, T: Deserialize<'a>>(
    kind: MessageType,
    bytes: &'a [u8],
) -> Result<T, DecodeError> {
    match postcard::take_from_bytes::<T>(bytes) {
        Ok((value, [])) => Ok(value),
        _ => Err(DecodeError::Malformed(kind)),
    }
}

/// Reads a postcard varint of at most `max` bytes whose last byte is at
/// most `last` at `b[*at..]`, exactly as postcard does (`u32`: 5 and 15,
/// `u64`: 10 and 1); `None` where postcard fails.
#[inline(always)]
fn take_varint(b: &[u8], at: &mut usize, max: usize, last: u8) -> Option<u64> {
    let mut out = 0u64;
    for i in 0..max {
        let val = *b.get(*at)?;
        *at += 1;
        out |= u64::from(val & 0x7F) << (7 * i);
        if val & 0x80 == 0 {
            if i == max - 1 && val > last {
                return None;
            }
            return Some(out);
        }
    }
    None
}

impl JobOffer {
    /// Decodes an offer's body as `postcard::from_bytes` with no bytes
    /// left over would, without serde: the frames a busy provider reads
    /// most. `None` where that fails.
    pub(crate) fn decode_body(b: &[u8]) -> Option<JobOffer> {
        let at = &mut 0;
        let u64_ = |at: &mut usize| take_varint(b, at, 10, 1);
        let u32_ = |at: &mut usize| take_varint(b, at, 5, 15).map(|v| v as u32);
        let offer = JobOffer {
            job: u64_(at)?,
            requirements: Requirements {
                memory_mib: u32_(at)?,
                features: u32_(at)?,
            },
            est_gpu_ms: u32_(at)?,
            bytes_in: u64_(at)?,
            bytes_out: u64_(at)?,
            max_price: u64_(at)?,
            deadline_ms: u32_(at)?,
        };
        (*at == b.len()).then_some(offer)
    }
}

impl Heartbeat {
    /// Decodes a heartbeat's body (two bytes) as postcard would.
    pub(crate) fn decode_body(b: &[u8]) -> Option<Heartbeat> {
        match *b {
            [active_jobs, capacity] => Some(Heartbeat {
                active_jobs,
                capacity,
            }),
            _ => None,
        }
    }
}

fn empty(kind: MessageType, bytes: &[u8]) -> Result<(), DecodeError> {
    if bytes.is_empty() {
        Ok(())
    } else {
        Err(DecodeError::Malformed(kind))
    }
}

impl<'a> Message<'a> {
    /// The message's type byte.
    pub fn kind(&self) -> MessageType {
        match self {
            Message::Hello(_) => MessageType::Hello,
            Message::Welcome(_) => MessageType::Welcome,
            Message::Evidence(_) => MessageType::Evidence,
            Message::Ready => MessageType::Ready,
            Message::Batching(_) => MessageType::Batching,
            Message::JobOffer(_) => MessageType::JobOffer,
            Message::OfferAccept(_) => MessageType::OfferAccept,
            Message::OfferDecline(_) => MessageType::OfferDecline,
            Message::JobAssign(a) if a.sealing.is_some() => MessageType::SealedJobAssign,
            Message::JobAssign(_) => MessageType::JobAssign,
            Message::InputChunk(_) => MessageType::InputChunk,
            Message::Started(_) => MessageType::Started,
            Message::Progress(_) => MessageType::Progress,
            Message::OutputChunk(_) => MessageType::OutputChunk,
            Message::Completed(_) => MessageType::Completed,
            Message::Failed(_) => MessageType::Failed,
            Message::UsageReport(_) => MessageType::UsageReport,
            Message::Receipt(_) => MessageType::Receipt,
            Message::ResultAck(_) => MessageType::ResultAck,
            Message::Cancel(_) => MessageType::Cancel,
            Message::ResultRefuse(_) => MessageType::ResultRefuse,
            Message::Heartbeat(_) => MessageType::Heartbeat,
            Message::Drain => MessageType::Drain,
            Message::Goodbye(_) => MessageType::Goodbye,
            Message::Error(_) => MessageType::Error,
        }
    }

    /// Decodes one whole frame: `bytes` must hold exactly the header and body.
    pub fn decode(bytes: &'a [u8]) -> Result<Message<'a>, DecodeError> {
        let header = Header::decode(bytes)?;
        if bytes.len() < header.frame_len() {
            return Err(DecodeError::Incomplete);
        }
        let kind =
            MessageType::from_u8(header.kind).ok_or(DecodeError::UnknownType(header.kind))?;
        if bytes.len() > header.frame_len() {
            return Err(DecodeError::Malformed(kind));
        }
        Self::decode_body(kind, &bytes[HEADER_LEN..])
    }

    /// Decodes a body of the given type.
    pub fn decode_body(kind: MessageType, b: &'a [u8]) -> Result<Message<'a>, DecodeError> {
        use MessageType as T;
        let message = match kind {
            T::Hello => Message::Hello(body(kind, b)?),
            T::Welcome => Message::Welcome(body(kind, b)?),
            T::Evidence => Message::Evidence(body(kind, b)?),
            T::Ready => {
                empty(kind, b)?;
                Message::Ready
            }
            T::Batching => Message::Batching(body(kind, b)?),
            T::JobOffer => Message::JobOffer(body(kind, b)?),
            T::OfferAccept => Message::OfferAccept(body(kind, b)?),
            T::OfferDecline => Message::OfferDecline(body(kind, b)?),
            T::JobAssign => Message::JobAssign(body(kind, b)?),
            T::SealedJobAssign => Message::JobAssign(sealed_assign(kind, b)?),
            T::InputChunk => Message::InputChunk(chunk(kind, b)?),
            T::Started => Message::Started(body(kind, b)?),
            T::Progress => Message::Progress(body(kind, b)?),
            T::OutputChunk => Message::OutputChunk(chunk(kind, b)?),
            T::Completed => Message::Completed(body(kind, b)?),
            T::Failed => Message::Failed(body(kind, b)?),
            T::UsageReport => Message::UsageReport(body(kind, b)?),
            T::Receipt => Message::Receipt(body(kind, b)?),
            T::ResultAck => Message::ResultAck(body(kind, b)?),
            T::Cancel => Message::Cancel(body(kind, b)?),
            T::ResultRefuse => Message::ResultRefuse(body(kind, b)?),
            T::Heartbeat => Message::Heartbeat(body(kind, b)?),
            T::Drain => {
                empty(kind, b)?;
                Message::Drain
            }
            T::Goodbye => Message::Goodbye(body(kind, b)?),
            T::Error => Message::Error(body(kind, b)?),
        };
        Ok(message)
    }

    /// Encodes the message as one frame into `out`; returns the frame length.
    pub fn encode(&self, out: &mut [u8]) -> Result<usize, EncodeError> {
        if out.len() < HEADER_LEN {
            return Err(EncodeError::BufferTooSmall);
        }
        let room = (out.len() - HEADER_LEN).min(MAX_BODY);
        let (head, rest) = out.split_at_mut(HEADER_LEN);
        let rest = &mut rest[..room];
        let body_len = match self {
            Message::Hello(m) => ser(m, rest)?,
            Message::Welcome(m) => ser(m, rest)?,
            Message::Evidence(m) => ser(m, rest)?,
            Message::Ready | Message::Drain => 0,
            Message::Batching(m) => ser(m, rest)?,
            Message::JobOffer(m) => ser(m, rest)?,
            Message::OfferAccept(m) => ser(m, rest)?,
            Message::OfferDecline(m) => ser(m, rest)?,
            Message::JobAssign(m) => {
                let n = ser(m, rest)?;
                match &m.sealing {
                    Some(sealing) => n + ser(sealing, &mut rest[n..])?,
                    None => n,
                }
            }
            Message::InputChunk(m) | Message::OutputChunk(m) => {
                if m.data.len() > crate::limits::CHUNK_SIZE {
                    return Err(EncodeError::TooLarge);
                }
                ser(m, rest)?
            }
            Message::Started(m) | Message::ResultAck(m) => ser(m, rest)?,
            Message::Progress(m) => ser(m, rest)?,
            Message::Completed(m) => ser(m, rest)?,
            Message::Failed(m) => ser(m, rest)?,
            Message::UsageReport(m) => ser(m, rest)?,
            Message::Receipt(m) => ser(m, rest)?,
            Message::Cancel(m) => ser(m, rest)?,
            Message::ResultRefuse(m) => ser(m, rest)?,
            Message::Heartbeat(m) => ser(m, rest)?,
            Message::Goodbye(m) => ser(m, rest)?,
            Message::Error(m) => ser(m, rest)?,
        };
        head[0..2].copy_from_slice(&MAGIC);
        head[2] = WIRE_VERSION;
        head[3] = self.kind() as u8;
        head[4..8].copy_from_slice(&(body_len as u32).to_le_bytes());
        Ok(HEADER_LEN + body_len)
    }
}

/// A `SealedJobAssign` body: `JobAssign`'s fields, then `Sealing`'s.
fn sealed_assign(kind: MessageType, b: &[u8]) -> Result<JobAssign, DecodeError> {
    let Ok((mut assign, rest)) = postcard::take_from_bytes::<JobAssign>(b) else {
        return Err(DecodeError::Malformed(kind));
    };
    assign.sealing = Some(body(kind, rest)?);
    Ok(assign)
}

fn chunk<'a>(kind: MessageType, b: &'a [u8]) -> Result<Chunk<'a>, DecodeError> {
    let c: Chunk<'a> = body(kind, b)?;
    if c.data.len() > crate::limits::CHUNK_SIZE {
        return Err(DecodeError::Malformed(kind));
    }
    Ok(c)
}

fn ser<T: Serialize>(value: &T, out: &mut [u8]) -> Result<usize, EncodeError> {
    let room = out.len();
    match postcard::to_slice(value, out) {
        Ok(written) => Ok(written.len()),
        Err(_) if room >= MAX_BODY => Err(EncodeError::TooLarge),
        Err(_) => Err(EncodeError::BufferTooSmall),
    }
}

const _: () = assert!(MAX_FRAME > crate::limits::CHUNK_SIZE + 64);

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Byte fields written as one byte string encode exactly as serde's
    /// byte-at-a-time sequence did: the wire format did not change.
    #[test]
    fn byte_strings_encode_as_the_sequence_of_bytes_did() {
        #[derive(Serialize)]
        struct ChunkAsSequence<'a>(JobId, u8, u32, Digest, &'a [u8]);
        #[derive(Serialize)]
        struct ReceiptAsSequence<'a>(JobId, &'a [u8]);
        use crate::limits::CHUNK_SIZE;
        let data: std::vec::Vec<u8> = (0..CHUNK_SIZE).map(|i| (i * 7) as u8).collect();
        for len in [0, 1, 127, 128, 300, CHUNK_SIZE] {
            let chunk = Chunk {
                job: 1 << 40,
                stream: 3,
                index: 70_000,
                digest: [0xAB; 32],
                data: &data[..len],
            };
            let plain = ChunkAsSequence(chunk.job, 3, 70_000, [0xAB; 32], &data[..len]);
            assert_eq!(
                postcard::to_stdvec(&chunk).unwrap(),
                postcard::to_stdvec(&plain).unwrap()
            );
            let blob = Blob {
                bytes: &data[..len],
            };
            assert_eq!(
                postcard::to_stdvec(&blob).unwrap(),
                postcard::to_stdvec(&(&data[..len],)).unwrap()
            );
            let receipt = ReceiptMsg {
                job: 9,
                bytes: &data[..len],
            };
            assert_eq!(
                postcard::to_stdvec(&receipt).unwrap(),
                postcard::to_stdvec(&ReceiptAsSequence(9, &data[..len])).unwrap()
            );
        }
    }

    fn by_postcard<'a, T: Deserialize<'a>>(b: &'a [u8]) -> Option<T> {
        match postcard::take_from_bytes::<T>(b) {
            Ok((v, [])) => Some(v),
            _ => None,
        }
    }

    /// A varint of a `bits`-bit field: canonical, or padded with 0x80
    /// bytes and ending at or near each type's last-byte limit, or noise.
    fn varint_bytes(bits: u32) -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            4 => any::<u64>().prop_map(move |v| {
                let v = if bits == 64 { v } else { v & 0xFFFF_FFFF };
                let mut out = [0u8; 10];
                let n = postcard::to_slice(&v, &mut out).map(|b| b.len()).unwrap_or(0);
                out[..n].to_vec()
            }),
            2 => (
                prop_oneof![0usize..11, Just(4usize), Just(9usize)],
                prop_oneof![any::<u8>(), prop::sample::select(vec![0u8, 1, 2, 15, 16, 127])],
            )
                .prop_map(|(pad, last)| {
                    let mut v = vec![0x80; pad];
                    v.push(last);
                    v
                }),
            1 => proptest::collection::vec(any::<u8>(), 0..3),
        ]
    }

    /// An offer's eight fields (u64, u32, u32, u32, u64, u64, u64, u32).
    fn offer_fields() -> impl Strategy<Value = Vec<u8>> {
        (
            varint_bytes(64),
            varint_bytes(32),
            varint_bytes(32),
            varint_bytes(32),
            varint_bytes(64),
            varint_bytes(64),
            varint_bytes(64),
            varint_bytes(32),
        )
            .prop_map(|(a, b, c, d, e, f, g, h)| [a, b, c, d, e, f, g, h].concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(20_000))]

        /// The offer decoder without serde takes exactly the bodies
        /// postcard takes, with the same values.
        #[test]
        fn offer_bodies_decode_as_postcard_decodes_them(
            fields in offer_fields(),
            cut in 0usize..4,
            noise in proptest::collection::vec(any::<u8>(), 0..70),
            use_noise in any::<bool>(),
        ) {
            // Whole, cut short, or with a byte too many.
            let mut body = if use_noise { noise } else { fields };
            match cut {
                1 => { body.pop(); }
                2 => body.push(0),
                _ => {}
            }
            prop_assert_eq!(JobOffer::decode_body(&body), by_postcard::<JobOffer>(&body));
            prop_assert_eq!(Heartbeat::decode_body(&body), by_postcard::<Heartbeat>(&body));
        }
    }

    /// The offer replies written without serde are the bytes
    /// `Message::encode` writes, for job ids and prices of every varint
    /// length and every decline reason.
    #[test]
    fn offer_replies_match_the_encoder() {
        let values = [0, 1, 127, 128, 16_383, 16_384, 1 << 35, 1 << 63, u64::MAX];
        let reasons = (0..=255u8).filter_map(DeclineReason::from_u8);
        let mut ours = [0u8; 64];
        let mut theirs = [0u8; 64];
        for &job in &values {
            for &price in &values {
                let n = encode_offer_reply(job, Ok(price), &mut ours).unwrap();
                let m = Message::OfferAccept(OfferAccept { job, price })
                    .encode(&mut theirs)
                    .unwrap();
                assert_eq!(ours[..n], theirs[..m], "accept {job} {price}");
            }
            for reason in reasons.clone() {
                let n = encode_offer_reply(job, Err(reason), &mut ours).unwrap();
                let m = Message::OfferDecline(OfferDecline { job, reason })
                    .encode(&mut theirs)
                    .unwrap();
                assert_eq!(ours[..n], theirs[..m], "decline {job} {reason:?}");
            }
        }
        // Too small a buffer: refused, for every length short of the frame.
        let n = encode_offer_reply(u64::MAX, Ok(u64::MAX), &mut ours).unwrap();
        for len in 0..n {
            assert_eq!(
                encode_offer_reply(u64::MAX, Ok(u64::MAX), &mut ours[..len]),
                Err(EncodeError::BufferTooSmall)
            );
        }
    }
}
