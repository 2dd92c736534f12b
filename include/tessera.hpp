/*
 * tessera.hpp: the C++17 API of Tessera, a provider agent for decentralized
 * GPU compute (https://example.invalid/tessera).
 *
 * The same library as tessera.h (libtessera.a), seen from C++: RAII classes,
 * std::string_view, std::optional, std::chrono durations and a small
 * span-like view (tessera::view) in place of pointer + length pairs. It calls
 * the Rust core through a cxx bridge (https://cxx.rs) whose generated headers
 * are committed beside this one (tessera/cxx/bridge.h, tessera/cxx/rust/cxx.h).
 *
 *   tessera::Runtime       a provider on the network, from the operator's TOML
 *                          file, stepped from the host's own loop (poll() its
 *                          fd(), then step()); Runtime::Remote for other threads
 *   tessera::Dispatcher    runs untrusted SPIR-V kernels on a Vulkan device
 *   tessera::Agent         the sans-IO protocol agent: the host owns transport
 *                          and clock
 *   tessera::ChainVerifier checks one provider key's receipts in order
 *   verify_receipt(), verify_evidence(), kernel_hash(), ...: verification over
 *                          bytes alone, byte for byte what the C and Rust APIs
 *                          compute
 *
 * Conventions:
 * - Every failure throws tessera::Error, whose code() is the shared result
 *   code of docs/CODES.md (the TESSERA_* codes of tessera.h) and whose what()
 *   reads "[CODE] message". Functions marked noexcept never fail.
 * - Objects own their Rust counterpart and free it in their destructor. They
 *   move but do not copy; a moved-from object may only be destroyed or
 *   assigned to.
 * - Thread safety: an object may move between threads, but is used by one
 *   thread at a time, except Runtime::Remote, whose functions any thread may
 *   call at any time.
 * - Views passed in (tessera::bytes_view, std::string_view) are read during
 *   the call only. Views returned (Agent::input) stay valid until the next
 *   non-const call on the object.
 * - Times given to the Agent are microseconds in the host's own time base
 *   (only differences matter).
 *
 * Link with libtessera.a and the system libraries of its pkg-config file
 * (Libs.private: -lstdc++ -lpthread -ldl -lm ...); CMake: tessera::cxx.
 */
#ifndef TESSERA_HPP
#define TESSERA_HPP

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "tessera.h"
#include "tessera/cxx/rust/cxx.h"
#include "tessera/cxx/bridge.h"

namespace tessera {

// ----- basic types -----------------------------------------------------------

/// A SHA-256 digest (hashes, Merkle roots) or an Ed25519 public key.
using Digest = std::array<std::uint8_t, 32>;
/// An Ed25519 public key.
using PublicKey = std::array<std::uint8_t, 32>;
/// The 16-byte id of a public key.
using KeyId = std::array<std::uint8_t, 16>;
/// Agent time: microseconds in the host's time base.
using Micros = std::chrono::microseconds;

/// A non-owning view of `size()` contiguous `T` (std::span is C++20).
/// `view<const T>` is made from a pointer and a count, a std::vector, a
/// std::array or a C array; `view<T>` only from mutable ones.
template <class T>
class view {
public:
    /// The element type.
    using element_type = T;

    /// An empty view.
    constexpr view() noexcept = default;
    /// `count` items at `data` (`data` may be null when `count` is 0).
    constexpr view(T *data, std::size_t count) noexcept : data_(data), size_(count) {}
    /// A C array.
    template <std::size_t N>
    constexpr view(T (&array)[N]) noexcept : data_(array), size_(N) {}
    /// A std::array.
    template <class U, std::size_t N,
              class = std::enable_if_t<std::is_convertible_v<U (*)[], T (*)[]>>>
    constexpr view(std::array<U, N> &array) noexcept : data_(array.data()), size_(N) {}
    /// A const std::array (for a view of const items).
    template <class U, std::size_t N,
              class = std::enable_if_t<std::is_convertible_v<const U (*)[], T (*)[]>>>
    constexpr view(const std::array<U, N> &array) noexcept : data_(array.data()), size_(N) {}
    /// A std::vector.
    template <class U, class A,
              class = std::enable_if_t<std::is_convertible_v<U (*)[], T (*)[]>>>
    view(std::vector<U, A> &vector) noexcept : data_(vector.data()), size_(vector.size()) {}
    /// A const std::vector (for a view of const items).
    template <class U, class A,
              class = std::enable_if_t<std::is_convertible_v<const U (*)[], T (*)[]>>>
    view(const std::vector<U, A> &vector) noexcept
        : data_(vector.data()), size_(vector.size()) {}
    /// A view of mutable items, as one of const items.
    template <class U, class = std::enable_if_t<std::is_convertible_v<U (*)[], T (*)[]>>>
    constexpr view(const view<U> &other) noexcept : data_(other.data()), size_(other.size()) {}

