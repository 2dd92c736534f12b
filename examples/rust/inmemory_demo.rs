//! A whole provider job lifecycle in memory: a Tessera agent and a scripted
//! coordinator exchange real protocol frames, the host runs the job (saxpy,
//! y = a·x + y, a SPIR-V kernel) on a Vulkan device through the dispatcher,
//! and the coordinator checks the outputs against a CPU reference, the signed
//! evidence and the signed receipt, spot-checking one output chunk with a
//! Merkle proof. Every step is printed.
//!
//! Run it with `ci/demo` or `cargo run -p tessera-examples --bin inmemory-demo`.

use std::process::ExitCode;

use tessera_core::attest::{
    verify_output_chunk, ChainState, Ed25519Signer, Evidence, ReceiptVerifier, Signer,
};
use tessera_core::gpu_host::GpuHost;
use tessera_core::limits::CHUNK_SIZE;
use tessera_core::merkle::{leaf_hash, prove};
use tessera_core::testkit::{Harness, Host, JobDescription};
use tessera_core::vulkan::DeviceSelector;
use tessera_core::wire::{JobAssign, JobRef, Message, Welcome};
use tessera_core::{Agent, Config, Duration, LinearPrice, Policy};

const N: usize = 6000;
const A: f32 = 2.5;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn describe(m: &Message<'_>) -> String {
    match m {
        Message::Hello(h) => format!(
            "Hello (versions {}..={}, key {})",
            h.min_version,
            h.max_version,
            hex(&h.key_id)
        ),
        Message::Welcome(w) => format!(
            "Welcome (version {}, challenge {}…)",
            w.version,
            hex(&w.challenge[..8])
        ),
        Message::Evidence(b) => format!("Evidence ({} signed bytes)", b.bytes.len()),
        Message::JobOffer(o) => format!(
            "JobOffer (job {}, {} B in, {} B out, ≤ {} units, due in {} ms)",
            o.job, o.bytes_in, o.bytes_out, o.max_price, o.deadline_ms
        ),
        Message::OfferAccept(a) => format!("OfferAccept (job {}, price {})", a.job, a.price),
        Message::OfferDecline(d) => format!("OfferDecline (job {}, {:?})", d.job, d.reason),
        Message::JobAssign(a) => format!(
            "JobAssign (job {}, kernel {} B entry \"{}\", grid {:?}, {} buffers)",
            a.job,
            a.kernel.len,
            a.kernel.entry_point,
            a.kernel.grid,
            a.buffers.len()
        ),
        Message::InputChunk(c) | Message::OutputChunk(c) => format!(
            "{:?} (job {}, stream {}, chunk {}, {} B, leaf {}…)",
            m.kind(),
            c.job,
            c.stream,
            c.index,
            c.data.len(),
            hex(&c.digest[..6])
        ),
        Message::Completed(c) => format!(
            "Completed (job {}, {} B out, root {}…)",
            c.job,
            c.output_len,
            hex(&c.output_root[..8])
        ),
        Message::UsageReport(u) => format!(
            "UsageReport (job {}, {} µs GPU, {} dispatch, price {})",
            u.job, u.usage.gpu_time_us, u.usage.dispatches, u.price
        ),
        Message::Receipt(r) => format!("Receipt (job {}, {} signed bytes)", r.job, r.bytes.len()),
        other => format!("{other:?}"),
    }
}

/// The saxpy kernel (core/kernels/saxpy.comp): binding 0 is x, binding 1 is
/// y, push constants are `a` (f32) and `n` (u32).
const SAXPY: &[u8] = include_bytes!("../../core/kernels/saxpy.spv");

