//! The coordinator's state: provider sessions, per-key records that outlive
//! sessions (receipt chains, evidence, last quotes), and jobs from offer to
//! verified result. Connection threads call in with the lock held; the
//! engine only queues frames (it never blocks on a socket).

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::mpsc::Sender;
use std::time::{Duration, Instant};

use ring::rand::{SecureRandom, SystemRandom};
use tessera_core::attest::{
    kernel_hash, key_id, result_hash, result_seal, ChainState, DeviceCapabilities, Evidence,
    Receipt, ReceiptStatus, ReceiptVerifier, VerifyError,
};
use tessera_core::limits::{
    CHUNK_SIZE, MAX_BUFFERS, MAX_ENTRY_POINT, MAX_FRAME, MAX_KERNEL_BYTES, MAX_PUSH_CONSTANTS,
    MAX_SPEC_CONSTANTS,
};
use tessera_core::merkle::{empty_root, leaf_hash, root_of, root_of_buffers};
use tessera_core::wire::{
    BufferSpec, Cancel, Chunk, Completed, DecodeError, Digest, ErrorMsg, Failed, Goodbye,
    GoodbyeReason, Heartbeat, Hello, JobAssign, JobId, JobOffer, JobRef, KernelSpec, KeyId,
    Message, Nonce, UsageReport, Welcome, PROTOCOL_VERSION_MAX, PROTOCOL_VERSION_MIN,
};
use tessera_core::ErrorCode;

use crate::conn::Outbox;
use crate::protocol::{FailureCode, JobFailure, JobResult, Response, Submit};
use crate::state::ChainStore;
use crate::tls::hex;

/// `Cancel` reason: the offer was withdrawn (answered too late).
pub const CANCEL_OFFER_WITHDRAWN: u16 = 1;
/// `Cancel` reason: the accepted price is over the requester's maximum.
pub const CANCEL_PRICE_OVER_MAXIMUM: u16 = 2;
/// `Cancel` reason: the job's deadline passed without a verified result.
pub const CANCEL_DEADLINE: u16 = 3;

/// A provider connection's id, unique within a coordinator process.
pub(crate) type SessionId = u64;
/// A provider's Ed25519 public key.
pub type PublicKey = [u8; 32];

/// Evidence documents kept per key, newest last (receipts name one of them).
const EVIDENCE_KEPT: usize = 16;
/// Out-of-order receipts held per key while an earlier one is missing.
const MAX_PARKED: usize = 64;
/// Settled receipts remembered per key, to recognise a resend after a
/// reconnect.
const DONE_KEPT: usize = 4096;
/// How long a job stays known after its requester was answered, so a late
/// receipt is still verified (and its chain followed).
const ANSWERED_RETENTION: Duration = Duration::from_secs(600);

/// Timers and limits of the engine.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    pub heartbeat_ms: u32,
    pub offer_timeout: Duration,
    pub deadline_grace: Duration,
    pub handshake_timeout: Duration,
    pub provider_silence: Duration,
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
    /// Receipts rejected.
    pub receipts_rejected: u64,
    /// Resent receipts recognised as already verified.
    pub receipts_repeated: u64,
    /// Provider sessions refused at the handshake.
    pub sessions_refused: u64,
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
}

struct EvidenceInfo {
    hash: Digest,
    bytes: Vec<u8>,
    challenge: Nonce,
}

struct DoneEntry {
    receipt_hash: Digest,
    accepted: bool,
}

struct KeyRecord {
    key_id: KeyId,
    capabilities: DeviceCapabilities,
    session: Option<SessionId>,
    verifier: Option<ReceiptVerifier>,
    last_quote: Option<u64>,
    evidences: VecDeque<EvidenceInfo>,
    parked: BTreeMap<u64, (JobId, Vec<u8>)>,
    done: HashMap<JobId, DoneEntry>,
    done_order: VecDeque<JobId>,
}

