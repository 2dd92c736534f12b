"""The network runtime: a whole provider (TLS session with reconnects, the
agent, a result store, jobs on the Vulkan device or on a Python executor),
and the bridge from the library's log lines to Python's `logging`."""

from __future__ import annotations

import atexit
import logging
import os
import sys
import threading
import traceback
import weakref
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple, Union

from ._errors import (
    FAIL_BASE,
    IN_USE,
    INVALID_ARGUMENT,
    NOTHING,
    OK,
    ArgumentError,
    ArgumentTypeError,
    ClosedError,
    Error,
    InUseError,
    check,
    error_for,
)
from ._ffi import Buffer, c_string, c_text, ffi, fixed, integer, lib, text_from
from ._keys import Signer, signer_handle
from ._managed import Managed
from ._types import ConnState, FailReason, LogLevel, Policy, Usage, policy_with

_log = logging.getLogger("tessera")

# Set while a thread runs one of the library's callbacks (a log line, the
# executor, the receipt callback): from there, waiting for a runtime to end
# would wait for the thread that waits.
_callback = threading.local()


class _InCallback:
    def __enter__(self) -> None:
        _callback.depth = getattr(_callback, "depth", 0) + 1

    def __exit__(self, *exc: object) -> None:
        _callback.depth -= 1


def _in_callback() -> bool:
    return bool(getattr(_callback, "depth", 0))

PathLike = Union[str, "os.PathLike[str]"]

# ----- logging ---------------------------------------------------------------------

_PY_LEVELS = {
    LogLevel.ERROR: logging.ERROR,
    LogLevel.WARN: logging.WARNING,
    LogLevel.INFO: logging.INFO,
    LogLevel.DEBUG: logging.DEBUG,
    LogLevel.TRACE: 5,
}


def _library_level(level: int) -> LogLevel:
    """The library's level that passes what Python's `level` lets through."""
    if level <= 5:
        return LogLevel.TRACE
    if level <= logging.DEBUG:
        return LogLevel.DEBUG
    if level <= logging.INFO:
        return LogLevel.INFO
    if level <= logging.WARNING:
        return LogLevel.WARN
    return LogLevel.ERROR


def _log_callback(userdata: Any, level: int, target: Any, message: Any) -> None:
    name = c_text(target).replace("::", ".")
    logger = logging.getLogger("tessera." + name if name else "tessera")
    with _InCallback():
        logger.log(_PY_LEVELS.get(LogLevel(level), logging.INFO) if 1 <= level <= 5 else logging.INFO,
                   "%s", c_text(message))


_c_log: Any = ffi.callback("tessera_log_fn", _log_callback)
_log_lock = threading.Lock()
_forwarding = False


def forward_logs(level: Optional[int] = logging.INFO) -> None:
    """Sends the library's log lines up to `level` (a `logging` level) to
    Python's `logging`, on loggers named ``tessera.<module>``
    (``tessera.tessera_core.net.runtime``). ``None`` turns forwarding off.
    Process-wide; the library's threads call into Python for each line."""
    global _forwarding
    with _log_lock:
        if level is None:
            check(lib.tessera_set_log_callback(ffi.NULL, ffi.NULL, 0))
            _forwarding = False
        else:
            check(lib.tessera_set_log_callback(_c_log, ffi.NULL,
                                               int(_library_level(integer(level, 32, "level")))))
            _forwarding = True


# ----- the executor ------------------------------------------------------------------


@dataclass(frozen=True)
class JobBuffer:
    """One buffer of a job given to an executor. `init` is its initial
    contents (read-only, possibly shorter than `len`: the rest is zero);
    `output`, for a read-back buffer, is zeroed writable memory of `len`
    bytes whose contents are returned when the executor returns. Both are
    valid only during the executor's call."""

    binding: int
    len: int
    init: memoryview
    readback: bool
    output: Optional[memoryview]


