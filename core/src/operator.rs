//! The operator's side: the TOML configuration file of `tessera-agent`, the
//! device key file, and a network runtime on the GPU built from them. The
//! operator program and the C ABI's `tessera_runtime_new_from_toml` share it,
//! so a configuration file means the same thing to both.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::attest::{Ed25519Signer, Signer};
use crate::net::{client_config, NetConfig, Runtime, RuntimeError, TlsError, Trust};
use crate::store::{FileStore, StoreError};
use crate::vulkan::VulkanError;
use crate::{Config, LinearPrice, Policy};

/// Why a provider could not be set up from an operator configuration.
#[derive(Debug)]
#[non_exhaustive]
pub enum OperatorError {
    /// The configuration file could not be read.
    Io {
        /// The file.
        path: PathBuf,
        /// What failed.
        error: std::io::Error,
    },
    /// The configuration is not valid TOML of the documented form, or a
    /// value is out of range: what is wrong, in words.
    Config(String),
    /// The device key file was refused (unreadable, not an Ed25519 PKCS#8
    /// key, readable by group or others) or could not be created.
    Key(String),
    /// The TLS trust settings could not be used.
    Tls(TlsError),
    /// The `[tls] ca_file` could not be read or holds no usable certificate.
    CaFile {
        /// The file.
        path: PathBuf,
        /// What failed.
        error: TlsError,
    },
    /// The result store belongs to another key or could not be opened.
    Store(StoreError),
    /// The GPU could not be opened.
    Vulkan(VulkanError),
    /// The runtime could not start.
    Runtime(RuntimeError),
}

impl OperatorError {
    /// The number of this error in the library's shared code space
    /// ([`crate::codes`]).
    pub fn code(&self) -> u32 {
        use crate::codes;
        match self {
            OperatorError::Io { .. } => codes::IO,
            OperatorError::Config(_) | OperatorError::Tls(_) | OperatorError::CaFile { .. } => {
                codes::INVALID_CONFIG
            }
            OperatorError::Key(_) => codes::KEY_REJECTED,
            OperatorError::Store(e) => e.code(),
            OperatorError::Vulkan(e) => e.result_code(),
            OperatorError::Runtime(e) => e.code(),
        }
    }
}

impl fmt::Display for OperatorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OperatorError::Io { path, error } => write!(f, "{}: {error}", path.display()),
            OperatorError::Config(e) => f.write_str(e),
            OperatorError::Key(e) => f.write_str(e),
            OperatorError::Tls(e) => write!(f, "TLS: {e}"),
            OperatorError::CaFile { path, error } => {
                write!(f, "[tls] ca_file {}: {error}", path.display())
            }
            OperatorError::Store(e) => write!(f, "result store: {e}"),
            OperatorError::Vulkan(e) => write!(f, "Vulkan: {e}"),
            OperatorError::Runtime(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for OperatorError {}

/// The operator's configuration file (README, "The operator program").
///
/// Read it with [`OperatorConfig::from_toml`] or [`OperatorConfig::load`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OperatorConfig {
    /// Coordinator address, `host:port`.
    pub coordinator: String,
    /// Name on the coordinator's certificate (default: the host part).
    pub server_name: Option<String>,
    /// `[tls]`: how the coordinator's certificate is trusted.
    pub tls: TlsSection,
    /// `[key]`: the device key file.
    pub key: KeySection,
    /// `[store]`: where results wait for acknowledgement (none: in memory only).
    pub store: Option<StoreSection>,
    /// `[pricing]`: the linear price schedule.
    #[serde(default)]
    pub pricing: PricingSection,
    /// `[capacity]`: jobs at once and bytes per job.
    #[serde(default)]
    pub capacity: CapacitySection,
    /// `[device]`: which GPU, and the kernel gates.
    #[serde(default)]
    pub device: DeviceSection,
    /// `[timers]`: heartbeat, peer timeout, status line, drain timeout.
    #[serde(default)]
    pub timers: TimersSection,
    /// `[metrics]`: the Prometheus listener (none by default).
    #[serde(default)]
    pub metrics: MetricsSection,
}

/// The `[metrics]` section: where the operator program serves Prometheus
/// metrics (`crate::metrics`), if anywhere.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsSection {
    /// `host:port` of an HTTP listener serving `GET /metrics` (keep it on
    /// a local or private address: it is not authenticated). None: no
    /// listener.
    pub listen: Option<String>,
}

