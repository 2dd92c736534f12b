//! `tessera-certs` leaves the server's private key readable by its owner
//! only, whatever was there before.
#![cfg(unix)]

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .expect("file exists")
        .permissions()
        .mode()
        & 0o777
}

fn certs(dir: &Path) {
    let out = Command::new(env!("CARGO_BIN_EXE_tessera-certs"))
        .arg(dir)
        .stdout(Stdio::null())
        .output()
        .expect("tessera-certs runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn server_key_is_written_with_mode_0600_also_over_a_wider_existing_file() {
    let dir = std::env::temp_dir().join(format!("tessera-certs-mode-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let key = dir.join("server.key");

    // A fresh directory.
    certs(&dir);
    assert_eq!(mode(&key), 0o600);
    let first = std::fs::read(&key).expect("server.key");
    assert!(first.starts_with(b"-----BEGIN PRIVATE KEY-----"));
    // The certificates are public.
    assert_eq!(mode(&dir.join("ca.pem")) & 0o600, 0o600);

    // An existing key file anyone may read (an earlier tool, a copy, a
    // umask of 0): rewritten, and made private.
    for wide in [0o644, 0o666, 0o604, 0o640] {
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(wide)).expect("chmod");
        certs(&dir);
        assert_eq!(mode(&key), 0o600, "after mode {wide:o}");
    }
    let last = std::fs::read(&key).expect("server.key");
    assert_ne!(first, last, "a new key each run");
    let _ = std::fs::remove_dir_all(&dir);
}
