//! The provider agent: a sans-IO state machine (`docs/PROTOCOL.md`,
//! "Connection states" and "Jobs").
//!
//! The host owns the transport and the clock. It feeds received bytes to
//! [`Agent::handle_input`], then drains, in this order, [`Agent::poll_transmit`]
//! (bytes to send), [`Agent::poll_event`] (what the host must do) and
//! [`Agent::poll_timeout`] (when to call [`Agent::handle_timeout`]). Each call
//! does a bounded amount of work and never blocks, allocates or panics on input.
//!
//! The host runs jobs: on [`Event::RunJob`] it reads [`Agent::job_spec`],
//! dispatches the kernel with the buffers it stored from [`Event::JobData`],
//! then writes outputs with [`Agent::send_output`] and ends with
//! [`Agent::finish_job`] (or [`Agent::fail_job`]). The host keeps a job's
//! outputs until [`Event::ResultAcknowledged`]: after a reconnect the agent
//! asks for them again with [`Event::ResendOutputs`], so nothing is lost.

// The agent's methods are grouped by concern, each group in its own file:
// the session with the coordinator (`connection`), jobs coming in
// (`transfer`), outputs going out (`upload`), how jobs end (`outcome`), and
// what the host drains (`queues`). `job` holds a job's state.
mod batching;
mod connection;
mod job;
mod outcome;
mod queues;
mod transfer;
mod upload;

use core::mem::MaybeUninit;

use heapless::{Deque, Vec};

use self::job::Job;
use self::queues::TxQueue;
use self::transfer::InStream;
pub use self::upload::{Sent, SentAll};
use crate::attest::{ChainState, DeviceCapabilities, Signer, EVIDENCE_LEN, MAX_RECEIPT_LEN};
use crate::bounded::BoundedVec;
use crate::error::{ConfigError, Error, UsageError};
use crate::limits::{
    HEADER_LEN, MAX_CONCURRENT_RULE, MAX_EVENTS, MAX_JOBS, RX_CAPACITY, TX_CAPACITY,
};
use crate::policy::Policy;
use crate::time::{Duration, Instant};
use crate::wire::{Batching, Digest, FailReason, JobAssign, JobId, KeyId, Message, Usage};

// Events are never dropped. Each call that queues events first checks that
// the queue has room for the most it can queue plus `DISCONNECT_EVENTS`, and
// otherwise changes nothing (a host call returns `EventsPending`, a timer
// waits, input is not read). So whenever a session is up at least
// `DISCONNECT_EVENTS` slots are free, which is all `disconnected` (the one
// call that cannot wait: the transport is gone) may need.

/// Most events a disconnect queues: a `CancelJob` per job and `Disconnect`.
const DISCONNECT_EVENTS: usize = MAX_JOBS + 1;
/// Most events one frame of input queues: `Ready` and a `ResendOutputs` per
/// job, or a disconnect (a `Drain`'s or an ack's goodbye, a protocol
/// violation), or a job's `CancelJob` when an input does not match its
/// digest, with a `PersistResult` for each job of the receipt batch its
/// failure completes (else the last chunk's `JobData`), or the
/// `PersistResult`s of the batch a `Batching` completes.
const FRAME_EVENTS: usize = MAX_JOBS + 1;
/// Most events `handle_timeout` queues: a `CancelJob` and a `PersistResult`
/// per job, then one `Disconnect`.
const TIMER_EVENTS: usize = 2 * MAX_JOBS + 1;
/// Most events `finish_job` or `fail_job` queues: a `PersistResult` for
/// each job of the receipt batch it completes (or its own), and a
/// `ResendOutputs`; `drain` queues one.
const HOST_CALL_EVENTS: usize = MAX_JOBS + 1;
/// Free event slots `handle_input` keeps before reading another frame (and
/// `connect` before opening a session).
const EVENT_RESERVE: usize = 2 * MAX_JOBS + 4;
const _: () = assert!(EVENT_RESERVE >= FRAME_EVENTS + DISCONNECT_EVENTS);
const _: () = assert!(MAX_EVENTS >= TIMER_EVENTS + DISCONNECT_EVENTS);
const _: () = assert!(MAX_EVENTS >= EVENT_RESERVE);
/// Free outgoing bytes `handle_input` keeps before reading another frame: room
/// for the largest reply one frame can cause, the evidence frame answering
/// `Welcome` (header, 2-byte length, signed evidence). With less, a frame
/// would be consumed and its reply dropped.
const TX_RESERVE: usize = HEADER_LEN + 2 + EVIDENCE_LEN;
const _: () = assert!(TX_RESERVE <= TX_CAPACITY);

