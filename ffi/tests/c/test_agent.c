/*
 * The sans-IO agent through the C ABI: every function, its NULL, zero-length
 * and too-small-buffer paths, calls in the wrong order, a callback signer,
 * a session up to an accepted offer, and a job's data: an 8 KiB input chunk
 * in several JobData pieces, outputs written into the host's buffer, a
 * chunk that fails its digest. Frames come from the shared wire vectors
 * (core/tests/vectors/wire.json, names in the comments) or are encoded here.
 *
 * Built by ci/test with -std=c99 -Wall -Wextra -Werror -pedantic and run
 * under AddressSanitizer + UBSan and under valgrind.
 */
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

static size_t unhex(const char *hex, uint8_t *out, size_t cap) {
    size_t n = strlen(hex) / 2;
    size_t i;
    if (n > cap) {
        abort();
    }
    for (i = 0; i < n; i++) {
        unsigned v;
        if (sscanf(hex + 2 * i, "%2x", &v) != 1) {
            abort();
        }
        out[i] = (uint8_t)v;
    }
    return n;
}

/* wire.json "welcome", "ready", "job_offer", "drain". */
static const char *WELCOME =
    "545301022300000001203f5e7d9cbbdaf91837567594b3d2f1102f4e6d8cabcae9082746"
    "6584a3c2e18827";
static const char *READY = "5453010400000000";
static const char *JOB_OFFER =
    "545301101100000001800421fa01808040808004904eb0ea01";

static const uint8_t SEED[32] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11,
                                 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22,
                                 23, 24, 25, 26, 27, 28, 29, 30, 31, 32};

/* A stand-in secure element: a built-in key behind callbacks, which can be
 * made busy. */
struct element {
    tessera_signer *key;
    int busy;
    int signatures;
};

static tessera_result element_public_key(void *userdata, uint8_t *out) {
    struct element *e = (struct element *)userdata;
    return tessera_signer_public_key(e->key, out);
}

static tessera_result element_sign(void *userdata, const uint8_t *msg,
                                   size_t len, uint8_t *sig) {
    struct element *e = (struct element *)userdata;
    if (e->busy) {
        return TESSERA_SIGNER_UNAVAILABLE;
    }
    e->signatures++;
    return tessera_signer_sign(e->key, msg, len, sig);
}

static tessera_result failing_public_key(void *userdata, uint8_t *out) {
    (void)userdata;
    (void)out;
    return TESSERA_SIGNER_FAILED;
}

static void test_version_and_text(void) {
    char text[200];
    size_t n = 0;
    CHECK(tessera_version() == TESSERA_VERSION_NUMBER);
    CHECK(TESSERA_VERSION_NUMBER == ((TESSERA_VERSION_MAJOR << 16) |
                                     (TESSERA_VERSION_MINOR << 8) |
                                     TESSERA_VERSION_PATCH));
    CHECK_CODE(tessera_result_text(TESSERA_WOULD_BLOCK, (uint8_t *)text,
                                   sizeof text, &n),
               TESSERA_OK);
    CHECK(strncmp(text, "would_block: ", 13) == 0);
    CHECK(n == strlen(text));
    CHECK_CODE(tessera_result_text(TESSERA_KERNEL_BASE + 1, (uint8_t *)text,
                                   sizeof text, &n),
               TESSERA_OK);
    CHECK(strncmp(text, "kernel_rejected: ", 17) == 0);
    CHECK_CODE(tessera_result_text(99999, (uint8_t *)text, sizeof text, &n),
               TESSERA_OK);
    CHECK(strcmp(text, "unknown code 99999") == 0);
    /* Cut to fit, always NUL-terminated. */
    CHECK_CODE(tessera_result_text(TESSERA_OK, (uint8_t *)text, 3, &n),
               TESSERA_OK);
    CHECK(n == 2 && strcmp(text, "ok") == 0);
    CHECK_CODE(tessera_result_text(TESSERA_WOULD_BLOCK, (uint8_t *)text, 1, &n),
               TESSERA_OK);
    CHECK(n == 0 && text[0] == '\0');
    CHECK_CODE(tessera_result_text(TESSERA_OK, NULL, 10, &n),
               TESSERA_NULL_ARGUMENT);
    /* A length no buffer can have ("no limit") touches only the bytes
     * written: no slice of SIZE_MAX bytes is ever made. */
    CHECK_CODE(tessera_result_text(TESSERA_OK, (uint8_t *)text, SIZE_MAX, &n),
               TESSERA_OK);
    CHECK(strncmp(text, "ok: ", 4) == 0 && n == strlen(text));
    {
        uint8_t doc[TESSERA_KEY_PKCS8_LEN];
        CHECK_CODE(tessera_key_generate(doc, SIZE_MAX, &n), TESSERA_OK);
        CHECK(n == sizeof doc);
    }
    CHECK_CODE(tessera_result_text(TESSERA_OK, (uint8_t *)text, 0, &n),
               TESSERA_NULL_ARGUMENT);
}

static tessera_agent_config device_config(void) {
    tessera_agent_config c;
    CHECK_CODE(tessera_agent_config_default(&c), TESSERA_OK);
    CHECK(c.size == sizeof c);
    c.device.name = "C test GPU";
    c.device.device_type = TESSERA_DEVICE_DISCRETE_GPU;
    c.device.features = 0xFFFFFFFFu;
    c.device.device_local_bytes = (uint64_t)8 << 30;
    c.device.host_visible_bytes = (uint64_t)8 << 30;
    c.device.max_storage_buffer_range = (uint64_t)1 << 30;
    c.boot_id[0] = 7;
    return c;
}

/* A hardware report callback that names none. */
static tessera_result no_report(void *userdata, const uint8_t *nonce,
                                uint16_t *kind, uint8_t *hash) {
    (void)userdata;
    (void)nonce;
    (void)hash;
    *kind = TESSERA_HARDWARE_REPORT_NONE;
    return TESSERA_OK;
}

