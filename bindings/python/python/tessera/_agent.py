"""The sans-IO provider agent: the host owns the transport and the clock and
feeds the agent bytes and time; the agent says what to send and what to do.

Times are microseconds in the host's time base (`now_us()` is one)."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any, Iterator, List, NamedTuple, Optional, Tuple

from ._errors import (INVALID_ARGUMENT, NOTHING, OK, ArgumentError, ArgumentTypeError, BufferTooSmallError, Error,
                      error_for)
from ._ffi import Buffer, ffi, fixed, integer, lib, out_bytes, readable, text_from, writable
from ._keys import Signer, signer_handle
from ._managed import Managed
from ._types import (
    _DEFAULT_CONFIG,
    MAX_FRAME,
    MAX_INPUT_PIECE,
    MAX_RECORD_BYTES,
    TRANSMIT_BUFFER,
    BufferSpec,
    ChainState,
    ConnState,
    Device,
    EventKind,
    JobState,
    Policy,
    Usage,
)


def now_us() -> int:
    """Microseconds of the monotonic clock: a time base for the agent."""
    return time.monotonic_ns() // 1000


def _default_agent_version() -> Tuple[int, int, int]:
    v = _DEFAULT_CONFIG.agent_version
    return (int(v[0]), int(v[1]), int(v[2]))


@dataclass(frozen=True)
class AgentConfig:
    """The agent's configuration: what the device is (signed into the
    evidence), the policy, a random id per boot, and whether each signed
    result waits for the host to store it (`EventKind.PERSIST_RESULT`)."""

    device: Device = field(default_factory=Device)
    policy: Policy = field(default_factory=Policy)
    boot_id: bytes = field(default_factory=lambda: os.urandom(16))
    agent_version: Tuple[int, int, int] = field(default_factory=_default_agent_version)
    persist_results: bool = False

    def _to_c(self, keep: List[Any]) -> Any:
        c = ffi.new("tessera_agent_config *")
        c.size = ffi.sizeof("tessera_agent_config")
        lib.tessera_agent_config_default(c)
        if len(self.agent_version) != 3:
            raise ArgumentError(INVALID_ARGUMENT, "agent_version must be (major, minor, patch)")
        c.agent_version = [integer(v, 16, "agent_version") for v in self.agent_version]
        ffi.memmove(c.boot_id, fixed(self.boot_id, 16, "boot_id"), 16)
        if not isinstance(self.device, Device):
            raise ArgumentTypeError(detail="device must be a tessera.Device")
        if not isinstance(self.policy, Policy):
            raise ArgumentTypeError(detail="policy must be a tessera.Policy")
        self.device._fill(c.device, keep)
        self.policy._fill(c.policy)
        c.persist_results = bool(self.persist_results)
        return c


@dataclass(frozen=True)
class Event:
    """What the host must do (`Agent.poll_event`). Fields other than `kind`
    and `job` are set only for the kinds that say so, else 0: `stream`,
    `offset`, `len` for `JOB_DATA` (stream 0 is the kernel, ``i + 1`` buffer
    ``i``); `reason` for `CANCEL_JOB` (`CancelReason`) and `DISCONNECT`
    (`DisconnectReason`); `code`, the peer's code, for the kinds that
    carry one.

    A chunk's data comes in several `JOB_DATA` events, pieces of at most
    `MAX_INPUT_PIECE` bytes in order (`offset` is the byte offset in the
    stream). The chunk is checked against its digest when its last piece
    arrives: data that fails ends the job with `CANCEL_JOB`
    (`CancelReason.INPUT_INTEGRITY`) instead of that piece, so a job's
    inputs are known good only at `RUN_JOB`; drop what it received."""

    kind: EventKind
    job: int = 0
    stream: int = 0
    offset: int = 0
    len: int = 0
    reason: int = 0
    code: int = 0


class OutputSent(NamedTuple):
    """What `Agent.send_output` did: `taken` output bytes (hashed, and
    framed while a session is up), and `frames`, the bytes to send now,
    before anything polled after: the frames that were queued, then the
    output chunks."""

    taken: int
    frames: bytes


@dataclass(frozen=True)
class JobInfo:
    """What the agent knows of a job. The fields after `assigned` are set
    once the assignment arrived."""

    state: JobState
    deadline_us: Optional[int]
    assigned: bool
    kernel_len: int
    grid: Tuple[int, int, int]
    buffer_count: int
    specialization_count: int
    push_constants_len: int
    entry_point_len: int
    requester_nonce: bytes


@dataclass(frozen=True)
class Stats:
    """The agent's counters."""

    offers_accepted: int
    offers_declined: int
    jobs_completed: int
    jobs_failed: int
    results_refused: int
    earnings: int
    frames_in: int
    frames_out: int
    frames_refused: int


