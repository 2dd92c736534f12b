//! The network runtime: a mio event loop that drives the sans-IO [`Agent`]
//! over TCP and TLS 1.3, runs jobs on a worker thread through an
//! [`Executor`] (a job due soon that the agent holds alone on the loop's
//! own thread, when the executor allows it: [`NetConfig::inline_deadline`]),
//! keeps results in a [`FileStore`] until they are acknowledged, and
//! reconnects with exponential backoff and jitter.
//!
//! [`Runtime::run`] owns the thread until the agent has drained and said
//! goodbye. A host with its own event loop (a render engine) calls
//! [`Runtime::step`] with a zero timeout whenever the file descriptor from
//! [`Runtime::as_raw_fd`] is readable, and at least by [`Runtime::next_wakeup`];
//! a loop that must not stall sets [`Runtime::set_inline_deadline`] to zero,
//! so that no job runs inside a step.
//!
//! On Linux the agent's timers (a batch of receipts due, a deadline) wake
//! the poll to the microsecond, through a timerfd registered in it, so that
//! a coordinator's `max_delay_us` holds; elsewhere they wake it to the
//! millisecond, the poll's own unit.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration as StdDuration, Instant as StdInstant, SystemTime, UNIX_EPOCH};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token, Waker};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection};

use super::executor::{CancelFlag, Executor, JobFailure, JobOutputs, JobToRun};
use super::timer::PreciseTimer;
use super::tls::SHORT_READ_DRAINS;
use crate::agent::ResultRecord;
use crate::agent::{Agent, Config, ConnState, DisconnectReason, Event};
use crate::attest::{ChainState, Signer};
use crate::error::Error;
use crate::host::{Followup, JobHost, WorkReport};
use crate::limits::MAX_JOBS;
use crate::store::{FileStore, ResultStore, StoreError};
use crate::time::Instant;
use crate::wire::{FailReason, JobId};

const CONN: Token = Token(0);
const WAKE: Token = Token(1);
const TIMER: Token = Token(2);
/// Plaintext read from TLS but not yet taken by the agent, at most.
const RX_LIMIT: usize = 256 * 1024;
/// TLS records gathered for the socket before they are sent: each turn of
/// the loop sends what it gathered in one `send` (a job's acceptance, its
/// output chunks and its receipt together), not one per record.
const TX_LIMIT: usize = 64 * 1024;
/// The most one read from the socket takes.
const WIRE_READ: usize = 64 * 1024;
/// The longest the loop sleeps, so that a drain request is seen promptly.
const MAX_SLEEP: StdDuration = StdDuration::from_millis(200);
/// How often an idle worker asks an executor that takes no work whether it
/// does again.
const UNAVAILABLE_POLL: StdDuration = StdDuration::from_millis(100);

/// What [`Runtime::set_receipt_hook`] keeps.
type ReceiptHook = Box<dyn FnMut(JobId, &[u8]) + Send>;

/// Where and how to reach the coordinator, and where to keep results.
#[derive(Clone)]
pub struct NetConfig {
    /// Coordinator address, `host:port`.
    pub coordinator: String,
    /// Name the coordinator's certificate must carry (with CA trust).
    pub server_name: String,
    /// TLS client configuration, from [`super::tls::client_config`].
    pub tls: Arc<ClientConfig>,
    /// Directory of the result store; `None` keeps results in memory only
    /// (they survive reconnects, not restarts).
    pub store_dir: Option<PathBuf>,
    /// First reconnect delay; doubles after each failure.
    pub reconnect_initial: StdDuration,
    /// Longest reconnect delay.
    pub reconnect_max: StdDuration,
    /// How long a drain the host asked for ([`DrainHandle::drain`]) may take.
    /// Past it the runtime stops anyway: jobs still running are cancelled,
    /// and results the coordinator has not acknowledged stay in the store
    /// and go out on the next start (without a store they are lost, and the
    /// log says so).
    pub drain_timeout: StdDuration,
    /// A job the agent holds alone, whose deadline is at most this far off
    /// when it starts, runs on the runtime's own thread rather than being
    /// handed to the worker thread and back, when the executor allows it
    /// ([`Executor::may_run_inline`]): a tiny job then skips two thread
    /// wake-ups. Meanwhile the loop reads and answers nothing, so this
    /// bounds how long a job holds it up, plus what the executor does
    /// after a timeout (the Vulkan host replaces the device: about 90 ms
    /// on lavapipe); heartbeats are seconds apart, and a cancel waits for
    /// the run to end. Zero runs every job on the worker thread. 250 ms
    /// unless set.
    pub inline_deadline: StdDuration,
}

impl fmt::Debug for NetConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NetConfig")
            .field("coordinator", &self.coordinator)
            .field("server_name", &self.server_name)
            .field("store_dir", &self.store_dir)
            .finish_non_exhaustive()
    }
}

impl NetConfig {
    /// [`NetConfig::inline_deadline`] unless set: 250 ms.
    pub const DEFAULT_INLINE_DEADLINE: StdDuration = StdDuration::from_millis(250);

    /// A configuration with the default reconnect delays (200 ms to 30 s),
    /// a 60 s drain timeout, no store, and jobs due within 250 ms run on
    /// the runtime's thread when the agent holds nothing else.
    pub fn new(
        coordinator: impl Into<String>,
        server_name: impl Into<String>,
        tls: Arc<ClientConfig>,
    ) -> Self {
        NetConfig {
            coordinator: coordinator.into(),
            server_name: server_name.into(),
            tls,
            store_dir: None,
            reconnect_initial: StdDuration::from_millis(200),
            reconnect_max: StdDuration::from_secs(30),
            drain_timeout: StdDuration::from_secs(60),
            inline_deadline: NetConfig::DEFAULT_INLINE_DEADLINE,
        }
    }
}

/// Why the runtime could not start or go on.
#[derive(Debug)]
pub enum RuntimeError {
    /// The event loop failed (the OS refused a poll or a registration).
    Io(io::Error),
    /// The result store could not be opened or read (among others: its
    /// chain file belongs to another device key).
    Store(StoreError),
    /// The agent refused its configuration or a stored result.
    Agent(Error),
    /// The server name is not a valid DNS name or IP address.
    BadServerName(String),
}

impl fmt::Display for RuntimeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RuntimeError::Io(e) => write!(f, "event loop failed: {e}"),
            RuntimeError::Store(e) => write!(f, "result store: {e}"),
            RuntimeError::Agent(e) => write!(f, "agent: {e}"),
            RuntimeError::BadServerName(n) => write!(f, "invalid server name {n:?}"),
        }
    }
}

impl std::error::Error for RuntimeError {}

impl RuntimeError {
    /// The number of this error in the library's shared code space
    /// ([`crate::codes`]).
    pub fn code(&self) -> u32 {
        match self {
            RuntimeError::Io(_) => crate::codes::IO,
            RuntimeError::Store(e) => e.code(),
            RuntimeError::Agent(e) => e.code(),
            RuntimeError::BadServerName(_) => crate::codes::INVALID_CONFIG,
        }
    }
}

