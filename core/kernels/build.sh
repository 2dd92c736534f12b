#!/usr/bin/env bash
# Rebuilds the committed SPIR-V from the GLSL and assembly sources beside it.
# Tests load the committed .spv files, so running this is only needed after
# editing a kernel. Needs glslc (shaderc), spirv-as (SPIRV-Tools) and python3.
set -euo pipefail
cd "$(dirname "$0")"

for src in saxpy reduce matmul mandelbrot copy fma \
           hostile_oob hostile_loop hostile_big_workgroup hostile_big_shared \
           hostile_uniform spec_workgroup hostile_shared_oob \
           hostile_shared_fill hostile_shared_read hostile_busy saxpy_gap; do
    glslc --target-env=vulkan1.1 -O -o "$src.spv" "$src.comp"
done

# The optimiser drops a binding the kernel never uses; this one keeps it.
glslc --target-env=vulkan1.1 -O0 -o saxpy_unused_binding.spv saxpy_unused_binding.comp

# Buffer device addresses need SPIR-V 1.5 / Vulkan 1.2.
glslc --target-env=vulkan1.2 -O -o hostile_bda.spv hostile_bda.comp

# Hand-written assembly for what GLSL cannot express. Most of these are
# invalid on purpose (issue 8): spirv-as assembles them, spirv-val refuses
# most of them. `!0x...` writes a raw literal word (out-of-range 8- and
# 16-bit constants).
for src in hostile_two_entry_points bad_layout \
           hostile_bda_no_cap hostile_bda_cap_only hostile_bda_ext_only \
           hostile_atomic64_no_cap hostile_atomic64_no_int64 \
           hostile_int64_undeclared hostile_float64_undeclared \
           hostile_kill hostile_terminate_invocation hostile_demote \
           hostile_ptr_bitcast hostile_ptr_to_int hostile_ptr_to_u \
           hostile_shared_len_int8 hostile_shared_len_int16 \
           hostile_shared_len_spec8 hostile_shared_len_spec8_job \
           hostile_spec_id_twice \
           hostile_div hostile_vector_dynamic hostile_recursion \
           hostile_ptr_select hostile_ptr_phi \
           hostile_null_pointer hostile_undef_pointer hostile_image_type \
           hostile_exec_mode_hint hostile_exec_mode_denorm \
           hostile_exec_mode_fragment hostile_deco_location \
           hostile_deco_alignment hostile_deco_fp_rounding \
           hostile_interpolate_centroid hostile_subgroup_undeclared; do
    spirv-as --target-env vulkan1.1 -o "$src.spv" "$src.spvasm"
done

# Bitcasting a uvec2 into a pointer needs SPIR-V 1.5.
spirv-as --target-env vulkan1.2 -o hostile_bda_uvec2.spv hostile_bda_uvec2.spvasm

# Interfaces must list every global from SPIR-V 1.4 on: a 1.6 module.
spirv-as --target-env vulkan1.3 -o hostile_interface_incomplete.spv \
    hostile_interface_incomplete.spvasm

# Attacks found by a hostile review, as SPIR-V 1.6 (Vulkan 1.3) modules.
for src in hostile_call_tree hostile_two_workgroup_sizes \
           hostile_offset_workgroup hostile_offset_function \
           hostile_null_constant_huge hostile_undef_huge hostile_buffer_copy \
           hostile_push_matrix_stride hostile_uninit_function \
           hostile_uninit_private hostile_zeroing_signed_index; do
    spirv-as --target-env vulkan1.3 -o "$src.spv" "$src.spvasm"
done

# Pathological modules for validators (too big or too regular to write).
python3 gen_hostile.py .
