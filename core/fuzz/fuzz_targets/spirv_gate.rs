//! Mutated SPIR-V through Tessera's kernel gate (`check_kernel`: parse,
//! facts, policy, rewrite) on a Vulkan 1.3 device with most features on,
//! and every module it accepts through the Khronos validator (SPIRV-Tools,
//! linked in-process) for the same target environment (vulkan1.3; the
//! module's SPIR-V version is its header's):
//!
//! - no panic (debug assertions and overflow checks are on);
//! - the same job gets the same verdict twice (no hash-order dependence);
//! - an accepted job's workgroup size and push-constant bytes are within
//!   the device's limits and the job's bytes;
//! - the module the gate accepted is valid for spirv-val, except for the
//!   known gaps below;
//! - the rewritten module (`CheckedKernel::spirv`, what the driver gets) is
//!   valid for spirv-val whenever the accepted module was, with no known
//!   gaps at all: the rewrite must never make a valid module invalid.
//!
//! Input: an optional job prefix, then the module, which starts at the
//! first SPIR-V magic number within the first 64 bytes (so a raw `.spv`
//! file is an input, with the default job). The prefix, read with
//! `arbitrary` (missing bytes read as zero): a flags byte (bit 0: the
//! device null-initialises workgroup memory, XOR the parity of the module's
//! word count so raw seeds exercise both ways of zeroing; bit 1: the entry
//! point's name comes from the prefix instead of "main"), the
//! push-constant length (128 minus a byte mod 129), the complement of the
//! bindings mask (at most 16 buffers of 256 bytes: default bindings 0..=15),
//! and up to four specialization constants (a byte id, a 32-bit value).
//!
//! Known gaps: classes of modules the gate accepts and spirv-val rejects
//! that the gate deliberately leaves to the dispatcher's second gate (the
//! Khronos validator, which every new kernel also passes). Each is matched
//! by spirv-val's result code and a part of its message, counted, and
//! printed at exit; any other rejection is a crash. The list, with why
//! each is left to spirv-val, is in core/fuzz/README.md; keep the two in
//! step.
//!
//! `SPIRV_GATE_SURVEY=<dir>`: instead of crashing on an unknown class,
//! write one example input per class (message with numbers blanked) to
//! <dir> and go on; for finding the classes, not for CI.
#![no_main]

