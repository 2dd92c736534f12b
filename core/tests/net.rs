//! The network runtime against a scripted TLS coordinator on loopback: a job
//! over TLS 1.3 with a verified receipt, a pinned key that does not match
//! (refused), a connection killed before the acknowledgement, a restart
//! holding an unacknowledged result, and two jobs pipelined (the next one's
//! inputs arrive while one runs, outputs upload while the next runs), and
//! jobs queued together reaching a batching executor as one batch.
#![cfg(feature = "net")]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::{ServerConfig, ServerConnection, StreamOwned};
use tessera_core::attest::{
    ChainState, DeviceCapabilities, Ed25519Signer, Evidence, ReceiptStatus, ReceiptVerifier,
};
use tessera_core::net::{
    client_config, spki_sha256, FnExecutor, JobOutputs, JobToRun, NetConfig, Runtime, Trust,
};
use tessera_core::testkit::{encode, FrameSplitter, JobDescription};
use tessera_core::wire::{JobRef, Message, Usage, Welcome};
use tessera_core::{Config, Policy};

type Tls = StreamOwned<ServerConnection, TcpStream>;

struct Server {
    config: Arc<ServerConfig>,
    spki: [u8; 32],
}

fn server() -> Server {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let cert = CertificateDer::from(ck.cert.der().to_vec());
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ck.key_pair.serialize_der()));
    let spki = spki_sha256(&cert).unwrap();
    let config =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert], key)
            .unwrap();
    Server {
        config: Arc::new(config),
        spki,
    }
}

/// The coordinator's end of one session.
struct Session {
    tls: Tls,
    split: FrameSplitter,
}

impl Session {
    /// The provider's next connection; panics if none comes within 20 s.
    fn accept(listener: &TcpListener, config: &Arc<ServerConfig>) -> Session {
        listener.set_nonblocking(true).unwrap();
        let waited = std::time::Instant::now();
        let sock = loop {
            match listener.accept() {
                Ok((sock, _)) => break sock,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    assert!(
                        waited.elapsed() < Duration::from_secs(20),
                        "the provider did not connect"
                    );
                    thread::sleep(Duration::from_millis(5));
                }
                Err(e) => panic!("accept: {e}"),
            }
        };
        sock.set_nonblocking(false).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let conn = ServerConnection::new(config.clone()).unwrap();
        Session {
            tls: StreamOwned::new(conn, sock),
            split: FrameSplitter::default(),
        }
    }

    fn send(&mut self, m: &Message<'_>) {
        self.tls.write_all(&encode(m)).unwrap();
        self.tls.flush().unwrap();
    }

    fn next(&mut self) -> Vec<u8> {
        loop {
            if let Some(f) = self.split.next_frame() {
                return f;
            }
            let mut buf = [0u8; 16384];
            let n = self.tls.read(&mut buf).unwrap();
            assert!(n > 0, "provider closed the connection");
            self.split.push(&buf[..n]);
        }
    }

    /// Assigns job `id` of `j` (its offer accepted) and sends its input.
    fn assign(&mut self, j: &JobDescription, id: u64) {
        self.send(&Message::JobAssign(j.assign(id)));
        for f in j.input_frames(id) {
            self.tls.write_all(&f).unwrap();
        }
    }

    /// Handshake; returns the provider's public key.
    fn handshake(&mut self) -> [u8; 32] {
        self.handshake_version(1)
    }

    /// Handshake at protocol `version`; returns the provider's public key.
    fn handshake_version(&mut self, version: u16) -> [u8; 32] {
        assert!(matches!(
            Message::decode(&self.next()),
            Ok(Message::Hello(_))
        ));
        let challenge = [0x3c; 32];
        self.send(&Message::Welcome(Welcome {
            version,
            challenge,
            heartbeat_ms: 0,
        }));
        let f = self.next();
        let Ok(Message::Evidence(b)) = Message::decode(&f) else {
            panic!("expected evidence")
        };
        let evidence = Evidence::verify(b.bytes, &challenge).unwrap();
        self.send(&Message::Ready);
        evidence.public_key
    }

    /// Frames until (and with) the receipt of `job`; returns outputs and receipt.
    fn collect(&mut self, job: u64) -> (Vec<u8>, Vec<u8>) {
        let mut out = Vec::new();
        loop {
            let f = self.next();
            match Message::decode(&f).unwrap() {
                Message::OutputChunk(c) if c.job == job => {
                    if c.index == 0 {
                        out.clear();
                    }
                    out.extend_from_slice(c.data)
                }
                Message::Receipt(r) if r.job == job => return (out, r.bytes.to_vec()),
                _ => {}
            }
        }
    }
}

fn job() -> JobDescription {
    JobDescription {
        kernel: vec![0x03, 0x02, 0x23, 0x07, 0, 0, 0, 0],
        entry_point: "main".into(),
        grid: [1, 1, 1],
        push_constants: vec![],
        buffers: vec![
            ((0..30_000u32).map(|i| i as u8).collect(), 30_000, false),
            (Vec::new(), 30_000, true),
        ],
        nonce: [0x11; 32],
        bindings: Vec::new(),
    }
}

fn increment(job: &JobToRun) -> Result<JobOutputs, tessera_core::net::JobFailure> {
    let input = &job.buffers[0];
    Ok(JobOutputs {
        outputs: vec![input.iter().map(|b| b.wrapping_add(1)).collect()],
        usage: Usage {
            gpu_time_us: 10,
            dispatches: 1,
            ..Usage::default()
        },
    })
}

fn config() -> Config {
    Config {
        capabilities: DeviceCapabilities {
            device_local_bytes: 1 << 30,
            ..DeviceCapabilities::default()
        },
        policy: Policy::default(),
        ..Config::default()
    }
}

fn runtime(port: u16, trust: Trust, store: Option<std::path::PathBuf>) -> Runtime<Ed25519Signer> {
    runtime_with(port, trust, store, FnExecutor(increment))
}

/// Network settings for a coordinator on this machine's `port`, named
/// "localhost", trusted as `trust` says.
fn loopback_net(port: u16, trust: &Trust) -> NetConfig {
    NetConfig::new(
        format!("127.0.0.1:{port}"),
        "localhost",
        client_config(trust).unwrap(),
    )
}

fn runtime_with<E: tessera_core::net::Executor>(
    port: u16,
    trust: Trust,
    store: Option<std::path::PathBuf>,
    executor: E,
) -> Runtime<Ed25519Signer> {
    let signer = Ed25519Signer::from_seed(&[5; 32]).unwrap();
    let mut net = loopback_net(port, &trust);
    net.store_dir = store;
    net.reconnect_initial = Duration::from_millis(20);
    net.reconnect_max = Duration::from_millis(200);
    Runtime::new(config(), signer, executor, net).unwrap()
}

/// A runtime with `config`, executor `ex` and the network settings
/// `tweak` leaves, started on a thread of its own, and this test's end of
/// its connection, past the handshake (with the session key).
fn connected_with<E: tessera_core::net::Executor>(
    config: Config,
    ex: E,
    tweak: impl FnOnce(&mut NetConfig),
) -> (Session, [u8; 32], Running) {
    let srv = server();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let signer = Ed25519Signer::from_seed(&[5; 32]).unwrap();
    let mut net = loopback_net(port, &Trust::PinnedKey(srv.spki));
    tweak(&mut net);
    let running = spawn(Runtime::new(config, signer, ex, net).unwrap());
    let mut s = Session::accept(&listener, &srv.config);
    let key = s.handshake();
    (s, key, running)
}

/// [`connected_with`] the test configuration and default network settings.
fn connected<E: tessera_core::net::Executor>(ex: E) -> (Session, [u8; 32], Running) {
    connected_with(config(), ex, |_| {})
}

/// Offers job `id`, which the agent must accept, and cancels it.
fn accepted_then_cancelled(s: &mut Session, j: &JobDescription, id: u64) {
    let f = s.offer(j, id);
    assert!(matches!(
        Message::decode(&f).unwrap(),
        Message::OfferAccept(_)
    ));
    s.send(&Message::Cancel(tessera_core::wire::Cancel {
        job: id,
        reason: 1,
    }));
}

fn expected() -> Vec<u8> {
    (0..30_000u32).map(|i| (i as u8).wrapping_add(1)).collect()
}

