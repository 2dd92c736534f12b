//! The matrix-multiply demo job: C = A·B for N×N f32 matrices, with a CPU
//! reference to check a provider's answer against.
//!
//! Buffer layout: 0 = A, 1 = B (row-major f32, little-endian), 2 = C
//! (read back). Push constants: M, N, K as u32 little-endian (all N here).
//! The grid is ⌈N/tile⌉ × ⌈N/tile⌉ × 1 workgroups of tile × tile invocations.

use crate::protocol::{BufferInit, Submit};
use tessera_core::wire::{FailReason, JobAssign, Requirements, Usage};

/// Bytes of an f32 slice, little-endian.
pub fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// f32 values from little-endian bytes (a trailing partial value is ignored).
pub fn bytes_f32(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// C = A·B for row-major n×n matrices, accumulating in f32 in k order (the
/// order a simple kernel uses).
pub fn matmul_cpu(n: usize, a: &[f32], b: &[f32]) -> Vec<f32> {
    let mut c = vec![0f32; n * n];
    for i in 0..n {
        for k in 0..n {
            let aik = a[i * n + k];
            let row = &b[k * n..k * n + n];
            for (j, bkj) in row.iter().enumerate() {
                c[i * n + j] += aik * bkj;
            }
        }
    }
    c
}

/// Largest relative difference between two matrices (absolute near zero).
pub fn max_rel_error(got: &[f32], want: &[f32]) -> f32 {
    got.iter()
        .zip(want)
        .map(|(g, w)| (g - w).abs() / w.abs().max(1.0))
        .fold(
            if got.len() == want.len() {
                0.0
            } else {
                f32::INFINITY
            },
            f32::max,
        )
}

/// The submission for C = A·B with `kernel` (SPIR-V).
pub fn matmul_submit(
    kernel: Vec<u8>,
    n: u32,
    tile: u32,
    a: &[f32],
    b: &[f32],
    max_price: u64,
    nonce: [u8; 32],
) -> Submit {
    let bytes = (n as u64) * (n as u64) * 4;
    let groups = n.div_ceil(tile.max(1)).max(1);
    let mut push_constants = Vec::new();
    for v in [n, n, n] {
        push_constants.extend_from_slice(&v.to_le_bytes());
    }
    Submit {
        kernel,
        entry_point: "main".into(),
        specialization: Vec::new(),
        push_constants,
        grid: [groups, groups, 1],
        buffers: vec![
            BufferInit {
                binding: 0,
                init: f32_bytes(a),
                len: bytes,
                readback: false,
            },
            BufferInit {
                binding: 1,
                init: f32_bytes(b),
                len: bytes,
                readback: false,
            },
            BufferInit {
                binding: 2,
                init: Vec::new(),
                len: bytes,
                readback: true,
            },
        ],
        requirements: Requirements::default(),
        est_gpu_ms: 10,
        max_price,
        deadline_ms: 30_000,
        nonce,
        sealed: None,
    }
}

/// A provider-side CPU stand-in for the matmul kernel, in the shape of
/// `tessera_core::testkit::RunFn`: reads M, N, K from the push constants
/// and buffers 0 and 1, returns buffer 2.
pub fn matmul_run(
    spec: &JobAssign,
    buffers: &[Vec<u8>],
) -> Result<(Vec<Vec<u8>>, Usage), FailReason> {
    let pc = &spec.kernel.push_constants;
    if pc.len() < 12 || buffers.len() < 3 {
        return Err(FailReason::Host);
    }
    let n = u32::from_le_bytes([pc[4], pc[5], pc[6], pc[7]]) as usize;
    let a = bytes_f32(&buffers[0]);
    let b = bytes_f32(&buffers[1]);
    if a.len() < n * n || b.len() < n * n {
        return Err(FailReason::Host);
    }
    let c = matmul_cpu(n, &a[..n * n], &b[..n * n]);
    Ok((
        vec![f32_bytes(&c)],
        Usage {
            gpu_time_us: (n * n * n / 1000) as u64 + 1,
            dispatches: 1,
            ..Usage::default()
        },
    ))
}
