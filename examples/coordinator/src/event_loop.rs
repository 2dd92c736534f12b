//! The coordinator's event loop: one thread owns every socket (the listener
//! and each connection), drives each connection's TLS (rustls over a
//! non-blocking socket), reads its frames, writes what its [`Outbox`] holds
//! as the peer reads, and runs the engine's timers from the poll timeout.
//!
//! A second thread hashes large request bodies (`submission::prepare`) so
//! that a 256 MiB request does not stall everyone else; small ones are
//! prepared on the loop.
//!
//! Every wait is bounded by a deadline kept here, not by a blocking call:
//! the handshake deadline (TLS and the first message, however the peer
//! spreads its bytes), a request body's deadline, a requester's idle time,
//! and the write timeout (a connection whose queued bytes make no progress
//! that long is shut).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use rustls::ServerConnection;
use tessera_core::limits::{HEADER_LEN, MAX_FRAME};
use tessera_core::merkle::leaf_hash;
use tessera_core::net::tls::SHORT_READ_DRAINS;
use tessera_core::wire::{Header, JobId, Message, MAGIC};

use crate::budget::Permit;
use crate::conn::{Outbox, Reply, WriteCmd};
use crate::engine::{Answer, SessionId};
use crate::protocol::{
    bounded_reason, encode_frame, parse_header, response_parts, FailureCode, FrameError,
    JobFailure, Response, MAX_IN_FLIGHT, REQUEST_HEADER_LEN, REQUEST_MAGIC,
};
use crate::server::{Shared, Slot};
use crate::submission::{self, InputStream, Limits, Prepared, Refusal};

/// Wakes the loop from another thread.
pub(crate) const WAKER: Token = Token(usize::MAX - 1);
const LISTENER: Token = Token(usize::MAX - 2);
/// Marked when the hashing thread has prepared a request.
const PREPARED: Token = Token(usize::MAX - 3);

/// The engine's timers run this often.
const TICK: Duration = Duration::from_millis(50);
/// Plaintext bytes read from one connection before the others get a turn.
const READ_TURN: usize = 256 << 10;
/// The most one read from a socket takes. rustls reads 4 KiB at a time
/// itself; the loop reads this much and hands it to TLS from memory, so
/// that a burst (a job's input, a provider's outputs and receipts) costs
/// one system call rather than one per 4 KiB.
const WIRE_READ: usize = 64 << 10;
/// Bytes written to one connection before the others get a turn.
const WRITE_TURN: usize = 1 << 20;
/// Frames handed to TLS before it writes to the socket.
const FEED_BATCH: usize = 64;
/// Request bodies up to this size are prepared on the loop itself.
const INLINE_PREPARE: usize = 64 << 10;
/// A request body's buffer (and its place in the budget) grows this much
/// at a time.
const BODY_STEP: usize = 1 << 20;
/// After `shutdown`, how long the loop keeps writing goodbyes and answers.
const STOP_GRACE: Duration = Duration::from_secs(1);

