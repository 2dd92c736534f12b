#!/usr/bin/env python3
"""provider: a Tessera provider in Python, on the library's runtime.

It loads (or creates) the device key, opens the GPU through Vulkan, keeps a
TLS session with the coordinator (reconnecting with backoff), runs the jobs
it takes, and collects each receipt it signs through the receipt callback
into a receipts file (one receipt a line, lowercase hex, in chain order).
On Ctrl-C or SIGTERM it drains: jobs in flight finish, nothing new is
taken, then it says goodbye; at the end it verifies the receipts it
collected as a chain, as a settlement party would (verify_receipts.py).

    provider.py --coordinator HOST:PORT --ca CA.pem --key device.key \\
                [--store DIR] [--receipts FILE] [--executor device|python]

With ``--executor python`` jobs go through a Python executor that hands each
to the runtime's own device (`Job.run_on_device`) and logs what it ran: the
hook a host uses to run jobs itself.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path
from types import FrameType
from typing import List, Optional, TextIO, Tuple

import tessera

log = logging.getLogger("provider")


def load_or_create_key(path: Path) -> bytes:
    """The device key: the PKCS#8 file, or a new key written there (mode
    0600, never over an existing file)."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        pass
    key = tessera.generate_key()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key)
        f.flush()
        os.fsync(f.fileno())
    log.info("created a new device key in %s", path)
    return key


class Receipts:
    """The receipts the provider signs, kept in memory and appended to the
    receipts file as they arrive (from the runtime's thread)."""

    def __init__(self, path: Optional[Path], public_key: bytes) -> None:
        self.lock = threading.Lock()
        self.receipts: List[Tuple[int, bytes]] = []
        self.file: Optional[TextIO] = None
        if path is not None:
            self.file = open(path, "a", encoding="utf-8")
            if path.stat().st_size == 0:
                self.file.write("# tessera receipts of provider %s, in chain order\n" % public_key.hex())
                self.file.flush()

    def __call__(self, job: int, receipt: bytes) -> None:
        with self.lock:
            self.receipts.append((job, receipt))
            if self.file is not None:
                self.file.write(receipt.hex() + "\n")
                self.file.flush()
                os.fsync(self.file.fileno())
        log.info("receipt for job %d signed (%d bytes)", job, len(receipt))

    def close(self) -> None:
        if self.file is not None:
            self.file.close()


def run_on_device(job: tessera.Job) -> None:
    """An executor: logs the job, and runs it on the runtime's device."""
    started = time.monotonic()
    usage = job.run_on_device()
    log.info("job %d: %d B kernel '%s', grid %s, %d buffer(s): %.1f ms, %d us of GPU time",
             job.id, len(job.spirv), job.entry_point, job.grid, len(job.buffers),
             (time.monotonic() - started) * 1000, usage.gpu_time_us)


def verify_own_receipts(public_key: bytes, receipts: List[Tuple[int, bytes]]) -> bool:
    """Verifies the receipts collected as one chain: from the first one's
    position (an existing key has signed before this run)."""
    if not receipts:
        print("no receipts signed")
        return True
    first = tessera.verify_receipt(receipts[0][1], public_key)
    chain = tessera.ChainState(first.sequence, first.prev_hash)
    total = 0
    with tessera.ChainVerifier(public_key, chain) as verifier:
        for job, receipt in receipts:
            try:
                info = verifier.verify_next(receipt)
            except tessera.Error as e:
                print("receipt for job %d: FAILED: %s" % (job, e))
                return False
            total += info.price
        end = verifier.chain
    print("verified %d receipt(s), sequences %d to %d, total price %d"
          % (len(receipts), first.sequence, end.next_sequence - 1, total))
    return True


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="A Tessera provider on the library's runtime.")
    parser.add_argument("--coordinator", required=True, help="HOST:PORT")
    trust = parser.add_mutually_exclusive_group(required=True)
    trust.add_argument("--ca", type=Path, help="PEM file of the CA that signs the coordinator's certificate")
    trust.add_argument("--pin", help="SHA-256 of the coordinator's public key, hex")
    parser.add_argument("--server-name", help="the name on its certificate (default: the host part)")
    parser.add_argument("--key", type=Path, required=True, help="device key, PKCS#8 (created if missing)")
    parser.add_argument("--store", type=Path, help="directory for results until acknowledged")
    parser.add_argument("--receipts", type=Path, help="append the signed receipts to this file")
    parser.add_argument("--price-base", type=int, default=100, help="fixed fee per job")
    parser.add_argument("--executor", choices=("device", "python"), default="device",
                        help="run jobs on the device directly, or through a Python executor")
    parser.add_argument("--status-every", type=float, default=5.0, help="seconds between status lines")
    parser.add_argument("--drain-timeout", type=float, default=30.0, help="seconds a drain may take")
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)-5s %(name)s: %(message)s")

    def terminate(signum: int, frame: Optional[FrameType]) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, terminate)

    try:
        key = load_or_create_key(args.key)
        public_key = tessera.public_key(key)
        receipts = Receipts(args.receipts, public_key)
        runtime = tessera.Runtime(
            args.coordinator,
            tessera.Signer.from_pkcs8(key),
            ca_file=args.ca,
            pinned_key_sha256=bytes.fromhex(args.pin) if args.pin else None,
            server_name=args.server_name,
            store_dir=args.store,
            price_base=args.price_base,
            price_per_gpu_ms=10,
            price_per_mib_in=2,
            price_per_mib_out=2,
            floor=120,
            max_concurrent=2,
            drain_timeout=args.drain_timeout,
            executor=run_on_device if args.executor == "python" else None,
            on_receipt=receipts,
            log_level=logging.INFO,
        )
    except (tessera.Error, OSError, ValueError) as e:
        print("provider: %s" % e, file=sys.stderr)
        return 1

    print("provider %s (key id %s)" % (public_key.hex(), tessera.key_id(public_key).hex()), flush=True)
    with runtime:
        runtime.start()
        try:
            while not runtime.wait(timeout=args.status_every):
                print("status: %s" % runtime.status_text(), flush=True)
        except KeyboardInterrupt:
            print("provider: draining", file=sys.stderr, flush=True)
            runtime.drain(args.drain_timeout)
            runtime.wait()
        status = runtime.status()
        print("provider: drained; %s" % runtime.status_text(), file=sys.stderr, flush=True)
    receipts.close()
    ok = verify_own_receipts(public_key, receipts.receipts)
    return 0 if ok and status.finished else 1


if __name__ == "__main__":
    sys.exit(main())
