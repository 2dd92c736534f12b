"""The Vulkan dispatcher through the Python API (lavapipe in CI): devices,
opening one, the benchmark, a real kernel with NumPy and bytes buffers
(outputs written in place), a kernel the gate refuses, a kernel stopped at
its time limit, and argument errors. The dispatcher stays usable after each
failure."""

from __future__ import annotations

import struct
import time
from typing import Iterator

import numpy as np
import pytest

import tessera
from conftest import kernel

N = 1000
ALPHA = 2.5


@pytest.fixture(scope="module")
def dispatcher(spirv_val: str) -> Iterator[tessera.Dispatcher]:
    with tessera.Dispatcher(spirv_val_path=spirv_val) as d:
        yield d


def saxpy_push() -> bytes:
    return struct.pack("<fI", ALPHA, N)


def test_devices() -> None:
    devices = tessera.vulkan_devices()
    assert devices and devices[0].index == 0 and devices[0].name
    assert all(d.api_version > 0 for d in devices)


def test_opening_errors(spirv_val: str) -> None:
    with pytest.raises(tessera.VulkanError) as e:
        tessera.Dispatcher(device_index=500, run_benchmark=False)
    assert e.value.code == 503 and e.value.detail
    with pytest.raises(tessera.VulkanError) as n:
        tessera.Dispatcher(device_name="no such device anywhere", run_benchmark=False)
    assert n.value.code == 503
    with pytest.raises(tessera.VulkanError) as v:
        tessera.Dispatcher(spirv_val_path="/nonexistent/spirv-val", run_benchmark=False)
    assert v.value.code == 509
    with pytest.raises(tessera.ArgumentError):
        tessera.Dispatcher(device_index=-2)
    with pytest.raises(tessera.ArgumentTypeError):
        tessera.Dispatcher(device_name=b"lavapipe")  # type: ignore[arg-type]


def test_device_and_benchmark(dispatcher: tessera.Dispatcher) -> None:
    device = dispatcher.device()
    assert device.name and device.max_invocations > 0 and device.max_storage_buffer_range > 0
    assert device.copy_mbps > 0 and device.fma_mflops > 0
    bench = dispatcher.benchmark()
    assert bench.copy_gbps > 0 and bench.fma_gflops > 0
    assert dispatcher.last_failure() is None


