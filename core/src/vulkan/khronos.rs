//! The second gate for untrusted kernels: the Khronos SPIR-V validator
//! (`spirv-val` from SPIRV-Tools), run as a bounded child process.
//!
//! Tessera's own validator runs first and is an allow-list: what a module may
//! declare and use, and the structural limits below. It does not check that
//! every instruction's operands agree in type, the layout rules of blocks,
//! structured control flow or the many rules of the Vulkan environment;
//! `spirv-val` does, for the device's target environment
//! (`--target-env vulkan1.x`).
//!
//! `spirv-val` is C++ that parses the requester's bytes, and some modules make
//! it slow or hungry: a chain of nested structures, 16 deep with 4 members each
//! (540 bytes, within every structural limit below), kept it busy for minutes
//! under `--target-env vulkan1.1` (its walk over struct members is exponential
//! in the depth), and a deeply nested type once took 9 s and 1.4 GB. So it
//! never runs unbounded:
//!
//! - a wall-clock deadline ([`KhronosConfig::time_limit`]) in this process,
//!   after which the child's whole process group is killed (`SIGKILL`) and the
//!   child reaped: nothing it started outlives the call, on any path;
//! - on Unix, resource limits: address space
//!   ([`KhronosConfig::memory_limit`]), CPU time (the time limit rounded up,
//!   plus one second: a backstop should this process stall), no core dumps, no
//!   file writes, at most [`MAX_OPEN_FILES`] open files. On Linux they are
//!   set with prlimit(2) right after the spawn and before the module is
//!   written (so that std can spawn with `posix_spawn`, see [`confine`]);
//!   on other Unix systems with setrlimit(2) in the child before `exec`;
//! - its output read through pipes by helper threads, at most
//!   [`MAX_OUTPUT_BYTES`] kept per stream (the rest is drained), so a chatty
//!   child never blocks on a full pipe and never costs more memory;
//! - the module written to its standard input (`spirv-val` reads `-` or no
//!   file as stdin) from a helper thread, with `SIGPIPE` blocked in that thread
//!   so a child that exits early cannot kill a host that left `SIGPIPE` at its
//!   default (C hosts do); no temporary file is ever written.
//!
//! How a run ends is told apart by the exit status: 0 accepts; 1 with an
//! `error:` line rejects (the first message is kept for the requester); death
//! by our `SIGKILL` after the deadline, or by `SIGXCPU`, is the time limit;
//! `SIGABRT` after `std::bad_alloc` (what an allocation refused under
//! `RLIMIT_AS` turns into) or a loader that cannot map itself is the memory
//! limit; anything else is a failure of the tool. Every outcome but `Ok`
//! means the kernel must not reach the driver.

use super::error::{JobError, KernelRejection, VulkanError};
use std::fmt;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// Most members of one `OpTypeStruct` (`--max-struct-members`).
pub(crate) const MAX_STRUCT_MEMBERS: u32 = 1024;
/// Deepest nesting of structures in structures (`--max-struct-depth`): a
/// struct of scalars has depth 1.
pub(crate) const MAX_STRUCT_DEPTH: u32 = 16;
/// Most parameters of one function (`--max-function-args`).
pub(crate) const MAX_FUNCTION_ARGS: u32 = 32;
/// Deepest nesting of structured control flow (selections and loops) in one
/// function (`--max-control-flow-nesting-depth`).
pub(crate) const MAX_CONTROL_FLOW_NESTING_DEPTH: u32 = 64;
/// Most indexes of one access chain (`--max-access-chain-indexes`).
pub(crate) const MAX_ACCESS_CHAIN_INDEXES: u32 = 16;
/// Largest id bound in the module header, 2^22 (`--max-id-bound`); the
/// dispatcher's own rule is "below 2^22".
pub(crate) const MAX_ID_BOUND: u32 = 1 << 22;
/// Most `Function` variables of one function (`--max-local-variables`).
pub(crate) const MAX_LOCAL_VARIABLES: u32 = 4096;
/// Most module-scope variables (`--max-global-variables`).
pub(crate) const MAX_GLOBAL_VARIABLES: u32 = 1024;
/// Most targets of one `OpSwitch` (`--max-switch-branches`).
pub(crate) const MAX_SWITCH_BRANCHES: u32 = 1024;

/// The smallest valid compute kernel (SPIR-V 1.3): an entry point `main`
/// that returns. [`KhronosGate::new`] checks that it passes.
#[rustfmt::skip]
const PROBE_MODULE: [u32; 35] = [
    0x0723_0203, 0x0001_0300, 0, 5, 0,      // magic, SPIR-V 1.3, generator, bound 5, schema
    (2 << 16) | 17, 1,                      // OpCapability Shader
    (3 << 16) | 14, 0, 1,                   // OpMemoryModel Logical GLSL450
    (5 << 16) | 15, 5, 1, 0x6e69_616d, 0,   // OpEntryPoint GLCompute %1 "main"
    (6 << 16) | 16, 1, 17, 1, 1, 1,         // OpExecutionMode %1 LocalSize 1 1 1
    (2 << 16) | 19, 2,                      // %2 = OpTypeVoid
    (3 << 16) | 33, 3, 2,                   // %3 = OpTypeFunction %2
    (5 << 16) | 54, 2, 1, 0, 3,             // %1 = OpFunction %2 None %3
    (2 << 16) | 248, 4,                     // %4 = OpLabel
    (1 << 16) | 253,                        // OpReturn
    (1 << 16) | 56,                         // OpFunctionEnd
];

/// The structural limits passed on every run, except the struct depth (whose
/// option has two spellings, see [`STRUCT_DEPTH_OPTIONS`]).
const LIMIT_OPTIONS: [(&str, u32); 8] = [
    ("--max-struct-members", MAX_STRUCT_MEMBERS),
    ("--max-function-args", MAX_FUNCTION_ARGS),
    (
        "--max-control-flow-nesting-depth",
        MAX_CONTROL_FLOW_NESTING_DEPTH,
    ),
    ("--max-access-chain-indexes", MAX_ACCESS_CHAIN_INDEXES),
    ("--max-id-bound", MAX_ID_BOUND),
    ("--max-local-variables", MAX_LOCAL_VARIABLES),
    ("--max-global-variables", MAX_GLOBAL_VARIABLES),
    ("--max-switch-branches", MAX_SWITCH_BRANCHES),
];

/// The struct-depth option, in the spellings tried in order. SPIRV-Tools'
/// help names `--max-struct-depth`, but its parser (2023.1, Debian 12) only
/// knows `--max-struct_depth` and refuses the documented name as an
/// unrecognized option; the gate uses the first one the program accepts.
const STRUCT_DEPTH_OPTIONS: [&str; 2] = ["--max-struct-depth", "--max-struct_depth"];

/// Default wall-clock budget per module.
pub(crate) const DEFAULT_TIME_LIMIT: Duration = Duration::from_secs(2);
/// Default address-space budget: 512 MiB. spirv-val 2023.1 on a 1 MiB
/// kernel (the dispatcher's default maximum) peaks at about 32 MiB resident
/// and fails with 32 MiB of address space but passes with 48 MiB: this is
/// ten times that.
pub(crate) const DEFAULT_MEMORY_LIMIT: u64 = 512 << 20;
/// The probes at start-up may take at least this long (whatever the
/// configured time limit), so that a loaded machine does not fail start-up.
const PROBE_TIME_LIMIT: Duration = Duration::from_secs(10);
/// At most this much of each output stream is kept; the rest is read and
/// dropped.
pub(crate) const MAX_OUTPUT_BYTES: usize = 64 << 10;
/// The message of a rejection is cut to this many characters.
pub(crate) const MAX_MESSAGE_CHARS: usize = 200;
/// `RLIMIT_NOFILE` of the child: its three standard streams, and what the
/// dynamic loader opens briefly.
pub(crate) const MAX_OPEN_FILES: u64 = 16;

/// Settings of the Khronos validator gate: `spirv-val` run on every new
/// kernel before a driver sees it, bounded in time and memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KhronosConfig {
    /// Run the gate (default true). Off leaves only Tessera's own validator.
    pub enabled: bool,
    /// The `spirv-val` program; `None`: `spirv-val` looked up on `PATH`.
    pub program: Option<PathBuf>,
    /// Wall-clock budget per module (default 2 s); the child is killed when
    /// it runs out and the kernel refused.
    pub time_limit: Duration,
    /// Address-space budget of the validator process in bytes (default 512
    /// MiB; a 1 MiB kernel needs less than 48 MiB, spirv-val itself about 8
    /// MiB to start). Enforced on Unix only.
    pub memory_limit: u64,
}

