//! Results kept on disk survive a restart, byte for byte; a crash at any
//! point of a write never makes a restarted provider sign a second receipt
//! with a sequence number it used; the store belongs to one device key; and
//! a damaged store gives an error instead of a crash.
#![cfg(feature = "std")]

use std::collections::BTreeMap;

use tessera_core::agent::{Outcome, ResultRecord};
use tessera_core::attest::{
    ChainState, Ed25519Signer, Receipt, ReceiptStatus, ReceiptVerifier, Signer, RECEIPT_LEN,
};
use tessera_core::limits::MAX_JOBS;
use tessera_core::store::{FileStore, ResultStore, StoreError};
use tessera_core::testkit::JobDescription;
use tessera_core::wire::KeyId;

const KEY: KeyId = [0x4b; 16];

fn description() -> JobDescription {
    JobDescription {
        kernel: vec![3; 64],
        entry_point: "main".into(),
        grid: [1, 1, 1],
        push_constants: vec![],
        buffers: vec![(vec![1; 10], 10, true)],
        nonce: [4; 32],
        bindings: Vec::new(),
    }
}

fn record(job: u64, seq: u64) -> ResultRecord {
    ResultRecord {
        job,
        spec: description().assign(job),
        outcome: Outcome::Completed {
            output_len: 10,
            output_root: [5; 32],
        },
        usage: Default::default(),
        price: 9,
        receipt: tessera_core::bounded::BoundedVec::from_slice(&[7; RECEIPT_LEN]).unwrap(),
        next_sequence: seq,
        prev_hash: [seq as u8; 32],
    }
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("tessera-store-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[test]
fn records_and_chain_survive_reopening() {
    let dir = temp_dir("reopen");
    let mut store = FileStore::open(&dir, KEY).unwrap();
    store
        .save_with_outputs(&record(1, 2), &[&[9u8; 10][..]])
        .unwrap();
    store.save(&record(2, 3)).unwrap();
    drop(store);

    let mut store = FileStore::open(&dir, KEY).unwrap();
    assert_eq!(store.chain().next_sequence, 3);
    let (r, outputs) = store.load(1).unwrap();
    assert_eq!(r, record(1, 2));
    assert_eq!(outputs, vec![vec![9u8; 10]]);
    assert_eq!(store.load_record(1).unwrap(), record(1, 2));
    let mut seen = Vec::new();
    store.for_each(&mut |r| seen.push(r.job)).unwrap();
    assert_eq!(seen, vec![1, 2]);
    assert_eq!(store.jobs().unwrap(), vec![1, 2]);
    store.remove(1).unwrap();
    store.remove(1).unwrap();
    let mut seen = Vec::new();
    store.for_each(&mut |r| seen.push(r.job)).unwrap();
    assert_eq!(seen, vec![2]);
    // The chain position outlives the records.
    store.remove(2).unwrap();
    assert_eq!(FileStore::open(&dir, KEY).unwrap().chain().next_sequence, 3);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn damaged_files_are_errors_not_crashes() {
    let dir = temp_dir("damaged");
    let mut store = FileStore::open(&dir, KEY).unwrap();
    store
        .save_with_outputs(&record(1, 2), &[&[9u8; 10][..]])
        .unwrap();
    let path = dir.join("job-1.rec");
    let bytes = std::fs::read(&path).unwrap();
    for cut in [0, 7, 12, 20, bytes.len() - 1] {
        std::fs::write(&path, &bytes[..cut]).unwrap();
        assert!(store.load(1).is_err(), "cut at {cut}");
        assert!(store.load_record(1).is_err(), "cut at {cut}");
        // A damaged record may hold the newest chain position: no start
        // without it.
        let err = FileStore::open(&dir, KEY).unwrap_err();
        assert!(err.to_string().contains("job-1.rec"), "{err}");
    }
    let mut flipped = bytes.clone();
    flipped[9] ^= 0x40;
    std::fs::write(&path, &flipped).unwrap();
    assert!(store.load(1).is_err());
    std::fs::write(&path, &bytes).unwrap();
    std::fs::write(dir.join("chain"), b"short").unwrap();
    let err = FileStore::open(&dir, KEY).unwrap_err();
    assert!(err.to_string().contains("not a chain file"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A provider process: its store and its receipt chain in memory (the agent
/// signs at this position, then asks the host to store the result).
struct Provider {
    store: FileStore,
    chain: ChainState,
}

impl Provider {
    /// Starts as a restarted process does: from the store's chain position.
    fn start(dir: &std::path::Path, signer: &Ed25519Signer) -> Provider {
        let store = FileStore::open(dir, signer.key_id()).unwrap();
        let chain = store.chain();
        Provider { store, chain }
    }

    /// Signs the next receipt (for `job`) and returns its record.
    fn sign(&mut self, signer: &mut Ed25519Signer, job: u64) -> ResultRecord {
        let receipt = Receipt {
            status: ReceiptStatus::Completed,
            job,
            requester_nonce: [4; 32],
            kernel_hash: [1; 32],
            input_root: [2; 32],
            output_root: [5; 32],
            output_len: 10,
            result_hash: [3; 32],
            result_seal: [6; 32],
            usage: Default::default(),
            price: 9,
            started_at: 1,
            ended_at: 2,
            evidence_hash: [8; 32],
            key_id: signer.key_id(),
            sequence: self.chain.next_sequence,
            prev_hash: self.chain.prev_hash,
        };
        let mut out = [0u8; RECEIPT_LEN];
        let n = receipt.sign(signer, &mut out).unwrap();
        assert_eq!(n, RECEIPT_LEN);
        self.chain.advance(Receipt::hash(&out));
        ResultRecord {
            receipt: tessera_core::bounded::BoundedVec::from_slice(&out).unwrap(),
            next_sequence: self.chain.next_sequence,
            prev_hash: self.chain.prev_hash,
            ..record(job, 0)
        }
    }
}

/// What the coordinator has seen: receipts by sequence number. The same
/// receipt twice is a resend; two different ones with one number, a fork.
#[derive(Default)]
struct Seen(BTreeMap<u64, Vec<u8>>);

impl Seen {
    fn deliver(&mut self, r: &ResultRecord, what: &str) {
        let seq = r.next_sequence - 1;
        if let Some(before) = self.0.insert(seq, r.receipt.to_vec()) {
            assert!(
                before[..] == r.receipt[..],
                "{what}: two different receipts with sequence {seq}: the provider looks forked"
            );
        }
    }

    /// Sequence numbers 1, 2, ... with no gap, each receipt naming the one
    /// before.
    fn verify(&self, public_key: [u8; 32], what: &str) {
        let mut verifier = ReceiptVerifier::new(public_key, ChainState::default());
        for (seq, receipt) in &self.0 {
            let r = verifier
                .verify_next(receipt, None)
                .unwrap_or_else(|e| panic!("{what}: receipt #{seq}: {e:?}"));
            assert_eq!(r.sequence, *seq);
        }
    }
}

/// For each step k of writing a result and removing it once acknowledged,
/// the process dies after k steps; a restarted one delivers what it stored,
/// restarts once more, signs on, and the coordinator sees one unbroken chain.
#[test]
fn a_crash_at_any_step_of_a_write_keeps_the_chain_whole() {
    let mut signer = Ed25519Signer::from_seed(&[9; 32]).unwrap();
    let public_key = signer.public_key();
    let mut crash_points = 0;
    for k in 0.. {
        let what = format!("crash after step {k}");
        let dir = temp_dir(&format!("crash-{k}"));
        let mut seen = Seen::default();
        let mut p = Provider::start(&dir, &signer);
        // Two results stored, delivered and acknowledged.
        for job in 1..=2 {
            let r = p.sign(&mut signer, job);
            p.store.save_with_outputs(&r, &[&[9u8; 10]]).unwrap();
            seen.deliver(&r, &what);
            p.store.remove(job).unwrap();
        }
        // The third dies after k steps of storing it and removing it.
        p.store.crash_after_steps(Some(k));
        let third = p.sign(&mut signer, 3);
        let crashed = match p.store.save_with_outputs(&third, &[&[9u8; 10]]) {
            Err(_) => true,
            Ok(()) => {
                // Stored, so it went out; then the acknowledgement came.
                seen.deliver(&third, &what);
                p.store.remove(3).is_err()
            }
        };
        drop(p);

        // Restart: every stored result goes out again, oldest first, and is
        // acknowledged.
        let mut p = Provider::start(&dir, &signer);
        let mut stored = Vec::new();
        p.store.for_each(&mut |r| stored.push(r.clone())).unwrap();
        for r in &stored {
            seen.deliver(r, &what);
            p.store.remove(r.job).unwrap();
        }
        drop(p);
        // Another restart, with nothing stored but the chain position.
        let mut p = Provider::start(&dir, &signer);
        for job in 4..=6 {
            let r = p.sign(&mut signer, job);
            p.store.save_with_outputs(&r, &[&[9u8; 10]]).unwrap();
            seen.deliver(&r, &what);
            p.store.remove(job).unwrap();
        }
        seen.verify(public_key, &what);
        // Results 1, 2, 4, 5, 6, and 3 once it reached its file.
        let third_kept = seen.0.values().any(|r| r[..] == third.receipt[..]);
        assert_eq!(seen.0.len(), if third_kept { 6 } else { 5 }, "{what}");
        assert!(third_kept || crashed, "{what}: result 3 was lost");
        let leftovers: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n != "chain")
            .collect();
        assert!(leftovers.is_empty(), "{what}: {leftovers:?} left behind");
        let _ = std::fs::remove_dir_all(&dir);
        if !crashed {
            break;
        }
        crash_points += 1;
    }
    // Record: temp file written, fsynced, renamed, directory fsynced; the
    // chain file the same; the removal and its directory fsync.
    assert_eq!(crash_points, 10);
}

/// Far more results than the agent holds at once are left stored: all come
/// back, oldest first, and the chain continues after the newest.
#[test]
fn more_leftover_records_than_the_agent_holds_all_come_back_in_order() {
    let dir = temp_dir("leftovers");
    let mut signer = Ed25519Signer::from_seed(&[9; 32]).unwrap();
    let mut p = Provider::start(&dir, &signer);
    let n = 3 * MAX_JOBS as u64 + 1;
    // Job ids in another order than their receipts.
    let mut records = Vec::new();
    let mut early_chain = Vec::new();
    for i in 0..n {
        let r = p.sign(&mut signer, 1000 - i);
        p.store.save_with_outputs(&r, &[&[9u8; 10]]).unwrap();
        records.push(r);
        if i == 0 {
            early_chain = std::fs::read(dir.join("chain")).unwrap();
        }
    }
    drop(p);
    // The chain file went back (as if every later update was lost): the
    // records still hold the position.
    std::fs::write(dir.join("chain"), &early_chain).unwrap();
    let p = Provider::start(&dir, &signer);
    assert_eq!(p.store.chain(), records.last().unwrap().chain_after());
    let expected: Vec<u64> = records.iter().map(|r| r.job).collect();
    assert_eq!(p.store.jobs().unwrap(), expected);
    let mut all = Vec::new();
    p.store.for_each(&mut |r| all.push(r.clone())).unwrap();
    assert_eq!(all, records);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A chain file written under one key refuses another: the second key would
/// otherwise go on from the first one's position.
#[test]
fn a_chain_file_of_another_key_is_refused() {
    let dir = temp_dir("other-key");
    let mut store = FileStore::open(&dir, KEY).unwrap();
    store.save(&record(1, 2)).unwrap();
    store.remove(1).unwrap();
    drop(store);
    let other = [0x77; 16];
    let err = FileStore::open(&dir, other).unwrap_err();
    let chain = dir.join("chain");
    match &err {
        StoreError::OtherKey {
            path,
            chain_key,
            key,
        } => {
            assert_eq!(path, &chain);
            assert_eq!(chain_key, &KEY);
            assert_eq!(key, &other);
        }
        e => panic!("expected OtherKey, got {e:?}"),
    }
    let text = err.to_string();
    let expected = format!(
        "chain file {} belongs to key {}, this agent's key is {}",
        chain.display(),
        "4b".repeat(16),
        "77".repeat(16)
    );
    assert!(text.contains(&expected), "{text}");
    // Its own key still opens it, where it was.
    assert_eq!(FileStore::open(&dir, KEY).unwrap().chain().next_sequence, 2);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A fresh store is bound to its key at once, and a chain file in the older
/// 40-byte format (no key) is read and bound to the first key that opens it.
#[test]
fn chain_files_are_bound_to_the_key_from_the_first_open() {
    let dir = temp_dir("bind");
    drop(FileStore::open(&dir, KEY).unwrap());
    assert_eq!(std::fs::read(dir.join("chain")).unwrap().len(), 64);
    assert!(FileStore::open(&dir, [1; 16]).is_err());
    let _ = std::fs::remove_dir_all(&dir);

    std::fs::create_dir_all(&dir).unwrap();
    let mut old = Vec::new();
    old.extend_from_slice(&7u64.to_le_bytes());
    old.extend_from_slice(&[0xAB; 32]);
    std::fs::write(dir.join("chain"), &old).unwrap();
    let store = FileStore::open(&dir, KEY).unwrap();
    assert_eq!(
        store.chain(),
        ChainState {
            next_sequence: 7,
            prev_hash: [0xAB; 32]
        }
    );
    drop(store);
    let bytes = std::fs::read(dir.join("chain")).unwrap();
    assert_eq!(&bytes[..8], b"TSCHAIN\x01");
    assert_eq!(&bytes[8..24], &KEY);
    assert!(matches!(
        FileStore::open(&dir, [1; 16]),
        Err(StoreError::OtherKey { .. })
    ));
    assert_eq!(FileStore::open(&dir, KEY).unwrap().chain().next_sequence, 7);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A record and the chain file naming different receipts with one sequence
/// number: two chains in one directory, refused rather than guessed at.
#[test]
fn two_receipts_with_one_sequence_number_are_refused() {
    let dir = temp_dir("conflict");
    let mut store = FileStore::open(&dir, KEY).unwrap();
    store.save(&record(1, 5)).unwrap();
    store.remove(1).unwrap();
    let mut other = record(2, 5);
    other.prev_hash = [0xEE; 32];
    // The in-memory position already covers sequence 5: the chain file stays.
    store.save(&other).unwrap();
    drop(store);
    let err = FileStore::open(&dir, KEY).unwrap_err();
    assert!(
        matches!(err, StoreError::Conflict { sequence: 4, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("job-2.rec"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A record's bytes stay what earlier versions wrote, so that results
/// stored before an upgrade are still delivered after it.
#[test]
fn record_encoding_is_stable() {
    let r = record(1, 2);
    let mut buf = [0u8; tessera_core::agent::MAX_RECORD_BYTES];
    let n = r.encode(&mut buf).unwrap();
    assert_eq!(n, 632);
    // The receipt: its length (444, a varint) and its bytes; then the chain.
    let receipt_at = n - 33 - RECEIPT_LEN;
    assert_eq!(buf[receipt_at - 2..receipt_at], [0xbc, 0x03]);
    assert_eq!(buf[receipt_at..receipt_at + RECEIPT_LEN], [7; RECEIPT_LEN]);
    let digest: String = tessera_core::attest::sha256(&buf[..n])
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(
        digest,
        "2808e2dc75a333b3a204ad47450daf4bf2dcebae3414f3dc3c1831f47ae9fbe5"
    );
    assert_eq!(ResultRecord::decode(&buf[..n]), Some(r));

    // A receipt one byte short (length 443) does not decode: it could not verify.
    let mut short = buf[..receipt_at - 2].to_vec();
    short.extend_from_slice(&[0xbb, 0x03]);
    short.extend_from_slice(&buf[receipt_at + 1..n]);
    assert_eq!(ResultRecord::decode(&short), None);
}
