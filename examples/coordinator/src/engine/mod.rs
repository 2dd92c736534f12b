//! The coordinator's state: provider sessions, per-key records that outlive
//! sessions (receipt chains, evidence, last quotes), and jobs from offer to
//! verified result. Connection threads call in with the lock held; the
//! engine only queues frames (it never blocks on a socket) and never hashes
//! more than a chunk: submissions arrive checked and hashed
//! ([`crate::submission::Prepared`]), and outputs are verified chunk by chunk
//! into a Merkle root built as they arrive.
//!
//! Everything it holds is bounded: sessions end with their connections, key
//! records of disconnected providers are pruned (`Settings::key_retention`,
//! `Settings::max_known_keys`), a job lets go of its inputs once its provider
//! has started or its requester has been answered, and of its outputs once
//! they are handed to the requester.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ring::rand::{SecureRandom, SystemRandom};
use tessera_core::attest::{
    key_id, ChainState, DeviceCapabilities, Evidence, Receipt, ReceiptStatus, ReceiptVerifier,
    StatementSlot, VerifiedReceipt, VerifyError,
};
use tessera_core::job;
use tessera_core::limits::{CHUNK_SIZE, DEFAULT_MAX_CONCURRENT, MAX_FRAME, MAX_JOBS};
use tessera_core::merkle::{leaf_hash, RootBuilder};
use tessera_core::wire::{
    Batching, Cancel, Chunk, Completed, DeclineReason, DecodeError, Digest, ErrorMsg, FailReason,
    Failed, Goodbye, GoodbyeReason, Heartbeat, Hello, JobAssign, JobId, JobOffer, JobRef, KeyId,
    Message, Nonce, ResultRefuse, UsageReport, Welcome, PROTOCOL_VERSION_2, PROTOCOL_VERSION_3,
    PROTOCOL_VERSION_MAX, PROTOCOL_VERSION_MIN,
};
use tessera_core::ErrorCode;

use crate::budget::Permit;
use crate::conn::{Outbox, Reply};
use crate::protocol::{bounded_reason, FailureCode, JobFailure, JobResult, Response};
use crate::state::ChainStore;
use crate::submission::{InputStream, Inputs, Prepared};
use crate::tls::hex;

mod matching;
mod receipts;
#[cfg(test)]
mod tests;

/// `Cancel` reason: the offer was withdrawn (answered too late).
pub const CANCEL_OFFER_WITHDRAWN: u16 = 1;
/// `Cancel` reason: the accepted price is over the requester's maximum.
pub const CANCEL_PRICE_OVER_MAXIMUM: u16 = 2;
/// `Cancel` reason: the job's deadline passed without a verified result.
pub const CANCEL_DEADLINE: u16 = 3;
/// `Cancel` reason: the requester's connection ended before its answer.
pub const CANCEL_REQUESTER_GONE: u16 = 4;

/// A provider connection's id, unique within a coordinator process.
pub(crate) type SessionId = u64;

/// Hashes the ids this coordinator hands out itself (jobs, sessions) with
/// one multiplication, not SipHash: nobody else picks them, so they need no
/// defence against chosen keys (a peer's message naming another id only
/// looks it up). The lookups run several times for every job.
#[derive(Clone, Copy, Default)]
pub(crate) struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u64(&mut self, n: u64) {
        // Fibonacci hashing: the high bits of the product mix every bit of
        // the id.
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }

    fn finish(&self) -> u64 {
        // The table picks buckets by the low bits, which alone depend only
        // on the id's low bits: folded in, the high ones spread ids that
        // differ only there (ids a stride apart) as well as consecutive ones.
        self.0 ^ (self.0 >> 32)
    }
}

/// A map keyed by an id this coordinator hands out ([`IdHasher`]).
pub(crate) type IdMap<V> = HashMap<u64, V, std::hash::BuildHasherDefault<IdHasher>>;
/// A provider's Ed25519 public key.
pub type PublicKey = [u8; 32];

/// Evidence documents kept per key, newest last (receipts name one of them).
const EVIDENCE_KEPT: usize = 16;
/// Out-of-order receipts held per key while an earlier one is missing.
const MAX_PARKED: usize = 64;
/// A job whose kernel and inputs come to at most this many bytes goes to a
/// provider speaking protocol version 2 with its offer: assignment and
/// inputs follow the offer at once, sparing the offer's round trip; a
/// provider that declines drops them. Larger inputs wait for the answer.
pub const ASSIGN_WITH_OFFER_MAX: u64 = 64 << 10;
/// Settled receipts remembered per key, to recognise a resend after a
/// reconnect. An agent holds at most `MAX_JOBS` (32) unacknowledged results,
/// so resends only ever concern the last few.
const DONE_KEPT: usize = 256;
/// Providers' declines listed in a requester's `AllDeclined` reason; the
/// rest are counted.
const DECLINES_LISTED: usize = 16;
/// How often disconnected providers' records are looked at for pruning.
const PRUNE_EVERY: Duration = Duration::from_secs(1);
/// Receipts a session may send for jobs not assigned to its key now (results
/// of jobs this coordinator forgot, or held before it restarted): an agent
/// holds at most `MAX_JOBS` results unacknowledged, so an honest session sends
/// no more than that. Beyond it the session is ended: each such receipt costs
/// a signature check and, with a state directory, an fsynced write, for a few
/// hundred bytes received.
const UNTRACKED_RECEIPTS: usize = 2 * MAX_JOBS;
/// Jobs offered to a provider before its first heartbeat says its capacity
/// (one heartbeat interval after `Ready`): the default `max_concurrent`,
/// which is also the most a firmware agent holds. A provider that takes
/// more gets them from its first heartbeat on; one that takes fewer
/// declines the rest with `AtCapacity`.
const CAPACITY_BEFORE_HEARTBEAT: usize = DEFAULT_MAX_CONCURRENT as usize;
/// How long a job stays known after its requester was answered, so a late
/// receipt is still verified (and its chain followed).
const ANSWERED_RETENTION: Duration = Duration::from_secs(600);

