//! The coordinator server: a TLS 1.3 listener, within the connection caps.
//! One event-loop thread owns every socket (`event_loop.rs`): it accepts,
//! drives each connection's TLS over a non-blocking socket, reads frames,
//! writes queued ones as each peer reads, and runs the engine's timers; a
//! second thread hashes large request bodies. After the handshake the
//! first two bytes tell a provider (`"TS"`, the provider protocol) from a
//! requester (`"TQ"`, the requester protocol).

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rustls::ServerConfig;
use tessera_core::wire::Batching;

use crate::budget::Budget;
use crate::conn::Notify;
use crate::engine::{Engine, ProviderInfo, Settings, Stats};
use crate::event_loop;
use crate::protocol::DEFAULT_MAX_REQUEST_BODY;
use crate::state::ChainStore;

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
    /// accepted. Each costs a socket and its TLS state on the event loop
    /// (a few KiB when idle), no thread. Default 1024.
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
    /// Asked of every provider that speaks protocol version 2: sign the
    /// receipts of jobs that end together in batches of at most
    /// `max_receipts`, each result waiting at most `max_delay_us` for its
    /// batch (`docs/PROTOCOL.md`, "Batched receipts"). Default off
    /// (`max_receipts` 0): every receipt signed alone.
    pub batching: Batching,
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
            batching: Batching::default(),
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
            .field("batching", &self.batching)
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
pub(crate) struct Counters {
    pub connections_refused: AtomicU64,
    pub handshakes_expired: AtomicU64,
    pub outbox_overflows: Arc<AtomicU64>,
    pub requests_refused: AtomicU64,
}

/// Open connections, in all and per source address.
#[derive(Default)]
pub(crate) struct Connections {
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

/// One admitted connection; gives its place back when dropped.
pub(crate) struct Slot {
    table: Arc<Connections>,
    ip: IpAddr,
}

impl Slot {
    /// A place for a connection from `ip`, if the caps leave one.
    pub(crate) fn admit(table: &Arc<Connections>, ip: IpAddr, config: &Config) -> Option<Slot> {
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

/// What the event loop and the public API share.
pub(crate) struct Shared {
    pub engine: Mutex<Engine>,
    pub stop: AtomicBool,
    pub config: Config,
    pub connections: Arc<Connections>,
    pub budget: Arc<Budget>,
    pub counters: Counters,
    pub notify: Arc<Notify>,
}

impl Shared {
    pub(crate) fn engine(&self) -> MutexGuard<'_, Engine> {
        self.engine.lock().unwrap_or_else(|p| p.into_inner())
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
    /// Binds the listener and starts the event loop (and the thread that
    /// hashes large request bodies).
    pub fn start(config: Config) -> Result<Coordinator, CoordinatorError> {
        config.check().map_err(CoordinatorError::Config)?;
        let store = match &config.state_dir {
            Some(dir) => Some(
                ChainStore::open(dir).map_err(|e| CoordinatorError::StateDir(dir.clone(), e))?,
            ),
            None => None,
        };
        let listener = std::net::TcpListener::bind(config.listen)
            .map_err(|e| CoordinatorError::Bind(config.listen, e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| CoordinatorError::Bind(config.listen, e))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| CoordinatorError::Bind(config.listen, e))?;
        let listener = mio::net::TcpListener::from_std(listener);
        let poll = mio::Poll::new().map_err(CoordinatorError::Spawn)?;
        let waker =
            mio::Waker::new(poll.registry(), event_loop::WAKER).map_err(CoordinatorError::Spawn)?;
        let settings = Settings {
            heartbeat_ms: config.heartbeat_ms,
            offer_timeout: config.offer_timeout,
            deadline_grace: config.deadline_grace,
            handshake_timeout: config.handshake_timeout,
            provider_silence: config.provider_silence,
            max_known_keys: config.max_known_keys,
            key_retention: config.key_retention,
            batching: config.batching,
        };
        let shared = Arc::new(Shared {
            engine: Mutex::new(Engine::new(settings, store)),
            stop: AtomicBool::new(false),
            connections: Arc::new(Connections::default()),
            budget: Budget::new(config.max_buffered_bytes),
            counters: Counters::default(),
            notify: Arc::new(Notify::new(Some(waker))),
            config,
        });
        let threads = event_loop::spawn(Arc::clone(&shared), poll, listener)
            .map_err(CoordinatorError::Spawn)?;
        log::info!("coordinator listening on {addr}");
        Ok(Coordinator {
            shared,
            addr,
            threads,
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
        // The loop writes what the engine queued, for a moment, then ends.
        self.shared.notify.wake();
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