/// What the agent is, for evidence and `Hello`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Config {
    /// Agent software version: major, minor, patch.
    pub agent_version: [u16; 3],
    /// Random id chosen at each boot (the host supplies the randomness).
    pub boot_id: [u8; 16],
    /// The device's capabilities, signed into the evidence.
    pub capabilities: DeviceCapabilities,
    /// Which offers to take, what to charge, and the session timers.
    pub policy: Policy,
    /// When true, a signed result is held back until the host has stored it
    /// durably: the agent emits [`Event::PersistResult`] and sends nothing for
    /// the job until [`Agent::confirm_persisted`]. Hosts that keep results
    /// across restarts (the std runtime) set it, so that a receipt the
    /// coordinator has seen is never lost in a crash and the chain never breaks.
    pub persist_results: bool,
}

/// The connection's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnState {
    /// No transport. Jobs that run keep running; results wait.
    Disconnected,
    /// `Hello` sent; waiting for `Welcome`.
    AwaitingWelcome,
    /// Evidence sent; waiting for `Ready`.
    AwaitingReady,
    /// Session established: offers are taken (unless draining).
    Ready,
    /// Goodbye exchanged. `connect` starts a new session.
    Closed,
}

/// A job's state on the agent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum JobState {
    /// Offer accepted; waiting for the assignment.
    Accepted,
    /// Assignment received; kernel and inputs arriving.
    Receiving,
    /// Inputs verified; the host runs the kernel.
    Running,
    /// The host is writing outputs (also after a reconnect, to send them again).
    Uploading,
    /// Outcome signed and sent (or waiting for a connection, or for its
    /// receipt batch's signature); waiting for the coordinator's
    /// acknowledgement.
    AwaitingAck,
}

/// Why the host must stop a job and drop its buffers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CancelReason {
    /// The coordinator cancelled it (its code is passed on).
    Requested(u16),
    /// The job's deadline passed.
    Deadline,
    /// The connection dropped before the inputs were complete.
    Disconnected,
    /// An input chunk or root did not match its digest.
    InputIntegrity,
}

/// Why the host must close the transport.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DisconnectReason {
    /// Nothing heard from the coordinator within the peer timeout.
    PeerSilent,
    /// The peer broke the protocol beyond recovery.
    ProtocolViolation,
    /// The coordinator refused the session (evidence rejected, say): its code.
    Refused(u16),
    /// The coordinator said goodbye.
    PeerGoodbye,
    /// The agent drained and said goodbye, as the host asked ([`Agent::drain`]).
    Drained,
    /// The agent drained this session and said goodbye, as the coordinator
    /// asked (its `Drain`). The provider is not shutting down: the host
    /// connects again later, with backoff.
    PeerDrained,
}

