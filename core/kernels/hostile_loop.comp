#version 450
// Hostile: never terminates on a GPU (data[0] is never set to the exit value).
// llvmpipe (lavapipe) caps the loop back-edges of one invocation at 65535, so
// there the test makes it "practically endless" with a large grid instead:
// 65535 workgroups x 64 invocations x 65535 iterations runs for many minutes.
layout(local_size_x = 64) in;
layout(std430, set = 0, binding = 0) buffer Data { uint data[]; };
void main() {
    while (data[0] != 0xFFFFFFFFu) {
        data[1 + (gl_LocalInvocationIndex & 7u)] += 1u;
    }
}
