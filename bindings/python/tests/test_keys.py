"""Signers: built in, and a Python callable standing in for a secure
element, with its error paths."""

from __future__ import annotations

import gc
import logging
from typing import List

import pytest

import tessera

SEED = bytes(range(1, 33))


class Element:
    """A secure element's stand-in: a built-in key behind a callable that
    can be made busy or broken."""

    def __init__(self) -> None:
        self.key = tessera.Signer.from_seed(SEED)
        self.busy = False
        self.broken = False
        self.short = False
        self.signatures = 0

    def sign(self, message: bytes) -> bytes:
        if self.busy:
            raise tessera.SignerUnavailableError()
        if self.broken:
            raise RuntimeError("the element is gone")
        self.signatures += 1
        signature = self.key.sign(message)
        return signature[:10] if self.short else signature


def test_callback_signer_signs_as_the_key_it_fronts() -> None:
    element = Element()
    with tessera.Signer.from_callback(element.key.public_key, element.sign) as signer:
        assert signer.public_key == element.key.public_key
        assert signer.key_id == tessera.key_id(element.key.public_key)
        # Ed25519 is deterministic: the same signature as the key itself.
        assert signer.sign(b"message") == element.key.sign(b"message")
        assert signer.sign(memoryview(b"")) == element.key.sign(b"")
        assert element.signatures == 2


def test_callback_signer_errors(caplog: pytest.LogCaptureFixture) -> None:
    element = Element()
    signer = tessera.Signer.from_callback(element.key.public_key, element.sign)
    element.busy = True
    with pytest.raises(tessera.SignerUnavailableError) as e:
        signer.sign(b"m")
    assert e.value.code == 210
    element.busy = False
    element.broken = True
    with caplog.at_level(logging.ERROR, logger="tessera.signer"):
        with pytest.raises(tessera.SignerError) as f:
            signer.sign(b"m")
    assert f.value.code == 211
    assert "the element is gone" in caplog.text
    element.broken = False
    element.short = True
    with pytest.raises(tessera.SignerError):
        signer.sign(b"m")
    element.short = False
    # An Error made with code 0 is no success: nothing was signed.
    zero = tessera.Signer.from_callback(element.key.public_key,
                                        lambda m: (_ for _ in ()).throw(tessera.Error(0)))
    with pytest.raises(tessera.SignerError) as z:
        zero.sign(b"m")
    assert z.value.code == 211
    zero.close()
    assert len(signer.sign(b"m")) == 64
    signer.close()
    with pytest.raises(tessera.ClosedError):
        signer.sign(b"m")


def test_callback_signer_arguments() -> None:
    with pytest.raises(tessera.ArgumentTypeError):
        tessera.Signer.from_callback(bytes(32), "not callable")  # type: ignore[arg-type]
    with pytest.raises(tessera.ArgumentError):
        tessera.Signer.from_callback(bytes(31), lambda m: bytes(64))
    with pytest.raises(tessera.ConfigError) as e:
        tessera.Signer.from_pkcs8(b"nonsense")
    assert e.value.code == 201
    with pytest.raises(tessera.ArgumentTypeError):
        tessera.Signer.from_pkcs8("nonsense")  # type: ignore[arg-type]


def test_reentry_from_the_callback_is_refused() -> None:
    """The callback signing with its own signer gets InUseError, as in C."""
    key = tessera.Signer.from_seed(SEED)
    inner: List[BaseException] = []
    holder: List[tessera.Signer] = []

    def sign(message: bytes) -> bytes:
        try:
            holder[0].sign(message)
        except tessera.Error as e:
            inner.append(e)
        try:
            holder[0].close()
        except tessera.Error as e:
            inner.append(e)
        return key.sign(message)

    signer = tessera.Signer.from_callback(key.public_key, sign)
    holder.append(signer)
    assert signer.sign(b"m") == key.sign(b"m")
    assert [type(e) for e in inner] == [tessera.InUseError, tessera.InUseError]
    assert all(e.code == 11 for e in inner if isinstance(e, tessera.Error))
    assert not signer.closed
    signer.close()


def test_callback_signer_outlives_its_python_references() -> None:
    """The callable and its state live as long as the C signer, not as long
    as the caller's references."""
    key = tessera.Signer.from_seed(SEED)
    signer = tessera.Signer.from_callback(key.public_key, lambda m: key.sign(m))
    gc.collect()
    assert signer.sign(b"after gc") == key.sign(b"after gc")
    signer.close()


def test_close_waits_for_a_call_in_progress() -> None:
    """close() from another thread waits for a call running on the object;
    the call completes with the handle alive."""
    import threading
    import time

    key = tessera.Signer.from_seed(SEED)
    entered = threading.Event()

    def slow_sign(message: bytes) -> bytes:
        entered.set()
        time.sleep(0.3)
        return key.sign(message)

    signer = tessera.Signer.from_callback(key.public_key, slow_sign)
    result: List[bytes] = []
    worker = threading.Thread(target=lambda: result.append(signer.sign(b"m")))
    worker.start()
    assert entered.wait(10)
    started = time.monotonic()
    signer.close()
    assert time.monotonic() - started > 0.1
    worker.join()
    assert result == [key.sign(b"m")] and signer.closed
