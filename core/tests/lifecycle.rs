//! Whole job lifecycles between an agent and a scripted coordinator, in
//! virtual time: each test runs in microseconds of real time.

use tessera_core::agent::{CancelReason, DisconnectReason, JobState};
use tessera_core::attest::{
    ChainState, DeviceCapabilities, Ed25519Signer, Evidence, Receipt, ReceiptStatus,
    ReceiptVerifier,
};
use tessera_core::merkle::root_of_buffers;
use tessera_core::testkit::{decode, increment_run, Harness, JobDescription};
use tessera_core::wire::{
    features, Cancel, DeclineReason, FailReason, JobRef, Message, MessageType, Requirements,
    Welcome,
};
use tessera_core::{Agent, Config, ConnState, Duration, LinearPrice, Policy};

const SEED: [u8; 32] = [7; 32];
const CHALLENGE: [u8; 32] = [0xC4; 32];

fn config() -> Config {
    let mut capabilities = DeviceCapabilities {
        features: features::FLOAT16 | features::ROBUST_BUFFER_ACCESS,
        device_local_bytes: 1 << 30,
        ..DeviceCapabilities::default()
    };
    let _ = capabilities.name.push_str("test device");
    Config {
        agent_version: [0, 1, 0],
        boot_id: [1; 16],
        capabilities,
        policy: Policy {
            max_concurrent: 2,
            price: LinearPrice {
                base: 100,
                per_gpu_ms: 10,
                per_mib_in: 1,
                per_mib_out: 1,
            },
            floor: 150,
            heartbeat_interval: Duration::from_secs(5),
            peer_timeout: Duration::from_secs(20),
            ..Policy::default()
        },
        persist_results: false,
    }
}

fn harness() -> Harness {
    let signer = Ed25519Signer::from_seed(&SEED).unwrap();
    let agent = Agent::new(config(), signer, ChainState::default()).unwrap();
    Harness::new(agent, increment_run)
}

fn kinds(frames: &[Vec<u8>]) -> Vec<MessageType> {
    frames.iter().map(|f| decode(f).kind()).collect()
}

/// Connects and completes the handshake; returns the agent's public key.
fn handshake(h: &mut Harness) -> [u8; 32] {
    h.agent.connect(h.now).unwrap();
    let frames = h.pump();
    assert_eq!(kinds(&frames), vec![MessageType::Hello]);
    h.send(&Message::Welcome(Welcome {
        version: 1,
        challenge: CHALLENGE,
        heartbeat_ms: 0,
    }));
    let frames = h.pump();
    let Message::Evidence(blob) = decode(&frames[0]) else {
        panic!("expected evidence")
    };
    let evidence = Evidence::verify(blob.bytes, &CHALLENGE).expect("evidence verifies");
    assert_eq!(evidence.capabilities.name.as_str(), "test device");
    h.send(&Message::Ready);
    assert_eq!(h.agent.state(), ConnState::AwaitingReady);
    evidence.public_key
}

/// Lets the handshake's `Ready` through; returns what the agent sent then.
fn ready(h: &mut Harness) -> Vec<Vec<u8>> {
    let frames = h.pump();
    assert_eq!(h.agent.state(), ConnState::Ready);
    frames
}

fn job(nonce: u8, input_len: usize) -> JobDescription {
    JobDescription {
        kernel: (0..4096u32).flat_map(|i| i.to_le_bytes()).collect(),
        entry_point: "main".into(),
        grid: [4, 1, 1],
        push_constants: vec![1, 2, 3, 4],
        buffers: vec![
            (
                (0..input_len).map(|i| (i % 251) as u8).collect(),
                input_len as u64,
                false,
            ),
            (Vec::new(), input_len as u64, true),
        ],
        nonce: [nonce; 32],
        bindings: Vec::new(),
    }
}

/// Offers, assigns and sends the job; returns the frames the agent sent.
fn submit<S: tessera_core::attest::Signer>(
    h: &mut Harness<S>,
    id: u64,
    j: &JobDescription,
) -> Vec<Vec<u8>> {
    h.send(&Message::JobOffer(j.offer(id, 10_000, 60_000)));
    let mut frames = h.pump();
    assert_eq!(kinds(&frames), vec![MessageType::OfferAccept]);
    h.send(&Message::JobAssign(j.assign(id)));
    for f in j.input_frames(id) {
        h.send_raw(&f);
    }
    frames.extend(h.pump());
    frames
}

struct Outcome {
    outputs: Vec<Vec<u8>>,
    receipt: Vec<u8>,
}

fn collect(frames: &[Vec<u8>], id: u64) -> Outcome {
    let mut outputs: Vec<Vec<u8>> = Vec::new();
    let mut receipt = Vec::new();
    for f in frames {
        match decode(f) {
            Message::OutputChunk(c) if c.job == id => {
                let s = c.stream as usize;
                if outputs.len() <= s {
                    outputs.resize(s + 1, Vec::new());
                }
                outputs[s].extend_from_slice(c.data);
            }
            Message::Receipt(r) if r.job == id => receipt = r.bytes.to_vec(),
            _ => {}
        }
    }
    outputs.retain(|o| !o.is_empty());
    Outcome { outputs, receipt }
}

#[test]
fn happy_path_returns_outputs_and_a_verifiable_receipt() {
    let mut h = harness();
    let pk = handshake(&mut h);
    ready(&mut h);
    let j = job(9, 20_000);
    let frames = submit(&mut h, 1, &j);
    let k = kinds(&frames);
    assert!(k.contains(&MessageType::Started));
    let tail: Vec<_> = k.iter().rev().take(3).rev().copied().collect();
    assert_eq!(
        tail,
        vec![
            MessageType::Completed,
            MessageType::UsageReport,
            MessageType::Receipt
        ]
    );
    let out = collect(&frames, 1);
    let expected: Vec<u8> = j.buffers[0].0.iter().map(|b| b.wrapping_add(1)).collect();
    assert_eq!(out.outputs, vec![expected.clone()]);

    let mut verifier = ReceiptVerifier::new(pk, ChainState::default());
    let receipt = verifier.verify_next(&out.receipt, Some(&[9; 32])).unwrap();
    assert_eq!(receipt.status, ReceiptStatus::Completed);
    assert_eq!(receipt.output_root, root_of_buffers([&expected[..]]));
    assert_eq!(receipt.output_len, 20_000);
    // The kernel hash covers the kernel, its dispatch and the buffer layout
    // that was assigned.
    assert_eq!(receipt.kernel_hash, j.assign(1).kernel_hash());
    assert_eq!(receipt.usage.gpu_time_us, 1500);
    // base 100 + 2 ms * 10 + 1 MiB in + 1 MiB out = 122, raised to the floor.
    assert_eq!(receipt.price, 150);
    assert_eq!(receipt.sequence, 1);

    assert_eq!(h.agent.job_state(1), Some(JobState::AwaitingAck));
    assert_eq!(h.agent.results_held(), 1);
    h.send(&Message::ResultAck(JobRef { job: 1 }));
    h.pump();
    assert_eq!(h.agent.job_state(1), None);
    assert_eq!(h.agent.results_held(), 0);
    assert!(h.host.log.iter().any(|l| l.contains("ResultAcknowledged")));
    assert_eq!(h.agent.stats().jobs_completed, 1);
    assert_eq!(h.agent.stats().earnings, 150);
    assert_eq!(h.agent.stats().gpu_time_us, 1500, "the metered GPU time");
}

