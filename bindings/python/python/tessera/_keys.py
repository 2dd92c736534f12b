"""Device keys and signers."""

from __future__ import annotations

import logging
from typing import Any, Callable, List, Optional, Tuple

from ._errors import OK, SIGNER_FAILED, ArgumentTypeError, Error, check
from ._ffi import Buffer, ffi, fixed, lib, out_bytes, readable
from ._managed import Managed
from ._types import KEY_PKCS8_LEN

_log = logging.getLogger("tessera.signer")


def generate_key() -> bytes:
    """A new Ed25519 device key from the system's random source, as a
    PKCS#8 v2 document: the private key, to be stored where only the
    provider reads it."""
    doc = ffi.new("uint8_t[]", KEY_PKCS8_LEN)
    written = ffi.new("size_t *")
    check(lib.tessera_key_generate(doc, len(doc), written))
    return out_bytes(doc, written[0])


def public_key(pkcs8: Buffer) -> bytes:
    """The 32-byte Ed25519 public key of a PKCS#8 document
    (`ConfigError` 201, key_rejected, when it is not an Ed25519 key)."""
    view, n = readable(pkcs8, "pkcs8")
    out = ffi.new("uint8_t[32]")
    check(lib.tessera_key_public(view, n, out))
    return out_bytes(out)


def key_id(public_key: Buffer) -> bytes:
    """The 16-byte key id of a 32-byte public key: what `Hello`, every COSE
    header and every receipt name the key by."""
    out = ffi.new("uint8_t[16]")
    check(lib.tessera_key_id(fixed(public_key, 32, "public_key"), out))
    return out_bytes(out)


class _Callbacks:
    """What a callback signer's C callbacks reach through their userdata."""

    def __init__(self, public_key: bytes, sign: Callable[[bytes], Buffer]) -> None:
        self.public_key = public_key
        self.sign = sign


def _public_key_callback(userdata: Any, out: Any) -> int:
    state: _Callbacks = ffi.from_handle(userdata)
    ffi.memmove(out, state.public_key, 32)
    return OK


def _sign_callback(userdata: Any, message: Any, length: int, signature: Any) -> int:
    state: _Callbacks = ffi.from_handle(userdata)
    data = bytes(ffi.buffer(message, length)) if length else b""
    try:
        result = state.sign(data)
        view, n = readable(result, "signature")
    except Error as e:
        # SignerUnavailableError (210): busy, the agent asks again later.
        # An error without a failure's code (0) is no signature either.
        return e.code or SIGNER_FAILED
    except Exception:
        _log.exception("the signer's callback failed")
        return SIGNER_FAILED
    if n != 64:
        _log.error("the signer's callback returned %d bytes, not a 64-byte signature", n)
        return SIGNER_FAILED
    ffi.memmove(signature, view, 64)
    return OK


HardwareReport = Callable[[bytes], Tuple[int, Buffer]]


def _hardware_report_callback(userdata: Any, nonce: Any, kind: Any, digest: Any) -> int:
    report: HardwareReport = ffi.from_handle(userdata)
    try:
        k, h = report(bytes(ffi.buffer(nonce, 32)))
        view, n = readable(h, "hash")
    except Exception:
        _log.exception("the hardware report callback failed")
        return SIGNER_FAILED
    if not isinstance(k, int) or not 0 <= k <= 0xFFFF or n != 32:
        _log.error("the hardware report callback returned no (kind, 32-byte hash) pair")
        return SIGNER_FAILED
    kind[0] = k
    ffi.memmove(digest, view, 32)
    return OK


# The C callbacks (static: each signer's state comes through its userdata).
# An exception that escapes them fails the signature.
_c_public_key: Any = ffi.callback("tessera_public_key_fn", _public_key_callback, error=SIGNER_FAILED)
_c_sign: Any = ffi.callback("tessera_sign_fn", _sign_callback, error=SIGNER_FAILED)
_c_hardware_report: Any = ffi.callback(
    "tessera_hardware_report_fn", _hardware_report_callback, error=SIGNER_FAILED)


