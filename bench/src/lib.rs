//! Peers the Vulkan dispatcher is measured against: a minimal hand-written
//! ash loop (the floor) and wgpu, plus small statistics helpers.

pub mod big_kernel;
pub mod floor;
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
