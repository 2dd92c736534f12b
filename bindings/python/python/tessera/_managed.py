"""`Managed`: the base of every object that owns a handle of the library."""

from __future__ import annotations

import threading
from contextlib import contextmanager
from types import TracebackType
from typing import Any, Callable, Iterator, Optional, Type, TypeVar

from ._errors import ClosedError, InUseError, IN_USE
from ._ffi import ffi

_Self = TypeVar("_Self", bound="Managed")


class Managed:
    """Owns one handle of the library and frees it once: on `close()`, at
    the end of a ``with`` block, or when garbage-collected.

    The C rules hold in Python too: a method that needs the object to itself
    (a non-``const`` handle in C) runs under the object's lock, so two
    threads never call it at once; the thread-safe ones (a ``const`` handle)
    run concurrently. `close()` waits for calls in progress on other
    threads, and a call after it raises `ClosedError`. A callback that calls
    back into the object whose call runs it gets `InUseError`, as in C.
    """

    _handle: Any
    _free_fn: Optional[Callable[[Any], None]]

    def __init__(self, handle: Any, free: Callable[[Any], None]) -> None:
        self._handle = handle
        self._free_fn = free
        self._lock = threading.RLock()
        self._state = threading.Condition(threading.Lock())
        self._shared_calls = 0
        self._depth = 0
        # Objects this one needs alive while its handle lives: callbacks
        # and their userdata, buffers C points into.
        self._keepalive: list[Any] = []

    @property
    def closed(self) -> bool:
        """Whether the handle is gone (closed, or taken over by another object)."""
        return getattr(self, "_handle", None) is None

    def _name(self) -> str:
        return type(self).__name__

    @contextmanager
    def _exclusive(self) -> Iterator[Any]:
        """The handle, for a call that needs the object to itself."""
        with self._lock:
            handle = self._handle
            if handle is None:
                raise ClosedError(detail="the %s is closed" % self._name())
            self._depth += 1
            try:
                yield handle
            finally:
                self._depth -= 1

    @contextmanager
    def _shared(self) -> Iterator[Any]:
        """The handle, for a thread-safe call: others may run meanwhile, but
        the handle is not freed before it returns."""
        with self._state:
            handle = self._handle
            if handle is None:
                raise ClosedError(detail="the %s is closed" % self._name())
            self._shared_calls += 1
        try:
            yield handle
        finally:
            with self._state:
                self._shared_calls -= 1
                if self._shared_calls == 0:
                    self._state.notify_all()

    def _take(self) -> Any:
        """Gives the handle away (to a C function that takes it over): this
        object is closed afterwards and frees nothing."""
        with self._lock:
            if self._depth:
                raise InUseError(IN_USE, "the %s is in use by a call on this thread" % self._name())
            with self._state:
                handle = self._handle
                if handle is None:
                    raise ClosedError(detail="the %s is closed" % self._name())
                while self._shared_calls:
                    self._state.wait()
                self._handle = None
            return handle

    def _before_free(self, handle: Any) -> None:
        """Runs before the handle is freed, with the lock held (a runtime
        stops its thread here)."""

    def close(self) -> None:
        """Frees the handle. Closing twice is harmless; closing from a
        callback of a call on this object raises `InUseError`."""
        if getattr(self, "_handle", None) is None:
            return
        with self._lock:
            if self._handle is None:
                return
            if self._depth:
                raise InUseError(IN_USE, "the %s cannot be closed from a callback of its own call"
                                 % self._name())
            self._before_free(self._handle)
            with self._state:
                while self._shared_calls:
                    self._state.wait()
                handle, self._handle = self._handle, None
            free, self._free_fn = self._free_fn, None
            if free is not None and handle is not None and handle != ffi.NULL:
                free(handle)
            self._keepalive = []

    def __enter__(self: _Self) -> _Self:
        return self

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # never raise from a finalizer
            pass

    def __repr__(self) -> str:
        return "<tessera.%s%s>" % (self._name(), " closed" if self.closed else "")
