/*
 * firmware_agent: the sans-IO agent as firmware would drive it.
 *
 * The program owns everything the library does not: the socket, the clock,
 * the memory of the jobs and the device key, which sits behind two
 * callbacks as it would in a secure element (here a stand-in holding a key
 * in memory). The library never allocates on this path; this program
 * allocates nothing after start-up either: frames, kernels and job buffers
 * live in fixed static arrays, sized by the policy it announces.
 *
 * The socket is plain TCP: on a device the TLS session to the coordinator
 * is terminated by the secure element or a host-side relay (ci/demo runs
 * socat as that relay). Kernels run on the GPU through the library's Vulkan
 * dispatcher, opened at start-up.
 *
 *   firmware_agent --connect HOST:PORT [--jobs N]
 *
 * With --jobs N it drains after N results were acknowledged; SIGINT or
 * SIGTERM drain too.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <tessera.h>

/* ----- fixed memory ------------------------------------------------------ */

enum {
    SLOTS = 2,                 /* jobs held at once (policy.max_concurrent) */
    KERNEL_BYTES = 256 << 10,  /* largest SPIR-V module taken */
    POOL_BYTES = 4 << 20,      /* buffers of one job, in all */
};

struct slot {
    int used;
    uint64_t job;
    int fits;                 /* its buffers fit in `pool` */
    uint8_t kernel[KERNEL_BYTES];
    size_t kernel_len;
    uint8_t pool[POOL_BYTES];
    tessera_kernel_buffer buffers[TESSERA_MAX_BUFFERS];
    uint32_t buffer_count;
    tessera_usage usage;      /* of the run, for a resend after a reconnect */
};

static struct slot slots[SLOTS];
static uint8_t rx[2 * TESSERA_MAX_FRAME];
static size_t rx_len;
/* Queued frames, and output chunks with the frames queued before them:
 * with this size every tessera_agent_send_output takes a chunk. */
static uint8_t tx[TESSERA_TRANSMIT_BUFFER];
static volatile sig_atomic_t stop_requested;

/* ----- the secure element stand-in -------------------------------------- */

struct element {
    tessera_signer *key; /* the key it keeps; firmware calls the chip here */
    unsigned signatures;
};

static tessera_result element_public_key(void *userdata, uint8_t *out) {
    struct element *e = (struct element *)userdata;
    return tessera_signer_public_key(e->key, out);
}

static tessera_result element_sign(void *userdata, const uint8_t *msg,
                                   size_t len, uint8_t *sig) {
    struct element *e = (struct element *)userdata;
    e->signatures++;
    return tessera_signer_sign(e->key, msg, len, sig);
}

/* ----- helpers ----------------------------------------------------------- */

static uint64_t now_us(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000u + (uint64_t)t.tv_nsec / 1000u;
}

static void say(const char *what, tessera_result r) {
    char text[200];
    tessera_result_text(r, (uint8_t *)text, sizeof text, NULL);
    fprintf(stderr, "firmware_agent: %s: %s\n", what, text);
}

static int connect_to(const char *hostport) {
    char host[256];
    const char *colon = strrchr(hostport, ':');
    struct addrinfo hints, *res = NULL, *ai;
    int fd = -1;
    if (!colon || (size_t)(colon - hostport) >= sizeof host) {
        return -1;
    }
    memcpy(host, hostport, (size_t)(colon - hostport));
    host[colon - hostport] = '\0';
    memset(&hints, 0, sizeof hints);
    hints.ai_socktype = SOCK_STREAM;
    if (getaddrinfo(host, colon + 1, &hints, &res) != 0) {
        return -1;
    }
    for (ai = res; ai; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
        if (fd >= 0 && connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) {
            break;
        }
        if (fd >= 0) {
            close(fd);
        }
        fd = -1;
    }
    freeaddrinfo(res);
    return fd;
}

/* Sends tx[..n]. */
static int send_all(int fd, size_t n) {
    size_t off = 0;
    while (off < n) {
        ssize_t w = send(fd, tx + off, n - off, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) {
            continue;
        }
        if (w <= 0) {
            return -1;
        }
        off += (size_t)w;
    }
    return 0;
}

/* Sends everything the agent has queued. */
static int flush(tessera_agent *agent, int fd) {
    size_t n = 0;
    while (tessera_agent_poll_transmit(agent, now_us(), tx, sizeof tx, &n) ==
           TESSERA_OK) {
        if (send_all(fd, n) != 0) {
            return -1;
        }
    }
    return 0;
}