/// `at + d`, or far in the future when the clock cannot add it.
pub(crate) fn after(at: Instant, d: Duration) -> Instant {
    at.checked_add(d)
        .unwrap_or_else(|| at + Duration::from_secs(365 * 24 * 3600))
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// What a connection's read deadline is for.
#[derive(Clone, Copy, Debug)]
enum Due {
    /// TLS and the first message.
    Handshake,
    /// A request body, at the least rate.
    Body,
    /// A requester's next header.
    Idle,
}

enum Req {
    /// Reading a header (the connection's first is due by the handshake
    /// deadline, later ones within `requester_idle`).
    Header,
    /// Reading a body of `len` bytes, `held` of them taken in the budget.
    Body {
        len: usize,
        body: Vec<u8>,
        permit: Permit,
        held: usize,
    },
    /// Reading and dropping the rest of a body the budget had no room for.
    Discard { left: usize },
    /// Nothing more is read.
    Done,
}

/// A request read from a requester and not yet answered. Requests are
/// worked on at once and answered in the order they came.
struct InFlight {
    seq: u64,
    /// The engine's job for it, once submitted.
    job: Option<JobId>,
    /// When the loop answers for it if the engine has not (the engine
    /// always answers; this guards a bug).
    due: Option<Instant>,
    /// Its answer, held while an earlier request's has not come.
    answer: Option<Answer>,
}

enum Role {
    /// The first two bytes have not come yet.
    Unknown,
    Provider {
        sid: SessionId,
        first: bool,
    },
    /// The provider's session is closed; nothing more is read.
    ProviderGone,
    Requester(Req),
}

/// A frame being handed to TLS.
struct Writing {
    parts: Vec<Vec<u8>>,
    part: usize,
    at: usize,
    /// Bytes counted in the outbox's queue (0 for input chunks and answers).
    counted: usize,
    hold: Option<Permit>,
}

struct Conn {
    sock: TcpStream,
    tls: ServerConnection,
    peer: SocketAddr,
    gen: u64,
    outbox: Outbox,
    _slot: Slot,
    accepted: Instant,
    role: Role,
    /// A frame or header not yet whole.
    inbuf: Vec<u8>,
    /// Bytes a requester sent while its reading was paused.
    pending: Vec<u8>,
    /// Bytes read from the socket, `wire[wire_at..wire_end]` not yet
    /// handed to TLS. The buffer is the loop's, lent for one read and
    /// given back once TLS took it all; a connection paused in the middle
    /// of one keeps a copy of what is left instead ([`park`]).
    wire: Vec<u8>,
    wire_at: usize,
    wire_end: usize,
    deadline: Option<(Instant, Due)>,
    /// Since when queued bytes have made no progress.
    stall: Option<Instant>,
    /// The earliest instant this connection has in the timer heap.
    timer_at: Option<Instant>,
    writing: Option<Writing>,
    inputs: Option<InputStream>,
    /// A close_notify was queued: shut once it is written.
    closing: bool,
    /// Nothing more is read (the peer's end came, or we are closing).
    eof: bool,
    /// The socket reached its end.
    sock_eof: bool,
    /// Reading stops until the oldest of a requester's requests is answered
    /// ([`MAX_IN_FLIGHT`]).
    paused: bool,
    /// What a paused requester holds unread (`pending` and what is left
    /// of `wire`), in the requesters' budget.
    parked: Option<Permit>,
    /// The number of the requester's last request read.
    seq: u64,
    /// The requester's requests not yet answered, oldest first.
    in_flight: VecDeque<InFlight>,
}

impl Conn {
    fn who(&self) -> String {
        match &self.role {
            Role::Provider { sid, .. } => format!("session {sid} ({})", self.peer),
            Role::Requester(_) => format!("requester {}", self.peer),
            _ => self.peer.to_string(),
        }
    }

    /// Nothing left to write.
    fn quiet(&mut self) -> bool {
        self.writing.is_none()
            && self.inputs.is_none()
            && !self.tls.wants_write()
            && self.outbox.is_empty()
    }
}

/// A request body for the hashing thread.
struct PrepareJob {
    index: usize,
    gen: u64,
    seq: u64,
    body: Vec<u8>,
    permit: Permit,
    readback: Permit,
}

type PrepareDone = (usize, u64, u64, Result<Prepared, Refusal>);

/// Everything the loop keeps beside its connections.
struct Ctx {
    shared: Arc<Shared>,
    poll: Poll,
    timers: BinaryHeap<Reverse<(Instant, usize, u64)>>,
    again: Vec<usize>,
    scratch: Vec<u8>,
    /// The buffer sockets are read into ([`WIRE_READ`]); empty while a
    /// connection holds it.
    wire: Vec<u8>,
    jobs: Option<Sender<PrepareJob>>,
    done: Arc<Mutex<Vec<PrepareDone>>>,
    limits: Limits,
    next_gen: u64,
}

struct Loop {
    ctx: Ctx,
    conns: Vec<Option<Conn>>,
    free: Vec<usize>,
    listener: Option<TcpListener>,
    accept_retry: Option<Instant>,
    accept_warned: Option<Instant>,
}

/// Starts the loop's thread and the hashing thread.
pub(crate) fn spawn(
    shared: Arc<Shared>,
    poll: Poll,
    mut listener: TcpListener,
) -> io::Result<Vec<JoinHandle<()>>> {
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    let limits = Limits {
        max_readback_bytes: shared.config.max_readback_bytes,
    };
    let (jobs, job_rx) = mpsc::channel();
    let done = Arc::new(Mutex::new(Vec::new()));
    let worker = {
        let done = Arc::clone(&done);
        let notify = Arc::clone(&shared.notify);
        thread::Builder::new()
            .name("tessera-prepare".into())
            .spawn(move || prepare_loop(job_rx, &done, &notify, &limits))?
    };
    let ctx = Ctx {
        shared,
        poll,
        timers: BinaryHeap::new(),
        again: Vec::new(),
        scratch: vec![0; 16 << 10],
        wire: vec![0; WIRE_READ],
        jobs: Some(jobs),
        done,
        limits,
        next_gen: 0,
    };
    let lp = Loop {
        ctx,
        conns: Vec::new(),
        free: Vec::new(),
        listener: Some(listener),
        accept_retry: None,
        accept_warned: None,
    };
    let main = thread::Builder::new()
        .name("tessera-loop".into())
        .spawn(move || lp.run())?;
    Ok(vec![main, worker])
}

fn prepare_loop(
    jobs: Receiver<PrepareJob>,
    done: &Mutex<Vec<PrepareDone>>,
    notify: &crate::conn::Notify,
    limits: &Limits,
) {
    for job in jobs {
        let result = submission::prepare(job.body, job.permit, limits, job.readback);
        lock(done).push((job.index, job.gen, job.seq, result));
        notify.mark(PREPARED);
    }
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

impl Loop {
    fn run(mut self) {
        let mut events = Events::with_capacity(1024);
        let mut dirty = Vec::new();
        let mut next_tick = after(Instant::now(), TICK);
        let mut stop_by: Option<Instant> = None;
        loop {
            let now = Instant::now();
            let mut wake_at = next_tick;
            if let Some(Reverse((at, _, _))) = self.ctx.timers.peek() {
                wake_at = wake_at.min(*at);
            }
            if let Some(at) = self.accept_retry {
                wake_at = wake_at.min(at);
            }
            if let Some(at) = stop_by {
                wake_at = wake_at.min(at);
            }
            let mut timeout = wake_at.saturating_duration_since(now);
            if self.ctx.shared.notify.sleeping() || !self.ctx.again.is_empty() {
                timeout = Duration::ZERO;
            }
            if let Err(e) = self.ctx.poll.poll(&mut events, Some(timeout)) {
                if e.kind() != io::ErrorKind::Interrupted {
                    log::error!("event loop: poll failed: {e}");
                    thread::sleep(Duration::from_millis(10));
                }
            }
            self.ctx.shared.notify.awake();
            for ev in events.iter() {
                match ev.token() {
                    LISTENER => self.accept(),
                    WAKER => {}
                    Token(i) => {
                        let reset = ev.is_error() || ev.is_write_closed();
                        if reset && matches!(self.conns.get(i), Some(Some(c)) if c.paused || c.eof)
                        {
                            // A connection not read (a paused requester, or
                            // one whose end was read and that waits for its
                            // answers) would not see a reset, and its jobs
                            // would be held, until an answer came to write:
                            // the reset ends it now.
                            log::debug!("connection {i}: reset while not read");
                            self.settle(i, Err(()));
                        } else if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                            // A short read ends the turn, unless the peer's
                            // end or an error came: see `read_turn`.
                            let drain = ev.is_read_closed() || ev.is_error();
                            let r = self.with(i, |ctx, c| read(ctx, c, i, drain));
                            // What the read gave other connections goes out
                            // first: a verified result reaches its requester
                            // before the provider's acknowledgement is
                            // written (and its peer woken). Not when the
                            // read failed: the connection is removed first,
                            // as ever, so that nothing (a prepared
                            // submission, a job) is given to it meanwhile.
                            if r.is_ok() {
                                self.flush_dirty(&mut dirty, Some(i));
                            }
                            self.settle(i, r);
                        } else if ev.is_writable() {
                            self.settle(i, Ok(()));
                        }
                    }
                }
            }
            for i in std::mem::take(&mut self.ctx.again) {
                let r = self.with(i, |ctx, c| read(ctx, c, i, true));
                self.settle(i, r);
            }
            let now = Instant::now();
            while let Some(Reverse((at, i, gen))) = self.ctx.timers.peek().copied() {
                if at > now {
                    break;
                }
                self.ctx.timers.pop();
                let live = matches!(self.conns.get(i), Some(Some(c)) if c.gen == gen && c.timer_at == Some(at));
                if live {
                    let r = self.with(i, |ctx, c| {
                        c.timer_at = None;
                        expire(ctx, c, now)
                    });
                    self.settle(i, r);
                }
            }
            if self.accept_retry.is_some_and(|at| at <= now) {
                self.accept_retry = None;
                self.accept();
            }
            if now >= next_tick {
                self.ctx.shared.engine().tick(now);
                next_tick = after(now, TICK);
            }
            self.flush_dirty(&mut dirty, None);
            if self.ctx.shared.stop.load(Ordering::SeqCst) {
                if let Some(mut l) = self.listener.take() {
                    let _ = self.ctx.poll.registry().deregister(&mut l);
                }
                let by = *stop_by.get_or_insert(after(now, STOP_GRACE));
                let quiet = self.conns.iter_mut().flatten().all(Conn::quiet);
                if quiet || now >= by {
                    break;
                }
            }
        }
        for i in 0..self.conns.len() {
            self.remove(i);
        }
        // Ends the hashing thread.
        self.ctx.jobs = None;
    }

    /// Writes to every connection with something new to write, and takes
    /// the prepared submissions, until none is left; except connection
    /// `except`, which the caller settles next.
    fn flush_dirty(&mut self, dirty: &mut Vec<Token>, except: Option<usize>) {
        loop {
            self.ctx.shared.notify.take(dirty);
            if dirty.is_empty() {
                break;
            }
            for t in dirty.drain(..) {
                if t == PREPARED {
                    self.prepared();
                } else if Some(t.0) != except {
                    self.settle(t.0, Ok(()));
                }
            }
        }
    }

    fn with(
        &mut self,
        i: usize,
        f: impl FnOnce(&mut Ctx, &mut Conn) -> Result<(), ()>,
    ) -> Result<(), ()> {
        match self.conns.get_mut(i) {
            Some(Some(c)) => f(&mut self.ctx, c),
            _ => Ok(()),
        }
    }

    /// After anything happened to connection `i`: shut it when `r` says so,
    /// otherwise write what it can and set its timer.
    fn settle(&mut self, i: usize, r: Result<(), ()>) {
        let Some(Some(c)) = self.conns.get_mut(i) else {
            return;
        };
        let keep = r.is_ok()
            && match flush(&mut self.ctx, c) {
                Ok(done) => !done,
                Err(()) => false,
            };
        if keep {
            arm(&mut self.ctx, c, i);
        } else {
            self.remove(i);
        }
    }

    fn remove(&mut self, i: usize) {
        let Some(slot) = self.conns.get_mut(i) else {
            return;
        };
        let Some(mut c) = slot.take() else {
            return;
        };
        match c.role {
            Role::Provider { sid, .. } => {
                self.ctx.shared.engine().session_closed(sid, Instant::now());
            }
            Role::Requester(_) => withdraw(&self.ctx, &mut c),
            _ => {}
        }
        c.outbox.gone();
        if self.ctx.wire.is_empty() && c.wire.len() == WIRE_READ {
            // Shut while it held the read buffer: the next read reuses it.
            self.ctx.wire = std::mem::take(&mut c.wire);
        }
        let _ = self.ctx.poll.registry().deregister(&mut c.sock);
        let _ = c.sock.shutdown(Shutdown::Both);
        self.free.push(i);
    }

    fn accept(&mut self) {
        loop {
            let Some(listener) = &self.listener else {
                return;
            };
            let (mut sock, peer) = match listener.accept() {
                Ok(pair) => pair,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // Out of file descriptors, most likely: try again soon,
                    // and say so once a second at most.
                    let now = Instant::now();
                    if self
                        .accept_warned
                        .is_none_or(|at| now >= after(at, Duration::from_secs(1)))
                    {
                        log::warn!("accept failed: {e}");
                        self.accept_warned = Some(now);
                    }
                    self.accept_retry = Some(after(now, Duration::from_millis(10)));
                    return;
                }
            };
            let accepted = Instant::now();
            let shared = &self.ctx.shared;
            let Some(slot) = Slot::admit(&shared.connections, peer.ip(), &shared.config) else {
                shared
                    .counters
                    .connections_refused
                    .fetch_add(1, Ordering::Relaxed);
                log::debug!("{peer}: over the connection caps; closed");
                continue;
            };
            let tls = match ServerConnection::new(Arc::clone(&shared.config.tls)) {
                Ok(c) => c,
                Err(e) => {
                    log::error!("cannot start TLS for {peer}: {e}");
                    continue;
                }
            };
            if let Err(e) = sock.set_nodelay(true) {
                log::debug!("{peer}: {e}");
            }
            let i = match self.free.pop() {
                Some(i) => i,
                None => {
                    self.conns.push(None);
                    self.conns.len() - 1
                }
            };
            let token = Token(i);
            if let Err(e) = self.ctx.poll.registry().register(
                &mut sock,
                token,
                Interest::READABLE | Interest::WRITABLE,
            ) {
                log::warn!("{peer}: cannot watch the socket: {e}");
                self.free.push(i);
                continue;
            }
            let outbox = Outbox::new(
                token,
                shared.config.max_outbox_bytes,
                Arc::clone(&shared.counters.outbox_overflows),
                Arc::clone(&shared.notify),
            );
            let deadline = after(accepted, shared.config.handshake_timeout);
            self.ctx.next_gen += 1;
            let mut c = Conn {
                sock,
                tls,
                peer,
                gen: self.ctx.next_gen,
                outbox,
                _slot: slot,
                accepted,
                role: Role::Unknown,
                inbuf: Vec::new(),
                pending: Vec::new(),
                wire: Vec::new(),
                wire_at: 0,
                wire_end: 0,
                deadline: Some((deadline, Due::Handshake)),
                stall: None,
                timer_at: None,
                writing: None,
                inputs: None,
                closing: false,
                eof: false,
                sock_eof: false,
                paused: false,
                parked: None,
                seq: 0,
                in_flight: VecDeque::new(),
            };
            arm(&mut self.ctx, &mut c, i);
            self.conns[i] = Some(c);
        }
    }

    /// Requests the hashing thread has prepared.
    fn prepared(&mut self) {
        let done = std::mem::take(&mut *lock(&self.ctx.done));
        for (i, gen, seq, result) in done {
            let r = self.with(i, |ctx, c| {
                let waiting = c
                    .in_flight
                    .iter()
                    .any(|r| r.seq == seq && r.answer.is_none());
                if c.gen == gen && waiting {
                    submit(ctx, c, seq, result);
                }
                Ok(())
            });
            self.settle(i, r);
        }
    }
}

