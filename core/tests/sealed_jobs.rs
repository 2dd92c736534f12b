//! Sealed jobs (`docs/PROTOCOL.md`, "Sealed jobs") between a scripted
//! coordinator and an agent whose host opens and seals them, in virtual
//! time: the requester's bytes cross the coordinator sealed, the host runs
//! them in the clear, the outputs come back sealed to the requester's key,
//! and the receipt binds how the job was sealed and the keyed hash of the
//! plaintext result.
#![cfg(all(feature = "std", feature = "e2e"))]

use tessera_core::attest::{ChainState, Ed25519Signer, Evidence, Receipt, ReceiptStatus};
use tessera_core::e2e::{
    expected_result_hash, open_outputs, output_prefix, output_receiver, seal_job, sealed_layout,
    KeyPair, PlainJob, Recipient, RequesterContext, SealedJob,
};
use tessera_core::host::SEALED_DID_NOT_OPEN;
use tessera_core::testkit::{decode, increment_run, Harness, JobDescription};
use tessera_core::wire::{
    ErrorMsg, FailReason, JobAssign, Message, Sealing, Welcome, PROTOCOL_VERSION_2,
    PROTOCOL_VERSION_3,
};
use tessera_core::{Agent, Config, ConnState, ErrorCode, Policy};

const CHALLENGE: [u8; 32] = [0xC4; 32];
const NONCE: [u8; 32] = [0x4E; 32];
const RESULT_KEY: [u8; 32] = [0x7E; 32];
/// Bytes of input (buffer 0) and of output (buffer 1), in the clear.
const INPUT: usize = 3000;
const OUTPUT: u64 = 2000;

struct Session {
    h: Harness,
    /// The evidence the agent sent: its session key and device key.
    evidence: Evidence,
}

/// An agent whose host drew a session key, connected at `version`.
fn session(version: u16, with_key: bool) -> Session {
    let signer = Ed25519Signer::from_seed(&[7; 32]).unwrap();
    let config = Config {
        capabilities: tessera_core::attest::DeviceCapabilities {
            device_local_bytes: 1 << 30,
            ..Default::default()
        },
        policy: Policy::default(),
        ..Config::default()
    };
    let agent = Agent::new(config, signer, ChainState::default()).unwrap();
    let mut h = Harness::new(agent, increment_run);
    if with_key {
        h.host.job_host.new_session_key(&mut h.agent).unwrap();
    }
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
    let evidence = Evidence::verify(blob.bytes, &CHALLENGE).unwrap();
    h.send(&Message::Ready);
    h.pump();
    assert_eq!(h.agent.state(), ConnState::Ready);
    Session { h, evidence }
}

fn kernel() -> Vec<u8> {
    (0..1024u32).flat_map(|i| i.to_le_bytes()).collect()
}

fn input() -> Vec<u8> {
    (0..INPUT).map(|i| (i * 7) as u8).collect()
}

/// The requester's side: the job sealed for the session's provider, and
/// the description the coordinator sends (sealed streams, declared sizes).
fn sealed_job(e: &Evidence, requester: &KeyPair) -> (SealedJob, JobDescription) {
    let kernel = kernel();
    let input = input();
    let layout = sealed_layout(&[(0, INPUT as u64, INPUT as u64, false), (1, 0, OUTPUT, true)])
        .expect("layout");
    let job = PlainJob {
        entry_point: "main",
        specialization: &[],
        grid: [1, 1, 1],
        buffers: &layout,
        kernel: &kernel,
        push_constants: &[9, 9, 9, 9],
        inputs: &[&input, &[]],
        seal_kernel: true,
    };
    let provider = Recipient {
        enc_key: e.enc_key,
        device_key: e.public_key,
    };
    let ctx = RequesterContext::new(&provider, &[3; 32]).expect("context");
    let sealed = seal_job(&ctx, &NONCE, requester.public(), &RESULT_KEY, &job).expect("seals");
    let d = JobDescription {
        kernel: sealed.kernel.clone(),
        entry_point: "main".into(),
        grid: [1, 1, 1],
        push_constants: sealed.push_constants.clone(),
        buffers: vec![
            (sealed.inputs[0].clone(), layout[0].len, false),
            (Vec::new(), layout[1].len, true),
        ],
        bindings: Vec::new(),
        nonce: NONCE,
    };
    (sealed, d)
}

fn sealed_assign(d: &JobDescription, sealing: &Sealing, id: u64) -> JobAssign {
    let mut a = d.assign(id);
    a.sealing = Some(*sealing);
    a
}

/// Offers, assigns (sealed) and sends the inputs; returns what came back.
fn submit(h: &mut Harness, id: u64, d: &JobDescription, a: JobAssign) -> Vec<Vec<u8>> {
    h.send(&Message::JobOffer(d.offer(id, 1_000_000, 60_000)));
    let frames = h.pump();
    assert!(matches!(decode(&frames[0]), Message::OfferAccept(_)));
    h.send(&Message::JobAssign(a));
    for f in d.input_frames(id) {
        h.send_raw(&f);
    }
    h.pump()
}