use arbitrary::Unstructured;
use libfuzzer_sys::fuzz_target;
use std::collections::HashMap;
use std::ffi::{c_char, c_int, CStr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use tessera_core::vulkan::{
    check_kernel, BufferSpec, Capabilities, CheckedKernel, ComputeLimits, DeviceType,
    DispatcherConfig, KernelJob, KernelRejection, MemoryHeap, Robustness, ShaderFeatures,
    MAX_MEMORY_HEAPS,
};

/// A class of spirv-val rejections of gate-accepted modules that the gate
/// leaves to the second gate (core/fuzz/README.md says why for each).
struct Gap {
    name: &'static str,
    matches: fn(&Rejection) -> bool,
}

const SPV_ERROR_INVALID_ID: i32 = -10;
const SPV_ERROR_INVALID_CFG: i32 = -11;
const SPV_ERROR_INVALID_DATA: i32 = -14;
const SPV_ERROR_MISSING_EXTENSION: i32 = -15;

/// The known gaps, matched by `spv_result_t` and message.
const KNOWN_GAPS: &[Gap] = &[
    Gap {
        name: "block-layout",
        matches: |r| {
            r.code == SPV_ERROR_INVALID_ID
                && (r.message.contains(" layout rules")
                    || r.message.contains("explicitly laid out"))
        },
    },
    Gap {
        name: "extension-for-version",
        matches: |r| r.code == SPV_ERROR_MISSING_EXTENSION,
    },
    Gap {
        name: "structured-control-flow",
        matches: |r| r.code == SPV_ERROR_INVALID_CFG,
    },
    Gap {
        name: "dominance",
        matches: |r| r.code == SPV_ERROR_INVALID_ID && r.message.contains("does not dominate"),
    },
    Gap {
        name: "glsl-std-450-other",
        matches: |r| {
            r.code == SPV_ERROR_INVALID_DATA
                && r.message
                    .strip_prefix("GLSL.std.450 ")
                    .and_then(|m| m.split(':').next())
                    .is_some_and(|name| !GLSL_CHECKED.contains(&name))
        },
    },
    Gap {
        name: "memory-semantics",
        matches: |r| r.code == SPV_ERROR_INVALID_DATA && r.message.contains("Memory Semantics"),
    },
];

/// The GLSL.std.450 instructions whose operand types the gate checks
/// (policy.rs, `GLSL_FLOAT_SAME` and `GLSL_INT_SAME`): a spirv-val
/// rejection of one of these is no known gap.
const GLSL_CHECKED: &[&str] = &[
    "Round",
    "RoundEven",
    "Trunc",
    "FAbs",
    "FSign",
    "Floor",
    "Ceil",
    "Fract",
    "Radians",
    "Degrees",
    "Sin",
    "Cos",
    "Tan",
    "Asin",
    "Acos",
    "Atan",
    "Sinh",
    "Cosh",
    "Tanh",
    "Asinh",
    "Acosh",
    "Atanh",
    "Atan2",
    "Pow",
    "Exp",
    "Log",
    "Exp2",
    "Log2",
    "Sqrt",
    "InverseSqrt",
    "FMin",
    "FMax",
    "FClamp",
    "FMix",
    "Step",
    "SmoothStep",
    "Fma",
    "Normalize",
    "FaceForward",
    "Reflect",
    "NMin",
    "NMax",
    "NClamp",
    "SAbs",
    "SSign",
    "UMin",
    "SMin",
    "UMax",
    "SMax",
    "UClamp",
    "SClamp",
];

/// Where the module may start at the latest (the job prefix's length).
const MAX_PREFIX: usize = 64;
const SPIRV_MAGIC: [u8; 4] = 0x0723_0203u32.to_le_bytes();
/// `VK_MAKE_API_VERSION(0, 1, 3, 0)`.
const VULKAN_1_3: u32 = (1 << 22) | (3 << 12);
/// Most buffers per job (`DispatcherConfig::default().max_buffers`).
const MAX_JOB_BUFFERS: usize = 16;

fuzz_target!(
    init: {
        contain_rspirv_panics();
        register_summary();
    },
    |data: &[u8]| run(data)
);

fn run(data: &[u8]) {
    let (prefix, spirv) = split(data);
    let mut u = Unstructured::new(prefix);
    let flags: u8 = u.arbitrary().unwrap_or_default();
    let null_init = (flags ^ (spirv.len() / 4) as u8) & 1 == 0;
    let name_bytes: Vec<u8>;
    let entry_point = if flags & 2 != 0 {
        let len = u.int_in_range(0..=8u8).unwrap_or_default();
        name_bytes = u.bytes(usize::from(len)).unwrap_or_default().to_vec();
        std::str::from_utf8(&name_bytes).unwrap_or("main")
    } else {
        "main"
    };
    let push_len = 128 - usize::from(u.arbitrary::<u8>().unwrap_or_default() % 129);
    let mask = !u.arbitrary::<u32>().unwrap_or_default();
    let buffers: Vec<BufferSpec<'_>> = (0..32)
        .filter(|b| mask & (1 << b) != 0)
        .take(MAX_JOB_BUFFERS)
        .map(|binding| BufferSpec {
            binding,
            len: 256,
            init: None,
            readback: false,
        })
        .collect();
    let spec_count = u.arbitrary::<u8>().unwrap_or_default() % 5;
    let specialization: Vec<(u32, u32)> = (0..spec_count)
        .map(|_| {
            (
                u32::from(u.arbitrary::<u8>().unwrap_or_default()),
                u.arbitrary::<u32>().unwrap_or_default(),
            )
        })
        .collect();
    let push = [0u8; 128];
    let job = KernelJob {
        spirv,
        entry_point,
        specialization: &specialization,
        push_constants: &push[..push_len],
        grid: [1, 1, 1],
        buffers: &buffers,
    };
    let device = device(null_init);
    let config = DispatcherConfig::default();

    STATS.execs.fetch_add(1, Ordering::Relaxed);
    let verdict = check_kernel(&job, device, &config);
    assert_eq!(
        verdict,
        check_kernel(&job, device, &config),
        "the same job got two verdicts"
    );
    let checked = match verdict {
        Ok(checked) => checked,
        Err(rejection) => return survey_strictness(data, spirv, &rejection),
    };
    STATS.accepted.fetch_add(1, Ordering::Relaxed);
    check_learnt(&checked, push_len);

    let module = words(spirv);
    if let Err(rejection) = khronos().validate(&module) {
        match known_gap(&rejection) {
            Some(i) => {
                GAP_COUNTS[i].fetch_add(1, Ordering::Relaxed);
                return;
            }
            None => return unknown("accepted", data, &rejection),
        }
    }
    STATS.valid.fetch_add(1, Ordering::Relaxed);
    match khronos().validate(&checked.spirv) {
        Ok(()) => {
            STATS.rewritten_valid.fetch_add(1, Ordering::Relaxed);
        }
        Err(rejection) => unknown("rewritten", data, &rejection),
    }
}

/// The job prefix and the module.
fn split(data: &[u8]) -> (&[u8], &[u8]) {
    match data
        .windows(4)
        .take(MAX_PREFIX + 1)
        .position(|w| w == SPIRV_MAGIC)
    {
        Some(at) => data.split_at(at),
        None => (&[], data),
    }
}

fn words(bytes: &[u8]) -> Vec<u32> {
    bytes
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// What the gate learnt is within the device's limits and the job.
fn check_learnt(k: &CheckedKernel, push_len: usize) {
    let [x, y, z] = k.workgroup_size;
    assert!(
        (1..=1024).contains(&x) && (1..=1024).contains(&y) && (1..=1024).contains(&z),
        "workgroup size {:?} accepted",
        k.workgroup_size
    );
    assert!(
        u64::from(x) * u64::from(y) * u64::from(z) <= 1024,
        "workgroup of {:?} invocations accepted",
        k.workgroup_size
    );
    assert!(
        k.push_constant_bytes % 4 == 0 && k.push_constant_bytes as usize <= push_len,
        "push-constant block of {} bytes accepted for {push_len} bytes",
        k.push_constant_bytes
    );
    assert_eq!(
        k.spirv.first(),
        Some(&0x0723_0203),
        "rewritten module lost its magic"
    );
}

/// A lavapipe-like Vulkan 1.3 device with most shader features on; the
/// two variants differ in `shaderZeroInitializeWorkgroupMemory`.
fn device(null_init: bool) -> &'static Capabilities {
    static DEVICES: OnceLock<[Capabilities; 2]> = OnceLock::new();
    let devices = DEVICES.get_or_init(|| {
        let make = |zero_initialize_workgroup_memory: bool| Capabilities {
            name: "fuzz device".into(),
            vendor_id: 0x10005,
            device_id: 0,
            driver_version: 0,
            api_version: VULKAN_1_3,
            device_type: DeviceType::Cpu,
            memory_heaps: [MemoryHeap {
                size: 2 << 30,
                device_local: true,
            }; MAX_MEMORY_HEAPS],
            memory_heap_count: 1,
            limits: ComputeLimits {
                max_workgroup_size: [1024, 1024, 1024],
                max_workgroup_count: [65535, 65535, 65535],
                max_invocations: 1024,
                max_shared_memory: 32 << 10,
                max_storage_buffer_range: 1 << 27,
                max_push_constants: 128,
                max_storage_buffers: 32,
            },
            subgroup_size: 8,
            features: ShaderFeatures {
                float16: true,
                int8: true,
                int16: true,
                int64: true,
                float64: true,
                storage_buffer_16bit: true,
                storage_buffer_8bit: true,
                variable_pointers: true,
                // Basic, vote, arithmetic, ballot, shuffle, shuffle
                // relative, clustered, quad.
                subgroup_operations: 0xff,
            },
            robustness: Robustness {
                robust_buffer_access: true,
                robust_buffer_access2: true,
                device_fault: false,
                zero_initialize_workgroup_memory,
            },
            timestamps: true,
            benchmark: None,
        };
        [make(false), make(true)]
    });
    &devices[usize::from(null_init)]
}

// ---------------------------------------------------------------------------
// The Khronos validator, in-process (Debian's libSPIRV-Tools.a, see build.rs):
// spirv-val as a child process costs about 6 ms per module here, the library
// 0.1 to 0.4 ms for the seed kernels.

#[repr(C)]
struct SpvConstBinary {
    code: *const u32,
    word_count: usize,
}

#[repr(C)]
struct SpvPosition {
    line: usize,
    column: usize,
    index: usize,
}

#[repr(C)]
struct SpvDiagnostic {
    position: SpvPosition,
    error: *mut c_char,
    is_text_source: bool,
}

enum SpvContext {}
enum SpvValidatorOptions {}

extern "C" {
    fn spvContextCreate(env: c_int) -> *mut SpvContext;
    fn spvValidatorOptionsCreate() -> *mut SpvValidatorOptions;
    fn spvValidatorOptionsSetUniversalLimit(
        options: *mut SpvValidatorOptions,
        limit: c_int,
        value: u32,
    );
    fn spvValidateWithOptions(
        context: *const SpvContext,
        options: *const SpvValidatorOptions,
        binary: *const SpvConstBinary,
        diagnostic: *mut *mut SpvDiagnostic,
    ) -> c_int;
    fn spvDiagnosticDestroy(diagnostic: *mut SpvDiagnostic);
}

/// `SPV_ENV_VULKAN_1_3` in `spv_target_env`.
const SPV_ENV_VULKAN_1_3: c_int = 25;

/// The universal limits the dispatcher's second gate passes to spirv-val
/// (core/src/vulkan/khronos.rs), by `spv_validator_limit`.
const LIMITS: [(c_int, u32); 9] = [
    (0, 1024),    // max_struct_members
    (1, 16),      // max_struct_depth
    (2, 4096),    // max_local_variables
    (3, 1024),    // max_global_variables
    (4, 1024),    // max_switch_branches
    (5, 32),      // max_function_args
    (6, 64),      // max_control_flow_nesting_depth
    (7, 16),      // max_access_chain_indexes
    (8, 1 << 22), // max_id_bound
];

/// A spirv-val rejection: its `spv_result_t` and message.
#[derive(Debug)]
struct Rejection {
    code: i32,
    message: String,
}

struct Khronos {
    context: *mut SpvContext,
    options: *mut SpvValidatorOptions,
}

// SAFETY: created once, never destroyed, and only read by `spvValidate*`,
// which keeps no state in either object between calls.
unsafe impl Send for Khronos {}
unsafe impl Sync for Khronos {}

fn khronos() -> &'static Khronos {
    static K: OnceLock<Khronos> = OnceLock::new();
    K.get_or_init(|| {
        // SAFETY: plain constructors; null is checked below.
        let (context, options) = unsafe {
            (
                spvContextCreate(SPV_ENV_VULKAN_1_3),
                spvValidatorOptionsCreate(),
            )
        };
        assert!(!context.is_null() && !options.is_null());
        for (limit, value) in LIMITS {
            // SAFETY: `options` is a live options object.
            unsafe { spvValidatorOptionsSetUniversalLimit(options, limit, value) };
        }
        Khronos { context, options }
    })
}

