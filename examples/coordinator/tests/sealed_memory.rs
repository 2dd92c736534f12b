//! What a coordinator holds of a sealed job: the `tessera-coordinator`
//! program (its log at `debug`) serves a sealed job and, beside it, the
//! same job in the clear; its whole process memory (`/proc/PID/mem`, every
//! readable mapping), its log, and its traffic (every byte it sent the
//! provider and the requester, after TLS) are then searched for markers
//! put in the inputs and, through the kernel, in the outputs. The sealed
//! job's markers are nowhere; the job in the clear's are found in its
//! memory and traffic, which shows the searches see what the coordinator
//! held and sent.
#![cfg(target_os = "linux")]

mod support;

use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::net::SocketAddr;
use std::process::{Command, Stdio};

use support::{ProviderOpts, TestProvider};
use tessera_coordinator::requester::Requester;
use tessera_coordinator::tls::{client_config, Trust};
use tessera_coordinator::{BufferInit, Submit};
use tessera_core::wire::Requirements;

/// A job whose input holds `marker` a few times over 4 KiB; the test
/// provider returns every byte plus one, so the output holds the marker
/// with every byte plus one.
fn job(marker: &[u8; 24], nonce: u8) -> Submit {
    let mut input: Vec<u8> = (0..4096).map(|i| (i % 7) as u8).collect();
    for at in [100, 1000, 2000, 3000] {
        input[at..at + 24].copy_from_slice(marker);
    }
    Submit {
        kernel: (0..256u32).flat_map(|i| i.to_le_bytes()).collect(),
        entry_point: "main".into(),
        specialization: Vec::new(),
        push_constants: Vec::new(),
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
        max_price: 10_000,
        deadline_ms: 10_000,
        nonce: [nonce; 32],
        sealed: None,
    }
}

fn plus_one(marker: &[u8; 24]) -> Vec<u8> {
    marker.iter().map(|b| b.wrapping_add(1)).collect()
}

/// Which of `needles` occur in the readable memory of process `pid`.
fn in_memory(pid: u32, needles: &[&[u8]]) -> Vec<bool> {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).expect("maps");
    let mut mem = std::fs::File::open(format!("/proc/{pid}/mem")).expect("/proc/PID/mem");
    let mut found = vec![false; needles.len()];
    let mut scanned = 0usize;
    for line in maps.lines() {
        let mut fields = line.split_whitespace();
        let (Some(range), Some(perms)) = (fields.next(), fields.next()) else {
            continue;
        };
        if !perms.starts_with('r') || line.ends_with("[vvar]") || line.ends_with("[vsyscall]") {
            continue;
        }
        let Some((a, b)) = range.split_once('-') else {
            continue;
        };
        let (Ok(start), Ok(end)) = (u64::from_str_radix(a, 16), u64::from_str_radix(b, 16)) else {
            continue;
        };
        let mut buf = vec![0u8; (end - start) as usize];
        if mem.seek(SeekFrom::Start(start)).is_err() || mem.read_exact(&mut buf).is_err() {
            continue;
        }
        scanned += buf.len();
        for (f, n) in found.iter_mut().zip(needles) {
            *f |= buf.windows(n.len()).any(|w| w == *n);
        }
    }
    assert!(
        scanned > 1 << 20,
        "read only {scanned} bytes of the coordinator"
    );
    found
}

#[test]
fn the_coordinator_holds_no_plaintext_of_a_sealed_job() {
    let dir = std::env::temp_dir().join(format!("tessera-sealed-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let status = Command::new(env!("CARGO_BIN_EXE_tessera-certs"))
        .arg(&dir)
        .stdout(Stdio::null())
        .status()
        .expect("tessera-certs runs");
    assert!(status.success());
    let log = dir.join("coordinator.log");
    let mut coordinator = Command::new(env!("CARGO_BIN_EXE_tessera-coordinator"))
        .args(["--listen", "127.0.0.1:0", "--run-for", "60", "--certs"])
        .arg(&dir)
        .env("RUST_LOG", "debug")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).expect("log file"))
        .spawn()
        .expect("tessera-coordinator runs");
    let mut lines = BufReader::new(coordinator.stdout.take().expect("stdout")).lines();
    let first = lines.next().expect("a line").expect("utf-8");
    let addr: SocketAddr = first
        .rsplit(' ')
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no address in {first:?}"));
    let tls = client_config(&Trust::CaPem(
        std::fs::read(dir.join("ca.pem")).expect("ca"),
    ))
    .expect("client config");
    let to_provider = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut opts = ProviderOpts::new(60);
    opts.record = Some(to_provider.clone());
    let provider = TestProvider::start_with(addr, tls.clone(), opts);
    provider.wait_ready(1);

    let sealed_marker = *b"SEALED-JOB-MARKER-7f3a91";
    let clear_marker = *b"CLEAR-JOB-MARKER-0c55e2d";
    let mut requester = Requester::connect(addr, tls).expect("requester");
    let sealed = requester
        .submit_sealed(&job(&sealed_marker, 1))
        .expect("the sealed job runs");
    assert!(sealed.outputs[0]
        .windows(24)
        .any(|w| w == plus_one(&sealed_marker).as_slice()));
    let clear = requester
        .submit(&job(&clear_marker, 2))
        .expect("the job in the clear runs");
    assert!(clear.outputs[0]
        .windows(24)
        .any(|w| w == plus_one(&clear_marker).as_slice()));

    let sealed_out = plus_one(&sealed_marker);
    let clear_out = plus_one(&clear_marker);
    let found = in_memory(
        coordinator.id(),
        &[&sealed_marker, &sealed_out, &clear_marker, &clear_out],
    );
    eprintln!("markers found in the coordinator's memory (sealed in, sealed out, clear in, clear out): {found:?}");
    // The coordinator's traffic: what it sent the provider, and the
    // results it sent the requester (the outputs as delivered).
    let mut traffic = to_provider.lock().map(|t| t.clone()).unwrap_or_default();
    for o in sealed.result.outputs.iter().chain(&clear.outputs) {
        traffic.extend_from_slice(o);
    }
    let in_traffic = |n: &[u8]| traffic.windows(n.len()).any(|w| w == n);
    let log_text = std::fs::read(&log).expect("log");
    let in_log = |n: &[u8]| log_text.windows(n.len()).any(|w| w == n);
    drop(requester);
    drop(provider);
    let _ = coordinator.kill();
    let _ = coordinator.wait();
    let _ = std::fs::remove_dir_all(&dir);

    assert!(
        !found[0] && !found[1],
        "the sealed job's input or output is in the coordinator's memory: {found:?}"
    );
    assert!(
        found[2] || found[3],
        "the job in the clear is not in the coordinator's memory either: the search sees \
         nothing ({found:?})"
    );
    for marker in [&sealed_marker[..], &sealed_out, &clear_marker, &clear_out] {
        assert!(!in_log(marker), "a payload marker in the coordinator's log");
    }
    assert!(
        !in_traffic(&sealed_marker) && !in_traffic(&sealed_out),
        "the sealed job's input or output in the coordinator's traffic"
    );
    assert!(
        in_traffic(&clear_marker) && in_traffic(&clear_out),
        "the job in the clear is not in the coordinator's traffic: the search sees nothing"
    );
    assert!(log_text.len() > 1000, "the log at debug says something");
}
