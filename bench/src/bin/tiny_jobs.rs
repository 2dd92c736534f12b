//! A requester that times tiny jobs through a running coordinator, for
//! benchmarks whose provider is not Rust (the Python and Go bindings'
//! executors): `tiny_jobs --coordinator ADDR --ca CA.pem --jobs N`.
//!
//! It waits until a provider takes the first job, then submits `N` tiny
//! jobs one after another (4 KiB in, the copy kernel, 4 KiB out), verifies
//! each result (evidence, receipt, Merkle spot check) and prints one JSON
//! line: `{"jobs": N, "p50_us": ..., "p99_us": ...}`, microseconds from
//! submitting a job to holding its verified result.

use std::net::SocketAddr;
use std::thread;
use std::time::{Duration, Instant};

use tessera_bench::{percentile, tiny_job};
use tessera_coordinator::requester::{new_nonce, Requester};
use tessera_coordinator::tls::client_config;
use tessera_coordinator::verify_result;
use tessera_core::net::Trust;

fn fail(what: &str, e: impl std::fmt::Display) -> ! {
    eprintln!("tiny_jobs: {what}: {e}");
    std::process::exit(1);
}

fn main() {
    let mut coordinator: Option<SocketAddr> = None;
    let mut ca: Option<String> = None;
    let mut jobs = 200usize;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| fail(&flag, "needs a value"));
        match flag.as_str() {
            "--coordinator" => {
                let v = value();
                coordinator = Some(v.parse().unwrap_or_else(|_| fail("--coordinator", v)));
            }
            "--ca" => ca = Some(value()),
            "--jobs" => {
                let v = value();
                jobs = v.parse().unwrap_or_else(|_| fail("--jobs", v));
            }
            _ => fail(
                "usage",
                "tiny_jobs --coordinator ADDR --ca CA.pem [--jobs N]",
            ),
        }
    }
    let addr = coordinator.unwrap_or_else(|| fail("--coordinator", "required"));
    let ca = ca.unwrap_or_else(|| fail("--ca", "required"));
    let pem = std::fs::read(&ca).unwrap_or_else(|e| fail(&ca, e));
    let tls = client_config(&Trust::CaPem(pem)).unwrap_or_else(|e| fail("TLS", e));

    let deadline = Instant::now() + Duration::from_secs(30);
    let mut requester = loop {
        let mut r = Requester::connect(addr, tls.clone()).unwrap_or_else(|e| fail("connect", e));
        let mut j = tiny_job();
        j.nonce = new_nonce().unwrap_or_else(|e| fail("nonce", e));
        match r.submit(&j) {
            Ok(res) => {
                verify_result(&j, &res).unwrap_or_else(|e| fail("verify", format!("{e:?}")));
                break r;
            }
            Err(_) if Instant::now() < deadline => thread::sleep(Duration::from_millis(50)),
            Err(e) => fail("first job", e),
        }
    };
    let mut times = Vec::with_capacity(jobs);
    for i in 0..jobs {
        let mut j = tiny_job();
        j.nonce = new_nonce().unwrap_or_else(|e| fail("nonce", e));
        let t = Instant::now();
        let r = requester
            .submit(&j)
            .unwrap_or_else(|e| fail(&format!("job {i}"), e));
        verify_result(&j, &r).unwrap_or_else(|e| fail("verify", format!("{e:?}")));
        times.push(t.elapsed().as_secs_f64() * 1e6);
    }
    println!(
        "{{\"jobs\": {jobs}, \"p50_us\": {:.1}, \"p99_us\": {:.1}}}",
        percentile(&times, 50.0),
        percentile(&times, 99.0)
    );
}
