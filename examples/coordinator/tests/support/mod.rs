//! A minimal blocking provider for the network tests: a rustls client
//! stream driving a `tessera_core::Agent` directly, with the test kit's
//! `Host` running jobs on a CPU function. Options make it misbehave in the
//! ways the tests need (tampering with a receipt, dropping the connection).

#![allow(dead_code)]

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use rustls::ClientConfig;
use tessera_coordinator::certs::{self, CertBundle};
use tessera_coordinator::requester;
use tessera_coordinator::tls::{client_config, server_config, Trust};
use tessera_coordinator::{Config, Coordinator};
use tessera_core::agent::Stats;
use tessera_core::attest::{ChainState, DeviceCapabilities, Ed25519Signer, Signer};
use tessera_core::testkit::{encode, FrameSplitter, Host, RunFn};
use tessera_core::wire::{features, Hello, Message, MessageType, Welcome};
use tessera_core::{Agent, LinearPrice, Policy};

/// One throwaway CA and server certificate for the whole test binary.
pub fn bundle() -> &'static CertBundle {
    static BUNDLE: std::sync::OnceLock<CertBundle> = std::sync::OnceLock::new();
    BUNDLE.get_or_init(|| certs::generate(&[]).expect("certificates"))
}

/// A client configuration trusting the test CA.
pub fn client_tls() -> Arc<ClientConfig> {
    client_config(&Trust::CaPem(bundle().ca_pem.clone().into_bytes())).expect("client config")
}

/// A coordinator on 127.0.0.1:0 with short timers.
pub fn coordinator(tweak: impl FnOnce(&mut Config)) -> Coordinator {
    let b = bundle();
    let tls = server_config(b.server_chain_pem.as_bytes(), b.server_key_pem.as_bytes())
        .expect("server config");
    let mut config = Config::new("127.0.0.1:0".parse().expect("addr"), Arc::new(tls));
    config.heartbeat_ms = 500;
    config.offer_timeout = Duration::from_secs(2);
    config.deadline_grace = Duration::from_millis(500);
    // Every test peer connects from 127.0.0.1: one address for all.
    config.max_connections_per_ip = config.max_connections;
    tweak(&mut config);
    Coordinator::start(config).expect("coordinator starts")
}

/// How a test provider behaves.
#[derive(Clone)]
pub struct ProviderOpts {
    /// Where every byte the coordinator sent it (after TLS) is appended:
    /// the coordinator's traffic to this provider, as a test reads it.
    pub record: Option<Arc<std::sync::Mutex<Vec<u8>>>>,
    pub seed: [u8; 32],
    pub name: &'static str,
    pub price: LinearPrice,
    pub floor: u64,
    pub run: RunFn,
    /// Flip a bit of the first receipt it sends.
    pub tamper_receipt_once: bool,
    /// Close the connection right after sending the first `Completed`.
    pub drop_after_completed_once: bool,
    /// Close the connection right after sending the first receipt, before
    /// the acknowledgement can arrive.
    pub drop_after_receipt_once: bool,
    /// Stop doing anything once it has accepted an offer (a hung device).
    pub freeze_after_accept: bool,
    /// Read timeout of its poll loop.
    pub poll: Duration,
    /// Hard bound on its life.
    pub max_life: Duration,
    /// Where its receipt chain starts (a restarted device).
    pub chain: ChainState,
}

impl ProviderOpts {
    pub fn new(seed: u8) -> ProviderOpts {
        ProviderOpts {
            seed: [seed; 32],
            name: "cpu test device",
            price: LinearPrice {
                base: 100,
                per_gpu_ms: 1,
                per_mib_in: 1,
                per_mib_out: 1,
            },
            floor: 0,
            run: tessera_core::testkit::increment_run,
            tamper_receipt_once: false,
            drop_after_completed_once: false,
            drop_after_receipt_once: false,
            freeze_after_accept: false,
            poll: Duration::from_millis(5),
            max_life: Duration::from_secs(50),
            chain: ChainState::default(),
            record: None,
        }
    }
}

/// What a provider did, when it stopped.
#[derive(Debug)]
pub struct ProviderReport {
    pub stats: Stats,
    pub sessions: usize,
    pub refused: bool,
    pub chain: ChainState,
    pub log: Vec<String>,
}

/// A provider running on its own thread.
pub struct TestProvider {
    stop: Arc<AtomicBool>,
    ready: Arc<AtomicUsize>,
    acked: Arc<AtomicUsize>,
    join: Option<JoinHandle<ProviderReport>>,
}

impl TestProvider {
    pub fn start(addr: SocketAddr, opts: ProviderOpts) -> TestProvider {
        Self::start_with(addr, client_tls(), opts)
    }

