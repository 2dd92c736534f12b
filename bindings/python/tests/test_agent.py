"""The sans-IO agent through the Python API: a session up to a whole job,
the coordinator's side played here with frames made by `encode_message`
and the agent's frames read by `decode_message`; the receipt checked with
the verification functions against what this side computed; the stored
record given to a new agent. Then calls in the wrong order, a peer that
breaks the protocol, configuration errors, and ownership rules."""

from __future__ import annotations

import os
from typing import Any, Dict, List, Tuple

import numpy as np
import pytest

import tessera

SEED = bytes(range(1, 33))
NOW = 5_000_000


def frame(kind: str, **fields: Any) -> bytes:
    return tessera.encode_message({"type": kind, "fields": fields})


def split_frames(stream: bytes) -> List[bytes]:
    """Whole frames out of a byte stream: an 8-byte header ("TS", version,
    type, body length as u32 little-endian), then the body."""
    frames = []
    while stream:
        assert stream[:2] == b"TS" and len(stream) >= 8
        end = 8 + int.from_bytes(stream[4:8], "little")
        frames.append(stream[:end])
        stream = stream[end:]
    return frames


def sent(agent: tessera.Agent, now: int) -> List[Dict[str, Any]]:
    """Every frame the agent has to send, decoded (a transmit is the next
    bytes of the stream, which may hold several frames)."""
    return [tessera.decode_message(f) for f in split_frames(b"".join(agent.transmits(now)))]


def feed(agent: tessera.Agent, now: int, data: bytes) -> None:
    assert agent.handle_input(now, data) == len(data)


def device_config(**changes: Any) -> tessera.AgentConfig:
    device = tessera.Device(
        name="Python test GPU",
        device_type=tessera.DeviceType.DISCRETE_GPU,
        features=0xFFFFFFFF,
        device_local_bytes=8 << 30,
        host_visible_bytes=8 << 30,
        max_storage_buffer_range=1 << 30,
    )
    return tessera.AgentConfig(device=device, boot_id=bytes([7]) + bytes(15), **changes)


def ready_agent(config: tessera.AgentConfig) -> Tuple[tessera.Agent, bytes, bytes]:
    """An agent whose session is established; its evidence and challenge."""
    agent = tessera.Agent(config, tessera.Signer.from_seed(SEED))
    agent.connect(NOW)
    hello = sent(agent, NOW)
    assert [m["type"] for m in hello] == ["Hello"]
    assert bytes.fromhex(hello[0]["fields"]["key_id"]) == agent.key_id
    assert hello[0]["fields"]["next_sequence"] == 1
    challenge = os.urandom(32)
    feed(agent, NOW, frame("Welcome", version=1, challenge=challenge.hex(), heartbeat_ms=5000))
    messages = sent(agent, NOW)
    assert [m["type"] for m in messages] == ["Evidence"]
    evidence = bytes.fromhex(messages[0]["fields"]["bytes"])
    feed(agent, NOW, frame("Ready"))
    assert agent.poll_event() == tessera.Event(tessera.EventKind.READY)
    assert agent.state == tessera.ConnState.READY
    return agent, evidence, challenge


def offer(job: int, bytes_in: int = 4096, bytes_out: int = 4096) -> bytes:
    return frame("JobOffer", job=job, requirements={"memory_mib": 1, "features": 0}, est_gpu_ms=10,
                 bytes_in=bytes_in, bytes_out=bytes_out, max_price=10_000, deadline_ms=30_000)