#[test]
fn offers_are_declined_by_price_capability_and_capacity() {
    let mut h = harness();
    handshake(&mut h);
    ready(&mut h);
    let j = job(1, 100);
    let decline = |h: &mut Harness, offer| {
        h.send(&Message::JobOffer(offer));
        let frames = h.pump();
        match decode(&frames[0]) {
            Message::OfferDecline(d) => d.reason,
            other => panic!("expected a decline, got {other:?}"),
        }
    };
    let cheap = j.offer(1, 149, 60_000);
    assert_eq!(decline(&mut h, cheap), DeclineReason::PriceTooLow);
    let mut needs_f64 = j.offer(2, 10_000, 60_000);
    needs_f64.requirements = Requirements {
        memory_mib: 1,
        features: features::FLOAT64,
    };
    assert_eq!(decline(&mut h, needs_f64), DeclineReason::Unsupported);
    let mut too_much_memory = j.offer(3, 10_000, 60_000);
    too_much_memory.requirements.memory_mib = 4096;
    assert_eq!(decline(&mut h, too_much_memory), DeclineReason::Unsupported);
    let mut rushed = j.offer(4, 10_000, 5);
    rushed.est_gpu_ms = 10;
    assert_eq!(decline(&mut h, rushed), DeclineReason::DeadlineTooShort);

    // Capacity is two jobs.
    for id in [10, 11] {
        h.send(&Message::JobOffer(j.offer(id, 10_000, 60_000)));
        assert_eq!(kinds(&h.pump()), vec![MessageType::OfferAccept]);
    }
    assert_eq!(
        decline(&mut h, j.offer(12, 10_000, 60_000)),
        DeclineReason::AtCapacity
    );
    assert_eq!(
        decline(&mut h, j.offer(10, 10_000, 60_000)),
        DeclineReason::DuplicateJob
    );
}

#[test]
fn cancel_during_transfer_and_during_run() {
    let mut h = harness();
    handshake(&mut h);
    ready(&mut h);
    let j = job(1, 40_000);
    // During transfer: send the assignment and only two chunks.
    h.send(&Message::JobOffer(j.offer(1, 10_000, 60_000)));
    h.send(&Message::JobAssign(j.assign(1)));
    for f in j.input_frames(1).into_iter().take(2) {
        h.send_raw(&f);
    }
    h.pump();
    assert_eq!(h.agent.job_state(1), Some(JobState::Receiving));
    h.send(&Message::Cancel(Cancel { job: 1, reason: 42 }));
    h.pump();
    assert_eq!(h.agent.job_state(1), None);
    assert!(h
        .host
        .log
        .iter()
        .any(|l| l.contains(&format!("{:?}", CancelReason::Requested(42)))));
    assert!(!h.host.job_host.jobs.contains_key(&1));

    // During the run: the host does not run jobs on its own.
    h.host.auto_run = false;
    submit(&mut h, 2, &j);
    assert_eq!(h.agent.job_state(2), Some(JobState::Running));
    h.send(&Message::Cancel(Cancel { job: 2, reason: 1 }));
    h.pump();
    assert_eq!(h.agent.job_state(2), None);
    // Late host calls for the cancelled job get a typed error.
    assert_eq!(
        h.agent.finish_job(h.now, 2, Default::default()),
        Err(tessera_core::Error::Usage(
            tessera_core::UsageError::UnknownJob(2)
        ))
    );
    // The agent keeps serving.
    h.host.auto_run = true;
    let frames = submit(&mut h, 3, &j);
    assert!(kinds(&frames).contains(&MessageType::Receipt));
}

/// Frames' `Failed` reason, and the receipt verified under `pk`.
fn failure(frames: &[Vec<u8>], id: u64, pk: &[u8; 32]) -> (FailReason, u64, Receipt) {
    let failed = frames
        .iter()
        .find_map(|f| match decode(f) {
            Message::Failed(x) if x.job == id => Some(x.reason),
            _ => None,
        })
        .expect("a Failed message");
    let usage_price = frames
        .iter()
        .find_map(|f| match decode(f) {
            Message::UsageReport(u) if u.job == id => Some(u.price),
            _ => None,
        })
        .expect("a UsageReport");
    let receipt = Receipt::verify(&collect(frames, id).receipt, pk).expect("receipt verifies");
    assert_eq!(receipt.price, usage_price, "UsageReport and receipt agree");
    (failed, usage_price, receipt)
}

#[test]
fn a_deadline_before_the_kernel_ran_is_not_charged() {
    let mut h = harness();
    let pk = handshake(&mut h);
    ready(&mut h);
    let j = job(5, 40_000);
    // Only part of the inputs arrive: the job is still `Receiving`.
    h.send(&Message::JobOffer(j.offer(1, 10_000, 60_000)));
    h.send(&Message::JobAssign(j.assign(1)));
    for f in j.input_frames(1).into_iter().take(2) {
        h.send_raw(&f);
    }
    h.pump();
    assert_eq!(h.agent.job_state(1), Some(JobState::Receiving));
    // Keep the coordinator talking so only the deadline fires.
    let mut frames = Vec::new();
    while h.agent.job_state(1) == Some(JobState::Receiving) {
        h.send(&Message::Heartbeat(Default::default()));
        frames.extend(h.pump());
        assert!(h.advance(Duration::from_secs(10)));
        frames.extend(h.pump());
    }
    assert!(h
        .host
        .log
        .iter()
        .any(|l| l.contains(&format!("{:?}", CancelReason::Deadline))));
    let (reason, price, receipt) = failure(&frames, 1, &pk);
    assert_eq!(reason, FailReason::DeadlineExceeded);
    assert_eq!(
        receipt.status,
        ReceiptStatus::Failed(FailReason::DeadlineExceeded)
    );
    assert_eq!(price, 0);
    assert_eq!(receipt.usage.gpu_time_us, 0);
    assert!(h.now.micros >= 60_000_000, "the deadline was 60 s");
}

/// A job running when time runs out: quoted 10,102 (1000 ms estimated at 10
/// per ms, plus 100, plus a MiB each way), at most 20,000, due in 2 s.
fn timed_out_setup() -> (Harness, [u8; 32], JobDescription) {
    let mut h = harness();
    let pk = handshake(&mut h);
    ready(&mut h);
    h.host.auto_run = false;
    let j = job(6, 1000);
    let mut offer = j.offer(1, 20_000, 2_000);
    offer.est_gpu_ms = 1000;
    h.send(&Message::JobOffer(offer));
    let frames = h.pump();
    let Message::OfferAccept(a) = decode(&frames[0]) else {
        panic!("expected an acceptance")
    };
    assert_eq!(a.price, 10_102);
    h.send(&Message::JobAssign(j.assign(1)));
    for f in j.input_frames(1) {
        h.send_raw(&f);
    }
    h.pump();
    assert_eq!(h.agent.job_state(1), Some(JobState::Running));
    (h, pk, j)
}

#[test]
fn a_timeout_the_host_reports_first_is_charged_the_quote() {
    let (mut h, pk, _) = timed_out_setup();
    // The host gave the kernel the time left until the deadline (2 s) and
    // reports that it ran out, a little before the agent's own timer.
    h.now = h.now + Duration::from_millis(1_999);
    let limit = tessera_core::wire::Usage {
        gpu_time_us: 2_000_000,
        dispatches: 1,
        ..Default::default()
    };
    h.agent
        .fail_job(h.now, 1, FailReason::Timeout, 1, limit)
        .expect("the host reports the timeout");
    let mut frames = h.pump();
    let (reason, price, receipt) = failure(&frames, 1, &pk);
    assert_eq!(reason, FailReason::Timeout);
    assert_eq!(receipt.status, ReceiptStatus::Failed(FailReason::Timeout));
    assert_eq!(price, 10_102, "charged the accepted quote");
    assert_eq!(receipt.usage.gpu_time_us, 2_000_000, "metered to the limit");
    assert_eq!(receipt.usage.dispatches, 1);
    // The deadline passing later changes nothing: no second outcome.
    h.send(&Message::Heartbeat(Default::default()));
    h.advance(Duration::from_secs(5));
    frames = h.pump();
    assert!(!kinds(&frames).contains(&MessageType::Failed));
    assert_eq!(h.agent.job_state(1), Some(JobState::AwaitingAck));

    // A host that reports more time than there was until the deadline is
    // metered to the deadline.
    h.send(&Message::ResultAck(JobRef { job: 1 }));
    h.pump();
    let j = job(7, 1000);
    h.send(&Message::JobOffer(j.offer(2, 20_000, 3_000)));
    h.send(&Message::JobAssign(j.assign(2)));
    for f in j.input_frames(2) {
        h.send_raw(&f);
    }
    h.pump();
    let too_long = tessera_core::wire::Usage {
        gpu_time_us: 9_000_000,
        ..Default::default()
    };
    h.agent
        .fail_job(h.now, 2, FailReason::Timeout, 1, too_long)
        .expect("reported");
    let (_, _, receipt) = failure(&h.pump(), 2, &pk);
    assert_eq!(receipt.usage.gpu_time_us, 3_000_000);
}