    /// The first item.
    constexpr T *data() const noexcept { return data_; }
    /// Number of items.
    constexpr std::size_t size() const noexcept { return size_; }
    /// Whether there are none.
    constexpr bool empty() const noexcept { return size_ == 0; }
    /// Item `i` (unchecked).
    constexpr T &operator[](std::size_t i) const noexcept { return data_[i]; }
    /// Iteration.
    constexpr T *begin() const noexcept { return data_; }
    /// Iteration.
    constexpr T *end() const noexcept { return data_ + size_; }
    /// Items `[offset, offset + count)`, cut to the view's end.
    constexpr view subview(std::size_t offset,
                           std::size_t count = static_cast<std::size_t>(-1)) const noexcept
    {
        if (offset > size_)
            offset = size_;
        if (count > size_ - offset)
            count = size_ - offset;
        return view(data_ + offset, count);
    }

private:
    T *data_ = nullptr;
    std::size_t size_ = 0;
};

/// Bytes read by a call.
using bytes_view = view<const std::uint8_t>;
/// Bytes written by a call.
using mutable_bytes_view = view<std::uint8_t>;

/// The shared result codes (docs/CODES.md), as tessera::Error::code() has them.
namespace code {
/// Success.
inline constexpr std::uint32_t ok = TESSERA_OK;
/// The caller's buffer is too small.
inline constexpr std::uint32_t buffer_too_small = TESSERA_BUFFER_TOO_SMALL;
/// An argument is out of range or not of the expected form.
inline constexpr std::uint32_t invalid_argument = TESSERA_INVALID_ARGUMENT;
/// Internal error caught at the boundary.
inline constexpr std::uint32_t panic = TESSERA_PANIC;
/// A file or socket operation failed.
inline constexpr std::uint32_t io = TESSERA_IO;
/// No session is established.
inline constexpr std::uint32_t not_connected = TESSERA_NOT_CONNECTED;
/// A session is already open.
inline constexpr std::uint32_t already_connected = TESSERA_ALREADY_CONNECTED;
/// No such job on this agent.
inline constexpr std::uint32_t unknown_job = TESSERA_UNKNOWN_JOB;
/// The job is not in a state that allows this call.
inline constexpr std::uint32_t invalid_job_state = TESSERA_INVALID_JOB_STATE;
/// No input of this job is readable now.
inline constexpr std::uint32_t no_input = TESSERA_NO_INPUT;
/// A configuration value is out of range.
inline constexpr std::uint32_t invalid_config = TESSERA_INVALID_CONFIG;
/// Not an Ed25519 key of the expected form.
inline constexpr std::uint32_t key_rejected = TESSERA_KEY_REJECTED;
/// Verification: not a well-formed structure of the expected kind.
inline constexpr std::uint32_t verify_malformed = TESSERA_VERIFY_MALFORMED;
/// Verification: the signature does not verify.
inline constexpr std::uint32_t verify_bad_signature = TESSERA_VERIFY_BAD_SIGNATURE;
/// Verification: signed by another key than the one expected.
inline constexpr std::uint32_t verify_unknown_key = TESSERA_VERIFY_UNKNOWN_KEY;
/// Verification: bound to another challenge or nonce.
inline constexpr std::uint32_t verify_wrong_nonce = TESSERA_VERIFY_WRONG_NONCE;
/// Verification: a replayed receipt.
inline constexpr std::uint32_t verify_replayed = TESSERA_VERIFY_REPLAYED;
/// Verification: a receipt is missing.
inline constexpr std::uint32_t verify_out_of_order = TESSERA_VERIFY_OUT_OF_ORDER;
/// Verification: the previous-receipt hash does not match.
inline constexpr std::uint32_t verify_broken_chain = TESSERA_VERIFY_BROKEN_CHAIN;
/// First Vulkan set-up code.
inline constexpr std::uint32_t vulkan_base = TESSERA_VULKAN_BASE;
/// First peer protocol code.
inline constexpr std::uint32_t peer_base = TESSERA_PEER_BASE;
/// First job failure code.
inline constexpr std::uint32_t fail_base = TESSERA_FAIL_BASE;
/// First dispatcher job code.
inline constexpr std::uint32_t job_base = TESSERA_JOB_BASE;
/// First kernel rejection code.
inline constexpr std::uint32_t kernel_base = TESSERA_KERNEL_BASE;
}  // namespace code

/// Largest frame on the wire: a transmit buffer this big always makes progress.
inline constexpr std::size_t max_frame = TESSERA_MAX_FRAME;
/// Bytes of one input or output chunk (a Merkle leaf).
inline constexpr std::size_t chunk_size = TESSERA_CHUNK_SIZE;
/// Most bytes of one EventKind::JobData (what Agent::read_input copies): a
/// chunk's data comes in pieces of this size, the last one shorter.
inline constexpr std::size_t max_input_piece = TESSERA_MAX_INPUT_PIECE;
/// A transmit buffer with which every Agent::send_output takes a chunk.
inline constexpr std::size_t transmit_buffer = TESSERA_TRANSMIT_BUFFER;
/// Most jobs an agent holds at once.
inline constexpr std::size_t max_jobs = TESSERA_MAX_JOBS;

// ----- errors ----------------------------------------------------------------

/// A failure of the library: code() is the shared result code, what() reads
/// "[CODE] message".
class Error : public std::runtime_error {
public:
    /// An error with `code` and the words `message`.
    Error(std::uint32_t code, const std::string &message)
        : std::runtime_error("[" + std::to_string(code) + "] " + message),
          code_(code),
          message_(message)
    {
    }

    /// The shared result code (docs/CODES.md).
    std::uint32_t code() const noexcept { return code_; }
    /// The words, without the code.
    const std::string &message() const noexcept { return message_; }

    /// The error a bridge call's "[CODE] message" text describes (code 6,
    /// TESSERA_PANIC, when the text has no code).
    static Error from_text(std::string_view text)
    {
        std::uint64_t value = 0;
        std::size_t i = 1;
        if (text.size() > 2 && text[0] == '[') {
            while (i < text.size() && text[i] >= '0' && text[i] <= '9' && value <= 0xFFFFFFFFu) {
                value = value * 10 + static_cast<std::uint64_t>(text[i] - '0');
                i++;
            }
            if (i > 1 && i < text.size() && text[i] == ']' && value <= 0xFFFFFFFFu) {
                std::string_view rest = text.substr(i + 1);
                if (!rest.empty() && rest[0] == ' ')
                    rest.remove_prefix(1);
                return Error(static_cast<std::uint32_t>(value), std::string(rest));
            }
        }
        return Error(code::panic, std::string(text));
    }

private:
    std::uint32_t code_;
    std::string message_;
};

/// Agent::handle_input failed: the peer broke the protocol (an Error frame
/// for it is queued) or the call was not allowed. consumed() bytes were taken
/// all the same, the offending frame included: pass the rest again.
class InputError : public Error {
public:
    /// An input error after `consumed` bytes.
    InputError(std::uint32_t code, const std::string &message, std::size_t consumed)
        : Error(code, message), consumed_(consumed)
    {
    }

