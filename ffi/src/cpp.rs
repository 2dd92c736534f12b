//! The C++ API's bridge (feature `cpp`): what `include/tessera.hpp` wraps.
//!
//! A cxx bridge over the Rust core, not over the C ABI: opaque Rust types
//! (`Runtime`, `RuntimeRemote`, `Dispatcher`, `Agent`, `ChainVerifier`),
//! shared structs and enums, and free functions for verification and keys.
//! Every fallible function returns a `Result` whose error text is
//! `"[CODE] message"`, CODE being the shared result code (`docs/CODES.md`);
//! cxx throws it in C++ as `rust::Error`, and `tessera.hpp` turns that into
//! `tessera::Error` with `code()`. A panic inside a fallible function is
//! caught and returned as code 6 (`TESSERA_PANIC`).
//!
//! The bridge's generated header is committed as
//! `include/tessera/cxx/bridge.h` (with `include/tessera/cxx/rust/cxx.h`);
//! `ci/c-test` fails when they differ from what the build generates.

use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration as StdDuration;

use tessera_core::agent::{ResultRecord, MAX_RECORD_BYTES};
use tessera_core::attest::{
    self, ChainState as CoreChain, DeviceCapabilities, DeviceType as CoreDeviceType, Ed25519Signer,
    Evidence, Receipt, ReceiptVerifier, Signer,
};
use tessera_core::bounded::BoundedString;
use tessera_core::codes;
use tessera_core::gpu_host::{evidence_capabilities, failure_of};
use tessera_core::limits::{MAX_BUFFERS, MAX_ENTRY_POINT, MAX_PUSH_CONSTANTS, MAX_SPEC_CONSTANTS};
use tessera_core::net::{DrainHandle, Status};
use tessera_core::operator::OperatorConfig;
use tessera_core::policy::{LinearPrice, Policy as CorePolicy};
use tessera_core::vulkan::{self, DeviceSelector, DispatcherConfig, Instance, KhronosConfig};
use tessera_core::wire::{FailReason, JobId, Usage as CoreUsage};
use tessera_core::{ConnState as CoreConn, Duration, Instant, JobState as CoreJobState};

#[cxx::bridge(namespace = "tessera::bridge")]
mod ffi {
    /// The connection's state (`TESSERA_CONN_*`).
    #[repr(u8)]
    enum ConnState {
        /// No transport.
        Disconnected = 1,
        /// `Hello` sent; waiting for `Welcome`.
        AwaitingWelcome = 2,
        /// Evidence sent; waiting for `Ready`.
        AwaitingReady = 3,
        /// Session established.
        Ready = 4,
        /// Goodbye exchanged.
        Closed = 5,
    }

    /// What kind of device (`TESSERA_DEVICE_*`).
    #[repr(u8)]
    enum DeviceType {
        /// Unknown or other.
        Other = 0,
        /// A GPU sharing memory with the host.
        IntegratedGpu = 1,
        /// A GPU with its own memory.
        DiscreteGpu = 2,
        /// A GPU in a virtual machine.
        VirtualGpu = 3,
        /// A CPU implementation.
        Cpu = 4,
    }

    /// What the host must do (`TESSERA_EVENT_*`); `None` when no event waits.
    #[repr(u8)]
    enum EventKind {
        /// No event.
        None = 0,
        /// The session is established.
        Ready = 1,
        /// A job was assigned: prepare its buffers.
        JobAssigned = 2,
        /// Verified input bytes to read now.
        JobData = 3,
        /// All inputs arrived and verified: run the kernel.
        RunJob = 4,
        /// Stop the job and drop its buffers.
        CancelJob = 5,
        /// Write the job's outputs again, then finish it.
        ResendOutputs = 6,
        /// Store the job's result record durably, then confirm.
        PersistResult = 7,
        /// The coordinator holds the result.
        ResultAcknowledged = 8,
        /// The coordinator refused the result.
        ResultRefused = 9,
        /// The coordinator reported an error.
        PeerError = 10,
        /// Close the transport.
        Disconnect = 11,
    }

    /// A job's state on the agent (`TESSERA_JOB_*`).
    #[repr(u8)]
    enum JobState {
        /// Offer accepted; waiting for the assignment.
        Accepted = 1,
        /// Kernel and inputs arriving.
        Receiving = 2,
        /// Inputs verified; the host runs the kernel.
        Running = 3,
        /// The host writes outputs.
        Uploading = 4,
        /// Signed; waiting for the coordinator's acknowledgement.
        AwaitingAck = 5,
    }

    /// What a provider runtime's operator sees.
    struct RuntimeStatus {
        /// The connection's state.
        state: ConnState,
        /// The runtime has drained and stopped.
        finished: bool,
        /// The device takes no new work now.
        device_unavailable: bool,
        /// Jobs completed and acknowledged.
        jobs_completed: u64,
        /// Jobs failed (acknowledged).
        jobs_failed: u64,
        /// Jobs held now.
        active_jobs: u64,
        /// Sum of the prices of acknowledged jobs.
        earnings: u64,
        /// Sessions established since start.
        sessions: u64,
        /// The coordinator's address.
        coordinator: String,
        /// The device's name.
        device: String,
        /// The last connection or store error, or empty.
        last_error: String,
    }

    /// Metered usage of a job.
    #[derive(Clone, Copy, PartialEq, Eq)]
    struct Usage {
        /// GPU time, microseconds.
        gpu_time_us: u64,
        /// Dispatch commands submitted.
        dispatches: u32,
        /// Bytes received (kernel and inputs).
        bytes_in: u64,
        /// Bytes returned (outputs).
        bytes_out: u64,
    }

    /// A position in a device key's receipt chain.
    #[derive(Clone, Copy, PartialEq, Eq)]
    struct ChainState {
        /// Sequence number of the next receipt (the first is 1).
        next_sequence: u64,
        /// Hash of the last signed receipt (zeros before the first).
        prev_hash: [u8; 32],
    }

    /// What a device is and can do, as evidence states it.
    #[derive(Clone, PartialEq, Eq)]
    struct DeviceInfo {
        /// Device name, at most 64 bytes of UTF-8.
        name: String,
        /// PCI vendor id.
        vendor_id: u32,
        /// Vendor's device id.
        device_id: u32,
        /// Driver version, vendor-encoded.
        driver_version: u32,
        /// Vulkan API version the device supports.
        api_version: u32,
        /// What kind of device.
        device_type: DeviceType,
        /// Feature bits (`PROTOCOL.md`, "Device capabilities").
        features: u32,
        /// Bytes of device-local memory.
        device_local_bytes: u64,
        /// Bytes of host-visible memory.
        host_visible_bytes: u64,
        /// Largest workgroup size in x, y, z.
        max_workgroup_size: [u32; 3],
        /// Most workgroups in one dispatch in x, y, z.
        max_workgroup_count: [u32; 3],
        /// Most invocations in one workgroup.
        max_invocations: u32,
        /// Bytes of workgroup shared memory.
        max_shared_memory: u32,
        /// Largest storage buffer binding, in bytes.
        max_storage_buffer_range: u64,
        /// Subgroup size.
        subgroup_size: u32,
        /// Measured copy bandwidth, MB/s (0: not measured).
        copy_mbps: u32,
        /// Measured FMA throughput, MFLOP/s (0: not measured).
        fma_mflops: u32,
    }

    /// Which offers to take, what to charge, and the session timers.
    #[derive(Clone, Copy, PartialEq, Eq)]
    struct Policy {
        /// Jobs held at once, 1 to `tessera::max_jobs` (32).
        max_concurrent: u32,
        /// Fixed fee per job.
        price_base: u64,
        /// Price per GPU millisecond.
        price_per_gpu_ms: u64,
        /// Price per MiB received.
        price_per_mib_in: u64,
        /// Price per MiB returned.
        price_per_mib_out: u64,
        /// The least charged for any job.
        floor: u64,
        /// Most bytes received for one job.
        max_bytes_in: u64,
        /// Most bytes returned for one job.
        max_bytes_out: u64,
        /// Heartbeat interval, milliseconds.
        heartbeat_interval_ms: u64,
        /// Silence after which the coordinator is given up, milliseconds.
        peer_timeout_ms: u64,
    }

