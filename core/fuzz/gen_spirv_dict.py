#!/usr/bin/env python3
"""Writes spirv_gate.dict, the libFuzzer dictionary of the spirv_gate target.

Entries: the SPIR-V magic and version words; for every opcode the kernel gate
allows (read from core/src/vulkan/validate/policy.rs), its first word
(word count << 16 | opcode, little-endian) for the smallest word counts its
grammar allows (read from rspirv's grammar table in the cargo registry);
and the enumerants and strings compute kernels use. Run it after the gate
allows new opcodes:

    python3 core/fuzz/gen_spirv_dict.py > core/fuzz/spirv_gate.dict
"""
import glob
import os
import re
import struct

here = os.path.dirname(os.path.abspath(__file__))
policy = open(os.path.join(here, "../src/vulkan/validate/policy.rs")).read()
allowed_src = policy[policy.index("fn opcode_allowed"):policy.index("fn implied")]
allowed = set(re.findall(r"\b([A-Z][A-Za-z0-9]+)\b", allowed_src))

tables = sorted(glob.glob(os.path.expanduser(
    "~/.cargo/registry/src/*/rspirv-0.13.*/grammar/autogen_table.rs")))
spirv = sorted(glob.glob(os.path.expanduser(
    "~/.cargo/registry/src/*/spirv-0.4.*/autogen_spirv.rs")))
table = open(tables[-1]).read()
enum = open(spirv[-1]).read()
op_block = enum[enum.index("pub enum Op {"):]
op_block = op_block[:op_block.index("}")]
opcodes = {m.group(1): int(m.group(2)) for m in re.finditer(r"(\w+) = (\d+)u32,", op_block)}

def word(w):
    return "".join("\\x%02x" % b for b in struct.pack("<I", w))

print("# libFuzzer dictionary of the spirv_gate target, written by gen_spirv_dict.py.")
print('magic="%s"' % word(0x07230203))
for minor in range(7):
    print('version_1_%d="%s"' % (minor, word(0x10000 | minor << 8)))

for m in re.finditer(r"inst!\(\s*(\w+),\s*\[[^\]]*\],\s*\[[^\]]*\],\s*\[(.*?)\]\s*\)", table, re.S):
    name, operands = m.group(1), m.group(2)
    if name not in allowed or name not in opcodes:
        continue
    quants = re.findall(r"\((\w+), (\w+)\)", operands)
    least = 1 + sum(1 for _, q in quants if q == "One")
    more = any(q != "One" for _, q in quants) or any(k == "LiteralString" for k, _ in quants)
    counts = range(least, least + (4 if more else 1))
    for c in counts:
        print('Op%s_%d="%s"' % (name, c, word(c << 16 | opcodes[name])))

enumerants = {
    # Capabilities
    "cap_Shader": 1, "cap_Matrix": 0, "cap_Float16": 9, "cap_Float64": 10, "cap_Int64": 11,
    "cap_Int16": 22, "cap_Int8": 39, "cap_GroupNonUniform": 61, "cap_GroupNonUniformVote": 62,
    "cap_GroupNonUniformArithmetic": 63, "cap_GroupNonUniformBallot": 64,
    "cap_GroupNonUniformShuffle": 65, "cap_GroupNonUniformShuffleRelative": 66,
    "cap_GroupNonUniformClustered": 67, "cap_GroupNonUniformQuad": 68,
    "cap_StorageBuffer16BitAccess": 4433, "cap_StorageBuffer8BitAccess": 4448,
    "cap_VariablePointersStorageBuffer": 4441, "cap_Int64Atomics": 12,
    # Storage classes
    "sc_Input": 1, "sc_Uniform": 2, "sc_Workgroup": 4, "sc_Private": 6, "sc_Function": 7,
    "sc_PushConstant": 9, "sc_StorageBuffer": 12,
    # Decorations
    "dec_SpecId": 1, "dec_Block": 2, "dec_BufferBlock": 3, "dec_ArrayStride": 6,
    "dec_MatrixStride": 7, "dec_BuiltIn": 11, "dec_NonWritable": 24, "dec_Binding": 33,
    "dec_DescriptorSet": 34, "dec_Offset": 35,
    # Built-ins
    "bi_NumWorkgroups": 24, "bi_WorkgroupSize": 25, "bi_WorkgroupId": 26,
    "bi_LocalInvocationId": 27, "bi_GlobalInvocationId": 28, "bi_LocalInvocationIndex": 29,
    "bi_SubgroupSize": 36, "bi_SubgroupLocalInvocationId": 41,
    # Execution model and modes, scopes, semantics
    "GLCompute": 5, "mode_LocalSize": 17, "mode_LocalSizeId": 38,
    "scope_Workgroup": 2, "scope_Subgroup": 3, "semantics_acqrel_workgroup": 0x108,
    # Sizes the limits are about
    "u32_1024": 1024, "u32_32768": 32768, "u32_max": 0xffffffff,
}
for name, value in enumerants.items():
    print('%s="%s"' % (name, word(value)))
for s in ["GLSL.std.450", "main", "SPV_KHR_storage_buffer_storage_class",
          "SPV_KHR_16bit_storage", "SPV_KHR_8bit_storage", "SPV_KHR_variable_pointers"]:
    print('str_%s="%s"' % (re.sub(r"\W", "_", s), s))
