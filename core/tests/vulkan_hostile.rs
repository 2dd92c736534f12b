//! Hostile and broken jobs: each is refused (or contained) with a typed
//! reason, nothing reaches the driver that should not, and the dispatcher
//! keeps serving afterwards.
#![cfg(feature = "vulkan")]

mod vulkan_support;
use tessera_core::vulkan::*;
use vulkan_support::*;

fn two_buffers() -> [BufferSpec<'static>; 2] {
    [
        BufferSpec {
            binding: 0,
            len: 256,
            init: None,
            readback: false,
        },
        BufferSpec {
            binding: 1,
            len: 256,
            init: None,
            readback: true,
        },
    ]
}

fn run_with(
    d: &mut Dispatcher,
    spirv: &[u8],
    bufs: &[BufferSpec<'_>],
) -> Result<JobOutput, JobError> {
    run_within(d, spirv, bufs, TIMEOUT)
}

fn run_within(
    d: &mut Dispatcher,
    spirv: &[u8],
    bufs: &[BufferSpec<'_>],
    limit: std::time::Duration,
) -> Result<JobOutput, JobError> {
    let push = [0u8; 16];
    let job = KernelJob {
        spirv,
        entry_point: "main",
        specialization: &[],
        push_constants: &push,
        grid: [1, 1, 1],
        buffers: bufs,
    };
    d.run(&job, limit)
}

fn rejected(r: Result<JobOutput, JobError>) -> KernelRejection {
    match r {
        Err(JobError::Rejected(k)) => k,
        other => panic!("expected a rejection, got {other:?}"),
    }
}

#[test]
fn malformed_spirv_is_rejected() {
    let mut d = dispatcher();
    let good = kernel("saxpy");
    let bufs = two_buffers();

    // Pseudo-random bytes (xorshift), with and without a valid header.
    let mut s = 0x9E37_79B9_7F4A_7C15u64;
    let mut random = |n: usize| -> Vec<u8> {
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                s as u8
            })
            .collect()
    };
    for len in [0usize, 3, 19, 20, 64, 1000, 4096] {
        let bytes = random(len);
        let r = rejected(run_with(&mut d, &bytes, &bufs));
        // A rule about the module's form (codes 1 to 20).
        assert!(r.code() <= 20, "{len}: {r:?}");
        let mut with_header = good[..20].to_vec();
        with_header.extend(random(len / 4 * 4));
        let r = rejected(run_with(&mut d, &with_header, &bufs));
        assert!(
            r.code() <= 20
                || matches!(
                    r,
                    KernelRejection::NoEntryPoint
                        | KernelRejection::ForbiddenCapability(_)
                        | KernelRejection::ForbiddenOpcode(_)
                        | KernelRejection::MissingMemoryModel
                ),
            "{len}: {r:?}"
        );
    }
    assert_eq!(
        rejected(run_with(&mut d, &good[..good.len() - 2], &bufs)),
        KernelRejection::NotWordAligned
    );
    let mut bad_magic = good.clone();
    bad_magic[0] ^= 0xff;
    assert_eq!(
        rejected(run_with(&mut d, &bad_magic, &bufs)),
        KernelRejection::BadMagic
    );
    let mut bad_version = good.clone();
    bad_version[6] = 9; // SPIR-V 1.9
    assert!(matches!(
        rejected(run_with(&mut d, &bad_version, &bufs)),
        KernelRejection::UnsupportedVersion(_)
    ));
    // Every word-aligned truncation is refused before the driver sees it.
    for cut in (20..good.len()).step_by(4) {
        let r = run_with(&mut d, &good[..cut], &bufs);
        assert!(
            matches!(r, Err(JobError::Rejected(_))),
            "cut at {cut}: {r:?}"
        );
    }
    still_serving(&mut d);
    assert_clean(&d);
}

