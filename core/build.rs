//! Records the git revision the crate is built from, for `tessera-agent
//! --version`: `TESSERA_GIT_REV` from the environment when set (a package
//! build outside a checkout), else `git rev-parse`, else "unknown".

use std::path::Path;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!s.is_empty()).then_some(s)
}

fn main() {
    println!("cargo:rerun-if-env-changed=TESSERA_GIT_REV");
    let rev = std::env::var("TESSERA_GIT_REV")
        .ok()
        .filter(|r| !r.is_empty())
        .or_else(|| {
            // Rebuilt when HEAD moves: the HEAD file, and the branch it names.
            if let Some(dir) = git(&["rev-parse", "--absolute-git-dir"]) {
                let head = Path::new(&dir).join("HEAD");
                println!("cargo:rerun-if-changed={}", head.display());
                if let Some(r) = git(&["symbolic-ref", "-q", "HEAD"]) {
                    println!(
                        "cargo:rerun-if-changed={}",
                        Path::new(&dir).join(r).display()
                    );
                }
            }
            git(&["rev-parse", "--short=12", "HEAD"])
        })
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=TESSERA_GIT_REV={rev}");
}