class Job:
    """A job the runtime gives to a Python executor, valid during the call.

    The kernel (`spirv`, `entry_point`, `specialization`, `push_constants`,
    `grid`), its `buffers` and the time left (`timeout`, seconds) describe
    it; the executor fills each read-back buffer's `output` (or lets
    `run_on_device` do it) and returns. To fail the job it raises:
    `fail()` first sets the reason; a `tessera.Error` (as `run_on_device`
    raises) fails it as the device would; any other exception fails it with
    reason host (7).

    The memoryviews (`spirv`, each buffer's `init` and `output`) are the
    library's memory, valid only during the call: an executor that needs
    data afterwards copies it (``bytes(view)``). A view, or an array over
    one, still referenced when the executor returns fails the job.

    Other threads may call the job's methods while the executor runs, one
    call at a time (a call waits for one in progress); the executor's
    return waits for a call in progress on another thread, and calls after
    it raise `ClosedError`. A call made from a callback of a call on the
    job (a log handler during `run_on_device`) raises `InUseError`."""

    def __init__(self, run: Any) -> None:
        self._run = run
        # Held by each call on the run, and by the end of the executor's
        # call: the run (and the output memory it writes) is freed once the
        # callback returns, so no call may be in progress then, and the C
        # functions take the run from one thread at a time, and not from a
        # callback of their own call (the device entered twice).
        self._calls = threading.Lock()
        self._caller: Optional[int] = None
        self._views: List[memoryview] = []
        self._exporters: List[Any] = []
        self._exporter_refs: List[int] = []
        kernel = ffi.new("tessera_kernel_job *")
        kernel.size = ffi.sizeof("tessera_kernel_job")
        check(lib.tessera_job_run_kernel(run, kernel))
        self.id: int = int(lib.tessera_job_run_id(run))
        self.spirv: memoryview = self._view(kernel.spirv, kernel.spirv_len, readonly=True)
        self.entry_point: str = c_text(kernel.entry_point)
        self.specialization: List[Tuple[int, int]] = [
            (int(kernel.specialization[2 * i]), int(kernel.specialization[2 * i + 1]))
            for i in range(int(kernel.specialization_count))
        ]
        self.push_constants: bytes = (bytes(ffi.buffer(kernel.push_constants, kernel.push_constants_len))
                                      if kernel.push_constants_len else b"")
        self.grid: Tuple[int, int, int] = (int(kernel.grid[0]), int(kernel.grid[1]), int(kernel.grid[2]))
        self.timeout: float = int(kernel.timeout_ms) / 1000.0
        buffers = []
        for i in range(int(kernel.buffer_count)):
            b = kernel.buffers[i]
            output = self._view(b.output, b.output_len, readonly=False) if b.readback else None
            buffers.append(JobBuffer(int(b.binding), int(b.len), self._view(b.init, b.init_len, readonly=True),
                                     bool(b.readback), output))
        self.buffers: List[JobBuffer] = buffers

    def _view(self, pointer: Any, length: int, readonly: bool) -> memoryview:
        if not length or pointer == ffi.NULL:
            return memoryview(b"")
        # The exporter of the library's memory, and its references before
        # any view holds it: once every view of it is released, any more
        # means a view (an array's, say) still holds the memory.
        self._exporters.append(ffi.buffer(pointer, length))
        self._exporter_refs.append(self._references(self._exporters, -1))
        raw = memoryview(self._exporters[-1])
        self._views.append(raw)
        if not readonly:
            return raw
        view = raw.toreadonly()
        self._views.append(view)
        return view

    @staticmethod
    def _references(items: List[Any], i: int) -> int:
        return sys.getrefcount(items[i])

    @contextmanager
    def _call(self) -> Iterator[Any]:
        """The run, for one call on it (see `_calls`)."""
        if self._caller == threading.get_ident():
            raise InUseError(IN_USE, "the job is in use by a call on this thread (a callback of it)")
        with self._calls:
            if self._run is None:
                raise ClosedError(detail="the job's executor call has returned")
            self._caller = threading.get_ident()
            try:
                yield self._run
            finally:
                self._caller = None

    def output(self, binding: int) -> memoryview:
        """The output memory of the read-back buffer at `binding`."""
        for b in self.buffers:
            if b.binding == binding and b.output is not None:
                return b.output
        raise ArgumentError(INVALID_ARGUMENT, "no read-back buffer at binding %d" % binding)

    @property
    def outputs(self) -> Dict[int, memoryview]:
        """Each read-back buffer's output memory, by binding."""
        return {b.binding: b.output for b in self.buffers if b.output is not None}

    @property
    def cancelled(self) -> bool:
        """Whether the job no longer needs running (cancelled, past its
        deadline, its session ended): a long executor checks it and raises."""
        with self._call() as run:
            return bool(lib.tessera_job_run_cancelled(run))

    def run_on_device(self) -> Usage:
        """Runs the job on the runtime's own Vulkan device (its gate,
        watchdog and cancellation), writing the outputs; returns the usage.
        A failure raises the device's error (let it propagate to fail the
        job as the device would)."""
        usage = ffi.new("tessera_usage *")
        with self._call() as run:
            check(lib.tessera_job_run_on_device(run, usage))
        return Usage._from_c(usage)

    def set_usage(self, gpu_time_us: int, dispatches: int = 1) -> None:
        """The usage to report (GPU time and dispatches; the runtime counts
        the bytes)."""
        gpu = integer(gpu_time_us, 64, "gpu_time_us")
        count = integer(dispatches, 32, "dispatches")
        with self._call() as run:
            check(lib.tessera_job_run_set_usage(run, gpu, count))

    def fail(self, reason: int, detail: int = 0) -> None:
        """Sets why the job fails (a `FailReason` 1-7 and its detail), for
        an executor that then raises."""
        code = integer(int(reason), 32, "reason")
        more = integer(detail, 32, "detail")
        with self._call() as run:
            check(lib.tessera_job_run_fail(run, code, more))

    def _seal(self) -> None:
        """Notes how many references each view has while only the job holds
        it (called once the job is made, before the executor runs)."""
        self._view_refs = [self._references(self._views, i) for i in range(len(self._views))]

    def _end(self) -> bool:
        """Invalidates the job and every view of its memory. False when a
        view, or an array over one, outlived the call: the memory is freed
        when the callback returns, and that is a bug of the executor."""
        with self._calls:  # a call in progress on another thread ends first
            self._run = None
        clean = True
        for i in range(len(self._views)):
            if self._references(self._views, i) > self._view_refs[i]:
                clean = False
            try:
                self._views[i].release()
            except BufferError:
                clean = False
        for i in range(len(self._exporters)):
            if self._references(self._exporters, i) > self._exporter_refs[i]:
                clean = False
        return clean