fn outputs_and_receipt(frames: &[Vec<u8>], id: u64) -> (Vec<Vec<u8>>, Vec<u8>) {
    let mut outputs: Vec<Vec<u8>> = vec![Vec::new(); 2];
    let mut receipt = Vec::new();
    for f in frames {
        match decode(f) {
            Message::OutputChunk(c) if c.job == id => {
                outputs[c.stream as usize].extend_from_slice(c.data)
            }
            Message::Receipt(r) if r.job == id => receipt = r.bytes.to_vec(),
            _ => {}
        }
    }
    outputs.retain(|o| !o.is_empty());
    (outputs, receipt)
}

#[test]
fn a_sealed_job_runs_in_the_clear_on_the_host_only_and_comes_back_sealed() {
    let mut s = session(PROTOCOL_VERSION_3, true);
    assert_ne!(
        s.evidence.enc_key, [0; 32],
        "the evidence states a session key"
    );
    let requester = KeyPair::derive(&[2; 32]);
    let (sealed, d) = sealed_job(&s.evidence, &requester);
    let a = sealed_assign(&d, &sealed.sealing, 1);
    // What crosses the coordinator holds neither the input nor the kernel
    // in the clear.
    let wire: Vec<u8> = d.input_frames(1).concat();
    assert!(!wire.windows(32).any(|w| w == &input()[64..96]));
    assert!(!wire.windows(32).any(|w| w == &kernel()[64..96]));
    let frames = submit(&mut s.h, 1, &d, a.clone());
    let (outputs, receipt) = outputs_and_receipt(&frames, 1);
    assert!(!receipt.is_empty(), "a receipt: {:?}", s.h.host.log);
    let r = Receipt::verify(&receipt, &s.evidence.public_key).unwrap();
    assert_eq!(r.status, ReceiptStatus::Completed);
    // The receipt binds how the job was sealed.
    assert_eq!(r.kernel_hash, a.kernel_hash());
    let mut unsealed = a.clone();
    unsealed.sealing = None;
    assert_ne!(r.kernel_hash, unsealed.kernel_hash());
    // The outputs came back sealed, each its declared length, and open
    // with the requester's key to what the host computed in the clear:
    // increment_run's bytes of input 0, each plus one.
    assert_eq!(outputs[0].len() as u64, a.buffers[1].len);
    let (enc, _) = output_prefix(&outputs[0]).expect("prefix");
    let back = output_receiver(
        &requester,
        &s.evidence.public_key,
        &a.sealing.expect("sealed").enc,
        &enc,
    )
    .expect("receiver");
    let plain = open_outputs(&back, &a, &outputs).expect("opens");
    let want: Vec<u8> = input()[..OUTPUT as usize]
        .iter()
        .map(|b| b.wrapping_add(1))
        .collect();
    assert!(
        plain[0].as_slice() == want.as_slice(),
        "the output in the clear"
    );
    assert!(!outputs[0].windows(32).any(|w| w == &want[64..96]));
    // The result hash is the keyed hash of the plaintext, which the
    // requester recomputes; the seal is over it.
    let input = input();
    let expected = expected_result_hash(
        &RESULT_KEY,
        &a,
        &kernel(),
        &[9, 9, 9, 9],
        &[&input, &[]],
        &[&plain[0]],
    );
    assert_eq!(r.result_hash, expected);
    assert_eq!(
        r.result_seal,
        tessera_core::attest::result_seal(&s.evidence.public_key, 1, &expected)
    );
    // The host kept only the sealed outputs.
    assert!(s.h.host.job_host.jobs.values().all(|j| j
        .outputs
        .iter()
        .flatten()
        .all(|o| !o.windows(32).any(|w| w == &want[64..96]))));
}

#[test]
fn a_sealed_job_another_session_sealed_fails_as_input_integrity() {
    let mut s = session(PROTOCOL_VERSION_3, true);
    let requester = KeyPair::derive(&[2; 32]);
    // Sealed to a session key that is not this session's.
    let mut stale = s.evidence.clone();
    stale.enc_key = *KeyPair::derive(&[0x55; 32]).public();
    let (sealed, d) = sealed_job(&stale, &requester);
    let frames = submit(&mut s.h, 2, &d, sealed_assign(&d, &sealed.sealing, 2));
    let failed = frames.iter().find_map(|f| match decode(f) {
        Message::Failed(m) if m.job == 2 => Some(m),
        _ => None,
    });
    let failed = failed.expect("the job fails");
    assert_eq!(failed.reason, FailReason::InputIntegrity);
    assert_eq!(failed.detail, SEALED_DID_NOT_OPEN);
}