    /// Bytes taken, the offending frame included.
    std::size_t consumed() const noexcept { return consumed_; }

private:
    std::size_t consumed_;
};

namespace detail {

/// Runs a bridge call, turning its errors into tessera::Error.
template <class F>
decltype(auto) call(F &&f)
{
    try {
        return f();
    } catch (const rust::Error &e) {
        throw Error::from_text(e.what());
    } catch (const std::invalid_argument &e) {
        // rust::Str refuses text that is not UTF-8.
        throw Error(code::invalid_argument, e.what());
    }
}

inline rust::Slice<const std::uint8_t> slice(bytes_view v) noexcept
{
    return rust::Slice<const std::uint8_t>(v.data(), v.size());
}

inline rust::Slice<std::uint8_t> slice(mutable_bytes_view v) noexcept
{
    return rust::Slice<std::uint8_t>(v.data(), v.size());
}

template <class T>
rust::Slice<const T> slice(view<const T> v) noexcept
{
    return rust::Slice<const T>(v.data(), v.size());
}

/// May throw std::invalid_argument (not UTF-8): call it inside call().
inline rust::Str str(std::string_view s)
{
    return s.empty() ? rust::Str() : rust::Str(s.data(), s.size());
}

inline std::string string(const rust::String &s)
{
    return std::string(s.data(), s.size());
}

inline std::vector<std::uint8_t> bytes(const rust::Vec<std::uint8_t> &v)
{
    return std::vector<std::uint8_t>(v.data(), v.data() + v.size());
}

template <class T>
std::vector<T> vector(const rust::Vec<T> &v)
{
    return std::vector<T>(v.begin(), v.end());
}

}  // namespace detail

/// The library's version as `major << 16 | minor << 8 | patch`; compare with
/// TESSERA_VERSION_NUMBER to check that the headers match the library.
inline std::uint32_t version() noexcept { return bridge::version(); }

/// The name and meaning of a result code ("verify_bad_signature: ...").
inline std::string result_text(std::uint32_t code)
{
    return detail::string(bridge::result_text(code));
}

// ----- shared plain types ----------------------------------------------------

/// The connection's state (values of TESSERA_CONN_*).
using ConnState = bridge::ConnState;
/// What kind of device (values of TESSERA_DEVICE_*).
using DeviceType = bridge::DeviceType;
/// What the host must do (values of TESSERA_EVENT_*).
using EventKind = bridge::EventKind;
/// A job's state on the agent (values of TESSERA_JOB_*).
using JobState = bridge::JobState;
/// Metered usage of a job: gpu_time_us, dispatches, bytes_in, bytes_out.
using Usage = bridge::Usage;
/// A position in a key's receipt chain: next_sequence, prev_hash.
using ChainState = bridge::ChainState;
/// Offers, prices and timers of an agent.
using Policy = bridge::Policy;
/// An event of the agent: kind, job, stream, offset, len, reason, code (as
/// tessera_event).
using Event = bridge::Event;
/// Counters of an agent.
using AgentStats = bridge::AgentStats;
/// A specialization constant: id, value.
using SpecConstant = bridge::SpecConstant;
/// One buffer of a job's layout: binding, len, init_len, readback.
using BufferSpec = bridge::BufferSpec;
/// The start-up benchmark's figures: copy_gbps, fma_gflops.
using Benchmark = bridge::Benchmark;
/// A verified receipt (the fields of tessera_receipt_info).
using ReceiptInfo = bridge::ReceiptInfo;
/// What Agent::send_output did: output bytes taken, bytes written to send.
using OutputSent = bridge::OutputSent;

static_assert(static_cast<unsigned>(EventKind::Ready) == TESSERA_EVENT_READY, "event kinds");
static_assert(static_cast<unsigned>(EventKind::Disconnect) == TESSERA_EVENT_DISCONNECT,
              "event kinds");
static_assert(static_cast<unsigned>(ConnState::Ready) == TESSERA_CONN_READY, "states");
static_assert(static_cast<unsigned>(JobState::AwaitingAck) == TESSERA_JOB_AWAITING_ACK,
              "job states");
static_assert(static_cast<unsigned>(DeviceType::Cpu) == TESSERA_DEVICE_CPU, "device types");

/// Where a key that never signed starts its chain: sequence 1, no previous
/// receipt.
inline ChainState first_chain() noexcept { return ChainState{1, {}}; }

/// What a device is and can do, as evidence states it (and as an agent is
/// configured with).
struct DeviceInfo {
    /// Device name, at most 64 bytes of UTF-8.
    std::string name;
    /// PCI vendor id.
    std::uint32_t vendor_id = 0;
    /// Vendor's device id.
    std::uint32_t device_id = 0;
    /// Driver version, vendor-encoded.
    std::uint32_t driver_version = 0;
    /// Vulkan API version the device supports.
    std::uint32_t api_version = 0;
    /// What kind of device.
    DeviceType device_type = DeviceType::Other;
    /// Feature bits (PROTOCOL.md, "Device capabilities").
    std::uint32_t features = 0;
    /// Bytes of device-local memory.
    std::uint64_t device_local_bytes = 0;
    /// Bytes of host-visible memory.
    std::uint64_t host_visible_bytes = 0;
    /// Largest workgroup size in x, y, z.
    std::array<std::uint32_t, 3> max_workgroup_size{};
    /// Most workgroups in one dispatch in x, y, z.
    std::array<std::uint32_t, 3> max_workgroup_count{};
    /// Most invocations in one workgroup.
    std::uint32_t max_invocations = 0;
    /// Bytes of workgroup shared memory.
    std::uint32_t max_shared_memory = 0;
    /// Largest storage buffer binding, in bytes.
    std::uint64_t max_storage_buffer_range = 0;
    /// Subgroup size.
    std::uint32_t subgroup_size = 0;
    /// Measured copy bandwidth, MB/s (0: not measured).
    std::uint32_t copy_mbps = 0;
    /// Measured FMA throughput, MFLOP/s (0: not measured).
    std::uint32_t fma_mflops = 0;
};

/// Verified device evidence.
struct EvidenceInfo {
    /// The challenge the evidence answers.
    std::array<std::uint8_t, 32> challenge{};
    /// The device's public key, which signed it.
    PublicKey public_key{};
    /// The key's id.
    KeyId key_id{};
    /// Agent software version: major, minor, patch.
    std::array<std::uint16_t, 3> agent_version{};
    /// Random id the agent chose at its boot.
    std::array<std::uint8_t, 16> boot_id{};
    /// When the evidence was made, microseconds in the provider's time base.
    std::uint64_t issued_at = 0;
    /// The provider's receipt chain then: where a ChainVerifier starts.
    ChainState chain{};
    /// What the device is and can do.
    DeviceInfo device;
    /// The provider's X25519 public key for this session, to which
    /// requesters seal jobs (all zeros: it takes no sealed jobs).
    std::array<std::uint8_t, 32> enc_key{};
    /// The kind of hardware attestation report the evidence names
    /// (TESSERA_HARDWARE_REPORT_*; 0: none).
    std::uint16_t hardware_report_kind = 0;
    /// SHA-256 of that report's bytes.
    std::array<std::uint8_t, 32> hardware_report_hash{};
};

namespace detail {

inline DeviceInfo device(const bridge::DeviceInfo &d)
{
    return DeviceInfo{string(d.name),        d.vendor_id,          d.device_id,
                      d.driver_version,      d.api_version,        d.device_type,
                      d.features,            d.device_local_bytes, d.host_visible_bytes,
                      d.max_workgroup_size,  d.max_workgroup_count, d.max_invocations,
                      d.max_shared_memory,   d.max_storage_buffer_range,
                      d.subgroup_size,       d.copy_mbps,          d.fma_mflops};
}

/// May throw std::invalid_argument (a name that is not UTF-8).
inline bridge::DeviceInfo device(const DeviceInfo &d)
{
    return bridge::DeviceInfo{rust::String(d.name),  d.vendor_id,          d.device_id,
                              d.driver_version,      d.api_version,        d.device_type,
                              d.features,            d.device_local_bytes, d.host_visible_bytes,
                              d.max_workgroup_size,  d.max_workgroup_count, d.max_invocations,
                              d.max_shared_memory,   d.max_storage_buffer_range,
                              d.subgroup_size,       d.copy_mbps,          d.fma_mflops};
}

inline EvidenceInfo evidence(const bridge::EvidenceInfo &e)
{
    return EvidenceInfo{e.challenge,  e.public_key, e.key_id,
                        e.agent_version, e.boot_id, e.issued_at,
                        e.chain,      device(e.device), e.enc_key,
                        e.hardware_report_kind, e.hardware_report_hash};
}

}  // namespace detail

// ----- verification and keys -------------------------------------------------

/// Verifies one signed receipt under the 32-byte `public_key`: form,
/// signature, and that it names that key (its place in the chain is
/// ChainVerifier's to check). Either form: signed alone (444 bytes) or
/// batched (509 to 765 bytes, one signature over a batch of jobs). Throws code::verify_malformed,
/// verify_bad_signature or verify_unknown_key.
inline ReceiptInfo verify_receipt(bytes_view receipt, bytes_view public_key)
{
    return detail::call([&] {
        return bridge::verify_receipt(detail::slice(receipt), detail::slice(public_key));
    });
}

/// The hash the next receipt of the chain names (SHA-256 of the signed bytes
/// of a receipt signed alone, of the payload of a batched one).
inline Digest receipt_hash(bytes_view receipt) noexcept
{
    return bridge::receipt_hash(detail::slice(receipt));
}

/// Verifies signed evidence answering the 32-byte `challenge` this verifier
/// issued. Throws code::verify_malformed, verify_bad_signature,
/// verify_unknown_key or verify_wrong_nonce.
inline EvidenceInfo verify_evidence(bytes_view evidence, bytes_view challenge)
{
    return detail::evidence(detail::call([&] {
        return bridge::verify_evidence(detail::slice(evidence), detail::slice(challenge));
    }));
}

/// Verifies evidence's form and signature only (for a third party that did
/// not issue the challenge: the result says which challenge it answers).
inline EvidenceInfo open_evidence(bytes_view evidence)
{
    return detail::evidence(
        detail::call([&] { return bridge::open_evidence(detail::slice(evidence)); }));
}

/// The hash receipts bind evidence by (SHA-256 of the signed bytes).
inline Digest evidence_hash(bytes_view evidence) noexcept
{
    return bridge::evidence_hash(detail::slice(evidence));
}

/// The kernel hash a receipt binds: the SPIR-V module's Merkle root
/// (merkle_root()), entry point, specialization constants, push constants,
/// grid and buffer layout. Throws code::invalid_argument past what a job
/// assignment can carry.
inline Digest kernel_hash(bytes_view spirv_root, std::string_view entry_point,
                          view<const SpecConstant> specialization, bytes_view push_constants,
                          std::array<std::uint32_t, 3> grid, view<const BufferSpec> buffers)
{
    return detail::call([&] {
        return bridge::kernel_hash(detail::slice(spirv_root), detail::str(entry_point),
                                   detail::slice(specialization), detail::slice(push_constants),
                                   grid, detail::slice(buffers));
    });
}

/// The result hash, the same on every honest replica of a job.
inline Digest result_hash(bytes_view kernel_hash, bytes_view input_root, bytes_view output_root,
                          std::uint64_t output_len)
{
    return detail::call([&] {
        return bridge::result_hash(detail::slice(kernel_hash), detail::slice(input_root),
                                   detail::slice(output_root), output_len);
    });
}

/// The result seal, unique to one provider's key.
inline Digest result_seal(bytes_view public_key, std::uint64_t job, bytes_view result_hash)
{
    return detail::call([&] {
        return bridge::result_seal(detail::slice(public_key), job, detail::slice(result_hash));
    });
}

/// The Merkle root of `data` cut into chunk_size chunks.
inline Digest merkle_root(bytes_view data) noexcept
{
    return bridge::merkle_root(detail::slice(data));
}

/// A new Ed25519 device key from the system's random source, as a PKCS#8 v2
/// document: it is the private key, store it where only the agent reads it.
inline std::vector<std::uint8_t> generate_key()
{
    return detail::bytes(detail::call([] { return bridge::generate_key(); }));
}

/// The public key of a PKCS#8 document (code::key_rejected if it is not an
/// Ed25519 key).
inline PublicKey key_public(bytes_view pkcs8)
{
    return detail::call([&] { return bridge::key_public(detail::slice(pkcs8)); });
}

/// The public key of a 32-byte Ed25519 seed.
inline PublicKey seed_public_key(bytes_view seed)
{
    return detail::call([&] { return bridge::seed_public_key(detail::slice(seed)); });
}

/// The id of a 32-byte public key: what Hello, COSE headers and receipts
/// name the key by.
inline KeyId key_id(bytes_view public_key)
{
    return detail::call([&] { return bridge::key_id_of(detail::slice(public_key)); });
}

/// Checks one provider key's receipts in order: signature, key, sequence,
/// previous-receipt hash and (optionally) the requester nonce. Keep one per
/// provider key.
class ChainVerifier {
public:
    /// A verifier for the 32-byte `public_key` (from verified evidence),
    /// expecting the chain to continue from `chain`: first_chain() for a key
    /// that never signed, the evidence's chain for a provider seen the first
    /// time, or what chain() returned before.
    explicit ChainVerifier(bytes_view public_key, const ChainState &chain = first_chain())
        : inner_(detail::call([&] {
              return bridge::new_chain_verifier(detail::slice(public_key), chain);
          }))
    {
    }