/// What an operator sees: connection, device, work and earnings.
#[derive(Clone, Debug, Default)]
pub struct Status {
    /// The connection's state.
    pub state: Option<ConnState>,
    /// The coordinator's address.
    pub coordinator: String,
    /// The device's name.
    pub device: String,
    /// The device takes no work now (it still runs work abandoned after
    /// timeouts); offers are declined with `Unavailable`.
    pub device_unavailable: bool,
    /// Jobs completed and acknowledged.
    pub jobs_completed: u64,
    /// Jobs failed (acknowledged).
    pub jobs_failed: u64,
    /// Jobs held now (running, transferring, or awaiting acknowledgement).
    pub active_jobs: usize,
    /// Sum of the prices of acknowledged jobs.
    pub earnings: u64,
    /// Sessions established since start.
    pub sessions: u64,
    /// The last connection or store error, if any.
    pub last_error: Option<String>,
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            Some(ConnState::Ready) => "connected",
            Some(ConnState::AwaitingWelcome | ConnState::AwaitingReady) => "handshaking",
            Some(ConnState::Closed) => "closed",
            _ => "disconnected",
        };
        let unavailable = if self.device_unavailable {
            " (unavailable)"
        } else {
            ""
        };
        write!(
            f,
            "{state} to {} | device {}{unavailable} | jobs {} done, {} failed, {} active | earnings {} | sessions {}",
            self.coordinator,
            self.device,
            self.jobs_completed,
            self.jobs_failed,
            self.active_jobs,
            self.earnings,
            self.sessions
        )?;
        if let Some(e) = &self.last_error {
            write!(f, " | last error: {e}")?;
        }
        Ok(())
    }
}

/// A handle that asks the runtime to drain (finish what runs, take nothing
/// new, say goodbye). Cheap to clone; usable from another thread or a signal
/// handler's flag.
#[derive(Clone, Debug)]
pub struct DrainHandle {
    flag: Arc<AtomicBool>,
    waker: Arc<Waker>,
}

impl DrainHandle {
    /// Asks for a drain.
    pub fn drain(&self) {
        self.flag.store(true, Ordering::SeqCst);
        let _ = self.waker.wake();
    }

    /// Wakes the runtime if it waits in `step`, without asking for a drain
    /// (so that it applies a change made from another thread at once).
    pub fn wake(&self) {
        let _ = self.waker.wake();
    }

    /// The flag itself, for `signal_hook::flag::register`.
    pub fn flag(&self) -> Arc<AtomicBool> {
        self.flag.clone()
    }
}

struct Conn {
    stream: TcpStream,
    tls: ClientConnection,
    /// Plaintext from the coordinator; the agent has taken `rx[..rx_start]`.
    /// Taken bytes are dropped once all are taken or before the next read,
    /// not piece by piece: the agent takes chunk data in pieces of
    /// `MAX_INPUT_PIECE`, and moving the rest of a full buffer down after
    /// each one cost more than the transfer itself.
    rx: Vec<u8>,
    rx_start: usize,
    /// Bytes read from the socket, `wire[wire_at..wire_end]` not yet handed
    /// to TLS: one read takes up to [`WIRE_READ`], where rustls alone reads
    /// 4 KiB at a time.
    wire: Vec<u8>,
    wire_at: usize,
    wire_end: usize,
    /// TLS records for the socket; `tx[..tx_start]` are sent.
    tx: Vec<u8>,
    tx_start: usize,
    /// What the socket is registered for.
    interest: Interest,
    /// The last read stopped at [`RX_LIMIT`], not at the socket's end:
    /// the socket may hold more, and edge-triggered polling will not say
    /// so again.
    more: bool,
}

impl Conn {
    /// Bytes gathered for the socket and not sent yet.
    fn unsent(&self) -> usize {
        self.tx.len() - self.tx_start
    }

    /// Moves TLS's records into `tx` (memory: never blocks).
    fn gather(&mut self) -> io::Result<()> {
        while self.tls.wants_write() {
            self.tls.write_tls(&mut self.tx)?;
        }
        Ok(())
    }

