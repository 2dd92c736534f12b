//! Real kernels on the default device (lavapipe in CI), checked against CPU
//! references, with the Khronos validation layer recording every message.
#![cfg(feature = "vulkan")]

mod vulkan_support;
use std::time::{Duration, Instant};
use tessera_core::vulkan::*;
use vulkan_support::*;

fn saxpy_job<'a>(
    spirv: &'a [u8],
    push: &'a [u8],
    bufs: &'a [BufferSpec<'a>],
    groups: u32,
) -> KernelJob<'a> {
    KernelJob {
        spirv,
        entry_point: "main",
        specialization: &[],
        push_constants: push,
        grid: [groups, 1, 1],
        buffers: bufs,
    }
}

fn check_saxpy(d: &mut Dispatcher, n: u32) -> Usage {
    let x: Vec<f32> = (0..n).map(|i| i as f32 * 0.5).collect();
    let y: Vec<f32> = (0..n).map(|i| 100.0 - i as f32).collect();
    let (xb, yb) = (f32_bytes(&x), f32_bytes(&y));
    let push = saxpy_push(2.0, n);
    let spirv = kernel("saxpy");
    let bufs = [
        BufferSpec {
            binding: 0,
            len: u64::from(n) * 4,
            init: Some(&xb),
            readback: false,
        },
        BufferSpec {
            binding: 1,
            len: u64::from(n) * 4,
            init: Some(&yb),
            readback: true,
        },
    ];
    let out = d
        .run(&saxpy_job(&spirv, &push, &bufs, n.div_ceil(64)), TIMEOUT)
        .expect("saxpy");
    assert_eq!(out.outputs.len(), 1);
    let got = f32s(&out.outputs[0]);
    for i in 0..n as usize {
        assert_eq!(got[i], 2.0f32.mul_add(x[i], y[i]), "element {i}");
    }
    assert_eq!(out.usage.bytes_in, u64::from(n) * 8);
    assert_eq!(out.usage.bytes_out, u64::from(n) * 4);
    out.usage
}

#[test]
fn saxpy_matches_cpu_and_is_metered() {
    let mut d = dispatcher();
    let usage = check_saxpy(&mut d, 10_000);
    assert_eq!(usage.dispatches, 1);
    if d.capabilities().timestamps {
        assert!(usage.gpu_time_ns > 0, "{usage:?}");
    }
    assert_clean(&d);
}

#[test]
fn reduction_sums_a_million_integers() {
    let mut d = dispatcher();
    let n: u32 = 1 << 20;
    let data: Vec<u32> = (0..n).map(|i| i % 1000).collect();
    let expected: u32 = data.iter().fold(0u32, |a, b| a.wrapping_add(*b));
    let bytes = u32_bytes(&data);
    let push = n.to_le_bytes();
    let spirv = kernel("reduce");
    let bufs = [
        BufferSpec {
            binding: 0,
            len: u64::from(n) * 4,
            init: Some(&bytes),
            readback: false,
        },
        BufferSpec {
            binding: 1,
            len: 4,
            init: None,
            readback: true,
        },
    ];
    let job = KernelJob {
        spirv: &spirv,
        entry_point: "main",
        specialization: &[],
        push_constants: &push,
        grid: [n / 256, 1, 1],
        buffers: &bufs,
    };
    let out = d.run(&job, TIMEOUT).expect("reduce");
    assert_eq!(u32s(&out.outputs[0]), vec![expected]);
    assert_clean(&d);
}

