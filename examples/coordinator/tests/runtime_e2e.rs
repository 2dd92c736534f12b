//! The provider's real network runtime (`tessera_core::net::Runtime`: mio,
//! rustls, the file store) against the reference coordinator on loopback,
//! through a proxy that breaks the connection on purpose: killed during the
//! transfer and during the run, a coordinator restart, an agent restart
//! holding an unacknowledged result, a slow link, garbage on the socket, a
//! coordinator with the wrong certificate, 1,000 sequential jobs and 100
//! agents at once. Whatever happens, every result a requester is given
//! verifies, and every provider's receipts form one unbroken chain: no receipt
//! is lost.

mod support;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use support::{bundle, client_tls, coordinator};
use tessera_coordinator::requester::{new_nonce, Requester};
use tessera_coordinator::{verify_result, BufferInit, Coordinator, JobResult, Submit};
use tessera_core::attest::{ChainState, DeviceCapabilities, Ed25519Signer, ReceiptVerifier};
use tessera_core::net::{
    client_config, FnExecutor, JobFailure, JobOutputs, JobToRun, NetConfig, Runtime, Trust,
};
use tessera_core::wire::{Requirements, Usage};
use tessera_core::{Config, LinearPrice, Policy};

// ----- a fault-injecting TCP proxy ------------------------------------------

#[derive(Default)]
struct Faults {
    /// Close every connection once this many bytes went coordinator → agent.
    kill_after_down: Option<usize>,
    /// Stop forwarding coordinator → agent (acknowledgements never arrive).
    blackhole_down: bool,
    /// Sleep this long before forwarding each piece.
    delay: Duration,
    /// Send the agent this many garbage bytes instead of the next piece.
    garbage: usize,
}

struct Proxy {
    addr: SocketAddr,
    target: Arc<Mutex<SocketAddr>>,
    faults: Arc<Mutex<Faults>>,
    live: Arc<Mutex<Vec<TcpStream>>>,
    kills: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl Proxy {
    fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let p = Proxy {
            addr: listener.local_addr().unwrap(),
            target: Arc::new(Mutex::new(target)),
            faults: Arc::new(Mutex::new(Faults::default())),
            live: Arc::new(Mutex::new(Vec::new())),
            kills: Arc::new(AtomicUsize::new(0)),
            stop: Arc::new(AtomicBool::new(false)),
        };
        let (target, faults, live, kills, stop) = (
            p.target.clone(),
            p.faults.clone(),
            p.live.clone(),
            p.kills.clone(),
            p.stop.clone(),
        );
        thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                let agent = match listener.accept() {
                    Ok((s, _)) => s,
                    Err(_) => {
                        thread::sleep(Duration::from_millis(2));
                        continue;
                    }
                };
                let to = *target.lock().unwrap();
                let Ok(coord) = TcpStream::connect(to) else {
                    continue;
                };
                let _ = agent.set_nonblocking(false);
                let _ = agent.set_nodelay(true);
                let _ = coord.set_nodelay(true);
                {
                    let mut l = live.lock().unwrap();
                    l.push(agent.try_clone().unwrap());
                    l.push(coord.try_clone().unwrap());
                }
                pipe(
                    coord.try_clone().unwrap(),
                    agent.try_clone().unwrap(),
                    true,
                    faults.clone(),
                    live.clone(),
                    kills.clone(),
                );
                pipe(
                    agent,
                    coord,
                    false,
                    faults.clone(),
                    live.clone(),
                    kills.clone(),
                );
            }
        });
        p
    }

    fn set(&self, f: impl FnOnce(&mut Faults)) {
        f(&mut self.faults.lock().unwrap());
    }

    fn set_target(&self, t: SocketAddr) {
        *self.target.lock().unwrap() = t;
    }

    /// Closes every connection now.
    fn kill_all(&self) {
        kill(&self.live, &self.kills);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.kill_all();
    }
}

fn kill(live: &Mutex<Vec<TcpStream>>, kills: &AtomicUsize) {
    let mut l = live.lock().unwrap();
    if !l.is_empty() {
        kills.fetch_add(1, Ordering::SeqCst);
    }
    for s in l.drain(..) {
        let _ = s.shutdown(Shutdown::Both);
    }
}