/// The `[tls]` section: exactly one of its fields.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
    /// PEM file of the CA that signs the coordinator's certificate.
    pub ca_file: Option<PathBuf>,
    /// Hex SHA-256 of the coordinator's SubjectPublicKeyInfo.
    pub pinned_key_sha256: Option<String>,
}

/// The `[key]` section.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeySection {
    /// PKCS#8 file of the device's Ed25519 key; created if missing.
    pub file: PathBuf,
}

/// The `[store]` section.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreSection {
    /// Directory where results wait for acknowledgement.
    pub dir: PathBuf,
}

/// The `[pricing]` section (all default 0).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PricingSection {
    /// Fixed fee per job.
    #[serde(default)]
    pub base: u64,
    /// Per GPU millisecond.
    #[serde(default)]
    pub per_gpu_ms: u64,
    /// Per MiB received.
    #[serde(default)]
    pub per_mib_in: u64,
    /// Per MiB returned.
    #[serde(default)]
    pub per_mib_out: u64,
    /// The least charged for any job.
    #[serde(default)]
    pub floor: u64,
}

/// The `[capacity]` section.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CapacitySection {
    /// Jobs held at once (default 2, at most `limits::MAX_JOBS`: 32).
    #[serde(default = "default_concurrent")]
    pub max_concurrent: u8,
    /// Most bytes received for one job (default 256 MiB).
    #[serde(default = "default_bytes")]
    pub max_bytes_in: u64,
    /// Most bytes returned for one job (default 256 MiB).
    #[serde(default = "default_bytes")]
    pub max_bytes_out: u64,
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

/// The `[device]` section.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceSection {
    /// Vulkan device index.
    pub index: Option<usize>,
    /// Part of the Vulkan device name.
    pub name: Option<String>,
    /// Run the Khronos validation layer (slow; for debugging).
    #[serde(default)]
    pub validation: bool,
    /// The Khronos SPIR-V validator every new kernel passes (the second
    /// gate); default: `spirv-val` on PATH.
    pub spirv_val: Option<std::path::PathBuf>,
    /// Run that second gate (default true). Off leaves Tessera's own
    /// validator alone in front of the driver.
    #[serde(default = "yes")]
    pub spirv_val_gate: bool,
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

/// The `[timers]` section.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimersSection {
    /// Heartbeat interval, ms (default 5000).
    #[serde(default = "default_heartbeat")]
    pub heartbeat_ms: u64,
    /// Silence after which the coordinator is given up, ms (default 20000).
    #[serde(default = "default_peer_timeout")]
    pub peer_timeout_ms: u64,
    /// Seconds between status lines (default 30).
    #[serde(default = "default_status")]
    pub status_interval_s: u64,
    /// Seconds a drain waits for acknowledgements before stopping anyway (default 60).
    #[serde(default = "default_drain_timeout")]
    pub drain_timeout_s: u64,
    /// A job the agent holds alone and that is due within this many ms runs
    /// on the runtime's own thread (`NetConfig::inline_deadline`; default
    /// 250, 0: never).
    #[serde(default = "default_inline_deadline")]
    pub inline_deadline_ms: u64,
}

impl Default for TimersSection {
    fn default() -> Self {
        TimersSection {
            heartbeat_ms: default_heartbeat(),
            peer_timeout_ms: default_peer_timeout(),
            status_interval_s: default_status(),
            drain_timeout_s: default_drain_timeout(),
            inline_deadline_ms: default_inline_deadline(),
        }
    }
}

