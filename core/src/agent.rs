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

use heapless::{Deque, Vec};

use crate::attest::{
    result_hash, result_seal, ChainState, DeviceCapabilities, Evidence, Receipt, ReceiptStatus,
    Signer, EVIDENCE_LEN, RECEIPT_LEN,
};
use crate::error::{ConfigError, Error, ErrorCode, InputError, PeerError, UsageError};
use crate::limits::{
    CHUNK_SIZE, HEADER_LEN, MAX_BINDINGS, MAX_EVENTS, MAX_FRAME, MAX_JOBS, MAX_KERNEL_BYTES,
    TX_CAPACITY,
};
use crate::merkle::RootBuilder;
use crate::policy::Policy;
use crate::time::{Duration, Instant};
use crate::wire::{
    Blob, Chunk, Completed, Digest, Direction, ErrorMsg, FailReason, Failed, Goodbye,
    GoodbyeReason, Header, Heartbeat, Hello, JobAssign, JobId, JobOffer, JobRef, KeyId, Message,
    MessageType, OfferAccept, OfferDecline, Progress, ReceiptMsg, Usage, UsageReport, Welcome,
    PROTOCOL_VERSION_MAX, PROTOCOL_VERSION_MIN,
};

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
/// violation), or a job's three (the last chunk's `JobData`, then, when a
/// root does not match, `CancelJob` and `PersistResult`).
const FRAME_EVENTS: usize = MAX_JOBS + 1;
/// Most events `handle_timeout` queues: a `CancelJob` and a `PersistResult`
/// per job, then one `Disconnect`.
const TIMER_EVENTS: usize = 2 * MAX_JOBS + 1;
/// Most events `finish_job` queues (`PersistResult`, `ResendOutputs`);
/// `fail_job` and `drain` queue one.
const HOST_CALL_EVENTS: usize = 2;
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
// `send_output` keeps the same reserve free; a second whole output chunk must
// still fit behind the first (a chunk frame's fields other than its data take
// at most 50 bytes).
const _: () = assert!((HEADER_LEN + 50 + CHUNK_SIZE) + CHUNK_SIZE + TX_RESERVE <= TX_CAPACITY);
// `assignment_is_sane` keeps the bindings seen as bits of a u32.
const _: () = assert!(MAX_BINDINGS <= u32::BITS);

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
    /// Outcome signed and sent (or waiting for a connection); waiting for the
    /// coordinator's acknowledgement.
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
    /// `len` verified bytes of the kernel (stream 0) or of input buffer
    /// `stream - 1` at `offset`: read them with [`Agent::input`] or
    /// [`Agent::read_input`] before the next [`Agent::handle_input`] (the
    /// agent reads no further input until this event has been polled).
    JobData {
        /// The job.
        job: JobId,
        /// 0 for the kernel, `i + 1` for buffer `i`.
        stream: u8,
        /// Byte offset in the stream.
        offset: u64,
        /// How many bytes (at most `CHUNK_SIZE`).
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
        /// Its [`ErrorCode`] value.
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

/// A job the agent holds: the terms its offer was accepted on, and where it
/// stands.
#[derive(Clone, Debug)]
struct Job {
    id: JobId,
    max_price: u64,
    /// The price the offer was accepted at: what a timed-out job is charged.
    quote: u64,
    /// The offer's transfer sizes, which the assignment must keep to.
    bytes_in: u64,
    bytes_out: u64,
    /// When the result is due; while a failure waits for the signer
    /// ([`PendingFailure`]), when signing it is tried again.
    deadline: Instant,
    /// The evidence the coordinator accepted (with its `Ready`) in the
    /// session that offered this job: what its receipt names, even when it
    /// is signed later, after evidence a coordinator refused.
    evidence_hash: Digest,
    phase: Phase,
}

/// Where a job stands.
// Without an allocator there is nothing to box: every job slot holds the
// largest state anyway.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
enum Phase {
    /// Offer accepted; waiting for the assignment.
    Accepted,
    /// Assigned: the assignment holds from here on.
    Assigned { spec: JobAssign, step: Step },
}

/// Where an assigned job stands. The first three are work whose result is
/// not signed yet; the last two hold the signed result.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
enum Step {
    /// Kernel and inputs arriving.
    Receiving {
        input: Input,
        failure: Option<PendingFailure>,
    },
    /// Inputs verified; the host runs the kernel.
    Running {
        started_at: Instant,
        failure: Option<PendingFailure>,
    },
    /// The host writes the outputs, before the result is signed.
    Uploading {
        started_at: Instant,
        upload: Upload,
        failure: Option<PendingFailure>,
    },
    /// The result is signed; the host writes its outputs again (after a
    /// reconnect) for it to be sent on this connection. It holds back the
    /// outcomes of later receipts.
    Resending {
        upload: Upload,
        result: SignedResult,
    },
    /// The result is signed; waiting for it to go out and be acknowledged.
    AwaitingAck {
        result: SignedResult,
        /// The outcome messages still have to be sent on the current
        /// connection.
        unsent: bool,
    },
}

/// A failure the agent decided on (deadline, corrupt input), which the host
/// was told of, whose receipt the signer could not sign yet: retried at the
/// job's deadline, with no further event; the job takes no more input and
/// no more host calls.
#[derive(Clone, Copy, Debug)]
struct PendingFailure {
    reason: FailReason,
    detail: u32,
    usage: Usage,
}

/// Where the kernel and inputs of a job stand.
#[derive(Clone, Debug)]
struct Input {
    /// The stream arriving: 0 for the kernel, `i + 1` for buffer `i`.
    stream: u8,
    /// Its next chunk's index.
    chunk: u64,
    /// The Merkle tree of the stream (the kernel), or of every input buffer
    /// so far.
    builder: RootBuilder,
}

/// What an input chunk left a job with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Received {
    /// More chunks to come.
    More,
    /// Every input arrived and matches its root.
    Complete,
    /// The kernel or the inputs do not match their root.
    Corrupt,
}

impl Input {
    fn new() -> Self {
        Input {
            stream: 0,
            chunk: 0,
            builder: RootBuilder::new(),
        }
    }

    /// Where the next chunk starts in its stream, and how long it must be.
    fn next_chunk(&self, spec: &JobAssign) -> (u64, usize) {
        let offset = self.chunk * CHUNK_SIZE as u64;
        let len = (stream_len(spec, self.stream) - offset).min(CHUNK_SIZE as u64) as usize;
        (offset, len)
    }

    /// Takes the leaf of the next chunk, whose digest was checked; at the
    /// end of a stream checks its root and moves to the next one.
    fn push(&mut self, spec: &JobAssign, leaf: Digest) -> Received {
        self.builder.push_leaf(leaf);
        self.chunk += 1;
        if self.chunk * (CHUNK_SIZE as u64) < stream_len(spec, self.stream) {
            return Received::More;
        }
        if self.stream == 0 {
            if self.builder.root() != spec.kernel.root {
                return Received::Corrupt;
            }
            self.builder = RootBuilder::new();
        }
        match next_input_stream(spec, self.stream) {
            Some(stream) => {
                self.stream = stream;
                self.chunk = 0;
                Received::More
            }
            None if self.builder.root() != spec.inputs_root => Received::Corrupt,
            None => Received::Complete,
        }
    }
}

/// Where the upload of a job's outputs stands.
#[derive(Clone, Debug)]
struct Upload {
    /// The read-back buffer being written.
    buffer: u8,
    /// The next byte offset in it.
    offset: u64,
    /// The Merkle tree of the outputs so far.
    builder: RootBuilder,
    /// The connection epoch the upload started on: only chunks written on
    /// it are sent.
    epoch: u32,
}

impl Upload {
    /// An upload from the start of the first read-back buffer.
    fn new(spec: &JobAssign, epoch: u32) -> Self {
        Upload {
            buffer: first_readback(spec).unwrap_or(0),
            offset: 0,
            builder: RootBuilder::new(),
            epoch,
        }
    }

    /// Whether every read-back buffer was written to its end.
    fn is_complete(&self, spec: &JobAssign) -> bool {
        self.offset >= buffer_len(spec, self.buffer) && next_readback(spec, self.buffer).is_none()
    }
}

/// A job's signed result, kept until the coordinator acknowledges it.
#[derive(Clone, Debug)]
struct SignedResult {
    outcome: Outcome,
    usage: Usage,
    price: u64,
    receipt: [u8; RECEIPT_LEN],
    /// The receipt chain right after this receipt.
    chain_after: ChainState,
    /// The host stored the result (always true without `persist_results`).
    persisted: bool,
}

