"""Exceptions: one class per range of the shared code space (docs/CODES.md).

Every exception the package raises for a failed call is a `tessera.Error`
whose `code` is the number the C, C++, Go and Rust APIs report for the same
failure. A code this version does not know is raised as the class of its
range.
"""

from __future__ import annotations

from typing import Dict, Optional, Type

# The call-status codes (docs/CODES.md), as the header names them.
OK = 0
WOULD_BLOCK = 1
EVENTS_PENDING = 2
BUFFER_TOO_SMALL = 3
NULL_ARGUMENT = 4
INVALID_ARGUMENT = 5
PANIC = 6
UNSUPPORTED = 7
IO = 8
NOTHING = 9
STOPPED = 10
IN_USE = 11
SIGNER_UNAVAILABLE = 210
SIGNER_FAILED = 211

PEER_BASE = 1000
FAIL_BASE = 2000
JOB_BASE = 2100
KERNEL_BASE = 10000


def result_text(code: int) -> str:
    """The library's words for `code`: "name: meaning" ("unknown code N"
    for a number it does not know)."""
    from ._ffi import ffi, lib

    if not 0 <= code <= 0xFFFFFFFF:
        return "unknown code %d" % code
    buf = ffi.new("uint8_t[]", 512)
    written = ffi.new("size_t *")
    if lib.tessera_result_text(code, buf, len(buf), written) != OK:
        return "unknown code %d" % code
    return bytes(ffi.buffer(buf, written[0])).decode("utf-8", "replace")


class Error(Exception):
    """A failed call. `code` is the shared numeric code, `name` its name in
    docs/CODES.md (``"verify_bad_signature"``), `detail` what the library or
    the binding added (which field, which rule), or ``None``."""

    code: int
    detail: Optional[str]
    #: For `Agent.handle_input`: the bytes taken before the failure.
    consumed: Optional[int] = None

    def __init__(self, code: int, detail: Optional[str] = None) -> None:
        self.code = code
        self.detail = detail
        self._text: Optional[str] = None
        super().__init__(code, detail)

    @property
    def text(self) -> str:
        """The library's words for the code ("name: meaning")."""
        if self._text is None:
            try:
                self._text = result_text(self.code)
            except Exception:  # the library itself may be what failed to load
                self._text = "code %d" % self.code
        return self._text

    @property
    def name(self) -> str:
        """The code's name (``"invalid_argument"``)."""
        return self.text.split(":", 1)[0]

    def __str__(self) -> str:
        text = "%s (%d)" % (self.text, self.code)
        return "%s: %s" % (text, self.detail) if self.detail else text

    def __repr__(self) -> str:
        return "%s(%d, %r)" % (type(self).__name__, self.code, self.detail)


class CallError(Error):
    """Codes 1-99: the call itself (back-pressure, arguments, the boundary)."""


class WouldBlockError(CallError):
    """1: the outgoing queue is full; drain transmits, then call again."""


class EventsPendingError(CallError):
    """2: events wait to be read; drain events, then call again."""


class BufferTooSmallError(CallError):
    """3: a buffer is too small; `needed` is the size the library asked for
    (when it said)."""

    needed: Optional[int]

    def __init__(self, code: int = BUFFER_TOO_SMALL, detail: Optional[str] = None,
                 needed: Optional[int] = None) -> None:
        super().__init__(code, detail)
        self.needed = needed


class ArgumentError(CallError, ValueError):
    """4 and 5: an argument is missing, out of range or of the wrong form
    (also a `ValueError`)."""


class ArgumentTypeError(ArgumentError, TypeError):
    """5: an argument of a type the call does not take (also a
    `TypeError`): a `str` where bytes are wanted, say."""

    def __init__(self, code: int = INVALID_ARGUMENT, detail: Optional[str] = None) -> None:
        super().__init__(code, detail)


class ClosedError(ArgumentError):
    """4: the object was closed (or handed to another that owns it now); in
    C terms its handle is NULL. Also a `ValueError`, as for a closed file."""

    def __init__(self, code: int = NULL_ARGUMENT, detail: Optional[str] = None) -> None:
        super().__init__(code, detail)


class PanicError(CallError):
    """6: an internal error caught at the library boundary; close the object."""


class UnsupportedError(CallError):
    """7: the library lacks what the call needs."""


class LibraryIOError(CallError):
    """8: a file or socket operation failed."""


