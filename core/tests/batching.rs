//! Batched receipts on the agent (`docs/PROTOCOL.md`, "Batched receipts"):
//! when the coordinator sends `Batching` in a version 2 session, jobs that
//! end while others could still join share one signature, and every
//! receipt still verifies alone and in its chain.

use tessera_core::agent::JobState;
use tessera_core::attest::{
    ChainState, Ed25519Signer, Evidence, Receipt, ReceiptVerifier, BATCHED_RECEIPT_MIN_LEN,
    BATCH_LEN, RECEIPT_LEN,
};
use tessera_core::error::{ErrorCode, PeerError};
use tessera_core::testkit::{decode, increment_run, Harness, JobDescription};
use tessera_core::wire::{Batching, JobRef, Message, MessageType, Welcome};
use tessera_core::{Agent, Config, ConnState, Duration, Error, LinearPrice, Policy};

const SEED: [u8; 32] = [5; 32];
const CHALLENGE: [u8; 32] = [0xB7; 32];

fn config() -> Config {
    Config {
        agent_version: [0, 1, 0],
        boot_id: [2; 16],
        policy: Policy {
            max_concurrent: 4,
            price: LinearPrice {
                base: 100,
                ..LinearPrice::default()
            },
            heartbeat_interval: Duration::from_secs(5),
            peer_timeout: Duration::from_secs(20),
            ..Policy::default()
        },
        ..Config::default()
    }
}

fn harness_with(cfg: Config, chain: ChainState) -> Harness {
    let signer = Ed25519Signer::from_seed(&SEED).unwrap();
    let agent = Agent::new(cfg, signer, chain).unwrap();
    let mut h = Harness::new(agent, increment_run);
    h.host.auto_run = false;
    h
}

/// A session of protocol `version`; returns the agent's public key and
/// the chain position its evidence signed.
fn session(h: &mut Harness, version: u16) -> ([u8; 32], ChainState) {
    h.agent.connect(h.now).unwrap();
    h.pump();
    h.send(&Message::Welcome(Welcome {
        version,
        challenge: CHALLENGE,
        heartbeat_ms: 0,
    }));
    let frames = h.pump();
    let Message::Evidence(blob) = decode(&frames[0]) else {
        panic!("expected evidence")
    };
    let evidence = Evidence::verify(blob.bytes, &CHALLENGE).expect("evidence verifies");
    h.send(&Message::Ready);
    h.pump();
    assert_eq!(h.agent.state(), ConnState::Ready);
    (evidence.public_key, evidence.chain)
}

fn batching(h: &mut Harness, max_receipts: u16, max_delay_us: u32) -> Vec<Vec<u8>> {
    h.send(&Message::Batching(Batching {
        max_receipts,
        max_delay_us,
    }));
    h.pump()
}

fn job(nonce: u8) -> JobDescription {
    JobDescription {
        kernel: (0..256u32).flat_map(|i| i.to_le_bytes()).collect(),
        entry_point: "main".into(),
        grid: [1, 1, 1],
        push_constants: Vec::new(),
        buffers: vec![(vec![nonce; 64], 64, false), (Vec::new(), 64, true)],
        nonce: [nonce; 32],
        bindings: Vec::new(),
    }
}

/// Offers, assigns and sends job `id`; it waits for the host to run it.
fn submit(h: &mut Harness, id: u64) {
    let j = job(id as u8);
    h.send(&Message::JobOffer(j.offer(id, 10_000, 60_000)));
    h.send(&Message::JobAssign(j.assign(id)));
    for f in j.input_frames(id) {
        h.send_raw(&f);
    }
    h.pump();
    assert_eq!(h.agent.job_state(id), Some(JobState::Running));
}

/// The host runs job `id` to its end; returns what the agent sent.
fn run(h: &mut Harness, id: u64) -> Vec<Vec<u8>> {
    h.host.to_run.push_back(id);
    h.pump()
}

/// The receipts in `frames`, as (job, bytes), in the order they were sent.
fn receipts(frames: &[Vec<u8>]) -> Vec<(u64, Vec<u8>)> {
    frames
        .iter()
        .filter_map(|f| match decode(f) {
            Message::Receipt(r) => Some((r.job, r.bytes.to_vec())),
            _ => None,
        })
        .collect()
}

