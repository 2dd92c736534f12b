//! The engine driven by a real agent through the test kit, in memory.

use super::*;
use crate::conn::{queued_frames, test_outbox, Reply, TestQueue};
use crate::protocol::{BufferInit, Submit};
use crate::submission::{prepare_owned, validate, Limits, SubmitView};
use std::sync::mpsc::{self, Sender};
use tessera_core::attest::{Ed25519Signer, Signer};
use tessera_core::testkit::{increment_run, Harness};
use tessera_core::wire::{MessageType, Requirements};
use tessera_core::{Agent, Policy};

fn engine() -> Engine {
    engine_batching(Batching::default())
}

fn engine_batching(batching: Batching) -> Engine {
    Engine::new(
        Settings {
            heartbeat_ms: 1000,
            offer_timeout: Duration::from_secs(5),
            deadline_grace: Duration::from_secs(1),
            handshake_timeout: Duration::from_secs(5),
            provider_silence: Duration::from_secs(20),
            max_known_keys: 1024,
            key_retention: Duration::from_secs(3600),
            batching,
        },
        None,
    )
}

const LIMITS: Limits = Limits {
    max_readback_bytes: 1 << 30,
};

/// Submits an owned job as a requester's body would arrive.
fn submit(e: &mut Engine, s: Submit, reply: Sender<Answer>) {
    e.submit(
        prepare_owned(&s, &LIMITS).expect("a valid job"),
        Reply::channel(reply),
        Instant::now(),
    );
}

fn check(s: &Submit) -> Result<(), String> {
    validate(&SubmitView::of(s), &LIMITS).map(|_| ())
}

fn response(r: Result<Answer, mpsc::TryRecvError>) -> Result<Response, mpsc::TryRecvError> {
    r.map(|a| a.response)
}

fn open(e: &mut Engine, outbox: crate::conn::Outbox, peer: &str) -> SessionId {
    e.open_session(outbox, peer.into(), Instant::now(), Instant::now())
}

fn harness() -> Harness {
    harness_at(ChainState::default())
}

/// A provider whose receipt chain is at `chain`.
fn harness_at(chain: ChainState) -> Harness {
    let signer = Ed25519Signer::from_seed(&[42; 32]).expect("seed");
    let capabilities = DeviceCapabilities {
        device_local_bytes: 1 << 30,
        ..DeviceCapabilities::default()
    };
    let config = tessera_core::Config {
        agent_version: [0, 1, 0],
        boot_id: [1; 16],
        capabilities,
        policy: Policy::default(),
        persist_results: false,
    };
    let agent = Agent::new(config, signer, chain).expect("agent");
    Harness::new(agent, increment_run)
}

fn job(nonce: u8) -> Submit {
    Submit {
        kernel: vec![1, 2, 3, 4],
        entry_point: "main".into(),
        specialization: Vec::new(),
        push_constants: Vec::new(),
        grid: [1, 1, 1],
        buffers: vec![
            BufferInit {
                binding: 0,
                init: vec![nonce; 10_000],
                len: 10_000,
                readback: false,
            },
            BufferInit {
                binding: 1,
                init: Vec::new(),
                len: 10_000,
                readback: true,
            },
        ],
        requirements: Requirements::default(),
        est_gpu_ms: 1,
        max_price: 1_000,
        deadline_ms: 60_000,
        nonce: [nonce; 32],
        sealed: None,
    }
}

/// Moves frames both ways until quiet; `hold` keeps back agent frames.
fn shuttle(
    e: &mut Engine,
    sid: SessionId,
    h: &mut Harness,
    rx: &TestQueue,
    hold: &mut dyn FnMut(&[u8]) -> bool,
) {
    for _ in 0..1000 {
        let mut moved = false;
        for f in queued_frames(rx) {
            h.send_raw(&f);
            moved = true;
        }
        for f in h.pump() {
            moved = true;
            if !hold(&f) {
                let msg = Message::decode(&f).expect("agent frames decode");
                e.on_message(sid, msg, Instant::now());
            }
        }
        if !moved {
            return;
        }
    }
    panic!("no quiet after 1000 rounds");
}

#[test]
fn a_receipt_ahead_of_its_predecessor_waits_for_it() {
    let mut e = engine();
    let (outbox, rx) = test_outbox();
    let sid = open(&mut e, outbox, "test");
    let mut h = harness();
    h.agent.connect(h.now).expect("connect");
    shuttle(&mut e, sid, &mut h, &rx, &mut |_| false);
    assert_eq!(h.agent.state(), tessera_core::ConnState::Ready);

    let (tx_a, rx_a) = mpsc::channel();
    let (tx_b, rx_b) = mpsc::channel();
    submit(&mut e, job(1), tx_a);
    submit(&mut e, job(2), tx_b);
    let mut held = None;
    shuttle(&mut e, sid, &mut h, &rx, &mut |f| {
        let first_receipt = f[3] == MessageType::Receipt as u8 && held.is_none();
        if first_receipt {
            held = Some(f.to_vec());
        }
        first_receipt
    });
    let early = (
        response(rx_a.try_recv()),
        response(rx_b.try_recv()),
        h.host.log.clone(),
    );
    assert!(early.0.is_err() && early.1.is_err(), "{early:?}");
    assert_eq!(e.stats().receipts_verified, 0, "receipt #2 is parked");

    let held = held.expect("a receipt was held back");
    let msg = Message::decode(&held).expect("decodes");
    e.on_message(sid, msg, Instant::now());
    let sequences: Vec<u64> = [response(rx_a.try_recv()), response(rx_b.try_recv())]
        .into_iter()
        .map(|r| match r {
            Ok(Response::Result(r)) => {
                Receipt::verify(&r.receipt, &r.provider_public_key)
                    .expect("verifies")
                    .sequence
            }
            other => panic!("expected a result, got {other:?}"),
        })
        .collect();
    assert_eq!(sequences, vec![1, 2]);
    assert_eq!(e.stats().receipts_verified, 2);
    shuttle(&mut e, sid, &mut h, &rx, &mut |_| false);
    assert_eq!(h.agent.stats().jobs_completed, 2, "both acknowledged");
}

#[test]
fn submissions_breaking_a_limit_are_refused_before_any_offer() {
    let mut bad = job(1);
    bad.kernel.push(0);
    assert!(check(&bad).is_err());
    let mut bad = job(1);
    bad.buffers[0].len = 1;
    assert!(check(&bad).is_err());
    let mut bad = job(1);
    bad.grid = [1, 0, 1];
    assert!(check(&bad).is_err());
    let mut bad = job(1);
    bad.buffers[1].binding = 32;
    assert!(check(&bad).unwrap_err().contains("binding 32"));
    let mut bad = job(1);
    bad.buffers[1].binding = 0;
    assert!(check(&bad).unwrap_err().contains("both at binding 0"));
    assert!(check(&job(1)).is_ok());
}

