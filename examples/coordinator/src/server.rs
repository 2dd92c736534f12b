//! The coordinator server: a TLS 1.3 listener with a thread per connection.
//! After the handshake the first two bytes tell a provider (`"TS"`, the
//! provider protocol) from a requester (`"TQ"`, the requester protocol).

use std::fmt;
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use rustls::{ServerConfig, ServerConnection};
use tessera_core::limits::HEADER_LEN;
use tessera_core::wire::{Header, Message, MAGIC};

use crate::conn::{self, Outbox, TlsReader};
use crate::engine::{Engine, ProviderInfo, Settings, Stats};
use crate::protocol::{
    decode_body, encode_frame, parse_header, FailureCode, JobFailure, Request, Response,
    DEFAULT_MAX_REQUEST_BODY, REQUEST_HEADER_LEN, REQUEST_MAGIC,
};
use crate::state::ChainStore;

/// How the coordinator runs.
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
    /// Time allowed for the TLS handshake and the provider's Hello/Evidence.
    pub handshake_timeout: Duration,
    /// Silence after which a provider session is closed.
    pub provider_silence: Duration,
    /// Where providers' receipt-chain positions are kept across restarts.
    pub state_dir: Option<PathBuf>,
    /// Largest requester frame body accepted.
    pub max_request_body: usize,
}

impl Config {
    /// Defaults: heartbeats every 5 s, providers dropped after 20 s of
    /// silence, 5 s to answer an offer, 2 s grace on deadlines.
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
            max_request_body: DEFAULT_MAX_REQUEST_BODY,
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
            .field("state_dir", &self.state_dir)
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
}

impl fmt::Display for CoordinatorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CoordinatorError::Bind(a, e) => write!(f, "cannot listen on {a}: {e}"),
            CoordinatorError::StateDir(p, e) => {
                write!(f, "cannot use state directory {}: {e}", p.display())
            }
            CoordinatorError::Spawn(e) => write!(f, "cannot start a thread: {e}"),
        }
    }
}

impl std::error::Error for CoordinatorError {}

/// How long a requester connection may sit idle between requests.
const REQUESTER_IDLE: Duration = Duration::from_secs(120);

struct Shared {
    engine: Mutex<Engine>,
    stop: AtomicBool,
    config: Config,
}

