# Types of the module maturin generates at build time (tessera/_native/__init__.py,
# ffi.py and the library): cffi's out-of-line ABI-mode objects, untyped.
from typing import Any

ffi: Any
lib: Any