static void test_signers(void) {
    tessera_signer *s = NULL;
    uint8_t pk[32];
    uint8_t sig[64];
    tessera_signer_callbacks cb;
    struct element e;

    CHECK_CODE(tessera_signer_from_seed(NULL, &s), TESSERA_NULL_ARGUMENT);
    CHECK_CODE(tessera_signer_from_seed(SEED, NULL), TESSERA_NULL_ARGUMENT);
    CHECK_CODE(tessera_signer_from_pkcs8((const uint8_t *)"nonsense", 8, &s),
               TESSERA_KEY_REJECTED);
    CHECK_CODE(tessera_signer_from_pkcs8(NULL, 0, &s), TESSERA_NULL_ARGUMENT);
    CHECK_CODE(tessera_signer_from_seed(SEED, &s), TESSERA_OK);
    CHECK_CODE(tessera_signer_public_key(s, NULL), TESSERA_NULL_ARGUMENT);
    CHECK_CODE(tessera_signer_public_key(NULL, pk), TESSERA_NULL_ARGUMENT);
    CHECK_CODE(tessera_signer_public_key(s, pk), TESSERA_OK);
    CHECK_CODE(tessera_signer_sign(s, NULL, 3, sig), TESSERA_NULL_ARGUMENT);
    CHECK_CODE(tessera_signer_sign(s, NULL, 0, sig), TESSERA_OK);
    CHECK_CODE(tessera_signer_sign(s, (const uint8_t *)"abc", 3, NULL),
               TESSERA_NULL_ARGUMENT);

    memset(&cb, 0, sizeof cb);
    e.key = s;
    e.busy = 0;
    e.signatures = 0;
    cb.userdata = &e;
    cb.public_key = element_public_key;
    cb.sign = element_sign;
    {
        tessera_signer *c = NULL;
        CHECK_CODE(tessera_signer_from_callbacks(&cb, &c),
                   TESSERA_INVALID_ARGUMENT); /* size not set */
        cb.size = sizeof cb;
        cb.sign = NULL;
        CHECK_CODE(tessera_signer_from_callbacks(&cb, &c),
                   TESSERA_NULL_ARGUMENT);
        cb.sign = element_sign;
        cb.public_key = failing_public_key;
        CHECK_CODE(tessera_signer_from_callbacks(&cb, &c),
                   TESSERA_SIGNER_FAILED);
        cb.public_key = element_public_key;
        CHECK_CODE(tessera_signer_from_callbacks(NULL, &c),
                   TESSERA_NULL_ARGUMENT);
        CHECK_CODE(tessera_signer_from_callbacks(&cb, &c), TESSERA_OK);
        {
            uint8_t pk2[32];
            CHECK_CODE(tessera_signer_public_key(c, pk2), TESSERA_OK);
            CHECK(memcmp(pk, pk2, 32) == 0);
        }
        e.busy = 1;
        CHECK_CODE(tessera_signer_sign(c, (const uint8_t *)"m", 1, sig),
                   TESSERA_SIGNER_UNAVAILABLE);
        e.busy = 0;
        CHECK_CODE(tessera_signer_sign(c, (const uint8_t *)"m", 1, sig),
                   TESSERA_OK);
        CHECK(e.signatures == 1);
        /* A hardware report callback, set, then taken away; the agent
         * calls it at each connection (Rust test
         * a_signer_names_the_hardware_report_its_callback_makes). */
        CHECK_CODE(tessera_signer_set_hardware_report(NULL, no_report, NULL),
                   TESSERA_NULL_ARGUMENT);
        CHECK_CODE(tessera_signer_set_hardware_report(c, no_report, &e),
                   TESSERA_OK);
        CHECK_CODE(tessera_signer_set_hardware_report(c, NULL, NULL),
                   TESSERA_OK);
        tessera_signer_free(c);
    }
    tessera_signer_free(s);
    tessera_signer_free(NULL);
}

/* A new built-in signer: tessera_agent_new takes its signer over whatever
 * it returns, so each call gets its own. */
static tessera_signer *new_signer(void) {
    tessera_signer *s = NULL;
    CHECK_CODE(tessera_signer_from_seed(SEED, &s), TESSERA_OK);
    return s;
}

static void test_config_errors(void) {
    tessera_agent_config c = device_config();
    tessera_agent *a = NULL;
    char why[160];
    char long_name[80];

    CHECK_CODE(tessera_agent_config_default(NULL), TESSERA_NULL_ARGUMENT);
    CHECK_CODE(tessera_agent_new(NULL, new_signer(), NULL, NULL, 0, &a),
               TESSERA_NULL_ARGUMENT);
    CHECK_CODE(tessera_agent_new(&c, NULL, NULL, NULL, 0, &a),
               TESSERA_NULL_ARGUMENT);
    CHECK_CODE(tessera_agent_new(&c, new_signer(), NULL, NULL, 0, NULL),
               TESSERA_NULL_ARGUMENT);

    c.size = 8;
    CHECK_CODE(tessera_agent_new(&c, new_signer(), NULL, why, sizeof why, &a),
               TESSERA_INVALID_ARGUMENT);
    c = device_config();

    c.policy.max_concurrent = 0;
    why[0] = '\0';
    CHECK_CODE(tessera_agent_new(&c, new_signer(), NULL, why, sizeof why, &a),
               TESSERA_INVALID_CONFIG);
    CHECK(strstr(why, "policy.max_concurrent") != NULL);
    c.policy.max_concurrent = 1000;
    CHECK_CODE(tessera_agent_new(&c, new_signer(), NULL, why, sizeof why, &a),
               TESSERA_INVALID_CONFIG);
    CHECK(strstr(why, "policy.max_concurrent") != NULL);
    c = device_config();

    memset(long_name, 'x', sizeof long_name - 1);
    long_name[sizeof long_name - 1] = '\0';
    c.device.name = long_name;
    CHECK_CODE(tessera_agent_new(&c, new_signer(), NULL, why, sizeof why, &a),
               TESSERA_INVALID_CONFIG);
    CHECK(strstr(why, "device.name") != NULL);
    c.device.name = "\xff\xfe";
    CHECK_CODE(tessera_agent_new(&c, new_signer(), NULL, why, sizeof why, &a),
               TESSERA_INVALID_CONFIG);
    c = device_config();
    c.device.device_type = 99;
    CHECK_CODE(tessera_agent_new(&c, new_signer(), NULL, NULL, 0, &a),
               TESSERA_INVALID_CONFIG);
    c = device_config();
    c.policy.peer_timeout_ms = 0;
    /* A tiny error buffer still gets a NUL-terminated prefix. */
    CHECK_CODE(tessera_agent_new(&c, new_signer(), NULL, why, 4, &a),
               TESSERA_INVALID_CONFIG);
    CHECK(strlen(why) <= 3);
    CHECK(a == NULL);

    /* A bool field holding a byte other than 0 or 1 (raw bytes from a
     * binding, a memset, a file) is refused, never read as either. */
    c = device_config();
    *(unsigned char *)&c.persist_results = 2;
    why[0] = '\0';
    CHECK_CODE(tessera_agent_new(&c, new_signer(), NULL, why, sizeof why, &a),
               TESSERA_INVALID_CONFIG);
    CHECK(strstr(why, "persist_results") != NULL);
    tessera_agent_free(a);
    a = NULL;
    /* valgrind and LeakSanitizer check that every signer given was freed. */
}

static size_t feed(tessera_agent *a, uint64_t now, const char *hex) {
    uint8_t frame[256];
    size_t n = unhex(hex, frame, sizeof frame);
    size_t consumed = 0;
    CHECK_CODE(tessera_agent_handle_input(a, now, frame, n, &consumed),
               TESSERA_OK);
    CHECK(consumed == n);
    return consumed;
}