fn ack(h: &mut Harness, id: u64) {
    h.send(&Message::ResultAck(JobRef { job: id }));
    h.pump();
}

/// Two jobs that end while the other runs share one signature; a job that
/// ends alone is signed alone; all three verify in one chain with their
/// requesters' nonces.
#[test]
fn jobs_that_end_together_share_one_signature() {
    let mut h = harness_with(config(), ChainState::default());
    let (pk, _) = session(&mut h, 2);
    assert!(batching(&mut h, 8, 1_000_000).is_empty());
    submit(&mut h, 1);
    submit(&mut h, 2);

    // Job 1 ends while job 2 runs: its outputs go, its receipt waits.
    let frames = run(&mut h, 1);
    assert!(frames
        .iter()
        .any(|f| decode(f).kind() == MessageType::OutputChunk));
    assert!(receipts(&frames).is_empty(), "no receipt before the batch");
    assert_eq!(h.agent.job_state(1), Some(JobState::AwaitingAck));
    assert_eq!(h.agent.job_receipt(1), None);
    // The chain the host persists is that of signed receipts only.
    assert_eq!(h.agent.chain(), ChainState::default());

    // Job 2 ends and no job is left to join: the batch of two is signed.
    let sent = receipts(&run(&mut h, 2));
    assert_eq!(sent.iter().map(|r| r.0).collect::<Vec<_>>(), vec![1, 2]);
    for (_, bytes) in &sent {
        assert_eq!(bytes.len(), BATCHED_RECEIPT_MIN_LEN + 32, "one path hash");
    }
    assert_eq!(
        sent[0].1[..BATCH_LEN],
        sent[1].1[..BATCH_LEN],
        "one statement"
    );

    let mut verifier = ReceiptVerifier::new(pk, ChainState::default());
    let mut last = None;
    for (id, bytes) in &sent {
        let r = verifier
            .verify_next_any(bytes, Some(&[*id as u8; 32]), &mut last)
            .expect("a batched receipt verifies in the chain");
        assert_eq!((r.job, r.sequence), (*id, *id));
        assert_eq!(Receipt::verify_any(bytes, &pk).unwrap(), r, "and alone");
    }
    assert_eq!(h.agent.chain(), verifier.chain());
    ack(&mut h, 1);
    ack(&mut h, 2);

    // A job with nothing to wait for is signed alone, at once.
    submit(&mut h, 3);
    let sent = receipts(&run(&mut h, 3));
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].1.len(), RECEIPT_LEN);
    let r = verifier
        .verify_next_any(&sent[0].1, Some(&[3; 32]), &mut last)
        .expect("the chain goes on from the batch");
    assert_eq!(r.sequence, 3);
    assert_eq!(h.agent.chain(), verifier.chain());
}

/// A batch is signed when it holds `max_receipts`, though jobs still run,
/// and when its oldest result has waited `max_delay_us`.
#[test]
fn a_batch_is_signed_when_full_or_when_its_delay_runs_out() {
    let mut h = harness_with(config(), ChainState::default());
    let (pk, _) = session(&mut h, 2);
    batching(&mut h, 2, 5_000);
    for id in 1..=4 {
        submit(&mut h, id);
    }
    assert!(receipts(&run(&mut h, 1)).is_empty());
    let sent = receipts(&run(&mut h, 2));
    assert_eq!(sent.iter().map(|r| r.0).collect::<Vec<_>>(), vec![1, 2]);

    // Job 3 ends while job 4 runs: signed when its 5 ms are up, alone in
    // its batch, not before.
    let ended = h.now;
    assert!(receipts(&run(&mut h, 3)).is_empty());
    assert_eq!(
        h.agent.poll_timeout(),
        Some(ended + Duration::from_micros(5_000))
    );
    assert!(!h.advance(Duration::from_micros(4_999)), "no timer before");
    assert!(receipts(&h.pump()).is_empty());
    assert!(h.advance(Duration::from_micros(1)));
    let sent3 = receipts(&h.pump());
    assert_eq!(sent3.len(), 1);
    assert_eq!(sent3[0].0, 3);
    assert_eq!(sent3[0].1.len(), BATCHED_RECEIPT_MIN_LEN, "a batch of one");
    let sent4 = receipts(&run(&mut h, 4));

    let mut verifier = ReceiptVerifier::new(pk, ChainState::default());
    let mut last = None;
    for (id, bytes) in sent.iter().chain(&sent3).chain(&sent4) {
        let r = verifier
            .verify_next_any(bytes, Some(&[*id as u8; 32]), &mut last)
            .unwrap();
        assert_eq!(r.sequence, *id);
    }
}

