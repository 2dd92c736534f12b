"""The provider the add-on runs, apart from Blender's API so that it can be
used and tested without Blender."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, List, Optional

if TYPE_CHECKING:
    import tessera


class Provider:
    """One Tessera runtime on its own thread, with the user's renders taking
    precedence: while `rendering` is set, offers are declined."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._runtime: Optional["tessera.Runtime"] = None
        self._rendering = False
        self.last_error: Optional[str] = None

    @property
    def running(self) -> bool:
        """Whether a runtime is started."""
        return self._runtime is not None

    @property
    def rendering(self) -> bool:
        """Whether a render holds the GPU now."""
        return self._rendering

    def start(self, config_path: str) -> None:
        """Starts a provider from the operator's TOML file (no-op when one runs)."""
        import tessera  # imported here: Blender loads the add-on without it installed

        with self._lock:
            if self._runtime is not None:
                return
            runtime = tessera.Runtime.from_toml(config_path)
            try:
                runtime.set_accepting_jobs(not self._rendering)
                runtime.start()
            except BaseException:
                runtime.close()
                raise
            self._runtime = runtime
            self.last_error = None

    def stop(self, drain_seconds: float = 10.0) -> None:
        """Drains (running jobs finish, results are delivered, at most
        `drain_seconds`) and stops the provider."""
        with self._lock:
            runtime, self._runtime = self._runtime, None
        if runtime is None:
            return
        try:
            runtime.drain(timeout=drain_seconds)
            runtime.wait()
        finally:
            runtime.close()

    def set_rendering(self, rendering: bool) -> None:
        """A render started (True) or ended (False)."""
        with self._lock:
            self._rendering = rendering
            if self._runtime is not None:
                self._runtime.set_accepting_jobs(not rendering)

    def status(self) -> Optional["tessera.Status"]:
        """The runtime's status, or None when none runs."""
        with self._lock:
            runtime = self._runtime
            return None if runtime is None else runtime.status()

    def poll(self) -> None:
        """Notices a runtime that ended on its own (a fatal error)."""
        with self._lock:
            runtime = self._runtime
        if runtime is not None and runtime.status().finished:
            try:
                runtime.wait()
            except Exception as e:  # noqa: BLE001 (shown in the panel)
                self.last_error = str(e)
            finally:
                with self._lock:
                    if self._runtime is runtime:
                        self._runtime = None
                runtime.close()

    def summary(self) -> List[str]:
        """What the panel shows: the session, jobs done, earnings."""
        s = self.status()
        if s is None:
            lines = ["Not offering the GPU"]
            if self.last_error:
                lines.append(f"Stopped: {self.last_error}")
            return lines
        state = _STATES.get(s.state.name, s.state.name.lower())
        if self._rendering:
            state += ", paused while rendering"
        return [
            f"Session: {state}",
            f"Jobs: {s.jobs_completed} done, {s.jobs_failed} failed, {s.active_jobs} active",
            f"Earnings: {s.earnings}",
        ]


_STATES = {
    "READY": "connected",
    "AWAITING_WELCOME": "handshaking",
    "AWAITING_READY": "handshaking",
    "DISCONNECTED": "connecting",
    "CLOSED": "closed",
}


PROVIDER = Provider()
