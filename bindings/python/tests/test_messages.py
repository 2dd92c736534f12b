"""Protocol messages as dicts over the shared wire vectors: every valid
frame decodes to its readable form and encodes back to the same bytes;
every invalid frame fails with the wire error code the agent would send."""

from __future__ import annotations

from typing import Any, Dict

import pytest

import tessera
from conftest import load_vectors

WIRE = load_vectors("wire")
VALID = [v for v in WIRE if "expect_error" not in v]
INVALID = [v for v in WIRE if "expect_error" in v]

# The decode error each invalid vector names, as its wire error code
# (PROTOCOL.md, "Errors"); a frame shorter than its header says is malformed.
WIRE_CODES = {
    "Malformed": 1,
    "Incomplete": 1,
    "FrameTooLarge": 2,
    "UnsupportedVersion": 3,
    "UnknownType": 4,
    "BadMagic": 11,
}


def test_vectors_are_there() -> None:
    assert len(VALID) >= 50 and len(INVALID) >= 30


@pytest.mark.parametrize("v", VALID, ids=[v["name"] for v in VALID])
def test_valid_frame(v: Dict[str, Any]) -> None:
    frame = bytes.fromhex(v["hex"])
    message = tessera.decode_message(frame)
    assert message == {"type": v["type"], "fields": v["readable"]}
    assert tessera.encode_message(message) == frame
    assert frame[3] == v["type_code"]


@pytest.mark.parametrize("v", INVALID, ids=[v["name"] for v in INVALID])
def test_invalid_frame(v: Dict[str, Any]) -> None:
    with pytest.raises(tessera.WireError) as e:
        tessera.decode_message(bytes.fromhex(v["hex"]))
    assert e.value.wire_code == WIRE_CODES[v["expect_error"]]
    assert e.value.code == 1000 + WIRE_CODES[v["expect_error"]]


def test_encode_errors_name_the_field() -> None:
    with pytest.raises(tessera.ArgumentError) as e:
        tessera.encode_message({"type": "OfferAccept", "fields": {"job": 1, "price": "ten"}})
    assert e.value.code == 5 and e.value.detail and "price" in e.value.detail
    with pytest.raises(tessera.ArgumentError) as f:
        tessera.encode_message({"type": "NoSuchMessage", "fields": {}})
    assert f.value.detail
    with pytest.raises(tessera.ArgumentTypeError):
        tessera.encode_message([("type", "Ready")])  # type: ignore[arg-type]
    with pytest.raises(tessera.ArgumentTypeError):
        tessera.encode_message({"type": "Ready", "fields": {"x": object()}})
    assert tessera.encode_message({"type": "Ready"}) == bytes.fromhex("5453010400000000")
    with pytest.raises(tessera.ArgumentTypeError):
        tessera.decode_message("5453010400000000")  # type: ignore[arg-type]