fn matmul(d: &mut Dispatcher, m: u32, n: u32, k: u32) -> (Vec<u8>, Vec<f32>) {
    let a: Vec<f32> = (0..m * k).map(|i| ((i * 7) % 13) as f32 - 6.0).collect();
    let b: Vec<f32> = (0..k * n).map(|i| ((i * 5) % 11) as f32 * 0.25).collect();
    let (ab, bb) = (f32_bytes(&a), f32_bytes(&b));
    let mut push = Vec::new();
    for v in [m, n, k] {
        push.extend_from_slice(&v.to_le_bytes());
    }
    let spirv = kernel("matmul");
    let bufs = [
        BufferSpec {
            binding: 0,
            len: ab.len() as u64,
            init: Some(&ab),
            readback: false,
        },
        BufferSpec {
            binding: 1,
            len: bb.len() as u64,
            init: Some(&bb),
            readback: false,
        },
        BufferSpec {
            binding: 2,
            len: u64::from(m * n) * 4,
            init: None,
            readback: true,
        },
    ];
    let job = KernelJob {
        spirv: &spirv,
        entry_point: "main",
        specialization: &[],
        push_constants: &push,
        grid: [n.div_ceil(16), m.div_ceil(16), 1],
        buffers: &bufs,
    };
    let out = d.run(&job, TIMEOUT).expect("matmul");
    let mut reference = vec![0f32; (m * n) as usize];
    for r in 0..m {
        for c in 0..n {
            let mut acc = 0f32;
            for i in 0..k {
                acc = a[(r * k + i) as usize].mul_add(b[(i * n + c) as usize], acc);
            }
            reference[(r * n + c) as usize] = acc;
        }
    }
    (
        out.outputs.into_iter().next().unwrap_or_default(),
        reference,
    )
}

#[test]
fn tiled_matmul_matches_cpu_reference() {
    let mut d = dispatcher();
    // Sizes that are not multiples of the tile exercise the edges.
    let (got, reference) = matmul(&mut d, 70, 45, 37);
    let got = f32s(&got);
    assert_eq!(got.len(), reference.len());
    for (i, (g, r)) in got.iter().zip(&reference).enumerate() {
        // Same FMA order as the kernel; small inputs keep it exact.
        assert!(
            (g - r).abs() <= 1e-3 * r.abs().max(1.0),
            "element {i}: {g} vs {r}"
        );
    }
    assert_clean(&d);
}

#[test]
fn same_job_twice_gives_bit_identical_outputs() {
    let mut d = dispatcher();
    let (first, _) = matmul(&mut d, 64, 64, 64);
    let (second, _) = matmul(&mut d, 64, 64, 64);
    assert!(!first.is_empty());
    assert_eq!(first, second);
    assert_eq!(d.cached_pipelines(), 1, "second run reuses the pipeline");
    assert_clean(&d);
}

#[test]
fn mandelbrot_matches_cpu_escape_counts() {
    let mut d = dispatcher();
    let (w, h, max_iter) = (96u32, 64u32, 200u32);
    let mut push = Vec::new();
    for v in [w, h, max_iter] {
        push.extend_from_slice(&v.to_le_bytes());
    }
    let spirv = kernel("mandelbrot");
    let bufs = [BufferSpec {
        binding: 0,
        len: u64::from(w * h) * 4,
        init: None,
        readback: true,
    }];
    let job = KernelJob {
        spirv: &spirv,
        entry_point: "main",
        specialization: &[],
        push_constants: &push,
        grid: [w.div_ceil(8), h.div_ceil(8), 1],
        buffers: &bufs,
    };
    let out = d.run(&job, TIMEOUT).expect("mandelbrot");
    let got = u32s(&out.outputs[0]);
    let mut same = 0;
    for y in 0..h {
        for x in 0..w {
            let cr = -2.0 + 3.0 * x as f32 / w as f32;
            let ci = -1.5 + 3.0 * y as f32 / h as f32;
            let (mut zr, mut zi, mut it) = (0f32, 0f32, 0u32);
            while it < max_iter && zr * zr + zi * zi <= 4.0 {
                let t = zr * zr - zi * zi + cr;
                zi = 2.0 * zr * zi + ci;
                zr = t;
                it += 1;
            }
            if got[(y * w + x) as usize] == it {
                same += 1;
            }
        }
    }
    // Contraction into FMAs may flip a few points on the set's boundary.
    assert!(same * 100 >= w * h * 98, "{same} of {} pixels match", w * h);
    assert_clean(&d);
}