impl Default for KhronosConfig {
    fn default() -> Self {
        KhronosConfig {
            enabled: true,
            program: None,
            time_limit: DEFAULT_TIME_LIMIT,
            memory_limit: DEFAULT_MEMORY_LIMIT,
        }
    }
}

/// The Vulkan environment whose rules `spirv-val` applies
/// (`--target-env`): the device's API version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TargetEnv {
    /// Vulkan 1.1: SPIR-V up to 1.3.
    Vulkan1_1,
    /// Vulkan 1.2: SPIR-V up to 1.5.
    Vulkan1_2,
    /// Vulkan 1.3 and later: SPIR-V up to 1.6.
    Vulkan1_3,
}

impl TargetEnv {
    /// The environment for a device's `apiVersion`; `None` below 1.1 (which
    /// the dispatcher refuses anyway).
    pub(crate) fn for_api_version(api_version: u32) -> Option<TargetEnv> {
        let major = ash::vk::api_version_major(api_version);
        let minor = ash::vk::api_version_minor(api_version);
        match (major, minor) {
            (0, _) | (1, 0) => None,
            (1, 1) => Some(TargetEnv::Vulkan1_1),
            (1, 2) => Some(TargetEnv::Vulkan1_2),
            _ => Some(TargetEnv::Vulkan1_3),
        }
    }

    /// The value of `--target-env`.
    pub(crate) fn as_arg(self) -> &'static str {
        match self {
            TargetEnv::Vulkan1_1 => "vulkan1.1",
            TargetEnv::Vulkan1_2 => "vulkan1.2",
            TargetEnv::Vulkan1_3 => "vulkan1.3",
        }
    }
}

/// Why a kernel did not pass the gate. Every variant means the kernel must not
/// be run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum KhronosFailure {
    /// `spirv-val` refused the module: its first error message (with the
    /// offending instruction when it names one), printable ASCII only, at most
    /// [`MAX_MESSAGE_CHARS`] characters. For the requester.
    Rejected {
        /// E.g. `line 18: Expected arithmetic operands to be of Result Type:
        /// IAdd operand index 3 [%14 = OpIAdd %uint %13 %float_1]`.
        message: String,
    },
    /// Killed at the time limit (or by `SIGXCPU` at the CPU limit).
    TimeLimit,
    /// Ran out of its address-space budget.
    MemoryLimit,
    /// Could not be run, or died otherwise (spawn error, unexpected exit
    /// status or signal): a description for the provider's log.
    Failed(String),
}

impl fmt::Display for KhronosFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KhronosFailure::Rejected { message } => {
                write!(f, "rejected by the Khronos validator: {message}")
            }
            KhronosFailure::TimeLimit => {
                write!(f, "the Khronos validator ran out of its time limit")
            }
            KhronosFailure::MemoryLimit => {
                write!(f, "the Khronos validator ran out of its memory limit")
            }
            KhronosFailure::Failed(why) => write!(f, "the Khronos validator failed: {why}"),
        }
    }
}

impl KhronosFailure {
    /// The job's outcome: a refusal of the kernel, or (when the tool
    /// itself failed) a provider-side failure.
    pub(crate) fn into_job_error(self) -> JobError {
        match self {
            KhronosFailure::Rejected { message } => {
                JobError::Rejected(KernelRejection::KhronosRejected { message })
            }
            KhronosFailure::TimeLimit => JobError::Rejected(KernelRejection::KhronosTimeLimit),
            KhronosFailure::MemoryLimit => JobError::Rejected(KernelRejection::KhronosMemoryLimit),
            KhronosFailure::Failed(why) => JobError::ValidatorUnavailable(why),
        }
    }

    /// Whether the verdict is about the kernel (and may be cached with it).
    pub(crate) fn is_verdict(&self) -> bool {
        !matches!(self, KhronosFailure::Failed(_))
    }
}

/// The Khronos validator as the dispatcher runs it, for use without a
/// dispatcher: a requester checking a kernel before sending it, benchmarks.
#[derive(Debug, Clone)]
pub struct KhronosValidator {
    gate: KhronosGate,
}

impl KhronosValidator {
    /// Finds and checks `spirv-val` as `config` says (its `enabled` flag is
    /// ignored: this is the validator itself).
    pub fn new(config: &KhronosConfig) -> Result<KhronosValidator, VulkanError> {
        let config = KhronosConfig {
            enabled: true,
            ..config.clone()
        };
        match KhronosGate::new(&config) {
            Ok(Some(gate)) => Ok(KhronosValidator { gate }),
            Ok(None) => Err(VulkanError::KhronosUnavailable("disabled".into())),
            Err(e) => Err(VulkanError::KhronosUnavailable(e.to_string())),
        }
    }

    /// Validates `spirv` for a device of Vulkan version `api_version` (as
    /// `VK_MAKE_API_VERSION` packs it), within the configured bounds:
    /// `JobError::Rejected` with a `Khronos*` rejection when the kernel
    /// fails, `JobError::ValidatorUnavailable` when the tool does.
    pub fn validate(&self, spirv: &[u8], api_version: u32) -> Result<(), JobError> {
        let env = TargetEnv::for_api_version(api_version)
            .ok_or(JobError::Rejected(KernelRejection::UnsupportedVersion(0)))?;
        if spirv.len() % 4 != 0 {
            return Err(JobError::Rejected(KernelRejection::NotWordAligned));
        }
        let words: Vec<u32> = spirv
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        self.gate
            .validate(&words, env)
            .map_err(KhronosFailure::into_job_error)
    }

    /// The first line of `spirv-val --version`.
    pub fn version(&self) -> &str {
        self.gate.version()
    }
}

/// Why the gate cannot be set up; the dispatcher reports it as a setup error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum KhronosUnavailable {
    /// A limit of zero: the configuration could never accept a kernel.
    InvalidConfig(&'static str),
    /// The program could not be started (not on `PATH`, not executable):
    /// install SPIRV-Tools, set `program`, or disable the gate.
    CannotStart {
        /// The program tried.
        program: PathBuf,
        /// The operating system's reason.
        error: String,
    },
    /// The program started but did not answer `--version` with the gate's
    /// options within its bounds: too old (no `--target-env vulkan1.3`, which
    /// SPIRV-Tools has since 2022.1), an unknown limit option, too little
    /// memory to load, or it crashed.
    Probe {
        /// The program tried.
        program: PathBuf,
        /// What went wrong, with the start of its output.
        detail: String,
    },
}

impl fmt::Display for KhronosUnavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KhronosUnavailable::InvalidConfig(why) => {
                write!(f, "invalid Khronos validator settings: {why}")
            }
            KhronosUnavailable::CannotStart { program, error } => write!(
                f,
                "the Khronos validator {} cannot be started ({error}): install SPIRV-Tools, \
                 set its path, or disable the gate",
                program.display()
            ),
            KhronosUnavailable::Probe { program, detail } => write!(
                f,
                "the Khronos validator {} does not work with Tessera's options: {detail}",
                program.display()
            ),
        }
    }
}

impl std::error::Error for KhronosUnavailable {}

/// A checked, ready `spirv-val`: validates kernels for a target environment
/// within the configured bounds. Shareable between threads.
#[derive(Debug, Clone)]
pub(crate) struct KhronosGate {
    program: PathBuf,
    bounds: Bounds,
    /// The structural-limit options, spelled as this program accepts them.
    limit_args: Vec<String>,
    /// The first line of `spirv-val --version`.
    version: String,
}

