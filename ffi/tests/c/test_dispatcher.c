/*
 * The Vulkan dispatcher through the C ABI (lavapipe in CI): devices,
 * opening one, its evidence view, the start-up benchmark, a real kernel
 * (saxpy) checked element by element, a kernel the gate refuses (its rule
 * as the code, the reason and detail a host reports), a kernel stopped at
 * its time limit, and every argument error. The dispatcher stays usable
 * after each failure. Kernels are read from core/kernels (run from the
 * repository root, as ci/c-test does).
 */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tessera.h"

static int failures = 0;

#define CHECK(cond)                                                        \
    do {                                                                   \
        if (!(cond)) {                                                     \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__,         \
                    __LINE__, #cond);                                      \
            failures++;                                                    \
        }                                                                  \
    } while (0)

#define CHECK_CODE(expr, want)                                             \
    do {                                                                   \
        tessera_result got_ = (expr);                                      \
        if (got_ != (tessera_result)(want)) {                              \
            char text_[160];                                               \
            tessera_result_text(got_, (uint8_t *)text_, sizeof text_, NULL); \
            fprintf(stderr, "%s:%d: %s returned %u (%s), want %u\n",       \
                    __FILE__, __LINE__, #expr, (unsigned)got_, text_,      \
                    (unsigned)(want));                                     \
            failures++;                                                    \
        }                                                                  \
    } while (0)

/* Reads a whole file; NULL on failure. */
static uint8_t *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    uint8_t *buf;
    long n;
    if (!f) {
        return NULL;
    }
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    fseek(f, 0, SEEK_SET);
    buf = (uint8_t *)malloc((size_t)n);
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    *len = (size_t)n;
    return buf;
}

static void test_devices(void) {
    tessera_device_entry entries[8];
    size_t count = 99;
    tessera_result r = tessera_vulkan_devices(NULL, 0, &count);
    CHECK(r == TESSERA_BUFFER_TOO_SMALL || (r == TESSERA_OK && count == 0));
    CHECK(count >= 1);
    CHECK_CODE(tessera_vulkan_devices(entries, 8, &count), TESSERA_OK);
    CHECK(count >= 1 && entries[0].index == 0 && entries[0].name[0] != '\0');
    CHECK(memchr(entries[0].name, '\0', sizeof entries[0].name) != NULL);
    CHECK_CODE(tessera_vulkan_devices(entries, 8, NULL),
               TESSERA_NULL_ARGUMENT);
    /* A failed call writes nothing (but the count a too-small array needs). */
    count = 99;
    CHECK_CODE(tessera_vulkan_devices(NULL, 8, &count), TESSERA_NULL_ARGUMENT);
    CHECK(count == 99);
}

