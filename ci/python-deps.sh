#!/bin/sh
# Installs what ci/verify_vectors.py needs with pip, only when missing:
# `cryptography` (Ed25519, AES-GCM) and `pyhpke` (an HPKE, RFC 9180,
# independent of the one Tessera uses). Quiet and idempotent.
set -eu
PYTHON="${PYTHON:-python3}"
if "$PYTHON" -c '
import cryptography.hazmat.primitives.asymmetric.ed25519 as m
m.Ed25519PublicKey.public_bytes_raw
from pyhpke import AEADId
AEADId.EXPORT_ONLY' 2>/dev/null; then
    exit 0
fi
PACKAGES="cryptography>=40 pyhpke>=0.6,<0.7"
# Outside a virtual environment, Debian's Python refuses system-wide installs
# (PEP 668): install for the user instead.
if "$PYTHON" -c 'import sys; sys.exit(sys.prefix == sys.base_prefix)'; then
    "$PYTHON" -m pip install --quiet --disable-pip-version-check $PACKAGES
else
    "$PYTHON" -m pip install --quiet --disable-pip-version-check --user $PACKAGES \
        || "$PYTHON" -m pip install --quiet --disable-pip-version-check --user \
            --break-system-packages $PACKAGES
fi
