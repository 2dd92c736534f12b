"""The shared test vectors (core/tests/vectors) through the Python API: keys,
evidence, receipts one by one and as a chain, the kernel, input, output,
result and seal hashes a receipt binds, Merkle roots, leaves and proofs.
Every result must be byte for byte what the vectors record, every tampered
vector must fail with its code. Argument errors follow."""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import pytest

import tessera
from conftest import generated, load_vectors

KEYS = load_vectors("keys")
EVIDENCE = load_vectors("evidence")
RECEIPTS = load_vectors("receipts")
MERKLE = load_vectors("merkle")

# The verification error each vector names, as its shared code.
ERRORS = {
    "Malformed": 401,
    "BadSignature": 402,
    "UnknownKey": 403,
    "WrongNonce": 404,
    "Replayed": 405,
    "OutOfOrder": 406,
    "BrokenChain": 407,
    "ChunkProofMismatch": 408,
}


def expect(v: Dict[str, Any]) -> int:
    return ERRORS[v["expect_error"]] if "expect_error" in v else 0


def h(text: str) -> bytes:
    return bytes.fromhex(text)


def chain(c: Dict[str, Any]) -> tessera.ChainState:
    return tessera.ChainState(c["next_sequence"], h(c["prev_hash"]))


def ids(vectors: List[Dict[str, Any]]) -> List[str]:
    return [str(v["name"]) for v in vectors]


# ----- keys ----------------------------------------------------------------------------


@pytest.mark.parametrize("v", KEYS, ids=ids(KEYS))
def test_key_vector(v: Dict[str, Any]) -> None:
    with tessera.Signer.from_seed(h(v["seed"])) as signer:
        assert signer.public_key == h(v["public_key"])
        assert signer.key_id == h(v["key_id"])
    assert tessera.key_id(h(v["public_key"])) == h(v["key_id"])


def test_generated_key() -> None:
    doc = tessera.generate_key()
    assert len(doc) == tessera.KEY_PKCS8_LEN
    pk = tessera.public_key(doc)
    with tessera.Signer.from_pkcs8(doc) as signer:
        assert signer.public_key == pk
        signature = signer.sign(b"message")
        assert len(signature) == 64
    assert tessera.generate_key() != doc
    bad = bytearray(doc)
    bad[0] ^= 0xFF
    with pytest.raises(tessera.ConfigError) as e:
        tessera.public_key(bad)
    assert e.value.code == 201 and e.value.name == "key_rejected"


# ----- evidence --------------------------------------------------------------------------


def check_evidence_info(got: tessera.EvidenceInfo, want: Dict[str, Any], key_id: str) -> None:
    assert got.challenge == h(want["challenge"])
    assert got.public_key == h(want["public_key"])
    assert got.key_id == h(key_id)
    assert got.agent_version == tuple(want["agent_version"])
    assert got.boot_id == h(want["boot_id"])
    assert got.issued_at == want["issued_at"]
    assert got.chain == chain(want["chain"])
    c = want["capabilities"]
    d = got.device
    assert d.name == c["name"]
    for name in ("vendor_id", "device_id", "driver_version", "api_version", "device_type", "features",
                 "device_local_bytes", "host_visible_bytes", "max_invocations", "max_shared_memory",
                 "max_storage_buffer_range", "subgroup_size", "copy_mbps", "fma_mflops"):
        assert getattr(d, name) == c[name], name
    assert d.max_workgroup_size == tuple(c["max_workgroup_size"])
    assert d.max_workgroup_count == tuple(c["max_workgroup_count"])
    assert got.enc_key == h(want["enc_key"])
    assert got.hardware_report_kind == want["hardware_report"]["kind"]
    assert got.hardware_report_hash == h(want["hardware_report"]["hash"])


@pytest.mark.parametrize("v", EVIDENCE, ids=ids(EVIDENCE))
def test_evidence_vector(v: Dict[str, Any]) -> None:
    data = h(v["hex"])
    challenge = h(v["challenge"])
    want = expect(v)
    if want == 0:
        info = tessera.verify_evidence(data, challenge)
        check_evidence_info(info, v["evidence"], v["key_id"])
        assert tessera.evidence_hash(data) == h(v["hash"])
        assert tessera.open_evidence(data) == info
    else:
        with pytest.raises(tessera.VerifyError) as e:
            tessera.verify_evidence(data, challenge)
        assert e.value.code == want
    # Opened without a challenge, only a challenge mismatch passes.
    if want in (0, 404):
        opened = tessera.open_evidence(data)
        assert (opened.challenge == challenge) == (want == 0)
    else:
        with pytest.raises(tessera.VerifyError) as e:
            tessera.open_evidence(data)
        assert e.value.code == want


