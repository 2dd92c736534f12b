//! Benchmarks of the Vulkan dispatcher. Prints one JSON object per line:
//! `{"name": ..., "value": ..., "unit": ..., "peers": {...}}`; every peer
//! is measured in the same run, on the same device, with the same kernel
//! (core/kernels/copy.spv). A peer that cannot run prints as null, with the
//! reason on stderr.
//!
//! `vulkan.roundtrip_*` repeats one 4 KiB job; `vulkan.roundtrip_varied_*`
//! gives each job another length and content, the floor recording its
//! dispatch again for each. `vulkan.pipeline_cached` is a job whose
//! specialized pipeline the dispatcher has built before, beside the floor
//! dispatching the same specialized pipeline it holds, in the same rounds.
//! `vulkan.roundtrip_*`'s peer `staged` is the dispatcher with its buffers
//! staged in host memory (`DispatcherConfig::force_staging`).

use std::time::{Duration, Instant};
use tessera_bench::floor::Floor;
use tessera_bench::percentile;
use tessera_bench::wgpu_peer::WgpuPeer;
use tessera_core::vulkan::*;

const COPY_SPV: &[u8] = include_bytes!("../../../core/kernels/copy.spv");
const MATMUL_SPV: &[u8] = include_bytes!("../../../core/kernels/matmul.spv");
const TIMEOUT: Duration = Duration::from_secs(30);

fn num(v: Option<f64>) -> String {
    match v {
        Some(x) if x.is_finite() && x.abs() < 10.0 => format!("{x:.2}"),
        Some(x) if x.is_finite() => format!("{x:.1}"),
        _ => "null".into(),
    }
}

fn line(name: &str, value: f64, unit: &str, peers: &[(&str, Option<f64>)]) {
    let peers: Vec<String> = peers
        .iter()
        .map(|(k, v)| format!("\"{k}\": {}", num(*v)))
        .collect();
    println!(
        "{{\"name\": \"{name}\", \"value\": {}, \"unit\": \"{unit}\", \"peers\": {{{}}}}}",
        num(Some(value)),
        peers.join(", ")
    );
}

fn peer<T>(what: &str, r: Result<T, String>) -> Option<T> {
    match r {
        Ok(v) => Some(v),
        Err(e) => {
            eprintln!("peer {what} unavailable: {e}");
            None
        }
    }
}

/// The copy kernel's two buffers: `input` at binding 0, and as many bytes
/// at binding 1, read back or not.
fn copy_buffers(input: &[u8], readback: bool) -> [BufferSpec<'_>; 2] {
    [
        BufferSpec {
            binding: 0,
            len: input.len() as u64,
            init: Some(input),
            readback: false,
        },
        BufferSpec {
            binding: 1,
            len: input.len() as u64,
            init: None,
            readback,
        },
    ]
}