#[test]
fn a_timeout_the_agent_sees_first_is_charged_the_quote_too() {
    let (mut h, pk, _) = timed_out_setup();
    let started = h.now;
    // The host never answers; the agent's deadline fires.
    let mut frames = Vec::new();
    while h.agent.job_state(1) == Some(JobState::Running) {
        assert!(h.advance(Duration::from_secs(10)));
        frames.extend(h.pump());
    }
    assert!(h
        .host
        .log
        .iter()
        .any(|l| l.contains(&format!("{:?}", CancelReason::Deadline))));
    let (reason, price, receipt) = failure(&frames, 1, &pk);
    // The same status and price as when the host reports the timeout.
    assert_eq!(reason, FailReason::Timeout);
    assert_eq!(receipt.status, ReceiptStatus::Failed(FailReason::Timeout));
    assert_eq!(price, 10_102, "charged the accepted quote");
    // Metered from the start to the deadline, 2 s after the offer.
    assert_eq!(receipt.started_at, started.micros);
    assert_eq!(receipt.usage.gpu_time_us, 2_000_000);
    assert_eq!(receipt.usage.dispatches, 0);
    // The host's own timeout, arriving late, changes nothing.
    assert_eq!(
        h.agent.fail_job(
            h.now,
            1,
            FailReason::Timeout,
            1,
            tessera_core::wire::Usage {
                gpu_time_us: 2_000_000,
                ..Default::default()
            }
        ),
        Err(tessera_core::Error::Usage(
            tessera_core::UsageError::InvalidJobState(1)
        ))
    );
    assert!(h.pump().is_empty());
}

#[test]
fn other_failures_are_not_charged_whatever_they_meter() {
    let mut h = harness();
    let pk = handshake(&mut h);
    ready(&mut h);
    h.host.auto_run = false;
    let j = job(8, 1000);
    submit(&mut h, 1, &j);
    let metered = tessera_core::wire::Usage {
        gpu_time_us: 5_000,
        dispatches: 3,
        ..Default::default()
    };
    h.agent
        .fail_job(h.now, 1, FailReason::DeviceLost, 2, metered)
        .expect("reported");
    let (reason, price, receipt) = failure(&h.pump(), 1, &pk);
    assert_eq!(reason, FailReason::DeviceLost);
    assert_eq!(price, 0);
    assert_eq!(receipt.usage.gpu_time_us, 5_000, "usage is still signed");
}

#[test]
fn peer_silence_disconnects_and_heartbeats_flow() {
    let mut h = harness();
    handshake(&mut h);
    ready(&mut h);
    // 5 s heartbeats while the peer is silent, then the 20 s timeout.
    let mut heartbeats = 0;
    for _ in 0..10 {
        if !h.advance(Duration::from_secs(30)) {
            break;
        }
        heartbeats += kinds(&h.pump())
            .iter()
            .filter(|k| **k == MessageType::Heartbeat)
            .count();
        if h.agent.state() == ConnState::Disconnected {
            break;
        }
    }
    assert_eq!(h.agent.state(), ConnState::Disconnected);
    assert!(heartbeats >= 3, "saw {heartbeats} heartbeats");
    assert!(h
        .host
        .log
        .iter()
        .any(|l| l.contains(&format!("{:?}", DisconnectReason::PeerSilent))));
    // The agent reconnects fine.
    handshake(&mut h);
    ready(&mut h);
}

#[test]
fn reconnect_offers_an_unacknowledged_result_again() {
    let mut h = harness();
    let pk = handshake(&mut h);
    ready(&mut h);
    let j = job(3, 30_000);
    let frames = submit(&mut h, 7, &j);
    let first = collect(&frames, 7);
    assert!(!first.receipt.is_empty());
    // The connection drops before the coordinator acknowledges.
    h.agent.disconnected(h.now);
    assert_eq!(h.agent.job_state(7), Some(JobState::AwaitingAck));
    handshake(&mut h);
    let frames = ready(&mut h);
    let again = collect(&frames, 7);
    assert_eq!(again.outputs, first.outputs, "the outputs are sent again");
    assert_eq!(again.receipt, first.receipt, "the same signed receipt");
    let mut verifier = ReceiptVerifier::new(pk, ChainState::default());
    verifier
        .verify_next(&again.receipt, Some(&[3; 32]))
        .unwrap();
    h.send(&Message::ResultAck(JobRef { job: 7 }));
    h.pump();
    assert_eq!(h.agent.job_state(7), None);
}

#[test]
fn job_finishing_while_disconnected_is_delivered_after_reconnect() {
    let mut h = harness();
    let pk = handshake(&mut h);
    ready(&mut h);
    h.host.auto_run = false;
    let j = job(4, 10_000);
    submit(&mut h, 8, &j);
    h.agent.disconnected(h.now);
    // The host finishes the job while offline.
    h.host.to_run.push_back(8);
    h.pump();
    assert_eq!(h.agent.job_state(8), Some(JobState::AwaitingAck));
    handshake(&mut h);
    let frames = ready(&mut h);
    let out = collect(&frames, 8);
    assert_eq!(out.outputs.len(), 1);
    let receipt = Receipt::verify(&out.receipt, &pk).unwrap();
    assert_eq!(receipt.output_root, root_of_buffers([&out.outputs[0][..]]));
}

#[test]
fn receipts_form_a_chain_across_jobs() {
    let mut h = harness();
    let pk = handshake(&mut h);
    ready(&mut h);
    let mut verifier = ReceiptVerifier::new(pk, ChainState::default());
    for id in 1..=5u64 {
        let j = job(id as u8, 3000 + id as usize);
        let frames = submit(&mut h, id, &j);
        let r = verifier
            .verify_next(&collect(&frames, id).receipt, Some(&[id as u8; 32]))
            .unwrap();
        assert_eq!(r.sequence, id);
        h.send(&Message::ResultAck(JobRef { job: id }));
        h.pump();
    }
    assert_eq!(h.agent.chain(), verifier.chain());
}

#[test]
fn drain_finishes_running_work_then_says_goodbye() {
    let mut h = harness();
    handshake(&mut h);
    ready(&mut h);
    h.host.auto_run = false;
    let j = job(2, 5000);
    submit(&mut h, 1, &j);
    h.agent.drain(h.now).unwrap();
    let frames = h.pump();
    assert_eq!(kinds(&frames), vec![MessageType::Drain]);
    // New offers are declined while draining.
    h.send(&Message::JobOffer(j.offer(2, 10_000, 60_000)));
    let frames = h.pump();
    assert!(matches!(
        decode(&frames[0]),
        Message::OfferDecline(d) if d.reason == DeclineReason::Draining
    ));
    // The running job completes and is acknowledged; then goodbye.
    h.host.to_run.push_back(1);
    let frames = h.pump();
    assert!(kinds(&frames).contains(&MessageType::Receipt));
    assert_eq!(h.agent.state(), ConnState::Ready);
    h.send(&Message::ResultAck(JobRef { job: 1 }));
    let frames = h.pump();
    assert_eq!(kinds(&frames), vec![MessageType::Goodbye]);
    assert_eq!(h.agent.state(), ConnState::Closed);
    assert!(h
        .host
        .log
        .iter()
        .any(|l| l.contains(&format!("{:?}", DisconnectReason::Drained))));
}