def test_whole_job_with_persisted_result() -> None:
    config = device_config(persist_results=True, policy=tessera.Policy(price_base=100))
    pk = tessera.Signer.from_seed(SEED).public_key
    agent, evidence, challenge = ready_agent(config)
    info = tessera.verify_evidence(evidence, challenge)
    assert info.public_key == pk and info.device.name == "Python test GPU"
    assert info.chain == tessera.ChainState() and info.boot_id == config.boot_id

    feed(agent, NOW, offer(1))
    accept = sent(agent, NOW)
    assert [m["type"] for m in accept] == ["OfferAccept"] and accept[0]["fields"]["job"] == 1
    job_info = agent.job_info(1)
    assert job_info.state == tessera.JobState.ACCEPTED and not job_info.assigned
    assert job_info.deadline_us == NOW + 30_000_000

    # The job: a 128-byte "kernel" (the agent does not look inside), 16 input
    # bytes in buffer 0 (binding 0), 32 output bytes from buffer 1 (binding 2).
    kernel = bytes(i * 7 % 256 for i in range(128))
    data = bytes(100 + i for i in range(16))
    output = np.arange(200, 232, dtype=np.uint8)
    nonce = bytes([0x42]) * 32
    layout = [tessera.BufferSpec(0, 16, 16, False), tessera.BufferSpec(2, 32, 0, True)]
    spec = [(0, 64), (3, 9)]
    push = bytes(range(8))
    feed(agent, NOW, frame(
        "JobAssign", job=1, requester_nonce=nonce.hex(),
        kernel={"len": len(kernel), "root": tessera.merkle_root(kernel).hex(), "entry_point": "main",
                "specialization": [list(p) for p in spec], "push_constants": push.hex(), "grid": [2, 1, 1]},
        buffers=[{"binding": b.binding, "len": b.len, "init_len": b.init_len, "readback": b.readback}
                 for b in layout],
        inputs_root=tessera.merkle_root(data).hex(),
    ))
    assert agent.poll_event() == tessera.Event(tessera.EventKind.JOB_ASSIGNED, job=1)
    job_info = agent.job_info(1)
    assert job_info.state == tessera.JobState.RECEIVING and job_info.assigned
    assert job_info.kernel_len == 128 and job_info.grid == (2, 1, 1) and job_info.requester_nonce == nonce
    assert agent.job_entry_point(1) == "main"
    assert agent.job_buffers(1) == layout
    assert agent.job_specialization(1) == spec
    assert agent.job_push_constants(1) == push

    # The kernel's chunk, then buffer 0's: each read before the next input.
    feed(agent, NOW, frame("InputChunk", job=1, stream=0, index=0,
                           digest=tessera.merkle_leaf_hash(kernel).hex(), data=kernel.hex()))
    assert agent.poll_event() == tessera.Event(tessera.EventKind.JOB_DATA, job=1, stream=0, offset=0, len=128)
    assert agent.read_input(1) == kernel
    into = bytearray(tessera.CHUNK_SIZE)
    assert agent.read_input_into(1, into) == 128 and bytes(into[:128]) == kernel
    with pytest.raises(tessera.BufferTooSmallError):
        agent.read_input_into(1, bytearray(10))
    feed(agent, NOW, frame("InputChunk", job=1, stream=1, index=0,
                           digest=tessera.merkle_leaf_hash(data).hex(), data=data.hex()))
    assert agent.poll_event() == tessera.Event(tessera.EventKind.JOB_DATA, job=1, stream=1, len=16)
    assert agent.read_input(1) == data
    assert agent.poll_event() == tessera.Event(tessera.EventKind.RUN_JOB, job=1)
    assert [m["type"] for m in sent(agent, NOW)] == ["Started"]
    assert agent.job_info(1).state == tessera.JobState.RUNNING

    # The host ran it: progress, outputs (buffer 1, the read-back one, as a
    # NumPy array), the receipt.
    now = NOW + 3000
    agent.report_progress(now, 1, 500)
    with pytest.raises(tessera.UsageError) as e:
        agent.send_output(now, 1, 0, output)
    assert e.value.code == 104 and e.value.name == "output_out_of_order"
    # The outputs' frames come back to send, after the frames queued before.
    taken, frames = agent.send_output(now, 1, 1, output)
    assert taken == 32
    before = [tessera.decode_message(f) for f in split_frames(frames)]
    assert [m["type"] for m in before] == ["Progress", "OutputChunk"]
    assert before[0]["fields"] == {"job": 1, "permille": 500}
    assert agent.job_info(1).state == tessera.JobState.UPLOADING
    agent.finish_job(now, 1, tessera.Usage(gpu_time_us=2500, dispatches=1))
    assert agent.poll_event() == tessera.Event(tessera.EventKind.PERSIST_RESULT, job=1)
    # The result itself (its completion, usage and receipt) waits until the
    # host stored it.
    assert sent(agent, now) == []
    record = agent.result_record(1)
    assert 0 < len(record) <= tessera.MAX_RECORD_BYTES
    agent.confirm_persisted(now, 1)
    messages = sent(agent, now)
    receipts = [bytes.fromhex(m["fields"]["bytes"]) for m in messages if m["type"] == "Receipt"]
    assert len(receipts) == 1
    receipt = receipts[0]
    assert len(receipt) == tessera.RECEIPT_LEN
    assert agent.chain == tessera.ChainState(2, tessera.receipt_hash(receipt))

    # The receipt binds what this side sent and received, byte for byte.
    r = tessera.verify_receipt(receipt, pk)
    assert r.completed and r.job == 1 and r.sequence == 1 and r.requester_nonce == nonce
    kh = tessera.kernel_hash(tessera.merkle_root(kernel), "main", spec, push, (2, 1, 1), layout)
    assert r.kernel_hash == kh
    assert r.input_root == tessera.merkle_root(data)
    assert r.output_root == tessera.merkle_root(output) and r.output_len == 32
    assert r.result_hash == tessera.result_hash(kh, r.input_root, r.output_root, 32)
    assert r.result_seal == tessera.result_seal(pk, 1, r.result_hash)
    assert r.evidence_hash == tessera.evidence_hash(evidence)
    assert r.key_id == agent.key_id and r.usage.gpu_time_us == 2500 and r.usage.bytes_out == 32
    assert r.usage.bytes_in == 128 + 16 and r.price >= 100
    completed = [m["fields"] for m in messages if m["type"] == "Completed"]
    assert completed == [{"job": 1, "output_len": 32, "output_root": r.output_root.hex()}]
    assert [m["type"] for m in messages] == ["Completed", "UsageReport", "Receipt"]
    assert bytes.fromhex(before[1]["fields"]["data"]) == output.tobytes()
    assert before[1]["fields"]["digest"] == tessera.merkle_leaf_hash(output).hex()
    with tessera.ChainVerifier(pk) as verifier:
        assert verifier.verify_next(receipt, nonce).sequence == 1
        assert verifier.chain == agent.chain

    # The coordinator holds it.
    feed(agent, now, frame("ResultAck", job=1))
    assert agent.poll_event() == tessera.Event(tessera.EventKind.RESULT_ACKNOWLEDGED, job=1)
    stats = agent.stats()
    assert stats.jobs_completed == 1 and stats.earnings == r.price and stats.offers_accepted == 1
    with pytest.raises(tessera.UsageError) as u:
        agent.job_info(1)
    assert u.value.code == 102 and u.value.detail and "1" in u.value.detail

    # After a restart: the stored record, given back, is held again.
    with tessera.Agent(config, tessera.Signer.from_seed(SEED), agent.chain) as again:
        again.restore_result(record)
        assert again.job_info(1).state == tessera.JobState.AWAITING_ACK
        assert again.result_record(1) == record
        with pytest.raises(tessera.UsageError) as s:
            again.restore_result(record)
        assert s.value.code == 103

    # Drained: goodbye once nothing is held.
    agent.drain(now)
    assert "Goodbye" in [m["type"] for m in sent(agent, now)]
    agent.close()


