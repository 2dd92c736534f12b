//! The dispatcher behind the agent: jobs arriving over the protocol run as real
//! kernels on the Vulkan device (lavapipe in CI, validation layer on), their
//! receipts carry the metered GPU time, and a hostile kernel ends in a signed
//! failure whose detail is the dispatcher's rejection code.
#![cfg(feature = "vulkan")]

mod vulkan_support;

use tessera_core::attest::{
    ChainState, DeviceCapabilities, Ed25519Signer, Evidence, Receipt, ReceiptStatus,
};
use tessera_core::gpu_host::{evidence_capabilities, GpuHost};
use tessera_core::host::{JobFailure, JobOutputs};
use tessera_core::testkit::{decode, Harness, Host, JobDescription};
use tessera_core::vulkan::DeviceSelector;
use tessera_core::wire::{FailReason, JobAssign, Message, Welcome};
use tessera_core::{Agent, Config};
use vulkan_support::{assert_clean, f32_bytes, f32s, kernel, TIMEOUT};

fn gpu() -> GpuHost {
    GpuHost::open(DeviceSelector::Default, true).expect("a Vulkan device")
}

/// An agent whose host runs jobs on the GPU; returns the harness and the key.
fn harness(mut host: GpuHost) -> (Harness, [u8; 32], DeviceCapabilities) {
    let signer = Ed25519Signer::from_seed(&[3; 32]).unwrap();
    let caps = host.capabilities().clone();
    let config = Config {
        capabilities: caps.clone(),
        ..Config::default()
    };
    let agent = Agent::new(config, signer, ChainState::default()).unwrap();
    let runner = Box::new(
        move |spec: &JobAssign, k: &[u8], b: &[Vec<u8>]| -> Result<JobOutputs, JobFailure> {
            let out = host.run_job(spec, k, b, TIMEOUT);
            assert_clean(host.dispatcher());
            out
        },
    );
    let mut h = Harness::with_host(agent, Host::with_runner(runner));
    h.agent.connect(h.now).unwrap();
    h.pump();
    h.send(&Message::Welcome(Welcome {
        version: 1,
        challenge: [1; 32],
        heartbeat_ms: 0,
    }));
    let frames = h.pump();
    let Message::Evidence(b) = decode(&frames[0]) else {
        panic!("expected evidence")
    };
    let ev = Evidence::verify(b.bytes, &[1; 32]).unwrap();
    h.send(&Message::Ready);
    h.pump();
    (h, ev.public_key, ev.capabilities)
}

fn run(h: &mut Harness, id: u64, j: &JobDescription) -> (Vec<u8>, Vec<u8>, Option<FailReason>) {
    h.send(&Message::JobOffer(j.offer(id, u64::MAX, 60_000)));
    h.send(&Message::JobAssign(j.assign(id)));
    for f in j.input_frames(id) {
        h.send_raw(&f);
    }
    let mut out = Vec::new();
    let mut receipt = Vec::new();
    let mut failed = None;
    for f in h.pump() {
        match decode(&f) {
            Message::OutputChunk(c) => out.extend_from_slice(c.data),
            Message::Receipt(r) => receipt = r.bytes.to_vec(),
            Message::Failed(x) => failed = Some(x.reason),
            _ => {}
        }
    }
    (out, receipt, failed)
}

#[test]
fn protocol_jobs_run_on_the_gpu_with_metered_receipts() {
    let (mut h, pk, caps) = harness(gpu());
    assert!(!caps.name.is_empty());
    assert!(
        caps.copy_mbps > 0,
        "the start-up benchmark enters the evidence"
    );

    // Matrix multiply, 48 x 40 by 40 x 32.
    let (m, n, k) = (48u32, 32u32, 40u32);
    let a: Vec<f32> = (0..m * k).map(|i| (i % 7) as f32 - 3.0).collect();
    let b: Vec<f32> = (0..k * n).map(|i| (i % 5) as f32 * 0.5).collect();
    let push: Vec<u8> = [m, n, k].iter().flat_map(|v| v.to_le_bytes()).collect();
    let j = JobDescription {
        kernel: kernel("matmul"),
        entry_point: "main".into(),
        grid: [n.div_ceil(16), m.div_ceil(16), 1],
        push_constants: push,
        buffers: vec![
            (f32_bytes(&a), (m * k * 4) as u64, false),
            (f32_bytes(&b), (k * n * 4) as u64, false),
            (Vec::new(), (m * n * 4) as u64, true),
        ],
        nonce: [9; 32],
        bindings: Vec::new(),
    };
    let (out, receipt, failed) = run(&mut h, 1, &j);
    assert_eq!(failed, None);
    let c = f32s(&out);
    for row in 0..m as usize {
        for col in 0..n as usize {
            let want: f32 = (0..k as usize)
                .map(|i| a[row * k as usize + i] * b[i * n as usize + col])
                .sum();
            assert!((c[row * n as usize + col] - want).abs() < 1e-3);
        }
    }
    let r = Receipt::verify(&receipt, &pk).unwrap();
    assert_eq!(r.status, ReceiptStatus::Completed);
    assert!(r.usage.gpu_time_us > 0, "GPU time is metered");
    assert_eq!(r.usage.dispatches, 1);

    // The same job again: bit-identical outputs, the same result hash.
    h.send(&Message::ResultAck(tessera_core::wire::JobRef { job: 1 }));
    h.pump();
    let (out2, receipt2, _) = run(&mut h, 2, &j);
    assert_eq!(out, out2);
    let r2 = Receipt::verify(&receipt2, &pk).unwrap();
    assert_eq!(r.result_hash, r2.result_hash);
    assert_ne!(r.result_seal, r2.result_seal, "the seal binds the job id");
}