/// A coordinator's `Drain` ends the session, not the provider: the host is
/// told `PeerDrained` (the runtime reconnects), and the next session takes
/// offers again. Before, it was `Drained`, which the runtime and the
/// operator program took as the operator's shutdown and exited on: a remote
/// shutdown.
#[test]
fn a_coordinator_drain_ends_the_session_and_the_next_one_takes_work() {
    let mut h = harness();
    handshake(&mut h);
    ready(&mut h);
    h.host.auto_run = false;
    let j = job(2, 5000);
    submit(&mut h, 1, &j);
    h.send(&Message::Drain);
    let frames = h.pump();
    assert_eq!(kinds(&frames), vec![MessageType::Drain]);
    assert!(h.agent.is_draining());
    h.send(&Message::JobOffer(j.offer(2, 10_000, 60_000)));
    assert!(matches!(
        decode(&h.pump()[0]),
        Message::OfferDecline(d) if d.reason == DeclineReason::Draining
    ));
    h.host.to_run.push_back(1);
    h.pump();
    h.send(&Message::ResultAck(JobRef { job: 1 }));
    assert_eq!(kinds(&h.pump()), vec![MessageType::Goodbye]);
    assert_eq!(h.agent.state(), ConnState::Closed);
    let said = |h: &Harness, r: DisconnectReason| {
        let line = format!("Disconnect {{ reason: {r:?} }}");
        h.host.log.contains(&line)
    };
    assert!(said(&h, DisconnectReason::PeerDrained));
    assert!(!said(&h, DisconnectReason::Drained));
    // The next session starts without draining and takes an offer.
    handshake(&mut h);
    ready(&mut h);
    assert!(!h.agent.is_draining());
    h.send(&Message::JobOffer(j.offer(3, 10_000, 60_000)));
    assert!(matches!(decode(&h.pump()[0]), Message::OfferAccept(_)));
}

/// The host asking for a drain during the coordinator's makes it the
/// host's: the session ends with `Drained`.
#[test]
fn a_host_drain_during_a_coordinator_drain_is_the_hosts() {
    let mut h = harness();
    handshake(&mut h);
    ready(&mut h);
    h.host.auto_run = false;
    let j = job(2, 5000);
    submit(&mut h, 1, &j);
    h.send(&Message::Drain);
    h.pump();
    h.agent.drain(h.now).unwrap();
    // Nothing more is sent for the second request.
    assert!(h.pump().is_empty());
    h.host.to_run.push_back(1);
    h.pump();
    h.send(&Message::ResultAck(JobRef { job: 1 }));
    assert_eq!(kinds(&h.pump()), vec![MessageType::Goodbye]);
    assert!(h
        .host
        .log
        .iter()
        .any(|l| l.contains(&format!("{:?}", DisconnectReason::Drained))));
}

#[test]
fn corrupted_input_chunk_fails_the_job_and_the_agent_keeps_serving() {
    let mut h = harness();
    let pk = handshake(&mut h);
    ready(&mut h);
    let j = job(6, 9000);
    h.send(&Message::JobOffer(j.offer(1, 10_000, 60_000)));
    h.send(&Message::JobAssign(j.assign(1)));
    let mut frames = j.input_frames(1);
    let last = frames.len() - 1;
    let n = frames[last].len();
    frames[last][n - 1] ^= 0xFF; // flip a data byte; its digest no longer matches
    for f in frames {
        h.send_raw(&f);
    }
    let out = h.pump();
    let failed = out.iter().find_map(|f| match decode(f) {
        Message::Failed(x) => Some(x),
        _ => None,
    });
    assert_eq!(failed.map(|f| f.reason), Some(FailReason::InputIntegrity));
    let receipt = Receipt::verify(&collect(&out, 1).receipt, &pk).unwrap();
    assert_eq!(
        receipt.status,
        ReceiptStatus::Failed(FailReason::InputIntegrity)
    );
    h.send(&Message::ResultAck(JobRef { job: 1 }));
    h.pump();
    let frames = submit(&mut h, 2, &j);
    assert!(kinds(&frames).contains(&MessageType::Receipt));
}

#[test]
fn bad_frames_get_typed_errors_and_error_frames() {
    let mut h = harness();
    handshake(&mut h);
    ready(&mut h);
    // Unknown message type: recoverable.
    h.send_raw(&[b'T', b'S', 1, 0x77, 0, 0, 0, 0]);
    let frames = h.pump();
    assert_eq!(kinds(&frames), vec![MessageType::Error]);
    assert_eq!(h.agent.state(), ConnState::Ready);
    // A provider-only message from the coordinator: recoverable.
    h.send(&Message::Started(JobRef { job: 1 }));
    let frames = h.pump();
    assert_eq!(kinds(&frames), vec![MessageType::Error]);
    // Truncated body: recoverable.
    h.send_raw(&[b'T', b'S', 1, MessageType::Cancel as u8, 1, 0, 0, 0, 0x80]);
    assert_eq!(kinds(&h.pump()), vec![MessageType::Error]);
    assert_eq!(h.agent.state(), ConnState::Ready);
    // Oversized frame: fatal for the connection, not for the agent.
    h.send_raw(&[b'T', b'S', 1, MessageType::Cancel as u8, 0xFF, 0xFF, 0, 0]);
    let frames = h.pump();
    assert_eq!(kinds(&frames), vec![MessageType::Error]);
    assert_eq!(h.agent.state(), ConnState::Disconnected);
    assert_eq!(h.input_errors.len(), 4);
    h.to_agent.clear();
    handshake(&mut h);
    ready(&mut h);
}

/// Reason codes travel as the documented byte, the same value receipts use.
#[test]
fn reason_codes_travel_as_their_documented_byte() {
    use tessera_core::testkit::encode;
    use tessera_core::wire::{Failed, OfferDecline};
    let f = encode(&Message::OfferDecline(OfferDecline {
        job: 1,
        reason: DeclineReason::TooLarge,
    }));
    assert_eq!(f[8..], [1, 6]);
    let f = encode(&Message::Failed(Failed {
        job: 2,
        reason: FailReason::DeviceLost,
        detail: 0,
    }));
    assert_eq!(f[8..], [2, 4, 0]);
    let mut bad = f.clone();
    bad[9] = 0;
    assert!(Message::decode(&bad).is_err());
}

/// A provider restarted while holding a completed, unacknowledged result
/// delivers the same result and receipt after restart, and its receipt chain
/// continues unbroken.
#[test]
fn restart_holding_an_unacknowledged_result_loses_nothing() {
    use tessera_core::store::{MemoryStore, ResultStore};
    let mut cfg = config();
    cfg.persist_results = true;
    let signer = Ed25519Signer::from_seed(&SEED).unwrap();
    let agent = Agent::new(cfg.clone(), signer, ChainState::default()).unwrap();
    let mut h = Harness::new(agent, increment_run);
    let pk = handshake(&mut h);
    ready(&mut h);
    let j = job(8, 12_000);
    let frames = submit(&mut h, 21, &j);
    let first = collect(&frames, 21);
    assert!(h.host.log.iter().any(|l| l.contains("PersistResult")));
    assert!(h.host.stored.contains_key(&21));

    // The host's durable store, then a crash before the acknowledgement.
    let mut store: MemoryStore<4> = MemoryStore::new();
    for r in h.host.stored.values() {
        store.save(r).unwrap();
    }
    let kept_jobs = std::mem::take(&mut h.host.job_host.jobs);
    drop(h);

    let signer = Ed25519Signer::from_seed(&SEED).unwrap();
    let mut agent = Agent::new(cfg, signer, store.chain()).unwrap();
    store
        .for_each(&mut |r| agent.restore_result(r).unwrap())
        .unwrap();
    let mut h = Harness::new(agent, increment_run);
    h.host.job_host.jobs = kept_jobs;
    handshake(&mut h);
    let again = collect(&ready(&mut h), 21);
    assert_eq!(again.outputs, first.outputs);
    assert_eq!(again.receipt, first.receipt);
    h.send(&Message::ResultAck(JobRef { job: 21 }));
    h.pump();
    assert_eq!(h.agent.job_state(21), None);

    // The chain continues from the stored position.
    let mut verifier = ReceiptVerifier::new(pk, ChainState::default());
    verifier
        .verify_next(&first.receipt, Some(&[8; 32]))
        .unwrap();
    let frames = submit(&mut h, 22, &job(9, 500));
    let next = verifier
        .verify_next(&collect(&frames, 22).receipt, Some(&[9; 32]))
        .unwrap();
    assert_eq!(next.sequence, 2);
}

