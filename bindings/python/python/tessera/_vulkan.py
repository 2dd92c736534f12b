"""The Vulkan dispatcher: untrusted compute kernels on one device, behind the
library's two gates (docs/VULKAN.md)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Tuple

from ._errors import BUFFER_TOO_SMALL, INVALID_ARGUMENT, NOTHING, OK, ArgumentError, ArgumentTypeError, check, error_for
from ._ffi import Buffer, c_string, c_text, ffi, integer, lib, readable, text_from, u32_triple, writable
from ._managed import Managed
from ._types import Device, Usage


@dataclass(frozen=True)
class DeviceEntry:
    """One Vulkan device as `vulkan_devices` lists it."""

    index: int
    name: str
    device_type: int
    vendor_id: int
    device_id: int
    api_version: int


def vulkan_devices() -> List[DeviceEntry]:
    """The Vulkan devices of this machine (`VulkanError` 501 without a
    Vulkan loader)."""
    count = ffi.new("size_t *")
    code = lib.tessera_vulkan_devices(ffi.NULL, 0, count)
    if code not in (OK, BUFFER_TOO_SMALL):
        check(code)
    while True:
        capacity = int(count[0])
        entries = ffi.new("tessera_device_entry[]", max(capacity, 1))
        code = lib.tessera_vulkan_devices(entries, capacity, count)
        if code == BUFFER_TOO_SMALL:
            continue  # a device appeared meanwhile
        check(code)
        return [
            DeviceEntry(int(e.index), c_text(e.name), int(e.device_type), int(e.vendor_id),
                        int(e.device_id), int(e.api_version))
            for e in (entries[i] for i in range(int(count[0])))
        ]


@dataclass
class KernelBuffer:
    """One storage buffer of a kernel job.

    `len` is the bytes the kernel sees (default: the length of `init`, or
    of `output`). `init` is its initial contents (the rest is zero): any
    buffer-protocol object, read in place. A `readback` buffer's final
    contents are written into `output`, a writable buffer of at least `len`
    bytes (a NumPy array is filled in place), or into a new `bytearray`
    when `output` is ``None``."""

    binding: int
    len: Optional[int] = None
    init: Optional[Buffer] = None
    readback: bool = False
    output: Optional[Buffer] = None


class Benchmark(NamedTuple):
    """The start-up benchmark's figures."""

    copy_gbps: float
    fma_gflops: float


@dataclass(frozen=True)
class KernelResult:
    """A kernel that ran: each read-back buffer's contents by binding (the
    `KernelBuffer.output` given, or a new bytearray), and its usage."""

    outputs: Dict[int, Buffer]
    usage: Usage


@dataclass(frozen=True)
class JobFailure:
    """Why the last run failed, as a host reports it to the coordinator:
    the wire fail reason (`FailReason`), its detail (the kernel rule of a
    rejection) and the usage to report (a timeout is metered to its
    limit)."""

    reason: int
    detail: int
    usage: Usage


class KernelJob:
    """A `tessera_kernel_job` built from Python values, with everything C
    points into kept alive by this object."""

    def __init__(
        self,
        spirv: Buffer,
        buffers: Sequence[KernelBuffer],
        grid: Sequence[int],
        entry_point: str,
        specialization: Sequence[Tuple[int, int]],
        push_constants: Buffer,
        timeout_ms: int,
    ) -> None:
        keep: List[Any] = []
        job = ffi.new("tessera_kernel_job *")
        job.size = ffi.sizeof("tessera_kernel_job")
        code, n = readable(spirv, "spirv")
        keep.append(code)
        job.spirv = code
        job.spirv_len = n
        name = c_string(entry_point, "entry_point")
        keep.append(name)
        job.entry_point = name
        pairs = list(specialization)
        if pairs:
            spec = ffi.new("uint32_t[]", 2 * len(pairs))
            for i, pair in enumerate(pairs):
                if len(pair) != 2:
                    raise ArgumentError(INVALID_ARGUMENT, "specialization[%d] must be an (id, value) pair" % i)
                spec[2 * i] = integer(pair[0], 32, "specialization id")
                spec[2 * i + 1] = integer(pair[1], 32, "specialization value")
            keep.append(spec)
            job.specialization = spec
        job.specialization_count = len(pairs)
        push, push_len = readable(push_constants, "push_constants")
        keep.append(push)
        job.push_constants = push if push_len else ffi.NULL
        job.push_constants_len = push_len
        job.grid = list(u32_triple(grid, "grid"))
        specs = list(buffers)
        self.outputs: Dict[int, Buffer] = {}
        if specs:
            arr = ffi.new("tessera_kernel_buffer[]", len(specs))
            keep.append(arr)
            for i, b in enumerate(specs):
                self._fill(arr[i], b, i, keep)
            job.buffers = arr
        job.buffer_count = len(specs)
        job.timeout_ms = integer(timeout_ms, 64, "timeout_ms")
        self.job = job
        self._keep = keep

    def _fill(self, c: Any, b: KernelBuffer, i: int, keep: List[Any]) -> None:
        if not isinstance(b, KernelBuffer):
            raise ArgumentTypeError(detail="buffers[%d] must be a tessera.KernelBuffer" % i)
        c.binding = integer(b.binding, 32, "buffers[%d].binding" % i)
        init_len = 0
        if b.init is not None:
            init, init_len = readable(b.init, "buffers[%d].init" % i)
            keep.append(init)
            c.init = init if init_len else ffi.NULL
            c.init_len = init_len
        output: Any = None
        out_len = 0
        if b.output is not None:
            if not b.readback:
                raise ArgumentError(INVALID_ARGUMENT, "buffers[%d] has an output but is not read back" % i)
            output, out_len = writable(b.output, "buffers[%d].output" % i)
        size = b.len
        if size is None:
            size = init_len if b.init is not None else out_len
        c.len = integer(size, 64, "buffers[%d].len" % i)
        c.readback = bool(b.readback)
        if b.readback:
            target: Buffer
            if output is None:
                target = bytearray(size)
                output, out_len = writable(target, "buffers[%d].output" % i)
            else:
                assert b.output is not None
                target = b.output
            keep.append(output)
            c.output = output
            c.output_len = out_len
            self.outputs[int(b.binding)] = target


