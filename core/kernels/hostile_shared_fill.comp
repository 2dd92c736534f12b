// Attack (issue 8 point 3), part 1 of 2: a job that leaves data in
// workgroup (shared) memory. Each of 64 invocations copies 4 words of
// buffer 0 (the requester's "secret": any bytes, including a value that
// looks like a 64-bit host pointer) into the shared array, and writes a
// recognisable pattern (0x5EC2E700 | i) into the rest of it, then copies
// one shared word back into buffer 0 (so that no optimizer can drop the
// shared stores).
// Vulnerable dispatcher: leaves shared memory as the job left it (lavapipe
// keeps one heap block per worker thread and reuses it for the next job of
// the same device, without clearing it).
// Right outcome: runs; and the next job (hostile_shared_read) sees only
// zeros in the same shared array.
#version 450
layout(local_size_x = 64) in;
layout(std430, set = 0, binding = 0) buffer Secret { uint secret[]; };
shared uint data[1024];
void main() {
    uint i = gl_LocalInvocationIndex;
    for (uint k = 0u; k < 4u; k++) {
        data[4u * i + k] = secret[4u * i + k];
    }
    for (uint k = 256u + i; k < 1024u; k += 64u) {
        data[k] = 0x5EC2E700u | (k & 0xFFu);
    }
    barrier();
    if (i == 0u) {
        secret[1023] = data[1023];
    }
}
