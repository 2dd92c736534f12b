#!/usr/bin/env python3
"""Searches a running process's memory and some files for byte markers.

    scan_memory.py PID [--file PATH]... [--absent HEX]... [--present HEX]...

Reads every readable mapping of process PID through /proc/PID/mem (needs
the right to trace it: the same user with kernel.yama.ptrace_scope 0, or
root) and each --file. Each --absent marker must be found nowhere; each
--present marker must be found in the memory (a control: it shows the
search sees what the process holds). Prints what it found; exits 1 when a
rule is broken, 2 when the memory cannot be read.
"""

import argparse
import sys


def memory(pid):
    with open("/proc/%d/maps" % pid) as maps, open("/proc/%d/mem" % pid, "rb", 0) as mem:
        for line in maps:
            fields = line.split()
            if len(fields) < 2 or not fields[1].startswith("r"):
                continue
            if line.rstrip().endswith(("[vvar]", "[vsyscall]", "[vvar_vclock]")):
                continue
            start, end = (int(x, 16) for x in fields[0].split("-"))
            try:
                mem.seek(start)
                yield mem.read(end - start)
            except (OSError, ValueError, OverflowError):
                continue


def main():
    p = argparse.ArgumentParser()
    p.add_argument("pid", type=int)
    p.add_argument("--file", action="append", default=[])
    p.add_argument("--absent", action="append", default=[])
    p.add_argument("--present", action="append", default=[])
    a = p.parse_args()
    markers = [bytes.fromhex(m) for m in a.absent + a.present]
    in_memory = [False] * len(markers)
    scanned = 0
    try:
        for region in memory(a.pid):
            scanned += len(region)
            for i, m in enumerate(markers):
                in_memory[i] = in_memory[i] or m in region
    except PermissionError as e:
        print("cannot read the memory of process %d: %s" % (a.pid, e))
        return 2
    if scanned < 1 << 20:
        print("read only %d bytes of process %d's memory" % (scanned, a.pid))
        return 2
    files = {}
    for path in a.file:
        with open(path, "rb") as f:
            files[path] = f.read()
    ok = True
    for i, m in enumerate(markers):
        absent = i < len(a.absent)
        where = [path for path, data in files.items() if m in data]
        if in_memory[i]:
            where.insert(0, "memory")
        print("%s %s: %s" % ("absent " if absent else "present", m.hex()[:16],
                             ", ".join(where) if where else "nowhere"))
        if absent and where or not absent and not in_memory[i]:
            ok = False
    print("scanned %d MiB of process %d's memory" % (scanned >> 20, a.pid))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