    /// Verifies the next receipt; on success the chain advances. With a
    /// 32-byte `expected_nonce` (empty: any) the receipt must carry that
    /// requester nonce. Throws the codes of verify_receipt() and
    /// code::verify_replayed, verify_out_of_order, verify_broken_chain,
    /// verify_wrong_nonce; on error the chain stays where it was.
    ReceiptInfo verify_next(bytes_view receipt, bytes_view expected_nonce = {})
    {
        return detail::call([&] {
            return inner_->verify_next(detail::slice(receipt), detail::slice(expected_nonce));
        });
    }

    /// Where the chain stands after the receipts verified so far.
    ChainState chain() const noexcept { return inner_->chain(); }

private:
    rust::Box<bridge::ChainVerifier> inner_;
};

// ----- the runtime -----------------------------------------------------------

/// What a runtime's operator sees.
struct RuntimeStatus {
    /// The connection's state.
    ConnState state = ConnState::Disconnected;
    /// The runtime has drained and stopped.
    bool finished = false;
    /// The device takes no new work now (the host said so, or results wait).
    bool device_unavailable = false;
    /// Jobs completed and acknowledged.
    std::uint64_t jobs_completed = 0;
    /// Jobs failed (acknowledged).
    std::uint64_t jobs_failed = 0;
    /// Jobs held now.
    std::uint64_t active_jobs = 0;
    /// Sum of the prices of acknowledged jobs.
    std::uint64_t earnings = 0;
    /// Sessions established since start.
    std::uint64_t sessions = 0;
    /// The coordinator's address.
    std::string coordinator;
    /// The device's name.
    std::string device;
    /// The last connection or store error, or empty.
    std::string last_error;
};

namespace detail {

inline RuntimeStatus status(const bridge::RuntimeStatus &s)
{
    return RuntimeStatus{s.state,          s.finished,  s.device_unavailable,
                         s.jobs_completed, s.jobs_failed, s.active_jobs,
                         s.earnings,       s.sessions,  string(s.coordinator),
                         string(s.device), string(s.last_error)};
}

}  // namespace detail

/// A provider on the network: it connects to the coordinator over TLS, keeps
/// the session up (reconnecting with backoff), runs jobs on the GPU through
/// the Vulkan dispatcher on a worker thread, keeps results until they are
/// acknowledged, and drains on request. The host steps it from its own loop:
/// poll() fd() for reading, at most until next_wakeup(), then step().
class Runtime {
public:
    /// The part of a runtime that any thread may use at any time, also while
    /// the owner steps it.
    class Remote {
    public:
        /// Asks the runtime to drain (see Runtime::drain).
        void drain() const noexcept { inner_->drain(); }
        /// Whether the device takes new work; applies at the next step,
        /// which it wakes.
        void set_accepting_jobs(bool accepting) const noexcept
        {
            inner_->set_accepting_jobs(accepting);
        }
        /// Whether the runtime has drained and stopped (as of its last step).
        bool finished() const noexcept { return inner_->is_finished(); }
        /// The status as of the last step.
        RuntimeStatus status() const { return detail::status(inner_->status()); }
        /// The status line, as tessera-agent logs it.
        std::string status_line() const { return detail::string(inner_->status_line()); }