class _Host:
    """What the runtime's C callbacks reach through their userdata."""

    def __init__(
        self,
        executor: Optional[Callable[[Job], None]],
        accepting_jobs: Optional[Callable[[], bool]],
        on_receipt: Optional[Callable[[int, bytes], None]],
    ) -> None:
        self.executor = executor
        self.accepting_jobs = accepting_jobs
        self.on_receipt = on_receipt


_HOST_FAILED = FAIL_BASE + FailReason.HOST


def _execute_callback(userdata: Any, run: Any) -> int:
    host: _Host = ffi.from_handle(userdata)
    assert host.executor is not None
    try:
        job = Job(run)
        job._seal()
    except Exception:
        _log.exception("a job could not be read for the executor")
        return _HOST_FAILED
    code = OK
    try:
        with _InCallback():
            host.executor(job)
    except Error as e:
        code = e.code or _HOST_FAILED
        _log.info("job %d failed in the executor: %s", job.id, e)
        # The executor's frames (and views of the job in their locals) go.
        traceback.clear_frames(e.__traceback__)
    except BaseException as e:  # nothing may unwind into the library
        code = _HOST_FAILED
        _log.exception("job %d: the executor raised", job.id)
        traceback.clear_frames(e.__traceback__)
    if not job._end():
        _log.error("job %d: the executor kept a view of the job's memory (a memoryview, or an array "
                   "over one) past its return; the memory is freed now, and the job fails", job.id)
        return _HOST_FAILED
    return code


