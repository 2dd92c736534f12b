/*
 * The network runtime through the C ABI: configuration errors (which field,
 * in words), a provider built from a struct and from the operator's TOML
 * file on the Vulkan device (lavapipe in CI), stepped from this program's
 * own loop with poll() on its descriptor, then given its own thread and
 * drained; status from another thread's point of view; the log callback.
 * No coordinator listens: the runtime keeps trying to connect, as it must.
 */
#define _POSIX_C_SOURCE 200809L
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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

static const uint8_t SEED[32] = {9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9,
                                 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9,
                                 9, 9, 9, 9, 9, 9, 9, 9, 9, 9};
static const uint8_t PIN[32] = {0xAB};

static tessera_signer *new_signer(void) {
    tessera_signer *s = NULL;
    CHECK_CODE(tessera_signer_from_seed(SEED, &s), TESSERA_OK);
    return s;
}

struct log_count {
    int lines;
    int device_lines;
};

/* While `rt` is set, the log callback calls back into that runtime, as a
 * host that shows the runtime's status with each line would. */
static struct {
    tessera_runtime *rt;
    int lines;
    tessera_result step, wakeup, start, status, accepting;
    /* Set before the runtime gets its own thread: from there the callback
     * tries to wait for that thread and to step the runtime. */
    tessera_runtime *threaded;
    int thread_lines;
    tessera_result thread_wait, thread_step;
} reenter;

static void on_log(void *userdata, uint32_t level, const char *target,
                   const char *message) {
    struct log_count *c = (struct log_count *)userdata;
    CHECK(level >= TESSERA_LOG_ERROR && level <= TESSERA_LOG_TRACE);
    CHECK(target != NULL && message != NULL);
    c->lines++;
    if (strncmp(message, "device: ", 8) == 0) {
        c->device_lines++;
    }
    if (reenter.rt) {
        tessera_status st;
        uint64_t wake = 0;
        reenter.lines++;
        reenter.step = tessera_runtime_step(reenter.rt, 0);
        reenter.wakeup = tessera_runtime_next_wakeup(reenter.rt, &wake);
        reenter.start = tessera_runtime_start(reenter.rt);
        st.size = sizeof st;
        reenter.status = tessera_runtime_status(reenter.rt, &st);
        reenter.accepting = tessera_runtime_set_accepting_jobs(reenter.rt, true);
        /* Not done: freed during its own step (ignored when detected). */
        tessera_runtime_free(reenter.rt);
    }
    if (reenter.threaded) {
        reenter.thread_lines++;
        reenter.thread_wait = tessera_runtime_wait(reenter.threaded);
        reenter.thread_step = tessera_runtime_step(reenter.threaded, 0);
    }
}

/* A log callback that changes the log callback from inside itself (to
 * stop after its first line, say): refused with TESSERA_IN_USE, where it
 * used to wait forever on the logger's lock. */
static struct {
    int lines;
    tessera_result set;
} switcher;

static void on_log_switch(void *userdata, uint32_t level, const char *target,
                          const char *message) {
    (void)userdata;
    (void)level;
    (void)target;
    (void)message;
    if (switcher.lines++ == 0) {
        switcher.set = tessera_set_log_callback(NULL, NULL, 0);
    }
}

static void test_log_reentry(tessera_runtime *rt) {
    memset(&switcher, 0, sizeof switcher);
    CHECK_CODE(tessera_set_log_callback(on_log_switch, NULL, TESSERA_LOG_TRACE),
               TESSERA_OK);
    /* A step that starts connecting says so. */
    CHECK_CODE(tessera_runtime_step(rt, 0), TESSERA_OK);
    CHECK(switcher.lines > 0);
    CHECK_CODE(switcher.set, TESSERA_IN_USE);
}

/* A log line written during a step: the callback's calls that need the
 * runtime to themselves are refused (TESSERA_IN_USE), the thread-safe ones
 * work, and the step goes on. */
static void test_reentry(tessera_runtime *rt) {
    memset(&reenter, 0, sizeof reenter);
    reenter.rt = rt;
    /* The first step connects, and says so. */
    CHECK_CODE(tessera_runtime_step(rt, 0), TESSERA_OK);
    reenter.rt = NULL;
    CHECK(reenter.lines > 0);
    CHECK_CODE(reenter.step, TESSERA_IN_USE);
    CHECK_CODE(reenter.wakeup, TESSERA_IN_USE);
    CHECK_CODE(reenter.start, TESSERA_IN_USE);
    CHECK_CODE(reenter.status, TESSERA_OK);
    CHECK_CODE(reenter.accepting, TESSERA_OK);
    CHECK_CODE(tessera_runtime_step(rt, 0), TESSERA_OK);
}