/// Puts connection `c` (index `i`) in the timer heap for its earliest
/// deadline, unless an earlier entry is there already.
fn arm(ctx: &mut Ctx, c: &mut Conn, i: usize) {
    let write_by = c.stall.map(|s| after(s, ctx.shared.config.write_timeout));
    let answer_by = c
        .in_flight
        .iter()
        .filter(|r| r.answer.is_none())
        .filter_map(|r| r.due)
        .min();
    let next = [c.deadline.map(|d| d.0), write_by, answer_by]
        .into_iter()
        .flatten()
        .min();
    if let Some(at) = next {
        if c.timer_at.is_none_or(|t| at < t) {
            c.timer_at = Some(at);
            ctx.timers.push(Reverse((at, i, c.gen)));
        }
    }
}

/// A deadline or the write timeout may have passed.
fn expire(ctx: &mut Ctx, c: &mut Conn, now: Instant) -> Result<(), ()> {
    let shared = Arc::clone(&ctx.shared);
    if let Some(since) = c.stall {
        if now >= after(since, shared.config.write_timeout) {
            log::debug!("{}: a write made no progress in time", c.who());
            return Err(());
        }
    }
    let overdue: Vec<u64> = c
        .in_flight
        .iter()
        .filter(|r| r.answer.is_none() && r.due.is_some_and(|d| now >= d))
        .map(|r| r.seq)
        .collect();
    for seq in overdue {
        let answer = Answer {
            response: failure(
                FailureCode::Timeout,
                "the coordinator gave no answer in time".into(),
            ),
            hold: None,
        };
        on_answer(ctx, c, seq, answer);
    }
    let Some((at, due)) = c.deadline else {
        return Ok(());
    };
    if now < at {
        return Ok(());
    }
    c.deadline = None;
    match due {
        Due::Handshake | Due::Body => {
            shared
                .counters
                .handshakes_expired
                .fetch_add(1, Ordering::Relaxed);
            log::debug!("{}: {due:?} deadline passed", c.who());
            Err(())
        }
        Due::Idle => {
            log::debug!("{}: idle; closing", c.who());
            c.eof = true;
            c.outbox.close();
            Ok(())
        }
    }
}