def _accepting_callback(userdata: Any) -> bool:
    host: _Host = ffi.from_handle(userdata)
    assert host.accepting_jobs is not None
    try:
        with _InCallback():
            return bool(host.accepting_jobs())
    except Exception:
        _log.exception("accepting_jobs raised; taking no work")
        return False


def _receipt_callback(userdata: Any, job: int, receipt: Any, length: int) -> None:
    host: _Host = ffi.from_handle(userdata)
    assert host.on_receipt is not None
    try:
        with _InCallback():
            host.on_receipt(int(job), bytes(ffi.buffer(receipt, length)))
    except Exception:
        _log.exception("the receipt callback raised (job %d)", job)


# The C callbacks (static: each runtime's state comes through its userdata).
# An exception escaping the executor fails the job (host); the others log it.
_c_execute: Any = ffi.callback("tessera_execute_fn", _execute_callback, error=_HOST_FAILED)
_c_accepting: Any = ffi.callback("tessera_accepting_fn", _accepting_callback, error=False)
_c_receipt: Any = ffi.callback("tessera_receipt_fn", _receipt_callback)

# ----- the runtime -------------------------------------------------------------------


@dataclass(frozen=True)
class Status:
    """What an operator sees: the connection, whether the runtime has
    drained and stopped, whether the device takes no new work now, and the
    counters."""

    state: ConnState
    finished: bool
    device_unavailable: bool
    jobs_completed: int
    jobs_failed: int
    active_jobs: int
    earnings: int
    sessions: int


