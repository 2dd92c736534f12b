#!/usr/bin/env python3
"""Independent check of the wire test vectors (core/tests/vectors/wire.json).

This decoder is written from the layout in docs/PROTOCOL.md ("Frames" and
"Messages") and shares no code with the Rust implementation. For every vector
it decodes the frame and checks that the fields equal the vector's readable
form, re-encodes the fields and checks the bytes are the same, and checks chunk
digests; for invalid vectors it checks that decoding fails for the stated
reason. Standard library only.

Usage: python3 ci/verify_wire_vectors.py [path/to/wire.json]
"""

import hashlib
import json
import os
import sys

MAGIC = b"TS"
WIRE_VERSION = 1
HEADER_LEN = 8
MAX_FRAME = 8448
MAX_BODY = MAX_FRAME - HEADER_LEN
CHUNK_SIZE = 8192
MAX_ENTRY_POINT = 64
MAX_SPEC_CONSTANTS = 16
MAX_PUSH_CONSTANTS = 128
MAX_BUFFERS = 8


class DecodeError(Exception):
    """A frame that does not decode; `kind` is the error's name."""

    def __init__(self, kind, detail=""):
        super().__init__(f"{kind}: {detail}" if detail else kind)
        self.kind = kind


class BodyError(Exception):
    """A body that breaks the encoding rules (reported as Malformed)."""


# ----- field types -------------------------------------------------------------------
# A type is a tuple whose first element names the encoding.

U8 = ("u8",)
U16 = ("uint", 16)
U32 = ("uint", 32)
U64 = ("uint", 64)
BOOL = ("bool",)
BYTES = ("bytes",)  # varint length, then the bytes (shown as hex)


def fixed(n):
    """[u8; n]: n raw bytes, shown as hex."""
    return ("fixed", n)


def array(t, n):
    """[T; n]: n values of T, no length."""
    return ("array", t, n)


def seq(t, cap):
    """Vec<T, cap>: varint count, then the values."""
    return ("seq", t, cap)


def byte_seq(cap):
    """Vec<u8, cap>: varint count, then raw bytes (shown as hex)."""
    return ("byteseq", cap)


def string(cap):
    """String<cap>: varint byte length, then UTF-8 bytes."""
    return ("string", cap)


def tup(*ts):
    """(A, B, ...): the fields in order, shown as a JSON array."""
    return ("tuple", ts)


def enum(*names):
    """A reason code: one raw byte, the n-th name has code n (from 1), shown by name."""
    return ("enum", names)


def struct(*fields):
    """Fields in declaration order, no framing."""
    return ("struct", fields)


# ----- messages ----------------------------------------------------------------------

NONCE = fixed(32)
DIGEST = fixed(32)

REQUIREMENTS = struct(("memory_mib", U32), ("features", U32))
KERNEL = struct(
    ("len", U32),
    ("root", DIGEST),
    ("entry_point", string(MAX_ENTRY_POINT)),
    ("specialization", seq(tup(U32, U32), MAX_SPEC_CONSTANTS)),
    ("push_constants", byte_seq(MAX_PUSH_CONSTANTS)),
    ("grid", array(U32, 3)),
)
BUFFER = struct(("binding", U32), ("len", U64), ("init_len", U64), ("readback", BOOL))
CHUNK = struct(
    ("job", U64), ("stream", U8), ("index", U32), ("digest", DIGEST), ("data", BYTES)
)
JOB_REF = struct(("job", U64))
USAGE = struct(
    ("gpu_time_us", U64), ("dispatches", U32), ("bytes_in", U64), ("bytes_out", U64)
)
DECLINE_REASON = enum(
    "PriceTooLow",
    "AtCapacity",
    "Unsupported",
    "DeadlineTooShort",
    "Draining",
    "TooLarge",
    "DuplicateJob",
    "Unavailable",
)
FAIL_REASON = enum(
    "KernelRejected",
    "Timeout",
    "DeadlineExceeded",
    "DeviceLost",
    "OutOfMemory",
    "InputIntegrity",
    "Host",
)
GOODBYE_REASON = enum("Drained", "Shutdown", "ProtocolError")
EMPTY = struct()