/// Reads what the peer sent, up to a turn's worth of plaintext.
/// (A connection in `Ctx::again` for its writes comes here too: it reads
/// nothing once its reading is done, and `settle` writes.)
fn read(ctx: &mut Ctx, c: &mut Conn, i: usize, drain: bool) -> Result<(), ()> {
    let mut scratch = std::mem::take(&mut ctx.scratch);
    let r = read_turn(ctx, c, i, &mut scratch, drain);
    ctx.scratch = scratch;
    r
}

/// The socket is read until it has nothing more (`WouldBlock`), or, unless
/// `drain`, until a read fills less than the buffer: on a stream socket that
/// read took all there was (epoll(7), on edge-triggered readiness), and
/// bytes coming after it raise a new event. That saves a read, a system
/// call, before the frames read are answered. `drain` is for the peer's end
/// or an error, which raise no further event, and for turns not started by
/// an event.
fn read_turn(
    ctx: &mut Ctx,
    c: &mut Conn,
    i: usize,
    scratch: &mut [u8],
    drain: bool,
) -> Result<(), ()> {
    if !c.paused {
        // What was parked is taken from here on, in its requests' budget.
        c.parked = None;
    }
    if !c.pending.is_empty() && !c.paused {
        let pending = std::mem::take(&mut c.pending);
        on_bytes(ctx, c, &pending)?;
    }
    let mut turn = READ_TURN;
    // The last read from the socket, this turn, filled less than its buffer.
    let mut short = false;
    loop {
        if c.paused {
            park(ctx, c);
            return Ok(());
        }
        if c.eof {
            return Ok(());
        }
        match c.tls.reader().read(scratch) {
            Ok(0) => {
                // The peer's close_notify.
                return peer_end(ctx, c);
            }
            Ok(n) => {
                on_bytes(ctx, c, &scratch[..n])?;
                turn = turn.saturating_sub(n);
                if turn == 0 {
                    ctx.again.push(i);
                    return Ok(());
                }
                continue;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                return peer_end(ctx, c);
            }
            Err(e) => {
                log::debug!("{}: {e}", c.who());
                return Err(());
            }
        }
        if c.wire_at == c.wire_end {
            if c.sock_eof {
                return peer_end(ctx, c);
            }
            if short && SHORT_READ_DRAINS && !drain {
                return Ok(());
            }
            let mut buf = std::mem::take(&mut ctx.wire);
            if buf.is_empty() {
                // A paused connection kept the last one.
                buf = vec![0; WIRE_READ];
            }
            match c.sock.read(&mut buf) {
                Ok(0) => {
                    ctx.wire = buf;
                    c.sock_eof = true;
                    // Whatever TLS still holds is read, then the end.
                    continue;
                }
                Ok(n) => {
                    short = n < buf.len();
                    c.wire = buf;
                    c.wire_at = 0;
                    c.wire_end = n;
                }
                Err(e) => {
                    ctx.wire = buf;
                    match e.kind() {
                        io::ErrorKind::WouldBlock => return Ok(()),
                        io::ErrorKind::Interrupted => continue,
                        _ => {
                            log::debug!("{}: {e}", c.who());
                            return Err(());
                        }
                    }
                }
            }
        }
        let mut rest = &c.wire[c.wire_at..c.wire_end];
        match c.tls.read_tls(&mut rest) {
            Ok(n) => c.wire_at += n,
            Err(e) => {
                log::debug!("{}: {e}", c.who());
                return Err(());
            }
        }
        if c.wire_at == c.wire_end {
            // All handed to TLS: the buffer goes back to the loop (a
            // parked connection's copy is dropped).
            let wire = std::mem::take(&mut c.wire);
            if wire.len() == WIRE_READ {
                ctx.wire = wire;
            }
            c.wire_at = 0;
            c.wire_end = 0;
        }
        if let Err(e) = c.tls.process_new_packets() {
            log::debug!("{}: TLS: {e}", c.who());
            // Tell the peer why, if it listens.
            let _ = c.tls.write_tls(&mut c.sock);
            return Err(());
        }
    }
}