/// Declines for capacity from one provider after which a job is no longer
/// offered to it (a provider that says it is full however much room its
/// heartbeats show).
const MAX_CAPACITY_DECLINES: usize = 3;
/// Queue entries one wake looks at, at most.
const WAKE_SCAN: usize = 256;

/// Timers and limits of the engine.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    pub heartbeat_ms: u32,
    pub offer_timeout: Duration,
    pub deadline_grace: Duration,
    /// From the connection's acceptance to `Ready`.
    pub handshake_timeout: Duration,
    pub provider_silence: Duration,
    /// Key records kept; disconnected ones beyond it are pruned, the
    /// longest gone first.
    pub max_known_keys: usize,
    /// A disconnected provider's record is pruned after this long.
    pub key_retention: Duration,
    /// Asked of providers speaking protocol version 2 at `Ready` when
    /// `max_receipts` is 2 or more ("Batched receipts").
    pub batching: Batching,
}

/// The answer to a requester, and the budget its bytes are counted in until
/// they are written to it.
pub(crate) struct Answer {
    pub response: Response,
    pub hold: Option<Permit>,
}

/// What the coordinator knows of one provider key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProviderInfo {
    /// The key's identifier.
    pub key_id: KeyId,
    /// The provider's Ed25519 public key.
    pub public_key: PublicKey,
    /// Device name from its latest evidence.
    pub device_name: String,
    /// Whether a session is established now.
    pub connected: bool,
    /// Whether it is draining (takes no new jobs).
    pub draining: bool,
    /// The last price it accepted a job at.
    pub last_quote: Option<u64>,
    /// Its last heartbeat: jobs in flight and capacity.
    pub load: Option<(u8, u8)>,
    /// Its receipt chain position as verified here (None before the first
    /// receipt when no position was stored).
    pub chain: Option<ChainState>,
}

/// Counters for an operator.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Jobs submitted by requesters.
    pub jobs_submitted: u64,
    /// Verified results delivered.
    pub results_delivered: u64,
    /// Jobs answered with a failure.
    pub jobs_failed: u64,
    /// Receipts verified (signature and chain).
    pub receipts_verified: u64,
    /// Receipts rejected (not verified, or breaking the chain), and results
    /// refused (`ResultRefuse`: verified, but breaking the job's rules).
    pub receipts_rejected: u64,
    /// Of those, results refused with `ResultRefuse`.
    pub results_refused: u64,
    /// Evidence whose signed chain position contradicts the chain this
    /// coordinator holds for the key (behind it, or the same position with
    /// another hash).
    pub chain_contradictions: u64,
    /// Resent receipts recognised as already verified.
    pub receipts_repeated: u64,
    /// Provider sessions refused at the handshake.
    pub sessions_refused: u64,
    /// Connections open now.
    pub connections_open: u64,
    /// Connections closed at once for being over `max_connections` or
    /// `max_connections_per_ip`.
    pub connections_refused: u64,
    /// Connections closed because the TLS handshake and the first message
    /// (for a provider: everything up to `Ready`) did not finish within
    /// `handshake_timeout`, or a request did not arrive in time.
    pub handshakes_expired: u64,
    /// Connections closed because the peer did not read what was queued for
    /// it (`max_outbox_bytes`).
    pub outbox_overflows: u64,
    /// Requests refused for the size their header states, or for the byte
    /// budget (`Busy`).
    pub requests_refused: u64,
    /// Records of disconnected provider keys pruned.
    pub keys_pruned: u64,
}

enum Phase {
    AwaitingHello,
    AwaitingEvidence { challenge: Nonce, key_id: KeyId },
    Ready { key: PublicKey },
}

struct Session {
    outbox: Outbox,
    peer: String,
    phase: Phase,
    opened: Instant,
    last_rx: Instant,
    last_heartbeat_sent: Instant,
    draining: bool,
    load: Option<Heartbeat>,
    /// Receipts this session sent for jobs not assigned to its key now
    /// (each one's signature checked, and its chain position stored).
    untracked_receipts: usize,
    /// The protocol version chosen in `Welcome` (0 before).
    version: u16,
}

impl Session {
    /// Ready for jobs: admitted and not draining.
    fn takes_offers(&self) -> bool {
        !self.draining && matches!(self.phase, Phase::Ready { .. })
    }
}

/// Whether a device with `caps` meets a job's requirements `req` (its
/// feature bits and memory). The requester picks a provider to seal to by
/// the same rule.
pub(crate) fn meets(caps: &DeviceCapabilities, req: &tessera_core::wire::Requirements) -> bool {
    let memory = u64::from(req.memory_mib) << 20;
    req.features & !caps.features == 0 && memory <= caps.device_local_bytes
}

struct EvidenceInfo {
    hash: Digest,
    bytes: Vec<u8>,
    challenge: Nonce,
}

struct DoneEntry {
    receipt_hash: Digest,
    accepted: bool,
    /// Verified and in the chain, but the result broke the job's rules: the
    /// provider was told `ResultRefuse` (and is told again if it resends).
    refused: bool,
}

struct KeyRecord {
    key_id: KeyId,
    capabilities: DeviceCapabilities,
    session: Option<SessionId>,
    verifier: Option<ReceiptVerifier>,
    /// The chain position the provider's latest evidence signed.
    stated: Option<ChainState>,
    last_quote: Option<u64>,
    /// The session encryption key its current (or last) session's evidence
    /// stated; sealed jobs sealed to it go to that session only.
    enc_key: [u8; 32],
    /// The jobs it had here when it last declined one for capacity: it is
    /// offered more only once it has fewer (until a heartbeat shows room,
    /// or it reconnects).
    full_at: Option<usize>,
    evidences: VecDeque<EvidenceInfo>,
    /// Receipts that arrived ahead of their predecessor, verified, by sequence.
    parked: BTreeMap<u64, (JobId, Vec<u8>, VerifiedReceipt)>,
    /// The last batch statement verified under this key.
    statement: StatementSlot,
    /// Keyed by ids a provider names (a receipt for a job not assigned to
    /// it is remembered too): SipHash, not [`IdMap`].
    done: HashMap<JobId, DoneEntry>,
    done_order: VecDeque<JobId>,
    /// When its last session ended (none while connected).
    disconnected_at: Option<Instant>,
}