# type code -> (name, body layout)
MESSAGES = {
    0x01: ("Hello", struct(
        ("min_version", U16),
        ("max_version", U16),
        ("agent_version", array(U16, 3)),
        ("key_id", fixed(16)),
        ("next_sequence", U64),
        ("prev_hash", DIGEST),
    )),
    0x02: ("Welcome", struct(
        ("version", U16), ("challenge", NONCE), ("heartbeat_ms", U32)
    )),
    0x03: ("Evidence", struct(("bytes", BYTES))),
    0x04: ("Ready", EMPTY),
    0x05: ("Batching", struct(("max_receipts", U16), ("max_delay_us", U32))),
    0x10: ("JobOffer", struct(
        ("job", U64),
        ("requirements", REQUIREMENTS),
        ("est_gpu_ms", U32),
        ("bytes_in", U64),
        ("bytes_out", U64),
        ("max_price", U64),
        ("deadline_ms", U32),
    )),
    0x11: ("OfferAccept", struct(("job", U64), ("price", U64))),
    0x12: ("OfferDecline", struct(("job", U64), ("reason", DECLINE_REASON))),
    0x13: ("JobAssign", struct(
        ("job", U64),
        ("requester_nonce", NONCE),
        ("kernel", KERNEL),
        ("buffers", seq(BUFFER, MAX_BUFFERS)),
        ("inputs_root", DIGEST),
    )),
    0x14: ("InputChunk", CHUNK),
    # Protocol version 3: JobAssign's fields, then how the job is sealed.
    0x1F: ("SealedJobAssign", struct(
        ("job", U64),
        ("requester_nonce", NONCE),
        ("kernel", KERNEL),
        ("buffers", seq(BUFFER, MAX_BUFFERS)),
        ("inputs_root", DIGEST),
        ("sealing", struct(
            ("enc", fixed(32)),
            ("requester_key", fixed(32)),
            ("kernel_sealed", BOOL),
            ("result_key", fixed(32)),
            ("result_key_tag", fixed(16)),
        )),
    )),
    0x15: ("Started", JOB_REF),
    0x16: ("Progress", struct(("job", U64), ("permille", U16))),
    0x17: ("OutputChunk", CHUNK),
    0x18: ("Completed", struct(
        ("job", U64), ("output_len", U64), ("output_root", DIGEST)
    )),
    0x19: ("Failed", struct(("job", U64), ("reason", FAIL_REASON), ("detail", U32))),
    0x1A: ("UsageReport", struct(("job", U64), ("usage", USAGE), ("price", U64))),
    0x1B: ("Receipt", struct(("job", U64), ("bytes", BYTES))),
    0x1C: ("ResultAck", JOB_REF),
    0x1D: ("Cancel", struct(("job", U64), ("reason", U16))),
    0x1E: ("ResultRefuse", struct(("job", U64), ("reason", U16))),
    0x30: ("Heartbeat", struct(("active_jobs", U8), ("capacity", U8))),
    0x31: ("Drain", EMPTY),
    0x32: ("Goodbye", struct(("reason", GOODBYE_REASON))),
    0x3F: ("Error", struct(("code", U16), ("job", U64))),
}

# ----- decoding ----------------------------------------------------------------------


class Reader:
    def __init__(self, data):
        self.data = data
        self.pos = 0

    def take(self, n):
        if n > len(self.data) - self.pos:
            raise BodyError(f"needs {n} bytes at {self.pos}, body ends first")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def varint(self, bits):
        """LEB128, at most ceil(bits / 7) bytes, value below 2**bits.

        Overlong forms (a redundant 0x80 continuation) are accepted, as the
        reference decoder accepts them; encoders emit the shortest form.
        """
        max_len = (bits + 6) // 7
        value = 0
        for i in range(max_len):
            byte = self.take(1)[0]
            value |= (byte & 0x7F) << (7 * i)
            if byte & 0x80 == 0:
                if value >> bits:
                    raise BodyError(f"varint {value} over u{bits}")
                return value
        raise BodyError(f"varint longer than {max_len} bytes")


def decode_value(t, r):
    kind = t[0]
    if kind == "u8":
        return r.take(1)[0]
    if kind == "uint":
        return r.varint(t[1])
    if kind == "bool":
        b = r.take(1)[0]
        if b > 1:
            raise BodyError(f"bool byte {b}")
        return b == 1
    if kind == "fixed":
        return r.take(t[1]).hex()
    if kind == "bytes":
        return r.take(r.varint(64)).hex()
    if kind == "byteseq":
        n = r.varint(64)
        if n > t[1]:
            raise BodyError(f"{n} bytes over capacity {t[1]}")
        return r.take(n).hex()
    if kind == "string":
        n = r.varint(64)
        raw = r.take(n)
        try:
            s = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise BodyError(f"string not UTF-8: {e}") from None
        if n > t[1]:
            raise BodyError(f"string of {n} bytes over capacity {t[1]}")
        return s
    if kind == "array":
        return [decode_value(t[1], r) for _ in range(t[2])]
    if kind == "seq":
        n = r.varint(64)
        if n > t[2]:
            raise BodyError(f"{n} elements over capacity {t[2]}")
        return [decode_value(t[1], r) for _ in range(n)]
    if kind == "tuple":
        return [decode_value(x, r) for x in t[1]]
    if kind == "enum":
        code = r.take(1)[0]
        if not 1 <= code <= len(t[1]):
            raise BodyError(f"reason code {code} of 1..={len(t[1])}")
        return t[1][code - 1]
    if kind == "struct":
        return {name: decode_value(ft, r) for name, ft in t[1]}
    raise AssertionError(kind)