fn pipe(
    mut from: TcpStream,
    mut to: TcpStream,
    down: bool,
    faults: Arc<Mutex<Faults>>,
    live: Arc<Mutex<Vec<TcpStream>>>,
    kills: Arc<AtomicUsize>,
) {
    thread::spawn(move || {
        let mut buf = [0u8; 16 * 1024];
        let mut total = 0usize;
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            total += n;
            let (delay, garbage, blackhole, kill_now) = {
                let mut f = faults.lock().unwrap();
                let kill_now = down && f.kill_after_down.is_some_and(|k| total >= k);
                if kill_now {
                    f.kill_after_down = None;
                }
                let garbage = if down {
                    std::mem::take(&mut f.garbage)
                } else {
                    0
                };
                (f.delay, garbage, down && f.blackhole_down, kill_now)
            };
            if kill_now {
                kill(&live, &kills);
                break;
            }
            if !delay.is_zero() {
                thread::sleep(delay);
            }
            if blackhole {
                continue;
            }
            let out: Vec<u8> = if garbage > 0 {
                (0..garbage).map(|i| (i * 7 + 3) as u8).collect()
            } else {
                buf[..n].to_vec()
            };
            if to.write_all(&out).is_err() {
                break;
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    });
}

// ----- providers on the real runtime -----------------------------------------

/// A job runner on the CPU: output = input + 1, bytewise; it can be slowed
/// down to keep a job running while the connection is broken.
fn executor(
    run_time: Duration,
) -> FnExecutor<impl FnMut(&JobToRun) -> Result<JobOutputs, JobFailure> + Send> {
    FnExecutor(move |job: &JobToRun| {
        if !run_time.is_zero() {
            thread::sleep(run_time);
        }
        let input = job.buffers.first().cloned().unwrap_or_default();
        let len = job.spec.buffers.get(1).map(|b| b.len as usize).unwrap_or(0);
        let out = (0..len)
            .map(|i| input.get(i).copied().unwrap_or(0).wrapping_add(1))
            .collect();
        Ok(JobOutputs {
            outputs: vec![out],
            usage: Usage {
                gpu_time_us: 100,
                dispatches: 1,
                ..Usage::default()
            },
        })
    })
}

struct Agent {
    thread: Option<JoinHandle<()>>,
    stop: Arc<AtomicBool>,
    ready: Arc<AtomicUsize>,
    active: Arc<AtomicUsize>,
    last_error: Arc<Mutex<Option<String>>>,
}

impl Agent {
    fn start(addr: SocketAddr, seed: u8, store: Option<PathBuf>, run_time: Duration) -> Agent {
        Self::start_with(
            addr,
            seed,
            store,
            run_time,
            Trust::CaPem(bundle().ca_pem.clone().into_bytes()),
        )
    }

    fn start_with(
        addr: SocketAddr,
        seed: u8,
        store: Option<PathBuf>,
        run_time: Duration,
        trust: Trust,
    ) -> Agent {
        let stop = Arc::new(AtomicBool::new(false));
        let ready = Arc::new(AtomicUsize::new(0));
        let active = Arc::new(AtomicUsize::new(0));
        let last_error = Arc::new(Mutex::new(None));
        let (s, r, a, e) = (
            stop.clone(),
            ready.clone(),
            active.clone(),
            last_error.clone(),
        );
        let thread = thread::spawn(move || {
            let mut capabilities = DeviceCapabilities {
                device_local_bytes: 1 << 30,
                ..DeviceCapabilities::default()
            };
            let _ = capabilities.name.push_str("cpu test device");
            let config = Config {
                capabilities,
                policy: Policy {
                    price: LinearPrice {
                        base: 10,
                        ..LinearPrice::default()
                    },
                    ..Policy::default()
                },
                ..Config::default()
            };
            let mut net = NetConfig::new(
                addr.to_string(),
                "localhost",
                client_config(&trust).unwrap(),
            );
            net.store_dir = store;
            net.reconnect_initial = Duration::from_millis(20);
            net.reconnect_max = Duration::from_millis(300);
            let signer = Ed25519Signer::from_seed(&[seed; 32]).unwrap();
            let mut rt = Runtime::new(config, signer, executor(run_time), net).unwrap();
            while !s.load(Ordering::SeqCst) && !rt.is_finished() {
                rt.step(Some(Duration::from_millis(20))).unwrap();
                let st = rt.status();
                r.store(st.sessions as usize, Ordering::SeqCst);
                a.store(st.active_jobs, Ordering::SeqCst);
                *e.lock().unwrap() = st.last_error.clone();
            }
        });
        Agent {
            thread: Some(thread),
            stop,
            ready,
            active,
            last_error,
        }
    }

    fn wait(&self, what: &str, cond: impl Fn(&Agent) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !cond(self) {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            thread::sleep(Duration::from_millis(5));
        }
    }

    fn sessions(&self) -> usize {
        self.ready.load(Ordering::SeqCst)
    }

    /// Stops the loop abruptly (as a crash would, keeping the store).
    fn crash(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn wait_providers(c: &Coordinator, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while c.providers().iter().filter(|p| p.connected).count() < n {
        assert!(Instant::now() < deadline, "providers did not connect");
        thread::sleep(Duration::from_millis(10));
    }
}

fn job(len: usize) -> Submit {
    Submit {
        kernel: vec![0x03, 0x02, 0x23, 0x07, 0, 0, 1, 0],
        entry_point: "main".into(),
        specialization: Vec::new(),
        push_constants: Vec::new(),
        grid: [1, 1, 1],
        buffers: vec![
            BufferInit {
                binding: 0,
                init: (0..len).map(|i| (i % 253) as u8).collect(),
                len: len as u64,
                readback: false,
            },
            BufferInit {
                binding: 1,
                init: Vec::new(),
                len: len as u64,
                readback: true,
            },
        ],
        requirements: Requirements::default(),
        est_gpu_ms: 1,
        max_price: 1_000_000,
        deadline_ms: 60_000,
        nonce: new_nonce().unwrap(),
        sealed: None,
    }
}

/// Every receipt of every provider, by key: checks each key's receipts form
/// one chain from sequence 1 with no gap, fork or replay.
#[derive(Default)]
struct Ledger {
    receipts: BTreeMap<[u8; 32], BTreeMap<u64, Vec<u8>>>,
}

impl Ledger {
    fn add(&mut self, submit: &Submit, r: &JobResult) {
        let check = verify_result(submit, r).expect("the result verifies");
        let expected: Vec<u8> = submit.buffers[0]
            .init
            .iter()
            .map(|b| b.wrapping_add(1))
            .collect();
        assert_eq!(r.outputs, vec![expected], "outputs");
        let seq = check.receipt.sequence;
        let prev = self
            .receipts
            .entry(r.provider_public_key)
            .or_default()
            .insert(seq, r.receipt.clone());
        assert!(
            prev.is_none() || prev.as_ref() == Some(&r.receipt),
            "two receipts with sequence {seq}"
        );
    }

    fn assert_unbroken(&self) -> usize {
        let mut total = 0;
        for (key, receipts) in &self.receipts {
            let mut v = ReceiptVerifier::new(*key, ChainState::default());
            for (seq, bytes) in receipts {
                v.verify_next(bytes, None)
                    .unwrap_or_else(|e| panic!("receipt {seq} of a provider: {e:?}"));
                total += 1;
            }
        }
        total
    }
}

fn temp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("tessera-e2e-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn store_is_empty(dir: &PathBuf) -> bool {
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .all(|e| !e.path().to_string_lossy().ends_with(".rec"))
        })
        .unwrap_or(true)
}

// ----- the tests ---------------------------------------------------------------

/// A connection killed while inputs stream in: the job goes to the other
/// provider; one killed while the kernel runs: the result arrives after the
/// reconnect. Both results verify and both chains are whole.
#[test]
fn connection_killed_during_transfer_and_during_the_run() {
    let c = coordinator(|_| {});
    let proxy = Proxy::start(c.local_addr());
    let a = Agent::start(
        proxy.addr,
        1,
        Some(temp("kill-a")),
        Duration::from_millis(400),
    );
    let b = Agent::start(
        proxy.addr,
        2,
        Some(temp("kill-b")),
        Duration::from_millis(400),
    );
    wait_providers(&c, 2);
    let mut ledger = Ledger::default();
    let mut req = Requester::connect(c.local_addr(), client_tls()).unwrap();

    // During the transfer: 3 MiB of input, cut after 1 MiB has gone down.
    proxy.set(|f| f.kill_after_down = Some(1 << 20));
    let s = job(3 << 20);
    let r = req.submit(&s).expect("the job completes on a provider");
    ledger.add(&s, &r);
    assert!(
        proxy.kills.load(Ordering::SeqCst) >= 1,
        "the connection was cut"
    );

    // During the run: cut everything 150 ms into a 400 ms kernel.
    a.wait("a session", |a| a.sessions() >= 1);
    wait_providers(&c, 2);
    let s2 = job(64 << 10);
    let killer = {
        let live = proxy.live.clone();
        let kills = proxy.kills.clone();
        thread::spawn(move || {
            thread::sleep(Duration::from_millis(150));
            kill(&live, &kills);
        })
    };
    let r2 = req
        .submit(&s2)
        .expect("the result arrives after the reconnect");
    killer.join().unwrap();
    ledger.add(&s2, &r2);
    assert_eq!(ledger.assert_unbroken(), 2);
    a.wait("results acknowledged", |a| {
        a.active.load(Ordering::SeqCst) == 0
    });
    b.wait("results acknowledged", |b| {
        b.active.load(Ordering::SeqCst) == 0
    });
}

/// Submits `s` from another thread; 100 ms later (inputs delivered, the
/// 400 ms kernel still running) the proxy starts swallowing everything the
/// coordinator sends, so the result is verified and delivered but its
/// acknowledgement never reaches the agent.
fn submit_losing_the_ack(c: &Coordinator, proxy: &Proxy, s: &Submit) -> JobResult {
    let addr = c.local_addr();
    let s = s.clone();
    let submitter =
        thread::spawn(move || Requester::connect(addr, client_tls()).unwrap().submit(&s));
    thread::sleep(Duration::from_millis(100));
    proxy.set(|f| f.blackhole_down = true);
    let r = submitter
        .join()
        .unwrap()
        .expect("the requester gets its result");
    thread::sleep(Duration::from_millis(50));
    r
}

/// The coordinator restarts (keeping chain positions in its state directory)
/// while the agent holds a result whose acknowledgement was lost: the agent
/// reconnects to the new coordinator, which recognises the receipt as the
/// last one of the provider's chain and acknowledges it; the next job
/// continues the chain.
#[test]
fn coordinator_restart() {
    let state = temp("coord-state");
    let c1 = coordinator(|cfg| cfg.state_dir = Some(state.clone()));
    let proxy = Proxy::start(c1.local_addr());
    let store = temp("coord-restart-agent");
    let agent = Agent::start(
        proxy.addr,
        3,
        Some(store.clone()),
        Duration::from_millis(400),
    );
    wait_providers(&c1, 1);
    let mut ledger = Ledger::default();
    let s = job(10_000);
    let r = Requester::connect(c1.local_addr(), client_tls())
        .unwrap()
        .submit(&s)
        .unwrap();
    ledger.add(&s, &r);
    let s2 = job(20_000);
    let r2 = submit_losing_the_ack(&c1, &proxy, &s2);
    ledger.add(&s2, &r2);
    assert!(store_has_record(&store), "the agent still holds the result");

    c1.shutdown();
    proxy.set(|f| f.blackhole_down = false);
    let c2 = coordinator(|cfg| cfg.state_dir = Some(state.clone()));
    proxy.set_target(c2.local_addr());
    proxy.kill_all();
    wait_providers(&c2, 1);
    agent.wait("the held result acknowledged", |a| {
        a.active.load(Ordering::SeqCst) == 0
    });
    assert!(store_is_empty(&store));
    assert!(c2.stats().receipts_repeated >= 1);
    let s3 = job(5_000);
    let r3 = Requester::connect(c2.local_addr(), client_tls())
        .unwrap()
        .submit(&s3)
        .unwrap();
    ledger.add(&s3, &r3);
    assert_eq!(ledger.assert_unbroken(), 3);
}

/// The agent crashes holding a completed result the coordinator never
/// acknowledged; restarted from its store, it delivers the same receipt,
/// which the coordinator recognises and acknowledges; the chain goes on.
#[test]
fn agent_restart_holding_an_unacknowledged_result() {
    let c = coordinator(|_| {});
    let proxy = Proxy::start(c.local_addr());
    let store = temp("agent-restart");
    let a1 = Agent::start(
        proxy.addr,
        4,
        Some(store.clone()),
        Duration::from_millis(400),
    );
    wait_providers(&c, 1);
    let mut ledger = Ledger::default();
    let s = job(40_000);
    let r = submit_losing_the_ack(&c, &proxy, &s);
    ledger.add(&s, &r);
    a1.crash();
    assert!(
        store_has_record(&store),
        "the unacknowledged result is on disk"
    );

    proxy.set(|f| f.blackhole_down = false);
    proxy.kill_all();
    let a2 = Agent::start(proxy.addr, 4, Some(store.clone()), Duration::ZERO);
    a2.wait("a session", |a| a.sessions() >= 1);
    a2.wait("the held result acknowledged", |a| {
        a.active.load(Ordering::SeqCst) == 0
    });
    assert!(store_is_empty(&store));
    assert!(c.stats().receipts_repeated >= 1);
    let s2 = job(1000);
    let r2 = Requester::connect(c.local_addr(), client_tls())
        .unwrap()
        .submit(&s2)
        .unwrap();
    ledger.add(&s2, &r2);
    assert_eq!(ledger.assert_unbroken(), 2);
}

fn store_has_record(dir: &PathBuf) -> bool {
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .any(|e| e.path().to_string_lossy().ends_with(".rec"))
        })
        .unwrap_or(false)
}