/* Drains transmits; returns the message type of the last frame (or 0). */
static int drain_transmit(tessera_agent *a, uint64_t now, int *frames) {
    static uint8_t buf[TESSERA_MAX_FRAME];
    size_t n = 0;
    int last = 0;
    tessera_result r;
    while ((r = tessera_agent_poll_transmit(a, now, buf, sizeof buf, &n)) ==
           TESSERA_OK) {
        CHECK(n >= 8 && buf[0] == 'T' && buf[1] == 'S');
        last = buf[3];
        if (frames) {
            (*frames)++;
        }
    }
    CHECK_CODE(r, TESSERA_NOTHING);
    return last;
}

static void test_session(void) {
    tessera_agent_config c = device_config();
    tessera_signer *key = NULL;
    tessera_signer *signer = NULL;
    tessera_signer_callbacks cb;
    struct element e;
    tessera_agent *a = NULL;
    tessera_event ev = {.size = sizeof(tessera_event)};
    tessera_job_info info = {.size = sizeof(tessera_job_info)};
    tessera_buffer_spec buffer;
    tessera_chain_state chain;
    tessera_stats stats = {.size = sizeof(tessera_stats)};
    tessera_usage usage;
    uint8_t buf[64];
    uint8_t key_id[16];
    char text[160];
    size_t n = 0;
    uint32_t state = 0;
    uint64_t deadline = 0;
    int frames = 0;
    uint64_t now = 1000000;

    CHECK_CODE(tessera_signer_from_seed(SEED, &key), TESSERA_OK);
    e.key = key;
    e.busy = 0;
    e.signatures = 0;
    cb.size = sizeof cb;
    cb.userdata = &e;
    cb.public_key = element_public_key;
    cb.sign = element_sign;
    CHECK_CODE(tessera_signer_from_callbacks(&cb, &signer), TESSERA_OK);
    chain.next_sequence = 1;
    memset(chain.prev_hash, 0, sizeof chain.prev_hash);
    CHECK_CODE(tessera_agent_new(&c, signer, &chain, NULL, 0, &a), TESSERA_OK);
    /* `signer` now belongs to the agent. */

    CHECK_CODE(tessera_agent_state(a, &state), TESSERA_OK);
    CHECK(state == TESSERA_CONN_DISCONNECTED);
    CHECK_CODE(tessera_agent_state(a, NULL), TESSERA_NULL_ARGUMENT);
    CHECK_CODE(tessera_agent_state(NULL, &state), TESSERA_NULL_ARGUMENT);
    CHECK_CODE(tessera_agent_key_id(a, key_id), TESSERA_OK);
    CHECK_CODE(tessera_agent_key_id(a, NULL), TESSERA_NULL_ARGUMENT);

    /* Calls in the wrong order. */
    CHECK_CODE(tessera_agent_handle_input(a, now, buf, 1, &n),
               TESSERA_NOT_CONNECTED);
    CHECK(n == 0);
    CHECK_CODE(tessera_agent_poll_event(a, &ev), TESSERA_NOTHING);
    CHECK_CODE(tessera_agent_poll_transmit(a, now, buf, sizeof buf, &n),
               TESSERA_NOTHING);
    CHECK_CODE(tessera_agent_read_input(a, 1, buf, sizeof buf, &n),
               TESSERA_NO_INPUT);
    CHECK_CODE(tessera_agent_job_info(a, 1, &info), TESSERA_UNKNOWN_JOB);
    memset(&usage, 0, sizeof usage);
    CHECK_CODE(tessera_agent_finish_job(a, now, 1, &usage),
               TESSERA_UNKNOWN_JOB);
    CHECK_CODE(tessera_agent_last_error(a, text, sizeof text, &n), TESSERA_OK);
    CHECK(strstr(text, "job 1") != NULL);
    /* No room: the length the whole text needs, NUL included. */
    {
        size_t need = 0;
        CHECK_CODE(tessera_agent_last_error(a, text, 0, &need),
                   TESSERA_BUFFER_TOO_SMALL);
        CHECK(need == n + 1);
        need = 0;
        CHECK_CODE(tessera_agent_last_error(a, NULL, 0, &need),
                   TESSERA_BUFFER_TOO_SMALL);
        CHECK(need == n + 1);
    }
    CHECK_CODE(tessera_agent_last_error(a, NULL, 10, &n),
               TESSERA_NULL_ARGUMENT);
    CHECK_CODE(tessera_agent_confirm_persisted(a, now, 1), TESSERA_UNKNOWN_JOB);
    CHECK_CODE(tessera_agent_result_record(a, 1, buf, sizeof buf, &n),
               TESSERA_UNKNOWN_JOB);
    CHECK_CODE(tessera_agent_restore_result(a, buf, 0), TESSERA_INVALID_ARGUMENT);
    CHECK_CODE(tessera_agent_restore_result(a, NULL, 5), TESSERA_NULL_ARGUMENT);

    /* Hello. A zero-length transmit buffer is too small. */
    CHECK_CODE(tessera_agent_connect(a, now), TESSERA_OK);
    CHECK_CODE(tessera_agent_connect(a, now), TESSERA_ALREADY_CONNECTED);
    CHECK_CODE(tessera_agent_connect(NULL, now), TESSERA_NULL_ARGUMENT);
    CHECK_CODE(tessera_agent_poll_transmit(a, now, buf, 0, &n),
               TESSERA_BUFFER_TOO_SMALL);
    CHECK_CODE(tessera_agent_poll_transmit(a, now, NULL, 10, &n),
               TESSERA_NULL_ARGUMENT);
    CHECK_CODE(tessera_agent_poll_transmit(a, now, buf, sizeof buf, NULL),
               TESSERA_NULL_ARGUMENT);
    CHECK(drain_transmit(a, now, &frames) == 1); /* Hello */

    /* Welcome: the element signs the evidence. */
    CHECK_CODE(tessera_agent_handle_input(a, now, NULL, 3, &n),
               TESSERA_NULL_ARGUMENT);
    CHECK_CODE(tessera_agent_handle_input(a, now, NULL, 0, &n), TESSERA_OK);
    CHECK(n == 0);
    feed(a, now, WELCOME);
    CHECK(e.signatures == 1);
    CHECK(drain_transmit(a, now, NULL) == 3); /* Evidence */
    feed(a, now, READY);
    CHECK_CODE(tessera_agent_poll_event(a, NULL), TESSERA_NULL_ARGUMENT);
    /* An event struct whose size was not set: refused, the event kept. */
    ev.size = 0;
    CHECK_CODE(tessera_agent_poll_event(a, &ev), TESSERA_INVALID_ARGUMENT);
    ev.size = sizeof ev;
    CHECK_CODE(tessera_agent_poll_event(a, &ev), TESSERA_OK);
    CHECK(ev.kind == TESSERA_EVENT_READY);
    CHECK_CODE(tessera_agent_poll_event(a, &ev), TESSERA_NOTHING);
    CHECK_CODE(tessera_agent_state(a, &state), TESSERA_OK);
    CHECK(state == TESSERA_CONN_READY);

    /* An offer the policy takes: the job is held, not yet assigned. */
    feed(a, now, JOB_OFFER);
    CHECK(drain_transmit(a, now, NULL) == 0x11); /* OfferAccept */
    CHECK_CODE(tessera_agent_job_info(a, 1, &info), TESSERA_OK);
    CHECK(info.state == TESSERA_JOB_ACCEPTED && !info.assigned);
    CHECK(info.has_deadline && info.deadline_us == now + 30000000u);
    CHECK_CODE(tessera_agent_job_info(a, 1, NULL), TESSERA_NULL_ARGUMENT);
    info.size = 0;
    CHECK_CODE(tessera_agent_job_info(a, 1, &info), TESSERA_INVALID_ARGUMENT);
    info.size = sizeof info;
    CHECK_CODE(tessera_agent_job_buffer(a, 1, 0, &buffer),
               TESSERA_INVALID_JOB_STATE);
    CHECK_CODE(tessera_agent_job_entry_point(a, 1, text, sizeof text, &n),
               TESSERA_INVALID_JOB_STATE);
    CHECK_CODE(tessera_agent_job_push_constants(a, 1, buf, sizeof buf, &n),
               TESSERA_INVALID_JOB_STATE);
    {
        uint32_t id, value;
        CHECK_CODE(tessera_agent_job_specialization(a, 1, 0, &id, &value),
                   TESSERA_INVALID_JOB_STATE);
        CHECK_CODE(tessera_agent_job_specialization(a, 1, 0, NULL, &value),
                   TESSERA_NULL_ARGUMENT);
    }
    CHECK_CODE(tessera_agent_finish_job(a, now, 1, &usage),
               TESSERA_INVALID_JOB_STATE);
    CHECK_CODE(tessera_agent_finish_job(a, now, 1, NULL), TESSERA_NULL_ARGUMENT);
    CHECK_CODE(tessera_agent_fail_job(a, now, 1, 0, 0, &usage),
               TESSERA_INVALID_ARGUMENT);
    CHECK_CODE(tessera_agent_fail_job(a, now, 1, 7, 0, &usage),
               TESSERA_INVALID_JOB_STATE);
    {
        uint8_t out[64];
        size_t taken = 99, written = 99;
        CHECK_CODE(tessera_agent_send_output(a, now, 1, 0, buf, 4, out,
                                             sizeof out, &taken, &written),
                   TESSERA_INVALID_JOB_STATE);
        CHECK(taken == 99 && written == 99); /* outputs only on success */
        CHECK_CODE(tessera_agent_send_output(a, now, 1, 300, buf, 4, out,
                                             sizeof out, &taken, &written),
                   TESSERA_INVALID_ARGUMENT);
        CHECK_CODE(tessera_agent_send_output(a, now, 1, 0, NULL, 4, out,
                                             sizeof out, &taken, &written),
                   TESSERA_NULL_ARGUMENT);
        CHECK_CODE(tessera_agent_send_output(a, now, 1, 0, buf, 4, NULL, 10,
                                             &taken, &written),
                   TESSERA_NULL_ARGUMENT);
    }
    CHECK_CODE(tessera_agent_report_progress(a, now, 1, 500),
               TESSERA_INVALID_JOB_STATE);
    CHECK_CODE(tessera_agent_report_progress(a, now, 1, 70000),
               TESSERA_INVALID_ARGUMENT);
    CHECK_CODE(tessera_agent_set_device_available(a, now, false), TESSERA_OK);
    CHECK_CODE(tessera_agent_set_device_available(a, now, true), TESSERA_OK);

    /* Timers. */
    CHECK_CODE(tessera_agent_poll_timeout(a, &deadline), TESSERA_OK);
    CHECK(deadline > now);
    CHECK_CODE(tessera_agent_poll_timeout(a, NULL), TESSERA_NULL_ARGUMENT);
    CHECK_CODE(tessera_agent_handle_timeout(a, now), TESSERA_OK);

    /* Bytes that are not Tessera end the session; the agent stays usable. */
    {
        uint8_t junk[8] = {'X', 'X', 1, 1, 0, 0, 0, 0};
        size_t consumed = 99;
        CHECK_CODE(tessera_agent_handle_input(a, now, junk, sizeof junk,
                                              &consumed),
                   TESSERA_PEER_BASE + 11);
        CHECK(consumed <= sizeof junk);
        CHECK_CODE(tessera_agent_last_error(a, text, sizeof text, &n),
                   TESSERA_OK);
        CHECK(n > 0);
    }
    drain_transmit(a, now, NULL);
    {
        int saw_disconnect = 0;
        while (tessera_agent_poll_event(a, &ev) == TESSERA_OK) {
            if (ev.kind == TESSERA_EVENT_DISCONNECT) {
                saw_disconnect = 1;
                CHECK(ev.reason == TESSERA_DISCONNECT_PROTOCOL_VIOLATION);
            }
        }
        CHECK(saw_disconnect);
    }
    CHECK_CODE(tessera_agent_disconnected(a, now), TESSERA_OK);
    CHECK_CODE(tessera_agent_connect(a, now + 1), TESSERA_OK);
    CHECK(drain_transmit(a, now + 1, NULL) == 1); /* Hello again */

    /* A busy element: the evidence cannot be signed now. */
    e.busy = 1;
    {
        uint8_t frame[128];
        size_t len = unhex(WELCOME, frame, sizeof frame);
        size_t consumed = 0;
        CHECK_CODE(tessera_agent_handle_input(a, now + 2, frame, len,
                                              &consumed),
                   TESSERA_SIGNER_UNAVAILABLE);
    }
    e.busy = 0;
    drain_transmit(a, now + 2, NULL);
    while (tessera_agent_poll_event(a, &ev) == TESSERA_OK) {
    }

    CHECK_CODE(tessera_agent_chain(a, &chain), TESSERA_OK);
    CHECK(chain.next_sequence == 1);
    CHECK_CODE(tessera_agent_chain(a, NULL), TESSERA_NULL_ARGUMENT);
    CHECK_CODE(tessera_agent_stats(a, &stats), TESSERA_OK);
    CHECK(stats.offers_accepted == 1);
    CHECK(stats.frames_refused >= 1);
    CHECK_CODE(tessera_agent_stats(a, NULL), TESSERA_NULL_ARGUMENT);
    stats.size = 4;
    CHECK_CODE(tessera_agent_stats(a, &stats), TESSERA_INVALID_ARGUMENT);
    stats.size = sizeof stats;

    /* Drain, then calls after the drain. */
    CHECK_CODE(tessera_agent_disconnected(a, now + 3), TESSERA_OK);
    while (tessera_agent_poll_event(a, &ev) == TESSERA_OK) {
    }
    CHECK_CODE(tessera_agent_drain(a, now + 3), TESSERA_OK);
    drain_transmit(a, now + 3, NULL);
    while (tessera_agent_poll_event(a, &ev) == TESSERA_OK) {
    }
    CHECK_CODE(tessera_agent_handle_timeout(a, now + 4), TESSERA_OK);

    tessera_agent_free(a);
    tessera_agent_free(NULL);
    tessera_signer_free(key);
}

