#version 450
// Hostile: no loop at all, so the watchdog on loop back edges cannot stop
// it, but a long straight run of dependent FMAs per invocation. Over a large
// grid it keeps a device busy long after its job timed out: the dispatcher
// must park that device, count it against `max_abandoned_devices`, refuse
// work at the bound (`JobError::DeviceUnavailable`) and reclaim the device
// once the kernel ends.
layout(local_size_x = 64) in;
layout(std430, set = 0, binding = 0) buffer Data { vec4 data[]; };
#define R a = fma(a, b, c); b = fma(b, c, a); c = fma(c, a, b);
#define R8 R R R R R R R R
#define R64 R8 R8 R8 R8 R8 R8 R8 R8
#define R512 R64 R64 R64 R64 R64 R64 R64 R64
void main() {
    uint i = gl_LocalInvocationIndex;
    vec4 a = data[i];
    vec4 b = data[i + 64u];
    vec4 c = data[i + 128u];
    R512 R512
    data[i] = a + b + c;
}
