//! Tessera's own kernel gate, through `check_kernel` (no device needed), on
//! modules the `spirv_gate` fuzzer found it accepting although the Khronos
//! validator rejects them (core/fuzz/README.md). Each module is SPIR-V
//! assembly in `core/tests/gate_regressions/` that differs from `base` in
//! one place; `build.sh` there assembles the committed `.spv` files.
#![cfg(feature = "vulkan")]

use tessera_core::vulkan::*;

/// A Vulkan 1.3 device with the features the fuzzer's device has.
fn device() -> Capabilities {
    Capabilities {
        name: "test device".into(),
        vendor_id: 0x10005,
        device_id: 0,
        driver_version: 0,
        api_version: (1 << 22) | (3 << 12),
        device_type: DeviceType::Cpu,
        memory_heaps: [MemoryHeap {
            size: 2 << 30,
            device_local: true,
        }; MAX_MEMORY_HEAPS],
        memory_heap_count: 1,
        limits: ComputeLimits {
            max_workgroup_size: [1024, 1024, 1024],
            max_workgroup_count: [65535, 65535, 65535],
            max_invocations: 1024,
            max_shared_memory: 32 << 10,
            max_storage_buffer_range: 1 << 27,
            max_push_constants: 128,
            max_storage_buffers: 32,
        },
        subgroup_size: 8,
        features: ShaderFeatures {
            float16: true,
            int8: true,
            int16: true,
            int64: true,
            float64: true,
            storage_buffer_16bit: true,
            storage_buffer_8bit: true,
            variable_pointers: true,
            subgroup_operations: 0xff,
        },
        robustness: Robustness {
            robust_buffer_access: true,
            robust_buffer_access2: true,
            device_fault: false,
            zero_initialize_workgroup_memory: true,
        },
        timestamps: true,
        benchmark: None,
    }
}

/// The gate's verdict on a module with one 256-byte buffer at binding 0.
fn check(spirv: &[u8]) -> Result<CheckedKernel, KernelRejection> {
    check_on(spirv, &device())
}

/// [`check`] on a given device.
fn check_on(spirv: &[u8], device: &Capabilities) -> Result<CheckedKernel, KernelRejection> {
    let buffers = [BufferSpec {
        binding: 0,
        len: 256,
        init: None,
        readback: true,
    }];
    let job = KernelJob {
        spirv,
        entry_point: "main",
        specialization: &[],
        push_constants: &[0; 16],
        grid: [1, 1, 1],
        buffers: &buffers,
    };
    check_kernel(&job, device, &DispatcherConfig::default())
}

macro_rules! module {
    ($name:literal) => {
        include_bytes!(concat!("gate_regressions/", $name, ".spv"))
    };
}

fn bad_operand(opcode: u32) -> Result<CheckedKernel, KernelRejection> {
    Err(KernelRejection::BadOperand { opcode })
}

#[test]
fn the_base_module_is_accepted() {
    let k = check(module!("base")).expect("base is a valid kernel");
    assert_eq!(k.workgroup_size, [64, 1, 1]);
}

/// The committed kernels the gate accepts (the hostile ones among them are
/// contained at run time) stay accepted as the gate learns new rules.
#[test]
fn the_committed_kernels_stay_accepted() {
    let buffers: Vec<BufferSpec<'_>> = (0..16)
        .map(|binding| BufferSpec {
            binding,
            len: 256,
            init: None,
            readback: false,
        })
        .collect();
    for name in [
        "saxpy",
        "reduce",
        "matmul",
        "mandelbrot",
        "copy",
        "fma",
        "spec_workgroup",
        "hostile_busy",
        "hostile_loop",
        "hostile_oob",
        "hostile_shared_oob",
    ] {
        let path = format!("{}/kernels/{name}.spv", env!("CARGO_MANIFEST_DIR"));
        let spirv = std::fs::read(&path).expect(&path);
        let job = KernelJob {
            spirv: &spirv,
            entry_point: "main",
            specialization: &[],
            push_constants: &[0; 128],
            grid: [1, 1, 1],
            buffers: &buffers,
        };
        if let Err(e) = check_kernel(&job, &device(), &DispatcherConfig::default()) {
            panic!("{name}: {e}");
        }
    }
}

#[test]
fn decorations_sit_where_they_mean_something() {
    let member = bad_operand(72); // OpMemberDecorate
    assert_eq!(check(module!("member_decoration_out_of_range")), member);
    assert_eq!(check(module!("member_decoration_on_scalar")), member);
    assert_eq!(check(module!("spec_id_on_member")), member);
    assert_eq!(check(module!("uniform_on_member")), member);
    assert_eq!(check(module!("glsl_packed_on_member")), member);
    assert_eq!(check(module!("matrix_stride_on_type")), bad_operand(71));
    assert_eq!(check(module!("binding_on_type")), bad_operand(71)); // OpDecorate
    assert_eq!(
        check(module!("binding_on_workgroup_variable")),
        bad_operand(71)
    );
    let r = check(module!("block_in_block"));
    assert!(matches!(r, Err(KernelRejection::BadType(_))), "{r:?}");
}

