#version 450
// Hostile: indexes workgroup (shared) and private arrays far out of range
// with an index from push constants. Robust buffer access does not cover
// these; the dispatcher clamps such indices before the driver sees them.
layout(local_size_x = 64) in;
layout(std430, set = 0, binding = 0) buffer Out { uint result[]; };
layout(push_constant) uniform Params { uint index; } p;
shared uint scratch[64];
void main() {
    uint lid = gl_LocalInvocationIndex;
    uint local_copy[4] = uint[4](lid, lid + 1u, lid + 2u, lid + 3u);
    scratch[lid] = lid * 10u;
    barrier();
    scratch[p.index] = 0xBADu;
    barrier();
    result[lid] = scratch[p.index + lid] + local_copy[p.index & 0xFFu];
}
