#version 450
// Arithmetic throughput: each invocation runs `iters` rounds of 8 independent
// vec4 fused multiply-adds (64 flops per round) and stores a checksum.
layout(local_size_x = 64) in;
layout(std430, set = 0, binding = 0) writeonly buffer Out { float result[]; };
layout(push_constant) uniform Params { uint iters; } p;
void main() {
    float seed = float(gl_GlobalInvocationID.x) * 1e-6;
    vec4 a0 = vec4(seed), a1 = vec4(seed + 1.0), a2 = vec4(seed + 2.0), a3 = vec4(seed + 3.0);
    vec4 a4 = vec4(seed + 4.0), a5 = vec4(seed + 5.0), a6 = vec4(seed + 6.0), a7 = vec4(seed + 7.0);
    const vec4 m = vec4(0.999999);
    const vec4 c = vec4(1e-7);
    for (uint i = 0u; i < p.iters; i++) {
        a0 = fma(a0, m, c); a1 = fma(a1, m, c); a2 = fma(a2, m, c); a3 = fma(a3, m, c);
        a4 = fma(a4, m, c); a5 = fma(a5, m, c); a6 = fma(a6, m, c); a7 = fma(a7, m, c);
    }
    vec4 s = a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7;
    result[gl_GlobalInvocationID.x] = s.x + s.y + s.z + s.w;
}
