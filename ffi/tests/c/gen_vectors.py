#!/usr/bin/env python3
"""Turns the shared test vectors (core/tests/vectors/*.json) into a C header
of byte arrays and expected results, for test_verify.c (and, through the C
file ffi/tests/cpp/vectors.c, for the C++ test: with TESSERA_VECTOR_TYPES_ONLY
defined the header declares the types only, since C++17 has no designated
initializers).

    python3 ffi/tests/c/gen_vectors.py core/tests/vectors OUT/vectors.h

Only the standard library: the C test needs no JSON parser. The vectors'
meaning is documented in core/tests/attest_vectors.rs, which writes them.
"""

import json
import os
import sys

# The verification error each vector names, as the header's result code.
ERRORS = {
    "Malformed": "TESSERA_VERIFY_MALFORMED",
    "BadSignature": "TESSERA_VERIFY_BAD_SIGNATURE",
    "UnknownKey": "TESSERA_VERIFY_UNKNOWN_KEY",
    "WrongNonce": "TESSERA_VERIFY_WRONG_NONCE",
    "Replayed": "TESSERA_VERIFY_REPLAYED",
    "OutOfOrder": "TESSERA_VERIFY_OUT_OF_ORDER",
    "BrokenChain": "TESSERA_VERIFY_BROKEN_CHAIN",
    "ChunkProofMismatch": "TESSERA_VERIFY_CHUNK_PROOF_MISMATCH",
}


def c_string(text):
    """A C string literal of `text`'s UTF-8 bytes (printable ASCII as is,
    anything else as octal escapes)."""
    out = []
    for b in text.encode("utf-8"):
        ch = chr(b)
        if ch in '"\\':
            out.append("\\" + ch)
        elif 0x20 <= b < 0x7F:
            out.append(ch)
        else:
            out.append("\\%03o" % b)
    return '"' + "".join(out) + '"'


def byte_list(data):
    """`{0x.., ..}` of bytes, wrapped."""
    if not data:
        return "{0}"
    items = ["0x%02x" % b for b in data]
    lines = [", ".join(items[i : i + 12]) for i in range(0, len(items), 12)]
    return "{\n        " + ",\n        ".join(lines) + "}"


def hex_bytes(text, length=None):
    data = bytes.fromhex(text)
    if length is not None and len(data) != length:
        raise ValueError("expected %d bytes, got %d: %s" % (length, len(data), text))
    return data


def ints(values):
    return "{" + ", ".join(str(v) for v in values) + "}"


def u64(v):
    return "UINT64_C(%d)" % v


class Header:
    def __init__(self):
        self.lines = []
        self.arrays = 0

    def add(self, text=""):
        self.lines.append(text)

    def bytes_array(self, data):
        """Emits a byte array and returns its name."""
        self.arrays += 1
        name = "vector_bytes_%d" % self.arrays
        self.add("static const uint8_t %s[%d] = %s;" % (name, max(len(data), 1), byte_list(data)))
        return name


def expect(v):
    return ERRORS[v["expect_error"]] if "expect_error" in v else "TESSERA_OK"


def chain(c):
    return "{%s, %s}" % (u64(c["next_sequence"]), byte_list(hex_bytes(c["prev_hash"], 32)))


def keys(h, vectors):
    h.add("static const key_vector key_vectors[] = {")
    for k in vectors:
        h.add("    {%s," % c_string(k["name"]))
        h.add("     %s," % byte_list(hex_bytes(k["seed"], 32)))
        h.add("     %s," % byte_list(hex_bytes(k["public_key"], 32)))
        h.add("     %s}," % byte_list(hex_bytes(k["key_id"], 16)))
    h.add("};")


