#version 450
// Hostile: writes far past the end of its own buffer (binding 0), hoping to
// hit the canary (binding 1) or anything else in device memory.
layout(local_size_x = 64) in;
layout(std430, set = 0, binding = 0) buffer Victim { uint data[]; };
layout(std430, set = 0, binding = 1) buffer Canary { uint canary[]; };
void main() {
    uint i = gl_GlobalInvocationID.x;
    // Declares the canary binding as used without writing it.
    if (canary[i] == 0xFFFFFFFFu) {
        return;
    }
    for (uint k = 0u; k < 4096u; k++) {
        data[i + k * 64u] = 0xBADBAD00u + k;
    }
    data[i + 0x00100000u] = 0xBADBAD01u;
    data[i + 0x3FFFFFF0u] = 0xBADBAD02u;
}