impl KhronosGate {
    /// The gate for `config`; `Ok(None)` when it is disabled. Looks the
    /// program up on `PATH` (once) and runs it twice under the memory limit
    /// (and a time limit of at least 10 s): `--version` with every option the
    /// gate passes, and the validation of a minimal kernel, which must pass.
    /// A missing or broken program, or limits it cannot work in, are an
    /// error.
    pub(crate) fn new(config: &KhronosConfig) -> Result<Option<KhronosGate>, KhronosUnavailable> {
        if !config.enabled {
            return Ok(None);
        }
        if config.time_limit.is_zero() {
            return Err(KhronosUnavailable::InvalidConfig("the time limit is zero"));
        }
        if config.memory_limit == 0 {
            return Err(KhronosUnavailable::InvalidConfig(
                "the memory limit is zero",
            ));
        }
        let program = resolve(config.program.as_deref().unwrap_or(Path::new("spirv-val")))?;
        let bounds = Bounds {
            time: config.time_limit,
            memory: config.memory_limit,
        };
        let probe_bounds = Bounds {
            time: bounds.time.max(PROBE_TIME_LIMIT),
            ..bounds
        };
        let mut refusal = String::new();
        for depth_option in STRUCT_DEPTH_OPTIONS {
            let limit_args = limit_args(depth_option);
            let mut args = limit_args.clone();
            args.extend(
                ["--target-env", TargetEnv::Vulkan1_3.as_arg(), "--version"].map(String::from),
            );
            let run = run_bounded(&program, &args, None, true, probe_bounds).map_err(|e| {
                KhronosUnavailable::CannotStart {
                    program: program.clone(),
                    error: e.to_string(),
                }
            })?;
            if run.exited_with(0) && !run.timed_out {
                let version = first_line(&run.stdout).unwrap_or_default();
                let mut gate = KhronosGate {
                    program,
                    bounds: probe_bounds,
                    limit_args,
                    version,
                };
                // End to end, under the memory limit: a gate that cannot
                // pass a trivial kernel would refuse every job.
                let verdict = gate.validate(&PROBE_MODULE, TargetEnv::Vulkan1_1);
                gate.bounds = bounds;
                return match verdict {
                    Ok(()) => Ok(Some(gate)),
                    Err(failure) => Err(KhronosUnavailable::Probe {
                        program: gate.program,
                        detail: match failure {
                            KhronosFailure::MemoryLimit => format!(
                                "a minimal kernel does not fit in the memory limit of {} bytes",
                                gate.bounds.memory
                            ),
                            other => format!("a minimal kernel does not pass: {other}"),
                        },
                    }),
                };
            }
            refusal = describe_run(&run);
            // Only an unknown struct-depth spelling is worth another try.
            if !(run.exited_with(1) && lossy(&run.stderr).contains(depth_option)) {
                break;
            }
        }
        Err(KhronosUnavailable::Probe {
            program,
            detail: refusal,
        })
    }

    /// The first line `spirv-val --version` printed (e.g. `SPIRV-Tools
    /// v2023.1 ...`), for the provider's log and evidence.
    pub(crate) fn version(&self) -> &str {
        &self.version
    }

    /// Validates `words` (a whole module, header included) for `env`, within
    /// the time and memory limits. Blocks for at most about the time limit.
    pub(crate) fn validate(&self, words: &[u32], env: TargetEnv) -> Result<(), KhronosFailure> {
        let mut args = self.limit_args.clone();
        args.extend(["--target-env", env.as_arg(), "-"].map(String::from));
        let run =
            run_bounded(&self.program, &args, Some(words), false, self.bounds).map_err(|e| {
                KhronosFailure::Failed(format!("could not run {}: {e}", self.program.display()))
            })?;
        run.verdict()
    }
}

/// `program` as a path: one without a directory is looked up on `PATH` once,
/// here, so that every run starts the program that was probed (and spends
/// no failed `execve` calls on the search).
fn resolve(program: &Path) -> Result<PathBuf, KhronosUnavailable> {
    if program.components().count() != 1 || program.is_absolute() {
        return Ok(program.to_path_buf());
    }
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path).find_map(|dir| executable(dir.join(program)))
    });
    found.ok_or_else(|| KhronosUnavailable::CannotStart {
        program: program.to_path_buf(),
        error: "not found on PATH".into(),
    })
}

/// `candidate` if it is an executable file.
#[cfg(unix)]
fn executable(candidate: PathBuf) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let metadata = std::fs::metadata(&candidate).ok()?;
    (metadata.is_file() && metadata.permissions().mode() & 0o111 != 0).then_some(candidate)
}

/// `candidate`, or `candidate.exe`, if it is a file.
#[cfg(not(unix))]
fn executable(candidate: PathBuf) -> Option<PathBuf> {
    if candidate.is_file() {
        return Some(candidate);
    }
    let exe = candidate.with_extension("exe");
    exe.is_file().then_some(exe)
}

/// The options for the structural limits, with `depth_option` for the depth.
fn limit_args(depth_option: &str) -> Vec<String> {
    let mut args = Vec::with_capacity(2 * (LIMIT_OPTIONS.len() + 1) + 3);
    for (option, value) in LIMIT_OPTIONS {
        args.push(option.to_string());
        args.push(value.to_string());
    }
    args.push(depth_option.to_string());
    args.push(MAX_STRUCT_DEPTH.to_string());
    args
}

/// The bounds of one run of the program.
#[derive(Debug, Clone, Copy)]
struct Bounds {
    /// Wall-clock time from spawn to kill.
    time: Duration,
    /// `RLIMIT_AS` in bytes (Unix).
    memory: u64,
}

/// What one bounded run gave.
#[derive(Debug)]
struct Run {
    status: ExitStatus,
    /// The deadline passed and the process group was killed.
    timed_out: bool,
    /// The whole input was written. (The pipe took it: a child that exits
    /// without reading is seen when it exits before the write, or when the
    /// input is larger than the pipe buffers.)
    input_complete: bool,
    /// The start of standard output (at most [`MAX_OUTPUT_BYTES`]).
    stdout: Vec<u8>,
    /// The start of standard error (at most [`MAX_OUTPUT_BYTES`]).
    stderr: Vec<u8>,
}

impl Run {
    fn exited_with(&self, code: i32) -> bool {
        self.status.code() == Some(code)
    }

    /// The gate's verdict on a validation run.
    fn verdict(&self) -> Result<(), KhronosFailure> {
        let signal = exit_signal(&self.status);
        if self.timed_out && self.status.code().is_none() {
            return Err(KhronosFailure::TimeLimit);
        }
        if signal.is_some() && signal == SIGXCPU {
            return Err(KhronosFailure::TimeLimit);
        }
        if self.ran_out_of_memory(signal) {
            return Err(KhronosFailure::MemoryLimit);
        }
        match self.status.code() {
            Some(0) if !self.input_complete => Err(KhronosFailure::Failed(
                "exited with status 0 before reading the whole module".into(),
            )),
            Some(0) => Ok(()),
            Some(1) => match first_error(&self.stderr) {
                Some(message) => Err(KhronosFailure::Rejected { message }),
                None => Err(KhronosFailure::Failed(describe_run(self))),
            },
            _ => Err(KhronosFailure::Failed(describe_run(self))),
        }
    }

    /// An allocation refused under `RLIMIT_AS`: in spirv-val (C++) an
    /// uncaught `std::bad_alloc`, which aborts; or, before `main`, the
    /// dynamic loader unable to map a library (exit status 127).
    fn ran_out_of_memory(&self, signal: Option<i32>) -> bool {
        let text = lossy(&self.stderr);
        let bad_alloc = text.lines().any(|line| {
            line.starts_with("terminate called after throwing an instance of 'std::bad_alloc'")
                || line.trim() == "what():  std::bad_alloc"
        });
        let loader_out_of_memory = text.lines().any(|line| {
            line.contains("error while loading shared libraries")
                && (line.contains("failed to map segment")
                    || line.contains("cannot map zero-fill pages")
                    || line.contains("cannot allocate memory")
                    || line.contains("Cannot allocate memory"))
        });
        (bad_alloc && signal.is_some() && signal == SIGABRT)
            || (loader_out_of_memory && self.status.code() == Some(127))
    }
}