#[test]
fn long_grid_is_split_into_several_dispatches() {
    let mut d = dispatcher_with(DispatcherConfig {
        max_workgroups_per_dispatch: 16,
        ..DispatcherConfig::default()
    });
    let usage = check_saxpy(&mut d, 64 * 100);
    assert_eq!(usage.dispatches, 7);
    assert_clean(&d);
}

#[test]
fn staging_path_gives_the_same_results() {
    let mut d = dispatcher_with(DispatcherConfig {
        force_staging: true,
        ..DispatcherConfig::default()
    });
    check_saxpy(&mut d, 5000);
    check_saxpy(&mut d, 300);
    assert_clean(&d);
}

#[test]
fn workgroup_size_from_specialization_constant() {
    let mut d = dispatcher();
    let spirv = kernel("spec_workgroup");
    let bufs = [BufferSpec {
        binding: 0,
        len: 4 * 96,
        init: None,
        readback: true,
    }];
    for size in [32u32, 96] {
        let spec = [(0u32, size)];
        let job = KernelJob {
            spirv: &spirv,
            entry_point: "main",
            specialization: &spec,
            push_constants: &[],
            grid: [1, 1, 1],
            buffers: &bufs,
        };
        let out = d.run(&job, TIMEOUT).expect("spec");
        let v = u32s(&out.outputs[0]);
        assert!(v[..size as usize].iter().all(|&x| x == size));
        assert!(v[size as usize..].iter().all(|&x| x == 0));
    }
    // Too large after specialization.
    let spec = [(0u32, 100_000u32)];
    let job = KernelJob {
        spirv: &spirv,
        entry_point: "main",
        specialization: &spec,
        push_constants: &[],
        grid: [1, 1, 1],
        buffers: &bufs,
    };
    assert!(matches!(
        d.run(&job, TIMEOUT),
        Err(JobError::Rejected(
            KernelRejection::WorkgroupTooLarge { .. }
        ))
    ));
    assert_clean(&d);
}

#[test]
fn pooled_buffers_never_leak_previous_contents() {
    let mut d = dispatcher();
    // Job 1 fills a 4 KiB buffer with ones.
    check_saxpy(&mut d, 1024);
    // Job 2 reads back a buffer it never wrote: must be all zero.
    let spirv = kernel("saxpy");
    let push = saxpy_push(1.0, 0);
    let bufs = [
        BufferSpec {
            binding: 0,
            len: 4096,
            init: None,
            readback: true,
        },
        BufferSpec {
            binding: 1,
            len: 4096,
            init: None,
            readback: true,
        },
    ];
    let out = d
        .run(&saxpy_job(&spirv, &push, &bufs, 1), TIMEOUT)
        .expect("run");
    for o in &out.outputs {
        assert!(o.iter().all(|&b| b == 0));
    }
    assert_clean(&d);
}

#[test]
fn run_into_reuses_output_vectors() {
    let mut d = dispatcher();
    let spirv = kernel("copy");
    let input: Vec<u8> = (0..4096u32).map(|i| i as u8).collect();
    let push = 256u32.to_le_bytes();
    let bufs = copy_buffers(&input);
    let job = KernelJob {
        spirv: &spirv,
        entry_point: "main",
        specialization: &[],
        push_constants: &push,
        grid: [1, 1, 1],
        buffers: &bufs,
    };
    let mut outputs = Vec::new();
    d.run_into(&job, TIMEOUT, &mut outputs).expect("first");
    let ptr = outputs[0].as_ptr();
    for _ in 0..3 {
        d.run_into(&job, TIMEOUT, &mut outputs).expect("again");
        assert_eq!(outputs[0], input);
        assert_eq!(outputs[0].as_ptr(), ptr);
    }
    assert_clean(&d);
}

