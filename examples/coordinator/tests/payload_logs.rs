//! Logs never print payload bytes: a provider on the real runtime
//! (`tessera_core::net::Runtime`, its job host opening and sealing the job)
//! and the coordinator, both in this process with every log record kept at
//! `trace`, serve a sealed job and the same job in the clear. The records
//! are then searched for markers put in the inputs and, through the
//! executor, in the outputs, in the forms a log line could carry bytes: as
//! text, as hex, and as a Rust list of numbers. None is found; the records
//! name the jobs, which shows the search reads what was logged.

mod support;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use support::{bundle, client_tls, coordinator};
use tessera_coordinator::requester::Requester;
use tessera_coordinator::{BufferInit, Submit};
use tessera_core::attest::{DeviceCapabilities, Ed25519Signer};
use tessera_core::net::{client_config, FnExecutor, JobOutputs, JobToRun, NetConfig, Runtime};
use tessera_core::net::{JobFailure, Trust};
use tessera_core::wire::{Requirements, Usage};
use tessera_core::{Config, Policy};

/// Every record logged in this process, as `target: message`.
static RECORDS: Mutex<Vec<String>> = Mutex::new(Vec::new());

struct Keep;

impl log::Log for Keep {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &log::Record<'_>) {
        let line = format!("{}: {}", record.target(), record.args());
        RECORDS.lock().unwrap_or_else(|e| e.into_inner()).push(line);
    }

    fn flush(&self) {}
}

const INPUT_MARKER: &[u8; 24] = b"PAYLOAD-LOG-MARKER-IN-01";
const PUSH: [u8; 8] = [0xA5, 0x5A, 0xC3, 0x3C, 0x96, 0x69, 0xF0, 0x0F];

/// A job whose 4 KiB input holds the marker; the executor returns every
/// byte plus one.
fn job(nonce: u8) -> Submit {
    let mut input: Vec<u8> = (0..4096).map(|i| (i % 7) as u8).collect();
    for at in [0, 1000, 4000] {
        input[at..at + 24].copy_from_slice(INPUT_MARKER);
    }
    Submit {
        kernel: (0..256u32).flat_map(|i| i.to_le_bytes()).collect(),
        entry_point: "main".into(),
        specialization: Vec::new(),
        push_constants: PUSH.to_vec(),
        grid: [1, 1, 1],
        buffers: vec![
            BufferInit {
                binding: 0,
                init: input,
                len: 4096,
                readback: false,
            },
            BufferInit {
                binding: 1,
                init: Vec::new(),
                len: 4096,
                readback: true,
            },
        ],
        requirements: Requirements::default(),
        est_gpu_ms: 1,
        max_price: 100_000,
        deadline_ms: 10_000,
        nonce: [nonce; 32],
        sealed: None,
    }
}

/// The ways a log line could carry `bytes` (its first 8): as text, as hex
/// (either case, with or without separators), as a list of numbers.
fn forms(bytes: &[u8]) -> Vec<String> {
    let b = &bytes[..8];
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    let spaced: Vec<String> = b.iter().map(|x| format!("{x:02x}")).collect();
    let list: Vec<String> = b.iter().map(|x| x.to_string()).collect();
    vec![
        String::from_utf8_lossy(b).into_owned(),
        hex.clone(),
        hex.to_uppercase(),
        spaced.join(" "),
        spaced.join(":"),
        list.join(", "),
    ]
}

#[test]
fn neither_provider_nor_coordinator_logs_payload_bytes() {
    log::set_boxed_logger(Box::new(Keep)).expect("the only logger of this binary");
    log::set_max_level(log::LevelFilter::Trace);

    let coord = coordinator(|_| {});
    let stop = Arc::new(AtomicBool::new(false));
    let ready = Arc::new(AtomicUsize::new(0));
    let (s, r) = (stop.clone(), ready.clone());
    let addr = coord.local_addr();
    let provider = thread::spawn(move || {
        let mut capabilities = DeviceCapabilities {
            device_local_bytes: 1 << 30,
            ..DeviceCapabilities::default()
        };
        let _ = capabilities.name.push_str("cpu test device");
        let config = Config {
            capabilities,
            policy: Policy::default(),
            ..Config::default()
        };
        let trust = Trust::CaPem(bundle().ca_pem.clone().into_bytes());
        let net = NetConfig::new(
            addr.to_string(),
            "localhost",
            client_config(&trust).expect("client config"),
        );
        let executor = FnExecutor(|job: &JobToRun| -> Result<JobOutputs, JobFailure> {
            let out = job.buffers[0].iter().map(|b| b.wrapping_add(1)).collect();
            Ok(JobOutputs {
                outputs: vec![out],
                usage: Usage {
                    gpu_time_us: 100,
                    dispatches: 1,
                    ..Usage::default()
                },
            })
        });
        let signer = Ed25519Signer::from_seed(&[61; 32]).expect("key");
        let mut rt = Runtime::new(config, signer, executor, net).expect("runtime");
        while !s.load(Ordering::SeqCst) {
            rt.step(Some(Duration::from_millis(20))).expect("step");
            r.store(rt.status().sessions as usize, Ordering::SeqCst);
        }
    });
    let until = Instant::now() + Duration::from_secs(20);
    while ready.load(Ordering::SeqCst) == 0 || coord.providers().is_empty() {
        assert!(Instant::now() < until, "the provider never connected");
        thread::sleep(Duration::from_millis(10));
    }

    let mut requester = Requester::connect(addr, client_tls()).expect("connects");
    let sealed_job = job(1);
    let sealed = requester.submit_sealed(&sealed_job).expect("sealed job");
    let output: Vec<u8> = sealed_job.buffers[0]
        .init
        .iter()
        .map(|b| b.wrapping_add(1))
        .collect();
    assert_eq!(sealed.outputs[0].as_slice(), output.as_slice());
    let clear = requester.submit(&job(2)).expect("job in the clear");
    assert_eq!(clear.outputs[0], output);
    requester.close();
    stop.store(true, Ordering::SeqCst);
    provider.join().expect("provider thread");

    let records = RECORDS.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let text = records.join("\n");
    // The search reads what was logged: both jobs are named, by provider
    // and coordinator alike.
    for id in [sealed.result.job, clear.job] {
        assert!(
            text.contains(&id.to_string()),
            "job {id} is in the log:\n{text}"
        );
    }
    assert!(
        records.iter().any(|l| l.starts_with("tessera_core")),
        "the provider's records are kept"
    );
    let output_marker = &output[..24];
    for (what, bytes) in [
        ("input", &INPUT_MARKER[..]),
        ("output", output_marker),
        ("push constants", &PUSH[..]),
    ] {
        for form in forms(bytes) {
            assert!(
                !text.contains(&form),
                "the {what} bytes are in the log as {form:?}"
            );
        }
    }
}