    /// The sans-IO agent's configuration.
    #[derive(Clone, PartialEq, Eq)]
    struct AgentConfig {
        /// Agent software version: major, minor, patch.
        agent_version: [u16; 3],
        /// Random id chosen at each boot.
        boot_id: [u8; 16],
        /// What the device is.
        device: DeviceInfo,
        /// Offers, prices and timers.
        policy: Policy,
        /// Hold each signed result back until the host stored it.
        persist_results: bool,
    }

    /// An event of the sans-IO agent; fields as `tessera_event` has them.
    #[derive(Clone, Copy, PartialEq, Eq)]
    struct Event {
        /// What happened; `None` when nothing.
        kind: EventKind,
        /// The job, or 0.
        job: u64,
        /// `JobData`: 0 for the kernel, `i + 1` for buffer `i`.
        stream: u32,
        /// `JobData`: byte offset in the stream.
        offset: u64,
        /// `JobData`: bytes readable now.
        len: usize,
        /// `CancelJob`: `TESSERA_CANCEL_*`; `Disconnect`: `TESSERA_DISCONNECT_*`.
        reason: u32,
        /// The peer's code, for the kinds that carry one.
        code: u32,
    }

    /// How `Agent::handle_input` went: bytes taken, and 0 or the error's code.
    struct InputOutcome {
        /// Bytes consumed, on success and on error.
        consumed: usize,
        /// 0, or the code of the error.
        code: u32,
        /// The error's words, or empty.
        message: String,
    }

    /// What `Agent::send_output` did.
    #[derive(Clone, Copy, PartialEq, Eq)]
    struct OutputSent {
        /// Output bytes taken.
        taken: usize,
        /// Bytes written into `out`, to send.
        written: usize,
    }

    /// One storage buffer of a job's layout.
    #[derive(Clone, Copy, PartialEq, Eq)]
    struct BufferSpec {
        /// Binding in descriptor set 0.
        binding: u32,
        /// Size in bytes.
        len: u64,
        /// Bytes of initial contents sent as input (the rest is zero).
        init_len: u64,
        /// Whether it is returned as an output.
        readback: bool,
    }

    /// A specialization constant: its id and 32-bit value.
    #[derive(Clone, Copy, PartialEq, Eq)]
    struct SpecConstant {
        /// The constant id.
        id: u32,
        /// The value (narrower constants take the low bytes).
        value: u32,
    }

    /// What the agent knows of a job.
    struct JobInfo {
        /// The job's state.
        state: JobState,
        /// Whether the job has a deadline now.
        has_deadline: bool,
        /// The deadline (microseconds, the host's time base).
        deadline_us: u64,
        /// Whether the assignment arrived (the fields below are set).
        assigned: bool,
        /// SPIR-V bytes (stream 0).
        kernel_len: u32,
        /// The GLCompute entry point.
        entry_point: String,
        /// Specialization constants.
        specialization: Vec<SpecConstant>,
        /// Push constant bytes.
        push_constants: Vec<u8>,
        /// Workgroup counts in x, y, z.
        grid: [u32; 3],
        /// The buffers.
        buffers: Vec<BufferSpec>,
        /// The requester's nonce.
        requester_nonce: [u8; 32],
    }

    /// Counters of the sans-IO agent.
    #[derive(Clone, Copy, PartialEq, Eq)]
    struct AgentStats {
        /// Offers accepted.
        offers_accepted: u64,
        /// Offers declined.
        offers_declined: u64,
        /// Jobs completed and acknowledged.
        jobs_completed: u64,
        /// Jobs failed (acknowledged).
        jobs_failed: u64,
        /// Results the coordinator refused.
        results_refused: u64,
        /// Sum of prices of acknowledged completed jobs.
        earnings: u64,
        /// Frames received.
        frames_in: u64,
        /// Frames queued for sending.
        frames_out: u64,
        /// Frames refused.
        frames_refused: u64,
    }

    /// One Vulkan device as the loader lists it.
    struct DeviceEntry {
        /// Its index (`DispatcherOptions::device_index`).
        index: u32,
        /// The driver's name for it.
        name: String,
        /// What kind of device.
        device_type: DeviceType,
        /// PCI vendor id.
        vendor_id: u32,
        /// Vendor's device id.
        device_id: u32,
        /// Highest Vulkan version it supports.
        api_version: u32,
    }

    /// How to open a dispatcher.
    struct DispatcherOptions {
        /// Device index, or -1 for the default (or `device_name`).
        device_index: i32,
        /// Part of the device name (case-insensitive), or empty.
        device_name: String,
        /// Run the Khronos validation layer (slow).
        validation: bool,
        /// Run the Khronos SPIR-V validator on every new kernel.
        spirv_val_gate: bool,
        /// The `spirv-val` program, or empty for the one on `PATH`.
        spirv_val_path: String,
        /// Most bytes of buffers one job may use.
        memory_budget: u64,
        /// Run the start-up benchmark when opening.
        run_benchmark: bool,
    }

    /// The start-up benchmark's figures.
    #[derive(Clone, Copy, PartialEq)]
    struct Benchmark {
        /// Copy bandwidth, GB/s.
        copy_gbps: f64,
        /// FMA throughput, GFLOP/s.
        fma_gflops: f64,
    }