    private:
        friend class Runtime;
        explicit Remote(rust::Box<bridge::RuntimeRemote> inner) : inner_(std::move(inner)) {}
        rust::Box<bridge::RuntimeRemote> inner_;
    };

    /// A provider from the operator's TOML file (README, "The operator
    /// program"): device key (created if missing), result store, GPU and
    /// coordinator as the file says. It connects on the first step(). Throws
    /// code::io (the file), invalid_config, key_rejected, a store code or a
    /// Vulkan code.
    explicit Runtime(std::string_view config_path)
        : inner_(detail::call([&] { return bridge::new_runtime(detail::str(config_path)); }))
    {
    }

    /// One turn of the host's loop: waits at most `max_wait` for the network
    /// or a job (zero: not at all), then does all work that is ready. Throws
    /// when the runtime cannot go on (its event loop or store failed).
    void step(std::chrono::milliseconds max_wait = std::chrono::milliseconds(0))
    {
        const auto ms = max_wait.count() < 0 ? 0 : static_cast<std::uint64_t>(max_wait.count());
        detail::call([&] { inner_->step(ms); });
    }

    /// The descriptor that becomes readable when step() has work: poll() it
    /// for reading; do not read from or close it.
    int fd() const noexcept { return inner_->fd(); }

    /// How long from now step() must be called (zero: now), rounded up to
    /// the millisecond; on Linux fd() also becomes readable at that time.
    /// nullopt when only fd() matters.
    std::optional<std::chrono::milliseconds> next_wakeup() const noexcept
    {
        const std::int64_t ms = inner_->next_wakeup_ms();
        if (ms < 0)
            return std::nullopt;
        return std::chrono::milliseconds(ms);
    }

    /// Whether the device takes new work: a render engine says false while
    /// its user renders. Offers are declined meanwhile; jobs taken run on.
    void set_accepting_jobs(bool accepting) noexcept { inner_->set_accepting_jobs(accepting); }

    /// Asks the runtime to drain: finish the jobs it holds, take no new ones,
    /// say goodbye; it stops anyway after the drain timeout of its
    /// configuration. Keep stepping until finished().
    void drain() noexcept { inner_->drain(); }

    /// Whether the runtime has drained and stopped.
    bool finished() const noexcept { return inner_->is_finished(); }

    /// The status as of the last step.
    RuntimeStatus status() const { return detail::status(inner_->status()); }

    /// The status line, as tessera-agent logs it (with the error that
    /// stopped the runtime, if one did).
    std::string status_line() const { return detail::string(inner_->status_line()); }