impl KeyRecord {
    fn remember(&mut self, job: JobId, receipt_hash: Digest, accepted: bool) {
        self.remember_as(job, receipt_hash, accepted, false);
    }

    fn remember_as(&mut self, job: JobId, receipt_hash: Digest, accepted: bool, refused: bool) {
        if self
            .done
            .insert(
                job,
                DoneEntry {
                    receipt_hash,
                    accepted,
                    refused,
                },
            )
            .is_none()
        {
            self.done_order.push_back(job);
        }
        while self.done_order.len() > DONE_KEPT {
            if let Some(old) = self.done_order.pop_front() {
                self.done.remove(&old);
            }
        }
    }
}

struct Assigned {
    key: PublicKey,
    /// The evidence of the session that accepted the job: what its receipt
    /// names, kept while the job lives however often the provider
    /// reconnects.
    evidence: Option<Digest>,
    /// The provider's quote (`OfferAccept.price`).
    price: u64,
    /// The offer's `deadline_ms` as sent to this provider: a timed-out job is
    /// metered to it at most.
    deadline_ms: u32,
    started: bool,
    /// One per read-back buffer, in buffer order; kept only while the
    /// requester waits for them.
    outputs: Vec<Vec<u8>>,
    /// Bytes received of each read-back buffer.
    received: Vec<u64>,
    /// The output tree over the chunks verified so far.
    tree: RootBuilder,
    /// Next expected output chunk: position in the read-back list, index.
    cursor: (usize, u32),
    output_error: Option<String>,
    completed: Option<Completed>,
    failed: Option<Failed>,
    usage: Option<UsageReport>,
}

enum Stage {
    Offering {
        key: PublicKey,
        session: SessionId,
        since: Instant,
        /// The offer's `deadline_ms` as sent to this provider.
        deadline_ms: u32,
        /// The assignment and inputs went with the offer.
        assigned: bool,
    },
    Assigned(Box<Assigned>),
    /// Its provider's connection dropped before the kernel started and no
    /// other provider is free: waiting for one to (re)connect. Or every
    /// provider that could run it is full (`Job::wants_room`): waiting, in
    /// [`Engine::queued`], for a slot to free.
    Waiting,
}

/// Times a job may lose its provider's connection before that provider is
/// no longer offered the job.
pub(super) const MAX_LOST_SESSIONS: u8 = 3;

struct Job {
    id: JobId,
    assign: JobAssign,
    /// The offer as the requester stated it (each provider is offered it
    /// with the deadline that is left).
    offer: JobOffer,
    readback: Vec<usize>,
    /// Held until a provider has started the job or the requester is
    /// answered.
    inputs: Option<Arc<Inputs>>,
    /// The read-back bytes the requester stated, in the budget until its
    /// answer is written.
    readback_permit: Option<Permit>,
    submitted: Instant,
    deadline: Instant,
    reply: Option<Reply>,
    answered_at: Option<Instant>,
    stage: Stage,
    candidates: VecDeque<PublicKey>,
    excluded: HashSet<PublicKey>,
    declines: Vec<(KeyId, String)>,
    /// How many times each provider declined it for capacity.
    full_declines: HashMap<PublicKey, usize>,
    /// Connections lost before the kernel started, per provider.
    lost: HashMap<PublicKey, u8>,
    /// A sealed job's provider and the session key it is sealed to.
    sealed_for: Option<(PublicKey, [u8; 32])>,
    /// A provider that could run it was full (it declined `AtCapacity`, or
    /// had as many of this coordinator's jobs as it takes): when nobody
    /// takes it, it waits for a slot rather than fail.
    wants_room: bool,
    /// It has an entry in [`Engine::queued`].
    in_queue: bool,
    /// The provider it is counted under in [`Engine::held`].
    counted: Option<PublicKey>,
}

impl Job {
    /// Lets go of what was held for the requester: the inputs, the
    /// read-back permit and the outputs received.
    fn let_go(&mut self) {
        self.inputs = None;
        self.readback_permit = None;
        if let Stage::Assigned(a) = &mut self.stage {
            a.outputs = Vec::new();
        }
    }

    fn assigned_key(&self) -> Option<PublicKey> {
        match &self.stage {
            Stage::Assigned(a) => Some(a.key),
            Stage::Offering { .. } | Stage::Waiting => None,
        }
    }

    /// The provider the job is with: offered to it, or assigned.
    fn provider(&self) -> Option<PublicKey> {
        match &self.stage {
            Stage::Offering { key, .. } => Some(*key),
            Stage::Assigned(a) => Some(a.key),
            Stage::Waiting => None,
        }
    }
}

/// Takes one job off `key`'s count, dropping the entry at zero so that
/// providers long gone leave nothing behind.
fn uncount(held: &mut HashMap<PublicKey, usize>, key: &PublicKey) {
    if let Some(n) = held.get_mut(key) {
        *n = n.saturating_sub(1);
        if *n == 0 {
            held.remove(key);
        }
    }
}

/// Encodes a provider-protocol message as a frame.
pub(crate) fn frame(msg: &Message<'_>) -> Vec<u8> {
    // Encoded on the stack and copied out at its length: a frame queued
    // for a peer holds its bytes, not a whole `MAX_FRAME` allocation.
    let mut buf = [0u8; MAX_FRAME];
    match msg.encode(&mut buf) {
        Ok(n) => buf[..n].to_vec(),
        Err(e) => {
            // Every message built here keeps to the limits checked at submit.
            log::error!("could not encode {:?}: {e:?}", msg.kind());
            Vec::new()
        }
    }
}