/// With `persist_results`, nothing about a result leaves the agent before the
/// host confirms it is stored.
#[test]
fn results_wait_for_the_host_to_persist_them() {
    let mut cfg = config();
    cfg.persist_results = true;
    let signer = Ed25519Signer::from_seed(&SEED).unwrap();
    let mut agent = Agent::new(cfg, signer, ChainState::default()).unwrap();
    assert_eq!(
        agent.confirm_persisted(tessera_core::Instant::ZERO, 5),
        Err(tessera_core::Error::Usage(
            tessera_core::UsageError::UnknownJob(5)
        ))
    );
    let mut h = Harness::new(agent, increment_run);
    handshake(&mut h);
    ready(&mut h);
    h.host.auto_run = false;
    let j = job(1, 100);
    submit(&mut h, 1, &j);
    // Run and upload by hand, without draining events (so no confirmation).
    h.host.to_run.push_back(1);
    let mut sent = Vec::new();
    assert!(h
        .host
        .work(h.now, &mut h.agent, &mut |b| sent.extend_from_slice(b)));
    let mut out = [0u8; 65536];
    while let Some(n) = h.agent.poll_transmit(h.now, &mut out) {
        sent.extend_from_slice(&out[..n]);
    }
    let mut split = tessera_core::testkit::FrameSplitter::default();
    split.push(&sent);
    let mut kinds_sent = Vec::new();
    while let Some(f) = split.next_frame() {
        kinds_sent.push(decode(&f).kind());
    }
    assert!(kinds_sent.contains(&MessageType::OutputChunk));
    assert!(!kinds_sent.contains(&MessageType::Receipt));
    h.agent.confirm_persisted(h.now, 1).unwrap();
    assert!(kinds(&h.pump()).contains(&MessageType::Receipt));
}

/// A signer that can be switched off, as a busy secure element would be.
struct FlakySigner {
    inner: Ed25519Signer,
    down: std::rc::Rc<std::cell::Cell<bool>>,
}

impl tessera_core::attest::Signer for FlakySigner {
    fn public_key(&self) -> [u8; 32] {
        self.inner.public_key()
    }
    fn sign(&mut self, m: &[u8]) -> Result<[u8; 64], tessera_core::attest::SignError> {
        if self.down.get() {
            Err(tessera_core::attest::SignError::Unavailable)
        } else {
            self.inner.sign(m)
        }
    }
}

/// When the signer is unavailable, a failure keeps its reason until it can
/// be signed, and the host's own calls get the signer error back to retry.
#[test]
fn signer_outage_keeps_the_failure_reason_and_retries() {
    use tessera_core::attest::Signer as _;
    let down = std::rc::Rc::new(std::cell::Cell::new(false));
    let signer = FlakySigner {
        inner: Ed25519Signer::from_seed(&SEED).unwrap(),
        down: down.clone(),
    };
    let pk = signer.public_key();
    let agent = Agent::new(config(), signer, ChainState::default()).unwrap();
    let mut h = Harness::new(agent, increment_run);
    h.agent.connect(h.now).unwrap();
    h.pump();
    h.send(&Message::Welcome(Welcome {
        version: 1,
        challenge: CHALLENGE,
        heartbeat_ms: 0,
    }));
    h.send(&Message::Ready);
    h.pump();
    h.host.auto_run = false;
    let j = job(1, 100);
    submit(&mut h, 1, &j);
    down.set(true);
    assert_eq!(
        h.agent
            .fail_job(h.now, 1, FailReason::Host, 77, Default::default()),
        Err(tessera_core::Error::Signer(
            tessera_core::attest::SignError::Unavailable
        ))
    );
    assert_eq!(h.agent.job_state(1), Some(JobState::Running));
    // A corrupt input on a second job while the signer is down.
    h.send(&Message::JobOffer(j.offer(2, 10_000, 60_000)));
    h.send(&Message::JobAssign(j.assign(2)));
    let mut frames = j.input_frames(2);
    let n = frames[0].len();
    frames[0][n - 1] ^= 1;
    for f in frames {
        h.send_raw(&f);
    }
    h.pump();
    assert_eq!(h.agent.job_state(2), Some(JobState::Receiving));
    down.set(false);
    h.send(&Message::Heartbeat(Default::default()));
    h.pump();
    assert!(h.advance(Duration::from_secs(2)));
    let frames = h.pump();
    let receipt = Receipt::verify(&collect(&frames, 2).receipt, &pk).unwrap();
    assert_eq!(
        receipt.status,
        ReceiptStatus::Failed(FailReason::InputIntegrity)
    );
    h.agent
        .fail_job(h.now, 1, FailReason::Host, 77, Default::default())
        .unwrap();
    let frames = h.pump();
    let receipt = Receipt::verify(&collect(&frames, 1).receipt, &pk).unwrap();
    assert_eq!(receipt.status, ReceiptStatus::Failed(FailReason::Host));
}

/// A session after a drain starts afresh: not draining, and with the
/// configured heartbeat interval rather than the last coordinator's.
#[test]
fn a_new_session_after_goodbye_starts_afresh() {
    let mut h = harness();
    h.agent.connect(h.now).unwrap();
    h.pump();
    h.send(&Message::Welcome(Welcome {
        version: 1,
        challenge: CHALLENGE,
        heartbeat_ms: 1000,
    }));
    h.send(&Message::Ready);
    h.pump();
    h.agent.drain(h.now).unwrap();
    h.pump();
    assert_eq!(h.agent.state(), ConnState::Closed);
    handshake(&mut h);
    let frames = ready(&mut h);
    assert!(!kinds(&frames).contains(&MessageType::Goodbye));
    assert!(!h.agent.is_draining());
    // The next heartbeat comes after the configured 5 s, not 1 s.
    let before = h.now;
    h.send(&Message::Heartbeat(Default::default()));
    h.pump();
    assert!(h.advance(Duration::from_secs(10)));
    assert_eq!((h.now - before).as_millis(), 5000);
}

/// After a reconnect, held results go out in receipt-chain order, even when
/// the older one must first upload its outputs again, so a strict verifier
/// needs no reordering.
#[test]
fn held_results_are_resent_in_chain_order() {
    let mut h = harness();
    let pk = handshake(&mut h);
    ready(&mut h);
    let j = job(1, 30_000);
    submit(&mut h, 1, &j); // completed: receipt 1
    h.host.auto_run = false;
    submit(&mut h, 2, &job(2, 100));
    h.agent
        .fail_job(h.now, 2, FailReason::Host, 5, Default::default())
        .unwrap(); // failed: receipt 2
    h.pump();
    h.agent.disconnected(h.now);
    handshake(&mut h);
    let frames = ready(&mut h);
    let mut verifier = ReceiptVerifier::new(pk, ChainState::default());
    let mut jobs = Vec::new();
    for f in &frames {
        if let Message::Receipt(r) = decode(f) {
            verifier.verify_next(r.bytes, None).unwrap();
            jobs.push(r.job);
        }
    }
    assert_eq!(jobs, vec![1, 2]);
}

