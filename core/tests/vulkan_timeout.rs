//! A kernel that never terminates must time out within its limit, and the
//! same dispatcher must run the next job.
#![cfg(feature = "vulkan")]

mod vulkan_support;
use std::time::{Duration, Instant};
use tessera_core::vulkan::*;
use vulkan_support::*;

#[test]
fn infinite_loop_times_out_and_dispatcher_keeps_serving() {
    let mut d = dispatcher();
    let spirv = kernel("hostile_loop");
    let bufs = [BufferSpec {
        binding: 0,
        len: 64,
        init: None,
        readback: true,
    }];
    let job = KernelJob {
        spirv: &spirv,
        entry_point: "main",
        specialization: &[],
        push_constants: &[],
        grid: [65535, 1, 1],
        buffers: &bufs,
    };
    let limit = Duration::from_millis(500);
    let t = Instant::now();
    let r = d.run(&job, limit);
    let took = t.elapsed();
    assert_eq!(r, Err(JobError::Timeout));
    assert_eq!(JobError::Timeout.code(), 1);
    assert!(took < limit + Duration::from_secs(2), "took {took:?}");
    eprintln!(
        "timeout after {took:?}, generation {}",
        d.device_generation()
    );

    // The next job on the same dispatcher succeeds.
    still_serving(&mut d);
    assert!(d.device_generation() >= 1);
    assert_clean(&d);
}