class Signer(Managed):
    """A device signing key: an Ed25519 key held by the library
    (`from_seed`, `from_pkcs8`) or a Python callable in front of a key that
    lives elsewhere, a secure element or a TPM (`from_callback`).

    An `Agent` or `Runtime` made with a signer takes it over: the signer is
    closed afterwards and the new object owns the key.
    """

    def __init__(self, handle: Any) -> None:
        super().__init__(handle, lib.tessera_signer_free)

    @classmethod
    def from_seed(cls, seed: Buffer) -> "Signer":
        """A signer holding the Ed25519 key whose 32-byte seed is `seed`."""
        out = ffi.new("tessera_signer **")
        check(lib.tessera_signer_from_seed(fixed(seed, 32, "seed"), out))
        return cls(out[0])

    @classmethod
    def from_pkcs8(cls, pkcs8: Buffer) -> "Signer":
        """A signer holding the key of a PKCS#8 document (as
        `generate_key` returns it)."""
        view, n = readable(pkcs8, "pkcs8")
        out = ffi.new("tessera_signer **")
        check(lib.tessera_signer_from_pkcs8(view, n, out))
        return cls(out[0])

    @classmethod
    def from_callback(cls, public_key: Buffer, sign: Callable[[bytes], Buffer]) -> "Signer":
        """A signer whose key lives elsewhere. `public_key` is its 32-byte
        Ed25519 public key; `sign(message)` returns the 64-byte Ed25519
        signature of `message`. It is called on the thread that drives the
        agent (a runtime's own thread after `Runtime.start`). To say "busy,
        ask later" it raises `SignerUnavailableError`; any other exception
        fails the signature (logged on the ``tessera.signer`` logger)."""
        if not callable(sign):
            raise ArgumentTypeError(detail="sign must be callable")
        key = bytes(ffi.buffer(fixed(public_key, 32, "public_key")))
        callbacks = _Callbacks(key, sign)
        handle = ffi.new_handle(callbacks)
        c = ffi.new("tessera_signer_callbacks *")
        c.size = ffi.sizeof("tessera_signer_callbacks")
        c.userdata = handle
        c.public_key = _c_public_key
        c.sign = _c_sign
        out = ffi.new("tessera_signer **")
        check(lib.tessera_signer_from_callbacks(c, out))
        signer = cls(out[0])
        # The C signer holds `handle` as its userdata: both live as long as
        # the signer, or the agent or runtime it goes to.
        signer._keepalive.extend([callbacks, handle])
        return signer

    def set_hardware_report(self, report: Optional[HardwareReport]) -> None:
        """Names a hardware attestation report (a GPU's confidential-computing
        report, a TPM quote) in every evidence this signer signs from now on:
        at each connection, `report(nonce)` makes the report for the 32-byte
        hardware nonce and returns `(kind, sha256_of_report)`, kind one of
        the `HARDWARE_REPORT_*` constants; the report's bytes stay with the
        caller for whoever verifies the evidence. Kind 0, or an exception
        (logged on the ``tessera.signer`` logger), names none. `None` takes
        the callback away. Called on the thread that drives the agent."""
        if report is not None and not callable(report):
            raise ArgumentTypeError(detail="report must be callable or None")
        handle = ffi.new_handle(report) if report is not None else ffi.NULL
        with self._exclusive() as h:
            check(lib.tessera_signer_set_hardware_report(
                h, _c_hardware_report if report is not None else ffi.NULL, handle))
        if report is not None:
            # The C signer holds `handle` as its userdata from now on.
            self._keepalive.extend([report, handle])

    @property
    def public_key(self) -> bytes:
        """The 32-byte Ed25519 public key."""
        out = ffi.new("uint8_t[32]")
        with self._shared() as h:
            check(lib.tessera_signer_public_key(h, out))
        return out_bytes(out)

    @property
    def key_id(self) -> bytes:
        """The key's 16-byte id."""
        return key_id(self.public_key)

    def sign(self, message: Buffer) -> bytes:
        """The 64-byte Ed25519 signature of `message` (a callback signer
        calls its callback)."""
        view, n = readable(message, "message")
        out = ffi.new("uint8_t[64]")
        with self._exclusive() as h:
            check(lib.tessera_signer_sign(h, view, n, out))
        return out_bytes(out)

    def _give(self) -> Tuple[Any, List[Any]]:
        """The handle and what must stay alive with it, for a C function
        that takes the signer over; this signer is closed afterwards."""
        with self._lock:
            keep = list(self._keepalive)
            handle = self._take()
            self._keepalive = []
        return handle, keep


def signer_handle(signer: object) -> Tuple[Any, List[Any]]:
    """`signer`'s handle given away, and what must outlive it."""
    if not isinstance(signer, Signer):
        raise ArgumentTypeError(detail="signer must be a tessera.Signer, not %s" % type(signer).__name__)
    return signer._give()