/// A requester's reading pauses: the loop's read buffer goes back to it, the
/// bytes not yet handed to TLS kept in one of their size, and what the
/// connection holds unread is counted in the requesters' budget, past its
/// limit if need be (they were read; closing the connection for them would
/// withdraw the jobs it has in flight): requests that do not fit are then
/// refused until it resumes. Without this a paused requester would keep a
/// whole read buffer outside the budget.
fn park(ctx: &mut Ctx, c: &mut Conn) {
    let left = c.wire_end - c.wire_at;
    if c.wire.len() == WIRE_READ {
        let rest = c.wire[c.wire_at..c.wire_end].to_vec();
        let wire = std::mem::replace(&mut c.wire, rest);
        if ctx.wire.is_empty() {
            ctx.wire = wire;
        }
        c.wire_at = 0;
        c.wire_end = left;
    }
    c.parked = None;
    let mut permit = ctx.shared.budget.permit();
    permit.grow_anyway(c.pending.len() + left);
    c.parked = Some(permit);
}

/// The peer's end of the connection came: `Err` to shut it now.
fn peer_end(ctx: &mut Ctx, c: &mut Conn) -> Result<(), ()> {
    c.eof = true;
    match &c.role {
        // Nothing was said: nothing to answer.
        Role::Unknown => return Err(()),
        Role::Provider { .. } => end_provider(ctx, c),
        // The answers are still written; the connection closes after the
        // last.
        Role::Requester(_) if !c.in_flight.is_empty() => {}
        _ => c.outbox.close(),
    }
    Ok(())
}

/// Closes the provider's session; what is queued for it is still written.
fn end_provider(ctx: &mut Ctx, c: &mut Conn) {
    if let Role::Provider { sid, .. } = c.role {
        ctx.shared.engine().session_closed(sid, Instant::now());
    }
    c.role = Role::ProviderGone;
    c.eof = true;
    c.outbox.close();
}

