"""Verification: signed evidence, receipts and their chain, Merkle trees and
proofs, and the hashes a receipt binds. Everything here is a pure function
of its arguments (the chain verifier excepted), safe from any thread."""

from __future__ import annotations

import dataclasses
import struct
from dataclasses import dataclass
from typing import Any, List, Optional, Sequence, Tuple, Union

from ._errors import INVALID_ARGUMENT, ArgumentError, ArgumentTypeError, check
from ._ffi import Buffer, c_string, ffi, fixed, integer, lib, optional_fixed, out_bytes, readable, u32_triple
from ._managed import Managed
from ._types import MAX_PROOF_LEN, BufferSpec, ChainState, Device, Usage, buffer_specs


@dataclass(frozen=True)
class EvidenceInfo:
    """What verified evidence says: the challenge it answers, the device key
    that signed it (and its id), the agent's version and boot id, when it
    was made, where the key's receipt chain stood, the device, the
    session's encryption key (all zeros: the provider takes no sealed
    jobs), and the hardware attestation report it names (kind 0: none; the
    kinds are `HARDWARE_REPORT_*`)."""

    challenge: bytes
    public_key: bytes
    key_id: bytes
    agent_version: Tuple[int, int, int]
    boot_id: bytes
    issued_at: int
    chain: ChainState
    device: Device
    enc_key: bytes
    hardware_report_kind: int
    hardware_report_hash: bytes

    @classmethod
    def _from_c(cls, c: Any) -> "EvidenceInfo":
        return cls(
            challenge=out_bytes(c.challenge),
            public_key=out_bytes(c.public_key),
            key_id=out_bytes(c.key_id),
            agent_version=(int(c.agent_version[0]), int(c.agent_version[1]), int(c.agent_version[2])),
            boot_id=out_bytes(c.boot_id),
            issued_at=int(c.issued_at),
            chain=ChainState._from_c(c.chain),
            device=Device._from_c(c.device),
            enc_key=out_bytes(c.enc_key),
            hardware_report_kind=int(c.hardware_report_kind),
            hardware_report_hash=out_bytes(c.hardware_report_hash),
        )


@dataclass(frozen=True)
class ReceiptInfo:
    """A verified receipt. `status` is 0 (`FailReason.COMPLETED`) for a
    completed job, else the wire fail reason."""

    status: int
    job: int
    requester_nonce: bytes
    kernel_hash: bytes
    input_root: bytes
    output_root: bytes
    output_len: int
    result_hash: bytes
    result_seal: bytes
    usage: Usage
    price: int
    started_at: int
    ended_at: int
    evidence_hash: bytes
    key_id: bytes
    sequence: int
    prev_hash: bytes

    @property
    def completed(self) -> bool:
        """Whether the kernel ran and its outputs were returned."""
        return self.status == 0

    @classmethod
    def _from_c(cls, c: Any) -> "ReceiptInfo":
        # The struct read in one call (receipt verification is a settlement
        # service's hot path: field by field through cffi cost more than the
        # Python around the signature check).
        v = _RECEIPT_INFO.unpack_from(ffi.buffer(c))
        # The dataclass's fields are the struct's, in order, without `size`;
        # set straight into the instance's dictionary (a frozen dataclass's
        # __init__ costs a third of what the binding adds to the call).
        usage = object.__new__(Usage)
        usage.__dict__.update(zip(_USAGE_NAMES, v[10:14]))
        info = object.__new__(cls)
        info.__dict__.update(zip(_RECEIPT_NAMES, (*v[1:10], usage, *v[14:])))
        return info


def _flat_layout(ctype: str) -> str:
    """A `struct` format reading a C struct of integers and byte arrays
    (nested structs flattened) in one call: native alignment lays fields out
    as the C compiler does, and each field's offset is checked against the
    declarations, so a layout `struct` would read otherwise fails import."""
    codes = {"uint8_t": "B", "uint16_t": "H", "uint32_t": "I", "uint64_t": "Q", "size_t": "N"}
    fmt = "@"

    def add(ct: str, base: int) -> None:
        nonlocal fmt
        for name, field in ffi.typeof(ct).fields:
            t = field.type
            at = base + field.offset
            if t.kind == "struct":
                add(t.cname, at)
                continue
            if t.kind == "array" and t.item.cname == "uint8_t":
                code = "%ds" % t.length
            elif t.kind == "primitive" and t.cname in codes:
                code = codes[t.cname]
            else:
                raise ImportError("tessera: cannot lay out %s.%s (%s)" % (ct, name, t.cname))
            fmt += code
            # struct pads each integer to its alignment as C does: checked.
            if struct.calcsize(fmt) - struct.calcsize("@" + code) != at:
                raise ImportError("tessera: %s.%s is not where struct puts it" % (ct, name))

    add(ctype, 0)
    return fmt