static struct slot *slot_of(uint64_t job) {
    int i;
    for (i = 0; i < SLOTS; i++) {
        if (slots[i].used && slots[i].job == job) {
            return &slots[i];
        }
    }
    return NULL;
}

/* A job was assigned: lay its buffers out in a free slot. */
static void assign(tessera_agent *agent, uint64_t job) {
    tessera_job_info info = {.size = sizeof(tessera_job_info)};
    struct slot *s = NULL;
    uint64_t at = 0;
    uint32_t i;
    for (i = 0; i < SLOTS && !s; i++) {
        if (!slots[i].used) {
            s = &slots[i];
        }
    }
    if (!s || tessera_agent_job_info(agent, job, &info) != TESSERA_OK) {
        return; /* the policy holds at most SLOTS jobs */
    }
    s->used = 1;
    s->job = job;
    s->fits = info.kernel_len <= KERNEL_BYTES &&
              info.buffer_count <= TESSERA_MAX_BUFFERS;
    s->kernel_len = info.kernel_len;
    s->buffer_count = info.buffer_count;
    for (i = 0; s->fits && i < info.buffer_count; i++) {
        tessera_buffer_spec b;
        tessera_kernel_buffer *k = &s->buffers[i];
        tessera_agent_job_buffer(agent, job, i, &b);
        if (b.len > POOL_BYTES - at) {
            s->fits = 0;
            break;
        }
        memset(s->pool + at, 0, (size_t)b.len);
        k->binding = b.binding;
        k->len = b.len;
        k->init = s->pool + at;
        k->init_len = (size_t)b.init_len;
        k->readback = b.readback;
        /* Outputs are written in place over the inputs. */
        k->output = b.readback ? s->pool + at : NULL;
        k->output_len = b.readback ? (size_t)b.len : 0;
        at += (b.len + 15u) & ~(uint64_t)15u;
    }
}

/* A piece of an input chunk: copy it where it belongs. The chunk is checked
 * when its last piece arrives; one that fails cancels the job
 * (TESSERA_EVENT_CANCEL_JOB), and what it wrote here is dropped with it. */
static void take_input(tessera_agent *agent, const tessera_event *ev) {
    struct slot *s = slot_of(ev->job);
    uint8_t *dst;
    size_t room, n = 0;
    if (!s || !s->fits) {
        return;
    }
    if (ev->stream == 0) {
        dst = s->kernel + ev->offset;
        room = s->kernel_len - (size_t)ev->offset;
    } else {
        tessera_kernel_buffer *b = &s->buffers[ev->stream - 1];
        dst = s->pool + ((const uint8_t *)b->init - s->pool) + ev->offset;
        room = b->init_len - (size_t)ev->offset;
    }
    if (tessera_agent_read_input(agent, ev->job, dst, room, &n) != TESSERA_OK) {
        s->fits = 0;
    }
}

/* Sends a job's outputs, buffer by buffer: the agent writes their frames,
 * after any it had queued, into tx, which goes out before anything else. */
static int upload(tessera_agent *agent, int fd, struct slot *s) {
    uint32_t i;
    for (i = 0; i < s->buffer_count; i++) {
        tessera_kernel_buffer *b = &s->buffers[i];
        size_t off = 0;
        if (!b->readback) {
            continue;
        }
        while (off < b->len) {
            size_t taken = 0, written = 0;
            tessera_result r = tessera_agent_send_output(
                agent, now_us(), s->job, i, b->output + off,
                (size_t)b->len - off, tx, sizeof tx, &taken, &written);
            if (r != TESSERA_OK) {
                say("send_output", r);
                return -1;
            }
            if (send_all(fd, written) != 0) {
                return -1;
            }
            off += taken;
        }
    }
    return 0;
}