/// Runs `program args`, feeding `input` (native-endian words) to its standard
/// input, within `bounds`. Returns only once the child is reaped and its
/// process group killed; an error when it could not be started or confined,
/// or a helper thread not started (then it was killed).
fn run_bounded(
    program: &Path,
    args: &[String],
    input: Option<&[u32]>,
    capture_stdout: bool,
    bounds: Bounds,
) -> io::Result<Run> {
    let start = Instant::now();
    let deadline = start.checked_add(bounds.time);
    let mut command = Command::new(program);
    command
        .args(args)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(if capture_stdout {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stderr(Stdio::piped());
    confine(&mut command, bounds);
    let mut child = command.spawn()?;
    if let Err(error) = limit_child(&child, bounds) {
        // Never run it unbounded.
        let _ = Reaper::new(&mut child).kill_and_reap();
        return Err(error);
    }
    let stdin = child.stdin.take();
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();

    thread::scope(|scope| {
        // Declared first in the scope so that it is dropped, killing and
        // reaping the child, before the scope joins the threads: they end
        // once the child's pipes close.
        let mut child = Reaper::new(&mut child);
        let (done, finished) = mpsc::channel::<()>();
        let stdout = spawn_reader(scope, stdout.map(Stream::Out), &done)?;
        let stderr = spawn_reader(scope, stderr.map(Stream::Err), &done)?;
        drop(done);
        let writer = match (stdin, input) {
            (Some(mut stdin), Some(words)) => Some(
                thread::Builder::new()
                    .name("spirv-val input".into())
                    .spawn_scoped(scope, move || {
                        block_sigpipe_in_this_thread();
                        // An error means the child stopped reading (it exited
                        // or was killed).
                        write_words(&mut stdin, words).is_ok()
                    })?,
            ),
            _ => None,
        };

        // Wait for both streams to close (the usual sign of exit, with no
        // polling delay), then for the exit itself, until the deadline.
        let mut open = usize::from(stdout.is_some()) + usize::from(stderr.is_some());
        let mut timed_out = false;
        while open > 0 {
            let Some(left) = time_left(deadline) else {
                timed_out = true;
                break;
            };
            match finished.recv_timeout(left) {
                Ok(()) => open -= 1,
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    timed_out = true;
                    break;
                }
            }
        }
        if !timed_out {
            timed_out = !child.wait_for_exit(deadline)?;
        }
        let status = child.kill_and_reap()?;
        let output = |reader: Option<thread::ScopedJoinHandle<'_, Vec<u8>>>| {
            reader
                .and_then(|handle| handle.join().ok())
                .unwrap_or_default()
        };
        let input_complete = writer.is_none_or(|handle| handle.join().unwrap_or(false));
        Ok(Run {
            status,
            timed_out,
            input_complete,
            stdout: output(stdout),
            stderr: output(stderr),
        })
    })
}

/// Starts a thread that reads `stream` to its end (keeping the first
/// [`MAX_OUTPUT_BYTES`]) and then says so on `done`.
fn spawn_reader<'scope>(
    scope: &'scope thread::Scope<'scope, '_>,
    stream: Option<Stream>,
    done: &mpsc::Sender<()>,
) -> io::Result<Option<thread::ScopedJoinHandle<'scope, Vec<u8>>>> {
    let Some(stream) = stream else {
        return Ok(None);
    };
    let done = done.clone();
    let handle = thread::Builder::new()
        .name("spirv-val output".into())
        .spawn_scoped(scope, move || {
            let kept = read_bounded(stream.reader(), MAX_OUTPUT_BYTES);
            let _ = done.send(());
            kept
        })?;
    Ok(Some(handle))
}

/// The time until `deadline`; `None` once it has passed. No deadline (a time
/// limit too large for `Instant`) never passes.
fn time_left(deadline: Option<Instant>) -> Option<Duration> {
    match deadline {
        Some(deadline) => deadline
            .checked_duration_since(Instant::now())
            .filter(|left| !left.is_zero()),
        None => Some(Duration::MAX),
    }
}

/// One of the child's output pipes.
enum Stream {
    Out(std::process::ChildStdout),
    Err(std::process::ChildStderr),
}

impl Stream {
    fn reader(self) -> Box<dyn Read + Send> {
        match self {
            Stream::Out(out) => Box::new(out),
            Stream::Err(err) => Box::new(err),
        }
    }
}

/// Reads `reader` to its end, keeping the first `keep` bytes.
fn read_bounded(mut reader: impl Read, keep: usize) -> Vec<u8> {
    let mut kept = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                let room = keep.saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    kept
}

/// Writes `words` as native-endian bytes (`spirv-val` reads either byte order
/// from the magic number), a chunk at a time, then closes the pipe.
fn write_words(out: &mut impl Write, words: &[u32]) -> io::Result<()> {
    let mut buf = [0u8; 16 << 10];
    let mut written = Ok(());
    for chunk in words.chunks(buf.len() / 4) {
        for (bytes, word) in buf.chunks_exact_mut(4).zip(chunk) {
            bytes.copy_from_slice(&word.to_ne_bytes());
        }
        written = out.write_all(&buf[..chunk.len() * 4]);
        if written.is_err() {
            break;
        }
    }
    // The module may be a sealed job's kernel.
    zeroize::Zeroize::zeroize(&mut buf[..]);
    written?;
    out.flush()
}

/// Owns the child while it runs: whatever happens, the process group is
/// killed and the child reaped before the helper threads are joined.
struct Reaper<'a> {
    child: &'a mut Child,
    status: Option<ExitStatus>,
}

impl<'a> Reaper<'a> {
    fn new(child: &'a mut Child) -> Self {
        Reaper {
            child,
            status: None,
        }
    }

    /// Waits, without reaping, until the child exits (`true`) or the
    /// deadline passes (`false`). Sleeps from 100 us, doubling up to 10 ms.
    fn wait_for_exit(&mut self, deadline: Option<Instant>) -> io::Result<bool> {
        let mut nap = Duration::from_micros(100);
        loop {
            if self.has_exited()? {
                return Ok(true);
            }
            let Some(left) = time_left(deadline) else {
                return Ok(false);
            };
            thread::sleep(nap.min(left));
            nap = (nap * 2).min(Duration::from_millis(10));
        }
    }

    /// Whether the child has exited. On Unix the child stays a zombie, so
    /// its pid, which is also its process group's id, cannot be reused
    /// before [`Reaper::kill_and_reap`] signals the group.
    #[cfg(unix)]
    fn has_exited(&mut self) -> io::Result<bool> {
        let pid = self.pid()?;
        loop {
            // SAFETY: all-zero bytes are a valid `siginfo_t` (plain data).
            let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
            // SAFETY: `info` is a valid, writable `siginfo_t`; WNOWAIT leaves
            // the child waitable, so std's `Child` still reaps it.
            let r = unsafe {
                libc::waitid(
                    libc::P_PID,
                    pid as libc::id_t,
                    &mut info,
                    libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
                )
            };
            if r == 0 {
                // SAFETY: waitid filled `info` (or left it zeroed when no
                // child has changed state, so si_pid reads 0).
                return Ok(unsafe { info.si_pid() } != 0);
            }
            let error = io::Error::last_os_error();
            if error.kind() != io::ErrorKind::Interrupted {
                return Err(error);
            }
        }
    }

    #[cfg(not(unix))]
    fn has_exited(&mut self) -> io::Result<bool> {
        Ok(self.child.try_wait()?.is_some())
    }

    #[cfg(unix)]
    fn pid(&self) -> io::Result<libc::pid_t> {
        libc::pid_t::try_from(self.child.id())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "child pid out of range"))
    }

    /// Kills the child's process group (a no-op for a group that has ended)
    /// and reaps the child.
    fn kill_and_reap(&mut self) -> io::Result<ExitStatus> {
        if let Some(status) = self.status {
            return Ok(status);
        }
        self.kill();
        let status = self.child.wait()?;
        self.status = Some(status);
        Ok(status)
    }

    #[cfg(unix)]
    fn kill(&mut self) {
        match self.pid() {
            // SAFETY: kill(2) has no memory-safety preconditions. The child
            // leads its own process group (process_group(0)) and is not
            // reaped yet, so the group id is still the child's.
            Ok(pid) => unsafe {
                libc::kill(-pid, libc::SIGKILL);
            },
            Err(_) => {
                let _ = self.child.kill();
            }
        }
    }

    #[cfg(not(unix))]
    fn kill(&mut self) {
        let _ = self.child.kill();
    }
}

impl Drop for Reaper<'_> {
    fn drop(&mut self) {
        let _ = self.kill_and_reap();
    }
}

/// The resource limits of the child, never above this process's own hard
/// limits (raising a hard limit would fail).
#[cfg(unix)]
fn rlimits(bounds: Bounds) -> [(RlimitResource, libc::rlimit); 5] {
    let cpu_seconds = bounds
        .time
        .as_secs()
        .saturating_add(u64::from(bounds.time.subsec_nanos() > 0))
        .saturating_add(1);
    [
        (
            libc::RLIMIT_AS,
            bounded(libc::RLIMIT_AS, bounds.memory, bounds.memory),
        ),
        // Soft: SIGXCPU (told apart as the time limit); hard, a second
        // later: SIGKILL.
        (
            libc::RLIMIT_CPU,
            bounded(libc::RLIMIT_CPU, cpu_seconds, cpu_seconds.saturating_add(1)),
        ),
        (libc::RLIMIT_CORE, bounded(libc::RLIMIT_CORE, 0, 0)),
        (libc::RLIMIT_FSIZE, bounded(libc::RLIMIT_FSIZE, 0, 0)),
        (
            libc::RLIMIT_NOFILE,
            bounded(libc::RLIMIT_NOFILE, MAX_OPEN_FILES, MAX_OPEN_FILES),
        ),
    ]
}