    /// A handle for other threads (a UI thread, a signal-handling thread);
    /// it may outlive the runtime, after which it reports the last status.
    Remote remote() const { return Remote(inner_->remote()); }

private:
    rust::Box<bridge::Runtime> inner_;
};

// ----- the dispatcher --------------------------------------------------------

/// One Vulkan device as the loader lists it.
struct DeviceEntry {
    /// Its index (Dispatcher::Options::index).
    std::uint32_t index = 0;
    /// The driver's name for it.
    std::string name;
    /// What kind of device.
    DeviceType device_type = DeviceType::Other;
    /// PCI vendor id.
    std::uint32_t vendor_id = 0;
    /// Vendor's device id.
    std::uint32_t device_id = 0;
    /// Highest Vulkan version it supports.
    std::uint32_t api_version = 0;
};

/// One storage buffer of a kernel job.
struct KernelBuffer {
    /// Binding in descriptor set 0 (below 32, distinct within the job).
    std::uint32_t binding = 0;
    /// Bytes the kernel sees.
    std::uint64_t len = 0;
    /// Initial contents (at most `len` bytes; the rest is zero).
    bytes_view init;
    /// Whether the final contents are returned.
    bool readback = false;
};

/// An untrusted compute job. The views are read during Dispatcher::run only.
struct KernelJob {
    /// SPIR-V module bytes.
    bytes_view spirv;
    /// The GLCompute entry point.
    std::string_view entry_point = "main";
    /// Specialization constants.
    view<const SpecConstant> specialization;
    /// Push-constant bytes.
    bytes_view push_constants;
    /// Workgroup counts in x, y, z.
    std::array<std::uint32_t, 3> grid{{1, 1, 1}};
    /// The buffers.
    std::vector<KernelBuffer> buffers;
    /// Time limit: past it the kernel is stopped (code::job_base + 1).
    std::chrono::milliseconds timeout = std::chrono::seconds(10);
};

/// One read-back buffer's final contents.
struct KernelOutput {
    /// Its binding.
    std::uint32_t binding = 0;
    /// Its bytes.
    std::vector<std::uint8_t> data;
};

/// What a kernel job returned.
struct KernelResult {
    /// The read-back buffers, in buffer order.
    std::vector<KernelOutput> outputs;
    /// What it used.
    Usage usage{};
};

/// After a failed Dispatcher::run: what to give Agent::fail_job.
struct JobFailure {
    /// The wire fail reason (code - code::fail_base).
    std::uint32_t reason = 0;
    /// Its detail (the kernel rule for a refused kernel).
    std::uint32_t detail = 0;
    /// The usage to report (a timeout is metered to its limit).
    Usage usage{};
};

/// Runs untrusted compute kernels on one Vulkan device: robust buffer access
/// on, both gates (Tessera's validator, then the Khronos spirv-val) in front
/// of the driver (docs/VULKAN.md).
class Dispatcher {
public:
    /// How to open a dispatcher.
    struct Options {
        /// The device's index (devices()); none: the default device, a
        /// discrete GPU first, or the one `name` names.
        std::optional<std::uint32_t> index;
        /// Part of the device name (case-insensitive), or empty.
        std::string name;
        /// Run the Khronos validation layer and keep its messages (slow).
        bool validation = false;
        /// Run the Khronos SPIR-V validator on every new kernel.
        bool spirv_val_gate = true;
        /// The spirv-val program, or empty for the one on PATH.
        std::string spirv_val_path;
        /// Most bytes of buffers one job may use; none: the library's default.
        std::optional<std::uint64_t> memory_budget;
        /// Run the start-up benchmark when opening (its figures go into the
        /// evidence, and bound each job's work).
        bool run_benchmark = true;
    };

    /// The Vulkan devices (code::vulkan_base + 1 without a Vulkan loader).
    static std::vector<DeviceEntry> devices()
    {
        const auto list = detail::call([] { return bridge::vulkan_devices(); });
        std::vector<DeviceEntry> out;
        out.reserve(list.size());
        for (const auto &d : list)
            out.push_back(DeviceEntry{d.index, detail::string(d.name), d.device_type,
                                      d.vendor_id, d.device_id, d.api_version});
        return out;
    }

    /// Opens the device `options` selects.
    explicit Dispatcher(const Options &options) : inner_(open(options)) {}

    /// Opens the default device.
    static Dispatcher open_default(bool run_benchmark = true)
    {
        Options o;
        o.run_benchmark = run_benchmark;
        return Dispatcher(o);
    }

    /// Opens the device at `index` of devices().
    static Dispatcher open_index(std::uint32_t index, bool run_benchmark = true)
    {
        Options o;
        o.index = index;
        o.run_benchmark = run_benchmark;
        return Dispatcher(o);
    }

    /// What the device is, as evidence states it: give it to
    /// AgentConfig::device.
    DeviceInfo device() const { return detail::device(inner_->device()); }

    /// Runs the start-up benchmark (again).
    Benchmark benchmark()
    {
        return detail::call([&] { return inner_->benchmark(); });
    }

    /// Runs a job: both gates, then the kernel under its time limit. Throws
    /// its code on failure (code::kernel_base + the rule for a refused
    /// kernel, code::job_base + 1 for a timeout, ...); last_failure() then
    /// says what to report. The dispatcher stays usable after every failure.
    KernelResult run(const KernelJob &job)
    {
        std::vector<bridge::KernelBuffer> buffers;
        buffers.reserve(job.buffers.size());
        for (const auto &b : job.buffers)
            buffers.push_back(bridge::KernelBuffer{b.binding, b.len, detail::slice(b.init),
                                                   b.readback});
        auto result = detail::call([&] {
            const bridge::KernelJob j{
                detail::slice(job.spirv),
                detail::str(job.entry_point),
                detail::slice(job.specialization),
                detail::slice(job.push_constants),
                job.grid,
                rust::Slice<const bridge::KernelBuffer>(buffers.data(), buffers.size()),
                job.timeout.count() < 0 ? 0 : static_cast<std::uint64_t>(job.timeout.count())};
            return inner_->run(j);
        });
        KernelResult out;
        out.usage = result.usage;
        out.outputs.reserve(result.outputs.size());
        for (const auto &o : result.outputs)
            out.outputs.push_back(KernelOutput{o.binding, detail::bytes(o.data)});
        return out;
    }

