#!/usr/bin/env python3
"""Checks what the firmware image signed and hashed, from the frames its
bridge recorded (tessera-firmware-bridge --tap), with ci/verify_vectors.py's
independent reading of docs/PROTOCOL.md (no Tessera code):

- the evidence of every session is signed by the key it carries and
  answers that session's challenge; every session's key is the same;
- each receipt is signed by that key, names one of those evidence
  documents, continues the chain from the position that evidence states
  (the first receipt) or from the receipt before, and carries the
  requester's nonce;
- the kernel hash, input root, output root, output length, result hash and
  seal in the receipt are recomputed from the assignment and from the
  input and output chunks that crossed the wire, and every chunk's digest
  is its leaf hash.

Usage: verify_firmware_tap.py TAP.jsonl. Exits 1 at the first failure.
"""

import json
import os
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import verify_vectors as v  # noqa: E402


def fail(what):
    print("FAIL: " + what)
    sys.exit(1)


def expect(cond, what):
    if not cond:
        fail(what)


def main(path):
    sessions = []  # [challenge, evidence] of each session, in order
    assigns, inputs, outputs, receipts = {}, {}, {}, []
    with open(path, encoding="utf-8") as f:
        for line in f:
            rec = json.loads(line)
            if "challenge" in rec:
                sessions.append([bytes.fromhex(rec["challenge"]), None])
            elif "evidence" in rec:
                expect(sessions and sessions[-1][1] is None, "evidence answers a challenge")
                sessions[-1][1] = bytes.fromhex(rec["evidence"])
            elif "assign" in rec:
                a = rec["assign"]
                assigns[a["job"]] = a
            elif "input" in rec or "output" in rec:
                kind = "input" if "input" in rec else "output"
                c = rec[kind]
                data = bytes.fromhex(c["data"])
                expect(
                    v.leaf_hash(data).hex() == c["digest"],
                    "%s chunk %d of stream %d: digest is its leaf hash"
                    % (kind, c["index"], c["stream"]),
                )
                (inputs if kind == "input" else outputs).setdefault(c["job"], []).append(
                    (c["stream"], c["index"], data)
                )
            elif "receipt" in rec:
                # A receipt sent again on a later session counts once.
                if all(r["bytes"] != rec["receipt"]["bytes"] for r in receipts):
                    receipts.append(rec["receipt"])
    expect(any(e is not None for _, e in sessions), "evidence recorded")
    expect(receipts, "a receipt recorded")

    evidence = {}  # hash -> (bytes, decoded)
    for challenge, signed in sessions:
        if signed is not None:
            evidence[v.sha256(signed).hex()] = (signed, v.verify_evidence(signed, challenge))
    keys = {e["public_key"] for _, e in evidence.values()}
    expect(len(keys) == 1, "one device key in every session")
    public_key = bytes.fromhex(keys.pop())
    print("evidence: %d session(s), each signed by %s... and answering its challenge"
          % (len(evidence), public_key.hex()[:16]))

    next_sequence = prev_hash = None
    for rec in receipts:
        job = rec["job"]
        b = bytes.fromhex(rec["bytes"])
        a = assigns.get(job)
        expect(a is not None, "job %d: its assignment recorded" % job)
        _, payload, _ = v.parse_sign1(b, v.RECEIPT_PAYLOAD_LEN)
        named = v.decode_receipt(payload)["evidence_hash"]
        expect(named in evidence, "job %d: the receipt names evidence of a session" % job)
        if next_sequence is None:
            chain = evidence[named][1]["chain"]
            next_sequence = chain["next_sequence"]
            prev_hash = bytes.fromhex(chain["prev_hash"])
        d = v.verify_receipt(b, public_key, next_sequence, prev_hash, bytes.fromhex(a["nonce"]))

        kernel = {
            "spirv_root": a["spirv_root"],
            "entry_point": bytes.fromhex(a["entry_point_hex"]).decode("utf-8"),
            "specialization": a["specialization"],
            "push_constants": a["push_constants"],
            "grid": a["grid"],
            "buffers": a["buffers"],
        }
        kh = v.kernel_hash(kernel)
        expect(kh.hex() == d["kernel_hash"], "kernel hash recomputed from the assignment")

        chunks = inputs.get(job, [])
        spirv = [data for stream, _, data in chunks if stream == 0]
        expect(len(b"".join(spirv)) == a["spirv_len"], "the whole kernel went down")
        expect(v.mth([v.leaf_hash(c) for c in spirv]).hex() == a["spirv_root"], "kernel root")
        in_leaves = [v.leaf_hash(data) for stream, _, data in chunks if stream > 0]
        in_root = v.mth(in_leaves)
        expect(in_root.hex() == a["inputs_root"] == d["input_root"], "input root")

        out = outputs.get(job, [])
        if d["status"] == v.STATUS_COMPLETED:
            # After a reconnect the outputs go again, from chunk 0 of the
            # first read-back buffer: the last complete sending counts.
            streams = [i for i, b_ in enumerate(a["buffers"]) if b_["readback"]]
            starts = [i for i, (stream, index, _) in enumerate(out)
                      if streams and stream == streams[0] and index == 0]
            sent = out[starts[-1]:] if starts else []
            readback = [a["buffers"][i] for i in streams]
            out_root = v.mth([v.leaf_hash(data) for _, _, data in sent])
            out_len = sum(len(data) for _, _, data in sent)
            expect(out_len == sum(b_["len"] for b_ in readback), "every output byte went up")
        else:
            out_root, out_len = v.mth([]), 0
        expect(out_root.hex() == d["output_root"], "output root")
        expect(out_len == d["output_len"], "output length")
        result = v.sha256(
            v.RESULT_DOMAIN, kh, in_root, out_root, struct.pack("<Q", out_len)
        )
        expect(result.hex() == d["result_hash"], "result hash")
        seal = v.sha256(v.SEAL_DOMAIN, public_key, struct.pack("<Q", job), result)
        expect(seal.hex() == d["result_seal"], "result seal")
        print(
            "receipt #%d of job %d: %s, signature, chain, nonce, evidence, kernel hash, "
            "input root (%d chunks), output root (%d bytes), result hash and seal: ok"
            % (d["sequence"], job, d["status_name"], len(in_leaves), out_len)
        )
        next_sequence += 1
        prev_hash = v.sha256(b)
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print(__doc__)
        sys.exit(2)
    try:
        sys.exit(main(sys.argv[1]))
    except v.Fail as e:
        fail("verification: %s" % e.reason)