# size, status, job, ..., usage (4 values), ..., prev_hash
_RECEIPT_INFO = struct.Struct(_flat_layout("tessera_receipt_info"))
_RECEIPT_NAMES = tuple(f.name for f in dataclasses.fields(ReceiptInfo))
_USAGE_NAMES = tuple(f.name for f in dataclasses.fields(Usage))
# The struct's fields, in order, are the dataclasses' (checked once here).
_C_NAMES = [n for n, _ in ffi.typeof("tessera_receipt_info").fields]
if (_C_NAMES[1:] != list(_RECEIPT_NAMES)
        or [n for n, _ in ffi.typeof("tessera_usage").fields] != list(_USAGE_NAMES)):
    raise ImportError("tessera: ReceiptInfo's fields are not tessera_receipt_info's")


def _evidence_info() -> Any:
    info = ffi.new("tessera_evidence_info *")
    info.size = ffi.sizeof("tessera_evidence_info")
    return info


_RECEIPT_INFO_SIZE = ffi.sizeof("tessera_receipt_info")


def _receipt_info() -> Any:
    info = ffi.new("tessera_receipt_info *")
    info.size = _RECEIPT_INFO_SIZE
    return info


def verify_evidence(evidence: Buffer, challenge: Buffer) -> EvidenceInfo:
    """Verifies signed evidence: well-formed, signed by the key it carries,
    answering the 32-byte `challenge` this verifier issued. Raises
    `VerifyError` (malformed, bad signature, unknown key, wrong nonce)."""
    view, n = readable(evidence, "evidence")
    info = _evidence_info()
    check(lib.tessera_evidence_verify(view, n, fixed(challenge, 32, "challenge"), info))
    return EvidenceInfo._from_c(info)


def open_evidence(evidence: Buffer) -> EvidenceInfo:
    """Verifies evidence's form and signature only, for a party that did not
    issue the challenge: `EvidenceInfo.challenge` says which one it
    answers, and the caller decides whether that is fresh."""
    view, n = readable(evidence, "evidence")
    info = _evidence_info()
    check(lib.tessera_evidence_open(view, n, info))
    return EvidenceInfo._from_c(info)


def evidence_hash(evidence: Buffer) -> bytes:
    """SHA-256 of signed evidence's bytes: what receipts bind it by (nothing
    is verified)."""
    view, n = readable(evidence, "evidence")
    out = ffi.new("uint8_t[32]")
    check(lib.tessera_evidence_hash(view, n, out))
    return out_bytes(out)


def verify_receipt(receipt: Buffer, public_key: Buffer) -> ReceiptInfo:
    """Verifies one receipt's form and signature under the 32-byte
    `public_key`, and that its payload names that key: signed alone
    (`RECEIPT_LEN` bytes) or batched (509 to `RECEIPT_MAX_LEN` bytes, one
    signature over a batch of jobs). Its place in the chain is
    `ChainVerifier`'s to check."""
    view, n = readable(receipt, "receipt")
    info = _receipt_info()
    check(lib.tessera_receipt_verify(view, n, fixed(public_key, 32, "public_key"), info))
    return ReceiptInfo._from_c(info)


def receipt_hash(receipt: Buffer) -> bytes:
    """What the next receipt of the chain names as `prev_hash`: SHA-256 of
    a receipt's bytes when signed alone, of its payload when batched
    (nothing is verified)."""
    view, n = readable(receipt, "receipt")
    out = ffi.new("uint8_t[32]")
    check(lib.tessera_receipt_hash(view, n, out))
    return out_bytes(out)