/// Turning batching off signs what waits at once; a lower `max_receipts`
/// is never exceeded.
#[test]
fn turning_batching_off_signs_what_waits() {
    let mut h = harness_with(config(), ChainState::default());
    let (pk, _) = session(&mut h, 2);
    batching(&mut h, 4, 1_000_000);
    for id in 1..=3 {
        submit(&mut h, id);
    }
    assert!(receipts(&run(&mut h, 1)).is_empty());
    assert!(receipts(&run(&mut h, 2)).is_empty());
    // Down to batches of one: the two waiting are signed one by one.
    let sent = receipts(&batching(&mut h, 1, 0));
    assert_eq!(sent.iter().map(|r| r.0).collect::<Vec<_>>(), vec![1, 2]);
    assert!(sent[0].1[..BATCH_LEN] == sent[1].1[..BATCH_LEN]);
    // With batching off, the last job is signed alone.
    let sent3 = receipts(&run(&mut h, 3));
    assert_eq!(sent3[0].1.len(), RECEIPT_LEN);
    let mut verifier = ReceiptVerifier::new(pk, ChainState::default());
    let mut last = None;
    for (id, bytes) in sent.iter().chain(&sent3) {
        verifier
            .verify_next_any(bytes, Some(&[*id as u8; 32]), &mut last)
            .unwrap();
    }
}

/// `Batching` belongs to protocol version 2: in a version 1 session it is
/// refused as an unexpected message, and receipts stay signed alone.
#[test]
fn batching_in_a_version_1_session_is_refused() {
    let mut h = harness_with(config(), ChainState::default());
    session(&mut h, 1);
    let frames = batching(&mut h, 8, 1_000_000);
    assert!(frames.iter().any(|f| matches!(
        decode(f),
        Message::Error(e) if e.code == ErrorCode::UnexpectedMessage as u16
    )));
    assert!(h
        .input_errors
        .iter()
        .any(|e| e.error == Error::Peer(PeerError::UnexpectedMessage(MessageType::Batching))));
    submit(&mut h, 1);
    submit(&mut h, 2);
    let sent = receipts(&run(&mut h, 1));
    assert_eq!(sent[0].1.len(), RECEIPT_LEN);
}

/// A session that ends with results waiting for their batch signs them at
/// the next timer; the next session states the chain after them, and the
/// results go out on it in chain order.
#[test]
fn a_batch_waiting_when_the_session_ends_is_signed_and_delivered() {
    let mut h = harness_with(config(), ChainState::default());
    let (pk, _) = session(&mut h, 2);
    batching(&mut h, 8, 1_000_000);
    submit(&mut h, 1);
    submit(&mut h, 2);
    assert!(receipts(&run(&mut h, 1)).is_empty());
    h.agent.disconnected(h.now);
    h.pump();
    // Due at once.
    assert!(h.agent.poll_timeout().is_some_and(|t| t <= h.now));
    assert!(h.advance(Duration::ZERO));
    assert!(h.agent.job_receipt(1).is_some());
    assert_eq!(h.agent.chain().next_sequence, 2);
    // Job 2 ends offline: signed alone (no session asks for batches).
    run(&mut h, 2);
    assert_eq!(h.agent.job_receipt(2).map(<[u8]>::len), Some(RECEIPT_LEN));

    let (_, stated) = session(&mut h, 2);
    assert_eq!(stated, h.agent.chain());
    assert_eq!(stated.next_sequence, 3);
    let mut verifier = ReceiptVerifier::new(pk, ChainState::default());
    let mut last = None;
    for id in [1u64, 2] {
        let bytes = h.agent.job_receipt(id).unwrap().to_vec();
        verifier
            .verify_next_any(&bytes, Some(&[id as u8; 32]), &mut last)
            .unwrap();
    }
    assert_eq!(verifier.chain(), stated);
}