fn short(key: &PublicKey) -> String {
    hex(&key_id(key)[..6])
}

/// The coordinator's state machine.
pub(crate) struct Engine {
    settings: Settings,
    sessions: IdMap<Session>,
    keys: HashMap<PublicKey, KeyRecord>,
    jobs: IdMap<Job>,
    next_job: JobId,
    next_session: SessionId,
    rotation: usize,
    store: Option<ChainStore>,
    rng: SystemRandom,
    stats: Stats,
    shut_down: bool,
    last_prune: Option<Instant>,
    /// Jobs waiting for a provider's slot to free, oldest first (entries
    /// of jobs since gone or offered are dropped as they are met).
    queued: VecDeque<JobId>,
    /// How many jobs not yet answered each provider has on offer or
    /// assigned here, kept as jobs change ([`Engine::recount`]): a new
    /// job's offer looks its provider up rather than count every open job.
    held: HashMap<PublicKey, usize>,
}

impl Engine {
    /// Brings [`Engine::held`] in line with job `id`'s stage: counted under
    /// its provider while it is on offer or assigned and not answered.
    /// Called after every change of a job's stage or answer.
    fn recount(&mut self, id: JobId) {
        let Some(job) = self.jobs.get_mut(&id) else {
            return;
        };
        let key = if job.answered_at.is_none() {
            job.provider()
        } else {
            None
        };
        if key == job.counted {
            return;
        }
        if let Some(old) = std::mem::replace(&mut job.counted, key) {
            uncount(&mut self.held, &old);
        }
        if let Some(key) = key {
            *self.held.entry(key).or_insert(0) += 1;
        }
    }

    /// Removes job `id`, taking it out of [`Engine::held`].
    fn remove_job(&mut self, id: JobId) -> Option<Job> {
        let job = self.jobs.remove(&id)?;
        if let Some(key) = &job.counted {
            uncount(&mut self.held, key);
        }
        Some(job)
    }

    /// [`Engine::held`] as counting every job gives it, for checks.
    fn held_counted_afresh(&self) -> HashMap<PublicKey, usize> {
        let mut counts = HashMap::new();
        for job in self.jobs.values().filter(|j| j.answered_at.is_none()) {
            if let Some(key) = job.provider() {
                *counts.entry(key).or_insert(0) += 1;
            }
        }
        counts
    }