#[test]
fn capabilities_and_startup_benchmark() {
    let mut d = dispatcher();
    let caps = d.capabilities().clone();
    assert!(!caps.name.is_empty());
    assert!(caps.memory_heap_count >= 1);
    assert!(caps.limits.max_invocations >= 128);
    assert!(caps.limits.max_shared_memory >= 16384);
    assert!(caps.robustness.robust_buffer_access);
    assert!(caps.subgroup_size >= 1);
    assert!(caps.benchmark.is_none());
    let t = Instant::now();
    let bench = d.run_startup_benchmark().expect("benchmark");
    let took = t.elapsed();
    eprintln!("{}: {bench:?} in {took:?}", caps.name);
    assert!(bench.copy_gbps > 0.0 && bench.fma_gflops > 0.0);
    assert_eq!(d.capabilities().benchmark, Some(bench));
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert_clean(&d);
}

#[test]
fn devices_are_listed_and_selectable() {
    let instance = Instance::load().expect("loader");
    let devices = instance.devices();
    assert!(!devices.is_empty());
    let first = &devices[0];
    assert_eq!(first.index, 0);
    assert_eq!(
        instance.select(&DeviceSelector::Index(0)).as_ref(),
        Ok(first)
    );
    let by_name = instance
        .select(&DeviceSelector::Name(first.name[..3].to_uppercase()))
        .expect("by name");
    assert!(by_name
        .name
        .to_lowercase()
        .contains(&first.name[..3].to_lowercase()));
    assert_eq!(
        instance.select(&DeviceSelector::Index(999)),
        Err(VulkanError::DeviceNotFound)
    );
    assert_eq!(
        instance.select(&DeviceSelector::Name("no such gpu".into())),
        Err(VulkanError::DeviceNotFound)
    );
    let d = Dispatcher::new(
        &instance,
        DeviceSelector::Index(0),
        DispatcherConfig {
            validation: true,
            ..DispatcherConfig::default()
        },
    )
    .expect("by index");
    assert_eq!(d.capabilities().name, first.name);
    assert_clean(&d);
}

#[test]
fn dispatchers_run_concurrently_on_threads() {
    let handles: Vec<_> = (0..2)
        .map(|_| {
            let mut d = dispatcher();
            std::thread::spawn(move || {
                for _ in 0..3 {
                    check_saxpy(&mut d, 4096);
                }
                assert_clean(&d);
            })
        })
        .collect();
    for h in handles {
        h.join().expect("thread");
    }
}

#[test]
fn metering_clock_follows_the_config() {
    for (metering, want) in [
        (Metering::Timestamps, MeterClock::GpuTimestamps),
        (Metering::HostClock, MeterClock::HostClock),
    ] {
        let mut d = dispatcher_with(DispatcherConfig {
            metering,
            ..DispatcherConfig::default()
        });
        let usage = check_saxpy(&mut d, 4096);
        if d.capabilities().timestamps || want == MeterClock::HostClock {
            assert_eq!(usage.clock, want);
        }
        assert!(usage.gpu_time_ns > 0);
        assert_clean(&d);
    }
    let d = dispatcher();
    let usage_auto_is_host = d.capabilities().device_type == DeviceType::Cpu;
    let mut d = d;
    let usage = check_saxpy(&mut d, 64);
    assert_eq!(
        usage.clock == MeterClock::HostClock,
        usage_auto_is_host || !d.capabilities().timestamps
    );
}

