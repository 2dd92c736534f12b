//! `tessera-agent`: the operator program.
//!
//! ```text
//! tessera-agent init [--config agent.toml] [--coordinator HOST:PORT] [--ca FILE]
//! tessera-agent devices [--no-bench]
//! tessera-agent check --config agent.toml
//! tessera-agent run --config agent.toml      (also: tessera-agent --config agent.toml)
//! tessera-agent receipts --config agent.toml
//! ```
//!
//! `run` reads a TOML configuration, loads (or creates) the device key
//! (refusing one that group or others can read), checks the result store
//! belongs to that key, opens the GPU through Vulkan, and serves a
//! coordinator until SIGTERM or SIGINT, which drain it: jobs in flight
//! finish, nothing new is taken, then it says goodbye (or, after
//! `drain_timeout_s`, stops anyway, leaving unacknowledged results in the
//! store for the next start). A coordinator's `Drain` ends the session only:
//! the program connects again with backoff. A status line (connection,
//! device, jobs, earnings) is logged periodically; `(unavailable)` after the
//! device name means it takes no work for now (see the README's operator
//! section). Logs go to standard error; `TESSERA_LOG=debug` shows more.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use tessera_core::attest::{key_id, Receipt, ReceiptStatus};
use tessera_core::operator::{load_key, load_or_create_key, OperatorConfig, OperatorError};
use tessera_core::store::{FileStore, ResultStore};
use tessera_core::wire::{PROTOCOL_VERSION_MAX, PROTOCOL_VERSION_MIN};
use tessera_core::ConnState;

/// `--version`: the program's, the protocol versions it speaks, and the git
/// revision it was built from.
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (protocol ",
    "1-3",
    ", git ",
    env!("TESSERA_GIT_REV"),
    ")"
);
const _: () = assert!(PROTOCOL_VERSION_MIN == 1 && PROTOCOL_VERSION_MAX == 3);