/// What the host must do. Returned by [`Agent::poll_event`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// The session is established: the coordinator accepted the evidence.
    Ready,
    /// A job was assigned: prepare its buffers ([`Agent::job_spec`]).
    JobAssigned {
        /// The job.
        job: JobId,
    },
    /// `len` bytes of the kernel (stream 0) or of input buffer `stream - 1`
    /// at `offset`: read them with [`Agent::input`] or [`Agent::read_input`]
    /// before the next [`Agent::handle_input`] (the agent reads no further
    /// input until this event has been polled). A chunk's data comes in
    /// pieces of at most [`MAX_INPUT_PIECE`](crate::limits::MAX_INPUT_PIECE)
    /// bytes, in order, and is checked against its digest when its last
    /// piece arrives: the job's inputs are only known good at
    /// [`Event::RunJob`]. Data that fails a check ends the job with
    /// [`Event::CancelJob`] ([`CancelReason::InputIntegrity`]) instead of
    /// its last piece; drop what the job received.
    JobData {
        /// The job.
        job: JobId,
        /// 0 for the kernel, `i + 1` for buffer `i`.
        stream: u8,
        /// Byte offset in the stream.
        offset: u64,
        /// How many bytes (at most `MAX_INPUT_PIECE`).
        len: usize,
    },
    /// All inputs arrived and verified: run the kernel.
    RunJob {
        /// The job.
        job: JobId,
    },
    /// Stop the job and drop its buffers.
    CancelJob {
        /// The job.
        job: JobId,
        /// Why.
        reason: CancelReason,
    },
    /// The connection was re-established: write this job's outputs again with
    /// `send_output`, then call `finish_job` (the signed receipt is reused).
    ResendOutputs {
        /// The job.
        job: JobId,
    },
    /// The job's result is signed: store [`Agent::result_record`] (and the
    /// outputs) durably, then call [`Agent::confirm_persisted`]. Only with
    /// [`Config::persist_results`].
    PersistResult {
        /// The job.
        job: JobId,
    },
    /// The coordinator holds the job's outputs and receipt: the host may drop them.
    ResultAcknowledged {
        /// The job.
        job: JobId,
    },
    /// The coordinator verified the job's receipt but will not accept the
    /// result (`ResultRefuse`); the agent has forgotten it and the host may
    /// drop its outputs and stored record. The receipt stays in the chain:
    /// the next receipt links to it.
    ResultRefused {
        /// The job.
        job: JobId,
        /// The coordinator's reason code.
        reason: u16,
    },
    /// The coordinator reported an error.
    PeerError {
        /// Its [`ErrorCode`](crate::error::ErrorCode) value.
        code: u16,
        /// The job concerned, or 0.
        job: JobId,
    },
    /// Close the transport; the agent is now disconnected (or closed).
    Disconnect {
        /// Why.
        reason: DisconnectReason,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum EventRecord {
    Ready,
    JobAssigned(JobId),
    JobData {
        job: JobId,
        stream: u8,
        offset: u64,
        len: usize,
    },
    RunJob(JobId),
    CancelJob(JobId, CancelReason),
    ResendOutputs(JobId),
    PersistResult(JobId),
    ResultAcknowledged(JobId),
    ResultRefused(JobId, u16),
    PeerError(u16, JobId),
    Disconnect(DisconnectReason),
}

/// Counters an operator reads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Offers accepted.
    pub offers_accepted: u64,
    /// Offers declined.
    pub offers_declined: u64,
    /// Jobs completed and acknowledged.
    pub jobs_completed: u64,
    /// Jobs failed (acknowledged).
    pub jobs_failed: u64,
    /// Results the coordinator refused (`ResultRefuse`), completed or failed.
    pub results_refused: u64,
    /// Sum of prices of acknowledged completed jobs.
    pub earnings: u64,
    /// GPU time metered into acknowledged results (completed or failed), µs.
    pub gpu_time_us: u64,
    /// Frames received.
    pub frames_in: u64,
    /// Frames queued for sending.
    pub frames_out: u64,
    /// Frames refused (decode or protocol errors).
    pub frames_refused: u64,
}

