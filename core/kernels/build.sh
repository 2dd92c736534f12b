#!/usr/bin/env bash
# Rebuilds the committed SPIR-V from the GLSL and assembly sources beside it.
# Tests load the committed .spv files, so running this is only needed after
# editing a kernel. Needs glslc (shaderc) and spirv-as (SPIRV-Tools).
set -euo pipefail
cd "$(dirname "$0")"

for src in saxpy reduce matmul mandelbrot copy fma \
           hostile_oob hostile_loop hostile_big_workgroup hostile_big_shared \
           hostile_uniform spec_workgroup hostile_shared_oob hostile_busy saxpy_gap; do
    glslc --target-env=vulkan1.1 -O -o "$src.spv" "$src.comp"
done

# The optimiser drops a binding the kernel never uses; this one keeps it.
glslc --target-env=vulkan1.1 -O0 -o saxpy_unused_binding.spv saxpy_unused_binding.comp

# Buffer device addresses need SPIR-V 1.5 / Vulkan 1.2.
glslc --target-env=vulkan1.2 -O -o hostile_bda.spv hostile_bda.comp

# Hand-written assembly for what GLSL cannot express.
for src in hostile_two_entry_points bad_layout; do
    spirv-as --target-env vulkan1.1 -o "$src.spv" "$src.spvasm"
done
