//! End-to-end benchmarks over TLS on loopback. Prints one JSON object per line:
//!
//! - `e2e.job_p50`, `e2e.job_p99`: microseconds from a requester submitting a
//!   tiny job (4 KiB in, the copy kernel, 4 KiB out) to holding its verified
//!   result (the requester checks evidence, receipt and a Merkle spot check),
//!   through the reference coordinator and a provider agent on the Vulkan
//!   device; peer `dispatch_only`: the same kernel's dispatcher round trip
//!   (upload, dispatch, read back), measured in the same run on the same device.
//! - `e2e.job_breakdown`: where a tiny job's time goes. The GPU executor
//!   records when the provider's runtime handed it the job and when it
//!   returned, on the same clock as the requester, so each job splits into
//!   `to_executor` (submit, coordinator, offer with its assignment and
//!   inputs (protocol version 2), acceptance, their hashing, the runtime's
//!   hand-over), `execute` (the
//!   dispatcher run) and `back_to_requester` (output hashing, the receipt's
//!   signature, upload, the coordinator's receipt and chunk checks, the
//!   result frame, the requester's checks), each a p50. Beside them, costs
//!   measured alone in the same run: one TLS 1.3 round trip of 64 bytes on
//!   loopback between two threads, an Ed25519 signature, a receipt's and an
//!   evidence document's verification, a 4 KiB leaf hash, and the
//!   requester's whole check of a result (`verify_result`), also with its
//!   evidence signature already verified (`verify_result_with` and a warm
//!   `EvidenceCache`, as `Requester::submit` checks). From those,
//!   `protocol_floor`: what no implementation of the path can leave out,
//!   two TLS round trips (four one-way hops: requester, coordinator, agent,
//!   coordinator, requester), one signature and two receipt verifications,
//!   each as timed alone; and `overhead_beyond_floor`, the overhead over
//!   `dispatch_only` less that floor: the share this code can still cut.
//!   The floor moves with the machine far more than the rest (README,
//!   "Figures").
//! - `e2e.job_p50_encrypted`: the same tiny job sealed end to end (the
//!   requester seals kernel, push constants and input to the provider's
//!   session key, the provider opens it and seals the output to the
//!   requester's key, the requester verifies, opens and checks the keyed
//!   result hash), beside peer `plain`, the job in the clear, interleaved
//!   in the same run; with each one's parts (`parts`, `plain_parts`) split
//!   as in `e2e.job_breakdown`.
//! - `e2e.large_input_ms`: the p50 of five jobs with 64 MiB of input (the
//!   copy kernel, 4 KiB out), from submitting to holding the verified
//!   result, with `mib_per_s`; beside peer `sha256_ms`, the input's Merkle
//!   root (SHA-256 over its 8 KiB leaves) computed once in this process
//!   (the requester, the coordinator and the agent each hash it once).
//! - `e2e.jobs_per_s`: sequential jobs per second through one agent;
//!   `e2e.jobs_per_s_4_in_flight`: the same with four requesters
//!   submitting at once (the agent takes up to four jobs), beside the
//!   sequential rate, with the share of the wall time the executor (the
//!   device) was running a job. `e2e.jobs_per_s_batched`: the same four in
//!   flight through a coordinator that asks for batched receipts (up to 8
//!   a batch, 1 ms the longest wait), every result still verified by its
//!   requester, beside both rates, with the receipts each signature covered;
//!   this agent holds up to 32 jobs (`max_concurrent` at the hosted
//!   `MAX_JOBS`; the others hold the default 4).
//!   `e2e.jobs_per_s_pipelined`: one requester sending its jobs ahead of
//!   their answers (`Requester::submit_all`, 64 in flight, 4,000 jobs by
//!   default: eight times the other runs', so that filling and draining the
//!   pipeline weigh little) through the same
//!   batching coordinator and agent (the coordinator queues the jobs the
//!   agent has no slot for), every result verified, beside the batched rate.
//!   With 32 held, results waiting for their batch's signature and
//!   acknowledgement leave the agent room for the next jobs, and batches
//!   of 8 (a quarter of its slots) free them a batch at a time while the
//!   others run;
//!   the executor takes the jobs waiting for it together (a device batch,
//!   `Executor::run_batch`). The median of three runs, each run's rate in
//!   `runs`. Peer `held_4`: the same runs to an agent holding the default 4
//!   (its own coordinator, in the same benchmark run), their median.
//! - `e2e.cpu_per_job_pipelined`: the CPU time each job of the median
//!   pipelined run took, over every process and thread on the path: the requester
//!   (this process's main thread), the coordinator (its whole process), the
//!   agent's runtime thread, its executor thread, and this process's other
//!   threads (the device's, lavapipe's, when the device is the CPU); read
//!   from `/proc/PID/task/TID/schedstat` before and after. Beside it, peer
//!   `budget_at_10000_per_s`: the CPU time a job may take on this machine's
//!   cores for 10,000 jobs a second; and `cores_busy`, the cores the run
//!   kept busy on average (below the core count when the path waits rather
//!   than computes).
//! - `e2e.device_busy_4_in_flight`: pipelining where the device is the
//!   bottleneck. A job of the arithmetic kernel (`core/kernels/fma.comp`,
//!   1,024 invocations, no input, 4 KiB out) with its rounds set so that the
//!   dispatcher alone takes about 2 ms (`dispatch_only_us`, measured in the
//!   same run), sent by four requesters at once: the share of the wall time
//!   the executor was running a job, beside peer `sequential` (the same jobs
//!   one at a time from one requester), with both rates and the executor's
//!   busy time per job (`execute_us`; jobs that wait together run as one
//!   device batch, which shares its time). With four in flight the next job's offer and
//!   inputs and the last one's receipt and upload overlap the run, so the
//!   share should be near 1. Where the device is the CPU (lavapipe), the
//!   protocol's work also slows each run, which raises the share without
//!   any job more done: `rate_over_device_alone` is the four-in-flight rate
//!   over the rate of the executor's runs one at a time (1 / their mean).
//! - `e2e.coordinator_bytes_per_agent`: the resident memory a coordinator
//!   grows by per admitted agent. A fresh coordinator process, which has run
//!   no job, logs its count of connected providers (sessions whose evidence
//!   it verified) every 100 ms; its resident set is read once it has logged
//!   none connected, and again as soon as it logs all 100 CPU agents
//!   connected; the difference is divided by 100.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Sender};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use tessera_bench::process::{fail, line, CoordinatorProcess, CoordinatorSetup};
use tessera_bench::{percentile, tiny_job, COPY_SPV, LEN};
use tessera_coordinator::protocol::MAX_IN_FLIGHT;
use tessera_coordinator::requester::{new_nonce, Requester};
use tessera_coordinator::requester::{verify_result_with, EvidenceCache};
use tessera_coordinator::tls::client_config as requester_tls;
use tessera_coordinator::{verify_result, BufferInit, Submit};
use tessera_core::attest::{DeviceCapabilities, Ed25519Signer, Evidence, Receipt, Signer};
use tessera_core::gpu_host::GpuHost;
use tessera_core::limits::{DEFAULT_MAX_CONCURRENT, MAX_JOBS};
use tessera_core::merkle::leaf_hash;
use tessera_core::net::{
    client_config, Executor, FnExecutor, JobFailure, JobOutputs, JobToRun, NetConfig, Runtime,
    Trust,
};
use tessera_core::vulkan::{
    BufferSpec, DeviceSelector, Dispatcher, DispatcherConfig, Instance, KernelJob,
};
use tessera_core::{Config, Policy};