/// Prepares the child's confinement. On Linux only its own process group:
/// std then starts it with `posix_spawn` (a `vfork`-like clone), and the
/// limits are applied by [`limit_child`] right after the spawn, before it is
/// sent a byte. Setting them in the child instead (`pre_exec`) forces a real
/// `fork`, whose cost grows with the host's memory: 120 ms instead of 4 ms
/// per run from a process with 2 GiB resident, as a GPU agent easily is.
#[cfg(all(target_os = "linux", any(target_env = "gnu", target_env = "musl")))]
fn confine(command: &mut Command, _bounds: Bounds) {
    use std::os::unix::process::CommandExt;
    command.process_group(0);
}

/// Applies the resource limits to the running child with prlimit(2). Its
/// only input is the module on stdin, which is written after this, so
/// nothing the requester sent is read unbounded. (The limits land while the
/// dynamic loader runs, or rarely just after the program has started: the
/// start-up itself, the same for every module, is not reliably bounded.)
#[cfg(all(target_os = "linux", any(target_env = "gnu", target_env = "musl")))]
fn limit_child(child: &Child, bounds: Bounds) -> io::Result<()> {
    let pid = libc::pid_t::try_from(child.id())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "child pid out of range"))?;
    for (resource, limit) in rlimits(bounds) {
        // SAFETY: `limit` is a valid `rlimit` and the old value is not asked
        // for (null). The child is not reaped, so `pid` is still the child.
        if unsafe { libc::prlimit(pid, resource, &limit, std::ptr::null_mut()) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Confines the child before `exec` (Unix without prlimit in libc): its own process
/// group and the resource limits, set in the child.
#[cfg(all(
    unix,
    not(all(target_os = "linux", any(target_env = "gnu", target_env = "musl")))
))]
fn confine(command: &mut Command, bounds: Bounds) {
    use std::os::unix::process::CommandExt;
    let limits = rlimits(bounds);
    command.process_group(0);
    // SAFETY: the closure runs in the child between fork and exec, where only
    // async-signal-safe functions may be called. It only calls setrlimit(2)
    // on values computed above, before the fork, and allocates nothing
    // (`io::Error::last_os_error` stores the errno inline).
    unsafe {
        command.pre_exec(move || {
            for (resource, limit) in &limits {
                if libc::setrlimit(*resource, limit) != 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
}

#[cfg(all(
    unix,
    not(all(target_os = "linux", any(target_env = "gnu", target_env = "musl")))
))]
fn limit_child(_child: &Child, _bounds: Bounds) -> io::Result<()> {
    Ok(())
}

#[cfg(not(unix))]
fn confine(_command: &mut Command, _bounds: Bounds) {
    // No resource limits here: the wall-clock deadline alone bounds the run,
    // and the memory limit is not enforced.
}

#[cfg(not(unix))]
fn limit_child(_child: &Child, _bounds: Bounds) -> io::Result<()> {
    Ok(())
}

/// The limit `(soft, hard)` for `resource`, lowered to this process's hard
/// limit where that is lower (raising it would fail the spawn).
#[cfg(unix)]
fn bounded(resource: RlimitResource, soft: u64, hard: u64) -> libc::rlimit {
    let to_rlim = |v: u64| libc::rlim_t::try_from(v).unwrap_or(libc::RLIM_INFINITY);
    let mut current = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: `current` is a valid, writable `rlimit`.
    let ceiling = if unsafe { libc::getrlimit(resource, &mut current) } == 0 {
        current.rlim_max
    } else {
        libc::RLIM_INFINITY
    };
    let hard = to_rlim(hard).min(ceiling);
    libc::rlimit {
        rlim_cur: to_rlim(soft).min(hard),
        rlim_max: hard,
    }
}

/// The type of `RLIMIT_*` (it differs between C libraries).
#[cfg(all(unix, target_os = "linux", target_env = "gnu"))]
type RlimitResource = libc::__rlimit_resource_t;
#[cfg(not(all(unix, target_os = "linux", target_env = "gnu")))]
#[cfg(unix)]
type RlimitResource = libc::c_int;

/// Blocks `SIGPIPE` in the calling thread, so that writing to a pipe whose
/// reader has gone returns `EPIPE` instead of killing the process (a
/// thread-directed signal still pending when the thread ends is dropped).
#[cfg(unix)]
fn block_sigpipe_in_this_thread() {
    // SAFETY: `set` is a local, initialised by sigemptyset before use;
    // pthread_sigmask changes only the calling thread's mask.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGPIPE);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

#[cfg(not(unix))]
fn block_sigpipe_in_this_thread() {}

#[cfg(unix)]
fn exit_signal(status: &ExitStatus) -> Option<i32> {
    use std::os::unix::process::ExitStatusExt;
    status.signal()
}

#[cfg(not(unix))]
fn exit_signal(_status: &ExitStatus) -> Option<i32> {
    None
}

/// The signals told apart from others: the CPU limit and an abort.
#[cfg(unix)]
const SIGXCPU: Option<i32> = Some(libc::SIGXCPU);
#[cfg(unix)]
const SIGABRT: Option<i32> = Some(libc::SIGABRT);
#[cfg(not(unix))]
const SIGXCPU: Option<i32> = None;
#[cfg(not(unix))]
const SIGABRT: Option<i32> = None;

/// The name of a signal the tool may die of, for the log.
fn signal_name(signal: i32) -> &'static str {
    #[cfg(unix)]
    {
        match signal {
            libc::SIGSEGV => "SIGSEGV",
            libc::SIGABRT => "SIGABRT",
            libc::SIGBUS => "SIGBUS",
            libc::SIGILL => "SIGILL",
            libc::SIGFPE => "SIGFPE",
            libc::SIGKILL => "SIGKILL",
            libc::SIGTERM => "SIGTERM",
            libc::SIGPIPE => "SIGPIPE",
            libc::SIGXFSZ => "SIGXFSZ",
            libc::SIGSYS => "SIGSYS",
            _ => "signal",
        }
    }
    #[cfg(not(unix))]
    {
        let _ = signal;
        "signal"
    }
}

/// How a run ended, with the start of what it said: for logs and
/// [`KhronosFailure::Failed`].
fn describe_run(run: &Run) -> String {
    let how = if run.timed_out {
        "did not finish within its time limit".to_string()
    } else if let Some(code) = run.status.code() {
        format!("exited with status {code}")
    } else if let Some(signal) = exit_signal(&run.status) {
        format!("died of {} ({signal})", signal_name(signal))
    } else {
        format!("ended with {}", run.status)
    };
    match first_line(&run.stderr).or_else(|| first_line(&run.stdout)) {
        Some(line) => clip(&format!("{how}: {line}"), MAX_MESSAGE_CHARS),
        None => how,
    }
}

/// The first error `spirv-val` printed (`error: line 18: ...`), without the
/// `error:` tag, followed by the instruction it shows (indented on the next
/// line) in brackets, clipped.
fn first_error(output: &[u8]) -> Option<String> {
    let text = lossy(output);
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if let Some(message) = line.strip_prefix("error:") {
            let mut message = message.trim().to_string();
            if let Some(next) = lines.next() {
                if next.starts_with(' ') && !next.trim().is_empty() {
                    message = format!("{message} [{}]", next.trim());
                }
            }
            return Some(clip(&message, MAX_MESSAGE_CHARS));
        }
    }
    None
}

/// The first non-blank line of `output`, clipped.
fn first_line(output: &[u8]) -> Option<String> {
    lossy(output)
        .lines()
        .map(str::trim)
        .find(|line| !line.is_empty())
        .map(|line| clip(line, MAX_MESSAGE_CHARS))
}

fn lossy(bytes: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(bytes)
}

/// `text` as printable ASCII (anything else, e.g. bytes of a requester's
/// `OpName` or control characters, becomes `?`), at most `max` characters,
/// ending in `...` when cut.
fn clip(text: &str, max: usize) -> String {
    let printable = |c: char| {
        if c == ' ' || c.is_ascii_graphic() {
            c
        } else {
            '?'
        }
    };
    if text.chars().count() <= max {
        return text.chars().map(printable).collect();
    }
    let mut clipped: String = text
        .chars()
        .take(max.saturating_sub(3))
        .map(printable)
        .collect();
    clipped.push_str("...");
    clipped
}

