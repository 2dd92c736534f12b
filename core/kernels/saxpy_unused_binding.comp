#version 450
// saxpy at bindings 0 and 2 that also declares binding 1 and never uses it,
// as compiled GLSL/HLSL often does; a job supplies buffers for 0 and 2 only.
// Built without optimisation, so that the unused declaration stays in the
// module.
layout(local_size_x = 64) in;
layout(std430, set = 0, binding = 0) readonly buffer X { float x[]; };
layout(std430, set = 0, binding = 1) buffer Unused { float unused[]; };
layout(std430, set = 0, binding = 2) buffer Y { float y[]; };
layout(push_constant) uniform Params { float a; uint n; } p;
void main() {
    uint i = gl_GlobalInvocationID.x;
    if (i < p.n) {
        y[i] = fma(p.a, x[i], y[i]);
    }
}