    /// One storage buffer of a kernel job.
    struct KernelBuffer<'a> {
        /// Binding in descriptor set 0.
        binding: u32,
        /// Bytes the kernel sees.
        len: u64,
        /// Initial contents (at most `len` bytes; the rest is zero).
        init: &'a [u8],
        /// Whether the final contents are returned.
        readback: bool,
    }

    /// An untrusted compute job.
    struct KernelJob<'a> {
        /// SPIR-V module bytes.
        spirv: &'a [u8],
        /// The GLCompute entry point.
        entry_point: &'a str,
        /// Specialization constants.
        specialization: &'a [SpecConstant],
        /// Push-constant bytes.
        push_constants: &'a [u8],
        /// Workgroup counts in x, y, z.
        grid: [u32; 3],
        /// The buffers.
        buffers: &'a [KernelBuffer<'a>],
        /// Time limit, milliseconds.
        timeout_ms: u64,
    }

    /// One read-back buffer's final contents.
    struct KernelOutput {
        /// Its binding.
        binding: u32,
        /// Its bytes.
        data: Vec<u8>,
    }

    /// What a kernel job returned.
    struct KernelResult {
        /// The read-back buffers, in buffer order.
        outputs: Vec<KernelOutput>,
        /// What it used.
        usage: Usage,
    }

    /// After a failed run: what to report to the coordinator.
    #[derive(Clone, Copy, PartialEq, Eq)]
    struct JobFailure {
        /// Whether the last run failed (the fields below are set).
        failed: bool,
        /// The wire fail reason (`code - TESSERA_FAIL_BASE`).
        reason: u32,
        /// Its detail (the kernel rule for a rejection).
        detail: u32,
        /// The usage to report.
        usage: Usage,
    }

    /// A verified receipt.
    #[derive(Clone, Copy, PartialEq, Eq)]
    struct ReceiptInfo {
        /// How the job ended: 0 completed, else the wire fail reason.
        status: u32,
        /// The job.
        job: u64,
        /// The requester's nonce.
        requester_nonce: [u8; 32],
        /// What was dispatched.
        kernel_hash: [u8; 32],
        /// Merkle root over the input buffers' chunks.
        input_root: [u8; 32],
        /// Merkle root over the output buffers' chunks.
        output_root: [u8; 32],
        /// Total output bytes.
        output_len: u64,
        /// The same on every honest replica.
        result_hash: [u8; 32],
        /// Unique to the provider's key.
        result_seal: [u8; 32],
        /// Metered usage.
        usage: Usage,
        /// Price charged.
        price: u64,
        /// When the job started, microseconds.
        started_at: u64,
        /// When the job ended, microseconds.
        ended_at: u64,
        /// Hash of the evidence of the session that offered the job.
        evidence_hash: [u8; 32],
        /// The signing key's id.
        key_id: [u8; 16],
        /// Position in the key's receipt chain, from 1.
        sequence: u64,
        /// Hash of the key's previous receipt.
        prev_hash: [u8; 32],
    }

    /// Verified device evidence.
    #[derive(Clone, PartialEq, Eq)]
    struct EvidenceInfo {
        /// The challenge the evidence answers.
        challenge: [u8; 32],
        /// The device's Ed25519 public key.
        public_key: [u8; 32],
        /// The key's id.
        key_id: [u8; 16],
        /// Agent software version.
        agent_version: [u16; 3],
        /// Random id the agent chose at its boot.
        boot_id: [u8; 16],
        /// When the evidence was made, microseconds.
        issued_at: u64,
        /// The provider's receipt chain when the evidence was made.
        chain: ChainState,
        /// What the device is and can do.
        device: DeviceInfo,
        /// The provider's X25519 public key for this session, to which
        /// requesters seal jobs (all zeros: it takes no sealed jobs).
        enc_key: [u8; 32],
        /// The kind of hardware attestation report the evidence names
        /// (`TESSERA_HARDWARE_REPORT_*`; 0: none).
        hardware_report_kind: u16,
        /// SHA-256 of that report's bytes.
        hardware_report_hash: [u8; 32],
    }

    extern "Rust" {
        /// A provider on the network, stepped from the host's loop.
        type Runtime;
        /// The thread-safe part of a runtime, for other threads.
        type RuntimeRemote;
        /// Runs untrusted compute kernels on one Vulkan device.
        type Dispatcher;
        /// The provider agent (sans-IO).
        type Agent;
        /// Checks one provider key's receipts in order.
        type ChainVerifier;

        /// The library's version as `major << 16 | minor << 8 | patch`.
        fn version() -> u32;
        /// The name and meaning of a result code.
        fn result_text(code: u32) -> String;

        /// A provider from the operator's TOML file.
        fn new_runtime(path: &str) -> Result<Box<Runtime>>;
        /// One turn: waits at most `max_wait_ms`, then does the ready work.
        fn step(self: &mut Runtime, max_wait_ms: u64) -> Result<()>;
        /// The descriptor to poll for reading.
        fn fd(self: &Runtime) -> i32;
        /// Milliseconds until the next step is due; -1 when none is.
        fn next_wakeup_ms(self: &Runtime) -> i64;
        /// Whether the device takes new work.
        fn set_accepting_jobs(self: &mut Runtime, accepting: bool);
        /// Asks the runtime to drain.
        fn drain(self: &Runtime);
        /// Whether the runtime has drained and stopped.
        fn is_finished(self: &Runtime) -> bool;
        /// The status as of the last step.
        fn status(self: &Runtime) -> RuntimeStatus;
        /// The status line.
        fn status_line(self: &Runtime) -> String;
        /// A handle for other threads.
        fn remote(self: &Runtime) -> Box<RuntimeRemote>;
        /// Asks the runtime to drain (any thread).
        fn drain(self: &RuntimeRemote);
        /// Whether the device takes new work (any thread).
        fn set_accepting_jobs(self: &RuntimeRemote, accepting: bool);
        /// Whether the runtime has drained and stopped (any thread).
        fn is_finished(self: &RuntimeRemote) -> bool;
        /// The status as of the last step (any thread).
        fn status(self: &RuntimeRemote) -> RuntimeStatus;
        /// The status line (any thread).
        fn status_line(self: &RuntimeRemote) -> String;

        /// The Vulkan devices.
        fn vulkan_devices() -> Result<Vec<DeviceEntry>>;
        /// The default dispatcher options.
        fn dispatcher_options_default() -> DispatcherOptions;
        /// Opens a device for running kernels.
        fn open_dispatcher(options: &DispatcherOptions) -> Result<Box<Dispatcher>>;
        /// What the device is, as the evidence states it.
        fn device(self: &Dispatcher) -> DeviceInfo;
        /// Runs the start-up benchmark (again).
        fn benchmark(self: &mut Dispatcher) -> Result<Benchmark>;
        /// Runs a job through both gates under its time limit.
        fn run(self: &mut Dispatcher, job: &KernelJob) -> Result<KernelResult>;
        /// What to report after the last run failed.
        fn last_failure(self: &Dispatcher) -> JobFailure;
        /// Destroys abandoned devices whose kernels ended; how many remain.
        fn reclaim(self: &mut Dispatcher) -> usize;

        /// The default agent configuration.
        fn agent_config_default() -> AgentConfig;
        /// An agent signing with the Ed25519 key of a 32-byte seed.
        fn new_agent_from_seed(
            config: &AgentConfig,
            seed: &[u8],
            chain: &ChainState,
        ) -> Result<Box<Agent>>;
        /// An agent signing with the Ed25519 key of a PKCS#8 document.
        fn new_agent_from_pkcs8(
            config: &AgentConfig,
            pkcs8: &[u8],
            chain: &ChainState,
        ) -> Result<Box<Agent>>;
        /// Opens a session on a fresh transport.
        fn connect(self: &mut Agent, now_us: u64) -> Result<()>;
        /// The transport closed.
        fn disconnected(self: &mut Agent, now_us: u64);
        /// Feeds received bytes.
        fn handle_input(self: &mut Agent, now_us: u64, data: &[u8]) -> InputOutcome;
        /// The next bytes to send into `out`: their length, 0 when none.
        fn poll_transmit(self: &mut Agent, now_us: u64, out: &mut [u8]) -> Result<usize>;
        /// Bytes queued for sending.
        fn pending_transmit(self: &Agent) -> usize;
        /// The next event (`EventKind::None` when none).
        fn poll_event(self: &mut Agent) -> Event;
        /// When `handle_timeout` is due, microseconds; -1 when no timer runs.
        fn poll_timeout(self: &Agent) -> i64;
        /// Runs the timers due at `now_us`.
        fn handle_timeout(self: &mut Agent, now_us: u64);
        /// The input piece of the last `JobData` event of `job`.
        fn input(self: &Agent, job: u64) -> Result<&[u8]>;
        /// Copies that piece into `out`; its length.
        fn read_input(self: &Agent, job: u64, out: &mut [u8]) -> Result<usize>;
        /// What the agent knows of `job`.
        fn job_info(self: &Agent, job: u64) -> Result<JobInfo>;
        /// Takes the next bytes of read-back buffer `buffer` and writes
        /// their frames (after any queued ones) into `out`: send
        /// `out[..written]`. `taken` 0: send, then call again with the same
        /// bytes.
        fn send_output(
            self: &mut Agent,
            now_us: u64,
            job: u64,
            buffer: u32,
            data: &[u8],
            out: &mut [u8],
        ) -> Result<OutputSent>;
        /// Ends a job whose outputs were all written: signs its receipt.
        fn finish_job(self: &mut Agent, now_us: u64, job: u64, usage: &Usage) -> Result<()>;
        /// Ends a job that could not run.
        fn fail_job(
            self: &mut Agent,
            now_us: u64,
            job: u64,
            reason: u32,
            detail: u32,
            usage: &Usage,
        ) -> Result<()>;
        /// Reports a running job's progress, in thousandths.
        fn report_progress(self: &mut Agent, now_us: u64, job: u64, permille: u32) -> Result<()>;
        /// The host stored the job's result record durably.
        fn confirm_persisted(self: &mut Agent, now_us: u64, job: u64) -> Result<()>;
        /// A signed job's encoded result record.
        fn result_record(self: &Agent, job: u64) -> Result<Vec<u8>>;
        /// Gives back a result record stored before a restart.
        fn restore_result(self: &mut Agent, record: &[u8]) -> Result<()>;
        /// Takes no more offers; says goodbye once every job is acknowledged.
        fn drain(self: &mut Agent, now_us: u64) -> Result<()>;
        /// Whether the device takes work now.
        fn set_device_available(self: &mut Agent, now_us: u64, available: bool);
        /// The connection's state.
        fn state(self: &Agent) -> ConnState;
        /// Where the receipt chain stands.
        fn chain(self: &Agent) -> ChainState;
        /// The agent's counters.
        fn stats(self: &Agent) -> AgentStats;
        /// Jobs held now.
        fn active_jobs(self: &Agent) -> usize;
        /// The id of the agent's key.
        fn key_id(self: &Agent) -> [u8; 16];

        /// A chain verifier for a 32-byte public key, from `chain`.
        fn new_chain_verifier(public_key: &[u8], chain: &ChainState) -> Result<Box<ChainVerifier>>;
        /// Verifies the next receipt; `expected_nonce` empty or 32 bytes.
        fn verify_next(
            self: &mut ChainVerifier,
            receipt: &[u8],
            expected_nonce: &[u8],
        ) -> Result<ReceiptInfo>;
        /// Where the chain stands.
        fn chain(self: &ChainVerifier) -> ChainState;

        /// Verifies one receipt (signed alone or batched) under a 32-byte
        /// public key.
        fn verify_receipt(receipt: &[u8], public_key: &[u8]) -> Result<ReceiptInfo>;
        /// The hash the next receipt of the chain names (of the signed
        /// bytes alone, of the payload batched).
        fn receipt_hash(receipt: &[u8]) -> [u8; 32];
        /// Verifies evidence answering a 32-byte challenge.
        fn verify_evidence(evidence: &[u8], challenge: &[u8]) -> Result<EvidenceInfo>;
        /// Verifies evidence's form and signature only.
        fn open_evidence(evidence: &[u8]) -> Result<EvidenceInfo>;
        /// The hash receipts bind evidence by.
        fn evidence_hash(evidence: &[u8]) -> [u8; 32];
        /// The kernel hash a receipt binds.
        fn kernel_hash(
            spirv_root: &[u8],
            entry_point: &str,
            specialization: &[SpecConstant],
            push_constants: &[u8],
            grid: [u32; 3],
            buffers: &[BufferSpec],
        ) -> Result<[u8; 32]>;
        /// The result hash.
        fn result_hash(
            kernel_hash: &[u8],
            input_root: &[u8],
            output_root: &[u8],
            output_len: u64,
        ) -> Result<[u8; 32]>;
        /// The result seal.
        fn result_seal(public_key: &[u8], job: u64, result_hash: &[u8]) -> Result<[u8; 32]>;
        /// The Merkle root of bytes cut into chunks.
        fn merkle_root(data: &[u8]) -> [u8; 32];
        /// A new device key as a PKCS#8 document.
        fn generate_key() -> Result<Vec<u8>>;
        /// The public key of a PKCS#8 document.
        fn key_public(pkcs8: &[u8]) -> Result<[u8; 32]>;
        /// The public key of a 32-byte seed.
        fn seed_public_key(seed: &[u8]) -> Result<[u8; 32]>;
        /// The id of a 32-byte public key.
        fn key_id_of(public_key: &[u8]) -> Result<[u8; 16]>;
    }
}