#[test]
fn a_hostile_kernel_fails_with_its_rejection_code_and_the_agent_serves_on() {
    let (mut h, pk, _) = harness(gpu());
    let j = JobDescription {
        kernel: kernel("hostile_bda"),
        entry_point: "main".into(),
        grid: [1, 1, 1],
        push_constants: vec![0; 8],
        buffers: vec![(Vec::new(), 256, true)],
        nonce: [2; 32],
        bindings: Vec::new(),
    };
    let (_, receipt, failed) = run(&mut h, 1, &j);
    assert_eq!(failed, Some(FailReason::KernelRejected));
    let r = Receipt::verify(&receipt, &pk).unwrap();
    assert_eq!(r.status, ReceiptStatus::Failed(FailReason::KernelRejected));
    h.send(&Message::ResultAck(tessera_core::wire::JobRef { job: 1 }));
    h.pump();

    let x = f32_bytes(&[1.0; 64]);
    let y = f32_bytes(&[2.0; 64]);
    let push: Vec<u8> = 3.0f32
        .to_le_bytes()
        .into_iter()
        .chain(64u32.to_le_bytes())
        .collect();
    let saxpy = JobDescription {
        kernel: kernel("saxpy"),
        entry_point: "main".into(),
        grid: [1, 1, 1],
        push_constants: push,
        buffers: vec![(x, 256, false), (y, 256, true)],
        nonce: [3; 32],
        bindings: Vec::new(),
    };
    let (out, _, failed) = run(&mut h, 2, &saxpy);
    assert_eq!(failed, None);
    assert_eq!(f32s(&out), vec![5.0; 64]);
}

/// A saxpy job whose buffers sit at bindings 0 and 2 (x, then y read back).
fn saxpy_at_0_and_2(kernel_name: &str, bindings: Vec<u32>) -> JobDescription {
    let x = f32_bytes(&(0..64).map(|i| i as f32).collect::<Vec<_>>());
    let y = f32_bytes(&[1.0; 64]);
    let push: Vec<u8> = 2.0f32
        .to_le_bytes()
        .into_iter()
        .chain(64u32.to_le_bytes())
        .collect();
    JobDescription {
        kernel: kernel(kernel_name),
        entry_point: "main".into(),
        grid: [1, 1, 1],
        push_constants: push,
        buffers: vec![(x, 256, false), (y, 256, true)],
        nonce: [5; 32],
        bindings,
    }
}

fn saxpy_expected() -> Vec<f32> {
    (0..64).map(|i| 2.0 * i as f32 + 1.0).collect()
}

#[test]
fn a_job_whose_bindings_have_a_gap_runs_through_the_agent() {
    let (mut h, pk, _) = harness(gpu());
    // The kernel binds x at 0 and y at 2; the job names those bindings.
    let j = saxpy_at_0_and_2("saxpy_gap", vec![0, 2]);
    let (out, receipt, failed) = run(&mut h, 1, &j);
    assert_eq!(failed, None);
    assert_eq!(f32s(&out), saxpy_expected());
    let r = Receipt::verify(&receipt, &pk).unwrap();
    assert_eq!(r.status, ReceiptStatus::Completed);
    assert_eq!(
        r.kernel_hash,
        j.assign(1).kernel_hash(),
        "the receipt binds the bindings the job named"
    );
    assert_ne!(
        r.kernel_hash,
        saxpy_at_0_and_2("saxpy_gap", vec![0, 1])
            .assign(1)
            .kernel_hash()
    );
    h.send(&Message::ResultAck(tessera_core::wire::JobRef { job: 1 }));
    h.pump();

    // The same kernel with the buffers at 0 and 1 does not match its
    // bindings: refused before it runs, with a signed failure.
    let wrong = saxpy_at_0_and_2("saxpy_gap", vec![0, 1]);
    let (_, receipt, failed) = run(&mut h, 2, &wrong);
    assert_eq!(failed, Some(FailReason::KernelRejected));
    let r = Receipt::verify(&receipt, &pk).unwrap();
    assert_eq!(r.status, ReceiptStatus::Failed(FailReason::KernelRejected));
}