    /// Starts a provider trusting the coordinator as `tls` says.
    pub fn start_with(
        addr: SocketAddr,
        tls: Arc<ClientConfig>,
        opts: ProviderOpts,
    ) -> TestProvider {
        let stop = Arc::new(AtomicBool::new(false));
        let ready = Arc::new(AtomicUsize::new(0));
        let acked = Arc::new(AtomicUsize::new(0));
        let (s, r, a) = (Arc::clone(&stop), Arc::clone(&ready), Arc::clone(&acked));
        let join = thread::spawn(move || run(addr, tls, opts, s, r, a));
        TestProvider {
            stop,
            ready,
            acked,
            join: Some(join),
        }
    }

    /// Sessions that reached Ready so far.
    pub fn ready_sessions(&self) -> usize {
        self.ready.load(Ordering::SeqCst)
    }

    /// Waits (bounded) until `n` sessions reached Ready.
    pub fn wait_ready(&self, n: usize) {
        let until = Instant::now() + Duration::from_secs(10);
        while self.ready_sessions() < n {
            assert!(Instant::now() < until, "provider never became ready");
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// Waits (bounded) until the coordinator acknowledged `n` results.
    pub fn wait_acked(&self, n: usize) {
        let until = Instant::now() + Duration::from_secs(10);
        while self.acked.load(Ordering::SeqCst) < n {
            assert!(Instant::now() < until, "results never acknowledged");
            thread::sleep(Duration::from_millis(5));
        }
    }

    pub fn stop(mut self) -> ProviderReport {
        self.stop.store(true, Ordering::SeqCst);
        self.join
            .take()
            .expect("joined once")
            .join()
            .expect("provider thread")
    }
}

impl Drop for TestProvider {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(j) = self.join.take() {
            let _ = j.join();
        }
    }
}

fn agent_config(opts: &ProviderOpts) -> tessera_core::Config {
    let mut capabilities = DeviceCapabilities {
        features: features::FLOAT16 | features::ROBUST_BUFFER_ACCESS,
        device_local_bytes: 1 << 30,
        ..DeviceCapabilities::default()
    };
    let _ = capabilities.name.push_str(opts.name);
    tessera_core::Config {
        agent_version: [0, 1, 0],
        boot_id: [opts.seed[0]; 16],
        capabilities,
        policy: Policy {
            price: opts.price,
            floor: opts.floor,
            ..Policy::default()
        },
        persist_results: false,
    }
}

fn run(
    addr: SocketAddr,
    tls: Arc<ClientConfig>,
    opts: ProviderOpts,
    stop: Arc<AtomicBool>,
    ready: Arc<AtomicUsize>,
    acked: Arc<AtomicUsize>,
) -> ProviderReport {
    let start = Instant::now();
    let now = || tessera_core::Instant::from_micros(start.elapsed().as_micros() as u64 + 1);
    let signer = Ed25519Signer::from_seed(&opts.seed).expect("seed");
    let mut agent = Agent::new(agent_config(&opts), signer, opts.chain).expect("agent");
    let mut host = Host::new(opts.run);
    let mut tamper = opts.tamper_receipt_once;
    let mut drop_after = opts.drop_after_completed_once;
    let mut drop_after_receipt = opts.drop_after_receipt_once;
    let mut sessions = 0;
    let mut refused = false;
    let mut buf = vec![0u8; 16 * 1024];

    'sessions: while !stop.load(Ordering::SeqCst) && start.elapsed() < opts.max_life {
        let mut stream = match requester::connect(addr, Arc::clone(&tls)) {
            Ok(s) => s,
            Err(_) => {
                thread::sleep(Duration::from_millis(20));
                continue;
            }
        };
        let _ = stream.sock.set_read_timeout(Some(opts.poll));
        // A session key per session, as the runtime draws one: sealed jobs
        // of this session open with it only.
        host.job_host
            .new_session_key(&mut agent)
            .expect("session key");
        if agent.connect(now()).is_err() {
            host.drain_events(&mut agent);
            continue;
        }
        sessions += 1;
        host.disconnect_requested = false;
        let mut counted = false;
        let mut splitter = FrameSplitter::default();
        let mut pending: Vec<u8> = Vec::new();
        let mut out = vec![0u8; 16 * 1024];
        loop {
            if stop.load(Ordering::SeqCst) || start.elapsed() >= opts.max_life {
                let _ = stream.sock.shutdown(Shutdown::Both);
                agent.disconnected(now());
                break 'sessions;
            }
            // Everything the agent can do without new input.
            let mut lost = false;
            for _ in 0..10_000 {
                while let Some(n) = agent.poll_transmit(now(), &mut out) {
                    splitter.push(&out[..n]);
                }
                while let Some(mut f) = splitter.next_frame() {
                    let kind = f.get(3).copied();
                    if tamper && kind == Some(MessageType::Receipt as u8) {
                        let last = f.len() - 1;
                        f[last] ^= 0x01;
                        tamper = false;
                    }
                    if stream.write_all(&f).is_err() {
                        lost = true;
                        break;
                    }
                    if opts.freeze_after_accept && kind == Some(MessageType::OfferAccept as u8) {
                        let _ = stream.flush();
                        while !stop.load(Ordering::SeqCst) && start.elapsed() < opts.max_life {
                            thread::sleep(Duration::from_millis(10));
                        }
                        break 'sessions;
                    }
                    let completed = kind == Some(MessageType::Completed as u8);
                    let receipt = kind == Some(MessageType::Receipt as u8);
                    if (drop_after && completed) || (drop_after_receipt && receipt) {
                        drop_after &= !completed;
                        drop_after_receipt &= !receipt;
                        let _ = stream.flush();
                        lost = true;
                        break;
                    }
                }
                if lost {
                    break;
                }
                let _ = stream.flush();
                host.drain_events(&mut agent);
                let worked = host.work(now(), &mut agent, &mut |b| splitter.push(b));
                let mut fed = 0;
                if !pending.is_empty() && !host.disconnect_requested {
                    match agent.handle_input(now(), &pending) {
                        Ok(n) => fed = n,
                        Err(e) => fed = e.consumed,
                    }
                    pending.drain(..fed);
                }
                if fed == 0 && !worked && agent.pending_transmit() == 0 {
                    break;
                }
            }
            host.drain_events(&mut agent);
            let stats = agent.stats();
            acked.store(
                (stats.jobs_completed + stats.jobs_failed) as usize,
                Ordering::SeqCst,
            );
            if !counted && agent.state() == tessera_core::ConnState::Ready {
                counted = true;
                ready.fetch_add(1, Ordering::SeqCst);
            }
            if host.disconnect_requested {
                refused |= host.log.iter().any(|l| l.contains("Refused"));
                let drained = host.log.iter().any(|l| l.contains("Drained"));
                let _ = stream.sock.shutdown(Shutdown::Both);
                if refused || drained {
                    break 'sessions;
                }
                thread::sleep(Duration::from_millis(20));
                continue 'sessions;
            }
            if lost {
                let _ = stream.sock.shutdown(Shutdown::Both);
                agent.disconnected(now());
                host.drain_events(&mut agent);
                thread::sleep(Duration::from_millis(20));
                continue 'sessions;
            }
            if pending.is_empty() {
                match stream.read(&mut buf) {
                    Ok(0) => {
                        agent.disconnected(now());
                        host.drain_events(&mut agent);
                        continue 'sessions;
                    }
                    Ok(n) => {
                        if let Some(record) = &opts.record {
                            if let Ok(mut r) = record.lock() {
                                r.extend_from_slice(&buf[..n]);
                            }
                        }
                        pending.extend_from_slice(&buf[..n]);
                    }
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                        ) => {}
                    Err(_) => {
                        agent.disconnected(now());
                        host.drain_events(&mut agent);
                        continue 'sessions;
                    }
                }
            }
            if let Some(t) = agent.poll_timeout() {
                if now() >= t {
                    agent.handle_timeout(now());
                }
            }
        }
    }
    host.drain_events(&mut agent);
    ProviderReport {
        stats: agent.stats(),
        sessions,
        refused,
        chain: agent.chain(),
        log: host.log.clone(),
    }
}