/// The provider agent. Generic over the [`Signer`] holding the device key.
///
/// Its size is fixed by [`crate::limits`]; nothing in it allocates. `&mut`
/// methods must be called from one thread at a time.
pub struct Agent<S: Signer> {
    config: Config,
    signer: S,
    key_id: KeyId,
    conn: ConnState,
    epoch: u32,
    draining: bool,
    /// The host asked for the drain (else only the coordinator did).
    host_drain: bool,
    /// Whether the device takes work now (the host says so).
    device_available: bool,
    heartbeat_interval: Duration,
    last_rx: Instant,
    next_heartbeat: Instant,
    /// A frame being read (any but `InputChunk`), the start of an
    /// `InputChunk` up to its data, or a piece of a chunk's data.
    rx: [u8; RX_CAPACITY],
    rx_len: usize,
    /// A queued `JobData` event borrows the piece in `rx`.
    rx_held: bool,
    /// The input piece of the last `JobData` polled: (job, start in `rx`,
    /// length), readable until the next `handle_input`.
    input_view: Option<(JobId, usize, usize)>,
    /// The `InputChunk` whose data is arriving.
    chunk_in: Option<InStream>,
    /// Bytes of a refused frame still to arrive, dropped as they do.
    skip: usize,
    tx: TxQueue,
    events: Deque<EventRecord, MAX_EVENTS>,
    jobs: Vec<Job, MAX_JOBS>,
    chain: ChainState,
    evidence_hash: Digest,
    /// The session encryption key the next evidence states (zeros: none).
    session_key: [u8; 32],
    /// The protocol version of this session (0 before `Welcome`).
    version: u16,
    /// How the coordinator asked this session's receipts to be batched
    /// (`max_receipts` below 2: not at all).
    batching: Batching,
    /// When results wait for a batch signature: when the batch must be
    /// signed (its oldest result's end plus the allowed delay, or a retry
    /// after the signer failed).
    batch_due: Option<Instant>,
    /// Jobs this session declined lately (version 2): an assignment and
    /// input chunks the coordinator sent with the offer, before the answer,
    /// are dropped without an error.
    declined: Deque<JobId, DECLINED_KEPT>,
    stats: Stats,
}

/// Declined jobs a session remembers ([`Agent`]'s `declined`).
const DECLINED_KEPT: usize = 8;

impl Config {
    /// What [`Agent::new`] refuses in a configuration, found without making
    /// an agent: `Error::Config` naming the field and the rule.
    pub fn check(&self) -> Result<(), Error> {
        let p = &self.policy;
        let invalid = |field, rule| Err(Error::Config(ConfigError { field, rule }));
        if p.max_concurrent == 0 || p.max_concurrent as usize > MAX_JOBS {
            return invalid("policy.max_concurrent", MAX_CONCURRENT_RULE);
        }
        if p.heartbeat_interval.micros == 0 {
            return invalid("policy.heartbeat_interval", "must not be zero");
        }
        if p.peer_timeout.micros == 0 {
            return invalid("policy.peer_timeout", "must not be zero");
        }
        Ok(())
    }
}

impl<S: Signer> Agent<S> {
    /// A disconnected agent. `chain` continues the device's receipt chain
    /// (`ChainState::default()` for a new key; the persisted state after a
    /// restart).
    ///
    /// The agent is large (about 96 KiB hosted, 16 KiB on riscv32, most of
    /// it job slots), and a value returned is copied on the way: where the
    /// stack is small (a thread of a C program on musl has 128 KiB), make
    /// it in its place with [`Agent::new_in`] or [`Agent::new_boxed`].
    pub fn new(config: Config, signer: S, chain: ChainState) -> Result<Self, Error> {
        config.check()?;
        Ok(Self::fresh(config, signer, chain))
    }

    /// As [`Agent::new`], made in `slot` (a static, caller memory, a
    /// box), with no copy of the agent on the stack in optimized builds.
    /// (Unoptimized, the copies take about 480 KiB of stack: this
    /// workspace builds the core at `opt-level = 1` in `cargo build`'s debug
    /// builds.)
    /// On an error `slot` is left as it was.
    pub fn new_in(
        slot: &mut MaybeUninit<Self>,
        config: Config,
        signer: S,
        chain: ChainState,
    ) -> Result<&mut Self, Error> {
        config.check()?;
        Ok(slot.write(Self::fresh(config, signer, chain)))
    }

