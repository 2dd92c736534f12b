//! The attacks of a hostile requester on the kernel sandbox, one kernel each
//! (core/kernels/hostile_*, built from source by core/kernels/build.sh; each
//! source says what the attack does and what it did to the dispatcher
//! before the gates held). Every one is refused with the rule it breaks, or
//! runs harmlessly, under the Khronos validation layer, and the dispatcher
//! serves the next job. `ci/asan-hostile` runs this file again in a process
//! built with AddressSanitizer, so a kernel that corrupts the heap through
//! the driver fails even when nothing crashes.
#![cfg(feature = "vulkan")]

mod vulkan_support;
use tessera_core::vulkan::*;
use vulkan_support::*;

/// Two 4 KiB buffers at bindings 0 and 1 (read back), 16 push-constant
/// bytes, one workgroup.
fn run(
    d: &mut Dispatcher,
    name: &str,
    push: &[u8],
    spec: &[(u32, u32)],
) -> Result<JobOutput, JobError> {
    let spirv = kernel(name);
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
    let mut push = push.to_vec();
    push.resize(16, 0);
    d.run(
        &KernelJob {
            spirv: &spirv,
            entry_point: "main",
            specialization: spec,
            push_constants: &push,
            grid: [1, 1, 1],
            buffers: &bufs,
        },
        TIMEOUT,
    )
}

/// Asserts that each kernel is refused with its rule, then that the
/// dispatcher still serves and the validation layer saw nothing.
fn refused(cases: &[(&str, KernelRejection)]) {
    let mut d = dispatcher();
    for (name, want) in cases {
        match run(&mut d, name, &[], &[]) {
            Err(JobError::Rejected(r)) => assert_eq!(&r, want, "{name}"),
            other => panic!("{name}: expected {want:?}, got {other:?}"),
        }
    }
    still_serving(&mut d);
    assert_clean(&d);
}

fn words(bytes: &[u8]) -> Vec<u32> {
    u32s(bytes)
}

fn push_u32(v: &[u32]) -> Vec<u8> {
    u32_bytes(v)
}

// Point 1: capabilities used without being declared (or never allowed),
// pointers made from integers, fragment-only instructions.

#[test]
fn physical_pointers_from_integers_are_refused() {
    // PhysicalStorageBufferAddresses = 5347, PhysicalStorageBuffer = 5349.
    refused(&[
        ("hostile_bda", KernelRejection::ForbiddenCapability(5347)),
        (
            "hostile_bda_no_cap",
            KernelRejection::ForbiddenStorageClass(5349),
        ),
        (
            "hostile_bda_cap_only",
            KernelRejection::ForbiddenCapability(5347),
        ),
        (
            "hostile_bda_ext_only",
            KernelRejection::ForbiddenExtension("SPV_KHR_physical_storage_buffer".into()),
        ),
        (
            "hostile_bda_uvec2",
            KernelRejection::ForbiddenStorageClass(5349),
        ),
    ]);
}

#[test]
fn types_and_atomics_need_their_capabilities() {
    // Int64 = 11, Float64 = 10, Int64Atomics = 12, GroupNonUniform = 61...
    refused(&[
        (
            "hostile_int64_undeclared",
            KernelRejection::UndeclaredCapability(11),
        ),
        (
            "hostile_float64_undeclared",
            KernelRejection::UndeclaredCapability(10),
        ),
        (
            "hostile_atomic64_no_int64",
            KernelRejection::UndeclaredCapability(11),
        ),
        (
            "hostile_atomic64_no_cap",
            KernelRejection::ForbiddenCapability(12),
        ),
        // GroupNonUniformArithmetic = 63.
        (
            "hostile_subgroup_undeclared",
            KernelRejection::UndeclaredCapability(63),
        ),
    ]);
}

#[test]
fn fragment_only_instructions_are_refused() {
    // OpKill = 252, OpTerminateInvocation = 4416, OpDemoteToHelperInvocation = 5380.
    refused(&[
        ("hostile_kill", KernelRejection::ForbiddenOpcode(252)),
        (
            "hostile_terminate_invocation",
            KernelRejection::ForbiddenOpcode(4416),
        ),
        ("hostile_demote", KernelRejection::ForbiddenOpcode(5380)),
        // InterpolateAtCentroid = 76.
        (
            "hostile_interpolate_centroid",
            KernelRejection::ForbiddenExtInst(76),
        ),
    ]);
}

