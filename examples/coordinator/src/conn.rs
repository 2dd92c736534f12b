//! A server-side TLS connection split into a blocking reader and a writer
//! thread, so that any thread may queue frames for a peer while its own
//! thread blocks reading.
//!
//! Only the writer thread writes to the socket; the reader asks it to flush
//! whatever TLS records rustls wants sent (alerts, key updates). Neither holds
//! the rustls lock during socket I/O, so a peer that writes while we write
//! never deadlocks the pair.
//!
//! Nothing here waits without a bound: the TLS handshake has one deadline for
//! all of it (not a timeout per read), reads may be given a deadline
//! ([`TlsReader::set_deadline`]), a write that makes no progress for the
//! write timeout ends the connection, and the bytes queued for a peer are
//! capped: a peer that does not read is disconnected rather than buffered
//! for ([`Outbox::send`]).

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use rustls::ServerConnection;

use crate::budget::Permit;
use crate::submission::InputStream;

pub(crate) enum WriteCmd {
    /// A frame, in one or more parts written back to back; the permit, if
    /// any, is released once it is written.
    Frame {
        parts: Vec<Vec<u8>>,
        len: usize,
        hold: Option<Permit>,
    },
    /// A job's input chunks, framed one at a time as the peer reads them.
    Inputs(InputStream),
    Flush,
    Close,
}

/// How much a connection may queue and how long a write may stall.
#[derive(Clone, Debug)]
pub(crate) struct WriteLimits {
    /// Bytes queued for the peer beyond the frame being written.
    pub max_queued: usize,
    /// A write that makes no progress this long ends the connection.
    pub write_timeout: Duration,
    /// Counts connections ended because their queue was full.
    pub overflows: Arc<AtomicU64>,
}

struct OutboxState {
    /// Bytes of frames queued and not yet written to the socket.
    queued: AtomicUsize,
    aborted: AtomicBool,
    max_queued: usize,
    overflows: Arc<AtomicU64>,
    /// For [`Outbox::abort`]; none for a test outbox.
    sock: Option<TcpStream>,
}

/// Queues frames for one peer; cheap to clone. Writes happen on the
/// connection's writer thread, in the order queued.
#[derive(Clone)]
pub(crate) struct Outbox {
    tx: Sender<WriteCmd>,
    state: Arc<OutboxState>,
}

impl Outbox {
    /// Queues a frame. A closed connection drops it silently: the reader sees
    /// the end of the connection and reports it. A peer with more than the
    /// cap already queued is disconnected instead.
    pub(crate) fn send(&self, frame: Vec<u8>) {
        self.send_parts(vec![frame], None);
    }

    /// Queues a frame made of `parts`, holding `hold` until it is written.
    pub(crate) fn send_parts(&self, parts: Vec<Vec<u8>>, hold: Option<Permit>) {
        let len = parts.iter().fold(0usize, |n, p| n.saturating_add(p.len()));
        let before = self.state.queued.fetch_add(len, Ordering::SeqCst);
        // A frame is always taken when nothing waits, however large (a
        // requester's result); the cap is on what piles up unwritten.
        if before > 0 && before.saturating_add(len) > self.state.max_queued {
            self.state.queued.fetch_sub(len, Ordering::SeqCst);
            if !self.state.aborted.load(Ordering::SeqCst) {
                log::warn!(
                    "peer does not read: {before} bytes queued, the cap is {}; disconnecting",
                    self.state.max_queued
                );
                self.state.overflows.fetch_add(1, Ordering::Relaxed);
            }
            self.abort();
            return;
        }
        if self.tx.send(WriteCmd::Frame { parts, len, hold }).is_err() {
            self.state.queued.fetch_sub(len, Ordering::SeqCst);
        }
    }

    /// Queues a job's input chunks, framed as the peer reads them.
    pub(crate) fn send_inputs(&self, inputs: InputStream) {
        let _ = self.tx.send(WriteCmd::Inputs(inputs));
    }

    /// Sends what is queued, then a TLS close_notify, then shuts the socket.
    pub(crate) fn close(&self) {
        let _ = self.tx.send(WriteCmd::Close);
    }

