"""Plain values shared by the agent, the runtime, the dispatcher and
verification: dataclasses mirroring the header's structs, and enums of its
constants."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, Tuple

from ._errors import INVALID_ARGUMENT, ArgumentError
from ._ffi import c_text, ffi, fixed, integer, lib, out_bytes

#: Bytes of one input or output chunk (a Merkle leaf).
CHUNK_SIZE: int = int(lib.TESSERA_CHUNK_SIZE)
#: Largest frame on the wire, header included.
MAX_FRAME: int = int(lib.TESSERA_MAX_FRAME)
#: Most bytes of one `EventKind.JOB_DATA` (what `Agent.read_input` returns):
#: a chunk's data comes in pieces of this size, the last one shorter.
MAX_INPUT_PIECE: int = int(lib.TESSERA_MAX_INPUT_PIECE)
#: Bytes of a transmit buffer with which every `Agent.send_output_into`
#: call takes a chunk (the size `Agent.send_output` uses).
TRANSMIT_BUFFER: int = int(lib.TESSERA_TRANSMIT_BUFFER)
#: Most jobs an agent holds at once.
MAX_JOBS: int = int(lib.TESSERA_MAX_JOBS)
#: Most buffers of one job.
MAX_BUFFERS: int = int(lib.TESSERA_MAX_BUFFERS)
#: Bytes of a receipt signed alone.
RECEIPT_LEN: int = int(lib.TESSERA_RECEIPT_LEN)
#: Most bytes of a receipt in either form (batched: 509 plus 32 per
#: audit-path hash).
RECEIPT_MAX_LEN: int = int(lib.TESSERA_RECEIPT_MAX_LEN)
#: Bytes of signed evidence.
EVIDENCE_LEN: int = int(lib.TESSERA_EVIDENCE_LEN)
#: `EvidenceInfo.hardware_report_kind`: none, an NVIDIA GPU
#: confidential-computing report, a TPM 2.0 quote, an AMD SEV-SNP report, an
#: Intel TDX quote (0x8000 and up: a vendor's own).
HARDWARE_REPORT_NONE: int = int(lib.TESSERA_HARDWARE_REPORT_NONE)
HARDWARE_REPORT_NVIDIA_CC: int = int(lib.TESSERA_HARDWARE_REPORT_NVIDIA_CC)
HARDWARE_REPORT_TPM2_QUOTE: int = int(lib.TESSERA_HARDWARE_REPORT_TPM2_QUOTE)
HARDWARE_REPORT_SEV_SNP: int = int(lib.TESSERA_HARDWARE_REPORT_SEV_SNP)
HARDWARE_REPORT_TDX: int = int(lib.TESSERA_HARDWARE_REPORT_TDX)
#: Bytes of the PKCS#8 document `generate_key` returns.
KEY_PKCS8_LEN: int = int(lib.TESSERA_KEY_PKCS8_LEN)
#: Longest Merkle audit path, in hashes.
MAX_PROOF_LEN: int = int(lib.TESSERA_MAX_PROOF_LEN)
#: Most bytes of a kernel entry point name.
MAX_ENTRY_POINT: int = int(lib.TESSERA_MAX_ENTRY_POINT)
#: Most specialization constants of a kernel.
MAX_SPEC_CONSTANTS: int = int(lib.TESSERA_MAX_SPEC_CONSTANTS)
#: Most push-constant bytes of a kernel.
MAX_PUSH_CONSTANTS: int = int(lib.TESSERA_MAX_PUSH_CONSTANTS)
#: Most bytes of an encoded result record.
MAX_RECORD_BYTES: int = int(lib.TESSERA_MAX_RECORD_BYTES)


class DeviceType(enum.IntEnum):
    """What kind of device (``TESSERA_DEVICE_*``)."""

    OTHER = 0
    INTEGRATED_GPU = 1
    DISCRETE_GPU = 2
    VIRTUAL_GPU = 3
    CPU = 4


class EventKind(enum.IntEnum):
    """What the host must do (``TESSERA_EVENT_*``)."""

    READY = 1
    JOB_ASSIGNED = 2
    JOB_DATA = 3
    RUN_JOB = 4
    CANCEL_JOB = 5
    RESEND_OUTPUTS = 6
    PERSIST_RESULT = 7
    RESULT_ACKNOWLEDGED = 8
    RESULT_REFUSED = 9
    PEER_ERROR = 10
    DISCONNECT = 11


class CancelReason(enum.IntEnum):
    """Why a job was cancelled (``TESSERA_CANCEL_*``)."""

    REQUESTED = 1
    DEADLINE = 2
    DISCONNECTED = 3
    INPUT_INTEGRITY = 4


class DisconnectReason(enum.IntEnum):
    """Why the session ended (``TESSERA_DISCONNECT_*``)."""

    PEER_SILENT = 1
    PROTOCOL_VIOLATION = 2
    REFUSED = 3
    PEER_GOODBYE = 4
    DRAINED = 5
    PEER_DRAINED = 6


class JobState(enum.IntEnum):
    """A job's state (``TESSERA_JOB_*``)."""

    ACCEPTED = 1
    RECEIVING = 2
    RUNNING = 3
    UPLOADING = 4
    AWAITING_ACK = 5