class ChainVerifier(Managed):
    """Checks one provider key's receipts in order: signature, key,
    sequence, previous-receipt hash and, when given, the requester nonce.
    Keep one per provider key. `chain` is where to continue from: ``None``
    for a key that never signed, `EvidenceInfo.chain` for a provider seen
    the first time, or `ChainVerifier.chain` kept from before."""

    def __init__(self, public_key: Buffer, chain: Optional[ChainState] = None) -> None:
        key = fixed(public_key, 32, "public_key")
        c_chain = ffi.NULL
        if chain is not None:
            if not isinstance(chain, ChainState):
                raise ArgumentTypeError(detail="chain must be a ChainState")
            c_chain = chain._to_c()
        out = ffi.new("tessera_chain_verifier **")
        check(lib.tessera_chain_verifier_new(key, c_chain, out))
        super().__init__(out[0], lib.tessera_chain_verifier_free)

    def verify_next(self, receipt: Buffer, expected_nonce: Optional[Buffer] = None) -> ReceiptInfo:
        """Verifies the next receipt; the chain advances only when it does.
        `expected_nonce` (32 bytes) is the requester nonce it must carry.
        Raises `VerifyError`: replayed, out of order (one is missing),
        broken chain, wrong nonce, and `verify_receipt`'s."""
        view, n = readable(receipt, "receipt")
        nonce = optional_fixed(expected_nonce, 32, "expected_nonce")
        info = _receipt_info()
        with self._exclusive() as h:
            check(lib.tessera_chain_verifier_verify_next(h, view, n, nonce, info))
        return ReceiptInfo._from_c(info)

    @property
    def chain(self) -> ChainState:
        """Where the chain stands after the receipts verified so far."""
        out = ffi.new("tessera_chain_state *")
        with self._shared() as h:
            check(lib.tessera_chain_verifier_chain(h, out))
        return ChainState._from_c(out)


def merkle_root(data: Buffer) -> bytes:
    """The Merkle root of `data` cut into `CHUNK_SIZE` chunks: a kernel's,
    or a job's inputs' or outputs' when they are one buffer."""
    view, n = readable(data, "data")
    out = ffi.new("uint8_t[32]")
    check(lib.tessera_merkle_root(view, n, out))
    return out_bytes(out)


def merkle_root_of_buffers(buffers: Sequence[Buffer]) -> bytes:
    """The Merkle root over several buffers, each cut into chunks
    separately, leaves in buffer order: a job's input root (its buffers'
    initial contents) or output root (its read-back buffers)."""
    if isinstance(buffers, (bytes, bytearray, memoryview, str)):
        raise ArgumentTypeError(detail="buffers must be a sequence of buffers")
    views = [readable(b, "buffers[%d]" % i) for i, b in enumerate(buffers)]
    count = len(views)
    ptrs = ffi.new("uint8_t *[]", max(count, 1))
    lens = ffi.new("size_t[]", max(count, 1))
    for i, (view, n) in enumerate(views):
        ptrs[i] = view if n else ffi.NULL
        lens[i] = n
    out = ffi.new("uint8_t[32]")
    check(lib.tessera_merkle_root_of_buffers(ptrs, lens, count, out))
    return out_bytes(out)


def merkle_leaf_hash(chunk: Buffer) -> bytes:
    """The leaf hash of one chunk: SHA-256(0x00 || chunk)."""
    view, n = readable(chunk, "chunk")
    out = ffi.new("uint8_t[32]")
    check(lib.tessera_merkle_leaf_hash(view, n, out))
    return out_bytes(out)


LeafHashes = Union[Buffer, Sequence[bytes]]


def _leaves(leaves: LeafHashes) -> Tuple[Any, int]:
    """Leaf hashes as one array of 32-byte hashes, and their count."""
    if isinstance(leaves, (list, tuple)):
        joined = b"".join(bytes(ffi.buffer(fixed(h, 32, "leaves[%d]" % i))) for i, h in enumerate(leaves))
        view, n = readable(joined, "leaves")
    else:
        view, n = readable(leaves, "leaves")  # type: ignore[arg-type]
    if n % 32:
        raise ArgumentError(INVALID_ARGUMENT, "leaves must be 32-byte hashes (%d bytes)" % n)
    return view, n // 32


def merkle_prove(leaves: LeafHashes, index: int) -> List[bytes]:
    """The audit path of leaf `index` in the tree over `leaves` (32-byte
    leaf hashes, from `merkle_leaf_hash`; a list of them or their
    concatenation): the hashes from the leaf's level up."""
    view, count = _leaves(leaves)
    integer(index, 64, "index")
    path = ffi.new("uint8_t[]", 32 * MAX_PROOF_LEN)
    path_len = ffi.new("size_t *")
    check(lib.tessera_merkle_prove(view, count, index, path, MAX_PROOF_LEN, path_len))
    raw = out_bytes(path, 32 * path_len[0])
    return [raw[i:i + 32] for i in range(0, len(raw), 32)]


