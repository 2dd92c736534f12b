#!/usr/bin/env python3
"""verify_receipts: the settlement side. Verifies a provider's whole receipt
chain from a receipts file before paying it.

The file is UTF-8 text, one receipt a line as lowercase hex, in chain order;
blank lines and lines starting with ``#`` are ignored. Every receipt must be
signed by the provider's key and continue the chain from sequence 1: none
missing, replayed or out of order, each naming the hash of the one before.

    verify_receipts.py --public-key HEX receipts.txt

Prints one line per receipt and a summary; exits 1 at the first receipt
that does not verify (or a line that is not hex), 2 on a usage error.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Iterator, List, Optional, Tuple

import tessera

STATUS = {int(r): r.name.lower() for r in tessera.FailReason}


def receipts(path: Path) -> Iterator[Tuple[int, bytes]]:
    """(line number, receipt bytes) of each receipt line."""
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            text = line.strip()
            if not text or text.startswith("#"):
                continue
            try:
                yield number, bytes.fromhex(text)
            except ValueError:
                raise ValueError("line %d is not hex" % number) from None


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="Verify a provider's receipt chain from a receipts file.")
    parser.add_argument("--public-key", required=True, help="the provider's Ed25519 public key, 64 hex digits")
    parser.add_argument("file", type=Path, help="the receipts file")
    args = parser.parse_args(argv)
    try:
        public_key = bytes.fromhex(args.public_key)
        if len(public_key) != 32:
            raise ValueError
    except ValueError:
        parser.error("--public-key must be 64 hex digits")

    count = 0
    total = 0
    try:
        with tessera.ChainVerifier(public_key) as verifier:
            for number, receipt in receipts(args.file):
                try:
                    info = verifier.verify_next(receipt)
                except tessera.Error as e:
                    print("line %d: receipt %d does not verify: %s" % (number, count + 1, e))
                    return 1
                count += 1
                total += info.price
                print("receipt %d: job %d %s, price %d, %d us of GPU time, output root %s"
                      % (info.sequence, info.job, STATUS.get(info.status, "status %d" % info.status),
                         info.price, info.usage.gpu_time_us, info.output_root.hex()))
            chain = verifier.chain
    except (OSError, ValueError) as e:
        print("verify_receipts: %s" % e, file=sys.stderr)
        return 1
    print("%d receipt(s) verified for key %s: chain at sequence %d, total price %d"
          % (count, tessera.key_id(public_key).hex(), chain.next_sequence, total))
    return 0


if __name__ == "__main__":
    sys.exit(main())
