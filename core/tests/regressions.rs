//! Agent bugs found by the property tests (`properties.rs`) or by reading the
//! code around them, each kept as a plain test that runs on every build
//! whatever the random seed.

use tessera_core::attest::{ChainState, Ed25519Signer, Receipt, Signer};
use tessera_core::limits::MAX_FRAME;
use tessera_core::testkit::{decode, increment_run, Harness, JobDescription};
use tessera_core::wire::{JobRef, Message, MessageType, Usage, Welcome};
use tessera_core::{Agent, Config, ConnState, Error, Instant, JobState, Policy};

const SEED: [u8; 32] = [7; 32];

fn agent() -> Agent<Ed25519Signer> {
    let config = Config {
        policy: Policy::default(),
        ..Config::default()
    };
    let signer = Ed25519Signer::from_seed(&SEED).unwrap();
    Agent::new(config, signer, ChainState::default()).unwrap()
}

/// Connects a harness and completes the handshake.
fn ready() -> Harness {
    let mut h = Harness::new(agent(), increment_run);
    h.agent.connect(h.now).unwrap();
    h.send(&Message::Welcome(Welcome {
        version: 1,
        challenge: [1; 32],
        heartbeat_ms: 0,
    }));
    h.send(&Message::Ready);
    h.pump();
    assert_eq!(h.agent.state(), ConnState::Ready);
    h
}

/// A job with one input buffer and nothing to read back.
fn no_output_job() -> JobDescription {
    JobDescription {
        kernel: vec![3; 8],
        entry_point: "main".into(),
        grid: [1, 1, 1],
        push_constants: Vec::new(),
        buffers: vec![(vec![5; 100], 100, false)],
        nonce: [3; 32],
        bindings: Vec::new(),
    }
}

/// A host that writes outputs for a job that has none gets a typed error and
/// can still finish the job: the refused call leaves the job running.
#[test]
fn output_for_a_job_without_outputs_is_refused_without_side_effects() {
    let mut h = ready();
    h.host.auto_run = false;
    let j = no_output_job();
    h.send(&Message::JobOffer(j.offer(3, 10_000, 60_000)));
    h.send(&Message::JobAssign(j.assign(3)));
    for f in j.input_frames(3) {
        h.send_raw(&f);
    }
    h.pump();
    assert_eq!(h.agent.job_state(3), Some(JobState::Running));

    let now = h.now;
    assert_eq!(
        h.agent
            .send_output(now, 3, 0, &[0; 10], &mut [0; MAX_FRAME]),
        Err(Error::Usage(tessera_core::UsageError::OutputOutOfOrder(3)))
    );
    assert_eq!(h.agent.job_state(3), Some(JobState::Running));
    assert_eq!(h.agent.report_progress(now, 3, 500), Ok(()));
    assert_eq!(h.agent.finish_job(now, 3, Usage::default()), Ok(()));
    let frames = h.pump();
    assert!(frames
        .iter()
        .any(|f| decode(f).kind() == MessageType::Receipt));
}

/// Writing outputs for the wrong buffer first is refused and leaves the job
/// running, so progress reports still go out.
#[test]
fn output_for_the_wrong_buffer_first_leaves_the_job_running() {
    let mut h = ready();
    h.host.auto_run = false;
    let mut j = no_output_job();
    j.buffers.push((Vec::new(), 16, true));
    h.send(&Message::JobOffer(j.offer(4, 10_000, 60_000)));
    h.send(&Message::JobAssign(j.assign(4)));
    for f in j.input_frames(4) {
        h.send_raw(&f);
    }
    h.pump();
    let now = h.now;
    assert_eq!(
        h.agent
            .send_output(now, 4, 0, &[0; 16], &mut [0; MAX_FRAME]),
        Err(Error::Usage(tessera_core::UsageError::OutputOutOfOrder(4)))
    );
    assert_eq!(h.agent.job_state(4), Some(JobState::Running));
    let mut out = [0; MAX_FRAME];
    let sent = h.agent.send_output(now, 4, 1, &[0; 16], &mut out).unwrap();
    assert_eq!(sent.taken, 16);
    h.from_agent.push(&out[..sent.written]);
    assert_eq!(h.agent.finish_job(now, 4, Usage::default()), Ok(()));
    let pk = Ed25519Signer::from_seed(&SEED).unwrap().public_key();
    let receipt = h.pump().iter().find_map(|f| match decode(f) {
        Message::Receipt(r) => Some(r.bytes.to_vec()),
        _ => None,
    });
    assert!(Receipt::verify(&receipt.unwrap(), &pk).is_ok());
    h.send(&Message::ResultAck(JobRef { job: 4 }));
    h.pump();
    assert_eq!(h.agent.job_state(4), None);
}