    /// Sends what `tx` holds, in as few `send` calls as the socket takes.
    /// `Ok(true)` when something was sent.
    fn send(&mut self) -> io::Result<bool> {
        let mut any = false;
        while self.tx_start < self.tx.len() {
            match NoSigPipe(&mut self.stream).write(&self.tx[self.tx_start..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.tx_start += n;
                    any = true;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if self.tx_start == self.tx.len() {
            self.tx.clear();
            self.tx_start = 0;
        }
        Ok(any)
    }

    /// What the agent has not taken yet.
    fn unread(&self) -> &[u8] {
        &self.rx[self.rx_start..]
    }

    /// The agent took `n` more bytes.
    fn taken(&mut self, n: usize) {
        self.rx_start = (self.rx_start + n).min(self.rx.len());
        if self.rx_start == self.rx.len() {
            self.rx.clear();
            self.rx_start = 0;
        }
    }

    /// Drops the taken bytes, so that the buffer holds only unread ones.
    fn compact(&mut self) {
        if self.rx_start > 0 {
            self.rx.drain(..self.rx_start);
            self.rx_start = 0;
        }
    }
}

/// Jobs waiting for the worker thread, shared with it. The runtime removes a
/// job the agent no longer holds (cancelled, past its deadline, its session
/// gone) before the worker takes it, so at most [`MAX_JOBS`] wait: the
/// agent holds no more at once, and each waits with at most the policy's
/// `max_bytes_in` of inputs.
#[derive(Default)]
struct WorkQueue {
    state: Mutex<QueueState>,
    changed: Condvar,
}

#[derive(Default)]
struct QueueState {
    jobs: VecDeque<Arc<JobToRun>>,
    /// The runtime is gone: the worker ends.
    closed: bool,
    /// Whether the worker waits for a job: a job queued while it is busy
    /// wakes nobody (std's `notify_all` is a system call even then).
    waiting: bool,
    /// The worker should ask the executor whether it takes work: a run on
    /// the runtime's thread found it no longer does.
    recheck: bool,
}

impl WorkQueue {
    fn lock(&self) -> MutexGuard<'_, QueueState> {
        // A panic while holding the lock leaves the queue itself intact.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `job`; false (dropping it) when [`MAX_JOBS`] already wait.
    fn push(&self, job: Arc<JobToRun>) -> bool {
        let mut q = self.lock();
        if q.jobs.len() >= MAX_JOBS {
            return false;
        }
        q.jobs.push_back(job);
        let waiting = q.waiting;
        drop(q);
        if waiting {
            self.changed.notify_all();
        }
        true
    }

    /// Removes run `run` if it waits; whether it did.
    fn remove(&self, run: u64) -> bool {
        let mut q = self.lock();
        let before = q.jobs.len();
        q.jobs.retain(|j| j.run != run);
        before != q.jobs.len()
    }

    fn close(&self) {
        self.lock().closed = true;
        self.changed.notify_all();
    }

    /// Has the worker ask the executor whether it takes work, and report.
    fn recheck(&self) {
        self.lock().recheck = true;
        self.changed.notify_all();
    }

    /// Whether no job waits.
    fn is_empty(&self) -> bool {
        self.lock().jobs.is_empty()
    }

    /// How many jobs wait, and their input bytes (kernel and buffers).
    fn queued(&self) -> (usize, usize) {
        let q = self.lock();
        let bytes = q
            .jobs
            .iter()
            .map(|j| j.kernel.len() + j.buffers.iter().map(Vec::len).sum::<usize>())
            .sum();
        (q.jobs.len(), bytes)
    }

    /// The next job, waiting at most `wait` (`None`: until one comes);
    /// `Err` once the queue is closed.
    fn next(&self, wait: Option<StdDuration>) -> Result<Option<Arc<JobToRun>>, ()> {
        let mut q = self.lock();
        loop {
            if q.closed {
                return Err(());
            }
            if let Some(job) = q.jobs.pop_front() {
                return Ok(Some(job));
            }
            if q.recheck {
                q.recheck = false;
                return Ok(None);
            }
            match wait {
                // Not a timed wait of zero: the kernel lets a timed sleep
                // overrun by the thread's timer slack (50 µs by default), so
                // asking for more jobs to batch would cost every batch that.
                Some(w) if w.is_zero() => return Ok(None),
                None => {
                    q.waiting = true;
                    q = self.changed.wait(q).unwrap_or_else(|e| e.into_inner());
                    q.waiting = false;
                }
                Some(w) => {
                    q.waiting = true;
                    let (guard, timed_out) = self
                        .changed
                        .wait_timeout(q, w)
                        .unwrap_or_else(|e| e.into_inner());
                    q = guard;
                    q.waiting = false;
                    if timed_out.timed_out() && q.jobs.is_empty() && !q.closed && !q.recheck {
                        return Ok(None);
                    }
                }
            }
        }
    }
}

/// What the worker thread tells the runtime.
enum FromWorker {
    /// A job's run ended.
    Done(JobId, u64, Result<JobOutputs, JobFailure>),
    /// The executor takes work again (`true`), or no longer does.
    Accepting(bool),
}

/// The provider's network runtime. See the module documentation.
pub struct Runtime<S: Signer> {
    /// On the heap, made there: the agent is too large to copy about on a
    /// small stack (a musl thread's 128 KiB), and the runtime is moved.
    agent: Box<Agent<S>>,
    net: NetConfig,
    server_name: ServerName<'static>,
    poll: Poll,
    events: Events,
    waker: Arc<Waker>,
    /// Wakes the poll when the agent's next timer is due, to the
    /// microsecond.
    timer: PreciseTimer,
    conn: Option<Conn>,
    work: Arc<WorkQueue>,
    /// Jobs given to the worker (waiting or running): the run's number and
    /// its cancel flag.
    given: HashMap<JobId, (u64, CancelFlag)>,
    /// The number of the next run.
    next_run: u64,
    done: Receiver<FromWorker>,
    /// Set by the worker when it wakes the poll for what it sent on
    /// `done`, cleared before `done` is read: while set, the worker sends
    /// without waking again.
    worker_woke: Arc<AtomicBool>,
    worker: Option<JoinHandle<()>>,
    /// The executor, shared with the worker, which holds the lock only
    /// while it calls it; `None` once it is gone (a run panicked, or the
    /// worker thread ended), so that it is dropped.
    inline: Option<Box<dyn InlineRun>>,
    /// The jobs' host side: inputs, runs, results, uploads.
    host: JobHost,
    store: Option<FileStore>,
    /// Stored results not yet handed to the agent (it holds at most
    /// `MAX_JOBS`), oldest receipt first. While any wait, offers are declined
    /// so that results go out in chain order.
    backlog: VecDeque<JobId>,
    /// Whether the executor takes work (its last report).
    executor_accepting: bool,
    /// Whether the host lets the device take work ([`Runtime::set_accepting_jobs`]).
    host_accepting: bool,
    /// Told of each receipt signed ([`Runtime::set_receipt_hook`]).
    receipt_hook: Option<ReceiptHook>,
    origin: StdInstant,
    origin_micros: u64,
    reconnect_at: Option<StdInstant>,
    failures: u32,
    rng: u64,
    drain: Arc<AtomicBool>,
    drain_started: bool,
    /// The agent took the drain.
    drain_asked: bool,
    /// When a drain the host asked for is given up on.
    drain_deadline: Option<StdInstant>,
    finished: bool,
    /// Outputs waited this turn for TLS's records to reach the socket
    /// ([`Runtime::work_jobs`]).
    upload_held: bool,
    status: Status,
}

impl<S: Signer> Runtime<S> {
    /// Builds the runtime: opens the store (restoring its results and chain),
    /// creates the agent and starts the executor's worker thread. It connects
    /// on the first `step`.
    pub fn new<E: Executor>(
        config: Config,
        signer: S,
        executor: E,
        net: NetConfig,
    ) -> Result<Self, RuntimeError> {
        let server_name = ServerName::try_from(net.server_name.clone())
            .map_err(|_| RuntimeError::BadServerName(net.server_name.clone()))?;
        let store = match &net.store_dir {
            Some(dir) => Some(FileStore::open(dir, signer.key_id()).map_err(RuntimeError::Store)?),
            None => None,
        };
        let mut config = config;
        // Every result passes through the persist step, kept by the store
        // when there is one, so that the receipt hook sees each receipt
        // before it is sent.
        config.persist_results = true;
        let device = config.capabilities.name.as_str().to_string();
        let chain = store
            .as_ref()
            .map(|s| s.chain())
            .unwrap_or_else(ChainState::default);
        let mut agent = Agent::new_boxed(config, signer, chain).map_err(RuntimeError::Agent)?;
        let mut backlog = VecDeque::new();
        if let Some(store) = &store {
            backlog.extend(store.jobs().map_err(RuntimeError::Store)?);
            // The oldest go to the agent now, the rest as acknowledgements
            // make room.
            while agent.active_jobs() < MAX_JOBS {
                let Some(&job) = backlog.front() else { break };
                let record = store.load_record(job).map_err(RuntimeError::Store)?;
                agent.restore_result(&record).map_err(RuntimeError::Agent)?;
                backlog.pop_front();
            }
            if !backlog.is_empty() {
                log::info!(
                    "{} more stored results wait for delivery; offers are declined until they are out",
                    backlog.len()
                );
                agent.set_device_available(Instant::ZERO, false);
            }
        }
        let poll = Poll::new().map_err(RuntimeError::Io)?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKE).map_err(RuntimeError::Io)?);
        let timer = PreciseTimer::new(poll.registry(), TIMER);
        let work = Arc::new(WorkQueue::default());
        let (done_tx, done_rx) = channel::<FromWorker>();
        let worker_woke = Arc::new(AtomicBool::new(false));
        let to_runtime = ToRuntime {
            done: done_tx,
            waker: waker.clone(),
            woke: worker_woke.clone(),
        };
        let executor = Arc::new(Mutex::new(executor));
        let inline: Option<Box<dyn InlineRun>> = Some(Box::new(executor.clone()));
        let worker = spawn_worker(executor, work.clone(), to_runtime)?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or(0);
        let status = Status {
            coordinator: net.coordinator.clone(),
            device,
            ..Status::default()
        };
        Ok(Runtime {
            agent,
            server_name,
            poll,
            events: Events::with_capacity(64),
            waker,
            timer,
            conn: None,
            work,
            given: HashMap::new(),
            next_run: 1,
            done: done_rx,
            worker_woke,
            worker: Some(worker),
            inline,
            host: JobHost::new(),
            store,
            backlog,
            executor_accepting: true,
            host_accepting: true,
            receipt_hook: None,
            origin: StdInstant::now(),
            origin_micros: now,
            reconnect_at: Some(StdInstant::now()),
            failures: 0,
            rng: now | 1,
            drain: Arc::new(AtomicBool::new(false)),
            drain_started: false,
            drain_asked: false,
            drain_deadline: None,
            finished: false,
            upload_held: false,
            status,
            net,
        })
    }

    /// Calls `hook` with each receipt the provider signs (completed and
    /// failed jobs alike), once it is stored and before it is sent, on the
    /// thread that steps the runtime: a host that keeps its own receipt
    /// log, or shows earnings as they are signed. It should return quickly.
    pub fn set_receipt_hook(&mut self, hook: impl FnMut(JobId, &[u8]) + Send + 'static) {
        self.receipt_hook = Some(Box::new(hook));
    }

    /// Removes the hook [`Runtime::set_receipt_hook`] set.
    pub fn clear_receipt_hook(&mut self) {
        self.receipt_hook = None;
    }

    /// Agent time: microseconds since the Unix epoch, advancing monotonically.
    fn now(&self) -> Instant {
        Instant::from_micros(self.origin_micros + self.origin.elapsed().as_micros() as u64)
    }

    fn std_at(&self, t: Instant) -> StdInstant {
        self.origin + StdDuration::from_micros(t.micros.saturating_sub(self.origin_micros))
    }

    /// Changes [`NetConfig::drain_timeout`].
    pub fn set_drain_timeout(&mut self, timeout: StdDuration) {
        self.net.drain_timeout = timeout;
    }

    /// A handle to ask for a drain from elsewhere.
    pub fn drain_handle(&self) -> DrainHandle {
        DrainHandle {
            flag: self.drain.clone(),
            waker: self.waker.clone(),
        }
    }

    /// The agent, for reading its state and counters.
    pub fn agent(&self) -> &Agent<S> {
        &self.agent
    }

    /// Changes the price schedule and floor for offers from now on
    /// ([`Agent::set_pricing`]): jobs held keep their prices.
    pub fn set_pricing(&mut self, price: crate::LinearPrice, floor: u64) {
        self.agent.set_pricing(price, floor);
    }

    /// What an operator sees now.
    pub fn status(&self) -> Status {
        let stats = self.agent.stats();
        Status {
            state: Some(self.agent.state()),
            device_unavailable: !self.agent.device_available(),
            jobs_completed: stats.jobs_completed,
            jobs_failed: stats.jobs_failed,
            active_jobs: self.agent.active_jobs(),
            earnings: stats.earnings,
            ..self.status.clone()
        }
    }

    /// Whether the host lets the device take new work: a render engine says
    /// no while its user renders, yes when the GPU is idle again. Offers are
    /// declined (`Unavailable`) while it says no; jobs already taken run on.
    pub fn set_accepting_jobs(&mut self, accepting: bool) {
        self.host_accepting = accepting;
        let now = self.now();
        self.update_availability(now);
    }

    /// Kernels refused since start, by the rule they broke (its code,
    /// [`crate::reasons::KernelRule`]).
    pub fn kernel_rejections(&self) -> &std::collections::BTreeMap<u16, u64> {
        &self.host.rejections
    }

    /// Whether the agent has drained and said goodbye.
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// The event loop's file descriptor, readable when `step` has work.
    #[cfg(unix)]
    pub fn as_raw_fd(&self) -> std::os::unix::io::RawFd {
        use std::os::unix::io::AsRawFd;
        self.poll.as_raw_fd()
    }

    /// When `step` must run next at the latest.
    pub fn next_wakeup(&self) -> Option<StdInstant> {
        let agent = self.agent.poll_timeout().map(|t| self.std_at(t));
        match (agent, self.reconnect_at.filter(|_| self.conn.is_none())) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Runs until the agent has drained and said goodbye.
    pub fn run(&mut self) -> Result<(), RuntimeError> {
        while !self.finished {
            self.step(None)?;
        }
        Ok(())
    }

    /// One turn of the loop: waits up to `max_wait` (`None`: until the next
    /// timer) for I/O, then does all work that is ready, which may include
    /// running a job due soon ([`NetConfig::inline_deadline`]; zero keeps
    /// every run off this thread).
    pub fn step(&mut self, max_wait: Option<StdDuration>) -> Result<(), RuntimeError> {
        if self.drain.load(Ordering::SeqCst) && !self.drain_started {
            self.drain_started = true;
            self.drain_deadline = StdInstant::now().checked_add(self.net.drain_timeout);
            log::info!(
                "draining: finishing jobs in flight, taking no new ones (for {:?} at most)",
                self.net.drain_timeout
            );
        }
        if self.drain_started && !self.drain_asked {
            // Until the agent takes it (it refuses while its queues are
            // full: this turn's pump empties them).
            let now = self.now();
            match self.agent.drain(now) {
                Ok(()) => self.drain_asked = true,
                Err(e) => log::debug!("drain: {e}; asking again"),
            }
        }
        if !self.finished && self.drain_deadline.is_some_and(|t| t <= StdInstant::now()) {
            self.give_up_drain();
            return Ok(());
        }
        if self.conn.is_none() && !self.finished {
            if self.drain_started && self.agent.active_jobs() == 0 {
                self.finished = true;
                return Ok(());
            }
            if self.reconnect_at.is_some_and(|t| t <= StdInstant::now()) {
                self.start_connect();
            }
        }
        let mut timeout = MAX_SLEEP;
        if let Some(w) = max_wait {
            timeout = timeout.min(w);
        }
        if let Some(t) = self.next_wakeup() {
            timeout = timeout.min(t.saturating_duration_since(StdInstant::now()));
            self.arm_timer(t);
        }
        // Bytes left in the socket, with room for them now.
        let more = self
            .conn
            .as_ref()
            .is_some_and(|c| c.more && c.unread().len() < RX_LIMIT);
        if more {
            timeout = StdDuration::ZERO;
        }
        match self.poll.poll(&mut self.events, Some(timeout)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(RuntimeError::Io(e)),
        }
        let mut conn_ready = false;
        // The coordinator's end or an error: no further event says so.
        let mut conn_ended = false;
        let mut timer_fired = false;
        for event in self.events.iter() {
            if event.token() == CONN {
                conn_ready = true;
                conn_ended |= event.is_read_closed() || event.is_error();
            }
            timer_fired |= event.token() == TIMER;
        }
        if timer_fired {
            self.timer.fired();
        }
        if conn_ready || more {
            // Bytes left from an earlier turn raise no event either.
            self.read_tls(conn_ended || more);
        }
        self.collect_done();
        let now = self.now();
        if self.agent.poll_timeout().is_some_and(|t| t <= now) {
            self.agent.handle_timeout(now);
        }
        self.pump();
        self.update_interest();
        // Again for a timer this turn set: a host with its own event loop
        // waits on `as_raw_fd` until the next step.
        if let Some(t) = self.next_wakeup() {
            self.arm_timer(t);
        }
        Ok(())
    }

    /// Sets the timerfd for the agent's next timer, `at`: the poll's own
    /// timeout is in whole milliseconds, rounded up.
    fn arm_timer(&mut self, at: StdInstant) {
        if let Err(e) = self.timer.arm(at) {
            log::debug!("timer: {e}; waking to the millisecond");
        }
    }

    /// The drain ran out its time: stop now, keeping what the store holds.
    fn give_up_drain(&mut self) {
        let held = self.agent.active_jobs();
        let kept = if self.store.is_some() {
            "results not yet acknowledged stay in the store and go out on the next start"
        } else {
            "there is no result store: results not yet acknowledged are lost"
        };
        log::warn!(
            "drain: {held} jobs still held after {:?}; stopping anyway ({kept})",
            self.net.drain_timeout
        );
        for (_, cancel) in self.given.values() {
            cancel.cancel();
        }
        self.close_conn(true);
        self.finished = true;
    }

    fn start_connect(&mut self) {
        self.reconnect_at = None;
        let addr = match resolve(&self.net.coordinator) {
            Ok(a) => a,
            Err(e) => {
                return self.connection_failed(format!("resolve {}: {e}", self.net.coordinator))
            }
        };
        let mut stream = match TcpStream::connect(addr) {
            Ok(s) => s,
            Err(e) => return self.connection_failed(format!("connect {addr}: {e}")),
        };
        if let Err(e) = self.poll.registry().register(
            &mut stream,
            CONN,
            Interest::READABLE | Interest::WRITABLE,
        ) {
            return self.connection_failed(format!("register: {e}"));
        }
        let _ = stream.set_nodelay(true);
        let tls = match ClientConnection::new(self.net.tls.clone(), self.server_name.clone()) {
            Ok(t) => t,
            Err(e) => return self.connection_failed(format!("TLS: {e}")),
        };
        let now = self.now();
        // A fresh session encryption key for every session: sealed jobs of
        // this session open with it, and with no other.
        #[cfg(feature = "e2e")]
        if let Err(e) = self.host.new_session_key(&mut self.agent) {
            log::warn!("no session key ({e}): this session takes no sealed jobs");
            self.agent.set_session_key([0; 32]);
        }
        if let Err(e) = self.agent.connect(now) {
            // Only if events were left undrained; drain them and retry soon.
            log::warn!("agent refused to connect: {e}");
            self.reconnect_at = Some(StdInstant::now() + StdDuration::from_millis(10));
            return;
        }
        log::info!("connecting to {addr}");
        self.conn = Some(Conn {
            stream,
            tls,
            rx: Vec::new(),
            rx_start: 0,
            wire: vec![0; WIRE_READ],
            wire_at: 0,
            wire_end: 0,
            tx: Vec::new(),
            tx_start: 0,
            interest: Interest::READABLE | Interest::WRITABLE,
            more: false,
        });
    }

    /// Closes the connection (if any) and schedules a reconnect.
    fn connection_failed(&mut self, why: String) {
        log::warn!("connection: {why}");
        self.status.last_error = Some(why);
        self.close_conn(false);
        let now = self.now();
        self.agent.disconnected(now);
        self.schedule_reconnect();
    }

    fn schedule_reconnect(&mut self) {
        let base = self.net.reconnect_initial.as_millis() as u64;
        let max = self.net.reconnect_max.as_millis() as u64;
        let delay = base
            .saturating_mul(1u64 << self.failures.min(20))
            .min(max)
            .max(1);
        // xorshift jitter: 75%..125% of the delay.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let jittered = delay * 3 / 4 + self.rng % (delay / 2 + 1);
        self.failures = self.failures.saturating_add(1);
        self.reconnect_at = Some(StdInstant::now() + StdDuration::from_millis(jittered));
        log::debug!("reconnecting in {jittered} ms");
    }

    fn close_conn(&mut self, graceful: bool) {
        if let Some(mut c) = self.conn.take() {
            if graceful {
                c.tls.send_close_notify();
                if c.gather().is_ok() {
                    let _ = c.send();
                }
            }
            let _ = self.poll.registry().deregister(&mut c.stream);
        }
    }

    /// Reads what the socket has into the connection's plaintext buffer:
    /// until it has nothing more (`WouldBlock`), or, unless `drain`, until
    /// a read fills less than the buffer. On a stream socket such a read
    /// took all there was (epoll(7), on edge-triggered readiness) and bytes
    /// coming after it raise a new event, so the read that would find
    /// nothing, a system call before the frames are answered, is saved.
    /// `drain` is for the coordinator's end or an error, which raise no
    /// further event, and for bytes left from an earlier turn.
    fn read_tls(&mut self, drain: bool) {
        let Some(c) = self.conn.as_mut() else { return };
        let mut failure = None;
        c.compact();
        let mut buf = [0u8; 16 * 1024];
        c.more = false;
        // The last read from the socket, this turn, filled less than its
        // buffer.
        let mut short = false;
        loop {
            if c.rx.len() >= RX_LIMIT {
                c.more = true;
                break;
            }
            if c.wire_at == c.wire_end {
                if short && SHORT_READ_DRAINS && !drain {
                    break;
                }
                match c.stream.read(&mut c.wire) {
                    Ok(0) => {
                        failure = Some("the coordinator closed the connection".to_string());
                        break;
                    }
                    Ok(n) => {
                        short = n < c.wire.len();
                        (c.wire_at, c.wire_end) = (0, n);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        failure = Some(format!("read: {e}"));
                        break;
                    }
                }
            }
            let mut rest = &c.wire[c.wire_at..c.wire_end];
            match c.tls.read_tls(&mut rest) {
                // The coordinator's close_notify: TLS takes nothing more.
                Ok(0) => {
                    failure = Some("the coordinator closed the connection".to_string());
                    break;
                }
                Ok(n) => c.wire_at += n,
                Err(e) => {
                    failure = Some(format!("TLS: {e}"));
                    break;
                }
            }
            match c.tls.process_new_packets() {
                Ok(_) => {}
                Err(e) => {
                    // Tell the peer why, if we can.
                    if c.gather().is_ok() {
                        let _ = c.send();
                    }
                    failure = Some(format!("TLS: {e}"));
                    break;
                }
            }
            loop {
                match c.tls.reader().read(&mut buf) {
                    // rustls: the peer's close_notify, and nothing left.
                    Ok(0) => {
                        failure = Some("the coordinator closed the connection".to_string());
                        break;
                    }
                    Ok(n) => c.rx.extend_from_slice(&buf[..n]),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => {
                        failure = Some(format!("TLS read: {e}"));
                        break;
                    }
                }
            }
            if failure.is_some() {
                break;
            }
        }
        // Let the agent see what arrived before dropping the connection.
        self.pump();
        if let Some(why) = failure {
            if self.conn.is_some() {
                self.connection_failed(why);
            }
        }
    }

    /// Moves bytes and events between the agent, the host side and TLS until
    /// nothing more can move.
    fn pump(&mut self) {
        for _ in 0..10_000 {
            let mut progressed = false;
            let now = self.now();
            if let Some(c) = self.conn.as_mut() {
                if !c.unread().is_empty() {
                    match self.agent.handle_input(now, c.unread()) {
                        Ok(n) => {
                            c.taken(n);
                            progressed |= n > 0;
                        }
                        Err(e) => {
                            c.taken(e.consumed);
                            log::warn!("from the coordinator: {}", e.error);
                            progressed = true;
                        }
                    }
                }
            }
            progressed |= self.handle_events();
            progressed |= self.restore_backlog();
            progressed |= self.work_jobs(now);
            progressed |= self.flush();
            // Nothing else moves: send what this turn gathered, at once.
            if !progressed && !self.send() {
                return;
            }
        }
        // Stopped at the cap with work left: what was gathered still goes
        // now, not after the next wake-up.
        self.send();
    }

    fn handle_events(&mut self) -> bool {
        let mut any = false;
        let now = self.now();
        while let Some(event) = self.agent.poll_event() {
            any = true;
            // The jobs' books first (inputs arrive here), then what the
            // event means for the session, then what it asks of the host.
            let followup = self.host.on_event(&self.agent, &event);
            match event {
                Event::Ready => {
                    log::info!("session established with {}", self.net.coordinator);
                    self.failures = 0;
                    self.status.sessions += 1;
                    self.status.last_error = None;
                }
                Event::CancelJob { job, reason } => {
                    log::info!("job {job} cancelled: {reason:?}");
                }
                Event::ResultAcknowledged { job } => {
                    log::info!("job {job} acknowledged");
                }
                Event::ResultRefused { job, reason } => {
                    log::warn!(
                        "job {job}: the coordinator refused the result (reason {reason}); \
                         its receipt stays in the chain"
                    );
                }
                Event::PeerError { code, job } => {
                    log::warn!("coordinator reported error {code} (job {job})");
                }
                Event::JobAssigned { .. }
                | Event::JobData { .. }
                | Event::RunJob { .. }
                | Event::ResendOutputs { .. }
                | Event::PersistResult { .. } => {}
                Event::Disconnect { reason } => {
                    log::info!("session ended: {reason:?}");
                    // Flush a final Goodbye or Error before closing.
                    self.flush();
                    self.close_conn(true);
                    match reason {
                        DisconnectReason::Drained => self.finished = true,
                        DisconnectReason::PeerGoodbye if self.drain_started => self.finished = true,
                        DisconnectReason::PeerDrained => {
                            // The coordinator's drain ends this session, not
                            // the provider: connect again, with backoff.
                            log::info!(
                                "the coordinator drained this session; connecting again later"
                            );
                            self.failures = self.failures.max(1);
                            self.schedule_reconnect();
                        }
                        _ => self.schedule_reconnect(),
                    }
                }
            }
            match followup {
                Followup::None => {}
                Followup::Run(job) => self.start_job(now, job),
                Followup::Withdraw(job) => self.withdraw(job),
                Followup::LoadOutputs(job) => self.load_outputs(job),
                Followup::Forget(job) => self.forget(job),
            }
        }
        any
    }

    /// Deletes a job's stored record: the coordinator took (or refused) its
    /// result.
    fn forget(&mut self, job: JobId) {
        if let Some(store) = self.store.as_mut() {
            if let Err(e) = store.remove(job) {
                log::warn!("store: cannot remove job {job}: {e}");
            }
        }
    }

    fn start_job(&mut self, now: Instant, job: JobId) {
        // A sealed job's plaintext is hashed (for its result hash) once the
        // run is queued, while the executor runs it.
        let Some(mut taken) = self.host.take_run_unhashed(&self.agent, job) else {
            return;
        };
        // Moved out: the run's plaintext (a sealed job's) is wiped where it
        // ends up, when the executor's run is dropped.
        let kernel = std::mem::take(&mut taken.kernel);
        let buffers = std::mem::take(&mut taken.buffers);
        let spec = taken.spec.clone();
        drop(taken);
        // The executor gets the job's deadline, which waiting in the queue
        // does not move. Whichever ends the run first, the executor's
        // timeout (`fail_job(Timeout)`) or the agent's deadline, the receipt
        // says `Timeout` at the job's quote.
        let deadline = self
            .agent
            .job_deadline(job)
            .map(|d| self.std_at(d))
            .unwrap_or_else(|| StdInstant::now() + StdDuration::from_secs(60));
        let cancel = CancelFlag::new();
        let number = self.next_run;
        self.next_run += 1;
        let run = Arc::new(JobToRun {
            id: job,
            run: number,
            spec,
            kernel,
            buffers,
            deadline,
            cancel: cancel.clone(),
        });
        // (`inline` is `None` once a run on this thread panicked: the
        // executor is given no more jobs.)
        let alive = self.inline.is_some() && self.worker.as_ref().is_some_and(|w| !w.is_finished());
        if !alive {
            // The worker's end: the executor goes with this last handle.
            self.inline = None;
        }
        if alive && self.may_run_here(deadline) {
            // `None`: the executor does not take this job here, or the
            // worker holds it (a withdrawn run still going), and the job
            // waits for the worker in the queue.
            if let Some((ran, accepting)) = self.inline.as_ref().and_then(|r| r.try_run(&run)) {
                self.ran_here(run, ran, accepting);
                return;
            }
        }
        if !alive {
            log::error!("job {job}: the executor thread is gone");
        } else if self.work.push(run.clone()) {
            log::info!("job {job}: queued to run");
            self.given.insert(job, (number, cancel));
            // The executor only reads the run: its plaintext is hashed
            // here meanwhile, before this thread can take the run's end.
            self.host.hash_run(
                job,
                &run.kernel,
                &run.spec.kernel.push_constants,
                &run.buffers,
            );
            return;
        } else {
            // The agent holds at most MAX_JOBS jobs, and jobs it dropped
            // leave the queue: only a bookkeeping error gets here.
            log::error!("job {job}: the run queue is full");
        }
        self.host
            .run_ended(job, Err(JobFailure::new(FailReason::Host, 0)));
        self.work_jobs(now);
    }

    /// Sets [`NetConfig::inline_deadline`]: how soon a job must be due to
    /// run on this thread. A host that steps the runtime from a loop that
    /// must not stall (a frame loop) sets zero.
    pub fn set_inline_deadline(&mut self, deadline: StdDuration) {
        self.net.inline_deadline = deadline;
    }

    /// [`NetConfig::inline_deadline`] as now set.
    pub fn inline_deadline(&self) -> StdDuration {
        self.net.inline_deadline
    }

    /// Whether a job due by `deadline` runs on this thread
    /// ([`NetConfig::inline_deadline`]): the executor allows it, takes work,
    /// and nothing else is in flight, so that the loop has nothing to do
    /// meanwhile but wait.
    fn may_run_here(&self, deadline: StdInstant) -> bool {
        self.inline.is_some()
            && !self.net.inline_deadline.is_zero()
            && self.executor_accepting
            && self.given.is_empty()
            && self.agent.active_jobs() == 1
            && deadline.saturating_duration_since(StdInstant::now()) <= self.net.inline_deadline
            && self.work.is_empty()
    }

    /// Ends a job run on this thread, as [`Runtime::collect_done`] ends
    /// one run by the worker.
    fn ran_here(
        &mut self,
        run: Arc<JobToRun>,
        ran: std::thread::Result<Result<JobOutputs, JobFailure>>,
        accepting: bool,
    ) {
        let job = run.id;
        let now = self.now();
        let result = match ran {
            // The agent's deadline could not fire while the run held this
            // thread: a run that ended past it timed out, as on the worker.
            Ok(Ok(_)) if StdInstant::now() >= run.deadline => {
                log::info!("job {job}: ended past its deadline");
                Err(JobFailure::new(FailReason::Timeout, 0))
            }
            Ok(result) => result,
            Err(_) => {
                // As when the worker thread dies: no more jobs for it, and
                // offers are declined from now on.
                log::error!("job {job}: the executor panicked; it runs no more jobs");
                self.inline = None;
                self.work.close();
                self.executor_accepting = false;
                self.update_availability(now);
                Err(JobFailure::new(FailReason::Host, 0))
            }
        };
        self.host.hash_run(
            job,
            &run.kernel,
            &run.spec.kernel.push_constants,
            &run.buffers,
        );
        // The run's plaintext (a sealed job's) is wiped here.
        drop(run);
        if !accepting && self.inline.is_some() {
            // Declined from now on; the worker polls the executor until it
            // takes work again, and says so.
            self.executor_accepting = false;
            self.update_availability(now);
            self.work.recheck();
        }
        if let Err(f) = &result {
            log::info!("job {job}: failed ({:?}, detail {})", f.reason, f.detail);
        }
        self.host.run_ended(job, result);
        self.work_jobs(now);
    }

    /// Takes back a job the agent no longer holds: out of the queue if it
    /// waits, else its run is told to stop.
    fn withdraw(&mut self, job: JobId) {
        if let Some((run, cancel)) = self.given.remove(&job) {
            cancel.cancel();
            if self.work.remove(run) {
                log::debug!("job {job}: removed from the run queue");
            }
        }
    }

    /// Jobs waiting for the executor and their input bytes, for operators
    /// and tests.
    pub fn queued_jobs(&self) -> (usize, usize) {
        self.work.queued()
    }

    fn collect_done(&mut self) {
        // Before reading: what the worker sends after this wakes the poll.
        self.worker_woke.store(false, Ordering::SeqCst);
        while let Ok(msg) = self.done.try_recv() {
            let now = self.now();
            let (job, result) = match msg {
                FromWorker::Done(job, run, result) => {
                    // Only the run the job is waiting for: a withdrawn run
                    // of an earlier job with the same id is nobody's.
                    if self.given.get(&job).is_none_or(|(r, _)| *r != run) {
                        log::debug!("job {job}: withdrawn run {run} ended");
                        // Its outputs (a sealed job's in the clear) are
                        // dropped zeroed.
                        if let Ok(mut out) = result {
                            crate::host::wipe_outputs(&mut out.outputs);
                        }
                        continue;
                    }
                    self.given.remove(&job);
                    (job, result)
                }
                FromWorker::Accepting(available) => {
                    if available {
                        log::info!("device available again: taking offers");
                    } else {
                        log::warn!(
                            "device unavailable (still running work abandoned after timeouts): \
                             declining offers until it is reclaimed"
                        );
                    }
                    self.executor_accepting = available;
                    self.update_availability(now);
                    continue;
                }
            };
            if let Err(f) = &result {
                log::info!("job {job}: failed ({:?}, detail {})", f.reason, f.detail);
            }
            self.host.run_ended(job, result);
            self.work_jobs(now);
        }
    }

    /// Hands stored results to the agent, oldest first, while it has room;
    /// takes offers again once none wait. Returns whether any was handed.
    fn restore_backlog(&mut self) -> bool {
        let Some(store) = self.store.as_ref() else {
            return false;
        };
        if self.backlog.is_empty() {
            return false;
        }
        let mut any = false;
        while self.agent.active_jobs() < MAX_JOBS {
            let Some(&job) = self.backlog.front() else {
                break;
            };
            match store.load_record(job) {
                Ok(record) => match self.agent.restore_result(&record) {
                    Ok(()) => log::info!("job {job}: stored result handed back for delivery"),
                    // Events not drained yet: again on the next turn.
                    Err(Error::WouldBlock) => break,
                    Err(e) => {
                        // The file stays: the next start reads it again.
                        log::error!("job {job}: stored result refused: {e}; kept on disk");
                        self.status.last_error = Some(format!("store: job {job}: {e}"));
                    }
                },
                Err(e) => {
                    log::error!("job {job}: stored result unreadable: {e}; kept on disk");
                    self.status.last_error = Some(format!("store: {e}"));
                }
            }
            self.backlog.pop_front();
            any = true;
        }
        if self.backlog.is_empty() {
            let now = self.now();
            self.update_availability(now);
        }
        any
    }

    /// Offers are taken when the executor takes work and no stored result
    /// waits for delivery.
    fn update_availability(&mut self, now: Instant) {
        let available = self.executor_accepting && self.host_accepting && self.backlog.is_empty();
        self.agent.set_device_available(now, available);
    }

    /// Outputs the agent wants again and the host no longer holds (after
    /// a restart): from the store.
    fn load_outputs(&mut self, job: JobId) {
        match self.store.as_ref().map(|s| s.load(job)) {
            Some(Ok((_, outputs))) => self.host.outputs_loaded(job, outputs),
            Some(Err(e)) => {
                log::error!("job {job}: stored outputs unreadable: {e}");
                self.status.last_error = Some(format!("store: {e}"));
            }
            None => log::error!("job {job}: outputs asked again but not kept"),
        }
    }

    /// Stores results, reports failures and uploads outputs through the
    /// shared host side; uploads wait while TLS has not caught up with the
    /// socket, so that no more than the agent's outgoing queue is buffered.
    fn work_jobs(&mut self, now: Instant) -> bool {
        let mut report = WorkReport::default();
        let store = &mut self.store;
        let hook = &mut self.receipt_hook;
        let mut persist = |record: &ResultRecord, outputs: &[&[u8]]| {
            if let Some(store) = store.as_mut() {
                store
                    .save_with_outputs(record, outputs)
                    .map_err(|e| e.to_string())?;
            }
            if let Some(hook) = hook.as_mut() {
                hook(record.job, &record.receipt);
            }
            Ok(())
        };
        self.host
            .store_results(now, &mut self.agent, &mut persist, &mut report);
        self.host.report_failures(now, &mut self.agent, &mut report);
        let caught_up = self
            .conn
            .as_ref()
            .is_none_or(|c| !c.tls.wants_write() && c.unsent() < TX_LIMIT);
        self.upload_held = !caught_up && !self.host.to_upload.is_empty();
        if caught_up {
            let conn = &mut self.conn;
            let mut failure = None;
            let mut transmit = |bytes: &[u8]| {
                // Without a connection the agent writes nothing.
                let Some(c) = conn.as_mut() else { return };
                if failure.is_none() {
                    // At most `UPLOAD_BYTES` a turn, within what rustls
                    // buffers (64 KiB), also before its handshake ends.
                    if let Err(e) = c.tls.writer().write_all(bytes) {
                        failure = Some(format!("TLS write: {e}"));
                    }
                }
            };
            self.host
                .upload(now, &mut self.agent, &mut report, &mut transmit);
            if let Some(why) = failure {
                self.connection_failed(why);
            }
        }
        if let Some(e) = report.store_error {
            self.status.last_error = Some(format!("store: {e}"));
        }
        report.progressed
    }

    /// Moves the agent's outgoing bytes into TLS, and TLS's records into
    /// the connection's send buffer; sends only once that holds
    /// [`TX_LIMIT`] (the rest leaves in [`Runtime::send`] at the end of
    /// the turn).
    fn flush(&mut self) -> bool {
        let now = self.now();
        let Some(c) = self.conn.as_mut() else {
            // Nothing can be sent; drop what the agent queued for a dead link.
            let mut sink = [0u8; 4096];
            while self.agent.poll_transmit(now, &mut sink).is_some() {}
            return false;
        };
        let mut any = false;
        let mut failure = None;
        let mut buf = [0u8; 16 * 1024];
        loop {
            if let Err(e) = c.gather() {
                failure = Some(format!("TLS: {e}"));
                break;
            }
            if c.unsent() >= TX_LIMIT {
                match c.send() {
                    Ok(sent) => any |= sent,
                    Err(e) => {
                        failure = Some(format!("write: {e}"));
                        break;
                    }
                }
                if c.unsent() >= TX_LIMIT {
                    // The socket is full: the bytes wait in the agent,
                    // which stops reading input when its queue fills.
                    break;
                }
            }
            // Move what the agent queued (at most its outgoing capacity,
            // far within rustls's buffer, which would refuse bytes past
            // its limit); TLS is empty here.
            let Some(n) = self.agent.poll_transmit(now, &mut buf) else {
                break;
            };
            // rustls buffers plaintext, also before the handshake completes.
            if let Err(e) = c.tls.writer().write_all(&buf[..n]) {
                failure = Some(format!("TLS write: {e}"));
                break;
            }
            any = true;
        }
        if let Some(why) = failure {
            self.connection_failed(why);
        }
        any
    }

    /// Sends what the turn gathered. `true` when that made room for more:
    /// [`Runtime::flush`] had stopped at [`TX_LIMIT`], or outputs waited
    /// for TLS's records to leave ([`Runtime::work_jobs`]) and they have.
    /// Nothing else wakes the runtime for those outputs: the socket took
    /// every byte, so it will not say it is writable.
    fn send(&mut self) -> bool {
        let Some(c) = self.conn.as_mut() else {
            return false;
        };
        let was_full = c.unsent() >= TX_LIMIT;
        let gathered = c.gather();
        match gathered.and_then(|()| c.send()) {
            Ok(sent) => {
                let room = c.unsent() < TX_LIMIT;
                (sent && was_full && room) || (self.upload_held && room)
            }
            Err(e) => {
                self.connection_failed(format!("write: {e}"));
                false
            }
        }
    }

    fn update_interest(&mut self) {
        let Some(c) = self.conn.as_mut() else { return };
        let interest = if c.tls.wants_write() || c.unsent() > 0 {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::READABLE
        };
        if interest == c.interest {
            return;
        }
        c.interest = interest;
        if let Err(e) = self
            .poll
            .registry()
            .reregister(&mut c.stream, CONN, interest)
        {
            let why = format!("reregister: {e}");
            self.connection_failed(why);
        }
    }
}

impl<S: Signer> Drop for Runtime<S> {
    fn drop(&mut self) {
        self.close_conn(true);
        // Closing the queue ends the worker after its current job, which is
        // told to stop.
        for (_, cancel) in self.given.values() {
            cancel.cancel();
        }
        self.work.close();
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }
}

fn resolve(addr: &str) -> io::Result<SocketAddr> {
    addr.to_socket_addrs()?
        .next()
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no address"))
}

/// The executor, called on the runtime's thread.
trait InlineRun: Send {
    /// Runs `job` if the executor takes it here
    /// ([`Executor::may_run_inline`]) and the worker does not hold it now
    /// (else `None`), with whether the executor takes work after it
    /// (`false` after a panic).
    fn try_run(
        &self,
        job: &JobToRun,
    ) -> Option<(std::thread::Result<Result<JobOutputs, JobFailure>>, bool)>;
}

impl<E: Executor> InlineRun for Arc<Mutex<E>> {
    fn try_run(
        &self,
        job: &JobToRun,
    ) -> Option<(std::thread::Result<Result<JobOutputs, JobFailure>>, bool)> {
        // Never waits for the worker. A lock poisoned by a panic of the
        // worker's counts as held: the job goes to the queue, and fails
        // there with the worker gone.
        let mut executor = self.try_lock().ok()?;
        let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            if !executor.may_run_inline(job) {
                return None;
            }
            let result = executor.run(job);
            Some((result, executor.accepting_jobs()))
        }));
        match ran {
            Ok(None) => None,
            Ok(Some((result, accepting))) => Some((Ok(result), accepting)),
            Err(panic) => Some((Err(panic), false)),
        }
    }
}

