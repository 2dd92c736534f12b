/*
 * provider: a complete Tessera provider in C, on the library's runtime.
 *
 * It loads (or creates) the device key, opens the GPU through Vulkan, keeps
 * a TLS session with the coordinator (reconnecting with backoff), runs the
 * jobs it takes on the GPU, stores results until they are acknowledged,
 * and drains on SIGINT or SIGTERM: jobs in flight finish, nothing new is
 * taken, then it says goodbye. Log lines go to standard error; a status
 * line every few seconds to standard output.
 *
 *   provider --coordinator HOST:PORT --ca CA.pem --key device.key \
 *            [--store DIR] [--server-name NAME] [--price-base N]
 *
 * Build it with CMake against an installed library (README, "The C
 * library"): find_package(tessera) then link tessera::tessera.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <tessera.h>

static void on_log(void *userdata, uint32_t level, const char *target,
                   const char *message) {
    static const char *names[] = {"", "ERROR", "WARN", "INFO", "DEBUG",
                                  "TRACE"};
    (void)userdata;
    fprintf(stderr, "%-5s %s: %s\n", level <= 5 ? names[level] : "?", target,
            message);
}

static void die(const char *what, tessera_result r, const char *detail) {
    char text[256];
    tessera_result_text(r, (uint8_t *)text, sizeof text, NULL);
    fprintf(stderr, "provider: %s: %s%s%s\n", what, text,
            detail && *detail ? ": " : "", detail ? detail : "");
    exit(1);
}

/* The device key: read the PKCS#8 file, or make a new key and write it
 * (mode 0600, never over an existing file). */
static tessera_signer *load_or_create_key(const char *path) {
    uint8_t der[256];
    size_t len = 0;
    tessera_signer *signer = NULL;
    tessera_result r;
    int fd = open(path, O_RDONLY);
    if (fd >= 0) {
        ssize_t n = read(fd, der, sizeof der);
        close(fd);
        if (n <= 0) {
            fprintf(stderr, "provider: %s: cannot read the key\n", path);
            exit(1);
        }
        len = (size_t)n;
    } else if (errno == ENOENT) {
        r = tessera_key_generate(der, sizeof der, &len);
        if (r != TESSERA_OK) {
            die("generating a key", r, NULL);
        }
        fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
        if (fd < 0 || write(fd, der, len) != (ssize_t)len || fsync(fd) != 0) {
            perror(path);
            exit(1);
        }
        close(fd);
        fprintf(stderr, "provider: created a new device key in %s\n", path);
    } else {
        perror(path);
        exit(1);
    }
    r = tessera_signer_from_pkcs8(der, len, &signer);
    memset(der, 0, sizeof der);
    if (r != TESSERA_OK) {
        die(path, r, NULL);
    }
    return signer;
}

static const char *arg_value(int argc, char **argv, const char *name) {
    int i;
    for (i = 1; i + 1 < argc; i++) {
        if (strcmp(argv[i], name) == 0) {
            return argv[i + 1];
        }
    }
    return NULL;
}

int main(int argc, char **argv) {
    tessera_runtime_config config;
    tessera_runtime *runtime = NULL;
    tessera_status status;
    char error[512];
    char line[512];
    sigset_t signals;
    struct timespec every = {5, 0};
    const char *coordinator = arg_value(argc, argv, "--coordinator");
    const char *ca = arg_value(argc, argv, "--ca");
    const char *key = arg_value(argc, argv, "--key");
    const char *price = arg_value(argc, argv, "--price-base");
    tessera_result r;

    if (!coordinator || !ca || !key) {
        fprintf(stderr,
                "usage: provider --coordinator HOST:PORT --ca CA.pem --key "
                "FILE [--store DIR] [--server-name NAME] [--price-base N]\n");
        return 2;
    }
    if (tessera_version() != TESSERA_VERSION_NUMBER) {
        fprintf(stderr, "provider: built for another libtessera version\n");
        return 1;
    }
    /* Signals are taken by this thread with sigtimedwait; block them before
     * the runtime starts its threads so none of those gets them. */
    sigemptyset(&signals);
    sigaddset(&signals, SIGINT);
    sigaddset(&signals, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &signals, NULL);

    tessera_set_log_callback(on_log, NULL, TESSERA_LOG_INFO);

    tessera_runtime_config_default(&config);
    config.coordinator = coordinator;
    config.server_name = arg_value(argc, argv, "--server-name");
    config.ca_file = ca;
    config.store_dir = arg_value(argc, argv, "--store");
    config.policy.max_concurrent = 2;
    config.policy.price_base = price ? strtoull(price, NULL, 10) : 100;
    config.policy.price_per_gpu_ms = 10;
    config.policy.price_per_mib_in = 2;
    config.policy.price_per_mib_out = 2;
    config.policy.floor = 120;

    r = tessera_runtime_new(&config, load_or_create_key(key), error,
                            sizeof error, &runtime);
    if (r != TESSERA_OK) {
        die("starting", r, error);
    }
    r = tessera_runtime_start(runtime);
    if (r != TESSERA_OK) {
        die("starting its thread", r, NULL);
    }

    /* Until a signal: a status line every few seconds. */
    status.size = sizeof status;
    for (;;) {
        int sig = sigtimedwait(&signals, NULL, &every);
        if (sig == SIGINT || sig == SIGTERM) {
            fprintf(stderr, "provider: draining (signal %d)\n", sig);
            tessera_runtime_drain(runtime, 0);
            break;
        }
        if (tessera_runtime_status(runtime, &status) == TESSERA_OK &&
            status.finished) {
            break;
        }
        if (tessera_runtime_status_text(runtime, line, sizeof line, NULL) ==
            TESSERA_OK) {
            printf("status: %s\n", line);
            fflush(stdout);
        }
    }
    r = tessera_runtime_wait(runtime);
    tessera_runtime_status_text(runtime, line, sizeof line, NULL);
    fprintf(stderr, "provider: drained; %s\n", line);
    tessera_runtime_free(runtime);
    tessera_set_log_callback(NULL, NULL, 0);
    return r == TESSERA_OK ? 0 : 1;
}