#[test]
fn repeated_job_shapes_see_fresh_inputs_and_push_constants() {
    for force_staging in [false, true] {
        let mut d = dispatcher_with(DispatcherConfig {
            force_staging,
            ..DispatcherConfig::default()
        });
        let spirv = kernel("saxpy");
        for round in 0..6u32 {
            // Same shape every round (reuses the recorded command buffer),
            // new data and a new push constant each time.
            let a = round as f32;
            let x = f32_bytes(&[1.0 + a; 64]);
            let y = f32_bytes(&[a; 64]);
            let push = saxpy_push(2.0 + a, if round % 3 == 2 { 32 } else { 64 });
            let bufs = [
                BufferSpec {
                    binding: 0,
                    len: 256,
                    init: Some(&x),
                    readback: false,
                },
                BufferSpec {
                    binding: 1,
                    len: 256,
                    init: Some(&y),
                    readback: true,
                },
            ];
            let out = d
                .run(&saxpy_job(&spirv, &push, &bufs, 1), TIMEOUT)
                .expect("saxpy");
            let got = f32s(&out.outputs[0]);
            let n = if round % 3 == 2 { 32 } else { 64 };
            for (i, v) in got.iter().enumerate() {
                let want = if i < n {
                    (2.0 + a).mul_add(1.0 + a, a)
                } else {
                    a
                };
                assert_eq!(*v, want, "round {round} element {i}");
            }
        }
        assert_clean(&d);
    }
}

/// The same kernel, sizes, grid and push constants as the job before, with
/// its buffers listed in another binding order: the pool hands out the same
/// buffers in the same order, yet the job binds its own bindings, not the
/// recording made for the job before it.
#[test]
fn a_job_listing_its_bindings_in_another_order_binds_its_own() {
    let mut d = dispatcher();
    let copy = kernel("copy");
    let push = 256u32.to_le_bytes();
    let (x, y, z) = (vec![1u8; 4096], vec![2u8; 4096], vec![3u8; 4096]);
    let mut run = |bufs: &[BufferSpec<'_>]| {
        d.run(
            &KernelJob {
                spirv: &copy,
                entry_point: "main",
                specialization: &[],
                push_constants: &push,
                grid: [1, 1, 1],
                buffers: bufs,
            },
            TIMEOUT,
        )
        .expect("copy job")
        .outputs
    };
    let buffer = |binding, init| BufferSpec {
        binding,
        len: 4096,
        init,
        readback: true,
    };
    // Binding 0 is copied over binding 1.
    let a = run(&[buffer(0, Some(&x[..])), buffer(1, None)]);
    assert!(a == [x.clone(), x.clone()], "the first job's outputs");
    // Binding 1 listed first, holding z; binding 0 holds y.
    let b = run(&[buffer(1, Some(&z[..])), buffer(0, Some(&y[..]))]);
    assert!(b == [y.clone(), y.clone()], "y copied over z, not z over y");
    assert_clean(&d);
}

/// The copy kernel's buffers for 4 KiB: `init` in binding 0, read back
/// from binding 1.
fn copy_buffers(init: &[u8]) -> [BufferSpec<'_>; 2] {
    [
        BufferSpec {
            binding: 0,
            len: 4096,
            init: Some(init),
            readback: false,
        },
        BufferSpec {
            binding: 1,
            len: 4096,
            init: None,
            readback: true,
        },
    ]
}

