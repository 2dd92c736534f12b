//! Results kept on disk survive a restart, byte for byte, and a damaged store
//! gives an error instead of a crash.
#![cfg(feature = "std")]

use tessera_core::agent::{Outcome, ResultRecord};
use tessera_core::store::{FileStore, ResultStore};
use tessera_core::testkit::JobDescription;

fn record(job: u64, seq: u64) -> ResultRecord {
    let d = JobDescription {
        kernel: vec![3; 64],
        entry_point: "main".into(),
        grid: [1, 1, 1],
        push_constants: vec![],
        buffers: vec![(vec![1; 10], 10, true)],
        nonce: [4; 32],
        bindings: Vec::new(),
    };
    ResultRecord {
        job,
        spec: d.assign(job),
        outcome: Outcome::Completed {
            output_len: 10,
            output_root: [5; 32],
        },
        usage: Default::default(),
        price: 9,
        receipt: heapless::Vec::from_slice(&[7; 444]).unwrap(),
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
    let mut store = FileStore::open(&dir).unwrap();
    store
        .save_with_outputs(&record(1, 2), &[&[9u8; 10][..]])
        .unwrap();
    store.save(&record(2, 3)).unwrap();
    drop(store);

    let mut store = FileStore::open(&dir).unwrap();
    assert_eq!(store.chain().next_sequence, 3);
    let (r, outputs) = store.load(1).unwrap();
    assert_eq!(r, record(1, 2));
    assert_eq!(outputs, vec![vec![9u8; 10]]);
    let mut seen = Vec::new();
    store.for_each(&mut |r| seen.push(r.job)).unwrap();
    assert_eq!(seen, vec![1, 2]);
    store.remove(1).unwrap();
    store.remove(1).unwrap();
    let mut seen = Vec::new();
    store.for_each(&mut |r| seen.push(r.job)).unwrap();
    assert_eq!(seen, vec![2]);
    // The chain position outlives the records.
    store.remove(2).unwrap();
    assert_eq!(FileStore::open(&dir).unwrap().chain().next_sequence, 3);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn damaged_files_are_errors_not_crashes() {
    let dir = temp_dir("damaged");
    let mut store = FileStore::open(&dir).unwrap();
    store
        .save_with_outputs(&record(1, 2), &[&[9u8; 10][..]])
        .unwrap();
    let path = dir.join("job-1.rec");
    let bytes = std::fs::read(&path).unwrap();
    for cut in [0, 7, 12, 20, bytes.len() - 1] {
        std::fs::write(&path, &bytes[..cut]).unwrap();
        assert!(store.load(1).is_err(), "cut at {cut}");
    }
    let mut flipped = bytes.clone();
    flipped[9] ^= 0x40;
    std::fs::write(&path, &flipped).unwrap();
    assert!(store.load(1).is_err());
    std::fs::write(dir.join("chain"), b"short").unwrap();
    assert!(FileStore::open(&dir).is_err());
    let _ = std::fs::remove_dir_all(&dir);
}