impl Khronos {
    fn validate(&self, module: &[u32]) -> Result<(), Rejection> {
        let binary = SpvConstBinary {
            code: module.as_ptr(),
            word_count: module.len(),
        };
        let mut diagnostic: *mut SpvDiagnostic = std::ptr::null_mut();
        // SAFETY: `binary` points at `module`, alive for the call; the
        // diagnostic is ours to destroy.
        let code =
            unsafe { spvValidateWithOptions(self.context, self.options, &binary, &mut diagnostic) };
        let message = if diagnostic.is_null() {
            String::new()
        } else {
            // SAFETY: a diagnostic from the library, its error a C string
            // (or null); destroyed once, here.
            unsafe {
                let e = (*diagnostic).error;
                let m = if e.is_null() {
                    String::new()
                } else {
                    CStr::from_ptr(e).to_string_lossy().into_owned()
                };
                spvDiagnosticDestroy(diagnostic);
                m
            }
        };
        if code == 0 {
            Ok(())
        } else {
            Err(Rejection { code, message })
        }
    }
}

fn known_gap(r: &Rejection) -> Option<usize> {
    KNOWN_GAPS.iter().position(|g| (g.matches)(r))
}

/// A spirv-val rejection that is no known gap: a crash, or in survey mode
/// an example per class written to the survey folder.
fn unknown(what: &str, data: &[u8], r: &Rejection) {
    let Some(dir) = std::env::var_os("SPIRV_GATE_SURVEY").map(PathBuf::from) else {
        panic!(
            "spirv-val rejects the {what} module (spv_result_t {}): {}\n\
             Fix the gate, or add the class to KNOWN_GAPS and core/fuzz/README.md.",
            r.code, r.message
        );
    };
    // The class: the first line with every number and %name blanked.
    let first = r.message.lines().next().unwrap_or("");
    let blanked: String = if what == "refused-but-valid" {
        first.to_string()
    } else {
        first
            .split(|c: char| c.is_whitespace())
            .map(|w| {
                if w.starts_with('%') || w.chars().any(|c| c.is_ascii_digit()) {
                    "#"
                } else {
                    w
                }
            })
            .collect::<Vec<_>>()
            .join(" ")
    };
    let class = format!("{what} ({}): {blanked}", r.code);
    static SEEN: OnceLock<Mutex<HashMap<String, u64>>> = OnceLock::new();
    let mut seen = SEEN.get_or_init(Default::default).lock().unwrap();
    let n = seen.len();
    let count = seen.entry(class.clone()).or_insert(0);
    *count += 1;
    if *count == 1 {
        let _ = std::fs::create_dir_all(&dir);
        let _ = std::fs::write(dir.join(format!("{n:03}.bin")), data);
        let _ = std::fs::write(
            dir.join(format!("{n:03}.txt")),
            format!("{class}\n\n{}\n", r.message),
        );
        eprintln!("spirv_gate survey: new class {n:03}: {class}");
    }
}