def test_saxpy_with_numpy_in_place(dispatcher: tessera.Dispatcher) -> None:
    x = np.arange(N, dtype=np.float32)
    y = np.ones(N, dtype=np.float32)
    out = np.zeros(N, dtype=np.float32)
    result = dispatcher.run(
        kernel("saxpy.spv"),
        [tessera.KernelBuffer(0, init=x), tessera.KernelBuffer(1, init=y, readback=True, output=out)],
        grid=((N + 63) // 64, 1, 1),
        push_constants=saxpy_push(),
    )
    # Written into the array given, which is also what the result holds.
    assert result.outputs[1] is out
    np.testing.assert_allclose(out, ALPHA * x + 1.0, rtol=1e-6)
    assert result.usage.dispatches == 1
    assert result.usage.bytes_in == 2 * 4 * N and result.usage.bytes_out == 4 * N
    assert (y == 1.0).all()  # inputs are only read


def test_saxpy_with_bytes(dispatcher: tessera.Dispatcher) -> None:
    x = struct.pack("<%df" % N, *range(N))
    y = struct.pack("<%df" % N, *([1.0] * N))
    result = dispatcher.run(
        kernel("saxpy.spv"),
        (tessera.KernelBuffer(0, init=x), tessera.KernelBuffer(1, init=memoryview(y), readback=True)),
        grid=[(N + 63) // 64, 1, 1],
        push_constants=bytearray(saxpy_push()),
    )
    out = result.outputs[1]
    assert isinstance(out, bytearray) and len(out) == 4 * N
    values = struct.unpack("<%df" % N, out)
    assert all(abs(v - (ALPHA * i + 1.0)) < 1e-3 for i, v in enumerate(values))


def test_argument_errors_leave_it_usable(dispatcher: tessera.Dispatcher) -> None:
    spirv = kernel("saxpy.spv")
    x = np.arange(N, dtype=np.float32)
    grid = ((N + 63) // 64, 1, 1)
    small = bytearray(10)
    with pytest.raises(tessera.BufferTooSmallError):
        dispatcher.run(spirv, [tessera.KernelBuffer(0, init=x),
                               tessera.KernelBuffer(1, len=4 * N, readback=True, output=small)],
                       grid, push_constants=saxpy_push())
    with pytest.raises(tessera.ArgumentTypeError):
        dispatcher.run(spirv, [tessera.KernelBuffer(0, init=x),
                               tessera.KernelBuffer(1, init=x, readback=True, output=b"\x00" * 4000)],
                       grid, push_constants=saxpy_push())
    with pytest.raises(tessera.ArgumentError):
        dispatcher.run(spirv, [tessera.KernelBuffer(0, init=x, output=bytearray(4000))], grid)
    with pytest.raises(tessera.ArgumentError):
        dispatcher.run(spirv, [tessera.KernelBuffer(0, init=x)], grid=(1, 1))
    with pytest.raises(tessera.ArgumentTypeError):
        dispatcher.run(spirv, tessera.KernelBuffer(0, init=x), grid)  # type: ignore[arg-type]
    with pytest.raises(tessera.ArgumentTypeError):
        dispatcher.run(spirv, [(0, x)], grid)  # type: ignore[list-item]
    with pytest.raises(tessera.ArgumentError):
        dispatcher.run(spirv, [tessera.KernelBuffer(0, init=x)], grid, timeout=-1)
    # A wrong entry point is the kernel's fault: refused by the gate.
    with pytest.raises(tessera.KernelRejectedError) as e:
        dispatcher.run(spirv, [tessera.KernelBuffer(0, init=x),
                               tessera.KernelBuffer(1, init=x, readback=True)],
                       grid, entry_point="not_main", push_constants=saxpy_push())
    assert e.value.rule > 0
    test_saxpy_with_numpy_in_place(dispatcher)


def test_refused_kernel(dispatcher: tessera.Dispatcher) -> None:
    data = bytearray(1024)
    with pytest.raises(tessera.KernelRejectedError) as e:
        dispatcher.run(kernel("hostile_ptr_bitcast.spv"),
                       [tessera.KernelBuffer(0, len=1024, readback=True, output=data)],
                       (1, 1, 1), timeout=5)
    assert 10000 < e.value.code < 20000 and e.value.detail and "rejected" in e.value.detail
    failure = dispatcher.last_failure()
    assert failure is not None
    assert failure.reason == tessera.FailReason.KERNEL_REJECTED
    assert failure.detail & 0xFFFF == e.value.rule
    assert "rejected" in dispatcher.last_error()


def test_timeout(dispatcher: tessera.Dispatcher) -> None:
    data = np.zeros(16, dtype=np.uint32)
    with pytest.raises(tessera.JobError) as e:
        dispatcher.run(kernel("hostile_loop.spv"), [tessera.KernelBuffer(0, init=data)],
                       (65535, 1, 1), timeout=0.3)
    assert e.value.code == 2101
    failure = dispatcher.last_failure()
    assert failure is not None and failure.reason == tessera.FailReason.TIMEOUT
    assert failure.usage.gpu_time_us == 300_000
    # The watchdog makes the kernel leave its loop; its device is reclaimed then.
    deadline = time.monotonic() + 10
    while dispatcher.reclaim() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert dispatcher.reclaim() == 0


def test_closed_dispatcher(spirv_val: str) -> None:
    d = tessera.Dispatcher(spirv_val_path=spirv_val, run_benchmark=False)
    assert d.device().fma_mflops == 0
    d.close()
    with pytest.raises(tessera.ClosedError):
        d.device()
    with pytest.raises(tessera.ClosedError):
        d.run(b"", [], (1, 1, 1))