#[test]
fn a_sealed_assignment_is_refused_without_a_session_key_a_good_layout_or_version_3() {
    let requester = KeyPair::derive(&[2; 32]);
    let error_of = |frames: &[Vec<u8>]| {
        frames.iter().find_map(|f| match decode(f) {
            Message::Error(ErrorMsg { code, .. }) => Some(code),
            _ => None,
        })
    };
    // No session key: the provider takes no sealed jobs.
    let mut s = session(PROTOCOL_VERSION_3, false);
    assert_eq!(s.evidence.enc_key, [0; 32]);
    let mut e = s.evidence.clone();
    e.enc_key = *KeyPair::derive(&[0x55; 32]).public();
    let (sealed, d) = sealed_job(&e, &requester);
    s.h.send(&Message::JobOffer(d.offer(3, 1_000_000, 60_000)));
    s.h.pump();
    s.h.send(&Message::JobAssign(sealed_assign(&d, &sealed.sealing, 3)));
    let frames = s.h.pump();
    assert_eq!(error_of(&frames), Some(ErrorCode::BadAssignment as u16));
    assert_eq!(s.h.agent.job_state(3), None);

    // A read-back buffer of a length no sealed output has.
    let mut s = session(PROTOCOL_VERSION_3, true);
    let (sealed, mut d) = sealed_job(&s.evidence.clone(), &requester);
    d.buffers[1].1 = 48 + 65536 + 16;
    s.h.send(&Message::JobOffer(d.offer(4, 1_000_000, 60_000)));
    s.h.pump();
    s.h.send(&Message::JobAssign(sealed_assign(&d, &sealed.sealing, 4)));
    assert_eq!(error_of(&s.h.pump()), Some(ErrorCode::BadAssignment as u16));

    // Push constants of a length no sealed push constants have (4 bytes:
    // in the clear).
    let (sealed, mut d) = sealed_job(&s.evidence.clone(), &requester);
    d.push_constants = vec![1, 2, 3, 4];
    s.h.send(&Message::JobOffer(d.offer(5, 1_000_000, 60_000)));
    s.h.pump();
    s.h.send(&Message::JobAssign(sealed_assign(&d, &sealed.sealing, 5)));
    assert_eq!(error_of(&s.h.pump()), Some(ErrorCode::BadAssignment as u16));

    // A version 2 session has no sealed assignments: the job stays
    // accepted, the message is refused.
    let mut s = session(PROTOCOL_VERSION_2, true);
    let (sealed, d) = sealed_job(&s.evidence.clone(), &requester);
    s.h.send(&Message::JobOffer(d.offer(6, 1_000_000, 60_000)));
    s.h.pump();
    s.h.send(&Message::JobAssign(sealed_assign(&d, &sealed.sealing, 6)));
    assert_eq!(
        error_of(&s.h.pump()),
        Some(ErrorCode::UnexpectedMessage as u16)
    );
    assert!(s.h.agent.job_state(6).is_some());
}

/// A coordinator that sends a requester's sealed job again with its own
/// requester key (to have the outputs sealed to itself), or with another
/// clear part (another grid, the inputs read back, the kernel said to be in
/// the clear), gets no output: the job's key is bound to the job's
/// clear part, nothing opens, and the job fails as `InputIntegrity` 11.
#[test]
fn a_sealed_job_replayed_with_another_clear_part_opens_to_nothing() {
    let mut s = session(PROTOCOL_VERSION_3, true);
    let requester = KeyPair::derive(&[2; 32]);
    let thief = KeyPair::derive(&[0x66; 32]);
    let (sealed, d) = sealed_job(&s.evidence.clone(), &requester);
    let tampers: [&dyn Fn(&mut JobAssign); 4] = [
        &|a| {
            if let Some(x) = a.sealing.as_mut() {
                x.requester_key = *thief.public();
            }
        },
        &|a| a.kernel.grid = [2, 1, 1],
        &|a| a.buffers[0].readback = true,
        &|a| {
            if let Some(x) = a.sealing.as_mut() {
                x.kernel_sealed = false;
            }
        },
    ];
    for (i, tamper) in tampers.iter().enumerate() {
        let id = 20 + i as u64;
        let mut a = sealed_assign(&d, &sealed.sealing, id);
        tamper(&mut a);
        let mut offer = d.offer(id, 1_000_000, 60_000);
        offer.bytes_out = offer.bytes_out.max(a.bytes_out());
        s.h.send(&Message::JobOffer(offer));
        s.h.pump();
        s.h.send(&Message::JobAssign(a));
        for f in d.input_frames(id) {
            s.h.send_raw(&f);
        }
        let frames = s.h.pump();
        assert!(
            !frames
                .iter()
                .any(|f| matches!(decode(f), Message::OutputChunk(c) if c.job == id)),
            "tamper {i}: no output goes out"
        );
        let failed = frames.iter().find_map(|f| match decode(f) {
            Message::Failed(m) if m.job == id => Some(m),
            _ => None,
        });
        let failed = failed.unwrap_or_else(|| panic!("tamper {i}: the job fails"));
        assert_eq!(
            (failed.reason, failed.detail),
            (FailReason::InputIntegrity, SEALED_DID_NOT_OPEN),
            "tamper {i}"
        );
    }
}