fn encode(msg: &Message<'_>) -> Vec<u8> {
    let mut buf = vec![0u8; MAX_FRAME];
    let n = msg.encode(&mut buf).unwrap();
    buf.truncate(n);
    buf
}

/// Under back-pressure (the host's socket takes only part of what is queued)
/// the coordinator's `Welcome` is not lost: the agent either leaves it
/// unread until there is room for the evidence, or answers it.
#[test]
fn welcome_is_not_lost_when_the_outgoing_queue_is_nearly_full() {
    let mut a = agent();
    let now = Instant::from_millis(1);
    a.connect(now).unwrap();
    // Frames the agent refuses, each answered with an `Error` frame, until
    // it stops reading for lack of outgoing room.
    let refused = encode(&Message::Started(JobRef { job: 0 }));
    for _ in 0..10_000 {
        match a.handle_input(now, &refused) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => assert_eq!(
                e.error,
                Error::Peer(tessera_core::PeerError::UnexpectedMessage(
                    MessageType::Started
                ))
            ),
        }
    }
    // The transport takes a little.
    let mut some = [0u8; 60];
    assert_eq!(a.poll_transmit(now, &mut some), Some(60));

    let welcome = encode(&Message::Welcome(Welcome {
        version: 1,
        challenge: [1; 32],
        heartbeat_ms: 0,
    }));
    let mut rest = &welcome[..];
    let mut out = vec![0u8; 1 << 16];
    while !rest.is_empty() {
        let used = a.handle_input(now, rest).expect("the welcome is accepted");
        rest = &rest[used..];
        while a.poll_transmit(now, &mut out).is_some() {}
    }
    assert_eq!(a.state(), ConnState::AwaitingReady);
}

/// A host that asks to drain while the outgoing queue is full is told to
/// retry, and the retry does send `Drain` (and the goodbye, with no job left).
#[test]
fn drain_refused_for_a_full_queue_takes_effect_when_retried() {
    let mut h = ready();
    h.host.auto_run = false;
    let j = no_output_job();
    h.send(&Message::JobOffer(j.offer(5, 10_000, 60_000)));
    h.send(&Message::JobAssign(j.assign(5)));
    for f in j.input_frames(5) {
        h.send_raw(&f);
    }
    h.pump();
    assert_eq!(h.agent.job_state(5), Some(JobState::Running));
    // Progress reports with a wide job id fill the queue to the last bytes.
    let now = h.now;
    while h.agent.report_progress(now, 5, 1) == Ok(()) {}
    let free = tessera_core::limits::TX_CAPACITY - h.agent.pending_transmit();
    assert!(free < 8, "{free} bytes still free");
    assert_eq!(h.agent.drain(now), Err(Error::WouldBlock));
    h.pump();
    assert_eq!(h.agent.drain(now), Ok(()));
    assert!(h.agent.is_draining());
    let frames = h.pump();
    assert!(frames
        .iter()
        .any(|f| decode(f).kind() == MessageType::Drain));
}

/// With no transfer limit configured, an assignment whose input sizes add up
/// past `u64::MAX` is taken without overflow (it panicked in a debug build).
#[test]
fn unlimited_policy_assignment_sizes_do_not_overflow() {
    use tessera_core::wire::{BufferSpec, JobOffer, Requirements};
    let config = Config {
        policy: Policy {
            max_bytes_in: u64::MAX,
            max_bytes_out: u64::MAX,
            ..Policy::default()
        },
        ..Config::default()
    };
    let signer = Ed25519Signer::from_seed(&SEED).unwrap();
    let agent = Agent::new(config, signer, ChainState::default()).unwrap();
    let mut h = Harness::new(agent, increment_run);
    h.agent.connect(h.now).unwrap();
    h.send(&Message::Welcome(Welcome {
        version: 1,
        challenge: [1; 32],
        heartbeat_ms: 0,
    }));
    h.send(&Message::Ready);
    h.pump();
    let half = u64::MAX / 2 + 1;
    h.send(&Message::JobOffer(JobOffer {
        job: 9,
        requirements: Requirements::default(),
        est_gpu_ms: 1,
        bytes_in: u64::MAX,
        bytes_out: u64::MAX,
        max_price: u64::MAX,
        deadline_ms: 60_000,
    }));
    h.pump();
    assert_eq!(h.agent.job_state(9), Some(JobState::Accepted));
    let mut assign = no_output_job().assign(9);
    assign.buffers.clear();
    for binding in 0..2 {
        let _ = assign.buffers.push(BufferSpec {
            binding,
            len: half,
            init_len: half,
            readback: true,
        });
    }
    h.send(&Message::JobAssign(assign));
    h.pump();
    assert_eq!(h.agent.job_state(9), Some(JobState::Receiving));
}