fn default_inline_deadline() -> u64 {
    NetConfig::DEFAULT_INLINE_DEADLINE.as_millis() as u64
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

impl OperatorConfig {
    /// Reads a configuration from TOML text.
    pub fn from_toml(text: &str) -> Result<Self, OperatorError> {
        let config: OperatorConfig =
            toml::from_str(text).map_err(|e| OperatorError::Config(e.to_string()))?;
        let t = &config.timers;
        // A run on the runtime's thread holds up its heartbeats.
        if t.inline_deadline_ms >= t.heartbeat_ms {
            return Err(OperatorError::Config(format!(
                "[timers] inline_deadline_ms ({}) must be below heartbeat_ms ({}): \
                 the loop sends no heartbeat while a job runs on it",
                t.inline_deadline_ms, t.heartbeat_ms
            )));
        }
        Ok(config)
    }

    /// Reads the configuration file at `path`.
    pub fn load(path: &Path) -> Result<Self, OperatorError> {
        let text = std::fs::read_to_string(path).map_err(|error| OperatorError::Io {
            path: path.to_path_buf(),
            error,
        })?;
        Self::from_toml(&text)
            .map_err(|e| OperatorError::Config(format!("{}: {e}", path.display())))
    }

    /// The `[pricing]` section as the agent's price schedule and floor.
    pub fn pricing(&self) -> (LinearPrice, u64) {
        let p = &self.pricing;
        (
            LinearPrice {
                base: p.base,
                per_gpu_ms: p.per_gpu_ms,
                per_mib_in: p.per_mib_in,
                per_mib_out: p.per_mib_out,
            },
            p.floor,
        )
    }

    /// How often the operator program logs its status line.
    pub fn status_interval(&self) -> Duration {
        Duration::from_secs(self.timers.status_interval_s.max(1))
    }

    /// Builds the provider this configuration describes: loads (or creates)
    /// the device key, checks the result store belongs to it, opens the GPU
    /// and makes the network runtime, which connects on its first `step`.
    pub fn build_runtime(&self) -> Result<Runtime<Ed25519Signer>, OperatorError> {
        // The whole configuration is checked before a key file is created.
        let tls = self.tls_config()?;
        let signer = load_or_create_key(&self.key.file).map_err(OperatorError::Key)?;
        self.build(signer, tls, |gpu| gpu)
    }

    /// As [`OperatorConfig::build_runtime`] with another signer (a secure
    /// element's, say); the `[key]` file is not read.
    pub fn build_runtime_with<S: Signer>(&self, signer: S) -> Result<Runtime<S>, OperatorError> {
        let tls = self.tls_config()?;
        self.build(signer, tls, |gpu| gpu)
    }

    /// As [`OperatorConfig::build_runtime_with`], with jobs run by the
    /// executor `wrap` makes of the configured device: a host that runs
    /// jobs itself (a binding's callback) and hands some to the device.
    /// The device's capabilities still make the evidence.
    pub fn build_runtime_wrapped<S: Signer, E: crate::net::Executor>(
        &self,
        signer: S,
        wrap: impl FnOnce(crate::gpu_host::GpuHost) -> E,
    ) -> Result<Runtime<S>, OperatorError> {
        let tls = self.tls_config()?;
        self.build(signer, tls, wrap)
    }

    /// The TLS client configuration the `[tls]` section describes.
    pub fn tls_config(&self) -> Result<std::sync::Arc<rustls::ClientConfig>, OperatorError> {
        let ca_error = |path: &PathBuf| {
            let path = path.clone();
            move |error| OperatorError::CaFile { path, error }
        };
        let trust = match (&self.tls.ca_file, &self.tls.pinned_key_sha256) {
            (Some(ca), None) => {
                let trust = Trust::ca_file(ca).map_err(ca_error(ca))?;
                return client_config(&trust).map_err(ca_error(ca));
            }
            (None, Some(pin)) => Trust::PinnedKey(hex32(pin).map_err(OperatorError::Config)?),
            _ => {
                return Err(OperatorError::Config(
                    "[tls] needs exactly one of ca_file or pinned_key_sha256".into(),
                ))
            }
        };
        client_config(&trust).map_err(OperatorError::Tls)
    }

    fn build<S: Signer, E: crate::net::Executor>(
        &self,
        signer: S,
        tls: std::sync::Arc<rustls::ClientConfig>,
        wrap: impl FnOnce(crate::gpu_host::GpuHost) -> E,
    ) -> Result<Runtime<S>, OperatorError> {
        // Store problems (a chain file of another key, say) before the device.
        if let Some(store) = &self.store {
            FileStore::open(&store.dir, signer.key_id()).map_err(OperatorError::Store)?;
        }

        let selector = device_selector(&self.device);
        let dispatcher = crate::vulkan::DispatcherConfig {
            validation: self.device.validation,
            khronos: crate::vulkan::KhronosConfig {
                enabled: self.device.spirv_val_gate,
                program: self.device.spirv_val.clone(),
                ..crate::vulkan::KhronosConfig::default()
            },
            ..crate::vulkan::DispatcherConfig::default()
        };
        let gpu = crate::gpu_host::GpuHost::open_with(selector, dispatcher)
            .map_err(OperatorError::Vulkan)?;
        let capabilities = gpu.capabilities().clone();
        log::info!(
            "device: {} ({} MiB device memory)",
            capabilities.name,
            capabilities.device_local_bytes >> 20
        );

        let (price, floor) = self.pricing();
        let config = Config {
            agent_version: agent_version(),
            boot_id: boot_id(),
            capabilities,
            policy: Policy {
                max_concurrent: self.capacity.max_concurrent,
                price,
                floor,
                max_bytes_in: self.capacity.max_bytes_in,
                max_bytes_out: self.capacity.max_bytes_out,
                heartbeat_interval: crate::Duration::from_millis(self.timers.heartbeat_ms),
                peer_timeout: crate::Duration::from_millis(self.timers.peer_timeout_ms),
            },
            persist_results: true,
        };
        let server_name = self.server_name.clone().unwrap_or_else(|| {
            self.coordinator
                .rsplit_once(':')
                .map(|(h, _)| h.trim_matches(['[', ']']).to_string())
                .unwrap_or_else(|| self.coordinator.clone())
        });
        let mut net = NetConfig::new(self.coordinator.clone(), server_name, tls);
        net.store_dir = self.store.as_ref().map(|s| s.dir.clone());
        net.drain_timeout = Duration::from_secs(self.timers.drain_timeout_s);
        net.inline_deadline = Duration::from_millis(self.timers.inline_deadline_ms);
        Runtime::new(config, signer, wrap(gpu), net).map_err(OperatorError::Runtime)
    }
}

/// Parses `pinned_key_sha256`: 64 hex digits (either case), surrounding
/// white space ignored.
pub(crate) fn hex32(s: &str) -> Result<[u8; 32], String> {
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
pub(crate) fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Makes a directory entry just created durable.
pub(crate) fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// Loads the device key, refusing a file that group or others can read;
/// unlike [`load_or_create_key`], a missing file is an error.
pub fn load_key(path: &Path) -> Result<Ed25519Signer, String> {
    match std::fs::File::open(path) {
        Ok(f) => read_key(path, f),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(format!(
            "device key {} does not exist (`tessera-agent init` creates one)",
            path.display()
        )),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

/// Reads an opened key file: private to its owner, Ed25519 PKCS#8.
fn read_key(path: &Path, mut f: std::fs::File) -> Result<Ed25519Signer, String> {
    check_private(path, &f)?;
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut f, &mut bytes)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ed25519Signer::from_pkcs8(&bytes)
        .map_err(|e| format!("{}: not an Ed25519 PKCS#8 key ({e:?})", path.display()))
}

/// Loads the device key, or creates it (mode 0600) when the file is absent.
/// A key file readable by group or others is refused, as ssh does.
pub fn load_or_create_key(path: &Path) -> Result<Ed25519Signer, String> {
    match std::fs::File::open(path) {
        Ok(f) => read_key(path, f),
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
pub(crate) fn create_key_file(
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

/// This library's version, as the agent reports it in `Hello` and evidence.
pub fn agent_version() -> [u16; 3] {
    let v = |s: &str| s.parse().unwrap_or(0);
    [
        v(env!("CARGO_PKG_VERSION_MAJOR")),
        v(env!("CARGO_PKG_VERSION_MINOR")),
        v(env!("CARGO_PKG_VERSION_PATCH")),
    ]
}

/// A random id for this boot of the agent.
pub fn boot_id() -> [u8; 16] {
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

fn device_selector(d: &DeviceSection) -> crate::vulkan::DeviceSelector {
    use crate::vulkan::DeviceSelector;
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

    #[test]
    fn an_inline_deadline_past_the_heartbeat_interval_is_refused() {
        let text = |timers: &str| {
            format!(
                "coordinator = \"c:1\"\n[tls]\nca_file = \"ca.pem\"\n\
                 [key]\nfile = \"k\"\n[timers]\n{timers}\n"
            )
        };
        let ok = OperatorConfig::from_toml(&text("")).unwrap();
        assert_eq!(ok.timers.inline_deadline_ms, 250);
        let off = OperatorConfig::from_toml(&text("inline_deadline_ms = 0")).unwrap();
        assert_eq!(off.timers.inline_deadline_ms, 0);
        for bad in [
            "inline_deadline_ms = 5000",
            "heartbeat_ms = 200",
            "inline_deadline_ms = 18446744073709551615",
        ] {
            let Err(OperatorError::Config(e)) = OperatorConfig::from_toml(&text(bad)) else {
                panic!("{bad}: taken");
            };
            assert!(e.contains("inline_deadline_ms"), "{bad}: {e}");
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