struct Running {
    handle: thread::JoinHandle<Runtime<Ed25519Signer>>,
    drain: tessera_core::net::DrainHandle,
    /// Stops the loop abruptly, as a crash would.
    stop: Arc<std::sync::atomic::AtomicBool>,
}

/// Runs a runtime on its own thread until it finishes or is stopped.
fn spawn(mut rt: Runtime<Ed25519Signer>) -> Running {
    let drain = rt.drain_handle();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = stop.clone();
    let handle = thread::spawn(move || {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while !rt.is_finished()
            && !stop2.load(std::sync::atomic::Ordering::SeqCst)
            && std::time::Instant::now() < deadline
        {
            rt.step(Some(Duration::from_millis(50))).unwrap();
        }
        rt
    });
    Running {
        handle,
        drain,
        stop,
    }
}

#[test]
fn a_job_over_tls_returns_outputs_and_a_verified_receipt_then_drains() {
    let srv = server();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    // The host's receipt hook sees the receipt the coordinator gets, without
    // a store too.
    let mut rt = runtime(port, Trust::PinnedKey(srv.spki), None);
    let hooked = Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = hooked.clone();
    rt.set_receipt_hook(move |job, receipt| sink.lock().unwrap().push((job, receipt.to_vec())));
    let Running { handle, drain, .. } = spawn(rt);

    let mut s = Session::accept(&listener, &srv.config);
    let pk = s.handshake();
    let j = job();
    s.send(&Message::JobOffer(j.offer(1, 1_000_000, 60_000)));
    assert!(matches!(
        Message::decode(&s.next()),
        Ok(Message::OfferAccept(_))
    ));
    s.assign(&j, 1);
    let (out, receipt) = s.collect(1);
    assert_eq!(out, expected());
    let mut verifier = ReceiptVerifier::new(pk, ChainState::default());
    let r = verifier.verify_next(&receipt, Some(&j.nonce)).unwrap();
    assert_eq!(r.usage.gpu_time_us, 10);
    assert_eq!(*hooked.lock().unwrap(), vec![(1, receipt.to_vec())]);
    s.send(&Message::ResultAck(JobRef { job: 1 }));

    drain.drain();
    loop {
        match Message::decode(&s.next()).unwrap() {
            Message::Goodbye(_) => break,
            _ => continue,
        }
    }
    let rt = handle.join().unwrap();
    assert!(rt.is_finished());
    assert_eq!(rt.status().jobs_completed, 1);
    assert!(rt.status().to_string().contains("1 done"));
}