#[test]
fn a_job_whose_bindings_have_a_gap_is_assigned_and_verified() {
    let mut e = engine();
    let (outbox, rx) = test_outbox();
    let sid = open(&mut e, outbox, "test");
    let mut h = harness();
    h.agent.connect(h.now).expect("connect");
    shuttle(&mut e, sid, &mut h, &rx, &mut |_| false);

    let mut gap = job(3);
    gap.buffers[0].binding = 5;
    gap.buffers[1].binding = 0;
    assert!(check(&gap).is_ok());
    let (tx, reply) = mpsc::channel();
    submit(&mut e, gap.clone(), tx);
    shuttle(&mut e, sid, &mut h, &rx, &mut |_| false);
    let Ok(Response::Result(r)) = response(reply.try_recv()) else {
        panic!("expected a verified result")
    };
    let spec = h.agent.job_spec(r.job).cloned();
    assert!(spec.is_none(), "acknowledged and forgotten");
    let receipt = Receipt::verify(&r.receipt, &r.provider_public_key).expect("verifies");
    let assigned = prepare_owned(&gap, &LIMITS).expect("valid").assign;
    let bindings: Vec<u32> = assigned.buffers.iter().map(|b| b.binding).collect();
    assert_eq!(bindings, vec![5, 0]);
    assert_eq!(receipt.kernel_hash, assigned.kernel_hash());
    crate::requester::verify_result(&gap, &r).expect("the requester's check agrees");
}

#[test]
fn the_requesters_check_names_what_does_not_hold() {
    use crate::requester::{verify_result, ResultCheckError};
    use tessera_core::job::ReceiptCheckError;
    let mut e = engine();
    let (outbox, rx) = test_outbox();
    let sid = open(&mut e, outbox, "test");
    let mut h = harness();
    h.agent.connect(h.now).expect("connect");
    shuttle(&mut e, sid, &mut h, &rx, &mut |_| false);
    let submitted = job(9);
    let (tx, reply) = mpsc::channel();
    submit(&mut e, submitted.clone(), tx);
    shuttle(&mut e, sid, &mut h, &rx, &mut |_| false);
    let Ok(Response::Result(r)) = response(reply.try_recv()) else {
        panic!("expected a verified result")
    };
    let check = verify_result(&submitted, &r).expect("verifies");
    assert_eq!(check.evidence.challenge, r.evidence_challenge);

    // The challenge is the coordinator's word: one that is not the
    // evidence's is reported as such, not as a bad signature.
    let mut other = r.clone();
    other.evidence_challenge[0] ^= 1;
    assert_eq!(
        verify_result(&submitted, &other).map(|_| ()),
        Err(ResultCheckError::ChallengeMismatch)
    );
    // Evidence of another key than the one that signed the receipt.
    let mut stranger = Ed25519Signer::from_seed(&[43; 32]).expect("seed");
    let mut doc = Evidence::open(&r.evidence).expect("opens");
    doc.public_key = stranger.public_key();
    let mut signed = [0u8; tessera_core::attest::EVIDENCE_LEN];
    let n = doc.sign(&mut stranger, &mut signed).expect("signs");
    let mut other = r.clone();
    other.evidence = signed[..n].to_vec();
    assert_eq!(
        verify_result(&submitted, &other).map(|_| ()),
        Err(ResultCheckError::EvidenceKeyMismatch)
    );
    // The usage and price delivered must be the receipt's.
    let mut other = r.clone();
    other.price += 1;
    assert!(matches!(
        verify_result(&submitted, &other),
        Err(ResultCheckError::Check(
            ReceiptCheckError::PriceDiffers { .. }
        ))
    ));
    // Outputs short of their buffer.
    let mut other = r.clone();
    other.outputs[0].pop();
    assert_eq!(
        verify_result(&submitted, &other).map(|_| ()),
        Err(ResultCheckError::Outputs)
    );
    // Another nonce: not this requester's receipt.
    let mut theirs = submitted.clone();
    theirs.nonce[0] ^= 1;
    assert_eq!(
        verify_result(&theirs, &r).map(|_| ()),
        Err(ResultCheckError::Check(ReceiptCheckError::RequesterNonce))
    );
}

/// A harness whose agent quotes 100 per job and whose host fails every job
/// with `failure`.
fn failing_harness(failure: tessera_core::host::JobFailure) -> Harness {
    let signer = Ed25519Signer::from_seed(&[42; 32]).expect("seed");
    let config = tessera_core::Config {
        agent_version: [0, 1, 0],
        boot_id: [1; 16],
        capabilities: DeviceCapabilities {
            device_local_bytes: 1 << 30,
            ..DeviceCapabilities::default()
        },
        policy: Policy {
            price: tessera_core::LinearPrice {
                base: 100,
                ..Default::default()
            },
            ..Policy::default()
        },
        persist_results: false,
    };
    let agent = Agent::new(config, signer, ChainState::default()).expect("agent");
    let host = tessera_core::testkit::Host::with_runner(Box::new(move |_, _, _| Err(failure)));
    Harness::with_host(agent, host)
}

/// Runs `submit` against `h`, passing every agent frame through `rewrite`;
/// returns the requester's answer.
fn run_rewritten(
    h: Harness,
    job: Submit,
    rewrite: &mut dyn FnMut(Vec<u8>) -> Vec<u8>,
) -> (Engine, Response) {
    let (e, answer, _) = run_rewritten_keeping(h, job, rewrite);
    (e, answer)
}

/// As `run_rewritten`, also giving back the provider's harness.
fn run_rewritten_keeping(
    mut h: Harness,
    job: Submit,
    rewrite: &mut dyn FnMut(Vec<u8>) -> Vec<u8>,
) -> (Engine, Response, Harness) {
    let mut e = engine();
    let (outbox, rx) = test_outbox();
    let sid = open(&mut e, outbox, "test");
    h.agent.connect(h.now).expect("connect");
    let (tx, reply) = mpsc::channel();
    let mut submitted = false;
    for _ in 0..1000 {
        if !submitted && h.agent.state() == tessera_core::ConnState::Ready {
            self::submit(&mut e, job.clone(), tx.clone());
            submitted = true;
        }
        let mut moved = false;
        for f in queued_frames(&rx) {
            h.send_raw(&f);
            moved = true;
        }
        for f in h.pump() {
            moved = true;
            let f = rewrite(f);
            let msg = Message::decode(&f).expect("frames decode");
            e.on_message(sid, msg, Instant::now());
        }
        if !moved && submitted {
            break;
        }
    }
    let answer = response(reply.try_recv()).expect("the requester is answered");
    (e, answer, h)
}

