//! The operator program: clear errors for bad configurations, a device key
//! created on first start (readable by its owner only), and a clean drain on
//! SIGTERM even while the coordinator cannot be reached.
#![cfg(feature = "cli")]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn exe() -> &'static str {
    env!("CARGO_BIN_EXE_tessera-agent")
}

fn temp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("tessera-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn run_with(config: &str, dir: &Path) -> Output {
    let path = dir.join("agent.toml");
    std::fs::write(&path, config).unwrap();
    Command::new(exe())
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn agent(args: &[&str]) -> Output {
    Command::new(exe()).args(args).output().unwrap()
}

/// `--help` succeeds and names every subcommand and option; `--version`
/// names the protocol versions and the git revision; no subcommand is a
/// usage error (exit 2) that says what to run.
#[test]
fn help_version_and_usage() {
    let o = agent(&["--help"]);
    assert!(o.status.success(), "{}", stderr(&o));
    for word in [
        "init",
        "devices",
        "check",
        "run",
        "receipts",
        "--config",
        "--version",
    ] {
        assert!(
            stdout(&o).contains(word),
            "--help lacks {word}: {}",
            stdout(&o)
        );
    }
    for sub in ["init", "devices", "check", "run", "receipts"] {
        let o = agent(&[sub, "--help"]);
        assert!(o.status.success(), "{sub} --help: {}", stderr(&o));
    }
    let o = agent(&["init", "--help"]);
    for option in ["--config", "--coordinator", "--ca", "--key", "--store"] {
        assert!(stdout(&o).contains(option), "init --help lacks {option}");
    }
    let o = agent(&["--version"]);
    assert!(o.status.success());
    let v = stdout(&o);
    assert!(v.starts_with("tessera-agent 0."), "{v}");
    assert!(v.contains("protocol 1-3") && v.contains("git "), "{v}");

    let o = agent(&[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("tessera-agent run --config FILE"),
        "{}",
        stderr(&o)
    );
    let o = agent(&["serve"]);
    assert_eq!(o.status.code(), Some(2), "an unknown subcommand");
}

/// `init` writes a configuration the program reads, with absolute paths,
/// creates the key (mode 0600) and prints its id; it never overwrites a
/// configuration.
#[test]
fn init_writes_a_configuration_and_creates_the_key() {
    let dir = temp("init");
    let config = dir.join("etc/agent.toml");
    let c = config.to_str().unwrap();
    let o = agent(&["init", "--config", c, "--coordinator", "10.0.0.5:7700"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = std::fs::read_to_string(&config).unwrap();
    let parsed = tessera_core::operator::OperatorConfig::from_toml(&text).unwrap();
    assert_eq!(parsed.coordinator, "10.0.0.5:7700");
    assert_eq!(parsed.key.file, dir.join("etc/device.key"));
    assert_eq!(
        parsed.tls.ca_file.as_deref(),
        Some(dir.join("etc/ca.pem").as_path())
    );
    assert_eq!(parsed.store.unwrap().dir, dir.join("etc/results"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.join("etc/device.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let signer = tessera_core::operator::load_key(&dir.join("etc/device.key")).unwrap();
    let id = tessera_core::attest::key_id(&tessera_core::attest::Signer::public_key(&signer));
    assert!(
        stdout(&o).contains(&format!("key id {}", hex(&id))),
        "{}",
        stdout(&o)
    );

    let o = agent(&["init", "--config", c]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains(&format!("{c} exists")),
        "{}",
        stderr(&o)
    );
    assert_eq!(
        std::fs::read_to_string(&config).unwrap(),
        text,
        "left as it was"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// `check` reports each step and stops at the first failure, naming the
/// file it is about; the coordinator step fails when nothing listens.
#[test]
fn check_stops_at_the_first_failure_and_names_it() {
    let dir = temp("check");
    let config = dir.join("agent.toml");
    let c = config.to_str().unwrap();
    let o = agent(&["check", "--config", c]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stdout(&o).contains(&format!("FAIL  configuration: {c}")),
        "{}",
        stdout(&o)
    );

    let o = agent(&["init", "--config", c, "--coordinator", "127.0.0.1:1"]);
    assert!(o.status.success(), "{}", stderr(&o));
    // No CA file yet.
    let o = agent(&["check", "--config", c]);
    assert_eq!(o.status.code(), Some(1));
    let ca = dir.join("ca.pem");
    assert!(stdout(&o).contains("ok    configuration"), "{}", stdout(&o));
    assert!(
        stdout(&o).contains(&format!(
            "FAIL  coordinator trust: [tls] ca_file {}",
            ca.display()
        )),
        "{}",
        stdout(&o)
    );
    std::fs::write(&ca, b"no certificate here").unwrap();
    let o = agent(&["check", "--config", c]);
    assert!(
        stdout(&o).contains("holds no PEM certificate"),
        "{}",
        stdout(&o)
    );

    // A key that is missing is named, and not created.
    let bundle = pem_ca();
    std::fs::write(&ca, bundle).unwrap();
    std::fs::rename(dir.join("device.key"), dir.join("moved.key")).unwrap();
    let o = agent(&["check", "--config", c]);
    assert!(
        stdout(&o).contains("ok    coordinator trust"),
        "{}",
        stdout(&o)
    );
    assert!(
        stdout(&o).contains(&format!(
            "FAIL  device key: device key {} does not exist",
            dir.join("device.key").display()
        )),
        "{}",
        stdout(&o)
    );
    assert!(!dir.join("device.key").exists());
    std::fs::rename(dir.join("moved.key"), dir.join("device.key")).unwrap();

    // Everything but the coordinator.
    let o = agent(&["check", "--config", c, "--timeout", "1"]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    for ok in ["ok    device key", "ok    result store", "ok    device"] {
        assert!(stdout(&o).contains(ok), "{ok}: {}", stdout(&o));
    }
    assert!(
        stdout(&o).contains("FAIL  coordinator: no session within 1 s"),
        "{}",
        stdout(&o)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// `receipts` lists an empty store, and refuses a configuration without one.
#[test]
fn receipts_reads_the_store_of_the_configured_key() {
    let dir = temp("receipts");
    let config = dir.join("agent.toml");
    let c = config.to_str().unwrap();
    assert!(agent(&["init", "--config", c]).status.success());
    let o = agent(&["receipts", "--config", c]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("0 result(s) waiting"), "{}", stdout(&o));
    let text = std::fs::read_to_string(&config).unwrap();
    let without: String = text
        .lines()
        .filter(|l| !l.starts_with("[store]") && !l.starts_with("dir ="))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&config, without).unwrap();
    let o = agent(&["receipts", "--config", c]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("no [store] configured"),
        "{}",
        stderr(&o)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A CA certificate in PEM (a throwaway self-signed one).
fn pem_ca() -> &'static str {
    include_str!("vectors/test_ca.pem")
}

#[test]
fn usage_and_configuration_errors_are_clear() {
    let dir = temp("errors");
    let k = dir.join("k");
    let k = k.display();
    let o = run_with(
        &format!("coordinator = \"127.0.0.1:1\"\n[tls]\n[key]\nfile = \"{k}\"\nprice = 3\n"),
        &dir,
    );
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("price"),
        "unknown field named: {}",
        stderr(&o)
    );

    let o = run_with(
        &format!("coordinator = \"127.0.0.1:1\"\n[tls]\nca_file = \"a.pem\"\npinned_key_sha256 = \"00\"\n[key]\nfile = \"{k}\"\n"),
        &dir,
    );
    assert!(
        stderr(&o).contains("exactly one of ca_file or pinned_key_sha256"),
        "{}",
        stderr(&o)
    );

    let o = run_with(
        &format!("coordinator = \"127.0.0.1:1\"\n[tls]\npinned_key_sha256 = \"xyz\"\n[key]\nfile = \"{k}\"\n"),
        &dir,
    );
    assert!(stderr(&o).contains("64 hex digits"), "{}", stderr(&o));
    // A configuration refused creates no key file.
    assert!(
        !dir.join("k").exists(),
        "a refused configuration created a key"
    );

    let key = dir.join("bad.key");
    std::fs::write(&key, b"not a key").unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let o = run_with(
        &format!(
            "coordinator = \"127.0.0.1:1\"\n[tls]\npinned_key_sha256 = \"{}\"\n[key]\nfile = \"{}\"\n",
            "ab".repeat(32),
            key.display()
        ),
        &dir,
    );
    assert!(
        stderr(&o).contains("not an Ed25519 PKCS#8 key"),
        "{}",
        stderr(&o)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn first_start_creates_the_key_and_sigterm_drains() {
    let dir = temp("drain");
    let key = dir.join("device.key");
    let config = format!(
        "coordinator = \"127.0.0.1:1\"\n[tls]\npinned_key_sha256 = \"{}\"\n[key]\nfile = \"{}\"\n[store]\ndir = \"{}\"\n[timers]\nstatus_interval_s = 1\n",
        "ab".repeat(32),
        key.display(),
        dir.join("results").display()
    );
    let path = dir.join("agent.toml");
    std::fs::write(&path, config).unwrap();
    let child = Command::new(exe())
        .arg("--config")
        .arg(&path)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Read its log until it has tried the (closed) coordinator, then stop it.
    let mut child = child;
    let stderr = child.stderr.take().expect("piped stderr");
    let (lines_tx, lines) = std::sync::mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut log = String::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !log.contains("connection:") {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) => {
                log.push_str(&line);
                log.push('\n');
            }
            Err(_) => panic!("no connection attempt logged: {log}"),
        }
    }
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let status = child.wait().unwrap();
    reader.join().expect("log reader");
    log.extend(lines.try_iter().map(|l| l + "\n"));
    assert!(status.success(), "{log}");
    assert!(log.contains("created a new device key"), "{log}");
    assert!(log.contains("draining"), "{log}");
    assert!(
        log.contains("connection:"),
        "the unreachable coordinator is reported: {log}"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // The same key loads on the next start.
    assert!(tessera_core::attest::Ed25519Signer::from_pkcs8(&std::fs::read(&key).unwrap()).is_ok());
    let _ = std::fs::remove_dir_all(&dir);
}

/// Runs the program with `config`, for at most 20 s (it is killed then);
/// returns whether it exited successfully (`None`: still running) and its
/// standard error.
fn run_briefly(config: &str, dir: &Path) -> (Option<bool>, String) {
    let path = dir.join("agent.toml");
    std::fs::write(&path, config).unwrap();
    let mut child = Command::new(exe())
        .arg("--config")
        .arg(&path)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s.success());
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let out = child.wait_with_output().unwrap();
    (status, String::from_utf8_lossy(&out.stderr).into_owned())
}

/// A valid device key in `path` with `mode`; returns its key id.
fn write_key(path: &Path, mode: u32) -> [u8; 16] {
    use tessera_core::attest::Signer;
    let (signer, pkcs8) = tessera_core::attest::Ed25519Signer::generate().unwrap();
    std::fs::write(path, pkcs8).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    #[cfg(not(unix))]
    let _ = mode;
    signer.key_id()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn config_with(key: &Path, store: Option<&Path>) -> String {
    let mut c = format!(
        "coordinator = \"127.0.0.1:1\"\n[tls]\npinned_key_sha256 = \"{}\"\n[key]\nfile = \"{}\"\n",
        "ab".repeat(32),
        key.display()
    );
    if let Some(s) = store {
        c += &format!("[store]\ndir = \"{}\"\n", s.display());
    }
    c
}

/// An existing key file that group or others can read is refused, with the
/// file, its mode and the fix, as ssh does.
#[cfg(unix)]
#[test]
fn a_key_file_readable_by_others_is_refused() {
    let dir = temp("key-mode");
    let key = dir.join("device.key");
    for mode in [0o644, 0o640, 0o604, 0o660] {
        write_key(&key, mode);
        let (ok, log) = run_briefly(&config_with(&key, None), &dir);
        assert_eq!(ok, Some(false), "mode {mode:o}: {log}");
        let k = key.display().to_string();
        assert!(
            log.contains(&format!("device key {k} has mode 0{mode:o}")),
            "{log}"
        );
        assert!(log.contains(&format!("chmod 600 {k}")), "{log}");
        std::fs::remove_file(&key).unwrap();
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A store whose chain file another key wrote stops the program at start-up
/// with both key ids, instead of forking either chain.
#[test]
fn a_store_of_another_key_is_refused_at_start_up() {
    let dir = temp("other-key");
    let store = dir.join("results");
    let other = [0x5a; 16];
    drop(tessera_core::store::FileStore::open(&store, other).unwrap());
    let key = dir.join("device.key");
    let ours = write_key(&key, 0o600);
    let (ok, log) = run_briefly(&config_with(&key, Some(&store)), &dir);
    assert_eq!(ok, Some(false), "{log}");
    let expected = format!(
        "chain file {} belongs to key {}, this agent's key is {}",
        store.join("chain").display(),
        hex(&other),
        hex(&ours)
    );
    assert!(log.contains(&expected), "{log}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A pinned key with non-ASCII characters is a configuration error, not a
/// crash.
#[test]
fn a_non_ascii_pin_is_an_error_not_a_panic() {
    let dir = temp("pin");
    for pin in [format!("a{}a", "é".repeat(31)), "é".repeat(32)] {
        let (ok, log) = run_briefly(
            &format!(
                "coordinator = \"127.0.0.1:1\"\n[tls]\npinned_key_sha256 = \"{pin}\"\n[key]\nfile = \"{}\"\n",
                dir.join("k").display()
            ),
            &dir,
        );
        assert_eq!(ok, Some(false), "{log}");
        assert!(!log.contains("panicked"), "{log}");
        assert!(
            log.contains("pinned_key_sha256 must be hex digits"),
            "{log}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// `receipts` verifies every stored receipt under the configured key and
/// their links: a stored receipt changed after signing fails the command.
#[test]
fn receipts_verifies_what_the_store_holds() {
    use tessera_core::agent::{Outcome, ResultRecord};
    use tessera_core::attest::{ChainState, Receipt, ReceiptStatus, Signer, RECEIPT_LEN};
    use tessera_core::store::{FileStore, ResultStore};
    use tessera_core::testkit::JobDescription;

    let dir = temp("receipts-verify");
    let config = dir.join("agent.toml");
    let c = config.to_str().unwrap();
    assert!(agent(&["init", "--config", c]).status.success());
    let mut signer = tessera_core::operator::load_key(&dir.join("device.key")).unwrap();
    let mut store = FileStore::open(dir.join("results"), signer.key_id()).unwrap();
    let description = JobDescription {
        kernel: vec![0; 8],
        entry_point: "main".into(),
        grid: [1, 1, 1],
        push_constants: vec![],
        buffers: vec![(vec![1; 10], 10, true)],
        nonce: [4; 32],
        bindings: Vec::new(),
    };
    let mut chain = ChainState::default();
    let mut records = Vec::new();
    for job in [11u64, 12] {
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
            sequence: chain.next_sequence,
            prev_hash: chain.prev_hash,
        };
        let mut out = [0u8; RECEIPT_LEN];
        receipt.sign(&mut signer, &mut out).unwrap();
        chain.advance(Receipt::hash(&out));
        records.push(ResultRecord {
            job,
            spec: description.assign(job),
            outcome: Outcome::Completed {
                output_len: 10,
                output_root: [5; 32],
            },
            usage: Default::default(),
            price: 9,
            receipt: tessera_core::bounded::BoundedVec::from_slice(&out).unwrap(),
            next_sequence: chain.next_sequence,
            prev_hash: chain.prev_hash,
        });
    }
    for r in &records {
        store.save(r).unwrap();
    }
    let o = agent(&["receipts", "--config", c]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("2 result(s) waiting"), "{}", stdout(&o));
    assert_eq!(stdout(&o).matches(" ok").count(), 2, "{}", stdout(&o));
    assert!(
        stdout(&o).contains("#1 ") && stdout(&o).contains("#2 "),
        "{}",
        stdout(&o)
    );

    // Job 12's receipt changed in the store: refused, and the command fails.
    let mut bad = records[1].clone();
    let mut bytes = bad.receipt.to_vec();
    bytes[100] ^= 1;
    bad.receipt = tessera_core::bounded::BoundedVec::from_slice(&bytes).unwrap();
    store.save(&bad).unwrap();
    let o = agent(&["receipts", "--config", c]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stdout(&o).contains("FAIL: the receipt does not verify"),
        "{}",
        stdout(&o)
    );
    assert!(
        stderr(&o).contains("1 receipt(s) failed verification"),
        "{}",
        stderr(&o)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// `[metrics] listen` serves the metrics: a scrape of `/metrics` parses as
/// Prometheus text (`prometheus-parse`, a scraper's parser) and carries
/// every documented metric; other paths are 404.
#[test]
fn metrics_are_served_and_parse_as_prometheus_text() {
    use std::io::{BufRead, BufReader, Read, Write};
    let dir = temp("metrics");
    let key = dir.join("device.key");
    let config = dir.join("agent.toml");
    std::fs::write(
        &config,
        config_with(&key, None) + "[metrics]\nlisten = \"127.0.0.1:0\"\n",
    )
    .unwrap();
    let mut child = Command::new(exe())
        .args(["run", "--config"])
        .arg(&config)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(at) = line.split("metrics on http://").nth(1) {
                let _ = tx.send(at.trim_end_matches("/metrics").to_string());
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("the listener's address");
    let get = |path: &str| {
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    };
    // The first render follows the first step: wait for a body.
    let deadline = Instant::now() + Duration::from_secs(10);
    let body = loop {
        let response = get("/metrics");
        let body = response.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
        if !body.is_empty() || Instant::now() > deadline {
            assert!(response.starts_with("HTTP/1.1 200"), "{response}");
            assert!(
                response.contains("application/openmetrics-text"),
                "{response}"
            );
            break body;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(get("/other").starts_with("HTTP/1.1 404"));
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let _ = child.wait();

    let lines = body.lines().map(|l| Ok(l.to_string()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("Prometheus text");
    let value = |name: &str, label: Option<(&str, &str)>| {
        scrape
            .samples
            .iter()
            .find(|s| s.metric == name && label.is_none_or(|(k, v)| s.labels.get(k) == Some(v)))
            .map(|s| match s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                _ => f64::NAN,
            })
    };
    for (name, label, expect) in [
        ("tessera_jobs_total", Some(("outcome", "completed")), 0.0),
        ("tessera_jobs_total", Some(("outcome", "failed")), 0.0),
        ("tessera_offers_total", Some(("answer", "accepted")), 0.0),
        ("tessera_gpu_seconds_total", None, 0.0),
        ("tessera_earnings_total", None, 0.0),
        ("tessera_jobs_active", None, 0.0),
        ("tessera_results_held", None, 0.0),
        (
            "tessera_session_state",
            Some(("state", "disconnected")),
            1.0,
        ),
        ("tessera_session_state", Some(("state", "ready")), 0.0),
        ("tessera_sessions_total", None, 0.0),
        ("tessera_device_available", None, 1.0),
        ("tessera_info", None, 1.0),
    ] {
        assert_eq!(
            value(name, label),
            Some(expect),
            "{name} {label:?} in:\n{body}"
        );
    }
    assert!(
        body.contains("# TYPE tessera_kernel_rejections counter"),
        "{body}"
    );
    assert!(body.trim_end().ends_with("# EOF"));
    // The shipped Grafana dashboard asks only for metrics that exist.
    let dashboard: serde_json::Value = serde_json::from_str(include_str!(
        "../../examples/operator/grafana-dashboard.json"
    ))
    .unwrap();
    let mut asked = 0;
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            for word in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
                if word.starts_with("tessera_") {
                    asked += 1;
                    assert!(
                        scrape.samples.iter().any(|s| s.metric == word)
                            || body
                                .contains(&format!("# TYPE {} ", word.trim_end_matches("_total"))),
                        "the dashboard asks for {word}, which is not served"
                    );
                }
            }
        }
    }
    assert!(asked >= 10);
    let _ = std::fs::remove_dir_all(&dir);
}

/// systemd's side of `Type=notify`: the service says READY=1 once key and
/// device are up, keeps the watchdog fed, reloads its pricing on SIGHUP
/// (RELOADING=1, then READY=1) without ending its session, and says
/// STOPPING=1 when SIGTERM starts the drain.
#[cfg(unix)]
#[test]
fn it_speaks_systemds_notify_protocol() {
    use std::io::{BufRead, BufReader};
    use std::os::unix::net::UnixDatagram;
    let dir = temp("notify");
    let socket_path = dir.join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let key = dir.join("device.key");
    let config = dir.join("agent.toml");
    let with_base =
        |base: u64| config_with(&key, None) + &format!("[pricing]\nbase = {base}\nfloor = 5\n");
    std::fs::write(&config, with_base(100)).unwrap();
    // systemd names the main process in WATCHDOG_PID: exec keeps the
    // shell's pid for the program.
    let mut child = Command::new("sh")
        .arg("-c")
        .arg("WATCHDOG_PID=$$ exec \"$0\" run --config \"$1\"")
        .arg(exe())
        .arg(&config)
        .env("NOTIFY_SOCKET", &socket_path)
        .env("WATCHDOG_USEC", "200000")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, log) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut buf = [0u8; 4096];
    // Watchdog keep-alives never stop: every wait below is bounded here.
    let give_up = Instant::now() + Duration::from_secs(60);
    let mut next = || {
        assert!(
            Instant::now() < give_up,
            "the expected notification never came"
        );
        let n = socket.recv(&mut buf).expect("a notification");
        // One message: assignments of one line each.
        String::from_utf8_lossy(&buf[..n]).trim_end().to_string()
    };
    let first = next();
    assert!(first.lines().any(|l| l == "READY=1"), "{first}");
    assert!(first.contains("STATUS="), "{first}");
    let mut watchdogs = 0;
    while watchdogs < 3 {
        if next() == "WATCHDOG=1" {
            watchdogs += 1;
        }
    }

    std::fs::write(&config, with_base(777)).unwrap();
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap()
        .success());
    let mut seen = Vec::new();
    while !seen
        .iter()
        .any(|m: &String| m.lines().any(|l| l == "READY=1"))
    {
        let m = next();
        if m != "WATCHDOG=1" {
            seen.push(m);
        }
    }
    assert!(seen[0].lines().any(|l| l == "RELOADING=1"), "{seen:?}");
    let deadline = Instant::now() + Duration::from_secs(10);
    let reloaded = loop {
        match log.recv_timeout(Duration::from_millis(100)) {
            Ok(line) if line.contains("pricing reloaded") => break line,
            _ if Instant::now() > deadline => panic!("no reload logged"),
            _ => {}
        }
    };
    assert!(reloaded.contains("base 777"), "{reloaded}");
    assert!(child.try_wait().unwrap().is_none(), "still serving");

    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    loop {
        let m = next();
        if m.lines().any(|l| l == "STOPPING=1") {
            break;
        }
    }
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The agent turns the driver's on-disk shader cache off (it would keep
/// what the driver compiled from sealed kernels past their runs), unless
/// the operator set the switch: with `MESA_SHADER_CACHE_DISABLE=false`, the
/// control, the same command fills the cache directory, so the check sees
/// what it looks for. Needs a Mesa driver: lavapipe, which CI has, must
/// write its cache; another driver that writes none is skipped.
#[cfg(feature = "vulkan")]
#[test]
fn the_drivers_disk_cache_stays_empty() {
    let files = |dir: &Path| -> usize {
        fn count(d: &Path) -> usize {
            std::fs::read_dir(d).map_or(0, |it| {
                it.flatten()
                    .map(|e| {
                        let p = e.path();
                        if p.is_dir() {
                            count(&p)
                        } else {
                            1
                        }
                    })
                    .sum()
            })
        }
        count(dir)
    };
    let run = |dir: &Path, switch: Option<&str>| {
        let mut c = Command::new(exe());
        c.arg("devices")
            .env("MESA_SHADER_CACHE_DIR", dir)
            .env("XDG_CACHE_HOME", dir)
            .env_remove("MESA_SHADER_CACHE_DISABLE")
            .env_remove("MESA_GLSL_CACHE_DISABLE")
            .env_remove("MESA_DISK_CACHE_SINGLE_FILE");
        if let Some(v) = switch {
            c.env("MESA_SHADER_CACHE_DISABLE", v);
        }
        let out = c.output().unwrap();
        assert!(out.status.success(), "devices: {}", stderr(&out));
        stdout(&out)
    };
    let control = temp("disk-cache-on");
    let listed = run(&control, Some("false"));
    let written = files(&control);
    let _ = std::fs::remove_dir_all(&control);
    if written == 0 {
        assert!(
            !listed.contains("llvmpipe"),
            "lavapipe wrote no disk cache with it on: the control sees nothing\n{listed}"
        );
        eprintln!("skipped: this driver wrote no disk cache here\n{listed}");
        return;
    }
    let dir = temp("disk-cache-off");
    run(&dir, None);
    assert_eq!(files(&dir), 0, "the driver wrote its disk cache");
    let _ = std::fs::remove_dir_all(&dir);
}