impl KeyRecord {
    fn remember(&mut self, job: JobId, receipt_hash: Digest, accepted: bool) {
        if self
            .done
            .insert(
                job,
                DoneEntry {
                    receipt_hash,
                    accepted,
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
    price: u64,
    started: bool,
    /// One per read-back buffer, in buffer order.
    outputs: Vec<Vec<u8>>,
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
    },
    Assigned(Box<Assigned>),
}

struct Job {
    id: JobId,
    submit: Submit,
    assign: JobAssign,
    offer: JobOffer,
    kernel_hash: Digest,
    readback: Vec<usize>,
    submitted: Instant,
    deadline: Instant,
    reply: Option<Sender<Response>>,
    answered_at: Option<Instant>,
    stage: Stage,
    candidates: VecDeque<PublicKey>,
    excluded: HashSet<PublicKey>,
    declines: Vec<(KeyId, String)>,
}

impl Job {
    fn assigned_key(&self) -> Option<PublicKey> {
        match &self.stage {
            Stage::Assigned(a) => Some(a.key),
            Stage::Offering { .. } => None,
        }
    }
}

/// Why a submission was refused before any offer.
fn validate(s: &Submit) -> Result<(), String> {
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
    for (i, b) in s.buffers.iter().enumerate() {
        if b.len == 0 || b.init.len() as u64 > b.len {
            return Err(format!(
                "buffer {i}: length must be at least 1 and at least its initial data"
            ));
        }
    }
    if s.deadline_ms == 0 {
        return Err("deadline_ms must be at least 1".into());
    }
    Ok(())
}

fn build_assign(id: JobId, s: &Submit) -> JobAssign {
    let mut entry_point = heapless::String::new();
    // Lengths were validated against the capacities.
    let _ = entry_point.push_str(&s.entry_point);
    let specialization = s.specialization.iter().copied().collect();
    let push_constants = s.push_constants.iter().copied().collect();
    JobAssign {
        job: id,
        requester_nonce: s.nonce,
        kernel: KernelSpec {
            len: s.kernel.len() as u32,
            root: root_of(&s.kernel),
            entry_point,
            specialization,
            push_constants,
            grid: s.grid,
        },
        buffers: s
            .buffers
            .iter()
            .map(|b| BufferSpec {
                len: b.len,
                init_len: b.init.len() as u64,
                readback: b.readback,
            })
            .collect(),
        inputs_root: root_of_buffers(s.buffers.iter().map(|b| &b.init[..])),
    }
}

/// Encodes a provider-protocol message as a frame.
pub(crate) fn frame(msg: &Message<'_>) -> Vec<u8> {
    let mut buf = vec![0u8; MAX_FRAME];
    match msg.encode(&mut buf) {
        Ok(n) => {
            buf.truncate(n);
            buf
        }
        Err(e) => {
            // Every message built here keeps to the limits checked at submit.
            log::error!("could not encode {:?}: {e:?}", msg.kind());
            Vec::new()
        }
    }
}

fn input_frames(id: JobId, s: &Submit) -> Vec<Vec<u8>> {
    let mut streams: Vec<(u8, &[u8])> = vec![(0, &s.kernel)];
    for (i, b) in s.buffers.iter().enumerate() {
        if !b.init.is_empty() {
            streams.push((i as u8 + 1, &b.init));
        }
    }
    let mut frames = Vec::new();
    for (stream, data) in streams {
        for (index, chunk) in data.chunks(CHUNK_SIZE).enumerate() {
            frames.push(frame(&Message::InputChunk(Chunk {
                job: id,
                stream,
                index: index as u32,
                digest: leaf_hash(chunk),
                data: chunk,
            })));
        }
    }
    frames
}

fn short(key: &PublicKey) -> String {
    hex(&key_id(key)[..6])
}

/// The coordinator's state machine.
pub(crate) struct Engine {
    settings: Settings,
    sessions: HashMap<SessionId, Session>,
    keys: HashMap<PublicKey, KeyRecord>,
    jobs: HashMap<JobId, Job>,
    next_job: JobId,
    next_session: SessionId,
    rotation: usize,
    store: Option<ChainStore>,
    rng: SystemRandom,
    stats: Stats,
    shut_down: bool,
}

impl Engine {
    pub(crate) fn new(settings: Settings, store: Option<ChainStore>) -> Engine {
        Engine {
            settings,
            sessions: HashMap::new(),
            keys: HashMap::new(),
            jobs: HashMap::new(),
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

    pub(crate) fn open_session(&mut self, outbox: Outbox, peer: String, now: Instant) -> SessionId {
        let sid = self.next_session;
        self.next_session += 1;
        self.sessions.insert(
            sid,
            Session {
                outbox,
                peer,
                phase: Phase::AwaitingHello,
                opened: now,
                last_rx: now,
                last_heartbeat_sent: now,
                draining: false,
                load: None,
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
            };
            if lost {
                job.excluded.insert(key);
                job.declines
                    .push((key_id(&key), "disconnected before starting the job".into()));
                retry.push(job.id);
            }
        }
        for id in retry {
            self.reoffer(id, now);
        }
    }

    /// Recomputes a job's candidates (minus the keys it already tried) and
    /// offers it again.
    fn reoffer(&mut self, id: JobId, now: Instant) {
        let Some(job) = self.jobs.get(&id) else {
            return;
        };
        let requirements = job.submit.requirements;
        let excluded = job.excluded.clone();
        let candidates: VecDeque<PublicKey> = self
            .capable(&requirements)
            .into_iter()
            .filter(|k| !excluded.contains(k))
            .collect();
        if let Some(job) = self.jobs.get_mut(&id) {
            job.candidates = candidates;
        }
        self.offer_next(id, now);
    }

    /// A frame from the provider did not decode.
    pub(crate) fn decode_error(&mut self, sid: SessionId, e: DecodeError) -> bool {
        let (code, fatal) = match e {
            DecodeError::BadMagic => (ErrorCode::BadMagic, true),
            DecodeError::UnsupportedVersion(_) => (ErrorCode::UnsupportedVersion, true),
            DecodeError::FrameTooLarge(_) => (ErrorCode::FrameTooLarge, true),
            DecodeError::UnknownType(_) => (ErrorCode::UnknownMessageType, false),
            DecodeError::Malformed(_) | DecodeError::Incomplete => (ErrorCode::Malformed, false),
        };
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
        match msg {
            Message::Hello(h) => self.on_hello(sid, h),
            Message::Evidence(blob) => self.on_evidence(sid, blob.bytes, now),
            Message::Heartbeat(h) if ready => {
                if let Some(s) = self.sessions.get_mut(&sid) {
                    s.load = Some(h);
                }
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
                self.on_decline(sid, d.job, format!("{:?}", d.reason), now)
            }
            Message::Started(r) if ready => self.with_assigned(sid, r.job, |a| a.started = true),
            Message::Progress(_) if ready => {}
            Message::OutputChunk(c) if ready => self.on_output(sid, &c),
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
            last_quote: None,
            evidences: VecDeque::new(),
            parked: BTreeMap::new(),
            done: HashMap::new(),
            done_order: VecDeque::new(),
        });
        let old = rec.session.replace(sid);
        rec.capabilities = evidence.capabilities.clone();
        rec.evidences.push_back(EvidenceInfo {
            hash: Evidence::hash(bytes),
            bytes: bytes.to_vec(),
            challenge,
        });
        while rec.evidences.len() > EVIDENCE_KEPT {
            rec.evidences.pop_front();
        }
        if let Some(old) = old.filter(|o| *o != sid) {
            // The provider reconnected while its old transport lingers.
            log::info!("provider {} replaced session {old}", short(&key));
            self.close_session(old);
        }
        if let Some(s) = self.sessions.get_mut(&sid) {
            s.phase = Phase::Ready { key };
            s.last_heartbeat_sent = now;
        }
        log::info!(
            "provider {} ready: {:?}, {} MiB, features {:#x}",
            short(&key),
            evidence.capabilities.name.as_str(),
            evidence.capabilities.device_local_bytes >> 20,
            evidence.capabilities.features
        );
        self.send(sid, &Message::Ready);
    }

    // ----- matching ---------------------------------------------------------

    /// Ready, non-draining providers whose device meets `req`, cheapest last
    /// quote first (unknown quotes first of all, to learn them), rotating
    /// among equals.
    fn capable(&mut self, req: &tessera_core::wire::Requirements) -> Vec<PublicKey> {
        let mut found: Vec<(SessionId, PublicKey, u64)> = Vec::new();
        for (sid, s) in &self.sessions {
            let Phase::Ready { key } = s.phase else {
                continue;
            };
            if s.draining {
                continue;
            }
            let Some(rec) = self.keys.get(&key) else {
                continue;
            };
            let caps = &rec.capabilities;
            let memory = (req.memory_mib as u64) << 20;
            if req.features & !caps.features != 0 || memory > caps.device_local_bytes {
                continue;
            }
            if let Some(h) = s.load {
                if h.capacity > 0 && h.active_jobs >= h.capacity {
                    // Busy at its last heartbeat: last resort.
                    found.push((*sid, key, u64::MAX));
                    continue;
                }
            }
            found.push((*sid, key, rec.last_quote.unwrap_or(0)));
        }
        found.sort_by_key(|(sid, _, _)| *sid);
        if !found.is_empty() {
            let n = found.len();
            found.rotate_left(self.rotation % n);
        }
        self.rotation = self.rotation.wrapping_add(1);
        found.sort_by_key(|(_, _, quote)| *quote);
        found.into_iter().map(|(_, key, _)| key).collect()
    }

    /// Accepts a requester's job: validates it and offers it to the first
    /// candidate. The answer comes on `reply`.
    pub(crate) fn submit(&mut self, submit: Submit, reply: Sender<Response>, now: Instant) {
        self.stats.jobs_submitted += 1;
        if self.shut_down {
            self.stats.jobs_failed += 1;
            let _ = reply.send(Response::Failed(JobFailure {
                job: 0,
                code: FailureCode::Shutdown,
                reason: "the coordinator is shutting down".into(),
                receipt: None,
            }));
            return;
        }
        if let Err(reason) = validate(&submit) {
            self.stats.jobs_failed += 1;
            let _ = reply.send(Response::Failed(JobFailure {
                job: 0,
                code: FailureCode::Invalid,
                reason,
                receipt: None,
            }));
            return;
        }
        let id = self.next_job;
        self.next_job += 1;
        let assign = build_assign(id, &submit);
        let k = &assign.kernel;
        let khash = kernel_hash(
            &k.root,
            &k.entry_point,
            &k.specialization,
            &k.push_constants,
            k.grid,
        );
        let readback: Vec<usize> = submit
            .buffers
            .iter()
            .enumerate()
            .filter(|(_, b)| b.readback)
            .map(|(i, _)| i)
            .collect();
        let offer = JobOffer {
            job: id,
            requirements: submit.requirements,
            est_gpu_ms: submit.est_gpu_ms,
            bytes_in: submit.kernel.len() as u64
                + submit
                    .buffers
                    .iter()
                    .map(|b| b.init.len() as u64)
                    .sum::<u64>(),
            bytes_out: submit
                .buffers
                .iter()
                .filter(|b| b.readback)
                .map(|b| b.len)
                .sum(),
            max_price: submit.max_price,
            deadline_ms: submit.deadline_ms,
        };
        let candidates: VecDeque<PublicKey> = self.capable(&submit.requirements).into();
        let deadline =
            now + Duration::from_millis(submit.deadline_ms as u64) + self.settings.deadline_grace;
        log::info!(
            "job {id}: submitted ({} B kernel, {} buffers, max price {}), {} candidate(s)",
            submit.kernel.len(),
            submit.buffers.len(),
            submit.max_price,
            candidates.len()
        );
        self.jobs.insert(
            id,
            Job {
                id,
                submit,
                assign,
                offer,
                kernel_hash: khash,
                readback,
                submitted: now,
                deadline,
                reply: Some(reply),
                answered_at: None,
                // Replaced by `offer_next` before anyone looks.
                stage: Stage::Offering {
                    key: [0; 32],
                    session: 0,
                    since: now,
                },
                candidates,
                excluded: HashSet::new(),
                declines: Vec::new(),
            },
        );
        self.offer_next(id, now);
    }

    /// Offers the job to its next candidate, or answers the requester that
    /// nobody took it.
    fn offer_next(&mut self, id: JobId, now: Instant) {
        loop {
            let Some(job) = self.jobs.get_mut(&id) else {
                return;
            };
            let Some(key) = job.candidates.pop_front() else {
                break;
            };
            let Some(sid) = self.keys.get(&key).and_then(|r| r.session) else {
                continue;
            };
            let Some(session) = self.sessions.get(&sid) else {
                continue;
            };
            if session.draining || !matches!(session.phase, Phase::Ready { .. }) {
                continue;
            }
            let elapsed = now.saturating_duration_since(job.submitted).as_millis() as u32;
            let mut offer = job.offer;
            offer.deadline_ms = job.submit.deadline_ms.saturating_sub(elapsed).max(1);
            job.stage = Stage::Offering {
                key,
                session: sid,
                since: now,
            };
            log::debug!("job {id}: offered to {}", short(&key));
            self.send(sid, &Message::JobOffer(offer));
            return;
        }
        let Some(job) = self.jobs.remove(&id) else {
            return;
        };
        let (code, reason) = if job.declines.is_empty() {
            (
                FailureCode::NoCapableProvider,
                format!(
                    "no connected provider meets the requirements (memory {} MiB, features {:#x})",
                    job.submit.requirements.memory_mib, job.submit.requirements.features
                ),
            )
        } else {
            let list: Vec<String> = job
                .declines
                .iter()
                .map(|(k, why)| format!("{}: {why}", hex(&k[..6])))
                .collect();
            (
                FailureCode::AllDeclined,
                format!("no provider took the job ({})", list.join("; ")),
            )
        };
        log::info!("job {id}: {reason}");
        self.stats.jobs_failed += 1;
        if let Some(tx) = job.reply {
            let _ = tx.send(Response::Failed(JobFailure {
                job: id,
                code,
                reason,
                receipt: None,
            }));
        }
    }

    fn offering(&self, sid: SessionId, id: JobId) -> Option<PublicKey> {
        match self.jobs.get(&id)?.stage {
            Stage::Offering { key, session, .. } if session == sid => Some(key),
            _ => None,
        }
    }

    fn on_accept(&mut self, sid: SessionId, id: JobId, price: u64, now: Instant) {
        let Some(key) = self.offering(sid, id) else {
            // A late answer to an offer that timed out: withdraw it.
            log::debug!("session {sid}: acceptance of job {id} not on offer; cancelling");
            self.send(
                sid,
                &Message::Cancel(Cancel {
                    job: id,
                    reason: CANCEL_OFFER_WITHDRAWN,
                }),
            );
            return;
        };
        let Some(job) = self.jobs.get_mut(&id) else {
            return;
        };
        if price > job.offer.max_price || job.reply.is_none() {
            self.send(
                sid,
                &Message::Cancel(Cancel {
                    job: id,
                    reason: CANCEL_PRICE_OVER_MAXIMUM,
                }),
            );
            self.on_decline(sid, id, format!("price {price} over the maximum"), now);
            return;
        }
        job.stage = Stage::Assigned(Box::new(Assigned {
            key,
            price,
            started: false,
            outputs: job.readback.iter().map(|_| Vec::new()).collect(),
            cursor: (0, 0),
            output_error: None,
            completed: None,
            failed: None,
            usage: None,
        }));
        let assign = job.assign.clone();
        let frames = input_frames(id, &job.submit);
        if let Some(rec) = self.keys.get_mut(&key) {
            rec.last_quote = Some(price);
        }
        log::info!("job {id}: accepted by {} at {price}", short(&key));
        self.send(sid, &Message::JobAssign(assign));
        if let Some(s) = self.sessions.get(&sid) {
            for f in frames {
                s.outbox.send(f);
            }
        }
    }

    fn on_decline(&mut self, sid: SessionId, id: JobId, why: String, now: Instant) {
        let Some(key) = self.offering(sid, id) else {
            return;
        };
        if let Some(job) = self.jobs.get_mut(&id) {
            log::info!("job {id}: declined by {}: {why}", short(&key));
            job.excluded.insert(key);
            job.declines.push((key_id(&key), why));
        }
        self.offer_next(id, now);
    }

    fn with_assigned(&mut self, sid: SessionId, id: JobId, f: impl FnOnce(&mut Assigned)) {
        let Some(key) = self.session_key(sid) else {
            return;
        };
        if self
            .keys
            .get(&key)
            .is_some_and(|r| r.done.contains_key(&id))
        {
            // A resend of a result already settled.
            return;
        }
        match self.jobs.get_mut(&id).map(|j| &mut j.stage) {
            Some(Stage::Assigned(a)) if a.key == key => f(a),
            _ => self.send_error(sid, ErrorCode::UnknownJob, id),
        }
    }

    fn on_output(&mut self, sid: SessionId, c: &Chunk<'_>) {
        let Some(key) = self.session_key(sid) else {
            return;
        };
        if self
            .keys
            .get(&key)
            .is_some_and(|r| r.done.contains_key(&c.job))
        {
            return;
        }
        let Some(job) = self.jobs.get_mut(&c.job) else {
            self.send_error(sid, ErrorCode::UnknownJob, c.job);
            return;
        };
        let Stage::Assigned(a) = &mut job.stage else {
            self.send_error(sid, ErrorCode::UnknownJob, c.job);
            return;
        };
        if a.key != key {
            self.send_error(sid, ErrorCode::UnknownJob, c.job);
            return;
        }
        if c.index == 0 && job.readback.first() == Some(&(c.stream as usize)) {
            // The upload starts (again, after a reconnect): collect afresh.
            for o in a.outputs.iter_mut() {
                o.clear();
            }
            a.cursor = (0, 0);
            a.output_error = None;
            a.completed = None;
            a.failed = None;
            a.usage = None;
        }
        if a.output_error.is_some() {
            return;
        }
        let (pos, index) = a.cursor;
        let problem = match job.readback.get(pos) {
            None => Some((ErrorCode::ChunkOutOfOrder, "output past the last buffer")),
            Some(&buffer) if buffer != c.stream as usize || index != c.index => {
                Some((ErrorCode::ChunkOutOfOrder, "output chunk out of order"))
            }
            Some(&buffer) => {
                let total = job.assign.buffers[buffer].len;
                let have = a.outputs[pos].len() as u64;
                let want = (total - have).min(CHUNK_SIZE as u64) as usize;
                if c.data.len() != want {
                    Some((
                        ErrorCode::ChunkOutOfOrder,
                        "output chunk of the wrong length",
                    ))
                } else if leaf_hash(c.data) != c.digest {
                    Some((
                        ErrorCode::ChunkDigestMismatch,
                        "output chunk digest mismatch",
                    ))
                } else {
                    a.outputs[pos].extend_from_slice(c.data);
                    if a.outputs[pos].len() as u64 == total {
                        a.cursor = (pos + 1, 0);
                    } else {
                        a.cursor = (pos, index + 1);
                    }
                    None
                }
            }
        };
        if let Some((code, why)) = problem {
            log::warn!(
                "job {}: {why} (stream {}, chunk {})",
                c.job,
                c.stream,
                c.index
            );
            a.output_error = Some(format!("{why} (stream {}, chunk {})", c.stream, c.index));
            self.send_error(sid, code, c.job);
        }
    }

    // ----- receipts ---------------------------------------------------------

    fn on_receipt(&mut self, sid: SessionId, id: JobId, bytes: &[u8], now: Instant) {
        let Some(key) = self.session_key(sid) else {
            return;
        };
        let hash = Receipt::hash(bytes);
        if let Some(done) = self.keys.get(&key).and_then(|r| r.done.get(&id)) {
            if done.receipt_hash == hash {
                self.stats.receipts_repeated += 1;
                if done.accepted {
                    log::info!("job {id}: receipt resent after a reconnect; acknowledged again");
                    self.send(sid, &Message::ResultAck(JobRef { job: id }));
                } else {
                    self.send_error(sid, ErrorCode::ReceiptRejected, id);
                }
            } else {
                log::warn!("job {id}: a second, different receipt; rejected");
                self.stats.receipts_rejected += 1;
                self.send_error(sid, ErrorCode::ReceiptRejected, id);
            }
            return;
        }
        let receipt = match Receipt::verify(bytes, &key) {
            Ok(r) if r.job == id => r,
            Ok(r) => {
                self.reject(
                    key,
                    id,
                    format!("the receipt sent for job {id} names job {}", r.job),
                    None,
                    now,
                );
                return;
            }
            Err(e) => {
                // Not the provider's signature: the stream cannot be trusted.
                // Ending the session makes the provider send its unacknowledged
                // results again on a new one, which keeps its chain whole.
                self.reject(
                    key,
                    id,
                    format!("the receipt does not verify under the provider's key ({e:?})"),
                    None,
                    now,
                );
                self.goodbye(sid, GoodbyeReason::ProtocolError);
                return;
            }
        };
        self.chain_step(key, id, bytes.to_vec(), receipt, now);
    }

    /// Advances the key's chain over a correctly signed receipt, then settles
    /// it and any receipts that were waiting for it.
    fn chain_step(
        &mut self,
        key: PublicKey,
        id: JobId,
        bytes: Vec<u8>,
        receipt: Receipt,
        now: Instant,
    ) {
        let mut next = Some((id, bytes, receipt));
        while let Some((id, bytes, receipt)) = next.take() {
            // Another job of this key that ended here but whose receipt has
            // not arrived may hold an earlier sequence number.
            let predecessor_pending = receipt.sequence > 1
                && self.jobs.values().any(|j| {
                    j.id != id
                        && matches!(&j.stage, Stage::Assigned(a)
                            if a.key == key && (a.completed.is_some() || a.failed.is_some()))
                });
            let Some(rec) = self.keys.get_mut(&key) else {
                return;
            };
            if rec.verifier.is_none() {
                if predecessor_pending && rec.parked.len() < MAX_PARKED {
                    rec.parked.insert(receipt.sequence, (id, bytes));
                    continue;
                }
                // No stored position: the chain is taken from here on
                // (trust on first use; `--state-dir` avoids it).
                log::info!(
                    "provider {}: no stored chain; anchoring at receipt #{}",
                    short(&key),
                    receipt.sequence
                );
                rec.verifier = Some(ReceiptVerifier::new(
                    key,
                    ChainState {
                        next_sequence: receipt.sequence,
                        prev_hash: receipt.prev_hash,
                    },
                ));
            }
            let Some(verifier) = rec.verifier.as_mut() else {
                return;
            };
            match verifier.verify_next(&bytes, None) {
                Ok(_) => {
                    let chain = verifier.chain();
                    self.stats.receipts_verified += 1;
                    if let Some(store) = &self.store {
                        if let Err(e) = store.save(&key, &chain) {
                            log::error!("cannot store the chain of {}: {e}", short(&key));
                        }
                    }
                    self.settle(key, id, &bytes, &receipt, now);
                    if let Some(rec) = self.keys.get_mut(&key) {
                        if let Some((pid, pbytes)) = rec.parked.remove(&chain.next_sequence) {
                            if let Ok(r) = Receipt::verify(&pbytes, &key) {
                                next = Some((pid, pbytes, r));
                            }
                        }
                    }
                }
                Err(VerifyError::OutOfOrder) if rec.parked.len() < MAX_PARKED => {
                    log::info!(
                        "job {id}: receipt #{} waits for #{} of {}",
                        receipt.sequence,
                        verifier.chain().next_sequence,
                        short(&key)
                    );
                    rec.parked.insert(receipt.sequence, (id, bytes));
                }
                Err(e) => {
                    let at = verifier.chain().next_sequence;
                    self.reject(
                        key,
                        id,
                        format!(
                            "receipt #{} breaks the provider's chain at #{at} ({e:?})",
                            receipt.sequence
                        ),
                        Some(Receipt::hash(&bytes)),
                        now,
                    );
                }
            }
        }
    }

    /// Rejects a job's receipt: tells the provider, and the requester if it
    /// is still waiting.
    fn reject(
        &mut self,
        key: PublicKey,
        id: JobId,
        reason: String,
        remember: Option<Digest>,
        now: Instant,
    ) {
        log::warn!("job {id}: receipt from {} rejected: {reason}", short(&key));
        self.stats.receipts_rejected += 1;
        self.send_to_key(
            &key,
            &Message::Error(ErrorMsg {
                code: ErrorCode::ReceiptRejected as u16,
                job: id,
            }),
        );
        if let (Some(hash), Some(rec)) = (remember, self.keys.get_mut(&key)) {
            rec.remember(id, hash, false);
        }
        let ours = self
            .jobs
            .get(&id)
            .is_some_and(|j| j.assigned_key() == Some(key));
        if ours {
            self.answer(
                id,
                Response::Failed(JobFailure {
                    job: id,
                    code: FailureCode::ReceiptRejected,
                    reason,
                    receipt: None,
                }),
                now,
            );
        }
    }

    fn answer(&mut self, id: JobId, response: Response, now: Instant) {
        let Some(job) = self.jobs.get_mut(&id) else {
            return;
        };
        if let Some(tx) = job.reply.take() {
            match &response {
                Response::Result(_) => self.stats.results_delivered += 1,
                Response::Failed(_) => self.stats.jobs_failed += 1,
            }
            let _ = tx.send(response);
            job.answered_at = Some(now);
        }
    }

    /// A receipt whose signature and chain position verified: check it
    /// against the job, then acknowledge and deliver, or reject.
    fn settle(&mut self, key: PublicKey, id: JobId, bytes: &[u8], receipt: &Receipt, now: Instant) {
        let hash = Receipt::hash(bytes);
        let ours = self
            .jobs
            .get(&id)
            .is_some_and(|j| j.assigned_key() == Some(key));
        if !ours {
            // Signed work we no longer track (taken elsewhere after a
            // disconnect, or long answered): acknowledge so the provider can
            // forget it; the chain has advanced over it.
            log::warn!(
                "job {id}: receipt from {} for a job not assigned to it now; acknowledged",
                short(&key)
            );
            if let Some(rec) = self.keys.get_mut(&key) {
                rec.remember(id, hash, true);
            }
            self.send_to_key(&key, &Message::ResultAck(JobRef { job: id }));
            return;
        }
        let checked = self.check_content(key, id, bytes, receipt);
        match checked {
            Ok(response) => {
                if let Some(rec) = self.keys.get_mut(&key) {
                    rec.remember(id, hash, true);
                }
                self.send_to_key(&key, &Message::ResultAck(JobRef { job: id }));
                let late = self.jobs.get(&id).is_some_and(|j| j.reply.is_none());
                if late {
                    log::warn!(
                        "job {id}: verified result arrived after the requester was answered"
                    );
                } else {
                    log::info!(
                        "job {id}: receipt #{} verified; {}",
                        receipt.sequence,
                        match &response {
                            Response::Result(_) => "result delivered",
                            Response::Failed(_) => "failure reported",
                        }
                    );
                }
                self.answer(id, response, now);
                self.jobs.remove(&id);
            }
            Err(reason) => {
                self.reject(key, id, reason, Some(hash), now);
                self.jobs.remove(&id);
            }
        }
    }

    fn check_content(
        &mut self,
        key: PublicKey,
        id: JobId,
        bytes: &[u8],
        r: &Receipt,
    ) -> Result<Response, String> {
        let evidence = self
            .keys
            .get(&key)
            .and_then(|rec| rec.evidences.iter().find(|e| e.hash == r.evidence_hash))
            .map(|e| (e.bytes.clone(), e.challenge))
            .ok_or("the receipt names evidence this coordinator never verified")?;
        let job = self.jobs.get_mut(&id).ok_or("unknown job")?;
        let Stage::Assigned(a) = &mut job.stage else {
            return Err("job not assigned".into());
        };
        let usage = a.usage.ok_or("no UsageReport arrived before the receipt")?;
        if r.requester_nonce != job.submit.nonce {
            return Err("the receipt carries another requester nonce".into());
        }
        if r.kernel_hash != job.kernel_hash {
            return Err("the receipt's kernel hash is not that of the kernel sent".into());
        }
        if r.input_root != job.assign.inputs_root {
            return Err("the receipt's input root is not that of the inputs sent".into());
        }
        if r.usage != usage.usage || r.price != usage.price {
            return Err("the receipt's usage or price differs from the UsageReport".into());
        }
        let rh = result_hash(&r.kernel_hash, &r.input_root, &r.output_root, r.output_len);
        if r.result_hash != rh || r.result_seal != result_seal(&key, id, &rh) {
            return Err("the receipt's result hash or seal is inconsistent".into());
        }
        match r.status {
            ReceiptStatus::Completed => {
                let c = a
                    .completed
                    .ok_or("the receipt says completed but no Completed arrived")?;
                if let Some(e) = &a.output_error {
                    return Err(format!("outputs did not arrive intact: {e}"));
                }
                let expected: u64 = job
                    .readback
                    .iter()
                    .map(|&b| job.assign.buffers[b].len)
                    .sum();
                let got: u64 = a.outputs.iter().map(|o| o.len() as u64).sum();
                if got != expected {
                    return Err(format!("outputs incomplete: {got} of {expected} bytes"));
                }
                let root = root_of_buffers(a.outputs.iter().map(|o| &o[..]));
                if r.output_root != root || c.output_root != root {
                    return Err(
                        "the receipt's output root is not that of the outputs received".into(),
                    );
                }
                if r.output_len != expected || c.output_len != expected {
                    return Err("the receipt's output length is wrong".into());
                }
                log::debug!("job {id}: quoted {}, charged {}", a.price, r.price);
                if r.price > job.offer.max_price {
                    return Err(format!(
                        "price {} is over the requester's maximum {}",
                        r.price, job.offer.max_price
                    ));
                }
                Ok(Response::Result(JobResult {
                    job: id,
                    outputs: std::mem::take(&mut a.outputs),
                    receipt: bytes.to_vec(),
                    provider_public_key: key,
                    evidence: evidence.0,
                    evidence_challenge: evidence.1,
                    usage: r.usage,
                    price: r.price,
                }))
            }
            ReceiptStatus::Failed(reason) => {
                let f = a
                    .failed
                    .ok_or("the receipt says failed but no Failed arrived")?;
                if f.reason != reason || r.output_root != empty_root() || r.output_len != 0 {
                    return Err("the failure receipt disagrees with the Failed message".into());
                }
                Ok(Response::Failed(JobFailure {
                    job: id,
                    code: FailureCode::JobFailed,
                    reason: format!(
                        "the provider reports {:?} (detail {}), signed in receipt #{}",
                        f.reason, f.detail, r.sequence
                    ),
                    receipt: Some(bytes.to_vec()),
                }))
            }
        }
    }

    // ----- timers -----------------------------------------------------------

    /// Heartbeats, silent peers, offer and job timeouts.
    pub(crate) fn tick(&mut self, now: Instant) {
        let hb = Duration::from_millis(self.settings.heartbeat_ms.max(1) as u64);
        let mut to_close = Vec::new();
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
                        log::warn!(
                            "session {sid} ({}): handshake not finished; closing",
                            s.peer
                        );
                        to_close.push(*sid);
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
        for (id, sid) in offer_expired {
            self.send(
                sid,
                &Message::Cancel(Cancel {
                    job: id,
                    reason: CANCEL_OFFER_WITHDRAWN,
                }),
            );
            self.on_decline(sid, id, "no answer to the offer".into(), now);
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
            if let Some(job) = self.jobs.get_mut(&id) {
                if let Stage::Offering { session, .. } = job.stage {
                    self.send(
                        session,
                        &Message::Cancel(Cancel {
                            job: id,
                            reason: CANCEL_DEADLINE,
                        }),
                    );
                    // Nothing was assigned: nothing can come back.
                    forget.push(id);
                }
            }
            let who = key
                .map(|k| short(&k))
                .unwrap_or_else(|| "no provider".into());
            self.answer(
                id,
                Response::Failed(JobFailure {
                    job: id,
                    code: FailureCode::Timeout,
                    reason: format!("no verified result within {waited} ms (provider: {who})"),
                    receipt: None,
                }),
                now,
            );
        }
        for id in forget {
            self.jobs.remove(&id);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conn::{queued_frames, test_outbox, WriteCmd};
    use crate::protocol::BufferInit;
    use std::sync::mpsc::{self, Receiver};
    use tessera_core::attest::Ed25519Signer;
    use tessera_core::testkit::{increment_run, Harness};
    use tessera_core::wire::{MessageType, Requirements};
    use tessera_core::{Agent, Policy};

    fn engine() -> Engine {
        Engine::new(
            Settings {
                heartbeat_ms: 1000,
                offer_timeout: Duration::from_secs(5),
                deadline_grace: Duration::from_secs(1),
                handshake_timeout: Duration::from_secs(5),
                provider_silence: Duration::from_secs(20),
            },
            None,
        )
    }

    fn harness() -> Harness {
        let signer = Ed25519Signer::from_seed(&[42; 32]).expect("seed");
        let capabilities = DeviceCapabilities {
            device_local_bytes: 1 << 30,
            ..DeviceCapabilities::default()
        };
        let config = tessera_core::Config {
            agent_version: [0, 1, 0],
            boot_id: [1; 16],
            capabilities,
            policy: Policy::default(),
            persist_results: false,
        };
        let agent = Agent::new(config, signer, ChainState::default()).expect("agent");
        Harness::new(agent, increment_run)
    }

    fn job(nonce: u8) -> Submit {
        Submit {
            kernel: vec![1, 2, 3, 4],
            entry_point: "main".into(),
            specialization: Vec::new(),
            push_constants: Vec::new(),
            grid: [1, 1, 1],
            buffers: vec![
                BufferInit {
                    init: vec![nonce; 10_000],
                    len: 10_000,
                    readback: false,
                },
                BufferInit {
                    init: Vec::new(),
                    len: 10_000,
                    readback: true,
                },
            ],
            requirements: Requirements::default(),
            est_gpu_ms: 1,
            max_price: 1_000,
            deadline_ms: 60_000,
            nonce: [nonce; 32],
        }
    }

    /// Moves frames both ways until quiet; `hold` keeps back agent frames.
    fn shuttle(
        e: &mut Engine,
        sid: SessionId,
        h: &mut Harness,
        rx: &Receiver<WriteCmd>,
        hold: &mut dyn FnMut(&[u8]) -> bool,
    ) {
        for _ in 0..1000 {
            let mut moved = false;
            for f in queued_frames(rx) {
                h.send_raw(&f);
                moved = true;
            }
            for f in h.pump() {
                moved = true;
                if !hold(&f) {
                    let msg = Message::decode(&f).expect("agent frames decode");
                    e.on_message(sid, msg, Instant::now());
                }
            }
            if !moved {
                return;
            }
        }
        panic!("no quiet after 1000 rounds");
    }

    #[test]
    fn a_receipt_ahead_of_its_predecessor_waits_for_it() {
        let mut e = engine();
        let (outbox, rx) = test_outbox();
        let sid = e.open_session(outbox, "test".into(), Instant::now());
        let mut h = harness();
        h.agent.connect(h.now).expect("connect");
        shuttle(&mut e, sid, &mut h, &rx, &mut |_| false);
        assert_eq!(h.agent.state(), tessera_core::ConnState::Ready);

        let (tx_a, rx_a) = mpsc::channel();
        let (tx_b, rx_b) = mpsc::channel();
        e.submit(job(1), tx_a, Instant::now());
        e.submit(job(2), tx_b, Instant::now());
        let mut held = None;
        shuttle(&mut e, sid, &mut h, &rx, &mut |f| {
            let first_receipt = f[3] == MessageType::Receipt as u8 && held.is_none();
            if first_receipt {
                held = Some(f.to_vec());
            }
            first_receipt
        });
        let early = (rx_a.try_recv(), rx_b.try_recv(), h.host.log.clone());
        assert!(early.0.is_err() && early.1.is_err(), "{early:?}");
        assert_eq!(e.stats().receipts_verified, 0, "receipt #2 is parked");

        let held = held.expect("a receipt was held back");
        let msg = Message::decode(&held).expect("decodes");
        e.on_message(sid, msg, Instant::now());
        let sequences: Vec<u64> = [rx_a.try_recv(), rx_b.try_recv()]
            .into_iter()
            .map(|r| match r {
                Ok(Response::Result(r)) => {
                    Receipt::verify(&r.receipt, &r.provider_public_key)
                        .expect("verifies")
                        .sequence
                }
                other => panic!("expected a result, got {other:?}"),
            })
            .collect();
        assert_eq!(sequences, vec![1, 2]);
        assert_eq!(e.stats().receipts_verified, 2);
        shuttle(&mut e, sid, &mut h, &rx, &mut |_| false);
        assert_eq!(h.agent.stats().jobs_completed, 2, "both acknowledged");
    }

    #[test]
    fn submissions_breaking_a_limit_are_refused_before_any_offer() {
        let mut bad = job(1);
        bad.kernel.push(0);
        assert!(validate(&bad).is_err());
        let mut bad = job(1);
        bad.buffers[0].len = 1;
        assert!(validate(&bad).is_err());
        let mut bad = job(1);
        bad.grid = [1, 0, 1];
        assert!(validate(&bad).is_err());
        assert!(validate(&job(1)).is_ok());
    }
}