class Agent(Managed):
    """The provider agent, sans-IO: the host connects the transport, feeds
    received bytes (`handle_input`) and the time (`handle_timeout` at
    `poll_timeout`), sends what `poll_transmit` gives, and acts on
    `poll_event`. It takes `signer` over (the signer is closed after).
    `chain` is where the key's receipt chain stands (``None``: a key that
    never signed). One thread at a time; see `Managed`."""

    def __init__(self, config: AgentConfig, signer: Signer, chain: Optional[ChainState] = None) -> None:
        if not isinstance(config, AgentConfig):
            raise ArgumentTypeError(detail="config must be a tessera.AgentConfig")
        keep: List[Any] = []
        c_config = config._to_c(keep)
        c_chain = ffi.NULL
        if chain is not None:
            if not isinstance(chain, ChainState):
                raise ArgumentTypeError(detail="chain must be a tessera.ChainState")
            c_chain = chain._to_c()
        handle, signer_keep = signer_handle(signer)
        why = ffi.new("char[]", 512)
        out = ffi.new("tessera_agent **")
        # The call takes the signer over whatever it returns.
        code = lib.tessera_agent_new(c_config, handle, c_chain, why, len(why), out)
        if code != OK:
            raise error_for(code, ffi.string(why).decode("utf-8", "replace") or None)
        super().__init__(out[0], lib.tessera_agent_free)
        self._keepalive.extend(signer_keep)

    # ----- calls -------------------------------------------------------------------

    def _fail(self, handle: Any, code: int) -> Error:
        """The error for `code`, with the agent's words for it."""
        detail = text_from(lib.tessera_agent_last_error, handle) or None
        return error_for(code, detail)

    def _call(self, fn: Any, *args: Any) -> None:
        with self._exclusive() as h:
            code = fn(h, *args)
            if code != OK:
                raise self._fail(h, code)

    def _query(self, fn: Any, *args: Any) -> None:
        with self._shared() as h:
            code = fn(h, *args)
            if code != OK:
                raise self._fail(h, code)

    def last_error(self) -> str:
        """The words of the last error a call on this agent returned."""
        with self._shared() as h:
            return text_from(lib.tessera_agent_last_error, h)

    # ----- the session ---------------------------------------------------------------

    def connect(self, now_us: int) -> None:
        """Opens a session on a transport the host just connected (queues
        `Hello`)."""
        self._call(lib.tessera_agent_connect, integer(now_us, 64, "now_us"))

    def disconnected(self, now_us: int) -> None:
        """The transport closed or failed: jobs keep running, results wait
        for the next session."""
        self._call(lib.tessera_agent_disconnected, integer(now_us, 64, "now_us"))

    def handle_input(self, now_us: int, data: Buffer) -> int:
        """Feeds received bytes; returns how many were taken (pass the rest
        again after reading events). A peer error raises `WireError` after
        an `Error` frame was queued for the peer; the exception's `consumed`
        says how many bytes were taken before."""
        view, n = readable(data, "data")
        consumed = ffi.new("size_t *")
        with self._exclusive() as h:
            code = lib.tessera_agent_handle_input(h, integer(now_us, 64, "now_us"), view, n, consumed)
            if code != OK:
                err = self._fail(h, code)
                err.consumed = int(consumed[0])
                raise err
        return int(consumed[0])

    def poll_transmit(self, now_us: int) -> Optional[bytes]:
        """The next bytes to send, or ``None`` when there are none."""
        buf = ffi.new("uint8_t[]", MAX_FRAME)
        written = ffi.new("size_t *")
        with self._exclusive() as h:
            code = lib.tessera_agent_poll_transmit(h, integer(now_us, 64, "now_us"), buf, len(buf), written)
            if code == NOTHING:
                return None
            if code != OK:
                raise self._fail(h, code)
        return out_bytes(buf, written[0])

    def transmits(self, now_us: int) -> Iterator[bytes]:
        """Every frame waiting to be sent, in order."""
        while True:
            frame = self.poll_transmit(now_us)
            if frame is None:
                return
            yield frame

    def poll_event(self) -> Optional[Event]:
        """The next event, or ``None`` when there is none."""
        ev = ffi.new("tessera_event *")
        ev.size = ffi.sizeof("tessera_event")
        with self._exclusive() as h:
            code = lib.tessera_agent_poll_event(h, ev)
            if code == NOTHING:
                return None
            if code != OK:
                raise self._fail(h, code)
        return Event(EventKind(ev.kind), int(ev.job), int(ev.stream), int(ev.offset), int(ev.len),
                     int(ev.reason), int(ev.code))

    def events(self) -> Iterator[Event]:
        """Every queued event, in order."""
        while True:
            event = self.poll_event()
            if event is None:
                return
            yield event

    def poll_timeout(self) -> Optional[int]:
        """When `handle_timeout` is next due (microseconds), or ``None``."""
        out = ffi.new("uint64_t *")
        with self._shared() as h:
            code = lib.tessera_agent_poll_timeout(h, out)
            if code == NOTHING:
                return None
            if code != OK:
                raise self._fail(h, code)
        return int(out[0])

    def handle_timeout(self, now_us: int) -> None:
        """Runs the timers due at `now_us` (heartbeats, peer silence, deadlines)."""
        self._call(lib.tessera_agent_handle_timeout, integer(now_us, 64, "now_us"))

    def drain(self, now_us: int) -> None:
        """Takes no more offers; says goodbye once every held job is acknowledged."""
        self._call(lib.tessera_agent_drain, integer(now_us, 64, "now_us"))

    def set_device_available(self, now_us: int, available: bool) -> None:
        """Whether the device takes work now: offers are declined while not."""
        self._call(lib.tessera_agent_set_device_available, integer(now_us, 64, "now_us"), bool(available))

    @property
    def state(self) -> ConnState:
        """The connection's state."""
        out = ffi.new("uint32_t *")
        self._query(lib.tessera_agent_state, out)
        return ConnState(out[0])

    @property
    def chain(self) -> ChainState:
        """Where the receipt chain stands: keep it across restarts."""
        out = ffi.new("tessera_chain_state *")
        self._query(lib.tessera_agent_chain, out)
        return ChainState._from_c(out)

    @property
    def key_id(self) -> bytes:
        """The 16-byte id of the agent's key."""
        out = ffi.new("uint8_t[16]")
        self._query(lib.tessera_agent_key_id, out)
        return out_bytes(out)

    def stats(self) -> Stats:
        """The agent's counters."""
        out = ffi.new("tessera_stats *")
        out.size = ffi.sizeof("tessera_stats")
        self._query(lib.tessera_agent_stats, out)
        return Stats(int(out.offers_accepted), int(out.offers_declined), int(out.jobs_completed),
                     int(out.jobs_failed), int(out.results_refused), int(out.earnings),
                     int(out.frames_in), int(out.frames_out), int(out.frames_refused))

    # ----- jobs ----------------------------------------------------------------------

    def read_input(self, job: int) -> bytes:
        """The input piece of the last `JOB_DATA` event polled for `job`, at
        most `MAX_INPUT_PIECE` bytes (`UsageError` no_input once
        `handle_input` was called again)."""
        buf = ffi.new("uint8_t[]", MAX_INPUT_PIECE)
        written = ffi.new("size_t *")
        self._query(lib.tessera_agent_read_input, integer(job, 64, "job"), buf, len(buf), written)
        return out_bytes(buf, written[0])

    def read_input_into(self, job: int, out: Buffer) -> int:
        """As `read_input`, into a writable buffer (a slice of the job's
        buffer, say); returns the bytes written."""
        view, n = writable(out, "out")
        written = ffi.new("size_t *")
        self._query(lib.tessera_agent_read_input, integer(job, 64, "job"), view, n, written)
        return int(written[0])

    def job_info(self, job: int) -> JobInfo:
        """What the agent knows of `job`."""
        c = ffi.new("tessera_job_info *")
        c.size = ffi.sizeof("tessera_job_info")
        self._query(lib.tessera_agent_job_info, integer(job, 64, "job"), c)
        return JobInfo(
            state=JobState(c.state),
            deadline_us=int(c.deadline_us) if c.has_deadline else None,
            assigned=bool(c.assigned),
            kernel_len=int(c.kernel_len),
            grid=(int(c.grid[0]), int(c.grid[1]), int(c.grid[2])),
            buffer_count=int(c.buffer_count),
            specialization_count=int(c.specialization_count),
            push_constants_len=int(c.push_constants_len),
            entry_point_len=int(c.entry_point_len),
            requester_nonce=out_bytes(c.requester_nonce),
        )

    def job_buffer(self, job: int, index: int) -> BufferSpec:
        """Buffer `index` of an assigned job."""
        c = ffi.new("tessera_buffer_spec *")
        self._query(lib.tessera_agent_job_buffer, integer(job, 64, "job"), integer(index, 32, "index"), c)
        return BufferSpec._from_c(c)

    def job_buffers(self, job: int) -> List[BufferSpec]:
        """Every buffer of an assigned job, in order."""
        return [self.job_buffer(job, i) for i in range(self.job_info(job).buffer_count)]

    def job_specialization(self, job: int) -> List[Tuple[int, int]]:
        """An assigned job's specialization constants, ``(id, value)``."""
        count = self.job_info(job).specialization_count
        ident, value = ffi.new("uint32_t *"), ffi.new("uint32_t *")
        pairs = []
        for i in range(count):
            self._query(lib.tessera_agent_job_specialization, integer(job, 64, "job"), i, ident, value)
            pairs.append((int(ident[0]), int(value[0])))
        return pairs

    def job_push_constants(self, job: int) -> bytes:
        """An assigned job's push-constant bytes."""
        size = self.job_info(job).push_constants_len
        buf = ffi.new("uint8_t[]", max(size, 1))
        written = ffi.new("size_t *")
        self._query(lib.tessera_agent_job_push_constants, integer(job, 64, "job"), buf, len(buf), written)
        return out_bytes(buf, written[0])

    def job_entry_point(self, job: int) -> str:
        """An assigned job's entry point name (`KernelRejectedError` for a
        name holding a NUL: fail the job as rejected, with the rule)."""
        size = self.job_info(job).entry_point_len + 1
        buf = ffi.new("char[]", size)
        written = ffi.new("size_t *")
        self._query(lib.tessera_agent_job_entry_point, integer(job, 64, "job"), buf, size, written)
        return bytes(ffi.buffer(buf, written[0])).decode("utf-8")

    def send_output(self, now_us: int, job: int, buffer: int, data: Buffer) -> OutputSent:
        """Takes the next bytes of read-back buffer `buffer` of a job that
        ran: at least a whole chunk (or the buffer's tail) when `data` holds
        one. Send `frames` before anything polled after, then pass the bytes
        not taken again. Buffers go in order, each from its start to its
        end. While no session is up the bytes are taken and `frames` is
        empty (`EventKind.RESEND_OUTPUTS` asks for them again)."""
        out = ffi.new("uint8_t[]", TRANSMIT_BUFFER)
        taken, written = self._send_output(now_us, job, buffer, data, out, len(out))
        return OutputSent(taken, out_bytes(out, written))

    def send_output_into(self, now_us: int, job: int, buffer: int, data: Buffer,
                         out: Buffer) -> Tuple[int, int]:
        """As `send_output`, writing the frames into a writable buffer;
        returns ``(taken, written)``: send ``out[:written]``. `taken` is 0
        when `out` had no room for the next chunk's frame after the frames
        that were queued: send what was written and call again with the same
        bytes. An `out` of `TRANSMIT_BUFFER` bytes takes a chunk at every
        call, one of `MAX_FRAME` bytes always makes progress, and one that
        can never hold the next frame raises `BufferTooSmallError`, its
        `needed` the length that takes the next chunk."""
        out_view, out_len = writable(out, "out")
        return self._send_output(now_us, job, buffer, data, out_view, out_len)

    def _send_output(self, now_us: int, job: int, buffer: int, data: Buffer, out: Any,
                     out_len: int) -> Tuple[int, int]:
        view, n = readable(data, "data")
        taken = ffi.new("size_t *")
        written = ffi.new("size_t *")
        try:
            self._call(lib.tessera_agent_send_output, integer(now_us, 64, "now_us"), integer(job, 64, "job"),
                       integer(buffer, 32, "buffer"), view, n, out, out_len, taken, written)
        except BufferTooSmallError as e:
            # The library writes the length that takes the next chunk.
            e.needed = int(written[0])
            raise
        return int(taken[0]), int(written[0])

    def finish_job(self, now_us: int, job: int, usage: Usage) -> None:
        """Ends a job whose outputs were all written: signs its receipt."""
        if not isinstance(usage, Usage):
            raise ArgumentTypeError(detail="usage must be a tessera.Usage")
        self._call(lib.tessera_agent_finish_job, integer(now_us, 64, "now_us"), integer(job, 64, "job"),
                   usage._to_c())

    def fail_job(self, now_us: int, job: int, reason: int, detail: int = 0,
                 usage: Optional[Usage] = None) -> None:
        """Ends a job that could not run: `reason` a `FailReason` (1 kernel
        rejected ... 7 host), `detail` its detail (the kernel rule of a
        rejection)."""
        use = usage if usage is not None else Usage()
        if not isinstance(use, Usage):
            raise ArgumentTypeError(detail="usage must be a tessera.Usage")
        self._call(lib.tessera_agent_fail_job, integer(now_us, 64, "now_us"), integer(job, 64, "job"),
                   integer(int(reason), 32, "reason"), integer(detail, 32, "detail"), use._to_c())

    def report_progress(self, now_us: int, job: int, permille: int) -> None:
        """Reports a running job's progress, in thousandths."""
        self._call(lib.tessera_agent_report_progress, integer(now_us, 64, "now_us"),
                   integer(job, 64, "job"), integer(permille, 32, "permille"))

    def confirm_persisted(self, now_us: int, job: int) -> None:
        """The host stored the job's result record (after
        `PERSIST_RESULT`): the agent may send it."""
        self._call(lib.tessera_agent_confirm_persisted, integer(now_us, 64, "now_us"), integer(job, 64, "job"))

    def result_record(self, job: int) -> bytes:
        """A signed job's result record: what to store on `PERSIST_RESULT`."""
        buf = ffi.new("uint8_t[]", MAX_RECORD_BYTES)
        written = ffi.new("size_t *")
        self._query(lib.tessera_agent_result_record, integer(job, 64, "job"), buf, len(buf), written)
        return out_bytes(buf, written[0])

    def restore_result(self, record: Buffer) -> None:
        """Gives back a result record stored before a restart: the agent
        holds the job again and asks for its outputs at the next session."""
        view, n = readable(record, "record")
        self._call(lib.tessera_agent_restore_result, view, n)