class Dispatcher(Managed):
    """Runs untrusted compute kernels on one Vulkan device: robust buffer
    access on, the library's gate and the Khronos validator in front of the
    driver, each kernel under a time limit.

    `device_index` (or ``None``: the default device, a discrete GPU first,
    or the first whose name contains `device_name`); `validation` runs the
    Khronos validation layer (slow); `spirv_val_gate` the SPIR-V validator
    on every new kernel (`spirv_val_path`, default: on ``PATH``);
    `memory_budget` bounds one job's buffers; `run_benchmark` measures the
    device when it opens (its figures go into the evidence)."""

    def __init__(
        self,
        device_index: Optional[int] = None,
        device_name: Optional[str] = None,
        *,
        validation: bool = False,
        spirv_val_gate: bool = True,
        spirv_val_path: Optional[str] = None,
        memory_budget: Optional[int] = None,
        run_benchmark: bool = True,
    ) -> None:
        c = ffi.new("tessera_dispatcher_config *")
        check(lib.tessera_dispatcher_config_default(c))
        keep: List[Any] = []
        if device_index is not None:
            c.device_index = integer(device_index, 31, "device_index")
        name = c_string(device_name, "device_name")
        path = c_string(spirv_val_path, "spirv_val_path")
        keep += [name, path]
        c.device_name = name
        c.spirv_val_path = path
        c.validation = bool(validation)
        c.spirv_val_gate = bool(spirv_val_gate)
        if memory_budget is not None:
            c.memory_budget = integer(memory_budget, 64, "memory_budget")
        c.run_benchmark = bool(run_benchmark)
        why = ffi.new("char[]", 512)
        out = ffi.new("tessera_dispatcher **")
        code = lib.tessera_dispatcher_new(c, why, len(why), out)
        if code != OK:
            raise error_for(code, ffi.string(why).decode("utf-8", "replace") or None)
        super().__init__(out[0], lib.tessera_dispatcher_free)

    def device(self) -> Device:
        """What the device is, as its evidence states it: give it to
        `AgentConfig.device`."""
        c = ffi.new("tessera_device *")
        with self._shared() as h:
            check(lib.tessera_dispatcher_device(h, c))
            return Device._from_c(c)

    def benchmark(self) -> Benchmark:
        """Runs the start-up benchmark again: copy bandwidth (GB/s) and FMA
        throughput (GFLOP/s)."""
        copy, fma = ffi.new("double *"), ffi.new("double *")
        with self._exclusive() as h:
            check(lib.tessera_dispatcher_benchmark(h, copy, fma))
        return Benchmark(float(copy[0]), float(fma[0]))

    def run(
        self,
        spirv: Buffer,
        buffers: Sequence[KernelBuffer],
        grid: Sequence[int],
        *,
        entry_point: str = "main",
        specialization: Sequence[Tuple[int, int]] = (),
        push_constants: Buffer = b"",
        timeout: float = 10.0,
    ) -> KernelResult:
        """Runs a kernel: both gates, then the kernel under `timeout`
        seconds. A failure raises `KernelRejectedError` (the rule it broke),
        `JobError` (2101 for a timeout, ...) or `ArgumentError`, with the
        dispatcher's words; `last_failure` then says what to report. The
        dispatcher stays usable after any failure."""
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout < 0:
            raise ArgumentError(INVALID_ARGUMENT, "timeout must be seconds >= 0")
        if isinstance(buffers, KernelBuffer):
            raise ArgumentTypeError(detail="buffers must be a sequence of KernelBuffer")
        job = KernelJob(spirv, buffers, grid, entry_point, specialization, push_constants,
                        int(round(timeout * 1000)))
        usage = ffi.new("tessera_usage *")
        with self._exclusive() as h:
            code = lib.tessera_dispatcher_run(h, job.job, usage)
            if code != OK:
                raise error_for(code, text_from(lib.tessera_dispatcher_last_error, h) or None)
        return KernelResult(job.outputs, Usage._from_c(usage))

    def last_failure(self) -> Optional[JobFailure]:
        """After a failed `run`: the reason, detail and usage to report; ``None``
        when the last run succeeded."""
        reason, detail = ffi.new("uint32_t *"), ffi.new("uint32_t *")
        usage = ffi.new("tessera_usage *")
        with self._shared() as h:
            code = lib.tessera_dispatcher_last_failure(h, reason, detail, usage)
        if code == NOTHING:
            return None
        check(code)
        return JobFailure(int(reason[0]), int(detail[0]), Usage._from_c(usage))

    def last_error(self) -> str:
        """The words of the dispatcher's last error."""
        with self._shared() as h:
            return text_from(lib.tessera_dispatcher_last_error, h)

    def reclaim(self) -> int:
        """Destroys devices given up on after a timeout whose kernel has
        finished; returns how many still run abandoned work (at two the
        dispatcher refuses jobs until one ends)."""
        still = ffi.new("size_t *")
        with self._exclusive() as h:
            check(lib.tessera_dispatcher_reclaim(h, still))
        return int(still[0])

