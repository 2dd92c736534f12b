//! A kernel that never terminates must time out within its limit, and the
//! same dispatcher must run the next job; through the agent it ends in a
//! signed `Timeout` receipt charged the job's quote.
#![cfg(feature = "vulkan")]

mod vulkan_support;
use std::time::{Duration, Instant};
use tessera_core::vulkan::*;
use vulkan_support::*;

#[test]
fn infinite_loop_times_out_and_dispatcher_keeps_serving() {
    let mut d = dispatcher();
    let spirv = kernel("hostile_loop");
    let bufs = [BufferSpec {
        binding: 0,
        len: 64,
        init: None,
        readback: true,
    }];
    let job = KernelJob {
        spirv: &spirv,
        entry_point: "main",
        specialization: &[],
        push_constants: &[],
        grid: [65535, 1, 1],
        buffers: &bufs,
    };
    let limit = Duration::from_millis(500);
    let t = Instant::now();
    let r = d.run(&job, limit);
    let took = t.elapsed();
    assert_eq!(r, Err(JobError::Timeout));
    assert_eq!(JobError::Timeout.code(), 1);
    assert!(took < limit + Duration::from_secs(2), "took {took:?}");
    eprintln!(
        "timeout after {took:?}, generation {}",
        d.device_generation()
    );

    // The next job on the same dispatcher succeeds.
    still_serving(&mut d);
    assert!(d.device_generation() >= 1);
    assert_clean(&d);
}

/// Through the agent: an endless kernel ends in a signed `Timeout` receipt,
/// metered to the time limit the host gave it and charged the job's quote.
#[test]
fn an_endless_kernel_through_the_agent_is_charged_its_quote() {
    use tessera_core::attest::{ChainState, Ed25519Signer, Evidence, Receipt, ReceiptStatus};
    use tessera_core::gpu_host::GpuHost;
    use tessera_core::host::{JobFailure, JobOutputs};
    use tessera_core::testkit::{decode, Harness, Host, JobDescription};
    use tessera_core::wire::{FailReason, JobAssign, Message, Welcome};
    use tessera_core::{Agent, Config, LinearPrice, Policy};

    let mut gpu = GpuHost::open(DeviceSelector::Default, true).expect("a Vulkan device");
    let config = Config {
        capabilities: gpu.capabilities().clone(),
        policy: Policy {
            price: LinearPrice {
                base: 100,
                ..LinearPrice::default()
            },
            ..Policy::default()
        },
        ..Config::default()
    };
    let signer = Ed25519Signer::from_seed(&[3; 32]).unwrap();
    let agent = Agent::new(config, signer, ChainState::default()).unwrap();
    let limit = Duration::from_millis(500);
    let runner = Box::new(
        move |spec: &JobAssign, k: &[u8], b: &[Vec<u8>]| -> Result<JobOutputs, JobFailure> {
            let r = gpu.run_job(spec, k, b, limit);
            assert_clean(gpu.dispatcher());
            r
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
    let pk = Evidence::verify(b.bytes, &[1; 32]).unwrap().public_key;
    h.send(&Message::Ready);
    h.pump();

    let j = JobDescription {
        kernel: kernel("hostile_loop"),
        entry_point: "main".into(),
        grid: [65535, 1, 1],
        push_constants: Vec::new(),
        buffers: vec![(Vec::new(), 64, true)],
        nonce: [4; 32],
        bindings: Vec::new(),
    };
    h.send(&Message::JobOffer(j.offer(1, 1000, 60_000)));
    h.send(&Message::JobAssign(j.assign(1)));
    for f in j.input_frames(1) {
        h.send_raw(&f);
    }
    let mut quote = None;
    let mut failed = None;
    let mut receipt = None;
    for f in h.pump() {
        match decode(&f) {
            Message::OfferAccept(a) => quote = Some(a.price),
            Message::Failed(x) => failed = Some(x.reason),
            Message::Receipt(r) => receipt = Some(r.bytes.to_vec()),
            _ => {}
        }
    }
    assert_eq!(quote, Some(100));
    assert_eq!(failed, Some(FailReason::Timeout));
    let r = Receipt::verify(&receipt.expect("a receipt"), &pk).unwrap();
    assert_eq!(r.status, ReceiptStatus::Failed(FailReason::Timeout));
    assert_eq!(r.price, 100, "charged the accepted quote");
    assert_eq!(r.usage.gpu_time_us, 500_000, "metered to the time limit");
}

/// Devices abandoned to kernels still running are bounded: at the bound the
/// host says it takes no work (the runtime then declines offers with
/// `Unavailable`), and a job that reaches it anyway fails as a host failure.
/// (An endless loop no longer fills the bound: the watchdog stops it. A
/// kernel without loops that stays busy for seconds does.)
#[cfg(feature = "net")]
#[test]
fn at_the_bound_of_abandoned_devices_the_host_takes_no_work() {
    use tessera_core::gpu_host::GpuHost;
    use tessera_core::net::Executor;
    use tessera_core::testkit::JobDescription;
    use tessera_core::wire::FailReason;

    let mut gpu = GpuHost::open(DeviceSelector::Default, true).expect("a Vulkan device");
    assert!(gpu.accepting_jobs());
    let busy = JobDescription {
        kernel: kernel("hostile_busy"),
        entry_point: "main".into(),
        // About 1.8 s of work per row on lavapipe: 5.5 s here.
        grid: [65535, 3, 1],
        push_constants: Vec::new(),
        buffers: vec![(vec![1; 192 * 16], 192 * 16, true)],
        nonce: [6; 32],
        bindings: Vec::new(),
    };
    let spec = busy.assign(1);
    let inputs = [vec![1u8; 192 * 16]];
    // The default bound is two abandoned devices. The time limit leaves
    // the compiler its 0.2 s (more on a loaded machine): a job that timed
    // out while compiling leaves a device that settles at once.
    for _ in 0..2 {
        let failure = gpu
            .run_job(&spec, &busy.kernel, &inputs, Duration::from_millis(1000))
            .expect_err("the busy kernel times out");
        assert_eq!(failure.reason, FailReason::Timeout);
    }
    assert!(
        !gpu.accepting_jobs(),
        "two devices still run abandoned work"
    );
    let failure = gpu
        .run_job(&spec, &busy.kernel, &inputs, Duration::from_millis(300))
        .expect_err("refused");
    assert_eq!(failure.reason, FailReason::Host);
    assert_eq!(failure.usage.gpu_time_us, 0, "nothing ran");
    assert_clean(gpu.dispatcher());
}