def deliver(agent: tessera.Agent, now: int, data: bytes, into: bytearray) -> List[tessera.Event]:
    """Feeds `data` the way a host does: after each `handle_input` it reads
    every event, copying each `JOB_DATA` piece into `into` at its offset,
    before it passes the bytes not taken yet. Returns the events."""
    events: List[tessera.Event] = []
    rest = memoryview(data)
    while True:
        rest = rest[agent.handle_input(now, rest):]
        for event in agent.events():
            events.append(event)
            if event.kind == tessera.EventKind.JOB_DATA:
                assert 0 < event.len <= tessera.MAX_INPUT_PIECE
                piece = agent.read_input(event.job)
                assert len(piece) == event.len
                into[event.offset:event.offset + event.len] = piece
        if not rest:
            return events
        assert len(events) < 64, "the agent stopped taking input"


def assign_pieces_job(agent: tessera.Agent, job: int, kernel: bytes, data: bytes, out_len: int) -> None:
    """Offers and assigns `job`: `kernel`, buffer 0 holding `data`, buffer 1
    of `out_len` bytes read back."""
    feed(agent, NOW, offer(job, bytes_in=1 << 20, bytes_out=1 << 16))
    assert [m["type"] for m in sent(agent, NOW)] == ["OfferAccept"]
    feed(agent, NOW, frame(
        "JobAssign", job=job, requester_nonce=bytes(32).hex(),
        kernel={"len": len(kernel), "root": tessera.merkle_root(kernel).hex(), "entry_point": "main",
                "specialization": [], "push_constants": "", "grid": [1, 1, 1]},
        buffers=[{"binding": 0, "len": len(data), "init_len": len(data), "readback": False},
                 {"binding": 1, "len": out_len, "init_len": 0, "readback": True}],
        inputs_root=tessera.merkle_root(data).hex(),
    ))
    assert agent.poll_event() == tessera.Event(tessera.EventKind.JOB_ASSIGNED, job=job)


