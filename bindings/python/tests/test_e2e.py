"""End to end, as ci/demo does it: throwaway certificates, the reference
coordinator on loopback, a provider on `tessera.Runtime` in this process,
and `tessera-requester` submitting a 32x32 matrix multiply
(core/kernels/matmul.spv) that it checks against a CPU reference, with the
signed evidence and receipt. The provider runs the kernel on the Vulkan
device (lavapipe in CI), or through a Python executor (on the device, or
with NumPy), collects its receipt through the receipt callback, and drains
cleanly. Then the examples (examples/python) as a user runs them."""

from __future__ import annotations

import logging
import os
import signal
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, NamedTuple, Tuple

import numpy as np
import pytest

import tessera
from conftest import EXAMPLES, REPO

N = 32
TIMEOUT = 120


class Coordinator(NamedTuple):
    addr: str
    ca: Path


@pytest.fixture(scope="module")
def coordinator(bin_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Coordinator]:
    work = tmp_path_factory.mktemp("coordinator")
    subprocess.run([str(bin_dir / "tessera-certs"), str(work / "certs")], check=True,
                   stdout=subprocess.DEVNULL, timeout=TIMEOUT)
    log = open(work / "coordinator.log", "w")
    proc = subprocess.Popen([str(bin_dir / "tessera-coordinator"), "--listen", "127.0.0.1:0",
                             "--certs", str(work / "certs")],
                            stdout=subprocess.PIPE, stderr=log, text=True)
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert "listening" in first, first
        yield Coordinator(first.split()[-1], work / "certs" / "ca.pem")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def request(bin_dir: Path, c: Coordinator) -> "subprocess.CompletedProcess[str]":
    """A requester's 32x32 matrix multiply, checked against the CPU."""
    return subprocess.run(
        [str(bin_dir / "tessera-requester"), "--coordinator", c.addr, "--ca", str(c.ca),
         "--demo-matmul", str(N), "--kernel", "core/kernels/matmul.spv"],
        cwd=REPO, capture_output=True, text=True, timeout=TIMEOUT,
    )