static void run(tessera_agent *agent, tessera_dispatcher *gpu, int fd,
                uint64_t job) {
    struct slot *s = slot_of(job);
    tessera_job_info info = {.size = sizeof(tessera_job_info)};
    tessera_kernel_job k;
    char entry[TESSERA_MAX_ENTRY_POINT + 1];
    uint8_t push[TESSERA_MAX_PUSH_CONSTANTS];
    uint32_t spec[2 * TESSERA_MAX_SPEC_CONSTANTS];
    size_t push_len = 0;
    uint32_t i, reason = 7, detail = 0;
    tessera_usage usage;
    tessera_result r;

    memset(&usage, 0, sizeof usage);
    if (!s || !s->fits || tessera_agent_job_info(agent, job, &info) != TESSERA_OK) {
        /* More than this device's fixed memory holds. */
        tessera_agent_fail_job(agent, now_us(), job, 5 /* out of memory */, 0,
                               &usage);
        return;
    }
    r = tessera_agent_job_entry_point(agent, job, entry, sizeof entry, NULL);
    if (r != TESSERA_OK) {
        /* A name no module has (it holds a NUL byte): refused as the
         * gate refuses a kernel. */
        say("entry point", r);
        if (r >= TESSERA_KERNEL_BASE) {
            reason = 1; /* kernel rejected */
            detail = r - TESSERA_KERNEL_BASE;
        }
        tessera_agent_fail_job(agent, now_us(), job, reason, detail, &usage);
        return;
    }
    tessera_agent_job_push_constants(agent, job, push, sizeof push, &push_len);
    for (i = 0; i < info.specialization_count; i++) {
        tessera_agent_job_specialization(agent, job, i, &spec[2 * i],
                                         &spec[2 * i + 1]);
    }
    memset(&k, 0, sizeof k);
    k.size = sizeof k;
    k.spirv = s->kernel;
    k.spirv_len = s->kernel_len;
    k.entry_point = entry;
    k.specialization = spec;
    k.specialization_count = info.specialization_count;
    k.push_constants = push;
    k.push_constants_len = push_len;
    memcpy(k.grid, info.grid, sizeof k.grid);
    k.buffers = s->buffers;
    k.buffer_count = s->buffer_count;
    k.timeout_ms = info.has_deadline && info.deadline_us > now_us()
                       ? (info.deadline_us - now_us()) / 1000u
                       : 1000u;
    r = tessera_dispatcher_run(gpu, &k, &usage);
    if (r == TESSERA_OK) {
        s->usage = usage;
        if (upload(agent, fd, s) == 0) {
            r = tessera_agent_finish_job(agent, now_us(), job, &usage);
            if (r != TESSERA_OK) {
                say("finish_job", r);
            }
        }
        return;
    }
    say("kernel", r);
    tessera_dispatcher_last_failure(gpu, &reason, &detail, &usage);
    r = tessera_agent_fail_job(agent, now_us(), job, reason, detail, &usage);
    if (r != TESSERA_OK) {
        say("fail_job", r);
    }
}

static void on_signal(int sig) {
    (void)sig;
    stop_requested = 1;
}

