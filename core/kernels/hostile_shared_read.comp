// Attack (issue 8 point 3), part 2 of 2: reads workgroup (shared) memory
// that it never writes and copies it into buffer 0. The shared array is
// declared exactly as in hostile_shared_fill.comp.
// Vulnerable dispatcher: the driver reuses the shared memory of an earlier
// job uncleared (lavapipe: a per-worker-thread heap block that only grows),
// so this job receives the previous job's shared data; where the block was
// regrown from a used heap, also whatever the heap held (seen on lavapipe:
// 64-bit host pointers of the agent process, which defeat ASLR for attack
// 1a).
// Right outcome: buffer 0 is all zeros: every Workgroup variable is zero at
// the start of every job.
#version 450
layout(local_size_x = 64) in;
layout(std430, set = 0, binding = 0) buffer Out { uint result[]; };
shared uint data[1024];
void main() {
    uint i = gl_LocalInvocationIndex;
    for (uint k = i; k < 1024u; k += 64u) {
        result[k] = data[k];
    }
}
