//! Peers the Vulkan dispatcher is measured against: a minimal hand-written
//! ash loop (the floor) and wgpu, plus small statistics helpers.

pub mod big_kernel;
pub mod floor;
pub mod process;
pub mod wgpu_peer;

/// Percentile (0..=100) of unsorted samples; NaN for none.
pub fn percentile(samples: &[f64], p: f64) -> f64 {
    if samples.is_empty() {
        return f64::NAN;
    }
    let mut v = samples.to_vec();
    v.sort_by(f64::total_cmp);
    let idx = ((p / 100.0) * (v.len() - 1) as f64).round() as usize;
    v[idx.min(v.len() - 1)]
}

/// SPIR-V bytes as words.
pub fn words(spirv: &[u8]) -> Vec<u32> {
    spirv
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// The copy kernel the tiny job runs.
pub const COPY_SPV: &[u8] = include_bytes!("../../core/kernels/copy.spv");
/// Bytes in and out of the tiny job.
pub const LEN: usize = 4096;

use tessera_coordinator::{BufferInit, Submit};
use tessera_core::wire::Requirements;

/// The tiny job's deadline, as a small request (an inference step) asks
/// for, well above its run's: jobs due this soon run on the provider
/// runtime's own thread when it holds nothing else (the default
/// `NetConfig::inline_deadline`, 250 ms, and an executor that allows it,
/// as the Vulkan host does).
pub const TINY_DEADLINE_MS: u32 = 200;

/// The tiny job: copy 4 KiB (256 uvec4), one workgroup, due within
/// [`TINY_DEADLINE_MS`].
pub fn tiny_job() -> Submit {
    Submit {
        kernel: COPY_SPV.to_vec(),
        entry_point: "main".into(),
        specialization: Vec::new(),
        push_constants: ((LEN / 16) as u32).to_le_bytes().to_vec(),
        grid: [1, 1, 1],
        buffers: vec![
            BufferInit {
                binding: 0,
                init: (0..LEN).map(|i| i as u8).collect(),
                len: LEN as u64,
                readback: false,
            },
            BufferInit {
                binding: 1,
                init: Vec::new(),
                len: LEN as u64,
                readback: true,
            },
        ],
        requirements: Requirements::default(),
        est_gpu_ms: 1,
        max_price: u64::MAX,
        deadline_ms: TINY_DEADLINE_MS,
        nonce: [0; 32],
        sealed: None,
    }
}