static tessera_dispatcher *open_dispatcher(void) {
    tessera_dispatcher_config c;
    tessera_dispatcher *d = NULL;
    char why[256];
    CHECK_CODE(tessera_dispatcher_config_default(NULL), TESSERA_NULL_ARGUMENT);
    CHECK_CODE(tessera_dispatcher_config_default(&c), TESSERA_OK);
    CHECK(c.size == sizeof c && c.device_index == -1 && c.spirv_val_gate &&
          c.run_benchmark);

    c.device_index = 500;
    why[0] = '\0';
    CHECK_CODE(tessera_dispatcher_new(&c, why, sizeof why, &d),
               TESSERA_VULKAN_BASE + 3);
    CHECK(why[0] != '\0');
    c.device_index = -2;
    CHECK_CODE(tessera_dispatcher_new(&c, why, sizeof why, &d),
               TESSERA_INVALID_CONFIG);
    c.device_index = -1;
    c.device_name = "no such device anywhere";
    CHECK_CODE(tessera_dispatcher_new(&c, NULL, 0, &d),
               TESSERA_VULKAN_BASE + 3);
    c.device_name = NULL;
    c.spirv_val_path = "/nonexistent/spirv-val";
    CHECK_CODE(tessera_dispatcher_new(&c, why, sizeof why, &d),
               TESSERA_VULKAN_BASE + 9); /* the Khronos validator is missing */
    c.spirv_val_path = NULL;
    /* A bool field holding a byte other than 0 or 1 is refused, never read
     * as either. */
    *(unsigned char *)&c.validation = 2;
    CHECK_CODE(tessera_dispatcher_new(&c, why, sizeof why, &d),
               TESSERA_INVALID_CONFIG);
    tessera_dispatcher_free(d);
    d = NULL;
    c.validation = false;
    *(unsigned char *)&c.run_benchmark = 0xFF;
    CHECK_CODE(tessera_dispatcher_new(&c, why, sizeof why, &d),
               TESSERA_INVALID_CONFIG);
    tessera_dispatcher_free(d);
    d = NULL;
    c.run_benchmark = true;
    c.size = 3;
    CHECK_CODE(tessera_dispatcher_new(&c, NULL, 0, &d),
               TESSERA_INVALID_ARGUMENT);
    c.size = sizeof c;
    CHECK_CODE(tessera_dispatcher_new(NULL, NULL, 0, &d),
               TESSERA_NULL_ARGUMENT);
    CHECK_CODE(tessera_dispatcher_new(&c, NULL, 0, NULL),
               TESSERA_NULL_ARGUMENT);
    CHECK(d == NULL);

    /* Under valgrind the start-up benchmark (16 MiB copies through a JIT
     * under instrumentation) can run past its 30 s limit on a loaded
     * machine; the plain and sanitizer runs check it. */
    if (getenv("TESSERA_TEST_NO_BENCHMARK")) {
        c.run_benchmark = false;
    }
    CHECK_CODE(tessera_dispatcher_new(&c, why, sizeof why, &d), TESSERA_OK);
    if (!d) {
        fprintf(stderr, "dispatcher: %s\n", why);
    }
    return d;
}

/* A job's time limit where it is meant to finish: under valgrind (which
 * ci/c-test marks with TESSERA_TEST_SLOW) compiling and running a kernel
 * through lavapipe's JIT takes many times longer. */
static uint64_t finishing_timeout_ms(uint64_t ms) {
    return getenv("TESSERA_TEST_SLOW") ? ms * 12 : ms;
}

static void test_device_and_benchmark(tessera_dispatcher *d) {
    tessera_device dev;
    double copy = 0, fma = 0;
    CHECK_CODE(tessera_dispatcher_device(d, &dev), TESSERA_OK);
    CHECK(dev.name != NULL && strlen(dev.name) > 0);
    CHECK(dev.max_invocations > 0 && dev.max_storage_buffer_range > 0);
    CHECK_CODE(tessera_dispatcher_device(d, NULL), TESSERA_NULL_ARGUMENT);
    CHECK_CODE(tessera_dispatcher_device(NULL, &dev), TESSERA_NULL_ARGUMENT);
    if (getenv("TESSERA_TEST_NO_BENCHMARK")) {
        return;
    }
    /* The start-up benchmark ran when it opened. */
    CHECK(dev.copy_mbps > 0 && dev.fma_mflops > 0);
    CHECK_CODE(tessera_dispatcher_benchmark(d, &copy, &fma), TESSERA_OK);
    CHECK(copy > 0 && fma > 0);
    CHECK_CODE(tessera_dispatcher_benchmark(d, NULL, &fma),
               TESSERA_NULL_ARGUMENT);
}

enum { N = 1000 };