#[test]
fn a_kernel_that_ran_out_its_time_is_reported_with_its_quote() {
    let timeout = tessera_core::host::JobFailure {
        reason: FailReason::Timeout,
        detail: 1,
        usage: tessera_core::wire::Usage {
            gpu_time_us: 59_000_000,
            ..Default::default()
        },
    };
    let (e, answer) = run_rewritten(failing_harness(timeout), job(4), &mut |f| f);
    let Response::Failed(f) = answer else {
        panic!("expected a failure, got {answer:?}")
    };
    assert_eq!(f.code, FailureCode::KernelTimeout, "{}", f.reason);
    assert_eq!(f.price, 100, "charged the accepted quote");
    assert!(f.reason.contains("ran out its time"), "{}", f.reason);
    let signed = f.receipt.expect("the signed receipt");
    let pk = Ed25519Signer::from_seed(&[42; 32])
        .expect("seed")
        .public_key();
    let r = Receipt::verify(&signed, &pk).expect("verifies");
    assert_eq!(r.status, ReceiptStatus::Failed(FailReason::Timeout));
    assert_eq!(r.price, 100);
    assert_eq!(e.stats().receipts_rejected, 0);
}

/// Re-signs the provider's receipt and usage report after `edit` changed
/// their usage and price alike (a provider lying consistently).
fn resign(f: Vec<u8>, edit: impl Fn(&mut tessera_core::wire::Usage, &mut u64)) -> Vec<u8> {
    let mut signer = Ed25519Signer::from_seed(&[42; 32]).expect("seed");
    match Message::decode(&f).expect("decodes") {
        Message::UsageReport(mut u) => {
            edit(&mut u.usage, &mut u.price);
            frame(&Message::UsageReport(u))
        }
        Message::Receipt(m) => {
            let mut r = Receipt::verify(m.bytes, &signer.public_key()).expect("verifies");
            edit(&mut r.usage, &mut r.price);
            let mut out = [0u8; tessera_core::attest::RECEIPT_LEN];
            let n = r.sign(&mut signer, &mut out).expect("signs");
            frame(&Message::Receipt(tessera_core::wire::ReceiptMsg {
                job: m.job,
                bytes: &out[..n],
            }))
        }
        _ => f,
    }
}

/// Re-signs the provider's receipt and usage report with another price.
fn reprice(f: Vec<u8>, price: u64) -> Vec<u8> {
    resign(f, |_, p| *p = price)
}

#[test]
fn failure_receipts_breaking_the_price_rules_are_refused() {
    // A device lost, yet charged.
    let lost = tessera_core::host::JobFailure::new(FailReason::DeviceLost, 2);
    let (e, answer, h) =
        run_rewritten_keeping(failing_harness(lost), job(5), &mut |f| reprice(f, 7));
    let Response::Failed(f) = answer else {
        panic!("expected a failure, got {answer:?}")
    };
    assert_eq!(f.code, FailureCode::ReceiptRejected);
    assert!(
        f.reason
            .contains("(DeviceLost) is charged 0, the receipt charges 7"),
        "{}",
        f.reason
    );
    assert_eq!(e.stats().receipts_rejected, 1);
    // The receipt verified and is in the chain: the result is refused, and
    // the provider lets go of it instead of holding it forever.
    assert_eq!(e.stats().results_refused, 1);
    assert_eq!(h.agent.stats().results_refused, 1);
    assert_eq!(h.agent.active_jobs(), 0, "the provider released the job");

    // A timeout charged more than the quote.
    let timeout = tessera_core::host::JobFailure::new(FailReason::Timeout, 1);
    let (_, answer) = run_rewritten(failing_harness(timeout), job(6), &mut |f| reprice(f, 101));
    let Response::Failed(f) = answer else {
        panic!("expected a failure, got {answer:?}")
    };
    assert_eq!(f.code, FailureCode::ReceiptRejected);
    assert!(
        f.reason
            .contains("charged the accepted quote 100, the receipt charges 101"),
        "{}",
        f.reason
    );
}

#[test]
fn a_receipt_counting_bytes_that_were_never_sent_is_refused() {
    // The price schedule counts the input bytes: a provider that signs a
    // usage of 1 MiB more than the kernel and inputs assigned, and reports
    // the same, is refused, though its price stays within the maximum.
    let (e, answer) = run_rewritten(harness(), job(7), &mut |f| {
        resign(f, |u, _| u.bytes_in += 1 << 20)
    });
    let Response::Failed(f) = answer else {
        panic!("expected a refusal; the result was delivered")
    };
    assert_eq!(f.code, FailureCode::ReceiptRejected);
    // 4 bytes of kernel and 10,000 of initial data were sent.
    assert!(
        f.reason
            .contains("counts 1058580 bytes in, the assignment sent 10004"),
        "{}",
        f.reason
    );
    assert_eq!(e.stats().results_refused, 1);

    // Output bytes the same way: the usage must count the output's length.
    let (_, answer) = run_rewritten(harness(), job(8), &mut |f| {
        resign(f, |u, _| u.bytes_out += 1)
    });
    let Response::Failed(f) = answer else {
        panic!("expected a refusal; the result was delivered")
    };
    assert!(
        f.reason
            .contains("counts 10001 bytes out, its output is 10000 bytes"),
        "{}",
        f.reason
    );
}