static void test_config_errors(void) {
    tessera_runtime_config c;
    tessera_runtime *rt = NULL;
    char why[256];

    CHECK_CODE(tessera_runtime_config_default(NULL), TESSERA_NULL_ARGUMENT);
    CHECK_CODE(tessera_runtime_config_default(&c), TESSERA_OK);
    CHECK(c.size == sizeof c && c.device_index == -1 && c.spirv_val_gate);

    why[0] = '\0';
    CHECK_CODE(tessera_runtime_new(&c, new_signer(), why, sizeof why, &rt),
               TESSERA_INVALID_CONFIG);
    CHECK(strstr(why, "coordinator") != NULL);
    c.coordinator = "127.0.0.1:1";
    CHECK_CODE(tessera_runtime_new(&c, new_signer(), why, sizeof why, &rt),
               TESSERA_INVALID_CONFIG);
    CHECK(strstr(why, "[tls]") != NULL);
    c.pinned_key_sha256 = PIN;
    c.ca_file = "/nonexistent/ca.pem";
    CHECK_CODE(tessera_runtime_new(&c, new_signer(), why, sizeof why, &rt),
               TESSERA_INVALID_CONFIG);
    c.ca_file = NULL;
    c.policy.max_concurrent = 300;
    CHECK_CODE(tessera_runtime_new(&c, new_signer(), why, sizeof why, &rt),
               TESSERA_INVALID_CONFIG);
    CHECK(strstr(why, "max_concurrent") != NULL);
    c.policy.max_concurrent = 1;
    /* A bool field holding a byte other than 0 or 1 is refused, never read
     * as either. */
    *(unsigned char *)&c.spirv_val_gate = 2;
    why[0] = '\0';
    CHECK_CODE(tessera_runtime_new(&c, new_signer(), why, sizeof why, &rt),
               TESSERA_INVALID_CONFIG);
    CHECK(strstr(why, "spirv_val_gate") != NULL);
    tessera_runtime_free(rt);
    rt = NULL;
    c.spirv_val_gate = true;
    c.device_index = -7;
    CHECK_CODE(tessera_runtime_new(&c, new_signer(), why, sizeof why, &rt),
               TESSERA_INVALID_CONFIG);
    c.device_index = 1000;
    CHECK_CODE(tessera_runtime_new(&c, new_signer(), why, sizeof why, &rt),
               TESSERA_VULKAN_BASE + 3); /* vulkan_device_not_found */
    c.device_index = -1;
    c.size = 4;
    CHECK_CODE(tessera_runtime_new(&c, new_signer(), NULL, 0, &rt),
               TESSERA_INVALID_ARGUMENT);
    CHECK_CODE(tessera_runtime_new(NULL, new_signer(), NULL, 0, &rt),
               TESSERA_NULL_ARGUMENT);
    CHECK_CODE(tessera_runtime_new(&c, NULL, NULL, 0, &rt),
               TESSERA_NULL_ARGUMENT);
    CHECK(rt == NULL);

    CHECK_CODE(tessera_runtime_new_from_toml("/nonexistent/agent.toml", why,
                                             sizeof why, &rt),
               TESSERA_IO);
    CHECK(strstr(why, "/nonexistent/agent.toml") != NULL);
    CHECK_CODE(tessera_runtime_new_from_toml(NULL, why, sizeof why, &rt),
               TESSERA_NULL_ARGUMENT);

    /* Calls on NULL. */
    CHECK_CODE(tessera_runtime_step(NULL, 0), TESSERA_NULL_ARGUMENT);
    CHECK_CODE(tessera_runtime_start(NULL), TESSERA_NULL_ARGUMENT);
    CHECK_CODE(tessera_runtime_wait(NULL), TESSERA_NULL_ARGUMENT);
    CHECK_CODE(tessera_runtime_drain(NULL, 0), TESSERA_NULL_ARGUMENT);
    CHECK_CODE(tessera_runtime_set_accepting_jobs(NULL, true),
               TESSERA_NULL_ARGUMENT);
    tessera_runtime_free(NULL);
}

