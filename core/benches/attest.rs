//! Attestation costs beside the raw primitives they are built on, measured in
//! the same run: receipt signing and verification against ring's Ed25519 over
//! the same Sig_structure bytes, and Merkle hashing against one SHA-256 pass
//! over the same buffer (the parallel tree against that rate times its
//! threads), and batched receipts (a batch of 64) per receipt beside a
//! receipt signed and verified alone. Prints one JSON object per line. Per-operation costs
//! are medians of many samples; Merkle rates are the best of several passes.
//!
//! `cargo bench -p tessera-core --bench attest`

use std::hint::black_box;
use std::time::Instant;

use ring::signature::{Ed25519KeyPair, UnparsedPublicKey, ED25519};
use tessera_core::attest::{
    batch_leaf, batched_link, sign_batch, write_batched, BatchPath, ChainState, Ed25519Signer,
    Receipt, ReceiptStatus, ReceiptVerifier, Signer, BATCHED_RECEIPT_MAX_LEN, BATCH_LEN,
    RECEIPT_DOMAIN, RECEIPT_LEN,
};
use tessera_core::merkle;
use tessera_core::wire::Usage;

/// Operations per timed sample, and samples per measurement.
const BATCH: usize = 20;
const SAMPLES: usize = 201;
const MERKLE_BYTES: usize = 256 << 20;
const MERKLE_RUNS: usize = 7;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Microseconds per call of `a` and of `b`, medians over samples taken in
/// turn so that both see the same machine load.
fn per_op_us(mut a: impl FnMut(), mut b: impl FnMut()) -> (f64, f64) {
    let (mut ta, mut tb) = (Vec::new(), Vec::new());
    for _ in 0..BATCH * 5 {
        a();
        b();
    }
    for _ in 0..SAMPLES {
        let t = Instant::now();
        for _ in 0..BATCH {
            a();
        }
        ta.push(t.elapsed().as_secs_f64() * 1e6 / BATCH as f64);
        let t = Instant::now();
        for _ in 0..BATCH {
            b();
        }
        tb.push(t.elapsed().as_secs_f64() * 1e6 / BATCH as f64);
    }
    (median(ta), median(tb))
}

/// The COSE Sig_structure of a receipt payload, written from RFC 9052 §4.4.
fn sig_structure(payload: &[u8]) -> Vec<u8> {
    let mut v = vec![0x84, 0x6A];
    v.extend_from_slice(b"Signature1");
    v.extend_from_slice(&[0x43, 0xA1, 0x01, 0x27]);
    v.push(0x40 | RECEIPT_DOMAIN.len() as u8);
    v.extend_from_slice(RECEIPT_DOMAIN);
    v.push(0x59);
    v.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    v.extend_from_slice(payload);
    v
}

fn line(name: &str, value: f64, unit: &str, peers: &[(&str, f64)], extra: &str) {
    let peers: Vec<String> = peers
        .iter()
        .map(|(n, v)| format!("\"{n}\": {v:.3}"))
        .collect();
    println!(
        "{{\"name\": \"{name}\", \"value\": {value:.3}, \"unit\": \"{unit}\", \"peers\": {{{}}}{extra}}}",
        peers.join(", ")
    );
}

fn sample(signer: &Ed25519Signer, chain: ChainState) -> Receipt {
    Receipt {
        status: ReceiptStatus::Completed,
        job: chain.next_sequence,
        requester_nonce: [1; 32],
        kernel_hash: [2; 32],
        input_root: [3; 32],
        output_root: [4; 32],
        output_len: 1 << 20,
        result_hash: [5; 32],
        result_seal: [6; 32],
        usage: Usage {
            gpu_time_us: 1000,
            dispatches: 1,
            bytes_in: 1 << 20,
            bytes_out: 1 << 20,
        },
        price: 10,
        started_at: 1,
        ended_at: 2,
        evidence_hash: [8; 32],
        key_id: signer.key_id(),
        sequence: chain.next_sequence,
        prev_hash: chain.prev_hash,
    }
}

/// Receipts in a batch of the batched-receipt figures.
const IN_BATCH: usize = 64;