fn main() {
    let iters: usize = std::env::var("TESSERA_BENCH_ITERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2000);
    let instance = match Instance::load() {
        Ok(i) => i,
        Err(e) => {
            eprintln!("no Vulkan: {e}");
            std::process::exit(1);
        }
    };
    let mut d = match Dispatcher::new(
        &instance,
        DeviceSelector::Default,
        DispatcherConfig::default(),
    ) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("no dispatcher: {e}");
            std::process::exit(1);
        }
    };
    let name = d.capabilities().name.clone();
    eprintln!("device: {name}");
    // Peer `staged`: the dispatcher with its buffers staged in host memory
    // (the path of a device without host-visible device memory). On a
    // discrete GPU, whose host-visible device memory is read across the
    // PCIe BAR, it says which of the two ways reads back faster.
    let mut staged = peer(
        "staged",
        Dispatcher::new(
            &instance,
            DeviceSelector::Default,
            DispatcherConfig {
                force_staging: true,
                ..DispatcherConfig::default()
            },
        )
        .map_err(|e| e.to_string()),
    );

    let mut floor = peer("ash_floor", Floor::new(&name, COPY_SPV));
    // wgpu reports API misuse by panicking; a broken peer must not stop the run.
    let wgpu = peer(
        "wgpu",
        std::panic::catch_unwind(|| WgpuPeer::new(&name))
            .unwrap_or_else(|_| Err("wgpu panicked during setup".into())),
    );

    // Round trip: 4 KiB in, one workgroup of the copy kernel, 4 KiB out.
    let input: Vec<u8> = (0..4096u32).map(|i| (i * 7) as u8).collect();
    let push = 256u32.to_le_bytes();
    let bufs = copy_buffers(&input, true);
    let job = KernelJob {
        spirv: COPY_SPV,
        entry_point: "main",
        specialization: &[],
        push_constants: &push,
        grid: [1, 1, 1],
        buffers: &bufs,
    };
    // Varied jobs: each round trip's input differs from the one before it
    // in length (256 B to 4 KiB, one workgroup) and in content, so nothing
    // carried over from the previous job can stand in for this one's work.
    let varied: Vec<Vec<u8>> = (0..64u32)
        .map(|k| {
            let len = 256 * (1 + (k * 7 % 16)) as usize;
            (0..len as u32)
                .map(|i| (i * 7 + k * 131 + 1) as u8)
                .collect()
        })
        .collect();
    // Interleaved in rounds so that all of them see the same machine load.
    let mut outputs = Vec::new();
    let floor_rt = floor
        .as_mut()
        .and_then(|f| peer("ash_floor", f.prepare_roundtrip(4096)));
    let floor_varied = floor
        .as_mut()
        .and_then(|f| peer("ash_floor", f.prepare_varied(4096)));
    let wgpu_rt = wgpu.as_ref().map(|w| w.prepare_roundtrip(4096));
    let mut out = vec![0u8; 4096];
    let (mut ours, mut floor_t, mut wgpu_t) = (Vec::new(), Vec::new(), Vec::new());
    let mut staged_t = Vec::new();
    let (mut ours_varied, mut floor_varied_t) = (Vec::new(), Vec::new());
    let mut next_varied = 0usize;
    let rounds = 20;
    let per_round = (iters / rounds).max(1);
    for round in 0..=rounds {
        // Round 0 warms up and is not recorded.
        for _ in 0..per_round {
            let t = Instant::now();
            if let Err(e) = d.run_into(&job, TIMEOUT, &mut outputs) {
                eprintln!("dispatcher failed: {e}");
                std::process::exit(1);
            }
            let us = t.elapsed().as_secs_f64() * 1e6;
            if round > 0 {
                ours.push(us);
            }
        }
        if let Some(st) = staged.as_mut() {
            for _ in 0..per_round {
                let t = Instant::now();
                match st.run_into(&job, TIMEOUT, &mut outputs) {
                    Ok(_) if round > 0 => staged_t.push(t.elapsed().as_secs_f64() * 1e6),
                    Ok(_) => {}
                    Err(e) => eprintln!("staged: {e}"),
                }
            }
            if outputs.first() != Some(&input) {
                eprintln!("the staged dispatcher's round trip returned wrong data");
                std::process::exit(1);
            }
        }
        if let (Some(f), Some(rt)) = (floor.as_ref(), floor_rt.as_ref()) {
            for _ in 0..per_round {
                match f.roundtrip(rt, &input, &mut out) {
                    Ok(us) if round > 0 => floor_t.push(us),
                    Ok(_) => {}
                    Err(e) => eprintln!("ash_floor: {e}"),
                }
            }
        }
        if let (Some(w), Some(rt)) = (wgpu.as_ref(), wgpu_rt.as_ref()) {
            for _ in 0..per_round {
                match w.roundtrip(rt, &input, &mut out) {
                    Ok(us) if round > 0 => wgpu_t.push(us),
                    Ok(_) => {}
                    Err(e) => eprintln!("wgpu: {e}"),
                }
            }
        }
        if outputs.first() != Some(&input) {
            eprintln!("dispatcher round trip returned wrong data");
            std::process::exit(1);
        }
        // The same sequence of varied jobs for ours and the floor.
        let first_varied = next_varied;
        for _ in 0..per_round {
            let data = &varied[next_varied % varied.len()];
            next_varied += 1;
            let push = ((data.len() / 16) as u32).to_le_bytes();
            let bufs = copy_buffers(data, true);
            let job = KernelJob {
                spirv: COPY_SPV,
                entry_point: "main",
                specialization: &[],
                push_constants: &push,
                grid: [1, 1, 1],
                buffers: &bufs,
            };
            let t = Instant::now();
            if let Err(e) = d.run_into(&job, TIMEOUT, &mut outputs) {
                eprintln!("dispatcher failed on a varied job: {e}");
                std::process::exit(1);
            }
            let us = t.elapsed().as_secs_f64() * 1e6;
            if round > 0 {
                ours_varied.push(us);
            }
            if outputs.first() != Some(data) {
                eprintln!("dispatcher returned wrong data for a varied job");
                std::process::exit(1);
            }
        }
        if let (Some(f), Some(rt)) = (floor.as_ref(), floor_varied.as_ref()) {
            for k in first_varied..next_varied {
                let data = &varied[k % varied.len()];
                match f.roundtrip_varied(rt, data, &mut out[..data.len()]) {
                    Ok(us) if round > 0 => floor_varied_t.push(us),
                    Ok(_) => {}
                    Err(e) => eprintln!("ash_floor: {e}"),
                }
            }
        }
    }
    let some = |v: &Vec<f64>, p: f64| (!v.is_empty()).then(|| percentile(v, p));
    for (metric, p) in [
        ("vulkan.roundtrip_p50", 50.0),
        ("vulkan.roundtrip_p99", 99.0),
    ] {
        line(
            metric,
            percentile(&ours, p),
            "us",
            &[
                ("ash_floor", some(&floor_t, p)),
                ("wgpu", some(&wgpu_t, p)),
                ("staged", some(&staged_t, p)),
            ],
        );
    }
    for (metric, p) in [
        ("vulkan.roundtrip_varied_p50", 50.0),
        ("vulkan.roundtrip_varied_p99", 99.0),
    ] {
        line(
            metric,
            percentile(&ours_varied, p),
            "us",
            &[("ash_floor", some(&floor_varied_t, p))],
        );
    }

    // Tiny jobs eight at a time through `run_batch`, beside the same eight
    // one at a time, interleaved in rounds.
    let tiny = &varied[..8];
    let pushes: Vec<[u8; 4]> = tiny
        .iter()
        .map(|d| ((d.len() / 16) as u32).to_le_bytes())
        .collect();
    let specs: Vec<[BufferSpec<'_>; 2]> = tiny.iter().map(|d| copy_buffers(d, true)).collect();
    let tiny_jobs: Vec<KernelJob<'_>> = pushes
        .iter()
        .zip(&specs)
        .map(|(push, bufs)| KernelJob {
            spirv: COPY_SPV,
            entry_point: "main",
            specialization: &[],
            push_constants: push,
            grid: [1, 1, 1],
            buffers: bufs,
        })
        .collect();
    let batches = (per_round / tiny.len()).max(1);
    let (mut batched_s, mut alone_s, mut counted) = (0.0, 0.0, 0usize);
    for round in 0..=rounds {
        let t = Instant::now();
        for _ in 0..batches {
            let deadline = Instant::now() + TIMEOUT;
            let batch: Vec<BatchJob<'_>> = tiny_jobs
                .iter()
                .map(|&job| BatchJob {
                    job,
                    deadline,
                    cancel: None,
                    confidential: false,
                    secret_kernel: false,
                })
                .collect();
            let mut right = 0;
            d.run_batch(&batch, |i, r| {
                if r.is_ok_and(|o| o.outputs.first() == tiny.get(i)) {
                    right += 1;
                }
            });
            if right != tiny.len() {
                eprintln!("batched jobs failed or returned wrong data");
                std::process::exit(1);
            }
        }
        let batched = t.elapsed().as_secs_f64();
        let t = Instant::now();
        for _ in 0..batches {
            for (job, data) in tiny_jobs.iter().zip(tiny) {
                if d.run_into(job, TIMEOUT, &mut outputs).is_err() || outputs.first() != Some(data)
                {
                    eprintln!("dispatcher failed on a tiny job");
                    std::process::exit(1);
                }
            }
        }
        let alone = t.elapsed().as_secs_f64();
        if round > 0 {
            batched_s += batched;
            alone_s += alone;
            counted += batches * tiny.len();
        }
    }
    line(
        "vulkan.tiny_jobs_per_s_batched",
        counted as f64 / batched_s,
        "jobs/s",
        &[("one_at_a_time", Some(counted as f64 / alone_s))],
    );

    // Copy rate: 64 MiB through the copy kernel, bytes counted once,
    // GPU timestamps around the dispatch; median of 5 runs.
    let bytes: u64 = 64 << 20;
    let n = (bytes / 16) as u32;
    let src = vec![0x5au8; bytes as usize];
    let push = n.to_le_bytes();
    let bufs = copy_buffers(&src, false);
    let job = KernelJob {
        spirv: COPY_SPV,
        entry_point: "main",
        specialization: &[],
        push_constants: &push,
        grid: [n / 256, 1, 1],
        buffers: &bufs,
    };
    // The kernel's own throughput: GPU timestamps, as for the peers.
    let mut timed = match Dispatcher::new(
        &instance,
        DeviceSelector::Default,
        DispatcherConfig {
            metering: Metering::Timestamps,
            ..DispatcherConfig::default()
        },
    ) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("no dispatcher: {e}");
            std::process::exit(1);
        }
    };
    // Interleaved rounds; round 0 warms up and is not recorded.
    let floor_copy = floor
        .as_mut()
        .and_then(|f| peer("ash_floor", f.prepare_copy(bytes)));
    let wgpu_copy = wgpu
        .as_ref()
        .and_then(|w| peer("wgpu", w.prepare_copy(bytes)));
    if wgpu.as_ref().is_some_and(|w| !w.has_timestamps()) {
        eprintln!("wgpu copy rate: wall time (no timestamp queries)");
    }
    let (mut rates, mut floor_rates, mut wgpu_rates) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..6 {
        match timed.run_into(&job, TIMEOUT, &mut outputs) {
            Ok(u) if u.clock == MeterClock::GpuTimestamps => {
                if round > 0 {
                    rates.push(bytes as f64 / u.gpu_time_ns.max(1) as f64);
                }
            }
            Ok(_) => {
                eprintln!("device has no timestamps: copy rate not measured");
                std::process::exit(1);
            }
            Err(e) => {
                eprintln!("dispatcher copy failed: {e}");
                std::process::exit(1);
            }
        }
        if let (Some(f), Some(run)) = (floor.as_ref(), floor_copy.as_ref()) {
            match f.copy_rate(run) {
                Ok(r) if round > 0 => floor_rates.push(r),
                Ok(_) => {}
                Err(e) => eprintln!("ash_floor: {e}"),
            }
        }
        if let (Some(w), Some(run)) = (wgpu.as_ref(), wgpu_copy.as_ref()) {
            match w.copy_rate(run) {
                Ok(r) if round > 0 => wgpu_rates.push(r),
                Ok(_) => {}
                Err(e) => eprintln!("wgpu: {e}"),
            }
        }
    }
    drop(timed);
    let floor_rate = some(&floor_rates, 50.0);
    let wgpu_rate = some(&wgpu_rates, 50.0);
    let mut dst = vec![0u8; bytes as usize];
    let mut memcpy = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        dst.copy_from_slice(&src);
        memcpy.push(bytes as f64 / (t.elapsed().as_secs_f64() * 1e9));
        std::hint::black_box(&dst);
    }
    line(
        "vulkan.copy_rate",
        percentile(&rates, 50.0),
        "GB/s",
        &[
            ("ash_floor", floor_rate),
            ("wgpu", wgpu_rate),
            ("memcpy", Some(percentile(&memcpy, 50.0))),
        ],
    );

    // Pipelines: a never-seen specialization each time, then a cached one.
    let small = copy_buffers(&input, true);
    let push = 256u32.to_le_bytes();
    let cold_iters = 20u32;
    let mut cold = Vec::new();
    for salt in 1..=cold_iters {
        let spec = [(0u32, salt)];
        let job = KernelJob {
            spirv: COPY_SPV,
            entry_point: "main",
            specialization: &spec,
            push_constants: &push,
            grid: [1, 1, 1],
            buffers: &small,
        };
        let t = Instant::now();
        if let Err(e) = d.run_into(&job, TIMEOUT, &mut outputs) {
            eprintln!("dispatcher cold failed: {e}");
            std::process::exit(1);
        }
        cold.push(t.elapsed().as_secs_f64() * 1e6);
    }
    let floor_cold = floor
        .as_mut()
        .and_then(|f| peer("ash_floor", f.pipeline_cold(1000..1000 + cold_iters)))
        .map(|v| percentile(&v, 50.0));
    line(
        "vulkan.pipeline_cold",
        percentile(&cold, 50.0),
        "us",
        &[("ash_floor", floor_cold)],
    );
    let spec = [(0u32, 1u32)];
    let job = KernelJob {
        spirv: COPY_SPV,
        entry_point: "main",
        specialization: &spec,
        push_constants: &push,
        grid: [1, 1, 1],
        buffers: &small,
    };
    // The floor holds the same specialized pipeline, built once; both are
    // timed in the same rounds (pipeline_cold above reset the floor's
    // descriptor pool, so its round trip is prepared only now).
    let floor_cached = floor
        .as_mut()
        .and_then(|f| peer("ash_floor", f.prepare_specialized_roundtrip(4096, 1)));
    let (mut cached, mut floor_cached_t) = (Vec::new(), Vec::new());
    for round in 0..=10 {
        // Round 0 warms up and is not recorded.
        for _ in 0..20 {
            let t = Instant::now();
            if let Err(e) = d.run_into(&job, TIMEOUT, &mut outputs) {
                eprintln!("dispatcher cached failed: {e}");
                std::process::exit(1);
            }
            let us = t.elapsed().as_secs_f64() * 1e6;
            if round > 0 {
                cached.push(us);
            }
        }
        if let (Some(f), Some(rt)) = (floor.as_ref(), floor_cached.as_ref()) {
            for _ in 0..20 {
                match f.roundtrip(rt, &input, &mut out) {
                    Ok(us) if round > 0 => floor_cached_t.push(us),
                    Ok(_) => {}
                    Err(e) => eprintln!("ash_floor: {e}"),
                }
            }
        }
    }
    line(
        "vulkan.pipeline_cached",
        percentile(&cached, 50.0),
        "us",
        &[("ash_floor", some(&floor_cached_t, 50.0))],
    );

    validation(d.capabilities());
}