/// A line with named parts, each a value in `unit`.
fn line_parts(name: &str, value: f64, unit: &str, parts: &[(&str, f64)], alone: &[(&str, f64)]) {
    let fmt = |kv: &[(&str, f64)]| {
        kv.iter()
            .map(|(k, v)| format!("\"{k}\": {v:.1}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!(
        "{{\"name\": \"{name}\", \"value\": {value:.1}, \"unit\": \"{unit}\", \"peers\": {{}}, \"parts\": {{{}}}, \"alone\": {{{}}}}}",
        fmt(parts),
        fmt(alone)
    );
}

/// The p50 of `f`'s time in microseconds over `n` calls.
fn p50_of(n: usize, mut f: impl FnMut()) -> f64 {
    let mut t = Vec::with_capacity(n);
    for _ in 0..n {
        let s = Instant::now();
        f();
        t.push(s.elapsed().as_secs_f64() * 1e6);
    }
    percentile(&t, 50.0)
}

/// Microseconds from `a` to `b`.
fn us(a: Instant, b: Instant) -> f64 {
    b.saturating_duration_since(a).as_secs_f64() * 1e6
}

/// An executor that reports when each run started and ended.
struct Timed<E> {
    inner: E,
    /// Each run's (or device batch's) start, end and jobs.
    runs: Sender<(Instant, Instant, usize)>,
}

impl<E: Executor> Executor for Timed<E> {
    fn run(&mut self, job: &JobToRun) -> Result<JobOutputs, JobFailure> {
        let start = Instant::now();
        let r = self.inner.run(job);
        let _ = self.runs.send((start, Instant::now(), 1));
        r
    }

    fn batch_size(&self) -> usize {
        self.inner.batch_size()
    }

    /// A batch counts as busy from its start to its last result.
    fn run_batch(
        &mut self,
        jobs: &[&JobToRun],
        done: &mut dyn FnMut(usize, Result<JobOutputs, JobFailure>),
    ) {
        let start = Instant::now();
        self.inner.run_batch(jobs, done);
        let _ = self.runs.send((start, Instant::now(), jobs.len()));
    }

    fn accepting_jobs(&mut self) -> bool {
        self.inner.accepting_jobs()
    }

    fn may_run_inline(&mut self, job: &JobToRun) -> bool {
        self.inner.may_run_inline(job)
    }
}

/// p50 of one TLS 1.3 round trip of 64 bytes on loopback between two
/// threads (the hop every protocol message takes, alone).
fn tls_round_trip(bundle: &tessera_coordinator::certs::CertBundle, ca: &[u8]) -> f64 {
    let server = tessera_coordinator::tls::server_config(
        bundle.server_chain_pem.as_bytes(),
        bundle.server_key_pem.as_bytes(),
    )
    .unwrap_or_else(|e| fail("TLS server config", e));
    let listener = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| fail("bind", e));
    let addr = listener.local_addr().unwrap_or_else(|e| fail("bind", e));
    let echo = thread::spawn(move || -> std::io::Result<()> {
        let (sock, _) = listener.accept()?;
        sock.set_nodelay(true)?;
        let conn =
            rustls::ServerConnection::new(Arc::new(server)).map_err(std::io::Error::other)?;
        let mut s = rustls::StreamOwned::new(conn, sock);
        let mut buf = [0u8; 64];
        while s.read_exact(&mut buf).is_ok() {
            s.write_all(&buf)?;
            s.flush()?;
        }
        Ok(())
    });
    let tls = requester_tls(&Trust::CaPem(ca.to_vec())).unwrap_or_else(|e| fail("TLS", e));
    let name = rustls::pki_types::ServerName::try_from("localhost")
        .unwrap_or_else(|e| fail("TLS name", e));
    let conn = rustls::ClientConnection::new(tls, name).unwrap_or_else(|e| fail("TLS", e));
    let sock = TcpStream::connect(addr).unwrap_or_else(|e| fail("connect", e));
    let _ = sock.set_nodelay(true);
    let mut c = rustls::StreamOwned::new(conn, sock);
    let mut buf = [7u8; 64];
    let mut trip = || {
        c.write_all(&buf).unwrap_or_else(|e| fail("TLS write", e));
        c.flush().unwrap_or_else(|e| fail("TLS flush", e));
        c.read_exact(&mut buf)
            .unwrap_or_else(|e| fail("TLS read", e));
    };
    for _ in 0..100 {
        trip();
    }
    let p50 = p50_of(2000, trip);
    drop(c);
    let _ = echo.join();
    p50
}

/// The arithmetic kernel (`core/kernels/fma.comp`): `iters` rounds of
/// fused multiply-adds per invocation, one float out per invocation.
const FMA_SPV: &[u8] = include_bytes!("../../../core/kernels/fma.spv");
/// Invocations of the device-bound job: 16 workgroups of 64, 4 KiB out.
const FMA_INVOCATIONS: u32 = 1024;

/// A job whose time is the device's: the arithmetic kernel over
/// [`FMA_INVOCATIONS`] invocations, `iters` rounds each, with no input and
/// 4 KiB out.
fn device_bound_job(iters: u32) -> Submit {
    Submit {
        kernel: FMA_SPV.to_vec(),
        entry_point: "main".into(),
        specialization: Vec::new(),
        push_constants: iters.to_le_bytes().to_vec(),
        grid: [FMA_INVOCATIONS / 64, 1, 1],
        buffers: vec![BufferInit {
            binding: 0,
            init: Vec::new(),
            len: u64::from(FMA_INVOCATIONS) * 4,
            readback: true,
        }],
        // Its first run builds its pipeline, and its runs take ms: due in
        // the default 30 s, so that each runs on the agent's worker.
        deadline_ms: 30_000,
        ..tiny_job()
    }
}

/// The rounds that make [`device_bound_job`] take about `target` on the
/// dispatcher alone (doubling from 64, at most 2^24), with that run's p50.
fn calibrate_device_bound(d: &mut Dispatcher, target: Duration) -> (u32, f64) {
    let mut iters = 64u32;
    loop {
        let p50 = device_bound_p50(d, iters, 5);
        if p50 >= target.as_secs_f64() * 1e6 || iters >= 1 << 24 {
            return (iters, p50);
        }
        iters *= 2;
    }
}

/// p50 in microseconds of `n` dispatcher runs of [`device_bound_job`].
fn device_bound_p50(d: &mut Dispatcher, iters: u32, n: usize) -> f64 {
    let job = device_bound_job(iters);
    let specs = [BufferSpec {
        binding: 0,
        len: job.buffers[0].len,
        init: None,
        readback: true,
    }];
    let kj = KernelJob {
        spirv: FMA_SPV,
        entry_point: "main",
        specialization: &[],
        push_constants: &job.push_constants,
        grid: job.grid,
        buffers: &specs,
    };
    p50_of(n, || {
        let out = d
            .run(&kj, Duration::from_secs(60))
            .unwrap_or_else(|e| fail("device-bound dispatch", e));
        std::hint::black_box(out);
    })
}

/// One pipelined run's figures.
struct Pipelined {
    rate: f64,
    wall: f64,
    receipts_per_signature: f64,
    busy: f64,
    /// CPU nanoseconds of the requester, the coordinator, the agent's
    /// runtime, its executor and the other threads; `None` without /proc.
    cpu_ns: Option<[u64; 5]>,
}

/// The executor's share of the wall time (its runs, drained from `runs`,
/// over `wall` seconds) and its busy time per job in microseconds (a
/// device batch's time shared by its jobs).
fn busy_share(
    runs: &std::sync::mpsc::Receiver<(Instant, Instant, usize)>,
    wall: f64,
) -> (f64, f64) {
    let (mut busy, mut jobs) = (0.0, 0);
    for (a, b, n) in runs.try_iter() {
        busy += b.saturating_duration_since(a).as_secs_f64();
        jobs += n;
    }
    (busy / wall, busy * 1e6 / jobs.max(1) as f64)
}

/// CPU time in nanoseconds of each thread of process `pid` now, by thread
/// id, with the thread's name (`/proc/PID/task/TID/schedstat` and `comm`).
fn thread_cpu(pid: u32) -> std::collections::HashMap<u32, (String, u64)> {
    let mut out = std::collections::HashMap::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for t in tasks.flatten() {
        let Some(tid) = t.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let dir = t.path();
        let ns = std::fs::read_to_string(dir.join("schedstat"))
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok());
        let name = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        if let Some(ns) = ns {
            out.insert(tid, (name.trim().to_string(), ns));
        }
    }
    out
}