/// The transport fails right after the last input chunk arrives, before the
/// host has read the events (it drains `poll_transmit` first, the write
/// fails, it reports the disconnect): the job still runs, so the host must
/// still get that chunk's bytes before `RunJob`, not run on partial inputs.
#[test]
fn last_input_chunk_survives_a_disconnect_before_events_are_read() {
    use tessera_core::agent::Event;
    let mut h = ready();
    h.host.auto_run = false;
    let j = no_output_job();
    h.send(&Message::JobOffer(j.offer(6, 10_000, 60_000)));
    h.send(&Message::JobAssign(j.assign(6)));
    let mut frames = j.input_frames(6);
    let last = frames.pop().unwrap();
    for f in frames {
        h.send_raw(&f);
    }
    h.pump();
    let now = h.now;
    assert_eq!(h.agent.handle_input(now, &last), Ok(last.len()));
    h.agent.disconnected(now);
    let mut got_data = false;
    let mut run = false;
    while let Some(e) = h.agent.poll_event() {
        match e {
            Event::JobData { job: 6, .. } => {
                assert!(!run, "data after RunJob");
                assert_eq!(h.agent.input(6), Some(&j.buffers[0].0[..]));
                got_data = true;
            }
            Event::RunJob { job: 6 } => run = true,
            _ => {}
        }
    }
    assert!(run);
    assert!(got_data, "the job runs without its last input chunk");
    assert_eq!(h.agent.job_state(6), Some(JobState::Running));
}

/// A signer that refuses while `down` is set.
struct FlakySigner {
    inner: Ed25519Signer,
    down: std::rc::Rc<std::cell::Cell<bool>>,
}

impl Signer for FlakySigner {
    fn public_key(&self) -> [u8; 32] {
        self.inner.public_key()
    }

    fn sign(&mut self, message: &[u8]) -> Result<[u8; 64], tessera_core::attest::SignError> {
        if self.down.get() {
            Err(tessera_core::attest::SignError::Unavailable)
        } else {
            self.inner.sign(message)
        }
    }
}

/// When a job's deadline passes while the signer is unavailable, the host is
/// told to cancel the job once, not again at every signing retry nor when
/// the connection drops; the job takes no more host calls, and the failure
/// receipt goes out once the signer is back.
#[test]
fn deadline_with_the_signer_down_cancels_once_and_signs_later() {
    use tessera_core::agent::{CancelReason, Event};
    use tessera_core::attest::ReceiptStatus;
    use tessera_core::wire::{FailReason, Heartbeat};
    let down = std::rc::Rc::new(std::cell::Cell::new(false));
    let signer = FlakySigner {
        inner: Ed25519Signer::from_seed(&SEED).unwrap(),
        down: down.clone(),
    };
    let config = Config {
        policy: Policy::default(),
        ..Config::default()
    };
    let agent = Agent::new(config, signer, ChainState::default()).unwrap();
    let mut h = Harness::new(agent, increment_run);
    h.agent.connect(h.now).unwrap();
    h.send(&Message::Welcome(Welcome {
        version: 1,
        challenge: [1; 32],
        heartbeat_ms: 0,
    }));
    h.send(&Message::Ready);
    h.pump();
    h.host.auto_run = false;
    let j = no_output_job();
    h.send(&Message::JobOffer(j.offer(7, 10_000, 2_000)));
    h.send(&Message::JobAssign(j.assign(7)));
    for f in j.input_frames(7) {
        h.send_raw(&f);
    }
    h.pump();
    assert_eq!(h.agent.job_state(7), Some(JobState::Running));

    down.set(true);
    let mut cancels = 0;
    let mut frames = Vec::new();
    for _ in 0..6 {
        h.send(&Message::Heartbeat(Heartbeat::default()));
        h.pump();
        let next = h.agent.poll_timeout().unwrap();
        h.now = next;
        h.agent.handle_timeout(next);
        while let Some(e) = h.agent.poll_event() {
            if let Event::CancelJob { job: 7, reason } = e {
                assert_eq!(reason, CancelReason::Deadline);
                cancels += 1;
            }
        }
        frames.extend(h.pump());
    }
    assert_eq!(cancels, 1, "the host is told to cancel once");
    assert_eq!(h.agent.job_state(7), Some(JobState::Running));
    let now = h.now;
    assert_eq!(
        h.agent.finish_job(now, 7, Usage::default()),
        Err(Error::Usage(tessera_core::UsageError::InvalidJobState(7)))
    );

    down.set(false);
    let next = h.agent.poll_timeout().unwrap();
    h.now = next;
    h.agent.handle_timeout(next);
    frames.extend(h.pump());
    assert_eq!(h.agent.job_state(7), Some(JobState::AwaitingAck));
    let receipt = frames.iter().find_map(|f| match decode(f) {
        Message::Receipt(r) => Some(r.bytes.to_vec()),
        _ => None,
    });
    let pk = Ed25519Signer::from_seed(&SEED).unwrap().public_key();
    let receipt = Receipt::verify(&receipt.expect("a receipt"), &pk).unwrap();
    // The kernel was running: it ran out its time, metered to the deadline
    // (2 s after the offer) although the receipt was signed later.
    assert_eq!(receipt.status, ReceiptStatus::Failed(FailReason::Timeout));
    assert_eq!(receipt.usage.gpu_time_us, 2_000_000);
}