def decode_frame(frame):
    """Decodes exactly one frame; returns (type name, type code, fields)."""
    if len(frame) < HEADER_LEN:
        raise DecodeError("Incomplete", f"{len(frame)} bytes, header needs 8")
    if frame[0:2] != MAGIC:
        raise DecodeError("BadMagic", frame[0:2].hex())
    if frame[2] != WIRE_VERSION:
        raise DecodeError("UnsupportedVersion", str(frame[2]))
    body_len = int.from_bytes(frame[4:8], "little")
    if body_len > MAX_BODY:
        raise DecodeError("FrameTooLarge", str(body_len))
    if len(frame) < HEADER_LEN + body_len:
        raise DecodeError("Incomplete", f"body of {body_len} bytes announced")
    code = frame[3]
    if code not in MESSAGES:
        raise DecodeError("UnknownType", f"0x{code:02x}")
    name, layout = MESSAGES[code]
    if len(frame) > HEADER_LEN + body_len:
        raise DecodeError("Malformed", "bytes after the frame")
    r = Reader(frame[HEADER_LEN:])
    try:
        fields = decode_value(layout, r)
        if r.pos != len(r.data):
            raise BodyError(f"{len(r.data) - r.pos} trailing body bytes")
        if layout is CHUNK and len(fields["data"]) // 2 > CHUNK_SIZE:
            raise BodyError("chunk data over CHUNK_SIZE")
    except BodyError as e:
        raise DecodeError("Malformed", f"{name}: {e}") from None
    return name, code, fields


# ----- encoding (to check the vectors use the shortest forms) -------------------------


def varint(v):
    out = bytearray()
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def encode_value(t, v):
    kind = t[0]
    if kind == "u8":
        return bytes([v])
    if kind == "uint":
        return varint(v)
    if kind == "bool":
        return bytes([1 if v else 0])
    if kind == "fixed":
        return bytes.fromhex(v)
    if kind in ("bytes", "byteseq"):
        b = bytes.fromhex(v)
        return varint(len(b)) + b
    if kind == "string":
        b = v.encode("utf-8")
        return varint(len(b)) + b
    if kind == "array":
        return b"".join(encode_value(t[1], x) for x in v)
    if kind == "seq":
        return varint(len(v)) + b"".join(encode_value(t[1], x) for x in v)
    if kind == "tuple":
        return b"".join(encode_value(x, y) for x, y in zip(t[1], v))
    if kind == "enum":
        return bytes([t[1].index(v) + 1])
    if kind == "struct":
        return b"".join(encode_value(ft, v[name]) for name, ft in t[1])
    raise AssertionError(kind)


def encode_frame(code, fields):
    body = encode_value(MESSAGES[code][1], fields)
    return MAGIC + bytes([WIRE_VERSION, code]) + len(body).to_bytes(4, "little") + body


# ----- the check ---------------------------------------------------------------------


def check(vector):
    """Returns None if the vector holds, else why not."""
    frame = bytes.fromhex(vector["hex"])
    expected_error = vector.get("expect_error")
    try:
        name, code, fields = decode_frame(frame)
    except DecodeError as e:
        if expected_error is None:
            return f"does not decode: {e}"
        if e.kind != expected_error:
            return f"fails with {e}, expected {expected_error}"
        return None
    if expected_error is not None:
        return f"decodes as {name}, expected {expected_error}"
    if name != vector["type"] or code != vector["type_code"]:
        return f"type {name} (0x{code:02x}), vector says {vector['type']} ({vector['type_code']})"
    if fields != vector["readable"]:
        return f"fields {json.dumps(fields)} differ from readable {json.dumps(vector['readable'])}"
    if encode_frame(code, fields) != frame:
        return "re-encoding the fields gives other bytes (not the shortest form?)"
    if MESSAGES[code][1] is CHUNK:
        leaf = hashlib.sha256(b"\x00" + bytes.fromhex(fields["data"])).hexdigest()
        if leaf != fields["digest"]:
            return "chunk digest is not SHA-256(0x00 || data)"
    return None


def main(argv):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    path = argv[1] if len(argv) > 1 else os.path.join(root, "core", "tests", "vectors", "wire.json")
    with open(path, encoding="utf-8") as f:
        vectors = json.load(f)
    passed = failed = 0
    covered = set()
    for vector in vectors:
        problem = check(vector)
        if problem is None:
            passed += 1
            if "expect_error" not in vector:
                covered.add(vector["type_code"])
        else:
            failed += 1
            print(f"FAIL {vector.get('name')}: {problem}")
    for code in sorted(set(MESSAGES) - covered):
        failed += 1
        print(f"FAIL no valid vector for {MESSAGES[code][0]} (0x{code:02x})")
    print(f"wire-vectors: {passed} passed, {failed} failed")
    return 1 if failed or not passed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