def input_chunk(job: int, stream: int, index: int, data: bytes) -> bytes:
    return frame("InputChunk", job=job, stream=stream, index=index,
                 digest=tessera.merkle_leaf_hash(data).hex(), data=data.hex())


def test_input_in_pieces_and_outputs_into_the_hosts_buffer() -> None:
    """An 8 KiB input chunk reaches the host in several `JOB_DATA` pieces;
    the outputs' frames are written into the host's buffer: nothing taken
    while the frames queued before leave no room for a chunk, a buffer that
    can never hold one refused."""
    agent, _, _ = ready_agent(device_config())
    kernel = bytes(i * 7 % 256 for i in range(128))
    data = bytes((i * 31 + 7) % 251 for i in range(tessera.CHUNK_SIZE + 100))
    output = bytes((i * 13 + 1) % 256 for i in range(2 * tessera.CHUNK_SIZE + 10))
    assign_pieces_job(agent, 1, kernel, data, len(output))

    got_kernel = bytearray(len(kernel))
    events = deliver(agent, NOW, input_chunk(1, 0, 0, kernel), got_kernel)
    assert events == [tessera.Event(tessera.EventKind.JOB_DATA, job=1, stream=0, offset=0, len=128)]
    got = bytearray(len(data))
    events = deliver(agent, NOW, input_chunk(1, 1, 0, data[:tessera.CHUNK_SIZE]), got)
    assert {e.kind for e in events} == {tessera.EventKind.JOB_DATA}
    assert len(events) >= tessera.CHUNK_SIZE // tessera.MAX_INPUT_PIECE
    offsets = [e.offset for e in events]
    assert offsets == sorted(offsets) and sum(e.len for e in events) == tessera.CHUNK_SIZE
    events = deliver(agent, NOW, input_chunk(1, 1, 1, data[tessera.CHUNK_SIZE:]), got)
    assert events == [tessera.Event(tessera.EventKind.JOB_DATA, job=1, stream=1, offset=tessera.CHUNK_SIZE,
                                    len=100),
                      tessera.Event(tessera.EventKind.RUN_JOB, job=1)]
    assert bytes(got_kernel) == kernel and bytes(got) == data
    assert [m["type"] for m in sent(agent, NOW)] == ["Started"]

    # Room for one chunk's frame (header, job, stream, index, digest, a
    # two-byte length, the data), but a Progress frame is queued: it goes
    # first and nothing is taken; sent, the next call takes the chunk.
    chunk_frame = 8 + 3 + 32 + 2 + tessera.CHUNK_SIZE
    out = bytearray(chunk_frame)
    agent.report_progress(NOW, 1, 500)
    stream = b""
    taken, written = agent.send_output_into(NOW, 1, 1, output, out)
    assert taken == 0 and 0 < written < chunk_frame
    stream += out[:written]
    taken, written = agent.send_output_into(NOW, 1, 1, output, out)
    assert taken == tessera.CHUNK_SIZE and written == chunk_frame
    stream += out[:written]
    # A buffer that can never hold the next chunk's frame.
    with pytest.raises(tessera.BufferTooSmallError) as too_small:
        agent.send_output_into(NOW, 1, 1, output[taken:], bytearray(100))
    assert too_small.value.needed == chunk_frame
    with pytest.raises(tessera.ArgumentTypeError):
        agent.send_output_into(NOW, 1, 1, output[taken:], bytes(tessera.TRANSMIT_BUFFER))
    # send_output's own buffer takes at least a chunk at every call.
    rest = memoryview(output)[taken:]
    while rest:
        taken, frames = agent.send_output(NOW, 1, 1, rest)
        assert taken > 0
        stream += frames
        rest = rest[taken:]
    messages = [tessera.decode_message(f) for f in split_frames(stream)]
    assert [m["type"] for m in messages] == ["Progress", "OutputChunk", "OutputChunk", "OutputChunk"]
    chunks = [m["fields"] for m in messages[1:]]
    assert [c["index"] for c in chunks] == [0, 1, 2]
    assert b"".join(bytes.fromhex(c["data"]) for c in chunks) == output
    assert all(c["digest"] == tessera.merkle_leaf_hash(bytes.fromhex(c["data"])).hex() for c in chunks)
    assert sent(agent, NOW) == []
    agent.finish_job(NOW, 1, tessera.Usage(gpu_time_us=1000, dispatches=1))
    assert [m["type"] for m in sent(agent, NOW)] == ["Completed", "UsageReport", "Receipt"]
    agent.close()


