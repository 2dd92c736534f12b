#version 450
// Hostile: never terminates (data[0] is never set to the exit value).
layout(local_size_x = 1) in;
layout(std430, set = 0, binding = 0) buffer Data { uint data[]; };
void main() {
    while (data[0] != 0xFFFFFFFFu) {
        data[1] += 1u;
    }
}
