"""Tessera for Python: a GPU provider agent for decentralized compute
networks, over the library's C ABI (include/tessera.h).

- `Runtime`: a whole provider on the network (TLS, reconnects, result
  store, jobs on the Vulkan device or on a Python executor).
- `Agent`: the sans-IO agent, for hosts that own their transport and clock.
- `Dispatcher`: untrusted SPIR-V kernels on a Vulkan device.
- Verification: `verify_evidence`, `verify_receipt`, `ChainVerifier`, Merkle
  roots and proofs, and the hashes a receipt binds.
- Keys: `generate_key`, `public_key`, `key_id`, `Signer`.
- Messages: `decode_message`, `encode_message`.

Every failure raises a `tessera.Error` whose `code` is the shared code of
docs/CODES.md; its subclasses follow the code ranges. Objects holding a
library handle (`Signer`, `Agent`, `ChainVerifier`, `Dispatcher`,
`Runtime`) are `Managed`: `close()` or a ``with`` block frees them.
Buffers are taken as any buffer-protocol object (bytes, bytearray,
memoryview, NumPy arrays) and read in place.
"""

from typing import Tuple

from ._errors import (
    AbiMismatchError,
    ArgumentError,
    ArgumentTypeError,
    BufferTooSmallError,
    CallError,
    ClosedError,
    ConfigError,
    Error,
    EventsPendingError,
    InUseError,
    JobError,
    KernelRejectedError,
    LibraryIOError,
    PanicError,
    SignerError,
    SignerUnavailableError,
    StoppedError,
    StoreError,
    UnsupportedError,
    UsageError,
    VerifyError,
    VulkanError,
    WireError,
    WouldBlockError,
    error_class,
    result_text,
)
from ._ffi import DECLARED_VERSION, lib as _lib
from ._managed import Managed
from ._types import (
    CHUNK_SIZE,
    EVIDENCE_LEN,
    HARDWARE_REPORT_NONE,
    HARDWARE_REPORT_NVIDIA_CC,
    HARDWARE_REPORT_SEV_SNP,
    HARDWARE_REPORT_TDX,
    HARDWARE_REPORT_TPM2_QUOTE,
    KEY_PKCS8_LEN,
    MAX_BUFFERS,
    MAX_ENTRY_POINT,
    MAX_FRAME,
    MAX_INPUT_PIECE,
    MAX_JOBS,
    MAX_PROOF_LEN,
    MAX_PUSH_CONSTANTS,
    MAX_RECORD_BYTES,
    MAX_SPEC_CONSTANTS,
    RECEIPT_LEN,
    RECEIPT_MAX_LEN,
    TRANSMIT_BUFFER,
    BufferSpec,
    CancelReason,
    ChainState,
    ConnState,
    Device,
    DeviceType,
    DisconnectReason,
    EventKind,
    FailReason,
    JobState,
    LogLevel,
    Policy,
    Usage,
)
from ._keys import Signer, generate_key, key_id, public_key
from ._verify import (
    ChainVerifier,
    EvidenceInfo,
    ReceiptInfo,
    evidence_hash,
    kernel_hash,
    merkle_leaf_hash,
    merkle_prove,
    merkle_root,
    merkle_root_of_buffers,
    open_evidence,
    output_leaf_count,
    receipt_hash,
    result_hash,
    result_seal,
    verify_evidence,
    verify_output_chunk,
    verify_receipt,
)
from ._agent import Agent, AgentConfig, Event, JobInfo, OutputSent, Stats, now_us
from ._messages import decode_message, encode_message
from ._vulkan import Benchmark, DeviceEntry, Dispatcher, JobFailure, KernelBuffer, KernelResult, vulkan_devices
from ._runtime import Job, JobBuffer, Runtime, Status, forward_logs

__version__ = "0.1.0"


def version() -> Tuple[int, int, int]:
    """The loaded library's version: (major, minor, patch)."""
    number = int(_lib.tessera_version())
    return (number >> 16, (number >> 8) & 0xFF, number & 0xFF)


__all__ = [
    # errors
    "Error", "CallError", "WouldBlockError", "EventsPendingError", "BufferTooSmallError",
    "ArgumentError", "ArgumentTypeError", "ClosedError", "PanicError", "UnsupportedError",
    "LibraryIOError", "StoppedError", "InUseError", "AbiMismatchError", "UsageError",
    "ConfigError", "SignerError", "SignerUnavailableError", "StoreError", "VerifyError",
    "VulkanError", "WireError", "JobError", "KernelRejectedError", "error_class", "result_text",
    # version and constants
    "version", "DECLARED_VERSION", "__version__",
    "CHUNK_SIZE", "EVIDENCE_LEN", "HARDWARE_REPORT_NONE", "HARDWARE_REPORT_NVIDIA_CC",
    "HARDWARE_REPORT_SEV_SNP", "HARDWARE_REPORT_TDX", "HARDWARE_REPORT_TPM2_QUOTE", "KEY_PKCS8_LEN", "MAX_BUFFERS", "MAX_ENTRY_POINT", "MAX_FRAME",
    "MAX_INPUT_PIECE", "MAX_JOBS", "MAX_PROOF_LEN", "MAX_PUSH_CONSTANTS", "MAX_RECORD_BYTES",
    "MAX_SPEC_CONSTANTS", "RECEIPT_LEN", "RECEIPT_MAX_LEN", "TRANSMIT_BUFFER",
    # values
    "Managed", "BufferSpec", "ChainState", "Device", "Policy", "Usage",
    "CancelReason", "ConnState", "DeviceType", "DisconnectReason", "EventKind", "FailReason",
    "JobState", "LogLevel",
    # keys
    "Signer", "generate_key", "key_id", "public_key",
    # verification
    "ChainVerifier", "EvidenceInfo", "ReceiptInfo", "evidence_hash", "kernel_hash",
    "merkle_leaf_hash", "merkle_prove", "merkle_root", "merkle_root_of_buffers", "open_evidence",
    "output_leaf_count", "receipt_hash", "result_hash", "result_seal", "verify_evidence",
    "verify_output_chunk", "verify_receipt",
    # messages
    "decode_message", "encode_message",
    # the sans-IO agent
    "Agent", "AgentConfig", "Event", "JobInfo", "OutputSent", "Stats", "now_us",
    # Vulkan
    "Benchmark", "DeviceEntry", "Dispatcher", "JobFailure", "KernelBuffer", "KernelResult",
    "vulkan_devices",
    # the runtime
    "Job", "JobBuffer", "Runtime", "Status", "forward_logs",
]