#[test]
fn pointer_casts_and_invented_pointers_are_refused() {
    // OpBitcast = 124, OpConvertPtrToU = 117, OpConstantNull = 46, OpUndef = 1.
    refused(&[
        (
            "hostile_ptr_bitcast",
            KernelRejection::ForbiddenPointerOp(124),
        ),
        (
            "hostile_ptr_to_int",
            KernelRejection::ForbiddenPointerOp(124),
        ),
        ("hostile_ptr_to_u", KernelRejection::ForbiddenPointerOp(117)),
        (
            "hostile_null_pointer",
            KernelRejection::ForbiddenPointerOp(46),
        ),
        (
            "hostile_undef_pointer",
            KernelRejection::ForbiddenPointerOp(1),
        ),
        // A phi of storage-buffer pointers needs VariablePointersStorageBuffer
        // (4441) declared; a select of workgroup pointers needs
        // VariablePointers (4442), which is never allowed.
        (
            "hostile_ptr_phi",
            KernelRejection::UndeclaredCapability(4441),
        ),
        (
            "hostile_ptr_select",
            KernelRejection::ForbiddenCapability(4442),
        ),
    ]);
}

#[test]
fn what_other_stages_and_kernels_use_is_refused() {
    refused(&[
        // OpTypeImage = 25.
        ("hostile_image_type", KernelRejection::ForbiddenOpcode(25)),
        // OriginUpperLeft = 7, LocalSizeHint = 18, DenormPreserve = 4459.
        (
            "hostile_exec_mode_fragment",
            KernelRejection::ForbiddenExecutionMode(7),
        ),
        (
            "hostile_exec_mode_hint",
            KernelRejection::ForbiddenExecutionMode(18),
        ),
        (
            "hostile_exec_mode_denorm",
            KernelRejection::ForbiddenExecutionMode(4459),
        ),
        // Location = 30, FPRoundingMode = 39, Alignment = 44.
        (
            "hostile_deco_location",
            KernelRejection::ForbiddenDecoration(30),
        ),
        (
            "hostile_deco_fp_rounding",
            KernelRejection::ForbiddenDecoration(39),
        ),
        (
            "hostile_deco_alignment",
            KernelRejection::ForbiddenDecoration(44),
        ),
        ("hostile_recursion", KernelRejection::Recursion),
    ]);
}

// Point 2: constants and decorations read one way by the gate and another
// by the driver.

#[test]
fn narrow_constants_with_high_bits_are_refused() {
    // The literal words 0x104 (8-bit) and 0x10004 (16-bit): the driver reads
    // 4 elements, a 32-bit reader 260 or 65540.
    let mut d = dispatcher();
    for name in [
        "hostile_shared_len_int8",
        "hostile_shared_len_int16",
        "hostile_shared_len_spec8",
    ] {
        match run(&mut d, name, &push_u32(&[200, 7]), &[]) {
            Err(JobError::Rejected(KernelRejection::BadConstant(_))) => {}
            other => panic!("{name}: expected BadConstant, got {other:?}"),
        }
    }
    still_serving(&mut d);
    assert_clean(&d);
}

#[test]
fn a_narrow_specialization_is_read_at_its_width_everywhere() {
    // The job specialises an 8-bit length with 0x104: the gate masks it to
    // 4, bakes 4 into the module the driver gets, and clamps indices to 3.
    // Every index then lands inside the array, so the value stored is the
    // value read back, and nothing outside the array is touched.
    let mut d = dispatcher();
    for index in [0u32, 3, 4, 200, 259, u32::MAX] {
        let out = run(
            &mut d,
            "hostile_shared_len_spec8_job",
            &push_u32(&[index, 0xC0FF_EE00 | index & 0xff]),
            &[(0, 0x104)],
        )
        .unwrap_or_else(|e| panic!("index {index}: {e}"));
        assert_eq!(
            words(&out.outputs[0])[0],
            0xC0FF_EE00 | index & 0xff,
            "index {index}"
        );
    }
    still_serving(&mut d);
    assert_clean(&d);
}

