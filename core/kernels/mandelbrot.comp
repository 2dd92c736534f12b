#version 450
// Escape-time iteration counts of the Mandelbrot set over [-2,1] x [-1.5,1.5].
layout(local_size_x = 8, local_size_y = 8) in;
layout(std430, set = 0, binding = 0) writeonly buffer Image { uint counts[]; };
layout(push_constant) uniform Params { uint width; uint height; uint max_iter; } p;
void main() {
    uint x = gl_GlobalInvocationID.x;
    uint y = gl_GlobalInvocationID.y;
    if (x >= p.width || y >= p.height) {
        return;
    }
    float cr = -2.0 + 3.0 * float(x) / float(p.width);
    float ci = -1.5 + 3.0 * float(y) / float(p.height);
    float zr = 0.0;
    float zi = 0.0;
    uint it = 0u;
    while (it < p.max_iter && zr * zr + zi * zi <= 4.0) {
        float t = zr * zr - zi * zi + cr;
        zi = 2.0 * zr * zi + ci;
        zr = t;
        it++;
    }
    counts[y * p.width + x] = it;
}