use ffi::*;

// ----- errors ----------------------------------------------------------------

/// An error crossing into C++: shown as `"[CODE] message"`.
#[derive(Debug)]
pub struct CppError {
    code: u32,
    message: String,
}

impl CppError {
    fn new(code: u32, message: impl fmt::Display) -> Self {
        CppError {
            code,
            message: message.to_string(),
        }
    }

    /// An error worded by its code alone.
    fn code(code: u32) -> Self {
        CppError::new(code, codes::describe(code).unwrap_or("unknown code"))
    }

    fn invalid(what: impl fmt::Display) -> Self {
        CppError::new(codes::INVALID_ARGUMENT, what)
    }
}

impl fmt::Display for CppError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}] {}", self.code, self.message)
    }
}

impl From<tessera_core::Error> for CppError {
    fn from(e: tessera_core::Error) -> Self {
        CppError::new(e.code(), e)
    }
}

impl From<attest::VerifyError> for CppError {
    fn from(e: attest::VerifyError) -> Self {
        CppError::code(e.code())
    }
}

impl From<attest::KeyError> for CppError {
    fn from(e: attest::KeyError) -> Self {
        CppError::code(e.code())
    }
}

type Res<T> = Result<T, CppError>;

/// Runs `f`, turning a panic into code 6 (`TESSERA_PANIC`) instead of the
/// abort cxx would make of it.
fn guard<T>(f: impl FnOnce() -> Res<T>) -> Res<T> {
    catch_unwind(AssertUnwindSafe(f))
        .unwrap_or_else(|_| Err(CppError::new(codes::PANIC, "internal error (panic)")))
}

fn array<const N: usize>(bytes: &[u8], what: &str) -> Res<[u8; N]> {
    bytes
        .try_into()
        .map_err(|_| CppError::invalid(format!("{what} must be {N} bytes, not {}", bytes.len())))
}

fn version() -> u32 {
    crate::TESSERA_VERSION_NUMBER
}

fn result_text(code: u32) -> String {
    match (codes::name(code), codes::describe(code)) {
        (Some(name), Some(words)) => format!("{name}: {words}"),
        _ => format!("unknown code {code}"),
    }
}

// ----- conversions -----------------------------------------------------------

fn conn_state(s: CoreConn) -> ConnState {
    match s {
        CoreConn::AwaitingWelcome => ConnState::AwaitingWelcome,
        CoreConn::AwaitingReady => ConnState::AwaitingReady,
        CoreConn::Ready => ConnState::Ready,
        CoreConn::Closed => ConnState::Closed,
        _ => ConnState::Disconnected,
    }
}

fn device_type_of(t: CoreDeviceType) -> DeviceType {
    DeviceType { repr: t as u8 }
}

fn device_info(c: &DeviceCapabilities) -> DeviceInfo {
    DeviceInfo {
        name: c.name.as_str().to_string(),
        vendor_id: c.vendor_id,
        device_id: c.device_id,
        driver_version: c.driver_version,
        api_version: c.api_version,
        device_type: device_type_of(c.device_type),
        features: c.features,
        device_local_bytes: c.device_local_bytes,
        host_visible_bytes: c.host_visible_bytes,
        max_workgroup_size: c.max_workgroup_size,
        max_workgroup_count: c.max_workgroup_count,
        max_invocations: c.max_invocations,
        max_shared_memory: c.max_shared_memory,
        max_storage_buffer_range: c.max_storage_buffer_range,
        subgroup_size: c.subgroup_size,
        copy_mbps: c.copy_mbps,
        fma_mflops: c.fma_mflops,
    }
}

fn config_error(field: &'static str, rule: &'static str) -> CppError {
    CppError::new(
        codes::INVALID_CONFIG,
        tessera_core::ConfigError { field, rule },
    )
}

fn capabilities(d: &DeviceInfo) -> Res<DeviceCapabilities> {
    let mut name = BoundedString::new();
    name.push_str(&d.name)
        .map_err(|_| config_error("device.name", "must be at most 64 bytes"))?;
    let device_type = match d.device_type {
        DeviceType::Other => CoreDeviceType::Other,
        DeviceType::IntegratedGpu => CoreDeviceType::IntegratedGpu,
        DeviceType::DiscreteGpu => CoreDeviceType::DiscreteGpu,
        DeviceType::VirtualGpu => CoreDeviceType::VirtualGpu,
        DeviceType::Cpu => CoreDeviceType::Cpu,
        _ => return Err(config_error("device.device_type", "must be a DeviceType")),
    };
    Ok(DeviceCapabilities {
        name,
        vendor_id: d.vendor_id,
        device_id: d.device_id,
        driver_version: d.driver_version,
        api_version: d.api_version,
        device_type,
        features: d.features,
        device_local_bytes: d.device_local_bytes,
        host_visible_bytes: d.host_visible_bytes,
        max_workgroup_size: d.max_workgroup_size,
        max_workgroup_count: d.max_workgroup_count,
        max_invocations: d.max_invocations,
        max_shared_memory: d.max_shared_memory,
        max_storage_buffer_range: d.max_storage_buffer_range,
        subgroup_size: d.subgroup_size,
        copy_mbps: d.copy_mbps,
        fma_mflops: d.fma_mflops,
    })
}

fn usage_of(u: &CoreUsage) -> Usage {
    Usage {
        gpu_time_us: u.gpu_time_us,
        dispatches: u.dispatches,
        bytes_in: u.bytes_in,
        bytes_out: u.bytes_out,
    }
}

fn core_usage(u: &Usage) -> CoreUsage {
    CoreUsage {
        gpu_time_us: u.gpu_time_us,
        dispatches: u.dispatches,
        bytes_in: u.bytes_in,
        bytes_out: u.bytes_out,
    }
}

fn chain_of(c: CoreChain) -> ChainState {
    ChainState {
        next_sequence: c.next_sequence,
        prev_hash: c.prev_hash,
    }
}

fn core_chain(c: &ChainState) -> CoreChain {
    CoreChain {
        next_sequence: c.next_sequence,
        prev_hash: c.prev_hash,
    }
}