def test_a_chunk_failing_its_digest_cancels_the_job() -> None:
    """The pieces of a chunk arrive before it is checked; one that fails
    ends the job with `CANCEL_JOB` (input integrity) instead of its last
    piece, and the peer is told."""
    agent, _, _ = ready_agent(device_config())
    kernel = bytes(128)
    data = bytes((i * 31 + 7) % 251 for i in range(tessera.CHUNK_SIZE))
    assign_pieces_job(agent, 3, kernel, data, 16)
    deliver(agent, NOW, input_chunk(3, 0, 0, kernel), bytearray(len(kernel)))
    bad = bytearray(input_chunk(3, 1, 0, data))
    bad[-1] ^= 1
    events = deliver(agent, NOW, bytes(bad), bytearray(len(data)))
    pieces = [e for e in events if e.kind == tessera.EventKind.JOB_DATA]
    assert pieces and sum(e.len for e in pieces) < tessera.CHUNK_SIZE
    assert events[len(pieces):] == [tessera.Event(tessera.EventKind.CANCEL_JOB, job=3,
                                                  reason=tessera.CancelReason.INPUT_INTEGRITY)]
    assert "Error" in [m["type"] for m in sent(agent, NOW)]
    agent.close()


def test_calls_in_the_wrong_order() -> None:
    agent = tessera.Agent(device_config(), tessera.Signer.from_seed(SEED))
    assert agent.state == tessera.ConnState.DISCONNECTED
    with pytest.raises(tessera.UsageError) as e:
        agent.handle_input(NOW, b"x")
    assert e.value.code == 100 and e.value.consumed == 0
    assert agent.poll_event() is None
    assert agent.poll_transmit(NOW) is None
    with pytest.raises(tessera.UsageError) as n:
        agent.read_input(1)
    assert n.value.code == 108
    with pytest.raises(tessera.UsageError) as f:
        agent.finish_job(NOW, 1, tessera.Usage())
    assert f.value.code == 102 and "job 1" in agent.last_error()
    with pytest.raises(tessera.ArgumentError):
        agent.restore_result(b"")
    agent.connect(NOW)
    with pytest.raises(tessera.UsageError) as c:
        agent.connect(NOW)
    assert c.value.code == 101
    assert agent.poll_timeout() is not None
    agent.handle_timeout(NOW)
    with pytest.raises(tessera.ArgumentError):
        agent.fail_job(NOW, 1, 0)
    with pytest.raises(tessera.ArgumentError):
        agent.report_progress(NOW, 1, 70000)
    with pytest.raises(tessera.ArgumentError):
        agent.handle_input(-1, b"")
    with pytest.raises(tessera.ArgumentTypeError):
        agent.finish_job(NOW, 1, (0, 0, 0, 0))  # type: ignore[arg-type]
    agent.close()