    pub(crate) fn new(settings: Settings, store: Option<ChainStore>) -> Engine {
        Engine {
            settings,
            sessions: IdMap::default(),
            keys: HashMap::new(),
            jobs: IdMap::default(),
            // Job ids start from the wall clock so that they do not repeat
            // across coordinator restarts: a provider may still hold results
            // of jobs from the previous run.
            next_job: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_micros() as u64)
                .unwrap_or(1)
                .max(1),
            next_session: 1,
            rotation: 0,
            store,
            rng: SystemRandom::new(),
            stats: Stats::default(),
            shut_down: false,
            last_prune: None,
            queued: VecDeque::new(),
            held: HashMap::new(),
        }
    }

    pub(crate) fn stats(&self) -> Stats {
        self.stats
    }

    pub(crate) fn providers(&self) -> Vec<ProviderInfo> {
        let mut out: Vec<ProviderInfo> = self
            .keys
            .iter()
            .map(|(key, rec)| {
                let session = rec.session.and_then(|s| self.sessions.get(&s));
                ProviderInfo {
                    key_id: rec.key_id,
                    public_key: *key,
                    device_name: rec.capabilities.name.as_str().to_string(),
                    connected: session.is_some(),
                    draining: session.is_some_and(|s| s.draining),
                    last_quote: rec.last_quote,
                    load: session
                        .and_then(|s| s.load)
                        .map(|h| (h.active_jobs, h.capacity)),
                    chain: rec.verifier.as_ref().map(|v| v.chain()),
                }
            })
            .collect();
        out.sort_by_key(|p| p.key_id);
        out
    }

    fn send(&self, sid: SessionId, msg: &Message<'_>) {
        if let Some(s) = self.sessions.get(&sid) {
            s.outbox.send(frame(msg));
        }
    }

    fn send_to_key(&self, key: &PublicKey, msg: &Message<'_>) -> bool {
        match self.keys.get(key).and_then(|r| r.session) {
            Some(sid) if self.sessions.contains_key(&sid) => {
                self.send(sid, msg);
                true
            }
            _ => false,
        }
    }

    fn send_error(&self, sid: SessionId, code: ErrorCode, job: JobId) {
        self.send(
            sid,
            &Message::Error(ErrorMsg {
                code: code as u16,
                job,
            }),
        );
    }

    fn session_key(&self, sid: SessionId) -> Option<PublicKey> {
        match self.sessions.get(&sid)?.phase {
            Phase::Ready { key } => Some(key),
            _ => None,
        }
    }

    // ----- sessions ---------------------------------------------------------

    /// A provider connection whose first bytes arrived; `accepted` is when
    /// its TCP connection was, which `handshake_timeout` counts from.
    pub(crate) fn open_session(
        &mut self,
        outbox: Outbox,
        peer: String,
        accepted: Instant,
        now: Instant,
    ) -> SessionId {
        let sid = self.next_session;
        self.next_session = self.next_session.wrapping_add(1).max(1);
        self.sessions.insert(
            sid,
            Session {
                outbox,
                peer,
                phase: Phase::AwaitingHello,
                opened: accepted,
                last_rx: now,
                last_heartbeat_sent: now,
                draining: false,
                load: None,
                untracked_receipts: 0,
                version: 0,
            },
        );
        sid
    }

    /// Ends a session from our side: queued frames go out, then the socket
    /// closes and the connection thread reports `session_closed`.
    fn close_session(&self, sid: SessionId) {
        if let Some(s) = self.sessions.get(&sid) {
            s.outbox.close();
        }
    }

    fn goodbye(&self, sid: SessionId, reason: GoodbyeReason) {
        self.send(sid, &Message::Goodbye(Goodbye { reason }));
        self.close_session(sid);
    }

    /// The connection ended.
    pub(crate) fn session_closed(&mut self, sid: SessionId, now: Instant) {
        let Some(session) = self.sessions.remove(&sid) else {
            return;
        };
        let Phase::Ready { key } = session.phase else {
            log::debug!("session {sid} from {} closed before Ready", session.peer);
            return;
        };
        log::info!("provider {} disconnected ({})", short(&key), session.peer);
        if let Some(rec) = self.keys.get_mut(&key) {
            if rec.session == Some(sid) {
                rec.session = None;
                rec.disconnected_at = Some(now);
            }
        }
        // Offers to this session, and jobs it had not started, go elsewhere:
        // the agent drops jobs whose inputs were incomplete.
        let mut retry = Vec::new();
        for job in self.jobs.values_mut() {
            if job.reply.is_none() {
                continue;
            }
            let lost = match &job.stage {
                Stage::Offering { session, .. } => *session == sid,
                Stage::Assigned(a) => a.key == key && !a.started,
                Stage::Waiting => false,
            };
            if lost {
                // A dropped connection is no refusal: the same provider may
                // take the job again once it is back, a few times.
                let n = job.lost.entry(key).or_insert(0);
                *n += 1;
                if *n >= MAX_LOST_SESSIONS {
                    job.excluded.insert(key);
                    job.declines
                        .push((key_id(&key), "disconnected before starting the job".into()));
                }
                retry.push(job.id);
            }
        }
        for id in retry {
            self.reoffer(id, now);
        }
    }

    /// Recomputes a job's candidates (minus the keys it already tried) and
    /// offers it again.
    pub(super) fn reoffer(&mut self, id: JobId, now: Instant) {
        let Some(job) = self.jobs.get_mut(&id) else {
            return;
        };
        // Set again only if a provider that could run it is full now.
        job.wants_room = false;
        let requirements = job.offer.requirements;
        let excluded = job.excluded.clone();
        let sealed_for = job.sealed_for;
        let candidates: VecDeque<PublicKey> = self
            .capable(&requirements)
            .into_iter()
            .filter(|k| !excluded.contains(k) && self.takes_sealed(k, sealed_for))
            .collect();
        if let Some(job) = self.jobs.get_mut(&id) {
            job.candidates = candidates;
        }
        self.offer_next(id, now);
    }

    /// A frame from the provider did not decode.
    pub(crate) fn decode_error(&mut self, sid: SessionId, e: DecodeError) -> bool {
        // The same classification the agent applies to a coordinator's frames.
        let peer = tessera_core::PeerError::Decode(e);
        let (code, fatal) = (peer.wire_code(), peer.is_fatal());
        log::warn!("session {sid}: undecodable frame: {e:?}");
        self.send_error(sid, code, 0);
        if fatal {
            self.goodbye(sid, GoodbyeReason::ProtocolError);
        }
        fatal
    }

    /// A decoded frame from a provider.
    pub(crate) fn on_message(&mut self, sid: SessionId, msg: Message<'_>, now: Instant) {
        let Some(session) = self.sessions.get_mut(&sid) else {
            return;
        };
        session.last_rx = now;
        let ready = matches!(session.phase, Phase::Ready { .. });
        // A receipt (acknowledged, its job's slot freed) or a decline (the
        // job goes elsewhere) can free one of the provider's slots here.
        let mut frees_slot = matches!(msg, Message::Receipt(_) | Message::OfferDecline(_));
        match msg {
            Message::Hello(h) => self.on_hello(sid, h),
            Message::Evidence(blob) => self.on_evidence(sid, blob.bytes, now),
            Message::Heartbeat(h) if ready => {
                let mut was_full = true;
                if let Some(s) = self.sessions.get_mut(&sid) {
                    // Full before, or taking more than it was thought to
                    // (its first heartbeat saying more than 4).
                    let thought = s.load.map_or(CAPACITY_BEFORE_HEARTBEAT, |l| {
                        usize::from(l.capacity).min(MAX_JOBS)
                    });
                    was_full = s.load.is_some_and(|l| l.active_jobs >= l.capacity)
                        || usize::from(h.capacity).min(MAX_JOBS) > thought;
                    s.load = Some(h);
                }
                if h.active_jobs < h.capacity {
                    if let Some(rec) = self.session_key(sid).and_then(|k| self.keys.get_mut(&k)) {
                        was_full |= rec.full_at.take().is_some();
                    }
                }
                // Room it did not have before: queued jobs may go to it.
                frees_slot = was_full && h.active_jobs < h.capacity;
            }
            Message::Drain if ready => {
                if let Some(s) = self.sessions.get_mut(&sid) {
                    s.draining = true;
                }
                log::info!("session {sid}: provider is draining");
            }
            Message::Goodbye(g) => {
                log::info!("session {sid}: provider says goodbye ({:?})", g.reason);
                self.close_session(sid);
            }
            Message::Error(e) => {
                log::warn!(
                    "session {sid}: provider reports error {:?} (code {}) for job {}",
                    ErrorCode::from_u16(e.code),
                    e.code,
                    e.job
                );
                if !ready {
                    self.close_session(sid);
                }
            }
            Message::OfferAccept(a) if ready => self.on_accept(sid, a.job, a.price, now),
            Message::OfferDecline(d) if ready => {
                let full = d.reason == DeclineReason::AtCapacity;
                self.on_decline(sid, d.job, format!("{:?}", d.reason), full, now)
            }
            Message::Started(r) if ready => self.on_started(sid, r.job),
            Message::Progress(_) if ready => {}
            Message::OutputChunk(c) if ready => {
                let intact = leaf_hash(c.data) == c.digest;
                self.on_output(sid, &c, intact)
            }
            Message::Completed(c) if ready => {
                self.with_assigned(sid, c.job, |a| a.completed = Some(c))
            }
            Message::Failed(f) if ready => self.with_assigned(sid, f.job, |a| a.failed = Some(f)),
            Message::UsageReport(u) if ready => {
                self.with_assigned(sid, u.job, |a| a.usage = Some(u))
            }
            Message::Receipt(r) if ready => self.on_receipt(sid, r.job, r.bytes, now),
            other => {
                log::warn!(
                    "session {sid}: unexpected {:?} from the provider",
                    other.kind()
                );
                self.send_error(sid, ErrorCode::UnexpectedMessage, 0);
            }
        }
        if frees_slot {
            if let Some(key) = self.session_key(sid) {
                self.wake_queued(&key, now);
            }
        }
    }

    /// An output chunk whose digest the caller checked (`intact`), outside
    /// the lock.
    pub(crate) fn on_output_chunk(
        &mut self,
        sid: SessionId,
        c: &Chunk<'_>,
        intact: bool,
        now: Instant,
    ) {
        let Some(session) = self.sessions.get_mut(&sid) else {
            return;
        };
        session.last_rx = now;
        if matches!(session.phase, Phase::Ready { .. }) {
            self.on_output(sid, c, intact);
        } else {
            log::warn!("session {sid}: output chunk before Ready");
            self.send_error(sid, ErrorCode::UnexpectedMessage, 0);
        }
    }

    /// A submission refused before it reached the engine (it broke a limit).
    pub(crate) fn count_refused_submission(&mut self) {
        self.stats.jobs_submitted += 1;
        self.stats.jobs_failed += 1;
    }

    fn on_hello(&mut self, sid: SessionId, h: Hello) {
        let Some(session) = self.sessions.get(&sid) else {
            return;
        };
        if !matches!(session.phase, Phase::AwaitingHello) {
            self.send_error(sid, ErrorCode::UnexpectedMessage, 0);
            return;
        }
        if h.min_version > PROTOCOL_VERSION_MAX
            || h.max_version < PROTOCOL_VERSION_MIN
            || h.min_version > h.max_version
        {
            log::warn!(
                "session {sid}: provider speaks versions {}..={}, we speak {PROTOCOL_VERSION_MIN}..={PROTOCOL_VERSION_MAX}",
                h.min_version,
                h.max_version
            );
            self.stats.sessions_refused += 1;
            self.send_error(sid, ErrorCode::UnsupportedVersion, 0);
            self.close_session(sid);
            return;
        }
        let mut challenge = [0u8; 32];
        if self.rng.fill(&mut challenge).is_err() {
            log::error!("system random source failed; refusing session {sid}");
            self.close_session(sid);
            return;
        }
        let version = h.max_version.min(PROTOCOL_VERSION_MAX);
        if let Some(s) = self.sessions.get_mut(&sid) {
            s.phase = Phase::AwaitingEvidence {
                challenge,
                key_id: h.key_id,
            };
            s.version = version;
        }
        self.send(
            sid,
            &Message::Welcome(Welcome {
                version,
                challenge,
                heartbeat_ms: self.settings.heartbeat_ms,
            }),
        );
    }

    fn refuse_evidence(&mut self, sid: SessionId, why: &str) {
        let peer = self
            .sessions
            .get(&sid)
            .map(|s| s.peer.clone())
            .unwrap_or_default();
        log::warn!("session {sid} ({peer}): evidence rejected: {why}");
        self.stats.sessions_refused += 1;
        self.send_error(sid, ErrorCode::EvidenceRejected, 0);
        self.close_session(sid);
    }

    fn on_evidence(&mut self, sid: SessionId, bytes: &[u8], now: Instant) {
        let Some(session) = self.sessions.get(&sid) else {
            return;
        };
        let Phase::AwaitingEvidence { challenge, key_id } = session.phase else {
            self.send_error(sid, ErrorCode::UnexpectedMessage, 0);
            return;
        };
        let evidence = match Evidence::verify(bytes, &challenge) {
            Ok(e) => e,
            Err(e) => {
                self.refuse_evidence(sid, &format!("{e:?}"));
                return;
            }
        };
        let key = evidence.public_key;
        if tessera_core::attest::key_id(&key) != key_id {
            self.refuse_evidence(sid, "the key differs from the one named in Hello");
            return;
        }
        let store_chain = match &self.store {
            Some(store) if !self.keys.contains_key(&key) => match store.load(&key) {
                Ok(c) => c,
                Err(e) => {
                    log::error!("cannot read the stored chain of {}: {e}", short(&key));
                    self.refuse_evidence(sid, "stored chain unreadable");
                    return;
                }
            },
            _ => None,
        };
        let rec = self.keys.entry(key).or_insert_with(|| KeyRecord {
            key_id,
            capabilities: evidence.capabilities.clone(),
            session: None,
            verifier: store_chain.map(|c| ReceiptVerifier::new(key, c)),
            stated: None,
            last_quote: None,
            enc_key: [0; 32],
            full_at: None,
            evidences: VecDeque::new(),
            parked: BTreeMap::new(),
            statement: None,
            done: HashMap::new(),
            done_order: VecDeque::new(),
            disconnected_at: None,
        });
        // The evidence signs the provider's chain position. A coordinator
        // that knows this key's chain compares; one that does not anchors
        // here when nothing signed before the evidence is still to come.
        let stated = evidence.chain;
        rec.stated = Some(stated);
        match rec.verifier.as_ref().map(|v| v.chain()) {
            Some(ours) if contradicts(&ours, &stated) => {
                log::error!(
                    "provider {}: its evidence states chain position #{} but this coordinator \
                     holds #{}: a lost store or a second history",
                    short(&key),
                    stated.next_sequence,
                    ours.next_sequence
                );
                self.stats.chain_contradictions += 1;
            }
            Some(_) => {}
            None if stated.next_sequence == 1 => {
                log::info!(
                    "provider {}: a new chain, anchored on its evidence",
                    short(&key)
                );
                rec.verifier = Some(ReceiptVerifier::new(key, stated));
            }
            None => {}
        }
        let old = rec.session.replace(sid);
        rec.disconnected_at = None;
        rec.capabilities = evidence.capabilities.clone();
        rec.enc_key = evidence.enc_key;
        rec.evidences.push_back(EvidenceInfo {
            hash: Evidence::hash(bytes),
            bytes: bytes.to_vec(),
            challenge,
        });
        // The oldest go first, except those a job still in flight was
        // accepted under (its receipt will name them).
        let pinned: HashSet<Digest> = self
            .jobs
            .values()
            .filter_map(|j| match &j.stage {
                Stage::Assigned(a) if a.key == key => a.evidence,
                _ => None,
            })
            .collect();
        if let Some(rec) = self.keys.get_mut(&key) {
            while rec.evidences.len() > EVIDENCE_KEPT {
                match rec.evidences.iter().position(|e| !pinned.contains(&e.hash)) {
                    Some(i) => {
                        rec.evidences.remove(i);
                    }
                    None => break,
                }
            }
        }
        if let Some(old) = old.filter(|o| *o != sid) {
            // The provider reconnected while its old transport lingers.
            log::info!("provider {} replaced session {old}", short(&key));
            self.close_session(old);
        }
        let mut version = 0;
        if let Some(s) = self.sessions.get_mut(&sid) {
            s.phase = Phase::Ready { key };
            s.last_heartbeat_sent = now;
            version = s.version;
        }
        if let Some(rec) = self.keys.get_mut(&key) {
            // A new session holds only the results it sends again.
            rec.full_at = None;
        }
        let waiting: Vec<JobId> = self
            .jobs
            .values()
            .filter(|j| matches!(j.stage, Stage::Waiting) && j.reply.is_some())
            .map(|j| j.id)
            .collect();
        log::info!(
            "provider {} ready: {:?}, {} MiB, features {:#x}",
            short(&key),
            evidence.capabilities.name.as_str(),
            evidence.capabilities.device_local_bytes >> 20,
            evidence.capabilities.features
        );
        self.send(sid, &Message::Ready);
        if version >= PROTOCOL_VERSION_2 && self.settings.batching.max_receipts >= 2 {
            self.send(sid, &Message::Batching(self.settings.batching));
        }
        for id in waiting {
            self.reoffer(id, now);
        }
    }
}

