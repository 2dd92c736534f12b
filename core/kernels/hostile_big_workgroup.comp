#version 450
// Hostile: 64 x 64 = 4096 invocations per workgroup, above any device limit.
layout(local_size_x = 64, local_size_y = 64) in;
layout(std430, set = 0, binding = 0) buffer Data { uint data[]; };
void main() {
    data[gl_LocalInvocationIndex] = 1u;
}