#[test]
fn buffers_name_their_bindings_and_streams_follow_buffer_order() {
    let mut h = harness();
    let pk = handshake(&mut h);
    ready(&mut h);
    let refused = |h: &mut Harness, id: u64, bindings: Vec<u32>| {
        let mut j = job(3, 100);
        j.bindings = bindings;
        h.send(&Message::JobOffer(j.offer(id, 10_000, 60_000)));
        h.send(&Message::JobAssign(j.assign(id)));
        let frames = h.pump();
        let errors: Vec<_> = frames
            .iter()
            .filter_map(|f| match decode(f) {
                Message::Error(e) => Some((e.code, e.job)),
                _ => None,
            })
            .collect();
        assert_eq!(
            errors,
            vec![(tessera_core::ErrorCode::BadAssignment as u16, id)]
        );
        assert_eq!(h.agent.job_state(id), None, "a refused job is forgotten");
    };
    // A binding at 32 or above, or two buffers at one binding.
    refused(&mut h, 1, vec![0, 32]);
    refused(&mut h, 2, vec![u32::MAX, 1]);
    refused(&mut h, 3, vec![4, 4]);

    // Bindings 7 (the input) and 2 (the output): a gap, in any order. The
    // input is still stream 1 and the output stream 1: buffers are numbered
    // by their place in the assignment, not by binding.
    let mut j = job(4, 20_000);
    j.bindings = vec![7, 2];
    let frames = submit(&mut h, 4, &j);
    let streams: Vec<u8> = frames
        .iter()
        .filter_map(|f| match decode(f) {
            Message::OutputChunk(c) => Some(c.stream),
            _ => None,
        })
        .collect();
    assert_eq!(streams, vec![1, 1, 1]);
    let out = collect(&frames, 4);
    let expected: Vec<u8> = j.buffers[0].0.iter().map(|b| b.wrapping_add(1)).collect();
    assert_eq!(out.outputs, vec![expected]);
    let receipt = Receipt::verify(&out.receipt, &pk).unwrap();
    assert_eq!(receipt.status, ReceiptStatus::Completed);
    // The receipt binds the bindings: the same job at 0 and 1 hashes otherwise.
    assert_eq!(receipt.kernel_hash, j.assign(4).kernel_hash());
    j.bindings = Vec::new();
    assert_ne!(receipt.kernel_hash, j.assign(4).kernel_hash());
}

#[test]
fn an_unavailable_device_declines_offers_and_heartbeats_no_capacity() {
    let mut h = harness();
    handshake(&mut h);
    ready(&mut h);
    let j = job(2, 100);
    let answer = |h: &mut Harness, offer| {
        h.send(&Message::JobOffer(offer));
        match decode(&h.pump()[0]) {
            Message::OfferDecline(d) => Err(d.reason),
            Message::OfferAccept(a) => Ok(a.price),
            other => panic!("expected an answer, got {other:?}"),
        }
    };
    // Fill the capacity (two jobs), then the device becomes unavailable.
    for id in [1, 2] {
        assert!(answer(&mut h, j.offer(id, 10_000, 60_000)).is_ok());
    }
    assert!(h.agent.device_available());
    h.agent.set_device_available(h.now, false);
    assert!(!h.agent.device_available());
    // A heartbeat goes out at once, with capacity 0.
    let frames = h.pump();
    let beats: Vec<_> = frames
        .iter()
        .filter_map(|f| match decode(f) {
            Message::Heartbeat(hb) => Some((hb.active_jobs, hb.capacity)),
            _ => None,
        })
        .collect();
    assert_eq!(beats, vec![(2, 0)]);
    // Unavailable comes after DuplicateJob, before AtCapacity.
    assert_eq!(
        answer(&mut h, j.offer(1, 10_000, 60_000)),
        Err(DeclineReason::DuplicateJob)
    );
    assert_eq!(
        answer(&mut h, j.offer(3, 10_000, 60_000)),
        Err(DeclineReason::Unavailable)
    );
    h.send(&Message::Cancel(Cancel { job: 1, reason: 0 }));
    h.send(&Message::Cancel(Cancel { job: 2, reason: 0 }));
    h.pump();
    assert_eq!(
        answer(&mut h, j.offer(4, 10_000, 60_000)),
        Err(DeclineReason::Unavailable),
        "with room, still unavailable"
    );
    // Periodic heartbeats say 0 too.
    assert!(h.advance(Duration::from_secs(10)));
    let beats: Vec<_> = h
        .pump()
        .iter()
        .filter_map(|f| match decode(f) {
            Message::Heartbeat(hb) => Some(hb.capacity),
            _ => None,
        })
        .collect();
    assert_eq!(beats, vec![0]);

    // Available again: the capacity comes back and offers are taken.
    h.agent.set_device_available(h.now, true);
    let beats: Vec<_> = h
        .pump()
        .iter()
        .filter_map(|f| match decode(f) {
            Message::Heartbeat(hb) => Some(hb.capacity),
            _ => None,
        })
        .collect();
    assert_eq!(beats, vec![2]);
    assert!(answer(&mut h, j.offer(5, 10_000, 60_000)).is_ok());

    // While draining, Draining comes first.
    h.agent.set_device_available(h.now, false);
    h.agent.drain(h.now).unwrap();
    h.pump();
    assert_eq!(
        answer(&mut h, j.offer(6, 10_000, 60_000)),
        Err(DeclineReason::Draining)
    );
}

/// Events are never dropped, however long the host leaves them unread. A
/// coordinator fills the queue with `Error` frames (one `PeerError` each)
/// while four jobs run; then every deadline passes and the coordinator goes
/// silent. The timers wait until the host has read events, and then every
/// job's `CancelJob(Deadline)` and `PersistResult` arrive, and the
/// disconnect. Before, only the queue's sizing stood between the timers and
/// a full queue, which a release build would have dropped events into (a
/// lost `PersistResult` blocks every later outcome); now each call checks
/// its room first, and the timers ran here only after the host read.
#[test]
fn events_wait_for_room_instead_of_being_dropped() {
    let signer = Ed25519Signer::from_seed(&SEED).unwrap();
    let mut c = config();
    c.policy.max_concurrent = 4;
    c.persist_results = true;
    let agent = Agent::new(c, signer, ChainState::default()).unwrap();
    let mut h = Harness::new(agent, increment_run);
    handshake(&mut h);
    ready(&mut h);
    h.host.auto_run = false;
    let j = job(2, 5000);
    for id in 1..=4 {
        submit(&mut h, id, &j);
        assert_eq!(h.agent.job_state(id), Some(JobState::Running));
    }
    h.host.log.clear();
    // The host stops reading events; the coordinator sends more errors
    // than the event queue holds.
    let mut flood = Vec::new();
    for _ in 0..tessera_core::limits::MAX_EVENTS {
        flood.extend(tessera_core::testkit::encode(&Message::Error(
            tessera_core::wire::ErrorMsg { code: 9, job: 0 },
        )));
    }
    let now = h.now;
    let taken = h.agent.handle_input(now, &flood).unwrap();
    assert!(taken < flood.len(), "input stops while events wait");
    // Every deadline passes; the coordinator is silent.
    let later = now + Duration::from_secs(3600);
    h.agent.handle_timeout(later);
    assert_eq!(h.agent.job_state(1), Some(JobState::Running), "timers wait");
    // The host reads its events; the timers run on the next call.
    h.host.drain_events(&mut h.agent);
    assert_eq!(h.agent.poll_timeout().map(|t| t <= later), Some(true));
    h.agent.handle_timeout(later);
    h.host.drain_events(&mut h.agent);
    let log = h.host.log.join("\n");
    for id in 1..=4 {
        assert!(
            log.contains(&format!("CancelJob {{ job: {id}, reason: Deadline }}")),
            "job {id}: {log}"
        );
        assert!(
            log.contains(&format!("PersistResult {{ job: {id} }}")),
            "job {id}: {log}"
        );
        assert_eq!(h.agent.job_state(id), Some(JobState::AwaitingAck));
    }
    assert!(log.contains("Disconnect { reason: PeerSilent }"), "{log}");
}

