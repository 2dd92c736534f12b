//! The reference coordinator holding many providers. Prints one JSON object
//! per line:
//!
//! - `e2e.coordinator_bytes_per_agent_1k`, `e2e.coordinator_bytes_per_agent_10k`:
//!   the resident memory a fresh coordinator process grows by per admitted
//!   provider, with 1,000 and 10,000 of them connected. Its resident set is
//!   read once its status line counts none connected, and again as soon as
//!   it counts them all (sessions whose evidence it verified).
//! - `coordinator.cpu_per_heartbeat_us`: the coordinator's CPU time (user and
//!   system, from /proc/<pid>/stat) over a window with the largest count
//!   connected, divided by the heartbeats the providers sent in that window
//!   (the coordinator sends as many of its own, so this is the cost of one
//!   heartbeat each way, with the engine's timers).
//!
//! Each simulated provider holds a real TLS 1.3 session (rustls, trusting
//! the generated CA), completes the real provider handshake (`Hello`,
//! `Welcome`, `Evidence` signed with its own Ed25519 key, `Ready`) and sends
//! heartbeats at the interval the coordinator asks for. A few threads drive
//! them all, each with a mio event loop.
//!
//! Usage: `coordinator_scale [N...]` (default 1000 10000), or
//! `TESSERA_SCALE_AGENTS="1000 10000"`; `TESSERA_COORDINATOR` names the
//! coordinator program (default target/release/tessera-coordinator).

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection};
use tessera_bench::process::{fail, line, CoordinatorProcess, CoordinatorSetup};
use tessera_core::attest::{ChainState, DeviceCapabilities, Ed25519Signer, Evidence, Signer};
use tessera_core::limits::{HEADER_LEN, MAX_FRAME};
use tessera_core::net::{client_config, Trust};
use tessera_core::wire::{
    Blob, Header, Heartbeat, Hello, Message, PROTOCOL_VERSION_MAX, PROTOCOL_VERSION_MIN,
};

/// Threads driving the simulated providers.
const DRIVERS: usize = 4;
/// Handshakes each driver has under way at once (the listen queue stays
/// short).
const IN_FLIGHT: usize = 32;
/// Heartbeat interval asked of the providers, ms.
const HEARTBEAT_MS: u32 = 500;
/// The window the CPU time per heartbeat is measured over.
const CPU_WINDOW: Duration = Duration::from_secs(5);

/// Raises this process's open-file soft limit to its hard limit; the
/// coordinator, started from here, inherits it.
fn raise_open_files(want: libc::rlim_t) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid, writable rlimit for the call's duration.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        fail("getrlimit", io::Error::last_os_error());
    }
    if lim.rlim_cur < lim.rlim_max {
        lim.rlim_cur = lim.rlim_max;
        // SAFETY: `lim` is a valid rlimit, read above, soft raised to hard.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
            fail("setrlimit", io::Error::last_os_error());
        }
    }
    if lim.rlim_cur < want {
        fail(
            "open files",
            format!(
                "{want} are needed, the hard limit is {} (raise it with ulimit -Hn)",
                lim.rlim_cur
            ),
        );
    }
}

/// CPU time of process `pid`, user and system, in microseconds.
fn cpu_us(pid: u32) -> (u64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command name, which is in parentheses.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 here.
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok());
    match (ticks(11), ticks(12)) {
        // Clock ticks of USER_HZ, 100 per second on Linux.
        (Some(u), Some(s)) => (u * 10_000, s * 10_000),
        _ => fail("coordinator CPU time", "cannot read /proc/<pid>/stat"),
    }
}

#[derive(PartialEq)]
enum Phase {
    Connecting,
    AwaitWelcome,
    AwaitReady,
    Ready,
}

struct Sim {
    sock: TcpStream,
    tls: ClientConnection,
    seed: [u8; 32],
    phase: Phase,
    inbuf: Vec<u8>,
    heartbeat: Duration,
}

struct Counters {
    ready: AtomicUsize,
    heartbeats: AtomicU64,
    lost: AtomicUsize,
    stop: AtomicBool,
}