impl Job {
    fn new(offer: &JobOffer, quote: u64, deadline: Instant, evidence_hash: Digest) -> Self {
        Job {
            id: offer.job,
            max_price: offer.max_price,
            quote,
            bytes_in: offer.bytes_in,
            bytes_out: offer.bytes_out,
            deadline,
            evidence_hash,
            phase: Phase::Accepted,
        }
    }

    fn state(&self) -> JobState {
        match self.step() {
            None => JobState::Accepted,
            Some(Step::Receiving { .. }) => JobState::Receiving,
            Some(Step::Running { .. }) => JobState::Running,
            Some(Step::Uploading { .. } | Step::Resending { .. }) => JobState::Uploading,
            Some(Step::AwaitingAck { .. }) => JobState::AwaitingAck,
        }
    }

    fn spec(&self) -> Option<&JobAssign> {
        match &self.phase {
            Phase::Accepted => None,
            Phase::Assigned { spec, .. } => Some(spec),
        }
    }

    fn step(&self) -> Option<&Step> {
        match &self.phase {
            Phase::Accepted => None,
            Phase::Assigned { step, .. } => Some(step),
        }
    }

    fn failure(&self) -> Option<&PendingFailure> {
        self.step().and_then(Step::failure)
    }

    fn result(&self) -> Option<&SignedResult> {
        self.step().and_then(Step::result)
    }

    fn result_mut(&mut self) -> Option<&mut SignedResult> {
        match &mut self.phase {
            Phase::Accepted => None,
            Phase::Assigned { step, .. } => step.result_mut(),
        }
    }

    fn host_knows(&self) -> bool {
        !matches!(self.phase, Phase::Accepted)
    }

    /// Microseconds from the start of the run to the deadline: the most GPU
    /// time a job that ran out its time is metered.
    fn time_to_deadline(&self, started_at: Instant) -> u64 {
        self.deadline.micros.saturating_sub(started_at.micros)
    }

    /// Whether the job's deadline ends it: until its result is signed
    /// (a failure waiting for the signer is retried instead).
    fn has_deadline(&self) -> bool {
        match self.step() {
            None => true,
            Some(
                step @ (Step::Receiving { .. } | Step::Running { .. } | Step::Uploading { .. }),
            ) => step.failure().is_none(),
            Some(Step::Resending { .. } | Step::AwaitingAck { .. }) => false,
        }
    }
}

impl Step {
    fn failure(&self) -> Option<&PendingFailure> {
        match self {
            Step::Receiving { failure, .. }
            | Step::Running { failure, .. }
            | Step::Uploading { failure, .. } => failure.as_ref(),
            Step::Resending { .. } | Step::AwaitingAck { .. } => None,
        }
    }

    fn result(&self) -> Option<&SignedResult> {
        match self {
            Step::Resending { result, .. } | Step::AwaitingAck { result, .. } => Some(result),
            Step::Receiving { .. } | Step::Running { .. } | Step::Uploading { .. } => None,
        }
    }

    fn result_mut(&mut self) -> Option<&mut SignedResult> {
        match self {
            Step::Resending { result, .. } | Step::AwaitingAck { result, .. } => Some(result),
            Step::Receiving { .. } | Step::Running { .. } | Step::Uploading { .. } => None,
        }
    }
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
    rx: [u8; MAX_FRAME],
    rx_len: usize,
    /// A queued `JobData` event borrows the frame in `rx`.
    rx_held: bool,
    /// The input chunk of the last `JobData` polled: (job, start in `rx`,
    /// length), readable until the next `handle_input`.
    input_view: Option<(JobId, usize, usize)>,
    tx: TxQueue,
    events: Deque<EventRecord, MAX_EVENTS>,
    jobs: Vec<Job, MAX_JOBS>,
    chain: ChainState,
    evidence_hash: Digest,
    stats: Stats,
}