/// A `Welcome` with `heartbeat_ms: 0` means the provider's own interval,
/// also after an earlier session's coordinator asked for another one.
#[test]
fn heartbeat_interval_is_per_session() {
    let mut h = Harness::new(agent(), increment_run);
    let policy = Policy::default();
    for heartbeat_ms in [1_000, 0] {
        if h.agent.state() != ConnState::Disconnected {
            h.agent.disconnected(h.now);
            h.pump();
        }
        h.agent.connect(h.now).unwrap();
        h.send(&Message::Welcome(Welcome {
            version: 1,
            challenge: [1; 32],
            heartbeat_ms,
        }));
        h.send(&Message::Ready);
        h.pump();
        assert_eq!(h.agent.state(), ConnState::Ready);
        let expected = if heartbeat_ms > 0 {
            tessera_core::Duration::from_millis(heartbeat_ms as u64)
        } else {
            policy.heartbeat_interval
        };
        assert_eq!(h.agent.poll_timeout(), Some(h.now + expected));
    }
}

/// Offers and heartbeats are decoded without the `Message` enum (the hot
/// path): a malformed one is refused as `Message::decode` refuses it, with
/// the same error frame back, and the session goes on.
#[test]
fn malformed_offers_and_heartbeats_are_refused_as_any_malformed_frame() {
    use tessera_core::wire::{DecodeError, Heartbeat, JobOffer, Requirements};
    use tessera_core::PeerError;
    let offer = encode(&Message::JobOffer(JobOffer {
        job: 9,
        requirements: Requirements::default(),
        est_gpu_ms: 1,
        bytes_in: 1,
        bytes_out: 1,
        max_price: u64::MAX,
        deadline_ms: 1000,
    }));
    let heartbeat = encode(&Message::Heartbeat(Heartbeat::default()));
    for (good, kind) in [
        (offer, MessageType::JobOffer),
        (heartbeat, MessageType::Heartbeat),
    ] {
        // One byte too many in the body, the header saying so.
        let mut long = good.clone();
        long.push(0);
        let body = (long.len() - 8) as u32;
        long[4..8].copy_from_slice(&body.to_le_bytes());
        // One byte too few (the last field cut).
        let mut short = good.clone();
        short.pop();
        let body = (short.len() - 8) as u32;
        short[4..8].copy_from_slice(&body.to_le_bytes());
        // Far longer than any offer (past the agent's small-frame buffer).
        let mut huge = good.clone();
        huge.extend([0x80; 200]);
        let body = (huge.len() - 8) as u32;
        huge[4..8].copy_from_slice(&body.to_le_bytes());
        for frame in [long, short, huge] {
            // What the full decoder says of the frame.
            assert_eq!(
                Message::decode(&frame).unwrap_err(),
                DecodeError::Malformed(kind)
            );
            // Whole in one call (decoded where it lies), and a byte at a
            // time (through the agent's receive buffer).
            for split in [frame.len(), 1] {
                let mut h = ready();
                let sent = h.agent.stats().frames_out;
                let mut at = 0;
                let err = loop {
                    let end = (at + split).min(frame.len());
                    match h.agent.handle_input(h.now, &frame[at..end]) {
                        Ok(n) => at += n,
                        Err(e) => break e,
                    }
                    assert!(at < frame.len(), "a malformed frame was taken");
                };
                assert_eq!(
                    err.error,
                    Error::Peer(PeerError::Decode(DecodeError::Malformed(kind)))
                );
                assert_eq!(at + err.consumed, frame.len());
                assert_eq!(h.agent.stats().frames_out, sent + 1, "an Error frame back");
                assert_eq!(h.agent.state(), ConnState::Ready, "not fatal");
            }
        }
        // And the good one is taken both ways.
        for split in [good.len(), 1] {
            let mut h = ready();
            for piece in good.chunks(split) {
                assert_eq!(h.agent.handle_input(h.now, piece).unwrap(), piece.len());
            }
            assert_eq!(h.agent.stats().frames_in, 3, "{kind:?}"); // Welcome, Ready, it
        }
    }
}
