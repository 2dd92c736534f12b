//! Machines without a Vulkan loader or without any driver get typed errors.
#![cfg(feature = "vulkan")]

use std::process::Command;
use tessera_core::vulkan::*;

const CHILD: &str = "TESSERA_VULKAN_NO_DRIVER_CHILD";

#[test]
fn missing_loader_library_is_a_typed_error() {
    let r = Instance::load_from(std::path::Path::new("/nonexistent/libvulkan.so.1"));
    assert_eq!(r.err(), Some(VulkanError::LoaderUnavailable));
    assert_eq!(VulkanError::LoaderUnavailable.code(), 1);
}

/// Runs in a child process whose loader is pointed at no driver at all
/// (ignored in the suite: `no_driver_is_a_typed_no_device_error` runs it).
#[test]
#[ignore = "run by no_driver_is_a_typed_no_device_error in a child process"]
fn no_driver_child() {
    assert!(
        std::env::var_os(CHILD).is_some(),
        "run only as the child of no_driver_is_a_typed_no_device_error"
    );
    let r = Instance::load().and_then(|i| {
        assert!(i.devices().is_empty());
        Dispatcher::new(&i, DeviceSelector::Default, DispatcherConfig::default()).map(|_| ())
    });
    assert_eq!(r, Err(VulkanError::NoDevice));
}

#[test]
fn no_driver_is_a_typed_no_device_error() {
    let exe = std::env::current_exe().expect("test binary");
    let out = Command::new(exe)
        .args([
            "--exact",
            "--ignored",
            "no_driver_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, "1")
        .env("VK_ICD_FILENAMES", "/nonexistent/icd.json")
        .env("VK_DRIVER_FILES", "/nonexistent/icd.json")
        .output()
        .expect("spawn child");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "child failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
