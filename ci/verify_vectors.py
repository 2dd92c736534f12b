#!/usr/bin/env python3
"""Independent checker of Tessera's attestation test vectors.

Reads core/tests/vectors/{keys,evidence,receipts,merkle,receipt_batches,e2e}.json
and checks every
vector from the byte layout in docs/PROTOCOL.md alone: COSE_Sign1 parsing,
Ed25519 signatures over the Sig_structure, key ids, every decoded field against
the readable form, receipt chain links, kernel hashes (buffer layout and
bindings included), receipt prices against the offer (a timeout is charged
the accepted quote, any other failure 0), result hashes and seals, Merkle roots (RFC 6962) and inclusion proofs (RFC 9162
verification, with the exact tree size a buffer layout gives), and batched
receipts (the signed batch statement, each receipt's place, sequence and
audit path, and the chain through receipts signed alone and in batches).
End-to-end sealed streams are opened (and sealed again, byte for byte) with
an independent HPKE (RFC 9180), the `pyhpke` package, and AES-256-GCM from
`cryptography`. Each tampered vector must fail with its `expect_error`.

Needs the `cryptography` and `pyhpke` packages (ci/python-deps.sh installs
them) and the standard library. Usage: python3 ci/verify_vectors.py [vectors-dir]
"""

import hashlib
import hmac
import json
import os
import struct
import sys

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pyhpke import AEADId, CipherSuite, KDFId, KEMId
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

CHUNK_SIZE = 8192
MAX_BINDINGS = 32
EVIDENCE_DOMAIN = b"tessera/evidence/v1"
RECEIPT_DOMAIN = b"tessera/receipt/v1"
BATCH_DOMAIN = b"tessera/batch/v1"
KEY_ID_DOMAIN = b"tessera/key-id/v1"
KERNEL_DOMAIN = b"tessera/kernel/v3"
RESULT_DOMAIN = b"tessera/result/v1"
SEAL_DOMAIN = b"tessera/seal/v1"
HARDWARE_NONCE_DOMAIN = b"tessera/hw-nonce/v1"
E2E_INFO_LABEL = b"tessera/e2e/v1"
E2E_JOB_LABEL = b"tessera/e2e/job"
E2E_TAG = 16
E2E_SEGMENT = 8 * CHUNK_SIZE
E2E_SEGMENT_PLAIN = E2E_SEGMENT - E2E_TAG
E2E_SUITE = CipherSuite.new(
    KEMId.DHKEM_X25519_HKDF_SHA256, KDFId.HKDF_SHA256, AEADId.EXPORT_ONLY
)

EVIDENCE_PAYLOAD_LEN = 354
RECEIPT_PAYLOAD_LEN = 350
BATCH_PAYLOAD_LEN = 61
MAX_BATCH = 256
MAX_BATCH_PATH = 8
STATUS_COMPLETED = 0
STATUS_TIMEOUT = 2
STATUS_NAMES = {
    0: "Completed",
    1: "Failed(KernelRejected)",
    2: "Failed(Timeout)",
    3: "Failed(DeadlineExceeded)",
    4: "Failed(DeviceLost)",
    5: "Failed(OutOfMemory)",
    6: "Failed(InputIntegrity)",
    7: "Failed(Host)",
}


class Fail(Exception):
    """A verification failure with its reason (a VerifyError variant name)."""

    def __init__(self, reason):
        super().__init__(reason)
        self.reason = reason


def sha256(*parts):
    h = hashlib.sha256()
    for p in parts:
        h.update(p)
    return h.digest()


def gen(n):
    """The vectors' data generator: byte i is (i * 31 + 7) mod 251."""
    return bytes((i * 31 + 7) % 251 for i in range(n))


def key_id(public_key):
    return sha256(KEY_ID_DOMAIN, public_key)[:16]


# ------------------------------------------------------------------ COSE --


def bstr_head(n):
    if n < 24:
        return bytes([0x40 | n])
    if n < 256:
        return bytes([0x58, n])
    return bytes([0x59]) + struct.pack(">H", n)


PROTECTED = bytes([0x43, 0xA1, 0x01, 0x27])  # bstr(h'A10127') = {1: -8}


def sig_structure(domain, payload):
    """CBOR of ["Signature1", protected, external_aad, payload] (RFC 9052 §4.4)."""
    return (
        bytes([0x84, 0x6A])
        + b"Signature1"
        + PROTECTED
        + bstr_head(len(domain))
        + domain
        + bstr_head(len(payload))
        + payload
    )