fn on_bytes(ctx: &mut Ctx, c: &mut Conn, data: &[u8]) -> Result<(), ()> {
    match c.role {
        Role::Unknown => {
            c.inbuf.extend_from_slice(data);
            if c.inbuf.len() < 2 {
                return Ok(());
            }
            let buf = std::mem::take(&mut c.inbuf);
            let magic = [buf[0], buf[1]];
            if magic == MAGIC {
                let sid = ctx.shared.engine().open_session(
                    c.outbox.clone(),
                    c.peer.to_string(),
                    c.accepted,
                    Instant::now(),
                );
                log::debug!("session {sid}: provider connection from {}", c.peer);
                c.role = Role::Provider { sid, first: true };
                provider_bytes(ctx, c, &buf);
                Ok(())
            } else if magic == REQUEST_MAGIC {
                c.role = Role::Requester(Req::Header);
                requester_bytes(ctx, c, &buf);
                Ok(())
            } else {
                log::info!(
                    "{}: speaks neither protocol (first bytes {magic:02x?})",
                    c.peer
                );
                Err(())
            }
        }
        Role::Provider { .. } => {
            provider_bytes(ctx, c, data);
            Ok(())
        }
        Role::ProviderGone => Ok(()),
        Role::Requester(_) => {
            requester_bytes(ctx, c, data);
            Ok(())
        }
    }
}

fn provider_bytes(ctx: &mut Ctx, c: &mut Conn, data: &[u8]) {
    let Role::Provider { sid, mut first } = c.role else {
        return;
    };
    c.inbuf.extend_from_slice(data);
    let mut at = 0;
    let mut end = false;
    while let Some(rest) = c.inbuf.get(at..).filter(|r| r.len() >= HEADER_LEN) {
        let header = match Header::decode(&rest[..HEADER_LEN]) {
            Ok(h) => h,
            Err(e) => {
                ctx.shared.engine().decode_error(sid, e);
                end = true;
                break;
            }
        };
        let len = header.frame_len();
        if len > MAX_FRAME {
            end = true;
            break;
        }
        let Some(frame) = rest.get(..len) else {
            break;
        };
        if first {
            // The rest of the handshake (Evidence, by the same deadline)
            // and silence afterwards are the engine's timers.
            first = false;
            c.deadline = None;
        }
        let now = Instant::now();
        match Message::decode(frame) {
            Ok(Message::OutputChunk(chunk)) => {
                // Hashed here, not under the engine's lock.
                let intact = leaf_hash(chunk.data) == chunk.digest;
                ctx.shared
                    .engine()
                    .on_output_chunk(sid, &chunk, intact, now);
            }
            Ok(msg) => ctx.shared.engine().on_message(sid, msg, now),
            Err(e) => {
                if ctx.shared.engine().decode_error(sid, e) {
                    end = true;
                    break;
                }
            }
        }
        at += len;
    }
    c.role = Role::Provider { sid, first };
    if end {
        c.inbuf = Vec::new();
        end_provider(ctx, c);
        return;
    }
    c.inbuf.drain(..at);
    if c.inbuf.is_empty() && c.inbuf.capacity() > 1024 {
        // An idle connection keeps no buffer.
        c.inbuf = Vec::new();
    }
}

fn requester_bytes(ctx: &mut Ctx, c: &mut Conn, mut data: &[u8]) {
    let shared = Arc::clone(&ctx.shared);
    let config = &shared.config;
    while !data.is_empty() {
        let Role::Requester(req) = &mut c.role else {
            return;
        };
        if matches!(req, Req::Header) && c.in_flight.len() >= MAX_IN_FLIGHT {
            // As many requests as it may have are in flight: the rest waits
            // (and the socket is not read) until the oldest is answered.
            c.pending.extend_from_slice(data);
            c.paused = true;
            return;
        }
        match req {
            Req::Header => {
                let take = (REQUEST_HEADER_LEN - c.inbuf.len()).min(data.len());
                c.inbuf.extend_from_slice(&data[..take]);
                data = &data[take..];
                let Ok(header) = <[u8; REQUEST_HEADER_LEN]>::try_from(&c.inbuf[..]) else {
                    continue;
                };
                c.inbuf = Vec::new();
                match parse_header(&header, config.max_request_body) {
                    Ok(len) => {
                        let rate = Duration::from_secs(len as u64 / config.min_request_rate);
                        let by = after(
                            Instant::now(),
                            config.handshake_timeout.saturating_add(rate),
                        );
                        c.deadline = Some((by, Due::Body));
                        *req = Req::Body {
                            len,
                            body: Vec::new(),
                            permit: ctx.shared.budget.permit(),
                            held: 0,
                        };
                        if len == 0 {
                            body_done(ctx, c);
                        }
                    }
                    Err(FrameError::TooLarge(n)) => {
                        ctx.shared
                            .counters
                            .requests_refused
                            .fetch_add(1, Ordering::Relaxed);
                        log::info!(
                            "requester {}: a body of {n} bytes is over the limit",
                            c.peer
                        );
                        let reason = format!(
                            "the request body of {n} bytes is over this coordinator's limit \
                             of {} bytes",
                            config.max_request_body
                        );
                        // Answered after the requests before it; nothing
                        // more is read.
                        let seq = begin_request(c);
                        stop_reading(c);
                        let answer = Answer {
                            response: failure(FailureCode::Invalid, reason),
                            hold: None,
                        };
                        on_answer(ctx, c, seq, answer);
                        return;
                    }
                    Err(e) => {
                        log::info!("requester {}: {e}", c.peer);
                        stop_reading(c);
                        return;
                    }
                }
            }
            Req::Body {
                len,
                body,
                permit,
                held,
            } => {
                if body.len() == *held {
                    let at = body.len();
                    let step = (*len - at).min(BODY_STEP);
                    if !permit.grow(step) {
                        *req = Req::Discard { left: *len - at };
                        continue;
                    }
                    *held += step;
                    if body.capacity() < *held {
                        // Doubling, capped at the body's length.
                        let want = body.capacity().saturating_mul(2).clamp(*held, *len);
                        body.reserve_exact(want - at);
                    }
                }
                let take = (*held - body.len()).min(data.len());
                body.extend_from_slice(&data[..take]);
                data = &data[take..];
                if body.len() == *len {
                    body_done(ctx, c);
                }
            }
            Req::Discard { left } => {
                let take = (*left).min(data.len());
                *left -= take;
                data = &data[take..];
                if *left == 0 {
                    ctx.shared
                        .counters
                        .requests_refused
                        .fetch_add(1, Ordering::Relaxed);
                    *req = Req::Header;
                    let seq = begin_request(c);
                    let reason = format!(
                        "the coordinator holds as many bytes as it may ({} in all); a request \
                         does not fit now, try again later",
                        config.max_buffered_bytes
                    );
                    let answer = Answer {
                        response: failure(FailureCode::Busy, reason),
                        hold: None,
                    };
                    on_answer(ctx, c, seq, answer);
                }
            }
            Req::Done => return,
        }
    }
}