class Lines(logging.Handler):
    """The library's log lines, for waiting on one."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: List[str] = []
        self.changed = threading.Condition()

    def emit(self, record: logging.LogRecord) -> None:
        with self.changed:
            self.lines.append(record.getMessage())
            self.changed.notify_all()

    def wait_for(self, text: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        with self.changed:
            while not any(text in line for line in self.lines):
                left = deadline - time.monotonic()
                assert left > 0, "timed out waiting for %r; log:\n%s" % (text, "\n".join(self.lines))
                self.changed.wait(left)


@pytest.fixture
def lines() -> Iterator[Lines]:
    handler = Lines()
    logger = logging.getLogger("tessera")
    logger.addHandler(handler)
    old = logger.level
    logger.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old)


class Provider(NamedTuple):
    runtime: tessera.Runtime
    public_key: bytes
    receipts: List[Tuple[int, bytes]]


def provider(c: Coordinator, lines: Lines, store: Path, **kwargs: object) -> Provider:
    """A provider on tessera.Runtime with a fresh key, its session up."""
    signer = tessera.Signer.from_seed(os.urandom(32))
    public_key = signer.public_key
    receipts: List[Tuple[int, bytes]] = []

    def on_receipt(job: int, receipt: bytes) -> None:
        receipts.append((job, receipt))

    lines.lines.clear()
    runtime = tessera.Runtime(
        c.addr, signer, ca_file=c.ca, server_name="localhost", store_dir=store,
        price_base=100, price_per_gpu_ms=10, price_per_mib_in=2, price_per_mib_out=2, floor=120,
        drain_timeout=20, on_receipt=on_receipt, log_level=logging.INFO,
        **kwargs,  # type: ignore[arg-type]
    )
    runtime.start()
    lines.wait_for("session established")
    return Provider(runtime, public_key, receipts)


def drained(p: Provider, jobs: int, failed: int = 0) -> List[tessera.ReceiptInfo]:
    """Drains the provider, checks it ended cleanly, and verifies the
    receipts it collected as a chain from sequence 1."""
    p.runtime.drain(20)
    assert p.runtime.wait(timeout=60)
    status = p.runtime.status()
    assert status.finished and status.jobs_completed == jobs and status.jobs_failed == failed
    assert status.sessions >= 1
    p.runtime.close()
    assert len(p.receipts) == jobs + failed
    infos = []
    with tessera.ChainVerifier(p.public_key) as verifier:
        for job, receipt in p.receipts:
            info = verifier.verify_next(receipt)
            assert info.job == job
            infos.append(info)
    return infos


def check_requester(out: "subprocess.CompletedProcess[str]") -> None:
    assert out.returncode == 0, out.stdout + out.stderr
    checks = [line for line in out.stdout.splitlines() if "result check" in line]
    assert len(checks) == 1 and checks[0].rstrip().endswith(": ok"), out.stdout


def test_matmul_on_the_device(bin_dir: Path, coordinator: Coordinator, lines: Lines, tmp_path: Path,
                              spirv_val: str) -> None:
    p = provider(coordinator, lines, tmp_path / "store")
    check_requester(request(bin_dir, coordinator))
    [info] = drained(p, jobs=1)
    assert info.completed and info.sequence == 1 and info.price >= 120
    # tessera-requester seals the job: the receipt counts the output as
    # sealed, its 16-byte tag and the 48 bytes that lead a first output.
    assert info.output_len == N * N * 4 + 16 + 48
    assert any("drained" in line.lower() or "goodbye" in line.lower() for line in lines.lines), lines.lines


def test_matmul_through_an_executor_on_the_device(bin_dir: Path, coordinator: Coordinator, lines: Lines,
                                                  tmp_path: Path, spirv_val: str) -> None:
    seen: List[tessera.Job] = []
    layout: List[Tuple[int, int, int, bool]] = []

    def executor(job: tessera.Job) -> None:
        seen.append(job)
        layout.extend((b.binding, b.len, len(b.init), b.readback) for b in job.buffers)
        assert not job.cancelled
        assert job.entry_point == "main" and job.push_constants == struct.pack("<3I", N, N, N)
        assert job.grid == (N // 16, N // 16, 1) and job.timeout > 0
        assert bytes(job.spirv) == (REPO / "core" / "kernels" / "matmul.spv").read_bytes()
        usage = job.run_on_device()
        assert usage.dispatches >= 1

    p = provider(coordinator, lines, tmp_path / "store", executor=executor)
    check_requester(request(bin_dir, coordinator))
    [info] = drained(p, jobs=1)
    assert info.completed
    assert len(seen) == 1
    size = N * N * 4
    assert layout == [(0, size, size, False), (1, size, size, False), (2, size, 0, True)]
    # The job and its memory are gone once the executor returned.
    with pytest.raises(tessera.ClosedError):
        seen[0].cancelled
    with pytest.raises(ValueError):
        bytes(seen[0].spirv)


def matmul(job: tessera.Job) -> None:
    """An executor that runs the matrix multiply itself, with NumPy."""
    m, n, k = struct.unpack("<3I", job.push_constants)
    a = np.frombuffer(job.buffers[0].init, dtype=np.float32).reshape(m, k)
    b = np.frombuffer(job.buffers[1].init, dtype=np.float32).reshape(k, n)
    c = np.frombuffer(job.output(2), dtype=np.float32).reshape(m, n)
    np.matmul(a, b, out=c)
    job.set_usage(gpu_time_us=1000, dispatches=1)
    del a, b, c


def test_matmul_by_a_numpy_executor(bin_dir: Path, coordinator: Coordinator, lines: Lines, tmp_path: Path,
                                    spirv_val: str) -> None:
    accepting = [False]
    p = provider(coordinator, lines, tmp_path / "store", executor=matmul,
                 accepting_jobs=lambda: accepting[0])
    # Not taking work: the requester finds no provider.
    refused = request(bin_dir, coordinator)
    assert refused.returncode != 0 and "no provider took the job" in refused.stderr, refused.stderr
    accepting[0] = True
    time.sleep(0.5)
    check_requester(request(bin_dir, coordinator))
    [info] = drained(p, jobs=1)
    assert info.completed and info.usage.gpu_time_us == 1000


def test_a_failing_executor_signs_a_failure(bin_dir: Path, coordinator: Coordinator, lines: Lines,
                                            tmp_path: Path, spirv_val: str) -> None:
    def broken(job: tessera.Job) -> None:
        raise RuntimeError("the host's renderer crashed")

    p = provider(coordinator, lines, tmp_path / "store", executor=broken)
    out = request(bin_dir, coordinator)
    assert out.returncode != 0 and "failed on the provider" in out.stderr, out.stderr
    # The host reason, with no dispatcher code to misread (detail 0).
    assert "failed for another reason (provider code 0)" in out.stderr
    assert "result check" not in out.stdout
    [info] = drained(p, jobs=0, failed=1)
    assert info.status == tessera.FailReason.HOST and info.output_len == 0 and info.price == 0


KEEPERS: Dict[str, Callable[[tessera.Job], object]] = {
    "array-over-input": lambda job: np.frombuffer(job.buffers[0].init, dtype=np.float32),
    "array-over-output": lambda job: np.frombuffer(job.output(2), dtype=np.float32),
    "memoryview-slice": lambda job: job.output(2)[:16],
    "the-kernel-view": lambda job: job.spirv,
}


@pytest.mark.parametrize("keep", sorted(KEEPERS))
def test_an_executor_keeping_the_jobs_memory_fails_the_job(bin_dir: Path, coordinator: Coordinator,
                                                           lines: Lines, tmp_path: Path, spirv_val: str,
                                                           keep: str) -> None:
    """A view of a job's memory kept past the executor's return cannot be
    invalidated by the binding; the job fails and the log says why."""
    kept: List[Any] = []

    def keeping(job: tessera.Job) -> None:
        matmul(job)
        kept.append(KEEPERS[keep](job))

    p = provider(coordinator, lines, tmp_path / "store", executor=keeping)
    out = request(bin_dir, coordinator)
    # What was kept points into freed memory: never read, dropped at once.
    kept.clear()
    assert out.returncode != 0 and "another reason (provider code 0)" in out.stderr, out.stderr
    assert any("kept a view of the job's memory" in line for line in lines.lines)
    [info] = drained(p, jobs=0, failed=1)
    assert info.status == tessera.FailReason.HOST


def wait_for_file(path: Path, text: str, proc: "subprocess.Popen[str]", timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and text in path.read_text():
            return
        assert proc.poll() is None, path.read_text() if path.exists() else "exited"
        time.sleep(0.1)
    raise AssertionError("timed out waiting for %r in %s:\n%s" % (text, path, path.read_text()))


def run_example(name: str, *args: str) -> "subprocess.CompletedProcess[str]":
    return subprocess.run([sys.executable, str(EXAMPLES / name), *args], capture_output=True, text=True,
                          timeout=TIMEOUT)


@pytest.mark.parametrize("executor", ["device", "python"])
def test_examples(bin_dir: Path, coordinator: Coordinator, tmp_path: Path, spirv_val: str,
                  executor: str) -> None:
    """examples/python/provider.py serves two jobs, drains on SIGINT and
    verifies its receipts; verify_receipts.py verifies the file it wrote,
    and refuses it once tampered with."""
    key = tmp_path / "device.key"
    receipts = tmp_path / "receipts.txt"
    stdout, stderr = tmp_path / "provider.out", tmp_path / "provider.log"
    with open(stdout, "w") as out, open(stderr, "w") as err:
        proc = subprocess.Popen(
            [sys.executable, str(EXAMPLES / "provider.py"), "--coordinator", coordinator.addr,
             "--ca", str(coordinator.ca), "--server-name", "localhost", "--key", str(key),
             "--store", str(tmp_path / "store"), "--receipts", str(receipts), "--executor", executor,
             "--status-every", "1"],
            stdout=out, stderr=err, text=True,
        )
        try:
            wait_for_file(stderr, "session established", proc)
            assert (key.stat().st_mode & 0o777) == 0o600
            for _ in range(2):
                check_requester(request(bin_dir, coordinator))
            proc.send_signal(signal.SIGINT)
            assert proc.wait(timeout=60) == 0, stderr.read_text()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    log = stderr.read_text()
    assert "draining" in log and "drained" in log and "Traceback" not in log
    assert "verified 2 receipt(s), sequences 1 to 2" in stdout.read_text()
    if executor == "python":
        assert log.count("kernel 'main'") == 2

    public_key = tessera.public_key(key.read_bytes()).hex()
    lines = [line for line in receipts.read_text().splitlines() if line and not line.startswith("#")]
    assert len(lines) == 2 and all(len(line) == 2 * tessera.RECEIPT_LEN for line in lines)
    ok = run_example("verify_receipts.py", "--public-key", public_key, str(receipts))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.count("completed, price") == 2
    assert "2 receipt(s) verified" in ok.stdout and "chain at sequence 3" in ok.stdout

    # Another key's chain, a tampered receipt, a dropped one: refused.
    other = run_example("verify_receipts.py", "--public-key", "00" * 32, str(receipts))
    assert other.returncode == 1 and "does not verify" in other.stdout
    tampered = tmp_path / "tampered.txt"
    bad = lines[1][:200] + ("0" if lines[1][200] != "0" else "1") + lines[1][201:]
    tampered.write_text("\n".join([lines[0], bad]) + "\n")
    refused = run_example("verify_receipts.py", "--public-key", public_key, str(tampered))
    assert refused.returncode == 1 and "receipt 2 does not verify" in refused.stdout
    dropped = tmp_path / "dropped.txt"
    dropped.write_text(lines[1] + "\n")
    gap = run_example("verify_receipts.py", "--public-key", public_key, str(dropped))
    assert gap.returncode == 1 and "verify_out_of_order" in gap.stdout
    usage = run_example("verify_receipts.py", "--public-key", "xyz", str(receipts))
    assert usage.returncode == 2