#[cfg(test)]
mod tests {
    //! These tests run the real `spirv-val` (package `spirv-tools`), and on
    //! Unix small shell scripts standing in for it.

    use super::*;

    const KERNELS: [&str; 7] = [
        "saxpy",
        "matmul",
        "reduce",
        "mandelbrot",
        "copy",
        "fma",
        "spec_workgroup",
    ];

    fn kernel(name: &str) -> Vec<u32> {
        let path = format!("{}/kernels/{name}.spv", env!("CARGO_MANIFEST_DIR"));
        let bytes = std::fs::read(&path).expect("committed kernel");
        bytes
            .chunks_exact(4)
            .map(|w| u32::from_le_bytes([w[0], w[1], w[2], w[3]]))
            .collect()
    }

    fn gate_with(config: KhronosConfig) -> KhronosGate {
        match KhronosGate::new(&config) {
            Ok(Some(gate)) => gate,
            Ok(None) => panic!("the gate is enabled"),
            Err(e) => panic!("{e} (the tests need spirv-val: apt-get install spirv-tools)"),
        }
    }

    fn default_gate() -> KhronosGate {
        gate_with(KhronosConfig::default())
    }

    /// A minimal SPIR-V writer: instructions as words, ids handed out in order.
    struct Asm {
        bound: u32,
        body: Vec<u32>,
    }

    impl Asm {
        fn new() -> Self {
            Asm {
                bound: 1,
                body: Vec::new(),
            }
        }

        fn id(&mut self) -> u32 {
            self.bound += 1;
            self.bound - 1
        }

        fn op(&mut self, opcode: u32, operands: &[u32]) {
            let count = u32::try_from(operands.len() + 1).expect("short instruction");
            self.body.push((count << 16) | opcode);
            self.body.extend_from_slice(operands);
        }

        /// SPIR-V 1.3 header, then the instructions.
        fn words(&self) -> Vec<u32> {
            let mut words = vec![0x0723_0203, 0x0001_0300, 0, self.bound, 0];
            words.extend_from_slice(&self.body);
            words
        }

        /// Capability Shader, Logical GLSL450, a GLCompute entry point "main"
        /// with LocalSize 1 1 1. Returns the id of `main`.
        fn compute_preamble(&mut self) -> u32 {
            let main = self.id();
            self.op(17, &[1]); // OpCapability Shader
            self.op(14, &[0, 1]); // OpMemoryModel Logical GLSL450
            let name = u32::from_le_bytes(*b"main");
            self.op(15, &[5, main, name, 0]); // OpEntryPoint GLCompute %main "main"
            self.op(16, &[main, 17, 1, 1, 1]); // OpExecutionMode LocalSize 1 1 1
            main
        }
    }

    /// A kernel that loads word 0 of a storage buffer, adds it to itself
    /// `adds` times (a chain of OpIAdd, 20 bytes each) and stores the result.
    /// With `float_operand`, the last add takes a float constant as an
    /// operand: invalid (operand types must match the result type).
    fn add_chain(adds: usize, float_operand: bool) -> Vec<u32> {
        let mut asm = Asm::new();
        let main = asm.compute_preamble();
        let [void, fn_void, uint, float, array, block, p_block, p_uint, buffer, zero, one_f] =
            [(); 11].map(|()| asm.id());
        asm.op(71, &[array, 6, 4]); // OpDecorate ArrayStride 4
        asm.op(72, &[block, 0, 35, 0]); // OpMemberDecorate Offset 0
        asm.op(71, &[block, 2]); // OpDecorate Block
        asm.op(71, &[buffer, 34, 0]); // DescriptorSet 0
        asm.op(71, &[buffer, 33, 0]); // Binding 0
        asm.op(19, &[void]); // OpTypeVoid
        asm.op(33, &[fn_void, void]); // OpTypeFunction
        asm.op(21, &[uint, 32, 0]); // OpTypeInt 32 unsigned
        asm.op(22, &[float, 32]); // OpTypeFloat 32
        asm.op(29, &[array, uint]); // OpTypeRuntimeArray
        asm.op(30, &[block, array]); // OpTypeStruct
        asm.op(32, &[p_block, 12, block]); // OpTypePointer StorageBuffer
        asm.op(32, &[p_uint, 12, uint]);
        asm.op(59, &[p_block, buffer, 12]); // OpVariable StorageBuffer
        asm.op(43, &[uint, zero, 0]); // OpConstant 0
        asm.op(43, &[float, one_f, 0x3f80_0000]); // OpConstant 1.0
        asm.op(54, &[void, main, 0, fn_void]); // OpFunction
        let label = asm.id();
        asm.op(248, &[label]); // OpLabel
        let pointer = asm.id();
        asm.op(65, &[p_uint, pointer, buffer, zero, zero]); // OpAccessChain
        let mut value = asm.id();
        asm.op(61, &[uint, value, pointer]); // OpLoad
        for i in 0..adds {
            let sum = asm.id();
            let other = if float_operand && i + 1 == adds {
                one_f
            } else {
                value
            };
            asm.op(128, &[uint, sum, value, other]); // OpIAdd
            value = sum;
        }
        asm.op(62, &[pointer, value]); // OpStore
        asm.op(253, &[]); // OpReturn
        asm.op(56, &[]); // OpFunctionEnd
        asm.words()
    }

    /// Unused structures nested `depth` deep (a struct of `members` uints at
    /// the bottom, each level `members` copies of the one below).
    fn nested_structs(depth: usize, members: usize) -> Vec<u32> {
        let mut asm = Asm::new();
        let main = asm.compute_preamble();
        let [void, fn_void, uint] = [(); 3].map(|()| asm.id());
        asm.op(19, &[void]);
        asm.op(33, &[fn_void, void]);
        asm.op(21, &[uint, 32, 0]);
        let mut inner = uint;
        for _ in 0..depth {
            let outer = asm.id();
            let mut operands = vec![outer];
            operands.extend(std::iter::repeat_n(inner, members));
            asm.op(30, &operands); // OpTypeStruct
            inner = outer;
        }
        asm.op(54, &[void, main, 0, fn_void]);
        let label = asm.id();
        asm.op(248, &[label]);
        asm.op(253, &[]);
        asm.op(56, &[]);
        asm.words()
    }

    #[test]
    fn every_committed_kernel_passes_in_every_target_env() {
        let gate = default_gate();
        assert!(gate.version().contains("SPIRV-Tools"), "{}", gate.version());
        for name in KERNELS {
            for env in [
                TargetEnv::Vulkan1_1,
                TargetEnv::Vulkan1_2,
                TargetEnv::Vulkan1_3,
            ] {
                assert_eq!(gate.validate(&kernel(name), env), Ok(()), "{name} {env:?}");
            }
        }
        assert_eq!(
            gate.validate(&add_chain(3, false), TargetEnv::Vulkan1_1),
            Ok(())
        );
    }

    #[test]
    fn mismatched_operand_types_are_rejected_with_the_reason() {
        let gate = default_gate();
        let result = gate.validate(&add_chain(3, true), TargetEnv::Vulkan1_1);
        let Err(KhronosFailure::Rejected { message }) = result else {
            panic!("{result:?}");
        };
        assert!(message.contains("operand"), "{message}");
        assert!(message.contains("OpIAdd"), "{message}");
        assert!(message.len() <= MAX_MESSAGE_CHARS, "{message}");
    }

    #[test]
    fn empty_and_garbage_modules_are_rejected() {
        let gate = default_gate();
        let garbage: Vec<u32> = (0..64u32).map(|i| i.wrapping_mul(0x9e37_79b9)).collect();
        for words in [&[][..], &[0x0723_0203][..], &garbage[..]] {
            match gate.validate(words, TargetEnv::Vulkan1_1) {
                Err(KhronosFailure::Rejected { message }) => assert!(!message.is_empty()),
                other => panic!("{} words: {other:?}", words.len()),
            }
        }
    }

    #[test]
    fn the_structural_limits_reach_spirv_val() {
        let gate = default_gate();
        assert_eq!(
            gate.validate(&nested_structs(16, 1), TargetEnv::Vulkan1_1),
            Ok(())
        );
        let result = gate.validate(&nested_structs(17, 1), TargetEnv::Vulkan1_1);
        let Err(KhronosFailure::Rejected { message }) = result else {
            panic!("{result:?}");
        };
        assert!(message.contains("Nesting Depth"), "{message}");
    }

