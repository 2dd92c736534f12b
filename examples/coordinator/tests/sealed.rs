//! Sealed jobs (`docs/PROTOCOL.md`, "Sealed jobs") through the reference
//! coordinator over TLS: the requester seals to a provider's session key,
//! the coordinator matches, meters and verifies ciphertext only, the
//! provider runs the job in the clear, and the requester opens the
//! outputs and checks the keyed result hash.

mod support;

use support::{client_tls, coordinator, ProviderOpts, TestProvider};
use tessera_coordinator::requester::{
    open_sealed_result, seal_submission, Requester, RequesterError, ResultCheckError,
};
use tessera_coordinator::{BufferInit, FailureCode, Submit};
use tessera_core::attest::{Ed25519Signer, Receipt, Signer};
use tessera_core::e2e;
use tessera_core::wire::Requirements;

/// The test providers' job: every read-back byte is input byte + 1. The
/// input holds a marker to look for where it must not be.
fn job(nonce: u8, len: usize) -> Submit {
    let mut input: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
    input[..32].copy_from_slice(b"TESSERA-SEALED-INPUT-MARKER-0001");
    Submit {
        kernel: (0..1024u32).flat_map(|i| i.to_le_bytes()).collect(),
        entry_point: "main".into(),
        specialization: vec![(0, 64)],
        push_constants: vec![1, 2, 3, 4],
        grid: [4, 1, 1],
        buffers: vec![
            BufferInit {
                binding: 0,
                init: input,
                len: len as u64,
                readback: false,
            },
            BufferInit {
                binding: 1,
                init: Vec::new(),
                len: len as u64,
                readback: true,
            },
        ],
        requirements: Requirements::default(),
        est_gpu_ms: 5,
        max_price: 10_000,
        deadline_ms: 10_000,
        nonce: [nonce; 32],
        sealed: None,
    }
}