/// Nothing more is read from the requester; the connection closes once the
/// requests in flight are answered.
fn stop_reading(c: &mut Conn) {
    c.role = Role::Requester(Req::Done);
    c.deadline = None;
    c.eof = true;
    if c.in_flight.is_empty() {
        c.outbox.close();
    }
}

/// Counts a new request in flight; its number.
fn begin_request(c: &mut Conn) -> u64 {
    c.seq += 1;
    c.in_flight.push_back(InFlight {
        seq: c.seq,
        job: None,
        due: None,
        answer: None,
    });
    // No idle deadline while the requester waits for answers.
    c.deadline = None;
    c.seq
}

/// The requester is gone: the jobs of its requests not yet answered are
/// withdrawn.
fn withdraw(ctx: &Ctx, c: &mut Conn) {
    for r in c.in_flight.drain(..) {
        if let (Some(id), None) = (r.job, &r.answer) {
            ctx.shared.engine().requester_gone(id, Instant::now());
        }
    }
}

/// A whole request body: prepared here when small, on the hashing thread
/// otherwise.
fn body_done(ctx: &mut Ctx, c: &mut Conn) {
    let Role::Requester(Req::Body { body, permit, .. }) =
        std::mem::replace(&mut c.role, Role::Requester(Req::Header))
    else {
        return;
    };
    let seq = begin_request(c);
    if submission::is_providers_request(&body) {
        let providers = ctx.shared.engine().sealed_providers();
        on_answer(
            ctx,
            c,
            seq,
            Answer {
                response: Response::Providers(providers),
                hold: None,
            },
        );
        return;
    }
    let readback = ctx.shared.budget.permit();
    if body.len() > INLINE_PREPARE {
        if let Some(jobs) = &ctx.jobs {
            let job = PrepareJob {
                index: c.outbox.token().0,
                gen: c.gen,
                seq,
                body,
                permit,
                readback,
            };
            match jobs.send(job) {
                Ok(()) => return,
                Err(mpsc::SendError(job)) => {
                    let result =
                        submission::prepare(job.body, job.permit, &ctx.limits, job.readback);
                    submit(ctx, c, seq, result);
                    return;
                }
            }
        }
    }
    let result = submission::prepare(body, permit, &ctx.limits, readback);
    submit(ctx, c, seq, result);
}

/// Hands prepared request `seq` to the engine, or answers its refusal.
fn submit(ctx: &mut Ctx, c: &mut Conn, seq: u64, result: Result<Prepared, Refusal>) {
    let answer = |response| Answer {
        response,
        hold: None,
    };
    match result {
        Ok(prepared) => {
            let config = &ctx.shared.config;
            let wait = Duration::from_millis(u64::from(prepared.offer.deadline_ms))
                .saturating_add(config.deadline_grace)
                .saturating_add(config.offer_timeout)
                .saturating_add(Duration::from_secs(5));
            let now = Instant::now();
            let reply = Reply::to_conn(c.outbox.clone(), seq);
            let job = ctx.shared.engine().submit(prepared, reply, now);
            if let Some(r) = c.in_flight.iter_mut().find(|r| r.seq == seq) {
                r.due = Some(after(now, wait));
                r.job = job;
            }
        }
        Err(Refusal::Invalid(reason)) => {
            ctx.shared.engine().count_refused_submission();
            on_answer(ctx, c, seq, answer(failure(FailureCode::Invalid, reason)));
        }
        Err(Refusal::Busy(reason)) => {
            ctx.shared
                .counters
                .requests_refused
                .fetch_add(1, Ordering::Relaxed);
            on_answer(ctx, c, seq, answer(failure(FailureCode::Busy, reason)));
        }
    }
}

/// Queues a response as frame parts; `false` if it cannot be encoded (then
/// a failure saying so is queued instead).
fn send_response(c: &mut Conn, response: Response, hold: Option<Permit>) -> bool {
    match response_parts(response) {
        Ok(parts) => {
            c.outbox.send_answer_parts(parts, hold);
            true
        }
        Err(e) => {
            log::error!("cannot encode the response for {}: {e}", c.peer);
            // Say so rather than leave the requester waiting.
            if let Ok(frame) = encode_frame(&failure(
                FailureCode::Invalid,
                format!("the coordinator cannot encode the result: {e}"),
            )) {
                c.outbox.send(frame);
            }
            false
        }
    }
}

