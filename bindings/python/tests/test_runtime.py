"""The network runtime through the Python API, with no coordinator
listening (it keeps trying to connect, as it must): configuration errors
(which field, in words), a provider from keyword arguments and from the
operator's TOML file on the Vulkan device, stepped from this program's loop
with select() on its descriptor, then on its own thread and drained; the
log lines in Python's logging; Ctrl-C on `Runtime.run()` in a subprocess."""

from __future__ import annotations

import logging
import os
import select
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator, List, Optional

import pytest

import tessera

SEED = bytes([9]) * 32
PIN = bytes([0xAB]) + bytes(31)
NOWHERE = "127.0.0.1:1"


def runtime(**kwargs: Any) -> tessera.Runtime:
    args: dict[str, Any] = dict(pinned_key_sha256=PIN, server_name="localhost", drain_timeout=0.5)
    args.update(kwargs)
    return tessera.Runtime(NOWHERE, tessera.Signer.from_seed(SEED), **args)


@pytest.fixture
def rt(spirv_val: str) -> Iterator[tessera.Runtime]:
    with runtime() as r:
        yield r


def test_configuration_errors(spirv_val: str) -> None:
    def new(coordinator: str = NOWHERE, **kwargs: Any) -> tessera.Runtime:
        return tessera.Runtime(coordinator, tessera.Signer.from_seed(SEED), **kwargs)

    with pytest.raises(tessera.ConfigError) as e:
        new("", pinned_key_sha256=PIN)
    assert e.value.code == 200 and e.value.detail
    with pytest.raises(tessera.ConfigError) as t:
        new()
    assert t.value.detail and "[tls]" in t.value.detail
    with pytest.raises(tessera.ConfigError):
        new(pinned_key_sha256=PIN, ca_file="/nonexistent/ca.pem")
    with pytest.raises(tessera.ConfigError) as m:
        new(pinned_key_sha256=PIN, max_concurrent=300)
    assert m.value.detail and "max_concurrent" in m.value.detail
    with pytest.raises(tessera.VulkanError) as d:
        new(pinned_key_sha256=PIN, device_index=1000)
    assert d.value.code == 503
    with pytest.raises(tessera.ArgumentError) as k:
        new(pinned_key_sha256=PIN, price_per_frame=3)
    assert k.value.detail and "price_per_frame" in k.value.detail
    with pytest.raises(tessera.ArgumentError):
        new(pinned_key_sha256=PIN[:16])
    with pytest.raises(tessera.ArgumentError):
        new(pinned_key_sha256=PIN, drain_timeout=-1)
    with pytest.raises(tessera.ArgumentTypeError):
        new(pinned_key_sha256=PIN, executor=42)
    with pytest.raises(tessera.ArgumentError):
        new(pinned_key_sha256=PIN, accepting_jobs=lambda: True)
    with pytest.raises(tessera.LibraryIOError) as io:
        tessera.Runtime.from_toml("/nonexistent/agent.toml")
    assert io.value.code == 8 and io.value.detail and "/nonexistent/agent.toml" in io.value.detail


def test_the_runtime_takes_its_signer_over(spirv_val: str) -> None:
    signer = tessera.Signer.from_seed(SEED)
    with pytest.raises(tessera.ConfigError):
        tessera.Runtime(NOWHERE, signer)  # no trust: refused, the signer taken all the same
    assert signer.closed
    with pytest.raises(tessera.ClosedError):
        tessera.Runtime(NOWHERE, signer, pinned_key_sha256=PIN)


def test_stepped_then_threaded(rt: tessera.Runtime) -> None:
    fd = rt.fd()
    assert fd >= 0
    # The host's loop: wait for the descriptor until the next wake-up, step.
    for _ in range(5):
        wake = rt.next_wakeup()
        select.select([fd], [], [], 0.02 if wake is None else min(wake, 0.02))
        rt.step()
    status = rt.status()
    assert status.state == tessera.ConnState.DISCONNECTED
    assert status.sessions == 0 and not status.finished
    assert NOWHERE in rt.status_text()
    # The runtime's key is the one of the signer it took.
    with tessera.Signer.from_seed(SEED) as signer:
        assert rt.public_key == signer.public_key

    # The user renders: the device takes no new work.
    rt.set_accepting_jobs(False)
    rt.step()
    assert rt.status().device_unavailable
    rt.set_accepting_jobs(True)
    rt.step()
    assert not rt.status().device_unavailable

    with pytest.raises(tessera.ArgumentError):
        rt.wait()

    # Its own thread now: only the thread-safe calls apply.
    rt.start()
    with pytest.raises(tessera.InUseError):
        rt.start()
    with pytest.raises(tessera.InUseError):
        rt.step()
    assert rt.wait(timeout=0.05) is False
    rt.drain(0.2)
    assert rt.wait(timeout=30) is True
    assert rt.status().finished
    with pytest.raises(tessera.StoppedError) as e:
        rt.step()
    assert e.value.code == 10
    rt.drain()
    rt.close()
    assert rt.closed
    with pytest.raises(tessera.ClosedError):
        rt.status()