def evidence_info(e, key_id):
    c = e["capabilities"]
    return """{
        .challenge = %s,
        .public_key = %s,
        .key_id = %s,
        .agent_version = %s,
        .boot_id = %s,
        .issued_at = %s,
        .chain = %s,
        .device = {
            .name = %s,
            .vendor_id = %d, .device_id = %d, .driver_version = %d,
            .api_version = %d, .device_type = %d, .features = %d,
            .device_local_bytes = %s, .host_visible_bytes = %s,
            .max_workgroup_size = %s, .max_workgroup_count = %s,
            .max_invocations = %d, .max_shared_memory = %d,
            .max_storage_buffer_range = %s, .subgroup_size = %d,
            .copy_mbps = %d, .fma_mflops = %d},
        .enc_key = %s,
        .hardware_report_kind = %d,
        .hardware_report_hash = %s}""" % (
        byte_list(hex_bytes(e["challenge"], 32)),
        byte_list(hex_bytes(e["public_key"], 32)),
        byte_list(hex_bytes(key_id, 16)),
        ints(e["agent_version"]),
        byte_list(hex_bytes(e["boot_id"], 16)),
        u64(e["issued_at"]),
        chain(e["chain"]),
        c_string(c["name"]),
        c["vendor_id"],
        c["device_id"],
        c["driver_version"],
        c["api_version"],
        c["device_type"],
        c["features"],
        u64(c["device_local_bytes"]),
        u64(c["host_visible_bytes"]),
        ints(c["max_workgroup_size"]),
        ints(c["max_workgroup_count"]),
        c["max_invocations"],
        c["max_shared_memory"],
        u64(c["max_storage_buffer_range"]),
        c["subgroup_size"],
        c["copy_mbps"],
        c["fma_mflops"],
        byte_list(hex_bytes(e["enc_key"], 32)),
        e["hardware_report"]["kind"],
        byte_list(hex_bytes(e["hardware_report"]["hash"], 32)),
    )


def evidence(h, vectors):
    entries = []
    for v in vectors:
        data = hex_bytes(v["hex"])
        arr = h.bytes_array(data)
        valid = "expect_error" not in v
        fields = [
            ".name = %s" % c_string(v["name"]),
            ".bytes = %s" % arr,
            ".len = %d" % len(data),
            ".challenge = %s" % byte_list(hex_bytes(v["challenge"], 32)),
            ".expect = %s" % expect(v),
        ]
        if valid:
            fields.append(".info = %s" % evidence_info(v["evidence"], v["key_id"]))
            fields.append(".hash = %s" % byte_list(hex_bytes(v["hash"], 32)))
        entries.append(fields)
    h.add("static const evidence_vector evidence_vectors[] = {")
    for fields in entries:
        h.add("    {" + ",\n     ".join(fields) + "},")
    h.add("};")


def receipt_info(r):
    u = r["usage"]
    return """{
        .status = %d,
        .job = %s,
        .requester_nonce = %s,
        .kernel_hash = %s,
        .input_root = %s,
        .output_root = %s,
        .output_len = %s,
        .result_hash = %s,
        .result_seal = %s,
        .usage = {%s, %d, %s, %s},
        .price = %s,
        .started_at = %s,
        .ended_at = %s,
        .evidence_hash = %s,
        .key_id = %s,
        .sequence = %s,
        .prev_hash = %s}""" % (
        r["status"],
        u64(r["job"]),
        byte_list(hex_bytes(r["requester_nonce"], 32)),
        byte_list(hex_bytes(r["kernel_hash"], 32)),
        byte_list(hex_bytes(r["input_root"], 32)),
        byte_list(hex_bytes(r["output_root"], 32)),
        u64(r["output_len"]),
        byte_list(hex_bytes(r["result_hash"], 32)),
        byte_list(hex_bytes(r["result_seal"], 32)),
        u64(u["gpu_time_us"]),
        u["dispatches"],
        u64(u["bytes_in"]),
        u64(u["bytes_out"]),
        u64(r["price"]),
        u64(r["started_at"]),
        u64(r["ended_at"]),
        byte_list(hex_bytes(r["evidence_hash"], 32)),
        byte_list(hex_bytes(r["key_id"], 16)),
        u64(r["sequence"]),
        byte_list(hex_bytes(r["prev_hash"], 32)),
    )