/// A confidential job with a secret kernel (a sealed job's plaintext)
/// leaves nothing behind once its call returns: no pipeline built from its
/// kernel, no verdict on it, no bytes of its inputs or outputs in the
/// pooled buffers. The same job in the clear, run first as the control,
/// leaves all three (what the caches and the pool are for), so the checks
/// can see what they look for. A confidential job whose kernel is no
/// secret keeps its pipeline, not its bytes.
#[test]
fn a_confidential_job_leaves_no_pipeline_and_no_bytes_in_the_pool() {
    let copy = kernel("copy");
    let push = 256u32.to_le_bytes();
    let secret: Vec<u8> = (0..4096u32).map(|i| (i * 7 + 3) as u8 ^ 0x5a).collect();
    let needle = &secret[100..164];
    let bufs = copy_buffers(&secret);
    let job = KernelJob {
        spirv: &copy,
        entry_point: "main",
        specialization: &[],
        push_constants: &push,
        grid: [1, 1, 1],
        buffers: &bufs,
    };
    let run = |d: &mut Dispatcher, confidential: bool, secret_kernel: bool| {
        let one = [BatchJob {
            job,
            deadline: Instant::now() + TIMEOUT,
            cancel: None,
            confidential,
            secret_kernel,
        }];
        let mut out = None;
        d.run_batch(&one, |_, r| out = Some(r.expect("copy job").outputs));
        assert_eq!(out.expect("reported"), std::slice::from_ref(&secret));
    };

    let mut d = dispatcher();
    let verdicts = d.cached_verdicts();
    run(&mut d, false, false);
    assert_eq!(
        d.cached_pipelines(),
        1,
        "in the clear: the pipeline is kept"
    );
    assert!(
        d.pool_holds(needle),
        "in the clear: the pool keeps the bytes"
    );
    assert_eq!(d.cached_verdicts(), verdicts + 1, "and the verdict");

    // A fresh dispatcher: the kernel is new to it.
    let mut d = dispatcher();
    run(&mut d, true, true);
    assert_eq!(d.cached_pipelines(), 0, "the pipeline built for it is gone");
    assert!(!d.pool_holds(needle), "its bytes are not in the pool");
    assert_eq!(d.cached_verdicts(), verdicts, "no verdict on it is kept");
    // It runs again (building its pipeline again).
    run(&mut d, true, true);
    assert_eq!(d.cached_pipelines(), 0);
    // Its kernel no secret: the pipeline stays, the bytes do not.
    run(&mut d, true, false);
    assert_eq!(d.cached_pipelines(), 1);
    assert!(!d.pool_holds(needle));
    // In the clear after it.
    run(&mut d, false, false);
    assert_eq!(d.cached_pipelines(), 1);
    assert!(d.pool_holds(needle));
    assert_clean(&d);
}

/// In a batch, a confidential job's buffers are zeroed when they come
/// back, whether it runs first or behind a job in the clear, and the
/// pipeline its secret kernel built is gone after the call, though a job
/// in the clear of the same call used it.
#[test]
fn a_confidential_job_in_a_batch_leaves_nothing_behind() {
    let copy = kernel("copy");
    let push = 256u32.to_le_bytes();
    let secret: Vec<u8> = (0..4096u32).map(|i| (i * 13 + 1) as u8 ^ 0xa5).collect();
    let plain = vec![9u8; 4096];
    let (sb, pb) = (copy_buffers(&secret), copy_buffers(&plain));
    let job = |bufs| KernelJob {
        spirv: &copy,
        entry_point: "main",
        specialization: &[],
        push_constants: &push,
        grid: [1, 1, 1],
        buffers: bufs,
    };
    for secret_first in [true, false] {
        let mut d = dispatcher();
        let deadline = Instant::now() + TIMEOUT;
        let hidden = BatchJob {
            job: job(&sb),
            deadline,
            cancel: None,
            confidential: true,
            secret_kernel: true,
        };
        let clear = BatchJob {
            job: job(&pb),
            deadline,
            cancel: None,
            confidential: false,
            secret_kernel: false,
        };
        let batch = if secret_first {
            [hidden, clear]
        } else {
            [clear, hidden]
        };
        let mut outs = [None, None];
        d.run_batch(&batch, |i, r| outs[i] = Some(r.expect("copy job").outputs));
        let (s, p) = if secret_first { (0, 1) } else { (1, 0) };
        assert_eq!(outs[s].as_deref(), Some(std::slice::from_ref(&secret)));
        assert_eq!(outs[p].as_deref(), Some(std::slice::from_ref(&plain)));
        // Built by the secret job (first), or by the job in the clear.
        let kept = usize::from(!secret_first);
        assert_eq!(d.cached_pipelines(), kept, "secret first: {secret_first}");
        assert!(
            !d.pool_holds(&secret[200..264]),
            "secret first: {secret_first}"
        );
        assert!(d.pool_holds(&plain[..64]), "the job in the clear keeps its");
        assert_clean(&d);
    }
}