/// Single-word corruptions of real kernels: each is refused, runs or runs
/// out its time, none crashes the process, and what runs (having passed
/// both gates) draws no word from the validation layer.
///
/// Each variant gets 10 s: a corrupted loop bound can make a loop of
/// billions of iterations, which lavapipe cuts short (it caps an
/// invocation's back edges at 65535) but a GPU runs to the job's limit; on
/// an H200 with the 120 s limit of the other tests this test was still in
/// its second kernel after more than two minutes.
#[test]
fn corrupted_words_never_crash() {
    let mut d = dispatcher();
    for (name, buffers) in [
        ("saxpy", 2),
        ("reduce", 2),
        ("mandelbrot", 1),
        ("matmul", 3),
    ] {
        let good = kernel(name);
        let bufs: Vec<BufferSpec<'_>> = (0..buffers)
            .map(|binding| BufferSpec {
                binding,
                len: 4096,
                init: None,
                readback: true,
            })
            .collect();
        let mut accepted = 0;
        for i in (20..good.len()).step_by(4) {
            for word in [0xFFFF_FFFFu32, 0, 0x8000_0000, 7] {
                let mut m = good.clone();
                m[i..i + 4].copy_from_slice(&word.to_le_bytes());
                let r = run_within(&mut d, &m, &bufs, std::time::Duration::from_secs(10));
                // Named at once: which variant upset the device or the
                // validation layer (an NVIDIA device lost some, and then the
                // layer reported their objects destroyed while in use).
                let msgs = d.validation_messages();
                assert!(
                    msgs.is_empty() && !matches!(r, Err(JobError::DeviceLost { .. })),
                    "{name}, word {} set to {word:#x}: {:?}, validation messages: {msgs:#?}",
                    i / 4,
                    r.as_ref().map(|_| ())
                );
                if r.is_ok() {
                    accepted += 1;
                }
            }
        }
        eprintln!("{name}: {accepted} corrupted variants ran");
        assert_clean(&d);
    }
    still_serving(&mut d);
    assert_clean(&d);
}

#[test]
fn out_of_range_shared_and_private_indices_are_clamped() {
    let mut d = dispatcher();
    let spirv = kernel("hostile_shared_oob");
    let bufs = [BufferSpec {
        binding: 0,
        len: 256,
        init: None,
        readback: true,
    }];
    for index in [0u32, 63, 64, 1 << 20, u32::MAX] {
        let push = index.to_le_bytes();
        let job = KernelJob {
            spirv: &spirv,
            entry_point: "main",
            specialization: &[],
            push_constants: &push,
            grid: [1, 1, 1],
            buffers: &bufs,
        };
        let out = d.run(&job, TIMEOUT).expect("runs with clamped indices");
        assert_eq!(out.outputs[0].len(), 256);
    }
    still_serving(&mut d);
    assert_clean(&d);
}

#[test]
fn forbidden_capability_and_extension_are_rejected() {
    let mut d = dispatcher();
    let spirv = kernel("hostile_bda");
    let bufs = [BufferSpec {
        binding: 0,
        len: 64,
        init: None,
        readback: true,
    }];
    let r = rejected(run_with(&mut d, &spirv, &bufs));
    // PhysicalStorageBufferAddresses = 5347 (or Int64 first on a device without it).
    assert!(
        matches!(
            r,
            KernelRejection::ForbiddenCapability(5347) | KernelRejection::UnsupportedCapability(11)
        ),
        "{r:?}"
    );
    assert_eq!(r.code(), 30);
    assert_eq!(JobError::Rejected(r.clone()).code(), 100);
    assert_eq!(JobError::Rejected(r).detail(), 30 | 5347 << 16);
    still_serving(&mut d);
    assert_clean(&d);
}

#[test]
fn entry_point_rules() {
    let mut d = dispatcher();
    let bufs = [BufferSpec {
        binding: 0,
        len: 64,
        init: None,
        readback: true,
    }];
    assert_eq!(
        rejected(run_with(&mut d, &kernel("hostile_two_entry_points"), &bufs)),
        KernelRejection::MultipleEntryPoints(2)
    );
    let spirv = kernel("saxpy");
    let push = saxpy_push(1.0, 1);
    let bufs = two_buffers();
    let job = KernelJob {
        spirv: &spirv,
        entry_point: "not_main",
        specialization: &[],
        push_constants: &push,
        grid: [1, 1, 1],
        buffers: &bufs,
    };
    assert_eq!(
        d.run(&job, TIMEOUT),
        Err(JobError::Rejected(KernelRejection::NoEntryPoint))
    );
    still_serving(&mut d);
    assert_clean(&d);
}

#[test]
fn bindings_must_match_buffers() {
    let mut d = dispatcher();
    let spirv = kernel("saxpy");
    let three = [
        BufferSpec {
            binding: 0,
            len: 256,
            init: None,
            readback: false,
        },
        BufferSpec {
            binding: 1,
            len: 256,
            init: None,
            readback: false,
        },
        BufferSpec {
            binding: 2,
            len: 256,
            init: None,
            readback: false,
        },
    ];
    // A job buffer the kernel does not use is allowed (and returned as given).
    run_with(&mut d, &spirv, &three).expect("an unused job buffer is fine");
    let one = [BufferSpec {
        binding: 0,
        len: 256,
        init: None,
        readback: false,
    }];
    assert_eq!(
        rejected(run_with(&mut d, &spirv, &one)),
        KernelRejection::UnboundResource { set: 0, binding: 1 }
    );
    // Same after the pipeline is cached.
    still_serving(&mut d);
    assert_eq!(
        rejected(run_with(&mut d, &spirv, &one)),
        KernelRejection::UnboundResource { set: 0, binding: 1 }
    );
    // A uniform buffer is not a storage buffer.
    assert_eq!(
        rejected(run_with(&mut d, &kernel("hostile_uniform"), &two_buffers())),
        KernelRejection::ForbiddenDescriptorType { binding: 0 }
    );
    still_serving(&mut d);
    assert_clean(&d);
}

