#version 450
// Workgroup size from a specialization constant (LocalSizeId-style sizing).
layout(local_size_x_id = 0) in;
layout(std430, set = 0, binding = 0) buffer Data { uint data[]; };
void main() {
    data[gl_GlobalInvocationID.x] = gl_WorkGroupSize.x;
}