impl<S: Signer> Agent<S> {
    /// A disconnected agent. `chain` continues the device's receipt chain
    /// (`ChainState::default()` for a new key; the persisted state after a
    /// restart).
    pub fn new(config: Config, signer: S, chain: ChainState) -> Result<Self, Error> {
        let p = &config.policy;
        let invalid = |field, rule| Err(Error::Config(ConfigError { field, rule }));
        if p.max_concurrent == 0 || p.max_concurrent as usize > MAX_JOBS {
            return invalid("policy.max_concurrent", "must be 1 to 4 (limits::MAX_JOBS)");
        }
        if p.heartbeat_interval.micros == 0 {
            return invalid("policy.heartbeat_interval", "must not be zero");
        }
        if p.peer_timeout.micros == 0 {
            return invalid("policy.peer_timeout", "must not be zero");
        }
        let key_id = signer.key_id();
        Ok(Agent {
            heartbeat_interval: p.heartbeat_interval,
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
            rx: [0; MAX_FRAME],
            rx_len: 0,
            rx_held: false,
            input_view: None,
            tx: TxQueue::new(),
            events: Deque::new(),
            jobs: Vec::new(),
            chain,
            evidence_hash: [0; 32],
            stats: Stats::default(),
        })
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

    /// The provider's heartbeat now: jobs held, and the capacity it offers.
    fn heartbeat(&self) -> Heartbeat {
        Heartbeat {
            active_jobs: self.jobs.len() as u8,
            capacity: if self.device_available {
                self.config.policy.max_concurrent
            } else {
                0
            },
        }
    }

    /// Counters for an operator.
    pub fn stats(&self) -> Stats {
        Stats {
            frames_out: self.tx.frames(),
            ..self.stats
        }
    }

    /// The receipt chain position, to persist so that it survives restarts.
    pub fn chain(&self) -> ChainState {
        self.chain
    }

    /// The device key's id.
    pub fn key_id(&self) -> KeyId {
        self.key_id
    }

    /// Jobs the agent holds, in any state.
    pub fn active_jobs(&self) -> usize {
        self.jobs.len()
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

    /// The signed receipt of a job that has ended, until it is acknowledged.
    pub fn job_receipt(&self, job: JobId) -> Option<&[u8]> {
        self.find(job)
            .and_then(|i| self.jobs[i].result())
            .map(|r| &r.receipt[..])
    }

    fn find(&self, job: JobId) -> Option<usize> {
        self.jobs.iter().position(|j| j.id == job)
    }

    // ----- connection -------------------------------------------------------

    /// The host opened a transport to the coordinator: the agent queues `Hello`.
    /// `WouldBlock` while events wait to be read: drain `poll_event` first.
    pub fn connect(&mut self, now: Instant) -> Result<(), Error> {
        if !matches!(self.conn, ConnState::Disconnected | ConnState::Closed) {
            return Err(Error::Usage(UsageError::AlreadyConnected));
        }
        if MAX_EVENTS - self.events.len() < EVENT_RESERVE || self.data_event_queued() {
            // Events must be drained first, so none can be lost (a queued
            // `JobData` borrows the input buffer the new session reuses).
            return Err(Error::WouldBlock);
        }
        if self.conn == ConnState::Closed {
            // A new session after a goodbye: the drain is over.
            self.draining = false;
            self.host_drain = false;
        }
        self.heartbeat_interval = self.config.policy.heartbeat_interval;
        self.epoch = self.epoch.wrapping_add(1);
        self.reset_input();
        self.tx.clear();
        self.conn = ConnState::AwaitingWelcome;
        self.last_rx = now;
        let hello = Message::Hello(Hello {
            min_version: PROTOCOL_VERSION_MIN,
            max_version: PROTOCOL_VERSION_MAX,
            agent_version: self.config.agent_version,
            key_id: self.key_id,
            next_sequence: self.chain.next_sequence,
            prev_hash: self.chain.prev_hash,
        });
        self.enqueue(&hello)
    }

    /// The host's transport closed or failed. Jobs still receiving inputs are
    /// cancelled; running jobs go on; results wait for the next session.
    pub fn disconnected(&mut self, _now: Instant) {
        if matches!(self.conn, ConnState::Disconnected | ConnState::Closed) {
            return;
        }
        self.drop_connection();
    }

    /// Forgets partial input. A frame whose `JobData` event is still queued
    /// is kept until the host reads the event: its job may go on running
    /// (its last chunk completes the inputs), and must not run on partial
    /// inputs. Queued output stays, so that a final `Error` or `Goodbye` can
    /// still be flushed before the host closes the transport; `connect`
    /// clears it.
    fn reset_input(&mut self) {
        if self.rx_held && self.data_event_queued() {
            return;
        }
        self.input_view = None;
        self.rx_held = false;
        self.rx_len = 0;
    }

    fn drop_connection(&mut self) {
        self.reset_input();
        self.conn = ConnState::Disconnected;
        let mut i = 0;
        while i < self.jobs.len() {
            let job = &mut self.jobs[i];
            let id = job.id;
            match &mut job.phase {
                Phase::Accepted => {
                    self.jobs.swap_remove(i);
                    continue;
                }
                Phase::Assigned {
                    step: Step::Receiving { failure, .. },
                    ..
                } => {
                    let host_told = failure.is_some();
                    self.jobs.swap_remove(i);
                    if !host_told {
                        self.push_event(EventRecord::CancelJob(id, CancelReason::Disconnected));
                    }
                    continue;
                }
                Phase::Assigned {
                    step: Step::AwaitingAck { unsent, .. },
                    ..
                } => *unsent = true,
                Phase::Assigned { .. } => {}
            }
            i += 1;
        }
    }

    /// Ends the connection because of `reason`: tells the host to close it.
    fn disconnect(&mut self, reason: DisconnectReason) {
        self.drop_connection();
        self.push_event(EventRecord::Disconnect(reason));
    }

    /// Stop taking jobs, finish those in flight, then say goodbye
    /// (operator shutdown): the session ends with `Disconnect(Drained)`.
    /// A drain the coordinator asks for (its `Drain`) ends with
    /// `Disconnect(PeerDrained)` instead, unless the host asks too.
    pub fn drain(&mut self, now: Instant) -> Result<(), Error> {
        self.require_event_room(1)?;
        let before = self.host_drain;
        self.host_drain = true;
        if self.draining {
            return Ok(());
        }
        self.start_drain(now)
            .inspect_err(|_| self.host_drain = before)
    }

    /// Starts draining: `Drain` to the coordinator if `Ready`.
    fn start_drain(&mut self, _now: Instant) -> Result<(), Error> {
        if self.conn == ConnState::Ready {
            // Queue the notice before changing anything, so that a full queue
            // leaves the call to be repeated.
            self.enqueue(&Message::Drain)?;
        }
        self.draining = true;
        // With no job left the goodbye goes now; if the queue is full it goes
        // at the next timer (`handle_timeout` checks again).
        let _ = self.check_drained();
        Ok(())
    }

    fn check_drained(&mut self) -> Result<(), Error> {
        if self.draining && self.conn == ConnState::Ready && self.jobs.is_empty() {
            self.enqueue(&Message::Goodbye(Goodbye {
                reason: GoodbyeReason::Drained,
            }))?;
            self.conn = ConnState::Closed;
            let reason = if self.host_drain {
                DisconnectReason::Drained
            } else {
                DisconnectReason::PeerDrained
            };
            self.push_event(EventRecord::Disconnect(reason));
        }
        Ok(())
    }

    // ----- input ------------------------------------------------------------

    /// Feeds bytes received from the coordinator. Returns how many were
    /// consumed: fewer than given when the event or outgoing queue needs
    /// draining first (drain `poll_transmit` and `poll_event`, then pass the
    /// rest again). On error, `InputError::consumed` says how many bytes were
    /// used up, the offending frame included; an `Error` frame was queued for
    /// the peer, and for fatal errors the connection is ended with
    /// [`Event::Disconnect`].
    pub fn handle_input(&mut self, now: Instant, bytes: &[u8]) -> Result<usize, InputError> {
        if !self.is_connected() {
            return Err(InputError {
                consumed: 0,
                error: Error::Usage(UsageError::NotConnected),
            });
        }
        // Bytes arrived: the peer is alive, even if the host is slow to take them.
        if !bytes.is_empty() {
            self.last_rx = now;
        }
        if self.rx_held {
            if self.data_event_queued() {
                return Ok(0);
            }
            self.input_view = None;
            self.rx_held = false;
            self.rx_len = 0;
        }
        let mut consumed = 0;
        while consumed < bytes.len() {
            if MAX_EVENTS - self.events.len() < EVENT_RESERVE || self.tx.free() < TX_RESERVE {
                break;
            }
            let want = if self.rx_len < HEADER_LEN {
                HEADER_LEN
            } else {
                match Header::decode(&self.rx[..self.rx_len]) {
                    Ok(h) => h.frame_len(),
                    Err(_) => HEADER_LEN,
                }
            };
            let take = (want - self.rx_len).min(bytes.len() - consumed);
            self.rx[self.rx_len..self.rx_len + take]
                .copy_from_slice(&bytes[consumed..consumed + take]);
            self.rx_len += take;
            consumed += take;
            if self.rx_len < HEADER_LEN {
                break;
            }
            let header = match Header::decode(&self.rx[..HEADER_LEN]) {
                Ok(h) => h,
                Err(e) => {
                    let error = Error::Peer(PeerError::Decode(e));
                    self.refuse(&error, 0);
                    return Err(InputError { consumed, error });
                }
            };
            if self.rx_len < header.frame_len() {
                continue;
            }
            self.stats.frames_in += 1;
            let result = self.process_frame(now, header);
            if !self.rx_held {
                self.rx_len = 0;
            }
            if let Err((error, job)) = result {
                self.refuse(&error, job);
                return Err(InputError { consumed, error });
            }
            if self.rx_held || !self.is_connected() {
                break;
            }
        }
        Ok(consumed)
    }

    fn is_connected(&self) -> bool {
        matches!(
            self.conn,
            ConnState::AwaitingWelcome | ConnState::AwaitingReady | ConnState::Ready
        )
    }

    fn data_event_queued(&self) -> bool {
        self.events
            .iter()
            .any(|e| matches!(e, EventRecord::JobData { .. }))
    }

    /// Reports a peer error back: an `Error` frame, and for fatal errors the
    /// end of the connection.
    fn refuse(&mut self, error: &Error, job: JobId) {
        self.stats.frames_refused += 1;
        if let Some(code) = error.wire_code() {
            let _ = self.enqueue(&Message::Error(ErrorMsg {
                code: code as u16,
                job,
            }));
        }
        if error.is_fatal() {
            self.disconnect(DisconnectReason::ProtocolViolation);
        }
    }

    fn process_frame(&mut self, now: Instant, header: Header) -> Result<(), (Error, JobId)> {
        let frame_len = header.frame_len();
        // Decode from a copy of the indices so `self` stays borrowable; chunk
        // data is re-sliced from `rx` when the event is polled.
        let rx = &self.rx[..frame_len];
        let msg = Message::decode(rx).map_err(|e| (Error::Peer(PeerError::Decode(e)), 0))?;
        if msg.kind().direction() == Direction::ToCoordinator {
            return Err((Error::Peer(PeerError::UnexpectedMessage(msg.kind())), 0));
        }
        match msg {
            Message::Welcome(w) => self.on_welcome(now, w).map_err(|e| (e, 0)),
            Message::Ready => self.on_ready(now).map_err(|e| (e, 0)),
            Message::JobOffer(o) => self.on_offer(now, o),
            Message::JobAssign(a) => self.on_assign(a),
            Message::InputChunk(c) => {
                let data_at = frame_len - c.data.len();
                let (job, stream, index, digest, len) =
                    (c.job, c.stream, c.index, c.digest, c.data.len());
                self.on_chunk(now, job, stream, index, digest, data_at, len)
            }
            Message::ResultAck(r) => self.on_ack(r.job),
            Message::Cancel(c) => self.on_cancel(c.job, c.reason),
            Message::ResultRefuse(r) => self.on_refuse(r.job, r.reason),
            Message::Heartbeat(_) => Ok(()),
            Message::Drain => {
                self.require_ready(MessageType::Drain)?;
                if self.draining {
                    return Ok(());
                }
                self.start_drain(now).map_err(|e| (e, 0))
            }
            Message::Goodbye(_) => {
                self.disconnect(DisconnectReason::PeerGoodbye);
                self.conn = ConnState::Closed;
                Ok(())
            }
            Message::Error(e) => {
                if self.conn == ConnState::Ready {
                    self.push_event(EventRecord::PeerError(e.code, e.job));
                } else {
                    self.disconnect(DisconnectReason::Refused(e.code));
                }
                Ok(())
            }
            other => Err((Error::Peer(PeerError::UnexpectedMessage(other.kind())), 0)),
        }
    }

    fn require_ready(&self, kind: MessageType) -> Result<(), (Error, JobId)> {
        if self.conn == ConnState::Ready {
            Ok(())
        } else {
            Err((Error::Peer(PeerError::UnexpectedMessage(kind)), 0))
        }
    }

    fn on_welcome(&mut self, now: Instant, w: Welcome) -> Result<(), Error> {
        if self.conn != ConnState::AwaitingWelcome {
            return Err(Error::Peer(PeerError::UnexpectedMessage(
                MessageType::Welcome,
            )));
        }
        if !(PROTOCOL_VERSION_MIN..=PROTOCOL_VERSION_MAX).contains(&w.version) {
            return Err(Error::Peer(PeerError::UnsupportedVersion(w.version)));
        }
        // Per session: 0 means the provider's own setting, whatever an
        // earlier session's coordinator asked for.
        self.heartbeat_interval = if w.heartbeat_ms > 0 {
            Duration::from_millis(w.heartbeat_ms as u64)
        } else {
            self.config.policy.heartbeat_interval
        };
        let evidence = Evidence {
            challenge: w.challenge,
            public_key: self.signer.public_key(),
            agent_version: self.config.agent_version,
            boot_id: self.config.boot_id,
            issued_at: now.micros,
            chain: self.chain,
            capabilities: self.config.capabilities.clone(),
        };
        let mut signed = [0u8; EVIDENCE_LEN];
        let n = evidence
            .sign(&mut self.signer, &mut signed)
            .map_err(Error::Signer)?;
        self.evidence_hash = Evidence::hash(&signed[..n]);
        self.enqueue(&Message::Evidence(Blob {
            bytes: &signed[..n],
        }))?;
        self.conn = ConnState::AwaitingReady;
        Ok(())
    }

    fn on_ready(&mut self, now: Instant) -> Result<(), Error> {
        if self.conn != ConnState::AwaitingReady {
            return Err(Error::Peer(PeerError::UnexpectedMessage(
                MessageType::Ready,
            )));
        }
        self.conn = ConnState::Ready;
        self.next_heartbeat = now + self.heartbeat_interval;
        self.push_event(EventRecord::Ready);
        for i in 0..self.jobs.len() {
            self.start_resend(i);
        }
        if self.draining {
            self.enqueue(&Message::Drain)?;
        }
        self.flush_outcomes();
        self.check_drained()
    }

    /// Starts delivering again a held result not yet sent on this
    /// connection: its outputs are asked of the host; a result without
    /// outputs goes out from `flush_outcomes`.
    fn start_resend(&mut self, i: usize) {
        let epoch = self.epoch;
        let job = &mut self.jobs[i];
        let Phase::Assigned { spec, step } = &mut job.phase else {
            return;
        };
        let Step::AwaitingAck {
            result,
            unsent: true,
        } = step
        else {
            return;
        };
        if !matches!(result.outcome, Outcome::Completed { output_len, .. } if output_len > 0) {
            return;
        }
        *step = Step::Resending {
            upload: Upload::new(spec, epoch),
            result: result.clone(),
        };
        let id = job.id;
        self.push_event(EventRecord::ResendOutputs(id));
    }

    fn on_offer(&mut self, now: Instant, offer: JobOffer) -> Result<(), (Error, JobId)> {
        self.require_ready(MessageType::JobOffer)?;
        let decision = if self.find(offer.job).is_some() {
            Err(crate::wire::DeclineReason::DuplicateJob)
        } else {
            self.config.policy.evaluate(
                &offer,
                &self.config.capabilities,
                self.jobs.len(),
                self.draining,
                self.device_available,
            )
        };
        let reply = match decision {
            Ok(price) => {
                let deadline = now + Duration::from_millis(offer.deadline_ms as u64);
                let evidence = self.evidence_hash;
                if self
                    .jobs
                    .push(Job::new(&offer, price, deadline, evidence))
                    .is_err()
                {
                    // Policy already bounds this by MAX_JOBS.
                    Message::OfferDecline(OfferDecline {
                        job: offer.job,
                        reason: crate::wire::DeclineReason::AtCapacity,
                    })
                } else {
                    self.stats.offers_accepted += 1;
                    Message::OfferAccept(OfferAccept {
                        job: offer.job,
                        price,
                    })
                }
            }
            Err(reason) => {
                self.stats.offers_declined += 1;
                Message::OfferDecline(OfferDecline {
                    job: offer.job,
                    reason,
                })
            }
        };
        self.enqueue(&reply).map_err(|e| (e, offer.job))
    }

    fn on_assign(&mut self, a: JobAssign) -> Result<(), (Error, JobId)> {
        self.require_ready(MessageType::JobAssign)?;
        let id = a.job;
        let i = self
            .find(id)
            .ok_or((Error::Peer(PeerError::UnknownJob(id)), id))?;
        let job = &mut self.jobs[i];
        if !matches!(job.phase, Phase::Accepted) {
            return Err((
                Error::Peer(PeerError::UnexpectedMessage(MessageType::JobAssign)),
                id,
            ));
        }
        if !assignment_is_sane(&a, job.bytes_in, job.bytes_out) {
            self.jobs.swap_remove(i);
            return Err((Error::Peer(PeerError::BadAssignment(id)), id));
        }
        job.phase = Phase::Assigned {
            spec: a,
            step: Step::Receiving {
                input: Input::new(),
                failure: None,
            },
        };
        self.push_event(EventRecord::JobAssigned(id));
        // A kernel is never empty, so inputs always follow.
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn on_chunk(
        &mut self,
        now: Instant,
        id: JobId,
        stream: u8,
        index: u32,
        digest: Digest,
        data_at: usize,
        len: usize,
    ) -> Result<(), (Error, JobId)> {
        self.require_ready(MessageType::InputChunk)?;
        let i = self
            .find(id)
            .ok_or((Error::Peer(PeerError::UnknownJob(id)), id))?;
        let unexpected = (
            Error::Peer(PeerError::UnexpectedMessage(MessageType::InputChunk)),
            id,
        );
        let Phase::Assigned { spec, step } = &mut self.jobs[i].phase else {
            return Err(unexpected);
        };
        let Step::Receiving {
            input,
            failure: None,
        } = step
        else {
            return Err(unexpected);
        };
        let (offset, expected_len) = input.next_chunk(spec);
        if stream != input.stream || index as u64 != input.chunk || len != expected_len {
            return Err((Error::Peer(PeerError::ChunkOutOfOrder(id)), id));
        }
        let leaf = crate::merkle::leaf_hash(&self.rx[data_at..data_at + len]);
        if leaf != digest {
            self.fail_inputs(now, i, ErrorCode::ChunkDigestMismatch);
            return Ok(());
        }
        let received = input.push(spec, leaf);
        if received == Received::Complete {
            *step = Step::Running {
                started_at: now,
                failure: None,
            };
        }
        self.rx_held = true;
        self.push_event(EventRecord::JobData {
            job: id,
            stream,
            offset,
            len,
        });
        match received {
            Received::More => Ok(()),
            Received::Corrupt => {
                self.fail_inputs(now, i, ErrorCode::RootMismatch);
                Ok(())
            }
            Received::Complete => {
                self.push_event(EventRecord::RunJob(id));
                self.enqueue(&Message::Started(JobRef { job: id }))
                    .map_err(|e| (e, id))
            }
        }
    }

    /// An input failed its digest or root: tell the peer, cancel on the host,
    /// and end the job with a signed failure.
    fn fail_inputs(&mut self, now: Instant, i: usize, code: ErrorCode) {
        let id = self.jobs[i].id;
        let _ = self.enqueue(&Message::Error(ErrorMsg {
            code: code as u16,
            job: id,
        }));
        self.push_event(EventRecord::CancelJob(id, CancelReason::InputIntegrity));
        self.end_failed_or_retry(
            now,
            i,
            FailReason::InputIntegrity,
            code as u32,
            Usage::default(),
        );
    }

    fn on_ack(&mut self, id: JobId) -> Result<(), (Error, JobId)> {
        self.require_ready(MessageType::ResultAck)?;
        let i = self
            .find(id)
            .ok_or((Error::Peer(PeerError::UnknownJob(id)), id))?;
        let Some(Step::AwaitingAck {
            result,
            unsent: false,
        }) = self.jobs[i].step()
        else {
            return Err((
                Error::Peer(PeerError::UnexpectedMessage(MessageType::ResultAck)),
                id,
            ));
        };
        match result.outcome {
            Outcome::Completed { .. } => {
                self.stats.jobs_completed += 1;
                self.stats.earnings = self.stats.earnings.saturating_add(result.price);
            }
            Outcome::Failed { .. } => self.stats.jobs_failed += 1,
        }
        self.jobs.swap_remove(i);
        self.push_event(EventRecord::ResultAcknowledged(id));
        self.check_drained().map_err(|e| (e, id))
    }

    /// The coordinator will not accept the result: forget it as if it were
    /// acknowledged (the receipt stays in the chain), and tell the host.
    fn on_refuse(&mut self, id: JobId, reason: u16) -> Result<(), (Error, JobId)> {
        self.require_ready(MessageType::ResultRefuse)?;
        let i = self
            .find(id)
            .ok_or((Error::Peer(PeerError::UnknownJob(id)), id))?;
        if !matches!(
            self.jobs[i].step(),
            Some(Step::AwaitingAck { unsent: false, .. })
        ) {
            return Err((
                Error::Peer(PeerError::UnexpectedMessage(MessageType::ResultRefuse)),
                id,
            ));
        }
        self.stats.results_refused += 1;
        self.jobs.swap_remove(i);
        self.push_event(EventRecord::ResultRefused(id, reason));
        self.check_drained().map_err(|e| (e, id))
    }

    fn on_cancel(&mut self, id: JobId, reason: u16) -> Result<(), (Error, JobId)> {
        self.require_ready(MessageType::Cancel)?;
        let i = self
            .find(id)
            .ok_or((Error::Peer(PeerError::UnknownJob(id)), id))?;
        let job = &self.jobs[i];
        if job.result().is_some() {
            // The result exists and is signed: it must be acknowledged, not lost.
            return Err((
                Error::Peer(PeerError::UnexpectedMessage(MessageType::Cancel)),
                id,
            ));
        }
        // A job whose failure the host knows of was dropped by the host already.
        let knows = job.host_knows() && job.failure().is_none();
        self.jobs.swap_remove(i);
        if knows {
            self.push_event(EventRecord::CancelJob(id, CancelReason::Requested(reason)));
        }
        self.check_drained().map_err(|e| (e, id))
    }

    // ----- host calls for jobs ---------------------------------------------

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

    /// Reports a running job's progress, in thousandths.
    pub fn report_progress(
        &mut self,
        _now: Instant,
        id: JobId,
        permille: u16,
    ) -> Result<(), Error> {
        let i = self.live_job_index(id)?;
        if !matches!(self.jobs[i].step(), Some(Step::Running { .. })) {
            return Err(Error::Usage(UsageError::InvalidJobState(id)));
        }
        if self.conn != ConnState::Ready {
            return Ok(());
        }
        self.enqueue(&Message::Progress(Progress {
            job: id,
            permille: permille.min(1000),
        }))
    }

    /// Where the next `send_output` call for a job must start: the read-back
    /// buffer index and the byte offset in it.
    pub fn output_cursor(&self, id: JobId) -> Option<(u8, u64)> {
        let Phase::Assigned { spec, step } = &self.jobs[self.find(id)?].phase else {
            return None;
        };
        match step {
            Step::Running { .. } => Some((first_readback(spec)?, 0)),
            Step::Uploading { upload, .. } | Step::Resending { upload, .. } => {
                Some((upload.buffer, upload.offset))
            }
            Step::Receiving { .. } | Step::AwaitingAck { .. } => None,
        }
    }

    /// Writes output bytes of read-back buffer `buffer`, continuing where the
    /// last call stopped. Returns how many bytes were taken (whole chunks, or
    /// the buffer's tail): 0 when the outgoing queue is full, in which case
    /// drain `poll_transmit` and call again with the same bytes. Bytes beyond
    /// the buffer's end are not taken.
    pub fn send_output(
        &mut self,
        _now: Instant,
        id: JobId,
        buffer: u8,
        data: &[u8],
    ) -> Result<usize, Error> {
        let i = self.live_job_index(id)?;
        let epoch = self.epoch;
        let connected = self.conn == ConnState::Ready;
        let Phase::Assigned { spec, step } = &mut self.jobs[i].phase else {
            return Err(Error::Usage(UsageError::InvalidJobState(id)));
        };
        if let Step::Running {
            started_at,
            failure: None,
        } = *step
        {
            // Check the call before the job changes state: a refused call
            // leaves the job running.
            if first_readback(spec) != Some(buffer) {
                return Err(Error::Usage(UsageError::OutputOutOfOrder(id)));
            }
            *step = Step::Uploading {
                started_at,
                upload: Upload::new(spec, epoch),
                failure: None,
            };
        }
        let (Step::Uploading { upload, .. } | Step::Resending { upload, .. }) = step else {
            return Err(Error::Usage(UsageError::InvalidJobState(id)));
        };
        let total = buffer_len(spec, upload.buffer);
        if buffer != upload.buffer || upload.offset >= total {
            return Err(Error::Usage(UsageError::OutputOutOfOrder(id)));
        }
        let send = connected && upload.epoch == epoch;
        let mut taken = 0usize;
        while upload.offset < total {
            let want = (total - upload.offset).min(CHUNK_SIZE as u64) as usize;
            if data.len() - taken < want {
                break;
            }
            if send && self.tx.free() < want + TX_RESERVE {
                break;
            }
            let chunk = &data[taken..taken + want];
            let digest = crate::merkle::leaf_hash(chunk);
            if send {
                let msg = Message::OutputChunk(Chunk {
                    job: id,
                    stream: upload.buffer,
                    index: (upload.offset / CHUNK_SIZE as u64) as u32,
                    digest,
                    data: chunk,
                });
                match self.tx.push(&msg) {
                    Ok(()) => {}
                    Err(Error::WouldBlock) => break,
                    Err(e) => return Err(e),
                }
            }
            upload.builder.push_leaf(digest);
            upload.offset += want as u64;
            taken += want;
        }
        // Move to the next read-back buffer once this one is complete.
        if upload.offset >= total {
            if let Some(next) = next_readback(spec, upload.buffer) {
                upload.buffer = next;
                upload.offset = 0;
            }
        }
        Ok(taken)
    }

    /// Writes as much of a job's outputs as the outgoing queue takes,
    /// continuing where the last call stopped: a convenience over
    /// [`Agent::send_output`]. `outputs` holds every read-back buffer's
    /// contents, in binding order. Returns `true` once everything is written
    /// (then call [`Agent::finish_job`]), `false` when the queue is full (drain
    /// `poll_transmit`, then call again).
    pub fn send_outputs(
        &mut self,
        now: Instant,
        id: JobId,
        outputs: &[&[u8]],
    ) -> Result<bool, Error> {
        let i = self.job_index(id)?;
        let readback = self.jobs[i]
            .spec()
            .map(|s| s.buffers.iter().filter(|b| b.readback).count())
            .unwrap_or(0);
        if outputs.len() != readback {
            return Err(Error::Usage(UsageError::OutputOutOfOrder(id)));
        }
        loop {
            let job = &self.jobs[self.job_index(id)?];
            let (spec, buffer, offset) = match &job.phase {
                Phase::Assigned {
                    spec,
                    step: Step::Running { .. },
                } => match first_readback(spec) {
                    Some(b) => (spec, b, 0),
                    None => return Ok(true),
                },
                Phase::Assigned {
                    spec,
                    step: Step::Uploading { upload, .. } | Step::Resending { upload, .. },
                } => (spec, upload.buffer, upload.offset),
                _ => return Err(Error::Usage(UsageError::InvalidJobState(id))),
            };
            let len = buffer_len(spec, buffer);
            if offset >= len && next_readback(spec, buffer).is_none() {
                return Ok(true);
            }
            let position = spec
                .buffers
                .iter()
                .take(buffer as usize)
                .filter(|b| b.readback)
                .count();
            let data = outputs.get(position).copied().unwrap_or(&[]);
            if data.len() as u64 != len {
                return Err(Error::Usage(UsageError::OutputOutOfOrder(id)));
            }
            let n = self.send_output(now, id, buffer, &data[offset as usize..])?;
            if n == 0 {
                return Ok(false);
            }
        }
    }

    /// Ends a job whose outputs were all written: signs its receipt over the
    /// metered `usage` and sends the outcome. After a reconnect
    /// ([`Event::ResendOutputs`]) it checks the outputs are the same and sends
    /// the receipt signed the first time (`usage` is then ignored).
    pub fn finish_job(&mut self, now: Instant, id: JobId, usage: Usage) -> Result<(), Error> {
        self.require_event_room(HOST_CALL_EVENTS)?;
        let i = self.live_job_index(id)?;
        let ready = self.conn == ConnState::Ready;
        let epoch = self.epoch;
        let Phase::Assigned { spec, step } = &mut self.jobs[i].phase else {
            return Err(Error::Usage(UsageError::InvalidJobState(id)));
        };
        let output_len: u64 = spec
            .buffers
            .iter()
            .filter(|b| b.readback)
            .fold(0, |sum, b| sum.saturating_add(b.len));
        let (output_root, fresh_connection) = match step {
            // A job without read-back buffers has nothing to upload.
            Step::Running { .. } if first_readback(spec).is_none() => {
                (crate::merkle::empty_root(), true)
            }
            Step::Uploading { upload, .. } | Step::Resending { upload, .. } => {
                if !upload.is_complete(spec) {
                    return Err(Error::Usage(UsageError::OutputIncomplete(id)));
                }
                (upload.builder.root(), upload.epoch == epoch && ready)
            }
            _ => return Err(Error::Usage(UsageError::InvalidJobState(id))),
        };
        if let Step::Resending { upload, result } = step {
            let same = matches!(
                result.outcome,
                Outcome::Completed { output_root: first, .. } if first == output_root
            );
            if !same {
                // Restart the upload: the host must write the original outputs.
                *upload = Upload::new(spec, upload.epoch);
                return Err(Error::Usage(UsageError::OutputMismatch(id)));
            }
            *step = Step::AwaitingAck {
                result: result.clone(),
                unsent: true,
            };
        } else {
            let outcome = Outcome::Completed {
                output_len,
                output_root,
            };
            self.sign_outcome(now, i, outcome, usage)?;
        }
        if fresh_connection || output_len == 0 {
            self.flush_outcomes();
        } else if ready {
            // Part of the upload went to an earlier connection: send it again.
            self.start_resend(i);
        }
        Ok(())
    }

    /// Ends a running job that could not complete: signs a failure receipt over
    /// the metered `usage` and sends it.
    ///
    /// A [`FailReason::Timeout`] (the kernel ran out the time limit the host
    /// gave it) is charged the job's quote ([`Policy::charge_timeout`]); its
    /// GPU time is what the host metered, at most the time from the start to
    /// the job's deadline. Every other failure is charged 0. After the
    /// deadline the agent has already ended the job with the same status and
    /// price, and a late call gets `InvalidJobState`.
    pub fn fail_job(
        &mut self,
        now: Instant,
        id: JobId,
        reason: FailReason,
        detail: u32,
        usage: Usage,
    ) -> Result<(), Error> {
        self.require_event_room(1)?;
        let i = self.live_job_index(id)?;
        let job = &self.jobs[i];
        let (Some(Step::Running { started_at, .. }) | Some(Step::Uploading { started_at, .. })) =
            job.step()
        else {
            return Err(Error::Usage(UsageError::InvalidJobState(id)));
        };
        let mut usage = usage;
        if reason == FailReason::Timeout {
            usage.gpu_time_us = usage.gpu_time_us.min(job.time_to_deadline(*started_at));
        }
        // On a signer error the job is unchanged: the host may call again.
        self.end_failed(now, i, reason, detail, usage)
    }

    /// Signs and sends a failure.
    fn end_failed(
        &mut self,
        now: Instant,
        i: usize,
        reason: FailReason,
        detail: u32,
        usage: Usage,
    ) -> Result<(), Error> {
        self.sign_outcome(now, i, Outcome::Failed { reason, detail }, usage)?;
        self.flush_outcomes();
        Ok(())
    }

    /// Ends a job with a failure the agent decided on. If the signer cannot
    /// sign now (a busy secure element, say), the failure is kept, with its
    /// reason, and retried every second; the job takes no more input.
    fn end_failed_or_retry(
        &mut self,
        now: Instant,
        i: usize,
        reason: FailReason,
        detail: u32,
        usage: Usage,
    ) {
        if self.end_failed(now, i, reason, detail, usage).is_ok() {
            return;
        }
        let job = &mut self.jobs[i];
        job.deadline = now + Duration::from_secs(1);
        if let Phase::Assigned {
            step:
                Step::Receiving { failure, .. }
                | Step::Running { failure, .. }
                | Step::Uploading { failure, .. },
            ..
        } = &mut job.phase
        {
            *failure = Some(PendingFailure {
                reason,
                detail,
                usage,
            });
        }
    }

    /// Signs the receipt of a job whose result is not signed yet, for
    /// `outcome` and the metered `usage` (the transfer sizes are the job's),
    /// and moves it to `AwaitingAck`, its outcome not yet sent.
    fn sign_outcome(
        &mut self,
        now: Instant,
        i: usize,
        outcome: Outcome,
        usage: Usage,
    ) -> Result<(), Error> {
        let job = &mut self.jobs[i];
        let id = job.id;
        let Phase::Assigned { spec, step } = &mut job.phase else {
            return Err(Error::Usage(UsageError::InvalidJobState(id)));
        };
        let started_at = match step {
            Step::Receiving { .. } => Instant::ZERO,
            Step::Running { started_at, .. } | Step::Uploading { started_at, .. } => *started_at,
            // Signed already.
            Step::Resending { .. } | Step::AwaitingAck { .. } => {
                return Err(Error::Usage(UsageError::InvalidJobState(id)));
            }
        };
        let khash = spec.kernel_hash();
        let (status, output_root, output_len) = match outcome {
            Outcome::Completed {
                output_len,
                output_root,
            } => (ReceiptStatus::Completed, output_root, output_len),
            Outcome::Failed { reason, .. } => (
                ReceiptStatus::Failed(reason),
                crate::merkle::empty_root(),
                0,
            ),
        };
        // `bytes_in` saturates, as in `assignment_is_sane`: with no transfer
        // limit configured, the sizes may add up past `u64::MAX`.
        let usage = Usage {
            bytes_in: spec.bytes_in(),
            bytes_out: output_len,
            ..usage
        };
        let policy = &self.config.policy;
        let price = match status {
            ReceiptStatus::Completed => policy.charge(&usage, job.max_price),
            ReceiptStatus::Failed(FailReason::Timeout) => policy.charge_timeout(job.quote),
            ReceiptStatus::Failed(_) => 0,
        };
        let rhash = result_hash(&khash, &spec.inputs_root, &output_root, output_len);
        let receipt = Receipt {
            status,
            job: id,
            requester_nonce: spec.requester_nonce,
            kernel_hash: khash,
            input_root: spec.inputs_root,
            output_root,
            output_len,
            result_hash: rhash,
            result_seal: result_seal(&self.signer.public_key(), id, &rhash),
            usage,
            price,
            started_at: started_at.micros,
            ended_at: now.micros,
            evidence_hash: job.evidence_hash,
            key_id: self.key_id,
            sequence: self.chain.next_sequence,
            prev_hash: self.chain.prev_hash,
        };
        let mut signed = [0u8; RECEIPT_LEN];
        let n = receipt
            .sign(&mut self.signer, &mut signed)
            .map_err(Error::Signer)?;
        // Every receipt is RECEIPT_LEN bytes (its payload has one length).
        debug_assert_eq!(n, RECEIPT_LEN);
        self.chain.advance(Receipt::hash(&signed[..n]));
        let persist = self.config.persist_results;
        *step = Step::AwaitingAck {
            result: SignedResult {
                outcome,
                usage,
                price,
                receipt: signed,
                chain_after: self.chain,
                persisted: !persist,
            },
            unsent: true,
        };
        if persist {
            self.push_event(EventRecord::PersistResult(id));
        }
        Ok(())
    }

    /// The host stored a job's result durably ([`Event::PersistResult`]): the
    /// agent may now send it.
    pub fn confirm_persisted(&mut self, _now: Instant, id: JobId) -> Result<(), Error> {
        let i = self.job_index(id)?;
        let Some(result) = self.jobs[i].result_mut() else {
            return Err(Error::Usage(UsageError::InvalidJobState(id)));
        };
        result.persisted = true;
        self.flush_outcomes();
        Ok(())
    }

    /// Everything the agent needs to deliver an ended job's result after a
    /// restart: store it on [`Event::PersistResult`], hand it back with
    /// [`Agent::restore_result`].
    pub fn result_record(&self, id: JobId) -> Option<ResultRecord> {
        let job = &self.jobs[self.find(id)?];
        let spec = job.spec()?;
        let result = job.result()?;
        Some(ResultRecord {
            job: id,
            spec: spec.clone(),
            outcome: result.outcome,
            usage: result.usage,
            price: result.price,
            receipt: result.receipt,
            next_sequence: result.chain_after.next_sequence,
            prev_hash: result.chain_after.prev_hash,
        })
    }

    /// Takes back a stored result after a restart. It is delivered like any
    /// result not yet acknowledged (outputs through [`Event::ResendOutputs`]):
    /// at the next `Ready`, or at once during a session. A host with more
    /// stored results than the agent holds ([`crate::limits::MAX_JOBS`])
    /// restores the oldest first, and each further one when an
    /// acknowledgement makes room, declining offers meanwhile
    /// ([`Agent::set_device_available`]) so that receipts go out in chain
    /// order.
    pub fn restore_result(&mut self, record: &ResultRecord) -> Result<(), Error> {
        if self.find(record.job).is_some() {
            return Err(Error::Usage(UsageError::InvalidJobState(record.job)));
        }
        if self.conn == ConnState::Ready && MAX_EVENTS - self.events.len() < EVENT_RESERVE {
            // Events must be drained first: the resend asks the host by one.
            return Err(Error::WouldBlock);
        }
        let job = Job {
            id: record.job,
            max_price: record.price,
            quote: record.price,
            bytes_in: record.usage.bytes_in,
            bytes_out: record.usage.bytes_out,
            // Its receipt is signed already: these are not read again.
            deadline: Instant::ZERO,
            evidence_hash: [0; 32],
            phase: Phase::Assigned {
                spec: record.spec.clone(),
                step: Step::AwaitingAck {
                    result: SignedResult {
                        outcome: record.outcome,
                        usage: record.usage,
                        price: record.price,
                        receipt: record.receipt,
                        chain_after: record.chain_after(),
                        persisted: true,
                    },
                    unsent: true,
                },
            },
        };
        self.jobs
            .push(job)
            .map_err(|_| Error::Usage(UsageError::CapacityExceeded))?;
        if self.conn == ConnState::Ready {
            self.start_resend(self.jobs.len() - 1);
            self.flush_outcomes();
        }
        Ok(())
    }

    /// Sends the outcome messages of ended jobs whose results have not gone out
    /// on this connection, as far as the outgoing queue allows.
    fn flush_outcomes(&mut self) {
        if self.conn != ConnState::Ready {
            return;
        }
        // Outcomes go out in receipt-chain order: the oldest signed result not
        // yet sent on this connection first, so that verifiers see sequence
        // numbers in order. One still being uploaded again holds the later ones.
        loop {
            let next = self
                .jobs
                .iter()
                .enumerate()
                .filter_map(|(i, j)| match j.step()? {
                    Step::AwaitingAck {
                        result,
                        unsent: true,
                    }
                    | Step::Resending { result, .. } => Some((i, result.chain_after.next_sequence)),
                    _ => None,
                })
                .min_by_key(|&(_, sequence)| sequence)
                .map(|(i, _)| i);
            let Some(i) = next else { return };
            let job = &mut self.jobs[i];
            let id = job.id;
            let Phase::Assigned {
                step: Step::AwaitingAck { result, unsent },
                ..
            } = &mut job.phase
            else {
                return;
            };
            if !result.persisted || self.tx.free() < MAX_OUTCOME_BYTES {
                return;
            }
            let first = match result.outcome {
                Outcome::Completed {
                    output_len,
                    output_root,
                } => Message::Completed(Completed {
                    job: id,
                    output_len,
                    output_root,
                }),
                Outcome::Failed { reason, detail } => Message::Failed(Failed {
                    job: id,
                    reason,
                    detail,
                }),
            };
            // Room was checked above, so these do not fail.
            let _ = self.tx.push(&first);
            let _ = self.tx.push(&Message::UsageReport(UsageReport {
                job: id,
                usage: result.usage,
                price: result.price,
            }));
            let _ = self.tx.push(&Message::Receipt(ReceiptMsg {
                job: id,
                bytes: &result.receipt,
            }));
            *unsent = false;
        }
    }

    // ----- output -----------------------------------------------------------

    fn enqueue(&mut self, msg: &Message<'_>) -> Result<(), Error> {
        self.tx.push(msg)
    }

    /// Copies queued outgoing bytes into `out`; returns how many, or `None`
    /// when nothing is queued. Call until `None` after every other call.
    pub fn poll_transmit(&mut self, _now: Instant, out: &mut [u8]) -> Option<usize> {
        self.flush_outcomes();
        self.tx.pop(out)
    }

    /// Bytes waiting in the outgoing queue.
    pub fn pending_transmit(&self) -> usize {
        self.tx.len()
    }

    /// The bytes of `job`'s last [`Event::JobData`], once that event has been
    /// polled and until the next [`Agent::handle_input`]; `None` otherwise.
    pub fn input(&self, job: JobId) -> Option<&[u8]> {
        match self.input_view {
            Some((j, start, len)) if j == job && self.rx_held && start + len <= self.rx_len => {
                Some(&self.rx[start..start + len])
            }
            _ => None,
        }
    }

    /// Copies the bytes of `job`'s last [`Event::JobData`] into `out`
    /// (see [`Agent::input`]); returns how many. `BufferTooSmall` with the
    /// length needed if `out` is shorter, `NoInput` if no chunk of `job`
    /// is readable now.
    pub fn read_input(&self, job: JobId, out: &mut [u8]) -> Result<usize, Error> {
        let data = self
            .input(job)
            .ok_or(Error::Usage(UsageError::NoInput(job)))?;
        let dst = out
            .get_mut(..data.len())
            .ok_or(Error::BufferTooSmall(data.len()))?;
        dst.copy_from_slice(data);
        Ok(data.len())
    }

    /// The next thing the host must do, oldest first.
    pub fn poll_event(&mut self) -> Option<Event> {
        let record = self.events.pop_front()?;
        Some(match record {
            EventRecord::Ready => Event::Ready,
            EventRecord::JobAssigned(job) => Event::JobAssigned { job },
            EventRecord::JobData {
                job,
                stream,
                offset,
                len,
            } => {
                self.input_view = Some((job, self.rx_len - len, len));
                Event::JobData {
                    job,
                    stream,
                    offset,
                    len,
                }
            }
            EventRecord::RunJob(job) => Event::RunJob { job },
            EventRecord::CancelJob(job, reason) => Event::CancelJob { job, reason },
            EventRecord::ResendOutputs(job) => Event::ResendOutputs { job },
            EventRecord::PersistResult(job) => Event::PersistResult { job },
            EventRecord::ResultAcknowledged(job) => Event::ResultAcknowledged { job },
            EventRecord::ResultRefused(job, reason) => Event::ResultRefused { job, reason },
            EventRecord::PeerError(code, job) => Event::PeerError { code, job },
            EventRecord::Disconnect(reason) => Event::Disconnect { reason },
        })
    }

    fn push_event(&mut self, e: EventRecord) {
        // Cannot fail: every caller checked the room first (see
        // `DISCONNECT_EVENTS`); tests and fuzzing run with this assertion.
        let pushed = self.events.push_back(e);
        debug_assert!(pushed.is_ok(), "event queue sized too small");
    }

    /// Free event slots.
    fn event_room(&self) -> usize {
        MAX_EVENTS - self.events.len()
    }

    /// `EventsPending` unless `n` events fit and leave room for a disconnect.
    fn require_event_room(&self, n: usize) -> Result<(), Error> {
        if self.event_room() < n + DISCONNECT_EVENTS {
            return Err(Error::EventsPending);
        }
        Ok(())
    }

    // ----- time -------------------------------------------------------------

    /// When the host must next call `handle_timeout`, if ever.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut next: Option<Instant> = None;
        let mut consider = |t: Instant| {
            next = Some(next.map_or(t, |n| n.min(t)));
        };
        if self.is_connected() {
            consider(self.last_rx + self.config.policy.peer_timeout);
        }
        if self.conn == ConnState::Ready {
            consider(self.next_heartbeat);
        }
        for job in self
            .jobs
            .iter()
            .filter(|j| j.has_deadline() || j.failure().is_some())
        {
            consider(job.deadline);
        }
        next
    }

    /// Runs the timers due at `now`: heartbeats, peer silence, job deadlines.
    ///
    /// While the host leaves more than 18 events unread (`MAX_EVENTS` less
    /// the most the timers and a disconnect queue) the timers wait; nothing
    /// is lost: [`Agent::poll_timeout`] still says they are due. Read events
    /// with [`Agent::poll_event`], then call again.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.event_room() < TIMER_EVENTS + DISCONNECT_EVENTS {
            return;
        }
        let mut i = 0;
        while i < self.jobs.len() {
            let job = &self.jobs[i];
            if let Some(&PendingFailure {
                reason,
                detail,
                usage,
            }) = job.failure()
            {
                if now >= job.deadline {
                    self.end_failed_or_retry(now, i, reason, detail, usage);
                }
                i += 1;
                continue;
            }
            if !job.has_deadline() || now < job.deadline {
                i += 1;
                continue;
            }
            let id = job.id;
            let (reason, usage) = match job.step() {
                None => {
                    // Never assigned: nothing to sign, the host never saw it.
                    self.jobs.swap_remove(i);
                    continue;
                }
                // The kernel never ran: nothing is charged.
                Some(Step::Receiving { .. }) => (FailReason::DeadlineExceeded, Usage::default()),
                // The kernel ran out its time: metered to the deadline and
                // charged the quote, as when the host reports the timeout.
                Some(Step::Running { started_at, .. } | Step::Uploading { started_at, .. }) => (
                    FailReason::Timeout,
                    Usage {
                        gpu_time_us: job.time_to_deadline(*started_at),
                        ..Usage::default()
                    },
                ),
                // Signed already: no deadline.
                Some(Step::Resending { .. } | Step::AwaitingAck { .. }) => {
                    i += 1;
                    continue;
                }
            };
            self.push_event(EventRecord::CancelJob(id, CancelReason::Deadline));
            self.end_failed_or_retry(now, i, reason, 0, usage);
            i += 1;
        }
        if self.is_connected() && now >= self.last_rx + self.config.policy.peer_timeout {
            self.disconnect(DisconnectReason::PeerSilent);
            return;
        }
        if self.conn == ConnState::Ready && now >= self.next_heartbeat {
            let hb = Message::Heartbeat(self.heartbeat());
            // A full queue already tells the peer we are alive.
            let _ = self.enqueue(&hb);
            self.next_heartbeat = now + self.heartbeat_interval;
        }
        let _ = self.check_drained();
    }
}