/// Per receipt, a batch of 64 signed (the statement and each receipt's
/// batched form) and verified in chain order (the statement's signature
/// once), beside a receipt signed and verified alone.
fn batched_receipts() {
    let mut signer = Ed25519Signer::from_seed(&[7u8; 32]).expect("seed");
    let public = signer.public_key();
    let mut chain = ChainState::default();
    let mut payloads = Vec::new();
    for _ in 0..IN_BATCH {
        let p = sample(&signer, chain).encode_payload();
        chain.advance(batched_link(&p));
        payloads.push(p);
    }
    let mut statement = [0u8; BATCH_LEN];
    let mut forms = vec![[0u8; BATCHED_RECEIPT_MAX_LEN]; IN_BATCH];
    let mut lens = vec![0usize; IN_BATCH];
    let sign_all = |signer: &mut Ed25519Signer,
                    statement: &mut [u8; BATCH_LEN],
                    forms: &mut [[u8; BATCHED_RECEIPT_MAX_LEN]],
                    lens: &mut [usize]| {
        let leaves: Vec<_> = payloads.iter().map(batch_leaf).collect();
        let mut paths = vec![BatchPath::new(); leaves.len()];
        sign_batch(signer, 1, &leaves, &mut paths, statement).expect("sign");
        for (i, p) in payloads.iter().enumerate() {
            lens[i] =
                write_batched(statement, i as u32, &paths[i], p, &mut forms[i]).expect("fits");
        }
    };
    sign_all(&mut signer, &mut statement, &mut forms, &mut lens);
    let signed: Vec<Vec<u8>> = forms
        .iter()
        .zip(&lens)
        .map(|(f, n)| f[..*n].to_vec())
        .collect();
    let alone_receipt = sample(&signer, ChainState::default());
    let mut alone = [0u8; RECEIPT_LEN];
    alone_receipt.sign(&mut signer, &mut alone).expect("sign");
    let mut other = Ed25519Signer::from_seed(&[7u8; 32]).expect("seed");
    let mut out = [0u8; RECEIPT_LEN];
    let (batched, single) = per_op_us(
        || {
            sign_all(
                black_box(&mut signer),
                &mut statement,
                &mut forms,
                &mut lens,
            )
        },
        || {
            black_box(alone_receipt.sign(&mut other, black_box(&mut out))).expect("sign");
        },
    );
    let per = batched / IN_BATCH as f64;
    line(
        "attest.batched_receipt_sign",
        per,
        "us",
        &[("receipt_sign", single)],
        &format!(", \"ratio\": {:.3}, \"batch\": {IN_BATCH}", per / single),
    );
    let (batched, single) = per_op_us(
        || {
            let mut v = ReceiptVerifier::new(public, ChainState::default());
            let mut slot = None;
            for r in &signed {
                black_box(v.verify_next_batched(black_box(r), None, &mut slot)).expect("verify");
            }
        },
        || {
            black_box(Receipt::verify(black_box(&alone), &public)).expect("verify");
        },
    );
    let per = batched / IN_BATCH as f64;
    line(
        "attest.batched_receipt_verify",
        per,
        "us",
        &[("receipt_verify", single)],
        &format!(", \"ratio\": {:.3}, \"batch\": {IN_BATCH}", per / single),
    );
}