    /// After run() threw: the wire failure to report; nullopt after a
    /// success.
    std::optional<JobFailure> last_failure() const noexcept
    {
        const bridge::JobFailure f = inner_->last_failure();
        if (!f.failed)
            return std::nullopt;
        return JobFailure{f.reason, f.detail, f.usage};
    }

    /// Destroys devices given up on after a timeout whose kernels ended;
    /// returns how many still run abandoned work (at two, run() refuses jobs).
    std::size_t reclaim() noexcept { return inner_->reclaim(); }

private:
    static rust::Box<bridge::Dispatcher> open(const Options &o)
    {
        return detail::call([&] {
            if (o.index && *o.index > 0x7FFFFFFFu)
                throw Error(code::invalid_argument, "device index out of range");
            bridge::DispatcherOptions b = bridge::dispatcher_options_default();
            b.device_index = o.index ? static_cast<std::int32_t>(*o.index) : -1;
            b.device_name = rust::String(o.name);
            b.validation = o.validation;
            b.spirv_val_gate = o.spirv_val_gate;
            b.spirv_val_path = rust::String(o.spirv_val_path);
            if (o.memory_budget)
                b.memory_budget = *o.memory_budget;
            b.run_benchmark = o.run_benchmark;
            return bridge::open_dispatcher(b);
        });
    }

    rust::Box<bridge::Dispatcher> inner_;
};

// ----- the agent -------------------------------------------------------------

/// The agent's configuration; constructed with the library's defaults (its
/// version, a zero boot id, an empty device, the default policy).
struct AgentConfig {
    /// Agent software version: major, minor, patch.
    std::array<std::uint16_t, 3> agent_version{};
    /// Random id chosen at each boot: set a random one.
    std::array<std::uint8_t, 16> boot_id{};
    /// What the device is (Dispatcher::device()).
    DeviceInfo device;
    /// Offers, prices and timers.
    Policy policy{};
    /// Hold each signed result back until the host stored it
    /// (EventKind::PersistResult, then Agent::confirm_persisted).
    bool persist_results = false;

    /// The defaults.
    AgentConfig()
    {
        const bridge::AgentConfig d = bridge::agent_config_default();
        agent_version = d.agent_version;
        boot_id = d.boot_id;
        device = detail::device(d.device);
        policy = d.policy;
        persist_results = d.persist_results;
    }
};

namespace detail {

/// May throw std::invalid_argument (a device name that is not UTF-8).
inline bridge::AgentConfig device_config(const AgentConfig &c)
{
    return bridge::AgentConfig{c.agent_version, c.boot_id, device(c.device), c.policy,
                               c.persist_results};
}

}  // namespace detail

/// What the agent knows of a job.
struct JobInfo {
    /// The job's state.
    JobState state = JobState::Accepted;
    /// The job's deadline now, if it has one (agent time).
    std::optional<Micros> deadline;
    /// Whether the assignment arrived (the fields below are set).
    bool assigned = false;
    /// SPIR-V bytes (stream 0).
    std::uint32_t kernel_len = 0;
    /// The GLCompute entry point.
    std::string entry_point;
    /// Specialization constants.
    std::vector<SpecConstant> specialization;
    /// Push-constant bytes.
    std::vector<std::uint8_t> push_constants;
    /// Workgroup counts in x, y, z.
    std::array<std::uint32_t, 3> grid{};
    /// The buffers (buffer i is input stream i + 1 and output buffer i).
    std::vector<BufferSpec> buffers;
    /// The requester's nonce.
    std::array<std::uint8_t, 32> requester_nonce{};
};

/// The provider agent, sans-IO: the host owns the transport and the clock.
/// Feed received bytes with handle_input(), then drain poll_transmit() (bytes
/// to send), poll_event() (what to do) and poll_timeout() (when to call
/// handle_timeout()). It signs with a built-in Ed25519 key.
class Agent {
public:
    /// An agent whose key is the Ed25519 key of the 32-byte `seed`, its
    /// receipt chain continuing from `chain`. Throws code::invalid_config
    /// (naming the field), key_rejected or invalid_argument.
    static Agent from_seed(const AgentConfig &config, bytes_view seed,
                           const ChainState &chain = first_chain())
    {
        return Agent(detail::call([&] {
            return bridge::new_agent_from_seed(detail::device_config(config),
                                               detail::slice(seed), chain);
        }));
    }

    /// An agent whose key is in the PKCS#8 document `pkcs8`
    /// (generate_key()).
    static Agent from_pkcs8(const AgentConfig &config, bytes_view pkcs8,
                            const ChainState &chain = first_chain())
    {
        return Agent(detail::call([&] {
            return bridge::new_agent_from_pkcs8(detail::device_config(config),
                                                detail::slice(pkcs8), chain);
        }));
    }

    /// Opens a session on a transport the host just connected: queues Hello.
    /// Throws code::already_connected while a session is open.
    void connect(Micros now)
    {
        detail::call([&] { inner_->connect(us(now)); });
    }

    /// The transport closed (or failed). Jobs keep running; results wait for
    /// the next session.
    void disconnected(Micros now) noexcept { inner_->disconnected(us(now)); }

    /// Feeds received bytes; returns how many were taken (fewer than given
    /// when events or transmits must be drained first: pass the rest again
    /// then). Throws InputError, which says how many were taken.
    std::size_t handle_input(Micros now, bytes_view data)
    {
        const bridge::InputOutcome r = inner_->handle_input(us(now), detail::slice(data));
        if (r.code != 0)
            throw InputError(r.code, detail::string(r.message), r.consumed);
        return r.consumed;
    }

    /// Writes the next bytes to send into `out`: their length, nullopt when
    /// there are none. A buffer of max_frame bytes always makes progress.
    std::optional<std::size_t> poll_transmit(Micros now, mutable_bytes_view out)
    {
        const std::size_t n =
            detail::call([&] { return inner_->poll_transmit(us(now), detail::slice(out)); });
        if (n == 0)
            return std::nullopt;
        return n;
    }

    /// Bytes queued for sending.
    std::size_t pending_transmit() const noexcept { return inner_->pending_transmit(); }

    /// The next event, nullopt when there is none.
    std::optional<Event> poll_event() noexcept
    {
        const Event e = inner_->poll_event();
        if (e.kind == EventKind::None)
            return std::nullopt;
        return e;
    }