/// The executor, for the worker. A panic on the runtime's thread is caught
/// inside the lock and leaves it whole; the worker ends then because the
/// runtime closes the queue.
fn locked<E>(executor: &Mutex<E>) -> MutexGuard<'_, E> {
    executor.lock().unwrap_or_else(|e| e.into_inner())
}

/// Starts the worker thread: it takes jobs from `work` (all those waiting,
/// when the executor takes batches), runs them, and reports each on
/// `done`. It asks the executor whether it takes work at the start, after
/// every job and, while the answer is no, every [`UNAVAILABLE_POLL`] while
/// idle, and when the runtime asks (a run on its thread found the answer
/// no); it reports each change. It ends when the runtime closes the queue
/// or drops `done`.
fn spawn_worker<E: Executor>(
    executor: Arc<Mutex<E>>,
    work: Arc<WorkQueue>,
    done: ToRuntime,
) -> Result<JoinHandle<()>, RuntimeError> {
    std::thread::Builder::new()
        .name("tessera-executor".into())
        .spawn(move || {
            let mut accepting = true;
            let report = |executor: &mut E, accepting: &mut bool| {
                report_accepting(executor, accepting, &done)
            };
            if !report(&mut locked(&executor), &mut accepting) {
                return;
            }
            let most = locked(&executor).batch_size().max(1);
            let mut batch: Vec<Arc<JobToRun>> = Vec::with_capacity(most);
            loop {
                let wait = if accepting {
                    None
                } else {
                    Some(UNAVAILABLE_POLL)
                };
                batch.clear();
                match work.next(wait) {
                    Ok(Some(job)) => batch.push(job),
                    Ok(None) => {
                        // A poll while unavailable, or the runtime asking
                        // (it counts the device unavailable now): the
                        // executor's answer goes to it either way.
                        accepting = false;
                        if !report(&mut locked(&executor), &mut accepting) {
                            return;
                        }
                        continue;
                    }
                    Err(()) => return,
                }
                while batch.len() < most {
                    match work.next(Some(StdDuration::ZERO)) {
                        Ok(Some(job)) => batch.push(job),
                        _ => break,
                    }
                }
                batch.retain(|job| !job.cancel.is_cancelled());
                let mut gone = false;
                let mut finished = |job: &JobToRun, result| {
                    gone |= !done.send(FromWorker::Done(job.id, job.run, result));
                };
                match &batch[..] {
                    [] => continue,
                    [job] => {
                        let result = locked(&executor).run(job);
                        finished(job, result);
                    }
                    jobs => {
                        let refs: Vec<&JobToRun> = jobs.iter().map(|j| &**j).collect();
                        locked(&executor).run_batch(&refs, &mut |i, result| {
                            if let Some(job) = refs.get(i) {
                                finished(job, result);
                            }
                        });
                    }
                }
                if gone || !report(&mut locked(&executor), &mut accepting) {
                    return;
                }
            }
        })
        .map_err(RuntimeError::Io)
}