def output_leaf_count(buffers: Sequence[BufferSpec]) -> int:
    """The number of leaves of a job's output tree: the chunks of its
    read-back buffers, each cut separately."""
    arr, count = buffer_specs(list(buffers))
    out = ffi.new("uint64_t *")
    check(lib.tessera_output_leaf_count(arr, count, out))
    return int(out[0])


def verify_output_chunk(
    output_root: Buffer,
    leaf_count: int,
    chunk: Buffer,
    index: int,
    tree_size: int,
    path: LeafHashes,
) -> None:
    """Checks that `chunk` is leaf `index` of the output tree whose root a
    receipt signed, given its audit path in a tree of `tree_size` leaves;
    `leaf_count` is the exact leaf count of that output
    (`output_leaf_count`). Raises `VerifyError`
    (verify_chunk_proof_mismatch) when it is not."""
    root = fixed(output_root, 32, "output_root")
    view, n = readable(chunk, "chunk")
    if isinstance(path, (bytes, bytearray, memoryview)):
        path_view, path_bytes = readable(path, "path")
        if path_bytes % 32:
            raise ArgumentError(INVALID_ARGUMENT, "path must be 32-byte hashes")
        hashes = path_bytes // 32
    else:
        joined = b"".join(bytes(ffi.buffer(fixed(h, 32, "path[%d]" % i)))
                          for i, h in enumerate(path))  # type: ignore[arg-type]
        path_view, path_bytes = readable(joined, "path")
        hashes = path_bytes // 32
    check(lib.tessera_verify_output_chunk(
        root,
        integer(leaf_count, 64, "leaf_count"),
        view,
        n,
        integer(index, 64, "index"),
        integer(tree_size, 64, "tree_size"),
        path_view if hashes else ffi.NULL,
        hashes,
    ))


def kernel_hash(
    spirv_root: Buffer,
    entry_point: str,
    specialization: Sequence[Tuple[int, int]] = (),
    push_constants: Buffer = b"",
    grid: Sequence[int] = (1, 1, 1),
    buffers: Sequence[BufferSpec] = (),
) -> bytes:
    """The kernel hash a receipt binds: the SPIR-V module's Merkle root
    (`merkle_root`), its entry point, specialization constants as
    ``(id, value)`` pairs, push-constant bytes, grid, and buffer layout."""
    root = fixed(spirv_root, 32, "spirv_root")
    name = c_string(entry_point, "entry_point")
    pairs = list(specialization)
    spec = ffi.new("uint32_t[]", max(2 * len(pairs), 1))
    for i, pair in enumerate(pairs):
        if len(pair) != 2:
            raise ArgumentError(INVALID_ARGUMENT, "specialization[%d] must be an (id, value) pair" % i)
        spec[2 * i] = integer(pair[0], 32, "specialization id")
        spec[2 * i + 1] = integer(pair[1], 32, "specialization value")
    push, push_len = readable(push_constants, "push_constants")
    c_grid = ffi.new("uint32_t[3]", list(u32_triple(grid, "grid")))
    arr, count = buffer_specs(list(buffers))
    out = ffi.new("uint8_t[32]")
    check(lib.tessera_kernel_hash(
        root, name, spec if pairs else ffi.NULL, len(pairs),
        push if push_len else ffi.NULL, push_len, c_grid, arr, count, out,
    ))
    return out_bytes(out)


def result_hash(kernel_hash: Buffer, input_root: Buffer, output_root: Buffer, output_len: int) -> bytes:
    """The result hash, the same on every honest replica of a job."""
    out = ffi.new("uint8_t[32]")
    check(lib.tessera_result_hash(
        fixed(kernel_hash, 32, "kernel_hash"),
        fixed(input_root, 32, "input_root"),
        fixed(output_root, 32, "output_root"),
        integer(output_len, 64, "output_len"),
        out,
    ))
    return out_bytes(out)


def result_seal(public_key: Buffer, job: int, result_hash: Buffer) -> bytes:
    """The result seal, unique to one provider: over its public key, the
    job and the result hash."""
    out = ffi.new("uint8_t[32]")
    check(lib.tessera_result_seal(
        fixed(public_key, 32, "public_key"),
        integer(job, 64, "job"),
        fixed(result_hash, 32, "result_hash"),
        out,
    ))
    return out_bytes(out)