fn floats(f: impl Fn(usize) -> f32) -> Vec<u8> {
    (0..N).flat_map(|i| f(i).to_le_bytes()).collect()
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("demo failed: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    println!("== Tessera in-memory demo: one job, provider and coordinator in virtual time\n");
    let signer = Ed25519Signer::from_seed(&[42; 32]).map_err(|e| format!("{e:?}"))?;
    let public_key = signer.public_key();
    let mut gpu = GpuHost::open(DeviceSelector::Default, false)
        .map_err(|e| format!("no Vulkan device ({e}); ci/demo installs lavapipe"))?;
    let capabilities = gpu.capabilities().clone();
    println!(
        "Device: {} ({:?}); start-up benchmark: copy {} MB/s, FMA {} MFLOP/s\n",
        capabilities.name,
        capabilities.device_type,
        capabilities.copy_mbps,
        capabilities.fma_mflops
    );
    let config = Config {
        agent_version: [0, 1, 0],
        boot_id: [9; 16],
        capabilities,
        policy: Policy {
            price: LinearPrice {
                base: 50,
                per_gpu_ms: 20,
                per_mib_in: 5,
                per_mib_out: 5,
            },
            floor: 60,
            ..Policy::default()
        },
        persist_results: false,
    };
    let agent = Agent::new(config, signer, ChainState::default()).map_err(|e| e.to_string())?;
    let runner = Box::new(
        move |spec: &JobAssign, kernel: &[u8], buffers: &[Vec<u8>]| {
            gpu.run_job(spec, kernel, buffers, std::time::Duration::from_secs(10))
        },
    );
    let mut h: Harness = Harness::with_host(agent, Host::with_runner(runner));

    let show = |h: &mut Harness| -> Vec<Vec<u8>> {
        let frames = h.pump();
        for f in &frames {
            if let Ok(m) = Message::decode(f) {
                println!("  provider    → {}", describe(&m));
            }
        }
        for line in h.host.log.drain(..) {
            println!("  host event    {line}");
        }
        frames
    };
    let say = |h: &mut Harness, m: Message<'_>| {
        println!("  coordinator → {}", describe(&m));
        h.send(&m);
    };

    println!("1. Handshake: the provider proves who it is and what it has");
    h.agent.connect(h.now).map_err(|e| e.to_string())?;
    show(&mut h);
    let challenge = [0x5a; 32];
    say(
        &mut h,
        Message::Welcome(Welcome {
            version: 1,
            challenge,
            heartbeat_ms: 0,
        }),
    );
    let frames = show(&mut h);
    let evidence_bytes = frames
        .iter()
        .find_map(|f| match Message::decode(f) {
            Ok(Message::Evidence(b)) => Some(b.bytes.to_vec()),
            _ => None,
        })
        .ok_or("no evidence")?;
    let evidence = Evidence::verify(&evidence_bytes, &challenge).map_err(|e| format!("{e:?}"))?;
    println!(
        "  coordinator   evidence verified: device \"{}\", key {}…, bound to our challenge",
        evidence.capabilities.name,
        hex(&evidence.public_key[..8])
    );
    say(&mut h, Message::Ready);
    show(&mut h);

    println!("\n2. Offer: the provider prices the job by its linear schedule");
    let x = floats(|i| i as f32 * 0.5);
    let y = floats(|i| 1000.0 - i as f32);
    let job = JobDescription {
        kernel: SAXPY.to_vec(),
        entry_point: "main".into(),
        grid: [(N as u32).div_ceil(64), 1, 1],
        push_constants: A
            .to_le_bytes()
            .into_iter()
            .chain((N as u32).to_le_bytes())
            .collect(),
        buffers: vec![
            (x.clone(), x.len() as u64, false),
            (y.clone(), y.len() as u64, true),
        ],
        nonce: [0x77; 32],
        bindings: Vec::new(),
    };
    say(&mut h, Message::JobOffer(job.offer(1, 500, 30_000)));
    show(&mut h);

    println!("\n3. Transfer: kernel and inputs in chunks, each checked against its digest");
    say(&mut h, Message::JobAssign(job.assign(1)));
    for f in job.input_frames(1) {
        if let Ok(m) = Message::decode(&f) {
            println!("  coordinator → {}", describe(&m));
        }
        h.send_raw(&f);
    }
    let frames = show(&mut h);

    println!("\n4. Result: outputs, usage and the signed receipt");
    let mut output = Vec::new();
    let mut receipt_bytes = Vec::new();
    for f in &frames {
        match Message::decode(f) {
            Ok(Message::OutputChunk(c)) => output.extend_from_slice(c.data),
            Ok(Message::Receipt(r)) => receipt_bytes = r.bytes.to_vec(),
            _ => {}
        }
    }
    let expected: Vec<u8> = (0..N)
        .flat_map(|i| A.mul_add(i as f32 * 0.5, 1000.0 - i as f32).to_le_bytes())
        .collect();
    if output != expected {
        return Err("outputs differ from the CPU reference".into());
    }
    println!(
        "  coordinator   outputs match the reference: y[0..4] = {:?}",
        &floats_of(&output)[..4]
    );
    let mut verifier = ReceiptVerifier::new(public_key, ChainState::default());
    let receipt = verifier
        .verify_next(&receipt_bytes, Some(&job.nonce))
        .map_err(|e| format!("receipt: {e:?}"))?;
    println!(
        "  coordinator   receipt verified: job {}, sequence {}, {} µs GPU, price {}, evidence {}…",
        receipt.job,
        receipt.sequence,
        receipt.usage.gpu_time_us,
        receipt.price,
        hex(&receipt.evidence_hash[..6])
    );
    // The kernel hash binds the kernel, its dispatch and the buffer layout,
    // so the layout the coordinator sent is the one the receipt speaks of,
    // and it fixes the output tree's size for the spot check.
    let assign = job.assign(1);
    if receipt.kernel_hash != assign.kernel_hash() {
        return Err("the receipt's kernel hash is not that of the job sent".into());
    }
    println!("  coordinator   kernel hash recomputed from the assignment, buffer layout included");
    let leaves: Vec<_> = output.chunks(CHUNK_SIZE).map(leaf_hash).collect();
    let spot = leaves.len() as u64 - 1;
    let proof = prove(&leaves, spot).map_err(|e| format!("{e:?}"))?;
    verify_output_chunk(
        &receipt,
        assign.output_leaf_count(),
        &output[spot as usize * CHUNK_SIZE..],
        &proof,
    )
    .map_err(|e| format!("spot check: {e:?}"))?;
    println!(
        "  coordinator   spot-checked output chunk {spot} with a {}-hash Merkle proof against the signed root",
        proof.path.len()
    );
    say(&mut h, Message::ResultAck(JobRef { job: 1 }));
    show(&mut h);

    println!("\n5. Drain and leave");
    h.agent.drain(h.now).map_err(|e| e.to_string())?;
    show(&mut h);
    h.advance(Duration::from_millis(1));
    let stats = h.agent.stats();
    println!(
        "\nDone in {} µs of virtual time: {} job completed, earnings {}, agent state {:?}.",
        h.now.micros,
        stats.jobs_completed,
        stats.earnings,
        h.agent.state()
    );
    Ok(())
}

fn floats_of(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}