impl Engine {
    // ----- timers -----------------------------------------------------------

    /// Heartbeats, silent peers, offer and job timeouts.
    pub(crate) fn tick(&mut self, now: Instant) {
        let hb = Duration::from_millis(self.settings.heartbeat_ms.max(1) as u64);
        let mut to_close = Vec::new();
        let mut to_abort = Vec::new();
        let mut beat = Vec::new();
        for (sid, s) in self.sessions.iter_mut() {
            match s.phase {
                Phase::Ready { .. } => {
                    if now.saturating_duration_since(s.last_rx) > self.settings.provider_silence {
                        log::warn!("session {sid} ({}): provider silent; closing", s.peer);
                        to_close.push(*sid);
                    } else if now.saturating_duration_since(s.last_heartbeat_sent) >= hb {
                        s.last_heartbeat_sent = now;
                        beat.push(*sid);
                    }
                }
                _ => {
                    if now.saturating_duration_since(s.opened) > self.settings.handshake_timeout {
                        log::info!(
                            "session {sid} ({}): handshake not finished in time; closing",
                            s.peer
                        );
                        to_abort.push(*sid);
                    }
                }
            }
        }
        for sid in beat {
            self.send(sid, &Message::Heartbeat(Heartbeat::default()));
        }
        for sid in to_close {
            self.close_session(sid);
        }
        for sid in to_abort {
            // An unauthenticated peer gets nothing more: the socket is shut
            // now, whatever is queued for it.
            self.stats.handshakes_expired += 1;
            if let Some(s) = self.sessions.get(&sid) {
                s.outbox.abort();
            }
        }
        if self
            .last_prune
            .is_none_or(|at| now.saturating_duration_since(at) >= PRUNE_EVERY)
        {
            self.last_prune = Some(now);
            self.prune_keys(now);
        }

        debug_assert_eq!(self.held, self.held_counted_afresh());

        let mut offer_expired = Vec::new();
        let mut overdue = Vec::new();
        let mut forget = Vec::new();
        for job in self.jobs.values() {
            if let Some(at) = job.answered_at {
                if now.saturating_duration_since(at) > ANSWERED_RETENTION {
                    forget.push(job.id);
                }
                continue;
            }
            if now >= job.deadline {
                overdue.push(job.id);
            } else if let Stage::Offering { session, since, .. } = job.stage {
                if now.saturating_duration_since(since) > self.settings.offer_timeout {
                    offer_expired.push((job.id, session));
                }
            }
        }
        // Providers with a slot these timers free: queued jobs may go to
        // them.
        let mut freed: Vec<PublicKey> = Vec::new();
        for (id, sid) in offer_expired {
            freed.extend(self.session_key(sid));
            self.send(
                sid,
                &Message::Cancel(Cancel {
                    job: id,
                    reason: CANCEL_OFFER_WITHDRAWN,
                }),
            );
            self.on_decline(sid, id, "no answer to the offer".into(), false, now);
        }
        for id in overdue {
            let Some(job) = self.jobs.get(&id) else {
                continue;
            };
            let key = job.assigned_key();
            let waited = now.saturating_duration_since(job.submitted).as_millis();
            if let Some(key) = key {
                self.send_to_key(
                    &key,
                    &Message::Cancel(Cancel {
                        job: id,
                        reason: CANCEL_DEADLINE,
                    }),
                );
            }
            freed.extend(key);
            if let Some(job) = self.jobs.get_mut(&id) {
                if let Stage::Offering { session, key, .. } = job.stage {
                    freed.push(key);
                    self.send(
                        session,
                        &Message::Cancel(Cancel {
                            job: id,
                            reason: CANCEL_DEADLINE,
                        }),
                    );
                    // Not accepted: nothing can come back (an assignment sent
                    // with the offer is withdrawn by the cancel).
                    forget.push(id);
                }
            }
            let who = key
                .map(|k| short(&k))
                .unwrap_or_else(|| "no provider".into());
            let queued = self
                .jobs
                .get(&id)
                .is_some_and(|j| j.wants_room && matches!(j.stage, Stage::Waiting));
            let reason = if queued {
                format!("no provider that could run the job had a free slot within {waited} ms")
            } else {
                format!("no verified result within {waited} ms (provider: {who})")
            };
            self.answer(
                id,
                Response::Failed(JobFailure {
                    job: id,
                    code: FailureCode::Timeout,
                    reason,
                    receipt: None,
                    price: 0,
                    provider: None,
                }),
                now,
            );
        }
        for id in forget {
            self.remove_job(id);
        }
        freed.sort_unstable();
        freed.dedup();
        for key in freed {
            self.wake_queued(&key, now);
        }
    }

