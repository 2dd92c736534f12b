//! The coordinator server: a TLS 1.3 listener with a thread per connection
//! (and a writer thread each once its handshake is done), within the
//! connection caps. After the handshake the first two bytes tell a provider
//! (`"TS"`, the provider protocol) from a requester (`"TQ"`, the requester
//! protocol).

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use rustls::{ServerConfig, ServerConnection};
use tessera_core::limits::{HEADER_LEN, MAX_FRAME};
use tessera_core::merkle::leaf_hash;
use tessera_core::wire::{Header, Message, MAGIC};

use crate::budget::{Budget, Permit};
use crate::conn::{self, Outbox, TlsReader, WriteLimits};
use crate::engine::{Answer, Engine, ProviderInfo, Settings, Stats};
use crate::protocol::{
    bounded_reason, encode_frame, parse_header, response_parts, FailureCode, FrameError,
    JobFailure, Response, DEFAULT_MAX_REQUEST_BODY, REQUEST_HEADER_LEN, REQUEST_MAGIC,
};
use crate::state::ChainStore;
use crate::submission::{self, Limits, Refusal};

/// How the coordinator runs, and every limit it keeps.
///
/// Nothing a peer sends before it is authenticated is unbounded: the number
/// of connections (in all and per source address), the time from a
/// connection's acceptance to its first message, the time a request may take
/// to arrive, the bytes a request may hold (each, and all requesters
/// together), the bytes queued for a peer that does not read, and the
/// records kept of providers gone. `README.md` beside this crate lists the
/// limits and what a peer over one sees.
#[derive(Clone)]
pub struct Config {
    /// Address to listen on (port 0 picks a free port).
    pub listen: SocketAddr,
    /// TLS server configuration ([`crate::tls::server_config`]).
    pub tls: Arc<ServerConfig>,
    /// Heartbeat interval asked of providers, in milliseconds; the
    /// coordinator sends its own at the same interval.
    pub heartbeat_ms: u32,
    /// How long a provider has to answer an offer.
    pub offer_timeout: Duration,
    /// Added to a job's deadline before the requester is told it timed out.
    pub deadline_grace: Duration,
    /// Time from a connection's acceptance until the TLS handshake and the
    /// first protocol message are complete, all of it, however the peer
    /// spreads its bytes: a provider's `Hello` (and then its `Evidence`, up
    /// to `Ready`), a requester's first frame header. Default 10 s.
    pub handshake_timeout: Duration,
    /// Silence after which a provider session is closed.
    pub provider_silence: Duration,
    /// Where providers' receipt-chain positions are kept across restarts.
    pub state_dir: Option<PathBuf>,
    /// Connections open at once, in all; more are closed as they are
    /// accepted. Each costs a thread (two once its handshake is done).
    /// Default 1024.
    pub max_connections: usize,
    /// Connections open at once from one IP address. Default 128: an
    /// eighth of the default total, room for a hundred providers behind one
    /// address.
    pub max_connections_per_ip: usize,
    /// A write to a peer that makes no progress this long ends the
    /// connection. Default 10 s.
    pub write_timeout: Duration,
    /// Bytes queued for one peer and not yet written (a job's inputs, which
    /// are framed as the peer reads them, not counted); a frame that would
    /// go over it disconnects the peer instead. One frame is always taken
    /// when nothing waits. Default 4 MiB.
    pub max_outbox_bytes: usize,
    /// Largest requester frame body accepted: a larger one is answered
    /// `Invalid` and the connection closed. Default 256 MiB.
    pub max_request_body: usize,
    /// Least rate, in bytes per second, at which a request body must
    /// arrive: a body of `n` bytes has `handshake_timeout + n /
    /// min_request_rate` from the end of its header. Default 1 MiB/s.
    pub min_request_rate: u64,
    /// Time a requester connection may take to send the whole header of its
    /// next request after an answer. Default 120 s.
    pub requester_idle: Duration,
    /// Largest sum of read-back buffer lengths one submission may state (its
    /// result comes back in one frame). Default 256 MiB.
    pub max_readback_bytes: u64,
    /// Bytes held for all requesters together: request bodies as they
    /// arrive and while their jobs need them, plus the read-back bytes each
    /// job states, until its answer is written. A request over it is
    /// answered `Busy`. Default 1 GiB.
    pub max_buffered_bytes: usize,
    /// Records of provider keys kept; records of disconnected keys beyond it
    /// are pruned, the longest gone first. Default 1024.
    pub max_known_keys: usize,
    /// A disconnected provider's record (chain position, evidence, recent
    /// receipts) is pruned after this long; with `state_dir` its chain
    /// position is read back when it returns. Default 1 h.
    pub key_retention: Duration,
}