/* A secure element whose driver calls back into the agent that holds it,
 * and into its own signer, while it signs: each such call is refused with
 * TESSERA_IN_USE (no second reference to the agent is ever made), and the
 * agent goes on as if nothing happened. */
struct reentrant {
    tessera_signer *key;
    tessera_signer *self;
    tessera_agent *agent;
    int calls;
    tessera_result state, poll, connect, free_self, own_key, own_sign;
};

static tessera_result reentrant_public_key(void *userdata, uint8_t *out) {
    struct reentrant *r = (struct reentrant *)userdata;
    return tessera_signer_public_key(r->key, out);
}

static tessera_result reentrant_sign(void *userdata, const uint8_t *msg,
                                     size_t len, uint8_t *sig) {
    struct reentrant *r = (struct reentrant *)userdata;
    uint32_t state = 0;
    tessera_event ev = {.size = sizeof(tessera_event)};
    r->calls++;
    if (r->agent) {
        r->state = tessera_agent_state(r->agent, &state);
        r->poll = tessera_agent_poll_event(r->agent, &ev);
        r->connect = tessera_agent_connect(r->agent, 5);
        /* Not done: freed during its own call (ignored when detected). */
        tessera_agent_free(r->agent);
    }
    if (r->self) {
        uint8_t pk[32], inner[64];
        r->own_key = tessera_signer_public_key(r->self, pk);
        r->own_sign = tessera_signer_sign(r->self, msg, len, inner);
    }
    return tessera_signer_sign(r->key, msg, len, sig);
}