def parse_sign1(b, payload_len):
    """Returns (key id, payload, signature) of a COSE_Sign1 with a payload of
    exactly payload_len bytes, or raises Malformed."""
    head = bstr_head(payload_len)
    total = 2 + 4 + 3 + 16 + len(head) + payload_len + 2 + 64
    if len(b) != total:
        raise Fail("Malformed")
    if b[0:2] != b"\xd2\x84" or b[2:6] != PROTECTED or b[6:9] != b"\xa1\x04\x50":
        raise Fail("Malformed")
    at = 25 + len(head)
    if b[25:at] != head or b[at + payload_len : at + payload_len + 2] != b"\x58\x40":
        raise Fail("Malformed")
    return b[9:25], b[at : at + payload_len], b[at + payload_len + 2 :]


def check_signature(domain, kid, payload, signature, public_key):
    if kid != key_id(public_key):
        raise Fail("UnknownKey")
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(
            signature, sig_structure(domain, payload)
        )
    except (InvalidSignature, ValueError):
        raise Fail("BadSignature")


# --------------------------------------------------------------- readers --


class Reader:
    def __init__(self, b):
        self.b, self.at = b, 0

    def take(self, n):
        v = self.b[self.at : self.at + n]
        self.at += n
        return v

    def hex(self, n):
        return self.take(n).hex()

    def u(self, fmt):
        (v,) = struct.unpack_from("<" + fmt, self.b, self.at)
        self.at += struct.calcsize(fmt)
        return v


def decode_evidence(p):
    r = Reader(p)
    if r.u("B") != 3:
        raise Fail("Malformed")
    e = {"version": 3}
    e["challenge"] = r.hex(32)
    e["public_key"] = r.hex(32)
    e["agent_version"] = [r.u("H") for _ in range(3)]
    e["boot_id"] = r.hex(16)
    e["issued_at"] = r.u("Q")
    e["chain"] = {"next_sequence": r.u("Q"), "prev_hash": r.hex(32)}
    raw = r.take(64)
    name = raw.split(b"\x00", 1)[0]
    if any(raw[len(name) :]):
        raise Fail("Malformed")
    try:
        name = name.decode("utf-8")
    except UnicodeDecodeError:
        raise Fail("Malformed")
    c = {"name": name}
    for f in ("vendor_id", "device_id", "driver_version", "api_version"):
        c[f] = r.u("I")
    c["device_type"] = r.u("B")
    if c["device_type"] > 4:
        raise Fail("Malformed")
    c["features"] = r.u("I")
    c["device_local_bytes"] = r.u("Q")
    c["host_visible_bytes"] = r.u("Q")
    c["max_workgroup_size"] = [r.u("I") for _ in range(3)]
    c["max_workgroup_count"] = [r.u("I") for _ in range(3)]
    c["max_invocations"] = r.u("I")
    c["max_shared_memory"] = r.u("I")
    c["max_storage_buffer_range"] = r.u("Q")
    c["subgroup_size"] = r.u("I")
    c["copy_mbps"] = r.u("I")
    c["fma_mflops"] = r.u("I")
    e["capabilities"] = c
    e["enc_key"] = r.hex(32)
    kind = r.u("H")
    report_hash = r.hex(32)
    if kind == 0 and report_hash != "00" * 32:
        raise Fail("Malformed")  # a report hash without a report
    e["hardware_report"] = {"kind": kind, "hash": report_hash}
    assert r.at == EVIDENCE_PAYLOAD_LEN
    return e


def decode_receipt(p):
    r = Reader(p)
    if r.u("B") != 1:
        raise Fail("Malformed")
    status = r.u("B")
    if status not in STATUS_NAMES:
        raise Fail("Malformed")
    d = {"version": 1, "status": status, "status_name": STATUS_NAMES[status]}
    d["job"] = r.u("Q")
    for f in ("requester_nonce", "kernel_hash", "input_root", "output_root"):
        d[f] = r.hex(32)
    d["output_len"] = r.u("Q")
    d["result_hash"] = r.hex(32)
    d["result_seal"] = r.hex(32)
    d["usage"] = {
        "gpu_time_us": r.u("Q"),
        "dispatches": r.u("I"),
        "bytes_in": r.u("Q"),
        "bytes_out": r.u("Q"),
    }
    d["price"] = r.u("Q")
    d["started_at"] = r.u("Q")
    d["ended_at"] = r.u("Q")
    d["evidence_hash"] = r.hex(32)
    d["key_id"] = r.hex(16)
    d["sequence"] = r.u("Q")
    d["prev_hash"] = r.hex(32)
    assert r.at == RECEIPT_PAYLOAD_LEN
    return d