/// A receipt names the evidence the coordinator accepted in the session that
/// offered its job, not evidence sent later that a coordinator refused.
/// Before, a job finished after a refused session named the refused
/// evidence.
#[test]
fn a_receipt_names_accepted_evidence_not_refused_evidence() {
    let mut h = harness();
    // Session 1: accepted; its evidence is the one receipts must name.
    h.agent.connect(h.now).unwrap();
    h.pump();
    h.send(&Message::Welcome(Welcome {
        version: 1,
        challenge: CHALLENGE,
        heartbeat_ms: 0,
    }));
    let frames = h.pump();
    let Message::Evidence(blob) = decode(&frames[0]) else {
        panic!("expected evidence")
    };
    let accepted = Evidence::hash(blob.bytes);
    let pk = Evidence::verify(blob.bytes, &CHALLENGE).unwrap().public_key;
    h.send(&Message::Ready);
    ready(&mut h);
    h.host.auto_run = false;
    let j = job(3, 5000);
    submit(&mut h, 1, &j);
    h.agent.disconnected(h.now);
    h.pump();
    // Session 2: its evidence is refused.
    h.agent.connect(h.now).unwrap();
    h.pump();
    h.send(&Message::Welcome(Welcome {
        version: 1,
        challenge: [0x99; 32],
        heartbeat_ms: 0,
    }));
    let frames = h.pump();
    let Message::Evidence(blob) = decode(&frames[0]) else {
        panic!("expected evidence")
    };
    let refused = Evidence::hash(blob.bytes);
    assert_ne!(refused, accepted);
    h.send(&Message::Error(tessera_core::wire::ErrorMsg {
        code: 1,
        job: 0,
    }));
    h.pump();
    // The job ends while no session is up; its receipt is signed now.
    h.host.to_run.push_back(1);
    h.pump();
    // Session 3 delivers it.
    handshake(&mut h);
    let frames = ready(&mut h);
    let out = collect(&frames, 1);
    let receipt = Receipt::verify(&out.receipt, &pk).unwrap();
    assert_eq!(receipt.evidence_hash, accepted);
}

/// A result handed back during a session (a host with more stored results
/// than the agent holds, as acknowledgements make room) goes out at once,
/// outputs and receipt, without waiting for the next session.
#[test]
fn a_result_restored_during_a_session_goes_out_at_once() {
    let mut cfg = config();
    cfg.persist_results = true;
    let signer = Ed25519Signer::from_seed(&SEED).unwrap();
    let agent = Agent::new(cfg.clone(), signer, ChainState::default()).unwrap();
    let mut h = Harness::new(agent, increment_run);
    let pk = handshake(&mut h);
    ready(&mut h);
    let first = collect(&submit(&mut h, 31, &job(3, 9000)), 31);
    let record = h.host.stored[&31].clone();
    let kept_jobs = std::mem::take(&mut h.host.job_host.jobs);
    drop(h);

    let signer = Ed25519Signer::from_seed(&SEED).unwrap();
    let agent = Agent::new(cfg, signer, record.chain_after()).unwrap();
    let mut h = Harness::new(agent, increment_run);
    h.host.job_host.jobs = kept_jobs;
    handshake(&mut h);
    assert!(collect(&ready(&mut h), 31).receipt.is_empty());
    h.agent.restore_result(&record).unwrap();
    let again = collect(&h.pump(), 31);
    assert_eq!(again.outputs, first.outputs);
    assert_eq!(again.receipt, first.receipt);
    let mut verifier = ReceiptVerifier::new(pk, ChainState::default());
    verifier
        .verify_next(&again.receipt, Some(&[3; 32]))
        .unwrap();
    h.send(&Message::ResultAck(JobRef { job: 31 }));
    h.pump();
    assert_eq!(h.agent.job_state(31), None);
}

/// `Hello` and the evidence state the provider's chain position, the
/// evidence signed. Before, a coordinator without history had nothing but
/// the first receipt it saw to anchor the chain on.
#[test]
fn hello_and_evidence_state_the_chain_position() {
    let mut h = harness();
    handshake(&mut h);
    ready(&mut h);
    let j = job(2, 5000);
    let frames = submit(&mut h, 1, &j);
    let receipt = collect(&frames, 1).receipt;
    h.send(&Message::ResultAck(JobRef { job: 1 }));
    h.pump();
    h.agent.disconnected(h.now);
    h.pump();
    h.agent.connect(h.now).unwrap();
    let frames = h.pump();
    let Message::Hello(hello) = decode(&frames[0]) else {
        panic!("expected Hello")
    };
    assert_eq!(hello.next_sequence, 2);
    assert_eq!(hello.prev_hash, Receipt::hash(&receipt));
    h.send(&Message::Welcome(Welcome {
        version: 1,
        challenge: CHALLENGE,
        heartbeat_ms: 0,
    }));
    let frames = h.pump();
    let Message::Evidence(blob) = decode(&frames[0]) else {
        panic!("expected evidence")
    };
    let evidence = Evidence::verify(blob.bytes, &CHALLENGE).unwrap();
    assert_eq!(evidence.chain, h.agent.chain());
    assert_eq!(evidence.chain.next_sequence, 2);
}

/// A coordinator refuses a result whose receipt verified: the provider
/// forgets it, tells the host, does not offer it again, and its next
/// receipt links to the refused one. Before, `ResultRefuse` did not exist:
/// a result the coordinator would not take stayed held (and counted
/// against capacity) forever.
#[test]
fn a_refused_result_is_released_and_the_chain_goes_on() {
    let mut h = harness();
    let pk = handshake(&mut h);
    ready(&mut h);
    let j = job(2, 5000);
    let frames = submit(&mut h, 1, &j);
    let first = collect(&frames, 1).receipt;
    h.send(&Message::ResultRefuse(tessera_core::wire::ResultRefuse {
        job: 1,
        reason: 3,
    }));
    assert!(h.pump().is_empty());
    assert_eq!(h.agent.job_state(1), None);
    assert!(h
        .host
        .log
        .contains(&"ResultRefused { job: 1, reason: 3 }".to_string()));
    assert_eq!(h.agent.stats().results_refused, 1);
    // Not offered again on the next session.
    h.agent.disconnected(h.now);
    h.pump();
    handshake(&mut h);
    let frames = ready(&mut h);
    assert!(!kinds(&frames).contains(&MessageType::Receipt));
    // The next receipt links to the refused one.
    let frames = submit(&mut h, 2, &j);
    let second = collect(&frames, 2).receipt;
    let mut verifier = ReceiptVerifier::new(pk, ChainState::default());
    verifier.verify_next(&first, None).unwrap();
    verifier.verify_next(&second, None).unwrap();
    // Refusing a job it does not hold, or one not yet sent, is an error.
    h.send(&Message::ResultRefuse(tessera_core::wire::ResultRefuse {
        job: 9,
        reason: 0,
    }));
    assert_eq!(kinds(&h.pump()), vec![MessageType::Error]);
}

