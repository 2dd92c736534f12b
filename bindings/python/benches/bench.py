#!/usr/bin/env python3
"""Benchmarks of the Python binding, printed as ci/bench prints figures (one
JSON object a line, each beside its peer from the same run):

- ``py.receipt_verify``: microseconds to verify one signed receipt
  (`tessera.verify_receipt`, a vector of core/tests/vectors/receipts.json),
  the lowest of three medians of timed batches; peer ``rust``: the same verification from Rust,
  measured by ci/bench in the same run and given as ``--rust-receipt-verify-us``.
- ``py.job_overhead``: microseconds a Python executor adds to a job: the
  median time of a tiny verified job (4 KiB in, the copy kernel, 4 KiB out,
  timed by the ``tiny_jobs`` requester through the reference coordinator)
  with a provider whose Python executor hands each job to the device
  (`Job.run_on_device`), minus the same with no executor (the Rust one),
  both providers on `tessera.Runtime`, measured in turns. Peers: both
  medians.

    bench.py --rust-receipt-verify-us 55.1 --bin-dir target/release [--jobs 300]

``--bin-dir`` holds tessera-certs, tessera-coordinator and tiny_jobs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import tessera

ROOT = Path(__file__).resolve().parents[3]


def line(name: str, value: float, unit: str, peers: Dict[str, float], **extra: float) -> None:
    record: Dict[str, Any] = {"name": name, "value": round(value, 3), "unit": unit,
                              "peers": {k: round(v, 3) for k, v in peers.items()}}
    record.update({k: round(v, 3) for k, v in extra.items()})
    print(json.dumps(record), flush=True)


def per_call_us(f: Callable[[], object], batch: int = 20, samples: int = 201) -> float:
    for _ in range(batch * 5):
        f()
    times = []
    for _ in range(samples):
        t = time.perf_counter()
        for _ in range(batch):
            f()
        times.append((time.perf_counter() - t) / batch * 1e6)
    return statistics.median(times)


def receipt_verify(rust_us: float) -> None:
    vectors = json.loads((ROOT / "core/tests/vectors/receipts.json").read_text())
    v = vectors[0]
    receipt = bytes.fromhex(v["hex"])
    public_key = bytes.fromhex(v["public_key"])
    tessera.verify_receipt(receipt, public_key)  # it is a valid one
    # The lowest of three medians: this machine's load comes and goes.
    ours = min(per_call_us(lambda: tessera.verify_receipt(receipt, public_key)) for _ in range(3))
    line("py.receipt_verify", ours, "us", {"rust": rust_us}, ratio=ours / rust_us)


def tiny_jobs_p50(bin_dir: Path, addr: str, ca: Path, jobs: int) -> float:
    out = subprocess.run([str(bin_dir / "tiny_jobs"), "--coordinator", addr, "--ca", str(ca),
                          "--jobs", str(jobs)], capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        raise SystemExit(f"py bench: tiny_jobs failed: {out.stderr.strip()}\n" + (ca.parent.parent / "coordinator.log").read_text()[-3000:])
    return float(json.loads(out.stdout)["p50_us"])


def serve(bin_dir: Path, addr: str, ca: Path, jobs: int,
          executor: Optional[Callable[[tessera.Job], None]]) -> float:
    """The tiny jobs' median through a provider on tessera.Runtime."""
    # A new key each time: a provider without a store starts its receipt
    # chain again, which the coordinator would refuse under a key it knows.
    signer = tessera.Signer.from_pkcs8(tessera.generate_key())
    rt = tessera.Runtime(addr, signer, ca_file=ca,
                         server_name="localhost", executor=executor, log_level=None,
                         spirv_val_gate=False)
    try:
        rt.start()
        return tiny_jobs_p50(bin_dir, addr, ca, jobs)
    finally:
        rt.drain(10.0)
        rt.wait()
        rt.close()


def on_device(job: tessera.Job) -> None:
    job.run_on_device()


def job_overhead(bin_dir: Path, jobs: int) -> None:
    with tempfile.TemporaryDirectory() as work:
        certs = Path(work) / "certs"
        subprocess.run([str(bin_dir / "tessera-certs"), str(certs)], check=True,
                       capture_output=True)
        # Its output goes to a file: a pipe nobody reads would stop it once full.
        said = Path(work) / "coordinator.out"
        with open(said, "w") as out:
            coordinator = subprocess.Popen(
                [str(bin_dir / "tessera-coordinator"), "--listen", "127.0.0.1:0", "--certs",
                 str(certs)], stdout=out, stderr=open(Path(work) / "coordinator.log", "w"))
        try:
            deadline = time.monotonic() + 30
            while "listening" not in said.read_text():
                if time.monotonic() > deadline or coordinator.poll() is not None:
                    raise SystemExit("py bench: the coordinator did not start")
                time.sleep(0.05)
            addr = said.read_text().splitlines()[0].split()[-1]
            ca = certs / "ca.pem"
            rust: List[float] = []
            python: List[float] = []
            for _ in range(2):  # in turns, so both see the same machine
                rust.append(serve(bin_dir, addr, ca, jobs, None))
                python.append(serve(bin_dir, addr, ca, jobs, on_device))
        finally:
            coordinator.terminate()
            coordinator.wait()
    r, p = statistics.median(rust), statistics.median(python)
    line("py.job_overhead", p - r, "us", {"rust_executor_p50": r, "python_executor_p50": p})


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rust-receipt-verify-us", type=float, required=True)
    p.add_argument("--bin-dir", type=Path, required=True)
    p.add_argument("--jobs", type=int, default=300)
    a = p.parse_args()
    receipt_verify(a.rust_receipt_verify_us)
    job_overhead(a.bin_dir, a.jobs)


if __name__ == "__main__":
    main()
