//! Links the Khronos SPIR-V validator (SPIRV-Tools, C++) for the
//! `spirv_gate` target's differential check. Debian and Ubuntu ship it as a
//! static library in the `spirv-tools` package; `SPIRV_TOOLS_LIB_DIR`
//! points elsewhere. Without it the other targets still build and only
//! `spirv_gate` fails to link (undefined `spv*` symbols).
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-env-changed=SPIRV_TOOLS_LIB_DIR");
    let dirs: Vec<PathBuf> = match std::env::var_os("SPIRV_TOOLS_LIB_DIR") {
        Some(d) => vec![d.into()],
        None => [
            "/usr/lib/x86_64-linux-gnu",
            "/usr/lib/aarch64-linux-gnu",
            "/usr/local/lib",
            "/usr/lib",
        ]
        .iter()
        .map(PathBuf::from)
        .collect(),
    };
    match dirs.iter().find(|d| d.join("libSPIRV-Tools.a").is_file()) {
        Some(dir) => {
            println!("cargo:rustc-link-search=native={}", dir.display());
            println!("cargo:rustc-link-lib=static=SPIRV-Tools");
            println!("cargo:rustc-link-lib=dylib=stdc++");
        }
        None => println!(
            "cargo:warning=libSPIRV-Tools.a not found (install spirv-tools or set \
             SPIRV_TOOLS_LIB_DIR): the spirv_gate target will not link"
        ),
    }
}