    #[test]
    fn a_pathological_module_is_stopped_at_the_time_limit() {
        // 540 bytes within every structural limit; spirv-val spends minutes.
        let time_limit = Duration::from_millis(300);
        let gate = gate_with(KhronosConfig {
            time_limit,
            ..KhronosConfig::default()
        });
        let start = Instant::now();
        let result = gate.validate(&nested_structs(16, 4), TargetEnv::Vulkan1_1);
        let elapsed = start.elapsed();
        assert_eq!(result, Err(KhronosFailure::TimeLimit));
        assert!(elapsed >= time_limit, "{elapsed:?}");
        assert!(elapsed < time_limit + Duration::from_secs(2), "{elapsed:?}");
    }

    #[cfg(unix)] // the memory limit is enforced on Unix only
    #[test]
    fn a_large_module_over_the_memory_limit_is_memory_limit() {
        // About 1 MiB: 53,000 instructions of 20 bytes.
        let module = add_chain(53_000, false);
        assert!(module.len() * 4 > 1 << 20);
        let default = default_gate();
        assert_eq!(default.validate(&module, TargetEnv::Vulkan1_1), Ok(()));
        let small = gate_with(KhronosConfig {
            memory_limit: 16 << 20,
            ..KhronosConfig::default()
        });
        assert_eq!(
            small.validate(&module, TargetEnv::Vulkan1_1),
            Err(KhronosFailure::MemoryLimit)
        );
    }

