#version 450
// saxpy with a gap in its bindings: y[i] = a * x[i] + y[i] for i < n, with x
// at binding 0 and y at binding 2; binding 1 is not declared.
layout(local_size_x = 64) in;
layout(std430, set = 0, binding = 0) readonly buffer X { float x[]; };
layout(std430, set = 0, binding = 2) buffer Y { float y[]; };
layout(push_constant) uniform Params { float a; uint n; } p;
void main() {
    uint i = gl_GlobalInvocationID.x;
    if (i < p.n) {
        y[i] = fma(p.a, x[i], y[i]);
    }
}
