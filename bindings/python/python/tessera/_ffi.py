"""The library as cffi loaded it, the version check made on import, and the
argument conversions every wrapper shares.

`ffi` and `lib` come from `tessera._native`, which maturin generates from
include/tessera.h when the package is built: `lib` is the Rust library
shipped inside the package, opened in cffi's ABI mode. cffi releases the GIL
for the duration of every call into it.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any, Optional, Sequence, Tuple, Union

from . import _native
from ._errors import INVALID_ARGUMENT, AbiMismatchError, ArgumentError, ArgumentTypeError

if TYPE_CHECKING:
    if sys.version_info >= (3, 12):
        from collections.abc import Buffer as _Buffer
    else:
        from typing_extensions import Buffer as _Buffer
    # NumPy's arrays declare the buffer protocol to type checkers only from
    # Python 3.12; they are taken everywhere a buffer is.
    import numpy  # type: ignore[import-not-found, unused-ignore]

    #: A C-contiguous object with the buffer protocol: bytes, bytearray,
    #: memoryview, array.array, a NumPy array, mmap...
    Buffer = Union[_Buffer, "numpy.ndarray[Any, Any]"]
else:
    Buffer = object

ffi: Any = _native.ffi
lib: Any = _native.lib

#: The version (``major << 16 | minor << 8 | patch``) of the header the
#: declarations were generated from.
DECLARED_VERSION: int = int(lib.TESSERA_VERSION_NUMBER)


def check_abi(library_version: int, declared_version: int) -> None:
    """Raises `AbiMismatchError` unless the library is the version the
    declarations describe. Every struct layout and signature is the
    header's, so any difference is refused, not only a major one."""
    if library_version != declared_version:
        raise AbiMismatchError(library_version, declared_version)


check_abi(int(lib.tessera_version()), DECLARED_VERSION)

def readable(data: Buffer, what: str) -> Tuple[Any, int]:
    """`data` as a `uint8_t[]` over its memory (no copy) and its length in
    bytes. The cdata keeps `data` alive; keep it while C reads it."""
    if isinstance(data, str):
        raise ArgumentTypeError(detail="%s must be bytes-like, not str" % what)
    try:
        view = ffi.from_buffer("uint8_t[]", data)
    except TypeError as e:
        raise ArgumentTypeError(detail="%s must be bytes-like: %s" % (what, e)) from None
    except (ValueError, BufferError) as e:
        raise ArgumentError(INVALID_ARGUMENT, "%s: %s" % (what, e)) from None
    return view, len(view)


def writable(data: Buffer, what: str) -> Tuple[Any, int]:
    """`data` as a writable `uint8_t[]` over its memory (no copy), and its
    length in bytes."""
    if isinstance(data, (str, bytes)):
        raise ArgumentTypeError(detail="%s must be a writable buffer (bytearray, memoryview, "
                                       "NumPy array), not %s" % (what, type(data).__name__))
    try:
        view = ffi.from_buffer("uint8_t[]", data, require_writable=True)
    except TypeError as e:
        raise ArgumentTypeError(detail="%s must be a writable buffer: %s" % (what, e)) from None
    except (ValueError, BufferError) as e:
        raise ArgumentError(INVALID_ARGUMENT, "%s: %s" % (what, e)) from None
    return view, len(view)


def fixed(data: Buffer, size: int, what: str) -> Any:
    """`data` as a `uint8_t[]`, which must be exactly `size` bytes: the C
    functions read fixed-size arguments without a length."""
    view, n = readable(data, what)
    if n != size:
        raise ArgumentError(INVALID_ARGUMENT, "%s must be %d bytes, not %d" % (what, size, n))
    return view


def optional_fixed(data: Optional[Buffer], size: int, what: str) -> Any:
    """As `fixed`, with ``None`` as NULL."""
    return ffi.NULL if data is None else fixed(data, size, what)


def out_bytes(cdata: Any, size: Optional[int] = None) -> bytes:
    """A copy of a C byte array (or its first `size` bytes)."""
    if size is None:
        return bytes(ffi.buffer(cdata))
    return bytes(ffi.buffer(cdata, size))


def c_text(cdata: Any) -> str:
    """A NUL-terminated C string (or char array) as text."""
    return bytes(ffi.string(cdata)).decode("utf-8", "replace")


def c_string(text: Optional[str], what: str) -> Any:
    """`text` as a NUL-terminated `char[]` to keep alive while C holds it,
    or NULL for ``None``."""
    if text is None:
        return ffi.NULL
    if not isinstance(text, str):
        raise ArgumentTypeError(detail="%s must be a str, not %s" % (what, type(text).__name__))
    data = text.encode("utf-8")
    if b"\0" in data:
        raise ArgumentError(INVALID_ARGUMENT, "%s holds a NUL character" % what)
    return ffi.new("char[]", data)


def integer(value: object, bits: int, what: str, signed: bool = False) -> int:
    """`value` checked as a C integer of `bits` bits."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ArgumentTypeError(detail="%s must be an int, not %s" % (what, type(value).__name__))
    low, high = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    if not low <= value <= high:
        raise ArgumentError(INVALID_ARGUMENT, "%s must be in %d..%d, not %d" % (what, low, high, value))
    return value


def u32_triple(values: Sequence[int], what: str) -> Tuple[int, int, int]:
    """Three u32 values (a grid, a workgroup size)."""
    if isinstance(values, (str, bytes)) or len(values) != 3:
        raise ArgumentError(INVALID_ARGUMENT, "%s must be three integers" % what)
    a, b, c = (integer(v, 32, what) for v in values)
    return a, b, c


def text_from(call: Any, *args: Any) -> str:
    """A text a `(…, char *buf, size_t len, size_t *written)` getter writes,
    sized by asking first (`len` 0 answers with the length needed)."""
    need = ffi.new("size_t *")
    code = call(*args, ffi.NULL, 0, need)
    if code == 0:
        return ""
    size = max(int(need[0]), 1)
    buf = ffi.new("char[]", size)
    written = ffi.new("size_t *")
    if call(*args, buf, size, written) != 0:
        return ""
    return bytes(ffi.buffer(buf, written[0])).decode("utf-8", "replace")