#[test]
fn a_declared_but_unused_binding_needs_no_buffer() {
    let (mut h, pk, _) = harness(gpu());
    // The kernel declares binding 1 and never uses it; the job supplies 0 and 2.
    let j = saxpy_at_0_and_2("saxpy_unused_binding", vec![0, 2]);
    let (out, receipt, failed) = run(&mut h, 1, &j);
    assert_eq!(failed, None);
    assert_eq!(f32s(&out), saxpy_expected());
    let r = Receipt::verify(&receipt, &pk).unwrap();
    assert_eq!(r.status, ReceiptStatus::Completed);
}

#[test]
fn evidence_capabilities_reflect_the_device() {
    let d = vulkan_support::dispatcher();
    let caps = d.capabilities();
    let ev = evidence_capabilities(caps);
    assert_eq!(ev.vendor_id, caps.vendor_id);
    assert_eq!(ev.max_workgroup_size, caps.limits.max_workgroup_size);
    assert_eq!(ev.subgroup_size, caps.subgroup_size);
    assert!(ev.device_local_bytes > 0);
    assert_clean(&d);
}

/// Runs a job on a host, returning its outputs.
type RunOnHost = Box<dyn Fn(&mut GpuHost) -> Vec<Vec<u8>>>;

/// A sealed job's run keeps nothing of its plaintext in the dispatcher:
/// `GpuHost` runs it as confidential ("End-to-end sealing": the plaintext
/// lives in host memory only while the job runs), and its kernel, when it
/// came sealed, as a secret. The same assignment in the clear, the
/// control, leaves its pipeline cached and its bytes in the pooled
/// buffers. Through `run_job` and through the executor's batches.
#[test]
fn a_sealed_job_leaves_no_pipeline_and_no_bytes_behind() {
    use tessera_core::wire::Sealing;
    // saxpy (a kernel the device's start-up benchmark does not build):
    // y = 1 * x + 0 returns x.
    let n = 1024u32;
    let x: Vec<f32> = (0..n).map(|i| (i * 7 + 100_003) as f32).collect();
    let secret = f32_bytes(&x);
    let j = JobDescription {
        kernel: kernel("saxpy"),
        entry_point: "main".into(),
        grid: [n / 64, 1, 1],
        push_constants: vulkan_support::saxpy_push(1.0, n),
        buffers: vec![(secret.clone(), 4096, false), (Vec::new(), 4096, true)],
        nonce: [9; 32],
        bindings: Vec::new(),
    };
    let inputs = vec![secret.clone(), Vec::new()];
    let needle = &secret[300..364];
    // (sealed, its kernel sealed): in the clear, sealed with the kernel in
    // the clear, all sealed.
    for (sealed, kernel_sealed) in [(false, false), (true, false), (true, true)] {
        let mut spec = j.assign(1);
        if sealed {
            // The run sees the job opened; the sealing says it was sealed.
            spec.sealing = Some(Sealing {
                enc: [1; 32],
                requester_key: [2; 32],
                kernel_sealed,
                result_key: [3; 32],
                result_key_tag: [4; 16],
            });
        }
        let what = format!("sealed {sealed}, kernel sealed {kernel_sealed}");
        let mut runs: Vec<(&str, RunOnHost)> = Vec::new();
        let (s1, i1) = (spec.clone(), inputs.clone());
        runs.push((
            "run_job",
            Box::new(move |host: &mut GpuHost| {
                host.run_job(&s1, &kernel("saxpy"), &i1, TIMEOUT)
                    .expect("run_job")
                    .outputs
            }),
        ));
        #[cfg(feature = "net")]
        {
            let (s2, i2) = (spec.clone(), inputs.clone());
            runs.push((
                "run_batch",
                Box::new(move |host: &mut GpuHost| {
                    use tessera_core::net::{CancelFlag, Executor, JobToRun};
                    let run = JobToRun {
                        id: 1,
                        run: 1,
                        spec: s2.clone(),
                        kernel: kernel("saxpy"),
                        buffers: i2.clone(),
                        deadline: std::time::Instant::now() + TIMEOUT,
                        cancel: CancelFlag::new(),
                    };
                    let mut out = None;
                    host.run_batch(&[&run, &run], &mut |i, r| {
                        if i == 0 {
                            out = Some(r.expect("run_batch").outputs);
                        }
                    });
                    out.expect("reported")
                }),
            ));
        }
        for (how, run) in &runs {
            let mut host = gpu();
            // The device's start-up benchmark keeps its own kernels'.
            let before = host.dispatcher().cached_pipelines();
            let out = run(&mut host);
            assert_eq!(out, std::slice::from_ref(&secret), "{how}: {what}");
            let d = host.dispatcher();
            let kept = d.cached_pipelines() - before;
            assert_eq!(kept, usize::from(!kernel_sealed), "{how}: {what}");
            assert_eq!(d.pool_holds(needle), !sealed, "{how}: {what}");
            assert_clean(d);
        }
    }
}
