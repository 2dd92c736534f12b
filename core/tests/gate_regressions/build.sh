#!/usr/bin/env bash
# Assembles the regression modules of core/tests/kernel_gate.rs (SPIR-V 1.3).
# The tests load the committed .spv files, so this is only needed after
# editing one. Needs spirv-as (SPIRV-Tools).
set -euo pipefail
cd "$(dirname "$0")"
for src in *.spvasm; do
    spirv-as --target-env spv1.3 -o "${src%.spvasm}.spv" "$src"
done
