"""Shared test helpers: where the repository and its test data are, the
shared vectors, and the vectors' data generator."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, Dict, List

import pytest

REPO = Path(__file__).resolve().parents[3]
VECTORS = REPO / "core" / "tests" / "vectors"
KERNELS = REPO / "core" / "kernels"
EXAMPLES = REPO / "examples" / "python"


def load_vectors(name: str) -> List[Dict[str, Any]]:
    """One of core/tests/vectors/*.json."""
    with open(VECTORS / ("%s.json" % name), encoding="utf-8") as f:
        vectors: List[Dict[str, Any]] = json.load(f)
    return vectors


def generated(length: int) -> bytes:
    """The vectors' data generator: byte i is (i * 31 + 7) mod 251."""
    return bytes((i * 31 + 7) % 251 for i in range(length))


def kernel(name: str) -> bytes:
    """A committed SPIR-V kernel of core/kernels."""
    return (KERNELS / name).read_bytes()


def binaries_dir() -> Path:
    """Where the coordinator's programs are: $TESSERA_BIN_DIR, or the cargo
    target directory's debug build."""
    env = os.environ.get("TESSERA_BIN_DIR")
    if env:
        return Path(env)
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    return target / "debug"


@pytest.fixture(scope="session")
def bin_dir() -> Path:
    """The coordinator, certificate tool and requester, which must exist:
    an end-to-end test that cannot run fails rather than skips."""
    d = binaries_dir()
    missing = [p for p in ("tessera-certs", "tessera-coordinator", "tessera-requester")
               if not (d / p).exists()]
    if missing:
        pytest.fail("missing %s in %s: build them with `cargo build -p tessera-coordinator --bins` "
                    "or set TESSERA_BIN_DIR" % (", ".join(missing), d))
    return d


@pytest.fixture(scope="session")
def spirv_val() -> str:
    """The Khronos SPIR-V validator, which the device gate runs."""
    path = shutil.which("spirv-val")
    if path is None:
        pytest.fail("spirv-val is not installed (Debian: apt install spirv-tools)")
    return path