#[test]
fn size_limits_are_enforced() {
    let mut d = dispatcher();
    let bufs = [BufferSpec {
        binding: 0,
        len: 4 * 4096,
        init: None,
        readback: true,
    }];
    assert_eq!(
        rejected(run_with(&mut d, &kernel("hostile_big_workgroup"), &bufs)),
        KernelRejection::WorkgroupTooLarge { size: [64, 64, 1] }
    );
    let r = rejected(run_with(&mut d, &kernel("hostile_big_shared"), &bufs));
    assert!(
        matches!(
            r,
            KernelRejection::SharedMemoryTooLarge { bytes: 262_144, .. }
        ),
        "{r:?}"
    );

    let spirv = kernel("saxpy");
    let bufs = two_buffers();
    let push = saxpy_push(1.0, 64);
    let job = |grid: [u32; 3], push: &'static [u8]| (grid, push);
    let _ = job;
    let mk = |grid: [u32; 3], push: &[u8], bufs: &[BufferSpec<'_>], d: &mut Dispatcher| {
        d.run(
            &KernelJob {
                spirv: &spirv,
                entry_point: "main",
                specialization: &[],
                push_constants: push,
                grid,
                buffers: bufs,
            },
            TIMEOUT,
        )
    };
    assert_eq!(
        mk([u32::MAX, 1, 1], &push, &bufs, &mut d),
        Err(JobError::Rejected(KernelRejection::GridTooLarge {
            grid: [u32::MAX, 1, 1]
        }))
    );
    assert_eq!(
        mk([1, 0, 1], &push, &bufs, &mut d),
        Err(JobError::Rejected(KernelRejection::EmptyGrid))
    );
    assert_eq!(
        mk([1, 1, 1], &[0u8; 132], &bufs, &mut d),
        Err(JobError::Rejected(KernelRejection::PushConstantsTooLarge {
            len: 132,
            max: 128
        }))
    );
    assert_eq!(
        mk([1, 1, 1], &[0u8; 4], &bufs, &mut d),
        Err(JobError::Rejected(KernelRejection::PushConstantsTooSmall {
            kernel: 8,
            job: 4
        }))
    );
    let huge = [
        BufferSpec {
            binding: 0,
            len: 1 << 40,
            init: None,
            readback: false,
        },
        BufferSpec {
            binding: 1,
            len: 256,
            init: None,
            readback: false,
        },
    ];
    assert!(matches!(
        mk([1, 1, 1], &push, &huge, &mut d),
        Err(JobError::Rejected(KernelRejection::BufferTooLarge {
            index: 0,
            ..
        }))
    ));
    let empty = [
        BufferSpec {
            binding: 0,
            len: 0,
            init: None,
            readback: false,
        },
        BufferSpec {
            binding: 1,
            len: 256,
            init: None,
            readback: false,
        },
    ];
    assert_eq!(
        mk([1, 1, 1], &push, &empty, &mut d),
        Err(JobError::Rejected(KernelRejection::EmptyBuffer {
            index: 0
        }))
    );
    let long_init = [0u8; 300];
    let overfull = [
        BufferSpec {
            binding: 0,
            len: 256,
            init: Some(&long_init),
            readback: false,
        },
        BufferSpec {
            binding: 1,
            len: 256,
            init: None,
            readback: false,
        },
    ];
    assert_eq!(
        mk([1, 1, 1], &push, &overfull, &mut d),
        Err(JobError::Rejected(KernelRejection::InitTooLong {
            index: 0
        }))
    );
    let many = [BufferSpec {
        binding: 0,
        len: 4,
        init: None,
        readback: false,
    }; 17];
    assert!(matches!(
        mk([1, 1, 1], &push, &many, &mut d),
        Err(JobError::Rejected(KernelRejection::TooManyBuffers {
            count: 17,
            ..
        }))
    ));
    still_serving(&mut d);
    assert_clean(&d);
}