static void test_saxpy(tessera_dispatcher *d) {
    size_t len = 0;
    uint8_t *spirv = read_file("core/kernels/saxpy.spv", &len);
    float x[N], y[N], out[N];
    uint8_t push[8];
    float a = 2.5f;
    uint32_t n = N;
    tessera_kernel_buffer buffers[2];
    tessera_kernel_job job;
    tessera_usage usage;
    uint32_t reason = 0;
    int i, wrong = 0;

    CHECK(spirv != NULL);
    if (!spirv) {
        return;
    }
    for (i = 0; i < N; i++) {
        x[i] = (float)i;
        y[i] = 1.0f;
    }
    memcpy(push, &a, 4);
    memcpy(push + 4, &n, 4);
    memset(buffers, 0, sizeof buffers);
    buffers[0].binding = 0;
    buffers[0].len = sizeof x;
    buffers[0].init = (const uint8_t *)x;
    buffers[0].init_len = sizeof x;
    buffers[1].binding = 1;
    buffers[1].len = sizeof y;
    buffers[1].init = (const uint8_t *)y;
    buffers[1].init_len = sizeof y;
    buffers[1].readback = true;
    buffers[1].output = (uint8_t *)out;
    buffers[1].output_len = sizeof out;
    memset(&job, 0, sizeof job);
    job.size = sizeof job;
    job.spirv = spirv;
    job.spirv_len = len;
    job.entry_point = "main";
    job.push_constants = push;
    job.push_constants_len = sizeof push;
    job.grid[0] = (N + 63) / 64;
    job.grid[1] = 1;
    job.grid[2] = 1;
    job.buffers = buffers;
    job.buffer_count = 2;
    job.timeout_ms = finishing_timeout_ms(10000);

    CHECK_CODE(tessera_dispatcher_run(d, &job, &usage), TESSERA_OK);
    for (i = 0; i < N; i++) {
        if (fabsf(out[i] - (a * (float)i + 1.0f)) > 1e-3f) {
            wrong++;
        }
    }
    CHECK(wrong == 0);
    CHECK(usage.dispatches == 1 && usage.bytes_in == 2 * sizeof x &&
          usage.bytes_out == sizeof y);
    CHECK_CODE(tessera_dispatcher_last_failure(d, &reason, NULL, NULL),
               TESSERA_NOTHING);

    /* Argument errors: nothing runs, the dispatcher stays usable. */
    buffers[1].output_len = 10;
    CHECK_CODE(tessera_dispatcher_run(d, &job, NULL), TESSERA_BUFFER_TOO_SMALL);
    buffers[1].output = NULL;
    CHECK_CODE(tessera_dispatcher_run(d, &job, NULL), TESSERA_NULL_ARGUMENT);
    buffers[1].output = (uint8_t *)out;
    buffers[1].output_len = sizeof out;
    *(unsigned char *)&buffers[1].readback = 2;
    CHECK_CODE(tessera_dispatcher_run(d, &job, NULL), TESSERA_INVALID_ARGUMENT);
    buffers[1].readback = true;
    job.entry_point = NULL;
    CHECK_CODE(tessera_dispatcher_run(d, &job, NULL), TESSERA_NULL_ARGUMENT);
    job.entry_point = "main";
    job.spirv = NULL;
    CHECK_CODE(tessera_dispatcher_run(d, &job, NULL), TESSERA_NULL_ARGUMENT);
    job.spirv = spirv;
    job.specialization_count = 1;
    CHECK_CODE(tessera_dispatcher_run(d, &job, NULL), TESSERA_NULL_ARGUMENT);
    job.specialization_count = 0;
    job.size = 8;
    CHECK_CODE(tessera_dispatcher_run(d, &job, NULL), TESSERA_INVALID_ARGUMENT);
    job.size = sizeof job;
    CHECK_CODE(tessera_dispatcher_run(d, NULL, NULL), TESSERA_NULL_ARGUMENT);
    CHECK_CODE(tessera_dispatcher_run(NULL, &job, NULL), TESSERA_NULL_ARGUMENT);
    /* A wrong entry point is the kernel's fault: refused by the gate. */
    job.entry_point = "not_main";
    {
        tessera_result r = tessera_dispatcher_run(d, &job, NULL);
        CHECK(r >= TESSERA_KERNEL_BASE && r < TESSERA_KERNEL_BASE + 10000);
    }
    job.entry_point = "main";
    CHECK_CODE(tessera_dispatcher_run(d, &job, &usage), TESSERA_OK);
    free(spirv);
}