class StoppedError(CallError):
    """10: the object was stopped and takes no more calls of this kind."""


class InUseError(CallError):
    """11: the object is busy: its own thread runs it, or a callback of a
    call on it made this call."""


class AbiMismatchError(UnsupportedError):
    """The loaded library is another version than the declarations the
    package was built with (raised on import)."""

    library_version: int
    declared_version: int

    def __init__(self, library_version: int, declared_version: int) -> None:
        self.library_version = library_version
        self.declared_version = declared_version
        super().__init__(
            UNSUPPORTED,
            "the tessera library is version %s but the package was built for %s: "
            "reinstall the package (pip install ./bindings/python)"
            % (_version_text(library_version), _version_text(declared_version)),
        )


class UsageError(Error):
    """Codes 100-199: the call is not allowed in the object's state."""


class ConfigError(Error):
    """Codes 200-299: configuration, keys and signers."""


class SignerError(ConfigError):
    """Codes 210-219: the signer is unavailable (210) or failed (211)."""


class SignerUnavailableError(SignerError):
    """210: the signing key is not available now; a callback signer raises
    it to say "busy, ask again later"."""

    def __init__(self, code: int = SIGNER_UNAVAILABLE, detail: Optional[str] = None) -> None:
        super().__init__(code, detail)


class StoreError(Error):
    """Codes 300-399: the result store."""


class VerifyError(Error):
    """Codes 400-499: evidence, a receipt, a chain or a proof did not verify."""


class VulkanError(Error):
    """Codes 500-599: Vulkan set-up (500 + the dispatcher's set-up code)."""


class WireError(Error):
    """Codes 1000-1099: the peer broke the protocol, or a frame does not
    decode; `wire_code` is the wire error code (PROTOCOL.md, "Errors")."""

    @property
    def wire_code(self) -> int:
        """The wire error code (``code - 1000``)."""
        return self.code - PEER_BASE


class JobError(Error):
    """Codes 2000-2199: a job failed (2000 + the wire fail reason) or the
    dispatcher could not run it (2100 + its job error code)."""

    @property
    def fail_reason(self) -> Optional[int]:
        """The wire fail reason for codes 2000-2099, else ``None``."""
        return self.code - FAIL_BASE if self.code < JOB_BASE else None


class KernelRejectedError(Error):
    """Codes 10000-19999: a kernel was refused; `rule` is the rule it broke
    (PROTOCOL.md, "Kernel rejection codes")."""

    @property
    def rule(self) -> int:
        """The kernel rule broken (``code - 10000``)."""
        return self.code - KERNEL_BASE


_EXACT: Dict[int, Type[Error]] = {
    WOULD_BLOCK: WouldBlockError,
    EVENTS_PENDING: EventsPendingError,
    BUFFER_TOO_SMALL: BufferTooSmallError,
    NULL_ARGUMENT: ArgumentError,
    INVALID_ARGUMENT: ArgumentError,
    PANIC: PanicError,
    UNSUPPORTED: UnsupportedError,
    IO: LibraryIOError,
    STOPPED: StoppedError,
    IN_USE: InUseError,
    SIGNER_UNAVAILABLE: SignerUnavailableError,
}


def error_class(code: int) -> Type[Error]:
    """The exception class for `code`: its own, or its range's."""
    exact = _EXACT.get(code)
    if exact is not None:
        return exact
    if 1 <= code <= 99:
        return CallError
    if 100 <= code <= 199:
        return UsageError
    if 210 <= code <= 219:
        return SignerError
    if 200 <= code <= 299:
        return ConfigError
    if 300 <= code <= 399:
        return StoreError
    if 400 <= code <= 499:
        return VerifyError
    if 500 <= code <= 599:
        return VulkanError
    if 1000 <= code <= 1099:
        return WireError
    if 2000 <= code <= 2199:
        return JobError
    if 10000 <= code <= 19999:
        return KernelRejectedError
    return Error


def error_for(code: int, detail: Optional[str] = None) -> Error:
    """An exception of the right class for a nonzero `code`."""
    cls = error_class(code)
    return cls(code, detail) if cls is not Error else Error(code, detail)


def check(code: int, detail: Optional[str] = None) -> None:
    """Raises the error for `code` unless it is 0."""
    if code != OK:
        raise error_for(code, detail)


def _version_text(number: int) -> str:
    return "%d.%d.%d" % (number >> 16, (number >> 8) & 0xFF, number & 0xFF)
