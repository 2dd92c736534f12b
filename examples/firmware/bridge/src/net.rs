//! The TLS connection to the coordinator. The firmware's protocol bytes
//! pass through it unchanged; the bridge opens and closes it when the
//! firmware says so.

use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::Duration;

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection};

use crate::Inbox;

/// How long opening the TCP connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the TLS handshake may take, and any one write.
const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the coordinator is and how it is trusted.
pub struct Coordinator {
    /// `host:port`.
    pub address: String,
    /// The name its certificate must carry.
    pub server_name: ServerName<'static>,
    /// TLS 1.3, trusting a CA or a pinned key (`tessera_core::net::client_config`).
    pub tls: Arc<ClientConfig>,
}

/// An open TLS session to the coordinator. A thread reads from it and
/// posts what arrives to the bridge's inbox, tagged with `generation`.
pub struct Connection {
    tls: Arc<Mutex<ClientConnection>>,
    sock: TcpStream,
    /// Which connection this is; an inbox message of an older one is stale.
    pub generation: u64,
}

fn lock(tls: &Mutex<ClientConnection>) -> MutexGuard<'_, ClientConnection> {
    // A thread that panicked holding the lock left a session that can
    // still be closed; nothing else reads it.
    tls.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Coordinator {
    /// Opens TCP and completes the TLS handshake, then starts the thread
    /// that reads from the coordinator.
    pub fn connect(&self, generation: u64, inbox: Sender<Inbox>) -> Result<Connection, String> {
        let addrs = self
            .address
            .to_socket_addrs()
            .map_err(|e| format!("cannot resolve {}: {e}", self.address))?;
        let mut last = format!("{} resolves to no address", self.address);
        let mut sock = None;
        for addr in addrs {
            match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
                Ok(s) => {
                    sock = Some(s);
                    break;
                }
                Err(e) => last = format!("cannot connect to {addr}: {e}"),
            }
        }
        let mut sock = sock.ok_or(last)?;
        let setup = |s: &TcpStream| -> io::Result<()> {
            s.set_nodelay(true)?;
            s.set_read_timeout(Some(IO_TIMEOUT))?;
            s.set_write_timeout(Some(IO_TIMEOUT))
        };
        setup(&sock).map_err(|e| format!("socket: {e}"))?;
        let mut tls = ClientConnection::new(self.tls.clone(), self.server_name.clone())
            .map_err(|e| format!("TLS: {e}"))?;
        while tls.is_handshaking() {
            tls.complete_io(&mut sock)
                .map_err(|e| format!("TLS handshake with {}: {e}", self.address))?;
        }
        sock.set_read_timeout(None)
            .map_err(|e| format!("socket: {e}"))?;
        let tls = Arc::new(Mutex::new(tls));
        let reader = sock.try_clone().map_err(|e| format!("socket: {e}"))?;
        let writer = sock.try_clone().map_err(|e| format!("socket: {e}"))?;
        let shared = tls.clone();
        thread::Builder::new()
            .name("coordinator-reader".into())
            .spawn(move || {
                let why = read_loop(reader, writer, &shared, &inbox, generation);
                let _ = inbox.send(Inbox::LinkDown { generation, why });
            })
            .map_err(|e| format!("cannot start the reader thread: {e}"))?;
        Ok(Connection {
            tls,
            sock,
            generation,
        })
    }
}

impl Connection {
    /// Sends protocol bytes to the coordinator.
    pub fn send(&mut self, bytes: &[u8]) -> Result<(), String> {
        let mut tls = lock(&self.tls);
        tls.writer()
            .write_all(bytes)
            .map_err(|e| format!("TLS: {e}"))?;
        while tls.wants_write() {
            tls.write_tls(&mut self.sock)
                .map_err(|e| format!("send to the coordinator: {e}"))?;
        }
        Ok(())
    }

    /// Says goodbye at the TLS level and closes the socket; the reader
    /// thread then ends.
    pub fn close(mut self) {
        {
            let mut tls = lock(&self.tls);
            tls.send_close_notify();
            while tls.wants_write() {
                if tls.write_tls(&mut self.sock).is_err() {
                    break;
                }
            }
        }
        let _ = self.sock.shutdown(std::net::Shutdown::Both);
    }
}

/// Reads from the coordinator until the connection ends; returns why.
fn read_loop(
    mut sock: TcpStream,
    mut writer: TcpStream,
    tls: &Mutex<ClientConnection>,
    inbox: &Sender<Inbox>,
    generation: u64,
) -> String {
    let mut buf = vec![0u8; 64 << 10];
    let mut plain = vec![0u8; 64 << 10];
    loop {
        let n = match sock.read(&mut buf) {
            Ok(0) => return "the coordinator closed the connection".into(),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return format!("receive from the coordinator: {e}"),
        };
        let mut received = Vec::new();
        let mut closed = false;
        {
            let mut tls = lock(tls);
            let mut input = &buf[..n];
            while !input.is_empty() {
                if let Err(e) = tls.read_tls(&mut input) {
                    return format!("TLS: {e}");
                }
                if let Err(e) = tls.process_new_packets() {
                    // Tell the coordinator why (an alert), then give up.
                    let _ = tls.write_tls(&mut writer);
                    return format!("TLS: {e}");
                }
                loop {
                    match tls.reader().read(&mut plain) {
                        Ok(0) => {
                            closed = true;
                            break;
                        }
                        Ok(k) => received.extend_from_slice(&plain[..k]),
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) => return format!("TLS: {e}"),
                    }
                }
            }
            while tls.wants_write() {
                if let Err(e) = tls.write_tls(&mut writer) {
                    return format!("send to the coordinator: {e}");
                }
            }
        }
        if !received.is_empty()
            && inbox
                .send(Inbox::FromCoordinator {
                    generation,
                    bytes: received,
                })
                .is_err()
        {
            return "the bridge stopped".into();
        }
        if closed {
            return "the coordinator ended the TLS session".into();
        }
    }
}