/// A configuration the agent refuses says which field and why. Before, it
/// was one `InvalidConfig` for any of them.
#[test]
fn an_invalid_configuration_names_its_field() {
    let signer = || Ed25519Signer::from_seed(&SEED).unwrap();
    let mut c = config();
    c.policy.max_concurrent = 0;
    let e = Agent::new(c, signer(), ChainState::default()).err();
    assert_eq!(
        e,
        Some(tessera_core::Error::Config(tessera_core::ConfigError {
            field: "policy.max_concurrent",
            rule: "must be 1 to 32 (limits::MAX_JOBS)",
        }))
    );
    assert_eq!(
        e.map(|e| e.to_string()).as_deref(),
        Some("configuration: policy.max_concurrent must be 1 to 32 (limits::MAX_JOBS)")
    );
    // A hosted agent holds 32 jobs; one more is refused.
    let mut c = config();
    c.policy.max_concurrent = 32;
    assert!(Agent::new(c.clone(), signer(), ChainState::default()).is_ok());
    c.policy.max_concurrent = 33;
    assert!(Agent::new(c, signer(), ChainState::default()).is_err());
    let mut c = config();
    c.policy.peer_timeout = Duration::from_millis(0);
    assert!(matches!(
        Agent::new(c, signer(), ChainState::default()),
        Err(tessera_core::Error::Config(tessera_core::ConfigError {
            field: "policy.peer_timeout",
            ..
        }))
    ));
}

/// An agent made in its place (`new_in`, `new_boxed`) follows the rules of
/// `Agent::new`; a refused configuration leaves the slot as it was.
#[test]
fn an_agent_made_in_place_checks_its_configuration() {
    use core::mem::MaybeUninit;
    let signer = || Ed25519Signer::from_seed(&SEED).unwrap();
    let chain = ChainState {
        next_sequence: 7,
        ..ChainState::default()
    };
    let mut slot = MaybeUninit::uninit();
    let mut bad = config();
    bad.policy.max_concurrent = 0;
    assert!(matches!(
        Agent::new_in(&mut slot, bad.clone(), signer(), chain),
        Err(tessera_core::Error::Config(tessera_core::ConfigError {
            field: "policy.max_concurrent",
            ..
        }))
    ));
    assert!(Agent::new_boxed(bad.clone(), signer(), chain).is_err());
    assert_eq!(
        bad.check(),
        Agent::new(bad, signer(), chain).map(|_| ()),
        "Config::check refuses what Agent::new refuses"
    );
    assert_eq!(config().check(), Ok(()));
    let agent = Agent::new_in(&mut slot, config(), signer(), chain).unwrap();
    assert_eq!(agent.state(), ConnState::Disconnected);
    assert_eq!(agent.chain(), chain);
    agent.connect(tessera_core::Instant::ZERO).unwrap();
    let mut out = [0u8; 4096];
    assert!(agent
        .poll_transmit(tessera_core::Instant::ZERO, &mut out)
        .is_some());
    // SAFETY: `new_in` succeeded, so the slot holds an agent, dropped once.
    unsafe { slot.assume_init_drop() };
    let mut boxed = Agent::new_boxed(config(), signer(), chain).unwrap();
    assert_eq!(boxed.chain(), chain);
    boxed.connect(tessera_core::Instant::ZERO).unwrap();
    assert!(boxed
        .poll_transmit(tessera_core::Instant::ZERO, &mut out)
        .is_some());
}

/// A refused kernel is counted by the rule it broke, once its failure is
/// reported (what the operator's `tessera_kernel_rejections_total` shows).
#[test]
fn kernel_rejections_are_counted_by_rule() {
    use tessera_core::host::JobFailure;
    use tessera_core::reasons::KernelRule;
    use tessera_core::testkit::Host;
    let rule = KernelRule::ALL[0];
    let detail = (7 << 16) | rule as u32;
    let signer = Ed25519Signer::from_seed(&SEED).unwrap();
    let agent = Agent::new(config(), signer, ChainState::default()).unwrap();
    let host = Host::with_runner(Box::new(move |_, _, _| {
        Err(JobFailure {
            reason: FailReason::KernelRejected,
            detail,
            usage: Default::default(),
        })
    }));
    let mut h = Harness::with_host(agent, host);
    handshake(&mut h);
    ready(&mut h);
    for id in [1, 2] {
        let frames = submit(&mut h, id, &job(1, 100));
        assert!(kinds(&frames).contains(&MessageType::Failed));
        h.send(&Message::ResultAck(JobRef { job: id }));
        h.pump();
    }
    assert_eq!(
        h.host.job_host.rejections.get(&(rule as u16)),
        Some(&2),
        "{:?}",
        h.host.job_host.rejections
    );
    assert_eq!(h.agent.stats().jobs_failed, 2);
}

/// A signer beside which a vendor's hardware attests: it makes a report for
/// the nonce the agent gives it and keeps the bytes.
struct AttestingSigner {
    inner: Ed25519Signer,
    report: std::rc::Rc<std::cell::RefCell<Vec<u8>>>,
}

impl tessera_core::attest::Signer for AttestingSigner {
    fn public_key(&self) -> [u8; 32] {
        self.inner.public_key()
    }
    fn sign(&mut self, m: &[u8]) -> Result<[u8; 64], tessera_core::attest::SignError> {
        self.inner.sign(m)
    }
    fn hardware_report(&mut self, nonce: &[u8; 32]) -> tessera_core::attest::HardwareReport {
        let mut report = b"quote over ".to_vec();
        report.extend_from_slice(nonce);
        let hash = tessera_core::attest::sha256(&report);
        *self.report.borrow_mut() = report;
        tessera_core::attest::HardwareReport {
            kind: tessera_core::attest::HardwareReportKind::TPM2_QUOTE,
            hash,
        }
    }
}

/// The evidence states the session key the host set before connecting and
/// names the signer's hardware report, made for the nonce that binds the
/// session's challenge, the device key and that session key; the next
/// session states the next key and a new report.
#[test]
fn evidence_states_the_session_key_and_a_hardware_report_bound_to_the_challenge() {
    use tessera_core::attest::{HardwareReportError, HardwareReportKind, HardwareReportVerifier};
    struct Vendor;
    impl HardwareReportVerifier for Vendor {
        fn verify(
            &self,
            kind: HardwareReportKind,
            report: &[u8],
            nonce: &[u8; 32],
        ) -> Result<(), HardwareReportError> {
            if kind != HardwareReportKind::TPM2_QUOTE {
                return Err(HardwareReportError::UnsupportedKind);
            }
            if report.strip_prefix(b"quote over ") != Some(nonce.as_slice()) {
                return Err(HardwareReportError::Rejected);
            }
            Ok(())
        }
    }
    let report = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
    let signer = AttestingSigner {
        inner: Ed25519Signer::from_seed(&SEED).unwrap(),
        report: report.clone(),
    };
    let agent = Agent::new(config(), signer, ChainState::default()).unwrap();
    let mut h = Harness::new(agent, increment_run);
    let mut seen = Vec::new();
    for (key, challenge) in [([0xE1; 32], CHALLENGE), ([0xE2; 32], [0xC5; 32])] {
        h.agent.set_session_key(key);
        h.agent.connect(h.now).unwrap();
        h.pump();
        h.send(&Message::Welcome(Welcome {
            version: 1,
            challenge,
            heartbeat_ms: 0,
        }));
        let frames = h.pump();
        let Message::Evidence(blob) = decode(&frames[0]) else {
            panic!("expected evidence")
        };
        let e = Evidence::verify(blob.bytes, &challenge).expect("evidence verifies");
        assert_eq!(e.enc_key, key);
        assert_eq!(e.hardware_report.kind, HardwareReportKind::TPM2_QUOTE);
        let bytes = report.borrow().clone();
        assert_eq!(e.check_hardware_report(&bytes, &Vendor), Ok(()));
        seen.push((e, bytes));
        h.agent.disconnected(h.now);
        h.pump();
    }
    // Each session's report is its own: the first session's report does
    // not pass for the second session's evidence.
    assert_eq!(
        seen[1].0.check_hardware_report(&seen[0].1, &Vendor),
        Err(HardwareReportError::HashMismatch)
    );
    assert_ne!(
        seen[0].0.hardware_report_nonce(),
        seen[1].0.hardware_report_nonce()
    );
}
