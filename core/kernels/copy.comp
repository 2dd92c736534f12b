#version 450
// dst[i] = src[i] ^ SALT for i < n (16-byte elements). SALT is a
// specialization constant so benchmarks can make a kernel never seen before.
layout(local_size_x = 256) in;
layout(constant_id = 0) const uint SALT = 0u;
layout(std430, set = 0, binding = 0) readonly buffer Src { uvec4 src[]; };
layout(std430, set = 0, binding = 1) writeonly buffer Dst { uvec4 dst[]; };
layout(push_constant) uniform Params { uint n; } p;
void main() {
    uint i = gl_GlobalInvocationID.x + gl_GlobalInvocationID.y * gl_NumWorkGroups.x * 256u;
    if (i < p.n) {
        dst[i] = src[i] ^ uvec4(SALT);
    }
}
