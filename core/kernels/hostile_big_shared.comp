#version 450
// Hostile: asks for 256 KiB of workgroup (shared) memory.
layout(local_size_x = 64) in;
layout(std430, set = 0, binding = 0) buffer Data { uint data[]; };
shared uint scratch[65536];
void main() {
    scratch[gl_LocalInvocationIndex] = 1u;
    barrier();
    data[gl_LocalInvocationIndex] = scratch[63u - gl_LocalInvocationIndex];
}