# -------------------------------------------------------------- verifiers --


def verify_evidence(b, challenge):
    kid, payload, sig = parse_sign1(b, EVIDENCE_PAYLOAD_LEN)
    e = decode_evidence(payload)
    check_signature(EVIDENCE_DOMAIN, kid, payload, sig, bytes.fromhex(e["public_key"]))
    if e["challenge"] != challenge.hex():
        raise Fail("WrongNonce")
    return e


def verify_receipt(b, public_key, next_sequence, prev_hash, nonce):
    kid, payload, sig = parse_sign1(b, RECEIPT_PAYLOAD_LEN)
    check_signature(RECEIPT_DOMAIN, kid, payload, sig, public_key)
    d = decode_receipt(payload)
    if d["key_id"] != kid.hex():
        raise Fail("UnknownKey")
    check_chain_rules(d, next_sequence, prev_hash, nonce)
    return d


def check_chain_rules(d, next_sequence, prev_hash, nonce):
    if d["sequence"] < next_sequence:
        raise Fail("Replayed")
    if d["sequence"] > next_sequence:
        raise Fail("OutOfOrder")
    if d["prev_hash"] != prev_hash.hex():
        raise Fail("BrokenChain")
    if nonce is not None and d["requester_nonce"] != nonce.hex():
        raise Fail("WrongNonce")


def decode_statement(p):
    r = Reader(p)
    if r.u("B") != 1:
        raise Fail("Malformed")
    s = {"version": 1, "key_id": r.hex(16), "first_sequence": r.u("Q"), "count": r.u("I")}
    s["root"] = r.hex(32)
    if not 1 <= s["count"] <= MAX_BATCH:
        raise Fail("Malformed")
    return s


def verify_batched(b, public_key, next_sequence, prev_hash, nonce):
    """A batched receipt (PROTOCOL.md, "Batched receipts"): returns the
    decoded receipt, the decoded statement, the index, the path and the link
    the next receipt names."""
    statement_len = 2 + 4 + 3 + 16 + 2 + BATCH_PAYLOAD_LEN + 2 + 64
    if len(b) < statement_len + 5 + RECEIPT_PAYLOAD_LEN:
        raise Fail("Malformed")
    path_len = b[statement_len + 4]
    if path_len > MAX_BATCH_PATH or len(b) != statement_len + 5 + 32 * path_len + RECEIPT_PAYLOAD_LEN:
        raise Fail("Malformed")
    kid, statement, sig = parse_sign1(b[:statement_len], BATCH_PAYLOAD_LEN)
    check_signature(BATCH_DOMAIN, kid, statement, sig, public_key)
    s = decode_statement(statement)
    if s["key_id"] != kid.hex():
        raise Fail("UnknownKey")
    (index,) = struct.unpack("<I", b[statement_len : statement_len + 4])
    at = statement_len + 5
    path = [b[at + 32 * i : at + 32 * (i + 1)] for i in range(path_len)]
    payload = b[at + 32 * path_len :]
    if index >= s["count"]:
        raise Fail("Malformed")
    d = decode_receipt(payload)
    if d["key_id"] != s["key_id"]:
        raise Fail("UnknownKey")
    if d["sequence"] != s["first_sequence"] + index:
        raise Fail("Malformed")
    if not verify_inclusion(bytes.fromhex(s["root"]), leaf_hash(payload), index, s["count"], path):
        raise Fail("BadSignature")
    check_chain_rules(d, next_sequence, prev_hash, nonce)
    return d, s, index, path, sha256(payload)


# ---------------------------------------------------------------- merkle --


def leaf_hash(chunk):
    return sha256(b"\x00", chunk)


def node_hash(left, right):
    return sha256(b"\x01", left, right)


def split_point(n):
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def mth(leaves):
    """RFC 6962 §2.1 Merkle Tree Hash over leaf hashes."""
    if not leaves:
        return sha256(b"")
    if len(leaves) == 1:
        return leaves[0]
    k = split_point(len(leaves))
    return node_hash(mth(leaves[:k]), mth(leaves[k:]))


def audit_path(m, leaves):
    """RFC 6962 §2.1.1 PATH(m, D[n]), leaf level first."""
    if len(leaves) <= 1:
        return []
    k = split_point(len(leaves))
    if m < k:
        return audit_path(m, leaves[:k]) + [mth(leaves[k:])]
    return audit_path(m - k, leaves[k:]) + [mth(leaves[:k])]


def chunk_leaves(buffers):
    return [
        leaf_hash(buf[i : i + CHUNK_SIZE])
        for buf in buffers
        for i in range(0, len(buf), CHUNK_SIZE)
    ]


