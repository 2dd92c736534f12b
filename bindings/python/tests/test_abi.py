"""The package against the library: versions, the check made on import (a
mismatch simulated with a library that reports another version), the
header the build gives cffi, and the code space's classes against
docs/CODES.md."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from types import ModuleType
from typing import List, Tuple

import cffi  # type: ignore[import-untyped, unused-ignore]
import pytest

import tessera
from tessera import _ffi
from conftest import REPO

BINDING = Path(__file__).resolve().parents[1]


def backend() -> ModuleType:
    """The package's build backend (bindings/python/backend/tessera_build.py)."""
    spec = importlib.util.spec_from_file_location("tessera_build", BINDING / "backend" / "tessera_build.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_versions_agree() -> None:
    major, minor, patch = tessera.version()
    assert (major << 16 | minor << 8 | patch) == tessera.DECLARED_VERSION
    header = (REPO / "include" / "tessera.h").read_text()
    for part, value in zip(("MAJOR", "MINOR", "PATCH"), (major, minor, patch)):
        assert re.search(r"#define TESSERA_VERSION_%s %d\b" % (part, value), header)


def test_check_abi_refuses_any_other_version() -> None:
    _ffi.check_abi(0x000100, 0x000100)
    for other in (0x000101, 0x000200, 0x010100, 0):
        with pytest.raises(tessera.AbiMismatchError) as e:
            _ffi.check_abi(other, 0x000100)
        assert e.value.code == 7
        assert e.value.library_version == other
        assert "built for 0.1.0" in str(e.value)


def test_import_with_a_library_of_another_version() -> None:
    """A library that reports another version than the declarations: the
    import fails with AbiMismatchError, naming both versions."""
    script = textwrap.dedent("""
        import importlib.util, sys, types
        from pathlib import Path
        native = Path(importlib.util.find_spec("tessera").origin).parent / "_native"
        spec = importlib.util.spec_from_file_location("declarations", native / "ffi.py")
        decl = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(decl)
        real = decl.ffi.dlopen(str(next(native.glob("*.so"))))

        class OtherVersion:
            def __getattr__(self, name):
                return getattr(real, name)
            def tessera_version(self):
                return (2 << 16) | (7 << 8) | 1

        fake = types.ModuleType("tessera._native")
        fake.ffi, fake.lib = decl.ffi, OtherVersion()
        sys.modules["tessera._native"] = fake
        try:
            import tessera
        except Exception as e:
            print(type(e).__name__, getattr(e, "code", None), e)
        else:
            print("imported")
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    line = out.stdout.strip()
    assert line.startswith("AbiMismatchError 7 "), line
    assert "version 2.7.1" in line and "built for 0.1.0" in line


def codes_table() -> List[Tuple[int, str]]:
    """(code, name) of every row of docs/CODES.md's table."""
    rows = []
    for line in (REPO / "docs" / "CODES.md").read_text().splitlines():
        m = re.match(r"\|\s*(\d+)\s*\|\s*`(\w+)`", line)
        if m:
            rows.append((int(m.group(1)), m.group(2)))
    assert len(rows) > 60
    return rows


RANGES = [
    (1, 99, tessera.CallError),
    (100, 199, tessera.UsageError),
    (200, 299, tessera.ConfigError),
    (300, 399, tessera.StoreError),
    (400, 499, tessera.VerifyError),
    (500, 599, tessera.VulkanError),
    (1000, 1099, tessera.WireError),
    (2000, 2199, tessera.JobError),
    (10000, 19999, tessera.KernelRejectedError),
]


@pytest.mark.parametrize("code,name", codes_table())
def test_every_code_has_its_range_class_and_words(code: int, name: str) -> None:
    if code == 0:
        assert tessera.result_text(0).startswith("ok")
        return
    cls = tessera.error_class(code)
    ranges = [r for r in RANGES if r[0] <= code <= r[1]]
    assert len(ranges) == 1, code
    assert issubclass(cls, ranges[0][2])
    err = cls(code)
    assert isinstance(err, tessera.Error) and err.code == code
    assert err.name == name
    assert tessera.result_text(code).startswith(name + ": ")


def test_error_classes_by_code() -> None:
    assert tessera.error_class(1) is tessera.WouldBlockError
    assert tessera.error_class(3) is tessera.BufferTooSmallError
    assert tessera.error_class(5) is tessera.ArgumentError
    assert tessera.error_class(11) is tessera.InUseError
    assert tessera.error_class(210) is tessera.SignerUnavailableError
    assert tessera.error_class(211) is tessera.SignerError
    assert issubclass(tessera.SignerError, tessera.ConfigError)
    assert issubclass(tessera.ArgumentError, ValueError)
    assert issubclass(tessera.ArgumentTypeError, TypeError)
    # Unknown numbers: the class of their range, or Error outside any.
    assert tessera.error_class(150) is tessera.UsageError
    assert tessera.error_class(12345) is tessera.KernelRejectedError
    assert tessera.error_class(99999) is tessera.Error
    e = tessera.error_class(10042)(10042)
    assert isinstance(e, tessera.KernelRejectedError) and e.rule == 42
    w = tessera.WireError(1011)
    assert w.wire_code == 11 and w.name == "peer_bad_magic"
    j = tessera.JobError(2002)
    assert j.fail_reason == 2 and tessera.JobError(2101).fail_reason is None
    assert str(tessera.ArgumentError(5, "seed must be 32 bytes")) == \
        "%s (5): seed must be 32 bytes" % tessera.result_text(5)
    assert tessera.result_text(99999) == "unknown code 99999"


def test_header_for_cffi() -> None:
    """The header the build gives maturin: include/tessera.h for the hosted
    library, which cffi reads, with every hosted function and nothing of the
    bare-metal build's internals."""
    build = backend()
    source = (REPO / "include" / "tessera.h").read_text()
    header = build.cffi_header(source)
    assert "#if" not in header and "#include" not in header and "extern \"C\"" not in header
    assert "#define TESSERA_VERSION_NUMBER %d\n" % tessera.DECLARED_VERSION in header
    declared = set(re.findall(r"\b(tessera_\w+)\s*\(", re.sub(r"/\*.*?\*/", "", source, flags=re.S)))
    internal = {"tessera_platform_abort", "tessera_no_alloc_violation"}
    kept = set(re.findall(r"\b(tessera_\w+)\s*\(", header))
    assert declared - internal <= kept | {"tessera_result", "tessera_signer", "tessera_agent"}
    assert not internal & kept
    ffi = cffi.FFI()
    ffi.cdef(header)
    assert ffi.sizeof("tessera_kernel_job") == _ffi.ffi.sizeof("tessera_kernel_job")
    # What it does not handle, it says.
    with pytest.raises(build.HeaderError):
        build.cffi_header("#pragma once\nint f(void);\n")
    with pytest.raises(build.HeaderError):
        build.cffi_header("#if defined(X)\nint f(void);\n")
    assert build.cffi_header("#if !defined(A) && (defined(TESSERA_HOSTED) || defined(B))\n"
                             "int f(void);\n#else\nint g(void);\n#endif\n").count("int f(void);") == 1