    /// Shuts the socket now, whatever is queued: both threads of the
    /// connection see it end.
    pub(crate) fn abort(&self) {
        self.state.aborted.store(true, Ordering::SeqCst);
        if let Some(sock) = &self.state.sock {
            let _ = sock.shutdown(Shutdown::Both);
        }
        let _ = self.tx.send(WriteCmd::Close);
    }

    fn flush(&self) {
        let _ = self.tx.send(WriteCmd::Flush);
    }
}

fn lock(conn: &Mutex<ServerConnection>) -> MutexGuard<'_, ServerConnection> {
    // A panic elsewhere never leaves the rustls state half-updated in a way
    // that matters more than the connection ending: keep going.
    conn.lock().unwrap_or_else(|p| p.into_inner())
}

/// Time left until `deadline`, or a `TimedOut` error once it has passed.
fn left(deadline: Instant, what: &str) -> io::Result<Duration> {
    deadline
        .checked_duration_since(Instant::now())
        .filter(|d| !d.is_zero())
        .ok_or_else(|| io::Error::new(io::ErrorKind::TimedOut, format!("{what} deadline passed")))
}

/// A socket timeout is the deadline passing.
fn deadline_error(e: io::Error, what: &str) -> io::Error {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
            io::Error::new(io::ErrorKind::TimedOut, format!("{what} deadline passed"))
        }
        _ => e,
    }
}

/// Completes the TLS handshake on `sock` by `deadline` (all of it, however
/// the peer spreads its bytes).
fn handshake(
    conn: &mut ServerConnection,
    sock: &mut TcpStream,
    deadline: Instant,
) -> io::Result<()> {
    loop {
        while conn.wants_write() {
            sock.set_write_timeout(Some(left(deadline, "handshake")?))?;
            conn.write_tls(sock)
                .map_err(|e| deadline_error(e, "handshake"))?;
        }
        if !conn.is_handshaking() {
            return Ok(());
        }
        sock.set_read_timeout(Some(left(deadline, "handshake")?))?;
        match conn.read_tls(sock) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(_) => {}
            Err(e) => return Err(deadline_error(e, "handshake")),
        }
        if let Err(e) = conn.process_new_packets() {
            // Tell the peer why, if it listens.
            if sock
                .set_write_timeout(Some(Duration::from_millis(100)))
                .is_ok()
            {
                let _ = conn.write_tls(sock);
            }
            return Err(io::Error::new(io::ErrorKind::InvalidData, e));
        }
    }
}

/// The reading half: plaintext bytes from the peer.
pub(crate) struct TlsReader {
    conn: Arc<Mutex<ServerConnection>>,
    sock: TcpStream,
    outbox: Outbox,
    raw: Vec<u8>,
    raw_pos: usize,
    deadline: Option<Instant>,
}

/// Completes the TLS handshake on `sock` by `deadline` and splits the
/// connection. Returns the reader and the outbox; `keep` lives as long as
/// the writer thread (a connection slot).
pub(crate) fn accept(
    mut conn: ServerConnection,
    mut sock: TcpStream,
    deadline: Instant,
    limits: WriteLimits,
    keep: Box<dyn Send>,
) -> io::Result<(TlsReader, Outbox)> {
    sock.set_nodelay(true)?;
    handshake(&mut conn, &mut sock, deadline)?;
    // Writes that stall this long end the connection: a peer that stops
    // reading cannot hold a writer thread forever. Reads are bounded by the
    // caller (`TlsReader::set_deadline`) or the engine's timers.
    sock.set_write_timeout(Some(limits.write_timeout))?;
    let write_sock = sock.try_clone()?;
    let abort_sock = sock.try_clone()?;
    let conn = Arc::new(Mutex::new(conn));
    let (tx, rx) = mpsc::channel();
    let state = Arc::new(OutboxState {
        queued: AtomicUsize::new(0),
        aborted: AtomicBool::new(false),
        max_queued: limits.max_queued,
        overflows: limits.overflows,
        sock: Some(abort_sock),
    });
    let outbox = Outbox {
        tx,
        state: Arc::clone(&state),
    };
    let writer_conn = Arc::clone(&conn);
    thread::Builder::new()
        .name("tessera-writer".into())
        .spawn(move || {
            write_loop(writer_conn, write_sock, rx, &state);
            drop(keep);
        })?;
    Ok((
        TlsReader {
            conn,
            sock,
            outbox: outbox.clone(),
            raw: Vec::new(),
            raw_pos: 0,
            deadline: None,
        },
        outbox,
    ))
}

