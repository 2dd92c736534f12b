#version 450
// Not allowed: binding 0 is a uniform buffer, only storage buffers are offered.
layout(local_size_x = 64) in;
layout(std140, set = 0, binding = 0) uniform Params { uvec4 v; };
layout(std430, set = 0, binding = 1) buffer Data { uint data[]; };
void main() {
    data[gl_LocalInvocationIndex] = v.x;
}
