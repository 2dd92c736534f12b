//! The coordinator, requesters and providers over real TLS on loopback.

mod support;

use std::io::Write;
use std::time::{Duration, Instant};

use support::{
    client_tls, coordinator, provider_hello, read_provider_frame, ProviderOpts, TestProvider,
};
use tessera_coordinator::demo::{bytes_f32, matmul_cpu, matmul_run, matmul_submit};
use tessera_coordinator::requester::{self, Requester, RequesterError};
use tessera_coordinator::tls::{client_config, Trust};
use tessera_coordinator::{
    submit, verify_result, BufferInit, FailureCode, JobResult, ResultCheckError, Submit,
};
use tessera_core::attest::{DeviceCapabilities, Ed25519Signer, Evidence, Receipt, Signer};
use tessera_core::job::ReceiptCheckError;
use tessera_core::testkit::{encode, FrameSplitter};
use tessera_core::wire::{Blob, FailReason, JobAssign, Message, Requirements, Usage};
use tessera_core::ErrorCode;

fn increment_job(nonce: u8, len: usize, max_price: u64) -> Submit {
    Submit {
        kernel: (0..1024u32).flat_map(|i| i.to_le_bytes()).collect(),
        entry_point: "main".into(),
        specialization: vec![(0, 64)],
        push_constants: vec![1, 2, 3, 4],
        grid: [4, 1, 1],
        buffers: vec![
            BufferInit {
                binding: 0,
                init: (0..len).map(|i| (i % 251) as u8).collect(),
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
        max_price,
        deadline_ms: 10_000,
        nonce: [nonce; 32],
        sealed: None,
    }
}

fn expect_incremented(job: &Submit, result: &JobResult) {
    let want: Vec<u8> = job.buffers[0]
        .init
        .iter()
        .map(|b| b.wrapping_add(1))
        .collect();
    assert_eq!(result.outputs, vec![want]);
}

fn sequence(result: &JobResult) -> u64 {
    Receipt::verify(&result.receipt, &result.provider_public_key)
        .expect("receipt verifies")
        .sequence
}

#[test]
fn happy_path_delivers_a_verified_result() {
    let coord = coordinator(|_| {});
    let provider = TestProvider::start(coord.local_addr(), ProviderOpts::new(1));
    provider.wait_ready(1);
    let job = increment_job(7, 20_000, 10_000);
    let result = submit(coord.local_addr(), client_tls(), &job).expect("verified result");
    expect_incremented(&job, &result);
    let check = verify_result(&job, &result).expect("verifies again");
    assert_eq!(check.receipt.sequence, 1);
    assert_eq!(check.evidence.capabilities.name.as_str(), "cpu test device");
    assert_eq!(check.spot_check.1, 3, "20000 bytes are 3 chunks");
    // A byte changed in any chunk of the outputs breaks the root the
    // receipt signed.
    for at in [0, 9_000, 19_999] {
        let mut forged = result.clone();
        forged.outputs[0][at] ^= 1;
        assert!(matches!(
            verify_result(&job, &forged),
            Err(ResultCheckError::Check(ReceiptCheckError::OutputRoot))
        ));
    }
    // The receipt binds the buffer layout: checked against a submission
    // whose input buffer is one byte larger, the same result is not its own.
    let mut larger = job.clone();
    larger.buffers[0].len += 1;
    assert!(matches!(
        verify_result(&larger, &result),
        Err(ResultCheckError::Check(ReceiptCheckError::KernelHash))
    ));
    let providers = coord.providers();
    assert_eq!(providers.len(), 1);
    assert_eq!(providers[0].chain.map(|c| c.next_sequence), Some(2));
    assert!(providers[0].last_quote.is_some());
    provider.wait_acked(1);
    let report = provider.stop();
    assert_eq!(report.stats.jobs_completed, 1);
    assert_eq!(report.stats.earnings, result.price);
}

#[test]
fn a_decline_on_price_goes_to_the_next_provider_and_nobody_taking_it_is_explained() {
    let coord = coordinator(|_| {});
    let mut dear = ProviderOpts::new(2);
    dear.floor = 50_000;
    let dear = TestProvider::start(coord.local_addr(), dear);
    let cheap = TestProvider::start(coord.local_addr(), ProviderOpts::new(3));
    dear.wait_ready(1);
    cheap.wait_ready(1);
    let cheap_key = Ed25519Signer::from_seed(&[3; 32])
        .expect("seed")
        .public_key();
    // Offers rotate among providers of equal standing, so over two jobs the
    // dear one is asked at least once.
    for nonce in 0..2 {
        let job = increment_job(nonce, 9000, 1000);
        let result =
            submit(coord.local_addr(), client_tls(), &job).expect("cheap provider runs it");
        assert_eq!(result.provider_public_key, cheap_key);
        expect_incremented(&job, &result);
    }
    match submit(coord.local_addr(), client_tls(), &increment_job(9, 100, 10)) {
        Err(RequesterError::Failed(f)) => {
            assert_eq!(f.code, FailureCode::AllDeclined);
            assert!(f.reason.contains("PriceTooLow"), "{}", f.reason);
        }
        other => panic!("expected every provider to decline, got {other:?}"),
    }
    let dear = dear.stop();
    assert!(dear.stats.offers_declined >= 2, "{:?}", dear.stats);
    assert_eq!(dear.stats.offers_accepted, 0);
    drop(cheap);
}

#[test]
fn a_job_no_provider_can_run_is_refused_with_the_reason() {
    let coord = coordinator(|_| {});
    let provider = TestProvider::start(coord.local_addr(), ProviderOpts::new(4));
    provider.wait_ready(1);
    let mut job = increment_job(1, 100, 10_000);
    job.requirements.memory_mib = 1 << 20;
    match submit(coord.local_addr(), client_tls(), &job) {
        Err(RequesterError::Failed(f)) => assert_eq!(f.code, FailureCode::NoCapableProvider),
        other => panic!("expected no capable provider, got {other:?}"),
    }
    let mut bad = increment_job(1, 100, 10_000);
    bad.kernel.push(0);
    match submit(coord.local_addr(), client_tls(), &bad) {
        Err(RequesterError::Failed(f)) => assert_eq!(f.code, FailureCode::Invalid),
        other => panic!("expected the submission to be refused, got {other:?}"),
    }
}

#[test]
fn evidence_over_the_wrong_challenge_is_refused() {
    let coord = coordinator(|_| {});
    let mut stream = requester::connect(coord.local_addr(), client_tls()).expect("connects");
    let mut signer = Ed25519Signer::from_seed(&[5; 32]).expect("seed");
    let mut splitter = FrameSplitter::default();
    let w = provider_hello(&mut stream, &signer, &mut splitter);
    // Evidence answering another challenge, as a replayed one would.
    let mut wrong = w.challenge;
    wrong[0] ^= 0xFF;
    let evidence = Evidence {
        challenge: wrong,
        public_key: signer.public_key(),
        agent_version: [0, 1, 0],
        boot_id: [0; 16],
        issued_at: 1,
        chain: Default::default(),
        capabilities: DeviceCapabilities::default(),
        enc_key: [0; 32],
        hardware_report: tessera_core::attest::HardwareReport::NONE,
    };
    let mut signed = [0u8; tessera_core::attest::EVIDENCE_LEN];
    let n = evidence.sign(&mut signer, &mut signed).expect("signs");
    let msg = Message::Evidence(Blob {
        bytes: &signed[..n],
    });
    stream.write_all(&encode(&msg)).expect("evidence");
    let reply = read_provider_frame(&mut stream, &mut splitter).expect("an answer");
    match Message::decode(&reply) {
        Ok(Message::Error(e)) => assert_eq!(e.code, ErrorCode::EvidenceRejected as u16),
        other => panic!("expected EvidenceRejected, got {other:?}"),
    }
    assert!(
        read_provider_frame(&mut stream, &mut splitter).is_none(),
        "the session ends"
    );
    assert!(coord.providers().is_empty());
    assert_eq!(coord.stats().sessions_refused, 1);
}

#[test]
fn a_tampered_receipt_is_rejected_reported_and_the_chain_recovers() {
    let coord = coordinator(|_| {});
    let mut opts = ProviderOpts::new(6);
    opts.tamper_receipt_once = true;
    let provider = TestProvider::start(coord.local_addr(), opts);
    provider.wait_ready(1);
    match submit(
        coord.local_addr(),
        client_tls(),
        &increment_job(1, 10_000, 10_000),
    ) {
        Err(RequesterError::Failed(f)) => {
            assert_eq!(f.code, FailureCode::ReceiptRejected);
            assert!(f.reason.contains("BadSignature"), "{}", f.reason);
        }
        other => panic!("expected the tampered receipt to be rejected, got {other:?}"),
    }
    // The session was ended; the provider reconnects and resends the genuine
    // receipt, which is acknowledged, so the next receipt continues the chain.
    provider.wait_ready(2);
    let job = increment_job(2, 10_000, 10_000);
    let result = submit(coord.local_addr(), client_tls(), &job).expect("next job verifies");
    expect_incremented(&job, &result);
    assert_eq!(sequence(&result), 2);
    let stats = coord.stats();
    assert_eq!(stats.receipts_rejected, 1);
    assert_eq!(stats.receipts_verified, 2);
    provider.wait_acked(2);
    let report = provider.stop();
    assert_eq!(report.stats.jobs_completed, 2, "{:?}", report.log);
}

#[test]
fn a_result_interrupted_before_its_receipt_is_delivered_after_reconnect() {
    let coord = coordinator(|_| {});
    let mut opts = ProviderOpts::new(7);
    opts.drop_after_completed_once = true;
    let provider = TestProvider::start(coord.local_addr(), opts);
    provider.wait_ready(1);
    let job = increment_job(3, 30_000, 10_000);
    let result = submit(coord.local_addr(), client_tls(), &job).expect("delivered after reconnect");
    expect_incremented(&job, &result);
    assert_eq!(sequence(&result), 1);
    // It came on the provider's second session. (The test provider counts a
    // session once it has done all the session's first turn asks, which
    // includes resending this result: the count may follow the result.)
    provider.wait_ready(2);
    let job = increment_job(4, 100, 10_000);
    let result = submit(coord.local_addr(), client_tls(), &job).expect("next job");
    assert_eq!(sequence(&result), 2, "the chain is unbroken");
    provider.wait_acked(2);
    let report = provider.stop();
    assert_eq!(report.stats.jobs_completed, 2);
}

#[test]
fn a_receipt_resent_after_a_lost_ack_is_acknowledged_without_advancing_the_chain() {
    let coord = coordinator(|_| {});
    let mut opts = ProviderOpts::new(13);
    opts.drop_after_receipt_once = true;
    let provider = TestProvider::start(coord.local_addr(), opts);
    provider.wait_ready(1);
    let job = increment_job(5, 20_000, 10_000);
    let result = submit(coord.local_addr(), client_tls(), &job).expect("delivered");
    expect_incremented(&job, &result);
    let until = Instant::now() + Duration::from_secs(10);
    while coord.stats().receipts_repeated == 0 {
        assert!(
            Instant::now() < until,
            "the provider never resent its receipt"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let result = submit(
        coord.local_addr(),
        client_tls(),
        &increment_job(6, 100, 10_000),
    )
    .expect("next job");
    assert_eq!(sequence(&result), 2);
    let stats = coord.stats();
    assert_eq!((stats.receipts_verified, stats.receipts_repeated), (2, 1));
    provider.wait_acked(2);
    let report = provider.stop();
    assert_eq!(report.stats.jobs_completed, 2, "both results acknowledged");
}

#[test]
fn a_provider_that_hangs_still_leaves_the_requester_an_answer() {
    let coord = coordinator(|_| {});
    let mut opts = ProviderOpts::new(14);
    opts.freeze_after_accept = true;
    let provider = TestProvider::start(coord.local_addr(), opts);
    provider.wait_ready(1);
    let mut job = increment_job(1, 100, 10_000);
    job.deadline_ms = 300;
    let started = Instant::now();
    match submit(coord.local_addr(), client_tls(), &job) {
        Err(RequesterError::Failed(f)) => assert_eq!(f.code, FailureCode::Timeout, "{}", f.reason),
        other => panic!("expected a timeout, got {other:?}"),
    }
    // Deadline 300 ms plus the test coordinator's 500 ms grace.
    assert!(started.elapsed() < Duration::from_secs(5));
    drop(provider);
}

#[test]
fn drained_providers_leave_and_take_no_new_jobs() {
    let coord = coordinator(|_| {});
    let provider = TestProvider::start(coord.local_addr(), ProviderOpts::new(15));
    provider.wait_ready(1);
    coord.drain_providers();
    let until = Instant::now() + Duration::from_secs(10);
    while coord.providers().iter().any(|p| p.connected) {
        assert!(Instant::now() < until, "the provider never left");
        std::thread::sleep(Duration::from_millis(10));
    }
    match submit(
        coord.local_addr(),
        client_tls(),
        &increment_job(1, 100, 10_000),
    ) {
        Err(RequesterError::Failed(f)) => assert_eq!(f.code, FailureCode::NoCapableProvider),
        other => panic!("expected no provider, got {other:?}"),
    }
    let report = provider.stop();
    assert_eq!(report.sessions, 1);
    assert!(
        report.log.iter().any(|l| l.contains("Drained")),
        "{:?}",
        report.log
    );
}

#[test]
fn a_large_job_streams_megabytes_both_ways() {
    let coord = coordinator(|_| {});
    let provider = TestProvider::start(coord.local_addr(), ProviderOpts::new(16));
    provider.wait_ready(1);
    let job = increment_job(3, 3 << 20, 10_000);
    let started = Instant::now();
    let result = submit(coord.local_addr(), client_tls(), &job).expect("verified");
    eprintln!("3 MiB in, 3 MiB out: {:?}", started.elapsed());
    expect_incremented(&job, &result);
}

#[test]
fn a_failed_job_comes_back_as_a_signed_failure() {
    fn out_of_memory(_: &JobAssign, _: &[Vec<u8>]) -> Result<(Vec<Vec<u8>>, Usage), FailReason> {
        Err(FailReason::OutOfMemory)
    }
    let coord = coordinator(|_| {});
    let mut opts = ProviderOpts::new(8);
    opts.run = out_of_memory;
    let provider = TestProvider::start(coord.local_addr(), opts);
    provider.wait_ready(1);
    match submit(
        coord.local_addr(),
        client_tls(),
        &increment_job(1, 100, 10_000),
    ) {
        Err(RequesterError::Failed(f)) => {
            assert_eq!(f.code, FailureCode::JobFailed);
            assert!(
                matches!(f.provider, Some((FailReason::OutOfMemory, _))),
                "{:?}",
                f.provider
            );
            assert!(f.reason.contains("out of memory"), "{}", f.reason);
            let key = Ed25519Signer::from_seed(&[8; 32])
                .expect("seed")
                .public_key();
            let receipt = Receipt::verify(&f.receipt.expect("a receipt"), &key).expect("signed");
            assert_eq!(receipt.sequence, 1);
        }
        other => panic!("expected a signed failure, got {other:?}"),
    }
    provider.wait_acked(1);
    let report = provider.stop();
    assert_eq!(
        report.stats.jobs_failed, 1,
        "the failure receipt was acknowledged"
    );
}

#[test]
fn clients_with_the_wrong_ca_or_pin_are_refused_and_the_right_pin_works() {
    let coord = coordinator(|_| {});
    let other = tessera_coordinator::certs::generate(&[]).expect("other CA");
    let wrong_ca = client_config(&Trust::CaPem(other.ca_pem.into_bytes())).expect("config");
    let job = increment_job(1, 100, 10_000);
    assert!(matches!(
        submit(coord.local_addr(), wrong_ca, &job),
        Err(RequesterError::Tls(_))
    ));
    let wrong_pin = client_config(&Trust::PinnedKey(other.server_spki_sha256)).expect("config");
    assert!(matches!(
        submit(coord.local_addr(), wrong_pin, &job),
        Err(RequesterError::Tls(_))
    ));
    let provider = TestProvider::start(coord.local_addr(), ProviderOpts::new(9));
    provider.wait_ready(1);
    let pin = support::bundle().server_spki_sha256;
    let pinned = client_config(&Trust::PinnedKey(pin)).expect("pinned config");
    let result = submit(coord.local_addr(), pinned, &job).expect("pinned client works");
    expect_incremented(&job, &result);
}

#[test]
fn twenty_sequential_jobs_extend_one_chain() {
    let coord = coordinator(|_| {});
    let provider = TestProvider::start(coord.local_addr(), ProviderOpts::new(10));
    provider.wait_ready(1);
    let job_for = |i: u8| increment_job(i, 1000 + 700 * i as usize, 10_000);
    let started = Instant::now();
    for i in 0..10u8 {
        let job = job_for(i);
        let result = submit(coord.local_addr(), client_tls(), &job).expect("verified");
        expect_incremented(&job, &result);
        assert_eq!(sequence(&result), i as u64 + 1);
    }
    let fresh = started.elapsed();
    let started = Instant::now();
    let mut requester = Requester::connect(coord.local_addr(), client_tls()).expect("connects");
    for i in 10..20u8 {
        let job = job_for(i);
        let result = requester.submit(&job).expect("verified");
        expect_incremented(&job, &result);
        assert_eq!(sequence(&result), i as u64 + 1);
    }
    requester.close();
    eprintln!(
        "10 jobs on fresh TLS connections: {fresh:?}; 10 jobs on one connection: {:?}",
        started.elapsed()
    );
    let providers = coord.providers();
    assert_eq!(providers[0].chain.map(|c| c.next_sequence), Some(21));
    provider.wait_acked(20);
    assert_eq!(provider.stop().stats.jobs_completed, 20);
}

#[test]
fn matmul_on_a_cpu_provider_matches_the_reference() {
    let coord = coordinator(|_| {});
    let mut opts = ProviderOpts::new(11);
    opts.run = matmul_run;
    let provider = TestProvider::start(coord.local_addr(), opts);
    provider.wait_ready(1);
    let n = 48usize;
    let a: Vec<f32> = (0..n * n).map(|i| (i % 7) as f32 - 3.0).collect();
    let b: Vec<f32> = (0..n * n).map(|i| (i % 5) as f32 * 0.5).collect();
    let kernel = vec![0x03, 0x02, 0x23, 0x07, 0, 0, 0, 0];
    let job = matmul_submit(kernel, n as u32, 16, &a, &b, 100_000, [1; 32]);
    let result = submit(coord.local_addr(), client_tls(), &job).expect("verified");
    assert_eq!(bytes_f32(&result.outputs[0]), matmul_cpu(n, &a, &b));
    drop(provider);
}

#[test]
fn chain_positions_survive_a_coordinator_restart() {
    let dir = std::env::temp_dir().join(format!("tessera-coord-state-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let d = dir.clone();
    let first = coordinator(move |c| c.state_dir = Some(d));
    let provider = TestProvider::start(first.local_addr(), ProviderOpts::new(12));
    provider.wait_ready(1);
    submit(
        first.local_addr(),
        client_tls(),
        &increment_job(1, 100, 10_000),
    )
    .expect("job 1");
    let report = provider.stop();
    first.shutdown();

    let d = dir.clone();
    let second = coordinator(move |c| c.state_dir = Some(d));
    let mut opts = ProviderOpts::new(12);
    opts.chain = report.chain;
    let provider = TestProvider::start(second.local_addr(), opts);
    provider.wait_ready(1);
    let before = second.providers();
    assert_eq!(
        before[0].chain.map(|c| c.next_sequence),
        Some(2),
        "loaded from the state directory"
    );
    let result = submit(
        second.local_addr(),
        client_tls(),
        &increment_job(2, 100, 10_000),
    )
    .expect("job 2");
    assert_eq!(sequence(&result), 2);
    drop(provider);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_hundred_providers_at_once() {
    let coord = coordinator(|_| {});
    let started = Instant::now();
    let providers: Vec<TestProvider> = (0..100u8)
        .map(|i| {
            let mut opts = ProviderOpts::new(100 + i);
            opts.poll = Duration::from_millis(50);
            TestProvider::start(coord.local_addr(), opts)
        })
        .collect();
    for p in &providers {
        p.wait_ready(1);
    }
    let connected = started.elapsed();
    assert_eq!(
        coord.providers().iter().filter(|p| p.connected).count(),
        100
    );
    let started = Instant::now();
    let addr = coord.local_addr();
    let workers: Vec<_> = (0..4u8)
        .map(|w| {
            std::thread::spawn(move || {
                for i in 0..5u8 {
                    let job = increment_job(w * 10 + i, 4096, 10_000);
                    let result = submit(addr, client_tls(), &job).expect("verified");
                    expect_incremented(&job, &result);
                }
            })
        })
        .collect();
    for w in workers {
        w.join().expect("worker");
    }
    eprintln!(
        "100 providers ready in {connected:?}; 20 jobs from 4 requesters in {:?}",
        started.elapsed()
    );
    drop(providers);
}

/// A requester's requests sent ahead of their answers are worked on at once
/// and answered in the order sent: a second job runs while the first waits
/// on a provider that never answers, and its answer still comes second.
#[test]
fn requests_sent_ahead_are_worked_on_at_once_and_answered_in_order() {
    use tessera_coordinator::protocol::{read_frame, response_limit, Response};
    let coord = coordinator(|_| {});
    let mut frozen = ProviderOpts::new(15);
    frozen.freeze_after_accept = true;
    let stuck = TestProvider::start(coord.local_addr(), frozen);
    stuck.wait_ready(1);
    let mut first = increment_job(1, 100, 10_000);
    first.deadline_ms = 5_000;
    let mut stream = requester::connect(coord.local_addr(), client_tls()).expect("connects");
    requester::write_submit(&mut stream, &first).expect("sent");
    // The stuck provider holds the first job before the other connects.
    let until = Instant::now() + Duration::from_secs(10);
    while coord.stats().jobs_submitted == 0 {
        assert!(Instant::now() < until, "the first job was never submitted");
        std::thread::sleep(Duration::from_millis(5));
    }
    let provider = TestProvider::start(coord.local_addr(), ProviderOpts::new(16));
    provider.wait_ready(1);
    let second = increment_job(2, 3000, 10_000);
    requester::write_submit(&mut stream, &second).expect("sent");
    // The second job runs and is acknowledged while the first is still
    // unanswered (it is answered only at its deadline, seconds away).
    provider.wait_acked(1);
    stream
        .sock
        .set_read_timeout(Some(Duration::from_millis(50)))
        .expect("timeout");
    let mut peek = [0u8; 1];
    let early = std::io::Read::read(&mut stream, &mut peek);
    assert!(
        matches!(&early, Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut)),
        "nothing is answered before the first job's answer: {early:?}"
    );
    stream
        .sock
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    match read_frame::<Response>(&mut stream, response_limit(&first)).expect("first answer") {
        Response::Failed(f) => assert_eq!(f.code, FailureCode::Timeout, "{}", f.reason),
        other => panic!("the first answer is the first job's timeout, not {other:?}"),
    }
    match read_frame::<Response>(&mut stream, response_limit(&second)).expect("second answer") {
        Response::Result(r) => {
            verify_result(&second, &r).expect("verifies");
            expect_incremented(&second, &r);
        }
        other => panic!("the second answer is the second job's result, not {other:?}"),
    }
    drop(stuck);
    provider.stop();
}

/// More requests than the coordinator takes in flight, sent at once with a
/// refused one among them: it reads on as answers go out, and every answer
/// comes in order. `Requester::submit_all` gets the same.
#[test]
fn more_requests_than_may_be_in_flight_are_all_answered_in_order() {
    use tessera_coordinator::protocol::{read_frame, response_limit, Response, MAX_IN_FLIGHT};
    let coord = coordinator(|_| {});
    let provider = TestProvider::start(coord.local_addr(), ProviderOpts::new(17));
    provider.wait_ready(1);
    let n = MAX_IN_FLIGHT + 8;
    let mut jobs: Vec<Submit> = (0..n)
        .map(|i| increment_job(i as u8, 200 + 97 * i, 10_000))
        .collect();
    // Refused by the coordinator itself (no entry point), answered in its
    // place.
    jobs[5].entry_point = String::new();
    let mut stream = requester::connect(coord.local_addr(), client_tls()).expect("connects");
    for job in &jobs {
        requester::write_submit(&mut stream, job).expect("sent");
    }
    let check = |i: usize, job: &Submit, response: Response| match response {
        Response::Failed(f) if i == 5 => assert_eq!(f.code, FailureCode::Invalid, "{}", f.reason),
        Response::Result(r) if i != 5 => {
            verify_result(job, &r).expect("verifies");
            expect_incremented(job, &r);
        }
        other => panic!("answer {i}: {other:?}"),
    };
    for (i, job) in jobs.iter().enumerate() {
        check(
            i,
            job,
            read_frame(&mut stream, response_limit(job)).expect("answer"),
        );
    }
    // The connection goes on after them.
    let last = increment_job(200, 100, 10_000);
    requester::write_submit(&mut stream, &last).expect("sent");
    check(
        n,
        &last,
        read_frame(&mut stream, response_limit(&last)).expect("answer"),
    );

    let mut r = Requester::connect(coord.local_addr(), client_tls()).expect("connects");
    let results = r.submit_all(&jobs, MAX_IN_FLIGHT);
    assert_eq!(results.len(), n);
    for (i, (job, result)) in jobs.iter().zip(results).enumerate() {
        match result {
            Err(RequesterError::Failed(f)) if i == 5 => assert_eq!(f.code, FailureCode::Invalid),
            Ok(r) if i != 5 => expect_incremented(job, &r),
            other => panic!("job {i}: {other:?}"),
        }
    }
    r.close();
    provider.stop();
}

fn slow_increment_run(
    spec: &JobAssign,
    buffers: &[Vec<u8>],
) -> Result<(Vec<Vec<u8>>, Usage), FailReason> {
    std::thread::sleep(Duration::from_secs(2));
    tessera_core::testkit::increment_run(spec, buffers)
}

/// Answers held behind a slow one go out together once it comes: two 3 MiB
/// results, over the outbox's 4 MiB cap together, both reach the requester.
#[test]
fn large_answers_held_behind_a_slow_one_all_reach_the_requester() {
    use tessera_coordinator::protocol::{read_frame, response_limit, Response};
    let coord = coordinator(|_| {});
    let mut slow = ProviderOpts::new(18);
    slow.run = slow_increment_run;
    let slow = TestProvider::start(coord.local_addr(), slow);
    slow.wait_ready(1);
    let jobs: Vec<Submit> = (0..2u8)
        .map(|i| increment_job(i, 3 << 20, 10_000))
        .collect();
    let mut stream = requester::connect(coord.local_addr(), client_tls()).expect("connects");
    requester::write_submit(&mut stream, &jobs[0]).expect("sent");
    let until = Instant::now() + Duration::from_secs(10);
    while coord.stats().jobs_submitted == 0 {
        assert!(Instant::now() < until, "the first job was never submitted");
        std::thread::sleep(Duration::from_millis(5));
    }
    // A cheaper, fast provider takes the second job: its result is held
    // until the first's comes.
    let mut fast = ProviderOpts::new(19);
    fast.price.base = 1;
    let fast = TestProvider::start(coord.local_addr(), fast);
    fast.wait_ready(1);
    requester::write_submit(&mut stream, &jobs[1]).expect("sent");
    for (i, job) in jobs.iter().enumerate() {
        match read_frame::<Response>(&mut stream, response_limit(job)) {
            Ok(Response::Result(r)) => expect_incremented(job, &r),
            other => panic!("job {i}: {:?}", other.map(|_| ())),
        }
    }
    assert_eq!(coord.stats().outbox_overflows, 0);
    drop(slow);
    drop(fast);
}

/// A job the coordinator refuses mid-write (over its body limit, then it
/// closes): `submit_all` still hands over the results it was sent for the
/// jobs before it, and says why the refused one and the rest got none.
#[test]
fn submit_all_keeps_the_answers_that_came_before_a_refused_job() {
    let coord = coordinator(|c| c.max_request_body = 1 << 20);
    let provider = TestProvider::start(coord.local_addr(), ProviderOpts::new(20));
    provider.wait_ready(1);
    let jobs = vec![
        increment_job(0, 1000, 10_000),
        increment_job(1, 1000, 10_000),
        increment_job(2, 8 << 20, 10_000),
        increment_job(3, 1000, 10_000),
    ];
    let mut r = Requester::connect(coord.local_addr(), client_tls()).expect("connects");
    let results = r.submit_all(&jobs, 4);
    for (i, result) in results.iter().take(2).enumerate() {
        match result {
            Ok(res) => expect_incremented(&jobs[i], res),
            Err(e) => panic!("job {i}: {e}"),
        }
    }
    // The refused one: the coordinator's answer if it was read, else the
    // write's error; the one after it was never sent whole.
    match &results[2] {
        Err(RequesterError::Failed(f)) => assert_eq!(f.code, FailureCode::Invalid),
        Err(RequesterError::Frame(_)) => {}
        other => panic!("job 2: {other:?}"),
    }
    assert!(results[3].is_err());
    provider.stop();
}

/// Three windows of requests in one write (the coordinator pauses with
/// bytes read but not yet handed to TLS), then the requester's write side
/// shut while it is paused: every request is answered, in order.
#[test]
fn requests_in_one_burst_then_the_end_while_paused_are_all_answered() {
    use tessera_coordinator::protocol::{read_frame, response_limit, Response, MAX_IN_FLIGHT};
    let coord = coordinator(|_| {});
    let provider = TestProvider::start(coord.local_addr(), ProviderOpts::new(17));
    provider.wait_ready(1);
    for round in 0..3 {
        let n = MAX_IN_FLIGHT * 3 + 5;
        let jobs: Vec<Submit> = (0..n)
            .map(|i| increment_job(i as u8, 16 + 13 * (i % 7) + round, 10_000))
            .collect();
        let mut stream = requester::connect(coord.local_addr(), client_tls()).expect("connects");
        let mut all = Vec::new();
        for job in &jobs {
            requester::write_submit(&mut all, job).expect("encoded");
        }
        stream.write_all(&all).expect("sent");
        stream.flush().expect("sent");
        stream
            .sock
            .shutdown(std::net::Shutdown::Write)
            .expect("shut");
        for (i, job) in jobs.iter().enumerate() {
            match read_frame(&mut stream, response_limit(job)) {
                Ok(Response::Result(r)) => expect_incremented(job, &r),
                other => panic!("round {round} answer {i}: {other:?}"),
            }
        }
    }
    provider.stop();
}