/// Hands `data` to rustls and its records to the socket, in pieces of what
/// rustls buffers at a time; with `closing`, a close_notify after it.
fn write_plaintext(
    conn: &Mutex<ServerConnection>,
    sock: &mut TcpStream,
    out: &mut Vec<u8>,
    data: &[u8],
    closing: bool,
) -> io::Result<()> {
    let mut at = 0;
    loop {
        {
            let mut c = lock(conn);
            if at < data.len() {
                at += c.writer().write(&data[at..])?;
            } else if closing {
                c.send_close_notify();
            }
            while c.wants_write() {
                if c.write_tls(out).is_err() {
                    break;
                }
            }
        }
        if !out.is_empty() {
            sock.write_all(out)?;
            out.clear();
        }
        if at >= data.len() {
            return Ok(());
        }
    }
}

fn write_loop(
    conn: Arc<Mutex<ServerConnection>>,
    mut sock: TcpStream,
    rx: Receiver<WriteCmd>,
    state: &OutboxState,
) {
    let mut out = Vec::new();
    let mut frame = Vec::new();
    'commands: while let Ok(cmd) = rx.recv() {
        let result = match cmd {
            WriteCmd::Frame { parts, len, hold } => {
                let mut result = Ok(());
                for part in &parts {
                    result = write_plaintext(&conn, &mut sock, &mut out, part, false);
                    if result.is_err() {
                        break;
                    }
                }
                state.queued.fetch_sub(len, Ordering::SeqCst);
                drop(hold);
                result
            }
            WriteCmd::Inputs(mut inputs) => {
                let mut result = Ok(());
                while let Some(n) = inputs.next_frame(&mut frame) {
                    result = write_plaintext(&conn, &mut sock, &mut out, &frame[..n], false);
                    if result.is_err() {
                        break;
                    }
                }
                result
            }
            WriteCmd::Flush => write_plaintext(&conn, &mut sock, &mut out, &[], false),
            WriteCmd::Close => {
                let _ = write_plaintext(&conn, &mut sock, &mut out, &[], true);
                break 'commands;
            }
        };
        if let Err(e) = result {
            log::debug!("write to peer failed: {e}");
            break;
        }
    }
    // Ends the reader too, which reports the connection closed.
    let _ = sock.shutdown(Shutdown::Both);
}

impl TlsReader {
    /// Reads plaintext; `Ok(0)` at the end of the connection.
    pub(crate) fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut tmp = [0u8; 16 * 1024];
        loop {
            {
                let mut c = lock(&self.conn);
                match c.reader().read(buf) {
                    Ok(n) => return Ok(n),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e),
                }
                if self.raw_pos < self.raw.len() {
                    let mut slice = &self.raw[self.raw_pos..];
                    let n = c.read_tls(&mut slice)?;
                    self.raw_pos += n;
                    let processed = c.process_new_packets();
                    let wants_write = c.wants_write();
                    drop(c);
                    if wants_write {
                        self.outbox.flush();
                    }
                    if let Err(e) = processed {
                        return Err(io::Error::new(io::ErrorKind::InvalidData, e));
                    }
                    continue;
                }
            }
            self.raw.clear();
            self.raw_pos = 0;
            if let Some(deadline) = self.deadline {
                self.sock.set_read_timeout(Some(left(deadline, "read")?))?;
            }
            let n = self
                .sock
                .read(&mut tmp)
                .map_err(|e| deadline_error(e, "read"))?;
            if n == 0 {
                return Ok(0);
            }
            self.raw.extend_from_slice(&tmp[..n]);
        }
    }

    /// Reads exactly `buf.len()` bytes; `Ok(false)` at a clean end of the
    /// connection before the first byte.
    pub(crate) fn read_exact_or_eof(&mut self, buf: &mut [u8]) -> io::Result<bool> {
        let mut at = 0;
        while at < buf.len() {
            let n = self.read(&mut buf[at..])?;
            if n == 0 {
                if at == 0 {
                    return Ok(false);
                }
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            at += n;
        }
        Ok(true)
    }

    /// Bounds every read until `deadline`, all of them together, with an
    /// error of kind `TimedOut` once it passes (`None`: reads wait for ever;
    /// timers elsewhere close idle connections).
    pub(crate) fn set_deadline(&mut self, deadline: Option<Instant>) -> io::Result<()> {
        self.deadline = deadline;
        if deadline.is_none() {
            self.sock.set_read_timeout(None)?;
        }
        Ok(())
    }

    /// The peer's address, for logs.
    pub(crate) fn peer(&self) -> String {
        self.sock
            .peer_addr()
            .map(|a| a.to_string())
            .unwrap_or_else(|_| "unknown peer".into())
    }
}

