#!/bin/sh
# Installs what ci/verify_vectors.py needs (the `cryptography` package) with
# pip, only when it is missing. Quiet and idempotent.
set -eu
PYTHON="${PYTHON:-python3}"
if "$PYTHON" -c 'import cryptography.hazmat.primitives.asymmetric.ed25519 as m; m.Ed25519PublicKey.public_bytes_raw' 2>/dev/null; then
    exit 0
fi
# Outside a virtual environment, Debian's Python refuses system-wide installs
# (PEP 668): install for the user instead.
if "$PYTHON" -c 'import sys; sys.exit(sys.prefix == sys.base_prefix)'; then
    "$PYTHON" -m pip install --quiet --disable-pip-version-check 'cryptography>=40'
else
    "$PYTHON" -m pip install --quiet --disable-pip-version-check --user 'cryptography>=40' \
        || "$PYTHON" -m pip install --quiet --disable-pip-version-check --user \
            --break-system-packages 'cryptography>=40'
fi