int main(int argc, char **argv) {
    const char *target = NULL;
    long jobs_to_serve = 0, acknowledged = 0;
    tessera_dispatcher_config dconf;
    tessera_dispatcher *gpu = NULL;
    tessera_agent_config config;
    tessera_signer_callbacks callbacks;
    tessera_signer *signer = NULL;
    struct element element = {NULL, 0};
    static const uint8_t seed[32] = {0x5e, 0xc5, 0xe1, 0xe7};
    tessera_agent *agent = NULL;
    char error[512];
    int fd, draining = 0, i, done = 0;
    tessera_result r;

    for (i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--connect") == 0) {
            target = argv[i + 1];
        } else if (strcmp(argv[i], "--jobs") == 0) {
            jobs_to_serve = strtol(argv[i + 1], NULL, 10);
        }
    }
    if (!target) {
        fprintf(stderr, "usage: firmware_agent --connect HOST:PORT [--jobs N]\n");
        return 2;
    }
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);

    /* Start-up: the GPU, the key, the agent. */
    tessera_dispatcher_config_default(&dconf);
    r = tessera_dispatcher_new(&dconf, error, sizeof error, &gpu);
    if (r != TESSERA_OK) {
        fprintf(stderr, "firmware_agent: GPU: %s\n", error);
        return 1;
    }
    if (tessera_signer_from_seed(seed, &element.key) != TESSERA_OK) {
        return 1;
    }
    callbacks.size = sizeof callbacks;
    callbacks.userdata = &element;
    callbacks.public_key = element_public_key;
    callbacks.sign = element_sign;
    r = tessera_signer_from_callbacks(&callbacks, &signer);
    if (r != TESSERA_OK) {
        say("secure element", r);
        return 1;
    }
    tessera_agent_config_default(&config);
    tessera_dispatcher_device(gpu, &config.device);
    config.boot_id[0] = (uint8_t)now_us();
    config.policy.max_concurrent = SLOTS;
    config.policy.max_bytes_in = POOL_BYTES;
    config.policy.max_bytes_out = POOL_BYTES;
    config.policy.price_base = 100;
    config.policy.floor = 120;
    r = tessera_agent_new(&config, signer, NULL, error, sizeof error, &agent);
    if (r != TESSERA_OK) {
        fprintf(stderr, "firmware_agent: agent: %s\n", error);
        return 1;
    }

    fd = connect_to(target);
    if (fd < 0) {
        fprintf(stderr, "firmware_agent: cannot connect to %s\n", target);
        return 1;
    }
    tessera_agent_connect(agent, now_us());
    fprintf(stderr, "firmware_agent: connected to %s\n", target);

    /* The main loop: bytes and time in, bytes and events out. */
    while (!done) {
        struct pollfd p = {0, POLLIN, 0};
        uint64_t due = 0;
        int wait_ms = 1000;
        tessera_event ev = {.size = sizeof(tessera_event)};

        if (stop_requested && !draining) {
            draining = 1;
            fprintf(stderr, "firmware_agent: draining\n");
            tessera_agent_drain(agent, now_us());
        }
        if (flush(agent, fd) != 0) {
            tessera_agent_disconnected(agent, now_us());
        }
        if (tessera_agent_poll_timeout(agent, &due) == TESSERA_OK) {
            uint64_t t = now_us();
            wait_ms = due <= t ? 0 : (int)((due - t) / 1000u) + 1;
            if (wait_ms > 1000) {
                wait_ms = 1000;
            }
        }
        p.fd = fd;
        if (poll(&p, 1, wait_ms) > 0 && (p.revents & (POLLIN | POLLHUP))) {
            ssize_t n = recv(fd, rx + rx_len, sizeof rx - rx_len, 0);
            if (n <= 0) {
                tessera_agent_disconnected(agent, now_us());
            } else {
                rx_len += (size_t)n;
            }
        }
        if (rx_len > 0) {
            size_t used = 0;
            r = tessera_agent_handle_input(agent, now_us(), rx, rx_len, &used);
            if (r != TESSERA_OK) {
                say("from the coordinator", r);
            }
            memmove(rx, rx + used, rx_len - used);
            rx_len -= used;
        }
        tessera_agent_handle_timeout(agent, now_us());

        while (tessera_agent_poll_event(agent, &ev) == TESSERA_OK) {
            struct slot *s = slot_of(ev.job);
            switch (ev.kind) {
            case TESSERA_EVENT_READY:
                fprintf(stderr, "firmware_agent: session established (%u "
                                "signatures by the secure element)\n",
                        element.signatures);
                break;
            case TESSERA_EVENT_JOB_ASSIGNED:
                assign(agent, ev.job);
                break;
            case TESSERA_EVENT_JOB_DATA:
                take_input(agent, &ev);
                break;
            case TESSERA_EVENT_RUN_JOB:
                run(agent, gpu, fd, ev.job);
                break;
            case TESSERA_EVENT_RESEND_OUTPUTS:
                if (s && upload(agent, fd, s) == 0) {
                    tessera_agent_finish_job(agent, now_us(), ev.job, &s->usage);
                }
                break;
            case TESSERA_EVENT_RESULT_ACKNOWLEDGED:
                fprintf(stderr, "firmware_agent: job %llu acknowledged\n",
                        (unsigned long long)ev.job);
                acknowledged++;
                if (jobs_to_serve > 0 && acknowledged >= jobs_to_serve) {
                    stop_requested = 1;
                }
                if (s) {
                    s->used = 0;
                }
                break;
            case TESSERA_EVENT_CANCEL_JOB:
            case TESSERA_EVENT_RESULT_REFUSED:
                if (s) {
                    s->used = 0;
                }
                break;
            case TESSERA_EVENT_DISCONNECT:
                fprintf(stderr, "firmware_agent: disconnected (reason %u)\n",
                        ev.reason);
                done = 1;
                break;
            default:
                break;
            }
        }
    }
    flush(agent, fd);
    close(fd);
    {
        tessera_stats stats = {.size = sizeof(tessera_stats)};
        tessera_agent_stats(agent, &stats);
        fprintf(stderr,
                "firmware_agent: %llu jobs completed, earnings %llu, %u "
                "signatures by the secure element\n",
                (unsigned long long)stats.jobs_completed,
                (unsigned long long)stats.earnings, element.signatures);
    }
    tessera_agent_free(agent);
    tessera_signer_free(element.key);
    tessera_dispatcher_free(gpu);
    return acknowledged >= jobs_to_serve ? 0 : 1;
}