fn encode(msg: &Message<'_>) -> Vec<u8> {
    let mut buf = vec![0u8; MAX_FRAME];
    match msg.encode(&mut buf) {
        Ok(n) => {
            buf.truncate(n);
            buf
        }
        Err(e) => fail("encode", format!("{e:?}")),
    }
}

fn signer(seed: &[u8; 32]) -> Ed25519Signer {
    Ed25519Signer::from_seed(seed).unwrap_or_else(|e| fail("signer", format!("{e:?}")))
}

impl Sim {
    fn send(&mut self, msg: &Message<'_>) -> io::Result<()> {
        self.tls.writer().write_all(&encode(msg))?;
        self.flush()
    }

    fn flush(&mut self) -> io::Result<()> {
        while self.tls.wants_write() {
            match self.tls.write_tls(&mut self.sock) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Reads what came; `Ok(true)` when the session just became ready.
    fn read(&mut self) -> io::Result<bool> {
        let mut became_ready = false;
        loop {
            match self.tls.read_tls(&mut self.sock) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
            self.tls
                .process_new_packets()
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            let mut buf = [0u8; 4096];
            loop {
                match self.tls.reader().read(&mut buf) {
                    Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                    Ok(n) => self.inbuf.extend_from_slice(&buf[..n]),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => return Err(e),
                }
            }
            became_ready |= self.frames()?;
        }
        if self.phase == Phase::Connecting && !self.tls.is_handshaking() {
            self.phase = Phase::AwaitWelcome;
            let s = signer(&self.seed);
            self.send(&Message::Hello(Hello {
                min_version: PROTOCOL_VERSION_MIN,
                max_version: PROTOCOL_VERSION_MAX,
                agent_version: [0, 1, 0],
                key_id: s.key_id(),
                next_sequence: 1,
                prev_hash: [0; 32],
            }))?;
        }
        self.flush()?;
        Ok(became_ready)
    }

    fn frames(&mut self) -> io::Result<bool> {
        let mut became_ready = false;
        while self.inbuf.len() >= HEADER_LEN {
            let header = Header::decode(&self.inbuf[..HEADER_LEN])
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("{e:?}")))?;
            let len = header.frame_len();
            if self.inbuf.len() < len {
                break;
            }
            let frame: Vec<u8> = self.inbuf.drain(..len).collect();
            let msg = Message::decode(&frame)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("{e:?}")))?;
            match msg {
                Message::Welcome(w) if self.phase == Phase::AwaitWelcome => {
                    self.heartbeat = Duration::from_millis(u64::from(w.heartbeat_ms.max(1)));
                    let mut s = signer(&self.seed);
                    let mut capabilities = DeviceCapabilities {
                        device_local_bytes: 1 << 30,
                        ..Default::default()
                    };
                    let _ = capabilities.name.push_str("simulated");
                    let evidence = Evidence {
                        challenge: w.challenge,
                        public_key: s.public_key(),
                        agent_version: [0, 1, 0],
                        boot_id: [self.seed[0]; 16],
                        issued_at: 1,
                        chain: ChainState::default(),
                        capabilities,
                        enc_key: [0; 32],
                        hardware_report: tessera_core::attest::HardwareReport::NONE,
                    };
                    let mut signed = vec![0u8; tessera_core::attest::EVIDENCE_LEN];
                    let n = evidence
                        .sign(&mut s, &mut signed)
                        .unwrap_or_else(|e| fail("evidence", format!("{e:?}")));
                    self.phase = Phase::AwaitReady;
                    self.send(&Message::Evidence(Blob {
                        bytes: &signed[..n],
                    }))?;
                }
                Message::Ready if self.phase == Phase::AwaitReady => {
                    self.phase = Phase::Ready;
                    became_ready = true;
                }
                Message::Heartbeat(_) => {}
                other => return Err(io::Error::other(format!("unexpected {:?}", other.kind()))),
            }
        }
        if self.inbuf.is_empty() {
            self.inbuf = Vec::new();
        }
        Ok(became_ready)
    }
}

