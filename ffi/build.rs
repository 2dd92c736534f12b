//! Builds the C++ API's bridge (feature `cpp`): generates the C++ side of
//! `src/cpp.rs` with cxx and compiles it into the library, so that
//! libtessera.a and libtessera.so carry it.
//!
//! The generated headers are copied to `$OUT_DIR/include/tessera/cxx/`
//! (`bridge.h`, `rust/cxx.h`), the layout committed under `include/`;
//! `ci/c-test` compares the two.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    #[cfg(feature = "cpp")]
    cpp::build();
}

#[cfg(feature = "cpp")]
mod cpp {
    use std::path::{Path, PathBuf};

    pub fn build() {
        println!("cargo:rerun-if-changed=src/cpp.rs");
        cxx_build::bridge("src/cpp.rs")
            .std("c++17")
            .flag_if_supported("-Wall")
            .flag_if_supported("-Wextra")
            .compile("tessera-cxxbridge");

        let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
        let generated = out.join("cxxbridge").join("include");
        let dest = out.join("include").join("tessera").join("cxx");
        copy(
            &generated.join("tessera-ffi").join("src").join("cpp.rs.h"),
            &dest.join("bridge.h"),
        );
        copy(
            &generated.join("rust").join("cxx.h"),
            &dest.join("rust").join("cxx.h"),
        );
    }

    fn copy(from: &Path, to: &Path) {
        if let Some(dir) = to.parent() {
            std::fs::create_dir_all(dir)
                .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        }
        std::fs::copy(from, to)
            .unwrap_or_else(|e| panic!("cannot copy {} to {}: {e}", from.display(), to.display()));
    }
}