#[test]
fn extended_instructions_have_their_operands_and_spec_operations_are_shader_ones() {
    let ext_inst = bad_operand(12);
    assert_eq!(check(module!("ext_inst_extra_operand")), ext_inst);
    assert_eq!(check(module!("ext_inst_missing_operand")), ext_inst);
    assert_eq!(
        check(module!("spec_constant_op_kernel_only")),
        bad_operand(52)
    );
    assert_eq!(
        check(module!("glsl_removed_instruction")),
        Err(KernelRejection::ForbiddenExtInst(47))
    );
}

#[test]
fn a_scalar_type_is_declared_once() {
    let r = check(module!("duplicate_scalar_type"));
    assert!(matches!(r, Err(KernelRejection::BadType(_))), "{r:?}");
}

#[test]
fn memory_is_read_and_written_through_pointers_of_the_right_type() {
    let (load, store, copy) = (bad_operand(61), bad_operand(62), bad_operand(63));
    assert_eq!(check(module!("load_from_constant")), load);
    assert_eq!(check(module!("load_of_another_type")), load);
    assert_eq!(check(module!("store_to_constant")), store);
    assert_eq!(check(module!("store_to_input")), store);
    assert_eq!(check(module!("copy_memory_from_value")), copy);
    assert_eq!(check(module!("array_length_of_no_member")), bad_operand(68));
}

#[test]
fn operands_and_results_have_the_types_their_instruction_needs() {
    for (name, opcode) in [
        ("glsl_operand_of_another_type", 12), // OpExtInst
        ("glsl_integer_instruction_on_floats", 12),
        ("phi_of_another_type", 245),
        ("fadd_of_an_integer", 129),
        ("iadd_giving_a_float", 128),
        ("composite_extract_of_another_type", 81),
        ("branch_on_an_integer", 250),
        ("return_value_from_void", 254),
    ] {
        let path = format!(
            "{}/tests/gate_regressions/{name}.spv",
            env!("CARGO_MANIFEST_DIR")
        );
        let spirv = std::fs::read(&path).expect(&path);
        assert_eq!(check(&spirv), bad_operand(opcode), "{name}");
    }
}

#[test]
fn values_are_defined_before_they_are_used() {
    assert_eq!(check(module!("use_before_definition")), bad_operand(129)); // OpFAdd
}

#[test]
fn scopes_are_constants_a_compute_kernel_may_name() {
    let barrier = bad_operand(224); // OpControlBarrier
    assert_eq!(check(module!("barrier_scope_out_of_range")), barrier);
    assert_eq!(check(module!("barrier_scope_not_constant")), barrier);
    // Semantics with a bit SPIR-V does not define: spirv-val accepts it,
    // and drivers differ on what they do with it.
    assert_eq!(check(module!("memory_semantics_undefined_bit")), barrier);
}

#[test]
fn instructions_stand_in_their_place_in_the_layout() {
    for name in [
        "execution_mode_in_function",
        "constant_in_function",
        "source_before_memory_model",
    ] {
        let path = format!(
            "{}/tests/gate_regressions/{name}.spv",
            env!("CARGO_MANIFEST_DIR")
        );
        let spirv = std::fs::read(&path).expect(&path);
        let r = check(&spirv);
        assert!(
            matches!(r, Err(KernelRejection::BadInstruction { .. })),
            "{name}: {r:?}"
        );
    }
}

#[test]
fn no_result_has_id_zero() {
    assert_eq!(
        check(module!("result_id_zero")),
        Err(KernelRejection::IdOutOfBounds)
    );
}

#[test]
fn debug_information_names_what_exists() {
    assert_eq!(check(module!("line_naming_a_type")), bad_operand(8)); // OpLine
    assert_eq!(check(module!("source_naming_a_type")), bad_operand(3)); // OpSource
    assert_eq!(check(module!("member_name_of_an_array")), bad_operand(6)); // OpMemberName
                                                                           // A source language the Khronos validator does not know yet.
    assert_eq!(
        check(module!("source_language_newer_than_the_validator")),
        bad_operand(3)
    );
}

#[test]
fn a_kernel_declares_the_shader_capability() {
    assert_eq!(
        check(module!("no_shader_capability")),
        Err(KernelRejection::UndeclaredCapability(1))
    );
}

#[test]
fn struct_members_are_named_by_plain_constants() {
    assert_eq!(
        check(module!("struct_index_spec_constant")),
        bad_operand(65)
    ); // OpAccessChain
}

#[test]
fn built_in_inputs_have_their_type() {
    let r = check(module!("builtin_of_another_type"));
    assert!(matches!(r, Err(KernelRejection::BadType(_))), "{r:?}");
}

#[test]
fn a_phi_has_one_value_for_each_predecessor() {
    let phi = bad_operand(245);
    assert_eq!(check(module!("phi_missing_predecessor")), phi);
    assert_eq!(check(module!("phi_duplicate_parent")), phi);
    assert_eq!(check(module!("phi_non_predecessor")), phi);
    assert_eq!(check(module!("phi_after_other_instruction")), phi);
}