/// CPU nanoseconds each thread spent between two [`thread_cpu`] readings
/// (threads started in between count from zero).
fn cpu_between(
    before: &std::collections::HashMap<u32, (String, u64)>,
    after: &std::collections::HashMap<u32, (String, u64)>,
) -> Vec<(u32, String, u64)> {
    after
        .iter()
        .map(|(tid, (name, ns))| {
            let was = before.get(tid).map_or(0, |(_, b)| *b);
            (*tid, name.clone(), ns.saturating_sub(was))
        })
        .collect()
}

/// The name of the thread that runs an agent's network runtime.
const AGENT_THREAD: &str = "bench-agent";

struct AgentThread {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for AgentThread {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn agent<E: tessera_core::net::Executor>(
    addr: SocketAddr,
    ca: Vec<u8>,
    seed: u8,
    capabilities: DeviceCapabilities,
    max_concurrent: u8,
    executor: E,
) -> AgentThread {
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let spawned = thread::Builder::new()
        .name(AGENT_THREAD.into())
        .spawn(move || {
            let tls = client_config(&Trust::CaPem(ca)).unwrap_or_else(|e| fail("agent TLS", e));
            let config = Config {
                capabilities,
                policy: Policy {
                    max_concurrent,
                    ..Policy::default()
                },
                ..Config::default()
            };
            let signer = Ed25519Signer::from_seed(&[seed; 32])
                .unwrap_or_else(|e| fail("key", format!("{e:?}")));
            let net = NetConfig::new(addr.to_string(), "localhost", tls);
            let mut rt =
                Runtime::new(config, signer, executor, net).unwrap_or_else(|e| fail("runtime", e));
            while !s.load(Ordering::SeqCst) {
                if let Err(e) = rt.step(Some(Duration::from_millis(50))) {
                    fail("agent loop", e);
                }
            }
        });
    let thread = spawned.unwrap_or_else(|e| fail("agent thread", e));
    AgentThread {
        stop,
        thread: Some(thread),
    }
}

/// A requester connected once the coordinator's agent is admitted: its
/// first job succeeds (within 30 s).
fn admitted(addr: SocketAddr, tls: &Arc<rustls::ClientConfig>) -> Requester {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut r = Requester::connect(addr, tls.clone()).unwrap_or_else(|e| fail("requester", e));
        let mut j = tiny_job();
        j.nonce = new_nonce().unwrap_or_else(|e| fail("nonce", e));
        if r.submit(&j).is_ok() {
            return r;
        }
        if Instant::now() > deadline {
            fail("first job", "no provider admitted");
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// `k` requesters submitting `n / k` tiny jobs each, back to back, every
/// result verified (`Requester::submit`). Returns jobs per second and the
/// signatures their receipts took: one per receipt signed alone, one per
/// distinct batch statement.
fn in_flight(
    addr: SocketAddr,
    tls: &Arc<rustls::ClientConfig>,
    n: usize,
    k: usize,
) -> (f64, usize) {
    in_flight_of(addr, tls, &tiny_job(), n, k)
}

/// [`in_flight`] with copies of `template` (each with its own nonce).
fn in_flight_of(
    addr: SocketAddr,
    tls: &Arc<rustls::ClientConfig>,
    template: &Submit,
    n: usize,
    k: usize,
) -> (f64, usize) {
    let per = n / k;
    let t = Instant::now();
    let receipts: Vec<Vec<Vec<u8>>> = thread::scope(|s| {
        let handles: Vec<_> = (0..k)
            .map(|q| {
                let tls = tls.clone();
                s.spawn(move || {
                    let mut r =
                        Requester::connect(addr, tls).unwrap_or_else(|e| fail("requester", e));
                    (0..per)
                        .map(|i| {
                            let mut j = template.clone();
                            j.nonce = [(q * per + i) as u8; 32];
                            j.nonce[31] = q as u8;
                            j.nonce[30] = (i >> 8) as u8;
                            r.submit(&j)
                                .unwrap_or_else(|e| fail("job in flight", e))
                                .receipt
                        })
                        .collect()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| fail("requester", "panicked")))
            .collect()
    });
    let wall = t.elapsed().as_secs_f64();
    let mut statements = std::collections::HashSet::new();
    let mut alone = 0;
    for r in receipts.iter().flatten() {
        if r.len() == tessera_core::attest::RECEIPT_LEN {
            alone += 1;
        } else {
            statements.insert(r[..tessera_core::attest::BATCH_LEN].to_vec());
        }
    }
    ((per * k) as f64 / wall, alone + statements.len())
}

fn main() {
    let iters: usize = std::env::var("TESSERA_BENCH_ITERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000);
    let setup = CoordinatorSetup::new("e2e");
    let (exe, certs_dir, bundle, ca) = (&setup.exe, &setup.certs_dir, &setup.bundle, &setup.ca);

    // The dispatcher alone, same device and kernel: the floor under a job.
    let instance = Instance::load().unwrap_or_else(|e| fail("Vulkan", e));
    let mut d = Dispatcher::new(
        &instance,
        DeviceSelector::Default,
        DispatcherConfig::default(),
    )
    .unwrap_or_else(|e| fail("dispatcher", e));
    let job = tiny_job();
    let input = job.buffers[0].init.clone();
    let specs = [
        BufferSpec {
            binding: 0,
            len: LEN as u64,
            init: Some(&input),
            readback: false,
        },
        BufferSpec {
            binding: 1,
            len: LEN as u64,
            init: None,
            readback: true,
        },
    ];
    let kj = KernelJob {
        spirv: COPY_SPV,
        entry_point: "main",
        specialization: &[],
        push_constants: &job.push_constants,
        grid: [1, 1, 1],
        buffers: &specs,
    };

    let gpu = GpuHost::open(DeviceSelector::Default, false).unwrap_or_else(|e| fail("GPU", e));
    let caps = gpu.capabilities().clone();
    let coordinator = CoordinatorProcess::start(exe, certs_dir, None, &[]);
    let (runs_tx, runs) = channel();
    let gpu = Timed {
        inner: gpu,
        runs: runs_tx,
    };
    let gpu_agent = agent(
        coordinator.addr,
        ca.clone(),
        1,
        caps.clone(),
        DEFAULT_MAX_CONCURRENT,
        gpu,
    );
    let tls = requester_tls(&Trust::CaPem(ca.clone())).unwrap_or_else(|e| fail("requester TLS", e));
    // Wait for the agent to be admitted: the first job succeeds.
    let mut requester = admitted(coordinator.addr, &tls);
    while runs.try_recv().is_ok() {}

    let mut e2e = Vec::with_capacity(iters);
    let mut floor = Vec::with_capacity(iters);
    let (mut to_executor, mut execute, mut back) = (Vec::new(), Vec::new(), Vec::new());
    let mut last = None;
    let started = Instant::now();
    for i in 0..iters {
        // Interleaved, so both see the same machine state.
        let t = Instant::now();
        let out = d
            .run(&kj, Duration::from_secs(10))
            .unwrap_or_else(|e| fail("dispatch", e));
        floor.push(t.elapsed().as_secs_f64() * 1e6);
        std::hint::black_box(out);

        let mut j = tiny_job();
        j.nonce = new_nonce().unwrap_or_else(|e| fail("nonce", e));
        let t = Instant::now();
        // `submit` checks the result (evidence, receipt, roots, a Merkle
        // spot check) before it returns it.
        let r = requester
            .submit(&j)
            .unwrap_or_else(|e| fail(&format!("job {i}"), e));
        let done = Instant::now();
        e2e.push(us(t, done));
        let (start, end, _) = runs
            .recv_timeout(Duration::from_secs(10))
            .unwrap_or_else(|e| fail("executor timing", e));
        to_executor.push(us(t, start));
        execute.push(us(start, end));
        back.push(us(end, done));
        last = Some((j, r));
    }
    let total = started.elapsed().as_secs_f64();
    let floor_p50 = percentile(&floor, 50.0);
    line(
        "e2e.job_p50",
        percentile(&e2e, 50.0),
        "us",
        &[("dispatch_only", floor_p50)],
    );
    line(
        "e2e.job_p99",
        percentile(&e2e, 99.0),
        "us",
        &[("dispatch_only", percentile(&floor, 99.0))],
    );
    let (j, r) = last.unwrap_or_else(|| fail("breakdown", "no job timed"));
    let mut signer =
        Ed25519Signer::from_seed(&[9; 32]).unwrap_or_else(|e| fail("key", format!("{e:?}")));
    let input = &j.buffers[0].init;
    let alone = [
        ("tls_round_trip", tls_round_trip(bundle, ca)),
        (
            "ed25519_sign",
            p50_of(1000, || {
                std::hint::black_box(signer.sign(&r.receipt).ok());
            }),
        ),
        (
            "receipt_verify",
            p50_of(1000, || {
                std::hint::black_box(Receipt::verify(&r.receipt, &r.provider_public_key).ok());
            }),
        ),
        (
            "evidence_verify",
            p50_of(1000, || {
                std::hint::black_box(Evidence::open(&r.evidence).ok());
            }),
        ),
        (
            "leaf_hash_4k",
            p50_of(1000, || {
                std::hint::black_box(leaf_hash(input));
            }),
        ),
        (
            "requester_verify",
            p50_of(1000, || {
                verify_result(&j, &r).unwrap_or_else(|e| fail("verify", format!("{e:?}")));
            }),
        ),
        ("requester_verify_cached", {
            let mut cache = EvidenceCache::default();
            p50_of(1000, || {
                verify_result_with(&j, &r, &mut cache)
                    .unwrap_or_else(|e| fail("verify", format!("{e:?}")));
            })
        }),
    ];
    let job_p50 = percentile(&e2e, 50.0);
    // What no implementation of this path can leave out, each part timed
    // alone above: four one-way TLS hops (requester, coordinator, agent,
    // coordinator, requester: two round trips), the receipt's signature and
    // its two verifications (the coordinator's and the requester's).
    let of = |name: &str| {
        alone
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| *v)
            .unwrap_or_else(|| fail("protocol_floor", format!("no {name} timed")))
    };
    let protocol_floor =
        2.0 * of("tls_round_trip") + of("ed25519_sign") + 2.0 * of("receipt_verify");
    line_parts(
        "e2e.job_breakdown",
        job_p50,
        "us",
        &[
            ("to_executor", percentile(&to_executor, 50.0)),
            ("execute", percentile(&execute, 50.0)),
            ("back_to_requester", percentile(&back, 50.0)),
            ("overhead_over_dispatch_only", job_p50 - floor_p50),
            ("protocol_floor", protocol_floor),
            (
                "overhead_beyond_floor",
                job_p50 - floor_p50 - protocol_floor,
            ),
        ],
        &alone,
    );

    // The same tiny job sealed end to end ("Sealed jobs"), interleaved with
    // it in the clear: the requester seals it to the provider's session key
    // (its evidence listed once, as a requester sending many jobs does),
    // the provider opens it, runs it and seals the outputs, the requester
    // verifies the result, opens the outputs and checks the keyed hash.
    let providers = requester
        .providers()
        .unwrap_or_else(|e| fail("providers", e));
    let (evidence, _) = providers
        .first()
        .unwrap_or_else(|| fail("providers", "none takes sealed jobs"));
    // Each job's parts, as for `e2e.job_breakdown`: [to_executor,
    // execute, back_to_requester], sealed and in the clear.
    let (mut sealed_us, mut plain_us) = (Vec::new(), Vec::new());
    let (mut sealed_parts, mut plain_parts): ([Vec<f64>; 3], [Vec<f64>; 3]) = Default::default();
    while runs.try_recv().is_ok() {}
    let timed = |t: Instant, parts: &mut [Vec<f64>; 3]| {
        let done = Instant::now();
        let (start, end, _) = runs
            .recv_timeout(Duration::from_secs(10))
            .unwrap_or_else(|e| fail("executor timing", e));
        parts[0].push(us(t, start));
        parts[1].push(us(start, end));
        parts[2].push(us(end, done));
        us(t, done)
    };
    for i in 0..iters {
        let mut j = tiny_job();
        j.nonce = new_nonce().unwrap_or_else(|e| fail("nonce", e));
        let t = Instant::now();
        requester
            .submit(&j)
            .unwrap_or_else(|e| fail(&format!("plain job {i}"), e));
        plain_us.push(timed(t, &mut plain_parts));
        j.nonce = new_nonce().unwrap_or_else(|e| fail("nonce", e));
        let t = Instant::now();
        let sealed = requester
            .submit_sealed_to(&j, evidence)
            .unwrap_or_else(|e| fail(&format!("sealed job {i}"), e));
        sealed_us.push(timed(t, &mut sealed_parts));
        std::hint::black_box(sealed);
    }
    while runs.try_recv().is_ok() {}
    let parts = |p: &[Vec<f64>; 3]| {
        format!(
            "{{\"to_executor\": {:.1}, \"execute\": {:.1}, \"back_to_requester\": {:.1}}}",
            percentile(&p[0], 50.0),
            percentile(&p[1], 50.0),
            percentile(&p[2], 50.0)
        )
    };
    println!(
        "{{\"name\": \"e2e.job_p50_encrypted\", \"value\": {:.1}, \"unit\": \"us\", \"peers\": {{\"plain\": {:.1}}}, \"parts\": {}, \"plain_parts\": {}}}",
        percentile(&sealed_us, 50.0),
        percentile(&plain_us, 50.0),
        parts(&sealed_parts),
        parts(&plain_parts)
    );

    // Throughput: jobs back to back, nothing else in the loop.
    let n = iters.min(500);
    let t = Instant::now();
    for i in 0..n {
        let mut j = tiny_job();
        j.nonce = [i as u8; 32];
        requester
            .submit(&j)
            .unwrap_or_else(|e| fail("throughput job", e));
    }
    let sequential_rate = n as f64 / t.elapsed().as_secs_f64();
    line("e2e.jobs_per_s", sequential_rate, "jobs/s", &[]);
    // A job with a large input: 64 MiB in (the copy kernel reads its first
    // 4 KiB), 4 KiB out, through the same path. Each hop hashes the input
    // (the requester its Merkle root, the coordinator and the agent each
    // chunk), so peer `sha256_ms` is one pass of the input's Merkle root
    // (SHA-256 over its 8 KiB leaves) over the 64 MiB.
    {
        const MIB: usize = 64;
        let mut j = tiny_job();
        j.buffers[0].init = (0..MIB << 20).map(|i| (i / 4093) as u8).collect();
        j.buffers[0].len = (MIB << 20) as u64;
        // Moving and hashing 64 MiB takes far longer than a tiny job's
        // deadline allows.
        j.deadline_ms = 30_000;
        let mut k = 0u8;
        let large = p50_of(5, || {
            k += 1;
            j.nonce = [0x5A; 32];
            j.nonce[0] = k;
            requester
                .submit(&j)
                .unwrap_or_else(|e| fail("large-input job", e));
        }) / 1e3;
        let sha = p50_of(5, || {
            std::hint::black_box(tessera_core::merkle::root_of(&j.buffers[0].init));
        }) / 1e3;
        println!(
            "{{\"name\": \"e2e.large_input_ms\", \"value\": {large:.1}, \"unit\": \"ms\", \"peers\": {{\"sha256_ms\": {sha:.1}}}, \"input_mib\": {MIB}, \"mib_per_s\": {:.1}}}",
            MIB as f64 / (large / 1e3)
        );
    }
    // Four jobs in flight: four requesters submitting back to back to the
    // same agent (which takes up to four at once): inputs of one job arrive
    // while another runs, outputs upload while the next runs.
    const IN_FLIGHT: usize = 4;
    while runs.try_recv().is_ok() {}
    let (rate, _) = in_flight(coordinator.addr, &tls, n, IN_FLIGHT);
    let wall = (n / IN_FLIGHT * IN_FLIGHT) as f64 / rate;
    // How busy the executor (the device) was: its runs' time over the wall
    // time.
    let busy = busy_share(&runs, wall).0;
    println!(
        "{{\"name\": \"e2e.jobs_per_s_4_in_flight\", \"value\": {:.1}, \"unit\": \"jobs/s\", \"peers\": {{\"sequential\": {:.1}}}, \"executor_busy\": {:.3}}}",
        rate,
        sequential_rate,
        busy
    );

    // Pipelining where the device is the bottleneck: jobs that each keep the
    // device busy for about 2 ms (on the dispatcher alone) with little to
    // transfer, one at a time and then four in flight. With four in flight
    // the next job's offer, inputs and hand-over and the last one's
    // receipt and upload happen while the device runs, so the executor
    // should be running a job nearly all the time.
    let (fma_iters, _) = calibrate_device_bound(&mut d, Duration::from_millis(2));
    let fma_p50 = device_bound_p50(&mut d, fma_iters, 9);
    let fma = device_bound_job(fma_iters);
    let fma_n = 100;
    // One first, untimed: the agent's device builds the kernel's pipeline.
    let mut warm = fma.clone();
    warm.nonce = [0xD1; 32];
    requester
        .submit(&warm)
        .unwrap_or_else(|e| fail("device-bound job", e));
    while runs.try_recv().is_ok() {}
    let t = Instant::now();
    for i in 0..fma_n {
        let mut j = fma.clone();
        j.nonce = [0xD0; 32];
        j.nonce[..8].copy_from_slice(&(i as u64).to_le_bytes());
        requester
            .submit(&j)
            .unwrap_or_else(|e| fail("device-bound job", e));
    }
    let wall = t.elapsed().as_secs_f64();
    let fma_sequential = (fma_n as f64 / wall, busy_share(&runs, wall));
    let (fma_rate, _) = in_flight_of(coordinator.addr, &tls, &fma, fma_n, IN_FLIGHT);
    let fma_busy = busy_share(&runs, (fma_n / IN_FLIGHT * IN_FLIGHT) as f64 / fma_rate);
    println!(
        "{{\"name\": \"e2e.device_busy_4_in_flight\", \"value\": {:.3}, \"unit\": \"share\", \"peers\": {{\"sequential\": {:.3}}}, \"jobs_per_s\": {:.1}, \"jobs_per_s_sequential\": {:.1}, \"execute_us\": {:.1}, \"execute_us_sequential\": {:.1}, \"dispatch_only_us\": {:.1}, \"rate_over_device_alone\": {:.3}}}",
        fma_busy.0,
        fma_sequential.1 .0,
        fma_rate,
        fma_sequential.0,
        fma_busy.1,
        fma_sequential.1 .1,
        fma_p50,
        fma_rate * fma_sequential.1 .1 / 1e6
    );
    drop(requester);
    drop(gpu_agent);
    drop(coordinator);

    // A coordinator that asks for batches of up to 8 receipts, each result
    // waiting at most 1 ms. Its agents send a heartbeat every 100 ms: until
    // the first, it offers an agent at most 4 jobs at once. A quarter of
    // the 32-slot agent's slots: a batch as large as its slots would hold
    // them all until the last job ends, and the next jobs would come in
    // waves (batches of 16 were slower than 8 in three runs against three).
    const BATCH_RECEIPTS: usize = 8;
    let batching = || {
        CoordinatorProcess::start(
            exe,
            certs_dir,
            None,
            &[
                "--batch-receipts".into(),
                BATCH_RECEIPTS.to_string(),
                "--batch-delay-us".into(),
                "1000".into(),
                "--heartbeat-ms".into(),
                HEARTBEAT_MS.to_string(),
            ],
        )
    };
    const HEARTBEAT_MS: u64 = 100;
    // The pipelined run's jobs: one requester sends them `PIPELINED` ahead
    // of their answers (the most a requester may have in flight).
    const PIPELINED: usize = MAX_IN_FLIGHT;
    // Eight times the other runs' jobs (4,000 by default, under half a
    // second at 10,000 a second): a rate over 500 jobs (50 ms) was as much
    // the pipeline filling and draining, and the machine's hiccups, as the
    // rate it holds.
    let pn = n * 8;
    // Each run's jobs, with nonces of their own. Three runs of each, the
    // median reported: this machine is noisy.
    const RUNS: u8 = 3;
    let pipelined_jobs = |run: u8| -> Vec<_> {
        (0..pn)
            .map(|i| {
                let mut j = tiny_job();
                j.nonce = [0xEE; 32];
                j.nonce[..8].copy_from_slice(&(i as u64).to_le_bytes());
                j.nonce[8] = run;
                j
            })
            .collect()
    };
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    // Its peer, measured here: the same run to an agent holding the default
    // 4 jobs, whose results hold every slot while they wait for their batch
    // and its acknowledgement.
    let coordinator = batching();
    let gpu = GpuHost::open(DeviceSelector::Default, false).unwrap_or_else(|e| fail("GPU", e));
    let held_4 = agent(
        coordinator.addr,
        ca.clone(),
        3,
        caps.clone(),
        DEFAULT_MAX_CONCURRENT,
        gpu,
    );
    let mut requester = admitted(coordinator.addr, &tls);
    thread::sleep(Duration::from_millis(3 * HEARTBEAT_MS));
    let mut held_4_rates = Vec::new();
    for run in 0..RUNS {
        let jobs = pipelined_jobs(run);
        let t = Instant::now();
        for r in requester.submit_all(&jobs, PIPELINED) {
            r.unwrap_or_else(|e| fail("pipelined job, 4 held", e));
        }
        held_4_rates.push(pn as f64 / t.elapsed().as_secs_f64());
    }
    let held_4_rate = median(held_4_rates);
    drop(requester);
    drop(held_4);
    drop(coordinator);

    // The same four in flight with batched receipts.
    let coordinator = batching();
    let gpu = GpuHost::open(DeviceSelector::Default, false).unwrap_or_else(|e| fail("GPU", e));
    let (runs_tx, runs) = channel();
    let gpu = Timed {
        inner: gpu,
        runs: runs_tx,
    };
    let gpu_agent = agent(coordinator.addr, ca.clone(), 2, caps, MAX_JOBS as u8, gpu);
    let requester = admitted(coordinator.addr, &tls);
    while runs.try_recv().is_ok() {}
    let (batched_rate, signatures) = in_flight(coordinator.addr, &tls, n, IN_FLIGHT);
    let jobs = (n / IN_FLIGHT * IN_FLIGHT) as f64;
    let busy = busy_share(&runs, jobs / batched_rate).0;
    println!(
        "{{\"name\": \"e2e.jobs_per_s_batched\", \"value\": {:.1}, \"unit\": \"jobs/s\", \"peers\": {{\"4_in_flight\": {:.1}, \"sequential\": {:.1}}}, \"receipts_per_signature\": {:.2}, \"executor_busy\": {:.3}}}",
        batched_rate,
        rate,
        sequential_rate,
        jobs / signatures.max(1) as f64,
        busy
    );

    // One requester with its jobs sent ahead of their answers
    // (`Requester::submit_all`, 64 in flight), through the same agent and
    // coordinator, which knows from the agent's heartbeats that it takes 16:
    // the coordinator keeps the agent's slots full, and the requester checks
    // each batch statement once.
    thread::sleep(Duration::from_millis(3 * HEARTBEAT_MS));
    let mut pipelined =
        Requester::connect(coordinator.addr, tls.clone()).unwrap_or_else(|e| fail("requester", e));
    let me = std::process::id();
    let cores = thread::available_parallelism().map_or(1, |c| c.get());
    let mut measured = Vec::new();
    for run in 0..RUNS {
        let jobs = pipelined_jobs(run);
        while runs.try_recv().is_ok() {}
        let (ours_before, coordinator_before) =
            (thread_cpu(me), thread_cpu(coordinator.child.id()));
        let t = Instant::now();
        let results = pipelined.submit_all(&jobs, PIPELINED);
        let wall = t.elapsed().as_secs_f64();
        let (ours_after, coordinator_after) = (thread_cpu(me), thread_cpu(coordinator.child.id()));
        // Without /proc (another system) there are no readings: no figure
        // rather than zeros.
        let readable = [
            &ours_before,
            &ours_after,
            &coordinator_before,
            &coordinator_after,
        ]
        .iter()
        .all(|r| !r.is_empty());
        let ours = cpu_between(&ours_before, &ours_after);
        let coordinator_ns: u64 = cpu_between(&coordinator_before, &coordinator_after)
            .iter()
            .map(|(_, _, ns)| ns)
            .sum();
        let mut statements = std::collections::HashSet::new();
        for r in results {
            let r = r.unwrap_or_else(|e| fail("pipelined job", e));
            statements
                .insert(r.receipt[..r.receipt.len().min(tessera_core::attest::BATCH_LEN)].to_vec());
        }
        let busy = busy_share(&runs, wall).0;
        // Where the CPU went in that run, per job: the requester (this
        // process's main thread), the coordinator (its whole process), the
        // agent's runtime thread, its executor thread, and every other
        // thread of this process, which is the device's (lavapipe's
        // threads) when the device is the CPU.
        let of = |pick: &dyn Fn(u32, &str) -> bool| -> u64 {
            ours.iter()
                .filter(|(tid, name, _)| pick(*tid, name))
                .map(|(_, _, ns)| ns)
                .sum()
        };
        let parts = [
            of(&|tid, _| tid == me),
            coordinator_ns,
            of(&|tid, name| tid != me && name == AGENT_THREAD),
            of(&|tid, name| tid != me && name.starts_with("tessera-exec")),
            of(&|tid, name| tid != me && name != AGENT_THREAD && !name.starts_with("tessera-exec")),
        ];
        measured.push(Pipelined {
            rate: pn as f64 / wall,
            wall,
            receipts_per_signature: pn as f64 / statements.len().max(1) as f64,
            busy,
            cpu_ns: readable.then_some(parts),
        });
    }
    let rates: Vec<f64> = measured.iter().map(|m| m.rate).collect();
    measured.sort_by(|a, b| a.rate.total_cmp(&b.rate));
    let m = &measured[measured.len() / 2];
    let runs_json: Vec<String> = rates.iter().map(|r| format!("{r:.1}")).collect();
    println!(
        "{{\"name\": \"e2e.jobs_per_s_pipelined\", \"value\": {:.1}, \"unit\": \"jobs/s\", \"peers\": {{\"held_4\": {:.1}, \"batched\": {:.1}, \"sequential\": {:.1}}}, \"in_flight\": {PIPELINED}, \"held\": {MAX_JOBS}, \"receipts_per_signature\": {:.2}, \"executor_busy\": {:.3}, \"runs\": [{}]}}",
        m.rate,
        held_4_rate,
        batched_rate,
        sequential_rate,
        m.receipts_per_signature,
        m.busy,
        runs_json.join(", ")
    );
    // The median run's CPU per job, beside the CPU time a job may take, on
    // this machine's cores, for 10,000 jobs a second.
    let per_job = |ns: u64| ns as f64 / 1e3 / pn as f64;
    if let Some([requester_ns, coordinator_ns, agent_ns, executor_ns, device_ns]) = m.cpu_ns {
        let cpu_ns = requester_ns + coordinator_ns + agent_ns + executor_ns + device_ns;
        println!(
            "{{\"name\": \"e2e.cpu_per_job_pipelined\", \"value\": {:.1}, \"unit\": \"us\", \"peers\": {{\"budget_at_10000_per_s\": {:.1}}}, \"parts\": {{\"requester\": {:.1}, \"coordinator\": {:.1}, \"agent\": {:.1}, \"executor\": {:.1}, \"device_and_other_threads\": {:.1}}}, \"cores\": {cores}, \"cores_busy\": {:.2}}}",
            per_job(cpu_ns),
            cores as f64 * 1e6 / 10_000.0,
            per_job(requester_ns),
            per_job(coordinator_ns),
            per_job(agent_ns),
            per_job(executor_ns),
            per_job(device_ns),
            cpu_ns as f64 / 1e9 / m.wall
        );
    } else {
        eprintln!("e2e.cpu_per_job_pipelined: no /proc/PID/task/TID/schedstat here");
    }
    eprintln!("({} timed jobs in {total:.1} s)", iters);

    drop(pipelined);
    drop(requester);
    drop(gpu_agent);
    drop(coordinator);

    // Coordinator memory per agent, on a fresh coordinator: 100 CPU agents
    // connect, and its resident set is read when it counts them all.
    const AGENTS: u8 = 100;
    let coordinator = CoordinatorProcess::start(exe, certs_dir, Some(100), &[]);
    coordinator.wait_connected(0, Duration::from_secs(30));
    let before = coordinator.rss_bytes();
    let cpu = |job: &JobToRun| {
        Ok(JobOutputs {
            outputs: job
                .spec
                .buffers
                .iter()
                .filter(|b| b.readback)
                .map(|b| vec![0; b.len as usize])
                .collect(),
            usage: Default::default(),
        })
    };
    let mut caps = DeviceCapabilities {
        device_local_bytes: 1 << 30,
        ..Default::default()
    };
    let _ = caps.name.push_str("cpu");
    let agents: Vec<AgentThread> = (0..AGENTS)
        .map(|i| {
            agent(
                coordinator.addr,
                ca.clone(),
                10 + i,
                caps.clone(),
                DEFAULT_MAX_CONCURRENT,
                FnExecutor(cpu),
            )
        })
        .collect();
    coordinator.wait_connected(usize::from(AGENTS), Duration::from_secs(60));
    let after = coordinator.rss_bytes();
    if before == 0 || after == 0 {
        fail("coordinator memory", "cannot read its resident set");
    }
    line(
        "e2e.coordinator_bytes_per_agent",
        after.saturating_sub(before) as f64 / f64::from(AGENTS),
        "bytes",
        &[],
    );
    drop(agents);
}
