#version 450
#extension GL_EXT_buffer_reference : require
#extension GL_ARB_gpu_shader_int64 : require
// Hostile: raw device addresses (PhysicalStorageBufferAddresses) would let a
// kernel read or write any memory the device can reach.
layout(local_size_x = 1) in;
layout(buffer_reference, std430) buffer Ptr { uint value; };
layout(std430, set = 0, binding = 0) buffer Data { uint64_t addr; uint out_value; };
void main() {
    Ptr p = Ptr(addr);
    out_value = p.value;
}
