#!/usr/bin/env bash
# Assembles the regression modules of core/tests/kernel_gate.rs (SPIR-V 1.3)
# and makes the five that spirv-as cannot write (an extended instruction
# with one operand too many or too few: it checks the arity; a removed
# extended instruction; a result id 0; an OpSource language newer than
# the validator) by patching base.spv or the module assembled.
# The tests load the committed .spv files, so this is only needed after
# editing one. Needs spirv-as (SPIRV-Tools) and python3.
set -euo pipefail
cd "$(dirname "$0")"
for src in *.spvasm; do
    spirv-as --target-env spv1.3 -o "${src%.spvasm}.spv" "$src"
done
python3 - <<'PY'
import struct
words = list(struct.unpack("<%dI" % (len(open("base.spv", "rb").read()) // 4),
                           open("base.spv", "rb").read()))
at = 5
while at < len(words):
    count, op = words[at] >> 16, words[at] & 0xffff
    if op == 12 and words[at + 4] == 50:  # OpExtInst ... Fma
        break
    at += count
for name, delta in (("ext_inst_extra_operand", 1), ("ext_inst_missing_operand", -1)):
    w = list(words)
    if delta > 0:
        w.insert(at + count, w[at + 5])
    else:
        del w[at + count - 1]
    w[at] = ((count + delta) << 16) | 12
    open(name + ".spv", "wb").write(struct.pack("<%dI" % len(w), *w))
# GLSL.std.450 instruction 47 (IMix, removed from the set) instead of Fma.
w = list(words)
w[at + 4] = 47
open("glsl_removed_instruction.spv", "wb").write(struct.pack("<%dI" % len(w), *w))
# An access chain whose result id is 0.
at = 5
while at < len(words):
    count, op = words[at] >> 16, words[at] & 0xffff
    if op == 65:
        break
    at += count
w = list(words)
w[at + 2] = 0
open("result_id_zero.spv", "wb").write(struct.pack("<%dI" % len(w), *w))
# OpSource with source language 8 (HERO_C) instead of GLSL.
name = "source_language_newer_than_the_validator.spv"
raw = open(name, "rb").read()
w = list(struct.unpack("<%dI" % (len(raw) // 4), raw))
at = 5
while at < len(w):
    count, op = w[at] >> 16, w[at] & 0xffff
    if op == 3:
        break
    at += count
w[at + 1] = 8
open(name, "wb").write(struct.pack("<%dI" % len(w), *w))
PY
