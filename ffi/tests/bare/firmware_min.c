/*
 * A bare-metal RISC-V program (rv32imac, no C library, no allocator) that
 * links the sans-IO agent and both signers from libtessera.a, the way
 * firmware does: everything lives in static memory given to the _init
 * functions. ci/test builds and links it (never runs it):
 *
 *   - the link succeeds only if nothing it reaches allocates: the library's
 *     allocator calls tessera_no_alloc_violation, which exists nowhere;
 *   - its text size is the figure `size.libtessera_nostd_riscv32` of
 *     ci/bench (the agent and the signers through the C ABI, after the
 *     linker dropped what nothing calls).
 */
#define TESSERA_BARE_METAL 1
#include "tessera.h"

/* The firmware's fatal-error handler, which the library calls on a panic. */
void tessera_platform_abort(void) {
    for (;;) {
    }
}

static unsigned char agent_memory[64 * 1024] __attribute__((aligned(16)));
static unsigned char signer_memory[512] __attribute__((aligned(16)));
static unsigned char element_memory[512] __attribute__((aligned(16)));
static uint8_t frame[TESSERA_TRANSMIT_BUFFER];
static uint8_t piece[TESSERA_MAX_INPUT_PIECE];
static volatile uint64_t clock_us;
static volatile uint8_t wire[64];

static tessera_result element_public_key(void *userdata, uint8_t *out) {
    return tessera_signer_public_key((const tessera_signer *)userdata, out);
}

static tessera_result element_sign(void *userdata, const uint8_t *msg,
                                   size_t len, uint8_t *sig) {
    return tessera_signer_sign((tessera_signer *)userdata, msg, len, sig);
}

void _start(void) {
    static const uint8_t seed[32] = {7};
    tessera_signer *key = 0, *element = 0;
    tessera_signer_callbacks callbacks;
    tessera_agent_config config;
    tessera_agent *agent = 0;
    tessera_event event = {.size = sizeof(tessera_event)};
    tessera_chain_state chain;
    tessera_stats stats = {.size = sizeof(tessera_stats)};
    tessera_job_info info = {.size = sizeof(tessera_job_info)};
    tessera_buffer_spec buffer;
    tessera_usage usage = {0, 0, 0, 0};
    uint8_t key_id[16];
    uint32_t state, id, value;
    uint64_t due;
    size_t n = 0, taken = 0;
    char text[64];

    if (tessera_signer_footprint() > sizeof signer_memory ||
        tessera_agent_footprint() > sizeof agent_memory) {
        tessera_platform_abort();
    }
    tessera_signer_init_from_seed(signer_memory, sizeof signer_memory, seed,
                                  &key);
    callbacks.size = sizeof callbacks;
    callbacks.userdata = key;
    callbacks.public_key = element_public_key;
    callbacks.sign = element_sign;
    tessera_signer_init_from_callbacks(element_memory, sizeof element_memory,
                                       &callbacks, &element);
    tessera_agent_config_default(&config);
    tessera_agent_init(agent_memory, sizeof agent_memory, &config, element,
                       0, text, sizeof text, &agent);

    tessera_agent_connect(agent, clock_us);
    tessera_agent_handle_input(agent, clock_us, (const uint8_t *)wire,
                               sizeof wire, &n);
    while (tessera_agent_poll_transmit(agent, clock_us, frame, sizeof frame,
                                       &n) == TESSERA_OK) {
        wire[0] = frame[0];
    }
    while (tessera_agent_poll_event(agent, &event) == TESSERA_OK) {
        tessera_agent_job_info(agent, event.job, &info);
        tessera_agent_job_buffer(agent, event.job, 0, &buffer);
        tessera_agent_job_specialization(agent, event.job, 0, &id, &value);
        tessera_agent_job_push_constants(agent, event.job, frame, 64, &n);
        tessera_agent_job_entry_point(agent, event.job, text, sizeof text, &n);
        tessera_agent_read_input(agent, event.job, piece, sizeof piece, &n);
        tessera_agent_send_output(agent, clock_us, event.job, 0, piece, n,
                                  frame, sizeof frame, &taken, &n);
        tessera_agent_report_progress(agent, clock_us, event.job, 500);
        tessera_agent_finish_job(agent, clock_us, event.job, &usage);
        tessera_agent_fail_job(agent, clock_us, event.job, 7, 0, &usage);
        tessera_agent_confirm_persisted(agent, clock_us, event.job);
        tessera_agent_result_record(agent, event.job, frame, sizeof frame, &n);
        tessera_agent_restore_result(agent, frame, n);
    }
    if (tessera_agent_poll_timeout(agent, &due) == TESSERA_OK) {
        tessera_agent_handle_timeout(agent, due);
    }
    tessera_agent_set_device_available(agent, clock_us, 1);
    tessera_agent_state(agent, &state);
    tessera_agent_chain(agent, &chain);
    tessera_agent_stats(agent, &stats);
    tessera_agent_key_id(agent, key_id);
    tessera_agent_last_error(agent, text, sizeof text, &n);
    tessera_agent_drain(agent, clock_us);
    tessera_agent_disconnected(agent, clock_us);
    tessera_result_text(state, (uint8_t *)text, sizeof text, &n);
    tessera_agent_free(agent);
    tessera_signer_free(key);
    for (;;) {
    }
}