fn receipt_info(r: &Receipt) -> ReceiptInfo {
    ReceiptInfo {
        status: u32::from(r.status.code()),
        job: r.job,
        requester_nonce: r.requester_nonce,
        kernel_hash: r.kernel_hash,
        input_root: r.input_root,
        output_root: r.output_root,
        output_len: r.output_len,
        result_hash: r.result_hash,
        result_seal: r.result_seal,
        usage: usage_of(&r.usage),
        price: r.price,
        started_at: r.started_at,
        ended_at: r.ended_at,
        evidence_hash: r.evidence_hash,
        key_id: r.key_id,
        sequence: r.sequence,
        prev_hash: r.prev_hash,
    }
}

fn evidence_info(e: &Evidence) -> EvidenceInfo {
    EvidenceInfo {
        challenge: e.challenge,
        public_key: e.public_key,
        key_id: attest::key_id(&e.public_key),
        agent_version: e.agent_version,
        boot_id: e.boot_id,
        issued_at: e.issued_at,
        chain: chain_of(e.chain),
        device: device_info(&e.capabilities),
        enc_key: e.enc_key,
        hardware_report_kind: e.hardware_report.kind.0,
        hardware_report_hash: e.hardware_report.hash,
    }
}

// ----- the runtime -----------------------------------------------------------

/// What a runtime shares with its remotes.
struct Shared {
    accepting: AtomicBool,
    finished: AtomicBool,
    status: Mutex<Status>,
    last_error: Mutex<String>,
}

impl Shared {
    fn status(&self) -> RuntimeStatus {
        let s = self.status.lock().map(|s| s.clone()).unwrap_or_default();
        RuntimeStatus {
            state: s.state.map_or(ConnState::Disconnected, conn_state),
            finished: self.finished.load(Ordering::SeqCst),
            device_unavailable: s.device_unavailable,
            jobs_completed: s.jobs_completed,
            jobs_failed: s.jobs_failed,
            active_jobs: s.active_jobs as u64,
            earnings: s.earnings,
            sessions: s.sessions,
            coordinator: s.coordinator,
            device: s.device,
            last_error: s.last_error.unwrap_or_default(),
        }
    }

    fn status_line(&self) -> String {
        let mut line = self
            .status
            .lock()
            .map(|s| s.to_string())
            .unwrap_or_default();
        if let Ok(last) = self.last_error.lock() {
            if !last.is_empty() {
                line.push_str(" | stopped: ");
                line.push_str(&last);
            }
        }
        line
    }
}

/// A provider on the network (the operator's TOML file), stepped from the
/// host's loop. One thread at a time; [`RuntimeRemote`] for the others.
pub struct Runtime {
    inner: tessera_core::net::Runtime<Ed25519Signer>,
    drain: DrainHandle,
    shared: Arc<Shared>,
}

/// The thread-safe part of a [`Runtime`]: drain, accepting jobs, status.
pub struct RuntimeRemote {
    drain: DrainHandle,
    shared: Arc<Shared>,
}

fn new_runtime(path: &str) -> Res<Box<Runtime>> {
    guard(|| {
        let config =
            OperatorConfig::load(Path::new(path)).map_err(|e| CppError::new(e.code(), e))?;
        let inner = config
            .build_runtime()
            .map_err(|e| CppError::new(e.code(), e))?;
        let shared = Arc::new(Shared {
            accepting: AtomicBool::new(true),
            finished: AtomicBool::new(false),
            status: Mutex::new(inner.status()),
            last_error: Mutex::new(String::new()),
        });
        Ok(Box::new(Runtime {
            drain: inner.drain_handle(),
            inner,
            shared,
        }))
    })
}

impl Runtime {
    fn publish(&self) {
        if let Ok(mut s) = self.shared.status.lock() {
            *s = self.inner.status();
        }
        self.shared
            .finished
            .store(self.inner.is_finished(), Ordering::SeqCst);
    }

    fn step(&mut self, max_wait_ms: u64) -> Res<()> {
        guard(|| {
            let accepting = self.shared.accepting.load(Ordering::SeqCst);
            self.inner.set_accepting_jobs(accepting);
            let r = self.inner.step(Some(StdDuration::from_millis(max_wait_ms)));
            self.publish();
            r.map_err(|e| {
                if let Ok(mut last) = self.shared.last_error.lock() {
                    *last = e.to_string();
                }
                CppError::new(e.code(), e)
            })
        })
    }

    #[cfg(unix)]
    fn fd(&self) -> i32 {
        self.inner.as_raw_fd()
    }

    #[cfg(not(unix))]
    fn fd(&self) -> i32 {
        -1
    }

    fn next_wakeup_ms(&self) -> i64 {
        match self.inner.next_wakeup() {
            Some(t) => i64::try_from(crate::runtime::millis_until(t)).unwrap_or(i64::MAX),
            None => -1,
        }
    }

    fn set_accepting_jobs(&mut self, accepting: bool) {
        self.shared.accepting.store(accepting, Ordering::SeqCst);
        self.inner.set_accepting_jobs(accepting);
        self.publish();
    }

    fn drain(&self) {
        self.drain.drain();
    }

    fn is_finished(&self) -> bool {
        self.inner.is_finished()
    }

    fn status(&self) -> RuntimeStatus {
        self.shared.status()
    }

    fn status_line(&self) -> String {
        self.shared.status_line()
    }

    fn remote(&self) -> Box<RuntimeRemote> {
        Box::new(RuntimeRemote {
            drain: self.drain.clone(),
            shared: self.shared.clone(),
        })
    }
}

impl RuntimeRemote {
    fn drain(&self) {
        self.drain.drain();
    }

    fn set_accepting_jobs(&self, accepting: bool) {
        self.shared.accepting.store(accepting, Ordering::SeqCst);
        self.drain.wake();
    }

    fn is_finished(&self) -> bool {
        self.shared.finished.load(Ordering::SeqCst)
    }

    fn status(&self) -> RuntimeStatus {
        self.shared.status()
    }

    fn status_line(&self) -> String {
        self.shared.status_line()
    }
}

// ----- the dispatcher --------------------------------------------------------

/// Runs untrusted compute kernels on one Vulkan device. One thread at a time.
pub struct Dispatcher {
    inner: vulkan::Dispatcher,
    last_failure: JobFailure,
}

const NO_FAILURE: JobFailure = JobFailure {
    failed: false,
    reason: 0,
    detail: 0,
    usage: Usage {
        gpu_time_us: 0,
        dispatches: 0,
        bytes_in: 0,
        bytes_out: 0,
    },
};

fn vulkan_device_type(t: vulkan::DeviceType) -> DeviceType {
    match t {
        vulkan::DeviceType::Discrete => DeviceType::DiscreteGpu,
        vulkan::DeviceType::Integrated => DeviceType::IntegratedGpu,
        vulkan::DeviceType::Virtual => DeviceType::VirtualGpu,
        vulkan::DeviceType::Cpu => DeviceType::Cpu,
        vulkan::DeviceType::Other => DeviceType::Other,
    }
}

fn vulkan_devices() -> Res<Vec<DeviceEntry>> {
    guard(|| {
        let instance = Instance::load().map_err(|e| CppError::new(e.result_code(), e))?;
        Ok(instance
            .devices()
            .into_iter()
            .map(|d| DeviceEntry {
                index: u32::try_from(d.index).unwrap_or(u32::MAX),
                name: d.name,
                device_type: vulkan_device_type(d.device_type),
                vendor_id: d.vendor_id,
                device_id: d.device_id,
                api_version: d.api_version,
            })
            .collect())
    })
}

fn dispatcher_options_default() -> DispatcherOptions {
    DispatcherOptions {
        device_index: -1,
        device_name: String::new(),
        validation: false,
        spirv_val_gate: true,
        spirv_val_path: String::new(),
        memory_budget: DispatcherConfig::default().memory_budget,
        run_benchmark: true,
    }
}

fn open_dispatcher(o: &DispatcherOptions) -> Res<Box<Dispatcher>> {
    guard(|| {
        let selector = match (o.device_index, o.device_name.is_empty()) {
            (-1, true) => DeviceSelector::Default,
            (-1, false) => DeviceSelector::Name(o.device_name.clone()),
            (i, _) if i >= 0 => DeviceSelector::Index(i as usize),
            _ => {
                return Err(CppError::new(
                    codes::INVALID_CONFIG,
                    "device_index must be -1 or a device index",
                ))
            }
        };
        let config = DispatcherConfig {
            validation: o.validation,
            memory_budget: o.memory_budget,
            khronos: KhronosConfig {
                enabled: o.spirv_val_gate,
                program: (!o.spirv_val_path.is_empty()).then(|| o.spirv_val_path.clone().into()),
                ..KhronosConfig::default()
            },
            ..DispatcherConfig::default()
        };
        let mut inner = Instance::load()
            .and_then(|i| vulkan::Dispatcher::new(&i, selector, config))
            .map_err(|e| CppError::new(e.result_code(), e))?;
        if o.run_benchmark {
            inner
                .run_startup_benchmark()
                .map_err(|e| CppError::new(e.result_code(), format!("start-up benchmark: {e}")))?;
        }
        Ok(Box::new(Dispatcher {
            inner,
            last_failure: NO_FAILURE,
        }))
    })
}