/// Survey mode only: a module the gate refuses as malformed (a type,
/// constant, operand, function or control-flow rule) but spirv-val
/// accepts, one example per rejection, to review the gate's structural
/// rules for being stricter than SPIR-V.
fn survey_strictness(data: &[u8], spirv: &[u8], rejection: &KernelRejection) {
    if std::env::var_os("SPIRV_GATE_SURVEY").is_none() {
        return;
    }
    let structural = matches!(
        rejection,
        KernelRejection::BadType(_)
            | KernelRejection::BadConstant(_)
            | KernelRejection::BadOperand { .. }
            | KernelRejection::BadFunction
            | KernelRejection::BadControlFlow { .. }
    );
    if structural && spirv.len() % 4 == 0 && khronos().validate(&words(spirv)).is_ok() {
        let message = match rejection {
            KernelRejection::BadType(_) => "BadType".to_string(),
            KernelRejection::BadConstant(_) => "BadConstant".to_string(),
            other => format!("{other:?}"),
        };
        let r = Rejection { code: 0, message };
        unknown("refused-but-valid", data, &r);
    }
}

// ---------------------------------------------------------------------------
// Counters, printed at exit.

struct Stats {
    execs: AtomicU64,
    accepted: AtomicU64,
    valid: AtomicU64,
    rewritten_valid: AtomicU64,
    rspirv_panics: AtomicU64,
}