static void test_reentry(void) {
    tessera_agent_config c = device_config();
    tessera_signer_callbacks cb;
    tessera_signer *signer = NULL;
    tessera_agent *a = NULL;
    struct reentrant r;
    uint8_t sig[64];
    uint32_t state = 0;

    memset(&r, 0, sizeof r);
    r.key = new_signer();
    cb.size = sizeof cb;
    cb.userdata = &r;
    cb.public_key = reentrant_public_key;
    cb.sign = reentrant_sign;

    /* A signer of its own. */
    CHECK_CODE(tessera_signer_from_callbacks(&cb, &signer), TESSERA_OK);
    r.self = signer;
    CHECK_CODE(tessera_signer_sign(signer, (const uint8_t *)"m", 1, sig),
               TESSERA_OK);
    CHECK(r.calls == 1);
    CHECK_CODE(r.own_key, TESSERA_IN_USE);
    CHECK_CODE(r.own_sign, TESSERA_IN_USE);
    r.self = NULL;

    /* Given to an agent, which signs its evidence on Welcome. */
    CHECK_CODE(tessera_agent_new(&c, signer, NULL, NULL, 0, &a), TESSERA_OK);
    r.agent = a;
    CHECK_CODE(tessera_agent_connect(a, 1), TESSERA_OK);
    CHECK(drain_transmit(a, 1, NULL) == 1); /* Hello */
    feed(a, 2, WELCOME);
    CHECK(r.calls == 2);
    CHECK_CODE(r.state, TESSERA_IN_USE);
    CHECK_CODE(r.poll, TESSERA_IN_USE);
    CHECK_CODE(r.connect, TESSERA_IN_USE);
    r.agent = NULL;
    CHECK(drain_transmit(a, 2, NULL) == 3); /* Evidence */
    feed(a, 3, READY);
    CHECK_CODE(tessera_agent_state(a, &state), TESSERA_OK);
    CHECK(state == TESSERA_CONN_READY);
    tessera_agent_free(a);
    tessera_signer_free(r.key);
}

/* ----- a job's data: input pieces, output frames ----------------------- */

/* A coordinator's frame, encoded as docs/PROTOCOL.md says ("Encoding"):
 * "TS", version 1, type, body length (u32 little-endian), body. */
struct frame {
    uint8_t bytes[TESSERA_MAX_FRAME];
    size_t len;
};

static void frame_start(struct frame *f, uint8_t type) {
    f->bytes[0] = 'T';
    f->bytes[1] = 'S';
    f->bytes[2] = 1;
    f->bytes[3] = type;
    f->len = 8;
}

static void put_raw(struct frame *f, const uint8_t *p, size_t n) {
    if (n > sizeof f->bytes - f->len) {
        abort();
    }
    memcpy(f->bytes + f->len, p, n);
    f->len += n;
}

static void put_varint(struct frame *f, uint64_t v) {
    while (v >= 0x80) {
        uint8_t b = (uint8_t)(v | 0x80);
        put_raw(f, &b, 1);
        v >>= 7;
    }
    {
        uint8_t b = (uint8_t)v;
        put_raw(f, &b, 1);
    }
}

static void put_blob(struct frame *f, const uint8_t *p, size_t n) {
    put_varint(f, n);
    put_raw(f, p, n);
}

/* Writes the body's length into the header. */
static void frame_end(struct frame *f) {
    size_t body = f->len - 8;
    int i;
    for (i = 0; i < 4; i++) {
        f->bytes[4 + i] = (uint8_t)(body >> (8 * i));
    }
}

/* JobOffer (wire.json "job_offer" for another job): 512 MiB, features 33,
 * 250 ms, 1 MiB in, 64 KiB out, price at most 10000, 30 s. */
static void job_offer(struct frame *f, uint64_t job) {
    frame_start(f, 0x10);
    put_varint(f, job);
    put_varint(f, 512);
    put_varint(f, 33);
    put_varint(f, 250);
    put_varint(f, 1048576);
    put_varint(f, 65536);
    put_varint(f, 10000);
    put_varint(f, 30000);
    frame_end(f);
}

/* The job of test_job_data: a 128-byte "kernel" (the agent does not look
 * inside), buffer 0 (binding 0) of one whole chunk and 100 bytes more of
 * input, buffer 1 (binding 1) of two whole chunks and 10 bytes more of
 * output. */
enum {
    KERNEL_LEN = 128,
    INPUT_LEN = TESSERA_CHUNK_SIZE + 100,
    OUTPUT_LEN = 2 * TESSERA_CHUNK_SIZE + 10,
};
static uint8_t kernel[KERNEL_LEN];
static uint8_t input[INPUT_LEN];
static uint8_t output[OUTPUT_LEN];

static void job_assign(struct frame *f, uint64_t job) {
    static const uint8_t nonce[32] = {0x42};
    uint8_t root[32];
    frame_start(f, 0x13);
    put_varint(f, job);
    put_raw(f, nonce, sizeof nonce);
    put_varint(f, KERNEL_LEN);
    CHECK_CODE(tessera_merkle_root(kernel, KERNEL_LEN, root), TESSERA_OK);
    put_raw(f, root, sizeof root);
    put_blob(f, (const uint8_t *)"main", 4);
    put_varint(f, 0); /* no specialization */
    put_varint(f, 0); /* no push constants */
    put_varint(f, 1); /* grid */
    put_varint(f, 1);
    put_varint(f, 1);
    put_varint(f, 2); /* buffers: binding, len, init_len, readback */
    put_varint(f, 0);
    put_varint(f, INPUT_LEN);
    put_varint(f, INPUT_LEN);
    put_varint(f, 0);
    put_varint(f, 1);
    put_varint(f, OUTPUT_LEN);
    put_varint(f, 0);
    put_varint(f, 1);
    CHECK_CODE(tessera_merkle_root(input, INPUT_LEN, root), TESSERA_OK);
    put_raw(f, root, sizeof root);
    frame_end(f);
}

