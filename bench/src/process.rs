//! The reference coordinator as a child process of a benchmark, and the JSON
//! line every benchmark prints.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::thread;
use std::time::{Duration, Instant};

/// Prints one JSON line: `{"name": .., "value": .., "unit": .., "peers": {..}}`.
pub fn line(name: &str, value: f64, unit: &str, peers: &[(&str, f64)]) {
    let peers: Vec<String> = peers
        .iter()
        .map(|(k, v)| format!("\"{k}\": {v:.1}"))
        .collect();
    println!(
        "{{\"name\": \"{name}\", \"value\": {value:.1}, \"unit\": \"{unit}\", \"peers\": {{{}}}}}",
        peers.join(", ")
    );
}

/// Reports why the benchmark cannot go on, and exits; coordinators it
/// started are stopped first (exiting runs no destructor, and one left
/// running would weigh on every benchmark after it).
pub fn fail(what: &str, e: impl std::fmt::Display) -> ! {
    eprintln!("e2e bench: {what}: {e}");
    let running = std::mem::take(&mut *started());
    for pid in running {
        if let Ok(pid) = libc::pid_t::try_from(pid) {
            // SAFETY: kill(2) with a pid this process spawned and has not
            // reaped (a reaped one left the list when it was dropped).
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
    }
    std::process::exit(1);
}

/// Coordinator processes started and not yet stopped.
fn started() -> std::sync::MutexGuard<'static, Vec<u32>> {
    static STARTED: std::sync::Mutex<Vec<u32>> = std::sync::Mutex::new(Vec::new());
    STARTED.lock().unwrap_or_else(|e| e.into_inner())
}

/// The coordinator as its own process, so its memory can be read.
pub struct CoordinatorProcess {
    /// The process.
    pub child: Child,
    /// The address it listens on.
    pub addr: SocketAddr,
    /// Connected providers, from each status line when started with one.
    connected: Option<Receiver<usize>>,
}

/// The count of connected providers in a status line of the coordinator
/// ("... N provider(s) connected of M known; ...").
fn connected_in_status(line: &str) -> Option<usize> {
    let (before, _) = line.split_once(" provider(s) connected of ")?;
    before.rsplit(' ').next()?.parse().ok()
}

impl CoordinatorProcess {
    /// Starts the coordinator; with `status_ms`, it logs a status line that
    /// often and `connected` receives each line's count.
    /// `extra` are further flags.
    pub fn start(
        exe: &str,
        certs: &std::path::Path,
        status_ms: Option<u32>,
        extra: &[String],
    ) -> CoordinatorProcess {
        let mut command = Command::new(exe);
        command
            .args(["--listen", "127.0.0.1:0", "--certs"])
            .arg(certs)
            .args(extra)
            .stdout(Stdio::piped());
        match status_ms {
            Some(ms) => command
                .args(["--status-ms", &ms.to_string()])
                .env("RUST_LOG", "error,tessera_coordinator=info")
                .stderr(Stdio::piped()),
            None => command.env("RUST_LOG", "error").stderr(Stdio::null()),
        };
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| fail(&format!("starting {exe}"), e));
        started().push(child.id());
        let connected = child.stderr.take().map(|err| {
            let (tx, rx) = channel();
            // Reads every line, so the coordinator never blocks on its log.
            thread::spawn(move || {
                let mut lines = BufReader::new(err);
                let mut l = String::new();
                while lines.read_line(&mut l).map(|n| n > 0).unwrap_or(false) {
                    if let Some(n) = connected_in_status(&l) {
                        let _ = tx.send(n);
                    }
                    l.clear();
                }
            });
            rx
        });
        let out = child
            .stdout
            .take()
            .unwrap_or_else(|| fail("coordinator", "no stdout"));
        let mut lines = BufReader::new(out);
        let mut first = String::new();
        lines
            .read_line(&mut first)
            .unwrap_or_else(|e| fail("coordinator output", e));
        // Keep reading, so the coordinator never writes into a closed pipe.
        thread::spawn(move || {
            let mut sink = String::new();
            while lines.read_line(&mut sink).map(|n| n > 0).unwrap_or(false) {
                sink.clear();
            }
        });
        let addr = first
            .split_whitespace()
            .last()
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| fail("coordinator address", first.trim()));
        CoordinatorProcess {
            child,
            addr,
            connected,
        }
    }

    /// Waits for a status line that counts `n` providers connected.
    pub fn wait_connected(&self, n: usize, within: Duration) {
        let Some(rx) = &self.connected else {
            fail("coordinator", "started without a status line");
        };
        let deadline = Instant::now() + within;
        let mut last = None;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(c) if c == n => return,
                Ok(c) => last = Some(c),
                Err(_) => fail(
                    "coordinator",
                    format!(
                        "{n} providers not connected within {within:?} (last status: {last:?})"
                    ),
                ),
            }
        }
    }

    /// Its resident set, from /proc.
    pub fn rss_bytes(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|kb| kb.parse::<u64>().ok())
            .map(|kb| kb * 1024)
            .unwrap_or(0)
    }
}

impl Drop for CoordinatorProcess {
    fn drop(&mut self) {
        // Off the list before it is reaped, so its id, once free, is never
        // signalled.
        let pid = self.child.id();
        started().retain(|&p| p != pid);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What a benchmark needs to start coordinators: the program
/// (`TESSERA_COORDINATOR`, else `target/release/tessera-coordinator`), a
/// fresh certificate bundle written to a temporary directory, and the CA
/// clients trust. The directory is removed when this is dropped.
pub struct CoordinatorSetup {
    pub exe: String,
    pub certs_dir: std::path::PathBuf,
    pub bundle: tessera_coordinator::certs::CertBundle,
    pub ca: Vec<u8>,
}

impl CoordinatorSetup {
    /// Certificates in a directory named for `tag` and this process.
    pub fn new(tag: &str) -> CoordinatorSetup {
        let exe = std::env::var("TESSERA_COORDINATOR")
            .unwrap_or_else(|_| "target/release/tessera-coordinator".into());
        let certs_dir =
            std::env::temp_dir().join(format!("tessera-{tag}-bench-{}", std::process::id()));
        let bundle =
            tessera_coordinator::certs::generate(&[]).unwrap_or_else(|e| fail("certificates", e));
        bundle
            .write_to(&certs_dir)
            .unwrap_or_else(|e| fail("certificates", e));
        let ca = bundle.ca_pem.clone().into_bytes();
        CoordinatorSetup {
            exe,
            certs_dir,
            bundle,
            ca,
        }
    }
}

impl Drop for CoordinatorSetup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.certs_dir);
    }
}
