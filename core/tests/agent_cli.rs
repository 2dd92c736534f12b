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

#[test]
fn usage_and_configuration_errors_are_clear() {
    let o = Command::new(exe()).output().unwrap();
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("usage: tessera-agent --config FILE"),
        "{}",
        stderr(&o)
    );

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
