//! The three programs end to end: certificates from `tessera-certs`, the
//! `tessera-coordinator` binary, a CPU test provider, and
//! `tessera-requester --demo-matmul` checking the product.

mod support;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use support::{ProviderOpts, TestProvider};
use tessera_coordinator::demo::matmul_run;
use tessera_coordinator::tls::{client_config, Trust};

#[test]
fn certs_coordinator_and_requester_programs_work_together() {
    let dir = std::env::temp_dir().join(format!("tessera-cli-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let status = Command::new(env!("CARGO_BIN_EXE_tessera-certs"))
        .arg(&dir)
        .stdout(Stdio::null())
        .status()
        .expect("tessera-certs runs");
    assert!(status.success());

    let mut coordinator = Command::new(env!("CARGO_BIN_EXE_tessera-coordinator"))
        .args(["--listen", "127.0.0.1:0", "--run-for", "30", "--certs"])
        .arg(&dir)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .expect("tessera-coordinator runs");
    let mut lines = BufReader::new(coordinator.stdout.take().expect("stdout")).lines();
    let first = lines.next().expect("a line").expect("utf-8");
    let addr: SocketAddr = first
        .rsplit(' ')
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no address in {first:?}"));
    let pin_line = lines.next().expect("a line").expect("utf-8");
    let pin = pin_line.rsplit(' ').next().expect("pin").to_string();

    let ca = std::fs::read(dir.join("ca.pem")).expect("ca.pem");
    let tls = client_config(&Trust::CaPem(ca)).expect("client config");
    let mut opts = ProviderOpts::new(40);
    opts.run = matmul_run;
    let provider = TestProvider::start_with(addr, tls, opts);
    provider.wait_ready(1);

    let kernel = dir.join("stand-in.spv");
    std::fs::write(&kernel, [0x03, 0x02, 0x23, 0x07, 0, 0, 0, 0]).expect("kernel");
    let out = Command::new(env!("CARGO_BIN_EXE_tessera-requester"))
        .args(["--coordinator", &addr.to_string(), "--pin", &pin])
        .args(["--demo-matmul", "64", "--kernel"])
        .arg(&kernel)
        .output()
        .expect("tessera-requester runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{stdout}");
    assert!(stdout.contains("spot check"), "{stdout}");
    assert!(stdout.contains("vs the CPU reference: ok"), "{stdout}");

    drop(provider);
    let _ = coordinator.kill();
    let _ = coordinator.wait_timeout(Duration::from_secs(5));
    let _ = std::fs::remove_dir_all(&dir);
}

trait WaitTimeout {
    fn wait_timeout(&mut self, limit: Duration) -> Option<std::process::ExitStatus>;
}

impl WaitTimeout for std::process::Child {
    fn wait_timeout(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let until = std::time::Instant::now() + limit;
        while std::time::Instant::now() < until {
            if let Ok(Some(s)) = self.try_wait() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}