impl Config {
    /// Defaults: heartbeats every 5 s, providers dropped after 20 s of
    /// silence, 5 s to answer an offer, 2 s grace on deadlines, and the
    /// limits' defaults each field gives.
    pub fn new(listen: SocketAddr, tls: Arc<ServerConfig>) -> Config {
        Config {
            listen,
            tls,
            heartbeat_ms: 5000,
            offer_timeout: Duration::from_secs(5),
            deadline_grace: Duration::from_secs(2),
            handshake_timeout: Duration::from_secs(10),
            provider_silence: Duration::from_secs(20),
            state_dir: None,
            max_connections: 1024,
            max_connections_per_ip: 128,
            write_timeout: Duration::from_secs(10),
            max_outbox_bytes: 4 << 20,
            max_request_body: DEFAULT_MAX_REQUEST_BODY,
            min_request_rate: 1 << 20,
            requester_idle: Duration::from_secs(120),
            max_readback_bytes: 256 << 20,
            max_buffered_bytes: 1 << 30,
            max_known_keys: 1024,
            key_retention: Duration::from_secs(3600),
        }
    }

    /// Which limit, if any, admits nothing at all.
    fn check(&self) -> Result<(), &'static str> {
        let zero = [
            (self.max_connections == 0, "max_connections"),
            (self.max_connections_per_ip == 0, "max_connections_per_ip"),
            (self.handshake_timeout.is_zero(), "handshake_timeout"),
            (self.write_timeout.is_zero(), "write_timeout"),
            (self.min_request_rate == 0, "min_request_rate"),
            (self.requester_idle.is_zero(), "requester_idle"),
        ];
        match zero.iter().find(|(is_zero, _)| *is_zero) {
            Some((_, name)) => Err(name),
            None => Ok(()),
        }
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("listen", &self.listen)
            .field("heartbeat_ms", &self.heartbeat_ms)
            .field("offer_timeout", &self.offer_timeout)
            .field("deadline_grace", &self.deadline_grace)
            .field("handshake_timeout", &self.handshake_timeout)
            .field("provider_silence", &self.provider_silence)
            .field("state_dir", &self.state_dir)
            .field("max_connections", &self.max_connections)
            .field("max_connections_per_ip", &self.max_connections_per_ip)
            .field("write_timeout", &self.write_timeout)
            .field("max_outbox_bytes", &self.max_outbox_bytes)
            .field("max_request_body", &self.max_request_body)
            .field("min_request_rate", &self.min_request_rate)
            .field("requester_idle", &self.requester_idle)
            .field("max_readback_bytes", &self.max_readback_bytes)
            .field("max_buffered_bytes", &self.max_buffered_bytes)
            .field("max_known_keys", &self.max_known_keys)
            .field("key_retention", &self.key_retention)
            .finish_non_exhaustive()
    }
}

/// Why the coordinator could not start.
#[derive(Debug)]
pub enum CoordinatorError {
    /// The listen address could not be bound (in use, or not local).
    Bind(SocketAddr, io::Error),
    /// The state directory could not be created or opened.
    StateDir(PathBuf, io::Error),
    /// A thread could not be started.
    Spawn(io::Error),
    /// A limit of the configuration admits nothing (it is zero): which.
    Config(&'static str),
}

impl fmt::Display for CoordinatorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CoordinatorError::Bind(a, e) => write!(f, "cannot listen on {a}: {e}"),
            CoordinatorError::StateDir(p, e) => {
                write!(f, "cannot use state directory {}: {e}", p.display())
            }
            CoordinatorError::Spawn(e) => write!(f, "cannot start a thread: {e}"),
            CoordinatorError::Config(name) => {
                write!(f, "configuration: {name} is zero, which admits nothing")
            }
        }
    }
}

impl std::error::Error for CoordinatorError {}

/// Counters kept outside the engine's lock.
#[derive(Default)]
struct Counters {
    connections_refused: AtomicU64,
    handshakes_expired: AtomicU64,
    outbox_overflows: Arc<AtomicU64>,
    requests_refused: AtomicU64,
}

/// Open connections, in all and per source address.
#[derive(Default)]
struct Connections {
    open: Mutex<(usize, HashMap<IpAddr, usize>)>,
}

