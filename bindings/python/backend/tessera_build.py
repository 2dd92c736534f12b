"""The package's PEP 517 build backend: maturin, with the C header made
readable by cffi first.

maturin's cffi mode makes the declarations module (`tessera._native.ffi`)
from a C header: the file ``header.h`` in the cargo target directory when it
exists, or else a header it generates with cbindgen from the crate's
``cbindgen.toml``. The library's committed header, ``include/tessera.h``,
is what C programs include, and cffi reads no preprocessor conditionals:
its hosted-only items sit under ``#if defined(TESSERA_HOSTED)``, C++ gets
``extern "C"`` under ``#ifdef __cplusplus``, and ``TESSERA_VERSION_NUMBER``
is an expression. cbindgen's output from ``ffi/cbindgen.toml`` has the
same conditionals (the configuration adds them), so neither header can be
given to cffi as it is.

Before each wheel build this backend writes ``header.h`` into the target
directory: ``include/tessera.h`` as a C compiler sees it for the hosted
library (``TESSERA_HOSTED`` defined, nothing else), without includes and
comments, every integer macro evaluated to a literal. Everything else,
the Rust build included, is maturin's.
"""

from __future__ import annotations

import ast
import json
import operator
import os
import re
import subprocess
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional

import maturin
from maturin import (  # noqa: F401 (the hooks this backend passes on unchanged)
    build_sdist,
    get_requires_for_build_editable,
    get_requires_for_build_sdist,
    get_requires_for_build_wheel,
    prepare_metadata_for_build_wheel,
)

HERE = Path(__file__).resolve().parent
PROJECT = HERE.parent
HEADER = PROJECT.parent.parent / "include" / "tessera.h"
MANIFEST = PROJECT.parent.parent / "ffi" / "Cargo.toml"

# What the hosted library is compiled with.
DEFINED = {"TESSERA_HOSTED"}


class HeaderError(Exception):
    """The header holds something this conversion does not handle."""


_BINARY: Dict[type, Callable[[int, int], int]] = {
    ast.BitOr: operator.or_,
    ast.BitAnd: operator.and_,
    ast.BitXor: operator.xor,
    ast.LShift: operator.lshift,
    ast.RShift: operator.rshift,
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
}


def _evaluate(node: ast.AST) -> Any:
    """Evaluates an integer or boolean expression of literals only."""
    if isinstance(node, ast.Expression):
        return _evaluate(node.body)
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, bool)):
        return node.value
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        return _BINARY[type(node.op)](_evaluate(node.left), _evaluate(node.right))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Invert):
        return ~_evaluate(node.operand)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        return not _evaluate(node.operand)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return -_evaluate(node.operand)
    if isinstance(node, ast.BoolOp):
        values = [_evaluate(v) for v in node.values]
        return all(values) if isinstance(node.op, ast.And) else any(values)
    raise HeaderError("not a constant expression: %s" % ast.dump(node))


def _c_expression(text: str, macros: Mapping[str, int], defined: set) -> Any:
    """A preprocessor expression's value: `defined(X)`, `!`, `&&`, `||`,
    integer literals and macros already defined as integers."""
    text = re.sub(r"defined\s*\(\s*(\w+)\s*\)|defined\s+(\w+)",
                  lambda m: " True " if (m.group(1) or m.group(2)) in defined else " False ",
                  text)
    text = re.sub(r"\b(0[xX][0-9a-fA-F]+|\d+)[uUlL]*\b", r"\1", text)
    text = text.replace("&&", " and ").replace("||", " or ")
    text = re.sub(r"!(?!=)", " not ", text)

    def name(m: "re.Match[str]") -> str:
        word = m.group(0)
        if word in ("True", "False", "and", "or", "not"):
            return word
        if word in macros:
            return str(macros[word])
        raise HeaderError("unknown macro %s" % word)

    text = re.sub(r"\b[A-Za-z_]\w*\b", name, text)
    return _evaluate(ast.parse(text.strip(), mode="eval"))