/// With `persist_results`, a result waiting for its batch asks for no
/// storage; once signed, each record holds its batched receipt, and after a
/// restart the restored results are delivered and the chain goes on.
#[test]
fn batched_results_are_persisted_once_signed_and_survive_a_restart() {
    use tessera_core::store::{MemoryStore, ResultStore};
    let mut cfg = config();
    cfg.persist_results = true;
    let mut h = harness_with(cfg.clone(), ChainState::default());
    let (pk, _) = session(&mut h, 2);
    batching(&mut h, 8, 1_000_000);
    submit(&mut h, 1);
    submit(&mut h, 2);
    run(&mut h, 1);
    assert!(!h.host.log.iter().any(|l| l.contains("PersistResult")));
    assert!(h.host.stored.is_empty());
    let sent = receipts(&run(&mut h, 2));
    assert_eq!(sent.len(), 2, "sent once stored");
    assert_eq!(h.host.stored.len(), 2);
    for (id, bytes) in &sent {
        let record = &h.host.stored[id];
        assert_eq!(&record.receipt[..], &bytes[..]);
        let mut buf = [0u8; tessera_core::agent::MAX_RECORD_BYTES];
        let n = record.encode(&mut buf).unwrap();
        assert_eq!(
            tessera_core::agent::ResultRecord::decode(&buf[..n]).as_ref(),
            Some(record)
        );
    }

    // A crash before the acknowledgements.
    let mut store: MemoryStore<4> = MemoryStore::new();
    for r in h.host.stored.values() {
        store.save(r).unwrap();
    }
    drop(h);
    let mut h = harness_with(cfg, store.chain());
    store
        .for_each(&mut |r| h.agent.restore_result(r).unwrap())
        .unwrap();
    assert_eq!(h.agent.chain().next_sequence, 3);
    session(&mut h, 2);
    for (id, bytes) in &sent {
        assert_eq!(h.agent.job_receipt(*id), Some(&bytes[..]));
        ack(&mut h, *id);
    }
    submit(&mut h, 3);
    let next = receipts(&run(&mut h, 3));
    let mut verifier = ReceiptVerifier::new(pk, ChainState::default());
    let mut last = None;
    for (id, bytes) in sent.iter().chain(&next) {
        verifier
            .verify_next_any(bytes, Some(&[*id as u8; 32]), &mut last)
            .unwrap();
    }
}

/// A record whose receipt has neither form's length does not decode.
#[test]
fn a_record_with_a_receipt_of_another_length_does_not_decode() {
    let mut h = harness_with(
        Config {
            persist_results: true,
            ..config()
        },
        ChainState::default(),
    );
    session(&mut h, 2);
    submit(&mut h, 1);
    run(&mut h, 1);
    let record = h.host.stored[&1].clone();
    let mut buf = [0u8; tessera_core::agent::MAX_RECORD_BYTES];
    let n = record.encode(&mut buf).unwrap();
    assert!(tessera_core::agent::ResultRecord::decode(&buf[..n]).is_some());
    // The receipt's length prefix (a two-byte varint, 444) sits before its
    // bytes: find it and lie about it.
    let at = (0..n - 1)
        .find(|&i| buf[i..i + 2] == [0xBC, 0x03] && buf[i + 2..i + 2 + 444] == record.receipt[..])
        .expect("the receipt in the record");
    for len in [443u16, 445, 508, 510, 766] {
        let mut bad = buf[..at].to_vec();
        bad.push((len as u8 & 0x7F) | 0x80);
        bad.push((len >> 7) as u8);
        bad.extend(std::iter::repeat_n(7u8, len as usize));
        bad.extend_from_slice(&buf[at + 2 + 444..n]);
        assert_eq!(
            tessera_core::agent::ResultRecord::decode(&bad),
            None,
            "{len}"
        );
    }
}

