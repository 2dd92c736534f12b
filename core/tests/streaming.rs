//! The agent's input buffer holds a whole frame only for frames other than
//! `InputChunk`; a chunk's data passes through it in pieces
//! (`limits::MAX_INPUT_PIECE`), checked against the chunk's digest at its
//! last piece. Outputs are written straight into the host's buffer. These
//! tests feed bytes in awkward splits and check what the host sees.

use tessera_core::agent::CancelReason;
use tessera_core::error::{ErrorCode, PeerError};
use tessera_core::limits::{
    CHUNK_SIZE, HEADER_LEN, MAX_BUFFERS, MAX_ENTRY_POINT, MAX_FRAME, MAX_INPUT_PIECE,
    MAX_PUSH_CONSTANTS, MAX_SPEC_CONSTANTS, RX_CAPACITY, TRANSMIT_BUFFER,
};
use tessera_core::testkit::{encode, JobDescription};
use tessera_core::wire::{
    BufferSpec, DecodeError, JobAssign, JobId, KernelSpec, Message, MessageType, Usage,
};
use tessera_core::{ConnState, Error, Event, Instant, JobState};

mod rig;

use rig::Rig;

/// A job with a kernel of one chunk and an input buffer of two and a half.
fn job() -> JobDescription {
    JobDescription {
        kernel: (0..CHUNK_SIZE as u32).map(|i| (i * 7) as u8).collect(),
        entry_point: "main".into(),
        grid: [1, 1, 1],
        push_constants: Vec::new(),
        buffers: vec![
            (
                (0..20_000u32).map(|i| (i % 251) as u8).collect(),
                20_000,
                false,
            ),
            (Vec::new(), 3 * CHUNK_SIZE as u64 + 5, true),
        ],
        nonce: [4; 32],
        bindings: Vec::new(),
    }
}

/// The offer and assignment of `job` as `id`.
fn offer_and_assign(j: &JobDescription, id: JobId) -> Vec<u8> {
    let mut bytes = encode(&Message::JobOffer(j.offer(id, 1_000_000, 60_000)));
    bytes.extend(encode(&Message::JobAssign(j.assign(id))));
    bytes
}

/// Whatever way the bytes are split, the host gets every input byte once,
/// in order, in pieces of at most `MAX_INPUT_PIECE`, and the job runs.
#[test]
fn chunk_data_reaches_the_host_in_pieces_whatever_the_split() {
    let j = job();
    for step in [1, 7, 63, 2047, 2048, 2049, 8500, 100_000] {
        let mut rig = Rig::ready();
        let mut bytes = offer_and_assign(&j, 1);
        for f in j.input_frames(1) {
            bytes.extend(f);
        }
        let (events, data, errors) = rig.feed_reading(&bytes, step);
        assert!(errors.is_empty(), "step {step}: {errors:?}");
        let mut streams: [Vec<u8>; 2] = Default::default();
        for (e, bytes) in &data {
            let Event::JobData {
                stream,
                offset,
                len,
                ..
            } = *e
            else {
                unreachable!()
            };
            assert!(
                len > 0 && len <= MAX_INPUT_PIECE,
                "step {step}: piece of {len}"
            );
            assert_eq!(bytes.len(), len);
            let s = &mut streams[stream as usize];
            assert_eq!(offset, s.len() as u64, "step {step}: pieces in order");
            s.extend_from_slice(bytes);
        }
        assert_eq!(streams[0], j.kernel, "step {step}");
        assert_eq!(streams[1], j.buffers[0].0, "step {step}");
        assert_eq!(
            events.last(),
            Some(&Event::RunJob { job: 1 }),
            "step {step}"
        );
        assert_eq!(rig.agent.job_state(1), Some(JobState::Running));
        // One event per full piece: the kernel's 8 KiB is four.
        let kernel_pieces = data
            .iter()
            .filter(|(e, _)| matches!(e, Event::JobData { stream: 0, .. }))
            .count();
        assert_eq!(kernel_pieces, CHUNK_SIZE / MAX_INPUT_PIECE, "step {step}");
    }
}

/// A chunk whose data does not match its digest: the pieces before the
/// last reach the host, then the job is cancelled (no last piece), the
/// coordinator is told, and the job ends with a signed failure.
#[test]
fn a_corrupt_chunk_cancels_the_job_instead_of_delivering_its_last_piece() {
    let j = job();
    let mut rig = Rig::ready();
    let mut bytes = offer_and_assign(&j, 1);
    let frames = j.input_frames(1);
    // The kernel's chunk, with its last data byte flipped.
    let mut bad = frames[0].clone();
    let last = bad.len() - 1;
    bad[last] ^= 0x80;
    bytes.extend(bad);
    let (events, data, errors) = rig.feed_reading(&bytes, 3000);
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(data.len(), CHUNK_SIZE / MAX_INPUT_PIECE - 1);
    assert_eq!(
        events.last(),
        Some(&Event::CancelJob {
            job: 1,
            reason: CancelReason::InputIntegrity
        })
    );
    assert!(!events.contains(&Event::RunJob { job: 1 }));
    let kinds = rig.sent_kinds();
    assert!(kinds.contains(&MessageType::Error), "{kinds:?}");
    assert!(kinds.contains(&MessageType::Failed), "{kinds:?}");
    assert!(kinds.contains(&MessageType::Receipt), "{kinds:?}");
    // The rest of the job's inputs are refused; the session goes on.
    let (_, errors) = rig.feed(&frames[1], 5000);
    assert_eq!(errors.len(), 1);
    assert_eq!(rig.agent.state(), ConnState::Ready);
}

