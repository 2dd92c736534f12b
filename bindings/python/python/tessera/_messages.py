"""Protocol messages as dicts: one frame decoded, or encoded from its
readable form, for tools and tests that speak the protocol without a codec
of their own.

A message is ``{"type": NAME, "fields": {...}}``: `NAME` as in
docs/PROTOCOL.md (``"Hello"``, ``"JobAssign"``), `fields` the ``readable``
form of the wire test vectors (integers as numbers, byte strings as
lowercase hex, enums by variant name)."""

from __future__ import annotations

import json
from typing import Any, Dict, Mapping

from ._errors import BUFFER_TOO_SMALL, OK, ArgumentTypeError, check, error_for
from ._ffi import Buffer, ffi, lib, out_bytes, readable
from ._types import MAX_FRAME


def decode_message(frame: Buffer) -> Dict[str, Any]:
    """Decodes one whole frame. A frame that does not decode raises
    `WireError` with the wire error code the agent would send for it (bad
    magic, unsupported version, frame too large, unknown message type,
    malformed)."""
    view, n = readable(frame, "frame")
    need = ffi.new("size_t *")
    size = 4 * n + 256
    while True:
        buf = ffi.new("char[]", size)
        code = lib.tessera_message_decode(view, n, buf, size, need)
        if code == BUFFER_TOO_SMALL and need[0] > size:
            size = int(need[0])
            continue
        check(code)
        text = bytes(ffi.buffer(buf, need[0])).decode("utf-8")
        message: Dict[str, Any] = json.loads(text)
        return message


def encode_message(message: Mapping[str, Any]) -> bytes:
    """Encodes a message from its dict form into one frame. A message the
    protocol cannot carry raises `ArgumentError` naming the field and what
    it must be."""
    if not isinstance(message, Mapping):
        raise ArgumentTypeError(detail="message must be a dict, not %s" % type(message).__name__)
    try:
        text = json.dumps(message, separators=(",", ":"))
    except (TypeError, ValueError) as e:
        raise ArgumentTypeError(detail="message is not JSON: %s" % e) from None
    frame = ffi.new("uint8_t[]", MAX_FRAME)
    written = ffi.new("size_t *")
    why = ffi.new("char[]", 512)
    code = lib.tessera_message_encode(text.encode("utf-8"), frame, len(frame), written, why, len(why))
    if code != OK:
        raise error_for(code, ffi.string(why).decode("utf-8", "replace") or None)
    return out_bytes(frame, written[0])