/// An outbox whose frames a test reads back instead of a socket.
#[cfg(test)]
pub(crate) fn test_outbox() -> (Outbox, Receiver<WriteCmd>) {
    let (tx, rx) = mpsc::channel();
    let state = Arc::new(OutboxState {
        queued: AtomicUsize::new(0),
        aborted: AtomicBool::new(false),
        max_queued: usize::MAX,
        overflows: Arc::new(AtomicU64::new(0)),
        sock: None,
    });
    (Outbox { tx, state }, rx)
}

/// The frames queued on a test outbox so far, input chunks framed.
#[cfg(test)]
pub(crate) fn queued_frames(rx: &Receiver<WriteCmd>) -> Vec<Vec<u8>> {
    let mut frames = Vec::new();
    for cmd in rx.try_iter() {
        match cmd {
            WriteCmd::Frame { parts, .. } => frames.push(parts.concat()),
            WriteCmd::Inputs(mut inputs) => {
                let mut buf = Vec::new();
                while let Some(n) = inputs.next_frame(&mut buf) {
                    frames.push(buf[..n].to_vec());
                }
            }
            WriteCmd::Flush | WriteCmd::Close => {}
        }
    }
    frames
}

#[cfg(test)]
mod tests {
    use super::*;

    fn capped(max_queued: usize) -> (Outbox, Receiver<WriteCmd>, Arc<AtomicU64>) {
        let (tx, rx) = mpsc::channel();
        let overflows = Arc::new(AtomicU64::new(0));
        let state = Arc::new(OutboxState {
            queued: AtomicUsize::new(0),
            aborted: AtomicBool::new(false),
            max_queued,
            overflows: Arc::clone(&overflows),
            sock: None,
        });
        (Outbox { tx, state }, rx, overflows)
    }

    #[test]
    fn a_peer_that_does_not_read_is_cut_off_at_the_cap() {
        // Nothing is written in this test: the queue only grows.
        let (outbox, rx, overflows) = capped(1000);
        outbox.send(vec![0; 600]);
        outbox.send(vec![0; 400]);
        assert_eq!(overflows.load(Ordering::SeqCst), 0);
        outbox.send(vec![0; 1]);
        assert_eq!(overflows.load(Ordering::SeqCst), 1);
        let cmds: Vec<WriteCmd> = rx.try_iter().collect();
        assert_eq!(cmds.len(), 3, "two frames, then the close");
        assert!(matches!(cmds[2], WriteCmd::Close));

        // One frame larger than the cap is taken when nothing waits.
        let (outbox, rx, overflows) = capped(1000);
        outbox.send(vec![0; 5000]);
        assert_eq!(overflows.load(Ordering::SeqCst), 0);
        outbox.send(vec![0; 1]);
        assert_eq!(overflows.load(Ordering::SeqCst), 1);
        assert_eq!(rx.try_iter().count(), 2);
    }
}