/// A slow link (every piece delayed) and garbage injected into the agent's
/// TLS stream: the slow job completes; the garbage costs a reconnect, and the
/// next job completes.
#[test]
fn slow_peer_and_garbage_on_the_socket() {
    let c = coordinator(|_| {});
    let proxy = Proxy::start(c.local_addr());
    let agent = Agent::start(proxy.addr, 5, None, Duration::ZERO);
    wait_providers(&c, 1);
    let mut ledger = Ledger::default();
    let mut req = Requester::connect(c.local_addr(), client_tls()).unwrap();

    proxy.set(|f| f.delay = Duration::from_millis(3));
    let s = job(512 << 10);
    let r = req.submit(&s).unwrap();
    ledger.add(&s, &r);
    proxy.set(|f| f.delay = Duration::ZERO);

    let before = agent.sessions();
    proxy.set(|f| f.garbage = 300);
    // Something must flow down for the garbage to be sent: a job does it.
    let s2 = job(2000);
    let r2 = req.submit(&s2).unwrap();
    ledger.add(&s2, &r2);
    agent.wait("a reconnect after the garbage", |a| a.sessions() > before);
    let s3 = job(2000);
    let r3 = req.submit(&s3).unwrap();
    ledger.add(&s3, &r3);
    assert_eq!(ledger.assert_unbroken(), 3);
}

