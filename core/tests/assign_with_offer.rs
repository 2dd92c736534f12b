//! Assignments sent with their offer (protocol version 2): a coordinator
//! may send `JobAssign` and the inputs right after `JobOffer`, before the
//! answer. A provider that accepts runs the job as usual; one that declines
//! drops the assignment and its chunks without an error, and stays usable.

use tessera_core::agent::JobState;
use tessera_core::attest::{ChainState, Ed25519Signer, Receipt};
use tessera_core::error::{ErrorCode, PeerError};
use tessera_core::testkit::{decode, increment_run, Harness, JobDescription};
use tessera_core::wire::{DeclineReason, JobRef, Message, MessageType, Welcome};
use tessera_core::{Agent, Config, ConnState, Duration, Error, LinearPrice, Policy};

const CHALLENGE: [u8; 32] = [0x3C; 32];

fn harness() -> Harness {
    let config = Config {
        agent_version: [0, 1, 0],
        boot_id: [3; 16],
        policy: Policy {
            max_concurrent: 1,
            price: LinearPrice {
                base: 100,
                ..LinearPrice::default()
            },
            heartbeat_interval: Duration::from_secs(5),
            peer_timeout: Duration::from_secs(20),
            ..Policy::default()
        },
        ..Config::default()
    };
    let signer = Ed25519Signer::from_seed(&[6; 32]).unwrap();
    let agent = Agent::new(config, signer, ChainState::default()).unwrap();
    Harness::new(agent, increment_run)
}

fn session(h: &mut Harness, version: u16) {
    h.agent.connect(h.now).unwrap();
    h.pump();
    h.send(&Message::Welcome(Welcome {
        version,
        challenge: CHALLENGE,
        heartbeat_ms: 0,
    }));
    h.pump();
    h.send(&Message::Ready);
    h.pump();
    assert_eq!(h.agent.state(), ConnState::Ready);
}

fn job(nonce: u8) -> JobDescription {
    JobDescription {
        kernel: (0..3000u32).flat_map(|i| i.to_le_bytes()).collect(),
        entry_point: "main".into(),
        grid: [1, 1, 1],
        push_constants: Vec::new(),
        buffers: vec![
            (vec![nonce; 20_000], 20_000, false),
            (Vec::new(), 20_000, true),
        ],
        nonce: [nonce; 32],
        bindings: Vec::new(),
    }
}

/// The offer, the assignment and every input frame, sent together.
fn send_with_offer(h: &mut Harness, id: u64, max_price: u64) -> Vec<Vec<u8>> {
    let j = job(id as u8);
    h.send(&Message::JobOffer(j.offer(id, max_price, 60_000)));
    h.send(&Message::JobAssign(j.assign(id)));
    for f in j.input_frames(id) {
        h.send_raw(&f);
    }
    h.pump()
}

fn errors(frames: &[Vec<u8>]) -> Vec<u16> {
    frames
        .iter()
        .filter_map(|f| match decode(f) {
            Message::Error(e) => Some(e.code),
            _ => None,
        })
        .collect()
}

#[test]
fn an_accepted_offer_runs_on_the_assignment_sent_with_it() {
    let mut h = harness();
    session(&mut h, 2);
    let frames = send_with_offer(&mut h, 1, 10_000);
    let kinds: Vec<MessageType> = frames.iter().map(|f| decode(f).kind()).collect();
    assert_eq!(kinds[0], MessageType::OfferAccept);
    assert!(kinds.contains(&MessageType::Receipt), "{kinds:?}");
    assert!(errors(&frames).is_empty());
    let receipt = frames
        .iter()
        .find_map(|f| match decode(f) {
            Message::Receipt(r) => Some(r.bytes.to_vec()),
            _ => None,
        })
        .unwrap();
    let r = Receipt::verify(&receipt, &h.agent.public_key()).unwrap();
    assert_eq!(r.job, 1);
}

/// Declined (too cheap, then at capacity): the assignment and its 12
/// chunks are dropped without an error frame or an input error, and the
/// session goes on to serve the next job.
#[test]
fn a_declined_offers_assignment_and_inputs_are_dropped_quietly() {
    let mut h = harness();
    session(&mut h, 2);
    let frames = send_with_offer(&mut h, 1, 1);
    assert!(matches!(
        decode(&frames[0]),
        Message::OfferDecline(d) if d.reason == DeclineReason::PriceTooLow
    ));
    assert_eq!(frames.len(), 1, "nothing but the decline");
    assert!(h.input_errors.is_empty(), "{:?}", h.input_errors);
    assert_eq!(h.agent.job_state(1), None);

    // At capacity (one job): the second offer's assignment is dropped, the
    // first job is untouched.
    h.host.auto_run = false;
    send_with_offer(&mut h, 2, 10_000);
    assert_eq!(h.agent.job_state(2), Some(JobState::Running));
    let frames = send_with_offer(&mut h, 3, 10_000);
    assert!(matches!(
        decode(&frames[0]),
        Message::OfferDecline(d) if d.reason == DeclineReason::AtCapacity
    ));
    assert!(errors(&frames).is_empty());
    assert!(h.input_errors.is_empty(), "{:?}", h.input_errors);
    assert_eq!(h.agent.job_state(2), Some(JobState::Running));
    assert_eq!(h.agent.job_state(3), None);
    h.host.to_run.push_back(2);
    let frames = h.pump();
    assert!(frames
        .iter()
        .any(|f| decode(f).kind() == MessageType::Receipt));
    h.send(&Message::ResultAck(JobRef { job: 2 }));
    h.pump();
    h.host.auto_run = true;
    let frames = send_with_offer(&mut h, 4, 10_000);
    assert!(frames
        .iter()
        .any(|f| decode(f).kind() == MessageType::Receipt));
}

/// In a version 1 session an assignment for a job the agent does not hold
/// is still an error, and so is one for a job never offered in version 2.
#[test]
fn only_a_declined_offers_assignment_is_dropped_and_only_in_version_2() {
    let mut h = harness();
    session(&mut h, 1);
    send_with_offer(&mut h, 1, 1);
    assert!(h
        .input_errors
        .iter()
        .any(|e| e.error == Error::Peer(PeerError::UnknownJob(1))));

    let mut h = harness();
    session(&mut h, 2);
    let j = job(9);
    h.send(&Message::JobAssign(j.assign(9)));
    let frames = h.pump();
    assert_eq!(errors(&frames), vec![ErrorCode::UnknownJob as u16]);
}