#[derive(Parser)]
#[command(
    name = "tessera-agent",
    version = VERSION,
    about = "Serves a GPU to a Tessera coordinator as a provider.",
    after_help = "Start with `tessera-agent init`, then `check`, then `run`. \
                  Logs go to standard error; TESSERA_LOG=debug shows more."
)]
struct Cli {
    /// Configuration file: the same as `run --config FILE`.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Write a commented configuration file and create the device key;
    /// prints the key id.
    Init {
        /// The configuration file to write (never overwritten).
        #[arg(long, value_name = "FILE", default_value = "agent.toml")]
        config: PathBuf,
        /// The coordinator's address.
        #[arg(
            long,
            value_name = "HOST:PORT",
            default_value = "coordinator.example:7700"
        )]
        coordinator: String,
        /// PEM file of the CA that signs the coordinator's certificate
        /// (default: ca.pem beside the configuration).
        #[arg(long, value_name = "FILE")]
        ca: Option<PathBuf>,
        /// The device key to create (default: device.key beside the configuration).
        #[arg(long, value_name = "FILE")]
        key: Option<PathBuf>,
        /// The result store directory (default: results beside the configuration).
        #[arg(long, value_name = "DIR")]
        store: Option<PathBuf>,
    },
    /// List the Vulkan devices, with what the evidence would say of each.
    Devices {
        /// Only list them: do not open each device to run the start-up benchmark.
        #[arg(long)]
        no_bench: bool,
    },
    /// Check a setup step by step (configuration, CA, key, store, device,
    /// one session with the coordinator); exits non-zero at the first failure.
    /// Run it before the service starts: its session, under the same key,
    /// would replace the service's.
    Check {
        /// Configuration file.
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// How long to wait for the coordinator to accept the evidence.
        #[arg(long, value_name = "SECS", default_value_t = 15)]
        timeout: u64,
    },
    /// Serve the coordinator until SIGTERM or SIGINT (the service).
    Run {
        /// Configuration file.
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
    /// List the results waiting in the store and verify their receipts.
    Receipts {
        /// Configuration file.
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
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

fn init_logging(default: log::LevelFilter) {
    let level = match std::env::var("TESSERA_LOG").as_deref() {
        Ok("debug") => log::LevelFilter::Debug,
        Ok("trace") => log::LevelFilter::Trace,
        Ok("info") => log::LevelFilter::Info,
        Ok("warn") => log::LevelFilter::Warn,
        Ok("error") => log::LevelFilter::Error,
        _ => default,
    };
    let logger: &'static StderrLogger = Box::leak(Box::new(StderrLogger(level)));
    if log::set_logger(logger).is_ok() {
        log::set_max_level(level);
    }
}

/// The drivers' switches for their on-disk shader caches (Mesa's, and
/// NVIDIA's): with them on, a driver writes what it compiled from every
/// kernel, sealed ones too, to the operator's home directory, where it
/// outlives the run (docs/VULKAN.md, "Isolation").
/// (`MESA_GLSL_CACHE_DISABLE` is Mesa's name before 21.3.)
const DRIVER_DISK_CACHES_OFF: [(&str, &str); 3] = [
    ("MESA_SHADER_CACHE_DISABLE", "true"),
    ("MESA_GLSL_CACHE_DISABLE", "true"),
    ("__GL_SHADER_DISK_CACHE", "0"),
];

fn main() -> ExitCode {
    // Off unless the operator set them (to something). Here, before any
    // thread starts (the environment is then no other thread's to read).
    for (var, off) in DRIVER_DISK_CACHES_OFF {
        if std::env::var_os(var).is_none_or(|v| v.is_empty()) {
            std::env::set_var(var, off);
        }
    }
    let cli = Cli::parse();
    let command = match (cli.command, cli.config) {
        (Some(c), None) => c,
        (None, Some(config)) => Command::Run { config },
        (Some(_), Some(_)) => {
            eprintln!(
                "error: give --config after the subcommand (`tessera-agent run --config FILE`)"
            );
            return ExitCode::from(2);
        }
        (None, None) => {
            eprintln!(
                "error: no subcommand; `tessera-agent run --config FILE` serves, \
                 `tessera-agent --help` lists the others"
            );
            return ExitCode::from(2);
        }
    };
    // The service logs its progress; the one-shot commands print theirs.
    // (`check` reports the connection's last error itself.)
    init_logging(match command {
        Command::Run { .. } => log::LevelFilter::Info,
        Command::Check { .. } => log::LevelFilter::Error,
        _ => log::LevelFilter::Warn,
    });
    let result = match command {
        Command::Init {
            config,
            coordinator,
            ca,
            key,
            store,
        } => init(&config, &coordinator, ca, key, store),
        Command::Devices { no_bench } => devices(!no_bench),
        Command::Check { config, timeout } => check(&config, Duration::from_secs(timeout)),
        Command::Run { config } => run(&config),
        Command::Receipts { config } => receipts(&config),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A path as it goes into a TOML string.
fn toml_path(p: &Path) -> String {
    p.display()
        .to_string()
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
}

fn init(
    config: &Path,
    coordinator: &str,
    ca: Option<PathBuf>,
    key: Option<PathBuf>,
    store: Option<PathBuf>,
) -> Result<(), String> {
    // Paths in the file are absolute: the service may start elsewhere.
    let cwd = std::env::current_dir().map_err(|e| format!("the current directory: {e}"))?;
    let config = &cwd.join(config);
    let dir = match config.parent() {
        Some(p) => p.to_path_buf(),
        None => cwd.clone(),
    };
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let ca = &ca.map_or_else(|| dir.join("ca.pem"), |ca| cwd.join(ca));
    let key = key.map_or_else(|| dir.join("device.key"), |k| cwd.join(k));
    let store = store.map_or_else(|| dir.join("results"), |s| cwd.join(s));
    let text = format!(
        include_str!("agent.toml.in"),
        coordinator = coordinator.replace('"', "\\\""),
        ca = toml_path(ca),
        key = toml_path(&key),
        store = toml_path(&store),
    );
    // Checked as the program will read it, before anything is written.
    OperatorConfig::from_toml(&text).map_err(|e| format!("the configuration to write: {e}"))?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(config)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => format!(
                "{} exists: init never overwrites a configuration (edit it, or choose \
                 another with --config)",
                config.display()
            ),
            _ => format!("{}: {e}", config.display()),
        })?;
    std::io::Write::write_all(&mut file, text.as_bytes())
        .and_then(|_| file.sync_all())
        .map_err(|e| format!("{}: {e}", config.display()))?;
    if let Some(parent) = key.parent() {
        std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
    }
    let existed = key.exists();
    let signer = load_or_create_key(&key)?;
    let id = key_id(&tessera_core::attest::Signer::public_key(&signer));
    println!("wrote {}", config.display());
    println!(
        "{} device key {}",
        if existed { "kept the" } else { "created the" },
        key.display()
    );
    println!("key id {}", hex(&id));
    println!(
        "next: put the coordinator's CA in {} (or a pinned key in [tls]), then \
         `tessera-agent check --config {}`",
        ca.display(),
        config.display()
    );
    Ok(())
}

fn devices(bench: bool) -> Result<(), String> {
    use tessera_core::vulkan::{DeviceSelector, Instance};
    let instance = Instance::load().map_err(|e| format!("Vulkan: {e}"))?;
    let list = instance.devices();
    if list.is_empty() {
        return Err("Vulkan: no device found (is a driver installed? lavapipe: \
                    mesa-vulkan-drivers)"
            .into());
    }
    let default = instance
        .select(&DeviceSelector::Default)
        .ok()
        .map(|d| d.index);
    for d in &list {
        println!(
            "[{}] {}{} ({:?}, vendor {:#06x}, device {:#06x}, Vulkan {}.{})",
            d.index,
            d.name,
            if Some(d.index) == default {
                " (default)"
            } else {
                ""
            },
            d.device_type,
            d.vendor_id,
            d.device_id,
            d.api_version >> 22,
            (d.api_version >> 12) & 0x3FF
        );
        if !bench {
            continue;
        }
        match tessera_core::gpu_host::GpuHost::open(DeviceSelector::Index(d.index), false) {
            Ok(gpu) => {
                let c = gpu.capabilities();
                println!(
                    "    memory {} MiB device-local, {} MiB host-visible; max storage buffer {} MiB",
                    c.device_local_bytes >> 20,
                    c.host_visible_bytes >> 20,
                    c.max_storage_buffer_range >> 20
                );
                println!(
                    "    workgroup size {:?}, count {:?}, {} invocations, {} KiB shared; subgroup {}",
                    c.max_workgroup_size,
                    c.max_workgroup_count,
                    c.max_invocations,
                    c.max_shared_memory >> 10,
                    c.subgroup_size
                );
                println!("    features {}", feature_names(c.features));
                println!(
                    "    start-up benchmark: copy {} MB/s, fma {} MFLOP/s",
                    c.copy_mbps, c.fma_mflops
                );
            }
            Err(e) => println!("    cannot open it: {e}"),
        }
    }
    Ok(())
}

fn feature_names(bits: u32) -> String {
    use tessera_core::wire::features as f;
    let names: Vec<&str> = [
        (f::FLOAT16, "float16"),
        (f::FLOAT64, "float64"),
        (f::INT8, "int8"),
        (f::INT64, "int64"),
        (f::SUBGROUP_ARITHMETIC, "subgroup-arithmetic"),
        (f::ROBUST_BUFFER_ACCESS, "robust-buffer-access"),
        (f::ROBUST_BUFFER_ACCESS_2, "robust-buffer-access-2"),
    ]
    .iter()
    .filter(|(bit, _)| bits & bit != 0)
    .map(|(_, name)| *name)
    .collect();
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}

/// One step of `check`: prints `ok` or `FAIL` with what it found.
fn step<T>(what: &str, r: Result<(T, String), String>) -> Result<T, String> {
    match r {
        Ok((v, detail)) => {
            println!("ok    {what}: {detail}");
            Ok(v)
        }
        Err(e) => {
            println!("FAIL  {what}: {e}");
            Err(format!("{what}: {e}"))
        }
    }
}

fn check(path: &Path, timeout: Duration) -> Result<(), String> {
    let file = step(
        "configuration",
        OperatorConfig::load(path)
            .map(|f| (f, path.display().to_string()))
            .map_err(|e| e.to_string()),
    )?;
    step(
        "coordinator trust",
        file.tls_config()
            .map(|_| {
                let how = match (&file.tls.ca_file, &file.tls.pinned_key_sha256) {
                    (Some(ca), _) => format!("CA {}", ca.display()),
                    _ => "pinned key".into(),
                };
                ((), how)
            })
            .map_err(|e| e.to_string()),
    )?;
    let signer = step(
        "device key",
        load_key(&file.key.file).map(|s| {
            let id = key_id(&tessera_core::attest::Signer::public_key(&s));
            let detail = format!("{} (key id {})", file.key.file.display(), hex(&id));
            (s, detail)
        }),
    )?;
    let id = key_id(&tessera_core::attest::Signer::public_key(&signer));
    if let Some(store) = &file.store {
        step(
            "result store",
            FileStore::open(&store.dir, id)
                .map(|s| {
                    let n = s.jobs().map(|j| j.len()).unwrap_or(0);
                    let chain = s.chain();
                    let detail = format!(
                        "{} ({n} result(s) waiting; next receipt #{})",
                        store.dir.display(),
                        chain.next_sequence
                    );
                    ((), detail)
                })
                .map_err(|e| format!("{}: {e}", store.dir.display())),
        )?;
    } else {
        println!("ok    result store: none configured (results kept in memory only)");
    }
    let mut runtime = step(
        "device",
        file.build_runtime_with(signer)
            .map(|rt| {
                let s = rt.status();
                let caps = rt.agent().capabilities();
                let detail = format!(
                    "{} ({} MiB device memory; copy {} MB/s, fma {} MFLOP/s)",
                    s.device,
                    caps.device_local_bytes >> 20,
                    caps.copy_mbps,
                    caps.fma_mflops
                );
                (rt, detail)
            })
            .map_err(|e| match e {
                OperatorError::Store(e) => format!("result store: {e}"),
                e => e.to_string(),
            }),
    )?;
    let started = Instant::now();
    let reached = loop {
        if let Err(e) = runtime.step(Some(Duration::from_millis(50))) {
            break Err(e.to_string());
        }
        let s = runtime.status();
        if s.state == Some(ConnState::Ready) {
            break Ok(());
        }
        if started.elapsed() > timeout {
            break Err(format!(
                "no session within {} s{}",
                timeout.as_secs(),
                s.last_error
                    .map(|e| format!(" (last error: {e})"))
                    .unwrap_or_default()
            ));
        }
    };
    step(
        "coordinator",
        reached.map(|()| {
            (
                (),
                format!(
                    "{}: TLS, Hello, evidence accepted, session ready",
                    file.coordinator
                ),
            )
        }),
    )?;
    // Leave as the service would: drain, goodbye.
    runtime.drain_handle().drain();
    let until = Instant::now() + Duration::from_secs(5);
    while !runtime.is_finished() && Instant::now() < until {
        if runtime.step(Some(Duration::from_millis(50))).is_err() {
            break;
        }
    }
    println!("all checks passed");
    Ok(())
}

/// The latest metrics text, served by the listener's thread.
type MetricsText = std::sync::Arc<std::sync::Mutex<String>>;

/// Starts the `[metrics] listen` HTTP server: `GET /metrics` answers the
/// latest text, anything else 404.
fn serve_metrics(addr: &str) -> Result<MetricsText, String> {
    let server =
        tiny_http::Server::http(addr).map_err(|e| format!("[metrics] listen = \"{addr}\": {e}"))?;
    let at = server
        .server_addr()
        .to_ip()
        .map(|a| a.to_string())
        .unwrap_or_else(|| addr.to_string());
    log::info!("metrics on http://{at}/metrics");
    let text = MetricsText::default();
    let shared = text.clone();
    let content_type = tiny_http::Header::from_bytes(
        &b"Content-Type"[..],
        &b"application/openmetrics-text; version=1.0.0; charset=utf-8"[..],
    )
    .map_err(|()| "metrics: content type".to_string())?;
    std::thread::Builder::new()
        .name("tessera-metrics".into())
        .spawn(move || {
            for request in server.incoming_requests() {
                let response = if request.url() == "/metrics" {
                    let body = shared.lock().map(|t| t.clone()).unwrap_or_default();
                    tiny_http::Response::from_string(body)
                        .with_header(content_type.clone())
                        .boxed()
                } else {
                    tiny_http::Response::from_string("not found: try /metrics\n")
                        .with_status_code(404)
                        .boxed()
                };
                let _ = request.respond(response);
            }
        })
        .map_err(|e| format!("metrics thread: {e}"))?;
    Ok(text)
}

/// Tells systemd (when it started us with `Type=notify`: `NOTIFY_SOCKET`
/// set) how the service stands; nothing otherwise.
fn notify(states: &[sd_notify::NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(false, states) {
        log::debug!("sd_notify: {e}");
    }
}

fn run(path: &Path) -> Result<(), String> {
    use sd_notify::NotifyState;
    use std::sync::atomic::{AtomicBool, Ordering};
    let file = OperatorConfig::load(path).map_err(|e| e.to_string())?;
    let mut runtime = file.build_runtime().map_err(|e| e.to_string())?;
    let metrics = match &file.metrics.listen {
        Some(addr) => Some(serve_metrics(addr)?),
        None => None,
    };

    let drain = runtime.drain_handle();
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(signal, drain.flag())
            .map_err(|e| format!("cannot handle signal {signal}: {e}"))?;
    }
    let reload = std::sync::Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGHUP, reload.clone())
        .map_err(|e| format!("cannot handle SIGHUP: {e}"))?;
    // Key, store and device are up: the service is ready (the coordinator
    // may be reached later; the status says whether it is).
    notify(&[
        NotifyState::Ready,
        NotifyState::Status(&runtime.status().to_string()),
    ]);
    let mut watchdog_usec = 0;
    let watchdog = sd_notify::watchdog_enabled(false, &mut watchdog_usec)
        .then(|| Duration::from_micros(watchdog_usec / 2).max(Duration::from_millis(10)));
    if let Some(every) = watchdog {
        log::info!("systemd watchdog: a keep-alive every {every:?}");
    }
    let mut next_watchdog = Instant::now();
    // With metrics, at least once a second (a scrape sees values that old
    // at most); with a watchdog, at least at its keep-alive interval.
    let wait = [metrics.as_ref().map(|_| Duration::from_secs(1)), watchdog]
        .into_iter()
        .flatten()
        .min();
    let status_every = file.status_interval();
    let mut next_status = Instant::now();
    let mut stopping = false;
    while !runtime.is_finished() {
        runtime.step(wait).map_err(|e| e.to_string())?;
        if let Some(text) = &metrics {
            let now = tessera_core::metrics::render(&runtime);
            if let Ok(mut t) = text.lock() {
                *t = now;
            }
        }
        if let Some(every) = watchdog {
            if Instant::now() >= next_watchdog {
                notify(&[NotifyState::Watchdog]);
                next_watchdog = Instant::now() + every;
            }
        }
        if reload.swap(false, Ordering::SeqCst) {
            reload_pricing(path, &mut runtime);
        }
        if !stopping && drain.flag().load(Ordering::SeqCst) {
            stopping = true;
            notify(&[NotifyState::Stopping, NotifyState::Status("draining")]);
        }
        if Instant::now() >= next_status {
            let status = runtime.status().to_string();
            log::info!("status: {status}");
            notify(&[NotifyState::Status(&status)]);
            next_status = Instant::now() + status_every;
        }
    }
    log::info!("drained; final status: {}", runtime.status());
    Ok(())
}

/// SIGHUP: reads the configuration again and applies its `[pricing]` to
/// offers from now on; jobs held keep their prices, the session stays up.
/// A file that no longer reads leaves the pricing as it was.
fn reload_pricing(
    path: &Path,
    runtime: &mut tessera_core::net::Runtime<tessera_core::attest::Ed25519Signer>,
) {
    use sd_notify::NotifyState;
    let mut states = vec![NotifyState::Reloading];
    if let Ok(now) = NotifyState::monotonic_usec_now() {
        states.push(now);
    }
    notify(&states);
    match OperatorConfig::load(path) {
        Ok(file) => {
            let (price, floor) = file.pricing();
            runtime.set_pricing(price, floor);
            log::info!(
                "pricing reloaded from {}: base {}, per GPU ms {}, per MiB in {}, per MiB out {}, floor {}",
                path.display(),
                price.base,
                price.per_gpu_ms,
                price.per_mib_in,
                price.per_mib_out,
                floor
            );
        }
        Err(e) => log::error!("reload refused, pricing unchanged: {e}"),
    }
    notify(&[
        NotifyState::Ready,
        NotifyState::Status(&runtime.status().to_string()),
    ]);
}

fn receipts(path: &Path) -> Result<(), String> {
    let file = OperatorConfig::load(path).map_err(|e| e.to_string())?;
    let Some(store) = &file.store else {
        return Err(format!(
            "{}: no [store] configured: results are kept in memory only",
            path.display()
        ));
    };
    let signer = load_key(&file.key.file)?;
    let pk = tessera_core::attest::Signer::public_key(&signer);
    let store_handle = FileStore::open(&store.dir, key_id(&pk))
        .map_err(|e| format!("{}: {e}", store.dir.display()))?;
    let mut records = Vec::new();
    store_handle
        .for_each(&mut |r| records.push(r.clone()))
        .map_err(|e| format!("{}: {e}", store.dir.display()))?;
    let chain = store_handle.chain();
    println!(
        "{}: {} result(s) waiting for acknowledgement; the chain's next receipt is #{}",
        store.dir.display(),
        records.len(),
        chain.next_sequence
    );
    let mut bad = 0;
    let mut previous: Option<(u64, [u8; 32])> = None;
    for r in &records {
        let form = if r.receipt.len() == tessera_core::attest::RECEIPT_LEN {
            "alone"
        } else {
            "batched"
        };
        match Receipt::verify_any(&r.receipt, &pk) {
            Ok(receipt) => {
                // Acknowledged results leave the store, so sequences may skip;
                // consecutive ones must link.
                let linked = match previous {
                    Some((seq, link)) if receipt.sequence == seq + 1 => receipt.prev_hash == link,
                    _ => true,
                };
                let status = match receipt.status {
                    ReceiptStatus::Completed => "completed".to_string(),
                    ReceiptStatus::Failed(reason) => format!("failed ({reason:?})"),
                };
                let verdict = if receipt.job != r.job {
                    bad += 1;
                    format!("FAIL: names job {}", receipt.job)
                } else if !linked {
                    bad += 1;
                    "FAIL: does not link to the receipt before it".into()
                } else {
                    "ok".into()
                };
                println!(
                    "job {:>20}  #{:<6} {status:<28} price {:<10} {} B {form:<7}  {verdict}",
                    r.job,
                    receipt.sequence,
                    receipt.price,
                    r.receipt.len()
                );
                previous = Some((receipt.sequence, Receipt::link(&r.receipt)));
            }
            Err(e) => {
                bad += 1;
                println!(
                    "job {:>20}  FAIL: the receipt does not verify ({e:?})",
                    r.job
                );
            }
        }
    }
    if bad > 0 {
        return Err(format!("{bad} receipt(s) failed verification"));
    }
    Ok(())
}