def kernel(k):
    spec = [x for pair in k["specialization"] for x in pair]
    push = hex_bytes(k["push_constants"])
    buffers = ", ".join(
        "{%d, %s, %s, %s}"
        % (b["binding"], u64(b["len"]), u64(b["init_len"]), "true" if b["readback"] else "false")
        for b in k["buffers"]
    )
    return """{
        .spirv_len = %d,
        .spirv_root = %s,
        .entry_point = %s,
        .specialization = %s,
        .specialization_count = %d,
        .push_constants = %s,
        .push_len = %d,
        .grid = %s,
        .buffers = {%s},
        .buffer_count = %d}""" % (
        k["spirv_len"],
        byte_list(hex_bytes(k["spirv_root"], 32)),
        c_string(k["entry_point"]),
        ints(spec) if spec else "{0}",
        len(k["specialization"]),
        byte_list(push),
        len(push),
        ints(k["grid"]),
        buffers,
        len(k["buffers"]),
    )


def receipts(h, vectors):
    entries = []
    for v in vectors:
        data = hex_bytes(v["hex"])
        arr = h.bytes_array(data)
        nonce = v.get("expected_nonce")
        fields = [
            ".name = %s" % c_string(v["name"]),
            ".bytes = %s" % arr,
            ".len = %d" % len(data),
            ".public_key = %s" % byte_list(hex_bytes(v["public_key"], 32)),
            ".chain_before = %s" % chain(v["chain_before"]),
            ".has_expected_nonce = %s" % ("true" if nonce else "false"),
            ".expected_nonce = %s" % byte_list(hex_bytes(nonce, 32) if nonce else b""),
            ".expect = %s" % expect(v),
        ]
        if "expect_error" not in v:
            fields.append(".info = %s" % receipt_info(v["receipt"]))
            fields.append(".hash = %s" % byte_list(hex_bytes(v["hash"], 32)))
            fields.append(".input_len = %d" % v["input_len"])
            fields.append(".kernel = %s" % kernel(v["kernel"]))
        entries.append(fields)
    h.add("static const receipt_vector receipt_vectors[] = {")
    for fields in entries:
        h.add("    {" + ",\n     ".join(fields) + "},")
    h.add("};")