/// Encoded frames waiting to be sent, oldest first.
struct TxQueue {
    bytes: [u8; TX_CAPACITY],
    /// The queued bytes are `bytes[start..end]`.
    start: usize,
    end: usize,
    /// Frames queued since the agent was made.
    frames: u64,
}

impl TxQueue {
    fn new() -> Self {
        TxQueue {
            bytes: [0; TX_CAPACITY],
            start: 0,
            end: 0,
            frames: 0,
        }
    }

    /// Bytes queued.
    fn len(&self) -> usize {
        self.end - self.start
    }

    /// Bytes that can still be queued.
    fn free(&self) -> usize {
        TX_CAPACITY - self.len()
    }

    /// Frames queued since the agent was made.
    fn frames(&self) -> u64 {
        self.frames
    }

    /// Drops everything queued.
    fn clear(&mut self) {
        self.start = 0;
        self.end = 0;
    }

    /// Queues one frame; `WouldBlock` if it does not fit.
    fn push(&mut self, msg: &Message<'_>) -> Result<(), Error> {
        if TX_CAPACITY - self.end < MAX_FRAME && self.start > 0 {
            self.bytes.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        match msg.encode(&mut self.bytes[self.end..]) {
            Ok(n) => {
                self.end += n;
                self.frames += 1;
                Ok(())
            }
            Err(_) => Err(Error::WouldBlock),
        }
    }

    /// Moves the oldest queued bytes into `out`; how many, or `None` when
    /// nothing is queued.
    fn pop(&mut self, out: &mut [u8]) -> Option<usize> {
        let n = self.len().min(out.len());
        if n == 0 {
            return None;
        }
        out[..n].copy_from_slice(&self.bytes[self.start..self.start + n]);
        self.start += n;
        if self.start == self.end {
            self.clear();
        }
        Some(n)
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
    /// The signed receipt.
    #[serde(with = "receipt_bytes")]
    pub receipt: [u8; RECEIPT_LEN],
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
/// each byte), as a `heapless::Vec<u8, RECEIPT_LEN>` is, so that records
/// stored before the field became an array still read. A receipt of any
/// other length does not decode: it could not verify.
mod receipt_bytes {
    use core::fmt;

    use serde::de::{Error as _, SeqAccess, Visitor};
    use serde::{Deserializer, Serializer};

    use crate::attest::RECEIPT_LEN;

    pub fn serialize<S: Serializer>(receipt: &[u8; RECEIPT_LEN], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(receipt.iter())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; RECEIPT_LEN], D::Error> {
        d.deserialize_seq(ReceiptVisitor)
    }

    struct ReceiptVisitor;

    impl<'de> Visitor<'de> for ReceiptVisitor {
        type Value = [u8; RECEIPT_LEN];

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "a receipt of {RECEIPT_LEN} bytes")
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut receipt = [0u8; RECEIPT_LEN];
            for (i, byte) in receipt.iter_mut().enumerate() {
                *byte = seq
                    .next_element()?
                    .ok_or_else(|| A::Error::invalid_length(i, &self))?;
            }
            if seq.next_element::<u8>()?.is_some() {
                return Err(A::Error::invalid_length(RECEIPT_LEN + 1, &self));
            }
            Ok(receipt)
        }
    }
}

/// Bytes of the largest encoded [`ResultRecord`].
pub const MAX_RECORD_BYTES: usize = 2048;

/// Bytes of the three outcome frames (outcome, usage, receipt) of one job.
const MAX_OUTCOME_BYTES: usize = 3 * HEADER_LEN + 64 + 64 + 16 + RECEIPT_LEN;

fn stream_len(spec: &JobAssign, stream: u8) -> u64 {
    if stream == 0 {
        spec.kernel.len as u64
    } else {
        spec.buffers
            .get(stream as usize - 1)
            .map(|b| b.init_len)
            .unwrap_or(0)
    }
}

fn next_input_stream(spec: &JobAssign, after: u8) -> Option<u8> {
    spec.buffers
        .iter()
        .enumerate()
        .skip(after as usize)
        .find(|(_, b)| b.init_len > 0)
        .map(|(i, _)| i as u8 + 1)
}

fn first_readback(spec: &JobAssign) -> Option<u8> {
    spec.buffers
        .iter()
        .position(|b| b.readback)
        .map(|i| i as u8)
}

/// Length of buffer `buffer`, or 0 if there is none.
fn buffer_len(spec: &JobAssign, buffer: u8) -> u64 {
    spec.buffers
        .get(buffer as usize)
        .map(|b| b.len)
        .unwrap_or(0)
}

fn next_readback(spec: &JobAssign, after: u8) -> Option<u8> {
    spec.buffers
        .iter()
        .enumerate()
        .skip(after as usize + 1)
        .find(|(_, b)| b.readback)
        .map(|(i, _)| i as u8)
}

/// Whether an assignment keeps to its offer's sizes and the agent's limits.
fn assignment_is_sane(a: &JobAssign, bytes_in: u64, bytes_out: u64) -> bool {
    let k = &a.kernel;
    let mut sent = k.len as u64;
    let mut returned = 0u64;
    // One bit per binding number seen: each below MAX_BINDINGS, none twice.
    let mut bindings = 0u32;
    for b in a.buffers.iter() {
        if b.len == 0 || b.init_len > b.len || b.binding >= MAX_BINDINGS {
            return false;
        }
        let bit = 1u32 << b.binding;
        if bindings & bit != 0 {
            return false;
        }
        bindings |= bit;
        sent = sent.saturating_add(b.init_len);
        if b.readback {
            returned = returned.saturating_add(b.len);
        }
    }
    k.len > 0
        && (k.len as u64) <= MAX_KERNEL_BYTES
        && k.len % 4 == 0
        && k.grid.iter().all(|&g| g > 0)
        && !k.entry_point.is_empty()
        && sent <= bytes_in
        && returned <= bytes_out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_size_is_bounded() {
        let size = core::mem::size_of::<Agent<crate::attest::Ed25519Signer>>();
        assert!(size < 64 * 1024, "agent is {size} bytes");
    }
}