#[test]
fn a_second_spec_id_on_one_constant_is_refused() {
    let mut d = dispatcher();
    let r = run(
        &mut d,
        "hostile_spec_id_twice",
        &push_u32(&[259, 1]),
        &[(0, 4), (1, 260)],
    );
    // SpecId = 1.
    assert!(
        matches!(
            r,
            Err(JobError::Rejected(KernelRejection::DuplicateDecoration {
                decoration: 1,
                ..
            }))
        ),
        "{r:?}"
    );
    still_serving(&mut d);
    assert_clean(&d);
}

// Point 3: workgroup memory does not carry data from one job to the next.

fn shared_memory_is_zero_at_each_job(config: DispatcherConfig) {
    let mut d = dispatcher_with(config);
    let fill = kernel("hostile_shared_fill");
    let read = kernel("hostile_shared_read");
    // The "secret": bytes that look like host pointers.
    let secret: Vec<u8> = (0..1024u32)
        .flat_map(|i| (0x7F00_0000u32 | i).to_le_bytes())
        .collect();
    for round in 0..3 {
        let bufs = [BufferSpec {
            binding: 0,
            len: 4096,
            init: Some(&secret),
            readback: true,
        }];
        d.run(
            &KernelJob {
                spirv: &fill,
                entry_point: "main",
                specialization: &[],
                push_constants: &[],
                // Workgroups on every worker thread of a CPU driver, each
                // leaving its shared memory behind.
                grid: [64, 1, 1],
                buffers: &bufs,
            },
            TIMEOUT,
        )
        .expect("fill runs");
        let bufs = [BufferSpec {
            binding: 0,
            len: 4096,
            init: None,
            readback: true,
        }];
        let out = d
            .run(
                &KernelJob {
                    spirv: &read,
                    entry_point: "main",
                    specialization: &[],
                    push_constants: &[],
                    grid: [64, 1, 1],
                    buffers: &bufs,
                },
                TIMEOUT,
            )
            .expect("read runs");
        let leaked: Vec<(usize, u32)> = words(&out.outputs[0])
            .into_iter()
            .enumerate()
            .filter(|(_, w)| *w != 0)
            .collect();
        assert!(
            leaked.is_empty(),
            "round {round}: the previous job's shared memory leaked: {} words, first {:x?}",
            leaked.len(),
            &leaked[..leaked.len().min(4)]
        );
    }
    still_serving(&mut d);
    assert_clean(&d);
}

#[test]
fn shared_memory_is_zero_at_each_job_with_null_initializers() {
    // lavapipe has shaderZeroInitializeWorkgroupMemory (Vulkan 1.3).
    let d = dispatcher();
    assert!(d.capabilities().robustness.zero_initialize_workgroup_memory);
    drop(d);
    shared_memory_is_zero_at_each_job(DispatcherConfig::default());
}

#[test]
fn shared_memory_is_zero_at_each_job_with_injected_zeroing_code() {
    shared_memory_is_zero_at_each_job(DispatcherConfig {
        force_workgroup_zeroing_code: true,
        ..DispatcherConfig::default()
    });
}

// Point 4: a module the driver should never see.

#[test]
fn an_incomplete_interface_is_refused() {
    // SPIR-V 1.6: the storage buffer the entry point uses is not in its
    // interface (lavapipe failed pipeline creation with an unknown error).
    let mut d = dispatcher();
    match run(&mut d, "hostile_interface_incomplete", &[], &[]) {
        Err(JobError::Rejected(KernelRejection::InterfaceIncomplete { .. })) => {}
        other => panic!("expected InterfaceIncomplete, got {other:?}"),
    }
    still_serving(&mut d);
    assert_clean(&d);
}

// Modules that would exhaust the validators themselves.

#[test]
fn validator_bombs_are_refused_before_the_khronos_validator_sees_them() {
    refused(&[
        (
            "hostile_spirv_val_bomb",
            KernelRejection::TooComplex(ComplexityLimit::TypeTree),
        ),
        (
            "hostile_spirv_val_memory_bomb",
            KernelRejection::TooComplex(ComplexityLimit::TypeDepth),
        ),
    ]);
}