/// The next provider-protocol frame on `stream`, within 5 s; `None` at its
/// end or after that.
pub fn read_provider_frame(
    stream: &mut impl Read,
    splitter: &mut FrameSplitter,
) -> Option<Vec<u8>> {
    let mut buf = [0u8; 16 << 10];
    let until = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(f) = splitter.next_frame() {
            return Some(f);
        }
        if Instant::now() > until {
            return None;
        }
        match stream.read(&mut buf) {
            Ok(0) => return None,
            Ok(n) => splitter.push(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == io::ErrorKind::TimedOut => {}
            Err(_) => return None,
        }
    }
}

/// A hand-made provider's `Hello` for `signer`'s key (a new chain) on
/// `stream`, and the coordinator's `Welcome`.
pub fn provider_hello(
    stream: &mut (impl Read + Write),
    signer: &Ed25519Signer,
    splitter: &mut FrameSplitter,
) -> Welcome {
    let hello = Message::Hello(Hello {
        min_version: 1,
        max_version: 1,
        agent_version: [0, 1, 0],
        key_id: signer.key_id(),
        next_sequence: 1,
        prev_hash: [0; 32],
    });
    stream.write_all(&encode(&hello)).expect("hello");
    let welcome = read_provider_frame(stream, splitter).expect("welcome");
    match Message::decode(&welcome) {
        Ok(Message::Welcome(w)) => w,
        other => panic!("expected Welcome, got {other:?}"),
    }
}