def cffi_header(source: str) -> str:
    """`source` (a C header) as cffi's `cdef` reads it: conditionals
    resolved for the hosted library, includes and comments removed, integer
    macros as literals (others dropped)."""
    text = re.sub(r"/\*.*?\*/", " ", source, flags=re.S)
    text = re.sub(r"//[^\n]*", "", text)
    out: List[str] = []
    macros: Dict[str, int] = {}
    defined = set(DEFINED)
    # One entry per open conditional: (this branch is taken, a branch was taken, parent active).
    stack: List[List[bool]] = []

    def active() -> bool:
        return all(frame[0] for frame in stack)

    for raw in text.split("\n"):
        line = raw.strip()
        if not line.startswith("#"):
            if active() and line:
                out.append(raw.rstrip())
            continue
        m = re.match(r"#\s*(\w+)\s*(.*)$", line)
        if not m:
            raise HeaderError("unreadable directive: %s" % line)
        directive, rest = m.group(1), m.group(2).strip()
        if directive in ("if", "ifdef", "ifndef"):
            parent = active()
            if directive == "ifdef":
                taken = rest in defined
            elif directive == "ifndef":
                taken = rest not in defined
            else:
                taken = bool(_c_expression(rest, macros, defined)) if parent else False
            stack.append([taken, taken, parent])
        elif directive == "elif":
            if not stack:
                raise HeaderError("#elif without #if")
            frame = stack[-1]
            taken = not frame[1] and frame[2] and bool(_c_expression(rest, macros, defined))
            frame[0] = taken
            frame[1] = frame[1] or taken
        elif directive == "else":
            if not stack:
                raise HeaderError("#else without #if")
            frame = stack[-1]
            frame[0] = not frame[1]
            frame[1] = True
        elif directive == "endif":
            if not stack:
                raise HeaderError("#endif without #if")
            stack.pop()
        elif not active() or directive == "include":
            continue
        elif directive == "define":
            d = re.match(r"(\w+)(\s+(.*))?$", rest)
            if not d or "(" in d.group(1):
                raise HeaderError("unreadable #define: %s" % line)
            macro, value = d.group(1), (d.group(3) or "").strip()
            defined.add(macro)
            if not value:
                continue
            try:
                number = _c_expression(value, macros, defined)
            except (HeaderError, SyntaxError):
                continue
            if isinstance(number, bool) or not isinstance(number, int):
                continue
            macros[macro] = number
            out.append("#define %s %d" % (macro, number))
        else:
            raise HeaderError("unsupported directive: %s" % line)
    if stack:
        raise HeaderError("unterminated #if")
    body = "\n".join(line for line in out if line.strip())
    return "/* include/tessera.h for cffi (made by bindings/python/backend/tessera_build.py) */\n" + body + "\n"


def _target_directory() -> Path:
    """The cargo target directory maturin builds in (CARGO_TARGET_DIR and
    cargo's configuration respected, as maturin finds it)."""
    result = subprocess.run(
        ["cargo", "metadata", "--format-version", "1", "--no-deps", "--manifest-path", str(MANIFEST)],
        check=True,
        stdout=subprocess.PIPE,
    )
    return Path(json.loads(result.stdout)["target_directory"])


def write_header() -> Path:
    """Writes the cffi header where maturin looks for it; returns its path."""
    header = cffi_header(HEADER.read_text(encoding="utf-8"))
    target = _target_directory()
    target.mkdir(parents=True, exist_ok=True)
    path = target / "header.h"
    tmp = path.with_suffix(".h.tmp%d" % os.getpid())
    tmp.write_text(header, encoding="utf-8")
    os.replace(tmp, path)
    print("tessera: wrote the cffi header %s from %s" % (path, HEADER))
    return path


def build_wheel(
    wheel_directory: str,
    config_settings: Optional[Mapping[str, Any]] = None,
    metadata_directory: Optional[str] = None,
) -> str:
    write_header()
    return maturin.build_wheel(wheel_directory, config_settings, metadata_directory)


def build_editable(
    wheel_directory: str,
    config_settings: Optional[Mapping[str, Any]] = None,
    metadata_directory: Optional[str] = None,
) -> str:
    write_header()
    return maturin.build_editable(wheel_directory, config_settings, metadata_directory)