    /// When handle_timeout() is next due (agent time); nullopt when no timer
    /// runs.
    std::optional<Micros> poll_timeout() const noexcept
    {
        const std::int64_t t = inner_->poll_timeout();
        if (t < 0)
            return std::nullopt;
        return Micros(t);
    }

    /// Runs the timers due at `now` (heartbeats, peer silence, deadlines).
    void handle_timeout(Micros now) noexcept { inner_->handle_timeout(us(now)); }

    /// The input piece of the last EventKind::JobData polled for `job`
    /// (at most max_input_piece bytes), valid until the next non-const
    /// call. Throws code::no_input once handle_input() was called again.
    /// A chunk's pieces are checked when its last one arrives: data that
    /// fails ends the job with EventKind::CancelJob
    /// (TESSERA_CANCEL_INPUT_INTEGRITY) instead of its last piece, so the
    /// inputs are known good only at EventKind::RunJob.
    bytes_view input(std::uint64_t job) const
    {
        const auto s = detail::call([&] { return inner_->input(job); });
        return bytes_view(s.data(), s.size());
    }

    /// Copies that piece into `out` and returns its length
    /// (code::buffer_too_small when it does not fit; max_input_piece always
    /// does).
    std::size_t read_input(std::uint64_t job, mutable_bytes_view out) const
    {
        return detail::call([&] { return inner_->read_input(job, detail::slice(out)); });
    }

    /// What the agent knows of `job` (code::unknown_job if it holds none).
    JobInfo job_info(std::uint64_t job) const
    {
        const bridge::JobInfo i = detail::call([&] { return inner_->job_info(job); });
        JobInfo out;
        out.state = i.state;
        if (i.has_deadline)
            out.deadline = Micros(static_cast<Micros::rep>(i.deadline_us));
        out.assigned = i.assigned;
        out.kernel_len = i.kernel_len;
        out.entry_point = detail::string(i.entry_point);
        out.specialization = detail::vector(i.specialization);
        out.push_constants = detail::bytes(i.push_constants);
        out.grid = i.grid;
        out.buffers = detail::vector(i.buffers);
        out.requester_nonce = i.requester_nonce;
        return out;
    }

    /// Takes the next bytes of read-back buffer `buffer` of a job that ran
    /// and writes their frames into `out`: first the frames already queued
    /// (as poll_transmit() would), then one output chunk frame per whole
    /// chunk (or the buffer's tail) that fits. Send the first `written`
    /// bytes of `out` before anything polled after. `taken` is 0 when `out`
    /// had no room for the next chunk's frame: send what was written and
    /// call again with the same bytes. An `out` of transmit_buffer bytes
    /// takes a chunk at every call, one of max_frame bytes always makes
    /// progress; a smaller one that can never hold the next frame throws
    /// code::buffer_too_small. While no session is up the bytes are taken
    /// and nothing is written (EventKind::ResendOutputs asks for them
    /// again). Buffers go in order, each from its start to its end.
    OutputSent send_output(Micros now, std::uint64_t job, std::uint32_t buffer, bytes_view data,
                           mutable_bytes_view out)
    {
        return detail::call([&] {
            return inner_->send_output(us(now), job, buffer, detail::slice(data),
                                       detail::slice(out));
        });
    }

    /// Ends a job whose outputs were all written: signs its receipt.
    void finish_job(Micros now, std::uint64_t job, const Usage &usage)
    {
        detail::call([&] { inner_->finish_job(us(now), job, usage); });
    }

    /// Ends a job that could not run: `reason` is a wire fail reason (1
    /// kernel rejected ... 7 host), `detail` its detail (Dispatcher's
    /// last_failure() has both).
    void fail_job(Micros now, std::uint64_t job, std::uint32_t reason, std::uint32_t detail,
                  const Usage &usage)
    {
        detail::call([&] { inner_->fail_job(us(now), job, reason, detail, usage); });
    }

    /// Ends a job with the failure a dispatcher reported.
    void fail_job(Micros now, std::uint64_t job, const JobFailure &failure)
    {
        fail_job(now, job, failure.reason, failure.detail, failure.usage);
    }

    /// Reports a running job's progress, in thousandths.
    void report_progress(Micros now, std::uint64_t job, std::uint32_t permille)
    {
        detail::call([&] { inner_->report_progress(us(now), job, permille); });
    }

    /// The host stored the job's result record durably (after
    /// EventKind::PersistResult): the agent may send it.
    void confirm_persisted(Micros now, std::uint64_t job)
    {
        detail::call([&] { inner_->confirm_persisted(us(now), job); });
    }

    /// A signed job's result record: what to store on
    /// EventKind::PersistResult, and to give restore_result() after a
    /// restart.
    std::vector<std::uint8_t> result_record(std::uint64_t job) const
    {
        return detail::bytes(detail::call([&] { return inner_->result_record(job); }));
    }

    /// Gives back a result record stored before a restart.
    void restore_result(bytes_view record)
    {
        detail::call([&] { inner_->restore_result(detail::slice(record)); });
    }

    /// Takes no more offers; says goodbye once every held job is
    /// acknowledged (EventKind::Disconnect follows).
    void drain(Micros now)
    {
        detail::call([&] { inner_->drain(us(now)); });
    }

    /// Whether the device takes work now: offers are declined while not.
    void set_device_available(Micros now, bool available) noexcept
    {
        inner_->set_device_available(us(now), available);
    }

    /// The connection's state.
    ConnState state() const noexcept { return inner_->state(); }
    /// Where the receipt chain stands: keep it across restarts.
    ChainState chain() const noexcept { return inner_->chain(); }
    /// The agent's counters.
    AgentStats stats() const noexcept { return inner_->stats(); }
    /// Jobs held now.
    std::size_t active_jobs() const noexcept { return inner_->active_jobs(); }
    /// The id of the agent's key.
    KeyId key_id() const noexcept { return inner_->key_id(); }

private:
    explicit Agent(rust::Box<bridge::Agent> inner) : inner_(std::move(inner)) {}

    static std::uint64_t us(Micros t) noexcept
    {
        return t.count() < 0 ? 0 : static_cast<std::uint64_t>(t.count());
    }

    rust::Box<bridge::Agent> inner_;
};

}  // namespace tessera

#endif /* TESSERA_HPP */