def test_log_lines_reach_python_logging(spirv_val: str, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="tessera"):
        with runtime(log_level=logging.INFO) as r:
            r.step()
    names = {rec.name for rec in caplog.records}
    assert any(n.startswith("tessera.") for n in names), names
    assert any(rec.getMessage().startswith("device: ") for rec in caplog.records)
    # Turned off, nothing more arrives.
    tessera.forward_logs(None)
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger="tessera"):
        with runtime(log_level=None) as r:
            r.step()
    assert not [rec for rec in caplog.records if rec.name.startswith("tessera.")]
    tessera.forward_logs(logging.INFO)


def test_from_the_operators_file(tmp_path: Path, spirv_val: str) -> None:
    toml = tmp_path / "agent.toml"
    toml.write_text(textwrap.dedent("""
        coordinator = "%s"
        [tls]
        pinned_key_sha256 = "%s"
        [key]
        file = "%s"
        [store]
        dir = "%s"
        [timers]
        drain_timeout_s = 2
        [device]
        spirv_val = "%s"
    """ % (NOWHERE, PIN.hex(), tmp_path / "device.key", tmp_path / "store", spirv_val)))
    with tessera.Runtime.from_toml(toml) as r:
        assert (tmp_path / "device.key").exists()
        r.step()
        assert r.status().state == tessera.ConnState.DISCONNECTED
    # The key it created is a PKCS#8 document the package reads.
    assert len(tessera.public_key((tmp_path / "device.key").read_bytes())) == 32


def test_close_drains_a_running_runtime(spirv_val: str) -> None:
    r = runtime()
    r.start()
    started = time.monotonic()
    r.close()
    assert time.monotonic() - started < 20
    assert r.closed


CTRL_C = """
import logging, sys, tessera

class Started(logging.Handler):
    # The runtime's first line comes from its own thread, once run() started it.
    def emit(self, record):
        if "connecting" in record.getMessage():
            print("running", flush=True)

logging.basicConfig(level=logging.INFO, stream=sys.stderr)
logging.getLogger("tessera").addHandler(Started())
rt = tessera.Runtime("127.0.0.1:1", tessera.Signer.from_seed(bytes(32)),
                     pinned_key_sha256=bytes([0xAB]) + bytes(31), drain_timeout=5)
rt.run(drain_timeout=2)
print("returned finished=%s" % rt.status().finished, flush=True)
rt.close()
"""


def test_ctrl_c_drains_and_returns(spirv_val: str) -> None:
    proc = subprocess.Popen([sys.executable, "-c", CTRL_C], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=dict(os.environ, PYTHONUNBUFFERED="1"))
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "running"
        time.sleep(0.2)
        assert proc.poll() is None
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert "returned finished=True" in out, (out, err)
    assert "draining (interrupted)" in err
    assert "Traceback" not in err


class Reentering(logging.Handler):
    """A log handler that calls back into the runtime whose line it gets,
    as a host showing the status with each line would."""

    def __init__(self, rt: tessera.Runtime, calls: Any) -> None:
        super().__init__(logging.DEBUG)
        self.rt = rt
        self.calls = calls
        self.results: dict[str, Any] = {}

    def emit(self, record: logging.LogRecord) -> None:
        if self.results:
            return
        for name, call in self.calls.items():
            try:
                self.results[name] = call(self.rt)
            except tessera.Error as e:
                self.results[name] = e