class ConnState(enum.IntEnum):
    """The connection's state (``TESSERA_CONN_*``)."""

    DISCONNECTED = 1
    AWAITING_WELCOME = 2
    AWAITING_READY = 3
    READY = 4
    CLOSED = 5


class FailReason(enum.IntEnum):
    """Why a job failed: the wire fail reason, also a receipt's status
    (``TESSERA_RECEIPT_*``; 0 is a completed job). Its result code is
    ``2000 + reason``."""

    COMPLETED = 0
    KERNEL_REJECTED = 1
    TIMEOUT = 2
    DEADLINE_EXCEEDED = 3
    DEVICE_LOST = 4
    OUT_OF_MEMORY = 5
    INPUT_INTEGRITY = 6
    HOST = 7


class LogLevel(enum.IntEnum):
    """The library's log levels (``TESSERA_LOG_*``)."""

    OFF = 0
    ERROR = 1
    WARN = 2
    INFO = 3
    DEBUG = 4
    TRACE = 5


def _hex(data: bytes) -> str:
    return data.hex()


@dataclass(frozen=True)
class ChainState:
    """Where a device key's receipt chain stands: the next sequence number
    (the first receipt is 1) and the hash of the last receipt (zeros before
    the first)."""

    next_sequence: int = 1
    prev_hash: bytes = bytes(32)

    def _to_c(self) -> Any:
        c = ffi.new("tessera_chain_state *")
        c.next_sequence = integer(self.next_sequence, 64, "next_sequence")
        ffi.memmove(c.prev_hash, fixed(self.prev_hash, 32, "prev_hash"), 32)
        return c

    @classmethod
    def _from_c(cls, c: Any) -> "ChainState":
        return cls(int(c.next_sequence), out_bytes(c.prev_hash))


@dataclass(frozen=True)
class Usage:
    """Metered usage of a job."""

    gpu_time_us: int = 0
    dispatches: int = 0
    bytes_in: int = 0
    bytes_out: int = 0

    def _fill(self, c: Any) -> None:
        c.gpu_time_us = integer(self.gpu_time_us, 64, "gpu_time_us")
        c.dispatches = integer(self.dispatches, 32, "dispatches")
        c.bytes_in = integer(self.bytes_in, 64, "bytes_in")
        c.bytes_out = integer(self.bytes_out, 64, "bytes_out")

    def _to_c(self) -> Any:
        c = ffi.new("tessera_usage *")
        self._fill(c)
        return c

    @classmethod
    def _from_c(cls, c: Any) -> "Usage":
        return cls(int(c.gpu_time_us), int(c.dispatches), int(c.bytes_in), int(c.bytes_out))