static void input_chunk(struct frame *f, uint64_t job, uint8_t stream,
                        uint32_t index, const uint8_t *data, size_t len) {
    uint8_t digest[32];
    CHECK_CODE(tessera_merkle_leaf_hash(data, len, digest), TESSERA_OK);
    frame_start(f, 0x14);
    put_varint(f, job);
    put_raw(f, &stream, 1);
    put_varint(f, index);
    put_raw(f, digest, sizeof digest);
    put_blob(f, data, len);
    frame_end(f);
}

/* What the host made of one stream's JobData pieces, and the other events. */
struct received {
    uint8_t *dst;
    size_t cap;
    size_t next; /* the offset the next piece must have */
    int pieces;
    int assigned;
    int run;
    int cancelled;
    uint32_t cancel_reason;
};

/* Feeds a frame the way a host does: after each handle_input it reads every
 * event (copying each JobData piece of `job` where its offset says) before
 * it passes the bytes not taken yet. */
static void deliver(tessera_agent *a, uint64_t now, const struct frame *f,
                    uint64_t job, struct received *r) {
    size_t at = 0;
    int rounds = 0;
    do {
        size_t consumed = 0;
        tessera_event ev = {.size = sizeof(tessera_event)};
        CHECK_CODE(tessera_agent_handle_input(a, now, f->bytes + at,
                                              f->len - at, &consumed),
                   TESSERA_OK);
        at += consumed;
        if (++rounds > 64) {
            CHECK(!"the agent stopped taking input");
            return;
        }
        while (tessera_agent_poll_event(a, &ev) == TESSERA_OK) {
            CHECK(ev.job == job);
            if (ev.kind == TESSERA_EVENT_JOB_DATA) {
                size_t n = 0;
                CHECK(ev.len > 0 && ev.len <= TESSERA_MAX_INPUT_PIECE);
                CHECK(ev.offset == r->next && ev.offset + ev.len <= r->cap);
                if (ev.offset != r->next || ev.offset + ev.len > r->cap) {
                    return;
                }
                if (ev.len > 1) {
                    uint8_t small[1];
                    size_t need = 0;
                    CHECK_CODE(tessera_agent_read_input(a, job, small,
                                                        sizeof small, &need),
                               TESSERA_BUFFER_TOO_SMALL);
                    CHECK(need == ev.len);
                }
                CHECK_CODE(tessera_agent_read_input(a, job, r->dst + ev.offset,
                                                    r->cap - (size_t)ev.offset,
                                                    &n),
                           TESSERA_OK);
                CHECK(n == ev.len);
                r->next += n;
                r->pieces++;
            } else if (ev.kind == TESSERA_EVENT_JOB_ASSIGNED) {
                r->assigned++;
            } else if (ev.kind == TESSERA_EVENT_RUN_JOB) {
                r->run++;
            } else if (ev.kind == TESSERA_EVENT_CANCEL_JOB) {
                r->cancelled++;
                r->cancel_reason = ev.reason;
            } else {
                CHECK(!"an event of another kind");
            }
        }
    } while (at < f->len);
}

static uint64_t read_varint(const uint8_t *b, size_t end, size_t *at) {
    uint64_t v = 0;
    int shift;
    for (shift = 0; *at < end && shift < 64; shift += 7) {
        uint8_t x = b[(*at)++];
        v |= (uint64_t)(x & 0x7F) << shift;
        if (!(x & 0x80)) {
            break;
        }
    }
    return v;
}

/* What the agent wrote into a send_output buffer: whole frames, the data of
 * each OutputChunk (its digest checked) appended to `got`. */
struct sent_frames {
    uint8_t *got;
    size_t cap;
    size_t len;
    int chunks;
    int progress;
    int receipts;
};

static void read_sent(const uint8_t *out, size_t written, struct sent_frames *s) {
    size_t at = 0;
    while (written - at >= 8) {
        size_t body = (size_t)out[at + 4] | (size_t)out[at + 5] << 8 |
                      (size_t)out[at + 6] << 16 | (size_t)out[at + 7] << 24;
        size_t end = at + 8 + body;
        CHECK(out[at] == 'T' && out[at + 1] == 'S' && end <= written);
        if (end > written) {
            return;
        }
        if (out[at + 3] == 0x17) { /* OutputChunk */
            size_t p = at + 8;
            size_t sent_digest;
            uint64_t len;
            uint8_t digest[32];
            read_varint(out, end, &p); /* job */
            p++;                       /* stream */
            read_varint(out, end, &p); /* index */
            sent_digest = p;
            p += 32;
            len = read_varint(out, end, &p);
            CHECK(p + len == end && s->len + len <= s->cap);
            if (p + len != end || s->len + len > s->cap) {
                return;
            }
            CHECK_CODE(tessera_merkle_leaf_hash(out + p, (size_t)len, digest),
                       TESSERA_OK);
            CHECK(memcmp(digest, out + sent_digest, 32) == 0);
            memcpy(s->got + s->len, out + p, (size_t)len);
            s->len += (size_t)len;
            s->chunks++;
        } else if (out[at + 3] == 0x16) { /* Progress */
            s->progress++;
        } else if (out[at + 3] == 0x1B) { /* Receipt */
            s->receipts++;
        }
        at = end;
    }
    CHECK(at == written);
}

static tessera_agent *ready_agent(uint64_t now) {
    tessera_agent_config c = device_config();
    tessera_agent *a = NULL;
    tessera_event ev = {.size = sizeof(tessera_event)};
    CHECK_CODE(tessera_agent_new(&c, new_signer(), NULL, NULL, 0, &a),
               TESSERA_OK);
    CHECK_CODE(tessera_agent_connect(a, now), TESSERA_OK);
    CHECK(drain_transmit(a, now, NULL) == 1); /* Hello */
    feed(a, now, WELCOME);
    CHECK(drain_transmit(a, now, NULL) == 3); /* Evidence */
    feed(a, now, READY);
    CHECK_CODE(tessera_agent_poll_event(a, &ev), TESSERA_OK);
    CHECK(ev.kind == TESSERA_EVENT_READY);
    return a;
}

/* A job whose input chunk of 8 KiB reaches the host in several JobData
 * pieces of at most TESSERA_MAX_INPUT_PIECE bytes, whose outputs the agent
 * writes into the host's buffer (refused when that buffer can never hold a
 * chunk's frame; nothing taken while queued frames leave no room for it);
 * then a job whose chunk fails its digest, cancelled instead of its last
 * piece. */