/// What validating a new kernel costs, cold: Tessera's two gates together
/// (its own, then the Khronos validator), beside each alone and beside
/// naga's SPIR-V front end and validator, on matmul.spv and on a 1 MiB
/// kernel.
fn validation(caps: &Capabilities) {
    let config = DispatcherConfig::default();
    let khronos = match KhronosValidator::new(&config.khronos) {
        Ok(k) => k,
        Err(e) => {
            eprintln!("no Khronos validator: {e}");
            std::process::exit(1);
        }
    };
    let big = tessera_bench::big_kernel::kernel(1 << 20);
    let matmul = MATMUL_SPV.to_vec();
    for (name, spirv, buffers, push, iters) in [
        ("matmul", &matmul, 3u32, 12usize, 30usize),
        ("1mib", &big, 1, 0, 7),
    ] {
        let bufs: Vec<BufferSpec<'_>> = (0..buffers)
            .map(|binding| BufferSpec {
                binding,
                len: 4096,
                init: None,
                readback: true,
            })
            .collect();
        let push = vec![0u8; push];
        let job = KernelJob {
            spirv,
            entry_point: "main",
            specialization: &[],
            push_constants: &push,
            grid: [1, 1, 1],
            buffers: &bufs,
        };
        let (mut both, mut first, mut second, mut naga) = (vec![], vec![], vec![], vec![]);
        for _ in 0..iters {
            let t = Instant::now();
            let ours = check_kernel(&job, caps, &config)
                .map_err(|e| e.to_string())
                .and_then(|_| {
                    khronos
                        .validate(spirv, caps.api_version)
                        .map_err(|e| e.to_string())
                });
            both.push(t.elapsed().as_secs_f64() * 1e6);
            if let Err(e) = ours {
                eprintln!("{name}: the gates refused it: {e}");
                std::process::exit(1);
            }
            let t = Instant::now();
            let _ = std::hint::black_box(check_kernel(&job, caps, &config));
            first.push(t.elapsed().as_secs_f64() * 1e6);
            let t = Instant::now();
            let _ = std::hint::black_box(khronos.validate(spirv, caps.api_version));
            second.push(t.elapsed().as_secs_f64() * 1e6);
            let t = Instant::now();
            let r = naga_validate(spirv);
            naga.push(t.elapsed().as_secs_f64() * 1e6);
            if let Err(e) = r {
                eprintln!("peer naga on {name}: {e}");
                naga.clear();
            }
        }
        line(
            &format!("vulkan.validate_us.{name}"),
            percentile(&both, 50.0),
            "us",
            &[
                ("first_gate", Some(percentile(&first, 50.0))),
                ("spirv_val", Some(percentile(&second, 50.0))),
                ("naga", (!naga.is_empty()).then(|| percentile(&naga, 50.0))),
            ],
        );
        eprintln!("{name}: {} bytes", spirv.len());
    }
}

/// naga's SPIR-V front end and its validator, as wgpu runs them.
fn naga_validate(spirv: &[u8]) -> Result<(), String> {
    let module = naga::front::spv::parse_u8_slice(spirv, &naga::front::spv::Options::default())
        .map_err(|e| e.to_string())?;
    naga::valid::Validator::new(
        naga::valid::ValidationFlags::all(),
        naga::valid::Capabilities::all(),
    )
    .validate(&module)
    .map(|_| ())
    .map_err(|e| e.to_string())
}