    /// As [`Agent::new`], on the heap ([`Agent::new_in`] in a box).
    #[cfg(feature = "std")]
    // The one `unsafe` of the core outside the Vulkan module: the safe
    // `Box::write` needs Rust 1.87, above the workspace's 1.85.
    #[allow(unsafe_code)]
    pub fn new_boxed(
        config: Config,
        signer: S,
        chain: ChainState,
    ) -> Result<std::boxed::Box<Self>, Error> {
        let mut slot = std::boxed::Box::<Self>::new_uninit();
        Self::new_in(&mut slot, config, signer, chain)?;
        // SAFETY: `new_in` succeeded, so it wrote the agent into the slot.
        Ok(unsafe { slot.assume_init() })
    }

    /// The agent of a checked configuration: inlined into its callers, so
    /// that [`Agent::new_in`] builds it where it is written.
    #[inline(always)]
    fn fresh(config: Config, signer: S, chain: ChainState) -> Self {
        let key_id = signer.key_id();
        Agent {
            heartbeat_interval: config.policy.heartbeat_interval,
            config,
            signer,
            key_id,
            conn: ConnState::Disconnected,
            epoch: 0,
            draining: false,
            host_drain: false,
            device_available: true,
            last_rx: Instant::ZERO,
            next_heartbeat: Instant::ZERO,
            rx: [0; RX_CAPACITY],
            rx_len: 0,
            rx_held: false,
            input_view: None,
            chunk_in: None,
            skip: 0,
            tx: TxQueue::new(),
            events: Deque::new(),
            jobs: Vec::new(),
            chain,
            evidence_hash: [0; 32],
            session_key: [0; 32],
            version: 0,
            batching: Batching::default(),
            batch_due: None,
            declined: Deque::new(),
            stats: Stats::default(),
        }
    }

    /// The connection's state.
    pub fn state(&self) -> ConnState {
        self.conn
    }

    /// Whether the agent is draining (accepting no new jobs).
    pub fn is_draining(&self) -> bool {
        self.draining
    }

    /// Whether the device takes work now (see [`Agent::set_device_available`]).
    pub fn device_available(&self) -> bool {
        self.device_available
    }

    /// The host says whether its device takes work now. While it does not (a
    /// dispatcher still running work abandoned after timeouts, at its bound)
    /// every offer is declined with `DeclineReason::Unavailable` and
    /// heartbeats say `capacity` 0; jobs already held go on. On a change
    /// while a session is up the agent sends a heartbeat at once, so the
    /// coordinator learns it without waiting for the next interval.
    pub fn set_device_available(&mut self, _now: Instant, available: bool) {
        if self.device_available == available {
            return;
        }
        self.device_available = available;
        if self.conn == ConnState::Ready {
            // A full queue already carries news of us; the next periodic
            // heartbeat says it again.
            let _ = self.enqueue(&Message::Heartbeat(self.heartbeat()));
        }
    }

    /// Counters for an operator.
    pub fn stats(&self) -> Stats {
        Stats {
            frames_out: self.tx.frames(),
            ..self.stats
        }
    }

    /// The receipt chain position, to persist so that it survives restarts:
    /// after the last receipt signed (results waiting for a batch signature
    /// are not part of it yet).
    pub fn chain(&self) -> ChainState {
        self.chain
    }

    /// Sets the X25519 public key requesters seal jobs to
    /// (`docs/PROTOCOL.md`, "End-to-end sealing"), stated in the evidence of
    /// the next session (the evidence is made when the coordinator's
    /// `Welcome` arrives, so set it before connecting). A host draws a new
    /// key pair for every session and keeps its secret to open that
    /// session's jobs; 32 zero bytes (the default) state that it takes no
    /// sealed jobs.
    pub fn set_session_key(&mut self, public_key: [u8; 32]) {
        self.session_key = public_key;
    }