/// One driver thread: connects `n` providers, `IN_FLIGHT` at a time, then
/// keeps them beating until told to stop.
fn drive(
    addr: SocketAddr,
    tls: Arc<ClientConfig>,
    first: usize,
    n: usize,
    counters: &Counters,
) -> io::Result<()> {
    let mut poll = Poll::new()?;
    let mut events = Events::with_capacity(1024);
    let mut sims: Vec<Option<Sim>> = Vec::with_capacity(n);
    // Ready providers by when their next heartbeat is due (one interval
    // for all, so the queue stays in order).
    let mut beats: VecDeque<(Instant, usize)> = VecDeque::new();
    let mut connecting = 0usize;
    let name = ServerName::IpAddress(addr.ip().into());
    let heartbeat = encode(&Message::Heartbeat(Heartbeat {
        active_jobs: 0,
        capacity: 1,
    }));
    while !counters.stop.load(Ordering::Relaxed) {
        while sims.len() < n && connecting < IN_FLIGHT {
            let i = sims.len();
            let mut sock = TcpStream::connect(addr)?;
            poll.registry().register(
                &mut sock,
                Token(i),
                Interest::READABLE | Interest::WRITABLE,
            )?;
            let tls =
                ClientConnection::new(Arc::clone(&tls), name.clone()).map_err(io::Error::other)?;
            let mut seed = [0u8; 32];
            seed[..8].copy_from_slice(&((first + i) as u64 + 1).to_le_bytes());
            sims.push(Some(Sim {
                sock,
                tls,
                seed,
                phase: Phase::Connecting,
                inbuf: Vec::new(),
                heartbeat: Duration::from_millis(u64::from(HEARTBEAT_MS)),
            }));
            connecting += 1;
        }
        let now = Instant::now();
        let timeout = beats
            .front()
            .map(|(at, _)| at.saturating_duration_since(now))
            .unwrap_or(Duration::from_millis(50))
            .min(Duration::from_millis(50));
        poll.poll(&mut events, Some(timeout))?;
        for ev in events.iter() {
            let i = ev.token().0;
            let Some(sim) = sims.get_mut(i).and_then(Option::as_mut) else {
                continue;
            };
            let result = if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                sim.read()
            } else {
                sim.flush().map(|()| false)
            };
            match result {
                Ok(true) => {
                    connecting -= 1;
                    counters.ready.fetch_add(1, Ordering::SeqCst);
                    beats.push_back((Instant::now() + sim.heartbeat, i));
                }
                Ok(false) => {}
                Err(e) => {
                    if sim.phase != Phase::Ready {
                        connecting -= 1;
                    }
                    eprintln!("simulated provider {}: {e}", first + i);
                    counters.lost.fetch_add(1, Ordering::SeqCst);
                    sims[i] = None;
                }
            }
        }
        let now = Instant::now();
        while let Some(&(at, i)) = beats.front() {
            if at > now {
                break;
            }
            beats.pop_front();
            let Some(sim) = sims.get_mut(i).and_then(Option::as_mut) else {
                continue;
            };
            let sent = sim
                .tls
                .writer()
                .write_all(&heartbeat)
                .and_then(|()| sim.flush());
            if sent.is_ok() {
                counters.heartbeats.fetch_add(1, Ordering::Relaxed);
                beats.push_back((at + sim.heartbeat, i));
            }
        }
    }
    Ok(())
}