#[test]
fn a_provider_whose_device_is_unavailable_is_offered_jobs_last() {
    let mut e = engine();
    let (outbox_a, rx_a) = test_outbox();
    let (outbox_b, rx_b) = test_outbox();
    let sid_a = open(&mut e, outbox_a, "a");
    let sid_b = open(&mut e, outbox_b, "b");
    let mut a = harness();
    let mut b = {
        let signer = Ed25519Signer::from_seed(&[43; 32]).expect("seed");
        let config = tessera_core::Config {
            capabilities: DeviceCapabilities {
                device_local_bytes: 1 << 30,
                ..DeviceCapabilities::default()
            },
            ..tessera_core::Config::default()
        };
        let agent = Agent::new(config, signer, ChainState::default()).expect("agent");
        Harness::new(agent, increment_run)
    };
    for (h, sid, rx) in [(&mut a, sid_a, &rx_a), (&mut b, sid_b, &rx_b)] {
        h.agent.connect(h.now).expect("connect");
        shuttle(&mut e, sid, h, rx, &mut |_| false);
        assert_eq!(h.agent.state(), tessera_core::ConnState::Ready);
    }
    // `a`, first in line otherwise, says it takes no work (capacity 0).
    a.agent.set_device_available(a.now, false);
    shuttle(&mut e, sid_a, &mut a, &rx_a, &mut |_| false);
    let (tx, reply) = mpsc::channel();
    submit(&mut e, job(9), tx);
    for _ in 0..3 {
        shuttle(&mut e, sid_a, &mut a, &rx_a, &mut |_| false);
        shuttle(&mut e, sid_b, &mut b, &rx_b, &mut |_| false);
    }
    assert!(matches!(
        response(reply.try_recv()),
        Ok(Response::Result(_))
    ));
    assert_eq!(a.agent.stats().offers_declined, 0, "never offered to `a`");
    assert_eq!(b.agent.stats().jobs_completed, 1);
}

/// An engine with a Ready session for `h`.
fn ready_session(e: &mut Engine, h: &mut Harness) -> (SessionId, TestQueue) {
    let (outbox, rx) = test_outbox();
    let sid = open(e, outbox, "test");
    h.agent.connect(h.now).expect("connect");
    shuttle(e, sid, h, &rx, &mut |_| false);
    assert_eq!(h.agent.state(), tessera_core::ConnState::Ready);
    (sid, rx)
}

#[test]
fn records_of_providers_gone_are_pruned_unless_a_job_needs_them() {
    let mut e = engine();
    e.settings.max_known_keys = 0;
    let mut h = harness();
    let (sid, rx) = ready_session(&mut e, &mut h);
    let now = Instant::now();
    // Connected: kept whatever the cap.
    e.tick(now);
    assert_eq!(e.providers().len(), 1);

    // Gone while a job is assigned to it (its receipt held back): kept, so
    // the late receipt still finds the evidence it names.
    let (tx, reply) = mpsc::channel();
    submit(&mut e, job(1), tx);
    shuttle(&mut e, sid, &mut h, &rx, &mut |f| {
        f[3] == MessageType::Receipt as u8
    });
    e.session_closed(sid, now);
    e.last_prune = None;
    e.tick(now);
    assert_eq!(e.providers().len(), 1, "a job is assigned to it");

    // Once the job is forgotten, the record goes.
    e.jobs.clear();
    e.held.clear();
    e.last_prune = None;
    e.tick(now);
    assert!(e.providers().is_empty());
    assert_eq!(e.stats().keys_pruned, 1);
    drop(reply);

    // Within the cap, a record goes once `key_retention` has passed.
    let mut e = engine();
    e.settings.key_retention = Duration::from_secs(60);
    let mut h = harness();
    let (sid, _rx) = ready_session(&mut e, &mut h);
    let gone = Instant::now();
    e.session_closed(sid, gone);
    e.tick(gone + Duration::from_secs(30));
    assert_eq!(e.providers().len(), 1);
    e.last_prune = None;
    e.tick(gone + Duration::from_secs(61));
    assert!(e.providers().is_empty());
}

#[test]
fn a_job_lets_go_of_its_inputs_once_started_and_of_outputs_once_answered() {
    let mut e = engine();
    let mut h = harness();
    let (sid, rx) = ready_session(&mut e, &mut h);
    let (tx, reply) = mpsc::channel();
    submit(&mut e, job(2), tx);
    let id = *e.jobs.keys().next().expect("a job");
    assert!(e.jobs[&id].inputs.is_some(), "held while on offer");
    // Everything up to the outputs: the agent has started.
    shuttle(&mut e, sid, &mut h, &rx, &mut |f| {
        f[3] == MessageType::OutputChunk as u8
            || f[3] == MessageType::Completed as u8
            || f[3] == MessageType::UsageReport as u8
            || f[3] == MessageType::Receipt as u8
    });
    assert!(e.jobs[&id].inputs.is_none(), "released at Started");
    // The deadline passes before the outputs arrive: the requester is
    // answered, and outputs arriving later are verified, not kept.
    e.tick(Instant::now() + Duration::from_secs(120));
    assert!(matches!(
        response(reply.try_recv()),
        Ok(Response::Failed(JobFailure {
            code: FailureCode::Timeout,
            ..
        }))
    ));
    let chunk = frame(&Message::OutputChunk(Chunk {
        job: id,
        stream: 1,
        index: 0,
        digest: leaf_hash(&[1; CHUNK_SIZE]),
        data: &[1; CHUNK_SIZE],
    }));
    let msg = Message::decode(&chunk).expect("decodes");
    e.on_message(sid, msg, Instant::now());
    let Some(Stage::Assigned(a)) = e.jobs.get(&id).map(|j| &j.stage) else {
        panic!("still tracked for its late receipt")
    };
    assert_eq!(a.received[0], CHUNK_SIZE as u64);
    assert!(a.outputs.iter().all(|o| o.is_empty()), "not kept");
    assert_eq!(a.tree.leaves(), 1);
}

/// A provider with history, on a coordinator without it: the chain is
/// anchored on the position its evidence signs, so a receipt that does not
/// follow from it is refused. Before, the coordinator anchored on the first
/// receipt it saw, whatever it linked to.
#[test]
fn a_coordinator_without_history_anchors_on_the_signed_evidence() {
    let anchored = |lie: bool| {
        let h = harness_at(ChainState {
            next_sequence: 3,
            prev_hash: [0xAB; 32],
        });
        // The lying provider's evidence states another last receipt than the
        // one its receipts link to.
        let (e, answer) = run_rewritten(h, job(9), &mut |f| {
            if !lie {
                return f;
            }
            match Message::decode(&f).expect("decodes") {
                Message::Evidence(b) => {
                    let mut signer = Ed25519Signer::from_seed(&[42; 32]).expect("seed");
                    let mut ev = tessera_core::attest::Evidence::decode_payload(
                        &b.bytes[28..28 + tessera_core::attest::EVIDENCE_PAYLOAD_LEN],
                    )
                    .expect("payload");
                    ev.chain.prev_hash = [0xCD; 32];
                    let mut out = [0u8; tessera_core::attest::EVIDENCE_LEN];
                    let n = ev.sign(&mut signer, &mut out).expect("signs");
                    frame(&Message::Evidence(tessera_core::wire::Blob {
                        bytes: &out[..n],
                    }))
                }
                _ => f,
            }
        });
        (e.stats().receipts_verified, answer)
    };
    let (verified, answer) = anchored(false);
    assert_eq!(verified, 1);
    assert!(matches!(answer, Response::Result(_)), "{answer:?}");
    let (verified, answer) = anchored(true);
    assert_eq!(
        verified, 0,
        "receipt #3 does not follow the signed position"
    );
    let Response::Failed(f) = answer else {
        panic!("expected a refusal, got {answer:?}")
    };
    assert!(
        f.reason.contains("breaks the provider's chain"),
        "{}",
        f.reason
    );
}