/// An agent pinned to another server's key never talks to this coordinator.
#[test]
fn a_coordinator_with_the_wrong_certificate_is_refused() {
    let c = coordinator(|_| {});
    let agent = Agent::start_with(
        c.local_addr(),
        6,
        None,
        Duration::ZERO,
        Trust::PinnedKey([0x42; 32]),
    );
    agent.wait("a TLS error", |a| {
        a.last_error
            .lock()
            .unwrap()
            .as_deref()
            .is_some_and(|e| e.contains("TLS"))
    });
    assert_eq!(agent.sessions(), 0);
    assert!(c.providers().is_empty());
}

/// 1,000 jobs one after another through one agent: every receipt verifies,
/// sequence numbers run 1..=1000 without a gap.
#[test]
fn a_thousand_sequential_jobs() {
    let c = coordinator(|_| {});
    let _agent = Agent::start(c.local_addr(), 7, None, Duration::ZERO);
    wait_providers(&c, 1);
    let mut ledger = Ledger::default();
    let mut req = Requester::connect(c.local_addr(), client_tls()).unwrap();
    let started = Instant::now();
    for i in 0..1000 {
        let s = job(64 + i % 512);
        let r = req.submit(&s).unwrap_or_else(|e| panic!("job {i}: {e}"));
        ledger.add(&s, &r);
    }
    let elapsed = started.elapsed();
    assert_eq!(ledger.assert_unbroken(), 1000);
    let seqs: Vec<u64> = ledger
        .receipts
        .values()
        .next()
        .unwrap()
        .keys()
        .copied()
        .collect();
    assert_eq!(seqs, (1..=1000).collect::<Vec<_>>());
    eprintln!("1000 sequential jobs in {elapsed:?}");
}

/// 100 agents connected at once to one coordinator, 300 jobs from 4
/// requesters: every result verifies, every provider's chain is unbroken.
#[test]
fn a_hundred_agents_at_once() {
    let c = coordinator(|_| {});
    let agents: Vec<Agent> = (0..100u8)
        .map(|i| Agent::start(c.local_addr(), 100 + i, None, Duration::ZERO))
        .collect();
    wait_providers(&c, 100);
    let addr = c.local_addr();
    let results: Vec<(Submit, JobResult)> = (0..4)
        .map(|_| {
            thread::spawn(move || {
                let mut req = Requester::connect(addr, client_tls()).unwrap();
                (0..75)
                    .map(|_| {
                        let s = job(4096);
                        let r = req.submit(&s).unwrap();
                        (s, r)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .flat_map(|t| t.join().unwrap())
        .collect();
    let mut ledger = Ledger::default();
    for (s, r) in &results {
        ledger.add(s, r);
    }
    assert_eq!(ledger.assert_unbroken(), 300);
    assert!(ledger.receipts.len() > 1, "the work was spread");
    drop(agents);
}