    /// The session encryption key the next (or current) session's evidence
    /// states.
    pub fn session_key(&self) -> [u8; 32] {
        self.session_key
    }

    /// Changes the price schedule and floor for offers from now on; jobs
    /// already accepted keep the price they were accepted at.
    pub fn set_pricing(&mut self, price: crate::policy::LinearPrice, floor: u64) {
        self.config.policy.price = price;
        self.config.policy.floor = floor;
    }

    /// The policy offers are answered by.
    pub fn policy(&self) -> &Policy {
        &self.config.policy
    }

    /// The device's capabilities, as its evidence states them.
    pub fn capabilities(&self) -> &DeviceCapabilities {
        &self.config.capabilities
    }

    /// The device key's id.
    pub fn key_id(&self) -> KeyId {
        self.key_id
    }

    /// The device's public key, which verifies its evidence and receipts.
    pub fn public_key(&self) -> [u8; 32] {
        self.signer.public_key()
    }

    /// Jobs the agent holds, in any state.
    pub fn active_jobs(&self) -> usize {
        self.jobs.len()
    }

    /// Ended jobs whose results (receipts) the agent holds until the
    /// coordinator acknowledges them.
    pub fn results_held(&self) -> usize {
        self.jobs.iter().filter(|j| j.result().is_some()).count()
    }

    /// A job's state, if the agent holds it.
    pub fn job_state(&self, job: JobId) -> Option<JobState> {
        self.find(job).map(|i| self.jobs[i].state())
    }

    /// A job's assignment (kernel, parameters, buffers), once assigned.
    pub fn job_spec(&self, job: JobId) -> Option<&JobAssign> {
        self.find(job).and_then(|i| self.jobs[i].spec())
    }

    /// When a job's result is due, for jobs that still have a deadline.
    pub fn job_deadline(&self, job: JobId) -> Option<Instant> {
        self.find(job)
            .map(|i| &self.jobs[i])
            .filter(|j| j.has_deadline())
            .map(|j| j.deadline)
    }

    /// The signed receipt of a job that has ended, until it is acknowledged
    /// (`None` while it waits for its batch's signature).
    pub fn job_receipt(&self, job: JobId) -> Option<&[u8]> {
        self.find(job)
            .and_then(|i| self.jobs[i].result())
            .filter(|r| r.signed)
            .map(|r| &r.receipt[..])
    }

    fn find(&self, job: JobId) -> Option<usize> {
        self.jobs.iter().position(|j| j.id == job)
    }

    fn job_index(&self, id: JobId) -> Result<usize, Error> {
        self.find(id)
            .ok_or(Error::Usage(UsageError::UnknownJob(id)))
    }

    /// A job the host may still work on: not ended by a failure whose
    /// receipt waits for the signer.
    fn live_job_index(&self, id: JobId) -> Result<usize, Error> {
        let i = self.job_index(id)?;
        if self.jobs[i].failure().is_some() {
            return Err(Error::Usage(UsageError::InvalidJobState(id)));
        }
        Ok(i)
    }
}

/// What an agent's memory is made of, in bytes: `size_of` on the target it
/// is built for ([`Agent::footprint`]). Every part is fixed by a capacity
/// in [`crate::limits`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Footprint {
    /// The whole agent.
    pub total: usize,
    /// One job slot (`MAX_JOBS` of them): the offer's terms, the
    /// assignment, and the job's state (a Merkle tree builder, the signed
    /// result).
    pub job_slot: usize,
    /// Every job slot.
    pub jobs: usize,
    /// One queued event (`MAX_EVENTS` of them).
    pub event_slot: usize,
    /// The event queue.
    pub events: usize,
    /// The input buffer (`RX_CAPACITY`) and the state of the chunk being
    /// read (its leaf hash so far).
    pub input: usize,
    /// The queue of outgoing frames (`TX_CAPACITY`).
    pub output_queue: usize,
    /// The signer.
    pub signer: usize,
    /// The rest: configuration, session, receipt chain, counters, padding.
    pub rest: usize,
}