def test_peer_breaking_the_protocol() -> None:
    """Bytes that are not Tessera end the session; the agent stays usable."""
    agent, _, _ = ready_agent(device_config())
    junk = b"XX\x01\x01\x00\x00\x00\x00"
    with pytest.raises(tessera.WireError) as e:
        agent.handle_input(NOW, junk)
    assert e.value.wire_code == 11 and e.value.detail
    assert e.value.consumed is not None and e.value.consumed <= len(junk)
    errors = [m for m in sent(agent, NOW) if m["type"] == "Error"]
    assert errors and errors[0]["fields"]["code"] == 11
    events = list(agent.events())
    assert tessera.Event(tessera.EventKind.DISCONNECT, reason=tessera.DisconnectReason.PROTOCOL_VIOLATION) \
        in [tessera.Event(ev.kind, reason=ev.reason) for ev in events]
    agent.disconnected(NOW)
    agent.connect(NOW + 1)
    assert [m["type"] for m in sent(agent, NOW + 1)] == ["Hello"]
    assert agent.stats().frames_refused >= 1
    agent.close()


def test_declined_offers_while_the_device_is_busy() -> None:
    agent, _, _ = ready_agent(device_config())
    agent.set_device_available(NOW, False)
    feed(agent, NOW, offer(5))
    declines = [m["fields"] for m in sent(agent, NOW) if m["type"] == "OfferDecline"]
    assert declines == [{"job": 5, "reason": "Unavailable"}]
    agent.set_device_available(NOW, True)
    feed(agent, NOW, offer(6))
    assert [m["type"] for m in sent(agent, NOW) if m["type"].startswith("Offer")] == ["OfferAccept"]
    assert agent.stats().offers_declined == 1
    agent.close()


def test_configuration_errors_name_the_field() -> None:
    with pytest.raises(tessera.ConfigError) as e:
        tessera.Agent(device_config(policy=tessera.Policy(max_concurrent=0)), tessera.Signer.from_seed(SEED))
    assert e.value.code == 200 and e.value.detail and "policy.max_concurrent" in e.value.detail
    with pytest.raises(tessera.ConfigError) as n:
        tessera.Agent(tessera.AgentConfig(device=tessera.Device(name="x" * 80)), tessera.Signer.from_seed(SEED))
    assert n.value.detail and "device.name" in n.value.detail
    with pytest.raises(tessera.ArgumentError):
        tessera.Agent(tessera.AgentConfig(boot_id=b"short"), tessera.Signer.from_seed(SEED))
    with pytest.raises(tessera.ArgumentError):
        tessera.Agent(tessera.AgentConfig(device=tessera.Device(name="a\0b")), tessera.Signer.from_seed(SEED))
    with pytest.raises(tessera.ArgumentError):
        tessera.Agent(device_config(policy=tessera.Policy(price_base=-1)), tessera.Signer.from_seed(SEED))
    with pytest.raises(tessera.ArgumentTypeError):
        tessera.Agent(device_config(), SEED)  # type: ignore[arg-type]
    with pytest.raises(tessera.ArgumentTypeError):
        tessera.Agent({"device": None}, tessera.Signer.from_seed(SEED))  # type: ignore[arg-type]