/* A TOML file as an operator writes it. */
static void write_toml(const char *dir, char *path, size_t len) {
    FILE *f;
    snprintf(path, len, "%s/agent.toml", dir);
    f = fopen(path, "w");
    CHECK(f != NULL);
    if (!f) {
        return;
    }
    fprintf(f,
            "coordinator = \"127.0.0.1:1\"\n"
            "[tls]\n"
            "pinned_key_sha256 = \"%s\"\n"
            "[key]\n"
            "file = \"%s/device.key\"\n"
            "[store]\n"
            "dir = \"%s/store\"\n"
            "[timers]\n"
            "drain_timeout_s = 2\n",
            "ab00000000000000000000000000000000000000000000000000000000000000",
            dir, dir);
    fclose(f);
}

static void test_stepped_then_threaded(tessera_runtime *rt) {
    tessera_status st;
    char line[512];
    size_t n = 0;
    int fd = -1;
    uint64_t wake = 0;
    int i;

    CHECK_CODE(tessera_runtime_fd(rt, &fd), TESSERA_OK);
    CHECK(fd >= 0);
    CHECK_CODE(tessera_runtime_fd(rt, NULL), TESSERA_NULL_ARGUMENT);

    /* The host's loop: poll the descriptor until the next wake-up, step. */
    for (i = 0; i < 5; i++) {
        struct pollfd p;
        tessera_result r = tessera_runtime_next_wakeup(rt, &wake);
        CHECK(r == TESSERA_OK || r == TESSERA_NOTHING);
        p.fd = fd;
        p.events = POLLIN;
        p.revents = 0;
        CHECK(poll(&p, 1, r == TESSERA_OK && wake < 20 ? (int)wake : 20) >= 0);
        CHECK_CODE(tessera_runtime_step(rt, 0), TESSERA_OK);
    }
    CHECK_CODE(tessera_runtime_next_wakeup(rt, NULL), TESSERA_NULL_ARGUMENT);

    memset(&st, 0, sizeof st);
    CHECK_CODE(tessera_runtime_status(rt, &st), TESSERA_INVALID_ARGUMENT);
    st.size = sizeof st;
    CHECK_CODE(tessera_runtime_status(rt, &st), TESSERA_OK);
    CHECK(st.state == TESSERA_CONN_DISCONNECTED);
    CHECK(st.sessions == 0 && !st.finished);
    CHECK_CODE(tessera_runtime_status(rt, NULL), TESSERA_NULL_ARGUMENT);
    CHECK_CODE(tessera_runtime_status_text(rt, line, sizeof line, &n),
               TESSERA_OK);
    CHECK(strstr(line, "127.0.0.1:1") != NULL && n == strlen(line));
    {
        size_t need = 0;
        CHECK_CODE(tessera_runtime_status_text(rt, NULL, 0, &need),
                   TESSERA_BUFFER_TOO_SMALL);
        CHECK(need == n + 1);
    }

    /* The user renders: the device takes no new work. */
    CHECK_CODE(tessera_runtime_set_accepting_jobs(rt, false), TESSERA_OK);
    CHECK_CODE(tessera_runtime_step(rt, 0), TESSERA_OK);
    CHECK_CODE(tessera_runtime_status(rt, &st), TESSERA_OK);
    CHECK(st.device_unavailable);
    CHECK_CODE(tessera_runtime_set_accepting_jobs(rt, true), TESSERA_OK);
    CHECK_CODE(tessera_runtime_step(rt, 0), TESSERA_OK);
    CHECK_CODE(tessera_runtime_status(rt, &st), TESSERA_OK);
    CHECK(!st.device_unavailable);

    CHECK_CODE(tessera_runtime_wait(rt), TESSERA_INVALID_ARGUMENT);

    /* Its own thread now: only the thread-safe calls apply. */
    reenter.threaded = rt;
    CHECK_CODE(tessera_runtime_start(rt), TESSERA_OK);
    CHECK_CODE(tessera_runtime_start(rt), TESSERA_IN_USE);
    CHECK_CODE(tessera_runtime_step(rt, 0), TESSERA_IN_USE);
    CHECK_CODE(tessera_runtime_next_wakeup(rt, &wake), TESSERA_IN_USE);
    CHECK_CODE(tessera_runtime_status(rt, &st), TESSERA_OK);
    CHECK_CODE(tessera_runtime_drain(rt, 200), TESSERA_OK);
    CHECK_CODE(tessera_runtime_wait(rt), TESSERA_OK);
    /* The runtime's thread logged its drain; its callback could neither
     * wait for its own thread nor step the runtime. */
    reenter.threaded = NULL;
    CHECK(reenter.thread_lines > 0);
    CHECK_CODE(reenter.thread_wait, TESSERA_IN_USE);
    CHECK_CODE(reenter.thread_step, TESSERA_IN_USE);
    CHECK_CODE(tessera_runtime_status(rt, &st), TESSERA_OK);
    CHECK(st.finished);
    /* After the drain. */
    CHECK_CODE(tessera_runtime_step(rt, 0), TESSERA_STOPPED);
    CHECK_CODE(tessera_runtime_start(rt), TESSERA_STOPPED);
    CHECK_CODE(tessera_runtime_wait(rt), TESSERA_STOPPED);
    CHECK_CODE(tessera_runtime_drain(rt, 0), TESSERA_OK);
}