static STATS: Stats = Stats {
    execs: AtomicU64::new(0),
    accepted: AtomicU64::new(0),
    valid: AtomicU64::new(0),
    rewritten_valid: AtomicU64::new(0),
    rspirv_panics: AtomicU64::new(0),
};

#[allow(clippy::declare_interior_mutable_const)]
const ZERO: AtomicU64 = AtomicU64::new(0);
static GAP_COUNTS: [AtomicU64; 16] = [ZERO; 16];
const _: () = assert!(KNOWN_GAPS.len() <= 16);

extern "C" {
    fn atexit(f: extern "C" fn()) -> c_int;
}

extern "C" fn print_summary() {
    let n = |a: &AtomicU64| a.load(Ordering::Relaxed);
    eprintln!(
        "spirv_gate: {} inputs, {} accepted by the gate, {} of them valid for spirv-val, \
         {} rewritten modules valid; {} rspirv panics contained by the gate",
        n(&STATS.execs),
        n(&STATS.accepted),
        n(&STATS.valid),
        n(&STATS.rewritten_valid),
        n(&STATS.rspirv_panics),
    );
    for (gap, count) in KNOWN_GAPS.iter().zip(&GAP_COUNTS) {
        eprintln!("spirv_gate: known gap {}: {}", gap.name, n(count));
    }
}

fn register_summary() {
    // SAFETY: registers a plain function; libFuzzer leaves through exit().
    unsafe { atexit(print_summary) };
}

/// The gate parses with rspirv inside `catch_unwind` and rejects the
/// kernel when rspirv panics (core/src/vulkan/validate/parse.rs); libFuzzer's
/// panic hook would abort before that. Panics raised in rspirv's code are
/// counted and left to unwind; every other panic still aborts.
fn contain_rspirv_panics() {
    let fuzzer_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let in_rspirv = info
            .location()
            .is_some_and(|l| l.file().contains("/rspirv-"));
        if in_rspirv {
            if STATS.rspirv_panics.fetch_add(1, Ordering::Relaxed) == 0 {
                eprintln!("spirv_gate: first rspirv panic (contained by the gate): {info}");
            }
        } else {
            fuzzer_hook(info);
        }
    }));
}
