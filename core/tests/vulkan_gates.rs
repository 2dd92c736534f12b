//! The second gate: every new kernel also passes the Khronos validator
//! (`spirv-val`), whose verdict is cached by the kernel's bytes; a provider
//! without it finds out at setup.
#![cfg(all(feature = "vulkan", unix))]

mod vulkan_support;
use std::path::PathBuf;
use tessera_core::vulkan::*;
use vulkan_support::*;

fn one_buffer() -> [BufferSpec<'static>; 1] {
    [BufferSpec {
        binding: 0,
        len: 64,
        init: None,
        readback: true,
    }]
}

fn job<'a>(spirv: &'a [u8], bufs: &'a [BufferSpec<'a>], spec: &'a [(u32, u32)]) -> KernelJob<'a> {
    KernelJob {
        spirv,
        entry_point: "main",
        specialization: spec,
        push_constants: &[],
        grid: [1, 1, 1],
        buffers: bufs,
    }
}

#[test]
fn the_khronos_validator_refuses_what_the_first_gate_lets_through() {
    let spirv = kernel("bad_layout");
    // Valid for Tessera's own gate (it does not repeat layout rules)...
    let caps = dispatcher().capabilities().clone();
    let bufs = one_buffer();
    check_kernel(
        &job(&spirv, &bufs, &[]),
        &caps,
        &DispatcherConfig::default(),
    )
    .expect("the first gate accepts it");
    // ...but not for spirv-val, so it never reaches the driver.
    let mut d = dispatcher();
    match d.run(&job(&spirv, &bufs, &[]), TIMEOUT) {
        Err(JobError::Rejected(KernelRejection::KhronosRejected { message })) => {
            assert!(message.contains("not aligned"), "{message}");
        }
        other => panic!("expected a Khronos rejection, got {other:?}"),
    }
    let r = KernelRejection::KhronosRejected {
        message: String::new(),
    };
    assert_eq!(r.code(), 90);
    // The same verdict again, from the cache.
    assert!(matches!(
        d.run(&job(&spirv, &bufs, &[]), TIMEOUT),
        Err(JobError::Rejected(KernelRejection::KhronosRejected { .. }))
    ));
    still_serving(&mut d);
    assert_clean(&d);
}

/// A `spirv-val` that counts its runs, then is the real one. (It cannot
/// write a file: the gate runs it with `RLIMIT_FSIZE` 0. It makes a
/// directory per run instead.)
fn counting_validator(dir: &std::path::Path) -> (PathBuf, PathBuf) {
    use std::os::unix::fs::PermissionsExt;
    let count = dir.join("runs");
    std::fs::create_dir_all(&count).expect("runs dir");
    let script = dir.join("spirv-val-counting");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nmkdir '{}'/$$\nexec spirv-val \"$@\"\n",
            count.display()
        ),
    )
    .expect("write script");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    (script, count)
}

fn runs(count: &std::path::Path) -> usize {
    std::fs::read_dir(count).map(|d| d.count()).unwrap_or(0)
}

#[test]
fn khronos_verdicts_are_cached_by_kernel() {
    let dir = std::env::temp_dir().join(format!("tessera-gates-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let (program, count) = counting_validator(&dir);
    let mut d = dispatcher_with(DispatcherConfig {
        khronos: KhronosConfig {
            program: Some(program),
            ..KhronosConfig::default()
        },
        ..DispatcherConfig::default()
    });
    let at_setup = runs(&count);
    assert!(at_setup >= 1, "the validator is checked at setup");
    let spirv = kernel("spec_workgroup");
    let bufs = one_buffer();
    // A new kernel: validated once.
    d.run(&job(&spirv, &bufs, &[(0, 4)]), TIMEOUT)
        .expect("spec_workgroup runs");
    assert_eq!(runs(&count), at_setup + 1);
    // The same pipeline: no gate at all.
    d.run(&job(&spirv, &bufs, &[(0, 4)]), TIMEOUT)
        .expect("again");
    // Another specialization: a new pipeline (the first gate runs again,
    // it resolves constants), but the same bytes: the verdict is cached.
    d.run(&job(&spirv, &bufs, &[(0, 8)]), TIMEOUT)
        .expect("another specialization");
    assert_eq!(runs(&count), at_setup + 1);
    // Another kernel: validated.
    still_serving(&mut d);
    assert_eq!(runs(&count), at_setup + 2);
    assert_clean(&d);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_missing_khronos_validator_is_a_setup_error() {
    let instance = Instance::load().expect("Vulkan loader");
    let r = Dispatcher::new(
        &instance,
        DeviceSelector::Default,
        DispatcherConfig {
            khronos: KhronosConfig {
                program: Some("/nonexistent/spirv-val".into()),
                ..KhronosConfig::default()
            },
            ..DispatcherConfig::default()
        },
    );
    match r {
        Err(e @ VulkanError::KhronosUnavailable(_)) => {
            assert_eq!(e.code(), 9);
            assert!(e.to_string().contains("/nonexistent/spirv-val"), "{e}");
        }
        Err(other) => panic!("expected KhronosUnavailable, got {other:?}"),
        Ok(_) => panic!("a dispatcher without its second gate"),
    }
    // Turned off knowingly, it is not needed.
    let d = Dispatcher::new(
        &instance,
        DeviceSelector::Default,
        DispatcherConfig {
            khronos: KhronosConfig {
                enabled: false,
                program: Some("/nonexistent/spirv-val".into()),
                ..KhronosConfig::default()
            },
            validation: true,
            ..DispatcherConfig::default()
        },
    )
    .expect("a dispatcher with the gate off");
    assert_clean(&d);
}