/// A drain signs the waiting batch at once: no result waits out its delay
/// while the provider is on its way out.
#[test]
fn a_drain_signs_the_waiting_batch() {
    let mut h = harness_with(config(), ChainState::default());
    let (pk, _) = session(&mut h, 2);
    batching(&mut h, 8, 1_000_000);
    submit(&mut h, 1);
    submit(&mut h, 2);
    assert!(receipts(&run(&mut h, 1)).is_empty());
    h.agent.drain(h.now).unwrap();
    let sent = receipts(&h.pump());
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].1.len(), BATCHED_RECEIPT_MIN_LEN);
    Receipt::verify_any(&sent[0].1, &pk).unwrap();
    // Job 2 ends alone.
    let sent = receipts(&run(&mut h, 2));
    assert_eq!(sent[0].1.len(), RECEIPT_LEN);
}

/// A stored record whose receipt has a longer audit path than this agent's
/// batches make (at most `MAX_JOBS` results: 32 hosted, 5 hashes) is
/// refused with a typed error, not held.
#[test]
fn a_record_with_a_receipt_longer_than_the_agent_signs_is_refused() {
    let mut h = harness_with(
        Config {
            persist_results: true,
            ..config()
        },
        ChainState::default(),
    );
    session(&mut h, 2);
    submit(&mut h, 1);
    run(&mut h, 1);
    let mut record = h.host.stored[&1].clone();
    record.receipt =
        tessera_core::bounded::BoundedVec::from_slice(&[0u8; BATCHED_RECEIPT_MIN_LEN + 6 * 32])
            .unwrap();
    let mut fresh = harness_with(config(), ChainState::default());
    assert_eq!(
        fresh.agent.restore_result(&record),
        Err(Error::Usage(tessera_core::UsageError::CapacityExceeded))
    );
    assert_eq!(fresh.agent.active_jobs(), 0);
    session(&mut fresh, 2);
}

/// A hosted agent holds `MAX_JOBS` (32) jobs at once: thirty-two run, the
/// thirty-third is declined for capacity, and when they end one signature
/// covers all of them, each receipt with a five-hash audit path, verifying
/// in its chain. Many small jobs keep the device busy this way while
/// earlier results wait for their batch and acknowledgement.
#[test]
fn a_hosted_agent_holds_thirty_two_jobs_and_signs_them_in_one_batch() {
    use tessera_core::limits::MAX_JOBS;
    use tessera_core::wire::DeclineReason;
    assert_eq!(MAX_JOBS, 32);
    let n = MAX_JOBS as u64;
    let mut cfg = config();
    cfg.policy.max_concurrent = MAX_JOBS as u8;
    let mut h = harness_with(cfg, ChainState::default());
    let (pk, _) = session(&mut h, 2);
    batching(&mut h, 64, 1_000_000);
    for id in 1..=n {
        submit(&mut h, id);
    }
    let j = job(n as u8 + 1);
    h.send(&Message::JobOffer(j.offer(n + 1, 10_000, 60_000)));
    let declined = h.pump();
    assert!(
        declined.iter().any(|f| matches!(
            decode(f),
            Message::OfferDecline(d) if d.job == n + 1 && d.reason == DeclineReason::AtCapacity
        )),
        "the thirty-third job is declined for capacity"
    );
    let mut sent = Vec::new();
    for id in 1..=n {
        let r = receipts(&run(&mut h, id));
        if id < n {
            assert!(r.is_empty(), "job {id}'s receipt waits for the batch");
        }
        sent.extend(r);
    }
    assert_eq!(
        sent.iter().map(|r| r.0).collect::<Vec<_>>(),
        (1..=n).collect::<Vec<_>>()
    );
    let mut verifier = ReceiptVerifier::new(pk, ChainState::default());
    let mut last = None;
    for (id, bytes) in &sent {
        assert_eq!(
            bytes.len(),
            BATCHED_RECEIPT_MIN_LEN + 5 * 32,
            "five path hashes"
        );
        assert_eq!(bytes[..BATCH_LEN], sent[0].1[..BATCH_LEN], "one statement");
        let r = verifier
            .verify_next_any(bytes, Some(&[*id as u8; 32]), &mut last)
            .expect("each receipt verifies in the chain");
        assert_eq!(r.job, *id);
    }
    assert_eq!(h.agent.chain(), verifier.chain());
    for id in 1..=n {
        ack(&mut h, id);
    }
    assert_eq!(h.agent.active_jobs(), 0);
}