class Runtime(Managed):
    """A provider on the network.

    Made from keyword arguments (below) or from the operator's TOML file
    (`Runtime.from_toml`). `run()` serves until the runtime drains: it gives
    it a thread of its own, waits with the GIL released, and on Ctrl-C
    (KeyboardInterrupt) drains and returns. Hosts with their own loop use
    `start()`, `drain()`, `wait()` and `status()`, or step it themselves
    (`step`, `fd`, `next_wakeup`).

    `coordinator` is ``host:port``; trust is `ca_file` (a PEM CA; the name
    checked is `server_name`, default the host part) or
    `pinned_key_sha256` (SHA-256 of the coordinator's public key). The
    `signer` is taken over. `store_dir` keeps results until acknowledged
    (``None``: in memory). `policy`, or its fields as keywords
    (``price_base=100``), sets offers and prices. `device_index` or
    `device_name` picks the Vulkan device; `spirv_val_gate` runs the
    Khronos validator on new kernels; `drain_timeout` (seconds) bounds a
    drain.

    `executor`, when given, runs every job instead of the device: it gets a
    `Job` on the runtime's worker thread; `accepting_jobs` says whether it
    takes work now. `on_receipt(job, receipt)` is called with each receipt
    the provider signs, after it is stored. `log_level` forwards the
    library's log lines to `logging` (`forward_logs`; ``None`` leaves the
    forwarding as it is).
    """

    def __init__(
        self,
        coordinator: str,
        signer: Signer,
        *,
        ca_file: Optional[PathLike] = None,
        pinned_key_sha256: Optional[Buffer] = None,
        server_name: Optional[str] = None,
        store_dir: Optional[PathLike] = None,
        policy: Optional[Policy] = None,
        device_index: Optional[int] = None,
        device_name: Optional[str] = None,
        spirv_val_gate: bool = True,
        drain_timeout: Optional[float] = None,
        executor: Optional[Callable[[Job], None]] = None,
        accepting_jobs: Optional[Callable[[], bool]] = None,
        on_receipt: Optional[Callable[[int, bytes], None]] = None,
        log_level: Optional[int] = logging.INFO,
        **policy_fields: int,
    ) -> None:
        self._init_runtime_state()
        if log_level is not None:
            forward_logs(log_level)
        keep: List[Any] = []
        c = ffi.new("tessera_runtime_config *")
        check(lib.tessera_runtime_config_default(c))

        def text(value: Optional[Union[str, "os.PathLike[str]"]], what: str) -> Any:
            s = c_string(None if value is None else os.fspath(value), what)
            keep.append(s)
            return s

        c.coordinator = text(coordinator, "coordinator")
        c.server_name = text(server_name, "server_name")
        c.ca_file = text(ca_file, "ca_file")
        if pinned_key_sha256 is not None:
            pin = fixed(pinned_key_sha256, 32, "pinned_key_sha256")
            keep.append(pin)
            c.pinned_key_sha256 = pin
        c.store_dir = text(store_dir, "store_dir")
        base = Policy._from_c(c.policy) if policy is None else policy
        if not isinstance(base, Policy):
            raise ArgumentTypeError(detail="policy must be a tessera.Policy")
        policy_with(base, **policy_fields)._fill(c.policy)
        if device_index is not None:
            c.device_index = integer(device_index, 31, "device_index")
        c.device_name = text(device_name, "device_name")
        c.spirv_val_gate = bool(spirv_val_gate)
        if drain_timeout is not None:
            c.drain_timeout_ms = _milliseconds(drain_timeout, "drain_timeout")
        host, executor_struct = _host(executor, accepting_jobs, on_receipt, keep)
        if executor_struct is not None:
            c.executor = executor_struct
        handle, signer_keep = signer_handle(signer)
        keep.extend(signer_keep)
        why = ffi.new("char[]", 1024)
        out = ffi.new("tessera_runtime **")
        # The call takes the signer over whatever it returns.
        code = lib.tessera_runtime_new(c, handle, why, len(why), out)
        if code != OK:
            raise error_for(code, ffi.string(why).decode("utf-8", "replace") or None)
        self._finish_init(out[0], host, keep)

    @classmethod
    def from_toml(
        cls,
        path: PathLike,
        *,
        executor: Optional[Callable[[Job], None]] = None,
        accepting_jobs: Optional[Callable[[], bool]] = None,
        on_receipt: Optional[Callable[[int, bytes], None]] = None,
        log_level: Optional[int] = logging.INFO,
    ) -> "Runtime":
        """A provider from the operator's TOML file (README, "The operator
        program"): device key (created if missing), store, device and
        coordinator as the file says."""
        self = cls.__new__(cls)
        self._init_runtime_state()
        if log_level is not None:
            forward_logs(log_level)
        keep: List[Any] = []
        c_path = c_string(os.fspath(path), "path")
        host, executor_struct = _host(executor, accepting_jobs, on_receipt, keep)
        why = ffi.new("char[]", 1024)
        out = ffi.new("tessera_runtime **")
        code = lib.tessera_runtime_new_from_toml_with(
            c_path, executor_struct if executor_struct is not None else ffi.NULL, why, len(why), out)
        if code != OK:
            raise error_for(code, ffi.string(why).decode("utf-8", "replace") or None)
        self._finish_init(out[0], host, keep)
        return self

    def _init_runtime_state(self) -> None:
        self._done = threading.Event()
        self._result: Optional[int] = None
        self._waiter: Optional[threading.Thread] = None

    def _finish_init(self, handle: Any, host: Optional[_Host], keep: List[Any]) -> None:
        Managed.__init__(self, handle, lib.tessera_runtime_free)
        # The runtime holds these (userdata, callbacks' state, the signer's
        # callbacks) until it is freed.
        self._keepalive.extend(keep)
        if host is not None and host.on_receipt is not None:
            userdata = ffi.new_handle(host)
            self._keepalive.append(userdata)
            with self._exclusive() as h:
                check(lib.tessera_runtime_set_receipt_callback(h, _c_receipt, userdata))

    # ----- its own thread ----------------------------------------------------------------

    def start(self) -> None:
        """Gives the runtime a thread of its own, which serves until it has
        drained. Afterwards only `status`, `status_text`, `drain`,
        `set_accepting_jobs`, `wait` and `close` apply."""
        with self._exclusive() as h:
            check(lib.tessera_runtime_start(h))
            waiter = threading.Thread(target=self._wait_thread, name="tessera-runtime-wait", daemon=True)
            self._waiter = waiter
            waiter.start()
            _started.add(self)

    def _wait_thread(self) -> None:
        # Holds a shared call until the runtime's thread ends, so the handle
        # is not freed while tessera_runtime_wait runs (close drains first).
        try:
            with self._shared() as h:
                self._result = int(lib.tessera_runtime_wait(h))
        finally:
            self._done.set()

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Waits until the runtime's thread ends (it drained, or failed) and
        returns True, or False after `timeout` seconds. Ctrl-C interrupts it.
        Raises the error the runtime ended with."""
        if self._waiter is None:
            raise ArgumentError(INVALID_ARGUMENT, "the runtime was not started")
        if _in_callback() and not self._done.is_set():
            raise InUseError(IN_USE, "a callback of the runtime cannot wait for it to end")
        remaining = timeout
        while True:
            step = 0.1 if remaining is None else max(0.0, min(0.1, remaining))
            if self._done.wait(step):
                break
            if remaining is not None:
                remaining -= step
                if remaining <= 0:
                    return False
        if self._result is not None and self._result != OK:
            raise error_for(self._result, self.status_text() or None)
        return True

    def run(self, drain_timeout: Optional[float] = None) -> None:
        """Serves until the runtime drains (a coordinator's drain only ends
        the session: it connects again). On Ctrl-C it drains, for at most
        `drain_timeout` seconds (``None``: as configured), and returns; a
        second Ctrl-C stops waiting for the drain."""
        try:
            self.start()
            self.wait()
        except KeyboardInterrupt:
            if self._waiter is None:
                raise  # interrupted before it started: nothing to drain
            _log.info("draining (interrupted)")
            self.drain(drain_timeout)
            self.wait()

    def drain(self, timeout: Optional[float] = None) -> None:
        """Asks the runtime to drain: finish the jobs it holds, take no new
        ones, say goodbye; it stops anyway `timeout` seconds after the drain
        starts (``None``: the configured drain timeout), leaving
        unacknowledged results in the store. Any thread may call it."""
        ms = 0 if timeout is None else max(1, _milliseconds(timeout, "timeout"))
        with self._shared() as h:
            check(lib.tessera_runtime_drain(h, ms))

    def set_accepting_jobs(self, accepting: bool) -> None:
        """Whether the device takes new work (false while the host needs its
        GPU): offers are declined meanwhile, jobs taken run on. Any thread."""
        with self._shared() as h:
            check(lib.tessera_runtime_set_accepting_jobs(h, bool(accepting)))

    def status(self) -> Status:
        """The runtime's status as of its last step. Any thread."""
        c = ffi.new("tessera_status *")
        c.size = ffi.sizeof("tessera_status")
        with self._shared() as h:
            check(lib.tessera_runtime_status(h, c))
        return Status(ConnState(c.state), bool(c.finished), bool(c.device_unavailable),
                      int(c.jobs_completed), int(c.jobs_failed), int(c.active_jobs), int(c.earnings),
                      int(c.sessions))

    @property
    def public_key(self) -> bytes:
        """The provider's public key (32 bytes): the device key that signs
        its evidence and receipts, with which a settlement party verifies
        them. Any thread."""
        out = ffi.new("uint8_t[32]")
        with self._shared() as h:
            check(lib.tessera_runtime_public_key(h, out))
        return bytes(ffi.buffer(out, 32))

    def status_text(self) -> str:
        """The status line `tessera-agent` logs, with the last connection
        error. Any thread."""
        with self._shared() as h:
            return text_from(lib.tessera_runtime_status_text, h)

    # ----- stepped from the host's loop ------------------------------------------------

    def step(self, max_wait: float = 0.0) -> None:
        """One turn of the host's loop: waits at most `max_wait` seconds for
        the network or a job, then does the work that is ready. Call it when
        `fd()` is readable, at `next_wakeup()`, and every few hundred
        milliseconds while jobs run."""
        ms = _milliseconds(max_wait, "max_wait")
        with self._exclusive() as h:
            check(lib.tessera_runtime_step(h, ms))

    def next_wakeup(self) -> Optional[float]:
        """Seconds from now until the runtime must be stepped, rounded up to
        the millisecond (on Linux `fd()` also becomes readable at that
        time), or ``None`` when only `fd()` matters."""
        out = ffi.new("uint64_t *")
        with self._exclusive() as h:
            code = lib.tessera_runtime_next_wakeup(h, out)
        if code == NOTHING:
            return None
        check(code)
        return int(out[0]) / 1000.0

    def fd(self) -> int:
        """A descriptor that becomes readable when the runtime has work
        (for `select`/`poll`; do not read from or close it)."""
        out = ffi.new("int *")
        with self._shared() as h:
            check(lib.tessera_runtime_fd(h, out))
        return int(out[0])

    # ----- closing -------------------------------------------------------------------------

    def _before_free(self, handle: Any) -> None:
        waiter = self._waiter
        if waiter is not None and waiter.is_alive() and _in_callback():
            raise InUseError(IN_USE, "a callback of the runtime cannot close it while it runs")
        if waiter is not None and waiter.is_alive() and waiter is not threading.current_thread():
            # Its thread still serves: drain it (at most the configured
            # timeout) and wait for it, so the handle is freed after.
            lib.tessera_runtime_drain(handle, 0)
            self._done.wait()