@dataclass(frozen=True)
class BufferSpec:
    """One buffer of a job's layout: its binding, its length in bytes, how
    many of its first bytes are sent as input (the rest is zero), and
    whether it is returned as an output."""

    binding: int
    len: int
    init_len: int = 0
    readback: bool = False

    def _fill(self, c: Any) -> None:
        c.binding = integer(self.binding, 32, "binding")
        c.len = integer(self.len, 64, "len")
        c.init_len = integer(self.init_len, 64, "init_len")
        c.readback = bool(self.readback)

    @classmethod
    def _from_c(cls, c: Any) -> "BufferSpec":
        return cls(int(c.binding), int(c.len), int(c.init_len), bool(c.readback))


def buffer_specs(buffers: "Tuple[BufferSpec, ...] | list[BufferSpec]") -> Tuple[Any, int]:
    """A C array of `tessera_buffer_spec` (NULL when empty) and its length."""
    specs = list(buffers)
    if not specs:
        return ffi.NULL, 0
    arr = ffi.new("tessera_buffer_spec[]", len(specs))
    for i, spec in enumerate(specs):
        if not isinstance(spec, BufferSpec):
            raise ArgumentError(INVALID_ARGUMENT, "buffers[%d] must be a BufferSpec" % i)
        spec._fill(arr[i])
    return arr, len(specs)


@dataclass(frozen=True)
class Device:
    """What a device is and can do: what an agent is configured with, and
    what evidence says (`EvidenceInfo.device`)."""

    name: str = ""
    vendor_id: int = 0
    device_id: int = 0
    driver_version: int = 0
    api_version: int = 0
    device_type: int = DeviceType.OTHER
    features: int = 0
    device_local_bytes: int = 0
    host_visible_bytes: int = 0
    max_workgroup_size: Tuple[int, int, int] = (0, 0, 0)
    max_workgroup_count: Tuple[int, int, int] = (0, 0, 0)
    max_invocations: int = 0
    max_shared_memory: int = 0
    max_storage_buffer_range: int = 0
    subgroup_size: int = 0
    copy_mbps: int = 0
    fma_mflops: int = 0

    @classmethod
    def _from_c(cls, c: Any) -> "Device":
        name = c.name
        text = "" if name == ffi.NULL else c_text(name)
        return cls(
            name=text,
            vendor_id=int(c.vendor_id),
            device_id=int(c.device_id),
            driver_version=int(c.driver_version),
            api_version=int(c.api_version),
            device_type=int(c.device_type),
            features=int(c.features),
            device_local_bytes=int(c.device_local_bytes),
            host_visible_bytes=int(c.host_visible_bytes),
            max_workgroup_size=(int(c.max_workgroup_size[0]), int(c.max_workgroup_size[1]),
                                int(c.max_workgroup_size[2])),
            max_workgroup_count=(int(c.max_workgroup_count[0]), int(c.max_workgroup_count[1]),
                                 int(c.max_workgroup_count[2])),
            max_invocations=int(c.max_invocations),
            max_shared_memory=int(c.max_shared_memory),
            max_storage_buffer_range=int(c.max_storage_buffer_range),
            subgroup_size=int(c.subgroup_size),
            copy_mbps=int(c.copy_mbps),
            fma_mflops=int(c.fma_mflops),
        )

    def _fill(self, c: Any, keep: "list[Any]") -> None:
        """Fills a `tessera_device`; the name's memory goes into `keep`."""
        from ._ffi import c_string, u32_triple

        name = c_string(self.name, "device.name")
        keep.append(name)
        c.name = name
        c.vendor_id = integer(self.vendor_id, 32, "device.vendor_id")
        c.device_id = integer(self.device_id, 32, "device.device_id")
        c.driver_version = integer(self.driver_version, 32, "device.driver_version")
        c.api_version = integer(self.api_version, 32, "device.api_version")
        c.device_type = integer(int(self.device_type), 32, "device.device_type")
        c.features = integer(self.features, 32, "device.features")
        c.device_local_bytes = integer(self.device_local_bytes, 64, "device.device_local_bytes")
        c.host_visible_bytes = integer(self.host_visible_bytes, 64, "device.host_visible_bytes")
        c.max_workgroup_size = list(u32_triple(self.max_workgroup_size, "device.max_workgroup_size"))
        c.max_workgroup_count = list(u32_triple(self.max_workgroup_count, "device.max_workgroup_count"))
        c.max_invocations = integer(self.max_invocations, 32, "device.max_invocations")
        c.max_shared_memory = integer(self.max_shared_memory, 32, "device.max_shared_memory")
        c.max_storage_buffer_range = integer(self.max_storage_buffer_range, 64,
                                             "device.max_storage_buffer_range")
        c.subgroup_size = integer(self.subgroup_size, 32, "device.subgroup_size")
        c.copy_mbps = integer(self.copy_mbps, 32, "device.copy_mbps")
        c.fma_mflops = integer(self.fma_mflops, 32, "device.fma_mflops")


