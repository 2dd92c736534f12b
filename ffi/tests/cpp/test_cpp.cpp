/*
 * The C++ API (include/tessera.hpp): every class and free function, and
 * their errors as tessera::Error with the right code.
 *
 * - verification: the shared vectors (core/tests/vectors, through
 *   gen_vectors.py and vectors.c) through verify_receipt, verify_evidence,
 *   ChainVerifier, kernel_hash, result_hash, result_seal, merkle_root and
 *   the key functions, byte for byte what the vectors record;
 * - Agent: a session up to an accepted offer with frames from the shared
 *   wire vectors, and every call in the wrong order; then a whole job with
 *   frames encoded here (docs/PROTOCOL.md): an 8 KiB input chunk read in
 *   several pieces, outputs written into the host's buffer (nothing taken
 *   while queued frames fill it, a buffer too small refused), its receipt
 *   checked with the verification functions against what the host sent
 *   and received;
 * - Dispatcher: devices, a saxpy kernel checked element by element, a
 *   kernel the gate refuses, one stopped at its time limit (lavapipe in CI);
 * - Runtime: from the operator's TOML file, stepped from this program's loop
 *   with poll() on its descriptor, accepting jobs or not, a Remote on
 *   another thread, drained. No coordinator listens.
 *
 * ci/c-test builds it with g++ and with clang++ under AddressSanitizer and
 * UBSan, and runs it under valgrind; run it from the repository root.
 */
#include <poll.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <thread>
#include <vector>

#include "tessera.hpp"

#define TESSERA_VECTOR_TYPES_ONLY
#include "vectors.h"
#include "vectors_access.h"