#[test]
fn memory_budget_is_enforced() {
    let mut d = dispatcher_with(DispatcherConfig {
        memory_budget: 1 << 20,
        ..DispatcherConfig::default()
    });
    let spirv = kernel("saxpy");
    let push = saxpy_push(1.0, 64);
    let bufs = [
        BufferSpec {
            binding: 0,
            len: 600 << 10,
            init: None,
            readback: false,
        },
        BufferSpec {
            binding: 1,
            len: 600 << 10,
            init: None,
            readback: false,
        },
    ];
    let job = KernelJob {
        spirv: &spirv,
        entry_point: "main",
        specialization: &[],
        push_constants: &push,
        grid: [1, 1, 1],
        buffers: &bufs,
    };
    assert_eq!(
        d.run(&job, TIMEOUT),
        Err(JobError::Rejected(KernelRejection::MemoryBudgetExceeded {
            requested: 2 << 20,
            budget: 1 << 20
        }))
    );
    still_serving(&mut d);
    assert_clean(&d);
}

#[test]
fn out_of_bounds_writes_do_not_touch_other_buffers() {
    let mut d = dispatcher();
    let spirv = kernel("hostile_oob");
    let canary: Vec<u8> = (0..1024u32)
        .flat_map(|i| (i ^ 0x5A5A_5A5A).to_le_bytes())
        .collect();
    let bufs = [
        BufferSpec {
            binding: 0,
            len: 256,
            init: None,
            readback: true,
        },
        BufferSpec {
            binding: 1,
            len: 4096,
            init: Some(&canary),
            readback: true,
        },
    ];
    let job = KernelJob {
        spirv: &spirv,
        entry_point: "main",
        specialization: &[],
        push_constants: &[],
        grid: [64, 1, 1],
        buffers: &bufs,
    };
    let out = d
        .run(&job, TIMEOUT)
        .expect("runs, contained by robust access");
    assert_eq!(out.outputs[1], canary, "canary buffer changed");
    assert_eq!(out.outputs[0].len(), 256);
    // The victim's own range holds the in-bounds writes only.
    assert!(u32s(&out.outputs[0])
        .iter()
        .all(|&v| v & 0xFFFF_FF00 == 0xBADB_AD00));
    still_serving(&mut d);
    assert_clean(&d);
}

#[test]
fn error_codes_are_distinct_and_stable() {
    let codes = [
        JobError::Timeout.code(),
        JobError::DeviceLost { fault: None }.code(),
        JobError::OutOfMemory.code(),
        JobError::Vulkan(VkResult::ERROR_UNKNOWN).code(),
        JobError::DeviceUnavailable { abandoned: 2 }.code(),
        JobError::ValidatorUnavailable(String::new()).code(),
        JobError::Cancelled.code(),
        JobError::Rejected(KernelRejection::TooShort).code(),
    ];
    assert_eq!(codes, [1, 2, 3, 4, 5, 6, 7, 100]);
    let details = [
        JobError::Timeout.detail(),
        JobError::Rejected(KernelRejection::TooShort).detail(),
        JobError::Rejected(KernelRejection::MemoryBudgetExceeded {
            requested: 0,
            budget: 0,
        })
        .detail(),
        JobError::Rejected(KernelRejection::ForbiddenOpcode(252)).detail(),
        JobError::Rejected(KernelRejection::EmptyBuffer { index: 3 }).detail(),
    ];
    assert_eq!(details, [1, 1, 84, 36 | 252 << 16, 81 | 3 << 16]);
}

#[test]
fn work_beyond_what_the_device_runs_before_the_deadline_is_refused() {
    let mut d = dispatcher();
    d.run_startup_benchmark().expect("benchmark");
    let spirv = kernel("saxpy");
    let push = saxpy_push(1.0, 64);
    let bufs = two_buffers();
    let job = |grid| KernelJob {
        spirv: &spirv,
        entry_point: "main",
        specialization: &[],
        push_constants: &push,
        grid,
        buffers: &bufs,
    };
    // 65535³ workgroups of 64: within maxComputeWorkGroupCount, but hours
    // of work for a data-centre GPU, days for lavapipe.
    match d.run(&job([65535, 65535, 65535]), TIMEOUT) {
        Err(JobError::Rejected(KernelRejection::TooMuchWork { invocations, max })) => {
            assert_eq!(invocations, 65535u64.pow(3) * 64);
            assert!(max < invocations, "max {max}");
            eprintln!("refused {invocations} invocations; this device takes {max} in {TIMEOUT:?}");
        }
        other => panic!("expected TooMuchWork, got {other:?}"),
    }
    // The bound follows the time limit: a job that fits in the test's
    // limit does not fit in 1 µs. (At 100 µs it did on an H200, whose
    // measured rate allows about 1.3e12 invocations a second.)
    let grid = [4096, 64, 1];
    d.run(&job(grid), TIMEOUT)
        .expect("fits in the test's limit");
    assert!(matches!(
        d.run(&job(grid), std::time::Duration::from_micros(1)),
        Err(JobError::Rejected(KernelRejection::TooMuchWork { .. }))
    ));
    still_serving(&mut d);
    assert_clean(&d);
}