/// The engine's (or a refusal's) answer to request `seq`: written at once
/// when every earlier request has been answered, otherwise held until then.
fn on_answer(ctx: &mut Ctx, c: &mut Conn, seq: u64, answer: Answer) {
    let Some(r) = c.in_flight.iter_mut().find(|r| r.seq == seq) else {
        // Late, after the guard answered for it, or the connection ended.
        return;
    };
    if r.answer.is_some() {
        return;
    }
    r.answer = Some(answer);
    while let Some(answer) = c.in_flight.front_mut().and_then(|r| r.answer.take()) {
        c.in_flight.pop_front();
        if !send_response(c, answer.response, answer.hold) {
            withdraw(ctx, c);
            stop_reading(c);
            return;
        }
    }
    if !c.in_flight.is_empty() {
        if c.paused && c.in_flight.len() < MAX_IN_FLIGHT {
            c.paused = false;
            ctx.again.push(c.outbox.token().0);
        }
        return;
    }
    if c.eof {
        stop_reading(c);
        return;
    }
    if matches!(c.role, Role::Requester(Req::Header)) {
        c.deadline = Some((
            after(Instant::now(), ctx.shared.config.requester_idle),
            Due::Idle,
        ));
    }
    if c.paused || !c.pending.is_empty() {
        c.paused = false;
        ctx.again.push(c.outbox.token().0);
    }
}

/// Writes what the connection has queued, as far as the socket takes it.
/// `Ok(true)` once a close is complete (the connection is to be removed),
/// `Err` when it is to be shut now.
fn flush(ctx: &mut Ctx, c: &mut Conn) -> Result<bool, ()> {
    let mut progress = false;
    let mut blocked = false;
    let mut written = 0usize;
    loop {
        // Frames first, as many as TLS takes (up to FEED_BATCH), then one
        // write: a burst (an assignment and its input chunks, a result)
        // leaves in as few segments as it fits, and wakes the peer once
        // rather than once a frame.
        if !c.tls.is_handshaking() {
            let mut fed = 0;
            while fed < FEED_BATCH {
                if !feed(ctx, c)? {
                    break;
                }
                fed += 1;
                if c.writing.is_some() || c.closing {
                    // TLS holds all it may, or the close is queued.
                    break;
                }
            }
        }
        while c.tls.wants_write() {
            match c.tls.write_tls(&mut c.sock) {
                Ok(n) => {
                    progress = true;
                    written = written.saturating_add(n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    blocked = true;
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    log::debug!("{}: write: {e}", c.who());
                    return Err(());
                }
            }
        }
        if blocked || c.tls.is_handshaking() {
            if c.outbox.aborted() {
                return Err(());
            }
            break;
        }
        if written >= WRITE_TURN {
            // The others get a turn; this connection goes on after them.
            ctx.again.push(c.outbox.token().0);
            break;
        }
        if !has_more(c) {
            break;
        }
    }
    if blocked {
        if progress || c.stall.is_none() {
            c.stall = Some(Instant::now());
        }
    } else {
        c.stall = None;
    }
    Ok(c.closing && !c.tls.wants_write() && c.writing.is_none())
}

/// Whether the connection has more to hand to TLS (without taking it).
fn has_more(c: &Conn) -> bool {
    c.writing.is_some() || c.inputs.is_some() || (!c.closing && !c.outbox.is_empty())
}

/// Hands the next plaintext to TLS; `false` when there is none.
fn feed(ctx: &mut Ctx, c: &mut Conn) -> Result<bool, ()> {
    if c.writing.is_none() {
        if c.closing {
            return Ok(false);
        }
        if let Some(inputs) = &mut c.inputs {
            let mut frame = Vec::new();
            match inputs.next_frame(&mut frame) {
                Some(n) => {
                    frame.truncate(n);
                    c.writing = Some(Writing {
                        parts: vec![frame],
                        part: 0,
                        at: 0,
                        counted: 0,
                        hold: None,
                    });
                }
                None => c.inputs = None,
            }
        }
    }
    if c.writing.is_none() {
        if c.inputs.is_some() {
            return Ok(true);
        }
        match c.outbox.next()? {
            None => return Ok(false),
            Some(WriteCmd::Frame { parts, len, hold }) => {
                c.writing = Some(Writing {
                    parts,
                    part: 0,
                    at: 0,
                    counted: len,
                    hold,
                });
            }
            Some(WriteCmd::Inputs(inputs)) => {
                c.inputs = Some(inputs);
                return Ok(true);
            }
            Some(WriteCmd::Answer { seq, answer }) => {
                on_answer(ctx, c, seq, answer);
                return Ok(true);
            }
            Some(WriteCmd::Close) => {
                c.closing = true;
                c.eof = true;
                c.tls.send_close_notify();
                return Ok(true);
            }
        }
    }
    let Some(w) = &mut c.writing else {
        return Ok(true);
    };
    while let Some(part) = w.parts.get(w.part) {
        if w.at >= part.len() {
            w.part += 1;
            w.at = 0;
            continue;
        }
        let n = match c.tls.writer().write(&part[w.at..]) {
            Ok(n) => n,
            Err(e) => {
                log::debug!("{}: {e}", c.who());
                return Err(());
            }
        };
        if n == 0 {
            if !c.tls.wants_write() {
                log::error!("{}: TLS takes no more and has nothing to send", c.who());
                return Err(());
            }
            // TLS holds all it may: send it first.
            return Ok(true);
        }
        w.at += n;
    }
    if let Some(w) = c.writing.take() {
        c.outbox.written(w.counted);
        drop(w.hold);
    }
    Ok(true)
}