/// Connects `n` providers to a fresh coordinator; prints its memory per
/// provider and, with `cpu`, its CPU time per heartbeat.
fn run(exe: &str, certs: &std::path::Path, ca: &[u8], n: usize, cpu: bool) {
    let extra: Vec<String> = [
        ("--max-connections", n + 100),
        ("--max-connections-per-ip", n + 100),
        ("--heartbeat-ms", HEARTBEAT_MS as usize),
    ]
    .iter()
    .flat_map(|(flag, v)| [flag.to_string(), v.to_string()])
    .collect();
    let coordinator = CoordinatorProcess::start(exe, certs, Some(100), &extra);
    coordinator.wait_connected(0, Duration::from_secs(30));
    let before = coordinator.rss_bytes();
    let tls = client_config(&Trust::CaPem(ca.to_vec())).unwrap_or_else(|e| fail("TLS", e));
    let counters = Arc::new(Counters {
        ready: AtomicUsize::new(0),
        heartbeats: AtomicU64::new(0),
        lost: AtomicUsize::new(0),
        stop: AtomicBool::new(false),
    });
    let started = Instant::now();
    let drivers: Vec<JoinHandle<()>> = (0..DRIVERS)
        .map(|d| {
            let share = n / DRIVERS + usize::from(d < n % DRIVERS);
            let first = d * (n / DRIVERS) + d.min(n % DRIVERS);
            let (tls, counters, addr) = (Arc::clone(&tls), Arc::clone(&counters), coordinator.addr);
            thread::spawn(move || {
                if let Err(e) = drive(addr, tls, first, share, &counters) {
                    fail("simulated providers", e);
                }
            })
        })
        .collect();
    coordinator.wait_connected(n, Duration::from_secs(120));
    let after = coordinator.rss_bytes();
    let connected_in = started.elapsed();
    let lost = counters.lost.load(Ordering::SeqCst);
    if before == 0 || after == 0 {
        fail("coordinator memory", "cannot read its resident set");
    }
    let label = if n % 1000 == 0 {
        format!("{}k", n / 1000)
    } else {
        n.to_string()
    };
    line(
        &format!("e2e.coordinator_bytes_per_agent_{label}"),
        after.saturating_sub(before) as f64 / n as f64,
        "bytes",
        &[],
    );
    eprintln!(
        "({n} providers connected in {:.1} s; coordinator {:.1} MiB before, {:.1} MiB after; \
         {lost} lost)",
        connected_in.as_secs_f64(),
        before as f64 / f64::from(1 << 20),
        after as f64 / f64::from(1 << 20),
    );
    if cpu {
        // Past the handshakes, into a steady state.
        thread::sleep(Duration::from_millis(u64::from(2 * HEARTBEAT_MS)));
        let pid = coordinator.child.id();
        let (cpu0, beats0) = (cpu_us(pid), counters.heartbeats.load(Ordering::SeqCst));
        thread::sleep(CPU_WINDOW);
        let (cpu1, beats1) = (cpu_us(pid), counters.heartbeats.load(Ordering::SeqCst));
        let beats = beats1.saturating_sub(beats0).max(1);
        let user = cpu1.0.saturating_sub(cpu0.0);
        let system = cpu1.1.saturating_sub(cpu0.1);
        line(
            "coordinator.cpu_per_heartbeat_us",
            (user + system) as f64 / beats as f64,
            "us",
            &[],
        );
        eprintln!(
            "({beats} heartbeats from {n} providers in {CPU_WINDOW:?}; coordinator CPU {:.2} s \
             user, {:.2} s system)",
            user as f64 / 1e6,
            system as f64 / 1e6
        );
    }
    counters.stop.store(true, Ordering::SeqCst);
    for d in drivers {
        let _ = d.join();
    }
    drop(coordinator);
}

fn main() {
    let counts: Vec<usize> = {
        let args: Vec<String> = std::env::args().skip(1).collect();
        let words = if args.is_empty() {
            std::env::var("TESSERA_SCALE_AGENTS").unwrap_or_else(|_| "1000 10000".into())
        } else {
            args.join(" ")
        };
        words
            .split_whitespace()
            .map(|w| {
                w.parse()
                    .unwrap_or_else(|e| fail(&format!("count of providers {w:?}"), e))
            })
            .collect()
    };
    let largest = counts.iter().copied().max().unwrap_or(0);
    // The coordinator's sockets, ours, and room for the rest.
    raise_open_files(largest.saturating_add(200) as libc::rlim_t);
    let setup = CoordinatorSetup::new("scale");
    for &n in &counts {
        run(&setup.exe, &setup.certs_dir, &setup.ca, n, n == largest);
    }
}