#[test]
fn a_coordinator_with_another_key_is_refused() {
    let srv = server();
    let other = server();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut rt = runtime(port, Trust::PinnedKey(other.spki), None);
    let accept = thread::spawn(move || {
        let (sock, _) = listener.accept().unwrap();
        let mut conn = ServerConnection::new(srv.config.clone()).unwrap();
        let mut sock = sock;
        sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        // The handshake fails on the provider's side; it never sends a frame.
        let mut got_app_data = false;
        while conn.complete_io(&mut sock).is_ok() {
            let mut b = [0u8; 64];
            if let Ok(n) = conn.reader().read(&mut b) {
                got_app_data |= n > 0;
            }
            if !conn.is_handshaking() {
                break;
            }
        }
        got_app_data
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while rt.status().last_error.is_none() && std::time::Instant::now() < deadline {
        rt.step(Some(Duration::from_millis(20))).unwrap();
    }
    let err = rt.status().last_error.unwrap_or_default();
    assert!(err.contains("TLS"), "last error: {err}");
    assert!(!accept.join().unwrap(), "no application data may flow");
}

#[test]
fn a_result_survives_a_killed_connection_and_a_restart() {
    let srv = server();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let dir = std::env::temp_dir().join(format!("tessera-net-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let first = spawn(runtime(port, Trust::PinnedKey(srv.spki), Some(dir.clone())));

    let mut s = Session::accept(&listener, &srv.config);
    let pk = s.handshake();
    let j = job();
    s.send(&Message::JobOffer(j.offer(7, 1_000_000, 60_000)));
    s.next();
    s.assign(&j, 7);
    let (_, first_receipt) = s.collect(7);
    // Kill the connection before acknowledging; the provider reconnects.
    drop(s);
    let mut s = Session::accept(&listener, &srv.config);
    s.handshake();
    let (out, receipt) = s.collect(7);
    assert_eq!(out, expected());
    assert_eq!(receipt, first_receipt);
    // The provider crashes before the acknowledgement; a new one starts.
    first.stop.store(true, std::sync::atomic::Ordering::SeqCst);
    drop(first.handle.join().unwrap());
    drop(s);

    let Running { handle, drain, .. } =
        spawn(runtime(port, Trust::PinnedKey(srv.spki), Some(dir.clone())));
    let mut s = Session::accept(&listener, &srv.config);
    s.handshake();
    let (out, receipt) = s.collect(7);
    assert_eq!(out, expected(), "outputs come back from the store");
    assert_eq!(receipt, first_receipt);
    let mut verifier = ReceiptVerifier::new(pk, ChainState::default());
    verifier.verify_next(&receipt, Some(&j.nonce)).unwrap();
    s.send(&Message::ResultAck(JobRef { job: 7 }));
    drain.drain();
    loop {
        if let Ok(Message::Goodbye(_)) = Message::decode(&s.next()) {
            break;
        }
    }
    let rt = handle.join().unwrap();
    assert!(rt.is_finished());
    assert_eq!(rt.agent().chain().next_sequence, 2);
    let _ = std::fs::remove_dir_all(&dir);
}

/// An executor whose device takes work while `open` is set; its first job
/// closes it, as a timeout that leaves abandoned work at the bound would.
struct Gate {
    open: Arc<std::sync::atomic::AtomicBool>,
}

impl tessera_core::net::Executor for Gate {
    fn run(&mut self, job: &JobToRun) -> Result<JobOutputs, tessera_core::net::JobFailure> {
        self.open.store(false, std::sync::atomic::Ordering::SeqCst);
        increment(job)
    }

    fn accepting_jobs(&mut self) -> bool {
        self.open.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Session {
    /// Frames until one satisfies `pred`; returns that one's message.
    fn until(&mut self, pred: impl Fn(&Message<'_>) -> bool) -> Vec<u8> {
        loop {
            let f = self.next();
            if pred(&Message::decode(&f).unwrap()) {
                return f;
            }
        }
    }

    /// Offers job `id` of `j` and returns the provider's answer (an
    /// `OfferAccept` or an `OfferDecline` frame).
    fn offer(&mut self, j: &JobDescription, id: u64) -> Vec<u8> {
        self.send(&Message::JobOffer(j.offer(id, 1_000_000, 60_000)));
        self.until(|m| matches!(m, Message::OfferDecline(_) | Message::OfferAccept(_)))
    }
}

#[test]
fn a_device_that_takes_no_work_declines_offers_until_it_does_again() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use tessera_core::wire::DeclineReason;
    let open = Arc::new(AtomicBool::new(true));
    let gate = Gate { open: open.clone() };
    let (mut s, _, Running { handle, drain, .. }) = connected(gate);
    let j = job();
    s.send(&Message::JobOffer(j.offer(1, 1_000_000, 60_000)));
    s.assign(&j, 1);
    // After the job the device takes no work: a heartbeat says capacity 0
    // at once, and offers are declined.
    s.until(|m| matches!(m, Message::Heartbeat(h) if h.capacity == 0));
    s.send(&Message::ResultAck(JobRef { job: 1 }));
    let f = s.offer(&j, 2);
    assert_eq!(
        Message::decode(&f).unwrap(),
        Message::OfferDecline(tessera_core::wire::OfferDecline {
            job: 2,
            reason: DeclineReason::Unavailable,
        })
    );

    // The device is reclaimed: the idle worker notices within ~100 ms, a
    // heartbeat gives the capacity back, and the next offer is taken.
    open.store(true, Ordering::SeqCst);
    s.until(|m| matches!(m, Message::Heartbeat(h) if h.capacity > 0));
    accepted_then_cancelled(&mut s, &j, 3);
    drain.drain();
    s.until(|m| matches!(m, Message::Goodbye(_)));
    let rt = handle.join().unwrap();
    assert!(rt.is_finished());
    assert!(!rt.status().device_unavailable);
}

#[test]
fn the_status_line_says_when_the_device_is_unavailable() {
    let mut status = tessera_core::net::Status {
        device: "gpu0".into(),
        ..Default::default()
    };
    assert!(!status.to_string().contains("unavailable"));
    status.device_unavailable = true;
    assert!(
        status.to_string().contains("device gpu0 (unavailable)"),
        "{status}"
    );
}

/// Held by a test that measures this process's resident memory and by the
/// tests that allocate tens of MiB, so that neither runs beside the other:
/// the tests of this file share one process.
static MEMORY: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Resident memory of this process, in bytes.
fn resident_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

/// A coordinator that assigns a job, sends its inputs and cancels it, a
/// thousand times over. Each cancel takes the job out of the run queue (or
/// stops it where it runs), so the provider's memory stays flat. Before,
/// every cancelled job stayed queued with its inputs behind a run that
/// never ended: 1,000 x 128 KiB here.
#[test]
#[cfg(target_os = "linux")]
fn a_thousand_assigned_and_cancelled_jobs_leave_memory_flat() {
    let _alone = MEMORY.lock().unwrap_or_else(|p| p.into_inner());
    use std::sync::atomic::{AtomicU64, Ordering};
    static RUNS: AtomicU64 = AtomicU64::new(0);
    static STOPPED: AtomicU64 = AtomicU64::new(0);
    // Runs until cancelled (a kernel that never ends on its own).
    fn until_cancelled(job: &JobToRun) -> Result<JobOutputs, tessera_core::net::JobFailure> {
        RUNS.fetch_add(1, Ordering::SeqCst);
        while !job.cancel.is_cancelled() && job.timeout() > Duration::ZERO {
            thread::sleep(Duration::from_millis(1));
        }
        STOPPED.fetch_add(1, Ordering::SeqCst);
        increment(job)
    }
    let srv = server();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut rt = runtime_with(
        port,
        Trust::PinnedKey(srv.spki),
        None,
        FnExecutor(until_cancelled),
    );
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = stop.clone();
    let handle = thread::spawn(move || {
        let mut most_queued = 0;
        while !stop2.load(Ordering::SeqCst) {
            rt.step(Some(Duration::from_millis(20))).unwrap();
            most_queued = most_queued.max(rt.queued_jobs().0);
        }
        (rt, most_queued)
    });

    let mut s = Session::accept(&listener, &srv.config);
    s.handshake();
    let mut j = job();
    j.buffers[0] = (vec![7u8; 128 << 10], 128 << 10, false);
    let frames = j.input_frames(0);
    let mut resident_after_warmup = 0;
    for id in 1..=1000u64 {
        s.send(&Message::JobOffer(j.offer(id, 1_000_000, 60_000)));
        loop {
            match Message::decode(&s.next()).unwrap() {
                Message::OfferAccept(a) if a.job == id => break,
                Message::OfferDecline(d) => panic!("job {id} declined: {d:?}"),
                _ => continue,
            }
        }
        s.send(&Message::JobAssign(j.assign(id)));
        for f in &frames {
            // The frames name job 0; rewrite the job id of each chunk.
            let Ok(Message::InputChunk(mut c)) = Message::decode(f) else {
                panic!("not a chunk")
            };
            c.job = id;
            s.tls.write_all(&encode(&Message::InputChunk(c))).unwrap();
        }
        s.send(&Message::Cancel(tessera_core::wire::Cancel {
            job: id,
            reason: 1,
        }));
        if id == 100 {
            resident_after_warmup = resident_bytes();
        }
    }
    // One more job, offered after the last cancel: its acceptance means the
    // provider has handled every frame before it.
    s.send(&Message::JobOffer(j.offer(1001, 1_000_000, 60_000)));
    loop {
        if let Ok(Message::OfferAccept(_)) = Message::decode(&s.next()) {
            break;
        }
    }
    let resident_at_end = resident_bytes();
    stop.store(true, Ordering::SeqCst);
    let (rt, most_queued) = handle.join().unwrap();
    let growth = resident_at_end.saturating_sub(resident_after_warmup);
    eprintln!(
        "resident after 100 rounds {} MiB, after 1,000 {} MiB; runs started {}, stopped {}, \
         most queued {most_queued}",
        resident_after_warmup >> 20,
        resident_at_end >> 20,
        RUNS.load(Ordering::SeqCst),
        STOPPED.load(Ordering::SeqCst),
    );
    assert!(
        growth < 32 << 20,
        "resident memory grew {} MiB over 900 assign/cancel rounds",
        growth >> 20
    );
    assert!(most_queued <= tessera_core::limits::MAX_JOBS);
    assert_eq!(rt.queued_jobs(), (0, 0));
    drop(rt);
}

/// A coordinator's `Drain` ends the session, not the provider: the runtime
/// says goodbye, connects again and serves the next session. Before, it
/// finished as if the operator had asked (a remote shutdown of
/// `tessera-agent`).
#[test]
fn a_coordinator_drain_ends_the_session_and_the_provider_comes_back() {
    let srv = server();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let Running { handle, drain, .. } = spawn(runtime(port, Trust::PinnedKey(srv.spki), None));
    let mut s = Session::accept(&listener, &srv.config);
    s.handshake();
    s.send(&Message::Drain);
    loop {
        if let Ok(Message::Goodbye(_)) = Message::decode(&s.next()) {
            break;
        }
    }
    drop(s);
    // It comes back, and takes a job.
    let mut s = Session::accept(&listener, &srv.config);
    s.handshake();
    let j = job();
    s.send(&Message::JobOffer(j.offer(1, 1_000_000, 60_000)));
    assert!(matches!(
        Message::decode(&s.next()),
        Ok(Message::OfferAccept(_))
    ));
    s.assign(&j, 1);
    let (out, _) = s.collect(1);
    assert_eq!(out, expected());
    s.send(&Message::ResultAck(JobRef { job: 1 }));
    drain.drain();
    loop {
        if let Ok(Message::Goodbye(_)) = Message::decode(&s.next()) {
            break;
        }
    }
    let rt = handle.join().unwrap();
    assert!(rt.is_finished());
    assert_eq!(rt.status().sessions, 2);
}

/// A drain waits for acknowledgements only so long: a coordinator that
/// never acknowledges cannot keep the provider from stopping. The result it
/// did not acknowledge stays in the store and goes out on the next start.
/// Before, the drain waited forever.
#[test]
fn a_drain_ends_by_its_deadline_and_the_unacknowledged_result_goes_out_next_start() {
    let srv = server();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let dir = std::env::temp_dir().join(format!("tessera-net-drain-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut rt = runtime(port, Trust::PinnedKey(srv.spki), Some(dir.clone()));
    rt.set_drain_timeout(Duration::from_millis(500));
    let Running { handle, drain, .. } = spawn(rt);
    let mut s = Session::accept(&listener, &srv.config);
    s.handshake();
    let j = job();
    s.send(&Message::JobOffer(j.offer(4, 1_000_000, 60_000)));
    s.next();
    s.assign(&j, 4);
    let (_, receipt) = s.collect(4);
    // No acknowledgement; the operator stops the provider.
    let asked = std::time::Instant::now();
    drain.drain();
    let rt = handle.join().unwrap();
    let took = asked.elapsed();
    assert!(rt.is_finished(), "the drain ended (after {took:?})");
    assert!(took < Duration::from_secs(20), "took {took:?}");
    drop(rt);
    drop(s);
    // The next start delivers the same result and receipt.
    let Running { handle, drain, .. } =
        spawn(runtime(port, Trust::PinnedKey(srv.spki), Some(dir.clone())));
    let mut s = Session::accept(&listener, &srv.config);
    s.handshake();
    let (out, again) = s.collect(4);
    assert_eq!(out, expected());
    assert_eq!(again, receipt);
    s.send(&Message::ResultAck(JobRef { job: 4 }));
    drain.drain();
    loop {
        if let Ok(Message::Goodbye(_)) = Message::decode(&s.next()) {
            break;
        }
    }
    assert!(handle.join().unwrap().is_finished());
    let _ = std::fs::remove_dir_all(&dir);
}

/// Results of the runtime's key, stored in `dir` as a crashed provider would
/// have left them: jobs `1..=n` signed in turn (receipts 1 to n), each with
/// its outputs, none acknowledged as far as the store knows.
fn leave_stored_results(dir: &std::path::Path, n: u64) {
    use tessera_core::attest::Signer;
    use tessera_core::store::FileStore;
    use tessera_core::testkit::{increment_run, Harness};
    use tessera_core::Agent;
    let mut cfg = config();
    cfg.persist_results = true;
    let signer = Ed25519Signer::from_seed(&[5; 32]).unwrap();
    let mut store = FileStore::open(dir, signer.key_id()).unwrap();
    let agent = Agent::new(cfg, signer, ChainState::default()).unwrap();
    let mut h = Harness::new(agent, increment_run);
    h.agent.connect(h.now).unwrap();
    h.pump();
    h.send(&Message::Welcome(Welcome {
        version: 1,
        challenge: [1; 32],
        heartbeat_ms: 0,
    }));
    h.pump();
    h.send(&Message::Ready);
    h.pump();
    let j = job();
    for id in 1..=n {
        h.send(&Message::JobOffer(j.offer(id, 1_000_000, 60_000)));
        h.pump();
        h.send(&Message::JobAssign(j.assign(id)));
        for f in j.input_frames(id) {
            h.send_raw(&f);
        }
        h.pump();
        let record = h.host.stored[&id].clone();
        let outputs = h.host.job_host.jobs[&id].outputs.clone().unwrap();
        let refs: Vec<&[u8]> = outputs.iter().map(|o| &o[..]).collect();
        store.save_with_outputs(&record, &refs).unwrap();
        // Acknowledged in the sans-IO agent only, to free its slot.
        h.send(&Message::ResultAck(JobRef { job: id }));
        h.pump();
    }
    assert_eq!(store.jobs().unwrap().len() as u64, n);
}

/// More results were left stored than the agent holds at once: the runtime
/// starts, delivers every one with its outputs in receipt-chain order (the
/// later ones as acknowledgements make room), declines offers meanwhile, and
/// then takes work again, its chain going on after the last stored receipt.
#[test]
fn more_stored_results_than_the_agent_holds_are_all_delivered_in_order() {
    use tessera_core::limits::MAX_JOBS;
    use tessera_core::wire::{DeclineReason, OfferDecline};
    let srv = server();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let dir = std::env::temp_dir().join(format!("tessera-net-backlog-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let n = 2 * MAX_JOBS as u64 + 2;
    leave_stored_results(&dir, n);

    let Running { handle, drain, .. } =
        spawn(runtime(port, Trust::PinnedKey(srv.spki), Some(dir.clone())));
    let mut s = Session::accept(&listener, &srv.config);
    let pk = s.handshake();
    let j = job();
    // Before any acknowledgement, stored results wait: no new work.
    s.send(&Message::JobOffer(j.offer(100, 1_000_000, 60_000)));
    let mut verifier = ReceiptVerifier::new(pk, ChainState::default());
    let mut delivered = Vec::new();
    let mut outputs: std::collections::HashMap<u64, Vec<u8>> = Default::default();
    let mut declined = false;
    while delivered.len() < n as usize {
        let f = s.next();
        match Message::decode(&f).unwrap() {
            Message::OutputChunk(c) => {
                let o = outputs.entry(c.job).or_default();
                if c.index == 0 {
                    o.clear();
                }
                o.extend_from_slice(c.data);
            }
            Message::Receipt(r) => {
                let receipt = verifier
                    .verify_next(r.bytes, Some(&j.nonce))
                    .unwrap_or_else(|e| panic!("receipt of job {}: {e:?}", r.job));
                assert_eq!(receipt.job, r.job);
                assert_eq!(outputs.get(&r.job), Some(&expected()), "job {}", r.job);
                delivered.push(r.job);
                s.send(&Message::ResultAck(JobRef { job: r.job }));
            }
            Message::OfferDecline(d) => {
                assert_eq!(
                    d,
                    OfferDecline {
                        job: 100,
                        reason: DeclineReason::Unavailable
                    }
                );
                declined = true;
            }
            Message::OfferAccept(a) => panic!("offer {} taken while results wait", a.job),
            _ => {}
        }
    }
    assert!(declined);
    assert_eq!(delivered, (1..=n).collect::<Vec<_>>());

    // Every stored result is out: offers are taken, and the chain goes on.
    let f = s.offer(&j, 200);
    assert!(
        matches!(Message::decode(&f).unwrap(), Message::OfferAccept(_)),
        "{:?}",
        Message::decode(&f)
    );
    s.assign(&j, 200);
    let (out, receipt) = s.collect(200);
    assert_eq!(out, expected());
    let r = verifier.verify_next(&receipt, Some(&j.nonce)).unwrap();
    assert_eq!(r.sequence, n + 1);
    s.send(&Message::ResultAck(JobRef { job: 200 }));
    drain.drain();
    s.until(|m| matches!(m, Message::Goodbye(_)));
    let rt = handle.join().unwrap();
    assert!(rt.is_finished());
    assert_eq!(rt.status().jobs_completed, n + 1);
    let _ = std::fs::remove_dir_all(&dir);
}
/// A hostile coordinator cancels job 7 while it runs and assigns another
/// job 7 with other inputs; the first run ends 300 ms after the cancel with
/// `first_ends`. Returns the receipt's status and the outputs the new job 7
/// delivered.
fn reuse_job_id_after_cancel(
    first_ends: fn(&JobToRun) -> Result<JobOutputs, tessera_core::net::JobFailure>,
    calls: &'static std::sync::atomic::AtomicU64,
) -> (tessera_core::attest::ReceiptStatus, Vec<u8>) {
    let srv = server();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let exec = move |job: &JobToRun| {
        if calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
            // An executor may return early on cancel, and may also not.
            while !job.cancel.is_cancelled() {
                thread::sleep(Duration::from_millis(1));
            }
            thread::sleep(Duration::from_millis(300));
            return first_ends(job);
        }
        increment(job)
    };
    let rt = runtime_with(port, Trust::PinnedKey(srv.spki), None, FnExecutor(exec));
    let Running { stop, handle, .. } = spawn(rt);
    let mut s = Session::accept(&listener, &srv.config);
    let pk = s.handshake();
    let send_job = |s: &mut Session, fill: u8| {
        let mut j = job();
        j.buffers[0] = (vec![fill; 30_000], 30_000, false);
        s.send(&Message::JobOffer(j.offer(7, 1_000_000, 60_000)));
        s.until(|m| matches!(m, Message::OfferAccept(_)));
        s.assign(&j, 7);
        j
    };
    send_job(&mut s, 1);
    s.until(|m| matches!(m, Message::Started(_)));
    thread::sleep(Duration::from_millis(50));
    s.send(&Message::Cancel(tessera_core::wire::Cancel {
        job: 7,
        reason: 1,
    }));
    let new = send_job(&mut s, 100);
    let (out, receipt) = s.collect(7);
    let mut verifier = ReceiptVerifier::new(pk, ChainState::default());
    let r = verifier.verify_next(&receipt, Some(&new.nonce)).unwrap();
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let _ = handle.join();
    (r.status, out)
}

/// Before runs were numbered, the first run, ending after the cancel, was
/// taken as the new job's result: the provider signed a receipt over the
/// new inputs with the old run's outputs; or, when the first run failed on
/// its cancellation (as the Vulkan executor does), the new job was failed.
#[test]
fn a_reused_job_id_does_not_take_the_withdrawn_runs_result() {
    use std::sync::atomic::AtomicU64;
    static FIRST_COMPLETES: AtomicU64 = AtomicU64::new(0);
    let (status, out) = reuse_job_id_after_cancel(increment, &FIRST_COMPLETES);
    assert_eq!(status, ReceiptStatus::Completed);
    assert!(
        out == vec![101u8; 30_000],
        "the new job got the withdrawn run's outputs: {:?}..",
        &out[..4.min(out.len())]
    );
    static FIRST_FAILS: AtomicU64 = AtomicU64::new(0);
    let (status, out) = reuse_job_id_after_cancel(
        |_| {
            Err(tessera_core::net::JobFailure::new(
                tessera_core::wire::FailReason::Host,
                0,
            ))
        },
        &FIRST_FAILS,
    );
    assert_eq!(
        status,
        ReceiptStatus::Completed,
        "failed by the withdrawn run"
    );
    assert!(out == vec![101u8; 30_000]);
}

#[test]
fn a_host_that_renders_declines_offers_until_it_lets_work_in_again() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use tessera_core::wire::DeclineReason;
    let srv = server();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut rt = runtime(port, Trust::PinnedKey(srv.spki), None);
    let drain = rt.drain_handle();
    // The host's own loop: between "frames" it tells the runtime whether
    // the user renders.
    let rendering = Arc::new(AtomicBool::new(true));
    let r = rendering.clone();
    let handle = thread::spawn(move || {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while !rt.is_finished() && std::time::Instant::now() < deadline {
            rt.set_accepting_jobs(!r.load(Ordering::SeqCst));
            rt.step(Some(Duration::from_millis(20))).unwrap();
        }
        rt
    });

    let mut s = Session::accept(&listener, &srv.config);
    s.handshake();
    let j = job();
    s.until(|m| matches!(m, Message::Heartbeat(h) if h.capacity == 0));
    let f = s.offer(&j, 1);
    assert_eq!(
        Message::decode(&f).unwrap(),
        Message::OfferDecline(tessera_core::wire::OfferDecline {
            job: 1,
            reason: DeclineReason::Unavailable,
        })
    );
    rendering.store(false, Ordering::SeqCst);
    s.until(|m| matches!(m, Message::Heartbeat(h) if h.capacity > 0));
    accepted_then_cancelled(&mut s, &j, 2);
    drain.drain();
    s.until(|m| matches!(m, Message::Goodbye(_)));
    let rt = handle.join().unwrap();
    assert!(rt.is_finished());
}

/// Pipelining (`max_concurrent` > 1): the next job's inputs arrive and are
/// checked while the current job runs, and the finished job's outputs and
/// receipt go out while the next one runs. The executor holds each job
/// until the test releases it, so each step is seen while the other job is
/// still on the device. Job 1's output (16 MiB) is more than the sockets
/// and the runtime buffer, and the test reads none of it until job 2 has
/// started: a runtime that finished an upload before starting the next job
/// would stall there.
#[test]
fn the_next_job_transfers_while_one_runs_and_outputs_upload_while_the_next_runs() {
    let _alone = MEMORY.lock().unwrap_or_else(|p| p.into_inner());
    let srv = server();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (started_tx, started) = std::sync::mpsc::channel();
    let (release, gate) = std::sync::mpsc::channel::<()>();
    let executor = FnExecutor(move |job: &JobToRun| {
        started_tx.send(job.id).unwrap();
        gate.recv_timeout(Duration::from_secs(20))
            .expect("the test releases every job");
        increment(job)
    });
    let rt = runtime_with(port, Trust::PinnedKey(srv.spki), None, executor);
    let Running { handle, stop, .. } = spawn(rt);
    let mut s = Session::accept(&listener, &srv.config);
    let pk = s.handshake();
    let wait_started = |id: u64| {
        let got = started
            .recv_timeout(Duration::from_secs(20))
            .expect("the executor starts the job");
        assert_eq!(got, id);
    };
    const BIG: u64 = 16 << 20;
    let mut jobs = [job(), job()];
    jobs[0].buffers = vec![
        ((0..BIG).map(|i| i as u8).collect(), BIG, false),
        (Vec::new(), BIG, true),
    ];
    jobs[1].nonce = [0x22; 32];

    // Job 1 goes to the device, which holds it.
    assert!(matches!(
        Message::decode(&s.offer(&jobs[0], 1)),
        Ok(Message::OfferAccept(_))
    ));
    s.assign(&jobs[0], 1);
    wait_started(1);

    // Job 2 is taken, and its inputs all arrive and pass their root check
    // (`Started`) while job 1 is still running.
    assert!(matches!(
        Message::decode(&s.offer(&jobs[1], 2)),
        Ok(Message::OfferAccept(_))
    ));
    s.assign(&jobs[1], 2);
    s.tls.flush().unwrap();
    s.until(|m| matches!(m, Message::Started(r) if r.job == 2));

    // Job 1 ends and job 2 starts; job 1's outputs and receipt come while
    // job 2 is still held on the device.
    release.send(()).unwrap();
    wait_started(2);
    let mut verifier = ReceiptVerifier::new(pk, ChainState::default());
    let (out, receipt) = s.collect(1);
    assert_eq!(out.len() as u64, BIG);
    assert!(out
        .iter()
        .enumerate()
        .all(|(i, b)| *b == (i as u8).wrapping_add(1)));
    verifier
        .verify_next(&receipt, Some(&jobs[0].nonce))
        .unwrap();
    s.send(&Message::ResultAck(JobRef { job: 1 }));

    release.send(()).unwrap();
    let (out, receipt) = s.collect(2);
    assert_eq!(out, expected());
    verifier
        .verify_next(&receipt, Some(&jobs[1].nonce))
        .unwrap();
    s.send(&Message::ResultAck(JobRef { job: 2 }));
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    handle.join().unwrap();
}

/// A coordinator that sends close_notify and then more bytes in the same
/// segment (TLS ignores them: RFC 8446, 6.1): the provider's loop keeps
/// turning, ends the session and connects again. (Reading the socket in
/// large pieces once spun here: TLS took no more of them, and the loop
/// waited for it to.)
#[test]
fn bytes_after_the_coordinators_close_notify_do_not_stall_the_provider() {
    use std::sync::atomic::{AtomicU64, Ordering};
    let srv = server();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let steps = Arc::new(AtomicU64::new(0));
    let mut rt = runtime(port, Trust::PinnedKey(srv.spki), None);
    let counted = steps.clone();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stopped = stop.clone();
    let handle = thread::spawn(move || {
        while !stopped.load(Ordering::SeqCst) {
            rt.step(Some(Duration::from_millis(50))).unwrap();
            counted.fetch_add(1, Ordering::SeqCst);
        }
    });
    let mut s = Session::accept(&listener, &srv.config);
    s.handshake();
    s.tls.conn.send_close_notify();
    let mut raw = Vec::new();
    while s.tls.conn.wants_write() {
        s.tls.conn.write_tls(&mut raw).unwrap();
    }
    raw.extend(std::iter::repeat_n(0x17u8, 40_000));
    s.tls.sock.write_all(&raw).unwrap();
    // The session ends: the provider comes back on a new connection while
    // this one stays open.
    let mut again = Session::accept(&listener, &srv.config);
    again.handshake();
    let before = steps.load(Ordering::SeqCst);
    thread::sleep(Duration::from_millis(300));
    assert!(
        steps.load(Ordering::SeqCst) > before,
        "the provider's loop stopped turning"
    );
    stop.store(true, Ordering::SeqCst);
    handle.join().unwrap();
    drop(s);
}

/// The coordinator's last bytes and its end (FIN) read in one turn: the
/// read that took the bytes took less than its buffer, which alone would
/// end the turn (no further event comes for what is already there); the
/// end is read too, and the provider connects again at once rather than
/// when the session times out.
#[test]
fn bytes_and_the_coordinators_end_in_one_read_end_the_session() {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    let srv = server();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut rt = runtime(port, Trust::PinnedKey(srv.spki), None);
    let (paused, stop, steps) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicU64::new(0)),
    );
    let (p, st, n) = (paused.clone(), stop.clone(), steps.clone());
    let handle = thread::spawn(move || {
        while !st.load(Ordering::SeqCst) {
            if p.load(Ordering::SeqCst) {
                thread::sleep(Duration::from_millis(1));
                continue;
            }
            rt.step(Some(Duration::from_millis(50))).unwrap();
            n.fetch_add(1, Ordering::SeqCst);
        }
    });
    let mut s = Session::accept(&listener, &srv.config);
    s.handshake();
    // The runtime stops between steps; then half a TLS record and the end
    // wait in its socket together.
    paused.store(true, Ordering::SeqCst);
    thread::sleep(Duration::from_millis(200));
    let before = steps.load(Ordering::SeqCst);
    s.tls.sock.write_all(&[0x17, 0x03, 0x03]).unwrap();
    s.tls.sock.shutdown(std::net::Shutdown::Write).unwrap();
    thread::sleep(Duration::from_millis(100));
    assert_eq!(
        steps.load(Ordering::SeqCst),
        before,
        "the runtime did not stop"
    );
    paused.store(false, Ordering::SeqCst);
    let waited = std::time::Instant::now();
    let mut again = Session::accept(&listener, &srv.config);
    again.handshake();
    assert!(
        waited.elapsed() < Duration::from_secs(5),
        "the end was seen after {:?}",
        waited.elapsed()
    );
    stop.store(true, Ordering::SeqCst);
    handle.join().unwrap();
    drop(s);
}

/// The coordinator's close_notify alone, its socket left open, ends the
/// session: the provider connects again.
#[test]
fn the_coordinators_close_notify_ends_the_session() {
    let srv = server();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let Running { stop, handle, .. } = spawn(runtime(port, Trust::PinnedKey(srv.spki), None));
    let mut s = Session::accept(&listener, &srv.config);
    s.handshake();
    s.tls.conn.send_close_notify();
    s.tls.flush().unwrap();
    // No FIN: `s` stays open. `accept` panics if no connection comes.
    let mut again = Session::accept(&listener, &srv.config);
    again.handshake();
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    handle.join().unwrap();
    drop(s);
}

/// While a coordinator reads nothing, a job's large output waits in the
/// agent, not in the runtime's send buffer: when it reads again, the answer
/// to its next offer comes after a few MiB of output chunks, not after the
/// whole output.
#[test]
fn an_offer_is_answered_ahead_of_most_of_a_large_output() {
    const BIG: u64 = 64 << 20;
    let _alone = MEMORY.lock().unwrap_or_else(|p| p.into_inner());
    let srv = server();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let executor = FnExecutor(|_job: &JobToRun| {
        Ok(JobOutputs {
            outputs: vec![vec![0x5a; BIG as usize]],
            usage: Usage {
                gpu_time_us: 10,
                dispatches: 1,
                ..Usage::default()
            },
        })
    });
    let rt = runtime_with(port, Trust::PinnedKey(srv.spki), None, executor);
    let Running { stop, handle, .. } = spawn(rt);
    let mut s = Session::accept(&listener, &srv.config);
    s.handshake();
    let mut j = job();
    j.buffers = vec![
        ((0..1000u32).map(|i| i as u8).collect(), 1000, false),
        (Vec::new(), BIG, true),
    ];
    assert!(matches!(
        Message::decode(&s.offer(&j, 1)),
        Ok(Message::OfferAccept(_))
    ));
    s.assign(&j, 1);
    s.tls.flush().unwrap();
    // The job runs and its outputs fill the sockets meanwhile.
    thread::sleep(Duration::from_secs(2));
    let mut j2 = job();
    j2.nonce = [0x22; 32];
    s.send(&Message::JobOffer(j2.offer(2, 1_000_000, 60_000)));
    let mut ahead = 0u64;
    loop {
        match Message::decode(&s.next()).unwrap() {
            Message::OutputChunk(c) => ahead += c.data.len() as u64,
            Message::OfferAccept(_) | Message::OfferDecline(_) => break,
            _ => {}
        }
    }
    assert!(
        ahead < BIG / 4,
        "{ahead} output bytes went ahead of the answer"
    );
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    drop(s);
    handle.join().unwrap();
}

/// An executor that takes batches: jobs queued while one runs reach it
/// together, and each result it reports (here in reverse order) reaches
/// the coordinator with its own verified receipt.
#[test]
fn jobs_queued_while_one_runs_reach_a_batching_executor_together() {
    struct Batching {
        gate: std::sync::mpsc::Receiver<()>,
        started: std::sync::mpsc::Sender<u64>,
        sizes: Arc<std::sync::Mutex<Vec<usize>>>,
    }
    impl tessera_core::net::Executor for Batching {
        fn run(&mut self, job: &JobToRun) -> Result<JobOutputs, tessera_core::net::JobFailure> {
            self.sizes.lock().unwrap().push(1);
            self.started.send(job.id).unwrap();
            self.gate
                .recv_timeout(Duration::from_secs(20))
                .expect("the test releases the first job");
            increment(job)
        }
        fn batch_size(&self) -> usize {
            4
        }
        fn run_batch(
            &mut self,
            jobs: &[&JobToRun],
            done: &mut dyn FnMut(usize, Result<JobOutputs, tessera_core::net::JobFailure>),
        ) {
            self.sizes.lock().unwrap().push(jobs.len());
            for (i, job) in jobs.iter().enumerate().rev() {
                done(i, increment(job));
            }
        }
    }
    let srv = server();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (started_tx, started) = std::sync::mpsc::channel();
    let (release, gate) = std::sync::mpsc::channel::<()>();
    let sizes = Arc::new(std::sync::Mutex::new(Vec::new()));
    let executor = Batching {
        gate,
        started: started_tx,
        sizes: sizes.clone(),
    };
    let rt = runtime_with(port, Trust::PinnedKey(srv.spki), None, executor);
    let Running { handle, stop, .. } = spawn(rt);
    let mut s = Session::accept(&listener, &srv.config);
    let pk = s.handshake();
    let jobs: Vec<JobDescription> = (1..=4u8)
        .map(|n| JobDescription {
            nonce: [n; 32],
            ..job()
        })
        .collect();
    for (id, j) in (1..).zip(&jobs) {
        assert!(matches!(
            Message::decode(&s.offer(j, id)),
            Ok(Message::OfferAccept(_))
        ));
        s.assign(j, id);
        s.tls.flush().unwrap();
        if id == 1 {
            assert_eq!(started.recv_timeout(Duration::from_secs(20)), Ok(1));
        } else {
            s.until(|m| matches!(m, Message::Started(r) if r.job == id));
        }
    }
    release.send(()).unwrap();
    let mut verifier = ReceiptVerifier::new(pk, ChainState::default());
    for id in [1u64, 4, 3, 2] {
        let (out, receipt) = s.collect(id);
        assert_eq!(out, expected(), "job {id}");
        verifier
            .verify_next(&receipt, Some(&jobs[id as usize - 1].nonce))
            .unwrap();
        s.send(&Message::ResultAck(JobRef { job: id }));
    }
    assert_eq!(*sizes.lock().unwrap(), vec![1, 3]);
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    handle.join().unwrap();
}

/// Outputs larger than one turn's upload go out turn after turn without
/// waiting for anything to wake the runtime: the runtime here sleeps until
/// its next timer (it has none: the session has no heartbeat), and nothing
/// arrives from the coordinator meanwhile.
#[test]
fn a_large_output_goes_out_without_waiting_for_a_wake_up() {
    const OUT: usize = 256 << 10;
    let srv = server();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let executor = FnExecutor(|_job: &JobToRun| {
        Ok(JobOutputs {
            outputs: vec![vec![0x5a; OUT]],
            usage: Usage {
                gpu_time_us: 10,
                dispatches: 1,
                ..Usage::default()
            },
        })
    });
    let mut rt = runtime_with(port, Trust::PinnedKey(srv.spki), None, executor);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = stop.clone();
    let handle = thread::spawn(move || {
        while !stop2.load(std::sync::atomic::Ordering::SeqCst) {
            rt.step(None).unwrap();
        }
    });
    let mut s = Session::accept(&listener, &srv.config);
    s.handshake();
    // Three jobs: a turn may also be woken by chance (the socket filling
    // up for a moment), rarely for all of them.
    for id in 1..=3u64 {
        let mut j = job();
        j.nonce = [id as u8; 32];
        j.buffers = vec![
            ((0..1000u32).map(|i| i as u8).collect(), 1000, false),
            (Vec::new(), OUT as u64, true),
        ];
        assert!(matches!(
            Message::decode(&s.offer(&j, id)),
            Ok(Message::OfferAccept(_))
        ));
        s.assign(&j, id);
        s.tls.flush().unwrap();
        s.until(|m| matches!(m, Message::Started(r) if r.job == id));
        let t = std::time::Instant::now();
        let (out, _) = s.collect(id);
        let took = t.elapsed();
        assert_eq!(out.len(), OUT);
        // Eight turns. The socket takes each turn's bytes at once, so it
        // does not say it is writable: a turn that waited for a wake-up
        // would wait the runtime's longest sleep (200 ms). Sending them
        // all takes a few milliseconds.
        assert!(
            took < Duration::from_millis(100),
            "job {id}: {OUT} output bytes took {took:?}"
        );
        s.send(&Message::ResultAck(JobRef { job: id }));
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    drop(s);
    handle.join().unwrap();
}

/// A result waiting for its batch is signed when the coordinator's delay
/// ends, to the microsecond: the poll's own timeout is whole milliseconds,
/// rounded up, which would keep a 200 µs wait past a millisecond.
#[test]
fn a_batch_is_signed_when_its_delay_ends_not_at_the_next_millisecond() {
    use tessera_core::wire::Batching;
    let srv = server();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let rt = runtime(port, Trust::PinnedKey(srv.spki), None);
    let Running { stop, handle, .. } = spawn(rt);
    let mut s = Session::accept(&listener, &srv.config);
    s.handshake_version(2);
    s.send(&Message::Batching(Batching {
        max_receipts: 8,
        max_delay_us: 200,
    }));
    // A job accepted and never assigned could still join a batch, so each
    // result after it waits for the delay.
    let mut held = job();
    held.nonce = [0xee; 32];
    assert!(matches!(
        Message::decode(&s.offer(&held, 100)),
        Ok(Message::OfferAccept(_))
    ));
    // Each result's wait, from its output chunk (sent in the turn its run
    // ended) to its receipt. Those under 100 µs measured nothing: both came
    // in one read, the chunk having left late. Of the others any one can
    // run long on a busy machine, or end early when something else wakes
    // the runtime: most count.
    let mut waits = Vec::new();
    for id in 1..=11u64 {
        // Outputs of one chunk, which go out in the turn the job ends.
        let mut j = job();
        j.nonce = [id as u8; 32];
        j.buffers = vec![((0..64u8).collect(), 64, false), (Vec::new(), 64, true)];
        assert!(matches!(
            Message::decode(&s.offer(&j, id)),
            Ok(Message::OfferAccept(_))
        ));
        s.assign(&j, id);
        s.tls.flush().unwrap();
        let mut chunk = None;
        loop {
            match Message::decode(&s.next()).unwrap() {
                Message::OutputChunk(c) if c.job == id => chunk = Some(std::time::Instant::now()),
                Message::Receipt(r) if r.job == id => break,
                _ => {}
            }
        }
        waits.push(chunk.expect("outputs before the receipt").elapsed());
        s.send(&Message::ResultAck(JobRef { job: id }));
    }
    let measured: Vec<_> = waits
        .iter()
        .filter(|w| **w >= Duration::from_micros(100))
        .collect();
    let prompt = measured
        .iter()
        .filter(|w| ***w < Duration::from_micros(900))
        .count();
    assert!(
        measured.len() >= 3 && prompt * 2 > measured.len(),
        "with a 200 µs batch delay, {prompt} of {} waits were under 900 µs: {waits:?}",
        measured.len()
    );
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    drop(s);
    handle.join().unwrap();
}

/// Runs jobs as `increment` does, anywhere it is called, and records the
/// name of each run's thread; `panic` makes a run panic, `close` makes the
/// executor take no work after a run (until reopened), `blink` makes it
/// say so once after a run and take work again at once.
struct Anywhere {
    threads: Arc<std::sync::Mutex<Vec<Option<String>>>>,
    panic: bool,
    open: Arc<std::sync::atomic::AtomicBool>,
    close: bool,
    blink: bool,
    blinked: bool,
    /// How long each run takes.
    sleep: Duration,
    anywhere: bool,
    dropped: Arc<std::sync::atomic::AtomicBool>,
}

impl Drop for Anywhere {
    fn drop(&mut self) {
        self.dropped
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Anywhere {
    fn new(anywhere: bool) -> Self {
        Anywhere {
            threads: Arc::default(),
            panic: false,
            open: Arc::new(std::sync::atomic::AtomicBool::new(true)),
            close: false,
            blink: false,
            blinked: false,
            sleep: Duration::ZERO,
            anywhere,
            dropped: Arc::default(),
        }
    }
}

impl tessera_core::net::Executor for Anywhere {
    fn run(&mut self, job: &JobToRun) -> Result<JobOutputs, tessera_core::net::JobFailure> {
        let name = thread::current().name().map(str::to_string);
        self.threads.lock().unwrap().push(name);
        assert!(!self.panic, "a run that panics");
        if self.close {
            self.open.store(false, std::sync::atomic::Ordering::SeqCst);
        }
        self.blinked = self.blink;
        thread::sleep(self.sleep);
        increment(job)
    }

    fn accepting_jobs(&mut self) -> bool {
        if std::mem::take(&mut self.blinked) {
            return false;
        }
        self.open.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn may_run_inline(&mut self, _: &JobToRun) -> bool {
        self.anywhere
    }
}

const WORKER: Option<&str> = Some("tessera-executor");

/// Offers job `id` of `j` due within `deadline_ms`, assigns it, and
/// returns its outputs and the status its verified receipt gives.
fn run_due(
    s: &mut Session,
    key: &[u8; 32],
    j: &JobDescription,
    id: u64,
    deadline_ms: u32,
) -> (Vec<u8>, ReceiptStatus) {
    s.send(&Message::JobOffer(j.offer(id, 1_000_000, deadline_ms)));
    let f = s.until(|m| matches!(m, Message::OfferDecline(_) | Message::OfferAccept(_)));
    assert!(
        matches!(Message::decode(&f).unwrap(), Message::OfferAccept(_)),
        "job {id} declined"
    );
    s.assign(j, id);
    let (out, receipt) = s.collect(id);
    let status = tessera_core::attest::Receipt::verify(&receipt, key)
        .unwrap()
        .status;
    s.send(&Message::ResultAck(JobRef { job: id }));
    (out, status)
}

/// The runtime's thread runs a job it holds alone and that is due within
/// `NetConfig::inline_deadline`, when the executor allows it; the worker
/// runs the others: a job due later, one while another is held, any job of
/// an executor bound to its thread, and every job with the setting at zero.
#[test]
fn a_job_due_soon_runs_on_the_runtimes_thread_when_nothing_else_is_held() {
    for (anywhere, inline_deadline) in [(true, None), (false, None), (true, Some(Duration::ZERO))] {
        let ex = Anywhere::new(anywhere);
        let threads = ex.threads.clone();
        let (mut s, key, Running { handle, drain, .. }) = connected_with(config(), ex, |net| {
            if let Some(d) = inline_deadline {
                net.inline_deadline = d;
            }
        });
        let j = job();
        // Due within 200 ms, then within 60 s.
        assert_eq!(
            run_due(&mut s, &key, &j, 1, 200),
            (expected(), ReceiptStatus::Completed)
        );
        assert_eq!(
            run_due(&mut s, &key, &j, 2, 60_000),
            (expected(), ReceiptStatus::Completed)
        );
        // Due soon, but held beside another job (offered, not yet assigned).
        s.send(&Message::JobOffer(j.offer(3, 1_000_000, 60_000)));
        s.until(|m| matches!(m, Message::OfferAccept(a) if a.job == 3));
        assert_eq!(
            run_due(&mut s, &key, &j, 4, 200),
            (expected(), ReceiptStatus::Completed)
        );
        s.send(&Message::Cancel(tessera_core::wire::Cancel {
            job: 3,
            reason: 1,
        }));
        drain.drain();
        s.until(|m| matches!(m, Message::Goodbye(_)));
        assert!(handle.join().unwrap().is_finished());
        let threads = threads.lock().unwrap().clone();
        let here = anywhere && inline_deadline.is_none();
        assert_eq!(threads.len(), 3, "{threads:?}");
        assert_eq!(
            threads[0].as_deref() != WORKER,
            here,
            "job 1 ran on {threads:?}"
        );
        assert_eq!(threads[1].as_deref(), WORKER, "job 2 ran on {threads:?}");
        assert_eq!(threads[2].as_deref(), WORKER, "job 4 ran on {threads:?}");
    }
}

/// A run on the runtime's thread that leaves the device taking no work:
/// offers are declined at once, and the worker, told to, notices when the
/// device takes work again.
#[test]
fn a_device_that_a_run_on_the_runtimes_thread_leaves_unavailable_comes_back() {
    use tessera_core::wire::DeclineReason;
    let mut ex = Anywhere::new(true);
    ex.close = true;
    let (open, threads) = (ex.open.clone(), ex.threads.clone());
    let (mut s, key, Running { handle, drain, .. }) = connected(ex);
    let j = job();
    assert_eq!(
        run_due(&mut s, &key, &j, 1, 200),
        (expected(), ReceiptStatus::Completed)
    );
    assert_ne!(threads.lock().unwrap()[0].as_deref(), WORKER);
    let f = s.offer(&j, 2);
    assert_eq!(
        Message::decode(&f).unwrap(),
        Message::OfferDecline(tessera_core::wire::OfferDecline {
            job: 2,
            reason: DeclineReason::Unavailable,
        })
    );
    open.store(true, std::sync::atomic::Ordering::SeqCst);
    s.until(|m| matches!(m, Message::Heartbeat(h) if h.capacity > 0));
    accepted_then_cancelled(&mut s, &j, 3);
    drain.drain();
    s.until(|m| matches!(m, Message::Goodbye(_)));
    let rt = handle.join().unwrap();
    assert!(!rt.status().device_unavailable);
}

/// A run on the runtime's thread after which the executor says it takes no
/// work, and then at once that it does: the worker, asked to look, says
/// so, and offers are taken again (it used to report only a change from
/// what it last saw itself, which was no change).
#[test]
fn a_device_unavailable_for_an_instant_after_a_run_on_the_runtimes_thread_takes_work_again() {
    let mut ex = Anywhere::new(true);
    ex.blink = true;
    let threads = ex.threads.clone();
    let (mut s, key, Running { handle, drain, .. }) = connected(ex);
    let j = job();
    assert_eq!(
        run_due(&mut s, &key, &j, 1, 200),
        (expected(), ReceiptStatus::Completed)
    );
    s.until(|m| matches!(m, Message::Heartbeat(h) if h.capacity > 0));
    accepted_then_cancelled(&mut s, &j, 2);
    drain.drain();
    s.until(|m| matches!(m, Message::Goodbye(_)));
    let rt = handle.join().unwrap();
    assert!(!rt.status().device_unavailable);
    assert_ne!(threads.lock().unwrap()[0].as_deref(), WORKER);
}

/// A run on the runtime's thread that ends past the job's deadline, where
/// the agent's own deadline could not fire meanwhile, times out as it
/// would have on the worker: no outputs, a `Timeout` receipt.
#[test]
fn a_run_on_the_runtimes_thread_that_ends_past_the_deadline_times_out() {
    let mut ex = Anywhere::new(true);
    ex.sleep = Duration::from_millis(150);
    let threads = ex.threads.clone();
    let (mut s, key, Running { handle, drain, .. }) = connected(ex);
    let j = job();
    let timeout = ReceiptStatus::Failed(tessera_core::wire::FailReason::Timeout);
    assert_eq!(run_due(&mut s, &key, &j, 1, 100), (Vec::new(), timeout));
    assert_ne!(threads.lock().unwrap()[0].as_deref(), WORKER);
    // The agent serves on.
    assert_eq!(
        run_due(&mut s, &key, &j, 2, 60_000),
        (expected(), ReceiptStatus::Completed)
    );
    drain.drain();
    s.until(|m| matches!(m, Message::Goodbye(_)));
    assert!(handle.join().unwrap().is_finished());
}

/// A run that panics on the runtime's thread fails its job (`Host`, in a
/// signed receipt); the executor gets no more jobs, as when the worker
/// thread dies, and is dropped; offers are declined from then on, and the
/// runtime drains.
#[test]
fn a_run_that_panics_on_the_runtimes_thread_fails_its_job_and_the_runtime_goes_on() {
    let mut ex = Anywhere::new(true);
    ex.panic = true;
    let (threads, dropped) = (ex.threads.clone(), ex.dropped.clone());
    let (mut s, key, Running { handle, drain, .. }) = connected(ex);
    let j = job();
    let host = ReceiptStatus::Failed(tessera_core::wire::FailReason::Host);
    assert_eq!(run_due(&mut s, &key, &j, 1, 200), (Vec::new(), host));
    assert_ne!(threads.lock().unwrap()[0].as_deref(), WORKER);
    for id in [2, 3] {
        let f = s.offer(&j, id);
        assert_eq!(
            Message::decode(&f).unwrap(),
            Message::OfferDecline(tessera_core::wire::OfferDecline {
                job: id,
                reason: tessera_core::wire::DeclineReason::Unavailable,
            })
        );
    }
    let until = std::time::Instant::now() + Duration::from_secs(10);
    while !dropped.load(std::sync::atomic::Ordering::SeqCst) && std::time::Instant::now() < until {
        thread::sleep(Duration::from_millis(10));
    }
    assert!(
        dropped.load(std::sync::atomic::Ordering::SeqCst),
        "the executor is kept"
    );
    drain.drain();
    s.until(|m| matches!(m, Message::Goodbye(_)));
    let rt = handle.join().unwrap();
    assert!(rt.is_finished());
    assert!(rt.status().device_unavailable);
    assert_eq!(threads.lock().unwrap().len(), 1, "the executor ran again");
}

/// The Vulkan host on the runtime's thread (lavapipe in CI, validation on):
/// a copy job due soon runs there with the right outputs; a kernel that
/// never ends, due as soon, runs there only once validated, holds the loop
/// only until its deadline and the device's replacement, and fails with
/// `Timeout`; the next job runs.
#[cfg(feature = "vulkan")]
#[test]
fn the_vulkan_host_runs_a_job_due_soon_on_the_runtimes_thread_and_a_hang_ends_at_its_deadline() {
    use tessera_core::gpu_host::GpuHost;
    use tessera_core::vulkan::DeviceSelector;
    use tessera_core::wire::FailReason;

    /// The host, recording each run's thread and what the validation
    /// layer said.
    struct Where {
        gpu: GpuHost,
        threads: Arc<std::sync::Mutex<Vec<Option<String>>>>,
    }
    impl tessera_core::net::Executor for Where {
        fn run(&mut self, job: &JobToRun) -> Result<JobOutputs, tessera_core::net::JobFailure> {
            let name = thread::current().name().map(str::to_string);
            self.threads.lock().unwrap().push(name);
            let r = self.gpu.run(job);
            let msgs = self.gpu.dispatcher().validation_messages();
            assert!(msgs.is_empty(), "validation messages: {msgs:#?}");
            r
        }
        fn accepting_jobs(&mut self) -> bool {
            self.gpu.accepting_jobs()
        }
        fn may_run_inline(&mut self, job: &JobToRun) -> bool {
            self.gpu.may_run_inline(job)
        }
    }

    let gpu = GpuHost::open(DeviceSelector::Default, true).expect("a Vulkan device");
    let mut config = config();
    config.capabilities = gpu.capabilities().clone();
    let threads = Arc::default();
    let ex = Where {
        gpu,
        threads: Arc::clone(&threads),
    };
    let (mut s, key, Running { handle, drain, .. }) = connected_with(config, ex, |_| {});
    let kernel = |name: &str| {
        std::fs::read(format!("{}/kernels/{name}.spv", env!("CARGO_MANIFEST_DIR"))).unwrap()
    };
    let input: Vec<u8> = (0..4096u32).map(|i| (i * 7) as u8).collect();
    let copy = JobDescription {
        kernel: kernel("copy"),
        entry_point: "main".into(),
        grid: [1, 1, 1],
        push_constants: 256u32.to_le_bytes().to_vec(),
        buffers: vec![(input.clone(), 4096, false), (Vec::new(), 4096, true)],
        nonce: [0x21; 32],
        bindings: Vec::new(),
    };
    let hang = JobDescription {
        kernel: kernel("hostile_loop"),
        entry_point: "main".into(),
        grid: [65535, 1, 1],
        push_constants: Vec::new(),
        buffers: vec![(Vec::new(), 64, true)],
        nonce: [0x22; 32],
        bindings: Vec::new(),
    };
    // A kernel the validator has not passed goes to the worker even when
    // due soon (the validator has a time limit of its own): the copy kernel
    // (passed in the start-up benchmark) due within 250 ms runs here; the
    // hanging kernel, new, due as soon, on the worker; then again here.
    let done = (input.clone(), ReceiptStatus::Completed);
    assert_eq!(run_due(&mut s, &key, &copy, 1, 250), done);
    let timeout = ReceiptStatus::Failed(FailReason::Timeout);
    assert_eq!(run_due(&mut s, &key, &hang, 2, 250), (Vec::new(), timeout));
    let t = std::time::Instant::now();
    assert_eq!(run_due(&mut s, &key, &hang, 3, 250), (Vec::new(), timeout));
    let took = t.elapsed();
    assert!(took < Duration::from_secs(5), "the loop was held {took:?}");
    eprintln!("the hanging job held the loop {took:?}");
    assert_eq!(run_due(&mut s, &key, &copy, 4, 60_000), done);
    drain.drain();
    s.until(|m| matches!(m, Message::Goodbye(_)));
    assert!(handle.join().unwrap().is_finished());
    let threads = threads.lock().unwrap().clone();
    let here: Vec<bool> = threads.iter().map(|t| t.as_deref() != WORKER).collect();
    assert_eq!(here, [true, false, true, false], "{threads:?}");
}