impl Connections {
    fn lock(&self) -> MutexGuard<'_, (usize, HashMap<IpAddr, usize>)> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn open(&self) -> usize {
        self.lock().0
    }
}

/// One admitted connection; gives its place back when the last of its
/// threads lets go.
struct Slot {
    table: Arc<Connections>,
    ip: IpAddr,
}

impl Slot {
    /// A place for a connection from `ip`, if the caps leave one.
    fn admit(table: &Arc<Connections>, ip: IpAddr, config: &Config) -> Option<Slot> {
        let mut open = table.lock();
        let from_ip = open.1.get(&ip).copied().unwrap_or(0);
        if open.0 >= config.max_connections || from_ip >= config.max_connections_per_ip {
            return None;
        }
        open.0 += 1;
        open.1.insert(ip, from_ip + 1);
        Some(Slot {
            table: Arc::clone(table),
            ip,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.table.lock();
        open.0 = open.0.saturating_sub(1);
        let gone = match open.1.get_mut(&self.ip) {
            Some(n) => {
                *n = n.saturating_sub(1);
                *n == 0
            }
            None => false,
        };
        if gone {
            // The map holds only addresses with connections open.
            open.1.remove(&self.ip);
        }
    }
}

struct Shared {
    engine: Mutex<Engine>,
    stop: AtomicBool,
    config: Config,
    connections: Arc<Connections>,
    budget: Arc<Budget>,
    counters: Counters,
}

impl Shared {
    fn engine(&self) -> MutexGuard<'_, Engine> {
        self.engine.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn expired(&self, who: &str, e: &io::Error) {
        if e.kind() == io::ErrorKind::TimedOut {
            self.counters
                .handshakes_expired
                .fetch_add(1, Ordering::Relaxed);
            log::debug!("{who}: {e}");
        } else {
            log::debug!("{who}: {e}");
        }
    }
}

/// A running coordinator. Dropping it shuts it down.
pub struct Coordinator {
    shared: Arc<Shared>,
    addr: SocketAddr,
    threads: Vec<JoinHandle<()>>,
}

impl fmt::Debug for Coordinator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Coordinator")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Coordinator {
    /// Binds the listener and starts accepting providers and requesters.
    pub fn start(config: Config) -> Result<Coordinator, CoordinatorError> {
        config.check().map_err(CoordinatorError::Config)?;
        let store = match &config.state_dir {
            Some(dir) => Some(
                ChainStore::open(dir).map_err(|e| CoordinatorError::StateDir(dir.clone(), e))?,
            ),
            None => None,
        };
        let listener = TcpListener::bind(config.listen)
            .map_err(|e| CoordinatorError::Bind(config.listen, e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| CoordinatorError::Bind(config.listen, e))?;
        let settings = Settings {
            heartbeat_ms: config.heartbeat_ms,
            offer_timeout: config.offer_timeout,
            deadline_grace: config.deadline_grace,
            handshake_timeout: config.handshake_timeout,
            provider_silence: config.provider_silence,
            max_known_keys: config.max_known_keys,
            key_retention: config.key_retention,
        };
        let shared = Arc::new(Shared {
            engine: Mutex::new(Engine::new(settings, store)),
            stop: AtomicBool::new(false),
            connections: Arc::new(Connections::default()),
            budget: Budget::new(config.max_buffered_bytes),
            counters: Counters::default(),
            config,
        });
        let accept_shared = Arc::clone(&shared);
        let accept = thread::Builder::new()
            .name("tessera-accept".into())
            .spawn(move || accept_loop(accept_shared, listener))
            .map_err(CoordinatorError::Spawn)?;
        let tick_shared = Arc::clone(&shared);
        let ticker = thread::Builder::new()
            .name("tessera-timers".into())
            .spawn(move || {
                while !tick_shared.stop.load(Ordering::Relaxed) {
                    thread::sleep(Duration::from_millis(50));
                    tick_shared.engine().tick(Instant::now());
                }
            })
            .map_err(CoordinatorError::Spawn)?;
        log::info!("coordinator listening on {addr}");
        Ok(Coordinator {
            shared,
            addr,
            threads: vec![accept, ticker],
        })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every provider key known: connected, or gone within
    /// `Config::key_retention`.
    pub fn providers(&self) -> Vec<ProviderInfo> {
        self.shared.engine().providers()
    }

    /// Counters.
    pub fn stats(&self) -> Stats {
        let mut stats = self.shared.engine().stats();
        let c = &self.shared.counters;
        stats.connections_open = self.shared.connections.open() as u64;
        stats.connections_refused = c.connections_refused.load(Ordering::Relaxed);
        stats.handshakes_expired += c.handshakes_expired.load(Ordering::Relaxed);
        stats.outbox_overflows = c.outbox_overflows.load(Ordering::Relaxed);
        stats.requests_refused = c.requests_refused.load(Ordering::Relaxed);
        stats
    }

    /// Bytes held for requesters now (bodies, and read-back bytes stated),
    /// counted against `Config::max_buffered_bytes`.
    pub fn buffered_bytes(&self) -> usize {
        self.shared.budget.used()
    }

    /// Asks every connected provider to drain.
    pub fn drain_providers(&self) {
        self.shared.engine().drain_all();
    }

    /// Stops accepting, answers waiting requesters, says goodbye to providers.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if self.shared.stop.swap(true, Ordering::SeqCst) {
            return;
        }
        self.shared.engine().shutdown(Instant::now());
        // Wakes the accept loop so it sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200));
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for Coordinator {
    fn drop(&mut self) {
        self.stop();
    }
}

fn accept_loop(shared: Arc<Shared>, listener: TcpListener) {
    for stream in listener.incoming() {
        if shared.stop.load(Ordering::Relaxed) {
            break;
        }
        let sock = match stream {
            Ok(s) => s,
            Err(e) => {
                // Out of file descriptors, most likely: wait for some to close.
                log::warn!("accept failed: {e}");
                thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        let accepted = Instant::now();
        let Ok(peer) = sock.peer_addr() else {
            continue;
        };
        let Some(slot) = Slot::admit(&shared.connections, peer.ip(), &shared.config) else {
            shared
                .counters
                .connections_refused
                .fetch_add(1, Ordering::Relaxed);
            log::debug!("{peer}: over the connection caps; closed");
            continue;
        };
        let conn_shared = Arc::clone(&shared);
        let spawned = thread::Builder::new()
            .name("tessera-conn".into())
            .spawn(move || serve(conn_shared, sock, peer, Arc::new(slot), accepted));
        if let Err(e) = spawned {
            log::error!("cannot start a connection thread: {e}");
        }
    }
}

/// `at + d`, or far in the future when the clock cannot add it.
fn after(at: Instant, d: Duration) -> Instant {
    at.checked_add(d)
        .unwrap_or_else(|| at + Duration::from_secs(365 * 24 * 3600))
}

fn serve(
    shared: Arc<Shared>,
    sock: TcpStream,
    peer: SocketAddr,
    slot: Arc<Slot>,
    accepted: Instant,
) {
    let who = peer.to_string();
    let deadline = after(accepted, shared.config.handshake_timeout);
    let tls = match ServerConnection::new(Arc::clone(&shared.config.tls)) {
        Ok(c) => c,
        Err(e) => {
            log::error!("cannot start TLS for {who}: {e}");
            return;
        }
    };
    let limits = WriteLimits {
        max_queued: shared.config.max_outbox_bytes,
        write_timeout: shared.config.write_timeout,
        overflows: Arc::clone(&shared.counters.outbox_overflows),
    };
    let (mut reader, outbox) =
        match conn::accept(tls, sock, deadline, limits, Box::new(Arc::clone(&slot))) {
            Ok(pair) => pair,
            Err(e) => {
                shared.expired(&format!("TLS handshake with {who}"), &e);
                return;
            }
        };
    // The first message is due by the same deadline.
    if let Err(e) = reader.set_deadline(Some(deadline)) {
        log::warn!("{who}: {e}");
        outbox.abort();
        return;
    }
    let mut magic = [0u8; 2];
    match reader.read_exact_or_eof(&mut magic) {
        Ok(true) => {}
        Ok(false) => {
            outbox.close();
            return;
        }
        Err(e) => {
            shared.expired(&who, &e);
            outbox.abort();
            return;
        }
    }
    if magic == MAGIC {
        serve_provider(&shared, reader, outbox, magic, accepted);
    } else if magic == REQUEST_MAGIC {
        serve_requester(&shared, reader, outbox, magic);
    } else {
        log::info!("{who}: speaks neither protocol (first bytes {magic:02x?})");
        outbox.abort();
    }
    drop(slot);
}

fn serve_provider(
    shared: &Shared,
    mut reader: TlsReader,
    outbox: Outbox,
    magic: [u8; 2],
    accepted: Instant,
) {
    let peer = reader.peer();
    let sid = shared
        .engine()
        .open_session(outbox.clone(), peer.clone(), accepted, Instant::now());
    log::debug!("session {sid}: provider connection from {peer}");
    let mut buf = vec![0u8; MAX_FRAME];
    buf[..2].copy_from_slice(&magic);
    let mut have = 2;
    let mut first = true;
    loop {
        match reader.read_exact_or_eof(&mut buf[have..HEADER_LEN]) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => {
                if first {
                    shared.expired(&format!("session {sid}"), &e);
                }
                log::debug!("session {sid}: {e}");
                break;
            }
        }
        have = 0;
        let header = match Header::decode(&buf[..HEADER_LEN]) {
            Ok(h) => h,
            Err(e) => {
                shared.engine().decode_error(sid, e);
                break;
            }
        };
        let len = header.frame_len();
        let Some(rest) = buf.get_mut(HEADER_LEN..len) else {
            break;
        };
        match reader.read_exact_or_eof(rest) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => {
                if first {
                    shared.expired(&format!("session {sid}"), &e);
                }
                log::debug!("session {sid}: {e}");
                break;
            }
        }
        if first {
            // The rest of the handshake (Evidence, by the same deadline) and
            // silence afterwards are the engine's timers.
            first = false;
            if let Err(e) = reader.set_deadline(None) {
                log::warn!("session {sid}: {e}");
                break;
            }
        }
        let now = Instant::now();
        match Message::decode(&buf[..len]) {
            Ok(Message::OutputChunk(c)) => {
                // Hashed here, not under the engine's lock.
                let intact = leaf_hash(c.data) == c.digest;
                shared.engine().on_output_chunk(sid, &c, intact, now);
            }
            Ok(msg) => shared.engine().on_message(sid, msg, now),
            Err(e) => {
                if shared.engine().decode_error(sid, e) {
                    break;
                }
            }
        }
    }
    shared.engine().session_closed(sid, Instant::now());
    outbox.close();
}

/// A refusal's answer to a requester.
fn failure(code: FailureCode, reason: String) -> Response {
    Response::Failed(JobFailure {
        job: 0,
        code,
        reason: bounded_reason(reason),
        receipt: None,
        price: 0,
        provider: None,
    })
}

/// Why a request body was not taken.
enum BodyError {
    /// The connection failed or the body's deadline passed.
    Io(io::Error),
    /// The budget had no room; the rest of the body was read and dropped.
    Busy,
}

/// Reads a request body of `len` bytes, counting it in the budget as it
/// arrives (a header alone takes nothing), into a buffer that grows with it
/// and never beyond `len`. Over the budget, the rest is read and dropped so
/// the requester can be answered.
fn read_body(
    reader: &mut TlsReader,
    len: usize,
    budget: &Arc<Budget>,
) -> Result<(Vec<u8>, Permit), BodyError> {
    const STEP: usize = 1 << 20;
    let mut permit = budget.permit();
    let mut body: Vec<u8> = Vec::new();
    while body.len() < len {
        let at = body.len();
        let step = (len - at).min(STEP);
        if !permit.grow(step) {
            drop(permit);
            drop(body);
            let mut sink = vec![0u8; 64 * 1024];
            let mut left = len - at;
            while left > 0 {
                let n = left.min(sink.len());
                match reader.read_exact_or_eof(&mut sink[..n]) {
                    Ok(true) => left -= n,
                    Ok(false) => return Err(BodyError::Io(io::ErrorKind::UnexpectedEof.into())),
                    Err(e) => return Err(BodyError::Io(e)),
                }
            }
            return Err(BodyError::Busy);
        }
        if body.capacity() < at + step {
            // Doubling, capped at the body's length.
            let want = body.capacity().saturating_mul(2).clamp(at + step, len);
            body.reserve_exact(want - at);
        }
        body.resize(at + step, 0);
        match reader.read_exact_or_eof(&mut body[at..]) {
            Ok(true) => {}
            Ok(false) => return Err(BodyError::Io(io::ErrorKind::UnexpectedEof.into())),
            Err(e) => return Err(BodyError::Io(e)),
        }
    }
    Ok((body, permit))
}

fn serve_requester(shared: &Shared, mut reader: TlsReader, outbox: Outbox, magic: [u8; 2]) {
    let peer = reader.peer();
    let config = &shared.config;
    let limits = Limits {
        max_readback_bytes: config.max_readback_bytes,
    };
    let mut header = [0u8; REQUEST_HEADER_LEN];
    header[..2].copy_from_slice(&magic);
    let mut have = 2;
    let mut first = true;
    loop {
        // The first header is due by the handshake's deadline, set already.
        match reader.read_exact_or_eof(&mut header[have..]) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => {
                if first {
                    shared.expired(&format!("requester {peer}"), &e);
                }
                log::debug!("requester {peer}: {e}");
                break;
            }
        }
        have = 0;
        first = false;
        let len = match parse_header(&header, config.max_request_body) {
            Ok(n) => n,
            Err(FrameError::TooLarge(n)) => {
                shared
                    .counters
                    .requests_refused
                    .fetch_add(1, Ordering::Relaxed);
                log::info!("requester {peer}: a body of {n} bytes is over the limit");
                let reason = format!(
                    "the request body of {n} bytes is over this coordinator's limit of {} bytes",
                    config.max_request_body
                );
                send_response(&outbox, failure(FailureCode::Invalid, reason), None, &peer);
                break;
            }
            Err(e) => {
                log::info!("requester {peer}: {e}");
                break;
            }
        };
        let rate = Duration::from_secs(len as u64 / config.min_request_rate);
        let body_deadline = after(
            Instant::now(),
            config.handshake_timeout.saturating_add(rate),
        );
        if let Err(e) = reader.set_deadline(Some(body_deadline)) {
            log::warn!("requester {peer}: {e}");
            break;
        }
        let (response, hold) = match read_body(&mut reader, len, &shared.budget) {
            Ok((body, permit)) => handle_request(shared, body, permit, &limits),
            Err(BodyError::Busy) => {
                shared
                    .counters
                    .requests_refused
                    .fetch_add(1, Ordering::Relaxed);
                let reason = format!(
                    "the coordinator holds as many bytes as it may ({} in all); a request of \
                     {len} bytes does not fit now, try again later",
                    config.max_buffered_bytes
                );
                (failure(FailureCode::Busy, reason), None)
            }
            Err(BodyError::Io(e)) => {
                if e.kind() == io::ErrorKind::TimedOut {
                    shared
                        .counters
                        .handshakes_expired
                        .fetch_add(1, Ordering::Relaxed);
                }
                log::debug!("requester {peer}: request body: {e}");
                break;
            }
        };
        if !send_response(&outbox, response, hold, &peer) {
            break;
        }
        let idle = after(Instant::now(), config.requester_idle);
        if let Err(e) = reader.set_deadline(Some(idle)) {
            log::warn!("requester {peer}: {e}");
            break;
        }
    }
    outbox.close();
}

/// Checks, hashes and submits one request body; waits for the answer.
fn handle_request(
    shared: &Shared,
    body: Vec<u8>,
    permit: Permit,
    limits: &Limits,
) -> (Response, Option<Permit>) {
    let prepared = match submission::prepare(body, permit, limits, shared.budget.permit()) {
        Ok(p) => p,
        Err(Refusal::Invalid(reason)) => {
            let mut engine = shared.engine();
            engine.count_refused_submission();
            return (failure(FailureCode::Invalid, reason), None);
        }
        Err(Refusal::Busy(reason)) => {
            shared
                .counters
                .requests_refused
                .fetch_add(1, Ordering::Relaxed);
            return (failure(FailureCode::Busy, reason), None);
        }
    };
    let config = &shared.config;
    let wait = Duration::from_millis(u64::from(prepared.offer.deadline_ms))
        .saturating_add(config.deadline_grace)
        .saturating_add(config.offer_timeout)
        .saturating_add(Duration::from_secs(5));
    let (tx, rx) = mpsc::channel();
    shared.engine().submit(prepared, tx, Instant::now());
    // The engine always answers; the bound only guards a bug.
    match rx.recv_timeout(wait) {
        Ok(Answer { response, hold }) => (response, hold),
        Err(_) => (
            failure(
                FailureCode::Timeout,
                "the coordinator gave no answer in time".into(),
            ),
            None,
        ),
    }
}

/// Queues a response; `false` if it cannot be encoded.
fn send_response(outbox: &Outbox, response: Response, hold: Option<Permit>, peer: &str) -> bool {
    match response_parts(response) {
        Ok(parts) => {
            outbox.send_parts(parts, hold);
            true
        }
        Err(e) => {
            log::error!("cannot encode the response for {peer}: {e}");
            // Say so rather than leave the requester waiting.
            if let Ok(frame) = encode_frame(&failure(
                FailureCode::Invalid,
                format!("the coordinator cannot encode the result: {e}"),
            )) {
                outbox.send(frame);
            }
            false
        }
    }
}