def test_the_agent_takes_its_signer_over() -> None:
    signer = tessera.Signer.from_seed(SEED)
    agent = tessera.Agent(device_config(), signer)
    assert signer.closed
    with pytest.raises(tessera.ClosedError):
        signer.sign(b"m")
    # A signer already given away cannot be given again.
    with pytest.raises(tessera.ClosedError):
        tessera.Agent(device_config(), signer)
    # Taken over even when the agent is refused.
    refused = tessera.Signer.from_seed(SEED)
    with pytest.raises(tessera.ConfigError):
        tessera.Agent(device_config(policy=tessera.Policy(peer_timeout_ms=0)), refused)
    assert refused.closed
    with agent:
        assert agent.chain == tessera.ChainState()
    assert agent.closed
    with pytest.raises(tessera.ClosedError):
        agent.connect(NOW)


def test_callback_signer_drives_a_session() -> None:
    key = tessera.Signer.from_seed(SEED)
    busy = [False]
    count = [0]

    def sign(message: bytes) -> bytes:
        if busy[0]:
            raise tessera.SignerUnavailableError()
        count[0] += 1
        return key.sign(message)

    agent = tessera.Agent(device_config(), tessera.Signer.from_callback(key.public_key, sign))
    agent.connect(NOW)
    sent(agent, NOW)
    busy[0] = True
    welcome = frame("Welcome", version=1, challenge=bytes(32).hex(), heartbeat_ms=5000)
    with pytest.raises(tessera.SignerUnavailableError):
        agent.handle_input(NOW, welcome)
    assert count[0] == 0
    agent.close()
    agent, evidence, challenge = ready_agent(device_config())
    assert tessera.verify_evidence(evidence, challenge).public_key == key.public_key
    agent.close()


def test_a_signer_names_its_hardware_report_in_the_evidence() -> None:
    import hashlib

    seen: List[bytes] = []

    def report(nonce: bytes) -> Tuple[int, bytes]:
        seen.append(nonce)
        return tessera.HARDWARE_REPORT_TPM2_QUOTE, hashlib.sha256(b"quote" + nonce).digest()

    def failing(nonce: bytes) -> Tuple[int, bytes]:
        raise RuntimeError("the TPM is gone")

    def evidence_with(callback: Any) -> Tuple[tessera.EvidenceInfo, bytes]:
        signer = tessera.Signer.from_seed(SEED)
        signer.set_hardware_report(callback)
        agent = tessera.Agent(device_config(), signer)
        agent.connect(NOW)
        sent(agent, NOW)
        challenge = os.urandom(32)
        feed(agent, NOW, frame("Welcome", version=1, challenge=challenge.hex(), heartbeat_ms=5000))
        evidence = bytes.fromhex(sent(agent, NOW)[0]["fields"]["bytes"])
        return tessera.verify_evidence(evidence, challenge), challenge

    info, challenge = evidence_with(report)
    # Made for the hardware nonce (docs/PROTOCOL.md, "Hardware attestation
    # reports"), computed here from the evidence's own fields.
    nonce = hashlib.sha256(
        b"tessera/hw-nonce/v1" + challenge + info.public_key + info.enc_key).digest()
    assert seen == [nonce]
    assert info.hardware_report_kind == tessera.HARDWARE_REPORT_TPM2_QUOTE
    assert info.hardware_report_hash == hashlib.sha256(b"quote" + nonce).digest()
    # A callback that raises, or none at all, names no report.
    for callback in (failing, None):
        info, _ = evidence_with(callback)
        assert info.hardware_report_kind == tessera.HARDWARE_REPORT_NONE
        assert info.hardware_report_hash == bytes(32)
    with pytest.raises(tessera.ArgumentTypeError):
        tessera.Signer.from_seed(SEED).set_hardware_report(42)  # type: ignore[arg-type]