    /// Forgets disconnected providers' records: those gone longer than
    /// `key_retention`, then, beyond `max_known_keys`, the longest gone. A
    /// key a tracked job is assigned to is kept (its late receipt names
    /// evidence only its record holds). With a state directory, a pruned
    /// key's chain position is read back when it returns; without one, its
    /// chain is anchored afresh.
    fn prune_keys(&mut self, now: Instant) {
        let busy: HashSet<PublicKey> = self
            .jobs
            .values()
            .filter_map(|j| j.assigned_key())
            .collect();
        let mut idle: Vec<(Instant, PublicKey)> = self
            .keys
            .iter()
            .filter(|(key, rec)| rec.session.is_none() && !busy.contains(*key))
            .map(|(key, rec)| (rec.disconnected_at.unwrap_or(now), *key))
            .collect();
        idle.sort();
        let mut excess = self.keys.len().saturating_sub(self.settings.max_known_keys);
        for (gone_at, key) in idle {
            let expired = now.saturating_duration_since(gone_at) > self.settings.key_retention;
            if !expired && excess == 0 {
                break;
            }
            self.keys.remove(&key);
            excess = excess.saturating_sub(1);
            self.stats.keys_pruned += 1;
            log::debug!("provider {}: record pruned", short(&key));
        }
    }