fn incremented(job: &Submit) -> Vec<u8> {
    job.buffers[0]
        .init
        .iter()
        .map(|b| b.wrapping_add(1))
        .collect()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn a_sealed_job_runs_end_to_end_and_what_the_coordinator_holds_is_ciphertext() {
    let coord = coordinator(|_| {});
    let provider = TestProvider::start(coord.local_addr(), ProviderOpts::new(1));
    provider.wait_ready(1);
    let mut r = Requester::connect(coord.local_addr(), client_tls()).expect("connects");
    let listed = r.providers().expect("providers");
    assert_eq!(listed.len(), 1, "the provider states a session key");
    assert_ne!(listed[0].0.enc_key, [0; 32]);
    let j = job(7, 20_000);
    let sealed = r.submit_sealed(&j).expect("a verified sealed result");
    // The outputs in the clear are what the provider computed.
    assert_eq!(sealed.outputs.len(), 1);
    assert!(sealed.outputs[0].as_slice() == incremented(&j).as_slice());
    // What the coordinator delivered (and held) is sealed: neither the
    // input's marker nor the output's appear in it.
    let delivered = &sealed.result.outputs[0];
    assert!(!contains(delivered, &j.buffers[0].init[..32]));
    assert!(!contains(delivered, &incremented(&j)[..32]));
    assert!(!contains(delivered, &incremented(&j)[1000..1032]));
    let receipt = Receipt::verify_any(&sealed.result.receipt, &sealed.provider).expect("receipt");
    assert_eq!(receipt.output_len, delivered.len() as u64);
    provider.wait_acked(1);
    drop(provider);
}

#[test]
fn a_tampered_sealed_output_or_result_hash_is_caught_by_the_requester() {
    let coord = coordinator(|_| {});
    let provider = TestProvider::start(coord.local_addr(), ProviderOpts::new(2));
    provider.wait_ready(1);
    let mut r = Requester::connect(coord.local_addr(), client_tls()).expect("connects");
    let (evidence, _) = r.providers().expect("providers").remove(0);
    let j = job(8, 3000);
    let keys = e2e::KeyPair::derive(&[0x42; 32]);
    let result_key = [0x17; 32];
    let recipient = e2e::Recipient {
        enc_key: evidence.enc_key,
        device_key: evidence.public_key,
    };
    let ctx = e2e::RequesterContext::new(&recipient, &[9; 32]).expect("context");
    let submit = seal_submission(&j, &evidence, &ctx, j.nonce, keys.public(), &result_key)
        .expect("sealed submission");
    let result = r.submit(&submit).expect("verified at the ciphertext level");
    let outputs = open_sealed_result(&j, &submit, &result, &keys, &result_key).expect("opens");
    assert!(outputs[0].as_slice() == incremented(&j).as_slice());
    // Another result key than the one sealed in: the keyed hash differs.
    assert_eq!(
        open_sealed_result(&j, &submit, &result, &keys, &[0x18; 32]).err(),
        Some(ResultCheckError::SealedResultHash)
    );
    // The job in the clear said otherwise (another input): caught too.
    let mut other = j.clone();
    other.buffers[0].init[100] ^= 1;
    assert_eq!(
        open_sealed_result(&other, &submit, &result, &keys, &result_key).err(),
        Some(ResultCheckError::SealedResultHash)
    );
    // A flipped byte of a sealed output does not open.
    let mut forged = result.clone();
    forged.outputs[0][40] ^= 1;
    assert_eq!(
        open_sealed_result(&j, &submit, &forged, &keys, &result_key).err(),
        Some(ResultCheckError::Sealed(e2e::SealError::Forged))
    );
    // Another requester key opens nothing.
    assert_eq!(
        open_sealed_result(
            &j,
            &submit,
            &result,
            &e2e::KeyPair::derive(&[1; 32]),
            &result_key
        )
        .err(),
        Some(ResultCheckError::Sealed(e2e::SealError::Forged))
    );
    drop(provider);
}

/// Replicas of one job, sealed to two providers with one result key, give
/// the same result hash, which the coordinator compares without the key;
/// a job sealed for a session that has ended is refused, not sent to the
/// provider's next session.
#[test]
fn replicas_compare_by_result_hash_and_a_stale_session_key_is_refused() {
    let coord = coordinator(|_| {});
    let a = TestProvider::start(coord.local_addr(), ProviderOpts::new(3));
    let b = TestProvider::start(coord.local_addr(), ProviderOpts::new(4));
    a.wait_ready(1);
    b.wait_ready(1);
    let mut r = Requester::connect(coord.local_addr(), client_tls()).expect("connects");
    let providers = r.providers().expect("providers");
    assert_eq!(providers.len(), 2);
    let j = job(9, 5000);
    let result_key = [0x77; 32];
    let keys = e2e::KeyPair::derive(&[0x43; 32]);
    let mut hashes = Vec::new();
    let mut submissions = Vec::new();
    for (i, (evidence, _)) in providers.iter().enumerate() {
        let ctx = e2e::RequesterContext::new(
            &e2e::Recipient {
                enc_key: evidence.enc_key,
                device_key: evidence.public_key,
            },
            &[i as u8; 32],
        )
        .expect("context");
        let submit = seal_submission(&j, evidence, &ctx, j.nonce, keys.public(), &result_key)
            .expect("submission");
        let result = r.submit(&submit).expect("result");
        assert_eq!(result.provider_public_key, evidence.public_key, "pinned");
        open_sealed_result(&j, &submit, &result, &keys, &result_key).expect("opens");
        let receipt =
            Receipt::verify_any(&result.receipt, &result.provider_public_key).expect("receipt");
        hashes.push(receipt.result_hash);
        submissions.push(submit);
    }
    assert_eq!(
        hashes[0], hashes[1],
        "replicas agree on the keyed result hash"
    );
    // Provider 3 restarts: its new session has a new key, and the job
    // sealed to the old one is not offered to it.
    drop(a);
    let a = TestProvider::start(coord.local_addr(), ProviderOpts::new(3));
    a.wait_ready(1);
    let key_3 = Ed25519Signer::from_seed(&[3; 32])
        .expect("seed")
        .public_key();
    let mut stale = submissions
        .into_iter()
        .find(|s| s.sealed.expect("sealed").provider == key_3)
        .expect("one for provider 3");
    stale.nonce = [10; 32];
    match r.submit(&stale) {
        Err(RequesterError::Failed(f)) => {
            assert_eq!(f.code, FailureCode::ProviderUnavailable, "{}", f.reason)
        }
        other => panic!("expected ProviderUnavailable, got {other:?}"),
    }
    drop((a, b));
}

/// A requester seals only to the device keys it pinned, and draws a fresh
/// nonce for every sealing (one context never seals two jobs under one).
#[test]
fn a_requester_seals_to_pinned_keys_only_and_never_reuses_a_nonce() {
    let coord = coordinator(|_| {});
    let a = TestProvider::start(coord.local_addr(), ProviderOpts::new(5));
    a.wait_ready(1);
    let key_5 = Ed25519Signer::from_seed(&[5; 32])
        .expect("seed")
        .public_key();
    let mut r = Requester::connect(coord.local_addr(), client_tls()).expect("connects");
    r.trust_providers(&[[0xAB; 32]]);
    let j = job(11, 2000);
    assert!(matches!(
        r.submit_sealed(&j),
        Err(RequesterError::NoSealingProvider)
    ));
    let (evidence, _) = r.providers().expect("providers").remove(0);
    assert!(matches!(
        r.submit_sealed_to(&j, &evidence),
        Err(RequesterError::UntrustedProvider)
    ));
    r.trust_providers(&[key_5]);
    let first = r.submit_sealed(&j).expect("pinned provider");
    let second = r.submit_sealed(&j).expect("the same job again");
    assert_eq!(first.provider, key_5);
    assert_ne!(first.submit.nonce, j.nonce, "a nonce of its own");
    assert_ne!(first.submit.nonce, second.submit.nonce);
    assert!(first.outputs[0].as_slice() == second.outputs[0].as_slice());
    drop(a);
}