namespace {

unsigned checks = 0;
unsigned failures = 0;

void fail_at(int line, const char *what, const std::string &name)
{
    failures++;
    std::fprintf(stderr, "test_cpp.cpp:%d: %s%s%s\n", line, name.c_str(), name.empty() ? "" : ": ",
                 what);
}

#define CHECK_NAMED(cond, name)                   \
    do {                                          \
        checks++;                                 \
        if (!(cond))                              \
            fail_at(__LINE__, #cond, (name));     \
    } while (0)

#define CHECK(cond) CHECK_NAMED(cond, std::string())

/* The code `f` throws as tessera::Error; 0 when it throws nothing, and
 * 0xFFFFFFFF for any other exception. */
template <class F>
std::uint32_t code_of(F &&f)
{
    try {
        f();
    } catch (const tessera::Error &e) {
        return e.code();
    } catch (...) {
        return 0xFFFFFFFFu;
    }
    return 0;
}

#define CHECK_CODE_NAMED(expr, want, name)                                                     \
    do {                                                                                       \
        const std::uint32_t got_ = code_of([&] { (void)(expr); });                             \
        const std::uint32_t want_ = (want);                                                    \
        checks++;                                                                              \
        if (got_ != want_) {                                                                   \
            failures++;                                                                        \
            std::fprintf(stderr, "test_cpp.cpp:%d: %s%s%s: got code %u (%s), want %u (%s)\n", \
                         __LINE__, std::string(name).c_str(),                                  \
                         std::string(name).empty() ? "" : ": ", #expr, got_,                   \
                         tessera::result_text(got_).c_str(), want_,                            \
                         tessera::result_text(want_).c_str());                                 \
        }                                                                                      \
    } while (0)

#define CHECK_CODE(expr, want) CHECK_CODE_NAMED(expr, want, std::string())

template <class A, class B>
bool same_bytes(const A &a, const B &b, std::size_t n)
{
    return std::memcmp(&a[0], &b[0], n) == 0;
}

/* The vectors' data generator: byte i is (i * 31 + 7) mod 251. */
std::vector<std::uint8_t> generated(std::size_t len)
{
    std::vector<std::uint8_t> data(len);
    for (std::size_t i = 0; i < len; i++)
        data[i] = static_cast<std::uint8_t>((i * 31 + 7) % 251);
    return data;
}

/* A job's time limit where it is meant to finish: under valgrind (which
 * ci/c-test marks with TESSERA_TEST_SLOW) compiling and running a kernel
 * through lavapipe's JIT takes many times longer, the more so on a loaded
 * machine. */
std::chrono::milliseconds finishing_timeout(std::chrono::milliseconds t)
{
    return getenv("TESSERA_TEST_SLOW") ? t * 12 : t;
}

std::vector<std::uint8_t> read_file(const char *path)
{
    std::ifstream f(path, std::ios::binary);
    return std::vector<std::uint8_t>(std::istreambuf_iterator<char>(f),
                                     std::istreambuf_iterator<char>());
}

std::vector<std::uint8_t> unhex(const char *hex)
{
    std::vector<std::uint8_t> out;
    for (std::size_t i = 0; hex[i] && hex[i + 1]; i += 2) {
        unsigned v = 0;
        if (std::sscanf(hex + i, "%2x", &v) != 1)
            std::abort();
        out.push_back(static_cast<std::uint8_t>(v));
    }
    return out;
}

template <class T>
tessera::view<const T> items(const T *p, std::size_t n)
{
    return tessera::view<const T>(p, n);
}

/* ----- errors, version, views ---------------------------------------------- */

void test_basics()
{
    CHECK(tessera::version() == TESSERA_VERSION_NUMBER);
    CHECK(tessera::version() == tessera_version());
    CHECK(tessera::result_text(TESSERA_VERIFY_BAD_SIGNATURE).find("bad_signature") !=
          std::string::npos);
    CHECK(tessera::result_text(77777).find("unknown code 77777") != std::string::npos);

    const tessera::Error e = tessera::Error::from_text("[402] the signature does not verify");
    CHECK(e.code() == 402);
    CHECK(e.message() == "the signature does not verify");
    CHECK(std::string(e.what()) == "[402] the signature does not verify");
    CHECK(tessera::Error::from_text("no code here").code() == tessera::code::panic);
    CHECK(tessera::Error::from_text("[99999999999] overflow").code() == tessera::code::panic);
    CHECK(tessera::Error::from_text("[12").code() == tessera::code::panic);
    CHECK(tessera::Error::from_text("[]").code() == tessera::code::panic);
    const tessera::InputError ie(1011, "bad magic", 8);
    CHECK(ie.consumed() == 8 && ie.code() == 1011);

    std::vector<std::uint8_t> v{1, 2, 3, 4};
    tessera::bytes_view bv(v);
    CHECK(bv.size() == 4 && bv[2] == 3 && !bv.empty());
    CHECK(bv.subview(1, 2).size() == 2 && bv.subview(1, 2)[0] == 2);
    CHECK(bv.subview(9).empty());
    tessera::mutable_bytes_view mv(v);
    mv[0] = 9;
    CHECK(v[0] == 9);
    const tessera::bytes_view from_mutable = mv;
    CHECK(from_mutable.size() == 4);
    std::uint8_t raw[3] = {0, 0, 0};
    CHECK(tessera::bytes_view(raw).size() == 3);
    const std::array<std::uint8_t, 2> arr{{7, 8}};
    CHECK(tessera::bytes_view(arr)[1] == 8);
    CHECK(tessera::bytes_view().empty());
}

/* ----- keys ------------------------------------------------------------------ */

void test_keys()
{
    std::size_t n = 0;
    const key_vector *keys = test_key_vectors(&n);
    CHECK(n > 0);
    for (std::size_t i = 0; i < n; i++) {
        const key_vector &k = keys[i];
        const tessera::PublicKey pk = tessera::seed_public_key(k.seed);
        CHECK_NAMED(same_bytes(pk, k.public_key, 32), k.name);
        CHECK_NAMED(same_bytes(tessera::key_id(k.public_key), k.key_id, 16), k.name);
    }
    const std::vector<std::uint8_t> pkcs8 = tessera::generate_key();
    CHECK(pkcs8.size() == TESSERA_KEY_PKCS8_LEN);
    const tessera::PublicKey pk = tessera::key_public(pkcs8);
    CHECK(pk != tessera::PublicKey{});
    CHECK(tessera::generate_key() != pkcs8);

    std::vector<std::uint8_t> junk(TESSERA_KEY_PKCS8_LEN, 0x55);
    CHECK_CODE(tessera::key_public(junk), tessera::code::key_rejected);
    CHECK_CODE(tessera::key_public(tessera::bytes_view()), tessera::code::key_rejected);
    CHECK_CODE(tessera::seed_public_key(tessera::bytes_view(junk.data(), 31)),
               tessera::code::invalid_argument);
    CHECK_CODE(tessera::key_id(tessera::bytes_view(junk.data(), 33)),
               tessera::code::invalid_argument);
}

/* ----- evidence ---------------------------------------------------------------- */

void check_evidence_info(const tessera::EvidenceInfo &got, const tessera_evidence_info &want,
                         const std::string &name)
{
    CHECK_NAMED(same_bytes(got.challenge, want.challenge, 32), name);
    CHECK_NAMED(same_bytes(got.public_key, want.public_key, 32), name);
    CHECK_NAMED(same_bytes(got.key_id, want.key_id, 16), name);
    CHECK_NAMED(got.agent_version[0] == want.agent_version[0] &&
                    got.agent_version[1] == want.agent_version[1] &&
                    got.agent_version[2] == want.agent_version[2],
                name);
    CHECK_NAMED(same_bytes(got.boot_id, want.boot_id, 16), name);
    CHECK_NAMED(got.issued_at == want.issued_at, name);
    CHECK_NAMED(got.chain.next_sequence == want.chain.next_sequence, name);
    CHECK_NAMED(same_bytes(got.chain.prev_hash, want.chain.prev_hash, 32), name);
    const tessera::DeviceInfo &d = got.device;
    const tessera_device_info &w = want.device;
    CHECK_NAMED(d.name == std::string(w.name), name);
    CHECK_NAMED(d.vendor_id == w.vendor_id && d.device_id == w.device_id &&
                    d.driver_version == w.driver_version && d.api_version == w.api_version,
                name);
    CHECK_NAMED(static_cast<std::uint32_t>(d.device_type) == w.device_type, name);
    CHECK_NAMED(d.features == w.features && d.device_local_bytes == w.device_local_bytes &&
                    d.host_visible_bytes == w.host_visible_bytes,
                name);
    CHECK_NAMED(same_bytes(d.max_workgroup_size, w.max_workgroup_size, 12) &&
                    same_bytes(d.max_workgroup_count, w.max_workgroup_count, 12),
                name);
    CHECK_NAMED(d.max_invocations == w.max_invocations &&
                    d.max_shared_memory == w.max_shared_memory &&
                    d.max_storage_buffer_range == w.max_storage_buffer_range &&
                    d.subgroup_size == w.subgroup_size && d.copy_mbps == w.copy_mbps &&
                    d.fma_mflops == w.fma_mflops,
                name);
    CHECK_NAMED(same_bytes(got.enc_key, want.enc_key, 32), name);
    CHECK_NAMED(got.hardware_report_kind == want.hardware_report_kind, name);
    CHECK_NAMED(same_bytes(got.hardware_report_hash, want.hardware_report_hash, 32), name);
}

void test_evidence()
{
    std::size_t n = 0;
    const evidence_vector *vectors = test_evidence_vectors(&n);
    CHECK(n > 0);
    for (std::size_t i = 0; i < n; i++) {
        const evidence_vector &v = vectors[i];
        const tessera::bytes_view bytes(v.bytes, v.len);
        CHECK_CODE_NAMED(tessera::verify_evidence(bytes, v.challenge), v.expect, v.name);
        if (v.expect == TESSERA_OK) {
            check_evidence_info(tessera::verify_evidence(bytes, v.challenge), v.info, v.name);
            check_evidence_info(tessera::open_evidence(bytes), v.info, v.name);
            CHECK_NAMED(same_bytes(tessera::evidence_hash(bytes), v.hash, 32), v.name);
        } else if (v.expect == TESSERA_VERIFY_WRONG_NONCE) {
            /* A third party without the challenge: form and signature hold. */
            CHECK_CODE_NAMED(tessera::open_evidence(bytes), TESSERA_OK, v.name);
        } else {
            CHECK_CODE_NAMED(tessera::open_evidence(bytes), v.expect, v.name);
        }
    }
    CHECK_CODE(tessera::verify_evidence(tessera::bytes_view(vectors[0].bytes, vectors[0].len),
                                        tessera::bytes_view(vectors[0].challenge, 31)),
               tessera::code::invalid_argument);
    CHECK_CODE(tessera::open_evidence(tessera::bytes_view()), tessera::code::verify_malformed);
}

/* ----- receipts ------------------------------------------------------------------ */

void check_receipt_info(const tessera::ReceiptInfo &got, const tessera_receipt_info &want,
                        const std::string &name)
{
    CHECK_NAMED(got.status == want.status && got.job == want.job, name);
    CHECK_NAMED(same_bytes(got.requester_nonce, want.requester_nonce, 32), name);
    CHECK_NAMED(same_bytes(got.kernel_hash, want.kernel_hash, 32), name);
    CHECK_NAMED(same_bytes(got.input_root, want.input_root, 32), name);
    CHECK_NAMED(same_bytes(got.output_root, want.output_root, 32), name);
    CHECK_NAMED(got.output_len == want.output_len, name);
    CHECK_NAMED(same_bytes(got.result_hash, want.result_hash, 32), name);
    CHECK_NAMED(same_bytes(got.result_seal, want.result_seal, 32), name);
    CHECK_NAMED(got.usage.gpu_time_us == want.usage.gpu_time_us &&
                    got.usage.dispatches == want.usage.dispatches &&
                    got.usage.bytes_in == want.usage.bytes_in &&
                    got.usage.bytes_out == want.usage.bytes_out,
                name);
    CHECK_NAMED(got.price == want.price && got.started_at == want.started_at &&
                    got.ended_at == want.ended_at,
                name);
    CHECK_NAMED(same_bytes(got.evidence_hash, want.evidence_hash, 32), name);
    CHECK_NAMED(same_bytes(got.key_id, want.key_id, 16), name);
    CHECK_NAMED(got.sequence == want.sequence, name);
    CHECK_NAMED(same_bytes(got.prev_hash, want.prev_hash, 32), name);
}

/* Whether a receipt failing with `code` still verifies alone: the chain and
 * nonce checks are the chain verifier's. */
bool signature_is_valid(std::uint32_t code)
{
    return code == TESSERA_OK || code == TESSERA_VERIFY_REPLAYED ||
           code == TESSERA_VERIFY_OUT_OF_ORDER || code == TESSERA_VERIFY_BROKEN_CHAIN ||
           code == TESSERA_VERIFY_WRONG_NONCE;
}

tessera::ChainState chain_of(const tessera_chain_state &c)
{
    tessera::ChainState s{c.next_sequence, {}};
    std::memcpy(s.prev_hash.data(), c.prev_hash, 32);
    return s;
}

/* What a valid receipt binds, recomputed from its job. */
void check_bindings(const receipt_vector &v, tessera::bytes_view evidence_a)
{
    const kernel_vector &k = v.kernel;
    const tessera_receipt_info &r = v.info;
    CHECK_NAMED(same_bytes(tessera::merkle_root(generated(k.spirv_len)), k.spirv_root, 32), v.name);

    std::vector<tessera::SpecConstant> spec;
    for (std::size_t i = 0; i < k.specialization_count; i++)
        spec.push_back(tessera::SpecConstant{k.specialization[2 * i], k.specialization[2 * i + 1]});
    std::vector<tessera::BufferSpec> buffers;
    for (std::size_t i = 0; i < k.buffer_count; i++)
        buffers.push_back(tessera::BufferSpec{k.buffers[i].binding, k.buffers[i].len,
                                              k.buffers[i].init_len, k.buffers[i].readback});
    const tessera::Digest kernel =
        tessera::kernel_hash(k.spirv_root, k.entry_point, spec,
                             tessera::bytes_view(k.push_constants, k.push_len),
                             {{k.grid[0], k.grid[1], k.grid[2]}}, buffers);
    CHECK_NAMED(same_bytes(kernel, r.kernel_hash, 32), v.name);

    CHECK_NAMED(same_bytes(tessera::result_hash(r.kernel_hash, r.input_root, r.output_root,
                                                r.output_len),
                           r.result_hash, 32),
                v.name);
    CHECK_NAMED(same_bytes(tessera::result_seal(v.public_key, r.job, r.result_hash),
                           r.result_seal, 32),
                v.name);
    CHECK_NAMED(same_bytes(tessera::evidence_hash(evidence_a), r.evidence_hash, 32), v.name);
    CHECK_NAMED(same_bytes(tessera::key_id(v.public_key), r.key_id, 16), v.name);
}

void test_receipts()
{
    std::size_t n = 0, ne = 0;
    const receipt_vector *vectors = test_receipt_vectors(&n);
    const evidence_vector *evidence = test_evidence_vectors(&ne);
    tessera::bytes_view evidence_a;
    for (std::size_t i = 0; i < ne; i++)
        if (std::strcmp(evidence[i].name, "evidence-a") == 0)
            evidence_a = tessera::bytes_view(evidence[i].bytes, evidence[i].len);
    CHECK(!evidence_a.empty());

    for (std::size_t i = 0; i < n; i++) {
        const receipt_vector &v = vectors[i];
        const tessera::bytes_view bytes(v.bytes, v.len);
        const tessera::bytes_view nonce =
            v.has_expected_nonce ? tessera::bytes_view(v.expected_nonce) : tessera::bytes_view();
        tessera::ChainVerifier verifier(v.public_key, chain_of(v.chain_before));
        CHECK_CODE_NAMED(verifier.verify_next(bytes, nonce), v.expect, v.name);
        const tessera::ChainState chain = verifier.chain();
        if (v.expect == TESSERA_OK) {
            /* Advanced by the call above; a fresh verifier gives the info. */
            tessera::ChainVerifier again(v.public_key, chain_of(v.chain_before));
            check_receipt_info(again.verify_next(bytes, nonce), v.info, v.name);
            CHECK_NAMED(chain.next_sequence == v.chain_before.next_sequence + 1, v.name);
            CHECK_NAMED(same_bytes(chain.prev_hash, v.hash, 32), v.name);
            CHECK_NAMED(same_bytes(tessera::receipt_hash(bytes), v.hash, 32), v.name);
            check_bindings(v, evidence_a);
        } else {
            CHECK_NAMED(chain == chain_of(v.chain_before), v.name);
        }
        /* Alone, without the chain. */
        CHECK_CODE_NAMED(tessera::verify_receipt(bytes, v.public_key),
                         signature_is_valid(v.expect) ? TESSERA_OK : v.expect, v.name);
        if (v.expect == TESSERA_OK)
            check_receipt_info(tessera::verify_receipt(bytes, v.public_key), v.info, v.name);
    }

    /* The valid receipts as one chain from a new key; replays change nothing;
     * a verifier from an exported position continues it. */
    tessera::ChainVerifier verifier(vectors[0].public_key);
    tessera::ChainState middle = tessera::first_chain();
    std::size_t valid = 0;
    for (std::size_t i = 0; i < n; i++) {
        const receipt_vector &v = vectors[i];
        if (v.expect != TESSERA_OK)
            continue;
        const tessera::bytes_view bytes(v.bytes, v.len);
        CHECK_CODE_NAMED(verifier.verify_next(bytes, v.expected_nonce), TESSERA_OK, v.name);
        CHECK_CODE_NAMED(verifier.verify_next(bytes), TESSERA_VERIFY_REPLAYED, v.name);
        if (++valid == 2)
            middle = verifier.chain();
    }
    CHECK(valid == 5);
    CHECK(verifier.chain().next_sequence == 6);
    tessera::ChainVerifier later(vectors[0].public_key, middle);
    valid = 0;
    for (std::size_t i = 0; i < n; i++) {
        const receipt_vector &v = vectors[i];
        if (v.expect != TESSERA_OK || ++valid <= 2)
            continue;
        CHECK_CODE_NAMED(later.verify_next(tessera::bytes_view(v.bytes, v.len)), TESSERA_OK,
                         v.name);
    }
    CHECK(later.chain() == verifier.chain());

    /* Argument errors. */
    CHECK_CODE(tessera::ChainVerifier(tessera::bytes_view(vectors[0].public_key, 31)),
               tessera::code::invalid_argument);
    CHECK_CODE(verifier.verify_next(tessera::bytes_view(vectors[0].bytes, vectors[0].len),
                                    tessera::bytes_view(vectors[0].public_key, 5)),
               tessera::code::invalid_argument);
    CHECK_CODE(tessera::verify_receipt(tessera::bytes_view(vectors[0].bytes, vectors[0].len),
                                       tessera::bytes_view()),
               tessera::code::invalid_argument);
    const tessera::Digest zero{};
    CHECK_CODE(tessera::result_hash(tessera::bytes_view(zero.data(), 3), zero, zero, 0),
               tessera::code::invalid_argument);
    CHECK_CODE(tessera::result_seal(zero, 1, tessera::bytes_view()),
               tessera::code::invalid_argument);

    /* kernel_hash refuses what no job assignment can carry. */
    const kernel_vector &k = vectors[0].kernel;
    const std::vector<tessera::BufferSpec> nine(9, tessera::BufferSpec{0, 4, 0, true});
    const std::vector<tessera::SpecConstant> seventeen(17, tessera::SpecConstant{0, 0});
    const std::vector<std::uint8_t> push(129, 0);
    const std::string long_name(65, 'm');
    const std::array<std::uint32_t, 3> grid{{1, 1, 1}};
    CHECK_CODE(tessera::kernel_hash(k.spirv_root, "main", {}, {}, grid, nine),
               tessera::code::invalid_argument);
    CHECK_CODE(tessera::kernel_hash(k.spirv_root, "main", seventeen, {}, grid, {}),
               tessera::code::invalid_argument);
    CHECK_CODE(tessera::kernel_hash(k.spirv_root, "main", {}, push, grid, {}),
               tessera::code::invalid_argument);
    CHECK_CODE(tessera::kernel_hash(k.spirv_root, long_name, {}, {}, grid, {}),
               tessera::code::invalid_argument);
    CHECK_CODE(tessera::kernel_hash(tessera::bytes_view(), "main", {}, {}, grid, {}),
               tessera::code::invalid_argument);
    /* Not UTF-8. */
    CHECK_CODE(tessera::kernel_hash(k.spirv_root, "\xff\xfe", {}, {}, grid, {}),
               tessera::code::invalid_argument);
}

/* ----- Merkle roots ----------------------------------------------------------- */

void test_merkle()
{
    std::size_t n = 0, single = 0;
    const merkle_vector *vectors = test_merkle_vectors(&n);
    for (std::size_t i = 0; i < n; i++) {
        const merkle_vector &v = vectors[i];
        if (v.is_proof || v.buffer_count != 1)
            continue;
        single++;
        CHECK_NAMED(same_bytes(tessera::merkle_root(generated(v.length)), v.root, 32), v.name);
    }
    CHECK(single >= 5);
}

/* ----- the agent ---------------------------------------------------------------- */

/* wire.json "welcome", "ready", "job_offer". */
const char *const WELCOME =
    "545301022300000001203f5e7d9cbbdaf91837567594b3d2f1102f4e6d8cabcae9082746"
    "6584a3c2e18827";
const char *const READY = "5453010400000000";
const char *const JOB_OFFER = "545301101100000001800421fa01808040808004904eb0ea01";

const std::uint8_t SEED[32] = {1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11, 12, 13, 14, 15, 16,
                               17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32};

tessera::AgentConfig device_config()
{
    tessera::AgentConfig c;
    c.device.name = "C++ test GPU";
    c.device.device_type = tessera::DeviceType::DiscreteGpu;
    c.device.features = 0xFFFFFFFFu;
    c.device.device_local_bytes = 8ull << 30;
    c.device.host_visible_bytes = 8ull << 30;
    c.device.max_storage_buffer_range = 1ull << 30;
    c.boot_id[0] = 7;
    return c;
}

/* Drains transmits; returns the message type of the last frame (0: none). */
int drain_transmit(tessera::Agent &a, tessera::Micros now)
{
    std::vector<std::uint8_t> buf(tessera::max_frame);
    int last = 0;
    while (auto n = a.poll_transmit(now, buf)) {
        CHECK(*n >= 8 && buf[0] == 'T' && buf[1] == 'S');
        last = buf[3];
    }
    return last;
}

std::size_t feed(tessera::Agent &a, tessera::Micros now, const char *hex)
{
    const std::vector<std::uint8_t> frame = unhex(hex);
    const std::size_t consumed = a.handle_input(now, frame);
    CHECK(consumed == frame.size());
    return consumed;
}

void test_agent_config_errors()
{
    tessera::AgentConfig c = device_config();
    CHECK(c.agent_version[1] == TESSERA_VERSION_MINOR);
    CHECK(c.policy.max_concurrent >= 1 && c.policy.max_concurrent <= tessera::max_jobs);

    c.policy.max_concurrent = 300;
    try {
        tessera::Agent::from_seed(c, SEED);
        CHECK(!"a bad max_concurrent was taken");
    } catch (const tessera::Error &e) {
        CHECK(e.code() == tessera::code::invalid_config);
        CHECK(e.message().find("max_concurrent") != std::string::npos);
    }
    c.policy.max_concurrent = tessera::max_jobs + 1;
    CHECK_CODE(tessera::Agent::from_seed(c, SEED), tessera::code::invalid_config);
    c.policy.max_concurrent = tessera::max_jobs;
    CHECK_CODE(tessera::Agent::from_seed(c, SEED), tessera::code::ok);
    c = device_config();
    c.device.name = std::string(65, 'g');
    CHECK_CODE(tessera::Agent::from_seed(c, SEED), tessera::code::invalid_config);
    c.device.name = "\xc3\x28";  // not UTF-8
    CHECK_CODE(tessera::Agent::from_seed(c, SEED), tessera::code::invalid_argument);
    c = device_config();
    c.device.device_type = static_cast<tessera::DeviceType>(42);
    CHECK_CODE(tessera::Agent::from_seed(c, SEED), tessera::code::invalid_config);
    c = device_config();
    CHECK_CODE(tessera::Agent::from_seed(c, tessera::bytes_view(SEED, 31)),
               tessera::code::invalid_argument);
    const std::vector<std::uint8_t> junk(83, 1);
    CHECK_CODE(tessera::Agent::from_pkcs8(c, junk), tessera::code::key_rejected);

    /* A generated key: the agent names it by its id. */
    const std::vector<std::uint8_t> pkcs8 = tessera::generate_key();
    tessera::Agent a = tessera::Agent::from_pkcs8(c, pkcs8);
    CHECK(a.key_id() == tessera::key_id(tessera::key_public(pkcs8)));
    /* Moving keeps the agent. */
    tessera::Agent b = std::move(a);
    CHECK(b.key_id() == tessera::key_id(tessera::key_public(pkcs8)));
}

void test_agent_session()
{
    using namespace std::chrono;
    tessera::Agent a = tessera::Agent::from_seed(device_config(), SEED, tessera::first_chain());
    const tessera::Micros now(1000000);
    std::vector<std::uint8_t> buf(64);

    CHECK(a.state() == tessera::ConnState::Disconnected);
    CHECK(a.key_id() == tessera::key_id(tessera::seed_public_key(SEED)));
    CHECK(a.chain() == tessera::first_chain());
    CHECK(a.active_jobs() == 0 && a.pending_transmit() == 0);

    /* Calls in the wrong order. */
    try {
        a.handle_input(now, tessera::bytes_view(buf.data(), 1));
        CHECK(!"input taken without a session");
    } catch (const tessera::InputError &e) {
        CHECK(e.code() == tessera::code::not_connected && e.consumed() == 0);
    }
    CHECK(!a.poll_event());
    CHECK(!a.poll_transmit(now, buf));
    CHECK_CODE(a.read_input(1, buf), tessera::code::no_input);
    CHECK_CODE(a.input(1), tessera::code::no_input);
    CHECK_CODE(a.job_info(1), tessera::code::unknown_job);
    const tessera::Usage usage{};
    CHECK_CODE(a.finish_job(now, 1, usage), tessera::code::unknown_job);
    try {
        a.finish_job(now, 1, usage);
    } catch (const tessera::Error &e) {
        CHECK(e.message().find("job 1") != std::string::npos);
    }
    CHECK_CODE(a.confirm_persisted(now, 1), tessera::code::unknown_job);
    CHECK_CODE(a.result_record(1), tessera::code::unknown_job);
    CHECK_CODE(a.restore_result(tessera::bytes_view()), tessera::code::invalid_argument);
    CHECK_CODE(a.restore_result(buf), tessera::code::invalid_argument);

    /* Hello. An empty transmit buffer is too small. */
    a.connect(now);
    CHECK_CODE(a.connect(now), tessera::code::already_connected);
    CHECK_CODE(a.poll_transmit(now, tessera::mutable_bytes_view()),
               tessera::code::buffer_too_small);
    CHECK(a.pending_transmit() > 0);
    CHECK(drain_transmit(a, now) == 1); /* Hello */
    CHECK(a.state() == tessera::ConnState::AwaitingWelcome);

    /* Welcome: the evidence goes out; Ready. */
    CHECK(a.handle_input(now, tessera::bytes_view()) == 0);
    feed(a, now, WELCOME);
    CHECK(drain_transmit(a, now) == 3); /* Evidence */
    feed(a, now, READY);
    auto ev = a.poll_event();
    CHECK(ev && ev->kind == tessera::EventKind::Ready);
    CHECK(!a.poll_event());
    CHECK(a.state() == tessera::ConnState::Ready);

    /* An offer the policy takes: the job is held, not yet assigned. */
    feed(a, now, JOB_OFFER);
    CHECK(drain_transmit(a, now) == 0x11); /* OfferAccept */
    const tessera::JobInfo info = a.job_info(1);
    CHECK(info.state == tessera::JobState::Accepted && !info.assigned);
    CHECK(info.deadline && *info.deadline == now + seconds(30));
    CHECK(info.buffers.empty() && info.entry_point.empty());
    CHECK(a.active_jobs() == 1);
    CHECK_CODE(a.finish_job(now, 1, usage), tessera::code::invalid_job_state);
    CHECK_CODE(a.fail_job(now, 1, 0, 0, usage), tessera::code::invalid_argument);
    CHECK_CODE(a.fail_job(now, 1, 7, 0, usage), tessera::code::invalid_job_state);
    CHECK_CODE(a.fail_job(now, 1, tessera::JobFailure{7, 0, usage}),
               tessera::code::invalid_job_state);
    std::vector<std::uint8_t> out(tessera::transmit_buffer);
    CHECK_CODE(a.send_output(now, 1, 0, tessera::bytes_view(buf.data(), 4), out),
               tessera::code::invalid_job_state);
    CHECK_CODE(a.send_output(now, 1, 300, tessera::bytes_view(buf.data(), 4), out),
               tessera::code::invalid_argument);
    CHECK_CODE(a.report_progress(now, 1, 500), tessera::code::invalid_job_state);
    CHECK_CODE(a.report_progress(now, 1, 70000), tessera::code::invalid_argument);
    CHECK_CODE(a.result_record(1), tessera::code::invalid_job_state);
    a.set_device_available(now, false);
    a.set_device_available(now, true);

    /* Timers. */
    const auto due = a.poll_timeout();
    CHECK(due && *due > now);
    a.handle_timeout(now);

    /* Bytes that are not Tessera end the session; the agent stays usable. */
    const std::uint8_t junk[8] = {'X', 'X', 1, 1, 0, 0, 0, 0};
    try {
        a.handle_input(now, junk);
        CHECK(!"junk taken");
    } catch (const tessera::InputError &e) {
        CHECK(e.code() == TESSERA_PEER_BASE + 11);
        CHECK(e.consumed() <= sizeof junk);
        CHECK(!e.message().empty());
    }
    drain_transmit(a, now);
    bool saw_disconnect = false;
    while (auto e = a.poll_event()) {
        if (e->kind == tessera::EventKind::Disconnect) {
            saw_disconnect = true;
            CHECK(e->reason == TESSERA_DISCONNECT_PROTOCOL_VIOLATION);
        }
    }
    CHECK(saw_disconnect);
    a.disconnected(now);
    a.connect(now + microseconds(1));
    CHECK(drain_transmit(a, now + microseconds(1)) == 1); /* Hello again */

    const tessera::AgentStats stats = a.stats();
    CHECK(stats.offers_accepted == 1);
    CHECK(stats.frames_refused >= 1);
    CHECK(a.chain().next_sequence == 1);

    /* Drain, then the timers once more. */
    a.disconnected(now + microseconds(3));
    while (a.poll_event()) {
    }
    a.drain(now + microseconds(3));
    drain_transmit(a, now + microseconds(3));
    while (a.poll_event()) {
    }
    a.handle_timeout(now + microseconds(4));
}

/* A coordinator's frames, encoded as docs/PROTOCOL.md says ("Encoding"). */
struct Body {
    std::vector<std::uint8_t> bytes;

    Body &varint(std::uint64_t v)
    {
        while (v >= 0x80) {
            bytes.push_back(static_cast<std::uint8_t>(v | 0x80));
            v >>= 7;
        }
        bytes.push_back(static_cast<std::uint8_t>(v));
        return *this;
    }
    Body &byte(std::uint8_t b)
    {
        bytes.push_back(b);
        return *this;
    }
    Body &raw(tessera::bytes_view b)
    {
        bytes.insert(bytes.end(), b.begin(), b.end());
        return *this;
    }
    Body &blob(tessera::bytes_view b) { return varint(b.size()).raw(b); }

    /* The frame: magic "TS", version 1, type, body length (u32 LE), body. */
    std::vector<std::uint8_t> frame(std::uint8_t type) const
    {
        std::vector<std::uint8_t> f{'T', 'S', 1, type};
        const auto n = static_cast<std::uint32_t>(bytes.size());
        for (int i = 0; i < 4; i++)
            f.push_back(static_cast<std::uint8_t>(n >> (8 * i)));
        f.insert(f.end(), bytes.begin(), bytes.end());
        return f;
    }
};

std::uint64_t read_varint(const std::vector<std::uint8_t> &b, std::size_t &at)
{
    std::uint64_t v = 0;
    for (int shift = 0; at < b.size() && shift < 64; shift += 7) {
        const std::uint8_t x = b[at++];
        v |= static_cast<std::uint64_t>(x & 0x7F) << shift;
        if (!(x & 0x80))
            break;
    }
    return v;
}

/* The whole frames of a byte stream. */
std::vector<std::vector<std::uint8_t>> split_frames(const std::vector<std::uint8_t> &stream)
{
    std::vector<std::vector<std::uint8_t>> frames;
    std::size_t at = 0;
    while (stream.size() - at >= 8) {
        const std::size_t len = stream[at + 4] | (stream[at + 5] << 8) |
                                (static_cast<std::size_t>(stream[at + 6]) << 16) |
                                (static_cast<std::size_t>(stream[at + 7]) << 24);
        if (stream.size() - at - 8 < len)
            break;
        const auto begin = stream.begin() + static_cast<std::ptrdiff_t>(at);
        frames.emplace_back(begin, begin + static_cast<std::ptrdiff_t>(8 + len));
        at += 8 + len;
    }
    CHECK(at == stream.size());
    return frames;
}

/* Every frame the agent has to send now (a transmit may hold several). */
std::vector<std::vector<std::uint8_t>> transmits(tessera::Agent &a, tessera::Micros now)
{
    std::vector<std::uint8_t> stream, buf(tessera::max_frame);
    while (auto n = a.poll_transmit(now, buf))
        stream.insert(stream.end(), buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(*n));
    return split_frames(stream);
}

/* The byte string at the end of a frame whose body is `varint job, blob`. */
std::vector<std::uint8_t> trailing_blob(const std::vector<std::uint8_t> &frame, bool has_job)
{
    std::size_t at = 8;
    if (has_job)
        read_varint(frame, at);
    const std::uint64_t len = read_varint(frame, at);
    if (at + len != frame.size())
        return {};
    return std::vector<std::uint8_t>(frame.begin() + static_cast<std::ptrdiff_t>(at), frame.end());
}

/* A whole job on the sans-IO agent, the host's side played here: assignment,
 * kernel and input chunks read through input()/read_input(), the outputs
 * sent, the receipt signed, stored (persist_results) and checked with the
 * verification functions, byte for byte what the host computes itself; the
 * acknowledgement; the stored record given to a new agent. */
void test_agent_job()
{
    using namespace std::chrono;
    tessera::AgentConfig config = device_config();
    config.persist_results = true;
    config.policy.price_base = 100;
    tessera::Agent a = tessera::Agent::from_seed(config, SEED);
    const tessera::PublicKey pk = tessera::seed_public_key(SEED);
    tessera::Micros now(5000000);

    a.connect(now);
    CHECK(drain_transmit(a, now) == 1);
    const std::vector<std::uint8_t> welcome = unhex(WELCOME);
    a.handle_input(now, welcome);
    std::vector<std::uint8_t> evidence;
    for (const auto &f : transmits(a, now))
        if (f[3] == 0x03)
            evidence = trailing_blob(f, false);
    /* Welcome: version 1, then the 32-byte challenge. */
    const tessera::bytes_view challenge(welcome.data() + 9, 32);
    const tessera::EvidenceInfo ev = tessera::verify_evidence(evidence, challenge);
    CHECK(ev.public_key == pk && ev.device.name == "C++ test GPU");
    CHECK(ev.chain == tessera::first_chain());
    feed(a, now, READY);
    CHECK(a.poll_event()->kind == tessera::EventKind::Ready);
    feed(a, now, JOB_OFFER); /* job 1 */
    CHECK(drain_transmit(a, now) == 0x11);

    /* The job: a 128-byte "kernel" (the agent does not look inside), a whole
     * chunk and 16 bytes of input in buffer 0 (binding 0), a whole chunk and
     * 32 bytes of output from buffer 1 (binding 2). */
    const std::size_t in_len = tessera::chunk_size + 16, out_len = tessera::chunk_size + 32;
    std::vector<std::uint8_t> kernel(128), input(in_len), output(out_len);
    for (std::size_t i = 0; i < kernel.size(); i++)
        kernel[i] = static_cast<std::uint8_t>(i * 7);
    for (std::size_t i = 0; i < input.size(); i++)
        input[i] = static_cast<std::uint8_t>(100 + i);
    for (std::size_t i = 0; i < output.size(); i++)
        output[i] = static_cast<std::uint8_t>(200 + i);
    std::array<std::uint8_t, 32> nonce;
    nonce.fill(0x42);
    const std::vector<tessera::BufferSpec> layout{{0, in_len, in_len, false},
                                                  {2, out_len, 0, true}};
    Body assign;
    assign.varint(1).raw(nonce).varint(kernel.size()).raw(tessera::merkle_root(kernel));
    assign.blob(tessera::bytes_view(reinterpret_cast<const std::uint8_t *>("main"), 4));
    assign.varint(0).varint(0).varint(1).varint(1).varint(1).varint(layout.size());
    for (const auto &b : layout)
        assign.varint(b.binding).varint(b.len).varint(b.init_len).byte(b.readback ? 1 : 0);
    assign.raw(tessera::merkle_root(input));
    a.handle_input(now, assign.frame(0x13));
    auto e = a.poll_event();
    CHECK(e && e->kind == tessera::EventKind::JobAssigned && e->job == 1);
    tessera::JobInfo info = a.job_info(1);
    CHECK(info.state == tessera::JobState::Receiving && info.assigned);
    CHECK(info.kernel_len == 128 && info.entry_point == "main" && info.grid[0] == 1);
    CHECK(info.buffers.size() == 2 && info.buffers[1].binding == 2 && info.buffers[1].readback);
    CHECK(info.specialization.empty() && info.push_constants.empty());
    CHECK(info.requester_nonce == nonce);

    /* The kernel's chunk: one piece, read before the next input. */
    Body chunk;
    chunk.varint(1).byte(0).varint(0).raw(tessera::merkle_root(kernel)).blob(kernel);
    a.handle_input(now, chunk.frame(0x14));
    e = a.poll_event();
    CHECK(e && e->kind == tessera::EventKind::JobData && e->stream == 0 && e->offset == 0 &&
          e->len == 128);
    const tessera::bytes_view got = a.input(1);
    CHECK(got.size() == 128 && std::equal(got.begin(), got.end(), kernel.begin()));
    std::vector<std::uint8_t> copy(tessera::max_input_piece);
    CHECK(a.read_input(1, copy) == 128 && std::equal(kernel.begin(), kernel.end(), copy.begin()));
    std::vector<std::uint8_t> small(10);
    CHECK_CODE(a.read_input(1, small), tessera::code::buffer_too_small);

    /* Buffer 0's first chunk, 8 KiB: the host hands the whole frame over,
     * the agent takes it a piece at a time, each a JobData event read
     * before the agent takes more. (A chunk's digest is its leaf hash, the
     * Merkle root of the chunk alone.) */
    const tessera::bytes_view first(input.data(), tessera::chunk_size);
    Body chunk1;
    chunk1.varint(1).byte(1).varint(0).raw(tessera::merkle_root(first)).blob(first);
    const std::vector<std::uint8_t> frame1 = chunk1.frame(0x14);
    std::vector<std::uint8_t> received(in_len);
    std::size_t at = 0, offset = 0, pieces = 0;
    while (at < frame1.size() && pieces <= 64) {
        at += a.handle_input(now, tessera::bytes_view(frame1.data() + at, frame1.size() - at));
        while ((e = a.poll_event())) {
            CHECK(e->kind == tessera::EventKind::JobData && e->stream == 1);
            CHECK(e->offset == offset && e->len > 0 && e->len <= tessera::max_input_piece);
            if (e->offset != offset || offset + e->len > received.size())
                break;
            const std::size_t n = a.read_input(
                1, tessera::mutable_bytes_view(received.data() + offset, received.size() - offset));
            CHECK(n == e->len);
            offset += n;
            pieces++;
        }
    }
    CHECK(at == frame1.size() && offset == tessera::chunk_size);
    CHECK(pieces >= tessera::chunk_size / tessera::max_input_piece);
    /* Its last chunk: one piece, then the job runs. */
    const tessera::bytes_view last(input.data() + tessera::chunk_size, 16);
    Body chunk2;
    chunk2.varint(1).byte(1).varint(1).raw(tessera::merkle_root(last)).blob(last);
    a.handle_input(now, chunk2.frame(0x14));
    e = a.poll_event();
    CHECK(e && e->kind == tessera::EventKind::JobData && e->stream == 1 &&
          e->offset == tessera::chunk_size && e->len == 16);
    CHECK(a.read_input(1, tessera::mutable_bytes_view(received.data() + tessera::chunk_size, 16)) ==
          16);
    CHECK(received == input);
    e = a.poll_event();
    CHECK(e && e->kind == tessera::EventKind::RunJob && e->job == 1);
    CHECK(drain_transmit(a, now) == 0x15); /* Started */
    CHECK(a.job_info(1).state == tessera::JobState::Running);

    /* The host ran it: progress, outputs (buffer 1, the read-back one), the
     * receipt. The outputs' frames come back in the host's buffer, after
     * the frames queued before them. */
    now += milliseconds(3);
    a.report_progress(now, 1, 500);
    std::vector<std::uint8_t> out(tessera::transmit_buffer);
    CHECK_CODE(a.send_output(now, 1, 0, output, out), TESSERA_OUTPUT_OUT_OF_ORDER);
    std::vector<std::uint8_t> sent;
    /* Room for a whole chunk's frame (header, job, stream, index, digest, a
     * two-byte length, the data), but the Progress frame goes first:
     * nothing taken; sent, the next call takes the chunk. */
    const std::size_t chunk_frame = 8 + 3 + 32 + 2 + tessera::chunk_size;
    tessera::OutputSent s = a.send_output(now, 1, 1, output, tessera::mutable_bytes_view(out.data(), chunk_frame));
    CHECK(s.taken == 0 && s.written > 0 && s.written < chunk_frame);
    sent.insert(sent.end(), out.begin(), out.begin() + static_cast<std::ptrdiff_t>(s.written));
    s = a.send_output(now, 1, 1, output, tessera::mutable_bytes_view(out.data(), chunk_frame));
    CHECK(s.taken == tessera::chunk_size && s.written == chunk_frame);
    sent.insert(sent.end(), out.begin(), out.begin() + static_cast<std::ptrdiff_t>(s.written));
    /* The tail's frame needs 76 bytes: 64 can never hold it. */
    const tessera::bytes_view tail(output.data() + tessera::chunk_size, 32);
    std::vector<std::uint8_t> tiny(64);
    CHECK_CODE(a.send_output(now, 1, 1, tail, tiny), tessera::code::buffer_too_small);
    s = a.send_output(now, 1, 1, tail, out);
    CHECK(s.taken == 32 && s.written == 76);
    sent.insert(sent.end(), out.begin(), out.begin() + static_cast<std::ptrdiff_t>(s.written));
    CHECK(a.job_info(1).state == tessera::JobState::Uploading);
    CHECK(!a.poll_transmit(now, out)); /* everything went out with the outputs */
    const std::vector<std::vector<std::uint8_t>> out_frames = split_frames(sent);
    CHECK(out_frames.size() == 3 && out_frames[0][3] == 0x16); /* Progress */
    std::vector<std::uint8_t> uploaded;
    for (std::size_t i = 1; i < out_frames.size(); i++) {
        const std::vector<std::uint8_t> &f = out_frames[i];
        std::size_t p = 8;
        read_varint(f, p); /* job */
        p++;               /* stream */
        const std::uint64_t index = read_varint(f, p);
        tessera::Digest digest;
        std::copy(f.begin() + static_cast<std::ptrdiff_t>(p),
                  f.begin() + static_cast<std::ptrdiff_t>(p + 32), digest.begin());
        p += 32;
        const std::uint64_t len = read_varint(f, p);
        CHECK(f[3] == 0x17 && index == i - 1 && p + len == f.size()); /* OutputChunk */
        const tessera::bytes_view data(f.data() + p, f.size() - p);
        CHECK(digest == tessera::merkle_root(data));
        uploaded.insert(uploaded.end(), data.begin(), data.end());
    }
    CHECK(uploaded == output);
    const tessera::Usage usage{2500, 1, 0, 0};
    a.finish_job(now, 1, usage);
    e = a.poll_event();
    CHECK(e && e->kind == tessera::EventKind::PersistResult && e->job == 1);
    const std::vector<std::uint8_t> record = a.result_record(1);
    CHECK(!record.empty() && record.size() <= TESSERA_MAX_RECORD_BYTES);
    a.confirm_persisted(now, 1);
    std::vector<std::uint8_t> receipt;
    for (const auto &f : transmits(a, now))
        if (f[3] == 0x1B)
            receipt = trailing_blob(f, true);
    CHECK(receipt.size() == TESSERA_RECEIPT_LEN);
    CHECK(a.chain().next_sequence == 2 && a.chain().prev_hash == tessera::receipt_hash(receipt));

    /* The receipt binds what the host sent and received, byte for byte. */
    const tessera::ReceiptInfo r = tessera::verify_receipt(receipt, pk);
    CHECK(r.status == 0 && r.job == 1 && r.sequence == 1 && r.requester_nonce == nonce);
    const tessera::Digest kh = tessera::kernel_hash(tessera::merkle_root(kernel), "main", {}, {},
                                                    {{1, 1, 1}}, layout);
    CHECK(r.kernel_hash == kh);
    CHECK(r.input_root == tessera::merkle_root(input));
    CHECK(r.output_root == tessera::merkle_root(output) && r.output_len == out_len);
    CHECK(r.result_hash == tessera::result_hash(kh, r.input_root, r.output_root, out_len));
    CHECK(r.result_seal == tessera::result_seal(pk, 1, r.result_hash));
    CHECK(r.evidence_hash == tessera::evidence_hash(evidence));
    CHECK(r.key_id == a.key_id() && r.usage.gpu_time_us == 2500 && r.usage.bytes_out == out_len);
    CHECK(r.usage.bytes_in == 128 + in_len && r.price >= 100);
    tessera::ChainVerifier verifier(pk);
    CHECK(verifier.verify_next(receipt, nonce).sequence == 1);
    CHECK(verifier.chain() == a.chain());

    /* The coordinator holds it. */
    Body ack;
    ack.varint(1);
    a.handle_input(now, ack.frame(0x1C));
    e = a.poll_event();
    CHECK(e && e->kind == tessera::EventKind::ResultAcknowledged && e->job == 1);
    CHECK(a.stats().jobs_completed == 1 && a.stats().earnings == r.price);
    CHECK(a.active_jobs() == 0);
    CHECK_CODE(a.job_info(1), tessera::code::unknown_job);

    /* After a restart: the stored record, given back, is held again. */
    tessera::Agent b = tessera::Agent::from_seed(config, SEED, a.chain());
    b.restore_result(record);
    CHECK(b.active_jobs() == 1 && b.job_info(1).state == tessera::JobState::AwaitingAck);
    CHECK(b.result_record(1) == record);
    CHECK_CODE(b.restore_result(record), tessera::code::invalid_job_state);
}

/* ----- the dispatcher --------------------------------------------------------------- */

void test_dispatcher()
{
    const std::vector<tessera::DeviceEntry> devices = tessera::Dispatcher::devices();
    CHECK(!devices.empty());
    if (devices.empty())
        return;
    CHECK(!devices[0].name.empty() && devices[0].index == 0);

    tessera::Dispatcher::Options bad;
    bad.name = "no such device anywhere";
    bad.run_benchmark = false;
    const std::uint32_t c = code_of([&] { tessera::Dispatcher d(bad); });
    CHECK(c > tessera::code::vulkan_base && c < tessera::code::vulkan_base + 100);
    const std::uint32_t c2 = code_of([&] {
        tessera::Dispatcher::open_index(static_cast<std::uint32_t>(devices.size()) + 7, false);
    });
    CHECK(c2 > tessera::code::vulkan_base && c2 < tessera::code::vulkan_base + 100);
    CHECK_CODE(tessera::Dispatcher::open_index(0x80000000u, false),
               tessera::code::invalid_argument);

    /* The first device, without then with the start-up benchmark. */
    {
        tessera::Dispatcher quick = tessera::Dispatcher::open_index(0, false);
        CHECK(quick.device().name == devices[0].name);
        CHECK(quick.device().fma_mflops == 0);
    }
    tessera::Dispatcher d = tessera::Dispatcher::open_default(true);
    const tessera::DeviceInfo info = d.device();
    CHECK(!info.name.empty() && info.fma_mflops > 0 && info.copy_mbps > 0);
    const tessera::Benchmark b = d.benchmark();
    CHECK(b.copy_gbps > 0 && b.fma_gflops > 0);
    CHECK(!d.last_failure());

    /* saxpy: y = a * x + y, element by element. */
    const std::vector<std::uint8_t> saxpy = read_file("core/kernels/saxpy.spv");
    CHECK(!saxpy.empty());
    constexpr std::uint32_t N = 1000;
    std::vector<float> x(N), y(N, 1.0f);
    for (std::uint32_t i = 0; i < N; i++)
        x[i] = static_cast<float>(i);
    const float alpha = 2.5f;
    std::array<std::uint8_t, 8> push{};
    std::memcpy(push.data(), &alpha, 4);
    std::memcpy(push.data() + 4, &N, 4);
    tessera::KernelJob job;
    job.spirv = saxpy;
    job.entry_point = "main";
    job.push_constants = push;
    job.grid = {{(N + 63) / 64, 1, 1}};
    job.buffers = {
        {0, N * 4, tessera::bytes_view(reinterpret_cast<const std::uint8_t *>(x.data()), N * 4),
         false},
        {1, N * 4, tessera::bytes_view(reinterpret_cast<const std::uint8_t *>(y.data()), N * 4),
         true},
    };
    job.timeout = finishing_timeout(std::chrono::seconds(10));
    const tessera::KernelResult r = d.run(job);
    CHECK(r.outputs.size() == 1 && r.outputs[0].binding == 1 &&
          r.outputs[0].data.size() == N * 4);
    int wrong = 0;
    for (std::uint32_t i = 0; i < N && r.outputs.size() == 1; i++) {
        float out = 0;
        std::memcpy(&out, r.outputs[0].data.data() + 4 * i, 4);
        if (std::fabs(out - (alpha * static_cast<float>(i) + 1.0f)) > 1e-3f)
            wrong++;
    }
    CHECK(wrong == 0);
    CHECK(r.usage.dispatches == 1 && r.usage.bytes_in == 2 * N * 4 && r.usage.bytes_out == N * 4);
    CHECK(!d.last_failure());

    /* A wrong entry point is the kernel's fault: refused by the gate. */
    job.entry_point = "not_main";
    const std::uint32_t refused = code_of([&] { d.run(job); });
    CHECK(refused >= tessera::code::kernel_base && refused < tessera::code::kernel_base + 10000);
    CHECK(d.last_failure() && d.last_failure()->reason == 1);
    job.entry_point = "\xff";
    CHECK_CODE(d.run(job), tessera::code::invalid_argument);
    job.entry_point = "main";
    CHECK(d.run(job).outputs.size() == 1);
    CHECK(!d.last_failure());

    /* A hostile kernel: its rule as the code, what to report. */
    const std::vector<std::uint8_t> hostile = read_file("core/kernels/hostile_ptr_bitcast.spv");
    tessera::KernelJob h;
    h.spirv = hostile;
    h.buffers = {{0, 1024, {}, true}};
    h.timeout = std::chrono::seconds(5);
    try {
        d.run(h);
        CHECK(!"the hostile kernel ran");
    } catch (const tessera::Error &e) {
        CHECK(e.code() >= tessera::code::kernel_base && e.code() < tessera::code::kernel_base + 10000);
        CHECK(e.message().find("rejected") != std::string::npos);
        const auto f = d.last_failure();
        CHECK(f && f->reason == 1 && (f->detail & 0xFFFF) == e.code() - tessera::code::kernel_base);
    }

    /* A kernel stopped at its time limit: metered to the limit. On a
     * dispatcher without the start-up benchmark, whose bound on a job's
     * total work is then the default: with a rate measured under valgrind
     * (many times slower) the job would be refused before it ran
     * (`too_much_work`) rather than stopped by the timer. */
    tessera::Dispatcher timed = tessera::Dispatcher::open_index(0, false);
    const std::vector<std::uint8_t> loop = read_file("core/kernels/hostile_loop.spv");
    std::vector<std::uint8_t> data(64, 0);
    tessera::KernelJob t;
    t.spirv = loop;
    t.grid = {{65535, 1, 1}};
    t.buffers = {{0, 64, data, false}};
    t.timeout = std::chrono::milliseconds(300);
    CHECK_CODE(timed.run(t), tessera::code::job_base + 1);
    const auto f = timed.last_failure();
    CHECK(f && f->reason == 2 && f->usage.gpu_time_us == 300000);
    std::size_t still = 99;
    for (int tries = 0; tries < 200; tries++) {
        still = timed.reclaim();
        if (still == 0)
            break;
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    CHECK(still == 0);
    CHECK(timed.run(job).outputs.size() == 1);

    /* Its evidence view configures an agent. */
    tessera::AgentConfig config;
    config.device = info;
    tessera::Agent a = tessera::Agent::from_seed(config, SEED);
    CHECK(a.state() == tessera::ConnState::Disconnected);
}

/* ----- the runtime ------------------------------------------------------------------- */

std::string write_toml(const std::string &dir)
{
    const std::string path = dir + "/agent.toml";
    std::ofstream f(path);
    f << "coordinator = \"127.0.0.1:1\"\n"
         "[tls]\n"
         "pinned_key_sha256 = \"ab00000000000000000000000000000000000000000000000000000000000000\"\n"
         "[key]\n"
         "file = \""
      << dir
      << "/device.key\"\n"
         "[store]\n"
         "dir = \""
      << dir
      << "/store\"\n"
         "[timers]\n"
         "drain_timeout_s = 2\n";
    return path;
}

void test_runtime()
{
    using namespace std::chrono;
    char tmpl[] = "/tmp/tessera-cpp-runtime-XXXXXX";
    const char *made = mkdtemp(tmpl);
    CHECK(made != nullptr);
    if (!made)
        return;
    const std::string dir = made;

    CHECK_CODE(tessera::Runtime(dir + "/missing.toml"), tessera::code::io);
    {
        std::ofstream bad(dir + "/bad.toml");
        bad << "coordinator = 5\n";
    }
    try {
        tessera::Runtime rt(dir + "/bad.toml");
        CHECK(!"a bad file was taken");
    } catch (const tessera::Error &e) {
        CHECK(e.code() == tessera::code::invalid_config);
        CHECK(e.message().find("bad.toml") != std::string::npos);
    }

    tessera::Runtime rt(write_toml(dir));
    struct stat st;
    CHECK(stat((dir + "/device.key").c_str(), &st) == 0);
    CHECK(rt.fd() >= 0);
    CHECK(!rt.finished());

    /* The host's loop: poll the descriptor until the next wake-up, step. */
    for (int i = 0; i < 5; i++) {
        const auto wake = rt.next_wakeup();
        pollfd p{rt.fd(), POLLIN, 0};
        const int timeout = wake && *wake < milliseconds(20) ? static_cast<int>(wake->count()) : 20;
        CHECK(poll(&p, 1, timeout) >= 0);
        rt.step();
    }
    rt.step(milliseconds(5));
    tessera::RuntimeStatus s = rt.status();
    CHECK(s.state == tessera::ConnState::Disconnected);
    CHECK(s.sessions == 0 && !s.finished && s.coordinator == "127.0.0.1:1");
    CHECK(!s.device.empty());
    CHECK(rt.status_line().find("127.0.0.1:1") != std::string::npos);

    /* The user renders: the device takes no new work. */
    rt.set_accepting_jobs(false);
    rt.step();
    CHECK(rt.status().device_unavailable);
    rt.set_accepting_jobs(true);
    rt.step();
    CHECK(!rt.status().device_unavailable);

    /* Another thread: accepting jobs, status, drain. */
    tessera::Runtime::Remote remote = rt.remote();
    std::atomic<bool> saw_unavailable{false};
    std::atomic<bool> saw_line{false};
    std::thread other([&] {
        remote.set_accepting_jobs(false);
        for (int i = 0; i < 200 && !saw_unavailable; i++) {
            saw_unavailable = remote.status().device_unavailable;
            std::this_thread::sleep_for(milliseconds(5));
        }
        remote.set_accepting_jobs(true);
        saw_line = !remote.status_line().empty();
        remote.drain();
    });
    const auto start = steady_clock::now();
    while (!rt.finished() && steady_clock::now() - start < seconds(20))
        rt.step(milliseconds(20));
    other.join();
    CHECK(saw_unavailable);
    CHECK(saw_line);
    CHECK(rt.finished());
    CHECK(remote.finished());
    CHECK(rt.status().finished && remote.status().finished);
    rt.drain();

    /* A key file others can read is refused. */
    chmod((dir + "/device.key").c_str(), 0644);
    CHECK_CODE(tessera::Runtime(dir + "/agent.toml"), tessera::code::key_rejected);
    std::filesystem::remove_all(dir);
}

}  // namespace

int main()
{
    test_basics();
    test_keys();
    test_evidence();
    test_receipts();
    test_merkle();
    test_agent_config_errors();
    test_agent_session();
    test_agent_job();
    test_dispatcher();
    test_runtime();
    std::printf("test_cpp: %u checks, %u failed\n", checks, failures);
    return failures == 0 ? 0 : 1;
}