/// The watchdog leaves a loop for its merge block when the host says stop:
/// a merge block that is the loop's header, or comes before it and leads
/// back in, would make an endless loop unstoppable.
#[test]
fn merge_blocks_come_after_their_header() {
    let loop_merge = Err(KernelRejection::BadControlFlow { opcode: 246 });
    assert_eq!(check(module!("loop_merge_is_header")), loop_merge);
    assert_eq!(check(module!("loop_merge_before_header")), loop_merge);
}

/// With two, the gate took whichever its hash map gave first (a job's
/// verdict changed between two runs), and a driver may take the other:
/// a workgroup over the device's limits. spirv-val accepts such a module.
#[test]
fn a_kernel_has_one_workgroup_size_constant() {
    for _ in 0..16 {
        assert_eq!(
            check(module!("two_workgroup_sizes")),
            Err(KernelRejection::DuplicateDecoration {
                target: 5,
                decoration: 11, // BuiltIn
            })
        );
    }
}

/// The rewrite zeroes workgroup memory with code reading
/// LocalInvocationIndex; with two such inputs it took whichever its hash
/// map gave first, so one job's rewritten module changed between runs.
#[test]
fn the_same_job_is_rewritten_the_same_way() {
    let mut device = device();
    device.robustness.zero_initialize_workgroup_memory = false;
    let first = check_on(module!("two_local_invocation_indices"), &device).expect("valid");
    for _ in 0..16 {
        assert_eq!(
            check_on(module!("two_local_invocation_indices"), &device),
            Ok(first.clone())
        );
    }
}

#[test]
fn subgroup_built_ins_need_their_capability() {
    assert_eq!(
        check(module!("subgroup_builtin_without_capability")),
        Err(KernelRejection::UndeclaredCapability(61)) // GroupNonUniform
    );
}

#[test]
fn a_merge_instruction_is_right_before_its_branch() {
    assert_eq!(
        check(module!("selection_merge_not_before_branch")),
        Err(KernelRejection::BadControlFlow { opcode: 247 }) // OpSelectionMerge
    );
}

#[test]
fn buffers_are_blocks_even_when_unused() {
    for r in [
        check(module!("storage_buffer_of_a_scalar")),
        check(module!("storage_buffer_without_block")),
    ] {
        assert!(matches!(r, Err(KernelRejection::BadType(_))), "{r:?}");
    }
}

#[test]
fn controls_are_spirv_hints_that_do_not_contradict_each_other() {
    assert_eq!(
        check(module!("contradicting_loop_controls")),
        bad_operand(246) // OpLoopMerge
    );
    assert_eq!(check(module!("vendor_function_control")), bad_operand(54)); // OpFunction
}

#[test]
fn buffers_hold_no_booleans() {
    let r = check(module!("bool_in_storage_buffer"));
    assert!(matches!(r, Err(KernelRejection::ForbiddenType(_))), "{r:?}");
}

/// The watchdog flag is read with an atomic load at device scope on every
/// loop's back edge. A volatile load worked on lavapipe, but on an NVIDIA
/// H200 (driver 580) a kernel kept reading a stale flag: an endless loop
/// ran on after its timeout and held the device, where the atomic load
/// stopped it within 30 ms (`vulkan_containment` on that GPU).
#[test]
fn the_watchdog_flag_is_read_atomically() {
    let spirv = std::fs::read(format!(
        "{}/kernels/hostile_loop.spv",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect("hostile_loop.spv");
    let checked = check(&spirv).expect("valid");
    assert!(checked.watchdog);
    let words = &checked.spirv;
    // (opcode, operands) of each instruction after the 5-word header.
    let mut insts = Vec::new();
    let mut at = 5;
    while at < words.len() {
        let (count, opcode) = ((words[at] >> 16) as usize, words[at] & 0xffff);
        assert!(count > 0 && at + count <= words.len(), "bad instruction");
        insts.push((opcode, &words[at + 1..at + count]));
        at += count;
    }
    const OP_CONSTANT: u32 = 43;
    const OP_ATOMIC_LOAD: u32 = 227;
    let constant = |id: u32| {
        insts
            .iter()
            .find(|(op, o)| *op == OP_CONSTANT && o[1] == id)
            .map(|(_, o)| o[2])
    };
    let loads: Vec<&[u32]> = insts
        .iter()
        .filter(|(op, _)| *op == OP_ATOMIC_LOAD)
        .map(|(_, o)| *o)
        .collect();
    // hostile_loop has one loop and no atomics of its own.
    assert_eq!(loads.len(), 1, "one atomic load of the flag");
    // Operands: result type, result, pointer, scope, semantics.
    assert_eq!(constant(loads[0][3]), Some(1), "scope Device");
    assert_eq!(constant(loads[0][4]), Some(0), "semantics Relaxed");
}