    #[cfg(unix)] // the memory limit is enforced on Unix only
    #[test]
    fn a_memory_limit_too_small_for_spirv_val_is_unavailable() {
        // spirv-val 2023.1 needs about 8 MiB of address space to start: below,
        // the loader cannot map a library (status 127), or it dies of SIGSEGV
        // or SIGABRT, depending on when the limits land.
        let config = KhronosConfig {
            memory_limit: 1 << 20,
            ..KhronosConfig::default()
        };
        match KhronosGate::new(&config) {
            Err(KhronosUnavailable::Probe { detail, .. }) => assert!(!detail.is_empty()),
            // The limits land while the loader runs (see `limit_child`); both
            // probes may, rarely, finish before. No real kernel passes then.
            Ok(Some(gate)) => assert!(gate
                .validate(&add_chain(53_000, false), TargetEnv::Vulkan1_1)
                .is_err()),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_missing_program_is_unavailable() {
        for program in [
            "/nonexistent/tessera/spirv-val",
            "tessera-no-such-spirv-val",
        ] {
            let config = KhronosConfig {
                program: Some(program.into()),
                ..KhronosConfig::default()
            };
            let result = KhronosGate::new(&config);
            assert!(
                matches!(result, Err(KhronosUnavailable::CannotStart { .. })),
                "{result:?}"
            );
        }
    }

    #[test]
    fn the_program_is_looked_up_on_path_once() {
        assert!(default_gate().program.is_absolute());
    }

    #[test]
    fn disabled_or_impossible_settings() {
        let off = KhronosConfig {
            enabled: false,
            program: Some("/nonexistent".into()),
            ..KhronosConfig::default()
        };
        assert!(matches!(KhronosGate::new(&off), Ok(None)));
        for config in [
            KhronosConfig {
                time_limit: Duration::ZERO,
                ..KhronosConfig::default()
            },
            KhronosConfig {
                memory_limit: 0,
                ..KhronosConfig::default()
            },
        ] {
            assert!(matches!(
                KhronosGate::new(&config),
                Err(KhronosUnavailable::InvalidConfig(_))
            ));
        }
    }

    #[test]
    fn target_env_follows_the_api_version() {
        use ash::vk::make_api_version;
        assert_eq!(
            TargetEnv::for_api_version(make_api_version(0, 1, 0, 0)),
            None
        );
        assert_eq!(
            TargetEnv::for_api_version(make_api_version(0, 1, 1, 130)),
            Some(TargetEnv::Vulkan1_1)
        );
        assert_eq!(
            TargetEnv::for_api_version(make_api_version(0, 1, 2, 0)),
            Some(TargetEnv::Vulkan1_2)
        );
        assert_eq!(
            TargetEnv::for_api_version(make_api_version(0, 1, 4, 0)),
            Some(TargetEnv::Vulkan1_3)
        );
    }

    #[test]
    fn messages_are_short_printable_ascii() {
        let output = "warning: x\nerror: line 7: bad \u{1b}[31m\u{202e}name\u{7f} \
                      here\n  %7 = OpIAdd %uint %5 %6\nerror: second\n";
        let message = first_error(output.as_bytes()).expect("an error line");
        assert_eq!(
            message,
            "line 7: bad ?[31m?name? here [%7 = OpIAdd %uint %5 %6]"
        );
        let long = format!("error: {}", "\u{e9}".repeat(500));
        let message = first_error(long.as_bytes()).expect("an error line");
        assert_eq!(message.len(), MAX_MESSAGE_CHARS);
        assert!(message.ends_with("..."));
        assert!(message.bytes().all(|b| b == b' ' || b.is_ascii_graphic()));
        assert_eq!(first_error(b"all good\n"), None);
        let mut invalid_utf8 = b"error: \xff\xfe bytes".to_vec();
        invalid_utf8.extend_from_slice(&[0xc3]);
        assert_eq!(first_error(&invalid_utf8).as_deref(), Some("?? bytes?"));
    }

    #[test]
    fn output_is_kept_bounded() {
        let data = vec![b'x'; MAX_OUTPUT_BYTES * 3 + 5];
        let kept = read_bounded(&data[..], MAX_OUTPUT_BYTES);
        assert_eq!(kept.len(), MAX_OUTPUT_BYTES);
    }

    /// Fake programs: shell scripts in a private directory, removed on drop.
    #[cfg(unix)]
    struct FakeDir(PathBuf);

    #[cfg(unix)]
    impl FakeDir {
        fn new(test: &str) -> Self {
            let dir =
                std::env::temp_dir().join(format!("tessera-khronos-{}-{test}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir(&dir).expect("temporary directory");
            FakeDir(dir)
        }

        /// A script that answers `--version` like spirv-val (unless
        /// `answers_version` is false) and otherwise runs `body`.
        fn program(&self, body: &str, answers_version: bool) -> PathBuf {
            use std::os::unix::fs::PermissionsExt;
            let path = self.0.join("spirv-val");
            let version = if answers_version {
                "case \" $* \" in *' --version '*) echo 'SPIRV-Tools fake'; exit 0;; esac\n"
            } else {
                ""
            };
            std::fs::write(&path, format!("#!/bin/sh\n{version}{body}\n")).expect("script");
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700)).expect("chmod");
            // Another test thread may have forked while the script was open
            // for writing; exec fails with ETXTBSY until that child execs.
            // (Every fake answers `--version` quickly.)
            for _ in 0..200 {
                match Command::new(&path)
                    .arg("--version")
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                {
                    Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) => {
                        thread::sleep(Duration::from_millis(5))
                    }
                    _ => break,
                }
            }
            path
        }
    }

    #[cfg(unix)]
    impl Drop for FakeDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// A gate on a fake, without the probe of [`KhronosGate::new`] (which
    /// the fakes would fail).
    #[cfg(unix)]
    fn fake_gate(program: PathBuf, time_limit: Duration) -> KhronosGate {
        KhronosGate {
            program,
            bounds: Bounds {
                time: time_limit,
                memory: DEFAULT_MEMORY_LIMIT,
            },
            limit_args: limit_args(STRUCT_DEPTH_OPTIONS[0]),
            version: "SPIRV-Tools fake".into(),
        }
    }

    /// The pids of running processes (not zombies) whose command line
    /// contains `marker`.
    #[cfg(target_os = "linux")]
    fn running_with(marker: &str) -> Vec<u32> {
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
            .filter(|pid| {
                let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
                let zombie = stat
                    .rsplit_once(") ")
                    .is_none_or(|(_, rest)| rest.starts_with('Z'));
                !zombie && String::from_utf8_lossy(&cmdline).contains(marker)
            })
            .collect()
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_hanging_program_and_its_children_are_killed_at_the_time_limit() {
        // The fake cannot write files (RLIMIT_FSIZE is 0): its processes are
        // found by their command lines, the script's private path and a sleep
        // of a length no other test uses.
        let dir = FakeDir::new("hang");
        let program = dir.program("sleep 61.4142 &\nwait", true);
        let script = program.display().to_string();
        let time_limit = Duration::from_millis(300);
        let gate = fake_gate(program, time_limit);
        let (result, elapsed, seen) = thread::scope(|scope| {
            let watcher = scope.spawn(|| {
                let start = Instant::now();
                while start.elapsed() < Duration::from_secs(2) {
                    if !running_with("61.4142").is_empty() && !running_with(&script).is_empty() {
                        return true;
                    }
                    thread::sleep(Duration::from_millis(5));
                }
                false
            });
            let start = Instant::now();
            let result = gate.validate(&kernel("matmul"), TargetEnv::Vulkan1_1);
            (result, start.elapsed(), watcher.join().unwrap_or(false))
        });
        assert_eq!(result, Err(KhronosFailure::TimeLimit));
        assert!(elapsed >= time_limit, "{elapsed:?}");
        assert!(elapsed < time_limit + Duration::from_secs(2), "{elapsed:?}");
        assert!(seen, "the fake and its sleep never ran");
        assert_eq!(running_with("61.4142"), Vec::<u32>::new());
        assert_eq!(running_with(&script), Vec::<u32>::new());
    }

    #[cfg(unix)]
    #[test]
    fn a_program_killed_by_another_signal_failed() {
        let dir = FakeDir::new("segv");
        let gate = fake_gate(dir.program("kill -SEGV $$", true), DEFAULT_TIME_LIMIT);
        let result = gate.validate(&kernel("saxpy"), TargetEnv::Vulkan1_1);
        let Err(KhronosFailure::Failed(why)) = result else {
            panic!("{result:?}");
        };
        assert!(why.contains("SIGSEGV"), "{why}");
    }

    #[cfg(unix)]
    #[test]
    fn unexpected_exit_statuses_are_failures_not_rejections() {
        let dir = FakeDir::new("status");
        // Exit 1 without spirv-val's "error:" line, and exit 2 with one.
        for body in ["echo oops >&2; exit 1", "echo 'error: x' >&2; exit 2"] {
            let gate = fake_gate(dir.program(body, true), DEFAULT_TIME_LIMIT);
            let result = gate.validate(&kernel("saxpy"), TargetEnv::Vulkan1_1);
            assert!(
                matches!(result, Err(KhronosFailure::Failed(_))),
                "{result:?}"
            );
        }
    }

    #[cfg(unix)]
    #[test]
    fn accepting_without_reading_the_module_is_a_failure() {
        let dir = FakeDir::new("unread");
        let gate = fake_gate(dir.program("exit 0", true), DEFAULT_TIME_LIMIT);
        // 4 MiB: more than the pipe buffers, so the unread rest is seen.
        let module = vec![0x0723_0203u32; 1 << 20];
        let result = gate.validate(&module, TargetEnv::Vulkan1_1);
        assert!(
            matches!(&result, Err(KhronosFailure::Failed(why)) if why.contains("before reading")),
            "{result:?}"
        );
    }

    #[cfg(unix)]
    #[test]
    fn a_program_that_fails_the_probe_is_unavailable() {
        let dir = FakeDir::new("probe");
        let program = dir.program("echo \"error: unrecognized option: $1\" >&2\nexit 1", false);
        let result = KhronosGate::new(&KhronosConfig {
            program: Some(program),
            ..KhronosConfig::default()
        });
        let Err(KhronosUnavailable::Probe { detail, .. }) = result else {
            panic!("{result:?}");
        };
        assert!(detail.contains("--max-struct-members"), "{detail}");
    }

    #[cfg(unix)]
    #[test]
    fn the_struct_depth_option_is_spelled_as_the_program_accepts() {
        let dir = FakeDir::new("spelling");
        let spelling_gate = |program| {
            gate_with(KhronosConfig {
                program: Some(program),
                ..KhronosConfig::default()
            })
        };
        let gate = spelling_gate(dir.program(
            "for a; do [ \"$a\" = --max-struct-depth ] && \
                 { echo 'error: unrecognized option: --max-struct-depth' >&2; exit 1; }; done\n\
                 cat >/dev/null; echo 'SPIRV-Tools fake'",
            false,
        ));
        assert!(gate.limit_args.iter().any(|a| a == "--max-struct_depth"));
        assert!(!gate.limit_args.iter().any(|a| a == "--max-struct-depth"));
        let dir = FakeDir::new("spelling-documented");
        let gate = spelling_gate(dir.program("cat >/dev/null; echo 'SPIRV-Tools fake'", false));
        assert!(gate.limit_args.iter().any(|a| a == "--max-struct-depth"));
    }

    /// Run by `a_program_that_stops_reading_cannot_kill_the_host_with_sigpipe`
    /// in a process of its own (it changes the SIGPIPE disposition).
    #[cfg(unix)]
    #[test]
    #[ignore = "run in a child process by another test"]
    fn sigpipe_child() {
        if std::env::var_os("TESSERA_KHRONOS_SIGPIPE_CHILD").is_none() {
            return;
        }
        // SAFETY: restores the default disposition (terminate), as a C host
        // may leave it; this process runs only this test.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
        let dir = FakeDir::new("sigpipe");
        let gate = fake_gate(
            dir.program("echo 'error: not reading' >&2; exit 1", true),
            DEFAULT_TIME_LIMIT,
        );
        // 4 MiB: far more than a pipe buffers.
        let module = vec![0x0723_0203u32; 1 << 20];
        for _ in 0..3 {
            let result = gate.validate(&module, TargetEnv::Vulkan1_1);
            assert!(
                matches!(result, Err(KhronosFailure::Rejected { .. })),
                "{result:?}"
            );
        }
    }

    #[cfg(unix)]
    #[test]
    fn a_program_that_stops_reading_cannot_kill_the_host_with_sigpipe() {
        let output = Command::new(std::env::current_exe().expect("test binary"))
            .args([
                "--exact",
                "vulkan::khronos::tests::sigpipe_child",
                "--ignored",
                "--test-threads=1",
            ])
            .env("TESSERA_KHRONOS_SIGPIPE_CHILD", "1")
            .output()
            .expect("test binary runs");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success() && stdout.contains("1 passed"),
            "{:?}\n{stdout}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// Wall time of `validate` (spawn and validation) beside its peer, a bare
    /// `spirv-val` with the same options reading the same bytes from a file:
    /// `cargo test -p tessera-core --features vulkan --lib khronos -- --ignored
    /// --nocapture measure`. `TESSERA_KHRONOS_MEASURE=<file.spv>` adds a module.
    #[test]
    #[ignore = "prints timings"]
    fn measure_validate() {
        let gate = default_gate();
        let mut modules = vec![
            ("matmul.spv".to_string(), kernel("matmul")),
            ("add_chain_1MiB".to_string(), add_chain(53_000, false)),
        ];
        if let Some(path) = std::env::var_os("TESSERA_KHRONOS_MEASURE") {
            let bytes = std::fs::read(&path).expect("module to measure");
            let words = bytes
                .chunks_exact(4)
                .map(|w| u32::from_le_bytes([w[0], w[1], w[2], w[3]]))
                .collect();
            modules.push((PathBuf::from(path).display().to_string(), words));
        }
        let file = std::env::temp_dir().join(format!("tessera-khronos-{}.spv", std::process::id()));
        for (name, words) in modules {
            let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
            std::fs::write(&file, &bytes).expect("temporary module");
            let mut args = gate.limit_args.clone();
            args.extend(["--target-env".into(), "vulkan1.1".into()]);
            let (mut gated, mut bare) = (Vec::new(), Vec::new());
            for _ in 0..20 {
                let start = Instant::now();
                assert_eq!(gate.validate(&words, TargetEnv::Vulkan1_1), Ok(()));
                gated.push(start.elapsed());
                let start = Instant::now();
                let status = Command::new("spirv-val")
                    .args(&args)
                    .arg(&file)
                    .status()
                    .expect("spirv-val");
                assert!(status.success());
                bare.push(start.elapsed());
            }
            gated.sort();
            bare.sort();
            println!(
                "{{\"module\":\"{name}\",\"bytes\":{},\"gate_p50_us\":{},\"bare_spirv_val_p50_us\":{}}}",
                bytes.len(),
                gated[10].as_micros(),
                bare[10].as_micros()
            );
        }
        let _ = std::fs::remove_file(&file);
    }
}