impl Dispatcher {
    fn device(&self) -> DeviceInfo {
        device_info(&evidence_capabilities(self.inner.capabilities()))
    }

    fn benchmark(&mut self) -> Res<Benchmark> {
        guard(|| {
            let b = self
                .inner
                .run_startup_benchmark()
                .map_err(|e| CppError::new(e.result_code(), e))?;
            Ok(Benchmark {
                copy_gbps: f64::from(b.copy_gbps),
                fma_gflops: f64::from(b.fma_gflops),
            })
        })
    }

    fn run(&mut self, job: &KernelJob<'_>) -> Res<KernelResult> {
        guard(|| {
            self.last_failure = NO_FAILURE;
            if job.specialization.len() > MAX_SPEC_CONSTANTS {
                return Err(CppError::invalid("too many specialization constants"));
            }
            if job.buffers.len() > MAX_BUFFERS * 4 {
                return Err(CppError::invalid("too many buffers"));
            }
            let spec: Vec<(u32, u32)> =
                job.specialization.iter().map(|s| (s.id, s.value)).collect();
            let buffers: Vec<vulkan::BufferSpec<'_>> = job
                .buffers
                .iter()
                .map(|b| vulkan::BufferSpec {
                    binding: b.binding,
                    len: b.len,
                    init: (!b.init.is_empty()).then_some(b.init),
                    readback: b.readback,
                })
                .collect();
            let kernel = vulkan::KernelJob {
                spirv: job.spirv,
                entry_point: job.entry_point,
                specialization: &spec,
                push_constants: job.push_constants,
                grid: job.grid,
                buffers: &buffers,
            };
            let timeout = StdDuration::from_millis(job.timeout_ms);
            match self.inner.run(&kernel, timeout) {
                Ok(out) => {
                    let bindings = job.buffers.iter().filter(|b| b.readback).map(|b| b.binding);
                    Ok(KernelResult {
                        outputs: bindings
                            .zip(out.outputs)
                            .map(|(binding, data)| KernelOutput { binding, data })
                            .collect(),
                        usage: Usage {
                            gpu_time_us: out.usage.gpu_time_ns.div_ceil(1000),
                            dispatches: out.usage.dispatches,
                            bytes_in: out.usage.bytes_in,
                            bytes_out: out.usage.bytes_out,
                        },
                    })
                }
                Err(e) => {
                    let f = failure_of(&e, timeout);
                    self.last_failure = JobFailure {
                        failed: true,
                        reason: u32::from(f.reason as u8),
                        detail: f.detail,
                        usage: usage_of(&f.usage),
                    };
                    let words = match &e {
                        vulkan::JobError::Rejected(r) => format!("kernel rejected: {r}"),
                        other => other.to_string(),
                    };
                    Err(CppError::new(e.result_code(), words))
                }
            }
        })
    }

    fn last_failure(&self) -> JobFailure {
        self.last_failure
    }

    fn reclaim(&mut self) -> usize {
        self.inner.reclaim_abandoned()
    }
}

// ----- the agent -------------------------------------------------------------

/// The provider agent (sans-IO) with a built-in Ed25519 key. One thread at a
/// time.
pub struct Agent {
    /// Made on the heap in its place: it is about 96 KiB.
    inner: Box<tessera_core::Agent<Ed25519Signer>>,
}

fn agent_config_default() -> AgentConfig {
    let p = CorePolicy::default();
    AgentConfig {
        agent_version: [
            crate::TESSERA_VERSION_MAJOR as u16,
            crate::TESSERA_VERSION_MINOR as u16,
            crate::TESSERA_VERSION_PATCH as u16,
        ],
        boot_id: [0; 16],
        device: device_info(&DeviceCapabilities::default()),
        policy: Policy {
            max_concurrent: u32::from(p.max_concurrent),
            price_base: p.price.base,
            price_per_gpu_ms: p.price.per_gpu_ms,
            price_per_mib_in: p.price.per_mib_in,
            price_per_mib_out: p.price.per_mib_out,
            floor: p.floor,
            max_bytes_in: p.max_bytes_in,
            max_bytes_out: p.max_bytes_out,
            heartbeat_interval_ms: p.heartbeat_interval.micros / 1000,
            peer_timeout_ms: p.peer_timeout.micros / 1000,
        },
        persist_results: false,
    }
}

fn core_config(c: &AgentConfig) -> Res<tessera_core::Config> {
    let max_concurrent = u8::try_from(c.policy.max_concurrent).map_err(|_| {
        config_error(
            "policy.max_concurrent",
            tessera_core::limits::MAX_CONCURRENT_RULE,
        )
    })?;
    let ms = |v: u64| Duration::from_micros(v.saturating_mul(1000));
    let p = &c.policy;
    Ok(tessera_core::Config {
        agent_version: c.agent_version,
        boot_id: c.boot_id,
        capabilities: capabilities(&c.device)?,
        policy: CorePolicy {
            max_concurrent,
            price: LinearPrice {
                base: p.price_base,
                per_gpu_ms: p.price_per_gpu_ms,
                per_mib_in: p.price_per_mib_in,
                per_mib_out: p.price_per_mib_out,
            },
            floor: p.floor,
            max_bytes_in: p.max_bytes_in,
            max_bytes_out: p.max_bytes_out,
            heartbeat_interval: ms(p.heartbeat_interval_ms),
            peer_timeout: ms(p.peer_timeout_ms),
        },
        persist_results: c.persist_results,
    })
}

fn new_agent(config: &AgentConfig, signer: Ed25519Signer, chain: &ChainState) -> Res<Box<Agent>> {
    let inner = tessera_core::Agent::new_boxed(core_config(config)?, signer, core_chain(chain))?;
    Ok(Box::new(Agent { inner }))
}

fn new_agent_from_seed(config: &AgentConfig, seed: &[u8], chain: &ChainState) -> Res<Box<Agent>> {
    guard(|| {
        let seed = array::<32>(seed, "seed")?;
        new_agent(config, Ed25519Signer::from_seed(&seed)?, chain)
    })
}

fn new_agent_from_pkcs8(config: &AgentConfig, pkcs8: &[u8], chain: &ChainState) -> Res<Box<Agent>> {
    guard(|| new_agent(config, Ed25519Signer::from_pkcs8(pkcs8)?, chain))
}

fn at(now_us: u64) -> Instant {
    Instant::from_micros(now_us)
}

fn event(e: Option<tessera_core::Event>) -> Event {
    let c = e.map(crate::agent::event_to_c).unwrap_or_default();
    Event {
        kind: EventKind {
            repr: u8::try_from(c.kind).unwrap_or(0),
        },
        job: c.job,
        stream: c.stream,
        offset: c.offset,
        len: c.len,
        reason: c.reason,
        code: c.code,
    }
}

fn job_state(s: CoreJobState) -> JobState {
    match s {
        CoreJobState::Accepted => JobState::Accepted,
        CoreJobState::Receiving => JobState::Receiving,
        CoreJobState::Running => JobState::Running,
        CoreJobState::Uploading => JobState::Uploading,
        CoreJobState::AwaitingAck => JobState::AwaitingAck,
        _ => JobState { repr: 0 },
    }
}

impl Agent {
    fn connect(&mut self, now_us: u64) -> Res<()> {
        guard(|| Ok(self.inner.connect(at(now_us))?))
    }

    fn disconnected(&mut self, now_us: u64) {
        self.inner.disconnected(at(now_us));
    }