/// A coordinator that verified receipts #1 and #2 but crashed before its
/// acknowledgements left restarts from its stored chain (at #3). The
/// provider offers both again: #2 is the last one the chain holds, and #1
/// is behind it. Before, #1 got `Error{ReceiptRejected}` on every session
/// and held one of the provider's job slots for good; it is acknowledged
/// now (not settled again).
#[test]
fn a_receipt_behind_the_stored_chain_is_acknowledged_after_a_restart() {
    let dir = std::env::temp_dir().join(format!("tessera-replayed-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let store = || crate::state::ChainStore::open(&dir).expect("state dir");
    let settings = engine().settings.clone();
    let mut e = Engine::new(settings.clone(), Some(store()));
    let mut h = harness();
    let (sid, rx) = ready_session(&mut e, &mut h);
    let (tx, _answers) = mpsc::channel();
    submit(&mut e, job(1), tx.clone());
    submit(&mut e, job(2), tx);
    // Everything moves, except the coordinator's acknowledgements.
    for _ in 0..1000 {
        let mut moved = false;
        for f in queued_frames(&rx) {
            if f[3] != MessageType::ResultAck as u8 {
                h.send_raw(&f);
            }
            moved = true;
        }
        for f in h.pump() {
            moved = true;
            e.on_message(sid, Message::decode(&f).expect("decodes"), Instant::now());
        }
        if !moved {
            break;
        }
    }
    assert_eq!(e.stats().receipts_verified, 2);
    assert_eq!(h.agent.active_jobs(), 2, "no acknowledgement arrived");
    drop(e);

    // The restarted coordinator, from the stored chain.
    let mut e = Engine::new(settings, Some(store()));
    h.agent.disconnected(h.now);
    h.pump();
    let (sid, rx) = ready_session(&mut e, &mut h);
    shuttle(&mut e, sid, &mut h, &rx, &mut |_| false);
    assert_eq!(h.agent.active_jobs(), 0, "both results acknowledged");
    assert_eq!(e.stats().receipts_rejected, 0);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A job that runs while its provider reconnects more often than the
/// coordinator keeps evidences: its receipt names the evidence of the
/// session that accepted it, which stays kept while the job lives. Before,
/// it was pruned after 16 sessions and the honest result was refused.
#[test]
fn a_job_outlives_more_reconnects_than_the_evidences_kept() {
    let mut e = engine();
    let mut h = harness();
    h.host.auto_run = false;
    let (sid, rx) = ready_session(&mut e, &mut h);
    let (tx, answers) = mpsc::channel();
    submit(&mut e, job(3), tx);
    shuttle(&mut e, sid, &mut h, &rx, &mut |_| false);
    let id = *h
        .host
        .job_host
        .jobs
        .keys()
        .next()
        .expect("the job was assigned");
    assert_eq!(h.agent.job_state(id), Some(tessera_core::JobState::Running));
    let mut session = (sid, rx);
    for _ in 0..(EVIDENCE_KEPT + 4) {
        h.agent.disconnected(h.now);
        h.pump();
        session = ready_session(&mut e, &mut h);
    }
    h.host.to_run.push_back(id);
    shuttle(&mut e, session.0, &mut h, &session.1, &mut |_| false);
    match response(answers.try_recv()) {
        Ok(Response::Result(_)) => {}
        other => panic!("expected the result, got {other:?}"),
    }
    assert_eq!(h.agent.active_jobs(), 0, "the result was acknowledged");
}

/// The provider's receipt, re-signed as a batch of one: the same payload
/// under a batch statement, index 0, an empty audit path.
fn rebatch(f: Vec<u8>) -> Vec<u8> {
    use tessera_core::attest::{
        batch_leaf, sign_batch, write_batched, BatchPath, BATCHED_RECEIPT_MAX_LEN, BATCH_LEN,
    };
    let mut signer = Ed25519Signer::from_seed(&[42; 32]).expect("seed");
    match Message::decode(&f).expect("decodes") {
        Message::Receipt(m) => {
            let r = Receipt::verify(m.bytes, &signer.public_key()).expect("verifies");
            let payload = r.encode_payload();
            let leaves = [batch_leaf(&payload)];
            let mut paths = [BatchPath::new()];
            let mut statement = [0u8; BATCH_LEN];
            sign_batch(&mut signer, r.sequence, &leaves, &mut paths, &mut statement)
                .expect("signs");
            let mut out = [0u8; BATCHED_RECEIPT_MAX_LEN];
            let n = write_batched(&statement, 0, &paths[0], &payload, &mut out).expect("fits");
            frame(&Message::Receipt(tessera_core::wire::ReceiptMsg {
                job: m.job,
                bytes: &out[..n],
            }))
        }
        _ => f,
    }
}

/// A provider's receipt sent as a batched receipt is verified, chained,
/// settled and delivered; the requester's check takes it too, and the
/// chain moves to the payload's link.
#[test]
fn a_batched_receipt_is_verified_settled_and_delivered() {
    let j = job(9);
    let (e, answer) = run_rewritten(harness(), j.clone(), &mut rebatch);
    let Response::Result(r) = answer else {
        panic!("expected a verified result, got {answer:?}")
    };
    assert_ne!(
        r.receipt.len(),
        tessera_core::attest::RECEIPT_LEN,
        "batched"
    );
    let receipt = Receipt::verify_batched(&r.receipt, &r.provider_public_key).expect("verifies");
    assert_eq!(receipt.sequence, 1);
    crate::requester::verify_result(&j, &r).expect("the requester's check agrees");
    let stats = e.stats();
    assert_eq!((stats.receipts_verified, stats.receipts_rejected), (1, 0));
    // A batched receipt whose payload was changed after signing is refused.
    let (e, answer) = run_rewritten(harness(), job(10), &mut |f| {
        let mut f = rebatch(f);
        if f.get(3) == Some(&(MessageType::Receipt as u8)) {
            let last = f.len() - 1;
            f[last] ^= 1;
        }
        f
    });
    assert!(matches!(answer, Response::Failed(_)), "{answer:?}");
    assert_eq!(e.stats().receipts_rejected, 1);
}

/// A coordinator set to batch receipts asks a version 2 provider at
/// `Ready`; two jobs that end together come back under one statement, each
/// verified by the engine (one statement check) and by its requester.
#[test]
fn a_provider_asked_to_batch_signs_jobs_that_end_together_once() {
    let mut e = engine_batching(Batching {
        max_receipts: 8,
        max_delay_us: 1_000_000,
    });
    let (outbox, rx) = test_outbox();
    let sid = open(&mut e, outbox, "test");
    let mut h = harness();
    h.host.auto_run = false;
    h.agent.connect(h.now).expect("connect");
    let mut batching_seen = false;
    for _ in 0..10 {
        for f in queued_frames(&rx) {
            batching_seen |= f[3] == MessageType::Batching as u8;
            h.send_raw(&f);
        }
        for f in h.pump() {
            let msg = Message::decode(&f).expect("agent frames decode");
            e.on_message(sid, msg, Instant::now());
        }
    }
    assert_eq!(h.agent.state(), tessera_core::ConnState::Ready);
    assert!(batching_seen, "Batching sent after Ready");

    let (tx_a, rx_a) = mpsc::channel();
    let (tx_b, rx_b) = mpsc::channel();
    submit(&mut e, job(1), tx_a);
    submit(&mut e, job(2), tx_b);
    shuttle(&mut e, sid, &mut h, &rx, &mut |_| false);
    assert_eq!(h.agent.active_jobs(), 2, "both running");
    // Both end; the second completes the batch.
    let mut ids: Vec<u64> = h.host.job_host.jobs.keys().copied().collect();
    ids.sort_unstable();
    assert_eq!(ids.len(), 2);
    h.host.to_run.extend(ids);
    shuttle(&mut e, sid, &mut h, &rx, &mut |_| false);
    let results: Vec<crate::protocol::JobResult> = [rx_a.try_recv(), rx_b.try_recv()]
        .into_iter()
        .map(|r| match response(r) {
            Ok(Response::Result(r)) => r,
            other => panic!("expected a result, got {other:?}"),
        })
        .collect();
    let statement = tessera_core::attest::BATCH_LEN;
    assert!(results
        .iter()
        .all(|r| r.receipt.len() == tessera_core::attest::BATCHED_RECEIPT_MIN_LEN + 32));
    assert_eq!(
        results[0].receipt[..statement],
        results[1].receipt[..statement]
    );
    // The requester's cache checks the statement's signature once; a
    // statement changed anywhere is checked afresh and refused.
    let mut cache = crate::requester::EvidenceCache::default();
    let mut forged = results[1].clone();
    forged.receipt[statement - 1] ^= 1;
    crate::requester::verify_result_with(&job(1), &results[0], &mut cache)
        .expect("the requester agrees");
    assert!(matches!(
        crate::requester::verify_result_with(&job(2), &forged, &mut cache),
        Err(crate::requester::ResultCheckError::Receipt(
            VerifyError::BadSignature
        ))
    ));
    crate::requester::verify_result_with(&job(2), &results[1], &mut cache)
        .expect("the requester agrees");
    let stats = e.stats();
    assert_eq!((stats.receipts_verified, stats.receipts_rejected), (2, 0));
    assert_eq!(h.agent.stats().jobs_completed, 2, "both acknowledged");
}

/// A provider that speaks only version 1 is not asked to batch.
#[test]
fn a_version_1_provider_is_not_asked_to_batch() {
    let mut e = engine_batching(Batching {
        max_receipts: 8,
        max_delay_us: 1_000,
    });
    let (outbox, rx) = test_outbox();
    let sid = open(&mut e, outbox, "test");
    let hello = Hello {
        min_version: 1,
        max_version: 1,
        agent_version: [0, 1, 0],
        key_id: [0; 16],
        next_sequence: 1,
        prev_hash: [0; 32],
    };
    e.on_message(sid, Message::Hello(hello), Instant::now());
    let frames = queued_frames(&rx);
    let Ok(Message::Welcome(w)) = Message::decode(&frames[0]) else {
        panic!("expected a welcome")
    };
    assert_eq!(w.version, 1);
    // The full handshake with a version 2 agent does send it (above); here
    // the engine's choice is what matters: version 1, so no `Batching`
    // can follow its `Ready`.
    assert!(frames.iter().all(|f| f[3] != MessageType::Batching as u8));
}

/// A small job goes to a version 2 provider with its offer: the assignment
/// and inputs are queued behind the offer before any answer. A job with
/// more than `ASSIGN_WITH_OFFER_MAX` bytes of inputs waits for the answer.
#[test]
fn a_small_job_is_assigned_with_its_offer() {
    let mut e = engine();
    let (outbox, rx) = test_outbox();
    let sid = open(&mut e, outbox, "test");
    let mut h = harness();
    h.agent.connect(h.now).expect("connect");
    shuttle(&mut e, sid, &mut h, &rx, &mut |_| false);

    let kinds = |frames: &[Vec<u8>]| -> Vec<u8> { frames.iter().map(|f| f[3]).collect() };
    let (tx, reply) = mpsc::channel();
    submit(&mut e, job(1), tx);
    let queued = queued_frames(&rx);
    let k = kinds(&queued);
    assert_eq!(
        k[..2],
        [MessageType::JobOffer as u8, MessageType::JobAssign as u8]
    );
    assert!(k[2..].iter().all(|&t| t == MessageType::InputChunk as u8));
    assert!(k.len() > 2, "inputs follow");
    for f in queued {
        h.send_raw(&f);
    }
    shuttle(&mut e, sid, &mut h, &rx, &mut |_| false);
    let Ok(Response::Result(r)) = response(reply.try_recv()) else {
        panic!("expected a verified result")
    };
    crate::requester::verify_result(&job(1), &r).expect("the requester's check agrees");

    let mut big = job(2);
    big.buffers[0].init = vec![2; 100_000];
    big.buffers[0].len = 100_000;
    big.buffers[1].len = 100_000;
    let (tx, reply) = mpsc::channel();
    submit(&mut e, big.clone(), tx);
    let queued = queued_frames(&rx);
    assert_eq!(kinds(&queued), [MessageType::JobOffer as u8]);
    for f in queued {
        h.send_raw(&f);
    }
    shuttle(&mut e, sid, &mut h, &rx, &mut |_| false);
    let Ok(Response::Result(_)) = response(reply.try_recv()) else {
        panic!("expected a verified result")
    };
}

/// A provider that declines a job sent with its offer drops the assignment
/// and inputs without an error; the job is answered as declined.
#[test]
fn a_declined_job_sent_with_its_offer_leaves_no_error_behind() {
    let mut e = engine();
    let (outbox, rx) = test_outbox();
    let sid = open(&mut e, outbox, "test");
    let mut h = harness();
    h.host.auto_run = false;
    h.agent.connect(h.now).expect("connect");
    shuttle(&mut e, sid, &mut h, &rx, &mut |_| false);
    h.agent.set_device_available(h.now, false);
    shuttle(&mut e, sid, &mut h, &rx, &mut |_| false);
    let (tx, reply) = mpsc::channel();
    submit(&mut e, job(3), tx);
    let mut sent = Vec::new();
    shuttle(&mut e, sid, &mut h, &rx, &mut |f| {
        sent.push(f[3]);
        false
    });
    assert_eq!(sent, [MessageType::OfferDecline as u8], "no Error frames");
    assert!(h.input_errors.is_empty(), "{:?}", h.input_errors);
    match response(reply.try_recv()) {
        Ok(Response::Failed(f)) => assert_eq!(f.code, FailureCode::AllDeclined),
        other => panic!("expected a decline, got {other:?}"),
    }
}

/// A provider that takes one job at a time, for at least 10.
fn one_at_a_time() -> Harness {
    taking(1)
}

/// A provider that takes `max_concurrent` jobs at once, for at least 10.
fn taking(max_concurrent: u8) -> Harness {
    let signer = Ed25519Signer::from_seed(&[44; 32]).expect("seed");
    let config = tessera_core::Config {
        capabilities: DeviceCapabilities {
            device_local_bytes: 1 << 30,
            ..DeviceCapabilities::default()
        },
        policy: Policy {
            max_concurrent,
            floor: 10,
            ..Policy::default()
        },
        ..tessera_core::Config::default()
    };
    let agent = Agent::new(config, signer, ChainState::default()).expect("agent");
    let mut h = Harness::new(agent, increment_run);
    h.host.auto_run = false;
    h
}

/// Submits jobs 1 to `n` one after another, each shuttled to the provider;
/// their replies.
fn submit_each(
    e: &mut Engine,
    sid: SessionId,
    h: &mut Harness,
    rx: &TestQueue,
    n: u8,
) -> Vec<mpsc::Receiver<Answer>> {
    (1..=n)
        .map(|i| {
            let (tx, reply) = mpsc::channel();
            submit(e, job(i), tx);
            shuttle(e, sid, h, rx, &mut |_| false);
            reply
        })
        .collect()
}

/// Until a provider's first heartbeat says how many jobs it takes, it is
/// offered 4 at once (the default, and a firmware agent's most), so that a
/// provider holding fewer is not sent offers it must decline; from its
/// heartbeat on, a provider that takes 16 is offered 16.
#[test]
fn a_provider_is_offered_four_jobs_until_its_heartbeat_says_more() {
    let mut e = engine();
    let mut h = taking(16);
    let (sid, rx) = ready_session(&mut e, &mut h);
    let _replies = submit_each(&mut e, sid, &mut h, &rx, 12);
    assert_eq!(h.agent.active_jobs(), 4, "4 before a heartbeat");
    assert_eq!(h.agent.stats().offers_declined, 0);
    let beat = Heartbeat {
        active_jobs: 4,
        capacity: 16,
    };
    e.on_message(sid, Message::Heartbeat(beat), Instant::now());
    shuttle(&mut e, sid, &mut h, &rx, &mut |_| false);
    assert_eq!(h.agent.active_jobs(), 12, "all once it says it takes 16");
    assert_eq!(h.agent.stats().offers_declined, 0);
}

#[test]
fn jobs_for_a_full_provider_wait_for_its_slots_in_order() {
    let mut e = engine();
    let mut h = one_at_a_time();
    let (sid, rx) = ready_session(&mut e, &mut h);
    let replies = submit_each(&mut e, sid, &mut h, &rx, 3);
    // The first runs; the others wait for its slot instead of failing.
    assert_eq!(h.agent.active_jobs(), 1);
    assert!(replies
        .iter()
        .all(|r| matches!(r.try_recv(), Err(mpsc::TryRecvError::Empty))));
    // It declined the second for capacity once; the third was not offered
    // to a provider known to be full.
    assert_eq!(h.agent.stats().offers_declined, 1);
    for (i, reply) in replies.iter().enumerate() {
        let ids: Vec<u64> = h.host.job_host.jobs.keys().copied().collect();
        assert_eq!(ids.len(), 1, "one job at a time");
        h.host.to_run.extend(ids);
        shuttle(&mut e, sid, &mut h, &rx, &mut |_| false);
        match response(reply.try_recv()) {
            Ok(Response::Result(r)) => {
                crate::requester::verify_result(&job(i as u8 + 1), &r).expect("verifies")
            }
            other => panic!("job {}: {other:?}", i + 1),
        };
    }
    assert_eq!(h.agent.stats().jobs_completed, 3);
    assert_eq!(h.agent.stats().offers_declined, 1);
}

#[test]
fn a_job_that_waits_for_a_slot_past_its_deadline_times_out_saying_why() {
    let mut e = engine();
    let mut h = one_at_a_time();
    let (sid, rx) = ready_session(&mut e, &mut h);
    let (tx, _first) = mpsc::channel();
    submit(&mut e, job(1), tx);
    shuttle(&mut e, sid, &mut h, &rx, &mut |_| false);
    let (tx, second) = mpsc::channel();
    submit(&mut e, job(2), tx);
    shuttle(&mut e, sid, &mut h, &rx, &mut |_| false);
    assert!(matches!(second.try_recv(), Err(mpsc::TryRecvError::Empty)));
    // Past its deadline (60 s and the 1 s grace), the slot never freed.
    e.tick(Instant::now() + Duration::from_secs(62));
    match response(second.try_recv()) {
        Ok(Response::Failed(f)) => {
            assert_eq!(f.code, FailureCode::Timeout);
            assert!(f.reason.contains("free slot"), "{}", f.reason);
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
}

/// A job waiting for a slot that the only provider then refuses for another
/// reason (its price, under the provider's floor) cannot run: it fails at once, as it would have had
/// the provider not been full, rather than wait for its deadline.
#[test]
fn a_queued_job_every_provider_then_refuses_fails_at_once() {
    let mut e = engine();
    let mut h = one_at_a_time();
    let (sid, rx) = ready_session(&mut e, &mut h);
    let (tx, _first) = mpsc::channel();
    submit(&mut e, job(1), tx);
    shuttle(&mut e, sid, &mut h, &rx, &mut |_| false);
    let mut cheap = job(2);
    cheap.max_price = 0;
    let (tx, second) = mpsc::channel();
    submit(&mut e, cheap, tx);
    shuttle(&mut e, sid, &mut h, &rx, &mut |_| false);
    assert!(matches!(second.try_recv(), Err(mpsc::TryRecvError::Empty)));
    // The first job ends: the second is offered, and declined for its price.
    let ids: Vec<u64> = h.host.job_host.jobs.keys().copied().collect();
    h.host.to_run.extend(ids);
    shuttle(&mut e, sid, &mut h, &rx, &mut |_| false);
    match response(second.try_recv()) {
        Ok(Response::Failed(f)) => assert_eq!(f.code, FailureCode::AllDeclined, "{}", f.reason),
        other => panic!("expected AllDeclined at once, got {other:?}"),
    }
}

/// A provider that shows room in every heartbeat and declines every offer
/// for capacity is offered a waiting job a bounded number of times, not
/// once per heartbeat.
#[test]
fn a_provider_that_is_always_full_is_not_offered_a_job_without_end() {
    let mut e = engine();
    // An honest provider, full with one job: the second waits.
    let mut p = one_at_a_time();
    let (psid, prx) = ready_session(&mut e, &mut p);
    let (tx, _r0) = mpsc::channel();
    submit(&mut e, job(1), tx);
    shuttle(&mut e, psid, &mut p, &prx, &mut |_| false);
    let (tx, _r1) = mpsc::channel();
    submit(&mut e, job(2), tx);
    shuttle(&mut e, psid, &mut p, &prx, &mut |_| false);
    // The other: a real agent's handshake, then it speaks alone.
    let mut h = harness();
    let (hsid, hrx) = ready_session(&mut e, &mut h);
    let _ = queued_frames(&hrx);
    let (tx, _r3) = mpsc::channel();
    submit(&mut e, job(3), tx);
    let mut offers = 0;
    for round in 0..100 {
        if round > 0 {
            let beat = Heartbeat {
                active_jobs: 0,
                capacity: 4,
            };
            e.on_message(hsid, Message::Heartbeat(beat), Instant::now());
        }
        for f in queued_frames(&hrx) {
            if f[3] == MessageType::JobOffer as u8 {
                offers += 1;
                let Ok(Message::JobOffer(o)) = Message::decode(&f) else {
                    panic!("an offer decodes")
                };
                let decline = tessera_core::wire::OfferDecline {
                    job: o.job,
                    reason: DeclineReason::AtCapacity,
                };
                e.on_message(hsid, Message::OfferDecline(decline), Instant::now());
            }
        }
    }
    // Offered again after each capacity decline until the last one
    // allowed, then no more.
    assert_eq!(
        offers, MAX_CAPACITY_DECLINES,
        "{offers} offers of the one waiting job"
    );
}

/// A provider that reconnects again and again does not add queue entries:
/// each waiting job has one.
#[test]
fn reconnects_do_not_grow_the_queue() {
    let mut e = engine();
    let mut p = one_at_a_time();
    let (psid, prx) = ready_session(&mut e, &mut p);
    let replies: Vec<_> = (1..=20u8)
        .map(|i| {
            let (tx, r) = mpsc::channel();
            submit(&mut e, job(i), tx);
            r
        })
        .collect();
    shuttle(&mut e, psid, &mut p, &prx, &mut |_| false);
    let waiting = e.queued.len();
    assert!(waiting >= 18, "{waiting} queued");
    for _ in 0..20 {
        let mut h = harness();
        let (sid, _rx) = ready_session(&mut e, &mut h);
        e.session_closed(sid, Instant::now());
    }
    assert!(
        e.queued.len() <= 19,
        "{} entries for 19 waiting jobs",
        e.queued.len()
    );
    drop(replies);
}

/// The id hasher spreads ids over a table's buckets (picked by the hash's
/// low bits) whether they are consecutive or a stride apart, which a
/// multiplication alone does not: its low bits depend only on the id's.
#[test]
fn id_hashes_spread_consecutive_and_strided_ids_over_buckets() {
    use std::hash::{BuildHasher, BuildHasherDefault};
    let build = BuildHasherDefault::<IdHasher>::default();
    const BUCKETS: u64 = 4096;
    for stride in [1u64, 1 << 12, 1 << 16, 1 << 32] {
        let used: HashSet<u64> = (0..BUCKETS)
            .map(|i| build.hash_one(1_700_000_000_000_000u64.wrapping_add(i * stride)) % BUCKETS)
            .collect();
        // Random hashes would fill about 63% of them.
        assert!(
            used.len() as u64 > BUCKETS / 2,
            "stride {stride}: {} of {BUCKETS} buckets",
            used.len()
        );
    }
}

/// Each provider's count of jobs here, kept as jobs change, is what
/// counting every job gives, through offers, declines for capacity,
/// queueing, withdrawal and results; and a job withdrawn because its
/// requester left frees its slot for a queued one at once.
#[test]
fn providers_job_counts_follow_every_change_of_a_job() {
    let mut e = engine();
    let mut h = one_at_a_time();
    let (sid, rx) = ready_session(&mut e, &mut h);
    let replies = submit_each(&mut e, sid, &mut h, &rx, 3);
    assert_eq!(e.held, e.held_counted_afresh());
    assert_eq!(e.held.values().sum::<usize>(), 1, "one runs, two wait");
    let running: Vec<u64> = h.host.job_host.jobs.keys().copied().collect();
    assert_eq!(running.len(), 1);

    // The first job's requester leaves: its slot goes to the next job.
    e.requester_gone(running[0], Instant::now());
    assert_eq!(e.held, e.held_counted_afresh());
    assert!(
        e.jobs
            .values()
            .any(|j| j.id != running[0] && matches!(j.stage, Stage::Offering { .. })),
        "a queued job is offered as soon as the slot is free"
    );
    shuttle(&mut e, sid, &mut h, &rx, &mut |_| false);
    assert_eq!(e.held, e.held_counted_afresh());

    // The rest run one by one and are answered.
    for reply in &replies[1..] {
        let ids: Vec<u64> = h.host.job_host.jobs.keys().copied().collect();
        h.host.to_run.extend(ids);
        shuttle(&mut e, sid, &mut h, &rx, &mut |_| false);
        assert_eq!(e.held, e.held_counted_afresh());
        assert!(matches!(
            response(reply.try_recv()),
            Ok(Response::Result(_))
        ));
    }
    e.tick(Instant::now());
    assert!(e.held.is_empty(), "nothing left counted: {:?}", e.held);
}
