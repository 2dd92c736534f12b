//! Every GPU in the box: one provider per device, each with its own
//! operator file, key, store and receipt chain (what
//! `examples/operator/tessera-agent@.service` runs, one instance per
//! device). Two providers on the Vulkan device (lavapipe opens twice) serve
//! one coordinator; each job's receipt is in its provider's chain, and each
//! store holds only its own key's chain.

mod support;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use support::{bundle, client_tls, coordinator};
use tessera_coordinator::requester::{new_nonce, Requester};
use tessera_coordinator::{verify_result, BufferInit, Submit};
use tessera_core::attest::{key_id, ChainState, Receipt, ReceiptVerifier};
use tessera_core::operator::OperatorConfig;
use tessera_core::store::{FileStore, ResultStore};
use tessera_core::wire::Requirements;

const COPY_SPV: &[u8] = include_bytes!("../../../core/kernels/copy.spv");

fn copy_job() -> Submit {
    Submit {
        kernel: COPY_SPV.to_vec(),
        entry_point: "main".into(),
        specialization: Vec::new(),
        push_constants: 64u32.to_le_bytes().to_vec(),
        grid: [1, 1, 1],
        buffers: vec![
            BufferInit {
                binding: 0,
                init: (0..1024).map(|i| i as u8).collect(),
                len: 1024,
                readback: false,
            },
            BufferInit {
                binding: 1,
                init: Vec::new(),
                len: 1024,
                readback: true,
            },
        ],
        requirements: Requirements::default(),
        est_gpu_ms: 1,
        max_price: 1_000_000,
        deadline_ms: 60_000,
        nonce: [0; 32],
        sealed: None,
    }
}

#[test]
fn each_device_is_a_provider_with_its_own_key_store_and_chain() {
    let c = coordinator(|_| {});
    let dir = std::env::temp_dir().join(format!("tessera-two-devices-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, &bundle().ca_pem).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let mut providers = Vec::new();
    for device in 0..2 {
        let key = dir.join(format!("device-{device}.key"));
        let store = dir.join(format!("results-{device}"));
        // Both on device 0 here; on a server, `index = N` for GPU N.
        let text = format!(
            "coordinator = \"{}\"\nserver_name = \"localhost\"\n\
             [tls]\nca_file = \"{}\"\n[key]\nfile = \"{}\"\n[store]\ndir = \"{}\"\n\
             [capacity]\nmax_concurrent = 1\n[device]\nindex = 0\n",
            c.local_addr(),
            ca.display(),
            key.display(),
            store.display()
        );
        let file = OperatorConfig::from_toml(&text).unwrap();
        let mut runtime = file.build_runtime().expect("a provider on the device");
        let stop = stop.clone();
        let handle = thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                runtime.step(Some(Duration::from_millis(20))).unwrap();
            }
        });
        providers.push((key, store, handle));
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while c.providers().iter().filter(|p| p.connected).count() < 2 {
        assert!(Instant::now() < deadline, "providers did not connect");
        thread::sleep(Duration::from_millis(10));
    }

    // Four requesters at once, two jobs each: one job at a time per
    // provider, so both serve.
    let addr = c.local_addr();
    let results: Vec<_> = (0..4u8)
        .map(|q| {
            thread::spawn(move || {
                let mut r = Requester::connect(addr, client_tls()).unwrap();
                (0..2)
                    .map(|_| {
                        let mut j = copy_job();
                        j.nonce = new_nonce().unwrap();
                        j.nonce[0] = q;
                        let res = r.submit(&j).expect("a verified result");
                        verify_result(&j, &res).expect("the requester's check");
                        res
                    })
                    .collect::<Vec<_>>()
            })
        })
        .flat_map(|h| h.join().unwrap())
        .collect();
    stop.store(true, Ordering::SeqCst);

    let keys: Vec<[u8; 32]> = providers
        .iter()
        .map(|(key, _, _)| {
            let s = tessera_core::operator::load_key(key).unwrap();
            tessera_core::attest::Signer::public_key(&s)
        })
        .collect();
    assert_ne!(keys[0], keys[1], "one identity per device");
    for (i, pk) in keys.iter().enumerate() {
        // This provider's receipts, in sequence order, make one chain.
        let mut mine: Vec<Receipt> = results
            .iter()
            .filter(|r| r.provider_public_key == *pk)
            .map(|r| Receipt::verify_any(&r.receipt, pk).unwrap())
            .collect();
        assert!(!mine.is_empty(), "provider {i} served no job");
        mine.sort_by_key(|r| r.sequence);
        let mut v = ReceiptVerifier::new(*pk, ChainState::default());
        for r in &mine {
            let bytes = &results.iter().find(|x| x.job == r.job).unwrap().receipt;
            v.verify_next_any(bytes, None, &mut None)
                .expect("one chain per provider");
        }
        // Its store belongs to its key and continues its chain; the other
        // key's store is refused.
        let store = FileStore::open(&providers[i].1, key_id(pk)).unwrap();
        assert_eq!(store.chain().next_sequence, mine.len() as u64 + 1);
        let other = &providers[1 - i].1;
        assert!(FileStore::open(other, key_id(pk)).is_err());
    }
    for (_, _, h) in providers {
        h.join().unwrap();
    }
    let _ = std::fs::remove_dir_all(PathBuf::from(&dir));
}