# Runtimes serving on their own thread: drained and freed at exit, before
# the interpreter goes away under their callbacks.
_started: "weakref.WeakSet[Runtime]" = weakref.WeakSet()


@atexit.register
def _at_exit() -> None:
    for runtime in list(_started):
        try:
            runtime.close()
        except Exception:
            pass
    if _forwarding:
        try:
            forward_logs(None)
        except Exception:
            pass


def _milliseconds(seconds: float, what: str) -> int:
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds < 0:
        raise ArgumentError(INVALID_ARGUMENT, "%s must be seconds >= 0" % what)
    return int(round(seconds * 1000))


def _host(
    executor: Optional[Callable[[Job], None]],
    accepting_jobs: Optional[Callable[[], bool]],
    on_receipt: Optional[Callable[[int, bytes], None]],
    keep: List[Any],
) -> Tuple[Optional[_Host], Any]:
    """The callbacks' state, and a `tessera_executor` when there is an
    executor (both kept in `keep` for the runtime's life)."""
    for value, what in ((executor, "executor"), (accepting_jobs, "accepting_jobs"), (on_receipt, "on_receipt")):
        if value is not None and not callable(value):
            raise ArgumentTypeError(detail="%s must be callable" % what)
    if accepting_jobs is not None and executor is None:
        raise ArgumentError(INVALID_ARGUMENT, "accepting_jobs needs an executor")
    if executor is None and on_receipt is None:
        return None, None
    host = _Host(executor, accepting_jobs, on_receipt)
    keep.append(host)
    if executor is None:
        return host, None
    userdata = ffi.new_handle(host)
    struct = ffi.new("tessera_executor *")
    struct.size = ffi.sizeof("tessera_executor")
    struct.userdata = userdata
    struct.run = _c_execute
    struct.accepting_jobs = _c_accepting if accepting_jobs is not None else ffi.NULL
    keep.extend([userdata, struct])
    return host, struct