impl<S: Signer> Agent<S> {
    /// What this agent type's memory is made of.
    pub const fn footprint() -> Footprint {
        use core::mem::size_of;
        let total = size_of::<Self>();
        let job_slot = size_of::<Job>();
        let jobs = size_of::<Vec<Job, MAX_JOBS>>();
        let event_slot = size_of::<EventRecord>();
        let events = size_of::<Deque<EventRecord, MAX_EVENTS>>();
        let input = RX_CAPACITY + size_of::<Option<InStream>>();
        let output_queue = size_of::<TxQueue>();
        let signer = size_of::<S>();
        Footprint {
            total,
            job_slot,
            jobs,
            event_slot,
            events,
            input,
            output_queue,
            signer,
            rest: total - jobs - events - input - output_queue - signer,
        }
    }
}

/// How a job ended: kept until acknowledged, and stored in its record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub enum Outcome {
    /// Completed with outputs.
    Completed {
        /// Total output bytes.
        output_len: u64,
        /// Merkle root of the outputs.
        output_root: Digest,
    },
    /// Failed.
    Failed {
        /// Why.
        reason: FailReason,
        /// Reason-specific code.
        detail: u32,
    },
}

/// An ended job's result as the host stores it until the coordinator
/// acknowledges it: enough to send it again after a restart.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ResultRecord {
    /// The job.
    pub job: JobId,
    /// Its assignment (for the read-back buffer layout and the receipt).
    pub spec: JobAssign,
    /// How it ended.
    pub outcome: Outcome,
    /// Metered usage.
    pub usage: Usage,
    /// Price charged.
    pub price: u64,
    /// The signed receipt, in either form (`docs/PROTOCOL.md`, "Batched
    /// receipts"): 444 bytes signed alone, 509 to 765 batched.
    #[serde(with = "receipt_bytes")]
    pub receipt: BoundedVec<u8, MAX_RECEIPT_LEN>,
    /// The device's receipt chain right after this receipt: the next sequence.
    pub next_sequence: u64,
    /// The device's receipt chain right after this receipt: this receipt's hash.
    pub prev_hash: Digest,
}

impl ResultRecord {
    /// The chain state right after this record's receipt.
    pub fn chain_after(&self) -> ChainState {
        ChainState {
            next_sequence: self.next_sequence,
            prev_hash: self.prev_hash,
        }
    }

    /// Encodes the record (postcard) into `out`; returns the length.
    pub fn encode(&self, out: &mut [u8]) -> Result<usize, crate::wire::EncodeError> {
        postcard::to_slice(self, out)
            .map(|b| b.len())
            .map_err(|_| crate::wire::EncodeError::BufferTooSmall)
    }

    /// Decodes a record written by [`ResultRecord::encode`].
    pub fn decode(bytes: &[u8]) -> Option<ResultRecord> {
        match postcard::take_from_bytes::<ResultRecord>(bytes) {
            Ok((r, [])) => Some(r),
            _ => None,
        }
    }
}

/// A record's receipt is written as a sequence of its bytes (a length, then
/// each byte), so that records stored before batched receipts still read. A
/// receipt of neither form's length does not decode: it could not verify.
mod receipt_bytes {
    use core::fmt;

    use serde::de::{Error as _, SeqAccess, Visitor};
    use serde::{Deserializer, Serializer};

    use crate::attest::{is_receipt_len, MAX_RECEIPT_LEN};
    use crate::bounded::BoundedVec;

