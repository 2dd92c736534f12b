//! End-to-end benchmarks over TLS on loopback. Prints one JSON object per line:
//!
//! - `e2e.job_p50`, `e2e.job_p99`: microseconds from a requester submitting a
//!   tiny job (4 KiB in, the copy kernel, 4 KiB out) to holding its verified
//!   result (the requester checks evidence, receipt and a Merkle spot check),
//!   through the reference coordinator and a provider agent on the Vulkan
//!   device; peer `dispatch_only`: the same kernel's dispatcher round trip
//!   (upload, dispatch, read back), measured in the same run on the same device.
//! - `e2e.jobs_per_s`: sequential jobs per second through one agent.
//! - `e2e.coordinator_bytes_per_agent`: the resident memory a coordinator
//!   grows by per admitted agent. A fresh coordinator process, which has run
//!   no job, logs its count of connected providers (sessions whose evidence
//!   it verified) every 100 ms; its resident set is read once it has logged
//!   none connected, and again as soon as it logs all 100 CPU agents
//!   connected; the difference is divided by 100.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use tessera_bench::process::{fail, line, CoordinatorProcess};
use tessera_bench::{percentile, tiny_job, COPY_SPV, LEN};
use tessera_coordinator::requester::{new_nonce, Requester};
use tessera_coordinator::tls::client_config as requester_tls;
use tessera_coordinator::verify_result;
use tessera_core::attest::{DeviceCapabilities, Ed25519Signer};
use tessera_core::gpu_host::GpuHost;
use tessera_core::net::{
    client_config, FnExecutor, JobOutputs, JobToRun, NetConfig, Runtime, Trust,
};
use tessera_core::vulkan::{
    BufferSpec, DeviceSelector, Dispatcher, DispatcherConfig, Instance, KernelJob,
};
use tessera_core::{Config, Policy};

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
    executor: E,
) -> AgentThread {
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let thread = thread::spawn(move || {
        let tls = client_config(&Trust::CaPem(ca)).unwrap_or_else(|e| fail("agent TLS", e));
        let config = Config {
            capabilities,
            policy: Policy::default(),
            ..Config::default()
        };
        let signer =
            Ed25519Signer::from_seed(&[seed; 32]).unwrap_or_else(|e| fail("key", format!("{e:?}")));
        let net = NetConfig::new(addr.to_string(), "localhost", tls);
        let mut rt =
            Runtime::new(config, signer, executor, net).unwrap_or_else(|e| fail("runtime", e));
        while !s.load(Ordering::SeqCst) {
            if let Err(e) = rt.step(Some(Duration::from_millis(50))) {
                fail("agent loop", e);
            }
        }
    });
    AgentThread {
        stop,
        thread: Some(thread),
    }
}

fn main() {
    let iters: usize = std::env::var("TESSERA_BENCH_ITERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000);
    let exe = std::env::var("TESSERA_COORDINATOR")
        .unwrap_or_else(|_| "target/release/tessera-coordinator".into());
    let certs_dir = std::env::temp_dir().join(format!("tessera-e2e-bench-{}", std::process::id()));
    let bundle =
        tessera_coordinator::certs::generate(&[]).unwrap_or_else(|e| fail("certificates", e));
    bundle
        .write_to(&certs_dir)
        .unwrap_or_else(|e| fail("certificates", e));
    let ca = bundle.ca_pem.clone().into_bytes();

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
    let coordinator = CoordinatorProcess::start(&exe, &certs_dir, None, &[]);
    let gpu_agent = agent(coordinator.addr, ca.clone(), 1, caps, gpu);
    let tls = requester_tls(&Trust::CaPem(ca.clone())).unwrap_or_else(|e| fail("requester TLS", e));
    let mut requester = None;
    let deadline = Instant::now() + Duration::from_secs(30);
    // Wait for the agent to be admitted: the first job succeeds.
    while requester.is_none() {
        let mut r = Requester::connect(coordinator.addr, tls.clone())
            .unwrap_or_else(|e| fail("requester", e));
        let mut j = tiny_job();
        j.nonce = new_nonce().unwrap_or_else(|e| fail("nonce", e));
        if r.submit(&j).is_ok() {
            requester = Some(r);
        } else if Instant::now() > deadline {
            fail("first job", "no provider admitted");
        } else {
            thread::sleep(Duration::from_millis(50));
        }
    }
    let mut requester = requester.unwrap_or_else(|| fail("requester", "none"));

    let mut e2e = Vec::with_capacity(iters);
    let mut floor = Vec::with_capacity(iters);
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
        let r = requester
            .submit(&j)
            .unwrap_or_else(|e| fail(&format!("job {i}"), e));
        verify_result(&j, &r).unwrap_or_else(|e| fail("verify", format!("{e:?}")));
        e2e.push(t.elapsed().as_secs_f64() * 1e6);
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
    line(
        "e2e.jobs_per_s",
        n as f64 / t.elapsed().as_secs_f64(),
        "jobs/s",
        &[],
    );
    eprintln!("({} timed jobs in {total:.1} s)", iters);

    drop(requester);
    drop(gpu_agent);
    drop(coordinator);

    // Coordinator memory per agent, on a fresh coordinator: 100 CPU agents
    // connect, and its resident set is read when it counts them all.
    const AGENTS: u8 = 100;
    let coordinator = CoordinatorProcess::start(&exe, &certs_dir, Some(100), &[]);
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
    let _ = std::fs::remove_dir_all(&certs_dir);
}