    fn handle_input(&mut self, now_us: u64, data: &[u8]) -> InputOutcome {
        let r = catch_unwind(AssertUnwindSafe(|| {
            self.inner.handle_input(at(now_us), data)
        }));
        match r {
            Ok(Ok(consumed)) => InputOutcome {
                consumed,
                code: 0,
                message: String::new(),
            },
            Ok(Err(e)) => InputOutcome {
                consumed: e.consumed,
                code: e.error.code(),
                message: e.error.to_string(),
            },
            Err(_) => InputOutcome {
                consumed: 0,
                code: codes::PANIC,
                message: "internal error (panic)".into(),
            },
        }
    }

    fn poll_transmit(&mut self, now_us: u64, out: &mut [u8]) -> Res<usize> {
        guard(|| {
            if out.is_empty() {
                return Err(CppError::new(
                    codes::BUFFER_TOO_SMALL,
                    "the transmit buffer is empty (TESSERA_MAX_FRAME bytes always make progress)",
                ));
            }
            Ok(self.inner.poll_transmit(at(now_us), out).unwrap_or(0))
        })
    }

    fn pending_transmit(&self) -> usize {
        self.inner.pending_transmit()
    }

    fn poll_event(&mut self) -> Event {
        event(self.inner.poll_event())
    }

    fn poll_timeout(&self) -> i64 {
        self.inner
            .poll_timeout()
            .map_or(-1, |t| i64::try_from(t.micros).unwrap_or(i64::MAX))
    }

    fn handle_timeout(&mut self, now_us: u64) {
        self.inner.handle_timeout(at(now_us));
    }

    fn input(&self, job: u64) -> Res<&[u8]> {
        self.inner.input(job).ok_or_else(|| {
            tessera_core::Error::Usage(tessera_core::UsageError::NoInput(job)).into()
        })
    }

    fn read_input(&self, job: u64, out: &mut [u8]) -> Res<usize> {
        guard(|| {
            let data = self.input(job)?;
            if out.len() < data.len() {
                return Err(CppError::new(
                    codes::BUFFER_TOO_SMALL,
                    format!(
                        "the chunk is {} bytes, the buffer {}",
                        data.len(),
                        out.len()
                    ),
                ));
            }
            out[..data.len()].copy_from_slice(data);
            Ok(data.len())
        })
    }

    fn job_info(&self, job: u64) -> Res<JobInfo> {
        guard(|| {
            let state = self
                .inner
                .job_state(job)
                .ok_or_else(|| CppError::new(codes::UNKNOWN_JOB, format!("no job {job}")))?;
            let deadline = self.inner.job_deadline(job);
            let mut info = JobInfo {
                state: job_state(state),
                has_deadline: deadline.is_some(),
                deadline_us: deadline.map_or(0, |d| d.micros),
                assigned: false,
                kernel_len: 0,
                entry_point: String::new(),
                specialization: Vec::new(),
                push_constants: Vec::new(),
                grid: [0; 3],
                buffers: Vec::new(),
                requester_nonce: [0; 32],
            };
            if let Some(spec) = self.inner.job_spec(job) {
                info.assigned = true;
                info.kernel_len = spec.kernel.len;
                info.entry_point = spec.kernel.entry_point.as_str().to_string();
                info.specialization = spec
                    .kernel
                    .specialization
                    .iter()
                    .map(|&(id, value)| SpecConstant { id, value })
                    .collect();
                info.push_constants = spec.kernel.push_constants.to_vec();
                info.grid = spec.kernel.grid;
                info.buffers = spec
                    .buffers
                    .iter()
                    .map(|b| BufferSpec {
                        binding: b.binding,
                        len: b.len,
                        init_len: b.init_len,
                        readback: b.readback,
                    })
                    .collect();
                info.requester_nonce = spec.requester_nonce;
            }
            Ok(info)
        })
    }

    fn send_output(
        &mut self,
        now_us: u64,
        job: u64,
        buffer: u32,
        data: &[u8],
        out: &mut [u8],
    ) -> Res<ffi::OutputSent> {
        guard(|| {
            let buffer = u8::try_from(buffer)
                .map_err(|_| CppError::invalid(format!("no buffer {buffer}")))?;
            let sent = self.inner.send_output(at(now_us), job, buffer, data, out)?;
            Ok(ffi::OutputSent {
                taken: sent.taken,
                written: sent.written,
            })
        })
    }

    fn finish_job(&mut self, now_us: u64, job: u64, usage: &Usage) -> Res<()> {
        guard(|| Ok(self.inner.finish_job(at(now_us), job, core_usage(usage))?))
    }

    fn fail_job(
        &mut self,
        now_us: u64,
        job: u64,
        reason: u32,
        detail: u32,
        usage: &Usage,
    ) -> Res<()> {
        guard(|| {
            let reason = u8::try_from(reason)
                .ok()
                .and_then(FailReason::from_u8)
                .ok_or_else(|| CppError::invalid(format!("{reason} is not a fail reason")))?;
            Ok(self
                .inner
                .fail_job(at(now_us), job, reason, detail, core_usage(usage))?)
        })
    }

    fn report_progress(&mut self, now_us: u64, job: u64, permille: u32) -> Res<()> {
        guard(|| {
            let permille = u16::try_from(permille)
                .map_err(|_| CppError::invalid("permille must be at most 1000"))?;
            Ok(self.inner.report_progress(at(now_us), job, permille)?)
        })
    }

    fn confirm_persisted(&mut self, now_us: u64, job: u64) -> Res<()> {
        guard(|| Ok(self.inner.confirm_persisted(at(now_us), job)?))
    }

    fn result_record(&self, job: JobId) -> Res<Vec<u8>> {
        guard(|| {
            let record = self.inner.result_record(job).ok_or_else(|| {
                CppError::code(match self.inner.job_state(job) {
                    None => codes::UNKNOWN_JOB,
                    Some(_) => codes::INVALID_JOB_STATE,
                })
            })?;
            let mut buf = [0u8; MAX_RECORD_BYTES];
            let n = record
                .encode(&mut buf)
                .map_err(|_| CppError::new(codes::PANIC, "a result record did not encode"))?;
            Ok(buf[..n].to_vec())
        })
    }

    fn restore_result(&mut self, record: &[u8]) -> Res<()> {
        guard(|| {
            let record = ResultRecord::decode(record)
                .ok_or_else(|| CppError::invalid("not an encoded result record"))?;
            Ok(self.inner.restore_result(&record)?)
        })
    }

    fn drain(&mut self, now_us: u64) -> Res<()> {
        guard(|| Ok(self.inner.drain(at(now_us))?))
    }

    fn set_device_available(&mut self, now_us: u64, available: bool) {
        self.inner.set_device_available(at(now_us), available);
    }

    fn state(&self) -> ConnState {
        conn_state(self.inner.state())
    }

    fn chain(&self) -> ChainState {
        chain_of(self.inner.chain())
    }

    fn stats(&self) -> AgentStats {
        let s = self.inner.stats();
        AgentStats {
            offers_accepted: s.offers_accepted,
            offers_declined: s.offers_declined,
            jobs_completed: s.jobs_completed,
            jobs_failed: s.jobs_failed,
            results_refused: s.results_refused,
            earnings: s.earnings,
            frames_in: s.frames_in,
            frames_out: s.frames_out,
            frames_refused: s.frames_refused,
        }
    }

    fn active_jobs(&self) -> usize {
        self.inner.active_jobs()
    }

    fn key_id(&self) -> [u8; 16] {
        self.inner.key_id()
    }
}

// ----- verification and keys -------------------------------------------------

/// Checks one provider key's receipts in order, in either form (signed
/// alone or batched). One thread at a time.
pub struct ChainVerifier {
    inner: ReceiptVerifier,
    /// The last batch statement verified (checked once per batch).
    statement: tessera_core::attest::StatementSlot,
}

fn new_chain_verifier(public_key: &[u8], chain: &ChainState) -> Res<Box<ChainVerifier>> {
    let pk = array::<32>(public_key, "public_key")?;
    Ok(Box::new(ChainVerifier {
        inner: ReceiptVerifier::new(pk, core_chain(chain)),
        statement: None,
    }))
}

impl ChainVerifier {
    fn verify_next(&mut self, receipt: &[u8], expected_nonce: &[u8]) -> Res<ReceiptInfo> {
        guard(|| {
            let nonce = if expected_nonce.is_empty() {
                None
            } else {
                Some(array::<32>(expected_nonce, "expected_nonce")?)
            };
            let r = self
                .inner
                .verify_next_any(receipt, nonce.as_ref(), &mut self.statement)?;
            Ok(receipt_info(&r))
        })
    }