fn receipts() {
    let seed = [7u8; 32];
    let mut signer = Ed25519Signer::from_seed(&seed).expect("seed");
    let pair = Ed25519KeyPair::from_seed_unchecked(&seed).expect("seed");
    let public = signer.public_key();
    let receipt = sample(&signer, ChainState::default());
    let tbs = sig_structure(&receipt.encode_payload());
    let mut signed = [0u8; RECEIPT_LEN];
    receipt.sign(&mut signer, &mut signed).expect("sign");
    // Same bytes signed: ring's signature is the receipt's.
    assert_eq!(pair.sign(&tbs).as_ref(), &signed[RECEIPT_LEN - 64..]);

    let mut out = [0u8; RECEIPT_LEN];
    let (ours, ring_sign) = per_op_us(
        || {
            black_box(receipt.sign(&mut signer, black_box(&mut out))).expect("sign");
        },
        || {
            black_box(pair.sign(black_box(&tbs)));
        },
    );
    line(
        "attest.receipt_sign",
        ours,
        "us",
        &[("ring_sign", ring_sign)],
        &format!(", \"ratio\": {:.3}", ours / ring_sign),
    );

    // The same key behind a signer that leaves `key_id` to the trait's
    // default (one SHA-256 per signature), as a plain secure element would.
    struct Plain(Ed25519Signer);
    impl Signer for Plain {
        fn public_key(&self) -> [u8; 32] {
            self.0.public_key()
        }
        fn sign(&mut self, message: &[u8]) -> Result<[u8; 64], tessera_core::attest::SignError> {
            self.0.sign(message)
        }
    }
    let mut plain = Plain(Ed25519Signer::from_seed(&seed).expect("seed"));
    let mut out2 = [0u8; RECEIPT_LEN];
    let (uncached, ring_sign) = per_op_us(
        || {
            black_box(receipt.sign(&mut plain, black_box(&mut out2))).expect("sign");
        },
        || {
            black_box(pair.sign(black_box(&tbs)));
        },
    );
    line(
        "attest.receipt_sign_default_key_id",
        uncached,
        "us",
        &[("ring_sign", ring_sign)],
        &format!(", \"ratio\": {:.3}", uncached / ring_sign),
    );

    let sig = &signed[RECEIPT_LEN - 64..];
    let (ours, ring_verify) = per_op_us(
        || {
            black_box(Receipt::verify(black_box(&signed), &public)).expect("verify");
        },
        || {
            UnparsedPublicKey::new(&ED25519, &public)
                .verify(black_box(&tbs), sig)
                .expect("verify");
        },
    );
    line(
        "attest.receipt_verify",
        ours,
        "us",
        &[("ring_verify", ring_verify)],
        &format!(", \"ratio\": {:.3}", ours / ring_verify),
    );
}

/// Seconds of one call of `f`.
fn time(f: &mut dyn FnMut() -> [u8; 32]) -> (f64, [u8; 32]) {
    let t = Instant::now();
    let out = black_box(f());
    (t.elapsed().as_secs_f64(), out)
}

fn merkle_rates() {
    let data: Vec<u8> = (0..MERKLE_BYTES).map(|i| (i * 31 + 7) as u8).collect();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut sha = || {
        let mut d = [0u8; 32];
        d.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, black_box(&data)).as_ref());
        d
    };
    let mut single = || merkle::root_of(black_box(&data));
    let mut parallel = || merkle::root_of_parallel(black_box(&data), threads);
    // Runs taken in turn, so that all three see the same machine load; the
    // fastest run of each counts (other work on the machine only slows a run).
    let (mut t_sha, mut t_single, mut t_parallel) = (vec![], vec![], vec![]);
    for _ in 0..MERKLE_RUNS {
        t_sha.push(time(&mut sha).0);
        let (t, a) = time(&mut single);
        t_single.push(t);
        let (t, b) = time(&mut parallel);
        t_parallel.push(t);
        assert_eq!(a, b);
    }
    let gib = data.len() as f64 / (1u64 << 30) as f64;
    let best = |v: Vec<f64>| v.into_iter().fold(f64::INFINITY, f64::min);
    let (sha, single, parallel) = (
        gib / best(t_sha),
        gib / best(t_single),
        gib / best(t_parallel),
    );
    line(
        "attest.merkle_rate_single",
        single,
        "GiB/s",
        &[("ring_sha256", sha)],
        &format!(", \"ratio\": {:.3}", single / sha),
    );
    let (best, how) = if parallel > single {
        (parallel, "root_of_parallel")
    } else {
        (single, "root_of")
    };
    // Against linear scaling: one thread's SHA-256 rate times the threads
    // the tree was given, so the ratio says how near to it the tree gets.
    let linear = sha * threads as f64;
    line(
        "attest.merkle_rate",
        best,
        "GiB/s",
        &[("ring_sha256_x_threads", linear), ("ring_sha256", sha)],
        &format!(
            ", \"ratio\": {:.3}, \"threads\": {threads}, \"parallel\": {parallel:.3}, \"best\": \"{how}\"",
            best / linear
        ),
    );
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument is not supported.
    receipts();
    batched_receipts();
    merkle_rates();
}