static void test_refused_kernel(tessera_dispatcher *d) {
    size_t len = 0;
    uint8_t *spirv = read_file("core/kernels/hostile_ptr_bitcast.spv", &len);
    uint8_t data[1024];
    tessera_kernel_buffer buffer;
    tessera_kernel_job job;
    tessera_usage usage;
    uint32_t reason = 0, detail = 0;
    char words[512];
    size_t n = 0;
    tessera_result r;

    CHECK(spirv != NULL);
    if (!spirv) {
        return;
    }
    memset(&buffer, 0, sizeof buffer);
    buffer.binding = 0;
    buffer.len = sizeof data;
    buffer.readback = true;
    buffer.output = data;
    buffer.output_len = sizeof data;
    memset(&job, 0, sizeof job);
    job.size = sizeof job;
    job.spirv = spirv;
    job.spirv_len = len;
    job.entry_point = "main";
    job.grid[0] = job.grid[1] = job.grid[2] = 1;
    job.buffers = &buffer;
    job.buffer_count = 1;
    job.timeout_ms = finishing_timeout_ms(5000);
    r = tessera_dispatcher_run(d, &job, &usage);
    CHECK(r >= TESSERA_KERNEL_BASE && r < TESSERA_KERNEL_BASE + 10000);
    CHECK_CODE(tessera_dispatcher_last_failure(d, &reason, &detail, &usage),
               TESSERA_OK);
    CHECK(reason == 1); /* KernelRejected, for tessera_agent_fail_job */
    CHECK((detail & 0xFFFF) == r - TESSERA_KERNEL_BASE);
    CHECK_CODE(tessera_dispatcher_last_error(d, words, sizeof words, &n),
               TESSERA_OK);
    CHECK(n > 0 && strstr(words, "rejected") != NULL);
    {
        size_t need = 0;
        CHECK_CODE(tessera_dispatcher_last_error(d, NULL, 0, &need),
                   TESSERA_BUFFER_TOO_SMALL);
        CHECK(need == n + 1);
    }
    CHECK_CODE(tessera_dispatcher_last_error(d, NULL, 4, &n),
               TESSERA_NULL_ARGUMENT);
    CHECK_CODE(tessera_dispatcher_last_failure(NULL, &reason, &detail, &usage),
               TESSERA_NULL_ARGUMENT);
    free(spirv);
}

static void test_timeout(tessera_dispatcher *d) {
    size_t len = 0;
    uint8_t *spirv = read_file("core/kernels/hostile_loop.spv", &len);
    uint8_t data[64];
    tessera_kernel_buffer buffer;
    tessera_kernel_job job;
    uint32_t reason = 0, detail = 0;
    tessera_usage usage;

    CHECK(spirv != NULL);
    if (!spirv) {
        return;
    }
    memset(data, 0, sizeof data);
    memset(&buffer, 0, sizeof buffer);
    buffer.binding = 0;
    buffer.len = sizeof data;
    buffer.init = data;
    buffer.init_len = sizeof data;
    memset(&job, 0, sizeof job);
    job.size = sizeof job;
    job.spirv = spirv;
    job.spirv_len = len;
    job.entry_point = "main";
    /* Endless on a GPU; on lavapipe practically so (see the kernel). */
    job.grid[0] = 65535;
    job.grid[1] = job.grid[2] = 1;
    job.buffers = &buffer;
    job.buffer_count = 1;
    job.timeout_ms = 300;
    CHECK_CODE(tessera_dispatcher_run(d, &job, NULL), TESSERA_JOB_BASE + 1);
    CHECK_CODE(tessera_dispatcher_last_failure(d, &reason, &detail, &usage),
               TESSERA_OK);
    CHECK(reason == 2); /* Timeout: charged its quote, metered to the limit */
    CHECK(usage.gpu_time_us == 300000);
    /* The watchdog makes the kernel leave its loop; the device it ran on is
     * reclaimed once it has (freeing the dispatcher earlier would leave it,
     * deliberately, to the end of the process). */
    {
        size_t still = 99;
        int tries;
        for (tries = 0; tries < 200; tries++) {
            CHECK_CODE(tessera_dispatcher_reclaim(d, &still), TESSERA_OK);
            if (still == 0) {
                break;
            }
            nanosleep(&(struct timespec){0, 50000000}, NULL);
        }
        CHECK(still == 0);
    }
    CHECK_CODE(tessera_dispatcher_reclaim(NULL, NULL), TESSERA_NULL_ARGUMENT);
    free(spirv);
}

int main(void) {
    tessera_dispatcher *d;
    test_devices();
    d = open_dispatcher();
    if (d) {
        test_device_and_benchmark(d);
        test_saxpy(d);
        test_refused_kernel(d);
        test_timeout(d);
        /* Still usable after all of that. */
        test_saxpy(d);
        tessera_dispatcher_free(d);
    }
    tessera_dispatcher_free(NULL);
    if (failures) {
        fprintf(stderr, "test_dispatcher: %d checks failed\n", failures);
        return 1;
    }
    printf("test_dispatcher: ok\n");
    return 0;
}
