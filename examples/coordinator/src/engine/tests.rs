//! The engine driven by a real agent through the test kit, in memory.

use super::*;
use crate::conn::{queued_frames, test_outbox, WriteCmd};
use crate::protocol::BufferInit;
use std::sync::mpsc::{self, Receiver};
use tessera_core::attest::Ed25519Signer;
use tessera_core::testkit::{increment_run, Harness};
use tessera_core::wire::{MessageType, Requirements};
use tessera_core::{Agent, Policy};

fn engine() -> Engine {
    Engine::new(
        Settings {
            heartbeat_ms: 1000,
            offer_timeout: Duration::from_secs(5),
            deadline_grace: Duration::from_secs(1),
            handshake_timeout: Duration::from_secs(5),
            provider_silence: Duration::from_secs(20),
        },
        None,
    )
}

fn harness() -> Harness {
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
    let agent = Agent::new(config, signer, ChainState::default()).expect("agent");
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
    }
}

/// Moves frames both ways until quiet; `hold` keeps back agent frames.
fn shuttle(
    e: &mut Engine,
    sid: SessionId,
    h: &mut Harness,
    rx: &Receiver<WriteCmd>,
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
    let sid = e.open_session(outbox, "test".into(), Instant::now());
    let mut h = harness();
    h.agent.connect(h.now).expect("connect");
    shuttle(&mut e, sid, &mut h, &rx, &mut |_| false);
    assert_eq!(h.agent.state(), tessera_core::ConnState::Ready);

    let (tx_a, rx_a) = mpsc::channel();
    let (tx_b, rx_b) = mpsc::channel();
    e.submit(job(1), tx_a, Instant::now());
    e.submit(job(2), tx_b, Instant::now());
    let mut held = None;
    shuttle(&mut e, sid, &mut h, &rx, &mut |f| {
        let first_receipt = f[3] == MessageType::Receipt as u8 && held.is_none();
        if first_receipt {
            held = Some(f.to_vec());
        }
        first_receipt
    });
    let early = (rx_a.try_recv(), rx_b.try_recv(), h.host.log.clone());
    assert!(early.0.is_err() && early.1.is_err(), "{early:?}");
    assert_eq!(e.stats().receipts_verified, 0, "receipt #2 is parked");

    let held = held.expect("a receipt was held back");
    let msg = Message::decode(&held).expect("decodes");
    e.on_message(sid, msg, Instant::now());
    let sequences: Vec<u64> = [rx_a.try_recv(), rx_b.try_recv()]
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
    assert!(validate(&bad).is_err());
    let mut bad = job(1);
    bad.buffers[0].len = 1;
    assert!(validate(&bad).is_err());
    let mut bad = job(1);
    bad.grid = [1, 0, 1];
    assert!(validate(&bad).is_err());
    let mut bad = job(1);
    bad.buffers[1].binding = 32;
    assert!(validate(&bad).unwrap_err().contains("binding 32"));
    let mut bad = job(1);
    bad.buffers[1].binding = 0;
    assert!(validate(&bad).unwrap_err().contains("both at binding 0"));
    assert!(validate(&job(1)).is_ok());
}

#[test]
fn a_job_whose_bindings_have_a_gap_is_assigned_and_verified() {
    let mut e = engine();
    let (outbox, rx) = test_outbox();
    let sid = e.open_session(outbox, "test".into(), Instant::now());
    let mut h = harness();
    h.agent.connect(h.now).expect("connect");
    shuttle(&mut e, sid, &mut h, &rx, &mut |_| false);

    let mut gap = job(3);
    gap.buffers[0].binding = 5;
    gap.buffers[1].binding = 0;
    assert!(validate(&gap).is_ok());
    let (tx, reply) = mpsc::channel();
    e.submit(gap.clone(), tx, Instant::now());
    shuttle(&mut e, sid, &mut h, &rx, &mut |_| false);
    let Ok(Response::Result(r)) = reply.try_recv() else {
        panic!("expected a verified result")
    };
    let spec = h.agent.job_spec(r.job).cloned();
    assert!(spec.is_none(), "acknowledged and forgotten");
    let receipt = Receipt::verify(&r.receipt, &r.provider_public_key).expect("verifies");
    let assigned = build_assign(r.job, &gap);
    let bindings: Vec<u32> = assigned.buffers.iter().map(|b| b.binding).collect();
    assert_eq!(bindings, vec![5, 0]);
    assert_eq!(receipt.kernel_hash, assigned.kernel_hash());
    crate::requester::verify_result(&gap, &r).expect("the requester's check agrees");
}