    /// Asks every provider to drain: finish what it holds, take nothing new.
    pub(crate) fn drain_all(&mut self) {
        let ready: Vec<SessionId> = self
            .sessions
            .iter()
            .filter(|(_, s)| matches!(s.phase, Phase::Ready { .. }))
            .map(|(sid, _)| *sid)
            .collect();
        for sid in ready {
            if let Some(s) = self.sessions.get_mut(&sid) {
                s.draining = true;
            }
            self.send(sid, &Message::Drain);
        }
    }

    /// The connection of job `id`'s requester ended before its answer was
    /// written: nobody waits for the result. The job is withdrawn (a
    /// `Cancel` to the provider holding it or offered it) and what was held
    /// for it let go, as at its deadline; a job a provider holds stays
    /// known for a while so a late receipt is still verified. Otherwise
    /// jobs would outlive the connections that bound them, each until the
    /// deadline its requester stated.
    pub(crate) fn requester_gone(&mut self, id: JobId, now: Instant) {
        let Some(job) = self.jobs.get_mut(&id) else {
            return;
        };
        if job.reply.take().is_none() {
            // Answered already.
            return;
        }
        log::info!("job {id}: its requester is gone; withdrawn");
        self.stats.jobs_failed += 1;
        job.answered_at = Some(now);
        let cancel = Message::Cancel(Cancel {
            job: id,
            reason: CANCEL_REQUESTER_GONE,
        });
        job.let_go();
        let stage = match &job.stage {
            Stage::Assigned(a) => Some((None, a.key)),
            Stage::Offering { session, key, .. } => Some((Some(*session), *key)),
            Stage::Waiting => None,
        };
        // Answered: no longer counted in its provider's jobs here.
        self.recount(id);
        match stage {
            Some((None, key)) => {
                self.send_to_key(&key, &cancel);
                self.wake_queued(&key, now);
            }
            Some((Some(session), key)) => {
                self.send(session, &cancel);
                // Not accepted: nothing can come back (an assignment sent
                // with the offer is withdrawn by the cancel).
                self.remove_job(id);
                self.wake_queued(&key, now);
            }
            None => {
                self.remove_job(id);
            }
        }
    }

    /// Answers every waiting requester and says goodbye to every provider.
    pub(crate) fn shutdown(&mut self, now: Instant) {
        self.shut_down = true;
        let waiting: Vec<JobId> = self
            .jobs
            .values()
            .filter(|j| j.reply.is_some())
            .map(|j| j.id)
            .collect();
        for id in waiting {
            self.answer(
                id,
                Response::Failed(JobFailure {
                    job: id,
                    code: FailureCode::Shutdown,
                    reason: "the coordinator shut down before the result arrived".into(),
                    receipt: None,
                    price: 0,
                    provider: None,
                }),
                now,
            );
        }
        let all: Vec<SessionId> = self.sessions.keys().copied().collect();
        for sid in all {
            self.goodbye(sid, GoodbyeReason::Shutdown);
        }
    }
}

/// Whether a provider's signed chain position contradicts the one this
/// coordinator holds: behind it, or at it with another last receipt. (Ahead
/// is fine: receipts this coordinator has not seen yet.)
fn contradicts(ours: &ChainState, stated: &ChainState) -> bool {
    stated.next_sequence < ours.next_sequence
        || (stated.next_sequence == ours.next_sequence && stated.prev_hash != ours.prev_hash)
}