def _c_default_config() -> Any:
    c = ffi.new("tessera_agent_config *")
    c.size = ffi.sizeof("tessera_agent_config")
    lib.tessera_agent_config_default(c)
    return c


# The library's defaults (the struct stays referenced while its policy is read).
_DEFAULT_CONFIG = _c_default_config()
_D = _DEFAULT_CONFIG.policy


@dataclass(frozen=True)
class Policy:
    """Which offers to take, what to charge, and the session timers; a field
    left out is the library's default. Prices are in the network's smallest
    unit."""

    max_concurrent: int = int(_D.max_concurrent)
    price_base: int = int(_D.price_base)
    price_per_gpu_ms: int = int(_D.price_per_gpu_ms)
    price_per_mib_in: int = int(_D.price_per_mib_in)
    price_per_mib_out: int = int(_D.price_per_mib_out)
    floor: int = int(_D.floor)
    max_bytes_in: int = int(_D.max_bytes_in)
    max_bytes_out: int = int(_D.max_bytes_out)
    heartbeat_interval_ms: int = int(_D.heartbeat_interval_ms)
    peer_timeout_ms: int = int(_D.peer_timeout_ms)

    @classmethod
    def _from_c(cls, c: Any) -> "Policy":
        return cls(
            max_concurrent=int(c.max_concurrent),
            price_base=int(c.price_base),
            price_per_gpu_ms=int(c.price_per_gpu_ms),
            price_per_mib_in=int(c.price_per_mib_in),
            price_per_mib_out=int(c.price_per_mib_out),
            floor=int(c.floor),
            max_bytes_in=int(c.max_bytes_in),
            max_bytes_out=int(c.max_bytes_out),
            heartbeat_interval_ms=int(c.heartbeat_interval_ms),
            peer_timeout_ms=int(c.peer_timeout_ms),
        )

    def _fill(self, c: Any) -> None:
        c.max_concurrent = integer(self.max_concurrent, 32, "policy.max_concurrent")
        c.price_base = integer(self.price_base, 64, "policy.price_base")
        c.price_per_gpu_ms = integer(self.price_per_gpu_ms, 64, "policy.price_per_gpu_ms")
        c.price_per_mib_in = integer(self.price_per_mib_in, 64, "policy.price_per_mib_in")
        c.price_per_mib_out = integer(self.price_per_mib_out, 64, "policy.price_per_mib_out")
        c.floor = integer(self.floor, 64, "policy.floor")
        c.max_bytes_in = integer(self.max_bytes_in, 64, "policy.max_bytes_in")
        c.max_bytes_out = integer(self.max_bytes_out, 64, "policy.max_bytes_out")
        c.heartbeat_interval_ms = integer(self.heartbeat_interval_ms, 64, "policy.heartbeat_interval_ms")
        c.peer_timeout_ms = integer(self.peer_timeout_ms, 64, "policy.peer_timeout_ms")


def policy_with(base: Policy, **changes: int) -> Policy:
    """`base` with some fields changed (by keyword), every name checked."""
    import dataclasses

    names = {f.name for f in dataclasses.fields(Policy)}
    unknown = sorted(set(changes) - names)
    if unknown:
        raise ArgumentError(INVALID_ARGUMENT, "unknown policy field(s): %s" % ", ".join(unknown))
    return dataclasses.replace(base, **changes)