    pub fn serialize<S: Serializer>(
        receipt: &BoundedVec<u8, MAX_RECEIPT_LEN>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.collect_seq(receipt.iter())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<BoundedVec<u8, MAX_RECEIPT_LEN>, D::Error> {
        d.deserialize_seq(ReceiptVisitor)
    }

    struct ReceiptVisitor;

    impl<'de> Visitor<'de> for ReceiptVisitor {
        type Value = BoundedVec<u8, MAX_RECEIPT_LEN>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "a receipt of 444 or 509 to {MAX_RECEIPT_LEN} bytes")
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut receipt = BoundedVec::new();
            while let Some(byte) = seq.next_element::<u8>()? {
                if receipt.push(byte).is_err() {
                    return Err(A::Error::invalid_length(MAX_RECEIPT_LEN + 1, &self));
                }
            }
            if !is_receipt_len(receipt.len()) {
                return Err(A::Error::invalid_length(receipt.len(), &self));
            }
            Ok(receipt)
        }
    }
}

/// Bytes of the largest encoded [`ResultRecord`].
pub const MAX_RECORD_BYTES: usize = 2048;

#[cfg(test)]
mod tests {
    use super::*;

    /// The largest record (every field at its longest, a batched receipt
    /// with the longest audit path) encodes within `MAX_RECORD_BYTES`.
    #[test]
    fn the_largest_record_fits() {
        use crate::limits::{MAX_BUFFERS, MAX_ENTRY_POINT, MAX_PUSH_CONSTANTS, MAX_SPEC_CONSTANTS};
        use crate::wire::{BufferSpec, KernelSpec};
        let mut spec = JobAssign {
            job: u64::MAX,
            requester_nonce: [0xFF; 32],
            kernel: KernelSpec {
                len: u32::MAX,
                root: [0xFF; 32],
                entry_point: Default::default(),
                specialization: Default::default(),
                push_constants: Default::default(),
                grid: [u32::MAX; 3],
            },
            buffers: Default::default(),
            inputs_root: [0xFF; 32],
            sealing: None,
        };
        for _ in 0..MAX_ENTRY_POINT {
            spec.kernel.entry_point.push('x').unwrap();
        }
        for _ in 0..MAX_SPEC_CONSTANTS {
            spec.kernel
                .specialization
                .push((u32::MAX, u32::MAX))
                .unwrap();
        }
        for _ in 0..MAX_PUSH_CONSTANTS {
            spec.kernel.push_constants.push(0xFF).unwrap();
        }
        for _ in 0..MAX_BUFFERS {
            let b = BufferSpec {
                binding: u32::MAX,
                len: u64::MAX,
                init_len: u64::MAX,
                readback: true,
            };
            spec.buffers.push(b).unwrap();
        }
        let record = ResultRecord {
            job: u64::MAX,
            spec,
            outcome: Outcome::Failed {
                reason: FailReason::Host,
                detail: u32::MAX,
            },
            usage: Usage {
                gpu_time_us: u64::MAX,
                dispatches: u32::MAX,
                bytes_in: u64::MAX,
                bytes_out: u64::MAX,
            },
            price: u64::MAX,
            receipt: BoundedVec::from_slice(&[0xFF; MAX_RECEIPT_LEN]).unwrap(),
            next_sequence: u64::MAX,
            prev_hash: [0xFF; 32],
        };
        let mut buf = [0u8; MAX_RECORD_BYTES];
        let n = record.encode(&mut buf).expect("fits");
        assert_eq!(ResultRecord::decode(&buf[..n]), Some(record));
    }

    #[test]
    fn agent_size_is_bounded() {
        let f = Agent::<crate::attest::Ed25519Signer>::footprint();
        assert_eq!(
            f.total,
            core::mem::size_of::<Agent<crate::attest::Ed25519Signer>>()
        );
        // Firmware builds (no `std`, 4 job slots) fit in 16 KiB (on the
        // firmware target `ci/footprint` checks it); hosted ones hold 32
        // job slots.
        let budget = if cfg!(feature = "std") { 100 } else { 16 } * 1024;
        assert!(f.total <= budget, "{f:?}");
        assert!(f.rest < 1024, "{f:?}");
    }
}
