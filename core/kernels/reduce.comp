#version 450
// Sum of n unsigned integers: a shared-memory tree per workgroup, then one
// atomic add per workgroup into out[0] (integer adds: order-independent).
layout(local_size_x = 256) in;
layout(std430, set = 0, binding = 0) readonly buffer In { uint data[]; };
layout(std430, set = 0, binding = 1) buffer Out { uint total; };
layout(push_constant) uniform Params { uint n; } p;
shared uint partial[256];
void main() {
    uint lid = gl_LocalInvocationID.x;
    uint i = gl_GlobalInvocationID.x;
    partial[lid] = i < p.n ? data[i] : 0u;
    barrier();
    for (uint stride = 128u; stride > 0u; stride >>= 1) {
        if (lid < stride) {
            partial[lid] += partial[lid + stride];
        }
        barrier();
    }
    if (lid == 0u) {
        atomicAdd(total, partial[0]);
    }
}