static void test_job_data(void) {
    static uint8_t kernel_got[KERNEL_LEN], input_got[INPUT_LEN];
    static uint8_t output_got[OUTPUT_LEN];
    static uint8_t out[TESSERA_TRANSMIT_BUFFER];
    static struct frame f;
    /* The frame of a whole output chunk: header, job, stream, index (one
     * byte each here), digest, data length (two bytes), data. */
    const size_t chunk_frame = 8 + 3 + 32 + 2 + TESSERA_CHUNK_SIZE;
    const uint64_t now = 2000000;
    struct received k, in;
    struct sent_frames sent;
    tessera_usage usage;
    tessera_job_info info = {.size = sizeof(tessera_job_info)};
    tessera_agent *a = ready_agent(now);
    size_t i, off, taken = 0, written = 0;
    tessera_result r;

    for (i = 0; i < KERNEL_LEN; i++) {
        kernel[i] = (uint8_t)(i * 7);
    }
    for (i = 0; i < INPUT_LEN; i++) {
        input[i] = (uint8_t)(i * 31 + 7);
    }
    for (i = 0; i < OUTPUT_LEN; i++) {
        output[i] = (uint8_t)(i * 13 + 1);
    }
    feed(a, now, JOB_OFFER); /* job 1 */
    CHECK(drain_transmit(a, now, NULL) == 0x11);
    job_assign(&f, 1);
    memset(&k, 0, sizeof k);
    deliver(a, now, &f, 1, &k);
    CHECK(k.assigned == 1);
    memset(&k, 0, sizeof k);
    CHECK_CODE(tessera_agent_job_info(a, 1, &info), TESSERA_OK);
    CHECK(info.state == TESSERA_JOB_RECEIVING);

    /* The kernel: one piece. Buffer 0's first chunk: several, in order,
     * each read before the next input; its last chunk: one. */
    k.dst = kernel_got;
    k.cap = sizeof kernel_got;
    input_chunk(&f, 1, 0, 0, kernel, KERNEL_LEN);
    deliver(a, now, &f, 1, &k);
    CHECK(k.pieces == 1 && k.next == KERNEL_LEN && !k.run && !k.cancelled);
    CHECK(memcmp(kernel_got, kernel, KERNEL_LEN) == 0);
    memset(&in, 0, sizeof in);
    in.dst = input_got;
    in.cap = sizeof input_got;
    input_chunk(&f, 1, 1, 0, input, TESSERA_CHUNK_SIZE);
    deliver(a, now, &f, 1, &in);
    CHECK(in.pieces >= TESSERA_CHUNK_SIZE / TESSERA_MAX_INPUT_PIECE);
    CHECK(in.next == TESSERA_CHUNK_SIZE && !in.run && !in.cancelled);
    input_chunk(&f, 1, 1, 1, input + TESSERA_CHUNK_SIZE,
                INPUT_LEN - TESSERA_CHUNK_SIZE);
    deliver(a, now, &f, 1, &in);
    CHECK(in.next == INPUT_LEN && in.run == 1 && !in.cancelled);
    CHECK(memcmp(input_got, input, INPUT_LEN) == 0);
    CHECK(drain_transmit(a, now, NULL) == 0x15); /* Started */

    /* The outputs, into a buffer with room for one chunk's frame. A
     * Progress frame is queued: it goes first, and nothing is taken; once
     * that is sent, the next call takes the chunk. */
    memset(&sent, 0, sizeof sent);
    sent.got = output_got;
    sent.cap = sizeof output_got;
    CHECK_CODE(tessera_agent_report_progress(a, now, 1, 500), TESSERA_OK);
    CHECK_CODE(tessera_agent_send_output(a, now, 1, 1, output, OUTPUT_LEN, out,
                                         chunk_frame, &taken, &written),
               TESSERA_OK);
    CHECK(taken == 0 && written > 0 && written < chunk_frame);
    read_sent(out, written, &sent);
    CHECK(sent.progress == 1 && sent.chunks == 0);
    CHECK_CODE(tessera_agent_send_output(a, now, 1, 1, output, OUTPUT_LEN, out,
                                         chunk_frame, &taken, &written),
               TESSERA_OK);
    CHECK(taken == TESSERA_CHUNK_SIZE && written == chunk_frame);
    read_sent(out, written, &sent);
    CHECK(sent.chunks == 1);
    /* A buffer that can never hold the next chunk's frame: refused, nothing
     * taken, and `written` is the length that takes the chunk. */
    off = taken;
    taken = written = 99;
    CHECK_CODE(tessera_agent_send_output(a, now, 1, 1, output + off,
                                         OUTPUT_LEN - off, out, 100, &taken,
                                         &written),
               TESSERA_BUFFER_TOO_SMALL);
    CHECK(taken == 0 && written == chunk_frame);
    taken = off;
    /* With TESSERA_TRANSMIT_BUFFER bytes every call takes a chunk. */
    for (off = taken; off < OUTPUT_LEN; off += taken) {
        r = tessera_agent_send_output(a, now, 1, 1, output + off,
                                      OUTPUT_LEN - off, out, sizeof out,
                                      &taken, &written);
        CHECK_CODE(r, TESSERA_OK);
        CHECK(taken > 0);
        if (r != TESSERA_OK || taken == 0) {
            break;
        }
        read_sent(out, written, &sent);
    }
    CHECK(sent.chunks == 3 && sent.len == OUTPUT_LEN);
    CHECK(memcmp(output_got, output, OUTPUT_LEN) == 0);
    CHECK(drain_transmit(a, now, NULL) == 0); /* all of it went out above */
    CHECK_CODE(tessera_agent_job_info(a, 1, &info), TESSERA_OK);
    CHECK(info.state == TESSERA_JOB_UPLOADING);
    memset(&usage, 0, sizeof usage);
    usage.gpu_time_us = 1000;
    CHECK_CODE(tessera_agent_finish_job(a, now, 1, &usage), TESSERA_OK);
    /* Completed, UsageReport, Receipt: the queue holds them all, and a
     * transmit buffer of TESSERA_MAX_FRAME bytes takes it whole. */
    CHECK_CODE(tessera_agent_poll_transmit(a, now, out, TESSERA_MAX_FRAME,
                                           &written),
               TESSERA_OK);
    read_sent(out, written, &sent);
    CHECK(sent.receipts == 1);
    CHECK(drain_transmit(a, now, NULL) == 0);
    frame_start(&f, 0x1C); /* ResultAck */
    put_varint(&f, 1);
    frame_end(&f);
    {
        tessera_event ev = {.size = sizeof(tessera_event)};
        size_t consumed = 0;
        CHECK_CODE(tessera_agent_handle_input(a, now, f.bytes, f.len, &consumed),
                   TESSERA_OK);
        CHECK(consumed == f.len);
        CHECK_CODE(tessera_agent_poll_event(a, &ev), TESSERA_OK);
        CHECK(ev.kind == TESSERA_EVENT_RESULT_ACKNOWLEDGED && ev.job == 1);
    }

    /* Job 2: buffer 0's first chunk does not match its digest. The pieces
     * before its last arrive; then the job is cancelled. */
    job_offer(&f, 2);
    memset(&k, 0, sizeof k);
    deliver(a, now, &f, 2, &k);
    CHECK(drain_transmit(a, now, NULL) == 0x11); /* OfferAccept */
    job_assign(&f, 2);
    deliver(a, now, &f, 2, &k);
    CHECK(k.assigned == 1);
    memset(&k, 0, sizeof k);
    k.dst = kernel_got;
    k.cap = sizeof kernel_got;
    input_chunk(&f, 2, 0, 0, kernel, KERNEL_LEN);
    deliver(a, now, &f, 2, &k);
    memset(&in, 0, sizeof in);
    in.dst = input_got;
    in.cap = sizeof input_got;
    input_chunk(&f, 2, 1, 0, input, TESSERA_CHUNK_SIZE);
    f.bytes[f.len - 1] ^= 1;
    deliver(a, now, &f, 2, &in);
    CHECK(in.cancelled == 1 && in.cancel_reason == TESSERA_CANCEL_INPUT_INTEGRITY);
    CHECK(!in.run && in.pieces >= 1 && in.next < TESSERA_CHUNK_SIZE);
    drain_transmit(a, now, NULL);
    tessera_agent_free(a);
}