def merkle(h, vectors):
    entries = []
    for v in vectors:
        leaves = b"".join(hex_bytes(x, 32) for x in v.get("leaves", []))
        path = b"".join(hex_bytes(x, 32) for x in v.get("path", []))
        fields = [
            ".name = %s" % c_string(v["name"]),
            ".length = %d" % v["length"],
            ".buffers = %s" % ints(v["buffers"]),
            ".buffer_count = %d" % len(v["buffers"]),
            ".root = %s" % byte_list(hex_bytes(v["root"], 32)),
            ".leaves = %s" % (h.bytes_array(leaves) if leaves else "NULL"),
            ".leaf_hash_count = %d" % (len(leaves) // 32),
            ".expect = %s" % expect(v),
        ]
        if "path" in v:
            fields += [
                ".is_proof = true",
                ".leaf_count = %s" % u64(v["leaf_count"]),
                ".chunk_index = %s" % u64(v["chunk_index"]),
                ".has_leaf_hash = %s" % ("true" if "leaf_hash" in v else "false"),
                ".leaf_hash = %s" % byte_list(hex_bytes(v["leaf_hash"], 32) if "leaf_hash" in v else b""),
                ".chunk_flip = %d" % v.get("chunk_flip", -1),
                ".index = %s" % u64(v["index"]),
                ".tree_size = %s" % u64(v["tree_size"]),
                ".path = %s" % (h.bytes_array(path) if path else "NULL"),
                ".path_len = %d" % (len(path) // 32),
            ]
        entries.append(fields)
    h.add("static const merkle_vector merkle_vectors[] = {")
    for fields in entries:
        h.add("    {" + ",\n     ".join(fields) + "},")
    h.add("};")


TYPES = """
#define VECTOR_MAX_BUFFERS 8

typedef struct {
    const char *name;
    uint8_t seed[32];
    uint8_t public_key[32];
    uint8_t key_id[16];
} key_vector;

typedef struct {
    const char *name;
    const uint8_t *bytes;
    size_t len;
    uint8_t challenge[32];
    /* TESSERA_OK for a valid vector; then `info` and `hash` are set. */
    tessera_result expect;
    tessera_evidence_info info;
    uint8_t hash[32];
} evidence_vector;

/* What a receipt's job dispatched: the arguments of tessera_kernel_hash. */
typedef struct {
    size_t spirv_len;
    uint8_t spirv_root[32];
    const char *entry_point;
    uint32_t specialization[2 * 16];
    size_t specialization_count;
    uint8_t push_constants[128];
    size_t push_len;
    uint32_t grid[3];
    tessera_buffer_spec buffers[VECTOR_MAX_BUFFERS];
    size_t buffer_count;
} kernel_vector;

typedef struct {
    const char *name;
    const uint8_t *bytes;
    size_t len;
    uint8_t public_key[32];
    tessera_chain_state chain_before;
    bool has_expected_nonce;
    uint8_t expected_nonce[32];
    /* TESSERA_OK for a valid vector; then the fields below are set. */
    tessera_result expect;
    tessera_receipt_info info;
    uint8_t hash[32];
    size_t input_len;
    kernel_vector kernel;
} receipt_vector;

typedef struct {
    const char *name;
    /* The generator's first `length` bytes, cut into `buffers` in order. */
    size_t length;
    size_t buffers[VECTOR_MAX_BUFFERS];
    size_t buffer_count;
    uint8_t root[32];
    /* Root vectors: every leaf hash, in order. */
    const uint8_t *leaves;
    size_t leaf_hash_count;
    /* Proof vectors (`is_proof`): TESSERA_OK or the expected failure. */
    tessera_result expect;
    bool is_proof;
    uint64_t leaf_count;
    uint64_t chunk_index;
    bool has_leaf_hash;
    uint8_t leaf_hash[32];
    /* Byte of the chunk to flip bit 0 of, or -1. */
    int chunk_flip;
    uint64_t index;
    uint64_t tree_size;
    const uint8_t *path;
    size_t path_len;
} merkle_vector;
"""


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: gen_vectors.py VECTORS_DIR OUTPUT_HEADER")
    src, dst = sys.argv[1], sys.argv[2]

    def load(name):
        with open(os.path.join(src, name), encoding="utf-8") as f:
            return json.load(f)

    h = Header()
    h.add("/* Generated by ffi/tests/c/gen_vectors.py from core/tests/vectors; do not edit. */")
    h.add("#ifndef TESSERA_TEST_VECTORS_H")
    h.add("#define TESSERA_TEST_VECTORS_H")
    h.add()
    h.add('#include "tessera.h"')
    h.add(TYPES)
    h.add("#ifndef TESSERA_VECTOR_TYPES_ONLY")
    h.add()
    keys(h, load("keys.json"))
    h.add()
    evidence(h, load("evidence.json"))
    h.add()
    receipts(h, load("receipts.json"))
    h.add()
    merkle(h, load("merkle.json"))
    h.add()
    h.add("#define VECTOR_COUNT(a) (sizeof(a) / sizeof((a)[0]))")
    h.add()
    h.add("#endif /* TESSERA_VECTOR_TYPES_ONLY */")
    h.add()
    h.add("#endif /* TESSERA_TEST_VECTORS_H */")
    with open(dst, "w", encoding="utf-8") as f:
        f.write("\n".join(h.lines) + "\n")


if __name__ == "__main__":
    main()