def test_callbacks_calling_back_into_the_runtime(spirv_val: str) -> None:
    """From a log line written during its own step, the runtime's calls
    that need it to themselves are refused (InUseError), the thread-safe
    ones work; from its own thread, waiting for it or closing it is refused
    (it would wait for itself)."""
    logger = logging.getLogger("tessera")
    with runtime(log_level=logging.DEBUG) as r:
        handler = Reentering(r, {
            "step": lambda rt: rt.step(),
            "status": lambda rt: rt.status().state,
            "close": lambda rt: rt.close(),
        })
        logger.addHandler(handler)
        try:
            r.step()
        finally:
            logger.removeHandler(handler)
        assert isinstance(handler.results["step"], tessera.InUseError)
        assert handler.results["status"] == tessera.ConnState.DISCONNECTED
        assert isinstance(handler.results["close"], tessera.InUseError)
        assert not r.closed

        threaded = Reentering(r, {
            "wait": lambda rt: rt.wait(),
            "close": lambda rt: rt.close(),
            "drain": lambda rt: rt.drain(0.2),
        })
        r.start()
        logger.addHandler(threaded)
        try:
            assert r.wait(timeout=30)
        finally:
            logger.removeHandler(threaded)
        assert isinstance(threaded.results["wait"], tessera.InUseError)
        assert isinstance(threaded.results["close"], tessera.InUseError)
        assert threaded.results["drain"] is None
        assert r.status().finished


class FakeRun:
    """The library's `tessera_job_run_*` for one job, with `run_on_device`
    held until the test lets it go: what a `Job` calls, without a
    coordinator."""

    def __init__(self) -> None:
        from tessera._ffi import ffi
        self.ffi = ffi
        self.name = ffi.new("char[]", b"main")
        self.in_call = threading.Event()
        self.go = threading.Event()
        self.calls: List[str] = []
        self.during: Optional[Callable[[], None]] = None

    def tessera_job_run_kernel(self, run: Any, out: Any) -> int:
        out.entry_point = self.name
        out.grid = [1, 1, 1]
        return 0

    def tessera_job_run_id(self, run: Any) -> int:
        return 7

    def tessera_job_run_cancelled(self, run: Any) -> bool:
        self.calls.append("cancelled")
        return False

    def tessera_job_run_on_device(self, run: Any, usage: Any) -> int:
        self.calls.append("on_device")
        self.in_call.set()
        self.go.wait(10)
        if self.during is not None:
            # A log line written during the call, whose handler calls in.
            self.during()
        return 0


def test_a_call_on_a_job_from_another_thread_ends_before_the_job_does(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """An executor that hands its job to a thread (to run it on the device
    under a timeout of its own, say) may return while that thread is inside
    a call on the job. The run, and the output memory that call writes, are
    freed once the executor's callback returns: the callback waits for the
    call in progress, and later calls raise ClosedError."""
    from tessera import _runtime
    from tessera._ffi import ffi

    fake = FakeRun()
    monkeypatch.setattr(_runtime, "lib", fake)
    started: List[tessera.Job] = []

    def executor(job: tessera.Job) -> None:
        started.append(job)
        threading.Thread(target=job.run_on_device, daemon=True).start()
        assert fake.in_call.wait(10)

    host = _runtime._Host(executor, None, None)
    userdata = ffi.new_handle(host)
    run = ffi.cast("tessera_job_run *", 0x1000)
    codes: List[int] = []
    callback = threading.Thread(target=lambda: codes.append(_runtime._execute_callback(userdata, run)))
    callback.start()
    try:
        callback.join(0.5)
        # The device call still runs on the run: the callback has not returned.
        assert callback.is_alive() and not codes
    finally:
        fake.go.set()
    callback.join(10)
    assert codes == [0] and fake.calls == ["on_device"]  # TESSERA_OK: the job ran
    with pytest.raises(tessera.ClosedError):
        started[0].cancelled
    assert fake.calls == ["on_device"]


def test_a_call_on_a_job_from_a_callback_of_its_own_call_is_refused(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A log line written while the job runs on the device reaches Python's
    logging on the executor's thread; a handler there that calls the job
    again (run_on_device inside run_on_device: the device entered twice)
    gets InUseError, as a callback calling into the object whose call runs
    it does everywhere else."""
    from tessera import _runtime
    from tessera._ffi import ffi

    fake = FakeRun()
    fake.go.set()
    monkeypatch.setattr(_runtime, "lib", fake)
    inner: List[object] = []

    def executor(job: tessera.Job) -> None:
        def again() -> None:
            try:
                inner.append(job.run_on_device())
            except tessera.InUseError as e:
                inner.append(e)
            try:
                inner.append(job.cancelled)
            except tessera.InUseError as e:
                inner.append(e)

        fake.during = again
        job.run_on_device()
        fake.during = None

    host = _runtime._Host(executor, None, None)
    userdata = ffi.new_handle(host)
    code = _runtime._execute_callback(userdata, ffi.cast("tessera_job_run *", 0x1000))
    assert code == 0
    assert fake.calls == ["on_device"]
    assert len(inner) == 2 and all(isinstance(e, tessera.InUseError) for e in inner)