impl Shared {
    fn engine(&self) -> MutexGuard<'_, Engine> {
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
    /// Binds the listener and starts accepting providers and requesters.
    pub fn start(config: Config) -> Result<Coordinator, CoordinatorError> {
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
        };
        let shared = Arc::new(Shared {
            engine: Mutex::new(Engine::new(settings, store)),
            stop: AtomicBool::new(false),
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

    /// Every provider key seen, connected or not.
    pub fn providers(&self) -> Vec<ProviderInfo> {
        self.shared.engine().providers()
    }

    /// Counters.
    pub fn stats(&self) -> Stats {
        self.shared.engine().stats()
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
                log::warn!("accept failed: {e}");
                thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        let conn_shared = Arc::clone(&shared);
        let spawned = thread::Builder::new()
            .name("tessera-conn".into())
            .spawn(move || serve(conn_shared, sock));
        if let Err(e) = spawned {
            log::error!("cannot start a connection thread: {e}");
        }
    }
}

fn serve(shared: Arc<Shared>, sock: TcpStream) {
    let peer = sock
        .peer_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| "unknown peer".into());
    let tls = match ServerConnection::new(Arc::clone(&shared.config.tls)) {
        Ok(c) => c,
        Err(e) => {
            log::error!("cannot start TLS for {peer}: {e}");
            return;
        }
    };
    let (mut reader, outbox) = match conn::accept(tls, sock, shared.config.handshake_timeout) {
        Ok(pair) => pair,
        Err(e) => {
            log::info!("TLS handshake with {peer} failed: {e}");
            return;
        }
    };
    let mut magic = [0u8; 2];
    match reader.read_exact_or_eof(&mut magic) {
        Ok(true) => {}
        Ok(false) => return,
        Err(e) => {
            log::debug!("{peer}: {e}");
            outbox.close();
            return;
        }
    }
    // Provider sessions are watched by the engine's timers; requesters may
    // idle between jobs, within a bound.
    let idle = if magic == MAGIC {
        None
    } else {
        Some(REQUESTER_IDLE)
    };
    if let Err(e) = reader.set_read_timeout(idle) {
        log::warn!("{peer}: {e}");
        outbox.close();
        return;
    }
    if magic == MAGIC {
        serve_provider(&shared, reader, outbox, magic);
    } else if magic == REQUEST_MAGIC {
        serve_requester(&shared, reader, outbox, magic);
    } else {
        log::warn!("{peer}: speaks neither protocol (first bytes {magic:02x?})");
        outbox.close();
    }
}

fn serve_provider(shared: &Shared, mut reader: TlsReader, outbox: Outbox, magic: [u8; 2]) {
    let peer = reader.peer();
    let sid = shared
        .engine()
        .open_session(outbox.clone(), peer.clone(), Instant::now());
    log::debug!("session {sid}: provider connection from {peer}");
    let mut buf = vec![0u8; tessera_core::limits::MAX_FRAME];
    buf[..2].copy_from_slice(&magic);
    let mut have = 2;
    loop {
        match reader.read_exact_or_eof(&mut buf[have..HEADER_LEN]) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => {
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
        match reader.read_exact_or_eof(&mut buf[HEADER_LEN..len]) {
            Ok(_) => {}
            Err(e) => {
                log::debug!("session {sid}: {e}");
                break;
            }
        }
        let now = Instant::now();
        match Message::decode(&buf[..len]) {
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

fn serve_requester(shared: &Shared, mut reader: TlsReader, outbox: Outbox, magic: [u8; 2]) {
    let peer = reader.peer();
    let mut header = [0u8; REQUEST_HEADER_LEN];
    header[..2].copy_from_slice(&magic);
    let mut have = 2;
    loop {
        match reader.read_exact_or_eof(&mut header[have..]) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => {
                log::debug!("requester {peer}: {e}");
                break;
            }
        }
        have = 0;
        let len = match parse_header(&header, shared.config.max_request_body) {
            Ok(n) => n,
            Err(e) => {
                log::warn!("requester {peer}: {e}");
                break;
            }
        };
        // Grows as bytes arrive, so a header alone cannot reserve memory.
        let mut body = Vec::with_capacity(len.min(1 << 20));
        let mut piece = vec![0u8; 64 * 1024];
        while body.len() < len {
            let want = (len - body.len()).min(piece.len());
            match reader.read_exact_or_eof(&mut piece[..want]) {
                Ok(true) => body.extend_from_slice(&piece[..want]),
                Ok(false) => break,
                Err(e) => {
                    log::debug!("requester {peer}: {e}");
                    break;
                }
            }
        }
        if body.len() < len {
            break;
        }
        let response = match decode_body::<Request>(&body) {
            Ok(Request::Submit(submit)) => {
                let wait = Duration::from_millis(submit.deadline_ms as u64)
                    + shared.config.deadline_grace
                    + shared.config.offer_timeout
                    + Duration::from_secs(5);
                let (tx, rx) = mpsc::channel();
                shared.engine().submit(submit, tx, Instant::now());
                // The engine always answers; the bound only guards a bug.
                rx.recv_timeout(wait).unwrap_or_else(|_| {
                    Response::Failed(JobFailure {
                        job: 0,
                        code: FailureCode::Timeout,
                        reason: "the coordinator gave no answer in time".into(),
                        receipt: None,
                        price: 0,
                        provider: None,
                    })
                })
            }
            Err(e) => Response::Failed(JobFailure {
                job: 0,
                code: FailureCode::Invalid,
                reason: format!("request does not decode: {e}"),
                receipt: None,
                price: 0,
                provider: None,
            }),
        };
        match encode_frame(&response) {
            Ok(frame) => outbox.send(frame),
            Err(e) => {
                log::error!("cannot encode the response for {peer}: {e}");
                break;
            }
        }
    }
    outbox.close();
}