/* The bare-metal way: signer and agent in memory the program gives,
 * deliberately misaligned by one byte (the footprint covers it). */
static void test_in_place(void) {
    static unsigned char signer_mem[1024];
    static unsigned char agent_mem[128 * 1024];
    tessera_agent_config c = device_config();
    tessera_signer *s = NULL;
    tessera_agent *a = NULL;
    uint32_t state = 0;
    size_t need_signer = tessera_signer_footprint();
    size_t need_agent = tessera_agent_footprint();

    /* The header and the library agree on the job slots. */
    CHECK(tessera_max_jobs() == TESSERA_MAX_JOBS);
    CHECK(need_signer > 0 && need_signer + 1 <= sizeof signer_mem);
    /* It holds at least its input buffer (one JobData piece). */
    CHECK(need_agent > TESSERA_MAX_INPUT_PIECE &&
          need_agent + 1 <= sizeof agent_mem);
    CHECK_CODE(tessera_signer_init_from_seed(signer_mem + 1, 8, SEED, &s),
               TESSERA_BUFFER_TOO_SMALL);
    CHECK_CODE(tessera_signer_init_from_seed(NULL, need_signer, SEED, &s),
               TESSERA_NULL_ARGUMENT);
    CHECK_CODE(tessera_signer_init_from_seed(signer_mem + 1, need_signer,
                                             SEED, &s),
               TESSERA_OK);
    CHECK((unsigned char *)s >= signer_mem + 1 &&
          (unsigned char *)s < signer_mem + 1 + need_signer);
    /* Too little memory for the agent: the signer is taken all the same. */
    CHECK_CODE(tessera_agent_init(agent_mem + 1, 100, &c, s, NULL, NULL, 0,
                                  &a),
               TESSERA_BUFFER_TOO_SMALL);
    /* A refused configuration is reported as such, with its words, before
     * the memory is looked at or written: here the memory would be one
     * byte short once aligned (when agent_mem is aligned for an agent). */
    {
        tessera_agent_config bad = device_config();
        char why[160];
        size_t i, touched = 0;
        why[0] = '\0';
        bad.policy.max_concurrent = 0;
        memset(agent_mem, 0xA5, sizeof agent_mem);
        CHECK_CODE(tessera_signer_init_from_seed(signer_mem + 1, need_signer,
                                                 SEED, &s),
                   TESSERA_OK);
        CHECK_CODE(tessera_agent_init(agent_mem + 1, need_agent - 1, &bad, s,
                                      NULL, why, sizeof why, &a),
                   TESSERA_INVALID_CONFIG);
        CHECK(strstr(why, "policy.max_concurrent") != NULL);
        CHECK(a == NULL);
        for (i = 0; i < sizeof agent_mem; i++)
            touched += agent_mem[i] != 0xA5;
        CHECK(touched == 0);
    }
    CHECK_CODE(tessera_signer_init_from_seed(signer_mem + 1, need_signer,
                                             SEED, &s),
               TESSERA_OK);
    CHECK_CODE(tessera_agent_init(agent_mem + 1, need_agent, &c, s, NULL, NULL,
                                  0, &a),
               TESSERA_OK);
    CHECK((unsigned char *)a >= agent_mem + 1 &&
          (unsigned char *)a < agent_mem + 1 + need_agent);
    CHECK_CODE(tessera_agent_connect(a, 1), TESSERA_OK);
    CHECK_CODE(tessera_agent_state(a, &state), TESSERA_OK);
    CHECK(state == TESSERA_CONN_AWAITING_WELCOME);
    /* Freed in place: nothing goes back to the C heap (valgrind would
     * report a free of static memory). */
    tessera_agent_free(a);

    /* A callback signer in caller memory, in front of a built-in key that
     * lives on the heap (the secure element's stand-in). */
    {
        static unsigned char element_mem[1024];
        struct element e;
        tessera_signer_callbacks cb;
        tessera_signer *cs = NULL;
        uint8_t sig[64];
        e.key = NULL;
        e.busy = 0;
        e.signatures = 0;
        CHECK_CODE(tessera_signer_from_seed(SEED, &e.key), TESSERA_OK);
        memset(&cb, 0, sizeof cb);
        cb.size = sizeof cb;
        cb.userdata = &e;
        cb.public_key = element_public_key;
        cb.sign = element_sign;
        CHECK_CODE(tessera_signer_init_from_callbacks(element_mem, 4, &cb, &cs),
                   TESSERA_BUFFER_TOO_SMALL);
        CHECK_CODE(tessera_signer_init_from_callbacks(NULL, sizeof element_mem,
                                                      &cb, &cs),
                   TESSERA_NULL_ARGUMENT);
        CHECK_CODE(tessera_signer_init_from_callbacks(element_mem,
                                                      sizeof element_mem, NULL,
                                                      &cs),
                   TESSERA_NULL_ARGUMENT);
        cb.size = 0;
        CHECK_CODE(tessera_signer_init_from_callbacks(element_mem,
                                                      sizeof element_mem, &cb,
                                                      &cs),
                   TESSERA_INVALID_ARGUMENT);
        cb.size = sizeof cb;
        CHECK_CODE(tessera_signer_init_from_callbacks(element_mem,
                                                      sizeof element_mem, &cb,
                                                      &cs),
                   TESSERA_OK);
        CHECK_CODE(tessera_signer_sign(cs, (const uint8_t *)"m", 1, sig),
                   TESSERA_OK);
        CHECK(e.signatures == 1);
        tessera_signer_free(cs);
        tessera_signer_free(e.key);
    }
}

int main(void) {
    test_version_and_text();
    test_in_place();
    test_signers();
    test_config_errors();
    test_session();
    test_reentry();
    test_job_data();
    if (failures) {
        fprintf(stderr, "test_agent: %d checks failed\n", failures);
        return 1;
    }
    printf("test_agent: ok\n");
    return 0;
}
