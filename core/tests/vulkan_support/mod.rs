//! Helpers shared by the Vulkan tests: kernel loading and a dispatcher with
//! the Khronos validation layer on.
#![allow(dead_code)]

use std::time::Duration;
use tessera_core::vulkan::*;

/// A generous per-job timeout: lavapipe on a loaded CI machine, and the
/// hostile tests under valgrind (ci/hostile-memcheck), where a job runs
/// tens of times slower. Tests of timeouts give their own short limits.
pub const TIMEOUT: Duration = Duration::from_secs(120);

/// Reads a committed SPIR-V kernel from core/kernels.
pub fn kernel(name: &str) -> Vec<u8> {
    let path = format!("{}/kernels/{name}.spv", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// A dispatcher on the default device with validation on.
pub fn dispatcher() -> Dispatcher {
    dispatcher_with(DispatcherConfig::default())
}

/// A dispatcher with `config` plus validation.
pub fn dispatcher_with(config: DispatcherConfig) -> Dispatcher {
    let instance = Instance::load().expect("Vulkan loader");
    Dispatcher::new(
        &instance,
        DeviceSelector::Default,
        DispatcherConfig {
            validation: true,
            ..config
        },
    )
    .expect("dispatcher")
}

/// Fails the test on any validation-layer warning or error.
pub fn assert_clean(d: &Dispatcher) {
    let msgs = d.validation_messages();
    assert!(msgs.is_empty(), "validation messages: {msgs:#?}");
}

/// Little-endian bytes of f32 values.
pub fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// f32 values from little-endian bytes.
pub fn f32s(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// u32 values from little-endian bytes.
pub fn u32s(b: &[u8]) -> Vec<u32> {
    b.chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// Little-endian bytes of u32 values.
pub fn u32_bytes(v: &[u32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// The saxpy job: y = a*x + y over n floats.
pub fn saxpy_push(a: f32, n: u32) -> Vec<u8> {
    let mut p = a.to_le_bytes().to_vec();
    p.extend_from_slice(&n.to_le_bytes());
    p
}

/// A small job that must succeed; run after every failure.
pub fn still_serving(d: &mut Dispatcher) {
    let spirv = kernel("saxpy");
    let x = f32_bytes(&[1.5; 64]);
    let y = f32_bytes(&[0.5; 64]);
    let push = saxpy_push(2.0, 64);
    let bufs = [
        BufferSpec {
            binding: 0,
            len: 256,
            init: Some(&x),
            readback: false,
        },
        BufferSpec {
            binding: 1,
            len: 256,
            init: Some(&y),
            readback: true,
        },
    ];
    let job = KernelJob {
        spirv: &spirv,
        entry_point: "main",
        specialization: &[],
        push_constants: &push,
        grid: [1, 1, 1],
        buffers: &bufs,
    };
    let out = d.run(&job, TIMEOUT).expect("dispatcher still serves");
    assert_eq!(f32s(&out.outputs[0]), vec![3.5; 64]);
}