def root_of(data):
    return mth(chunk_leaves([data]))


def split(data, lens):
    """data cut into consecutive pieces of lens bytes."""
    out, at = [], 0
    for n in lens:
        out.append(data[at : at + n])
        at += n
    expect(at == len(data), "buffer lengths add up to the data")
    return out


def chunk_count(n):
    return -(-n // CHUNK_SIZE)


def output_leaf_count(buffers):
    """Leaves of a job's output tree: the chunks of each read-back buffer."""
    return sum(chunk_count(b["len"]) for b in buffers if b["readback"])


def verify_inclusion(root, leaf, index, tree_size, path):
    """RFC 9162 §2.1.3.2."""
    if index >= tree_size:
        return False
    fn, sn, r = index, tree_size - 1, leaf
    for p in path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def verify_output_chunk(root, leaf_count, chunk, index, tree_size, path):
    """A chunk of a receipt's output: the proof's tree size must be exactly
    the leaf count of the job's read-back buffers, then RFC 9162."""
    if tree_size != leaf_count:
        raise Fail("ChunkProofMismatch")
    if not verify_inclusion(root, leaf_hash(chunk), index, tree_size, path):
        raise Fail("ChunkProofMismatch")


# ----------------------------------------------------------------- checks --


def kernel_hash(k):
    h = hashlib.sha256()
    h.update(KERNEL_DOMAIN)
    h.update(bytes.fromhex(k["spirv_root"]))
    entry = k["entry_point"].encode("utf-8")
    h.update(struct.pack("<I", len(entry)) + entry)
    h.update(struct.pack("<I", len(k["specialization"])))
    for ident, value in k["specialization"]:
        h.update(struct.pack("<II", ident, value))
    push = bytes.fromhex(k["push_constants"])
    h.update(struct.pack("<I", len(push)) + push)
    h.update(struct.pack("<III", *k["grid"]))
    h.update(struct.pack("<I", len(k["buffers"])))
    for b in k["buffers"]:
        h.update(
            struct.pack("<IQQB", b["binding"], b["len"], b["init_len"], int(b["readback"]))
        )
    return h.digest()


def expect(cond, what):
    if not cond:
        raise AssertionError(what)


def expect_fail(reason, fn, *args):
    try:
        fn(*args)
    except Fail as f:
        expect(f.reason == reason, "failed with %s, expected %s" % (f.reason, reason))
        return
    raise AssertionError("verified, expected %s" % reason)


def check_key(v, ctx):
    seed = bytes.fromhex(v["seed"])
    pk = Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes_raw()
    expect(pk.hex() == v["public_key"], "public key from seed")
    expect(v["hex"] == v["public_key"], "hex is the public key")
    expect(key_id(pk).hex() == v["key_id"], "key id")
    ctx["keys"][v["name"]] = pk


def check_evidence(v, ctx):
    b = bytes.fromhex(v["hex"])
    challenge = bytes.fromhex(v["challenge"])
    if "expect_error" in v:
        expect_fail(v["expect_error"], verify_evidence, b, challenge)
    else:
        e = verify_evidence(b, challenge)
        expect(e == v["evidence"], "decoded fields differ from the readable form")
        pk = ctx["keys"][v["key"]]
        expect(e["public_key"] == pk.hex(), "evidence of the named key")
        expect(b[9:25].hex() == v["key_id"] == key_id(pk).hex(), "header key id")
        expect(b[-64:].hex() == v["signature"], "signature")
        expect(sha256(b).hex() == v["hash"], "hash")
        if "hardware_report_bytes" in v:
            report = bytes.fromhex(v["hardware_report_bytes"])
            expect(e["hardware_report"]["hash"] == sha256(report).hex(), "report hash")
            nonce = sha256(HARDWARE_NONCE_DOMAIN, bytes.fromhex(e["challenge"]),
                           bytes.fromhex(e["public_key"]), bytes.fromhex(e["enc_key"]))
            expect(nonce.hex() == v["hardware_report_nonce"], "hardware report nonce")
        ctx["evidence"][v["name"]] = v["hash"]


def verify_args(v):
    """(bytes, public key, next sequence, previous hash, nonce or None) of a
    receipt vector: what its verification is given."""
    before = v["chain_before"]
    nonce = v["expected_nonce"]
    return (
        bytes.fromhex(v["hex"]),
        bytes.fromhex(v["public_key"]),
        before["next_sequence"],
        bytes.fromhex(before["prev_hash"]),
        None if nonce is None else bytes.fromhex(nonce),
    )


def check_receipt(v, ctx):
    args = verify_args(v)
    b, pk = args[0], args[1]
    if "expect_error" in v:
        expect_fail(v["expect_error"], verify_receipt, *args)
    else:
        d = verify_receipt(*args)
        expect(b[-64:].hex() == v["signature"], "signature")
        expect(sha256(b).hex() == v["hash"], "hash")
        check_receipt_content(v, d, pk, ctx)
        ctx["chain"].append((b, pk, v["hash"]))


def check_receipt_content(v, d, pk, ctx):
    """What a valid receipt vector's receipt binds, recomputed from its inputs."""
    r = v["receipt"]
    expect(d == r, "decoded fields differ from the readable form")
    expect(pk == ctx["keys"][v["key"]], "receipt of the named key")
    # What the receipt binds, recomputed from its inputs.
    k = v["kernel"]
    expect(root_of(gen(k["spirv_len"])).hex() == k["spirv_root"], "SPIR-V root")
    kh = kernel_hash(k)
    expect(kh.hex() == r["kernel_hash"], "kernel hash")
    # Buffer contents: the generator's bytes, cut in buffer order, inputs
    # by init_len and outputs (of a completed job) by len.
    bufs = k["buffers"]
    bindings = [b["binding"] for b in bufs]
    expect(all(0 <= n < MAX_BINDINGS for n in bindings), "bindings below 32")
    expect(len(set(bindings)) == len(bindings), "bindings distinct")
    init_lens = [b["init_len"] for b in bufs]
    expect(all(b["init_len"] <= b["len"] for b in bufs), "init_len <= len")
    expect(v["input_len"] == sum(init_lens), "input length is the layout's")
    in_root = mth(chunk_leaves(split(gen(v["input_len"]), init_lens)))
    if r["status"] == 0:
        out_lens = [b["len"] for b in bufs if b["readback"]]
        expect(r["output_len"] == sum(out_lens), "output length is the layout's")
    else:
        out_lens = []
        expect(r["output_len"] == 0, "no output for a failed job")
    out_root = mth(chunk_leaves(split(gen(r["output_len"]), out_lens)))
    usage = r["usage"]
    expect(
        usage["bytes_in"] == k["spirv_len"] + v["input_len"],
        "bytes in: the kernel and the initial data",
    )
    expect(usage["bytes_out"] == r["output_len"], "bytes out: the output")
    expect(in_root.hex() == r["input_root"], "input root")
    expect(out_root.hex() == r["output_root"], "output root")
    result = sha256(
        RESULT_DOMAIN, kh, in_root, out_root, struct.pack("<Q", r["output_len"])
    )
    expect(result.hex() == r["result_hash"], "result hash")
    seal = sha256(SEAL_DOMAIN, pk, struct.pack("<Q", r["job"]), result)
    expect(seal.hex() == r["result_seal"], "result seal")
    expect(r["evidence_hash"] in ctx["evidence"].values(), "evidence hash")
    check_price(r, v["offer"])


def check_batch_vector(v, ctx):
    args = verify_args(v)
    b, pk = args[0], args[1]
    verify = verify_batched if v["form"] == "batched" else verify_receipt
    if "expect_error" in v:
        expect_fail(v["expect_error"], verify, *args)
        return
    if v["form"] == "batched":
        d, s, index, path, link = verify(*args)
        expect(s == v["statement"], "decoded statement differs from the readable form")
        expect(index == v["index"], "index")
        expect([p.hex() for p in path] == v["path"], "path")
    else:
        d = verify(*args)
        link = sha256(b)
    expect(link.hex() == v["hash"], "link")
    check_receipt_content(v, d, pk, ctx)
    ctx["batch_chain"].append((v["form"], b, pk))


def check_batch_chain(ctx):
    """The valid vectors of receipt_batches.json, verified in a row, form one
    chain from sequence 1 through receipts alone and batched."""
    next_sequence, prev = 1, bytes(32)
    for form, b, pk in ctx["batch_chain"]:
        if form == "batched":
            link = verify_batched(b, pk, next_sequence, prev, None)[4]
        else:
            verify_receipt(b, pk, next_sequence, prev, None)
            link = sha256(b)
        next_sequence, prev = next_sequence + 1, link
    expect(len(ctx["batch_chain"]) >= 4, "a chain of at least 4 receipts")


def check_price(r, offer):
    """The price rules a coordinator checks against the offer it made and the
    quote it accepted (PROTOCOL.md, "Offers and pricing")."""
    expect(offer["quote"] <= offer["max_price"], "the quote is within the maximum")
    status = r["status"]
    if status == STATUS_COMPLETED:
        expect(r["price"] <= offer["max_price"], "a completed job's price within the maximum")
    elif status == STATUS_TIMEOUT:
        expect(r["price"] == offer["quote"], "a timed-out job is charged its quote")
        expect(
            r["usage"]["gpu_time_us"] <= offer["deadline_ms"] * 1000,
            "a timed-out job is metered to its deadline at most",
        )
    else:
        expect(r["price"] == 0, "a failed job (other than a timeout) is charged 0")


def check_chain(ctx):
    """The valid receipts, verified in a row, form one chain from sequence 1."""
    next_sequence, prev = 1, bytes(32)
    for b, pk, h in ctx["chain"]:
        verify_receipt(b, pk, next_sequence, prev, None)
        next_sequence, prev = next_sequence + 1, bytes.fromhex(h)
    expect(len(ctx["chain"]) >= 3, "a chain of at least 3 receipts")


def check_merkle(v, ctx):
    data = gen(v["length"])
    bufs = split(data, v["buffers"])
    leaves = chunk_leaves(bufs)
    root = mth(leaves)
    expect(root.hex() == v["root"], "root")
    if "path" not in v:
        expect([l.hex() for l in leaves] == v["leaves"], "leaf hashes")
        expect(root.hex() == v["hex"], "hex is the root")
        return
    # A proof vector: its buffers are a job's read-back buffers.
    leaf_count = output_leaf_count([{"len": n, "readback": True} for n in v["buffers"]])
    expect(leaf_count == len(leaves) == v["leaf_count"], "leaf count")
    path = [bytes.fromhex(p) for p in v["path"]]
    expect(b"".join(path).hex() == v["hex"], "hex is the path")
    chunks = [b[i : i + CHUNK_SIZE] for b in bufs for i in range(0, len(b), CHUNK_SIZE)]
    chunk = bytearray(chunks[v["chunk_index"]])
    if "chunk_flip" in v:
        chunk[v["chunk_flip"]] ^= 0x01
    args = (root, leaf_count, bytes(chunk), v["index"], v["tree_size"], path)
    if "expect_error" in v:
        expect_fail(v["expect_error"], verify_output_chunk, *args)
    else:
        expect(leaf_hash(chunk).hex() == v["leaf_hash"], "leaf hash")
        expect(v["tree_size"] == len(leaves), "tree size")
        expect(path == audit_path(v["index"], leaves), "path is RFC 6962 PATH")
        verify_output_chunk(*args)


def e2e_stream_key(ctx, job, stream):
    """A stream's AES-256-GCM key and base nonce: the job's key and base
    nonce, exported from the HPKE context under the job's bytes, the base
    nonce XOR the big-endian stream number in its first four bytes
    ("End-to-end sealing")."""
    okm = ctx.export(E2E_JOB_LABEL + job, 44)
    base = bytes(a ^ b for a, b in zip(okm[32:], struct.pack(">I", stream) + bytes(8)))
    return AESGCM(okm[:32]), base


def e2e_nonce(base, index):
    """RFC 9180's ComputeNonce: the base XOR the big-endian index."""
    return bytes(a ^ b for a, b in zip(base, index.to_bytes(12, "big")))


def e2e_segments(plain_len):
    return -(-plain_len // E2E_SEGMENT_PLAIN)


def e2e_open(ctx, job, stream, plain_len, sealed):
    aead, base = e2e_stream_key(ctx, job, stream)
    n = e2e_segments(plain_len)
    if len(sealed) != plain_len + E2E_TAG * n:
        raise Fail("BadLength")
    aad = struct.pack("<Q", plain_len)
    out = b""
    for i in range(n):
        seg = sealed[i * E2E_SEGMENT:(i + 1) * E2E_SEGMENT]
        try:
            out += aead.decrypt(e2e_nonce(base, i), seg, aad)
        except InvalidTag:
            raise Fail("Forged")
    return out


def e2e_seal(ctx, job, stream, plain):
    aead, base = e2e_stream_key(ctx, job, stream)
    aad = struct.pack("<Q", len(plain))
    return b"".join(
        aead.encrypt(e2e_nonce(base, i), plain[i * E2E_SEGMENT_PLAIN:(i + 1) * E2E_SEGMENT_PLAIN], aad)
        for i in range(e2e_segments(len(plain)))
    )


E2E_RESULT_KEY_STREAM = 0xFFFFFFFF
E2E_PUSH_CONSTANTS_STREAM = 0xFFFFFFFE
SEALED_KERNEL_DOMAIN = b"tessera/kernel/sealed/v1"
BINDING_DOMAIN = b"tessera/e2e/bind/v1"


def e2e_plain_len(n):
    full, rest = divmod(n, E2E_SEGMENT)
    if rest and rest <= E2E_TAG:
        raise Fail("BadLength")
    return full * E2E_SEGMENT_PLAIN + (rest - E2E_TAG if rest else 0)


def check_sealed_job(v, ctx):
    """A whole sealed job ("Sealed jobs"): the provider opens what was sent
    with its session key, the requester opens the outputs with its key, and
    the receipt's kernel hash and keyed result hash are recomputed."""
    kem = E2E_SUITE.kem
    provider = kem.derive_key_pair(bytes.fromhex(v["provider_ikm"]))
    requester = kem.derive_key_pair(bytes.fromhex(v["requester_ikm"]))
    nonce = bytes.fromhex(v["requester_nonce"])
    device = bytes.fromhex(v["device_key"])
    a = v["assignment"]
    sealing = a["sealing"]
    expect(sealing["requester_key"] == requester.public_key.to_public_bytes().hex(),
           "outputs sealed to the requester's key")
    # The requester's context, from its ephemeral IKM: the same enc.
    info0 = E2E_INFO_LABEL + b"\x00" + device
    eph = kem.derive_key_pair(bytes.fromhex(v["requester_context_ikm"]))
    enc0, _ = E2E_SUITE.create_sender_context(provider.public_key, info0, eks=eph)
    expect(enc0.hex() == sealing["enc"], "the requester context's enc")
    # The job's binding: its clear part (requester key, kernel sealed or
    # not, the dispatch and layout; the clear kernel's root, zeros if sealed).
    layout = kernel_hash(dict(
        a["kernel"], push_constants="",
        spirv_root="00" * 32 if sealing["kernel_sealed"] else a["kernel"]["spirv_root"]))
    binding = sha256(BINDING_DOMAIN, bytes.fromhex(sealing["requester_key"]),
                     bytes([int(sealing["kernel_sealed"])]), layout)
    expect(binding.hex() == v["binding"], "the job's binding")
    job = nonce + binding
    # The provider's side: the result key, the push constants, the kernel,
    # the inputs, each under the job's bytes.
    ctx0 = E2E_SUITE.create_recipient_context(enc0, provider.private_key, info0)
    sealed_key = bytes.fromhex(sealing["result_key"]) + bytes.fromhex(sealing["result_key_tag"])
    result_key = e2e_open(ctx0, job, E2E_RESULT_KEY_STREAM, 32, sealed_key)
    expect(result_key.hex() == v["result_key"], "the sealed result key")
    sealed_push = bytes.fromhex(a["kernel"]["push_constants"])
    push = (e2e_open(ctx0, job, E2E_PUSH_CONSTANTS_STREAM, e2e_plain_len(len(sealed_push)),
                     sealed_push) if sealed_push else b"")
    expect(push.hex() == v["push_constants_plain"], "the sealed push constants")
    kernel_sent = bytes.fromhex(v["kernel_sent"])
    expect(len(kernel_sent) == a["kernel_len"], "kernel length as sent")
    kernel = e2e_open(ctx0, job, 0, e2e_plain_len(len(kernel_sent)), kernel_sent)
    expect(kernel.hex() == v["kernel_plain"], "the kernel opens")
    expect(root_of(kernel_sent).hex() == a["kernel"]["spirv_root"], "kernel root as sent")
    inputs = []
    for i, sent in enumerate(v["inputs_sent"]):
        sent = bytes.fromhex(sent)
        plain = e2e_open(ctx0, job, i + 1, e2e_plain_len(len(sent)), sent) if sent else b""
        expect(plain.hex() == v["inputs_plain"][i], "input %d opens" % i)
        inputs.append(plain)
    expect(mth(chunk_leaves([bytes.fromhex(x) for x in v["inputs_sent"]])).hex()
           == a["inputs_root"], "inputs root as sent")
    # The requester's side: the outputs, the first led by the output
    # context's encapsulated key and the job's salt.
    outs = [bytes.fromhex(x) for x in v["outputs_sent"]]
    readback = [b for b in a["kernel"]["buffers"] if b["readback"]]
    expect(len(outs) == len(readback), "one output per read-back buffer")
    info1 = E2E_INFO_LABEL + b"\x01" + device + enc0
    eph1 = kem.derive_key_pair(bytes.fromhex(v["output_context_ikm"]))
    enc1, _ = E2E_SUITE.create_sender_context(requester.public_key, info1, eks=eph1)
    expect(outs[0][:32] == enc1, "the output context's enc leads the first output")
    salt = outs[0][32:48]
    ctx1 = E2E_SUITE.create_recipient_context(enc1, requester.private_key, info1)
    outputs = []
    for k, (o, b) in enumerate(zip(outs, readback)):
        expect(len(o) == b["len"], "output %d is its declared length" % k)
        body = o[48:] if k == 0 else o
        stream = a["kernel"]["buffers"].index(b)
        outputs.append(e2e_open(ctx1, job + salt, stream, e2e_plain_len(len(body)), body))
    expect([o.hex() for o in outputs] == v["outputs_plain"], "the outputs open")
    # The receipt's kernel hash binds the sealing.
    wire_hash = kernel_hash(a["kernel"])
    sealed_hash = sha256(SEALED_KERNEL_DOMAIN, wire_hash, bytes.fromhex(sealing["enc"]),
                         bytes.fromhex(sealing["requester_key"]),
                         bytes([int(sealing["kernel_sealed"])]),
                         bytes.fromhex(sealing["result_key"]),
                         bytes.fromhex(sealing["result_key_tag"]))
    expect(sealed_hash.hex() == v["kernel_hash"], "sealed kernel hash")
    # The keyed result hash over the plaintext.
    plain_kernel = dict(a["kernel"], spirv_root=root_of(kernel).hex(), push_constants=push.hex())
    preimage = (RESULT_DOMAIN + kernel_hash(plain_kernel) + mth(chunk_leaves(inputs))
                + mth(chunk_leaves(outputs)) + struct.pack("<Q", sum(len(o) for o in outputs)))
    mac = hmac.new(result_key, preimage, hashlib.sha256).digest()
    expect(mac.hex() == v["result_hash"], "keyed result hash")


def check_e2e(v, ctx):
    if v["name"] == "sealed-job":
        return check_sealed_job(v, ctx)
    kem = E2E_SUITE.kem
    recipient = kem.derive_key_pair(bytes.fromhex(v["recipient_ikm"]))
    pk = recipient.public_key.to_public_bytes()
    expect(pk.hex() == v["recipient_public_key"], "recipient key is DeriveKeyPair(ikm)")
    info = E2E_INFO_LABEL + bytes([v["direction"]]) + bytes.fromhex(v["device_key"])
    if v["direction"] == 1:
        info += bytes.fromhex(v["requester_enc"])
    expect(info.hex() == v["info"], "info is label, direction, device key (, requester enc)")
    job = bytes.fromhex(v["job"])
    # The sender's side, from the ephemeral IKM: the same encapsulated key.
    ephemeral = kem.derive_key_pair(bytes.fromhex(v["ephemeral_ikm"]))
    enc, sender = E2E_SUITE.create_sender_context(recipient.public_key, info, eks=ephemeral)
    expect(enc.hex() == v["enc"], "enc from the ephemeral IKM")
    receiver = E2E_SUITE.create_recipient_context(enc, recipient.private_key, info)

    def open_all():
        for s in v["streams"]:
            sealed = bytes.fromhex(s["sealed"])
            plain = e2e_open(receiver, job, s["stream"], s["plain_len"], sealed)
            expect(plain == gen(s["plain_len"]), "opens to the generator's bytes")
            expect(e2e_seal(sender, job, s["stream"], plain) == sealed, "seals to the same bytes")

    if "expect_error" in v:
        expect_fail(v["expect_error"], open_all)
    else:
        open_all()


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    default = os.path.join(here, "..", "core", "tests", "vectors")
    directory = sys.argv[1] if len(sys.argv) > 1 else default
    ctx = {"keys": {}, "evidence": {}, "chain": [], "batch_chain": []}
    passed = failed = 0

    def run(label, fn, *args):
        nonlocal passed, failed
        try:
            fn(*args)
            passed += 1
        except Exception as e:  # every failure is reported, none stops the run
            failed += 1
            print("FAIL %s: %s: %s" % (label, type(e).__name__, e))

    for file, check in (
        ("keys.json", check_key),
        ("evidence.json", check_evidence),
        ("receipts.json", check_receipt),
        ("merkle.json", check_merkle),
        ("receipt_batches.json", check_batch_vector),
        ("e2e.json", check_e2e),
    ):
        with open(os.path.join(directory, file)) as f:
            vectors = json.load(f)
        for v in vectors:
            run("%s %s" % (file, v.get("name", "?")), check, v, ctx)
        if file == "receipts.json":
            run("receipts.json chain in a row", check_chain, ctx)
        if file == "receipt_batches.json":
            run("receipt_batches.json chain in a row", check_batch_chain, ctx)
    print("attest-vectors: %d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