/// The agent never holds more than a piece of a chunk, so a chunk's
/// digest is checked by streaming: the frame's code for the failure is the
/// chunk's digest mismatch.
#[test]
fn the_failure_of_a_corrupt_chunk_names_the_digest() {
    let j = job();
    let mut rig = Rig::ready();
    let mut bytes = offer_and_assign(&j, 1);
    let mut bad = j.input_frames(1)[0].clone();
    let at = bad.len() - CHUNK_SIZE / 2;
    bad[at] ^= 1;
    bytes.extend(bad);
    rig.feed(&bytes, 100_000);
    rig.transmit();
    let mut code = None;
    while let Some(f) = rig.sent.next_frame() {
        if let Message::Error(e) = Message::decode(&f).unwrap() {
            code = Some(e.code);
        }
    }
    assert_eq!(code, Some(ErrorCode::ChunkDigestMismatch as u16));
}

/// A frame other than a chunk longer than the input buffer is refused as
/// malformed without reading its body, which is skipped; the session goes
/// on and the next frame is read.
#[test]
fn a_frame_longer_than_the_input_buffer_is_skipped_unread() {
    let mut rig = Rig::ready();
    let body = 3000usize;
    let mut bytes = Vec::new();
    bytes.extend_from_slice(b"TS");
    bytes.push(1);
    bytes.push(MessageType::JobAssign as u8);
    bytes.extend_from_slice(&(body as u32).to_le_bytes());
    bytes.extend(std::iter::repeat_n(0xAB, body));
    let j = job();
    bytes.extend(encode(&Message::JobOffer(j.offer(5, 1_000_000, 60_000))));
    for step in [10, 100_000] {
        let (events, errors) = rig.feed(&bytes, step);
        assert!(events.is_empty());
        assert_eq!(errors.len(), 1, "step {step}");
        assert_eq!(
            errors[0].error,
            Error::Peer(PeerError::Decode(DecodeError::Malformed(
                MessageType::JobAssign
            )))
        );
        assert_eq!(rig.agent.state(), ConnState::Ready);
        let kinds = rig.sent_kinds();
        assert_eq!(kinds, [MessageType::Error, MessageType::OfferAccept]);
        // Forget the job for the next round.
        rig.agent.disconnected(rig.now);
        while rig.agent.poll_event().is_some() {}
        rig = Rig::ready();
    }
}

/// A chunk for a job the agent does not hold is refused at its fields;
/// its data is skipped as it arrives and the next frame is read.
#[test]
fn a_refused_chunk_is_skipped_and_the_next_frame_read() {
    let j = job();
    let mut rig = Rig::ready();
    let mut bytes = j.input_frames(9)[0].clone();
    bytes.extend(encode(&Message::JobOffer(j.offer(5, 1_000_000, 60_000))));
    let (events, errors) = rig.feed(&bytes, 1000);
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].error, Error::Peer(PeerError::UnknownJob(9)));
    assert!(events.is_empty());
    assert_eq!(
        rig.sent_kinds(),
        [MessageType::Error, MessageType::OfferAccept]
    );
}

/// The deadline of a job passes while one of its chunks arrives: the job
/// ends, and the rest of the chunk is dropped without an error.
#[test]
fn a_deadline_passing_mid_chunk_drops_the_rest_of_it() {
    let j = job();
    let mut rig = Rig::ready();
    let mut bytes = encode(&Message::JobOffer(j.offer(1, 1_000_000, 50)));
    bytes.extend(encode(&Message::JobAssign(j.assign(1))));
    let chunk = &j.input_frames(1)[0];
    bytes.extend_from_slice(&chunk[..3000]);
    let (_, errors) = rig.feed(&bytes, 100_000);
    assert!(errors.is_empty());
    rig.now = Instant::from_millis(1000);
    rig.agent.handle_timeout(rig.now);
    let mut cancelled = false;
    while let Some(e) = rig.agent.poll_event() {
        cancelled |= e
            == Event::CancelJob {
                job: 1,
                reason: CancelReason::Deadline,
            };
    }
    assert!(cancelled);
    let mut rest = chunk[3000..].to_vec();
    rest.extend(encode(&Message::JobOffer(j.offer(2, 1_000_000, 60_000))));
    let (events, errors) = rig.feed(&rest, 700);
    assert!(errors.is_empty(), "{errors:?}");
    assert!(events.is_empty(), "{events:?}");
    assert!(rig.sent_kinds().contains(&MessageType::OfferAccept));
}

