//! A server-side TLS connection split into a blocking reader and a writer
//! thread, so that any thread may queue frames for a peer while its own
//! thread blocks reading.
//!
//! Only the writer thread writes to the socket; the reader asks it to flush
//! whatever TLS records rustls wants sent (alerts, key updates). Neither holds
//! the rustls lock during socket I/O, so a peer that writes while we write
//! never deadlocks the pair.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::Duration;

use rustls::ServerConnection;

pub(crate) enum WriteCmd {
    Frame(Vec<u8>),
    Flush,
    Close,
}

/// Queues frames for one peer; cheap to clone. Writes happen on the
/// connection's writer thread, in the order queued.
#[derive(Clone)]
pub(crate) struct Outbox {
    tx: Sender<WriteCmd>,
}

impl Outbox {
    /// Queues a frame. A closed connection drops it silently: the reader sees
    /// the end of the connection and reports it.
    pub(crate) fn send(&self, frame: Vec<u8>) {
        let _ = self.tx.send(WriteCmd::Frame(frame));
    }

    /// Sends what is queued, then a TLS close_notify, then shuts the socket.
    pub(crate) fn close(&self) {
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

/// The reading half: plaintext bytes from the peer.
pub(crate) struct TlsReader {
    conn: Arc<Mutex<ServerConnection>>,
    sock: TcpStream,
    outbox: Outbox,
    raw: Vec<u8>,
    raw_pos: usize,
}

/// Completes the TLS handshake on `sock` (blocking, bounded by `timeout`) and
/// splits the connection. Returns the reader and the outbox.
pub(crate) fn accept(
    mut conn: ServerConnection,
    mut sock: TcpStream,
    timeout: Duration,
) -> io::Result<(TlsReader, Outbox)> {
    sock.set_read_timeout(Some(timeout))?;
    sock.set_write_timeout(Some(timeout))?;
    sock.set_nodelay(true)?;
    while conn.is_handshaking() {
        conn.complete_io(&mut sock)?;
    }
    while conn.wants_write() {
        conn.write_tls(&mut sock)?;
    }
    // Writes that stall this long end the connection: a peer that stops
    // reading cannot hold a writer thread forever. Reads are bounded by the
    // caller (`TlsReader::set_read_timeout`).
    let write_sock = sock.try_clone()?;
    let conn = Arc::new(Mutex::new(conn));
    let (tx, rx) = mpsc::channel();
    let outbox = Outbox { tx };
    let writer_conn = Arc::clone(&conn);
    thread::Builder::new()
        .name("tessera-writer".into())
        .spawn(move || write_loop(writer_conn, write_sock, rx))?;
    Ok((
        TlsReader {
            conn,
            sock,
            outbox: outbox.clone(),
            raw: Vec::new(),
            raw_pos: 0,
        },
        outbox,
    ))
}

fn write_loop(conn: Arc<Mutex<ServerConnection>>, mut sock: TcpStream, rx: Receiver<WriteCmd>) {
    let mut out = Vec::new();
    'commands: while let Ok(cmd) = rx.recv() {
        let (frame, closing) = match cmd {
            WriteCmd::Frame(frame) => (frame, false),
            WriteCmd::Flush => (Vec::new(), false),
            WriteCmd::Close => (Vec::new(), true),
        };
        // rustls takes plaintext up to its buffer limit at a time, so a large
        // frame goes through in pieces, each sent before the next is taken.
        let mut at = 0;
        loop {
            {
                let mut c = lock(&conn);
                if at < frame.len() {
                    match c.writer().write(&frame[at..]) {
                        Ok(n) => at += n,
                        Err(e) => {
                            log::debug!("TLS refused plaintext: {e}");
                            break 'commands;
                        }
                    }
                } else if closing {
                    c.send_close_notify();
                }
                while c.wants_write() {
                    if c.write_tls(&mut out).is_err() {
                        break;
                    }
                }
            }
            if !out.is_empty() {
                if let Err(e) = sock.write_all(&out) {
                    log::debug!("write to peer failed: {e}");
                    break 'commands;
                }
                out.clear();
            }
            if at >= frame.len() {
                break;
            }
        }
        if closing {
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
            let n = self.sock.read(&mut tmp)?;
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

    /// Bounds every blocking read (`None`: wait for ever; timers elsewhere
    /// close idle connections).
    pub(crate) fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.sock.set_read_timeout(timeout)
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
    (Outbox { tx }, rx)
}

/// The frames queued on a test outbox so far.
#[cfg(test)]
pub(crate) fn queued_frames(rx: &Receiver<WriteCmd>) -> Vec<Vec<u8>> {
    rx.try_iter()
        .filter_map(|c| match c {
            WriteCmd::Frame(f) => Some(f),
            _ => None,
        })
        .collect()
}