// Valid kernels that a driver could still get wrong.

#[test]
fn integer_division_by_zero_and_overflow_do_not_trap() {
    // x86's idiv raises SIGFPE for b = 0 and for INT_MIN / -1; the process
    // must survive both (the results are undefined, any value will do).
    let mut d = dispatcher();
    for (a, b) in [(7i32, 0i32), (i32::MIN, -1), (-7, 0)] {
        let push: Vec<u8> = [a as u32, b as u32, a as u32, b as u32]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        run(&mut d, "hostile_div", &push, &[]).unwrap_or_else(|e| panic!("{a} / {b}: {e}"));
    }
    still_serving(&mut d);
    assert_clean(&d);
}

#[test]
fn dynamic_vector_indices_are_clamped() {
    // The vector is (10, 11, 12, 13); an index out of range is clamped to
    // the last component, so it reads 13 and writes the last component.
    let mut d = dispatcher();
    for index in [0u32, 3, 4, 1 << 20, u32::MAX] {
        let out = run(
            &mut d,
            "hostile_vector_dynamic",
            &push_u32(&[index, 99]),
            &[],
        )
        .unwrap_or_else(|e| panic!("index {index}: {e}"));
        let w = words(&out.outputs[0]);
        let at = index.min(3) as usize;
        assert_eq!(w[0], 10 + at as u32, "index {index}");
        let mut want = [10u32, 11, 12, 13];
        want[at] = 99;
        assert_eq!(&w[1..5], &want, "index {index}");
    }
    still_serving(&mut d);
    assert_clean(&d);
}

// Found by a hostile review: kernels that were accepted by both gates and
// then crashed or exhausted the agent, or ran past their time in the
// driver's compiler.

#[test]
fn what_exhausts_a_drivers_compiler_is_refused() {
    refused(&[
        // 16 functions each calling the next twice: 2^16 inlined copies
        // (lavapipe: killed at 24 GB).
        (
            "hostile_call_tree",
            KernelRejection::TooComplex(ComplexityLimit::InlinedSize),
        ),
        // A null constant and an undefined value of uint[2^28] (a 724-byte
        // kernel; the driver builds them element by element).
        (
            "hostile_null_constant_huge",
            KernelRejection::TooComplex(ComplexityLimit::ValueSize),
        ),
        (
            "hostile_undef_huge",
            KernelRejection::TooComplex(ComplexityLimit::ValueSize),
        ),
        // One OpCopyMemory of a whole uint[16384] (minutes of compiling).
        (
            "hostile_buffer_copy",
            KernelRejection::TooComplex(ComplexityLimit::ValueSize),
        ),
    ]);
}

#[test]
fn the_workgroup_size_has_one_meaning() {
    // Two constants decorated BuiltIn WorkgroupSize, (1,1,1) and (1024,1,1):
    // the gate took either at random, the driver the last (at 2^23
    // invocations it overflowed a worker's stack). BuiltIn = 11.
    let mut d = dispatcher();
    match run(&mut d, "hostile_two_workgroup_sizes", &[], &[]) {
        Err(JobError::Rejected(KernelRejection::DuplicateDecoration {
            decoration: 11, ..
        })) => {}
        other => panic!("expected DuplicateDecoration(BuiltIn), got {other:?}"),
    }
    still_serving(&mut d);
    assert_clean(&d);
}

