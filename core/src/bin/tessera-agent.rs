//! `tessera-agent`: the operator program. Reads a TOML configuration, loads
//! (or creates) the device key (refusing one that group or others can read),
//! checks the result store belongs to that key, opens the GPU through
//! Vulkan, and serves a coordinator until SIGTERM or SIGINT, which drain it:
//! jobs in flight finish, nothing new is taken, then it says goodbye (or,
//! after `drain_timeout_s`, stops anyway, leaving unacknowledged results in
//! the store for the next start). A coordinator's `Drain` ends the session
//! only: the program connects again with backoff.
//!
//! ```text
//! tessera-agent --config agent.toml
//! ```
//!
//! A status line (connection, device, jobs, earnings) is logged periodically;
//! `(unavailable)` after the device name means it takes no work for now (see
//! the README's operator section).
//! Logs go to standard error; `TESSERA_LOG=debug` shows more.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use serde::Deserialize;
use tessera_core::attest::{Ed25519Signer, Signer};
use tessera_core::net::{client_config, NetConfig, Runtime, Trust};
use tessera_core::store::FileStore;
use tessera_core::{Config, LinearPrice, Policy};

/// The configuration file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    /// Coordinator address, `host:port`.
    coordinator: String,
    /// Name on the coordinator's certificate (default: the host part).
    server_name: Option<String>,
    tls: TlsSection,
    key: KeySection,
    store: Option<StoreSection>,
    #[serde(default)]
    pricing: PricingSection,
    #[serde(default)]
    capacity: CapacitySection,
    #[serde(default)]
    device: DeviceSection,
    #[serde(default)]
    timers: TimersSection,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TlsSection {
    /// PEM file of the CA that signs the coordinator's certificate.
    ca_file: Option<PathBuf>,
    /// Hex SHA-256 of the coordinator's SubjectPublicKeyInfo.
    pinned_key_sha256: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeySection {
    /// PKCS#8 file of the device's Ed25519 key; created if missing.
    file: PathBuf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoreSection {
    /// Directory where results wait for acknowledgement.
    dir: PathBuf,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PricingSection {
    #[serde(default)]
    base: u64,
    #[serde(default)]
    per_gpu_ms: u64,
    #[serde(default)]
    per_mib_in: u64,
    #[serde(default)]
    per_mib_out: u64,
    #[serde(default)]
    floor: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CapacitySection {
    #[serde(default = "default_concurrent")]
    max_concurrent: u8,
    #[serde(default = "default_bytes")]
    max_bytes_in: u64,
    #[serde(default = "default_bytes")]
    max_bytes_out: u64,
}

impl Default for CapacitySection {
    fn default() -> Self {
        CapacitySection {
            max_concurrent: default_concurrent(),
            max_bytes_in: default_bytes(),
            max_bytes_out: default_bytes(),
        }
    }
}

fn default_concurrent() -> u8 {
    2
}

fn default_bytes() -> u64 {
    256 << 20
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeviceSection {
    /// Vulkan device index.
    index: Option<usize>,
    /// Part of the Vulkan device name.
    name: Option<String>,
    /// Run the Khronos validation layer (slow; for debugging).
    #[serde(default)]
    validation: bool,
    /// The Khronos SPIR-V validator every new kernel passes (the second
    /// gate); default: `spirv-val` on PATH.
    spirv_val: Option<std::path::PathBuf>,
    /// Run that second gate (default true). Off leaves Tessera's own
    /// validator alone in front of the driver.
    #[serde(default = "yes")]
    spirv_val_gate: bool,
}

fn yes() -> bool {
    true
}

impl Default for DeviceSection {
    fn default() -> Self {
        DeviceSection {
            index: None,
            name: None,
            validation: false,
            spirv_val: None,
            spirv_val_gate: true,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TimersSection {
    #[serde(default = "default_heartbeat")]
    heartbeat_ms: u64,
    #[serde(default = "default_peer_timeout")]
    peer_timeout_ms: u64,
    #[serde(default = "default_status")]
    status_interval_s: u64,
    #[serde(default = "default_drain_timeout")]
    drain_timeout_s: u64,
}

impl Default for TimersSection {
    fn default() -> Self {
        TimersSection {
            heartbeat_ms: default_heartbeat(),
            peer_timeout_ms: default_peer_timeout(),
            status_interval_s: default_status(),
            drain_timeout_s: default_drain_timeout(),
        }
    }
}

fn default_drain_timeout() -> u64 {
    60
}

fn default_heartbeat() -> u64 {
    5000
}

fn default_peer_timeout() -> u64 {
    20_000
}

fn default_status() -> u64 {
    30
}

/// A logger writing `level target: message` lines to standard error.
struct StderrLogger(log::LevelFilter);

impl log::Log for StderrLogger {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        m.level() <= self.0
    }
    fn log(&self, r: &log::Record<'_>) {
        if self.enabled(r.metadata()) {
            eprintln!("{:<5} {}: {}", r.level(), r.target(), r.args());
        }
    }
    fn flush(&self) {}
}

fn init_logging() {
    let level = match std::env::var("TESSERA_LOG").as_deref() {
        Ok("debug") => log::LevelFilter::Debug,
        Ok("trace") => log::LevelFilter::Trace,
        Ok("warn") => log::LevelFilter::Warn,
        Ok("error") => log::LevelFilter::Error,
        _ => log::LevelFilter::Info,
    };
    let logger: &'static StderrLogger = Box::leak(Box::new(StderrLogger(level)));
    if log::set_logger(logger).is_ok() {
        log::set_max_level(level);
    }
}

/// Parses `pinned_key_sha256`: 64 hex digits (either case), surrounding
/// white space ignored.
fn hex32(s: &str) -> Result<[u8; 32], String> {
    let s = s.trim().as_bytes();
    if s.len() != 64 {
        return Err(format!(
            "pinned_key_sha256 must be 64 hex digits, not {} bytes",
            s.len()
        ));
    }
    let digit = |c: u8| {
        (c as char)
            .to_digit(16)
            .map(|d| d as u8)
            .ok_or_else(|| "pinned_key_sha256 must be hex digits (0-9, a-f)".to_string())
    };
    let mut out = [0u8; 32];
    for (b, pair) in out.iter_mut().zip(s.chunks_exact(2)) {
        *b = (digit(pair[0])? << 4) | digit(pair[1])?;
    }
    Ok(out)
}

/// The directory holding `path` (`.` for a bare file name).
fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Makes a directory entry just created durable.
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// Loads the device key, or creates it (mode 0600) when the file is absent.
/// A key file readable by group or others is refused, as ssh does.
fn load_or_create_key(path: &Path) -> Result<Ed25519Signer, String> {
    match std::fs::File::open(path) {
        Ok(mut f) => {
            check_private(path, &f)?;
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(&mut f, &mut bytes)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            Ed25519Signer::from_pkcs8(&bytes)
                .map_err(|e| format!("{}: not an Ed25519 PKCS#8 key ({e:?})", path.display()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let (signer, pkcs8) =
                Ed25519Signer::generate().map_err(|e| format!("generating a key: {e:?}"))?;
            create_key_file(path, &pkcs8, sync_dir)?;
            log::info!("created a new device key in {}", path.display());
            Ok(signer)
        }
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

/// Refuses a key file that group or others may read.
fn check_private(path: &Path, f: &std::fs::File) -> Result<(), String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = f
            .metadata()
            .map_err(|e| format!("{}: {e}", path.display()))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            return Err(format!(
                "device key {} has mode {:04o}: it is readable by group or others, \
                 so it is refused; fix: chmod 600 {}",
                path.display(),
                mode & 0o7777,
                path.display()
            ));
        }
    }
    #[cfg(not(unix))]
    let _ = (path, f);
    Ok(())
}

/// Writes a new key file (mode 0600, never over an existing file), fsyncs
/// it, then fsyncs its directory with `sync` so that the file's name
/// survives a crash too.
fn create_key_file(
    path: &Path,
    pkcs8: &[u8],
    sync: impl FnOnce(&Path) -> std::io::Result<()>,
) -> Result<(), String> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut f = options
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    std::io::Write::write_all(&mut f, pkcs8)
        .and_then(|_| f.sync_all())
        .map_err(|e| format!("{}: {e}", path.display()))?;
    drop(f);
    let dir = parent_dir(path);
    sync(dir).map_err(|e| format!("{}: cannot sync the key's directory: {e}", dir.display()))
}

fn main() -> ExitCode {
    init_logging();
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{e}");
            ExitCode::FAILURE
        }
    }
}

fn usage() -> String {
    "usage: tessera-agent --config FILE".into()
}

fn run() -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    let config_path = match (args.next().as_deref(), args.next()) {
        (Some("--config"), Some(p)) => PathBuf::from(p),
        _ => return Err(usage()),
    };
    let text = std::fs::read_to_string(&config_path)
        .map_err(|e| format!("{}: {e}", config_path.display()))?;
    let file: File =
        toml::from_str(&text).map_err(|e| format!("{}: {e}", config_path.display()))?;

    let trust = match (&file.tls.ca_file, &file.tls.pinned_key_sha256) {
        (Some(ca), None) => Trust::ca_file(ca).map_err(|e| e.to_string())?,
        (None, Some(pin)) => Trust::PinnedKey(hex32(pin)?),
        _ => return Err("[tls] needs exactly one of ca_file or pinned_key_sha256".into()),
    };
    let tls = client_config(&trust).map_err(|e| e.to_string())?;
    let signer = load_or_create_key(&file.key.file)?;
    // Store problems (a chain file of another key, say) before the device.
    if let Some(store) = &file.store {
        FileStore::open(&store.dir, signer.key_id()).map_err(|e| format!("result store: {e}"))?;
    }

    let selector = device_selector(&file.device);
    let dispatcher = tessera_core::vulkan::DispatcherConfig {
        validation: file.device.validation,
        khronos: tessera_core::vulkan::KhronosConfig {
            enabled: file.device.spirv_val_gate,
            program: file.device.spirv_val.clone(),
            ..tessera_core::vulkan::KhronosConfig::default()
        },
        ..tessera_core::vulkan::DispatcherConfig::default()
    };
    let gpu = tessera_core::gpu_host::GpuHost::open_with(selector, dispatcher)
        .map_err(|e| format!("Vulkan: {e}"))?;
    let capabilities = gpu.capabilities().clone();
    log::info!(
        "device: {} ({} MiB device memory)",
        capabilities.name,
        capabilities.device_local_bytes >> 20
    );

    let config = Config {
        agent_version: agent_version(),
        boot_id: boot_id(),
        capabilities,
        policy: Policy {
            max_concurrent: file.capacity.max_concurrent,
            price: LinearPrice {
                base: file.pricing.base,
                per_gpu_ms: file.pricing.per_gpu_ms,
                per_mib_in: file.pricing.per_mib_in,
                per_mib_out: file.pricing.per_mib_out,
            },
            floor: file.pricing.floor,
            max_bytes_in: file.capacity.max_bytes_in,
            max_bytes_out: file.capacity.max_bytes_out,
            heartbeat_interval: tessera_core::Duration::from_millis(file.timers.heartbeat_ms),
            peer_timeout: tessera_core::Duration::from_millis(file.timers.peer_timeout_ms),
        },
        persist_results: true,
    };
    let server_name = file.server_name.clone().unwrap_or_else(|| {
        file.coordinator
            .rsplit_once(':')
            .map(|(h, _)| h.trim_matches(['[', ']']).to_string())
            .unwrap_or_else(|| file.coordinator.clone())
    });
    let mut net = NetConfig::new(file.coordinator.clone(), server_name, tls);
    net.store_dir = file.store.as_ref().map(|s| s.dir.clone());
    net.drain_timeout = Duration::from_secs(file.timers.drain_timeout_s);
    let mut runtime = Runtime::new(config, signer, gpu, net).map_err(|e| e.to_string())?;

    let drain = runtime.drain_handle();
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(signal, drain.flag())
            .map_err(|e| format!("cannot handle signal {signal}: {e}"))?;
    }
    let status_every = Duration::from_secs(file.timers.status_interval_s.max(1));
    let mut next_status = Instant::now();
    while !runtime.is_finished() {
        runtime.step(None).map_err(|e| e.to_string())?;
        if Instant::now() >= next_status {
            log::info!("status: {}", runtime.status());
            next_status = Instant::now() + status_every;
        }
    }
    log::info!("drained; final status: {}", runtime.status());
    Ok(())
}

fn agent_version() -> [u16; 3] {
    let v = |s: &str| s.parse().unwrap_or(0);
    [
        v(env!("CARGO_PKG_VERSION_MAJOR")),
        v(env!("CARGO_PKG_VERSION_MINOR")),
        v(env!("CARGO_PKG_VERSION_PATCH")),
    ]
}

/// A random id for this boot of the agent.
fn boot_id() -> [u8; 16] {
    use ring::rand::SecureRandom;
    let mut id = [0u8; 16];
    if ring::rand::SystemRandom::new().fill(&mut id).is_err() {
        // Fall back to the clock: unique enough to tell boots apart.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        id.copy_from_slice(&t.to_le_bytes());
    }
    id
}

fn device_selector(d: &DeviceSection) -> tessera_core::vulkan::DeviceSelector {
    use tessera_core::vulkan::DeviceSelector;
    match (&d.index, &d.name) {
        (Some(i), _) => DeviceSelector::Index(*i),
        (None, Some(n)) => DeviceSelector::Name(n.clone()),
        (None, None) => DeviceSelector::Default,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex32_reads_64_hex_digits_and_refuses_anything_else() {
        let pin = "00ff".repeat(16);
        let mut want = [0u8; 32];
        for pair in want.chunks_exact_mut(2) {
            pair[1] = 0xff;
        }
        assert_eq!(hex32(&pin), Ok(want));
        assert_eq!(hex32(&format!("  {}\n", pin.to_uppercase())), Ok(want));
        // Non-ASCII of the right byte length, also where a character
        // straddles two digit pairs: an error, not a panic.
        for bad in [
            format!("a{}a", "é".repeat(31)),
            format!("{}a", "€".repeat(21)),
            "é".repeat(32),
            "ab".repeat(31) + "\u{80}",
        ] {
            let e = hex32(&bad).unwrap_err();
            assert!(e.contains("pinned_key_sha256"), "{bad:?}: {e}");
        }
        // Odd and wrong lengths.
        for bad in ["a".repeat(63), "a".repeat(65), "a".into(), String::new()] {
            let e = hex32(&bad).unwrap_err();
            assert!(e.contains("64 hex digits"), "{bad:?}: {e}");
        }
        // Signs and other non-digits a number parser might take.
        for bad in [
            "+f".repeat(32),
            "-0".repeat(32),
            "0x".repeat(32),
            "gg".repeat(32),
        ] {
            assert!(hex32(&bad).is_err(), "{bad:?}");
        }
    }

    fn temp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("tessera-agent-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn a_new_key_file_is_written_then_its_directory_synced() {
        let dir = temp("sync");
        let key = dir.join("device.key");
        let mut synced = Vec::new();
        create_key_file(&key, b"secret key bytes", |d| {
            // By now the file is complete and private.
            assert_eq!(std::fs::read(&key).unwrap(), b"secret key bytes");
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                let mode = std::fs::metadata(&key).unwrap().permissions().mode();
                assert_eq!(mode & 0o777, 0o600);
            }
            synced.push(d.to_path_buf());
            sync_dir(d)
        })
        .unwrap();
        assert_eq!(synced, vec![dir.clone()]);
        // Never over an existing file.
        let e = create_key_file(&key, b"other", |_| Ok(())).unwrap_err();
        assert!(e.contains("device.key"), "{e}");
        assert_eq!(std::fs::read(&key).unwrap(), b"secret key bytes");
        // A failed directory sync is an error, naming the directory.
        let second = dir.join("second.key");
        let e = create_key_file(&second, b"k", |_| Err(std::io::Error::other("disk gone")))
            .unwrap_err();
        assert!(
            e.contains(&dir.display().to_string()) && e.contains("disk gone"),
            "{e}"
        );
        assert_eq!(parent_dir(Path::new("device.key")), Path::new("."));
        assert_eq!(parent_dir(Path::new("/k")), Path::new("/"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
