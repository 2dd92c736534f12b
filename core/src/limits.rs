//! Compile-time capacities. Every buffer in the core is sized by one of these,
//! so the agent's memory is fixed and known (`ci/bench` prints `size_of`).

/// Jobs the agent tracks at once: offered-and-accepted, transferring, running,
/// or completed and waiting for the coordinator's acknowledgement. Hosted
/// builds (feature `std`) hold 32, so that many small jobs keep a device
/// busy while earlier results wait for their batch signature and
/// acknowledgement; builds without `std` (firmware) hold 4, each slot
/// costing about 2.7 KiB of the agent's fixed memory. A provider's
/// configured `max_concurrent` is at most this.
#[cfg(feature = "std")]
pub const MAX_JOBS: usize = 32;
/// Jobs the agent tracks at once (see the hosted definition): 4 without
/// `std`.
#[cfg(not(feature = "std"))]
pub const MAX_JOBS: usize = 4;
/// The `max_concurrent` a provider's policy has unless configured: jobs
/// held at once. Raise it towards [`MAX_JOBS`] for many small jobs; each
/// held job may keep its inputs and outputs in the host's memory.
pub const DEFAULT_MAX_CONCURRENT: u8 = 4;
/// The rule a configured `max_concurrent` outside 1 to [`MAX_JOBS`] breaks
/// (`ConfigError::rule`).
#[cfg(feature = "std")]
pub const MAX_CONCURRENT_RULE: &str = "must be 1 to 32 (limits::MAX_JOBS)";
/// The rule a configured `max_concurrent` outside 1 to [`MAX_JOBS`] breaks
/// (`ConfigError::rule`).
#[cfg(not(feature = "std"))]
pub const MAX_CONCURRENT_RULE: &str = "must be 1 to 4 (limits::MAX_JOBS)";
/// Storage buffers a job may bind (descriptor set 0).
pub const MAX_BUFFERS: usize = 8;
/// Binding numbers of a job's buffers are below this (descriptor set 0; the
/// bindings may have gaps, each buffer names its own). The Vulkan dispatcher
/// uses the same bound.
pub const MAX_BINDINGS: u32 = 32;
/// Specialization constants a job may set.
pub const MAX_SPEC_CONSTANTS: usize = 16;
/// Bytes of push constants a job may set (the Vulkan guaranteed minimum).
pub const MAX_PUSH_CONSTANTS: usize = 128;
/// Bytes of a kernel entry point name.
pub const MAX_ENTRY_POINT: usize = 64;
/// Bytes of data in one transfer chunk; also the Merkle leaf size.
pub const CHUNK_SIZE: usize = 8192;
/// Bytes of a frame header.
pub const HEADER_LEN: usize = 8;
/// Bytes of the largest frame, header included. Larger frames are refused.
pub const MAX_FRAME: usize = 8448;
/// Bytes of the largest frame body.
pub const MAX_BODY: usize = MAX_FRAME - HEADER_LEN;
/// Bytes of the largest signed blob (evidence or receipt) the agent keeps.
pub const MAX_SIGNED: usize = 1024;
/// Bytes of the agent's input buffer: it holds a whole frame of any type
/// but `InputChunk` (no valid one is longer), and the data of an
/// `InputChunk` passes through it in pieces of at most this size.
pub const RX_CAPACITY: usize = 2048;
/// Most bytes one `Event::JobData` hands the host: a chunk's data comes in
/// pieces of this size, the last one shorter.
pub const MAX_INPUT_PIECE: usize = RX_CAPACITY;
/// Bytes of queued outgoing frames other than output chunks (which
/// `Agent::send_output` writes straight into the host's buffer).
pub const TX_CAPACITY: usize = 1024;
/// Bytes of a transmit buffer with which every `Agent::send_output` call
/// writes a whole chunk: the queued frames, then the chunk's frame.
pub const TRANSMIT_BUFFER: usize = TX_CAPACITY + MAX_FRAME;
/// Events queued for the host before the agent stops reading input: room
/// for every job's events (128 with `std`, 32 without; see [`MAX_JOBS`]).
#[cfg(feature = "std")]
pub const MAX_EVENTS: usize = 128;
/// Events queued for the host before the agent stops reading input (see
/// the hosted definition): 32 without `std`.
#[cfg(not(feature = "std"))]
pub const MAX_EVENTS: usize = 32;
/// Size in bytes of the largest kernel (SPIR-V module) a job may carry.
pub const MAX_KERNEL_BYTES: u64 = 4 << 20;