int main(void) {
    struct log_count logs = {0, 0};
    tessera_runtime_config c;
    tessera_runtime *rt = NULL;
    char dir[] = "/tmp/tessera-c-runtime-XXXXXX";
    char path[512];
    char why[256];

    /* A deadlock fails the test instead of hanging it. */
    alarm(300);
    CHECK_CODE(tessera_set_log_callback(on_log, &logs, 99),
               TESSERA_INVALID_ARGUMENT);
    CHECK_CODE(tessera_set_log_callback(on_log, &logs, TESSERA_LOG_INFO),
               TESSERA_OK);

    test_config_errors();

    /* From a struct, with the built-in signer. */
    CHECK_CODE(tessera_runtime_config_default(&c), TESSERA_OK);
    c.coordinator = "127.0.0.1:1";
    c.server_name = "localhost";
    c.pinned_key_sha256 = PIN;
    c.drain_timeout_ms = 500;
    why[0] = '\0';
    CHECK_CODE(tessera_runtime_new(&c, new_signer(), why, sizeof why, &rt),
               TESSERA_OK);
    if (rt) {
        /* The runtime's key is the signer's it took. */
        uint8_t mine[32], its[32];
        tessera_signer *s = new_signer();
        CHECK_CODE(tessera_signer_public_key(s, mine), TESSERA_OK);
        tessera_signer_free(s);
        CHECK_CODE(tessera_runtime_public_key(rt, its), TESSERA_OK);
        CHECK(memcmp(mine, its, 32) == 0);
        CHECK_CODE(tessera_runtime_public_key(rt, NULL), TESSERA_NULL_ARGUMENT);
        CHECK(logs.device_lines == 1);
        test_reentry(rt);
        test_stepped_then_threaded(rt);
        tessera_runtime_free(rt);
    } else {
        fprintf(stderr, "runtime: %s\n", why);
    }

    /* From the operator's file: the key is created, the store opened. */
    CHECK(mkdtemp(dir) != NULL);
    write_toml(dir, path, sizeof path);
    rt = NULL;
    CHECK_CODE(tessera_runtime_new_from_toml(path, why, sizeof why, &rt),
               TESSERA_OK);
    if (rt) {
        char key[600];
        snprintf(key, sizeof key, "%s/device.key", dir);
        CHECK(access(key, R_OK) == 0);
        test_log_reentry(rt);
        CHECK_CODE(tessera_set_log_callback(on_log, &logs, TESSERA_LOG_INFO),
                   TESSERA_OK);
        CHECK_CODE(tessera_runtime_step(rt, 0), TESSERA_OK);
        /* Freed while stepped: no thread to stop. */
        tessera_runtime_free(rt);
    } else {
        fprintf(stderr, "runtime from TOML: %s\n", why);
    }
    CHECK(logs.lines > 0);
    CHECK_CODE(tessera_set_log_callback(NULL, NULL, 0), TESSERA_OK);
    {
        char cmd[600];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
        CHECK(system(cmd) == 0);
    }

    if (failures) {
        fprintf(stderr, "test_runtime: %d checks failed\n", failures);
        return 1;
    }
    printf("test_runtime: ok\n");
    return 0;
}
