#version 450
// C (m x n) = A (m x k) * B (k x n), row-major floats, 16x16 shared-memory tiles.
layout(local_size_x = 16, local_size_y = 16) in;
layout(std430, set = 0, binding = 0) readonly buffer A { float a[]; };
layout(std430, set = 0, binding = 1) readonly buffer B { float b[]; };
layout(std430, set = 0, binding = 2) writeonly buffer C { float c[]; };
layout(push_constant) uniform Params { uint m; uint n; uint k; } p;
shared float tile_a[16][16];
shared float tile_b[16][16];
void main() {
    uint row = gl_GlobalInvocationID.y;
    uint col = gl_GlobalInvocationID.x;
    uint ly = gl_LocalInvocationID.y;
    uint lx = gl_LocalInvocationID.x;
    float acc = 0.0;
    for (uint t = 0u; t < (p.k + 15u) / 16u; t++) {
        uint ak = t * 16u + lx;
        uint bk = t * 16u + ly;
        tile_a[ly][lx] = (row < p.m && ak < p.k) ? a[row * p.k + ak] : 0.0;
        tile_b[ly][lx] = (bk < p.k && col < p.n) ? b[bk * p.n + col] : 0.0;
        barrier();
        for (uint i = 0u; i < 16u; i++) {
            acc = fma(tile_a[ly][i], tile_b[i][lx], acc);
        }
        barrier();
    }
    if (row < p.m && col < p.n) {
        c[row * p.n + col] = acc;
    }
}