/// Every message the coordinator may send but a chunk fits the input
/// buffer at its largest: an assignment with every field at its limit.
#[test]
fn the_largest_assignment_fits_the_input_buffer() {
    let mut a = JobAssign {
        job: u64::MAX,
        requester_nonce: [0xFF; 32],
        kernel: KernelSpec {
            root: [0xFF; 32],
            len: u32::MAX,
            entry_point: Default::default(),
            specialization: Default::default(),
            push_constants: Default::default(),
            grid: [u32::MAX; 3],
        },
        buffers: Default::default(),
        inputs_root: [0xFF; 32],
        sealing: None,
    };
    for _ in 0..MAX_ENTRY_POINT {
        a.kernel.entry_point.push('\u{7f}').unwrap();
    }
    for _ in 0..MAX_SPEC_CONSTANTS {
        a.kernel.specialization.push((u32::MAX, u32::MAX)).unwrap();
    }
    for _ in 0..MAX_PUSH_CONSTANTS {
        a.kernel.push_constants.push(0xFF).unwrap();
    }
    for _ in 0..MAX_BUFFERS {
        a.buffers
            .push(BufferSpec {
                binding: u32::MAX,
                len: u64::MAX,
                init_len: u64::MAX,
                readback: true,
            })
            .unwrap();
    }
    let frame = encode(&Message::JobAssign(a));
    assert!(
        frame.len() <= RX_CAPACITY,
        "the largest assignment takes {} bytes",
        frame.len()
    );
}

/// `send_output` writes queued frames, then chunk frames, into the host's
/// buffer: a buffer that can never hold the next frame is refused with the
/// length needed; one with room only for the queued frames takes nothing;
/// `TRANSMIT_BUFFER` bytes take a chunk at every call.
#[test]
fn send_output_writes_into_the_hosts_buffer() {
    let j = job();
    let mut rig = Rig::ready();
    let mut bytes = offer_and_assign(&j, 1);
    for f in j.input_frames(1) {
        bytes.extend(f);
    }
    rig.feed(&bytes, 100_000);
    rig.sent_kinds();
    let output: Vec<u8> = (0..j.buffers[1].1).map(|i| i as u8).collect();
    let now = rig.now;
    let need = HEADER_LEN + 1 + 1 + 1 + 32 + 2 + CHUNK_SIZE;
    assert_eq!(
        rig.agent.send_output(now, 1, 1, &output, &mut [0; 100]),
        Err(Error::BufferTooSmall(need))
    );
    assert_eq!(rig.agent.job_state(1), Some(JobState::Running));
    // A progress report waits in the queue; an empty buffer would make no
    // progress at all: refused, with the length that takes the chunk.
    rig.agent.report_progress(now, 1, 500).unwrap();
    let queued = rig.agent.pending_transmit();
    assert_eq!(
        rig.agent.send_output(now, 1, 1, &output, &mut []),
        Err(Error::BufferTooSmall(queued + need))
    );
    assert_eq!(rig.agent.pending_transmit(), queued);
    // Room for the queued frame alone.
    let mut out = vec![0u8; TRANSMIT_BUFFER];
    let sent = rig
        .agent
        .send_output(now, 1, 1, &output, &mut out[..queued + 10])
        .unwrap();
    assert_eq!((sent.taken, sent.written), (0, queued));
    rig.sent.push(&out[..sent.written]);
    let mut taken = 0;
    while taken < output.len() {
        let sent = rig
            .agent
            .send_output(now, 1, 1, &output[taken..], &mut out)
            .unwrap();
        assert!(sent.taken > 0 && sent.written <= MAX_FRAME);
        taken += sent.taken;
        rig.sent.push(&out[..sent.written]);
    }
    rig.agent
        .finish_job(
            now,
            1,
            Usage {
                gpu_time_us: 10,
                dispatches: 1,
                ..Usage::default()
            },
        )
        .unwrap();
    let mut got = Vec::new();
    let mut kinds = Vec::new();
    rig.transmit();
    while let Some(f) = rig.sent.next_frame() {
        let m = Message::decode(&f).unwrap();
        if let Message::OutputChunk(c) = m {
            assert_eq!(c.index as usize * CHUNK_SIZE, got.len());
            assert_eq!(c.digest, tessera_core::merkle::leaf_hash(c.data));
            got.extend_from_slice(c.data);
        }
        kinds.push(m.kind());
    }
    assert_eq!(got, output);
    assert_eq!(kinds[0], MessageType::Progress);
    assert_eq!(
        kinds[kinds.len() - 3..],
        [
            MessageType::Completed,
            MessageType::UsageReport,
            MessageType::Receipt
        ]
    );
}