    fn chain(&self) -> ChainState {
        chain_of(self.inner.chain())
    }
}

fn verify_receipt(receipt: &[u8], public_key: &[u8]) -> Res<ReceiptInfo> {
    guard(|| {
        let pk = array::<32>(public_key, "public_key")?;
        Ok(receipt_info(&Receipt::verify_any(receipt, &pk)?))
    })
}

fn receipt_hash(receipt: &[u8]) -> [u8; 32] {
    Receipt::link(receipt)
}

fn verify_evidence(evidence: &[u8], challenge: &[u8]) -> Res<EvidenceInfo> {
    guard(|| {
        let challenge = array::<32>(challenge, "challenge")?;
        Ok(evidence_info(&Evidence::verify(evidence, &challenge)?))
    })
}

fn open_evidence(evidence: &[u8]) -> Res<EvidenceInfo> {
    guard(|| Ok(evidence_info(&Evidence::open(evidence)?)))
}

fn evidence_hash(evidence: &[u8]) -> [u8; 32] {
    Evidence::hash(evidence)
}

fn kernel_hash(
    spirv_root: &[u8],
    entry_point: &str,
    specialization: &[SpecConstant],
    push_constants: &[u8],
    grid: [u32; 3],
    buffers: &[BufferSpec],
) -> Res<[u8; 32]> {
    guard(|| {
        let root = array::<32>(spirv_root, "spirv_root")?;
        if entry_point.len() > MAX_ENTRY_POINT {
            return Err(CppError::invalid(format!(
                "the entry point is over {MAX_ENTRY_POINT} bytes"
            )));
        }
        if specialization.len() > MAX_SPEC_CONSTANTS {
            return Err(CppError::invalid(format!(
                "over {MAX_SPEC_CONSTANTS} specialization constants"
            )));
        }
        if push_constants.len() > MAX_PUSH_CONSTANTS {
            return Err(CppError::invalid(format!(
                "over {MAX_PUSH_CONSTANTS} push constant bytes"
            )));
        }
        if buffers.len() > MAX_BUFFERS {
            return Err(CppError::invalid(format!("over {MAX_BUFFERS} buffers")));
        }
        let spec: Vec<(u32, u32)> = specialization.iter().map(|s| (s.id, s.value)).collect();
        let layout: Vec<tessera_core::wire::BufferSpec> = buffers
            .iter()
            .map(|b| tessera_core::wire::BufferSpec {
                binding: b.binding,
                len: b.len,
                init_len: b.init_len,
                readback: b.readback,
            })
            .collect();
        Ok(attest::kernel_hash(
            &root,
            entry_point,
            &spec,
            push_constants,
            grid,
            &layout,
        ))
    })
}

fn result_hash(
    kernel_hash: &[u8],
    input_root: &[u8],
    output_root: &[u8],
    output_len: u64,
) -> Res<[u8; 32]> {
    let k = array::<32>(kernel_hash, "kernel_hash")?;
    let i = array::<32>(input_root, "input_root")?;
    let o = array::<32>(output_root, "output_root")?;
    Ok(attest::result_hash(&k, &i, &o, output_len))
}

fn result_seal(public_key: &[u8], job: u64, result_hash: &[u8]) -> Res<[u8; 32]> {
    let pk = array::<32>(public_key, "public_key")?;
    let r = array::<32>(result_hash, "result_hash")?;
    Ok(attest::result_seal(&pk, job, &r))
}

fn merkle_root(data: &[u8]) -> [u8; 32] {
    tessera_core::merkle::root_of(data)
}

fn generate_key() -> Res<Vec<u8>> {
    guard(|| Ok(Ed25519Signer::generate()?.1))
}

fn key_public(pkcs8: &[u8]) -> Res<[u8; 32]> {
    guard(|| Ok(Ed25519Signer::from_pkcs8(pkcs8)?.public_key()))
}

fn seed_public_key(seed: &[u8]) -> Res<[u8; 32]> {
    guard(|| {
        let seed = array::<32>(seed, "seed")?;
        Ok(Ed25519Signer::from_seed(&seed)?.public_key())
    })
}

fn key_id_of(public_key: &[u8]) -> Res<[u8; 16]> {
    let pk = array::<32>(public_key, "public_key")?;
    Ok(attest::key_id(&pk))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_read_code_then_words() {
        let e = CppError::new(codes::VERIFY_BAD_SIGNATURE, "no");
        assert_eq!(e.to_string(), "[402] no");
        let e = CppError::code(codes::UNKNOWN_JOB);
        assert!(e.to_string().starts_with("[102] "), "{e}");
        let e: CppError =
            tessera_core::Error::Usage(tessera_core::UsageError::UnknownJob(7)).into();
        assert!(
            e.to_string().starts_with("[102] ") && e.to_string().contains('7'),
            "{e}"
        );
    }

    #[test]
    fn a_panic_comes_back_as_code_6() {
        let r: Res<()> = guard(|| panic!("boom"));
        assert_eq!(r.map_err(|e| e.code), Err(codes::PANIC));
    }

    #[test]
    fn the_default_config_is_the_core_default() {
        let c = core_config(&agent_config_default()).unwrap();
        assert_eq!(c.policy, CorePolicy::default());
        assert_eq!(c.capabilities, DeviceCapabilities::default());
        assert!(!c.persist_results);
        let mut bad = agent_config_default();
        bad.policy.max_concurrent = 256;
        assert_eq!(
            core_config(&bad).err().map(|e| e.code),
            Some(codes::INVALID_CONFIG)
        );
        bad = agent_config_default();
        bad.device.name = "x".repeat(65);
        assert_eq!(
            core_config(&bad).err().map(|e| e.code),
            Some(codes::INVALID_CONFIG)
        );
    }

    #[test]
    fn kernel_hash_is_the_core_hash_and_refuses_what_no_job_carries() {
        let spec = [SpecConstant { id: 0, value: 64 }];
        let buffers = [BufferSpec {
            binding: 1,
            len: 4096,
            init_len: 0,
            readback: true,
        }];
        let ours = kernel_hash(&[0x11; 32], "main", &spec, &[1, 2], [4, 1, 1], &buffers).unwrap();
        let layout = [tessera_core::wire::BufferSpec {
            binding: 1,
            len: 4096,
            init_len: 0,
            readback: true,
        }];
        let core =
            attest::kernel_hash(&[0x11; 32], "main", &[(0, 64)], &[1, 2], [4, 1, 1], &layout);
        assert_eq!(ours, core);
        let code = |r: Res<[u8; 32]>| r.err().map(|e| e.code);
        let invalid = Some(codes::INVALID_ARGUMENT);
        assert_eq!(
            code(kernel_hash(&[0; 31], "main", &[], &[], [1; 3], &[])),
            invalid
        );
        let long = "m".repeat(MAX_ENTRY_POINT + 1);
        assert_eq!(
            code(kernel_hash(&[0; 32], &long, &[], &[], [1; 3], &[])),
            invalid
        );
        let push = [0u8; MAX_PUSH_CONSTANTS + 1];
        assert_eq!(
            code(kernel_hash(&[0; 32], "main", &[], &push, [1; 3], &[])),
            invalid
        );
        let nine = [buffers[0]; MAX_BUFFERS + 1];
        assert_eq!(
            code(kernel_hash(&[0; 32], "main", &[], &[], [1; 3], &nine)),
            invalid
        );
    }

    #[test]
    fn keys_and_receipts_check_their_lengths() {
        let pk = seed_public_key(&[3; 32]).unwrap();
        assert_eq!(key_id_of(&pk).unwrap(), attest::key_id(&pk));
        assert_eq!(
            seed_public_key(&[3; 31]).err().map(|e| e.code),
            Some(codes::INVALID_ARGUMENT)
        );
        assert_eq!(
            verify_receipt(&[0; 10], &pk[..5]).err().map(|e| e.code),
            Some(codes::INVALID_ARGUMENT)
        );
        assert_eq!(
            verify_receipt(&[0; 10], &pk).err().map(|e| e.code),
            Some(codes::VERIFY_MALFORMED)
        );
        let doc = generate_key().unwrap();
        assert_eq!(key_public(&doc).unwrap().len(), 32);
        assert_eq!(
            key_public(&doc[1..]).err().map(|e| e.code),
            Some(codes::KEY_REJECTED)
        );
    }
}