#[test]
fn explicit_layout_cannot_hide_memory() {
    // Members stacked at Offset 0 in workgroup and function memory, which
    // the driver lays out one after another: the gate counts the natural
    // layout too.
    let mut d = dispatcher();
    match run(&mut d, "hostile_offset_workgroup", &[], &[]) {
        Err(JobError::Rejected(KernelRejection::SharedMemoryTooLarge { bytes, .. })) => {
            assert!(bytes >= 65536, "{bytes}")
        }
        other => panic!("expected SharedMemoryTooLarge, got {other:?}"),
    }
    match run(&mut d, "hostile_offset_function", &[], &[]) {
        Err(JobError::Rejected(KernelRejection::PrivateMemoryTooLarge { bytes, .. })) => {
            assert!(bytes >= 131072, "{bytes}")
        }
        other => panic!("expected PrivateMemoryTooLarge, got {other:?}"),
    }
    // A matrix stride of 64 KiB in a push-constant block: the kernel would
    // read 192 KiB past the bytes the job pushed.
    match run(&mut d, "hostile_push_matrix_stride", &[], &[]) {
        Err(JobError::Rejected(KernelRejection::PushConstantsTooSmall { kernel, job })) => {
            assert!(kernel > 65536 && job == 16, "{kernel} {job}")
        }
        other => panic!("expected PushConstantsTooSmall, got {other:?}"),
    }
    still_serving(&mut d);
    assert_clean(&d);
}

/// Words of each `OpVariable` in a module: (storage class, has an initializer).
fn variables(words: &[u32]) -> Vec<(u32, bool)> {
    let mut out = Vec::new();
    let mut at = 5;
    while at < words.len() {
        let count = (words[at] >> 16) as usize;
        if words[at] & 0xffff == 59 {
            out.push((words[at + 3], count > 4));
        }
        at += count.max(1);
    }
    out
}

#[test]
fn private_and_function_memory_start_at_zero() {
    // What the driver gets: every private and function variable of these
    // kernels (64 words each) has a null initializer. (lavapipe happens to
    // zero-fill such memory itself; a GPU hands out what its registers or
    // scratch memory held.)
    let mut d = dispatcher();
    let caps = d.capabilities().clone();
    for name in ["hostile_uninit_function", "hostile_uninit_private"] {
        let spirv = kernel(name);
        let bufs = [BufferSpec {
            binding: 0,
            len: 4096,
            init: None,
            readback: true,
        }];
        let checked = check_kernel(
            &KernelJob {
                spirv: &spirv,
                entry_point: "main",
                specialization: &[],
                push_constants: &[],
                grid: [1, 1, 1],
                buffers: &bufs,
            },
            &caps,
            &DispatcherConfig::default(),
        )
        .expect("accepted");
        let uninitialised: Vec<(u32, bool)> = variables(&checked.spirv)
            .into_iter()
            .filter(|(class, init)| matches!(class, 6 | 7) && !init)
            .collect();
        assert!(uninitialised.is_empty(), "{name}: {uninitialised:?}");
    }
    // And what the kernels read: each of 64 invocations writes 0x77777777
    // into one element of its own array and copies 64 elements out;
    // everything else must be zero, never what the driver's stack or an
    // earlier job left.
    for name in ["hostile_uninit_function", "hostile_uninit_private"] {
        for round in 0..2 {
            let out = run(&mut d, name, &[], &[]).unwrap_or_else(|e| panic!("{name}: {e}"));
            let w = words(&out.outputs[0]);
            let marked = w.iter().filter(|x| **x == 0x7777_7777).count();
            let other: Vec<u32> = w
                .iter()
                .copied()
                .filter(|x| *x != 0 && *x != 0x7777_7777)
                .collect();
            assert!(
                other.is_empty(),
                "{name} round {round}: read {:x?}",
                &other[..other.len().min(8)]
            );
            // One mark per invocation whose 64 words fit in the 4 KiB buffer.
            assert_eq!(marked, w.len() / 64, "{name} round {round}");
        }
    }
    still_serving(&mut d);
    assert_clean(&d);
}

#[test]
fn zeroing_code_reuses_a_signed_invocation_index() {
    // The kernel's LocalInvocationIndex is a signed int: the zeroing code
    // must read it, not declare a second built-in. shared[lid] = lid,
    // out[lid] = shared[63 - lid].
    let mut d = dispatcher_with(DispatcherConfig {
        force_workgroup_zeroing_code: true,
        ..DispatcherConfig::default()
    });
    let out = run(&mut d, "hostile_zeroing_signed_index", &[], &[]).expect("runs");
    let w = words(&out.outputs[0]);
    for lid in 0..64u32 {
        assert_eq!(w[lid as usize], 63 - lid, "lid {lid}");
    }
    still_serving(&mut d);
    assert_clean(&d);
}