# ----- receipts --------------------------------------------------------------------------


def check_receipt_info(got: tessera.ReceiptInfo, want: Dict[str, Any]) -> None:
    for name in ("status", "job", "output_len", "price", "started_at", "ended_at", "sequence"):
        assert getattr(got, name) == want[name], name
    for name in ("requester_nonce", "kernel_hash", "input_root", "output_root", "result_hash",
                 "result_seal", "evidence_hash", "key_id", "prev_hash"):
        assert getattr(got, name) == h(want[name]), name
    u = want["usage"]
    assert got.usage == tessera.Usage(u["gpu_time_us"], u["dispatches"], u["bytes_in"], u["bytes_out"])
    assert got.completed == (want["status"] == 0)


def layout(k: Dict[str, Any]) -> List[tessera.BufferSpec]:
    return [tessera.BufferSpec(b["binding"], b["len"], b["init_len"], b["readback"]) for b in k["buffers"]]


def check_bindings(v: Dict[str, Any]) -> None:
    """Everything a valid receipt binds, recomputed from its job."""
    k = v["kernel"]
    r = v["receipt"]
    buffers = layout(k)
    assert tessera.merkle_root(generated(k["spirv_len"])) == h(k["spirv_root"])
    assert tessera.kernel_hash(
        h(k["spirv_root"]), k["entry_point"], [tuple(p) for p in k["specialization"]],
        h(k["push_constants"]), k["grid"], buffers,
    ) == h(r["kernel_hash"])
    # Inputs: the generator's bytes cut by each buffer's initial length.
    data = generated(v["input_len"])
    inputs: List[bytes] = []
    at = 0
    for b in buffers:
        inputs.append(data[at:at + b.init_len])
        at += b.init_len
    assert at == v["input_len"]
    assert tessera.merkle_root_of_buffers(inputs) == h(r["input_root"])
    # Outputs: a completed job's read-back buffers; a failed job has none.
    readback = [b for b in buffers if b.readback]
    assert tessera.output_leaf_count(buffers) == sum(-(-b.len // tessera.CHUNK_SIZE) for b in readback)
    if r["status"] == 0:
        out = generated(sum(b.len for b in readback))
        outputs, at = [], 0
        for b in readback:
            outputs.append(out[at:at + b.len])
            at += b.len
        assert r["output_len"] == at
        root = tessera.merkle_root_of_buffers(outputs)
    else:
        assert r["output_len"] == 0
        root = tessera.merkle_root(b"")
    assert root == h(r["output_root"])
    assert tessera.result_hash(h(r["kernel_hash"]), h(r["input_root"]), h(r["output_root"]),
                               r["output_len"]) == h(r["result_hash"])
    assert tessera.result_seal(h(v["public_key"]), r["job"], h(r["result_hash"])) == h(r["result_seal"])
    evidence_a = next(e for e in EVIDENCE if e["name"] == "evidence-a")
    assert tessera.evidence_hash(h(evidence_a["hex"])) == h(r["evidence_hash"])
    assert tessera.key_id(h(v["public_key"])) == h(r["key_id"])


def signature_is_valid(code: int) -> bool:
    """Whether a receipt failing with `code` still verifies alone."""
    return code in (0, 405, 406, 407, 404)


@pytest.mark.parametrize("v", RECEIPTS, ids=ids(RECEIPTS))
def test_receipt_vector(v: Dict[str, Any]) -> None:
    data = h(v["hex"])
    pk = h(v["public_key"])
    want = expect(v)
    nonce = h(v["expected_nonce"]) if v.get("expected_nonce") else None
    before = chain(v["chain_before"])
    with tessera.ChainVerifier(pk, before) as verifier:
        if want == 0:
            info = verifier.verify_next(data, nonce)
            check_receipt_info(info, v["receipt"])
            assert verifier.chain == tessera.ChainState(before.next_sequence + 1, h(v["hash"]))
            assert tessera.receipt_hash(data) == h(v["hash"])
            check_bindings(v)
        else:
            with pytest.raises(tessera.VerifyError) as e:
                verifier.verify_next(data, nonce)
            assert e.value.code == want
            assert verifier.chain == before
    # Alone, without the chain.
    if signature_is_valid(want):
        info = tessera.verify_receipt(data, pk)
        if want == 0:
            check_receipt_info(info, v["receipt"])
    else:
        with pytest.raises(tessera.VerifyError) as e:
            tessera.verify_receipt(data, pk)
        assert e.value.code == want


def test_chain_of_valid_receipts() -> None:
    valid = [v for v in RECEIPTS if "expect_error" not in v]
    assert len(valid) == 5
    pk = h(valid[0]["public_key"])
    middle: Optional[tessera.ChainState] = None
    with tessera.ChainVerifier(pk) as verifier:
        for i, v in enumerate(valid):
            info = verifier.verify_next(h(v["hex"]), h(v["expected_nonce"]))
            assert info.sequence == i + 1
            # Twice is a replay, and changes nothing.
            with pytest.raises(tessera.VerifyError) as e:
                verifier.verify_next(h(v["hex"]))
            assert e.value.code == 405 and e.value.name == "verify_replayed"
            if i == 1:
                middle = verifier.chain
        assert verifier.chain == tessera.ChainState(6, h(valid[-1]["hash"]))
    assert middle is not None
    with tessera.ChainVerifier(pk, middle) as later:
        for v in valid[2:]:
            later.verify_next(h(v["hex"]))
        assert later.chain.next_sequence == 6
    # A receipt skipped is out of order; the chain waits where it was.
    with tessera.ChainVerifier(pk) as verifier:
        with pytest.raises(tessera.VerifyError) as e:
            verifier.verify_next(h(valid[1]["hex"]))
        assert e.value.code == 406
        assert verifier.chain == tessera.ChainState()


# ----- Merkle trees ------------------------------------------------------------------------


def nth_chunk(buffers: List[int], data: bytes, index: int) -> bytes:
    at = 0
    for size in buffers:
        chunks = -(-size // tessera.CHUNK_SIZE)
        if index < chunks:
            start = at + index * tessera.CHUNK_SIZE
            return data[start:min(start + tessera.CHUNK_SIZE, at + size)]
        index -= chunks
        at += size
    raise IndexError(index)


@pytest.mark.parametrize("v", MERKLE, ids=ids(MERKLE))
def test_merkle_vector(v: Dict[str, Any]) -> None:
    data = generated(v["length"])
    parts, at = [], 0
    for size in v["buffers"]:
        parts.append(data[at:at + size])
        at += size
    assert at == v["length"]
    assert tessera.merkle_root_of_buffers(parts) == h(v["root"])
    # Buffers as memoryviews and NumPy arrays give the same root, read in place.
    assert tessera.merkle_root_of_buffers([memoryview(p) for p in parts]) == h(v["root"])
    assert tessera.merkle_root_of_buffers([np.frombuffer(p, dtype=np.uint8) for p in parts]) == h(v["root"])
    if len(v["buffers"]) == 1:
        assert tessera.merkle_root(data) == h(v["root"])
        assert tessera.merkle_root(bytearray(data)) == h(v["root"])
    total = sum(-(-size // tessera.CHUNK_SIZE) for size in v["buffers"])
    leaves = [tessera.merkle_leaf_hash(nth_chunk(v["buffers"], data, c)) for c in range(total)]
    if "path" not in v:
        assert leaves == [h(x) for x in v["leaves"]]
        return
    specs = [tessera.BufferSpec(i, size, 0, True) for i, size in enumerate(v["buffers"])]
    leaf_count = tessera.output_leaf_count(specs)
    assert leaf_count == v["leaf_count"]
    chunk = bytearray(nth_chunk(v["buffers"], data, v["chunk_index"]))
    if "chunk_flip" in v:
        chunk[v["chunk_flip"]] ^= 0x01
    if "leaf_hash" in v:
        assert tessera.merkle_leaf_hash(chunk) == h(v["leaf_hash"])
    path = [h(x) for x in v["path"]]
    want = expect(v)
    if want == 0:
        tessera.verify_output_chunk(h(v["root"]), leaf_count, chunk, v["index"], v["tree_size"], path)
        # The path as one byte string, too.
        tessera.verify_output_chunk(h(v["root"]), leaf_count, chunk, v["index"], v["tree_size"], b"".join(path))
        # The same path, made here from the leaves (as a list and as bytes).
        assert tessera.merkle_prove(leaves, v["index"]) == path
        assert tessera.merkle_prove(b"".join(leaves), v["index"]) == path
    else:
        with pytest.raises(tessera.VerifyError) as e:
            tessera.verify_output_chunk(h(v["root"]), leaf_count, chunk, v["index"], v["tree_size"], path)
        assert e.value.code == want


# ----- arguments ------------------------------------------------------------------------------

R = next(v for v in RECEIPTS if "expect_error" not in v)
E = next(v for v in EVIDENCE if "expect_error" not in v)


@pytest.mark.parametrize("call", [
    lambda: tessera.key_id(b"\x00" * 31),
    lambda: tessera.key_id(b"\x00" * 33),
    lambda: tessera.Signer.from_seed(b"short"),
    lambda: tessera.verify_evidence(h(E["hex"]), b"\x00" * 31),
    lambda: tessera.verify_receipt(h(R["hex"]), b"\x00" * 16),
    lambda: tessera.ChainVerifier(b"\x00" * 8),
    lambda: tessera.result_hash(b"", b"\x00" * 32, b"\x00" * 32, 0),
    lambda: tessera.result_seal(b"\x00" * 32, -1, b"\x00" * 32),
    lambda: tessera.result_seal(b"\x00" * 32, 1 << 64, b"\x00" * 32),
    lambda: tessera.merkle_prove(b"\x00" * 33, 0),
    lambda: tessera.merkle_prove([b"\x00" * 32, b"\x00" * 31], 0),
    lambda: tessera.verify_output_chunk(b"\x00" * 32, 1, b"x", 0, 1, b"\x00" * 40),
    lambda: tessera.kernel_hash(b"\x00" * 32, "main", grid=(1, 1)),
    lambda: tessera.kernel_hash(b"\x00" * 32, "ma\0in"),
    lambda: tessera.kernel_hash(b"\x00" * 32, "main", specialization=[(1, 2, 3)]),  # type: ignore[list-item]
], ids=lambda _: "")
def test_bad_lengths_and_values(call: Any) -> None:
    """Fixed-size arguments are checked before C reads them."""
    with pytest.raises(tessera.ArgumentError) as e:
        call()
    assert e.value.code == 5 and isinstance(e.value, ValueError)


@pytest.mark.parametrize("call", [
    lambda: tessera.merkle_root("text"),  # type: ignore[arg-type]
    lambda: tessera.merkle_root(12),  # type: ignore[arg-type]
    lambda: tessera.receipt_hash(None),  # type: ignore[arg-type]
    lambda: tessera.verify_receipt(h(R["hex"]), "03a1" * 16),  # type: ignore[arg-type]
    lambda: tessera.merkle_root_of_buffers(b"abc"),  # type: ignore[arg-type]
    lambda: tessera.result_seal(b"\x00" * 32, "1", b"\x00" * 32),  # type: ignore[arg-type]
    lambda: tessera.ChainVerifier(h(R["public_key"]), chain=(1, bytes(32))),  # type: ignore[arg-type]
    lambda: tessera.output_leaf_count([(0, 10, 0, True)]),  # type: ignore[list-item]
], ids=lambda _: "")
def test_wrong_types(call: Any) -> None:
    with pytest.raises(tessera.ArgumentError) as e:
        call()
    assert e.value.code == 5


def test_codes_the_library_returns_for_arguments() -> None:
    """Limits the library checks itself: its own codes come through."""
    path = [bytes(32)] * (tessera.MAX_PROOF_LEN + 1)
    with pytest.raises(tessera.ArgumentError) as e:
        tessera.verify_output_chunk(bytes(32), 1, b"x", 0, 1, path)
    assert e.value.code == 5
    with pytest.raises(tessera.ArgumentError):
        tessera.merkle_prove([bytes(32)] * 2, 2)
    with pytest.raises(tessera.ArgumentError):
        tessera.kernel_hash(bytes(32), "e" * (tessera.MAX_ENTRY_POINT + 1))
    assert len(tessera.kernel_hash(bytes(32), "e" * tessera.MAX_ENTRY_POINT)) == 32
    with pytest.raises(tessera.ArgumentError):
        tessera.kernel_hash(bytes(32), "main", specialization=[(i, i) for i in range(17)])
    with pytest.raises(tessera.ArgumentError):
        tessera.kernel_hash(bytes(32), "main", push_constants=bytes(tessera.MAX_PUSH_CONSTANTS + 1))
    with pytest.raises(tessera.ArgumentError):
        tessera.kernel_hash(bytes(32), "main", buffers=[tessera.BufferSpec(i, 4) for i in range(9)])
    # Empty evidence is malformed, not an argument error.
    with pytest.raises(tessera.VerifyError) as v:
        tessera.verify_evidence(b"", bytes(32))
    assert v.value.code == 401


def test_non_contiguous_buffer_is_refused() -> None:
    strided = np.arange(64, dtype=np.uint8)[::2]
    with pytest.raises(tessera.ArgumentError):
        tessera.merkle_root(strided)
    assert tessera.merkle_root(np.ascontiguousarray(strided)) == tessera.merkle_root(bytes(strided))


def test_closed_chain_verifier() -> None:
    verifier = tessera.ChainVerifier(h(R["public_key"]))
    verifier.close()
    verifier.close()
    assert verifier.closed
    with pytest.raises(tessera.ClosedError) as e:
        verifier.verify_next(h(R["hex"]))
    assert e.value.code == 4 and isinstance(e.value, ValueError)
    with pytest.raises(tessera.ClosedError):
        _ = verifier.chain