/// Asks the executor whether it takes work and reports a change from
/// `accepting`; false once the runtime is gone.
fn report_accepting<E: Executor>(executor: &mut E, accepting: &mut bool, done: &ToRuntime) -> bool {
    let now = executor.accepting_jobs();
    if now == *accepting {
        return true;
    }
    *accepting = now;
    done.send(FromWorker::Accepting(now))
}

/// The worker's way to the runtime: its messages, and a wake of the poll
/// for the first the runtime has not yet seen (a batch's jobs end
/// together: one wake-up, one system call, not one each).
struct ToRuntime {
    done: Sender<FromWorker>,
    waker: Arc<Waker>,
    /// The runtime's `worker_woke`.
    woke: Arc<AtomicBool>,
}

impl ToRuntime {
    /// Sends `msg`; false once the runtime is gone.
    fn send(&self, msg: FromWorker) -> bool {
        let sent = self.done.send(msg).is_ok();
        // After the send: the runtime clears the flag before it reads, so
        // either it reads this message or this wakes it again.
        if !self.woke.swap(true, Ordering::SeqCst) {
            let _ = self.waker.wake();
        }
        sent
    }
}

/// Writes to a socket with `send` and its `MSG_NOSIGNAL` (what std's
/// `TcpStream::write` does), never `writev`: a peer that has gone away then
/// gives `EPIPE`, where `writev` would raise `SIGPIPE` and kill a host
/// program (a C program linking the library) that does not ignore it.
struct NoSigPipe<'a, W: io::Write>(&'a mut W);

impl<W: io::Write> io::Write for NoSigPipe<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Asking for more jobs to batch returns at once when none wait: a
    /// timed wait of zero would sleep for the thread's timer slack (50 µs
    /// by default) before every batch the worker runs.
    #[test]
    fn asking_an_empty_queue_for_more_jobs_does_not_sleep() {
        let queue = WorkQueue::default();
        const ASKS: u32 = 200;
        // The fastest of three tries: one preempted does not count.
        let fastest = (0..3)
            .map(|_| {
                let start = StdInstant::now();
                for _ in 0..ASKS {
                    assert!(matches!(queue.next(Some(StdDuration::ZERO)), Ok(None)));
                }
                start.elapsed()
            })
            .min()
            .unwrap_or_default();
        // As many sleeps of the default slack would take 10 ms.
        assert!(fastest < StdDuration::from_millis(2), "{fastest:?}");
    }
}
